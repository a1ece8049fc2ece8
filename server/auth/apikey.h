/* API keys: the identities of services (CI runners, agents' supervisors,
 * other control planes) beside people's access tokens.
 *
 *   key   "hsk_" + 16 hex (the id) + "_" + 43 base64url chars (32 random
 *         bytes). Shown once at creation; the store keeps its SHA-256 (a
 *         fast hash is right for a 256-bit random secret: nothing to
 *         guess, and verification must be cheap on every call).
 *   id    "hsk_" + 16 hex: looked up first, then the hash compared in
 *         constant time. It is the caller's identity (owner of what the
 *         key creates), its role is the key's, optionally narrowed to
 *         allowed methods.
 *
 * Verification is in memory (no I/O, a read lock): keys are cached, and
 * what other processes sharing the store created or revoked is picked up
 * by hs_apikeys_sync(), which also writes the last-used times gathered in
 * memory in one transaction (never a write per call). Revocation through
 * this object takes effect before hs_apikeys_revoke() returns.
 * Thread-safe. */
#ifndef HS_AUTH_APIKEY_H
#define HS_AUTH_APIKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "store.h"

#define HS_APIKEY_PREFIX "hsk_"
#define HS_APIKEY_ID_LEN 20    /* "hsk_" + 16 hex */
#define HS_APIKEY_LEN 64       /* id + "_" + 43 */
#define HS_APIKEY_NAME_MAX 200 /* bytes */
#define HS_APIKEY_METHODS_MAX 64
#define HS_APIKEY_METHOD_MAX 200 /* bytes of one allowed_methods entry */
#define HS_APIKEY_ACTIVE_MAX 10000

typedef struct hs_apikeys hs_apikeys;

/* One key as management calls see it (never the key or its hash). Strings
 * and methods are owned by the struct: release with hs_apikey_info_dispose. */
typedef struct hs_apikey_info {
	char id[HS_STORE_ID_MAX];
	char name[HS_STORE_NAME_MAX];
	char role[HS_STORE_SHORT_MAX];
	char created_by[HS_STORE_ID_MAX];
	int64_t created_at_ms;
	int64_t expires_at_ms;   /* 0 = never */
	int64_t last_used_at_ms; /* 0 = never */
	int64_t revoked_at_ms;   /* 0 = active */
	char **methods;          /* "harness.v1.HealthService/Heartbeat", ".../\*" */
	size_t n_methods;        /* 0 = every method */
} hs_apikey_info;

void hs_apikey_info_dispose(hs_apikey_info *info);
/* Disposes n infos and frees the array. */
void hs_apikey_infos_free(hs_apikey_info *infos, size_t n);

/* store: borrowed, must outlive the object. Loads the active keys. */
int hs_apikeys_new(hs_apikeys **out, hs_store *store, hs_error *err);
/* Writes pending last-used times, then frees. NULL is a no-op. */
void hs_apikeys_free(hs_apikeys *ks);

typedef struct hs_apikey_spec {
	const char *name;
	const char *role;              /* "user" (NULL/"" too) or "admin" */
	int64_t expires_at_ms;         /* 0 = never; else must be after now */
	const char *const *methods;    /* allowed methods, NULL/0 = all */
	size_t n_methods;
	const char *created_by;        /* the admin's id */
} hs_apikey_spec;

/* Validates spec (HS_INVALID naming the field; an allowed_methods entry is
 * "<package>.<Service>/<Method>" or "<package>.<Service>/\*", an optional
 * leading '/' dropped; whether it names a served method is the caller's
 * check), refuses more than HS_APIKEY_ACTIVE_MAX active keys (HS_LIMIT),
 * stores the new key and caches it. *info_out and *key_out (heap, the
 * secret: wipe and free it) on success. */
int hs_apikeys_create(hs_apikeys *ks, const hs_apikey_spec *spec, int64_t now_ms,
		      hs_apikey_info *info_out, char **key_out, hs_error *err);

/* Keys by id after after_id (NULL/"" = first page), at most limit
 * (0 = 100, at most 1000), from the store with this process's newer
 * last-used times. *out: release with hs_apikey_infos_free. */
int hs_apikeys_list(hs_apikeys *ks, const char *after_id, size_t limit, bool include_revoked,
		    hs_apikey_info **out, size_t *n_out, hs_error *err);

/* One key (revoked ones too). HS_NOT_FOUND. */
int hs_apikeys_get(hs_apikeys *ks, const char *id, hs_apikey_info *out, hs_error *err);

/* Revokes id (idempotent) and drops it from the cache before returning.
 * HS_NOT_FOUND for an unknown id. *out (NULL allowed): the key now. */
int hs_apikeys_revoke(hs_apikeys *ks, const char *id, int64_t now_ms, hs_apikey_info *out,
		      hs_error *err);

/* Revokes every active key creator (a user's or a key's id) made, and the
 * keys those keys made, down the chain: a key lives no longer than its
 * creator's authority (DisableUser, DeleteUser, RevokeApiKey). Each is
 * dropped from the cache before this returns. *revoked (NULL allowed): how
 * many. */
int hs_apikeys_revoke_created_by(hs_apikeys *ks, const char *creator, int64_t now_ms,
				 size_t *revoked, hs_error *err);

/* Whether a bearer token is shaped like an API key (its prefix). */
bool hs_apikey_is_key(const char *token);
/* Whether id is shaped like a key's id ("hsk_" + 16 lower-case hex). */
bool hs_apikey_id_ok(const char *id);

/* The identity a call authenticated by an API key acts as. */
typedef struct hs_apikey_principal {
	char id[HS_APIKEY_ID_LEN + 1];
	char role[8];
} hs_apikey_principal;

/* Verifies key for a call of method ("/pkg.Service/Method"; NULL passes
 * only a key with no allowed_methods) at now_ms, with no I/O, and records the use in memory.
 * HS_UNAUTH: malformed, unknown, wrong secret or revoked ("invalid API
 * key"), or expired; HS_DENIED: allowed_methods does not hold method (the
 * message names it). */
int hs_apikeys_verify(hs_apikeys *ks, const char *key, const char *method, int64_t now_ms,
		      hs_apikey_principal *out, hs_error *err);

/* The same for a caller already authenticated by other means (a client
 * certificate mapped to the key's id): everything but the secret. */
int hs_apikeys_verify_id(hs_apikeys *ks, const char *id, const char *method, int64_t now_ms,
			 hs_apikey_principal *out, hs_error *err);

/* Writes pending last-used times (one transaction) and loads what other
 * processes created or revoked since the last sync. Call periodically. */
int hs_apikeys_sync(hs_apikeys *ks, hs_error *err);

#endif
