/* Access-token revocation: what the authenticator refuses on every call
 * before a token expires, checked in memory (a hash set under a read-write
 * lock, three lookups per call, no I/O).
 *
 *   user     every token of a user disabled or deleted (issued at or before
 *            the revocation, to the second);
 *   session  every token of a session (the refresh-token family named by
 *            the token's sid claim): logout, refresh-token reuse;
 *   token    one token by jti (upstream backend logout).
 *
 * Entries are written to the store before they are added here (so a
 * restart keeps them) and live until every token they could match has
 * expired. hs_revocations_refresh() adds what other processes wrote (rows
 * with a seq above the last one seen); the owner calls it periodically.
 * Thread-safe. */
#ifndef HS_AUTH_REVOKE_H
#define HS_AUTH_REVOKE_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "store.h"

typedef enum hs_revoke_kind {
	HS_REVOKE_USER = 0,
	HS_REVOKE_SESSION = 1,
	HS_REVOKE_TOKEN = 2,
} hs_revoke_kind;

typedef struct hs_revocations hs_revocations;

/* store: borrowed, NULL = memory only (tests, or no store). Loads every
 * unexpired entry from the store. */
int hs_revocations_new(hs_revocations **out, hs_store *store, hs_error *err);
void hs_revocations_free(hs_revocations *r);

/* Records (kind, id) revoked at revoked_at_ms until expires_at_ms (Unix
 * ms): store first, then memory. Store failures propagate (then nothing is
 * added: the caller reports the failure rather than a revocation that a
 * restart would forget). */
int hs_revocations_add(hs_revocations *r, hs_revoke_kind kind, const char *id,
		       long long revoked_at_ms, long long expires_at_ms, hs_error *err);

/* Whether a token with these claims is refused at now_ms (0 = the clock).
 * sub, sid and jti may be NULL; iat_s is the token's iat (0 = unknown, which
 * a user revocation refuses). */
bool hs_revocations_refuses(hs_revocations *r, const char *sub, const char *sid, const char *jti,
			    long long iat_s, long long now_ms);

/* Loads rows newer than the last seen and drops expired entries from
 * memory (and, at most once a minute, from the store). */
int hs_revocations_refresh(hs_revocations *r, hs_error *err);

/* Entries held (tests). */
size_t hs_revocations_size(hs_revocations *r);

#endif
