/* Tasks tracked by the health service and their append-only event log
 * (the source of WatchTasks). Heartbeats, which update only their own
 * columns (the hot path), are store_heartbeat.c's. */
#include "store_internal.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define TASK_COLS                                                                           \
	"task_id, owner, state, total_steps, current_step, heartbeat_interval_ms, "          \
	"heartbeat_timeout_ms, sandbox_id, policy_max_attempts, policy_initial_backoff_ms, " \
	"policy_multiplier, policy_max_backoff_ms, last_heartbeat_ms, registered_at_ms, "    \
	"recovery_attempts, last_checkpoint_id, cancel_requested, cpu_usage, "               \
	"memory_usage_mb, disk_usage_mb, details, failure_reason, workspace, labels_json, "  \
	"updated_at_ms, recovery_generation, base_generation, acked_generation, restored, "   \
	"resume_checkpoint_id, resume_step, last_checkpoint_step, deadline_ms"

#define EVENT_COLS                                                                    \
	"event_id, task_id, type, step, checkpoint_id, message, attempt, state, occurred_at_ms, " \
	"recovery_generation"

static int bind_task(hs_store *s, hs_stmt *st, const hs_store_task_row *r, hs_error *err)
{
	int rc;
	HS_BIND_F(st, 1, r, task_id);
	HS_BIND_F(st, 2, r, owner);
	HS_BIND_I(st, 3, r->state);
	HS_BIND_I(st, 4, r->total_steps);
	HS_BIND_I(st, 5, r->current_step);
	HS_BIND_I(st, 6, r->heartbeat_interval_ms);
	HS_BIND_I(st, 7, r->heartbeat_timeout_ms);
	HS_BIND_F(st, 8, r, sandbox_id);
	HS_BIND_I(st, 9, r->policy_max_attempts);
	HS_BIND_I(st, 10, r->policy_initial_backoff_ms);
	HS_BIND_D(st, 11, r->policy_multiplier);
	HS_BIND_I(st, 12, r->policy_max_backoff_ms);
	HS_BIND_I(st, 13, r->last_heartbeat_ms);
	HS_BIND_I(st, 14, r->registered_at_ms);
	HS_BIND_I(st, 15, r->recovery_attempts);
	HS_BIND_F(st, 16, r, last_checkpoint_id);
	HS_BIND_I(st, 17, r->cancel_requested ? 1 : 0);
	HS_BIND_D(st, 18, r->cpu_usage);
	HS_BIND_D(st, 19, r->memory_usage_mb);
	HS_BIND_D(st, 20, r->disk_usage_mb);
	HS_BIND_F(st, 21, r, details);
	HS_BIND_F(st, 22, r, failure_reason);
	HS_BIND_F(st, 23, r, workspace);
	HS_BIND_F(st, 24, r, labels_json);
	HS_BIND_I(st, 25, r->updated_at_ms);
	HS_BIND_I(st, 26, r->recovery_generation);
	HS_BIND_I(st, 27, r->base_generation);
	HS_BIND_I(st, 28, r->acked_generation);
	HS_BIND_I(st, 29, r->restored ? 1 : 0);
	HS_BIND_F(st, 30, r, resume_checkpoint_id);
	HS_BIND_I(st, 31, r->resume_step);
	HS_BIND_I(st, 32, r->last_checkpoint_step);
	HS_BIND_I(st, 33, r->deadline_ms);
	rc = HS_OK;
done:
	return rc;
}

static int read_task(hs_stmt *st, hs_store_task_row *r, hs_error *err)
{
	int rc;
	memset(r, 0, sizeof(*r));
	HS_COL_T(st, 0, r->task_id, "task_id");
	HS_COL_T(st, 1, r->owner, "owner");
	r->state = hs_store__col_int(st, 2);
	r->total_steps = hs_store__col_int64(st, 3);
	r->current_step = hs_store__col_int64(st, 4);
	r->heartbeat_interval_ms = hs_store__col_int64(st, 5);
	r->heartbeat_timeout_ms = hs_store__col_int64(st, 6);
	HS_COL_T(st, 7, r->sandbox_id, "sandbox_id");
	r->policy_max_attempts = hs_store__col_int(st, 8);
	r->policy_initial_backoff_ms = hs_store__col_int64(st, 9);
	r->policy_multiplier = hs_store__col_double(st, 10);
	r->policy_max_backoff_ms = hs_store__col_int64(st, 11);
	r->last_heartbeat_ms = hs_store__col_int64(st, 12);
	r->registered_at_ms = hs_store__col_int64(st, 13);
	r->recovery_attempts = hs_store__col_int(st, 14);
	HS_COL_T(st, 15, r->last_checkpoint_id, "last_checkpoint_id");
	r->cancel_requested = hs_store__col_int(st, 16) != 0;
	r->cpu_usage = hs_store__col_double(st, 17);
	r->memory_usage_mb = hs_store__col_double(st, 18);
	r->disk_usage_mb = hs_store__col_double(st, 19);
	HS_COL_T(st, 20, r->details, "details");
	HS_COL_T(st, 21, r->failure_reason, "failure_reason");
	HS_COL_T(st, 22, r->workspace, "workspace");
	HS_COL_T(st, 23, r->labels_json, "labels_json");
	r->updated_at_ms = hs_store__col_int64(st, 24);
	r->recovery_generation = hs_store__col_int64(st, 25);
	r->base_generation = hs_store__col_int64(st, 26);
	r->acked_generation = hs_store__col_int64(st, 27);
	r->restored = hs_store__col_int(st, 28) != 0;
	HS_COL_T(st, 29, r->resume_checkpoint_id, "resume_checkpoint_id");
	r->resume_step = hs_store__col_int64(st, 30);
	r->last_checkpoint_step = hs_store__col_int64(st, 31);
	r->deadline_ms = hs_store__col_int64(st, 32);
	rc = HS_OK;
done:
	return rc;
}

static int read_task_row(hs_stmt *st, void *row, hs_error *err)
{
	return read_task(st, row, err);
}

/* INSERT or UPDATE one task row. Caller holds the lock. */
static int write_task_locked(hs_store *s, const hs_store_task_row *r, bool update, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (update)
		HS_STMT(st, HS_STMT_TASK_UPDATE,
			"UPDATE tasks SET owner = ?2, state = ?3, total_steps = ?4, "
			"current_step = ?5, heartbeat_interval_ms = ?6, heartbeat_timeout_ms = ?7, "
			"sandbox_id = ?8, policy_max_attempts = ?9, policy_initial_backoff_ms = ?10, "
			"policy_multiplier = ?11, policy_max_backoff_ms = ?12, "
			"last_heartbeat_ms = ?13, registered_at_ms = ?14, recovery_attempts = ?15, "
			"last_checkpoint_id = ?16, cancel_requested = ?17, cpu_usage = ?18, "
			"memory_usage_mb = ?19, disk_usage_mb = ?20, details = ?21, "
			"failure_reason = ?22, workspace = ?23, labels_json = ?24, "
			"updated_at_ms = ?25, recovery_generation = ?26, base_generation = ?27, "
			"acked_generation = ?28, restored = ?29, resume_checkpoint_id = ?30, "
			"resume_step = ?31, last_checkpoint_step = ?32, deadline_ms = ?33 "
			"WHERE task_id = ?1");
	else
		HS_STMT(st, HS_STMT_TASK_INSERT,
			"INSERT INTO tasks(" TASK_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
			"?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, "
			"?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)");
	if ((rc = bind_task(s, st, r, err)) != HS_OK)
		goto done;
	if ((rc = hs_store__step_done(s, st, update ? "update task" : "insert task", err)) != HS_OK)
		goto done;
	if (update && hs_store__changes(st) == 0)
		rc = hs_error_set(err, HS_NOT_FOUND, "store: task %s not found", r->task_id);
done:
	hs_store__release(st);
	return rc;
}

static int check_task_row(hs_store *s, const hs_store_task_row *r, hs_error *err)
{
	int rc;
	if (s == NULL || r == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(r->task_id, sizeof(r->task_id), "task_id", err)) != HS_OK ||
	    (rc = hs_store__check_key(r->owner, sizeof(r->owner), "owner", err)) != HS_OK)
		return rc;
	return HS_OK;
}

static int write_task(hs_store *s, const hs_store_task_row *r, bool update, hs_error *err)
{
	int rc;
	if ((rc = check_task_row(s, r, err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	rc = write_task_locked(s, r, update, err);
	hs_store__unlock(s);
	return rc;
}

int hs_store_task_insert(hs_store *s, const hs_store_task_row *r, hs_error *err)
{
	return write_task(s, r, false, err);
}

int hs_store_task_update(hs_store *s, const hs_store_task_row *r, hs_error *err)
{
	return write_task(s, r, true, err);
}

int hs_store_task_get(hs_store *s, const char *task_id, hs_store_task_row *out, hs_error *err)
{
	int rc;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(task_id, HS_STORE_ID_MAX, "task_id", err)) != HS_OK)
		return rc;
	char not_found[HS_STORE_ID_MAX + 64];
	snprintf(not_found, sizeof(not_found), "store: task %s not found", task_id);
	return hs_store__get_one(s, HS_STMT_TASK_GET,
				 "SELECT " TASK_COLS " FROM tasks WHERE task_id = ?1", task_id,
				 HS_STORE_ID_MAX, "task_id", sizeof(*out), read_task_row, not_found, out,
				 err);
}

static int by_task_id(const void *a, const void *b)
{
	return strcmp(((const hs_store_task_row *)a)->task_id,
		      ((const hs_store_task_row *)b)->task_id);
}

int hs_store_task_get_many(hs_store *s, const char *const *task_ids, size_t n,
			   hs_store_task_row **out, size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	char *json = NULL;
	hs_store_task_row *rows = NULL;
	size_t n_rows = 0;
	if (s == NULL || out == NULL || n_out == NULL || (n > 0 && task_ids == NULL))
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if (n == 0) {
		*out = NULL;
		*n_out = 0;
		return HS_OK;
	}
	if ((rc = hs_store__json_task_ids(task_ids, n, &json, err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT2(st, HS_STMT_TASK_GET_MANY,
		 "SELECT " TASK_COLS " FROM tasks WHERE task_id IN (SELECT value FROM json_each(?1))",
		 "SELECT " TASK_COLS " FROM tasks WHERE task_id = "
		 "ANY(ARRAY(SELECT json_array_elements_text($1::json)))");
	HS_BIND_T(st, 1, json, strlen(json) + 1, "task_ids");
	rc = hs_store__collect(s, st, sizeof(*rows), read_task_row, "read tasks", (void **)&rows,
			       &n_rows, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	free(json);
	return hs_store__sorted_out(rc, rows, n_rows, sizeof(*rows), by_task_id, (void **)out,
				    n_out);
}

/* Collect every row of a prepared, bound task query. Caller holds the lock. */
static int collect_tasks(hs_store *s, hs_stmt *st, hs_store_task_row **out, size_t *n_out,
			 hs_error *err)
{
	return hs_store__collect(s, st, sizeof(**out), read_task_row, "list tasks", (void **)out,
				 n_out, err);
}

int hs_store_task_list(hs_store *s, const hs_store_task_filter *f, hs_store_task_row **out,
		       size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || f == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_TASK_LIST,
		"SELECT " TASK_COLS " FROM tasks WHERE task_id > ?1 "
		"AND (CAST(?2 AS TEXT) IS NULL OR owner = ?2) AND (CAST(?3 AS INTEGER) < 0 OR state = ?3) "
		"ORDER BY task_id LIMIT ?4");
	HS_BIND_T(st, 1, f->after_id ? f->after_id : "", HS_STORE_ID_MAX, "after_id");
	HS_BIND_T(st, 2, f->owner, HS_STORE_ID_MAX, "owner");
	HS_BIND_I(st, 3, f->state < 0 ? -1 : f->state);
	HS_BIND_I(st, 4, hs_store__limit(f->limit));
	rc = collect_tasks(s, st, out, n_out, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_task_list_newest(hs_store *s, const hs_store_task_page *p, hs_store_task_row **out,
			      size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || p == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_TASK_NEWEST,
		"SELECT " TASK_COLS " FROM tasks "
		"WHERE (CAST(?1 AS INTEGER) = 0 OR registered_at_ms < ?2 "
		"OR (registered_at_ms = ?2 AND task_id > ?3)) "
		"AND (CAST(?4 AS TEXT) IS NULL OR owner = ?4) AND (CAST(?5 AS INTEGER) < 0 OR state = ?5) "
		"ORDER BY registered_at_ms DESC, task_id LIMIT ?6");
	HS_BIND_I(st, 1, p->has_cursor ? 1 : 0);
	HS_BIND_I(st, 2, p->after_reg_ms);
	HS_BIND_T(st, 3, p->after_id ? p->after_id : "", HS_STORE_ID_MAX, "after_id");
	HS_BIND_T(st, 4, p->owner, HS_STORE_ID_MAX, "owner");
	HS_BIND_I(st, 5, p->state < 0 ? -1 : p->state);
	HS_BIND_I(st, 6, hs_store__limit(p->limit));
	rc = collect_tasks(s, st, out, n_out, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_task_list_active(hs_store *s, const int *states, size_t n_states,
			      hs_store_task_cb fn, void *payload, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	hs_store_task_row *rows = NULL, *all = NULL;
	size_t n = 0, kept = 0;
	if (s == NULL || fn == NULL || (states == NULL && n_states > 0))
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	/* All tasks in key order, filtered here: the set of states is the
	 * caller's and small; a statement per state count is not worth it. */
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_TASK_ALL, "SELECT " TASK_COLS " FROM tasks ORDER BY task_id");
	rc = collect_tasks(s, st, &all, &n, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	if (rc != HS_OK)
		return rc;
	rows = all;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n_states; j++) {
			if (all[i].state == states[j]) {
				if (kept != i)
					rows[kept] = all[i];
				kept++;
				break;
			}
		}
	}
	for (size_t i = 0; i < kept && rc == 0; i++)
		rc = fn(&rows[i], payload);
	free(all);
	return rc;
}

/* ---- events -------------------------------------------------------------- */

/* Events are ordered by a database sequence (SQLite: AUTOINCREMENT;
 * PostgreSQL: the task_events_event_id_seq sequence). A reader that polls
 * "event_id > last seen" must never see a later id commit before an
 * earlier one, which concurrent PostgreSQL transactions (other nodes) could
 * do; so there every transaction that appends events first takes the
 * transaction-scoped advisory lock HS_STORE_PG_EVENTS_LOCK, and ids commit
 * in order. SQLite serialises writers anyway. Caller holds the lock and has
 * begun the transaction. */
static int append_event_locked(hs_store *s, const hs_store_event_row *e, int64_t *id_out,
			       hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if ((rc = hs_store__ordered_lock(s, HS_STORE_PG_EVENTS_LOCK, err)) != HS_OK)
		return rc;
	HS_STMT(st, HS_STMT_EVENT_APPEND,
		"INSERT INTO task_events(task_id, type, step, checkpoint_id, message, attempt, "
		"state, occurred_at_ms, recovery_generation) "
		"VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING event_id");
	HS_BIND_F(st, 1, e, task_id);
	HS_BIND_I(st, 2, e->type);
	HS_BIND_I(st, 3, e->step);
	HS_BIND_F(st, 4, e, checkpoint_id);
	HS_BIND_F(st, 5, e, message);
	HS_BIND_I(st, 6, e->attempt);
	HS_BIND_I(st, 7, e->state);
	HS_BIND_I(st, 8, e->occurred_at_ms);
	HS_BIND_I(st, 9, e->recovery_generation);
	if ((rc = hs_store__step_row(st, "append event", err)) != HS_OK)
		goto done;
	*id_out = hs_store__col_int64(st, 0);
done:
	hs_store__release(st);
	return rc;
}

int hs_store_event_append(hs_store *s, const hs_store_event_row *e, int64_t *out, hs_error *err)
{
	int rc;
	int64_t id = 0;
	if (s == NULL || e == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(e->task_id, sizeof(e->task_id), "task_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	if ((rc = hs_store__begin(s, err)) != HS_OK)
		goto done;
	if ((rc = append_event_locked(s, e, &id, err)) == HS_OK)
		rc = hs_store__commit(s, err);
	if (rc != HS_OK)
		hs_store__rollback(s);
done:
	hs_store__unlock(s);
	if (rc == HS_OK && out != NULL)
		*out = id;
	return rc;
}

/* A transition, fenced by (node_id, fence) when node_id is not NULL. */
static int transition(hs_store *s, const hs_store_task_row *row, bool insert,
		      const hs_store_event_row *ev, const char *node_id, int64_t fence,
		      int64_t now_ms, int64_t *event_id_out, hs_error *err)
{
	int rc;
	int64_t id = 0;
	if ((rc = check_task_row(s, row, err)) != HS_OK)
		return rc;
	if (ev != NULL &&
	    (rc = hs_store__check_key(ev->task_id, sizeof(ev->task_id), "task_id", err)) != HS_OK)
		return rc;
	if (node_id != NULL &&
	    (rc = hs_store__check_key(node_id, HS_STORE_ID_MAX, "node_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	if ((rc = hs_store__begin(s, err)) != HS_OK)
		goto done;
	if (node_id != NULL)
		rc = hs_store__lease_check_locked(s, row->task_id, node_id, fence, now_ms, err);
	if (rc == HS_OK)
		rc = write_task_locked(s, row, !insert, err);
	if (rc == HS_OK && ev != NULL)
		rc = append_event_locked(s, ev, &id, err);
	if (rc == HS_OK)
		rc = hs_store__commit(s, err);
	if (rc != HS_OK)
		hs_store__rollback(s);
done:
	hs_store__unlock(s);
	if (rc == HS_OK && event_id_out != NULL)
		*event_id_out = id;
	return rc;
}

int hs_store_task_transition(hs_store *s, const hs_store_task_row *row, bool insert,
			     const hs_store_event_row *ev, int64_t *event_id_out, hs_error *err)
{
	return transition(s, row, insert, ev, NULL, 0, 0, event_id_out, err);
}

int hs_store_task_transition_fenced(hs_store *s, const hs_store_task_row *row, bool insert,
				    const hs_store_event_row *ev, const char *node_id,
				    int64_t fence, int64_t now_ms, int64_t *event_id_out,
				    hs_error *err)
{
	if (node_id == NULL)
		return hs_error_set(err, HS_INVALID, "store: node_id is empty");
	return transition(s, row, insert, ev, node_id, fence, now_ms, event_id_out, err);
}

int hs_store_event_list_after(hs_store *s, int64_t after_event_id, const char *task_id,
			      size_t limit, hs_store_event_cb fn, void *payload, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	hs_store_event_row *rows = NULL;
	size_t n = 0, cap = 0;
	if (s == NULL || fn == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_EVENT_LIST,
		"SELECT " EVENT_COLS " FROM task_events WHERE event_id > ?1 "
		"AND (CAST(?2 AS TEXT) IS NULL OR task_id = ?2) ORDER BY event_id LIMIT ?3");
	HS_BIND_I(st, 1, after_event_id);
	HS_BIND_T(st, 2, task_id, HS_STORE_ID_MAX, "task_id");
	HS_BIND_I(st, 3, hs_store__limit(limit));
	while ((rc = hs_store__step(st, "list events", err)) == HS_STORE_ROW) {
		if ((rc = hs_store__grow((void **)&rows, &cap, n, sizeof(*rows), err)) != HS_OK)
			goto done;
		hs_store_event_row *e = &rows[n];
		memset(e, 0, sizeof(*e));
		e->event_id = hs_store__col_int64(st, 0);
		HS_COL_T(st, 1, e->task_id, "task_id");
		e->type = hs_store__col_int(st, 2);
		e->step = hs_store__col_int64(st, 3);
		HS_COL_T(st, 4, e->checkpoint_id, "checkpoint_id");
		HS_COL_T(st, 5, e->message, "message");
		e->attempt = hs_store__col_int(st, 6);
		e->state = hs_store__col_int(st, 7);
		e->occurred_at_ms = hs_store__col_int64(st, 8);
		e->recovery_generation = hs_store__col_int64(st, 9);
		n++;
	}
	/* rc: HS_OK at the end, else the step's error */
done:
	hs_store__release(st);
	hs_store__unlock(s);
	for (size_t i = 0; rc == HS_OK && i < n; i++) {
		rc = fn(&rows[i], payload);
		if (rc != 0)
			break;
	}
	free(rows);
	return rc;
}

int hs_store_event_last_id(hs_store *s, int64_t *out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	int64_t id = 0;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_EVENT_LAST, "SELECT COALESCE(MAX(event_id), 0) FROM task_events");
	if ((rc = hs_store__step(st, "last event", err)) == HS_STORE_ROW) {
		id = hs_store__col_int64(st, 0);
		rc = HS_OK;
	} else if (rc == HS_OK) {
		rc = hs_error_set(err, HS_INTERNAL, "store: last event: no row");
	}
done:
	hs_store__release(st);
	hs_store__unlock(s);
	if (rc == HS_OK)
		*out = id;
	return rc;
}
