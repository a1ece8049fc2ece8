/* gateway/transcode.c: path + query + body -> request message, response ->
 * JSON, google.rpc.Status bodies, SSE framing and the resume convention. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "descriptor_set.h"
#include "harness/v1/checkpoint.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "harness/v1/sandbox.pb-c.h"
#include "routes.h"
#include "services.h"
#include "transcode.h"

static hs_gw_routes *R;

static int setup(void **state)
{
	(void)state;
	size_t n;
	const ProtobufCServiceDescriptor *const *sv = hs_gw_services(&n);
	hs_error err = { 0 };
	return hs_gw_routes_load(&R, hs_descriptor_set, hs_descriptor_set_len, sv, n, &err);
}

static int teardown(void **state)
{
	(void)state;
	hs_gw_routes_free(R);
	return 0;
}

/* Transcodes method path?query with body; returns the message (or NULL
 * with err set). */
static ProtobufCMessage *req(const char *method, const char *path, const char *query,
			    const char *body, hs_error *err)
{
	hs_gw_match m;
	if (hs_gw_routes_match(R, method, path, &m) != HS_GW_MATCH_OK)
		fail_msg("%s %s: no route", method, path);
	ProtobufCMessage *out = NULL;
	int rc = hs_gw_transcode_request(&out, &m, query, body, body != NULL ? strlen(body) : 0, err);
	return rc == HS_OK ? out : NULL;
}

static ProtobufCMessage *ok(const char *method, const char *path, const char *query, const char *body)
{
	hs_error err = { 0 };
	ProtobufCMessage *m = req(method, path, query, body, &err);
	if (m == NULL)
		fail_msg("%s %s?%s: %s", method, path, query ? query : "", err.msg);
	return m;
}

static void bad(const char *method, const char *path, const char *query, const char *body,
		const char *needle)
{
	hs_error err = { 0 };
	ProtobufCMessage *m = req(method, path, query, body, &err);
	if (m != NULL)
		fail_msg("%s %s?%s succeeded", method, path, query ? query : "");
	assert_int_equal(err.code, HS_INVALID);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
}

static void test_transcode__query_enums_maps_int64(void **state)
{
	(void)state;
	Harness__V1__ListTasksRequest *lt = (Harness__V1__ListTasksRequest *)ok(
		"GET", "/v1/tasks",
		"page_size=5&state=TASK_STATE_STALLED&label_selector%5Benv%5D=prod&labelSelector[team]=a+b"
		"&pageToken=tok&unknown_param=1&_=123",
		NULL);
	assert_int_equal(lt->page_size, 5);
	assert_int_equal(lt->state, HARNESS__V1__TASK_STATE__TASK_STATE_STALLED);
	assert_string_equal(lt->page_token, "tok");
	assert_int_equal(lt->n_label_selector, 2);
	for (size_t i = 0; i < 2; i++) {
		if (!strcmp(lt->label_selector[i]->key, "env"))
			assert_string_equal(lt->label_selector[i]->value, "prod");
		else
			assert_string_equal(lt->label_selector[i]->value, "a b");
	}
	protobuf_c_message_free_unpacked(&lt->base, NULL);

	/* enum by number, bool, uint64 beyond 2^53 */
	Harness__V1__WatchTasksRequest *w = (Harness__V1__WatchTasksRequest *)ok(
		"GET", "/v1/tasks:watch", "send_initial=true&after_event_id=18446744073709551615&taskId=t1",
		NULL);
	assert_true(w->send_initial);
	assert_true(w->after_event_id == UINT64_MAX);
	assert_string_equal(w->task_id, "t1");
	protobuf_c_message_free_unpacked(&w->base, NULL);
	lt = (Harness__V1__ListTasksRequest *)ok("GET", "/v1/tasks", "state=2", NULL);
	assert_int_equal(lt->state, HARNESS__V1__TASK_STATE__TASK_STATE_STALLED);
	protobuf_c_message_free_unpacked(&lt->base, NULL);

	/* int64 query values as decimal */
	Harness__V1__ListCheckpointsRequest *lc = (Harness__V1__ListCheckpointsRequest *)ok(
		"GET", "/v1/tasks/t9/checkpoints", "before_step=9007199254740993", NULL);
	assert_string_equal(lc->task_id, "t9");
	assert_true(lc->before_step == 9007199254740993LL);
	protobuf_c_message_free_unpacked(&lc->base, NULL);

	bad("GET", "/v1/tasks", "state=TASK_STATE_NOPE", NULL, "state");
	bad("GET", "/v1/tasks", "page_size=many", NULL, "page_size");
	bad("GET", "/v1/tasks:watch", "send_initial=yes", NULL, "send_initial: expected true or false");
	bad("GET", "/v1/tasks", "label_selector=x", NULL, "use label_selector[key]=value");
	bad("GET", "/v1/tasks", "page_size[x]=1", NULL, "not a map");
	bad("GET", "/v1/tasks", "label_selector[x=1", NULL, "bad map key");
	bad("GET", "/v1/tasks", "page_token=%zz", NULL, "percent-encoding");
	bad("GET", "/v1/tasks", "page_token=a%00b", NULL, "percent-encoding");
	bad("GET", "/v1/tasks", "page_token=%e2%28%a1", NULL, "not UTF-8");
	char many[4096];
	size_t mn = 0;
	for (int i = 0; i <= HS_GW_QUERY_MAX_PARAMS; i++)
		mn += (size_t)snprintf(many + mn, sizeof(many) - mn, "a=1&");
	bad("GET", "/v1/tasks", many, NULL, "more than");
	bad("POST", "/v1/tasks/t/checkpoints:prune", NULL, "{\"keepLast\":\"x\"}", "keep_last");
}

static void test_transcode__body_path_and_struct(void **state)
{
	(void)state;
	/* body "*": camelCase and proto names, int64 as string, nested message,
	 * map; the path wins over the body's task_id */
	Harness__V1__RegisterTaskRequest *rt = (Harness__V1__RegisterTaskRequest *)ok(
		"POST", "/v1/tasks", "total_steps=99",
		"{\"taskId\":\"t-1\",\"total_steps\":\"12\",\"heartbeatIntervalMs\":1000,"
		"\"recoveryPolicy\":{\"maxAttempts\":2,\"backoffMultiplier\":1.5},"
		"\"labels\":{\"env\":\"prod\"},\"futureField\":true}");
	assert_string_equal(rt->task_id, "t-1");
	assert_int_equal(rt->total_steps, 12); /* body "*": the query is not read */
	assert_int_equal(rt->heartbeat_interval_ms, 1000);
	assert_int_equal(rt->recovery_policy->max_attempts, 2);
	assert_int_equal(rt->n_labels, 1);
	protobuf_c_message_free_unpacked(&rt->base, NULL);

	Harness__V1__HeartbeatRequest *hb = (Harness__V1__HeartbeatRequest *)ok(
		"POST", "/v1/tasks/from-path:heartbeat", NULL,
		"{\"task_id\":\"from-body\",\"taskId\":null,\"currentStep\":\"7\",\"cpuUsage\":12.5}");
	assert_string_equal(hb->task_id, "from-path");
	assert_int_equal(hb->current_step, 7);
	assert_true(hb->cpu_usage == 12.5);
	protobuf_c_message_free_unpacked(&hb->base, NULL);

	Harness__V1__CreateCheckpointRequest *cc = (Harness__V1__CreateCheckpointRequest *)ok(
		"POST", "/v1/tasks/t2/checkpoints", NULL,
		"{\"step\":3,\"description\":\"d\",\"externalState\":{\"a\":[1,\"x\",null,{\"b\":true}]}}");
	assert_string_equal(cc->task_id, "t2");
	assert_int_equal(cc->step, 3);
	assert_non_null(cc->external_state);
	assert_int_equal(cc->external_state->n_fields, 1);
	protobuf_c_message_free_unpacked(&cc->base, NULL);

	/* empty body on a body "*" route, and a DELETE with a query */
	Harness__V1__DestroySandboxRequest *ds = (Harness__V1__DestroySandboxRequest *)ok(
		"DELETE", "/v1/sandboxes/sb-1", "grace_period_ms=250", NULL);
	assert_string_equal(ds->sandbox_id, "sb-1");
	assert_int_equal(ds->grace_period_ms, 250);
	protobuf_c_message_free_unpacked(&ds->base, NULL);
	ProtobufCMessage *m = ok("POST", "/v1/tasks/t:recover", NULL, " \r\n");
	protobuf_c_message_free_unpacked(m, NULL);

	bad("POST", "/v1/tasks", NULL, "{\"taskId\":", "malformed JSON");
	bad("POST", "/v1/tasks", NULL, "[1,2]", "expected a JSON object");
	bad("POST", "/v1/tasks", NULL, "{\"taskId\":\"a\",\"taskId\":\"b\"}", "malformed JSON");
	bad("POST", "/v1/tasks", NULL, "{\"state\":1,\"totalSteps\":{}}", "total_steps");
	bad("GET", "/v1/tasks/t1", NULL, "{}", "takes no request body");
	char deep[400] = "{\"taskId\":\"t\",\"externalState\":";
	size_t n = strlen(deep);
	for (int i = 0; i < 70; i++)
		deep[n++] = '[';
	for (int i = 0; i < 70; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	deep[n] = '\0';
	bad("POST", "/v1/tasks/t/checkpoints", NULL, deep, "nested deeper");
}

static json_t *parse(const char *s)
{
	json_error_t je;
	json_t *v = json_loads(s, JSON_DECODE_ANY, &je);
	assert_non_null(v);
	return v;
}

static void test_transcode__response(void **state)
{
	(void)state;
	hs_gw_match m;
	assert_int_equal(hs_gw_routes_match(R, "GET", "/v1/tasks/t", &m), HS_GW_MATCH_OK);
	Harness__V1__Task t = HARNESS__V1__TASK__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = 1700000000;
	ts.nanos = 500000000;
	t.task_id = "t";
	t.state = HARNESS__V1__TASK_STATE__TASK_STATE_RECOVERING;
	t.current_step = 9007199254740993LL;
	t.last_heartbeat_at = &ts;
	char *out = NULL;
	size_t len = 0;
	hs_error err = { 0 };
	assert_int_equal(hs_gw_transcode_response(&out, &len, m.route, &t.base, &err), HS_OK);
	assert_int_equal(strlen(out), len);
	json_t *j = parse(out);
	free(out);
	assert_string_equal(json_string_value(json_object_get(j, "taskId")), "t");
	assert_string_equal(json_string_value(json_object_get(j, "state")), "TASK_STATE_RECOVERING");
	assert_string_equal(json_string_value(json_object_get(j, "currentStep")), "9007199254740993");
	assert_string_equal(json_string_value(json_object_get(j, "lastHeartbeatAt")),
			    "2023-11-14T22:13:20.500Z");
	/* defaults are emitted, as grpc-gateway's EmitUnpopulated */
	assert_string_equal(json_string_value(json_object_get(j, "totalSteps")), "0");
	assert_non_null(json_object_get(j, "cancelRequested"));
	assert_non_null(json_object_get(j, "labels"));
	json_decref(j);
}

static void test_transcode__status_and_sse(void **state)
{
	(void)state;
	char *s = hs_gw_status_json(5, "task t not found", NULL);
	json_t *j = parse(s);
	free(s);
	assert_int_equal(json_integer_value(json_object_get(j, "code")), 5);
	assert_string_equal(json_string_value(json_object_get(j, "message")), "task t not found");
	assert_int_equal(json_array_size(json_object_get(j, "details")), 0);
	json_decref(j);
	s = hs_gw_status_json(8, "quota", "QUOTA_EXCEEDED");
	j = parse(s);
	free(s);
	json_t *d = json_array_get(json_object_get(j, "details"), 0);
	assert_string_equal(json_string_value(json_object_get(d, "@type")),
			    "type.googleapis.com/google.rpc.ErrorInfo");
	assert_string_equal(json_string_value(json_object_get(d, "reason")), "QUOTA_EXCEEDED");
	json_decref(j);

	size_t len;
	s = hs_gw_sse_event("42", NULL, "{\"a\":1}", &len);
	assert_string_equal(s, "id: 42\ndata: {\"a\":1}\n\n");
	assert_int_equal(len, strlen(s));
	free(s);
	s = hs_gw_sse_event(NULL, "end", "{}", &len);
	assert_string_equal(s, "event: end\ndata: {}\n\n");
	free(s);

	hs_gw_match m;
	assert_int_equal(hs_gw_routes_match(R, "GET", "/v1/tasks:watch", &m), HS_GW_MATCH_OK);
	assert_true(hs_gw_sse_resumable(m.route));
	assert_int_equal(hs_gw_routes_match(R, "GET", "/v1/sandboxes/x/logs", &m), HS_GW_MATCH_OK);
	assert_false(hs_gw_sse_resumable(m.route));
	assert_int_equal(hs_gw_routes_match(R, "GET", "/v1/tasks/x", &m), HS_GW_MATCH_OK);
	assert_false(hs_gw_sse_resumable(m.route));

	Harness__V1__WatchTasksRequest w = HARNESS__V1__WATCH_TASKS_REQUEST__INIT;
	w.send_initial = 1;
	hs_error err = { 0 };
	assert_int_equal(hs_gw_sse_resume(&w.base, "1234", &err), HS_OK);
	assert_true(w.after_event_id == 1234);
	assert_false(w.send_initial);
	assert_int_equal(hs_gw_sse_resume(&w.base, "12a", &err), HS_INVALID);
	assert_int_equal(hs_gw_sse_resume(&w.base, "", &err), HS_INVALID);
	assert_int_equal(hs_gw_sse_resume(&w.base, "99999999999999999999", &err), HS_INVALID);
	Harness__V1__GetTaskRequest g = HARNESS__V1__GET_TASK_REQUEST__INIT;
	assert_int_equal(hs_gw_sse_resume(&g.base, "1", &err), HS_INVALID);

	Harness__V1__TaskEvent ev = HARNESS__V1__TASK_EVENT__INIT;
	char id[24];
	assert_false(hs_gw_sse_id(&ev.base, id, sizeof(id)));
	ev.event_id = 18446744073709551615ULL;
	assert_true(hs_gw_sse_id(&ev.base, id, sizeof(id)));
	assert_string_equal(id, "18446744073709551615");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transcode__query_enums_maps_int64),
		cmocka_unit_test(test_transcode__body_path_and_struct),
		cmocka_unit_test(test_transcode__response),
		cmocka_unit_test(test_transcode__status_and_sse),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
