/* PostgreSQL under a linguistic collation (ICU en-US, the order of the
 * official image's en_US.utf8): ids still come back in byte order
 * (strcmp's, SQLite's BINARY), and the lease renewal walk ends. The code
 * pages and walks with cursors it compares with strcmp(); before migration
 * 11 ("ids in byte order") a node holding leases "a" and "B" renewed "B"
 * forever. The test makes a database of its own with that collation. */
#include "test_store.h"

#include <signal.h>
#include <unistd.h>

/* Task, user and sandbox ids where en-US and byte order disagree (case,
 * punctuation), in byte order. */
static const char *const ids[] = { "-y", "0", "A_2", "B", "Z", "_x", "a",
				   "a-1", "aB", "a_b", "b.3", "z" };
enum { N_IDS = sizeof(ids) / sizeof(ids[0]) };

/* test_pg_base with its database replaced by db. */
static void dsn_for(char *out, size_t size, const char *db)
{
	const char *q = strchr(test_pg_base, '?');
	assert_non_null(q);
	const char *slash = q;
	while (slash > test_pg_base && slash[-1] != '/')
		slash--;
	assert_true(slash > test_pg_base);
	int n = snprintf(out, size, "%.*s%s%s", (int)(slash - test_pg_base), test_pg_base, db, q);
	assert_true(n > 0 && (size_t)n < size);
}

static PGconn *connect_to(const char *dsn)
{
	PGconn *c = PQconnectdb(dsn);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("postgres: %s", PQerrorMessage(c));
	return c;
}

static char *query_one(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		fail_msg("postgres: %s: %s", sql, PQerrorMessage(c));
	char *v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	assert_non_null(v);
	return v;
}

void test_store__pg_ids_in_byte_order_under_icu_collation(void **state)
{
	fixture *f = *state;
	PG_ONLY(f);
	char db[64], dsn[sizeof(f->dsn)], sql[256];
	snprintf(db, sizeof(db), "hs_collation_%d", (int)getpid());
	dsn_for(dsn, sizeof(dsn), "harness");
	PGconn *admin = connect_to(dsn);
	snprintf(sql, sizeof(sql),
		 "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' "
		 "LOCALE_PROVIDER icu ICU_LOCALE 'en-US'",
		 db);
	pg_exec_on(admin, sql);
	dsn_for(dsn, sizeof(dsn), db);
	/* The premise: this database's text order is not byte order. */
	PGconn *c = connect_to(dsn);
	char *v = query_one(c, "SELECT 'B' > 'a'");
	assert_string_equal(v, "t");
	free(v);
	PQfinish(c);

	/* Before the fix the renewal below never returned: end the test
	 * process (a failure) instead of hanging CI. */
	alarm(60);
	hs_store *s = NULL;
	hs_error err = { 0 };
	if (hs_store_open_spec(&s, dsn, NULL, &err) != HS_OK)
		fail_msg("open: %s", err.msg);

	/* Leases held by node-a, in reverse order; one of node-b's between. */
	const char *rev[N_IDS];
	for (int i = 0; i < N_IDS; i++)
		rev[i] = ids[N_IDS - 1 - i];
	hs_store_lease_row *lv = NULL, l;
	size_t n = 0;
	assert_int_equal(hs_store_lease_acquire_many(s, rev, N_IDS, "node-a", 100, 1100, &lv, &n,
						     &err), HS_OK);
	free(lv);
	assert_int_equal(hs_store_lease_acquire(s, "Ab", "node-b", 100, 1100, &l, &err), HS_OK);
	lv = NULL;
	int rc = hs_store_lease_renew_node(s, "node-a", 9000, &lv, &n, &err);
	if (rc != HS_OK)
		fail_msg("renew: %s", err.msg);
	assert_int_equal(n, N_IDS);
	for (int i = 0; i < N_IDS; i++) {
		assert_string_equal(lv[i].task_id, ids[i]);
		assert_int_equal(lv[i].expires_at_ms, 9000);
	}
	free(lv);

	/* Tasks, paged by task_id (3 a page) and newest first (one
	 * registered_at_ms: task_id breaks the tie): each id once, in byte
	 * order. */
	for (int i = 0; i < N_IDS; i++) {
		hs_store_task_row *t = make_task(rev[i], i % 2 ? "usr_1" : "usr_2", 1);
		assert_int_equal(hs_store_task_insert(s, t, &err), HS_OK);
		free(t);
	}
	char after[HS_STORE_ID_MAX] = "";
	int seen = 0;
	for (int page = 0; page <= N_IDS; page++) {
		hs_store_task_filter tf = HS_STORE_TASK_FILTER_INIT;
		hs_store_task_row *tv = NULL;
		tf.after_id = after;
		tf.limit = 3;
		assert_int_equal(hs_store_task_list(s, &tf, &tv, &n, &err), HS_OK);
		for (size_t i = 0; i < n; i++, seen++) {
			assert_true(seen < N_IDS);
			assert_string_equal(tv[i].task_id, ids[seen]);
		}
		if (n > 0)
			snprintf(after, sizeof(after), "%s", tv[n - 1].task_id);
		free(tv);
		if (n == 0)
			break;
	}
	assert_int_equal(seen, N_IDS);
	seen = 0;
	hs_store_task_page tp = { .owner = NULL, .state = -1, .limit = 3 };
	for (int page = 0; page <= N_IDS; page++) {
		hs_store_task_row *tv = NULL;
		assert_int_equal(hs_store_task_list_newest(s, &tp, &tv, &n, &err), HS_OK);
		for (size_t i = 0; i < n; i++, seen++) {
			assert_true(seen < N_IDS);
			assert_string_equal(tv[i].task_id, ids[seen]);
		}
		if (n > 0) {
			snprintf(after, sizeof(after), "%s", tv[n - 1].task_id);
			tp.has_cursor = true;
			tp.after_reg_ms = tv[n - 1].registered_at_ms;
			tp.after_id = after;
		}
		free(tv);
		if (n == 0)
			break;
	}
	assert_int_equal(seen, N_IDS);

	/* Users, paged by id. */
	for (int i = 0; i < N_IDS; i++) {
		hs_store_user_row u;
		char email[64];
		snprintf(email, sizeof(email), "u%d@example.com", i);
		make_user(&u, rev[i], email);
		assert_int_equal(hs_store_user_insert(s, &u, &err), HS_OK);
	}
	after[0] = '\0';
	seen = 0;
	for (int page = 0; page <= N_IDS; page++) {
		hs_store_user_row *uv = NULL;
		assert_int_equal(hs_store_user_list(s, after, 5, &uv, &n, &err), HS_OK);
		for (size_t i = 0; i < n; i++, seen++) {
			assert_true(seen < N_IDS);
			assert_string_equal(uv[i].id, ids[seen]);
		}
		if (n > 0)
			snprintf(after, sizeof(after), "%s", uv[n - 1].id);
		free(uv);
		if (n == 0)
			break;
	}
	assert_int_equal(seen, N_IDS);

	/* Sandboxes, newest first (one created_at_ms: sandbox_id descending
	 * breaks the tie). */
	for (int i = 0; i < N_IDS; i++) {
		hs_store_sandbox_row *sb = make_sandbox(ids[i], "usr_1", 1);
		assert_int_equal(hs_store_sandbox_insert(s, sb, &err), HS_OK);
		free(sb);
	}
	seen = 0;
	hs_store_sandbox_filter sf = HS_STORE_SANDBOX_FILTER_INIT;
	sf.limit = 4;
	for (int page = 0; page <= N_IDS; page++) {
		hs_store_sandbox_row *sv = NULL;
		assert_int_equal(hs_store_sandbox_list(s, &sf, &sv, &n, &err), HS_OK);
		for (size_t i = 0; i < n; i++, seen++) {
			assert_true(seen < N_IDS);
			assert_string_equal(sv[i].sandbox_id, ids[N_IDS - 1 - seen]);
		}
		if (n > 0) {
			snprintf(after, sizeof(after), "%s", sv[n - 1].sandbox_id);
			sf.after_id = after;
			sf.after_created_at_ms = sv[n - 1].created_at_ms;
		}
		free(sv);
		if (n == 0)
			break;
	}
	assert_int_equal(seen, N_IDS);
	alarm(0);

	hs_store_free(s);
	snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", db);
	pg_exec_on(admin, sql);
	PQfinish(admin);
}
