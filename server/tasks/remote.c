/* Calls for a task another node holds (many nodes, lease.c), served from
 * the store without acting on the task.
 *
 * Heartbeats may reach any node (a load balancer in front of several).
 * The simpler correct design of the two the issue allows is chosen: no
 * forwarding; the receiving node decides with the state machine on the
 * stored row, and
 *   - a decision that only moves the heartbeat columns (the common case: a
 *     RUNNING task beating) is written through the store and answered; the
 *     holder reads the stored heartbeat before its deadline fires
 *     (tasks.c, beaten_elsewhere), so the task does not time out;
 *   - anything else (an acknowledgement, a resume, a late heartbeat of a
 *     stalled task: a state change only the holder may write) is answered
 *     UNAVAILABLE naming the holder and its advertised address: the agent
 *     retries (there, or here once the lease moved).
 * A heartbeat for a task whose lease expired never gets here: the
 * receiving node takes the task over first (ops.c, find_locked_at). */
#include "tasks_internal.h"

#include <stdlib.h>
#include <string.h>

/* The stored row as a task outside the index (*out: hs_tasks__task_free). */
static int task_of_row(const hs_store_task_row *row, task **out, hs_error *err)
{
	task *k = hs_tasks__task_new();
	if (k == NULL || hs_tasks__adopt(k, row) != HS_OK) {
		if (k != NULL)
			hs_tasks__task_free(k);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	if (k->m.state == HS_TASK_RUNNING)
		k->m.deadline_ms = k->m.last_heartbeat_ms + k->m.timeout_ms;
	*out = k;
	return HS_OK;
}

int hs_tasks__remote_get(hs_tasks *t, const hs_store_task_row *row, hs_task_info *out,
			 hs_error *err)
{
	(void)t;
	task *k = NULL;
	int rc = task_of_row(row, &k, err);
	if (rc != HS_OK)
		return rc;
	bool oom = false;
	hs_tasks__info_of(k, out, &oom);
	hs_tasks__task_free(k);
	if (oom) {
		hs_task_info_dispose(out);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	return HS_OK;
}

int hs_tasks__remote_fence(const hs_store_task_row *row, int64_t generation, hs_error *err)
{
	task *k = NULL;
	int rc = task_of_row(row, &k, err);
	if (rc != HS_OK)
		return rc;
	char why[256];
	rc = hs_task_checkpoint_fence(&k->m, generation, why, sizeof(why));
	hs_tasks__task_free(k);
	return rc != HS_OK ? hs_error_set(err, rc, "%s", why) : HS_OK;
}

int hs_tasks__remote_beat(hs_tasks *t, const hs_store_task_row *row, const hs_task_beat *b,
			  const hs_store_lease_row *holder, hs_task_beat_reply *out,
			  hs_error *err)
{
	task *k = NULL;
	const char *task_id = row->task_id;
	int rc = task_of_row(row, &k, err);
	if (rc != HS_OK)
		return rc;
	memset(out, 0, sizeof(*out));
	hs_task_input in;
	if ((rc = hs_tasks__beat_input(task_id, b, &in, err)) != HS_OK)
		goto done;
	hs_task_decision d;
	hs_task_decide(k->id, &k->m, &in, &d);
	if (d.rc != HS_OK) {
		rc = hs_error_set(err, d.rc, "%s", d.msg);
		goto done;
	}
	if (d.instruction == HS_TASK_RESUME || (d.touched && !d.beat_only)) {
		rc = hs_tasks__elsewhere(t, task_id, holder, err);
		goto done;
	}
	if (d.touched) {
		const char *details = b->details != NULL && b->details[0] != '\0' ? b->details
										 : k->details;
		rc = hs_store_task_heartbeat(t->store, task_id, d.next.current_step,
					     d.next.total_steps, b->cpu_usage, b->memory_usage_mb,
					     b->disk_usage_mb, details, in.now_ms, err);
		if (rc != HS_OK)
			goto done;
	}
	out->state = (hs_task_state)(d.touched ? d.next.state : k->m.state);
	out->instruction = d.instruction;
	out->recovery_generation = d.reply_gen;
	out->next_deadline_ms = d.instruction == HS_TASK_CANCEL ? 0 : d.reply_deadline_ms;
done:
	hs_tasks__task_free(k);
	return rc;
}

void hs_tasks__merge_progress(hs_task_info *info, const hs_store_task_row *row)
{
	if (info->state != HS_TASK_RUNNING || row->state != HS_TASK_RUNNING)
		return;
	if (row->last_heartbeat_ms > info->last_heartbeat_ms ||
	    (row->last_heartbeat_ms == info->last_heartbeat_ms &&
	     row->current_step > info->current_step)) { /* the same ms: the further one */
		info->last_heartbeat_ms = row->last_heartbeat_ms;
		info->current_step = row->current_step;
		if (row->total_steps > 0)
			info->total_steps = row->total_steps;
		info->cpu_usage = row->cpu_usage;
		info->memory_usage_mb = row->memory_usage_mb;
		info->disk_usage_mb = row->disk_usage_mb;
		info->next_deadline_ms = row->last_heartbeat_ms + info->heartbeat_timeout_ms;
		char *d = strdup(row->details);
		if (d != NULL) {
			free(info->details);
			info->details = d;
		}
	}
}

void hs_tasks__remote_progress(hs_tasks *t, hs_task_info *info)
{
	if (info->state != HS_TASK_RUNNING)
		return;
	hs_store_task_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return;
	if (hs_store_task_get(t->store, info->task_id, row, NULL) == HS_OK)
		hs_tasks__merge_progress(info, row);
	free(row);
}
