/* One error convention for every Harness module: functions return HS_OK (0)
 * or a negative hs_code, and fill a caller-passed hs_error (NULL allowed) with
 * a one-line message naming the object and, where a client must tell cases
 * apart by more than the code, a machine-readable reason. Codes are mapped
 * to the wire in exactly one place each: hs_code_to_grpc() and
 * hs_code_to_http(); the reason travels as the trailing metadata
 * HS_ERROR_REASON_KEY, added in one place (server/rpc/call.c). */
#ifndef HS_COMMON_ERROR_H
#define HS_COMMON_ERROR_H

#include <stdarg.h>
#include <stddef.h>

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
#define HS_ERROR_REASON_MAX 64
#define HS_ERROR_WHERE_MAX 256

/* gRPC trailing-metadata key of hs_error.reason (clients read it back). */
#define HS_ERROR_REASON_KEY "hs-error-code"
/* gRPC trailing-metadata key of hs_error.where. */
#define HS_ERROR_WHERE_KEY "harness-node-address"

typedef struct hs_error {
	hs_code code;
	char msg[HS_ERROR_MSG_MAX];
	/* Machine-readable reason, [A-Z0-9_]{1,63} (e.g. "INVALID_CREDENTIALS",
	 * the user service's own code); "" = none. Never parsed out of msg. */
	char reason[HS_ERROR_REASON_MAX];
	/* Where the object lives when it is on another harnessd node: the
	 * address that node advertises (host:port), set with HS_UNAVAILABLE
	 * "runs on node N"; "" = here, or not about an object. The rpc core
	 * forwards a unary call there (server/rpc/forward.c) or names it in
	 * the trailing metadata HS_ERROR_WHERE_KEY. */
	char where[HS_ERROR_WHERE_MAX];
} hs_error;

/* Set err (if not NULL) and return code, so callers can write
 * `return hs_error_set(err, HS_INVALID, "task_id: %s", why);`.
 * An error already set by a lower layer is not overwritten when the code
 * is the same (libgit2's rule: don't overwrite a lower layer's error).
 * msg is always valid UTF-8: a character cut by truncation ("%.64s", the
 * buffer's end) or bytes that are not UTF-8 become '?' (it reaches JSON,
 * gRPC status messages and stored records such as failure_reason). */
hs_code hs_error_set(hs_error *err, hs_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

void hs_error_clear(hs_error *err);

/* Sets err->reason (err may be NULL), after hs_error_set: hs_error_set
 * clears the reason whenever it writes a new message. A reason that is not
 * [A-Z0-9_]{1,63} is not set. */
void hs_error_set_reason(hs_error *err, const char *reason);

/* Sets err->where (err may be NULL), after hs_error_set (which clears it).
 * An address that does not fit, or holds a byte outside printable ASCII,
 * is not set. */
void hs_error_set_where(hs_error *err, const char *address);

/* Whether s is a well-formed reason ([A-Z0-9_]{1,63}, n bytes). */
int hs_error_reason_ok(const char *s, size_t n);

/* Stable name of a code ("INVALID", "NOT_FOUND", ...). */
const char *hs_code_name(hs_code code);

/* gRPC status code (grpc_status_code values, as int so common/ needs no
 * gRPC header) and HTTP status, per DESIGN.md's table. */
int hs_code_to_grpc(hs_code code);
int hs_code_to_http(hs_code code);

#endif
