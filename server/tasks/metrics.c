/* The tasks module's metrics: tasks by state (read at scrape time),
 * heartbeat lag (how late TIMEOUT fired against the deadline), recoveries
 * started / succeeded / failed, webhook deliveries. Counting is a relaxed
 * atomic add where the event happens (transition.c, tasks.c). */
#include "tasks_internal.h"

#include <stdlib.h>

#include "metrics.h"

void hs_tasks__metrics_event(hs_tasks *t, int event)
{
	switch (event) {
	case HS_TEV_RECOVERY_STARTED:
		hs_counter_add(&t->m_rec_started, 1);
		break;
	case HS_TEV_RECOVERED:
		hs_counter_add(&t->m_rec_succeeded, 1);
		break;
	case HS_TEV_RECOVERY_FAILED:
		hs_counter_add(&t->m_rec_failed, 1);
		break;
	default:
		break;
	}
}

void hs_tasks__metrics_timeout(hs_tasks *t, int64_t deadline_ms, int64_t now_ms)
{
	int64_t late = now_ms > deadline_ms ? now_ms - deadline_ms : 0;
	hs_counter_add(&t->m_timeouts, 1);
	hs_histogram_observe(&t->m_hb_lag, (double)late / 1000.0);
}

/* lowercase state names, indexed by hs_task_state */
static const char *const state_label[] = { NULL, "running", "stalled", "recovering",
					   "completed", "failed", "cancelled" };
#define N_STATES (sizeof(state_label) / sizeof(state_label[0]))

void hs_tasks__metrics_collect(hs_metrics_out *out, void *payload)
{
	hs_tasks *t = payload;
	uint64_t by_state[N_STATES] = { 0 };
	/* Task pointers stay valid until hs_tasks_free; each state is read
	 * under its task's mutex, never while holding t->mu (fire() takes
	 * k->mu then t->mu). */
	pthread_mutex_lock(&t->mu);
	size_t n = t->n_all;
	task **all = malloc((n ? n : 1) * sizeof(*all));
	if (all != NULL)
		for (size_t i = 0; i < n; i++)
			all[i] = t->all[i];
	pthread_mutex_unlock(&t->mu);
	for (size_t i = 0; all != NULL && i < n; i++) {
		pthread_mutex_lock(&all[i]->mu);
		int s = (int)all[i]->m.state;
		pthread_mutex_unlock(&all[i]->mu);
		if (s > 0 && (size_t)s < N_STATES)
			by_state[s]++;
	}
	if (all != NULL) {
		hs_metrics_family(out, "harness_tasks", "gauge", "Registered tasks by state.");
		for (size_t s = 1; s < N_STATES; s++) {
			const char *l[] = { "state", state_label[s], NULL };
			hs_metrics_sample(out, "harness_tasks", l, (double)by_state[s]);
		}
	}
	free(all);

	hs_metrics_family(out, "harness_heartbeat_lag_seconds", "histogram",
			  "How late a task's TIMEOUT fired after its heartbeat (or recovery "
			  "acknowledgement) deadline.");
	hs_metrics_histogram(out, "harness_heartbeat_lag_seconds", NULL, &t->m_hb_lag);
	hs_metrics_family(out, "harness_task_timeouts_total", "counter",
			  "TIMEOUT events: a task missed its heartbeat or acknowledgement deadline.");
	hs_metrics_sample(out, "harness_task_timeouts_total", NULL,
			  (double)hs_counter_get(&t->m_timeouts));
	hs_metrics_family(out, "harness_recoveries_started_total", "counter",
			  "Recovery attempts started (automatic and RecoverTask).");
	hs_metrics_sample(out, "harness_recoveries_started_total", NULL,
			  (double)hs_counter_get(&t->m_rec_started));
	hs_metrics_family(out, "harness_recoveries_total", "counter",
			  "Recovery attempts finished, by result (failed: RECOVERY_FAILED events, "
			  "retried or final).");
	static const char *const ok_l[] = { "result", "succeeded", NULL };
	static const char *const fail_l[] = { "result", "failed", NULL };
	hs_metrics_sample(out, "harness_recoveries_total", ok_l,
			  (double)hs_counter_get(&t->m_rec_succeeded));
	hs_metrics_sample(out, "harness_recoveries_total", fail_l,
			  (double)hs_counter_get(&t->m_rec_failed));
	if (t->webhook != NULL) {
		uint64_t sent = 0, dropped = 0, failed = 0;
		hs_webhook_stats(t->webhook, &sent, &dropped, &failed);
		hs_metrics_family(out, "harness_webhook_deliveries_total", "counter",
				  "Task event webhooks by result (dropped: the queue was full).");
		static const char *const s_l[] = { "result", "sent", NULL };
		static const char *const f_l[] = { "result", "failed", NULL };
		static const char *const d_l[] = { "result", "dropped", NULL };
		hs_metrics_sample(out, "harness_webhook_deliveries_total", s_l, (double)sent);
		hs_metrics_sample(out, "harness_webhook_deliveries_total", f_l, (double)failed);
		hs_metrics_sample(out, "harness_webhook_deliveries_total", d_l, (double)dropped);
	}
}
