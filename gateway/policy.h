/* HTTP policy of the gateway, apart from civetweb so it is unit-tested:
 * CORS origin matching, the CSRF and content-type rules, the refresh cookie,
 * helmet's security headers and the client address behind trusted proxies. */
#ifndef HS_GATEWAY_POLICY_H
#define HS_GATEWAY_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define HS_GW_MAX_ORIGINS 32
#define HS_GW_ORIGIN_MAX 256
#define HS_GW_MAX_PROXIES 16

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
	bool has_body;               /* Content-Length > 0 or chunked */
} hs_gw_post_req;

typedef enum hs_gw_verdict {
	HS_GW_ALLOW = 0,
	HS_GW_DENY_CROSS_SITE,  /* 403: Sec-Fetch-Site: cross-site */
	HS_GW_DENY_ORIGIN,      /* 403: Origin not allowed (incl. "null") */
	HS_GW_DENY_NO_HEADER,   /* 403: strict mode and no X-Requested-With */
	HS_GW_DENY_MEDIA_TYPE,  /* 415: form type, or a body that is not JSON */
} hs_gw_verdict;

hs_gw_verdict hs_gw_csrf_check(const hs_gw_post_req *r, const hs_gw_origins *o, bool strict);

/* Set-Cookie value for name: value NULL = clear (empty value, Max-Age=0,
 * Expires in 1970). Always HttpOnly; SameSite=Strict; Path=path; Secure if
 * secure. HS_INVALID when value/path are not safe in a header or out is too
 * small. now = time(NULL) for Expires. */
int hs_gw_cookie_build(char *out, size_t outsz, const char *name, const char *value,
		       long max_age, const char *path, bool secure, long long now);

/* helmet 7's default headers, NULL-terminated {name, value} pairs. */
extern const char *const hs_gw_security_headers[][2];

/* The client address: the socket peer, unless the peer is a trusted proxy;
 * then the right-most X-Forwarded-For entry that is not itself a trusted
 * proxy (entries must look like IPs, else the peer is used). out >= 48. */
void hs_gw_client_ip(char *out, size_t outsz, const char *peer, const char *xff,
		     const char *const *trusted, size_t n_trusted);

/* Whether a cookie path is safe: starts with '/', [A-Za-z0-9/._~-] only. */
bool hs_gw_cookie_path_ok(const char *path);

#endif
