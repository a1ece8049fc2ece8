/* Well-known-type conversions for service adapters. */
#include "rpc_pb.h"

void hs_rpc_timestamp_set(Google__Protobuf__Timestamp *ts, int64_t ms)
{
	google__protobuf__timestamp__init(ts);
	int64_t sec = ms / 1000, rem = ms % 1000;
	if (rem < 0) { /* floor, so nanos stays in [0, 1e9) */
		sec--;
		rem += 1000;
	}
	ts->seconds = sec;
	ts->nanos = (int32_t)(rem * 1000000);
}

Google__Protobuf__Timestamp *hs_rpc_timestamp(hs_rpc_call *call, int64_t ms)
{
	Google__Protobuf__Timestamp *ts = hs_rpc_call_alloc(call, sizeof(*ts));
	if (ts != NULL)
		hs_rpc_timestamp_set(ts, ms);
	return ts;
}
