/* UTF-8 validity, the one rule (RFC 3629, as jansson and protobuf check it):
 * no overlong forms, no surrogates (U+D800..U+DFFF), nothing past U+10FFFF.
 * Used wherever text must be valid before it becomes JSON or a label, so
 * that "invalid text" is never confused with "out of memory" (json_string
 * answers NULL for both). */
#ifndef HS_COMMON_UTF8_H
#define HS_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s (NUL-terminated) is valid UTF-8; *chars (if not NULL) gets
 * its number of code points. NULL s is not valid. */
bool hs_utf8_valid(const char *s, size_t *chars);

/* Makes s (NUL-terminated) valid UTF-8 in place: every byte that does not
 * start a valid sequence becomes '?' (a multi-byte character cut by a
 * "%.64s" or a full buffer, bytes from the outside). Returns how many
 * bytes changed; NULL is a no-op. */
size_t hs_utf8_repair(char *s);

#endif
