/* Forwarding a unary call to the node that holds its object.
 *
 * A handler that finds the object on another harnessd node answers
 * HS_UNAVAILABLE with err->where = that node's advertised address (the
 * sandbox manager does, for a sandbox running elsewhere). When the method
 * is flagged HS_RPC_FORWARD (its object is the one named; not, say, a
 * RegisterTask that only checks a sandbox) and the server has a node id
 * (cfg.node_id), call.c then sends the same request to that
 * address as a client call and relays the answer (message bytes unchanged,
 * status code, message, hs-error-code and harness-node-address trailing
 * metadata) instead of the UNAVAILABLE.
 *
 * What the forward carries: the caller's own "authorization" metadata, the
 * call's x-request-id and traceparent (as checked), "harness-forwarded-by:
 * <node id>"; the remaining deadline (propagated from the server call,
 * capped at RPC_FORWARD_MAX_MS when the caller set none) and cancellation.
 * The owner node authenticates and authorises the caller itself:
 * forwarding adds no trust between nodes. It is not done (the UNAVAILABLE with the address
 * stands) for a call that already carries harness-forwarded-by (the loop
 * guard) and for one without "authorization" (a client-certificate
 * identity cannot be passed on); call.c adds harness-node-address.
 * Streams: forward_stream.c, with the channels and metadata made here.
 *
 * Channels: one per address, created on first use and kept (at most
 * RPC_FORWARD_CHANNELS, least recently used evicted; reference-counted, so
 * an evicted channel a forward still uses is destroyed when it is done).
 * TLS when the server serves TLS, verifying the other node against
 * tls_peer_ca_file, else gRPC's default roots (never the client CA: it
 * vouches for callers, not nodes); no client certificate is presented (the caller's
 * credential is what the owner checks). Runs on a worker lane and blocks it for
 * the forward's duration (call.c moves a call off the CQ thread first). */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "refcache.h"
#include "utf8.h"
#include "rpc_internal.h"

#define RPC_FORWARD_CHANNELS 32
#define RPC_FORWARD_MAX_MS 60000 /* a caller without a deadline: the forward's own */
#define RPC_FORWARD_USERS 64      /* users with forwards in flight tracked per lane */

typedef struct fwd_user {
	char id[sizeof(((hs_rpc_principal *)0)->user_id)];
	unsigned n; /* 0 = free slot */
} fwd_user;

struct rpc_forward {
	/* Forwards in flight per lane, at most cap[lane] in all and
	 * user_cap[lane] per user (f->mu): a forward holds its worker until the
	 * owner answers, and the owner may be forwarding to us at the same
	 * time. With at most half a lane forwarding, and half a user's share
	 * of it per user (and a forwarded call never forwarded again), every
	 * node keeps workers for the calls forwarded to it, the forwarded
	 * user's included: two nodes forwarding to each other cannot wedge
	 * each other's lanes. The per-user bound keeps one user's burst from
	 * taking every slot: others still get forwarded. Past a bound the
	 * caller gets the UNAVAILABLE with the address (and the client
	 * libraries go there). */
	unsigned inflight[N_LANES];
	unsigned cap[N_LANES], user_cap[N_LANES];
	fwd_user users[N_LANES][RPC_FORWARD_USERS];
	pthread_mutex_t mu;
	grpc_channel_credentials *creds; /* created with the first channel */
	bool creds_failed;
	/* Channels to other nodes (f->mu), reference-counted: an evicted
	 * channel is destroyed when its last forward let go (refcache.h). */
	hs_refcache chans; /* over chan_slots */
	hs_refcache_entry *chan_slots[RPC_FORWARD_CHANNELS];
};

static void chan_destroy(void *ch) { grpc_channel_destroy(ch); }

int hs_rpc__forward_new(hs_rpc_server *srv, hs_error *err)
{
	rpc_forward *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return hs_error_set(err, HS_INTERNAL, "forward: out of memory");
	pthread_mutex_init(&f->mu, NULL);
	hs_refcache_init(&f->chans, f->chan_slots, RPC_FORWARD_CHANNELS, chan_destroy);
	const hs_rpc_config *c = &srv->cfg;
	/* Per user: half a user's running share of the lane (the heartbeat
	 * lane has no per-user share: a quarter of the lane, at least 1). In
	 * all: half the lane. 0 = no forwarding on that lane. */
	f->user_cap[LANE_MAIN] = hs_rpc__user_running(c, c->workers) / 2;
	f->user_cap[LANE_LONG] = hs_rpc__user_running(c, c->long_workers) / 2;
	f->cap[LANE_MAIN] = c->workers / 2;
	f->cap[LANE_LONG] = c->long_workers / 2;
	f->cap[LANE_LIVENESS] = c->liveness_workers / 2;
	f->user_cap[LANE_LIVENESS] = f->cap[LANE_LIVENESS] / 2 > 0 ? f->cap[LANE_LIVENESS] / 2
								   : f->cap[LANE_LIVENESS];
	for (int l = 0; l < N_LANES; l++) {
		if (f->user_cap[l] > f->cap[l])
			f->user_cap[l] = f->cap[l];
		if (f->cap[l] > RPC_FORWARD_USERS) /* every user in flight has a slot */
			f->cap[l] = RPC_FORWARD_USERS;
	}
	srv->forward = f;
	return HS_OK;
}

/* Caller holds f->mu. The lane's slot of user (NULL/"" = the callers
 * without a user id, together); with add, a free slot if none yet. */
static fwd_user *user_slot_locked(rpc_forward *f, int lane, const char *user, bool add)
{
	if (user == NULL)
		user = "";
	fwd_user *free_slot = NULL;
	for (size_t i = 0; i < RPC_FORWARD_USERS; i++) {
		fwd_user *u = &f->users[lane][i];
		if (u->n > 0 && strcmp(u->id, user) == 0)
			return u;
		if (u->n == 0 && free_slot == NULL)
			free_slot = u;
	}
	if (add && free_slot != NULL)
		snprintf(free_slot->id, sizeof(free_slot->id), "%s", user);
	return add ? free_slot : NULL;
}

bool hs_rpc__forward_admit(hs_rpc_server *srv, int lane, const char *user)
{
	rpc_forward *f = srv->forward;
	if (f == NULL || lane < 0 || lane >= N_LANES)
		return false;
	bool ok = false;
	pthread_mutex_lock(&f->mu);
	if (f->inflight[lane] < f->cap[lane]) {
		fwd_user *u = user_slot_locked(f, lane, user, true);
		if (u != NULL && u->n < f->user_cap[lane]) {
			u->n++;
			f->inflight[lane]++;
			ok = true;
		}
	}
	pthread_mutex_unlock(&f->mu);
	return ok;
}

void hs_rpc__forward_release(hs_rpc_server *srv, int lane, const char *user)
{
	rpc_forward *f = srv->forward;
	pthread_mutex_lock(&f->mu);
	fwd_user *u = user_slot_locked(f, lane, user, false);
	if (u != NULL)
		u->n--;
	f->inflight[lane]--;
	pthread_mutex_unlock(&f->mu);
}

void hs_rpc__forward_free(hs_rpc_server *srv)
{
	rpc_forward *f = srv->forward;
	if (f == NULL)
		return;
	hs_refcache_clear(&f->chans); /* no forward runs any more: destroys them all */
	if (f->creds != NULL)
		grpc_channel_credentials_release(f->creds);
	pthread_mutex_destroy(&f->mu);
	free(f);
	srv->forward = NULL;
}

static bool md_present(const hs_rpc_call *call, const char *key)
{
	for (size_t i = 0; i < call->req_md.count; i++)
		if (grpc_slice_str_cmp(call->req_md.metadata[i].key, key) == 0)
			return true;
	return false;
}

bool hs_rpc__forward_wanted(const hs_rpc_call *call, const hs_error *err)
{
	const hs_rpc_server *srv = call->srv;
	return srv->forward != NULL && srv->cfg.node_id != NULL && srv->cfg.node_id[0] != '\0' &&
	       call->m != NULL && (call->m->handler.flags & HS_RPC_FORWARD) && call->req != NULL &&
	       err->where[0] != '\0' && md_present(call, "authorization") &&
	       !md_present(call, RPC_FORWARDED_KEY);
}

/* Caller holds f->mu. NULL when the credentials cannot be made. */
static grpc_channel_credentials *creds_locked(hs_rpc_server *srv, rpc_forward *f)
{
	if (f->creds != NULL || f->creds_failed)
		return f->creds;
	if (srv->cfg.tls_cert_file == NULL) {
		f->creds = grpc_insecure_credentials_create();
	} else {
		char *roots = NULL;
		hs_error e = { 0 };
		/* Not the client CA: it vouches for callers (every agent with a
		 * client certificate), not for nodes, and a forward carries the
		 * caller's bearer token to whoever passes this check. */
		const char *ca = srv->cfg.tls_peer_ca_file;
		if (ca == NULL)
			hs_log(HS_LOG_WARN, "rpc",
			       "forwarding: no --tls-peer-ca: other nodes are verified against the "
			       "system roots");
		if (ca != NULL && hs_rpc__read_pem(ca, "tls peer ca", &roots, &e) != HS_OK) {
			hs_log(HS_LOG_WARN, "rpc", "forwarding: CA bundle unreadable: no forwards",
			       HS_LS("error", e.msg));
			f->creds_failed = true;
			return NULL;
		}
		f->creds = grpc_ssl_credentials_create(roots, NULL, NULL, NULL);
		free(roots);
	}
	f->creds_failed = f->creds == NULL;
	return f->creds;
}

static grpc_channel *channel_new(hs_rpc_server *srv, grpc_channel_credentials *creds,
				 const char *target)
{
	grpc_arg args[2];
	memset(args, 0, sizeof(args));
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = (int)srv->cfg.max_message_bytes;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
	args[1].value.integer = (int)srv->cfg.max_message_bytes;
	grpc_channel_args ca = { .num_args = 2, .args = args };
	return grpc_channel_create(target, creds, &ca);
}

struct chan_ctx {
	hs_rpc_server *srv;
	rpc_forward *f;
};

/* f->mu held: a channel to a node not cached yet. */
static void *chan_make(void *ctx, const char *target)
{
	struct chan_ctx *x = ctx;
	grpc_channel_credentials *creds = creds_locked(x->srv, x->f);
	return creds != NULL ? channel_new(x->srv, creds, target) : NULL;
}

rpc_fwd_chan *hs_rpc__forward_channel(hs_rpc_server *srv, const char *target)
{
	rpc_forward *f = srv->forward;
	struct chan_ctx x = { srv, f };
	pthread_mutex_lock(&f->mu);
	rpc_fwd_chan *c = hs_refcache_acquire(&f->chans, target, chan_make, &x);
	pthread_mutex_unlock(&f->mu);
	return c;
}

grpc_channel *hs_rpc__forward_chan_channel(const rpc_fwd_chan *c) { return c->val; }

void hs_rpc__forward_chan_release(hs_rpc_server *srv, rpc_fwd_chan *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&srv->forward->mu);
	hs_refcache_release(&srv->forward->chans, c);
	pthread_mutex_unlock(&srv->forward->mu);
}

size_t hs_rpc__forward_channels(hs_rpc_server *srv)
{
	rpc_forward *f = srv->forward;
	pthread_mutex_lock(&f->mu);
	size_t n = hs_refcache_count(&f->chans);
	pthread_mutex_unlock(&f->mu);
	return n;
}

static void md_set(grpc_metadata *md, const char *key, grpc_slice value)
{
	memset(md, 0, sizeof(*md));
	md->key = grpc_slice_from_static_string(key);
	md->value = value;
}

void hs_rpc__forward_md_copy(const grpc_metadata_array *a, const char *key, char *buf, size_t cap)
{
	for (size_t i = 0; i < a->count; i++) {
		if (grpc_slice_str_cmp(a->metadata[i].key, key) != 0)
			continue;
		size_t n = GRPC_SLICE_LENGTH(a->metadata[i].value);
		const unsigned char *p = GRPC_SLICE_START_PTR(a->metadata[i].value);
		if (n >= cap)
			return;
		for (size_t j = 0; j < n; j++)
			if (p[j] < ' ' || p[j] > '~')
				return;
		memcpy(buf, p, n);
		buf[n] = '\0';
		return;
	}
}

size_t hs_rpc__forward_md(const hs_rpc_call *call, grpc_metadata md[RPC_FWD_MD])
{
	size_t n_md = 0;
	for (size_t i = 0; i < call->req_md.count; i++) {
		const grpc_metadata *m = &call->req_md.metadata[i];
		if (n_md == 0 && grpc_slice_str_cmp(m->key, "authorization") == 0)
			md_set(&md[n_md++], "authorization", grpc_slice_ref(m->value));
	}
	/* The call's checked request id and trace (common/trace.h), so the
	 * owner's log lines carry the same ids as ours. */
	if (call->trace_set && call->trace.request_id[0] != '\0')
		md_set(&md[n_md++], "x-request-id",
		       grpc_slice_from_copied_string(call->trace.request_id));
	if (call->trace_set && call->trace.traceparent[0] != '\0')
		md_set(&md[n_md++], "traceparent",
		       grpc_slice_from_copied_string(call->trace.traceparent));
	md_set(&md[n_md++], RPC_FORWARDED_KEY, grpc_slice_from_copied_string(call->srv->cfg.node_id));
	return n_md;
}

/* "forward to WHERE: WHY" (cut to the message's size). */
static void fail(rpc_fwd_result *r, grpc_status_code code, const char *where, const char *why)
{
	r->status = code;
	if (snprintf(r->msg, sizeof(r->msg), "forward to %.96s: %s", where, why) < 0)
		r->msg[0] = '\0';
}

void hs_rpc__forward(hs_rpc_call *call, const char *where, rpc_fwd_result *r)
{
	hs_rpc_server *srv = call->srv;
	memset(r, 0, sizeof(*r));
	const char *method = call->m->path;
	size_t len = protobuf_c_message_get_packed_size(call->req);
	uint8_t *buf = malloc(len > 0 ? len : 1);
	if (buf == NULL) {
		fail(r, GRPC_STATUS_INTERNAL, where, "out of memory");
		return;
	}
	protobuf_c_message_pack(call->req, buf);
	grpc_slice s = grpc_slice_new(buf, len, free);
	grpc_byte_buffer *req = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);

	rpc_fwd_chan *fc = hs_rpc__forward_channel(srv, where);
	grpc_channel *ch = fc != NULL ? hs_rpc__forward_chan_channel(fc) : NULL;
	grpc_completion_queue *cq = NULL;
	grpc_call *c = NULL;
	grpc_metadata md[RPC_FWD_MD];
	size_t n_md = 0;
	grpc_metadata_array init_md, trail_md;
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	grpc_byte_buffer *resp = NULL;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[6];
	if (ch == NULL) {
		fail(r, GRPC_STATUS_UNAVAILABLE, where, "no channel (TLS credentials?)");
		goto done;
	}
	cq = grpc_completion_queue_create_for_pluck(NULL);
	int64_t left = hs_rpc_call_deadline_left_ms(call);
	if (left > RPC_FORWARD_MAX_MS)
		left = RPC_FORWARD_MAX_MS;
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					     gpr_time_from_millis(left, GPR_TIMESPAN));
	grpc_slice path = grpc_slice_from_static_string(method);
	c = grpc_channel_create_call(ch, call->gcall,
				     GRPC_PROPAGATE_DEADLINE | GRPC_PROPAGATE_CANCELLATION, cq,
				     path, NULL, deadline, NULL);
	if (c == NULL) {
		fail(r, GRPC_STATUS_UNAVAILABLE, where, "call not created");
		goto done;
	}

	n_md = hs_rpc__forward_md(call, md);

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = n_md;
	ops[0].data.send_initial_metadata.metadata = md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &resp;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &details;
	grpc_call_error ce = grpc_call_start_batch(c, ops, 6, r, NULL);
	for (size_t i = 0; i < n_md; i++)
		grpc_slice_unref(md[i].value);
	if (ce != GRPC_CALL_OK) {
		fail(r, GRPC_STATUS_INTERNAL, where, "batch refused");
	} else {
		grpc_event ev = grpc_completion_queue_pluck(cq, r, gpr_inf_future(GPR_CLOCK_REALTIME),
							    NULL);
		if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
			fail(r, GRPC_STATUS_UNAVAILABLE, where, "call failed");
		} else if (status == GRPC_STATUS_OK && resp == NULL) {
			fail(r, GRPC_STATUS_INTERNAL, where, "no response message");
		} else {
			r->status = status;
			if (status == GRPC_STATUS_OK) {
				r->resp = resp;
				resp = NULL;
			} else {
				/* The owner's words; an UNAVAILABLE that names no node
				 * (the owner is down or unreachable) says which node it
				 * went to, in words only: the call may have reached the
				 * owner before it failed, so no harness-node-address
				 * invites a client to send it again. */
				size_t dn = GRPC_SLICE_LENGTH(details);
				if (dn >= sizeof(r->msg))
					dn = sizeof(r->msg) - 1;
				memcpy(r->msg, GRPC_SLICE_START_PTR(details), dn);
				r->msg[dn] = '\0';
				hs_rpc__forward_md_copy(&trail_md, HS_ERROR_REASON_KEY, r->reason, sizeof(r->reason));
				hs_rpc__forward_md_copy(&trail_md, HS_ERROR_WHERE_KEY, r->where, sizeof(r->where));
				if (status == GRPC_STATUS_UNAVAILABLE && r->where[0] == '\0') {
					char owner[sizeof(r->msg)];
					memcpy(owner, r->msg, sizeof(owner));
					fail(r, status, where, owner);
				}
				/* cut at a byte limit: valid UTF-8 again, as every message */
				hs_utf8_repair(r->msg);
			}
		}
	}
done:
	if (resp != NULL)
		grpc_byte_buffer_destroy(resp);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	if (r->status != GRPC_STATUS_OK)
		hs_log(HS_LOG_INFO, "rpc", "forwarded call failed", HS_LS("method", method),
		       HS_LS("to", where), HS_LS("error", r->msg));
	if (c != NULL)
		grpc_call_unref(c);
	if (cq != NULL) {
		grpc_completion_queue_shutdown(cq);
		while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
			       .type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(cq);
	}
	hs_rpc__forward_chan_release(srv, fc);
	grpc_byte_buffer_destroy(req);
}
