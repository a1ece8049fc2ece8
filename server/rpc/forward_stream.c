/* Forwarding a stream to the node that holds its object (issue 19).
 *
 * A server-streaming or bidi call of a method flagged HS_RPC_FORWARD whose
 * handler answered the first request HS_UNAVAILABLE with err->where (the
 * sandbox runs on another node) is relayed there as a whole: one upstream
 * client call, a child of the server call (the caller's deadline, none
 * when it set none: a followed log may stay open for hours; gRPC
 * propagates its cancellation), carrying the same metadata as a unary
 * forward (forward.c: the caller's authorization, x-request-id,
 * traceparent, harness-forwarded-by). No thread waits: the upstream
 * call's batches complete on the server call's completion queue
 * (TAG_FWD_*), and each holds a reference on the server call.
 *
 *   owner -> caller: one RECV_MESSAGE outstanding; its bytes are sent on
 *     unchanged (hs_rpc__call_send_relayed, which rechecks the caller's
 *     credential like every stream message), and the next is read only
 *     once that one is written (call.c's on_send calls _pull): one message
 *     in hand, HTTP/2 flow control holds the owner back meanwhile.
 *   caller -> owner (bidi): the first request re-packed in TAG_FWD_START;
 *     each later message (or the half-close) sent upstream as received,
 *     the client's next one read only once it is sent.
 *   end: when the owner's status has arrived and its messages are all
 *     relayed, that status, message and its hs-error-code and
 *     harness-node-address trailers end the caller's call (an UNAVAILABLE
 *     naming no node, i.e. the owner unreachable, becomes "forward to ADDR:
 *     ..." with ADDR as harness-node-address). The caller's call ending
 *     first (cancel, deadline, credential, shutdown) cancels the upstream.
 *
 * The relay stays counted in the caller's open streams at this node (the
 * stream bound of streams.c) and at the owner. State is under fwd->mu,
 * never taken with call->mu held. */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "utf8.h"
#include "rpc_internal.h"

typedef struct rpc_fwd_stream rpc_fwd_stream;
struct rpc_fwd_stream {
	pthread_mutex_t mu;
	hs_rpc_call *call;
	grpc_call *up;
	rpc_fwd_chan *chan; /* a reference to the cached channel to where, or NULL */
	char where[HS_ERROR_WHERE_MAX];
	bool bidi;
	rpc_tag t_start, t_recv, t_send, t_status;
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *recv_bb;
	grpc_status_code status;
	grpc_slice details;
	bool recv_end, status_done, relayed, half_closed;
};

/* Starts one upstream batch holding a server-call ref; false when refused. */
static bool up_batch(rpc_fwd_stream *f, const grpc_op *ops, size_t n, rpc_tag *tag)
{
	hs_rpc_call_ref(f->call);
	if (grpc_call_start_batch(f->up, ops, n, tag, NULL) == GRPC_CALL_OK)
		return true;
	hs_log(HS_LOG_ERROR, "rpc", "forwarded stream: start_batch failed",
	       HS_LS("to", f->where));
	hs_rpc_call_unref(f->call); /* the caller holds its own ref: never the last */
	return false;
}

static void fail_start(hs_rpc_call *call, const char *where, const char *why)
{
	char msg[HS_ERROR_MSG_MAX];
	snprintf(msg, sizeof(msg), "forward to %.96s: %s", where, why);
	(void)hs_rpc_call_add_trailing_metadata(call, HS_ERROR_WHERE_KEY, where);
	hs_rpc__call_finish_status(call, GRPC_STATUS_UNAVAILABLE, msg);
}

static void arm_up_recv(rpc_fwd_stream *f)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &f->recv_bb;
	if (!up_batch(f, &op, 1, &f->t_recv)) {
		pthread_mutex_lock(&f->mu);
		f->recv_end = true;
		pthread_mutex_unlock(&f->mu);
		grpc_call_cancel(f->up, NULL);
	}
}

void hs_rpc__fwd_stream_start(hs_rpc_call *call, const char *where)
{
	hs_rpc_server *srv = call->srv;
	rpc_fwd_stream *f = calloc(1, sizeof(*f));
	if (f == NULL) {
		fail_start(call, where, "out of memory");
		return;
	}
	pthread_mutex_init(&f->mu, NULL);
	f->call = call;
	f->bidi = call->m->handler.kind == HS_RPC_BIDI_STREAM;
	snprintf(f->where, sizeof(f->where), "%s", where);
	f->t_start = (rpc_tag){ TAG_FWD_START, call };
	f->t_recv = (rpc_tag){ TAG_FWD_RECV, call };
	f->t_send = (rpc_tag){ TAG_FWD_SEND, call };
	f->t_status = (rpc_tag){ TAG_FWD_STATUS, call };
	grpc_metadata_array_init(&f->init_md);
	grpc_metadata_array_init(&f->trail_md);
	f->details = grpc_empty_slice();
	f->status = GRPC_STATUS_UNKNOWN;
	call->fwd = f; /* freed with the call (hs_rpc__fwd_stream_free) */

	f->chan = hs_rpc__forward_channel(srv, f->where);
	if (f->chan == NULL) {
		fail_start(call, f->where, "no channel (TLS credentials?)");
		return;
	}
	grpc_channel *ch = hs_rpc__forward_chan_channel(f->chan);
	/* The caller's remaining deadline; none when it set none. */
	int64_t left = hs_rpc_call_deadline_left_ms(call);
	gpr_timespec deadline =
		left == INT64_MAX ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
				  : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
						 gpr_time_from_millis(left > 0 ? left : 1, GPR_TIMESPAN));
	f->up = grpc_channel_create_call(ch, call->gcall,
					 GRPC_PROPAGATE_DEADLINE | GRPC_PROPAGATE_CANCELLATION,
					 call->cqt->cq, grpc_slice_from_static_string(call->m->path),
					 NULL, deadline, NULL);
	if (f->up == NULL) {
		fail_start(call, f->where, "call not created");
		return;
	}

	/* The first request, re-packed (a bidi call's arena is reused for
	 * the next message: pack it now). */
	size_t len = protobuf_c_message_get_packed_size(call->req);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(call->req, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *req = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	grpc_metadata md[RPC_FWD_MD];
	size_t n_md = hs_rpc__forward_md(call, md);

	grpc_op ops[3];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].data.send_initial_metadata.count = n_md;
	ops[n++].data.send_initial_metadata.metadata = md;
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = req;
	if (!f->bidi) {
		ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
		f->half_closed = true;
	}
	bool started = up_batch(f, ops, n, &f->t_start);
	for (size_t i = 0; i < n_md; i++)
		grpc_slice_unref(md[i].value);
	grpc_byte_buffer_destroy(req);
	if (!started) {
		fail_start(call, f->where, "batch refused");
		return;
	}
	/* The owner's initial metadata with its status, not with the first
	 * request: an owner that answers nothing before more input (an exec
	 * of `cat`) sends none until its first message, and the client's
	 * next message is read once TAG_FWD_START completes. */
	grpc_op st[2];
	memset(st, 0, sizeof(st));
	st[0].op = GRPC_OP_RECV_INITIAL_METADATA;
	st[0].data.recv_initial_metadata.recv_initial_metadata = &f->init_md;
	st[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	st[1].data.recv_status_on_client.trailing_metadata = &f->trail_md;
	st[1].data.recv_status_on_client.status = &f->status;
	st[1].data.recv_status_on_client.status_details = &f->details;
	if (!up_batch(f, st, 2, &f->t_status)) {
		grpc_call_cancel(f->up, NULL);
		fail_start(call, f->where, "batch refused");
		return;
	}
	arm_up_recv(f);
	hs_log(HS_LOG_DEBUG, "rpc", "stream forwarded", HS_LS("method", call->m->path),
	       HS_LS("to", f->where));
}

/* The owner's status ends the caller's call once every message is relayed. */
static void maybe_relay_status(rpc_fwd_stream *f)
{
	pthread_mutex_lock(&f->mu);
	bool now = f->recv_end && f->status_done && !f->relayed;
	if (now)
		f->relayed = true;
	pthread_mutex_unlock(&f->mu);
	if (!now)
		return;
	hs_rpc_call *call = f->call;
	char msg[HS_ERROR_MSG_MAX] = "", reason[HS_ERROR_REASON_MAX] = "",
					 where[HS_ERROR_WHERE_MAX] = "";
	if (f->status != GRPC_STATUS_OK) {
		size_t dn = GRPC_SLICE_LENGTH(f->details);
		if (dn >= sizeof(msg))
			dn = sizeof(msg) - 1;
		memcpy(msg, GRPC_SLICE_START_PTR(f->details), dn);
		msg[dn] = '\0';
		hs_rpc__forward_md_copy(&f->trail_md, HS_ERROR_REASON_KEY, reason, sizeof(reason));
		hs_rpc__forward_md_copy(&f->trail_md, HS_ERROR_WHERE_KEY, where, sizeof(where));
		if (f->status == GRPC_STATUS_UNAVAILABLE && where[0] == '\0') {
			char owner[sizeof(msg)];
			memcpy(owner, msg, sizeof(owner));
			/* in words only, not as harness-node-address: the owner may
			 * have started the call (an exec) before it failed */
			if (snprintf(msg, sizeof(msg), "forward to %.96s: %s", f->where, owner) < 0)
				msg[0] = '\0';
		}
		hs_utf8_repair(msg); /* cut at a byte limit: valid UTF-8 again */
		if (reason[0] != '\0')
			(void)hs_rpc_call_add_trailing_metadata(call, HS_ERROR_REASON_KEY, reason);
		if (where[0] != '\0')
			(void)hs_rpc_call_add_trailing_metadata(call, HS_ERROR_WHERE_KEY, where);
		hs_log(HS_LOG_INFO, "rpc", "forwarded stream ended", HS_LS("method", call->m->path),
		       HS_LS("to", f->where), HS_LS("error", msg));
	}
	hs_rpc__call_finish_status(call, f->status, msg);
}

void hs_rpc__fwd_stream_on_tag(rpc_tag *tag, bool ok)
{
	hs_rpc_call *call = tag->call;
	rpc_fwd_stream *f = call->fwd;
	switch (tag->kind) {
	case TAG_FWD_START:
		/* The first request is upstream: read the client's next one. */
		if (ok && f->bidi)
			hs_rpc__call_read_next(call);
		break;
	case TAG_FWD_RECV: {
		grpc_byte_buffer *bb = f->recv_bb;
		f->recv_bb = NULL;
		if (ok && bb != NULL) {
			if (hs_rpc__call_send_relayed(call, bb) != HS_OK)
				grpc_call_cancel(f->up, NULL); /* the caller is gone */
			break;
		}
		if (bb != NULL)
			grpc_byte_buffer_destroy(bb);
		pthread_mutex_lock(&f->mu);
		f->recv_end = true;
		pthread_mutex_unlock(&f->mu);
		maybe_relay_status(f);
		break;
	}
	case TAG_FWD_SEND:
		if (ok && !f->half_closed)
			hs_rpc__call_read_next(call);
		break;
	case TAG_FWD_STATUS:
		pthread_mutex_lock(&f->mu);
		f->status_done = true;
		pthread_mutex_unlock(&f->mu);
		maybe_relay_status(f);
		break;
	default:
		break;
	}
}

void hs_rpc__fwd_stream_pull(hs_rpc_call *call)
{
	rpc_fwd_stream *f = call->fwd;
	if (f != NULL && f->up != NULL)
		arm_up_recv(f);
}

void hs_rpc__fwd_stream_up(hs_rpc_call *call, grpc_byte_buffer *bb)
{
	rpc_fwd_stream *f = call->fwd;
	grpc_op op;
	memset(&op, 0, sizeof(op));
	if (bb != NULL) {
		op.op = GRPC_OP_SEND_MESSAGE;
		op.data.send_message.send_message = bb;
	} else {
		op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
		f->half_closed = true; /* before the batch: its completion reads it */
	}
	if (f->up == NULL || !up_batch(f, &op, 1, &f->t_send))
		grpc_call_cancel(call->gcall, NULL);
	if (bb != NULL)
		grpc_byte_buffer_destroy(bb);
}

void hs_rpc__fwd_stream_closed(hs_rpc_call *call)
{
	rpc_fwd_stream *f = call->fwd;
	if (f->up != NULL)
		grpc_call_cancel(f->up, NULL);
}

void hs_rpc__fwd_stream_free(hs_rpc_call *call)
{
	rpc_fwd_stream *f = call->fwd;
	if (f == NULL)
		return;
	call->fwd = NULL;
	if (f->up != NULL)
		grpc_call_unref(f->up);
	hs_rpc__forward_chan_release(call->srv, f->chan); /* after the call that used it */
	if (f->recv_bb != NULL)
		grpc_byte_buffer_destroy(f->recv_bb);
	grpc_metadata_array_destroy(&f->init_md);
	grpc_metadata_array_destroy(&f->trail_md);
	grpc_slice_unref(f->details);
	pthread_mutex_destroy(&f->mu);
	free(f);
}
