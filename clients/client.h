/* libharness-client: a small blocking gRPC client on the gRPC C core, shared
 * by harness-gateway and harnessctl: unary, server-streaming and bidi
 * calls. One hs_client owns one channel, which is
 * thread-safe and shared by every call; each call blocks only its calling
 * thread (a per-call pluck completion queue). Messages are protobuf-c.
 *
 * Errors follow common/error.h: HS_OK or a negative hs_code; the gRPC status
 * (code, details, the server's error code from trailing metadata) goes into a
 * caller-passed hs_client_status (NULL allowed). */
#ifndef HS_CLIENTS_CLIENT_H
#define HS_CLIENTS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "error.h"

typedef struct hs_client hs_client;
typedef struct hs_client_stream hs_client_stream;

typedef struct hs_client_opts {
	int64_t default_deadline_ms; /* used when a call passes 0; <0 = none */
	int max_recv_bytes;          /* largest response message; 0 = 4 MiB */
	const char *user_agent;      /* prepended to gRPC's user agent; NULL ok */
	/* TLS is used when tls is set or any of the files is given; else
	 * plaintext. */
	const char *tls_ca_file;     /* PEM roots the server must chain to; NULL = system roots */
	int tls;                     /* TLS with the roots above */
	const char *tls_cert_file;   /* client certificate chain (mTLS), with tls_key_file */
	const char *tls_key_file;
	const char *tls_server_name; /* name checked in the server's certificate instead of
				      * the target's host (and sent as SNI); NULL = the host */
	/* 0 (the default): a unary call, or a server stream before its first
	 * message, answered UNAVAILABLE with the trailing metadata
	 * harness-node-address (the object lives on another harnessd node,
	 * which this one did not forward the call to) is sent once more to
	 * that address, with the same metadata, the same credentials and TLS
	 * settings (server-name override included) and what is left of the
	 * deadline. One hop; only a strict HOST:PORT is followed (follow.c).
	 * Bidi streams are not followed. 1: never follow. */
	int no_follow;
} hs_client_opts;

#define HS_CLIENT_OPTS_INIT { 5000, 0, NULL, NULL, 0, NULL, NULL, NULL, 0 }

/* One request metadata entry. Keys are lower-case gRPC keys; values must be
 * printable ASCII (anything else is HS_INVALID before the call starts). */
typedef struct hs_client_md {
	const char *key;
	const char *value;
} hs_client_md;

#define HS_CLIENT_DETAILS_MAX 512

typedef struct hs_client_status {
	int code;                            /* grpc_status_code, 0 = OK */
	char details[HS_CLIENT_DETAILS_MAX]; /* status message, truncated */
	/* The server's hs_error.reason (trailing metadata HS_ERROR_REASON_KEY,
	 * e.g. "INVALID_CREDENTIALS" from the upstream user service) when it
	 * sent a well-formed one, else "". */
	char error_code[HS_ERROR_REASON_MAX];
} hs_client_status;

/* Creates a client for target ("127.0.0.1:50051", "dns:///host:port").
 * opts NULL = HS_CLIENT_OPTS_INIT. Calls grpc_init(); *out on success,
 * free with hs_client_free. Connecting is lazy: a down server shows up as
 * UNAVAILABLE on the first call, not here. */
int hs_client_new(hs_client **out, const char *target, const hs_client_opts *opts, hs_error *err);
void hs_client_free(hs_client *c);

/* Unary call to method ("/harness.v1.AuthService/Login"). deadline_ms: 0 =
 * the client's default, <0 = none. On HS_OK *resp_out is the unpacked
 * response (free with protobuf_c_message_free_unpacked(msg, NULL)).
 * Otherwise returns hs_client_code_from_grpc(st->code), or HS_INVALID for bad
 * metadata, HS_INTERNAL for a response that does not parse. Thread-safe. */
int hs_client_unary(hs_client *c, const char *method, const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp_out,
		    const hs_client_md *md, size_t n_md, int64_t deadline_ms, hs_client_status *st);

/* Server-streaming call: sends req and waits for the server's initial
 * metadata (so "server down" is reported here). *out on success. */
int hs_client_stream_start(hs_client_stream **out, hs_client *c, const char *method,
			   const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			   const hs_client_md *md, size_t n_md, int64_t deadline_ms,
			   hs_client_status *st);

/* Blocks for the next message. HS_OK with *msg_out set (free with
 * protobuf_c_message_free_unpacked), HS_OK with *msg_out = NULL at a clean end
 * of stream (st->code 0), else the status as hs_client_unary. One thread at
 * a time per stream. */
int hs_client_stream_next(hs_client_stream *s, ProtobufCMessage **msg_out, hs_client_status *st);

/* Bidirectional stream: starts the call with its metadata and first
 * message (NULL: none yet) and returns without waiting for the server;
 * failures (server down, refused) come from hs_client_stream_next. */
int hs_client_bidi_start(hs_client_stream **out, hs_client *c, const char *method,
			 const ProtobufCMessage *first, const ProtobufCMessageDescriptor *resp_desc,
			 const hs_client_md *md, size_t n_md, int64_t deadline_ms,
			 hs_client_status *st);

/* Bidi: sends one message, blocking until the transport took it (HTTP/2
 * flow control: while the server does not read, this waits).
 * HS_CANCELLED once the call has ended (its status comes from
 * hs_client_stream_next). One sending thread at a time; it may run while
 * another thread is in hs_client_stream_next. */
int hs_client_stream_send(hs_client_stream *s, const ProtobufCMessage *msg);

/* Bidi: the client will send no more (half-close). As hs_client_stream_send. */
int hs_client_stream_close_send(hs_client_stream *s);

/* Cancels the call; a blocked hs_client_stream_next returns HS_CANCELLED.
 * Thread-safe (but not async-signal-safe). */
void hs_client_stream_cancel(hs_client_stream *s);

/* Cancels if still running and frees. NULL is a no-op. */
void hs_client_stream_free(hs_client_stream *s);

/* grpc_status_code -> hs_code (OUT_OF_RANGE -> HS_INVALID, UNKNOWN and
 * DATA_LOSS -> HS_INTERNAL, FAILED_PRECONDITION -> HS_CONFLICT, ...). */
hs_code hs_client_code_from_grpc(int grpc_code);

/* grpc_status_code -> HTTP status as grpc-gateway (DESIGN.md's table). */
int hs_client_grpc_to_http(int grpc_code);

/* "OK", "CANCELLED", ..., "UNAUTHENTICATED"; "UNKNOWN" for out-of-range. */
const char *hs_client_grpc_code_name(int grpc_code);

#endif
