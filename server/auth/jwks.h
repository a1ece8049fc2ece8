/* The upstream user service's signing keys from its JSON Web Key Set
 * (--jwt-jwks-url), so it can rotate them without a harnessd restart.
 *
 * The set is fetched with libcurl (bounded body, timeouts, http(s) only, no
 * redirects), cached, and refetched by a thread of its own: periodically,
 * and when a token names a kid the set does not have (at most once per
 * min_interval_ms, so tokens with made-up kids cannot turn into a flood of
 * fetches). Token verification never waits for the network: a token with
 * an unknown kid is UNAVAILABLE ("retry") while a fetch for it is pending,
 * then UNAUTHENTICATED if the fresh set still lacks it. Code that may block
 * (Login, Refresh on a worker) calls hs_jwks_ensure() first, so tokens
 * harnessd hands out are verifiable by the time the client uses them.
 *
 * Keys: RSA (RS256, >= 2048 bits) and EC P-256 (ES256), "use" absent or
 * "sig"; at most HS_JWKS_MAX_KEYS are kept. A fetch that fails or yields no
 * usable key keeps the previous set. Thread-safe. */
#ifndef HS_AUTH_JWKS_H
#define HS_AUTH_JWKS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "jwt.h"

#define HS_JWKS_MAX_BYTES (64 * 1024)
#define HS_JWKS_MAX_KEYS 32
#define HS_JWKS_KID_MAX 128

typedef struct hs_jwks hs_jwks;

typedef struct hs_jwks_config {
	const char *url;     /* http(s)://...; NULL = no fetching (tests load documents) */
	int timeout_ms;      /* one fetch, connect included; 0 = 5000 */
	int min_interval_ms; /* between fetches for unknown kids; 0 = 1000 */
	int refresh_ms;      /* periodic refetch; 0 = 300000 (5 s while no key is known) */
} hs_jwks_config;

/* Starts the fetcher and waits for the first fetch (up to timeout_ms). A
 * failed first fetch is logged, not fatal: the fetcher keeps trying.
 * HS_INVALID for a bad URL. */
int hs_jwks_new(hs_jwks **out, const hs_jwks_config *cfg, hs_error *err);
void hs_jwks_free(hs_jwks *jwks);

/* Replaces the set with the keys of a JWKS document (what a fetch does).
 * HS_INVALID when it is not a JWKS or has no usable key (the set is then
 * unchanged); *n_keys (NULL allowed) = keys kept. */
int hs_jwks_load(hs_jwks *jwks, const char *json, size_t len, size_t *n_keys, hs_error *err);

/* Verifies token with the key its kid names (a token without kid: the only
 * key, if there is exactly one). HS_UNAUTH as hs_jwt_verify, or for an
 * unknown kid the set was refreshed for; HS_UNAVAILABLE for an unknown kid
 * while a refresh is pending (retry shortly). Never blocks on I/O. */
int hs_jwks_verify(hs_jwks *jwks, const char *token, const hs_jwt_verify_opts *opts,
		   hs_jwt_claims *out, hs_error *err);

/* For threads that may block: if token's kid is unknown, asks for a fetch
 * and waits for it (honouring min_interval_ms) up to timeout_ms. */
/* Changes whenever a new key set is installed (a verified-token cache
 * keyed on it forgets tokens signed by keys that may be gone). */
uint64_t hs_jwks_key_set(hs_jwks *jwks);

void hs_jwks_ensure(hs_jwks *jwks, const char *token, int timeout_ms);

/* Fetches attempted so far (tests, metrics). */
uint64_t hs_jwks_fetches(hs_jwks *jwks);

#endif
