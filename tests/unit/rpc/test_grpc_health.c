/* Unit tests of grpc.health.v1 (server/rpc/grpc_health.c): the status table,
 * shutdown semantics, and Check/Watch served in-process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "grpc/health/v1/health.pb-c.h"
#include "log.h"
#include "std_services.h"

static void test_grpc_health__new_whole_server_not_serving(void **state)
{
	(void)state;
	hs_grpc_health *h = NULL;
	assert_int_equal(hs_grpc_health_new(&h, NULL), HS_OK);
	bool known = false;
	assert_int_equal(hs_grpc_health_get(h, "", &known), HS_GRPC_HEALTH_NOT_SERVING);
	assert_true(known);
	assert_int_equal(hs_grpc_health_get(h, "nope", &known), HS_GRPC_HEALTH_UNKNOWN);
	assert_false(known);
	assert_int_equal(hs_grpc_health_get(h, "nope", NULL), HS_GRPC_HEALTH_UNKNOWN);
	hs_grpc_health_free(h);
	hs_grpc_health_free(NULL);
}

static void test_grpc_health__set_get(void **state)
{
	(void)state;
	hs_grpc_health *h = NULL;
	assert_int_equal(hs_grpc_health_new(&h, NULL), HS_OK);
	bool known;
	assert_int_equal(hs_grpc_health_set(h, "harness.v1.AuthService", HS_GRPC_HEALTH_SERVING), HS_OK);
	assert_int_equal(hs_grpc_health_get(h, "harness.v1.AuthService", &known), HS_GRPC_HEALTH_SERVING);
	assert_true(known);
	assert_int_equal(hs_grpc_health_set(h, "harness.v1.AuthService", HS_GRPC_HEALTH_NOT_SERVING), HS_OK);
	assert_int_equal(hs_grpc_health_get(h, "harness.v1.AuthService", NULL), HS_GRPC_HEALTH_NOT_SERVING);
	assert_int_equal(hs_grpc_health_set(h, "", HS_GRPC_HEALTH_SERVING), HS_OK);
	assert_int_equal(hs_grpc_health_get(h, "", NULL), HS_GRPC_HEALTH_SERVING);
	hs_grpc_health_free(h);
}

static void test_grpc_health__limits(void **state)
{
	(void)state;
	hs_grpc_health *h = NULL;
	assert_int_equal(hs_grpc_health_new(&h, NULL), HS_OK);
	char name[300];
	memset(name, 's', 250);
	name[250] = '\0';
	assert_int_equal(hs_grpc_health_set(h, name, HS_GRPC_HEALTH_SERVING), HS_INVALID);
	int rc = HS_OK, added = 0;
	for (int i = 0; i < 100 && rc == HS_OK; i++) {
		snprintf(name, sizeof(name), "svc-%d", i);
		rc = hs_grpc_health_set(h, name, HS_GRPC_HEALTH_SERVING);
		if (rc == HS_OK)
			added++;
	}
	assert_int_equal(rc, HS_LIMIT);
	assert_int_equal(added, 31); /* 32 entries including "" */
	/* known ones can still change */
	assert_int_equal(hs_grpc_health_set(h, "svc-0", HS_GRPC_HEALTH_NOT_SERVING), HS_OK);
	hs_grpc_health_free(h);
}

static void test_grpc_health__shutdown_forces_not_serving(void **state)
{
	(void)state;
	hs_grpc_health *h = NULL;
	assert_int_equal(hs_grpc_health_new(&h, NULL), HS_OK);
	hs_grpc_health_set(h, "", HS_GRPC_HEALTH_SERVING);
	hs_grpc_health_set(h, "a", HS_GRPC_HEALTH_SERVING);
	hs_grpc_health_set(h, "b", HS_GRPC_HEALTH_SERVING);
	hs_grpc_health_shutdown(h);
	assert_int_equal(hs_grpc_health_get(h, "", NULL), HS_GRPC_HEALTH_NOT_SERVING);
	assert_int_equal(hs_grpc_health_get(h, "a", NULL), HS_GRPC_HEALTH_NOT_SERVING);
	assert_int_equal(hs_grpc_health_get(h, "b", NULL), HS_GRPC_HEALTH_NOT_SERVING);
	assert_int_equal(hs_grpc_health_set(h, "a", HS_GRPC_HEALTH_SERVING), HS_CONFLICT);
	assert_int_equal(hs_grpc_health_set(h, "new", HS_GRPC_HEALTH_SERVING), HS_CONFLICT);
	assert_int_equal(hs_grpc_health_get(h, "a", NULL), HS_GRPC_HEALTH_NOT_SERVING);
	assert_int_equal(hs_grpc_health_set(h, "a", HS_GRPC_HEALTH_NOT_SERVING), HS_OK);
	hs_grpc_health_free(h);
}

/* Check and Watch over loopback, and a watch ended by server shutdown. */
static void test_grpc_health__check_and_watch_served(void **state)
{
	(void)state;
	hs_grpc_health *h = NULL;
	hs_rpc_server *srv = NULL;
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.listen = "127.0.0.1:0";
	cfg.workers = 1;
	assert_int_equal(hs_grpc_health_new(&h, NULL), HS_OK);
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, NULL), HS_OK);
	assert_int_equal(hs_grpc_health_register(h, srv, NULL), HS_OK);
	assert_int_equal(hs_rpc_server_start(srv, NULL), HS_OK);
	grpc_channel *ch = tc_channel(hs_rpc_server_port(srv));
	const ProtobufCMessageDescriptor *rd = &grpc__health__v1__health_check_response__descriptor;

	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	tc_reply r;
	hs_grpc_health_set(h, "", HS_GRPC_HEALTH_SERVING);
	tc_unary(ch, "/grpc.health.v1.Health/Check", &req.base, NULL, 0, NULL, 0, 5000, rd, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	assert_non_null(r.msg);
	assert_int_equal(((Grpc__Health__V1__HealthCheckResponse *)r.msg)->status, 1);
	tc_reply_dispose(&r);
	req.service = "unknown.Service";
	tc_unary(ch, "/grpc.health.v1.Health/Check", &req.base, NULL, 0, NULL, 0, 5000, rd, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_NOT_FOUND);
	tc_reply_dispose(&r);

	req.service = "w";
	tc_stream s;
	assert_true(tc_stream_start(&s, ch, "/grpc.health.v1.Health/Watch", 10000, rd, &req.base, true));
	bool ok;
	ProtobufCMessage *m = tc_stream_recv(&s, &ok);
	assert_non_null(m);
	assert_int_equal(((Grpc__Health__V1__HealthCheckResponse *)m)->status, 3); /* SERVICE_UNKNOWN */
	protobuf_c_message_free_unpacked(m, NULL);
	hs_grpc_health_set(h, "w", HS_GRPC_HEALTH_SERVING);
	m = tc_stream_recv(&s, &ok);
	assert_non_null(m);
	assert_int_equal(((Grpc__Health__V1__HealthCheckResponse *)m)->status, 1);
	protobuf_c_message_free_unpacked(m, NULL);
	hs_grpc_health_shutdown(h);
	m = tc_stream_recv(&s, &ok);
	assert_non_null(m);
	assert_int_equal(((Grpc__Health__V1__HealthCheckResponse *)m)->status, 2);
	protobuf_c_message_free_unpacked(m, NULL);

	/* shutdown ends the open watch with UNAVAILABLE and drops its watcher */
	hs_rpc_server_shutdown(srv, 2000);
	assert_null(tc_stream_recv(&s, &ok));
	assert_int_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_UNAVAILABLE);
	hs_rpc_server_free(srv);
	grpc_channel_destroy(ch);
	hs_grpc_health_free(h);
}

int main(void)
{
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull >= 0 && getenv("HS_TEST_LOG") == NULL)
		hs_log_set_fd(devnull);
	grpc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grpc_health__new_whole_server_not_serving),
		cmocka_unit_test(test_grpc_health__set_get),
		cmocka_unit_test(test_grpc_health__limits),
		cmocka_unit_test(test_grpc_health__shutdown_forces_not_serving),
		cmocka_unit_test(test_grpc_health__check_and_watch_served),
	};
	int failed = cmocka_run_group_tests_name("health_v1", tests, NULL, NULL);
	grpc_shutdown_blocking();
	return failed;
}
