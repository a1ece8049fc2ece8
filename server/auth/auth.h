/* The auth module as the AuthService and the RPC interceptor use it: login,
 * refresh, logout, user lookup and access token verification over one of two
 * backends, with login throttling in front of either.
 *
 *   local    (default) users and refresh tokens in the store, HS256 access
 *            tokens signed with jwt_secret or <data_dir>/jwt.key.
 *   upstream the seed's user service over HTTP (see upstream.h); its access
 *            tokens are verified here with the configured key: jwt_secret
 *            (HS256) or jwt_public_key_file (RS256/ES256), alg pinned.
 *
 * Thread-safe. Calls in upstream mode block for up to the timeout: run them
 * on worker threads. Returned memory is described per function. */
#ifndef HS_AUTH_H
#define HS_AUTH_H

#include <stdio.h>

#include "error.h"
#include "jwt.h"
#include "local.h"
#include "store.h"
#include "throttle.h"
#include "user.h"

typedef enum hs_auth_backend {
	HS_AUTH_LOCAL = 0,
	HS_AUTH_UPSTREAM = 1,
} hs_auth_backend;

typedef struct hs_auth hs_auth;

typedef struct hs_auth_config {
	hs_auth_backend backend;
	/* upstream */
	const char *user_service_url;    /* USER_SERVICE_URL */
	const char *api_key;             /* USER_SERVICE_API_KEY */
	int upstream_timeout_ms;         /* 0 = 5000 */
	/* tokens */
	const char *jwt_alg;             /* "HS256" (default), "RS256", "ES256"; local: HS256 */
	const char *jwt_secret;          /* HS256, >= 32 bytes; local: NULL = data_dir/jwt.key */
	const char *jwt_public_key_file; /* RS256/ES256 PEM (upstream) */
	const char *jwt_issuer;          /* checked (and issued, local) when set */
	const char *jwt_audience;
	int access_ttl_s;                /* local; 0 = 900 */
	int refresh_ttl_s;               /* local; 0 = 604800 */
	/* local */
	hs_store *store;                 /* borrowed; required for local */
	const char *data_dir;            /* for jwt.key when jwt_secret is NULL */
	int bootstrap_admin;             /* create the first admin at hs_auth_new */
	const char *admin_email;         /* NULL = env HARNESS_ADMIN_EMAIL */
	const char *admin_password;      /* NULL = env HARNESS_ADMIN_PASSWORD, else generated */
	FILE *admin_notice;              /* where a generated password is printed; NULL = stderr */
	/* login throttling */
	hs_throttle_config throttle;
} hs_auth_config;

#define HS_AUTH_CONFIG_INIT                                                          \
	{ HS_AUTH_LOCAL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, 1, \
	  NULL, NULL, NULL, HS_THROTTLE_CONFIG_INIT }

/* Validate cfg, load keys, create the backend (and, local, the first admin).
 * HS_INVALID with a precise message for a bad configuration. */
int hs_auth_new(hs_auth **out, const hs_auth_config *cfg, hs_error *err);
void hs_auth_free(hs_auth *auth);
hs_auth_backend hs_auth_backend_of(const hs_auth *auth);
/* The local backend (user management, tests); NULL in upstream mode. */
hs_auth_local *hs_auth_local_lookup(hs_auth *auth);

/* timeout_ms: what is left of the caller's deadline (< 0 = none); only the
 * upstream backend uses it. */

/* HS_LIMIT when the account or the peer (gRPC peer string or client address;
 * NULL allowed) is throttled; HS_UNAUTH for bad credentials (local: always
 * "Invalid email or password"; upstream: its message). *out on success:
 * release with hs_auth_result_dispose. */
int hs_auth_login(hs_auth *auth, const char *email, const char *password, const char *peer,
		  int timeout_ms, hs_auth_result *out, hs_error *err);
/* Rotate a refresh token: HS_UNAUTH if invalid/expired/revoked/reused (the
 * client should drop it), HS_UNAVAILABLE/HS_TIMEOUT if the backend is down
 * (it should keep it). */
int hs_auth_refresh(hs_auth *auth, const char *refresh_token, int timeout_ms,
		    hs_auth_result *out, hs_error *err);
/* Local: revoke the token's family (unknown tokens: HS_OK). Upstream: the
 * seed's contract has no logout, so nothing to revoke: HS_OK. */
int hs_auth_logout(hs_auth *auth, const char *refresh_token, int timeout_ms, hs_error *err);
/* *out: release with hs_auth_user_dispose. */
int hs_auth_get_user(hs_auth *auth, const char *id, int timeout_ms, hs_auth_user *out,
		     hs_error *err);
/* Verify an access token (no I/O). HS_UNAUTH if bad. out->role is always
 * set ("user" when the token has none). Release with hs_jwt_claims_dispose. */
int hs_auth_verify_access_token(hs_auth *auth, const char *token, hs_jwt_claims *out,
				hs_error *err);

#endif
