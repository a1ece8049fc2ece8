/* Input validation for the gateway: passwords, header values and the
 * refresh-token cookie, and the hex digits of percent-escapes. Emails are only checked for their shape here
 * (common/email.h's hs_email_valid, the REST contract's isEmail): the
 * gateway passes on what the user typed and harnessd normalises it, so
 * there is one email rule, in one place. Pure functions; no civetweb, no
 * gRPC. */
#ifndef HS_GATEWAY_VALIDATE_H
#define HS_GATEWAY_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#define HS_GW_EMAIL_MAX 254
#define HS_GW_PASSWORD_MIN 6
#define HS_GW_PASSWORD_MAX 1024
#define HS_GW_TOKEN_MAX 4096

/* >= 6 and <= 1024 characters (UTF-8 code points; invalid UTF-8 fails). */
bool hs_gw_password_ok(const char *pw);

/* A header value we may echo or forward: no control chars except HTAB,
 * no DEL. NULL is not ok. */
bool hs_gw_header_value_ok(const char *v);

/* The value (0-15) of one hex digit, either case; -1 for any other c.
 * The one digit rule of the gateway's percent-decoding (cookies, path
 * segments, query strings). */
int hs_gw_hexval(int c);

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
