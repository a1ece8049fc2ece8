/* The one email rule of Harness: which strings are email addresses, and the
 * normal form under which an account is stored, looked up and compared.
 *
 * The normal form is express-validator's normalizeEmail() with its default
 * options (validator.js 13.x), which the seed's BFF applied before talking to
 * the user service, so an address means the same account over REST and gRPC:
 *
 *   - surrounding spaces and tabs are dropped (the seed's isEmail refused
 *     them; we accept and drop them);
 *   - the address splits at its LAST '@'; the domain is lower-cased;
 *   - gmail.com / googlemail.com: "+tag" removed, single dots removed
 *     (runs of two or more dots are kept, as validator.js does), domain
 *     becomes gmail.com;
 *   - icloud.com, me.com and the Outlook.com family (hotmail.*, live.*,
 *     outlook.*, msn.com, passport.com; validator.js's list): "+tag" removed;
 *   - Yahoo's domains (yahoo.*, ymail.com, rocketmail.com): the last "-tag"
 *     removed;
 *   - Yandex's domains (yandex.*, ya.ru): the domain becomes yandex.ru;
 *   - the local part is lower-cased everywhere (ASCII letters only: bytes
 *     >= 0x80 are kept as they are, where validator.js would case-fold);
 *   - where a provider rule would leave the local part empty ("+x@gmail.com",
 *     for which validator.js returns false), only the lower-casing applies.
 *
 * Normalising a normal form gives it back, except where validator.js's
 * Yahoo rule meets several dashes ("a-b-c" -> "a-b" -> "a"): an address is
 * normalised once, as typed, never its stored form again.
 *
 * Pure functions, no allocation, thread-safe. */
#ifndef HS_COMMON_EMAIL_H
#define HS_COMMON_EMAIL_H

#include <stdbool.h>
#include <stddef.h>

#define HS_EMAIL_MAX 254 /* RFC 5321 path limit; longer is never an address */

/* Writes the normal form of in to out (outsz >= HS_EMAIL_MAX + 1). Needs
 * only the minimal shape every stored address has: after trimming, 3..254
 * bytes, no control characters or spaces, a non-empty local part and a
 * non-empty domain around the last '@'. false (out unspecified) otherwise. */
bool hs_email_normalize(const char *in, char *out, size_t outsz);

/* Whether in (surrounding whitespace ignored) is an email address as the
 * REST contract's isEmail check means it: a dot-atom local part of at most
 * 64 bytes, '@', a DNS name with at least two labels whose TLD is
 * alphabetic (>= 2 letters) or an "xn--" label; no quoted local parts, no IP
 * literals, ASCII only. Stricter than what hs_email_normalize accepts (old
 * accounts such as "admin@localhost" must still log in over gRPC). */
bool hs_email_valid(const char *in);

/* The rule before normal forms existed (trimmed, ASCII-lower-cased), kept
 * for one purpose: finding an account whose stored address the migration
 * could not re-normalise because another account already held that normal
 * form. Same contract as hs_email_normalize. */
bool hs_email_legacy_key(const char *in, char *out, size_t outsz);

#endif
