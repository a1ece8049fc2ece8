/* Shared fixture and row builders for the store's unit tests (test_store.c:
 * open, migrations, users, tokens; test_store_rows.c: sandboxes, snapshots,
 * tasks, events, concurrency, readiness; test_store_heartbeat.c: heartbeat
 * group commit; test_store_cluster.c: nodes, events across nodes, API keys;
 * test_store_leases.c: task leases; test_store_migrations.c: migrations
 * that fail part-way, databases a crash left). */
#ifndef HS_TEST_STORE_H
#define HS_TEST_STORE_H

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "log.h"
#include "store.h"

typedef struct fixture {
	char dir[64];
	char data_dir[128];
	char db_path[160];
	hs_store *store;
	/* PostgreSQL run (HS_TEST_STORE_PG set): every test gets a schema of
	 * its own in that database, and dsn points the store at it. */
	bool pg;
	char schema[64];
	char dsn[1024];
} fixture;

/* The same suite runs on both backends: SQLite by default, PostgreSQL when
 * HS_TEST_STORE_PG holds a libpq URI (tests/pg/pgtest.sh starts one; ctest
 * runs it as unit.store.postgres). */
extern const char *test_pg_base;

/* A fresh temporary dir per test; data_dir (nested, missing) inside it
 * (and on PostgreSQL a fresh schema). */
int setup(void **state);
int teardown(void **state);
/* (Re)open f->store on f->data_dir; fails the test on error. */
hs_store *open_store(fixture *f);
void sql_exec(const char *path, const char *sql);
/* Run SQL on the test's PostgreSQL schema (fails the test on error). */
void pg_exec(fixture *f, const char *sql);
/* A second connection to the test's schema (PQfinish it). */
PGconn *pg_connect(fixture *f);
/* Run SQL on a connection from pg_connect (fails the test on error). */
void pg_exec_on(PGconn *c, const char *sql);
/* Tests about SQLite's own file, pragmas or migration history. */
#define SQLITE_ONLY(f)                  \
	do {                            \
		if ((f)->pg) {          \
			skip();         \
			return;         \
		}                       \
	} while (0)
/* Tests of what only PostgreSQL has (NOTIFY, a pool, concurrent writers). */
#define PG_ONLY(f)                      \
	do {                            \
		if (!(f)->pg) {         \
			skip();         \
			return;         \
		}                       \
	} while (0)
void make_user(hs_store_user_row *u, const char *id, const char *email);
void make_token(hs_store_refresh_row *r, const char *hash, const char *user, const char *family);
/* calloc'd rows: free() them. */
hs_store_sandbox_row *make_sandbox(const char *id, const char *owner, int state);
hs_store_task_row *make_task(const char *id, const char *owner, int state);

void test_store__failed_migration_changes_nothing(void **state);
void test_store__database_a_crash_left_opens(void **state);
void test_store__sandbox_crud_and_filters(void **state);
void test_store__sandbox_list_newest_first_stable_cursor(void **state);
void test_store__snapshots(void **state);
void test_store__task_crud_heartbeat_and_active(void **state);
void test_store__task_list_newest_keyset(void **state);
void test_store__task_transition_is_one_transaction(void **state);
void test_store__events_append_and_list_after(void **state);
void test_store__concurrent_writers(void **state);
void test_store__check_writable_fails_on_readonly_file(void **state);
/* test_store_cluster.c: nodes and task leases */
void test_store__nodes_advertise_and_expire(void **state);
void test_store__node_claim_refuses_a_live_holder(void **state);
void test_store__sandbox_take_lost_once(void **state);
void test_store__sandbox_adopt_unowned_once(void **state);
void test_store__lease_acquire_renew_takeover_and_fencing(void **state);
void test_store__lease_renew_node_renews_only_what_it_holds(void **state);
void test_store__lease_acquire_many_grants_only_what_is_free(void **state);
void test_store__lease_renew_node_walks_every_chunk(void **state);
void test_store__lease_renew_node_walks_past_a_chunk_taken_over(void **state);
void test_store__pg_ids_in_byte_order_under_icu_collation(void **state);
void test_store__lease_expiry_is_not_indexed(void **state);
void test_store__lease_takeover_race_has_one_winner(void **state);
void test_store__lease_take_expired_takes_only_expired(void **state);
void test_store__lease_take_expired_race_has_one_taker(void **state);
void test_store__events_are_announced(void **state);
void test_store__apikeys(void **state);
void test_store__listener(void **state);
void test_store__metrics(void **state);
void test_store__heartbeat_hostile_details(void **state);
void test_store__pool_survives_killed_connections(void **state);
int count_event(const hs_store_event_row *e, void *payload);
/* test_store_heartbeat.c: heartbeat group commit */
void test_store__heartbeat_group_commit_many_threads(void **state);
void test_store__heartbeat_async_after_commit_and_bounded(void **state);
void test_store__heartbeat_batch_runs_in_task_id_order(void **state);
void test_store__heartbeat_batch_gives_each_caller_its_result(void **state);
void test_store__heartbeat_commit_failure_fails_the_batch(void **state);

#endif
