/* argon2id hashing, random tokens and token hashes. */
#include <pthread.h>
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
	assert_int_equal(hs_password_verify_dummy("whatever", NULL), HS_UNAUTH);
	assert_int_equal(hs_password_verify_dummy(NULL, &err), HS_UNAUTH);
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

/* The hash gate: never more than max argon2id computations at once; with
 * no wait the excess is HS_LIMIT, with a long wait everyone gets through. */
#define GATE_THREADS 6

static int gate_rc[GATE_THREADS];

static void *gate_worker(void *arg)
{
	long i = (long)(intptr_t)arg;
	char *h = NULL;
	gate_rc[i] = hs_password_hash("gate test password", &h, NULL);
	free(h);
	return NULL;
}

static void run_gate(unsigned max, int wait_ms, int *limited, unsigned *peak)
{
	pthread_t th[GATE_THREADS];
	unsigned running = 0;
	assert_int_equal(hs_password_gate_config(max, wait_ms, NULL), HS_OK);
	for (long i = 0; i < GATE_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, gate_worker, (void *)(intptr_t)i), 0);
	*limited = 0;
	for (int i = 0; i < GATE_THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_true(gate_rc[i] == HS_OK || gate_rc[i] == HS_LIMIT);
		*limited += gate_rc[i] == HS_LIMIT;
	}
	hs_password_gate_stats(&running, peak);
	assert_int_equal(running, 0);
}

static void test_password__gate_bounds_concurrency(void **s)
{
	int limited;
	unsigned peak;
	hs_error err = { 0 };
	assert_int_equal(hs_password_gate_config(0, 10, &err), HS_INVALID);
	assert_int_equal(hs_password_gate_config(2, -1, NULL), HS_INVALID);
	run_gate(2, 60000, &limited, &peak);
	assert_int_equal(limited, 0);
	assert_true(peak <= 2);
	/* no waiting: six at once through a gate of one, most are refused */
	run_gate(1, 0, &limited, &peak);
	assert_true(peak <= 2); /* the peak of both runs */
	assert_true(limited >= 1);
	char *h = NULL;
	assert_int_equal(hs_password_gate_config(HS_PASSWORD_GATE_DEFAULT,
						 HS_PASSWORD_GATE_WAIT_DEFAULT_MS, NULL),
			 HS_OK);
	assert_int_equal(hs_password_hash("after the storm", &h, NULL), HS_OK);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_password__hash_verify),
		cmocka_unit_test(test_password__bad_input),
		cmocka_unit_test(test_password__random_tokens),
		cmocka_unit_test(test_password__token_sha256),
		cmocka_unit_test(test_password__gate_bounds_concurrency),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
