/* The PostgreSQL backend (--store postgres://...): the driver of
 * store_internal.h over libpq, the store several harnessd nodes share.
 *
 * Design
 * ------
 * Pool. HS_PG_POOL connections, opened lazily. A public store call takes
 * one for its whole duration (hs_store__lock: wait for a free slot, remember
 * it in a thread-local for this store) and puts it back at the end, so a
 * multi-statement operation (BEGIN ... COMMIT, an INSERT then a SELECT) runs
 * on one connection while other threads use the others. No call holds a
 * slot while it waits for anything but the database, and every database
 * wait is bounded (below), so a slot always comes back.
 *
 * Timeouts. connect_timeout (HS_PG_CONNECT_TIMEOUT_S unless the DSN sets
 * it), statement_timeout (HS_PG_STATEMENT_TIMEOUT_MS: a statement, a lock
 * wait included, fails instead of hanging), idle_in_transaction_session_
 * timeout on the server, and TCP keepalives plus tcp_user_timeout so a
 * vanished server is noticed on a silent network.
 *
 * Outages. A failed connect, a lost connection (the server restarted or
 * went away: SQLSTATE class 08, 57P01..57P03, or PQstatus bad) answers
 * HS_UNAVAILABLE and drops that connection; the next call on the slot
 * connects again (a call never continues on a new connection: its
 * transaction would have ended). At start (hs_store_open_spec) the
 * database must answer, or harnessd exits and its supervisor retries. A slot is also checked when it is taken (PQconsumeInput
 * reads the server's goodbye after a restart without blocking), so after an
 * outage idle connections do not each fail one more call; and a call
 * whose first statement finds its pooled session ended by the server runs
 * that statement again on a new connection when it has no effect of its
 * own (BEGIN, SELECT, SAVEPOINT: every read and every transaction). Nothing
 * else is retried behind the caller's back: a write whose COMMIT did not
 * answer may or may not have committed, and only the caller knows whether
 * repeating it is safe.
 *
 * Durability. synchronous_commit = on for every connection: COMMIT returns
 * after the server flushed its WAL, so an acknowledged write survives a
 * server crash. Heartbeats share commits exactly as on SQLite (store_heartbeat.c).
 *
 * Order. event ids come from a database sequence; rows read incrementally
 * by seq take an advisory lock per table inside their transaction
 * (store.c: hs_store__ordered_lock), so ids commit in increasing order even
 * with several nodes writing.
 *
 * Migrations. Version in harness_schema (one row). Each pending entry of
 * store_pg_schema.c runs in its own transaction that first takes the
 * advisory lock HS_STORE_PG_MIGRATE_LOCK and re-reads the version, so
 * several harnessd starting at once apply each migration exactly once. A
 * version newer than this code knows is refused (HS_CONFLICT).
 *
 * Statements. SQL text of the entity files with ?N rewritten to $N, sent
 * with PQexecParams in text format (server-side types from the columns);
 * results are read in text (integers with strtoll, doubles with strtod:
 * PostgreSQL prints the shortest exact representation). Errors are
 * translated by SQLSTATE: 23505 -> HS_EXISTS, 23503 -> HS_NOT_FOUND, other
 * class 23 and class 22 (bad data, e.g. invalid UTF-8) -> HS_INVALID,
 * connection loss, timeouts, serialization failures, resource shortages and
 * read-only -> HS_UNAVAILABLE, the rest HS_INTERNAL. Messages carry the
 * server's message (names, never values) and never the DSN's password. */
#include "store_internal.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define HS_PG_POOL 8
#define HS_PG_CONNECT_TIMEOUT_S "5"
#define HS_PG_STATEMENT_TIMEOUT_MS 30000
#define HS_PG_MAX_PARAMS 40
#define HS_PG_SQL_MAX 4096

typedef struct pool_slot {
	PGconn *c;          /* NULL: not connected (connects on next use) */
	bool busy;          /* taken by a thread (guarded by pg.mu) */
	bool used;          /* used since it was taken: never reconnect then */
	bool pooled;        /* its connection came from the pool and nothing ran on it yet */
} pool_slot;

typedef struct pg {
	pthread_mutex_t mu;
	pthread_cond_t cv;  /* a slot came back */
	pool_slot conns[HS_PG_POOL];
	char *dsn;          /* secret: never logged */
	uint64_t waits;     /* calls that found no free slot (guarded by mu) */
} pg;

typedef struct pg_stmt {
	hs_stmt base;       /* first: an hs_stmt * is a pg_stmt * */
	pool_slot *conn;
	char sql[HS_PG_SQL_MAX];
	int nparams;        /* highest $N in sql */
	Oid types[HS_PG_MAX_PARAMS]; /* 0 (inferred), or text for a $N the SQL never uses */
	bool used[HS_PG_MAX_PARAMS];
	const char *vals[HS_PG_MAX_PARAMS];
	int lens[HS_PG_MAX_PARAMS];
	char nums[HS_PG_MAX_PARAMS][32];
	PGresult *res;      /* after the first step */
	int row, nrows;
	int64_t changes;
	bool ran;
} pg_stmt;

/* The slot the calling thread holds, and for which store. */
static __thread hs_store *tls_store;
static __thread pool_slot *tls_conn;

static const hs_store__driver pg_driver;

static pg *P(hs_store *s)
{
	return s->impl;
}

/* ---- connections ------------------------------------------------------------ */

static void conn_drop(pool_slot *pc)
{
	if (pc->c != NULL)
		PQfinish(pc->c);
	pc->c = NULL;
}

/* Whether an idle pooled connection is still usable: read (without
 * blocking) whatever the server sent while it sat in the pool. A server
 * that ends a session sends an error ("terminating connection ...", which
 * libpq hands to the notice processor while idle) and then closes; reading
 * until nothing more is pending reaches the close, which marks the
 * connection bad. */
static bool conn_alive(PGconn *c)
{
	for (int i = 0; i < 4; i++) {
		if (PQconsumeInput(c) == 0 || PQstatus(c) != CONNECTION_OK)
			return false;
		struct pollfd p = { .fd = PQsocket(c), .events = POLLIN };
		if (p.fd < 0)
			return false;
		if (poll(&p, 1, 0) <= 0)
			break; /* nothing more pending */
	}
	return PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE;
}

static void pg_lock(hs_store *s)
{
	pg *p = P(s);
	pool_slot *pc = NULL;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		for (int i = 0; i < HS_PG_POOL && pc == NULL; i++) {
			if (!p->conns[i].busy)
				pc = &p->conns[i];
		}
		if (pc != NULL)
			break;
		p->waits++;
		pthread_cond_wait(&p->cv, &p->mu);
	}
	pc->busy = true;
	pthread_mutex_unlock(&p->mu);
	/* A connection the server closed meanwhile (restart, idle kill) is
	 * dropped here rather than failing this call. */
	if (pc->c != NULL && !conn_alive(pc->c))
		conn_drop(pc);
	pc->used = false;
	pc->pooled = pc->c != NULL;
	tls_store = s;
	tls_conn = pc;
}

static void pg_unlock(hs_store *s)
{
	pg *p = P(s);
	pool_slot *pc = tls_conn;
	tls_store = NULL;
	tls_conn = NULL;
	if (pc == NULL)
		return;
	/* Never hand on a connection inside a transaction or a broken one. */
	if (pc->c != NULL &&
	    (PQstatus(pc->c) != CONNECTION_OK || PQtransactionStatus(pc->c) != PQTRANS_IDLE))
		conn_drop(pc);
	pthread_mutex_lock(&p->mu);
	pc->busy = false;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* One line of a libpq message (they end in newlines; the DSN's password
 * never appears in them). */
static const char *one_line(const char *msg, char *buf, size_t cap)
{
	size_t n = 0;
	if (msg == NULL)
		msg = "";
	while (msg[n] != '\0' && msg[n] != '\n' && n + 1 < cap) {
		buf[n] = msg[n];
		n++;
	}
	buf[n] = '\0';
	return buf;
}

/* Server notices ("relation already exists, skipping") are not errors and
 * must not go to stderr. */
static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int hs_store__pg_connect(hs_store *s, struct pg_conn **out, hs_error *err)
{
	char line[512];
	const char *keys[] = { "connect_timeout", "keepalives", "keepalives_idle",
			       "keepalives_interval", "keepalives_count", "tcp_user_timeout",
			       "fallback_application_name", "dbname", NULL };
	const char *vals[] = { HS_PG_CONNECT_TIMEOUT_S, "1", "10", "5", "3", "30000", "harnessd",
			       P(s)->dsn, NULL };
	/* Our defaults first: the DSN (expanded from dbname) overrides them. */
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (c == NULL)
		return hs_error_set(err, HS_UNAVAILABLE, "store: postgres: out of memory");
	if (PQstatus(c) != CONNECTION_OK) {
		int rc = hs_error_set(err, HS_UNAVAILABLE, "store: postgres: cannot connect: %s",
				      one_line(PQerrorMessage(c), line, sizeof(line)));
		PQfinish(c);
		return rc;
	}
	char set[160];
	snprintf(set, sizeof(set),
		 "SET synchronous_commit = on; SET statement_timeout = %d; "
		 "SET idle_in_transaction_session_timeout = %d",
		 HS_PG_STATEMENT_TIMEOUT_MS, 2 * HS_PG_STATEMENT_TIMEOUT_MS);
	PGresult *r = PQexec(c, set);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		int rc = hs_error_set(err, HS_UNAVAILABLE, "store: postgres: configure session: %s",
				      one_line(PQerrorMessage(c), line, sizeof(line)));
		PQclear(r);
		PQfinish(c);
		return rc;
	}
	PQclear(r);
	PQsetNoticeProcessor(c, quiet, NULL);
	*out = c;
	return HS_OK;
}

static int connect_conn(hs_store *s, pool_slot *pc, hs_error *err)
{
	return hs_store__pg_connect(s, &pc->c, err);
}

/* The calling thread's connection, connected. Caller holds the lock. */
static int cur_conn(hs_store *s, pool_slot **out, hs_error *err)
{
	int rc;
	pool_slot *pc = tls_store == s ? tls_conn : NULL;
	if (pc == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: postgres: no connection held");
	/* Connect only before the first statement of a call: a call whose
	 * connection was lost must not go on, half done, on a new one (a
	 * transaction would silently end). */
	if (pc->c == NULL && pc->used) {
		hs_counter_add(&s->unavailable, 1);
		return hs_error_set(err, HS_UNAVAILABLE, "store: postgres: connection lost");
	}
	if (pc->c == NULL && (rc = connect_conn(s, pc, err)) != HS_OK) {
		hs_counter_add(&s->unavailable, 1);
		return rc;
	}
	pc->used = true;
	*out = pc;
	return HS_OK;
}

static bool sqlstate_unavailable(const char *st)
{
	if (st == NULL)
		return true; /* no SQLSTATE: the connection failed */
	return strncmp(st, "08", 2) == 0 ||           /* connection exception */
	       strncmp(st, "53", 2) == 0 ||           /* insufficient resources */
	       strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0 ||
	       strcmp(st, "57014") == 0 ||            /* statement timeout / cancelled */
	       strcmp(st, "55P03") == 0 ||            /* lock not available */
	       strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || /* serialization, deadlock */
	       strcmp(st, "25006") == 0;              /* read-only transaction (a standby) */
}

/* Translate a failed result (NULL: no result at all) into an hs_code. */
static int pg_fail(hs_store *s, pool_slot *pc, PGresult *r, const char *op, hs_error *err)
{
	char line[512];
	const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r != NULL ? PQresultErrorMessage(r) : "";
	if (msg == NULL || msg[0] == '\0')
		msg = pc->c != NULL ? PQerrorMessage(pc->c) : "connection lost";
	one_line(msg, line, sizeof(line));
	int code;
	if (pc->c == NULL || PQstatus(pc->c) != CONNECTION_OK || sqlstate_unavailable(state))
		code = HS_UNAVAILABLE;
	else if (strcmp(state, "23505") == 0)
		code = HS_EXISTS;
	else if (strcmp(state, "23503") == 0)
		code = HS_NOT_FOUND;
	else if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0)
		code = HS_INVALID;
	else
		code = HS_INTERNAL;
	if (code == HS_UNAVAILABLE && pc->c != NULL && PQstatus(pc->c) != CONNECTION_OK)
		conn_drop(pc);
	if (code == HS_UNAVAILABLE)
		hs_counter_add(&s->unavailable, 1);
	if (code == HS_NOT_FOUND)
		return hs_error_set(err, code, "store: %s: referenced object does not exist (%s)", op,
				    line);
	if (code == HS_EXISTS)
		return hs_error_set(err, code, "store: %s: already exists (%s)", op, line);
	return hs_error_set(err, code, "store: %s: %s", op, line);
}

/* A session the server ended may still look alive when it is taken from
 * the pool (the server closes it a moment after saying so). If the first
 * statement of a call fails that way and has no effect of its own (BEGIN,
 * SELECT, SAVEPOINT), it is safe to run once more on a new connection;
 * anything else answers UNAVAILABLE (the server may have applied it). */
static bool retry_on_new_connection(hs_store *s, pool_slot *pc, const char *sql)
{
	bool first = pc->pooled;
	pc->pooled = false;
	if (!first || pc->c == NULL || PQstatus(pc->c) == CONNECTION_OK)
		return false;
	if (strncmp(sql, "BEGIN", 5) != 0 && strncmp(sql, "SELECT", 6) != 0 &&
	    strncmp(sql, "SAVEPOINT", 9) != 0)
		return false;
	hs_error ignored = { 0 };
	conn_drop(pc);
	return connect_conn(s, pc, &ignored) == HS_OK;
}

/* Run sql (one or more statements, no parameters) on the held connection. */
static int pg_exec(hs_store *s, const char *sql, const char *op, hs_error *err)
{
	int rc;
	pool_slot *pc = NULL;
	if ((rc = cur_conn(s, &pc, err)) != HS_OK)
		return rc;
	PGresult *r = PQexec(pc->c, sql);
	ExecStatusType st = PQresultStatus(r);
	if ((r == NULL || st == PGRES_FATAL_ERROR) && retry_on_new_connection(s, pc, sql)) {
		PQclear(r);
		r = PQexec(pc->c, sql);
		st = PQresultStatus(r);
	}
	pc->pooled = false;
	if (r != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK))
		rc = HS_OK;
	else
		rc = pg_fail(s, pc, r, op, err);
	PQclear(r);
	return rc;
}

static int pg_begin(hs_store *s, hs_error *err)
{
	return pg_exec(s, "BEGIN", "begin", err);
}

static int pg_commit(hs_store *s, hs_error *err)
{
	int rc;
	pool_slot *pc = NULL;
	if ((rc = cur_conn(s, &pc, err)) != HS_OK)
		return rc;
	PGresult *r = PQexec(pc->c, "COMMIT");
	if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = pg_fail(s, pc, r, "commit", err);
	else if (strcmp(PQcmdStatus(r), "COMMIT") != 0)
		/* COMMIT of a failed transaction answers ROLLBACK. */
		rc = hs_error_set(err, HS_INTERNAL, "store: commit: the transaction was rolled back");
	PQclear(r);
	return rc;
}

static void pg_rollback(hs_store *s)
{
	pool_slot *pc = tls_store == s ? tls_conn : NULL;
	if (pc == NULL || pc->c == NULL || PQstatus(pc->c) != CONNECTION_OK ||
	    PQtransactionStatus(pc->c) == PQTRANS_IDLE)
		return;
	PQclear(PQexec(pc->c, "ROLLBACK"));
}

/* ---- statements -------------------------------------------------------------- */

static int pg_stmt_get(hs_store *s, hs_stmt_id id, const char *sql, hs_stmt **out,
		       hs_error *err)
{
	(void)id;
	int rc;
	pool_slot *pc = NULL;
	if ((rc = cur_conn(s, &pc, err)) != HS_OK)
		return rc;
	pg_stmt *ps = calloc(1, sizeof(*ps));
	if (ps == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	ps->base.drv = &pg_driver;
	ps->base.s = s;
	ps->conn = pc;
	/* ?N -> $N (no statement has a '?' inside a string literal). */
	size_t n = 0;
	for (const char *c = sql; *c != '\0'; c++) {
		if (n + 1 >= sizeof(ps->sql)) {
			free(ps);
			return hs_error_set(err, HS_INTERNAL, "store: statement too long");
		}
		if ((*c == '?' || *c == '$') && c[1] >= '0' && c[1] <= '9') {
			int v = (int)strtol(c + 1, NULL, 10);
			if (v > ps->nparams)
				ps->nparams = v;
			if (v >= 1 && v <= HS_PG_MAX_PARAMS)
				ps->used[v - 1] = true;
			if (*c == '?') {
				ps->sql[n++] = '$';
				continue;
			}
		}
		ps->sql[n++] = *c;
	}
	ps->sql[n] = '\0';
	if (ps->nparams > HS_PG_MAX_PARAMS) {
		free(ps);
		return hs_error_set(err, HS_INTERNAL, "store: statement has too many parameters");
	}
	/* A parameter the text skips (bound anyway, like ?1 of a keyless
	 * DELETE) has no type to infer: say text. */
	for (int i = 0; i < ps->nparams; i++)
		ps->types[i] = ps->used[i] ? 0 : 25 /* TEXTOID */;
	*out = &ps->base;
	return HS_OK;
}

static void pg_release(hs_stmt *st)
{
	pg_stmt *ps = (pg_stmt *)st;
	PQclear(ps->res);
	free(ps);
}

static int param_slot(hs_stmt *st, int idx, hs_error *err)
{
	pg_stmt *ps = (pg_stmt *)st;
	if (idx < 1 || idx > ps->nparams)
		return hs_error_set(err, HS_INTERNAL, "store: bind: no parameter %d", idx);
	return idx - 1;
}

static int pg_bind_text(hs_stmt *st, int idx, const char *v, size_t n, hs_error *err)
{
	int i = param_slot(st, idx, err);
	if (i < 0)
		return i;
	pg_stmt *ps = (pg_stmt *)st;
	ps->vals[i] = v; /* the caller's buffer lives until the step (as SQLITE_STATIC) */
	ps->lens[i] = (int)n;
	return HS_OK;
}

static int pg_bind_int(hs_stmt *st, int idx, int64_t v, hs_error *err)
{
	int i = param_slot(st, idx, err);
	if (i < 0)
		return i;
	pg_stmt *ps = (pg_stmt *)st;
	ps->lens[i] = snprintf(ps->nums[i], sizeof(ps->nums[i]), "%lld", (long long)v);
	ps->vals[i] = ps->nums[i];
	return HS_OK;
}

static int pg_bind_double(hs_stmt *st, int idx, double v, hs_error *err)
{
	int i = param_slot(st, idx, err);
	if (i < 0)
		return i;
	pg_stmt *ps = (pg_stmt *)st;
	ps->lens[i] = snprintf(ps->nums[i], sizeof(ps->nums[i]), "%.17g", v);
	ps->vals[i] = ps->nums[i];
	return HS_OK;
}

static int pg_step(hs_stmt *st, const char *op, hs_error *err)
{
	pg_stmt *ps = (pg_stmt *)st;
	if (!ps->ran) {
		ps->ran = true;
		if (ps->conn->c == NULL) {
			hs_counter_add(&st->s->unavailable, 1);
			return hs_error_set(err, HS_UNAVAILABLE, "store: %s: connection lost", op);
		}
		ps->res = PQexecParams(ps->conn->c, ps->sql, ps->nparams, ps->types, ps->vals, ps->lens,
				       NULL, 0);
		ExecStatusType rs = PQresultStatus(ps->res);
		if ((ps->res == NULL || rs == PGRES_FATAL_ERROR) &&
		    retry_on_new_connection(st->s, ps->conn, ps->sql)) {
			PQclear(ps->res);
			ps->res = PQexecParams(ps->conn->c, ps->sql, ps->nparams, ps->types, ps->vals,
					       ps->lens, NULL, 0);
			rs = PQresultStatus(ps->res);
		}
		ps->conn->pooled = false;
		if (ps->res == NULL || (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK)) {
			int rc = pg_fail(st->s, ps->conn, ps->res, op, err);
			PQclear(ps->res);
			ps->res = NULL;
			ps->nrows = 0;
			return rc;
		}
		const char *t = PQcmdTuples(ps->res);
		ps->changes = (t != NULL && t[0] != '\0') ? strtoll(t, NULL, 10) : 0;
		ps->nrows = rs == PGRES_TUPLES_OK ? PQntuples(ps->res) : 0;
		ps->row = -1;
	}
	if (ps->res == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: %s: stepped after an error", op);
	if (ps->row + 1 < ps->nrows) {
		ps->row++;
		return HS_STORE_ROW;
	}
	ps->row = ps->nrows;
	return HS_OK;
}

static const char *cell(hs_stmt *st, int col)
{
	pg_stmt *ps = (pg_stmt *)st;
	if (ps->res == NULL || ps->row < 0 || ps->row >= ps->nrows || col >= PQnfields(ps->res) ||
	    PQgetisnull(ps->res, ps->row, col))
		return NULL;
	return PQgetvalue(ps->res, ps->row, col);
}

static int64_t pg_col_int64(hs_stmt *st, int col)
{
	const char *v = cell(st, col);
	return v != NULL ? strtoll(v, NULL, 10) : 0;
}

static double pg_col_double(hs_stmt *st, int col)
{
	const char *v = cell(st, col);
	return v != NULL ? strtod(v, NULL) : 0.0;
}

static const char *pg_col_text(hs_stmt *st, int col, size_t *n)
{
	pg_stmt *ps = (pg_stmt *)st;
	const char *v = cell(st, col);
	*n = v != NULL ? (size_t)PQgetlength(ps->res, ps->row, col) : 0;
	return v;
}

static int64_t pg_changes(hs_stmt *st)
{
	return ((pg_stmt *)st)->changes;
}

static bool pg_failed_alone(hs_stmt *st)
{
	(void)st;
	return false; /* an error aborts the whole transaction */
}

/* ---- open / migrate -------------------------------------------------------- */

static int read_version(hs_store *s, int *out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if ((rc = pg_stmt_get(s, HS_STMT_PROBE, "SELECT version FROM harness_schema WHERE id = 1",
			      &st, err)) != HS_OK)
		return rc;
	if ((rc = hs_store__step_row(st, "read schema version", err)) == HS_OK)
		*out = (int)hs_store__col_int64(st, 0);
	hs_store__release(st);
	return rc;
}

static int migrate(hs_store *s, hs_error *err)
{
	int rc, version = 0, from = -1;
	char sql[96];
	for (;;) {
		if ((rc = pg_begin(s, err)) != HS_OK)
			return rc;
		if ((rc = pg_exec(s,
				  "SELECT pg_advisory_xact_lock(" HS_STORE_PG_MIGRATE_LOCK ");"
				  "CREATE TABLE IF NOT EXISTS harness_schema ("
				  "  id INTEGER PRIMARY KEY CHECK (id = 1),"
				  "  version INTEGER NOT NULL);"
				  "INSERT INTO harness_schema(id, version) VALUES(1, 0) "
				  "ON CONFLICT DO NOTHING",
				  "migration lock", err)) != HS_OK ||
		    (rc = read_version(s, &version, err)) != HS_OK)
			goto fail;
		if (from < 0)
			from = version;
		if (version >= hs_store__pg_migration_count) {
			if ((rc = pg_commit(s, err)) != HS_OK)
				goto fail;
			break;
		}
		if ((rc = pg_exec(s, hs_store__pg_migrations[version], "migration", err)) != HS_OK)
			goto fail;
		snprintf(sql, sizeof(sql), "UPDATE harness_schema SET version = %d WHERE id = 1",
			 version + 1);
		if ((rc = pg_exec(s, sql, "migration", err)) != HS_OK ||
		    (rc = pg_commit(s, err)) != HS_OK)
			goto fail;
		continue;
	fail:
		pg_rollback(s);
		if (err != NULL)
			hs_log(HS_LOG_ERROR, "store", "migration failed", HS_LI("version", version + 1),
			       HS_LS("error", err->msg));
		return rc;
	}
	if (version > hs_store__pg_migration_count)
		return hs_error_set(err, HS_CONFLICT,
				    "store: %s has schema version %d, newer than this harnessd knows "
				    "(%d); upgrade harnessd or restore a matching database",
				    s->path, version, hs_store__pg_migration_count);
	if (version != from)
		hs_log(HS_LOG_INFO, "store", "schema migrated", HS_LI("from", from),
		       HS_LI("to", version));
	return HS_OK;
}

static int pg_schema_version(hs_store *s, int *out, hs_error *err)
{
	int rc, v = 0;
	pg_lock(s);
	rc = read_version(s, &v, err);
	pg_unlock(s);
	if (rc == HS_OK)
		*out = v;
	return rc;
}

static void pg_close(hs_store *s)
{
	pg *p = P(s);
	if (p == NULL)
		return;
	for (int i = 0; i < HS_PG_POOL; i++)
		conn_drop(&p->conns[i]);
	free(p->dsn);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	s->impl = NULL;
}

static void pg_collect(hs_store *s, hs_metrics_out *out)
{
	pg *p = P(s);
	double n[3] = { 0, 0, 0 }; /* busy, idle, closed */
	uint64_t waits;
	pthread_mutex_lock(&p->mu);
	for (int i = 0; i < HS_PG_POOL; i++) {
		/* A free slot's connection changes only while someone holds it. */
		if (p->conns[i].busy)
			n[0]++;
		else
			n[p->conns[i].c != NULL ? 1 : 2]++;
	}
	waits = p->waits;
	pthread_mutex_unlock(&p->mu);
	static const char *const states[] = { "busy", "idle", "closed" };
	hs_metrics_family(out, "harness_store_pool_connections", "gauge",
			  "PostgreSQL pool connections by state.");
	for (int i = 0; i < 3; i++) {
		const char *labels[] = { "state", states[i], NULL };
		hs_metrics_sample(out, "harness_store_pool_connections", labels, n[i]);
	}
	hs_metrics_family(out, "harness_store_pool_waits_total", "counter",
			  "Store calls that waited for a free PostgreSQL connection.");
	hs_metrics_sample(out, "harness_store_pool_waits_total", NULL, (double)waits);
}

static const hs_store__driver pg_driver = {
	.name = "postgres",
	.postgres = true,
	.errors_abort_txn = true,
	.lock = pg_lock,
	.unlock = pg_unlock,
	.stmt = pg_stmt_get,
	.release = pg_release,
	.bind_text = pg_bind_text,
	.bind_int = pg_bind_int,
	.bind_double = pg_bind_double,
	.step = pg_step,
	.col_int64 = pg_col_int64,
	.col_double = pg_col_double,
	.col_text = pg_col_text,
	.changes = pg_changes,
	.failed_alone = pg_failed_alone,
	.exec = pg_exec,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.schema_version = pg_schema_version,
	.close = pg_close,
	.collect = pg_collect,
};

int hs_store__pg_open(hs_store *s, const char *dsn, hs_error *err)
{
	int rc;
	if (PQisthreadsafe() == 0)
		return hs_error_set(err, HS_INTERNAL, "store: libpq was built without threads");
	pg *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	if (pthread_mutex_init(&p->mu, NULL) != 0) {
		free(p);
		return hs_error_set(err, HS_INTERNAL, "store: mutex init failed");
	}
	if (pthread_cond_init(&p->cv, NULL) != 0) {
		pthread_mutex_destroy(&p->mu);
		free(p);
		return hs_error_set(err, HS_INTERNAL, "store: condition variable init failed");
	}
	s->impl = p;
	s->drv = &pg_driver;
	snprintf(s->path, sizeof(s->path), "postgres");
	if ((p->dsn = strdup(dsn)) == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	pg_lock(s);
	pool_slot *pc = NULL;
	if ((rc = cur_conn(s, &pc, err)) == HS_OK) {
		/* What errors name: where, never the password. */
		snprintf(s->path, sizeof(s->path), "postgres database %s on %s:%s", PQdb(pc->c),
			 PQhost(pc->c), PQport(pc->c));
		rc = migrate(s, err);
	}
	pg_unlock(s);
	return rc;
}
