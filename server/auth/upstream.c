/* libcurl client for the upstream user service. One hs_auth_upstream holds the
 * immutable request headers and a mutex-protected stack of idle easy
 * handles; a call pops one (or creates one), runs one blocking request with
 * a bounded body, resets it and pushes it back, so its connection cache
 * survives between calls. Request and response bodies hold passwords and
 * tokens: they are wiped before being freed and never logged. */
#include "upstream.h"
#include "upstream_internal.h"
#include "curl_once.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "log.h"
#include "trace.h"

#define MAX_ID 128
#define MAX_EMAIL 256
#define MAX_NAME 256
#define MAX_ROLE 32
#define MAX_TOKEN 8192
#define MAX_UPSTREAM_MSG 160


static int printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

int hs_auth_upstream_new(hs_auth_upstream **out, const hs_auth_upstream_config *cfg, hs_error *err)
{
	hs_auth_upstream *up = NULL;
	char *hdr = NULL;
	size_t n;
	int rc = HS_OK;

	if ((rc = hs_curl_global_init(err)) != HS_OK)
		return rc;
	if (cfg == NULL || cfg->base_url == NULL ||
	    (strncmp(cfg->base_url, "http://", 7) != 0 && strncmp(cfg->base_url, "https://", 8) != 0) ||
	    !printable(cfg->base_url) || strchr(cfg->base_url, ' ') != NULL ||
	    strlen(cfg->base_url) > 1024)
		return hs_error_set(err, HS_INVALID, "user service URL: expected http(s)://host[:port]");
	if (cfg->api_key != NULL && (!printable(cfg->api_key) || strlen(cfg->api_key) > 1024))
		return hs_error_set(err, HS_INVALID, "user service API key: printable ASCII only");
	if (cfg->timeout_ms < 0)
		return hs_error_set(err, HS_INVALID, "user service timeout: must be >= 0");
	if ((up = calloc(1, sizeof(*up))) == NULL || (up->base = strdup(cfg->base_url)) == NULL)
		goto oom;
	n = strlen(up->base);
	while (n > 0 && up->base[n - 1] == '/')
		up->base[--n] = '\0';
	up->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : HS_AUTH_UPSTREAM_TIMEOUT_MS;
	up->pool_max = cfg->pool_max ? cfg->pool_max : 8;
	if ((up->idle = calloc(up->pool_max, sizeof(CURL *))) == NULL)
		goto oom;
	struct curl_slist *l = NULL;
	if ((l = curl_slist_append(NULL, "Content-Type: application/json")) == NULL)
		goto oom;
	up->headers = l;
	if ((l = curl_slist_append(up->headers, "Accept: application/json")) == NULL ||
	    (l = curl_slist_append(up->headers, "Expect:")) == NULL)
		goto oom;
	if (cfg->api_key != NULL && cfg->api_key[0] != '\0') {
		size_t hl = strlen(cfg->api_key) + sizeof("X-API-Key: ");
		if ((hdr = malloc(hl)) == NULL)
			goto oom;
		snprintf(hdr, hl, "X-API-Key: %s", cfg->api_key);
		l = curl_slist_append(up->headers, hdr);
		sodium_memzero(hdr, hl);
		if (l == NULL)
			goto oom;
	}
	pthread_mutex_init(&up->mu, NULL);
	*out = up;
	up = NULL;
	goto done;
oom:
	rc = hs_error_set(err, HS_INTERNAL, "user service client: out of memory");
done:
	free(hdr);
	if (up != NULL) {
		curl_slist_free_all(up->headers);
		free(up->idle);
		free(up->base);
		free(up);
	}
	return rc;
}

void hs_auth_upstream_free(hs_auth_upstream *up)
{
	if (up == NULL)
		return;
	hs_up__loop_free(up); /* answers what is in flight */
	for (size_t i = 0; i < up->n_idle; i++)
		curl_easy_cleanup(up->idle[i]);
	pthread_mutex_destroy(&up->mu);
	/* the list holds the API key */
	for (struct curl_slist *l = up->headers; l != NULL; l = l->next)
		sodium_memzero(l->data, strlen(l->data));
	curl_slist_free_all(up->headers);
	free(up->idle);
	free(up->base);
	free(up);
}

static CURL *pool_get(hs_auth_upstream *up)
{
	CURL *h = NULL;
	pthread_mutex_lock(&up->mu);
	if (up->n_idle > 0)
		h = up->idle[--up->n_idle];
	pthread_mutex_unlock(&up->mu);
	return h != NULL ? h : curl_easy_init();
}

static void pool_put(hs_auth_upstream *up, CURL *h)
{
	curl_easy_reset(h); /* options only: connections and caches stay */
	pthread_mutex_lock(&up->mu);
	if (up->n_idle < up->pool_max) {
		up->idle[up->n_idle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&up->mu);
	if (h != NULL)
		curl_easy_cleanup(h);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
	hs_up_body *b = userp;
	size_t n = size * nmemb;
	if (b->len + n > HS_AUTH_UPSTREAM_MAX_BODY) {
		b->overflow = 1;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	char *p = realloc(b->p, b->len + n + 1);
	if (p == NULL)
		return 0;
	b->p = p;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return n;
}

static void body_wipe(hs_up_body *b)
{
	if (b->p != NULL)
		sodium_memzero(b->p, b->len);
	free(b->p);
	b->p = NULL;
	b->len = 0;
}

/* Copy s into out as printable ASCII, at most max bytes. */
static void sanitise(char *out, size_t cap, const char *s, size_t max)
{
	size_t n = 0;
	for (; *s && n < max && n + 1 < cap; s++)
		out[n++] = ((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f) ? *s : '?';
	out[n] = '\0';
}

static hs_code status_code(long status)
{
	switch (status) {
	case 400: return HS_INVALID;
	case 401: return HS_UNAUTH;
	case 403: return HS_DENIED;
	case 404: return HS_NOT_FOUND;
	case 409: return HS_EXISTS;
	case 429: return HS_LIMIT;
	case 408: return HS_UNAVAILABLE;
	}
	return status >= 500 ? HS_UNAVAILABLE : HS_INVALID;
}

/* The error of a non-2xx response: its JSON message/code, else a default. */
static int status_error(long status, const hs_up_body *b, hs_error *err)
{
	char msg[MAX_UPSTREAM_MSG + 1] = "", code[65] = "";
	json_t *j = b->p ? json_loadb(b->p, b->len, 0, NULL) : NULL;
	json_t *m = json_object_get(j, "message"), *c = json_object_get(j, "code");
	if (json_is_string(m))
		sanitise(msg, sizeof(msg), json_string_value(m), MAX_UPSTREAM_MSG);
	if (json_is_string(c))
		sanitise(code, sizeof(code), json_string_value(c), 64);
	json_decref(j);
	if (msg[0] == '\0')
		snprintf(msg, sizeof(msg), "Service error (HTTP %ld)", status);
	int rc = hs_error_set(err, status_code(status), "%s", msg);
	/* Only its answers about the request (4xx) carry a code worth passing
	 * on; its outages are ours to name (UNAVAILABLE, no reason). */
	if (status >= 400 && status < 500 && status != 408)
		hs_error_set_reason(err, code);
	return rc;
}

/* The call's x-request-id and traceparent (trace.h: already checked) go
 * first, in a list of our own whose tail links to up->headers (linked, not
 * copied: those hold the API key). trace_unlink detaches it again. */
static struct curl_slist *trace_link(struct hs_auth_upstream *up, struct curl_slist **own)
{
	const hs_trace_ctx *tc = hs_trace_current();
	char line[32 + HS_REQUEST_ID_MAX + HS_TRACEPARENT_LEN];
	struct curl_slist *l = NULL, *n;
	*own = NULL;
	if (tc->request_id[0] != '\0') {
		snprintf(line, sizeof(line), "X-Request-Id: %s", tc->request_id);
		if ((n = curl_slist_append(l, line)) == NULL)
			return up->headers; /* out of memory: the call goes without */
		l = n;
	}
	if (tc->traceparent[0] != '\0') {
		snprintf(line, sizeof(line), "traceparent: %s", tc->traceparent);
		if ((n = curl_slist_append(l, line)) != NULL)
			l = n;
	}
	if (l == NULL)
		return up->headers;
	struct curl_slist *tail = l;
	while (tail->next != NULL)
		tail = tail->next;
	tail->next = up->headers;
	*own = l;
	return l;
}

static void trace_unlink(struct hs_auth_upstream *up, struct curl_slist *own)
{
	struct curl_slist *tail = own;
	if (own == NULL)
		return;
	while (tail->next != up->headers)
		tail = tail->next;
	tail->next = NULL;
	curl_slist_free_all(own);
}

/* A request's state from hs_up__begin to hs_up__end (upstream_internal.h). */
int hs_up__begin(hs_auth_upstream *up, hs_up_xfer *x, CURL *h, const char *path,
		 const char *json_body, int timeout_ms, hs_error *err)
{
	memset(x, 0, sizeof(*x));
	x->path = path;
	x->limit = up->timeout_ms;
	if (timeout_ms == 0)
		return hs_error_set(err, HS_TIMEOUT, "deadline exceeded before calling the user service");
	if (timeout_ms > 0 && timeout_ms < x->limit) {
		x->limit = timeout_ms;
		x->caller_limited = 1;
	}
	size_t ul = strlen(up->base) + strlen(path) + 1;
	if ((x->url = malloc(ul)) == NULL)
		return hs_error_set(err, HS_INTERNAL, "user service client: out of memory");
	snprintf(x->url, ul, "%s%s", up->base, path);
	curl_easy_setopt(h, CURLOPT_URL, x->url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, trace_link(up, &x->traced));
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, x->limit);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, x->limit);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "harnessd/" HS_VERSION);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x->b);
	if (json_body != NULL) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, json_body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(json_body));
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
	return HS_OK;
}

int hs_up__end(hs_auth_upstream *up, hs_up_xfer *x, CURL *h, CURLcode cc, json_t **out,
	       hs_error *err)
{
	long status = 0;
	(void)up;
	if (x->b.overflow)
		return hs_error_set(err, HS_INTERNAL, "user service: response larger than %d bytes",
				    HS_AUTH_UPSTREAM_MAX_BODY);
	if (cc == CURLE_OPERATION_TIMEDOUT) {
		if (x->caller_limited)
			return hs_error_set(err, HS_TIMEOUT, "deadline exceeded waiting for the user service");
		return hs_error_set(err, HS_UNAVAILABLE, "user service: timed out after %ld ms", x->limit);
	}
	if (cc != CURLE_OK) {
		hs_log(HS_LOG_WARN, "auth", "user service request failed", HS_LS("path", x->path),
		       HS_LS("curl", curl_easy_strerror(cc)));
		return hs_error_set(err, HS_UNAVAILABLE, "user service unreachable: %s",
				    curl_easy_strerror(cc));
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299)
		return status >= 400 ? status_error(status, &x->b, err)
				     : hs_error_set(err, HS_UNAVAILABLE,
						    "user service: unexpected HTTP status %ld", status);
	json_t *j = x->b.p ? json_loadb(x->b.p, x->b.len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	if (!json_is_object(j)) {
		json_decref(j);
		return hs_error_set(err, HS_INTERNAL, "user service: malformed response");
	}
	*out = j;
	return HS_OK;
}

void hs_up__dispose(hs_auth_upstream *up, hs_up_xfer *x)
{
	trace_unlink(up, x->traced);
	x->traced = NULL;
	body_wipe(&x->b);
	free(x->url);
	x->url = NULL;
}

/* One request. json_body NULL = GET. On HS_OK *out is the parsed 2xx body. */
static int request(hs_auth_upstream *up, const char *path, const char *json_body, int timeout_ms,
		   json_t **out, hs_error *err)
{
	hs_up_xfer x;
	CURL *h = NULL;
	int rc = HS_OK;
	if (timeout_ms != 0 && (h = pool_get(up)) == NULL)
		return hs_error_set(err, HS_INTERNAL, "user service client: out of memory");
	if ((rc = hs_up__begin(up, &x, h, path, json_body, timeout_ms, err)) == HS_OK)
		rc = hs_up__end(up, &x, h, curl_easy_perform(h), out, err);
	if (h != NULL)
		pool_put(up, h);
	hs_up__dispose(up, &x);
	return rc;
}

/* ---- response mapping ---- */

static int dup_str(json_t *o, const char *name, size_t max, int required, const char *dflt,
		   char **out)
{
	json_t *v = json_object_get(o, name);
	if (v == NULL || json_is_null(v)) {
		if (required)
			return -1;
		return (*out = strdup(dflt)) == NULL ? -1 : 0;
	}
	if (!json_is_string(v) || json_string_length(v) > max ||
	    (required && json_string_length(v) == 0) ||
	    strlen(json_string_value(v)) != json_string_length(v)) /* embedded NUL */
		return -1;
	return (*out = strdup(json_string_value(v))) == NULL ? -1 : 0;
}

static int map_user(json_t *o, hs_auth_user *u)
{
	json_t *id = json_object_get(o, "id"), *ca;
	char num[32];
	if (!json_is_object(o))
		return -1;
	if (json_is_integer(id)) { /* numeric ids are common upstream */
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
		if ((u->id = strdup(num)) == NULL)
			return -1;
	} else if (dup_str(o, "id", MAX_ID, 1, NULL, &u->id) != 0) {
		return -1;
	}
	if (dup_str(o, "email", MAX_EMAIL, 1, NULL, &u->email) != 0 ||
	    dup_str(o, "name", MAX_NAME, 0, "", &u->name) != 0 ||
	    dup_str(o, "role", MAX_ROLE, 0, "user", &u->role) != 0)
		return -1;
	ca = json_object_get(o, "created_at");
	if (ca != NULL && !json_is_null(ca) &&
	    (!json_is_string(ca) || hs_auth_upstream_parse_time(json_string_value(ca), &u->created_at_ms) != 0))
		return -1;
	return 0;
}

static int map_auth(json_t *j, hs_auth_result *r)
{
	json_t *ei = json_object_get(j, "expires_in");
	if (map_user(json_object_get(j, "user"), &r->user) != 0 ||
	    dup_str(j, "access_token", MAX_TOKEN, 1, NULL, &r->access_token) != 0 ||
	    dup_str(j, "refresh_token", MAX_TOKEN, 1, NULL, &r->refresh_token) != 0 ||
	    !json_is_integer(ei) || json_integer_value(ei) <= 0)
		return -1;
	r->expires_in = (long long)json_integer_value(ei);
	return 0;
}

int hs_up__auth_result(json_t *resp, hs_auth_result *out, hs_error *err)
{
	hs_auth_result r = { 0 };
	if (map_auth(resp, &r) != 0) {
		hs_auth_result_dispose(&r);
		return hs_error_set(err, HS_INTERNAL, "user service: incomplete auth response");
	}
	*out = r;
	return HS_OK;
}

static int auth_call(hs_auth_upstream *up, const char *path, json_t *req, int timeout_ms,
		     hs_auth_result *out, hs_error *err)
{
	json_t *resp = NULL;
	char *s = json_dumps(req, JSON_COMPACT);
	int rc;
	if (s == NULL)
		return hs_error_set(err, HS_INTERNAL, "user service client: out of memory");
	rc = request(up, path, s, timeout_ms, &resp, err);
	sodium_memzero(s, strlen(s));
	free(s);
	if (rc != HS_OK)
		return rc;
	rc = hs_up__auth_result(resp, out, err);
	json_decref(resp);
	return rc;
}

int hs_up__login_json(const char *email, const char *password, char **out, hs_error *err)
{
	if (email == NULL || password == NULL)
		return hs_error_set(err, HS_INVALID, "login: email and password required");
	json_t *req = json_pack("{s:s,s:s}", "email", email, "password", password);
	if (req == NULL) /* also invalid UTF-8 */
		return hs_error_set(err, HS_INVALID, "login: email and password must be UTF-8");
	char *s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (s == NULL)
		return hs_error_set(err, HS_INTERNAL, "user service client: out of memory");
	*out = s;
	return HS_OK;
}

int hs_auth_upstream_login(hs_auth_upstream *up, const char *email, const char *password, int timeout_ms,
		      hs_auth_result *out, hs_error *err)
{
	char *body = NULL;
	json_t *resp = NULL;
	int rc = hs_up__login_json(email, password, &body, err);
	if (rc != HS_OK)
		return rc;
	rc = request(up, LOGIN_PATH, body, timeout_ms, &resp, err);
	sodium_memzero(body, strlen(body));
	free(body);
	if (rc != HS_OK)
		return rc;
	rc = hs_up__auth_result(resp, out, err);
	json_decref(resp);
	return rc;
}

int hs_auth_upstream_refresh(hs_auth_upstream *up, const char *refresh_token, int timeout_ms,
			hs_auth_result *out, hs_error *err)
{
	int rc;
	if (refresh_token == NULL || refresh_token[0] == '\0' ||
	    strnlen(refresh_token, MAX_TOKEN + 1) > MAX_TOKEN)
		return hs_error_set(err, HS_UNAUTH, "Invalid or expired refresh token");
	json_t *req = json_pack("{s:s}", "refreshToken", refresh_token);
	if (req == NULL)
		return hs_error_set(err, HS_UNAUTH, "Invalid or expired refresh token");
	rc = auth_call(up, "/api/v1/auth/refresh", req, timeout_ms, out, err);
	json_decref(req);
	return rc;
}

int hs_auth_upstream_get_user(hs_auth_upstream *up, const char *id, int timeout_ms, hs_auth_user *out,
			 hs_error *err)
{
	hs_auth_user u = { 0 };
	json_t *resp = NULL, *o;
	char *esc = NULL, path[64 + 3 * MAX_ID];
	size_t n = id ? strnlen(id, MAX_ID + 1) : 0;
	int rc;

	if (n == 0 || n > MAX_ID || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
		return hs_error_set(err, HS_INVALID, "user id: 1..%d characters required", MAX_ID);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
			return hs_error_set(err, HS_INVALID, "user id: control characters");
	if ((esc = curl_easy_escape(NULL, id, (int)n)) == NULL)
		return hs_error_set(err, HS_INTERNAL, "user service client: out of memory");
	snprintf(path, sizeof(path), "/api/v1/users/%s", esc);
	curl_free(esc);
	if ((rc = request(up, path, NULL, timeout_ms, &resp, err)) != HS_OK)
		return rc;
	/* the seed reads the user at the top level; accept {"user": {...}} too */
	o = json_object_get(resp, "user");
	if (map_user(json_is_object(o) ? o : resp, &u) != 0) {
		hs_auth_user_dispose(&u);
		rc = hs_error_set(err, HS_INTERNAL, "user service: incomplete user response");
	} else {
		*out = u;
	}
	json_decref(resp);
	return rc;
}

/* ---- RFC 3339 ---- */

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static long long days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	long long yoe = y - era * 400;
	long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int hs_auth_upstream_parse_time(const char *s, long long *out_ms)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, oh = 0, om = 0, sign = 0;
	const char *p = s;

	if (s == NULL || strlen(s) > 64 || digits(&p, 4, &y) || *p++ != '-' ||
	    digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
		return -1;
	if (*p != '\0') {
		if ((*p != 'T' && *p != 't' && *p != ' ') || (p++, digits(&p, 2, &h)) ||
		    *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &sec))
			return -1;
		if (h > 23 || mi > 59 || sec > 60)
			return -1;
		if (*p == '.' || *p == ',') {
			int nd = 0;
			for (p++; *p >= '0' && *p <= '9'; p++, nd++)
				if (nd < 3)
					ms = ms * 10 + (*p - '0');
			if (nd == 0)
				return -1;
			for (; nd < 3; nd++)
				ms *= 10;
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			sign = *p++ == '+' ? 1 : -1;
			if (digits(&p, 2, &oh))
				return -1;
			if (*p == ':')
				p++;
			if (digits(&p, 2, &om) || oh > 23 || om > 59)
				return -1;
		}
		if (*p != '\0')
			return -1;
	}
	long long t = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL +
		      (sec == 60 ? 59 : sec);
	t -= sign * (oh * 3600LL + om * 60LL);
	*out_ms = t * 1000 + ms;
	return 0;
}
