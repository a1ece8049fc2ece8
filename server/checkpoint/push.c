/* Pushing new checkpoint refs to --checkpoint-remote, bounded.
 *
 * libgit2 1.5 has no timeout for a push, and a remote that accepts the
 * connection and then says nothing blocks it forever. So a push never runs
 * under the task lock (the create has released it) and never for longer
 * than the caller is willing to wait: each push runs on its own detached
 * thread with its own repository handle and its own libgit2 reference; the
 * caller waits up to timeout_ms for it and then returns ("still running")
 * while the thread carries on. At most max_in_flight pushes run at once;
 * beyond that a push is skipped with an error saying so (the checkpoint
 * exists locally either way). Transfer callbacks abort a push that is still
 * making progress at 4 x timeout_ms; one that hangs without progress holds
 * its thread until the connection dies, which is why their number is
 * bounded. The pusher is refcounted: the manager and every running push
 * hold a reference, so a manager may be freed while pushes hang. */
#include "checkpoint_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hs_ckpt__pusher {
	pthread_mutex_t mu;
	unsigned refs;
	unsigned in_flight;
	unsigned max_in_flight;
	int64_t timeout_ms;
	char *url;
};

typedef struct job {
	hs_ckpt__pusher *p;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned refs; /* the waiter and the thread */
	bool done;
	char *error;   /* heap; NULL on success */
	char *gitdir, *task_id, *id;
	int64_t abort_at_ms; /* monotonic */
} job;

/* Background git threads (pushes and fetches) still running, counted so
 * that a shutdown can wait for them (hs_ckpt_background_wait) instead of
 * exiting under a thread that is inside libgit2 or OpenSSL. */
static pthread_mutex_t bg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bg_cv = PTHREAD_COND_INITIALIZER;
static unsigned bg_running;

void hs_ckpt__bg_enter(void)
{
	pthread_mutex_lock(&bg_mu);
	bg_running++;
	pthread_mutex_unlock(&bg_mu);
}

void hs_ckpt__bg_leave(void)
{
	pthread_mutex_lock(&bg_mu);
	bg_running--;
	pthread_cond_broadcast(&bg_cv);
	pthread_mutex_unlock(&bg_mu);
}

bool hs_ckpt_background_wait(int64_t timeout_ms)
{
	struct timespec until = hs_clock_deadline(CLOCK_REALTIME, timeout_ms);
	pthread_mutex_lock(&bg_mu);
	while (bg_running > 0)
		if (pthread_cond_timedwait(&bg_cv, &bg_mu, &until) == ETIMEDOUT)
			break;
	bool idle = bg_running == 0;
	pthread_mutex_unlock(&bg_mu);
	return idle;
}

hs_ckpt__pusher *hs_ckpt__pusher_new(const char *url, unsigned max_in_flight, int64_t timeout_ms)
{
	hs_ckpt__pusher *p = calloc(1, sizeof(*p));
	if (p == NULL || (p->url = strdup(url)) == NULL) {
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	p->refs = 1;
	p->max_in_flight = max_in_flight ? max_in_flight : 4;
	p->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
	return p;
}

void hs_ckpt__pusher_release(hs_ckpt__pusher *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	bool last = --p->refs == 0;
	pthread_mutex_unlock(&p->mu);
	if (!last)
		return;
	pthread_mutex_destroy(&p->mu);
	free(p->url);
	free(p);
}

static void job_release(job *j)
{
	pthread_mutex_lock(&j->mu);
	bool last = --j->refs == 0;
	pthread_mutex_unlock(&j->mu);
	if (!last)
		return;
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	free(j->error);
	free(j->gitdir);
	free(j->task_id);
	free(j->id);
	free(j);
}

static int too_late(job *j)
{
	if (hs_clock_mono_ms() < j->abort_at_ms)
		return 0;
	git_error_set_str(GIT_ERROR_NET, "push took too long; aborted");
	return -1;
}

static int on_push_progress(unsigned int current, unsigned int total, size_t bytes, void *payload)
{
	(void)current;
	(void)total;
	(void)bytes;
	return too_late(payload);
}

static int on_pack_progress(int stage, uint32_t current, uint32_t total, void *payload)
{
	(void)stage;
	(void)current;
	(void)total;
	return too_late(payload);
}

static int on_sideband(const char *str, int len, void *payload)
{
	(void)str;
	(void)len;
	return too_late(payload);
}

static char *do_push(job *j)
{
	git_repository *repo = NULL;
	git_remote *remote = NULL;
	char spec[256], *msg = NULL;
	snprintf(spec, sizeof(spec), "+" HS_CKPT__REF_PREFIX "%s:refs/harness/%s/checkpoints/%s", j->id,
		 j->task_id, j->id);
	char *specp = spec;
	git_strarray specs = { &specp, 1 };
	git_push_options po;
	git_push_options_init(&po, GIT_PUSH_OPTIONS_VERSION);
	po.callbacks.push_transfer_progress = on_push_progress;
	po.callbacks.pack_progress = on_pack_progress;
	po.callbacks.sideband_progress = on_sideband;
	po.callbacks.payload = j;
	int g = git_repository_open_ext(&repo, j->gitdir,
					GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, NULL);
	if (g >= 0)
		g = git_remote_create_anonymous(&remote, repo, j->p->url);
	if (g >= 0)
		g = git_remote_push(remote, &specs, &po);
	if (g < 0) {
		const git_error *e = git_error_last();
		if (asprintf(&msg, "push to remote failed: %s",
			     e && e->message ? e->message : "unknown error") < 0)
			msg = NULL;
	}
	git_remote_free(remote);
	git_repository_free(repo);
	return msg;
}

static void *push_main(void *arg)
{
	job *j = arg;
	hs_ckpt__pusher *p = j->p;
	char *msg = NULL;
	if (git_libgit2_init() < 0) {
		msg = strdup("push to remote failed: libgit2 init");
	} else {
		msg = do_push(j);
		git_error_clear(); /* this thread's error text, before shutdown */
		git_libgit2_shutdown();
	}
	if (msg != NULL)
		hs_log(HS_LOG_WARN, "checkpoint", "push failed", HS_LS("task_id", j->task_id),
		       HS_LS("checkpoint_id", j->id), HS_LS("error", msg));
	pthread_mutex_lock(&j->mu);
	j->done = true;
	j->error = msg;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	job_release(j);
	pthread_mutex_lock(&p->mu);
	p->in_flight--;
	pthread_mutex_unlock(&p->mu);
	hs_ckpt__pusher_release(p);
	hs_ckpt__bg_leave();
	return NULL;
}

char *hs_ckpt__push(hs_ckpt__pusher *p, const char *gitdir, const char *task_id, const char *id)
{
	char *msg = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->in_flight >= p->max_in_flight) {
		unsigned n = p->in_flight;
		pthread_mutex_unlock(&p->mu);
		if (asprintf(&msg, "not pushed: %u pushes to the remote are still running (slow or "
				   "unreachable remote)", n) < 0)
			msg = NULL;
		return msg;
	}
	p->in_flight++;
	p->refs++;
	pthread_mutex_unlock(&p->mu);
	job *j = calloc(1, sizeof(*j));
	if (j == NULL || !(j->gitdir = strdup(gitdir)) || !(j->task_id = strdup(task_id)) ||
	    !(j->id = strdup(id))) {
		if (j != NULL) {
			free(j->gitdir);
			free(j->task_id);
			free(j);
		}
		goto not_started;
	}
	j->p = p;
	j->refs = 2;
	j->abort_at_ms = hs_clock_mono_ms() + 4 * p->timeout_ms;
	pthread_mutex_init(&j->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_t attr;
	pthread_t t;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	hs_ckpt__bg_enter();
	int e = pthread_create(&t, &attr, push_main, j);
	pthread_attr_destroy(&attr);
	if (e != 0) {
		hs_ckpt__bg_leave();
		j->refs = 1;
		job_release(j);
		goto not_started;
	}
	struct timespec until = hs_clock_deadline(CLOCK_MONOTONIC, p->timeout_ms);
	pthread_mutex_lock(&j->mu);
	while (!j->done)
		if (pthread_cond_timedwait(&j->cv, &j->mu, &until) == ETIMEDOUT)
			break;
	if (j->done) {
		msg = j->error;
		j->error = NULL;
	} else if (asprintf(&msg, "push to remote still running after %lld ms; it continues in the "
				  "background", (long long)p->timeout_ms) < 0) {
		msg = NULL;
	}
	pthread_mutex_unlock(&j->mu);
	job_release(j);
	return msg;
not_started:
	pthread_mutex_lock(&p->mu);
	p->in_flight--;
	p->refs--; /* the owner's reference is still held: never the last */
	pthread_mutex_unlock(&p->mu);
	return strdup("push to remote failed: out of resources");
}

const char *hs_ckpt__pusher_url(const hs_ckpt__pusher *p)
{
	return p != NULL ? p->url : NULL;
}

int64_t hs_ckpt__pusher_timeout_ms(const hs_ckpt__pusher *p)
{
	return p != NULL ? p->timeout_ms : 10000;
}
