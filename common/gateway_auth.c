/* The gateway's signature on x-forwarded-for (gateway_auth.h), HMAC-SHA256
 * over libsodium. */
#include "gateway_auth.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "netaddr.h"

static bool mac_hex(const void *key, size_t key_len, const char *xff, long long ts,
		    char hex[crypto_auth_hmacsha256_BYTES * 2 + 1])
{
	crypto_auth_hmacsha256_state st;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	char prefix[32];
	int n = snprintf(prefix, sizeof(prefix), "v1:%lld:", ts);
	if (n < 0 || (size_t)n >= sizeof(prefix) || sodium_init() < 0)
		return false;
	crypto_auth_hmacsha256_init(&st, key, key_len);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)prefix, (size_t)n);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)xff, strlen(xff));
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(hex, crypto_auth_hmacsha256_BYTES * 2 + 1, mac, sizeof(mac));
	sodium_memzero(&st, sizeof(st));
	return true;
}

bool hs_gateway_auth_sign(const void *key, size_t key_len, const char *xff, long long now,
			  char *out, size_t cap)
{
	char hex[crypto_auth_hmacsha256_BYTES * 2 + 1];
	if (key == NULL || key_len == 0 || xff == NULL || strlen(xff) > HS_XFF_MAX || out == NULL ||
	    cap < HS_GATEWAY_AUTH_MAX || now < 0 || !mac_hex(key, key_len, xff, now, hex))
		return false;
	int n = snprintf(out, cap, "v1:%lld:%s", now, hex);
	return n > 0 && (size_t)n < cap;
}

bool hs_gateway_auth_verify(const void *key, size_t key_len, const char *xff, const char *value,
			    long long now)
{
	char hex[crypto_auth_hmacsha256_BYTES * 2 + 1];
	long long ts = 0;
	if (key == NULL || key_len == 0 || xff == NULL || value == NULL ||
	    strlen(xff) > HS_XFF_MAX || strncmp(value, "v1:", 3) != 0)
		return false;
	const char *p = value + 3;
	int digits = 0;
	for (; *p >= '0' && *p <= '9' && digits < 18; p++, digits++)
		ts = ts * 10 + (*p - '0');
	if (digits == 0 || *p != ':' || strlen(p + 1) != sizeof(hex) - 1)
		return false;
	if (ts < now - HS_GATEWAY_AUTH_SKEW_S || ts > now + HS_GATEWAY_AUTH_SKEW_S)
		return false;
	if (!mac_hex(key, key_len, xff, ts, hex))
		return false;
	return sodium_memcmp(hex, p + 1, sizeof(hex) - 1) == 0;
}
