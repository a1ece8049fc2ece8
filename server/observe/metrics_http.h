/* The Prometheus scrape endpoint: GET /metrics over plain HTTP on its own
 * listener (--metrics-listen), apart from the gRPC port so a NetworkPolicy
 * can open it to Prometheus alone. Two civetweb threads; a scrape renders
 * the registry (common/metrics.h). */
#ifndef HS_OBSERVE_METRICS_HTTP_H
#define HS_OBSERVE_METRICS_HTTP_H

#include <stdbool.h>

#include "error.h"
#include "metrics.h"

typedef struct hs_metrics_http hs_metrics_http;

/* listen: "host:port" (port 0 picks a free one). metrics is borrowed and
 * must outlive the listener. HS_UNAVAILABLE if the port cannot be bound,
 * HS_INVALID for a malformed address. */
int hs_metrics_http_start(hs_metrics_http **out, const char *listen, hs_metrics *metrics,
			  hs_error *err);
/* The bound port. */
int hs_metrics_http_port(const hs_metrics_http *h);
/* Probes on the same listener: GET /livez and /readyz answer 200 "ok" or
 * 503 as probe(payload, false) (live) and probe(payload, true) (ready)
 * say. probe runs on a listener thread: it must not block for long. */
typedef struct hs_metrics_http_opts {
	bool (*probe)(void *payload, bool ready); /* NULL: no /livez, /readyz */
	void *payload;
} hs_metrics_http_opts;

/* As hs_metrics_http_start, with opts (copied; NULL = none). */
int hs_metrics_http_start_with(hs_metrics_http **out, const char *listen, hs_metrics *metrics,
			       const hs_metrics_http_opts *opts, hs_error *err);
/* Stops the listener (waits for a scrape in progress). NULL is a no-op. */
void hs_metrics_http_stop(hs_metrics_http *h);

#endif
