/* Bounded request decoding: the pre-scan and the budgeted unpack.
 *
 * The pre-scan mirrors how protobuf-c 1.4.1 recurses: it descends into a
 * length-delimited field exactly when the field is known to the message's
 * descriptor and of message type (oneofs and map entries included), since
 * those are what protobuf_c_message_unpack unpacks by calling itself; unknown
 * fields are kept as bytes and never parsed. Lengths and tags are read as
 * protobuf-c reads them (tags and lengths in at most 5 bytes, varints in at
 * most 10); whatever the walk cannot read is refused, which is safe because
 * protobuf-c would refuse it too. The walk keeps its own stack of
 * (descriptor, end) frames, so the scan itself never recurses. */
#include "decode.h"

#include <string.h>

#include "utf8.h"

/* --- static depth of a type ------------------------------------------------ */

static uint32_t depth_of(const ProtobufCMessageDescriptor *d, const ProtobufCMessageDescriptor **path,
			 unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (path[i] == d)
			return UINT32_MAX; /* recursive */
	if (n == HS_RPC_DEPTH_MAX)
		return UINT32_MAX;
	path[n] = d;
	uint32_t deepest = 0;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		uint32_t sub = depth_of(f->descriptor, path, n + 1);
		if (sub == UINT32_MAX)
			return UINT32_MAX;
		if (sub + 1 > deepest)
			deepest = sub + 1;
	}
	return deepest;
}

uint32_t hs_rpc__type_depth(const ProtobufCMessageDescriptor *desc)
{
	const ProtobufCMessageDescriptor *path[HS_RPC_DEPTH_MAX];
	return depth_of(desc, path, 0);
}

/* --- the pre-scan ------------------------------------------------------------ */

/* A varint of at most max bytes within [*p, end); advances *p. */
static bool read_varint(const uint8_t **p, const uint8_t *end, unsigned max, uint64_t *out)
{
	uint64_t v = 0;
	const uint8_t *q = *p;
	for (unsigned i = 0; i < max; i++) {
		if (q == end)
			return false;
		uint8_t b = *q++;
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if ((b & 0x80) == 0) {
			*p = q;
			*out = v;
			return true;
		}
	}
	return false;
}

typedef struct frame {
	const ProtobufCMessageDescriptor *desc;
	const uint8_t *end;
} frame;

int hs_rpc__prescan(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
		    unsigned max_depth, hs_error *err)
{
	frame st[HS_RPC_DEPTH_MAX + 1];
	if (len == 0)
		return HS_OK;
	if (max_depth > HS_RPC_DEPTH_MAX)
		max_depth = HS_RPC_DEPTH_MAX;
	unsigned top = 0;
	st[0] = (frame){ desc, data + len };
	const uint8_t *p = data;
	const char *outer = NULL; /* the top-level field being walked, for the message */
	for (;;) {
		if (p == st[top].end) {
			if (top == 0)
				return HS_OK;
			top--;
			continue;
		}
		const uint8_t *end = st[top].end;
		uint64_t tag, n;
		if (!read_varint(&p, end, 5, &tag) || (uint32_t)(tag >> 3) == 0)
			goto malformed; /* field 0 does not exist (protobuf-c lets a
					 * two-byte zero tag through as unknown) */
		switch (tag & 7) {
		case PROTOBUF_C_WIRE_TYPE_VARINT:
			if (!read_varint(&p, end, 10, &n))
				goto malformed;
			break;
		case PROTOBUF_C_WIRE_TYPE_64BIT:
			if (end - p < 8)
				goto malformed;
			p += 8;
			break;
		case PROTOBUF_C_WIRE_TYPE_32BIT:
			if (end - p < 4)
				goto malformed;
			p += 4;
			break;
		case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED: {
			if (!read_varint(&p, end, 5, &n) || n > (uint64_t)(end - p))
				goto malformed;
			const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
				st[top].desc, (unsigned)(uint32_t)(tag >> 3));
			if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE) {
				p += n;
				break;
			}
			if (top == 0)
				outer = f->name;
			if (top + 1 > max_depth)
				return hs_error_set(err, HS_INVALID,
						    "%s: nested deeper than %u levels", outer, max_depth);
			top++;
			st[top] = (frame){ f->descriptor, p + n };
			break;
		}
		default: /* groups: protobuf-c does not support them */
			goto malformed;
		}
	}
malformed:
	return hs_error_set(err, HS_INVALID, "malformed %s message", desc->name);
}

/* --- proto3 strings are UTF-8 -------------------------------------------------- */

/* The first string field of m (or of a message below it, at most depth
 * levels down) that is not valid UTF-8, or NULL. Only the set member of a
 * oneof is read (the others share its memory). */
static const ProtobufCFieldDescriptor *bad_string(const ProtobufCMessage *m, unsigned depth)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		size_t n = 1;
		const void *const *v = (const void *const *)(base + f->offset);
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *)(base + f->quantifier_offset);
			v = *(const void *const *const *)(base + f->offset);
		}
		for (size_t j = 0; j < n; j++) {
			if (v[j] == NULL)
				continue;
			if (f->type == PROTOBUF_C_TYPE_STRING) {
				if (!hs_utf8_valid(v[j], NULL))
					return f;
			} else if (depth == 0) {
				return f; /* deeper than the pre-scan allows: never here */
			} else {
				const ProtobufCFieldDescriptor *bad = bad_string(v[j], depth - 1);
				if (bad != NULL)
					return f; /* name the field at this level */
			}
		}
	}
	return NULL;
}

int hs_rpc__check_strings(const ProtobufCMessage *msg, hs_error *err)
{
	const ProtobufCFieldDescriptor *f = bad_string(msg, HS_RPC_DEPTH_MAX + 1);
	if (f != NULL)
		return hs_error_set(err, HS_INVALID, "%s: not valid UTF-8", f->name);
	return HS_OK;
}

/* --- the budgeted unpack ------------------------------------------------------ */

size_t hs_rpc__decode_budget(size_t len, size_t max_bytes)
{
	size_t b = len > (SIZE_MAX - 65536) / 64 ? SIZE_MAX : 65536 + 64 * len;
	return b < max_bytes ? b : max_bytes;
}

typedef struct budget {
	hs_arena *arena;
	size_t left;
	bool exceeded;
} budget;

static void *budget_alloc(void *data, size_t size)
{
	budget *b = data;
	size_t need = size < 16 ? 16 : (size + 15) & ~(size_t)15;
	if (size > b->left || need > b->left) {
		b->exceeded = true;
		return NULL;
	}
	b->left -= need;
	return hs_arena_alloc(b->arena, size);
}

static void budget_free(void *data, void *ptr)
{
	(void)data;
	(void)ptr; /* the arena frees everything at once */
}

int hs_rpc__decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
		   bool prescan, unsigned max_depth, size_t budget_bytes, hs_arena *arena,
		   ProtobufCMessage **out, hs_error *err)
{
	static const uint8_t empty[1];
	int rc;
	if (data == NULL)
		data = empty; /* an empty message; never NULL + 0 */
	if (prescan && (rc = hs_rpc__prescan(desc, data, len, max_depth, err)) != HS_OK)
		return rc;
	budget b = { arena, budget_bytes, false };
	ProtobufCAllocator alloc = { budget_alloc, budget_free, &b };
	ProtobufCMessage *msg = protobuf_c_message_unpack(desc, &alloc, len, data);
	if (msg == NULL && b.exceeded)
		return hs_error_set(err, HS_LIMIT,
				    "%s message needs more than %zu bytes of memory to decode", desc->name,
				    budget_bytes);
	if (msg == NULL)
		return hs_error_set(err, HS_INVALID, "malformed %s message", desc->name);
	if ((rc = hs_rpc__check_strings(msg, err)) != HS_OK)
		return rc; /* msg lives in the arena */
	*out = msg;
	return HS_OK;
}
