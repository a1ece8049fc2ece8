/* The gateway's Prometheus metrics, served on its own --metrics-listen
 * (server/observe/metrics_http.h, the listener harnessd uses):
 *   harness_gateway_requests_total{route,code}
 *   harness_gateway_request_duration_seconds{route} (histogram)
 *   harness_gateway_upstream_errors_total{grpc_code}
 *   harness_gateway_open_connections, harness_gateway_requests_in_flight
 * route is "<METHOD> <template>" for a /v1 route (its google.api.http rule),
 * or one of a fixed few ("GET /health", "POST /api/v1/auth/login", ...,
 * "console", "preflight", "unmatched"): the label set is fixed at start.
 * Counting is relaxed atomic adds; nothing is allocated per request. */
#ifndef HS_GATEWAY_GW_METRICS_H
#define HS_GATEWAY_GW_METRICS_H

#include <stddef.h>

#include "error.h"
#include "metrics.h"
#include "routes.h"

typedef struct hs_gw_metrics hs_gw_metrics;

/* Fixed routes after the REST ones. */
typedef enum hs_gw_route_id {
	HS_GW_R_HEALTH = 0,
	HS_GW_R_LIVEZ,
	HS_GW_R_READYZ,
	HS_GW_R_LOGIN,
	HS_GW_R_REFRESH,
	HS_GW_R_LOGOUT,
	HS_GW_R_CONSOLE,
	HS_GW_R_PREFLIGHT,
	HS_GW_R_UNMATCHED,
	HS_GW_R_N
} hs_gw_route_id;

/* routes: borrowed, outlives m. */
int hs_gw_metrics_new(hs_gw_metrics **out, const hs_gw_routes *routes, hs_error *err);
void hs_gw_metrics_free(hs_gw_metrics *m);

/* The route slot of a REST route (a pointer into routes) or a fixed one. */
size_t hs_gw_metrics_rest_slot(const hs_gw_metrics *m, const hs_gw_route *rt);
size_t hs_gw_metrics_fixed_slot(const hs_gw_metrics *m, hs_gw_route_id id);

/* A finished request: its route slot, HTTP status and duration. NULL m: no-op. */
void hs_gw_metrics_request(hs_gw_metrics *m, size_t slot, int status, double seconds);
/* A gRPC call to harnessd that failed with grpc_code (1..16). */
void hs_gw_metrics_upstream_error(hs_gw_metrics *m, int grpc_code);
/* +1 / -1 open connections; +1 / -1 requests in flight. */
void hs_gw_metrics_connections(hs_gw_metrics *m, int delta);
void hs_gw_metrics_in_flight(hs_gw_metrics *m, int delta);

/* The collector (payload: the hs_gw_metrics). */
void hs_gw_metrics_collect(hs_metrics_out *out, void *payload);

#endif
