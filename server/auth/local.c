/* The local (embedded) auth backend over hs_store; see local.h for the
 * refresh token state machine. Tokens and hashes never reach a log line or
 * an error message; log lines name users by id only. */
#include "local.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "email.h"
#include "password.h"
#include "secret_file.h"

#define DEFAULT_ADMIN_EMAIL "admin@harness.local"
#define SECRET_FILE "jwt.key"

struct hs_auth_local {
	hs_auth_local_config cfg;
	char *issuer, *audience;
};

int hs_auth_local_new(hs_auth_local **out, const hs_auth_local_config *cfg, hs_error *err)
{
	hs_auth_local *l;
	int rc;
	if (cfg == NULL || cfg->store == NULL || cfg->key == NULL)
		return hs_error_set(err, HS_INVALID, "local auth: store and key required");
	if (hs_jwt_key_alg(cfg->key) != HS_JWT_HS256)
		return hs_error_set(err, HS_INVALID, "local auth: access tokens are HS256");
	if (cfg->access_ttl_s < 0 || cfg->refresh_ttl_s < 0)
		return hs_error_set(err, HS_INVALID, "local auth: negative token lifetime");
	if (cfg->access_ttl_s > HS_AUTH_ACCESS_TTL_MAX)
		return hs_error_set(err, HS_INVALID, "local auth: access token lifetime above %d s",
				    HS_AUTH_ACCESS_TTL_MAX);
	if ((rc = hs_password_prepare_dummy(err)) != HS_OK)
		return rc;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return hs_error_set(err, HS_INTERNAL, "local auth: out of memory");
	l->cfg = *cfg;
	if (l->cfg.access_ttl_s == 0)
		l->cfg.access_ttl_s = 900;
	if (l->cfg.refresh_ttl_s == 0)
		l->cfg.refresh_ttl_s = 7 * 24 * 3600;
	if ((cfg->issuer && (l->issuer = strdup(cfg->issuer)) == NULL) ||
	    (cfg->audience && (l->audience = strdup(cfg->audience)) == NULL)) {
		hs_auth_local_free(l);
		return hs_error_set(err, HS_INTERNAL, "local auth: out of memory");
	}
	*out = l;
	return HS_OK;
}

void hs_auth_local_free(hs_auth_local *l)
{
	if (l == NULL)
		return;
	free(l->issuer);
	free(l->audience);
	free(l);
}

static int user_from_row(const hs_store_user_row *row, hs_auth_user *u)
{
	memset(u, 0, sizeof(*u));
	if ((u->id = strdup(row->id)) == NULL || (u->email = strdup(row->email)) == NULL ||
	    (u->name = strdup(row->name)) == NULL || (u->role = strdup(row->role)) == NULL) {
		hs_auth_user_dispose(u);
		return -1;
	}
	u->created_at_ms = row->created_at_ms;
	u->disabled = row->disabled;
	return 0;
}

static void random_id(char *out, size_t cap, const char *prefix)
{
	unsigned char b[8];
	char hex[17];
	randombytes_buf(b, sizeof(b));
	sodium_bin2hex(hex, sizeof(hex), b, sizeof(b));
	snprintf(out, cap, "%s%s", prefix, hex);
}

/* Every access token a revocation made now could match has expired by
 * then: the longest lifetime plus the verifier's clock leeway. */
static long long revocation_expiry(long long now_ms)
{
	return now_ms + (HS_AUTH_ACCESS_TTL_MAX + HS_JWT_DEFAULT_LEEWAY + 1) * 1000LL;
}

/* Records the family's access tokens as revoked (after its refresh tokens). */
static int revoke_session(hs_auth_local *l, const char *family, hs_error *err)
{
	if (l->cfg.revocations == NULL)
		return HS_OK;
	long long now = hs_clock_wall_ms();
	return hs_revocations_add(l->cfg.revocations, HS_REVOKE_SESSION, family, now,
				  revocation_expiry(now), err);
}

/* A new refresh token of family (a new family when NULL) plus an access
 * token for row, into *out. */
static int issue(hs_auth_local *l, const hs_store_user_row *row, const char *family,
		 hs_auth_result *out, hs_error *err)
{
	hs_auth_result r = { 0 };
	hs_store_refresh_row rt = { 0 };
	hs_jwt_sign_opts so = { l->issuer, l->audience, NULL };
	hs_jwt_claims c = { 0 };
	char jti[24];
	long long now = hs_clock_wall_ms();
	int rc;

	if (user_from_row(row, &r.user) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "local auth: out of memory");
		goto done;
	}
	if ((rc = hs_password_random_token(&r.refresh_token, err)) != HS_OK)
		goto done;
	hs_password_token_sha256(r.refresh_token, rt.token_hash);
	snprintf(rt.user_id, sizeof(rt.user_id), "%s", row->id);
	if (family != NULL)
		snprintf(rt.family_id, sizeof(rt.family_id), "%s", family);
	else
		random_id(rt.family_id, sizeof(rt.family_id), "fam_");
	rt.issued_at_ms = now;
	rt.expires_at_ms = now + (long long)l->cfg.refresh_ttl_s * 1000;
	if ((rc = hs_store_refresh_insert(l->cfg.store, &rt, err)) != HS_OK)
		goto done;
	random_id(jti, sizeof(jti), "");
	c.sub = (char *)row->id;
	c.role = (char *)row->role;
	c.email = (char *)row->email;
	c.jti = jti;
	c.sid = rt.family_id;
	c.iat = now / 1000;
	c.exp = c.iat + l->cfg.access_ttl_s;
	if ((rc = hs_jwt_sign(l->cfg.key, &c, &so, &r.access_token, err)) != HS_OK)
		goto done;
	r.expires_in = l->cfg.access_ttl_s;
	*out = r;
	memset(&r, 0, sizeof(r));
done:
	hs_auth_result_dispose(&r);
	return rc;
}

/* The account for a typed address: by its legacy key first (an exact
 * match; see local.h), then by its normal form. */
static int find_by_email(hs_auth_local *l, const char *email, hs_store_user_row *row,
			 hs_error *err)
{
	char norm[HS_EMAIL_MAX + 1], legacy[HS_EMAIL_MAX + 1];
	int rc;
	if (!hs_email_normalize(email, norm, sizeof(norm)) ||
	    !hs_email_legacy_key(email, legacy, sizeof(legacy)))
		return hs_error_set(err, HS_NOT_FOUND, "no such account");
	if (strcmp(legacy, norm) != 0) {
		rc = hs_store_user_get_by_email(l->cfg.store, legacy, row, err);
		if (rc != HS_NOT_FOUND)
			return rc;
		hs_error_clear(err);
	}
	return hs_store_user_get_by_email(l->cfg.store, norm, row, err);
}

int hs_auth_local_login(hs_auth_local *l, const char *email, const char *password,
			hs_auth_result *out, hs_error *err)
{
	hs_store_user_row row;
	hs_error serr = { 0 };
	int rc;

	if (email == NULL || email[0] == '\0' || password == NULL) {
		if ((rc = hs_password_verify_dummy(password ? password : "", &serr)) == HS_LIMIT)
			return hs_error_set(err, rc, "%s", serr.msg);
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_LOGIN_FAILED);
	}
	rc = find_by_email(l, email, &row, &serr);
	if (rc == HS_NOT_FOUND || rc == HS_INVALID) {
		hs_error_clear(&serr);
		if ((rc = hs_password_verify_dummy(password, &serr)) == HS_LIMIT)
			return hs_error_set(err, rc, "%s", serr.msg);
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_LOGIN_FAILED);
	}
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", serr.msg);
	rc = hs_password_verify(row.password_hash, password, &serr);
	sodium_memzero(row.password_hash, sizeof(row.password_hash));
	if (rc == HS_LIMIT)
		return hs_error_set(err, rc, "%s", serr.msg);
	if (rc != HS_OK || row.disabled) {
		hs_log(HS_LOG_INFO, "auth", "login failed", HS_LS("user_id", row.id),
		       HS_LB("disabled", row.disabled));
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_LOGIN_FAILED);
	}
	return issue(l, &row, NULL, out, err);
}

int hs_auth_local_refresh(hs_auth_local *l, const char *refresh_token, hs_auth_result *out,
			  hs_error *err)
{
	char h[HS_PASSWORD_SHA256_HEX];
	hs_store_refresh_row rt;
	hs_store_user_row row;
	hs_error serr = { 0 };
	int rc, reuse = 0;

	if (refresh_token == NULL || refresh_token[0] == '\0' || strlen(refresh_token) > 512)
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_REFRESH_FAILED);
	hs_password_token_sha256(refresh_token, h);
	rc = hs_store_refresh_get(l->cfg.store, h, &rt, &serr);
	if (rc == HS_NOT_FOUND)
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_REFRESH_FAILED);
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", serr.msg);
	if (rt.revoked)
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_REFRESH_FAILED);
	if (rt.used_at_ms != 0) {
		reuse = 1;
	} else if (rt.expires_at_ms <= hs_clock_wall_ms()) {
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_REFRESH_FAILED);
	} else {
		rc = hs_store_refresh_consume(l->cfg.store, h, hs_clock_wall_ms(), &serr);
		if (rc == HS_CONFLICT)
			reuse = 1; /* lost a race with another use of the same token */
		else if (rc == HS_NOT_FOUND)
			return hs_error_set(err, HS_UNAUTH, HS_AUTH_REFRESH_FAILED);
		else if (rc != HS_OK)
			return hs_error_set(err, rc, "%s", serr.msg);
	}
	if (reuse) {
		int64_t n = 0;
		hs_error_clear(&serr);
		rc = hs_store_refresh_revoke_family(l->cfg.store, rt.family_id, &n, &serr);
		if (rc == HS_OK)
			rc = revoke_session(l, rt.family_id, &serr);
		hs_log(HS_LOG_WARN, "auth", "refresh token reuse: family revoked",
		       HS_LS("user_id", rt.user_id), HS_LS("family_id", rt.family_id),
		       HS_LI("revoked", n));
		if (rc != HS_OK)
			return hs_error_set(err, rc, "%s", serr.msg);
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_REFRESH_FAILED);
	}
	rc = hs_store_user_get_by_id(l->cfg.store, rt.user_id, &row, &serr);
	if (rc == HS_OK && row.disabled)
		rc = HS_NOT_FOUND;
	if (rc == HS_NOT_FOUND) {
		if (hs_store_refresh_revoke_family(l->cfg.store, rt.family_id, NULL, NULL) == HS_OK)
			(void)revoke_session(l, rt.family_id, NULL);
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_REFRESH_FAILED);
	}
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", serr.msg);
	sodium_memzero(row.password_hash, sizeof(row.password_hash));
	return issue(l, &row, rt.family_id, out, err);
}

int hs_auth_local_logout(hs_auth_local *l, const char *refresh_token, hs_error *err)
{
	char h[HS_PASSWORD_SHA256_HEX];
	hs_store_refresh_row rt;
	hs_error serr = { 0 };
	int rc;
	if (refresh_token == NULL || refresh_token[0] == '\0' || strlen(refresh_token) > 512)
		return HS_OK;
	hs_password_token_sha256(refresh_token, h);
	rc = hs_store_refresh_get(l->cfg.store, h, &rt, &serr);
	if (rc == HS_NOT_FOUND)
		return HS_OK;
	if (rc == HS_OK)
		rc = hs_store_refresh_revoke_family(l->cfg.store, rt.family_id, NULL, &serr);
	if (rc == HS_OK)
		rc = revoke_session(l, rt.family_id, &serr);
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", serr.msg);
	return HS_OK;
}

int hs_auth_local_get_user(hs_auth_local *l, const char *id, hs_auth_user *out, hs_error *err)
{
	hs_store_user_row row;
	hs_auth_user u;
	int rc;
	if (id == NULL || id[0] == '\0' || strlen(id) >= HS_STORE_ID_MAX)
		return hs_error_set(err, HS_INVALID, "user id: 1..%d characters required",
				    HS_STORE_ID_MAX - 1);
	if ((rc = hs_store_user_get_by_id(l->cfg.store, id, &row, err)) != HS_OK)
		return rc;
	sodium_memzero(row.password_hash, sizeof(row.password_hash));
	if (user_from_row(&row, &u) != 0)
		return hs_error_set(err, HS_INTERNAL, "local auth: out of memory");
	*out = u;
	return HS_OK;
}

int hs_auth_local_create_user(hs_auth_local *l, const char *email, const char *name,
			      const char *role, const char *password, hs_auth_user *out,
			      hs_error *err)
{
	hs_store_user_row row = { 0 };
	char norm[HS_EMAIL_MAX + 1];
	char *hash = NULL;
	int rc;
	if (email == NULL || !hs_email_normalize(email, norm, sizeof(norm)) ||
	    strlen(norm) >= sizeof(row.email))
		return hs_error_set(err, HS_INVALID, "email: must be an email address");
	if (name != NULL && strlen(name) > 200)
		return hs_error_set(err, HS_INVALID, "name: longer than 200 bytes");
	if (role == NULL || role[0] == '\0')
		role = "user";
	if (strcmp(role, "user") != 0 && strcmp(role, "admin") != 0)
		return hs_error_set(err, HS_INVALID, "role: must be \"user\" or \"admin\"");
	if (password == NULL || strlen(password) < HS_AUTH_PASSWORD_MIN ||
	    strlen(password) > HS_PASSWORD_MAX_LEN)
		return hs_error_set(err, HS_INVALID, "password: %d to %d characters",
				    HS_AUTH_PASSWORD_MIN, HS_PASSWORD_MAX_LEN);
	if ((rc = hs_password_hash(password, &hash, err)) != HS_OK)
		return rc;
	if (strlen(hash) >= sizeof(row.password_hash)) {
		rc = hs_error_set(err, HS_INTERNAL, "password hash: too long for the store");
		goto done;
	}
	random_id(row.id, sizeof(row.id), "usr_");
	snprintf(row.email, sizeof(row.email), "%s", norm);
	if (name != NULL && name[0] != '\0')
		snprintf(row.name, sizeof(row.name), "%s", name);
	else
		snprintf(row.name, sizeof(row.name), "%.*s", (int)strcspn(norm, "@"), norm);
	snprintf(row.role, sizeof(row.role), "%s", role);
	snprintf(row.password_hash, sizeof(row.password_hash), "%s", hash);
	row.created_at_ms = hs_clock_wall_ms();
	if ((rc = hs_store_user_insert(l->cfg.store, &row, err)) != HS_OK)
		goto done;
	if (out != NULL)
		rc = hs_auth_local_get_user(l, row.id, out, err);
done:
	sodium_memzero(row.password_hash, sizeof(row.password_hash));
	if (hash != NULL) {
		sodium_memzero(hash, strlen(hash));
		free(hash);
	}
	return rc;
}

static int user_exists(hs_auth_local *l, const char *id, hs_error *err)
{
	hs_store_user_row row;
	int rc = hs_store_user_get_by_id(l->cfg.store, id, &row, err);
	sodium_memzero(row.password_hash, sizeof(row.password_hash));
	return rc;
}

/* Every token of user id refused from now on. */
static int revoke_user(hs_auth_local *l, const char *id, hs_error *err)
{
	if (l->cfg.revocations == NULL)
		return HS_OK;
	long long now = hs_clock_wall_ms();
	return hs_revocations_add(l->cfg.revocations, HS_REVOKE_USER, id, now,
				  revocation_expiry(now), err);
}

int hs_auth_local_disable_user(hs_auth_local *l, const char *id, hs_auth_user *out,
			       hs_error *err)
{
	int rc;
	if (id == NULL || id[0] == '\0' || strlen(id) >= HS_STORE_ID_MAX)
		return hs_error_set(err, HS_INVALID, "id: 1..%d characters required",
				    HS_STORE_ID_MAX - 1);
	/* tokens first: a failure half way leaves a user whose tokens are
	 * refused, never a disabled user whose tokens still work */
	if ((rc = user_exists(l, id, err)) != HS_OK || (rc = revoke_user(l, id, err)) != HS_OK ||
	    (rc = hs_store_user_set_disabled(l->cfg.store, id, true, err)) != HS_OK ||
	    (rc = hs_store_refresh_revoke_user(l->cfg.store, id, NULL, err)) != HS_OK)
		return rc;
	hs_log(HS_LOG_INFO, "auth", "user disabled", HS_LS("user_id", id));
	return out != NULL ? hs_auth_local_get_user(l, id, out, err) : HS_OK;
}

int hs_auth_local_delete_user(hs_auth_local *l, const char *id, hs_error *err)
{
	int rc;
	if (id == NULL || id[0] == '\0' || strlen(id) >= HS_STORE_ID_MAX)
		return hs_error_set(err, HS_INVALID, "id: 1..%d characters required",
				    HS_STORE_ID_MAX - 1);
	/* revoke first: a failure after it leaves a user that exists but
	 * cannot use its tokens, never the other way round */
	if ((rc = user_exists(l, id, err)) != HS_OK || (rc = revoke_user(l, id, err)) != HS_OK ||
	    (rc = hs_store_user_delete(l->cfg.store, id, err)) != HS_OK)
		return rc;
	hs_log(HS_LOG_INFO, "auth", "user deleted", HS_LS("user_id", id));
	return HS_OK;
}

int hs_auth_local_bootstrap_admin(hs_auth_local *l, const char *email, const char *password,
				  FILE *notice, int *created, hs_error *err)
{
	int64_t n = 0;
	char *generated = NULL;
	int rc;

	if (created != NULL)
		*created = 0;
	if ((rc = hs_store_user_count(l->cfg.store, &n, err)) != HS_OK || n > 0)
		return rc;
	if (email == NULL)
		email = getenv("HARNESS_ADMIN_EMAIL");
	if (email == NULL || email[0] == '\0')
		email = DEFAULT_ADMIN_EMAIL;
	if (password == NULL)
		password = getenv("HARNESS_ADMIN_PASSWORD");
	if (password == NULL || password[0] == '\0') {
		if ((rc = hs_password_generate(&generated, err)) != HS_OK)
			return rc;
		password = generated;
	}
	rc = hs_auth_local_create_user(l, email, "Administrator", "admin", password, NULL, err);
	if (rc == HS_EXISTS)
		rc = HS_OK; /* another instance bootstrapped first */
	else if (rc == HS_OK) {
		hs_log(HS_LOG_INFO, "auth", "first admin created", HS_LS("email", email),
		       HS_LB("generated_password", generated != NULL));
		if (generated != NULL) {
			/* The one place a password is shown: the operator's only copy. */
			fprintf(notice ? notice : stderr,
				"harnessd: created admin %s with generated password %s "
				"(shown once; set HARNESS_ADMIN_PASSWORD to choose it)\n",
				email, generated);
			fflush(notice ? notice : stderr);
		}
		if (created != NULL)
			*created = 1;
	}
	if (generated != NULL) {
		sodium_memzero(generated, strlen(generated));
		free(generated);
	}
	return rc;
}

/* ---- jwt.key ---- */

int hs_auth_local_secret_load(const char *data_dir, char **out, hs_error *err)
{
	char path[4096];
	hs_secret_file_opts o = { true, 0600, 077 };
	if (data_dir == NULL || data_dir[0] == '\0')
		return hs_error_set(err, HS_INVALID, "jwt secret: no data dir");
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", data_dir, SECRET_FILE) >= sizeof(path))
		return hs_error_set(err, HS_INVALID, "data dir: path too long");
	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
		return hs_error_set(err, HS_UNAVAILABLE, "%s: cannot create: %s", data_dir,
				    strerror(errno));
	return hs_secret_file_load(path, &o, out, NULL, err);
}
