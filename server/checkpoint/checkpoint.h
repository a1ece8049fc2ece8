/* Checkpoints of task workspaces as git commits in one bare shadow repository
 * per task (libgit2, in process). No gRPC and no libgit2 types here: the
 * gRPC adapter (checkpoint_service.c) converts protobuf <-> these calls.
 *
 * What is captured: regular files (content + executable bit) and symlinks of
 * the workspace, minus what the workspace's .gitignore files ignore. Empty
 * directories are not git's business: they are neither recorded nor removed.
 * Nested repositories (a `.git` anywhere below the workspace, the agent's own
 * repos) are captured as content: their working files are checkpointed like
 * any other file, the `.git` itself is never recorded and never touched (a
 * restore does not remove a directory that holds a `.git`).
 *
 * Threading: an hs_ckpt_mgr may be shared by any number of threads. Calls on
 * one task are serialized; calls on different tasks run in parallel. Calls
 * block on disk I/O: never call them from a completion-queue thread.
 *
 * Errors: HS_OK or a negative hs_code with a one-line message in *err.
 * HS_INVALID for bad task ids / checkpoint ids / workspaces (the message names
 * the field), HS_NOT_FOUND for unknown tasks or checkpoints, HS_INTERNAL for
 * unexpected libgit2 failures. */
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

typedef struct hs_ckpt_mgr hs_ckpt_mgr;

typedef struct hs_ckpt_config {
	const char *repos_dir;      /* shadow repos: <repos_dir>/<task_id>.git; created if missing */
	const char *workspace_root; /* must exist; every workspace lives strictly below it */
	const char *remote_url;     /* NULL: no push; else refs pushed after each create */
	bool fsync;                 /* a create returns only once its objects and ref are durable */
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

/* How many task repositories (each with its index, the stat cache) stay open
 * between calls, least recently used closed first. Default 32. Call before
 * sharing the manager. */
void hs_ckpt_mgr_set_open_repos(hs_ckpt_mgr *mgr, unsigned max_open_repos);

/* HS_OK if id has the checkpoint id form ("ckpt-<step>-<12 hex>"); else
 * HS_INVALID with a message naming field. */
int hs_ckpt_validate_checkpoint_id(const char *id, const char *field, hs_error *err);

/* Resolves an optional workspace (relative to workspace_root; NULL or "" means
 * "<root>/<task_id>") to an existing directory strictly below the root,
 * symlinks resolved. Refuses absolute paths, ".." components and anything
 * resolving outside the root with HS_INVALID naming "workspace"; a missing
 * directory is HS_NOT_FOUND, something else than a directory HS_CONFLICT
 * (FAILED_PRECONDITION, as the proto says). *out is heap (free()). */
int hs_ckpt_workspace_resolve(hs_ckpt_mgr *mgr, const char *task_id, const char *workspace,
			      char **out, hs_error *err);

/* Does the task have a shadow repository? */
int hs_ckpt_task_exists(hs_ckpt_mgr *mgr, const char *task_id, bool *out, hs_error *err);

/* The owner recorded by the task's first create ("" if none was given).
 * HS_NOT_FOUND if the task has no checkpoints repository. */
int hs_ckpt_owner(hs_ckpt_mgr *mgr, const char *task_id, char out[HS_CKPT_OWNER_MAX],
		  hs_error *err);

/* May caller read or change the task's checkpoints? HS_OK for its owner and
 * for admins; HS_DENIED for anyone else (a task created without a caller
 * belongs to admins only); HS_NOT_FOUND if the task has no checkpoints. */
int hs_ckpt_authorize(hs_ckpt_mgr *mgr, const char *task_id, const hs_principal *caller,
		      hs_error *err);

/* Snapshot the workspace. If its tree equals the current checkpoint's (the
 * last one created or restored) nothing is written: *out is that checkpoint
 * and *unchanged_out is true. caller (NULL: none, no check) becomes the
 * owner on the task's first create and is recorded as created_by; on a task
 * owned by someone else the create is refused with HS_DENIED unless
 * caller->is_admin (checked under the task lock, so two users racing for a
 * new task cannot both win). The workspace (relative to the root) is
 * recorded too. external_state_json: NULL or a JSON object. If a remote is
 * configured, the new ref is pushed; a push failure does not fail the call:
 * *push_error_out gets a heap message (else NULL). out is disposed by the
 * caller on success only. */
int hs_ckpt_create(hs_ckpt_mgr *mgr, const char *task_id, const char *workspace,
		   const hs_principal *caller, int64_t step, const char *description,
		   const char *external_state_json, hs_ckpt_info *out, bool *unchanged_out,
		   char **push_error_out, hs_error *err);

/* Make the workspace exactly the checkpoint's tree: changed files reset,
 * deleted files back, untracked files removed; ignored files and nested
 * `.git` directories left alone. workspace NULL/"": the one recorded in the
 * checkpoint. The workspace directory is created if it is
 * missing (its parent must exist below the root). Later checkpoints stay
 * listable and restorable; the next create records this one as its parent. */
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
 * workspace NULL/"": the one recorded in the checkpoint. */
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
 * empty tree for a first checkpoint). The resolved ids go to from_out ("" =
 * the empty tree) and to_out (either may be NULL).
 * *out heap array (hs_ckpt_diff_free), NULL when *count is 0. */
int hs_ckpt_diff(hs_ckpt_mgr *mgr, const char *task_id, const char *from_id, const char *to_id,
		 char *from_out, char *to_out, hs_ckpt_diff_entry **out, size_t *count,
		 hs_error *err);

/* Forget all but the newest keep_last (>= 1) checkpoints: their refs are
 * deleted, so they are no longer listed or restorable. Objects stay until a
 * git gc, and since every checkpoint commit has its predecessor as git parent,
 * the kept checkpoints' history keeps them reachable (prune bounds the
 * listing, not disk usage). *kept: number left; pruned: heap ids removed,
 * newest first. dry_run: report without deleting. */
int hs_ckpt_prune(hs_ckpt_mgr *mgr, const char *task_id, uint32_t keep_last, bool dry_run,
		  uint32_t *kept, hs_ckpt_strlist *pruned, hs_error *err);

/* Remove the task's shadow repository (task cleanup). The workspace is not
 * touched. HS_NOT_FOUND if there is none. */
int hs_ckpt_delete_task(hs_ckpt_mgr *mgr, const char *task_id, hs_error *err);

#endif
