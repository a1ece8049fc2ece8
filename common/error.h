/* One error convention for every Harness module: functions return HS_OK (0)
 * or a negative hs_code, and fill a caller-passed hs_error (NULL allowed) with
 * a one-line message naming the object. Codes are mapped to the wire in
 * exactly one place each: hs_code_to_grpc() and hs_code_to_http(). */
#ifndef HS_COMMON_ERROR_H
#define HS_COMMON_ERROR_H

#include <stdarg.h>

typedef enum hs_code {
	HS_OK = 0,
	HS_INVALID = -1,     /* bad input: INVALID_ARGUMENT */
	HS_NOT_FOUND = -2,   /* NOT_FOUND */
	HS_EXISTS = -3,      /* ALREADY_EXISTS */
	HS_CONFLICT = -4,    /* wrong state: FAILED_PRECONDITION */
	HS_DENIED = -5,      /* someone else's object: PERMISSION_DENIED */
	HS_UNAUTH = -6,      /* no/invalid credentials: UNAUTHENTICATED */
	HS_UNAVAILABLE = -7, /* a dependency is down: UNAVAILABLE */
	HS_TIMEOUT = -8,     /* DEADLINE_EXCEEDED */
	HS_LIMIT = -9,       /* quota, size, rate: RESOURCE_EXHAUSTED */
	HS_INTERNAL = -10,   /* a bug or an unexpected failure: INTERNAL */
	HS_ABORTED = -11,    /* concurrency conflict, retry: ABORTED */
	HS_CANCELLED = -12,  /* the caller went away: CANCELLED */
	HS_UNIMPLEMENTED = -13,
} hs_code;

#define HS_ERROR_MSG_MAX 256

typedef struct hs_error {
	hs_code code;
	char msg[HS_ERROR_MSG_MAX];
} hs_error;

/* Set err (if not NULL) and return code, so callers can write
 * `return hs_error_set(err, HS_INVALID, "task_id: %s", why);`.
 * An error already set by a lower layer is not overwritten when the code
 * is the same (libgit2's rule: don't overwrite a lower layer's error). */
hs_code hs_error_set(hs_error *err, hs_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

void hs_error_clear(hs_error *err);

/* Stable name of a code ("INVALID", "NOT_FOUND", ...). */
const char *hs_code_name(hs_code code);

/* gRPC status code (grpc_status_code values, as int so common/ needs no
 * gRPC header) and HTTP status, per DESIGN.md's table. */
int hs_code_to_grpc(hs_code code);
int hs_code_to_http(hs_code code);

#endif
