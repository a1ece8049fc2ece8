/* Every RPC over REST: /v1/... requests matched against the routes read
 * from the google.api.http rules (routes.h), transcoded (transcode.h),
 * called on the shared completion queue (clients/async.h).
 *
 * Unary: one call, the response as JSON. Errors are google.rpc.Status
 * bodies with grpc-gateway's HTTP status for the gRPC code.
 *
 * Server streams become Server-Sent Events (text/event-stream):
 *   retry: 3000                       once, at the start
 *   id: <event_id>\ndata: <message>   per message (id only on routes that
 *                                     resume: transcode.h's convention)
 *   : keep-alive                      after --sse-keepalive-ms of silence
 *   event: end\ndata: <Status>        when the RPC ends (code 0 = clean end)
 * The connection closes after the end event, after --sse-max-seconds
 * (no end event: the client reconnects, with Last-Event-ID, and its token
 * is checked again), or when the gateway stops. A reconnect with
 * Last-Event-ID continues after that event, without loss or repetition.
 *
 * A stream holds its civetweb worker for its life (civetweb 1.15 has no
 * way to park a response), so streams are bounded: --sse-max-streams in
 * total (the workers beyond --threads exist for them, so requests always
 * have --threads workers) and --sse-max-per-client per client address;
 * over a bound the answer is 429. A client that vanished is noticed at the
 * next keep-alive write and frees its slot. */
#include "server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "policy.h"
#include "transcode.h"

#define SSE_RETRY_MS "3000"
/* How long a stream's start may wait for harnessd's verdict (which comes
 * with its initial metadata, sent with the first message): a refusal
 * (bad token, no such task) within it is an HTTP error status; after it
 * the stream is answered 200 and a later failure is its end event. */
#define SSE_START_WAIT_MS 1000

typedef hs_gw_resp resp;
typedef hs_gw_req req;

/* A google.rpc.Status error made here (not by harnessd). */
static void status_error(resp *out, int http, int code, const char *message)
{
	free(out->body);
	out->status = http;
	out->body = hs_gw_status_json(code, message, NULL);
	out->body_len = 0;
}

static void grpc_error(const req *r, resp *out, const hs_client_status *st, const char *method)
{
	int http = hs_client_grpc_to_http(st->code);
	const char *msg = st->details;
	if (r->srv->cfg->production && http >= 500)
		msg = "Internal server error";
	free(out->body);
	out->status = http;
	out->body = hs_gw_status_json(st->code, msg, st->error_code);
	hs_gw_metrics_upstream_error(r->srv->metrics, st->code);
	hs_log(http >= 500 ? HS_LOG_WARN : HS_LOG_INFO, "gateway", "rpc failed",
	       HS_LS("method", method), HS_LS("code", hs_client_grpc_code_name(st->code)),
	       HS_LI("http", http));
}

/* --- stream slots (under srv->mu) --- */

/* A free slot for ip, or NULL (*why says which bound; *stopping when the
 * gateway is stopping) */
static hs_gw_sse_slot *slot_acquire(hs_gw_server *s, const char *ip, const char **why,
				    bool *stopping)
{
	hs_gw_sse_slot *free_slot = NULL;
	long mine = 0;
	*why = "the gateway is stopping";
	pthread_mutex_lock(&s->mu);
	*stopping = s->stopping;
	if (!s->stopping) {
		for (long i = 0; i < s->cfg->sse_max_streams; i++) {
			if (!s->sse[i].used)
				free_slot = free_slot != NULL ? free_slot : &s->sse[i];
			else if (!strcmp(s->sse[i].ip, ip))
				mine++;
		}
		*why = free_slot == NULL ? "too many event streams open on this gateway"
		       : mine >= s->cfg->sse_max_per_client ? "too many event streams open from this client"
							    : NULL;
	}
	hs_gw_sse_slot *got = *why == NULL ? free_slot : NULL;
	if (got != NULL) {
		got->used = true;
		got->stream = NULL;
		snprintf(got->ip, sizeof(got->ip), "%s", ip);
	}
	pthread_mutex_unlock(&s->mu);
	return got;
}

/* Publishes the started stream (so stop can cancel it); cancels it at once
 * when the server is already stopping. */
static void slot_attach(hs_gw_server *s, hs_gw_sse_slot *slot, hs_async_stream *st)
{
	pthread_mutex_lock(&s->mu);
	slot->stream = st;
	if (s->stopping)
		hs_async_stream_cancel(st);
	pthread_mutex_unlock(&s->mu);
}

static void slot_release(hs_gw_server *s, hs_gw_sse_slot *slot)
{
	pthread_mutex_lock(&s->mu);
	slot->stream = NULL;
	slot->used = false;
	pthread_mutex_unlock(&s->mu);
}

void hs_gw_rest_stop_streams(hs_gw_server *s)
{
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	for (long i = 0; s->sse != NULL && i < s->cfg->sse_max_streams; i++)
		if (s->sse[i].used && s->sse[i].stream != NULL)
			hs_async_stream_cancel(s->sse[i].stream);
	pthread_mutex_unlock(&s->mu);
}

static bool put(const req *r, const char *data, size_t len)
{
	return mg_write(r->conn, data, len) == (int)len;
}

/* The end event: the call's status (code 0 for a clean end); in production
 * a 5xx code's message is hidden, as in grpc_error. */
static void put_end(const req *r, int code, const char *message, const char *reason)
{
	if (r->srv->cfg->production && hs_client_grpc_to_http(code) >= 500)
		message = "Internal server error";
	char *status = hs_gw_status_json(code, message, reason);
	size_t len = 0;
	char *ev = status != NULL ? hs_gw_sse_event(NULL, "end", status, &len) : NULL;
	if (ev != NULL)
		(void)put(r, ev, len);
	free(ev);
	free(status);
}

/* Runs the event stream of route rt; true when a response was written. */
static bool stream(const req *r, resp *out, const hs_gw_route *rt, ProtobufCMessage *msg,
		   const hs_gw_md *md)
{
	hs_gw_server *srv = r->srv;
	const hs_gw_config *cfg = srv->cfg;
	const char *why = NULL;
	bool stopping = false;
	hs_gw_sse_slot *slot = slot_acquire(srv, r->client_ip, &why, &stopping);
	if (slot == NULL) {
		status_error(out, stopping ? 503 : 429, stopping ? 14 : 8, why);
		hs_log(HS_LOG_WARN, "gateway", "event stream refused", HS_LS("why", why),
		       HS_LS("peer", r->client_ip));
		return false;
	}
	bool resumable = hs_gw_sse_resumable(rt);
	const char *last = hs_gw__header(r, "Last-Event-ID");
	hs_error err = { 0 };
	if (resumable && last != NULL && last[0] != '\0' && hs_gw_sse_resume(msg, last, &err) != HS_OK) {
		slot_release(srv, slot);
		status_error(out, 400, 3, err.msg);
		return false;
	}
	hs_client_status st;
	hs_async_stream *s = NULL;
	int rc = hs_async_stream_start(&s, srv->async, rt->grpc_path, msg, rt->out, md->v, md->n, -1,
				       SSE_START_WAIT_MS, &st);
	if (rc != HS_OK) {
		slot_release(srv, slot);
		grpc_error(r, out, &st, rt->method);
		return false;
	}
	slot_attach(srv, slot, s);
	long long t0 = hs_clock_mono_ms();
	bool alive = hs_gw__respond_stream(r, "text/event-stream; charset=utf-8") &&
		     put(r, "retry: " SSE_RETRY_MS "\n\n", sizeof("retry: " SSE_RETRY_MS "\n\n") - 1);
	long long sent = 0;
	while (alive) {
		long long left = t0 + cfg->sse_max_seconds * 1000LL - hs_clock_mono_ms();
		if (left <= 0)
			break; /* the client reconnects (Last-Event-ID) */
		ProtobufCMessage *m = NULL;
		rc = hs_async_stream_next(s, &m, left < cfg->sse_keepalive_ms ? left : cfg->sse_keepalive_ms,
					  &st);
		if (rc == HS_TIMEOUT) {
			alive = put(r, ": keep-alive\n\n", 14);
			continue;
		}
		if (rc != HS_OK || m == NULL) {
			pthread_mutex_lock(&srv->mu);
			bool stopped = rc == HS_CANCELLED && srv->stopping;
			pthread_mutex_unlock(&srv->mu);
			if (!stopped && rc != HS_OK)
				hs_gw_metrics_upstream_error(srv->metrics, st.code);
			if (!stopped)
				put_end(r, rc == HS_OK ? 0 : st.code, rc == HS_OK ? "" : st.details,
					rc == HS_OK ? NULL : st.error_code);
			break;
		}
		char *json = NULL, *ev = NULL, id[24];
		size_t len = 0, evlen = 0;
		if (hs_gw_transcode_response(&json, &len, rt, m, &err) == HS_OK)
			ev = hs_gw_sse_event(resumable && hs_gw_sse_id(m, id, sizeof(id)) ? id : NULL, NULL,
					     json, &evlen);
		protobuf_c_message_free_unpacked(m, NULL);
		free(json);
		alive = ev != NULL && put(r, ev, evlen);
		free(ev);
		sent++;
	}
	pthread_mutex_lock(&srv->mu);
	slot->stream = NULL; /* stop must not cancel what is being freed */
	pthread_mutex_unlock(&srv->mu);
	hs_async_stream_free(s);
	slot_release(srv, slot);
	hs_log(HS_LOG_INFO, "gateway", "event stream closed", HS_LS("method", rt->method),
	       HS_LI("events", sent), HS_LB("client_gone", !alive), HS_LS("peer", r->client_ip),
	       HS_LS("request_id", r->request_id));
	return true;
}

bool hs_gw_rest_route(const req *r, resp *out)
{
	hs_gw_server *srv = r->srv;
	out->no_store = true;
	hs_gw_match *m = malloc(sizeof(*m));
	if (m == NULL) {
		status_error(out, 500, 13, "out of memory");
		return false;
	}
	bool streamed = false;
	bool has_body = r->ri->content_length > 0 ||
			(r->ri->content_length < 0 && mg_get_header(r->conn, "Transfer-Encoding") != NULL);
	char msg[160];
	switch (hs_gw_routes_match(srv->routes, r->method, r->path, m)) {
	case HS_GW_MATCH_OK:
		out->route_slot = hs_gw_metrics_rest_slot(srv->metrics, m->route);
		break;
	case HS_GW_MATCH_METHOD:
		snprintf(out->allow_buf, sizeof(out->allow_buf), "%s", m->allow);
		out->allow = out->allow_buf;
		out->close = has_body;
		snprintf(msg, sizeof(msg), "%s is not allowed here (allowed: %s)", r->method, m->allow);
		status_error(out, 405, 12, msg);
		goto done;
	case HS_GW_MATCH_BAD:
		out->close = has_body;
		status_error(out, 400, 3, "path: malformed percent-encoding or an encoded NUL");
		goto done;
	default:
		out->close = has_body;
		status_error(out, 404, 5, "no such route");
		goto done;
	}
	const hs_gw_route *rt = m->route;
	if (rt->server_streaming && strcmp(r->method, "GET") != 0) {
		out->allow = "GET, OPTIONS";
		out->close = has_body;
		status_error(out, 405, 12, "an event stream answers GET only");
		goto done;
	}
	if (strcmp(rt->http_method, "GET") != 0) { /* state-changing: CSRF rules */
		switch (hs_gw__csrf(r)) {
		case HS_GW_ALLOW:
			break;
		case HS_GW_DENY_MEDIA_TYPE:
			out->close = has_body;
			status_error(out, 415, 3, "Content-Type must be application/json");
			goto done;
		case HS_GW_DENY_NO_HEADER:
			out->close = has_body;
			status_error(out, 403, 7, "Missing X-Requested-With header");
			goto done;
		default:
			out->close = has_body;
			status_error(out, 403, 7, "Cross-site request refused");
			goto done;
		}
	}
	char *body = NULL;
	size_t len = 0;
	if (has_body && !hs_gw__read_body(r, out, &body, &len)) {
		/* read_body set the seed's shape: keep its status, use ours */
		int http = out->status;
		status_error(out, http, http == 413 ? 8 : 3,
			     http == 413 ? "request body too large" : "broken request body");
		goto done;
	}
	hs_error err = { 0 };
	ProtobufCMessage *req_msg = NULL;
	int rc = hs_gw_transcode_request(&req_msg, m, r->ri->query_string, body, len, &err);
	hs_gw__free_body(body, len);
	if (rc != HS_OK) {
		status_error(out, 400, 3, err.msg);
		goto done;
	}
	hs_gw_md md;
	hs_gw__metadata(r, &md, true);
	if (rt->server_streaming) {
		streamed = stream(r, out, rt, req_msg, &md);
		protobuf_c_message_free_unpacked(req_msg, NULL);
		goto done;
	}
	hs_client_status st;
	ProtobufCMessage *resp_msg = NULL;
	rc = hs_async_unary(srv->async, rt->grpc_path, req_msg, rt->out, &resp_msg, md.v, md.n,
			    srv->cfg->request_timeout_ms, &st);
	protobuf_c_message_free_unpacked(req_msg, NULL);
	if (rc != HS_OK) {
		grpc_error(r, out, &st, rt->method);
		goto done;
	}
	char *json = NULL;
	size_t jlen = 0;
	rc = hs_gw_transcode_response(&json, &jlen, rt, resp_msg, &err);
	protobuf_c_message_free_unpacked(resp_msg, NULL);
	if (rc != HS_OK) {
		hs_log(HS_LOG_ERROR, "gateway", "response not encodable", HS_LS("method", rt->method),
		       HS_LS("error", err.msg));
		status_error(out, 500, 13, "Internal server error");
		goto done;
	}
	free(out->body);
	out->status = 200;
	out->body = json;
	out->body_len = jlen;
done:
	free(m);
	return streamed;
}
