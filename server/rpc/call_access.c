/* The handler-facing accessors of a call (rpc.h "inside a handler"): its
 * payload, principal, request metadata, peer, deadline, arena, and the
 * response metadata it adds. The call's state machine is in call.c. */
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <string.h>

#include "rpc_internal.h"

void *hs_rpc_call_payload(const hs_rpc_call *call) { return call->m ? call->m->payload : NULL; }
const char *hs_rpc_call_method(const hs_rpc_call *call) { return call->m ? call->m->path : ""; }
const hs_rpc_principal *hs_rpc_call_principal(const hs_rpc_call *call) { return &call->principal; }
bool hs_rpc_call_cancelled(const hs_rpc_call *call) { return atomic_load(&((hs_rpc_call *)call)->cancelled); }

void *hs_rpc_call_alloc(hs_rpc_call *call, size_t size)
{
	/* Arena use is confined to the thread running the handler at a time. */
	return hs_arena_alloc(&call->arena, size);
}

static void *arena_alloc(void *call, size_t size) { return hs_rpc_call_alloc(call, size); }
static void arena_free(void *call, void *p)
{
	(void)call; /* the arena goes with the call */
	(void)p;
}

ProtobufCAllocator hs_rpc_call_allocator(hs_rpc_call *call)
{
	ProtobufCAllocator a = { arena_alloc, arena_free, call };
	return a;
}

char *hs_rpc_call_strdup(hs_rpc_call *call, const char *s)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s);
	char *p = hs_arena_alloc(&call->arena, n + 1);
	if (p != NULL)
		memcpy(p, s, n + 1);
	return p;
}

const char *hs_rpc_call_metadata(hs_rpc_call *call, const char *key, size_t *len)
{
	for (size_t i = 0; i < call->req_md.count; i++) {
		const grpc_metadata *md = &call->req_md.metadata[i];
		if (grpc_slice_str_cmp(md->key, key) != 0)
			continue;
		size_t n = GRPC_SLICE_LENGTH(md->value);
		char *p = hs_arena_alloc(&call->arena, n + 1);
		if (p == NULL)
			return NULL;
		memcpy(p, GRPC_SLICE_START_PTR(md->value), n);
		if (len != NULL)
			*len = n;
		return p;
	}
	return NULL;
}

const char *hs_rpc_call_peer(hs_rpc_call *call)
{
	char *peer = grpc_call_get_peer(call->gcall);
	char *copy = hs_rpc_call_strdup(call, peer);
	gpr_free(peer);
	return copy;
}

int64_t hs_rpc_call_deadline_left_ms(const hs_rpc_call *call)
{
	if (gpr_time_cmp(call->deadline, gpr_inf_future(call->deadline.clock_type)) == 0)
		return INT64_MAX;
	gpr_timespec dl = gpr_convert_clock_type(call->deadline, GPR_CLOCK_MONOTONIC);
	gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
	gpr_timespec left = gpr_time_sub(dl, now);
	return (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

/* A key: lower-case letters, digits, '-', '_', '.'. A value: printable
 * ASCII (0x20-0x7e), as gRPC requires of a text value: it refuses a
 * batch carrying any other byte, and a refused final batch would leave the
 * call unanswered. A "-bin" key's value may hold any byte but NUL (gRPC
 * base64-encodes it on the wire). */
static bool md_valid(const char *s, bool key, bool binary)
{
	if (s == NULL || s[0] == '\0')
		return !key && s != NULL;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (key ? !((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
			    *c == '-' || *c == '_' || *c == '.')
			: (!binary && (*c < 0x20 || *c > 0x7e)))
			return false;
	}
	return true;
}

static bool md_binary_key(const char *key)
{
	size_t n = strlen(key);
	return n > 4 && strcmp(key + n - 4, "-bin") == 0;
}

static int add_md(hs_rpc_call *call, grpc_metadata *arr, size_t *n, const char *key,
		  const char *value)
{
	if (!md_valid(key, true, false) || !md_valid(value, false, md_binary_key(key)))
		return HS_INVALID;
	if (*n == RPC_MAX_MD)
		return HS_LIMIT;
	char *k = hs_rpc_call_strdup(call, key), *v = hs_rpc_call_strdup(call, value);
	if (k == NULL || v == NULL)
		return HS_INTERNAL;
	memset(&arr[*n], 0, sizeof(arr[*n]));
	arr[*n].key = grpc_slice_from_static_string(k);
	arr[*n].value = grpc_slice_from_static_string(v);
	(*n)++;
	return HS_OK;
}

int hs_rpc_call_add_initial_metadata(hs_rpc_call *call, const char *key, const char *value)
{
	pthread_mutex_lock(&call->mu);
	int rc = call->initial_md_sent ? HS_CONFLICT
				       : add_md(call, call->init_md, &call->n_init, key, value);
	pthread_mutex_unlock(&call->mu);
	return rc;
}

int hs_rpc_call_add_trailing_metadata(hs_rpc_call *call, const char *key, const char *value)
{
	pthread_mutex_lock(&call->mu);
	int rc = call->status_started ? HS_CONFLICT
				      : add_md(call, call->trail_md, &call->n_trail, key, value);
	pthread_mutex_unlock(&call->mu);
	return rc;
}


size_t hs_rpc_call_peer_cert_names(hs_rpc_call *call, hs_rpc_peer_name *out, size_t cap)
{
	size_t n = 0;
	grpc_auth_context *ctx = call->gcall != NULL ? grpc_call_auth_context(call->gcall) : NULL;
	if (ctx == NULL)
		return 0;
	/* Only a peer the handshake authenticated (a client certificate that
	 * chains to the client CA) has x509 names at all; checked anyway. */
	if (grpc_auth_context_peer_is_authenticated(ctx)) {
		static const struct {
			const char *prop, *kind;
		} props[] = { { GRPC_X509_CN_PROPERTY_NAME, "cn" },
			      { GRPC_X509_SAN_PROPERTY_NAME, "san" } };
		for (size_t p = 0; p < sizeof(props) / sizeof(props[0]); p++) {
			grpc_auth_property_iterator it =
				grpc_auth_context_find_properties_by_name(ctx, props[p].prop);
			const grpc_auth_property *prop;
			while (n < cap && (prop = grpc_auth_property_iterator_next(&it)) != NULL) {
				if (prop->value == NULL || prop->value_length == 0 ||
				    memchr(prop->value, '\0', prop->value_length) != NULL)
					continue;
				char *v = hs_rpc_call_alloc(call, prop->value_length + 1);
				if (v == NULL)
					break;
				memcpy(v, prop->value, prop->value_length);
				out[n].kind = props[p].kind;
				out[n].value = v;
				n++;
			}
		}
	}
	grpc_auth_context_release(ctx);
	return n;
}
