/* The task state machine, written once. Every input of a task (RPCs, its
 * timer, the recovery workers) goes through hs_task_decide; transition.c
 * persists and applies the decision. Pure: no I/O, no locks, no clock.
 *
 *  RegisterTask -> RUNNING --no heartbeat within timeout (TIMEOUT)--> STALLED
 *                  ^  ^  |                                            |  |  ^
 *                  |  |  +--RecoverTask--+   +--backoff over, or------+  |  |
 *                  |  |                  |   |  RecoverTask              |  |
 *                  |  |                  v   v                           |  |
 *                  |  |   (RECOVERY_STARTED,  RECOVERING   restore failed|  |
 *                  |  |    generation + 1)    restoring  ----------------+  |
 *                  |  |                          |       (RECOVERY_FAILED)  |
 *                  |  |        restore finished  |                          |
 *                  |  |    (WORKSPACE_RESTORED)  v                          |
 *                  |  +--acknowledgement----- RECOVERING   no acknowledgement
 *                  |     (RECOVERED)          restored   -------------------+
 *                  |                                      within timeout
 *                  |                                      (TIMEOUT)
 *                  +--from STALLED: a heartbeat of a current agent when
 *                     nothing was restored (LATE_HEARTBEAT), or the
 *                     acknowledgement of a finished restore (RECOVERED)
 *
 *   any non-terminal --CompleteTask--> COMPLETED (COMPLETED) | FAILED (FAILED)
 *   any non-terminal --CancelTask--> CANCELLED (CANCELLED)
 *   an attempt fails with no checkpoint, or with max_attempts used up, or
 *   the acknowledgement times out with max_attempts used up --> FAILED
 *   (RECOVERY_FAILED)
 *   FAILED --RecoverTask--> RECOVERING restoring (attempts start over)
 *   COMPLETED | FAILED | CANCELLED --RegisterTask--> RUNNING (REGISTERED)
 *   (a new task starts from the zero machine, state 0, the same way)
 *
 * Fencing. gen counts the attempts that may have touched the workspace;
 * the agent's heartbeat carries g, the generation it last acknowledged. It
 * is current when g == gen, or when nothing was restored since the
 * registration (gen == base_gen: old agents that send 0 work as before).
 * A heartbeat that is not current is answered RESUME_FROM_CHECKPOINT
 * (gen's checkpoint, step and external state) once gen's restore finished,
 * WAIT before, in every state, and changes nothing: stale heartbeats are
 * not liveness. A current heartbeat with g == gen > acked_gen is the
 * acknowledgement (RECOVERED); before the restore finished it is WAIT too.
 * So no agent is told CONTINUE on a workspace that changed under it, a
 * lost RESUME reply costs nothing (the next heartbeat gets it again), and
 * RECOVERED means the agent really resumed. g > gen is refused.
 *
 * Invariants: base_gen <= acked_gen <= gen; RUNNING => acked_gen == gen;
 * RECOVERING => acked_gen < gen; restored => resume_ckpt set. */
#include "fsm.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static bool terminal(int s)
{
	return s == HS_TASK_COMPLETED || s == HS_TASK_FAILED || s == HS_TASK_CANCELLED;
}

static void copy(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src ? src : "");
}

void hs_task_fsm_init(hs_task_fsm *m, int64_t total_steps, int64_t interval_ms,
		      int64_t timeout_ms, const hs_task_policy *policy, int64_t now_ms)
{
	memset(m, 0, sizeof(*m));
	m->state = HS_TASK_RUNNING;
	m->total_steps = total_steps;
	m->interval_ms = interval_ms;
	m->timeout_ms = timeout_ms;
	m->policy = *policy;
	m->last_heartbeat_ms = now_ms;
	m->deadline_ms = now_ms + timeout_ms;
}

bool hs_task_fsm_current(const hs_task_fsm *m, int64_t g)
{
	return g == m->gen || (g < m->gen && m->gen == m->base_gen);
}

/* A checkpoint records the workspace as the one the next recovery
 * restores. While an attempt is unacknowledged the workspace is being
 * restored, or was restored under an agent that has not heard of it yet:
 * recording it then would make a half-restored or stale tree the latest.
 * An agent whose generation is not current is the stale agent itself. */
int hs_task_checkpoint_fence(const hs_task_fsm *m, int64_t g, char *why, size_t cap)
{
	if (g < 0) {
		snprintf(why, cap, "recovery_generation: must be >= 0");
		return HS_INVALID;
	}
	if (m->gen > m->acked_gen) {
		if (m->state == HS_TASK_RECOVERING && !m->restored)
			snprintf(why, cap,
				 "task is RECOVERING: its workspace is being restored (generation "
				 "%lld); no checkpoint until the agent acknowledged it",
				 (long long)m->gen);
		else
			snprintf(why, cap,
				 "task is %s: recovery generation %lld is not acknowledged; heartbeat "
				 "with recovery_generation %lld before checkpointing",
				 hs_task_state_name(m->state), (long long)m->gen, (long long)m->gen);
		return HS_CONFLICT;
	}
	if (g > m->gen) {
		snprintf(why, cap, "recovery_generation: %lld is newer than the task's generation %lld",
			 (long long)g, (long long)m->gen);
		return HS_CONFLICT;
	}
	if (g > 0 && !hs_task_fsm_current(m, g)) {
		snprintf(why, cap,
			 "recovery_generation: %lld is stale (the task's is %lld): the workspace was "
			 "restored under this agent; resume from the checkpoint first",
			 (long long)g, (long long)m->gen);
		return HS_CONFLICT;
	}
	return HS_OK;
}

static void reject(hs_task_decision *d, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void reject(hs_task_decision *d, int rc, const char *fmt, ...)
{
	va_list ap;
	d->rc = rc;
	va_start(ap, fmt);
	vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
	va_end(ap);
}

static void event(hs_task_decision *d, hs_task_event_type type, int64_t step, const char *ckpt,
		  int32_t attempt)
{
	d->touched = true;
	d->write_row = true;
	d->event = type;
	d->ev_step = step;
	d->ev_ckpt = ckpt;
	d->ev_attempt = attempt;
}

static int64_t backoff_deadline(const hs_task_fsm *n, int64_t now)
{
	return now + hs_task_backoff_ms(&n->policy, n->attempts + 1);
}

/* Give up: FAILED with RECOVERY_FAILED carrying why (in d->ev_msg). */
static void give_up(hs_task_decision *d, int64_t now)
{
	hs_task_fsm *n = &d->next;
	n->state = HS_TASK_FAILED;
	n->deadline_ms = 0;
	n->finished_at_ms = now;
	d->set_failure = true;
	d->failure = d->ev_msg;
	event(d, HS_TEV_RECOVERY_FAILED, n->current_step, n->last_ckpt, n->attempts);
}

/* A failed attempt: retried after the backoff while attempts are left. */
static void attempt_failed(hs_task_decision *d, bool final, int64_t now)
{
	hs_task_fsm *n = &d->next;
	if (final || n->attempts >= n->policy.max_attempts) {
		give_up(d, now);
		return;
	}
	n->state = HS_TASK_STALLED;
	n->deadline_ms = backoff_deadline(n, now);
	event(d, HS_TEV_RECOVERY_FAILED, n->current_step, n->last_ckpt, n->attempts);
}

static void take_beat(hs_task_decision *d, const hs_task_input *in)
{
	hs_task_fsm *n = &d->next;
	n->current_step = in->step;
	if (in->total_steps > 0)
		n->total_steps = in->total_steps;
	n->last_heartbeat_ms = in->now_ms;
	n->deadline_ms = in->now_ms + n->timeout_ms;
	d->touched = true;
	d->progress = true;
	d->instruction = HS_TASK_CONTINUE;
	d->reply_gen = n->gen;
	d->reply_deadline_ms = n->deadline_ms;
}

static void beat(const char *id, const hs_task_fsm *c, const hs_task_input *in,
		 hs_task_decision *d)
{
	hs_task_fsm *n = &d->next;
	int64_t now = in->now_ms;
	if (c->state == HS_TASK_COMPLETED) {
		reject(d, HS_CONFLICT, "task %s is COMPLETED", id);
		return;
	}
	if (c->state == HS_TASK_CANCELLED || c->state == HS_TASK_FAILED) {
		d->instruction = HS_TASK_CANCEL;
		return;
	}
	if (in->generation < 0) {
		reject(d, HS_INVALID, "recovery_generation: must be >= 0");
		return;
	}
	if (in->generation > c->gen) {
		reject(d, HS_CONFLICT,
		       "recovery_generation: %lld is newer than the task's generation %lld",
		       (long long)in->generation, (long long)c->gen);
		return;
	}
	bool stale = !hs_task_fsm_current(c, in->generation);
	if (stale || c->gen > c->acked_gen) {
		/* The workspace changed under this agent (stale), or this is the
		 * acknowledgement of gen. Either needs gen's restore finished. */
		if (!c->restored) {
			d->instruction = HS_TASK_WAIT;
			d->reply_deadline_ms = now + c->interval_ms;
			return;
		}
		if (stale) {
			d->instruction = HS_TASK_RESUME;
			d->reply_gen = c->gen;
			d->reply_deadline_ms =
				c->state != HS_TASK_RUNNING && c->deadline_ms > now ? c->deadline_ms
										    : now + c->interval_ms;
			return;
		}
		/* Acknowledged: RUNNING from the resume point on. */
		n->state = HS_TASK_RUNNING;
		n->acked_gen = c->gen;
		n->attempts = 0;
		take_beat(d, in);
		snprintf(d->ev_msg, sizeof(d->ev_msg),
			 "agent acknowledged recovery generation %lld", (long long)c->gen);
		event(d, HS_TEV_RECOVERED, c->resume_step, n->resume_ckpt, 0);
		return;
	}
	if (c->state == HS_TASK_RUNNING) {
		take_beat(d, in);
		d->beat_only = true;
		return;
	}
	/* STALLED and nothing restored since this agent's acknowledgement:
	 * the workspace is as it left it. (RECOVERING always has gen >
	 * acked_gen, handled above.) */
	n->state = HS_TASK_RUNNING;
	n->attempts = 0;
	int64_t silent = now - c->last_heartbeat_ms;
	take_beat(d, in);
	snprintf(d->ev_msg, sizeof(d->ev_msg),
		 "heartbeat after %lld ms of silence; nothing was restored", (long long)silent);
	event(d, HS_TEV_LATE_HEARTBEAT, in->step, n->last_ckpt, 0);
}

static void deadline(const hs_task_fsm *c, const hs_task_input *in, hs_task_decision *d)
{
	hs_task_fsm *n = &d->next;
	int64_t now = in->now_ms;
	switch (c->state) {
	case HS_TASK_RUNNING:
		n->state = HS_TASK_STALLED;
		n->deadline_ms = backoff_deadline(n, now);
		snprintf(d->ev_msg, sizeof(d->ev_msg), "no heartbeat for %lld ms",
			 (long long)c->timeout_ms);
		event(d, HS_TEV_TIMEOUT, c->current_step, c->last_ckpt, 0);
		return;
	case HS_TASK_STALLED:
		/* Backoff over: a worker looks up the latest checkpoint and
		 * comes back with START (or ATTEMPT_FAILED). */
		n->deadline_ms = 0;
		d->touched = true;
		d->enqueue = true;
		return;
	case HS_TASK_RECOVERING:
		if (!c->restored) { /* a retry of the restore job */
			d->touched = true;
			d->enqueue = true;
			return;
		}
		n->deadline_ms = 0;
		if (c->attempts >= c->policy.max_attempts) {
			snprintf(d->ev_msg, sizeof(d->ev_msg),
				 "agent did not acknowledge recovery generation %lld within %lld ms "
				 "(%d attempts)",
				 (long long)c->gen, (long long)c->timeout_ms, (int)c->attempts);
			give_up(d, now);
			return;
		}
		n->state = HS_TASK_STALLED;
		n->deadline_ms = backoff_deadline(n, now);
		snprintf(d->ev_msg, sizeof(d->ev_msg),
			 "recovery generation %lld not acknowledged within %lld ms", (long long)c->gen,
			 (long long)c->timeout_ms);
		event(d, HS_TEV_TIMEOUT, c->current_step, c->last_ckpt, c->attempts);
		return;
	default:
		return;
	}
}

static void start(const char *id, const hs_task_fsm *c, const hs_task_input *in,
		  hs_task_decision *d)
{
	hs_task_fsm *n = &d->next;
	if (!in->manual && c->state != HS_TASK_STALLED)
		return; /* the task moved on while the worker looked */
	if (c->state == HS_TASK_RECOVERING) {
		reject(d, HS_CONFLICT, "task %s is already RECOVERING", id);
		return;
	}
	if (c->state == HS_TASK_COMPLETED || c->state == HS_TASK_CANCELLED) {
		reject(d, HS_CONFLICT, "task %s is %s", id, hs_task_state_name(c->state));
		return;
	}
	if (c->state == HS_TASK_FAILED)
		n->attempts = 0; /* a manual retry starts a fresh series */
	n->state = HS_TASK_RECOVERING;
	n->attempts++;
	n->gen = c->gen + 1;
	n->restored = false;
	copy(n->resume_ckpt, sizeof(n->resume_ckpt), in->checkpoint_id);
	n->resume_step = in->checkpoint_step;
	n->deadline_ms = 0;
	n->finished_at_ms = 0;
	d->set_failure = true;
	d->failure = "";
	d->new_resume = true;
	d->enqueue = true;
	copy(d->ev_msg, sizeof(d->ev_msg), in->message);
	event(d, HS_TEV_RECOVERY_STARTED, n->resume_step, n->resume_ckpt, n->attempts);
}

static void restored(const hs_task_fsm *c, const hs_task_input *in, hs_task_decision *d)
{
	hs_task_fsm *n = &d->next;
	if (c->state != HS_TASK_RECOVERING || c->restored || c->gen != in->job_gen)
		return; /* cancelled, completed, re-registered or restarted meanwhile */
	n->restored = true;
	n->current_step = c->resume_step;
	copy(n->last_ckpt, sizeof(n->last_ckpt), c->resume_ckpt);
	n->last_ckpt_step = c->resume_step;
	n->deadline_ms = in->now_ms + c->timeout_ms;
	snprintf(d->ev_msg, sizeof(d->ev_msg),
		 "workspace restored; waiting for the agent to acknowledge recovery generation %lld",
		 (long long)c->gen);
	event(d, HS_TEV_WORKSPACE_RESTORED, c->resume_step, n->resume_ckpt, c->attempts);
}

static void failed_attempt(const hs_task_fsm *c, const hs_task_input *in, hs_task_decision *d)
{
	hs_task_fsm *n = &d->next;
	if (in->before_start) {
		if (c->state != HS_TASK_STALLED)
			return;
		n->attempts++;
	} else if (c->state != HS_TASK_RECOVERING || c->restored || c->gen != in->job_gen) {
		return;
	}
	copy(d->ev_msg, sizeof(d->ev_msg), in->message);
	attempt_failed(d, in->final, in->now_ms);
}

static void finish(const char *id, const hs_task_fsm *c, const hs_task_input *in,
		   hs_task_decision *d)
{
	hs_task_fsm *n = &d->next;
	const char *msg = in->message ? in->message : "";
	if (in->kind == HS_TIN_CANCEL && c->state == HS_TASK_CANCELLED)
		return; /* idempotent */
	if (terminal(c->state)) {
		reject(d, HS_CONFLICT,
		       in->kind == HS_TIN_CANCEL ? "task %s is %s" : "task %s is already %s", id,
		       hs_task_state_name(c->state));
		return;
	}
	hs_task_event_type type;
	if (in->kind == HS_TIN_CANCEL) {
		n->state = HS_TASK_CANCELLED;
		n->cancel_requested = true;
		if (msg[0] == '\0')
			msg = "cancelled";
		d->set_failure = true;
		d->failure = msg;
		type = HS_TEV_CANCELLED;
	} else if (in->success) {
		n->state = HS_TASK_COMPLETED;
		d->set_result = true;
		d->result = msg;
		type = HS_TEV_COMPLETED;
	} else {
		n->state = HS_TASK_FAILED;
		d->set_failure = true;
		d->failure = msg;
		type = HS_TEV_FAILED;
	}
	n->deadline_ms = 0;
	n->finished_at_ms = in->now_ms;
	copy(d->ev_msg, sizeof(d->ev_msg), msg);
	event(d, type, c->current_step, n->last_ckpt, 0);
}

static void do_register(const char *id, const hs_task_fsm *c, const hs_task_input *in,
			hs_task_decision *d)
{
	hs_task_fsm *n = &d->next;
	if (c->state != 0 && !terminal(c->state)) {
		reject(d, HS_EXISTS, "task %s already exists and is %s", id,
		       hs_task_state_name(c->state));
		return;
	}
	/* A new task (c is the zero machine), or a new run of the same id:
	 * counters start over, the checkpoint record and the generation stay
	 * (agents of the old run stay fenced once a restore happens in this
	 * one). */
	hs_task_fsm_init(n, in->total_steps, in->interval_ms, in->timeout_ms, &in->policy,
			 in->now_ms);
	n->gen = n->base_gen = n->acked_gen = c->gen;
	copy(n->last_ckpt, sizeof(n->last_ckpt), c->last_ckpt);
	n->last_ckpt_step = c->last_ckpt_step;
	d->set_failure = d->set_result = true;
	d->failure = d->result = "";
	d->new_resume = true;
	event(d, HS_TEV_REGISTERED, 0, n->last_ckpt, 0);
}

void hs_task_decide(const char *id, const hs_task_fsm *cur, const hs_task_input *in,
		    hs_task_decision *d)
{
	memset(d, 0, sizeof(*d));
	d->next = *cur;
	switch (in->kind) {
	case HS_TIN_BEAT:
		beat(id, cur, in, d);
		break;
	case HS_TIN_DEADLINE:
		deadline(cur, in, d);
		break;
	case HS_TIN_START:
		start(id, cur, in, d);
		break;
	case HS_TIN_RESTORED:
		restored(cur, in, d);
		break;
	case HS_TIN_ATTEMPT_FAILED:
		failed_attempt(cur, in, d);
		break;
	case HS_TIN_COMPLETE:
	case HS_TIN_CANCEL:
		finish(id, cur, in, d);
		break;
	case HS_TIN_REGISTER:
		do_register(id, cur, in, d);
		break;
	case HS_TIN_CHECKPOINT:
		copy(d->next.last_ckpt, sizeof(d->next.last_ckpt), in->checkpoint_id);
		d->next.last_ckpt_step = in->checkpoint_step;
		d->touched = true;
		d->write_row = true;
		break;
	}
	if (d->rc != HS_OK)
		d->next = *cur;
	if (d->instruction != 0 && d->instruction != HS_TASK_CONTINUE)
		d->reply_gen = d->instruction == HS_TASK_RESUME ? cur->gen : 0;
}
