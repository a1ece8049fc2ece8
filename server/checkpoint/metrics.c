/* The checkpoint module's own figures (apart from the watcher's, watch.c):
 * how long creates and restores take, how many files a checkpoint changed,
 * and how many operations failed. Atomics on the request path; the
 * collector only reads them. */
#include "checkpoint_internal.h"

#include "metrics.h"

/* files changed per checkpoint */
static const double files_bounds[] = { 0, 1, 10, 100, 1000, 10000, 100000 };

void hs_ckpt__metrics_init(hs_ckpt__metrics *m)
{
	hs_histogram_init(&m->create_seconds, hs_metrics_default_seconds, 11, 1e6);
	hs_histogram_init(&m->restore_seconds, hs_metrics_default_seconds, 11, 1e6);
	hs_histogram_init(&m->files_changed, files_bounds,
			  sizeof(files_bounds) / sizeof(files_bounds[0]), 1);
}

void hs_ckpt__metrics_create(hs_ckpt__metrics *m, int rc, int64_t us, uint32_t files_changed)
{
	if (rc != 0) {
		hs_counter_add(&m->create_errors, 1);
		return;
	}
	hs_histogram_observe(&m->create_seconds, (double)us / 1e6);
	hs_histogram_observe(&m->files_changed, (double)files_changed);
}

void hs_ckpt__metrics_restore(hs_ckpt__metrics *m, int rc, int64_t us)
{
	if (rc != 0)
		hs_counter_add(&m->restore_errors, 1);
	else
		hs_histogram_observe(&m->restore_seconds, (double)us / 1e6);
}

void hs_ckpt__metrics_collect(hs_metrics_out *out, void *payload)
{
	const hs_ckpt__metrics *m = &((hs_ckpt_mgr *)payload)->metrics;
	hs_metrics_family(out, "harness_checkpoint_create_duration_seconds", "histogram",
			  "Time to take a checkpoint (successful creates, replays excluded).");
	hs_metrics_histogram(out, "harness_checkpoint_create_duration_seconds", NULL,
			     &m->create_seconds);
	hs_metrics_family(out, "harness_checkpoint_restore_duration_seconds", "histogram",
			  "Time to restore a workspace from a checkpoint (successful restores).");
	hs_metrics_histogram(out, "harness_checkpoint_restore_duration_seconds", NULL,
			     &m->restore_seconds);
	hs_metrics_family(out, "harness_checkpoint_files_changed", "histogram",
			  "Files a new checkpoint changed against its parent.");
	hs_metrics_histogram(out, "harness_checkpoint_files_changed", NULL, &m->files_changed);
	hs_metrics_family(out, "harness_checkpoint_errors_total", "counter",
			  "Checkpoint operations that failed, by operation.");
	static const char *const create_l[] = { "op", "create", NULL };
	static const char *const restore_l[] = { "op", "restore", NULL };
	hs_metrics_sample(out, "harness_checkpoint_errors_total", create_l,
			  (double)hs_counter_get(&m->create_errors));
	hs_metrics_sample(out, "harness_checkpoint_errors_total", restore_l,
			  (double)hs_counter_get(&m->restore_errors));
}
