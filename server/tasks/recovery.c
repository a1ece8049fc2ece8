/* The recovery coordinator: timeouts, backoff, and recovery attempts run on
 * two worker threads of this module (never on an RPC thread).
 *
 * One attempt: RECOVERY_STARTED (checkpoint being restored) -> restore the
 * workspace to the latest checkpoint and verify it -> bring back the sandbox
 * (restore its latest snapshot, else restart it) -> the task stays
 * RECOVERING with the resume point recorded and its heartbeat deadline
 * armed; the agent's next heartbeat gets INSTRUCTION_RESUME_FROM_CHECKPOINT
 * and the task is RUNNING again (RECOVERED). A failed attempt emits
 * RECOVERY_FAILED and is retried after the policy's backoff, until
 * max_attempts; "no checkpoint" is final at once.
 *
 * One recovery per task at a time: a task is in the queue at most once
 * (task->queued) and handled by at most one worker (task->working). A
 * transition made by someone else while the worker works without the lock
 * (cancel, complete, re-register) bumps task->epoch; the worker then drops
 * its result. */
#include "tasks_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define N_WORKERS 2
#define RETRY_STORE_MS 1000

void hs_tasks__schedule_attempt(hs_tasks *t, task *k)
{
	int64_t delay = hs_task_backoff_ms(&k->policy, k->attempts + 1);
	hs_tasks__arm_at(t, k, hs_clock_wall_ms() + delay);
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
			hs_log(HS_LOG_ERROR, "health", "recovery queue: out of memory",
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

/* Give up: FAILED with RECOVERY_FAILED (task->mu held). */
static void give_up(hs_tasks *t, task *k, const char *why)
{
	hs_error err = { 0 };
	hs_store_task_row *row = malloc(sizeof(*row));
	int64_t now = hs_clock_wall_ms();
	int rc = HS_INTERNAL;
	if (row != NULL) {
		hs_tasks__row_of(k, row);
		row->state = HS_TASK_FAILED;
		COPY(row->failure_reason, why);
		row->updated_at_ms = now;
		rc = hs_tasks__commit(t, k, row, &err);
		free(row);
	}
	k->restoring = false;
	k->resume_ckpt[0] = '\0';
	if (rc != HS_OK) {
		hs_log(HS_LOG_ERROR, "health", "cannot persist FAILED: retrying", HS_LS("task_id", k->id),
		       HS_LS("error", err.msg));
		hs_tasks__arm_at(t, k, now + RETRY_STORE_MS);
		return;
	}
	k->finished_at_ms = now;
	hs_tasks__disarm(t, k);
	hs_log(HS_LOG_WARN, "health", "recovery gave up", HS_LS("task_id", k->id),
	       HS_LS("reason", why), HS_LI("attempts", k->attempts));
	if (hs_tasks__emit(t, k, HS_TEV_RECOVERY_FAILED, k->current_step, k->last_ckpt, k->attempts,
			   why, &err) != HS_OK)
		hs_log(HS_LOG_ERROR, "health", "cannot append event", HS_LS("error", err.msg));
}

/* Back to STALLED with a RECOVERY_FAILED or TIMEOUT event, next attempt after
 * the backoff (task->mu held). */
static void to_stalled(hs_tasks *t, task *k, hs_task_event_type type, int32_t attempt,
		       const char *why)
{
	hs_error err = { 0 };
	hs_store_task_row *row = malloc(sizeof(*row));
	int rc = HS_INTERNAL;
	if (row != NULL) {
		hs_tasks__row_of(k, row);
		row->state = HS_TASK_STALLED;
		rc = hs_tasks__commit(t, k, row, &err);
		free(row);
	}
	k->restoring = false;
	k->resume_ckpt[0] = '\0';
	if (rc != HS_OK) {
		hs_log(HS_LOG_ERROR, "health", "cannot persist STALLED: retrying", HS_LS("task_id", k->id),
		       HS_LS("error", err.msg));
		hs_tasks__arm_at(t, k, hs_clock_wall_ms() + RETRY_STORE_MS);
		return;
	}
	if (hs_tasks__emit(t, k, type, k->current_step, k->last_ckpt, attempt, why, &err) != HS_OK)
		hs_log(HS_LOG_ERROR, "health", "cannot append event", HS_LS("error", err.msg));
	hs_tasks__schedule_attempt(t, k);
}

void hs_tasks__on_timeout(hs_tasks *t, task *k)
{
	char why[160];
	if (k->state == HS_TASK_RECOVERING && k->attempts >= k->policy.max_attempts) {
		snprintf(why, sizeof(why), "agent did not resume after %d recovery attempts",
			 (int)k->attempts);
		give_up(t, k, why);
		return;
	}
	snprintf(why, sizeof(why), "no heartbeat for %lld ms", (long long)k->timeout_ms);
	hs_log(HS_LOG_INFO, "health", "task stalled", HS_LS("task_id", k->id),
	       HS_LI("timeout_ms", k->timeout_ms));
	to_stalled(t, k, HS_TEV_TIMEOUT, 0, why);
}

int hs_tasks__begin_attempt(hs_tasks *t, task *k, const char *reason, hs_error *err)
{
	hs_store_task_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	hs_tasks__row_of(k, row);
	row->state = HS_TASK_RECOVERING;
	row->recovery_attempts = k->attempts + 1;
	row->failure_reason[0] = '\0';
	row->updated_at_ms = hs_clock_wall_ms();
	int rc = hs_tasks__commit(t, k, row, err);
	free(row);
	if (rc != HS_OK)
		return rc;
	k->finished_at_ms = 0;
	k->restoring = true;
	k->resume_ckpt[0] = '\0';
	free(k->reason);
	k->reason = strdup(reason ? reason : "");
	hs_tasks__disarm(t, k);
	return HS_OK;
}

/* One attempt for k, from a worker thread. */
static void run_job(hs_tasks *t, task *k)
{
	hs_error err = { 0 };
	pthread_mutex_lock(&k->mu);
	k->queued = false;
	if (k->working) {
		pthread_mutex_unlock(&k->mu);
		return;
	}
	if (k->state == HS_TASK_STALLED) {
		if (hs_tasks__begin_attempt(t, k, "heartbeat timeout", &err) != HS_OK) {
			hs_log(HS_LOG_ERROR, "health", "cannot start recovery: retrying",
			       HS_LS("task_id", k->id), HS_LS("error", err.msg));
			hs_tasks__arm_at(t, k, hs_clock_wall_ms() + RETRY_STORE_MS);
			pthread_mutex_unlock(&k->mu);
			return;
		}
	} else if (!(k->state == HS_TASK_RECOVERING && k->restoring)) {
		pthread_mutex_unlock(&k->mu);
		return;
	}
	k->working = true;
	uint64_t epoch = k->epoch;
	int32_t attempt = k->attempts;
	char id[HS_TASK_ID_MAX + 1], sandbox[HS_TASK_ID_MAX + 1], reason[HS_TASK_REASON_MAX];
	char *workspace = strdup(k->workspace ? k->workspace : k->id);
	char *owner = strdup(k->owner);
	COPY(id, k->id);
	COPY(sandbox, k->sandbox_id);
	COPY(reason, k->reason ? k->reason : "");
	pthread_mutex_unlock(&k->mu);
	atomic_fetch_add(&t->n_recoveries, 1);
	hs_log(HS_LOG_INFO, "health", "recovery attempt", HS_LS("task_id", id),
	       HS_LI("attempt", attempt));

	char ckpt[HS_TASK_CKPT_ID_MAX] = "";
	int64_t step = 0;
	bool final = false, aborted = false;
	int rc;
	if (workspace == NULL || owner == NULL)
		rc = hs_error_set(&err, HS_INTERNAL, "out of memory");
	else if (t->ops.latest == NULL)
		rc = hs_error_set(&err, HS_UNAVAILABLE, "checkpoints are not configured");
	else
		rc = t->ops.latest(t->ops.ctx, id, ckpt, sizeof(ckpt), &step, &err);
	if (rc == HS_NOT_FOUND) {
		final = true;
		hs_error_clear(&err);
		hs_error_set(&err, HS_NOT_FOUND, "no checkpoint to recover from");
	}
	if (rc == HS_OK) {
		pthread_mutex_lock(&k->mu);
		aborted = k->epoch != epoch || k->state != HS_TASK_RECOVERING;
		if (!aborted) {
			hs_error e2 = { 0 };
			if (hs_tasks__emit(t, k, HS_TEV_RECOVERY_STARTED, step, ckpt, attempt, reason,
					   &e2) != HS_OK)
				hs_log(HS_LOG_ERROR, "health", "cannot append event",
				       HS_LS("error", e2.msg));
		}
		pthread_mutex_unlock(&k->mu);
		if (!aborted)
			rc = t->ops.restore(t->ops.ctx, id, ckpt, workspace, &err);
		if (!aborted && rc == HS_OK && sandbox[0] != '\0') {
			if (t->ops.sandbox_recover == NULL)
				rc = hs_error_set(&err, HS_UNAVAILABLE, "sandboxes are not available");
			else
				rc = t->ops.sandbox_recover(t->ops.ctx, sandbox, owner, &err);
		}
	}
	free(workspace);
	free(owner);

	pthread_mutex_lock(&k->mu);
	k->working = false;
	if (aborted || k->epoch != epoch || k->state != HS_TASK_RECOVERING) {
		pthread_mutex_unlock(&k->mu);
		return; /* cancelled, completed or re-registered meanwhile */
	}
	if (rc == HS_OK) {
		hs_store_task_row *row = malloc(sizeof(*row));
		if (row == NULL) {
			rc = hs_error_set(&err, HS_INTERNAL, "out of memory");
		} else {
			hs_tasks__row_of(k, row);
			row->current_step = step;
			COPY(row->last_checkpoint_id, ckpt);
			rc = hs_tasks__commit(t, k, row, &err);
			free(row);
		}
	}
	if (rc == HS_OK) {
		k->restoring = false;
		COPY(k->resume_ckpt, ckpt);
		k->resume_step = step;
		hs_tasks__arm_at(t, k, hs_clock_wall_ms() + k->timeout_ms);
		hs_log(HS_LOG_INFO, "health", "workspace restored: waiting for the agent",
		       HS_LS("task_id", id), HS_LS("checkpoint_id", ckpt), HS_LI("step", step));
	} else {
		char why[HS_TASK_REASON_MAX];
		snprintf(why, sizeof(why), "%s", err.msg[0] ? err.msg : hs_code_name(rc));
		hs_log(HS_LOG_WARN, "health", "recovery attempt failed", HS_LS("task_id", id),
		       HS_LI("attempt", attempt), HS_LS("error", why));
		if (final || k->attempts >= k->policy.max_attempts)
			give_up(t, k, why);
		else
			to_stalled(t, k, HS_TEV_RECOVERY_FAILED, attempt, why);
	}
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
