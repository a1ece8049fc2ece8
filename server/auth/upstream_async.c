/* The upstream client's event loop: logins that must not block their
 * caller (a completion-queue thread) go to one thread driving a curl multi
 * handle. Its connections to the user service are kept alive and shared by
 * every request, and under load one poll serves many transfers, so no
 * worker thread waits per login. The request is built (options, trace
 * headers) on the caller's thread with the blocking path's code
 * (upstream_internal.h) and answered with its error and response mapping. */
#include "upstream_internal.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "trace.h"

#define LOOP_IDLE_MAX 64       /* easy handles kept for reuse */
#define LOOP_HOST_CONNECTIONS 32 /* to the user service, at most */

typedef struct job {
	struct job *next, *prev; /* the queue (next), then the running list */
	CURL *h;
	char *body;
	hs_auth_upstream_done_fn done;
	void *arg;
	hs_trace_ctx trace; /* the caller's: the loop's log lines carry its ids */
	hs_up_xfer x;
} job;

struct hs_up_loop {
	CURLM *m;
	pthread_t thread;
	/* under up->mu */
	job *qhead, *qtail;
	bool stop;
	bool polling; /* in curl_multi_poll: a new job must wake it */
	size_t n_jobs; /* queued + running */
	CURL *idle[LOOP_IDLE_MAX];
	size_t n_idle;
	/* the loop thread's own */
	job *running;
};

/* Gives the job's handle back and frees the job (done already called or
 * never to be). */
static void job_free(hs_auth_upstream *up, job *j)
{
	hs_up_loop *l = up->loop;
	hs_up__dispose(up, &j->x);
	if (j->body != NULL) {
		sodium_memzero(j->body, strlen(j->body));
		free(j->body);
	}
	if (j->h != NULL)
		curl_easy_reset(j->h); /* options only */
	pthread_mutex_lock(&up->mu);
	l->n_jobs--;
	if (j->h != NULL && l->n_idle < LOOP_IDLE_MAX) {
		l->idle[l->n_idle++] = j->h;
		j->h = NULL;
	}
	pthread_mutex_unlock(&up->mu);
	if (j->h != NULL)
		curl_easy_cleanup(j->h);
	free(j);
}

/* The transfer ended (cc): map it as the blocking call does, answer. */
static void job_finish(hs_auth_upstream *up, job *j, CURLcode cc)
{
	hs_trace_restore(&j->trace);
	hs_error e = { 0 };
	json_t *resp = NULL;
	hs_auth_result res;
	memset(&res, 0, sizeof(res));
	int rc = hs_up__end(up, &j->x, j->h, cc, &resp, &e);
	if (rc == HS_OK) {
		rc = hs_up__auth_result(resp, &res, &e);
		json_decref(resp);
	}
	hs_auth_upstream_done_fn done = j->done;
	void *arg = j->arg;
	job_free(up, j);
	done(arg, rc, rc == HS_OK ? &res : NULL, rc == HS_OK ? NULL : &e);
	hs_trace_end();
}

static void job_fail(hs_auth_upstream *up, job *j, int code, const char *msg)
{
	hs_trace_restore(&j->trace);
	hs_error e = { 0 };
	hs_error_set(&e, code, "%s", msg);
	hs_auth_upstream_done_fn done = j->done;
	void *arg = j->arg;
	job_free(up, j);
	done(arg, code, NULL, &e);
	hs_trace_end();
}

static void running_unlink(hs_up_loop *l, job *j)
{
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		l->running = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
}

static void *loop_main(void *arg)
{
	hs_auth_upstream *up = arg;
	hs_up_loop *l = up->loop;
	for (;;) {
		pthread_mutex_lock(&up->mu);
		job *q = l->qhead;
		bool stop = l->stop;
		l->qhead = l->qtail = NULL;
		pthread_mutex_unlock(&up->mu);
		while (q != NULL) {
			job *n = q->next;
			if (curl_multi_add_handle(l->m, q->h) != CURLM_OK) {
				job_fail(up, q, HS_INTERNAL, "user service client: cannot start the request");
			} else {
				q->prev = NULL;
				q->next = l->running;
				if (l->running != NULL)
					l->running->prev = q;
				l->running = q;
			}
			q = n;
		}
		if (stop)
			break;
		int still = 0, left = 0;
		curl_multi_perform(l->m, &still);
		CURLMsg *msg;
		while ((msg = curl_multi_info_read(l->m, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			CURL *h = msg->easy_handle;
			CURLcode cc = msg->data.result;
			job *j = NULL;
			curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&j);
			running_unlink(l, j);
			curl_multi_remove_handle(l->m, h);
			job_finish(up, j, cc);
		}
		/* Sleep only with nothing queued; a submitter wakes the loop
		 * only while it sleeps (no wake-up write per login under load). */
		pthread_mutex_lock(&up->mu);
		l->polling = l->qhead == NULL && !l->stop;
		bool poll = l->polling;
		pthread_mutex_unlock(&up->mu);
		if (poll) {
			curl_multi_poll(l->m, NULL, 0, 1000, NULL);
			pthread_mutex_lock(&up->mu);
			l->polling = false;
			pthread_mutex_unlock(&up->mu);
		}
	}
	while (l->running != NULL) { /* shutting down: answer what is in flight */
		job *j = l->running;
		running_unlink(l, j);
		curl_multi_remove_handle(l->m, j->h);
		job_fail(up, j, HS_UNAVAILABLE, "user service client: shutting down");
	}
	return NULL;
}

/* up->mu held. The loop, started on first use; NULL if it cannot start. */
static hs_up_loop *loop_get(hs_auth_upstream *up)
{
	if (up->loop != NULL)
		return up->loop->stop ? NULL : up->loop;
	hs_up_loop *l = calloc(1, sizeof(*l));
	if (l == NULL || (l->m = curl_multi_init()) == NULL) {
		free(l);
		return NULL;
	}
	curl_multi_setopt(l->m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)LOOP_HOST_CONNECTIONS);
	curl_multi_setopt(l->m, CURLMOPT_MAXCONNECTS, (long)LOOP_HOST_CONNECTIONS);
	up->loop = l;
	if (pthread_create(&l->thread, NULL, loop_main, up) != 0) {
		up->loop = NULL;
		curl_multi_cleanup(l->m);
		free(l);
		return NULL;
	}
	return l;
}

int hs_auth_upstream_login_start(hs_auth_upstream *up, const char *email, const char *password,
				 int timeout_ms, hs_auth_upstream_done_fn done, void *arg,
				 hs_error *err)
{
	if (timeout_ms == 0)
		return hs_error_set(err, HS_TIMEOUT, "deadline exceeded before calling the user service");
	job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return hs_error_set(err, HS_INTERNAL, "user service client: out of memory");
	int rc = hs_up__login_json(email, password, &j->body, err);
	if (rc != HS_OK) {
		free(j);
		return rc;
	}
	j->done = done;
	j->arg = arg;
	j->trace = *hs_trace_current();
	pthread_mutex_lock(&up->mu);
	hs_up_loop *l = loop_get(up);
	if (l == NULL || l->n_jobs >= HS_AUTH_UPSTREAM_ASYNC_MAX) {
		pthread_mutex_unlock(&up->mu);
		sodium_memzero(j->body, strlen(j->body));
		free(j->body);
		free(j);
		return HS_AUTH_UPSTREAM_BUSY;
	}
	l->n_jobs++;
	if (l->n_idle > 0)
		j->h = l->idle[--l->n_idle];
	pthread_mutex_unlock(&up->mu);
	if (j->h == NULL && (j->h = curl_easy_init()) == NULL)
		rc = hs_error_set(err, HS_INTERNAL, "user service client: out of memory");
	if (rc == HS_OK)
		rc = hs_up__begin(up, &j->x, j->h, LOGIN_PATH, j->body, timeout_ms, err);
	if (rc != HS_OK) {
		job_free(up, j);
		return rc;
	}
	curl_easy_setopt(j->h, CURLOPT_PRIVATE, (char *)j);
	pthread_mutex_lock(&up->mu);
	if (l->qtail != NULL)
		l->qtail->next = j;
	else
		l->qhead = j;
	l->qtail = j;
	bool wake = l->polling;
	l->polling = false; /* one wake-up is enough */
	pthread_mutex_unlock(&up->mu);
	if (wake)
		curl_multi_wakeup(l->m);
	return HS_OK;
}

void hs_up__loop_free(hs_auth_upstream *up)
{
	hs_up_loop *l = up->loop;
	if (l == NULL)
		return;
	pthread_mutex_lock(&up->mu);
	l->stop = true;
	pthread_mutex_unlock(&up->mu);
	curl_multi_wakeup(l->m);
	pthread_join(l->thread, NULL);
	for (size_t i = 0; i < l->n_idle; i++)
		curl_easy_cleanup(l->idle[i]);
	curl_multi_cleanup(l->m);
	free(l);
	up->loop = NULL;
}
