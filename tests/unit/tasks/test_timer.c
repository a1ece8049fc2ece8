/* Unit tests for the timer heap (server/tasks/timer.c): ordering, re-arm,
 * cancel, and 100,000 entries against a reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "timer.h"

static void check_heap(const hs_timer_heap *h)
{
	for (size_t i = 0; i < h->n; i++) {
		assert_int_equal(h->v[i]->index, i);
		if (i > 0)
			assert_true(h->v[(i - 1) / 2]->deadline <= h->v[i]->deadline);
	}
}

static void test_timer__pops_in_deadline_order(void **state)
{
	(void)state;
	hs_timer_heap h;
	hs_timer_heap_init(&h);
	hs_timer_node n[8];
	int64_t d[8] = { 50, 10, 40, 30, 20, 80, 70, 60 };
	for (int i = 0; i < 8; i++) {
		hs_timer_node_init(&n[i]);
		assert_int_equal(hs_timer_arm(&h, &n[i], d[i]), HS_OK);
		check_heap(&h);
	}
	assert_ptr_equal(hs_timer_peek(&h), &n[1]);
	assert_null(hs_timer_pop_expired(&h, 9));
	int64_t last = 0;
	for (int i = 0; i < 8; i++) {
		hs_timer_node *x = hs_timer_pop_expired(&h, 1000);
		assert_non_null(x);
		assert_false(hs_timer_armed(x));
		assert_true(x->deadline >= last);
		last = x->deadline;
		check_heap(&h);
	}
	assert_null(hs_timer_pop_expired(&h, 1000));
	assert_null(hs_timer_peek(&h));
	hs_timer_heap_dispose(&h);
}

static void test_timer__rearm_moves_both_ways(void **state)
{
	(void)state;
	hs_timer_heap h;
	hs_timer_heap_init(&h);
	hs_timer_node a, b, c;
	hs_timer_node_init(&a);
	hs_timer_node_init(&b);
	hs_timer_node_init(&c);
	hs_timer_arm(&h, &a, 10);
	hs_timer_arm(&h, &b, 20);
	hs_timer_arm(&h, &c, 30);
	assert_int_equal(hs_timer_count(&h), 3);
	hs_timer_arm(&h, &a, 100); /* later: a heartbeat */
	check_heap(&h);
	assert_ptr_equal(hs_timer_peek(&h), &b);
	hs_timer_arm(&h, &c, 5); /* earlier */
	check_heap(&h);
	assert_ptr_equal(hs_timer_peek(&h), &c);
	assert_int_equal(hs_timer_count(&h), 3); /* re-arm never duplicates */
	hs_timer_arm(&h, &c, 5);                 /* same deadline: no-op */
	check_heap(&h);
	assert_ptr_equal(hs_timer_pop_expired(&h, 50), &c);
	assert_ptr_equal(hs_timer_pop_expired(&h, 50), &b);
	assert_null(hs_timer_pop_expired(&h, 50));
	assert_ptr_equal(hs_timer_pop_expired(&h, 100), &a);
	hs_timer_heap_dispose(&h);
}

static void test_timer__cancel_anywhere(void **state)
{
	(void)state;
	hs_timer_heap h;
	hs_timer_heap_init(&h);
	hs_timer_node n[100];
	for (int i = 0; i < 100; i++) {
		hs_timer_node_init(&n[i]);
		hs_timer_arm(&h, &n[i], (i * 37) % 100);
	}
	hs_timer_node unarmed;
	hs_timer_node_init(&unarmed);
	hs_timer_cancel(&h, &unarmed); /* no-op */
	for (int i = 0; i < 100; i += 3) {
		hs_timer_cancel(&h, &n[i]);
		assert_false(hs_timer_armed(&n[i]));
		hs_timer_cancel(&h, &n[i]); /* twice: no-op */
		check_heap(&h);
	}
	assert_int_equal(hs_timer_count(&h), 100 - 34);
	int64_t last = -1;
	hs_timer_node *x;
	size_t popped = 0;
	while ((x = hs_timer_pop_expired(&h, INT64_MAX)) != NULL) {
		assert_true(x->deadline >= last);
		assert_true((x - n) % 3 != 0);
		last = x->deadline;
		popped++;
	}
	assert_int_equal(popped, 66);
	hs_timer_heap_dispose(&h);
}

static void test_timer__hundred_thousand_entries(void **state)
{
	(void)state;
	enum { N = 100000 };
	hs_timer_heap h;
	hs_timer_heap_init(&h);
	hs_timer_node *n = calloc(N, sizeof(*n));
	assert_non_null(n);
	srand(42);
	for (int i = 0; i < N; i++) {
		hs_timer_node_init(&n[i]);
		assert_int_equal(hs_timer_arm(&h, &n[i], rand() % 1000000), HS_OK);
	}
	/* Heartbeats: re-arm half of them later, cancel a tenth. */
	for (int i = 0; i < N; i += 2)
		hs_timer_arm(&h, &n[i], 1000000 + rand() % 1000000);
	for (int i = 1; i < N; i += 10)
		hs_timer_cancel(&h, &n[i]);
	check_heap(&h);
	assert_int_equal(hs_timer_count(&h), N - N / 10);
	/* Everything up to 1,000,000 is exactly the odd, uncancelled half. */
	size_t early = 0;
	int64_t last = -1;
	hs_timer_node *x;
	while ((x = hs_timer_pop_expired(&h, 999999)) != NULL) {
		assert_true(x->deadline >= last);
		assert_true((x - n) % 2 == 1 && (x - n) % 10 != 1);
		last = x->deadline;
		early++;
	}
	assert_int_equal(early, N / 2 - N / 10);
	assert_int_equal(hs_timer_count(&h), N / 2);
	hs_timer_heap_dispose(&h);
	for (int i = 0; i < N; i++)
		assert_false(hs_timer_armed(&n[i]));
	free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timer__pops_in_deadline_order),
		cmocka_unit_test(test_timer__rearm_moves_both_ways),
		cmocka_unit_test(test_timer__cancel_anywhere),
		cmocka_unit_test(test_timer__hundred_thousand_entries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
