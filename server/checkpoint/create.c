/* CreateCheckpoint: ownership and quotas, the scan into the index, the root
 * commit with its metadata and refs, then (outside the task lock) the push
 * and the on_create notification. See checkpoint.c for the design. */
#include "checkpoint_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DESCRIPTION_MAX 4096 /* bytes, as the proto says */

void hs_ckpt_create_result_dispose(hs_ckpt_create_result *r)
{
	if (r == NULL)
		return;
	hs_ckpt_info_dispose(&r->checkpoint);
	free(r->push_error);
	r->push_error = NULL;
}

static bool exempt(const hs_principal *caller)
{
	return caller == NULL || caller->is_admin;
}

static int check_args(hs_ckpt_mgr *mgr, const char *task_id, const hs_ckpt_create_opts *o,
		      char **ext_norm, hs_error *err)
{
	int rc = hs_id_check_task("task_id", task_id, err);
	*ext_norm = NULL;
	if (rc)
		return rc;
	if (o->step < 0)
		return hs_error_set(err, HS_INVALID, "step: must be >= 0");
	if (o->description && strlen(o->description) > DESCRIPTION_MAX)
		return hs_error_set(err, HS_INVALID, "description: longer than %d bytes", DESCRIPTION_MAX);
	if (o->caller && (!o->caller->user_id || strlen(o->caller->user_id) >= HS_CKPT_OWNER_MAX))
		return hs_error_set(err, HS_INVALID, "caller: user id missing or too long");
	if (o->request_id && o->request_id[0]) {
		size_t n = strlen(o->request_id);
		if (n > HS_CKPT_REQUEST_ID_MAX)
			return hs_error_set(err, HS_INVALID, "request_id: longer than %d bytes",
					    HS_CKPT_REQUEST_ID_MAX);
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)o->request_id[i] <= 0x20 || (unsigned char)o->request_id[i] >= 0x7f)
				return hs_error_set(err, HS_INVALID,
						    "request_id: printable ASCII without spaces only");
	}
	const char *ext = o->external_state_json;
	if (ext && ext[0]) {
		size_t n = strlen(ext);
		if (n > HS_CKPT_EXTERNAL_STATE_MAX)
			return hs_error_set(err, HS_INVALID, "external_state: larger than %d bytes",
					    HS_CKPT_EXTERNAL_STATE_MAX);
		uint64_t q = mgr->quota.external_state_bytes;
		if (q && !exempt(o->caller) && n > q)
			return hs_error_set(err, HS_LIMIT,
					    "external_state quota: %zu bytes, at most %llu per checkpoint",
					    n, (unsigned long long)q);
		json_error_t je;
		json_t *j = json_loads(ext, 0, &je);
		if (j == NULL && json_error_code(&je) == json_error_out_of_memory)
			return hs_error_set(err, HS_INTERNAL, "external_state: out of memory");
		if (!j || !json_is_object(j)) {
			json_decref(j);
			return hs_error_set(err, HS_INVALID, "external_state: not a JSON object");
		}
		*ext_norm = json_dumps(j, JSON_COMPACT);
		json_decref(j);
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

static const char *gitdir_of(git_repository *repo, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", git_repository_path(repo));
	size_t n = strlen(buf);
	if (n > 1 && buf[n - 1] == '/')
		buf[n - 1] = '\0';
	return buf;
}

/* Quotas that need the repository: the number of checkpoints and its size. */
static int check_repo_quotas(hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l, git_repository *repo,
			     const char *task_id, hs_error *err)
{
	const hs_ckpt_quota *q = &mgr->quota;
	if (q->checkpoints_per_task && l->catalog.n >= q->checkpoints_per_task)
		return hs_error_set(err, HS_LIMIT,
				    "checkpoints per task quota: task %s has %zu of %llu; prune old "
				    "checkpoints (PruneCheckpoints)",
				    task_id, l->catalog.n, (unsigned long long)q->checkpoints_per_task);
	if (!q->repo_bytes)
		return HS_OK;
	if (!l->repo_bytes_known || l->repo_bytes >= q->repo_bytes) {
		/* The running figure is an upper bound: measure before refusing. */
		char dir[4096];
		uint64_t b = 0;
		if (hs_ckpt__repo_bytes(gitdir_of(repo, dir, sizeof(dir)), &b) != 0)
			return hs_error_set(err, HS_UNAVAILABLE, "checkpoint: task %s: measuring the "
					    "repository failed", task_id);
		l->repo_bytes = b;
		l->repo_bytes_known = true;
	}
	if (l->repo_bytes >= q->repo_bytes)
		return hs_error_set(err, HS_LIMIT,
				    "checkpoint repository quota: task %s uses %llu bytes of %llu; prune "
				    "old checkpoints (PruneCheckpoints)",
				    task_id, (unsigned long long)l->repo_bytes,
				    (unsigned long long)q->repo_bytes);
	return HS_OK;
}

/* A create retried with a request_id seen before: its checkpoint again. */
static int replay(git_repository *repo, const hs_ckpt__entry *e, const char *task_id,
		  hs_ckpt_create_result *out, hs_error *err)
{
	git_commit *c = NULL;
	int g = git_commit_lookup(&c, repo, &e->commit);
	if (g < 0)
		return hs_ckpt__git_err(err, g, "lookup", task_id);
	int rc = hs_ckpt__parse_commit(c, task_id, &out->checkpoint, err);
	git_commit_free(c);
	if (rc == HS_OK) {
		out->unchanged = out->checkpoint.unchanged;
		out->replayed = true;
	}
	return rc;
}

int hs_ckpt_create_with(hs_ckpt_mgr *mgr, const char *task_id, const hs_ckpt_create_opts *o,
			hs_ckpt_create_result *out, hs_error *err)
{
	int64_t t0 = hs_clock_mono_us(), t_scan = 0, t_tree = 0, t_diff = 0, t_commit = 0, t_pack = 0,
		t_flush = 0;
	char *ext = NULL, *wsname = NULL, *msg = NULL;
	int wsfd = -1;
	git_repository *repo = NULL;
	git_index *index = NULL;
	git_odb *odb = NULL;
	git_tree *tree = NULL, *ptree = NULL;
	git_commit *pcommit = NULL;
	git_signature *sig = NULL;
	hs_ckpt__task_lock *l = NULL;
	hs_ckpt__scan scan;
	memset(&scan, 0, sizeof(scan));
	hs_ckpt__delta delta;
	memset(&delta, 0, sizeof(delta));
	hs_ckpt__changes ch;
	memset(&ch, 0, sizeof(ch));
	hs_ckpt__cache cache = { 0 };
	hs_ckpt__batch *batch = NULL;
	size_t nfiles = 0, nhashed = 0;
	uint64_t written_bytes = 0;
	hs_ckpt_create_result res;
	memset(&res, 0, sizeof(res));
	hs_ckpt_info *info = &res.checkpoint;
	const hs_principal *caller = o->caller;
	bool wrote = false;
	char gitdir[4096] = "";
	git_oid tree_oid, commit_oid;
	int rc, g;

	if ((rc = check_args(mgr, task_id, o, &ext, err)) ||
	    (rc = hs_ckpt_access(mgr, caller, task_id, true, err)))
		goto done;
	/* Fenced by recovery before anything is recorded (or a default
	 * workspace made); ownership first: another user's task stays
	 * NOT_FOUND. */
	if (mgr->fence != NULL &&
	    (rc = mgr->fence(mgr->fence_payload, task_id, o->recovery_generation, err)))
		goto done;
	/* The task's default workspace is created on its first checkpoint (the
	 * README's first command works on a fresh server); a named one must
	 * exist. */
	bool by_default = !o->workspace || !o->workspace[0];
	if ((rc = hs_ckpt__workspace_open(mgr, caller, task_id, o->workspace, by_default, &wsfd,
					  &wsname, err)))
		goto done;
	if (!(l = hs_ckpt__lock(mgr, task_id))) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto done;
	}
	if ((rc = hs_ckpt__repo_open(&repo, mgr, l, task_id, true, err)) ||
	    (rc = hs_ckpt__catalog_load(&l->catalog, repo, task_id, err)))
		goto done;
	if (o->request_id && o->request_id[0]) {
		const hs_ckpt__entry *e = hs_ckpt__catalog_find_request(&l->catalog, o->request_id);
		if (e != NULL) {
			if ((rc = replay(repo, e, task_id, &res, err)) == HS_OK)
				hs_log(HS_LOG_INFO, "checkpoint", "replayed", HS_LS("task_id", task_id),
				       HS_LS("checkpoint_id", info->checkpoint_id));
			goto done;
		}
	}
	if (!exempt(caller) && (rc = check_repo_quotas(mgr, l, repo, task_id, err)))
		goto done;
	if ((rc = hs_ckpt__index(&index, l, task_id, err)))
		goto done;
	if ((g = git_repository_odb(&odb, repo)) < 0) {
		rc = hs_ckpt__git_err(err, g, "odb", task_id);
		goto done;
	}
	wrote = true;
	/* What changed since the index (tracked), or everything (full). */
	if ((rc = hs_ckpt__changes_begin(mgr, l, wsname, wsfd, HS_CKPT__OP_CREATE, &ch, err)))
		goto done;
	hs_ckpt__changes_log(&ch, task_id, wsname);
	if (hs_ckpt__cache_init(&cache, index) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto done;
	}
	/* New objects as one pack: a tracked create's all of them, a full
	 * walk's trees and commit (its blobs, and big ones, go loose; see
	 * batch.c). */
	if ((rc = hs_ckpt__batch_get(&batch, l, task_id, err)))
		goto done;
	hs_ckpt__scan_opts so = { .odb = ch.tracked ? odb : batch->loose,
				  .odb_large = ch.tracked ? batch->loose : NULL, .cache = &cache,
				  .task_id = task_id, .threads = ch.tracked ? 1 : mgr->scan_threads,
				  .watch = ch.tracked || ch.watching ? ch.track : NULL };
	if (!exempt(caller)) {
		so.max_files = mgr->quota.workspace_files;
		so.max_bytes = mgr->quota.workspace_bytes;
	}
	bool index_changed = false;
	if (ch.tracked) {
		uint64_t tf = 0, tb = 0;
		if ((rc = hs_ckpt__track_read(wsfd, &so, &ch.paths, &delta, err)))
			goto done;
		hs_ckpt__delta_totals(&cache, &delta, &tf, &tb);
		if (so.max_files && tf > so.max_files) {
			rc = hs_error_set(err, HS_LIMIT,
					  "workspace quota: more than %llu files to checkpoint (task %s); "
					  "remove files or ignore them in .gitignore",
					  (unsigned long long)so.max_files, task_id);
			goto done;
		}
		if (so.max_bytes && tb > so.max_bytes) {
			rc = hs_error_set(err, HS_LIMIT,
					  "workspace quota: more than %llu bytes to checkpoint (task %s); "
					  "remove files or ignore them in .gitignore",
					  (unsigned long long)so.max_bytes, task_id);
			goto done;
		}
		if ((rc = hs_ckpt__delta_apply(index, &cache, &delta, &index_changed, task_id, err)))
			goto done;
		nfiles = (size_t)tf;
		nhashed = delta.found.hashed;
		written_bytes = delta.found.written_bytes;
		for (size_t i = 0; i < delta.found.files.n; i++)
			if (delta.found.files.v[i].multi_link)
				hs_ckpt__watch_multi(ch.track, delta.found.files.v[i].path);
	} else {
		if ((rc = hs_ckpt__scan_workspace(wsfd, &so, &scan, err)) ||
		    (rc = hs_ckpt__index_apply(index, &scan.files, &index_changed, task_id, err)))
			goto done;
		nfiles = scan.files.n;
		nhashed = scan.hashed;
		written_bytes = scan.written_bytes;
		for (size_t i = 0; ch.watching && i < scan.files.n; i++)
			if (scan.files.v[i].multi_link)
				hs_ckpt__watch_multi(ch.track, scan.files.v[i].path);
	}
	hs_ckpt__cache_dispose(&cache); /* stale now */
	t_scan = hs_clock_mono_us();
	if (index_changed)
		l->index_dirty = true;
	if ((g = git_index_write_tree_to(&tree_oid, index, repo)) < 0 ||
	    (g = git_tree_lookup(&tree, repo, &tree_oid)) < 0) {
		rc = hs_ckpt__git_err(err, g, "write tree", task_id);
		goto done;
	}
	t_tree = hs_clock_mono_us();
	const hs_ckpt__entry *latest = hs_ckpt__catalog_latest(&l->catalog);
	const hs_ckpt__entry *cur = hs_ckpt__catalog_current(&l->catalog);
	if (cur) {
		memcpy(info->parent_checkpoint_id, cur->id, sizeof(info->parent_checkpoint_id));
		if ((g = git_commit_lookup(&pcommit, repo, &cur->commit)) < 0 ||
		    (g = git_commit_tree(&ptree, pcommit)) < 0) {
			rc = hs_ckpt__git_err(err, g, "parent", task_id);
			goto done;
		}
	}
	res.unchanged = ptree && git_oid_equal(git_tree_id(ptree), &tree_oid);
	if (!res.unchanged &&
	    (rc = hs_ckpt__count_changes(repo, ptree, tree, &info->files_changed, task_id, err)))
		goto done;
	t_diff = hs_clock_mono_us();
	snprintf(info->task_id, sizeof(info->task_id), "%s", task_id);
	info->step = o->step;
	info->seq = latest ? latest->seq + 1 : 1;
	info->unchanged = res.unchanged;
	info->created_at_ms = hs_clock_wall_ms();
	info->description = strdup(o->description ? o->description : "");
	info->workspace = wsname;
	wsname = NULL;
	if (caller)
		snprintf(info->created_by, sizeof(info->created_by), "%s", caller->user_id);
	info->external_state_json = ext;
	ext = NULL;
	if (!info->description || !(msg = hs_ckpt__format_message(info, o->request_id))) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto done;
	}
	/* A root commit: the parent lives in the metadata, so a pruned
	 * checkpoint is reachable from nothing (gc.c). */
	if ((g = git_signature_new(&sig, "harness", "harness@localhost",
				   (git_time_t)(info->created_at_ms / 1000), 0)) < 0 ||
	    (g = git_commit_create(&commit_oid, repo, NULL, sig, sig, "UTF-8", msg, tree, 0,
				   NULL)) < 0) {
		rc = hs_ckpt__git_err(err, g, "commit", task_id);
		goto done;
	}
	t_commit = t_pack = hs_clock_mono_us();
	/* What is in memory becomes one pack of the repository (durable). */
	if ((rc = hs_ckpt__batch_commit(batch, repo, tree, ptree, &commit_oid, mgr->durable, task_id,
					err)))
		goto done;
	t_pack = hs_clock_mono_us();
	hs_ckpt__make_id(info->checkpoint_id, o->step, &commit_oid);
	git_oid_tostr(info->commit, sizeof(info->commit), &commit_oid);
	char ref[128];
	snprintf(ref, sizeof(ref), HS_CKPT__REF_PREFIX "%s", info->checkpoint_id);
	/* Objects durable before the ref names them; the checkpoint ref is the
	 * acknowledgement, the other two follow it. Only what this checkpoint
	 * wrote is fsync()ed: the objects its tree has and its parent's lacks,
	 * the commit, the refs and their directories (never syncfs: other
	 * tenants' dirty pages are not ours to flush). */
	const char *const refs[] = { ref, HS_CKPT__REF_LATEST, HS_CKPT__REF_CURRENT, "refs/harness",
				     NULL };
	if ((mgr->durable &&
	     (rc = hs_ckpt__flush_objects(repo, tree, ptree, &commit_oid, task_id, err))) ||
	    (t_flush = hs_clock_mono_us(), 0) ||
	    (rc = set_ref(repo, ref, &commit_oid, 0, task_id, err)) ||
	    (rc = set_ref(repo, HS_CKPT__REF_LATEST, &commit_oid, 1, task_id, err)) ||
	    (rc = set_ref(repo, HS_CKPT__REF_CURRENT, &commit_oid, 1, task_id, err)) ||
	    (mgr->durable && (rc = hs_ckpt__flush_refs(repo, refs, task_id, err))))
		goto done;
	git_oid_cpy(&l->index_tree, &tree_oid);
	l->index_tree_known = true;
	/* The index file (a cache, rewritten whole) only now, when every blob
	 * it names is durable: after a full walk here, while tracked by the
	 * saver thread once the task is idle (see hs_ckpt__index_save). */
	(void)(ch.tracked ? 0 : hs_ckpt__index_save(l, true, task_id));
	if (hs_ckpt__catalog_append(&l->catalog, info, o->request_id) != 0)
		hs_log(HS_LOG_WARN, "checkpoint", "catalog dropped, rebuilt on next use",
		       HS_LS("task_id", task_id));
	/* An upper bound of what this create added (blobs at their raw size,
	 * trees and the commit); measured again before it could refuse one. */
	l->repo_bytes += written_bytes + 256 * (uint64_t)nhashed + strlen(msg) + 1024;
	gitdir_of(repo, gitdir, sizeof(gitdir));
	hs_log(HS_LOG_INFO, "checkpoint", "created", HS_LS("task_id", task_id),
	       HS_LS("checkpoint_id", info->checkpoint_id), HS_LI("files_changed", info->files_changed),
	       HS_LB("unchanged", res.unchanged), HS_LI("files", nfiles),
	       HS_LI("hashed", nhashed), HS_LS("scan", ch.tracked ? "tracked" : "full"),
	       HS_LS("reason", hs_ckpt__why_name(ch.why)), HS_LI("paths", ch.paths.count),
	       HS_LI("scan_us", t_scan - t0), HS_LI("tree_us", t_tree - t_scan),
	       HS_LI("diff_us", t_diff - t_tree), HS_LI("commit_us", t_commit - t_diff),
	       HS_LI("pack_us", t_pack - t_commit), HS_LI("flush_us", t_flush ? t_flush - t_pack : 0),
	       HS_LI("refs_us", hs_clock_mono_us() - (t_flush ? t_flush : t_pack)),
	       HS_LI("us", hs_clock_mono_us() - t0));
	/* One pack per create: merge the small ones now and then. */
	if (hs_ckpt__packs_maintain(repo, mgr->durable, task_id)) {
		git_tree_free(tree);
		git_tree_free(ptree);
		git_commit_free(pcommit);
		tree = ptree = NULL;
		pcommit = NULL;
		git_odb_free(odb);
		odb = NULL;
		hs_ckpt__repo_reload(mgr, l);
	}
done:
	git_signature_free(sig);
	git_tree_free(tree);
	git_tree_free(ptree);
	git_commit_free(pcommit);
	git_odb_free(odb);
	hs_ckpt__scan_dispose(&scan);
	hs_ckpt__delta_dispose(&delta);
	hs_ckpt__cache_dispose(&cache);
	hs_ckpt__changes_dispose(&ch);
	if (rc && wrote)
		hs_ckpt__repo_forget(mgr, l); /* maybe a half-updated index in memory */
	hs_ckpt__unlock(mgr, l);
	if (wsfd >= 0)
		close(wsfd);
	free(msg);
	free(wsname);
	free(ext);
	if (rc) {
		hs_ckpt__metrics_create(&mgr->metrics, rc, 0, 0);
		hs_ckpt_create_result_dispose(&res);
		return rc;
	}
	if (!res.replayed) {
		/* Outside the task lock: a slow remote delays only this reply. */
		if (mgr->pusher)
			res.push_error = hs_ckpt__push(mgr->pusher, gitdir, task_id, info->checkpoint_id);
		if (mgr->on_create)
			mgr->on_create(mgr->on_create_payload, task_id, info->checkpoint_id, info->step);
		hs_ckpt__metrics_create(&mgr->metrics, HS_OK, hs_clock_mono_us() - t0,
					info->files_changed);
	}
	*out = res;
	return HS_OK;
}

int hs_ckpt_create(hs_ckpt_mgr *mgr, const char *task_id, const char *workspace,
		   const hs_principal *caller, int64_t step, const char *description,
		   const char *external_state_json, hs_ckpt_info *out, bool *unchanged_out,
		   char **push_error_out, hs_error *err)
{
	hs_ckpt_create_opts o = { caller, workspace, step, description, external_state_json, NULL, 0 };
	hs_ckpt_create_result r;
	int rc = hs_ckpt_create_with(mgr, task_id, &o, &r, err);
	if (rc)
		return rc;
	*out = r.checkpoint;
	*unchanged_out = r.unchanged;
	if (push_error_out)
		*push_error_out = r.push_error;
	else
		free(r.push_error);
	return HS_OK;
}
