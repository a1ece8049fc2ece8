/* Unit tests for the store's heartbeat group commit (server/store/tasks.c):
 * concurrent callers share one transaction, each gets its own result, a
 * failed COMMIT fails the whole batch and nobody hangs. Batches are formed
 * deterministically by holding SQLite's write lock from a second connection
 * while the leader waits in BEGIN, and watching the queue through the
 * store's internal stats. */
#include "test_store.h"

#include "store_internal.h"

#include <stdatomic.h>

static hs_store__hb_stats stats_of(hs_store *s)
{
	hs_store__hb_stats st;
	hs_store__heartbeat_stats(s, &st);
	return st;
}

/* Poll until the queue holds `queued` beats and a batch is (or is not)
 * committing; fails the test after 10 s. */
static void wait_queue(hs_store *s, size_t queued, bool committing)
{
	for (int i = 0; i < 10000; i++) {
		hs_store__hb_stats st = stats_of(s);
		if (st.queued == queued && st.committing == committing)
			return;
		usleep(1000);
	}
	fail_msg("heartbeat queue never reached %zu beats (committing %d)", queued, committing);
}

static void add_tasks(hs_store *s, const char *prefix, int n)
{
	hs_error err = { 0 };
	for (int i = 0; i < n; i++) {
		char id[32];
		snprintf(id, sizeof(id), "%s%d", prefix, i);
		hs_store_task_row *t = make_task(id, "usr_1", 1);
		if (hs_store_task_insert(s, t, &err) != HS_OK)
			fail_msg("insert %s: %s", id, err.msg);
		free(t);
	}
}

static hs_store_task_row *get_task(hs_store *s, const char *id)
{
	hs_error err = { 0 };
	hs_store_task_row *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	if (hs_store_task_get(s, id, r, &err) != HS_OK)
		fail_msg("get %s: %s", id, err.msg);
	return r;
}

/* ---- many threads, many tasks ------------------------------------------- */

#define HB_THREADS 8
#define HB_TASKS_PER_THREAD 8
#define HB_ITERS 150

typedef struct hb_worker {
	hs_store *store;
	int idx;
	int failures;
	hs_error err;
	int64_t last_step[HB_TASKS_PER_THREAD]; /* last acknowledged, -1 = none */
} hb_worker;

static void *hb_work(void *arg)
{
	hb_worker *w = arg;
	hs_store_task_row *row = calloc(1, sizeof(*row));
	if (row == NULL) {
		w->failures++;
		return NULL;
	}
	for (int k = 0; k < HB_TASKS_PER_THREAD; k++)
		w->last_step[k] = -1;
	for (int i = 0; i < HB_ITERS; i++) {
		int k = i % HB_TASKS_PER_THREAD;
		char id[32], details[64];
		snprintf(id, sizeof(id), "hb_%d_%d", w->idx, k);
		snprintf(details, sizeof(details), "thread %d beat %d", w->idx, i);
		hs_error err = { 0 };
		if (hs_store_task_heartbeat(w->store, id, i, 1000 + w->idx, 0.25 * k, i, w->idx,
					    details, 5000 + i, &err) != HS_OK) {
			w->err = err;
			w->failures++;
			continue;
		}
		w->last_step[k] = i;
		if (i % 20 == 0) {
			/* Other store calls interleave with the batches, and an
			 * acknowledged beat is visible to its caller at once. */
			hs_store_event_row e = { 0 };
			snprintf(e.task_id, sizeof(e.task_id), "%s", id);
			e.step = i;
			if (hs_store_event_append(w->store, &e, NULL, &w->err) != HS_OK ||
			    hs_store_task_get(w->store, id, row, &w->err) != HS_OK ||
			    row->current_step != i)
				w->failures++;
		}
	}
	free(row);
	return NULL;
}

void test_store__heartbeat_group_commit_many_threads(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	for (int t = 0; t < HB_THREADS; t++) {
		char prefix[16];
		snprintf(prefix, sizeof(prefix), "hb_%d_", t);
		add_tasks(s, prefix, HB_TASKS_PER_THREAD);
	}
	hs_store__hb_stats before = stats_of(s);
	pthread_t th[HB_THREADS];
	hb_worker *w = calloc(HB_THREADS, sizeof(*w));
	assert_non_null(w);
	for (int t = 0; t < HB_THREADS; t++) {
		w[t].store = s;
		w[t].idx = t;
		assert_int_equal(pthread_create(&th[t], NULL, hb_work, &w[t]), 0);
	}
	for (int t = 0; t < HB_THREADS; t++)
		assert_int_equal(pthread_join(th[t], NULL), 0);
	for (int t = 0; t < HB_THREADS; t++) {
		if (w[t].failures != 0)
			fail_msg("thread %d: %d failures, last: %s", t, w[t].failures, w[t].err.msg);
	}
	hs_store__hb_stats after = stats_of(s);
	assert_int_equal(after.beats - before.beats, HB_THREADS * HB_ITERS);
	assert_true(after.batches - before.batches <= after.beats - before.beats);
	print_message("%d heartbeats in %llu commits\n", HB_THREADS * HB_ITERS,
		      (unsigned long long)(after.batches - before.batches));
	/* The rows hold each task's last acknowledged beat, and it is on disk:
	 * a second connection (another process's view) reads the same. */
	open_store(f);
	s = f->store;
	for (int t = 0; t < HB_THREADS; t++) {
		for (int k = 0; k < HB_TASKS_PER_THREAD; k++) {
			char id[32], details[64];
			snprintf(id, sizeof(id), "hb_%d_%d", t, k);
			int64_t i = w[t].last_step[k];
			assert_true(i >= 0);
			snprintf(details, sizeof(details), "thread %d beat %d", t, (int)i);
			hs_store_task_row *r = get_task(s, id);
			assert_int_equal(r->current_step, i);
			assert_int_equal(r->total_steps, 1000 + t);
			assert_true(r->cpu_usage == 0.25 * k);
			assert_true(r->memory_usage_mb == (double)i);
			assert_true(r->disk_usage_mb == (double)t);
			assert_string_equal(r->details, details);
			assert_int_equal(r->last_heartbeat_ms, 5000 + i);
			assert_int_equal(r->updated_at_ms, 5000 + i);
			assert_int_equal(r->heartbeat_timeout_ms, 5000); /* other columns kept */
			assert_string_equal(r->labels_json, "{\"k\":\"v\"}");
			free(r);
		}
	}
	free(w);
}

/* ---- deterministic batches ---------------------------------------------- */

typedef struct beat_call {
	pthread_t th;
	hs_store *store;
	const char *task_id;
	int64_t step;
	const char *details;
	int rc;
	hs_error err;
} beat_call;

static void *beat_run(void *arg)
{
	beat_call *c = arg;
	c->rc = hs_store_task_heartbeat(c->store, c->task_id, c->step, 50, 1.5, 2.5, 3.5, c->details,
					7000 + c->step, &c->err);
	return NULL;
}

/* Hold SQLite's write lock from another connection so the first caller
 * (the leader) waits in BEGIN while the others queue behind it; start the
 * calls one at a time so their queue order is known; then release the lock.
 * Returns the stats delta: batches and beats run. */
static hs_store__hb_stats run_batched(fixture *f, beat_call *calls, size_t n)
{
	hs_store *s = f->store;
	hs_store__hb_stats before = stats_of(s), after;
	sqlite3 *db = NULL;
	PGconn *pc = NULL;
	if (f->pg) {
		/* PostgreSQL: the leader's UPDATE waits for the table lock. */
		pc = pg_connect(f);
		PQclear(PQexec(pc, "BEGIN; LOCK TABLE tasks IN EXCLUSIVE MODE"));
	} else {
		assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	}
	for (size_t i = 0; i < n; i++) {
		calls[i].store = s;
		assert_int_equal(pthread_create(&calls[i].th, NULL, beat_run, &calls[i]), 0);
		/* The leader took a batch of one and waits for the lock; the
		 * others queue. */
		wait_queue(s, i, true);
	}
	if (f->pg) {
		PQclear(PQexec(pc, "ROLLBACK"));
		PQfinish(pc);
	} else {
		assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
	}
	for (size_t i = 0; i < n; i++)
		assert_int_equal(pthread_join(calls[i].th, NULL), 0);
	after = stats_of(s);
	assert_int_equal(after.queued, 0);
	assert_false(after.committing);
	after.batches -= before.batches;
	after.beats -= before.beats;
	return after;
}

void test_store__heartbeat_batch_gives_each_caller_its_result(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	add_tasks(s, "gc_", 4);
	/* A constraint that refuses one beat's UPDATE: only that statement is
	 * undone, the batch goes on. */
	if (f->pg)
		pg_exec(f, "CREATE FUNCTION gc_reject() RETURNS trigger LANGUAGE plpgsql AS $$ "
			   "BEGIN IF NEW.details = 'reject' THEN "
			   "RAISE EXCEPTION 'rejected' USING ERRCODE = '23514'; END IF; "
			   "RETURN NEW; END $$;"
			   "CREATE TRIGGER gc_reject BEFORE UPDATE OF details ON tasks "
			   "FOR EACH ROW EXECUTE FUNCTION gc_reject()");
	else
		sql_exec(f->db_path, "CREATE TRIGGER gc_reject BEFORE UPDATE OF details ON tasks "
				     "WHEN NEW.details = 'reject' BEGIN SELECT RAISE(ABORT, 'rejected'); END");
	beat_call calls[] = {
		{ .task_id = "gc_0", .step = 100, .details = "leader" },
		{ .task_id = "gc_1", .step = 1, .details = "first" },
		{ .task_id = "gc_2", .step = 2, .details = "two" },
		{ .task_id = "gc_missing", .step = 3, .details = "nobody" },
		{ .task_id = "gc_3", .step = 4, .details = "reject" },
		{ .task_id = "gc_1", .step = 11, .details = "second" }, /* same task: last wins */
		/* same task, the last one refused: the earlier one still counts */
		{ .task_id = "gc_2", .step = 5, .details = "reject" },
	};
	size_t n = sizeof(calls) / sizeof(calls[0]);
	hs_store__hb_stats d = run_batched(f, calls, n);
	assert_int_equal(d.batches, 2); /* the leader alone, then the other five together */
	assert_int_equal(d.beats, n);
	for (size_t i = 0; i < n; i++) {
		int want = HS_OK;
		if (strcmp(calls[i].task_id, "gc_missing") == 0)
			want = HS_NOT_FOUND;
		else if (strcmp(calls[i].details, "reject") == 0)
			want = HS_INVALID;
		if (calls[i].rc != want)
			fail_msg("beat %zu (%s): rc %d, want %d (%s)", i, calls[i].task_id, calls[i].rc,
				 want, calls[i].err.msg);
	}
	assert_int_equal(calls[3].err.code, HS_NOT_FOUND);
	assert_non_null(strstr(calls[3].err.msg, "gc_missing"));
	assert_non_null(strstr(calls[4].err.msg, "rejected"));
	hs_store_task_row *r = get_task(s, "gc_0");
	assert_int_equal(r->current_step, 100);
	assert_string_equal(r->details, "leader");
	free(r);
	r = get_task(s, "gc_1");
	assert_int_equal(r->current_step, 11);
	assert_string_equal(r->details, "second");
	assert_int_equal(r->last_heartbeat_ms, 7011);
	free(r);
	r = get_task(s, "gc_2");
	assert_int_equal(r->current_step, 2);
	assert_true(r->cpu_usage == 1.5 && r->memory_usage_mb == 2.5 && r->disk_usage_mb == 3.5);
	free(r);
	r = get_task(s, "gc_3");
	assert_int_equal(r->current_step, 0); /* refused: unchanged */
	assert_string_equal(r->details, "");
	free(r);
}

void test_store__heartbeat_commit_failure_fails_the_batch(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	add_tasks(s, "gc_", 4);
	/* A deferred foreign key that one beat's UPDATE violates: the
	 * statement succeeds and the COMMIT fails, failing the whole batch. */
	if (f->pg)
		pg_exec(f, "CREATE TABLE gc_parent(id INTEGER PRIMARY KEY);"
			   "CREATE TABLE gc_fault(p INTEGER REFERENCES gc_parent(id) "
			   "DEFERRABLE INITIALLY DEFERRED);"
			   "CREATE FUNCTION gc_poison() RETURNS trigger LANGUAGE plpgsql AS $$ "
			   "BEGIN IF NEW.details = 'poison' THEN INSERT INTO gc_fault VALUES(1); "
			   "END IF; RETURN NEW; END $$;"
			   "CREATE TRIGGER gc_poison AFTER UPDATE OF details ON tasks "
			   "FOR EACH ROW EXECUTE FUNCTION gc_poison()");
	else
		sql_exec(f->db_path,
			 "CREATE TABLE gc_parent(id INTEGER PRIMARY KEY);"
			 "CREATE TABLE gc_fault(p INTEGER REFERENCES gc_parent(id) "
			 "DEFERRABLE INITIALLY DEFERRED);"
			 "CREATE TRIGGER gc_poison AFTER UPDATE OF details ON tasks "
			 "WHEN NEW.details = 'poison' BEGIN INSERT INTO gc_fault VALUES(1); END");
	beat_call calls[] = {
		{ .task_id = "gc_0", .step = 100, .details = "leader" },
		{ .task_id = "gc_1", .step = 1, .details = "fine" },
		{ .task_id = "gc_2", .step = 2, .details = "poison" },
		{ .task_id = "gc_missing", .step = 3, .details = "nobody" },
		{ .task_id = "gc_3", .step = 4, .details = "fine too" },
	};
	size_t n = sizeof(calls) / sizeof(calls[0]);
	hs_store__hb_stats d = run_batched(f, calls, n);
	assert_int_equal(d.batches, 2);
	assert_int_equal(calls[0].rc, HS_OK);
	for (size_t i = 1; i < n; i++) {
		/* Everyone in the failed batch gets the COMMIT's error. */
		if (calls[i].rc == HS_OK || calls[i].err.code != calls[i].rc ||
		    strstr(calls[i].err.msg, "commit") == NULL)
			fail_msg("beat %zu (%s): rc %d: %s", i, calls[i].task_id, calls[i].rc,
				 calls[i].err.msg);
	}
	/* Nothing of the failed batch was kept; the leader's batch was. */
	hs_store_task_row *r = get_task(s, "gc_1");
	assert_int_equal(r->current_step, 0);
	free(r);
	r = get_task(s, "gc_3");
	assert_int_equal(r->current_step, 0);
	free(r);
	r = get_task(s, "gc_0");
	assert_int_equal(r->current_step, 100);
	free(r);
	/* The store goes on: the transaction was rolled back. */
	assert_int_equal(hs_store_task_heartbeat(s, "gc_1", 9, 9, 0, 0, 0, "after", 9, &err), HS_OK);
	assert_int_equal(hs_store_check_writable(s, &err), HS_OK);
	r = get_task(s, "gc_1");
	assert_int_equal(r->current_step, 9);
	free(r);
	/* An UPDATE that fails other than by a constraint (its table is gone)
	 * aborts the batch: the caller gets the error, nothing hangs. */
	if (f->pg)
		pg_exec(f, "DROP TRIGGER gc_poison ON tasks; ALTER TABLE tasks RENAME TO tasks_gone");
	else
		sql_exec(f->db_path, "DROP TRIGGER gc_poison; ALTER TABLE tasks RENAME TO tasks_gone");
	assert_int_equal(hs_store_task_heartbeat(s, "gc_1", 10, 10, 0, 0, 0, "gone", 10, &err),
			 HS_INTERNAL);
	if (f->pg)
		pg_exec(f, "ALTER TABLE tasks_gone RENAME TO tasks");
	else
		sql_exec(f->db_path, "ALTER TABLE tasks_gone RENAME TO tasks");
	assert_int_equal(hs_store_task_heartbeat(s, "gc_1", 10, 10, 0, 0, 0, "back", 10, &err), HS_OK);
}

/* ---- asynchronous heartbeats ------------------------------------------- */

typedef struct async_count {
	_Atomic int done, ok, not_found;
} async_count;

static void async_done(void *arg, int rc, const hs_error *err)
{
	async_count *c = arg;
	if (rc == HS_OK && err == NULL)
		atomic_fetch_add(&c->ok, 1);
	else if (rc == HS_NOT_FOUND && err != NULL && strstr(err->msg, "as_missing") != NULL)
		atomic_fetch_add(&c->not_found, 1);
	atomic_fetch_add(&c->done, 1);
}

/* The callback runs only once the COMMIT returned (never while SQLite's
 * write lock, or PostgreSQL's table lock, is held elsewhere); the queue of async beats is bounded; a
 * beat is copied (the caller's strings may go at once). */
void test_store__heartbeat_async_after_commit_and_bounded(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	add_tasks(s, "as_", 2);
	static async_count c;
	atomic_store(&c.done, 0);
	atomic_store(&c.ok, 0);
	atomic_store(&c.not_found, 0);
	sqlite3 *db = NULL;
	PGconn *pc = NULL;
	if (f->pg) {
		/* PostgreSQL: the committer's UPDATE waits for the table lock. */
		pc = pg_connect(f);
		PQclear(PQexec(pc, "BEGIN; LOCK TABLE tasks IN EXCLUSIVE MODE"));
	} else {
		assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	}
	char id[32], details[32];
	snprintf(id, sizeof(id), "as_0");
	snprintf(details, sizeof(details), "first");
	assert_int_equal(hs_store_task_heartbeat_async(s, id, 1, 10, 0, 0, 0, details, 1001,
						       async_done, &c, &err), HS_OK);
	memset(id, 0, sizeof(id));
	memset(details, 0, sizeof(details));
	wait_queue(s, 0, true); /* the committer waits for the lock */
	int accepted = 1;
	for (int i = 0; i < 5000; i++) {
		const char *tid = i == 7 ? "as_missing" : i % 2 ? "as_1" : "as_0";
		int rc = hs_store_task_heartbeat_async(s, tid, 100 + i, 10, 0, 0, 0, "later",
						       2000 + i, async_done, &c, &err);
		if (rc == HS_LIMIT)
			break;
		assert_int_equal(rc, HS_OK);
		accepted++;
	}
	assert_int_equal(accepted, 4096);
	usleep(50 * 1000);
	assert_int_equal(atomic_load(&c.done), 0); /* nothing acknowledged before durable */
	if (f->pg) {
		PQclear(PQexec(pc, "ROLLBACK"));
		PQfinish(pc);
	} else {
		assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
	}
	for (int i = 0; i < 10000 && atomic_load(&c.done) < accepted; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&c.done), accepted);
	assert_int_equal(atomic_load(&c.not_found), 1);
	assert_int_equal(atomic_load(&c.ok), accepted - 1);
	hs_store_task_row *r = get_task(s, "as_0");
	assert_int_equal(r->current_step, 100 + 4094);
	assert_string_equal(r->details, "later");
	free(r);
	/* room again */
	assert_int_equal(hs_store_task_heartbeat_async(s, "as_1", 1, 1, 0, 0, 0, NULL, 1,
						       async_done, &c, &err), HS_OK);
	for (int i = 0; i < 10000 && atomic_load(&c.done) < accepted + 1; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&c.done), accepted + 1);
}

/* ---- batch order ------------------------------------------------------- */

typedef struct order_log {
	pthread_mutex_t mu;
	int n;
	char ids[8][16];
	int rc[8];
} order_log;

typedef struct order_beat {
	order_log *log;
	const char *id;
} order_beat;

static void order_done(void *arg, int rc, const hs_error *err)
{
	(void)err;
	order_beat *b = arg;
	pthread_mutex_lock(&b->log->mu);
	snprintf(b->log->ids[b->log->n], sizeof(b->log->ids[0]), "%s", b->id);
	b->log->rc[b->log->n] = rc;
	b->log->n++;
	pthread_mutex_unlock(&b->log->mu);
}

/* A batch runs in task-id order, whatever the arrival order (one row-lock
 * order for every node's batches on a shared PostgreSQL: no deadlock), and
 * beats of one task still coalesce into the last one (its values win). The
 * callbacks run in the batch's order, which is what this observes. */
void test_store__heartbeat_batch_runs_in_task_id_order(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	add_tasks(s, "ord_", 4);
	static order_log log;
	memset(&log, 0, sizeof(log));
	assert_int_equal(pthread_mutex_init(&log.mu, NULL), 0);
	sqlite3 *db = NULL;
	PGconn *pc = NULL;
	if (f->pg) {
		pc = pg_connect(f);
		PQclear(PQexec(pc, "BEGIN; LOCK TABLE tasks IN EXCLUSIVE MODE"));
	} else {
		assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	}
	/* a first beat takes the committer (it waits for the lock); the rest
	 * queue, in reverse order, as one batch */
	static order_beat first = { &log, "ord_0" };
	assert_int_equal(hs_store_task_heartbeat_async(s, "ord_0", 1, 10, 0, 0, 0, "x", 1,
						       order_done, &first, &err), HS_OK);
	wait_queue(s, 0, true);
	static order_beat beats[] = { { &log, "ord_3" }, { &log, "ord_2" }, { &log, "ord_1" },
				      { &log, "ord_3" }, { &log, "ord_0" } };
	for (int i = 0; i < 5; i++)
		assert_int_equal(hs_store_task_heartbeat_async(s, beats[i].id, 10 + i, 10, 0, 0, 0,
							       "y", 100 + i, order_done, &beats[i],
							       &err), HS_OK);
	wait_queue(s, 5, true);
	if (f->pg) {
		PQclear(PQexec(pc, "ROLLBACK"));
		PQfinish(pc);
	} else {
		assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
	}
	for (int i = 0; i < 10000; i++) {
		pthread_mutex_lock(&log.mu);
		int n = log.n;
		pthread_mutex_unlock(&log.mu);
		if (n == 6)
			break;
		usleep(1000);
	}
	pthread_mutex_lock(&log.mu);
	assert_int_equal(log.n, 6);
	const char *want[] = { "ord_0", "ord_0", "ord_1", "ord_2", "ord_3", "ord_3" };
	for (int i = 0; i < 6; i++) {
		assert_string_equal(log.ids[i], want[i]);
		assert_int_equal(log.rc[i], HS_OK);
	}
	pthread_mutex_unlock(&log.mu);
	pthread_mutex_destroy(&log.mu);
	hs_store_task_row *r = get_task(s, "ord_3");
	assert_int_equal(r->current_step, 13); /* the later of ord_3's two beats */
	free(r);
}
