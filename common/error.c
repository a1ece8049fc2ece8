/* Error codes and their wire mappings (the only place they are mapped). */
#include "error.h"

#include <stdio.h>
#include <string.h>

#include "utf8.h"

hs_code hs_error_set(hs_error *err, hs_code code, const char *fmt, ...)
{
	if (err == NULL || code == HS_OK)
		return code;
	if (err->code == code && err->msg[0] != '\0')
		return code;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		err->msg[0] = '\0';
	hs_utf8_repair(err->msg); /* a message is text: never half a character */
	err->code = code;
	err->reason[0] = '\0';
	err->where[0] = '\0';
	return code;
}

void hs_error_clear(hs_error *err)
{
	if (err == NULL)
		return;
	err->code = HS_OK;
	err->msg[0] = '\0';
	err->reason[0] = '\0';
	err->where[0] = '\0';
}

int hs_error_reason_ok(const char *s, size_t n)
{
	if (s == NULL || n == 0 || n >= HS_ERROR_REASON_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

void hs_error_set_reason(hs_error *err, const char *reason)
{
	if (err != NULL && reason != NULL && hs_error_reason_ok(reason, strlen(reason)))
		memcpy(err->reason, reason, strlen(reason) + 1);
}

void hs_error_set_where(hs_error *err, const char *address)
{
	if (err == NULL || address == NULL)
		return;
	size_t n = strlen(address);
	if (n >= sizeof(err->where))
		return;
	for (size_t i = 0; i < n; i++)
		if (address[i] <= ' ' || address[i] > '~')
			return;
	memcpy(err->where, address, n + 1);
}

const char *hs_code_name(hs_code code)
{
	switch (code) {
	case HS_OK: return "OK";
	case HS_INVALID: return "INVALID";
	case HS_NOT_FOUND: return "NOT_FOUND";
	case HS_EXISTS: return "EXISTS";
	case HS_CONFLICT: return "CONFLICT";
	case HS_DENIED: return "DENIED";
	case HS_UNAUTH: return "UNAUTH";
	case HS_UNAVAILABLE: return "UNAVAILABLE";
	case HS_TIMEOUT: return "TIMEOUT";
	case HS_LIMIT: return "LIMIT";
	case HS_INTERNAL: return "INTERNAL";
	case HS_ABORTED: return "ABORTED";
	case HS_CANCELLED: return "CANCELLED";
	case HS_UNIMPLEMENTED: return "UNIMPLEMENTED";
	}
	return "INTERNAL";
}

/* Values of grpc_status_code (grpc/impl/codegen/status.h); repeated here as
 * plain numbers because they are part of the gRPC wire protocol. */
int hs_code_to_grpc(hs_code code)
{
	switch (code) {
	case HS_OK: return 0;
	case HS_CANCELLED: return 1;
	case HS_INVALID: return 3;
	case HS_TIMEOUT: return 4;
	case HS_NOT_FOUND: return 5;
	case HS_EXISTS: return 6;
	case HS_DENIED: return 7;
	case HS_LIMIT: return 8;
	case HS_CONFLICT: return 9;
	case HS_ABORTED: return 10;
	case HS_UNIMPLEMENTED: return 12;
	case HS_INTERNAL: return 13;
	case HS_UNAVAILABLE: return 14;
	case HS_UNAUTH: return 16;
	}
	return 13;
}

int hs_code_to_http(hs_code code)
{
	switch (code) {
	case HS_OK: return 200;
	case HS_INVALID: return 400;
	case HS_CONFLICT: return 400;
	case HS_UNAUTH: return 401;
	case HS_DENIED: return 403;
	case HS_NOT_FOUND: return 404;
	case HS_EXISTS: return 409;
	case HS_ABORTED: return 409;
	case HS_LIMIT: return 429;
	case HS_CANCELLED: return 499;
	case HS_UNIMPLEMENTED: return 501;
	case HS_UNAVAILABLE: return 503;
	case HS_TIMEOUT: return 504;
	case HS_INTERNAL: return 500;
	}
	return 500;
}
