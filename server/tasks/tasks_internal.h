/* Internals shared by the files of the health module (tasks.c, recovery.c,
 * watch.c, webhook.c). Not a public header.
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
#include "store.h"
#include "tasks.h"
#include "timer.h"
#include "webhook.h"

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

/* Checkpoint ids kept per task: the checkpoint module's ids are
 * "ckpt-<step>-<12 hex>" (< 48 bytes); the struct stays small because
 * 100,000 of them live in memory. */
#define HS_TASK_CKPT_LOCAL 64

/* Shared empty strings for the task's optional heap strings: most tasks
 * have no details, reasons or labels, and 5 x 32 bytes of malloc per task
 * add up at 100,000 tasks. Never freed (see hs_tasks__set_str). */
extern const char hs_tasks__empty[];
extern const char hs_tasks__empty_obj[];

typedef struct task {
	pthread_mutex_t mu;
	struct task *hnext;  /* hash chain; t->mu */
	hs_timer_node timer; /* t->mu; meaning depends on state: heartbeat
			      * deadline (RUNNING, RECOVERING restored) or
			      * backoff before the next attempt (STALLED) */
	/* Everything below: task->mu. */
	uint64_t epoch;      /* bumped by transitions that abort a recovery */
	char id[HS_TASK_ID_MAX + 1];
	char *owner;
	int state;
	int64_t total_steps, current_step, interval_ms, timeout_ms;
	char sandbox_id[HS_TASK_ID_MAX + 1];
	hs_task_policy policy;
	int64_t last_heartbeat_ms, registered_at_ms, finished_at_ms;
	int64_t deadline_ms; /* wall clock; 0 when not armed */
	int32_t attempts;
	char last_ckpt[HS_TASK_CKPT_LOCAL];
	bool cancel_requested;
	double cpu, mem, disk;
	/* Heap or one of the shared empty strings (hs_tasks__set_str). */
	char *details, *failure_reason, *result_message, *workspace, *labels_json;
	/* recovery */
	bool queued, working, restoring; /* restoring: attempt in flight */
	char resume_ckpt[HS_TASK_CKPT_LOCAL]; /* RECOVERING and restored */
	int64_t resume_step;
	char *reason;                          /* heap: the attempt's reason, or NULL */
} task;

typedef struct hs_tasks_ops_ctx {
	hs_ckpt_mgr *ckpt;
	hs_sandbox_mgr *sb;
} hs_tasks_ops_ctx;

/* recovery_ops.c: the defaults over the checkpoint and sandbox modules. */
void hs_tasks__default_ops(hs_task_recovery_ops *out, hs_tasks_ops_ctx *ctx);

struct hs_tasks {
	hs_store *store;
	hs_task_recovery_ops ops;
	hs_tasks_ops_ctx ops_ctx;
	size_t max_tasks, max_watchers;

	pthread_mutex_t mu;
	pthread_cond_t timer_cv; /* CLOCK_MONOTONIC */
	task **buckets;
	size_t nbuckets;
	task **all; /* every task, in load/registration order */
	size_t n_all, cap_all;
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

	hs_webhook *webhook;
	atomic_uint_fast64_t n_events, n_dropped, n_recoveries;
};


/* Store row <-> task. row_of fills a row from the task (task->mu held);
 * adopt copies a persisted row back into the task. */
void hs_tasks__row_of(const task *k, hs_store_task_row *row);
int hs_tasks__adopt(task *k, const hs_store_task_row *row);
/* Replace *dst with a copy of src, or with a shared empty string when src
 * is "" (or "{}" for labels); frees the old value unless it is shared. */
int hs_tasks__set_str(char **dst, const char *src);
void hs_tasks__free_str(char *s);
/* Persist row, then adopt it (task->mu held). On failure nothing changes. */
int hs_tasks__commit(hs_tasks *t, task *k, const hs_store_task_row *row, hs_error *err);

/* Append an event of task k to the store, then broadcast it to watchers
 * and the webhook (task->mu held). Fields from the task: owner, sandbox,
 * state. */
int hs_tasks__emit(hs_tasks *t, task *k, hs_task_event_type type, int64_t step,
		   const char *ckpt, int32_t attempt, const char *message, hs_error *err);

/* Timer (task->mu held): arm at a wall-clock deadline / after delay ms. */
void hs_tasks__arm_at(hs_tasks *t, task *k, int64_t wall_deadline_ms);
void hs_tasks__disarm(hs_tasks *t, task *k);

/* Recovery (recovery.c). */
int hs_tasks__recovery_start(hs_tasks *t);
void hs_tasks__recovery_stop(hs_tasks *t);
/* Queue k for the recovery workers (task->mu held). */
void hs_tasks__enqueue(hs_tasks *t, task *k);
/* Arm the backoff before attempt k->attempts + 1 (state STALLED). */
void hs_tasks__schedule_attempt(hs_tasks *t, task *k);
/* Start an attempt now: RECOVERING, attempts + 1, persisted (task->mu held). */
int hs_tasks__begin_attempt(hs_tasks *t, task *k, const char *reason, hs_error *err);
/* A heartbeat deadline expired in RUNNING or RECOVERING (task->mu held). */
void hs_tasks__on_timeout(hs_tasks *t, task *k);

/* Watchers (watch.c): deliver to every watcher; t->ev_mu held. */
void hs_tasks__broadcast(hs_tasks *t, const hs_task_event *ev);
void hs_tasks__watchers_free(hs_tasks *t);

task *hs_tasks__lookup(hs_tasks *t, const char *id);
/* Create and index a task from a row (t->mu not held); NULL on OOM. */
task *hs_tasks__insert(hs_tasks *t, const hs_store_task_row *row, hs_error *err);
bool hs_tasks__visible(const task *k, const hs_principal *caller);
void hs_tasks__info_of(const task *k, hs_task_info *out, bool *oom);

#endif
