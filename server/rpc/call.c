/* The per-call state machine.
 *
 *   requested --TAG_NEW ok--> accepted --(unpack, auth, deadline)--> handler
 *       |                        |                                    |
 *   TAG_NEW !ok (shutdown)       +-- RECV_CLOSE armed at once ------->+
 *       v                                                             v
 *   recycled              sends: one SEND_MESSAGE at a time, then SEND_STATUS
 *                                     |
 *                       refs == 0 --> finalize: log, unref, recycle
 *
 * Reference counting: a requested call holds 1 ref (its TAG_NEW). Once
 * accepted that ref means "the client side is open" and is dropped when
 * TAG_CLOSE completes. Every batch in flight holds one ref, a handler running
 * on the pool holds one, and services holding a stream hold one each. The
 * call is finalized when the count reaches 0, so a completion can never see
 * a recycled call. Lock order: srv->mu before call->mu, never the reverse. */
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rpc_internal.h"

static const char *const status_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

static const char *status_name(grpc_status_code s)
{
	if ((unsigned)s < sizeof(status_names) / sizeof(status_names[0]))
		return status_names[s];
	return "UNKNOWN";
}

/* --- allocation and recycling ------------------------------------------ */

hs_rpc_call *hs_rpc__call_get(hs_rpc_server *srv)
{
	pthread_mutex_lock(&srv->mu);
	hs_rpc_call *call = srv->free_calls;
	if (call != NULL)
		srv->free_calls = call->free_next;
	pthread_mutex_unlock(&srv->mu);
	if (call == NULL) {
		call = malloc(sizeof(*call));
		if (call == NULL)
			return NULL;
		if (pthread_mutex_init(&call->mu, NULL) != 0) {
			free(call);
			return NULL;
		}
	}
	memset((char *)call + offsetof(hs_rpc_call, srv), 0,
	       offsetof(hs_rpc_call, arena_mem) - offsetof(hs_rpc_call, srv));
	call->srv = srv;
	call->refs = 1;
	call->status = GRPC_STATUS_OK;
	atomic_init(&call->cancelled, false);
	call->t_new = (rpc_tag){ TAG_NEW, call };
	call->t_close = (rpc_tag){ TAG_CLOSE, call };
	call->t_send = (rpc_tag){ TAG_SEND, call };
	call->t_recv = (rpc_tag){ TAG_RECV, call };
	call->t_status = (rpc_tag){ TAG_STATUS, call };
	grpc_metadata_array_init(&call->req_md);
	grpc_call_details_init(&call->details);
	hs_arena_init(&call->arena, call->arena_mem, sizeof(call->arena_mem));
	return call;
}

/* Releases everything a call acquired and puts the struct on the free list. */
void hs_rpc__call_release(hs_rpc_server *srv, hs_rpc_call *call)
{
	grpc_metadata_array_destroy(&call->req_md);
	grpc_call_details_destroy(&call->details);
	if (call->payload != NULL)
		grpc_byte_buffer_destroy(call->payload);
	if (call->recv_buf != NULL)
		grpc_byte_buffer_destroy(call->recv_buf);
	for (unsigned i = 0; i < call->q_len; i++)
		grpc_byte_buffer_destroy(call->queue[(call->q_head + i) % call->q_cap]);
	free(call->queue);
	if (call->has_status_slice)
		grpc_slice_unref(call->status_slice);
	hs_arena_reset(&call->arena);
	if (call->gcall != NULL)
		grpc_call_unref(call->gcall);
	pthread_mutex_lock(&srv->mu);
	call->free_next = srv->free_calls;
	srv->free_calls = call;
	pthread_mutex_unlock(&srv->mu);
}

void hs_rpc__call_destroy(hs_rpc_call *call)
{
	pthread_mutex_destroy(&call->mu);
	free(call);
}

/* --- finalization ------------------------------------------------------- */

static void finalize(hs_rpc_call *call)
{
	hs_rpc_server *srv = call->srv;
	if (call->accepted) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		double ms = (double)(now.tv_sec - call->started.tv_sec) * 1e3 +
			    (double)(now.tv_nsec - call->started.tv_nsec) / 1e6;
		if (hs_log_min_level <= HS_LOG_INFO) {
			char *peer = grpc_call_get_peer(call->gcall);
			const char *method = call->m != NULL ? call->m->path : "(unknown)";
			char unknown[256];
			if (call->m == NULL) {
				char *s = grpc_slice_to_c_string(call->details.method);
				snprintf(unknown, sizeof(unknown), "%s", s);
				gpr_free(s);
				method = unknown;
			}
			hs_log(HS_LOG_INFO, "rpc", "rpc finished", HS_LS("method", method),
			       HS_LS("code", status_name(call->status)), HS_LD("ms", ms),
			       HS_LS("peer", peer),
			       HS_LS(call->principal.user_id[0] ? "user" : NULL, call->principal.user_id));
			gpr_free(peer);
		}
		pthread_mutex_lock(&srv->mu);
		if (call->live_prev != NULL)
			call->live_prev->live_next = call->live_next;
		else
			srv->live = call->live_next;
		if (call->live_next != NULL)
			call->live_next->live_prev = call->live_prev;
		srv->n_live--;
		pthread_cond_broadcast(&srv->cv);
		pthread_mutex_unlock(&srv->mu);
	}
	hs_rpc__call_release(srv, call);
}

void hs_rpc_call_ref(hs_rpc_call *call)
{
	pthread_mutex_lock(&call->mu);
	call->refs++;
	pthread_mutex_unlock(&call->mu);
}

void hs_rpc_call_unref(hs_rpc_call *call)
{
	pthread_mutex_lock(&call->mu);
	bool last = --call->refs == 0;
	if (last)
		call->dead = true;
	pthread_mutex_unlock(&call->mu);
	if (last)
		finalize(call);
}

/* --- sending ------------------------------------------------------------ */

static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	grpc_slice slice = grpc_slice_malloc(len);
	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	return bb;
}

/* Starts a batch holding one ref; call->mu held. A batch that cannot start
 * (call already gone) is treated as failed: the ref is returned at once. */
static void start_batch_locked(hs_rpc_call *call, const grpc_op *ops, size_t n, rpc_tag *tag)
{
	call->refs++;
	grpc_call_error e = grpc_call_start_batch(call->gcall, ops, n, tag, NULL);
	if (e != GRPC_CALL_OK) {
		hs_log(HS_LOG_ERROR, "rpc", "start_batch failed", HS_LI("error", e),
		       HS_LS("method", call->m ? call->m->path : ""));
		call->refs--; /* caller still holds its own ref: never reaches 0 here */
	}
}

static void add_initial_md_op(hs_rpc_call *call, grpc_op *op)
{
	memset(op, 0, sizeof(*op));
	op->op = GRPC_OP_SEND_INITIAL_METADATA;
	op->data.send_initial_metadata.count = call->n_init;
	op->data.send_initial_metadata.metadata = call->init_md;
	call->initial_md_sent = true;
}

/* The final batch: [initial metadata] [message] status. call->mu held. */
static void start_status_locked(hs_rpc_call *call, grpc_byte_buffer *msg)
{
	grpc_op ops[3];
	size_t n = 0;
	call->status_started = true;
	if (!call->initial_md_sent)
		add_initial_md_op(call, &ops[n++]);
	if (msg != NULL) {
		memset(&ops[n], 0, sizeof(ops[n]));
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = msg;
		n++;
	}
	memset(&ops[n], 0, sizeof(ops[n]));
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = call->status;
	ops[n].data.send_status_from_server.trailing_metadata_count = call->n_trail;
	ops[n].data.send_status_from_server.trailing_metadata = call->trail_md;
	ops[n].data.send_status_from_server.status_details =
		call->has_status_slice ? &call->status_slice : NULL;
	n++;
	start_batch_locked(call, ops, n, &call->t_status);
	if (msg != NULL)
		grpc_byte_buffer_destroy(msg);
}

static void set_status_locked(hs_rpc_call *call, grpc_status_code code, const char *msg)
{
	call->status = code;
	if (msg != NULL && msg[0] != '\0' && !call->has_status_slice) {
		call->status_slice = grpc_slice_from_copied_string(msg);
		call->has_status_slice = true;
	}
}

static void start_send_locked(hs_rpc_call *call, grpc_byte_buffer *bb)
{
	grpc_op ops[2];
	size_t n = 0;
	if (!call->initial_md_sent)
		add_initial_md_op(call, &ops[n++]);
	memset(&ops[n], 0, sizeof(ops[n]));
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = bb;
	n++;
	call->send_busy = true;
	start_batch_locked(call, ops, n, &call->t_send);
	grpc_byte_buffer_destroy(bb);
}

/* Ends a call with a status (and optionally one last message). */
static void finish_with(hs_rpc_call *call, grpc_status_code code, const char *msg,
			grpc_byte_buffer *last)
{
	pthread_mutex_lock(&call->mu);
	if (call->finishing || call->dead) {
		pthread_mutex_unlock(&call->mu);
		if (last != NULL)
			grpc_byte_buffer_destroy(last);
		return;
	}
	call->finishing = true;
	set_status_locked(call, code, msg);
	if (call->close_done && call->client_cancelled) {
		/* nobody to tell */
		if (last != NULL)
			grpc_byte_buffer_destroy(last);
	} else if (!call->send_busy) {
		start_status_locked(call, last);
	} else if (last != NULL) {
		grpc_byte_buffer_destroy(last); /* streams never pass a last message */
	}
	pthread_mutex_unlock(&call->mu);
}

static void finish_code(hs_rpc_call *call, int code, const char *msg)
{
	finish_with(call, (grpc_status_code)hs_code_to_grpc((hs_code)code), msg, NULL);
}

void hs_rpc_call_finish(hs_rpc_call *call, int code, const char *msg)
{
	finish_code(call, code, msg);
}

int hs_rpc_call_send(hs_rpc_call *call, const ProtobufCMessage *msg)
{
	grpc_byte_buffer *bb = pack(msg);
	pthread_mutex_lock(&call->mu);
	int rc = HS_OK;
	if (call->finishing || call->dead || call->close_done) {
		rc = HS_CANCELLED;
	} else if (!call->send_busy) {
		start_send_locked(call, bb);
		bb = NULL;
	} else {
		if (call->q_cap == 0)
			call->q_cap = 64;
		if (call->queue == NULL)
			call->queue = calloc(call->q_cap, sizeof(*call->queue));
		if (call->queue == NULL) {
			rc = HS_INTERNAL;
		} else if (call->q_len == call->q_cap) {
			rc = HS_LIMIT;
		} else {
			call->queue[(call->q_head + call->q_len) % call->q_cap] = bb;
			call->q_len++;
			bb = NULL;
		}
	}
	pthread_mutex_unlock(&call->mu);
	if (bb != NULL)
		grpc_byte_buffer_destroy(bb);
	return rc;
}

void hs_rpc_call_set_send_queue(hs_rpc_call *call, unsigned cap)
{
	pthread_mutex_lock(&call->mu);
	if (call->queue == NULL && cap > 0)
		call->q_cap = cap;
	pthread_mutex_unlock(&call->mu);
}

void hs_rpc_call_on_done(hs_rpc_call *call, hs_rpc_done_fn fn, void *payload)
{
	pthread_mutex_lock(&call->mu);
	call->on_done = fn;
	call->on_done_payload = payload;
	/* The call already ended (on_close ran before anyone registered): run
	 * the callback here, once. */
	bool run = fn != NULL && call->close_done && !call->done_notified;
	if (run)
		call->done_notified = true;
	pthread_mutex_unlock(&call->mu);
	if (run)
		fn(call, payload);
}

/* --- handler-facing accessors ------------------------------------------- */

void *hs_rpc_call_payload(const hs_rpc_call *call) { return call->m ? call->m->payload : NULL; }
const char *hs_rpc_call_method(const hs_rpc_call *call) { return call->m ? call->m->path : ""; }
const hs_rpc_principal *hs_rpc_call_principal(const hs_rpc_call *call) { return &call->principal; }
bool hs_rpc_call_cancelled(const hs_rpc_call *call) { return atomic_load(&((hs_rpc_call *)call)->cancelled); }

void *hs_rpc_call_alloc(hs_rpc_call *call, size_t size)
{
	/* Arena use is confined to the thread running the handler at a time. */
	return hs_arena_alloc(&call->arena, size);
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

static bool md_valid(const char *s, bool key)
{
	if (s == NULL || s[0] == '\0')
		return !key && s != NULL;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (key ? !((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
			    *c == '-' || *c == '_' || *c == '.')
			: (*c < 0x20 || *c == 0x7f))
			return false;
	}
	return true;
}

static int add_md(hs_rpc_call *call, grpc_metadata *arr, size_t *n, const char *key,
		  const char *value)
{
	if (!md_valid(key, true) || !md_valid(value, false))
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

/* --- running handlers --------------------------------------------------- */

static void *arena_alloc_cb(void *data, size_t size) { return hs_arena_alloc(data, size); }
static void arena_free_cb(void *data, void *ptr) { (void)data; (void)ptr; }

/* Unpacks a received buffer into the call arena; NULL if malformed. */
static const ProtobufCMessage *unpack(hs_rpc_call *call, grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader reader;
	if (!grpc_byte_buffer_reader_init(&reader, bb))
		return NULL;
	grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	ProtobufCAllocator alloc = { arena_alloc_cb, arena_free_cb, &call->arena };
	ProtobufCMessage *msg = protobuf_c_message_unpack(
		call->m->desc->input, &alloc, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	return msg;
}

static void arm_recv(hs_rpc_call *call)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &call->recv_buf;
	pthread_mutex_lock(&call->mu);
	if (!call->finishing && !call->dead)
		start_batch_locked(call, &op, 1, &call->t_recv);
	pthread_mutex_unlock(&call->mu);
}

/* Runs the handler for call->req; on the CQ thread or a worker. */
static void run_handler(hs_rpc_call *call)
{
	const hs_rpc_handler *h = &call->m->handler;
	hs_error err = { 0 };
	int rc;
	if (h->kind == HS_RPC_UNARY) {
		ProtobufCMessage *resp = NULL;
		rc = h->unary(call, call->req, &resp, &err);
		if (rc == HS_OK && resp == NULL)
			rc = hs_error_set(&err, HS_INTERNAL, "%s returned no response", call->m->path);
		if (rc == HS_OK && resp->descriptor != call->m->desc->output)
			rc = hs_error_set(&err, HS_INTERNAL, "%s returned the wrong message type",
					  call->m->path);
		if (rc == HS_OK)
			finish_with(call, GRPC_STATUS_OK, NULL, pack(resp));
		else
			finish_code(call, rc, err.msg);
		return;
	}
	bool half_closed = call->req == NULL;
	rc = h->stream(call, call->req, &err);
	if (rc != HS_OK) {
		finish_code(call, rc, err.msg);
	} else if (h->kind == HS_RPC_BIDI_STREAM && half_closed) {
		if (!(h->flags & HS_RPC_SELF_FINISH))
			finish_code(call, HS_OK, NULL);
	} else if (h->kind == HS_RPC_BIDI_STREAM) {
		pthread_mutex_lock(&call->mu);
		bool hold = call->recv_hold;
		call->recv_parked = hold;
		pthread_mutex_unlock(&call->mu);
		if (!hold)
			arm_recv(call);
	}
}

void hs_rpc_call_pause_recv(hs_rpc_call *call)
{
	pthread_mutex_lock(&call->mu);
	call->recv_hold = true;
	pthread_mutex_unlock(&call->mu);
}

void hs_rpc_call_resume_recv(hs_rpc_call *call)
{
	pthread_mutex_lock(&call->mu);
	bool arm = call->recv_parked;
	call->recv_hold = false;
	call->recv_parked = false;
	pthread_mutex_unlock(&call->mu);
	if (arm)
		arm_recv(call);
}

static void run_on_worker(void *arg)
{
	hs_rpc_call *call = arg;
	run_handler(call);
	hs_rpc_call_unref(call);
}

/* Hands the request to its handler: inline, or on the pool when it may block. */
static void dispatch(hs_rpc_call *call)
{
	if (!(call->m->handler.flags & HS_RPC_BLOCKING)) {
		run_handler(call);
		return;
	}
	hs_rpc_call_ref(call);
	if (!hs_pool_submit(call->srv->pool, run_on_worker, call)) {
		finish_code(call, HS_LIMIT, "server busy: worker queue full");
		hs_rpc_call_unref(call);
	}
}

/* A new call arrived: check it and run its handler. */
static void accept_call(hs_rpc_call *call)
{
	hs_rpc_server *srv = call->srv;
	clock_gettime(CLOCK_MONOTONIC, &call->started);
	pthread_mutex_lock(&srv->mu);
	call->accepted = true;
	call->live_next = srv->live;
	if (srv->live != NULL)
		srv->live->live_prev = call;
	srv->live = call;
	srv->n_live++;
	pthread_mutex_unlock(&srv->mu);

	/* Learn of cancellation (and the end of the call) as early as possible. */
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &call->client_cancelled;
	pthread_mutex_lock(&call->mu);
	start_batch_locked(call, &op, 1, &call->t_close);
	pthread_mutex_unlock(&call->mu);

	char msg[320];
	if (call->m == NULL) {
		call->deadline = call->details.deadline; /* generic calls carry it there */
		char *path = grpc_slice_to_c_string(call->details.method);
		snprintf(msg, sizeof(msg), "unknown method %s", path);
		gpr_free(path);
		finish_code(call, HS_UNIMPLEMENTED, msg);
		return;
	}
	rpc_method *m = call->m;
	if (!m->implemented) {
		snprintf(msg, sizeof(msg), "%s is not implemented yet", m->path + 1);
		finish_code(call, HS_UNIMPLEMENTED, msg);
		return;
	}
	if (!(m->handler.flags & HS_RPC_PUBLIC)) {
		hs_error err = { 0 };
		int rc = srv->auth != NULL
				 ? srv->auth(call, &call->principal, &err, srv->auth_payload)
				 : hs_error_set(&err, HS_UNAUTH, "no authenticator configured");
		if (rc != HS_OK) {
			finish_code(call, rc == HS_LIMIT ? HS_LIMIT : HS_UNAUTH,
				    err.msg[0] ? err.msg : "authentication required");
			return;
		}
		call->principal.authenticated = true;
	}
	if (hs_rpc_call_deadline_left_ms(call) <= 0) {
		finish_code(call, HS_TIMEOUT, "deadline exceeded before the call started");
		return;
	}
	if (m->handler.kind == HS_RPC_BIDI_STREAM) {
		arm_recv(call);
		return;
	}
	if (call->payload == NULL) {
		finish_code(call, HS_INVALID, "missing request message");
		return;
	}
	call->req = unpack(call, call->payload);
	grpc_byte_buffer_destroy(call->payload);
	call->payload = NULL;
	if (call->req == NULL) {
		snprintf(msg, sizeof(msg), "malformed %s message", m->desc->input->name);
		finish_code(call, HS_INVALID, msg);
		return;
	}
	dispatch(call);
}

static void on_recv(hs_rpc_call *call, bool ok)
{
	grpc_byte_buffer *bb = call->recv_buf;
	call->recv_buf = NULL;
	if (!ok) { /* the call is going away; TAG_CLOSE does the rest */
		if (bb != NULL)
			grpc_byte_buffer_destroy(bb);
		return;
	}
	if (bb == NULL) {
		call->req = NULL; /* client finished sending */
	} else {
		/* Each message starts from an empty arena, so a long stream does not
		 * grow without bound. Safe: the previous handler run is over (recv
		 * is re-armed only after it returns), sent messages are packed into
		 * their own buffers, and nothing else lives there unless response
		 * metadata was added (its slices point into the arena). */
		if (call->n_init == 0 && call->n_trail == 0)
			hs_arena_reset(&call->arena);
		call->req = unpack(call, bb);
		grpc_byte_buffer_destroy(bb);
		if (call->req == NULL) {
			char msg[320];
			snprintf(msg, sizeof(msg), "malformed %s message", call->m->desc->input->name);
			finish_code(call, HS_INVALID, msg);
			return;
		}
	}
	dispatch(call);
}

static void on_close(hs_rpc_call *call)
{
	pthread_mutex_lock(&call->mu);
	call->close_done = true;
	if (call->client_cancelled) {
		atomic_store(&call->cancelled, true);
		if (!call->status_started)
			call->status = hs_rpc_call_deadline_left_ms(call) <= 0
					       ? GRPC_STATUS_DEADLINE_EXCEEDED
					       : GRPC_STATUS_CANCELLED;
	}
	hs_rpc_done_fn fn = call->done_notified ? NULL : call->on_done;
	void *payload = call->on_done_payload;
	if (fn != NULL) /* else a later hs_rpc_call_on_done() runs it */
		call->done_notified = true;
	pthread_mutex_unlock(&call->mu);
	if (fn != NULL)
		fn(call, payload);
}

static void on_send(hs_rpc_call *call, bool ok)
{
	pthread_mutex_lock(&call->mu);
	call->send_busy = false;
	if (ok && call->q_len > 0 && !call->close_done) {
		grpc_byte_buffer *bb = call->queue[call->q_head];
		call->q_head = (call->q_head + 1) % call->q_cap;
		call->q_len--;
		start_send_locked(call, bb);
	} else if (ok && call->finishing && !call->status_started && !call->close_done) {
		start_status_locked(call, NULL);
	}
	pthread_mutex_unlock(&call->mu);
}

void hs_rpc__on_tag(rpc_tag *tag, bool ok)
{
	hs_rpc_call *call = tag->call;
	switch (tag->kind) {
	case TAG_NEW:
		if (!ok) { /* server shutting down: the request was never matched */
			hs_rpc__call_release(call->srv, call);
			return;
		}
		hs_rpc__request(call->srv, call->m, call->cqt); /* re-arm first */
		accept_call(call);
		return; /* the TAG_NEW ref is now the "client side open" ref */
	case TAG_CLOSE:
		on_close(call);
		hs_rpc_call_unref(call); /* the "client side open" ref */
		break;
	case TAG_SEND:
		on_send(call, ok);
		break;
	case TAG_RECV:
		on_recv(call, ok);
		break;
	case TAG_STATUS:
	case TAG_SHUTDOWN:
		break;
	}
	hs_rpc_call_unref(call); /* the batch's ref */
}
