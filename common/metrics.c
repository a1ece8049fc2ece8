/* Prometheus metrics: instruments, the collector registry and the text
 * exposition (metrics.h). A scrape takes the registry lock for its whole
 * render, so hs_metrics_remove() waits for a running scrape: a module can
 * free its state right after removing its collector. */
#include "metrics.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "procstat.h"

const double hs_metrics_default_seconds[11] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
						0.5,   1,    2.5,   5,    10 };

void hs_histogram_init(hs_histogram *h, const double *bounds, size_t n_bounds, double scale)
{
	memset(h, 0, sizeof(*h));
	h->bounds = bounds;
	h->n_bounds = n_bounds > HS_HISTOGRAM_MAX_BUCKETS ? HS_HISTOGRAM_MAX_BUCKETS : n_bounds;
	h->scale = scale > 0 ? scale : 1;
}

void hs_histogram_observe(hs_histogram *h, double v)
{
	size_t i = 0;
	while (i < h->n_bounds && v > h->bounds[i])
		i++;
	atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
	if (v > 0)
		atomic_fetch_add_explicit(&h->sum_scaled, (uint64_t)llround(v * h->scale),
					  memory_order_relaxed);
}

/* ---- registry -------------------------------------------------------------- */

typedef struct collector {
	hs_metrics_collect_fn fn;
	void *payload;
} collector;

struct hs_metrics {
	pthread_mutex_t mu;
	collector *c;
	size_t n, cap;
};

struct hs_metrics_out {
	char *buf;
	size_t len, cap;
	bool oom;
};

int hs_metrics_new(hs_metrics **out, hs_error *err)
{
	hs_metrics *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return hs_error_set(err, HS_INTERNAL, "metrics: out of memory");
	pthread_mutex_init(&m->mu, NULL);
	*out = m;
	return HS_OK;
}

void hs_metrics_free(hs_metrics *m)
{
	if (m == NULL)
		return;
	pthread_mutex_destroy(&m->mu);
	free(m->c);
	free(m);
}

int hs_metrics_add(hs_metrics *m, hs_metrics_collect_fn fn, void *payload, hs_error *err)
{
	int rc = HS_OK;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n; i++)
		if (m->c[i].fn == fn && m->c[i].payload == payload) {
			rc = hs_error_set(err, HS_EXISTS, "metrics: collector added twice");
			goto done;
		}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 8;
		collector *c = realloc(m->c, cap * sizeof(*c));
		if (c == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "metrics: out of memory");
			goto done;
		}
		m->c = c;
		m->cap = cap;
	}
	m->c[m->n++] = (collector){ fn, payload };
done:
	pthread_mutex_unlock(&m->mu);
	return rc;
}

void hs_metrics_remove(hs_metrics *m, hs_metrics_collect_fn fn, void *payload)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n; i++)
		if (m->c[i].fn == fn && m->c[i].payload == payload) {
			memmove(&m->c[i], &m->c[i + 1], (m->n - i - 1) * sizeof(*m->c));
			m->n--;
			break;
		}
	pthread_mutex_unlock(&m->mu);
}

char *hs_metrics_render(hs_metrics *m, size_t *len_out)
{
	hs_metrics_out o = { 0 };
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n; i++)
		m->c[i].fn(&o, m->c[i].payload);
	pthread_mutex_unlock(&m->mu);
	if (o.oom || o.buf == NULL) {
		free(o.buf);
		if (!o.oom && (o.buf = calloc(1, 1)) != NULL) {
			if (len_out)
				*len_out = 0;
			return o.buf;
		}
		return NULL;
	}
	if (len_out)
		*len_out = o.len;
	return o.buf;
}

/* ---- writing ----------------------------------------------------------------- */

static void put(hs_metrics_out *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		while (o->len + n + 1 > cap)
			cap *= 2;
		char *b = realloc(o->buf, cap);
		if (b == NULL) {
			o->oom = true;
			return;
		}
		o->buf = b;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void puts_(hs_metrics_out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* Label values: backslash, double quote and newline escaped. HELP text:
 * backslash and newline. */
static void put_escaped(hs_metrics_out *o, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			puts_(o, "\\\\");
		else if (*s == '\n')
			puts_(o, "\\n");
		else if (quote && *s == '"')
			puts_(o, "\\\"");
		else
			put(o, s, 1);
	}
}

/* The shortest text that reads back as v (as Go's client writes numbers). */
static void format_number(char *b, size_t cap, double v)
{
	if (isnan(v)) {
		snprintf(b, cap, "NaN");
	} else if (isinf(v)) {
		snprintf(b, cap, "%s", v > 0 ? "+Inf" : "-Inf");
	} else if (v == (double)(int64_t)v && fabs(v) < 9.007199254740992e15) {
		snprintf(b, cap, "%lld", (long long)v);
	} else {
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(b, cap, "%.*g", prec, v);
			if (strtod(b, NULL) == v)
				break;
		}
	}
}

static void put_number(hs_metrics_out *o, double v)
{
	char b[40];
	format_number(b, sizeof(b), v);
	puts_(o, b);
}

void hs_metrics_family(hs_metrics_out *o, const char *name, const char *type, const char *help)
{
	puts_(o, "# HELP ");
	puts_(o, name);
	puts_(o, " ");
	put_escaped(o, help, false);
	puts_(o, "\n# TYPE ");
	puts_(o, name);
	puts_(o, " ");
	puts_(o, type);
	puts_(o, "\n");
}

static void put_labels(hs_metrics_out *o, const char *const *labels, const char *extra_key,
		       const char *extra_value)
{
	bool any = (labels != NULL && labels[0] != NULL) || extra_key != NULL;
	if (!any)
		return;
	puts_(o, "{");
	bool first = true;
	for (size_t i = 0; labels != NULL && labels[i] != NULL && labels[i + 1] != NULL; i += 2) {
		if (!first)
			puts_(o, ",");
		first = false;
		puts_(o, labels[i]);
		puts_(o, "=\"");
		put_escaped(o, labels[i + 1], true);
		puts_(o, "\"");
	}
	if (extra_key != NULL) {
		if (!first)
			puts_(o, ",");
		puts_(o, extra_key);
		puts_(o, "=\"");
		puts_(o, extra_value);
		puts_(o, "\"");
	}
	puts_(o, "}");
}

void hs_metrics_sample(hs_metrics_out *o, const char *name, const char *const *labels,
		       double value)
{
	puts_(o, name);
	put_labels(o, labels, NULL, NULL);
	puts_(o, " ");
	put_number(o, value);
	puts_(o, "\n");
}

void hs_metrics_histogram(hs_metrics_out *o, const char *name, const char *const *labels,
			  const hs_histogram *h)
{
	char sample[160], le[40];
	uint64_t cum = 0;
	snprintf(sample, sizeof(sample), "%s_bucket", name);
	for (size_t i = 0; i <= h->n_bounds; i++) {
		cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
		format_number(le, sizeof(le), i < h->n_bounds ? h->bounds[i] : INFINITY);
		puts_(o, sample);
		put_labels(o, labels, "le", le);
		puts_(o, " ");
		put_number(o, (double)cum);
		puts_(o, "\n");
	}
	snprintf(sample, sizeof(sample), "%s_sum", name);
	hs_metrics_sample(o, sample, labels,
			  (double)atomic_load_explicit(&h->sum_scaled, memory_order_relaxed) /
				  h->scale);
	snprintf(sample, sizeof(sample), "%s_count", name);
	hs_metrics_sample(o, sample, labels, (double)cum);
}

/* ---- the process ------------------------------------------------------------- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory stream's own descriptor */
}

void hs_metrics_collect_process(hs_metrics_out *o, void *payload)
{
	(void)payload;
	hs_procstat ps;
	if (hs_procstat_read(0, &ps, NULL) != HS_OK)
		return;
	double tick = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
	hs_metrics_family(o, "process_cpu_seconds_total", "counter",
			  "Total user and system CPU time spent in seconds.");
	hs_metrics_sample(o, "process_cpu_seconds_total", NULL,
			  (double)(ps.utime_ticks + ps.stime_ticks) / tick);
	hs_metrics_family(o, "process_resident_memory_bytes", "gauge",
			  "Resident memory size in bytes.");
	hs_metrics_sample(o, "process_resident_memory_bytes", NULL, (double)ps.rss_pages * page);
	hs_metrics_family(o, "process_virtual_memory_bytes", "gauge",
			  "Virtual memory size in bytes.");
	hs_metrics_sample(o, "process_virtual_memory_bytes", NULL, (double)ps.vsize_bytes);
	hs_metrics_family(o, "process_open_fds", "gauge", "Number of open file descriptors.");
	hs_metrics_sample(o, "process_open_fds", NULL, count_fds());
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		hs_metrics_family(o, "process_max_fds", "gauge",
				  "Maximum number of open file descriptors.");
		hs_metrics_sample(o, "process_max_fds", NULL,
				  rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
	}
	hs_metrics_family(o, "process_threads", "gauge", "Number of OS threads in the process.");
	hs_metrics_sample(o, "process_threads", NULL, (double)ps.num_threads);
	/* start time: boot time (btime in /proc/stat) + start ticks */
	FILE *f = fopen("/proc/stat", "re");
	if (f != NULL) {
		char line[256];
		long long btime = -1;
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "btime %lld", &btime) == 1)
				break;
		fclose(f);
		if (btime >= 0) {
			hs_metrics_family(o, "process_start_time_seconds", "gauge",
					  "Start time of the process since unix epoch in seconds.");
			hs_metrics_sample(o, "process_start_time_seconds", NULL,
					  (double)btime + (double)ps.start_ticks / tick);
		}
	}
}
