/* How harness-gateway proves to harnessd that an x-forwarded-for value is
 * its own, so harnessd throttles logins by the browser's address without
 * believing that header from anyone else on the network (or on loopback: a
 * sandbox with host networking is on loopback too).
 *
 * Both processes read one secret, the gateway key (harnessd's
 * --gateway-secret-file, default <data-dir>/gateway.key, created 0640 when
 * missing; harness-gateway's --gateway-secret-file). With each call the
 * gateway sends, beside x-forwarded-for, the metadata
 *
 *   x-harness-gateway-auth: v1:<unix seconds>:<hex HMAC-SHA256(key, "v1:<unix seconds>:<xff>")>
 *
 * harnessd accepts it within HS_GATEWAY_AUTH_SKEW_S of its clock. The MAC
 * binds the value, so a captured header only ever vouches for the address
 * it was made for. Thread-safe, no allocation. */
#ifndef HS_COMMON_GATEWAY_AUTH_H
#define HS_COMMON_GATEWAY_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define HS_GATEWAY_AUTH_KEY "x-harness-gateway-auth"
#define HS_GATEWAY_AUTH_SKEW_S 60
#define HS_GATEWAY_AUTH_MAX 96 /* "v1:" + 20 digits + ':' + 64 hex + NUL, rounded */
#define HS_GATEWAY_KEY_FILE "gateway.key"

/* The header value for xff at time now (Unix s) into out (cap >=
 * HS_GATEWAY_AUTH_MAX). false if an argument is unusable. */
bool hs_gateway_auth_sign(const void *key, size_t key_len, const char *xff, long long now,
			  char *out, size_t cap);

/* Whether value is a valid header for xff at time now (constant time in
 * the MAC compare). */
bool hs_gateway_auth_verify(const void *key, size_t key_len, const char *xff, const char *value,
			    long long now);

#endif
