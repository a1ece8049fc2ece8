/* Unit tests of the worker pool (server/rpc/pool.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
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
	for (int i = 0; i < 500 && atomic_load(&ran) < 200; i++)
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool__jobs_run),
		cmocka_unit_test(test_pool__fifo_with_one_thread),
		cmocka_unit_test(test_pool__submit_refuses_when_full),
		cmocka_unit_test(test_pool__free_drains_queued_jobs),
		cmocka_unit_test(test_pool__bad_arguments),
	};
	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
