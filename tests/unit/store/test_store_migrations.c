/* SQLite migrations under failure: a migration that fails part-way leaves
 * the database exactly at its previous version (its statements and the
 * user_version bump are one transaction), and a database a crashed
 * harnessd left behind (WAL and -shm not checkpointed, in the middle of
 * its migrations or after them) opens and finishes migrating. Databases
 * of older versions are built forward from hs_store__migrations, the
 * way an older harnessd made them, never rewound by hand. */
#include "test_store.h"

extern const char *const hs_store__migrations[];

/* Migration 4 calls the store's SQL function; a database built outside
 * the store gets a stand-in (the tables it runs on are empty here). */
static void null_normalize(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	(void)argv;
	sqlite3_result_null(ctx);
}

/* f->db_path at schema `version`: migrations 1..version on a new file. */
static void database_at(fixture *f, int version)
{
	char parent[140], sql[64];
	snprintf(parent, sizeof(parent), "%s/data", f->dir);
	assert_int_equal(mkdir(parent, 0700), 0);
	assert_int_equal(mkdir(f->data_dir, 0700), 0);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_create_function_v2(db, "hs_email_normalize", 1, SQLITE_UTF8, NULL,
						    null_normalize, NULL, NULL, NULL),
			 SQLITE_OK);
	for (int i = 0; i < version; i++)
		if (sqlite3_exec(db, hs_store__migrations[i], NULL, NULL, NULL) != SQLITE_OK)
			fail_msg("migration %d: %s", i + 1, sqlite3_errmsg(db));
	snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", version);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* One integer a query on f->db_path answers (a second connection). */
static int query_int(fixture *f, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

#define TASK_COLUMN(name) "SELECT count(*) FROM pragma_table_info('tasks') WHERE name = '" name "'"

/* Migration 6 adds eight columns to tasks, then one to task_events. With
 * that last column already there, the ninth statement fails after the
 * first eight succeeded: none of them may stay, nor the version bump. */
void test_store__failed_migration_changes_nothing(void **state)
{
	fixture *f = *state;
	SQLITE_ONLY(f);
	hs_error err = { 0 };
	hs_store *s = NULL;
	database_at(f, 5);
	sql_exec(f->db_path, "ALTER TABLE task_events ADD COLUMN recovery_generation INTEGER");
	assert_int_not_equal(hs_store_open(&s, f->data_dir, &err), HS_OK);
	assert_null(s);
	assert_non_null(strstr(err.msg, "recovery_generation"));
	assert_int_equal(query_int(f, "PRAGMA user_version"), 5);
	assert_int_equal(query_int(f, TASK_COLUMN("recovery_generation")), 0);
	assert_int_equal(query_int(f, TASK_COLUMN("deadline_ms")), 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM sqlite_schema WHERE name = 'nodes'"), 0);
	/* The conflict gone, the next start migrates the rest. */
	sql_exec(f->db_path, "ALTER TABLE task_events DROP COLUMN recovery_generation");
	open_store(f);
	int v = 0;
	assert_int_equal(hs_store_schema_version(f->store, &v, &err), HS_OK);
	assert_int_equal(v, hs_store_schema_version_latest());
	assert_int_equal(query_int(f, TASK_COLUMN("deadline_ms")), 1);
}

/* A harnessd killed right after it migrated: its WAL and -shm stay, never
 * checkpointed. The next start reads the WAL and has nothing to do. */
void test_store__database_a_crash_left_opens(void **state)
{
	fixture *f = *state;
	SQLITE_ONLY(f);
	hs_error err = { 0 };
	char wal[sizeof(f->db_path) + 8];
	database_at(f, 3);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		hs_store *s = NULL;
		_exit(hs_store_open(&s, f->data_dir, NULL) == HS_OK ? 0 : 1); /* no close */
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	snprintf(wal, sizeof(wal), "%s-wal", f->db_path);
	struct stat st;
	assert_int_equal(stat(wal, &st), 0);
	assert_true(st.st_size > 0); /* the migrations are in the WAL only */
	open_store(f);
	int v = 0;
	assert_int_equal(hs_store_schema_version(f->store, &v, &err), HS_OK);
	assert_int_equal(v, hs_store_schema_version_latest());
	assert_int_equal(query_int(f, TASK_COLUMN("deadline_ms")), 1);
	assert_int_equal(query_int(f, "SELECT count(*) FROM pragma_table_info('sandboxes') "
				      "WHERE name = 'node_id'"),
			 1);
}
