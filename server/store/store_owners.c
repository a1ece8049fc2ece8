/* Task ownership claims (store.h, "task ownership"): one row per task id,
 * inserted once and never changed, so the first claimant wins for good. */
#include "store_internal.h"

#include <string.h>

static int read_owner(hs_stmt *st, void *row, hs_error *err)
{
	return hs_store__col_text(st, 0, row, HS_STORE_ID_MAX, "owner", err);
}

int hs_store_task_owner(hs_store *s, const char *task_id, char owner_out[HS_STORE_ID_MAX],
			hs_error *err)
{
	if (s == NULL || owner_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	return hs_store__get_one(s, HS_STMT_OWNER_GET,
				 "SELECT owner FROM task_owners WHERE task_id = ?1", task_id,
				 HS_STORE_ID_MAX, "task id", HS_STORE_ID_MAX, read_owner,
				 "store: task id not claimed", owner_out, err);
}

int hs_store_task_claim(hs_store *s, const char *task_id, const char *owner, int64_t now_ms,
			char owner_out[HS_STORE_ID_MAX], hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || owner_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(task_id, HS_STORE_ID_MAX, "task id", err)) != HS_OK ||
	    (rc = hs_store__check_key(owner, HS_STORE_ID_MAX, "owner", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	/* Insert if free, then read whoever holds it. RETURNING would miss the
	 * existing row, so the read is a second statement: rows are never
	 * deleted, and ON CONFLICT DO NOTHING waits for a racing insert to
	 * commit (PostgreSQL), so the read sees the winner. */
	HS_STMT(st, HS_STMT_OWNER_CLAIM,
		"INSERT INTO task_owners(task_id, owner, claimed_at_ms) VALUES(?1, ?2, ?3) "
		"ON CONFLICT DO NOTHING");
	HS_BIND_T(st, 1, task_id, HS_STORE_ID_MAX, "task id");
	HS_BIND_T(st, 2, owner, HS_STORE_ID_MAX, "owner");
	HS_BIND_I(st, 3, now_ms);
	if ((rc = hs_store__step_done(s, st, "claim task id", err)) != HS_OK)
		goto done;
	hs_store__release(st);
	HS_STMT(st, HS_STMT_OWNER_GET, "SELECT owner FROM task_owners WHERE task_id = ?1");
	HS_BIND_T(st, 1, task_id, HS_STORE_ID_MAX, "task id");
	if ((rc = hs_store__step_row(st, "claim task id", err)) != HS_OK)
		goto done;
	rc = hs_store__col_text(st, 0, owner_out, HS_STORE_ID_MAX, "owner", err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_task_owner_count(hs_store *s, const char *owner, int64_t *out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(owner, HS_STORE_ID_MAX, "owner", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_OWNER_COUNT, "SELECT COUNT(*) FROM task_owners WHERE owner = ?1");
	HS_BIND_T(st, 1, owner, HS_STORE_ID_MAX, "owner");
	if ((rc = hs_store__step_row(st, "count task ids", err)) != HS_OK)
		goto done;
	*out = hs_store__col_int64(st, 0);
	rc = HS_OK;
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}
