/* Heartbeats (store.h, hs_store_task_heartbeat*): the tasks table's hot
 * path, durable per beat and batched by group commit. Only a beat's own
 * columns are written; the rest of the task row is store_tasks.c's. */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>

/* Group commit.
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

/* Whether the batch is in task-id order already (one task beating, or
 * beats that arrived in order): then it needs no sort. O(n). */
static bool beats_sorted(const hs_store__beat *b)
{
	for (; b != NULL && b->next != NULL; b = b->next)
		if (strcmp(b->next->task_id, b->task_id) < 0)
			return false;
	return true;
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

		if (!beats_sorted(batch))
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
