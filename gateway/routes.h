/* REST routes of the gateway, read from the google.api.http rules that the
 * .proto files put on each RPC (MethodOptions extension 72295728, carried
 * by the descriptor set harnessd embeds; protobuf-c keeps it as an unknown
 * field, decoded here as google.api.HttpRule). No route is written in C:
 * a new annotated RPC is served once it is in the set and its service's
 * protobuf-c descriptor is passed in. grpc.health.v1 comes from Debian's
 * proto without annotations: its two rules are the one table below
 * (hs_gw_routes_extra), as grpc-gateway's external HTTP config would be.
 *
 * Templates: "/" segments [":" verb], a segment being a literal
 * ([A-Za-z0-9._~-]) or a variable "{field.path}" (also "{f=*}") that
 * binds one non-empty path segment to a singular scalar field. "**",
 * anonymous "*" and nested templates are refused (none of our rules needs
 * them). The verb is what follows the last ':' of the last segment, as in
 * grpc-gateway. Pure: no civetweb, no gRPC. */
#ifndef HS_GATEWAY_ROUTES_H
#define HS_GATEWAY_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "error.h"

#define HS_GW_MAX_VARS 4
#define HS_GW_PATH_MAX 1024 /* longest request path matched */

typedef struct hs_gw_seg {
	char *literal; /* NULL: variable number `var` */
	int var;
} hs_gw_seg;

typedef struct hs_gw_route {
	const char *http_method;   /* "GET", "POST", "PUT", "DELETE", "PATCH" */
	char *tmpl;                /* "/v1/tasks/{task_id}:heartbeat" */
	hs_gw_seg *segs;
	size_t n_segs;
	char *verb;                /* "heartbeat", or NULL */
	char *vars[HS_GW_MAX_VARS]; /* bound field paths, proto names ("task_id") */
	size_t n_vars;
	char *body;                /* "" = no body, "*" = the whole request, else a field */
	char *response_body;       /* "" = the whole response, else a field */
	char grpc_path[192];       /* "/harness.v1.HealthService/Heartbeat" */
	char service[96];          /* "harness.v1.HealthService" */
	char method[64];           /* "Heartbeat" */
	char operation_id[160];    /* "HealthService_Heartbeat" (grpc-gateway's) */
	const ProtobufCMessageDescriptor *in, *out;
	bool server_streaming;
} hs_gw_route;

typedef struct hs_gw_routes hs_gw_routes;

/* One rule for a method the .proto files cannot annotate. */
typedef struct hs_gw_extra_rule {
	const char *grpc_path; /* "/grpc.health.v1.Health/Check" */
	const char *http_method;
	const char *tmpl;
	const char *body;
} hs_gw_extra_rule;

/* grpc.health.v1.Health: GET /v1/health (Check), GET /v1/health:watch (Watch). */
extern const hs_gw_extra_rule hs_gw_routes_extra[];

/* Reads the rules of every method of `services` (protobuf-c service
 * descriptors, which give the message types) from a serialized
 * FileDescriptorSet. A rule that names no field of its request, binds a
 * repeated or message field in the path, or clashes with another rule is
 * HS_INVALID naming the method. Methods without a rule, and client or bidi
 * streams (no REST mapping), are listed by hs_gw_routes_unmapped. *out on
 * success; free with hs_gw_routes_free. */
int hs_gw_routes_load(hs_gw_routes **out, const uint8_t *set, size_t set_len,
		      const ProtobufCServiceDescriptor *const *services, size_t n_services,
		      hs_error *err);
void hs_gw_routes_free(hs_gw_routes *r);

size_t hs_gw_routes_count(const hs_gw_routes *r);
/* Borrowed; i < hs_gw_routes_count. Routes with fewer variables come first. */
const hs_gw_route *hs_gw_routes_at(const hs_gw_routes *r, size_t i);
/* "/harness.v1.SandboxService/ExecSandbox" for each method without a route;
 * NULL past the end. */
const char *hs_gw_routes_unmapped(const hs_gw_routes *r, size_t i);

typedef enum hs_gw_match_result {
	HS_GW_MATCH_OK = 0,
	HS_GW_MATCH_NONE,   /* no route has this path: 404 */
	HS_GW_MATCH_METHOD, /* the path exists for other methods: 405 (allow lists them) */
	HS_GW_MATCH_BAD,    /* a segment with a malformed escape or an encoded NUL: 400 */
} hs_gw_match_result;

typedef struct hs_gw_match {
	const hs_gw_route *route;
	const char *values[HS_GW_MAX_VARS]; /* route->vars[i]'s value, in buf */
	char allow[64];                     /* 405: "GET, POST" */
	char buf[HS_GW_PATH_MAX + 8];
} hs_gw_match;

/* Matches a request (method, path without the query, as sent: NOT
 * percent-decoded). The path is split at its literal '/' and the verb at
 * the last literal ':' first, then each segment is percent-decoded on its
 * own, so an encoded "%2F" or "%3A" stays inside its variable's value (as
 * grpc-gateway does) and can never move a request to another route; an
 * encoded NUL or a malformed escape is HS_GW_MATCH_BAD. HEAD matches GET
 * routes. */
hs_gw_match_result hs_gw_routes_match(const hs_gw_routes *r, const char *method, const char *path,
				      hs_gw_match *m);

/* The field at a dotted path of proto or JSON names ("recovery_policy.
 * max_attempts") of desc, with the message that holds it in *owner; NULL
 * when a component is missing or a non-final one is not a singular
 * message. */
const ProtobufCFieldDescriptor *hs_gw_field_path(const ProtobufCMessageDescriptor *desc,
						 const char *path,
						 const ProtobufCMessageDescriptor **owner);

#endif
