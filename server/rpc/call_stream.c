/* Streams: sending (queue, credential recheck), relayed sends, the done
 * callback and writable callbacks (rpc.h: hs_rpc_call_send,
 * hs_rpc_call_on_done, hs_rpc_call_when_writable). Split from call.c,
 * whose state machine (on_send, on_close) uses the helpers below. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_internal.h"

/* Whether a streaming call's credential still holds (hs_rpc_recheck_fn);
 * false after ending the call. Reads only the request metadata, which
 * stays unchanged for the call's life. */
bool hs_rpc__credential_holds(hs_rpc_call *call)
{
	hs_rpc_server *srv = call->srv;
	if (srv->recheck == NULL || call->m == NULL || call->m->handler.kind == HS_RPC_UNARY ||
	    !call->principal.authenticated)
		return true;
	const grpc_metadata *authz = NULL;
	for (size_t i = 0; i < call->req_md.count && authz == NULL; i++)
		if (grpc_slice_str_cmp(call->req_md.metadata[i].key, "authorization") == 0)
			authz = &call->req_md.metadata[i];
	hs_error err;
	err.code = HS_OK;
	err.msg[0] = err.reason[0] = err.where[0] = '\0';
	int rc = srv->recheck(authz != NULL ? (const char *)GRPC_SLICE_START_PTR(authz->value) : NULL,
			      authz != NULL ? GRPC_SLICE_LENGTH(authz->value) : 0, call->m->path,
			      &call->principal, &err, srv->recheck_payload);
	if (rc != HS_UNAUTH && rc != HS_DENIED)
		return true;
	char msg[sizeof(err.msg) + 48];
	snprintf(msg, sizeof(msg), "credential no longer valid: %s", err.msg);
	hs_rpc__finish_code(call, rc, msg);
	return false;
}

int hs_rpc_call_send(hs_rpc_call *call, const ProtobufCMessage *msg)
{
	if (!hs_rpc__credential_holds(call))
		return HS_CANCELLED;
	grpc_byte_buffer *bb = hs_rpc__pack(msg);
	pthread_mutex_lock(&call->mu);
	int rc = HS_OK;
	if (call->finishing || call->dead || call->close_done) {
		rc = HS_CANCELLED;
	} else if (!call->send_busy) {
		hs_rpc__start_send_locked(call, bb);
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
	if (rc == HS_OK && call->m != NULL)
		hs_rpc__count(call->srv, &call->m->mx.sent);
	return rc;
}

void hs_rpc_call_set_send_queue(hs_rpc_call *call, unsigned cap)
{
	pthread_mutex_lock(&call->mu);
	if (call->queue == NULL && cap > 0)
		call->q_cap = cap;
	pthread_mutex_unlock(&call->mu);
}

int hs_rpc__call_send_relayed(hs_rpc_call *call, grpc_byte_buffer *bb)
{
	if (!hs_rpc__credential_holds(call)) {
		grpc_byte_buffer_destroy(bb);
		return HS_CANCELLED;
	}
	pthread_mutex_lock(&call->mu);
	bool gone = call->finishing || call->dead || call->close_done || call->send_busy;
	if (!gone) {
		call->fwd_room_wait = true;
		hs_rpc__start_send_locked(call, bb); /* destroys bb */
	}
	pthread_mutex_unlock(&call->mu);
	if (gone) { /* send_busy: the relay never has two messages in hand */
		grpc_byte_buffer_destroy(bb);
		return HS_CANCELLED;
	}
	hs_rpc__count(call->srv, &call->m->mx.sent);
	return HS_OK;
}

/* The done callback to run now, if the call has ended, nobody ran it yet
 * and no writable job is scheduled or running (that job runs it when it
 * ends). call->mu held. */
hs_rpc_done_fn hs_rpc__take_done_locked(hs_rpc_call *call, void **payload)
{
	if (call->on_done == NULL || !call->close_done || call->done_notified || call->wr_sched)
		return NULL;
	call->done_notified = true;
	*payload = call->on_done_payload;
	return call->on_done;
}

void hs_rpc_call_on_done(hs_rpc_call *call, hs_rpc_done_fn fn, void *payload)
{
	pthread_mutex_lock(&call->mu);
	call->on_done = fn;
	call->on_done_payload = payload;
	/* The call already ended (on_close ran before anyone registered): run
	 * the callback here, once. */
	void *p;
	hs_rpc_done_fn run = hs_rpc__take_done_locked(call, &p);
	pthread_mutex_unlock(&call->mu);
	if (run != NULL)
		run(call, p);
}

/* --- writable callbacks --------------------------------------------------- */

static unsigned send_cap(const hs_rpc_call *call)
{
	return call->q_cap != 0 ? call->q_cap : 64;
}

/* True (and the job's ref taken) when the armed callback must be scheduled
 * now. call->mu held; the caller then calls hs_rpc__writable_schedule(). */
bool hs_rpc__writable_fire_locked(hs_rpc_call *call)
{
	if (!call->wr_armed || call->wr_sched || call->close_done || call->finishing || call->dead ||
	    call->q_len > send_cap(call) / 2)
		return false;
	call->wr_armed = false;
	call->wr_sched = true;
	call->refs++;
	return true;
}

const char *hs_rpc__lane_key(const hs_rpc_call *call)
{
	return call->principal.user_id[0] != '\0' ? call->principal.user_id : NULL;
}

static void writable_job(void *arg)
{
	hs_rpc_call *call = arg;
	pthread_mutex_lock(&call->mu);
	bool run = !call->close_done && !call->finishing && !call->dead;
	hs_rpc_writable_fn fn = call->wr_fn;
	void *payload = call->wr_payload;
	pthread_mutex_unlock(&call->mu);
	if (run)
		fn(call, payload);
	pthread_mutex_lock(&call->mu);
	call->wr_sched = false;
	void *done_payload;
	hs_rpc_done_fn done = hs_rpc__take_done_locked(call, &done_payload);
	bool fire = hs_rpc__writable_fire_locked(call);
	pthread_mutex_unlock(&call->mu);
	if (done != NULL)
		done(call, done_payload);
	if (fire)
		hs_rpc__writable_schedule(call);
	hs_rpc_call_unref(call); /* the job's ref */
}

void hs_rpc__writable_schedule(hs_rpc_call *call)
{
	int lane = call->m != NULL && call->m->lane != LANE_INLINE ? call->m->lane : LANE_MAIN;
	hs_pool_rc r = hs_pool_submit_as(call->srv->lanes[lane], hs_rpc__lane_key(call), true,
					 writable_job, call);
	if (r == HS_POOL_OK)
		return;
	hs_rpc__count(call->srv, &call->srv->rejected[lane]);
	pthread_mutex_lock(&call->mu);
	call->wr_sched = false;
	void *done_payload;
	hs_rpc_done_fn done = hs_rpc__take_done_locked(call, &done_payload);
	pthread_mutex_unlock(&call->mu);
	hs_rpc__finish_code(call, HS_LIMIT, "server busy: no worker to continue the stream");
	if (done != NULL)
		done(call, done_payload);
	hs_rpc_call_unref(call);
}

int hs_rpc_call_when_writable(hs_rpc_call *call, hs_rpc_writable_fn fn, void *payload)
{
	pthread_mutex_lock(&call->mu);
	if (call->finishing || call->dead || call->close_done) {
		pthread_mutex_unlock(&call->mu);
		return HS_CANCELLED;
	}
	call->wr_fn = fn;
	call->wr_payload = payload;
	call->wr_armed = true;
	bool fire = hs_rpc__writable_fire_locked(call);
	pthread_mutex_unlock(&call->mu);
	if (fire)
		hs_rpc__writable_schedule(call);
	return HS_OK;
}
