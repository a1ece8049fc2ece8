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
#include "password.h"

#define DEFAULT_ADMIN_EMAIL "admin@harness.local"
#define SECRET_FILE "jwt.key"
#define SECRET_MAX 1024

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

/* A new refresh token of family (a new family when NULL) plus an access
 * token for row, into *out. */
static int issue(hs_auth_local *l, const hs_store_user_row *row, const char *family,
		 hs_auth_result *out, hs_error *err)
{
	hs_auth_result r = { 0 };
	hs_store_refresh_row rt = { 0 };
	hs_jwt_sign_opts so = { l->issuer, l->audience };
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

int hs_auth_local_login(hs_auth_local *l, const char *email, const char *password,
			hs_auth_result *out, hs_error *err)
{
	hs_store_user_row row;
	hs_error serr = { 0 };
	int rc;

	if (email == NULL || email[0] == '\0' || strlen(email) >= HS_STORE_NAME_MAX ||
	    password == NULL) {
		hs_password_verify_dummy(password ? password : "");
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_LOGIN_FAILED);
	}
	rc = hs_store_user_get_by_email(l->cfg.store, email, &row, &serr);
	if (rc == HS_NOT_FOUND || rc == HS_INVALID) {
		hs_password_verify_dummy(password);
		return hs_error_set(err, HS_UNAUTH, HS_AUTH_LOGIN_FAILED);
	}
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", serr.msg);
	rc = hs_password_verify(row.password_hash, password, NULL);
	sodium_memzero(row.password_hash, sizeof(row.password_hash));
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
		(void)hs_store_refresh_revoke_family(l->cfg.store, rt.family_id, NULL, NULL);
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
	char *hash = NULL;
	int rc;
	if (email == NULL || email[0] == '\0' || strchr(email, '@') == NULL ||
	    strlen(email) >= sizeof(row.email))
		return hs_error_set(err, HS_INVALID, "user email: an address is required");
	if (name != NULL && strlen(name) >= sizeof(row.name))
		return hs_error_set(err, HS_INVALID, "user name: too long");
	if (role == NULL || (strcmp(role, "user") != 0 && strcmp(role, "admin") != 0))
		return hs_error_set(err, HS_INVALID, "user role: \"user\" or \"admin\"");
	if ((rc = hs_password_hash(password, &hash, err)) != HS_OK)
		return rc;
	if (strlen(hash) >= sizeof(row.password_hash)) {
		rc = hs_error_set(err, HS_INTERNAL, "password hash: too long for the store");
		goto done;
	}
	random_id(row.id, sizeof(row.id), "usr_");
	snprintf(row.email, sizeof(row.email), "%s", email);
	snprintf(row.name, sizeof(row.name), "%s", name ? name : "");
	snprintf(row.role, sizeof(row.role), "%s", role);
	snprintf(row.password_hash, sizeof(row.password_hash), "%s", hash);
	row.created_at_ms = hs_clock_wall_ms();
	if ((rc = hs_store_user_insert(l->cfg.store, &row, err)) != HS_OK)
		goto done;
	/* the store lowercases the email: return what it holds */
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

static int read_secret(int fd, const char *path, char **out, hs_error *err)
{
	struct stat st;
	char buf[SECRET_MAX + 1];
	ssize_t n;
	size_t len = 0;
	int rc = HS_OK;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return hs_error_set(err, HS_INVALID, "%s: not a regular file", path);
	if (st.st_mode & 077)
		return hs_error_set(err, HS_INVALID, "%s: readable by others (chmod 600 it)", path);
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		len--;
	if (len > SECRET_MAX)
		rc = hs_error_set(err, HS_INVALID, "%s: longer than %d bytes", path, SECRET_MAX);
	else if (len < HS_JWT_HMAC_MIN_KEY)
		rc = hs_error_set(err, HS_INVALID, "%s: shorter than %d bytes", path, HS_JWT_HMAC_MIN_KEY);
	else if ((*out = malloc(len + 1)) == NULL)
		rc = hs_error_set(err, HS_INTERNAL, "jwt secret: out of memory");
	else {
		memcpy(*out, buf, len);
		(*out)[len] = '\0';
	}
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

/* Write a fresh secret to a temporary file and link it into place: link(2)
 * fails if another process created the key first (then that one is used). */
static int create_secret(const char *dir, const char *path, hs_error *err)
{
	char tmp[4096], *s = NULL;
	int fd, rc = HS_OK;
	unsigned char raw[48];
	size_t cap = sodium_base64_ENCODED_LEN(sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.%ld.tmp", dir, SECRET_FILE, (long)getpid()) >=
	    sizeof(tmp))
		return hs_error_set(err, HS_INVALID, "data dir: path too long");
	if ((s = malloc(cap + 1)) == NULL)
		return hs_error_set(err, HS_INTERNAL, "jwt secret: out of memory");
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(s, cap, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
	size_t sl = strlen(s);
	s[sl] = '\n';
	s[sl + 1] = '\0';
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "%s: cannot create: %s", tmp, strerror(errno));
		goto done;
	}
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s) || fsync(fd) != 0) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "%s: write failed: %s", tmp, strerror(errno));
		close(fd);
		(void)unlink(tmp);
		goto done;
	}
	close(fd);
	if (link(tmp, path) != 0 && errno != EEXIST)
		rc = hs_error_set(err, HS_UNAVAILABLE, "%s: cannot create: %s", path, strerror(errno));
	(void)unlink(tmp);
	if (rc == HS_OK)
		hs_log(HS_LOG_INFO, "auth", "generated a JWT signing key", HS_LS("path", path));
done:
	sodium_memzero(s, cap + 1);
	free(s);
	return rc;
}

int hs_auth_local_secret_load(const char *data_dir, char **out, hs_error *err)
{
	char path[4096];
	int fd, rc;
	if (data_dir == NULL || data_dir[0] == '\0')
		return hs_error_set(err, HS_INVALID, "jwt secret: no data dir");
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", data_dir, SECRET_FILE) >= sizeof(path))
		return hs_error_set(err, HS_INVALID, "data dir: path too long");
	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
		return hs_error_set(err, HS_UNAVAILABLE, "%s: cannot create: %s", data_dir,
				    strerror(errno));
	for (int attempt = 0; attempt < 2; attempt++) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0) {
			rc = read_secret(fd, path, out, err);
			close(fd);
			return rc;
		}
		if (errno != ENOENT)
			return hs_error_set(err, HS_UNAVAILABLE, "%s: cannot open: %s", path,
					    strerror(errno));
		if ((rc = create_secret(data_dir, path, err)) != HS_OK)
			return rc;
	}
	return hs_error_set(err, HS_INTERNAL, "%s: vanished after creation", path);
}
