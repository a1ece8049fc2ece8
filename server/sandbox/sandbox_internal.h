/* Internal to server/sandbox: the manager's registry entry and the helpers
 * manager.c, snapshots.c and record.c share. */
#ifndef HS_SANDBOX_INTERNAL_H
#define HS_SANDBOX_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "driver.h"
#include "store.h"
#include "metrics.h"

typedef struct hs_sandbox__entry {
	pthread_mutex_t lock; /* held for a whole operation, driver calls included */
	hs_sandbox__rec rec;  /* driver view; guarded by lock */
	hs_store_sandbox_row row; /* persisted view; guarded by lock */
	const hs_sandbox__driver *drv;
	int refs;  /* guarded by mgr->lock */
	bool gone; /* destroyed and unlinked; guarded by lock */
	bool taken_lost; /* taken over from a lost node, not run here since
			  * (hs_sandbox_recover_lost); guarded by lock */
	_Atomic int metric_state; /* row.state for the scrape (metrics.c) */
	struct hs_sandbox__entry *next;
} hs_sandbox__entry;

typedef struct hs_sandbox__hub hs_sandbox__hub;

struct hs_sandbox_mgr {
	hs_sandbox_config cfg;
	hs_sandbox__hub *hub;        /* log and exec streams (hub.c) */
	char runtime_root[PATH_MAX]; /* cfg.runtime_root points here */
	char rootfs_dir[PATH_MAX];   /* cfg.rootfs_dir points here */
	char node_id[HS_STORE_ID_MAX]; /* cfg.node_id points here; "" = single node */
	/* Driver probes at open, by name: "" = usable, else why not. */
	char fc_unusable[HS_ERROR_MSG_MAX];
	char bwrap_unusable[HS_ERROR_MSG_MAX];
	char identity_error[HS_ERROR_MSG_MAX]; /* why cfg.host is empty */
	hs_store *store;
	pthread_mutex_t lock; /* the registry list, refs, creation */
	hs_sandbox__entry *head;
	pthread_t reaper;
	int wake_fd;   /* eventfd: a sandbox started, or we are stopping */
	bool stopping; /* guarded by lock */
	int64_t next_sweep_ms; /* reaper only: next look for lost nodes (monotonic) */
	hs_metrics *metrics; /* borrowed; NULL: not registered (metrics.c) */
};

void hs_sandbox__metrics_collect(hs_metrics_out *out, void *payload);

/* Wake the reaper (a new process to watch, or shutdown). */
void hs_sandbox__wake(hs_sandbox_mgr *mgr);
/* lifecycle.c's reaper thread. */
void *hs_sandbox__reaper_main(void *payload);
/* Take over lost nodes' sandboxes (lifecycle.c; hs_store_sandbox_take_lost
 * with this node's id): sandbox_id NULL = every row of every node lost for
 * lost_ms, else that row only. Each row taken joins the registry FAILED
 * ("node N lost"), with this node's runtime paths, and is served here
 * (Get, List, Destroy). *n_out (NULL allowed) = how many were taken. */
int hs_sandbox__take_lost(hs_sandbox_mgr *mgr, const char *sandbox_id, int64_t lost_ms,
			  size_t *n_out, hs_error *err);
/* Destroy with the entry locked (manager.c); why = the failure_reason. */
int hs_sandbox__destroy_locked(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, const char *why,
			       unsigned grace_ms, hs_error *err);
/* Drop a reference with mgr->lock held; frees the entry at zero. */
void hs_sandbox__unref_locked(hs_sandbox_mgr *mgr, hs_sandbox__entry *e);
/* Unlink from the registry with mgr->lock held. */
void hs_sandbox__unlink_locked(hs_sandbox_mgr *mgr, hs_sandbox__entry *e);

/* Find a live sandbox the caller may see, take a reference and its lock.
 * `op` and `need` build the HS_CONFLICT message: need is a bit set of
 * (1 << state); 0 = any live state. A DESTROYED sandbox (only in the store)
 * is HS_CONFLICT naming DESTROYED; another user's is HS_NOT_FOUND; a live
 * one another node runs (shared store) is HS_UNAVAILABLE naming that node
 * and its advertised address. */
int hs_sandbox__acquire(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
			const char *op, unsigned need, hs_sandbox__entry **out, hs_error *err);
/* Entry locked; its row names another node (took it over while this one
 * stalled past its lease): kill this host's process for it, remove its
 * runtime dir, mark it gone, unlink it and log. err (NULL allowed) gets
 * the holder's HS_UNAVAILABLE (SANDBOX_ELSEWHERE), which is returned. */
int hs_sandbox__fenced(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, hs_error *err);
/* Unlock and drop the reference. */
void hs_sandbox__release(hs_sandbox_mgr *mgr, hs_sandbox__entry *e);
/* Move to state (row + log) and persist the row. If another node holds
 * the row now (the store's fence: HS_ABORTED), the entry is dropped as by
 * hs_sandbox__fenced and the answer is that node's HS_UNAVAILABLE. */
int hs_sandbox__set_state(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, hs_sandbox_state state,
			  const char *reason, hs_error *err);
/* After a failed driver call (why = its message) or from the reaper (NULL):
 * if the process is gone (waiting up to wait_ms for it), record STOPPED or
 * FAILED and clean up what the driver left. */
void hs_sandbox__check_exit(hs_sandbox_mgr *mgr, hs_sandbox__entry *e, const char *why,
			    unsigned wait_ms);

#define HS_NEED(s) (1u << (s))

/* record.c: conversions between spec, rec, row (config_json/labels_json)
 * and info. */
int hs_sandbox__rec_from_spec(hs_sandbox__rec *rec, const hs_sandbox_spec *spec,
			      const hs_sandbox_config *cfg, hs_error *err);
int hs_sandbox__rec_to_config_json(const hs_sandbox__rec *rec, char *out, size_t cap,
				   hs_error *err);
int hs_sandbox__rec_from_config_json(hs_sandbox__rec *rec, const char *json, hs_error *err);
void hs_sandbox__rec_dispose(hs_sandbox__rec *rec);
int hs_sandbox__labels_to_json(const hs_label *labels, size_t n, char *out, size_t cap,
			       hs_error *err);
int hs_sandbox__info_from_row(const hs_store_sandbox_row *row, hs_sandbox_info *out,
			      hs_error *err);
int hs_sandbox__snapshot_from_row(const hs_store_snapshot_row *row,
				  hs_sandbox_snapshot_info *out, hs_error *err);
/* spec.c: every CreateSandbox rule; *vcpu and *mem get the values with
 * defaults applied. */
int hs_sandbox__check_spec(const hs_sandbox_config *cfg, const hs_sandbox_spec *spec,
			   unsigned *vcpu, unsigned *mem, hs_error *err);
/* An argv (entrypoint, ExecSandbox's command): at most 256 elements of at
 * most 4096 bytes, the first not empty; HS_INVALID naming field[i]. */
int hs_sandbox__check_argv(const char *field, const char *const *argv, size_t n, hs_error *err);
/* The environment rule: names [A-Za-z_][A-Za-z0-9_]*, loader and shell
 * start-up variables (LD_*, BASH_ENV, ENV, ...) refused by name. */
int hs_sandbox__check_env(const hs_label *env, size_t n, hs_error *err);
/* HS_INVALID naming a spec field the chosen driver does not understand. */
int hs_sandbox__check_driver_fields(const hs_sandbox__driver *drv, const hs_sandbox_spec *spec,
				    hs_error *err);

#endif
