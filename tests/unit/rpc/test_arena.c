/* Unit tests of the per-call bump allocator (server/rpc/arena.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "arena.h"

static _Alignas(16) char block[256];

static bool in_block(const void *p)
{
	return (const char *)p >= block && (const char *)p < block + sizeof(block);
}

static void test_arena__alignment(void **state)
{
	(void)state;
	hs_arena a;
	hs_arena_init(&a, block, sizeof(block));
	static const size_t sizes[] = { 1, 3, 7, 16, 17, 31, 100, 5000, 1, 9000, 2 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = hs_arena_alloc(&a, sizes[i]);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % 16, 0);
	}
	hs_arena_reset(&a);
}

static void test_arena__zero_size_is_valid(void **state)
{
	(void)state;
	hs_arena a;
	hs_arena_init(&a, block, sizeof(block));
	void *p = hs_arena_alloc(&a, 0), *q = hs_arena_alloc(&a, 0);
	assert_non_null(p);
	assert_non_null(q);
	assert_ptr_not_equal(p, q);
	hs_arena_reset(&a);
}

static void test_arena__zeroing(void **state)
{
	(void)state;
	hs_arena a;
	memset(block, 0xAA, sizeof(block));
	hs_arena_init(&a, block, sizeof(block));
	unsigned char *p = hs_arena_alloc(&a, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(p[i], 0);
	memset(p, 0xFF, 100);
	unsigned char *big = hs_arena_alloc(&a, 4000); /* overflow block */
	for (int i = 0; i < 4000; i++)
		assert_int_equal(big[i], 0);
	memset(big, 0xFF, 4000);
	hs_arena_reset(&a);
	/* recycled memory comes back zeroed */
	p = hs_arena_alloc(&a, 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(p[i], 0);
	hs_arena_reset(&a);
}

static void test_arena__overflow_blocks(void **state)
{
	(void)state;
	hs_arena a;
	hs_arena_init(&a, block, sizeof(block));
	void *p1 = hs_arena_alloc(&a, 200);
	assert_true(in_block(p1));
	void *p2 = hs_arena_alloc(&a, 100); /* does not fit the 56 bytes left */
	assert_non_null(p2);
	assert_false(in_block(p2));
	void *p3 = hs_arena_alloc(&a, 32); /* the inline block still has room */
	assert_true(in_block(p3));
	void *p4 = hs_arena_alloc(&a, 100); /* same overflow block as p2 */
	assert_false(in_block(p4));
	assert_true((char *)p4 >= (char *)p2 + 112 && (char *)p4 < (char *)p2 + 8192);
	void *huge = hs_arena_alloc(&a, 100000); /* bigger than a standard block */
	assert_non_null(huge);
	memset(huge, 1, 100000);
	/* many small allocations spanning several overflow blocks */
	for (int i = 0; i < 1000; i++) {
		char *q = hs_arena_alloc(&a, 48);
		assert_non_null(q);
		memset(q, 2, 48);
	}
	hs_arena_reset(&a); /* frees them all: ASan reports any leak */
}

static void test_arena__reset_reuses_inline_block(void **state)
{
	(void)state;
	hs_arena a;
	hs_arena_init(&a, block, sizeof(block));
	void *first = hs_arena_alloc(&a, 64);
	hs_arena_alloc(&a, 1000);
	hs_arena_reset(&a);
	assert_int_equal(a.used, 0);
	assert_null(a.extra);
	assert_ptr_equal(hs_arena_alloc(&a, 64), first);
	hs_arena_reset(&a);
	hs_arena_reset(&a); /* idempotent */
}

static void test_arena__absurd_size_fails(void **state)
{
	(void)state;
	hs_arena a;
	hs_arena_init(&a, block, sizeof(block));
	assert_null(hs_arena_alloc(&a, SIZE_MAX));
	assert_null(hs_arena_alloc(&a, SIZE_MAX - 8));
	assert_non_null(hs_arena_alloc(&a, 8)); /* still usable */
	hs_arena_reset(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_arena__alignment),
		cmocka_unit_test(test_arena__zero_size_is_valid),
		cmocka_unit_test(test_arena__zeroing),
		cmocka_unit_test(test_arena__overflow_blocks),
		cmocka_unit_test(test_arena__reset_reuses_inline_block),
		cmocka_unit_test(test_arena__absurd_size_fails),
	};
	return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
