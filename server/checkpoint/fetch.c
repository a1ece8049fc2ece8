/* Fetching one checkpoint from --checkpoint-remote (the push side is
 * push.c): a task recovered on another node finds its checkpoints in the
 * remote, not in this node's shadow repository.
 *
 * One exact refspec, into a staging ref of the task's own repository:
 *   refs/harness/<task_id>/checkpoints/<id> -> refs/harness/fetching/<id>
 * so nothing else of the remote (other tasks' refs) arrives. The staging
 * ref becomes refs/harness/checkpoints/<id> only once every tree and blob
 * the checkpoint's tree reaches is in the object database: a remote that
 * sent a damaged or incomplete history leaves no checkpoint behind, and no
 * restore ever sees a half-fetched one.
 *
 * Bounded like a push: libgit2 1.5 has no timeout for a remote that accepts
 * the connection and then says nothing, so the fetch runs on its own
 * detached thread with its own repository handle, and the restore (holding
 * the task lock) waits at most the push timeout for it; then it answers
 * UNAVAILABLE and the fetch carries on in the background (if it completes,
 * the next restore finds the checkpoint here). At most FETCHES_MAX run at
 * once, beyond that a restore that needs one answers UNAVAILABLE at once.
 * Transfer callbacks abort a fetch still making progress after 4 x the
 * timeout. */
#include "checkpoint_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCHES_MAX 4
#define STAGING_PREFIX "refs/harness/fetching/"

static atomic_uint fetches_running;

typedef struct fetch_ctx {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned refs; /* the waiter and the thread */
	bool done;
	int rc;        /* HS_OK, HS_NOT_FOUND or HS_UNAVAILABLE */
	char *error;   /* heap; NULL on success */
	char *gitdir, *url, *task_id, *id;
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

static void ctx_release(fetch_ctx *f)
{
	pthread_mutex_lock(&f->mu);
	bool last = --f->refs == 0;
	pthread_mutex_unlock(&f->mu);
	if (!last)
		return;
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	free(f->error);
	free(f->gitdir);
	free(f->url);
	free(f->task_id);
	free(f->id);
	free(f);
}

static void drop_ref(git_repository *repo, const char *name)
{
	git_reference *ref = NULL;
	if (git_reference_lookup(&ref, repo, name) >= 0)
		(void)git_reference_delete(ref);
	git_reference_free(ref);
}

/* The fetch itself, on the fetch thread; f->rc and f->error. */
static void do_fetch(fetch_ctx *f)
{
	git_repository *repo = NULL;
	git_remote *remote = NULL;
	char spec[256], staging[128], final[128];
	snprintf(staging, sizeof(staging), STAGING_PREFIX "%s", f->id);
	snprintf(final, sizeof(final), HS_CKPT__REF_PREFIX "%s", f->id);
	snprintf(spec, sizeof(spec), "+refs/harness/%s/checkpoints/%s:%s", f->task_id, f->id, staging);
	char *specp = spec;
	git_strarray specs = { &specp, 1 };
	git_fetch_options fo;
	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	fo.callbacks.transfer_progress = on_transfer;
	fo.callbacks.sideband_progress = on_sideband;
	fo.callbacks.payload = f;
	fo.prune = GIT_FETCH_NO_PRUNE;
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fo.update_fetchhead = 0;
	git_oid oid;
	int g = git_repository_open_ext(&repo, f->gitdir,
					GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, NULL);
	if (g >= 0)
		g = git_remote_create_anonymous(&remote, repo, f->url);
	if (g >= 0)
		g = git_remote_fetch(remote, &specs, &fo, "harness fetch");
	if (g < 0) {
		const git_error *e = git_error_last();
		f->rc = HS_UNAVAILABLE;
		if (asprintf(&f->error, "fetching it from the checkpoint remote failed: %s",
			     e && e->message ? e->message : "unknown error") < 0)
			f->error = NULL;
		goto done;
	}
	g = git_reference_name_to_id(&oid, repo, staging);
	if (g == GIT_ENOTFOUND) {
		f->rc = HS_NOT_FOUND;
		f->error = strdup("not on the checkpoint remote either");
		goto done;
	}
	if (g < 0 || !complete(repo, &oid) ||
	    git_reference_create(NULL, repo, final, &oid, 1, "harness fetch") < 0) {
		f->rc = HS_UNAVAILABLE;
		f->error = strdup("the checkpoint remote sent it incomplete (missing objects)");
		goto done;
	}
	f->rc = HS_OK;
done:
	if (repo != NULL)
		drop_ref(repo, staging);
	git_remote_free(remote);
	git_repository_free(repo);
}

static void *fetch_main(void *arg)
{
	fetch_ctx *f = arg;
	if (git_libgit2_init() < 0) {
		f->rc = HS_UNAVAILABLE;
		f->error = strdup("libgit2 init failed");
	} else {
		do_fetch(f);
		git_libgit2_shutdown();
	}
	pthread_mutex_lock(&f->mu);
	f->done = true;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	ctx_release(f);
	atomic_fetch_sub(&fetches_running, 1);
	return NULL;
}

int hs_ckpt__fetch(hs_ckpt_mgr *mgr, git_repository *repo, const char *task_id,
		   const char *checkpoint_id, hs_error *err)
{
	int rc;
	const char *url = hs_ckpt__pusher_url(mgr->pusher);
	int64_t timeout_ms = hs_ckpt__pusher_timeout_ms(mgr->pusher);
	if (url == NULL)
		return hs_error_set(err, HS_NOT_FOUND, "checkpoint %s of task %s not found",
				    checkpoint_id, task_id);
	if (strlen(task_id) + strlen(checkpoint_id) > 200)
		return hs_error_set(err, HS_INVALID, "checkpoint_id: too long");
	if (atomic_fetch_add(&fetches_running, 1) >= FETCHES_MAX) {
		atomic_fetch_sub(&fetches_running, 1);
		return hs_error_set(err, HS_UNAVAILABLE,
				    "checkpoint %s of task %s: not here, and %d fetches from the "
				    "checkpoint remote are still running (slow or unreachable remote)",
				    checkpoint_id, task_id, FETCHES_MAX);
	}
	fetch_ctx *f = calloc(1, sizeof(*f));
	if (f == NULL || !(f->gitdir = strdup(git_repository_path(repo))) ||
	    !(f->url = strdup(url)) || !(f->task_id = strdup(task_id)) ||
	    !(f->id = strdup(checkpoint_id))) {
		if (f != NULL) {
			free(f->gitdir);
			free(f->url);
			free(f->task_id);
			free(f);
		}
		atomic_fetch_sub(&fetches_running, 1);
		return hs_error_set(err, HS_INTERNAL, "checkpoint fetch: out of memory");
	}
	f->refs = 2;
	f->abort_at_ms = hs_clock_mono_ms() + 4 * timeout_ms;
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_t attr;
	pthread_t thr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int e = pthread_create(&thr, &attr, fetch_main, f);
	pthread_attr_destroy(&attr);
	if (e != 0) {
		f->refs = 1;
		ctx_release(f);
		atomic_fetch_sub(&fetches_running, 1);
		return hs_error_set(err, HS_INTERNAL, "checkpoint fetch: cannot start a thread");
	}
	int64_t t0 = hs_clock_mono_us();
	struct timespec until = hs_clock_deadline(CLOCK_MONOTONIC, timeout_ms);
	pthread_mutex_lock(&f->mu);
	while (!f->done)
		if (pthread_cond_timedwait(&f->cv, &f->mu, &until) == ETIMEDOUT)
			break;
	if (!f->done)
		rc = hs_error_set(err, HS_UNAVAILABLE,
				  "checkpoint %s of task %s: not here, and the checkpoint remote did not "
				  "answer within %lld ms (the fetch continues in the background)",
				  checkpoint_id, task_id, (long long)timeout_ms);
	else if (f->rc != HS_OK)
		rc = hs_error_set(err, f->rc, "checkpoint %s of task %s: not here, and %s",
				  checkpoint_id, task_id, f->error ? f->error : "the fetch failed");
	else
		rc = HS_OK;
	pthread_mutex_unlock(&f->mu);
	ctx_release(f);
	if (rc == HS_OK)
		hs_log(HS_LOG_INFO, "checkpoint", "fetched from remote", HS_LS("task_id", task_id),
		       HS_LS("checkpoint_id", checkpoint_id), HS_LI("us", hs_clock_mono_us() - t0));
	else
		hs_log(HS_LOG_WARN, "checkpoint", "fetch from remote failed", HS_LS("task_id", task_id),
		       HS_LS("checkpoint_id", checkpoint_id), HS_LS("error", err ? err->msg : ""));
	return rc;
}
