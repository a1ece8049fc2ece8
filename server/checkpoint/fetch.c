/* Fetching one checkpoint from --checkpoint-remote (the push side is
 * push.c): a task recovered on another node finds its checkpoints in the
 * remote, not in this node's shadow repository.
 *
 * The fetch runs on the caller's thread under the task lock, into the
 * task's own repository, with one exact refspec:
 *   refs/harness/<task_id>/checkpoints/<id> -> refs/harness/checkpoints/<id>
 * so nothing else of the remote (other tasks' refs) arrives. Before the
 * local ref counts, every tree and blob the checkpoint's tree reaches must
 * be in the object database: a remote that sent a damaged or incomplete
 * history leaves no ref behind (the restore answers an error before it
 * writes anything into the workspace). Transfer callbacks abort a fetch
 * still making progress after 4 x the push timeout; as for pushes, libgit2
 * has no timeout for a remote that accepts the connection and then says
 * nothing. */
#include "checkpoint_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fetch_ctx {
	int64_t abort_at_ms; /* monotonic */
} fetch_ctx;

static int too_late(fetch_ctx *f)
{
	if (hs_clock_mono_ms() < f->abort_at_ms)
		return 0;
	git_error_set_str(GIT_ERROR_NET, "fetch took too long; aborted");
	return -1;
}

static int on_transfer(const git_indexer_progress *stats, void *payload)
{
	(void)stats;
	return too_late(payload);
}

static int on_sideband(const char *str, int len, void *payload)
{
	(void)str;
	(void)len;
	return too_late(payload);
}

typedef struct reach_ctx {
	git_odb *odb;
	size_t missing;
} reach_ctx;

static int reach_cb(const char *root, const git_tree_entry *entry, void *payload)
{
	(void)root;
	reach_ctx *r = payload;
	git_object_t t = git_tree_entry_type(entry);
	if (t != GIT_OBJECT_BLOB && t != GIT_OBJECT_TREE)
		return 0; /* gitlinks point outside the repository */
	if (!git_odb_exists(r->odb, git_tree_entry_id(entry))) {
		r->missing++;
		return -1;
	}
	return 0;
}

/* Everything the commit's tree reaches is in the repository. */
static int complete(git_repository *repo, const git_oid *commit_id)
{
	git_commit *c = NULL;
	git_tree *tree = NULL;
	git_odb *odb = NULL;
	reach_ctx r = { 0 };
	int ok = git_commit_lookup(&c, repo, commit_id) >= 0 && git_commit_tree(&tree, c) >= 0 &&
		 git_repository_odb(&odb, repo) >= 0;
	if (ok) {
		r.odb = odb;
		ok = git_tree_walk(tree, GIT_TREEWALK_PRE, reach_cb, &r) >= 0 && r.missing == 0;
	}
	git_odb_free(odb);
	git_tree_free(tree);
	git_commit_free(c);
	return ok;
}

int hs_ckpt__fetch(hs_ckpt_mgr *mgr, git_repository *repo, const char *task_id,
		   const char *checkpoint_id, hs_error *err)
{
	int rc = HS_OK, g;
	git_remote *remote = NULL;
	const char *url = hs_ckpt__pusher_url(mgr->pusher);
	char spec[256], local[128];
	if (url == NULL)
		return hs_error_set(err, HS_NOT_FOUND, "checkpoint %s of task %s not found",
				    checkpoint_id, task_id);
	snprintf(local, sizeof(local), HS_CKPT__REF_PREFIX "%s", checkpoint_id);
	if (snprintf(spec, sizeof(spec), "+refs/harness/%s/checkpoints/%s:%s", task_id,
		     checkpoint_id, local) >= (int)sizeof(spec))
		return hs_error_set(err, HS_INVALID, "checkpoint_id: too long");
	char *specp = spec;
	git_strarray specs = { &specp, 1 };
	fetch_ctx f = { hs_clock_mono_ms() + 4 * hs_ckpt__pusher_timeout_ms(mgr->pusher) };
	git_fetch_options fo;
	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	fo.callbacks.transfer_progress = on_transfer;
	fo.callbacks.sideband_progress = on_sideband;
	fo.callbacks.payload = &f;
	fo.prune = GIT_FETCH_NO_PRUNE;
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fo.update_fetchhead = 0;
	int64_t t0 = hs_clock_mono_us();
	if ((g = git_remote_create_anonymous(&remote, repo, url)) < 0 ||
	    (g = git_remote_fetch(remote, &specs, &fo, "harness fetch")) < 0) {
		const git_error *e = git_error_last();
		rc = hs_error_set(err, HS_UNAVAILABLE,
				  "checkpoint %s of task %s: not here, and fetching it from the "
				  "checkpoint remote failed: %s",
				  checkpoint_id, task_id, e && e->message ? e->message : "unknown error");
		goto done;
	}
	git_oid oid;
	g = git_reference_name_to_id(&oid, repo, local);
	if (g == GIT_ENOTFOUND) {
		rc = hs_error_set(err, HS_NOT_FOUND,
				  "checkpoint %s of task %s not found (here or on the checkpoint remote)",
				  checkpoint_id, task_id);
		goto done;
	}
	if (g < 0 || !complete(repo, &oid)) {
		git_reference *ref = NULL;
		if (git_reference_lookup(&ref, repo, local) >= 0)
			(void)git_reference_delete(ref);
		git_reference_free(ref);
		rc = hs_error_set(err, HS_UNAVAILABLE,
				  "checkpoint %s of task %s: the checkpoint remote sent it incomplete "
				  "(missing objects); nothing restored",
				  checkpoint_id, task_id);
		goto done;
	}
	hs_log(HS_LOG_INFO, "checkpoint", "fetched from remote", HS_LS("task_id", task_id),
	       HS_LS("checkpoint_id", checkpoint_id), HS_LI("us", hs_clock_mono_us() - t0));
done:
	if (rc != HS_OK)
		hs_log(HS_LOG_WARN, "checkpoint", "fetch from remote failed", HS_LS("task_id", task_id),
		       HS_LS("checkpoint_id", checkpoint_id), HS_LS("error", err ? err->msg : ""));
	git_remote_free(remote);
	return rc;
}
