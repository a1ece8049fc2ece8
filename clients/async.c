/* Shared-queue calls (async.h). Every batch's tag is an `op` whose done()
 * runs on a poller thread: it records the outcome under the call's mutex
 * and wakes the thread waiting for it, nothing more (no allocation, no
 * parsing, no I/O), so one or two pollers serve every worker.
 *
 * Unary: one batch of six ops; the caller's stack holds the waiter, a
 * semaphore: the poller posts it (one atomic add, and one futex wake only
 * if the caller already sleeps), where a mutex + condition variable made
 * the woken caller block again on the mutex the poller still held. glibc's
 * sem_post never touches the semaphore after the waiter can see the post
 * (glibc bug 12674), so the caller may destroy it as soon as sem_wait
 * returns.
 * Stream: batch S (recv status) outstanding for the call's life, batch A
 * (send metadata + message + close, recv initial metadata), and at most one
 * recv-message batch in flight: the first goes out with A, each next one
 * when the consumer takes the previous message (read-ahead of one). `outstanding` counts batches
 * whose completion has not run yet; the stream is freed only at zero, so
 * a late completion never touches freed memory. */
#include "async.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>

#include "client_internal.h"

#define MAX_POLLERS 16

typedef struct op op;
struct op {
	void (*done)(op *o, bool ok);
};

struct hs_async {
	hs_client *c;
	grpc_completion_queue *cq;
	pthread_t th[MAX_POLLERS];
	int n;
};

static void *poll_main(void *arg)
{
	hs_async *a = arg;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(a->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE && ev.tag != NULL) {
			op *o = ev.tag;
			o->done(o, ev.success != 0);
		}
	}
	return NULL;
}

int hs_async_new(hs_async **out, hs_client *c, int pollers, hs_error *err)
{
	if (c == NULL || pollers < 1 || pollers > MAX_POLLERS)
		return hs_error_set(err, HS_INVALID, "async client: pollers must be 1..%d", MAX_POLLERS);
	hs_async *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return hs_error_set(err, HS_INTERNAL, "async client: out of memory");
	a->c = c;
	a->cq = grpc_completion_queue_create_for_next(NULL);
	for (; a->n < pollers; a->n++) {
		if (pthread_create(&a->th[a->n], NULL, poll_main, a) != 0) {
			hs_async_free(a);
			return hs_error_set(err, HS_INTERNAL, "async client: cannot start a poller thread");
		}
	}
	*out = a;
	return HS_OK;
}

void hs_async_free(hs_async *a)
{
	if (a == NULL)
		return;
	grpc_completion_queue_shutdown(a->cq);
	for (int i = 0; i < a->n; i++)
		pthread_join(a->th[i], NULL);
	if (a->n == 0) /* nobody drained it */
		while (grpc_completion_queue_next(a->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
	grpc_completion_queue_destroy(a->cq);
	free(a);
}

/* An absolute CLOCK_MONOTONIC time wait_ms from now (condvars below use
 * that clock). */
static struct timespec abs_after(int64_t wait_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(wait_ms / 1000);
	ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

/* --- unary --- */

typedef struct waiter {
	op op;
	sem_t done;
} waiter;

static void waiter_done(op *o, bool ok)
{
	(void)ok; /* a failed batch still fills in the status */
	sem_post(&((waiter *)o)->done);
}

int hs_async_unary(hs_async *a, const char *method, const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp_out,
		   const hs_client_md *md, size_t n_md, int64_t deadline_ms, hs_client_status *st)
{
	waiter w = { .op = { waiter_done } };
	sem_init(&w.done, 0, 0);
	hs_client__unary u;
	gpr_timespec deadline = hs_client__deadline(a->c, deadline_ms);
	int rc = hs_client__unary_start_on(&u, a->c->channel, a->cq, method, req, md, n_md, deadline,
					   &w.op, st);
	if (rc == HS_OK) {
		while (sem_wait(&w.done) != 0) /* EINTR only */
			;
		rc = hs_client__unary_finish(&u, resp_desc, resp_out, st);
	}
	/* Another node's object, not forwarded: once there (follow.c), as
	 * hs_client_unary does, within the same deadline. */
	char where[HS_ERROR_WHERE_MAX];
	hs_client__peer *peer = NULL;
	if (rc != HS_OK && u.call != NULL &&
	    hs_client__follow_target(a->c, u.status, &u.trail_md, where) &&
	    (peer = hs_client__peer_acquire(a->c, where)) != NULL) {
		hs_client__unary_dispose(&u);
		rc = hs_client__unary_start_on(&u, hs_client__peer_channel(peer), a->cq, method, req,
					       md, n_md, deadline, &w.op, st);
		if (rc == HS_OK) {
			while (sem_wait(&w.done) != 0)
				;
			rc = hs_client__unary_finish(&u, resp_desc, resp_out, st);
		}
	}
	hs_client__unary_dispose(&u);
	hs_client__peer_release(a->c, peer);
	sem_destroy(&w.done);
	return rc;
}

/* --- server streams --- */

struct hs_async_stream {
	grpc_call *call;
	const ProtobufCMessageDescriptor *desc;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	op start_op, status_op, recv_op;
	int outstanding;     /* batches whose done() has not run */
	bool start_done, start_ok;
	bool status_done;
	bool recv_done;      /* a recv completed; recv_buf holds it (NULL = no more) */
	bool ended;          /* the message stream ended (then only the status is left) */
	grpc_byte_buffer *recv_buf;
	grpc_byte_buffer *recv_slot; /* where the in-flight recv writes */
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status;
	grpc_slice details;
};

#define STREAM_OF(o, member) ((hs_async_stream *)(void *)((char *)(o) - offsetof(hs_async_stream, member)))

static void start_done(op *o, bool ok)
{
	hs_async_stream *s = STREAM_OF(o, start_op);
	pthread_mutex_lock(&s->mu);
	s->start_done = true;
	s->start_ok = ok;
	s->outstanding--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void status_done(op *o, bool ok)
{
	(void)ok;
	hs_async_stream *s = STREAM_OF(o, status_op);
	pthread_mutex_lock(&s->mu);
	s->status_done = true;
	s->outstanding--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void recv_done(op *o, bool ok)
{
	hs_async_stream *s = STREAM_OF(o, recv_op);
	pthread_mutex_lock(&s->mu);
	s->recv_buf = ok ? s->recv_slot : NULL;
	if (!ok && s->recv_slot != NULL)
		grpc_byte_buffer_destroy(s->recv_slot);
	s->recv_slot = NULL;
	s->recv_done = true;
	s->outstanding--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Starts the next recv batch. Called with s->mu held. */
static bool recv_start_locked(hs_async_stream *s)
{
	grpc_op rop;
	memset(&rop, 0, sizeof(rop));
	rop.op = GRPC_OP_RECV_MESSAGE;
	rop.data.recv_message.recv_message = &s->recv_slot;
	s->recv_slot = NULL;
	s->outstanding++;
	if (grpc_call_start_batch(s->call, &rop, 1, &s->recv_op, NULL) != GRPC_CALL_OK) {
		s->outstanding--;
		return false;
	}
	return true;
}

static void stream_free(hs_async_stream *s)
{
	pthread_mutex_lock(&s->mu);
	if (!s->status_done)
		grpc_call_cancel(s->call, NULL);
	while (s->outstanding > 0)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
	if (s->recv_buf != NULL)
		grpc_byte_buffer_destroy(s->recv_buf);
	grpc_slice_unref(s->details);
	grpc_metadata_array_destroy(&s->init_md);
	grpc_metadata_array_destroy(&s->trail_md);
	grpc_call_unref(s->call);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* The call's final status into st (waits for it); the hs_code. */
static int final_status_locked(hs_async_stream *s, hs_client_status *st)
{
	while (!s->status_done)
		pthread_cond_wait(&s->cv, &s->mu);
	hs_client__status_from_call(st, s->status, s->details, &s->trail_md);
	return s->status == GRPC_STATUS_OK ? HS_OK : hs_client_code_from_grpc(s->status);
}

int hs_async_stream_start(hs_async_stream **out, hs_async *a, const char *method,
			  const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			  const hs_client_md *md, size_t n_md, int64_t deadline_ms, int64_t wait_ms,
			  hs_client_status *st)
{
	grpc_metadata gmd[HS_CLIENT_MAX_MD];
	int rc = hs_client__md_build(gmd, md, n_md, st);
	if (rc != HS_OK)
		return rc;
	struct timespec until = abs_after(wait_ms > 0 ? wait_ms : 0);
	hs_async_stream *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		hs_client__md_release(gmd, n_md);
		hs_client__status_set(st, 13, "out of memory", 13);
		return HS_INTERNAL;
	}
	s->desc = resp_desc;
	s->start_op.done = start_done;
	s->status_op.done = status_done;
	s->recv_op.done = recv_done;
	s->status = GRPC_STATUS_UNKNOWN;
	s->details = grpc_empty_slice();
	pthread_mutex_init(&s->mu, NULL);
	cond_init_mono(&s->cv);
	grpc_metadata_array_init(&s->init_md);
	grpc_metadata_array_init(&s->trail_md);
	s->call = hs_client__call_create(a->c, a->cq, method, deadline_ms);

	grpc_op sop, ops[4];
	grpc_byte_buffer *send = hs_client__pack(req);
	hs_client__server_stream_ops(&sop, ops, gmd, n_md, send, &s->init_md, &s->trail_md,
				     &s->status, &s->details);

	pthread_mutex_lock(&s->mu);
	bool started = true;
	s->outstanding++;
	if (grpc_call_start_batch(s->call, &sop, 1, &s->status_op, NULL) != GRPC_CALL_OK) {
		s->outstanding--;
		s->status_done = true; /* nothing to wait for */
		started = false;
	}
	if (started) {
		s->outstanding++;
		if (grpc_call_start_batch(s->call, ops, 4, &s->start_op, NULL) != GRPC_CALL_OK) {
			s->outstanding--;
			started = false;
		}
	}
	/* the first read goes out with the start: it waits for the server's
	 * first message (and its initial metadata) by itself */
	if (started && !recv_start_locked(s))
		grpc_call_cancel(s->call, NULL);
	/* The server's verdict is its first message or its status (a refusal
	 * comes as trailers only, and then the initial metadata "arrives"
	 * empty, so that alone proves nothing). */
	while (started && !s->recv_done && !s->status_done) {
		if (wait_ms < 0)
			pthread_cond_wait(&s->cv, &s->mu);
		else if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
			break; /* nothing from the server yet: the call goes on */
	}
	if (!started) {
		pthread_mutex_unlock(&s->mu);
		grpc_byte_buffer_destroy(send);
		hs_client__md_release(gmd, n_md);
		hs_client__status_set(st, 13, "cannot start call", 17);
		stream_free(s);
		return HS_INTERNAL;
	}
	if (s->status_done || (s->start_done && !s->start_ok) || (s->recv_done && s->recv_buf == NULL)) {
		/* the call ended; a first message, if it sent one, is here or coming */
		while (!s->recv_done)
			pthread_cond_wait(&s->cv, &s->mu);
		rc = s->recv_buf == NULL ? final_status_locked(s, st) : HS_OK;
		if (rc != HS_OK) { /* refused without a message: report it here */
			pthread_mutex_unlock(&s->mu);
			grpc_byte_buffer_destroy(send);
			hs_client__md_release(gmd, n_md);
			stream_free(s);
			return rc;
		}
	}
	pthread_mutex_unlock(&s->mu);
	grpc_byte_buffer_destroy(send);
	hs_client__md_release(gmd, n_md);
	hs_client__status_set(st, 0, NULL, 0);
	*out = s;
	return HS_OK;
}

int hs_async_stream_next(hs_async_stream *s, ProtobufCMessage **msg_out, int64_t wait_ms,
			 hs_client_status *st)
{
	struct timespec until = abs_after(wait_ms > 0 ? wait_ms : 0);
	pthread_mutex_lock(&s->mu);
	while (!s->ended && !s->recv_done) {
		if (wait_ms < 0) {
			pthread_cond_wait(&s->cv, &s->mu);
		} else if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT && !s->recv_done) {
			pthread_mutex_unlock(&s->mu);
			hs_client__status_set(st, 4, "no message yet", 14);
			return HS_TIMEOUT;
		}
	}
	grpc_byte_buffer *bb = NULL;
	if (!s->ended) {
		bb = s->recv_buf;
		s->recv_buf = NULL;
		s->recv_done = false;
		if (bb == NULL)
			s->ended = true;
		else if (!recv_start_locked(s)) /* read ahead; a failure shows as the end */
			s->ended = true;
	}
	if (bb == NULL) {
		int rc = final_status_locked(s, st);
		pthread_mutex_unlock(&s->mu);
		if (rc == HS_OK)
			*msg_out = NULL;
		return rc;
	}
	pthread_mutex_unlock(&s->mu);
	ProtobufCMessage *m = hs_client__unpack(s->desc, bb);
	grpc_byte_buffer_destroy(bb);
	if (m == NULL) {
		grpc_call_cancel(s->call, NULL);
		hs_client__status_set(st, 13, "malformed response message", 26);
		return HS_INTERNAL;
	}
	hs_client__status_set(st, 0, NULL, 0);
	*msg_out = m;
	return HS_OK;
}

void hs_async_stream_cancel(hs_async_stream *s)
{
	if (s != NULL)
		grpc_call_cancel(s->call, NULL);
}

void hs_async_stream_free(hs_async_stream *s)
{
	if (s != NULL)
		stream_free(s);
}
