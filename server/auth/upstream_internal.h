/* Private to the upstream client (upstream.c, upstream_async.c): the
 * client's state, one request's state, and the steps both the blocking
 * calls and the event loop share (one copy of the options, the error
 * mapping and the response mapping). */
#ifndef HS_AUTH_UPSTREAM_INTERNAL_H
#define HS_AUTH_UPSTREAM_INTERNAL_H
#include <pthread.h>
#include <curl/curl.h>
#include <jansson.h>
#include "upstream.h"

#define LOGIN_PATH "/api/v1/auth/login"

typedef struct hs_up_loop hs_up_loop; /* upstream_async.c */

struct hs_auth_upstream {
	char *base;            /* without trailing '/' */
	struct curl_slist *headers;
	int timeout_ms;
	pthread_mutex_t mu;    /* idle, n_idle; loop (started once) */
	CURL **idle;
	size_t n_idle, pool_max;
	hs_up_loop *loop;      /* NULL until the first asynchronous call */
};

typedef struct hs_up_body {
	char *p;
	size_t len;
	int overflow;
} hs_up_body;

/* One request: its URL, trace headers, body and limit. Not movable while
 * the transfer runs (curl holds &errbuf and &b). */
typedef struct hs_up_xfer {
	char errbuf[CURL_ERROR_SIZE];
	char *url;
	const char *path; /* static */
	hs_up_body b;
	long limit;
	int caller_limited;
	struct curl_slist *traced;
} hs_up_xfer;

/* Sets h's options for one request (the caller's trace context is read
 * here: call it on the caller's thread). json_body NULL = GET; it must
 * outlive the transfer. Always call hs_up__dispose afterwards. */
int hs_up__begin(hs_auth_upstream *up, hs_up_xfer *x, CURL *h, const char *path,
		 const char *json_body, int timeout_ms, hs_error *err);
/* The transfer's outcome (cc, status, body) -> *out the parsed 2xx JSON
 * object, or the error of upstream.h. */
int hs_up__end(hs_auth_upstream *up, hs_up_xfer *x, CURL *h, CURLcode cc, json_t **out,
	       hs_error *err);
void hs_up__dispose(hs_auth_upstream *up, hs_up_xfer *x);
/* The login request body ({"email","password"}, compact) in *out (free:
 * wipe, then free()). */
int hs_up__login_json(const char *email, const char *password, char **out, hs_error *err);
/* A 2xx auth response -> *out. */
int hs_up__auth_result(json_t *resp, hs_auth_result *out, hs_error *err);
/* Stops the loop (answering what is in flight with HS_UNAVAILABLE) and
 * frees it; up->loop NULL is fine. */
void hs_up__loop_free(hs_auth_upstream *up);
#endif
