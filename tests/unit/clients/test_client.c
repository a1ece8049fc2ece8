/* clients/: gRPC status mapping, and calls that fail before/without a server
 * (down -> UNAVAILABLE, silent peer -> DEADLINE_EXCEEDED, bad metadata). */
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

#include "client.h"
#include "client_internal.h"
#include "harness/v1/auth.pb-c.h"

static void test_client__status_mapping(void **state)
{
	static const struct { int grpc; hs_code code; int http; const char *name; } t[] = {
		{ 0, HS_OK, 200, "OK" },
		{ 1, HS_CANCELLED, 499, "CANCELLED" },
		{ 2, HS_INTERNAL, 500, "UNKNOWN" },
		{ 3, HS_INVALID, 400, "INVALID_ARGUMENT" },
		{ 4, HS_TIMEOUT, 504, "DEADLINE_EXCEEDED" },
		{ 5, HS_NOT_FOUND, 404, "NOT_FOUND" },
		{ 6, HS_EXISTS, 409, "ALREADY_EXISTS" },
		{ 7, HS_DENIED, 403, "PERMISSION_DENIED" },
		{ 8, HS_LIMIT, 429, "RESOURCE_EXHAUSTED" },
		{ 9, HS_CONFLICT, 400, "FAILED_PRECONDITION" },
		{ 10, HS_ABORTED, 409, "ABORTED" },
		{ 11, HS_INVALID, 400, "OUT_OF_RANGE" },
		{ 12, HS_UNIMPLEMENTED, 501, "UNIMPLEMENTED" },
		{ 13, HS_INTERNAL, 500, "INTERNAL" },
		{ 14, HS_UNAVAILABLE, 503, "UNAVAILABLE" },
		{ 15, HS_INTERNAL, 500, "DATA_LOSS" },
		{ 16, HS_UNAUTH, 401, "UNAUTHENTICATED" },
		{ 17, HS_INTERNAL, 500, "UNKNOWN" },
		{ -1, HS_INTERNAL, 500, "UNKNOWN" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(hs_client_code_from_grpc(t[i].grpc), t[i].code);
		assert_int_equal(hs_client_grpc_to_http(t[i].grpc), t[i].http);
		assert_string_equal(hs_client_grpc_code_name(t[i].grpc), t[i].name);
	}
}

static void test_client__new_refuses_empty_target(void **state)
{
	hs_client *c = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_client_new(&c, "", NULL, &err), HS_INVALID);
	assert_null(c);
	hs_client_opts o = HS_CLIENT_OPTS_INIT;
	o.tls_ca_file = "/nonexistent/ca.pem";
	assert_int_equal(hs_client_new(&c, "127.0.0.1:1", &o, &err), HS_INVALID);
	assert_null(c);
	/* a client certificate without its key (and the reverse), unreadable files */
	o.tls_ca_file = NULL;
	o.tls_cert_file = "/etc/hostname";
	assert_int_equal(hs_client_new(&c, "127.0.0.1:1", &o, &err), HS_INVALID);
	assert_null(c);
	o.tls_cert_file = NULL;
	o.tls_key_file = "/etc/hostname";
	assert_int_equal(hs_client_new(&c, "127.0.0.1:1", &o, &err), HS_INVALID);
	o.tls_cert_file = "/nonexistent/c.pem";
	hs_error_clear(&err);
	assert_int_equal(hs_client_new(&c, "127.0.0.1:1", &o, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "/nonexistent/c.pem"));
	assert_null(c);
	/* --tls alone: system roots */
	hs_client_opts t = HS_CLIENT_OPTS_INIT;
	t.tls = 1;
	t.tls_server_name = "harnessd.test";
	assert_int_equal(hs_client_new(&c, "127.0.0.1:1", &t, &err), HS_OK);
	hs_client_free(c);
	c = NULL;
	hs_client_free(NULL);
	hs_client_stream_free(NULL);
}

static void login_req(Harness__V1__LoginRequest *r)
{
	harness__v1__login_request__init(r);
	r->email = "a@example.com";
	r->password = "password1";
}

static void test_client__down_server_is_unavailable(void **state)
{
	hs_client *c = NULL;
	assert_int_equal(hs_client_new(&c, "127.0.0.1:1", NULL, NULL), HS_OK);
	Harness__V1__LoginRequest req;
	login_req(&req);
	ProtobufCMessage *resp = NULL;
	hs_client_status st;
	hs_client_md md[] = { { "x-forwarded-for", "192.0.2.1" }, { "x-client-user-agent", "test/1" } };
	int rc = hs_client_unary(c, "/harness.v1.AuthService/Login", &req.base,
				 &harness__v1__auth_response__descriptor, &resp, md, 2, 2000, &st);
	assert_int_equal(rc, HS_UNAVAILABLE);
	assert_int_equal(st.code, 14);
	assert_null(resp);
	assert_string_equal(st.error_code, "");

	hs_client_stream *s = NULL;
	rc = hs_client_stream_start(&s, c, "/harness.v1.HealthService/WatchTasks", &req.base,
				    &harness__v1__auth_response__descriptor, NULL, 0, 2000, &st);
	assert_int_equal(rc, HS_UNAVAILABLE);
	assert_null(s);
	hs_client_free(c);
}

static void test_client__bad_metadata_is_refused_before_the_call(void **state)
{
	hs_client *c = NULL;
	assert_int_equal(hs_client_new(&c, "127.0.0.1:1", NULL, NULL), HS_OK);
	Harness__V1__LoginRequest req;
	login_req(&req);
	ProtobufCMessage *resp = NULL;
	hs_client_status st;
	hs_client_md crlf[] = { { "x-forwarded-for", "1.2.3.4\r\nx: y" } };
	assert_int_equal(hs_client_unary(c, "/x.Y/Z", &req.base, &harness__v1__auth_response__descriptor,
					 &resp, crlf, 1, 1000, &st), HS_INVALID);
	assert_int_equal(st.code, 3);
	hs_client_md upper[] = { { "X-Bad", "v" } };
	assert_int_equal(hs_client_unary(c, "/x.Y/Z", &req.base, &harness__v1__auth_response__descriptor,
					 &resp, upper, 1, 1000, NULL), HS_INVALID);
	hs_client_md pseudo[] = { { ":authority", "v" } };
	assert_int_equal(hs_client_unary(c, "/x.Y/Z", &req.base, &harness__v1__auth_response__descriptor,
					 &resp, pseudo, 1, 1000, NULL), HS_INVALID);
	assert_null(resp);
	hs_client_free(c);
}

/* A TCP peer that accepts and never speaks HTTP/2: the deadline must fire. */
static void test_client__silent_server_hits_the_deadline(void **state)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 8), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	char target[64];
	snprintf(target, sizeof(target), "127.0.0.1:%d", ntohs(a.sin_port));

	hs_client *c = NULL;
	assert_int_equal(hs_client_new(&c, target, NULL, NULL), HS_OK);
	Harness__V1__LoginRequest req;
	login_req(&req);
	ProtobufCMessage *resp = NULL;
	hs_client_status st;
	int rc = hs_client_unary(c, "/harness.v1.AuthService/Login", &req.base,
				 &harness__v1__auth_response__descriptor, &resp, NULL, 0, 300, &st);
	assert_true(rc == HS_TIMEOUT || rc == HS_UNAVAILABLE);
	assert_true(st.code == 4 || st.code == 14);
	assert_null(resp);
	hs_client_free(c);
	close(fd);
}

/* What follow.c accepts as a harness-node-address: a strict HOST:PORT. */
static void test_client__follow_address_is_strict(void **state)
{
	(void)state;
	static const char *const good[] = {
		"127.0.0.1:50051", "localhost:1", "harness-0.harness-nodes.ns.svc:65535",
		"[::1]:443", "[fe80::1:2]:8080", "A-b.C9:99",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!hs_client__follow_addr_ok(good[i], strlen(good[i])))
			fail_msg("refused %s", good[i]);
	char long_name[300];
	memset(long_name, 'a', sizeof(long_name));
	memcpy(long_name + 250, ".com:1", 7);
	static const char *const bad[] = {
		"", ":1", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:123456", "dns:///127.0.0.1:1", "unix:/tmp/x", "ipv4:127.0.0.1:1",
		"h/x:1", "user@h:1", "h :1", " h:1", "h:1 ", "-h:1", "h-:1", "a..b:1", ".a:1", "a.:1",
		"[::1:1", "[]:1", "[::1]x:1", "[::g]:1", "h:1:1", "h:+1", "h:1\n", "h\t:1",
		"http://h:1", "xn--\xc3\xa9:1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (hs_client__follow_addr_ok(bad[i], strlen(bad[i])))
			fail_msg("accepted \"%s\"", bad[i]);
	assert_false(hs_client__follow_addr_ok(long_name, strlen(long_name))); /* >= 256 bytes */
	/* "unix:1" is a host named unix: harmless, it is dialled as dns:///unix:1 */
	assert_true(hs_client__follow_addr_ok("unix:1", 6));
	/* a label of 64 characters */
	char label[80];
	memset(label, 'b', 64);
	memcpy(label + 64, ":1", 3);
	assert_false(hs_client__follow_addr_ok(label, strlen(label)));
	label[63] = ':'; /* 63: fine */
	label[64] = '1';
	label[65] = '\0';
	assert_true(hs_client__follow_addr_ok(label, strlen(label)));
}

/* Channels to followed addresses: at most HS_CLIENT_FOLLOW_CHANNELS, the
 * least recently used evicted; one still held stays valid until
 * released (ASan would see a use after free). */
static void test_client__follow_channels_lru_refcounted(void **state)
{
	(void)state;
	hs_client *c = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_client_new(&c, "127.0.0.1:1", NULL, &err), HS_OK);
	hs_client__peer *held = hs_client__peer_acquire(c, "127.0.0.1:2");
	assert_non_null(held);
	grpc_channel *ch = hs_client__peer_channel(held);
	char addr[32];
	for (int i = 0; i < 2 * HS_CLIENT_FOLLOW_CHANNELS; i++) {
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", 100 + i);
		hs_client__peer *p = hs_client__peer_acquire(c, addr);
		assert_non_null(p);
		hs_client__peer_release(c, p);
	}
	assert_int_equal(hs_client__peers_count(c), HS_CLIENT_FOLLOW_CHANNELS);
	/* evicted but held: still a channel (its state can be asked) */
	(void)grpc_channel_check_connectivity_state(ch, 0);
	/* the same address again is a new entry, a different channel */
	hs_client__peer *again = hs_client__peer_acquire(c, "127.0.0.1:2");
	assert_non_null(again);
	assert_ptr_not_equal(again, held);
	hs_client__peer_release(c, held);
	/* the most recent ones stay: acquiring the last one finds it */
	hs_client__peer *last = hs_client__peer_acquire(c, addr);
	assert_int_equal(hs_client__peers_count(c), HS_CLIENT_FOLLOW_CHANNELS);
	hs_client__peer_release(c, last);
	hs_client__peer_release(c, again);
	hs_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client__status_mapping),
		cmocka_unit_test(test_client__new_refuses_empty_target),
		cmocka_unit_test(test_client__down_server_is_unavailable),
		cmocka_unit_test(test_client__bad_metadata_is_refused_before_the_call),
		cmocka_unit_test(test_client__silent_server_hits_the_deadline),
		cmocka_unit_test(test_client__follow_address_is_strict),
		cmocka_unit_test(test_client__follow_channels_lru_refcounted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
