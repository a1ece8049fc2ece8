/* The upstream user service client against the real Python double on
 * loopback: mapping, error statuses, garbage, stalls, refused connections,
 * connection reuse, headers. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "double.h"
#include "trace.h"
#include "upstream.h"

#define API_KEY "unit-api-key"
#define JWT_SECRET "unit-jwt-secret-0123456789abcdef0123"

static test_double dbl;
static hs_auth_upstream *up;

static hs_auth_upstream *client(const char *url, const char *key, int timeout_ms)
{
	hs_auth_upstream_config c = HS_AUTH_UPSTREAM_CONFIG_INIT;
	hs_auth_upstream *u = NULL;
	hs_error err = { 0 };
	c.base_url = url;
	c.api_key = key;
	c.timeout_ms = timeout_ms;
	if (hs_auth_upstream_new(&u, &c, &err) != HS_OK)
		fail_msg("upstream: %s", err.msg);
	return u;
}

static int group_setup(void **s)
{
	if (test_double_start(&dbl, API_KEY, JWT_SECRET) != 0)
		return -1;
	char url[80];
	snprintf(url, sizeof(url), "%s/", dbl.url); /* trailing slash is dropped */
	up = client(url, API_KEY, 0);
	return 0;
}

static int group_teardown(void **s)
{
	hs_auth_upstream_free(up);
	test_double_stop(&dbl);
	return 0;
}

static int reset_mode(void **s) { return test_double_control(&dbl, "{\"mode\":\"ok\"}"); }

static void test_upstream__login_ok_mapping(void **s)
{
	hs_auth_result r = { 0 };
	hs_error err = { 0 };
	char hdr[128];
	assert_int_equal(hs_auth_upstream_login(up, "alice@example.com", "password123", -1, &r, &err),
			 HS_OK);
	assert_string_equal(r.user.id, "u-alice");
	assert_string_equal(r.user.email, "alice@example.com");
	assert_string_equal(r.user.name, "Alice Example");
	assert_string_equal(r.user.role, "user");
	assert_int_equal(r.user.created_at_ms, 1705314600000LL); /* 2024-01-15T10:30:00.000Z */
	assert_int_equal(r.expires_in, 900);
	assert_non_null(strchr(r.access_token, '.'));
	assert_true(strlen(r.refresh_token) > 20);
	assert_int_equal(test_double_last_header(&dbl, "x-api-key", hdr, sizeof(hdr)), 0);
	assert_string_equal(hdr, API_KEY);
	assert_int_equal(test_double_last_header(&dbl, "content-type", hdr, sizeof(hdr)), 0);
	assert_string_equal(hdr, "application/json");
	hs_auth_result_dispose(&r);
	hs_auth_result_dispose(&r); /* idempotent */
}

static void test_upstream__login_401_carries_message(void **s)
{
	hs_auth_result r = { 0 };
	hs_error err = { 0 };
	assert_int_equal(hs_auth_upstream_login(up, "alice@example.com", "nope-nope", -1, &r, &err),
			 HS_UNAUTH);
	assert_string_equal(err.msg, "Invalid credentials");
	assert_string_equal(err.reason, "INVALID_CREDENTIALS");
	assert_null(r.access_token);
	hs_error_clear(&err);
	assert_int_equal(hs_auth_upstream_login(up, "", "", -1, &r, &err), HS_UNAUTH);
}

static void test_upstream__refresh_rotates(void **s)
{
	hs_auth_result a = { 0 }, b = { 0 }, c = { 0 };
	hs_error err = { 0 };
	assert_int_equal(hs_auth_upstream_login(up, "admin@example.com", "adminpass1", -1, &a, NULL), HS_OK);
	assert_string_equal(a.user.role, "admin");
	assert_int_equal(hs_auth_upstream_refresh(up, a.refresh_token, -1, &b, &err), HS_OK);
	assert_string_equal(b.user.id, "u-admin");
	assert_string_not_equal(a.refresh_token, b.refresh_token);
	assert_int_equal(hs_auth_upstream_refresh(up, a.refresh_token, -1, &c, &err), HS_UNAUTH);
	assert_int_equal(hs_auth_upstream_refresh(up, "", -1, &c, NULL), HS_UNAUTH);
	hs_auth_result_dispose(&a);
	hs_auth_result_dispose(&b);
}

static void test_upstream__get_user(void **s)
{
	hs_auth_user u = { 0 };
	hs_error err = { 0 };
	char path[128];
	assert_int_equal(hs_auth_upstream_get_user(up, "u-admin", -1, &u, &err), HS_OK);
	assert_string_equal(u.email, "admin@example.com");
	assert_int_equal(u.created_at_ms, 1704067199000LL);
	hs_auth_user_dispose(&u);
	assert_int_equal(hs_auth_upstream_get_user(up, "nobody", -1, &u, &err), HS_NOT_FOUND);
	assert_string_equal(err.msg, "User not found");
	assert_string_equal(err.reason, "USER_NOT_FOUND");
	/* escaped: the double sees one path segment */
	assert_int_equal(hs_auth_upstream_get_user(up, "../auth/login?x=1", -1, &u, NULL), HS_NOT_FOUND);
	assert_int_equal(test_double_last_header(&dbl, "x-api-key", path, sizeof(path)), 0);
	assert_int_equal(hs_auth_upstream_get_user(up, "..", -1, &u, NULL), HS_INVALID);
	assert_int_equal(hs_auth_upstream_get_user(up, "", -1, &u, NULL), HS_INVALID);
	assert_int_equal(hs_auth_upstream_get_user(up, "a\r\nX: y", -1, &u, NULL), HS_INVALID);
	assert_null(u.id);
}

static void test_upstream__wrong_api_key(void **s)
{
	hs_auth_upstream *bad = client(dbl.url, "wrong", 0);
	hs_auth_result r = { 0 };
	hs_error err = { 0 };
	assert_int_equal(hs_auth_upstream_login(bad, "alice@example.com", "password123", -1, &r, &err),
			 HS_UNAUTH);
	assert_string_equal(err.msg, "Invalid API key");
	assert_string_equal(err.reason, "INVALID_API_KEY");
	hs_auth_upstream_free(bad);
}

static void test_upstream__5xx_unavailable(void **s)
{
	hs_auth_result r = { 0 };
	hs_error err = { 0 };
	assert_int_equal(test_double_control(&dbl, "{\"mode\":\"fail500\"}"), 0);
	assert_int_equal(hs_auth_upstream_login(up, "alice@example.com", "password123", -1, &r, &err),
			 HS_UNAVAILABLE);
	/* an outage is ours to name: its message, no reason passed on */
	assert_string_equal(err.msg, "Upstream exploded");
	assert_string_equal(err.reason, "");
	assert_int_equal(test_double_control(&dbl, "{\"mode\":\"fail503\"}"), 0);
	hs_error_clear(&err);
	assert_int_equal(hs_auth_upstream_login(up, "alice@example.com", "password123", -1, &r, &err),
			 HS_UNAVAILABLE);
	assert_string_equal(err.msg, "Maintenance");
}

static void expect_status(int status, const char *body, hs_code want, const char *msg,
			  const char *reason)
{
	char ctl[512];
	hs_auth_user u = { 0 };
	hs_error err = { 0 };
	snprintf(ctl, sizeof(ctl), "{\"mode\":\"status\",\"status\":%d,\"body\":%s}", status, body);
	assert_int_equal(test_double_control(&dbl, ctl), 0);
	assert_int_equal(hs_auth_upstream_get_user(up, "u-alice", -1, &u, &err), want);
	assert_string_equal(err.msg, msg);
	assert_string_equal(err.reason, reason);
	hs_auth_user_dispose(&u);
}

static void test_upstream__status_mapping(void **s)
{
	expect_status(400, "{\"code\":\"BAD\",\"message\":\"bad input\"}", HS_INVALID, "bad input", "BAD");
	expect_status(400, "{\"code\":\"bad-code\",\"message\":\"m\"}", HS_INVALID, "m", "");
	expect_status(403, "{\"message\":\"forbidden\"}", HS_DENIED, "forbidden", "");
	expect_status(409, "{}", HS_EXISTS, "Service error (HTTP 409)", "");
	expect_status(429, "{\"message\":\"slow down\"}", HS_LIMIT, "slow down", "");
	expect_status(418, "[]", HS_INVALID, "Service error (HTTP 418)", "");
	expect_status(502, "{\"message\":\"bad\\r\\ngateway\\u00e9x\"}", HS_UNAVAILABLE,
		      "bad??gateway??x", "");
	expect_status(302, "{}", HS_UNAVAILABLE, "user service: unexpected HTTP status 302", "");
	/* 2xx but not the contract */
	expect_status(200, "{\"id\":\"u\"}", HS_INTERNAL, "user service: incomplete user response", "");
	expect_status(200, "{\"id\":\"u\",\"email\":\"e@x\",\"created_at\":\"yesterday\"}",
		      HS_INTERNAL, "user service: incomplete user response", "");
	expect_status(200, "{\"id\":7,\"email\":\"e@x\",\"created_at\":null}", HS_OK, "", "");
}

static void test_upstream__garbage_internal_no_leak(void **s)
{
	hs_auth_result r = { 0 };
	hs_error err = { 0 };
	assert_int_equal(test_double_control(&dbl, "{\"mode\":\"garbage\"}"), 0);
	assert_int_equal(hs_auth_upstream_login(up, "alice@example.com", "password123", -1, &r, &err),
			 HS_INTERNAL);
	assert_string_equal(err.msg, "user service: malformed response");
	assert_int_equal(test_double_control(&dbl, "{\"mode\":\"partial\"}"), 0);
	hs_error_clear(&err);
	assert_int_equal(hs_auth_upstream_login(up, "alice@example.com", "password123", -1, &r, &err),
			 HS_INTERNAL);
	assert_string_equal(err.msg, "user service: incomplete auth response");
	assert_int_equal(test_double_control(&dbl, "{\"mode\":\"huge\"}"), 0);
	hs_error_clear(&err);
	assert_int_equal(hs_auth_upstream_login(up, "alice@example.com", "password123", -1, &r, &err),
			 HS_INTERNAL);
	assert_null(r.user.id);
}

static void test_upstream__stall_respects_deadline(void **s)
{
	hs_auth_result r = { 0 };
	hs_error err = { 0 };
	assert_int_equal(test_double_control(&dbl, "{\"mode\":\"stall\",\"stall_ms\":3000}"), 0);
	/* The codes show which limit ended the call: had either limit been
	 * ignored, the double's answer after 3 s would be a success. No bound
	 * on the elapsed time (that is load). */
	/* the caller's deadline is the limit: DEADLINE_EXCEEDED */
	assert_int_equal(hs_auth_upstream_login(up, "alice@example.com", "password123", 300, &r, &err),
			 HS_TIMEOUT);
	/* the client's own limit: UNAVAILABLE */
	hs_auth_upstream *fast = client(dbl.url, API_KEY, 300);
	hs_error_clear(&err);
	assert_int_equal(hs_auth_upstream_login(fast, "alice@example.com", "password123", -1, &r, &err),
			 HS_UNAVAILABLE);
	hs_auth_upstream_free(fast);
	/* an already expired deadline makes no request */
	assert_int_equal(hs_auth_upstream_login(up, "alice@example.com", "password123", 0, &r, NULL),
			 HS_TIMEOUT);
}

static void test_upstream__down_and_refused(void **s)
{
	hs_auth_result r = { 0 };
	hs_error err = { 0 };
	char url[64];
	assert_int_equal(test_double_control(&dbl, "{\"mode\":\"down\"}"), 0);
	assert_int_equal(hs_auth_upstream_login(up, "alice@example.com", "password123", -1, &r, &err),
			 HS_UNAVAILABLE);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", test_closed_port());
	hs_auth_upstream *gone = client(url, API_KEY, 0);
	hs_error_clear(&err);
	assert_int_equal(hs_auth_upstream_login(gone, "alice@example.com", "password123", -1, &r, &err),
			 HS_UNAVAILABLE);
	assert_non_null(strstr(err.msg, "unreachable"));
	hs_auth_upstream_free(gone);
}

static void test_upstream__connection_reuse(void **s)
{
	hs_auth_user u = { 0 };
	hs_auth_upstream *one = client(dbl.url, API_KEY, 0);
	long before = test_double_stat(&dbl, "connections");
	for (int i = 0; i < 5; i++) {
		assert_int_equal(hs_auth_upstream_get_user(one, "u-alice", -1, &u, NULL), HS_OK);
		hs_auth_user_dispose(&u);
	}
	/* 5 API calls on one connection + 1 for the stats request itself */
	assert_int_equal(test_double_stat(&dbl, "connections") - before, 2);
	hs_auth_upstream_free(one);
}

static void *login_worker(void *arg)
{
	for (int i = 0; i < 5; i++) {
		hs_auth_result r = { 0 };
		if (hs_auth_upstream_login(up, "alice@example.com", "password123", 5000, &r, NULL) != HS_OK)
			return (void *)1;
		hs_auth_result_dispose(&r);
	}
	return NULL;
}

static void test_upstream__threads(void **s)
{
	pthread_t th[4];
	void *res;
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, login_worker, NULL);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], &res);
		assert_null(res);
	}
}

/* --- the non-blocking login (event loop) --- */

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int answered;
	int rcs[32];
	char ids[32][16];
	char msg[32][256];
} waiter;

typedef struct slot {
	waiter *w;
	int i;
} slot;

static void async_done(void *arg, int rc, hs_auth_result *res, const hs_error *err)
{
	slot *sl = arg;
	waiter *w = sl->w;
	pthread_mutex_lock(&w->mu);
	w->rcs[sl->i] = rc;
	if (res != NULL) {
		snprintf(w->ids[sl->i], sizeof(w->ids[0]), "%s", res->user.id);
		hs_auth_result_dispose(res);
	}
	if (err != NULL)
		snprintf(w->msg[sl->i], sizeof(w->msg[0]), "%s", err->msg);
	w->answered++;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Waits for n answers; a generous bound only so that a lost answer fails
 * the test instead of hanging it (not a timing assertion). */
static void wait_answers(waiter *w, int n)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 60;
	pthread_mutex_lock(&w->mu);
	while (w->answered < n)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0)
			break;
	int got = w->answered;
	pthread_mutex_unlock(&w->mu);
	assert_int_equal(got, n);
}

static waiter *waiter_new(slot *slots, int n)
{
	waiter *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	for (int i = 0; i < n; i++) {
		slots[i].w = w;
		slots[i].i = i;
		w->rcs[i] = 99;
	}
	return w;
}

static void waiter_free(waiter *w)
{
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}

static void test_upstream__async_login(void **s)
{
	slot sl[20];
	waiter *w = waiter_new(sl, 20);
	hs_auth_upstream *one = client(dbl.url, API_KEY, 0);
	char hdr[128];
	/* the caller's trace context is what the user service sees */
	hs_trace_begin("req-async-1", strlen("req-async-1"), NULL, 0);
	assert_int_equal(hs_auth_upstream_login_start(one, "alice@example.com", "password123", -1,
						      async_done, &sl[0], NULL),
			 HS_OK);
	hs_trace_end();
	wait_answers(w, 1);
	assert_int_equal(w->rcs[0], HS_OK);
	assert_string_equal(w->ids[0], "u-alice");
	assert_int_equal(test_double_last_header(&dbl, "x-request-id", hdr, sizeof(hdr)), 0);
	assert_string_equal(hdr, "req-async-1");
	assert_int_equal(test_double_last_header(&dbl, "x-api-key", hdr, sizeof(hdr)), 0);
	assert_string_equal(hdr, API_KEY);
	/* the loop keeps its connection: 5 more logins, one after another,
	 * open no new one (the 1: the stats request's own connection) */
	long before = test_double_stat(&dbl, "connections");
	for (int i = 1; i <= 5; i++) {
		assert_int_equal(hs_auth_upstream_login_start(one, "alice@example.com", "password123",
							      5000, async_done, &sl[i], NULL),
				 HS_OK);
		wait_answers(w, i + 1);
		assert_int_equal(w->rcs[i], HS_OK);
	}
	assert_int_equal(test_double_stat(&dbl, "connections") - before, 1);
	/* many at once, the wrong password among them: each its own answer */
	for (int i = 6; i < 20; i++)
		assert_int_equal(hs_auth_upstream_login_start(one, "alice@example.com",
							      i % 2 ? "bad-password" : "password123",
							      5000, async_done, &sl[i], NULL),
				 HS_OK);
	wait_answers(w, 20);
	for (int i = 6; i < 20; i++) {
		assert_int_equal(w->rcs[i], i % 2 ? HS_UNAUTH : HS_OK);
		if (i % 2 == 0)
			assert_string_equal(w->ids[i], "u-alice");
	}
	/* refused before any request: expired deadline, bad UTF-8 */
	assert_int_equal(hs_auth_upstream_login_start(one, "alice@example.com", "password123", 0,
						      async_done, &sl[0], NULL),
			 HS_TIMEOUT);
	assert_int_equal(hs_auth_upstream_login_start(one, "alice@example.com", "\xff\xfe", -1,
						      async_done, &sl[0], NULL),
			 HS_INVALID);
	hs_auth_upstream_free(one);
	assert_int_equal(w->answered, 20); /* nothing answered twice or late */
	waiter_free(w);
}

static void test_upstream__async_deadline_and_shutdown(void **s)
{
	slot sl[3];
	waiter *w = waiter_new(sl, 3);
	hs_auth_upstream *one = client(dbl.url, API_KEY, 0);
	assert_int_equal(test_double_control(&dbl, "{\"mode\":\"stall\",\"stall_ms\":3000}"), 0);
	/* the caller's deadline ends it (had it been ignored: a success) */
	assert_int_equal(hs_auth_upstream_login_start(one, "alice@example.com", "password123", 300,
						      async_done, &sl[0], NULL),
			 HS_OK);
	wait_answers(w, 1);
	assert_int_equal(w->rcs[0], HS_TIMEOUT);
	/* freed with two in flight: both answered, UNAVAILABLE, before free
	 * returns (had free not answered them, the count would be 1) */
	for (int i = 1; i < 3; i++)
		assert_int_equal(hs_auth_upstream_login_start(one, "alice@example.com", "password123",
							      -1, async_done, &sl[i], NULL),
				 HS_OK);
	hs_auth_upstream_free(one);
	assert_int_equal(w->answered, 3);
	assert_int_equal(w->rcs[1], HS_UNAVAILABLE);
	assert_int_equal(w->rcs[2], HS_UNAVAILABLE);
	assert_non_null(strstr(w->msg[1], "shutting down"));
	waiter_free(w);
}

static void test_upstream__bad_config(void **s)
{
	hs_auth_upstream_config c = HS_AUTH_UPSTREAM_CONFIG_INIT;
	hs_auth_upstream *u = NULL;
	assert_int_equal(hs_auth_upstream_new(&u, &c, NULL), HS_INVALID);
	c.base_url = "ftp://x";
	assert_int_equal(hs_auth_upstream_new(&u, &c, NULL), HS_INVALID);
	c.base_url = "http://x";
	c.api_key = "a\r\nInjected: 1";
	assert_int_equal(hs_auth_upstream_new(&u, &c, NULL), HS_INVALID);
	assert_null(u);
}

static void test_upstream__parse_time(void **s)
{
	long long ms = 0;
	assert_int_equal(hs_auth_upstream_parse_time("1970-01-01T00:00:00Z", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(hs_auth_upstream_parse_time("2024-01-15T10:30:00.123456Z", &ms), 0);
	assert_int_equal(ms, 1705314600123LL);
	assert_int_equal(hs_auth_upstream_parse_time("2024-01-15T12:30:00+02:00", &ms), 0);
	assert_int_equal(ms, 1705314600000LL);
	assert_int_equal(hs_auth_upstream_parse_time("2024-01-15T05:30:00-0500", &ms), 0);
	assert_int_equal(ms, 1705314600000LL);
	assert_int_equal(hs_auth_upstream_parse_time("2024-02-29", &ms), 0);
	assert_int_equal(ms, 1709164800000LL);
	assert_int_equal(hs_auth_upstream_parse_time("2024-01-15 10:30:00", &ms), 0);
	assert_int_equal(ms, 1705314600000LL);
	assert_int_equal(hs_auth_upstream_parse_time("1969-12-31T23:59:59Z", &ms), 0);
	assert_int_equal(ms, -1000);
	const char *bad[] = { "", "2023-02-29", "2024-13-01", "2024-01-15T25:00:00Z",
			      "2024-01-15T10:30", "2024-01-15T10:30:00.Z", "2024-01-15T10:30:00Zjunk",
			      "+2024-01-15", "2024-1-5", NULL };
	for (int i = 0; bad[i]; i++)
		assert_int_equal(hs_auth_upstream_parse_time(bad[i], &ms), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_upstream__login_ok_mapping, reset_mode),
		cmocka_unit_test_setup(test_upstream__login_401_carries_message, reset_mode),
		cmocka_unit_test_setup(test_upstream__refresh_rotates, reset_mode),
		cmocka_unit_test_setup(test_upstream__get_user, reset_mode),
		cmocka_unit_test_setup(test_upstream__wrong_api_key, reset_mode),
		cmocka_unit_test_setup(test_upstream__5xx_unavailable, reset_mode),
		cmocka_unit_test_setup(test_upstream__status_mapping, reset_mode),
		cmocka_unit_test_setup(test_upstream__garbage_internal_no_leak, reset_mode),
		cmocka_unit_test_setup(test_upstream__stall_respects_deadline, reset_mode),
		cmocka_unit_test_setup(test_upstream__down_and_refused, reset_mode),
		cmocka_unit_test_setup(test_upstream__connection_reuse, reset_mode),
		cmocka_unit_test_setup(test_upstream__threads, reset_mode),
		cmocka_unit_test_setup(test_upstream__async_login, reset_mode),
		cmocka_unit_test_setup(test_upstream__async_deadline_and_shutdown, reset_mode),
		cmocka_unit_test(test_upstream__bad_config),
		cmocka_unit_test(test_upstream__parse_time),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
