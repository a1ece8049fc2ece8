/* Internals shared by the SQLite store's files (store.c, migrations.c and one
 * file per entity). Never included outside server/store/. */
#ifndef HS_SERVER_STORE_INTERNAL_H
#define HS_SERVER_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

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
	HS_STMT_TASK_ALL,
	HS_STMT_TASK_HEARTBEAT,
	HS_STMT_EVENT_APPEND,
	HS_STMT_EVENT_LIST,
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
	HS_STMT__COUNT
} hs_stmt_id;

/* One queued heartbeat, on its caller's stack (tasks.c, group commit). */
typedef struct hs_store__beat hs_store__beat;

struct hs_store {
	pthread_mutex_t mu;     /* guards db, stmts and sqlite3_errmsg() */
	sqlite3 *db;
	sqlite3_stmt *stmts[HS_STMT__COUNT];
	char path[HS_STORE_PATH_MAX + 16];
	/* Heartbeat group commit (design in tasks.c). hb_mu guards the hb_*
	 * fields and every queued beat's flags; it is never held together
	 * with mu. */
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

/* Migrations: entry i takes the schema from version i to i + 1. */
extern const char *const hs_store__migrations[];
extern const int hs_store__migration_count;

void hs_store__lock(hs_store *s);
void hs_store__unlock(hs_store *s);

/* Cached statement `id` (prepared from sql on first use), reset and with
 * no bindings, into *out. Caller holds the lock. */
int hs_store__stmt(hs_store *s, hs_stmt_id id, const char *sql, sqlite3_stmt **out,
		   hs_error *err);

/* Reset a statement after use (keeps it cached). */
void hs_store__release(sqlite3_stmt *st);

/* Translate a SQLite result code to an hs_code with sqlite3_errmsg() in the
 * message: constraint -> EXISTS / NOT_FOUND (foreign key), busy, read-only,
 * I/O, full -> UNAVAILABLE, anything else -> INTERNAL. Caller holds the lock. */
int hs_store__fail(hs_store *s, int rc, const char *op, hs_error *err);

/* Step a statement that returns no row; HS_OK on SQLITE_DONE. */
int hs_store__step_done(hs_store *s, sqlite3_stmt *st, const char *op, hs_error *err);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK with the cached statements. */
int hs_store__begin(hs_store *s, hs_error *err);
int hs_store__commit(hs_store *s, hs_error *err);
void hs_store__rollback(hs_store *s);

/* Bind text (NULL binds SQL NULL). HS_INVALID if v is not NUL-terminated
 * within cap bytes (longer than the row field): never truncated. */
int hs_store__bind_text(hs_store *s, sqlite3_stmt *st, int idx, const char *v, size_t cap,
			const char *field, hs_error *err);
int hs_store__bind_int(hs_store *s, sqlite3_stmt *st, int idx, int64_t v, hs_error *err);
int hs_store__bind_double(hs_store *s, sqlite3_stmt *st, int idx, double v, hs_error *err);

/* Copy text column col into dst[cap]; NULL reads as "". HS_INTERNAL if the
 * stored value does not fit (a row written by something else). */
int hs_store__col_text(sqlite3_stmt *st, int col, char *dst, size_t cap, const char *field,
		       hs_error *err);

/* Check a caller's key argument: non-NULL, non-empty, shorter than cap. */
int hs_store__check_key(const char *v, size_t cap, const char *field, hs_error *err);

/* Grow *arr (of elem-sized items) so that it holds at least n + 1 items. */
int hs_store__grow(void **arr, size_t *cap, size_t n, size_t elem, hs_error *err);

/* Reads the current row of st into row (a row struct of the table). */
typedef int (*hs_store__row_reader)(sqlite3_stmt *st, void *row, hs_error *err);

/* Steps a prepared, bound query to the end, reading every row with read
 * into a malloc'd array of elem-sized rows: *out (free()) and *n_out on
 * success. what names the query in errors. Caller holds the lock. */
int hs_store__collect(hs_store *s, sqlite3_stmt *st, size_t elem, hs_store__row_reader read,
		      const char *what, void **out, size_t *n_out, hs_error *err);

/* SELECTs one row by one text key bound as ?1 (at most key_cap - 1 bytes,
 * named key_name in errors) into out (elem bytes; untouched on error);
 * HS_NOT_FOUND with not_found as the message when there is none. Takes the
 * lock itself. */
int hs_store__get_one(hs_store *s, int stmt_id, const char *sql, const char *key, size_t key_cap,
		      const char *key_name, size_t elem, hs_store__row_reader read,
		      const char *not_found, void *out, hs_error *err);

/* 0 -> HS_STORE_LIST_DEFAULT, > HS_STORE_LIST_MAX -> HS_STORE_LIST_MAX. */
size_t hs_store__limit(size_t limit);

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
/* Bind a fixed-size char array field of a row. */
#define HS_BIND_F(st, i, row, fld) HS_BIND_T(st, i, (row)->fld, sizeof((row)->fld), #fld)

#endif
