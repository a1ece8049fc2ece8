/* Prometheus metrics (text exposition format 0.0.4).
 *
 * The hot path pays one relaxed atomic add: counters and histograms are
 * plain structs of atomics that a module embeds where it keeps its state.
 * Nothing is looked up by name at run time. At scrape time the registry
 * calls every collector a module registered, and each writes its families
 * (HELP, TYPE, samples) from those atomics and from its own state.
 *
 * Names follow the conventions users' dashboards expect: go-grpc-prometheus
 * for the RPC core (grpc_server_*), `harness_` for our own, `process_` for
 * the process. Label values are escaped here; names and label keys are the
 * caller's constants. */
#ifndef HS_COMMON_METRICS_H
#define HS_COMMON_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct hs_metrics hs_metrics;
typedef struct hs_metrics_out hs_metrics_out;

/* ---- instruments ---------------------------------------------------------- */

typedef struct hs_counter {
	_Atomic uint64_t v;
} hs_counter;

static inline void hs_counter_add(hs_counter *c, uint64_t n)
{
	atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

static inline uint64_t hs_counter_get(const hs_counter *c)
{
	return atomic_load_explicit(&c->v, memory_order_relaxed);
}

#define HS_HISTOGRAM_MAX_BUCKETS 16

/* Cumulative on output, per bucket in memory. The sum is kept as an
 * integer in units of 1/scale (e.g. scale 1e6 for seconds observed to the
 * microsecond), so an observation is two or three atomic adds. */
typedef struct hs_histogram {
	const double *bounds; /* ascending upper bounds ("le"), +Inf implied */
	size_t n_bounds;      /* <= HS_HISTOGRAM_MAX_BUCKETS */
	double scale;
	_Atomic uint64_t counts[HS_HISTOGRAM_MAX_BUCKETS + 1];
	_Atomic uint64_t sum_scaled;
} hs_histogram;

/* Prometheus' default buckets (seconds), as go-grpc-prometheus uses. */
extern const double hs_metrics_default_seconds[11];
#define HS_HISTOGRAM_SECONDS_INIT { hs_metrics_default_seconds, 11, 1e6, { 0 }, 0 }

void hs_histogram_init(hs_histogram *h, const double *bounds, size_t n_bounds, double scale);
void hs_histogram_observe(hs_histogram *h, double v);

/* ---- the registry ----------------------------------------------------------- */

/* Writes this collector's families into out. Runs on the scraping thread,
 * concurrently with the hot path: read atomics, take only short locks. */
typedef void (*hs_metrics_collect_fn)(hs_metrics_out *out, void *payload);

int hs_metrics_new(hs_metrics **out, hs_error *err);
/* Collectors must be removed (or their payload outlive it) first. */
void hs_metrics_free(hs_metrics *m);

/* The same (fn, payload) may be added once. Thread-safe. */
int hs_metrics_add(hs_metrics *m, hs_metrics_collect_fn fn, void *payload, hs_error *err);
/* Returns once no scrape is running fn for payload any more. */
void hs_metrics_remove(hs_metrics *m, hs_metrics_collect_fn fn, void *payload);

/* The whole exposition, heap text (free()); NULL when out of memory. */
char *hs_metrics_render(hs_metrics *m, size_t *len_out);

/* A collector of process metrics (process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_threads,
 * process_start_time_seconds). payload: NULL. */
void hs_metrics_collect_process(hs_metrics_out *out, void *payload);

/* ---- writing, inside a collector ------------------------------------------ */

/* HELP and TYPE ("counter", "gauge", "histogram") of a family. */
void hs_metrics_family(hs_metrics_out *out, const char *name, const char *type,
		       const char *help);
/* One sample. labels: key, value, key, value, ..., NULL (NULL alone: none). */
void hs_metrics_sample(hs_metrics_out *out, const char *name, const char *const *labels,
		       double value);
/* A histogram's _bucket, _sum and _count samples with the given labels. */
void hs_metrics_histogram(hs_metrics_out *out, const char *name, const char *const *labels,
			  const hs_histogram *h);

#endif
