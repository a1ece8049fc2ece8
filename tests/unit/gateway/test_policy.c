/* gateway/policy.c: CORS origins, CSRF/content-type rules, the cookie,
 * helmet headers, the client address. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "netaddr.h"
#include "policy.h"

static void test_policy__origins_parse_and_match(void **state)
{
	hs_gw_origins o;
	hs_error err = { 0 };
	assert_int_equal(hs_gw_origins_parse(&o, " http://localhost:3000 ,https://App.example.com,", &err), HS_OK);
	assert_int_equal(o.n, 2);
	assert_true(hs_gw_origin_allowed(&o, "http://localhost:3000"));
	assert_true(hs_gw_origin_allowed(&o, "https://app.example.com"));
	assert_false(hs_gw_origin_allowed(&o, "http://localhost:3001"));
	assert_false(hs_gw_origin_allowed(&o, "http://localhost:3000.evil.com"));
	assert_false(hs_gw_origin_allowed(&o, "https://localhost:3000"));
	assert_false(hs_gw_origin_allowed(&o, "null"));
	assert_false(hs_gw_origin_allowed(&o, NULL));
	assert_int_equal(hs_gw_origins_parse(&o, "", &err), HS_OK);
	assert_int_equal(o.n, 0);
	assert_false(hs_gw_origin_allowed(&o, "http://localhost:3000"));
}

static void test_policy__origins_refuse_bad_entries(void **state)
{
	hs_gw_origins o;
	const char *bad[] = { "*", "localhost:3000", "http://a.com/path", "ftp://a.com", "http://",
			      "http://a.com\r\nX: y", "http://*.a.com" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hs_error err = { 0 };
		assert_int_equal(hs_gw_origins_parse(&o, bad[i], &err), HS_INVALID);
		assert_non_null(strstr(err.msg, "origin"));
	}
}

static void test_policy__content_types(void **state)
{
	assert_int_equal(hs_gw_content_type(NULL), HS_GW_CT_NONE);
	assert_int_equal(hs_gw_content_type(""), HS_GW_CT_NONE);
	assert_int_equal(hs_gw_content_type("application/json"), HS_GW_CT_JSON);
	assert_int_equal(hs_gw_content_type("Application/JSON; charset=utf-8"), HS_GW_CT_JSON);
	assert_int_equal(hs_gw_content_type("application/x-www-form-urlencoded"), HS_GW_CT_FORM);
	assert_int_equal(hs_gw_content_type("multipart/form-data; boundary=x"), HS_GW_CT_FORM);
	assert_int_equal(hs_gw_content_type("text/plain;charset=UTF-8"), HS_GW_CT_FORM);
	assert_int_equal(hs_gw_content_type("application/jsonx"), HS_GW_CT_OTHER);
	assert_int_equal(hs_gw_content_type("application/xml"), HS_GW_CT_OTHER);
}

static void test_policy__csrf_verdicts(void **state)
{
	hs_gw_origins o;
	assert_int_equal(hs_gw_origins_parse(&o, "http://localhost:3000", NULL), HS_OK);
	hs_gw_post_req r = { .content_type = "application/json", .has_body = true };
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_ALLOW);
	r.origin = "http://localhost:3000";
	r.sec_fetch_site = "same-origin";
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_ALLOW);
	r.sec_fetch_site = "cross-site";
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_CROSS_SITE);
	r.sec_fetch_site = NULL;
	r.origin = "https://evil.example";
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_ORIGIN);
	r.origin = "null";
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_ORIGIN);
	r.origin = NULL;
	r.content_type = "application/x-www-form-urlencoded";
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_MEDIA_TYPE);
	r.has_body = false; /* a form POST with an empty body is still a form */
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_MEDIA_TYPE);
	r.content_type = "text/plain";
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_MEDIA_TYPE);
	r.content_type = NULL; /* the seed's refresh: no body, no type */
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_ALLOW);
	r.has_body = true;
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_MEDIA_TYPE);
	r.content_type = "application/json";
	assert_int_equal(hs_gw_csrf_check(&r, &o, true), HS_GW_DENY_NO_HEADER);
	r.requested_with = "";
	assert_int_equal(hs_gw_csrf_check(&r, &o, true), HS_GW_DENY_NO_HEADER);
	r.requested_with = "XMLHttpRequest";
	assert_int_equal(hs_gw_csrf_check(&r, &o, true), HS_GW_ALLOW);
}

/* The console is served by the gateway: its own origin passes the Origin
 * check without being listed; another host, scheme or port does not. */
static void test_policy__self_origin(void **state)
{
	(void)state;
	hs_gw_origins o;
	assert_int_equal(hs_gw_origins_parse(&o, "http://localhost:3000", NULL), HS_OK);
	char self[300];
	assert_true(hs_gw_self_origin(self, sizeof(self), "127.0.0.1:8080", false));
	assert_string_equal(self, "http://127.0.0.1:8080");
	hs_gw_post_req r = { .content_type = "application/json", .has_body = true,
			     .origin = "http://127.0.0.1:8080", .self_origin = self };
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_ALLOW);
	r.origin = "http://127.0.0.1:8081";
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_ORIGIN);
	r.origin = "https://127.0.0.1:8080";
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_ORIGIN);
	r.origin = "http://evil.example";
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_ORIGIN);
	r.self_origin = NULL;
	r.origin = "http://127.0.0.1:8080";
	assert_int_equal(hs_gw_csrf_check(&r, &o, false), HS_GW_DENY_ORIGIN);
	assert_true(hs_gw_self_origin(self, sizeof(self), "harness.example.com", true));
	assert_string_equal(self, "https://harness.example.com");
	assert_true(hs_gw_self_origin(self, sizeof(self), "[::1]:80", false));
	assert_false(hs_gw_self_origin(self, sizeof(self), "a b", false));
	assert_false(hs_gw_self_origin(self, sizeof(self), "evil/x", false));
	assert_false(hs_gw_self_origin(self, sizeof(self), "", false));
	assert_false(hs_gw_self_origin(self, sizeof(self), NULL, false));
	assert_null(strstr(hs_gw_console_csp, "unsafe"));
	assert_null(strstr(hs_gw_console_csp, "upgrade-insecure-requests"));
	assert_non_null(strstr(hs_gw_console_csp_tls, "upgrade-insecure-requests"));
}

static void test_policy__cookie_build(void **state)
{
	char buf[512];
	assert_int_equal(hs_gw_cookie_build(buf, sizeof(buf), "refreshToken", "tok-1", 604800,
					    "/api/v1/auth", false, 0), HS_OK);
	assert_string_equal(buf, "refreshToken=tok-1; Max-Age=604800; Path=/api/v1/auth; "
				 "Expires=Thu, 08 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict");
	assert_int_equal(hs_gw_cookie_build(buf, sizeof(buf), "refreshToken", NULL, 604800, "/", true,
					    1700000000), HS_OK);
	assert_string_equal(buf, "refreshToken=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 "
				 "00:00:00 GMT; HttpOnly; Secure; SameSite=Strict");
	assert_int_equal(hs_gw_cookie_build(buf, sizeof(buf), "refreshToken", "a\r\nb", 1, "/", false, 0),
			 HS_INVALID);
	assert_int_equal(hs_gw_cookie_build(buf, sizeof(buf), "refreshToken", "a;b", 1, "/", false, 0),
			 HS_INVALID);
	assert_int_equal(hs_gw_cookie_build(buf, sizeof(buf), "refreshToken", "a", 1, "/x;y", false, 0),
			 HS_INVALID);
	assert_int_equal(hs_gw_cookie_build(buf, 20, "refreshToken", "abc", 1, "/", false, 0), HS_INVALID);
	assert_true(hs_gw_cookie_path_ok("/"));
	assert_false(hs_gw_cookie_path_ok("api"));
	assert_false(hs_gw_cookie_path_ok(NULL));
}

static void test_policy__helmet_headers(void **state)
{
	size_t n = 0;
	bool csp = false, hsts = false, xfo = false;
	for (; hs_gw_security_headers[n][0] != NULL; n++) {
		const char *k = hs_gw_security_headers[n][0], *v = hs_gw_security_headers[n][1];
		for (const char *c = v; *c; c++)
			assert_true(*c >= 0x20 && *c < 0x7f);
		csp |= !strcmp(k, "Content-Security-Policy") && !strncmp(v, "default-src 'self';", 19);
		hsts |= !strcmp(k, "Strict-Transport-Security") && !strcmp(v, "max-age=15552000; includeSubDomains");
		xfo |= !strcmp(k, "X-Frame-Options") && !strcmp(v, "SAMEORIGIN");
		assert_string_not_equal(k, "X-Powered-By");
	}
	assert_int_equal(n, 12);
	assert_true(csp && hsts && xfo);
}

/* The gateway's client address is common/netaddr.h's rule (tested there);
 * here only the CIDR form its --trusted-proxies now takes. */
static void test_policy__client_ip(void **state)
{
	hs_cidr_list t;
	char ip[HS_IP_TEXT_MAX];
	assert_int_equal(hs_cidr_list_parse(&t, "10.0.0.1, 10.0.0.2", "x", NULL), HS_OK);
	hs_client_address(&t, "192.0.2.7", "203.0.113.9", ip, sizeof(ip));
	assert_string_equal(ip, "192.0.2.7"); /* not from a proxy: XFF ignored */
	hs_client_address(&t, "10.0.0.1", "1.1.1.1, 203.0.113.9, 10.0.0.2", ip, sizeof(ip));
	assert_string_equal(ip, "203.0.113.9"); /* right-most untrusted; spoofed left part ignored */
	hs_client_address(&t, "10.0.0.1", "evil\r\n, 203.0.113.9", ip, sizeof(ip));
	assert_string_equal(ip, "203.0.113.9");
	hs_client_address(&t, "10.0.0.1", "not-an-ip", ip, sizeof(ip));
	assert_string_equal(ip, "10.0.0.1");
	assert_int_equal(hs_cidr_list_parse(&t, "10.0.0.0/24", "x", NULL), HS_OK);
	hs_client_address(&t, "10.0.0.77", "2001:db8::1", ip, sizeof(ip));
	assert_string_equal(ip, "2001:db8::1");
}

/* Request smuggling shapes: ambiguous body lengths are refused. */
static void test_policy__framing(void **state)
{
	const hs_gw_header ok1[] = { { "Host", "x" }, { "Content-Length", "5" } };
	const hs_gw_header ok2[] = { { "Transfer-Encoding", "Chunked" } };
	const hs_gw_header both[] = { { "Content-Length", "5" }, { "Transfer-Encoding", "chunked" } };
	const hs_gw_header two_cl[] = { { "Content-Length", "5" }, { "content-length", "6" } };
	const hs_gw_header same_cl[] = { { "Content-Length", "5" }, { "Content-Length", "5" } };
	const hs_gw_header list_cl[] = { { "Content-Length", "5, 6" } };
	const hs_gw_header plus_cl[] = { { "Content-Length", "+5" } };
	const hs_gw_header two_te[] = { { "Transfer-Encoding", "chunked" },
					{ "Transfer-Encoding", "chunked" } };
	const hs_gw_header te_list[] = { { "Transfer-Encoding", "gzip, chunked" } };
	const hs_gw_header space[] = { { "Content-Length ", "5" } };
	assert_null(hs_gw_framing_problem(ok1, 2));
	assert_null(hs_gw_framing_problem(ok2, 1));
	assert_null(hs_gw_framing_problem(NULL, 0));
	assert_string_equal(hs_gw_framing_problem(both, 2), "both Content-Length and Transfer-Encoding");
	assert_string_equal(hs_gw_framing_problem(two_cl, 2), "Content-Length repeated");
	assert_string_equal(hs_gw_framing_problem(same_cl, 2), "Content-Length repeated");
	assert_non_null(hs_gw_framing_problem(list_cl, 1));
	assert_non_null(hs_gw_framing_problem(plus_cl, 1));
	assert_non_null(hs_gw_framing_problem(two_te, 2));
	assert_non_null(hs_gw_framing_problem(te_list, 1));
	assert_non_null(hs_gw_framing_problem(space, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy__origins_parse_and_match),
		cmocka_unit_test(test_policy__origins_refuse_bad_entries),
		cmocka_unit_test(test_policy__content_types),
		cmocka_unit_test(test_policy__csrf_verdicts),
		cmocka_unit_test(test_policy__self_origin),
		cmocka_unit_test(test_policy__cookie_build),
		cmocka_unit_test(test_policy__helmet_headers),
		cmocka_unit_test(test_policy__client_ip),
		cmocka_unit_test(test_policy__framing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
