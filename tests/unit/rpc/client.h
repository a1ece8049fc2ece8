/* A tiny blocking gRPC client on the C core API for the RPC-core tests:
 * one pluck completion queue per call, every wait bounded (no test hangs). */
#ifndef HS_TEST_RPC_CLIENT_H
#define HS_TEST_RPC_CLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

grpc_channel *tc_channel(int port);
/* A channel whose streams get a small fixed flow-control window (no BDP
 * probing): a stream it does not read stalls the server's writes soon. */
grpc_channel *tc_channel_small_window(int port);

typedef struct tc_reply {
	grpc_status_code status;
	char details[512];
	char init_md[256];  /* value of the key asked for, "" if absent */
	char trail_md[256];
	ProtobufCMessage *msg; /* unpacked response or NULL; tc_reply_dispose frees */
	bool timed_out;        /* the client gave up waiting (a bug) */
	double ms;             /* wall time of the call */
} tc_reply;

/* One unary call. raw/raw_len (if raw != NULL) replace the packed req.
 * md: pairs of key, value strings (n_md pairs). deadline_ms <= 0: none.
 * md_key: the initial/trailing metadata key copied into the reply. */
void tc_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
	      const void *raw, size_t raw_len, const char *const *md, size_t n_md,
	      int deadline_ms, const ProtobufCMessageDescriptor *resp_desc,
	      const char *md_key, tc_reply *out);
void tc_reply_dispose(tc_reply *r);

/* A streaming call, step by step. */
typedef struct tc_stream {
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status;
	grpc_slice details;
	bool got_initial;
	const ProtobufCMessageDescriptor *resp_desc;
} tc_stream;

/* Starts the call; sends req (if not NULL) and half-closes if close. */
bool tc_stream_start(tc_stream *s, grpc_channel *ch, const char *method, int deadline_ms,
		     const ProtobufCMessageDescriptor *resp_desc, const ProtobufCMessage *req,
		     bool close);
/* The same with request metadata md: n_md pairs of key, value (at most 8). */
bool tc_stream_start_md(tc_stream *s, grpc_channel *ch, const char *method, int deadline_ms,
			const ProtobufCMessageDescriptor *resp_desc, const ProtobufCMessage *req,
			bool close, const char *const *md, size_t n_md);
bool tc_stream_send(tc_stream *s, const ProtobufCMessage *msg);
bool tc_stream_close(tc_stream *s);
/* Next message (caller frees with protobuf_c_message_free_unpacked); NULL
 * at the end of the stream (or on failure: *ok false). */
ProtobufCMessage *tc_stream_recv(tc_stream *s, bool *ok);
void tc_stream_cancel(tc_stream *s);
/* Waits for the status and frees everything. details may be NULL. */
grpc_status_code tc_stream_finish(tc_stream *s, char *details, size_t cap);
/* The same, also copying trailing metadata key's value into val ("" if absent). */
grpc_status_code tc_stream_finish_md(tc_stream *s, char *details, size_t cap, const char *key,
				     char *val, size_t vcap);

#endif
