/* API keys: service identities, stored by the hex SHA-256 of the key
 * (never the key). Every insert and revoke takes the next seq so other
 * processes can catch up with hs_store_apikey_changes; last-used times are
 * written in batches by hs_store_apikey_touch and do not move seq. */
#include "store_internal.h"

#include <string.h>

#define APIKEY_COLS                                                                        \
	"id, name, role, secret_hash, allowed_methods, created_by, created_at_ms, "        \
	"expires_at_ms, last_used_at_ms, revoked_at_ms, seq"
#define NEXT_SEQ "(SELECT COALESCE(MAX(seq), 0) + 1 FROM api_keys)"

static int read_apikey(hs_stmt *st, void *row, hs_error *err)
{
	hs_store_apikey_row *r = row;
	int rc;
	memset(r, 0, sizeof(*r));
	HS_COL_T(st, 0, r->id, "id");
	HS_COL_T(st, 1, r->name, "name");
	HS_COL_T(st, 2, r->role, "role");
	HS_COL_T(st, 3, r->secret_hash, "secret_hash");
	HS_COL_T(st, 4, r->allowed_methods, "allowed_methods");
	HS_COL_T(st, 5, r->created_by, "created_by");
	r->created_at_ms = hs_store__col_int64(st, 6);
	r->expires_at_ms = hs_store__col_int64(st, 7);
	r->last_used_at_ms = hs_store__col_int64(st, 8);
	r->revoked_at_ms = hs_store__col_int64(st, 9);
	r->seq = hs_store__col_int64(st, 10);
	rc = HS_OK;
done:
	return rc;
}

int hs_store_apikey_insert(hs_store *s, const hs_store_apikey_row *r, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || r == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(r->id, sizeof(r->id), "api key id", err)) != HS_OK ||
	    (rc = hs_store__check_key(r->secret_hash, sizeof(r->secret_hash), "api key hash",
				      err)) != HS_OK)
		return rc;
	if (strcmp(r->role, "user") != 0 && strcmp(r->role, "admin") != 0)
		return hs_error_set(err, HS_INVALID, "store: api key %s: role must be user or admin",
				    r->id);
	hs_store__lock(s);
	if ((rc = hs_store__ordered_begin(s, HS_STORE_PG_APIKEYS_LOCK, err)) != HS_OK)
		goto done;
	HS_STMT(st, HS_STMT_APIKEY_INSERT,
		"INSERT INTO api_keys(" APIKEY_COLS ") "
		"VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, " NEXT_SEQ ")");
	HS_BIND_F(st, 1, r, id);
	HS_BIND_F(st, 2, r, name);
	HS_BIND_F(st, 3, r, role);
	HS_BIND_F(st, 4, r, secret_hash);
	HS_BIND_F(st, 5, r, allowed_methods);
	HS_BIND_F(st, 6, r, created_by);
	HS_BIND_I(st, 7, r->created_at_ms);
	HS_BIND_I(st, 8, r->expires_at_ms);
	HS_BIND_I(st, 9, r->last_used_at_ms);
	HS_BIND_I(st, 10, r->revoked_at_ms);
	rc = hs_store__step_done(s, st, "insert api key", err);
done:
	hs_store__release(st);
	rc = hs_store__ordered_end(s, rc, err);
	hs_store__unlock(s);
	return rc;
}

int hs_store_apikey_get(hs_store *s, const char *id, hs_store_apikey_row *out, hs_error *err)
{
	int rc;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(id, HS_STORE_ID_MAX, "api key id", err)) != HS_OK)
		return rc;
	return hs_store__get_one(s, HS_STMT_APIKEY_GET,
				 "SELECT " APIKEY_COLS " FROM api_keys WHERE id = ?1", id,
				 HS_STORE_ID_MAX, "api key id", sizeof(*out), read_apikey,
				 "store: api key not found", out, err);
}

int hs_store_apikey_list(hs_store *s, const char *after_id, size_t limit, bool include_revoked,
			 hs_store_apikey_row **out, size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	if (include_revoked)
		HS_STMT(st, HS_STMT_APIKEY_LIST_ALL,
			"SELECT " APIKEY_COLS " FROM api_keys WHERE id > ?1 ORDER BY id LIMIT ?2");
	else
		HS_STMT(st, HS_STMT_APIKEY_LIST,
			"SELECT " APIKEY_COLS " FROM api_keys WHERE id > ?1 AND revoked_at_ms = 0 "
			"ORDER BY id LIMIT ?2");
	HS_BIND_T(st, 1, after_id != NULL ? after_id : "", HS_STORE_ID_MAX, "after id");
	HS_BIND_I(st, 2, hs_store__limit(limit));
	rc = hs_store__collect(s, st, sizeof(hs_store_apikey_row), read_apikey, "list api keys",
			       (void **)out, n_out, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_apikey_changes(hs_store *s, int64_t after_seq, size_t limit,
			    hs_store_apikey_row **out, size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_APIKEY_CHANGES,
		"SELECT " APIKEY_COLS " FROM api_keys WHERE seq > ?1 ORDER BY seq LIMIT ?2");
	HS_BIND_I(st, 1, after_seq);
	HS_BIND_I(st, 2, hs_store__limit(limit));
	rc = hs_store__collect(s, st, sizeof(hs_store_apikey_row), read_apikey,
			       "list api key changes", (void **)out, n_out, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_apikey_revoke(hs_store *s, const char *id, int64_t now_ms, hs_store_apikey_row *out,
			   hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(id, HS_STORE_ID_MAX, "api key id", err)) != HS_OK)
		return rc;
	if (now_ms <= 0)
		return hs_error_set(err, HS_INVALID, "store: revocation time must be positive");
	hs_store__lock(s);
	if ((rc = hs_store__ordered_begin(s, HS_STORE_PG_APIKEYS_LOCK, err)) != HS_OK)
		goto done;
	HS_STMT(st, HS_STMT_APIKEY_REVOKE,
		"UPDATE api_keys SET revoked_at_ms = ?2, seq = " NEXT_SEQ
		" WHERE id = ?1 AND revoked_at_ms = 0");
	HS_BIND_T(st, 1, id, HS_STORE_ID_MAX, "api key id");
	HS_BIND_I(st, 2, now_ms);
	rc = hs_store__step_done(s, st, "revoke api key", err);
done:
	hs_store__release(st);
	rc = hs_store__ordered_end(s, rc, err);
	hs_store__unlock(s);
	if (rc != HS_OK)
		return rc;
	hs_store_apikey_row row;
	if ((rc = hs_store_apikey_get(s, id, &row, err)) == HS_OK && out != NULL)
		*out = row;
	return rc;
}

int hs_store_apikey_touch(hs_store *s, const char *const *ids, const int64_t *times, size_t n,
			  hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || (n > 0 && (ids == NULL || times == NULL)))
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if (n == 0)
		return HS_OK;
	hs_store__lock(s);
	if ((rc = hs_store__begin(s, err)) != HS_OK)
		goto unlock;
	for (size_t i = 0; i < n; i++) {
		HS_STMT(st, HS_STMT_APIKEY_TOUCH,
			"UPDATE api_keys SET last_used_at_ms = ?2 "
			"WHERE id = ?1 AND last_used_at_ms < ?2");
		HS_BIND_T(st, 1, ids[i], HS_STORE_ID_MAX, "api key id");
		HS_BIND_I(st, 2, times[i]);
		rc = hs_store__step_done(s, st, "record api key use", err);
		hs_store__release(st);
		st = NULL;
		if (rc != HS_OK)
			goto done;
	}
	rc = hs_store__commit(s, err);
done:
	hs_store__release(st);
	if (rc != HS_OK)
		hs_store__rollback(s);
unlock:
	hs_store__unlock(s);
	return rc;
}

int hs_store_apikey_count_active(hs_store *s, int64_t *out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_APIKEY_COUNT, "SELECT COUNT(*) FROM api_keys WHERE revoked_at_ms = 0");
	if ((rc = hs_store__step_row(st, "count api keys", err)) == HS_OK)
		*out = hs_store__col_int64(st, 0);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}
