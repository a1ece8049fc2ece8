/* Internals shared by server.c (lifecycle, registration, polling) and
 * call.c (the per-call state machine). Nothing outside server/rpc sees this. */
#ifndef HS_RPC_INTERNAL_H
#define HS_RPC_INTERNAL_H

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "arena.h"
#include "metrics.h"
#include "pool.h"
#include "rpc.h"
#include "trace.h"

typedef struct hs_rpc_tls hs_rpc_tls; /* tls.c */

typedef enum tag_kind {
	TAG_NEW,      /* a requested call arrived (or the request failed at shutdown) */
	TAG_CLOSE,    /* RECV_CLOSE_ON_SERVER: the call is over for the client */
	TAG_SEND,     /* one streamed SEND_MESSAGE finished */
	TAG_RECV,     /* one RECV_MESSAGE finished (bidi) */
	TAG_STATUS,   /* the final batch (message and/or status) finished */
	TAG_SHUTDOWN, /* grpc_server_shutdown_and_notify completed */
	/* forward_stream.c: batches of a forwarded stream's upstream call */
	TAG_FWD_START,  /* metadata and the first request message sent */
	TAG_FWD_RECV,   /* one response message from the owner (or its end) */
	TAG_FWD_SEND,   /* one later request message (bidi) or the half-close sent */
	TAG_FWD_STATUS, /* the owner's initial metadata and status */
} tag_kind;

typedef struct rpc_tag {
	tag_kind kind;
	hs_rpc_call *call;
} rpc_tag;

/* Worker lanes (see rpc.h); a method runs inline (LANE_INLINE) or on one. */
enum { LANE_INLINE = -1, LANE_MAIN = 0, LANE_LONG, LANE_LIVENESS, N_LANES };

/* go-grpc-prometheus instruments of one method (rpc_metrics.c). */
typedef struct rpc_method_metrics {
	hs_counter started, received, sent;
	hs_counter handled[17]; /* by grpc_status_code */
	hs_histogram seconds;
} rpc_method_metrics;

typedef struct rpc_method {
	char path[256]; /* "/pkg.Service/Method" */
	const char *service; /* the descriptor's full service name */
	const ProtobufCMethodDescriptor *desc;
	hs_rpc_handler handler;
	bool implemented;
	bool prescan; /* the request type is recursive (or deeper than max_depth) */
	int lane;
	bool try_inline; /* HS_RPC_TRY_INLINE: the CQ thread first, the lane on HS_RPC_DEFER */
	void *payload;
	void *registered; /* grpc_server_register_method handle */
	rpc_method_metrics mx;
	/* Under srv->mu: requests outstanding per completion queue, and calls
	 * accepted and not yet finalized (hs_rpc__request). */
	uint8_t armed[64];
	unsigned live;
} rpc_method;

typedef struct cq_thread {
	hs_rpc_server *srv;
	grpc_completion_queue *cq;
	pthread_t tid;
	bool running;
} cq_thread;

#define RPC_MAX_MD 8
#define RPC_STREAM_BUCKETS 256
/* Streams open at once by unauthenticated callers, all together. */
#define RPC_ANON_STREAMS_MAX 1024
#define RPC_ARENA_INLINE 3072
/* Requests one method keeps outstanding per completion queue, at most. */
#define RPC_ARM_MAX 32

struct hs_rpc_call {
	pthread_mutex_t mu; /* first: survives recycling, everything after is reset */
	hs_rpc_server *srv;
	rpc_method *m; /* NULL: a generic call for an unknown method */
	cq_thread *cqt;
	grpc_call *gcall;
	gpr_timespec deadline;
	grpc_metadata_array req_md;
	grpc_call_details details; /* generic calls only */
	grpc_byte_buffer *payload; /* unary/server-stream request */
	grpc_byte_buffer *recv_buf; /* bidi */
	rpc_tag t_new, t_close, t_send, t_recv, t_status;

	int refs;
	int client_cancelled; /* filled by RECV_CLOSE_ON_SERVER */
	atomic_bool cancelled;
	bool accepted, close_done, dead;
	bool close_armed; /* RECV_CLOSE_ON_SERVER started (alone or in the final batch) */
	bool counted; /* handled_total and the latency recorded (count_handled) */
	bool send_busy, finishing, status_started, initial_md_sent, done_notified;
	bool recv_hold, recv_parked; /* bidi flow control (hs_rpc_call_pause_recv) */

	grpc_byte_buffer **queue;
	unsigned q_head, q_len, q_cap;

	grpc_status_code status;
	grpc_slice status_slice;
	bool has_status_slice;

	size_t n_init, n_trail; /* entries used in init_md, trail_md */

	hs_rpc_principal principal;
	hs_rpc_done_fn on_done;
	void *on_done_payload;
	/* hs_rpc_call_when_writable: wr_armed = wants a call when there is room;
	 * wr_sched = a job is queued or running (it holds a ref). */
	hs_rpc_writable_fn wr_fn;
	void *wr_payload;
	bool wr_armed, wr_sched;
	const ProtobufCMessage *req;
	struct timespec started;
	bool on_cq; /* the handler is running on a CQ thread (hs_rpc_call_on_cq) */
	bool trace_set;   /* trace holds the call's checked request id and trace */

	/* forward_stream.c: this stream is relayed to its owner node (set
	 * once, by the handler's thread, before any of its batches start). */
	struct rpc_fwd_stream *fwd;
	bool fwd_room_wait; /* a relayed message is being written: pull the next when done */

	/* Counted in its caller's open streams (streams.c) under stream_key. */
	bool stream_counted, stream_anon;

	hs_rpc_call *live_prev, *live_next, *free_next;
	hs_arena arena;
	_Alignas(16) char arena_mem[RPC_ARENA_INLINE];

	/* Not cleared when the struct is recycled (hs_rpc__call_get clears
	 * what comes before arena_mem): meaningful up to n_init / n_trail,
	 * when trace_set, when stream_counted. */
	grpc_metadata init_md[RPC_MAX_MD], trail_md[RPC_MAX_MD];
	hs_trace_ctx trace;
	char stream_key[168];
};

struct hs_rpc_server {
	hs_rpc_config cfg;
	char listen[256];
	grpc_server *server;
	int port;
	rpc_method *methods;
	size_t n_methods, cap_methods;
	const char **services;
	size_t n_services;
	cq_thread *cqs;
	unsigned n_cqs;
	hs_pool *lanes[N_LANES];
	hs_rpc_auth_fn auth;
	void *auth_payload;
	hs_rpc_recheck_fn recheck;
	void *recheck_payload;
	hs_rpc_tls *tls; /* NULL = plaintext */
	bool metrics_on, metrics_registered; /* cfg.metrics set; its collector added */
	hs_counter rejected[N_LANES];

	pthread_mutex_t mu; /* live list, free list, flags below; taken before any call->mu */
	pthread_cond_t cv;
	hs_rpc_call *live;
	size_t n_live;
	hs_rpc_call *free_calls;
	bool started, shutting_down, shutdown_notified;
	rpc_tag shutdown_tag;
	struct rpc_stream_count *stream_counts[RPC_STREAM_BUCKETS]; /* streams.c, under mu */
	unsigned anon_streams;
	struct rpc_forward *forward; /* forward.c: channels to other nodes; NULL = off */
};

extern const char *const hs_rpc__lane_names[N_LANES];

/* tls.c: the server's TLS credentials and their reloading. *out NULL when
 * cfg asks for no TLS. The credentials call back into t: free t only after
 * the grpc_server is destroyed. */
int hs_rpc__tls_new(hs_rpc_tls **out, const hs_rpc_config *cfg, hs_error *err);
grpc_server_credentials *hs_rpc__tls_credentials(hs_rpc_tls *t);
void hs_rpc__tls_free(hs_rpc_tls *t);

/* tls.c: reads a PEM file (at most 1 MiB) into a malloc'd NUL-terminated
 * buffer (*out, the caller frees); what names it in errors. */
int hs_rpc__read_pem(const char *path, const char *what, char **out, hs_error *err);

/* forward.c: forwarding a unary call to the node in err->where. */
typedef struct rpc_forward rpc_forward;
typedef struct rpc_fwd_result {
	grpc_status_code status;
	char msg[HS_ERROR_MSG_MAX];       /* status message (not OK) */
	char reason[HS_ERROR_REASON_MAX]; /* the owner's hs-error-code, "" = none */
	char where[HS_ERROR_WHERE_MAX];   /* harness-node-address to relay, "" = none */
	grpc_byte_buffer *resp;           /* OK: the owner's response, the caller's */
} rpc_fwd_result;
/* Sets srv->forward (with cfg.node_id set). */
int hs_rpc__forward_new(hs_rpc_server *srv, hs_error *err);
void hs_rpc__forward_free(hs_rpc_server *srv);
/* Whether this call's answer err (HS_UNAVAILABLE, where set; a unary
 * call's, or a stream's first request) is to be forwarded: forwarding on,
 * the method flagged HS_RPC_FORWARD, the caller sent "authorization", and
 * the call is not itself a forward (harness-forwarded-by). */
bool hs_rpc__forward_wanted(const hs_rpc_call *call, const hs_error *err);
/* A forward's slot on lane for user (the principal's user id; NULL or ""
 * = callers without one, counted together): false when that lane's
 * forwards, or that user's, are at their cap (see forward.c: no two nodes
 * wedge each other, one user cannot take every slot); every true is
 * matched by one hs_rpc__forward_release with the same lane and user. */
bool hs_rpc__forward_admit(hs_rpc_server *srv, int lane, const char *user);
void hs_rpc__forward_release(hs_rpc_server *srv, int lane, const char *user);
/* server.c: threads a user's calls may occupy at once in a lane of threads. */
unsigned hs_rpc__user_running(const hs_rpc_config *cfg, unsigned threads);
/* Sends call->req to where and fills *r with the answer (blocks up to the
 * call's remaining deadline: a worker lane only). */
void hs_rpc__forward(hs_rpc_call *call, const char *where, rpc_fwd_result *r);

#define RPC_FWD_MD 4
#define RPC_FORWARDED_KEY "harness-forwarded-by"
/* A reference to the cached channel to target (at most 32 cached, least
 * recently used evicted; an evicted one lives on while referenced); NULL
 * when none can be made. Release it after the last call made on it. */
typedef struct hs_refcache_entry rpc_fwd_chan; /* refcache.h; its val: the grpc_channel */
rpc_fwd_chan *hs_rpc__forward_channel(hs_rpc_server *srv, const char *target);
grpc_channel *hs_rpc__forward_chan_channel(const rpc_fwd_chan *c);
void hs_rpc__forward_chan_release(hs_rpc_server *srv, rpc_fwd_chan *c); /* NULL ok */
/* Channels cached now (tests). */
size_t hs_rpc__forward_channels(hs_rpc_server *srv);
/* The forward's request metadata (authorization, x-request-id,
 * traceparent, harness-forwarded-by); the caller unrefs the values. */
size_t hs_rpc__forward_md(const hs_rpc_call *call, grpc_metadata md[RPC_FWD_MD]);
/* Copies the first value of key in a into buf (NUL-terminated), if it
 * fits and is printable; else leaves buf as it is. */
void hs_rpc__forward_md_copy(const grpc_metadata_array *a, const char *key, char *buf,
			     size_t cap);

/* forward_stream.c: a stream (server-streaming or bidi) whose handler
 * answered err (forward_wanted) relayed to the owner at where, with no
 * thread held: the upstream call's batches complete on call's CQ. Starts
 * it (or ends the call with UNAVAILABLE naming where). */
void hs_rpc__fwd_stream_start(hs_rpc_call *call, const char *where);
/* A TAG_FWD_* batch completed (the caller then drops the batch's ref). */
void hs_rpc__fwd_stream_on_tag(rpc_tag *tag, bool ok);
/* Bidi: one more request message from the client (NULL: it half-closed);
 * takes bb. The next is read once this one is sent upstream. */
void hs_rpc__fwd_stream_up(hs_rpc_call *call, grpc_byte_buffer *bb);
/* The relayed message was written: read the owner's next one. */
void hs_rpc__fwd_stream_pull(hs_rpc_call *call);
/* The client's call ended (RECV_CLOSE_ON_SERVER): cancel the upstream call. */
void hs_rpc__fwd_stream_closed(hs_rpc_call *call);
/* At the call's last unref. */
void hs_rpc__fwd_stream_free(hs_rpc_call *call);

/* rpc_metrics.c: the collector (payload: the server) and the hot-path hooks. */
void hs_rpc__collect(hs_metrics_out *out, void *payload);
void hs_rpc__metrics_init(rpc_method *m);
static inline void hs_rpc__count(const hs_rpc_server *srv, hs_counter *c)
{
	if (srv->metrics_on)
		hs_counter_add(c, 1);
}

/* streams.c: counts call (a stream, authenticated or public) in its
 * caller's open streams; HS_LIMIT over cfg.user_max_streams or, for
 * anonymous callers, RPC_ANON_STREAMS_MAX. Admins are not counted. */
int hs_rpc__stream_enter(hs_rpc_server *srv, hs_rpc_call *call, hs_error *err);
/* Uncounts it (idempotent). Caller holds srv->mu. */
void hs_rpc__stream_leave_locked(hs_rpc_server *srv, hs_rpc_call *call);
void hs_rpc__streams_free(hs_rpc_server *srv);

/* call.c */
/* A call ready to request: recycled (popped from srv->free_calls by the
 * caller under srv->mu) or, when NULL, a new one; NULL out of memory. */
hs_rpc_call *hs_rpc__call_get(hs_rpc_server *srv, hs_rpc_call *recycled);
void hs_rpc__call_accept_locked(hs_rpc_server *srv, hs_rpc_call *call);
void hs_rpc__call_release(hs_rpc_server *srv, hs_rpc_call *call);
void hs_rpc__call_destroy(hs_rpc_call *call);
void hs_rpc__on_tag(rpc_tag *tag, bool ok);
/* For forward_stream.c: sends one packed message on the call (takes bb;
 * HS_CANCELLED when the call ended or is finishing, or its credential no
 * longer holds), then hs_rpc__fwd_stream_pull() once it is written;
 * ends the call with a status once what is queued is written (the
 * trailing metadata added before); reads the client's next message. */
int hs_rpc__call_send_relayed(hs_rpc_call *call, grpc_byte_buffer *bb);
void hs_rpc__call_finish_status(hs_rpc_call *call, grpc_status_code code, const char *msg);
void hs_rpc__call_read_next(hs_rpc_call *call);
/* call_life.c, for call.c: milliseconds since the call arrived; counts
 * the call handled (once: at its status, else at finalization); finalizes
 * a call whose last ref was dropped; drops n refs (finalizing at 0). */
double hs_rpc__elapsed_ms(const hs_rpc_call *call);
void hs_rpc__count_handled(hs_rpc_call *call, double ms);
void hs_rpc__finalize(hs_rpc_call *call);
void hs_rpc__unref_n(hs_rpc_call *call, int n);
/* Drops n refs (call->mu held); true when that was the last: the caller
 * releases call->mu, then calls hs_rpc__finalize(). */
bool hs_rpc__drop_refs_locked(hs_rpc_call *call, int n);
/* call.c, for call_stream.c: packs msg into a new buffer; starts a
 * SEND_MESSAGE batch (call->mu held; destroys bb); ends the call with an
 * hs_code and message. */
grpc_byte_buffer *hs_rpc__pack(const ProtobufCMessage *msg);
void hs_rpc__start_send_locked(hs_rpc_call *call, grpc_byte_buffer *bb);
void hs_rpc__finish_code(hs_rpc_call *call, int code, const char *msg);
/* call_stream.c, for call.c: the done callback to run now, if the call
 * has ended, nobody ran it yet and no writable job is scheduled or running
 * (call->mu held); true (and the job's ref taken) when the armed writable
 * callback must be scheduled now (call->mu held), then
 * hs_rpc__writable_schedule() without it. */
hs_rpc_done_fn hs_rpc__take_done_locked(hs_rpc_call *call, void **payload);
/* Whether a streaming call's credential still holds (false: the call was
 * ended); the key a call's jobs are fair-queued by on its lane. */
bool hs_rpc__credential_holds(hs_rpc_call *call);
const char *hs_rpc__lane_key(const hs_rpc_call *call);
bool hs_rpc__writable_fire_locked(hs_rpc_call *call);
void hs_rpc__writable_schedule(hs_rpc_call *call);
/* Arms one request for method m (NULL = generic) on cqt. */
/* Arms requests for m (NULL: the generic one for unknown methods) on cqt:
 * at start (arrived NULL) one; else arrived, a call of m, just arrived
 * there: it is accepted (hs_rpc__call_accept_locked, same lock) and its
 * replacement armed, plus one more while m has more calls in flight than
 * requests armed on cqt (up to RPC_ARM_MAX), so that under load a call
 * finds a request waiting instead of going through gRPC's queue of
 * unmatched calls. False when none could be armed (or shutting down). */
bool hs_rpc__request(hs_rpc_server *srv, rpc_method *m, cq_thread *cqt, hs_rpc_call *arrived);

#endif
