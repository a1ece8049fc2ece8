/* A cache of verified access tokens (private to the auth module).
 *
 * A repeat caller pays one hash of its token and one comparison instead of
 * a base64 decode, a JSON parse and a MAC or signature check. Entries are
 * keyed by the whole token (hash for the slot, then every byte compared: a
 * token that differs anywhere, signature included, is a miss), carry what
 * the authenticator needs (sub, role, sid, jti, iat), and are valid until
 * the token's exp plus the verifier's leeway. The revocation set is NOT
 * cached: callers check it on every hit, so a revoked session, a revoked
 * token or a disabled user is refused at once. An entry also records the
 * key-set generation it was verified under; a different generation (a new
 * JWKS) is a miss. Bounded: a fixed number of 4-way sets, an expired or the
 * least recently inserted entry of a set is replaced. Thread-safe: sets are
 * spread over a few mutexes, each held for a compare or a copy. */
#ifndef HS_AUTH_TOKEN_CACHE_H
#define HS_AUTH_TOKEN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HS_TOKEN_CACHE_TOKEN_MAX 2048 /* longer tokens are never cached */

typedef struct hs_token_cache hs_token_cache;

typedef struct hs_token_entry {
	char sub[128];
	char role[16];
	char sid[96];  /* "" when absent */
	char jti[96];  /* "" when absent */
	long long iat; /* 0 when absent */
} hs_token_entry;

/* capacity: entries kept (rounded up to a multiple of 4; 0 = 4096). NULL
 * when out of memory. */
hs_token_cache *hs_token_cache_new(size_t capacity);
void hs_token_cache_free(hs_token_cache *c);

/* A hit: *out filled, true. now_s: wall clock, Unix seconds. */
bool hs_token_cache_get(hs_token_cache *c, const char *token, size_t len, uint64_t key_gen,
			long long now_s, hs_token_entry *out);

/* Remembers a token verified under key_gen until valid_until_s (exp plus
 * leeway). Tokens too long, or with claims too long for an entry, are
 * silently not cached. */
void hs_token_cache_put(hs_token_cache *c, const char *token, size_t len, uint64_t key_gen,
			long long valid_until_s, const hs_token_entry *e);

/* Forgets everything. */
void hs_token_cache_flush(hs_token_cache *c);

/* Entries held now (for tests). */
size_t hs_token_cache_size(hs_token_cache *c);

#endif
