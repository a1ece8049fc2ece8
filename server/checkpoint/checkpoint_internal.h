/* Internals shared by the checkpoint module's files (never included outside
 * server/checkpoint/). Only this module includes <git2.h>. */
#ifndef HS_CHECKPOINT_INTERNAL_H
#define HS_CHECKPOINT_INTERNAL_H

#include <git2.h>
#include <pthread.h>

#include "checkpoint.h"
#include "clock.h"
#include "log.h"

#define HS_CKPT__REF_PREFIX "refs/harness/checkpoints/"
#define HS_CKPT__REF_LATEST "refs/harness/latest"
#define HS_CKPT__REF_CURRENT "refs/harness/current"
#define HS_CKPT__LOCK_BUCKETS 64
#define HS_CKPT__OPEN_REPOS_DEFAULT 32

/* One checkpoint as the catalog knows it: enough to order, page, find the
 * latest and the parent without reading its commit. */
typedef struct hs_ckpt__entry {
	uint64_t seq;
	int64_t step;
	git_oid commit;
	char id[HS_CKPT_ID_MAX];
} hs_ckpt__entry;

/* The task's checkpoints, oldest (lowest seq) first; see catalog.c. */
typedef struct hs_ckpt__catalog {
	bool loaded;          /* false: build from the refs before use */
	hs_ckpt__entry *v;
	size_t n, cap;
	uint64_t current_seq; /* refs/harness/current if listed, else 0 (= the newest) */
} hs_ckpt__catalog;

typedef struct hs_ckpt__task_lock {
	char task_id[HS_CKPT_TASK_ID_MAX + 1];
	pthread_mutex_t mu;
	unsigned users; /* threads holding or waiting for mu; guarded by mgr->map_mu */
	/* The task's repository kept open between calls (its index is the stat
	 * cache, its object cache spares re-reading trees): used only by the
	 * holder of mu; set/cleared under mu, and under map_mu for the count.
	 * An entry with a repo outlives its users until evicted (LRU). */
	git_repository *repo;
	/* Lives with repo (same rules): dropped whenever repo is. */
	hs_ckpt__catalog catalog;
	uint64_t last_used; /* guarded by mgr->map_mu */
	struct hs_ckpt__task_lock *next;
} hs_ckpt__task_lock;

struct hs_ckpt_mgr {
	char *repos_dir;      /* realpath */
	char *ws_root;        /* realpath, no trailing '/' */
	char *remote_url;     /* NULL: no push */
	bool durable;         /* flush with syncfs() before acknowledging */
	pthread_mutex_t map_mu;
	hs_ckpt__task_lock *buckets[HS_CKPT__LOCK_BUCKETS];
	unsigned open_repos;     /* entries with a repo; guarded by map_mu */
	unsigned max_open_repos;
	uint64_t tick;           /* LRU clock; guarded by map_mu */
};

/* checkpoint.c ------------------------------------------------------------ */

/* Take / release the task's mutex (NULL on allocation failure). */
hs_ckpt__task_lock *hs_ckpt__lock(hs_ckpt_mgr *mgr, const char *task_id);
void hs_ckpt__unlock(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l);
/* Drop the task's cached repository (after a failed write, or before the
 * repository goes away). Caller holds l's mutex. */
void hs_ckpt__repo_forget(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l);
/* Cache a freshly opened repo in l (l's mutex held). */
void hs_ckpt__repo_keep(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l, git_repository *repo);
/* CLOCK_MONOTONIC in microseconds, for the phase timings in log lines. */

/* repo.c ------------------------------------------------------------------ */

/* Set err from libgit2's last error on this thread; returns the hs_code
 * (GIT_ENOTFOUND -> NOT_FOUND, GIT_EOWNER -> CONFLICT, GIT_EINVALIDSPEC ->
 * INVALID, GIT_ELOCKED -> ABORTED, else INTERNAL). */
int hs_ckpt__git_err(hs_error *err, int gerr, const char *what, const char *task_id);

/* "<repos_dir>/<task_id>.git", heap. */
char *hs_ckpt__repo_path(const hs_ckpt_mgr *mgr, const char *task_id);

/* The task's bare shadow repo, borrowed from l (the caller holds l's mutex;
 * do not free it): the cached one, or opened now after removing stale lock
 * files left by a crash (no writer is alive in-process) and cached.
 * create: initialise it (atomically, via a temporary dir + rename) if missing
 * and record owner; else HS_NOT_FOUND. */
int hs_ckpt__repo_open(git_repository **out, hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l,
		       const char *task_id, bool create, const char *owner, hs_error *err);

/* harness.owner of the repo into out ("" if unset). */
int hs_ckpt__read_owner(git_repository *repo, const char *task_id, char out[HS_CKPT_OWNER_MAX],
			hs_error *err);

/* Attach the workspace as the in-memory work tree and return the repo's index
 * (borrowed: owned by repo). */
int hs_ckpt__attach(git_index **out, git_repository *repo, const char *ws, const char *task_id,
		    hs_error *err);

/* Make everything written to the repo durable (syncfs on its filesystem). */
int hs_ckpt__flush(git_repository *repo, const char *task_id, hs_error *err);

void hs_ckpt__make_id(char out[HS_CKPT_ID_MAX], int64_t step, const git_oid *commit);
/* HS_INVALID unless id has the "ckpt-<digits>-<12 hex>" form. */
int hs_ckpt__check_id(const char *checkpoint_id, hs_error *err);

/* Commit message for a checkpoint: a summary line, a blank line, then one
 * JSON object with the metadata. Heap. NULL on allocation failure. */
char *hs_ckpt__format_message(const hs_ckpt_info *info);
/* Fill out from a checkpoint commit (message metadata + commit id). */
int hs_ckpt__parse_commit(const git_commit *commit, const char *task_id, hs_ckpt_info *out,
			  hs_error *err);

/* The commit of a checkpoint id; HS_INVALID for malformed ids, HS_NOT_FOUND
 * for unknown or pruned ones. *out to git_commit_free(). */
int hs_ckpt__lookup(git_commit **out, git_repository *repo, const char *task_id,
		    const char *checkpoint_id, hs_error *err);

/* catalog.c --------------------------------------------------------------- */

/* Build cat from the checkpoint refs (one commit read per checkpoint) unless
 * it is loaded already. Caller holds the task mutex. */
int hs_ckpt__catalog_load(hs_ckpt__catalog *cat, git_repository *repo, const char *task_id,
			  hs_error *err);
void hs_ckpt__catalog_dispose(hs_ckpt__catalog *cat);
/* Newest entry, or NULL if there are none (borrowed: valid until the next
 * change of cat, like every entry pointer below). */
const hs_ckpt__entry *hs_ckpt__catalog_latest(const hs_ckpt__catalog *cat);
/* Entry with that seq, or NULL. */
const hs_ckpt__entry *hs_ckpt__catalog_find(const hs_ckpt__catalog *cat, uint64_t seq);
/* Number of entries with seq < the given one (index of the first >= it). */
size_t hs_ckpt__catalog_below(const hs_ckpt__catalog *cat, uint64_t seq);
/* The parent of the next create: current if still listed, else the newest. */
const hs_ckpt__entry *hs_ckpt__catalog_current(const hs_ckpt__catalog *cat);
/* After a create wrote its refs: add it (it becomes current). No-op if cat
 * is not loaded; on failure (OOM, seq not increasing) cat is dropped, to be
 * rebuilt, and -1 returned. */
int hs_ckpt__catalog_append(hs_ckpt__catalog *cat, const hs_ckpt_info *info);
/* After a restore moved refs/harness/current. No-op if not loaded. */
void hs_ckpt__catalog_set_current(hs_ckpt__catalog *cat, uint64_t seq);
/* After a prune removed the refs of the k oldest. No-op if not loaded. */
void hs_ckpt__catalog_drop_oldest(hs_ckpt__catalog *cat, size_t k);

/* diff.c ------------------------------------------------------------------ */

/* Bring the index in line with the workspace (stat cache first: only files
 * whose stat changed are hashed), capturing nested repositories as content.
 * *changed: whether the in-memory index now differs from what was loaded
 * (entries added/removed, or stat data refreshed); *hashed: files whose
 * content had to be read (stat cache misses, for the log). */
int hs_ckpt__stage(git_repository *repo, git_index *index, const char *task_id, bool *changed,
		   size_t *hashed, hs_error *err);

/* Workspace vs tree (through the index's stat cache), untracked included,
 * ignored excluded. Fills added/modified/deleted and consistent.
 * *refreshed (may be NULL): the index's stat data was updated in memory. */
int hs_ckpt__compare(git_repository *repo, git_index *index, git_tree *tree,
		     const char *task_id, hs_ckpt_verify_result *out, bool *refreshed,
		     hs_error *err);

/* Number of paths differing between two trees (old may be NULL). */
int hs_ckpt__count_changes(git_repository *repo, git_tree *old_tree, git_tree *new_tree,
			   uint32_t *out, const char *task_id, hs_error *err);

int hs_ckpt__tree_diff(git_repository *repo, git_tree *from, git_tree *to, const char *task_id,
		       hs_ckpt_diff_entry **out, size_t *count, hs_error *err);

int hs_ckpt__strlist_push(hs_ckpt_strlist *list, const char *s);

/* workspace.c ------------------------------------------------------------- */

/* Like hs_ckpt_workspace_resolve; create_missing makes the final directory
 * when its parent resolves below the root. */
int hs_ckpt__workspace(const hs_ckpt_mgr *mgr, const char *task_id, const char *workspace,
		       bool create_missing, char **out, hs_error *err);

/* rm -rf without following symlinks. 0 or -1 (errno). */
int hs_ckpt__rmtree(const char *path);

#endif
