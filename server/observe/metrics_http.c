/* GET /metrics on its own civetweb listener (metrics_http.h). */
#include "metrics_http.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hs_metrics_http {
	struct mg_context *ctx;
	hs_metrics *metrics;
	hs_metrics_http_opts opts;
	int port;
};

static int answer(struct mg_connection *conn, int status, const char *type, const char *body,
		  size_t len)
{
	mg_printf(conn,
		  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		  "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
		  status, mg_get_response_code_text(conn, status), type, len);
	if (len > 0)
		mg_write(conn, body, len);
	return status;
}

static int on_request(struct mg_connection *conn, void *payload)
{
	hs_metrics_http *h = payload;
	const struct mg_request_info *ri = mg_get_request_info(conn);
	bool live = strcmp(ri->local_uri, "/livez") == 0;
	if (h->opts.probe != NULL && (live || strcmp(ri->local_uri, "/readyz") == 0)) {
		if (h->opts.probe(h->opts.payload, !live))
			return answer(conn, 200, "text/plain", "ok\n", 3);
		return answer(conn, 503, "text/plain", live ? "not live\n" : "not ready\n",
			      live ? 9 : 10);
	}
	if (strcmp(ri->local_uri, "/metrics") != 0)
		return answer(conn, 404, "text/plain", "not found\n", 10);
	if (strcmp(ri->request_method, "GET") != 0 && strcmp(ri->request_method, "HEAD") != 0)
		return answer(conn, 405, "text/plain", "GET only\n", 9);
	size_t len = 0;
	char *text = hs_metrics_render(h->metrics, &len);
	if (text == NULL)
		return answer(conn, 500, "text/plain", "out of memory\n", 14);
	int rc = answer(conn, 200, "text/plain; version=0.0.4; charset=utf-8",
			strcmp(ri->request_method, "HEAD") == 0 ? "" : text,
			strcmp(ri->request_method, "HEAD") == 0 ? 0 : len);
	free(text);
	return rc;
}

static int quiet_log(const struct mg_connection *conn, const char *msg)
{
	(void)conn, (void)msg;
	return 1; /* civetweb's own messages stay off stderr's JSON lines */
}

/* The endpoint is open by design (bind it to a private address). Without an
 * authorization handler civetweb looks for a basic-auth file, "/.htpasswd"
 * at the filesystem root, on every scrape: a failed stat() each time, and a
 * file there would put /metrics and the probes behind a password prompt. */
static int allow_all(struct mg_connection *conn, void *data)
{
	(void)conn;
	(void)data;
	return 1;
}

int hs_metrics_http_start(hs_metrics_http **out, const char *listen, hs_metrics *metrics,
			  hs_error *err)
{
	return hs_metrics_http_start_with(out, listen, metrics, NULL, err);
}

int hs_metrics_http_start_with(hs_metrics_http **out, const char *listen, hs_metrics *metrics,
			       const hs_metrics_http_opts *opts, hs_error *err)
{
	const char *colon = listen ? strrchr(listen, ':') : NULL;
	if (colon == NULL || colon == listen || colon[1] == '\0')
		return hs_error_set(err, HS_INVALID, "metrics-listen: expected host:port, got \"%s\"",
				    listen ? listen : "");
	/* civetweb wants "host:port" only for IPv4 literals; "localhost" is
	 * mapped to the loopback address it means. */
	char ports[300];
	if (strncmp(listen, "localhost:", 10) == 0)
		snprintf(ports, sizeof(ports), "127.0.0.1%s", colon);
	else if (snprintf(ports, sizeof(ports), "%s", listen) >= (int)sizeof(ports))
		return hs_error_set(err, HS_INVALID, "metrics-listen: too long");
	hs_metrics_http *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	h->metrics = metrics;
	if (opts != NULL)
		h->opts = *opts;
	mg_init_library(0); /* reference-counted; undone in stop */
	const char *options[] = { "listening_ports", ports,	 "num_threads", "2",
				  "request_timeout_ms", "10000", "enable_keep_alive", "no",
				  NULL };
	struct mg_callbacks cb;
	memset(&cb, 0, sizeof(cb));
	cb.log_message = quiet_log;
	h->ctx = mg_start(&cb, h, options);
	if (h->ctx == NULL) {
		mg_exit_library();
		free(h);
		return hs_error_set(err, HS_UNAVAILABLE, "metrics-listen %s: cannot listen", listen);
	}
	mg_set_request_handler(h->ctx, "/", on_request, h);
	mg_set_auth_handler(h->ctx, "/", allow_all, NULL);
	struct mg_server_port sp[4];
	int n = mg_get_server_ports(h->ctx, 4, sp);
	h->port = n > 0 ? sp[0].port : 0;
	*out = h;
	return HS_OK;
}

int hs_metrics_http_port(const hs_metrics_http *h)
{
	return h->port;
}

void hs_metrics_http_stop(hs_metrics_http *h)
{
	if (h == NULL)
		return;
	mg_stop(h->ctx);
	mg_exit_library();
	free(h);
}
