#include "utf8.h"

bool hs_utf8_valid(const char *s, size_t *chars)
{
	if (s == NULL)
		return false;
	size_t n = 0;
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p++;
		unsigned extra, cp;
		if (c < 0x80) {
			n++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			extra = 1, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			extra = 2, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			extra = 3, cp = c & 0x07;
		} else {
			return false; /* continuation byte, 0xc0/0xc1 overlong, > 0xf4 */
		}
		for (unsigned k = 0; k < extra; k++, p++) {
			if ((*p & 0xc0) != 0x80)
				return false; /* also stops at the NUL */
			cp = (cp << 6) | (*p & 0x3f);
		}
		if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		n++;
	}
	if (chars != NULL)
		*chars = n;
	return true;
}
