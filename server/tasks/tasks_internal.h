/* Internals shared by the files of the tasks module (tasks.c, ops.c,
 * transition.c, recovery.c, watch.c, webhook.c). Not a public header.
 *
 * Locks, always taken in this order (never the reverse):
 *   task->mu  ->  t->mu (map, timer heap)  |  t->ev_mu (event append +
 *   broadcast)  |  t->rq_mu (recovery queue)
 * t->mu, t->ev_mu and t->rq_mu are leaves with respect to each other: no
 * code holds two of them at once. A task is never freed before the
 * registry, so pointers taken from the map stay valid. */
#ifndef HS_TASKS_INTERNAL_H
#define HS_TASKS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "fsm.h"
#include "store.h"
#include "tasks.h"
#include "timer.h"
#include "webhook.h"
#include "metrics.h"

/* Bounded copy that always terminates dst (truncating: fields were
 * validated against their limits before they got here). */
static inline void hs_tasks__copy(char *dst, size_t size, const char *src)
{
	size_t n = 0;
	if (src != NULL)
		for (; n + 1 < size && src[n] != '\0'; n++)
			dst[n] = src[n];
	dst[n] = '\0';
}
#define COPY(dst, src) hs_tasks__copy((dst), sizeof(dst), (src))

/* Shared empty strings for the task's optional heap strings: most tasks
 * have no details, reasons or labels, and 5 x 32 bytes of malloc per task
 * add up at 100,000 tasks. Never freed (see hs_tasks__set_str). */
extern const char hs_tasks__empty[];
extern const char hs_tasks__empty_obj[];

typedef struct task {
	pthread_mutex_t mu;
	struct task *hnext;  /* hash chain; t->mu */
	hs_timer_node timer; /* t->mu; armed at m.deadline_ms (or a store retry) */
	/* Everything below: task->mu. */
	hs_task_fsm m;       /* the state machine's part (fsm.h) */
	uint64_t epoch;      /* bumped by every applied transition (memory only) */
	char id[HS_TASK_ID_MAX + 1];
	char *owner;
	char sandbox_id[HS_TASK_ID_MAX + 1];
	int64_t registered_at_ms;
	double cpu, mem, disk;
	/* Heap or one of the shared empty strings (hs_tasks__set_str). */
	char *details, *failure_reason, *result_message, *workspace, *labels_json;
	char *resume_external; /* heap: external_state of m.resume_ckpt; NULL = unknown */
	/* recovery jobs */
	bool queued, working; /* in the queue; a worker has it */
	bool attempt_due;     /* STALLED and the backoff is over */
	/* Many nodes (t->leases): the fencing token of the task's lease while
	 * this node holds it, 0 when it does not (never had it, or lost it:
	 * then nothing here acts on the task; lease.c). Unused otherwise. */
	int64_t fence;
} task;

typedef struct hs_tasks_ops_ctx {
	hs_ckpt_mgr *ckpt;
	hs_sandbox_mgr *sb;
} hs_tasks_ops_ctx;

/* recovery_ops.c: the defaults over the checkpoint and sandbox modules. */
void hs_tasks__default_ops(hs_task_recovery_ops *out, hs_tasks_ops_ctx *ctx);

struct hs_tasks {
	hs_store *store;
	hs_tenancy *tenancy; /* NULL in tests */
	hs_task_recovery_ops ops;
	hs_tasks_ops_ctx ops_ctx;
	size_t max_tasks, max_watchers, max_watchers_per_user;
	size_t max_tasks_per_user; /* non-admin callers' new tasks */

	pthread_mutex_t mu;
	pthread_cond_t timer_cv; /* CLOCK_MONOTONIC */
	task **buckets;
	size_t nbuckets;
	task **all; /* every task, in load/registration order */
	size_t n_all, cap_all;
	/* owners.c: tasks per owner (every task in the map, any state) */
	struct hs_tasks_owner **owner_buckets;
	size_t n_owner_buckets, n_owners;
	hs_timer_heap heap;
	bool stop;
	pthread_t timer_thr;
	bool timer_started;

	pthread_mutex_t rq_mu;
	pthread_cond_t rq_cv;
	task **rq;
	size_t rq_head, rq_len, rq_cap;
	bool rq_stop;
	pthread_t rec_thr[2];
	int n_rec;

	pthread_mutex_t ev_mu;
	struct hs_task_watch *watchers;
	size_t n_watchers;
	int64_t last_event_id;
	struct hs_tasks__follow *follow; /* follow.c; NULL until a watcher on a shared store */

	/* lease.c: many nodes on one store. leases false (no node id): the
	 * only node; none of this runs. */
	bool leases;
	char node_id[HS_STORE_ID_MAX];
	char address[HS_STORE_PATH_MAX]; /* lease_mu; "" until advertised */
	int64_t node_started_ms;         /* lease_mu */
	int64_t lease_ms;
	pthread_mutex_t lease_mu;
	pthread_cond_t lease_cv; /* CLOCK_MONOTONIC */
	bool lease_stop;
	pthread_t lease_thr;
	bool lease_started;

	hs_webhook *webhook;
	atomic_uint_fast64_t n_events, n_dropped, n_recoveries;

	/* metrics.c */
	hs_metrics *registry; /* borrowed; NULL: not registered */
	hs_histogram m_hb_lag;
	hs_counter m_timeouts, m_rec_started, m_rec_succeeded, m_rec_failed;
};

/* owners.c (t->mu held): the number of tasks owner has in the map; one
 * more (HS_INTERNAL when out of memory, nothing changed); free all. */
size_t hs_tasks__owner_count(const hs_tasks *t, const char *owner);
int hs_tasks__owner_add(hs_tasks *t, const char *owner);
void hs_tasks__owners_free(hs_tasks *t);

/* metrics.c: count a decision's event (transition.c, after it applied);
 * a TIMEOUT's lateness against its deadline (tasks.c, fire); the scrape. */
void hs_tasks__metrics_event(hs_tasks *t, int event);
void hs_tasks__metrics_timeout(hs_tasks *t, int64_t deadline_ms, int64_t now_ms);
void hs_tasks__metrics_collect(hs_metrics_out *out, void *payload);


/* Store row <-> task. row_of fills a row from the task with machine m
 * (task->mu held); adopt copies a persisted row into the task. */
void hs_tasks__row_of(const task *k, const hs_task_fsm *m, hs_store_task_row *row);
int hs_tasks__adopt(task *k, const hs_store_task_row *row);
/* Replace *dst with a copy of src, or with a shared empty string when src
 * is "" (or "{}" for labels); frees the old value unless it is shared. */
int hs_tasks__set_str(char **dst, const char *src);
void hs_tasks__free_str(char *s);

/* The one way a task changes (transition.c, task->mu held): decide in with
 * fsm.c, persist (heartbeat columns, or the row and its event in one
 * transaction), then update memory, the timer and the recovery queue.
 * beat: BEAT's progress. d (optional) gets the decision. On error nothing
 * changed. */
int hs_tasks__apply(hs_tasks *t, task *k, const hs_task_input *in, const hs_task_beat *beat,
		    hs_task_decision *d, hs_error *err);
/* A heartbeat-only decision (d->beat_only, decided by the caller under
 * k->mu): queues the store write (done runs once it is durable or failed,
 * see hs_store_task_heartbeat_async) and applies memory now. An error
 * (HS_LIMIT: the commit queue is full) changes nothing. k->mu held. */
int hs_tasks__apply_beat_async(hs_tasks *t, task *k, const hs_task_input *in,
			       const hs_task_beat *beat, const hs_task_decision *d,
			       hs_store_beat_done_fn done, void *arg, hs_error *err);

/* Persist row (inserted when insert, else updated) and ev in one
 * transaction, then give ev its id and broadcast it to watchers and the
 * webhook, all under t->ev_mu so delivery order is event-id order
 * (watch.c). */
/* fence > 0: on behalf of this node's lease with that fencing token
 * (hs_store_task_transition_fenced: HS_CONFLICT once it changed hands). */
int hs_tasks__publish(hs_tasks *t, const hs_store_task_row *row, bool insert, hs_task_event *ev,
		      int64_t fence, hs_error *err);

/* The event a decision emits, with the task's owner and sandbox. */
void hs_tasks__event_of(const task *k, const hs_task_decision *d, int64_t now, hs_task_event *ev);

/* Timer (task->mu held): arm at a wall-clock deadline / disarm. */
void hs_tasks__arm_at(hs_tasks *t, task *k, int64_t wall_deadline_ms);
void hs_tasks__disarm(hs_tasks *t, task *k);

/* Recovery (recovery.c). */
int hs_tasks__recovery_start(hs_tasks *t);
void hs_tasks__recovery_stop(hs_tasks *t);
/* Queue k for the recovery workers (task->mu held). */
void hs_tasks__enqueue(hs_tasks *t, task *k);
/* Retry a step whose store write failed in RETRY_MS (task->mu held). */
void hs_tasks__retry_later(hs_tasks *t, task *k, const char *what, const hs_error *err);

/* Watchers (watch.c): deliver to every watcher; t->ev_mu held. */
void hs_tasks__broadcast(hs_tasks *t, const hs_task_event *ev);
void hs_tasks__watchers_free(hs_tasks *t);

/* Other nodes' events (follow.c), on a store several nodes share. */
typedef struct hs_tasks__follow hs_tasks__follow;
bool hs_tasks__shared_store(hs_tasks *t);
/* Start the follower thread if the store is shared and it is not running
 * (t->ev_mu held); failures are logged. Stop joins it (t->ev_mu not held). */
void hs_tasks__follow_start(hs_tasks *t);
void hs_tasks__follow_stop(hs_tasks *t);
/* A task's owner and sandbox: from memory, else (shared store) its row. */
int hs_tasks__task_meta(hs_tasks *t, const char *task_id, char owner[HS_TASK_OWNER_MAX],
			char sandbox_id[HS_TASK_ID_MAX + 1], hs_error *err);
/* Leases (lease.c). A task acts here (timers, recoveries, writes) only
 * while this node holds its lease; always true for the only node. */
static inline bool hs_tasks__held(const hs_tasks *t, const task *k)
{
	return !t->leases || k->fence > 0;
}
/* Start / stop the lease thread (renews the node row and the held leases,
 * takes over expired ones). No-op without leases. stop gives the leases
 * up and deletes the node row. */
int hs_tasks__lease_start(hs_tasks *t, hs_error *err);
void hs_tasks__lease_stop(hs_tasks *t);
/* Take task_id's lease if nobody holds it live, and hold the task here
 * (loaded from the store, deadlines re-armed, an interrupted recovery
 * continued): HS_OK. HS_CONFLICT: another node holds it (not looked up:
 * holder->node_id ""). HS_NOT_FOUND: no such task (the lease is held, as
 * granted in *holder, for a registration). No task lock held. Blocks. */
int hs_tasks__lease_take(hs_tasks *t, const char *task_id, hs_store_lease_row *holder,
			 hs_error *err);
/* Hold row's task here under fence (a lease this node was granted): index
 * it or refresh the stale copy, then re-arm it as at start. No lock held. */
int hs_tasks__lease_install(hs_tasks *t, const hs_store_task_row *row, int64_t fence,
			    hs_error *err);
/* This node lost k's lease (a fenced write or a renewal said so): stop
 * acting on it (fence 0, timer off). k->mu held. */
void hs_tasks__lease_drop(hs_tasks *t, task *k, const char *why);
/* An error for a call this node cannot serve because holder holds the
 * task (node_id "" = look it up): HS_UNAVAILABLE naming the node and its
 * advertised address. */
int hs_tasks__elsewhere(hs_tasks *t, const char *task_id, const hs_store_lease_row *holder,
			hs_error *err);
/* Calls for a task another node holds, served from the store (remote.c):
 * from its stored row (read by the caller); a heartbeat whose decision only moves the
 * heartbeat columns is written through the store (the holder reads them
 * before its deadline fires); anything else is hs_tasks__elsewhere. The
 * caller checked visibility. Block. */
int hs_tasks__remote_get(hs_tasks *t, const hs_store_task_row *row, hs_task_info *out,
			 hs_error *err);
int hs_tasks__remote_beat(hs_tasks *t, const hs_store_task_row *row, const hs_task_beat *b,
			  const hs_store_lease_row *holder, hs_task_beat_reply *out,
			  hs_error *err);

/* The string hash of the task index and the per-owner counts (FNV-1a). */
size_t hs_tasks__hash(const char *s);

/* A heartbeat as the state machine's input (now = the wall clock), or
 * HS_TIMEOUT when the caller's deadline passed before it was handled (then
 * nothing may change: nobody reads the reply). */
int hs_tasks__beat_input(const char *task_id, const hs_task_beat *b, hs_task_input *in,
			 hs_error *err);

/* The checkpoint fence (fsm.c, hs_task_checkpoint_fence) on the stored row
 * of a task another node holds: HS_OK or the fence's refusal in err. */
int hs_tasks__remote_fence(const hs_store_task_row *row, int64_t generation, hs_error *err);
/* GetTask at the holder: progress heartbeats sent to other nodes are in
 * the store only (the holder reads them when its deadline fires); a newer
 * stored heartbeat of a RUNNING task replaces info's progress fields. */
void hs_tasks__remote_progress(hs_tasks *t, hs_task_info *info);
/* The same merge from a stored row the caller read (ListTasks). */
void hs_tasks__merge_progress(hs_task_info *info, const hs_store_task_row *row);
/* A task struct outside the index (tasks.c): new (NULL on OOM) / free. */
task *hs_tasks__task_new(void);
void hs_tasks__task_free(task *k);
/* Re-arm a task loaded from the store (task->mu held, or before threads). */
void hs_tasks__rearm_loaded(hs_tasks *t, task *k);

task *hs_tasks__lookup(hs_tasks *t, const char *id);
/* An authenticated caller with a bounded id (ops.c). */
int hs_tasks__check_caller(const hs_principal *c, hs_error *err);
/* Create and index a task from a row (t->mu not held); NULL on OOM. A
 * task indexed under that id meanwhile is returned as it is. */
task *hs_tasks__insert(hs_tasks *t, const hs_store_task_row *row, hs_error *err);
bool hs_tasks__visible(const task *k, const hs_principal *caller);
void hs_tasks__info_of(const task *k, hs_task_info *out, bool *oom);

#endif
