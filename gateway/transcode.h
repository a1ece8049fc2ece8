/* JSON <-> protobuf for a matched REST route (routes.h), grpc-gateway's
 * way, with clients/pbjson.h's proto3 JSON mapping:
 *   request   = the body (rule body "*": the whole message; "field": that
 *               field; none: no body allowed), then query parameters (only
 *               when the body is not "*"), then path variables, each later
 *               source overriding an earlier one for the same field.
 *               Unknown body members and query parameters are ignored, as
 *               grpc-gateway does (clients newer than the server keep
 *               working).
 *   query     "a.b=v" sets a nested field, "f=1&f=2" a repeated one,
 *               "m[k]=v" a map entry; proto names or lowerCamelCase. Enums
 *               by name or number, bools true/false/1/0, int64 as decimal,
 *               Timestamps RFC 3339. Message-typed leaves (Struct, ...)
 *               only in the body.
 *   response  lowerCamelCase, every field (defaults too, as grpc-gateway's
 *               EmitUnpopulated), int64 as strings, enums by name; the
 *               rule's response_body picks one field.
 *   errors    google.rpc.Status: {"code": <gRPC code>, "message": "...",
 *               "details": [google.rpc.ErrorInfo when the server sent an
 *               hs-error-code]}.
 * Pure functions: no civetweb, no gRPC. */
#ifndef HS_GATEWAY_TRANSCODE_H
#define HS_GATEWAY_TRANSCODE_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "error.h"
#include "routes.h"

#define HS_GW_QUERY_MAX_PARAMS 64

/* Builds m->route's request message. query: the raw query string (NULL or
 * "" = none); body/len: the request body (NULL/0 = none). HS_INVALID with
 * the parameter or field named in err (400), *out on success (free with
 * protobuf_c_message_free_unpacked). */
int hs_gw_transcode_request(ProtobufCMessage **out, const hs_gw_match *m, const char *query,
			    const char *body, size_t len, hs_error *err);

/* The response body of route r for msg: malloc'd JSON text in *out (*len
 * bytes, NUL-terminated). */
int hs_gw_transcode_response(char **out, size_t *len, const hs_gw_route *r,
			     const ProtobufCMessage *msg, hs_error *err);

/* {"code":code,"message":message,"details":[...]}: reason (NULL or "" =
 * none) becomes a google.rpc.ErrorInfo {"@type":
 * "type.googleapis.com/google.rpc.ErrorInfo","reason":reason,"domain":
 * "harness"}. malloc'd; NULL only when out of memory. */
char *hs_gw_status_json(int grpc_code, const char *message, const char *reason);

/* One Server-Sent Event into a malloc'd buffer: "id: <id>\n" when id is
 * not NULL, "event: <event>\n" when event is not NULL, then "data: <data>\n\n"
 * (data must be one line: compact JSON). *len set. */
char *hs_gw_sse_event(const char *id, const char *event, const char *data, size_t *len);

/* The SSE resume convention (no per-route code): a stream whose request
 * has a uint64 `after_event_id` and whose messages have a uint64
 * `event_id` resumes: each event's id is its event_id, and a reconnecting
 * client's Last-Event-ID becomes after_event_id (and `send_initial`, when
 * the request has one, is cleared: the client has the initial state).
 * Returns whether r resumes that way. */
bool hs_gw_sse_resumable(const hs_gw_route *r);

/* Applies Last-Event-ID (decimal, at most 20 digits) to req of a resumable
 * route. HS_INVALID when it is not a number. */
int hs_gw_sse_resume(ProtobufCMessage *req, const char *last_event_id, hs_error *err);

/* The SSE id of a message of a resumable route: its event_id in decimal
 * into buf (>= 24 bytes); false when 0 (no id line then). */
bool hs_gw_sse_id(const ProtobufCMessage *msg, char *buf, size_t n);

#endif
