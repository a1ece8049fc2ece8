/* The embedded SQLite store: opening, migrations, the statement cache and
 * the helpers the per-entity files (users.c, tokens.c, sandboxes.c, tasks.c)
 * share.
 *
 * Design
 * ------
 * Threading. One connection per process, guarded by one mutex (s->mu).
 * Every public function takes the lock for its whole duration, so a
 * multi-statement operation (BEGIN IMMEDIATE ... COMMIT, or an UPDATE
 * followed by changes()) is atomic with respect to every other thread, and
 * sqlite3_errmsg() is read before another thread can overwrite it. The
 * connection is opened SQLITE_OPEN_NOMUTEX because our mutex already
 * serialises it (SQLITE_OPEN_FULLMUTEX would only make single calls atomic,
 * not transactions). SQLite serialises writers anyway, and the rows are
 * small, so a single connection costs little; a pool of reader connections
 * (WAL allows readers beside the writer) can come later behind the same
 * header. Callbacks and returned arrays are produced after collecting the
 * rows, so callbacks run without the lock and may re-enter the store.
 * busy_timeout (5 s) only matters for other processes on the same file
 * (the sqlite3 shell, a second harnessd): inside one process nobody waits
 * on SQLite's lock, only on ours.
 *
 * Durability. "Nothing acknowledged is lost": journal_mode=WAL with
 * synchronous=FULL, so every COMMIT fsyncs the WAL before it returns
 * (synchronous=NORMAL in WAL mode may lose the last commits on power loss:
 * they are in the WAL but not yet synced). Heartbeats, the hot path, share
 * commits: concurrent callers' updates go in one transaction and each
 * caller returns after that COMMIT (group commit, described in tasks.c).
 * foreign_keys=ON. The database file is made 0600 and its directory is
 * created 0700.
 *
 * Migrations. The schema version is PRAGMA user_version. migrations.c holds
 * an array of SQL scripts: entry i takes version i to i + 1. At open, each
 * pending entry runs in its own BEGIN IMMEDIATE transaction together with
 * the user_version bump, and the version is re-read inside the transaction
 * so two processes opening at once cannot both apply it. A database whose
 * version is newer than the array is refused (HS_CONFLICT): old code must
 * not write rows it does not understand.
 *
 * Statements. Each statement is prepared once (SQLITE_PREPARE_PERSISTENT),
 * on first use, into s->stmts[id], and reset + unbound after every use.
 *
 * Errors. Every SQLite return value is checked and translated once, in
 * hs_store__fail(): constraint violations become HS_EXISTS / HS_NOT_FOUND /
 * HS_INVALID, a busy, read-only, full or failing disk HS_UNAVAILABLE, the
 * rest HS_INTERNAL. Messages carry sqlite3_errmsg() (which names columns,
 * never values); password and token hashes are never logged. */
#include "store_internal.h"
#include "clock.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "email.h"
#include "log.h"

#define BUSY_TIMEOUT_MS 5000

void hs_store__lock(hs_store *s)
{
	pthread_mutex_lock(&s->mu);
}

void hs_store__unlock(hs_store *s)
{
	pthread_mutex_unlock(&s->mu);
}

int hs_store__fail(hs_store *s, int rc, const char *op, hs_error *err)
{
	int code;
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
		if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
			code = HS_NOT_FOUND;
		else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
			code = HS_EXISTS;
		else
			code = HS_INVALID;
		break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_READONLY:
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_PROTOCOL:
		code = HS_UNAVAILABLE;
		break;
	default:
		code = HS_INTERNAL;
		break;
	}
	const char *msg = (s != NULL && s->db != NULL) ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
	if (code == HS_NOT_FOUND)
		return hs_error_set(err, code, "store: %s: referenced object does not exist (%s)", op, msg);
	if (code == HS_EXISTS)
		return hs_error_set(err, code, "store: %s: already exists (%s)", op, msg);
	return hs_error_set(err, code, "store: %s: %s", op, msg);
}

int hs_store__stmt(hs_store *s, hs_stmt_id id, const char *sql, sqlite3_stmt **out,
		   hs_error *err)
{
	if (s->stmts[id] == NULL) {
		sqlite3_stmt *st = NULL;
		int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
		if (rc != SQLITE_OK) {
			sqlite3_finalize(st);
			return hs_store__fail(s, rc, "prepare", err);
		}
		s->stmts[id] = st;
	}
	*out = s->stmts[id];
	return HS_OK;
}

void hs_store__release(sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	/* The step's error was already reported; reset repeats it. */
	(void)sqlite3_reset(st);
	(void)sqlite3_clear_bindings(st);
}

int hs_store__step_done(hs_store *s, sqlite3_stmt *st, const char *op, hs_error *err)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return HS_OK;
	if (rc == SQLITE_ROW)
		return hs_error_set(err, HS_INTERNAL, "store: %s: unexpected row", op);
	return hs_store__fail(s, rc, op, err);
}

static int run_cached(hs_store *s, hs_stmt_id id, const char *sql, const char *op, hs_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc = hs_store__stmt(s, id, sql, &st, err);
	if (rc != HS_OK)
		return rc;
	rc = hs_store__step_done(s, st, op, err);
	hs_store__release(st);
	return rc;
}

int hs_store__begin(hs_store *s, hs_error *err)
{
	return run_cached(s, HS_STMT_BEGIN, "BEGIN IMMEDIATE", "begin", err);
}

int hs_store__commit(hs_store *s, hs_error *err)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	int rc = run_cached(s, HS_STMT_COMMIT, "COMMIT", "commit", err);
	clock_gettime(CLOCK_MONOTONIC, &b);
	hs_histogram_observe(&s->m_commit_seconds, (double)(b.tv_sec - a.tv_sec) +
							   (double)(b.tv_nsec - a.tv_nsec) / 1e9);
	return rc;
}

static const double commit_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
					0.05,	0.1,   0.25,   0.5,   1,    2.5 };
static const double beats_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };

void hs_store_collect_metrics(struct hs_metrics_out *out, void *payload)
{
	hs_store *s = payload;
	hs_metrics_family(out, "harness_store_commit_seconds", "histogram",
			  "Time a store COMMIT took (fsync included).");
	hs_metrics_histogram(out, "harness_store_commit_seconds", NULL, &s->m_commit_seconds);
	hs_metrics_family(out, "harness_store_heartbeats_per_commit", "histogram",
			  "Heartbeats made durable by one group commit.");
	hs_metrics_histogram(out, "harness_store_heartbeats_per_commit", NULL,
			     &s->m_beats_per_commit);
}

void hs_store__rollback(hs_store *s)
{
	if (sqlite3_get_autocommit(s->db))
		return; /* SQLite already rolled back (e.g. after SQLITE_FULL) */
	hs_error ignored = { 0 };
	(void)run_cached(s, HS_STMT_ROLLBACK, "ROLLBACK", "rollback", &ignored);
}

int hs_store__bind_text(hs_store *s, sqlite3_stmt *st, int idx, const char *v, size_t cap,
			const char *field, hs_error *err)
{
	int rc;
	if (v == NULL) {
		rc = sqlite3_bind_null(st, idx);
	} else {
		size_t n = strnlen(v, cap);
		if (n >= cap)
			return hs_error_set(err, HS_INVALID, "store: %s is longer than %zu bytes",
					    field, cap - 1);
		rc = sqlite3_bind_text(st, idx, v, (int)n, SQLITE_STATIC);
	}
	if (rc != SQLITE_OK)
		return hs_store__fail(s, rc, "bind", err);
	return HS_OK;
}

int hs_store__bind_int(hs_store *s, sqlite3_stmt *st, int idx, int64_t v, hs_error *err)
{
	int rc = sqlite3_bind_int64(st, idx, (sqlite3_int64)v);
	return rc == SQLITE_OK ? HS_OK : hs_store__fail(s, rc, "bind", err);
}

int hs_store__bind_double(hs_store *s, sqlite3_stmt *st, int idx, double v, hs_error *err)
{
	int rc = sqlite3_bind_double(st, idx, v);
	return rc == SQLITE_OK ? HS_OK : hs_store__fail(s, rc, "bind", err);
}

int hs_store__col_text(sqlite3_stmt *st, int col, char *dst, size_t cap, const char *field,
		       hs_error *err)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	size_t n = (size_t)sqlite3_column_bytes(st, col);
	if (v == NULL) {
		dst[0] = '\0';
		return HS_OK;
	}
	if (n >= cap)
		return hs_error_set(err, HS_INTERNAL, "store: stored %s is longer than %zu bytes",
				    field, cap - 1);
	memcpy(dst, v, n);
	dst[n] = '\0';
	return HS_OK;
}

int hs_store__check_key(const char *v, size_t cap, const char *field, hs_error *err)
{
	if (v == NULL || v[0] == '\0')
		return hs_error_set(err, HS_INVALID, "store: %s is empty", field);
	if (strnlen(v, cap) >= cap)
		return hs_error_set(err, HS_INVALID, "store: %s is longer than %zu bytes", field, cap - 1);
	return HS_OK;
}

int hs_store__grow(void **arr, size_t *cap, size_t n, size_t elem, hs_error *err)
{
	if (n < *cap)
		return HS_OK;
	size_t ncap = *cap ? *cap * 2 : 16;
	void *p = reallocarray(*arr, ncap, elem);
	if (p == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	*arr = p;
	*cap = ncap;
	return HS_OK;
}

int hs_store__collect(hs_store *s, sqlite3_stmt *st, size_t elem, hs_store__row_reader read,
		      const char *what, void **out, size_t *n_out, hs_error *err)
{
	int rc;
	char *rows = NULL;
	size_t n = 0, cap = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rc = hs_store__grow((void **)&rows, &cap, n, elem, err)) != HS_OK ||
		    (rc = read(st, rows + n * elem, err)) != HS_OK)
			goto done;
		n++;
	}
	if (rc != SQLITE_DONE) {
		rc = hs_store__fail(s, rc, what, err);
		goto done;
	}
	*out = rows;
	*n_out = n;
	rows = NULL;
	rc = HS_OK;
done:
	free(rows);
	return rc;
}

int hs_store__get_one(hs_store *s, int stmt_id, const char *sql, const char *key, size_t key_cap,
		      const char *key_name, size_t elem, hs_store__row_reader read,
		      const char *not_found, void *out, hs_error *err)
{
	int rc;
	sqlite3_stmt *st = NULL;
	void *row = malloc(elem); /* some rows are several KiB: not on the stack */
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	hs_store__lock(s);
	HS_STMT(st, (hs_stmt_id)stmt_id, sql);
	HS_BIND_T(st, 1, key, key_cap, key_name);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = hs_error_set(err, HS_NOT_FOUND, "%s", not_found);
		goto done;
	}
	if (rc != SQLITE_ROW) {
		rc = hs_store__fail(s, rc, not_found, err);
		goto done;
	}
	if ((rc = read(st, row, err)) != HS_OK)
		goto done;
	memcpy(out, row, elem);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	free(row);
	return rc;
}

size_t hs_store__limit(size_t limit)
{
	if (limit == 0)
		return HS_STORE_LIST_DEFAULT;
	return limit > HS_STORE_LIST_MAX ? HS_STORE_LIST_MAX : limit;
}

/* ---- open / migrate ------------------------------------------------------ */

/* hs_email_normalize(text): the one email rule (common/email.h) for SQL,
 * used by migration 4; NULL for NULL or a string that is not an address. */
static void sql_email_normalize(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	char out[HS_EMAIL_MAX + 1];
	const unsigned char *in = argc == 1 ? sqlite3_value_text(argv[0]) : NULL;
	if (in == NULL || !hs_email_normalize((const char *)in, out, sizeof(out))) {
		sqlite3_result_null(ctx);
		return;
	}
	sqlite3_result_text(ctx, out, -1, SQLITE_TRANSIENT);
}

static int register_functions(hs_store *s, hs_error *err)
{
	int rc = sqlite3_create_function_v2(s->db, "hs_email_normalize", 1,
					    SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
					    sql_email_normalize, NULL, NULL, NULL);
	return rc == SQLITE_OK ? HS_OK : hs_store__fail(s, rc, "register SQL functions", err);
}

/* mkdir -p with mode 0700 for every directory we create. */
static int make_dirs(const char *dir, hs_error *err)
{
	char buf[HS_STORE_PATH_MAX];
	size_t n = strnlen(dir, sizeof(buf));
	if (n >= sizeof(buf))
		return hs_error_set(err, HS_INVALID, "store: data_dir is longer than %zu bytes",
				    sizeof(buf) - 1);
	memcpy(buf, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return hs_error_set(err, HS_UNAVAILABLE, "store: mkdir %s: %s", buf,
					    strerror(errno));
		buf[i] = c;
	}
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return hs_error_set(err, HS_UNAVAILABLE, "store: data_dir %s is not a directory", dir);
	return HS_OK;
}

static int pragma_int(hs_store *s, const char *sql, int *out, hs_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		rc = hs_store__fail(s, rc, "pragma", err);
		goto done;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = hs_store__fail(s, rc, "pragma", err);
		goto done;
	}
	*out = sqlite3_column_int(st, 0);
	rc = HS_OK;
done:
	sqlite3_finalize(st);
	return rc;
}

static int exec(hs_store *s, const char *sql, const char *op, hs_error *err)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? HS_OK : hs_store__fail(s, rc, op, err);
}

static int set_wal(hs_store *s, hs_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		rc = hs_store__fail(s, rc, "journal_mode", err);
		goto done;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = hs_store__fail(s, rc, "journal_mode", err);
		goto done;
	}
	const char *mode = (const char *)sqlite3_column_text(st, 0);
	if (mode == NULL || strcmp(mode, "wal") != 0) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "store: %s: cannot enable WAL (mode is %s)",
				  s->path, mode ? mode : "unknown");
		goto done;
	}
	rc = HS_OK;
done:
	sqlite3_finalize(st);
	return rc;
}

static int migrate(hs_store *s, hs_error *err)
{
	int rc, version = 0, from;
	char sql[64];
	if ((rc = pragma_int(s, "PRAGMA user_version", &version, err)) != HS_OK)
		return rc;
	from = version;
	while (version < hs_store__migration_count) {
		if ((rc = hs_store__begin(s, err)) != HS_OK)
			return rc;
		/* Another process may have migrated between our read and BEGIN. */
		if ((rc = pragma_int(s, "PRAGMA user_version", &version, err)) != HS_OK)
			goto fail;
		if (version >= hs_store__migration_count)
			break;
		if ((rc = exec(s, hs_store__migrations[version], "migration", err)) != HS_OK)
			goto fail;
		snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", version + 1);
		if ((rc = exec(s, sql, "migration", err)) != HS_OK)
			goto fail;
		if ((rc = hs_store__commit(s, err)) != HS_OK)
			goto fail;
		version++;
		continue;
	fail:
		hs_store__rollback(s);
		if (err != NULL)
			hs_log(HS_LOG_ERROR, "store", "migration failed", HS_LI("version", version + 1),
			       HS_LS("error", err->msg));
		return rc;
	}
	if (!sqlite3_get_autocommit(s->db) && (rc = hs_store__commit(s, err)) != HS_OK) {
		hs_store__rollback(s);
		return rc;
	}
	if (version > hs_store__migration_count)
		return hs_error_set(err, HS_CONFLICT,
				    "store: %s has schema version %d, newer than this harnessd knows "
				    "(%d); upgrade harnessd or restore a matching database",
				    s->path, version, hs_store__migration_count);
	if (version != from)
		hs_log(HS_LOG_INFO, "store", "schema migrated", HS_LI("from", from),
		       HS_LI("to", version));
	return HS_OK;
}

int hs_store_open(hs_store **out, const char *data_dir, hs_error *err)
{
	int rc;
	hs_store *s = NULL;
	if (out == NULL || data_dir == NULL || data_dir[0] == '\0')
		return hs_error_set(err, HS_INVALID, "store: data_dir is empty");
	if (sqlite3_threadsafe() == 0)
		return hs_error_set(err, HS_INTERNAL, "store: libsqlite3 was built without threads");
	if ((rc = make_dirs(data_dir, err)) != HS_OK)
		return rc;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		free(s);
		return hs_error_set(err, HS_INTERNAL, "store: mutex init failed");
	}
	if (pthread_mutex_init(&s->hb_mu, NULL) != 0) {
		pthread_mutex_destroy(&s->mu);
		free(s);
		return hs_error_set(err, HS_INTERNAL, "store: mutex init failed");
	}
	if (pthread_cond_init(&s->hb_cv, NULL) != 0) {
		pthread_mutex_destroy(&s->hb_mu);
		pthread_mutex_destroy(&s->mu);
		free(s);
		return hs_error_set(err, HS_INTERNAL, "store: condition variable init failed");
	}
	hs_histogram_init(&s->m_commit_seconds, commit_bounds,
			  sizeof(commit_bounds) / sizeof(commit_bounds[0]), 1e6);
	hs_histogram_init(&s->m_beats_per_commit, beats_bounds,
			  sizeof(beats_bounds) / sizeof(beats_bounds[0]), 1);
	int n = snprintf(s->path, sizeof(s->path), "%s/harness.db", data_dir);
	if (n < 0 || (size_t)n >= sizeof(s->path)) {
		rc = hs_error_set(err, HS_INVALID, "store: data_dir is too long");
		goto done;
	}
	rc = sqlite3_open_v2(s->path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
				     SQLITE_OPEN_EXRESCODE,
			     NULL);
	if (rc != SQLITE_OK) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "store: open %s: %s", s->path,
				  s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		goto done;
	}
	struct stat st;
	if (stat(s->path, &st) == 0 && (st.st_mode & 077) != 0 && chmod(s->path, 0600) != 0)
		hs_log(HS_LOG_WARN, "store", "cannot make database private", HS_LS("path", s->path),
		       HS_LS("error", strerror(errno)));
	if ((rc = sqlite3_extended_result_codes(s->db, 1)) != SQLITE_OK ||
	    (rc = sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS)) != SQLITE_OK) {
		rc = hs_store__fail(s, rc, "configure", err);
		goto done;
	}
	if ((rc = exec(s, "PRAGMA foreign_keys=ON", "foreign_keys", err)) != HS_OK)
		goto done;
	if ((rc = register_functions(s, err)) != HS_OK)
		goto done;
	if ((rc = set_wal(s, err)) != HS_OK)
		goto done;
	if ((rc = exec(s, "PRAGMA synchronous=FULL", "synchronous", err)) != HS_OK)
		goto done;
	if ((rc = migrate(s, err)) != HS_OK)
		goto done;
	if (sqlite3_db_readonly(s->db, "main") == 1)
		hs_log(HS_LOG_WARN, "store", "database is read-only", HS_LS("path", s->path));
	*out = s;
	s = NULL;
	rc = HS_OK;
done:
	hs_store_free(s);
	return rc;
}

void hs_store_free(hs_store *store)
{
	if (store == NULL)
		return;
	hs_store__heartbeat_stop(store);
	for (int i = 0; i < HS_STMT__COUNT; i++)
		sqlite3_finalize(store->stmts[i]);
	if (store->db != NULL && sqlite3_close(store->db) != SQLITE_OK)
		hs_log(HS_LOG_ERROR, "store", "close failed", HS_LS("error", sqlite3_errmsg(store->db)));
	pthread_cond_destroy(&store->hb_cv);
	pthread_mutex_destroy(&store->hb_mu);
	pthread_mutex_destroy(&store->mu);
	free(store);
}

int hs_store_schema_version(hs_store *store, int *out, hs_error *err)
{
	int rc, v = 0;
	if (store == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(store);
	rc = pragma_int(store, "PRAGMA user_version", &v, err);
	hs_store__unlock(store);
	if (rc == HS_OK)
		*out = v;
	return rc;
}

int hs_store_schema_version_latest(void)
{
	return hs_store__migration_count;
}

int hs_store_check_writable(hs_store *store, hs_error *err)
{
	hs_store *s = store;
	int rc;
	sqlite3_stmt *st = NULL;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL store");
	hs_store__lock(s);
	if ((rc = hs_store__begin(s, err)) != HS_OK)
		goto done;
	HS_STMT(st, HS_STMT_PROBE,
		"INSERT INTO store_probe(id, written_at_ms) VALUES(1, ?1) "
		"ON CONFLICT(id) DO UPDATE SET written_at_ms = excluded.written_at_ms");
	HS_BIND_I(st, 1, hs_clock_wall_ms());
	if ((rc = hs_store__step_done(s, st, "probe write", err)) != HS_OK)
		goto done;
	rc = hs_store__commit(s, err);
done:
	hs_store__release(st);
	if (rc != HS_OK) {
		hs_store__rollback(s);
		if (err != NULL)
			err->code = HS_UNAVAILABLE;
		rc = HS_UNAVAILABLE;
	}
	hs_store__unlock(s);
	return rc;
}
