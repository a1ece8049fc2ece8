/* JSON bodies of the gateway, built with jansson (the login answer, on
 * every login, written directly: jb_str). */
#include "json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "utf8.h"

static char *dump(json_t *v)
{
	if (v == NULL)
		return NULL;
	char *s = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	return s;
}

/* json string of s; invalid UTF-8 becomes "" rather than failing. */
static json_t *str(const char *s)
{
	json_t *v = json_string(s != NULL ? s : "");
	return v != NULL ? v : json_string("");
}

void hs_gw_iso8601(char out[32], long long secs, int nanos)
{
	time_t t = (time_t)secs;
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL) {
		snprintf(out, 32, "1970-01-01T00:00:00.000Z");
		return;
	}
	int ms = nanos > 0 && nanos < 1000000000 ? nanos / 1000000 : 0;
	char buf[96];
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
	snprintf(out, 32, "%.31s", buf);
}

/* A growing buffer for the login answer, written directly (it is built on
 * every login: jansson's object tree, one allocation per value, and its
 * printf-based dump cost more than the rest of the gateway's own work). */
typedef struct jbuf {
	char *p;
	size_t len, cap;
	bool failed;
} jbuf;

static void jb_put(jbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 512;
		while (b->len + n + 1 > cap)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void jb_lit(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }

/* s as a JSON string, byte for byte as json_dumps(json_string(s),
 * JSON_COMPACT) writes it: '"', '\\' and control characters escaped,
 * everything else (UTF-8 included) as it is; NULL or invalid UTF-8 is ""
 * (as str() makes it). */
static void jb_str(jbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	if (s == NULL || !hs_utf8_valid(s, NULL))
		s = "";
	jb_put(b, "\"", 1);
	const char *run = s;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		jb_put(b, run, (size_t)(s - run));
		run = s + 1;
		char esc[7] = { '\\', 0, 0, 0, 0, 0, 0 };
		size_t n = 2;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			n = 6;
		}
		jb_put(b, esc, n);
	}
	jb_put(b, run, (size_t)(s - run));
	jb_put(b, "\"", 1);
}

char *hs_gw_json_auth(const Harness__V1__AuthResponse *r)
{
	jbuf b = { 0 };
	const Harness__V1__User *u = r->user;
	char num[48];
	jb_lit(&b, "{\"success\":true,\"data\":{\"user\":{\"id\":");
	jb_str(&b, u != NULL ? u->id : "");
	jb_lit(&b, ",\"email\":");
	jb_str(&b, u != NULL ? u->email : "");
	jb_lit(&b, ",\"name\":");
	jb_str(&b, u != NULL ? u->name : "");
	jb_lit(&b, ",\"role\":");
	jb_str(&b, u != NULL ? u->role : "");
	jb_lit(&b, ",\"createdAt\":");
	if (u != NULL && u->created_at != NULL) {
		char ts[32];
		hs_gw_iso8601(ts, (long long)u->created_at->seconds, u->created_at->nanos);
		jb_str(&b, ts);
	} else {
		jb_lit(&b, "null");
	}
	jb_lit(&b, "},\"accessToken\":");
	jb_str(&b, r->access_token);
	snprintf(num, sizeof(num), ",\"expiresIn\":%d}}", (int)r->expires_in);
	jb_lit(&b, num);
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

char *hs_gw_json_error(const char *code, const char *message)
{
	json_t *root = json_object();
	json_object_set_new(root, "code", str(code));
	json_object_set_new(root, "message", str(message));
	return dump(root);
}

static json_t *field_error(const char *path)
{
	json_t *e = json_object();
	json_object_set_new(e, "type", json_string("field"));
	json_object_set_new(e, "msg", json_string("Invalid value"));
	json_object_set_new(e, "path", json_string(path));
	json_object_set_new(e, "location", json_string("body"));
	return e;
}

char *hs_gw_json_validation(bool email_bad, bool password_bad)
{
	json_t *details = json_array();
	if (email_bad)
		json_array_append_new(details, field_error("email"));
	if (password_bad)
		json_array_append_new(details, field_error("password"));
	json_t *root = json_object();
	json_object_set_new(root, "code", json_string("VALIDATION_ERROR"));
	json_object_set_new(root, "message", json_string("Invalid input"));
	json_object_set_new(root, "details", details);
	return dump(root);
}

char *hs_gw_json_success(void)
{
	json_t *root = json_object();
	json_object_set_new(root, "success", json_true());
	return dump(root);
}

char *hs_gw_json_health(bool ok, long long now_ms)
{
	char ts[32];
	hs_gw_iso8601(ts, now_ms / 1000, (int)(now_ms % 1000) * 1000000);
	json_t *root = json_object();
	json_object_set_new(root, "status", json_string(ok ? "ok" : "unavailable"));
	json_object_set_new(root, "timestamp", json_string(ts));
	return dump(root);
}

int hs_gw_json_login_parse(const char *body, size_t len, char **email, char **password)
{
	json_error_t jerr;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		json_decref(root);
		return HS_INVALID;
	}
	json_t *e = json_object_get(root, "email"), *p = json_object_get(root, "password");
	char *es = json_is_string(e) ? strdup(json_string_value(e)) : NULL;
	char *ps = json_is_string(p) ? strdup(json_string_value(p)) : NULL;
	/* jansson's copy of the password is freed with the tree: wipe it first
	 * (its buffer is jansson's own heap memory, so writing it is fine). */
	if (json_is_string(p))
		explicit_bzero((char *)json_string_value(p), json_string_length(p));
	json_decref(root);
	*email = es;
	*password = ps;
	return HS_OK;
}

void hs_gw_json_secret_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

char *hs_gw_json_grpc_error(const hs_client_status *st, bool production, int *http)
{
	int code = st->code;
	int status = hs_client_grpc_to_http(code);
	const char *name, *fallback;
	switch (code) {
	case 3: case 11: name = "VALIDATION_ERROR"; fallback = "Invalid input"; break;
	case 9: name = "FAILED_PRECONDITION"; fallback = "Failed precondition"; break;
	case 16: name = "UNAUTHORIZED"; fallback = "Unauthorized"; break;
	case 7: name = "FORBIDDEN"; fallback = "Forbidden"; break;
	case 5: name = "NOT_FOUND"; fallback = "Not found"; break;
	case 6: case 10: name = "CONFLICT"; fallback = "Conflict"; break;
	case 8: name = "RATE_LIMITED"; fallback = "Too many requests"; break;
	case 1: name = "CANCELLED"; fallback = "Request cancelled"; break;
	case 12: name = "NOT_IMPLEMENTED"; fallback = "Not implemented"; break;
	case 14: name = "SERVICE_UNAVAILABLE"; fallback = "Service unavailable"; break;
	case 4: name = "GATEWAY_TIMEOUT"; fallback = "Upstream timeout"; break;
	default: name = "INTERNAL_ERROR"; fallback = "Internal server error"; break;
	}
	if (st->error_code[0] != '\0')
		name = st->error_code;
	const char *msg = st->details[0] != '\0' ? st->details : fallback;
	if (production && status >= 500)
		msg = "Internal server error";
	*http = status;
	return hs_gw_json_error(name, msg);
}
