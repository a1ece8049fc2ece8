/* JSON <-> protobuf for REST routes (transcode.h). The request is built as
 * one JSON object (body, then query, then path values) and decoded once by
 * pbjson, so every field goes through the one proto3 JSON mapping. */
#include "transcode.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pbjson.h"
#include "validate.h"

#define MAX_JSON_DEPTH 64 /* nesting of a request body (Struct included) */
#define MAX_NAME 128

/* Depth of v's nesting, stopping at limit + 1. */
static int json_depth(const json_t *v, int limit)
{
	if (limit < 0)
		return 1;
	int best = 0;
	if (json_is_object(v)) {
		const char *k;
		json_t *c;
		json_object_foreach((json_t *)v, k, c) {
			int d = json_depth(c, limit - 1);
			if (d > best)
				best = d;
			if (best > limit)
				break;
		}
		return best + 1;
	}
	if (json_is_array(v)) {
		size_t i;
		json_t *c;
		json_array_foreach(v, i, c) {
			int d = json_depth(c, limit - 1);
			if (d > best)
				best = d;
			if (best > limit)
				break;
		}
		return best + 1;
	}
	return 0;
}

/* application/x-www-form-urlencoded decoding of s[0..n) into a malloc'd
 * string; NULL when malformed (bad escape, NUL) or out of memory. */
static char *form_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			*o++ = ' ';
		} else if (s[i] == '%') {
			int hi = i + 1 < n ? hs_gw_hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hs_gw_hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return NULL;
			}
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

/* A query or path value as the JSON the field's type wants (a string for
 * the rest: pbjson parses numbers, int64 and Timestamps from strings, and
 * refuses a string for a message field, naming it). */
static json_t *convert(const ProtobufCFieldDescriptor *f, const char *v, hs_error *err, const char *name)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_BOOL:
		if (!strcmp(v, "true") || !strcmp(v, "1"))
			return json_true();
		if (!strcmp(v, "false") || !strcmp(v, "0"))
			return json_false();
		hs_error_set(err, HS_INVALID, "%s: expected true or false", name);
		return NULL;
	case PROTOBUF_C_TYPE_ENUM: {
		const char *p = v + (v[0] == '-');
		bool digits = *p != '\0';
		for (; *p; p++)
			digits = digits && *p >= '0' && *p <= '9';
		if (digits) {
			errno = 0;
			long long n = strtoll(v, NULL, 10);
			if (errno == 0)
				return json_integer(n);
		}
		break;
	}
	default:
		break;
	}
	json_t *s = json_string(v);
	if (s == NULL)
		hs_error_set(err, HS_INVALID, "%s: not UTF-8", name);
	return s;
}

/* The member of obj for field f (either spelling), removing the proto
 * spelling when the JSON one is used; key = the JSON name. */
static json_t *member(json_t *obj, const ProtobufCFieldDescriptor *f, char key[MAX_NAME])
{
	hs_pbjson_json_name(key, MAX_NAME, f->name);
	json_t *v = json_object_get(obj, key);
	if (v == NULL && strcmp(key, f->name) != 0) {
		v = json_object_get(obj, f->name);
		if (v != NULL) { /* move it under the JSON name */
			json_incref(v);
			json_object_del(obj, f->name);
			json_object_set_new(obj, key, v);
		}
	}
	return v;
}

/* Sets the field named by `name` ("a.b", "m[k]") of desc in root to value.
 * Unknown names are skipped (HS_OK) unless strict. */
static int set_param(json_t *root, const ProtobufCMessageDescriptor *desc, const char *name,
		     const char *value, bool strict, hs_error *err)
{
	char path[MAX_NAME * 2], mapkey[MAX_NAME * 2];
	const char *br = strchr(name, '[');
	size_t n = br != NULL ? (size_t)(br - name) : strlen(name);
	bool is_map = br != NULL;
	if (n == 0 || n >= sizeof(path))
		return strict ? hs_error_set(err, HS_INVALID, "%s: bad name", name) : HS_OK;
	memcpy(path, name, n);
	path[n] = '\0';
	if (is_map) {
		size_t kn = strlen(br + 1);
		if (kn == 0 || br[kn] != ']' || kn - 1 >= sizeof(mapkey) || memchr(br + 1, '[', kn) != NULL)
			return hs_error_set(err, HS_INVALID, "%s: bad map key syntax (want m[key]=value)", name);
		memcpy(mapkey, br + 1, kn - 1);
		mapkey[kn - 1] = '\0';
	}
	const ProtobufCMessageDescriptor *owner = NULL;
	const ProtobufCFieldDescriptor *leaf = hs_gw_field_path(desc, path, &owner);
	if (leaf == NULL)
		return strict ? hs_error_set(err, HS_INVALID, "%s: no such field", path) : HS_OK;
	/* walk (creating) the objects down to the leaf's owner */
	json_t *cur = root;
	char key[MAX_NAME];
	for (char *p = path, *dot; (dot = strchr(p, '.')) != NULL; p = dot + 1) {
		*dot = '\0';
		const ProtobufCFieldDescriptor *f = hs_pbjson_field_lookup(desc, p);
		*dot = '.';
		json_t *next = member(cur, f, key);
		if (next == NULL) {
			next = json_object();
			json_object_set_new(cur, key, next);
		} else if (!json_is_object(next)) {
			return hs_error_set(err, HS_INVALID, "%s: conflicts with a value of %s", name, key);
		}
		cur = next;
		desc = f->descriptor;
	}
	json_t *old = member(cur, leaf, key);
	if (hs_pbjson_field_is_map(leaf)) {
		if (!is_map)
			return hs_error_set(err, HS_INVALID, "%s: a map: use %s[key]=value", name, path);
		const ProtobufCFieldDescriptor *vf = hs_pbjson_field_lookup(leaf->descriptor, "value");
		json_t *v = convert(vf, value, err, name);
		if (v == NULL)
			return HS_INVALID;
		if (old == NULL || !json_is_object(old)) {
			old = json_object();
			json_object_set_new(cur, key, old);
		}
		if (json_object_set_new(old, mapkey, v) != 0)
			return hs_error_set(err, HS_INVALID, "%s: key not UTF-8", name);
		return HS_OK;
	}
	if (is_map)
		return hs_error_set(err, HS_INVALID, "%s: %s is not a map", name, path);
	json_t *v = convert(leaf, value, err, name);
	if (v == NULL)
		return HS_INVALID;
	if (leaf->label == PROTOBUF_C_LABEL_REPEATED) {
		if (old == NULL || !json_is_array(old)) {
			old = json_array();
			json_object_set_new(cur, key, old);
		}
		json_array_append_new(old, v);
		return HS_OK;
	}
	/* a later source wins, whichever spelling the earlier one used */
	json_object_del(cur, leaf->name);
	json_object_set_new(cur, key, v);
	return HS_OK;
}

static int apply_query(json_t *root, const ProtobufCMessageDescriptor *desc, const char *q,
		       hs_error *err)
{
	size_t count = 0;
	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&');
		size_t n = amp != NULL ? (size_t)(amp - q) : strlen(q);
		if (n > 0) {
			if (++count > HS_GW_QUERY_MAX_PARAMS)
				return hs_error_set(err, HS_INVALID, "query: more than %d parameters",
						    HS_GW_QUERY_MAX_PARAMS);
			const char *eq = memchr(q, '=', n);
			size_t kn = eq != NULL ? (size_t)(eq - q) : n;
			char *k = form_decode(q, kn);
			char *v = eq != NULL ? form_decode(eq + 1, n - kn - 1) : strdup("");
			int rc = k == NULL || v == NULL
					 ? hs_error_set(err, HS_INVALID, "query: malformed percent-encoding")
					 : set_param(root, desc, k, v, false, err);
			free(k);
			free(v);
			if (rc != HS_OK)
				return rc;
		}
		q = amp != NULL ? amp + 1 : NULL;
	}
	return HS_OK;
}

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

int hs_gw_transcode_request(ProtobufCMessage **out, const hs_gw_match *m, const char *query,
			    const char *body, size_t len, hs_error *err)
{
	const hs_gw_route *r = m->route;
	bool has_body = body != NULL && len > 0 && !blank(body, len);
	json_t *root = NULL;
	int rc = HS_OK;
	if (has_body && r->body[0] == '\0')
		return hs_error_set(err, HS_INVALID, "%s %s takes no request body", r->http_method, r->tmpl);
	if (has_body) {
		json_error_t je;
		json_t *b = json_loadb(body, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
		if (b == NULL)
			return hs_error_set(err, HS_INVALID, "body: malformed JSON at line %d column %d",
					    je.line, je.column);
		if (json_depth(b, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
			json_decref(b);
			return hs_error_set(err, HS_INVALID, "body: nested deeper than %d", MAX_JSON_DEPTH);
		}
		if (!strcmp(r->body, "*")) {
			if (!json_is_object(b)) {
				json_decref(b);
				return hs_error_set(err, HS_INVALID, "body: expected a JSON object");
			}
			root = b;
		} else {
			char key[MAX_NAME];
			root = json_object();
			hs_pbjson_json_name(key, sizeof(key), r->body);
			json_object_set_new(root, key, b);
		}
	} else {
		root = json_object();
	}
	if (root == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	if (strcmp(r->body, "*") != 0)
		rc = apply_query(root, r->in, query, err);
	for (size_t i = 0; rc == HS_OK && i < r->n_vars; i++)
		rc = set_param(root, r->in, r->vars[i], m->values[i], true, err);
	if (rc == HS_OK) {
		hs_pbjson_opts o = HS_PBJSON_OPTS_INIT;
		o.ignore_unknown = true;
		rc = hs_pbjson_decode(out, r->in, root, &o, err);
	}
	json_decref(root);
	return rc;
}

int hs_gw_transcode_response(char **out, size_t *len, const hs_gw_route *r,
			     const ProtobufCMessage *msg, hs_error *err)
{
	hs_pbjson_opts o = HS_PBJSON_OPTS_INIT;
	o.emit_defaults = true;
	json_t *j = NULL;
	int rc = hs_pbjson_encode(&j, msg, &o, err);
	if (rc != HS_OK)
		return rc;
	json_t *pick = j;
	if (r->response_body[0] != '\0') {
		char key[MAX_NAME];
		hs_pbjson_json_name(key, sizeof(key), r->response_body);
		pick = json_object_get(j, key);
		if (pick == NULL)
			pick = json_null();
	}
	char *s = json_dumps(pick, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
	json_decref(j);
	if (s == NULL)
		return hs_error_set(err, HS_INTERNAL, "response: cannot serialise");
	*out = s;
	*len = strlen(s);
	return HS_OK;
}

char *hs_gw_status_json(int grpc_code, const char *message, const char *reason)
{
	json_t *o = json_object();
	json_t *details = json_array();
	if (o == NULL || details == NULL) {
		json_decref(o);
		json_decref(details);
		return NULL;
	}
	json_t *msg = json_string(message != NULL ? message : "");
	json_object_set_new(o, "code", json_integer(grpc_code));
	json_object_set_new(o, "message", msg != NULL ? msg : json_string(""));
	if (reason != NULL && reason[0] != '\0') {
		json_t *info = json_object();
		json_object_set_new(info, "@type", json_string("type.googleapis.com/google.rpc.ErrorInfo"));
		json_object_set_new(info, "reason", json_string(reason));
		json_object_set_new(info, "domain", json_string("harness"));
		json_array_append_new(details, info);
	}
	json_object_set_new(o, "details", details);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

char *hs_gw_sse_event(const char *id, const char *event, const char *data, size_t *len)
{
	size_t n = strlen(data) + 16 + (id != NULL ? strlen(id) + 8 : 0) +
		   (event != NULL ? strlen(event) + 8 : 0);
	char *buf = malloc(n);
	if (buf == NULL)
		return NULL;
	int w = snprintf(buf, n, "%s%s%s%s%s%sdata: %s\n\n", id != NULL ? "id: " : "",
			 id != NULL ? id : "", id != NULL ? "\n" : "", event != NULL ? "event: " : "",
			 event != NULL ? event : "", event != NULL ? "\n" : "", data);
	if (w < 0 || (size_t)w >= n) {
		free(buf);
		return NULL;
	}
	*len = (size_t)w;
	return buf;
}

static const ProtobufCFieldDescriptor *u64_field(const ProtobufCMessageDescriptor *d, const char *name)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);
	return f != NULL && f->type == PROTOBUF_C_TYPE_UINT64 && f->label != PROTOBUF_C_LABEL_REPEATED
		       ? f
		       : NULL;
}

bool hs_gw_sse_resumable(const hs_gw_route *r)
{
	return r->server_streaming && u64_field(r->in, "after_event_id") != NULL &&
	       u64_field(r->out, "event_id") != NULL;
}

int hs_gw_sse_resume(ProtobufCMessage *req, const char *last_event_id, hs_error *err)
{
	const ProtobufCFieldDescriptor *f = u64_field(req->descriptor, "after_event_id");
	size_t n = strlen(last_event_id);
	if (f == NULL)
		return hs_error_set(err, HS_INVALID, "Last-Event-ID: this stream does not resume");
	if (n == 0 || n > 20 || strspn(last_event_id, "0123456789") != n)
		return hs_error_set(err, HS_INVALID, "Last-Event-ID: not an event id");
	errno = 0;
	unsigned long long v = strtoull(last_event_id, NULL, 10);
	if (errno != 0)
		return hs_error_set(err, HS_INVALID, "Last-Event-ID: out of range");
	*(uint64_t *)(void *)((char *)req + f->offset) = (uint64_t)v;
	const ProtobufCFieldDescriptor *si =
		protobuf_c_message_descriptor_get_field_by_name(req->descriptor, "send_initial");
	if (si != NULL && si->type == PROTOBUF_C_TYPE_BOOL && si->label != PROTOBUF_C_LABEL_REPEATED)
		*(protobuf_c_boolean *)(void *)((char *)req + si->offset) = 0;
	return HS_OK;
}

bool hs_gw_sse_id(const ProtobufCMessage *msg, char *buf, size_t n)
{
	const ProtobufCFieldDescriptor *f = u64_field(msg->descriptor, "event_id");
	if (f == NULL)
		return false;
	uint64_t v = *(const uint64_t *)(const void *)((const char *)msg + f->offset);
	if (v == 0)
		return false;
	snprintf(buf, n, "%" PRIu64, v);
	return true;
}
