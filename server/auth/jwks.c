/* JWKS fetching and key lookup (jwks.h).
 *
 * The key set is an immutable array swapped under a write lock; lookups
 * and verifications hold the read lock. The fetcher thread is the only one
 * doing I/O:
 *
 *   idle --(periodic due, or requested and min_interval passed)--> fetching
 *     ^                                                               |
 *     +------ generation++, set swapped if the document was usable <--+
 *
 * requested is set by a verification that met an unknown kid (if
 * min_interval has passed since the last fetch started, else the kid is
 * simply unknown) and by hs_jwks_ensure. */
#include "jwks.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "clock.h"
#include "curl_once.h"
#include "log.h"

#define TIMEOUT_DEFAULT_MS 5000
#define MIN_INTERVAL_DEFAULT_MS 1000
#define REFRESH_DEFAULT_MS 300000
#define RETRY_EMPTY_MS 5000

#define UNKNOWN_MEMO 64

/* A kid a call asked for that the set did not have: the fetch that will
 * answer for it is the successful one that makes loaded reach want (a
 * failed fetch answers nothing: the kid stays pending, UNAVAILABLE). */
typedef struct unknown_kid {
	char kid[HS_JWKS_KID_MAX + 1];
	uint64_t want;
	int64_t at_ms; /* monotonic; entries older than refresh_ms are forgotten */
} unknown_kid;

typedef struct jwk {
	char kid[HS_JWKS_KID_MAX + 1];
	hs_jwt_key *key;
} jwk;

struct hs_jwks {
	char *url;
	int timeout_ms, min_interval_ms, refresh_ms;
	pthread_rwlock_t lock; /* keys */
	jwk *keys;
	size_t n_keys;
	_Atomic uint64_t key_set; /* bumped whenever a new set is installed */
	pthread_mutex_t mu; /* everything below */
	pthread_cond_t cv;  /* CLOCK_MONOTONIC */
	bool requested, fetching, stopping, thread_started;
	atomic_bool abort_fetch; /* set by hs_jwks_free: a fetch in progress ends now */
	int64_t last_start_ms; /* monotonic; 0 = never */
	uint64_t generation;   /* fetches finished */
	uint64_t loaded;       /* fetches that installed a set: what an unknown kid waits for */
	uint64_t fetches;
	unknown_kid unknown[UNKNOWN_MEMO]; /* least recently asked first out */
	size_t n_unknown;
	pthread_t thread;
};

static void free_keys(jwk *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hs_jwt_key_free(keys[i].key);
	free(keys);
}

/* ---- documents ---- */

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* One JWK -> key; NULL (with the reason in err) when not usable here. */
static hs_jwt_key *parse_jwk(json_t *k, hs_error *err)
{
	const char *kty = json_string_value(json_object_get(k, "kty"));
	const char *use = json_string_value(json_object_get(k, "use"));
	const char *alg = json_string_value(json_object_get(k, "alg"));
	hs_jwt_key *key = NULL;
	if (use != NULL && strcmp(use, "sig") != 0) {
		hs_error_set(err, HS_INVALID, "use is not sig");
		return NULL;
	}
	if (kty != NULL && strcmp(kty, "RSA") == 0 && (alg == NULL || strcmp(alg, "RS256") == 0))
		hs_jwt_key_new_rsa_jwk(&key, json_string_value(json_object_get(k, "n")),
				       json_string_value(json_object_get(k, "e")), err);
	else if (kty != NULL && strcmp(kty, "EC") == 0 && (alg == NULL || strcmp(alg, "ES256") == 0) &&
		 json_is_string(json_object_get(k, "crv")) &&
		 strcmp(json_string_value(json_object_get(k, "crv")), "P-256") == 0)
		hs_jwt_key_new_ec_jwk(&key, json_string_value(json_object_get(k, "x")),
				      json_string_value(json_object_get(k, "y")), err);
	else
		hs_error_set(err, HS_INVALID, "not an RS256 RSA or ES256 P-256 key");
	return key;
}

int hs_jwks_load(hs_jwks *j, const char *json, size_t len, size_t *n_keys, hs_error *err)
{
	if (len > HS_JWKS_MAX_BYTES)
		return hs_error_set(err, HS_INVALID, "jwks: larger than %d bytes", HS_JWKS_MAX_BYTES);
	json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *arr = json_object_get(doc, "keys");
	if (!json_is_array(arr)) {
		json_decref(doc);
		return hs_error_set(err, HS_INVALID, "jwks: not a JSON Web Key Set ({\"keys\": [...]})");
	}
	size_t n = 0, i;
	json_t *k;
	jwk *keys = calloc(HS_JWKS_MAX_KEYS, sizeof(*keys));
	if (keys == NULL) {
		json_decref(doc);
		return hs_error_set(err, HS_INTERNAL, "jwks: out of memory");
	}
	json_array_foreach(arr, i, k) {
		const char *kid = json_string_value(json_object_get(k, "kid"));
		hs_error kerr = { 0 };
		if (n == HS_JWKS_MAX_KEYS) {
			hs_log(HS_LOG_WARN, "auth", "jwks: more keys than kept; the rest ignored",
			       HS_LI("max", HS_JWKS_MAX_KEYS));
			break;
		}
		if (!json_is_object(k) ||
		    (kid != NULL && (strlen(kid) == 0 || strlen(kid) > HS_JWKS_KID_MAX || !printable(kid)))) {
			hs_log(HS_LOG_WARN, "auth", "jwks: key with a bad kid ignored");
			continue;
		}
		hs_jwt_key *key = parse_jwk(k, &kerr);
		if (key == NULL) {
			hs_log(HS_LOG_WARN, "auth", "jwks: key ignored", HS_LS("kid", kid ? kid : ""),
			       HS_LS("error", kerr.msg));
			continue;
		}
		snprintf(keys[n].kid, sizeof(keys[n].kid), "%s", kid ? kid : "");
		keys[n++].key = key;
	}
	json_decref(doc);
	if (n == 0) {
		free(keys);
		return hs_error_set(err, HS_INVALID, "jwks: no usable key (RSA RS256 or EC P-256 ES256)");
	}
	pthread_rwlock_wrlock(&j->lock);
	jwk *old = j->keys;
	size_t old_n = j->n_keys;
	j->keys = keys;
	j->n_keys = n;
	atomic_fetch_add(&j->key_set, 1);
	pthread_rwlock_unlock(&j->lock);
	free_keys(old, old_n);
	if (n_keys != NULL)
		*n_keys = n;
	return HS_OK;
}

uint64_t hs_jwks_key_set(hs_jwks *j)
{
	return atomic_load(&j->key_set);
}

/* ---- fetching ---- */

typedef struct body {
	char *p;
	size_t len;
	bool overflow;
} body;

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
	body *b = userp;
	size_t n = size * nmemb;
	if (b->len + n > HS_JWKS_MAX_BYTES) {
		b->overflow = true;
		return 0;
	}
	char *p = realloc(b->p, b->len + n + 1);
	if (p == NULL)
		return 0;
	memcpy(p + b->len, data, n);
	b->p = p;
	b->len += n;
	p[b->len] = '\0';
	return n;
}

static int on_progress(void *p, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	return atomic_load(&((hs_jwks *)p)->abort_fetch) ? 1 : 0;
}

static int fetch(hs_jwks *j, hs_error *err)
{
	body b = { 0 };
	char ebuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	int rc = HS_OK;
	CURL *h = curl_easy_init();
	struct curl_slist *hdr = curl_slist_append(NULL, "Accept: application/json");
	if (h == NULL || hdr == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "jwks: out of memory");
		goto done;
	}
	curl_easy_setopt(h, CURLOPT_URL, j->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)j->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)j->timeout_ms);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, j);
	CURLcode cc = curl_easy_perform(h);
	if (b.overflow) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "jwks: response larger than %d bytes",
				  HS_JWKS_MAX_BYTES);
		goto done;
	}
	if (cc != CURLE_OK) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "jwks: %s",
				  ebuf[0] ? ebuf : curl_easy_strerror(cc));
		goto done;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "jwks: HTTP status %ld", status);
		goto done;
	}
	size_t n = 0;
	if ((rc = hs_jwks_load(j, b.p ? b.p : "", b.len, &n, err)) == HS_OK)
		hs_log(HS_LOG_INFO, "auth", "jwks loaded", HS_LI("keys", n));
done:
	curl_slist_free_all(hdr);
	if (h != NULL)
		curl_easy_cleanup(h);
	free(b.p);
	return rc;
}

static void *fetcher_main(void *arg)
{
	hs_jwks *j = arg;
	pthread_mutex_lock(&j->mu);
	while (!j->stopping) {
		int64_t now = hs_clock_mono_ms();
		pthread_rwlock_rdlock(&j->lock);
		bool empty = j->n_keys == 0;
		pthread_rwlock_unlock(&j->lock);
		int64_t periodic = j->last_start_ms == 0 ? now
				   : j->last_start_ms + (empty && j->refresh_ms > RETRY_EMPTY_MS
								 ? RETRY_EMPTY_MS
								 : j->refresh_ms);
		int64_t next = periodic;
		if (j->requested && j->last_start_ms + j->min_interval_ms < next)
			next = j->last_start_ms + j->min_interval_ms;
		if (now < next) {
			struct timespec until = hs_clock_deadline(CLOCK_MONOTONIC, next - now);
			pthread_cond_timedwait(&j->cv, &j->mu, &until);
			continue;
		}
		j->requested = false;
		j->fetching = true;
		j->last_start_ms = now;
		j->fetches++;
		pthread_mutex_unlock(&j->mu);
		hs_error e = { 0 };
		bool ok = fetch(j, &e) == HS_OK;
		if (!ok)
			hs_log(HS_LOG_WARN, "auth", "jwks fetch failed: keeping the previous keys",
			       HS_LS("error", e.msg));
		pthread_mutex_lock(&j->mu);
		j->fetching = false;
		j->generation++;
		if (ok)
			j->loaded++;
		pthread_cond_broadcast(&j->cv);
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

void hs_jwks_free(hs_jwks *j)
{
	if (j == NULL)
		return;
	if (j->thread_started) {
		atomic_store(&j->abort_fetch, true);
		pthread_mutex_lock(&j->mu);
		j->stopping = true;
		pthread_cond_broadcast(&j->cv);
		pthread_mutex_unlock(&j->mu);
		pthread_join(j->thread, NULL);
	}
	free_keys(j->keys, j->n_keys);
	pthread_rwlock_destroy(&j->lock);
	pthread_cond_destroy(&j->cv);
	pthread_mutex_destroy(&j->mu);
	free(j->url);
	free(j);
}

int hs_jwks_new(hs_jwks **out, const hs_jwks_config *cfg, hs_error *err)
{
	const char *url = cfg != NULL ? cfg->url : NULL;
	int rc;
	if (url != NULL &&
	    ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
	     strlen(url) > 2048 || !printable(url) || strchr(url, ' ') != NULL))
		return hs_error_set(err, HS_INVALID, "jwt jwks url: expected http(s)://...");
	if (url != NULL && (rc = hs_curl_global_init(err)) != HS_OK)
		return rc;
	hs_jwks *j = calloc(1, sizeof(*j));
	if (j == NULL || (url != NULL && (j->url = strdup(url)) == NULL)) {
		free(j);
		return hs_error_set(err, HS_INTERNAL, "jwks: out of memory");
	}
	j->timeout_ms = cfg && cfg->timeout_ms > 0 ? cfg->timeout_ms : TIMEOUT_DEFAULT_MS;
	j->min_interval_ms = cfg && cfg->min_interval_ms > 0 ? cfg->min_interval_ms
							     : MIN_INTERVAL_DEFAULT_MS;
	j->refresh_ms = cfg && cfg->refresh_ms > 0 ? cfg->refresh_ms : REFRESH_DEFAULT_MS;
	pthread_rwlock_init(&j->lock, NULL);
	pthread_mutex_init(&j->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (url == NULL) {
		*out = j;
		return HS_OK;
	}
	if (pthread_create(&j->thread, NULL, fetcher_main, j) != 0) {
		hs_jwks_free(j);
		return hs_error_set(err, HS_INTERNAL, "jwks: cannot start the fetcher");
	}
	j->thread_started = true;
	/* Wait for the first fetch, so tokens verify from the first call. */
	pthread_mutex_lock(&j->mu);
	struct timespec until = hs_clock_deadline(CLOCK_MONOTONIC, j->timeout_ms + 1000);
	while (j->generation == 0 && pthread_cond_timedwait(&j->cv, &j->mu, &until) == 0)
		;
	pthread_mutex_unlock(&j->mu);
	*out = j;
	return HS_OK;
}

uint64_t hs_jwks_fetches(hs_jwks *j)
{
	pthread_mutex_lock(&j->mu);
	uint64_t n = j->fetches;
	pthread_mutex_unlock(&j->mu);
	return n;
}

/* ---- verification ---- */

/* The key for kid, or NULL. Caller holds the read lock. */
static const hs_jwt_key *lookup(hs_jwks *j, const char *kid)
{
	if (kid[0] == '\0')
		return j->n_keys == 1 ? j->keys[0].key : NULL;
	for (size_t i = 0; i < j->n_keys; i++)
		if (strcmp(j->keys[i].kid, kid) == 0)
			return j->keys[i].key;
	return NULL;
}

static bool known(hs_jwks *j, const char *kid)
{
	pthread_rwlock_rdlock(&j->lock);
	bool k = lookup(j, kid) != NULL;
	pthread_rwlock_unlock(&j->lock);
	return k;
}

int hs_jwks_verify(hs_jwks *j, const char *token, const hs_jwt_verify_opts *opts,
		   hs_jwt_claims *out, hs_error *err)
{
	char kid[HS_JWKS_KID_MAX + 1];
	int rc = hs_jwt_token_kid(token, kid, sizeof(kid), err);
	if (rc != HS_OK)
		return rc;
	pthread_rwlock_rdlock(&j->lock);
	const hs_jwt_key *key = lookup(j, kid);
	if (key != NULL)
		rc = hs_jwt_verify(key, token, opts, out, err);
	pthread_rwlock_unlock(&j->lock);
	if (key != NULL)
		return rc;
	if (kid[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "token: no kid, and the key set has several keys");
	if (j->url == NULL)
		return hs_error_set(err, HS_UNAUTH, "token: unknown signing key");
	/* A kid is looked for once: the first call with it asks for a fetch
	 * (the fetcher runs at most one per min_interval_ms) and is told to
	 * retry; once a set fetched after that has been installed without it,
	 * the kid is unknown for good (until the periodic refresh). */
	pthread_mutex_lock(&j->mu);
	int64_t now = hs_clock_mono_ms();
	unknown_kid *u = NULL;
	for (size_t i = 0; i < j->n_unknown; i++)
		if (strcmp(j->unknown[i].kid, kid) == 0 && now - j->unknown[i].at_ms < j->refresh_ms)
			u = &j->unknown[i];
	if (u != NULL && j->loaded >= u->want) {
		rc = hs_error_set(err, HS_UNAUTH, "token: unknown signing key");
	} else {
		if (u != NULL && !j->fetching && !j->requested) { /* the fetch failed: again */
			j->requested = true;
			pthread_cond_broadcast(&j->cv);
		}
		if (u == NULL) {
			if (j->n_unknown == UNKNOWN_MEMO) {
				memmove(&j->unknown[0], &j->unknown[1],
					(UNKNOWN_MEMO - 1) * sizeof(j->unknown[0]));
				j->n_unknown--;
			}
			u = &j->unknown[j->n_unknown++];
			snprintf(u->kid, sizeof(u->kid), "%s", kid);
			u->want = j->loaded + (j->fetching ? 2 : 1);
			u->at_ms = now;
			j->requested = true;
			pthread_cond_broadcast(&j->cv);
		}
		rc = hs_error_set(err, HS_UNAVAILABLE, "token signing key not known yet: the key set "
				  "is being refreshed, retry shortly");
	}
	pthread_mutex_unlock(&j->mu);
	return rc;
}

void hs_jwks_ensure(hs_jwks *j, const char *token, int timeout_ms)
{
	char kid[HS_JWKS_KID_MAX + 1];
	if (j == NULL || j->url == NULL || hs_jwt_token_kid(token, kid, sizeof(kid), NULL) != HS_OK ||
	    known(j, kid))
		return;
	pthread_mutex_lock(&j->mu);
	/* A fetch that starts after now: the one running may predate the key. */
	uint64_t want = j->generation + (j->fetching ? 2 : 1);
	j->requested = true;
	pthread_cond_broadcast(&j->cv);
	struct timespec until = hs_clock_deadline(CLOCK_MONOTONIC, timeout_ms > 0 ? timeout_ms : 0);
	while (!j->stopping && j->generation < want &&
	       pthread_cond_timedwait(&j->cv, &j->mu, &until) == 0) {
		if (!j->fetching && j->generation < want)
			j->requested = true;
	}
	pthread_mutex_unlock(&j->mu);
}
