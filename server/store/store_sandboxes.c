/* Sandboxes and their snapshots. The store keeps the sandbox module's state
 * as an opaque int; pid + pid_start_time let a restarted harnessd re-adopt a
 * VM process only if it is still the same process. */
#include "store_internal.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define SANDBOX_COLS                                                                      \
	"sandbox_id, owner, task_id, driver, state, pid, pid_start_time, vcpu_count, "     \
	"mem_size_mib, ttl_seconds, expires_at_ms, created_at_ms, started_at_ms, exit_code, " \
	"failure_reason, config_json, labels_json, log_path, runtime_dir, stopped_at_ms, node_id"

#define SNAPSHOT_COLS                                                                     \
	"snapshot_id, sandbox_id, type, created_at_ms, mem_file_path, snapshot_path, size_bytes, " \
	"base_snapshot_id"

static int bind_sandbox(hs_store *s, hs_stmt *st, const hs_store_sandbox_row *r,
			hs_error *err)
{
	int rc;
	HS_BIND_F(st, 1, r, sandbox_id);
	HS_BIND_F(st, 2, r, owner);
	HS_BIND_F(st, 3, r, task_id);
	HS_BIND_F(st, 4, r, driver);
	HS_BIND_I(st, 5, r->state);
	HS_BIND_I(st, 6, r->pid);
	HS_BIND_I(st, 7, (int64_t)r->pid_start_time);
	HS_BIND_I(st, 8, r->vcpu_count);
	HS_BIND_I(st, 9, r->mem_size_mib);
	HS_BIND_I(st, 10, r->ttl_seconds);
	HS_BIND_I(st, 11, r->expires_at_ms);
	HS_BIND_I(st, 12, r->created_at_ms);
	HS_BIND_I(st, 13, r->started_at_ms);
	HS_BIND_I(st, 14, r->exit_code);
	HS_BIND_F(st, 15, r, failure_reason);
	HS_BIND_F(st, 16, r, config_json);
	HS_BIND_F(st, 17, r, labels_json);
	HS_BIND_F(st, 18, r, log_path);
	HS_BIND_F(st, 19, r, runtime_dir);
	HS_BIND_I(st, 20, r->stopped_at_ms);
	HS_BIND_F(st, 21, r, node_id);
	rc = HS_OK;
done:
	return rc;
}

static int read_sandbox(hs_stmt *st, hs_store_sandbox_row *r, hs_error *err)
{
	int rc;
	memset(r, 0, sizeof(*r));
	HS_COL_T(st, 0, r->sandbox_id, "sandbox_id");
	HS_COL_T(st, 1, r->owner, "owner");
	HS_COL_T(st, 2, r->task_id, "task_id");
	HS_COL_T(st, 3, r->driver, "driver");
	r->state = hs_store__col_int(st, 4);
	r->pid = hs_store__col_int64(st, 5);
	r->pid_start_time = (uint64_t)hs_store__col_int64(st, 6);
	r->vcpu_count = hs_store__col_int(st, 7);
	r->mem_size_mib = hs_store__col_int64(st, 8);
	r->ttl_seconds = hs_store__col_int64(st, 9);
	r->expires_at_ms = hs_store__col_int64(st, 10);
	r->created_at_ms = hs_store__col_int64(st, 11);
	r->started_at_ms = hs_store__col_int64(st, 12);
	r->exit_code = hs_store__col_int(st, 13);
	HS_COL_T(st, 14, r->failure_reason, "failure_reason");
	HS_COL_T(st, 15, r->config_json, "config_json");
	HS_COL_T(st, 16, r->labels_json, "labels_json");
	HS_COL_T(st, 17, r->log_path, "log_path");
	HS_COL_T(st, 18, r->runtime_dir, "runtime_dir");
	r->stopped_at_ms = hs_store__col_int64(st, 19);
	HS_COL_T(st, 20, r->node_id, "node_id");
	rc = HS_OK;
done:
	return rc;
}

static int read_sandbox_row(hs_stmt *st, void *row, hs_error *err)
{
	return read_sandbox(st, row, err);
}

static int write_sandbox(hs_store *s, const hs_store_sandbox_row *r, bool update, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || r == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(r->sandbox_id, sizeof(r->sandbox_id), "sandbox_id", err)) !=
		    HS_OK ||
	    (rc = hs_store__check_key(r->owner, sizeof(r->owner), "owner", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	if (update)
		HS_STMT(st, HS_STMT_SANDBOX_UPDATE,
			"UPDATE sandboxes SET owner = ?2, task_id = ?3, driver = ?4, state = ?5, "
			"pid = ?6, pid_start_time = ?7, vcpu_count = ?8, mem_size_mib = ?9, "
			"ttl_seconds = ?10, expires_at_ms = ?11, created_at_ms = ?12, "
			"started_at_ms = ?13, exit_code = ?14, failure_reason = ?15, "
			"config_json = ?16, labels_json = ?17, log_path = ?18, runtime_dir = ?19, "
			"stopped_at_ms = ?20, node_id = ?21 WHERE sandbox_id = ?1 AND node_id = ?21");
	else
		HS_STMT(st, HS_STMT_SANDBOX_INSERT,
			"INSERT INTO sandboxes(" SANDBOX_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, "
			"?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)");
	if ((rc = bind_sandbox(s, st, r, err)) != HS_OK)
		goto done;
	if ((rc = hs_store__step_done(s, st, update ? "update sandbox" : "insert sandbox", err)) !=
	    HS_OK)
		goto done;
	if (update && hs_store__changes(st) == 0)
		rc = HS_NOT_FOUND; /* missing, or fenced: told apart below */
done:
	hs_store__release(st);
	hs_store__unlock(s);
	if (update && rc == HS_NOT_FOUND) {
		/* The fence: a row another node holds now (it took this one over
		 * from a node it saw lost) is never written by the old holder. */
		hs_store_sandbox_row *cur = malloc(sizeof(*cur));
		if (cur == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		if (hs_store_sandbox_get(s, r->sandbox_id, cur, NULL) == HS_OK)
			rc = hs_error_set(err, HS_ABORTED,
					  "store: sandbox %s is held by node %s, not %s",
					  r->sandbox_id, cur->node_id[0] ? cur->node_id : "(none)",
					  r->node_id[0] ? r->node_id : "(none)");
		else
			rc = hs_error_set(err, HS_NOT_FOUND, "store: sandbox %s not found",
					  r->sandbox_id);
		free(cur);
	}
	return rc;
}

int hs_store_sandbox_insert(hs_store *s, const hs_store_sandbox_row *r, hs_error *err)
{
	return write_sandbox(s, r, false, err);
}

int hs_store_sandbox_update(hs_store *s, const hs_store_sandbox_row *r, hs_error *err)
{
	return write_sandbox(s, r, true, err);
}

int hs_store_sandbox_get(hs_store *s, const char *sandbox_id, hs_store_sandbox_row *out,
			 hs_error *err)
{
	int rc;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(sandbox_id, HS_STORE_ID_MAX, "sandbox_id", err)) != HS_OK)
		return rc;
	char not_found[HS_STORE_ID_MAX + 64];
	snprintf(not_found, sizeof(not_found), "store: sandbox %s not found", sandbox_id);
	return hs_store__get_one(s, HS_STMT_SANDBOX_GET,
				 "SELECT " SANDBOX_COLS " FROM sandboxes WHERE sandbox_id = ?1", sandbox_id,
				 HS_STORE_ID_MAX, "sandbox_id", sizeof(*out), read_sandbox_row, not_found,
				 out, err);
}

int hs_store_sandbox_delete(hs_store *s, const char *sandbox_id, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(sandbox_id, HS_STORE_ID_MAX, "sandbox_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_SANDBOX_DELETE, "DELETE FROM sandboxes WHERE sandbox_id = ?1");
	HS_BIND_T(st, 1, sandbox_id, HS_STORE_ID_MAX, "sandbox_id");
	if ((rc = hs_store__step_done(s, st, "delete sandbox", err)) != HS_OK)
		goto done;
	if (hs_store__changes(st) == 0)
		rc = hs_error_set(err, HS_NOT_FOUND, "store: sandbox %s not found", sandbox_id);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_sandbox_list(hs_store *s, const hs_store_sandbox_filter *f,
			  hs_store_sandbox_row **out, size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || f == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	/* Label selector: every pair of ?8 present with an equal value. */
	HS_STMT2(st, HS_STMT_SANDBOX_LIST,
		 "SELECT " SANDBOX_COLS " FROM sandboxes "
		 "WHERE (?1 IS NULL OR (created_at_ms, sandbox_id) < (?6, ?1)) "
		 "AND (?2 IS NULL OR owner = ?2) AND (?3 IS NULL OR task_id = ?3) "
		 "AND (?4 < 0 OR state = ?4) AND (?7 < 0 OR state != ?7) "
		 "AND (?8 IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(?8) AS sel "
		 "WHERE NOT EXISTS (SELECT 1 FROM json_each(sandboxes.labels_json) AS l "
		 "WHERE l.key = sel.key AND l.value = sel.value))) "
		 "AND (?9 IS NULL OR node_id = ?9) "
		 "ORDER BY created_at_ms DESC, sandbox_id DESC LIMIT ?5",
		 "SELECT " SANDBOX_COLS " FROM sandboxes "
		 "WHERE ($1::text IS NULL OR (created_at_ms, sandbox_id) < ($6::bigint, $1::text)) "
		 "AND ($2::text IS NULL OR owner = $2) AND ($3::text IS NULL OR task_id = $3) "
		 "AND ($4::bigint < 0 OR state = $4) AND ($7::bigint < 0 OR state != $7) "
		 "AND ($8::jsonb IS NULL OR labels_json::jsonb @> $8::jsonb) "
		 "AND ($9::text IS NULL OR node_id = $9) "
		 "ORDER BY created_at_ms DESC, sandbox_id DESC LIMIT $5");
	HS_BIND_T(st, 1, f->after_id, HS_STORE_ID_MAX, "after_id");
	HS_BIND_T(st, 2, f->owner, HS_STORE_ID_MAX, "owner");
	HS_BIND_T(st, 3, f->task_id, HS_STORE_ID_MAX, "task_id");
	HS_BIND_I(st, 4, f->state < 0 ? -1 : f->state);
	HS_BIND_I(st, 5, hs_store__limit(f->limit));
	HS_BIND_I(st, 6, f->after_id ? f->after_created_at_ms : 0);
	HS_BIND_I(st, 7, f->not_state < 0 ? -1 : f->not_state);
	HS_BIND_T(st, 8, f->labels_json, HS_STORE_JSON_MAX, "labels_json");
	HS_BIND_T(st, 9, f->node_id, HS_STORE_ID_MAX, "node_id");
	rc = hs_store__collect(s, st, sizeof(hs_store_sandbox_row), read_sandbox_row, "list sandboxes", (void **)out, n_out,
			       err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_sandbox_count_by_owner(hs_store *s, const char *owner, int destroyed_state,
				    int64_t *out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(owner, HS_STORE_ID_MAX, "owner", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_SANDBOX_COUNT_OWNER,
		"SELECT count(*) FROM sandboxes WHERE owner = ?1 AND state != ?2");
	HS_BIND_T(st, 1, owner, HS_STORE_ID_MAX, "owner");
	HS_BIND_I(st, 2, destroyed_state);
	if ((rc = hs_store__step_row(st, "count sandboxes", err)) != HS_OK)
		goto done;
	*out = hs_store__col_int64(st, 0);
	rc = HS_OK;
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_sandbox_adopt_unowned(hs_store *s, const char *node_id, size_t *n_out,
				   hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(node_id, HS_STORE_ID_MAX, "node_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_SANDBOX_ADOPT_UNOWNED,
		"UPDATE sandboxes SET node_id = ?1 WHERE node_id = ''");
	HS_BIND_T(st, 1, node_id, HS_STORE_ID_MAX, "node_id");
	if ((rc = hs_store__step_done(s, st, "adopt sandboxes of no node", err)) == HS_OK &&
	    n_out != NULL)
		*n_out = (size_t)hs_store__changes(st);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

/* The rows a take may move (?1 taker, ?5 destroyed, ?6 live after, ?2 one
 * id or ''): in the inner select (bounded by ?8) and again in the outer
 * WHERE, which PostgreSQL re-checks on a row another node just took. */
#define TAKE_COND(t)                                                                       \
	t "node_id <> '' AND " t "node_id <> ?1 AND " t "state <> ?5 "                         \
	  "AND (CAST(?2 AS TEXT) = '' OR " t "sandbox_id = ?2) "                              \
	  "AND (EXISTS (SELECT 1 FROM nodes WHERE nodes.node_id = " t "node_id "               \
	  "AND nodes.expires_at_ms <= ?6) "                                                    \
	  "OR (CAST(?2 AS TEXT) <> '' AND " TAKEN_MARK(t) ")) "
/* Taken from a lost node and not run since (the reason the take wrote). */
#define TAKEN_MARK(t) t "state = ?4 AND " t "pid = 0 AND " t "failure_reason LIKE 'node % lost%'"

int hs_store_sandbox_take_lost(hs_store *s, const char *node_id, const char *sandbox_id,
			       const char *runtime_root, int64_t now_ms, int64_t live_after_ms,
			       int failed_state, int destroyed_state, size_t limit,
			       hs_store_sandbox_row **out, size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(node_id, HS_STORE_ID_MAX, "node_id", err)) != HS_OK ||
	    (sandbox_id != NULL &&
	     (rc = hs_store__check_key(sandbox_id, HS_STORE_ID_MAX, "sandbox_id", err)) != HS_OK))
		return rc;
	if (limit < 1 || limit > HS_STORE_LIST_MAX)
		return hs_error_set(err, HS_INVALID, "store: take limit must be 1..%d",
				    HS_STORE_LIST_MAX);
	if (runtime_root == NULL)
		runtime_root = "";
	/* <root>/<id>/sandbox.log must fit a path column for any id. */
	if (strlen(runtime_root) + 1 + HS_STORE_ID_MAX + sizeof("/sandbox.log") > HS_STORE_PATH_MAX)
		return hs_error_set(err, HS_INVALID, "store: runtime root too long");
	hs_store__lock(s);
	/* A node with sandboxes and no row (an older harnessd deleted its row
	 * on a clean stop) is first seen missing now: an expired row at now_ms
	 * records it, so its sandboxes get the same grace as an expired row's
	 * (one statement; the first survivor's time stands). */
	HS_STMT(st, HS_STMT_SANDBOX_MARK_MISSING,
		"INSERT INTO nodes(node_id, address, started_at_ms, expires_at_ms, updated_at_ms) "
		"SELECT DISTINCT node_id, '', 0, CAST(?2 AS BIGINT), CAST(?2 AS BIGINT) FROM sandboxes "
		"WHERE node_id <> '' AND node_id <> ?1 AND state <> ?3 "
		"AND NOT EXISTS (SELECT 1 FROM nodes WHERE nodes.node_id = sandboxes.node_id) "
		"ON CONFLICT (node_id) DO NOTHING");
	HS_BIND_T(st, 1, node_id, HS_STORE_ID_MAX, "node_id");
	HS_BIND_I(st, 2, now_ms);
	HS_BIND_I(st, 3, destroyed_state);
	if ((rc = hs_store__step_done(s, st, "mark missing nodes", err)) != HS_OK)
		goto done;
	hs_store__release(st);
	st = NULL;
	/* SET reads the old row: the reason names the node that was lost. */
	HS_STMT(st, HS_STMT_SANDBOX_TAKE_LOST,
		"UPDATE sandboxes SET state = ?4, "
		"failure_reason = CASE WHEN " TAKEN_MARK("") " THEN failure_reason "
		"ELSE 'node ' || node_id || ' lost' || "
		"CASE WHEN state = ?4 AND failure_reason <> '' AND length(failure_reason) <= 200 "
		"THEN ' (failed before: ' || failure_reason || ')' ELSE '' END END, pid = 0, "
		"stopped_at_ms = CASE WHEN stopped_at_ms = 0 THEN ?3 ELSE stopped_at_ms END, "
		"runtime_dir = CASE WHEN CAST(?7 AS TEXT) = '' THEN runtime_dir "
		"ELSE ?7 || '/' || sandbox_id END, "
		"log_path = CASE WHEN CAST(?7 AS TEXT) = '' THEN log_path "
		"ELSE ?7 || '/' || sandbox_id || '/sandbox.log' END, "
		"node_id = ?1 "
		"WHERE " TAKE_COND("sandboxes.") "AND sandboxes.sandbox_id IN (SELECT l.sandbox_id FROM sandboxes l "
		"WHERE " TAKE_COND("l.") "ORDER BY l.sandbox_id LIMIT ?8) "
		"RETURNING " SANDBOX_COLS);
	HS_BIND_T(st, 1, node_id, HS_STORE_ID_MAX, "node_id");
	HS_BIND_T(st, 2, sandbox_id ? sandbox_id : "", HS_STORE_ID_MAX, "sandbox_id");
	HS_BIND_I(st, 3, now_ms);
	HS_BIND_I(st, 4, failed_state);
	HS_BIND_I(st, 5, destroyed_state);
	HS_BIND_I(st, 6, live_after_ms);
	HS_BIND_T(st, 7, runtime_root, HS_STORE_PATH_MAX, "runtime_root");
	HS_BIND_I(st, 8, (int64_t)limit);
	rc = hs_store__collect(s, st, sizeof(hs_store_sandbox_row), read_sandbox_row,
			       "take lost sandboxes", (void **)out, n_out, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

/* ---- snapshots ----------------------------------------------------------- */

static int read_snapshot(hs_stmt *st, hs_store_snapshot_row *r, hs_error *err)
{
	int rc;
	memset(r, 0, sizeof(*r));
	HS_COL_T(st, 0, r->snapshot_id, "snapshot_id");
	HS_COL_T(st, 1, r->sandbox_id, "sandbox_id");
	HS_COL_T(st, 2, r->type, "type");
	r->created_at_ms = hs_store__col_int64(st, 3);
	HS_COL_T(st, 4, r->mem_file_path, "mem_file_path");
	HS_COL_T(st, 5, r->snapshot_path, "snapshot_path");
	r->size_bytes = hs_store__col_int64(st, 6);
	HS_COL_T(st, 7, r->base_snapshot_id, "base_snapshot_id");
	rc = HS_OK;
done:
	return rc;
}

static int read_snapshot_row(hs_stmt *st, void *row, hs_error *err)
{
	return read_snapshot(st, row, err);
}

int hs_store_snapshot_insert(hs_store *s, const hs_store_snapshot_row *r, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || r == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(r->snapshot_id, sizeof(r->snapshot_id), "snapshot_id", err)) !=
		    HS_OK ||
	    (rc = hs_store__check_key(r->sandbox_id, sizeof(r->sandbox_id), "sandbox_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_SNAPSHOT_INSERT,
		"INSERT INTO snapshots(" SNAPSHOT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	HS_BIND_F(st, 1, r, snapshot_id);
	HS_BIND_F(st, 2, r, sandbox_id);
	HS_BIND_F(st, 3, r, type);
	HS_BIND_I(st, 4, r->created_at_ms);
	HS_BIND_F(st, 5, r, mem_file_path);
	HS_BIND_F(st, 6, r, snapshot_path);
	HS_BIND_I(st, 7, r->size_bytes);
	HS_BIND_F(st, 8, r, base_snapshot_id);
	rc = hs_store__step_done(s, st, "insert snapshot", err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

/* One snapshot row by key (snapshot_id or sandbox_id, per the statement). */
static int snapshot_one(hs_store *s, hs_stmt_id id, const char *sql, const char *key,
			const char *what, hs_store_snapshot_row *out, hs_error *err)
{
	int rc;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(key, HS_STORE_ID_MAX, what, err)) != HS_OK)
		return rc;
	char not_found[HS_STORE_ID_MAX + 64];
	snprintf(not_found, sizeof(not_found), "store: no snapshot for %s %s", what, key);
	return hs_store__get_one(s, id, sql, key, HS_STORE_ID_MAX, what, sizeof(*out),
				 read_snapshot_row, not_found, out, err);
}

int hs_store_snapshot_get(hs_store *s, const char *snapshot_id, hs_store_snapshot_row *out,
			  hs_error *err)
{
	return snapshot_one(s, HS_STMT_SNAPSHOT_GET,
			    "SELECT " SNAPSHOT_COLS " FROM snapshots WHERE snapshot_id = ?1",
			    snapshot_id, "snapshot_id", out, err);
}

int hs_store_snapshot_latest_for_sandbox(hs_store *s, const char *sandbox_id,
					 hs_store_snapshot_row *out, hs_error *err)
{
	return snapshot_one(s, HS_STMT_SNAPSHOT_LATEST,
			    "SELECT " SNAPSHOT_COLS " FROM snapshots WHERE sandbox_id = ?1 "
			    "ORDER BY created_at_ms DESC, rowid DESC LIMIT 1",
			    sandbox_id, "sandbox_id", out, err);
}

int hs_store_snapshot_list_by_sandbox(hs_store *s, const char *sandbox_id,
				      hs_store_snapshot_row **out, size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(sandbox_id, HS_STORE_ID_MAX, "sandbox_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_SNAPSHOT_LIST,
		"SELECT " SNAPSHOT_COLS " FROM snapshots WHERE sandbox_id = ?1 "
		"ORDER BY created_at_ms, rowid");
	HS_BIND_T(st, 1, sandbox_id, HS_STORE_ID_MAX, "sandbox_id");
	rc = hs_store__collect(s, st, sizeof(hs_store_snapshot_row), read_snapshot_row, "list snapshots", (void **)out, n_out,
			       err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}
