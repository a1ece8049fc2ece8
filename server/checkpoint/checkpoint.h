/* Checkpoints of task workspaces as git commits in one bare shadow repository
 * per task (libgit2, in process). No gRPC and no libgit2 types here: the
 * gRPC adapter (checkpoint_service.c) converts protobuf <-> these calls.
 *
 * What is captured: regular files (content + executable bit) and symlinks of
 * the workspace (as links: never followed), minus what the workspace's
 * .gitignore files ignore. Empty directories are not git's business: they
 * are neither recorded nor removed. Nested repositories (a `.git` anywhere
 * below the workspace, the agent's own repos) are captured as content: their
 * working files are checkpointed like any other file, the `.git` itself is
 * never read, recorded or touched.
 *
 * Ownership: a task's checkpoints belong to the owner of its task id
 * (server/tenancy: the first user to name an id owns it). A caller
 * (hs_principal) may act on its own tasks, an admin on all, harnessd itself
 * (NULL) on all; anyone else's task is HS_NOT_FOUND, as a missing one.
 * Workspaces are "<task_id>[/<dir>]" below the workspace root, owned by
 * their first component's task, opened beneath the root without following
 * links; every read and write inside one stays beneath it.
 *
 * Threading: an hs_ckpt_mgr may be shared by any number of threads. Calls on
 * one task are serialized; calls on different tasks run in parallel. Calls
 * block on disk I/O: never call them from a completion-queue thread.
 *
 * Errors: HS_OK or a negative hs_code with a one-line message in *err.
 * HS_INVALID for bad task ids / checkpoint ids / workspaces (the message names
 * the field), HS_NOT_FOUND for unknown (or someone else's) tasks, checkpoints
 * and workspaces, HS_LIMIT for a quota (the message names it), HS_CONFLICT
 * when the filesystem is in the way, HS_INTERNAL for unexpected libgit2
 * failures. */
#ifndef HS_CHECKPOINT_H
#define HS_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "ids.h"
#include "principal.h"

#define HS_CKPT_TASK_ID_MAX HS_ID_MAX /* the task id rule: common/ids.h */
#define HS_CKPT_ID_MAX 48      /* "ckpt-<step>-<12 hex>" + NUL fits */
#define HS_CKPT_OWNER_MAX 128  /* bytes including NUL */
#define HS_CKPT_PAGE_DEFAULT 50
#define HS_CKPT_PAGE_MAX 1000
#define HS_CKPT_EXTERNAL_STATE_MAX (1024 * 1024) /* hard limit, quotas or not */
#define HS_CKPT_REQUEST_ID_MAX 128               /* bytes of a request_id */

typedef struct hs_tenancy hs_tenancy;

/* Per-user limits (0 = unlimited). Callers with is_admin and harnessd
 * itself (no caller) are exempt. Exceeding one is HS_LIMIT naming it. */
typedef struct hs_ckpt_quota {
	uint64_t checkpoints_per_task; /* checkpoints a task may hold (prune to make room) */
	uint64_t external_state_bytes; /* serialized external_state of one checkpoint */
	uint64_t repo_bytes;           /* a task's shadow repository on disk, checked
					* before each create (one create may go beyond) */
	uint64_t workspace_bytes;      /* bytes of files one checkpoint scans */
	uint64_t workspace_files;      /* files one checkpoint scans */
} hs_ckpt_quota;

typedef struct hs_ckpt_mgr hs_ckpt_mgr;
typedef struct hs_metrics hs_metrics;

#define HS_CKPT_WATCH_WORKSPACES_DEFAULT 32
#define HS_CKPT_WATCH_DIRS_DEFAULT 100000
#define HS_CKPT_WATCH_CHANGES_DEFAULT 100000

/* Change tracking (inotify): while a workspace is in use, the paths that
 * changed since its task's last checkpoint or restore are recorded, and
 * create, verify and restore read only those; whenever that cannot be
 * trusted they read the whole tree (and say why in the log and metrics).
 * Zero values mean the defaults. */
typedef struct hs_ckpt_watch_config {
	bool off;                /* never track: every call walks the whole workspace */
	unsigned max_workspaces; /* workspaces tracked at once (least recently used dropped) */
	unsigned max_dirs;       /* watches (directories) per workspace; beyond: not tracked */
	unsigned max_changes;    /* changed paths pending per workspace; beyond: a full walk */
} hs_ckpt_watch_config;

typedef struct hs_ckpt_config {
	const char *repos_dir;      /* shadow repos: <repos_dir>/<task_id>.git; created if missing */
	const char *workspace_root; /* must exist; every workspace lives strictly below it
				     * (may be NULL with a tenancy: its root is used) */
	hs_tenancy *tenancy;        /* borrowed, outlives the manager. NULL: no ownership
				     * checks at all (only for in-process callers) */
	const char *remote_url;     /* NULL: no push; else refs pushed after each create */
	int64_t push_timeout_ms;    /* how long a create waits for its push (0: 10 s) */
	unsigned pushes_in_flight;  /* pushes running at once, the rest skipped (0: 4) */
	bool fsync;                 /* a create returns only once its objects and ref are durable
				     * (fsync of exactly what it wrote, never syncfs) */
	hs_ckpt_watch_config watch; /* change tracking */
	unsigned scan_threads;      /* threads of a full workspace walk (0: one per CPU, at most 4) */
	hs_metrics *metrics;        /* borrowed, outlives the manager; NULL: no metrics.
				     * harness_checkpoint_scans_total{op,mode,reason} and the
				     * watcher's gauges are registered on it */
	hs_ckpt_quota quota;        /* for callers that are not admins */
	/* Called after every successful create (not for a replayed request_id),
	 * outside every lock of this module, on the creating thread. */
	void (*on_create)(void *payload, const char *task_id, const char *checkpoint_id,
			  int64_t step);
	void *on_create_payload;
} hs_ckpt_config;

/* A checkpoint as recorded in its commit. Strings marked heap belong to the
 * record: release with hs_ckpt_info_dispose(). */
typedef struct hs_ckpt_info {
	char checkpoint_id[HS_CKPT_ID_MAX];        /* "ckpt-<step>-<first 12 hex of commit>" */
	char task_id[HS_CKPT_TASK_ID_MAX + 1];
	int64_t step;
	char *description;                          /* heap, never NULL after success */
	char *external_state_json;                  /* heap JSON object text, or NULL */
	int64_t created_at_ms;                      /* unix epoch milliseconds */
	char commit[41];                            /* full hex commit id */
	uint32_t files_changed;                     /* vs the parent checkpoint (all files for the first) */
	bool unchanged;                             /* same tree as its parent (an empty commit) */
	char parent_checkpoint_id[HS_CKPT_ID_MAX];  /* "" for the first */
	uint64_t seq;                               /* creation order within the task, 1-based */
	char *workspace;                            /* heap: relative to the root ("" if unrecorded) */
	char created_by[HS_CKPT_OWNER_MAX];         /* caller's user id ("" if none) */
} hs_ckpt_info;

void hs_ckpt_info_dispose(hs_ckpt_info *info);
/* Dispose every element and free the array; (NULL, 0) is a no-op. */
void hs_ckpt_info_array_free(hs_ckpt_info *arr, size_t count);

/* A heap list of heap strings; release with hs_ckpt_strlist_dispose(). */
typedef struct hs_ckpt_strlist {
	char **items;
	size_t count;
} hs_ckpt_strlist;

void hs_ckpt_strlist_dispose(hs_ckpt_strlist *list);

/* Creates the manager and initialises libgit2 (refcounted process-wide).
 * *out on success; free with hs_ckpt_mgr_free(). */
int hs_ckpt_mgr_new(hs_ckpt_mgr **out, const hs_ckpt_config *cfg, hs_error *err);
void hs_ckpt_mgr_free(hs_ckpt_mgr *mgr);

/* Waits up to timeout_ms for the pushes to and fetches from the checkpoint
 * remote still running in the background (they outlive the call that
 * started them, and the manager) to end; true when none is left. For a
 * shutdown, after hs_ckpt_mgr_free. */
bool hs_ckpt_background_wait(int64_t timeout_ms);

/* Recovery fencing of creates (the task registry's
 * hs_tasks_checkpoint_fence): called by every create before it records
 * anything, after the ownership check and outside every lock of this
 * module, with the create's recovery_generation (0 = not sent). Anything
 * but HS_OK fails the create with that code and err. */
typedef int (*hs_ckpt_fence_fn)(void *payload, const char *task_id, int64_t generation,
				hs_error *err);
/* Set (or replace) the fence; as hs_ckpt_mgr_set_on_create. */
void hs_ckpt_mgr_set_fence(hs_ckpt_mgr *mgr, hs_ckpt_fence_fn fence, void *payload);

/* Set (or replace) the on_create notification after the manager was made,
 * e.g. once the module receiving it exists. Call before the manager is
 * shared (no create may run meanwhile). */
void hs_ckpt_mgr_set_on_create(hs_ckpt_mgr *mgr,
			       void (*on_create)(void *payload, const char *task_id,
						 const char *checkpoint_id, int64_t step),
			       void *payload);

/* Was the manager given a tenancy (ownership is checked)? */
bool hs_ckpt_mgr_checks_ownership(const hs_ckpt_mgr *mgr);

/* How many task repositories (each with its index, the stat cache) stay open
 * between calls, least recently used closed first. Default 32. Call before
 * sharing the manager. */
void hs_ckpt_mgr_set_open_repos(hs_ckpt_mgr *mgr, unsigned max_open_repos);

/* HS_OK if id has the checkpoint id form ("ckpt-<step>-<12 hex>"); else
 * HS_INVALID with a message naming field. */
int hs_ckpt_validate_checkpoint_id(const char *id, const char *field, hs_error *err);

/* Does the task have a shadow repository? */
int hs_ckpt_task_exists(hs_ckpt_mgr *mgr, const char *task_id, bool *out, hs_error *err);

/* May who (NULL: harnessd) act on task_id's checkpoints? claim: an id
 * nobody holds is claimed for who (creates); else HS_NOT_FOUND for it (reads).
 * Someone else's task is HS_NOT_FOUND "task <id> not found"; admins pass. A
 * repository whose config still names an owner (older versions) has that
 * id claimed for that owner first. Without a tenancy: HS_OK. */
int hs_ckpt_access(hs_ckpt_mgr *mgr, const hs_principal *who, const char *task_id, bool claim,
		   hs_error *err);

/* For the tasks module (is a task id free for who to register?): HS_OK if
 * who (or an admin) may act on the task's checkpoints, HS_DENIED if the id
 * belongs to another user, HS_NOT_FOUND if the task has no checkpoints (or
 * who is NULL). Never for answers to users: those say NOT_FOUND for both
 * (hs_ckpt_access). */
int hs_ckpt_authorize(hs_ckpt_mgr *mgr, const char *task_id, const hs_principal *who,
		      hs_error *err);

typedef struct hs_ckpt_create_opts {
	const hs_principal *caller;      /* NULL: harnessd itself (no ownership, no quotas) */
	const char *workspace;           /* NULL/"": the task's default, created if missing */
	int64_t step;                    /* >= 0 */
	const char *description;         /* NULL = "" */
	const char *external_state_json; /* NULL or a JSON object */
	const char *request_id;          /* NULL/"": none; see hs_ckpt_create_with */
	int64_t recovery_generation;     /* the caller's acknowledged one; 0 = not sent
					  * (passed to the fence, hs_ckpt_mgr_set_fence) */
} hs_ckpt_create_opts;

typedef struct hs_ckpt_create_result {
	hs_ckpt_info checkpoint;
	bool unchanged;   /* its tree equals its parent's (nothing changed on disk) */
	bool replayed;    /* an earlier create with the same request_id, returned again */
	char *push_error; /* heap or NULL: the push to the remote failed or timed out */
} hs_ckpt_create_result;

void hs_ckpt_create_result_dispose(hs_ckpt_create_result *r);

/* Snapshot the workspace as a new checkpoint. Every call records one (with
 * its step, description and external_state), also when the tree equals the
 * parent's: then an empty commit, unchanged = true and files_changed = 0.
 * The parent is the current checkpoint (the last one created or restored).
 * request_id: a create of the same task with a request_id seen before
 * records nothing and returns that checkpoint (replayed = true), as long as
 * it has not been pruned. The caller must own the task (an unclaimed id is
 * claimed) and the workspace's task; quotas apply to non-admin callers. If
 * a remote is configured, the new ref is pushed after the task lock is
 * released, waiting at most push_timeout_ms; a push failure does not fail
 * the call (push_error). Then on_create runs. out is disposed by the caller
 * on success only. */
int hs_ckpt_create_with(hs_ckpt_mgr *mgr, const char *task_id, const hs_ckpt_create_opts *opts,
			hs_ckpt_create_result *out, hs_error *err);

/* hs_ckpt_create_with without a request_id; *unchanged_out and
 * *push_error_out (heap or NULL; may be NULL) as in the result. */
int hs_ckpt_create(hs_ckpt_mgr *mgr, const char *task_id, const char *workspace,
		   const hs_principal *caller, int64_t step, const char *description,
		   const char *external_state_json, hs_ckpt_info *out, bool *unchanged_out,
		   char **push_error_out, hs_error *err);

/* Make the workspace exactly the checkpoint's tree: changed files reset,
 * deleted files back, untracked files removed; ignored files, nested `.git`
 * directories and the untracked content of nested repositories the
 * checkpoint does not contain left alone. Every write and removal happens
 * beneath the workspace: a symbolic link where a directory is expected is
 * replaced by a directory, never followed. workspace NULL/"": the one
 * recorded in the checkpoint; created if missing. who (NULL: harnessd) must
 * own the task and the workspace's task. Later checkpoints stay listable
 * and restorable; the next create records this one as its parent. */
int hs_ckpt_restore_as(hs_ckpt_mgr *mgr, const hs_principal *who, const char *task_id,
		       const char *checkpoint_id, const char *workspace, hs_ckpt_info *out,
		       uint32_t *files_restored, uint32_t *files_removed, hs_error *err);
/* hs_ckpt_restore_as for harnessd itself. */
int hs_ckpt_restore(hs_ckpt_mgr *mgr, const char *task_id, const char *checkpoint_id,
		    const char *workspace, hs_ckpt_info *out, uint32_t *files_restored,
		    uint32_t *files_removed, hs_error *err);

int hs_ckpt_get(hs_ckpt_mgr *mgr, const char *task_id, const char *checkpoint_id,
		hs_ckpt_info *out, hs_error *err);
/* Newest by creation; HS_NOT_FOUND if the task has none. */
int hs_ckpt_latest(hs_ckpt_mgr *mgr, const char *task_id, hs_ckpt_info *out, hs_error *err);

/* Newest first. before_step > 0 keeps only step < before_step. page_token:
 * NULL/"" for the first page, else a next_page_token from a previous call
 * (HS_INVALID if malformed). page_size 0 means HS_CKPT_PAGE_DEFAULT, capped
 * at HS_CKPT_PAGE_MAX. *out is a heap array (hs_ckpt_info_array_free), may
 * be NULL when *count is 0; *next_page_token is heap or NULL at the end. */
int hs_ckpt_list(hs_ckpt_mgr *mgr, const char *task_id, int64_t before_step,
		 const char *page_token, uint32_t page_size, hs_ckpt_info **out, size_t *count,
		 char **next_page_token, hs_error *err);

typedef struct hs_ckpt_verify_result {
	bool consistent;
	char checkpoint_id[HS_CKPT_ID_MAX]; /* the checkpoint compared against */
	hs_ckpt_strlist added;    /* in the workspace, not in the checkpoint (not ignored) */
	hs_ckpt_strlist modified; /* content, mode or type differ */
	hs_ckpt_strlist deleted;  /* in the checkpoint, missing from the workspace */
} hs_ckpt_verify_result;

void hs_ckpt_verify_result_dispose(hs_ckpt_verify_result *res);

/* Compare the workspace with a checkpoint (NULL or "" = the latest);
 * workspace NULL/"": the one recorded in the checkpoint. Reads beneath the
 * workspace only; who as for restore. */
int hs_ckpt_verify_as(hs_ckpt_mgr *mgr, const hs_principal *who, const char *task_id,
		      const char *checkpoint_id, const char *workspace,
		      hs_ckpt_verify_result *out, hs_error *err);
/* hs_ckpt_verify_as for harnessd itself. */
int hs_ckpt_verify(hs_ckpt_mgr *mgr, const char *task_id, const char *checkpoint_id,
		   const char *workspace, hs_ckpt_verify_result *out, hs_error *err);

typedef enum hs_ckpt_change {
	HS_CKPT_ADDED = 1,
	HS_CKPT_MODIFIED = 2,
	HS_CKPT_DELETED = 3,
	HS_CKPT_RENAMED = 4,
	HS_CKPT_TYPECHANGE = 5,
} hs_ckpt_change;

typedef struct hs_ckpt_diff_entry {
	char *path;     /* heap: new path (old path for deletions) */
	char *old_path; /* heap: old path (== path unless renamed) */
	hs_ckpt_change status;
	uint32_t additions;
	uint32_t deletions;
	bool binary;    /* line counts are 0 for binary files */
} hs_ckpt_diff_entry;

void hs_ckpt_diff_free(hs_ckpt_diff_entry *arr, size_t count);

/* Changes from one checkpoint to another, paths sorted, renames detected.
 * to_id NULL/"": the latest; from_id NULL/"": to's parent checkpoint (the
 * empty tree for a first checkpoint; HS_NOT_FOUND if it was pruned). The resolved ids go to from_out ("" =
 * the empty tree) and to_out (either may be NULL).
 * *out heap array (hs_ckpt_diff_free), NULL when *count is 0. */
int hs_ckpt_diff(hs_ckpt_mgr *mgr, const char *task_id, const char *from_id, const char *to_id,
		 char *from_out, char *to_out, hs_ckpt_diff_entry **out, size_t *count,
		 hs_error *err);

/* Forget all but the newest keep_last (>= 1) checkpoints and give their
 * space back: their refs are deleted, then the repository is repacked to
 * what the kept checkpoints (and the stat cache) need; everything else is
 * deleted from disk. *kept: number left; pruned: heap ids removed, newest
 * first; *bytes_freed (may be NULL): how much the repository shrank.
 * dry_run: report without deleting. */
int hs_ckpt_prune(hs_ckpt_mgr *mgr, const char *task_id, uint32_t keep_last, bool dry_run,
		  uint32_t *kept, hs_ckpt_strlist *pruned, uint64_t *bytes_freed, hs_error *err);

/* Remove the task's shadow repository (task cleanup). The workspace is not
 * touched. HS_NOT_FOUND if there is none. */
int hs_ckpt_delete_task(hs_ckpt_mgr *mgr, const char *task_id, hs_error *err);

#endif
