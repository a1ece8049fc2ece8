/* The revocation set (revoke.h): a chained hash table of "<kind>:<id>" keys
 * under a read-write lock; the authenticator only reads. Expired entries
 * go at refresh time (the owner's periodic call) and when the table would
 * grow. */
#include "revoke.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

#define KEY_MAX (HS_STORE_ID_MAX + 2)

typedef struct node {
	struct node *next;
	unsigned long long hash;
	long long revoked_at_ms, expires_at_ms;
	char key[KEY_MAX];
} node;

struct hs_revocations {
	pthread_rwlock_t lock;
	hs_store *store;
	node **buckets;
	size_t nbuckets, n;
	long long last_seq;  /* highest store seq seen */
	long long next_sweep; /* when expired rows are next deleted from the store */
};

#define SWEEP_INTERVAL_MS 60000 /* a DELETE is a write: once a minute is plenty */

static const char *const kind_names[] = { "user", "session", "token" };
static const char kind_prefix[] = { 'u', 's', 't' };

static unsigned long long fnv1a(const char *s)
{
	unsigned long long h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* "<k>:<id>" into key; false when id is empty or too long. */
static bool make_key(char *key, hs_revoke_kind kind, const char *id)
{
	size_t n = id != NULL ? strlen(id) : 0;
	if (n == 0 || n + 3 > KEY_MAX || (unsigned)kind > HS_REVOKE_TOKEN)
		return false;
	key[0] = kind_prefix[kind];
	key[1] = ':';
	memcpy(key + 2, id, n + 1);
	return true;
}

static node *find_locked(hs_revocations *r, const char *key, unsigned long long h)
{
	for (node *e = r->buckets[h & (r->nbuckets - 1)]; e != NULL; e = e->next)
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void purge_locked(hs_revocations *r, long long now)
{
	for (size_t b = 0; b < r->nbuckets; b++) {
		node **p = &r->buckets[b];
		while (*p != NULL) {
			if ((*p)->expires_at_ms <= now) {
				node *dead = *p;
				*p = dead->next;
				free(dead);
				r->n--;
			} else {
				p = &(*p)->next;
			}
		}
	}
}

static void grow_locked(hs_revocations *r)
{
	size_t nb = r->nbuckets * 2;
	node **b = calloc(nb, sizeof(*b));
	if (b == NULL)
		return; /* keep the longer chains: still correct */
	for (size_t i = 0; i < r->nbuckets; i++) {
		for (node *e = r->buckets[i], *next; e != NULL; e = next) {
			next = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	}
	free(r->buckets);
	r->buckets = b;
	r->nbuckets = nb;
}

/* Adds or updates key in memory; HS_INTERNAL when out of memory. */
static int put_locked(hs_revocations *r, const char *key, long long revoked_at_ms,
		      long long expires_at_ms)
{
	unsigned long long h = fnv1a(key);
	node *e = find_locked(r, key, h);
	if (e != NULL) {
		if (revoked_at_ms > e->revoked_at_ms)
			e->revoked_at_ms = revoked_at_ms;
		if (expires_at_ms > e->expires_at_ms)
			e->expires_at_ms = expires_at_ms;
		return HS_OK;
	}
	if (r->n >= r->nbuckets) {
		purge_locked(r, hs_clock_wall_ms());
		if (r->n >= r->nbuckets)
			grow_locked(r);
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return HS_INTERNAL;
	memcpy(e->key, key, strlen(key) + 1);
	e->hash = h;
	e->revoked_at_ms = revoked_at_ms;
	e->expires_at_ms = expires_at_ms;
	e->next = r->buckets[h & (r->nbuckets - 1)];
	r->buckets[h & (r->nbuckets - 1)] = e;
	r->n++;
	return HS_OK;
}

static int kind_of(const char *name, hs_revoke_kind *out)
{
	for (int k = HS_REVOKE_USER; k <= HS_REVOKE_TOKEN; k++) {
		if (strcmp(name, kind_names[k]) == 0) {
			*out = (hs_revoke_kind)k;
			return 0;
		}
	}
	return -1;
}

int hs_revocations_refresh(hs_revocations *r, hs_error *err)
{
	if (r->store == NULL) {
		pthread_rwlock_wrlock(&r->lock);
		purge_locked(r, hs_clock_wall_ms());
		pthread_rwlock_unlock(&r->lock);
		return HS_OK;
	}
	long long now = hs_clock_wall_ms();
	for (;;) {
		hs_store_revocation_row *rows = NULL;
		size_t n = 0;
		pthread_rwlock_rdlock(&r->lock);
		long long after = r->last_seq;
		pthread_rwlock_unlock(&r->lock);
		int rc = hs_store_revocation_list(r->store, after, now, HS_STORE_LIST_MAX, &rows, &n,
						  err);
		if (rc != HS_OK)
			return rc;
		pthread_rwlock_wrlock(&r->lock);
		for (size_t i = 0; i < n; i++) {
			char key[KEY_MAX];
			hs_revoke_kind k;
			if (kind_of(rows[i].kind, &k) == 0 && make_key(key, k, rows[i].id) &&
			    put_locked(r, key, rows[i].revoked_at_ms, rows[i].expires_at_ms) != HS_OK)
				rc = hs_error_set(err, HS_INTERNAL, "revocations: out of memory");
			if (rows[i].seq > r->last_seq)
				r->last_seq = rows[i].seq;
		}
		if (n < HS_STORE_LIST_MAX)
			purge_locked(r, now);
		pthread_rwlock_unlock(&r->lock);
		free(rows);
		if (rc != HS_OK)
			return rc;
		if (n < HS_STORE_LIST_MAX)
			break;
	}
	pthread_rwlock_wrlock(&r->lock);
	bool sweep = now >= r->next_sweep;
	if (sweep)
		r->next_sweep = now + SWEEP_INTERVAL_MS;
	pthread_rwlock_unlock(&r->lock);
	return sweep ? hs_store_revocation_delete_expired(r->store, now, NULL, err) : HS_OK;
}

int hs_revocations_new(hs_revocations **out, hs_store *store, hs_error *err)
{
	hs_revocations *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return hs_error_set(err, HS_INTERNAL, "revocations: out of memory");
	r->nbuckets = 64;
	if ((r->buckets = calloc(r->nbuckets, sizeof(*r->buckets))) == NULL) {
		free(r);
		return hs_error_set(err, HS_INTERNAL, "revocations: out of memory");
	}
	pthread_rwlock_init(&r->lock, NULL);
	r->store = store;
	int rc = hs_revocations_refresh(r, err);
	if (rc != HS_OK) {
		hs_revocations_free(r);
		return rc;
	}
	*out = r;
	return HS_OK;
}

void hs_revocations_free(hs_revocations *r)
{
	if (r == NULL)
		return;
	for (size_t b = 0; b < r->nbuckets; b++) {
		for (node *e = r->buckets[b], *next; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(r->buckets);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

int hs_revocations_add(hs_revocations *r, hs_revoke_kind kind, const char *id,
		       long long revoked_at_ms, long long expires_at_ms, hs_error *err)
{
	char key[KEY_MAX];
	int rc;
	if (!make_key(key, kind, id))
		return hs_error_set(err, HS_INVALID, "revocation: bad id");
	if (r->store != NULL) {
		hs_store_revocation_row row;
		memset(&row, 0, sizeof(row));
		memcpy(row.kind, kind_names[kind], strlen(kind_names[kind]) + 1);
		memcpy(row.id, id, strlen(id) + 1);
		row.revoked_at_ms = revoked_at_ms;
		row.expires_at_ms = expires_at_ms;
		if ((rc = hs_store_revocation_put(r->store, &row, err)) != HS_OK)
			return rc;
	}
	pthread_rwlock_wrlock(&r->lock);
	rc = put_locked(r, key, revoked_at_ms, expires_at_ms);
	pthread_rwlock_unlock(&r->lock);
	if (rc != HS_OK)
		return hs_error_set(err, rc, "revocations: out of memory");
	return HS_OK;
}

/* The entry for (kind, id) if live at now: its revocation time, else -1. */
static long long live_locked(hs_revocations *r, hs_revoke_kind kind, const char *id,
			     long long now)
{
	char key[KEY_MAX];
	if (id == NULL || !make_key(key, kind, id))
		return -1;
	node *e = find_locked(r, key, fnv1a(key));
	return e != NULL && e->expires_at_ms > now ? e->revoked_at_ms : -1;
}

bool hs_revocations_refuses(hs_revocations *r, const char *sub, const char *sid, const char *jti,
			    long long iat_s, long long now_ms)
{
	long long now = now_ms != 0 ? now_ms : hs_clock_wall_ms();
	bool refused = false;
	pthread_rwlock_rdlock(&r->lock);
	if (r->n > 0) {
		long long at = live_locked(r, HS_REVOKE_USER, sub, now);
		/* iat has whole seconds: a token of the revocation's second is
		 * refused too (none can be issued after it anyway) */
		if (at >= 0 && (iat_s <= 0 || iat_s <= at / 1000))
			refused = true;
		if (!refused && live_locked(r, HS_REVOKE_SESSION, sid, now) >= 0)
			refused = true;
		if (!refused && live_locked(r, HS_REVOKE_TOKEN, jti, now) >= 0)
			refused = true;
	}
	pthread_rwlock_unlock(&r->lock);
	return refused;
}

size_t hs_revocations_size(hs_revocations *r)
{
	pthread_rwlock_rdlock(&r->lock);
	size_t n = r->n;
	pthread_rwlock_unlock(&r->lock);
	return n;
}
