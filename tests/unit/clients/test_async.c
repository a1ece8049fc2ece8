/* clients/async.c: calls on the shared completion queue that fail before or
 * without a server (down -> UNAVAILABLE, bad metadata), and a stream on a
 * silent peer: open after the start wait, reads time out, cancel ends it,
 * free waits for its outstanding operations. Calls that succeed run
 * against a real harnessd in the integration tests (gateway, rest). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "async.h"
#include "harness/v1/auth.pb-c.h"
#include "harness/v1/health.pb-c.h"

static void test_async__bad_pollers_are_refused(void **state)
{
	(void)state;
	hs_client *c = NULL;
	assert_int_equal(hs_client_new(&c, "127.0.0.1:1", NULL, NULL), HS_OK);
	hs_async *a = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_async_new(&a, c, 0, &err), HS_INVALID);
	assert_int_equal(hs_async_new(&a, c, 17, &err), HS_INVALID);
	assert_int_equal(hs_async_new(&a, NULL, 1, &err), HS_INVALID);
	assert_null(a);
	hs_async_free(NULL);
	hs_async_stream_free(NULL);
	hs_async_stream_cancel(NULL);
	hs_client_free(c);
}

static void test_async__down_server_is_unavailable(void **state)
{
	(void)state;
	hs_client *c = NULL;
	hs_async *a = NULL;
	assert_int_equal(hs_client_new(&c, "127.0.0.1:1", NULL, NULL), HS_OK);
	assert_int_equal(hs_async_new(&a, c, 2, NULL), HS_OK);
	Harness__V1__LoginRequest req = HARNESS__V1__LOGIN_REQUEST__INIT;
	req.email = "a@example.com";
	req.password = "password";
	ProtobufCMessage *resp = NULL;
	hs_client_status st;
	hs_client_md md[] = { { "x-request-id", "abc" } };
	/* many threads' worth of calls on one queue: each gets its own answer */
	for (int i = 0; i < 20; i++) {
		int rc = hs_async_unary(a, "/harness.v1.AuthService/Login", &req.base,
					&harness__v1__auth_response__descriptor, &resp, md, 1, 2000, &st);
		assert_int_equal(rc, HS_UNAVAILABLE);
		assert_int_equal(st.code, 14);
		assert_null(resp);
	}
	hs_client_md bad[] = { { "x-forwarded-for", "1.2.3.4\r\nx: y" } };
	assert_int_equal(hs_async_unary(a, "/x.Y/Z", &req.base, &harness__v1__auth_response__descriptor,
					&resp, bad, 1, 1000, &st), HS_INVALID);
	assert_int_equal(st.code, 3);
	Harness__V1__WatchTasksRequest w = HARNESS__V1__WATCH_TASKS_REQUEST__INIT;
	hs_async_stream *s = NULL;
	int rc = hs_async_stream_start(&s, a, "/harness.v1.HealthService/WatchTasks", &w.base,
				       &harness__v1__task_event__descriptor, NULL, 0, 2000, 5000, &st);
	assert_int_equal(rc, HS_UNAVAILABLE);
	assert_null(s);
	assert_int_equal(hs_async_stream_start(&s, a, "/x.Y/Z", &w.base, &harness__v1__task_event__descriptor,
					       bad, 1, -1, 100, &st), HS_INVALID);
	hs_async_free(a);
	hs_client_free(c);
}

/* A TCP peer that accepts and never speaks HTTP/2. */
static void test_async__stream_on_a_silent_peer(void **state)
{
	(void)state;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	socklen_t len = sizeof(sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	char target[64];
	snprintf(target, sizeof(target), "127.0.0.1:%d", ntohs(sa.sin_port));

	hs_client *c = NULL;
	hs_async *a = NULL;
	assert_int_equal(hs_client_new(&c, target, NULL, NULL), HS_OK);
	assert_int_equal(hs_async_new(&a, c, 1, NULL), HS_OK);
	Harness__V1__WatchTasksRequest w = HARNESS__V1__WATCH_TASKS_REQUEST__INIT;
	hs_async_stream *s = NULL;
	hs_client_status st;
	/* nothing from the server within the start wait: the stream is open */
	assert_int_equal(hs_async_stream_start(&s, a, "/harness.v1.HealthService/WatchTasks", &w.base,
					       &harness__v1__task_event__descriptor, NULL, 0, -1, 200, &st),
			 HS_OK);
	assert_non_null(s);
	ProtobufCMessage *m = NULL;
	assert_int_equal(hs_async_stream_next(s, &m, 100, &st), HS_TIMEOUT);
	assert_null(m);
	hs_async_stream_cancel(s);
	hs_async_stream_cancel(s); /* twice is fine */
	assert_int_equal(hs_async_stream_next(s, &m, -1, &st), HS_CANCELLED);
	assert_int_equal(st.code, 1);
	/* after the end, the same status again */
	assert_int_equal(hs_async_stream_next(s, &m, 10, &st), HS_CANCELLED);
	hs_async_stream_free(s);

	/* freed while a read is outstanding: it is cancelled and waited for */
	assert_int_equal(hs_async_stream_start(&s, a, "/harness.v1.HealthService/WatchTasks", &w.base,
					       &harness__v1__task_event__descriptor, NULL, 0, -1, 50, &st),
			 HS_OK);
	hs_async_stream_free(s);
	/* a unary call there hits its deadline */
	Harness__V1__GetTaskRequest g = HARNESS__V1__GET_TASK_REQUEST__INIT;
	int rc = hs_async_unary(a, "/harness.v1.HealthService/GetTask", &g.base,
				&harness__v1__task__descriptor, &m, NULL, 0, 300, &st);
	assert_true(rc == HS_TIMEOUT || rc == HS_UNAVAILABLE);
	hs_async_free(a);
	hs_client_free(c);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_async__bad_pollers_are_refused),
		cmocka_unit_test(test_async__down_server_is_unavailable),
		cmocka_unit_test(test_async__stream_on_a_silent_peer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
