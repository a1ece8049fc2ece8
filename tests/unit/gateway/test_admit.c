/* gateway/admit.c: connections per client address, counted from accept to
 * close; trusted proxies exempt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "admit.h"

static void test_admit__limit_per_address(void **state)
{
	hs_gw_admit *a = NULL;
	assert_int_equal(hs_gw_admit_new(&a, 64, 3, NULL, NULL), HS_OK);
	for (int p = 1; p <= 3; p++)
		assert_true(hs_gw_admit_open(a, "203.0.113.66", p));
	/* the slow client's fourth is refused; everyone else is not */
	assert_false(hs_gw_admit_open(a, "203.0.113.66", 4));
	assert_true(hs_gw_admit_open(a, "198.51.100.7", 1));
	assert_int_equal(hs_gw_admit_count(a, "203.0.113.66"), 3);
	/* a close frees exactly that connection's place */
	hs_gw_admit_close(a, "203.0.113.66", 99); /* never counted: no-op */
	assert_false(hs_gw_admit_open(a, "203.0.113.66", 5));
	hs_gw_admit_close(a, "203.0.113.66", 2);
	assert_int_equal(hs_gw_admit_count(a, "203.0.113.66"), 2);
	assert_true(hs_gw_admit_open(a, "203.0.113.66", 6));
	hs_gw_admit_free(a);
}

static void test_admit__trusted_proxies_exempt_and_full_table(void **state)
{
	hs_gw_admit *a = NULL;
	hs_cidr_list proxies;
	assert_int_equal(hs_cidr_list_parse(&proxies, "10.0.0.0/8", "x", NULL), HS_OK);
	assert_int_equal(hs_gw_admit_new(&a, 4, 1, &proxies, NULL), HS_OK);
	for (int p = 1; p <= 100; p++)
		assert_true(hs_gw_admit_open(a, "10.1.2.3", p));
	assert_int_equal(hs_gw_admit_count(a, "10.1.2.3"), 0);
	/* a full table admits uncounted (civetweb bounds it anyway) */
	const char *ips[] = { "1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5" };
	for (size_t i = 0; i < 5; i++)
		assert_true(hs_gw_admit_open(a, ips[i], 1));
	assert_int_equal(hs_gw_admit_count(a, "1.1.1.5"), 0);
	hs_gw_admit_free(a);
	a = NULL;
	assert_int_equal(hs_gw_admit_new(&a, 0, 1, NULL, NULL), HS_INVALID);
	assert_null(a);
	hs_gw_admit_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_admit__limit_per_address),
		cmocka_unit_test(test_admit__trusted_proxies_exempt_and_full_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
