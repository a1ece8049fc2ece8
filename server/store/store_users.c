/* Users of the local auth backend: one row per account, email unique and
 * stored lowercase. Password hashes are stored and returned, never logged. */
#include "store_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define USER_COLS "id, email, name, role, password_hash, created_at_ms, disabled"

static void lower(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[n] = '\0';
}

/* Normalise email into dst[HS_STORE_NAME_MAX]. */
static int norm_email(const char *email, char *dst, hs_error *err)
{
	int rc = hs_store__check_key(email, HS_STORE_NAME_MAX, "email", err);
	if (rc != HS_OK)
		return rc;
	lower(dst, email, strlen(email));
	return HS_OK;
}

static int read_user(hs_stmt *st, hs_store_user_row *u, hs_error *err)
{
	int rc;
	memset(u, 0, sizeof(*u));
	HS_COL_T(st, 0, u->id, "id");
	HS_COL_T(st, 1, u->email, "email");
	HS_COL_T(st, 2, u->name, "name");
	HS_COL_T(st, 3, u->role, "role");
	HS_COL_T(st, 4, u->password_hash, "password_hash");
	u->created_at_ms = hs_store__col_int64(st, 5);
	u->disabled = hs_store__col_int(st, 6) != 0;
	rc = HS_OK;
done:
	return rc;
}

static int read_user_row(hs_stmt *st, void *row, hs_error *err)
{
	return read_user(st, row, err);
}

int hs_store_user_insert(hs_store *s, const hs_store_user_row *u, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	char email[HS_STORE_NAME_MAX];
	if (s == NULL || u == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(u->id, sizeof(u->id), "user id", err)) != HS_OK ||
	    (rc = norm_email(u->email, email, err)) != HS_OK)
		return rc;
	if (strcmp(u->role, "user") != 0 && strcmp(u->role, "admin") != 0)
		return hs_error_set(err, HS_INVALID, "store: user %s: role must be user or admin",
				    u->id);
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_USER_INSERT,
		"INSERT INTO users(" USER_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
	HS_BIND_F(st, 1, u, id);
	HS_BIND_T(st, 2, email, sizeof(email), "email");
	HS_BIND_F(st, 3, u, name);
	HS_BIND_F(st, 4, u, role);
	HS_BIND_F(st, 5, u, password_hash);
	HS_BIND_I(st, 6, u->created_at_ms);
	HS_BIND_I(st, 7, u->disabled ? 1 : 0);
	rc = hs_store__step_done(s, st, "insert user", err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

/* The key (an email) is never echoed into the message. */
static int get_one(hs_store *s, hs_stmt_id id, const char *sql, const char *key,
		   const char *what, hs_store_user_row *out, hs_error *err)
{
	char not_found[64];
	snprintf(not_found, sizeof(not_found), "store: no user with that %s", what);
	return hs_store__get_one(s, id, sql, key, HS_STORE_NAME_MAX, what, sizeof(*out),
				 read_user_row, not_found, out, err);
}

int hs_store_user_get_by_id(hs_store *s, const char *id, hs_store_user_row *out, hs_error *err)
{
	int rc;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(id, HS_STORE_ID_MAX, "user id", err)) != HS_OK)
		return rc;
	return get_one(s, HS_STMT_USER_GET_ID, "SELECT " USER_COLS " FROM users WHERE id = ?1",
		       id, "id", out, err);
}

int hs_store_user_get_by_email(hs_store *s, const char *email, hs_store_user_row *out,
			       hs_error *err)
{
	int rc;
	char norm[HS_STORE_NAME_MAX];
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = norm_email(email, norm, err)) != HS_OK)
		return rc;
	return get_one(s, HS_STMT_USER_GET_EMAIL,
		       "SELECT " USER_COLS " FROM users WHERE email = ?1", norm, "email", out, err);
}

int hs_store_user_count(hs_store *s, int64_t *out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_USER_COUNT, "SELECT count(*) FROM users");
	if ((rc = hs_store__step_row(st, "count users", err)) != HS_OK)
		goto done;
	*out = hs_store__col_int64(st, 0);
	rc = HS_OK;
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_user_list(hs_store *s, const char *after_id, size_t limit, hs_store_user_row **out,
		       size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_USER_LIST,
		"SELECT " USER_COLS " FROM users WHERE id > ?1 ORDER BY id LIMIT ?2");
	HS_BIND_T(st, 1, after_id ? after_id : "", HS_STORE_ID_MAX, "after_id");
	HS_BIND_I(st, 2, hs_store__limit(limit));
	rc = hs_store__collect(s, st, sizeof(hs_store_user_row), read_user_row, "list users",
			       (void **)out, n_out, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_user_set_disabled(hs_store *s, const char *id, bool disabled, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(id, HS_STORE_ID_MAX, "user id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_USER_SET_DISABLED, "UPDATE users SET disabled = ?2 WHERE id = ?1");
	HS_BIND_T(st, 1, id, HS_STORE_ID_MAX, "user id");
	HS_BIND_I(st, 2, disabled ? 1 : 0);
	if ((rc = hs_store__step_done(s, st, "disable user", err)) == HS_OK &&
	    hs_store__changes(st) == 0)
		rc = hs_error_set(err, HS_NOT_FOUND, "store: no user with that id");
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_user_delete(hs_store *s, const char *id, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(id, HS_STORE_ID_MAX, "user id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_USER_DELETE, "DELETE FROM users WHERE id = ?1");
	HS_BIND_T(st, 1, id, HS_STORE_ID_MAX, "user id");
	if ((rc = hs_store__step_done(s, st, "delete user", err)) == HS_OK &&
	    hs_store__changes(st) == 0)
		rc = hs_error_set(err, HS_NOT_FOUND, "store: no user with that id");
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}
