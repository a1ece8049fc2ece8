/* The task registry behind HealthService: registration, heartbeats, stall
 * detection, the recovery coordinator with fencing, cancellation and the
 * event stream. No protobuf types here; tasks_service.c converts. Enum
 * values equal the proto's. The state machine and the fencing rule are
 * written once, in fsm.c (diagram there and in health.proto).
 *
 * Threading: every function is thread-safe. Functions marked "blocks" write
 * the store (or git / sandboxes): call them from worker threads, never from
 * a completion-queue thread. The module runs three threads of its own: the
 * timer thread (sleeps until the earliest deadline), the recovery thread
 * (checkpoint restore, verify, sandbox; never on an RPC thread) and, with a
 * webhook URL, the webhook sender.
 *
 * Errors: HS_INVALID naming the field, HS_NOT_FOUND (no such task, or
 * another user's: one rule for every resource), HS_EXISTS, HS_CONFLICT
 * (wrong state, naming it), HS_TIMEOUT (the caller's deadline passed),
 * HS_LIMIT, HS_UNAVAILABLE (store), HS_CANCELLED (shutting down). */
#ifndef HS_TASKS_TASKS_H
#define HS_TASKS_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "ids.h"
#include "labels.h"
#include "principal.h"

typedef struct hs_tasks hs_tasks;
typedef struct hs_store hs_store;
typedef struct hs_ckpt_mgr hs_ckpt_mgr;
typedef struct hs_sandbox_mgr hs_sandbox_mgr;
typedef struct hs_tenancy hs_tenancy;

typedef enum hs_task_state {
	HS_TASK_RUNNING = 1,
	HS_TASK_STALLED = 2,
	HS_TASK_RECOVERING = 3,
	HS_TASK_COMPLETED = 4,
	HS_TASK_FAILED = 5,
	HS_TASK_CANCELLED = 6,
} hs_task_state;

typedef enum hs_task_event_type {
	HS_TEV_REGISTERED = 1,
	HS_TEV_TIMEOUT = 2,
	HS_TEV_RECOVERY_STARTED = 3,
	HS_TEV_RECOVERED = 4,
	HS_TEV_RECOVERY_FAILED = 5,
	HS_TEV_COMPLETED = 6,
	HS_TEV_FAILED = 7,
	HS_TEV_CANCELLED = 8,
	HS_TEV_EVENTS_DROPPED = 9,
	HS_TEV_INITIAL_STATE = 10,
	HS_TEV_WORKSPACE_RESTORED = 11,
	HS_TEV_LATE_HEARTBEAT = 12,
} hs_task_event_type;

typedef enum hs_task_instruction {
	HS_TASK_CONTINUE = 1,
	HS_TASK_CANCEL = 2,
	HS_TASK_RESUME = 3,
	HS_TASK_WAIT = 4,
} hs_task_instruction;

#define HS_TASK_ID_MAX HS_ID_MAX /* the task id rule: common/ids.h */
#define HS_TASK_OWNER_MAX 128
#define HS_TASK_CKPT_ID_MAX 128
#define HS_TASK_DETAILS_MAX 1023 /* the store's text column (the proto allows 16384) */
#define HS_TASK_MESSAGE_MAX 1023 /* failure reason / result message */
#define HS_TASK_REASON_MAX 1024

/* Delay before attempt n (1-based) = min(initial * multiplier^(n-1), max). */
typedef struct hs_task_policy {
	int32_t max_attempts;       /* 0 = 3, at most 100 */
	int64_t initial_backoff_ms; /* 0 = 1000 */
	double multiplier;          /* 0 = 2.0, else >= 1.0 */
	int64_t max_backoff_ms;     /* 0 = 60000, >= initial */
} hs_task_policy;

/* Fill zero fields with the defaults and validate; HS_INVALID naming the
 * field ("recovery_policy.max_attempts: ..."). */
int hs_task_policy_resolve(hs_task_policy *p, hs_error *err);
/* Backoff before attempt n (>= 1) under a resolved policy. */
int64_t hs_task_backoff_ms(const hs_task_policy *p, int32_t attempt);

const char *hs_task_state_name(int state);

/* RegisterTask; strings borrowed. */
typedef struct hs_task_spec {
	const char *task_id;
	int64_t total_steps;
	int64_t heartbeat_interval_ms; /* 0 = 30000; 100..3600000 */
	int64_t heartbeat_timeout_ms;  /* 0 = 90000; > interval, <= 86400000 */
	const char *sandbox_id;        /* NULL/"" = none */
	hs_task_policy policy;
	const char *workspace;         /* relative; NULL/"" = task_id (tenancy.h's rule) */
	const hs_label *labels;        /* common/labels.h's rule */
	size_t n_labels;
} hs_task_spec;

/* A task as callers see it. Heap strings are owned: hs_task_info_dispose. */
typedef struct hs_task_info {
	char task_id[HS_TASK_ID_MAX + 1];
	char owner[HS_TASK_OWNER_MAX];
	hs_task_state state;
	int64_t total_steps, current_step;
	int64_t heartbeat_interval_ms, heartbeat_timeout_ms;
	char sandbox_id[HS_TASK_ID_MAX + 1];
	hs_task_policy policy;
	int64_t last_heartbeat_ms, registered_at_ms;
	int32_t recovery_attempts;
	char last_checkpoint_id[HS_TASK_CKPT_ID_MAX];
	bool cancel_requested;
	double cpu_usage, memory_usage_mb, disk_usage_mb;
	char *details;        /* heap, never NULL */
	char *failure_reason; /* heap, never NULL */
	char *result_message; /* heap, never NULL */
	char *workspace;      /* heap, never NULL (defaults applied) */
	char *labels_json;    /* heap JSON object text, never NULL ("{}") */
	int64_t next_deadline_ms; /* wall ms: RUNNING the heartbeat deadline, RECOVERING
				   * (restored) the acknowledgement deadline; else 0 */
	int64_t next_attempt_ms;  /* wall ms: STALLED, when the next attempt starts; else 0 */
	int64_t finished_at_ms;   /* 0 unless terminal */
	int64_t recovery_generation, acknowledged_generation;
	char resume_checkpoint_id[HS_TASK_CKPT_ID_MAX]; /* "" unless a restore awaits acknowledgement */
	int64_t resume_step;
	int64_t last_checkpoint_step;
} hs_task_info;

void hs_task_info_dispose(hs_task_info *info);
void hs_task_info_array_free(hs_task_info *arr, size_t n);

typedef struct hs_task_beat {
	int64_t current_step, total_steps; /* total 0 = unchanged */
	double cpu_usage, memory_usage_mb, disk_usage_mb;
	const char *details;         /* NULL/"" = keep */
	int64_t recovery_generation; /* the generation the agent acknowledged; 0 = none */
	int64_t deadline_mono_ms;    /* the caller's deadline (CLOCK_MONOTONIC ms); 0 = none */
} hs_task_beat;

typedef struct hs_task_beat_reply {
	hs_task_state state;
	hs_task_instruction instruction;
	int64_t resume_step;
	char checkpoint_id[HS_TASK_CKPT_ID_MAX];
	int64_t next_deadline_ms;    /* wall ms; 0 with CANCEL */
	int64_t recovery_generation; /* CONTINUE: the agent's generation; RESUME: the one to
				      * acknowledge; 0 with WAIT and CANCEL */
	char *details;               /* heap on RESUME (details before the stall), else NULL */
	char *external_state;        /* heap JSON object text on RESUME ("" = none), else NULL */
} hs_task_beat_reply;

void hs_task_beat_reply_dispose(hs_task_beat_reply *r);

typedef struct hs_task_event {
	int64_t event_id;
	char task_id[HS_TASK_ID_MAX + 1];
	hs_task_event_type type;
	int64_t step;
	char checkpoint_id[HS_TASK_CKPT_ID_MAX];
	int64_t occurred_at_ms;
	char message[HS_TASK_REASON_MAX];
	int32_t attempt;
	int state; /* 0 for EVENTS_DROPPED */
	uint64_t dropped_count;
	char owner[HS_TASK_OWNER_MAX];
	char sandbox_id[HS_TASK_ID_MAX + 1];
	int64_t recovery_generation; /* the task's generation after the event */
} hs_task_event;

/* What recovery does to the world, as calls (the default binds the
 * checkpoint and sandbox modules; tests inject faults). Each returns HS_OK
 * or a negative hs_code with a message in err. May block. */
typedef struct hs_task_recovery_ops {
	/* Latest checkpoint: id and step. HS_NOT_FOUND when there is none. */
	int (*latest)(void *ctx, const char *task_id, char *id_out, size_t id_len,
		      int64_t *step_out, hs_error *err);
	/* Restore the workspace to checkpoint_id and verify it matches;
	 * *external_state_out: heap JSON object text of the checkpoint's
	 * external state ("" if none). */
	int (*restore)(void *ctx, const char *task_id, const char *checkpoint_id,
		       const char *workspace, char **external_state_out, hs_error *err);
	/* The checkpoint's external state (heap JSON text, "" if none): for a
	 * resume point restored before a restart. */
	int (*checkpoint_state)(void *ctx, const char *task_id, const char *checkpoint_id,
				char **external_state_out, hs_error *err);
	/* Bring the sandbox back: restore its latest snapshot, else restart it. */
	int (*sandbox_recover)(void *ctx, const char *sandbox_id, const char *owner,
			       hs_error *err);
	/* RegisterTask: is the task id free of another user's checkpoints?
	 * HS_EXISTS if not. NULL = no check (tenancy.h is the rule; this is
	 * defence in depth while checkpoints are owned apart). */
	int (*checkpoints_check)(void *ctx, const char *task_id, const hs_principal *caller,
				 hs_error *err);
	/* RegisterTask: does the sandbox exist and is it visible to the caller? */
	int (*sandbox_check)(void *ctx, const char *sandbox_id, const hs_principal *caller,
			     hs_error *err);
	void *ctx;
} hs_task_recovery_ops;


typedef struct hs_tasks_config {
	hs_store *store;                 /* required, borrowed */
	/* Ownership of task ids and workspaces (borrowed). RegisterTask claims
	 * the task id and the workspace's task id for the caller. NULL only in
	 * tests: then the task's own owner is the only rule. */
	hs_tenancy *tenancy;
	/* Default recovery ops bind these (borrowed; either may be NULL: no
	 * checkpoint module -> recovery fails "checkpoints are not
	 * configured"; no sandbox module -> RegisterTask with a sandbox_id is
	 * UNAVAILABLE). */
	hs_ckpt_mgr *ckpt;
	hs_sandbox_mgr *sandboxes;
	const hs_task_recovery_ops *ops; /* NULL = the defaults; else copied (tests) */
	const char *webhook_url;         /* NULL/"" = none */
	size_t max_tasks;                /* 0 = 1000000 */
	/* Tasks one user may own (RegisterTask of a new id beyond it: HS_LIMIT
	 * naming the limit). Counts every retained task of the user, terminal
	 * ones too (memory is bounded by retained tasks); admins are exempt
	 * (only max_tasks binds them). 0 = 10000. */
	size_t max_tasks_per_user;
	size_t max_watchers;             /* 0 = 1024 */
	size_t max_watchers_per_user;    /* non-admin callers; 0 = max_watchers / 8 (at least 1) */
	size_t webhook_queue;            /* 0 = 1024 events */
	unsigned webhook_attempts;       /* 0 = 4 */
	int64_t webhook_backoff_ms;      /* 0 = 500 (doubles per retry) */
	int64_t webhook_timeout_ms;      /* 0 = 5000 */
	/* borrowed, outlives the module; NULL: no metrics. harness_tasks{state},
	 * harness_heartbeat_lag_seconds, harness_recoveries_* and
	 * harness_webhook_deliveries_total are registered on it. */
	struct hs_metrics *metrics;
	/* Many nodes on one shared store (PostgreSQL): this node's id (the
	 * store's node row; HS_STORE_ID_MAX). NULL/"" = the only node: no
	 * leases at all (SQLite; nothing changes and nothing is paid). With an
	 * id, a task's timers, recoveries and writes belong to the node holding
	 * its lease (see "Many nodes" in docs/architecture.md). */
	const char *node_id;
	int64_t lease_ms; /* task and node lease length; 0 = 10000, at least 300 */
} hs_tasks_config;

/* Before anything else runs as node node_id on a shared store: claim the
 * id (hs_store_node_claim) with address (where it will listen; the row
 * is rewritten by hs_tasks_advertise) for lease_ms. HS_EXISTS, naming the
 * node id and the holder's address, while another process's row is live:
 * two harnessd must never run as one node (each would adopt, fail or
 * take over the other's sandboxes and tasks). A restart after the row
 * expired (kill -9: --task-lease-ms later) or after a clean stop (the row
 * expires at once) claims it. Blocks (one store write). */
int hs_tasks_claim_node(hs_store *store, const char *node_id, const char *address,
			int64_t lease_ms, hs_error *err);
/* Load every task from the store and re-arm deadlines (RUNNING: last
 * heartbeat + timeout, possibly already past; STALLED/RECOVERING: recovery
 * resumes), then start the threads. Blocks. */
int hs_tasks_new(hs_tasks **out, const hs_tasks_config *cfg, hs_error *err);
/* With a node id: write the node's row with the address other nodes and
 * clients reach it at (host:port; the gRPC port is known once the server
 * started) and keep renewing it with the task leases. No-op without a node
 * id. Blocks (one store write). */
int hs_tasks_advertise(hs_tasks *t, const char *address, hs_error *err);
/* The exit status of a node whose id another process claimed while it was
 * paused longer than its lease (it exits at once from the lease thread:
 * see lease.c, put_node). EX_TEMPFAIL: a supervisor may restart it. */
#define HS_TASKS_EXIT_NODE_CLAIMED 75
/* Stops the threads (an in-flight recovery step finishes first), ends
 * watchers (their send gets no more calls) and frees. With a node id it
 * first gives its task leases up (they expire now, so a survivor takes
 * them over at its next scan) and deletes the node row. NULL is a no-op. */
void hs_tasks_free(hs_tasks *t);

/* RegisterTask: claims the task id (another user's id: HS_EXISTS "task id
 * taken") and the workspace's task id (another user's: HS_NOT_FOUND naming
 * the workspace); a terminal task's id registers again. Every other call
 * answers HS_NOT_FOUND for another user's task (admins see all). Blocks.
 * *out (optional) as after the call. */
int hs_tasks_register(hs_tasks *t, const hs_principal *caller, const hs_task_spec *spec,
		      hs_task_info *out, hs_error *err);
/* The fencing contract (fsm.c): RESUME while beat->recovery_generation is
 * older than a finished restore, WAIT while a restore is under way, and the
 * heartbeat carrying the restored generation is the acknowledgement
 * (RECOVERED). A heartbeat whose deadline passed before it is handled
 * changes nothing (HS_TIMEOUT). Blocks (one cheap store update; state
 * changes write the row + event in one transaction). *out: dispose. */
int hs_tasks_heartbeat(hs_tasks *t, const hs_principal *caller, const char *task_id,
		       const hs_task_beat *beat, hs_task_beat_reply *out, hs_error *err);
/* The heartbeat without waiting, for the RPC hot path (no I/O, one short
 * task lock): decides as hs_tasks_heartbeat does and
 *   HS_OK              *out is the answer (nothing to write);
 *   HS_TASKS_PENDING   *out is the answer once done(arg, rc, err) runs
 *                      with rc HS_OK: the heartbeat's write was queued for
 *                      the next group commit (memory and the deadline move
 *                      now) and done runs on the store's committer thread
 *                      when it is durable or failed (then answer the error);
 *   HS_TASKS_BLOCKS    nothing changed: call hs_tasks_heartbeat on a worker
 *                      (a state change, a resume, or a full commit queue);
 *   < 0                an error, as hs_tasks_heartbeat's.
 * *out needs no dispose on this path (no strings). */
enum { HS_TASKS_PENDING = 1, HS_TASKS_BLOCKS = 2 };
typedef void (*hs_task_beat_done_fn)(void *arg, int rc, const hs_error *err);
int hs_tasks_heartbeat_start(hs_tasks *t, const hs_principal *caller, const char *task_id,
			     const hs_task_beat *beat, hs_task_beat_reply *out,
			     hs_task_beat_done_fn done, void *arg, hs_error *err);
/* No I/O (many nodes: one store read, for progress reported through other
 * nodes or a task another node holds). */
int hs_tasks_get(hs_tasks *t, const hs_principal *caller, const char *task_id,
		 hs_task_info *out, hs_error *err);

typedef struct hs_task_list_opts {
	int64_t page_size;         /* 0 = 50, clamped to 1000; < 0 HS_INVALID */
	const char *page_token;    /* NULL/"" = first page */
	int state;                 /* 0 = any */
	const hs_label *selector;  /* all must match (common/labels.h) */
	size_t n_selector;
} hs_task_list_opts;

/* Visible tasks, most recently registered first. *out: hs_task_info_array_free;
 * *next_token heap or NULL on the last page. No I/O. */
int hs_tasks_list(hs_tasks *t, const hs_principal *caller, const hs_task_list_opts *opts,
		  hs_task_info **out, size_t *n_out, char **next_token, hs_error *err);
/* Blocks. */
int hs_tasks_complete(hs_tasks *t, const hs_principal *caller, const char *task_id,
		      bool success, const char *message, hs_task_info *out, hs_error *err);
/* Starts an attempt now from the latest checkpoint (looked up first: none
 * is HS_CONFLICT and changes nothing). From RUNNING, STALLED or FAILED. */
int hs_tasks_recover(hs_tasks *t, const hs_principal *caller, const char *task_id,
		     const char *reason, hs_task_info *out, hs_error *err);
int hs_tasks_cancel(hs_tasks *t, const hs_principal *caller, const char *task_id,
		    const char *reason, hs_task_info *out, hs_error *err);

/* A checkpoint of task_id was created (the checkpoint module's on_create
 * hook): last_checkpoint_id and its step follow it. Unknown tasks are
 * ignored; t NULL is a no-op. Blocks (one store update). Never call it
 * with a lock the tasks module might wait for. */
void hs_tasks_note_checkpoint(hs_tasks *t, const char *task_id, const char *checkpoint_id,
			      int64_t step);

/* CreateCheckpoint's fence (the checkpoint module's hook, called before it
 * records anything): may a checkpoint of task_id be recorded for a caller
 * that acknowledged recovery generation `generation` (0 = not sent)?
 * HS_OK; HS_CONFLICT naming the reason while a recovery attempt of the task
 * is unacknowledged (whatever generation says), or when generation is sent
 * and stale or newer than the task's; HS_INVALID for a negative one. A task
 * id no task was registered under, or t NULL: HS_OK. Ownership is the
 * caller's check (done before). Takes the task's lock briefly. */
int hs_tasks_checkpoint_fence(hs_tasks *t, const char *task_id, int64_t generation,
			      hs_error *err);

/* --- watching ----------------------------------------------------------- */

typedef struct hs_task_watch hs_task_watch;

/* Deliver one event to a watcher without blocking: HS_OK sent, HS_LIMIT the
 * watcher's queue is full (the event is dropped and counted), anything else
 * the watcher is gone (no more calls). */
typedef int (*hs_task_send_fn)(const hs_task_event *ev, void *payload);

/* Drop policy: a live event that does not fit is dropped and counted; before
 * the next event that fits, one EVENTS_DROPPED event carrying the count is
 * sent. Catching up (replay, initial states, then the events stored
 * meanwhile, read back from the store) never drops: it stops where the
 * queue is full and goes on at the next pump.
 *
 * Opens a watcher for task_id (NULL/"" = every visible task): it will replay
 * stored events with id > after_event_id (0 = none), send INITIAL_STATE
 * events when send_initial, then switch to live delivery. Registers the
 * watcher and takes the first catch-up step (hs_tasks_watch_pump); on
 * HS_OK it may still be catching up. HS_LIMIT when too many watchers, or
 * when a non-admin caller already holds max_watchers_per_user of them (so
 * one tenant cannot take every watcher slot from the others). */
int hs_tasks_watch(hs_tasks *t, const hs_principal *caller, const char *task_id,
		   bool send_initial, int64_t after_event_id, hs_task_send_fn send,
		   void *payload, hs_task_watch **out, hs_error *err);

/* Continues a watcher's catch-up as far as its queue takes, then returns
 * without waiting: HS_OK caught up (live; cheap to call again), HS_LIMIT
 * the queue is full or this step did enough (call again when the queue has
 * room), anything else the watcher failed (HS_CANCELLED: its send said it
 * is gone); unwatch it. May read the store (one short query per page).
 * Never concurrently with itself or hs_tasks_unwatch for the same w. */
int hs_tasks_watch_pump(hs_tasks *t, hs_task_watch *w, hs_error *err);
/* After it returns, send is never called again for w. Idempotent per w is
 * NOT provided: call exactly once. Never blocks on I/O. */
void hs_tasks_unwatch(hs_tasks *t, hs_task_watch *w);

/* Counters for tests and benchmarks. */
typedef struct hs_tasks_stats {
	size_t tasks, armed_timers, watchers;
	uint64_t events, events_dropped, recoveries_started, webhook_sent, webhook_dropped;
} hs_tasks_stats;

void hs_tasks_stats_get(hs_tasks *t, hs_tasks_stats *out);

/* Many nodes share the store (a node id was given): GetTask and ListTasks
 * read it. */
bool hs_tasks_shared(const hs_tasks *t);

/* Tasks in memory (every state); one short lock. */
size_t hs_tasks_count(hs_tasks *t);

#endif
