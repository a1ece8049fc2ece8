/* The manager's life: open (identity, instance id, probes, re-adoption of
 * what survived a restart), the reaper thread, close.
 *
 * The reaper waits in poll() on one pidfd per live sandbox process plus an
 * eventfd (a sandbox started, or shutdown), and otherwise until the next
 * TTL expiry (at most reaper_interval_ms): an exiting entrypoint is seen at
 * once, not at the next tick. It only trylocks entries, so it never waits
 * behind an RPC; an entry an RPC holds is looked at again shortly after. */
#include "sandbox_internal.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "curl_once.h"
#include "log.h"
#include "tenancy.h"

#define BUSY_RETRY_MS 50

void hs_sandbox__wake(hs_sandbox_mgr *mgr)
{
	uint64_t one = 1;
	if (mgr->wake_fd >= 0 && write(mgr->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		hs_log(HS_LOG_WARN, "sandbox", "cannot wake the reaper",
		       HS_LS("error", strerror(errno)));
}

static void reap_one(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, int64_t now)
{
	if (e->gone)
		return;
	if (e->row.expires_at_ms > 0 && now >= e->row.expires_at_ms) {
		hs_error derr = { 0 };
		hs_log(HS_LOG_INFO, "sandbox", "ttl expired", HS_LS("sandbox_id", e->rec.id),
		       HS_LI("ttl_seconds", e->row.ttl_seconds));
		if (hs_sandbox__destroy_locked(mgr, e, "ttl expired", 0, &derr) != HS_OK)
			hs_log(HS_LOG_ERROR, "sandbox", "cannot destroy expired sandbox",
			       HS_LS("sandbox_id", e->rec.id), HS_LS("error", derr.msg));
		return;
	}
	if (e->row.state == HS_SANDBOX_RUNNING || e->row.state == HS_SANDBOX_PAUSED)
		hs_sandbox__check_exit(mgr, e, NULL, 0);
}

static void sweep_lost(hs_sandbox_mgr *mgr);

void *hs_sandbox__reaper_main(void *payload)
{
	hs_sandbox_mgr *mgr = payload;
	unsigned interval = mgr->cfg.reaper_interval_ms ? mgr->cfg.reaper_interval_ms : 1000;
	for (;;) {
		/* Take references so entries outlive the unlocked work. */
		pthread_mutex_lock(&mgr->lock);
		if (mgr->stopping) {
			pthread_mutex_unlock(&mgr->lock);
			break;
		}
		if (mgr->node_id[0] != '\0' && mgr->cfg.node_lost_ms > 0 &&
		    hs_clock_mono_ms() >= mgr->next_sweep_ms) {
			pthread_mutex_unlock(&mgr->lock);
			sweep_lost(mgr);
			pthread_mutex_lock(&mgr->lock);
		}
		size_t n = 0;
		for (hs_sandbox__entry *e = mgr->head; e != NULL; e = e->next)
			n++;
		hs_sandbox__entry **v = calloc(n ? n : 1, sizeof(*v));
		struct pollfd *p = calloc(n + 1, sizeof(*p));
		if (v == NULL || p == NULL) {
			pthread_mutex_unlock(&mgr->lock);
			free(v);
			free(p);
			hs_sandbox__sleep_ms(interval);
			continue;
		}
		n = 0;
		for (hs_sandbox__entry *e = mgr->head; e != NULL; e = e->next) {
			e->refs++;
			v[n++] = e;
		}
		pthread_mutex_unlock(&mgr->lock);

		int64_t now = hs_clock_wall_ms();
		int64_t wait = interval;
		size_t np = 1;
		p[0].fd = mgr->wake_fd;
		p[0].events = POLLIN;
		for (size_t i = 0; i < n; i++) {
			hs_sandbox__entry *e = v[i];
			if (pthread_mutex_trylock(&e->lock) != 0) {
				wait = wait < BUSY_RETRY_MS ? wait : BUSY_RETRY_MS;
				continue;
			}
			if (!e->gone && e->row.expires_at_ms > 0) {
				int64_t left = e->row.expires_at_ms - now;
				wait = left < wait ? (left > 0 ? left : 0) : wait;
			}
			bool live = !e->gone && (e->row.state == HS_SANDBOX_RUNNING ||
						 e->row.state == HS_SANDBOX_PAUSED);
			if (live && e->rec.pidfd >= 0) {
				p[np].fd = fcntl(e->rec.pidfd, F_DUPFD_CLOEXEC, 3);
				p[np].events = POLLIN;
				if (p[np].fd >= 0)
					np++;
			} else if (live) {
				wait = wait < 200 ? wait : 200; /* no pidfd: look again soon */
			}
			pthread_mutex_unlock(&e->lock);
		}
		int r;
		while ((r = poll(p, np, (int)wait)) < 0 && errno == EINTR)
			;
		if (r > 0 && (p[0].revents & POLLIN)) {
			uint64_t drained;
			if (read(mgr->wake_fd, &drained, sizeof(drained)) < 0 && errno != EAGAIN)
				hs_log(HS_LOG_WARN, "sandbox", "reaper wake-up read failed",
				       HS_LS("error", strerror(errno)));
		}
		for (size_t i = 1; i < np; i++)
			close(p[i].fd);
		free(p);
		now = hs_clock_wall_ms();
		for (size_t i = 0; i < n; i++) {
			if (pthread_mutex_trylock(&v[i]->lock) == 0) {
				reap_one(mgr, v[i], now);
				pthread_mutex_unlock(&v[i]->lock);
			}
		}
		pthread_mutex_lock(&mgr->lock);
		for (size_t i = 0; i < n; i++)
			hs_sandbox__unref_locked(mgr, v[i]);
		pthread_mutex_unlock(&mgr->lock);
		free(v);
	}
	return NULL;
}

static bool taken_mark(const hs_store_sandbox_row *row, const char *node_id)
{
	return node_id[0] != '\0' && row->state == HS_SANDBOX_FAILED && row->pid == 0 &&
	       strcmp(row->node_id, node_id) == 0 && strncmp(row->failure_reason, "node ", 5) == 0 &&
	       strstr(row->failure_reason + 5, " lost") != NULL;
}

/* Load one non-destroyed row into the registry, adopting or failing it.
 * taken: a lost node's row, FAILED already (hs_sandbox__take_lost): its
 * process, cgroup and files were on that node's host, so nothing is
 * adopted and its runtime paths become this node's (nothing there: a
 * Destroy removes nothing of another sandbox). */
static int load_row(hs_sandbox_mgr *mgr, const hs_store_sandbox_row *row, bool taken,
		    hs_error *err)
{
	const hs_sandbox__driver *drv = hs_sandbox__driver_by_name(row->driver);
	hs_sandbox__entry *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	pthread_mutex_init(&e->lock, NULL);
	e->refs = 1;
	e->row = *row;
	atomic_store_explicit(&e->metric_state, row->state, memory_order_relaxed);
	e->drv = drv ? drv : &hs_sandbox__bwrap_driver;
	hs_sandbox__rec *r = &e->rec;
	r->pidfd = -1;
	hs_sandbox__path(r->id, sizeof(r->id), NULL, "id", "%s", row->sandbox_id);
	if (taken) {
		int rc = hs_sandbox__path(r->runtime_dir, sizeof(r->runtime_dir), err,
					  "runtime dir", "%s/%s", mgr->cfg.runtime_root, r->id);
		if (rc == HS_OK)
			rc = hs_sandbox__path(r->log_path, sizeof(r->log_path), err, "log path",
					      "%s/sandbox.log", r->runtime_dir);
		if (rc == HS_OK)
			rc = hs_sandbox__path(e->row.runtime_dir, sizeof(e->row.runtime_dir), err,
					      "runtime dir", "%s", r->runtime_dir);
		if (rc == HS_OK)
			rc = hs_sandbox__path(e->row.log_path, sizeof(e->row.log_path), err,
					      "log path", "%s", r->log_path);
		if (rc != HS_OK) {
			pthread_mutex_destroy(&e->lock);
			free(e);
			return rc;
		}
	} else {
		snprintf(r->runtime_dir, sizeof(r->runtime_dir), "%s", row->runtime_dir);
		snprintf(r->log_path, sizeof(r->log_path), "%s", row->log_path);
	}
	snprintf(r->task_id, sizeof(r->task_id), "%s", row->task_id);
	r->vcpu_count = (unsigned)row->vcpu_count;
	r->mem_size_mib = (unsigned)row->mem_size_mib;
	hs_sandbox__rec_from_config_json(r, row->config_json, NULL);
	/* The row says so too ("node N lost", pid 0, FAILED: hs_store_sandbox_
	 * take_lost), so a restart of this node still knows it never ran here. */
	e->taken_lost = taken || taken_mark(row, mgr->node_id);
	if (!e->taken_lost)
		e->drv->adopt(&mgr->cfg, r);
	if (!taken && (row->state == HS_SANDBOX_RUNNING || row->state == HS_SANDBOX_PAUSED)) {
		pid_t pid = (pid_t)row->pid;
		int pidfd = drv != NULL && hs_sandbox__proc_alive(pid, row->pid_start_time)
				    ? hs_sandbox__pidfd_open(pid)
				    : -1;
		/* Alive with the recorded start time, checked again once the
		 * pidfd pins the pid: pid reuse cannot fool it. */
		if (pidfd >= 0 && hs_sandbox__proc_alive(pid, row->pid_start_time)) {
			r->pid = pid;
			r->pid_start_time = row->pid_start_time;
			r->pidfd = pidfd;
			r->is_child = true; /* poll falls back to liveness on ECHILD */
			hs_log(HS_LOG_INFO, "sandbox", "re-adopted after restart",
			       HS_LS("sandbox_id", r->id), HS_LI("pid", r->pid),
			       HS_LS("state", hs_sandbox_state_name(row->state)));
		} else {
			if (pidfd >= 0)
				close(pidfd);
			e->drv->stop(&mgr->cfg, r, NULL); /* leftovers only: no pid */
			hs_sandbox__set_state(mgr, e, HS_SANDBOX_FAILED, "lost after restart", NULL);
		}
	}
	if (e->gone) { /* fenced: another node took it meanwhile (logged) */
		pthread_mutex_lock(&mgr->lock);
		hs_sandbox__unref_locked(mgr, e);
		pthread_mutex_unlock(&mgr->lock);
		return HS_OK;
	}
	pthread_mutex_lock(&mgr->lock);
	e->next = mgr->head;
	mgr->head = e;
	pthread_mutex_unlock(&mgr->lock);
	return HS_OK;
}

#define TAKE_BATCH 100

int hs_sandbox__take_lost(hs_sandbox_mgr *mgr, const char *sandbox_id, int64_t lost_ms,
			  size_t *n_out, hs_error *err)
{
	size_t taken = 0;
	int rc = HS_OK;
	if (mgr->node_id[0] == '\0')
		goto done;
	for (;;) {
		hs_store_sandbox_row *rows = NULL;
		size_t n = 0;
		int64_t now = hs_clock_wall_ms();
		hs_error terr = { 0 };
		int trc = hs_store_sandbox_take_lost(mgr->store, mgr->node_id, sandbox_id,
						     mgr->runtime_root, now, now - lost_ms,
						     HS_SANDBOX_FAILED, HS_SANDBOX_DESTROYED,
						     TAKE_BATCH, &rows, &n, &terr);
		if (trc != HS_OK) {
			if (rc == HS_OK)
				rc = hs_error_set(err, trc, "%s", terr.msg);
			break;
		}
		/* The rows are ours now whatever happens to one entry: load
		 * every one, answer the first failure. */
		for (size_t i = 0; i < n; i++) {
			hs_log(HS_LOG_WARN, "sandbox", "taken over from a lost node",
			       HS_LS("sandbox_id", rows[i].sandbox_id),
			       HS_LS("reason", rows[i].failure_reason));
			hs_error lerr = { 0 };
			int lrc = load_row(mgr, &rows[i], true, &lerr);
			if (lrc == HS_OK) {
				taken++;
				continue;
			}
			hs_log(HS_LOG_ERROR, "sandbox",
			       "cannot load a sandbox taken from a lost node",
			       HS_LS("sandbox_id", rows[i].sandbox_id), HS_LS("error", lerr.msg));
			if (rc == HS_OK)
				rc = hs_error_set(err, lrc, "%s", lerr.msg);
		}
		free(rows);
		if (n < TAKE_BATCH)
			break;
	}
done:
	if (n_out != NULL)
		*n_out = taken;
	return rc;
}

/* Start a taken-over bwrap sandbox again here (entry locked). */
static int relaunch(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, hs_sandbox__entry *e,
		    hs_error *err)
{
	hs_sandbox__rec *r = &e->rec;
	int rc = HS_OK;
	/* The spec was checked against the lost node's limits: this node's
	 * may be lower. */
	if (r->vcpu_count > mgr->cfg.max_vcpu)
		return hs_error_set(err, HS_LIMIT,
				    "sandbox %s: vcpu_count %u exceeds this node's limit of %u", r->id,
				    r->vcpu_count, mgr->cfg.max_vcpu);
	if (r->mem_size_mib > mgr->cfg.max_mem_mib)
		return hs_error_set(err, HS_LIMIT,
				    "sandbox %s: mem_size_mib %u exceeds this node's limit of %u",
				    r->id, r->mem_size_mib, mgr->cfg.max_mem_mib);
	if (r->workspace_name[0] != '\0') {
		/* Beneath this node's root, without links; made if the restore
		 * left nothing there. */
		int fd = -1;
		char *name = NULL;
		if ((rc = hs_tenancy_open_workspace(mgr->cfg.tenancy, &caller->who, r->task_id,
						    r->workspace_name, HS_WORKSPACE_CREATE, &fd,
						    &name, err)) != HS_OK)
			return rc;
		close(fd);
		rc = hs_sandbox__path(r->workspace, sizeof(r->workspace), err, "workspace", "%s/%s",
				      hs_tenancy_workspace_root(mgr->cfg.tenancy), name);
		free(name);
		if (rc != HS_OK)
			return rc;
	}
	if ((rc = hs_sandbox__mkdirs(r->runtime_dir, 0750, err)) != HS_OK)
		return rc;
	hs_error derr = { 0 };
	rc = e->drv->start(&mgr->cfg, r, caller->timeout_ms, &derr);
	hs_sandbox__rec_to_config_json(r, e->row.config_json, sizeof(e->row.config_json), NULL);
	if (rc != HS_OK) {
		hs_sandbox__proc_forget(r);
		char why[HS_ERROR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", derr.msg);
		hs_sandbox__set_state(mgr, e, HS_SANDBOX_FAILED, why, NULL);
		return hs_error_set(err, rc, "sandbox %s: cannot start it again here: %s", r->id,
				    why);
	}
	e->taken_lost = false;
	e->row.exit_code = 0;
	e->row.started_at_ms = hs_clock_wall_ms();
	hs_log(HS_LOG_INFO, "sandbox", "started again on this node", HS_LS("sandbox_id", r->id),
	       HS_LS("node_id", mgr->node_id), HS_LI("pid", r->pid));
	return hs_sandbox__set_state(mgr, e, HS_SANDBOX_RUNNING, NULL, err);
}

int hs_sandbox_recover_lost(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
			    bool *done, hs_sandbox_info *out, hs_error *err)
{
	*done = false;
	if (mgr->node_id[0] == '\0')
		return HS_OK;
	if (caller == NULL || caller->who.user_id == NULL || caller->who.user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "no caller identity");
	int rc = hs_id_check_name("sandbox_id", id, err);
	if (rc != HS_OK)
		return rc;
	hs_store_sandbox_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	bool theirs = hs_store_sandbox_get(mgr->store, id, row, NULL) == HS_OK &&
		      hs_principal_may(&caller->who, row->owner) &&
		      row->state != HS_SANDBOX_DESTROYED && strcmp(row->node_id, mgr->node_id) != 0;
	free(row);
	/* Its node lost for as long as the reaper waits (node_lost_ms past
	 * its row's expiry): taken here now. Before that, the usual path
	 * answers UNAVAILABLE naming the node and the attempt is retried. */
	if (theirs && (rc = hs_sandbox__take_lost(mgr, id, mgr->cfg.node_lost_ms, NULL, err)) !=
			      HS_OK)
		return rc;
	hs_sandbox__entry *e = NULL;
	hs_error aerr = { 0 };
	if (hs_sandbox__acquire(mgr, caller, id, "RecoverSandbox", HS_NEED(HS_SANDBOX_FAILED), &e,
				&aerr) != HS_OK)
		return HS_OK; /* not here, or not failed: the usual path answers */
	if (!e->taken_lost) {
		hs_sandbox__release(mgr, e);
		return HS_OK;
	}
	if (e->drv != &hs_sandbox__bwrap_driver)
		rc = hs_error_set(err, HS_CONFLICT,
				  "sandbox %s (%s) cannot come back on node %s: its VM and "
				  "snapshot files were on the lost node's host (%s)",
				  id, e->row.driver, mgr->node_id, e->row.failure_reason);
	else if ((rc = relaunch(mgr, caller, e, err)) == HS_OK) {
		*done = true;
		if (out != NULL)
			rc = hs_sandbox__info_from_row(&e->row, out, err);
	}
	hs_sandbox__release(mgr, e);
	return rc;
}

/* The other half of the fence: this node stalled past its lease (SIGSTOP,
 * a database failover) and another node took some of its sandboxes; every
 * registry entry whose row names another node is stopped and dropped here
 * (hs_sandbox__fenced), even if it never writes its row again. */
static void fence_registry(hs_sandbox_mgr *mgr)
{
	pthread_mutex_lock(&mgr->lock);
	size_t n = 0;
	for (hs_sandbox__entry *e = mgr->head; e != NULL; e = e->next)
		n++;
	hs_sandbox__entry **v = calloc(n ? n : 1, sizeof(*v));
	if (v == NULL) {
		pthread_mutex_unlock(&mgr->lock);
		return;
	}
	n = 0;
	for (hs_sandbox__entry *e = mgr->head; e != NULL; e = e->next) {
		e->refs++;
		v[n++] = e;
	}
	pthread_mutex_unlock(&mgr->lock);
	hs_store_sandbox_row *row = malloc(sizeof(*row));
	for (size_t i = 0; row != NULL && i < n; i++) {
		hs_sandbox__entry *e = v[i];
		if (pthread_mutex_trylock(&e->lock) != 0)
			continue; /* an RPC holds it: its own write is fenced */
		if (!e->gone && hs_store_sandbox_get(mgr->store, e->rec.id, row, NULL) == HS_OK &&
		    strcmp(row->node_id, mgr->node_id) != 0)
			hs_sandbox__fenced(mgr, e, NULL);
		pthread_mutex_unlock(&e->lock);
	}
	free(row);
	pthread_mutex_lock(&mgr->lock);
	for (size_t i = 0; i < n; i++)
		hs_sandbox__unref_locked(mgr, v[i]);
	pthread_mutex_unlock(&mgr->lock);
	free(v);
}

/* The reaper's look for lost nodes, every third of node_lost_ms (at most
 * every 5 s). */
static void sweep_lost(hs_sandbox_mgr *mgr)
{
	int64_t period = mgr->cfg.node_lost_ms / 3;
	mgr->next_sweep_ms = hs_clock_mono_ms() + (period < 5000 ? period : 5000);
	hs_error e = { 0 };
	if (hs_sandbox__take_lost(mgr, NULL, mgr->cfg.node_lost_ms, NULL, &e) != HS_OK)
		hs_log(HS_LOG_WARN, "sandbox", "cannot take over a lost node's sandboxes",
		       HS_LS("error", e.msg));
	fence_registry(mgr);
}

int hs_sandbox_mgr_new(hs_sandbox_mgr **out, const hs_sandbox_config *cfg, hs_store *store,
		       hs_error *err)
{
	int rc = HS_OK;
	hs_store_sandbox_row *rows = NULL;
	if (store == NULL)
		return hs_error_set(err, HS_INVALID, "sandbox manager needs a store");
	if (cfg->tenancy == NULL)
		return hs_error_set(err, HS_INVALID, "sandbox manager needs the tenancy");
	if (cfg->runtime_root == NULL || cfg->runtime_root[0] != '/')
		return hs_error_set(err, HS_INVALID, "sandbox runtime root must be absolute");
	if (cfg->rootfs_dir != NULL && cfg->rootfs_dir[0] != '\0' && cfg->rootfs_dir[0] != '/')
		return hs_error_set(err, HS_INVALID, "sandbox-rootfs must be an absolute path");
	if (cfg->default_driver != NULL && strcmp(cfg->default_driver, "auto") != 0 &&
	    hs_sandbox__driver_by_name(cfg->default_driver) == NULL)
		return hs_error_set(err, HS_INVALID, "sandbox driver: unknown \"%s\"",
				    cfg->default_driver);
	if (cfg->node_id != NULL && strlen(cfg->node_id) >= HS_STORE_ID_MAX)
		return hs_error_set(err, HS_INVALID, "node id: longer than %d bytes",
				    HS_STORE_ID_MAX - 1);
	hs_curl_global_init(NULL);
	hs_sandbox_mgr *mgr = calloc(1, sizeof(*mgr));
	if (mgr == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	mgr->cfg = *cfg;
	memset(&mgr->cfg.host, 0, sizeof(mgr->cfg.host));
	snprintf(mgr->runtime_root, sizeof(mgr->runtime_root), "%s", cfg->runtime_root);
	mgr->cfg.runtime_root = mgr->runtime_root;
	snprintf(mgr->rootfs_dir, sizeof(mgr->rootfs_dir), "%s",
		 cfg->rootfs_dir ? cfg->rootfs_dir : "");
	mgr->cfg.rootfs_dir = mgr->rootfs_dir;
	snprintf(mgr->node_id, sizeof(mgr->node_id), "%s", cfg->node_id ? cfg->node_id : "");
	mgr->cfg.node_id = mgr->node_id;
	mgr->store = store;
	mgr->wake_fd = -1;
	pthread_mutex_init(&mgr->lock, NULL);
	if ((rc = hs_sandbox__mkdirs(cfg->runtime_root, 0750, err)) != HS_OK ||
	    (rc = hs_sandbox__instance_id(mgr->runtime_root, mgr->cfg.host.instance_id, err)) !=
		    HS_OK)
		goto fail;
	hs_error perr = { 0 };
	hs_sandbox_host h;
	if (hs_sandbox__identity(&mgr->cfg, &h, &perr) == HS_OK) {
		snprintf(h.instance_id, sizeof(h.instance_id), "%s", mgr->cfg.host.instance_id);
		mgr->cfg.host = h;
	} else {
		snprintf(mgr->identity_error, sizeof(mgr->identity_error), "%s", perr.msg);
	}
	hs_error_clear(&perr);
	if (hs_sandbox_driver_probe(&mgr->cfg, "firecracker", &perr) != HS_OK)
		snprintf(mgr->fc_unusable, sizeof(mgr->fc_unusable), "%s", perr.msg);
	hs_error_clear(&perr);
	if (hs_sandbox_driver_probe(&mgr->cfg, "bwrap", &perr) != HS_OK)
		snprintf(mgr->bwrap_unusable, sizeof(mgr->bwrap_unusable), "%s", perr.msg);
	if ((mgr->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "eventfd: %s", strerror(errno));
		goto fail;
	}
	/* A sandbox's init serves at most 64 commands at once (sandbox_init.c). */
	unsigned per_sandbox = cfg->exec_per_sandbox == 0 || cfg->exec_per_sandbox > 64
				       ? 64
				       : cfg->exec_per_sandbox;
	hs_sandbox__hub_limits lim = { cfg->log_streams_per_user, per_sandbox, cfg->exec_per_user,
				       cfg->streams_max, cfg->stream_rate };
	if ((rc = hs_sandbox__hub_new(&mgr->hub, &lim, err)) != HS_OK)
		goto fail;
	/* A shared store's rows of no node (made by one harnessd before
	 * migration 8): the first node to start takes them (one conditional
	 * update) and loads them below like its own: on the host that ran
	 * them their processes are re-adopted, elsewhere they are FAILED
	 * "lost after restart" (pid + start time never match there). */
	size_t unowned = 0;
	if (mgr->node_id[0] != '\0' &&
	    (rc = hs_store_sandbox_adopt_unowned(store, mgr->node_id, &unowned, err)) != HS_OK)
		goto fail;
	if (unowned > 0)
		hs_log(HS_LOG_INFO, "sandbox", "adopted sandboxes of no node",
		       HS_LI("sandboxes", (int64_t)unowned), HS_LS("node_id", mgr->node_id));
	char after[HS_STORE_ID_MAX] = "";
	int64_t after_ms = 0;
	for (;;) {
		size_t n = 0;
		hs_store_sandbox_filter f = HS_STORE_SANDBOX_FILTER_INIT;
		f.after_id = after[0] ? after : NULL;
		f.after_created_at_ms = after_ms;
		f.limit = HS_STORE_LIST_MAX;
		f.node_id = mgr->node_id; /* other nodes' sandboxes are theirs to adopt */
		if ((rc = hs_store_sandbox_list(store, &f, &rows, &n, err)) != HS_OK)
			goto fail;
		for (size_t i = 0; i < n; i++) {
			if (rows[i].state != HS_SANDBOX_DESTROYED &&
			    (rc = load_row(mgr, &rows[i], false, err)) != HS_OK)
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
	if (pthread_create(&mgr->reaper, NULL, hs_sandbox__reaper_main, mgr) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "cannot start the sandbox reaper thread");
		goto fail;
	}
	*out = mgr;
	return HS_OK;
fail:
	free(rows);
	hs_sandbox__hub_free(mgr->hub);
	while (mgr->head != NULL)
		hs_sandbox__unlink_locked(mgr, mgr->head);
	if (mgr->wake_fd >= 0)
		close(mgr->wake_fd);
	pthread_mutex_destroy(&mgr->lock);
	free(mgr);
	return rc;
}

void hs_sandbox_mgr_free(hs_sandbox_mgr *mgr)
{
	if (mgr == NULL)
		return;
	if (mgr->metrics != NULL) /* no scrape reads mgr past this */
		hs_metrics_remove(mgr->metrics, hs_sandbox__metrics_collect, mgr);
	pthread_mutex_lock(&mgr->lock);
	mgr->stopping = true;
	pthread_mutex_unlock(&mgr->lock);
	hs_sandbox__wake(mgr);
	pthread_join(mgr->reaper, NULL);
	hs_sandbox__hub_free(mgr->hub); /* ends every stream; kills exec'd commands */
	mgr->hub = NULL;
	while (mgr->head != NULL)
		hs_sandbox__unlink_locked(mgr, mgr->head);
	close(mgr->wake_fd);
	pthread_mutex_destroy(&mgr->lock);
	free(mgr);
}

int hs_sandbox_mgr_probe(hs_sandbox_mgr *mgr, hs_error *err)
{
	return hs_sandbox_driver_probe(&mgr->cfg,
				       hs_sandbox_driver_resolve(&mgr->cfg, mgr->cfg.default_driver),
				       err);
}

int hs_sandbox_mgr_identity(hs_sandbox_mgr *mgr, hs_sandbox_host *out, hs_error *err)
{
	if (mgr->cfg.host.uid == 0)
		return hs_error_set(err, HS_UNAVAILABLE, "%s",
				    mgr->identity_error[0] ? mgr->identity_error : "no sandbox identity");
	*out = mgr->cfg.host;
	return HS_OK;
}
