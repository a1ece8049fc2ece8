/* Applying the state machine's decisions: the only code that changes a
 * task. Order: decide (fsm.c, pure) -> persist -> memory -> timer -> jobs.
 * A state change and its event are one store transaction written under
 * t->ev_mu (watch.c), so after a crash both exist or neither, and watchers
 * see events in id order. The heartbeat hot path writes only its columns
 * (group commit). Nothing is acknowledged, broadcast or armed before the
 * store has it, with one exception: an asynchronous heartbeat
 * (hs_tasks__apply_beat_async, the RPC hot path) queues its write and then
 * moves memory and the deadline at once, under the task lock, so beats,
 * the timer and state changes stay in one order; its caller is answered
 * only when the group commit holding the write returned. If that commit
 * fails the caller gets the error and memory is one heartbeat ahead of the
 * store until the next one (after a restart the store's earlier deadline
 * applies: the safe direction).
 *
 * Many nodes (t->leases): a row write is made on behalf of the task's lease
 * (fenced); a refusal means another node took the task over, and the task
 * is dropped here (lease.c). Heartbeat columns are written unfenced: they
 * carry no state, and a late one from a node that just lost the lease is a
 * real heartbeat of the agent. */
#include "tasks_internal.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

void hs_tasks__event_of(const task *k, const hs_task_decision *d, int64_t now, hs_task_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	COPY(ev->task_id, k->id);
	ev->type = d->event;
	ev->step = d->ev_step;
	COPY(ev->checkpoint_id, d->ev_ckpt);
	COPY(ev->message, d->ev_msg);
	ev->attempt = d->ev_attempt;
	ev->state = d->next.state;
	ev->occurred_at_ms = now;
	COPY(ev->owner, k->owner);
	COPY(ev->sandbox_id, k->sandbox_id);
	ev->recovery_generation = d->next.gen;
}

/* Write the decision's row (and event). */
static int persist_row(hs_tasks *t, task *k, const hs_task_input *in, const hs_task_beat *beat,
		       const hs_task_decision *d, hs_error *err)
{
	hs_store_task_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	hs_tasks__row_of(k, &d->next, row);
	if (d->progress && beat != NULL) {
		row->cpu_usage = beat->cpu_usage;
		row->memory_usage_mb = beat->memory_usage_mb;
		row->disk_usage_mb = beat->disk_usage_mb;
		if (beat->details != NULL && beat->details[0] != '\0')
			COPY(row->details, beat->details);
	}
	/* The row has no result column: a COMPLETED task's result message is
	 * kept in failure_reason (which is empty for COMPLETED by definition). */
	if (d->next.state == HS_TASK_COMPLETED)
		COPY(row->failure_reason, d->set_result ? d->result : k->result_message);
	else if (d->set_failure)
		COPY(row->failure_reason, d->failure);
	row->updated_at_ms = in->now_ms;
	int rc;
	if (d->event != 0) {
		hs_task_event ev;
		hs_tasks__event_of(k, d, in->now_ms, &ev);
		rc = hs_tasks__publish(t, row, false, &ev, k->fence, err);
	} else if (k->fence > 0) {
		rc = hs_store_task_transition_fenced(t->store, row, false, NULL, t->node_id, k->fence,
						     hs_clock_wall_ms(), NULL, err);
	} else {
		rc = hs_store_task_update(t->store, row, err);
	}
	free(row);
	return rc;
}

static void set_timer(hs_tasks *t, task *k, int64_t before, int64_t after)
{
	if (after == before)
		return;
	if (after == 0)
		hs_tasks__disarm(t, k);
	else
		hs_tasks__arm_at(t, k, after);
}

/* Memory follows the store (or, on the asynchronous heartbeat path, the
 * queued write). Strings are best effort on OOM: the store has them and a
 * restart reloads them. */
static void apply_memory(hs_tasks *t, task *k, const hs_task_input *in, const hs_task_beat *beat,
			 const hs_task_decision *d, const char *details)
{
	int64_t before = k->m.deadline_ms;
	k->m = d->next;
	k->epoch++;
	if (d->progress && beat != NULL) {
		k->cpu = beat->cpu_usage;
		k->mem = beat->memory_usage_mb;
		k->disk = beat->disk_usage_mb;
		if (details != k->details)
			(void)hs_tasks__set_str(&k->details, details);
	}
	if (d->set_failure)
		(void)hs_tasks__set_str(&k->failure_reason, d->failure);
	if (d->set_result)
		(void)hs_tasks__set_str(&k->result_message, d->result);
	if (d->new_resume) {
		free(k->resume_external);
		k->resume_external = NULL;
	}
	set_timer(t, k, before, k->m.deadline_ms);
	if (d->enqueue && k->m.state == HS_TASK_STALLED)
		k->attempt_due = true; /* the backoff is over */
	else if (d->event != 0 || k->m.state != HS_TASK_STALLED)
		k->attempt_due = false;
	if (d->enqueue)
		hs_tasks__enqueue(t, k);
	if (t->leases && k->fence > 0 && d->event != 0 &&
	    (k->m.state == HS_TASK_COMPLETED || k->m.state == HS_TASK_FAILED ||
	     k->m.state == HS_TASK_CANCELLED)) {
		/* Finished: nothing left to own. Give the lease up (kept in memory
		 * for reads; registering the id again takes a new one). */
		hs_error e = { 0 };
		if (hs_store_lease_release(t->store, k->id, t->node_id, k->fence, &e) != HS_OK)
			hs_log(HS_LOG_WARN, "tasks", "cannot release a finished task's lease",
			       HS_LS("task_id", k->id), HS_LS("error", e.msg));
		k->fence = 0;
	}
	if (d->event != 0)
		hs_tasks__metrics_event(t, d->event);
	if (d->event != 0 && d->event != HS_TEV_RECOVERED && d->event != HS_TEV_REGISTERED)
		hs_log(HS_LOG_INFO, "tasks", "task event", HS_LS("task_id", k->id),
		       HS_LS("state", hs_task_state_name(k->m.state)), HS_LI("event", d->event),
		       HS_LI("generation", k->m.gen), HS_LS("message", d->ev_msg));
}

static const char *beat_details(const task *k, const hs_task_beat *beat, const hs_task_decision *d)
{
	if (d->progress && beat != NULL && beat->details != NULL && beat->details[0] != '\0')
		return beat->details;
	return k->details;
}

int hs_tasks__apply(hs_tasks *t, task *k, const hs_task_input *in, const hs_task_beat *beat,
		    hs_task_decision *dout, hs_error *err)
{
	hs_task_decision local, *d = dout ? dout : &local;
	int rc = HS_OK;
	if (!hs_tasks__held(t, k)) /* many nodes: another node acts on it */
		return hs_error_set(err, HS_UNAVAILABLE, "task %s: held by another node; retry",
				    k->id);
	hs_task_decide(k->id, &k->m, in, d);
	if (d->rc != HS_OK)
		return hs_error_set(err, d->rc, "%s", d->msg);
	if (!d->touched)
		return HS_OK; /* a pure reply (RESUME, WAIT, CANCEL) or a stale job */
	const char *details = beat_details(k, beat, d);
	if (d->beat_only) {
		rc = hs_store_task_heartbeat(t->store, k->id, d->next.current_step,
					     d->next.total_steps, beat->cpu_usage,
					     beat->memory_usage_mb, beat->disk_usage_mb, details,
					     in->now_ms, err);
	} else if (d->write_row) {
		rc = persist_row(t, k, in, beat, d, err);
		if (rc == HS_CONFLICT && k->fence > 0) {
			/* Another node took the lease over: it acts now, not us. */
			hs_tasks__lease_drop(t, k, "a fenced write was refused");
			return hs_error_set(err, HS_UNAVAILABLE,
					    "task %s: another node took it over; retry", k->id);
		}
	}
	if (rc != HS_OK)
		return rc;
	apply_memory(t, k, in, beat, d, details);
	return HS_OK;
}

int hs_tasks__apply_beat_async(hs_tasks *t, task *k, const hs_task_input *in,
			       const hs_task_beat *beat, const hs_task_decision *d,
			       hs_store_beat_done_fn done, void *arg, hs_error *err)
{
	const char *details = beat_details(k, beat, d);
	int rc = hs_store_task_heartbeat_async(t->store, k->id, d->next.current_step,
					       d->next.total_steps, beat->cpu_usage,
					       beat->memory_usage_mb, beat->disk_usage_mb, details,
					       in->now_ms, done, arg, err);
	if (rc != HS_OK)
		return rc;
	apply_memory(t, k, in, beat, d, details);
	return HS_OK;
}
