/* libharness-client, shared-queue mode: calls on an hs_client's channel
 * whose completions all arrive on ONE completion queue, polled by a few
 * threads this object owns. A calling thread starts its batch and sleeps
 * on its own condition variable until a poller hands over the result; it
 * never polls gRPC itself and no queue is created per call. Used by
 * harness-gateway, whose civetweb workers call concurrently: the channel's
 * I/O runs on the pollers, not on whichever worker happens to pluck.
 *
 * Same contracts as client.h's calls (statuses, metadata rules, ownership
 * of returned messages), plus a stream read that waits at most wait_ms.
 * Unary calls follow harness-node-address as client.h's do; streams do
 * not (harnessd relays a token caller's streams without a bound, and the
 * gateway's callers are token callers). */
#ifndef HS_CLIENTS_ASYNC_H
#define HS_CLIENTS_ASYNC_H

#include <stdint.h>

#include "client.h"

typedef struct hs_async hs_async;
typedef struct hs_async_stream hs_async_stream;

/* Starts `pollers` threads (1..16) on a new completion queue for calls on
 * c's channel; c must outlive the hs_async. *out on success. */
int hs_async_new(hs_async **out, hs_client *c, int pollers, hs_error *err);

/* Shuts the queue down and joins the pollers. Every call and stream must
 * have ended (streams freed) before. NULL is a no-op. */
void hs_async_free(hs_async *a);

/* As hs_client_unary, following harness-node-address the same way (unless
 * the client's no_follow). Thread-safe. */
int hs_async_unary(hs_async *a, const char *method, const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp_out,
		   const hs_client_md *md, size_t n_md, int64_t deadline_ms, hs_client_status *st);

/* As hs_client_stream_start: sends req and waits for the server's initial
 * metadata, or the call's end (reported here), but at most wait_ms (< 0:
 * no limit): a server that sends its initial metadata with the first
 * message (harnessd does) may have nothing to send yet. Then the stream is
 * returned open, and a failure shows in hs_async_stream_next. At most one
 * message is read ahead of the consumer, so a slow consumer slows the
 * server down (HTTP/2 flow control) instead of growing a buffer. */
int hs_async_stream_start(hs_async_stream **out, hs_async *a, const char *method,
			  const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			  const hs_client_md *md, size_t n_md, int64_t deadline_ms, int64_t wait_ms,
			  hs_client_status *st);

/* The next message: HS_OK with *msg_out (free with
 * protobuf_c_message_free_unpacked), HS_OK with *msg_out = NULL at a clean
 * end, HS_TIMEOUT when none arrived within wait_ms (< 0: no limit; the call
 * goes on), else the call's status as hs_client_unary. One consumer thread
 * at a time. */
int hs_async_stream_next(hs_async_stream *s, ProtobufCMessage **msg_out, int64_t wait_ms,
			 hs_client_status *st);

/* Cancels the call; a waiting hs_async_stream_next returns HS_CANCELLED.
 * Thread-safe, any number of times. */
void hs_async_stream_cancel(hs_async_stream *s);

/* Cancels if still running, waits for its outstanding operations, frees.
 * NULL is a no-op. */
void hs_async_stream_free(hs_async_stream *s);

#endif
