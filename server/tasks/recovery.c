/* The recovery coordinator: recovery attempts run on two worker threads of
 * this module (never on an RPC thread), without the task's lock while they
 * touch git or sandboxes; every outcome goes back through the state machine
 * (hs_tasks__apply).
 *
 * One attempt: look up the latest checkpoint -> START (RECOVERY_STARTED, a
 * new recovery generation: from here on the agent is fenced) -> restore the
 * workspace and verify it -> bring back the sandbox (restore its latest
 * snapshot, else resume/keep it) -> RESTORED (WORKSPACE_RESTORED; the
 * acknowledgement deadline is armed). The agent's stale heartbeats get
 * RESUME_FROM_CHECKPOINT from then on; its acknowledging heartbeat makes
 * the task RUNNING (RECOVERED). A failed attempt emits RECOVERY_FAILED and
 * is retried after the policy's backoff, until max_attempts; "no
 * checkpoint" is final at once.
 *
 * One recovery per task at a time: a task is in the queue at most once
 * (task->queued) and handled by at most one worker (task->working), which
 * loops while the task needs work. A result that arrives after the task
 * moved on is dropped by the state machine (the job carries its
 * generation; a lookup is checked against task->epoch). */
#include "tasks_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define N_WORKERS 2
#define RETRY_STORE_MS 1000

void hs_tasks__retry_later(hs_tasks *t, task *k, const char *what, const hs_error *err)
{
	if (!hs_tasks__held(t, k))
		return; /* another node took it over: it retries, not us */
	hs_log(HS_LOG_ERROR, "tasks", "cannot persist a transition: retrying", HS_LS("task_id", k->id),
	       HS_LS("step", what), HS_LS("error", err ? err->msg : ""));
	hs_tasks__arm_at(t, k, hs_clock_wall_ms() + RETRY_STORE_MS);
}

void hs_tasks__enqueue(hs_tasks *t, task *k)
{
	if (k->queued || k->working)
		return;
	pthread_mutex_lock(&t->rq_mu);
	if (t->rq_len == t->rq_cap) {
		size_t cap = t->rq_cap ? t->rq_cap * 2 : 64;
		task **q = malloc(cap * sizeof(*q));
		if (q == NULL) {
			pthread_mutex_unlock(&t->rq_mu);
			hs_log(HS_LOG_ERROR, "tasks", "recovery queue: out of memory",
			       HS_LS("task_id", k->id));
			hs_tasks__arm_at(t, k, hs_clock_wall_ms() + RETRY_STORE_MS);
			return;
		}
		for (size_t i = 0; i < t->rq_len; i++)
			q[i] = t->rq[(t->rq_head + i) % t->rq_cap];
		free(t->rq);
		t->rq = q;
		t->rq_cap = cap;
		t->rq_head = 0;
	}
	t->rq[(t->rq_head + t->rq_len) % t->rq_cap] = k;
	t->rq_len++;
	pthread_cond_signal(&t->rq_cv);
	pthread_mutex_unlock(&t->rq_mu);
	k->queued = true;
}

typedef enum job { JOB_NONE, JOB_ATTEMPT, JOB_RESTORE } job;

static job needed(const hs_tasks *t, const task *k)
{
	if (!hs_tasks__held(t, k))
		return JOB_NONE; /* another node owns it now */
	if (k->m.state == HS_TASK_STALLED && k->attempt_due)
		return JOB_ATTEMPT;
	if (k->m.state == HS_TASK_RECOVERING && !k->m.restored)
		return JOB_RESTORE;
	return JOB_NONE;
}

/* Backoff over: look up the latest checkpoint (unlocked), then START or
 * ATTEMPT_FAILED. task->mu held on entry and exit. False when the result
 * could not be stored (a retry is armed). */
static bool run_attempt(hs_tasks *t, task *k)
{
	hs_error err = { 0 };
	uint64_t epoch = k->epoch;
	char id[HS_TASK_ID_MAX + 1], ckpt[HS_TASK_CKPT_ID_MAX] = "";
	int64_t step = 0;
	COPY(id, k->id);
	/* Many nodes: the task's row names the last checkpoint its holder
	 * recorded, perhaps on a node that died (this node may have none, or
	 * an older one); the restore fetches it from --checkpoint-remote. */
	char row_ckpt[HS_TASK_CKPT_ID_MAX] = "";
	int64_t row_step = k->m.last_ckpt_step;
	if (t->leases)
		COPY(row_ckpt, k->m.last_ckpt);
	pthread_mutex_unlock(&k->mu);
	int rc = t->ops.latest != NULL
			 ? t->ops.latest(t->ops.ctx, id, ckpt, sizeof(ckpt), &step, &err)
			 : hs_error_set(&err, HS_UNAVAILABLE, "checkpoints are not configured");
	if (row_ckpt[0] != '\0' && t->ops.latest != NULL &&
	    (rc == HS_NOT_FOUND || (rc == HS_OK && row_step > step))) {
		COPY(ckpt, row_ckpt);
		step = row_step;
		rc = HS_OK;
	}
	pthread_mutex_lock(&k->mu);
	if (k->epoch != epoch)
		return true; /* it moved on (a heartbeat, a cancel, RecoverTask): look again */
	hs_task_input in = { .now_ms = hs_clock_wall_ms() };
	if (rc == HS_OK) {
		in.kind = HS_TIN_START;
		in.checkpoint_id = ckpt;
		in.checkpoint_step = step;
		in.message = "heartbeat timeout";
	} else {
		in.kind = HS_TIN_ATTEMPT_FAILED;
		in.before_start = true;
		in.final = rc == HS_NOT_FOUND;
		in.message = rc == HS_NOT_FOUND ? "no checkpoint to recover from" : err.msg;
	}
	atomic_fetch_add(&t->n_recoveries, 1);
	hs_error e2 = { 0 };
	if (hs_tasks__apply(t, k, &in, NULL, NULL, &e2) != HS_OK) {
		k->attempt_due = false;
		hs_tasks__retry_later(t, k, "attempt", &e2); /* DEADLINE makes it due again */
		return false;
	}
	return true;
}

/* Restore the workspace (and sandbox) of the current generation
 * (unlocked), then RESTORED or ATTEMPT_FAILED. task->mu held on entry and
 * exit. */
static bool run_restore(hs_tasks *t, task *k)
{
	hs_error err = { 0 };
	int64_t gen = k->m.gen;
	int32_t attempt = k->m.attempts;
	char id[HS_TASK_ID_MAX + 1], sandbox[HS_TASK_ID_MAX + 1], ckpt[HS_TASK_CKPT_LOCAL];
	char *workspace = strdup(k->workspace ? k->workspace : k->id);
	char *owner = strdup(k->owner);
	char *external = NULL;
	COPY(id, k->id);
	COPY(sandbox, k->sandbox_id);
	COPY(ckpt, k->m.resume_ckpt);
	pthread_mutex_unlock(&k->mu);
	hs_log(HS_LOG_INFO, "tasks", "restoring", HS_LS("task_id", id), HS_LS("checkpoint_id", ckpt),
	       HS_LI("attempt", attempt), HS_LI("generation", gen));
	int rc;
	if (workspace == NULL || owner == NULL)
		rc = hs_error_set(&err, HS_INTERNAL, "out of memory");
	else if (t->ops.restore == NULL)
		rc = hs_error_set(&err, HS_UNAVAILABLE, "checkpoints are not configured");
	else
		rc = t->ops.restore(t->ops.ctx, id, ckpt, workspace, &external, &err);
	if (rc == HS_OK && sandbox[0] != '\0') {
		if (t->ops.sandbox_recover == NULL)
			rc = hs_error_set(&err, HS_UNAVAILABLE, "sandboxes are not available");
		else
			rc = t->ops.sandbox_recover(t->ops.ctx, sandbox, owner, &err);
	}
	free(workspace);
	free(owner);
	pthread_mutex_lock(&k->mu);
	hs_task_input in = { .now_ms = hs_clock_wall_ms(), .job_gen = gen };
	char why[HS_TASK_REASON_MAX];
	if (rc == HS_OK) {
		in.kind = HS_TIN_RESTORED;
	} else {
		snprintf(why, sizeof(why), "%s", err.msg[0] ? err.msg : hs_code_name(rc));
		hs_log(HS_LOG_WARN, "tasks", "recovery attempt failed", HS_LS("task_id", id),
		       HS_LI("attempt", attempt), HS_LS("error", why));
		in.kind = HS_TIN_ATTEMPT_FAILED;
		in.message = why;
	}
	hs_error e2 = { 0 };
	hs_task_decision d;
	if (hs_tasks__apply(t, k, &in, NULL, &d, &e2) != HS_OK) {
		free(external);
		hs_tasks__retry_later(t, k, "restore", &e2); /* DEADLINE re-queues it */
		return false;
	}
	if (rc == HS_OK && d.touched && k->resume_external == NULL) {
		k->resume_external = external; /* the resume point's external state */
		external = NULL;
	}
	free(external);
	return true;
}

/* Work on k while it needs it, from a worker thread. */
static void run_job(hs_tasks *t, task *k)
{
	pthread_mutex_lock(&k->mu);
	k->queued = false;
	if (k->working) { /* the worker that has it loops */
		pthread_mutex_unlock(&k->mu);
		return;
	}
	k->working = true;
	bool go = true;
	int rounds = 0;
	for (; go && rounds < 16; rounds++) {
		job j = needed(t, k);
		if (j == JOB_NONE)
			break;
		go = j == JOB_ATTEMPT ? run_attempt(t, k) : run_restore(t, k);
	}
	k->working = false;
	if (go && rounds == 16 && needed(t, k) != JOB_NONE) /* yield the worker */
		hs_tasks__enqueue(t, k);
	pthread_mutex_unlock(&k->mu);
}

static void *worker_main(void *arg)
{
	hs_tasks *t = arg;
	pthread_mutex_lock(&t->rq_mu);
	for (;;) {
		while (!t->rq_stop && t->rq_len == 0)
			pthread_cond_wait(&t->rq_cv, &t->rq_mu);
		if (t->rq_stop)
			break;
		task *k = t->rq[t->rq_head];
		t->rq_head = (t->rq_head + 1) % t->rq_cap;
		t->rq_len--;
		pthread_mutex_unlock(&t->rq_mu);
		run_job(t, k);
		pthread_mutex_lock(&t->rq_mu);
	}
	pthread_mutex_unlock(&t->rq_mu);
	return NULL;
}

int hs_tasks__recovery_start(hs_tasks *t)
{
	for (int i = 0; i < N_WORKERS; i++) {
		if (pthread_create(&t->rec_thr[i], NULL, worker_main, t) != 0)
			return HS_INTERNAL;
		t->n_rec++;
	}
	return HS_OK;
}

void hs_tasks__recovery_stop(hs_tasks *t)
{
	pthread_mutex_lock(&t->rq_mu);
	t->rq_stop = true;
	pthread_cond_broadcast(&t->rq_cv);
	pthread_mutex_unlock(&t->rq_mu);
	for (int i = 0; i < t->n_rec; i++)
		pthread_join(t->rec_thr[i], NULL);
	t->n_rec = 0;
}
