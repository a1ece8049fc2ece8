/* JSON bodies of the gateway (jansson): the seed's response shapes, the
 * login request, and gRPC status -> {"code","message"}. Pure functions; every
 * returned string is malloc'd (free()) and NULL only when out of memory. */
#ifndef HS_GATEWAY_JSON_H
#define HS_GATEWAY_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "client.h"
#include "harness/v1/auth.pb-c.h"

/* {"success":true,"data":{"user":{id,email,name,role,createdAt},
 *  "accessToken","expiresIn"}}: never the refresh token. */
char *hs_gw_json_auth(const Harness__V1__AuthResponse *r);

/* {"code":code,"message":message} */
char *hs_gw_json_error(const char *code, const char *message);

/* 400 body of a failed login validation, express-validator style:
 * {"code":"VALIDATION_ERROR","message":"Invalid input","details":[{"type":
 * "field","msg":"Invalid value","path":"email","location":"body"},...]}
 * (the submitted value is not echoed). */
char *hs_gw_json_validation(bool email_bad, bool password_bad);

/* {"success":true} */
char *hs_gw_json_success(void);

/* {"status":"ok","timestamp":"2024-01-15T10:30:00.000Z"}; ok false:
 * {"status":"unavailable",...} (harnessd unreachable or not serving). */
char *hs_gw_json_health(bool ok, long long now_ms);

/* ISO-8601 UTC with milliseconds, as JavaScript's toISOString(). */
void hs_gw_iso8601(char out[32], long long secs, int nanos);

/* Parses a login body. HS_OK when it is a JSON object: *email / *password are
 * malloc'd copies of those members when they are strings, else NULL (free
 * the password with hs_gw_json_secret_free). HS_INVALID when not an object. */
int hs_gw_json_login_parse(const char *body, size_t len, char **email, char **password);

/* Wipes and frees a secret string. NULL is a no-op. */
void hs_gw_json_secret_free(char *s);

/* A failed gRPC call as the REST contract wants it: HTTP status (DESIGN.md's
 * table), an error code (the server's hs-error-code when sent, else a name
 * such as UNAUTHORIZED, SERVICE_UNAVAILABLE, RATE_LIMITED, GATEWAY_TIMEOUT,
 * INTERNAL_ERROR) and a message (the status details; for 5xx in production
 * "Internal server error"). Returns the body; *http set. */
char *hs_gw_json_grpc_error(const hs_client_status *st, bool production, int *http);

#endif
