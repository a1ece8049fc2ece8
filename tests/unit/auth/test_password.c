/* argon2id hashing, random tokens and token hashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "password.h"

static void test_password__hash_verify(void **s)
{
	char *h = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_password_hash("correct horse", &h, &err), HS_OK);
	assert_true(strncmp(h, "$argon2id$", 10) == 0);
	assert_int_equal(hs_password_verify(h, "correct horse", NULL), HS_OK);
	assert_int_equal(hs_password_verify(h, "correct horsf", &err), HS_UNAUTH);
	assert_int_equal(hs_password_verify(h, "", NULL), HS_UNAUTH);
	assert_int_equal(hs_password_verify("not a hash", "x", NULL), HS_UNAUTH);
	assert_int_equal(hs_password_verify(NULL, "x", NULL), HS_UNAUTH);
	assert_false(hs_password_needs_rehash(h));
	assert_true(hs_password_needs_rehash("$argon2i$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaA"));
	assert_true(hs_password_needs_rehash("garbage"));
	hs_password_verify_dummy("whatever");
	hs_password_verify_dummy(NULL);
	free(h);
}

static void test_password__bad_input(void **s)
{
	char *h = NULL, *big = malloc(HS_PASSWORD_MAX_LEN + 2);
	memset(big, 'a', HS_PASSWORD_MAX_LEN + 1);
	big[HS_PASSWORD_MAX_LEN + 1] = '\0';
	assert_int_equal(hs_password_hash("", &h, NULL), HS_INVALID);
	assert_int_equal(hs_password_hash(NULL, &h, NULL), HS_INVALID);
	assert_int_equal(hs_password_hash(big, &h, NULL), HS_INVALID);
	assert_null(h);
	free(big);
}

static void test_password__random_tokens(void **s)
{
	char *a = NULL, *b = NULL, *p = NULL;
	assert_int_equal(hs_password_random_token(&a, NULL), HS_OK);
	assert_int_equal(hs_password_random_token(&b, NULL), HS_OK);
	assert_int_equal(strlen(a), 43);
	assert_string_not_equal(a, b);
	assert_null(strpbrk(a, "+/="));
	assert_int_equal(hs_password_generate(&p, NULL), HS_OK);
	assert_int_equal(strlen(p), 24);
	free(a);
	free(b);
	free(p);
}

static void test_password__token_sha256(void **s)
{
	char hex[HS_PASSWORD_SHA256_HEX];
	hs_password_token_sha256("abc", hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_password__hash_verify),
		cmocka_unit_test(test_password__bad_input),
		cmocka_unit_test(test_password__random_tokens),
		cmocka_unit_test(test_password__token_sha256),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
