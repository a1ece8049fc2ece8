/* civetweb glue: the server's life (start/stop, civetweb's callbacks, the
 * --metrics-listen listener), connection admission, and one catch-all
 * handler that routes the seed's REST contract (DESIGN.md "REST gateway
 * contract": /api/v1/auth/..., /health), every RPC over REST (/v1/...,
 * rest.c), the console and /openapi.json (assets.c). The bytes of each
 * exchange (headers, the capped body, every response with helmet's
 * headers, CORS and the request id) are http_io.c's.
 *
 * A state-changing request goes: CSRF/content-type verdict -> body (capped:
 * civetweb's max_request_size covers headers only) -> route -> a gRPC call
 * started on the shared completion queue (clients/async.h); this civetweb
 * worker sleeps until a poller thread hands over the result.
 *
 * Abuse, with what civetweb 1.15 offers (one worker thread per connection,
 * from accept to close):
 *   - framing: begin_request sees the raw header lines before any body is
 *     read; an ambiguous body length (policy.h) is 400 and the connection
 *     is closed, so nothing behind the request is ever parsed as another;
 *   - slow clients: request_timeout_ms (--header-timeout-ms) bounds how long
 *     a request line and headers may take (civetweb measures it from the
 *     first read, so at most about twice that); keep-alive waits 5 s;
 *   - per client: the connections each address holds open are counted
 *     (admit.h) from accept to close; one over --max-connections-per-client
 *     is closed at accept, before it takes a worker (see accept() below for
 *     how, with civetweb 1.15), so a few slow clients cannot hold every
 *     worker. Trusted proxies are exempt (they carry everyone).
 * The client address goes to harnessd as x-forwarded-for, signed with the
 * gateway key (common/gateway_auth.h) so harnessd believes it. */
#include "server.h"
#include "server_internal.h"
#include "clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "descriptor_set.h"
#include "grpc/health/v1/health.pb-c.h"
#include "json.h"
#include "log.h"
#include "policy.h"
#include "secret_file.h"
#include "services.h"

#define HEALTH_DEADLINE_MS 2000
#define KEY_RETRY_MS 1000
#define CONNECTION_QUEUE 20 /* civetweb's default connection_queue */
#define CONNECTION_QUEUE_STR "20"

typedef hs_gw_resp resp;
typedef hs_gw_req req;

#define GRPC_POLLERS 1 /* one thread runs the channel's I/O; measured in bench/ */

/* Signs the client address with the gateway key into sig; false when there
 * is no key (yet): harnessd then ignores x-forwarded-for. */
static bool sign_address(hs_gw_server *srv, const char *ip, char sig[HS_GATEWAY_AUTH_MAX])
{
	const char *path = srv->cfg->gateway_secret_file;
	bool ok = false;
	if (path[0] == '\0')
		return false;
	pthread_mutex_lock(&srv->mu);
	long long now = hs_clock_mono_ms();
	if (srv->key == NULL && now >= srv->key_next_try_ms) {
		hs_secret_file_opts o = { false, 0, 007 };
		hs_error err = { 0 };
		if (hs_secret_file_load(path, &o, &srv->key, &srv->key_len, &err) != HS_OK) {
			srv->key_next_try_ms = now + KEY_RETRY_MS;
			hs_log(HS_LOG_WARN, "gateway", "gateway key not usable yet: client addresses go "
			       "unsigned", HS_LS("error", err.msg));
		}
	}
	if (srv->key != NULL)
		ok = hs_gateway_auth_sign(srv->key, srv->key_len, ip, hs_clock_wall_ms() / 1000, sig,
					  HS_GATEWAY_AUTH_MAX);
	pthread_mutex_unlock(&srv->mu);
	return ok;
}

typedef hs_gw_md call_md;

/* A header value gRPC metadata may carry (printable ASCII). */
static bool md_value_ok(const char *v, size_t max)
{
	size_t n = 0;
	for (; v[n] != '\0'; n++)
		if ((unsigned char)v[n] < 0x20 || (unsigned char)v[n] > 0x7e || n >= max)
			return false;
	return n > 0;
}

void hs_gw__metadata(const req *r, call_md *md, bool with_authz)
{
	md->n = 0;
	md->v[md->n++] = (hs_client_md){ "x-forwarded-for", r->client_ip };
	if (sign_address(r->srv, r->client_ip, md->sig))
		md->v[md->n++] = (hs_client_md){ HS_GATEWAY_AUTH_KEY, md->sig };
	const char *ua = hs_gw__header(r, "User-Agent");
	if (ua != NULL && md_value_ok(ua, 512))
		md->v[md->n++] = (hs_client_md){ "x-client-user-agent", ua };
	if (r->request_id[0] != '\0')
		md->v[md->n++] = (hs_client_md){ "x-request-id", r->request_id };
	if (r->traceparent[0] != '\0')
		md->v[md->n++] = (hs_client_md){ "traceparent", r->traceparent };
	const char *authz = with_authz ? hs_gw__header(r, "Authorization") : NULL;
	if (authz != NULL && strncasecmp(authz, "Bearer ", 7) == 0 && md_value_ok(authz, 8192))
		md->v[md->n++] = (hs_client_md){ "authorization", authz };
}

int hs_gw__csrf(const req *r)
{
	const char *te = mg_get_header(r->conn, "Transfer-Encoding");
	char self[300];
	bool have_self = hs_gw_self_origin(self, sizeof(self), hs_gw__header(r, "Host"), r->https);
	hs_gw_post_req pr = {
		.origin = mg_get_header(r->conn, "Origin"),
		.sec_fetch_site = mg_get_header(r->conn, "Sec-Fetch-Site"),
		.content_type = mg_get_header(r->conn, "Content-Type"),
		.requested_with = hs_gw__header(r, "X-Requested-With"),
		.self_origin = have_self ? self : NULL,
		.has_body = r->ri->content_length > 0 || (te != NULL && r->ri->content_length < 0),
	};
	return hs_gw_csrf_check(&pr, &r->srv->cfg->origins, r->srv->cfg->csrf_strict);
}

/* Whether harnessd answers grpc.health.v1 Check("") with SERVING. */
static bool harnessd_serving(hs_gw_server *srv)
{
	Grpc__Health__V1__HealthCheckRequest hr = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp_msg = NULL;
	hs_client_status st;
	long dl = srv->cfg->request_timeout_ms < HEALTH_DEADLINE_MS ? srv->cfg->request_timeout_ms
								     : HEALTH_DEADLINE_MS;
	hr.service = "";
	int rc = hs_async_unary(srv->async, "/grpc.health.v1.Health/Check", &hr.base,
				 &grpc__health__v1__health_check_response__descriptor, &resp_msg, NULL,
				 0, dl, &st);
	bool up = rc == HS_OK &&
		  ((Grpc__Health__V1__HealthCheckResponse *)resp_msg)->status ==
			  GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	if (resp_msg != NULL)
		protobuf_c_message_free_unpacked(resp_msg, NULL);
	return up;
}

/* Returns true when the route wrote the response itself (an event stream). */
static bool route(req *r, resp *out)
{
	const char *m = r->method;
	const char *p = r->path;
	if (r->path_too_long) {
		out->close = r->ri->content_length != 0;
		hs_gw__set_error(out, 414, "URI_TOO_LONG", "Request path too long");
		return false;
	}
	hs_gw_metrics *gm = r->srv->metrics;
	if (!strcmp(m, "OPTIONS")) {
		out->route_slot = hs_gw_metrics_fixed_slot(gm, HS_GW_R_PREFLIGHT);
		out->status = 204;
		out->preflight = true;
		return false;
	}
	if (!strncmp(p, "/v1/", 4))
		return hs_gw_rest_route(r, out);
	/* /livez: this process answers HTTP (liveness). /health and /readyz:
	 * harnessd answers grpc.health.v1 Check("") with SERVING (readiness). */
	bool live = !strcmp(p, "/livez");
	if (live || !strcmp(p, "/health") || !strcmp(p, "/readyz")) {
		out->route_slot = hs_gw_metrics_fixed_slot(gm, live		      ? HS_GW_R_LIVEZ
							   : !strcmp(p, "/health") ? HS_GW_R_HEALTH
										   : HS_GW_R_READYZ);
		out->no_store = true;
		if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
			out->allow = "GET, HEAD, OPTIONS";
			hs_gw__set_error(out, 405, "METHOD_NOT_ALLOWED", "Method not allowed");
			return false;
		}
		bool up = live || harnessd_serving(r->srv);
		out->status = up ? 200 : 503;
		out->body = hs_gw_json_health(up, hs_clock_wall_ms());
		return false;
	}
	static const char prefix[] = "/api/v1/auth/";
	const char *which = NULL;
	if (!strncmp(p, prefix, sizeof(prefix) - 1)) {
		const char *rest = p + sizeof(prefix) - 1;
		if (!strcmp(rest, "login") || !strcmp(rest, "refresh") || !strcmp(rest, "logout"))
			which = rest;
	}
	if (which == NULL) {
		out->route_slot = hs_gw_metrics_fixed_slot(gm, HS_GW_R_CONSOLE);
		if (hs_gw_assets_route(r, out))
			return false;
		out->route_slot = hs_gw_metrics_fixed_slot(gm, HS_GW_R_UNMATCHED);
		out->close = r->ri->content_length != 0;
		hs_gw__set_error(out, 404, "NOT_FOUND", "Route not found");
		return false;
	}
	if (strcmp(m, "POST") != 0) {
		out->close = r->ri->content_length != 0;
		out->allow = "POST, OPTIONS";
		hs_gw__set_error(out, 405, "METHOD_NOT_ALLOWED", "Method not allowed");
		return false;
	}
	out->route_slot = hs_gw_metrics_fixed_slot(gm, !strcmp(which, "login")	  ? HS_GW_R_LOGIN
						       : !strcmp(which, "refresh") ? HS_GW_R_REFRESH
										   : HS_GW_R_LOGOUT);
	hs_gw_auth_route(r, out, which);
	return false;
}

/* X-Request-Id and traceparent: the client's when they pass the rules of
 * common/trace.h, else new ones (a bad value is never logged or passed
 * on). They become this thread's log context until the request ends, and
 * go to harnessd as metadata. raw_headers = false: civetweb could not
 * parse the request, only new values. */
static void trace_init(req *r, bool use_headers)
{
	const char *rid = use_headers ? hs_gw__header(r, "X-Request-Id") : NULL;
	const char *tp = use_headers ? hs_gw__header(r, "traceparent") : NULL;
	hs_trace_begin(rid, rid != NULL ? strlen(rid) : 0, tp, tp != NULL ? strlen(tp) : 0);
	const hs_trace_ctx *tc = hs_trace_current();
	memcpy(r->request_id, tc->request_id, sizeof(r->request_id));
	memcpy(r->traceparent, tc->traceparent, sizeof(r->traceparent));
}

/* parsed = false for civetweb's own errors: then the request line's fields
 * may be unset garbage and only the peer address is used. */
static void req_init(req *r, struct mg_connection *conn, hs_gw_server *srv, bool parsed)
{
	memset(r, 0, sizeof(*r));
	r->conn = conn;
	r->srv = srv;
	r->ri = mg_get_request_info(conn);
	r->method = parsed ? r->ri->request_method : NULL;
	const char *p = parsed && r->ri->local_uri != NULL ? r->ri->local_uri : "-";
	size_t n = strlen(p);
	if (n > 1 && p[n - 1] == '/') /* Express's non-strict routing */
		n--;
	if (n >= sizeof(r->path)) {
		n = sizeof(r->path) - 1;
		r->path_too_long = true;
	}
	memcpy(r->path, p, n);
	r->path[n] = '\0';
	const hs_gw_config *cfg = srv->cfg;
	if (!parsed) {
		snprintf(r->client_ip, sizeof(r->client_ip), "%s", r->ri->remote_addr);
		trace_init(r, false);
		return;
	}
	hs_client_address(&cfg->proxies, r->ri->remote_addr, hs_gw__header(r, "X-Forwarded-For"),
			  r->client_ip, sizeof(r->client_ip));
	bool via_proxy = hs_cidr_list_has(&cfg->proxies, r->ri->remote_addr,
					  strlen(r->ri->remote_addr));
	const char *proto = hs_gw__header(r, "X-Forwarded-Proto");
	r->https = cfg->production || (via_proxy && proto != NULL && !strcasecmp(proto, "https"));
	r->secure = r->https;
	trace_init(r, true);
}

/* The access log line (request_id and trace_id come from the context),
 * the request's metrics, and the end of its log context. */
static void access_log(const req *r, int status, long long t0_us, size_t route_slot)
{
	long long us = hs_clock_mono_us() - t0_us;
	hs_log(HS_LOG_INFO, "gateway", "request", HS_LS("method", r->method != NULL ? r->method : "-"),
	       HS_LS("path", r->path), HS_LI("status", status),
	       HS_LI("ms", us / 1000), HS_LS("peer", r->client_ip));
	hs_gw_metrics_request(r->srv->metrics, route_slot, status, (double)us / 1e6);
	hs_trace_end();
}

static int handler(struct mg_connection *conn, void *cbdata)
{
	long long t0 = hs_clock_mono_us();
	req r;
	req_init(&r, conn, cbdata, true);
	resp *out = calloc(1, sizeof(*out));
	if (out == NULL) {
		hs_trace_end();
		return 500;
	}
	out->status = 500;
	out->route_slot = hs_gw_metrics_fixed_slot(r.srv->metrics, HS_GW_R_UNMATCHED);
	hs_gw_metrics_in_flight(r.srv->metrics, 1);
	bool streamed = route(&r, out);
	if (!streamed) {
		if (out->body == NULL && out->static_body == NULL && out->status != 204 &&
		    out->status != 200 && out->status != 304)
			out->body = hs_gw_json_error("INTERNAL_ERROR", "Internal server error");
		hs_gw__respond(&r, out);
	}
	int status = streamed ? 200 : out->status;
	size_t slot = out->route_slot;
	explicit_bzero(out->cookie, sizeof(out->cookie));
	free(out->body);
	free(out);
	hs_gw_metrics_in_flight(r.srv->metrics, -1);
	access_log(&r, status, t0, slot);
	return status;
}

/* A refusal before any route ran (civetweb's own errors, ambiguous
 * framing): the error shape, and the connection is closed after it. */
static void refuse_and_close(const req *r, int status, const char *code, const char *message)
{
	resp out;
	memset(&out, 0, sizeof(out));
	out.status = status;
	out.close = true;
	out.body = hs_gw_json_error(code, message);
	hs_gw__respond(r, &out);
	free(out.body);
}

/* civetweb's own errors (bad request line, headers too large, ...). */
static int http_error(struct mg_connection *conn, int status, const char *msg)
{
	hs_gw_server *srv = mg_get_user_data(mg_get_context(conn));
	if (srv == NULL || mg_get_request_info(conn) == NULL)
		return 1;
	req r;
	req_init(&r, conn, srv, false);
	const char *code = status == 413 || status == 431 ? "PAYLOAD_TOO_LARGE"
			   : status >= 500		  ? "INTERNAL_ERROR"
							  : "BAD_REQUEST";
	refuse_and_close(&r, status, code, status >= 500 ? "Internal server error" : "Bad request");
	access_log(&r, status, hs_clock_mono_us(),
		   hs_gw_metrics_fixed_slot(srv->metrics, HS_GW_R_UNMATCHED));
	return 0;
}

/* Ambiguous framing (request smuggling shapes): 400, connection closed,
 * before civetweb reads any body. */
static int begin_request(struct mg_connection *conn)
{
	hs_gw_server *srv = mg_get_user_data(mg_get_context(conn));
	const struct mg_request_info *ri = mg_get_request_info(conn);
	hs_gw_header h[64];
	size_t n = 0;
	if (srv == NULL || ri == NULL)
		return 0;
	for (int i = 0; i < ri->num_headers && n < sizeof(h) / sizeof(h[0]); i++, n++) {
		h[n].name = ri->http_headers[i].name;
		h[n].value = ri->http_headers[i].value;
	}
	const char *why = hs_gw_framing_problem(h, n);
	if (why == NULL)
		return 0;
	long long t0 = hs_clock_mono_us();
	req r;
	req_init(&r, conn, srv, true);
	refuse_and_close(&r, 400, "BAD_REQUEST", "Bad request");
	hs_log(HS_LOG_WARN, "gateway", "ambiguous request framing refused", HS_LS("why", why),
	       HS_LS("peer", r.client_ip));
	access_log(&r, 400, t0, hs_gw_metrics_fixed_slot(srv->metrics, HS_GW_R_UNMATCHED));
	return 400;
}

/* The admission table of the running server, for accept() below (which
 * has no context pointer). One gateway server per process. */
static hs_gw_admit *g_admit;
static hs_gw_metrics *g_metrics; /* open connections, counted like g_admit */
static pthread_mutex_t g_cut_mu = PTHREAD_MUTEX_INITIALIZER;
static long long g_cut_logged_ms;

static bool sockaddr_ip(const struct sockaddr *sa, char *ip, int *port)
{
	char buf[HS_IP_TEXT_MAX];
	const void *a;
	if (sa->sa_family == AF_INET) {
		a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		*port = ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		*port = ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	} else {
		return false;
	}
	return inet_ntop(sa->sa_family, a, buf, sizeof(buf)) != NULL &&
	       hs_ip_canonical(buf, strlen(buf), ip, HS_IP_TEXT_MAX);
}

/* civetweb 1.15 takes every connection on its master thread with accept(2)
 * and offers no hook before a worker has it (init_connection runs on the
 * worker, without the address). This definition in the executable
 * interposes the libc symbol for libcivetweb (the dynamic linker finds the
 * executable's first): a connection over its address's limit is closed
 * here, before it takes a worker or a queue slot; civetweb sees a failed
 * accept and polls again. The real work is accept4(2). */
int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	struct sockaddr_storage own;
	socklen_t own_len = sizeof(own);
	if (addr == NULL || len == NULL) {
		addr = (struct sockaddr *)&own;
		len = &own_len;
	}
	int c = accept4(fd, addr, len, 0);
	hs_gw_admit *a = __atomic_load_n(&g_admit, __ATOMIC_ACQUIRE);
	char ip[HS_IP_TEXT_MAX];
	int port = 0;
	if (c < 0 || a == NULL || !sockaddr_ip(addr, ip, &port) || hs_gw_admit_open(a, ip, port)) {
		if (c >= 0)
			hs_gw_metrics_connections(__atomic_load_n(&g_metrics, __ATOMIC_ACQUIRE), 1);
		return c;
	}
	close(c);
	pthread_mutex_lock(&g_cut_mu);
	long long now = hs_clock_mono_ms();
	bool log_it = now - g_cut_logged_ms >= 1000; /* at most one line a second */
	if (log_it)
		g_cut_logged_ms = now;
	pthread_mutex_unlock(&g_cut_mu);
	if (log_it)
		hs_log(HS_LOG_WARN, "gateway", "connection over the per-client limit closed",
		       HS_LS("peer", ip));
	errno = ECONNABORTED;
	return -1;
}

/* Every route checks its own credentials (bearer tokens, cookies, API
 * keys). Without an authorization handler civetweb looks for an HTTP basic
 * auth file, "/.htpasswd" at the filesystem root with no document root:
 * one failed stat() per request, and a file there would put every route
 * behind a password prompt. */
static int allow_all(struct mg_connection *conn, void *data)
{
	(void)conn;
	(void)data;
	return 1;
}

static void connection_close(const struct mg_connection *conn)
{
	const struct mg_request_info *ri = mg_get_request_info(conn);
	hs_gw_admit *a = __atomic_load_n(&g_admit, __ATOMIC_ACQUIRE);
	hs_gw_metrics_connections(__atomic_load_n(&g_metrics, __ATOMIC_ACQUIRE), -1);
	char ip[HS_IP_TEXT_MAX];
	if (a != NULL && ri != NULL &&
	    hs_ip_canonical(ri->remote_addr, strlen(ri->remote_addr), ip, sizeof(ip)))
		hs_gw_admit_close(a, ip, ri->remote_port);
}

static int log_message(const struct mg_connection *conn, const char *message)
{
	hs_log(HS_LOG_WARN, "civetweb", "http server message", HS_LS("detail", message));
	return 1;
}

/* --metrics-listen: the registry (process metrics and ours) on its own
 * listener, which also answers /livez (this process) and /readyz
 * (harnessd reachable, as /health). */
static bool metrics_probe(void *payload, bool ready)
{
	return !ready || harnessd_serving(payload);
}

static int start_metrics(hs_gw_server *s, hs_error *err)
{
	int rc;
	if (s->cfg->metrics_listen[0] == '\0')
		return HS_OK;
	if ((rc = hs_metrics_new(&s->registry, err)) != HS_OK ||
	    (rc = hs_metrics_add(s->registry, hs_metrics_collect_process, NULL, err)) != HS_OK ||
	    (rc = hs_metrics_add(s->registry, hs_gw_metrics_collect, s->metrics, err)) != HS_OK)
		return rc;
	hs_metrics_http_opts o = { metrics_probe, s };
	if ((rc = hs_metrics_http_start_with(&s->metrics_http, s->cfg->metrics_listen, s->registry,
					     &o, err)) != HS_OK)
		return rc;
	hs_log(HS_LOG_INFO, "gateway", "metrics", HS_LS("listen", s->cfg->metrics_listen),
	       HS_LI("port", hs_metrics_http_port(s->metrics_http)));
	return HS_OK;
}

/* Frees what start made; ctx must be stopped (or never started). */
static void server_free(hs_gw_server *s)
{
	__atomic_store_n(&g_admit, NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&g_metrics, NULL, __ATOMIC_RELEASE);
	hs_metrics_http_stop(s->metrics_http); /* no scrape runs past this */
	if (s->registry != NULL && s->metrics != NULL)
		hs_metrics_remove(s->registry, hs_gw_metrics_collect, s->metrics);
	hs_metrics_free(s->registry);
	hs_gw_metrics_free(s->metrics);
	hs_async_free(s->async);
	hs_gw_routes_free(s->routes);
	hs_gw_admit_free(s->admit);
	free(s->sse);
	pthread_mutex_destroy(&s->mu);
	if (s->key != NULL) {
		explicit_bzero(s->key, s->key_len);
		free(s->key);
	}
	free(s);
}

int hs_gw_server_start(hs_gw_server **out, const hs_gw_config *cfg, hs_client *client,
		       int *port_out, hs_error *err)
{
	hs_gw_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	s->cfg = cfg;
	s->client = client;
	pthread_mutex_init(&s->mu, NULL);
	size_t n_services;
	const ProtobufCServiceDescriptor *const *services = hs_gw_services(&n_services);
	/* open connections: at most one per worker plus civetweb's queue (its
	 * master thread stops accepting while the queue is full) */
	int rc = hs_gw_admit_new(&s->admit, (size_t)cfg->workers + CONNECTION_QUEUE + 8,
				 cfg->max_connections_per_client, &cfg->proxies, err);
	if (rc == HS_OK)
		rc = hs_gw_routes_load(&s->routes, hs_descriptor_set, hs_descriptor_set_len, services,
				       n_services, err);
	if (rc == HS_OK)
		rc = hs_gw_metrics_new(&s->metrics, s->routes, err);
	if (rc == HS_OK)
		rc = start_metrics(s, err);
	if (rc == HS_OK)
		rc = hs_async_new(&s->async, client, GRPC_POLLERS, err);
	if (rc == HS_OK && cfg->sse_max_streams > 0 &&
	    (s->sse = calloc((size_t)cfg->sse_max_streams, sizeof(*s->sse))) == NULL)
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
	if (rc != HS_OK) {
		server_free(s);
		return rc;
	}
	char threads[16], header_timeout[24];
	snprintf(threads, sizeof(threads), "%ld", cfg->workers);
	snprintf(header_timeout, sizeof(header_timeout), "%ld", cfg->header_timeout_ms);
	const char *options[] = {
		"listening_ports", cfg->listen,
		"num_threads", threads,
		"access_control_allow_origin", "", /* we answer OPTIONS ourselves */
		"enable_keep_alive", "yes",
		"keep_alive_timeout_ms", "5000",
		"request_timeout_ms", header_timeout,
		"connection_queue", CONNECTION_QUEUE_STR,
		"max_request_size", "16384", /* headers only */
		"tcp_nodelay", "1",
		"enable_auth_domain_check", "no",
		/* paths stay percent-encoded: routes.c decodes each segment after
		 * splitting, so "%2F", "%3A", "%2E%2E" and "%00" cannot change
		 * which route a request reaches */
		"decode_url", "no",
		NULL, NULL,
	};
	struct mg_callbacks cb;
	memset(&cb, 0, sizeof(cb));
	cb.http_error = http_error;
	cb.log_message = log_message;
	cb.begin_request = begin_request;
	cb.connection_close = connection_close;
	mg_init_library(0);
	__atomic_store_n(&g_admit, s->admit, __ATOMIC_RELEASE);
	__atomic_store_n(&g_metrics, s->metrics, __ATOMIC_RELEASE);
	s->ctx = mg_start(&cb, s, options);
	if (s->ctx == NULL) {
		mg_exit_library();
		server_free(s);
		return hs_error_set(err, HS_UNAVAILABLE, "--listen %s: cannot listen (in use? bad address?)",
				    cfg->listen);
	}
	mg_set_auth_handler(s->ctx, "/", allow_all, NULL);
	mg_set_request_handler(s->ctx, "/", handler, s);
	struct mg_server_port ports[4];
	int n = mg_get_server_ports(s->ctx, 4, ports);
	*port_out = n > 0 ? ports[0].port : 0;
	*out = s;
	return HS_OK;
}

void hs_gw_server_stop(hs_gw_server *s)
{
	if (s == NULL)
		return;
	hs_gw_rest_stop_streams(s); /* event streams end; mg_stop then waits for the rest */
	mg_stop(s->ctx);
	mg_exit_library();
	server_free(s);
}
