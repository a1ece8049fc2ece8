/* Webhook sender (see webhook.h). One easy handle per request, on the
 * sender thread only. */
#include "webhook.h"
#include "curl_once.h"
#include "clock.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "trace.h"

/* A queued event and the request it came from (its x-request-id and
 * traceparent go out with it). */
typedef struct item {
	char *body;
	hs_trace_ctx trace;
} item;

struct hs_webhook {
	char *url;
	size_t cap, head, len;
	item *q;
	unsigned attempts;
	int64_t backoff_ms, timeout_ms;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	bool stop;
	pthread_t thr;
	uint64_t sent, dropped, failed;
};

static size_t discard(char *p, size_t size, size_t n, void *payload)
{
	(void)p;
	(void)payload;
	return size * n;
}

static int post_once(hs_webhook *w, const char *body, char *why, size_t why_len)
{
	CURL *c = curl_easy_init();
	if (c == NULL) {
		snprintf(why, why_len, "curl_easy_init failed");
		return HS_INTERNAL;
	}
	char ebuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json"), *n;
	const hs_trace_ctx *tc = hs_trace_current(); /* the posting call's (run) */
	char line[32 + HS_REQUEST_ID_MAX + HS_TRACEPARENT_LEN];
	if (hdr != NULL && tc->request_id[0] != '\0') {
		snprintf(line, sizeof(line), "X-Request-Id: %s", tc->request_id);
		if ((n = curl_slist_append(hdr, line)) != NULL)
			hdr = n;
	}
	if (hdr != NULL && tc->traceparent[0] != '\0') {
		snprintf(line, sizeof(line), "traceparent: %s", tc->traceparent);
		if ((n = curl_slist_append(hdr, line)) != NULL)
			hdr = n;
	}
	curl_easy_setopt(c, CURLOPT_URL, w->url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLcode cc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	if (cc != CURLE_OK) {
		snprintf(why, why_len, "%s", ebuf[0] ? ebuf : curl_easy_strerror(cc));
		return HS_UNAVAILABLE;
	}
	if (status < 200 || status > 299) {
		snprintf(why, why_len, "HTTP %ld", status);
		return HS_UNAVAILABLE;
	}
	return HS_OK;
}

/* Sleeps ms unless stopped; returns false when stopping. w->mu held. */
static bool wait_ms(hs_webhook *w, int64_t ms)
{
	struct timespec ts = hs_clock_deadline(CLOCK_MONOTONIC, ms);
	while (!w->stop && pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0) {
	}
	return !w->stop;
}

static void *run(void *arg)
{
	hs_webhook *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stop && w->len == 0)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop)
			break;
		char *body = w->q[w->head].body;
		hs_trace_restore(&w->q[w->head].trace);
		w->head = (w->head + 1) % w->cap;
		w->len--;
		int64_t delay = w->backoff_ms;
		bool ok = false;
		char why[CURL_ERROR_SIZE + 32] = "";
		for (unsigned i = 0; i < w->attempts && !w->stop; i++) {
			if (i > 0 && !wait_ms(w, delay))
				break;
			if (i > 0)
				delay *= 2;
			pthread_mutex_unlock(&w->mu);
			ok = post_once(w, body, why, sizeof(why)) == HS_OK;
			pthread_mutex_lock(&w->mu);
			if (ok)
				break;
		}
		if (ok) {
			w->sent++;
		} else {
			w->failed++;
			hs_log(HS_LOG_WARN, "health", "webhook delivery failed", HS_LS("error", why));
		}
		hs_trace_end();
		free(body);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int hs_webhook_new(hs_webhook **out, const hs_webhook_config *cfg, hs_error *err)
{
	if (cfg->url == NULL ||
	    (strncmp(cfg->url, "http://", 7) != 0 && strncmp(cfg->url, "https://", 8) != 0))
		return hs_error_set(err, HS_INVALID, "webhook-url: must be an http:// or https:// URL");
	int rc = hs_curl_global_init(err);
	if (rc != HS_OK)
		return rc;
	hs_webhook *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return hs_error_set(err, HS_INTERNAL, "webhook: out of memory");
	w->cap = cfg->queue ? cfg->queue : 1024;
	w->attempts = cfg->attempts ? cfg->attempts : 4;
	w->backoff_ms = cfg->backoff_ms > 0 ? cfg->backoff_ms : 500;
	w->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
	w->url = strdup(cfg->url);
	w->q = calloc(w->cap, sizeof(*w->q));
	if (w->url == NULL || w->q == NULL) {
		free(w->url);
		free(w->q);
		free(w);
		return hs_error_set(err, HS_INTERNAL, "webhook: out of memory");
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&w->thr, NULL, run, w) != 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w->url);
		free(w->q);
		free(w);
		return hs_error_set(err, HS_INTERNAL, "webhook: cannot start thread");
	}
	*out = w;
	return HS_OK;
}

void hs_webhook_free(hs_webhook *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thr, NULL);
	for (size_t i = 0; i < w->len; i++)
		free(w->q[(w->head + i) % w->cap].body);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w->q);
	free(w->url);
	free(w);
}

int hs_webhook_post(hs_webhook *w, char *body)
{
	int rc = HS_OK;
	pthread_mutex_lock(&w->mu);
	if (w->stop || w->len == w->cap) {
		w->dropped++;
		rc = HS_LIMIT;
	} else {
		item *it = &w->q[(w->head + w->len) % w->cap];
		it->body = body;
		it->trace = *hs_trace_current();
		w->len++;
		body = NULL;
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	free(body);
	return rc;
}

void hs_webhook_stats(hs_webhook *w, uint64_t *sent, uint64_t *dropped, uint64_t *failed)
{
	pthread_mutex_lock(&w->mu);
	*sent = w->sent;
	*dropped = w->dropped;
	*failed = w->failed;
	pthread_mutex_unlock(&w->mu);
}
