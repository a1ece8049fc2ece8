/* gateway/gw_metrics.c: route slots from the real google.api.http rules,
 * status codes (known ones and "other"), upstream gRPC codes, and the
 * exposition that comes out (fixed label sets, only routes seen). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "descriptor_set.h"
#include "gw_metrics.h"
#include "metrics.h"
#include "routes.h"
#include "services.h"

static hs_gw_routes *load_all(void)
{
	size_t n;
	const ProtobufCServiceDescriptor *const *sv = hs_gw_services(&n);
	hs_gw_routes *r = NULL;
	hs_error err = { 0 };
	if (hs_gw_routes_load(&r, hs_descriptor_set, hs_descriptor_set_len, sv, n, &err) != HS_OK)
		fail_msg("load: %s", err.msg);
	return r;
}

static const hs_gw_route *route_of(const hs_gw_routes *r, const char *grpc_path)
{
	for (size_t i = 0; i < hs_gw_routes_count(r); i++)
		if (!strcmp(hs_gw_routes_at(r, i)->grpc_path, grpc_path))
			return hs_gw_routes_at(r, i);
	return NULL;
}

static char *render(hs_gw_metrics *gm)
{
	hs_metrics *reg = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_metrics_new(&reg, &err), HS_OK);
	assert_int_equal(hs_metrics_add(reg, hs_gw_metrics_collect, gm, &err), HS_OK);
	size_t len = 0;
	char *text = hs_metrics_render(reg, &len);
	assert_non_null(text);
	hs_metrics_remove(reg, hs_gw_metrics_collect, gm);
	hs_metrics_free(reg);
	return text;
}

static void test_metrics__counts_by_route_template_and_status(void **state)
{
	(void)state;
	hs_gw_routes *routes = load_all();
	hs_gw_metrics *gm = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_gw_metrics_new(&gm, routes, &err), HS_OK);
	const hs_gw_route *get = route_of(routes, "/harness.v1.HealthService/GetTask");
	assert_non_null(get);
	size_t s_get = hs_gw_metrics_rest_slot(gm, get);
	hs_gw_metrics_request(gm, s_get, 200, 0.002);
	hs_gw_metrics_request(gm, s_get, 200, 0.004);
	hs_gw_metrics_request(gm, s_get, 404, 0.001);
	hs_gw_metrics_request(gm, s_get, 418, 0.001); /* not in the known set: "other" */
	hs_gw_metrics_request(gm, hs_gw_metrics_fixed_slot(gm, HS_GW_R_LIVEZ), 200, 0.0001);
	/* a pointer that is not one of the routes counts as unmatched */
	hs_gw_route bogus;
	memset(&bogus, 0, sizeof(bogus));
	hs_gw_metrics_request(gm, hs_gw_metrics_rest_slot(gm, &bogus), 404, 0.0001);
	hs_gw_metrics_request(gm, (size_t)-1, 200, 0.1); /* out of range: ignored */
	hs_gw_metrics_upstream_error(gm, 5);
	hs_gw_metrics_upstream_error(gm, 5);
	hs_gw_metrics_upstream_error(gm, 0);  /* OK is no error */
	hs_gw_metrics_upstream_error(gm, 99); /* ignored */
	hs_gw_metrics_connections(gm, 1);
	hs_gw_metrics_connections(gm, 1);
	hs_gw_metrics_connections(gm, -1);
	hs_gw_metrics_in_flight(gm, 1);

	char *text = render(gm);
	const char *want[] = {
		"harness_gateway_requests_total{route=\"GET /v1/tasks/{task_id}\",code=\"200\"} 2\n",
		"harness_gateway_requests_total{route=\"GET /v1/tasks/{task_id}\",code=\"404\"} 1\n",
		"harness_gateway_requests_total{route=\"GET /v1/tasks/{task_id}\",code=\"other\"} 1\n",
		"harness_gateway_requests_total{route=\"GET /livez\",code=\"200\"} 1\n",
		"harness_gateway_requests_total{route=\"unmatched\",code=\"404\"} 1\n",
		"harness_gateway_request_duration_seconds_count{route=\"GET /v1/tasks/{task_id}\"} 4\n",
		"harness_gateway_request_duration_seconds_bucket{route=\"GET /v1/tasks/{task_id}\",le=\"0.005\"} 4\n",
		"harness_gateway_upstream_errors_total{grpc_code=\"NOT_FOUND\"} 2\n",
		"harness_gateway_upstream_errors_total{grpc_code=\"UNAUTHENTICATED\"} 0\n",
		"harness_gateway_open_connections 1\n",
		"harness_gateway_requests_in_flight 1\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (strstr(text, want[i]) == NULL)
			fail_msg("missing %s in:\n%s", want[i], text);
	/* routes never called have no series; no OK in upstream errors */
	assert_null(strstr(text, "POST /v1/tasks\""));
	assert_null(strstr(text, "grpc_code=\"OK\""));
	/* exactly one sample line per (route, code) seen */
	size_t n = 0;
	for (const char *p = text; (p = strstr(p, "\nharness_gateway_requests_total{")) != NULL; p++)
		n++;
	assert_int_equal(n, 5);
	free(text);
	hs_gw_metrics_free(gm);
	hs_gw_routes_free(routes);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metrics__counts_by_route_template_and_status),
	};
	return cmocka_run_group_tests_name("gateway.metrics", tests, NULL, NULL);
}
