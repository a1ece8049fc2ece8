/* gateway/routes.c: rules read from the embedded descriptor set, matching,
 * and the load errors of a bad rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "descriptor_set.h"
#include "google/api/http.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "routes.h"
#include "services.h"

static hs_gw_routes *load_all(void)
{
	size_t n;
	const ProtobufCServiceDescriptor *const *sv = hs_gw_services(&n);
	hs_gw_routes *r = NULL;
	hs_error err = { 0 };
	int rc = hs_gw_routes_load(&r, hs_descriptor_set, hs_descriptor_set_len, sv, n, &err);
	if (rc != HS_OK)
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

/* Every method of the four services has a route, except the bidi stream. */
static void test_routes__every_rpc_is_mapped(void **state)
{
	(void)state;
	hs_gw_routes *r = load_all();
	size_t n;
	const ProtobufCServiceDescriptor *const *sv = hs_gw_services(&n);
	size_t methods = 0;
	for (size_t s = 0; s < n; s++) {
		for (unsigned m = 0; m < sv[s]->n_methods; m++) {
			char path[256];
			snprintf(path, sizeof(path), "/%s/%s", sv[s]->name, sv[s]->methods[m].name);
			methods++;
			if (!strcmp(path, "/harness.v1.SandboxService/ExecSandbox")) {
				assert_null(route_of(r, path));
				continue;
			}
			if (route_of(r, path) == NULL)
				fail_msg("no route for %s", path);
		}
	}
	assert_true(methods >= 40);
	assert_string_equal(hs_gw_routes_unmapped(r, 0), "/harness.v1.SandboxService/ExecSandbox");
	assert_null(hs_gw_routes_unmapped(r, 1));
	const hs_gw_route *hb = route_of(r, "/harness.v1.HealthService/Heartbeat");
	assert_string_equal(hb->http_method, "POST");
	assert_string_equal(hb->tmpl, "/v1/tasks/{task_id}:heartbeat");
	assert_string_equal(hb->body, "*");
	assert_string_equal(hb->verb, "heartbeat");
	assert_string_equal(hb->operation_id, "HealthService_Heartbeat");
	assert_ptr_equal(hb->in, &harness__v1__heartbeat_request__descriptor);
	assert_false(hb->server_streaming);
	assert_true(route_of(r, "/harness.v1.HealthService/WatchTasks")->server_streaming);
	assert_string_equal(route_of(r, "/grpc.health.v1.Health/Watch")->tmpl, "/v1/health:watch");
	hs_gw_routes_free(r);
}

static void expect_match(const hs_gw_routes *r, const char *method, const char *path,
			 const char *grpc_path, const char *v0, const char *v1)
{
	hs_gw_match m;
	hs_gw_match_result res = hs_gw_routes_match(r, method, path, &m);
	if (res != HS_GW_MATCH_OK)
		fail_msg("%s %s: no match (%d)", method, path, res);
	assert_string_equal(m.route->grpc_path, grpc_path);
	if (v0 != NULL)
		assert_string_equal(m.values[0], v0);
	if (v1 != NULL)
		assert_string_equal(m.values[1], v1);
}

static void test_routes__match(void **state)
{
	(void)state;
	hs_gw_routes *r = load_all();
	expect_match(r, "GET", "/v1/tasks/t-1", "/harness.v1.HealthService/GetTask", "t-1", NULL);
	expect_match(r, "HEAD", "/v1/tasks/t-1", "/harness.v1.HealthService/GetTask", "t-1", NULL);
	expect_match(r, "GET", "/v1/tasks", "/harness.v1.HealthService/ListTasks", NULL, NULL);
	expect_match(r, "POST", "/v1/tasks", "/harness.v1.HealthService/RegisterTask", NULL, NULL);
	expect_match(r, "GET", "/v1/tasks:watch", "/harness.v1.HealthService/WatchTasks", NULL, NULL);
	expect_match(r, "POST", "/v1/tasks/a.b_c:heartbeat", "/harness.v1.HealthService/Heartbeat",
		     "a.b_c", NULL);
	expect_match(r, "GET", "/v1/tasks/t/checkpoints:latest",
		     "/harness.v1.CheckpointService/GetLatestCheckpoint", "t", NULL);
	expect_match(r, "GET", "/v1/tasks/t/checkpoints", "/harness.v1.CheckpointService/ListCheckpoints",
		     "t", NULL);
	expect_match(r, "POST", "/v1/tasks/t/checkpoints/ckpt-3-abc:restore",
		     "/harness.v1.CheckpointService/RestoreCheckpoint", "t", "ckpt-3-abc");
	expect_match(r, "DELETE", "/v1/sandboxes/sb-1", "/harness.v1.SandboxService/DestroySandbox",
		     "sb-1", NULL);
	expect_match(r, "GET", "/v1/health", "/grpc.health.v1.Health/Check", NULL, NULL);

	hs_gw_match m;
	assert_int_equal(hs_gw_routes_match(r, "PUT", "/v1/tasks/t-1", &m), HS_GW_MATCH_METHOD);
	assert_string_equal(m.allow, "GET, OPTIONS");
	assert_int_equal(hs_gw_routes_match(r, "DELETE", "/v1/sandboxes", &m), HS_GW_MATCH_METHOD);
	assert_string_equal(m.allow, "GET, POST, OPTIONS");
	assert_int_equal(hs_gw_routes_match(r, "GET", "/v1/nothing", &m), HS_GW_MATCH_NONE);
	assert_int_equal(hs_gw_routes_match(r, "GET", "/v1/tasks/", &m), HS_GW_MATCH_NONE);
	assert_int_equal(hs_gw_routes_match(r, "GET", "/v1/tasks:nope", &m), HS_GW_MATCH_NONE);
	assert_int_equal(hs_gw_routes_match(r, "GET", "/v1/tasks/a/b", &m), HS_GW_MATCH_NONE);
	assert_int_equal(hs_gw_routes_match(r, "GET", "v1/tasks", &m), HS_GW_MATCH_NONE);
	assert_int_equal(hs_gw_routes_match(r, "GET", "", &m), HS_GW_MATCH_NONE);
	char big[HS_GW_PATH_MAX + 16];
	memset(big, 'a', sizeof(big) - 1);
	big[0] = '/';
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(hs_gw_routes_match(r, "GET", big, &m), HS_GW_MATCH_NONE);
	/* the path is matched as sent: an escape decodes inside its segment
	 * only, so "%2F", "%3A", "%2E%2E" and "%00" never reach another route
	 * (red team: a console link that turned POST /v1/tasks/{id}:recover
	 * into POST /v1/users/{id}:disable) */
	expect_match(r, "POST", "/v1/tasks/..%2Fusers%2Fu1%3Adisable:recover",
		     "/harness.v1.HealthService/RecoverTask", "../users/u1:disable", NULL);
	expect_match(r, "GET", "/v1/tasks/a%2Fb", "/harness.v1.HealthService/GetTask", "a/b", NULL);
	expect_match(r, "GET", "/v1/tasks/%2E%2E", "/harness.v1.HealthService/GetTask", "..", NULL);
	expect_match(r, "GET", "/v1/t%61sks/t%2D1", "/harness.v1.HealthService/GetTask", "t-1", NULL);
	assert_int_equal(hs_gw_routes_match(r, "POST", "/v1/tasks/t%3Acancel", &m), HS_GW_MATCH_METHOD);
	assert_int_equal(hs_gw_routes_match(r, "POST", "/v1/tasks/..%2Fusers%2Fu1%3Adisable%00:recover", &m),
			 HS_GW_MATCH_BAD);
	assert_int_equal(hs_gw_routes_match(r, "GET", "/v1/tasks/t%00", &m), HS_GW_MATCH_BAD);
	assert_int_equal(hs_gw_routes_match(r, "GET", "/v1/tasks/t%2", &m), HS_GW_MATCH_BAD);
	assert_int_equal(hs_gw_routes_match(r, "GET", "/v1/tasks/t%zz", &m), HS_GW_MATCH_BAD);
	assert_int_equal(hs_gw_routes_match(r, "POST", "/v1/tasks/t:can%00cel", &m), HS_GW_MATCH_BAD);
	/* as many segments as the path has bytes (found by fuzz_rest) */
	memset(big, '/', HS_GW_PATH_MAX);
	big[HS_GW_PATH_MAX] = '\0';
	assert_int_equal(hs_gw_routes_match(r, "GET", big, &m), HS_GW_MATCH_NONE);
	hs_gw_routes_free(r);
}

/* A descriptor set with one HealthService method whose rule is `rule`. */
static int load_one(const char *method, const Google__Api__HttpRule *rule, hs_error *err)
{
	/* as protobuf-c keeps it: the length prefix, then the bytes */
	size_t plen = google__api__http_rule__get_packed_size(rule);
	assert_true(plen < 128);
	uint8_t *rbuf = malloc(plen + 1);
	rbuf[0] = (uint8_t)plen;
	google__api__http_rule__pack(rule, rbuf + 1);
	ProtobufCMessageUnknownField uf = { 72295728u, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, plen + 1,
					    rbuf };
	Google__Protobuf__MethodOptions mo = GOOGLE__PROTOBUF__METHOD_OPTIONS__INIT;
	mo.base.n_unknown_fields = 1;
	mo.base.unknown_fields = &uf;
	Google__Protobuf__MethodDescriptorProto md = GOOGLE__PROTOBUF__METHOD_DESCRIPTOR_PROTO__INIT;
	md.name = (char *)method;
	md.options = &mo;
	Google__Protobuf__MethodDescriptorProto *mds[] = { &md };
	Google__Protobuf__ServiceDescriptorProto sd = GOOGLE__PROTOBUF__SERVICE_DESCRIPTOR_PROTO__INIT;
	sd.name = "HealthService";
	sd.n_method = 1;
	sd.method = mds;
	Google__Protobuf__ServiceDescriptorProto *sds[] = { &sd };
	Google__Protobuf__FileDescriptorProto fd = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
	fd.name = "x.proto";
	fd.package = "harness.v1";
	fd.n_service = 1;
	fd.service = sds;
	Google__Protobuf__FileDescriptorProto *fds[] = { &fd };
	Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
	set.n_file = 1;
	set.file = fds;
	size_t len = google__protobuf__file_descriptor_set__get_packed_size(&set);
	uint8_t *buf = malloc(len);
	google__protobuf__file_descriptor_set__pack(&set, buf);
	const ProtobufCServiceDescriptor *sv[] = { &harness__v1__health_service__descriptor };
	hs_gw_routes *r = NULL;
	int rc = hs_gw_routes_load(&r, buf, len, sv, 1, err);
	hs_gw_routes_free(r);
	free(buf);
	free(rbuf);
	return rc;
}

static void expect_bad(const char *method, const char *get, const char *post, const char *body,
		       const char *needle)
{
	Google__Api__HttpRule h = GOOGLE__API__HTTP_RULE__INIT;
	if (get != NULL) {
		h.pattern_case = GOOGLE__API__HTTP_RULE__PATTERN_GET;
		h.get = (char *)get;
	} else {
		h.pattern_case = GOOGLE__API__HTTP_RULE__PATTERN_POST;
		h.post = (char *)post;
	}
	if (body != NULL)
		h.body = (char *)body;
	hs_error err = { 0 };
	assert_int_equal(load_one(method, &h, &err), HS_INVALID);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
	assert_non_null(strstr(err.msg, method));
}

static void test_routes__bad_rules_are_refused(void **state)
{
	(void)state;
	expect_bad("GetTask", "/v1/tasks/{nope}", NULL, NULL, "{nope}");
	expect_bad("GetTask", "/v1/tasks/{task_id=**}", NULL, NULL, "variables");
	expect_bad("GetTask", "/v1/*/x", NULL, NULL, "wildcards");
	expect_bad("GetTask", "v1/tasks", NULL, NULL, "must start with '/'");
	expect_bad("GetTask", "/v1/tasks/{task_id", NULL, NULL, "unclosed");
	expect_bad("GetTask", "/v1/tasks:", NULL, NULL, "bad verb");
	expect_bad("GetTask", "/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a", NULL,
		   NULL, "more than 32 segments");
	expect_bad("GetTask", "/v1/tasks/{task_id}/{task_id}", NULL, NULL, "bound twice");
	expect_bad("ListTasks", "/v1/tasks/{label_selector}", NULL, NULL, "not a singular scalar");
	expect_bad("RegisterTask", "/v1/tasks/{recovery_policy}", NULL, NULL, "not a singular scalar");
	expect_bad("Heartbeat", NULL, "/v1/x", "nope", "body \"nope\"");
	expect_bad("GetTask", "/v1/tasks", NULL, "*", "GET rule has no body");
	/* a method the service does not have */
	expect_bad("Nope", "/v1/x", NULL, NULL, "not in the generated service descriptor");

	/* one that is fine loads */
	Google__Api__HttpRule h = GOOGLE__API__HTTP_RULE__INIT;
	h.pattern_case = GOOGLE__API__HTTP_RULE__PATTERN_GET;
	h.get = "/v1/t/{task_id}";
	hs_error err = { 0 };
	assert_int_equal(load_one("GetTask", &h, &err), HS_OK);
	/* and an additional binding that clashes with the main one does not */
	Google__Api__HttpRule extra = GOOGLE__API__HTTP_RULE__INIT;
	extra.pattern_case = GOOGLE__API__HTTP_RULE__PATTERN_GET;
	extra.get = "/v1/t/{task_id}";
	Google__Api__HttpRule *ab[] = { &extra };
	h.n_additional_bindings = 1;
	h.additional_bindings = ab;
	assert_int_equal(load_one("GetTask", &h, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "clashes"));

	/* a malformed set */
	const ProtobufCServiceDescriptor *sv[] = { &harness__v1__health_service__descriptor };
	hs_gw_routes *r = NULL;
	assert_int_equal(hs_gw_routes_load(&r, (const uint8_t *)"\xff\xff\xff", 3, sv, 1, &err),
			 HS_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes__every_rpc_is_mapped),
		cmocka_unit_test(test_routes__match),
		cmocka_unit_test(test_routes__bad_rules_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
