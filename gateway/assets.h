/* Files embedded in harness-gateway at build time (cmake/embed_assets.cmake):
 * the web console (gateway/console/) and /openapi.json (hs-openapi-gen). */
#ifndef HS_GATEWAY_ASSETS_H
#define HS_GATEWAY_ASSETS_H

#include <stddef.h>

typedef struct hs_gw_asset {
	const char *url;           /* "/", "/console/app.js", "/openapi.json" */
	const unsigned char *data; /* len bytes (and a NUL after them) */
	size_t len;
} hs_gw_asset;

/* Terminated by an entry with url NULL. */
extern const hs_gw_asset hs_gw_asset_table[];

#endif
