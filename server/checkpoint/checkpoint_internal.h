/* Internals shared by the checkpoint module's files (never included outside
 * server/checkpoint/). Only this module includes <git2.h>. */
#ifndef HS_CHECKPOINT_INTERNAL_H
#define HS_CHECKPOINT_INTERNAL_H

#include <git2.h>
#include <pthread.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "clock.h"
#include "log.h"
#include "tenancy.h"

#define HS_CKPT__REF_PREFIX "refs/harness/checkpoints/"
#define HS_CKPT__REF_LATEST "refs/harness/latest"
#define HS_CKPT__REF_CURRENT "refs/harness/current"
#define HS_CKPT__LOCK_BUCKETS 64
#define HS_CKPT__OPEN_REPOS_DEFAULT 32
#define HS_CKPT__DEPTH_MAX 256              /* directory levels in a workspace */
#define HS_CKPT__IGNORE_FILE_MAX (256u << 10) /* bytes of one .gitignore read */
#define HS_CKPT__IGNORE_LINE_MAX 4096         /* longer pattern lines are skipped */
#define HS_CKPT__IGNORE_TEXT_MAX (4u << 20)   /* .gitignore bytes in force at once */
#define HS_CKPT__IGNORE_RULES_MAX 10000       /* patterns in force at once */
#define HS_CKPT__REQUEST_ID_MAX 128

/* One checkpoint as the catalog knows it: enough to order, page, find the
 * latest and the parent, and answer a retried request_id, without reading
 * its commit. */
typedef struct hs_ckpt__entry {
	uint64_t seq;
	int64_t step;
	git_oid commit;
	char id[HS_CKPT_ID_MAX];
	char *request_id; /* heap or NULL */
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
	/* These live with repo (same rules): dropped whenever repo is. */
	git_index *index;       /* <gitdir>/index, opened on first use */
	struct hs_ckpt__batch *batch; /* tracked creates' object writer (batch.c), lazily */
	hs_ckpt__catalog catalog;
	bool index_dirty;       /* changed in memory since written to <gitdir>/index */
	int64_t index_saved_ms; /* monotonic time of the last write */
	git_oid index_tree;     /* the tree the index holds (after a create or restore) */
	bool index_tree_known;
	uint64_t repo_bytes;    /* measured, plus an upper bound of what was added since */
	bool repo_bytes_known;
	uint64_t last_used; /* guarded by mgr->map_mu */
	int64_t last_used_ms; /* monotonic; guarded by mgr->map_mu (the index saver) */
	/* The workspace's change tracker (watch.c): its baseline is this
	 * entry's index. Used by the holder of mu; freed under map_mu when the
	 * entry is idle (LRU beyond the watcher's bound) or dropped. */
	struct hs_ckpt__track *track;
	int track_why; /* hs_ckpt__why for the next call when track is NULL */
	struct hs_ckpt__task_lock *next;
} hs_ckpt__task_lock;

typedef struct hs_ckpt__pusher hs_ckpt__pusher;

/* metrics.c: what creates and restores cost (see hs_ckpt__metrics_collect). */
#include "metrics.h"
typedef struct hs_ckpt__metrics {
	hs_histogram create_seconds, restore_seconds, files_changed;
	hs_counter create_errors, restore_errors;
} hs_ckpt__metrics;

void hs_ckpt__metrics_init(hs_ckpt__metrics *m);
/* rc: the operation's result; us: its duration. */
void hs_ckpt__metrics_create(hs_ckpt__metrics *m, int rc, int64_t us, uint32_t files_changed);
void hs_ckpt__metrics_restore(hs_ckpt__metrics *m, int rc, int64_t us);
/* payload: the hs_ckpt_mgr. */
void hs_ckpt__metrics_collect(hs_metrics_out *out, void *payload);

struct hs_ckpt_mgr {
	char *repos_dir;      /* realpath */
	char *ws_root;        /* realpath, no trailing '/' */
	int ws_root_fd;       /* O_PATH handle on it (used without a tenancy) */
	hs_tenancy *tenancy;  /* borrowed; NULL: no ownership checks */
	hs_ckpt__pusher *pusher; /* NULL: no remote */
	bool durable;         /* fsync what a create wrote before acknowledging */
	unsigned scan_threads; /* walkers of a full scan */
	struct hs_ckpt__watcher *watcher;
	hs_ckpt_quota quota;
	void (*on_create)(void *payload, const char *task_id, const char *checkpoint_id,
			  int64_t step);
	void *on_create_payload;
	hs_ckpt_fence_fn fence; /* NULL: creates are not fenced */
	void *fence_payload;
	pthread_mutex_t map_mu;
	/* The index saver (checkpoint.c): writes idle tasks' changed indexes
	 * off the request path. Guarded by map_mu. */
	pthread_cond_t saver_cv;
	pthread_t saver;
	bool saver_started, saver_stop;
	hs_ckpt__task_lock *buckets[HS_CKPT__LOCK_BUCKETS];
	unsigned open_repos;     /* entries with a repo; guarded by map_mu */
	unsigned max_open_repos;
	uint64_t tick;           /* LRU clock; guarded by map_mu */
	hs_ckpt__metrics metrics;
	hs_metrics *registry;    /* borrowed; NULL: not registered */
};

/* checkpoint.c ------------------------------------------------------------ */

/* Take / release the task's mutex (NULL on allocation failure). */
hs_ckpt__task_lock *hs_ckpt__lock(hs_ckpt_mgr *mgr, const char *task_id);
void hs_ckpt__unlock(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l);
/* Drop the task's cached repository, index and catalog (after a failed
 * write, a repack, or before the repository goes away). l's mutex held. */
void hs_ckpt__repo_forget(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l);
/* Drop the cached repository after a repack: the index on disk is the one
 * in memory, so change tracking stays trusted. l's mutex held. */
void hs_ckpt__repo_reload(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l);
struct hs_ckpt__changes;
/* hs_ckpt__watch_begin for the task entry l (its mutex held). */
int hs_ckpt__changes_begin(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l, const char *ws, int wsfd,
			   int op, struct hs_ckpt__changes *out, hs_error *err);
/* Log a full scan and why (not for a first use without tracking). */
void hs_ckpt__changes_log(const struct hs_ckpt__changes *c, const char *task_id, const char *ws);
/* Cache a freshly opened repo in l (l's mutex held). */
void hs_ckpt__repo_keep(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l, git_repository *repo);

/* repo.c ------------------------------------------------------------------ */

/* Set err from libgit2's last error on this thread; returns the hs_code
 * (GIT_ENOTFOUND -> NOT_FOUND, GIT_EOWNER -> CONFLICT, GIT_EINVALIDSPEC ->
 * INVALID, GIT_ELOCKED -> ABORTED, else INTERNAL). */
int hs_ckpt__git_err(hs_error *err, int gerr, const char *what, const char *task_id);

/* "<repos_dir>/<task_id>.git", heap. */
char *hs_ckpt__repo_path(const hs_ckpt_mgr *mgr, const char *task_id);

/* The task's bare shadow repo, borrowed from l (the caller holds l's mutex;
 * do not free it): the cached one, or opened now after removing stale lock
 * files left by a crash (no writer is alive in-process), migrating an owner
 * recorded by older versions (see hs_ckpt__migrate_owner), and cached.
 * create: initialise it (atomically, via a temporary dir + rename) if
 * missing; else HS_NOT_FOUND. */
int hs_ckpt__repo_open(git_repository **out, hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l,
		       const char *task_id, bool create, hs_error *err);

/* The task's index (the stat cache), borrowed from l: opened from
 * <gitdir>/index on first use; a torn one is dropped and rebuilt. */
int hs_ckpt__index(git_index **out, hs_ckpt__task_lock *l, const char *task_id, hs_error *err);

/* Write the task's index to <gitdir>/index if it changed, at most every
 * HS_CKPT__INDEX_SAVE_MS unless force (l's mutex held). It is a cache: a
 * stale one on disk only costs re-hashing after a restart, and every blob
 * it names exists (a repack writes it first). While tracked, calls leave it
 * to the saver thread (checkpoint.c), which writes idle tasks' indexes.
 * 0 or -1 (logged). */
int hs_ckpt__index_save(hs_ckpt__task_lock *l, bool force, const char *task_id);
#define HS_CKPT__INDEX_SAVE_MS 5000
#define HS_CKPT__INDEX_IDLE_MS 5000 /* the saver leaves a task used more recently */

/* Make the objects a checkpoint needs durable: every object of tree (and
 * commit, if not NULL) that old_tree (NULL: none) does not have at the same
 * path is fsync()ed if it is loose, then the object directories that hold
 * them. Objects old_tree has were made durable by its own checkpoint. */
int hs_ckpt__flush_objects(git_repository *repo, git_tree *tree, git_tree *old_tree,
			   const git_oid *commit, const char *task_id, hs_error *err);
/* The ids of tree's objects that old_tree (NULL: none) lacks at the same
 * path (tree itself included unless equal), then commit if not NULL. *out
 * heap (free()). 0 or -1. */
int hs_ckpt__new_objects(git_repository *repo, git_tree *tree, git_tree *old_tree,
			 const git_oid *commit, git_oid **out, size_t *n);
/* fsync one file or directory: 0, 1 if it does not exist, -1 (errno). */
int hs_ckpt__fsync_path(const char *path, bool dir);
/* fsync the loose refs named (NULL-terminated) and their directories. */
int hs_ckpt__flush_refs(git_repository *repo, const char *const *refs, const char *task_id,
			hs_error *err);

void hs_ckpt__make_id(char out[HS_CKPT_ID_MAX], int64_t step, const git_oid *commit);
/* HS_INVALID unless id has the "ckpt-<digits>-<12 hex>" form. */
int hs_ckpt__check_id(const char *checkpoint_id, hs_error *err);

/* Commit message for a checkpoint: a summary line, a blank line, then one
 * JSON object with the metadata (request_id: NULL or the client's). Heap.
 * NULL on allocation failure. */
char *hs_ckpt__format_message(const hs_ckpt_info *info, const char *request_id);
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
/* The newest entry created with that request_id, or NULL. */
const hs_ckpt__entry *hs_ckpt__catalog_find_request(const hs_ckpt__catalog *cat,
						    const char *request_id);
/* Number of entries with seq < the given one (index of the first >= it). */
size_t hs_ckpt__catalog_below(const hs_ckpt__catalog *cat, uint64_t seq);
/* The parent of the next create: current if still listed, else the newest. */
const hs_ckpt__entry *hs_ckpt__catalog_current(const hs_ckpt__catalog *cat);
/* After a create wrote its refs: add it (it becomes current). No-op if cat
 * is not loaded; on failure (OOM, seq not increasing) cat is dropped, to be
 * rebuilt, and -1 returned. */
int hs_ckpt__catalog_append(hs_ckpt__catalog *cat, const hs_ckpt_info *info,
			    const char *request_id);
/* After a restore moved refs/harness/current. No-op if not loaded. */
void hs_ckpt__catalog_set_current(hs_ckpt__catalog *cat, uint64_t seq);
/* After a prune removed the refs of the k oldest. No-op if not loaded. */
void hs_ckpt__catalog_drop_oldest(hs_ckpt__catalog *cat, size_t k);

/* ignore.c ---------------------------------------------------------------- */

typedef struct hs_ckpt__ignore_level hs_ckpt__ignore_level;
/* The .gitignore files of the directories from the workspace down to the
 * one being scanned (a stack). Zero-initialise. */
typedef struct hs_ckpt__ignore {
	hs_ckpt__ignore_level **v; /* shared, refcounted, immutable once pushed */
	size_t n, cap;
	size_t text_bytes, rules; /* in force, bounded (HS_CKPT__IGNORE_*_MAX) */
} hs_ckpt__ignore;

/* Push the rules of the .gitignore text of directory base ("" or "a/b/").
 * 0, -1 on allocation failure, -2 past the bounds on rules in force. */
int hs_ckpt__ignore_push(hs_ckpt__ignore *ig, const char *base, const char *text, size_t len);
void hs_ckpt__ignore_pop(hs_ckpt__ignore *ig);
/* dst (uninitialised) holds the same levels as src (shared, refcounted:
 * stacks on different threads may pop and dispose independently). */
int hs_ckpt__ignore_copy(hs_ckpt__ignore *dst, const hs_ckpt__ignore *src);
void hs_ckpt__ignore_dispose(hs_ckpt__ignore *ig);
/* Is path (relative to the workspace, no trailing '/') ignored? */
bool hs_ckpt__ignored(const hs_ckpt__ignore *ig, const char *path, bool is_dir);
/* git's wildmatch with '/' significant (WM_PATHNAME). */
bool hs_ckpt__wildmatch(const char *pattern, const char *text);

/* scan.c ------------------------------------------------------------------ */

#define HS_CKPT__READ_IN_MEMORY_MAX (8u << 20) /* larger files are streamed */

typedef struct hs_ckpt__stat {
	int32_t ctime_s, mtime_s;
	uint32_t ctime_ns, mtime_ns;
	uint32_t dev, ino, uid, gid, size; /* truncated to 32 bits, as git's index does */
} hs_ckpt__stat;

/* One file or symlink of a workspace or of a checkpoint tree. */
typedef struct hs_ckpt__file {
	char *path;    /* heap, relative, '/'-separated */
	uint32_t mode; /* GIT_FILEMODE_BLOB, _BLOB_EXECUTABLE or _LINK */
	git_oid id;
	hs_ckpt__stat st;
	bool has_stat;   /* st may be trusted as a stat cache (else stored smudged) */
	bool hashed;     /* content was read in this scan */
	bool multi_link; /* more than one name (st_nlink > 1) when stat()ed */
	uint64_t written; /* bytes handed to the object database (0: hash only) */
} hs_ckpt__file;

typedef struct hs_ckpt__files {
	hs_ckpt__file *v;
	size_t n, cap;
} hs_ckpt__files;

void hs_ckpt__files_dispose(hs_ckpt__files *fl);
/* Append a zeroed file with a copy of path (NULL on allocation failure). */
hs_ckpt__file *hs_ckpt__files_add(hs_ckpt__files *fl, const char *path);
/* Move every entry of src to the end of dst (src left empty). 0 or -1. */
int hs_ckpt__files_move(hs_ckpt__files *dst, hs_ckpt__files *src);
void hs_ckpt__files_sort(hs_ckpt__files *fl);
/* Binary search in a sorted list. */
const hs_ckpt__file *hs_ckpt__files_find(const hs_ckpt__files *fl, const char *path);

/* A read-only, thread-safe view of an index's stage-0 entries, sorted by
 * path (git_index itself may sort lazily: not safe to share). Valid until
 * the index changes. */
typedef struct hs_ckpt__cache {
	const git_index_entry **v;
	size_t n;
} hs_ckpt__cache;

int hs_ckpt__cache_init(hs_ckpt__cache *c, git_index *index); /* index NULL: empty */
void hs_ckpt__cache_dispose(hs_ckpt__cache *c);
const git_index_entry *hs_ckpt__cache_find(const hs_ckpt__cache *c, const char *path);
/* Index of the first entry whose path is >= path. */
size_t hs_ckpt__cache_lower(const hs_ckpt__cache *c, const char *path);

typedef struct hs_ckpt__track hs_ckpt__track;

typedef struct hs_ckpt__scan_opts {
	git_odb *odb;                /* where new blobs are written; NULL: hash only */
	git_odb *odb_large;          /* NULL, or where blobs past HS_CKPT__READ_IN_MEMORY_MAX go */
	const hs_ckpt__cache *cache; /* stat cache; NULL: hash everything */
	uint64_t max_files;          /* 0: unlimited (HS_LIMIT beyond) */
	uint64_t max_bytes;          /* 0: unlimited */
	uint64_t files_before, bytes_before; /* already counted against those */
	unsigned threads;            /* walkers (0 or 1: this thread only) */
	hs_ckpt__track *watch;       /* NULL: none; else each directory is watched before it is read */
	int64_t racy_after_ns;       /* 0: now minus the racy window */
	const char *task_id;
} hs_ckpt__scan_opts;

typedef struct hs_ckpt__scan {
	hs_ckpt__files files;       /* sorted by path */
	hs_ckpt_strlist repo_roots; /* "dir/" of each directory holding a .git, sorted */
	bool roots_unknown;         /* repo_roots not collected (tracked reads): probe */
	size_t hashed;              /* files read (stat cache misses) */
	uint64_t bytes;             /* sizes of every file taken */
	uint64_t written_bytes;     /* content sizes of blobs handed to odb */
} hs_ckpt__scan;

void hs_ckpt__scan_dispose(hs_ckpt__scan *s);
void hs_ckpt__scan_sort(hs_ckpt__scan *s);

/* Walk the whole workspace beneath wsfd (walk.c; see there for the rules). */
int hs_ckpt__scan_workspace(int wsfd, const hs_ckpt__scan_opts *o, hs_ckpt__scan *out,
			    hs_error *err);
/* Walk the subtree rel ("" or "a/b/", depth levels below the workspace)
 * with the .gitignore rules of its ancestors (ig, NULL: none), appending
 * to out (unsorted). */
int hs_ckpt__walk(int wsfd, const hs_ckpt__scan_opts *o, const char *rel, int depth,
		  const hs_ckpt__ignore *ig, hs_ckpt__scan *out, hs_error *err);

/* What taking one file needs. */
typedef struct hs_ckpt__take {
	git_odb *odb;
	git_odb *odb_large; /* NULL: odb */
	const hs_ckpt__cache *cache;
	int64_t racy_after_ns;
	const char *task_id;
} hs_ckpt__take;

/* The file or link name in dirfd (path: its workspace path; st: its lstat,
 * updated to what was read): from the cache when its stat matches, else
 * read and hashed (written to odb). Appended to out unless it vanished
 * meanwhile; *hashed: it was read. */
int hs_ckpt__take_file(const hs_ckpt__take *t, int dirfd, const char *name, const char *path,
		       struct stat *st, hs_ckpt__files *out, bool *hashed, hs_error *err);
/* Push the rules of dirfd's .gitignore (rel: its directory) if it has one. */
int hs_ckpt__read_gitignore(hs_ckpt__ignore *ig, int dirfd, const char *rel, bool *pushed,
			    hs_error *err);
bool hs_ckpt__is_dot_git(const char *name, size_t len);
ssize_t hs_ckpt__read_full(int fd, void *buf, size_t want);
bool hs_ckpt__cache_hit(const git_index_entry *e, const struct stat *st, uint32_t mode);
bool hs_ckpt__entry_equal(const git_index_entry *a, const git_index_entry *b);

/* openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) of rel ("" = dirfd
 * itself), or an equivalent walk where the kernel lacks openat2. The fd,
 * or -errno. */
int hs_ckpt__open_beneath(int dirfd, const char *rel, int flags);

/* Hash (odb NULL) or write the blob read from fd, size bytes expected. */
int hs_ckpt__hash_fd(int fd, uint64_t size, git_odb *odb, git_oid *out, uint64_t *hashed_size,
		     bool *short_read);

uint32_t hs_ckpt__mode_of(mode_t m);
/* Record st in f; has_stat false when st is too recent to be trusted. */
void hs_ckpt__stat_fill(hs_ckpt__file *f, const struct stat *st, int64_t racy_after_ns);
/* Now (CLOCK_REALTIME, ns) minus the racy window. */
int64_t hs_ckpt__racy_after_ns(void);
void hs_ckpt__entry_from_file(git_index_entry *e, const hs_ckpt__file *f);
/* Applies a merge of the index against found files: removes the paths in
 * drop, then adds the files files[add[k]]. *changed: anything was. The
 * full scan (scan.c) and the tracked delta (track.c) share it. */
int hs_ckpt__index_edit(git_index *index, char *const *drop, size_t ndrop,
			 const hs_ckpt__file *files, const size_t *add, size_t nadd,
			 const char *task_id, bool *changed, hs_error *err);

/* Make the index hold exactly final (sorted; every id in the odb),
 * touching only entries that differ. *changed: anything was. */
int hs_ckpt__index_apply(git_index *index, const hs_ckpt__files *final, bool *changed,
			 const char *task_id, hs_error *err);

/* watch.c ------------------------------------------------------------------ */

typedef enum hs_ckpt__op { HS_CKPT__OP_CREATE, HS_CKPT__OP_VERIFY, HS_CKPT__OP_RESTORE,
			   HS_CKPT__OP_N } hs_ckpt__op;

/* Why a read was not tracked (NONE: it was). Names: hs_ckpt__why_name. */
typedef enum hs_ckpt__why {
	HS_CKPT__WHY_NONE, HS_CKPT__WHY_NEW, HS_CKPT__WHY_EVICTED, HS_CKPT__WHY_WORKSPACE,
	HS_CKPT__WHY_OVERFLOW, HS_CKPT__WHY_WATCH_LIMIT, HS_CKPT__WHY_WATCH_ERROR,
	HS_CKPT__WHY_MOVED, HS_CKPT__WHY_ERROR, HS_CKPT__WHY_TOO_MANY, HS_CKPT__WHY_DISABLED,
	HS_CKPT__WHY_N
} hs_ckpt__why;

const char *hs_ckpt__why_name(hs_ckpt__why why);

typedef struct hs_ckpt__watcher hs_ckpt__watcher;
typedef struct hs_metrics hs_metrics;

/* What an operation learns from the watcher at its start. */
typedef struct hs_ckpt__changes {
	hs_ckpt__op op;
	hs_ckpt__track *track; /* the workspace's tracker (NULL: tracking off) */
	bool tracked;          /* paths is all that changed since the index */
	bool watching;         /* a full walk that should watch (pass track to it) */
	hs_ckpt__why why;      /* not tracked: why */
	hs_ckpt_strlist paths; /* tracked: changed paths and multi-link files, sorted */
} hs_ckpt__changes;

int hs_ckpt__watcher_new(hs_ckpt__watcher **out, const hs_ckpt_watch_config *cfg,
			 hs_metrics *metrics, hs_error *err);
/* After every tracker was freed. */
void hs_ckpt__watcher_free(hs_ckpt__watcher *w);
unsigned hs_ckpt__watcher_count(hs_ckpt__watcher *w);
unsigned hs_ckpt__watcher_max(const hs_ckpt__watcher *w);
/* Tests: stop reading events (they queue up in the kernel, and overflow). */
void hs_ckpt__watcher_pause(hs_ckpt__watcher *w, bool paused);

/* At the start of a create, verify or restore on workspace ws (canonical
 * name, wsfd its descriptor), the task lock held: *slot is the task entry's
 * tracker (made or replaced here), *why_freed why it has none (NEW or
 * EVICTED). HS_OK or HS_INTERNAL (no memory). Dispose out. */
int hs_ckpt__watch_begin(hs_ckpt__watcher *w, hs_ckpt__track **slot, hs_ckpt__why *why_freed,
			 const char *ws, int wsfd, hs_ckpt__op op, uint64_t tick,
			 hs_ckpt__changes *out);
void hs_ckpt__changes_dispose(hs_ckpt__changes *c);
/* The operation failed after it took the changes: the next one walks all. */
void hs_ckpt__watch_fail(hs_ckpt__track *t);
/* Is the baseline still trusted (no overflow or limit since begin)? */
bool hs_ckpt__watch_valid(hs_ckpt__track *t);
/* Add path to the changed set (a verify's full walk found it differs). */
void hs_ckpt__watch_mark(hs_ckpt__track *t, const char *path);
/* path has several links: re-check it every time. */
void hs_ckpt__watch_multi(hs_ckpt__track *t, const char *path);
/* Watch directory rel ("" or "a/b/") open as dirfd (walk.c). */
void hs_ckpt__watch_dir(hs_ckpt__track *t, const char *rel, int dirfd);
void hs_ckpt__track_free(hs_ckpt__watcher *w, hs_ckpt__track *t);
uint64_t hs_ckpt__track_last_used(const hs_ckpt__track *t);

/* track.c ------------------------------------------------------------------ */

typedef struct hs_ckpt__delta {
	hs_ckpt_strlist gone; /* sorted: entry p and entries below p/ replaced by found */
	hs_ckpt__scan found;  /* files now at or below them, sorted */
} hs_ckpt__delta;

void hs_ckpt__delta_dispose(hs_ckpt__delta *d);
/* Read the changed paths (sorted) beneath wsfd; o as for a walk (o->cache
 * is the index the delta applies to). */
int hs_ckpt__track_read(int wsfd, const hs_ckpt__scan_opts *o, const hs_ckpt_strlist *changed,
			hs_ckpt__delta *out, hs_error *err);
/* The whole workspace: cache with d applied (sorted). */
int hs_ckpt__delta_overlay(const hs_ckpt__cache *c, const hs_ckpt__delta *d, hs_ckpt__files *out,
			   hs_error *err);
/* The workspace (cache + d) compared with the tree the cache holds. */
int hs_ckpt__delta_compare(const hs_ckpt__cache *c, const hs_ckpt__delta *d,
			   hs_ckpt_verify_result *out, hs_error *err);
/* Apply d to index (c: its view, stale afterwards). */
int hs_ckpt__delta_apply(git_index *index, const hs_ckpt__cache *c, const hs_ckpt__delta *d,
			 bool *changed, const char *task_id, hs_error *err);
/* Files and bytes of the workspace (cache + d), for the quotas. */
void hs_ckpt__delta_totals(const hs_ckpt__cache *c, const hs_ckpt__delta *d, uint64_t *files,
			   uint64_t *bytes);
/* The "dir/" ancestors of paths that hold a `.git`, sorted. 0 or -1. */
int hs_ckpt__probe_repo_roots(int wsfd, const hs_ckpt__files *paths, hs_ckpt_strlist *out);

/* restore.c --------------------------------------------------------------- */

/* The blobs and links of tree, sorted by path. */
int hs_ckpt__tree_files(git_tree *tree, hs_ckpt__files *out, const char *task_id, hs_error *err);

/* Workspace files vs a tree's: added / modified / deleted, sorted. */
int hs_ckpt__compare_files(const hs_ckpt__files *ws, const hs_ckpt__files *tree,
			   hs_ckpt_verify_result *out, hs_error *err);

/* Refresh the stat data of index entries whose content ws proved unchanged. */
int hs_ckpt__index_refresh(git_index *index, const hs_ckpt__files *ws, bool *changed,
			   const char *task_id, hs_error *err);

/* Make the workspace (beneath wsfd) hold target, given what a scan found
 * there (now). *final: target with stat data, for the index. left (the
 * caller disposes): files of now left in place though target lacks them
 * (inside a nested repository target has nothing of). */
int hs_ckpt__restore_files(git_repository *repo, int wsfd, const hs_ckpt__files *target,
			   const hs_ckpt__scan *now, hs_ckpt__files *final, uint32_t *written,
			   uint32_t *removed, hs_ckpt_strlist *left, const char *task_id,
			   hs_error *err);

/* batch.c ----------------------------------------------------------------- */

/* A create's new objects, kept in memory and written as one pack. */
typedef struct hs_ckpt__batch {
	git_odb_backend *mem; /* first backend of the task repository's odb (owned by it) */
	git_odb *loose;       /* the same objects directory, loose objects only (big blobs) */
} hs_ckpt__batch;

/* The task entry's batch (made on first use, dropped with the repository;
 * from then on every object the repository writes goes to memory until
 * hs_ckpt__batch_commit). Borrowed. */
int hs_ckpt__batch_get(hs_ckpt__batch **out, hs_ckpt__task_lock *l, const char *task_id,
		       hs_error *err);
void hs_ckpt__batch_free(hs_ckpt__batch *b);
/* Write the new objects (those of tree that old_tree lacks, and commit)
 * held in memory into repo as one pack (durable: pack, index and directory
 * fsync()ed), make repo's object database see it, empty the memory. */
int hs_ckpt__batch_commit(hs_ckpt__batch *b, git_repository *repo, git_tree *tree,
			  git_tree *old_tree, const git_oid *commit, bool durable,
			  const char *task_id, hs_error *err);
/* Too many packs: merge the small ones. true: packs changed (the caller
 * drops its cached repository). Best effort (logged). */
bool hs_ckpt__packs_maintain(git_repository *repo, bool durable, const char *task_id);

/* diff.c ------------------------------------------------------------------ */

/* Number of paths differing between two trees (old may be NULL). */
int hs_ckpt__count_changes(git_repository *repo, git_tree *old_tree, git_tree *new_tree,
			   uint32_t *out, const char *task_id, hs_error *err);

int hs_ckpt__tree_diff(git_repository *repo, git_tree *from, git_tree *to, const char *task_id,
		       hs_ckpt_diff_entry **out, size_t *count, hs_error *err);

int hs_ckpt__strlist_push(hs_ckpt_strlist *list, const char *s);

/* gc.c -------------------------------------------------------------------- */

/* Sum of the sizes of the files below gitdir. 0 or -1 (errno). */
int hs_ckpt__repo_bytes(const char *gitdir, uint64_t *out);
/* One pack with what the refs and the index reach; everything else goes. */
int hs_ckpt__repack(git_repository *repo, git_index *index, bool durable, const char *task_id,
		    hs_error *err);

/* push.c ------------------------------------------------------------------ */

hs_ckpt__pusher *hs_ckpt__pusher_new(const char *url, unsigned max_in_flight, int64_t timeout_ms);
void hs_ckpt__pusher_release(hs_ckpt__pusher *p);
/* Push refs/harness/checkpoints/<id> of the repository at gitdir; waits at
 * most the pusher's timeout. NULL on success, else a heap message. */
char *hs_ckpt__push(hs_ckpt__pusher *p, const char *gitdir, const char *task_id, const char *id);
/* The remote's URL (NULL when p is NULL) and the push timeout. */
const char *hs_ckpt__pusher_url(const hs_ckpt__pusher *p);
int64_t hs_ckpt__pusher_timeout_ms(const hs_ckpt__pusher *p);

/* A push or fetch thread starts (before pthread_create) / ends (its last
 * act). hs_ckpt_background_wait waits for the count to reach 0. */
void hs_ckpt__bg_enter(void);
void hs_ckpt__bg_leave(void);

/* fetch.c ----------------------------------------------------------------- */

/* Bring checkpoint_id of task_id from the checkpoint remote into repo (the
 * task's repository; its lock held) as refs/harness/checkpoints/<id>, only
 * once every object its tree reaches arrived; waits at most the push
 * timeout (the fetch may go on in the background). HS_NOT_FOUND: no remote,
 * or the remote lacks it; HS_UNAVAILABLE: the remote could not be read, did
 * not answer in time, or sent it incomplete (no ref is left behind). */
int hs_ckpt__fetch(hs_ckpt_mgr *mgr, git_repository *repo, const char *task_id,
		   const char *checkpoint_id, hs_error *err);
/* Removes the scratch repositories of fetches a crash left in repos_dir
 * (at start, before any fetch runs). */
void hs_ckpt__fetch_cleanup(const char *repos_dir);

/* workspace.c ------------------------------------------------------------- */

/* The workspace for who (NULL: harnessd, no ownership check): workspace
 * NULL/"" is the task's default (task_id). Named as tenancy.h says, its
 * task owned by who (else HS_NOT_FOUND), opened beneath the root without
 * following links. create: make missing directories. *fd_out: O_PATH dir
 * descriptor; *name_out (heap, optional): the canonical name. A missing
 * workspace is HS_NOT_FOUND with the path and what to do. */
int hs_ckpt__workspace_open(hs_ckpt_mgr *mgr, const hs_principal *who, const char *task_id,
			    const char *workspace, bool create, int *fd_out, char **name_out,
			    hs_error *err);

/* rm -rf without following symlinks. 0 or -1 (errno). */
int hs_ckpt__rmtree(const char *path);

#endif
