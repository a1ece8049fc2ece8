/* Input validation: emails, passwords, header values, the refresh cookie. */
#include "validate.h"

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

static bool is_atext(int c)
{
	return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL);
}

static bool local_ok(const char *s, size_t n)
{
	if (n == 0 || n > 64 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!is_atext((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

static bool domain_ok(const char *s, size_t n)
{
	if (n == 0 || n > 253)
		return false;
	size_t labels = 0, start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.') {
			int c = (unsigned char)s[i];
			if (!is_alpha(c) && !is_digit(c) && c != '-')
				return false;
			continue;
		}
		size_t len = i - start;
		if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-')
			return false;
		labels++;
		if (i == n) { /* TLD */
			bool idn = len >= 5 && strncmp(s + start, "xn--", 4) == 0;
			if (!idn) {
				if (len < 2)
					return false;
				for (size_t k = start; k < i; k++)
					if (!is_alpha((unsigned char)s[k]))
						return false;
			}
		}
		start = i + 1;
	}
	return labels >= 2;
}

static bool domain_in(const char *d, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(d, *list) == 0)
			return true;
	return false;
}

static const char *const GMAIL[] = { "gmail.com", "googlemail.com", NULL };
static const char *const PLUS[] = { "outlook.com", "hotmail.com", "live.com", "msn.com",
				    "hotmail.co.uk", "live.co.uk", "icloud.com", "me.com",
				    "mac.com", NULL };
static const char *const DASH[] = { "yahoo.com", "ymail.com", "rocketmail.com", "yahoo.co.uk",
				    NULL };

bool hs_gw_email_normalize(const char *in, char *out, size_t outsz)
{
	if (in == NULL || out == NULL || outsz < HS_GW_EMAIL_MAX + 1)
		return false;
	while (*in == ' ' || *in == '\t')
		in++;
	size_t n = strlen(in);
	while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\t'))
		n--;
	if (n == 0 || n > HS_GW_EMAIL_MAX)
		return false;
	const char *at = memchr(in, '@', n);
	if (at == NULL)
		return false;
	size_t ln = (size_t)(at - in), dn = n - ln - 1;
	if (!local_ok(in, ln) || !domain_ok(at + 1, dn))
		return false;

	char local[65], domain[254];
	for (size_t i = 0; i < ln; i++)
		local[i] = (char)lower((unsigned char)in[i]);
	local[ln] = '\0';
	for (size_t i = 0; i < dn; i++)
		domain[i] = (char)lower((unsigned char)at[1 + i]);
	domain[dn] = '\0';

	if (domain_in(domain, GMAIL)) {
		char *plus = strchr(local, '+');
		if (plus != NULL)
			*plus = '\0';
		size_t w = 0;
		for (size_t r = 0; local[r]; r++)
			if (local[r] != '.')
				local[w++] = local[r];
		local[w] = '\0';
		memcpy(domain, "gmail.com", sizeof("gmail.com"));
	} else if (domain_in(domain, PLUS)) {
		char *plus = strchr(local, '+');
		if (plus != NULL)
			*plus = '\0';
	} else if (domain_in(domain, DASH)) {
		char *dash = strchr(local, '-');
		if (dash != NULL)
			*dash = '\0';
	}
	size_t l2 = strlen(local), d2 = strlen(domain);
	if (l2 == 0 || l2 + 1 + d2 > HS_GW_EMAIL_MAX)
		return false;
	memcpy(out, local, l2);
	out[l2] = '@';
	memcpy(out + l2 + 1, domain, d2 + 1);
	return true;
}

bool hs_gw_password_ok(const char *pw)
{
	if (pw == NULL)
		return false;
	size_t chars = 0;
	const unsigned char *p = (const unsigned char *)pw;
	while (*p) {
		size_t extra;
		if (*p < 0x80)
			extra = 0;
		else if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
			extra = 1;
		else if ((*p & 0xf0) == 0xe0)
			extra = 2;
		else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
			extra = 3;
		else
			return false;
		p++;
		for (size_t k = 0; k < extra; k++, p++)
			if ((*p & 0xc0) != 0x80)
				return false;
		if (++chars > HS_GW_PASSWORD_MAX)
			return false;
	}
	return chars >= HS_GW_PASSWORD_MIN;
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

static int hexval(int c)
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
					if (c == '%' && ve - r >= 3 && hexval(r[1]) >= 0 && hexval(r[2]) >= 0) {
						c = hexval(r[1]) * 16 + hexval(r[2]);
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
