/* Open streams per caller. A stream (server-streaming or bidi) holds its
 * call's memory (~17 KB in gRPC core and here) for as long as the client
 * keeps it open, and nothing else bounded them: one anonymous client
 * opening grpc.health.v1 Watch or reflection streams on a few connections
 * grew harnessd by 70 MB per 4,000 streams until the kernel killed it. Each
 * caller now holds at most cfg.user_max_streams (an authenticated caller
 * by its user id, an anonymous one by its peer address), and anonymous
 * callers together at most RPC_ANON_STREAMS_MAX; admins are not counted.
 * All under srv->mu. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/support/alloc.h>

#include "rpc_internal.h"

struct rpc_stream_count {
	struct rpc_stream_count *next;
	unsigned n;
	char key[sizeof(((hs_rpc_call *)0)->stream_key)];
};

static unsigned bucket_of(const char *key)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % RPC_STREAM_BUCKETS;
}

/* "ipv4:10.0.0.1:5000" -> "ipv4:10.0.0.1"; "ipv6:[::1]:5000" -> "ipv6:[::1]". */
static void peer_host(hs_rpc_call *call, char *out, size_t cap)
{
	char *peer = grpc_call_get_peer(call->gcall);
	snprintf(out, cap, "peer:%s", peer != NULL ? peer : "?");
	gpr_free(peer);
	char *colon = strrchr(out, ':');
	char *bracket = strrchr(out, ']');
	if ((strncmp(out, "peer:ipv4:", 10) == 0 || strncmp(out, "peer:ipv6:", 10) == 0) &&
	    colon != NULL && colon > out + 9 && (bracket == NULL || colon > bracket))
		*colon = '\0';
}

int hs_rpc__stream_enter(hs_rpc_server *srv, hs_rpc_call *call, hs_error *err)
{
	if (call->principal.is_admin || srv->cfg.user_max_streams == 0)
		return HS_OK;
	bool anon = !call->principal.authenticated || call->principal.user_id[0] == '\0';
	if (anon)
		peer_host(call, call->stream_key, sizeof(call->stream_key));
	else
		snprintf(call->stream_key, sizeof(call->stream_key), "user:%s",
			 call->principal.user_id);
	int rc = HS_OK;
	pthread_mutex_lock(&srv->mu);
	struct rpc_stream_count **b = &srv->stream_counts[bucket_of(call->stream_key)], *c;
	for (c = *b; c != NULL && strcmp(c->key, call->stream_key) != 0; c = c->next)
		;
	if (anon && srv->anon_streams >= RPC_ANON_STREAMS_MAX) {
		rc = hs_error_set(err, HS_LIMIT, "too many open streams of unauthenticated callers");
		goto done;
	}
	if (c != NULL && c->n >= srv->cfg.user_max_streams) {
		rc = hs_error_set(err, HS_LIMIT,
				  "too many open streams for this caller (at most %u: "
				  "--user-max-streams)",
				  srv->cfg.user_max_streams);
		goto done;
	}
	if (c == NULL) {
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
			goto done;
		}
		memcpy(c->key, call->stream_key, sizeof(c->key));
		c->next = *b;
		*b = c;
	}
	c->n++;
	if (anon)
		srv->anon_streams++;
	call->stream_counted = true;
	call->stream_anon = anon;
done:
	pthread_mutex_unlock(&srv->mu);
	return rc;
}

void hs_rpc__stream_leave_locked(hs_rpc_server *srv, hs_rpc_call *call)
{
	if (!call->stream_counted)
		return;
	call->stream_counted = false;
	if (call->stream_anon)
		srv->anon_streams--;
	struct rpc_stream_count **p = &srv->stream_counts[bucket_of(call->stream_key)];
	for (; *p != NULL; p = &(*p)->next) {
		if (strcmp((*p)->key, call->stream_key) != 0)
			continue;
		if (--(*p)->n == 0) {
			struct rpc_stream_count *dead = *p;
			*p = dead->next;
			free(dead);
		}
		return;
	}
}

void hs_rpc__streams_free(hs_rpc_server *srv)
{
	for (unsigned i = 0; i < RPC_STREAM_BUCKETS; i++)
		while (srv->stream_counts[i] != NULL) {
			struct rpc_stream_count *c = srv->stream_counts[i];
			srv->stream_counts[i] = c->next;
			free(c);
		}
}
