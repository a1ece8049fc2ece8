/* The RPC core: a small gRPC server on the gRPC C core API and protobuf-c.
 *
 * Services are registered from their protobuf-c service descriptors plus a
 * table of handlers (one per method, by name); every method of a descriptor
 * is served, those without a handler answer UNIMPLEMENTED. Handlers see
 * unpacked requests and never a grpc_call: this header is the whole surface.
 *
 * Threading: a few completion-queue threads poll the transport. Cheap
 * handlers run right there (no thread hop); handlers that may block run on
 * a worker lane and complete the call from there: HS_RPC_BLOCKING on the
 * main lane, HS_RPC_LONG (grace periods, restores) on the long-operation
 * lane, HS_RPC_LIVENESS (heartbeats) on a lane reserved for them, so that
 * neither a slow operation nor a busy server delays a heartbeat. Within a
 * lane users take turns, each with at most user_concurrency calls running
 * and user_max_calls waiting or running (then RESOURCE_EXHAUSTED; on the
 * heartbeat lane no running bound and up to half its queue). Streams
 * never hold a worker while a reader is slow: a producer that must not drop
 * (a replay) continues from hs_rpc_call_when_writable(), driven by write
 * completions. Every function here is thread-safe unless stated otherwise.
 *
 * Parsing: requests are unpacked only after a pre-scan of the wire format
 * has bounded their nesting (max_depth) where the type is recursive, and
 * within a memory budget (64 bytes per input byte + 64 KiB, at most
 * 16 x max_message_bytes), so no request can crash the server.
 *
 * Memory: each call has an arena. Requests are unpacked into it, and
 * handlers allocate responses (and every string inside them) from it with
 * hs_rpc_call_alloc/strdup; it is released when the call ends, so handlers
 * free nothing they got from the core. */
#ifndef HS_RPC_RPC_H
#define HS_RPC_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct hs_rpc_server hs_rpc_server;
typedef struct hs_rpc_call hs_rpc_call;

typedef enum hs_rpc_kind {
	HS_RPC_UNARY = 0,
	HS_RPC_SERVER_STREAM, /* one request, a stream of responses */
	HS_RPC_BIDI_STREAM,   /* the handler is called per request message */
} hs_rpc_kind;

enum {
	HS_RPC_BLOCKING = 1u << 0, /* may block on disk/network: run on the main worker lane */
	HS_RPC_PUBLIC = 1u << 1,   /* needs no access token (Login, Refresh, health, reflection) */
	HS_RPC_LONG = 1u << 2,     /* may take seconds (destroy grace, restores): the long lane */
	HS_RPC_LIVENESS = 1u << 3, /* heartbeats: the reserved lane (both imply BLOCKING) */
	/* Bidi: the client's half-close does not end the call; the handler
	 * (or whoever holds the stream) ends it with hs_rpc_call_finish(). */
	HS_RPC_SELF_FINISH = 1u << 4,
	/* Unary, with a lane flag: the handler is first called on the
	 * completion-queue thread (hs_rpc_call_on_cq() is true). There it must
	 * only read memory or take a short lock; when the request needs real
	 * blocking work it returns HS_RPC_DEFER at once (having changed
	 * nothing) and is called again on its lane, with the lane's bounds
	 * and fairness. */
	HS_RPC_TRY_INLINE = 1u << 5,
	/* An HS_UNAVAILABLE answer with err->where set (the object lives on
	 * the node at that address) to a unary call, or to a stream's first
	 * request (the whole stream is then relayed), is forwarded there when
	 * the server has a node_id (see hs_rpc_config.node_id); without the
	 * flag it is answered as it is (with HS_ERROR_WHERE_KEY). */
	HS_RPC_FORWARD = 1u << 6,
};

/* Positive returns of a unary handler besides HS_OK and negative hs_codes. */
enum {
	HS_RPC_DEFER = 1,   /* on the CQ thread: run me on my lane instead */
	/* The handler took a reference (hs_rpc_call_ref) and will answer later,
	 * from any thread, with hs_rpc_call_complete() exactly once (e.g. when
	 * a group commit holding its write is durable): no thread waits. */
	HS_RPC_PENDING = 2,
	/* As HS_RPC_PENDING, for an answer that comes within a bound whatever
	 * the client does (a heartbeat's group commit: at most the store's
	 * busy or statement timeout per attempt; a drain waits for it): the
	 * call does not watch for cancellation meanwhile
	 * (hs_rpc_call_cancelled stays false until the answer is sent); its
	 * close rides in the final batch, as an inline answer's does: one
	 * batch and one completion fewer per call. From a worker it is
	 * HS_RPC_PENDING (the close was armed when the call was queued). */
	HS_RPC_PENDING_SOON = 3,
};

/* Unary: on HS_OK, *resp is the response (from the call arena or static
 * storage; the core packs it and never frees it). On error, return a
 * negative hs_code with err->msg as the status message. */
typedef int (*hs_rpc_unary_fn)(hs_rpc_call *call, const ProtobufCMessage *req,
			       ProtobufCMessage **resp, hs_error *err);

/* Server streaming: called once with the request. Return HS_OK to keep the
 * stream open; then send with hs_rpc_call_send() and end it with
 * hs_rpc_call_finish(), from any thread, holding a reference
 * (hs_rpc_call_ref) for as long as you keep the pointer. An error return
 * ends the call with that status.
 * Bidi streaming: called for every request message, and once with req ==
 * NULL when the client has finished sending; the core then ends the call
 * with OK once every queued response is written (unless the handler already
 * finished it). Arena memory of a bidi call lasts for one message: it is
 * reused for the next one. */
typedef int (*hs_rpc_stream_fn)(hs_rpc_call *call, const ProtobufCMessage *req,
				hs_error *err);

typedef struct hs_rpc_handler {
	const char *method; /* method name as in the .proto, e.g. "Check" */
	hs_rpc_kind kind;
	unsigned flags;
	hs_rpc_unary_fn unary;   /* kind == HS_RPC_UNARY */
	hs_rpc_stream_fn stream; /* the streaming kinds */
} hs_rpc_handler;

/* Who is calling, as established by the authenticator. */
typedef struct hs_rpc_principal {
	bool authenticated;
	bool is_admin;
	char user_id[128];
	char role[16];
} hs_rpc_principal;

/* Authenticator ("interceptor"): runs before every non-public handler, on the
 * completion-queue thread (keep it cheap: token verification, no I/O). Fill
 * *out and return HS_OK, or return HS_UNAUTH with a message; HS_DENIED (a
 * credential not allowed this method), HS_UNAVAILABLE (retry: e.g. a key
 * set being refreshed), HS_LIMIT and HS_INTERNAL (out of memory: not the
 * caller's fault) keep their code, anything else is UNAUTHENTICATED. */
typedef int (*hs_rpc_auth_fn)(hs_rpc_call *call, hs_rpc_principal *out,
			      hs_error *err, void *payload);

/* Client certificates (mTLS), with a tls_client_ca_file. */
enum {
	HS_RPC_TLS_CLIENT_REQUIRE = 0, /* a certificate chaining to the CA is required (default) */
	HS_RPC_TLS_CLIENT_REQUEST = 1, /* asked for and verified when presented */
};

typedef struct hs_rpc_config {
	const char *listen;        /* "127.0.0.1:50051"; port 0 = pick one */
	unsigned cq_threads;       /* completion-queue threads (default 2) */
	unsigned workers;          /* main-lane threads (default 8) */
	unsigned worker_queue;     /* jobs waiting in a lane before RESOURCE_EXHAUSTED (default 1024) */
	size_t max_message_bytes;  /* receive/send limit (default 4 MiB) */
	unsigned max_concurrent_streams; /* per connection (default 0 = gRPC's) */
	unsigned long_workers;     /* long-operation lane threads (default 4) */
	unsigned liveness_workers; /* reserved heartbeat lane threads (default 8) */
	unsigned user_concurrency; /* one user's calls running at once in the main or long
				    * lane (default 0 = half the lane's threads, at least 1) */
	unsigned user_max_calls;   /* one user's calls waiting or running in the main or
				    * long lane before RESOURCE_EXHAUSTED (default 256;
				    * heartbeat lane: at least half its queue) */
	unsigned max_depth;        /* nesting of message fields in a request (default 100) */
	unsigned user_max_streams; /* streams one non-admin user (or one anonymous peer
				    * address) holds open at once before RESOURCE_EXHAUSTED
				    * (default 256; 0 = unbounded); unauthenticated
				    * callers together at most 1024 */
	/* TLS: serve TLS with this PEM certificate chain and key (both, or
	 * neither = plaintext); tls_client_ca_file (NULL = none) turns on
	 * client certificates, verified against it, per tls_client_auth. The
	 * files are re-read when they change (checked at each new handshake):
	 * new connections get the new certificate, open ones keep theirs. */
	const char *tls_cert_file;
	const char *tls_key_file;
	const char *tls_client_ca_file;
	int tls_client_auth;       /* HS_RPC_TLS_CLIENT_* */
	/* Forwarding over TLS (with tls_cert_file): the PEM CA bundle other
	 * nodes' certificates must chain to (NULL = gRPC's default roots; never
	 * the client CA, which vouches for callers, not nodes). Read when the
	 * first forward channel is made. */
	const char *tls_peer_ca_file;
	/* Borrowed; NULL = no metrics. The server registers a collector on it
	 * at start (removed at shutdown): go-grpc-prometheus' families
	 * grpc_server_started_total, grpc_server_handled_total{grpc_code},
	 * grpc_server_msg_received_total, grpc_server_msg_sent_total and
	 * grpc_server_handling_seconds, labelled grpc_type, grpc_service,
	 * grpc_method (instruments allocated per method at registration: one
	 * relaxed atomic add per event), plus harness_rpc_queue_depth{lane} and
	 * harness_rpc_rejected_total{lane}. */
	struct hs_metrics *metrics;
	/* This node's id (borrowed; NULL or "" = no forwarding). With it, an
	 * HS_RPC_FORWARD call (or stream) whose handler answers HS_UNAVAILABLE with
	 * err->where set (its object lives on the node at that address) is
	 * sent there with
	 * the caller's authorization and "harness-forwarded-by: node_id", and
	 * the owner's answer relayed (server/rpc/forward.c); a call already
	 * carrying harness-forwarded-by is never forwarded again. Every error
	 * with err->where names it in trailing metadata HS_ERROR_WHERE_KEY. */
	const char *node_id;
} hs_rpc_config;

#define HS_RPC_CONFIG_INIT                                                                 \
	{ .listen = "127.0.0.1:50051", .cq_threads = 2, .workers = 8, .worker_queue = 1024,   \
	  .max_message_bytes = 4u << 20, .max_concurrent_streams = 0, .long_workers = 4,     \
	  .liveness_workers = 8, .user_concurrency = 0, .user_max_calls = 256, .max_depth = 100, \
	  .user_max_streams = 256 }

/* Creates the server and binds the port (not yet serving). */
int hs_rpc_server_new(hs_rpc_server **out, const hs_rpc_config *cfg, hs_error *err);

/* The bound port (useful with port 0). */
int hs_rpc_server_port(const hs_rpc_server *srv);

/* Registers every method of svc with the handlers named in the table
 * (unknown names in the table are an error). payload is given back to the
 * handlers by hs_rpc_call_payload(). Before hs_rpc_server_start() only. */
int hs_rpc_server_add_service(hs_rpc_server *srv, const ProtobufCServiceDescriptor *svc,
			      const hs_rpc_handler *handlers, size_t n_handlers,
			      void *payload, hs_error *err);

void hs_rpc_server_set_authenticator(hs_rpc_server *srv, hs_rpc_auth_fn fn, void *payload);

/* Re-check of a streaming call's credential (a server or bidi stream that
 * authenticated with "authorization: Bearer"): before each message is
 * sent and before each message a bidi stream received is handled, so that
 * no message reaches (or comes from) a token that was revoked, expired or
 * whose user was disabled since the stream opened. Runs on the sending thread (any thread, maybe under the
 * sender's locks: no I/O, no call arena); authorization is the request's
 * metadata value (not NUL-terminated), was the principal the
 * authenticator set. HS_UNAUTH or HS_DENIED end the call with that code
 * (the send answers HS_CANCELLED); anything else keeps it until the next
 * check. A stream authenticated without a bearer (a client certificate
 * mapped to an identity) is rechecked with authorization NULL, len 0. */
typedef int (*hs_rpc_recheck_fn)(const char *authorization, size_t len, const char *method,
				 const hs_rpc_principal *was, hs_error *err, void *payload);
void hs_rpc_server_set_recheck(hs_rpc_server *srv, hs_rpc_recheck_fn fn, void *payload);

/* Full names of the registered services, in registration order (for
 * reflection's list_services). Borrowed; valid until the server is freed. */
size_t hs_rpc_server_services(const hs_rpc_server *srv, const char *const **out);

int hs_rpc_server_start(hs_rpc_server *srv, hs_error *err);

/* Graceful stop: no new calls; open server streams are ended with
 * UNAVAILABLE once their queued messages are written; in-flight calls get
 * up to grace_ms, then are cancelled. Returns when every call has ended and
 * every thread is joined. Safe to call once. */
void hs_rpc_server_shutdown(hs_rpc_server *srv, int64_t grace_ms);

void hs_rpc_server_free(hs_rpc_server *srv);

/* --- inside a handler ------------------------------------------------- */

void *hs_rpc_call_payload(const hs_rpc_call *call);
/* "/package.Service/Method" */
const char *hs_rpc_call_method(const hs_rpc_call *call);
/* The principal the authenticator set (all-false for public methods). */
const hs_rpc_principal *hs_rpc_call_principal(const hs_rpc_call *call);

/* First value of request metadata key (lower-case), NUL-terminated copy in
 * the arena; NULL when absent. *len (optional) gets its length. */
const char *hs_rpc_call_metadata(hs_rpc_call *call, const char *key, size_t *len);

/* The client's address as gRPC reports it ("ipv4:127.0.0.1:5555"); arena copy. */
const char *hs_rpc_call_peer(hs_rpc_call *call);

/* A name of the client's certificate, verified against the client CA in
 * the TLS handshake: kind "cn" (the subject's common name) or "san" (a
 * subject alternative name: DNS, URI, email or IP). */
typedef struct hs_rpc_peer_name {
	const char *kind;
	const char *value; /* arena copy */
} hs_rpc_peer_name;

/* Fills out[0..cap) with the names of the client certificate the
 * handshake verified; returns how many (0: plaintext, no client
 * certificate, or one not verified). */
size_t hs_rpc_call_peer_cert_names(hs_rpc_call *call, hs_rpc_peer_name *out, size_t cap);

/* Milliseconds until the client's deadline (INT64_MAX if none; <= 0 expired). */
int64_t hs_rpc_call_deadline_left_ms(const hs_rpc_call *call);

/* True once the client cancelled or the deadline passed. */
bool hs_rpc_call_cancelled(const hs_rpc_call *call);

/* Arena allocation, zeroed, 16-byte aligned; NULL only when out of memory. */
void *hs_rpc_call_alloc(hs_rpc_call *call, size_t size);
char *hs_rpc_call_strdup(hs_rpc_call *call, const char *s);
/* A protobuf-c allocator into the call's arena (its free does nothing: the
 * arena is released with the call), for messages built by unpacking. */
ProtobufCAllocator hs_rpc_call_allocator(hs_rpc_call *call);

/* Response metadata: initial metadata must be added before the first
 * message goes out; trailing metadata before the status. Key and value are
 * copied; invalid keys/values (CR/LF, non-printable) are refused. */
int hs_rpc_call_add_initial_metadata(hs_rpc_call *call, const char *key, const char *value);
int hs_rpc_call_add_trailing_metadata(hs_rpc_call *call, const char *key, const char *value);

/* --- streams ------------------------------------------------------------ */

void hs_rpc_call_ref(hs_rpc_call *call);
void hs_rpc_call_unref(hs_rpc_call *call);

/* True while the handler runs on a completion-queue thread (never on a
 * worker lane): a handler flagged HS_RPC_TRY_INLINE checks it. */
bool hs_rpc_call_on_cq(const hs_rpc_call *call);

/* Answers a unary call whose handler returned HS_RPC_PENDING(_SOON), as the
 * handler's return would have (rc, *resp from the arena, err), and drops
 * the reference the handler took. Any thread; cheap (packs and starts one
 * batch). */
void hs_rpc_call_complete(hs_rpc_call *call, int rc, ProtobufCMessage *resp,
			  const hs_error *err);

/* Called exactly once when the call ends for any reason (finished,
 * cancelled, deadline, shutdown), on a core thread. A service that keeps a
 * stream in a list removes it here and drops its reference. */
typedef void (*hs_rpc_done_fn)(hs_rpc_call *call, void *payload);
void hs_rpc_call_on_done(hs_rpc_call *call, hs_rpc_done_fn fn, void *payload);

/* Flow control for a producer that must not drop (a replay): after
 * hs_rpc_call_send() said HS_LIMIT (or whenever it wants to yield), it asks
 * to be called again once the send queue is at most half full. fn then
 * runs once, on the call's worker lane, driven by the write completions of
 * the reader: no thread waits meanwhile. fn may arm itself again. The
 * call's done callback never runs while fn is scheduled or running, and fn
 * never starts after the call ended. HS_OK armed (if there is room already,
 * fn is scheduled at once); HS_CANCELLED the call has ended or is finishing
 * (fn will not run). If the lane cannot take fn, the call ends with
 * RESOURCE_EXHAUSTED. */
typedef void (*hs_rpc_writable_fn)(hs_rpc_call *call, void *payload);
int hs_rpc_call_when_writable(hs_rpc_call *call, hs_rpc_writable_fn fn, void *payload);

/* Caps the messages waiting behind the one being written (default 64). */
void hs_rpc_call_set_send_queue(hs_rpc_call *call, unsigned cap);

/* Queues one message; at most one write is outstanding per call. Returns
 * HS_LIMIT when the queue is full (the caller decides what to drop),
 * HS_CANCELLED when the call has ended or is finishing. Packs msg before
 * returning: msg may be freed right after. */
int hs_rpc_call_send(hs_rpc_call *call, const ProtobufCMessage *msg);

/* Bidi flow control. Called inside a bidi handler, pause_recv keeps the
 * core from reading the next request message when the handler returns;
 * resume_recv (any thread, also before that handler returned) reads it
 * again. Until then HTTP/2 flow control holds the client back. */
void hs_rpc_call_pause_recv(hs_rpc_call *call);
void hs_rpc_call_resume_recv(hs_rpc_call *call);

/* Ends the stream with a status once the queued messages are written.
 * HS_OK -> status OK. Only the first finish counts. */
void hs_rpc_call_finish(hs_rpc_call *call, int code, const char *msg);

#endif
