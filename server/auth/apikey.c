/* API keys (apikey.h): creation, the in-memory cache every call is checked
 * against, and its synchronisation with the store.
 *
 * Cache: an array of entry pointers sorted by id under a read-write lock;
 * verification takes the read lock, so an entry is only freed under the
 * write lock. Last-used times are atomics in the entries (written at most
 * once a second per key) and flushed by hs_apikeys_sync.
 *
 * Lock order: sync_mu (serialises every store write with its cache update,
 * so a sync that read a key as active can never re-add it after a revoke
 * removed it) before lock. */
#include "apikey.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"

#define SECRET_BYTES 32
#define ID_BYTES 8
#define HASH_HEX (crypto_hash_sha256_BYTES * 2 + 1)
#define USE_RESOLUTION_MS 1000 /* last-used is recorded to the second */
#define SYNC_PAGE 1000

typedef struct ent {
	char id[HS_APIKEY_ID_LEN + 1];
	unsigned char hash[crypto_hash_sha256_BYTES];
	char role[8];
	int64_t expires_at_ms;
	char **methods;
	size_t n_methods;
	_Atomic int64_t last_used_ms;
	atomic_bool dirty; /* last_used_ms is newer than the store's */
} ent;

struct hs_apikeys {
	hs_store *store;
	pthread_mutex_t sync_mu;
	int64_t seq; /* the last store seq applied (under sync_mu) */
	pthread_rwlock_t lock;
	ent **ents; /* sorted by id */
	size_t n, cap;
};

/* ---- small helpers ---- */

static void free_methods(char **m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i]);
	free(m);
}

void hs_apikey_info_dispose(hs_apikey_info *info)
{
	if (info == NULL)
		return;
	free_methods(info->methods, info->n_methods);
	memset(info, 0, sizeof(*info));
}

void hs_apikey_infos_free(hs_apikey_info *infos, size_t n)
{
	for (size_t i = 0; infos != NULL && i < n; i++)
		hs_apikey_info_dispose(&infos[i]);
	free(infos);
}

static void ent_free(ent *e)
{
	if (e == NULL)
		return;
	free_methods(e->methods, e->n_methods);
	free(e);
}

bool hs_apikey_is_key(const char *token)
{
	return token != NULL && strncmp(token, HS_APIKEY_PREFIX, strlen(HS_APIKEY_PREFIX)) == 0;
}

static bool is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

bool hs_apikey_id_ok(const char *id)
{
	return id != NULL && strlen(id) == HS_APIKEY_ID_LEN && hs_apikey_is_key(id) &&
	       is_lower_hex(id + 4, HS_APIKEY_ID_LEN - 4);
}

/* Splits a comma-joined list (the store's form) into a heap array. */
static int split_methods(const char *joined, char ***out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (joined == NULL || joined[0] == '\0')
		return 0;
	size_t n = 1;
	for (const char *p = joined; *p; p++)
		n += *p == ',';
	char **v = calloc(n, sizeof(*v));
	if (v == NULL)
		return -1;
	size_t k = 0;
	for (const char *p = joined; k < n; k++) {
		const char *c = strchr(p, ',');
		size_t len = c ? (size_t)(c - p) : strlen(p);
		if ((v[k] = strndup(p, len)) == NULL) {
			free_methods(v, k);
			return -1;
		}
		p = c ? c + 1 : p + len;
	}
	*out = v;
	*n_out = n;
	return 0;
}

/* An allowed_methods entry: "<pkg>.<Service>/<Method>" or ".../\*". */
static const char *method_entry(const char *e, hs_error *err)
{
	if (e == NULL)
		return NULL;
	if (e[0] == '/')
		e++;
	size_t len = strlen(e);
	const char *slash = strchr(e, '/');
	if (len == 0 || len > HS_APIKEY_METHOD_MAX || slash == NULL || slash == e ||
	    memchr(e, '.', (size_t)(slash - e)) == NULL) {
		hs_error_set(err, HS_INVALID, "allowed_methods: want \"<package>.<Service>/<Method>\" "
			     "or \"<package>.<Service>/*\", at most %d bytes",
			     HS_APIKEY_METHOD_MAX);
		return NULL;
	}
	for (const char *p = e; p < slash; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '.')) {
			hs_error_set(err, HS_INVALID, "allowed_methods: bad character in a service name");
			return NULL;
		}
	const char *m = slash + 1;
	if (strcmp(m, "*") == 0)
		return e;
	if (*m == '\0')
		goto bad;
	for (const char *p = m; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || *p == '_'))
			goto bad;
	return e;
bad:
	hs_error_set(err, HS_INVALID, "allowed_methods: bad method name (or \"*\")");
	return NULL;
}

/* Whether the entries allow method ("/pkg.Service/Method"). */
static bool method_allowed(char *const *m, size_t n, const char *method)
{
	if (n == 0)
		return true;
	if (method == NULL)
		return false;
	if (method[0] == '/')
		method++;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(m[i]);
		if (len >= 2 && strcmp(m[i] + len - 2, "/*") == 0) {
			if (strncmp(method, m[i], len - 1) == 0 && strchr(method + len - 1, '/') == NULL)
				return true;
		} else if (strcmp(method, m[i]) == 0) {
			return true;
		}
	}
	return false;
}

static void hash_key(const char *key, size_t len, unsigned char out[crypto_hash_sha256_BYTES])
{
	crypto_hash_sha256(out, (const unsigned char *)key, len);
}

/* ---- cache ---- */

/* Index of id, or where it would go (*found false). Caller holds lock. */
static size_t find(const hs_apikeys *ks, const char *id, bool *found)
{
	size_t lo = 0, hi = ks->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(ks->ents[mid]->id, id);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static ent *ent_from_row(const hs_store_apikey_row *r)
{
	ent *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	size_t bin_len = 0;
	if (!hs_apikey_id_ok(r->id) ||
	    sodium_hex2bin(e->hash, sizeof(e->hash), r->secret_hash, strlen(r->secret_hash), NULL,
			   &bin_len, NULL) != 0 ||
	    bin_len != sizeof(e->hash) || split_methods(r->allowed_methods, &e->methods,
							&e->n_methods) != 0) {
		ent_free(e);
		return NULL;
	}
	memcpy(e->id, r->id, HS_APIKEY_ID_LEN + 1);
	snprintf(e->role, sizeof(e->role), "%s", strcmp(r->role, "admin") == 0 ? "admin" : "user");
	e->expires_at_ms = r->expires_at_ms;
	atomic_store(&e->last_used_ms, r->last_used_at_ms);
	return e;
}

/* Puts e in the cache (replacing an entry of its id, keeping the newer
 * last-used time) or, with e NULL, removes id. Takes the write lock. */
static int cache_put(hs_apikeys *ks, const char *id, ent *e)
{
	ent *old = NULL;
	int rc = 0;
	pthread_rwlock_wrlock(&ks->lock);
	bool found;
	size_t i = find(ks, id, &found);
	if (found) {
		old = ks->ents[i];
		if (e != NULL) {
			int64_t lu = atomic_load(&old->last_used_ms);
			if (lu > atomic_load(&e->last_used_ms)) {
				atomic_store(&e->last_used_ms, lu);
				atomic_store(&e->dirty, atomic_load(&old->dirty));
			}
			ks->ents[i] = e;
		} else {
			memmove(&ks->ents[i], &ks->ents[i + 1], (ks->n - i - 1) * sizeof(ent *));
			ks->n--;
		}
	} else if (e != NULL) {
		if (ks->n == ks->cap) {
			size_t cap = ks->cap ? ks->cap * 2 : 16;
			ent **v = realloc(ks->ents, cap * sizeof(*v));
			if (v == NULL) {
				rc = -1;
				goto done;
			}
			ks->ents = v;
			ks->cap = cap;
		}
		memmove(&ks->ents[i + 1], &ks->ents[i], (ks->n - i) * sizeof(ent *));
		ks->ents[i] = e;
		ks->n++;
	}
done:
	pthread_rwlock_unlock(&ks->lock);
	ent_free(old);
	return rc;
}

/* Applies store rows with seq > ks->seq. Caller holds sync_mu. */
static int load_changes(hs_apikeys *ks, hs_error *err)
{
	for (;;) {
		hs_store_apikey_row *rows = NULL;
		size_t n = 0;
		int rc = hs_store_apikey_changes(ks->store, ks->seq, SYNC_PAGE, &rows, &n, err);
		if (rc != HS_OK)
			return rc;
		for (size_t i = 0; i < n; i++) {
			const hs_store_apikey_row *r = &rows[i];
			ent *e = NULL;
			if (r->revoked_at_ms == 0 && (e = ent_from_row(r)) == NULL)
				hs_log(HS_LOG_WARN, "auth", "api key row not usable: skipped",
				       HS_LS("id", r->id));
			if (cache_put(ks, r->id, e) != 0) {
				ent_free(e);
				free(rows);
				return hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
			}
			ks->seq = r->seq;
		}
		free(rows);
		if (n < SYNC_PAGE)
			return HS_OK;
	}
}

/* Writes the dirty last-used times. Caller holds sync_mu. */
static int flush_used(hs_apikeys *ks, hs_error *err)
{
	pthread_rwlock_rdlock(&ks->lock);
	size_t n = 0, cap = ks->n;
	char (*ids)[HS_APIKEY_ID_LEN + 1] = cap ? malloc(cap * sizeof(*ids)) : NULL;
	int64_t *times = cap ? malloc(cap * sizeof(*times)) : NULL;
	const char **ptrs = cap ? malloc(cap * sizeof(*ptrs)) : NULL;
	if (cap > 0 && (ids == NULL || times == NULL || ptrs == NULL)) {
		pthread_rwlock_unlock(&ks->lock);
		free(ids);
		free(times);
		free(ptrs);
		return hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
	}
	for (size_t i = 0; i < ks->n; i++) {
		ent *e = ks->ents[i];
		if (!atomic_exchange(&e->dirty, false))
			continue;
		memcpy(ids[n], e->id, sizeof(ids[n]));
		ptrs[n] = ids[n];
		times[n] = atomic_load(&e->last_used_ms);
		n++;
	}
	pthread_rwlock_unlock(&ks->lock);
	int rc = hs_store_apikey_touch(ks->store, ptrs, times, n, err);
	if (rc != HS_OK) { /* try again at the next sync */
		pthread_rwlock_rdlock(&ks->lock);
		for (size_t i = 0; i < n; i++) {
			bool found;
			size_t k = find(ks, ids[i], &found);
			if (found)
				atomic_store(&ks->ents[k]->dirty, true);
		}
		pthread_rwlock_unlock(&ks->lock);
	}
	free(ids);
	free(times);
	free(ptrs);
	return rc;
}

int hs_apikeys_sync(hs_apikeys *ks, hs_error *err)
{
	pthread_mutex_lock(&ks->sync_mu);
	int rc = flush_used(ks, err);
	int rc2 = load_changes(ks, rc == HS_OK ? err : NULL);
	pthread_mutex_unlock(&ks->sync_mu);
	return rc != HS_OK ? rc : rc2;
}

int hs_apikeys_new(hs_apikeys **out, hs_store *store, hs_error *err)
{
	if (store == NULL)
		return hs_error_set(err, HS_INVALID, "api keys: the store is required");
	if (sodium_init() < 0)
		return hs_error_set(err, HS_INTERNAL, "api keys: libsodium failed to initialise");
	hs_apikeys *ks = calloc(1, sizeof(*ks));
	if (ks == NULL)
		return hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
	ks->store = store;
	pthread_mutex_init(&ks->sync_mu, NULL);
	pthread_rwlock_init(&ks->lock, NULL);
	pthread_mutex_lock(&ks->sync_mu);
	int rc = load_changes(ks, err);
	pthread_mutex_unlock(&ks->sync_mu);
	if (rc != HS_OK) {
		hs_apikeys_free(ks);
		return rc;
	}
	*out = ks;
	return HS_OK;
}

void hs_apikeys_free(hs_apikeys *ks)
{
	if (ks == NULL)
		return;
	hs_error e = { 0 };
	pthread_mutex_lock(&ks->sync_mu);
	if (flush_used(ks, &e) != HS_OK)
		hs_log(HS_LOG_WARN, "auth", "api key last-used times not written",
		       HS_LS("error", e.msg));
	pthread_mutex_unlock(&ks->sync_mu);
	for (size_t i = 0; i < ks->n; i++)
		ent_free(ks->ents[i]);
	free(ks->ents);
	pthread_rwlock_destroy(&ks->lock);
	pthread_mutex_destroy(&ks->sync_mu);
	free(ks);
}

/* ---- management ---- */

static int info_from_row(hs_apikeys *ks, const hs_store_apikey_row *r, hs_apikey_info *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", r->id);
	snprintf(out->name, sizeof(out->name), "%s", r->name);
	snprintf(out->role, sizeof(out->role), "%s", r->role);
	snprintf(out->created_by, sizeof(out->created_by), "%s", r->created_by);
	out->created_at_ms = r->created_at_ms;
	out->expires_at_ms = r->expires_at_ms;
	out->last_used_at_ms = r->last_used_at_ms;
	out->revoked_at_ms = r->revoked_at_ms;
	pthread_rwlock_rdlock(&ks->lock);
	bool found;
	size_t i = find(ks, r->id, &found);
	if (found && atomic_load(&ks->ents[i]->last_used_ms) > out->last_used_at_ms)
		out->last_used_at_ms = atomic_load(&ks->ents[i]->last_used_ms);
	pthread_rwlock_unlock(&ks->lock);
	return split_methods(r->allowed_methods, &out->methods, &out->n_methods);
}

static int check_name(const char *name, hs_error *err)
{
	if (name == NULL || name[0] == '\0')
		return hs_error_set(err, HS_INVALID, "name: required");
	if (strlen(name) > HS_APIKEY_NAME_MAX)
		return hs_error_set(err, HS_INVALID, "name: longer than %d bytes", HS_APIKEY_NAME_MAX);
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return hs_error_set(err, HS_INVALID, "name: control characters");
	return HS_OK;
}

/* Validates and joins spec's methods into row->allowed_methods. */
static int join_methods(const hs_apikey_spec *spec, hs_store_apikey_row *row, hs_error *err)
{
	if (spec->n_methods > HS_APIKEY_METHODS_MAX)
		return hs_error_set(err, HS_INVALID, "allowed_methods: more than %d entries",
				    HS_APIKEY_METHODS_MAX);
	size_t len = 0;
	for (size_t i = 0; i < spec->n_methods; i++) {
		const char *e = method_entry(spec->methods[i], err);
		if (e == NULL)
			return HS_INVALID;
		size_t el = strlen(e);
		if (len + el + 2 > sizeof(row->allowed_methods))
			return hs_error_set(err, HS_INVALID, "allowed_methods: too long in total");
		if (i > 0)
			row->allowed_methods[len++] = ',';
		memcpy(row->allowed_methods + len, e, el + 1);
		len += el;
	}
	return HS_OK;
}

int hs_apikeys_create(hs_apikeys *ks, const hs_apikey_spec *spec, int64_t now_ms,
		      hs_apikey_info *info_out, char **key_out, hs_error *err)
{
	int rc;
	hs_store_apikey_row *row = calloc(1, sizeof(*row));
	char *key = NULL;
	ent *e = NULL;
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
	const char *role = spec->role != NULL && spec->role[0] != '\0' ? spec->role : "user";
	if ((rc = check_name(spec->name, err)) != HS_OK)
		goto done;
	if (strcmp(role, "user") != 0 && strcmp(role, "admin") != 0) {
		rc = hs_error_set(err, HS_INVALID, "role: \"user\" or \"admin\"");
		goto done;
	}
	if (spec->expires_at_ms != 0 && spec->expires_at_ms <= now_ms) {
		rc = hs_error_set(err, HS_INVALID, "expires_at: must be in the future");
		goto done;
	}
	if ((rc = join_methods(spec, row, err)) != HS_OK)
		goto done;
	snprintf(row->name, sizeof(row->name), "%s", spec->name);
	snprintf(row->role, sizeof(row->role), "%s", role);
	snprintf(row->created_by, sizeof(row->created_by), "%s",
		 spec->created_by ? spec->created_by : "");
	row->created_at_ms = now_ms;
	row->expires_at_ms = spec->expires_at_ms;

	pthread_mutex_lock(&ks->sync_mu);
	int64_t active = 0;
	if ((rc = hs_store_apikey_count_active(ks->store, &active, err)) != HS_OK)
		goto unlock;
	if (active >= HS_APIKEY_ACTIVE_MAX) {
		rc = hs_error_set(err, HS_LIMIT, "api keys: %d active keys already (revoke unused "
				  "ones)", HS_APIKEY_ACTIVE_MAX);
		goto unlock;
	}
	if ((key = malloc(HS_APIKEY_LEN + 1)) == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
		goto unlock;
	}
	for (int attempt = 0; attempt < 3; attempt++) {
		unsigned char idb[ID_BYTES], secret[SECRET_BYTES], h[crypto_hash_sha256_BYTES];
		char hex[ID_BYTES * 2 + 1];
		randombytes_buf(idb, sizeof(idb));
		randombytes_buf(secret, sizeof(secret));
		sodium_bin2hex(hex, sizeof(hex), idb, sizeof(idb));
		memcpy(key, HS_APIKEY_PREFIX, 4);
		memcpy(key + 4, hex, ID_BYTES * 2);
		key[HS_APIKEY_ID_LEN] = '_';
		sodium_bin2base64(key + HS_APIKEY_ID_LEN + 1, HS_APIKEY_LEN - HS_APIKEY_ID_LEN, secret,
				  sizeof(secret), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		sodium_memzero(secret, sizeof(secret));
		memcpy(row->id, key, HS_APIKEY_ID_LEN);
		row->id[HS_APIKEY_ID_LEN] = '\0';
		hash_key(key, HS_APIKEY_LEN, h);
		sodium_bin2hex(row->secret_hash, HASH_HEX, h, sizeof(h));
		hs_error_clear(err);
		if ((rc = hs_store_apikey_insert(ks->store, row, err)) != HS_EXISTS)
			break;
	}
	if (rc != HS_OK)
		goto unlock;
	if ((e = ent_from_row(row)) == NULL || cache_put(ks, row->id, e) != 0) {
		ent_free(e);
		/* stored but not cached: the next sync caches it */
		rc = hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
		goto unlock;
	}
	if ((rc = info_from_row(ks, row, info_out)) != 0)
		rc = hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
unlock:
	pthread_mutex_unlock(&ks->sync_mu);
done:
	if (rc == HS_OK) {
		*key_out = key;
		key = NULL;
		hs_log(HS_LOG_INFO, "auth", "api key created", HS_LS("id", row->id),
		       HS_LS("role", row->role), HS_LS("by", row->created_by));
	}
	if (key != NULL) {
		sodium_memzero(key, HS_APIKEY_LEN + 1);
		free(key);
	}
	free(row);
	return rc;
}

int hs_apikeys_list(hs_apikeys *ks, const char *after_id, size_t limit, bool include_revoked,
		    hs_apikey_info **out, size_t *n_out, hs_error *err)
{
	hs_store_apikey_row *rows = NULL;
	size_t n = 0;
	int rc = hs_store_apikey_list(ks->store, after_id, limit, include_revoked, &rows, &n, err);
	if (rc != HS_OK)
		return rc;
	hs_apikey_info *v = n ? calloc(n, sizeof(*v)) : NULL;
	if (n > 0 && v == NULL) {
		free(rows);
		return hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
	}
	for (size_t i = 0; i < n; i++)
		if (info_from_row(ks, &rows[i], &v[i]) != 0) {
			hs_apikey_infos_free(v, n);
			free(rows);
			return hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
		}
	free(rows);
	*out = v;
	*n_out = n;
	return HS_OK;
}

int hs_apikeys_get(hs_apikeys *ks, const char *id, hs_apikey_info *out, hs_error *err)
{
	hs_store_apikey_row row;
	if (!hs_apikey_id_ok(id))
		return hs_error_set(err, HS_NOT_FOUND, "api key not found");
	int rc = hs_store_apikey_get(ks->store, id, &row, err);
	if (rc == HS_NOT_FOUND)
		return hs_error_set(err, HS_NOT_FOUND, "api key %s not found", id);
	if (rc == HS_OK && info_from_row(ks, &row, out) != 0)
		rc = hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
	return rc;
}

int hs_apikeys_revoke(hs_apikeys *ks, const char *id, int64_t now_ms, hs_apikey_info *out,
		      hs_error *err)
{
	hs_store_apikey_row row;
	if (id == NULL || id[0] == '\0')
		return hs_error_set(err, HS_INVALID, "id: required");
	if (!hs_apikey_id_ok(id))
		return hs_error_set(err, HS_NOT_FOUND, "api key not found");
	pthread_mutex_lock(&ks->sync_mu);
	int rc = hs_store_apikey_revoke(ks->store, id, now_ms, &row, err);
	if (rc == HS_OK)
		cache_put(ks, id, NULL);
	pthread_mutex_unlock(&ks->sync_mu);
	if (rc == HS_NOT_FOUND)
		return hs_error_set(err, HS_NOT_FOUND, "api key %s not found", id);
	if (rc != HS_OK)
		return rc;
	hs_log(HS_LOG_INFO, "auth", "api key revoked", HS_LS("id", id));
	if (out != NULL && info_from_row(ks, &row, out) != 0)
		return hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
	return HS_OK;
}

/* One key and who made it (a user's id or another key's id). Revoked keys
 * are links of the chain too: a key made by a key revoked earlier is still
 * its creator's. */
typedef struct made_by {
	char id[HS_STORE_ID_MAX];
	char by[HS_STORE_ID_MAX];
	bool doomed, active;
} made_by;

#define REVOKE_PAGE 256

int hs_apikeys_revoke_created_by(hs_apikeys *ks, const char *creator, int64_t now_ms,
				 size_t *revoked, hs_error *err)
{
	made_by *v = NULL;
	size_t n = 0, cap = 0, done = 0;
	char after[HS_STORE_ID_MAX] = "";
	hs_store_apikey_row *rows = NULL;
	int rc = HS_OK;
	if (creator == NULL || creator[0] == '\0') {
		rc = hs_error_set(err, HS_INVALID, "creator: required");
		goto done;
	}
	for (;;) { /* every key, revoked ones included (see made_by) */
		size_t got = 0;
		if ((rc = hs_store_apikey_list(ks->store, after, REVOKE_PAGE, true, &rows, &got,
					       err)) != HS_OK)
			goto done;
		if (n + got > cap) {
			size_t ncap = (n + got) * 2;
			made_by *nv = realloc(v, ncap * sizeof(*nv));
			if (nv == NULL) {
				rc = hs_error_set(err, HS_INTERNAL, "api keys: out of memory");
				goto done;
			}
			v = nv;
			cap = ncap;
		}
		for (size_t i = 0; i < got; i++) {
			snprintf(v[n].id, sizeof(v[n].id), "%s", rows[i].id);
			snprintf(v[n].by, sizeof(v[n].by), "%s", rows[i].created_by);
			v[n].active = rows[i].revoked_at_ms == 0;
			v[n++].doomed = false;
		}
		if (got > 0)
			snprintf(after, sizeof(after), "%s", rows[got - 1].id);
		free(rows);
		rows = NULL;
		if (got < REVOKE_PAGE)
			break;
	}
	/* The closure: keys creator made, keys those keys made, ... (one pass
	 * per link of the longest chain). */
	for (bool more = true; more;) {
		more = false;
		for (size_t i = 0; i < n; i++) {
			if (v[i].doomed)
				continue;
			bool hit = strcmp(v[i].by, creator) == 0;
			if (!hit) { /* made by a doomed key? v is sorted by id */
				size_t lo = 0, hi = n;
				while (lo < hi) {
					size_t mid = lo + (hi - lo) / 2;
					int c = strcmp(v[mid].id, v[i].by);
					if (c == 0) {
						hit = v[mid].doomed;
						break;
					}
					if (c < 0)
						lo = mid + 1;
					else
						hi = mid;
				}
			}
			if (hit)
				v[i].doomed = more = true;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (v[i].doomed && v[i].active) {
			if ((rc = hs_apikeys_revoke(ks, v[i].id, now_ms, NULL, err)) != HS_OK &&
			    rc != HS_NOT_FOUND)
				goto done;
			rc = HS_OK;
			done++;
		}
	if (done > 0)
		hs_log(HS_LOG_INFO, "auth", "api keys revoked with their creator",
		       HS_LS("creator", creator), HS_LI("count", (int64_t)done));
	if (revoked != NULL)
		*revoked = done;
done:
	free(rows);
	free(v);
	return rc;
}

/* ---- verification ---- */

/* The checks after the key is known to be e's. Caller holds the read lock. */
static int admit(ent *e, const char *method, int64_t now_ms, hs_apikey_principal *out,
		 hs_error *err)
{
	if (e->expires_at_ms != 0 && now_ms >= e->expires_at_ms)
		return hs_error_set(err, HS_UNAUTH, "API key expired");
	if (!method_allowed(e->methods, e->n_methods, method))
		return hs_error_set(err, HS_DENIED, "API key %s may not call %s", e->id,
				    method != NULL && method[0] == '/' ? method + 1
								       : method ? method : "?");
	memcpy(out->id, e->id, sizeof(out->id));
	memcpy(out->role, e->role, sizeof(out->role));
	if (now_ms - atomic_load_explicit(&e->last_used_ms, memory_order_relaxed) >=
	    USE_RESOLUTION_MS) {
		atomic_store_explicit(&e->last_used_ms, now_ms, memory_order_relaxed);
		atomic_store(&e->dirty, true);
	}
	return HS_OK;
}

int hs_apikeys_verify(hs_apikeys *ks, const char *key, const char *method, int64_t now_ms,
		      hs_apikey_principal *out, hs_error *err)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	char id[HS_APIKEY_ID_LEN + 1];
	if (key == NULL || strnlen(key, HS_APIKEY_LEN + 1) != HS_APIKEY_LEN ||
	    key[HS_APIKEY_ID_LEN] != '_')
		return hs_error_set(err, HS_UNAUTH, "invalid API key");
	memcpy(id, key, HS_APIKEY_ID_LEN);
	id[HS_APIKEY_ID_LEN] = '\0';
	if (!hs_apikey_id_ok(id))
		return hs_error_set(err, HS_UNAUTH, "invalid API key");
	hash_key(key, HS_APIKEY_LEN, h);
	pthread_rwlock_rdlock(&ks->lock);
	bool found;
	size_t i = find(ks, id, &found);
	int rc;
	/* Unknown, revoked (dropped from the cache) and a wrong secret look
	 * the same; the secret is compared in constant time. */
	if (!found || sodium_memcmp(ks->ents[i]->hash, h, sizeof(h)) != 0)
		rc = hs_error_set(err, HS_UNAUTH, "invalid API key");
	else
		rc = admit(ks->ents[i], method, now_ms, out, err);
	pthread_rwlock_unlock(&ks->lock);
	return rc;
}

int hs_apikeys_verify_id(hs_apikeys *ks, const char *id, const char *method, int64_t now_ms,
			 hs_apikey_principal *out, hs_error *err)
{
	if (!hs_apikey_id_ok(id))
		return hs_error_set(err, HS_UNAUTH, "unknown or revoked API key");
	pthread_rwlock_rdlock(&ks->lock);
	bool found;
	size_t i = find(ks, id, &found);
	int rc = found ? admit(ks->ents[i], method, now_ms, out, err)
		       : hs_error_set(err, HS_UNAUTH, "unknown or revoked API key");
	pthread_rwlock_unlock(&ks->lock);
	return rc;
}
