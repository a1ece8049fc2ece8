/* The shared rules behind authentication: the email rule (validator.js's
 * normalizeEmail defaults), IP text and trusted-proxy CIDR lists, the
 * gateway's signature on x-forwarded-for, secret files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "email.h"
#include "gateway_auth.h"
#include "netaddr.h"
#include "secret_file.h"

static void expect_norm(const char *in, const char *want)
{
	char out[HS_EMAIL_MAX + 1];
	if (want == NULL) {
		assert_false(hs_email_normalize(in, out, sizeof(out)));
		return;
	}
	if (!hs_email_normalize(in, out, sizeof(out)))
		fail_msg("normalize(%s) failed", in);
	if (strcmp(out, want) != 0)
		fail_msg("normalize(%s) = %s, want %s", in, out, want);
}

/* The cases of validator.js's own test suite for normalizeEmail with the
 * default options, plus ours. */
static void test_email__validator_defaults(void **s)
{
	expect_norm("test@me.com", "test@me.com");
	expect_norm("some.name@gmail.com", "somename@gmail.com");
	expect_norm("some.name@googleMail.com", "somename@gmail.com");
	expect_norm("some.name+extension@gmail.com", "somename@gmail.com");
	expect_norm("some.Name+extension@GoogleMail.com", "somename@gmail.com");
	expect_norm("some.name.middleName+extension@gmail.com", "somenamemiddlename@gmail.com");
	expect_norm("some.name.middleName+extension@GoogleMail.com", "somenamemiddlename@gmail.com");
	expect_norm("some.name.midd..leName+extension@gmail.com", "somenamemidd..lename@gmail.com");
	expect_norm("some.name+extension@unknown.com", "some.name+extension@unknown.com");
	expect_norm("hans@m\xc3\xbcller.com", "hans@m\xc3\xbcller.com");
	expect_norm("some.name.midd..leName+extension@GoogleMail.com",
		    "somenamemidd..lename@gmail.com");
	expect_norm("some.name+extension@googlemail.com", "somename@gmail.com");
	expect_norm("test@outlook.com", "test@outlook.com");
	expect_norm("test+extension@outlook.com", "test@outlook.com");
	expect_norm("test+extension@hotmail.co.uk", "test@hotmail.co.uk");
	expect_norm("test+ext@live.fr", "test@live.fr");
	expect_norm("some.name.midd..leName+extension@icloud.com",
		    "some.name.midd..lename@icloud.com");
	expect_norm("john+x@me.com", "john@me.com");
	expect_norm("jane-list@yahoo.com", "jane@yahoo.com");
	expect_norm("a-b-c@ymail.com", "a-b@ymail.com");
	expect_norm("nodash@rocketmail.com", "nodash@rocketmail.com");
	expect_norm("Ivan@Yandex.ua", "ivan@yandex.ru");
	expect_norm("ivan@ya.ru", "ivan@yandex.ru");
	expect_norm("ROOT@Example.COM", "root@example.com");
	expect_norm("hara+tag@sub.example.co.uk", "hara+tag@sub.example.co.uk");
	/* the issue 14 scenario */
	expect_norm("First.Last+tag@gmail.com", "firstlast@gmail.com");
	/* last '@' splits, as validator.js's pop() */
	expect_norm("\"a@b\"@Example.com", "\"a@b\"@example.com");
	/* surrounding whitespace dropped */
	expect_norm("  Alice@EXAMPLE.com \t", "alice@example.com");
	/* a rule that would empty the local part does not apply */
	expect_norm("+tag@gmail.com", "+tag@gmail.com");
	expect_norm("...@gmail.com", "...@gmail.com");
	expect_norm("-x@yahoo.com", "-x@yahoo.com");
	/* old stored addresses must still normalise: admin@localhost, a@x */
	expect_norm("admin@localhost", "admin@localhost");
	expect_norm("a@x", "a@x");
}

static void test_email__refused_shapes(void **s)
{
	char out[HS_EMAIL_MAX + 1], big[300];
	expect_norm("", NULL);
	expect_norm("no-at-sign", NULL);
	expect_norm("@example.com", NULL);
	expect_norm("a@", NULL);
	expect_norm("a b@example.com", NULL);
	expect_norm("a\r\nb@example.com", NULL);
	expect_norm("a@exa\x7fmple.com", NULL);
	expect_norm(NULL, NULL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[10] = '@';
	expect_norm(big, NULL);
	assert_false(hs_email_normalize("a@b.co", out, 10)); /* buffer too small */
}

static void test_email__normal_forms_are_stable(void **s)
{
	const char *in[] = { "Some.Name+x@GoogleMail.com", "t+e@outlook.com", "x@yandex.com",
			     "a.b..c@gmail.com", "user@example.org", "j+x@icloud.com" };
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		char a[HS_EMAIL_MAX + 1], b[HS_EMAIL_MAX + 1];
		assert_true(hs_email_normalize(in[i], a, sizeof(a)));
		assert_true(hs_email_normalize(a, b, sizeof(b)));
		assert_string_equal(a, b);
	}
}

static void test_email__valid_shape(void **s)
{
	assert_true(hs_email_valid("alice@example.com"));
	assert_true(hs_email_valid("  Alice@EXAMPLE.com "));
	assert_true(hs_email_valid("a@xn--bcher-kva.xn--p1ai"));
	assert_true(hs_email_valid("First.Last+tag@gmail.com"));
	assert_false(hs_email_valid("invalid-email"));
	assert_false(hs_email_valid("a@x"));
	assert_false(hs_email_valid("admin@localhost"));
	assert_false(hs_email_valid("a..b@example.com"));
	assert_false(hs_email_valid(".a@example.com"));
	assert_false(hs_email_valid("a@[127.0.0.1]"));
	assert_false(hs_email_valid("a@example.c0m"));
	assert_false(hs_email_valid("\"q\"@example.com"));
	assert_false(hs_email_valid(NULL));
	char legacy[HS_EMAIL_MAX + 1];
	assert_true(hs_email_legacy_key(" A.B+X@GMail.com ", legacy, sizeof(legacy)));
	assert_string_equal(legacy, "a.b+x@gmail.com");
}

/* ---- addresses ---- */

static void test_netaddr__cidr_lists(void **s)
{
	hs_cidr_list l;
	hs_error err = { 0 };
	assert_int_equal(hs_cidr_list_parse(&l, " 10.0.0.0/8, 192.168.1.5 ,fd00::/8,::1", "x", &err),
			 HS_OK);
	assert_int_equal(l.n, 4);
	assert_true(hs_cidr_list_has(&l, "10.200.3.4", 10));
	assert_true(hs_cidr_list_has(&l, "192.168.1.5", 11));
	assert_false(hs_cidr_list_has(&l, "192.168.1.6", 11));
	assert_true(hs_cidr_list_has(&l, "fd12::9", 7));
	assert_true(hs_cidr_list_has(&l, "::1", 3));
	assert_true(hs_cidr_list_has(&l, "::ffff:10.1.1.1", 15)); /* mapped counts as v4 */
	assert_false(hs_cidr_list_has(&l, "11.0.0.1", 8));
	assert_false(hs_cidr_list_has(&l, "not-an-ip", 9));
	assert_int_equal(hs_cidr_list_parse(&l, "", "x", NULL), HS_OK);
	assert_int_equal(l.n, 0);
	assert_int_equal(hs_cidr_list_parse(&l, "10.0.0.0/33", "trusted proxies", &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "trusted proxies"));
	assert_int_equal(hs_cidr_list_parse(&l, "10.0.0.1/8", "x", NULL), HS_INVALID); /* host bits */
	assert_int_equal(hs_cidr_list_parse(&l, "example.com", "x", NULL), HS_INVALID);
	assert_int_equal(hs_cidr_list_parse(&l, "10.0.0.0/", "x", NULL), HS_INVALID);
	assert_int_equal(hs_cidr_list_parse(&l, "0.0.0.0/0", "x", NULL), HS_OK);
	assert_true(hs_cidr_list_has(&l, "1.2.3.4", 7));
	assert_false(hs_cidr_list_has(&l, "::2", 3));
	assert_int_equal(hs_cidr_list_parse(&l, "::ffff:10.0.0.0/104", "x", NULL), HS_OK);
	assert_true(hs_cidr_list_has(&l, "10.9.9.9", 8));
}

static void test_netaddr__peers_and_xff(void **s)
{
	char out[HS_IP_TEXT_MAX];
	hs_cidr_list t;
	assert_true(hs_grpc_peer_ip("ipv4:127.0.0.1:5555", out, sizeof(out)));
	assert_string_equal(out, "127.0.0.1");
	assert_true(hs_grpc_peer_ip("ipv6:[::1]:5555", out, sizeof(out)));
	assert_string_equal(out, "::1");
	assert_true(hs_grpc_peer_ip("ipv6:%5B::ffff:1.2.3.4%5D:80", out, sizeof(out)));
	assert_string_equal(out, "1.2.3.4");
	assert_true(hs_grpc_peer_ip("ipv6:[fe80::1%25eth0]:80", out, sizeof(out)));
	assert_string_equal(out, "fe80::1");
	assert_false(hs_grpc_peer_ip("unix:/tmp/s", out, sizeof(out)));
	assert_false(hs_grpc_peer_ip("ipv4:garbage:1", out, sizeof(out)));
	assert_false(hs_grpc_peer_ip(NULL, out, sizeof(out)));

	assert_int_equal(hs_cidr_list_parse(&t, "10.0.0.0/8", "x", NULL), HS_OK);
	hs_client_address(&t, "203.0.113.1", "1.1.1.1", out, sizeof(out));
	assert_string_equal(out, "203.0.113.1"); /* untrusted peer */
	hs_client_address(&t, "10.0.0.2", "9.9.9.9, 1.1.1.1, 10.0.0.3", out, sizeof(out));
	assert_string_equal(out, "1.1.1.1");
	hs_client_address(&t, "10.0.0.2", "10.0.0.7", out, sizeof(out));
	assert_string_equal(out, "10.0.0.2"); /* all trusted: the peer */
	hs_client_address(&t, "10.0.0.2", "1.1.1.1, bogus", out, sizeof(out));
	assert_string_equal(out, "10.0.0.2");
	hs_client_address(&t, "10.0.0.2", NULL, out, sizeof(out));
	assert_string_equal(out, "10.0.0.2");
	hs_client_address(&t, "10.0.0.2", "  2001:DB8::1 ", out, sizeof(out));
	assert_string_equal(out, "2001:db8::1");
	char big[HS_XFF_MAX + 10];
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big + sizeof(big) - 8, "1.1.1.1", 7);
	hs_client_address(&t, "10.0.0.2", big, out, sizeof(out));
	assert_string_equal(out, "10.0.0.2");
}

static void test_gateway_auth__sign_verify(void **s)
{
	const char *key = "0123456789abcdef0123456789abcdef!";
	char v[HS_GATEWAY_AUTH_MAX];
	long long now = 1700000000;
	assert_true(hs_gateway_auth_sign(key, strlen(key), "198.51.100.7", now, v, sizeof(v)));
	assert_true(strncmp(v, "v1:1700000000:", 14) == 0);
	assert_true(hs_gateway_auth_verify(key, strlen(key), "198.51.100.7", v, now));
	assert_true(hs_gateway_auth_verify(key, strlen(key), "198.51.100.7", v, now + 60));
	assert_false(hs_gateway_auth_verify(key, strlen(key), "198.51.100.7", v, now + 61));
	assert_false(hs_gateway_auth_verify(key, strlen(key), "198.51.100.7", v, now - 61));
	assert_false(hs_gateway_auth_verify(key, strlen(key), "198.51.100.8", v, now));
	assert_false(hs_gateway_auth_verify("another key", 11, "198.51.100.7", v, now));
	v[strlen(v) - 1] ^= 1;
	assert_false(hs_gateway_auth_verify(key, strlen(key), "198.51.100.7", v, now));
	assert_false(hs_gateway_auth_verify(key, strlen(key), "198.51.100.7", "v1:x:y", now));
	assert_false(hs_gateway_auth_verify(key, strlen(key), "198.51.100.7", "", now));
	assert_false(hs_gateway_auth_verify(key, strlen(key), "198.51.100.7", NULL, now));
	assert_false(hs_gateway_auth_sign(key, strlen(key), "x", now, v, 10));
}

static void test_secret_file__create_read_refuse(void **s)
{
	char dir[] = "/tmp/hs-secret-XXXXXX", path[64], cmd[96];
	char *a = NULL, *b = NULL;
	size_t la = 0;
	struct stat st;
	hs_error err = { 0 };
	hs_secret_file_opts create = { true, 0640, 007 }, read_only = { false, 0, 007 };
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/gateway.key", dir);
	assert_int_equal(hs_secret_file_load(path, &read_only, &a, NULL, &err), HS_NOT_FOUND);
	assert_int_equal(hs_secret_file_load(path, &create, &a, &la, &err), HS_OK);
	assert_int_equal(la, 64);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(hs_secret_file_load(path, &read_only, &b, NULL, NULL), HS_OK);
	assert_string_equal(a, b);
	chmod(path, 0644);
	free(b);
	b = NULL;
	assert_int_equal(hs_secret_file_load(path, &read_only, &b, NULL, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "chmod 640"));
	assert_null(b);
	free(a);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_email__validator_defaults),
		cmocka_unit_test(test_email__refused_shapes),
		cmocka_unit_test(test_email__normal_forms_are_stable),
		cmocka_unit_test(test_email__valid_shape),
		cmocka_unit_test(test_netaddr__cidr_lists),
		cmocka_unit_test(test_netaddr__peers_and_xff),
		cmocka_unit_test(test_gateway_auth__sign_verify),
		cmocka_unit_test(test_secret_file__create_read_refuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
