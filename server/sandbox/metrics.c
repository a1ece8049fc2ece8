/* Sandboxes by driver and state (hs_sandbox_mgr_add_metrics). Each entry
 * keeps an atomic copy of its state (set where row.state is), so a scrape
 * takes only the registry lock, never an entry's (held across driver
 * calls). */
#include "sandbox_internal.h"

#include "metrics.h"

static const char *const state_label[] = { NULL, "created", "running", "paused", "stopped",
					   "failed" };
#define N_STATES (sizeof(state_label) / sizeof(state_label[0]))

void hs_sandbox__metrics_collect(hs_metrics_out *out, void *payload)
{
	hs_sandbox_mgr *mgr = payload;
	static const hs_sandbox__driver *const drivers[] = { &hs_sandbox__bwrap_driver,
							     &hs_sandbox__fc_driver };
	uint64_t n[2][N_STATES] = { { 0 } };
	pthread_mutex_lock(&mgr->lock);
	for (hs_sandbox__entry *e = mgr->head; e != NULL; e = e->next) {
		int s = atomic_load_explicit(&e->metric_state, memory_order_relaxed);
		size_t d = e->drv == &hs_sandbox__fc_driver ? 1 : 0;
		if (s > 0 && (size_t)s < N_STATES)
			n[d][s]++;
	}
	pthread_mutex_unlock(&mgr->lock);
	hs_metrics_family(out, "harness_sandboxes", "gauge",
			  "Sandboxes this harnessd manages, by driver and state (destroyed ones "
			  "are gone).");
	for (size_t d = 0; d < 2; d++)
		for (size_t s = 1; s < N_STATES; s++) {
			const char *l[] = { "driver", drivers[d]->name, "state", state_label[s], NULL };
			hs_metrics_sample(out, "harness_sandboxes", l, (double)n[d][s]);
		}
}

int hs_sandbox_mgr_add_metrics(hs_sandbox_mgr *mgr, hs_metrics *metrics, hs_error *err)
{
	int rc = hs_metrics_add(metrics, hs_sandbox__metrics_collect, mgr, err);
	if (rc == HS_OK)
		mgr->metrics = metrics;
	return rc;
}
