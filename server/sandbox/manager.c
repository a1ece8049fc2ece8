/* The sandbox manager: registry, state machine, limits, ownership, TTLs and
 * re-adoption after a restart.
 *
 * Design and invariants
 * - The store is the record: every state change is written to its row
 *   (hs_store_sandbox_update) before the call returns. Destroyed sandboxes
 *   keep their row (state DESTROYED) and leave the in-memory registry; the
 *   registry holds exactly the non-destroyed sandboxes, which is also what
 *   the per-user quota counts (a STOPPED/FAILED sandbox still holds its
 *   runtime dir and snapshots until destroyed).
 * - Locks: mgr->lock guards the registry list, the reference counts and
 *   creation (quota check + id uniqueness + insert are one step); it is never
 *   held during driver work. Each entry has its own lock, held for a whole
 *   operation including slow driver calls, so a slow call on one sandbox
 *   never blocks another. Order: entry lock, then mgr->lock (never the
 *   reverse while waiting).
 * - Calls block in the calling thread (a worker-pool thread of the RPC layer,
 *   never a completion-queue thread). The reaper thread polls running
 *   sandboxes for exits and destroys expired ones; it only trylocks entries,
 *   so it never waits behind an RPC.
 * - Ownership: a caller sees only sandboxes whose owner is its user id
 *   (admins see all). Another user's sandbox is reported NOT_FOUND, exactly
 *   like a missing one, so ids do not leak existence.
 * - Tasks and workspaces belong to tenancy (server/tenancy): a sandbox's
 *   task id is claimed like any other use of a task id, and its workspace is
 *   resolved beneath the workspace root without following links, at create
 *   (so a bad one fails early) and again at every start (what is bound is
 *   what was checked). Another user's task or workspace is HS_NOT_FOUND.
 * - Restart: hs_sandbox_mgr_new (lifecycle.c) loads every non-destroyed row.
 *   A RUNNING or PAUSED row whose pid is alive with the recorded /proc
 *   starttime is adopted (pid reuse cannot fool it); any other becomes FAILED
 *   "lost after restart", its leftovers (socket, jail, cgroup) removed.
 *   Nothing is forgotten.
 * - StartSandbox answers RUNNING only once the driver saw the entrypoint (or
 *   the VM) start; an exit is seen at once by the reaper (pidfds,
 *   lifecycle.c) and recorded as STOPPED with its exit code, or FAILED.
 *
 * State machine (enforced by need masks in every operation):
 *
 *              start               pause
 *   CREATED ----------> RUNNING ---------> PAUSED
 *      |                 ^  |   <---------   |  \
 *      |                 |  |     resume     |   snapshot (stays PAUSED)
 *      |   restore(resume)  | exit / crash   | crash
 *      |                 |  v                v
 *      |               STOPPED / FAILED <----+
 *      |                 |   restore (resume=false) -> PAUSED
 *      |                 |
 *      +-----------------+---- destroy (from any state) ----> DESTROYED
 *
 * A failed start leaves FAILED (with the reason); restore is accepted from
 * RUNNING, PAUSED, STOPPED and FAILED. */
#include "sandbox_internal.h"
#include "stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "ids.h"
#include "log.h"
#include "tenancy.h"

static const char *op_names_need(unsigned need, char *buf, size_t cap)
{
	buf[0] = '\0';
	for (int s = HS_SANDBOX_CREATED; s <= HS_SANDBOX_DESTROYED; s++) {
		if (need & HS_NEED(s)) {
			size_t n = strlen(buf);
			snprintf(buf + n, cap - n, "%s%s", n ? " or " : "", hs_sandbox_state_name(s));
		}
	}
	return buf;
}

static bool caller_sees(const hs_sandbox_caller *caller, const char *owner)
{
	return hs_principal_may(&caller->who, owner);
}

/* row is live on another node (its process is on that host): name the node
 * and the address it advertises, so the caller can send the call there;
 * the address also goes in err->where (reason SANDBOX_ELSEWHERE), from
 * where the rpc core forwards a unary call to that node. */
static int elsewhere(hs_sandbox_mgr *mgr, const hs_store_sandbox_row *row, hs_error *err)
{
	hs_store_node_row node;
	memset(&node, 0, sizeof(node));
	if (hs_store_node_get(mgr->store, row->node_id, &node, NULL) != HS_OK)
		node.address[0] = '\0';
	int rc = hs_error_set(err, HS_UNAVAILABLE, "sandbox %s runs on node %s (%s): send the call there",
			      row->sandbox_id, row->node_id[0] ? row->node_id : "(none)",
			      node.address[0] ? node.address : "no address");
	hs_error_set_reason(err, "SANDBOX_ELSEWHERE");
	/* A node whose row expired is not there to answer: no forward (it
	 * would hold a worker until the connect fails or the deadline). */
	if (node.expires_at_ms > hs_clock_wall_ms())
		hs_error_set_where(err, node.address);
	return rc;
}

static void entry_free(hs_sandbox__entry *e)
{
	pthread_mutex_destroy(&e->lock);
	if (e->rec.pidfd >= 0)
		close(e->rec.pidfd);
	hs_sandbox__rec_dispose(&e->rec);
	free(e);
}

void hs_sandbox__unref_locked(hs_sandbox_mgr *mgr, hs_sandbox__entry *e)
{
	(void)mgr;
	if (--e->refs == 0)
		entry_free(e);
}

void hs_sandbox__unlink_locked(hs_sandbox_mgr *mgr, hs_sandbox__entry *e)
{
	for (hs_sandbox__entry **p = &mgr->head; *p != NULL; p = &(*p)->next) {
		if (*p == e) {
			*p = e->next;
			hs_sandbox__unref_locked(mgr, e); /* the registry's reference */
			return;
		}
	}
}

int hs_sandbox__fenced(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, hs_error *err)
{
	hs_error derr = { 0 };
	if (e->drv->stop(&mgr->cfg, &e->rec, &derr) != HS_OK)
		hs_log(HS_LOG_ERROR, "sandbox", "cannot stop a sandbox another node took",
		       HS_LS("sandbox_id", e->rec.id), HS_LS("error", derr.msg));
	hs_sandbox__proc_forget(&e->rec);
	hs_error_clear(&derr);
	if (e->rec.runtime_dir[0] != '\0' &&
	    hs_sandbox__rmtree(e->rec.runtime_dir, &derr) != HS_OK)
		hs_log(HS_LOG_WARN, "sandbox", "cannot remove a taken sandbox's runtime dir",
		       HS_LS("sandbox_id", e->rec.id), HS_LS("error", derr.msg));
	bool was_gone = e->gone;
	e->gone = true;
	pthread_mutex_lock(&mgr->lock);
	hs_sandbox__unlink_locked(mgr, e);
	pthread_mutex_unlock(&mgr->lock);
	hs_sandbox__hub_sandbox_down(mgr->hub, e->rec.id);
	hs_store_sandbox_row *row = calloc(1, sizeof(*row));
	int rc;
	if (row != NULL && hs_store_sandbox_get(mgr->store, e->rec.id, row, NULL) == HS_OK &&
	    strcmp(row->node_id, mgr->node_id) != 0)
		rc = elsewhere(mgr, row, err);
	else
		rc = hs_error_set(err, HS_UNAVAILABLE, "sandbox %s: taken by another node",
				  e->rec.id);
	if (!was_gone)
		hs_log(HS_LOG_WARN, "sandbox", "taken by another node: stopped and dropped here",
		       HS_LS("sandbox_id", e->rec.id), HS_LS("node_id", mgr->node_id),
		       HS_LS("holder", row != NULL ? row->node_id : ""));
	free(row);
	return rc;
}

int hs_sandbox__acquire(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
			const char *op, unsigned need, hs_sandbox__entry **out, hs_error *err)
{
	if (caller == NULL || caller->who.user_id == NULL || caller->who.user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "no caller identity");
	int vrc = hs_id_check_name("sandbox_id", id, err);
	if (vrc != HS_OK)
		return vrc;
	hs_sandbox__entry *e = NULL;
	pthread_mutex_lock(&mgr->lock);
	for (e = mgr->head; e != NULL; e = e->next) {
		if (strcmp(e->rec.id, id) == 0)
			break;
	}
	if (e != NULL)
		e->refs++;
	pthread_mutex_unlock(&mgr->lock);
	if (e != NULL) {
		pthread_mutex_lock(&e->lock);
		if (e->gone || !caller_sees(caller, e->row.owner)) {
			bool hidden = !caller_sees(caller, e->row.owner);
			hs_sandbox__release(mgr, e);
			if (hidden)
				return hs_error_set(err, HS_NOT_FOUND, "sandbox %s not found", id);
			e = NULL; /* destroyed meanwhile: answer from the store */
		}
	}
	if (e == NULL) {
		hs_store_sandbox_row *row = malloc(sizeof(*row));
		if (row == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		int rc = hs_store_sandbox_get(mgr->store, id, row, NULL);
		char want[96];
		if (need == 0)
			snprintf(want, sizeof(want), "a sandbox that is not destroyed");
		else
			op_names_need(need, want, sizeof(want));
		if (rc == HS_OK && caller_sees(caller, row->owner) &&
		    row->state != HS_SANDBOX_DESTROYED && strcmp(row->node_id, mgr->node_id) != 0)
			rc = elsewhere(mgr, row, err);
		else if (rc == HS_OK && caller_sees(caller, row->owner))
			rc = hs_error_set(err, HS_CONFLICT, "sandbox %s is DESTROYED; %s needs %s",
					  id, op, want);
		else if (rc == HS_OK || rc == HS_NOT_FOUND)
			rc = hs_error_set(err, HS_NOT_FOUND, "sandbox %s not found", id);
		else
			rc = hs_error_set(err, rc, "sandbox %s: store unavailable", id);
		free(row);
		return rc;
	}
	if (need != 0 && !(need & HS_NEED(e->row.state))) {
		char want[96];
		int rc = hs_error_set(err, HS_CONFLICT, "sandbox %s is %s; %s needs %s", id,
				      hs_sandbox_state_name(e->row.state), op,
				      op_names_need(need, want, sizeof(want)));
		hs_sandbox__release(mgr, e);
		return rc;
	}
	*out = e;
	return HS_OK;
}

void hs_sandbox__release(hs_sandbox_mgr *mgr, hs_sandbox__entry *e)
{
	pthread_mutex_unlock(&e->lock);
	pthread_mutex_lock(&mgr->lock);
	hs_sandbox__unref_locked(mgr, e);
	pthread_mutex_unlock(&mgr->lock);
}

int hs_sandbox__set_state(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, hs_sandbox_state state,
			  const char *reason, hs_error *err)
{
	int old = e->row.state;
	bool was_down = old == HS_SANDBOX_STOPPED || old == HS_SANDBOX_FAILED ||
			old == HS_SANDBOX_DESTROYED;
	bool is_down = state == HS_SANDBOX_STOPPED || state == HS_SANDBOX_FAILED ||
		       state == HS_SANDBOX_DESTROYED;
	/* stopped_at: the moment it stopped running; kept across FAILED ->
	 * DESTROYED, cleared when it runs again (start, restore). */
	if (!is_down)
		e->row.stopped_at_ms = 0;
	else if (!was_down || e->row.stopped_at_ms == 0)
		e->row.stopped_at_ms = hs_clock_wall_ms();
	e->row.state = state;
	atomic_store_explicit(&e->metric_state, (int)state, memory_order_relaxed);
	e->row.pid = e->rec.pid;
	e->row.pid_start_time = e->rec.pid_start_time;
	snprintf(e->row.failure_reason, sizeof(e->row.failure_reason), "%s", reason ? reason : "");
	if (old != (int)state)
		hs_log(HS_LOG_INFO, "sandbox", "state changed", HS_LS("sandbox_id", e->rec.id),
		       HS_LS("from", hs_sandbox_state_name(old)),
		       HS_LS("to", hs_sandbox_state_name(state)), HS_LI("pid", e->rec.pid),
		       HS_LS("reason", reason ? reason : ""));
	if (state == HS_SANDBOX_RUNNING || state == HS_SANDBOX_PAUSED)
		hs_sandbox__wake(mgr); /* a process to watch */
	else
		hs_sandbox__hub_sandbox_down(mgr->hub, e->rec.id); /* followers read to the end */
	hs_error serr = { 0 };
	int rc = hs_store_sandbox_update(mgr->store, &e->row, &serr);
	if (rc == HS_ABORTED) {
		hs_log(HS_LOG_WARN, "sandbox", "state write fenced: another node holds the sandbox",
		       HS_LS("sandbox_id", e->rec.id), HS_LS("error", serr.msg));
		return hs_sandbox__fenced(mgr, e, err);
	}
	if (rc != HS_OK) {
		hs_log(HS_LOG_ERROR, "sandbox", "cannot persist sandbox state",
		       HS_LS("sandbox_id", e->rec.id), HS_LS("error", serr.msg));
		return hs_error_set(err, rc, "sandbox %s: %s", e->rec.id, serr.msg);
	}
	return HS_OK;
}

/* The process ended: record how, and clean up what the driver left. */
static void record_exit(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, const hs_sandbox__exit *ex,
			const char *why)
{
	char reason[HS_STORE_TEXT_MAX];
	hs_sandbox_state to = HS_SANDBOX_STOPPED;
	hs_sandbox__proc_forget(&e->rec);
	e->drv->stop(&mgr->cfg, &e->rec, NULL);
	e->row.exit_code = -1;
	reason[0] = '\0';
	if (ex->known && !ex->signaled) {
		e->row.exit_code = ex->code;
		if (why != NULL) { /* it died under a call: that call failed */
			to = HS_SANDBOX_FAILED;
			snprintf(reason, sizeof(reason), "exited with code %d: %s", ex->code, why);
		}
	} else if (ex->known) {
		to = HS_SANDBOX_FAILED;
		snprintf(reason, sizeof(reason), "killed by signal %d%s%s", ex->code,
			 why ? ": " : "", why ? why : "");
	} else {
		to = HS_SANDBOX_FAILED;
		snprintf(reason, sizeof(reason), "process exited; status unknown%s%s",
			 why ? ": " : "", why ? why : "");
	}
	hs_sandbox__set_state(mgr, e, to, reason, NULL);
}

void hs_sandbox__check_exit(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, const char *why,
			    unsigned wait_ms)
{
	hs_sandbox__exit ex;
	if (e->rec.pid <= 0) {
		if (e->row.state == HS_SANDBOX_RUNNING || e->row.state == HS_SANDBOX_PAUSED) {
			e->drv->stop(&mgr->cfg, &e->rec, NULL);
			hs_sandbox__set_state(mgr, e, HS_SANDBOX_FAILED, why, NULL);
		}
		return;
	}
	if (wait_ms > 0)
		hs_sandbox__proc_wait(&e->rec, wait_ms, &ex);
	else
		e->drv->poll(&mgr->cfg, &e->rec, &ex);
	if (ex.exited)
		record_exit(mgr, e, &ex, why);
}

/* ---- create -------------------------------------------------------------- */

int hs_sandbox_create(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller,
		      const hs_sandbox_spec *spec, hs_sandbox_info *out, hs_error *err)
{
	int rc;
	unsigned vcpu, mem;
	char id[HS_SANDBOX_ID_MAX + 1];
	hs_sandbox__entry *e = NULL;
	bool locked = false, inserted = false;

	if (caller == NULL || caller->who.user_id == NULL || caller->who.user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "no caller identity");
	if (strlen(caller->who.user_id) >= HS_STORE_ID_MAX)
		return hs_error_set(err, HS_INVALID, "owner id too long");
	if ((rc = hs_sandbox__check_spec(&mgr->cfg, spec, &vcpu, &mem, err)) != HS_OK)
		return rc;
	if (spec->sandbox_id != NULL && spec->sandbox_id[0] != '\0')
		snprintf(id, sizeof(id), "%s", spec->sandbox_id);
	else
		hs_sandbox__gen_id("sb-", id, sizeof(id));
	/* No task means none (the proto's "empty = none"), and then no workspace
	 * unless one is named. */
	const char *task = spec->task_id && spec->task_id[0] ? spec->task_id : "";
	if (spec->driver != NULL && spec->driver[0] != '\0' &&
	    hs_sandbox__driver_by_name(spec->driver) == NULL)
		return hs_error_set(err, HS_INVALID,
				    "driver: must be \"firecracker\", \"bwrap\" or empty, not \"%.32s\"",
				    spec->driver);
	const char *dname = hs_sandbox_driver_resolve(&mgr->cfg, spec->driver);
	const hs_sandbox__driver *drv = hs_sandbox__driver_by_name(dname);
	if (drv == NULL)
		return hs_error_set(err, HS_INVALID, "driver: unknown \"%s\" (firecracker, bwrap)",
				    spec->driver ? spec->driver : "");
	const char *why = drv == &hs_sandbox__fc_driver ? mgr->fc_unusable : mgr->bwrap_unusable;
	if (why[0] != '\0')
		return hs_error_set(err, HS_UNAVAILABLE, "driver %s cannot run here: %s", drv->name,
				    why);
	if ((rc = hs_sandbox__check_driver_fields(drv, spec, err)) != HS_OK)
		return rc;
	/* The task is the caller's (claimed now if nobody holds it); so is the
	 * workspace, resolved (and made) beneath the root without links. */
	if (task[0] != '\0' &&
	    (rc = hs_tenancy_claim_task(mgr->cfg.tenancy, &caller->who, task, err)) != HS_OK)
		return rc;
	char *ws_name = NULL;
	bool want_ws = drv == &hs_sandbox__bwrap_driver &&
		       (task[0] != '\0' || (spec->workspace != NULL && spec->workspace[0] != '\0'));
	if (want_ws) {
		int fd = -1;
		if ((rc = hs_tenancy_open_workspace(mgr->cfg.tenancy, &caller->who, task,
						    spec->workspace, HS_WORKSPACE_CREATE, &fd,
						    &ws_name, err)) != HS_OK)
			return rc;
		close(fd);
	}

	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		free(ws_name);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	pthread_mutex_init(&e->lock, NULL);
	e->refs = 1;
	e->drv = drv;
	hs_sandbox__rec *r = &e->rec;
	r->pidfd = -1;
	snprintf(r->id, sizeof(r->id), "%s", id);
	if ((rc = hs_sandbox__path(r->runtime_dir, sizeof(r->runtime_dir), err, "runtime dir",
				   "%s/%s", mgr->cfg.runtime_root, id)) != HS_OK ||
	    (rc = hs_sandbox__path(r->log_path, sizeof(r->log_path), err, "log path",
				   "%s/sandbox.log", r->runtime_dir)) != HS_OK ||
	    (ws_name != NULL &&
	     ((rc = hs_sandbox__path(r->workspace_name, sizeof(r->workspace_name), err,
				     "workspace", "%s", ws_name)) != HS_OK ||
	      (rc = hs_sandbox__path(r->workspace, sizeof(r->workspace), err, "workspace", "%s/%s",
				     hs_tenancy_workspace_root(mgr->cfg.tenancy), ws_name)) != HS_OK)))
		goto done;
	snprintf(r->task_id, sizeof(r->task_id), "%s", task);
	if ((rc = hs_sandbox__rec_from_spec(r, spec, &mgr->cfg, err)) != HS_OK)
		goto done;
	if (drv != &hs_sandbox__fc_driver) { /* no firecracker defaults on a bwrap record */
		free(r->kernel_image_path);
		free(r->rootfs_path);
		r->kernel_image_path = r->rootfs_path = NULL;
	}
	r->vcpu_count = vcpu;
	r->mem_size_mib = mem;
	if ((rc = drv->validate(&mgr->cfg, r, err)) != HS_OK)
		goto done;

	hs_store_sandbox_row *row = &e->row;
	snprintf(row->sandbox_id, sizeof(row->sandbox_id), "%s", id);
	snprintf(row->owner, sizeof(row->owner), "%s", caller->who.user_id);
	snprintf(row->task_id, sizeof(row->task_id), "%s", task);
	snprintf(row->driver, sizeof(row->driver), "%s", drv->name);
	if ((rc = hs_sandbox__path(row->log_path, sizeof(row->log_path), err, "log path", "%s",
				   r->log_path)) != HS_OK ||
	    (rc = hs_sandbox__path(row->runtime_dir, sizeof(row->runtime_dir), err,
				   "runtime dir", "%s", r->runtime_dir)) != HS_OK)
		goto done;
	row->state = HS_SANDBOX_CREATED;
	atomic_store_explicit(&e->metric_state, HS_SANDBOX_CREATED, memory_order_relaxed);
	row->vcpu_count = (int32_t)vcpu;
	row->mem_size_mib = mem;
	row->ttl_seconds = spec->ttl_seconds;
	row->created_at_ms = hs_clock_wall_ms();
	row->expires_at_ms = spec->ttl_seconds ? row->created_at_ms + spec->ttl_seconds * 1000 : 0;
	row->exit_code = -1;
	snprintf(row->node_id, sizeof(row->node_id), "%s", mgr->node_id);
	if ((rc = hs_sandbox__rec_to_config_json(r, row->config_json, sizeof(row->config_json),
						 err)) != HS_OK ||
	    (rc = hs_sandbox__labels_to_json(spec->labels, spec->labels_len, row->labels_json,
					     sizeof(row->labels_json), err)) != HS_OK)
		goto done;

	pthread_mutex_lock(&mgr->lock);
	locked = true;
	size_t live = 0;
	for (hs_sandbox__entry *x = mgr->head; x != NULL; x = x->next) {
		if (strcmp(x->rec.id, id) == 0) {
			rc = hs_error_set(err, HS_EXISTS, "sandbox %s already exists", id);
			goto done;
		}
		if (strcmp(x->row.owner, caller->who.user_id) == 0)
			live++;
	}
	if (mgr->cfg.max_per_user > 0 && mgr->node_id[0] != '\0') {
		/* Many nodes: the limit is per user, not per node; count every
		 * node's rows (exact here, best effort across racing nodes). */
		int64_t all = 0;
		if ((rc = hs_store_sandbox_count_by_owner(mgr->store, caller->who.user_id,
							  HS_SANDBOX_DESTROYED, &all, err)) != HS_OK)
			goto done;
		if (all > (int64_t)live)
			live = (size_t)all;
	}
	if (mgr->cfg.max_per_user > 0 && live >= mgr->cfg.max_per_user) {
		rc = hs_error_set(err, HS_LIMIT, "user %s has %zu sandboxes; the limit is %u",
				  caller->who.user_id, live, mgr->cfg.max_per_user);
		goto done;
	}
	struct stat st;
	if (stat(r->runtime_dir, &st) == 0) {
		rc = hs_error_set(err, HS_EXISTS, "sandbox %s: runtime dir %s exists", id,
				  r->runtime_dir);
		goto done;
	}
	if ((rc = hs_sandbox__mkdirs(r->runtime_dir, 0750, err)) != HS_OK)
		goto done;
	rc = hs_store_sandbox_insert(mgr->store, row, err);
	if (rc == HS_EXISTS)
		rc = hs_error_set(err, HS_EXISTS, "sandbox %s already exists", id);
	if (rc != HS_OK) {
		hs_sandbox__rmtree(r->runtime_dir, NULL);
		goto done;
	}
	e->next = mgr->head;
	mgr->head = e;
	inserted = true;
	if (out != NULL)
		rc = hs_sandbox__info_from_row(row, out, err);
	hs_log(HS_LOG_INFO, "sandbox", "created", HS_LS("sandbox_id", id),
	       HS_LS("driver", drv->name), HS_LS("owner", caller->who.user_id),
	       HS_LS("task_id", task));
done:
	if (locked)
		pthread_mutex_unlock(&mgr->lock);
	if (!inserted)
		entry_free(e);
	free(ws_name);
	return rc;
}

/* ---- operations on one sandbox -------------------------------------------- */

static int info_out(hs_sandbox__entry *e, hs_sandbox_info *out, hs_error *err)
{
	if (out == NULL)
		return HS_OK;
	int rc = hs_sandbox__info_from_row(&e->row, out, err);
	if (rc == HS_OK && e->rec.pid > 0 && e->rec.api_sock[0] != '\0') {
		char *sock = strdup(e->rec.api_sock);
		if (sock == NULL) {
			hs_sandbox_info_dispose(out);
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		}
		free(out->api_socket_path);
		out->api_socket_path = sock;
	}
	return rc;
}

int hs_sandbox_start(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		     hs_sandbox_info *out, hs_error *err)
{
	hs_sandbox__entry *e = NULL;
	int rc = hs_sandbox__acquire(mgr, caller, id, "StartSandbox", HS_NEED(HS_SANDBOX_CREATED),
				     &e, err);
	if (rc != HS_OK)
		return rc;
	hs_error derr = { 0 };
	rc = e->drv->start(&mgr->cfg, &e->rec, caller->timeout_ms, &derr);
	/* What this run enforces (GetSandbox reports it). */
	hs_sandbox__rec_to_config_json(&e->rec, e->row.config_json, sizeof(e->row.config_json),
				       NULL);
	if (rc != HS_OK) {
		hs_sandbox__proc_forget(&e->rec);
		hs_sandbox__set_state(mgr, e, HS_SANDBOX_FAILED, derr.msg, NULL);
		rc = hs_error_set(err, rc, "%s", derr.msg);
	} else {
		e->row.started_at_ms = hs_clock_wall_ms();
		rc = hs_sandbox__set_state(mgr, e, HS_SANDBOX_RUNNING, NULL, err);
		if (rc == HS_OK)
			rc = info_out(e, out, err);
	}
	hs_sandbox__release(mgr, e);
	return rc;
}

static int pause_resume(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
			bool pause, hs_sandbox_info *out, hs_error *err)
{
	hs_sandbox__entry *e = NULL;
	int rc = hs_sandbox__acquire(mgr, caller, id, pause ? "PauseSandbox" : "ResumeSandbox",
				     HS_NEED(pause ? HS_SANDBOX_RUNNING : HS_SANDBOX_PAUSED), &e,
				     err);
	if (rc != HS_OK)
		return rc;
	hs_error derr = { 0 };
	rc = pause ? e->drv->pause(&mgr->cfg, &e->rec, caller->timeout_ms, &derr)
		   : e->drv->resume(&mgr->cfg, &e->rec, caller->timeout_ms, &derr);
	if (rc != HS_OK) {
		rc = hs_error_set(err, rc, "%s", derr.msg);
		hs_sandbox__check_exit(mgr, e, derr.msg, rc == HS_UNAVAILABLE ? 500 : 0);
	} else {
		rc = hs_sandbox__set_state(mgr, e, pause ? HS_SANDBOX_PAUSED : HS_SANDBOX_RUNNING,
					   NULL, err);
		if (rc == HS_OK)
			rc = info_out(e, out, err);
	}
	hs_sandbox__release(mgr, e);
	return rc;
}

int hs_sandbox_pause(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		     hs_sandbox_info *out, hs_error *err)
{
	return pause_resume(mgr, caller, id, true, out, err);
}

int hs_sandbox_resume(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		      hs_sandbox_info *out, hs_error *err)
{
	return pause_resume(mgr, caller, id, false, out, err);
}

/* Destroy with the entry locked; unlinks it from the registry. grace_ms
 * (0 = the configured one) is what the driver waits between SIGTERM and
 * SIGKILL: drivers read it from the config, so they get a copy. */
int hs_sandbox__destroy_locked(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, const char *why,
			  unsigned grace_ms, hs_error *err)
{
	hs_sandbox_config cfg = mgr->cfg;
	if (grace_ms > 0)
		cfg.stop_grace_ms = grace_ms;
	int rc = e->drv->stop(&cfg, &e->rec, err);
	if (rc != HS_OK)
		return rc;
	if ((rc = hs_sandbox__rmtree(e->rec.runtime_dir, err)) != HS_OK)
		return rc;
	rc = hs_sandbox__set_state(mgr, e, HS_SANDBOX_DESTROYED, why, err);
	e->gone = true;
	pthread_mutex_lock(&mgr->lock);
	hs_sandbox__unlink_locked(mgr, e);
	pthread_mutex_unlock(&mgr->lock);
	return rc;
}

int hs_sandbox_destroy(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		       hs_sandbox_info *out, hs_error *err)
{
	return hs_sandbox_destroy_grace(mgr, caller, id, 0, out, err);
}

int hs_sandbox_destroy_grace(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller,
			     const char *id, int64_t grace_ms, hs_sandbox_info *out,
			     hs_error *err)
{
	hs_sandbox__entry *e = NULL;
	if (grace_ms < 0 || grace_ms > HS_SANDBOX_GRACE_MAX_MS)
		return hs_error_set(err, HS_INVALID, "grace_period_ms: must be 0..%d",
				    HS_SANDBOX_GRACE_MAX_MS);
	int rc = hs_sandbox__acquire(mgr, caller, id, "DestroySandbox", 0, &e, err);
	if (rc != HS_OK)
		return rc;
	rc = hs_sandbox__destroy_locked(mgr, e, NULL, (unsigned)grace_ms, err);
	if (rc == HS_OK)
		rc = info_out(e, out, err);
	hs_sandbox__release(mgr, e);
	return rc;
}

int hs_sandbox_get(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		   hs_sandbox_info *out, hs_error *err)
{
	hs_sandbox__entry *e = NULL;
	hs_error aerr = { 0 };
	int rc = hs_sandbox__acquire(mgr, caller, id, "GetSandbox", 0, &e, &aerr);
	if (rc == HS_OK) {
		rc = info_out(e, out, err);
		hs_sandbox__release(mgr, e);
		return rc;
	}
	if (rc != HS_CONFLICT) { /* CONFLICT = destroyed: its row is still there */
		hs_error_set(err, rc, "%s", aerr.msg);
		hs_error_set_reason(err, aerr.reason);
		hs_error_set_where(err, aerr.where);
		return rc;
	}
	hs_store_sandbox_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	rc = hs_store_sandbox_get(mgr->store, id, row, err);
	if (rc == HS_OK)
		rc = hs_sandbox__info_from_row(row, out, err);
	free(row);
	return rc;
}
