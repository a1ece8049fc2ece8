/* Unit tests for the SQLite store: sandboxes, snapshots, tasks, events,
 * concurrent writers and the readiness probe on a read-only database. */
#include "test_store.h"

/* ---- sandboxes and snapshots --------------------------------------------- */

void test_store__sandbox_crud_and_filters(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_sandbox_row *a = make_sandbox("sb_a", "usr_1", 2);
	hs_store_sandbox_row *b = make_sandbox("sb_b", "usr_1", 6);
	hs_store_sandbox_row *c = make_sandbox("sb_c", "usr_2", 2);
	hs_store_sandbox_row *got = calloc(1, sizeof(*got));
	snprintf(c->task_id, sizeof(c->task_id), "task_9");
	snprintf(a->node_id, sizeof(a->node_id), "node-a"); /* round trip: a is compared whole */
	snprintf(c->node_id, sizeof(c->node_id), "node-c");
	a->created_at_ms = 100;
	b->created_at_ms = 300;
	c->created_at_ms = 200;
	assert_int_equal(hs_store_sandbox_insert(s, a, &err), HS_OK);
	assert_int_equal(hs_store_sandbox_insert(s, b, &err), HS_OK);
	assert_int_equal(hs_store_sandbox_insert(s, c, &err), HS_OK);
	assert_int_equal(hs_store_sandbox_insert(s, a, NULL), HS_EXISTS);

	assert_int_equal(hs_store_sandbox_get(s, "sb_a", got, &err), HS_OK);
	assert_memory_equal(got, a, sizeof(*a));

	a->state = 4;
	a->pid = 12345;
	a->exit_code = -9;
	a->stopped_at_ms = 1700000000123;
	snprintf(a->failure_reason, sizeof(a->failure_reason), "killed");
	assert_int_equal(hs_store_sandbox_update(s, a, &err), HS_OK);
	assert_int_equal(hs_store_sandbox_get(s, "sb_a", got, &err), HS_OK);
	assert_memory_equal(got, a, sizeof(*a));
	assert_int_equal(got->stopped_at_ms, 1700000000123);
	assert_int_equal(got->state, 4);
	assert_int_equal(got->pid, 12345);
	assert_int_equal(got->exit_code, -9);
	assert_int_equal(got->pid_start_time, UINT64_C(1) << 40);
	assert_string_equal(got->failure_reason, "killed");

	/* The fence: a write of a node that does not hold the row changes
	 * nothing (another node took it over), and names the holder. */
	hs_store_sandbox_row *stale = calloc(1, sizeof(*stale));
	assert_non_null(stale);
	*stale = *a;
	snprintf(stale->node_id, sizeof(stale->node_id), "node-old");
	stale->state = 2;
	hs_error ferr = { 0 };
	assert_int_equal(hs_store_sandbox_update(s, stale, &ferr), HS_ABORTED);
	if (strstr(ferr.msg, "held by node node-a, not node-old") == NULL)
		fail_msg("fence message: %s", ferr.msg);
	assert_int_equal(hs_store_sandbox_get(s, "sb_a", got, &err), HS_OK);
	assert_memory_equal(got, a, sizeof(*a));
	free(stale);

	hs_store_sandbox_row *ghost = make_sandbox("sb_ghost", "usr_1", 1);
	assert_int_equal(hs_store_sandbox_update(s, ghost, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_store_sandbox_get(s, "sb_ghost", got, NULL), HS_NOT_FOUND);
	memset(ghost->config_json, '{', sizeof(ghost->config_json));
	assert_int_equal(hs_store_sandbox_insert(s, ghost, NULL), HS_INVALID);

	hs_store_sandbox_row *rows = NULL;
	size_t n = 0;
	hs_store_sandbox_filter flt = HS_STORE_SANDBOX_FILTER_INIT;
	assert_int_equal(hs_store_sandbox_list(s, &flt, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 3); /* newest first */
	assert_string_equal(rows[0].sandbox_id, "sb_b");
	assert_string_equal(rows[1].sandbox_id, "sb_c");
	assert_string_equal(rows[2].sandbox_id, "sb_a");
	free(rows);
	flt.owner = "usr_1";
	assert_int_equal(hs_store_sandbox_list(s, &flt, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].sandbox_id, "sb_b");
	assert_string_equal(rows[1].sandbox_id, "sb_a");
	free(rows);
	flt.state = 6;
	assert_int_equal(hs_store_sandbox_list(s, &flt, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].sandbox_id, "sb_b");
	free(rows);
	hs_store_sandbox_filter by_task = HS_STORE_SANDBOX_FILTER_INIT;
	by_task.task_id = "task_9";
	assert_int_equal(hs_store_sandbox_list(s, &by_task, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].sandbox_id, "sb_c");
	free(rows);
	/* A node's own rows only ("" = rows of no named node). */
	hs_store_sandbox_filter by_node = HS_STORE_SANDBOX_FILTER_INIT;
	by_node.node_id = "node-a";
	assert_int_equal(hs_store_sandbox_list(s, &by_node, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].sandbox_id, "sb_a");
	free(rows);
	by_node.node_id = "";
	assert_int_equal(hs_store_sandbox_list(s, &by_node, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].sandbox_id, "sb_b");
	free(rows);
	hs_store_sandbox_filter paged = HS_STORE_SANDBOX_FILTER_INIT;
	paged.after_id = "sb_b";
	paged.after_created_at_ms = 300;
	paged.limit = 1;
	assert_int_equal(hs_store_sandbox_list(s, &paged, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].sandbox_id, "sb_c");
	free(rows);
	/* the cursor combines with the filters */
	paged.owner = "usr_1";
	paged.limit = 0;
	assert_int_equal(hs_store_sandbox_list(s, &paged, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].sandbox_id, "sb_a");
	free(rows);

	int64_t count = -1;
	assert_int_equal(hs_store_sandbox_count_by_owner(s, "usr_1", 6, &count, &err), HS_OK);
	assert_int_equal(count, 1);

	assert_int_equal(hs_store_sandbox_delete(s, "sb_a", &err), HS_OK);
	assert_int_equal(hs_store_sandbox_delete(s, "sb_a", NULL), HS_NOT_FOUND);
	assert_int_equal(hs_store_sandbox_get(s, "sb_a", got, NULL), HS_NOT_FOUND);
	free(a);
	free(b);
	free(c);
	free(ghost);
	free(got);
}

/* Newest first with ties on created_at_ms broken by sandbox_id (descending);
 * paging by the (created_at_ms, sandbox_id) cursor visits every row once,
 * and rows inserted between pages (newer ones) do not shift later pages. */
void test_store__sandbox_list_newest_first_stable_cursor(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	static const struct {
		const char *id;
		int64_t at;
	} in[] = { { "sb_q", 5 }, { "sb_m", 5 }, { "sb_z", 5 }, { "sb_b", 9 },
		   { "sb_a", 1 }, { "sb_y", 9 }, { "sb_n", 5 } };
	static const char *const want[] = { "sb_y", "sb_b", "sb_z", "sb_q", "sb_n", "sb_m", "sb_a" };
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		hs_store_sandbox_row *r = make_sandbox(in[i].id, "usr_1", 2);
		r->created_at_ms = in[i].at;
		assert_int_equal(hs_store_sandbox_insert(s, r, &err), HS_OK);
		free(r);
	}
	char after[HS_STORE_ID_MAX] = "";
	int64_t after_ms = 0;
	size_t seen = 0;
	for (int page = 0; page < 10; page++) {
		hs_store_sandbox_filter flt = HS_STORE_SANDBOX_FILTER_INIT;
		flt.after_id = after[0] ? after : NULL;
		flt.after_created_at_ms = after_ms;
		flt.limit = 2;
		hs_store_sandbox_row *rows = NULL;
		size_t n = 0;
		assert_int_equal(hs_store_sandbox_list(s, &flt, &rows, &n, &err), HS_OK);
		for (size_t i = 0; i < n; i++) {
			assert_true(seen < 7);
			assert_string_equal(rows[i].sandbox_id, want[seen++]);
		}
		if (n > 0) {
			snprintf(after, sizeof(after), "%s", rows[n - 1].sandbox_id);
			after_ms = rows[n - 1].created_at_ms;
		}
		free(rows);
		if (page == 0) { /* a newer sandbox and a same-time one sorting first */
			hs_store_sandbox_row *r = make_sandbox("sb_new", "usr_1", 2);
			r->created_at_ms = 50;
			assert_int_equal(hs_store_sandbox_insert(s, r, &err), HS_OK);
			snprintf(r->sandbox_id, sizeof(r->sandbox_id), "sb_zz");
			r->created_at_ms = 9;
			assert_int_equal(hs_store_sandbox_insert(s, r, &err), HS_OK);
			free(r);
		}
		if (n < 2)
			break;
	}
	assert_int_equal(seen, 7);
}

static void make_snapshot(hs_store_snapshot_row *r, const char *id, const char *sb, int64_t at)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->snapshot_id, sizeof(r->snapshot_id), "%s", id);
	snprintf(r->sandbox_id, sizeof(r->sandbox_id), "%s", sb);
	snprintf(r->type, sizeof(r->type), "full");
	snprintf(r->mem_file_path, sizeof(r->mem_file_path), "/data/%s.mem", id);
	snprintf(r->snapshot_path, sizeof(r->snapshot_path), "/data/%s.snap", id);
	r->created_at_ms = at;
	r->size_bytes = 1 << 20;
}

void test_store__snapshots(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_sandbox_row *sb = make_sandbox("sb_1", "usr_1", 2);
	hs_store_snapshot_row r, got;
	assert_int_equal(hs_store_sandbox_insert(s, sb, &err), HS_OK);
	assert_int_equal(hs_store_snapshot_latest_for_sandbox(s, "sb_1", &got, NULL), HS_NOT_FOUND);
	make_snapshot(&r, "snap_1", "sb_1", 100);
	assert_int_equal(hs_store_snapshot_insert(s, &r, &err), HS_OK);
	assert_int_equal(hs_store_snapshot_insert(s, &r, NULL), HS_EXISTS);
	make_snapshot(&r, "snap_2", "sb_1", 300);
	assert_int_equal(hs_store_snapshot_insert(s, &r, &err), HS_OK);
	make_snapshot(&r, "snap_0", "sb_1", 200);
	assert_int_equal(hs_store_snapshot_insert(s, &r, &err), HS_OK);
	make_snapshot(&r, "snap_x", "sb_missing", 1);
	assert_int_equal(hs_store_snapshot_insert(s, &r, NULL), HS_NOT_FOUND);

	assert_int_equal(hs_store_snapshot_get(s, "snap_1", &got, &err), HS_OK);
	assert_string_equal(got.mem_file_path, "/data/snap_1.mem");
	assert_int_equal(got.size_bytes, 1 << 20);
	assert_int_equal(hs_store_snapshot_latest_for_sandbox(s, "sb_1", &got, &err), HS_OK);
	assert_string_equal(got.snapshot_id, "snap_2");
	hs_store_snapshot_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(hs_store_snapshot_list_by_sandbox(s, "sb_1", &rows, &n, &err), HS_OK);
	assert_int_equal(n, 3);
	assert_string_equal(rows[0].snapshot_id, "snap_1");
	assert_string_equal(rows[1].snapshot_id, "snap_0");
	assert_string_equal(rows[2].snapshot_id, "snap_2");
	assert_string_equal(rows[2].base_snapshot_id, "");
	free(rows);
	/* a diff names its base */
	make_snapshot(&r, "snap_d", "sb_1", 400);
	snprintf(r.type, sizeof(r.type), "diff");
	snprintf(r.base_snapshot_id, sizeof(r.base_snapshot_id), "snap_2");
	assert_int_equal(hs_store_snapshot_insert(s, &r, &err), HS_OK);
	assert_int_equal(hs_store_snapshot_get(s, "snap_d", &got, &err), HS_OK);
	assert_memory_equal(&got, &r, sizeof(r));
	memset(r.base_snapshot_id, 'x', sizeof(r.base_snapshot_id));
	snprintf(r.snapshot_id, sizeof(r.snapshot_id), "snap_long");
	assert_int_equal(hs_store_snapshot_insert(s, &r, NULL), HS_INVALID);

	/* deleting the sandbox deletes its snapshot rows */
	assert_int_equal(hs_store_sandbox_delete(s, "sb_1", &err), HS_OK);
	assert_int_equal(hs_store_snapshot_get(s, "snap_1", &got, NULL), HS_NOT_FOUND);
	free(sb);
}

/* ---- tasks and events ---------------------------------------------------- */

typedef struct collect {
	hs_store *store;
	int n;
	char ids[8][HS_STORE_ID_MAX];
	int stop_after;
} collect;

static int collect_task(const hs_store_task_row *t, void *payload)
{
	collect *c = payload;
	/* The lock is not held: re-entering the store must not deadlock. */
	hs_store_task_row *again = malloc(sizeof(*again));
	int rc = hs_store_task_get(c->store, t->task_id, again, NULL);
	free(again);
	if (rc != HS_OK)
		return rc;
	if (c->n < 8)
		snprintf(c->ids[c->n], sizeof(c->ids[0]), "%s", t->task_id);
	c->n++;
	return (c->stop_after && c->n >= c->stop_after) ? 77 : 0;
}

void test_store__task_crud_heartbeat_and_active(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_task_row *t1 = make_task("task_1", "usr_1", 1);
	hs_store_task_row *t2 = make_task("task_2", "usr_1", 3);
	hs_store_task_row *t3 = make_task("task_3", "usr_2", 2);
	hs_store_task_row *got = calloc(1, sizeof(*got));
	assert_int_equal(hs_store_task_insert(s, t1, &err), HS_OK);
	assert_int_equal(hs_store_task_insert(s, t2, &err), HS_OK);
	assert_int_equal(hs_store_task_insert(s, t3, &err), HS_OK);
	assert_int_equal(hs_store_task_insert(s, t1, NULL), HS_EXISTS);
	assert_int_equal(hs_store_task_get(s, "task_1", got, &err), HS_OK);
	assert_memory_equal(got, t1, sizeof(*t1));
	assert_int_equal(hs_store_task_get(s, "task_none", got, NULL), HS_NOT_FOUND);

	assert_int_equal(hs_store_task_heartbeat(s, "task_1", 4, 12, 0.5, 256.0, 1024.0, "step four",
						 9999, &err),
			 HS_OK);
	assert_int_equal(hs_store_task_get(s, "task_1", got, &err), HS_OK);
	assert_int_equal(got->current_step, 4);
	assert_int_equal(got->total_steps, 12);
	assert_int_equal(got->last_heartbeat_ms, 9999);
	assert_int_equal(got->updated_at_ms, 9999);
	assert_string_equal(got->details, "step four");
	assert_true(got->cpu_usage == 0.5 && got->memory_usage_mb == 256.0);
	assert_true(got->policy_multiplier == 2.5); /* untouched */
	assert_int_equal(hs_store_task_heartbeat(s, "task_none", 1, 1, 0, 0, 0, NULL, 1, NULL),
			 HS_NOT_FOUND);
	char long_details[HS_STORE_TEXT_MAX + 1];
	memset(long_details, 'd', sizeof(long_details) - 1);
	long_details[sizeof(long_details) - 1] = '\0';
	assert_int_equal(hs_store_task_heartbeat(s, "task_1", 1, 1, 0, 0, 0, long_details, 1, NULL),
			 HS_INVALID);

	*got = *t2;
	got->state = 5;
	got->cancel_requested = true;
	snprintf(got->last_checkpoint_id, sizeof(got->last_checkpoint_id), "ckpt_7");
	assert_int_equal(hs_store_task_update(s, got, &err), HS_OK);
	assert_int_equal(hs_store_task_get(s, "task_2", t2, &err), HS_OK);
	assert_int_equal(t2->state, 5);
	assert_true(t2->cancel_requested);
	assert_string_equal(t2->last_checkpoint_id, "ckpt_7");
	snprintf(got->task_id, sizeof(got->task_id), "task_none");
	assert_int_equal(hs_store_task_update(s, got, NULL), HS_NOT_FOUND);

	hs_store_task_row *rows = NULL;
	size_t n = 0;
	hs_store_task_filter flt = HS_STORE_TASK_FILTER_INIT;
	flt.owner = "usr_1";
	assert_int_equal(hs_store_task_list(s, &flt, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].task_id, "task_1");
	free(rows);
	hs_store_task_filter by_state = HS_STORE_TASK_FILTER_INIT;
	by_state.state = 2;
	assert_int_equal(hs_store_task_list(s, &by_state, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].task_id, "task_3");
	free(rows);

	const int active[] = { 1, 2 };
	collect c = { .store = s };
	assert_int_equal(hs_store_task_list_active(s, active, 2, collect_task, &c, &err), HS_OK);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.ids[0], "task_1");
	assert_string_equal(c.ids[1], "task_3");
	collect stop = { .store = s, .stop_after = 1 };
	assert_int_equal(hs_store_task_list_active(s, active, 2, collect_task, &stop, &err), 77);
	assert_int_equal(stop.n, 1);
	free(t1);
	free(t2);
	free(t3);
	free(got);
}

typedef struct ev_collect {
	int n;
	int64_t ids[16];
	char tasks[16][HS_STORE_ID_MAX];
} ev_collect;

static int collect_event(const hs_store_event_row *e, void *payload)
{
	ev_collect *c = payload;
	if (c->n < 16) {
		c->ids[c->n] = e->event_id;
		snprintf(c->tasks[c->n], sizeof(c->tasks[0]), "%s", e->task_id);
	}
	c->n++;
	return 0;
}

void test_store__events_append_and_list_after(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	int64_t ids[6], last = -1;
	assert_int_equal(hs_store_event_last_id(s, &last, &err), HS_OK);
	assert_int_equal(last, 0); /* none yet */
	for (int i = 0; i < 6; i++) {
		hs_store_event_row e = { 0 };
		snprintf(e.task_id, sizeof(e.task_id), "task_%d", i % 2);
		e.type = 3;
		e.step = i;
		e.attempt = 1;
		e.occurred_at_ms = 1000 + i;
		snprintf(e.message, sizeof(e.message), "event %d", i);
		assert_int_equal(hs_store_event_append(s, &e, &ids[i], &err), HS_OK);
		if (i > 0)
			assert_true(ids[i] > ids[i - 1]);
	}
	ev_collect all = { 0 };
	assert_int_equal(hs_store_event_list_after(s, 0, NULL, 0, collect_event, &all, &err), HS_OK);
	assert_int_equal(all.n, 6);
	ev_collect one = { 0 };
	assert_int_equal(hs_store_event_list_after(s, ids[1], "task_1", 10, collect_event, &one, &err),
			 HS_OK);
	assert_int_equal(one.n, 2); /* events 3 and 5 */
	assert_int_equal(one.ids[0], ids[3]);
	assert_int_equal(one.ids[1], ids[5]);
	ev_collect lim = { 0 };
	assert_int_equal(hs_store_event_list_after(s, 0, NULL, 4, collect_event, &lim, &err), HS_OK);
	assert_int_equal(lim.n, 4);
	assert_int_equal(hs_store_event_last_id(s, &last, &err), HS_OK);
	assert_int_equal(last, ids[5]);
	hs_store_event_row bad = { 0 };
	assert_int_equal(hs_store_event_append(s, &bad, NULL, NULL), HS_INVALID);
}

/* A state change and its event: both or neither (a crash between them
 * would otherwise lose the event or leave one without its state). */
void test_store__task_transition_is_one_transaction(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_task_row *t = make_task("task_x", "usr_1", 1);
	hs_store_task_row *got = calloc(1, sizeof(*got));
	hs_store_event_row ev = { 0 };
	snprintf(ev.task_id, sizeof(ev.task_id), "task_x");
	ev.type = 1;
	ev.state = 1;
	ev.occurred_at_ms = 5;
	int64_t id = 0, id2 = 0;
	/* insert: row and event together; the fencing columns round-trip */
	t->recovery_generation = 3;
	t->base_generation = 1;
	t->acked_generation = 2;
	t->restored = true;
	snprintf(t->resume_checkpoint_id, sizeof(t->resume_checkpoint_id), "ckpt-4-000000000004");
	t->resume_step = 4;
	t->last_checkpoint_step = 9;
	t->deadline_ms = 123456;
	assert_int_equal(hs_store_task_transition(s, t, true, &ev, &id, &err), HS_OK);
	assert_true(id > 0);
	assert_int_equal(hs_store_task_get(s, "task_x", got, &err), HS_OK);
	assert_memory_equal(got, t, sizeof(*t));
	assert_int_equal(hs_store_task_transition(s, t, true, &ev, &id2, NULL), HS_EXISTS);
	/* update with an event */
	t->state = 2;
	ev.type = 2;
	ev.state = 2;
	ev.recovery_generation = 3;
	assert_int_equal(hs_store_task_transition(s, t, false, &ev, &id2, &err), HS_OK);
	assert_true(id2 > id);
	/* an event that cannot be written undoes the row's update */
	t->state = 3;
	memset(ev.message, 'x', sizeof(ev.message)); /* unterminated: refused */
	hs_error_clear(&err);
	assert_int_equal(hs_store_task_transition(s, t, false, &ev, NULL, &err), HS_INVALID);
	assert_int_equal(hs_store_task_get(s, "task_x", got, &err), HS_OK);
	assert_int_equal(got->state, 2);
	/* a missing task: nothing written */
	memset(ev.message, 0, sizeof(ev.message));
	hs_store_task_row *none = make_task("task_none", "usr_1", 1);
	snprintf(ev.task_id, sizeof(ev.task_id), "task_none");
	assert_int_equal(hs_store_task_transition(s, none, false, &ev, NULL, NULL), HS_NOT_FOUND);
	/* update without an event */
	t->state = 4;
	assert_int_equal(hs_store_task_transition(s, t, false, NULL, NULL, &err), HS_OK);
	ev_collect all = { 0 };
	assert_int_equal(hs_store_event_list_after(s, 0, NULL, 0, collect_event, &all, &err), HS_OK);
	assert_int_equal(all.n, 2); /* REGISTERED and the first update's; nothing else */
	assert_int_equal(all.ids[1], id2);
	free(t);
	free(none);
	free(got);
}

/* ---- concurrency --------------------------------------------------------- */

#define THREADS 4
#define ITERS 150

typedef struct worker {
	hs_store *store;
	int idx;
	int failures;
	hs_error err;
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	char task[32];
	snprintf(task, sizeof(task), "task_t%d", w->idx);
	hs_store_task_row *t = make_task(task, "usr_1", 1);
	if (hs_store_task_insert(w->store, t, &w->err) != HS_OK)
		w->failures++;
	free(t);
	for (int i = 0; i < ITERS; i++) {
		hs_store_event_row e = { 0 };
		snprintf(e.task_id, sizeof(e.task_id), "%s", task);
		e.step = i;
		e.occurred_at_ms = i;
		if (hs_store_event_append(w->store, &e, NULL, &w->err) != HS_OK)
			w->failures++;
		if (hs_store_task_heartbeat(w->store, task, i, ITERS, 0.1, 1, 1, "hb", 1000 + i,
					    &w->err) != HS_OK)
			w->failures++;
		char sb[32];
		snprintf(sb, sizeof(sb), "sb_%d_%03d", w->idx, i);
		hs_store_sandbox_row *r = make_sandbox(sb, "usr_1", 2);
		if (hs_store_sandbox_insert(w->store, r, &w->err) != HS_OK)
			w->failures++;
		free(r);
		if (i % 50 == 0 && hs_store_check_writable(w->store, &w->err) != HS_OK)
			w->failures++;
	}
	return NULL;
}

static int count_events(const hs_store_event_row *e, void *payload)
{
	(void)e;
	(*(int *)payload)++;
	return 0;
}

void test_store__concurrent_writers(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	pthread_t th[THREADS];
	worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].store = s;
		w[i].idx = i;
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		if (w[i].failures != 0)
			fail_msg("thread %d: %d failures, last: %s", i, w[i].failures, w[i].err.msg);
	}
	hs_error err = { 0 };
	int64_t n = 0;
	assert_int_equal(hs_store_sandbox_count_by_owner(s, "usr_1", 6, &n, &err), HS_OK);
	assert_int_equal(n, THREADS * ITERS);
	int events = 0;
	int64_t after = 0;
	for (;;) { /* page through with the cursor */
		int before = events;
		ev_collect page = { 0 };
		assert_int_equal(hs_store_event_list_after(s, after, NULL, 16, collect_event, &page, &err),
				 HS_OK);
		events += page.n;
		if (page.n == 0)
			break;
		after = page.ids[page.n - 1];
		assert_true(events > before);
	}
	assert_int_equal(events, THREADS * ITERS);
	int t0 = 0;
	assert_int_equal(hs_store_event_list_after(s, 0, "task_t0", 1000, count_events, &t0, &err),
			 HS_OK);
	assert_int_equal(t0, ITERS);
}

/* ---- readiness ----------------------------------------------------------- */

/* Runs in a child (as an unprivileged user when we are root, since root
 * writes read-only files): 0 if the store opens read-only and refuses the
 * probe write, otherwise the number of the failed check. */
static int readonly_checks(const char *data_dir)
{
	hs_error err = { 0 };
	hs_store *s = NULL;
	hs_store_user_row u;
	if (hs_store_open(&s, data_dir, &err) != HS_OK) {
		fprintf(stderr, "open: %s\n", err.msg);
		return 1;
	}
	int ret = 0;
	if (hs_store_user_get_by_id(s, "usr_ro", &u, &err) != HS_OK)
		ret = 2;
	else if (hs_store_check_writable(s, &err) != HS_UNAVAILABLE || err.code != HS_UNAVAILABLE)
		ret = 3;
	else if (hs_store_user_insert(s, &u, NULL) != HS_UNAVAILABLE)
		ret = 4;
	hs_store_free(s);
	return ret;
}

void test_store__check_writable_fails_on_readonly_file(void **state)
{
	fixture *f = *state;
	SQLITE_ONLY(f);
	hs_store_user_row u;
	make_user(&u, "usr_ro", "ro@example.com");
	assert_int_equal(hs_store_user_insert(open_store(f), &u, NULL), HS_OK);
	hs_store_free(f->store); /* clean close: no -wal/-shm left */
	f->store = NULL;
	assert_int_equal(chmod(f->db_path, 0444), 0);
	if (geteuid() != 0) {
		assert_int_equal(readonly_checks(f->data_dir), 0);
		return;
	}
	const uid_t nobody = 65534;
	assert_int_equal(chown(f->data_dir, nobody, nobody), 0);
	assert_int_equal(chown(f->db_path, nobody, nobody), 0);
	char parent[140];
	snprintf(parent, sizeof(parent), "%s/data", f->dir);
	assert_int_equal(chmod(f->dir, 0755), 0);
	assert_int_equal(chmod(parent, 0755), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(nobody) != 0 || setuid(nobody) != 0)
			_exit(100);
		_exit(readonly_checks(f->data_dir));
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ListTasks across nodes: newest first, ties by task_id ascending; the
 * (registered_at_ms, task_id) keyset cursor visits every row once; owner
 * and state filter; the limit bounds a page. */
void test_store__task_list_newest_keyset(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	static const struct {
		const char *id, *owner;
		int state;
		int64_t reg;
	} in[] = { { "t_a", "usr_1", 1, 10 }, { "t_b", "usr_1", 1, 20 }, { "t_c", "usr_2", 2, 20 },
		   { "t_d", "usr_1", 1, 20 }, { "t_e", "usr_1", 4, 5 } };
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		hs_store_task_row *r = make_task(in[i].id, in[i].owner, in[i].state);
		r->registered_at_ms = in[i].reg;
		assert_int_equal(hs_store_task_insert(s, r, &err), HS_OK);
		free(r);
	}
	static const char *const want[] = { "t_b", "t_c", "t_d", "t_a", "t_e" };
	hs_store_task_page q = { .owner = NULL, .state = -1, .limit = 2 };
	char after[HS_STORE_ID_MAX] = "";
	size_t seen = 0;
	for (int pages = 0; pages < 10; pages++) {
		hs_store_task_row *rows = NULL;
		size_t n = 0;
		assert_int_equal(hs_store_task_list_newest(s, &q, &rows, &n, &err), HS_OK);
		assert_true(n <= 2);
		for (size_t i = 0; i < n; i++) {
			assert_true(seen < 5);
			assert_string_equal(rows[i].task_id, want[seen++]);
		}
		if (n < 2) {
			free(rows);
			break;
		}
		q.has_cursor = true;
		q.after_reg_ms = rows[n - 1].registered_at_ms;
		snprintf(after, sizeof(after), "%s", rows[n - 1].task_id);
		q.after_id = after;
		free(rows);
	}
	assert_int_equal(seen, 5);

	hs_store_task_row *rows = NULL;
	size_t n = 0;
	hs_store_task_page mine = { .owner = "usr_1", .state = -1, .limit = 10 };
	assert_int_equal(hs_store_task_list_newest(s, &mine, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 4);
	assert_string_equal(rows[0].task_id, "t_b");
	assert_string_equal(rows[1].task_id, "t_d");
	assert_string_equal(rows[3].task_id, "t_e");
	free(rows);
	hs_store_task_page stalled = { .owner = NULL, .state = 2, .limit = 10 };
	assert_int_equal(hs_store_task_list_newest(s, &stalled, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].task_id, "t_c");
	free(rows);
	hs_store_task_page after_c = { .owner = NULL, .state = -1, .has_cursor = true,
				       .after_reg_ms = 20, .after_id = "t_c", .limit = 10 };
	assert_int_equal(hs_store_task_list_newest(s, &after_c, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 3);
	assert_string_equal(rows[0].task_id, "t_d");
	assert_string_equal(rows[1].task_id, "t_a");
	free(rows);
}
