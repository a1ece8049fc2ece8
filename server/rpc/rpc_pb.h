/* Small conversions every service adapter needs between module values and
 * well-known protobuf types, allocated in the call arena. */
#ifndef HS_RPC_RPC_PB_H
#define HS_RPC_RPC_PB_H

#include <stdint.h>

#include "google/protobuf/timestamp.pb-c.h"
#include "rpc.h"

/* ms since the Unix epoch -> Timestamp, normalised (0 <= nanos < 1e9, also
 * for times before 1970). */
void hs_rpc_timestamp_set(Google__Protobuf__Timestamp *ts, int64_t ms);

/* The same, allocated in the call arena; NULL only when out of memory. */
Google__Protobuf__Timestamp *hs_rpc_timestamp(hs_rpc_call *call, int64_t ms);

#endif
