/* Login throttling: limits per account and per peer, windows, eviction. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "throttle.h"

#define T0 1700000000LL

static hs_throttle *mk(int amax, int aw, int pmax, int pw, size_t cap)
{
	hs_throttle_config c = { amax, aw, pmax, pw, cap };
	hs_throttle *t = NULL;
	assert_int_equal(hs_throttle_new(&t, &c, NULL), HS_OK);
	return t;
}

static void test_throttle__account_limit_and_window(void **s)
{
	hs_throttle *t = mk(5, 900, 0, 60, 100);
	hs_error err = { 0 };
	for (int i = 0; i < 5; i++) {
		assert_int_equal(hs_throttle_check(t, "Bob@Example.com", NULL, T0 + i, NULL), HS_OK);
		hs_throttle_failure(t, "bob@example.com", NULL, T0 + i);
	}
	assert_int_equal(hs_throttle_check(t, "BOB@example.com", NULL, T0 + 10, &err), HS_LIMIT);
	assert_int_equal(err.code, HS_LIMIT);
	assert_int_equal(hs_throttle_check(t, "carol@example.com", NULL, T0 + 10, NULL), HS_OK);
	/* the window starts at the first failure */
	assert_int_equal(hs_throttle_check(t, "bob@example.com", NULL, T0 + 899, NULL), HS_LIMIT);
	assert_int_equal(hs_throttle_check(t, "bob@example.com", NULL, T0 + 900, NULL), HS_OK);
	hs_throttle_free(t);
}

static void test_throttle__success_clears_account(void **s)
{
	hs_throttle *t = mk(3, 900, 0, 60, 100);
	hs_throttle_failure(t, "a@x", NULL, T0);
	hs_throttle_failure(t, "a@x", NULL, T0);
	hs_throttle_success(t, "a@x", NULL);
	hs_throttle_failure(t, "a@x", NULL, T0);
	hs_throttle_failure(t, "a@x", NULL, T0);
	assert_int_equal(hs_throttle_check(t, "a@x", NULL, T0, NULL), HS_OK);
	hs_throttle_failure(t, "a@x", NULL, T0);
	assert_int_equal(hs_throttle_check(t, "a@x", NULL, T0, NULL), HS_LIMIT);
	hs_throttle_free(t);
}

static void test_throttle__peer_limit_ignores_port(void **s)
{
	hs_throttle *t = mk(0, 900, 20, 60, 1000);
	char email[32], peer[64];
	for (int i = 0; i < 20; i++) {
		snprintf(email, sizeof(email), "u%d@x", i);
		snprintf(peer, sizeof(peer), "ipv4:10.0.0.1:%d", 40000 + i);
		hs_throttle_failure(t, email, peer, T0);
	}
	assert_int_equal(hs_throttle_check(t, "new@x", "ipv4:10.0.0.1:1", T0 + 1, NULL), HS_LIMIT);
	assert_int_equal(hs_throttle_check(t, "new@x", "ipv4:10.0.0.2:1", T0 + 1, NULL), HS_OK);
	assert_int_equal(hs_throttle_check(t, "new@x", "ipv4:10.0.0.1:1", T0 + 60, NULL), HS_OK);
	for (int i = 0; i < 20; i++)
		hs_throttle_failure(t, NULL, "ipv6:[::1]:1234", T0);
	assert_int_equal(hs_throttle_check(t, NULL, "ipv6:[::1]:9", T0, NULL), HS_LIMIT);
	hs_throttle_free(t);
}

static void test_throttle__bounded_memory(void **s)
{
	hs_throttle *t = mk(5, 900, 5, 60, 64);
	char email[32];
	for (int i = 0; i < 5; i++)
		hs_throttle_failure(t, "victim@x", NULL, T0);
	for (int i = 0; i < 10000; i++) {
		snprintf(email, sizeof(email), "flood%d@x", i);
		hs_throttle_failure(t, email, NULL, T0);
		assert_true(hs_throttle_size(t) <= 64);
	}
	assert_int_equal(hs_throttle_size(t), 64);
	/* the LRU victim was evicted: bounded memory wins over memory of it */
	assert_int_equal(hs_throttle_check(t, "victim@x", NULL, T0, NULL), HS_OK);
	hs_throttle_free(t);
}

static void test_throttle__bad_config(void **s)
{
	hs_throttle_config c = { -1, 900, 20, 60, 100 };
	hs_throttle *t = NULL;
	assert_int_equal(hs_throttle_new(&t, &c, NULL), HS_INVALID);
	c.account_max = 5;
	c.capacity = 0;
	assert_int_equal(hs_throttle_new(&t, &c, NULL), HS_INVALID);
	assert_null(t);
	assert_int_equal(hs_throttle_new(&t, NULL, NULL), HS_OK); /* defaults */
	hs_throttle_free(t);
	hs_throttle_free(NULL);
}

static hs_throttle *shared;

static void *worker(void *arg)
{
	char email[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(email, sizeof(email), "w%ld-%d@x", (long)(intptr_t)arg, i % 50);
		hs_throttle_failure(shared, email, "ipv4:1.1.1.1:1", T0);
		(void)hs_throttle_check(shared, email, "ipv4:1.1.1.1:2", T0, NULL);
		if (i % 7 == 0)
			hs_throttle_success(shared, email, NULL);
	}
	return NULL;
}

static void test_throttle__threads(void **s)
{
	pthread_t th[4];
	shared = mk(5, 900, 20, 60, 128);
	for (long i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	assert_true(hs_throttle_size(shared) <= 128);
	hs_throttle_free(shared);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_throttle__account_limit_and_window),
		cmocka_unit_test(test_throttle__success_clears_account),
		cmocka_unit_test(test_throttle__peer_limit_ignores_port),
		cmocka_unit_test(test_throttle__bounded_memory),
		cmocka_unit_test(test_throttle__bad_config),
		cmocka_unit_test(test_throttle__threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
