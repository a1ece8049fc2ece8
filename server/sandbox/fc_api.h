/* Firecracker's REST API over its Unix socket (libcurl, one easy handle per
 * request, so any thread may call it). Internal to server/sandbox. */
#ifndef HS_SANDBOX_FC_API_H
#define HS_SANDBOX_FC_API_H

#include "error.h"

/* Unix socket paths (sun_path) hold at most 107 bytes plus the NUL. */
#define HS_FC_SOCK_MAX 107

/* One request: method "GET"/"PUT"/"PATCH", path "/machine-config", body a
 * JSON text or NULL. Any 2xx is success; *resp (NULL allowed) gets the
 * malloc'd body. Errors: HS_UNAVAILABLE if the socket is dead (connect or
 * transfer failed), HS_TIMEOUT after timeout_ms, HS_INVALID for a 4xx and
 * HS_INTERNAL for a 5xx, with Firecracker's fault_message in err. */
int hs_fc_api_call(const char *sock, const char *method, const char *path, const char *body,
		   unsigned timeout_ms, char **resp, hs_error *err);

#endif
