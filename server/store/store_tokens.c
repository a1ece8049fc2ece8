/* Refresh tokens of the local auth backend, stored by the hex sha256 of the
 * opaque token (never the token). Rotation: a token is consumed once; a
 * second use is reuse and the auth module revokes its whole family. Hashes
 * never appear in messages or logs. */
#include "store_internal.h"

#include <string.h>

#define REFRESH_COLS "token_hash, user_id, family_id, issued_at_ms, expires_at_ms, used_at_ms, revoked"

int hs_store_refresh_insert(hs_store *s, const hs_store_refresh_row *r, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || r == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(r->token_hash, sizeof(r->token_hash), "token hash", err)) !=
		    HS_OK ||
	    (rc = hs_store__check_key(r->user_id, sizeof(r->user_id), "user id", err)) != HS_OK ||
	    (rc = hs_store__check_key(r->family_id, sizeof(r->family_id), "family id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_REFRESH_INSERT,
		"INSERT INTO refresh_tokens(" REFRESH_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
	HS_BIND_F(st, 1, r, token_hash);
	HS_BIND_F(st, 2, r, user_id);
	HS_BIND_F(st, 3, r, family_id);
	HS_BIND_I(st, 4, r->issued_at_ms);
	HS_BIND_I(st, 5, r->expires_at_ms);
	HS_BIND_I(st, 6, r->used_at_ms);
	HS_BIND_I(st, 7, r->revoked ? 1 : 0);
	rc = hs_store__step_done(s, st, "insert refresh token", err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_refresh_get(hs_store *s, const char *token_hash, hs_store_refresh_row *out,
			 hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	hs_store_refresh_row r;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(token_hash, HS_STORE_HASH_MAX, "token hash", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_REFRESH_GET,
		"SELECT " REFRESH_COLS " FROM refresh_tokens WHERE token_hash = ?1");
	HS_BIND_T(st, 1, token_hash, HS_STORE_HASH_MAX, "token hash");
	rc = hs_store__step(st, "get refresh token", err);
	if (rc == HS_OK) {
		rc = hs_error_set(err, HS_NOT_FOUND, "store: refresh token not found");
		goto done;
	}
	if (rc != HS_STORE_ROW)
		goto done;
	HS_COL_T(st, 0, r.token_hash, "token_hash");
	HS_COL_T(st, 1, r.user_id, "user_id");
	HS_COL_T(st, 2, r.family_id, "family_id");
	r.issued_at_ms = hs_store__col_int64(st, 3);
	r.expires_at_ms = hs_store__col_int64(st, 4);
	r.used_at_ms = hs_store__col_int64(st, 5);
	r.revoked = hs_store__col_int(st, 6) != 0;
	*out = r;
	rc = HS_OK;
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

/* Run a one-key UPDATE/DELETE; *changes = rows it changed. Caller holds lock. */
static int change(hs_store *s, hs_stmt_id id, const char *sql, const char *key, int64_t num,
		  const char *op, int64_t *changes, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	HS_STMT(st, id, sql);
	if (key != NULL)
		HS_BIND_T(st, 1, key, HS_STORE_HASH_MAX, "key");
	HS_BIND_I(st, 2, num);
	if ((rc = hs_store__step_done(s, st, op, err)) != HS_OK)
		goto done;
	*changes = hs_store__changes(st);
done:
	hs_store__release(st);
	return rc;
}

int hs_store_refresh_consume(hs_store *s, const char *token_hash, int64_t now_ms, hs_error *err)
{
	int rc;
	int64_t n = 0;
	hs_stmt *st = NULL;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(token_hash, HS_STORE_HASH_MAX, "token hash", err)) != HS_OK)
		return rc;
	if (now_ms <= 0)
		return hs_error_set(err, HS_INVALID, "store: consume time must be positive");
	hs_store__lock(s);
	/* One statement decides who consumed it: the WHERE clause is the
	 * compare-and-set (SQLite serialises writers; PostgreSQL re-checks it
	 * on the row a concurrent UPDATE committed). */
	rc = change(s, HS_STMT_REFRESH_CONSUME,
		    "UPDATE refresh_tokens SET used_at_ms = ?2 "
		    "WHERE token_hash = ?1 AND used_at_ms = 0 AND revoked = 0",
		    token_hash, now_ms, "consume refresh token", &n, err);
	if (rc != HS_OK || n == 1)
		goto done;
	HS_STMT(st, HS_STMT_REFRESH_EXISTS, "SELECT 1 FROM refresh_tokens WHERE token_hash = ?1");
	HS_BIND_T(st, 1, token_hash, HS_STORE_HASH_MAX, "token hash");
	rc = hs_store__step(st, "consume refresh token", err);
	if (rc == HS_STORE_ROW)
		rc = hs_error_set(err, HS_CONFLICT, "store: refresh token already used or revoked");
	else if (rc == HS_OK)
		rc = hs_error_set(err, HS_NOT_FOUND, "store: refresh token not found");
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_refresh_revoke_family(hs_store *s, const char *family_id, int64_t *n_out,
				   hs_error *err)
{
	int rc;
	int64_t n = 0;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(family_id, HS_STORE_ID_MAX, "family id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	rc = change(s, HS_STMT_REFRESH_REVOKE_FAMILY,
		    "UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?1 AND revoked = ?2",
		    family_id, 0, "revoke token family", &n, err);
	hs_store__unlock(s);
	if (rc == HS_OK && n_out != NULL)
		*n_out = n;
	return rc;
}

int hs_store_refresh_revoke(hs_store *s, const char *token_hash, hs_error *err)
{
	int rc;
	int64_t n = 0;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(token_hash, HS_STORE_HASH_MAX, "token hash", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	rc = change(s, HS_STMT_REFRESH_REVOKE,
		    "UPDATE refresh_tokens SET revoked = ?2 WHERE token_hash = ?1", token_hash, 1,
		    "revoke refresh token", &n, err);
	hs_store__unlock(s);
	if (rc == HS_OK && n == 0)
		rc = hs_error_set(err, HS_NOT_FOUND, "store: refresh token not found");
	return rc;
}

int hs_store_refresh_delete_expired(hs_store *s, int64_t now_ms, int64_t *n_out, hs_error *err)
{
	int rc;
	int64_t n = 0;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	rc = change(s, HS_STMT_REFRESH_DELETE_EXPIRED,
		    "DELETE FROM refresh_tokens WHERE expires_at_ms <= ?2", NULL, now_ms,
		    "delete expired refresh tokens", &n, err);
	hs_store__unlock(s);
	if (rc == HS_OK && n_out != NULL)
		*n_out = n;
	return rc;
}

int hs_store_refresh_revoke_user(hs_store *s, const char *user_id, int64_t *n_out, hs_error *err)
{
	int rc;
	int64_t n = 0;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(user_id, HS_STORE_ID_MAX, "user id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	rc = change(s, HS_STMT_REFRESH_REVOKE_USER,
		    "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ?1 AND revoked = ?2",
		    user_id, 0, "revoke a user's refresh tokens", &n, err);
	hs_store__unlock(s);
	if (rc == HS_OK && n_out != NULL)
		*n_out = n;
	return rc;
}

/* ---- access-token revocations ---- */

#define REVOCATION_COLS "seq, kind, id, revoked_at_ms, expires_at_ms"

static int read_revocation(hs_stmt *st, void *row, hs_error *err)
{
	hs_store_revocation_row *r = row;
	int rc;
	memset(r, 0, sizeof(*r));
	r->seq = hs_store__col_int64(st, 0);
	HS_COL_T(st, 1, r->kind, "kind");
	HS_COL_T(st, 2, r->id, "id");
	r->revoked_at_ms = hs_store__col_int64(st, 3);
	r->expires_at_ms = hs_store__col_int64(st, 4);
	rc = HS_OK;
done:
	return rc;
}

int hs_store_revocation_put(hs_store *s, const hs_store_revocation_row *r, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || r == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(r->kind, sizeof(r->kind), "revocation kind", err)) != HS_OK ||
	    (rc = hs_store__check_key(r->id, sizeof(r->id), "revocation id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	if ((rc = hs_store__ordered_begin(s, HS_STORE_PG_REVOCATIONS_LOCK, err)) != HS_OK)
		goto done;
	HS_STMT2(st, HS_STMT_REVOCATION_PUT,
		 "INSERT OR REPLACE INTO auth_revocations(kind, id, revoked_at_ms, expires_at_ms) "
		 "VALUES(?1, ?2, ?3, ?4)",
		 "INSERT INTO auth_revocations(kind, id, revoked_at_ms, expires_at_ms) "
		 "VALUES($1, $2, $3, $4) ON CONFLICT (kind, id) DO UPDATE SET "
		 "seq = nextval('auth_revocations_seq_seq'), revoked_at_ms = excluded.revoked_at_ms, "
		 "expires_at_ms = excluded.expires_at_ms");
	HS_BIND_F(st, 1, r, kind);
	HS_BIND_F(st, 2, r, id);
	HS_BIND_I(st, 3, r->revoked_at_ms);
	HS_BIND_I(st, 4, r->expires_at_ms);
	rc = hs_store__step_done(s, st, "record a revocation", err);
done:
	hs_store__release(st);
	rc = hs_store__ordered_end(s, rc, err);
	hs_store__unlock(s);
	return rc;
}

int hs_store_revocation_list(hs_store *s, int64_t after_seq, int64_t now_ms, size_t limit,
			     hs_store_revocation_row **out, size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_REVOCATION_LIST,
		"SELECT " REVOCATION_COLS " FROM auth_revocations "
		"WHERE seq > ?1 AND expires_at_ms > ?2 ORDER BY seq LIMIT ?3");
	HS_BIND_I(st, 1, after_seq);
	HS_BIND_I(st, 2, now_ms);
	HS_BIND_I(st, 3, hs_store__limit(limit));
	rc = hs_store__collect(s, st, sizeof(hs_store_revocation_row), read_revocation,
			       "list revocations", (void **)out, n_out, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_revocation_delete_expired(hs_store *s, int64_t now_ms, int64_t *n_out,
				       hs_error *err)
{
	int rc;
	int64_t n = 0;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	rc = change(s, HS_STMT_REVOCATION_DELETE_EXPIRED,
		    "DELETE FROM auth_revocations WHERE expires_at_ms <= ?2", NULL, now_ms,
		    "delete expired revocations", &n, err);
	hs_store__unlock(s);
	if (rc == HS_OK && n_out != NULL)
		*n_out = n;
	return rc;
}
