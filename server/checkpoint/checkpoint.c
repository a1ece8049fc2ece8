/* Checkpoint manager: per-task serialization, the manager, records and
 * ownership. create.c, ops.c and the helpers hold the operations.
 *
 * Design and invariants
 * ---------------------
 * Storage. One BARE shadow repository per task at <repos_dir>/<task_id>.git,
 * created whole or not at all (initialised in a temporary directory, then
 * renamed). libgit2 never sees the workspace: the repository has no work
 * tree at all. Workspaces are read (scan.c) and written (restore.c) by this
 * module through directory descriptors opened beneath the workspace without
 * following symbolic links; nothing of ours is ever written into one.
 *
 * Index = stat cache. The repo's index file (<gitdir>/index, opened as a
 * standalone git_index and kept with the open repository) records, per
 * path, the blob id and the stat data seen when it was hashed. A full walk
 * (walk.c) reads only files whose stat changed (racy entries are stored
 * smudged, see scan.c), so an unchanged tree costs one fstatat per file; a
 * tracked read (track.c, watch.c) looks only at the paths inotify reported
 * changed since the index last matched the workspace. The file is written
 * lazily (hs_ckpt__index_save). Every entry's blob is in the object database: create writes
 * blobs before their entries, restore and verify store only ids of blobs
 * they took from (or proved equal to) a checkpoint. After create or restore
 * the index equals the current checkpoint's tree.
 *
 * Checkpoints. A checkpoint is a ROOT commit (author/committer "harness
 * <harness@localhost>") whose message carries all metadata as one JSON object
 * (step, seq, description, external_state, created_at_ms, parent,
 * files_changed, unchanged, workspace, created_by, request_id), and one ref
 * refs/harness/checkpoints/<checkpoint_id>. The parent is recorded in the
 * metadata, not as a git parent, so a pruned checkpoint is reachable from
 * nothing and its space can be given back (gc.c); repositories of older
 * versions have git parents, which a prune then drops (see gc.c). The id is
 * "ckpt-<step>-<first 12 hex of the commit>": stable, derivable from the
 * repo alone, and checked against the ref name when listing. Nothing lives
 * in a file inside the snapshot, so restoring an old checkpoint never rolls
 * back the record of later ones; history is never rewritten.
 *   refs/harness/latest  -> newest checkpoint by creation (seq); informative,
 *                           readers derive "latest" from the refs themselves
 *                           (through the catalog, below).
 *   refs/harness/current -> the checkpoint last created or restored. The next
 *                           create records it as parent.
 * Every create records a checkpoint (issue 12: a step that changed no file
 * still records its step, description and external_state): an unchanged
 * tree gives an empty commit with unchanged = true and files_changed = 0.
 * Idempotency comes only from a client request_id, kept in the metadata and
 * the catalog: a retried create returns the checkpoint it made.
 * seq is 1 + the highest seq among the task's refs; creates of one task are
 * serialized, so seq is strictly increasing and defines "newest first".
 *
 * Catalog. Every checkpoint's (seq, step, id, commit, request_id) and the
 * current one are kept in memory with the open repository (catalog.c):
 * built in one pass over the refs when first needed after an open, then
 * updated by create, restore and prune under the task mutex. After a
 * restart, an eviction or any failed write the catalog is rebuilt from the
 * refs, which stay the only truth (only harnessd writes these repositories).
 *
 * Ownership. A task's checkpoints are its task id's (server/tenancy); the
 * repository records no owner (older versions did: hs_ckpt__repo_open moves
 * it to the tenancy once). hs_ckpt_access checks (or, for creates, claims)
 * the id; workspaces are opened through the tenancy's rules, owned by their
 * first component's task. Another user's task or workspace is NOT_FOUND.
 *
 * Quotas (hs_ckpt_quota, callers that are not admins): checkpoints per
 * task, external_state bytes, workspace files/bytes per scan (the scan stops
 * at the limit) and repository bytes, checked before a create from a size
 * measured once per open repository plus an upper bound of what each create
 * added (re-measured before refusing).
 *
 * Crash safety. libgit2 writes objects, then refs, each through a temp or
 * lock file renamed into place. With cfg.fsync, a create fsyncs exactly what
 * it wrote before writing the ref, and the refs and their directories
 * after: a checkpoint is acknowledged only once its ref is durable, and a
 * durable ref never names a missing object. A tracked create's new objects
 * are one pack (batch.c: three fsyncs); a full walk's are loose, fsync()ed
 * after all were written (one journal commit does most of the work) - the
 * objects its tree has and the parent checkpoint's lacks, found by walking
 * only the subtrees that differ (hs_ckpt__flush_objects). Never syncfs: it
 * would flush every other tenant's dirty pages. (libgit2's own
 * GIT_OPT_ENABLE_FSYNC_GITDIR fsyncs each loose object as it is written:
 * 20,000 interleaved fsyncs made a first checkpoint take 23 s instead of 4
 * s; it stays off.)
 * A crash before the ref leaves unreferenced objects (harmless, never listed,
 * dropped by the next prune) and maybe a stale *.lock, which the next open
 * removes: the task lock guarantees no in-process writer, and one harnessd
 * owns a data dir. The index is a cache: a torn one is dropped and rebuilt
 * by re-hashing once.
 *
 * Concurrency. libgit2 repositories are single-thread: a task's repository
 * is used only under the task's mutex (a refcounted entry in a hash map
 * keyed by task id). Different tasks run in parallel. A push to the remote
 * runs after the create released the mutex, on its own thread and
 * repository handle, bounded in time and number (push.c). on_create runs
 * outside every lock. Blocking calls: keep them off completion-queue
 * threads.
 *
 * Open-repository cache. The entry keeps the task's git_repository open
 * between calls (with it the parsed index, the stat cache, and the object
 * cache): re-opening and re-reading a 20,000-entry index costs more than the
 * stat scan itself. Idle entries (no thread in or waiting for the mutex) are
 * closed least recently used first beyond hs_ckpt_mgr_set_open_repos (32);
 * a failed write drops the task's entry (its in-memory index may be half
 * updated), delete_task and a repack drop it, and a repository that vanished
 * on disk is never served from the cache. Stale lock files are only removed
 * on a real open, i.e. once per process.
 *
 * Ownership validation (GIT_OPT_SET_OWNER_VALIDATION) stays ON: we only open
 * bare repositories we created under our data dir. A data dir restored with
 * another owner fails loudly (HS_CONFLICT) instead of silently trusting a
 * foreign repository.
 *
 * Isolation. The global/XDG/system git config search paths are emptied, so
 * a user's ~/.gitconfig cannot alter what we store; ignore rules come only
 * from the workspace's .gitignore files (ignore.c); content is stored
 * byte-exact (no filters: we hash and write blobs ourselves).
 */
#include "checkpoint_internal.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- manager and per-task locks ---------------------------------------- */

static unsigned bucket_of(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % HS_CKPT__LOCK_BUCKETS;
}

hs_ckpt__task_lock *hs_ckpt__lock(hs_ckpt_mgr *mgr, const char *task_id)
{
	pthread_mutex_lock(&mgr->map_mu);
	hs_ckpt__task_lock **b = &mgr->buckets[bucket_of(task_id)], *l;
	for (l = *b; l; l = l->next)
		if (strcmp(l->task_id, task_id) == 0)
			break;
	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l) {
			pthread_mutex_unlock(&mgr->map_mu);
			return NULL;
		}
		snprintf(l->task_id, sizeof(l->task_id), "%s", task_id);
		pthread_mutex_init(&l->mu, NULL);
		l->next = *b;
		*b = l;
	}
	l->users++;
	l->last_used = ++mgr->tick;
	l->last_used_ms = hs_clock_mono_ms();
	pthread_mutex_unlock(&mgr->map_mu);
	pthread_mutex_lock(&l->mu);
	return l;
}

/* Unlink and free an unused entry (users == 0); map_mu held. */
static void drop_entry(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l)
{
	hs_ckpt__task_lock **p = &mgr->buckets[bucket_of(l->task_id)];
	while (*p != l)
		p = &(*p)->next;
	*p = l->next;
	if (l->repo) {
		(void)hs_ckpt__index_save(l, true, l->task_id); /* the stat cache for next time */
		hs_ckpt__batch_free(l->batch);
		git_index_free(l->index);
		git_repository_free(l->repo);
		mgr->open_repos--;
	}
	hs_ckpt__track_free(mgr->watcher, l->track);
	hs_ckpt__catalog_dispose(&l->catalog);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

/* Close least recently used idle repositories beyond the bound; map_mu held.
 * An idle entry (users == 0) has no thread in or waiting for its mutex. */
static void evict(hs_ckpt_mgr *mgr)
{
	while (mgr->open_repos > mgr->max_open_repos) {
		hs_ckpt__task_lock *victim = NULL;
		for (size_t i = 0; i < HS_CKPT__LOCK_BUCKETS; i++)
			for (hs_ckpt__task_lock *l = mgr->buckets[i]; l; l = l->next)
				if (l->users == 0 && l->repo &&
				    (!victim || l->last_used < victim->last_used))
					victim = l;
		if (!victim)
			return; /* every open repo is in use: over the bound until released */
		drop_entry(mgr, victim);
	}
	/* Trackers beyond their own bound: the least recently used idle one
	 * goes (its next call walks the workspace whole, reason "evicted"). */
	while (mgr->watcher && hs_ckpt__watcher_count(mgr->watcher) > hs_ckpt__watcher_max(mgr->watcher)) {
		hs_ckpt__task_lock *victim = NULL;
		for (size_t i = 0; i < HS_CKPT__LOCK_BUCKETS; i++)
			for (hs_ckpt__task_lock *l = mgr->buckets[i]; l; l = l->next)
				if (l->users == 0 && l->track &&
				    (!victim || hs_ckpt__track_last_used(l->track) <
						    hs_ckpt__track_last_used(victim->track)))
					victim = l;
		if (!victim)
			return;
		hs_ckpt__track_free(mgr->watcher, victim->track);
		victim->track = NULL;
		victim->track_why = HS_CKPT__WHY_EVICTED;
	}
}

void hs_ckpt__unlock(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l)
{
	if (!l)
		return;
	pthread_mutex_unlock(&l->mu);
	pthread_mutex_lock(&mgr->map_mu);
	if (--l->users == 0 && !l->repo && !l->track)
		drop_entry(mgr, l);
	evict(mgr);
	pthread_mutex_unlock(&mgr->map_mu);
}

static void repo_drop(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l)
{
	hs_ckpt__catalog_dispose(&l->catalog);
	hs_ckpt__batch_free(l->batch);
	l->batch = NULL;
	git_index_free(l->index);
	l->index = NULL;
	l->index_dirty = false;
	l->repo_bytes_known = false;
	l->repo_bytes = 0;
	git_repository_free(l->repo);
	pthread_mutex_lock(&mgr->map_mu);
	l->repo = NULL;
	mgr->open_repos--;
	pthread_mutex_unlock(&mgr->map_mu);
}

void hs_ckpt__repo_forget(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l)
{
	if (!l)
		return;
	/* The index in memory may differ from the one on disk: the tracker's
	 * baseline is gone with it. */
	hs_ckpt__watch_fail(l->track);
	l->index_tree_known = false;
	if (l->repo)
		repo_drop(mgr, l);
}

void hs_ckpt__repo_reload(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l)
{
	if (l && l->repo) {
		if (hs_ckpt__index_save(l, true, l->task_id) != 0)
			hs_ckpt__watch_fail(l->track); /* disk and memory differ */
		repo_drop(mgr, l);
	}
}

int hs_ckpt__changes_begin(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l, const char *ws, int wsfd,
			   int op, hs_ckpt__changes *out, hs_error *err)
{
	hs_ckpt__why why = l->track_why ? (hs_ckpt__why)l->track_why : HS_CKPT__WHY_NEW;
	pthread_mutex_lock(&mgr->map_mu);
	uint64_t tick = ++mgr->tick;
	pthread_mutex_unlock(&mgr->map_mu);
	int rc = hs_ckpt__watch_begin(mgr->watcher, &l->track, &why, ws, wsfd, op, tick, out);
	l->track_why = (int)why;
	return rc == HS_OK ? HS_OK : hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
}

void hs_ckpt__changes_log(const hs_ckpt__changes *c, const char *task_id, const char *ws)
{
	if (c->tracked || c->why == HS_CKPT__WHY_DISABLED)
		return;
	static const char *const ops[] = { "create", "verify", "restore" };
	hs_log(c->why == HS_CKPT__WHY_NEW ? HS_LOG_INFO : HS_LOG_WARN, "checkpoint",
	       "full scan: change tracking not trusted", HS_LS("task_id", task_id),
	       HS_LS("workspace", ws), HS_LS("op", ops[c->op]),
	       HS_LS("reason", hs_ckpt__why_name(c->why)));
}

/* Called by repo_open with a freshly opened repo; l's mutex held. */
void hs_ckpt__repo_keep(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l, git_repository *repo)
{
	l->repo = repo;
	pthread_mutex_lock(&mgr->map_mu);
	mgr->open_repos++;
	pthread_mutex_unlock(&mgr->map_mu);
}

/* The index saver: every few seconds, the changed indexes of tasks nobody
 * has used for HS_CKPT__INDEX_IDLE_MS are written (a 200,000-entry index is
 * ~20 MB and ~40 ms to write: not on a request's path; a call arriving
 * during a save waits for it). A task in use is skipped, saved later. */
static void *saver_main(void *arg)
{
	hs_ckpt_mgr *mgr = arg;
	pthread_mutex_lock(&mgr->map_mu);
	while (!mgr->saver_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += HS_CKPT__INDEX_SAVE_MS / 1000;
		pthread_cond_timedwait(&mgr->saver_cv, &mgr->map_mu, &ts);
		for (size_t i = 0; i < HS_CKPT__LOCK_BUCKETS && !mgr->saver_stop; i++)
			for (hs_ckpt__task_lock *l = mgr->buckets[i]; l; l = l->next) {
				if (l->users != 0 || !l->repo || !l->index_dirty ||
				    hs_clock_mono_ms() - l->last_used_ms < HS_CKPT__INDEX_IDLE_MS)
					continue;
				if (pthread_mutex_trylock(&l->mu) != 0)
					continue;
				/* Idle and ours: pinned (users) while map_mu is let go. */
				l->users++;
				pthread_mutex_unlock(&mgr->map_mu);
				(void)hs_ckpt__index_save(l, true, l->task_id);
				pthread_mutex_unlock(&l->mu);
				pthread_mutex_lock(&mgr->map_mu);
				l->users--;
				/* The bucket list may have changed meanwhile: the entry
				 * stays (it has a repo), carry on from it. */
			}
	}
	pthread_mutex_unlock(&mgr->map_mu);
	return NULL;
}

int hs_ckpt_mgr_new(hs_ckpt_mgr **out, const hs_ckpt_config *cfg, hs_error *err)
{
	char path[PATH_MAX];
	hs_ckpt_mgr *mgr = NULL;
	int rc = HS_OK;
	if (!cfg || !cfg->repos_dir || !cfg->repos_dir[0])
		return hs_error_set(err, HS_INVALID, "checkpoint: repos_dir is required");
	const char *root = cfg->tenancy ? hs_tenancy_workspace_root(cfg->tenancy) : cfg->workspace_root;
	if (!root || !root[0])
		return hs_error_set(err, HS_INVALID, "checkpoint: workspace_root is required");
	if (git_libgit2_init() < 0)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: libgit2 init failed");
	/* Process-wide settings: checkpoint/ is the only libgit2 user. */
	static const int levels[] = { GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG,
				      GIT_CONFIG_LEVEL_GLOBAL, GIT_CONFIG_LEVEL_PROGRAMDATA };
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, levels[i], "") < 0) {
			rc = hs_ckpt__git_err(err, -1, "init", "-");
			goto fail;
		}
	/* Strict object creation makes every tree write read the header of
	 * each entry's object (a loose object: open + inflate), ~75 ms of a
	 * 10-file create at 20,000 files. Our trees only name objects we just
	 * wrote or that the index holds (its invariant: they exist), so the
	 * check buys nothing here; the differential test runs git fsck. */
	if (git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 0) < 0 || /* see "Crash safety" */
	    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, 0) < 0 ||
	    git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 1) < 0) {
		rc = hs_ckpt__git_err(err, -1, "init", "-");
		goto fail;
	}
	mgr = calloc(1, sizeof(*mgr));
	if (!mgr) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto fail;
	}
	mgr->ws_root_fd = -1;
	if (mkdir(cfg->repos_dir, 0700) != 0 && errno != EEXIST) {
		rc = hs_error_set(err, HS_INVALID, "checkpoint: repos_dir %s: %s", cfg->repos_dir,
				  strerror(errno));
		goto fail;
	}
	if (!realpath(cfg->repos_dir, path) || !(mgr->repos_dir = strdup(path))) {
		rc = hs_error_set(err, HS_INVALID, "checkpoint: repos_dir %s: %s", cfg->repos_dir,
				  strerror(errno));
		goto fail;
	}
	if (!realpath(root, path) || !(mgr->ws_root = strdup(path)) ||
	    (mgr->ws_root_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = hs_error_set(err, HS_INVALID, "checkpoint: workspace_root %s: not a directory",
				  root);
		goto fail;
	}
	hs_ckpt__fetch_cleanup(mgr->repos_dir);
	if (cfg->remote_url && cfg->remote_url[0] &&
	    !(mgr->pusher = hs_ckpt__pusher_new(cfg->remote_url, cfg->pushes_in_flight,
						cfg->push_timeout_ms))) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto fail;
	}
	if ((rc = hs_ckpt__watcher_new(&mgr->watcher, &cfg->watch, cfg->metrics, err)) != HS_OK)
		goto fail;
	mgr->scan_threads = cfg->scan_threads;
	if (mgr->scan_threads == 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		mgr->scan_threads = cpus < 1 ? 1 : cpus > 4 ? 4 : (unsigned)cpus;
	}
	mgr->tenancy = cfg->tenancy;
	mgr->durable = cfg->fsync;
	mgr->quota = cfg->quota;
	mgr->on_create = cfg->on_create;
	mgr->on_create_payload = cfg->on_create_payload;
	mgr->max_open_repos = HS_CKPT__OPEN_REPOS_DEFAULT;
	hs_ckpt__metrics_init(&mgr->metrics);
	if (cfg->metrics != NULL) {
		if ((rc = hs_metrics_add(cfg->metrics, hs_ckpt__metrics_collect, mgr, err)) != HS_OK)
			goto fail;
		mgr->registry = cfg->metrics;
	}
	pthread_mutex_init(&mgr->map_mu, NULL);
	pthread_cond_init(&mgr->saver_cv, NULL);
	mgr->saver_started = pthread_create(&mgr->saver, NULL, saver_main, mgr) == 0;
	*out = mgr;
	return HS_OK;
fail:
	if (mgr) {
		free(mgr->repos_dir);
		free(mgr->ws_root);
		if (mgr->ws_root_fd >= 0)
			close(mgr->ws_root_fd);
		hs_ckpt__pusher_release(mgr->pusher);
		hs_ckpt__watcher_free(mgr->watcher);
		free(mgr);
	}
	git_libgit2_shutdown();
	return rc;
}

void hs_ckpt_mgr_set_on_create(hs_ckpt_mgr *mgr,
			       void (*on_create)(void *payload, const char *task_id,
						 const char *checkpoint_id, int64_t step),
			       void *payload)
{
	mgr->on_create = on_create;
	mgr->on_create_payload = payload;
}

void hs_ckpt_mgr_set_fence(hs_ckpt_mgr *mgr, hs_ckpt_fence_fn fence, void *payload)
{
	mgr->fence = fence;
	mgr->fence_payload = payload;
}

bool hs_ckpt_mgr_checks_ownership(const hs_ckpt_mgr *mgr)
{
	return mgr->tenancy != NULL;
}

void hs_ckpt_mgr_set_open_repos(hs_ckpt_mgr *mgr, unsigned max_open_repos)
{
	pthread_mutex_lock(&mgr->map_mu);
	mgr->max_open_repos = max_open_repos;
	evict(mgr);
	pthread_mutex_unlock(&mgr->map_mu);
}

void hs_ckpt_mgr_free(hs_ckpt_mgr *mgr)
{
	if (!mgr)
		return;
	if (mgr->registry != NULL)
		hs_metrics_remove(mgr->registry, hs_ckpt__metrics_collect, mgr);
	if (mgr->saver_started) {
		pthread_mutex_lock(&mgr->map_mu);
		mgr->saver_stop = true;
		pthread_cond_broadcast(&mgr->saver_cv);
		pthread_mutex_unlock(&mgr->map_mu);
		pthread_join(mgr->saver, NULL);
	}
	pthread_cond_destroy(&mgr->saver_cv);
	/* Callers must have finished every call: no task lock can be in use,
	 * what is left are idle entries holding open repositories. */
	for (size_t i = 0; i < HS_CKPT__LOCK_BUCKETS; i++)
		while (mgr->buckets[i])
			drop_entry(mgr, mgr->buckets[i]);
	pthread_mutex_destroy(&mgr->map_mu);
	hs_ckpt__watcher_free(mgr->watcher);
	free(mgr->repos_dir);
	free(mgr->ws_root);
	close(mgr->ws_root_fd);
	/* Pushes still running hold their own reference (and libgit2's). */
	hs_ckpt__pusher_release(mgr->pusher);
	free(mgr);
	git_libgit2_shutdown(); /* refcounted: the last user releases libgit2 */
}

/* ---- records ------------------------------------------------------------ */

void hs_ckpt_info_dispose(hs_ckpt_info *info)
{
	if (!info)
		return;
	free(info->description);
	free(info->external_state_json);
	free(info->workspace);
	info->description = NULL;
	info->external_state_json = NULL;
	info->workspace = NULL;
}

void hs_ckpt_info_array_free(hs_ckpt_info *arr, size_t count)
{
	if (!arr)
		return;
	for (size_t i = 0; i < count; i++)
		hs_ckpt_info_dispose(&arr[i]);
	free(arr);
}

void hs_ckpt_strlist_dispose(hs_ckpt_strlist *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->count; i++)
		free(list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

void hs_ckpt_verify_result_dispose(hs_ckpt_verify_result *res)
{
	if (!res)
		return;
	hs_ckpt_strlist_dispose(&res->added);
	hs_ckpt_strlist_dispose(&res->modified);
	hs_ckpt_strlist_dispose(&res->deleted);
}


int hs_ckpt_task_exists(hs_ckpt_mgr *mgr, const char *task_id, bool *out, hs_error *err)
{
	int rc = hs_id_check_task("task_id", task_id, err);
	if (rc)
		return rc;
	char *path = hs_ckpt__repo_path(mgr, task_id);
	if (!path)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	struct stat st;
	*out = stat(path, &st) == 0;
	free(path);
	return HS_OK;
}

/* Open the task's repository if it has one (which moves an owner recorded
 * by an older version to the tenancy, see repo.c): before anyone's claim
 * or check. *has_repo: it exists. */
static int open_existing(hs_ckpt_mgr *mgr, const char *task_id, bool *has_repo, hs_error *err)
{
	hs_ckpt__task_lock *l = hs_ckpt__lock(mgr, task_id);
	if (!l)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	git_repository *repo = NULL;
	hs_error ignored = { 0 };
	*has_repo = hs_ckpt__repo_open(&repo, mgr, l, task_id, false, &ignored) == HS_OK;
	hs_ckpt__unlock(mgr, l);
	return HS_OK;
}

int hs_ckpt_access(hs_ckpt_mgr *mgr, const hs_principal *who, const char *task_id, bool claim,
		   hs_error *err)
{
	bool has_repo = false;
	int rc = hs_id_check_task("task_id", task_id, err);
	if (rc || mgr->tenancy == NULL || who == NULL)
		return rc;
	if ((rc = open_existing(mgr, task_id, &has_repo, err)))
		return rc;
	if (claim)
		return hs_tenancy_claim_task(mgr->tenancy, who, task_id, err);
	hs_error e = { 0 };
	rc = hs_tenancy_check_task(mgr->tenancy, who, task_id, NULL, &e);
	/* Admins act on everything, also on a repository whose id nobody holds
	 * (created by harnessd itself). */
	if (rc == HS_NOT_FOUND && who->is_admin && has_repo)
		return HS_OK;
	return rc ? hs_error_set(err, rc, "%s", e.msg) : HS_OK;
}

int hs_ckpt_authorize(hs_ckpt_mgr *mgr, const char *task_id, const hs_principal *who,
		      hs_error *err)
{
	if (who == NULL || who->user_id == NULL)
		return hs_error_set(err, HS_NOT_FOUND, "task %s not found", task_id ? task_id : "");
	bool exists = false;
	int rc = hs_id_check_task("task_id", task_id, err);
	if (rc || (rc = open_existing(mgr, task_id, &exists, err)))
		return rc;
	if (!exists)
		return hs_error_set(err, HS_NOT_FOUND, "task %s has no checkpoints", task_id);
	if (mgr->tenancy == NULL || who->is_admin)
		return HS_OK;
	/* Who holds the id (harnessd may look), then the one rule. */
	char owner[HS_PRINCIPAL_ID_MAX];
	hs_principal self = { "", true };
	hs_error e = { 0 };
	rc = hs_tenancy_check_task(mgr->tenancy, &self, task_id, owner, &e);
	if (rc == HS_NOT_FOUND)
		return hs_error_set(err, HS_DENIED, "task %s: its checkpoints belong to no user", task_id);
	if (rc)
		return hs_error_set(err, rc, "%s", e.msg);
	return hs_principal_may(who, owner)
		       ? HS_OK
		       : hs_error_set(err, HS_DENIED, "task %s belongs to another user", task_id);
}
