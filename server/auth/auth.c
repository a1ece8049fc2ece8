/* The auth facade: configuration checks, key loading, the client address
 * rule, throttling in front of login, the revocation set behind token
 * verification, and dispatch to the local or upstream backend.
 *
 * A background thread picks up revocations other processes wrote to the
 * store (every revocation_refresh_ms); this process's own revocations are
 * in memory before the call that made them returns. */
#include "auth.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "clock.h"
#include "email.h"
#include "gateway_auth.h"
#include "local.h"
#include "log.h"
#include "password.h"
#include "secret_file.h"
#include "token_cache.h"
#include "upstream.h"

#define TOKEN_CACHE_ENTRIES 4096 /* verified access tokens kept (~1 MiB at most) */
#define REVOCATION_REFRESH_DEFAULT_MS 2000
#define CERT_MAP_MAX 256

/* One --tls-client-identities entry: a certificate name acting as a key. */
typedef struct cert_map {
	char kind[4]; /* "cn" | "san" */
	char *value;
	char key_id[HS_APIKEY_ID_LEN + 1];
} cert_map;

struct hs_auth {
	hs_auth_backend backend;
	hs_jwt_key *key;     /* NULL with jwks */
	hs_jwks *jwks;       /* upstream --jwt-jwks-url */
	hs_apikeys *keys;    /* NULL without a store */
	cert_map *certs;
	size_t n_certs;
	char *issuer, *audience;
	hs_throttle *throttle;
	hs_auth_upstream *up;
	hs_auth_local *local;
	hs_revocations *revocations;
	hs_token_cache *tokens; /* verified access tokens (token_cache.h) */
	hs_cidr_list trusted;
	char *gw_key; /* gateway key, NULL = none */
	size_t gw_key_len;
	/* revocation refresher */
	pthread_t refresher;
	bool refresher_started, stopping;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refresh_ms;
};

hs_auth_backend hs_auth_backend_of(const hs_auth *auth) { return auth->backend; }
hs_auth_local *hs_auth_local_lookup(hs_auth *auth) { return auth->local; }
hs_apikeys *hs_auth_apikeys_lookup(hs_auth *auth) { return auth->keys; }

void hs_auth_free(hs_auth *a)
{
	if (a == NULL)
		return;
	if (a->refresher_started) {
		pthread_mutex_lock(&a->mu);
		a->stopping = true;
		pthread_cond_signal(&a->cv);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->refresher, NULL);
	}
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	hs_auth_local_free(a->local);
	hs_auth_upstream_free(a->up);
	hs_apikeys_free(a->keys); /* writes the last-used times */
	hs_jwks_free(a->jwks);
	for (size_t i = 0; i < a->n_certs; i++)
		free(a->certs[i].value);
	free(a->certs);
	hs_revocations_free(a->revocations);
	hs_token_cache_free(a->tokens);
	hs_throttle_free(a->throttle);
	hs_jwt_key_free(a->key);
	if (a->gw_key != NULL) {
		sodium_memzero(a->gw_key, a->gw_key_len);
		free(a->gw_key);
	}
	free(a->issuer);
	free(a->audience);
	free(a);
}

static int load_key(hs_auth *a, const hs_auth_config *cfg, hs_error *err)
{
	hs_jwt_alg alg = HS_JWT_HS256;
	char *secret = NULL;
	int rc;

	if (cfg->jwt_alg != NULL && cfg->jwt_alg[0] != '\0' &&
	    (rc = hs_jwt_alg_parse(cfg->jwt_alg, &alg, err)) != HS_OK)
		return rc;
	if (cfg->jwt_jwks_url != NULL && cfg->jwt_jwks_url[0] != '\0') {
		hs_jwks_config jc = { cfg->jwt_jwks_url, cfg->upstream_timeout_ms,
				      cfg->jwks_min_interval_ms, 0 };
		if (cfg->backend == HS_AUTH_LOCAL)
			return hs_error_set(err, HS_INVALID,
					    "jwt jwks url: only for the upstream backend (the local "
					    "backend signs its own HS256 tokens)");
		if ((cfg->jwt_secret != NULL && cfg->jwt_secret[0] != '\0') ||
		    (cfg->jwt_public_key_file != NULL && cfg->jwt_public_key_file[0] != '\0'))
			return hs_error_set(err, HS_INVALID, "jwt jwks url: give it instead of "
					    "--jwt-secret / --jwt-public-key, not with them");
		if (alg == HS_JWT_HS256 && cfg->jwt_alg != NULL && cfg->jwt_alg[0] != '\0')
			return hs_error_set(err, HS_INVALID, "jwt jwks url: keys are RS256 or ES256 "
					    "(each key pins its own alg)");
		return hs_jwks_new(&a->jwks, &jc, err);
	}
	if (alg != HS_JWT_HS256) {
		if (cfg->backend == HS_AUTH_LOCAL)
			return hs_error_set(err, HS_INVALID,
					    "jwt alg: the local backend signs HS256 tokens");
		if (cfg->jwt_public_key_file == NULL || cfg->jwt_public_key_file[0] == '\0')
			return hs_error_set(err, HS_INVALID, "jwt public key file: required for %s",
					    hs_jwt_alg_name(alg));
		return hs_jwt_key_load_pem_file(&a->key, alg, cfg->jwt_public_key_file, err);
	}
	if (cfg->jwt_secret != NULL && cfg->jwt_secret[0] != '\0')
		return hs_jwt_key_new_hmac(&a->key, cfg->jwt_secret, strlen(cfg->jwt_secret), err);
	if (cfg->backend == HS_AUTH_UPSTREAM)
		return hs_error_set(err, HS_INVALID,
				    "jwt secret: required to verify the user service's HS256 tokens");
	if ((rc = hs_auth_local_secret_load(cfg->data_dir, &secret, err)) != HS_OK)
		return rc;
	rc = hs_jwt_key_new_hmac(&a->key, secret, strlen(secret), err);
	sodium_memzero(secret, strlen(secret));
	free(secret);
	return rc;
}

/* The gateway key: the configured file, else <data_dir>/gateway.key
 * (created group-readable, so a gateway running under another uid of the
 * same group can read it); "" = none. */
static int load_gateway_key(hs_auth *a, const hs_auth_config *cfg, hs_error *err)
{
	char path[4096];
	hs_secret_file_opts o = { true, 0640, 007 };
	const char *p = cfg->gateway_secret_file;
	if (p != NULL && p[0] == '\0')
		return HS_OK;
	if (p == NULL) {
		if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
			return HS_OK;
		if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST)
			return hs_error_set(err, HS_UNAVAILABLE, "%s: cannot create: %s",
					    cfg->data_dir, strerror(errno));
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", cfg->data_dir,
				     HS_GATEWAY_KEY_FILE) >= sizeof(path))
			return hs_error_set(err, HS_INVALID, "data dir: path too long");
		p = path;
	}
	return hs_secret_file_load(p, &o, &a->gw_key, &a->gw_key_len, err);
}

/* --tls-client-identities: "cn:NAME=KEY_ID,san:NAME=KEY_ID,...". */
static int parse_cert_map(hs_auth *a, const char *spec, hs_error *err)
{
	if (spec == NULL || spec[0] == '\0')
		return HS_OK;
	size_t n = 1;
	for (const char *p = spec; *p; p++)
		n += *p == ',';
	if (n > CERT_MAP_MAX)
		return hs_error_set(err, HS_INVALID, "tls client identities: more than %d entries",
				    CERT_MAP_MAX);
	if ((a->certs = calloc(n, sizeof(*a->certs))) == NULL)
		return hs_error_set(err, HS_INTERNAL, "auth: out of memory");
	for (const char *p = spec; *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		while (len > 0 && p[0] == ' ')
			p++, len--;
		while (len > 0 && p[len - 1] == ' ')
			len--;
		const char *eq = len > 0 ? memrchr(p, '=', len) : NULL;
		cert_map *m = &a->certs[a->n_certs];
		size_t kind_len = strncmp(p, "cn:", 3) == 0 ? 2 : strncmp(p, "san:", 4) == 0 ? 3 : 0;
		size_t id_len = eq ? len - (size_t)(eq + 1 - p) : 0;
		if (kind_len == 0 || eq == NULL || eq <= p + kind_len + 1 || id_len != HS_APIKEY_ID_LEN)
			return hs_error_set(err, HS_INVALID, "tls client identities: want "
					    "cn:NAME=KEY_ID or san:NAME=KEY_ID (KEY_ID an API key "
					    "id, hsk_...), comma-separated");
		memcpy(m->kind, p, kind_len);
		memcpy(m->key_id, eq + 1, HS_APIKEY_ID_LEN);
		if (!hs_apikey_id_ok(m->key_id))
			return hs_error_set(err, HS_INVALID, "tls client identities: %s is not an API "
					    "key id", m->key_id);
		const char *v = p + kind_len + 1;
		if ((m->value = strndup(v, (size_t)(eq - v))) == NULL)
			return hs_error_set(err, HS_INTERNAL, "auth: out of memory");
		a->n_certs++;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return HS_OK;
}

static void *refresher_main(void *arg)
{
	hs_auth *a = arg;
	pthread_mutex_lock(&a->mu);
	while (!a->stopping) {
		struct timespec until = hs_clock_deadline(CLOCK_MONOTONIC, a->refresh_ms);
		while (!a->stopping && pthread_cond_timedwait(&a->cv, &a->mu, &until) == 0)
			;
		if (a->stopping)
			break;
		pthread_mutex_unlock(&a->mu);
		hs_error e = { 0 };
		if (hs_revocations_refresh(a->revocations, &e) != HS_OK)
			hs_log(HS_LOG_WARN, "auth", "revocation refresh failed", HS_LS("error", e.msg));
		hs_error ke = { 0 };
		if (a->keys != NULL && hs_apikeys_sync(a->keys, &ke) != HS_OK)
			hs_log(HS_LOG_WARN, "auth", "api key sync failed", HS_LS("error", ke.msg));
		pthread_mutex_lock(&a->mu);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

static int start_refresher(hs_auth *a, const hs_auth_config *cfg, hs_error *err)
{
	if (cfg->store == NULL || cfg->revocation_refresh_ms < 0)
		return HS_OK;
	a->refresh_ms = cfg->revocation_refresh_ms ? cfg->revocation_refresh_ms
						   : REVOCATION_REFRESH_DEFAULT_MS;
	if (pthread_create(&a->refresher, NULL, refresher_main, a) != 0)
		return hs_error_set(err, HS_INTERNAL, "auth: cannot start the revocation thread");
	a->refresher_started = true;
	return HS_OK;
}

int hs_auth_new(hs_auth **out, const hs_auth_config *cfg, hs_error *err)
{
	hs_auth *a;
	int rc;

	if (cfg == NULL || (cfg->backend != HS_AUTH_LOCAL && cfg->backend != HS_AUTH_UPSTREAM))
		return hs_error_set(err, HS_INVALID, "auth backend: \"local\" or \"upstream\"");
	if (cfg->backend == HS_AUTH_LOCAL && cfg->store == NULL)
		return hs_error_set(err, HS_INVALID, "auth: the local backend needs the store");
	if ((rc = hs_password_init(err)) != HS_OK)
		return rc;
	if (cfg->hash_concurrency != 0 || cfg->hash_wait_ms != 0) {
		int wait = cfg->hash_wait_ms > 0   ? cfg->hash_wait_ms
			   : cfg->hash_wait_ms < 0 ? 0
						   : HS_PASSWORD_GATE_WAIT_DEFAULT_MS;
		unsigned max = cfg->hash_concurrency ? cfg->hash_concurrency : HS_PASSWORD_GATE_DEFAULT;
		if ((rc = hs_password_gate_config(max, wait, err)) != HS_OK)
			return rc;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return hs_error_set(err, HS_INTERNAL, "auth: out of memory");
	pthread_mutex_init(&a->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cv, &ca);
	pthread_condattr_destroy(&ca);
	a->backend = cfg->backend;
	if ((cfg->jwt_issuer && (a->issuer = strdup(cfg->jwt_issuer)) == NULL) ||
	    (cfg->jwt_audience && (a->audience = strdup(cfg->jwt_audience)) == NULL)) {
		rc = hs_error_set(err, HS_INTERNAL, "auth: out of memory");
		goto fail;
	}
	if ((rc = hs_cidr_list_parse(&a->trusted, cfg->trusted_proxies, "trusted proxies", err)) !=
		    HS_OK ||
	    (rc = load_key(a, cfg, err)) != HS_OK || (rc = load_gateway_key(a, cfg, err)) != HS_OK ||
	    (rc = hs_throttle_new(&a->throttle, &cfg->throttle, err)) != HS_OK ||
	    (rc = hs_revocations_new(&a->revocations, cfg->store, err)) != HS_OK ||
	    (cfg->store != NULL && (rc = hs_apikeys_new(&a->keys, cfg->store, err)) != HS_OK) ||
	    (rc = parse_cert_map(a, cfg->client_identities, err)) != HS_OK)
		goto fail;
	if ((a->tokens = hs_token_cache_new(TOKEN_CACHE_ENTRIES)) == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "auth: out of memory");
		goto fail;
	}
	if (cfg->backend == HS_AUTH_UPSTREAM) {
		hs_auth_upstream_config uc = HS_AUTH_UPSTREAM_CONFIG_INIT;
		uc.base_url = cfg->user_service_url;
		uc.api_key = cfg->api_key;
		uc.timeout_ms = cfg->upstream_timeout_ms;
		if ((rc = hs_auth_upstream_new(&a->up, &uc, err)) != HS_OK)
			goto fail;
	} else {
		hs_auth_local_config lc = { cfg->store,	       a->key,		   cfg->jwt_issuer,
					    cfg->jwt_audience, cfg->access_ttl_s,  cfg->refresh_ttl_s,
					    a->revocations };
		if ((rc = hs_auth_local_new(&a->local, &lc, err)) != HS_OK)
			goto fail;
		if (cfg->bootstrap_admin &&
		    (rc = hs_auth_local_bootstrap_admin(a->local, cfg->admin_email,
							cfg->admin_password, cfg->admin_notice,
							NULL, err)) != HS_OK)
			goto fail;
	}
	if ((rc = start_refresher(a, cfg, err)) != HS_OK)
		goto fail;
	*out = a;
	return HS_OK;
fail:
	hs_auth_free(a);
	return rc;
}

/* ---- client address ---- */

void hs_auth_client_address(hs_auth *a, const char *peer, const char *xff,
			    const char *gateway_auth, char *out, size_t cap)
{
	char ip[HS_IP_TEXT_MAX];
	bool has_ip = hs_grpc_peer_ip(peer, ip, sizeof(ip));
	if (xff != NULL && gateway_auth != NULL && a->gw_key != NULL &&
	    hs_gateway_auth_verify(a->gw_key, a->gw_key_len, xff, gateway_auth,
				   hs_clock_wall_ms() / 1000) &&
	    hs_ip_canonical(xff, strlen(xff), out, cap))
		return;
	if (!has_ip) {
		snprintf(out, cap, "local");
		return;
	}
	hs_client_address(&a->trusted, ip, xff, out, cap);
}

/* ---- login, tokens ---- */

/* The checks both forms of login make first: the fields, then the
 * throttle (read only). norm: the normalised email. */
static int login_precheck(hs_auth *a, const char *email, const char *password,
			  const char *address, char *norm, size_t cap, hs_error *err)
{
	int rc;
	if (email == NULL || email[0] == '\0')
		return hs_error_set(err, HS_INVALID, "email: required");
	if (!hs_email_normalize(email, norm, cap))
		return hs_error_set(err, HS_INVALID, "email: must be an email address");
	if (password == NULL || password[0] == '\0')
		return hs_error_set(err, HS_INVALID, "password: required");
	if (strlen(password) > HS_PASSWORD_MAX_LEN)
		return hs_error_set(err, HS_INVALID, "password: longer than %d characters",
				    HS_PASSWORD_MAX_LEN);
	if ((rc = hs_throttle_check(a->throttle, norm, address, 0, NULL, err)) != HS_OK) {
		hs_log(HS_LOG_WARN, "auth", "login throttled",
		       HS_LS("peer", address ? address : ""));
		return rc;
	}
	return HS_OK;
}

/* The outcome counted by the throttle. */
static void login_counted(hs_auth *a, int rc, const char *norm, const char *address)
{
	if (rc == HS_OK)
		hs_throttle_success(a->throttle, norm, address);
	else if (rc == HS_UNAUTH || rc == HS_NOT_FOUND)
		hs_throttle_failure(a->throttle, norm, address, 0);
}

int hs_auth_login(hs_auth *a, const char *email, const char *password, const char *address,
		  int timeout_ms, hs_auth_result *out, hs_error *err)
{
	char norm[HS_EMAIL_MAX + 1];
	int rc = login_precheck(a, email, password, address, norm, sizeof(norm), err);
	if (rc != HS_OK)
		return rc;
	if (a->backend == HS_AUTH_LOCAL)
		rc = hs_auth_local_login(a->local, email, password, out, err);
	else
		rc = hs_auth_upstream_login(a->up, norm, password, timeout_ms, out, err);
	if (rc == HS_OK && a->jwks != NULL) /* the token's key known before the client uses it */
		hs_jwks_ensure(a->jwks, out->access_token, timeout_ms > 0 ? timeout_ms : 5000);
	login_counted(a, rc, norm, address);
	return rc;
}

typedef struct login_wait {
	hs_auth *a;
	hs_auth_login_done_fn done;
	void *arg;
	char *address; /* NULL allowed */
	char norm[HS_EMAIL_MAX + 1];
} login_wait;

static void login_answered(void *arg, int rc, hs_auth_result *res, const hs_error *err)
{
	login_wait *w = arg;
	login_counted(w->a, rc, w->norm, w->address);
	w->done(w->arg, rc, res, err);
	free(w->address);
	free(w);
}

int hs_auth_login_start(hs_auth *a, const char *email, const char *password,
			const char *address, int timeout_ms, hs_auth_login_done_fn done,
			void *arg, hs_error *err)
{
	/* a JWKS fetch after login may block: the blocking path does it */
	if (a->backend != HS_AUTH_UPSTREAM || a->jwks != NULL)
		return HS_AUTH_LOGIN_BLOCKS;
	login_wait *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	int rc = login_precheck(a, email, password, address, w->norm, sizeof(w->norm), err);
	if (rc == HS_OK && address != NULL && (w->address = strdup(address)) == NULL)
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
	if (rc == HS_OK) {
		w->a = a;
		w->done = done;
		w->arg = arg;
		rc = hs_auth_upstream_login_start(a->up, w->norm, password, timeout_ms,
						  login_answered, w, err);
		if (rc == HS_AUTH_UPSTREAM_BUSY)
			rc = HS_AUTH_LOGIN_BLOCKS;
	}
	if (rc != HS_OK) {
		free(w->address);
		free(w);
	}
	return rc;
}

int hs_auth_refresh(hs_auth *a, const char *refresh_token, int timeout_ms, hs_auth_result *out,
		    hs_error *err)
{
	if (a->backend == HS_AUTH_LOCAL)
		return hs_auth_local_refresh(a->local, refresh_token, out, err);
	int rc = hs_auth_upstream_refresh(a->up, refresh_token, timeout_ms, out, err);
	if (rc == HS_OK && a->jwks != NULL)
		hs_jwks_ensure(a->jwks, out->access_token, timeout_ms > 0 ? timeout_ms : 5000);
	return rc;
}

/* Signature and claims, with the configured key or the JWKS key of the
 * token's kid. */
static int verify_jwt(hs_auth *a, const char *token, hs_jwt_claims *c, hs_error *err)
{
	hs_jwt_verify_opts o = HS_JWT_VERIFY_OPTS_INIT;
	o.iss = a->issuer;
	o.aud = a->audience;
	if (a->jwks != NULL)
		return hs_jwks_verify(a->jwks, token, &o, c, err);
	return hs_jwt_verify(a->key, token, &o, c, err);
}

/* Revokes a presented access token by its jti, unless its session is
 * revoked as a whole anyway (local). Bad tokens are ignored. */
static int revoke_access_token(hs_auth *a, const char *token, hs_error *err)
{
	hs_jwt_claims c = { 0 };
	int rc = HS_OK;
	if (token == NULL || verify_jwt(a, token, &c, NULL) != HS_OK)
		return HS_OK;
	if (c.jti != NULL && !(a->backend == HS_AUTH_LOCAL && c.sid != NULL))
		rc = hs_revocations_add(a->revocations, HS_REVOKE_TOKEN, c.jti, hs_clock_wall_ms(),
					(c.exp + HS_JWT_DEFAULT_LEEWAY + 1) * 1000LL, err);
	hs_jwt_claims_dispose(&c);
	return rc;
}

int hs_auth_logout(hs_auth *a, const char *refresh_token, const char *access_token,
		   int timeout_ms, hs_error *err)
{
	int rc = HS_OK;
	(void)timeout_ms;
	if (a->backend == HS_AUTH_LOCAL && refresh_token != NULL && refresh_token[0] != '\0')
		rc = hs_auth_local_logout(a->local, refresh_token, err);
	if (rc == HS_OK)
		rc = revoke_access_token(a, access_token, err);
	return rc;
}

/* An API key as a user (GetUser, WhoAmI of a key's calls). */
static int api_key_user(hs_auth *a, const char *id, hs_auth_user *out, hs_error *err)
{
	hs_apikey_info k;
	int rc = hs_apikeys_get(a->keys, id, &k, err);
	if (rc != HS_OK)
		return rc;
	hs_auth_user u = { 0 };
	u.created_at_ms = k.created_at_ms;
	u.disabled = k.revoked_at_ms != 0;
	if ((u.id = strdup(k.id)) == NULL || (u.email = strdup("")) == NULL ||
	    (u.name = strdup(k.name)) == NULL || (u.role = strdup(k.role)) == NULL) {
		hs_auth_user_dispose(&u);
		rc = hs_error_set(err, HS_INTERNAL, "auth: out of memory");
	} else {
		*out = u;
	}
	hs_apikey_info_dispose(&k);
	return rc;
}

int hs_auth_get_user(hs_auth *a, const char *id, int timeout_ms, hs_auth_user *out,
		     hs_error *err)
{
	if (a->keys != NULL && hs_apikey_is_key(id))
		return api_key_user(a, id, out, err);
	if (a->backend == HS_AUTH_LOCAL)
		return hs_auth_local_get_user(a->local, id, out, err);
	return hs_auth_upstream_get_user(a->up, id, timeout_ms, out, err);
}

/* ---- user management ---- */

static int local_only(hs_auth *a, hs_error *err)
{
	if (a->backend != HS_AUTH_LOCAL)
		return hs_error_set(err, HS_CONFLICT,
				    "users live in the user service (auth backend upstream)");
	return HS_OK;
}

static int not_self(const char *id, const char *actor_id, const char *verb, hs_error *err)
{
	if (id == NULL || id[0] == '\0')
		return hs_error_set(err, HS_INVALID, "id: required");
	if (actor_id != NULL && strcmp(id, actor_id) == 0)
		return hs_error_set(err, HS_CONFLICT, "id: an admin cannot %s itself", verb);
	return HS_OK;
}

int hs_auth_create_user(hs_auth *a, const char *email, const char *name, const char *role,
			const char *password, hs_auth_user *out, hs_error *err)
{
	int rc = local_only(a, err);
	return rc != HS_OK ? rc
			   : hs_auth_local_create_user(a->local, email, name, role, password, out,
						       err);
}

/* The API keys user id made (and the keys those made) end with the user's
 * authority. Once before the user changes (a failure leaves the user as it
 * was, to retry) and once after (keys created by calls that were already
 * past authentication). */
static int revoke_keys_of(hs_auth *a, const char *id, hs_error *err)
{
	if (a->keys == NULL || hs_apikey_id_ok(id)) /* a key's id is no user */
		return HS_OK;
	return hs_apikeys_revoke_created_by(a->keys, id, hs_clock_wall_ms(), NULL, err);
}

int hs_auth_disable_user(hs_auth *a, const char *id, const char *actor_id, hs_auth_user *out,
			 hs_error *err)
{
	int rc;
	if ((rc = local_only(a, err)) != HS_OK || (rc = not_self(id, actor_id, "disable", err)) != HS_OK ||
	    (rc = revoke_keys_of(a, id, err)) != HS_OK)
		return rc;
	hs_auth_user u;
	if ((rc = hs_auth_local_disable_user(a->local, id, &u, err)) != HS_OK)
		return rc;
	if ((rc = revoke_keys_of(a, id, err)) != HS_OK) {
		hs_auth_user_dispose(&u);
		return rc;
	}
	if (out != NULL)
		*out = u;
	else
		hs_auth_user_dispose(&u);
	return HS_OK;
}

int hs_auth_delete_user(hs_auth *a, const char *id, const char *actor_id, hs_error *err)
{
	int rc;
	if ((rc = local_only(a, err)) != HS_OK || (rc = not_self(id, actor_id, "delete", err)) != HS_OK ||
	    (rc = revoke_keys_of(a, id, err)) != HS_OK ||
	    (rc = hs_auth_local_delete_user(a->local, id, err)) != HS_OK)
		return rc;
	return revoke_keys_of(a, id, err);
}

int hs_auth_verify_access_token(hs_auth *a, const char *token, hs_jwt_claims *out,
				hs_error *err)
{
	hs_jwt_claims c = { 0 };
	int rc;
	if ((rc = verify_jwt(a, token, &c, err)) != HS_OK)
		return rc;
	if (hs_revocations_refuses(a->revocations, c.sub, c.sid, c.jti, c.iat, 0)) {
		hs_jwt_claims_dispose(&c);
		return hs_error_set(err, HS_UNAUTH, "token revoked");
	}
	if (c.role == NULL && (c.role = strdup("user")) == NULL) {
		hs_jwt_claims_dispose(&c);
		return hs_error_set(err, HS_INTERNAL, "auth: out of memory");
	}
	*out = c;
	return HS_OK;
}

/* ---- the authenticator ---- */

static void identity_of_key(const hs_apikey_principal *p, hs_auth_identity *out)
{
	snprintf(out->id, sizeof(out->id), "%s", p->id);
	snprintf(out->role, sizeof(out->role), "%s", p->role);
	out->is_admin = strcmp(p->role, "admin") == 0;
	out->api_key = true;
}

/* The API key a verified client certificate maps to, by its names. */
static const char *cert_key(hs_auth *a, const hs_auth_cert_name *names, size_t n)
{
	for (size_t m = 0; m < a->n_certs; m++)
		for (size_t i = 0; i < n; i++)
			if (names[i].kind != NULL && names[i].value != NULL &&
			    strcmp(names[i].kind, a->certs[m].kind) == 0 &&
			    strcmp(names[i].value, a->certs[m].value) == 0)
				return a->certs[m].key_id;
	return NULL;
}

/* The identity of a verified token's claims. */
static int identity_of_token(const hs_token_entry *te, hs_auth_identity *out, hs_error *err)
{
	if (hs_apikey_is_key(te->sub))
		return hs_error_set(err, HS_UNAUTH, "invalid access token: bad claims");
	/* the same sizes, both NUL-terminated within (token_cache.c) */
	_Static_assert(sizeof(out->id) == sizeof(te->sub) && sizeof(out->role) == sizeof(te->role),
		       "hs_auth_identity and hs_token_entry disagree");
	memcpy(out->id, te->sub, sizeof(out->id));
	memcpy(out->role, te->role, sizeof(out->role));
	out->is_admin = strcmp(te->role, "admin") == 0;
	return HS_OK;
}

int hs_auth_authenticate(hs_auth *a, const char *bearer, const hs_auth_cert_name *names,
			 size_t n_names, const char *method, hs_auth_identity *out, hs_error *err)
{
	hs_apikey_principal p;
	int rc;
	memset(out, 0, sizeof(*out));
	if (bearer == NULL) {
		const char *key_id = a->keys != NULL ? cert_key(a, names, n_names) : NULL;
		if (key_id == NULL)
			return hs_error_set(err, HS_UNAUTH,
					    "missing authorization metadata (Bearer token)%s",
					    n_names > 0 ? "; the client certificate maps to no identity" : "");
		if ((rc = hs_apikeys_verify_id(a->keys, key_id, method, hs_clock_wall_ms(), &p, err)) !=
		    HS_OK)
			return rc;
		identity_of_key(&p, out);
		return HS_OK;
	}
	if (hs_apikey_is_key(bearer)) {
		if (a->keys == NULL)
			return hs_error_set(err, HS_UNAUTH, "invalid API key");
		if ((rc = hs_apikeys_verify(a->keys, bearer, method, hs_clock_wall_ms(), &p, err)) !=
		    HS_OK)
			return rc;
		identity_of_key(&p, out);
		return HS_OK;
	}
	/* A token verified before: one hash and compare, then the revocation
	 * set as on a first check (never cached). The key set's generation is
	 * read before verifying, so a token verified across a key change is
	 * filed under the old one and never hit. */
	size_t blen = strlen(bearer);
	uint64_t gen = a->jwks != NULL ? hs_jwks_key_set(a->jwks) : 0;
	long long now_ms = hs_clock_wall_ms();
	hs_token_entry te;
	if (hs_token_cache_get(a->tokens, bearer, blen, gen, now_ms / 1000, &te)) {
		if (hs_revocations_refuses(a->revocations, te.sub, te.sid[0] ? te.sid : NULL,
					   te.jti[0] ? te.jti : NULL, te.iat, now_ms))
			return hs_error_set(err, HS_UNAUTH, "invalid access token: token revoked");
		return identity_of_token(&te, out, err);
	}
	hs_jwt_claims c = { 0 };
	hs_error verr = { 0 };
	if ((rc = hs_auth_verify_access_token(a, bearer, &c, &verr)) != HS_OK)
		/* The module's reason (expired, bad signature, ...) is safe to
		 * show: it never contains the token. */
		return rc == HS_UNAVAILABLE || rc == HS_INTERNAL /* out of memory */
			       ? hs_error_set(err, rc, "%s", verr.msg)
			       : hs_error_set(err, HS_UNAUTH, "invalid access token: %s", verr.msg);
	memset(&te, 0, sizeof(te));
	bool fits = strlen(c.sub) < sizeof(te.sub) && strlen(c.role) < sizeof(te.role) &&
		    (c.sid == NULL || strlen(c.sid) < sizeof(te.sid)) &&
		    (c.jti == NULL || strlen(c.jti) < sizeof(te.jti));
	if (!fits) {
		rc = hs_error_set(err, HS_UNAUTH, "invalid access token: bad claims");
	} else {
		memcpy(te.sub, c.sub, strlen(c.sub) + 1);
		memcpy(te.role, c.role, strlen(c.role) + 1);
		if (c.sid != NULL)
			memcpy(te.sid, c.sid, strlen(c.sid) + 1);
		if (c.jti != NULL)
			memcpy(te.jti, c.jti, strlen(c.jti) + 1);
		te.iat = c.iat;
		rc = identity_of_token(&te, out, err);
		if (rc == HS_OK) { /* valid while now - leeway < exp (jwt.c), without overflow */
			long long until = c.exp > LLONG_MAX - HS_JWT_DEFAULT_LEEWAY
						  ? LLONG_MAX
						  : c.exp + HS_JWT_DEFAULT_LEEWAY;
			hs_token_cache_put(a->tokens, bearer, blen, gen, until, &te);
		}
	}
	hs_jwt_claims_dispose(&c);
	return rc;
}
