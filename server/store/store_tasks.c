/* Tasks tracked by the health service and their append-only event log
 * (the source of WatchTasks). Heartbeats update only their own columns:
 * they are the hot path. */
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
	if (rc != HS_OK) {
		free(rows);
		return rc;
	}
	if (n_rows > 1)
		qsort(rows, n_rows, sizeof(*rows), by_task_id);
	*out = rows;
	*n_out = n_rows;
	return HS_OK;
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

/* ---- heartbeats: group commit --------------------------------------------
 *
 * An acknowledged heartbeat must be durable, and with synchronous=FULL every
 * COMMIT is an fsync: one commit per heartbeat caps the rate at the disk's
 * fsync rate. So concurrent heartbeats share commits. Every beat is appended
 * to a FIFO under hb_mu; one committer thread per store (started with the
 * first beat) takes the whole queue (up to HB_BATCH_MAX beats) as a batch:
 *
 *   detach the batch, unlock hb_mu; sort it by task id (stable: one
 *   row-lock order for every node's batches on a shared PostgreSQL, so
 *   they cannot deadlock); link each beat to the last beat of its task;
 *   under the driver's lock: BEGIN (IMMEDIATE), the UPDATEs (SQLite: one
 *   per task, the last beat's; PostgreSQL: one statement for the batch),
 *   COMMIT; lock hb_mu, count; unlock; then tell every beat of the batch
 *   its result (its done callback), in task-id order.
 *
 *   beat:  queued --(detached)--> in batch --(COMMIT returned)--> done (callback)
 *   committer: idle --(arrival: one signal)--> committing --(queue empty)--> idle
 *
 * Batching comes only from concurrency (no timer): a lone beat is committed
 * at once, and beats that arrive while a batch commits go together in the
 * next one. A beat's callback runs only after the COMMIT holding its UPDATE
 * returned, so "nothing acknowledged is lost" holds; an RPC answers from
 * that callback (hs_store_task_heartbeat_async), so no thread waits per
 * heartbeat. hs_store_task_heartbeat (blocking) is the same with a callback
 * that wakes its caller. The committer is signalled once per idle->busy
 * change, never broadcast.
 *
 * Results are per beat: HS_NOT_FOUND if its task row does not exist, the
 * translated error if a constraint (e.g. a trigger) refused its UPDATE
 * (SQLite undid only that statement; PostgreSQL aborts the transaction, so
 * the batch runs again with a savepoint per beat); the rest of the batch
 * goes on. If BEGIN, COMMIT or an UPDATE fails any other way the
 * transaction is rolled back and every beat of the batch gets that error. Beats of one task in a
 * batch coalesce into the last one's UPDATE (each still gets a result: the
 * last one's; if the last was refused, the earlier ones run one by one).
 *
 * Locks: hb_mu guards the queue, the flags and the stats; the driver's lock
 * guards the connection. They are never held together, and callbacks run
 * with neither held (they may take their own locks, never the store's). */

#define HB_BATCH_MAX 1024
#define HB_ASYNC_MAX 4096 /* async beats queued or committing; more: HS_LIMIT */


/* Bind and run one beat's UPDATE inside the batch's transaction; its result
 * goes to b->rc/b->err. Returns false if the transaction cannot go on (the
 * error is then in *batch_err and *batch_rc). Caller holds mu. */
static bool apply_beat(hs_store *s, hs_store__beat *b, bool savepoint, int *batch_rc,
		       hs_error *batch_err)
{
	hs_error *err = &b->err;
	hs_stmt *st = NULL;
	int rc;
	bool go_on = true;
	if (savepoint && (rc = s->drv->exec(s, "SAVEPOINT beat", "heartbeat", err)) != HS_OK)
		goto fail;
	HS_STMT(st, HS_STMT_TASK_HEARTBEAT,
		"UPDATE tasks SET current_step = ?2, total_steps = ?3, cpu_usage = ?4, "
		"memory_usage_mb = ?5, disk_usage_mb = ?6, details = ?7, "
		"last_heartbeat_ms = ?8, updated_at_ms = ?8 WHERE task_id = ?1");
	HS_BIND_T(st, 1, b->task_id, HS_STORE_ID_MAX, "task_id");
	HS_BIND_I(st, 2, b->step);
	HS_BIND_I(st, 3, b->total);
	HS_BIND_D(st, 4, b->cpu);
	HS_BIND_D(st, 5, b->mem_mb);
	HS_BIND_D(st, 6, b->disk_mb);
	HS_BIND_T(st, 7, b->details, HS_STORE_TEXT_MAX, "details");
	HS_BIND_I(st, 8, b->now_ms);
	rc = hs_store__step(st, "heartbeat", err);
	if (rc == HS_OK) {
		if (hs_store__changes(st) == 0)
			rc = hs_error_set(err, HS_NOT_FOUND, "store: task %s not found", b->task_id);
		if (savepoint) {
			hs_error rel = { 0 };
			int r2 = s->drv->exec(s, "RELEASE SAVEPOINT beat", "heartbeat", &rel);
			if (r2 != HS_OK) {
				rc = r2;
				*err = rel;
				goto fail;
			}
		}
		goto done;
	}
	if (rc == HS_STORE_ROW) {
		rc = hs_error_set(err, HS_INTERNAL, "store: heartbeat: unexpected row");
		goto fail;
	}
	if (rc == HS_UNAVAILABLE)
		goto fail;
	if (savepoint) {
		/* only this beat undone, unless the rollback itself fails */
		hs_error rb = { 0 };
		if (s->drv->exec(s, "ROLLBACK TO SAVEPOINT beat", "heartbeat", &rb) != HS_OK) {
			rc = rb.code != 0 ? (int)rb.code : HS_INTERNAL;
			*err = rb;
			goto fail;
		}
		goto done;
	}
	if (s->drv->failed_alone(st))
		goto done; /* SQLite: a constraint undid only this statement */
fail:
	*batch_rc = rc;
	*batch_err = *err;
	go_on = false;
done:
	hs_store__release(st);
	b->rc = rc;
	return go_on;
}

/* Stable merge sort of a batch by task_id: every batch locks its rows in
 * one global order, so two nodes' batches on one PostgreSQL cannot
 * deadlock; beats of one task keep their arrival order (the last wins). */
static hs_store__beat *sort_beats(hs_store__beat *list, size_t n)
{
	if (n < 2)
		return list;
	hs_store__beat *a = list, *b, *mid = list, *out = NULL, **tail = &out;
	for (size_t i = 1; i < n / 2; i++)
		mid = mid->next;
	b = mid->next;
	mid->next = NULL;
	a = sort_beats(a, n / 2);
	b = sort_beats(b, n - n / 2);
	while (a != NULL && b != NULL) {
		hs_store__beat **from = strcmp(b->task_id, a->task_id) < 0 ? &b : &a;
		*tail = *from;
		*from = (*from)->next;
		tail = &(*tail)->next;
	}
	*tail = a != NULL ? a : b;
	return out;
}

/* Points every beat at the last beat of its task in the batch (NULL when
 * it is the last). The batch is sorted by task id (stable), so a task's
 * beats are adjacent in arrival order: one pass over each run, O(n). */
static void link_latest(hs_store__beat *batch)
{
	hs_store__beat *run = batch;
	for (hs_store__beat *b = batch; b != NULL; b = b->next) {
		if (b->next != NULL && strcmp(b->next->task_id, b->task_id) == 0)
			continue;
		for (; run != b; run = run->next) /* b ends the run: the latest */
			run->latest = b;
		b->latest = NULL;
		run = b->next;
	}
}

/* Run one batch (sorted, linked) as one transaction and fill every beat's
 * result. Takes the driver's lock. Beats of one task coalesce: only the
 * last one's UPDATE runs, and the earlier ones get its result; if a
 * constraint refused it, they run one by one, so each still gets its own.
 * savepoint: each beat in its own savepoint, so that a refused UPDATE
 * undoes only itself where any error aborts the whole transaction
 * (PostgreSQL). Returns true if the batch failed because of one beat's
 * error on such a backend: the caller runs it again with savepoints (rare:
 * only a trigger or constraint refuses a heartbeat). */
static bool run_batch(hs_store *s, hs_store__beat *batch, bool savepoint)
{
	hs_error batch_err = { 0 }, *err = &batch_err;
	hs_store__beat *b;
	bool retry = false;
	int rc;
	hs_store__lock(s);
	if ((rc = hs_store__begin(s, err)) != HS_OK)
		goto done;
	if (s->drv->postgres && !savepoint) {
		/* One statement for the whole batch (store_heartbeat_pg.c). */
		if ((rc = hs_store__pg_heartbeat_batch(s, batch, err)) != HS_OK) {
			retry = rc != HS_UNAVAILABLE;
			goto done;
		}
		rc = hs_store__commit(s, err);
		goto done;
	}
	for (b = batch; b != NULL; b = b->next) {
		if (b->latest == NULL && !apply_beat(s, b, savepoint, &rc, err)) {
			retry = s->drv->errors_abort_txn && !savepoint && rc != HS_UNAVAILABLE;
			goto done;
		}
	}
	for (b = batch; b != NULL; b = b->next) {
		if (b->latest == NULL)
			continue;
		if (b->latest->rc == HS_OK || b->latest->rc == HS_NOT_FOUND) {
			b->rc = b->latest->rc;
			b->err = b->latest->err;
		} else if (!apply_beat(s, b, savepoint, &rc, err)) { /* the last one was refused */
			retry = s->drv->errors_abort_txn && !savepoint && rc != HS_UNAVAILABLE;
			goto done;
		}
	}
	rc = hs_store__commit(s, err);
done:
	if (rc != HS_OK) {
		hs_store__rollback(s);
		for (b = batch; b != NULL; b = b->next) {
			b->rc = rc;
			b->err = batch_err;
		}
	}
	hs_store__unlock(s);
	return retry;
}

static void *committer_main(void *arg)
{
	hs_store *s = arg;
	pthread_mutex_lock(&s->hb_mu);
	for (;;) {
		while (s->hb_head == NULL && !s->hb_stopping)
			pthread_cond_wait(&s->hb_cv, &s->hb_mu);
		if (s->hb_head == NULL)
			break; /* stopping, and every beat is done */
		hs_store__beat *batch = s->hb_head, *last = batch, *b, *next;
		size_t n = 1, n_async = batch->heap;
		while (n < HB_BATCH_MAX && last->next != NULL) {
			last = last->next;
			n++;
			n_async += last->heap;
		}
		s->hb_head = last->next;
		if (s->hb_head == NULL)
			s->hb_tail = NULL;
		last->next = NULL;
		s->hb_queued -= n;
		s->hb_committing = true;
		pthread_mutex_unlock(&s->hb_mu);

		batch = sort_beats(batch, n);
		link_latest(batch);
		if (run_batch(s, batch, false))
			(void)run_batch(s, batch, true);
		hs_histogram_observe(&s->m_beats_per_commit, (double)n);

		pthread_mutex_lock(&s->hb_mu);
		s->hb_committing = false;
		s->hb_batches++;
		s->hb_beats += n;
		s->hb_async -= n_async;
		pthread_mutex_unlock(&s->hb_mu);
		for (b = batch; b != NULL; b = next) {
			next = b->next;
			bool heap = b->heap; /* a blocking caller's beat is gone after done() */
			b->done(b->arg, b->rc, b->rc == HS_OK ? NULL : &b->err);
			if (heap)
				free(b);
		}
		pthread_mutex_lock(&s->hb_mu);
	}
	pthread_mutex_unlock(&s->hb_mu);
	return NULL;
}

/* Queues b (its fields set). HS_LIMIT when async and the queue is full,
 * HS_CANCELLED when the store is closing, HS_INTERNAL when the committer
 * cannot start; on any error b was not queued. */
static int enqueue_beat(hs_store *s, hs_store__beat *b, hs_error *err)
{
	int rc = HS_OK;
	pthread_mutex_lock(&s->hb_mu);
	if (s->hb_stopping) {
		rc = hs_error_set(err, HS_CANCELLED, "store: closing");
	} else if (b->heap && s->hb_async >= HB_ASYNC_MAX) {
		rc = hs_error_set(err, HS_LIMIT, "store: %d heartbeats already waiting for a commit",
				  HB_ASYNC_MAX);
	} else if (!s->hb_thread_started) {
		if (pthread_create(&s->hb_thread, NULL, committer_main, s) != 0)
			rc = hs_error_set(err, HS_INTERNAL, "store: cannot start the heartbeat committer");
		else
			s->hb_thread_started = true;
	}
	if (rc == HS_OK) {
		bool was_idle = s->hb_head == NULL && !s->hb_committing;
		b->next = NULL;
		if (s->hb_tail != NULL)
			s->hb_tail->next = b;
		else
			s->hb_head = b;
		s->hb_tail = b;
		s->hb_queued++;
		s->hb_async += b->heap;
		if (was_idle) /* else the committer looks at the queue before it waits */
			pthread_cond_signal(&s->hb_cv);
	}
	pthread_mutex_unlock(&s->hb_mu);
	return rc;
}

static int check_beat_args(hs_store *s, const char *task_id, const char **details,
			   hs_error *err)
{
	int rc;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(task_id, HS_STORE_ID_MAX, "task_id", err)) != HS_OK)
		return rc;
	if (*details == NULL)
		*details = "";
	if (strnlen(*details, HS_STORE_TEXT_MAX) >= HS_STORE_TEXT_MAX)
		return hs_error_set(err, HS_INVALID, "store: details is longer than %d bytes",
				    HS_STORE_TEXT_MAX - 1);
	return HS_OK;
}

int hs_store_task_heartbeat_async(hs_store *s, const char *task_id, int64_t step, int64_t total,
				  double cpu, double mem_mb, double disk_mb, const char *details,
				  int64_t now_ms, hs_store_beat_done_fn done, void *arg,
				  hs_error *err)
{
	int rc;
	if ((rc = check_beat_args(s, task_id, &details, err)) != HS_OK)
		return rc;
	size_t id_len = strlen(task_id) + 1, d_len = strlen(details) + 1;
	hs_store__beat *b = malloc(sizeof(*b) + id_len + d_len);
	if (b == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	memset(b, 0, sizeof(*b));
	char *p = (char *)(b + 1);
	memcpy(p, task_id, id_len);
	memcpy(p + id_len, details, d_len);
	*b = (hs_store__beat){ .task_id = p, .details = p + id_len, .step = step, .total = total,
			       .now_ms = now_ms, .cpu = cpu, .mem_mb = mem_mb, .disk_mb = disk_mb,
			       .heap = true, .done = done, .arg = arg };
	if ((rc = enqueue_beat(s, b, err)) != HS_OK)
		free(b);
	return rc;
}

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int rc;
	hs_error err;
} waiter;

static void wake_waiter(void *arg, int rc, const hs_error *err)
{
	waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->rc = rc;
	if (err != NULL)
		w->err = *err;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

int hs_store_task_heartbeat(hs_store *s, const char *task_id, int64_t step, int64_t total,
			    double cpu, double mem_mb, double disk_mb, const char *details,
			    int64_t now_ms, hs_error *err)
{
	int rc;
	if ((rc = check_beat_args(s, task_id, &details, err)) != HS_OK)
		return rc;
	waiter w = { .done = false };
	if (pthread_mutex_init(&w.mu, NULL) != 0)
		return hs_error_set(err, HS_INTERNAL, "store: mutex init failed");
	if (pthread_cond_init(&w.cv, NULL) != 0) {
		pthread_mutex_destroy(&w.mu);
		return hs_error_set(err, HS_INTERNAL, "store: condition variable init failed");
	}
	hs_store__beat me = { .task_id = task_id, .details = details, .step = step, .total = total,
			      .now_ms = now_ms, .cpu = cpu, .mem_mb = mem_mb, .disk_mb = disk_mb,
			      .done = wake_waiter, .arg = &w };
	if ((rc = enqueue_beat(s, &me, err)) == HS_OK) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = w.rc;
		if (rc != HS_OK)
			rc = hs_error_set(err, (hs_code)rc, "%s", w.err.msg);
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return rc;
}

void hs_store__heartbeat_stop(hs_store *s)
{
	pthread_mutex_lock(&s->hb_mu);
	s->hb_stopping = true;
	pthread_cond_signal(&s->hb_cv);
	bool started = s->hb_thread_started;
	pthread_mutex_unlock(&s->hb_mu);
	if (started)
		pthread_join(s->hb_thread, NULL); /* it drains the queue first */
}

void hs_store__heartbeat_stats(hs_store *s, hs_store__hb_stats *out)
{
	pthread_mutex_lock(&s->hb_mu);
	out->queued = s->hb_queued;
	out->committing = s->hb_committing;
	out->batches = s->hb_batches;
	out->beats = s->hb_beats;
	pthread_mutex_unlock(&s->hb_mu);
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
