/* One exchange's bytes on a civetweb connection: the request's headers
 * (only values safe to use), its body (capped: civetweb's max_request_size
 * covers headers only), and the response. Every response the gateway sends
 * is written here (hs_gw__respond, hs_gw__respond_stream), so every one
 * carries helmet's headers, CORS and the request id; every value put into
 * a header was validated first (civetweb checks none). The routes that
 * decide what to answer live in server.c, rest.c, auth_routes.c and
 * assets.c. */
#include "server_internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "json.h"
#include "policy.h"

typedef hs_gw_resp resp;
typedef hs_gw_req req;

const char *hs_gw__header(const req *r, const char *name)
{
	const char *v = mg_get_header(r->conn, name);
	return hs_gw_header_value_ok(v) ? v : NULL;
}

void hs_gw__set_error(resp *out, int status, const char *code, const char *message)
{
	free(out->body);
	out->status = status;
	out->body = hs_gw_json_error(code, message);
}

/* A response head built in memory and sent with the body in one write:
 * civetweb's mg_response_header_send writes each header line with its own
 * send(), 20-odd syscalls and TCP segments per answer (most of the
 * gateway's CPU per call). Lines longer than the buffer are dropped with
 * the response (oom), never truncated. */
typedef struct head {
	char buf[8192];
	size_t n;
	bool oom;
} head;

/* "name: value\r\n" (copied: ~20 lines per answer, printf cost more). */
static void add(head *h, const char *name, const char *value)
{
	size_t room = sizeof(h->buf) - h->n, nl = strlen(name), vl = strlen(value);
	if (nl + vl + 4 >= room) { /* as snprintf's k >= room: a NUL would not fit */
		h->oom = true;
		return;
	}
	char *p = h->buf + h->n;
	memcpy(p, name, nl);
	memcpy(p + nl, ": ", 2);
	memcpy(p + nl + 2, value, vl);
	memcpy(p + nl + 2 + vl, "\r\n", 2);
	h->n += nl + vl + 4;
}

static void head_start(head *h, struct mg_connection *conn, int status)
{
	h->n = 0;
	h->oom = false;
	int k = snprintf(h->buf, sizeof(h->buf), "HTTP/1.1 %d %s\r\n", status,
			 mg_get_response_code_text(conn, status));
	h->n = k > 0 ? (size_t)k : 0;
	/* formatted once a second per worker thread */
	static __thread time_t date_at = -1;
	static __thread char date[64];
	time_t now = time(NULL);
	if (now != date_at) {
		struct tm tm;
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
		date_at = now;
	}
	add(h, "Date", date);
}

/* Whether civetweb keeps this connection after the answer (its own rule,
 * which is not exported): HTTP/1.1 unless the client said close, HTTP/1.0
 * only when it asked for keep-alive. */
static bool keeps_alive(struct mg_connection *conn)
{
	const struct mg_request_info *ri = mg_get_request_info(conn);
	const char *c = mg_get_header(conn, "Connection");
	if (c != NULL)
		return strcasestr(c, "keep-alive") != NULL;
	return ri != NULL && ri->http_version != NULL && strcmp(ri->http_version, "1.1") == 0;
}

/* Head and body in one write (one syscall, one segment for small answers). */
static bool head_send(head *h, struct mg_connection *conn, const void *body, size_t len)
{
	if (h->oom || h->n + 2 > sizeof(h->buf)) {
		mg_disable_connection_keep_alive(conn);
		return false;
	}
	memcpy(h->buf + h->n, "\r\n", 2); /* the blank line ending the head */
	h->n += 2;
	if (body == NULL || len == 0)
		return mg_write(conn, h->buf, h->n) == (int)h->n;
	if (len <= sizeof(h->buf) - h->n) {
		memcpy(h->buf + h->n, body, len);
		h->n += len;
		return mg_write(conn, h->buf, h->n) == (int)h->n;
	}
	char *all = malloc(h->n + len);
	if (all == NULL) /* two writes then */
		return mg_write(conn, h->buf, h->n) == (int)h->n &&
		       mg_write(conn, body, len) == (int)len;
	memcpy(all, h->buf, h->n);
	memcpy(all + h->n, body, len);
	bool ok = mg_write(conn, all, h->n + len) == (int)(h->n + len);
	free(all);
	return ok;
}

static bool acrh_ok(const char *v)
{
	if (v == NULL || strlen(v) > 256)
		return false;
	for (const char *c = v; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		      *c == '-' || *c == '_' || *c == ',' || *c == ' '))
			return false;
	return true;
}

/* helmet's headers (CSP: csp, or helmet's), CORS for an allowed origin,
 * the request id. */
static void common_headers(head *h, const req *r, const char *csp)
{
	struct mg_connection *conn = r->conn;
	const hs_gw_config *cfg = r->srv->cfg;
	for (size_t i = 0; hs_gw_security_headers[i][0] != NULL; i++) {
		bool is_csp = i == 0; /* the table starts with helmet's CSP */
		add(h, hs_gw_security_headers[i][0],
		    is_csp && csp != NULL ? csp : hs_gw_security_headers[i][1]);
	}
	if (r->request_id[0] != '\0')
		add(h, "X-Request-Id", r->request_id);
	/* CORS (the cors package with credentials): echo only an allowed origin,
	 * and from our own list, never the request's bytes. */
	const char *origin = r->method != NULL ? mg_get_header(conn, "Origin") : NULL;
	for (size_t i = 0; origin != NULL && i < cfg->origins.n; i++) {
		if (strcasecmp(cfg->origins.v[i], origin) == 0) {
			add(h, "Access-Control-Allow-Origin", cfg->origins.v[i]);
			add(h, "Access-Control-Allow-Credentials", "true");
			add(h, "Access-Control-Expose-Headers", "X-Request-Id");
			break;
		}
	}
}

void hs_gw__respond(const req *r, resp *out)
{
	struct mg_connection *conn = r->conn;
	if (out->close)
		mg_disable_connection_keep_alive(conn);
	head h;
	head_start(&h, conn, out->status);
	common_headers(&h, r, out->csp);
	if (out->preflight) {
		const char *acrh = mg_get_header(conn, "Access-Control-Request-Headers");
		add(&h, "Access-Control-Allow-Methods", "GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS");
		add(&h, "Access-Control-Allow-Headers",
		    acrh_ok(acrh) ? acrh
				  : "Content-Type,Authorization,X-Requested-With,X-Request-Id,Last-Event-ID");
		add(&h, "Access-Control-Max-Age", "600");
		add(&h, "Vary", "Origin, Access-Control-Request-Headers");
	} else {
		add(&h, "Vary", "Origin");
	}
	if (out->allow != NULL)
		add(&h, "Allow", out->allow);
	if (out->no_store) {
		add(&h, "Cache-Control", "no-store");
		add(&h, "Pragma", "no-cache");
	} else if (out->cache != NULL) {
		add(&h, "Cache-Control", out->cache);
	}
	if (out->etag != NULL)
		add(&h, "ETag", out->etag);
	if (out->has_cookie)
		add(&h, "Set-Cookie", out->cookie);
	const void *body = out->body != NULL ? (const void *)out->body : out->static_body;
	size_t len = out->body_len;
	if (out->body != NULL && len == 0)
		len = strlen(out->body);
	char num[32];
	snprintf(num, sizeof(num), "%zu", body != NULL ? len : (size_t)0);
	if (body != NULL)
		add(&h, "Content-Type",
		    out->content_type != NULL ? out->content_type : "application/json; charset=utf-8");
	if (out->status != 304) /* a 304 describes the 200 it stands for */
		add(&h, "Content-Length", num);
	bool alive = !out->close && keeps_alive(conn);
	if (!alive)
		mg_disable_connection_keep_alive(conn);
	add(&h, "Connection", alive ? "keep-alive" : "close");
	bool head_only = r->method != NULL && strcmp(r->method, "HEAD") == 0;
	head_send(&h, conn, head_only ? NULL : body, head_only ? 0 : len);
}

bool hs_gw__respond_stream(const req *r, const char *content_type)
{
	struct mg_connection *conn = r->conn;
	mg_disable_connection_keep_alive(conn);
	head h;
	head_start(&h, conn, 200);
	common_headers(&h, r, NULL);
	add(&h, "Vary", "Origin");
	add(&h, "Content-Type", content_type);
	add(&h, "Cache-Control", "no-store");
	add(&h, "X-Accel-Buffering", "no"); /* proxies: do not buffer the stream */
	add(&h, "Connection", "close");
	return head_send(&h, conn, NULL, 0);
}

/* Before answering 413 on a connection we then close, read (and drop) up
 * to 1 MiB of what the client is still sending: closing a socket with
 * unread data makes the kernel send RST, and the client would lose the 413
 * itself (the "lingering close" of other servers). Bigger bodies are not
 * waited for. */
#define DRAIN_MAX (1L << 20)

static void drain(const req *r, long long max)
{
	char sink[4096];
	for (long long left = max; left > 0;) {
		int got = mg_read(r->conn, sink, left < (long long)sizeof(sink) ? (size_t)left : sizeof(sink));
		if (got <= 0)
			return;
		left -= got;
	}
}

/* Reads the whole body into a malloc'd NUL-terminated buffer. 413 (and
 * close) above the limit, 400 on a broken read. */
bool hs_gw__read_body(const req *r, resp *out, char **body, size_t *len)
{
	long limit = r->srv->cfg->body_limit;
	long long cl = r->ri->content_length;
	*body = NULL;
	*len = 0;
	if (cl > limit) {
		if (cl <= DRAIN_MAX)
			drain(r, cl);
		out->close = true;
		hs_gw__set_error(out, 413, "PAYLOAD_TOO_LARGE", "Request body too large");
		return false;
	}
	/* a declared length sizes the buffer (a login is ~60 bytes, not the
	 * 16 KiB limit, times every busy worker); a body without one (chunked)
	 * gets the limit, plus one byte to see that it is longer */
	size_t cap = cl >= 0 ? (size_t)cl : (size_t)limit;
	char *buf = malloc(cap + 2);
	if (buf == NULL) {
		hs_gw__set_error(out, 500, "INTERNAL_ERROR", "Internal server error");
		return false;
	}
	size_t n = 0;
	for (;;) {
		if (n == cap + 1)
			break; /* civetweb stops at a declared length; never past the buffer */
		int got = mg_read(r->conn, buf + n, cap + 1 - n);
		if (got < 0) {
			free(buf);
			out->close = true;
			hs_gw__set_error(out, 400, "BAD_REQUEST", "Broken request body");
			return false;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		if (n > (size_t)limit) {
			explicit_bzero(buf, n);
			free(buf);
			drain(r, DRAIN_MAX);
			out->close = true;
			hs_gw__set_error(out, 413, "PAYLOAD_TOO_LARGE", "Request body too large");
			return false;
		}
	}
	buf[n] = '\0';
	*body = buf;
	*len = n;
	return true;
}

void hs_gw__free_body(char *body, size_t len)
{
	if (body == NULL)
		return;
	explicit_bzero(body, len);
	free(body);
}
