/* Many harnessd nodes on one store: one owner per task (issue 19).
 *
 * A node with a node id (hs_tasks_config.node_id; the PostgreSQL store)
 * advertises itself with a node row and holds a lease per task it owns
 * (store.h, "nodes and task leases"). Only the holder arms the task's
 * timers, runs its recoveries and writes its row; every such write carries
 * the lease's fencing token (hs_tasks__publish / transition.c), so a node
 * that lost the lease (paused, partitioned, slow) has its writes refused
 * and drops the task (hs_tasks__lease_drop). One thread here renews the
 * node row and the held leases (hs_store_lease_renew_node: one walk over
 * them all, in chunks of 1,000) every lease_ms / 3 and takes over leases
 * that expired (their node died or gave them up at shutdown), up to 1,000
 * per statement (hs_store_lease_take_expired; survivors split a dead
 * node's leases), then loads those tasks in one query and re-arms each as
 * a restart would (tasks.c, hs_tasks__rearm_loaded), so an interrupted
 * recovery continues with the same generation: RECOVERY_STARTED is
 * written once per generation because only one node's fenced write can
 * succeed. The node row is renewed only while it is this process's
 * (put_node): a paused node whose id was claimed meanwhile exits.
 *
 * Without a node id (SQLite, the only node) nothing here runs: t->leases is
 * false, hs_tasks__held() is always true and no write is fenced. */
#include "tasks_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static bool terminal(int s)
{
	return s == HS_TASK_COMPLETED || s == HS_TASK_FAILED || s == HS_TASK_CANCELLED;
}

void hs_tasks__lease_drop(hs_tasks *t, task *k, const char *why)
{
	if (k->fence == 0)
		return;
	hs_log(HS_LOG_WARN, "tasks", "task lease lost: another node acts on it now",
	       HS_LS("task_id", k->id), HS_LI("fence", k->fence), HS_LS("reason", why));
	k->fence = 0;
	k->attempt_due = false;
	k->epoch++; /* a recovery step under way here finds it moved on */
	hs_tasks__disarm(t, k);
}

int hs_tasks__elsewhere(hs_tasks *t, const char *task_id, const hs_store_lease_row *holder,
			hs_error *err)
{
	hs_store_lease_row l = *holder;
	if (l.node_id[0] == '\0' && hs_store_lease_get(t->store, task_id, &l, NULL) != HS_OK)
		COPY(l.node_id, "?");
	hs_store_node_row node;
	memset(&node, 0, sizeof(node));
	if (hs_store_node_get(t->store, l.node_id, &node, NULL) != HS_OK)
		node.address[0] = '\0';
	int rc = hs_error_set(err, HS_UNAVAILABLE,
			      "task %s is held by node %s (%s): send the call there, or retry",
			      task_id, l.node_id, node.address[0] ? node.address : "no address");
	/* Machine-readable too: a call flagged HS_RPC_FORWARD goes there by
	 * itself (server/rpc/forward.c); others carry it as trailing metadata. */
	if (node.address[0] != '\0' && node.expires_at_ms > hs_clock_wall_ms())
		hs_error_set_where(err, node.address); /* not a node gone silent */
	return rc;
}

/* Hold row's task here with fence: index it (or refresh the stale copy),
 * then re-arm it from the stored state. */
int hs_tasks__lease_install(hs_tasks *t, const hs_store_task_row *row, int64_t fence,
			    hs_error *err)
{
	/* Indexed with fence 0 (nothing acts on it until it is set below), or
	 * the copy indexed before, refreshed from the row. */
	task *k = hs_tasks__lookup(t, row->task_id);
	if (k == NULL && (k = hs_tasks__insert(t, row, err)) == NULL)
		return HS_INTERNAL;
	pthread_mutex_lock(&k->mu);
	if (hs_tasks__adopt(k, row) != HS_OK) {
		pthread_mutex_unlock(&k->mu);
		return hs_error_set(err, HS_INTERNAL, "task %s: out of memory", row->task_id);
	}
	free(k->resume_external);
	k->resume_external = NULL;
	k->epoch++;
	k->attempt_due = false;
	k->fence = fence;
	hs_tasks__disarm(t, k);
	hs_tasks__rearm_loaded(t, k);
	pthread_mutex_unlock(&k->mu);
	return HS_OK;
}

int hs_tasks__lease_take(hs_tasks *t, const char *task_id, hs_store_lease_row *lease,
			 hs_error *err)
{
	hs_store_lease_row l;
	int64_t now = hs_clock_wall_ms();
	int rc = hs_store_lease_acquire(t->store, task_id, t->node_id, now, now + t->lease_ms, &l,
					err);
	if (rc == HS_CONFLICT) /* who holds it is looked up only if needed */
		memset(&l, 0, sizeof(l));
	if (lease != NULL)
		*lease = l;
	if (rc != HS_OK)
		return rc;
	task *had = hs_tasks__lookup(t, task_id);
	if (had != NULL) {
		pthread_mutex_lock(&had->mu);
		bool held = had->fence == l.fence;
		pthread_mutex_unlock(&had->mu);
		if (held)
			return HS_OK; /* a renewal of what is held here: memory is current */
	}
	hs_store_task_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	rc = hs_store_task_get(t->store, task_id, row, err);
	if (rc == HS_OK) {
		rc = hs_tasks__lease_install(t, row, l.fence, err);
		if (rc == HS_OK && l.fence > 1)
			hs_log(HS_LOG_INFO, "tasks", "task taken over", HS_LS("task_id", task_id),
			       HS_LI("fence", l.fence),
			       HS_LS("state", hs_task_state_name(row->state)));
	}
	free(row);
	return rc; /* HS_NOT_FOUND: the lease is held, for a registration */
}

/* ---- the lease thread ------------------------------------------------------ */

/* Renew the node's row, only while it is this process's (its incarnation
 * is the advertised start time). If another process claimed the id
 * meanwhile (this one was paused, e.g. SIGSTOP or a VM freeze, longer than
 * its lease, and a replacement started with the same --node-id), both
 * would act as one node: the same leases and fences, the same sandboxes.
 * This one is the stale one: it exits at once, touching nothing (no lease
 * given up, no row written, no sandbox stopped), with
 * HS_TASKS_EXIT_NODE_CLAIMED so a supervisor restarts it (and the restart
 * is refused while the other holds the id). */
static void put_node(hs_tasks *t, int64_t now)
{
	hs_store_node_row n;
	memset(&n, 0, sizeof(n));
	pthread_mutex_lock(&t->lease_mu);
	COPY(n.address, t->address);
	n.started_at_ms = t->node_started_ms;
	pthread_mutex_unlock(&t->lease_mu);
	if (n.address[0] == '\0')
		return; /* not advertised yet */
	COPY(n.node_id, t->node_id);
	n.expires_at_ms = now + t->lease_ms;
	n.updated_at_ms = now;
	hs_error e = { 0 };
	int rc = hs_store_node_renew(t->store, &n, &e);
	if (rc == HS_CONFLICT) {
		hs_log(HS_LOG_ERROR, "tasks",
		       "node id claimed by another process while this one was paused: exiting "
		       "at once without touching its tasks, leases or sandboxes",
		       HS_LS("node_id", t->node_id), HS_LS("error", e.msg));
		_exit(HS_TASKS_EXIT_NODE_CLAIMED);
	}
	if (rc != HS_OK)
		hs_log(HS_LOG_WARN, "tasks", "cannot renew the node row", HS_LS("error", e.msg));
}

/* The tasks in memory now (a copy of the pointers: tasks are never freed
 * before the registry). *out malloc'd. */
static size_t snapshot(hs_tasks *t, task ***out)
{
	pthread_mutex_lock(&t->mu);
	size_t n = t->n_all;
	task **v = n ? malloc(n * sizeof(*v)) : NULL;
	if (v != NULL)
		memcpy(v, t->all, n * sizeof(*v));
	pthread_mutex_unlock(&t->mu);
	*out = v;
	return v != NULL ? n : 0;
}

static int by_task_id(const void *key, const void *row)
{
	return strcmp(key, ((const hs_store_lease_row *)row)->task_id);
}

/* Renew every lease held here until `until` in one statement (with until
 * <= now: give them all up), then settle memory against what the store
 * says is still ours: a task held before the statement whose lease is now
 * gone or has another fence is dropped; a finished task's lease is
 * released. Fences are read before the statement, so a lease taken
 * meanwhile (a registration) is not mistaken for a lost one. The store
 * calls run without any task lock (the heartbeat hot path takes them). */
static void renew_held(hs_tasks *t, int64_t until)
{
	hs_store_lease_row *held = NULL;
	size_t n_held = 0;
	hs_error e = { 0 };
	task **v;
	size_t n = snapshot(t, &v);
	int64_t *fences = n ? calloc(n, sizeof(*fences)) : NULL;
	if (n > 0 && fences == NULL)
		n = 0; /* out of memory: renew anyway, settle next round */
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_lock(&v[i]->mu);
		fences[i] = v[i]->fence;
		pthread_mutex_unlock(&v[i]->mu);
	}
	if (hs_store_lease_renew_node(t->store, t->node_id, until, &held, &n_held, &e) != HS_OK) {
		/* Nothing known: keep acting (every write is fenced anyway). */
		hs_log(HS_LOG_WARN, "tasks", "cannot renew the task leases", HS_LS("error", e.msg));
		n = 0;
	}
	for (size_t i = 0; i < n; i++) {
		task *k = v[i];
		int64_t fence = fences[i];
		if (fence == 0)
			continue;
		pthread_mutex_lock(&k->mu);
		bool done = terminal(k->m.state);
		char id[HS_TASK_ID_MAX + 1];
		COPY(id, k->id);
		const hs_store_lease_row *l = n_held ? bsearch(id, held, n_held, sizeof(*held),
							       by_task_id)
						     : NULL;
		if (k->fence != fence || (l != NULL && l->fence == fence && !done)) {
			pthread_mutex_unlock(&k->mu); /* moved meanwhile, or still ours */
			continue;
		}
		if (l == NULL || l->fence != fence) {
			/* Someone else holds it (or held it in between: our copy
			 * is stale either way). */
			hs_tasks__lease_drop(t, k, "the lease changed hands");
			pthread_mutex_unlock(&k->mu);
			continue;
		}
		pthread_mutex_unlock(&k->mu);
		/* Finished (its release after the final event failed): retry it. */
		int rc = hs_store_lease_release(t->store, id, t->node_id, fence, NULL);
		pthread_mutex_lock(&k->mu);
		if (k->fence == fence && rc != HS_UNAVAILABLE && terminal(k->m.state))
			k->fence = 0;
		pthread_mutex_unlock(&k->mu);
	}
	/* Leases the store says are ours whose task is not held here (a
	 * registration in flight, or an install that failed): hold them, so
	 * a renewed lease is never one nobody acts on. A registration in
	 * flight is harmless: no row yet (left alone), or the same task
	 * indexed once (hs_tasks__insert) with the same fence. */
	for (size_t j = 0; j < n_held && until > hs_clock_wall_ms(); j++) {
		task *k = hs_tasks__lookup(t, held[j].task_id);
		bool here = false;
		if (k != NULL) {
			pthread_mutex_lock(&k->mu);
			here = k->fence == held[j].fence;
			pthread_mutex_unlock(&k->mu);
		}
		if (!here)
			(void)hs_tasks__lease_take(t, held[j].task_id, NULL, NULL);
	}
	free(fences);
	free(v);
	free(held);
}

#define TAKEOVER_BATCH HS_STORE_LIST_MAX

static int by_row_id(const void *key, const void *row)
{
	return strcmp(key, ((const hs_store_task_row *)row)->task_id);
}

/* One batch of expired leases taken over (and our own late ones renewed)
 * in one statement, the tasks new here read in one query and installed;
 * how many leases the statement took. */
static size_t take_expired(hs_tasks *t, int64_t now)
{
	hs_store_lease_row *v = NULL;
	hs_store_task_row *rows = NULL;
	const char **ids = NULL;
	size_t n = 0, n_ids = 0, n_rows = 0, taken = 0;
	hs_error e = { 0 };
	if (hs_store_lease_take_expired(t->store, t->node_id, now, now + t->lease_ms,
					TAKEOVER_BATCH, &v, &n, &e) != HS_OK) {
		hs_log(HS_LOG_WARN, "tasks", "cannot take expired task leases over",
		       HS_LS("error", e.msg));
		return 0;
	}
	if (n == 0)
		return 0;
	if ((ids = malloc(n * sizeof(*ids))) == NULL)
		goto done; /* held in the store: renew_held installs them */
	for (size_t i = 0; i < n; i++) {
		/* Our own, held here and late to be renewed: renewed, nothing
		 * to load. */
		task *k = hs_tasks__lookup(t, v[i].task_id);
		bool held = false;
		if (k != NULL) {
			pthread_mutex_lock(&k->mu);
			held = k->fence == v[i].fence;
			pthread_mutex_unlock(&k->mu);
		}
		if (!held)
			ids[n_ids++] = v[i].task_id;
	}
	if (n_ids > 0 && hs_store_task_get_many(t->store, ids, n_ids, &rows, &n_rows, &e) != HS_OK) {
		/* Held in the store without a task here: renew_held takes them
		 * one by one next round. */
		hs_log(HS_LOG_WARN, "tasks", "cannot read the tasks taken over", HS_LS("error", e.msg));
		goto done;
	}
	for (size_t j = 0; j < n_ids; j++) {
		const hs_store_lease_row *l = bsearch(ids[j], v, n, sizeof(*v), by_task_id);
		const hs_store_task_row *row = n_rows ? bsearch(ids[j], rows, n_rows, sizeof(*rows),
								by_row_id)
						      : NULL;
		if (row == NULL) { /* a lease without a task (a registration that failed) */
			(void)hs_store_lease_release(t->store, l->task_id, t->node_id, l->fence, NULL);
			continue;
		}
		if (hs_clock_wall_ms() >= l->expires_at_ms)
			continue; /* expired again before it was installed: maybe another's now */
		hs_error e2 = { 0 };
		if (hs_tasks__lease_install(t, row, l->fence, &e2) != HS_OK) {
			hs_log(HS_LOG_WARN, "tasks", "cannot take a task over",
			       HS_LS("task_id", l->task_id), HS_LS("error", e2.msg));
			continue;
		}
		if (l->fence > 1)
			taken++;
	}
	if (taken > 0)
		hs_log(HS_LOG_INFO, "tasks", "tasks taken over", HS_LI("count", (int64_t)taken),
		       HS_LS("first", ids[0]), HS_LI("leases", (int64_t)n));
done:
	free(rows);
	free(ids);
	free(v);
	return n;
}

static void *lease_main(void *arg)
{
	hs_tasks *t = arg;
	int64_t period = t->lease_ms / 3;
	pthread_mutex_lock(&t->lease_mu);
	while (!t->lease_stop) {
		pthread_mutex_unlock(&t->lease_mu);
		int64_t now = hs_clock_wall_ms();
		put_node(t, now);
		renew_held(t, now + t->lease_ms);
		/* A dead node's tasks, batch after batch until none is left,
		 * for at most a period (then renew first: our own leases must
		 * not lapse meanwhile). A short batch does not mean the end:
		 * another survivor's batch may have held rows locked. */
		int64_t until = hs_clock_mono_ms() + period;
		while (take_expired(t, hs_clock_wall_ms()) > 0 && hs_clock_mono_ms() < until)
			;
		pthread_mutex_lock(&t->lease_mu);
		int64_t wake = hs_clock_mono_ms() + period;
		struct timespec ts = { .tv_sec = wake / 1000, .tv_nsec = (wake % 1000) * 1000000 };
		while (!t->lease_stop && hs_clock_mono_ms() < wake)
			pthread_cond_timedwait(&t->lease_cv, &t->lease_mu, &ts);
	}
	pthread_mutex_unlock(&t->lease_mu);
	return NULL;
}

int hs_tasks__lease_start(hs_tasks *t, hs_error *err)
{
	if (!t->leases)
		return HS_OK;
	if (pthread_create(&t->lease_thr, NULL, lease_main, t) != 0)
		return hs_error_set(err, HS_INTERNAL, "tasks: cannot start the lease thread");
	t->lease_started = true;
	return HS_OK;
}

void hs_tasks__lease_stop(hs_tasks *t)
{
	if (!t->leases)
		return;
	if (t->lease_started) {
		pthread_mutex_lock(&t->lease_mu);
		t->lease_stop = true;
		pthread_cond_broadcast(&t->lease_cv);
		pthread_mutex_unlock(&t->lease_mu);
		pthread_join(t->lease_thr, NULL);
		t->lease_started = false;
	}
	/* Give every lease up (it expires now: a survivor's next scan takes
	 * it over) and leave the node list: the row expires now rather than
	 * going, so its time tells survivors how long ago the node left (its
	 * sandboxes are taken over only after --task-lease-ms more: a restart
	 * meanwhile re-adopts them) and a restart claims the id at once. The
	 * row first, and only while it is this process's: if another process
	 * claimed the id meanwhile, its row and leases are left alone. */
	int64_t now = hs_clock_wall_ms();
	hs_store_node_row n;
	memset(&n, 0, sizeof(n));
	pthread_mutex_lock(&t->lease_mu);
	COPY(n.address, t->address);
	n.started_at_ms = t->node_started_ms;
	pthread_mutex_unlock(&t->lease_mu);
	COPY(n.node_id, t->node_id);
	n.expires_at_ms = now;
	n.updated_at_ms = now;
	if (n.address[0] != '\0') {
		hs_error e = { 0 };
		if (hs_store_node_renew(t->store, &n, &e) == HS_CONFLICT) {
			hs_log(HS_LOG_ERROR, "tasks",
			       "node id claimed by another process: its leases are left alone",
			       HS_LS("node_id", t->node_id));
			return;
		}
		renew_held(t, now);
		return;
	}
	/* Never advertised: the row is the claim's (its start time is not
	 * known here). */
	renew_held(t, now);
	if (hs_store_node_get(t->store, t->node_id, &n, NULL) == HS_OK) {
		n.expires_at_ms = now;
		n.updated_at_ms = now;
		(void)hs_store_node_put(t->store, &n, NULL);
	}
}

int hs_tasks_claim_node(hs_store *store, const char *node_id, const char *address,
			int64_t lease_ms, hs_error *err)
{
	if (node_id == NULL || node_id[0] == '\0' || strlen(node_id) >= HS_STORE_ID_MAX)
		return hs_error_set(err, HS_INVALID, "node id: empty or too long");
	if (lease_ms <= 0)
		return hs_error_set(err, HS_INVALID, "task lease: must be positive");
	hs_store_node_row n, holder;
	memset(&n, 0, sizeof(n));
	COPY(n.node_id, node_id);
	COPY(n.address, address != NULL ? address : "");
	int64_t now = hs_clock_wall_ms();
	n.started_at_ms = now;
	n.expires_at_ms = now + lease_ms;
	n.updated_at_ms = now;
	hs_error e = { 0 };
	int rc = hs_store_node_claim(store, &n, now, &holder, &e);
	if (rc == HS_EXISTS)
		return hs_error_set(err, HS_EXISTS,
				    "node id %s is in use by a live node at %s (its lease runs "
				    "%lld ms more): give each harnessd its own --node-id, or wait",
				    node_id, holder.address[0] ? holder.address : "no address",
				    (long long)(holder.expires_at_ms - now));
	if (rc != HS_OK)
		return hs_error_set(err, rc, "node id %s: %s", node_id, e.msg);
	return HS_OK;
}

int hs_tasks_advertise(hs_tasks *t, const char *address, hs_error *err)
{
	if (!t->leases)
		return HS_OK;
	if (address == NULL || address[0] == '\0' || strlen(address) >= HS_STORE_PATH_MAX)
		return hs_error_set(err, HS_INVALID, "advertise address: empty or too long");
	/* The row first, then the incarnation the lease thread renews it
	 * with (it renews nothing until the address is set). */
	int64_t now = hs_clock_wall_ms();
	hs_store_node_row n;
	memset(&n, 0, sizeof(n));
	COPY(n.node_id, t->node_id);
	COPY(n.address, address);
	n.started_at_ms = now;
	n.expires_at_ms = now + t->lease_ms;
	n.updated_at_ms = now;
	int rc = hs_store_node_put(t->store, &n, err);
	if (rc != HS_OK)
		return rc;
	pthread_mutex_lock(&t->lease_mu);
	COPY(t->address, address);
	t->node_started_ms = now;
	pthread_mutex_unlock(&t->lease_mu);
	return HS_OK;
}

bool hs_tasks_shared(const hs_tasks *t)
{
	return t->leases;
}
