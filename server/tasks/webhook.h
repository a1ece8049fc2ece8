/* Webhook sender for task events: a bounded queue drained by one thread
 * that POSTs each JSON body with libcurl, retrying with exponential backoff.
 * Posting never blocks: when the queue is full the event is dropped and
 * counted (and logged). A reusable helper: no health-module types. */
#ifndef HS_TASKS_WEBHOOK_H
#define HS_TASKS_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct hs_webhook hs_webhook;

typedef struct hs_webhook_config {
	const char *url;     /* http(s) URL, copied */
	size_t queue;        /* bodies waiting, 0 = 1024 */
	unsigned attempts;   /* per body, 0 = 4 */
	int64_t backoff_ms;  /* first retry delay, doubling; 0 = 500 */
	int64_t timeout_ms;  /* per request, 0 = 5000 */
} hs_webhook_config;

/* HS_INVALID for a URL that is not http:// or https://. */
int hs_webhook_new(hs_webhook **out, const hs_webhook_config *cfg, hs_error *err);
/* Stops the thread (an in-flight request finishes or times out; queued
 * bodies are dropped). NULL is a no-op. */
void hs_webhook_free(hs_webhook *w);
/* Takes ownership of body (malloc'd JSON). HS_LIMIT when full (dropped).
 * The calling thread's request id and traceparent (common/trace.h) are
 * sent with it as X-Request-Id and traceparent headers. */
int hs_webhook_post(hs_webhook *w, char *body);
void hs_webhook_stats(hs_webhook *w, uint64_t *sent, uint64_t *dropped, uint64_t *failed);

#endif
