/* gateway/validate.c: email shapes, passwords, header values, the refresh cookie,
 * hex digits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "email.h"
#include "validate.h"

/* The gateway checks only the shape (common/email.h's isEmail rule) and
 * passes on what was typed; normal forms are harnessd's (and are tested
 * with the rule in tests/unit/common). */
static void test_validate__email_shape(void **state)
{
	const char *good[] = { "test@example.com", "Test.User@Example.COM", "  padded@example.com\t",
			       "o'hara+tag@sub.example.co.uk", "a@xn--bcher-kva.xn--p1ai",
			       "Foo.Bar+news@GMail.com", "+only@gmail.com" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!hs_email_valid(good[i]))
			fail_msg("\"%s\" refused", good[i]);
}

static void test_validate__email_refuses(void **state)
{
	const char *bad[] = {
		"invalid-email", "", "   ", "@example.com", "a@", "a@b", "a@localhost", "a@b.c",
		"a@example.c0m", "a..b@example.com", ".a@example.com", "a.@example.com",
		"a b@example.com", "a@-example.com", "a@example-.com", "a@exa_mple.com",
		"a@@example.com", "a@example..com", "a@127.0.0.1", "a@[127.0.0.1]",
		"\"quoted\"@example.com", "a\r\n@example.com", "a@example.com\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (hs_email_valid(bad[i]))
			fail_msg("\"%s\" accepted", bad[i]);
	char longlocal[80];
	memset(longlocal, 'a', 65);
	snprintf(longlocal + 65, sizeof(longlocal) - 65, "@example.com");
	assert_false(hs_email_valid(longlocal));
	char longmail[300];
	memset(longmail, 'a', 60);
	longmail[60] = '@';
	size_t p = 61;
	while (p < 260) {
		memset(longmail + p, 'b', 9);
		longmail[p + 9] = '.';
		p += 10;
	}
	snprintf(longmail + p, sizeof(longmail) - p, "com");
	assert_false(hs_email_valid(longmail));
	assert_false(hs_email_valid(NULL));
}

static void test_validate__password_length(void **state)
{
	assert_false(hs_gw_password_ok(NULL));
	assert_false(hs_gw_password_ok(""));
	assert_false(hs_gw_password_ok("12345"));
	assert_true(hs_gw_password_ok("123456"));
	assert_true(hs_gw_password_ok("password123"));
	/* 6 code points of 2 bytes each, and 5 of them (10 bytes) */
	assert_true(hs_gw_password_ok("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"));
	assert_false(hs_gw_password_ok("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"));
	assert_false(hs_gw_password_ok("abcdef\xff"));   /* invalid UTF-8 */
	assert_false(hs_gw_password_ok("abcdef\xc3"));   /* truncated */
	char big[1100];
	memset(big, 'x', 1024);
	big[1024] = '\0';
	assert_true(hs_gw_password_ok(big));
	big[1024] = 'x';
	big[1025] = '\0';
	assert_false(hs_gw_password_ok(big));
}

static void test_validate__header_values(void **state)
{
	assert_true(hs_gw_header_value_ok("Mozilla/5.0 (X11)\tok"));
	assert_true(hs_gw_header_value_ok(""));
	assert_false(hs_gw_header_value_ok(NULL));
	assert_false(hs_gw_header_value_ok("a\r\nSet-Cookie: x=y"));
	assert_false(hs_gw_header_value_ok("a\nb"));
	assert_false(hs_gw_header_value_ok("a\x01"));
	assert_false(hs_gw_header_value_ok("a\x7f"));
}

static void test_validate__token_charset(void **state)
{
	assert_true(hs_gw_token_ok("valid-refresh-token", 19));
	assert_true(hs_gw_token_ok("aB3._~+/=-", 10));
	assert_false(hs_gw_token_ok("", 0));
	assert_false(hs_gw_token_ok("a b", 3));
	assert_false(hs_gw_token_ok("a;b", 3));
	assert_false(hs_gw_token_ok("a\"b", 3));
	assert_false(hs_gw_token_ok("a%b", 3));
	static char big[HS_GW_TOKEN_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	assert_true(hs_gw_token_ok(big, HS_GW_TOKEN_MAX));
	assert_false(hs_gw_token_ok(big, HS_GW_TOKEN_MAX + 1));
}

static int find(const char *hdr, char *out)
{
	return hs_gw_cookie_find(hdr, "refreshToken", out, HS_GW_TOKEN_MAX + 1);
}

static void test_validate__cookie_parsing(void **state)
{
	static char out[HS_GW_TOKEN_MAX + 1];
	assert_int_equal(find("refreshToken=valid-refresh-token", out), HS_GW_COOKIE_OK);
	assert_string_equal(out, "valid-refresh-token");
	assert_int_equal(find("a=1; refreshToken=tok2 ; b=2", out), HS_GW_COOKIE_OK);
	assert_string_equal(out, "tok2");
	assert_int_equal(find("refreshToken=\"quoted\"", out), HS_GW_COOKIE_OK);
	assert_string_equal(out, "quoted");
	assert_int_equal(find("refreshToken=a%2Bb%3D", out), HS_GW_COOKIE_OK); /* express encodes */
	assert_string_equal(out, "a+b=");
	assert_int_equal(find("refreshToken=first; refreshToken=second", out), HS_GW_COOKIE_OK);
	assert_string_equal(out, "first");
	assert_int_equal(find("xrefreshToken=nope; refreshTokenx=nope", out), HS_GW_COOKIE_ABSENT);
	assert_int_equal(find("", out), HS_GW_COOKIE_ABSENT);
	assert_int_equal(find("refreshToken=", out), HS_GW_COOKIE_ABSENT);
	assert_int_equal(find("refreshToken", out), HS_GW_COOKIE_ABSENT);
	assert_int_equal(hs_gw_cookie_find(NULL, "refreshToken", out, sizeof(out)), HS_GW_COOKIE_ABSENT);
}

static void test_validate__cookie_refuses_bad_values(void **state)
{
	static char out[HS_GW_TOKEN_MAX + 1];
	assert_int_equal(find("refreshToken=abc%0d%0aSet-Cookie:%20x=y", out), HS_GW_COOKIE_INVALID);
	assert_int_equal(find("refreshToken=abc\r\nx", out), HS_GW_COOKIE_INVALID);
	assert_int_equal(find("refreshToken=abc%00def", out), HS_GW_COOKIE_INVALID);
	assert_int_equal(find("refreshToken=a b", out), HS_GW_COOKIE_INVALID);
	assert_int_equal(find("refreshToken=<script>", out), HS_GW_COOKIE_INVALID);
	assert_int_equal(find("refreshToken=\x01\x02", out), HS_GW_COOKIE_INVALID);
	static char big[HS_GW_TOKEN_MAX + 64];
	memcpy(big, "refreshToken=", 13);
	memset(big + 13, 'a', HS_GW_TOKEN_MAX + 1);
	big[13 + HS_GW_TOKEN_MAX + 1] = '\0';
	assert_int_equal(find(big, out), HS_GW_COOKIE_INVALID);
	big[13 + HS_GW_TOKEN_MAX] = '\0';
	assert_int_equal(find(big, out), HS_GW_COOKIE_OK);
	char tiny[4];
	assert_int_equal(hs_gw_cookie_find("refreshToken=abcdef", "refreshToken", tiny, sizeof(tiny)),
			 HS_GW_COOKIE_INVALID);
}

/* The one hex-digit rule behind every percent-decoding in the gateway
 * (cookies, path segments, query strings): 0-9, a-f, A-F; nothing else,
 * whatever the byte (signed chars too). */
static void test_validate__hexval(void **state)
{
	for (int c = -128; c < 256; c++) {
		int want = c >= '0' && c <= '9'   ? c - '0'
			   : c >= 'a' && c <= 'f' ? c - 'a' + 10
			   : c >= 'A' && c <= 'F' ? c - 'A' + 10
						  : -1;
		assert_int_equal(hs_gw_hexval(c), want);
	}
	assert_int_equal(hs_gw_hexval((char)0xe6), -1);
	assert_int_equal(hs_gw_hexval('\0'), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate__email_shape),
		cmocka_unit_test(test_validate__email_refuses),
		cmocka_unit_test(test_validate__password_length),
		cmocka_unit_test(test_validate__header_values),
		cmocka_unit_test(test_validate__token_charset),
		cmocka_unit_test(test_validate__cookie_parsing),
		cmocka_unit_test(test_validate__cookie_refuses_bad_values),
		cmocka_unit_test(test_validate__hexval),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
