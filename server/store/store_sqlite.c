/* The SQLite backend (the embedded default): the driver of
 * store_internal.h over one connection, opening, migrations and the
 * statement cache.
 *
 * Design
 * ------
 * Threading. One connection per process, guarded by one mutex (lite->mu).
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
 * caller returns after that COMMIT (group commit, described in store_heartbeat.c).
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
 * on first use, into lite->stmts[id], and reset + unbound after every use.
 *
 * Errors. Every SQLite return value is checked and translated once, in
 * lite_fail(): constraint violations become HS_EXISTS / HS_NOT_FOUND /
 * HS_INVALID, a busy, read-only, full or failing disk HS_UNAVAILABLE, the
 * rest HS_INTERNAL. Messages carry sqlite3_errmsg() (which names columns,
 * never values); password and token hashes are never logged. */
#include "store_internal.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "email.h"
#include "log.h"

#define BUSY_TIMEOUT_MS 5000

typedef struct lite_stmt {
	hs_stmt base;           /* first: an hs_stmt * is a lite_stmt * */
	sqlite3_stmt *st;
	int last_rc;            /* of the last step */
} lite_stmt;

typedef struct lite {
	pthread_mutex_t mu;     /* guards db, stmts and sqlite3_errmsg() */
	sqlite3 *db;
	lite_stmt stmts[HS_STMT__COUNT];
} lite;

static const hs_store__driver lite_driver;

static lite *L(hs_store *s)
{
	return s->impl;
}

static void lite_lock(hs_store *s)
{
	pthread_mutex_lock(&L(s)->mu);
}

static void lite_unlock(hs_store *s)
{
	pthread_mutex_unlock(&L(s)->mu);
}

static int lite_fail(hs_store *s, int rc, const char *op, hs_error *err)
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
	if (code == HS_UNAVAILABLE && s != NULL)
		hs_counter_add(&s->unavailable, 1);
	sqlite3 *db = (s != NULL && L(s) != NULL) ? L(s)->db : NULL;
	const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
	if (code == HS_NOT_FOUND)
		return hs_error_set(err, code, "store: %s: referenced object does not exist (%s)", op, msg);
	if (code == HS_EXISTS)
		return hs_error_set(err, code, "store: %s: already exists (%s)", op, msg);
	return hs_error_set(err, code, "store: %s: %s", op, msg);
}

static int lite_stmt_get(hs_store *s, hs_stmt_id id, const char *sql, hs_stmt **out,
			 hs_error *err)
{
	lite_stmt *ls = &L(s)->stmts[id];
	if (ls->st == NULL) {
		sqlite3_stmt *st = NULL;
		int rc = sqlite3_prepare_v3(L(s)->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
		if (rc != SQLITE_OK) {
			sqlite3_finalize(st);
			return lite_fail(s, rc, "prepare", err);
		}
		ls->st = st;
		ls->base.drv = &lite_driver;
		ls->base.s = s;
	}
	ls->last_rc = SQLITE_OK;
	*out = &ls->base;
	return HS_OK;
}

static void lite_release(hs_stmt *st)
{
	/* The step's error was already reported; reset repeats it. */
	(void)sqlite3_reset(((lite_stmt *)st)->st);
	(void)sqlite3_clear_bindings(((lite_stmt *)st)->st);
}

static int lite_bind_text(hs_stmt *st, int idx, const char *v, size_t n, hs_error *err)
{
	sqlite3_stmt *q = ((lite_stmt *)st)->st;
	int rc = v == NULL ? sqlite3_bind_null(q, idx)
			   : sqlite3_bind_text(q, idx, v, (int)n, SQLITE_STATIC);
	return rc == SQLITE_OK ? HS_OK : lite_fail(st->s, rc, "bind", err);
}

static int lite_bind_int(hs_stmt *st, int idx, int64_t v, hs_error *err)
{
	int rc = sqlite3_bind_int64(((lite_stmt *)st)->st, idx, (sqlite3_int64)v);
	return rc == SQLITE_OK ? HS_OK : lite_fail(st->s, rc, "bind", err);
}

static int lite_bind_double(hs_stmt *st, int idx, double v, hs_error *err)
{
	int rc = sqlite3_bind_double(((lite_stmt *)st)->st, idx, v);
	return rc == SQLITE_OK ? HS_OK : lite_fail(st->s, rc, "bind", err);
}

static int lite_step(hs_stmt *st, const char *op, hs_error *err)
{
	lite_stmt *ls = (lite_stmt *)st;
	int rc = sqlite3_step(ls->st);
	ls->last_rc = rc;
	if (rc == SQLITE_ROW)
		return HS_STORE_ROW;
	if (rc == SQLITE_DONE)
		return HS_OK;
	return lite_fail(st->s, rc, op, err);
}

static int64_t lite_col_int64(hs_stmt *st, int col)
{
	return sqlite3_column_int64(((lite_stmt *)st)->st, col);
}

static double lite_col_double(hs_stmt *st, int col)
{
	return sqlite3_column_double(((lite_stmt *)st)->st, col);
}

static const char *lite_col_text(hs_stmt *st, int col, size_t *n)
{
	sqlite3_stmt *q = ((lite_stmt *)st)->st;
	const unsigned char *v = sqlite3_column_text(q, col);
	*n = (size_t)sqlite3_column_bytes(q, col);
	return (const char *)v;
}

static int64_t lite_changes(hs_stmt *st)
{
	return sqlite3_changes64(L(st->s)->db);
}

static bool lite_failed_alone(hs_stmt *st)
{
	return (((lite_stmt *)st)->last_rc & 0xff) == SQLITE_CONSTRAINT &&
	       !sqlite3_get_autocommit(L(st->s)->db);
}

static int exec(hs_store *s, const char *sql, const char *op, hs_error *err)
{
	int rc = sqlite3_exec(L(s)->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? HS_OK : lite_fail(s, rc, op, err);
}

static int run_cached(hs_store *s, hs_stmt_id id, const char *sql, const char *op, hs_error *err)
{
	hs_stmt *st = NULL;
	int rc = lite_stmt_get(s, id, sql, &st, err);
	if (rc != HS_OK)
		return rc;
	rc = hs_store__step_done(s, st, op, err);
	hs_store__release(st);
	return rc;
}

static int lite_begin(hs_store *s, hs_error *err)
{
	return run_cached(s, HS_STMT_BEGIN, "BEGIN IMMEDIATE", "begin", err);
}

static int lite_commit(hs_store *s, hs_error *err)
{
	return run_cached(s, HS_STMT_COMMIT, "COMMIT", "commit", err);
}

static void lite_rollback(hs_store *s)
{
	if (sqlite3_get_autocommit(L(s)->db))
		return; /* SQLite already rolled back (e.g. after SQLITE_FULL) */
	hs_error ignored = { 0 };
	(void)run_cached(s, HS_STMT_ROLLBACK, "ROLLBACK", "rollback", &ignored);
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
	int rc = sqlite3_create_function_v2(L(s)->db, "hs_email_normalize", 1,
					    SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
					    sql_email_normalize, NULL, NULL, NULL);
	return rc == SQLITE_OK ? HS_OK : lite_fail(s, rc, "register SQL functions", err);
}

static int pragma_int(hs_store *s, const char *sql, int *out, hs_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(L(s)->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		rc = lite_fail(s, rc, "pragma", err);
		goto done;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = lite_fail(s, rc, "pragma", err);
		goto done;
	}
	*out = sqlite3_column_int(st, 0);
	rc = HS_OK;
done:
	sqlite3_finalize(st);
	return rc;
}

static int set_wal(hs_store *s, hs_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(L(s)->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		rc = lite_fail(s, rc, "journal_mode", err);
		goto done;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = lite_fail(s, rc, "journal_mode", err);
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
		if ((rc = lite_begin(s, err)) != HS_OK)
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
		if ((rc = lite_commit(s, err)) != HS_OK)
			goto fail;
		version++;
		continue;
	fail:
		lite_rollback(s);
		if (err != NULL)
			hs_log(HS_LOG_ERROR, "store", "migration failed", HS_LI("version", version + 1),
			       HS_LS("error", err->msg));
		return rc;
	}
	if (!sqlite3_get_autocommit(L(s)->db) && (rc = lite_commit(s, err)) != HS_OK) {
		lite_rollback(s);
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

static int lite_schema_version(hs_store *s, int *out, hs_error *err)
{
	int rc, v = 0;
	lite_lock(s);
	rc = pragma_int(s, "PRAGMA user_version", &v, err);
	lite_unlock(s);
	if (rc == HS_OK)
		*out = v;
	return rc;
}

static void lite_close(hs_store *s)
{
	lite *l = L(s);
	if (l == NULL)
		return;
	for (int i = 0; i < HS_STMT__COUNT; i++)
		sqlite3_finalize(l->stmts[i].st);
	if (l->db != NULL && sqlite3_close(l->db) != SQLITE_OK)
		hs_log(HS_LOG_ERROR, "store", "close failed", HS_LS("error", sqlite3_errmsg(l->db)));
	pthread_mutex_destroy(&l->mu);
	free(l);
	s->impl = NULL;
}

static int lite_exec_locked(hs_store *s, const char *sql, const char *op, hs_error *err)
{
	return exec(s, sql, op, err);
}

static const hs_store__driver lite_driver = {
	.name = "sqlite",
	.postgres = false,
	.errors_abort_txn = false,
	.lock = lite_lock,
	.unlock = lite_unlock,
	.stmt = lite_stmt_get,
	.release = lite_release,
	.bind_text = lite_bind_text,
	.bind_int = lite_bind_int,
	.bind_double = lite_bind_double,
	.step = lite_step,
	.col_int64 = lite_col_int64,
	.col_double = lite_col_double,
	.col_text = lite_col_text,
	.changes = lite_changes,
	.failed_alone = lite_failed_alone,
	.exec = lite_exec_locked,
	.begin = lite_begin,
	.commit = lite_commit,
	.rollback = lite_rollback,
	.schema_version = lite_schema_version,
	.close = lite_close,
};

int hs_store__sqlite_open(hs_store *s, const char *db_path, hs_error *err)
{
	int rc;
	if (sqlite3_threadsafe() == 0)
		return hs_error_set(err, HS_INTERNAL, "store: libsqlite3 was built without threads");
	lite *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	if (pthread_mutex_init(&l->mu, NULL) != 0) {
		free(l);
		return hs_error_set(err, HS_INTERNAL, "store: mutex init failed");
	}
	s->impl = l;
	s->drv = &lite_driver;
	int n = snprintf(s->path, sizeof(s->path), "%s", db_path);
	if (n < 0 || (size_t)n >= sizeof(s->path))
		return hs_error_set(err, HS_INVALID, "store: database path is too long");
	rc = sqlite3_open_v2(s->path, &l->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
				     SQLITE_OPEN_EXRESCODE,
			     NULL);
	if (rc != SQLITE_OK)
		return hs_error_set(err, HS_UNAVAILABLE, "store: open %s: %s", s->path,
				    l->db ? sqlite3_errmsg(l->db) : sqlite3_errstr(rc));
	struct stat st;
	if (stat(s->path, &st) == 0 && (st.st_mode & 077) != 0 && chmod(s->path, 0600) != 0)
		hs_log(HS_LOG_WARN, "store", "cannot make database private", HS_LS("path", s->path),
		       HS_LS("error", strerror(errno)));
	if ((rc = sqlite3_extended_result_codes(l->db, 1)) != SQLITE_OK ||
	    (rc = sqlite3_busy_timeout(l->db, BUSY_TIMEOUT_MS)) != SQLITE_OK)
		return lite_fail(s, rc, "configure", err);
	if ((rc = exec(s, "PRAGMA foreign_keys=ON", "foreign_keys", err)) != HS_OK ||
	    (rc = register_functions(s, err)) != HS_OK || (rc = set_wal(s, err)) != HS_OK ||
	    (rc = exec(s, "PRAGMA synchronous=FULL", "synchronous", err)) != HS_OK ||
	    (rc = migrate(s, err)) != HS_OK)
		return rc;
	if (sqlite3_db_readonly(l->db, "main") == 1)
		hs_log(HS_LOG_WARN, "store", "database is read-only", HS_LS("path", s->path));
	return HS_OK;
}
