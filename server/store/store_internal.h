/* Internals shared by the store's files: store.c (backend-neutral helpers
 * and lifecycle), the backends (store_sqlite.c, store_pg.c), migrations and
 * one file per entity. Never included outside server/store/. */
#ifndef HS_SERVER_STORE_INTERNAL_H
#define HS_SERVER_STORE_INTERNAL_H

#include <pthread.h>

#include "metrics.h"
#include "store.h"

/* Every statement the store runs more than once; prepared lazily, cached
 * for the life of the connection. */
typedef enum hs_stmt_id {
	HS_STMT_BEGIN,
	HS_STMT_COMMIT,
	HS_STMT_ROLLBACK,
	HS_STMT_PROBE,
	HS_STMT_USER_INSERT,
	HS_STMT_USER_GET_ID,
	HS_STMT_USER_GET_EMAIL,
	HS_STMT_USER_COUNT,
	HS_STMT_USER_LIST,
	HS_STMT_REFRESH_INSERT,
	HS_STMT_REFRESH_GET,
	HS_STMT_REFRESH_CONSUME,
	HS_STMT_REFRESH_EXISTS,
	HS_STMT_REFRESH_REVOKE_FAMILY,
	HS_STMT_REFRESH_REVOKE,
	HS_STMT_REFRESH_DELETE_EXPIRED,
	HS_STMT_SANDBOX_INSERT,
	HS_STMT_SANDBOX_UPDATE,
	HS_STMT_SANDBOX_GET,
	HS_STMT_SANDBOX_DELETE,
	HS_STMT_SANDBOX_LIST,
	HS_STMT_SANDBOX_COUNT_OWNER,
	HS_STMT_SNAPSHOT_INSERT,
	HS_STMT_SNAPSHOT_GET,
	HS_STMT_SNAPSHOT_LIST,
	HS_STMT_SNAPSHOT_LATEST,
	HS_STMT_TASK_INSERT,
	HS_STMT_TASK_UPDATE,
	HS_STMT_TASK_GET,
	HS_STMT_TASK_LIST,
	HS_STMT_TASK_NEWEST,
	HS_STMT_TASK_ALL,
	HS_STMT_TASK_HEARTBEAT,
	HS_STMT_EVENT_APPEND,
	HS_STMT_EVENT_LIST,
	HS_STMT_EVENT_LAST,
	HS_STMT_OWNER_CLAIM,
	HS_STMT_OWNER_GET,
	HS_STMT_OWNER_COUNT,
	HS_STMT_USER_SET_DISABLED,
	HS_STMT_USER_DELETE,
	HS_STMT_REFRESH_REVOKE_USER,
	HS_STMT_REVOCATION_PUT,
	HS_STMT_REVOCATION_LIST,
	HS_STMT_REVOCATION_DELETE_EXPIRED,
	HS_STMT_APIKEY_INSERT,
	HS_STMT_APIKEY_GET,
	HS_STMT_APIKEY_LIST,
	HS_STMT_APIKEY_LIST_ALL,
	HS_STMT_APIKEY_CHANGES,
	HS_STMT_APIKEY_REVOKE,
	HS_STMT_APIKEY_TOUCH,
	HS_STMT_APIKEY_COUNT,
	HS_STMT_NODE_PUT,
	HS_STMT_NODE_GET,
	HS_STMT_NODE_LIST,
	HS_STMT_NODE_DELETE,
	HS_STMT_LEASE_ACQUIRE,
	HS_STMT_LEASE_ACQUIRE_MANY,
	HS_STMT_LEASE_GET,
	HS_STMT_LEASE_RELEASE,
	HS_STMT_LEASE_CHECK,
	HS_STMT_LEASE_RENEW_NODE,
	HS_STMT_LEASE_HELD_AFTER,
	HS_STMT_LEASE_TAKE_EXPIRED,
	HS_STMT_TASK_GET_MANY,
	HS_STMT_NODE_RENEW,
	HS_STMT_TASK_HEARTBEAT_BATCH,
	HS_STMT_SANDBOX_TAKE_LOST,
	HS_STMT_NODE_CLAIM,
	HS_STMT_SANDBOX_ADOPT_UNOWNED,
	HS_STMT_SANDBOX_MARK_MISSING,
	HS_STMT__COUNT
} hs_stmt_id;

/* One queued heartbeat (store_heartbeat.c, group commit): on the blocking caller's
 * stack, or allocated by hs_store_task_heartbeat_async with its strings
 * after the struct. */
typedef struct hs_store__beat hs_store__beat;
struct hs_store__beat {
	struct hs_store__beat *next;
	const char *task_id;
	const char *details;   /* never NULL */
	int64_t step, total, now_ms;
	double cpu, mem_mb, disk_mb;
	bool heap;             /* async: allocated here, strings follow the struct */
	struct hs_store__beat *latest; /* a later beat of the same task in the batch, or NULL */
	hs_store_beat_done_fn done;
	void *arg;
	int rc;                /* result, with err, valid when done runs */
	hs_error err;
};

/* PostgreSQL: the UPDATEs of a whole heartbeat batch (sorted by task_id) as
 * one statement over unnest()ed arrays, one round trip instead of one per
 * beat; each beat's rc is HS_OK or HS_NOT_FOUND. Caller holds the lock
 * inside the batch's transaction. On an error (rc returned, err set) the
 * transaction is aborted and no beat's result is set. */
int hs_store__pg_heartbeat_batch(hs_store *s, hs_store__beat *batch, hs_error *err);

/* A statement of the open backend: prepared (SQLite: cached per id) or
 * assembled (PostgreSQL: per call) by hs_store__stmt, bound, stepped, read
 * and given back with hs_store__release. Each backend's statement embeds
 * this as its first member. */
typedef struct hs_stmt hs_stmt;

/* The backend: every SQL operation the entity files use goes through it,
 * so users.c, tokens.c, sandboxes.c, tasks.c, owners.c and apikeys.c are
 * written once for both. lock/unlock bracket every public call: SQLite
 * takes its one connection's mutex, PostgreSQL takes a connection from its
 * pool (for the calling thread) and puts it back. */
typedef struct hs_store__driver {
	const char *name;        /* "sqlite" | "postgres" */
	bool postgres;           /* pick the PostgreSQL text of HS_STMT2 */
	/* A failed statement aborts the whole transaction (PostgreSQL) rather
	 * than only undoing itself (SQLite). */
	bool errors_abort_txn;
	void (*lock)(hs_store *s);
	void (*unlock)(hs_store *s);
	int (*stmt)(hs_store *s, hs_stmt_id id, const char *sql, hs_stmt **out, hs_error *err);
	void (*release)(hs_stmt *st);
	int (*bind_text)(hs_stmt *st, int idx, const char *v, size_t n, hs_error *err); /* v NULL: NULL */
	int (*bind_int)(hs_stmt *st, int idx, int64_t v, hs_error *err);
	int (*bind_double)(hs_stmt *st, int idx, double v, hs_error *err);
	int (*step)(hs_stmt *st, const char *op, hs_error *err);
	int64_t (*col_int64)(hs_stmt *st, int col);
	double (*col_double)(hs_stmt *st, int col);
	const char *(*col_text)(hs_stmt *st, int col, size_t *n); /* NULL for SQL NULL */
	int64_t (*changes)(hs_stmt *st);          /* rows changed by the last step */
	bool (*failed_alone)(hs_stmt *st);        /* last step's error undid only itself */
	int (*exec)(hs_store *s, const char *sql, const char *op, hs_error *err); /* under lock */
	int (*begin)(hs_store *s, hs_error *err);
	int (*commit)(hs_store *s, hs_error *err);
	void (*rollback)(hs_store *s);
	int (*schema_version)(hs_store *s, int *out, hs_error *err); /* takes the lock */
	void (*close)(hs_store *s);
	/* The backend's own metric families (NULL: none). */
	void (*collect)(hs_store *s, hs_metrics_out *out);
} hs_store__driver;

struct hs_stmt {
	const hs_store__driver *drv;
	hs_store *s;
};

struct hs_store {
	const hs_store__driver *drv;
	void *impl;             /* the driver's own state */
	char path[HS_STORE_PATH_MAX + 16]; /* what errors name: a file or a DSN without secrets */
	/* Heartbeat group commit (design in store_heartbeat.c). hb_mu guards the hb_*
	 * fields and every queued beat's flags; it is never held together
	 * with the driver's lock. */
	pthread_mutex_t hb_mu;
	pthread_cond_t hb_cv;   /* the committer waits here */
	pthread_t hb_thread;
	bool hb_thread_started, hb_stopping;
	hs_store__beat *hb_head, *hb_tail; /* waiting for a batch, FIFO */
	size_t hb_queued;
	size_t hb_async;        /* async beats queued or in a batch (bounded) */
	bool hb_committing;     /* the committer is running a batch */
	uint64_t hb_batches;    /* batches run and beats in them (stats) */
	uint64_t hb_beats;
	hs_counter unavailable; /* HS_UNAVAILABLE answers of the backend */
	/* metrics (hs_store_collect_metrics) */
	hs_histogram m_commit_seconds;
	hs_histogram m_beats_per_commit;
};

/* Stops the heartbeat committer after it committed every queued beat. */
void hs_store__heartbeat_stop(hs_store *s);

/* A snapshot of the heartbeat queue, for tests and diagnostics. */
typedef struct hs_store__hb_stats {
	size_t queued;
	bool committing;
	uint64_t batches;
	uint64_t beats;
} hs_store__hb_stats;

void hs_store__heartbeat_stats(hs_store *s, hs_store__hb_stats *out);

/* SQLite migrations: entry i takes the schema from version i to i + 1. */
extern const char *const hs_store__migrations[];
extern const int hs_store__migration_count;
/* PostgreSQL migrations (store_pg_schema.c): the same versions, the same
 * tables, in PostgreSQL's dialect; hs_store__pg_migration_count equals
 * hs_store__migration_count. */
extern const char *const hs_store__pg_migrations[];
extern const int hs_store__pg_migration_count;

/* The backends' open functions (store_sqlite.c, store_pg.c). Each fills a
 * calloc'd store whose hb_mu is initialised (s->drv, s->impl, s->path). */
int hs_store__sqlite_open(hs_store *s, const char *db_path, hs_error *err);
int hs_store__pg_open(hs_store *s, const char *dsn, hs_error *err);

/* A new PostgreSQL connection configured like the pool's (timeouts,
 * synchronous_commit), outside the pool: the caller owns it (PQfinish).
 * struct pg_conn is libpq's PGconn. HS_UNAVAILABLE if it cannot connect. */
struct pg_conn;
int hs_store__pg_connect(hs_store *s, struct pg_conn **out, hs_error *err);

#define HS_STORE_ROW 1 /* hs_store__step: a row is ready */

static inline void hs_store__lock(hs_store *s) { s->drv->lock(s); }
static inline void hs_store__unlock(hs_store *s) { s->drv->unlock(s); }

/* Statement `id` (SQLite: prepared from sql on first use and cached; its
 * ?N parameters are $N for PostgreSQL), with no bindings, into *out.
 * hs_store__stmt2 gives each backend its own text. Caller holds the lock. */
int hs_store__stmt(hs_store *s, hs_stmt_id id, const char *sql, hs_stmt **out, hs_error *err);
int hs_store__stmt2(hs_store *s, hs_stmt_id id, const char *sql_sqlite, const char *sql_pg,
		    hs_stmt **out, hs_error *err);

/* Give a statement back after use (NULL allowed). */
static inline void hs_store__release(hs_stmt *st)
{
	if (st != NULL)
		st->drv->release(st);
}

/* Step: HS_STORE_ROW with a row to read, HS_OK when done, else the
 * translated error (constraint -> EXISTS / NOT_FOUND (foreign key) /
 * INVALID, busy, read-only, full, connection lost -> UNAVAILABLE, the
 * rest INTERNAL) with op in the message. */
static inline int hs_store__step(hs_stmt *st, const char *op, hs_error *err)
{
	return st->drv->step(st, op, err);
}

/* Step a statement that returns no row; HS_OK when done. */
int hs_store__step_done(hs_store *s, hs_stmt *st, const char *op, hs_error *err);
/* Step to a row that must exist (HS_INTERNAL naming op if there is none). */
int hs_store__step_row(hs_stmt *st, const char *op, hs_error *err);

/* The PostgreSQL advisory-lock keys (one database, any number of nodes):
 * migrations, and the order of event ids (store_tasks.c). */
#define HS_STORE_PG_MIGRATE_LOCK "7237461001"
#define HS_STORE_PG_EVENTS_LOCK "7237461002"
#define HS_STORE_PG_REVOCATIONS_LOCK "7237461003"
#define HS_STORE_PG_APIKEYS_LOCK "7237461004"

/* Rows numbered by a growing seq (events, revocations, API keys) are read
 * incrementally ("seq > the last I saw"), so a later seq must never commit
 * before an earlier one. SQLite serialises writers; on PostgreSQL (several
 * nodes, concurrent transactions) hs_store__ordered_lock takes the
 * transaction-scoped advisory lock key inside the caller's transaction.
 * hs_store__ordered_begin also begins one (PostgreSQL only) and
 * hs_store__ordered_end commits it when rc is HS_OK, else rolls it back,
 * returning the final code. No-ops on SQLite. Caller holds the lock. */
int hs_store__ordered_lock(hs_store *s, const char *key, hs_error *err);
int hs_store__ordered_begin(hs_store *s, const char *key, hs_error *err);
int hs_store__ordered_end(hs_store *s, int rc, hs_error *err);

static inline int64_t hs_store__col_int64(hs_stmt *st, int col) { return st->drv->col_int64(st, col); }
static inline int hs_store__col_int(hs_stmt *st, int col) { return (int)st->drv->col_int64(st, col); }
static inline double hs_store__col_double(hs_stmt *st, int col) { return st->drv->col_double(st, col); }
static inline int64_t hs_store__changes(hs_stmt *st) { return st->drv->changes(st); }

/* BEGIN (SQLite: IMMEDIATE) / COMMIT / ROLLBACK on the locked connection. */
static inline int hs_store__begin(hs_store *s, hs_error *err) { return s->drv->begin(s, err); }
/* The driver's COMMIT, timed into harness_store_commit_seconds (store.c). */
int hs_store__commit(hs_store *s, hs_error *err);
static inline void hs_store__rollback(hs_store *s) { s->drv->rollback(s); }

/* Bind text (NULL binds SQL NULL). HS_INVALID if v is not NUL-terminated
 * within cap bytes (longer than the row field): never truncated. */
int hs_store__bind_text(hs_store *s, hs_stmt *st, int idx, const char *v, size_t cap,
			const char *field, hs_error *err);
int hs_store__bind_int(hs_store *s, hs_stmt *st, int idx, int64_t v, hs_error *err);
int hs_store__bind_double(hs_store *s, hs_stmt *st, int idx, double v, hs_error *err);

/* Copy text column col into dst[cap]; NULL reads as "". HS_INTERNAL if the
 * stored value does not fit (a row written by something else). */
int hs_store__col_text(hs_stmt *st, int col, char *dst, size_t cap, const char *field,
		       hs_error *err);

/* Check a caller's key argument: non-NULL, non-empty, shorter than cap. */
int hs_store__check_key(const char *v, size_t cap, const char *field, hs_error *err);

/* Grow *arr (of elem-sized items) so that it holds at least n + 1 items. */
int hs_store__grow(void **arr, size_t *cap, size_t n, size_t elem, hs_error *err);

/* Reads the current row of st into row (a row struct of the table). */
typedef int (*hs_store__row_reader)(hs_stmt *st, void *row, hs_error *err);

/* Steps a prepared, bound query to the end, reading every row with read
 * into a malloc'd array of elem-sized rows: *out (free()) and *n_out on
 * success. what names the query in errors. Caller holds the lock. */
int hs_store__collect(hs_store *s, hs_stmt *st, size_t elem, hs_store__row_reader read,
		      const char *what, void **out, size_t *n_out, hs_error *err);

/* The end of a call that read rows into a malloc'd array (n of elem
 * bytes; NULL when 0) with result rc: on HS_OK sorts them by cmp and hands
 * them over (*out, free(); *n_out); otherwise frees them and leaves *out
 * and *n_out alone. Returns rc. */
int hs_store__sorted_out(int rc, void *rows, size_t n, size_t elem,
			 int (*cmp)(const void *, const void *), void **out, size_t *n_out);

/* SELECTs one row by one text key bound as ?1 (at most key_cap - 1 bytes,
 * named key_name in errors) into out (elem bytes; untouched on error);
 * HS_NOT_FOUND with not_found as the message when there is none. Takes the
 * lock itself. */
int hs_store__get_one(hs_store *s, int stmt_id, const char *sql, const char *key, size_t key_cap,
		      const char *key_name, size_t elem, hs_store__row_reader read,
		      const char *not_found, void *out, hs_error *err);

/* HS_OK if node_id holds task_id's lease with fence, live at now_ms
 * (PostgreSQL: the row is locked until the transaction ends), else
 * HS_CONFLICT. Caller holds the lock, inside a transaction. */
int hs_store__lease_check_locked(hs_store *s, const char *task_id, const char *node_id,
				 int64_t fence, int64_t now_ms, hs_error *err);

/* 0 -> HS_STORE_LIST_DEFAULT, > HS_STORE_LIST_MAX -> HS_STORE_LIST_MAX. */
size_t hs_store__limit(size_t limit);
/* The rule for a list of task ids bound as one statement parameter: at
 * most HS_STORE_LIST_MAX, each a checked key, sorted and unique, as a JSON
 * array of strings into *out (malloc'd, free()): ", \ and control
 * characters escaped. */
int hs_store__json_task_ids(const char *const *task_ids, size_t n, char **out, hs_error *err);

#define HS_BIND_T(st, i, v, cap, name)                                                  \
	do {                                                                            \
		if ((rc = hs_store__bind_text(s, (st), (i), (v), (cap), (name), err)) != HS_OK) \
			goto done;                                                      \
	} while (0)
#define HS_BIND_I(st, i, v)                                                            \
	do {                                                                           \
		if ((rc = hs_store__bind_int(s, (st), (i), (int64_t)(v), err)) != HS_OK) \
			goto done;                                                     \
	} while (0)
#define HS_BIND_D(st, i, v)                                                            \
	do {                                                                           \
		if ((rc = hs_store__bind_double(s, (st), (i), (v), err)) != HS_OK)     \
			goto done;                                                     \
	} while (0)
#define HS_COL_T(st, i, dst, name)                                                      \
	do {                                                                            \
		if ((rc = hs_store__col_text((st), (i), (dst), sizeof(dst), (name), err)) != HS_OK) \
			goto done;                                                      \
	} while (0)
#define HS_STMT(st, id, sql)                                                           \
	do {                                                                           \
		if ((rc = hs_store__stmt(s, (id), (sql), &(st), err)) != HS_OK)        \
			goto done;                                                     \
	} while (0)
/* One statement, its text per backend (SQLite, PostgreSQL). */
#define HS_STMT2(st, id, sql_sqlite, sql_pg)                                            \
	do {                                                                            \
		if ((rc = hs_store__stmt2(s, (id), (sql_sqlite), (sql_pg), &(st), err)) != HS_OK) \
			goto done;                                                      \
	} while (0)
/* Bind a fixed-size char array field of a row. */
#define HS_BIND_F(st, i, row, fld) HS_BIND_T(st, i, (row)->fld, sizeof((row)->fld), #fld)

#endif
