/* Unit tests for the SQLite store (server/store): open, durability settings,
 * migrations, users and refresh-token rotation. Each test gets its own
 * temporary data dir, removed afterwards. */
#include "test_store.h"

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

const char *test_pg_base;

static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static PGconn *pg_connect_base(void)
{
	PGconn *c = PQconnectdb(test_pg_base);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("postgres: %s", PQerrorMessage(c));
	PQsetNoticeProcessor(c, quiet, NULL);
	return c;
}

void pg_exec_on(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		fail_msg("postgres: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

int setup(void **state)
{
	static int seq;
	fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/hs_store_test.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	/* Nested and missing: the store must create it. */
	snprintf(f->data_dir, sizeof(f->data_dir), "%s/data/sub", f->dir);
	snprintf(f->db_path, sizeof(f->db_path), "%s/harness.db", f->data_dir);
	if (test_pg_base != NULL) {
		char sql[128];
		f->pg = true;
		snprintf(f->schema, sizeof(f->schema), "t_%d_%d", (int)getpid(), ++seq);
		snprintf(f->dsn, sizeof(f->dsn), "%s&options=-csearch_path%%3D%s", test_pg_base,
			 f->schema);
		PGconn *c = pg_connect_base();
		snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", f->schema);
		pg_exec_on(c, sql);
		PQfinish(c);
	}
	*state = f;
	return 0;
}

int teardown(void **state)
{
	fixture *f = *state;
	hs_store_free(f->store);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (f->pg) {
		char sql[128];
		PGconn *c = pg_connect_base();
		snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", f->schema);
		pg_exec_on(c, sql);
		PQfinish(c);
	}
	free(f);
	return 0;
}

PGconn *pg_connect(fixture *f)
{
	PGconn *c = PQconnectdb(f->dsn);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("postgres: %s", PQerrorMessage(c));
	PQsetNoticeProcessor(c, quiet, NULL);
	return c;
}

void pg_exec(fixture *f, const char *sql)
{
	PGconn *c = pg_connect(f);
	pg_exec_on(c, sql);
	PQfinish(c);
}

hs_store *open_store(fixture *f)
{
	hs_error err = { 0 };
	hs_store_free(f->store);
	f->store = NULL;
	int rc = f->pg ? hs_store_open_spec(&f->store, f->dsn, NULL, &err)
		       : hs_store_open(&f->store, f->data_dir, &err);
	if (rc != HS_OK)
		fail_msg("open: %s", err.msg);
	return f->store;
}

void sql_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

int count_event(const hs_store_event_row *e, void *payload)
{
	(void)e;
	(*(int *)payload)++;
	return 0;
}

void make_user(hs_store_user_row *u, const char *id, const char *email)
{
	memset(u, 0, sizeof(*u));
	snprintf(u->id, sizeof(u->id), "%s", id);
	snprintf(u->email, sizeof(u->email), "%s", email);
	snprintf(u->name, sizeof(u->name), "Name %s", id);
	snprintf(u->role, sizeof(u->role), "user");
	snprintf(u->password_hash, sizeof(u->password_hash), "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA");
	u->created_at_ms = 1700000000000;
}

void make_token(hs_store_refresh_row *r, const char *hash, const char *user, const char *family)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->token_hash, sizeof(r->token_hash), "%s", hash);
	snprintf(r->user_id, sizeof(r->user_id), "%s", user);
	snprintf(r->family_id, sizeof(r->family_id), "%s", family);
	r->issued_at_ms = 1000;
	r->expires_at_ms = 5000;
}

hs_store_sandbox_row *make_sandbox(const char *id, const char *owner, int state)
{
	hs_store_sandbox_row *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	snprintf(r->sandbox_id, sizeof(r->sandbox_id), "%s", id);
	snprintf(r->owner, sizeof(r->owner), "%s", owner);
	snprintf(r->driver, sizeof(r->driver), "bwrap");
	snprintf(r->config_json, sizeof(r->config_json), "{\"entrypoint\":[\"sh\"]}");
	snprintf(r->labels_json, sizeof(r->labels_json), "{}");
	r->state = state;
	r->pid_start_time = UINT64_C(1) << 40;
	r->created_at_ms = 42;
	return r;
}

hs_store_task_row *make_task(const char *id, const char *owner, int state)
{
	hs_store_task_row *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	snprintf(r->task_id, sizeof(r->task_id), "%s", id);
	snprintf(r->owner, sizeof(r->owner), "%s", owner);
	r->state = state;
	r->total_steps = 10;
	r->heartbeat_interval_ms = 1000;
	r->heartbeat_timeout_ms = 5000;
	r->policy_multiplier = 2.5;
	r->registered_at_ms = 7;
	snprintf(r->labels_json, sizeof(r->labels_json), "{\"k\":\"v\"}");
	return r;
}

/* ---- open, durability, migrations ---------------------------------------- */

static void test_store__open_creates_file_and_enables_wal(void **state)
{
	fixture *f = *state;
	SQLITE_ONLY(f);
	hs_error err = { 0 };
	struct stat st;
	open_store(f);
	assert_int_equal(stat(f->data_dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(f->db_path, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);

	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
	sqlite3_finalize(q);
	sqlite3_close(db);

	int v = -1;
	assert_int_equal(hs_store_schema_version(f->store, &v, &err), HS_OK);
	assert_int_equal(v, hs_store_schema_version_latest());
	assert_true(v >= 1);
	assert_int_equal(hs_store_check_writable(f->store, &err), HS_OK);
}

static void test_store__open_rejects_bad_args(void **state)
{
	fixture *f = *state;
	hs_error err = { 0 };
	hs_store *s = NULL;
	assert_int_equal(hs_store_open(&s, "", &err), HS_INVALID);
	assert_null(s);
	/* data_dir is a regular file */
	char file[200];
	snprintf(file, sizeof(file), "%s/plain", f->dir);
	FILE *fp = fopen(file, "w");
	assert_non_null(fp);
	fclose(fp);
	hs_error_clear(&err);
	assert_int_equal(hs_store_open(&s, file, &err), HS_UNAVAILABLE);
	assert_null(s);
	hs_store_free(NULL);
}

/* --store forms: empty = data_dir, sqlite:<file>, postgres://; anything
 * else is refused, and an unreachable PostgreSQL answers UNAVAILABLE. */
static void test_store__open_spec_forms(void **state)
{
	fixture *f = *state;
	hs_error err = { 0 };
	hs_store *s = NULL;
	char spec[256], path[200];
	assert_int_equal(hs_store_open_spec(&s, "mysql://db/x", f->data_dir, &err), HS_INVALID);
	assert_null(s);
	assert_int_equal(hs_store_open_spec(&s, "sqlite:", f->data_dir, &err), HS_INVALID);
	snprintf(path, sizeof(path), "%s/other/dir/h.db", f->dir);
	snprintf(spec, sizeof(spec), "sqlite:%s", path);
	assert_int_equal(hs_store_open_spec(&s, spec, f->data_dir, &err), HS_OK);
	assert_string_equal(hs_store_backend(s), "sqlite");
	hs_store_free(s);
	s = NULL;
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(hs_store_open_spec(&s, NULL, f->data_dir, &err), HS_OK);
	hs_store_free(s);
	s = NULL;
	assert_int_equal(stat(f->db_path, &st), 0);
	assert_true(hs_store_spec_is_postgres("postgresql://h/d"));
	assert_false(hs_store_spec_is_postgres("sqlite:/x"));
	/* Nothing listens on port 1. */
	hs_error_clear(&err);
	assert_int_equal(hs_store_open_spec(&s, "postgres://127.0.0.1:1/none?connect_timeout=2",
					    NULL, &err),
			 HS_UNAVAILABLE);
	assert_null(s);
	assert_null(strstr(err.msg, "secret"));
	if (f->pg) {
		assert_string_equal(hs_store_backend(open_store(f)), "postgres");
	}
}

static void test_store__reopen_keeps_data(void **state)
{
	fixture *f = *state;
	hs_error err = { 0 };
	hs_store_user_row u, got;
	make_user(&u, "usr_0000000000000001", "a@example.com");
	assert_int_equal(hs_store_user_insert(open_store(f), &u, &err), HS_OK);
	open_store(f); /* closes and reopens */
	assert_int_equal(hs_store_user_get_by_id(f->store, u.id, &got, &err), HS_OK);
	assert_string_equal(got.email, "a@example.com");
	assert_string_equal(got.password_hash, u.password_hash);
}

static void test_store__migrations_are_idempotent(void **state)
{
	fixture *f = *state;
	hs_error err = { 0 };
	int v1 = 0, v2 = 0;
	open_store(f);
	assert_int_equal(hs_store_schema_version(f->store, &v1, &err), HS_OK);
	open_store(f);
	open_store(f);
	assert_int_equal(hs_store_schema_version(f->store, &v2, &err), HS_OK);
	assert_int_equal(v1, v2);
	assert_int_equal(v2, hs_store_schema_version_latest());
}

static void test_store__migrates_an_empty_database(void **state)
{
	fixture *f = *state;
	SQLITE_ONLY(f);
	hs_error err = { 0 };
	int v = 0;
	char parent[140];
	snprintf(parent, sizeof(parent), "%s/data", f->dir);
	assert_int_equal(mkdir(parent, 0700), 0);
	assert_int_equal(mkdir(f->data_dir, 0700), 0);
	sql_exec(f->db_path, "CREATE TABLE unrelated(x)"); /* version 0, not WAL */
	open_store(f);
	assert_int_equal(hs_store_schema_version(f->store, &v, &err), HS_OK);
	assert_int_equal(v, hs_store_schema_version_latest());
}

static void test_store__refuses_newer_schema(void **state)
{
	fixture *f = *state;
	hs_error err = { 0 };
	char sql[64];
	open_store(f);
	hs_store_free(f->store);
	f->store = NULL;
	hs_store *s = NULL;
	if (f->pg) {
		snprintf(sql, sizeof(sql), "UPDATE harness_schema SET version = %d",
			 hs_store_schema_version_latest() + 1);
		pg_exec(f, sql);
		assert_int_equal(hs_store_open_spec(&s, f->dsn, NULL, &err), HS_CONFLICT);
		assert_null(s);
		assert_non_null(strstr(err.msg, "newer"));
		return;
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", hs_store_schema_version_latest() + 1);
	sql_exec(f->db_path, sql);
	assert_int_equal(hs_store_open(&s, f->data_dir, &err), HS_CONFLICT);
	assert_null(s);
	assert_non_null(strstr(err.msg, "newer"));
}

/* A version-1 database (the first migration only) with rows: opening it
 * adds stopped_at_ms (0), base_snapshot_id (the newest full snapshot before
 * each diff, "" for full ones) and the newest-first index. */
extern const char *const hs_store__migrations[];

static void test_store__migrates_v1_sandboxes_and_snapshots(void **state)
{
	fixture *f = *state;
	SQLITE_ONLY(f);
	hs_error err = { 0 };
	char parent[140];
	snprintf(parent, sizeof(parent), "%s/data", f->dir);
	assert_int_equal(mkdir(parent, 0700), 0);
	assert_int_equal(mkdir(f->data_dir, 0700), 0);
	sql_exec(f->db_path, hs_store__migrations[0]);
	sql_exec(f->db_path,
		 "PRAGMA user_version=1;"
		 "INSERT INTO sandboxes(sandbox_id, owner, state, created_at_ms) VALUES"
		 " ('sb-old', 'usr_1', 6, 10), ('sb-new', 'usr_1', 2, 20);"
		 "INSERT INTO snapshots(snapshot_id, sandbox_id, type, created_at_ms) VALUES"
		 " ('s1', 'sb-old', 'full', 1), ('s2', 'sb-old', 'diff', 2),"
		 " ('s3', 'sb-old', 'full', 3), ('s4', 'sb-old', 'diff', 3),"
		 " ('s5', 'sb-new', 'diff', 1);");
	open_store(f);
	int v = 0;
	assert_int_equal(hs_store_schema_version(f->store, &v, &err), HS_OK);
	assert_int_equal(v, hs_store_schema_version_latest());
	hs_store_snapshot_row snap;
	static const char *const base[][2] = { { "s1", "" }, { "s2", "s1" }, { "s3", "" },
					       { "s4", "s3" }, { "s5", "" } };
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(hs_store_snapshot_get(f->store, base[i][0], &snap, &err), HS_OK);
		assert_string_equal(snap.base_snapshot_id, base[i][1]);
	}
	hs_store_sandbox_row *rows = NULL;
	size_t n = 0;
	hs_store_sandbox_filter flt = HS_STORE_SANDBOX_FILTER_INIT;
	assert_int_equal(hs_store_sandbox_list(f->store, &flt, &rows, &n, &err), HS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].sandbox_id, "sb-new");
	assert_int_equal(rows[1].stopped_at_ms, 0);
	free(rows);
	/* the list is served by the index, not a sort */
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	bool sorted = false, indexed = false;
	assert_int_equal(sqlite3_open(f->db_path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "EXPLAIN QUERY PLAN SELECT sandbox_id FROM sandboxes "
					    "WHERE (?1 IS NULL OR (created_at_ms, sandbox_id) < (?2, ?1)) "
					    "ORDER BY created_at_ms DESC, sandbox_id DESC LIMIT 10",
					    -1, &q, NULL),
			 SQLITE_OK);
	while (sqlite3_step(q) == SQLITE_ROW) {
		const char *d = (const char *)sqlite3_column_text(q, 3);
		sorted = sorted || strstr(d, "TEMP B-TREE") != NULL;
		indexed = indexed || strstr(d, "sandboxes_created") != NULL;
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	assert_false(sorted);
	assert_true(indexed);
}

/* ---- users --------------------------------------------------------------- */

static void test_store__user_crud(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_user_row u, got;
	int64_t n = -1;

	make_user(&u, "usr_00000000000000aa", "Alice@Example.COM");
	snprintf(u.role, sizeof(u.role), "admin");
	assert_int_equal(hs_store_user_insert(s, &u, &err), HS_OK);
	assert_int_equal(hs_store_user_get_by_email(s, "ALICE@example.com", &got, &err), HS_OK);
	assert_string_equal(got.id, u.id);
	assert_string_equal(got.email, "alice@example.com");
	assert_string_equal(got.role, "admin");
	assert_false(got.disabled);
	assert_int_equal(got.created_at_ms, u.created_at_ms);
	assert_int_equal(hs_store_user_count(s, &n, &err), HS_OK);
	assert_int_equal(n, 1);

	/* duplicate email (other case) and duplicate id */
	hs_store_user_row dup;
	make_user(&dup, "usr_00000000000000bb", "alice@EXAMPLE.com");
	hs_error_clear(&err);
	assert_int_equal(hs_store_user_insert(s, &dup, &err), HS_EXISTS);
	assert_null(strstr(err.msg, "alice")); /* no values in messages */
	make_user(&dup, "usr_00000000000000aa", "other@example.com");
	assert_int_equal(hs_store_user_insert(s, &dup, NULL), HS_EXISTS);

	/* not found, bad role, too long, empty */
	memset(&got, 0x5a, sizeof(got));
	assert_int_equal(hs_store_user_get_by_id(s, "usr_missing", &got, &err), HS_NOT_FOUND);
	assert_int_equal((unsigned char)got.id[0], 0x5a); /* *out untouched */
	assert_int_equal(hs_store_user_get_by_email(s, "nobody@example.com", &got, NULL), HS_NOT_FOUND);
	make_user(&dup, "usr_00000000000000cc", "c@example.com");
	snprintf(dup.role, sizeof(dup.role), "root");
	assert_int_equal(hs_store_user_insert(s, &dup, NULL), HS_INVALID);
	char long_email[HS_STORE_NAME_MAX + 10];
	memset(long_email, 'a', sizeof(long_email) - 1);
	long_email[sizeof(long_email) - 1] = '\0';
	assert_int_equal(hs_store_user_get_by_email(s, long_email, &got, NULL), HS_INVALID);
	assert_int_equal(hs_store_user_get_by_id(s, "", &got, NULL), HS_INVALID);
	make_user(&dup, "usr_00000000000000dd", "d@example.com");
	memset(dup.name, 'n', sizeof(dup.name)); /* not terminated: too long */
	hs_error_clear(&err);
	assert_int_equal(hs_store_user_insert(s, &dup, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "name"));
}

static void test_store__user_list_pages_in_id_order(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	for (int i = 0; i < 25; i++) {
		int k = (i * 7) % 25; /* inserted out of order */
		char id[32], email[64];
		snprintf(id, sizeof(id), "usr_%016d", k);
		snprintf(email, sizeof(email), "u%d@example.com", k);
		hs_store_user_row u;
		make_user(&u, id, email);
		assert_int_equal(hs_store_user_insert(s, &u, &err), HS_OK);
	}
	char cursor[HS_STORE_ID_MAX] = "";
	int seen = 0;
	for (int page = 0; page < 4; page++) {
		hs_store_user_row *rows = NULL;
		size_t n = 99;
		assert_int_equal(hs_store_user_list(s, cursor, 10, &rows, &n, &err), HS_OK);
		assert_int_equal(n, page < 2 ? 10 : (page == 2 ? 5 : 0));
		for (size_t i = 0; i < n; i++) {
			char want[32];
			snprintf(want, sizeof(want), "usr_%016d", seen++);
			assert_string_equal(rows[i].id, want);
		}
		if (n > 0)
			snprintf(cursor, sizeof(cursor), "%s", rows[n - 1].id);
		else
			assert_null(rows);
		free(rows);
	}
	assert_int_equal(seen, 25);
}

/* ---- refresh tokens ------------------------------------------------------ */

static void add_user(hs_store *s, const char *id)
{
	hs_store_user_row u;
	char email[64];
	snprintf(email, sizeof(email), "%s@example.com", id);
	make_user(&u, id, email);
	assert_int_equal(hs_store_user_insert(s, &u, NULL), HS_OK);
}

static void test_store__refresh_consume_twice_is_reuse(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_refresh_row t, got;
	add_user(s, "usr_1");
	make_token(&t, "aa11", "usr_1", "fam_1");
	assert_int_equal(hs_store_refresh_insert(s, &t, &err), HS_OK);
	assert_int_equal(hs_store_refresh_insert(s, &t, &err), HS_EXISTS);
	assert_int_equal(hs_store_refresh_consume(s, "aa11", 2000, &err), HS_OK);
	hs_error_clear(&err);
	assert_int_equal(hs_store_refresh_consume(s, "aa11", 2001, &err), HS_CONFLICT);
	assert_null(strstr(err.msg, "aa11")); /* never the hash in a message */
	assert_int_equal(hs_store_refresh_get(s, "aa11", &got, &err), HS_OK);
	assert_int_equal(got.used_at_ms, 2000);
	assert_string_equal(got.family_id, "fam_1");
	assert_int_equal(hs_store_refresh_consume(s, "bb22", 2000, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_store_refresh_get(s, "bb22", &got, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_store_refresh_consume(s, "aa11", 0, NULL), HS_INVALID);

	/* token of an unknown user: foreign key */
	make_token(&t, "cc33", "usr_ghost", "fam_2");
	assert_int_equal(hs_store_refresh_insert(s, &t, NULL), HS_NOT_FOUND);
}

static void test_store__refresh_revoke_family_and_expiry(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_error err = { 0 };
	hs_store_refresh_row t;
	int64_t n = -1;
	add_user(s, "usr_1");
	const char *fam_a[] = { "a1", "a2", "a3" };
	for (int i = 0; i < 3; i++) {
		make_token(&t, fam_a[i], "usr_1", "fam_a");
		assert_int_equal(hs_store_refresh_insert(s, &t, &err), HS_OK);
	}
	make_token(&t, "b1", "usr_1", "fam_b");
	t.expires_at_ms = 9000;
	assert_int_equal(hs_store_refresh_insert(s, &t, &err), HS_OK);

	assert_int_equal(hs_store_refresh_revoke_family(s, "fam_a", &n, &err), HS_OK);
	assert_int_equal(n, 3);
	assert_int_equal(hs_store_refresh_consume(s, "a2", 10, NULL), HS_CONFLICT);
	assert_int_equal(hs_store_refresh_revoke_family(s, "fam_none", &n, &err), HS_OK);
	assert_int_equal(n, 0);

	assert_int_equal(hs_store_refresh_revoke(s, "b1", &err), HS_OK);
	assert_int_equal(hs_store_refresh_consume(s, "b1", 10, NULL), HS_CONFLICT);
	assert_int_equal(hs_store_refresh_revoke(s, "zz", NULL), HS_NOT_FOUND);

	assert_int_equal(hs_store_refresh_delete_expired(s, 5000, &n, &err), HS_OK);
	assert_int_equal(n, 3);
	assert_int_equal(hs_store_refresh_get(s, "a1", &t, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_store_refresh_get(s, "b1", &t, NULL), HS_OK);
	assert_true(t.revoked);
}

/* Task ids are claimed once: the first owner wins, later claims learn who
 * it is; a v2 database's registered tasks arrive claimed by their owner. */
extern const char *const hs_store__pg_migrations[];

static void test_store__task_claims_first_owner_wins(void **state)
{
	fixture *f = *state;
	hs_error err = { 0 };
	const char *old_task = "INSERT INTO tasks(task_id, owner, state, registered_at_ms) VALUES"
			       " ('old', 'usr_a', 1, 5);";
	if (f->pg) {
		pg_exec(f, hs_store__pg_migrations[0]);
		pg_exec(f, hs_store__pg_migrations[1]);
		pg_exec(f, "CREATE TABLE harness_schema (id INTEGER PRIMARY KEY, version INTEGER);"
			   "INSERT INTO harness_schema VALUES (1, 2);");
		pg_exec(f, old_task);
	} else {
		char parent[140];
		snprintf(parent, sizeof(parent), "%s/data", f->dir);
		assert_int_equal(mkdir(parent, 0700), 0);
		assert_int_equal(mkdir(f->data_dir, 0700), 0);
		sql_exec(f->db_path, hs_store__migrations[0]);
		sql_exec(f->db_path, hs_store__migrations[1]);
		sql_exec(f->db_path, "PRAGMA user_version=2;");
		sql_exec(f->db_path, old_task);
	}
	hs_store *s = open_store(f);
	char owner[HS_STORE_ID_MAX];
	assert_int_equal(hs_store_task_owner(s, "old", owner, &err), HS_OK);
	assert_string_equal(owner, "usr_a");
	assert_int_equal(hs_store_task_owner(s, "new", owner, NULL), HS_NOT_FOUND);
	assert_int_equal(hs_store_task_claim(s, "new", "usr_b", 10, owner, &err), HS_OK);
	assert_string_equal(owner, "usr_b");
	assert_int_equal(hs_store_task_claim(s, "new", "usr_a", 11, owner, &err), HS_OK);
	assert_string_equal(owner, "usr_b");
	assert_int_equal(hs_store_task_claim(s, "old", "usr_b", 12, owner, &err), HS_OK);
	assert_string_equal(owner, "usr_a");
	int64_t n = 0;
	assert_int_equal(hs_store_task_owner_count(s, "usr_b", &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_int_equal(hs_store_task_claim(s, "", "usr_b", 12, owner, &err), HS_INVALID);
}

/* Migration 4: every email takes its normal form (common/email.h) unless
 * that would collide; then the row keeping the normal form is the one that
 * already has it, else the oldest; the others keep their address. */
static void test_store__migrates_v3_emails_to_normal_forms(void **state)
{
	fixture *f = *state;
	SQLITE_ONLY(f);
	hs_store_user_row u;
	char parent[140];
	snprintf(parent, sizeof(parent), "%s/data", f->dir);
	assert_int_equal(mkdir(parent, 0700), 0);
	assert_int_equal(mkdir(f->data_dir, 0700), 0);
	for (int i = 0; i < 3; i++)
		sql_exec(f->db_path, hs_store__migrations[i]);
	sql_exec(f->db_path,
		 "PRAGMA user_version=3;"
		 "INSERT INTO users(id, email, role, created_at_ms) VALUES"
		 /* plain: re-normalised */
		 " ('u1', 'first.last+tag@gmail.com', 'user', 10),"
		 " ('u2', 'bob@example.com', 'user', 10),"
		 " ('u3', 'jane-list@yahoo.com', 'user', 10),"
		 /* a group without the normal form: the oldest takes it */
		 " ('u4', 'x.y@gmail.com', 'user', 20),"
		 " ('u5', 'xy+1@gmail.com', 'user', 10),"
		 /* a group whose normal form is held already: it stays there */
		 " ('u6', 'p.q@gmail.com', 'user', 1),"
		 " ('u7', 'pq@gmail.com', 'user', 50),"
		 /* not an address at all: left alone */
		 " ('u8', 'weird', 'user', 10);");
	hs_store *s = open_store(f);
	struct {
		const char *id, *email;
	} want[] = { { "u1", "firstlast@gmail.com" }, { "u2", "bob@example.com" },
		     { "u3", "jane@yahoo.com" },      { "u4", "x.y@gmail.com" },
		     { "u5", "xy@gmail.com" },	      { "u6", "p.q@gmail.com" },
		     { "u7", "pq@gmail.com" },	      { "u8", "weird" } };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(hs_store_user_get_by_id(s, want[i].id, &u, NULL), HS_OK);
		if (strcmp(u.email, want[i].email) != 0)
			fail_msg("%s: %s, want %s", want[i].id, u.email, want[i].email);
	}
}

static void test_store__user_disable_delete_and_revocations(void **state)
{
	fixture *f = *state;
	hs_store *s = open_store(f);
	hs_store_user_row u, got;
	hs_store_refresh_row t, tg;
	hs_error err = { 0 };
	make_user(&u, "usr_d", "d@example.com");
	assert_int_equal(hs_store_user_insert(s, &u, &err), HS_OK);
	make_token(&t, "hash-d", "usr_d", "fam-d");
	assert_int_equal(hs_store_refresh_insert(s, &t, &err), HS_OK);
	assert_int_equal(hs_store_user_set_disabled(s, "usr_d", true, &err), HS_OK);
	assert_int_equal(hs_store_user_get_by_id(s, "usr_d", &got, &err), HS_OK);
	assert_true(got.disabled);
	assert_int_equal(hs_store_user_set_disabled(s, "usr_none", true, NULL), HS_NOT_FOUND);
	int64_t n = 0;
	assert_int_equal(hs_store_refresh_revoke_user(s, "usr_d", &n, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_int_equal(hs_store_refresh_get(s, "hash-d", &tg, &err), HS_OK);
	assert_true(tg.revoked);
	assert_int_equal(hs_store_user_delete(s, "usr_d", &err), HS_OK);
	assert_int_equal(hs_store_user_delete(s, "usr_d", NULL), HS_NOT_FOUND);
	assert_int_equal(hs_store_refresh_get(s, "hash-d", &tg, NULL), HS_NOT_FOUND); /* cascade */

	hs_store_revocation_row r = { 0 }, *rows = NULL;
	size_t nr = 0;
	snprintf(r.kind, sizeof(r.kind), "session");
	snprintf(r.id, sizeof(r.id), "fam-1");
	r.revoked_at_ms = 100;
	r.expires_at_ms = 1000;
	assert_int_equal(hs_store_revocation_put(s, &r, &err), HS_OK);
	snprintf(r.kind, sizeof(r.kind), "user");
	snprintf(r.id, sizeof(r.id), "usr_x");
	r.expires_at_ms = 5000;
	assert_int_equal(hs_store_revocation_put(s, &r, &err), HS_OK);
	snprintf(r.kind, sizeof(r.kind), "nonsense");
	assert_int_equal(hs_store_revocation_put(s, &r, NULL), HS_INVALID); /* CHECK constraint */
	assert_int_equal(hs_store_revocation_list(s, 0, 500, 0, &rows, &nr, &err), HS_OK);
	assert_int_equal(nr, 2);
	assert_true(rows[0].seq < rows[1].seq);
	assert_string_equal(rows[1].kind, "user");
	int64_t after = rows[0].seq;
	free(rows);
	assert_int_equal(hs_store_revocation_list(s, after, 500, 0, &rows, &nr, &err), HS_OK);
	assert_int_equal(nr, 1);
	free(rows);
	/* expired rows are not listed, and go */
	assert_int_equal(hs_store_revocation_list(s, 0, 2000, 0, &rows, &nr, &err), HS_OK);
	assert_int_equal(nr, 1);
	free(rows);
	assert_int_equal(hs_store_revocation_delete_expired(s, 2000, &n, &err), HS_OK);
	assert_int_equal(n, 1);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	hs_log_min_level = HS_LOG_OFF;
	test_pg_base = getenv("HS_TEST_STORE_PG");
	if (test_pg_base != NULL && test_pg_base[0] == '\0')
		test_pg_base = NULL;
	const struct CMUnitTest tests[] = {
		T(test_store__open_creates_file_and_enables_wal),
		T(test_store__open_rejects_bad_args),
		T(test_store__open_spec_forms),
		T(test_store__reopen_keeps_data),
		T(test_store__migrations_are_idempotent),
		T(test_store__migrates_an_empty_database),
		T(test_store__refuses_newer_schema),
		T(test_store__user_crud),
		T(test_store__user_list_pages_in_id_order),
		T(test_store__refresh_consume_twice_is_reuse),
		T(test_store__refresh_revoke_family_and_expiry),
		T(test_store__sandbox_crud_and_filters),
		T(test_store__sandbox_list_newest_first_stable_cursor),
		T(test_store__migrates_v1_sandboxes_and_snapshots),
		T(test_store__task_claims_first_owner_wins),
		T(test_store__migrates_v3_emails_to_normal_forms),
		T(test_store__failed_migration_changes_nothing),
		T(test_store__database_a_crash_left_opens),
		T(test_store__user_disable_delete_and_revocations),
		T(test_store__snapshots),
		T(test_store__task_crud_heartbeat_and_active),
		T(test_store__task_list_newest_keyset),
		T(test_store__task_transition_is_one_transaction),
		T(test_store__events_append_and_list_after),
		T(test_store__concurrent_writers),
		T(test_store__check_writable_fails_on_readonly_file),
		T(test_store__heartbeat_group_commit_many_threads),
		T(test_store__heartbeat_batch_gives_each_caller_its_result),
		T(test_store__heartbeat_commit_failure_fails_the_batch),
		T(test_store__nodes_advertise_and_expire),
		T(test_store__node_claim_refuses_a_live_holder),
		T(test_store__sandbox_take_lost_once),
		T(test_store__sandbox_adopt_unowned_once),
		T(test_store__lease_acquire_renew_takeover_and_fencing),
		T(test_store__lease_renew_node_renews_only_what_it_holds),
		T(test_store__lease_acquire_many_grants_only_what_is_free),
		T(test_store__lease_renew_node_walks_every_chunk),
		T(test_store__lease_renew_node_walks_past_a_chunk_taken_over),
		T(test_store__pg_ids_in_byte_order_under_icu_collation),
		T(test_store__lease_expiry_is_not_indexed),
		T(test_store__lease_takeover_race_has_one_winner),
		T(test_store__lease_take_expired_takes_only_expired),
		T(test_store__lease_take_expired_race_has_one_taker),
		T(test_store__events_are_announced),
		T(test_store__apikeys),
		T(test_store__listener),
		T(test_store__metrics),
		T(test_store__heartbeat_hostile_details),
		T(test_store__pool_survives_killed_connections),
		T(test_store__heartbeat_async_after_commit_and_bounded),
		T(test_store__heartbeat_batch_runs_in_task_id_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
