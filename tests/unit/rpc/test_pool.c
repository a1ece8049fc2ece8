/* Unit tests of the worker pool (server/rpc/pool.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

static atomic_int ran;

static void count_job(void *arg)
{
	(void)arg;
	atomic_fetch_add(&ran, 1);
}

static void test_pool__jobs_run(void **state)
{
	(void)state;
	atomic_store(&ran, 0);
	hs_pool *p = hs_pool_new(4, 256);
	assert_non_null(p);
	for (int i = 0; i < 200; i++)
		assert_true(hs_pool_submit(p, count_job, NULL));
	for (int i = 0; i < 15000 && atomic_load(&ran) < 200; i++)
		usleep(2000);
	assert_int_equal(atomic_load(&ran), 200);
	hs_pool_free(p);
}

static int order[64];
static atomic_int n_order;

static void order_job(void *arg)
{
	order[atomic_fetch_add(&n_order, 1)] = (int)(intptr_t)arg;
}

static void test_pool__fifo_with_one_thread(void **state)
{
	(void)state;
	atomic_store(&n_order, 0);
	hs_pool *p = hs_pool_new(1, 64);
	assert_non_null(p);
	for (int i = 0; i < 64; i++)
		assert_true(hs_pool_submit(p, order_job, (void *)(intptr_t)i));
	hs_pool_free(p);
	assert_int_equal(atomic_load(&n_order), 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(order[i], i);
}

/* A job that blocks until the gate opens. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open, gate_entered;

static void gate_job(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&gate_mu);
	gate_entered = true;
	pthread_cond_broadcast(&gate_cv);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	atomic_fetch_add(&ran, 1);
}

static void test_pool__submit_refuses_when_full(void **state)
{
	(void)state;
	atomic_store(&ran, 0);
	gate_open = gate_entered = false;
	hs_pool *p = hs_pool_new(1, 2);
	assert_non_null(p);
	assert_true(hs_pool_submit(p, gate_job, NULL));
	pthread_mutex_lock(&gate_mu);
	while (!gate_entered) /* the worker holds the job: the queue is empty */
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	assert_true(hs_pool_submit(p, count_job, NULL));
	assert_true(hs_pool_submit(p, count_job, NULL));
	assert_false(hs_pool_submit(p, count_job, NULL)); /* 2 waiting = full */
	pthread_mutex_lock(&gate_mu);
	gate_open = true;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
	hs_pool_free(p);
	assert_int_equal(atomic_load(&ran), 3); /* the refused job never ran */
}

static void slow_job(void *arg)
{
	(void)arg;
	usleep(10 * 1000);
	atomic_fetch_add(&ran, 1);
}

static void test_pool__free_drains_queued_jobs(void **state)
{
	(void)state;
	atomic_store(&ran, 0);
	hs_pool *p = hs_pool_new(1, 16);
	assert_non_null(p);
	for (int i = 0; i < 8; i++)
		assert_true(hs_pool_submit(p, slow_job, NULL));
	hs_pool_free(p); /* returns only once all 8 ran */
	assert_int_equal(atomic_load(&ran), 8);
}

static void test_pool__bad_arguments(void **state)
{
	(void)state;
	assert_null(hs_pool_new(0, 4));
	assert_null(hs_pool_new(4, 0));
	hs_pool_free(NULL);
}

/* --- fairness between keys ----------------------------------------------- */

typedef struct tagged {
	char key;
	int seq;
} tagged;

static tagged seen[64];
static atomic_int n_seen;

static void tagged_job(void *arg)
{
	seen[atomic_fetch_add(&n_seen, 1)] = *(tagged *)arg;
}

static void hold_worker(hs_pool *p)
{
	gate_open = gate_entered = false;
	assert_int_equal(hs_pool_submit_as(p, "holder", false, gate_job, NULL), HS_POOL_OK);
	pthread_mutex_lock(&gate_mu);
	while (!gate_entered)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
}

static void release_worker(void)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = true;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

static void test_pool__keys_take_turns(void **state)
{
	(void)state;
	atomic_store(&n_seen, 0);
	atomic_store(&ran, 0);
	hs_pool *p = hs_pool_new_fair(1, 64, 0, 0);
	assert_non_null(p);
	hold_worker(p);
	/* a queues 6 jobs, then b and c one each: b and c must not wait for
	 * all of a's (FIFO would run them 7th and 8th). */
	static tagged jobs[8];
	for (int i = 0; i < 6; i++) {
		jobs[i] = (tagged){ 'a', i };
		assert_int_equal(hs_pool_submit_as(p, "a", false, tagged_job, &jobs[i]), HS_POOL_OK);
	}
	jobs[6] = (tagged){ 'b', 0 };
	jobs[7] = (tagged){ 'c', 0 };
	assert_int_equal(hs_pool_submit_as(p, "b", false, tagged_job, &jobs[6]), HS_POOL_OK);
	assert_int_equal(hs_pool_submit_as(p, "c", false, tagged_job, &jobs[7]), HS_POOL_OK);
	assert_int_equal(hs_pool_key_load(p, "a"), 6);
	release_worker();
	hs_pool_free(p);
	assert_int_equal(atomic_load(&n_seen), 8);
	/* a0, b, c, then the rest of a in order */
	assert_int_equal(seen[0].key, 'a');
	assert_int_equal(seen[1].key, 'b');
	assert_int_equal(seen[2].key, 'c');
	for (int i = 3; i < 8; i++) {
		assert_int_equal(seen[i].key, 'a');
		assert_int_equal(seen[i].seq, i - 2);
	}
}

/* Jobs that record how many of their key run at once. */
static atomic_int running_x, max_running_x, running_y;

static void x_job(void *arg)
{
	(void)arg;
	int now = atomic_fetch_add(&running_x, 1) + 1;
	int prev = atomic_load(&max_running_x);
	while (now > prev && !atomic_compare_exchange_weak(&max_running_x, &prev, now)) {
	}
	/* Held until the test has seen y run: x's backlog is still there then,
	 * whatever the machine's load. */
	pthread_mutex_lock(&gate_mu);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	atomic_fetch_sub(&running_x, 1);
	atomic_fetch_add(&ran, 1);
}

static void y_job(void *arg)
{
	(void)arg;
	atomic_fetch_add(&running_y, 1);
	atomic_fetch_add(&ran, 1);
}

static void test_pool__user_running_bound(void **state)
{
	(void)state;
	atomic_store(&ran, 0);
	atomic_store(&running_x, 0);
	atomic_store(&max_running_x, 0);
	atomic_store(&running_y, 0);
	gate_open = false;
	hs_pool *p = hs_pool_new_fair(3, 64, 1, 0);
	assert_non_null(p);
	for (int i = 0; i < 5; i++)
		assert_int_equal(hs_pool_submit_as(p, "x", false, x_job, NULL), HS_POOL_OK);
	/* y is not behind x's backlog: two threads are free for it. */
	assert_int_equal(hs_pool_submit_as(p, "y", false, y_job, NULL), HS_POOL_OK);
	for (int i = 0; i < 15000 && atomic_load(&running_y) == 0; i++)
		usleep(2000);
	assert_int_equal(atomic_load(&running_y), 1);
	assert_int_equal(atomic_load(&ran), 1); /* only y: x's first job is held at the gate */
	pthread_mutex_lock(&gate_mu);
	gate_open = true;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
	hs_pool_free(p);
	assert_int_equal(atomic_load(&ran), 6);
	assert_int_equal(atomic_load(&max_running_x), 1);
}

static void test_pool__user_queued_bound(void **state)
{
	(void)state;
	atomic_store(&ran, 0);
	hs_pool *p = hs_pool_new_fair(1, 64, 0, 3);
	assert_non_null(p);
	hold_worker(p); /* "holder" has 1 of its 3 */
	assert_int_equal(hs_pool_submit_as(p, "holder", false, count_job, NULL), HS_POOL_OK);
	assert_int_equal(hs_pool_submit_as(p, "holder", false, count_job, NULL), HS_POOL_OK);
	assert_int_equal(hs_pool_submit_as(p, "holder", false, count_job, NULL), HS_POOL_USER_FULL);
	/* A continuation of admitted work is not refused; other keys and
	 * anonymous jobs are unaffected. */
	assert_int_equal(hs_pool_submit_as(p, "holder", true, count_job, NULL), HS_POOL_OK);
	assert_int_equal(hs_pool_submit_as(p, "other", false, count_job, NULL), HS_POOL_OK);
	assert_int_equal(hs_pool_submit_as(p, NULL, false, count_job, NULL), HS_POOL_OK);
	assert_int_equal(hs_pool_key_load(p, "holder"), 4);
	assert_int_equal(hs_pool_key_load(p, "nobody"), 0);
	release_worker();
	hs_pool_free(p);
	assert_int_equal(atomic_load(&ran), 6);
}

static void test_pool__lane_queue_bound_applies_to_all(void **state)
{
	(void)state;
	atomic_store(&ran, 0);
	hs_pool *p = hs_pool_new_fair(1, 2, 0, 0);
	assert_non_null(p);
	hold_worker(p);
	assert_int_equal(hs_pool_submit_as(p, "a", false, count_job, NULL), HS_POOL_OK);
	assert_int_equal(hs_pool_submit_as(p, "b", true, count_job, NULL), HS_POOL_OK);
	assert_int_equal(hs_pool_submit_as(p, "c", true, count_job, NULL), HS_POOL_FULL);
	assert_int_equal(hs_pool_key_load(p, "c"), 0); /* no flow left behind */
	release_worker();
	hs_pool_free(p);
	assert_int_equal(atomic_load(&ran), 3);
}

/* Many keys coming and going: flows are recycled, nothing leaks (ASan). */
static void test_pool__many_keys(void **state)
{
	(void)state;
	atomic_store(&ran, 0);
	hs_pool *p = hs_pool_new_fair(4, 1024, 1, 2);
	assert_non_null(p);
	char key[160];
	memset(key, 'k', sizeof(key) - 1); /* longer than a flow's key: truncated alike */
	key[sizeof(key) - 1] = '\0';
	int ok = 0;
	for (int i = 0; i < 1000; i++) {
		snprintf(key, 16, "user-%04d", i % 300);
		key[9] = 'k';
		if (hs_pool_submit_as(p, key, false, count_job, NULL) == HS_POOL_OK)
			ok++;
	}
	hs_pool_free(p);
	assert_int_equal(atomic_load(&ran), ok);
	assert_true(ok >= 600); /* at most 2 waiting per key at a time */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool__jobs_run),
		cmocka_unit_test(test_pool__fifo_with_one_thread),
		cmocka_unit_test(test_pool__submit_refuses_when_full),
		cmocka_unit_test(test_pool__free_drains_queued_jobs),
		cmocka_unit_test(test_pool__bad_arguments),
		cmocka_unit_test(test_pool__keys_take_turns),
		cmocka_unit_test(test_pool__user_running_bound),
		cmocka_unit_test(test_pool__user_queued_bound),
		cmocka_unit_test(test_pool__lane_queue_bound_applies_to_all),
		cmocka_unit_test(test_pool__many_keys),
	};
	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
