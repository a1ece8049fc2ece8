/* Events other nodes append (a PostgreSQL store shared by several harnessd):
 * one follower thread per registry delivers them to this node's watchers,
 * in event-id order, without gaps or repeats.
 *
 * Why this is enough. The store hands out event ids under a lock held to
 * commit (store_pg.c, "Order"), so the committed events are always every id
 * up to some point (minus ids of rolled-back transactions): whatever a read
 * of "events after x" returns, no smaller id can commit later. So
 * t->last_event_id means here: every event up to it has been delivered to
 * the live watchers (or was stored before they went live, and they replay
 * it). It only moves forward, under t->ev_mu, and only in two places:
 *   - hs_tasks__publish (watch.c): this node's own event, when it is the
 *     next one (id == last + 1) or when there is no watcher at all;
 *     otherwise the event waits for the follower;
 *   - the follower: reads the events after last_event_id from the store
 *     (outside the lock: a read never holds up an emitter), then under
 *     t->ev_mu broadcasts those still above last_event_id and advances it.
 * The follower wakes on each announcement on harness_task_events (LISTEN,
 * store.h hs_store_listener; every node's commits, this node's included)
 * and in any case every FOLLOW_POLL_MS, so a lost connection or a missed
 * announcement delays delivery by at most that, and never loses an event
 * (polling by event id). While there is no watcher it reads nothing; the
 * first watcher to register brings last_event_id up to the store's newest
 * event (hs_tasks_watch), as a watcher on one node always started.
 *
 * Stored events carry no owner or sandbox: they are taken from the task in
 * memory, else from its stored row (a task another node registered), so
 * the one visibility rule (owner or admin) filters them. The webhook gets
 * only this node's own events (each node posts what it emits). */
#include "tasks_internal.h"

#include <poll.h>
#include <stdlib.h>

#include "log.h"

#define FOLLOW_POLL_MS 500 /* fallback poll period, and the stop latency */
#define FOLLOW_PAGE 256     /* events read per store call */

struct hs_tasks__follow {
	hs_tasks *t;
	pthread_t thr;
	atomic_bool stop;
	hs_store_listener *l;
};

bool hs_tasks__shared_store(hs_tasks *t)
{
	return strcmp(hs_store_backend(t->store), "postgres") == 0;
}

int hs_tasks__task_meta(hs_tasks *t, const char *task_id, char owner[HS_TASK_OWNER_MAX],
			char sandbox_id[HS_TASK_ID_MAX + 1], hs_error *err)
{
	task *k = hs_tasks__lookup(t, task_id);
	if (k != NULL) {
		pthread_mutex_lock(&k->mu);
		hs_tasks__copy(owner, HS_TASK_OWNER_MAX, k->owner);
		hs_tasks__copy(sandbox_id, HS_TASK_ID_MAX + 1, k->sandbox_id);
		pthread_mutex_unlock(&k->mu);
		return HS_OK;
	}
	if (!hs_tasks__shared_store(t))
		return hs_error_set(err, HS_NOT_FOUND, "task %s not found", task_id);
	hs_store_task_row row;
	int rc = hs_store_task_get(t->store, task_id, &row, err);
	if (rc != HS_OK)
		return rc;
	hs_tasks__copy(owner, HS_TASK_OWNER_MAX, row.owner);
	hs_tasks__copy(sandbox_id, HS_TASK_ID_MAX + 1, row.sandbox_id);
	return HS_OK;
}

typedef struct page {
	hs_tasks *t;
	hs_task_event *v;
	size_t n;
	/* the previous event's task: a page is often one task's run */
	char task_id[HS_TASK_ID_MAX + 1], owner[HS_TASK_OWNER_MAX], sandbox_id[HS_TASK_ID_MAX + 1];
	bool known;
} page;

static int page_cb(const hs_store_event_row *e, void *payload)
{
	page *p = payload;
	hs_task_event *ev = &p->v[p->n++];
	memset(ev, 0, sizeof(*ev));
	ev->event_id = e->event_id;
	COPY(ev->task_id, e->task_id);
	ev->type = (hs_task_event_type)e->type;
	ev->step = e->step;
	COPY(ev->checkpoint_id, e->checkpoint_id);
	COPY(ev->message, e->message);
	ev->attempt = e->attempt;
	ev->state = e->state;
	ev->occurred_at_ms = e->occurred_at_ms;
	ev->recovery_generation = e->recovery_generation;
	if (!p->known || strcmp(p->task_id, ev->task_id) != 0) {
		hs_error err = { 0 };
		COPY(p->task_id, ev->task_id);
		p->known = true;
		/* A task gone from the store (deleted since): nobody's but admins'. */
		if (hs_tasks__task_meta(p->t, ev->task_id, p->owner, p->sandbox_id, &err) != HS_OK)
			p->owner[0] = p->sandbox_id[0] = '\0';
	}
	COPY(ev->owner, p->owner);
	COPY(ev->sandbox_id, p->sandbox_id);
	return 0;
}

/* Deliver everything stored after last_event_id; false on a store error. */
static bool catch_up(hs_tasks *t, page *p)
{
	for (;;) {
		pthread_mutex_lock(&t->ev_mu);
		bool none = t->n_watchers == 0;
		int64_t from = t->last_event_id;
		pthread_mutex_unlock(&t->ev_mu);
		if (none)
			return true;
		hs_error err = { 0 };
		p->n = 0;
		p->known = false;
		int rc = hs_store_event_list_after(t->store, from, NULL, FOLLOW_PAGE, page_cb, p, &err);
		if (rc < 0) {
			hs_log(HS_LOG_WARN, "tasks", "event follower: store read failed",
			       HS_LS("error", err.msg));
			return false;
		}
		pthread_mutex_lock(&t->ev_mu);
		for (size_t i = 0; i < p->n; i++) {
			if (p->v[i].event_id <= t->last_event_id)
				continue; /* this node published it meanwhile */
			t->last_event_id = p->v[i].event_id;
			hs_tasks__broadcast(t, &p->v[i]);
		}
		pthread_mutex_unlock(&t->ev_mu);
		if (p->n < FOLLOW_PAGE)
			return true;
	}
}

static void *follow_main(void *arg)
{
	hs_tasks__follow *f = arg;
	hs_tasks *t = f->t;
	page p = { .t = t, .v = malloc(FOLLOW_PAGE * sizeof(hs_task_event)) };
	if (p.v == NULL) {
		hs_log(HS_LOG_ERROR, "tasks", "event follower: out of memory; other nodes' events "
					      "are not delivered");
		return NULL;
	}
	while (!atomic_load(&f->stop)) {
		int64_t max = 0;
		hs_error err = { 0 };
		if (hs_store_listener_wait(f->l, FOLLOW_POLL_MS, &max, &err) != HS_OK)
			(void)poll(NULL, 0, FOLLOW_POLL_MS); /* unreachable: the next wait reconnects */
		if (atomic_load(&f->stop))
			break;
		/* Announced, reconnected (-1: some may be missed) or the poll
		 * period passed: read by event id either way. */
		(void)catch_up(t, &p);
	}
	free(p.v);
	return NULL;
}

void hs_tasks__follow_start(hs_tasks *t)
{
	if (t->follow != NULL || !hs_tasks__shared_store(t))
		return;
	hs_error err = { 0 };
	hs_tasks__follow *f = calloc(1, sizeof(*f));
	if (f == NULL || hs_store_listener_new(t->store, &f->l, &err) != HS_OK)
		goto fail;
	f->t = t;
	t->follow = f;
	if (pthread_create(&f->thr, NULL, follow_main, f) != 0) {
		t->follow = NULL;
		hs_store_listener_free(f->l);
		goto fail;
	}
	return;
fail:
	free(f);
	hs_log(HS_LOG_ERROR, "tasks", "event follower not started: other nodes' events are not "
				      "delivered", HS_LS("error", err.msg[0] ? err.msg : "out of resources"));
}

void hs_tasks__follow_stop(hs_tasks *t)
{
	pthread_mutex_lock(&t->ev_mu);
	hs_tasks__follow *f = t->follow;
	if (f != NULL)
		atomic_store(&f->stop, true);
	pthread_mutex_unlock(&t->ev_mu);
	if (f == NULL)
		return;
	pthread_join(f->thr, NULL);
	hs_store_listener_free(f->l);
	pthread_mutex_lock(&t->ev_mu);
	t->follow = NULL;
	pthread_mutex_unlock(&t->ev_mu);
	free(f);
}
