/* The checkpoint operations other than create: restore, get/latest/list,
 * verify, diff, prune and task removal. See checkpoint.c for the design. */
#include "checkpoint_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every operation: validate the id, take the task lock, open the repo. */
typedef struct op {
	hs_ckpt_mgr *mgr;
	const char *task_id;
	hs_ckpt__task_lock *lock;
	git_repository *repo;
} op;

static int op_begin(op *o, hs_ckpt_mgr *mgr, const char *task_id, hs_error *err)
{
	memset(o, 0, sizeof(*o));
	o->mgr = mgr;
	o->task_id = task_id;
	int rc = hs_id_check_task("task_id", task_id, err);
	if (rc)
		return rc;
	if (!(o->lock = hs_ckpt__lock(mgr, task_id)))
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	return hs_ckpt__repo_open(&o->repo, mgr, o->lock, task_id, false, err);
}

/* failed_write: the call may have left the cached repo's index half-updated
 * in memory; drop it so the next call reloads from disk. */
static void op_end(op *o, bool failed_write)
{
	if (failed_write)
		hs_ckpt__repo_forget(o->mgr, o->lock);
	hs_ckpt__unlock(o->mgr, o->lock);
}

/* The workspace argument, or the one recorded in the checkpoint when empty. */
static const char *ws_or_recorded(const char *workspace, const hs_ckpt_info *info)
{
	if (workspace && workspace[0])
		return workspace;
	return info->workspace && info->workspace[0] ? info->workspace : NULL;
}

/* Files seen with several links: the tracker re-checks them every time. */
static void mark_multi(const hs_ckpt__changes *ch, const hs_ckpt__files *fl)
{
	for (size_t i = 0; ch->track && i < fl->n; i++)
		if (fl->v[i].multi_link)
			hs_ckpt__watch_multi(ch->track, fl->v[i].path);
}

/* Where a verify's full walk (now) differs from the index (c): the paths
 * the tracker must re-check, so index + changes describe the workspace. */
static void mark_differences(const hs_ckpt__changes *ch, const hs_ckpt__cache *c,
			     const hs_ckpt__files *now)
{
	size_t i = 0, j = 0;
	while (i < c->n || j < now->n) {
		int cmp = i == c->n ? 1 : j == now->n ? -1 : strcmp(c->v[i]->path, now->v[j].path);
		if (cmp < 0) {
			hs_ckpt__watch_mark(ch->track, c->v[i++]->path);
		} else if (cmp > 0) {
			hs_ckpt__watch_mark(ch->track, now->v[j++].path);
		} else {
			if (c->v[i]->mode != now->v[j].mode || !git_oid_equal(&c->v[i]->id, &now->v[j].id))
				hs_ckpt__watch_mark(ch->track, now->v[j].path);
			i++;
			j++;
		}
	}
}

/* A checkpoint's commit: by id, or the newest when id is NULL/"". */
static int resolve(git_commit **out, op *o, const char *checkpoint_id, hs_error *err)
{
	if (checkpoint_id && checkpoint_id[0])
		return hs_ckpt__lookup(out, o->repo, o->task_id, checkpoint_id, err);
	int rc = hs_ckpt__catalog_load(&o->lock->catalog, o->repo, o->task_id, err);
	if (rc)
		return rc;
	const hs_ckpt__entry *e = hs_ckpt__catalog_latest(&o->lock->catalog);
	if (!e)
		return hs_error_set(err, HS_NOT_FOUND, "task %s has no checkpoints", o->task_id);
	int g = git_commit_lookup(out, o->repo, &e->commit);
	return g < 0 ? hs_ckpt__git_err(err, g, "lookup", o->task_id) : HS_OK;
}

/* op_begin for a restore, then the checkpoint's commit. One this node
 * lacks (its task was recovered here after its node died) is fetched from
 * the checkpoint remote first, into a new shadow repository if need be
 * (fetch.c), before anything in the workspace is touched. */
static int restore_begin(op *o, hs_ckpt_mgr *mgr, const char *task_id, const char *checkpoint_id,
			 git_commit **c, hs_error *err)
{
	int rc = op_begin(o, mgr, task_id, err);
	if (rc == HS_NOT_FOUND && o->lock != NULL && mgr->pusher != NULL)
		rc = hs_ckpt__repo_open(&o->repo, mgr, o->lock, task_id, true, err);
	if (rc)
		return rc;
	rc = hs_ckpt__lookup(c, o->repo, task_id, checkpoint_id, err);
	if (rc != HS_NOT_FOUND || mgr->pusher == NULL)
		return rc;
	if ((rc = hs_ckpt__fetch(mgr, o->repo, task_id, checkpoint_id, err)))
		return rc;
	hs_ckpt__catalog_dispose(&o->lock->catalog); /* a new ref: rebuilt on next use */
	return hs_ckpt__lookup(c, o->repo, task_id, checkpoint_id, err);
}

int hs_ckpt_restore_as(hs_ckpt_mgr *mgr, const hs_principal *who, const char *task_id,
		       const char *checkpoint_id, const char *workspace, hs_ckpt_info *out,
		       uint32_t *files_restored, uint32_t *files_removed, hs_error *err)
{
	op o;
	int wsfd = -1;
	git_commit *c = NULL;
	git_tree *tree = NULL;
	git_index *index = NULL;
	hs_ckpt__scan now;
	memset(&now, 0, sizeof(now));
	hs_ckpt__files target = { 0 }, final = { 0 };
	hs_ckpt_info info;
	memset(&info, 0, sizeof(info));
	hs_ckpt__delta delta;
	memset(&delta, 0, sizeof(delta));
	hs_ckpt__changes ch;
	memset(&ch, 0, sizeof(ch));
	hs_ckpt__cache cache = { 0 };
	hs_ckpt_strlist left = { 0 };
	char *wsname = NULL;
	bool wrote = false, changed = false;
	uint32_t written = 0, removed = 0;
	int g, rc;
	int64_t t0 = hs_clock_mono_us(), t_scan = 0;
	memset(&o, 0, sizeof(o));
	if ((rc = hs_ckpt__check_id(checkpoint_id, err)) ||
	    (rc = hs_ckpt_access(mgr, who, task_id, false, err)) ||
	    (rc = restore_begin(&o, mgr, task_id, checkpoint_id, &c, err)))
		goto done;
	if ((rc = hs_ckpt__parse_commit(c, task_id, &info, err)) ||
	    (rc = hs_ckpt__workspace_open(mgr, who, task_id, ws_or_recorded(workspace, &info), true,
					  &wsfd, &wsname, err)) ||
	    (rc = hs_ckpt__index(&index, o.lock, task_id, err)))
		goto done;
	if ((g = git_commit_tree(&tree, c)) < 0) {
		rc = hs_ckpt__git_err(err, g, "restore", task_id);
		goto done;
	}
	/* What is there now (stat-cached or tracked, nothing written to the
	 * repository), then only what differs is written or removed, beneath
	 * the workspace. */
	wrote = true;
	if ((rc = hs_ckpt__changes_begin(mgr, o.lock, wsname, wsfd, HS_CKPT__OP_RESTORE, &ch, err)))
		goto done;
	hs_ckpt__changes_log(&ch, task_id, wsname);
	if (hs_ckpt__cache_init(&cache, index) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto done;
	}
	hs_ckpt__scan_opts so = { .odb = NULL, .cache = &cache, .task_id = task_id,
				  .threads = ch.tracked ? 1 : mgr->scan_threads,
				  .watch = ch.tracked || ch.watching ? ch.track : NULL };
	if ((rc = hs_ckpt__tree_files(tree, &target, task_id, err)))
		goto done;
	if (ch.tracked) {
		if ((rc = hs_ckpt__track_read(wsfd, &so, &ch.paths, &delta, err)) ||
		    (rc = hs_ckpt__delta_overlay(&cache, &delta, &now.files, err)))
			goto done;
		now.roots_unknown = true;
		mark_multi(&ch, &delta.found.files);
	} else {
		if ((rc = hs_ckpt__scan_workspace(wsfd, &so, &now, err)))
			goto done;
		if (ch.watching)
			mark_multi(&ch, &now.files);
	}
	hs_ckpt__cache_dispose(&cache);
	t_scan = hs_clock_mono_us();
	if ((rc = hs_ckpt__restore_files(o.repo, wsfd, &target, &now, &final, &written, &removed,
					 &left, task_id, err)) ||
	    (rc = hs_ckpt__index_apply(index, &final, &changed, task_id, err)))
		goto done;
	if (changed)
		o.lock->index_dirty = true;
	if (((ch.tracked ? 0 : hs_ckpt__index_save(o.lock, true, task_id)) != 0 && (g = -1) < 0) ||
	    (g = git_reference_create(NULL, o.repo, HS_CKPT__REF_CURRENT, git_commit_id(c), 1,
				       "harness restore")) < 0) {
		rc = hs_ckpt__git_err(err, g, "restore", task_id);
		goto done;
	}
	git_oid_cpy(&o.lock->index_tree, git_tree_id(tree));
	o.lock->index_tree_known = true;
	/* Files left alone (a nested repository's the checkpoint lacks) are on
	 * disk but not in the index now: the next call must look at them. */
	for (size_t i = 0; ch.track && i < left.count; i++)
		hs_ckpt__watch_mark(ch.track, left.items[i]);
	hs_ckpt__catalog_set_current(&o.lock->catalog, info.seq);
	*out = info;
	memset(&info, 0, sizeof(info));
	if (files_restored)
		*files_restored = written;
	if (files_removed)
		*files_removed = removed;
	hs_log(HS_LOG_INFO, "checkpoint", "restored", HS_LS("task_id", task_id),
	       HS_LS("checkpoint_id", checkpoint_id), HS_LI("written", written),
	       HS_LI("removed", removed), HS_LS("scan", ch.tracked ? "tracked" : "full"),
	       HS_LS("reason", hs_ckpt__why_name(ch.why)), HS_LI("paths", ch.paths.count),
	       HS_LI("scan_us", t_scan - t0),
	       HS_LI("us", hs_clock_mono_us() - t0));
done:
	hs_ckpt_info_dispose(&info);
	hs_ckpt__scan_dispose(&now);
	hs_ckpt__files_dispose(&target);
	hs_ckpt__files_dispose(&final);
	hs_ckpt__delta_dispose(&delta);
	hs_ckpt__cache_dispose(&cache);
	hs_ckpt__changes_dispose(&ch);
	hs_ckpt_strlist_dispose(&left);
	free(wsname);
	git_tree_free(tree);
	git_commit_free(c);
	if (wsfd >= 0)
		close(wsfd);
	if (o.lock)
		op_end(&o, rc && wrote);
	hs_ckpt__metrics_restore(&mgr->metrics, rc, hs_clock_mono_us() - t0);
	return rc;
}

int hs_ckpt_restore(hs_ckpt_mgr *mgr, const char *task_id, const char *checkpoint_id,
		    const char *workspace, hs_ckpt_info *out, uint32_t *files_restored,
		    uint32_t *files_removed, hs_error *err)
{
	return hs_ckpt_restore_as(mgr, NULL, task_id, checkpoint_id, workspace, out, files_restored,
				  files_removed, err);
}

int hs_ckpt_get(hs_ckpt_mgr *mgr, const char *task_id, const char *checkpoint_id,
		hs_ckpt_info *out, hs_error *err)
{
	op o;
	git_commit *c = NULL;
	int rc = op_begin(&o, mgr, task_id, err);
	if (!rc && !(rc = hs_ckpt__lookup(&c, o.repo, task_id, checkpoint_id, err)))
		rc = hs_ckpt__parse_commit(c, task_id, out, err);
	git_commit_free(c);
	op_end(&o, false);
	return rc;
}

int hs_ckpt_latest(hs_ckpt_mgr *mgr, const char *task_id, hs_ckpt_info *out, hs_error *err)
{
	op o;
	git_commit *c = NULL;
	int rc = op_begin(&o, mgr, task_id, err);
	if (!rc && !(rc = resolve(&c, &o, NULL, err)))
		rc = hs_ckpt__parse_commit(c, task_id, out, err);
	git_commit_free(c);
	op_end(&o, false);
	return rc;
}

/* Page tokens are "s<seq>": continue with checkpoints older than seq. They
 * survive prunes and creates between pages. */
static int parse_token(const char *tok, uint64_t *seq, hs_error *err)
{
	if (!tok || !tok[0]) {
		*seq = UINT64_MAX;
		return HS_OK;
	}
	char *end = NULL;
	errno = 0;
	if (tok[0] != 's' || tok[1] < '0' || tok[1] > '9')
		return hs_error_set(err, HS_INVALID, "page_token: malformed");
	unsigned long long v = strtoull(tok + 1, &end, 10);
	if (errno || *end != '\0')
		return hs_error_set(err, HS_INVALID, "page_token: malformed");
	*seq = v;
	return HS_OK;
}

int hs_ckpt_list(hs_ckpt_mgr *mgr, const char *task_id, int64_t before_step,
		 const char *page_token, uint32_t page_size, hs_ckpt_info **out, size_t *count,
		 char **next_page_token, hs_error *err)
{
	op o;
	hs_ckpt_info *page = NULL;
	size_t k = 0;
	uint64_t below = UINT64_MAX;
	int rc = parse_token(page_token, &below, err);
	if (rc)
		return rc;
	if (before_step < 0)
		return hs_error_set(err, HS_INVALID, "before_step: must be >= 0");
	if (page_size == 0)
		page_size = HS_CKPT_PAGE_DEFAULT;
	if (page_size > HS_CKPT_PAGE_MAX)
		page_size = HS_CKPT_PAGE_MAX;
	if ((rc = op_begin(&o, mgr, task_id, err)) ||
	    (rc = hs_ckpt__catalog_load(&o.lock->catalog, o.repo, task_id, err)))
		goto done;
	/* Newest first from just below the token: only the page's own commits
	 * are read (the filter needs only the catalog's steps). */
	const hs_ckpt__catalog *cat = &o.lock->catalog;
	size_t i = hs_ckpt__catalog_below(cat, below);
	bool more = false;
	while (i-- > 0) {
		const hs_ckpt__entry *e = &cat->v[i];
		if (before_step > 0 && e->step >= before_step)
			continue;
		if (k == page_size) {
			more = true;
			break;
		}
		if (!page && !(page = calloc(page_size, sizeof(*page)))) {
			rc = hs_error_set(err, HS_INTERNAL, "checkpoint list: out of memory");
			goto done;
		}
		git_commit *c = NULL;
		int g = git_commit_lookup(&c, o.repo, &e->commit);
		if (g < 0) {
			rc = hs_ckpt__git_err(err, g, "list", task_id);
			goto done;
		}
		rc = hs_ckpt__parse_commit(c, task_id, &page[k], err);
		git_commit_free(c);
		if (rc)
			goto done;
		k++;
	}
	char *tok = NULL;
	if (more && asprintf(&tok, "s%" PRIu64, page[k - 1].seq) < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint list: out of memory");
		goto done;
	}
	*next_page_token = tok;
	*out = page;
	*count = k;
	page = NULL;
	k = 0;
done:
	hs_ckpt_info_array_free(page, k);
	op_end(&o, false);
	return rc;
}

int hs_ckpt_verify_as(hs_ckpt_mgr *mgr, const hs_principal *who, const char *task_id,
		      const char *checkpoint_id, const char *workspace,
		      hs_ckpt_verify_result *out, hs_error *err)
{
	op o;
	int wsfd = -1;
	git_commit *c = NULL;
	git_tree *tree = NULL;
	git_index *index = NULL;
	hs_ckpt__scan now;
	memset(&now, 0, sizeof(now));
	hs_ckpt__files target = { 0 };
	hs_ckpt_info info;
	memset(&info, 0, sizeof(info));
	hs_ckpt__delta delta;
	memset(&delta, 0, sizeof(delta));
	hs_ckpt__changes ch;
	memset(&ch, 0, sizeof(ch));
	hs_ckpt__cache cache = { 0 };
	char *wsname = NULL;
	int g, rc;
	memset(&o, 0, sizeof(o));
	if ((rc = hs_ckpt_access(mgr, who, task_id, false, err)) ||
	    (rc = op_begin(&o, mgr, task_id, err)) || (rc = resolve(&c, &o, checkpoint_id, err)) ||
	    (rc = hs_ckpt__parse_commit(c, task_id, &info, err)) ||
	    (rc = hs_ckpt__workspace_open(mgr, who, task_id, ws_or_recorded(workspace, &info), false,
					  &wsfd, &wsname, err)) ||
	    (rc = hs_ckpt__index(&index, o.lock, task_id, err)))
		goto done;
	if ((g = git_commit_tree(&tree, c)) < 0) {
		rc = hs_ckpt__git_err(err, g, "verify", task_id);
		goto done;
	}
	if ((rc = hs_ckpt__changes_begin(mgr, o.lock, wsname, wsfd, HS_CKPT__OP_VERIFY, &ch, err)))
		goto done;
	hs_ckpt__changes_log(&ch, task_id, wsname);
	if (hs_ckpt__cache_init(&cache, index) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto done;
	}
	hs_ckpt__scan_opts so = { .odb = NULL, .cache = &cache, .task_id = task_id,
				  .threads = ch.tracked ? 1 : mgr->scan_threads,
				  .watch = ch.tracked || ch.watching ? ch.track : NULL };
	hs_ckpt_verify_result res;
	bool refreshed = false;
	const hs_ckpt__files *seen = NULL; /* what was stat()ed (for the refresh) */
	if (ch.tracked) {
		if ((rc = hs_ckpt__track_read(wsfd, &so, &ch.paths, &delta, err)))
			goto done;
		if (o.lock->index_tree_known && git_oid_equal(&o.lock->index_tree, git_tree_id(tree))) {
			/* The index holds this checkpoint: only the changed paths can differ. */
			if ((rc = hs_ckpt__delta_compare(&cache, &delta, &res, err)))
				goto done;
		} else if ((rc = hs_ckpt__delta_overlay(&cache, &delta, &now.files, err)) ||
			   (rc = hs_ckpt__tree_files(tree, &target, task_id, err)) ||
			   (rc = hs_ckpt__compare_files(&now.files, &target, &res, err))) {
			goto done;
		}
		mark_multi(&ch, &delta.found.files);
		seen = &delta.found.files;
	} else {
		if ((rc = hs_ckpt__tree_files(tree, &target, task_id, err)) ||
		    (rc = hs_ckpt__scan_workspace(wsfd, &so, &now, err)) ||
		    (rc = hs_ckpt__compare_files(&now.files, &target, &res, err)))
			goto done;
		if (ch.watching) {
			/* This walk is the tracker's baseline: what differs from the
			 * index is what the next call must look at. */
			mark_differences(&ch, &cache, &now.files);
			mark_multi(&ch, &now.files);
		}
		seen = &now.files;
	}
	hs_ckpt__cache_dispose(&cache);
	/* Keep the stat refreshes the comparison proved safe (best effort). */
	hs_error e = { 0 };
	if (hs_ckpt__index_refresh(index, seen, &refreshed, task_id, &e) != HS_OK)
		hs_log(HS_LOG_WARN, "checkpoint", "index refresh after verify failed",
		       HS_LS("task_id", task_id));
	if (refreshed)
		o.lock->index_dirty = true;
	(void)(ch.tracked ? 0 : hs_ckpt__index_save(o.lock, true, task_id));
	memcpy(res.checkpoint_id, info.checkpoint_id, sizeof(res.checkpoint_id));
	*out = res;
done:
	hs_ckpt_info_dispose(&info);
	hs_ckpt__scan_dispose(&now);
	hs_ckpt__files_dispose(&target);
	hs_ckpt__delta_dispose(&delta);
	hs_ckpt__cache_dispose(&cache);
	if (rc != HS_OK)
		hs_ckpt__watch_fail(ch.track);
	hs_ckpt__changes_dispose(&ch);
	free(wsname);
	git_tree_free(tree);
	git_commit_free(c);
	if (wsfd >= 0)
		close(wsfd);
	if (o.lock)
		op_end(&o, false);
	return rc;
}

int hs_ckpt_verify(hs_ckpt_mgr *mgr, const char *task_id, const char *checkpoint_id,
		   const char *workspace, hs_ckpt_verify_result *out, hs_error *err)
{
	return hs_ckpt_verify_as(mgr, NULL, task_id, checkpoint_id, workspace, out, err);
}

/* The tree to diff from when no from id is given: the checkpoint `to` was
 * taken on top of (its metadata's parent), or none (the empty tree). */
static int parent_side(git_tree **tree, char from_id[HS_CKPT_ID_MAX], op *o, git_commit *to,
		       hs_error *err)
{
	hs_ckpt_info info;
	git_commit *p = NULL;
	int g, rc;
	from_id[0] = '\0';
	*tree = NULL;
	if ((rc = hs_ckpt__parse_commit(to, o->task_id, &info, err)))
		return rc;
	memcpy(from_id, info.parent_checkpoint_id, HS_CKPT_ID_MAX);
	hs_ckpt_info_dispose(&info);
	if (from_id[0] == '\0')
		return HS_OK;
	hs_error e = { 0 };
	if ((rc = hs_ckpt__lookup(&p, o->repo, o->task_id, from_id, &e)) == HS_NOT_FOUND)
		return hs_error_set(err, HS_NOT_FOUND,
				    "checkpoint %s: its parent %s was pruned; give from_checkpoint_id",
				    info.checkpoint_id, from_id);
	if (rc)
		return hs_error_set(err, rc, "%s", e.msg);
	if ((g = git_commit_tree(tree, p)) < 0)
		rc = hs_ckpt__git_err(err, g, "diff", o->task_id);
	git_commit_free(p);
	return rc;
}

int hs_ckpt_diff(hs_ckpt_mgr *mgr, const char *task_id, const char *from_id, const char *to_id,
		 char *from_out, char *to_out, hs_ckpt_diff_entry **out, size_t *count,
		 hs_error *err)
{
	op o;
	git_commit *a = NULL, *b = NULL;
	git_tree *ta = NULL, *tb = NULL;
	char from_res[HS_CKPT_ID_MAX] = "", to_res[HS_CKPT_ID_MAX] = "";
	int g;
	int rc = op_begin(&o, mgr, task_id, err);
	if (rc || (rc = resolve(&b, &o, to_id, err)))
		goto done;
	{
		hs_ckpt_info info;
		if ((rc = hs_ckpt__parse_commit(b, task_id, &info, err)))
			goto done;
		memcpy(to_res, info.checkpoint_id, sizeof(to_res));
		hs_ckpt_info_dispose(&info);
	}
	if ((g = git_commit_tree(&tb, b)) < 0) {
		rc = hs_ckpt__git_err(err, g, "diff", task_id);
		goto done;
	}
	if (from_id && from_id[0]) {
		if ((rc = hs_ckpt__lookup(&a, o.repo, task_id, from_id, err)))
			goto done;
		if ((g = git_commit_tree(&ta, a)) < 0) {
			rc = hs_ckpt__git_err(err, g, "diff", task_id);
			goto done;
		}
		snprintf(from_res, sizeof(from_res), "%s", from_id);
	} else if ((rc = parent_side(&ta, from_res, &o, b, err))) {
		goto done;
	}
	if ((rc = hs_ckpt__tree_diff(o.repo, ta, tb, task_id, out, count, err)))
		goto done;
	if (from_out)
		memcpy(from_out, from_res, HS_CKPT_ID_MAX);
	if (to_out)
		memcpy(to_out, to_res, HS_CKPT_ID_MAX);
done:
	git_tree_free(ta);
	git_tree_free(tb);
	git_commit_free(a);
	git_commit_free(b);
	op_end(&o, false);
	return rc;
}

int hs_ckpt_prune(hs_ckpt_mgr *mgr, const char *task_id, uint32_t keep_last, bool dry_run,
		  uint32_t *kept, hs_ckpt_strlist *pruned, uint64_t *bytes_freed, hs_error *err)
{
	op o;
	hs_ckpt_strlist ids = { 0 };
	bool removed_some = false, repacked = false;
	git_index *index = NULL;
	uint64_t before = 0, after = 0;
	char gitdir[4096];
	int g;
	if (keep_last < 1)
		return hs_error_set(err, HS_INVALID, "keep_last: must be >= 1");
	int rc = op_begin(&o, mgr, task_id, err);
	if (rc || (rc = hs_ckpt__catalog_load(&o.lock->catalog, o.repo, task_id, err)))
		goto done;
	snprintf(gitdir, sizeof(gitdir), "%s", git_repository_path(o.repo));
	hs_ckpt__catalog *cat = &o.lock->catalog;
	size_t n = cat->n, drop = n > keep_last ? n - keep_last : 0;
	git_oid cur;
	bool has_cur = git_reference_name_to_id(&cur, o.repo, HS_CKPT__REF_CURRENT) == 0;
	/* The `drop` oldest go, reported newest first. */
	for (size_t i = drop; i-- > 0;) {
		char ref[128];
		snprintf(ref, sizeof(ref), HS_CKPT__REF_PREFIX "%s", cat->v[i].id);
		g = dry_run ? 0 : git_reference_remove(o.repo, ref);
		if (g < 0) {
			/* Refs removed so far stay removed: report them in the error. */
			rc = hs_ckpt__git_err(err, g, "prune", task_id);
			goto done;
		}
		removed_some = !dry_run;
		if (hs_ckpt__strlist_push(&ids, cat->v[i].id) != 0) {
			rc = hs_error_set(err, HS_INTERNAL, "checkpoint prune: out of memory");
			goto done;
		}
		/* A pruned current checkpoint: the newest stands in as the next
		 * parent (as the catalog says), and nothing keeps it alive. */
		if (!dry_run && has_cur && git_oid_equal(&cur, &cat->v[i].commit) &&
		    (g = git_reference_remove(o.repo, HS_CKPT__REF_CURRENT)) < 0 && g != GIT_ENOTFOUND) {
			rc = hs_ckpt__git_err(err, g, "prune", task_id);
			goto done;
		}
	}
	if (!dry_run) {
		hs_ckpt__catalog_drop_oldest(cat, drop);
		/* Give the space back: one pack with what is still needed. */
		if (hs_ckpt__repo_bytes(gitdir, &before) != 0)
			before = 0;
		repacked = true;
		if ((rc = hs_ckpt__index(&index, o.lock, task_id, err)) ||
		    (hs_ckpt__index_save(o.lock, true, task_id) != 0 &&
		     (rc = hs_error_set(err, HS_UNAVAILABLE, "checkpoint prune: task %s: index write "
					"failed", task_id))) ||
		    (rc = hs_ckpt__repack(o.repo, index, mgr->durable, task_id, err)))
			goto done;
		if (hs_ckpt__repo_bytes(gitdir, &after) != 0)
			after = before;
	}
	*kept = (uint32_t)(n - drop);
	*pruned = ids;
	memset(&ids, 0, sizeof(ids));
	if (bytes_freed)
		*bytes_freed = before > after ? before - after : 0;
	hs_log(HS_LOG_INFO, "checkpoint", "pruned", HS_LS("task_id", task_id),
	       HS_LI("pruned", pruned->count), HS_LI("kept", *kept), HS_LI("bytes_before", before),
	       HS_LI("bytes_after", after));
done:
	hs_ckpt_strlist_dispose(&ids);
	/* Stopped half way: the catalog no longer matches the refs; rebuild. */
	if (rc && removed_some)
		hs_ckpt__catalog_dispose(&o.lock->catalog);
	/* After a repack the open repository's view of its objects is stale;
	 * the index is unchanged, so change tracking stays trusted. */
	if (repacked && rc == HS_OK)
		hs_ckpt__repo_reload(mgr, o.lock);
	op_end(&o, repacked && rc != HS_OK);
	return rc;
}

int hs_ckpt_delete_task(hs_ckpt_mgr *mgr, const char *task_id, hs_error *err)
{
	char *path = NULL, *tmp = NULL;
	int rc = hs_id_check_task("task_id", task_id, err);
	if (rc)
		return rc;
	hs_ckpt__task_lock *l = hs_ckpt__lock(mgr, task_id);
	if (!l)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	struct stat st;
	if (!(path = hs_ckpt__repo_path(mgr, task_id)) ||
	    asprintf(&tmp, "%s/.del-%s-XXXXXX", mgr->repos_dir, task_id) < 0) {
		tmp = NULL;
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto done;
	}
	if (stat(path, &st) != 0) {
		rc = hs_error_set(err, HS_NOT_FOUND, "task %s has no checkpoints", task_id);
		goto done;
	}
	hs_ckpt__repo_forget(mgr, l);
	hs_ckpt__track_free(mgr->watcher, l->track);
	l->track = NULL;
	l->track_why = HS_CKPT__WHY_NEW;
	/* Disappear atomically (rename over an empty temp dir), then delete. */
	if (mkdtemp(tmp) == NULL || rename(path, tmp) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint delete: task %s: %s", task_id,
				  strerror(errno));
		goto done;
	}
	if (hs_ckpt__rmtree(tmp) != 0)
		hs_log(HS_LOG_WARN, "checkpoint", "could not remove old repository",
		       HS_LS("task_id", task_id), HS_LS("path", tmp));
done:
	free(path);
	free(tmp);
	hs_ckpt__unlock(mgr, l);
	return rc;
}
