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
 * - Restart: hs_sandbox_mgr_new loads every non-destroyed row. A RUNNING or
 *   PAUSED row whose pid is alive with the recorded /proc starttime is
 *   adopted (pid reuse cannot fool it); any other becomes FAILED "lost after
 *   restart", its leftovers (socket, jail, cgroup) removed. Nothing is
 *   forgotten.
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
#include "curl_once.h"
#include "ids.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fc_api.h"
#include "log.h"

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

static void entry_unref_locked(hs_sandbox_mgr *mgr, hs_sandbox__entry *e)
{
	(void)mgr;
	if (--e->refs > 0)
		return;
	pthread_mutex_destroy(&e->lock);
	hs_sandbox__rec_dispose(&e->rec);
	free(e);
}

static void unlink_entry_locked(hs_sandbox_mgr *mgr, hs_sandbox__entry *e)
{
	for (hs_sandbox__entry **p = &mgr->head; *p != NULL; p = &(*p)->next) {
		if (*p == e) {
			*p = e->next;
			entry_unref_locked(mgr, e); /* the registry's reference */
			return;
		}
	}
}

int hs_sandbox__acquire(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
			const char *op, unsigned need, hs_sandbox__entry **out, hs_error *err)
{
	if (caller == NULL || caller->who.user_id == NULL || caller->who.user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "no caller identity");
	if (id == NULL || id[0] == '\0')
		return hs_error_set(err, HS_INVALID, "sandbox_id: required");
	if (!hs_id_is_name(id))
		return hs_error_set(err, HS_NOT_FOUND, "sandbox %.64s not found", id);
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
		if (rc == HS_OK && caller_sees(caller, row->owner))
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
	entry_unref_locked(mgr, e);
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
	e->row.pid = e->rec.pid;
	e->row.pid_start_time = e->rec.pid_start_time;
	snprintf(e->row.failure_reason, sizeof(e->row.failure_reason), "%s", reason ? reason : "");
	if (old != (int)state)
		hs_log(HS_LOG_INFO, "sandbox", "state changed", HS_LS("sandbox_id", e->rec.id),
		       HS_LS("from", hs_sandbox_state_name(old)),
		       HS_LS("to", hs_sandbox_state_name(state)), HS_LI("pid", e->rec.pid),
		       HS_LS("reason", reason ? reason : ""));
	hs_error serr = { 0 };
	int rc = hs_store_sandbox_update(mgr->store, &e->row, &serr);
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
	e->rec.pid = 0;
	e->rec.pid_start_time = 0;
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

static int check_limits(const hs_sandbox_config *cfg, const hs_sandbox_spec *spec,
			unsigned *vcpu, unsigned *mem, hs_error *err)
{
	*vcpu = spec->vcpu_count ? spec->vcpu_count : 1;
	*mem = spec->mem_size_mib ? spec->mem_size_mib : 256;
	if (*vcpu > 32)
		return hs_error_set(err, HS_INVALID, "vcpu_count: %u is outside [1, 32]", *vcpu);
	if (*vcpu > 1 && *vcpu % 2 != 0)
		return hs_error_set(err, HS_INVALID, "vcpu_count: %u must be 1 or even", *vcpu);
	if (*vcpu > cfg->max_vcpu)
		return hs_error_set(err, HS_LIMIT, "vcpu_count: %u exceeds the limit of %u", *vcpu,
				    cfg->max_vcpu);
	if (*mem < 128)
		return hs_error_set(err, HS_INVALID, "mem_size_mib: %u is below 128", *mem);
	if (*mem > cfg->max_mem_mib)
		return hs_error_set(err, HS_LIMIT, "mem_size_mib: %u exceeds the limit of %u", *mem,
				    cfg->max_mem_mib);
	if (spec->ttl_seconds < 0)
		return hs_error_set(err, HS_INVALID, "ttl_seconds: must not be negative");
	if (cfg->max_ttl_seconds > 0 && spec->ttl_seconds > cfg->max_ttl_seconds)
		return hs_error_set(err, HS_LIMIT, "ttl_seconds: %lld exceeds the limit of %lld",
				    (long long)spec->ttl_seconds, (long long)cfg->max_ttl_seconds);
	return HS_OK;
}

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
	if (spec->sandbox_id != NULL && spec->sandbox_id[0] != '\0') {
		if ((rc = hs_id_check_name("sandbox_id", spec->sandbox_id, err)) != HS_OK)
			return rc;
		snprintf(id, sizeof(id), "%s", spec->sandbox_id);
	} else {
		hs_sandbox__gen_id("sb-", id, sizeof(id));
	}
	/* No task means none (the proto's "empty = none"), and then no workspace
	 * unless one is named. */
	const char *task = spec->task_id && spec->task_id[0] ? spec->task_id : "";
	if (task[0] != '\0' && (rc = hs_id_check_task("task_id", task, err)) != HS_OK)
		return rc;
	const char *dname = hs_sandbox_driver_resolve(&mgr->cfg, spec->driver);
	const hs_sandbox__driver *drv = hs_sandbox__driver_by_name(dname);
	if (drv == NULL)
		return hs_error_set(err, HS_INVALID, "driver: unknown \"%s\" (firecracker, bwrap)",
				    spec->driver ? spec->driver : "");
	const char *why = drv == &hs_sandbox__fc_driver ? mgr->fc_unusable : mgr->bwrap_unusable;
	if (why[0] != '\0')
		return hs_error_set(err, HS_UNAVAILABLE, "driver %s cannot run here: %s", drv->name,
				    why);
	if ((rc = hs_sandbox__check_driver_fields(drv, spec, err)) != HS_OK ||
	    (rc = check_limits(&mgr->cfg, spec, &vcpu, &mem, err)) != HS_OK)
		return rc;
	const char *ws = task;
	if (spec->workspace != NULL && spec->workspace[0] != '\0') {
		if (!hs_sandbox__valid_rel_path(spec->workspace))
			return hs_error_set(err, HS_INVALID,
					    "workspace: a relative path below the workspace root, without '..'");
		ws = spec->workspace;
	}

	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	pthread_mutex_init(&e->lock, NULL);
	e->refs = 1;
	e->drv = drv;
	hs_sandbox__rec *r = &e->rec;
	snprintf(r->id, sizeof(r->id), "%s", id);
	if ((rc = hs_sandbox__path(r->runtime_dir, sizeof(r->runtime_dir), err, "runtime dir",
				   "%s/%s", mgr->cfg.runtime_root, id)) != HS_OK ||
	    (rc = hs_sandbox__path(r->log_path, sizeof(r->log_path), err, "log path",
				   "%s/sandbox.log", r->runtime_dir)) != HS_OK ||
	    (ws[0] != '\0' &&
	     (rc = hs_sandbox__path(r->workspace, sizeof(r->workspace), err, "workspace", "%s/%s",
				    mgr->cfg.workspace_root, ws)) != HS_OK))
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
	row->vcpu_count = (int32_t)vcpu;
	row->mem_size_mib = mem;
	row->ttl_seconds = spec->ttl_seconds;
	row->created_at_ms = hs_clock_wall_ms();
	row->expires_at_ms = spec->ttl_seconds ? row->created_at_ms + spec->ttl_seconds * 1000 : 0;
	row->exit_code = -1;
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
	if (!inserted) {
		pthread_mutex_destroy(&e->lock);
		hs_sandbox__rec_dispose(&e->rec);
		free(e);
	}
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
	if (rc != HS_OK) {
		e->rec.pid = 0;
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
static int destroy_locked(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, const char *why,
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
	unlink_entry_locked(mgr, e);
	pthread_mutex_unlock(&mgr->lock);
	return rc;
}

int hs_sandbox_destroy(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		       hs_sandbox_info *out, hs_error *err)
{
	return hs_sandbox_destroy_grace(mgr, caller, id, 0, out, err);
}

int hs_sandbox_destroy_grace(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller,
			     const char *id, unsigned grace_ms, hs_sandbox_info *out,
			     hs_error *err)
{
	hs_sandbox__entry *e = NULL;
	int rc = hs_sandbox__acquire(mgr, caller, id, "DestroySandbox", 0, &e, err);
	if (rc != HS_OK)
		return rc;
	rc = destroy_locked(mgr, e, NULL, grace_ms, err);
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
	if (rc != HS_CONFLICT) /* CONFLICT = destroyed: its row is still there */
		return hs_error_set(err, rc, "%s", aerr.msg);
	hs_store_sandbox_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	rc = hs_store_sandbox_get(mgr->store, id, row, err);
	if (rc == HS_OK)
		rc = hs_sandbox__info_from_row(row, out, err);
	free(row);
	return rc;
}

/* ---- list ------------------------------------------------------------------ */

/* Page tokens are keyset cursors: hex of "<filter hash>.<created_at_ms>.<id>"
 * for the last row of the page. The hash (FNV-1a of state, task and owner
 * filters) binds a token to the filters it was issued for; hex keeps the
 * token opaque and free of characters that need escaping anywhere. */
#define TOKEN_MAX (2 * (8 + 1 + 20 + 1 + HS_SANDBOX_ID_MAX) + 1)

static uint32_t fnv1a(uint32_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static uint32_t filter_hash(const hs_store_sandbox_filter *f, int state)
{
	char st[16];
	int n = snprintf(st, sizeof(st), "%d", state);
	uint32_t h = fnv1a(2166136261u, st, (size_t)n + 1);
	h = fnv1a(h, f->task_id ? f->task_id : "", f->task_id ? strlen(f->task_id) + 1 : 0);
	h = fnv1a(h, "|", 1);
	return fnv1a(h, f->owner ? f->owner : "", f->owner ? strlen(f->owner) + 1 : 0);
}

static char *token_encode(uint32_t hash, int64_t created_ms, const char *id)
{
	char raw[8 + 1 + 20 + 1 + HS_SANDBOX_ID_MAX + 1];
	int n = snprintf(raw, sizeof(raw), "%08x.%lld.%s", (unsigned)hash, (long long)created_ms,
			 id);
	if (n < 0 || (size_t)n >= sizeof(raw))
		return NULL;
	char *tok = malloc(2 * (size_t)n + 1);
	if (tok == NULL)
		return NULL;
	for (int i = 0; i < n; i++)
		snprintf(tok + 2 * i, 3, "%02x", (unsigned char)raw[i]);
	return tok;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Into id[HS_SANDBOX_ID_MAX + 1] and *created_ms; HS_INVALID unless tok is
 * a token issued for exactly these filters. */
static int token_decode(const char *tok, uint32_t hash, int64_t *created_ms, char *id,
			hs_error *err)
{
	char raw[TOKEN_MAX / 2 + 1];
	size_t len = strlen(tok);
	if (len == 0 || len % 2 != 0 || len >= TOKEN_MAX)
		goto bad;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = hexval(tok[2 * i]), lo = hexval(tok[2 * i + 1]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			goto bad;
		raw[i] = (char)(hi << 4 | lo);
	}
	raw[len / 2] = '\0';
	/* "<8 hex>.<digits>.<id>" */
	char *dot1 = strchr(raw, '.');
	char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot1 == NULL || dot2 == NULL || dot1 - raw != 8 || dot2 == dot1 + 1 || dot2 - dot1 > 20)
		goto bad;
	uint32_t h = 0;
	for (char *p = raw; p < dot1; p++) {
		int v = hexval(*p);
		if (v < 0)
			goto bad;
		h = h << 4 | (uint32_t)v;
	}
	int64_t ms = 0;
	for (char *p = dot1 + 1; p < dot2; p++) {
		if (*p < '0' || *p > '9' || ms > (INT64_MAX - 9) / 10)
			goto bad;
		ms = ms * 10 + (*p - '0');
	}
	if (!hs_id_is_name(dot2 + 1))
		goto bad;
	if (h != hash)
		return hs_error_set(err, HS_INVALID,
				    "page_token: issued for other filters (state, task_id, owner)");
	*created_ms = ms;
	snprintf(id, HS_SANDBOX_ID_MAX + 1, "%s", dot2 + 1);
	return HS_OK;
bad:
	return hs_error_set(err, HS_INVALID, "page_token: not a token from this server");
}

int hs_sandbox_list(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller,
		    const hs_sandbox_filter *filter, hs_sandbox_info **out, size_t *n_out,
		    char **next_page_token, hs_error *err)
{
	hs_sandbox_filter none = { 0 };
	hs_store_sandbox_row *rows = NULL;
	hs_sandbox_info *infos = NULL;
	size_t n = 0, k = 0;
	int rc;
	if (caller == NULL || caller->who.user_id == NULL || caller->who.user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "no caller identity");
	if (filter == NULL)
		filter = &none;
	if (filter->state < 0 || filter->state > HS_SANDBOX_DESTROYED)
		return hs_error_set(err, HS_INVALID, "state: unknown value %d", filter->state);
	hs_store_sandbox_filter f = HS_STORE_SANDBOX_FILTER_INIT;
	f.owner = caller->who.user_id;
	if (caller->who.is_admin)
		f.owner = filter->owner && filter->owner[0] ? filter->owner : NULL;
	f.task_id = filter->task_id && filter->task_id[0] ? filter->task_id : NULL;
	f.state = filter->state ? filter->state : -1;
	uint32_t hash = filter_hash(&f, filter->state);
	char after[HS_SANDBOX_ID_MAX + 1];
	if (filter->page_token != NULL && filter->page_token[0] != '\0') {
		if ((rc = token_decode(filter->page_token, hash, &f.after_created_at_ms, after,
				       err)) != HS_OK)
			return rc;
		f.after_id = after;
	}
	f.limit = filter->page_size ? filter->page_size : 100;
	if (f.limit > HS_STORE_LIST_MAX)
		f.limit = HS_STORE_LIST_MAX;
	if ((rc = hs_store_sandbox_list(mgr->store, &f, &rows, &n, err)) != HS_OK)
		return rc;
	infos = calloc(n ? n : 1, sizeof(*infos));
	if (infos == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		if (filter->state == 0 && rows[i].state == HS_SANDBOX_DESTROYED)
			continue;
		if ((rc = hs_sandbox__info_from_row(&rows[i], &infos[k], err)) != HS_OK)
			goto done;
		k++;
	}
	char *token = NULL;
	if (n == f.limit && n > 0) {
		token = token_encode(hash, rows[n - 1].created_at_ms, rows[n - 1].sandbox_id);
		if (token == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
			goto done;
		}
	}
	*out = infos;
	*n_out = k;
	*next_page_token = token;
	infos = NULL;
done:
	hs_sandbox_info_array_free(infos, k);
	free(rows);
	return rc;
}

/* ---- reaper ----------------------------------------------------------------- */

static void reap_one(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, int64_t now)
{
	if (e->gone)
		return;
	if (e->row.expires_at_ms > 0 && now >= e->row.expires_at_ms) {
		hs_error derr = { 0 };
		hs_log(HS_LOG_INFO, "sandbox", "ttl expired", HS_LS("sandbox_id", e->rec.id),
		       HS_LI("ttl_seconds", e->row.ttl_seconds));
		if (destroy_locked(mgr, e, "ttl expired", 0, &derr) != HS_OK)
			hs_log(HS_LOG_ERROR, "sandbox", "cannot destroy expired sandbox",
			       HS_LS("sandbox_id", e->rec.id), HS_LS("error", derr.msg));
		return;
	}
	if (e->row.state == HS_SANDBOX_RUNNING || e->row.state == HS_SANDBOX_PAUSED)
		hs_sandbox__check_exit(mgr, e, NULL, 0);
}

static void *reaper_main(void *payload)
{
	hs_sandbox_mgr *mgr = payload;
	pthread_mutex_lock(&mgr->lock);
	while (!mgr->stopping) {
		unsigned ms = mgr->cfg.reaper_interval_ms ? mgr->cfg.reaper_interval_ms : 200;
		struct timespec ts = hs_clock_deadline(CLOCK_MONOTONIC, ms);
		pthread_cond_timedwait(&mgr->wake, &mgr->lock, &ts);
		if (mgr->stopping)
			break;
		/* Take references so entries outlive the unlocked walk. */
		size_t n = 0;
		for (hs_sandbox__entry *e = mgr->head; e != NULL; e = e->next)
			n++;
		hs_sandbox__entry **v = calloc(n ? n : 1, sizeof(*v));
		if (v == NULL)
			continue;
		n = 0;
		for (hs_sandbox__entry *e = mgr->head; e != NULL; e = e->next) {
			e->refs++;
			v[n++] = e;
		}
		pthread_mutex_unlock(&mgr->lock);
		int64_t now = hs_clock_wall_ms();
		for (size_t i = 0; i < n; i++) {
			if (pthread_mutex_trylock(&v[i]->lock) == 0) {
				reap_one(mgr, v[i], now);
				pthread_mutex_unlock(&v[i]->lock);
			}
		}
		pthread_mutex_lock(&mgr->lock);
		for (size_t i = 0; i < n; i++)
			entry_unref_locked(mgr, v[i]);
		free(v);
	}
	pthread_mutex_unlock(&mgr->lock);
	return NULL;
}

/* ---- lifecycle -------------------------------------------------------------- */

/* Load one non-destroyed row into the registry, adopting or failing it. */
static int load_row(hs_sandbox_mgr *mgr, const hs_store_sandbox_row *row, hs_error *err)
{
	const hs_sandbox__driver *drv = hs_sandbox__driver_by_name(row->driver);
	hs_sandbox__entry *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	pthread_mutex_init(&e->lock, NULL);
	e->refs = 1;
	e->row = *row;
	e->drv = drv ? drv : &hs_sandbox__bwrap_driver;
	hs_sandbox__rec *r = &e->rec;
	hs_sandbox__path(r->id, sizeof(r->id), NULL, "id", "%s", row->sandbox_id);
	snprintf(r->runtime_dir, sizeof(r->runtime_dir), "%s", row->runtime_dir);
	snprintf(r->log_path, sizeof(r->log_path), "%s", row->log_path);
	snprintf(r->task_id, sizeof(r->task_id), "%s", row->task_id);
	r->vcpu_count = (unsigned)row->vcpu_count;
	r->mem_size_mib = (unsigned)row->mem_size_mib;
	hs_sandbox__rec_from_config_json(r, row->config_json, NULL);
	e->drv->adopt(&mgr->cfg, r);
	if (row->state == HS_SANDBOX_RUNNING || row->state == HS_SANDBOX_PAUSED) {
		if (drv != NULL && hs_sandbox__proc_alive((pid_t)row->pid, row->pid_start_time)) {
			r->pid = (pid_t)row->pid;
			r->pid_start_time = row->pid_start_time;
			r->is_child = true; /* poll falls back to liveness on ECHILD */
			hs_log(HS_LOG_INFO, "sandbox", "re-adopted after restart",
			       HS_LS("sandbox_id", r->id), HS_LI("pid", r->pid));
		} else {
			e->drv->stop(&mgr->cfg, r, NULL); /* leftovers only: no pid */
			hs_sandbox__set_state(mgr, e, HS_SANDBOX_FAILED, "lost after restart", NULL);
		}
	}
	e->next = mgr->head;
	mgr->head = e;
	return HS_OK;
}

int hs_sandbox_mgr_new(hs_sandbox_mgr **out, const hs_sandbox_config *cfg, hs_store *store,
		       hs_error *err)
{
	int rc = HS_OK;
	hs_store_sandbox_row *rows = NULL;
	if (store == NULL)
		return hs_error_set(err, HS_INVALID, "sandbox manager needs a store");
	if (cfg->runtime_root == NULL || cfg->runtime_root[0] != '/')
		return hs_error_set(err, HS_INVALID, "sandbox runtime root must be absolute");
	if (cfg->workspace_root == NULL || cfg->workspace_root[0] != '/')
		return hs_error_set(err, HS_INVALID, "workspace root must be absolute");
	if (cfg->default_driver != NULL && strcmp(cfg->default_driver, "auto") != 0 &&
	    hs_sandbox__driver_by_name(cfg->default_driver) == NULL)
		return hs_error_set(err, HS_INVALID, "sandbox driver: unknown \"%s\"",
				    cfg->default_driver);
	hs_curl_global_init(NULL);
	hs_sandbox_mgr *mgr = calloc(1, sizeof(*mgr));
	if (mgr == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	mgr->cfg = *cfg;
	snprintf(mgr->runtime_root, sizeof(mgr->runtime_root), "%s", cfg->runtime_root);
	mgr->cfg.runtime_root = mgr->runtime_root;
	mgr->store = store;
	hs_error perr = { 0 };
	if (hs_sandbox_driver_probe(cfg, "firecracker", &perr) != HS_OK)
		snprintf(mgr->fc_unusable, sizeof(mgr->fc_unusable), "%s", perr.msg);
	hs_error_clear(&perr);
	if (hs_sandbox_driver_probe(cfg, "bwrap", &perr) != HS_OK)
		snprintf(mgr->bwrap_unusable, sizeof(mgr->bwrap_unusable), "%s", perr.msg);
	pthread_mutex_init(&mgr->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&mgr->wake, &ca);
	pthread_condattr_destroy(&ca);
	if ((rc = hs_sandbox__mkdirs(cfg->runtime_root, 0750, err)) != HS_OK)
		goto fail;
	char after[HS_STORE_ID_MAX] = "";
	int64_t after_ms = 0;
	for (;;) {
		size_t n = 0;
		hs_store_sandbox_filter f = HS_STORE_SANDBOX_FILTER_INIT;
		f.after_id = after[0] ? after : NULL;
		f.after_created_at_ms = after_ms;
		f.limit = HS_STORE_LIST_MAX;
		if ((rc = hs_store_sandbox_list(store, &f, &rows, &n, err)) != HS_OK)
			goto fail;
		for (size_t i = 0; i < n; i++) {
			if (rows[i].state != HS_SANDBOX_DESTROYED &&
			    (rc = load_row(mgr, &rows[i], err)) != HS_OK)
				goto fail;
		}
		if (n > 0) {
			snprintf(after, sizeof(after), "%s", rows[n - 1].sandbox_id);
			after_ms = rows[n - 1].created_at_ms;
		}
		free(rows);
		rows = NULL;
		if (n < f.limit)
			break;
	}
	if (pthread_create(&mgr->reaper, NULL, reaper_main, mgr) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "cannot start the sandbox reaper thread");
		goto fail;
	}
	*out = mgr;
	return HS_OK;
fail:
	free(rows);
	while (mgr->head != NULL)
		unlink_entry_locked(mgr, mgr->head);
	pthread_cond_destroy(&mgr->wake);
	pthread_mutex_destroy(&mgr->lock);
	free(mgr);
	return rc;
}

void hs_sandbox_mgr_free(hs_sandbox_mgr *mgr)
{
	if (mgr == NULL)
		return;
	pthread_mutex_lock(&mgr->lock);
	mgr->stopping = true;
	pthread_cond_broadcast(&mgr->wake);
	pthread_mutex_unlock(&mgr->lock);
	pthread_join(mgr->reaper, NULL);
	while (mgr->head != NULL)
		unlink_entry_locked(mgr, mgr->head);
	pthread_cond_destroy(&mgr->wake);
	pthread_mutex_destroy(&mgr->lock);
	free(mgr);
}
