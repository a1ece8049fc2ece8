/* What the gateway's civetweb files share: the server, one request and its
 * response, and the helpers every route uses (respond, body, metadata).
 * server.c is the glue (start/stop, admission, routing, metadata, CSRF);
 * http_io.c reads headers and bodies and writes every response;
 * auth_routes.c the seed's auth routes; rest.c serves the transcoded /v1
 * routes and their event streams; assets.c the console and /openapi.json.
 * Private to gateway/. */
#ifndef HS_GATEWAY_SERVER_INTERNAL_H
#define HS_GATEWAY_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <civetweb.h>

#include "admit.h"
#include "async.h"
#include "client.h"
#include "gateway_auth.h"
#include "gateway_config.h"
#include "gw_metrics.h"
#include "metrics_http.h"
#include "netaddr.h"
#include "routes.h"
#include "trace.h"
#include "server.h"
#include "validate.h"

#define HS_GW_REQUEST_ID_MAX HS_REQUEST_ID_MAX /* common/trace.h */

/* One open event stream (rest.c): counted per client address, cancelled
 * when the server stops. */
typedef struct hs_gw_sse_slot {
	bool used;
	char ip[HS_IP_TEXT_MAX];
	hs_async_stream *stream; /* NULL until started */
} hs_gw_sse_slot;

struct hs_gw_server {
	struct mg_context *ctx;
	const hs_gw_config *cfg;
	hs_client *client;
	hs_async *async;        /* the shared completion queue every call uses */
	hs_gw_routes *routes;   /* from the embedded descriptor set */
	hs_gw_admit *admit;     /* connections per client address */
	pthread_mutex_t mu;     /* guards the key and the stream slots */
	char *key;              /* the gateway key, loaded lazily (harnessd may create it later) */
	size_t key_len;
	long long key_next_try_ms;
	hs_gw_sse_slot *sse;    /* cfg->sse_max_streams slots */
	bool stopping;          /* under mu: streams end, no new ones */
	hs_gw_metrics *metrics; /* request counts (gw_metrics.h) */
	hs_metrics *registry;   /* what --metrics-listen serves; NULL when off */
	hs_metrics_http *metrics_http;
};

typedef struct hs_gw_resp {
	int status;
	char *body;               /* malloc'd, or NULL */
	const void *static_body;  /* instead of body: borrowed bytes (assets) */
	size_t body_len;          /* 0 with body set = strlen(body) */
	const char *content_type; /* NULL = JSON */
	const char *csp;          /* NULL = helmet's default */
	const char *cache;        /* Cache-Control; NULL = none (no_store wins) */
	const char *etag;
	bool no_store;
	bool close;
	bool preflight;
	const char *allow;
	char allow_buf[64];       /* for allow, when computed */
	bool has_cookie;
	char cookie[HS_GW_TOKEN_MAX + 256];
	size_t route_slot;        /* metrics: which route answered (gw_metrics.h) */
} hs_gw_resp;

typedef struct hs_gw_req {
	struct mg_connection *conn;
	const struct mg_request_info *ri;
	hs_gw_server *srv;
	const char *method; /* NULL when civetweb could not parse the request */
	char path[HS_GW_PATH_MAX + 1];
	bool path_too_long;
	char client_ip[HS_IP_TEXT_MAX];
	bool secure;     /* cookies get Secure */
	bool https;      /* the client reached us over TLS (trusted proxy, or production) */
	char request_id[HS_GW_REQUEST_ID_MAX + 1];
	char traceparent[HS_TRACEPARENT_LEN + 1]; /* the client's when valid, else a new trace */
} hs_gw_req;

/* Request metadata for harnessd: the signed client address, the browser's
 * user agent, the request id and traceparent, and the caller's
 * Authorization when given. */
typedef struct hs_gw_md {
	hs_client_md v[8];
	size_t n;
	char sig[HS_GATEWAY_AUTH_MAX];
} hs_gw_md;

/* http_io.c: a request header, or NULL when absent or not safe to use. */
const char *hs_gw__header(const hs_gw_req *r, const char *name);

/* http_io.c: writes out (status, helmet's headers, CORS, cookies, body). */
void hs_gw__respond(const hs_gw_req *r, hs_gw_resp *out);

/* http_io.c: starts a response without a length (event streams):
 * helmet's headers, CORS, the request id, and these. false when the client
 * is gone. */
bool hs_gw__respond_stream(const hs_gw_req *r, const char *content_type);

/* http_io.c: replaces out's body with {"code","message"} (the seed's
 * error shape). */
void hs_gw__set_error(hs_gw_resp *out, int status, const char *code, const char *message);

/* http_io.c: reads the whole body (capped by --body-limit: 413 and close
 * above; 400 on a broken read). Free with hs_gw__free_body. */
bool hs_gw__read_body(const hs_gw_req *r, hs_gw_resp *out, char **body, size_t *len);
void hs_gw__free_body(char *body, size_t len);

/* server.c: fills md for a call on behalf of r; with_authz adds the
 * caller's "Authorization: Bearer ..." (checked: printable, at most 8 KiB). */
void hs_gw__metadata(const hs_gw_req *r, hs_gw_md *md, bool with_authz);

/* server.c: the CSRF verdict of a state-changing request (hs_gw_csrf_check
 * with the gateway's own origin allowed). */
int hs_gw__csrf(const hs_gw_req *r);

/* auth_routes.c: POST /api/v1/auth/<which> (login, refresh, logout). */
void hs_gw_auth_route(const hs_gw_req *r, hs_gw_resp *out, const char *which);

/* rest.c: a request for /v1/... . Returns true when it wrote the response
 * itself (an event stream); otherwise out holds it. */
bool hs_gw_rest_route(const hs_gw_req *r, hs_gw_resp *out);

/* rest.c: cancels every open event stream (server stopping). */
void hs_gw_rest_stop_streams(hs_gw_server *s);

/* assets.c: the console and /openapi.json. Returns false when path is not
 * one of them (then out is untouched). */
bool hs_gw_assets_route(const hs_gw_req *r, hs_gw_resp *out);

#endif
