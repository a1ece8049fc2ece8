/* Fetching one checkpoint from --checkpoint-remote (the push side is
 * push.c): a task recovered on another node finds its checkpoints in the
 * remote, not in this node's shadow repository.
 *
 * Two steps, so that nothing touches a task's repository without the task
 * lock (checkpoint.c):
 *  1. The network fetch, on its own detached thread, into a scratch bare
 *     repository of its own (<repos_dir>/.fetch-XXXXXX), with one exact
 *     refspec: refs/harness/<task_id>/checkpoints/<id> -> refs/fetched, so
 *     nothing else of the remote (other tasks' refs) arrives, and checked
 *     there: every tree and blob the checkpoint's tree reaches must be in
 *     it. A remote that sent a damaged or incomplete history leaves
 *     nothing behind.
 *  2. The import, by the restore that holds the task lock: a local fetch
 *     from the scratch repository into the task's own, checked again, and
 *     only then refs/harness/checkpoints/<id>.
 * Bounded like a push: libgit2 1.5 has no timeout for a remote that accepts
 * the connection and then says nothing, so the restore waits at most the
 * push timeout for step 1 and then answers UNAVAILABLE; the thread carries
 * on with only its scratch repository (a prune, repack or DeleteTask of the
 * task meanwhile cannot meet it) and removes it when it ends. Each fetch has
 * its own scratch repository, so a retry never sees another's half-done
 * one. At most FETCHES_MAX run at once; beyond that a restore that needs
 * one answers UNAVAILABLE at once. Transfer callbacks abort a fetch still
 * making progress after 4 x the timeout. Scratch repositories a crash left
 * are removed at start (hs_ckpt__fetch_cleanup). */
#include "checkpoint_internal.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FETCHES_MAX 4
#define STAGING_PREFIX "refs/harness/fetching/"
#define SCRATCH_PREFIX ".fetch-"
#define SCRATCH_REF "refs/fetched"

static atomic_uint fetches_running;

typedef struct fetch_ctx {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned refs; /* the waiter and the thread */
	bool done;
	int rc;        /* HS_OK, HS_NOT_FOUND or HS_UNAVAILABLE */
	char *error;   /* heap; NULL on success */
	char *scratch; /* the scratch repository's directory; removed by the last release */
	char *url, *task_id, *id;
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
	if (f->scratch != NULL && f->scratch[0] != '\0')
		(void)hs_ckpt__rmtree(f->scratch);
	free(f->scratch);
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

static void set_git_error(fetch_ctx *f, const char *what)
{
	const git_error *e = git_error_last();
	f->rc = HS_UNAVAILABLE;
	if (asprintf(&f->error, "%s: %s", what, e && e->message ? e->message : "unknown error") <
	    0)
		f->error = NULL;
}

static void fetch_options(git_fetch_options *fo, void *payload)
{
	git_fetch_options_init(fo, GIT_FETCH_OPTIONS_VERSION);
	fo->prune = GIT_FETCH_NO_PRUNE;
	fo->download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fo->update_fetchhead = 0;
	if (payload != NULL) {
		fo->callbacks.transfer_progress = on_transfer;
		fo->callbacks.sideband_progress = on_sideband;
		fo->callbacks.payload = payload;
	}
}

/* Step 1, on the fetch thread: the remote's checkpoint into the scratch
 * repository, checked complete there; f->rc and f->error. */
static void do_fetch(fetch_ctx *f)
{
	git_repository *repo = NULL;
	git_remote *remote = NULL;
	char spec[256];
	snprintf(spec, sizeof(spec), "+refs/harness/%s/checkpoints/%s:" SCRATCH_REF, f->task_id,
		 f->id);
	char *specp = spec;
	git_strarray specs = { &specp, 1 };
	git_fetch_options fo;
	fetch_options(&fo, f);
	git_oid oid;
	if (git_repository_init(&repo, f->scratch, 1) < 0) {
		set_git_error(f, "creating a scratch repository for the fetch failed");
		goto done;
	}
	if (git_remote_create_anonymous(&remote, repo, f->url) < 0 ||
	    git_remote_fetch(remote, &specs, &fo, "harness fetch") < 0) {
		set_git_error(f, "fetching it from the checkpoint remote failed");
		goto done;
	}
	int g = git_reference_name_to_id(&oid, repo, SCRATCH_REF);
	if (g == GIT_ENOTFOUND) {
		f->rc = HS_NOT_FOUND;
		f->error = strdup("not on the checkpoint remote either");
		goto done;
	}
	if (g < 0 || !complete(repo, &oid)) {
		f->rc = HS_UNAVAILABLE;
		f->error = strdup("the checkpoint remote sent it incomplete (missing objects)");
		goto done;
	}
	f->rc = HS_OK;
done:
	git_remote_free(remote);
	git_repository_free(repo);
}

/* Step 2, under the task lock: the scratch repository's checkpoint into
 * the task's repository (a local fetch), checked again, then its ref. */
static int import(git_repository *repo, const fetch_ctx *f, hs_error *err)
{
	git_remote *remote = NULL;
	char spec[192], staging[128], final[128];
	snprintf(staging, sizeof(staging), STAGING_PREFIX "%s", f->id);
	snprintf(final, sizeof(final), HS_CKPT__REF_PREFIX "%s", f->id);
	snprintf(spec, sizeof(spec), "+" SCRATCH_REF ":%s", staging);
	char *specp = spec;
	git_strarray specs = { &specp, 1 };
	git_fetch_options fo;
	fetch_options(&fo, NULL);
	git_oid oid;
	int rc = HS_OK;
	if (git_remote_create_anonymous(&remote, repo, f->scratch) < 0 ||
	    git_remote_fetch(remote, &specs, &fo, "harness fetch") < 0 ||
	    git_reference_name_to_id(&oid, repo, staging) < 0) {
		const git_error *e = git_error_last();
		rc = hs_error_set(err, HS_UNAVAILABLE,
				  "checkpoint %s of task %s: importing the fetched checkpoint failed: %s",
				  f->id, f->task_id, e && e->message ? e->message : "unknown error");
	} else if (!complete(repo, &oid) ||
		   git_reference_create(NULL, repo, final, &oid, 1, "harness fetch") < 0) {
		rc = hs_error_set(err, HS_UNAVAILABLE,
				  "checkpoint %s of task %s: the fetched checkpoint is incomplete",
				  f->id, f->task_id);
	}
	drop_ref(repo, staging);
	git_remote_free(remote);
	return rc;
}

void hs_ckpt__fetch_cleanup(const char *repos_dir)
{
	DIR *d = opendir(repos_dir);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, SCRATCH_PREFIX, strlen(SCRATCH_PREFIX)) != 0)
			continue;
		char path[4096];
		if (snprintf(path, sizeof(path), "%s/%s", repos_dir, de->d_name) < (int)sizeof(path))
			(void)hs_ckpt__rmtree(path);
	}
	closedir(d);
}

static void *fetch_main(void *arg)
{
	fetch_ctx *f = arg;
	if (git_libgit2_init() < 0) {
		f->rc = HS_UNAVAILABLE;
		f->error = strdup("libgit2 init failed");
	} else {
		do_fetch(f);
		git_error_clear(); /* this thread's error text, before shutdown */
		git_libgit2_shutdown();
	}
	pthread_mutex_lock(&f->mu);
	f->done = true;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	ctx_release(f);
	atomic_fetch_sub(&fetches_running, 1);
	hs_ckpt__bg_leave();
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
	char scratch[4096];
	if (snprintf(scratch, sizeof(scratch), "%s/" SCRATCH_PREFIX "XXXXXX", mgr->repos_dir) >=
	    (int)sizeof(scratch)) {
		atomic_fetch_sub(&fetches_running, 1);
		return hs_error_set(err, HS_INTERNAL, "checkpoint fetch: repos_dir too long");
	}
	fetch_ctx *f = calloc(1, sizeof(*f));
	bool made = false;
	errno = ENOMEM;
	if (f == NULL || !(f->url = strdup(url)) || !(f->task_id = strdup(task_id)) ||
	    !(f->id = strdup(checkpoint_id)) || !(made = mkdtemp(scratch) != NULL) ||
	    !(f->scratch = strdup(scratch))) {
		int e = errno;
		if (made)
			(void)rmdir(scratch);
		if (f != NULL) {
			free(f->url);
			free(f->task_id);
			free(f->id);
			free(f);
		}
		atomic_fetch_sub(&fetches_running, 1);
		return hs_error_set(err, HS_INTERNAL, "checkpoint fetch: %s", strerror(e));
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
	hs_ckpt__bg_enter();
	int e = pthread_create(&thr, &attr, fetch_main, f);
	pthread_attr_destroy(&attr);
	if (e != 0) {
		hs_ckpt__bg_leave();
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
	if (rc == HS_OK)
		rc = import(repo, f, err);
	ctx_release(f);
	if (rc == HS_OK)
		hs_log(HS_LOG_INFO, "checkpoint", "fetched from remote", HS_LS("task_id", task_id),
		       HS_LS("checkpoint_id", checkpoint_id), HS_LI("us", hs_clock_mono_us() - t0));
	else
		hs_log(HS_LOG_WARN, "checkpoint", "fetch from remote failed", HS_LS("task_id", task_id),
		       HS_LS("checkpoint_id", checkpoint_id), HS_LS("error", err ? err->msg : ""));
	return rc;
}
