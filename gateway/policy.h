/* HTTP policy of the gateway, apart from civetweb so it is unit-tested:
 * CORS origin matching, the CSRF and content-type rules, the refresh cookie,
 * helmet's security headers, and request framing (what a request's raw
 * headers must not say). The client address behind trusted proxies is
 * common/netaddr.h's rule, shared with harnessd. */
#ifndef HS_GATEWAY_POLICY_H
#define HS_GATEWAY_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define HS_GW_MAX_ORIGINS 32
#define HS_GW_ORIGIN_MAX 256

/* A list of exact origins ("https://app.example.com", "http://localhost:3000"). */
typedef struct hs_gw_origins {
	size_t n;
	char v[HS_GW_MAX_ORIGINS][HS_GW_ORIGIN_MAX];
} hs_gw_origins;

/* Parses a comma list; each entry scheme://host[:port] with no path, no
 * wildcard (credentials forbid "*"). HS_INVALID naming the bad entry. */
int hs_gw_origins_parse(hs_gw_origins *out, const char *list, hs_error *err);

/* Exact, ASCII case-insensitive match. NULL origin: false. */
bool hs_gw_origin_allowed(const hs_gw_origins *o, const char *origin);

typedef enum hs_gw_ctype {
	HS_GW_CT_NONE = 0, /* no Content-Type */
	HS_GW_CT_JSON,     /* application/json (any parameters) */
	HS_GW_CT_FORM,     /* urlencoded, multipart/form-data, text/plain: CSRF-able */
	HS_GW_CT_OTHER,
} hs_gw_ctype;

hs_gw_ctype hs_gw_content_type(const char *ct);

/* What a state-changing (POST) request carries, for hs_gw_csrf_check. */
typedef struct hs_gw_post_req {
	const char *origin;          /* Origin header or NULL */
	const char *sec_fetch_site;  /* Sec-Fetch-Site or NULL */
	const char *content_type;    /* Content-Type or NULL */
	const char *requested_with;  /* X-Requested-With or NULL */
	const char *self_origin;     /* the gateway's own origin as this request
				      * addressed it (hs_gw_self_origin), or NULL */
	bool has_body;               /* Content-Length > 0 or chunked */
} hs_gw_post_req;

typedef enum hs_gw_verdict {
	HS_GW_ALLOW = 0,
	HS_GW_DENY_CROSS_SITE,  /* 403: Sec-Fetch-Site: cross-site */
	HS_GW_DENY_ORIGIN,      /* 403: Origin not allowed (incl. "null") */
	HS_GW_DENY_NO_HEADER,   /* 403: strict mode and no X-Requested-With */
	HS_GW_DENY_MEDIA_TYPE,  /* 415: form type, or a body that is not JSON */
} hs_gw_verdict;

/* An Origin is allowed when it is in o or equals r->self_origin (the
 * console, served by the gateway itself, is same-origin). */
hs_gw_verdict hs_gw_csrf_check(const hs_gw_post_req *r, const hs_gw_origins *o, bool strict);

/* The gateway's own origin for a request: "<scheme>://<host>" from its Host
 * header (https when the client reached us over TLS: a trusted proxy's
 * X-Forwarded-Proto, or production). A browser always sends the Host it
 * addressed, so only a page of this very origin matches. False (out
 * unset) when host is absent or not a plain host[:port]. */
bool hs_gw_self_origin(char *out, size_t n, const char *host, bool https);

/* Content-Security-Policy of the console's pages: scripts, styles and
 * connections from this origin only, no inline code, no framing.
 * upgrade-insecure-requests only when served over TLS (on plain HTTP a
 * browser would upgrade the console's own requests and fail). */
extern const char hs_gw_console_csp[];
extern const char hs_gw_console_csp_tls[];

/* Set-Cookie value for name: value NULL = clear (empty value, Max-Age=0,
 * Expires in 1970). Always HttpOnly; SameSite=Strict; Path=path; Secure if
 * secure. HS_INVALID when value/path are not safe in a header or out is too
 * small. now = time(NULL) for Expires. */
int hs_gw_cookie_build(char *out, size_t outsz, const char *name, const char *value,
		       long max_age, const char *path, bool secure, long long now);

/* helmet 7's default headers, NULL-terminated {name, value} pairs. */
extern const char *const hs_gw_security_headers[][2];

/* Request framing (RFC 9112 6.3, request smuggling): given a request's
 * header lines, whether its body length is unambiguous. Refused: both
 * Transfer-Encoding and Content-Length; Content-Length more than once (even
 * with equal values) or not a plain decimal number; Transfer-Encoding more
 * than once or anything but "chunked"; whitespace in a header name. Returns
 * NULL when fine, else a short reason for the log. */
typedef struct hs_gw_header {
	const char *name;
	const char *value;
} hs_gw_header;

const char *hs_gw_framing_problem(const hs_gw_header *h, size_t n);

/* Whether a cookie path is safe: starts with '/', [A-Za-z0-9/._~-] only. */
bool hs_gw_cookie_path_ok(const char *path);

#endif
