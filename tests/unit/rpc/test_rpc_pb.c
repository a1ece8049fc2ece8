/* Well-known-type conversions of the RPC core. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rpc_pb.h"

static void check(int64_t ms, int64_t sec, int32_t nanos)
{
	Google__Protobuf__Timestamp ts;
	hs_rpc_timestamp_set(&ts, ms);
	assert_int_equal(ts.seconds, sec);
	assert_int_equal(ts.nanos, nanos);
}

static void test_rpc_pb__timestamp_normalised(void **state)
{
	(void)state;
	check(0, 0, 0);
	check(1, 0, 1000000);
	check(1705314600123, 1705314600, 123000000);
	check(-1, -1, 999000000); /* 1969-12-31T23:59:59.999Z */
	check(-1000, -1, 0);
	check(-1500, -2, 500000000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rpc_pb__timestamp_normalised),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
