/* Login throttling: per (account, address) and per address, growing delays,
 * no lockout of an account by a third party, forgetting, eviction. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "throttle.h"

#define T0 1700000000000LL /* ms */
#define ADMIN "admin@example.com"
#define EVIL "203.0.113.66"
#define HOME "198.51.100.7"

static hs_throttle *mk(int pair_free, int address_free, size_t cap)
{
	hs_throttle_config c = { pair_free, address_free, 1000, 60000, 3600, cap };
	hs_throttle *t = NULL;
	assert_int_equal(hs_throttle_new(&t, &c, NULL), HS_OK);
	return t;
}

/* The attack of issue 11: wrong passwords for the admin from one address
 * never refuse the admin's own address. */
static void test_throttle__third_party_cannot_lock_out(void **s)
{
	hs_throttle *t = mk(5, 0, 100);
	hs_error err = { 0 };
	for (int i = 0; i < 50; i++)
		hs_throttle_failure(t, ADMIN, EVIL, T0 + i);
	assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, T0 + 60, NULL, &err), HS_LIMIT);
	assert_string_equal(err.msg, "Too many failed login attempts, try again later");
	assert_int_equal(hs_throttle_check(t, ADMIN, HOME, T0 + 60, NULL, NULL), HS_OK);
	/* nor another account from the attacker's address */
	assert_int_equal(hs_throttle_check(t, "carol@example.com", EVIL, T0 + 60, NULL, NULL), HS_OK);
	hs_throttle_free(t);
}

static void test_throttle__delays_grow_and_cap(void **s)
{
	hs_throttle *t = mk(3, 0, 100);
	long long retry = -1, now = T0;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, now, &retry, NULL), HS_OK);
		hs_throttle_failure(t, ADMIN, EVIL, now);
	}
	assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, now, &retry, NULL), HS_OK);
	assert_int_equal(retry, 0);
	/* the 3rd failure opens 1 s, then 2, 4, 8 ... up to the 60 s cap */
	long long want[] = { 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000 };
	for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
		hs_throttle_failure(t, ADMIN, EVIL, now);
		assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, now, &retry, NULL), HS_LIMIT);
		assert_int_equal(retry, want[k]);
		assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, now + want[k] - 1, NULL, NULL),
				 HS_LIMIT);
		now += want[k];
		assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, now, &retry, NULL), HS_OK);
	}
	hs_throttle_free(t);
}

static void test_throttle__success_clears_the_pair_only(void **s)
{
	hs_throttle *t = mk(2, 4, 100);
	hs_throttle_failure(t, ADMIN, EVIL, T0);
	hs_throttle_failure(t, ADMIN, EVIL, T0);
	assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, T0, NULL, NULL), HS_LIMIT);
	hs_throttle_success(t, ADMIN, EVIL);
	assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, T0, NULL, NULL), HS_OK);
	/* the address keeps its count: logging in to one's own account between
	 * guesses does not reset it */
	hs_throttle_failure(t, "b@x", EVIL, T0);
	hs_throttle_success(t, "mine@x", EVIL);
	hs_throttle_failure(t, "c@x", EVIL, T0);
	assert_int_equal(hs_throttle_check(t, "d@x", EVIL, T0, NULL, NULL), HS_LIMIT);
	assert_int_equal(hs_throttle_check(t, "d@x", HOME, T0, NULL, NULL), HS_OK);
	hs_throttle_free(t);
}

static void test_throttle__address_spraying_many_accounts(void **s)
{
	hs_throttle *t = mk(5, 10, 1000);
	char email[32];
	for (int i = 0; i < 10; i++) {
		snprintf(email, sizeof(email), "u%d@x", i);
		assert_int_equal(hs_throttle_check(t, email, EVIL, T0, NULL, NULL), HS_OK);
		hs_throttle_failure(t, email, EVIL, T0);
	}
	assert_int_equal(hs_throttle_check(t, "fresh@x", EVIL, T0, NULL, NULL), HS_LIMIT);
	assert_int_equal(hs_throttle_check(t, "fresh@x", HOME, T0, NULL, NULL), HS_OK);
	hs_throttle_free(t);
}

static void test_throttle__forgets_after_quiet_time(void **s)
{
	hs_throttle *t = mk(1, 0, 100);
	for (int i = 0; i < 20; i++)
		hs_throttle_failure(t, ADMIN, EVIL, T0);
	assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, T0 + 59999, NULL, NULL), HS_LIMIT);
	assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, T0 + 3600 * 1000LL, NULL, NULL), HS_OK);
	assert_int_equal(hs_throttle_size(t), 0);
	/* and starts over: one failure, the first delay again */
	long long retry = 0;
	hs_throttle_failure(t, ADMIN, EVIL, T0 + 3600 * 1000LL);
	assert_int_equal(hs_throttle_check(t, ADMIN, EVIL, T0 + 3600 * 1000LL, &retry, NULL), HS_LIMIT);
	assert_int_equal(retry, 1000);
	hs_throttle_free(t);
}

static void test_throttle__bounded_memory(void **s)
{
	hs_throttle *t = mk(5, 0, 64);
	char email[32];
	for (int i = 0; i < 10000; i++) {
		snprintf(email, sizeof(email), "flood%d@x", i);
		hs_throttle_failure(t, email, EVIL, T0);
		assert_true(hs_throttle_size(t) <= 64);
	}
	assert_int_equal(hs_throttle_size(t), 64);
	/* a very long account name is cut, not overflowed */
	char big[600];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	hs_throttle_failure(t, big, EVIL, T0);
	hs_throttle_free(t);
}

/* Evictions unlink entries from the heads and the middle of hash chains
 * (capacity 9: 16 buckets for 200 keys): every counter still held is found
 * (the pairs found are exactly the table's size minus the address's). */
static void test_throttle__eviction_keeps_chains_whole(void **s)
{
	hs_throttle *t = mk(1, 1000000, 9);
	char email[32];
	for (int i = 0; i < 200; i++) {
		snprintf(email, sizeof(email), "k%d@x", i);
		hs_throttle_failure(t, email, EVIL, T0);
		assert_int_equal(hs_throttle_check(t, email, EVIL, T0, NULL, NULL), HS_LIMIT);
		size_t held = hs_throttle_size(t), found = 0;
		assert_true(held <= 9);
		for (int j = 0; j <= i; j++) {
			snprintf(email, sizeof(email), "k%d@x", j);
			found += hs_throttle_check(t, email, EVIL, T0, NULL, NULL) == HS_LIMIT;
		}
		assert_int_equal(found, held - 1);
	}
	hs_throttle_free(t);
}

static void test_throttle__bad_config(void **s)
{
	hs_throttle_config c = { -1, 20, 1000, 60000, 3600, 100 };
	hs_throttle *t = NULL;
	assert_int_equal(hs_throttle_new(&t, &c, NULL), HS_INVALID);
	c.pair_free = 5;
	c.max_delay_ms = 10; /* below the base */
	assert_int_equal(hs_throttle_new(&t, &c, NULL), HS_INVALID);
	c.max_delay_ms = 60000;
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
		hs_throttle_failure(shared, email, "1.1.1.1", T0);
		(void)hs_throttle_check(shared, email, "1.1.1.2", T0, NULL, NULL);
		if (i % 7 == 0)
			hs_throttle_success(shared, email, "1.1.1.1");
	}
	return NULL;
}

static void test_throttle__threads(void **s)
{
	pthread_t th[4];
	shared = mk(5, 20, 128);
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
		cmocka_unit_test(test_throttle__third_party_cannot_lock_out),
		cmocka_unit_test(test_throttle__delays_grow_and_cap),
		cmocka_unit_test(test_throttle__success_clears_the_pair_only),
		cmocka_unit_test(test_throttle__address_spraying_many_accounts),
		cmocka_unit_test(test_throttle__forgets_after_quiet_time),
		cmocka_unit_test(test_throttle__bounded_memory),
		cmocka_unit_test(test_throttle__eviction_keeps_chains_whole),
		cmocka_unit_test(test_throttle__bad_config),
		cmocka_unit_test(test_throttle__threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
