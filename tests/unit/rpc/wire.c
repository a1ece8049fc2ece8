/* Hand-built protobuf wire format (see wire.h). Deep messages are written
 * back to front, so each level costs its own few bytes, not a copy. */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (q == NULL)
		abort();
	return q;
}

static size_t varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	do {
		out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
	return n;
}

void hs_wire_init(hs_wire *w, size_t cap)
{
	w->cap = cap > 16 ? cap : 16;
	w->buf = xrealloc(NULL, w->cap);
	w->len = 0;
}

void hs_wire_bytes(hs_wire *w, uint32_t field, const uint8_t *data, size_t len)
{
	if (w->len + len + 16 > w->cap) {
		w->cap = (w->len + len + 16) * 2;
		w->buf = xrealloc(w->buf, w->cap);
	}
	w->len += varint(w->buf + w->len, (uint64_t)field << 3 | 2);
	w->len += varint(w->buf + w->len, len);
	if (len > 0)
		memcpy(w->buf + w->len, data, len);
	w->len += len;
}

void hs_wire_dispose(hs_wire *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

/* Back-to-front writer: the content is buf[pos, cap). */
typedef struct rev {
	uint8_t *buf;
	size_t pos, cap;
} rev;

static void rev_raw(rev *r, const uint8_t *data, size_t n)
{
	if (n > r->pos)
		abort(); /* sized generously by the callers */
	r->pos -= n;
	memcpy(r->buf + r->pos, data, n);
}

/* Prepends the header of a length-delimited field whose content is the
 * `len` bytes already written after it. */
static void rev_header(rev *r, uint32_t field, size_t len)
{
	uint8_t tmp[20];
	size_t n = varint(tmp, (uint64_t)field << 3 | 2);
	n += varint(tmp + n, len);
	rev_raw(r, tmp, n);
}

static size_t rev_len(const rev *r)
{
	return r->cap - r->pos;
}

/* Writes the Struct; returns its length (content at r->pos). */
static size_t rev_deep_struct(rev *r, unsigned levels, bool list)
{
	static const uint8_t key[] = { 0x0a, 0x01, 'a' }; /* entry.key = "a" */
	static const uint8_t null_value[] = { 0x08, 0x00 }; /* Value.null_value = 0 */
	if (list) {
		size_t end = rev_len(r);
		rev_raw(r, null_value, sizeof(null_value));
		for (unsigned i = 0; i < levels; i++) {
			rev_header(r, 1, rev_len(r) - end); /* ListValue.values */
			rev_header(r, 6, rev_len(r) - end); /* Value.list_value */
		}
		rev_header(r, 2, rev_len(r) - end); /* entry.value */
		rev_raw(r, key, sizeof(key));
		rev_header(r, 1, rev_len(r) - end); /* Struct.fields */
		return rev_len(r) - end;
	}
	size_t end = rev_len(r); /* the innermost Struct is empty */
	for (unsigned i = 0; i < levels; i++) {
		rev_header(r, 5, rev_len(r) - end); /* Value.struct_value */
		rev_header(r, 2, rev_len(r) - end); /* entry.value */
		rev_raw(r, key, sizeof(key));
		rev_header(r, 1, rev_len(r) - end); /* Struct.fields */
	}
	return rev_len(r) - end;
}

static uint8_t *finish(rev *r, size_t *len)
{
	*len = rev_len(r);
	uint8_t *out = xrealloc(NULL, *len ? *len : 1);
	memcpy(out, r->buf + r->pos, *len);
	free(r->buf);
	return out;
}

static void rev_init(rev *r, unsigned levels)
{
	r->cap = (size_t)levels * 24 + 256;
	r->pos = r->cap;
	r->buf = xrealloc(NULL, r->cap);
}

uint8_t *hs_wire_deep_struct(unsigned levels, bool list, size_t *len)
{
	rev r;
	rev_init(&r, levels);
	rev_deep_struct(&r, levels, list);
	return finish(&r, len);
}

uint8_t *hs_wire_deep_create_checkpoint(unsigned levels, bool list, size_t *len)
{
	static const uint8_t task_id[] = { 0x0a, 0x01, 't' };
	rev r;
	rev_init(&r, levels);
	size_t n = rev_deep_struct(&r, levels, list);
	rev_header(&r, 4, n); /* external_state */
	rev_raw(&r, task_id, sizeof(task_id));
	return finish(&r, len);
}
