/* Request ids and W3C trace context (traceparent) for one call, and the
 * per-thread context that puts them on every log line of that call.
 *
 * The gateway accepts or creates `x-request-id` and `traceparent` and
 * passes both to harnessd as metadata; harnessd's RPC core validates them
 * again (a bad value is replaced, never logged raw) and sets the thread's
 * context while the handler runs; hs_log adds `request_id` and `trace_id`
 * to each line, and outgoing HTTP (user service, webhooks) carries them as
 * headers. */
#ifndef HS_COMMON_TRACE_H
#define HS_COMMON_TRACE_H

#include <stdbool.h>
#include <stddef.h>

#define HS_REQUEST_ID_MAX 64   /* bytes of an x-request-id we keep */
#define HS_TRACEPARENT_LEN 55  /* "00-<32 hex>-<16 hex>-<2 hex>" */
#define HS_TRACE_ID_LEN 32

/* A request id we accept as given: 1..HS_REQUEST_ID_MAX bytes of
 * [A-Za-z0-9._:-]. v need not be NUL-terminated. */
bool hs_trace_request_id_ok(const char *v, size_t n);
/* A fresh request id: 32 lowercase hex digits. out: at least 33 bytes. */
void hs_trace_request_id_new(char *out);

/* A W3C traceparent we forward: version 00, lowercase hex, trace id and
 * parent id not all zeros, exactly HS_TRACEPARENT_LEN bytes. */
bool hs_trace_parent_ok(const char *v, size_t n);
/* A new trace (random trace id and parent id, flags 01 = sampled).
 * out: at least HS_TRACEPARENT_LEN + 1 bytes. */
void hs_trace_parent_new(char *out);

/* The calling thread's context. */
typedef struct hs_trace_ctx {
	char request_id[HS_REQUEST_ID_MAX + 1];   /* "" = none */
	char traceparent[HS_TRACEPARENT_LEN + 1]; /* "" = none */
} hs_trace_ctx;

/* Sets this thread's context from raw caller values (length-bounded, not
 * necessarily NUL-terminated; NULL = absent): a missing or malformed
 * request id is replaced by a new one, a missing or malformed traceparent
 * by a new trace. Until hs_trace_end, every hs_log line of this thread
 * carries request_id and trace_id. */
void hs_trace_begin(const char *request_id, size_t rid_len, const char *traceparent,
		    size_t tp_len);
/* Sets the context to a copy of ctx (values already checked, e.g. saved
 * with hs_trace_current when work is queued for another thread). */
void hs_trace_restore(const hs_trace_ctx *ctx);
/* Clears this thread's context. */
void hs_trace_end(void);
/* This thread's context; fields "" when none. Never NULL. */
const hs_trace_ctx *hs_trace_current(void);

#endif
