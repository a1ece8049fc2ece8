/* The store: the one interface harnessd's services use for users, refresh
 * tokens, sandboxes, snapshots, tasks and task events. Two backends live
 * behind it with the same semantics: embedded SQLite (the default) and
 * PostgreSQL (shared by several nodes); nothing here names either.
 *
 * Every function returns HS_OK or a negative hs_code and fills err (NULL
 * allowed): HS_INVALID for bad input (a string longer than its row field is
 * refused, never truncated), HS_NOT_FOUND, HS_EXISTS on a duplicate key,
 * HS_CONFLICT on a state precondition, HS_UNAVAILABLE when the database
 * cannot be written (disk full, read-only, locked by another process,
 * PostgreSQL unreachable or restarting: the next call reconnects),
 * HS_INTERNAL otherwise. `*out` is assigned only on success.
 *
 * Thread-safe: any function may be called from any thread at the same time.
 * Callbacks run after the store's lock is released, so they may call back
 * into the store. Rows are plain structs with bounded, NUL-terminated
 * strings; times are int64 milliseconds since the Unix epoch. */
#ifndef HS_SERVER_STORE_H
#define HS_SERVER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "metrics.h"

typedef struct hs_store hs_store;

#define HS_STORE_ID_MAX 128      /* ids: users, tokens, sandboxes, tasks, ... */
#define HS_STORE_NAME_MAX 256    /* email, display name */
#define HS_STORE_HASH_MAX 256    /* argon2id encoded string, hex sha256 */
#define HS_STORE_SHORT_MAX 32    /* role, driver, snapshot type */
#define HS_STORE_PATH_MAX 1024
#define HS_STORE_TEXT_MAX 1024   /* details, messages, failure reasons */
#define HS_STORE_JSON_MAX 8192   /* config_json, labels_json */
#define HS_STORE_LIST_DEFAULT 100 /* limit 0 means this */
#define HS_STORE_LIST_MAX 1000    /* larger limits are clamped */

/* ---- lifecycle ---------------------------------------------------------- */

/* Open (or create) <data_dir>/harness.db, creating data_dir with mode 0700
 * if missing, and apply pending migrations. HS_CONFLICT if the database was
 * written by a newer harnessd (schema version unknown to this code).
 * A database that is up to date but not writable opens read-only:
 * hs_store_check_writable() then fails. Free with hs_store_free(). */
int hs_store_open(hs_store **out, const char *data_dir, hs_error *err);

/* Open the store --store names: NULL or "" = the embedded SQLite default
 * (hs_store_open on data_dir), "sqlite:<path>" = SQLite in that file
 * (parent directories created 0700), "postgres://..." or
 * "postgresql://..." = a PostgreSQL database (libpq connection URI; the
 * schema is migrated, once, even when several harnessd start together).
 * HS_INVALID for any other form, HS_UNAVAILABLE if the database cannot be
 * reached, HS_CONFLICT as hs_store_open. Free with hs_store_free(). */
int hs_store_open_spec(hs_store **out, const char *spec, const char *data_dir, hs_error *err);

/* True if spec names a PostgreSQL store (postgres:// or postgresql://). */
bool hs_store_spec_is_postgres(const char *spec);

/* "sqlite" or "postgres" ("" for NULL). */
const char *hs_store_backend(hs_store *store);

void hs_store_free(hs_store *store); /* NULL is a no-op */

/* A metrics collector (common/metrics.h; payload: the store):
 * harness_store_info{backend}, harness_store_unavailable_total (calls the
 * database could not serve), harness_store_heartbeat_batches_total and
 * harness_store_heartbeats_total (group commit: beats per commit), the
 * histograms harness_store_commit_seconds (every COMMIT, fsync / WAL flush
 * included) and harness_store_heartbeats_per_commit (heartbeats sharing one
 * group commit), and on PostgreSQL
 * harness_store_pool_connections{state="busy|idle|closed"} and
 * harness_store_pool_waits_total (calls that waited for a connection). */
void hs_store_collect_metrics(hs_metrics_out *out, void *payload);

/* Schema version of the open database (SQLite: PRAGMA user_version;
 * PostgreSQL: the harness_schema table). */
int hs_store_schema_version(hs_store *store, int *out, hs_error *err);

/* Schema version this code migrates to. */
int hs_store_schema_version_latest(void);

/* A real write (a probe row, in a transaction) for readiness probes:
 * HS_OK if the database accepts writes now, HS_UNAVAILABLE otherwise. */
int hs_store_check_writable(hs_store *store, hs_error *err);

/* ---- users -------------------------------------------------------------- */

typedef struct hs_store_user_row {
	char id[HS_STORE_ID_MAX];          /* "usr_" + 16 hex */
	char email[HS_STORE_NAME_MAX];     /* stored lowercase */
	char name[HS_STORE_NAME_MAX];
	char role[HS_STORE_SHORT_MAX];     /* "user" | "admin" */
	char password_hash[HS_STORE_HASH_MAX]; /* never log it */
	int64_t created_at_ms;
	bool disabled;
} hs_store_user_row;

/* Email is lowercased before it is stored. HS_EXISTS on duplicate id/email;
 * HS_INVALID on empty id/email or a role other than "user"/"admin". */
int hs_store_user_insert(hs_store *store, const hs_store_user_row *user, hs_error *err);
int hs_store_user_get_by_id(hs_store *store, const char *id, hs_store_user_row *out, hs_error *err);
/* The email is normalised (lowercased) before the lookup. */
int hs_store_user_get_by_email(hs_store *store, const char *email, hs_store_user_row *out, hs_error *err);
int hs_store_user_count(hs_store *store, int64_t *out, hs_error *err);
/* Set or clear the disabled flag; HS_NOT_FOUND for an unknown id. */
int hs_store_user_set_disabled(hs_store *store, const char *id, bool disabled, hs_error *err);
/* Delete the user and (cascade) its refresh tokens; HS_NOT_FOUND if unknown. */
int hs_store_user_delete(hs_store *store, const char *id, hs_error *err);
/* Users with id > after_id (NULL or "" = from the start), ordered by id.
 * *out is a malloc'd array of *n_out rows (NULL when 0); release with free(). */
int hs_store_user_list(hs_store *store, const char *after_id, size_t limit,
		       hs_store_user_row **out, size_t *n_out, hs_error *err);

/* ---- refresh tokens ------------------------------------------------------ */

typedef struct hs_store_refresh_row {
	char token_hash[HS_STORE_HASH_MAX]; /* hex sha256 of the opaque token */
	char user_id[HS_STORE_ID_MAX];
	char family_id[HS_STORE_ID_MAX];
	int64_t issued_at_ms;
	int64_t expires_at_ms;
	int64_t used_at_ms;                 /* 0 = unused */
	bool revoked;
} hs_store_refresh_row;

/* HS_EXISTS on a duplicate hash, HS_NOT_FOUND if user_id is unknown. */
int hs_store_refresh_insert(hs_store *store, const hs_store_refresh_row *row, hs_error *err);
int hs_store_refresh_get(hs_store *store, const char *token_hash, hs_store_refresh_row *out, hs_error *err);
/* Atomically mark the token used (used_at_ms = now_ms) if it is unused and
 * not revoked. HS_OK: this call consumed it. HS_CONFLICT: it was already
 * used or revoked (reuse: revoke the family). HS_NOT_FOUND: unknown. Expiry
 * is the caller's check (hs_store_refresh_get first). */
int hs_store_refresh_consume(hs_store *store, const char *token_hash, int64_t now_ms, hs_error *err);
/* Revoke every token of a family; *n_out (NULL allowed) = rows changed. */
int hs_store_refresh_revoke_family(hs_store *store, const char *family_id, int64_t *n_out, hs_error *err);
int hs_store_refresh_revoke(hs_store *store, const char *token_hash, hs_error *err);
/* Delete tokens with expires_at_ms <= now_ms; *n_out (NULL allowed). */
int hs_store_refresh_delete_expired(hs_store *store, int64_t now_ms, int64_t *n_out, hs_error *err);
/* Revoke every refresh token of a user; *n_out (NULL allowed) = rows changed. */
int hs_store_refresh_revoke_user(hs_store *store, const char *user_id, int64_t *n_out, hs_error *err);

/* ---- access-token revocations ---------------------------------------------
 * What the auth module refuses before tokens expire: a user (disabled or
 * deleted), a session (a refresh-token family, logged out or reused) or one
 * token (jti). Rows live until expires_at_ms; seq grows with every write so
 * a reader can fetch only what is new. */

typedef struct hs_store_revocation_row {
	int64_t seq;                   /* set by the store */
	char kind[HS_STORE_SHORT_MAX]; /* "user" | "session" | "token" */
	char id[HS_STORE_ID_MAX];
	int64_t revoked_at_ms;
	int64_t expires_at_ms;
} hs_store_revocation_row;

/* Insert or replace (kind, id); the row gets a new seq. */
int hs_store_revocation_put(hs_store *store, const hs_store_revocation_row *row, hs_error *err);
/* Rows with seq > after_seq and expires_at_ms > now_ms, by seq, at most
 * limit (0 = default, clamped like every list). *out: malloc'd array of
 * *n_out rows (NULL when 0); release with free(). */
int hs_store_revocation_list(hs_store *store, int64_t after_seq, int64_t now_ms, size_t limit,
			     hs_store_revocation_row **out, size_t *n_out, hs_error *err);
/* Delete rows with expires_at_ms <= now_ms; *n_out (NULL allowed). */
int hs_store_revocation_delete_expired(hs_store *store, int64_t now_ms, int64_t *n_out,
				       hs_error *err);

/* ---- API keys ----------------------------------------------------------------
 * Service identities (server/auth/apikey.h). The key itself is never
 * stored: secret_hash is the hex SHA-256 of it. seq grows with every
 * insert and revoke (not with last-used times), so a reader can fetch only
 * what changed. */

typedef struct hs_store_apikey_row {
	char id[HS_STORE_ID_MAX];                /* "hsk_" + 16 hex */
	char name[HS_STORE_NAME_MAX];
	char role[HS_STORE_SHORT_MAX];           /* "user" | "admin" */
	char secret_hash[HS_STORE_HASH_MAX];     /* never log it */
	char allowed_methods[HS_STORE_JSON_MAX]; /* comma-separated; "" = every method */
	char created_by[HS_STORE_ID_MAX];
	int64_t created_at_ms;
	int64_t expires_at_ms;   /* 0 = never */
	int64_t last_used_at_ms; /* 0 = never used */
	int64_t revoked_at_ms;   /* 0 = active */
	int64_t seq;             /* set by the store */
} hs_store_apikey_row;

/* HS_EXISTS on a duplicate id; HS_INVALID on a role other than user/admin. */
int hs_store_apikey_insert(hs_store *store, const hs_store_apikey_row *row, hs_error *err);
int hs_store_apikey_get(hs_store *store, const char *id, hs_store_apikey_row *out, hs_error *err);
/* Keys with id > after_id ("" or NULL = from the start), by id, revoked ones
 * only when include_revoked. *out: malloc'd array (free()), NULL when 0. */
int hs_store_apikey_list(hs_store *store, const char *after_id, size_t limit,
			 bool include_revoked, hs_store_apikey_row **out, size_t *n_out,
			 hs_error *err);
/* Keys with seq > after_seq, by seq (revoked ones included). */
int hs_store_apikey_changes(hs_store *store, int64_t after_seq, size_t limit,
			    hs_store_apikey_row **out, size_t *n_out, hs_error *err);
/* Sets revoked_at_ms (if not yet revoked) and a new seq; the row as it is
 * now into *out (NULL allowed). HS_NOT_FOUND for an unknown id. */
int hs_store_apikey_revoke(hs_store *store, const char *id, int64_t now_ms,
			   hs_store_apikey_row *out, hs_error *err);
/* Raises last_used_at_ms of ids[i] to times[i] (never lowers it), all in
 * one transaction; unknown ids are skipped. */
int hs_store_apikey_touch(hs_store *store, const char *const *ids, const int64_t *times,
			  size_t n, hs_error *err);
/* Keys not revoked (expired ones included). */
int hs_store_apikey_count_active(hs_store *store, int64_t *out, hs_error *err);

/* ---- task ownership ---------------------------------------------------------
 * Task ids are one namespace: the first user to name a task id (by
 * registering it, checkpointing it, giving it to a sandbox or naming its
 * workspace) owns it and everything scoped to it, for good. */

/* Claim task_id for owner unless someone has it: atomic, so two users
 * racing for a new id cannot both win. The owner (the caller's or the
 * earlier one) goes to owner_out either way; the caller compares. */
int hs_store_task_claim(hs_store *store, const char *task_id, const char *owner, int64_t now_ms,
			char owner_out[HS_STORE_ID_MAX], hs_error *err);
/* HS_NOT_FOUND when nobody has claimed task_id. */
int hs_store_task_owner(hs_store *store, const char *task_id, char owner_out[HS_STORE_ID_MAX],
			hs_error *err);
/* How many task ids owner holds (quota checks). */
int hs_store_task_owner_count(hs_store *store, const char *owner, int64_t *out, hs_error *err);

/* ---- sandboxes and snapshots --------------------------------------------- */

typedef struct hs_store_sandbox_row {
	char sandbox_id[HS_STORE_ID_MAX];
	char owner[HS_STORE_ID_MAX];
	char task_id[HS_STORE_ID_MAX];
	char driver[HS_STORE_SHORT_MAX];
	int state;                    /* the sandbox module's enum, stored as is */
	int64_t pid;
	uint64_t pid_start_time;      /* /proc/<pid>/stat starttime, for re-adoption */
	int32_t vcpu_count;
	int64_t mem_size_mib;
	int64_t ttl_seconds;
	int64_t expires_at_ms;
	int64_t created_at_ms;
	int64_t started_at_ms;
	int32_t exit_code;
	char failure_reason[HS_STORE_TEXT_MAX];
	char config_json[HS_STORE_JSON_MAX];  /* driver-specific config */
	char labels_json[HS_STORE_JSON_MAX];
	char log_path[HS_STORE_PATH_MAX];
	char runtime_dir[HS_STORE_PATH_MAX];
	int64_t stopped_at_ms;        /* 0 = not stopped (the module decides when) */
	char node_id[HS_STORE_ID_MAX]; /* the node that runs it; "" = the one node of a
					* single-node store */
} hs_store_sandbox_row;

/* Lists are newest first: ordered by (created_at_ms, sandbox_id) descending.
 * The cursor is the (created_at_ms, sandbox_id) of the last row of the
 * previous page; the next page starts strictly after it, so rows inserted
 * meanwhile never shift a page. */
typedef struct hs_store_sandbox_filter {
	const char *owner;           /* NULL = every owner */
	const char *task_id;         /* NULL = any task */
	int state;                   /* < 0 = any state */
	const char *after_id;        /* cursor: NULL = first page */
	int64_t after_created_at_ms; /* cursor (read only with after_id) */
	size_t limit;
	int not_state;               /* < 0 = none; else rows in this state are left out */
	const char *labels_json;     /* NULL = any; else a JSON object of label pairs that
				      * must all be present with equal values */
	const char *node_id;         /* NULL = any node; else rows run by this node only */
} hs_store_sandbox_filter;

#define HS_STORE_SANDBOX_FILTER_INIT { NULL, NULL, -1, NULL, 0, 0, -1, NULL, NULL }

int hs_store_sandbox_insert(hs_store *store, const hs_store_sandbox_row *row, hs_error *err);
/* Replace every column of the row with this sandbox_id, only while the
 * stored row's node_id is row->node_id (the fence: a node never writes a
 * row another node took over); HS_ABORTED naming the holder if another
 * node holds it, HS_NOT_FOUND if none. */
int hs_store_sandbox_update(hs_store *store, const hs_store_sandbox_row *row, hs_error *err);
int hs_store_sandbox_get(hs_store *store, const char *sandbox_id, hs_store_sandbox_row *out, hs_error *err);
/* Deletes its snapshot rows too (the files are the caller's). */
int hs_store_sandbox_delete(hs_store *store, const char *sandbox_id, hs_error *err);
/* Newest first (created_at_ms DESC, sandbox_id DESC), after the filter's
 * cursor; *out malloc'd (free()), NULL when *n_out is 0. */
int hs_store_sandbox_list(hs_store *store, const hs_store_sandbox_filter *filter,
			  hs_store_sandbox_row **out, size_t *n_out, hs_error *err);
/* Sandboxes of owner whose state != destroyed_state (quota checks). */
int hs_store_sandbox_count_by_owner(hs_store *store, const char *owner, int destroyed_state,
				    int64_t *out, hs_error *err);
/* Rows of no node (node_id "": made by a single harnessd before the store
 * was shared, migration 8) become node_id's: one conditional UPDATE, so
 * the first node to start takes them all and no other node sees any.
 * *n_out (NULL allowed) = how many. */
int hs_store_sandbox_adopt_unowned(hs_store *store, const char *node_id, size_t *n_out,
				   hs_error *err);
/* A lost node's sandboxes, taken over by node_id (several nodes on one
 * store). Every row whose state is not destroyed_state, whose node is
 * neither "" nor node_id, and whose node's row expired at live_after_ms
 * (expires_at_ms <= live_after_ms) becomes
 * failed_state with failure_reason "node <N> lost" (a row already in
 * failed_state: "node <N> lost (failed before: <its reason>)", or just
 * "node <N> lost" past 200 characters), pid 0, stopped_at_ms now_ms if it
 * was 0, node_id = node_id, and, with a runtime_root (NULL or "" = keep
 * them), runtime_dir <runtime_root>/<sandbox_id> and log_path
 * <runtime_dir>/sandbox.log: the taker's own paths, so nothing reloads the
 * lost node's. sandbox_id NULL = every such row, else that one only, and
 * then also a row another (live) node took this way and never ran (still
 * failed_state, pid 0, "node <N> lost...", kept): the node that holds the
 * sandbox's task recovers it even if another survivor's reaper took the
 * sandbox first. At
 * most limit rows (1..HS_STORE_LIST_MAX) per call: call again while
 * *n_out == limit. A node with such rows and no row at all (an older
 * harnessd deleted its row on a clean stop) first gets an expired row at
 * now_ms (first seen missing): its sandboxes wait the same grace. One
 * conditional UPDATE: of several nodes racing,
 * exactly one takes each row (PostgreSQL re-checks the WHERE on a row
 * another node just took: its node is then live). The rows as taken go to
 * *out (malloc'd, free(); NULL when *n_out is 0). */
int hs_store_sandbox_take_lost(hs_store *store, const char *node_id, const char *sandbox_id,
			       const char *runtime_root, int64_t now_ms, int64_t live_after_ms,
			       int failed_state, int destroyed_state, size_t limit,
			       hs_store_sandbox_row **out, size_t *n_out, hs_error *err);

typedef struct hs_store_snapshot_row {
	char snapshot_id[HS_STORE_ID_MAX];
	char sandbox_id[HS_STORE_ID_MAX];
	char type[HS_STORE_SHORT_MAX];  /* e.g. "full", "diff" */
	int64_t created_at_ms;
	char mem_file_path[HS_STORE_PATH_MAX];
	char snapshot_path[HS_STORE_PATH_MAX];
	int64_t size_bytes;
	char base_snapshot_id[HS_STORE_ID_MAX]; /* diff: the full snapshot it layers on; "" */
} hs_store_snapshot_row;

/* HS_EXISTS on duplicate id, HS_NOT_FOUND if the sandbox does not exist. */
int hs_store_snapshot_insert(hs_store *store, const hs_store_snapshot_row *row, hs_error *err);
int hs_store_snapshot_get(hs_store *store, const char *snapshot_id, hs_store_snapshot_row *out, hs_error *err);
/* Oldest first; *out malloc'd (free()), NULL when *n_out is 0. */
int hs_store_snapshot_list_by_sandbox(hs_store *store, const char *sandbox_id,
				      hs_store_snapshot_row **out, size_t *n_out, hs_error *err);
/* Newest by created_at_ms (insertion order breaks ties); HS_NOT_FOUND if none. */
int hs_store_snapshot_latest_for_sandbox(hs_store *store, const char *sandbox_id,
					 hs_store_snapshot_row *out, hs_error *err);

/* ---- tasks and task events ----------------------------------------------- */

typedef struct hs_store_task_row {
	char task_id[HS_STORE_ID_MAX];
	char owner[HS_STORE_ID_MAX];
	int state;                         /* the health module's enum, stored as is */
	int64_t total_steps;
	int64_t current_step;
	int64_t heartbeat_interval_ms;
	int64_t heartbeat_timeout_ms;
	char sandbox_id[HS_STORE_ID_MAX];
	int32_t policy_max_attempts;
	int64_t policy_initial_backoff_ms;
	double policy_multiplier;
	int64_t policy_max_backoff_ms;
	int64_t last_heartbeat_ms;
	int64_t registered_at_ms;
	int32_t recovery_attempts;
	char last_checkpoint_id[HS_STORE_ID_MAX];
	bool cancel_requested;
	double cpu_usage;
	double memory_usage_mb;
	double disk_usage_mb;
	char details[HS_STORE_TEXT_MAX];
	char failure_reason[HS_STORE_TEXT_MAX];
	char workspace[HS_STORE_PATH_MAX];
	char labels_json[HS_STORE_JSON_MAX];
	int64_t updated_at_ms;
	/* Recovery fencing (the health module's meaning, stored as is). */
	int64_t recovery_generation;
	int64_t base_generation;
	int64_t acked_generation;
	bool restored;
	char resume_checkpoint_id[HS_STORE_ID_MAX];
	int64_t resume_step;
	int64_t last_checkpoint_step;
	int64_t deadline_ms;
} hs_store_task_row;

typedef struct hs_store_task_filter {
	const char *owner;    /* NULL = every owner */
	int state;            /* < 0 = any state */
	const char *after_id; /* cursor: task_id > after_id; NULL = start */
	size_t limit;
} hs_store_task_filter;

#define HS_STORE_TASK_FILTER_INIT { NULL, -1, NULL, 0 }

/* Return 0 to continue; any other value stops the iteration and is returned
 * by the iterating function. */
typedef int (*hs_store_task_cb)(const hs_store_task_row *task, void *payload);

int hs_store_task_insert(hs_store *store, const hs_store_task_row *row, hs_error *err); /* HS_EXISTS */
int hs_store_task_update(hs_store *store, const hs_store_task_row *row, hs_error *err); /* whole row */
int hs_store_task_get(hs_store *store, const char *task_id, hs_store_task_row *out, hs_error *err);
/* The rows of up to HS_STORE_LIST_MAX task ids (n) in one query (a
 * takeover batch's tasks), sorted by task_id; an id without a row is not
 * among them; duplicates count once. *out malloc'd (free()), NULL when
 * *n_out is 0. */
int hs_store_task_get_many(hs_store *store, const char *const *task_ids, size_t n,
			   hs_store_task_row **out, size_t *n_out, hs_error *err);
/* Ordered by task_id; *out malloc'd (free()), NULL when *n_out is 0. */
int hs_store_task_list(hs_store *store, const hs_store_task_filter *filter,
		       hs_store_task_row **out, size_t *n_out, hs_error *err);
/* ListTasks across nodes: tasks newest first (registered_at_ms descending,
 * then task_id ascending), filtered by owner (NULL = every owner) and state
 * (< 0 = any); keyset cursor: when has_cursor, only tasks after
 * (after_reg_ms, after_id) in that order. Up to limit rows (bounded as every
 * list); *out malloc'd (free()), NULL when *n_out is 0. */
typedef struct hs_store_task_page {
	const char *owner;
	int state;
	bool has_cursor;
	int64_t after_reg_ms;
	const char *after_id;
	size_t limit;
} hs_store_task_page;
int hs_store_task_list_newest(hs_store *store, const hs_store_task_page *page,
			      hs_store_task_row **out, size_t *n_out, hs_error *err);
/* Call fn for every task whose state is one of states[0..n_states) (the
 * states whose deadline must be re-armed after a restart), in task_id
 * order. The store does not interpret states; the health module passes them. */
int hs_store_task_list_active(hs_store *store, const int *states, size_t n_states,
			      hs_store_task_cb fn, void *payload, hs_error *err);
/* The hot path: update only current_step, total_steps, cpu_usage,
 * memory_usage_mb, disk_usage_mb, details (NULL = ""), last_heartbeat_ms and
 * updated_at_ms (= now_ms). HS_NOT_FOUND if the task does not exist.
 * Concurrent calls share one transaction (group commit); each returns only
 * after the COMMIT holding its update, and if that COMMIT fails every call
 * in it gets the error. */
int hs_store_task_heartbeat(hs_store *store, const char *task_id, int64_t step, int64_t total,
			    double cpu, double mem_mb, double disk_mb, const char *details,
			    int64_t now_ms, hs_error *err);

/* The same without waiting: done(arg, rc, err) runs once, on the store's
 * committer thread, after the COMMIT holding this update returned (rc
 * HS_OK, err NULL) or failed; done must be quick and must not call the
 * store. task_id and details are copied. On an error return (HS_INVALID,
 * HS_LIMIT: 4096 beats already wait for a commit, HS_CANCELLED: closing)
 * done is never called. */
typedef void (*hs_store_beat_done_fn)(void *arg, int rc, const hs_error *err);
int hs_store_task_heartbeat_async(hs_store *store, const char *task_id, int64_t step,
				  int64_t total, double cpu, double mem_mb, double disk_mb,
				  const char *details, int64_t now_ms, hs_store_beat_done_fn done,
				  void *arg, hs_error *err);

typedef struct hs_store_event_row {
	int64_t event_id;                  /* assigned by the store, increasing */
	char task_id[HS_STORE_ID_MAX];
	int type;
	int64_t step;
	char checkpoint_id[HS_STORE_ID_MAX];
	char message[HS_STORE_TEXT_MAX];
	int32_t attempt;
	int state;
	int64_t occurred_at_ms;
	int64_t recovery_generation;
} hs_store_event_row;

typedef int (*hs_store_event_cb)(const hs_store_event_row *event, void *payload);

/* A state change: the whole row (inserted when insert, else updated) and
 * (ev != NULL) its event in one transaction, so a crash keeps both or
 * neither. ev->event_id is ignored; the new id goes to *event_id_out (NULL
 * allowed). HS_EXISTS (insert) / HS_NOT_FOUND (update) leave nothing
 * written. */
int hs_store_task_transition(hs_store *store, const hs_store_task_row *row, bool insert,
			     const hs_store_event_row *ev, int64_t *event_id_out, hs_error *err);

/* hs_store_task_transition on behalf of a task lease: in the same
 * transaction it first checks that node_id holds task_id's lease with this
 * fence and that the lease is live at now_ms (PostgreSQL: the lease row is
 * locked, so a takeover waits for this transaction or wins before it), and
 * writes nothing but answers HS_CONFLICT otherwise: a node that lost its
 * lease cannot act on the task any more. row->task_id names the lease. */
int hs_store_task_transition_fenced(hs_store *store, const hs_store_task_row *row, bool insert,
				    const hs_store_event_row *ev, const char *node_id,
				    int64_t fence, int64_t now_ms, int64_t *event_id_out,
				    hs_error *err);

/* event->event_id is ignored; the new id goes to *out (NULL allowed). */
int hs_store_event_append(hs_store *store, const hs_store_event_row *event, int64_t *out, hs_error *err);
/* Call fn for up to limit events with event_id > after_event_id (of task_id,
 * or of every task if NULL), in event_id order. */
int hs_store_event_list_after(hs_store *store, int64_t after_event_id, const char *task_id,
			      size_t limit, hs_store_event_cb fn, void *payload, hs_error *err);
/* The largest event id stored (0 with no event). */
int hs_store_event_last_id(hs_store *store, int64_t *out, hs_error *err);

/* ---- event announcements -----------------------------------------------------
 * For watchers of events that other nodes append. A listener has a
 * PostgreSQL connection of its own (outside the pool) that LISTENs on
 * harness_task_events. One thread uses a listener at a time. */

typedef struct hs_store_listener hs_store_listener;

/* Never connects (the first wait does); HS_INTERNAL only without memory. */
int hs_store_listener_new(hs_store *store, hs_store_listener **out, hs_error *err);

/* Wait up to timeout_ms for announcements. *max_event_id_out: the largest
 * event id announced since the previous wait; 0 when none came (timeout);
 * -1 right after (re)connecting, when announcements may have been missed:
 * poll hs_store_event_list_after then. HS_UNAVAILABLE when the database
 * cannot be reached (the next wait reconnects). On SQLite (one node, whose
 * watchers learn of events in-process) it sleeps timeout_ms and reports 0. */
int hs_store_listener_wait(hs_store_listener *l, int timeout_ms, int64_t *max_event_id_out,
			   hs_error *err);

void hs_store_listener_free(hs_store_listener *l); /* NULL is a no-op */

/* ---- nodes and task leases -------------------------------------------------
 * For several harnessd nodes on one PostgreSQL store (both backends
 * implement them; on SQLite there is one node). A node advertises itself
 * with a row whose lease (expires_at_ms) it renews; a task's stall
 * detection and recovery belong to the one node holding the task's lease.
 * fence grows by one each time the lease changes hands; writes made on a
 * lease's behalf carry it (hs_store_task_transition_fenced) and are refused
 * once someone else took it over. Every appended event is announced on the
 * PostgreSQL channel harness_task_events (payload: the event id, sent at
 * commit); watchers LISTEN there and fall back to polling
 * hs_store_event_list_after. Times are the callers' (wall clock, ms): nodes
 * must keep their clocks within a small fraction of the lease length. */

typedef struct hs_store_node_row {
	char node_id[HS_STORE_ID_MAX];
	char address[HS_STORE_PATH_MAX]; /* where other nodes reach it (host:port) */
	int64_t started_at_ms;
	int64_t expires_at_ms;           /* live while now < expires_at_ms */
	int64_t updated_at_ms;
} hs_store_node_row;

/* Insert or replace the node's row (advertise / renew). */
int hs_store_node_put(hs_store *store, const hs_store_node_row *row, hs_error *err);
/* Start as node row->node_id: insert the row, or replace one whose lease
 * expired (expires_at_ms <= now_ms: the node died or stopped), in one
 * atomic statement. HS_EXISTS when a live row holds the id (another
 * process runs with it; it may be this node's previous life, killed less
 * than a lease ago): the holder's row goes to *holder (NULL allowed). */
int hs_store_node_claim(hs_store *store, const hs_store_node_row *row, int64_t now_ms,
			hs_store_node_row *holder, hs_error *err);
/* Renew (or, if it went, re-insert) row->node_id's row only while it is
 * still this process's: the stored started_at_ms equals row's (the
 * process's incarnation). HS_CONFLICT when another process claimed the id
 * meanwhile (this one was paused longer than its lease): it must stop
 * acting as the node at once. */
int hs_store_node_renew(hs_store *store, const hs_store_node_row *row, hs_error *err);
int hs_store_node_get(hs_store *store, const char *node_id, hs_store_node_row *out,
		      hs_error *err);
/* Nodes live at now_ms (expires_at_ms > now_ms; now_ms <= 0: every node),
 * by node_id. *out malloc'd (free()), NULL when *n_out is 0. */
int hs_store_node_list(hs_store *store, int64_t now_ms, hs_store_node_row **out, size_t *n_out,
		       hs_error *err);
/* HS_NOT_FOUND if there is no such node. */
int hs_store_node_delete(hs_store *store, const char *node_id, hs_error *err);

typedef struct hs_store_lease_row {
	char task_id[HS_STORE_ID_MAX];
	char node_id[HS_STORE_ID_MAX];  /* the holder */
	int64_t fence;                  /* 1 for the first holder, + 1 per change of hands */
	int64_t expires_at_ms;
} hs_store_lease_row;

/* Take or renew task_id's lease for node_id until expires_at_ms, in one
 * atomic statement. Granted when nobody holds it (fence 1), when node_id
 * holds it (a renewal: same fence, even if it had expired, as nobody took
 * it), or when the holder's lease expired (now_ms >= its expires_at_ms: a
 * takeover, fence + 1). HS_CONFLICT when another node holds a live lease.
 * The lease as granted goes to *out (NULL allowed). */
int hs_store_lease_acquire(hs_store *store, const char *task_id, const char *node_id,
			   int64_t now_ms, int64_t expires_at_ms, hs_store_lease_row *out,
			   hs_error *err);
/* hs_store_lease_acquire for up to HS_STORE_LIST_MAX task ids (n) in one
 * statement (a start-up's or a takeover's batch: one round trip and one
 * commit instead of one per task). The leases granted go to *out, sorted
 * by task_id (malloc'd, free(); NULL when *n_out is 0); an id missing from
 * *out is held live by another node. Duplicate ids count once. */
int hs_store_lease_acquire_many(hs_store *store, const char *const *task_ids, size_t n,
				const char *node_id, int64_t now_ms, int64_t expires_at_ms,
				hs_store_lease_row **out, size_t *n_out, hs_error *err);
/* Renew every lease node_id holds (expired or not: none was taken over)
 * until expires_at_ms, in chunks of 1,000 (one UPDATE each, the lock
 * released between them), and return them (by task_id):
 * what the node still holds. A lease another node took is not touched and
 * not returned, and a chunk whose leases all changed hands meanwhile does
 * not end the walk: every lease the node still holds past it is renewed. expires_at_ms <= now gives them all up at once (they are
 * expired: survivors take them over). *out malloc'd (free()), NULL when
 * *n_out is 0. */
int hs_store_lease_renew_node(hs_store *store, const char *node_id, int64_t expires_at_ms,
			      hs_store_lease_row **out, size_t *n_out, hs_error *err);
/* HS_NOT_FOUND when nobody ever held it. */
int hs_store_lease_get(hs_store *store, const char *task_id, hs_store_lease_row *out,
		       hs_error *err);
/* Give the lease up (deleted) if node_id still holds it with fence;
 * HS_CONFLICT if it changed hands, HS_NOT_FOUND if there is none. */
int hs_store_lease_release(hs_store *store, const char *task_id, const char *node_id,
			   int64_t fence, hs_error *err);
/* A survivor's takeover batch: up to limit (0 = default, clamped to
 * HS_STORE_LIST_MAX) leases expired at now_ms (expires_at_ms <= now_ms),
 * oldest expiry first, become node_id's until expires_at_ms, in one
 * statement: another node's with fence + 1, node_id's own (late to be
 * renewed) with the same fence. A lease renewed or taken by someone else
 * meanwhile is not taken (the expiry is checked again on the row as
 * committed); on PostgreSQL rows another taker's statement has locked are
 * skipped (SKIP LOCKED), so survivors split a dead node's leases rather
 * than queue on the same ones. The leases taken go to *out, sorted by
 * task_id (malloc'd, free(); NULL when *n_out is 0). */
int hs_store_lease_take_expired(hs_store *store, const char *node_id, int64_t now_ms,
				int64_t expires_at_ms, size_t limit, hs_store_lease_row **out,
				size_t *n_out, hs_error *err);

#endif
