/* Task events: append to the store, then fan out to watchers and the
 * webhook, all under t->ev_mu so that delivery order is event-id order.
 *
 * Watchers never block the emitter: live delivery calls the watcher's
 * non-blocking send; when its queue is full the event is dropped and
 * counted, and the next event that fits is preceded by one EVENTS_DROPPED
 * event carrying the count (the client re-reads state or reconnects with
 * after_event_id to replay from the store).
 *
 * Opening a watcher: it is registered (not yet live: live delivery skips
 * it), then catches up in steps, each one a call of hs_tasks_watch_pump
 * that sends what fits and returns (no thread ever waits for a slow reader;
 * the caller pumps again when the reader's queue has room, driven by its
 * write completions):
 *
 *   REPLAY  stored events in (cursor, upto], a page at a time
 *     -> INITIAL  one INITIAL_STATE per matching task, a page at a time (once)
 *     -> LIVE?    under t->ev_mu: newer events stored meanwhile? then
 *                 upto = the newest and back to REPLAY; else live from here
 *
 * where upto starts as the last event id at registration. Every event is
 * in the store before it is broadcast, and the switch to live happens under
 * the lock that orders both, so there is no gap and no duplicate; a watcher
 * that catches up slowly holds one page of events, never a growing buffer,
 * and never drops (only live delivery to a full queue drops). */
#include "tasks_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "log.h"

#define PAGE 64      /* events read (or built) per step */
#define PUMP_PAGES 4 /* steps per pump before yielding the worker */

enum { PH_REPLAY, PH_INITIAL, PH_LIVE };

struct hs_task_watch {
	struct hs_task_watch *next;
	char owner[HS_TASK_OWNER_MAX];
	bool admin;
	char task_id[HS_TASK_ID_MAX + 1]; /* "" = every visible task */
	hs_task_send_fn send;
	void *payload;
	bool live, dead; /* live: set under t->ev_mu, by the pump only */
	uint64_t dropped; /* pending EVENTS_DROPPED count */
	/* Catching up, touched only by the pump (one at a time). */
	int phase;
	bool initial;
	int64_t cursor, upto;
	hs_task_event *page; /* read or built, not yet sent: page[ipage..npage) */
	size_t npage, ipage;
	task **snap; /* INITIAL: the tasks at the start of the phase */
	size_t nsnap, isnap;
	char snap_after[HS_TASK_ID_MAX + 1]; /* INITIAL on a shared store: the page cursor */
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
		/* A watcher catching up reads this one from the store later. */
		if (w->live && !w->dead && matches(w, ev))
			deliver(t, w, ev);
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
		      int64_t fence, hs_error *err)
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
	int rc = fence > 0 ? hs_store_task_transition_fenced(t->store, row, insert, &er, t->node_id,
							     fence, hs_clock_wall_ms(), &id, err)
			   : hs_store_task_transition(t->store, row, insert, &er, &id, err);
	if (rc == HS_OK) {
		ev->event_id = id;
		atomic_fetch_add(&t->n_events, 1);
		/* On a shared store another node's event may lie between the last
		 * one delivered and this one: then the follower delivers both, in
		 * order (follow.c). Without a follower (it could not start) this
		 * node's own events still reach its watchers. */
		if (t->n_watchers == 0 || t->follow == NULL || id == t->last_event_id + 1 ||
		    !hs_tasks__shared_store(t)) {
			if (id > t->last_event_id)
				t->last_event_id = id;
			hs_tasks__broadcast(t, ev);
		}
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

typedef struct replay_ctx {
	hs_tasks *t;
	hs_task_watch *w;
	size_t seen;
	bool past;
} replay_ctx;

static int replay_cb(const hs_store_event_row *e, void *payload)
{
	replay_ctx *c = payload;
	hs_task_watch *w = c->w;
	c->seen++;
	if (e->event_id > w->upto) {
		c->past = true;
		return 1; /* newer than this round: the next one (or live) has it */
	}
	w->cursor = e->event_id;
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
	/* From memory, else (another node's task) its stored row; unknown:
	 * nobody's but admins'. */
	hs_error err = { 0 };
	if (hs_tasks__task_meta(c->t, e->task_id, ev.owner, ev.sandbox_id, &err) != HS_OK)
		ev.owner[0] = ev.sandbox_id[0] = '\0';
	if (matches(w, &ev))
		w->page[w->npage++] = ev;
	return 0;
}

/* One page of stored events into w->page (store read: may block briefly). */
static int replay_step(hs_tasks *t, hs_task_watch *w, hs_error *err)
{
	if (w->cursor >= w->upto) {
		w->phase = w->initial ? PH_INITIAL : PH_LIVE;
		return HS_OK;
	}
	replay_ctx c = { t, w, 0, false };
	int rc = hs_store_event_list_after(t->store, w->cursor,
					   w->task_id[0] != '\0' ? w->task_id : NULL, PAGE,
					   replay_cb, &c, err);
	if (rc > 0)
		rc = HS_OK;
	if (rc == HS_OK && (c.past || c.seen < PAGE))
		w->cursor = w->upto; /* nothing more up to upto */
	return rc;
}

/* One page of INITIAL_STATE events into w->page (memory only). */
static int initial_step(hs_tasks *t, hs_task_watch *w)
{
	if (w->snap == NULL) {
		pthread_mutex_lock(&t->mu);
		size_t n = t->n_all;
		w->snap = malloc((n ? n : 1) * sizeof(*w->snap));
		if (w->snap != NULL && n > 0) /* t->all is NULL with no task */
			memcpy(w->snap, t->all, n * sizeof(*w->snap));
		pthread_mutex_unlock(&t->mu);
		if (w->snap == NULL)
			return HS_INTERNAL;
		w->nsnap = n;
		w->isnap = 0;
	}
	for (; w->isnap < w->nsnap && w->npage < PAGE; w->isnap++) {
		task *k = w->snap[w->isnap];
		hs_task_event ev;
		memset(&ev, 0, sizeof(ev));
		pthread_mutex_lock(&k->mu);
		bool fin = k->m.state == HS_TASK_COMPLETED || k->m.state == HS_TASK_FAILED ||
			   k->m.state == HS_TASK_CANCELLED;
		ev.event_id = w->upto;
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
		w->page[w->npage++] = ev;
	}
	if (w->isnap == w->nsnap) {
		free(w->snap);
		w->snap = NULL;
		w->initial = false;
		w->phase = PH_LIVE;
	}
	return HS_OK;
}

/* An INITIAL_STATE event from a stored row, or from the task in memory
 * (fresher: heartbeats reach the row later) when this node holds it. */
static void initial_of_row(hs_tasks *t, hs_task_watch *w, const hs_store_task_row *r)
{
	hs_task_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.event_id = w->upto;
	COPY(ev.task_id, r->task_id);
	ev.type = HS_TEV_INITIAL_STATE;
	task *k = hs_tasks__lookup(t, r->task_id);
	if (k != NULL) {
		pthread_mutex_lock(&k->mu);
		ev.step = k->m.current_step;
		COPY(ev.checkpoint_id, k->m.last_ckpt);
		ev.state = k->m.state;
		ev.recovery_generation = k->m.gen;
		COPY(ev.owner, k->owner);
		COPY(ev.sandbox_id, k->sandbox_id);
		pthread_mutex_unlock(&k->mu);
	} else {
		ev.step = r->current_step;
		COPY(ev.checkpoint_id, r->last_checkpoint_id);
		ev.state = (hs_task_state)r->state;
		ev.recovery_generation = r->recovery_generation;
		COPY(ev.owner, r->owner);
		COPY(ev.sandbox_id, r->sandbox_id);
	}
	ev.occurred_at_ms = hs_clock_wall_ms();
	bool fin = ev.state == HS_TASK_COMPLETED || ev.state == HS_TASK_FAILED ||
		   ev.state == HS_TASK_CANCELLED;
	if (!matches(w, &ev) || (fin && w->task_id[0] == '\0'))
		return;
	w->page[w->npage++] = ev;
}

/* initial_step on a store several nodes share: every node's tasks, from
 * the store a page at a time (by task id), not only those in memory. */
static int initial_step_store(hs_tasks *t, hs_task_watch *w, hs_error *err)
{
	int rc;
	size_t n = 0;
	if (w->task_id[0] != '\0') {
		hs_store_task_row r;
		rc = hs_store_task_get(t->store, w->task_id, &r, err);
		if (rc == HS_OK)
			initial_of_row(t, w, &r);
		else if (rc != HS_NOT_FOUND)
			return rc;
	} else {
		hs_store_task_row *rows = NULL;
		hs_store_task_filter f = HS_STORE_TASK_FILTER_INIT;
		f.owner = w->admin ? NULL : w->owner;
		f.after_id = w->snap_after[0] != '\0' ? w->snap_after : NULL;
		f.limit = PAGE;
		if ((rc = hs_store_task_list(t->store, &f, &rows, &n, err)) != HS_OK)
			return rc;
		for (size_t i = 0; i < n; i++)
			initial_of_row(t, w, &rows[i]);
		if (n > 0)
			COPY(w->snap_after, rows[n - 1].task_id);
		free(rows);
	}
	if (n < PAGE) {
		w->initial = false;
		w->phase = PH_LIVE;
	}
	return HS_OK;
}

/* Live from here if nothing was stored since upto (the check and the switch
 * under the lock every emit takes); else replay up to the newest first. */
static bool go_live(hs_tasks *t, hs_task_watch *w)
{
	pthread_mutex_lock(&t->ev_mu);
	bool caught_up = t->last_event_id <= w->upto;
	if (caught_up)
		w->live = true;
	else
		w->upto = t->last_event_id;
	pthread_mutex_unlock(&t->ev_mu);
	if (!caught_up) {
		w->phase = PH_REPLAY;
		return false;
	}
	free(w->page);
	w->page = NULL;
	return true;
}

int hs_tasks_watch_pump(hs_tasks *t, hs_task_watch *w, hs_error *err)
{
	if (w->live)
		return HS_OK; /* only the pump sets it */
	if (w->page == NULL && (w->page = malloc(PAGE * sizeof(*w->page))) == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	for (unsigned steps = 0;; steps++) {
		for (; w->ipage < w->npage; w->ipage++) {
			int rc = w->send(&w->page[w->ipage], w->payload);
			if (rc == HS_LIMIT)
				return HS_LIMIT; /* kept: sent on the next pump */
			if (rc != HS_OK)
				return hs_error_set(err, HS_CANCELLED, "watcher went away");
		}
		w->npage = w->ipage = 0;
		if (w->phase == PH_LIVE && go_live(t, w))
			return HS_OK;
		if (steps == PUMP_PAGES)
			return HS_LIMIT; /* yield the worker; the next pump goes on */
		int rc = w->phase == PH_REPLAY     ? replay_step(t, w, err)
			 : hs_tasks__shared_store(t) ? initial_step_store(t, w, err)
						     : initial_step(t, w);
		if (rc != HS_OK)
			return rc == HS_INTERNAL ? hs_error_set(err, rc, "out of memory") : rc;
	}
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

static void watch_free(hs_task_watch *w)
{
	free(w->page);
	free(w->snap);
	free(w);
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
		/* In memory, else (shared store) another node's task. */
		char owner[HS_TASK_OWNER_MAX], sandbox_id[HS_TASK_ID_MAX + 1];
		rc = hs_tasks__task_meta(t, task_id, owner, sandbox_id, err);
		if (rc == HS_NOT_FOUND)
			return hs_error_set(err, HS_NOT_FOUND, "task %s not found", task_id);
		if (rc != HS_OK)
			return rc;
		if (!hs_principal_may(caller, owner)) /* one rule: another user's is not found */
			return hs_error_set(err, HS_NOT_FOUND, "task %s not found", task_id);
	}
	hs_task_watch *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	COPY(w->owner, caller->user_id);
	w->admin = caller->is_admin;
	COPY(w->task_id, one ? task_id : "");
	w->send = send;
	w->payload = payload;
	w->initial = initial;

	pthread_mutex_lock(&t->ev_mu);
	if (t->n_watchers >= t->max_watchers) {
		pthread_mutex_unlock(&t->ev_mu);
		free(w);
		return hs_error_set(err, HS_LIMIT, "too many watchers (limit %zu)", t->max_watchers);
	}
	size_t mine = 0;
	for (hs_task_watch *o = t->watchers; !caller->is_admin && o != NULL; o = o->next)
		mine += strcmp(o->owner, w->owner) == 0;
	if (!caller->is_admin && mine >= t->max_watchers_per_user) {
		pthread_mutex_unlock(&t->ev_mu);
		free(w);
		return hs_error_set(err, HS_LIMIT, "too many watchers for this user (limit %zu)",
				    t->max_watchers_per_user);
	}
	if (t->n_watchers == 0 && hs_tasks__shared_store(t)) {
		/* Nobody followed other nodes' events meanwhile: start from the
		 * newest stored (follow.c). */
		int64_t last = 0;
		if ((rc = hs_store_event_last_id(t->store, &last, err)) != HS_OK) {
			pthread_mutex_unlock(&t->ev_mu);
			free(w);
			return rc;
		}
		if (last > t->last_event_id)
			t->last_event_id = last;
		hs_tasks__follow_start(t);
	}
	w->next = t->watchers;
	t->watchers = w;
	t->n_watchers++;
	w->upto = t->last_event_id;
	pthread_mutex_unlock(&t->ev_mu);

	w->cursor = after_event_id > 0 && after_event_id < w->upto ? after_event_id : w->upto;
	w->phase = w->cursor < w->upto ? PH_REPLAY : initial ? PH_INITIAL : PH_LIVE;
	rc = hs_tasks_watch_pump(t, w, err);
	if (rc != HS_OK && rc != HS_LIMIT) {
		pthread_mutex_lock(&t->ev_mu);
		unlink_locked(t, w);
		pthread_mutex_unlock(&t->ev_mu);
		watch_free(w);
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
	watch_free(w);
}

void hs_tasks__watchers_free(hs_tasks *t)
{
	hs_tasks__follow_stop(t);
	pthread_mutex_lock(&t->ev_mu);
	while (t->watchers != NULL) {
		hs_task_watch *w = t->watchers;
		t->watchers = w->next;
		watch_free(w);
	}
	t->n_watchers = 0;
	pthread_mutex_unlock(&t->ev_mu);
}
