/* The embedded auth backend: users in the store with argon2id hashes, HS256
 * access tokens, opaque refresh tokens stored as SHA-256 hashes.
 *
 * Refresh token life cycle (one row per token, grouped in a family that
 * starts at login):
 *
 *   issued --refresh--> used (a new token of the same family is issued)
 *   issued --logout---> revoked (the whole family)
 *   used   --presented again--> REUSE: the whole family is revoked
 *   any    --expires_at passed--> refused (rows deleted by housekeeping)
 *
 * A stolen token that is used by the thief first makes the owner's next
 * refresh a reuse, and vice versa: either way the family dies and both must
 * log in again. Two concurrent refreshes with the same token are treated the
 * same way (strict; no grace period).
 *
 * Access tokens carry the family as their session id (claim sid): logging
 * out, or a reuse, also records the session as revoked (revoke.h), so its
 * access tokens stop working at once, not at their expiry. Disabling or
 * deleting a user revokes every token of the user the same way.
 *
 * Emails: stored in their normal form (common/email.h). Login looks an
 * account up by the typed address's legacy key first (exact match, for the
 * rare account the normalising migration had to leave as it was because
 * another one held its normal form), then by its normal form.
 *
 * Every failed login gets the same message, "Invalid email or password", and
 * an unknown email costs the same argon2id verify as a wrong password.
 * Thread-safe; the store, the key and the revocation set are borrowed and
 * must outlive it. */
#ifndef HS_AUTH_LOCAL_H
#define HS_AUTH_LOCAL_H

#include <stdio.h>

#include "error.h"
#include "jwt.h"
#include "revoke.h"
#include "store.h"
#include "user.h"

#define HS_AUTH_LOGIN_FAILED "Invalid email or password"
#define HS_AUTH_REFRESH_FAILED "Invalid or expired refresh token"
#define HS_AUTH_ACCESS_TTL_MAX 86400 /* longest access token lifetime accepted */
#define HS_AUTH_PASSWORD_MIN 6       /* characters (bytes), new passwords */

typedef struct hs_auth_local hs_auth_local;

typedef struct hs_auth_local_config {
	hs_store *store;        /* required, borrowed */
	const hs_jwt_key *key;  /* signs access tokens; required, borrowed */
	const char *issuer;     /* iss/aud of issued tokens; NULL = none */
	const char *audience;
	int access_ttl_s;       /* 0 = 900; at most HS_AUTH_ACCESS_TTL_MAX */
	int refresh_ttl_s;      /* 0 = 604800 */
	hs_revocations *revocations; /* sessions/users revoked here; NULL = none */
} hs_auth_local_config;

int hs_auth_local_new(hs_auth_local **out, const hs_auth_local_config *cfg, hs_error *err);
void hs_auth_local_free(hs_auth_local *l);

/* HS_UNAUTH with HS_AUTH_LOGIN_FAILED for any bad email/password/disabled
 * user; HS_LIMIT when the hash gate stays full; store failures propagate
 * (HS_UNAVAILABLE, HS_INTERNAL). email is what the user typed. */
int hs_auth_local_login(hs_auth_local *l, const char *email, const char *password,
			hs_auth_result *out, hs_error *err);
/* Consume refresh_token and issue a new pair; HS_UNAUTH with
 * HS_AUTH_REFRESH_FAILED when unknown, expired, revoked or reused. */
int hs_auth_local_refresh(hs_auth_local *l, const char *refresh_token, hs_auth_result *out,
			  hs_error *err);
/* Revoke the token's family and its session's access tokens. Unknown
 * tokens are fine (HS_OK). */
int hs_auth_local_logout(hs_auth_local *l, const char *refresh_token, hs_error *err);
int hs_auth_local_get_user(hs_auth_local *l, const char *id, hs_auth_user *out, hs_error *err);

/* Create a user: email normalised (HS_INVALID "email: ..." when it is not an
 * address), name (NULL or "" = the email's local part, at most 200 bytes),
 * role "user" or "admin" (NULL = "user"), password HS_AUTH_PASSWORD_MIN to
 * HS_PASSWORD_MAX_LEN bytes. HS_EXISTS when the normal form is taken.
 * *out (NULL allowed) gets the stored user. */
int hs_auth_local_create_user(hs_auth_local *l, const char *email, const char *name,
			      const char *role, const char *password, hs_auth_user *out,
			      hs_error *err);

/* Disable a user: no more logins or refreshes, every refresh token
 * revoked, every access token refused from now on. Idempotent.
 * HS_NOT_FOUND for an unknown id. *out (NULL allowed) gets the user. */
int hs_auth_local_disable_user(hs_auth_local *l, const char *id, hs_auth_user *out,
			       hs_error *err);
/* Delete a user and its refresh tokens; its access tokens are refused from
 * now on. HS_NOT_FOUND for an unknown id. */
int hs_auth_local_delete_user(hs_auth_local *l, const char *id, hs_error *err);

/* If the store has no user yet, create the first admin: email (NULL = env
 * HARNESS_ADMIN_EMAIL, else "admin@harness.local") with password (NULL =
 * env HARNESS_ADMIN_PASSWORD, else a generated one). A generated password is
 * written once to `notice` (stderr when NULL) as one plain line meant for
 * the operator; it is never logged through hs_log and never shown again.
 * *created (NULL allowed) tells whether an admin was created. */
int hs_auth_local_bootstrap_admin(hs_auth_local *l, const char *email, const char *password,
				  FILE *notice, int *created, hs_error *err);

/* The HS256 secret for local mode: <data_dir>/jwt.key, created with 64
 * random base64url characters and mode 0600 when missing. An existing file
 * readable by group/others, or shorter than 32 bytes, is refused
 * (HS_INVALID). *out is a heap string (caller wipes and frees). */
int hs_auth_local_secret_load(const char *data_dir, char **out, hs_error *err);

#endif
