/* Nodes and task leases (store.h): advertise, list live nodes, lease
 * acquire / renew / takeover with fencing, fenced transitions refused once
 * the lease changed hands, racing nodes, and (PostgreSQL) the event
 * announcement on harness_task_events; API keys. On both backends. */
#include "test_store.h"

void test_store__nodes_advertise_and_expire(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_node_row a = { .node_id = "node-a", .address = "10.0.0.1:50051",
				.started_at_ms = 1, .expires_at_ms = 1000, .updated_at_ms = 1 };
	hs_store_node_row b = { .node_id = "node-b", .address = "10.0.0.2:50051",
				.started_at_ms = 2, .expires_at_ms = 3000, .updated_at_ms = 2 };
	assert_int_equal(hs_store_node_put(s, &a, &err), HS_OK);
	assert_int_equal(hs_store_node_put(s, &b, &err), HS_OK);
	hs_store_node_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(hs_store_node_list(s, 2000, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].node_id, "node-b");
	free(rows);
	a.expires_at_ms = 5000; /* renewal */
	assert_int_equal(hs_store_node_put(s, &a, &err), HS_OK);
	assert_int_equal(hs_store_node_list(s, 2000, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].node_id, "node-a");
	assert_string_equal(rows[0].address, "10.0.0.1:50051");
	free(rows);
	hs_store_node_row got;
	assert_int_equal(hs_store_node_get(s, "node-b", &got, &err), HS_OK);
	assert_int_equal(got.expires_at_ms, 3000);
	assert_int_equal(hs_store_node_delete(s, "node-b", &err), HS_OK);
	assert_int_equal(hs_store_node_delete(s, "node-b", NULL), HS_NOT_FOUND);
	assert_int_equal(hs_store_node_get(s, "node-b", &got, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_store_node_list(s, 0, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	free(rows);
}

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

/* PostgreSQL: an appended event is announced on harness_task_events at
 * commit, with its id as the payload. */
void test_store__events_are_announced(void **state)
{
	fixture *f = *state;
	if (!f->pg) {
		skip();
		return;
	}
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	PGconn *c = pg_connect(f);
	PQclear(PQexec(c, "LISTEN harness_task_events"));
	hs_store_event_row ev = { .task_id = "ann", .type = 1, .occurred_at_ms = 5 };
	int64_t id = 0;
	assert_int_equal(hs_store_event_append(s, &ev, &id, &err), HS_OK);
	PGnotify *nt = NULL;
	for (int i = 0; i < 3000 && nt == NULL; i++) {
		assert_int_equal(PQconsumeInput(c), 1);
		nt = PQnotifies(c);
		if (nt == NULL)
			usleep(10000);
	}
	assert_non_null(nt);
	assert_string_equal(nt->relname, "harness_task_events");
	assert_int_equal(strtoll(nt->extra, NULL, 10), id);
	PQfreemem(nt);
	PQfinish(c);
}

/* API keys (store.h): insert, get, list with and without revoked ones,
 * changes by seq, revoke, touch never lowers last use, count. */
void test_store__apikeys(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_apikey_row k = { 0 }, got;
	for (int i = 0; i < 3; i++) {
		memset(&k, 0, sizeof(k));
		snprintf(k.id, sizeof(k.id), "hsk_000000000000000%d", i);
		snprintf(k.name, sizeof(k.name), "svc-%d", i);
		snprintf(k.role, sizeof(k.role), "%s", i == 0 ? "admin" : "user");
		snprintf(k.secret_hash, sizeof(k.secret_hash), "%064d", i);
		snprintf(k.allowed_methods, sizeof(k.allowed_methods), "%s",
			 i == 2 ? "/harness.v1.HealthService/Heartbeat" : "");
		snprintf(k.created_by, sizeof(k.created_by), "usr_admin");
		k.created_at_ms = 100 + i;
		assert_int_equal(hs_store_apikey_insert(s, &k, &err), HS_OK);
	}
	assert_int_equal(hs_store_apikey_insert(s, &k, NULL), HS_EXISTS);
	snprintf(k.id, sizeof(k.id), "hsk_bad");
	snprintf(k.role, sizeof(k.role), "root");
	assert_int_equal(hs_store_apikey_insert(s, &k, NULL), HS_INVALID);

	assert_int_equal(hs_store_apikey_get(s, "hsk_0000000000000002", &got, &err), HS_OK);
	assert_string_equal(got.allowed_methods, "/harness.v1.HealthService/Heartbeat");
	assert_int_equal(got.revoked_at_ms, 0);
	assert_int_equal(hs_store_apikey_get(s, "hsk_none", &got, NULL), HS_NOT_FOUND);

	hs_store_apikey_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(hs_store_apikey_changes(s, 0, 0, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 3);
	int64_t last_seq = rows[2].seq;
	assert_true(rows[0].seq < rows[1].seq && rows[1].seq < rows[2].seq);
	free(rows);

	assert_int_equal(hs_store_apikey_revoke(s, "hsk_0000000000000001", 500, &got, &err), HS_OK);
	assert_int_equal(got.revoked_at_ms, 500);
	assert_true(got.seq > last_seq);
	assert_int_equal(hs_store_apikey_revoke(s, "hsk_none", 500, NULL, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_store_apikey_changes(s, last_seq, 0, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].id, "hsk_0000000000000001");
	free(rows);

	assert_int_equal(hs_store_apikey_list(s, NULL, 0, false, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 2);
	free(rows);
	assert_int_equal(hs_store_apikey_list(s, "hsk_0000000000000000", 0, true, &rows, &n, &err),
			 HS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].id, "hsk_0000000000000001");
	free(rows);
	int64_t active = 0;
	assert_int_equal(hs_store_apikey_count_active(s, &active, &err), HS_OK);
	assert_int_equal(active, 2);

	const char *ids[] = { "hsk_0000000000000000", "hsk_none", "hsk_0000000000000000" };
	int64_t times[] = { 900, 950, 800 };
	assert_int_equal(hs_store_apikey_touch(s, ids, times, 3, &err), HS_OK);
	assert_int_equal(hs_store_apikey_get(s, "hsk_0000000000000000", &got, &err), HS_OK);
	assert_int_equal(got.last_used_at_ms, 900); /* never lowered */
	/* touching does not move seq */
	assert_int_equal(hs_store_apikey_changes(s, last_seq, 0, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 1);
	free(rows);
}

/* A listener hears events appended through any connection; after its
 * connection is killed it answers UNAVAILABLE once, then reconnects and
 * says -1 (poll: something may have been missed). SQLite: it just waits. */
void test_store__listener(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_listener *l = NULL;
	int64_t max = 99;
	assert_int_equal(hs_store_listener_new(s, &l, &err), HS_OK);
	if (!f->pg) {
		assert_int_equal(hs_store_listener_wait(l, 10, &max, &err), HS_OK);
		assert_int_equal(max, 0);
		hs_store_listener_free(l);
		return;
	}
	assert_int_equal(hs_store_listener_wait(l, 10, &max, &err), HS_OK);
	assert_int_equal(max, -1); /* just connected */
	hs_store_event_row ev = { .task_id = "heard", .type = 1, .occurred_at_ms = 5 };
	int64_t id1 = 0, id2 = 0;
	assert_int_equal(hs_store_event_append(s, &ev, &id1, &err), HS_OK);
	assert_int_equal(hs_store_event_append(s, &ev, &id2, &err), HS_OK);
	max = 0;
	for (int i = 0; i < 100 && max < id2; i++) {
		int64_t m = 0;
		assert_int_equal(hs_store_listener_wait(l, 100, &m, &err), HS_OK);
		if (m > max)
			max = m;
	}
	assert_int_equal(max, id2);
	assert_int_equal(hs_store_listener_wait(l, 20, &max, &err), HS_OK);
	assert_int_equal(max, 0); /* nothing new */
	/* Kill its connection from outside. */
	pg_exec(f, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
		   "WHERE query = 'LISTEN harness_task_events' AND pid <> pg_backend_pid() "
		   "AND datname = current_database()");
	int rc = HS_OK;
	for (int i = 0; i < 600 && rc == HS_OK; i++)
		rc = hs_store_listener_wait(l, 50, &max, &err);
	assert_int_equal(rc, HS_UNAVAILABLE);
	assert_int_equal(hs_store_listener_wait(l, 10, &max, &err), HS_OK);
	assert_int_equal(max, -1);
	hs_store_listener_free(l);
	hs_store_listener_free(NULL);
}

/* The store's metrics: its backend, heartbeat group commits and (on
 * PostgreSQL) the pool; unreachable databases count as unavailable. */
void test_store__metrics(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_task_row *t = make_task("m1", "usr_1", 1);
	assert_int_equal(hs_store_task_insert(s, t, &err), HS_OK);
	free(t);
	assert_int_equal(hs_store_task_heartbeat(s, "m1", 1, 2, 0, 0, 0, NULL, 10, &err), HS_OK);
	hs_metrics *m = NULL;
	assert_int_equal(hs_metrics_new(&m, &err), HS_OK);
	assert_int_equal(hs_metrics_add(m, hs_store_collect_metrics, s, &err), HS_OK);
	size_t len = 0;
	char *text = hs_metrics_render(m, &len);
	assert_non_null(text);
	assert_non_null(strstr(text, f->pg ? "harness_store_info{backend=\"postgres\"} 1"
					  : "harness_store_info{backend=\"sqlite\"} 1"));
	assert_non_null(strstr(text, "harness_store_heartbeats_total 1"));
	assert_non_null(strstr(text, "harness_store_unavailable_total 0"));
	/* hotpath's histograms, on both backends: the beat's group commit */
	assert_non_null(strstr(text, "harness_store_heartbeats_per_commit_count 1\n"));
	assert_non_null(strstr(text, "harness_store_heartbeats_per_commit_sum 1\n"));
	const char *commits = strstr(text, "harness_store_commit_seconds_count ");
	assert_non_null(commits);
	assert_true(strtol(commits + strlen("harness_store_commit_seconds_count "), NULL, 10) >= 1);
	if (f->pg) {
		assert_non_null(strstr(text, "harness_store_pool_connections{state=\"idle\"} 1"));
		assert_non_null(strstr(text, "harness_store_pool_waits_total"));
	}
	free(text);
	hs_metrics_remove(m, hs_store_collect_metrics, s);
	hs_metrics_free(m);
}

/* Hostile heartbeat details: quotes, backslashes, braces and commas (the
 * PostgreSQL batch sends them inside array literals) round-trip exactly;
 * bytes that are not UTF-8 are refused by PostgreSQL as INVALID (SQLite
 * stores them), and the store goes on. */
void test_store__heartbeat_hostile_details(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_task_row *t = make_task("hd1", "usr_1", 1);
	assert_int_equal(hs_store_task_insert(s, t, &err), HS_OK);
	free(t);
	const char *nasty = "a\"b\\c{d},e 'f' NULL \"\" \\\\ {}";
	assert_int_equal(hs_store_task_heartbeat(s, "hd1", 3, 9, 1.25, 2.5, 1e300, nasty, 10, &err),
			 HS_OK);
	hs_store_task_row got;
	assert_int_equal(hs_store_task_get(s, "hd1", &got, &err), HS_OK);
	assert_string_equal(got.details, nasty);
	assert_true(got.cpu_usage == 1.25 && got.memory_usage_mb == 2.5 && got.disk_usage_mb == 1e300);
	int rc = hs_store_task_heartbeat(s, "hd1", 4, 9, 0, 0, 0, "bad \xff\xfe utf-8", 11, &err);
	assert_int_equal(rc, f->pg ? HS_INVALID : HS_OK);
	assert_int_equal(hs_store_task_heartbeat(s, "hd1", 5, 9, 0, 0, 0, "fine", 12, &err), HS_OK);
	assert_int_equal(hs_store_task_get(s, "hd1", &got, &err), HS_OK);
	assert_int_equal(got.current_step, 5);
}

/* PostgreSQL: pooled connections the server ended meanwhile (a restart,
 * an administrator, an idle timeout) cost no call: one already closed is
 * noticed when taken; one the server is still closing fails its first
 * statement, which is run again on a new connection when it has no effect
 * of its own (SELECT, BEGIN: reads and every transaction). */
static void kill_pool(fixture *f)
{
	/* Only this test's database: other tests' harnessd share the
	 * fixture's server (integration.postgres.flows, integration.nodes). */
	PGconn *c = pg_connect(f);
	PGresult *r = PQexec(c, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
				"WHERE application_name = 'harnessd' AND pid <> pg_backend_pid() "
				"AND datname = current_database()");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_true(strtol(PQgetvalue(r, 0, 0), NULL, 10) >= 1);
	PQclear(r);
	PQfinish(c);
}

void test_store__pool_survives_killed_connections(void **state)
{
	fixture *f = *state;
	if (!f->pg) {
		skip();
		return;
	}
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	int64_t n = 0;
	assert_int_equal(hs_store_user_count(s, &n, &err), HS_OK);
	kill_pool(f);
	if (hs_store_user_count(s, &n, &err) != HS_OK) /* a read */
		fail_msg("read after the kill: %s", err.msg);
	kill_pool(f);
	if (hs_store_check_writable(s, &err) != HS_OK) /* a transaction */
		fail_msg("transaction after the kill: %s", err.msg);
	kill_pool(f);
	hs_store_task_row *t = make_task("pk1", "usr_1", 1);
	hs_store_event_row ev = { .task_id = "pk1", .type = 1, .occurred_at_ms = 1 };
	if (hs_store_task_transition(s, t, true, &ev, NULL, &err) != HS_OK)
		fail_msg("transition after the kill: %s", err.msg);
	free(t);
	assert_int_equal(hs_store_task_get(s, "pk1", &(hs_store_task_row){ 0 }, &err), HS_OK);
}

void test_store__node_claim_refuses_a_live_holder(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_node_row a = { .node_id = "node-a", .address = "10.0.0.1:50051",
				.started_at_ms = 100, .expires_at_ms = 1100, .updated_at_ms = 100 };
	hs_store_node_row holder;
	assert_int_equal(hs_store_node_claim(s, &a, 100, &holder, &err), HS_OK);
	/* A second process as node-a while the row is live: refused, told who. */
	hs_store_node_row dup = a;
	snprintf(dup.address, sizeof(dup.address), "10.0.0.9:50051");
	dup.started_at_ms = 500;
	dup.expires_at_ms = 1500;
	memset(&holder, 0, sizeof(holder));
	assert_int_equal(hs_store_node_claim(s, &dup, 500, &holder, &err), HS_EXISTS);
	assert_string_equal(holder.address, "10.0.0.1:50051");
	assert_non_null(strstr(err.msg, "node-a"));
	assert_non_null(strstr(err.msg, "10.0.0.1:50051"));
	hs_store_node_row got;
	assert_int_equal(hs_store_node_get(s, "node-a", &got, &err), HS_OK);
	assert_string_equal(got.address, "10.0.0.1:50051");
	assert_int_equal(got.expires_at_ms, 1100);
	/* Once the row expired (kill -9, or a clean stop's expiry): granted. */
	dup.started_at_ms = 1100;
	dup.expires_at_ms = 2100;
	assert_int_equal(hs_store_node_claim(s, &dup, 1100, NULL, &err), HS_OK);
	assert_int_equal(hs_store_node_get(s, "node-a", &got, &err), HS_OK);
	assert_string_equal(got.address, "10.0.0.9:50051");
	assert_int_equal(got.expires_at_ms, 2100);
	/* The paused first process resumes: its renewal is refused (the row
	 * is another incarnation's) and writes nothing; the new one renews. */
	a.expires_at_ms = 9000;
	assert_int_equal(hs_store_node_renew(s, &a, &err), HS_CONFLICT);
	assert_non_null(strstr(err.msg, "node-a"));
	assert_int_equal(hs_store_node_get(s, "node-a", &got, &err), HS_OK);
	assert_string_equal(got.address, "10.0.0.9:50051");
	assert_int_equal(got.expires_at_ms, 2100);
	dup.expires_at_ms = 3100;
	dup.updated_at_ms = 2000;
	assert_int_equal(hs_store_node_renew(s, &dup, &err), HS_OK);
	assert_int_equal(hs_store_node_get(s, "node-a", &got, &err), HS_OK);
	assert_int_equal(got.expires_at_ms, 3100);
	assert_int_equal(got.started_at_ms, 1100);
	/* A row that went (deleted) is put back by its process's renewal. */
	assert_int_equal(hs_store_node_delete(s, "node-a", &err), HS_OK);
	assert_int_equal(hs_store_node_renew(s, &dup, &err), HS_OK);
	assert_int_equal(hs_store_node_get(s, "node-a", &got, &err), HS_OK);
	assert_string_equal(got.address, "10.0.0.9:50051");
}

void test_store__sandbox_take_lost_once(void **state)
{
	enum { RUNNING = 2, STOPPED = 4, FAILED = 5, DESTROYED = 6 };
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	/* node-a expired at 1000, node-b lives until 9000 */
	hs_store_node_row a = { .node_id = "node-a", .address = "a:1", .expires_at_ms = 1000 };
	hs_store_node_row b = { .node_id = "node-b", .address = "b:1", .expires_at_ms = 9000 };
	assert_int_equal(hs_store_node_put(s, &a, &err), HS_OK);
	assert_int_equal(hs_store_node_put(s, &b, &err), HS_OK);
	struct { const char *id, *node; int state; const char *reason; } in[] = {
		{ "sb_run", "node-a", RUNNING, "" },    { "sb_stop", "node-a", STOPPED, "" },
		{ "sb_fail", "node-a", FAILED, "oom" }, { "sb_gone", "node-a", DESTROYED, "" },
		{ "sb_b", "node-b", RUNNING, "" },      { "sb_ghost", "node-x", RUNNING, "" },
		{ "sb_one", "", RUNNING, "" },
	};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		hs_store_sandbox_row *r = make_sandbox(in[i].id, "usr_1", in[i].state);
		snprintf(r->node_id, sizeof(r->node_id), "%s", in[i].node);
		snprintf(r->failure_reason, sizeof(r->failure_reason), "%s", in[i].reason);
		r->pid = 4242;
		assert_int_equal(hs_store_sandbox_insert(s, r, &err), HS_OK);
		free(r);
	}
	hs_store_sandbox_row *rows = NULL;
	size_t n = 0;
	/* node-a expired less than the grace ago: nothing yet; node-x has no
	 * row: first seen missing now (an expired row at 1500), not lost yet */
	if (hs_store_sandbox_take_lost(s, "node-c", NULL, NULL, 1500, 1500 - 1000, FAILED,
				       DESTROYED, 100, &rows, &n, &err) != HS_OK)
		fail_msg("take: %s", err.msg);
	assert_int_equal(n, 0);
	hs_store_node_row x;
	assert_int_equal(hs_store_node_get(s, "node-x", &x, &err), HS_OK);
	assert_int_equal(x.expires_at_ms, 1500);
	/* seen again later: the first time stands */
	assert_int_equal(hs_store_sandbox_take_lost(s, "node-c", NULL, NULL, 1600, 1600 - 1000,
						    FAILED, DESTROYED, 100, &rows, &n, &err),
			 HS_OK);
	assert_int_equal(n, 0);
	assert_int_equal(hs_store_node_get(s, "node-x", &x, &err), HS_OK);
	assert_int_equal(x.expires_at_ms, 1500);
	/* One named row only */
	assert_int_equal(hs_store_sandbox_take_lost(s, "node-c", "sb_run", "/run/c", 2500, 1200,
						    FAILED, DESTROYED, 100, &rows, &n, &err),
			 HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].sandbox_id, "sb_run");
	assert_string_equal(rows[0].runtime_dir, "/run/c/sb_run");
	assert_string_equal(rows[0].log_path, "/run/c/sb_run/sandbox.log");
	free(rows);
	/* The rest of node-a's, once, a batch at a time: node-c takes them,
	 * node-d finds none */
	assert_int_equal(hs_store_sandbox_take_lost(s, "node-c", NULL, "/run/c", 2500, 1200,
						    FAILED, DESTROYED, 1, &rows, &n, &err),
			 HS_OK);
	assert_int_equal(n, 1);
	free(rows);
	assert_int_equal(hs_store_sandbox_take_lost(s, "node-c", NULL, "/run/c", 2500, 1200,
						    FAILED, DESTROYED, 1, &rows, &n, &err),
			 HS_OK);
	assert_int_equal(n, 1);
	free(rows);
	assert_int_equal(hs_store_sandbox_take_lost(s, "node-c", NULL, "/run/c", 2500, 1200,
						    FAILED, DESTROYED, 1, &rows, &n, &err),
			 HS_OK);
	assert_int_equal(n, 0);
	assert_null(rows);
	hs_store_node_row c = { .node_id = "node-c", .address = "c:1", .expires_at_ms = 9000 };
	assert_int_equal(hs_store_node_put(s, &c, &err), HS_OK);
	assert_int_equal(hs_store_sandbox_take_lost(s, "node-d", NULL, "/run/d", 2500, 1200,
						    FAILED, DESTROYED, 100, &rows, &n, &err),
			 HS_OK);
	assert_int_equal(n, 0);
	assert_null(rows);
	/* By name (the task holder's recovery): a row another live node took
	 * and never ran moves, its reason kept; a row live elsewhere does not */
	assert_int_equal(hs_store_sandbox_take_lost(s, "node-d", "sb_stop", "/run/d", 2600, 1200,
						    FAILED, DESTROYED, 100, &rows, &n, &err),
			 HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].node_id, "node-d");
	assert_string_equal(rows[0].runtime_dir, "/run/d/sb_stop");
	assert_string_equal(rows[0].failure_reason, "node node-a lost");
	free(rows);
	assert_int_equal(hs_store_sandbox_take_lost(s, "node-d", "sb_b", "/run/d", 2600, 1200,
						    FAILED, DESTROYED, 100, &rows, &n, &err),
			 HS_OK);
	assert_int_equal(n, 0);
	/* node-x, missing since 1500, once the grace passed */
	assert_int_equal(hs_store_sandbox_take_lost(s, "node-d", NULL, "/run/d", 3000, 2000,
						    FAILED, DESTROYED, 100, &rows, &n, &err),
			 HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].sandbox_id, "sb_ghost");
	assert_string_equal(rows[0].node_id, "node-d");
	assert_string_equal(rows[0].failure_reason, "node node-x lost");
	free(rows);
	hs_store_sandbox_row *got = calloc(1, sizeof(*got));
	assert_non_null(got);
	struct { const char *id, *node; int state; const char *reason; } want[] = {
		{ "sb_run", "node-c", FAILED, "node node-a lost" },
		{ "sb_stop", "node-d", FAILED, "node node-a lost" },
		{ "sb_fail", "node-c", FAILED, "node node-a lost (failed before: oom)" },
		{ "sb_gone", "node-a", DESTROYED, "" },
		{ "sb_b", "node-b", RUNNING, "" },
		{ "sb_one", "", RUNNING, "" },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(hs_store_sandbox_get(s, want[i].id, got, &err), HS_OK);
		assert_string_equal(got->node_id, want[i].node);
		assert_int_equal(got->state, want[i].state);
		assert_string_equal(got->failure_reason, want[i].reason);
		if (strcmp(want[i].node, "node-c") == 0) {
			assert_int_equal(got->pid, 0);
			assert_int_equal(got->stopped_at_ms, 2500);
			/* the taker's paths, stored: a restart never loads node-a's */
			char want_dir[64];
			snprintf(want_dir, sizeof(want_dir), "/run/c/%s", want[i].id);
			assert_string_equal(got->runtime_dir, want_dir);
		}
	}
	free(got);
}

void test_store__sandbox_adopt_unowned_once(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	const char *ids[] = { "sb_old1", "sb_old2", "sb_a" };
	const char *nodes[] = { "", "", "node-a" };
	for (size_t i = 0; i < 3; i++) {
		hs_store_sandbox_row *r = make_sandbox(ids[i], "usr_1", 2);
		snprintf(r->node_id, sizeof(r->node_id), "%s", nodes[i]);
		assert_int_equal(hs_store_sandbox_insert(s, r, &err), HS_OK);
		free(r);
	}
	size_t n = 99;
	assert_int_equal(hs_store_sandbox_adopt_unowned(s, "node-b", &n, &err), HS_OK);
	assert_int_equal(n, 2);
	assert_int_equal(hs_store_sandbox_adopt_unowned(s, "node-c", &n, &err), HS_OK);
	assert_int_equal(n, 0);
	hs_store_sandbox_row *got = calloc(1, sizeof(*got));
	assert_non_null(got);
	const char *want[] = { "node-b", "node-b", "node-a" };
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(hs_store_sandbox_get(s, ids[i], got, &err), HS_OK);
		assert_string_equal(got->node_id, want[i]);
	}
	free(got);
}
