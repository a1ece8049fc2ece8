/* REST routes from google.api.http rules (routes.h). Loading runs once at
 * start (and in the OpenAPI generator at build time); matching is a scan
 * of a few dozen routes comparing segments, no allocation. */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "google/api/http.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "pbjson.h"
#include "validate.h"

#define HTTP_RULE_FIELD 72295728u /* google.api.http on MethodOptions */
#define MAX_ROUTES 256
#define MAX_UNMAPPED 64
#define MAX_SEGS 32 /* segments of a template (and of a path worth matching) */

const hs_gw_extra_rule hs_gw_routes_extra[] = {
	{ "/grpc.health.v1.Health/Check", "GET", "/v1/health", "" },
	{ "/grpc.health.v1.Health/Watch", "GET", "/v1/health:watch", "" },
	{ NULL, NULL, NULL, NULL },
};

struct hs_gw_routes {
	hs_gw_route *v;
	size_t n;
	char *unmapped[MAX_UNMAPPED];
	size_t n_unmapped;
};

static bool literal_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
	       c == '_' || c == '~' || c == '-';
}

static bool field_path_ok(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || (s[i] == '.' && s[i - 1] != '.')))
			return false;
	return true;
}

const ProtobufCFieldDescriptor *hs_gw_field_path(const ProtobufCMessageDescriptor *desc,
						 const char *path,
						 const ProtobufCMessageDescriptor **owner)
{
	char part[128];
	const char *p = path;
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);
		if (n == 0 || n >= sizeof(part))
			return NULL;
		memcpy(part, p, n);
		part[n] = '\0';
		const ProtobufCFieldDescriptor *f = hs_pbjson_field_lookup(desc, part);
		if (f == NULL)
			return NULL;
		if (dot == NULL) {
			if (owner != NULL)
				*owner = desc;
			return f;
		}
		if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
			return NULL;
		desc = f->descriptor;
		p = dot + 1;
	}
}

/* A field a path variable may bind: singular, not a message. */
static bool bindable(const ProtobufCFieldDescriptor *f)
{
	return f != NULL && f->label != PROTOBUF_C_LABEL_REPEATED && f->type != PROTOBUF_C_TYPE_MESSAGE;
}

static void route_dispose(hs_gw_route *r)
{
	free(r->tmpl);
	for (size_t i = 0; i < r->n_segs; i++)
		free(r->segs[i].literal);
	free(r->segs);
	free(r->verb);
	for (size_t i = 0; i < r->n_vars; i++)
		free(r->vars[i]);
	free(r->body);
	free(r->response_body);
	memset(r, 0, sizeof(*r));
}

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* Parses tmpl into r's segments, verb and variables. */
static int parse_template(hs_gw_route *r, const char *tmpl, hs_error *err)
{
	const char *what = r->grpc_path;
	size_t len = strlen(tmpl);
	if (len < 2 || tmpl[0] != '/' || len > 512)
		return hs_error_set(err, HS_INVALID, "%s: http rule \"%s\": must start with '/'", what, tmpl);
	r->tmpl = dupn(tmpl, len);
	r->segs = calloc(MAX_SEGS, sizeof(*r->segs));
	if (r->tmpl == NULL || r->segs == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	const char *p = tmpl + 1;
	for (;;) {
		if (r->n_segs == MAX_SEGS)
			return hs_error_set(err, HS_INVALID, "%s: http rule \"%s\": more than %d segments",
					    what, tmpl, MAX_SEGS);
		hs_gw_seg *sg = &r->segs[r->n_segs];
		if (*p == '{') {
			const char *close = strchr(p, '}');
			if (close == NULL)
				return hs_error_set(err, HS_INVALID, "%s: http rule \"%s\": unclosed '{'", what, tmpl);
			const char *eq = memchr(p, '=', (size_t)(close - p));
			size_t n = (size_t)((eq != NULL ? eq : close) - (p + 1));
			if (eq != NULL && !(close - eq == 2 && eq[1] == '*'))
				return hs_error_set(err, HS_INVALID, "%s: http rule \"%s\": only {field} and "
						    "{field=*} variables are supported", what, tmpl);
			if (!field_path_ok(p + 1, n) || r->n_vars >= HS_GW_MAX_VARS)
				return hs_error_set(err, HS_INVALID, "%s: http rule \"%s\": bad variable", what, tmpl);
			r->vars[r->n_vars] = dupn(p + 1, n);
			if (r->vars[r->n_vars] == NULL)
				return hs_error_set(err, HS_INTERNAL, "out of memory");
			sg->var = (int)r->n_vars++; /* counted now: route_dispose frees it */
			for (size_t i = 0; i + 1 < r->n_vars; i++)
				if (!strcmp(r->vars[i], r->vars[r->n_vars - 1]))
					return hs_error_set(err, HS_INVALID, "%s: http rule \"%s\": %s bound twice",
							    what, tmpl, r->vars[i]);
			p = close + 1;
		} else {
			const char *q = p;
			while (literal_char(*q))
				q++;
			if (q == p)
				return hs_error_set(err, HS_INVALID, "%s: http rule \"%s\": empty or unsupported "
						    "segment (wildcards are not supported)", what, tmpl);
			sg->literal = dupn(p, (size_t)(q - p));
			if (sg->literal == NULL)
				return hs_error_set(err, HS_INTERNAL, "out of memory");
			p = q;
		}
		r->n_segs++;
		if (*p == '/') {
			p++;
			continue;
		}
		if (*p == ':') {
			const char *q = p + 1;
			while (literal_char(*q))
				q++;
			if (q == p + 1 || *q != '\0')
				return hs_error_set(err, HS_INVALID, "%s: http rule \"%s\": bad verb", what, tmpl);
			r->verb = dupn(p + 1, (size_t)(q - p - 1));
			if (r->verb == NULL)
				return hs_error_set(err, HS_INTERNAL, "out of memory");
			return HS_OK;
		}
		if (*p == '\0')
			return HS_OK;
		return hs_error_set(err, HS_INVALID, "%s: http rule \"%s\": unexpected '%c'", what, tmpl, *p);
	}
}

/* Checks the rule's fields against the message types. */
static int check_fields(const hs_gw_route *r, hs_error *err)
{
	for (size_t i = 0; i < r->n_vars; i++)
		if (!bindable(hs_gw_field_path(r->in, r->vars[i], NULL)))
			return hs_error_set(err, HS_INVALID, "%s: path variable {%s} is not a singular "
					    "scalar field of %s", r->grpc_path, r->vars[i], r->in->name);
	if (r->body[0] != '\0' && strcmp(r->body, "*") != 0) {
		const ProtobufCFieldDescriptor *f = hs_pbjson_field_lookup(r->in, r->body);
		if (f == NULL || f->label == PROTOBUF_C_LABEL_REPEATED)
			return hs_error_set(err, HS_INVALID, "%s: body \"%s\" is not a singular field of %s",
					    r->grpc_path, r->body, r->in->name);
	}
	if (r->response_body[0] != '\0' && hs_pbjson_field_lookup(r->out, r->response_body) == NULL)
		return hs_error_set(err, HS_INVALID, "%s: response_body \"%s\" is not a field of %s",
				    r->grpc_path, r->response_body, r->out->name);
	if (!strcmp(r->http_method, "GET") && r->body[0] != '\0')
		return hs_error_set(err, HS_INVALID, "%s: a GET rule has no body", r->grpc_path);
	return HS_OK;
}

static bool same_shape(const hs_gw_route *a, const hs_gw_route *b)
{
	if (strcmp(a->http_method, b->http_method) != 0 || a->n_segs != b->n_segs ||
	    (a->verb == NULL) != (b->verb == NULL) || (a->verb != NULL && strcmp(a->verb, b->verb) != 0))
		return false;
	for (size_t i = 0; i < a->n_segs; i++) {
		const char *x = a->segs[i].literal, *y = b->segs[i].literal;
		if ((x == NULL) != (y == NULL) || (x != NULL && strcmp(x, y) != 0))
			return false;
	}
	return true;
}

static const char *method_of(const Google__Api__HttpRule *h, const char **tmpl)
{
	switch (h->pattern_case) {
	case GOOGLE__API__HTTP_RULE__PATTERN_GET: *tmpl = h->get; return "GET";
	case GOOGLE__API__HTTP_RULE__PATTERN_PUT: *tmpl = h->put; return "PUT";
	case GOOGLE__API__HTTP_RULE__PATTERN_POST: *tmpl = h->post; return "POST";
	case GOOGLE__API__HTTP_RULE__PATTERN_DELETE: *tmpl = h->delete_; return "DELETE";
	case GOOGLE__API__HTTP_RULE__PATTERN_PATCH: *tmpl = h->patch; return "PATCH";
	default: return NULL;
	}
}

typedef struct method_ctx {
	const ProtobufCMethodDescriptor *md;
	const char *service; /* full name */
	bool server_streaming;
} method_ctx;

static int add_route(hs_gw_routes *rs, const method_ctx *mc, const char *http_method,
		     const char *tmpl, const char *body, const char *response_body, hs_error *err)
{
	if (rs->n >= MAX_ROUTES)
		return hs_error_set(err, HS_INVALID, "too many http rules (limit %d)", MAX_ROUTES);
	hs_gw_route *r = &rs->v[rs->n];
	memset(r, 0, sizeof(*r));
	r->http_method = http_method;
	r->in = mc->md->input;
	r->out = mc->md->output;
	r->server_streaming = mc->server_streaming;
	snprintf(r->service, sizeof(r->service), "%s", mc->service);
	snprintf(r->method, sizeof(r->method), "%s", mc->md->name);
	snprintf(r->grpc_path, sizeof(r->grpc_path), "/%s/%s", mc->service, mc->md->name);
	const char *short_svc = strrchr(mc->service, '.');
	snprintf(r->operation_id, sizeof(r->operation_id), "%s_%s",
		 short_svc != NULL ? short_svc + 1 : mc->service, mc->md->name);
	r->body = strdup(body != NULL ? body : "");
	r->response_body = strdup(response_body != NULL ? response_body : "");
	int rc = r->body == NULL || r->response_body == NULL
			 ? hs_error_set(err, HS_INTERNAL, "out of memory")
			 : parse_template(r, tmpl, err);
	if (rc == HS_OK)
		rc = check_fields(r, err);
	for (size_t i = 0; rc == HS_OK && i < rs->n; i++)
		if (same_shape(&rs->v[i], r))
			rc = hs_error_set(err, HS_INVALID, "%s: http rule %s %s clashes with %s's", r->grpc_path,
					  http_method, tmpl, rs->v[i].grpc_path);
	if (rc != HS_OK) {
		route_dispose(r);
		return rc;
	}
	rs->n++;
	return HS_OK;
}

static int add_rule(hs_gw_routes *rs, const method_ctx *mc, const Google__Api__HttpRule *h,
		    bool nested, hs_error *err)
{
	const char *tmpl = NULL;
	const char *m = method_of(h, &tmpl);
	if (m == NULL || tmpl == NULL)
		return hs_error_set(err, HS_INVALID, "/%s/%s: http rule without get/put/post/delete/patch",
				    mc->service, mc->md->name);
	int rc = add_route(rs, mc, m, tmpl, h->body, h->response_body, err);
	for (size_t i = 0; rc == HS_OK && i < h->n_additional_bindings; i++) {
		if (nested)
			return hs_error_set(err, HS_INVALID, "/%s/%s: nested additional_bindings",
					    mc->service, mc->md->name);
		rc = add_rule(rs, mc, h->additional_bindings[i], true, err);
	}
	return rc;
}

static int add_unmapped(hs_gw_routes *rs, const method_ctx *mc)
{
	if (rs->n_unmapped >= MAX_UNMAPPED)
		return HS_OK;
	size_t n = strlen(mc->service) + strlen(mc->md->name) + 3;
	char *s = malloc(n);
	if (s == NULL)
		return HS_INTERNAL;
	snprintf(s, n, "/%s/%s", mc->service, mc->md->name);
	rs->unmapped[rs->n_unmapped++] = s;
	return HS_OK;
}

static int load_method(hs_gw_routes *rs, const char *full_service,
		       const ProtobufCServiceDescriptor *sd, const Google__Protobuf__MethodDescriptorProto *mp,
		       hs_error *err)
{
	method_ctx mc = { protobuf_c_service_descriptor_get_method_by_name(sd, mp->name), full_service,
			  mp->has_server_streaming && mp->server_streaming };
	if (mc.md == NULL)
		return hs_error_set(err, HS_INVALID, "/%s/%s: not in the generated service descriptor",
				    full_service, mp->name);
	if (mp->has_client_streaming && mp->client_streaming) /* no REST mapping */
		return add_unmapped(rs, &mc) == HS_OK ? HS_OK : hs_error_set(err, HS_INTERNAL, "out of memory");
	const ProtobufCMessage *opts = mp->options != NULL ? &mp->options->base : NULL;
	for (unsigned i = 0; opts != NULL && i < opts->n_unknown_fields; i++) {
		const ProtobufCMessageUnknownField *u = &opts->unknown_fields[i];
		if (u->tag != HTTP_RULE_FIELD || u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
			continue;
		/* protobuf-c keeps a length-delimited unknown field with its
		 * length prefix */
		size_t len = 0, hdr = 0;
		for (unsigned shift = 0; hdr < u->len && hdr < 10; shift += 7) {
			uint8_t b = u->data[hdr++];
			len |= (size_t)(b & 0x7f) << shift;
			if (!(b & 0x80))
				break;
		}
		Google__Api__HttpRule *h = hdr + len == u->len
						   ? google__api__http_rule__unpack(NULL, len, u->data + hdr)
						   : NULL;
		if (h == NULL)
			return hs_error_set(err, HS_INVALID, "/%s/%s: malformed google.api.http option",
					    full_service, mp->name);
		int rc = add_rule(rs, &mc, h, false, err);
		google__api__http_rule__free_unpacked(h, NULL);
		return rc;
	}
	char path[256];
	snprintf(path, sizeof(path), "/%s/%s", full_service, mp->name);
	for (const hs_gw_extra_rule *x = hs_gw_routes_extra; x->grpc_path != NULL; x++)
		if (!strcmp(x->grpc_path, path))
			return add_route(rs, &mc, x->http_method, x->tmpl, x->body, "", err);
	return add_unmapped(rs, &mc) == HS_OK ? HS_OK : hs_error_set(err, HS_INTERNAL, "out of memory");
}

/* Stable sort by number of variables: a literal segment wins over a
 * variable where two rules could match one path. */
static void sort_routes(hs_gw_route *v, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		hs_gw_route x = v[i];
		size_t j = i;
		for (; j > 0 && v[j - 1].n_vars > x.n_vars; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

int hs_gw_routes_load(hs_gw_routes **out, const uint8_t *set, size_t set_len,
		      const ProtobufCServiceDescriptor *const *services, size_t n_services,
		      hs_error *err)
{
	Google__Protobuf__FileDescriptorSet *fds =
		google__protobuf__file_descriptor_set__unpack(NULL, set_len, set);
	if (fds == NULL)
		return hs_error_set(err, HS_INVALID, "descriptor set: malformed");
	hs_gw_routes *rs = calloc(1, sizeof(*rs));
	int rc = HS_OK;
	if (rs == NULL || (rs->v = calloc(MAX_ROUTES, sizeof(*rs->v))) == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		goto done;
	}
	size_t found = 0;
	for (size_t f = 0; rc == HS_OK && f < fds->n_file; f++) {
		const Google__Protobuf__FileDescriptorProto *fp = fds->file[f];
		for (size_t s = 0; rc == HS_OK && s < fp->n_service; s++) {
			char full[128];
			snprintf(full, sizeof(full), "%s%s%s", fp->package ? fp->package : "",
				 fp->package && fp->package[0] ? "." : "", fp->service[s]->name);
			const ProtobufCServiceDescriptor *sd = NULL;
			for (size_t k = 0; k < n_services; k++)
				if (!strcmp(services[k]->name, full))
					sd = services[k];
			if (sd == NULL)
				continue;
			found++;
			for (size_t m = 0; rc == HS_OK && m < fp->service[s]->n_method; m++)
				rc = load_method(rs, full, sd, fp->service[s]->method[m], err);
		}
	}
	if (rc == HS_OK && found != n_services)
		rc = hs_error_set(err, HS_INVALID, "descriptor set: %zu of %zu services missing",
				  n_services - found, n_services);
	if (rc == HS_OK) {
		sort_routes(rs->v, rs->n);
		*out = rs;
	}
done:
	google__protobuf__file_descriptor_set__free_unpacked(fds, NULL);
	if (rc != HS_OK)
		hs_gw_routes_free(rs);
	return rc;
}

void hs_gw_routes_free(hs_gw_routes *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; r->v != NULL && i < r->n; i++)
		route_dispose(&r->v[i]);
	for (size_t i = 0; i < r->n_unmapped; i++)
		free(r->unmapped[i]);
	free(r->v);
	free(r);
}

size_t hs_gw_routes_count(const hs_gw_routes *r) { return r->n; }

const hs_gw_route *hs_gw_routes_at(const hs_gw_routes *r, size_t i) { return i < r->n ? &r->v[i] : NULL; }

const char *hs_gw_routes_unmapped(const hs_gw_routes *r, size_t i)
{
	return i < r->n_unmapped ? r->unmapped[i] : NULL;
}

/* Whether r's segments match the request's (values recorded in m). */
static bool match_segs(const hs_gw_route *r, char *const *seg, size_t n, const char *verb,
		       hs_gw_match *m)
{
	if (r->n_segs != n || (r->verb == NULL) != (verb == NULL) ||
	    (verb != NULL && strcmp(r->verb, verb) != 0))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (r->segs[i].literal != NULL) {
			if (strcmp(r->segs[i].literal, seg[i]) != 0)
				return false;
		} else {
			if (seg[i][0] == '\0')
				return false;
			m->values[r->segs[i].var] = seg[i];
		}
	}
	return true;
}

/* Percent-decodes one path segment in place; false on a malformed escape
 * or an encoded NUL. */
static bool pct_decode(char *s)
{
	char *o = s;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p != '%') {
			*o++ = *p;
			continue;
		}
		int hi = hs_gw_hexval(p[1]), lo = hi < 0 ? -1 : hs_gw_hexval(p[2]);
		if (lo < 0 || (hi == 0 && lo == 0))
			return false;
		*o++ = (char)(hi * 16 + lo);
		p += 2;
	}
	*o = '\0';
	return true;
}

static const char *const METHODS[] = { "GET", "POST", "PUT", "PATCH", "DELETE" };

static void allow_build(hs_gw_match *m, unsigned mask)
{
	size_t n = 0;
	m->allow[0] = '\0';
	for (size_t i = 0; i < sizeof(METHODS) / sizeof(METHODS[0]); i++)
		if (mask & (1u << i))
			n += (size_t)snprintf(m->allow + n, sizeof(m->allow) - n, "%s, ", METHODS[i]);
	snprintf(m->allow + n, sizeof(m->allow) - n, "OPTIONS");
}

hs_gw_match_result hs_gw_routes_match(const hs_gw_routes *r, const char *method, const char *path,
				      hs_gw_match *m)
{
	memset(m->values, 0, sizeof(m->values));
	m->route = NULL;
	m->allow[0] = '\0';
	size_t len = strlen(path);
	if (len == 0 || path[0] != '/' || len > HS_GW_PATH_MAX)
		return HS_GW_MATCH_NONE;
	memcpy(m->buf, path + 1, len); /* with the NUL */
	char *seg[MAX_SEGS];
	size_t n = 0;
	for (char *p = m->buf;;) {
		if (n == MAX_SEGS)
			return HS_GW_MATCH_NONE; /* longer than any route */
		seg[n++] = p;
		char *slash = strchr(p, '/');
		if (slash == NULL)
			break;
		*slash = '\0';
		p = slash + 1;
	}
	char *verb = strrchr(seg[n - 1], ':');
	if (verb != NULL)
		*verb++ = '\0';
	for (size_t i = 0; i < n; i++)
		if (!pct_decode(seg[i]))
			return HS_GW_MATCH_BAD;
	if (verb != NULL && !pct_decode(verb))
		return HS_GW_MATCH_BAD;
	const char *want = !strcmp(method, "HEAD") ? "GET" : method;
	unsigned mask = 0;
	for (size_t i = 0; i < r->n; i++) {
		const hs_gw_route *rt = &r->v[i];
		if (!match_segs(rt, seg, n, verb, m))
			continue;
		if (!strcmp(rt->http_method, want)) {
			m->route = rt;
			return HS_GW_MATCH_OK;
		}
		for (size_t k = 0; k < sizeof(METHODS) / sizeof(METHODS[0]); k++)
			if (!strcmp(METHODS[k], rt->http_method))
				mask |= 1u << k;
	}
	if (mask == 0)
		return HS_GW_MATCH_NONE;
	allow_build(m, mask);
	return HS_GW_MATCH_METHOD;
}
