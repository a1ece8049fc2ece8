/* The console and /openapi.json, served from the binary (assets.h): "one
 * binary", nothing to install beside it, and no path from a request ever
 * reaches the filesystem. Each file has a strong ETag (a hash of its bytes,
 * computed once); browsers revalidate (Cache-Control: no-cache) and get 304
 * while the binary is the same. The console's pages get a strict CSP of
 * their own (policy.h). */
#include "assets.h"
#include "server_internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "policy.h"

#define MAX_ASSETS 32

static char g_etags[MAX_ASSETS][24];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void etags_init(void)
{
	for (size_t i = 0; i < MAX_ASSETS && hs_gw_asset_table[i].url != NULL; i++) {
		uint64_t h = 1469598103934665603ULL; /* FNV-1a */
		for (size_t k = 0; k < hs_gw_asset_table[i].len; k++) {
			h ^= hs_gw_asset_table[i].data[k];
			h *= 1099511628211ULL;
		}
		snprintf(g_etags[i], sizeof(g_etags[i]), "\"%016llx\"", (unsigned long long)h);
	}
}

static const char *content_type(const char *url)
{
	const char *dot = strrchr(url, '.');
	if (dot == NULL || !strcmp(dot, ".html"))
		return "text/html; charset=utf-8";
	if (!strcmp(dot, ".js"))
		return "text/javascript; charset=utf-8";
	if (!strcmp(dot, ".css"))
		return "text/css; charset=utf-8";
	if (!strcmp(dot, ".json"))
		return "application/json; charset=utf-8";
	if (!strcmp(dot, ".svg"))
		return "image/svg+xml";
	return "application/octet-stream";
}

bool hs_gw_assets_route(const hs_gw_req *r, hs_gw_resp *out)
{
	const char *path = r->path[0] != '\0' ? r->path : "/";
	bool is_openapi = !strcmp(path, "/openapi.json");
	if (!is_openapi && !r->srv->cfg->console)
		return false;
	size_t i = 0;
	for (; i < MAX_ASSETS && hs_gw_asset_table[i].url != NULL; i++)
		if (!strcmp(hs_gw_asset_table[i].url, path))
			break;
	if (i >= MAX_ASSETS || hs_gw_asset_table[i].url == NULL)
		return false;
	if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
		out->close = r->ri->content_length != 0;
		out->allow = "GET, HEAD, OPTIONS";
		hs_gw__set_error(out, 405, "METHOD_NOT_ALLOWED", "Method not allowed");
		return true;
	}
	pthread_once(&g_once, etags_init);
	const char *type = content_type(path);
	out->etag = g_etags[i];
	out->cache = "no-cache";
	if (!strncmp(type, "text/html", 9))
		out->csp = r->https ? hs_gw_console_csp_tls : hs_gw_console_csp;
	const char *inm = hs_gw__header(r, "If-None-Match");
	if (inm != NULL && strstr(inm, g_etags[i]) != NULL) {
		out->status = 304;
		return true;
	}
	out->status = 200;
	out->static_body = hs_gw_asset_table[i].data;
	out->body_len = hs_gw_asset_table[i].len;
	out->content_type = type;
	return true;
}
