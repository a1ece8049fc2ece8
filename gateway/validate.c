/* Input validation: passwords, header values, the refresh cookie, hex
 * digits. */
#include "validate.h"
#include "utf8.h"

#include <stdint.h>
#include <string.h>

static bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

bool hs_gw_password_ok(const char *pw)
{
	if (pw == NULL)
		return false;
	size_t chars = 0;
	return hs_utf8_valid(pw, &chars) && chars >= HS_GW_PASSWORD_MIN &&
	       chars <= HS_GW_PASSWORD_MAX;
}

bool hs_gw_header_value_ok(const char *v)
{
	if (v == NULL)
		return false;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	return true;
}

bool hs_gw_token_ok(const char *v, size_t len)
{
	if (v == NULL || len == 0 || len > HS_GW_TOKEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)v[i];
		if (!is_alpha(c) && !is_digit(c) && strchr("._~+/=-", c) == NULL)
			return false;
	}
	return true;
}

int hs_gw_hexval(int c)
{
	if (is_digit(c))
		return c - '0';
	c = lower(c);
	return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

int hs_gw_cookie_find(const char *header, const char *name, char *out, size_t outsz)
{
	if (header == NULL || name == NULL || out == NULL || outsz < 2)
		return HS_GW_COOKIE_ABSENT;
	size_t nlen = strlen(name);
	const char *p = header;
	while (*p) {
		const char *end = strchr(p, ';');
		if (end == NULL)
			end = p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		if (eq != NULL) {
			const char *k = p, *ke = eq;
			while (k < ke && (*k == ' ' || *k == '\t'))
				k++;
			while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
				ke--;
			if ((size_t)(ke - k) == nlen && memcmp(k, name, nlen) == 0) {
				const char *v = eq + 1, *ve = end;
				while (v < ve && (*v == ' ' || *v == '\t'))
					v++;
				while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
					ve--;
				if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"') {
					v++;
					ve--;
				}
				if (v == ve)
					return HS_GW_COOKIE_ABSENT;
				size_t w = 0;
				for (const char *r = v; r < ve; r++) {
					int c = (unsigned char)*r;
					if (c == '%' && ve - r >= 3 && hs_gw_hexval(r[1]) >= 0 &&
					    hs_gw_hexval(r[2]) >= 0) {
						c = hs_gw_hexval(r[1]) * 16 + hs_gw_hexval(r[2]);
						r += 2;
					}
					if (w + 1 >= outsz || w >= HS_GW_TOKEN_MAX)
						return HS_GW_COOKIE_INVALID;
					out[w++] = (char)c;
				}
				out[w] = '\0';
				if (!hs_gw_token_ok(out, w) || strlen(out) != w)
					return HS_GW_COOKIE_INVALID;
				return HS_GW_COOKIE_OK;
			}
		}
		p = *end ? end + 1 : end;
	}
	return HS_GW_COOKIE_ABSENT;
}
