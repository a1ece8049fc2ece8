/* Nodes (store.h, "nodes and task leases"): advertise, list live nodes,
 * claim and renew a node id; a lost node's sandboxes taken over; (PostgreSQL)
 * the event announcement on harness_task_events and the listener; API keys;
 * metrics; the pool. On both backends. Task leases: test_store_leases.c. */
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

/* PostgreSQL: an appended event is announced on harness_task_events at
 * commit, with its id as the payload. */
void test_store__events_are_announced(void **state)
{
	fixture *f = *state;
	PG_ONLY(f);
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
	PG_ONLY(f);
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
