/* gRPC status -> hs_code / HTTP / name: the client side's only mapping. Pure
 * (no gRPC header) so it is unit-tested without a channel. Numbers are
 * grpc_status_code values, part of the gRPC wire protocol. */
#include "client.h"

hs_code hs_client_code_from_grpc(int grpc_code)
{
	switch (grpc_code) {
	case 0: return HS_OK;
	case 1: return HS_CANCELLED;
	case 3: return HS_INVALID;
	case 4: return HS_TIMEOUT;
	case 5: return HS_NOT_FOUND;
	case 6: return HS_EXISTS;
	case 7: return HS_DENIED;
	case 8: return HS_LIMIT;
	case 9: return HS_CONFLICT;
	case 10: return HS_ABORTED;
	case 11: return HS_INVALID; /* OUT_OF_RANGE */
	case 12: return HS_UNIMPLEMENTED;
	case 14: return HS_UNAVAILABLE;
	case 16: return HS_UNAUTH;
	default: return HS_INTERNAL; /* UNKNOWN, INTERNAL, DATA_LOSS, junk */
	}
}

int hs_client_grpc_to_http(int grpc_code)
{
	return hs_code_to_http(hs_client_code_from_grpc(grpc_code));
}

const char *hs_client_grpc_code_name(int grpc_code)
{
	static const char *const names[] = {
		"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
		"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
		"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
	};
	if (grpc_code < 0 || grpc_code >= (int)(sizeof(names) / sizeof(names[0])))
		return "UNKNOWN";
	return names[grpc_code];
}
