/* The auth facade: configuration checks, key loading, throttling in front of
 * login, and dispatch to the local or upstream backend. */
#include "auth.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "local.h"
#include "log.h"
#include "password.h"
#include "upstream.h"

struct hs_auth {
	hs_auth_backend backend;
	hs_jwt_key *key;
	char *issuer, *audience;
	hs_throttle *throttle;
	hs_auth_upstream *up;
	hs_auth_local *local;
};

hs_auth_backend hs_auth_backend_of(const hs_auth *auth) { return auth->backend; }
hs_auth_local *hs_auth_local_lookup(hs_auth *auth) { return auth->local; }

void hs_auth_free(hs_auth *a)
{
	if (a == NULL)
		return;
	hs_auth_local_free(a->local);
	hs_auth_upstream_free(a->up);
	hs_throttle_free(a->throttle);
	hs_jwt_key_free(a->key);
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
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return hs_error_set(err, HS_INTERNAL, "auth: out of memory");
	a->backend = cfg->backend;
	if ((cfg->jwt_issuer && (a->issuer = strdup(cfg->jwt_issuer)) == NULL) ||
	    (cfg->jwt_audience && (a->audience = strdup(cfg->jwt_audience)) == NULL)) {
		rc = hs_error_set(err, HS_INTERNAL, "auth: out of memory");
		goto fail;
	}
	if ((rc = load_key(a, cfg, err)) != HS_OK ||
	    (rc = hs_throttle_new(&a->throttle, &cfg->throttle, err)) != HS_OK)
		goto fail;
	if (cfg->backend == HS_AUTH_UPSTREAM) {
		hs_auth_upstream_config uc = HS_AUTH_UPSTREAM_CONFIG_INIT;
		uc.base_url = cfg->user_service_url;
		uc.api_key = cfg->api_key;
		uc.timeout_ms = cfg->upstream_timeout_ms;
		if ((rc = hs_auth_upstream_new(&a->up, &uc, err)) != HS_OK)
			goto fail;
	} else {
		hs_auth_local_config lc = { cfg->store, a->key, cfg->jwt_issuer, cfg->jwt_audience,
					    cfg->access_ttl_s, cfg->refresh_ttl_s };
		if ((rc = hs_auth_local_new(&a->local, &lc, err)) != HS_OK)
			goto fail;
		if (cfg->bootstrap_admin &&
		    (rc = hs_auth_local_bootstrap_admin(a->local, cfg->admin_email,
							cfg->admin_password, cfg->admin_notice,
							NULL, err)) != HS_OK)
			goto fail;
	}
	*out = a;
	return HS_OK;
fail:
	hs_auth_free(a);
	return rc;
}

int hs_auth_login(hs_auth *a, const char *email, const char *password, const char *peer,
		  int timeout_ms, hs_auth_result *out, hs_error *err)
{
	int rc;
	if ((rc = hs_throttle_check(a->throttle, email, peer, 0, err)) != HS_OK) {
		hs_log(HS_LOG_WARN, "auth", "login throttled", HS_LS("peer", peer ? peer : ""));
		return rc;
	}
	if (a->backend == HS_AUTH_LOCAL)
		rc = hs_auth_local_login(a->local, email, password, out, err);
	else
		rc = hs_auth_upstream_login(a->up, email, password, timeout_ms, out, err);
	if (rc == HS_OK)
		hs_throttle_success(a->throttle, email, peer);
	else if (rc == HS_UNAUTH || rc == HS_NOT_FOUND)
		hs_throttle_failure(a->throttle, email, peer, 0);
	return rc;
}

int hs_auth_refresh(hs_auth *a, const char *refresh_token, int timeout_ms, hs_auth_result *out,
		    hs_error *err)
{
	if (a->backend == HS_AUTH_LOCAL)
		return hs_auth_local_refresh(a->local, refresh_token, out, err);
	return hs_auth_upstream_refresh(a->up, refresh_token, timeout_ms, out, err);
}

int hs_auth_logout(hs_auth *a, const char *refresh_token, int timeout_ms, hs_error *err)
{
	(void)timeout_ms;
	if (a->backend == HS_AUTH_LOCAL)
		return hs_auth_local_logout(a->local, refresh_token, err);
	return HS_OK;
}

int hs_auth_get_user(hs_auth *a, const char *id, int timeout_ms, hs_auth_user *out,
		     hs_error *err)
{
	if (a->backend == HS_AUTH_LOCAL)
		return hs_auth_local_get_user(a->local, id, out, err);
	return hs_auth_upstream_get_user(a->up, id, timeout_ms, out, err);
}

int hs_auth_verify_access_token(hs_auth *a, const char *token, hs_jwt_claims *out,
				hs_error *err)
{
	hs_jwt_verify_opts o = HS_JWT_VERIFY_OPTS_INIT;
	hs_jwt_claims c = { 0 };
	int rc;
	o.iss = a->issuer;
	o.aud = a->audience;
	if ((rc = hs_jwt_verify(a->key, token, &o, &c, err)) != HS_OK)
		return rc;
	if (c.role == NULL && (c.role = strdup("user")) == NULL) {
		hs_jwt_claims_dispose(&c);
		return hs_error_set(err, HS_INTERNAL, "auth: out of memory");
	}
	*out = c;
	return HS_OK;
}
