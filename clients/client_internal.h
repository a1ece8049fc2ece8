/* libharness-client internals shared by client.c (blocking calls on a
 * pluck queue per call) and async.c (calls completing on one shared
 * queue): the client itself, metadata, message and status helpers. Only
 * files of clients/ include this. */
#ifndef HS_CLIENTS_CLIENT_INTERNAL_H
#define HS_CLIENTS_CLIENT_INTERNAL_H

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdbool.h>

#include "client.h"
#include "refcache.h"

#define HS_CLIENT_MAX_MD 16
#define HS_CLIENT_FOLLOW_CHANNELS 8 /* channels to followed addresses kept (LRU) */

typedef struct hs_refcache_entry hs_client__peer; /* its val: the grpc_channel */

struct hs_client {
	grpc_channel *channel;
	int64_t default_deadline_ms;
	/* For channels to followed addresses (follow.c): the credentials and
	 * channel arguments of the client's own channel. */
	grpc_channel_credentials *creds;
	grpc_arg args[3];
	size_t n_args;
	char *user_agent, *server_name; /* owned copies the args point to */
	bool no_follow;
	pthread_mutex_t mu; /* peers, every peer's refs */
	hs_refcache peers; /* over peer_slots */
	hs_refcache_entry *peer_slots[HS_CLIENT_FOLLOW_CHANNELS];
};

/* follow.c. Whether n bytes at p are a HOST:PORT to follow (strict: DNS
 * name, IPv4 or [IPv6], port 1-65535, < HS_ERROR_WHERE_MAX bytes). */
bool hs_client__follow_addr_ok(const char *p, size_t n);
/* True, with out = the address, when a call that ended with code and trail
 * is to be retried there: following on, UNAVAILABLE, exactly one
 * well-formed harness-node-address. */
bool hs_client__follow_target(const hs_client *c, grpc_status_code code,
			      const grpc_metadata_array *trail, char out[HS_ERROR_WHERE_MAX]);
/* A reference to the (cached, LRU) channel to target; NULL if it cannot be
 * made. Release with hs_client__peer_release (the channel lives while any
 * reference does, evicted or not). */
hs_client__peer *hs_client__peer_acquire(hs_client *c, const char *target);
grpc_channel *hs_client__peer_channel(const hs_client__peer *p);
void hs_client__peer_release(hs_client *c, hs_client__peer *p); /* NULL ok */
/* hs_client_new: the empty cache; hs_client_free: drops its references. */
void hs_client__peers_init(hs_client *c);
void hs_client__peers_free(hs_client *c);
/* Channels cached now (tests). */
size_t hs_client__peers_count(hs_client *c);

/* st (NULL ok) := code, details (truncated), no error code. */
void hs_client__status_set(hs_client_status *st, int code, const char *details, size_t len);
/* st := a finished call's status, details and hs-error-code (trail NULL ok). */
void hs_client__status_from_call(hs_client_status *st, grpc_status_code code, grpc_slice details,
				 const grpc_metadata_array *trail);
/* Checks md (keys, printable values, at most HS_CLIENT_MAX_MD) and fills
 * out; HS_INVALID (st set) otherwise. Release with hs_client__md_release. */
int hs_client__md_build(grpc_metadata *out, const hs_client_md *md, size_t n_md,
			hs_client_status *st);
void hs_client__md_release(grpc_metadata *m, size_t n);
/* msg packed into a new byte buffer (grpc_byte_buffer_destroy it). */
grpc_byte_buffer *hs_client__pack(const ProtobufCMessage *msg);
/* bb unpacked as desc (protobuf_c_message_free_unpacked); NULL if malformed. */
ProtobufCMessage *hs_client__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb);
/* ms from now (0 = the client's default, < 0 = none) on the monotonic clock. */
gpr_timespec hs_client__deadline(const hs_client *c, int64_t ms);
/* A new call on c's channel completing on cq. */
grpc_call *hs_client__call_create(hs_client *c, grpc_completion_queue *cq, const char *method,
				  int64_t deadline_ms);
/* A new call on ch (c's channel or a peer's) with an absolute deadline. */
grpc_call *hs_client__call_on(grpc_channel *ch, grpc_completion_queue *cq, const char *method,
			      gpr_timespec deadline);

/* One unary call as one batch (send metadata, message and close; receive
 * metadata, message and status), shared by the blocking client (a pluck
 * queue per call) and the shared-queue calls of async.c. The ops point
 * into the struct: it must not move between start and dispose. */
typedef struct hs_client__unary {
	grpc_metadata gmd[HS_CLIENT_MAX_MD];
	size_t n_md;
	grpc_call *call;
	grpc_byte_buffer *send, *recv;
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status;
	grpc_slice details;
	grpc_op ops[6];
} hs_client__unary;

/* Checks md, creates the call on cq and starts the batch with tag. HS_OK,
 * or an error with st set (then no completion comes for tag). Dispose u
 * either way. */
int hs_client__unary_start(hs_client__unary *u, hs_client *c, grpc_completion_queue *cq,
			   const char *method, const ProtobufCMessage *req, const hs_client_md *md,
			   size_t n_md, int64_t deadline_ms, void *tag, hs_client_status *st);
/* The same on channel ch with an absolute deadline. */
int hs_client__unary_start_on(hs_client__unary *u, grpc_channel *ch, grpc_completion_queue *cq,
			      const char *method, const ProtobufCMessage *req, const hs_client_md *md,
			      size_t n_md, gpr_timespec deadline, void *tag, hs_client_status *st);
/* After tag completed: st := the call's status; *resp_out := the response
 * (HS_OK) or the status's code. */
int hs_client__unary_finish(hs_client__unary *u, const ProtobufCMessageDescriptor *resp_desc,
			    ProtobufCMessage **resp_out, hs_client_status *st);
void hs_client__unary_dispose(hs_client__unary *u);

/* The two batches that open a server stream (client.c, async.c): *status_op
 * receives the status and trailing metadata; start[4] sends metadata, the
 * request and the half-close and receives the initial metadata. */
void hs_client__server_stream_ops(grpc_op *status_op, grpc_op start[4], grpc_metadata *md,
				  size_t n_md, grpc_byte_buffer *send, grpc_metadata_array *init_md,
				  grpc_metadata_array *trail_md, grpc_status_code *status,
				  grpc_slice *details);

#endif
