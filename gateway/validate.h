/* Input validation for the gateway: emails (validator.js isEmail-like, plus
 * express-validator's normalizeEmail), passwords, header values and the
 * refresh-token cookie. Pure functions; no civetweb, no gRPC. */
#ifndef HS_GATEWAY_VALIDATE_H
#define HS_GATEWAY_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#define HS_GW_EMAIL_MAX 254
#define HS_GW_PASSWORD_MIN 6
#define HS_GW_PASSWORD_MAX 1024
#define HS_GW_TOKEN_MAX 4096

/* Validates in (surrounding whitespace ignored) as an email address and
 * writes its normalised form to out (size outsz >= HS_GW_EMAIL_MAX + 1):
 * lower-cased; gmail.com/googlemail.com: dots and "+tag" removed from the
 * local part and the domain becomes gmail.com; outlook/hotmail/live/icloud/
 * me.com: "+tag" removed; yahoo/ymail/rocketmail: "-tag" removed. Accepts
 * dot-atom local parts (<= 64 bytes) @ a DNS name with >= 2 labels and an
 * alphabetic (or xn--) TLD of >= 2 chars; no quoted locals, no IP literals.
 * false = not an email (out unspecified). */
bool hs_gw_email_normalize(const char *in, char *out, size_t outsz);

/* >= 6 and <= 1024 characters (UTF-8 code points; invalid UTF-8 fails). */
bool hs_gw_password_ok(const char *pw);

/* A header value we may echo or forward: no control chars except HTAB,
 * no DEL. NULL is not ok. */
bool hs_gw_header_value_ok(const char *v);

/* A refresh token: 1..4096 chars of [A-Za-z0-9._~+/=-]. */
bool hs_gw_token_ok(const char *v, size_t len);

enum { HS_GW_COOKIE_ABSENT = 0, HS_GW_COOKIE_OK = 1, HS_GW_COOKIE_INVALID = -1 };

/* Finds cookie name in a Cookie header (first occurrence wins, like the
 * `cookie` npm package): trims, strips one pair of double quotes,
 * percent-decodes. HS_GW_COOKIE_OK with the value in out (outsz >=
 * HS_GW_TOKEN_MAX + 1); HS_GW_COOKIE_ABSENT when missing or empty (the seed's
 * `!refreshToken`); HS_GW_COOKIE_INVALID when the value is not a token (bad
 * chars, control chars, too long). */
int hs_gw_cookie_find(const char *header, const char *name, char *out, size_t outsz);

#endif
