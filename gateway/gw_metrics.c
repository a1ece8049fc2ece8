/* Gateway metrics (gw_metrics.h). */
#include "gw_metrics.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

/* The statuses the gateway answers; anything else counts as "other". */
static const int codes[] = { 200, 204, 304, 400, 401, 403, 404, 405, 409, 412, 413, 414,
			     415, 429, 431, 499, 500, 501, 502, 503, 504 };
#define N_CODES (sizeof(codes) / sizeof(codes[0]))
#define N_GRPC_CODES 17

typedef struct slot {
	char label[256];
	hs_counter by_code[N_CODES + 1]; /* last: other */
	hs_histogram latency;
} slot;

struct hs_gw_metrics {
	size_t n_rest, n;
	slot *slots;
	const hs_gw_route *rest0;
	hs_counter upstream[N_GRPC_CODES];
	_Atomic long connections, in_flight;
};

static const char *const fixed_labels[HS_GW_R_N] = {
	"GET /health", "GET /livez", "GET /readyz", "POST /api/v1/auth/login",
	"POST /api/v1/auth/refresh", "POST /api/v1/auth/logout", "console", "preflight", "unmatched",
};

int hs_gw_metrics_new(hs_gw_metrics **out, const hs_gw_routes *routes, hs_error *err)
{
	hs_gw_metrics *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return hs_error_set(err, HS_INTERNAL, "gateway metrics: out of memory");
	m->n_rest = routes != NULL ? hs_gw_routes_count(routes) : 0;
	m->n = m->n_rest + HS_GW_R_N;
	m->rest0 = m->n_rest > 0 ? hs_gw_routes_at(routes, 0) : NULL;
	if ((m->slots = calloc(m->n, sizeof(*m->slots))) == NULL) {
		free(m);
		return hs_error_set(err, HS_INTERNAL, "gateway metrics: out of memory");
	}
	for (size_t i = 0; i < m->n; i++) {
		slot *s = &m->slots[i];
		if (i < m->n_rest) {
			const hs_gw_route *rt = hs_gw_routes_at(routes, i);
			snprintf(s->label, sizeof(s->label), "%s %s", rt->http_method, rt->tmpl);
		} else {
			snprintf(s->label, sizeof(s->label), "%s", fixed_labels[i - m->n_rest]);
		}
		hs_histogram_init(&s->latency, hs_metrics_default_seconds, 11, 1e6);
	}
	*out = m;
	return HS_OK;
}

void hs_gw_metrics_free(hs_gw_metrics *m)
{
	if (m == NULL)
		return;
	free(m->slots);
	free(m);
}

size_t hs_gw_metrics_rest_slot(const hs_gw_metrics *m, const hs_gw_route *rt)
{
	if (m == NULL)
		return 0;
	/* by address (no pointer arithmetic across objects): one of the rules? */
	uintptr_t p = (uintptr_t)rt, base = (uintptr_t)m->rest0;
	if (rt == NULL || m->rest0 == NULL || p < base || (p - base) % sizeof(*rt) != 0 ||
	    (p - base) / sizeof(*rt) >= m->n_rest)
		return m->n_rest + HS_GW_R_UNMATCHED;
	return (p - base) / sizeof(*rt);
}

size_t hs_gw_metrics_fixed_slot(const hs_gw_metrics *m, hs_gw_route_id id)
{
	return m != NULL ? m->n_rest + (size_t)id : 0;
}

void hs_gw_metrics_request(hs_gw_metrics *m, size_t slot_i, int status, double seconds)
{
	if (m == NULL || slot_i >= m->n)
		return;
	slot *s = &m->slots[slot_i];
	size_t c = N_CODES;
	for (size_t i = 0; i < N_CODES; i++)
		if (codes[i] == status) {
			c = i;
			break;
		}
	hs_counter_add(&s->by_code[c], 1);
	hs_histogram_observe(&s->latency, seconds);
}

void hs_gw_metrics_upstream_error(hs_gw_metrics *m, int grpc_code)
{
	if (m != NULL && grpc_code > 0 && grpc_code < N_GRPC_CODES)
		hs_counter_add(&m->upstream[grpc_code], 1);
}

void hs_gw_metrics_connections(hs_gw_metrics *m, int delta)
{
	if (m != NULL)
		atomic_fetch_add_explicit(&m->connections, delta, memory_order_relaxed);
}

void hs_gw_metrics_in_flight(hs_gw_metrics *m, int delta)
{
	if (m != NULL)
		atomic_fetch_add_explicit(&m->in_flight, delta, memory_order_relaxed);
}

void hs_gw_metrics_collect(hs_metrics_out *out, void *payload)
{
	hs_gw_metrics *m = payload;
	char code[16];
	hs_metrics_family(out, "harness_gateway_requests_total", "counter",
			  "HTTP requests answered, by route (method and template) and status.");
	for (size_t i = 0; i < m->n; i++)
		for (size_t c = 0; c <= N_CODES; c++) {
			uint64_t v = hs_counter_get(&m->slots[i].by_code[c]);
			if (v == 0)
				continue;
			if (c < N_CODES)
				snprintf(code, sizeof(code), "%d", codes[c]);
			else
				snprintf(code, sizeof(code), "other");
			const char *l[] = { "route", m->slots[i].label, "code", code, NULL };
			hs_metrics_sample(out, "harness_gateway_requests_total", l, (double)v);
		}
	hs_metrics_family(out, "harness_gateway_request_duration_seconds", "histogram",
			  "Time from a request's headers to its answer (an event stream: to its "
			  "end), by route.");
	for (size_t i = 0; i < m->n; i++) {
		uint64_t any = 0;
		for (size_t c = 0; c <= N_CODES; c++)
			any += hs_counter_get(&m->slots[i].by_code[c]);
		if (any == 0)
			continue;
		const char *l[] = { "route", m->slots[i].label, NULL };
		hs_metrics_histogram(out, "harness_gateway_request_duration_seconds", l,
				     &m->slots[i].latency);
	}
	hs_metrics_family(out, "harness_gateway_upstream_errors_total", "counter",
			  "gRPC calls to harnessd that failed, by gRPC status code.");
	for (int c = 1; c < N_GRPC_CODES; c++) {
		const char *l[] = { "grpc_code", hs_client_grpc_code_name(c), NULL };
		hs_metrics_sample(out, "harness_gateway_upstream_errors_total", l,
				  (double)hs_counter_get(&m->upstream[c]));
	}
	hs_metrics_family(out, "harness_gateway_open_connections", "gauge",
			  "Client connections open (accepted, not yet closed).");
	hs_metrics_sample(out, "harness_gateway_open_connections", NULL,
			  (double)atomic_load_explicit(&m->connections, memory_order_relaxed));
	hs_metrics_family(out, "harness_gateway_requests_in_flight", "gauge",
			  "Requests being answered now (open event streams included).");
	hs_metrics_sample(out, "harness_gateway_requests_in_flight", NULL,
			  (double)atomic_load_explicit(&m->in_flight, memory_order_relaxed));
}
