/* gateway/json.c: the seed's response shapes and gRPC status -> body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "json.h"

static json_t *parse(char *s)
{
	assert_non_null(s);
	json_error_t e;
	json_t *v = json_loads(s, 0, &e);
	free(s);
	assert_non_null(v);
	return v;
}

static const char *sget(json_t *o, const char *path)
{
	/* "a.b.c" */
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = o;
	for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
		cur = json_object_get(cur, k);
	return json_string_value(cur);
}

static void test_json__auth_success_shape(void **state)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = 1705314600;
	ts.nanos = 123456789;
	Harness__V1__User u = HARNESS__V1__USER__INIT;
	u.id = "user-123";
	u.email = "test@example.com";
	u.name = "Test User";
	u.role = "user";
	u.created_at = &ts;
	Harness__V1__AuthResponse r = HARNESS__V1__AUTH_RESPONSE__INIT;
	r.user = &u;
	r.access_token = "mock-access-token";
	r.refresh_token = "SECRET-refresh";
	r.expires_in = 3600;
	char *s = hs_gw_json_auth(&r);
	assert_null(strstr(s, "SECRET-refresh"));
	assert_null(strstr(s, "refresh"));
	json_t *v = parse(s);
	assert_true(json_is_true(json_object_get(v, "success")));
	assert_string_equal(sget(v, "data.accessToken"), "mock-access-token");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "data"), "expiresIn")), 3600);
	assert_string_equal(sget(v, "data.user.id"), "user-123");
	assert_string_equal(sget(v, "data.user.email"), "test@example.com");
	assert_string_equal(sget(v, "data.user.name"), "Test User");
	assert_string_equal(sget(v, "data.user.role"), "user");
	assert_string_equal(sget(v, "data.user.createdAt"), "2024-01-15T10:30:00.123Z");
	json_decref(v);

	u.created_at = NULL;
	r.user = NULL;
	v = parse(hs_gw_json_auth(&r));
	assert_string_equal(sget(v, "data.user.id"), "");
	json_decref(v);
}

/* The login answer as jansson wrote it before it was written directly:
 * the reference the direct writer must match byte for byte. */
static json_t *ref_str(const char *s)
{
	json_t *v = json_string(s != NULL ? s : "");
	return v != NULL ? v : json_string("");
}

static char *ref_auth(const Harness__V1__AuthResponse *r)
{
	json_t *user = json_object();
	const Harness__V1__User *u = r->user;
	json_object_set_new(user, "id", ref_str(u != NULL ? u->id : ""));
	json_object_set_new(user, "email", ref_str(u != NULL ? u->email : ""));
	json_object_set_new(user, "name", ref_str(u != NULL ? u->name : ""));
	json_object_set_new(user, "role", ref_str(u != NULL ? u->role : ""));
	if (u != NULL && u->created_at != NULL) {
		char ts[32];
		hs_gw_iso8601(ts, (long long)u->created_at->seconds, u->created_at->nanos);
		json_object_set_new(user, "createdAt", json_string(ts));
	} else {
		json_object_set_new(user, "createdAt", json_null());
	}
	json_t *data = json_object();
	json_object_set_new(data, "user", user);
	json_object_set_new(data, "accessToken", ref_str(r->access_token));
	json_object_set_new(data, "expiresIn", json_integer(r->expires_in));
	json_t *root = json_object();
	json_object_set_new(root, "success", json_true());
	json_object_set_new(root, "data", data);
	char *out = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return out;
}

static void test_json__auth_matches_jansson(void **state)
{
	static const char *const texts[] = {
		"", "plain", "quote\" back\\slash /slash", "\x01\x02\b\f\n\r\t\x1f\x7f end",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8", /* UTF-8 kept as it is */
		"bad \xc3", "overlong \xc0\xaf", "surrogate \xed\xa0\x80", "too big \xf4\x90\x80\x80",
		"lone \x80 continuation", "<script>&amp;'",
	};
	static const long long secs[] = { 1705314600, 0, -1, 253402300799LL, 253402300800LL, -62135596801LL };
	static const int nanos[] = { 123456789, 0, 999999999, -5, 1000000000, 500000 };
	size_t n = sizeof(texts) / sizeof(texts[0]);
	for (size_t i = 0; i < n; i++) {
		Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
		ts.seconds = secs[i % 6];
		ts.nanos = nanos[i % 6];
		Harness__V1__User u = HARNESS__V1__USER__INIT;
		u.id = (char *)texts[i];
		u.email = (char *)texts[(i + 1) % n];
		u.name = (char *)texts[(i + 2) % n];
		u.role = (char *)texts[(i + 3) % n];
		u.created_at = i % 3 ? &ts : NULL;
		Harness__V1__AuthResponse r = HARNESS__V1__AUTH_RESPONSE__INIT;
		r.user = i == 4 ? NULL : &u;
		r.access_token = (char *)texts[(i + 4) % n];
		r.refresh_token = "never-in-the-body";
		r.expires_in = i == 5 ? -2147483647 - 1 : (int32_t)(i * 1000003);
		char *want = ref_auth(&r), *got = hs_gw_json_auth(&r);
		assert_non_null(want);
		assert_non_null(got);
		assert_string_equal(got, want);
		free(want);
		free(got);
	}
}

static void test_json__errors_and_validation(void **state)
{
	json_t *v = parse(hs_gw_json_error("UNAUTHORIZED", "No refresh token provided"));
	assert_string_equal(sget(v, "code"), "UNAUTHORIZED");
	assert_string_equal(sget(v, "message"), "No refresh token provided");
	assert_int_equal(json_object_size(v), 2);
	json_decref(v);

	v = parse(hs_gw_json_validation(true, false));
	assert_string_equal(sget(v, "code"), "VALIDATION_ERROR");
	assert_string_equal(sget(v, "message"), "Invalid input");
	json_t *d = json_object_get(v, "details");
	assert_int_equal(json_array_size(d), 1);
	assert_string_equal(sget(json_array_get(d, 0), "type"), "field");
	assert_string_equal(sget(json_array_get(d, 0), "msg"), "Invalid value");
	assert_string_equal(sget(json_array_get(d, 0), "path"), "email");
	assert_string_equal(sget(json_array_get(d, 0), "location"), "body");
	json_decref(v);
	v = parse(hs_gw_json_validation(true, true));
	assert_int_equal(json_array_size(json_object_get(v, "details")), 2);
	assert_string_equal(sget(json_array_get(json_object_get(v, "details"), 1), "path"), "password");
	json_decref(v);

	v = parse(hs_gw_json_success());
	assert_true(json_is_true(json_object_get(v, "success")));
	json_decref(v);
	v = parse(hs_gw_json_health(true, 1705314600123LL));
	assert_string_equal(sget(v, "status"), "ok");
	assert_string_equal(sget(v, "timestamp"), "2024-01-15T10:30:00.123Z");
	json_decref(v);
	v = parse(hs_gw_json_health(false, 1705314600123LL));
	assert_string_equal(sget(v, "status"), "unavailable");
	json_decref(v);
	/* invalid UTF-8 in a message never breaks the body */
	v = parse(hs_gw_json_error("X", "bad \xff utf8"));
	assert_non_null(sget(v, "message"));
	json_decref(v);
}

static void test_json__login_parse(void **state)
{
	char *e = NULL, *p = NULL;
	const char *b = "{\"email\":\"a@b.co\",\"password\":\"secret1\"}";
	assert_int_equal(hs_gw_json_login_parse(b, strlen(b), &e, &p), HS_OK);
	assert_string_equal(e, "a@b.co");
	assert_string_equal(p, "secret1");
	free(e);
	hs_gw_json_secret_free(p);
	b = "{\"email\":42,\"password\":[1]}";
	assert_int_equal(hs_gw_json_login_parse(b, strlen(b), &e, &p), HS_OK);
	assert_null(e);
	assert_null(p);
	b = "{}";
	assert_int_equal(hs_gw_json_login_parse(b, strlen(b), &e, &p), HS_OK);
	assert_null(e);
	const char *bad[] = { "", "{", "[]", "\"x\"", "{\"email\":\"a\",\"email\":\"b\"}", "{} x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(hs_gw_json_login_parse(bad[i], strlen(bad[i]), &e, &p), HS_INVALID);
	hs_gw_json_secret_free(NULL);
}

static hs_client_status status(int code, const char *details, const char *ecode)
{
	hs_client_status st;
	memset(&st, 0, sizeof(st));
	st.code = code;
	snprintf(st.details, sizeof(st.details), "%s", details);
	snprintf(st.error_code, sizeof(st.error_code), "%s", ecode);
	return st;
}

static void expect_grpc(int code, const char *details, const char *ecode, bool prod, int want_http,
			const char *want_code, const char *want_msg)
{
	hs_client_status st = status(code, details, ecode);
	int http = 0;
	json_t *v = parse(hs_gw_json_grpc_error(&st, prod, &http));
	assert_int_equal(http, want_http);
	assert_string_equal(sget(v, "code"), want_code);
	assert_string_equal(sget(v, "message"), want_msg);
	json_decref(v);
}

static void test_json__grpc_errors(void **state)
{
	expect_grpc(16, "Invalid credentials", "", false, 401, "UNAUTHORIZED", "Invalid credentials");
	expect_grpc(16, "Invalid credentials", "INVALID_CREDENTIALS", true, 401, "INVALID_CREDENTIALS",
		    "Invalid credentials");
	expect_grpc(14, "user service down", "", false, 503, "SERVICE_UNAVAILABLE", "user service down");
	expect_grpc(14, "user service down", "", true, 503, "SERVICE_UNAVAILABLE", "Internal server error");
	expect_grpc(8, "", "", true, 429, "RATE_LIMITED", "Too many requests");
	expect_grpc(4, "", "", false, 504, "GATEWAY_TIMEOUT", "Upstream timeout");
	expect_grpc(13, "db: disk I/O error", "", true, 500, "INTERNAL_ERROR", "Internal server error");
	expect_grpc(2, "", "", false, 500, "INTERNAL_ERROR", "Internal server error");
	expect_grpc(3, "email: must be an email", "", true, 400, "VALIDATION_ERROR", "email: must be an email");
	expect_grpc(12, "", "", false, 501, "NOT_IMPLEMENTED", "Not implemented");
	expect_grpc(7, "no", "", false, 403, "FORBIDDEN", "no");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json__auth_success_shape),
		cmocka_unit_test(test_json__auth_matches_jansson),
		cmocka_unit_test(test_json__errors_and_validation),
		cmocka_unit_test(test_json__login_parse),
		cmocka_unit_test(test_json__grpc_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
