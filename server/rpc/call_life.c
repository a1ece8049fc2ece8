/* Call structs: allocation and recycling, finalization (the access log
 * line, the handled metrics, out of the live list) and reference counts.
 * Split from call.c, whose state machine drops the last reference. */
#include <grpc/support/alloc.h>
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

hs_rpc_call *hs_rpc__call_get(hs_rpc_server *srv, hs_rpc_call *recycled)
{
	hs_rpc_call *call = recycled;
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
	/* call->details (zeroed) is initialized for generic calls only
	 * (hs_rpc__request). */
	hs_arena_init(&call->arena, call->arena_mem, sizeof(call->arena_mem));
	return call;
}

/* Releases everything a call acquired (not the struct). */
static void call_clear(hs_rpc_call *call)
{
	grpc_metadata_array_destroy(&call->req_md);
	if (call->m == NULL)
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
}

/* Releases everything a call acquired and puts the struct on the free list. */
void hs_rpc__call_release(hs_rpc_server *srv, hs_rpc_call *call)
{
	call_clear(call);
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

double hs_rpc__elapsed_ms(const hs_rpc_call *call)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - call->started.tv_sec) * 1e3 +
	       (double)(now.tv_nsec - call->started.tv_nsec) / 1e6;
}

/* grpc_server_handled_total and the handling latency, once per call: when
 * its status is handed to gRPC (so a client that saw the status finds the
 * call counted, as go-grpc-prometheus's interceptors do), else at
 * finalization (a call the client cancelled before any status). */
void hs_rpc__count_handled(hs_rpc_call *call, double ms)
{
	if (call->counted || !call->srv->metrics_on || call->m == NULL)
		return;
	call->counted = true;
	hs_counter_add(
		&call->m->mx.handled[(unsigned)call->status < 17 ? call->status : GRPC_STATUS_UNKNOWN],
		1);
	hs_histogram_observe(&call->m->mx.seconds, ms / 1e3);
}

void hs_rpc__finalize(hs_rpc_call *call)
{
	hs_rpc_server *srv = call->srv;
	if (call->accepted && (!call->counted || hs_log_min_level <= HS_LOG_INFO)) {
		double ms = hs_rpc__elapsed_ms(call);
		hs_rpc__count_handled(call, ms);
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
			       HS_LS(call->principal.user_id[0] ? "user" : NULL, call->principal.user_id),
			       /* the client (or its deadline) ended the call before
				* the status above reached it, or as it was sent */
			       HS_LB(call->client_cancelled ? "client_cancelled" : NULL, true));
			gpr_free(peer);
		}
	}
	hs_rpc__fwd_stream_free(call);
	call_clear(call);
	/* One lock: out of the live list (shutdown waits for it to empty,
	 * after everything above is let go) and onto the free list. */
	pthread_mutex_lock(&srv->mu);
	if (call->accepted) {
		if (call->m != NULL)
			call->m->live--;
		if (call->live_prev != NULL)
			call->live_prev->live_next = call->live_next;
		else
			srv->live = call->live_next;
		if (call->live_next != NULL)
			call->live_next->live_prev = call->live_prev;
		srv->n_live--;
		hs_rpc__stream_leave_locked(srv, call);
		pthread_cond_broadcast(&srv->cv);
	}
	call->free_next = srv->free_calls;
	srv->free_calls = call;
	pthread_mutex_unlock(&srv->mu);
}

void hs_rpc_call_ref(hs_rpc_call *call)
{
	pthread_mutex_lock(&call->mu);
	call->refs++;
	pthread_mutex_unlock(&call->mu);
}

bool hs_rpc__drop_refs_locked(hs_rpc_call *call, int n)
{
	call->refs -= n;
	bool last = call->refs == 0;
	if (last)
		call->dead = true;
	return last;
}

/* Drops n refs at once. */
void hs_rpc__unref_n(hs_rpc_call *call, int n)
{
	pthread_mutex_lock(&call->mu);
	bool last = hs_rpc__drop_refs_locked(call, n);
	pthread_mutex_unlock(&call->mu);
	if (last)
		hs_rpc__finalize(call);
}

void hs_rpc_call_unref(hs_rpc_call *call)
{
	hs_rpc__unref_n(call, 1);
}
