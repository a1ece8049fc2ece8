#include "utf8.h"

/* The length of the valid UTF-8 sequence at p (1-4), or 0 when p does not
 * start one (a stray continuation byte, an overlong form, a surrogate,
 * past U+10FFFF, cut short by a NUL). *p is not NUL. */
static unsigned seq_len(const unsigned char *p)
{
	unsigned c = *p, extra, cp;
	if (c < 0x80)
		return 1;
	else if (c >= 0xc2 && c <= 0xdf)
		extra = 1, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		extra = 2, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		extra = 3, cp = c & 0x07;
	else
		return 0; /* continuation byte, 0xc0/0xc1 overlong, > 0xf4 */
	for (unsigned k = 1; k <= extra; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0; /* also stops at the NUL */
		cp = (cp << 6) | (p[k] & 0x3f);
	}
	if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return extra + 1;
}

bool hs_utf8_valid(const char *s, size_t *chars)
{
	if (s == NULL)
		return false;
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; n++) {
		unsigned len = seq_len(p);
		if (len == 0)
			return false;
		p += len;
	}
	if (chars != NULL)
		*chars = n;
	return true;
}

size_t hs_utf8_repair(char *s)
{
	size_t fixed = 0;
	if (s == NULL)
		return 0;
	for (unsigned char *p = (unsigned char *)s; *p;) {
		unsigned len = seq_len(p);
		if (len == 0) {
			*p++ = '?';
			fixed++;
		} else {
			p += len;
		}
	}
	return fixed;
}
