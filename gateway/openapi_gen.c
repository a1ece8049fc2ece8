/* hs-openapi-gen: writes the gateway's OpenAPI 3.0 document at build time
 * from the same routes the gateway serves (routes.h, i.e. the
 * google.api.http rules in the embedded descriptor set) and the proto
 * comments (the set's source info), merged with a hand-written part for
 * the seed's cookie routes (openapi_seed.json).
 *
 *   hs-openapi-gen SEED.json VERSION OUT.json
 *
 * operationIds are <Service>_<Method> (grpc-gateway's convention); schema
 * names are full proto names ("harness.v1.Task"); property names are the
 * proto3 JSON names the gateway emits (lowerCamelCase, int64 as strings). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "descriptor_set.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "pbjson.h"
#include "routes.h"
#include "services.h"
#include "transcode.h"

/* Methods callable without a token (AuthService's own credentials flow and
 * the standard health service). */
static const char *const PUBLIC_METHODS[] = {
	"/harness.v1.AuthService/Login",  "/harness.v1.AuthService/Refresh",
	"/harness.v1.AuthService/Logout", "/grpc.health.v1.Health/Check",
	"/grpc.health.v1.Health/Watch",   NULL,
};

static Google__Protobuf__FileDescriptorSet *SET;
static json_t *SCHEMAS;

/* --- comments from source info --- */

static const Google__Protobuf__SourceCodeInfo__Location *
location(const Google__Protobuf__FileDescriptorProto *f, const int32_t *path, size_t n)
{
	if (f->source_code_info == NULL)
		return NULL;
	for (size_t i = 0; i < f->source_code_info->n_location; i++) {
		const Google__Protobuf__SourceCodeInfo__Location *l = f->source_code_info->location[i];
		if (l->n_path == n && memcmp(l->path, path, n * sizeof(*path)) == 0)
			return l;
	}
	return NULL;
}

/* The comment, trimmed of the leading space protoc keeps on each line. */
static char *tidy(const char *c)
{
	if (c == NULL)
		return strdup("");
	size_t n = strlen(c);
	char *out = malloc(n + 1), *o = out;
	bool bol = true;
	for (const char *p = c; *p; p++) {
		if (bol && *p == ' ') {
			bol = false;
			continue;
		}
		bol = *p == '\n';
		*o++ = *p;
	}
	while (o > out && (o[-1] == '\n' || o[-1] == ' '))
		o--;
	*o = '\0';
	return out;
}

static char *leading(const Google__Protobuf__FileDescriptorProto *f, const int32_t *path, size_t n)
{
	const Google__Protobuf__SourceCodeInfo__Location *l = location(f, path, n);
	return tidy(l != NULL ? l->leading_comments : NULL);
}

/* The file and source path of a message or enum by full name (searching
 * nested types). kind: 4 message, 5 enum. */
typedef struct found {
	const Google__Protobuf__FileDescriptorProto *file;
	int32_t path[16];
	size_t n;
	const Google__Protobuf__DescriptorProto *msg;
} found;

static bool find_in(const Google__Protobuf__FileDescriptorProto *f, const char *prefix,
		    Google__Protobuf__DescriptorProto **msgs, size_t n_msgs,
		    Google__Protobuf__EnumDescriptorProto **enums, size_t n_enums, const char *want,
		    bool want_enum, found *out, int32_t msg_tag, int32_t enum_tag)
{
	char full[256];
	size_t depth = out->n;
	if (want_enum) {
		for (size_t i = 0; i < n_enums; i++) {
			snprintf(full, sizeof(full), "%s.%s", prefix, enums[i]->name);
			if (!strcmp(full, want)) {
				out->file = f;
				out->path[depth] = enum_tag;
				out->path[depth + 1] = (int32_t)i;
				out->n = depth + 2;
				return true;
			}
		}
	}
	for (size_t i = 0; i < n_msgs && depth + 2 < 16; i++) {
		snprintf(full, sizeof(full), "%s.%s", prefix, msgs[i]->name);
		out->path[depth] = msg_tag;
		out->path[depth + 1] = (int32_t)i;
		out->n = depth + 2;
		if (!want_enum && !strcmp(full, want)) {
			out->file = f;
			out->msg = msgs[i];
			return true;
		}
		if (find_in(f, full, msgs[i]->nested_type, msgs[i]->n_nested_type, msgs[i]->enum_type,
			    msgs[i]->n_enum_type, want, want_enum, out, 3, 4))
			return true;
		out->n = depth;
	}
	return false;
}

static bool find(const char *full, bool is_enum, found *out)
{
	for (size_t i = 0; i < SET->n_file; i++) {
		const Google__Protobuf__FileDescriptorProto *f = SET->file[i];
		memset(out, 0, sizeof(*out));
		if (find_in(f, f->package, f->message_type, f->n_message_type, f->enum_type,
			    f->n_enum_type, full, is_enum, out, 4, 5))
			return true;
	}
	return false;
}

/* --- schemas --- */

static json_t *schema_of_message(const ProtobufCMessageDescriptor *d);

static json_t *ref(const char *name)
{
	char buf[300];
	snprintf(buf, sizeof(buf), "#/components/schemas/%s", name);
	return json_pack("{s:s}", "$ref", buf);
}

static json_t *enum_ref(const ProtobufCEnumDescriptor *e)
{
	if (json_object_get(SCHEMAS, e->name) == NULL) {
		json_t *vals = json_array();
		for (unsigned i = 0; i < e->n_values; i++)
			json_array_append_new(vals, json_string(e->values[i].name));
		found fd;
		char *desc = find(e->name, true, &fd) ? leading(fd.file, fd.path, fd.n) : strdup("");
		json_t *s = json_pack("{s:s,s:o,s:s}", "type", "string", "enum", vals, "description", desc);
		free(desc);
		json_object_set_new(SCHEMAS, e->name, s);
	}
	return ref(e->name);
}

/* The schema of one value of field f (not the repetition). */
static json_t *value_schema(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_pack("{s:s,s:s}", "type", "integer", "format", "int32");
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_pack("{s:s,s:s,s:i}", "type", "integer", "format", "int64", "minimum", 0);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return json_pack("{s:s,s:s,s:s}", "type", "string", "format", "int64", "pattern", "^-?[0-9]+$");
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return json_pack("{s:s,s:s,s:s}", "type", "string", "format", "uint64", "pattern", "^[0-9]+$");
	case PROTOBUF_C_TYPE_FLOAT:
		return json_pack("{s:s,s:s}", "type", "number", "format", "float");
	case PROTOBUF_C_TYPE_DOUBLE:
		return json_pack("{s:s,s:s}", "type", "number", "format", "double");
	case PROTOBUF_C_TYPE_BOOL:
		return json_pack("{s:s}", "type", "boolean");
	case PROTOBUF_C_TYPE_STRING:
		return json_pack("{s:s}", "type", "string");
	case PROTOBUF_C_TYPE_BYTES:
		return json_pack("{s:s,s:s}", "type", "string", "format", "byte");
	case PROTOBUF_C_TYPE_ENUM:
		return enum_ref(f->descriptor);
	case PROTOBUF_C_TYPE_MESSAGE:
		return schema_of_message(f->descriptor);
	}
	return json_object();
}

static json_t *field_schema(const ProtobufCFieldDescriptor *f)
{
	if (hs_pbjson_field_is_map(f)) {
		const ProtobufCFieldDescriptor *v = hs_pbjson_field_lookup(f->descriptor, "value");
		return json_pack("{s:s,s:o}", "type", "object", "additionalProperties", value_schema(v));
	}
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return json_pack("{s:s,s:o}", "type", "array", "items", value_schema(f));
	return value_schema(f);
}

/* A $ref to d's schema (written on first use), or an inline schema for the
 * well-known types, which have a JSON form of their own. */
static json_t *schema_of_message(const ProtobufCMessageDescriptor *d)
{
	const char *n = d->name;
	if (!strcmp(n, "google.protobuf.Timestamp"))
		return json_pack("{s:s,s:s,s:s}", "type", "string", "format", "date-time", "description",
				 "RFC 3339, UTC on output (\"2024-05-01T10:00:00.500Z\")");
	if (!strcmp(n, "google.protobuf.Struct"))
		return json_pack("{s:s,s:b,s:s}", "type", "object", "additionalProperties", 1,
				 "description", "Any JSON object");
	if (!strcmp(n, "google.protobuf.Value"))
		return json_pack("{s:s}", "description", "Any JSON value");
	if (!strcmp(n, "google.protobuf.ListValue"))
		return json_pack("{s:s,s:{}}", "type", "array", "items");
	if (!strcmp(n, "google.protobuf.Empty"))
		return json_pack("{s:s}", "type", "object");
	if (json_object_get(SCHEMAS, n) != NULL)
		return ref(n);
	json_t *s = json_object();
	json_object_set_new(SCHEMAS, n, s); /* before the fields: recursion ends here */
	found fd;
	bool have = find(n, false, &fd);
	char *desc = have ? leading(fd.file, fd.path, fd.n) : strdup("");
	json_t *props = json_object();
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		char key[128];
		hs_pbjson_json_name(key, sizeof(key), f->name);
		json_t *fs = field_schema(f);
		char *fdesc = NULL;
		if (have) {
			for (size_t k = 0; k < fd.msg->n_field; k++) {
				if (strcmp(fd.msg->field[k]->name, f->name) != 0)
					continue;
				int32_t path[18];
				memcpy(path, fd.path, fd.n * sizeof(int32_t));
				path[fd.n] = 2;
				path[fd.n + 1] = (int32_t)k;
				fdesc = leading(fd.file, path, fd.n + 2);
			}
		}
		if (fdesc != NULL && fdesc[0] != '\0') {
			if (json_object_get(fs, "$ref") != NULL) /* 3.0: siblings of $ref are ignored */
				fs = json_pack("{s:[o],s:s}", "allOf", fs, "description", fdesc);
			else
				json_object_set_new(fs, "description", json_string(fdesc));
		}
		free(fdesc);
		json_object_set_new(props, key, fs);
	}
	json_object_set_new(s, "type", json_string("object"));
	json_object_set_new(s, "description", json_string(desc));
	json_object_set_new(s, "properties", props);
	free(desc);
	return ref(n);
}

/* --- operations --- */

static const Google__Protobuf__MethodDescriptorProto *
method_proto(const hs_gw_route *r, const Google__Protobuf__FileDescriptorProto **file, int32_t path[4])
{
	for (size_t i = 0; i < SET->n_file; i++) {
		const Google__Protobuf__FileDescriptorProto *f = SET->file[i];
		for (size_t s = 0; s < f->n_service; s++) {
			char full[200];
			snprintf(full, sizeof(full), "%s.%s", f->package, f->service[s]->name);
			if (strcmp(full, r->service) != 0)
				continue;
			for (size_t m = 0; m < f->service[s]->n_method; m++) {
				if (strcmp(f->service[s]->method[m]->name, r->method) != 0)
					continue;
				*file = f;
				path[0] = 6;
				path[1] = (int32_t)s;
				path[2] = 2;
				path[3] = (int32_t)m;
				return f->service[s]->method[m];
			}
		}
	}
	return NULL;
}

/* OpenAPI's path: "{task_id}" stays, the ":verb" stays literal. */
static json_t *parameter(const char *name, const char *in, bool required, json_t *schema,
			 const char *desc)
{
	json_t *p = json_pack("{s:s,s:s,s:b,s:o}", "name", name, "in", in, "required", required,
			      "schema", schema);
	if (desc != NULL && desc[0] != '\0')
		json_object_set_new(p, "description", json_string(desc));
	return p;
}

static char *field_comment(const ProtobufCMessageDescriptor *d, const char *field)
{
	found fd;
	if (!find(d->name, false, &fd))
		return strdup("");
	for (size_t k = 0; k < fd.msg->n_field; k++) {
		if (strcmp(fd.msg->field[k]->name, field) != 0)
			continue;
		int32_t path[18];
		memcpy(path, fd.path, fd.n * sizeof(int32_t));
		path[fd.n] = 2;
		path[fd.n + 1] = (int32_t)k;
		return leading(fd.file, path, fd.n + 2);
	}
	return strdup("");
}

static bool bound_by_path(const hs_gw_route *r, const char *field)
{
	for (size_t i = 0; i < r->n_vars; i++)
		if (!strcmp(r->vars[i], field))
			return true;
	return false;
}

/* Query parameters: the request's fields not bound by the path (one level
 * of nesting is flattened as "a.b"). */
static void query_params(json_t *params, const hs_gw_route *r, const ProtobufCMessageDescriptor *d,
			 const char *prefix)
{
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		char name[200], key[128];
		hs_pbjson_json_name(key, sizeof(key), f->name);
		snprintf(name, sizeof(name), "%s%s", prefix, key);
		if (prefix[0] == '\0' && bound_by_path(r, f->name))
			continue;
		char *desc = field_comment(d, f->name);
		if (hs_pbjson_field_is_map(f)) {
			json_t *p = parameter(name, "query", false, field_schema(f), desc);
			json_object_set_new(p, "style", json_string("deepObject"));
			json_object_set_new(p, "explode", json_true());
			json_array_append_new(params, p);
		} else if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
			   strcmp(((const ProtobufCMessageDescriptor *)f->descriptor)->name,
				  "google.protobuf.Timestamp") != 0) {
			if (prefix[0] == '\0' && f->label != PROTOBUF_C_LABEL_REPEATED) {
				char sub[210];
				snprintf(sub, sizeof(sub), "%s.", name);
				query_params(params, r, f->descriptor, sub);
			}
		} else {
			json_t *p = parameter(name, "query", false, field_schema(f), desc);
			if (f->label == PROTOBUF_C_LABEL_REPEATED)
				json_object_set_new(p, "explode", json_true());
			json_array_append_new(params, p);
		}
		free(desc);
	}
}

/* The body schema of a body "*" rule: the request without the path's fields. */
static json_t *body_schema(const hs_gw_route *r)
{
	if (strcmp(r->body, "*") != 0) {
		const ProtobufCFieldDescriptor *f = hs_pbjson_field_lookup(r->in, r->body);
		return field_schema(f);
	}
	json_decref(schema_of_message(r->in));
	if (r->n_vars == 0)
		return ref(r->in->name);
	json_t *full = json_object_get(SCHEMAS, r->in->name);
	json_t *copy = json_deep_copy(full);
	json_t *props = json_object_get(copy, "properties");
	for (size_t i = 0; i < r->n_vars; i++) {
		char key[128];
		hs_pbjson_json_name(key, sizeof(key), r->vars[i]);
		json_object_del(props, key);
	}
	char name[200];
	snprintf(name, sizeof(name), "%s.Body", r->operation_id);
	json_object_set_new(SCHEMAS, name, copy);
	return ref(name);
}

static bool is_public(const hs_gw_route *r)
{
	for (const char *const *p = PUBLIC_METHODS; *p != NULL; p++)
		if (!strcmp(*p, r->grpc_path))
			return true;
	return false;
}

static json_t *operation(const hs_gw_route *r)
{
	const Google__Protobuf__FileDescriptorProto *f = NULL;
	int32_t path[4];
	const Google__Protobuf__MethodDescriptorProto *mp = method_proto(r, &f, path);
	char *desc = mp != NULL ? leading(f, path, 4) : strdup("");
	const char *svc = strrchr(r->service, '.');
	svc = svc != NULL ? svc + 1 : r->service;
	char summary[160];
	size_t n = strcspn(desc, ".\n");
	snprintf(summary, sizeof(summary), "%.*s", (int)(n < 150 ? n : 150), desc);
	size_t glen = strlen(desc) + strlen(r->grpc_path) + 16;
	char *grpc = malloc(glen);
	snprintf(grpc, glen, "%s\n\ngRPC: `%s`.", desc, r->grpc_path);
	json_t *op = json_pack("{s:s,s:[s],s:s,s:s}", "operationId", r->operation_id, "tags",
			       !strcmp(svc, "Health") ? "grpc.health.v1.Health" : svc, "summary",
			       summary[0] ? summary : r->method, "description", grpc);
	free(grpc);
	free(desc);
	json_t *params = json_array();
	for (size_t i = 0; i < r->n_vars; i++) {
		const ProtobufCMessageDescriptor *owner = NULL;
		const ProtobufCFieldDescriptor *vf = hs_gw_field_path(r->in, r->vars[i], &owner);
		char *c = field_comment(owner, vf->name);
		json_array_append_new(params, parameter(r->vars[i], "path", true, value_schema(vf), c));
		free(c);
	}
	if (strcmp(r->body, "*") != 0)
		query_params(params, r, r->in, "");
	if (r->server_streaming && hs_gw_sse_resumable(r))
		json_array_append_new(params, parameter(
			"Last-Event-ID", "header", false, json_pack("{s:s,s:s}", "type", "string",
								    "pattern", "^[0-9]{1,20}$"),
			"Sent by an EventSource when it reconnects: the stream continues after "
			"that event (the request's afterEventId, and sendInitial is cleared)."));
	if (json_array_size(params) > 0)
		json_object_set_new(op, "parameters", params);
	else
		json_decref(params);
	if (r->body[0] != '\0')
		json_object_set_new(op, "requestBody",
				    json_pack("{s:b,s:{s:{s:o}}}", "required", 0, "content",
					      "application/json", "schema", body_schema(r)));
	json_t *ok;
	if (r->server_streaming) {
		char d[600];
		snprintf(d, sizeof(d), "Server-Sent Events: each `data:` line is one `%s` as JSON "
			 "(#/components/schemas/%s)%s; `event: end` carries the final "
			 "google.rpc.Status (code 0 = clean end); comment lines keep the connection "
			 "alive. See the description at the top for limits and reconnection.",
			 r->out->name, r->out->name,
			 hs_gw_sse_resumable(r) ? ", with `id:` its eventId" : "");
		json_decref(schema_of_message(r->out));
		ok = json_pack("{s:s,s:{s:{s:{s:s}}}}", "description", d, "content", "text/event-stream",
			       "schema", "type", "string");
	} else {
		json_t *s;
		if (r->response_body[0] != '\0')
			s = field_schema(hs_pbjson_field_lookup(r->out, r->response_body));
		else
			s = schema_of_message(r->out);
		ok = json_pack("{s:s,s:{s:{s:o}}}", "description", "OK", "content", "application/json",
			       "schema", s);
	}
	json_object_set_new(op, "responses",
			    json_pack("{s:o,s:{s:s}}", "200", ok, "default", "$ref",
				      "#/components/responses/Error"));
	if (is_public(r))
		json_object_set_new(op, "security", json_array());
	return op;
}

static json_t *tags(void)
{
	json_t *t = json_array();
	size_t n;
	const ProtobufCServiceDescriptor *const *sv = hs_gw_services(&n);
	for (size_t k = 0; k < n; k++) {
		for (size_t i = 0; i < SET->n_file; i++) {
			const Google__Protobuf__FileDescriptorProto *f = SET->file[i];
			for (size_t s = 0; s < f->n_service; s++) {
				char full[200];
				snprintf(full, sizeof(full), "%s.%s", f->package, f->service[s]->name);
				if (strcmp(full, sv[k]->name) != 0)
					continue;
				int32_t p1[] = { 12 }; /* the file comment sits before `syntax` */
				const Google__Protobuf__SourceCodeInfo__Location *l = location(f, p1, 1);
				char *head = tidy(l != NULL && l->n_leading_detached_comments > 0
							  ? l->leading_detached_comments[0]
							  : l != NULL ? l->leading_comments : NULL);
				int32_t p2[] = { 6, (int32_t)s };
				char *svc = leading(f, p2, 2);
				size_t len = strlen(head) + strlen(svc) + 8;
				char *d = malloc(len);
				snprintf(d, len, "%s\n\n%s", svc, head);
				const char *name = !strcmp(full, "grpc.health.v1.Health")
							   ? full
							   : f->service[s]->name;
				json_array_append_new(t, json_pack("{s:s,s:s}", "name", name, "description", d));
				free(d);
				free(head);
				free(svc);
			}
		}
	}
	return t;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: hs-openapi-gen SEED.json VERSION OUT.json\n");
		return 2;
	}
	json_error_t je;
	json_t *doc = json_load_file(argv[1], JSON_REJECT_DUPLICATES, &je);
	if (doc == NULL) {
		fprintf(stderr, "hs-openapi-gen: %s:%d: %s\n", argv[1], je.line, je.text);
		return 1;
	}
	SET = google__protobuf__file_descriptor_set__unpack(NULL, hs_descriptor_set_len, hs_descriptor_set);
	size_t n;
	const ProtobufCServiceDescriptor *const *sv = hs_gw_services(&n);
	hs_gw_routes *routes = NULL;
	hs_error err = { 0 };
	if (SET == NULL || hs_gw_routes_load(&routes, hs_descriptor_set, hs_descriptor_set_len, sv, n,
					     &err) != HS_OK) {
		fprintf(stderr, "hs-openapi-gen: %s\n", err.msg);
		return 1;
	}
	json_object_set_new(json_object_get(doc, "info"), "version", json_string(argv[2]));
	/* the methods without a REST mapping, named in the description */
	json_t *info = json_object_get(doc, "info");
	const char *d0 = json_string_value(json_object_get(info, "description"));
	char unmapped[1024] = "";
	for (size_t i = 0; hs_gw_routes_unmapped(routes, i) != NULL; i++) {
		size_t u = strlen(unmapped);
		snprintf(unmapped + u, sizeof(unmapped) - u, "%s`%s`", u ? ", " : "",
			 hs_gw_routes_unmapped(routes, i));
	}
	size_t dl = strlen(d0 != NULL ? d0 : "") + strlen(unmapped) + 512;
	char *d = malloc(dl);
	snprintf(d, dl, "%s\n\n## Not over REST\n\n%s: a client or bidirectional stream has no "
		 "REST mapping (HTTP/1.1 request/response cannot carry it). Call it over gRPC "
		 "(harnessctl, grpcurl, any gRPC client).", d0 != NULL ? d0 : "", unmapped);
	json_object_set_new(info, "description", json_string(d));
	free(d);
	json_object_set_new(doc, "tags", tags());
	SCHEMAS = json_object_get(json_object_get(doc, "components"), "schemas");
	json_t *paths = json_object_get(doc, "paths");
	for (size_t i = 0; i < hs_gw_routes_count(routes); i++) {
		const hs_gw_route *r = hs_gw_routes_at(routes, i);
		json_t *item = json_object_get(paths, r->tmpl);
		if (item == NULL) {
			item = json_object();
			json_object_set_new(paths, r->tmpl, item);
		}
		char method[8];
		size_t k = 0;
		for (; r->http_method[k] && k < sizeof(method) - 1; k++)
			method[k] = (char)(r->http_method[k] | 0x20);
		method[k] = '\0';
		json_object_set_new(item, method, operation(r));
	}
	int rc = json_dump_file(doc, argv[3], JSON_INDENT(1) | JSON_SORT_KEYS) == 0 ? 0 : 1;
	if (rc != 0)
		fprintf(stderr, "hs-openapi-gen: cannot write %s\n", argv[3]);
	json_decref(doc);
	hs_gw_routes_free(routes);
	google__protobuf__file_descriptor_set__free_unpacked(SET, NULL);
	return rc;
}
