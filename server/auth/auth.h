/* The auth module as the AuthService and the RPC interceptor use it: login,
 * refresh, logout, user management and access token verification over one
 * of two backends, with login throttling in front of either, a revocation
 * check behind every token verification, and the rule for which client
 * address a login counts against (trusted proxies, the gateway's
 * signature: common/netaddr.h, common/gateway_auth.h).
 *
 *   local    (default) users and refresh tokens in the store, HS256 access
 *            tokens signed with jwt_secret or <data_dir>/jwt.key.
 *   upstream the seed's user service over HTTP (see upstream.h); its access
 *            tokens are verified here with the configured key: jwt_secret
 *            (HS256), jwt_public_key_file (RS256/ES256), alg pinned, or the
 *            keys of its JWKS (jwt_jwks_url, jwks.h, alg pinned per key).
 *
 * Either backend: API keys for services (apikey.h) in the store, accepted
 * as bearer tokens beside access tokens, and client certificates mapped to
 * API keys (client_identities).
 *
 * Thread-safe. Calls in upstream mode block for up to the timeout: run them
 * on worker threads. Returned memory is described per function. */
#ifndef HS_AUTH_H
#define HS_AUTH_H

#include <stdbool.h>
#include <stdio.h>

#include "apikey.h"
#include "error.h"
#include "jwks.h"
#include "jwt.h"
#include "local.h"
#include "netaddr.h"
#include "revoke.h"
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
	/* client addresses: x-forwarded-for is believed from peers in
	 * trusted_proxies (CIDR list, NULL/"" = none) and from the gateway,
	 * recognised by its signature with the key in gateway_secret_file
	 * (NULL = <data_dir>/gateway.key, created 0640 when missing; "" = no
	 * gateway key: only trusted_proxies count) */
	const char *trusted_proxies;
	const char *gateway_secret_file;
	/* the hash gate (password.h): 0 = defaults; hash_wait_ms < 0 = no wait */
	unsigned hash_concurrency;
	int hash_wait_ms;
	/* how often revocations and API keys written by other processes are
	 * picked up (and API keys' last-used times written); 0 = 2000 ms,
	 * < 0 = never (tests) */
	int revocation_refresh_ms;
	/* upstream: verify the user service's tokens with the keys its JWKS
	 * publishes (jwks.h) instead of jwt_secret / jwt_public_key_file */
	const char *jwt_jwks_url;
	int jwks_min_interval_ms;        /* 0 = 1000 */
	/* client certificates that act as an API key (with mTLS):
	 * "cn:<common name>=<key id>,san:<subject alt name>=<key id>,..."
	 * (NULL/"" = none) */
	const char *client_identities;
} hs_auth_config;

#define HS_AUTH_CONFIG_INIT                                                          \
	{ HS_AUTH_LOCAL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, 1, \
	  NULL, NULL, NULL, HS_THROTTLE_CONFIG_INIT, NULL, NULL, 0, 0, 0, NULL, 0, NULL }

/* A name of a verified client certificate (the RPC core's view):
 * kind "cn" or "san". */
typedef struct hs_auth_cert_name {
	const char *kind;
	const char *value;
} hs_auth_cert_name;

/* Who a call is from. */
typedef struct hs_auth_identity {
	char id[128];  /* user id, or an API key's id ("hsk_...") */
	char role[16]; /* "user" | "admin" */
	bool is_admin;
	bool api_key;  /* authenticated by an API key (or a certificate mapped to one) */
} hs_auth_identity;

/* Validate cfg, load keys, create the backend (and, local, the first admin).
 * HS_INVALID with a precise message for a bad configuration. */
int hs_auth_new(hs_auth **out, const hs_auth_config *cfg, hs_error *err);
void hs_auth_free(hs_auth *auth);
hs_auth_backend hs_auth_backend_of(const hs_auth *auth);
/* The local backend (user management, tests); NULL in upstream mode. */
hs_auth_local *hs_auth_local_lookup(hs_auth *auth);

/* timeout_ms: what is left of the caller's deadline (< 0 = none); only the
 * upstream backend uses it. */

/* The address logins from this call count against (canonical IP text into
 * out, cap >= HS_IP_TEXT_MAX): the gRPC peer's IP, unless the call carries
 * x-forwarded-for (xff) and either gateway_auth (the gateway's signature,
 * HS_GATEWAY_AUTH_KEY) is valid for it, or the peer is a trusted proxy
 * (then the right-most untrusted entry). Any argument but auth/out may be
 * NULL; a peer without an IP (unix socket) gives "local". */
void hs_auth_client_address(hs_auth *auth, const char *peer, const char *xff,
			    const char *gateway_auth, char *out, size_t cap);

/* Login with the address from hs_auth_client_address (NULL allowed).
 * email is what the user typed: it is normalised here (common/email.h)
 * for the lookup, the throttle and the user service. HS_INVALID for an
 * email that is not an address or an empty/over-long password (naming the
 * field); HS_LIMIT when the pair or the address is throttled or the hash
 * gate stays full; HS_UNAUTH for bad
 * credentials (local: always "Invalid email or password"; upstream: its
 * message and code). *out on success: release with hs_auth_result_dispose. */
int hs_auth_login(hs_auth *auth, const char *email, const char *password, const char *address,
		  int timeout_ms, hs_auth_result *out, hs_error *err);
/* hs_auth_login without blocking the caller, where the backend allows it
 * (upstream without a JWKS URL: hs_auth_upstream_login_start). The same
 * checks and throttle run here (a short lock). HS_OK: started; done is
 * called exactly once, on another thread, with what hs_auth_login would
 * have returned (res: the callee disposes it). HS_AUTH_LOGIN_BLOCKS:
 * nothing was done or counted, call hs_auth_login where blocking is fine.
 * Any other return is hs_auth_login's error; done is not called. */
#define HS_AUTH_LOGIN_BLOCKS 1
typedef void (*hs_auth_login_done_fn)(void *arg, int rc, hs_auth_result *res,
				      const hs_error *err);
int hs_auth_login_start(hs_auth *auth, const char *email, const char *password,
			const char *address, int timeout_ms, hs_auth_login_done_fn done,
			void *arg, hs_error *err);
/* Rotate a refresh token: HS_UNAUTH if invalid/expired/revoked/reused (the
 * client should drop it), HS_UNAVAILABLE/HS_TIMEOUT if the backend is down
 * (it should keep it). */
int hs_auth_refresh(hs_auth *auth, const char *refresh_token, int timeout_ms,
		    hs_auth_result *out, hs_error *err);
/* Local: revoke the token's family and its session's access tokens
 * (unknown tokens: HS_OK). Upstream: the seed's contract has no logout, so
 * there is no refresh token to revoke. Both: access_token (NULL allowed),
 * when it verifies, is revoked by its jti. */
int hs_auth_logout(hs_auth *auth, const char *refresh_token, const char *access_token,
		   int timeout_ms, hs_error *err);
/* *out: release with hs_auth_user_dispose. An API key's id gives the key
 * as a user (name, role, created_at; no email; disabled once revoked). */
int hs_auth_get_user(hs_auth *auth, const char *id, int timeout_ms, hs_auth_user *out,
		     hs_error *err);

/* User management (local backend; upstream: HS_CONFLICT, users live in the
 * user service). The caller is authorised by the adapter (admins only);
 * actor_id is the caller: disabling or deleting oneself is HS_CONFLICT (an
 * admin cannot lock the last admin out by accident). Disabling or deleting
 * a user also revokes the API keys it created and the keys those created
 * (hs_apikeys_revoke_created_by). */
int hs_auth_create_user(hs_auth *auth, const char *email, const char *name, const char *role,
			const char *password, hs_auth_user *out, hs_error *err);
int hs_auth_disable_user(hs_auth *auth, const char *id, const char *actor_id,
			 hs_auth_user *out, hs_error *err);
int hs_auth_delete_user(hs_auth *auth, const char *id, const char *actor_id, hs_error *err);

/* Authenticates a call (no I/O; the RPC authenticator): bearer is the
 * token of "authorization: Bearer" (NULL = none): an API key ("hsk_...",
 * apikey.h) or an access token (JWT, hs_auth_verify_access_token). Without
 * one, a client certificate whose name (names[0..n_names)) is mapped by
 * client_identities acts as that API key. method ("/pkg.Service/Method")
 * is checked against an API key's allowed methods. HS_UNAUTH with a
 * message fit for the caller; HS_DENIED for a method an API key may not
 * call (the message names it); HS_UNAVAILABLE for a token whose JWKS key
 * is being fetched (retry). */
int hs_auth_authenticate(hs_auth *auth, const char *bearer, const hs_auth_cert_name *names,
			 size_t n_names, const char *method, hs_auth_identity *out,
			 hs_error *err);

/* The API keys (apikey.h), NULL when there is no store. */
hs_apikeys *hs_auth_apikeys_lookup(hs_auth *auth);

/* Verify an access token (no I/O): signature, claims, then the revocation
 * set (a disabled or deleted user, a logged-out session, a revoked jti).
 * HS_UNAUTH if bad or revoked. out->role is always set ("user" when the
 * token has none). Release with hs_jwt_claims_dispose. */
int hs_auth_verify_access_token(hs_auth *auth, const char *token, hs_jwt_claims *out,
				hs_error *err);

#endif
