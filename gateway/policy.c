/* HTTP policy: CORS origins, CSRF/content-type rules, the refresh cookie,
 * security headers, client address. */
#include "policy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "validate.h"

int hs_gw_origins_parse(hs_gw_origins *out, const char *list, hs_error *err)
{
	hs_gw_origins o;
	o.n = 0;
	const char *p = list != NULL ? list : "";
	while (*p) {
		const char *end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		const char *s = p, *e = end;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		size_t n = (size_t)(e - s);
		if (n > 0) {
			if (o.n == HS_GW_MAX_ORIGINS)
				return hs_error_set(err, HS_INVALID, "allowed origins: more than %d",
						    HS_GW_MAX_ORIGINS);
			if (n >= HS_GW_ORIGIN_MAX)
				return hs_error_set(err, HS_INVALID, "allowed origin too long");
			char v[HS_GW_ORIGIN_MAX];
			memcpy(v, s, n);
			v[n] = '\0';
			const char *host = NULL;
			if (strncasecmp(v, "http://", 7) == 0)
				host = v + 7;
			else if (strncasecmp(v, "https://", 8) == 0)
				host = v + 8;
			bool ok = host != NULL && *host != '\0';
			for (const char *c = host; ok && *c; c++)
				ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
				     (*c >= '0' && *c <= '9') || strchr(".-:[]", *c) != NULL;
			if (!ok)
				return hs_error_set(err, HS_INVALID,
						    "allowed origin \"%s\": want scheme://host[:port] "
						    "(no path, no wildcard)", v);
			memcpy(o.v[o.n++], v, n + 1);
		}
		p = *end ? end + 1 : end;
	}
	*out = o;
	return HS_OK;
}

bool hs_gw_origin_allowed(const hs_gw_origins *o, const char *origin)
{
	if (o == NULL || origin == NULL)
		return false;
	for (size_t i = 0; i < o->n; i++)
		if (strcasecmp(o->v[i], origin) == 0)
			return true;
	return false;
}

hs_gw_ctype hs_gw_content_type(const char *ct)
{
	if (ct == NULL)
		return HS_GW_CT_NONE;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (n == 0)
		return HS_GW_CT_NONE;
#define IS(lit) (n == sizeof(lit) - 1 && strncasecmp(ct, lit, n) == 0)
	if (IS("application/json"))
		return HS_GW_CT_JSON;
	if (IS("application/x-www-form-urlencoded") || IS("multipart/form-data") || IS("text/plain"))
		return HS_GW_CT_FORM;
#undef IS
	return HS_GW_CT_OTHER;
}

hs_gw_verdict hs_gw_csrf_check(const hs_gw_post_req *r, const hs_gw_origins *o, bool strict)
{
	if (r->sec_fetch_site != NULL && strcasecmp(r->sec_fetch_site, "cross-site") == 0)
		return HS_GW_DENY_CROSS_SITE;
	if (r->origin != NULL && !hs_gw_origin_allowed(o, r->origin) &&
	    !(r->self_origin != NULL && strcasecmp(r->origin, r->self_origin) == 0))
		return HS_GW_DENY_ORIGIN;
	switch (hs_gw_content_type(r->content_type)) {
	case HS_GW_CT_JSON:
		break;
	case HS_GW_CT_NONE:
		if (r->has_body)
			return HS_GW_DENY_MEDIA_TYPE;
		break;
	default:
		return HS_GW_DENY_MEDIA_TYPE;
	}
	if (strict && (r->requested_with == NULL || r->requested_with[0] == '\0'))
		return HS_GW_DENY_NO_HEADER;
	return HS_GW_ALLOW;
}

bool hs_gw_self_origin(char *out, size_t n, const char *host, bool https)
{
	if (host == NULL || host[0] == '\0' || strlen(host) > 255)
		return false;
	for (const char *c = host; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		      strchr(".-:[]", *c) != NULL))
			return false;
	int w = snprintf(out, n, "%s://%s", https ? "https" : "http", host);
	return w > 0 && (size_t)w < n;
}

#define CONSOLE_CSP "default-src 'self';base-uri 'none';connect-src 'self';font-src 'self';" \
		    "form-action 'self';frame-ancestors 'none';img-src 'self' data:;object-src 'none';" \
		    "script-src 'self';script-src-attr 'none';style-src 'self'"
const char hs_gw_console_csp[] = CONSOLE_CSP;
const char hs_gw_console_csp_tls[] = CONSOLE_CSP ";upgrade-insecure-requests";

bool hs_gw_cookie_path_ok(const char *path)
{
	if (path == NULL || path[0] != '/' || strlen(path) > 256)
		return false;
	for (const char *c = path; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		      strchr("/._~-", *c) != NULL))
			return false;
	return true;
}

int hs_gw_cookie_build(char *out, size_t outsz, const char *name, const char *value,
		       long max_age, const char *path, bool secure, long long now)
{
	if (name == NULL || !hs_gw_token_ok(name, strlen(name)) || !hs_gw_cookie_path_ok(path))
		return HS_INVALID;
	if (value != NULL && !hs_gw_token_ok(value, strlen(value)))
		return HS_INVALID;
	if (value == NULL)
		max_age = 0;
	time_t exp = value == NULL ? 0 : (time_t)(now + max_age);
	struct tm tm;
	char date[64];
	if (gmtime_r(&exp, &tm) == NULL || strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
		return HS_INVALID;
	int n = snprintf(out, outsz, "%s=%s; Max-Age=%ld; Path=%s; Expires=%s; HttpOnly;%s SameSite=Strict",
			 name, value != NULL ? value : "", max_age, path, date, secure ? " Secure;" : "");
	if (n < 0 || (size_t)n >= outsz)
		return HS_INVALID;
	return HS_OK;
}

const char *const hs_gw_security_headers[][2] = {
	{ "Content-Security-Policy",
	  "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';"
	  "frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';"
	  "script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests" },
	{ "Cross-Origin-Opener-Policy", "same-origin" },
	{ "Cross-Origin-Resource-Policy", "same-origin" },
	{ "Origin-Agent-Cluster", "?1" },
	{ "Referrer-Policy", "no-referrer" },
	{ "Strict-Transport-Security", "max-age=15552000; includeSubDomains" },
	{ "X-Content-Type-Options", "nosniff" },
	{ "X-DNS-Prefetch-Control", "off" },
	{ "X-Download-Options", "noopen" },
	{ "X-Frame-Options", "SAMEORIGIN" },
	{ "X-Permitted-Cross-Domain-Policies", "none" },
	{ "X-XSS-Protection", "0" },
	{ NULL, NULL },
};

/* A header value that is a plain decimal number (what Content-Length must
 * be; civetweb's strtoll would also take "+5", " 5" or "5abc"). */
static bool decimal(const char *v)
{
	size_t n = 0;
	for (; v[n] >= '0' && v[n] <= '9'; n++)
		;
	return n > 0 && n <= 18 && v[n] == '\0';
}

const char *hs_gw_framing_problem(const hs_gw_header *h, size_t n)
{
	size_t cl = 0, te = 0;
	for (size_t i = 0; i < n; i++) {
		if (h[i].name == NULL)
			continue;
		if (strpbrk(h[i].name, " \t") != NULL)
			return "whitespace in a header name";
		const char *v = h[i].value != NULL ? h[i].value : "";
		if (strcasecmp(h[i].name, "Content-Length") == 0) {
			if (++cl > 1)
				return "Content-Length repeated";
			if (!decimal(v))
				return "Content-Length not a number";
		} else if (strcasecmp(h[i].name, "Transfer-Encoding") == 0) {
			if (++te > 1)
				return "Transfer-Encoding repeated";
			if (strcasecmp(v, "chunked") != 0)
				return "Transfer-Encoding other than chunked";
		}
	}
	if (cl > 0 && te > 0)
		return "both Content-Length and Transfer-Encoding";
	return NULL;
}
