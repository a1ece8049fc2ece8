/* The upstream user service client (the seed's BFF pattern): libcurl calls
 * to USER_SERVICE_URL with X-API-Key and JSON bodies, snake_case responses
 * converted to hs_auth_result / hs_auth_user.
 *
 * Errors: an upstream 4xx/5xx becomes 400 HS_INVALID, 401 HS_UNAUTH,
 * 403 HS_DENIED, 404 HS_NOT_FOUND, 409 HS_EXISTS, 429 HS_LIMIT, 408 and 5xx
 * HS_UNAVAILABLE (other 4xx HS_INVALID), with the upstream's JSON `message`
 * as err->msg (sanitised to printable ASCII and bounded) and, for a 4xx, its
 * `code` as err->reason when it is a well-formed reason ([A-Z0-9_], clients
 * get it as trailing metadata). Network failure, or the
 * client's own 5 s limit -> HS_UNAVAILABLE; the caller's deadline running
 * out first -> HS_TIMEOUT. A malformed or incomplete 2xx body -> HS_INTERNAL
 * with a generic message (nothing of the body is copied).
 *
 * Thread-safe: every blocking call takes an easy handle from a small pool
 * (kept handles keep their connections alive, so calls reuse connections)
 * and blocks the calling thread for at most the timeout: call it from a
 * worker thread, never a completion-queue thread. Login also has a
 * non-blocking form (hs_auth_upstream_login_start) for completion-queue
 * threads. */
#ifndef HS_AUTH_UPSTREAM_H
#define HS_AUTH_UPSTREAM_H

#include <stddef.h>

#include "error.h"
#include "user.h"

#define HS_AUTH_UPSTREAM_TIMEOUT_MS 5000
#define HS_AUTH_UPSTREAM_MAX_BODY (64 * 1024)

typedef struct hs_auth_upstream hs_auth_upstream;

typedef struct hs_auth_upstream_config {
	const char *base_url; /* http(s)://host[:port][/prefix]; required */
	const char *api_key;  /* sent as X-API-Key; NULL or "" = not sent */
	int timeout_ms;       /* per call; 0 = HS_AUTH_UPSTREAM_TIMEOUT_MS */
	size_t pool_max;      /* idle easy handles kept; 0 = 8 */
} hs_auth_upstream_config;

#define HS_AUTH_UPSTREAM_CONFIG_INIT { NULL, NULL, 0, 0 }

int hs_auth_upstream_new(hs_auth_upstream **out, const hs_auth_upstream_config *cfg, hs_error *err);
void hs_auth_upstream_free(hs_auth_upstream *up);

/* timeout_ms in the calls below is what is left of the caller's deadline:
 * the call lasts at most min(config timeout, timeout_ms); < 0 = no deadline;
 * 0 = already expired (HS_TIMEOUT without a request). *out is filled only on
 * success; release it with hs_auth_result_dispose / hs_auth_user_dispose. */

/* POST {base}/api/v1/auth/login {"email","password"}. */
int hs_auth_upstream_login(hs_auth_upstream *up, const char *email, const char *password, int timeout_ms,
		      hs_auth_result *out, hs_error *err);
/* The answer of hs_auth_upstream_login_start: called exactly once, on the
 * client's event-loop thread (so it must not block), with HS_OK and *res
 * (the callee takes it: hs_auth_result_dispose) or an error and res NULL. */
typedef void (*hs_auth_upstream_done_fn)(void *arg, int rc, hs_auth_result *res,
					 const hs_error *err);
/* hs_auth_upstream_login without blocking the caller: the request goes to
 * one event-loop thread (a curl multi handle, started on first use, whose
 * connections to the user service are kept alive and shared), which calls
 * done. Callable from a completion-queue thread: it only takes a short
 * lock. HS_OK: queued, done will be called (also at shutdown, with
 * HS_UNAVAILABLE). HS_AUTH_UPSTREAM_BUSY: HS_AUTH_UPSTREAM_ASYNC_MAX
 * requests already in flight (or the loop could not start): nothing was
 * sent, use the blocking call instead. Other errors as
 * hs_auth_upstream_login; done is not called. */
/* libcurl's multi handle walks every transfer it holds on each turn (and
 * on each removal): with 1,000 in flight its CPU per login rose by half,
 * so the loop keeps a few, the worker lane takes the rest. */
#define HS_AUTH_UPSTREAM_ASYNC_MAX 64
#define HS_AUTH_UPSTREAM_BUSY 1
int hs_auth_upstream_login_start(hs_auth_upstream *up, const char *email, const char *password,
				 int timeout_ms, hs_auth_upstream_done_fn done, void *arg,
				 hs_error *err);
/* POST {base}/api/v1/auth/refresh {"refreshToken"} (the seed's camelCase). */
int hs_auth_upstream_refresh(hs_auth_upstream *up, const char *refresh_token, int timeout_ms,
			hs_auth_result *out, hs_error *err);
/* GET {base}/api/v1/users/{id}; id: 1..128 bytes, no control characters,
 * not "." or "..", sent URL-escaped. HS_INVALID otherwise. */
int hs_auth_upstream_get_user(hs_auth_upstream *up, const char *id, int timeout_ms, hs_auth_user *out,
			 hs_error *err);

/* RFC 3339 / ISO-8601 date-time ("2024-05-01T12:00:00.123Z", offsets,
 * date only = midnight UTC, no offset = UTC) -> Unix ms. -1 if malformed. */
int hs_auth_upstream_parse_time(const char *s, long long *out_ms);

#endif
