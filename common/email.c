/* Email addresses: the shape check and the normal form (see email.h). */
#include "email.h"

#include <string.h>

static const char *const GMAIL[] = { "gmail.com", "googlemail.com", NULL };
static const char *const ICLOUD[] = { "icloud.com", "me.com", NULL };
static const char *const OUTLOOK[] = {
	"hotmail.at", "hotmail.be", "hotmail.ca", "hotmail.cl", "hotmail.co.il", "hotmail.co.nz",
	"hotmail.co.th", "hotmail.co.uk", "hotmail.com", "hotmail.com.ar", "hotmail.com.au",
	"hotmail.com.br", "hotmail.com.gr", "hotmail.com.mx", "hotmail.com.pe", "hotmail.com.tr",
	"hotmail.com.vn", "hotmail.cz", "hotmail.de", "hotmail.dk", "hotmail.es", "hotmail.fr",
	"hotmail.hu", "hotmail.id", "hotmail.ie", "hotmail.in", "hotmail.it", "hotmail.jp",
	"hotmail.kr", "hotmail.lv", "hotmail.my", "hotmail.ph", "hotmail.pt", "hotmail.sa",
	"hotmail.sg", "hotmail.sk", "live.be", "live.co.uk", "live.com", "live.com.ar",
	"live.com.mx", "live.de", "live.es", "live.eu", "live.fr", "live.it", "live.nl", "msn.com",
	"outlook.at", "outlook.be", "outlook.cl", "outlook.co.il", "outlook.co.nz", "outlook.co.th",
	"outlook.com", "outlook.com.ar", "outlook.com.au", "outlook.com.br", "outlook.com.gr",
	"outlook.com.pe", "outlook.com.tr", "outlook.com.vn", "outlook.cz", "outlook.de",
	"outlook.dk", "outlook.es", "outlook.fr", "outlook.hu", "outlook.id", "outlook.ie",
	"outlook.in", "outlook.it", "outlook.jp", "outlook.kr", "outlook.lv", "outlook.my",
	"outlook.ph", "outlook.pt", "outlook.sa", "outlook.sg", "outlook.sk", "passport.com", NULL
};
static const char *const YAHOO[] = { "rocketmail.com", "yahoo.ca", "yahoo.co.uk", "yahoo.com",
				     "yahoo.de", "yahoo.fr", "yahoo.in", "yahoo.it", "ymail.com",
				     NULL };
static const char *const YANDEX[] = { "yandex.ru", "yandex.ua", "yandex.kz", "yandex.com",
				      "yandex.by", "ya.ru", NULL };

static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static bool in_list(const char *d, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(d, *list) == 0)
			return true;
	return false;
}

/* in without surrounding spaces and tabs: *start, length *n. */
static void trim(const char *in, const char **start, size_t *n)
{
	while (*in == ' ' || *in == '\t')
		in++;
	size_t len = strlen(in);
	while (len > 0 && (in[len - 1] == ' ' || in[len - 1] == '\t'))
		len--;
	*start = in;
	*n = len;
}

/* The minimal shape: 3..254 bytes, no controls/spaces/DEL, a non-empty
 * local part and domain around the last '@'. *at = offset of that '@'. */
static bool minimal_shape(const char *s, size_t n, size_t *at)
{
	if (n < 3 || n > HS_EMAIL_MAX)
		return false;
	size_t last = n;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f)
			return false;
		if (c == '@')
			last = i;
	}
	if (last == n || last == 0 || last == n - 1)
		return false;
	*at = last;
	return true;
}

bool hs_email_legacy_key(const char *in, char *out, size_t outsz)
{
	const char *s;
	size_t n, at;
	if (in == NULL || out == NULL || outsz < HS_EMAIL_MAX + 1)
		return false;
	trim(in, &s, &n);
	if (!minimal_shape(s, n, &at))
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = lower(s[i]);
	out[n] = '\0';
	return true;
}

/* Drops the first '+' and what follows (validator's split('+')[0]). */
static void cut_plus(char *local)
{
	char *p = strchr(local, '+');
	if (p != NULL)
		*p = '\0';
}

/* Removes single dots, keeps runs of two or more (validator's dotsReplacer). */
static void drop_single_dots(char *local)
{
	size_t w = 0;
	for (size_t r = 0; local[r];) {
		if (local[r] != '.') {
			local[w++] = local[r++];
			continue;
		}
		size_t run = 0;
		while (local[r + run] == '.')
			run++;
		if (run > 1)
			for (size_t k = 0; k < run; k++)
				local[w++] = '.';
		r += run;
	}
	local[w] = '\0';
}

/* Yahoo: components = split('-'); more than one -> all but the last. */
static void cut_last_dash(char *local)
{
	char *p = strrchr(local, '-');
	if (p != NULL)
		*p = '\0';
}

bool hs_email_normalize(const char *in, char *out, size_t outsz)
{
	const char *s;
	size_t n, at;
	char local[HS_EMAIL_MAX + 1], domain[HS_EMAIL_MAX + 1];
	if (in == NULL || out == NULL || outsz < HS_EMAIL_MAX + 1)
		return false;
	trim(in, &s, &n);
	if (!minimal_shape(s, n, &at))
		return false;
	for (size_t i = 0; i < at; i++)
		local[i] = lower(s[i]);
	local[at] = '\0';
	for (size_t i = at + 1; i < n; i++)
		domain[i - at - 1] = lower(s[i]);
	domain[n - at - 1] = '\0';

	char ruled[HS_EMAIL_MAX + 1];
	memcpy(ruled, local, at + 1);
	if (in_list(domain, GMAIL)) {
		cut_plus(ruled);
		drop_single_dots(ruled);
		if (ruled[0] != '\0')
			memcpy(domain, "gmail.com", sizeof("gmail.com"));
	} else if (in_list(domain, ICLOUD) || in_list(domain, OUTLOOK)) {
		cut_plus(ruled);
	} else if (in_list(domain, YAHOO)) {
		cut_last_dash(ruled);
	} else if (in_list(domain, YANDEX)) {
		memcpy(domain, "yandex.ru", sizeof("yandex.ru"));
	}
	/* A rule that empties the local part does not apply (validator.js
	 * gives up there); the address keeps its lower-cased local part. */
	const char *l = ruled[0] != '\0' ? ruled : local;
	size_t ll = strlen(l), dl = strlen(domain);
	if (ll + 1 + dl > HS_EMAIL_MAX)
		return false;
	memcpy(out, l, ll);
	out[ll] = '@';
	memcpy(out + ll + 1, domain, dl + 1);
	return true;
}

/* ---- shape (isEmail-like) -------------------------------------------- */

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
		if (i == n) { /* the TLD */
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

bool hs_email_valid(const char *in)
{
	const char *s;
	size_t n;
	if (in == NULL)
		return false;
	trim(in, &s, &n);
	if (n == 0 || n > HS_EMAIL_MAX)
		return false;
	const char *at = memchr(s, '@', n);
	if (at == NULL)
		return false;
	size_t ln = (size_t)(at - s);
	return local_ok(s, ln) && domain_ok(at + 1, n - ln - 1);
}
