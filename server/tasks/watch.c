/* Task events: append to the store, then fan out to watchers and the
 * webhook, all under t->ev_mu so that delivery order is event-id order.
 *
 * Watchers never block the emitter: live delivery calls the watcher's
 * non-blocking send; when its queue is full the event is dropped and
 * counted, and the next event that fits is preceded by one EVENTS_DROPPED
 * event carrying the count (the client re-reads state or reconnects with
 * after_event_id to replay from the store).
 *
 * Opening a watcher: it is registered in "catching up" mode first (live
 * events go to a bounded buffer), then stored events up to the id seen at
 * registration are replayed and initial states sent from the caller's
 * thread (waiting for room), then the buffer is flushed and the watcher
 * goes live. Replay ends exactly where the buffer starts: no gap, no
 * duplicate. */
#include "tasks_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "log.h"

#define CATCHUP_BUF 1024
#define REPLAY_PAGE 256
#define WAIT_POLL_MS 5

struct hs_task_watch {
	struct hs_task_watch *next;
	char owner[HS_TASK_OWNER_MAX];
	bool admin;
	char task_id[HS_TASK_ID_MAX + 1]; /* "" = every visible task */
	hs_task_send_fn send;
	void *payload;
	bool live, dead;
	hs_task_event *buf;
	size_t nbuf;
	uint64_t dropped; /* pending EVENTS_DROPPED count */
};

static bool matches(const hs_task_watch *w, const hs_task_event *ev)
{
	if (w->task_id[0] != '\0' && strcmp(w->task_id, ev->task_id) != 0)
		return false;
	return w->admin || strcmp(w->owner, ev->owner) == 0;
}

/* Non-blocking delivery with the drop policy; t->ev_mu held. */
static void deliver(hs_tasks *t, hs_task_watch *w, const hs_task_event *ev)
{
	if (w->dead)
		return;
	if (w->dropped > 0) {
		hs_task_event d;
		memset(&d, 0, sizeof(d));
		d.event_id = ev->event_id - 1;
		d.type = HS_TEV_EVENTS_DROPPED;
		d.dropped_count = w->dropped;
		d.occurred_at_ms = hs_clock_wall_ms();
		snprintf(d.message, sizeof(d.message), "%llu events dropped",
			 (unsigned long long)w->dropped);
		int rc = w->send(&d, w->payload);
		if (rc == HS_LIMIT) {
			w->dropped++;
			atomic_fetch_add(&t->n_dropped, 1);
			return;
		}
		if (rc != HS_OK) {
			w->dead = true;
			return;
		}
		w->dropped = 0;
	}
	int rc = w->send(ev, w->payload);
	if (rc == HS_LIMIT) {
		w->dropped++;
		atomic_fetch_add(&t->n_dropped, 1);
	} else if (rc != HS_OK) {
		w->dead = true;
	}
}

void hs_tasks__broadcast(hs_tasks *t, const hs_task_event *ev)
{
	for (hs_task_watch *w = t->watchers; w != NULL; w = w->next) {
		if (w->dead || !matches(w, ev))
			continue;
		if (w->live) {
			deliver(t, w, ev);
		} else if (w->nbuf < CATCHUP_BUF) {
			w->buf[w->nbuf++] = *ev;
		} else {
			w->dropped++;
			atomic_fetch_add(&t->n_dropped, 1);
		}
	}
}

static char *event_json(const hs_task_event *ev)
{
	static const char *const types[] = { "UNSPECIFIED",        "REGISTERED",     "TIMEOUT",
					     "RECOVERY_STARTED",   "RECOVERED",      "RECOVERY_FAILED",
					     "COMPLETED",          "FAILED",         "CANCELLED",
					     "EVENTS_DROPPED",     "INITIAL_STATE",  "WORKSPACE_RESTORED",
					     "LATE_HEARTBEAT" };
	json_t *j = json_pack("{s:I,s:s,s:s,s:I,s:s,s:I,s:s,s:i,s:s,s:s,s:s,s:I}", "event_id",
			      (json_int_t)ev->event_id, "task_id", ev->task_id, "type",
			      types[ev->type <= 12 ? ev->type : 0], "step", (json_int_t)ev->step,
			      "checkpoint_id", ev->checkpoint_id, "occurred_at_ms",
			      (json_int_t)ev->occurred_at_ms, "message", ev->message, "attempt",
			      (int)ev->attempt, "state", hs_task_state_name(ev->state), "owner",
			      ev->owner, "sandbox_id", ev->sandbox_id, "recovery_generation",
			      (json_int_t)ev->recovery_generation);
	if (j == NULL)
		return NULL;
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

int hs_tasks__publish(hs_tasks *t, const hs_store_task_row *row, bool insert, hs_task_event *ev,
		      hs_error *err)
{
	hs_store_event_row er;
	memset(&er, 0, sizeof(er));
	COPY(er.task_id, ev->task_id);
	er.type = ev->type;
	er.step = ev->step;
	COPY(er.checkpoint_id, ev->checkpoint_id);
	COPY(er.message, ev->message);
	er.attempt = ev->attempt;
	er.state = ev->state;
	er.occurred_at_ms = ev->occurred_at_ms;
	er.recovery_generation = ev->recovery_generation;

	pthread_mutex_lock(&t->ev_mu);
	int64_t id = 0;
	int rc = hs_store_task_transition(t->store, row, insert, &er, &id, err);
	if (rc == HS_OK) {
		ev->event_id = id;
		t->last_event_id = id;
		atomic_fetch_add(&t->n_events, 1);
		hs_tasks__broadcast(t, ev);
		if (t->webhook != NULL) {
			char *body = event_json(ev);
			if (body != NULL && hs_webhook_post(t->webhook, body) == HS_LIMIT)
				hs_log(HS_LOG_WARN, "tasks", "webhook queue full: event dropped",
				       HS_LS("task_id", ev->task_id), HS_LI("event_id", ev->event_id));
		}
	}
	pthread_mutex_unlock(&t->ev_mu);
	return rc;
}

/* ---- opening a watcher ----------------------------------------------------- */

/* Send, waiting for room (catch-up phase, caller's thread). */
static int send_wait(hs_task_watch *w, const hs_task_event *ev)
{
	for (;;) {
		int rc = w->send(ev, w->payload);
		if (rc != HS_LIMIT)
			return rc;
		struct timespec ts = { 0, WAIT_POLL_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
}

typedef struct replay_ctx {
	hs_tasks *t;
	hs_task_watch *w;
	int64_t upto, cursor;
	size_t seen;
	int rc;
} replay_ctx;

static int replay_cb(const hs_store_event_row *e, void *payload)
{
	replay_ctx *c = payload;
	c->seen++;
	c->cursor = e->event_id;
	if (e->event_id > c->upto)
		return 1; /* the catch-up buffer has it */
	task *k = hs_tasks__lookup(c->t, e->task_id);
	hs_task_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.event_id = e->event_id;
	COPY(ev.task_id, e->task_id);
	ev.type = (hs_task_event_type)e->type;
	ev.step = e->step;
	COPY(ev.checkpoint_id, e->checkpoint_id);
	COPY(ev.message, e->message);
	ev.attempt = e->attempt;
	ev.state = e->state;
	ev.occurred_at_ms = e->occurred_at_ms;
	ev.recovery_generation = e->recovery_generation;
	if (k != NULL) {
		pthread_mutex_lock(&k->mu);
		COPY(ev.owner, k->owner);
		COPY(ev.sandbox_id, k->sandbox_id);
		pthread_mutex_unlock(&k->mu);
	}
	if (!matches(c->w, &ev))
		return 0;
	int rc = send_wait(c->w, &ev);
	if (rc != HS_OK) {
		c->rc = rc;
		return 1;
	}
	return 0;
}

static int send_initial(hs_tasks *t, hs_task_watch *w, int64_t upto)
{
	pthread_mutex_lock(&t->mu);
	size_t n = t->n_all;
	task **all = malloc((n ? n : 1) * sizeof(*all));
	if (all != NULL)
		memcpy(all, t->all, n * sizeof(*all));
	pthread_mutex_unlock(&t->mu);
	if (all == NULL)
		return HS_INTERNAL;
	int rc = HS_OK;
	for (size_t i = 0; i < n && rc == HS_OK; i++) {
		task *k = all[i];
		hs_task_event ev;
		memset(&ev, 0, sizeof(ev));
		pthread_mutex_lock(&k->mu);
		bool fin = k->m.state == HS_TASK_COMPLETED || k->m.state == HS_TASK_FAILED ||
			   k->m.state == HS_TASK_CANCELLED;
		ev.event_id = upto;
		COPY(ev.task_id, k->id);
		ev.type = HS_TEV_INITIAL_STATE;
		ev.step = k->m.current_step;
		COPY(ev.checkpoint_id, k->m.last_ckpt);
		ev.state = k->m.state;
		ev.recovery_generation = k->m.gen;
		ev.attempt = 0;
		ev.occurred_at_ms = hs_clock_wall_ms();
		COPY(ev.owner, k->owner);
		COPY(ev.sandbox_id, k->sandbox_id);
		pthread_mutex_unlock(&k->mu);
		if (!matches(w, &ev) || (fin && w->task_id[0] == '\0'))
			continue;
		rc = send_wait(w, &ev);
	}
	free(all);
	return rc;
}

static void unlink_locked(hs_tasks *t, hs_task_watch *w)
{
	for (hs_task_watch **p = &t->watchers; *p != NULL; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			t->n_watchers--;
			return;
		}
	}
}

int hs_tasks_watch(hs_tasks *t, const hs_principal *caller, const char *task_id,
		   bool initial, int64_t after_event_id, hs_task_send_fn send, void *payload,
		   hs_task_watch **out, hs_error *err)
{
	int rc;
	if (caller == NULL || caller->user_id == NULL || caller->user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "no authenticated caller");
	if (after_event_id < 0)
		return hs_error_set(err, HS_INVALID, "after_event_id: out of range");
	bool one = task_id != NULL && task_id[0] != '\0';
	if (one) {
		if ((rc = hs_id_check_task("task_id", task_id, err)) != HS_OK)
			return hs_error_set(err, HS_INVALID, "task_id: %s", err ? err->msg : "invalid");
		task *k = hs_tasks__lookup(t, task_id);
		if (k == NULL)
			return hs_error_set(err, HS_NOT_FOUND, "task %s not found", task_id);
		pthread_mutex_lock(&k->mu);
		bool vis = hs_tasks__visible(k, caller);
		pthread_mutex_unlock(&k->mu);
		if (!vis) /* one rule for every resource: another user's is not found */
			return hs_error_set(err, HS_NOT_FOUND, "task %s not found", task_id);
	}
	hs_task_watch *w = calloc(1, sizeof(*w));
	if (w == NULL || (w->buf = malloc(CATCHUP_BUF * sizeof(*w->buf))) == NULL) {
		free(w);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	COPY(w->owner, caller->user_id);
	w->admin = caller->is_admin;
	COPY(w->task_id, one ? task_id : "");
	w->send = send;
	w->payload = payload;

	pthread_mutex_lock(&t->ev_mu);
	if (t->n_watchers >= t->max_watchers) {
		pthread_mutex_unlock(&t->ev_mu);
		free(w->buf);
		free(w);
		return hs_error_set(err, HS_LIMIT, "too many watchers (limit %zu)", t->max_watchers);
	}
	w->next = t->watchers;
	t->watchers = w;
	t->n_watchers++;
	int64_t upto = t->last_event_id;
	pthread_mutex_unlock(&t->ev_mu);

	rc = HS_OK;
	if (after_event_id > 0 && after_event_id < upto) {
		replay_ctx c = { t, w, upto, after_event_id, 0, HS_OK };
		do {
			c.seen = 0;
			int64_t from = c.cursor;
			rc = hs_store_event_list_after(t->store, from, one ? task_id : NULL, REPLAY_PAGE,
						       replay_cb, &c, err);
			if (rc == 1)
				rc = c.rc;
		} while (rc == HS_OK && c.seen == REPLAY_PAGE && c.cursor < upto);
	}
	if (rc == HS_OK && initial)
		rc = send_initial(t, w, upto);

	pthread_mutex_lock(&t->ev_mu);
	if (rc == HS_OK) {
		w->live = true;
		for (size_t i = 0; i < w->nbuf; i++)
			deliver(t, w, &w->buf[i]);
		w->nbuf = 0;
	} else {
		unlink_locked(t, w);
	}
	pthread_mutex_unlock(&t->ev_mu);
	free(w->buf);
	w->buf = NULL;
	if (rc != HS_OK) {
		free(w);
		if (rc > 0 || rc == HS_CANCELLED)
			rc = hs_error_set(err, HS_CANCELLED, "watcher went away");
		return rc;
	}
	*out = w;
	return HS_OK;
}

void hs_tasks_unwatch(hs_tasks *t, hs_task_watch *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&t->ev_mu);
	unlink_locked(t, w);
	pthread_mutex_unlock(&t->ev_mu);
	free(w->buf);
	free(w);
}

void hs_tasks__watchers_free(hs_tasks *t)
{
	pthread_mutex_lock(&t->ev_mu);
	while (t->watchers != NULL) {
		hs_task_watch *w = t->watchers;
		t->watchers = w->next;
		free(w->buf);
		free(w);
	}
	t->n_watchers = 0;
	pthread_mutex_unlock(&t->ev_mu);
}
