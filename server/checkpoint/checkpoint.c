/* Checkpoint manager: per-task serialization and the public operations.
 *
 * Design and invariants
 * ---------------------
 * Storage. One BARE shadow repository per task at <repos_dir>/<task_id>.git,
 * created whole or not at all (initialised in a temporary directory, then
 * renamed). The task's workspace becomes its work tree only in memory
 * (git_repository_set_workdir(..., update_gitlink = 0)): nothing of ours is
 * ever written into the workspace.
 *
 * Index = stat cache. The repo's index file is kept between calls. create
 * diffs index vs work tree (stat first; only files whose stat changed are
 * hashed; GIT_DIFF_UPDATE_INDEX refreshes entries whose stat changed but
 * content did not) and writes the index back only if that changed anything
 * (deltas or hashing), so an unchanged tree costs one lstat per file and a
 * few per directory. restore compares first (the same scan), then checks
 * out only the differing paths with our index as the baseline (the shadow
 * repo's HEAD is unborn: with it as baseline libgit2 rewrites every file),
 * and leaves the index equal to the restored tree.
 *
 * Checkpoints. A checkpoint is a commit (author/committer "harness
 * <harness@localhost>") whose message carries all metadata as one JSON object
 * (step, seq, description, external_state, created_at_ms, parent,
 * files_changed), and one ref refs/harness/checkpoints/<checkpoint_id>. The id
 * is "ckpt-<step>-<first 12 hex of the commit>": stable, derivable from the
 * repo alone, and checked against the ref name when listing. Nothing lives in
 * a file inside the snapshot, so restoring an old checkpoint never rolls back
 * the record of later ones; history is never rewritten.
 *   refs/harness/latest  -> newest checkpoint by creation (seq); informative,
 *                           readers derive "latest" from the refs themselves
 *                           (through the catalog, below).
 *   refs/harness/current -> the checkpoint last created or restored. The next
 *                           create records it as parent (git parent + "parent"
 *                           in the metadata), and a create whose tree equals
 *                           it writes nothing and reports unchanged = true.
 * seq is 1 + the highest seq among the task's refs; creates of one task are
 * serialized, so seq is strictly increasing and defines "newest first".
 *
 * Catalog. Every checkpoint's (seq, step, id, commit) and the current one
 * are kept in memory with the open repository (catalog.c): built in one pass
 * over the refs when first needed after an open, then updated by create,
 * restore and prune under the task mutex. Create, latest and the parent
 * lookup read no checkpoint commit but the parent's; a list page reads only
 * its own commits. After a restart, an eviction or any failed write the
 * catalog is rebuilt from the refs, which stay the only truth (only harnessd
 * writes these repositories).
 *
 * Crash safety. libgit2 writes objects, then refs, each through a temp or
 * lock file renamed into place. With cfg.fsync, create flushes the repo's
 * filesystem (syncfs) after writing the objects and before writing the ref,
 * and again after the refs: a checkpoint is acknowledged only once its ref is
 * durable, and a durable ref never names a missing object. (libgit2's own
 * GIT_OPT_ENABLE_FSYNC_GITDIR fsyncs every loose object: 20,000 fsyncs made a
 * first checkpoint of 20,000 files take 23 s instead of 4 s; it stays off.)
 * A crash before the ref leaves unreferenced objects (harmless, never listed)
 * and maybe a stale *.lock, which the next open removes: the task lock
 * guarantees no in-process writer, and one harnessd owns a data dir. The
 * index is a cache: a torn one is dropped and rebuilt by re-hashing once.
 *
 * Concurrency. libgit2 repositories are single-thread: a task's repository
 * is used only under the task's mutex (a refcounted entry in a hash map
 * keyed by task id). Different tasks run in parallel. Blocking calls: keep
 * them off completion-queue threads.
 *
 * Open-repository cache. The entry keeps the task's git_repository open
 * between calls (with it the parsed index, the stat cache, and the object
 * cache): re-opening and re-reading a 20,000-entry index costs more than the
 * stat scan itself. Idle entries (no thread in or waiting for the mutex) are
 * closed least recently used first beyond hs_ckpt_mgr_set_open_repos (32);
 * a failed write drops the task's entry (its in-memory index may be half
 * updated), delete_task drops it before removing the repository, and a
 * repository that vanished on disk is never served from the cache. Stale
 * lock files are only removed on a real open, i.e. once per process.
 *
 * Ownership validation (GIT_OPT_SET_OWNER_VALIDATION) stays ON: we only open
 * bare repositories we created under our data dir, and the workspace, whose
 * owner may be another uid in containers, is attached after opening and is
 * never validated. A data dir restored with another owner fails loudly
 * (HS_CONFLICT) instead of silently trusting a foreign repository.
 *
 * Isolation. The global/XDG/system git config search paths are emptied, so
 * a user's ~/.gitconfig (core.excludesFile, filters) cannot silently exclude
 * or alter files; $GIT_DIR/info/attributes disables eol/ident/filter
 * conversion so restores are byte-exact.
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

#define DESCRIPTION_MAX (64 * 1024)
#define EXTERNAL_STATE_MAX (1024 * 1024)

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
		git_repository_free(l->repo);
		mgr->open_repos--;
	}
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
}

void hs_ckpt__unlock(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l)
{
	if (!l)
		return;
	pthread_mutex_unlock(&l->mu);
	pthread_mutex_lock(&mgr->map_mu);
	if (--l->users == 0 && !l->repo)
		drop_entry(mgr, l);
	evict(mgr);
	pthread_mutex_unlock(&mgr->map_mu);
}

void hs_ckpt__repo_forget(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l)
{
	if (!l || !l->repo)
		return;
	hs_ckpt__catalog_dispose(&l->catalog);
	git_repository_free(l->repo);
	pthread_mutex_lock(&mgr->map_mu);
	l->repo = NULL;
	mgr->open_repos--;
	pthread_mutex_unlock(&mgr->map_mu);
}

/* Called by repo_open with a freshly opened repo; l's mutex held. */
void hs_ckpt__repo_keep(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l, git_repository *repo)
{
	l->repo = repo;
	pthread_mutex_lock(&mgr->map_mu);
	mgr->open_repos++;
	pthread_mutex_unlock(&mgr->map_mu);
}

int hs_ckpt_mgr_new(hs_ckpt_mgr **out, const hs_ckpt_config *cfg, hs_error *err)
{
	char path[PATH_MAX];
	hs_ckpt_mgr *mgr = NULL;
	int rc = HS_OK;
	if (!cfg || !cfg->repos_dir || !cfg->repos_dir[0])
		return hs_error_set(err, HS_INVALID, "checkpoint: repos_dir is required");
	if (!cfg->workspace_root || !cfg->workspace_root[0])
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
	if (git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 0) < 0 || /* see "Crash safety" */
	    git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 1) < 0) {
		rc = hs_ckpt__git_err(err, -1, "init", "-");
		goto fail;
	}
	mgr = calloc(1, sizeof(*mgr));
	if (!mgr) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto fail;
	}
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
	struct stat st;
	if (!realpath(cfg->workspace_root, path) || stat(path, &st) != 0 || !S_ISDIR(st.st_mode) ||
	    !(mgr->ws_root = strdup(path))) {
		rc = hs_error_set(err, HS_INVALID, "checkpoint: workspace_root %s: not a directory",
				  cfg->workspace_root);
		goto fail;
	}
	if (cfg->remote_url && cfg->remote_url[0] && !(mgr->remote_url = strdup(cfg->remote_url))) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto fail;
	}
	mgr->durable = cfg->fsync;
	mgr->max_open_repos = HS_CKPT__OPEN_REPOS_DEFAULT;
	pthread_mutex_init(&mgr->map_mu, NULL);
	*out = mgr;
	return HS_OK;
fail:
	if (mgr) {
		free(mgr->repos_dir);
		free(mgr->ws_root);
		free(mgr->remote_url);
		free(mgr);
	}
	git_libgit2_shutdown();
	return rc;
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
	/* Callers must have finished every call: no task lock can be in use,
	 * what is left are idle entries holding open repositories. */
	for (size_t i = 0; i < HS_CKPT__LOCK_BUCKETS; i++)
		while (mgr->buckets[i])
			drop_entry(mgr, mgr->buckets[i]);
	pthread_mutex_destroy(&mgr->map_mu);
	free(mgr->repos_dir);
	free(mgr->ws_root);
	free(mgr->remote_url);
	free(mgr);
	git_libgit2_shutdown(); /* refcounted: the last manager releases libgit2 */
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

int hs_ckpt_owner(hs_ckpt_mgr *mgr, const char *task_id, char out[HS_CKPT_OWNER_MAX],
		  hs_error *err)
{
	git_repository *repo = NULL;
	int rc = hs_id_check_task("task_id", task_id, err);
	if (rc)
		return rc;
	hs_ckpt__task_lock *l = hs_ckpt__lock(mgr, task_id);
	if (!l)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	if (!(rc = hs_ckpt__repo_open(&repo, mgr, l, task_id, false, NULL, err)))
		rc = hs_ckpt__read_owner(repo, task_id, out, err);
	hs_ckpt__unlock(mgr, l);
	return rc;
}

static int check_access(const char *owner, const hs_principal *caller, const char *task_id,
			hs_error *err)
{
	if (hs_principal_may(caller, owner[0] ? owner : NULL))
		return HS_OK;
	return hs_error_set(err, HS_DENIED, "task %s belongs to another user", task_id);
}

int hs_ckpt_authorize(hs_ckpt_mgr *mgr, const char *task_id, const hs_principal *caller,
		      hs_error *err)
{
	char owner[HS_CKPT_OWNER_MAX];
	if (!caller || !caller->user_id)
		return hs_error_set(err, HS_DENIED, "task %s: no caller", task_id ? task_id : "");
	int rc = hs_ckpt_owner(mgr, task_id, owner, err);
	return rc ? rc : check_access(owner, caller, task_id, err);
}

/* ---- create ------------------------------------------------------------- */

/* Push the new ref to the remote as refs/harness/<task>/checkpoints/<id>
 * (one remote serves every task). Returns a heap error message or NULL. */
static char *push_checkpoint(git_repository *repo, const char *url, const char *task_id,
			     const char *id)
{
	git_remote *remote = NULL;
	char spec[256];
	char *msg = NULL;
	snprintf(spec, sizeof(spec), "+" HS_CKPT__REF_PREFIX "%s:refs/harness/%s/checkpoints/%s", id,
		 task_id, id);
	char *specp = spec;
	git_strarray specs = { &specp, 1 };
	git_push_options po;
	git_push_options_init(&po, GIT_PUSH_OPTIONS_VERSION);
	int g = git_remote_create_anonymous(&remote, repo, url);
	if (g >= 0)
		g = git_remote_push(remote, &specs, &po);
	if (g < 0) {
		const git_error *e = git_error_last();
		if (asprintf(&msg, "push to remote failed: %s", e && e->message ? e->message : "unknown") < 0)
			msg = NULL;
		hs_log(HS_LOG_WARN, "checkpoint", "push failed", HS_LS("task_id", task_id),
		       HS_LS("checkpoint_id", id));
	}
	git_remote_free(remote);
	return msg;
}

static int check_create_args(const char *task_id, const hs_principal *caller, int64_t step,
			     const char *description, const char *ext, char **ext_norm, hs_error *err)
{
	int rc = hs_id_check_task("task_id", task_id, err);
	if (rc)
		return rc;
	if (step < 0)
		return hs_error_set(err, HS_INVALID, "step: must be >= 0");
	if (description && strlen(description) > DESCRIPTION_MAX)
		return hs_error_set(err, HS_INVALID, "description: longer than %d bytes", DESCRIPTION_MAX);
	if (caller && (!caller->user_id || strlen(caller->user_id) >= HS_CKPT_OWNER_MAX))
		return hs_error_set(err, HS_INVALID, "owner: missing or too long");
	*ext_norm = NULL;
	if (ext && ext[0]) {
		if (strlen(ext) > EXTERNAL_STATE_MAX)
			return hs_error_set(err, HS_INVALID, "external_state: larger than %d bytes",
					    EXTERNAL_STATE_MAX);
		json_t *o = json_loads(ext, 0, NULL);
		if (!o || !json_is_object(o)) {
			json_decref(o);
			return hs_error_set(err, HS_INVALID, "external_state: not a JSON object");
		}
		*ext_norm = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		if (!*ext_norm)
			return hs_error_set(err, HS_INTERNAL, "external_state: out of memory");
	}
	return HS_OK;
}

static int set_ref(git_repository *repo, const char *name, const git_oid *oid, int force,
		   const char *task_id, hs_error *err)
{
	git_reference *ref = NULL;
	int g = git_reference_create(&ref, repo, name, oid, force, "harness checkpoint");
	git_reference_free(ref);
	return g < 0 ? hs_ckpt__git_err(err, g, "write ref", task_id) : HS_OK;
}

/* caller->is_admin false with check: refuse other owners' tasks. */
static int create(hs_ckpt_mgr *mgr, const char *task_id, const char *workspace,
		  const hs_principal *caller, bool check, int64_t step, const char *description,
		  const char *external_state_json, hs_ckpt_info *out, bool *unchanged_out,
		  char **push_error_out, hs_error *err)
{
	int64_t t0 = hs_clock_mono_us(), t_scan = 0, t_tree = 0;
	char *ext = NULL, *ws = NULL, *msg = NULL;
	git_repository *repo = NULL;
	git_index *index = NULL;
	git_tree *tree = NULL, *ptree = NULL;
	git_commit *pcommit = NULL;
	git_signature *sig = NULL;
	hs_ckpt__task_lock *l = NULL;
	hs_ckpt_info info;
	memset(&info, 0, sizeof(info));
	git_oid tree_oid, commit_oid;
	int rc, g;

	if ((rc = check_create_args(task_id, caller, step, description, external_state_json, &ext, err)))
		return rc;
	if ((rc = hs_ckpt__workspace(mgr, task_id, workspace, false, &ws, err)))
		goto done;
	if (!(l = hs_ckpt__lock(mgr, task_id))) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto done;
	}
	if ((rc = hs_ckpt__repo_open(&repo, mgr, l, task_id, true, caller ? caller->user_id : NULL,
				     err)))
		goto done;
	if (check) {
		char owner[HS_CKPT_OWNER_MAX];
		if ((rc = hs_ckpt__read_owner(repo, task_id, owner, err)) ||
		    (rc = check_access(owner, caller, task_id, err)))
			goto done;
	}
	bool index_changed = false;
	size_t hashed = 0;
	if ((rc = hs_ckpt__attach(&index, repo, ws, task_id, err)) ||
	    (rc = hs_ckpt__stage(repo, index, task_id, &index_changed, &hashed, err)))
		goto done;
	t_scan = hs_clock_mono_us();
	/* An index nothing was added to, removed from or refreshed in is
	 * already on disk: skip rewriting (and renaming) the whole file. */
	if ((g = git_index_write_tree(&tree_oid, index)) < 0 ||
	    (index_changed && (g = git_index_write(index)) < 0)) {
		rc = hs_ckpt__git_err(err, g, "write index", task_id);
		goto done;
	}
	t_tree = hs_clock_mono_us();
	/* seq and parent from the catalog: no checkpoint commit is read but
	 * the parent's (built once per open repository, see catalog.c). */
	if ((rc = hs_ckpt__catalog_load(&l->catalog, repo, task_id, err)))
		goto done;
	const hs_ckpt__entry *latest = hs_ckpt__catalog_latest(&l->catalog);
	const hs_ckpt__entry *cur = hs_ckpt__catalog_current(&l->catalog);
	uint64_t next_seq = latest ? latest->seq + 1 : 1;
	char parent_id[HS_CKPT_ID_MAX] = "";
	if (cur) {
		memcpy(parent_id, cur->id, sizeof(parent_id));
		if ((g = git_commit_lookup(&pcommit, repo, &cur->commit)) < 0 ||
		    (g = git_commit_tree(&ptree, pcommit)) < 0) {
			rc = hs_ckpt__git_err(err, g, "parent", task_id);
			goto done;
		}
		if (git_oid_equal(git_tree_id(ptree), &tree_oid)) {
			if ((rc = hs_ckpt__parse_commit(pcommit, task_id, out, err)))
				goto done;
			*unchanged_out = true;
			if (push_error_out)
				*push_error_out = NULL;
			hs_log(HS_LOG_INFO, "checkpoint", "unchanged", HS_LS("task_id", task_id),
			       HS_LS("checkpoint_id", parent_id),
			       HS_LI("hashed", hashed), HS_LI("scan_us", t_scan - t0),
			       HS_LI("tree_us", t_tree - t_scan),
			       HS_LI("us", hs_clock_mono_us() - t0));
			goto done;
		}
	}
	if ((g = git_tree_lookup(&tree, repo, &tree_oid)) < 0) {
		rc = hs_ckpt__git_err(err, g, "tree", task_id);
		goto done;
	}
	if ((rc = hs_ckpt__count_changes(repo, ptree, tree, &info.files_changed, task_id, err)))
		goto done;
	snprintf(info.task_id, sizeof(info.task_id), "%s", task_id);
	info.step = step;
	info.seq = next_seq;
	info.created_at_ms = hs_clock_wall_ms();
	info.description = strdup(description ? description : "");
	info.workspace = strdup(ws + strlen(mgr->ws_root) + 1); /* ws is strictly below the root */
	if (caller)
		snprintf(info.created_by, sizeof(info.created_by), "%s", caller->user_id);
	info.external_state_json = ext;
	ext = NULL;
	memcpy(info.parent_checkpoint_id, parent_id, sizeof(info.parent_checkpoint_id));
	if (!info.description || !info.workspace || !(msg = hs_ckpt__format_message(&info))) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto done;
	}
	const git_commit *parents[1] = { pcommit };
	if ((g = git_signature_new(&sig, "harness", "harness@localhost",
				   (git_time_t)(info.created_at_ms / 1000), 0)) < 0 ||
	    (g = git_commit_create(&commit_oid, repo, NULL, sig, sig, "UTF-8", msg, tree,
				   pcommit ? 1 : 0, parents)) < 0) {
		rc = hs_ckpt__git_err(err, g, "commit", task_id);
		goto done;
	}
	hs_ckpt__make_id(info.checkpoint_id, step, &commit_oid);
	git_oid_tostr(info.commit, sizeof(info.commit), &commit_oid);
	char ref[128];
	snprintf(ref, sizeof(ref), HS_CKPT__REF_PREFIX "%s", info.checkpoint_id);
	/* Objects durable before the ref names them; the checkpoint ref is the
	 * acknowledgement, the other two follow it. */
	if ((mgr->durable && (rc = hs_ckpt__flush(repo, task_id, err))) ||
	    (rc = set_ref(repo, ref, &commit_oid, 0, task_id, err)) ||
	    (rc = set_ref(repo, HS_CKPT__REF_LATEST, &commit_oid, 1, task_id, err)) ||
	    (rc = set_ref(repo, HS_CKPT__REF_CURRENT, &commit_oid, 1, task_id, err)) ||
	    (mgr->durable && (rc = hs_ckpt__flush(repo, task_id, err))))
		goto done;
	if (hs_ckpt__catalog_append(&l->catalog, &info) != 0)
		hs_log(HS_LOG_WARN, "checkpoint", "catalog dropped, rebuilt on next use",
		       HS_LS("task_id", task_id));
	char *push_err = mgr->remote_url ? push_checkpoint(repo, mgr->remote_url, task_id,
							    info.checkpoint_id)
					 : NULL;
	if (push_error_out)
		*push_error_out = push_err;
	else
		free(push_err);
	*unchanged_out = false;
	*out = info;
	memset(&info, 0, sizeof(info));
	hs_log(HS_LOG_INFO, "checkpoint", "created", HS_LS("task_id", task_id),
	       HS_LS("checkpoint_id", out->checkpoint_id), HS_LI("files_changed", out->files_changed),
	       HS_LI("hashed", hashed), HS_LI("scan_us", t_scan - t0),
	       HS_LI("tree_us", t_tree - t_scan),
	       HS_LI("us", hs_clock_mono_us() - t0));
done:
	hs_ckpt_info_dispose(&info);
	git_signature_free(sig);
	git_tree_free(tree);
	git_tree_free(ptree);
	git_commit_free(pcommit);
	if (rc && rc != HS_DENIED && rc != HS_NOT_FOUND)
		hs_ckpt__repo_forget(mgr, l); /* maybe a half-updated index in memory */
	hs_ckpt__unlock(mgr, l);
	free(msg);
	free(ws);
	free(ext);
	return rc;
}

int hs_ckpt_create(hs_ckpt_mgr *mgr, const char *task_id, const char *workspace,
		   const hs_principal *caller, int64_t step, const char *description,
		   const char *external_state_json, hs_ckpt_info *out, bool *unchanged_out,
		   char **push_error_out, hs_error *err)
{
	return create(mgr, task_id, workspace, caller, caller != NULL, step, description,
		      external_state_json, out, unchanged_out, push_error_out, err);
}
