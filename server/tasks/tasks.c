/* The task registry: lifecycle, the in-memory index (hash map + timer heap),
 * persistence helpers and the timer thread.
 *
 * Design. Every task lives in memory (a compact struct, ~0.5 KiB) and in the
 * store's tasks table; every state change is written to the store, and its
 * event appended to task_events, before it is acknowledged or broadcast.
 * Heartbeats only touch their own columns (hs_store_task_heartbeat) and
 * re-arm the task's timer node: O(log n) in a binary min-heap. One timer
 * thread sleeps on a CLOCK_MONOTONIC condvar until the earliest deadline, so
 * healthy tasks cost no CPU at all; an expired deadline is handled within a
 * few ms.
 *
 * The state machine and the fencing rules live in fsm.c (one pure function);
 * transition.c applies its decisions. This file keeps the index, the rows,
 * the timer thread and loading after a restart. */
#include "tasks_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

const char *hs_task_state_name(int state)
{
	static const char *const names[] = { "UNSPECIFIED", "RUNNING",   "STALLED",  "RECOVERING",
					     "COMPLETED",   "FAILED",    "CANCELLED" };
	return state >= 0 && state <= 6 ? names[state] : "UNKNOWN";
}

int hs_task_policy_resolve(hs_task_policy *p, hs_error *err)
{
	if (p->max_attempts < 0 || p->max_attempts > 100)
		return hs_error_set(err, HS_INVALID, "recovery_policy.max_attempts: must be 0..100");
	if (p->initial_backoff_ms < 0 || p->initial_backoff_ms > 86400000)
		return hs_error_set(err, HS_INVALID,
				    "recovery_policy.initial_backoff_ms: must be 0..86400000");
	if (p->max_backoff_ms < 0 || p->max_backoff_ms > 86400000)
		return hs_error_set(err, HS_INVALID, "recovery_policy.max_backoff_ms: must be 0..86400000");
	if (!(p->multiplier == 0 || (p->multiplier >= 1.0 && p->multiplier <= 100.0)))
		return hs_error_set(err, HS_INVALID,
				    "recovery_policy.backoff_multiplier: must be 0 or 1.0..100");
	if (p->max_attempts == 0)
		p->max_attempts = 3;
	if (p->initial_backoff_ms == 0)
		p->initial_backoff_ms = 1000;
	if (p->multiplier == 0)
		p->multiplier = 2.0;
	if (p->max_backoff_ms == 0)
		p->max_backoff_ms = p->initial_backoff_ms > 60000 ? p->initial_backoff_ms : 60000;
	if (p->max_backoff_ms < p->initial_backoff_ms)
		return hs_error_set(err, HS_INVALID,
				    "recovery_policy.max_backoff_ms: must be >= initial_backoff_ms");
	return HS_OK;
}

int64_t hs_task_backoff_ms(const hs_task_policy *p, int32_t attempt)
{
	double d = (double)p->initial_backoff_ms;
	for (int32_t i = 1; i < attempt && d < (double)p->max_backoff_ms; i++)
		d *= p->multiplier;
	return d >= (double)p->max_backoff_ms ? p->max_backoff_ms : (int64_t)d;
}

/* ---- map ------------------------------------------------------------------ */

size_t hs_tasks__hash(const char *s)
{
	size_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

task *hs_tasks__lookup(hs_tasks *t, const char *id)
{
	pthread_mutex_lock(&t->mu);
	task *k = t->buckets[hs_tasks__hash(id) % t->nbuckets];
	while (k != NULL && strcmp(k->id, id) != 0)
		k = k->hnext;
	pthread_mutex_unlock(&t->mu);
	return k;
}

/* t->mu held. */
static int map_add(hs_tasks *t, task *k)
{
	if (t->n_all == t->cap_all) {
		size_t cap = t->cap_all ? t->cap_all * 2 : 1024;
		task **all = realloc(t->all, cap * sizeof(*all));
		if (all == NULL)
			return HS_INTERNAL;
		t->all = all;
		t->cap_all = cap;
	}
	if (t->n_all >= t->nbuckets) { /* keep the load factor <= 1 */
		size_t nb = t->nbuckets * 2;
		task **b = calloc(nb, sizeof(*b));
		if (b == NULL)
			return HS_INTERNAL;
		for (size_t i = 0; i < t->n_all; i++) {
			task *x = t->all[i];
			size_t h = hs_tasks__hash(x->id) % nb;
			x->hnext = b[h];
			b[h] = x;
		}
		free(t->buckets);
		t->buckets = b;
		t->nbuckets = nb;
	}
	if (hs_tasks__owner_add(t, k->owner) != HS_OK) /* last: nothing to undo */
		return HS_INTERNAL;
	size_t h = hs_tasks__hash(k->id) % t->nbuckets;
	k->hnext = t->buckets[h];
	t->buckets[h] = k;
	t->all[t->n_all++] = k;
	return HS_OK;
}

bool hs_tasks__visible(const task *k, const hs_principal *caller)
{
	return hs_principal_may(caller, k->owner);
}

/* ---- rows ----------------------------------------------------------------- */


void hs_tasks__row_of(const task *k, const hs_task_fsm *m, hs_store_task_row *r)
{
	memset(r, 0, sizeof(*r));
	COPY(r->task_id, k->id);
	COPY(r->owner, k->owner);
	r->state = m->state;
	r->total_steps = m->total_steps;
	r->current_step = m->current_step;
	r->heartbeat_interval_ms = m->interval_ms;
	r->heartbeat_timeout_ms = m->timeout_ms;
	COPY(r->sandbox_id, k->sandbox_id);
	r->policy_max_attempts = m->policy.max_attempts;
	r->policy_initial_backoff_ms = m->policy.initial_backoff_ms;
	r->policy_multiplier = m->policy.multiplier;
	r->policy_max_backoff_ms = m->policy.max_backoff_ms;
	r->last_heartbeat_ms = m->last_heartbeat_ms;
	r->registered_at_ms = k->registered_at_ms;
	r->recovery_attempts = m->attempts;
	COPY(r->last_checkpoint_id, m->last_ckpt);
	r->cancel_requested = m->cancel_requested;
	r->cpu_usage = k->cpu;
	r->memory_usage_mb = k->mem;
	r->disk_usage_mb = k->disk;
	COPY(r->details, k->details);
	/* The row has no result column: a COMPLETED task's result message is
	 * kept in failure_reason (which is empty for COMPLETED by definition). */
	COPY(r->failure_reason, m->state == HS_TASK_COMPLETED ? k->result_message : k->failure_reason);
	COPY(r->workspace, k->workspace);
	COPY(r->labels_json, k->labels_json);
	r->updated_at_ms = m->finished_at_ms ? m->finished_at_ms : hs_clock_wall_ms();
	r->recovery_generation = m->gen;
	r->base_generation = m->base_gen;
	r->acked_generation = m->acked_gen;
	r->restored = m->restored;
	COPY(r->resume_checkpoint_id, m->resume_ckpt);
	r->resume_step = m->resume_step;
	r->last_checkpoint_step = m->last_ckpt_step;
	r->deadline_ms = m->deadline_ms;
}

const char hs_tasks__empty[] = "";
const char hs_tasks__empty_obj[] = "{}";

void hs_tasks__free_str(char *s)
{
	if (s != hs_tasks__empty && s != hs_tasks__empty_obj)
		free(s);
}

int hs_tasks__set_str(char **dst, const char *src)
{
	if (*dst != NULL && strcmp(*dst, src) == 0)
		return HS_OK;
	char *s;
	if (src[0] == '\0')
		s = (char *)hs_tasks__empty;
	else if (strcmp(src, "{}") == 0)
		s = (char *)hs_tasks__empty_obj;
	else if ((s = strdup(src)) == NULL)
		return HS_INTERNAL;
	hs_tasks__free_str(*dst);
	*dst = s;
	return HS_OK;
}

#define set_str hs_tasks__set_str

static bool terminal(int state)
{
	return state == HS_TASK_COMPLETED || state == HS_TASK_FAILED || state == HS_TASK_CANCELLED;
}

int hs_tasks__adopt(task *k, const hs_store_task_row *r)
{
	bool done = r->state == HS_TASK_COMPLETED;
	if (set_str(&k->owner, r->owner) || set_str(&k->details, r->details) ||
	    set_str(&k->failure_reason, done ? "" : r->failure_reason) ||
	    set_str(&k->result_message, done ? r->failure_reason : "") ||
	    set_str(&k->workspace, r->workspace) ||
	    set_str(&k->labels_json, r->labels_json[0] ? r->labels_json : "{}"))
		return HS_INTERNAL;
	/* The id is the map's key, read by lookups under the registry lock
	 * only: write it once, when the task is new, never while it is listed. */
	if (strcmp(k->id, r->task_id) != 0)
		COPY(k->id, r->task_id);
	hs_task_fsm *m = &k->m;
	memset(m, 0, sizeof(*m));
	m->state = r->state;
	m->total_steps = r->total_steps;
	m->current_step = r->current_step;
	m->interval_ms = r->heartbeat_interval_ms;
	m->timeout_ms = r->heartbeat_timeout_ms;
	m->policy.max_attempts = r->policy_max_attempts;
	m->policy.initial_backoff_ms = r->policy_initial_backoff_ms;
	m->policy.multiplier = r->policy_multiplier;
	m->policy.max_backoff_ms = r->policy_max_backoff_ms;
	m->last_heartbeat_ms = r->last_heartbeat_ms;
	m->attempts = r->recovery_attempts;
	COPY(m->last_ckpt, r->last_checkpoint_id);
	m->last_ckpt_step = r->last_checkpoint_step;
	m->cancel_requested = r->cancel_requested;
	m->finished_at_ms = terminal(r->state) ? r->updated_at_ms : 0;
	m->gen = r->recovery_generation;
	m->base_gen = r->base_generation;
	m->acked_gen = r->acked_generation;
	m->restored = r->restored;
	COPY(m->resume_ckpt, r->resume_checkpoint_id);
	m->resume_step = r->resume_step;
	m->deadline_ms = r->deadline_ms;
	COPY(k->sandbox_id, r->sandbox_id);
	k->registered_at_ms = r->registered_at_ms;
	k->cpu = r->cpu_usage;
	k->mem = r->memory_usage_mb;
	k->disk = r->disk_usage_mb;
	return HS_OK;
}

void hs_tasks__info_of(const task *k, hs_task_info *o, bool *oom)
{
	const hs_task_fsm *m = &k->m;
	memset(o, 0, sizeof(*o));
	COPY(o->task_id, k->id);
	COPY(o->owner, k->owner);
	o->state = (hs_task_state)m->state;
	o->total_steps = m->total_steps;
	o->current_step = m->current_step;
	o->heartbeat_interval_ms = m->interval_ms;
	o->heartbeat_timeout_ms = m->timeout_ms;
	COPY(o->sandbox_id, k->sandbox_id);
	o->policy = m->policy;
	o->last_heartbeat_ms = m->last_heartbeat_ms;
	o->registered_at_ms = k->registered_at_ms;
	o->recovery_attempts = m->attempts;
	COPY(o->last_checkpoint_id, m->last_ckpt);
	o->last_checkpoint_step = m->last_ckpt_step;
	o->cancel_requested = m->cancel_requested;
	o->cpu_usage = k->cpu;
	o->memory_usage_mb = k->mem;
	o->disk_usage_mb = k->disk;
	o->details = strdup(k->details ? k->details : "");
	o->failure_reason = strdup(k->failure_reason ? k->failure_reason : "");
	o->result_message = strdup(k->result_message ? k->result_message : "");
	o->workspace = strdup(k->workspace && k->workspace[0] ? k->workspace : k->id);
	o->labels_json = strdup(k->labels_json ? k->labels_json : "{}");
	bool ack_wait = m->state == HS_TASK_RECOVERING && m->restored;
	o->next_deadline_ms = m->state == HS_TASK_RUNNING || ack_wait ? m->deadline_ms : 0;
	o->next_attempt_ms = m->state == HS_TASK_STALLED ? m->deadline_ms : 0;
	o->finished_at_ms = m->finished_at_ms;
	o->recovery_generation = m->gen;
	o->acknowledged_generation = m->acked_gen;
	if (m->gen > m->acked_gen && m->restored) {
		COPY(o->resume_checkpoint_id, m->resume_ckpt);
		o->resume_step = m->resume_step;
	}
	if (!o->details || !o->failure_reason || !o->result_message || !o->workspace ||
	    !o->labels_json) {
		hs_task_info_dispose(o);
		*oom = true;
	}
}

void hs_task_info_dispose(hs_task_info *info)
{
	if (info == NULL)
		return;
	free(info->details);
	free(info->failure_reason);
	free(info->result_message);
	free(info->workspace);
	free(info->labels_json);
	info->details = info->failure_reason = info->result_message = NULL;
	info->workspace = info->labels_json = NULL;
}

void hs_task_info_array_free(hs_task_info *arr, size_t n)
{
	for (size_t i = 0; arr != NULL && i < n; i++)
		hs_task_info_dispose(&arr[i]);
	free(arr);
}

void hs_task_beat_reply_dispose(hs_task_beat_reply *r)
{
	if (r == NULL)
		return;
	free(r->details);
	free(r->external_state);
	r->details = NULL;
	r->external_state = NULL;
}

/* ---- timers --------------------------------------------------------------- */

void hs_tasks__arm_at(hs_tasks *t, task *k, int64_t wall_deadline_ms)
{
	/* Both clocks are read truncated to the millisecond, so the plain
	 * difference can fire up to 2 ms before the wall deadline; one more
	 * millisecond makes it never early (a backoff is never cut short). */
	int64_t mono = hs_clock_mono_ms() + (wall_deadline_ms - hs_clock_wall_ms()) + 1;
	pthread_mutex_lock(&t->mu);
	hs_timer_node *top = hs_timer_peek(&t->heap);
	int64_t earliest = top != NULL ? top->deadline : INT64_MAX;
	if (hs_timer_arm(&t->heap, &k->timer, mono) != HS_OK)
		hs_log(HS_LOG_ERROR, "tasks", "timer: out of memory", HS_LS("task_id", k->id));
	/* Wake the timer thread only when the earliest deadline moved earlier.
	 * When it moved later (the task on top beat again: every heartbeat of
	 * the task due first) the thread wakes at the old time, finds nothing
	 * due and sleeps again: one spurious wake instead of one per beat. */
	top = hs_timer_peek(&t->heap);
	if (top != NULL && top->deadline < earliest)
		pthread_cond_signal(&t->timer_cv);
	pthread_mutex_unlock(&t->mu);
}

void hs_tasks__disarm(hs_tasks *t, task *k)
{
	pthread_mutex_lock(&t->mu);
	hs_timer_cancel(&t->heap, &k->timer);
	pthread_mutex_unlock(&t->mu);
}

#define TIMER_BATCH 256

/* Many nodes: heartbeats sent to another node are written through the
 * store (ops.c). Before a RUNNING task times out here, read its stored
 * heartbeat; a newer one moves the deadline instead (task->mu held). */
static bool beaten_elsewhere(hs_tasks *t, task *k)
{
	hs_store_task_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return false;
	bool newer = false;
	if (hs_store_task_get(t->store, k->id, row, NULL) == HS_OK &&
	    row->state == HS_TASK_RUNNING && row->last_heartbeat_ms > k->m.last_heartbeat_ms) {
		k->m.last_heartbeat_ms = row->last_heartbeat_ms;
		if (row->current_step > k->m.current_step)
			k->m.current_step = row->current_step;
		k->m.deadline_ms = row->last_heartbeat_ms + k->m.timeout_ms;
		hs_tasks__arm_at(t, k, k->m.deadline_ms);
		newer = true;
	}
	free(row);
	return newer;
}

/* A task's timer expired: the DEADLINE input of its state machine. */
static void fire(hs_tasks *t, task *k)
{
	pthread_mutex_lock(&k->mu);
	pthread_mutex_lock(&t->mu);
	bool rearmed = hs_timer_armed(&k->timer);
	pthread_mutex_unlock(&t->mu);
	if (!rearmed && t->leases && hs_tasks__held(t, k) && k->m.state == HS_TASK_RUNNING &&
	    beaten_elsewhere(t, k)) {
		rearmed = true; /* a heartbeat reached another node: the deadline moved */
	}
	if (!rearmed && hs_tasks__held(t, k)) {
		hs_task_input in = { .kind = HS_TIN_DEADLINE, .now_ms = hs_clock_wall_ms() };
		hs_error err = { 0 };
		hs_task_decision d;
		int64_t deadline = k->m.deadline_ms;
		if (hs_tasks__apply(t, k, &in, NULL, &d, &err) != HS_OK)
			hs_tasks__retry_later(t, k, "deadline", &err);
		else if (d.event == HS_TEV_TIMEOUT)
			hs_tasks__metrics_timeout(t, deadline, in.now_ms);
	}
	pthread_mutex_unlock(&k->mu);
}

static void *timer_main(void *arg)
{
	hs_tasks *t = arg;
	task *batch[TIMER_BATCH];
	pthread_mutex_lock(&t->mu);
	while (!t->stop) {
		int64_t now = hs_clock_mono_ms();
		size_t n = 0;
		hs_timer_node *node;
		while (n < TIMER_BATCH && (node = hs_timer_pop_expired(&t->heap, now)) != NULL)
			batch[n++] = (task *)((char *)node - offsetof(task, timer));
		if (n > 0) {
			pthread_mutex_unlock(&t->mu);
			for (size_t i = 0; i < n; i++)
				fire(t, batch[i]);
			pthread_mutex_lock(&t->mu);
			continue;
		}
		hs_timer_node *top = hs_timer_peek(&t->heap);
		if (top == NULL) {
			pthread_cond_wait(&t->timer_cv, &t->mu);
			continue;
		}
		struct timespec ts = { .tv_sec = top->deadline / 1000,
				       .tv_nsec = (top->deadline % 1000) * 1000000 };
		pthread_cond_timedwait(&t->timer_cv, &t->mu, &ts);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

task *hs_tasks__task_new(void)
{
	task *k = calloc(1, sizeof(*k));
	if (k == NULL)
		return NULL;
	pthread_mutex_init(&k->mu, NULL);
	hs_timer_node_init(&k->timer);
	return k;
}

void hs_tasks__task_free(task *k)
{
	hs_tasks__free_str(k->owner);
	hs_tasks__free_str(k->details);
	hs_tasks__free_str(k->failure_reason);
	hs_tasks__free_str(k->result_message);
	hs_tasks__free_str(k->workspace);
	hs_tasks__free_str(k->labels_json);
	free(k->resume_external);
	pthread_mutex_destroy(&k->mu);
	free(k);
}

task *hs_tasks__insert(hs_tasks *t, const hs_store_task_row *row, hs_error *err)
{
	task *k = hs_tasks__task_new();
	if (k == NULL || hs_tasks__adopt(k, row) != HS_OK) {
		if (k != NULL)
			hs_tasks__task_free(k);
		hs_error_set(err, HS_INTERNAL, "task %s: out of memory", row->task_id);
		return NULL;
	}
	pthread_mutex_lock(&t->mu);
	task *had = t->buckets[hs_tasks__hash(row->task_id) % t->nbuckets];
	while (had != NULL && strcmp(had->id, row->task_id) != 0)
		had = had->hnext;
	int rc = had == NULL ? map_add(t, k) : HS_OK;
	pthread_mutex_unlock(&t->mu);
	if (had != NULL) { /* indexed meanwhile (two takeovers of one task) */
		hs_tasks__task_free(k);
		return had;
	}
	if (rc != HS_OK) {
		hs_tasks__task_free(k);
		hs_error_set(err, HS_INTERNAL, "task %s: out of memory", row->task_id);
		return NULL;
	}
	return k;
}

/* Re-arm one loaded task (no other thread runs yet). Deadlines continue
 * where they were: RUNNING from the stored last heartbeat, STALLED and
 * RECOVERING (restored) from the stored deadline, possibly already past;
 * an interrupted restore runs again (restores are idempotent) with the
 * same generation and checkpoint. */
void hs_tasks__rearm_loaded(hs_tasks *t, task *k)
{
	int64_t now = hs_clock_wall_ms();
	hs_task_fsm *m = &k->m;
	switch (m->state) {
	case HS_TASK_RUNNING:
		m->deadline_ms = m->last_heartbeat_ms + m->timeout_ms;
		break;
	case HS_TASK_RECOVERING:
		if (m->gen <= m->acked_gen || m->resume_ckpt[0] == '\0') {
			/* Written by a harnessd before fencing: run the attempt again. */
			m->state = HS_TASK_STALLED;
			m->restored = false;
			if (m->attempts > 0)
				m->attempts--;
			m->deadline_ms = now;
		} else if (!m->restored) {
			m->deadline_ms = now; /* DEADLINE re-queues the restore */
		} else if (m->deadline_ms == 0) {
			m->deadline_ms = now + m->timeout_ms;
		}
		break;
	case HS_TASK_STALLED:
		if (m->deadline_ms == 0)
			m->deadline_ms = now;
		break;
	default:
		m->deadline_ms = 0;
		break;
	}
	if (m->deadline_ms != 0)
		hs_tasks__arm_at(t, k, m->deadline_ms);
}

typedef struct load_ctx {
	hs_tasks *t;
	hs_error *err;
	int rc;
	char last_id[HS_STORE_ID_MAX];
	size_t n;
} load_ctx;

/* Highest event id in the store, by exponential + binary search on
 * "is there an event after x" (the store has no max query). */
static int find_last_event(hs_tasks *t, int64_t *out, hs_error *err);

static int any_cb(const hs_store_event_row *e, void *payload)
{
	(void)e;
	*(bool *)payload = true;
	return 0;
}

static int any_after(hs_tasks *t, int64_t x, bool *out, hs_error *err)
{
	*out = false;
	return hs_store_event_list_after(t->store, x, NULL, 1, any_cb, out, err);
}

static int find_last_event(hs_tasks *t, int64_t *out, hs_error *err)
{
	int64_t lo = 0, hi = 1; /* invariant: an event > lo exists (or lo = 0); none > hi */
	bool any;
	int rc;
	if ((rc = any_after(t, 0, &any, err)) != HS_OK)
		return rc;
	if (!any) {
		*out = 0;
		return HS_OK;
	}
	for (;;) {
		if ((rc = any_after(t, hi, &any, err)) != HS_OK)
			return rc;
		if (!any)
			break;
		lo = hi;
		hi *= 2;
	}
	while (hi - lo > 1) {
		int64_t mid = lo + (hi - lo) / 2;
		if ((rc = any_after(t, mid, &any, err)) != HS_OK)
			return rc;
		if (any)
			lo = mid;
		else
			hi = mid;
	}
	*out = hi;
	return HS_OK;
}

static int by_lease_task(const void *key, const void *row)
{
	return strcmp(key, ((const hs_store_lease_row *)row)->task_id);
}

/* Many nodes, one page of rows: hold each task whose lease is ours
 * already (held, from one renewal of them all) or that nobody holds live
 * (one batch acquire for the page: at 100,000 tasks one statement per
 * task made a node's start take minutes); skip those another node holds. */
static int load_leased(hs_tasks *t, const hs_store_task_row *rows, size_t n,
		       const hs_store_lease_row *held, size_t n_held, hs_error *err)
{
	int rc = HS_OK;
	const char **want = n ? malloc(n * sizeof(*want)) : NULL;
	hs_store_lease_row *got = NULL;
	size_t n_want = 0, n_got = 0;
	if (n > 0 && want == NULL)
		return hs_error_set(err, HS_INTERNAL, "tasks: out of memory");
	for (size_t i = 0; i < n; i++) {
		const hs_store_task_row *row = &rows[i];
		const hs_store_lease_row *mine =
			n_held ? bsearch(row->task_id, held, n_held, sizeof(*held), by_lease_task)
			       : NULL;
		if (terminal(row->state)) { /* nothing to own: a lease left over is given back */
			if (mine != NULL)
				(void)hs_store_lease_release(t->store, row->task_id, t->node_id,
							     mine->fence, NULL);
		} else if (mine == NULL) {
			want[n_want++] = row->task_id;
		}
	}
	int64_t now = hs_clock_wall_ms();
	if (n_want > 0 && (rc = hs_store_lease_acquire_many(t->store, want, n_want, t->node_id, now,
							     now + t->lease_ms, &got, &n_got,
							     err)) != HS_OK)
		goto done;
	for (size_t i = 0; i < n && rc == HS_OK; i++) {
		const hs_store_task_row *row = &rows[i];
		if (terminal(row->state))
			continue;
		const hs_store_lease_row *l =
			n_held ? bsearch(row->task_id, held, n_held, sizeof(*held), by_lease_task)
			       : NULL;
		if (l == NULL && n_got > 0)
			l = bsearch(row->task_id, got, n_got, sizeof(*got), by_lease_task);
		if (l != NULL) /* else held live by another node */
			rc = hs_tasks__lease_install(t, row, l->fence, err);
	}
done:
	free(got);
	free(want);
	return rc;
}

static int load(hs_tasks *t, hs_error *err)
{
	char after[HS_STORE_ID_MAX] = "";
	hs_store_lease_row *held = NULL;
	size_t n_held = 0;
	int64_t now = hs_clock_wall_ms();
	if (t->leases) {
		int rc = hs_store_lease_renew_node(t->store, t->node_id, now + t->lease_ms, &held,
						   &n_held, err);
		if (rc != HS_OK)
			return rc;
	}
	for (;;) {
		hs_store_task_filter f = HS_STORE_TASK_FILTER_INIT;
		f.after_id = after;
		f.limit = HS_STORE_LIST_MAX;
		hs_store_task_row *rows = NULL;
		size_t n = 0;
		int rc = hs_store_task_list(t->store, &f, &rows, &n, err);
		if (rc != HS_OK) {
			free(held);
			return rc;
		}
		if (t->leases && (rc = load_leased(t, rows, n, held, n_held, err)) != HS_OK) {
			free(rows);
			free(held);
			return rc;
		}
		for (size_t i = 0; i < n && !t->leases; i++) {
			task *k = hs_tasks__insert(t, &rows[i], err);
			if (k == NULL) {
				free(rows);
				free(held);
				return HS_INTERNAL;
			}
			hs_tasks__rearm_loaded(t, k);
		}
		if (n > 0)
			COPY(after, rows[n - 1].task_id);
		free(rows);
		if (n < HS_STORE_LIST_MAX)
			break;
	}
	free(held);
	return find_last_event(t, &t->last_event_id, err);
}

int hs_tasks_new(hs_tasks **out, const hs_tasks_config *cfg, hs_error *err)
{
	int rc;
	if (cfg == NULL || cfg->store == NULL)
		return hs_error_set(err, HS_INVALID, "tasks: store required");
	hs_tasks *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return hs_error_set(err, HS_INTERNAL, "tasks: out of memory");
	t->store = cfg->store;
	t->tenancy = cfg->tenancy;
	t->ops_ctx.ckpt = cfg->ckpt;
	t->ops_ctx.sb = cfg->sandboxes;
	if (cfg->ops != NULL)
		t->ops = *cfg->ops;
	else
		hs_tasks__default_ops(&t->ops, &t->ops_ctx);
	t->max_tasks = cfg->max_tasks ? cfg->max_tasks : 1000000;
	t->max_tasks_per_user = cfg->max_tasks_per_user ? cfg->max_tasks_per_user : 10000;
	t->max_watchers = cfg->max_watchers ? cfg->max_watchers : 1024;
	hs_histogram_init(&t->m_hb_lag, hs_metrics_default_seconds, 11, 1e6);
	t->max_watchers_per_user = cfg->max_watchers_per_user;
	if (t->max_watchers_per_user == 0)
		t->max_watchers_per_user = t->max_watchers >= 8 ? t->max_watchers / 8 : 1;
	pthread_mutex_init(&t->mu, NULL);
	pthread_mutex_init(&t->rq_mu, NULL);
	pthread_mutex_init(&t->ev_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->timer_cv, &ca);
	pthread_cond_init(&t->lease_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&t->lease_mu, NULL);
	pthread_cond_init(&t->rq_cv, NULL);
	hs_timer_heap_init(&t->heap);
	t->nbuckets = 1024;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (t->buckets == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "tasks: out of memory");
		goto fail;
	}
	if (cfg->webhook_url != NULL && cfg->webhook_url[0] != '\0') {
		hs_webhook_config wc = { cfg->webhook_url, cfg->webhook_queue, cfg->webhook_attempts,
					 cfg->webhook_backoff_ms, cfg->webhook_timeout_ms };
		if ((rc = hs_webhook_new(&t->webhook, &wc, err)) != HS_OK)
			goto fail;
	}
	if (cfg->node_id != NULL && cfg->node_id[0] != '\0') {
		if (strlen(cfg->node_id) >= sizeof(t->node_id)) {
			rc = hs_error_set(err, HS_INVALID, "tasks: node id too long");
			goto fail;
		}
		t->leases = true;
		COPY(t->node_id, cfg->node_id);
		t->lease_ms = cfg->lease_ms > 0 ? cfg->lease_ms : 10000;
		if (t->lease_ms < 300)
			t->lease_ms = 300;
	}
	if ((rc = load(t, err)) != HS_OK)
		goto fail;
	if ((rc = hs_tasks__recovery_start(t)) != HS_OK) {
		hs_error_set(err, rc, "tasks: cannot start recovery threads");
		goto fail;
	}
	if (pthread_create(&t->timer_thr, NULL, timer_main, t) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "tasks: cannot start timer thread");
		goto fail;
	}
	t->timer_started = true;
	if ((rc = hs_tasks__lease_start(t, err)) != HS_OK)
		goto fail;
	if (cfg->metrics != NULL) {
		if ((rc = hs_metrics_add(cfg->metrics, hs_tasks__metrics_collect, t, err)) != HS_OK)
			goto fail;
		t->registry = cfg->metrics;
	}
	hs_log(HS_LOG_INFO, "tasks", "tasks loaded", HS_LI("tasks", t->n_all),
	       HS_LI("armed", hs_timer_count(&t->heap)), HS_LI("last_event_id", t->last_event_id));
	*out = t;
	return HS_OK;
fail:
	hs_tasks_free(t);
	return rc;
}

void hs_tasks_free(hs_tasks *t)
{
	if (t == NULL)
		return;
	if (t->registry != NULL) /* no scrape reads t past this */
		hs_metrics_remove(t->registry, hs_tasks__metrics_collect, t);
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_broadcast(&t->timer_cv);
	pthread_mutex_unlock(&t->mu);
	if (t->timer_started)
		pthread_join(t->timer_thr, NULL);
	hs_tasks__recovery_stop(t);
	hs_tasks__lease_stop(t); /* nothing here acts on a task any more */
	hs_webhook_free(t->webhook);
	hs_tasks__watchers_free(t);
	hs_timer_heap_dispose(&t->heap);
	for (size_t i = 0; i < t->n_all; i++)
		hs_tasks__task_free(t->all[i]);
	free(t->all);
	free(t->buckets);
	hs_tasks__owners_free(t);
	free(t->rq);
	pthread_cond_destroy(&t->timer_cv);
	pthread_cond_destroy(&t->rq_cv);
	pthread_cond_destroy(&t->lease_cv);
	pthread_mutex_destroy(&t->lease_mu);
	pthread_mutex_destroy(&t->mu);
	pthread_mutex_destroy(&t->rq_mu);
	pthread_mutex_destroy(&t->ev_mu);
	free(t);
}

size_t hs_tasks_count(hs_tasks *t)
{
	pthread_mutex_lock(&t->mu);
	size_t n = t->n_all;
	pthread_mutex_unlock(&t->mu);
	return n;
}

void hs_tasks_stats_get(hs_tasks *t, hs_tasks_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&t->mu);
	out->tasks = t->n_all;
	out->armed_timers = hs_timer_count(&t->heap);
	pthread_mutex_unlock(&t->mu);
	pthread_mutex_lock(&t->ev_mu);
	out->watchers = t->n_watchers;
	pthread_mutex_unlock(&t->ev_mu);
	out->events = atomic_load(&t->n_events);
	out->events_dropped = atomic_load(&t->n_dropped);
	out->recoveries_started = atomic_load(&t->n_recoveries);
	if (t->webhook != NULL) {
		uint64_t failed;
		hs_webhook_stats(t->webhook, &out->webhook_sent, &out->webhook_dropped, &failed);
	}
}
