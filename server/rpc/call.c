/* The per-call state machine.
 *
 *   requested --TAG_NEW ok--> accepted --(unpack, auth, deadline)--> handler
 *       |                        |                                    |
 *   TAG_NEW !ok (shutdown)       +-- RECV_CLOSE armed (see below) --->+
 *       v                                                             v
 *   recycled              sends: one SEND_MESSAGE at a time, then SEND_STATUS
 *                                     |
 *                       refs == 0 --> finalize: log, unref, recycle
 *
 * RECV_CLOSE_ON_SERVER (cancellation, the end of the call) is armed at once
 * for streams, and for a unary call as soon as it leaves the CQ thread's
 * hands (queued on a lane, or its handler returned HS_RPC_PENDING). A unary
 * call answered before that (an inline handler, or an error before the
 * handler) sends it in its final batch instead, as one batch and one
 * completion (TAG_CLOSE) with the status: nothing could have looked at
 * the cancellation meanwhile but the CQ thread running it. So does a call
 * whose handler returned HS_RPC_PENDING_SOON (answered within a short
 * bound from another thread, cancellation not looked at).
 *
 * Reference counting: a requested call holds 1 ref (its TAG_NEW). Once
 * accepted that ref means "the client side is open" and is dropped when
 * TAG_CLOSE completes. Every batch in flight holds one ref, a handler running
 * on the pool holds one, and services holding a stream hold one each. The
 * call is finalized when the count reaches 0, so a completion can never see
 * a recycled call. Lock order: srv->mu before call->mu, never the reverse;
 * a lane's lock is only taken with neither held.
 *
 * Writable callbacks (hs_rpc_call_when_writable), per call:
 *
 *   idle --arm--> armed --queue at most half full, call open--> scheduled
 *     ^             (a write completion or the arm itself)        (job on
 *     |                                                            the lane,
 *     +---------- job ran fn (fn may arm again) <------------------ 1 ref)
 *
 * The done callback waits while a job is scheduled or running (it usually
 * frees what fn uses): it runs when the call has ended and no job is. */
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "log.h"
#include "rpc_internal.h"
#include "trace.h"

/* An empty hs_error without clearing all of its ~600 bytes: its strings
 * are only ever read up to their NUL. */
static inline void err_clear(hs_error *e)
{
	e->code = HS_OK;
	e->msg[0] = e->reason[0] = e->where[0] = '\0';
}

/* --- sending ------------------------------------------------------------ */

grpc_byte_buffer *hs_rpc__pack(const ProtobufCMessage *msg)
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

/* The RECV_CLOSE_ON_SERVER op (completes as TAG_CLOSE). */
static void recv_close_op(hs_rpc_call *call, grpc_op *op)
{
	memset(op, 0, sizeof(*op));
	op->op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op->data.recv_close_on_server.cancelled = &call->client_cancelled;
}

/* RECV_CLOSE_ON_SERVER, unless armed already (with its own batch, or in
 * the final one). call->mu held. */
static void arm_close_locked(hs_rpc_call *call)
{
	if (call->close_armed)
		return;
	call->close_armed = true;
	grpc_op op;
	recv_close_op(call, &op);
	start_batch_locked(call, &op, 1, &call->t_close);
}

static void arm_close(hs_rpc_call *call)
{
	pthread_mutex_lock(&call->mu);
	arm_close_locked(call);
	pthread_mutex_unlock(&call->mu);
}

/* The final batch: [initial metadata] [message] status [RECV_CLOSE when
 * not armed yet: then it completes as TAG_CLOSE]. Prepared under call->mu
 * (the flags, the batch's ref) and started once it is released
 * (status_batch_start): gRPC may write (sendmsg) and post the completion
 * inside grpc_call_start_batch, and the CQ thread taking that completion
 * would wait for call->mu meanwhile (seen as the most frequent context
 * switch of heartbeats answered from the committer thread). Once prepared
 * no other batch starts on the call (a stream's read may already be in
 * flight): finishing, status_started and close_armed hold every other
 * path back. */
typedef struct status_batch {
	grpc_op ops[4];
	size_t n;
	rpc_tag *tag;
	grpc_byte_buffer *msg; /* destroyed once started (gRPC took its slices) */
} status_batch;

static void status_batch_locked(hs_rpc_call *call, grpc_byte_buffer *msg, status_batch *b)
{
	grpc_op *ops = b->ops;
	size_t n = 0;
	b->tag = &call->t_status;
	b->msg = msg;
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
	if (!call->close_armed) {
		call->close_armed = true;
		recv_close_op(call, &ops[n++]);
		b->tag = &call->t_close;
	}
	b->n = n;
	if (call->accepted)
		hs_rpc__count_handled(call, hs_rpc__elapsed_ms(call));
	call->refs++; /* the batch's */
}

/* call->mu not held. The count never reaches 0 here: the caller holds a
 * ref of its own, or (the drain loop) the call is live, so its "client
 * side open" ref is still held. If gRPC refuses the batch and it carried
 * RECV_CLOSE, the close is started alone with the batch's ref, so that
 * TAG_CLOSE still ends the call (else it would never be finalized and a
 * drain would wait for it forever). */
static void status_batch_start(hs_rpc_call *call, status_batch *b)
{
	grpc_call_error e = grpc_call_start_batch(call->gcall, b->ops, b->n, b->tag, NULL);
	if (e != GRPC_CALL_OK) {
		hs_log(HS_LOG_ERROR, "rpc", "start_batch failed", HS_LI("error", e),
		       HS_LS("method", call->m ? call->m->path : ""));
		if (b->tag == &call->t_close) {
			grpc_op op;
			recv_close_op(call, &op);
			e = grpc_call_start_batch(call->gcall, &op, 1, &call->t_close, NULL);
		}
		if (e != GRPC_CALL_OK) {
			pthread_mutex_lock(&call->mu);
			call->refs--;
			pthread_mutex_unlock(&call->mu);
		}
	}
	if (b->msg != NULL)
		grpc_byte_buffer_destroy(b->msg);
}

static void set_status_locked(hs_rpc_call *call, grpc_status_code code, const char *msg)
{
	call->status = code;
	if (msg != NULL && msg[0] != '\0' && !call->has_status_slice) {
		call->status_slice = grpc_slice_from_copied_string(msg);
		call->has_status_slice = true;
	}
}

void hs_rpc__start_send_locked(hs_rpc_call *call, grpc_byte_buffer *bb)
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
	/* A client already gone: nobody to tell, and the log and the metrics
	 * keep the status on_close set (CANCELLED or DEADLINE_EXCEEDED). A
	 * send in flight: on_send starts the status when it completes
	 * (streams never pass a last message). */
	bool gone = call->close_done && call->client_cancelled;
	bool start = !gone && !call->send_busy;
	status_batch b;
	if (!gone)
		set_status_locked(call, code, msg);
	if (start)
		status_batch_locked(call, last, &b);
	else if (last != NULL)
		grpc_byte_buffer_destroy(last);
	pthread_mutex_unlock(&call->mu);
	if (start)
		status_batch_start(call, &b);
}

void hs_rpc__finish_code(hs_rpc_call *call, int code, const char *msg)
{
	finish_with(call, (grpc_status_code)hs_code_to_grpc((hs_code)code), msg, NULL);
}

void hs_rpc_call_finish(hs_rpc_call *call, int code, const char *msg)
{
	hs_rpc__finish_code(call, code, msg);
}

void hs_rpc__call_finish_status(hs_rpc_call *call, grpc_status_code code, const char *msg)
{
	finish_with(call, code, msg, NULL);
}

/* --- running handlers --------------------------------------------------- */

/* Decodes a received buffer into the call arena (bounded depth and memory,
 * see decode.h): HS_OK with call->req set, or an error in err. */
static int unpack(hs_rpc_call *call, grpc_byte_buffer *bb, hs_error *err)
{
	grpc_byte_buffer_reader reader;
	if (!grpc_byte_buffer_reader_init(&reader, bb))
		return hs_error_set(err, HS_INVALID, "unreadable %s message", call->m->desc->input->name);
	grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	const hs_rpc_config *cfg = &call->srv->cfg;
	size_t len = GRPC_SLICE_LENGTH(all);
	ProtobufCMessage *msg = NULL;
	int rc = hs_rpc__decode(call->m->desc->input, GRPC_SLICE_START_PTR(all), len, call->m->prescan,
				cfg->max_depth,
				hs_rpc__decode_budget(len, 16 * cfg->max_message_bytes), &call->arena,
				&msg, err);
	grpc_slice_unref(all);
	call->req = msg;
	return rc;
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

void hs_rpc__call_read_next(hs_rpc_call *call)
{
	arm_recv(call);
}

/* A handler's error: its reason (if any) as trailing metadata, then the
 * status. The one place hs_error.reason reaches the wire. */
static void finish_error(hs_rpc_call *call, int code, const hs_error *err)
{
	if (err->reason[0] != '\0')
		(void)hs_rpc_call_add_trailing_metadata(call, HS_ERROR_REASON_KEY, err->reason);
	if (err->where[0] != '\0')
		(void)hs_rpc_call_add_trailing_metadata(call, HS_ERROR_WHERE_KEY, err->where);
	hs_rpc__finish_code(call, code, err->msg);
}

/* A unary call whose object lives on another node: the owner's answer,
 * relayed (forward.c). */
static void answer_forwarded(hs_rpc_call *call, const char *where, int lane)
{
	rpc_fwd_result r;
	hs_rpc__forward(call, where, &r);
	/* The slot goes before the answer does: a caller's next call must
	 * not find it still taken by this one. */
	hs_rpc__forward_release(call->srv, lane, call->principal.user_id);
	if (r.status == GRPC_STATUS_OK) {
		hs_rpc__count(call->srv, &call->m->mx.sent);
		finish_with(call, GRPC_STATUS_OK, NULL, r.resp);
		return;
	}
	if (r.reason[0] != '\0')
		(void)hs_rpc_call_add_trailing_metadata(call, HS_ERROR_REASON_KEY, r.reason);
	if (r.where[0] != '\0')
		(void)hs_rpc_call_add_trailing_metadata(call, HS_ERROR_WHERE_KEY, r.where);
	finish_with(call, r.status, r.msg, NULL);
}

/* A unary handler's answer: the response packed, or the error. */
static void answer_unary(hs_rpc_call *call, int rc, ProtobufCMessage *resp, hs_error *err)
{
	if (rc == HS_OK && resp == NULL)
		rc = hs_error_set(err, HS_INTERNAL, "%s returned no response", call->m->path);
	if (rc == HS_OK && resp->descriptor != call->m->desc->output)
		rc = hs_error_set(err, HS_INTERNAL, "%s returned the wrong message type",
				  call->m->path);
	if (rc == HS_OK) {
		hs_rpc__count(call->srv, &call->m->mx.sent);
		finish_with(call, GRPC_STATUS_OK, NULL, hs_rpc__pack(resp));
	} else if (rc > 0) /* HS_RPC_DEFER off the CQ thread, or an unknown positive code */
		hs_rpc__finish_code(call, HS_INTERNAL, "handler returned an unexpected code");
	else
		finish_error(call, rc, err);
}

void hs_rpc_call_complete(hs_rpc_call *call, int rc, ProtobufCMessage *resp, const hs_error *err)
{
	hs_error e = { 0 };
	if (err != NULL)
		e = *err;
	answer_unary(call, rc, resp, &e);
	hs_rpc_call_unref(call); /* the handler's reference */
}

bool hs_rpc_call_on_cq(const hs_rpc_call *call)
{
	return call->on_cq;
}

static bool submit_to_lane(hs_rpc_call *call);

/* Runs the handler for call->req; on the CQ thread (on_cq) or a worker
 * (which holds a ref). */
static void run_handler_body(hs_rpc_call *call, bool on_cq)
{
	const hs_rpc_handler *h = &call->m->handler;
	hs_error err;
	err_clear(&err);
	int rc;
	call->on_cq = on_cq;
	if (h->kind == HS_RPC_UNARY) {
		ProtobufCMessage *resp = NULL;
		rc = h->unary(call, call->req, &resp, &err);
		call->on_cq = false;
		if (rc == HS_RPC_PENDING || rc == HS_RPC_PENDING_SOON) {
			/* hs_rpc_call_complete() answers, from any thread: the
			 * caller (dispatch) holds a ref. */
			if (rc == HS_RPC_PENDING)
				arm_close(call);
			return;
		}
		if (rc == HS_RPC_DEFER && on_cq && call->m->try_inline) {
			(void)submit_to_lane(call);
			return;
		}
		if (rc == HS_UNAVAILABLE && hs_rpc__forward_wanted(call, &err) &&
		    (!on_cq || call->m->lane != LANE_INLINE)) {
			if (on_cq) { /* the handler changed nothing: ask again on its lane */
				(void)submit_to_lane(call);
				return;
			}
			int lane = call->m->lane;
			if (hs_rpc__forward_admit(call->srv, lane, call->principal.user_id)) {
				answer_forwarded(call, err.where, lane);
				return;
			}
			/* No forward slot: the caller gets where to go. */
		}
		answer_unary(call, rc, resp, &err);
		return;
	}
	bool half_closed = call->req == NULL;
	rc = h->stream(call, call->req, &err);
	call->on_cq = false;
	if (rc == HS_UNAVAILABLE && !half_closed && call->fwd == NULL &&
	    hs_rpc__forward_wanted(call, &err)) {
		/* The stream's object lives on another node: relay the whole
		 * stream there (a bidi call's later messages included). */
		hs_rpc__fwd_stream_start(call, err.where);
	} else if (rc != HS_OK) {
		finish_error(call, rc, &err);
	} else if (h->kind == HS_RPC_BIDI_STREAM && half_closed) {
		if (!(h->flags & HS_RPC_SELF_FINISH))
			hs_rpc__finish_code(call, HS_OK, NULL);
	} else if (h->kind == HS_RPC_BIDI_STREAM) {
		pthread_mutex_lock(&call->mu);
		bool hold = call->recv_hold;
		call->recv_parked = hold;
		pthread_mutex_unlock(&call->mu);
		if (!hold)
			arm_recv(call);
	}
}

/* The first value of key (length klen) in the request metadata, not copied:
 * it lives as long as the call. NULL when absent. */
static const char *md_find(const hs_rpc_call *call, const char *key, size_t klen, size_t *len)
{
	for (size_t i = 0; i < call->req_md.count; i++) {
		const grpc_metadata *md = &call->req_md.metadata[i];
		if (GRPC_SLICE_LENGTH(md->key) == klen &&
		    memcmp(GRPC_SLICE_START_PTR(md->key), key, klen) == 0) {
			*len = GRPC_SLICE_LENGTH(md->value);
			return (const char *)GRPC_SLICE_START_PTR(md->value);
		}
	}
	return NULL;
}
#define req_md_find(call, key, len) md_find(call, key, sizeof(key) - 1, len)

/* The call's x-request-id and traceparent (checked; a bad or missing one
 * replaced) become this thread's log context while the handler runs
 * (common/trace.h), and the request id goes back in the initial metadata
 * (not on bidi streams: their handler runs per message, and response
 * metadata would keep the per-message arena from being reset). */
static void run_handler(hs_rpc_call *call, bool on_cq)
{
	if (call->trace_set) { /* a handler tried inline, then deferred to a lane */
		hs_trace_restore(&call->trace);
	} else {
		size_t rl = 0, tl = 0;
		const char *rid = req_md_find(call, "x-request-id", &rl);
		const char *tp = req_md_find(call, "traceparent", &tl);
		hs_trace_begin(rid, rl, tp, tl);
		call->trace = *hs_trace_current();
		call->trace_set = true;
		if (call->m->handler.kind != HS_RPC_BIDI_STREAM) {
			/* Checked (or made) by hs_trace_begin: added as it is,
			 * from call->trace, which lives as long as the call. */
			pthread_mutex_lock(&call->mu);
			if (!call->initial_md_sent && call->n_init < RPC_MAX_MD) {
				grpc_metadata *md = &call->init_md[call->n_init++];
				memset(md, 0, sizeof(*md));
				md->key = grpc_slice_from_static_string("x-request-id");
				md->value = grpc_slice_from_static_string(call->trace.request_id);
			}
			pthread_mutex_unlock(&call->mu);
		}
	}
	run_handler_body(call, on_cq);
	hs_trace_end();
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
	/* It may have waited for its turn: a call whose client left or whose
	 * deadline passed meanwhile is not worth starting. */
	if (hs_rpc_call_cancelled(call))
		hs_rpc__finish_code(call, HS_CANCELLED, "cancelled before it started");
	else if (hs_rpc_call_deadline_left_ms(call) <= 0)
		hs_rpc__finish_code(call, HS_TIMEOUT, "deadline exceeded while waiting for a worker");
	else
		run_handler(call, false);
	hs_rpc_call_unref(call);
}

const char *const hs_rpc__lane_names[N_LANES] = { "main", "long-operation", "heartbeat" };

/* Queues the call on its lane (one reference for the job); on refusal
 * the call is answered RESOURCE_EXHAUSTED. */
static bool submit_to_lane(hs_rpc_call *call)
{
	hs_rpc_server *srv = call->srv;
	int lane = call->m->lane;
	pthread_mutex_lock(&call->mu);
	arm_close_locked(call); /* the worker looks at cancellation */
	call->refs++;           /* the job's */
	pthread_mutex_unlock(&call->mu);
	hs_pool_rc r = hs_pool_submit_as(srv->lanes[lane], hs_rpc__lane_key(call), false,
					 run_on_worker, call);
	if (r == HS_POOL_OK)
		return true;
	hs_rpc__count(srv, &srv->rejected[lane]);
	char msg[256];
	if (r == HS_POOL_USER_FULL)
		snprintf(msg, sizeof(msg),
			 "per-user limit: %u calls of yours already waiting or running in the %s lane "
			 "(--user-max-calls)",
			 srv->cfg.user_max_calls, hs_rpc__lane_names[lane]);
	else if (lane == LANE_MAIN)
		snprintf(msg, sizeof(msg), "server busy: worker queue full (%u waiting)",
			 srv->cfg.worker_queue);
	else
		snprintf(msg, sizeof(msg), "server busy: %s queue full (%u waiting)",
			 hs_rpc__lane_names[lane], srv->cfg.worker_queue);
	hs_rpc__finish_code(call, HS_LIMIT, msg);
	hs_rpc_call_unref(call);
	return false;
}

/* Hands the request to its handler: inline (also first for
 * HS_RPC_TRY_INLINE), or on its lane when it may block. */
static void dispatch(hs_rpc_call *call)
{
	if (call->m->lane != LANE_INLINE && !call->m->try_inline) {
		(void)submit_to_lane(call);
	} else if (call->m->handler.kind == HS_RPC_UNARY) {
		/* A ref while it runs: once answered (possibly from another
		 * thread, HS_RPC_PENDING) the call may end before the handler
		 * has returned here. */
		hs_rpc_call_ref(call);
		run_handler(call, true);
		hs_rpc_call_unref(call);
	} else {
		run_handler(call, true);
	}
}

/* Counts call as accepted (live list, its method's calls in flight); srv->mu
 * held (hs_rpc__request, as it re-arms). */
void hs_rpc__call_accept_locked(hs_rpc_server *srv, hs_rpc_call *call)
{
	call->accepted = true;
	if (call->m != NULL)
		call->m->live++;
	call->live_next = srv->live;
	if (srv->live != NULL)
		srv->live->live_prev = call;
	srv->live = call;
	srv->n_live++;
}

/* A new call arrived (accepted by hs_rpc__request): check it and run its
 * handler. */
static void accept_call(hs_rpc_call *call)
{
	hs_rpc_server *srv = call->srv;

	/* A stream learns of cancellation (and of its end) as early as
	 * possible; a unary call when it leaves this thread (see the top). */
	if (call->m != NULL && call->m->handler.kind != HS_RPC_UNARY)
		arm_close(call);

	char msg[320];
	if (call->m == NULL) {
		call->deadline = call->details.deadline; /* generic calls carry it there */
		char *path = grpc_slice_to_c_string(call->details.method);
		snprintf(msg, sizeof(msg), "unknown method %s", path);
		gpr_free(path);
		hs_rpc__finish_code(call, HS_UNIMPLEMENTED, msg);
		return;
	}
	rpc_method *m = call->m;
	hs_rpc__count(srv, &m->mx.started);
	if (!m->implemented) {
		snprintf(msg, sizeof(msg), "%s is not implemented yet", m->path + 1);
		hs_rpc__finish_code(call, HS_UNIMPLEMENTED, msg);
		return;
	}
	if (!(m->handler.flags & HS_RPC_PUBLIC)) {
		hs_error err;
		err_clear(&err);
		int rc = srv->auth != NULL
				 ? srv->auth(call, &call->principal, &err, srv->auth_payload)
				 : hs_error_set(&err, HS_UNAUTH, "no authenticator configured");
		if (rc != HS_OK) {
			bool kept = rc == HS_LIMIT || rc == HS_DENIED || rc == HS_UNAVAILABLE ||
				    rc == HS_INTERNAL;
			hs_rpc__finish_code(call, kept ? rc : HS_UNAUTH,
				    err.msg[0] ? err.msg : "authentication required");
			return;
		}
		call->principal.authenticated = true;
	}
	if (hs_rpc_call_deadline_left_ms(call) <= 0) {
		hs_rpc__finish_code(call, HS_TIMEOUT, "deadline exceeded before the call started");
		return;
	}
	if (m->handler.kind != HS_RPC_UNARY) {
		hs_error err;
		err_clear(&err);
		if (hs_rpc__stream_enter(srv, call, &err) != HS_OK) {
			hs_rpc__finish_code(call, err.code, err.msg);
			return;
		}
	}
	if (m->handler.kind == HS_RPC_BIDI_STREAM) {
		arm_recv(call);
		return;
	}
	if (call->payload == NULL) {
		hs_rpc__finish_code(call, HS_INVALID, "missing request message");
		return;
	}
	hs_error err;
	err_clear(&err);
	int rc = unpack(call, call->payload, &err);
	grpc_byte_buffer_destroy(call->payload);
	call->payload = NULL;
	if (rc != HS_OK) {
		hs_rpc__finish_code(call, rc, err.msg);
		return;
	}
	hs_rpc__count(srv, &m->mx.received);
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
	if (call->fwd != NULL) { /* relayed to the owner node as it is */
		if (bb != NULL && !hs_rpc__credential_holds(call)) {
			grpc_byte_buffer_destroy(bb);
			return;
		}
		if (bb != NULL)
			hs_rpc__count(call->srv, &call->m->mx.received);
		hs_rpc__fwd_stream_up(call, bb);
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
		if (!hs_rpc__credential_holds(call)) { /* no input from a revoked caller either */
			grpc_byte_buffer_destroy(bb);
			return;
		}
		hs_error err;
		err_clear(&err);
		int rc = unpack(call, bb, &err);
		grpc_byte_buffer_destroy(bb);
		if (rc != HS_OK) {
			hs_rpc__finish_code(call, rc, err.msg);
			return;
		}
		hs_rpc__count(call->srv, &call->m->mx.received);
	}
	dispatch(call);
}

#define DEADLINE_SLACK_MS 50

/* TAG_CLOSE: then drops the "client side open" ref and the batch's. */
static void on_close(hs_rpc_call *call)
{
	pthread_mutex_lock(&call->mu);
	call->close_done = true;
	if (call->client_cancelled) {
		atomic_store(&call->cancelled, true);
		/* The server's deadline trails the client's by the time the
		 * headers took to arrive, so a client that gives up at its
		 * deadline is seen a few ms early: a cancel within the last
		 * DEADLINE_SLACK_MS is the deadline. */
		if (!call->status_started)
			call->status = hs_rpc_call_deadline_left_ms(call) <= DEADLINE_SLACK_MS
					       ? GRPC_STATUS_DEADLINE_EXCEEDED
					       : GRPC_STATUS_CANCELLED;
	}
	call->wr_armed = false; /* no more room will come */
	void *payload;
	hs_rpc_done_fn fn = hs_rpc__take_done_locked(call, &payload);
	if (fn == NULL && call->fwd == NULL) { /* the usual case: one lock */
		bool last = hs_rpc__drop_refs_locked(call, 2);
		pthread_mutex_unlock(&call->mu);
		if (last)
			hs_rpc__finalize(call);
		return;
	}
	pthread_mutex_unlock(&call->mu);
	if (fn != NULL) /* else hs_rpc_call_on_done() or the writable job runs it */
		fn(call, payload);
	if (call->fwd != NULL)
		hs_rpc__fwd_stream_closed(call);
	hs_rpc__unref_n(call, 2);
}

static void on_send(hs_rpc_call *call, bool ok)
{
	pthread_mutex_lock(&call->mu);
	call->send_busy = false;
	status_batch b;
	bool start = false;
	if (ok && call->q_len > 0 && !call->close_done) {
		grpc_byte_buffer *bb = call->queue[call->q_head];
		call->q_head = (call->q_head + 1) % call->q_cap;
		call->q_len--;
		hs_rpc__start_send_locked(call, bb);
	} else if (ok && call->finishing && !call->status_started && !call->close_done) {
		status_batch_locked(call, NULL, &b);
		start = true;
	}
	bool fire = hs_rpc__writable_fire_locked(call);
	bool pull = call->fwd_room_wait && ok && !call->send_busy && !call->finishing &&
		    !call->close_done;
	if (!call->send_busy)
		call->fwd_room_wait = false;
	pthread_mutex_unlock(&call->mu);
	if (start) /* the send batch's ref, dropped by our caller, keeps it */
		status_batch_start(call, &b);
	if (fire)
		hs_rpc__writable_schedule(call);
	if (pull)
		hs_rpc__fwd_stream_pull(call);
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
		clock_gettime(CLOCK_MONOTONIC, &call->started);
		hs_rpc__request(call->srv, call->m, call->cqt, call); /* re-arm first */
		accept_call(call);
		return; /* the TAG_NEW ref is now the "client side open" ref */
	case TAG_CLOSE:
		on_close(call); /* drops the "client side open" ref and the batch's */
		return;
	case TAG_SEND:
		on_send(call, ok);
		break;
	case TAG_RECV:
		on_recv(call, ok);
		break;
	case TAG_FWD_START:
	case TAG_FWD_RECV:
	case TAG_FWD_SEND:
	case TAG_FWD_STATUS:
		hs_rpc__fwd_stream_on_tag(tag, ok);
		break;
	case TAG_STATUS:
	case TAG_SHUTDOWN:
		break;
	}
	hs_rpc_call_unref(call); /* the batch's ref */
}
