/* Task leases (store.h, "nodes and task leases"): acquire / renew /
 * takeover with fencing, fenced transitions refused once the lease changed
 * hands, the lease thread's renewal walk, start-up and takeover batches,
 * racing nodes. On both backends. */
#include "test_store.h"

void test_store__lease_acquire_renew_takeover_and_fencing(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_lease_row l;
	assert_int_equal(hs_store_lease_get(s, "t1", &l, NULL), HS_NOT_FOUND);
	/* First holder: fence 1. */
	assert_int_equal(hs_store_lease_acquire(s, "t1", "node-a", 100, 1100, &l, &err), HS_OK);
	assert_string_equal(l.node_id, "node-a");
	assert_int_equal(l.fence, 1);
	assert_int_equal(l.expires_at_ms, 1100);
	/* Another node while it is live: refused. */
	assert_int_equal(hs_store_lease_acquire(s, "t1", "node-b", 500, 1500, &l, &err), HS_CONFLICT);
	assert_non_null(strstr(err.msg, "t1"));
	/* Renewal by the holder: same fence. */
	assert_int_equal(hs_store_lease_acquire(s, "t1", "node-a", 900, 1900, &l, &err), HS_OK);
	assert_int_equal(l.fence, 1);
	assert_int_equal(l.expires_at_ms, 1900);

	/* The holder acts on the task under its fence. */
	hs_store_task_row *t = make_task("t1", "usr_1", 1);
	hs_store_event_row ev = { .task_id = "t1", .type = 1, .occurred_at_ms = 1000 };
	int64_t id = 0;
	assert_int_equal(hs_store_task_transition_fenced(s, t, true, &ev, "node-a", 1, 1000, &id,
							 &err), HS_OK);
	assert_true(id > 0);

	/* Expired: another node's takeover batch takes it, fence 2; not a
	 * moment before. */
	hs_store_lease_row *exp = NULL;
	size_t n = 99;
	assert_int_equal(hs_store_lease_take_expired(s, "node-b", 1899, 2899, 0, &exp, &n, &err),
			 HS_OK);
	assert_int_equal(n, 0);
	assert_null(exp);
	assert_int_equal(hs_store_lease_take_expired(s, "node-b", 1900, 2900, 0, &exp, &n, &err),
			 HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(exp[0].task_id, "t1");
	assert_string_equal(exp[0].node_id, "node-b");
	assert_int_equal(exp[0].fence, 2);
	assert_int_equal(exp[0].expires_at_ms, 2900);
	free(exp);
	/* The new holder's renewal keeps its fence. */
	assert_int_equal(hs_store_lease_acquire(s, "t1", "node-b", 1900, 2900, &l, &err), HS_OK);
	assert_string_equal(l.node_id, "node-b");
	assert_int_equal(l.fence, 2);

	/* The old holder's writes are refused and change nothing. */
	t->current_step = 77;
	ev.type = 2;
	assert_int_equal(hs_store_task_transition_fenced(s, t, false, &ev, "node-a", 1, 1950, &id,
							 &err), HS_CONFLICT);
	assert_non_null(strstr(err.msg, "lease"));
	hs_store_task_row got;
	assert_int_equal(hs_store_task_get(s, "t1", &got, &err), HS_OK);
	assert_int_equal(got.current_step, 0);
	int count = 0;
	/* and no event was appended */
	assert_int_equal(hs_store_event_list_after(s, 0, "t1", 0, count_event, &count, &err), HS_OK);
	assert_int_equal(count, 1);
	/* Nor can it take the lease back or release it. */
	assert_int_equal(hs_store_lease_acquire(s, "t1", "node-a", 2000, 3000, &l, NULL), HS_CONFLICT);
	assert_int_equal(hs_store_lease_release(s, "t1", "node-a", 1, NULL), HS_CONFLICT);
	/* The new holder can, with its fence; a lease past its expiry is not
	 * good for writes even to its holder. */
	assert_int_equal(hs_store_task_transition_fenced(s, t, false, NULL, "node-b", 2, 2950, NULL,
							 &err), HS_CONFLICT);
	assert_int_equal(hs_store_task_transition_fenced(s, t, false, NULL, "node-b", 2, 2000, NULL,
							 &err), HS_OK);
	assert_int_equal(hs_store_task_get(s, "t1", &got, &err), HS_OK);
	assert_int_equal(got.current_step, 77);
	assert_int_equal(hs_store_lease_release(s, "t1", "node-b", 2, &err), HS_OK);
	assert_int_equal(hs_store_lease_release(s, "t1", "node-b", 2, NULL), HS_NOT_FOUND);
	/* Released: anyone gets it afresh. */
	assert_int_equal(hs_store_lease_acquire(s, "t1", "node-c", 3000, 4000, &l, &err), HS_OK);
	assert_int_equal(l.fence, 1);
	assert_int_equal(hs_store_task_transition_fenced(s, t, false, NULL, NULL, 1, 3000, NULL, NULL),
			 HS_INVALID);
	free(t);
}

/* The lease thread's batch: one statement renews every lease a node
 * holds, and what it returns is exactly what it still holds. */
void test_store__lease_renew_node_renews_only_what_it_holds(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_lease_row l, *v = NULL;
	size_t n = 0;
	assert_int_equal(hs_store_lease_renew_node(s, "node-a", 5000, &v, &n, &err), HS_OK);
	assert_int_equal(n, 0);
	assert_null(v);
	assert_int_equal(hs_store_lease_acquire(s, "r2", "node-a", 100, 1100, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "r1", "node-a", 100, 1100, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "r3", "node-a", 100, 1100, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "x1", "node-b", 100, 1100, &l, &err), HS_OK);
	/* r3 expires and node-b takes it over (fence 2). */
	assert_int_equal(hs_store_lease_acquire(s, "r3", "node-b", 1100, 2100, &l, &err), HS_OK);
	assert_int_equal(l.fence, 2);
	/* node-a renews what it still holds, even r1/r2 past their expiry
	 * (nobody took them), in task_id order; r3 and x1 are untouched. */
	assert_int_equal(hs_store_lease_renew_node(s, "node-a", 3000, &v, &n, &err), HS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].task_id, "r1");
	assert_string_equal(v[1].task_id, "r2");
	assert_int_equal(v[0].fence, 1);
	assert_int_equal(v[1].expires_at_ms, 3000);
	free(v);
	assert_int_equal(hs_store_lease_get(s, "r3", &l, &err), HS_OK);
	assert_string_equal(l.node_id, "node-b");
	assert_int_equal(l.expires_at_ms, 2100);
	assert_int_equal(hs_store_lease_get(s, "x1", &l, &err), HS_OK);
	assert_int_equal(l.expires_at_ms, 1100);
	/* Giving up: expiry now, so a survivor's scan finds them. */
	assert_int_equal(hs_store_lease_renew_node(s, "node-a", 2500, &v, &n, &err), HS_OK);
	free(v);
	assert_int_equal(hs_store_lease_take_expired(s, "node-c", 2500, 9000, 0, &v, &n, &err),
			 HS_OK);
	assert_int_equal(n, 4); /* r1, r2 (given up), r3 and x1 (expired before) */
	assert_string_equal(v[0].task_id, "r1");
	assert_string_equal(v[3].task_id, "x1");
	free(v);
	assert_int_equal(hs_store_lease_renew_node(s, "", 2500, &v, &n, NULL), HS_INVALID);
}

/* A start-up's batch: one statement grants what is free, renews what the
 * node holds, takes over what expired, and leaves (and omits) what another
 * node holds live; ids with JSON's special characters come through as
 * themselves, duplicates count once. */
void test_store__lease_acquire_many_grants_only_what_is_free(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_lease_row l, *v = NULL;
	size_t n = 0;
	assert_int_equal(hs_store_lease_acquire(s, "m-mine", "node-a", 100, 5000, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "m-live", "node-b", 100, 5000, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "m-dead", "node-b", 100, 900, &l, &err), HS_OK);
	const char *ids[] = { "m-new", "m-live", "m-dead", "m-mine", "m-q\"\\\x01", "m-new" };
	assert_int_equal(hs_store_lease_acquire_many(s, ids, 6, "node-a", 1000, 2000, &v, &n, &err),
			 HS_OK);
	assert_int_equal(n, 4); /* sorted by task_id; m-live is not among them */
	assert_string_equal(v[0].task_id, "m-dead");
	assert_int_equal(v[0].fence, 2); /* taken over */
	assert_string_equal(v[1].task_id, "m-mine");
	assert_int_equal(v[1].fence, 1); /* renewed */
	assert_string_equal(v[2].task_id, "m-new");
	assert_int_equal(v[2].fence, 1);
	assert_string_equal(v[3].task_id, "m-q\"\\\x01");
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(v[i].node_id, "node-a");
		assert_int_equal(v[i].expires_at_ms, 2000);
	}
	free(v);
	assert_int_equal(hs_store_lease_get(s, "m-live", &l, &err), HS_OK);
	assert_string_equal(l.node_id, "node-b");
	assert_int_equal(l.expires_at_ms, 5000);
	assert_int_equal(hs_store_lease_get(s, "m-q\"\\\x01", &l, &err), HS_OK);
	/* Nothing to ask for; too many; a bad id. */
	assert_int_equal(hs_store_lease_acquire_many(s, NULL, 0, "node-a", 1000, 2000, &v, &n, &err),
			 HS_OK);
	assert_int_equal(n, 0);
	assert_null(v);
	assert_int_equal(hs_store_lease_acquire_many(s, ids, HS_STORE_LIST_MAX + 1, "node-a", 1000,
						     2000, &v, &n, NULL), HS_INVALID);
	const char *bad[] = { "m-new", "" };
	assert_int_equal(hs_store_lease_acquire_many(s, bad, 2, "node-a", 1000, 2000, &v, &n, NULL),
			 HS_INVALID);
	/* A full page (the start-up batch size) in one call. */
	static char many[HS_STORE_LIST_MAX][16];
	const char *pv[HS_STORE_LIST_MAX];
	for (int i = 0; i < HS_STORE_LIST_MAX; i++) {
		snprintf(many[i], sizeof(many[i]), "p-%04d", i);
		pv[i] = many[i];
	}
	assert_int_equal(hs_store_lease_acquire_many(s, pv, HS_STORE_LIST_MAX, "node-c", 1000, 2000,
						     &v, &n, &err), HS_OK);
	assert_int_equal(n, HS_STORE_LIST_MAX);
	assert_string_equal(v[HS_STORE_LIST_MAX - 1].task_id, "p-0999");
	free(v);
}

/* More leases than one renewal chunk (1,000), interleaved with another
 * node's: every one of the node's is renewed and returned, once, in order;
 * the other node's are not touched. */
void test_store__lease_renew_node_walks_every_chunk(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	enum { N = 2500 };
	static char ids[N][16];
	const char *mine[HS_STORE_LIST_MAX], *theirs[HS_STORE_LIST_MAX];
	size_t n_mine = 0, n_theirs = 0, total_mine = 0;
	hs_store_lease_row *v = NULL;
	size_t n = 0;
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], sizeof(ids[i]), "c-%05d", i);
		if (i % 5 == 4)
			theirs[n_theirs++] = ids[i];
		else
			mine[n_mine++] = ids[i];
		if (n_mine == HS_STORE_LIST_MAX || n_theirs == HS_STORE_LIST_MAX || i == N - 1) {
			assert_int_equal(hs_store_lease_acquire_many(s, mine, n_mine, "node-a", 100,
								     1100, &v, &n, &err), HS_OK);
			assert_int_equal(n, n_mine);
			free(v);
			assert_int_equal(hs_store_lease_acquire_many(s, theirs, n_theirs, "node-b",
								     100, 1100, &v, &n, &err), HS_OK);
			assert_int_equal(n, n_theirs);
			free(v);
			total_mine += n_mine;
			n_mine = n_theirs = 0;
		}
	}
	assert_int_equal(total_mine, N / 5 * 4);
	assert_int_equal(hs_store_lease_renew_node(s, "node-a", 9000, &v, &n, &err), HS_OK);
	assert_int_equal(n, total_mine);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(v[i].node_id, "node-a");
		assert_int_equal(v[i].expires_at_ms, 9000);
		if (i > 0)
			assert_true(strcmp(v[i - 1].task_id, v[i].task_id) < 0);
	}
	free(v);
	hs_store_lease_row l;
	assert_int_equal(hs_store_lease_get(s, "c-02499", &l, &err), HS_OK);
	assert_string_equal(l.node_id, "node-b");
	assert_int_equal(l.expires_at_ms, 1100);
	assert_int_equal(hs_store_lease_get(s, "c-02498", &l, &err), HS_OK);
	assert_int_equal(l.expires_at_ms, 9000);
}

typedef struct renewer {
	hs_store *store;
	int rc;
	hs_store_lease_row *v;
	size_t n;
	hs_error err;
} renewer;

static void *renew_run(void *arg)
{
	renewer *r = arg;
	r->rc = hs_store_lease_renew_node(r->store, "node-a", 9000, &r->v, &r->n, &r->err);
	return NULL;
}

/* PostgreSQL: another node takes over a whole renewal chunk while the
 * renewal's UPDATE of it waits for those rows (it chose them before the
 * takeover committed, then skips every one as no longer node-a's). The
 * walk goes on past that empty chunk: the leases after it are renewed and
 * returned. (SQLite serialises writers: a chunk's statement sees one
 * state, so there is no such race to stage.) */
void test_store__lease_renew_node_walks_past_a_chunk_taken_over(void **state)
{
	fixture *f = *state;
	PG_ONLY(f);
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	enum { N = HS_STORE_LIST_MAX + 5 }; /* a full first chunk (1,000) and 5 more */
	static char ids[N][16];
	const char *pv[N];
	hs_store_lease_row *v = NULL, l;
	size_t n = 0;
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], sizeof(ids[i]), "w-%04d", i);
		pv[i] = ids[i];
	}
	assert_int_equal(hs_store_lease_acquire_many(s, pv, HS_STORE_LIST_MAX, "node-a", 100, 1100,
						     &v, &n, &err), HS_OK);
	free(v);
	assert_int_equal(hs_store_lease_acquire_many(s, pv + HS_STORE_LIST_MAX, 5, "node-a", 100,
						     1100, &v, &n, &err), HS_OK);
	free(v);
	/* node-b's takeover of the first chunk, its transaction left open. */
	PGconn *b = pg_connect(f), *watch = pg_connect(f);
	pg_exec_on(b, "BEGIN");
	pg_exec_on(b, "UPDATE task_leases SET node_id = 'node-b', fence = fence + 1 "
		   "WHERE task_id <= 'w-0999'");
	renewer r = { .store = s };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, renew_run, &r), 0);
	/* Until the renewal waits on node-b's row locks (up to 30 s). */
	char sql[128];
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM pg_stat_activity WHERE %d = ANY(pg_blocking_pids(pid))",
		 PQbackendPID(b));
	long blocked = 0;
	for (int i = 0; i < 3000 && blocked == 0; i++) {
		PGresult *q = PQexec(watch, sql);
		if (PQresultStatus(q) == PGRES_TUPLES_OK)
			blocked = strtol(PQgetvalue(q, 0, 0), NULL, 10);
		PQclear(q);
		if (blocked == 0)
			usleep(10 * 1000);
	}
	pg_exec_on(b, "COMMIT");
	pthread_join(th, NULL);
	PQfinish(b);
	PQfinish(watch);
	assert_int_equal(blocked, 1);
	if (r.rc != HS_OK)
		fail_msg("renew: %s", r.err.msg);
	assert_int_equal(r.n, 5);
	for (size_t i = 0; i < r.n; i++) {
		assert_string_equal(r.v[i].task_id, ids[HS_STORE_LIST_MAX + i]);
		assert_string_equal(r.v[i].node_id, "node-a");
		assert_int_equal(r.v[i].expires_at_ms, 9000);
	}
	free(r.v);
	assert_int_equal(hs_store_lease_get(s, "w-1004", &l, &err), HS_OK);
	assert_int_equal(l.expires_at_ms, 9000);
	assert_int_equal(hs_store_lease_get(s, "w-0000", &l, &err), HS_OK);
	assert_string_equal(l.node_id, "node-b");
	assert_int_equal(l.fence, 2);
	assert_int_equal(l.expires_at_ms, 1100);
}

/* Migration 10: no index on task_leases.expires_at_ms (a renewal, which
 * changes only that column, is then a HOT update on PostgreSQL, whose
 * pages keep room for it), and the expired-lease scan still finds them. */
void test_store__lease_expiry_is_not_indexed(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	if (f->pg) {
		PGconn *c = pg_connect(f);
		PGresult *r = PQexec(c, "SELECT (SELECT count(*) FROM pg_indexes WHERE "
					"schemaname = current_schema() AND tablename = 'task_leases' "
					"AND indexdef LIKE '%expires_at_ms%'), "
					"(SELECT array_to_string(reloptions, ',') FROM pg_class "
					"WHERE oid = 'task_leases'::regclass)");
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		assert_string_equal(PQgetvalue(r, 0, 0), "0");
		assert_non_null(strstr(PQgetvalue(r, 0, 1), "fillfactor=50"));
		PQclear(r);
		PQfinish(c);
	} else {
		sqlite3 *db = NULL;
		sqlite3_stmt *st = NULL;
		assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE "
						    "type = 'index' AND tbl_name = 'task_leases' "
						    "AND sql LIKE '%expires_at_ms%'", -1, &st, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(st, 0), 0);
		sqlite3_finalize(st);
		sqlite3_close(db);
	}
	hs_store_lease_row l, *v = NULL;
	size_t n = 0;
	assert_int_equal(hs_store_lease_acquire(s, "e2", "node-a", 100, 800, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "e1", "node-a", 100, 900, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "e3", "node-a", 100, 5000, &l, &err), HS_OK);
	/* One at a time: oldest expiry first, then none (e3 is live). */
	const char *want[] = { "e2", "e1" };
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(hs_store_lease_take_expired(s, "node-b", 1000, 2000, 1, &v, &n,
							     &err), HS_OK);
		assert_int_equal(n, 1);
		assert_string_equal(v[0].task_id, want[i]);
		free(v);
	}
	assert_int_equal(hs_store_lease_take_expired(s, "node-b", 1000, 2000, 1, &v, &n, &err),
			 HS_OK);
	assert_int_equal(n, 0);
}

typedef struct racer {
	hs_store *store;
	const char *node;
	pthread_barrier_t *go;
	int wins;
} racer;

static void *race_run(void *arg)
{
	racer *r = arg;
	char task[32];
	for (int i = 0; i < 40; i++) {
		snprintf(task, sizeof(task), "race-%d", i);
		pthread_barrier_wait(r->go);
		hs_store_lease_row l;
		if (hs_store_lease_acquire(r->store, task, r->node, 5000, 6000, &l, NULL) == HS_OK) {
			assert_int_equal(l.fence, 2);
			r->wins++;
		}
	}
	return NULL;
}

/* Four nodes race for each of 40 expired leases: exactly one wins each. */
void test_store__lease_takeover_race_has_one_winner(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	char task[32];
	for (int i = 0; i < 40; i++) {
		snprintf(task, sizeof(task), "race-%d", i);
		assert_int_equal(hs_store_lease_acquire(s, task, "dead", 0, 1000, NULL, &err), HS_OK);
	}
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, 4);
	racer r[4] = { { s, "n0", &go, 0 }, { s, "n1", &go, 0 }, { s, "n2", &go, 0 },
		       { s, "n3", &go, 0 } };
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_run, &r[i]), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	pthread_barrier_destroy(&go);
	assert_int_equal(r[0].wins + r[1].wins + r[2].wins + r[3].wins, 40);
}

/* A takeover batch takes only expired leases (another node's with fence
 * + 1, the taker's own late ones renewed with the same fence), oldest
 * expiry first, up to the limit; a live lease is not touched. The tasks
 * of a batch are read in one query. */
void test_store__lease_take_expired_takes_only_expired(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_lease_row l, *v = NULL;
	size_t n = 0;
	assert_int_equal(hs_store_lease_acquire(s, "x-dead1", "node-b", 100, 900, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "x-dead2", "node-b", 100, 800, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "x-live", "node-b", 100, 5000, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "x-late", "node-a", 100, 1000, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_acquire(s, "x-mine", "node-a", 100, 5000, &l, &err), HS_OK);
	assert_int_equal(hs_store_lease_take_expired(s, "node-a", 1000, 3000, 0, &v, &n, &err),
			 HS_OK);
	assert_int_equal(n, 3); /* by task_id */
	assert_string_equal(v[0].task_id, "x-dead1");
	assert_int_equal(v[0].fence, 2);
	assert_string_equal(v[1].task_id, "x-dead2");
	assert_int_equal(v[1].fence, 2);
	assert_string_equal(v[2].task_id, "x-late");
	assert_int_equal(v[2].fence, 1); /* our own: renewed, not taken */
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(v[i].node_id, "node-a");
		assert_int_equal(v[i].expires_at_ms, 3000);
	}
	free(v);
	assert_int_equal(hs_store_lease_get(s, "x-live", &l, &err), HS_OK);
	assert_string_equal(l.node_id, "node-b");
	assert_int_equal(l.fence, 1);
	assert_int_equal(l.expires_at_ms, 5000);
	assert_int_equal(hs_store_lease_get(s, "x-mine", &l, &err), HS_OK);
	assert_int_equal(l.expires_at_ms, 5000);
	/* Nothing expired left at 1000; the limit takes the oldest first. */
	assert_int_equal(hs_store_lease_take_expired(s, "node-c", 1000, 9000, 0, &v, &n, &err),
			 HS_OK);
	assert_int_equal(n, 0);
	assert_null(v);
	assert_int_equal(hs_store_lease_take_expired(s, "node-c", 5000, 9000, 1, &v, &n, &err),
			 HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].task_id, "x-dead1"); /* 3000, before x-live's 5000 */
	assert_int_equal(v[0].fence, 3);
	assert_string_equal(v[0].node_id, "node-c");
	free(v);
	assert_int_equal(hs_store_lease_take_expired(s, "", 1000, 9000, 0, &v, &n, NULL),
			 HS_INVALID);
	/* The batch's tasks in one read: rows that exist, sorted, once. */
	const char *tids[] = { "t-b", "t-a" };
	for (size_t i = 0; i < 2; i++) {
		hs_store_task_row *t = make_task(tids[i], "usr_1", 1);
		assert_int_equal(hs_store_task_insert(s, t, &err), HS_OK);
		free(t);
	}
	hs_store_task_row *rows = NULL;
	const char *want[] = { "t-b", "t-none", "t-a", "t-b", "t-q\"\\" };
	assert_int_equal(hs_store_task_get_many(s, want, 5, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].task_id, "t-a");
	assert_string_equal(rows[1].task_id, "t-b");
	assert_string_equal(rows[1].owner, "usr_1");
	free(rows);
	assert_int_equal(hs_store_task_get_many(s, NULL, 0, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 0);
	assert_null(rows);
	assert_int_equal(hs_store_task_get_many(s, want, HS_STORE_LIST_MAX + 1, &rows, &n, NULL),
			 HS_INVALID);
}

#define TAKE_RACE_N 2500

typedef struct taker {
	hs_store *store;
	char node[8];
	pthread_barrier_t *go;
	pthread_mutex_t *mu;
	int *times; /* per lease: how many takers got it */
	size_t got;
	bool bad_fence;
} taker;

static void *take_run(void *arg)
{
	taker *r = arg;
	pthread_barrier_wait(r->go);
	for (;;) {
		hs_store_lease_row *v = NULL;
		size_t n = 0;
		if (hs_store_lease_take_expired(r->store, r->node, 5000, 9000, 0, &v, &n, NULL) != HS_OK ||
		    n == 0)
			break;
		pthread_mutex_lock(r->mu);
		for (size_t i = 0; i < n; i++) {
			int k = -1;
			if (sscanf(v[i].task_id, "tr-%d", &k) == 1 && k >= 0 && k < TAKE_RACE_N)
				r->times[k]++;
			if (v[i].fence != 2 || strcmp(v[i].node_id, r->node) != 0)
				r->bad_fence = true;
		}
		pthread_mutex_unlock(r->mu);
		r->got += n;
		free(v);
	}
	return NULL;
}

/* Four survivors take a dead node's 2,500 expired leases over in batches
 * at once: each lease has exactly one taker (fence 2), none is left. */
void test_store__lease_take_expired_race_has_one_taker(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	static char names[TAKE_RACE_N][16];
	const char *ids[HS_STORE_LIST_MAX];
	for (int i = 0; i < TAKE_RACE_N; i += HS_STORE_LIST_MAX) {
		size_t m = 0;
		for (int k = i; k < TAKE_RACE_N && k < i + HS_STORE_LIST_MAX; k++) {
			snprintf(names[k], sizeof(names[k]), "tr-%05d", k);
			ids[m++] = names[k];
		}
		hs_store_lease_row *v = NULL;
		size_t n = 0;
		assert_int_equal(hs_store_lease_acquire_many(s, ids, m, "dead", 0, 1000 + i, &v, &n,
							     &err), HS_OK);
		assert_int_equal(n, m);
		free(v);
	}
	static int times[TAKE_RACE_N];
	memset(times, 0, sizeof(times));
	pthread_barrier_t go;
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_barrier_init(&go, NULL, 4);
	taker r[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i] = (taker){ .store = s, .go = &go, .mu = &mu, .times = times };
		snprintf(r[i].node, sizeof(r[i].node), "n%d", i);
		assert_int_equal(pthread_create(&th[i], NULL, take_run, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	pthread_barrier_destroy(&go);
	size_t total = 0;
	for (int i = 0; i < 4; i++) {
		assert_false(r[i].bad_fence);
		total += r[i].got;
	}
	assert_int_equal(total, TAKE_RACE_N);
	for (int k = 0; k < TAKE_RACE_N; k++)
		assert_int_equal(times[k], 1);
	hs_store_lease_row l;
	assert_int_equal(hs_store_lease_get(s, "tr-01234", &l, &err), HS_OK);
	assert_int_equal(l.fence, 2);
	assert_int_equal(l.expires_at_ms, 9000);
	assert_int_not_equal(strcmp(l.node_id, "dead"), 0);
}
