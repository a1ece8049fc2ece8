/* pbjson text forms: base64 for bytes and RFC 3339 for Timestamp (the
 * declarations are in pbjson.h). */
#include "pbjson.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- base64 ----------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *hs_pbjson_b64_encode(const uint8_t *d, size_t n)
{
	char *out = malloc((n + 2) / 3 * 4 + 1);
	size_t o = 0;
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)d[i + 1] << 8;
		if (i + 2 < n)
			v |= d[i + 2];
		out[o++] = B64[(v >> 18) & 63];
		out[o++] = B64[(v >> 12) & 63];
		out[o++] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? B64[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int hs_pbjson_b64_decode(const char *s, uint8_t **out, size_t *outn)
{
	size_t n = strlen(s);
	while (n > 0 && s[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return -1;
	uint8_t *buf = malloc(n * 3 / 4 + 1);
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	if (buf == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = b64_val(s[i]);
		if (v < 0) {
			free(buf);
			return -1;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (uint8_t)(acc >> bits);
		}
	}
	*out = buf;
	*outn = o;
	return 0;
}

/* ---- time ------------------------------------------------------------- */

#define MIN_TS -62135596800LL /* 0001-01-01T00:00:00Z */
#define MAX_TS 253402300799LL /* 9999-12-31T23:59:59Z */

int hs_pbjson_format_time(char *buf, size_t n, long long seconds, int nanos)
{
	struct tm tm;
	time_t t = (time_t)seconds;
	if (seconds < MIN_TS || seconds > MAX_TS || nanos < 0 || nanos > 999999999 ||
	    gmtime_r(&t, &tm) == NULL || n < 40)
		return HS_INVALID;
	/* Not strftime's %Y: glibc does not pad years before 1000 to four
	 * digits, and RFC 3339 (and our own parser) requires them. */
	int w = snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (w < 0 || (size_t)w >= n)
		return HS_INVALID;
	size_t k = (size_t)w;
	if (nanos == 0)
		snprintf(buf + k, n - k, "Z");
	else if (nanos % 1000000 == 0)
		snprintf(buf + k, n - k, ".%03dZ", nanos / 1000000);
	else if (nanos % 1000 == 0)
		snprintf(buf + k, n - k, ".%06dZ", nanos / 1000);
	else
		snprintf(buf + k, n - k, ".%09dZ", nanos);
	return HS_OK;
}

static int digits(const char **p, int count, int *out)
{
	int v = 0;
	for (int i = 0; i < count; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += count;
	*out = v;
	return 0;
}

int hs_pbjson_parse_time(const char *s, long long *seconds, int *nanos)
{
	int Y, M, D, h, m, sec, frac = 0, oh = 0, om = 0, sign = 0;
	const char *p = s;
	if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' ||
	    digits(&p, 2, &D) || (*p != 'T' && *p != 't' && *p != ' '))
		return HS_INVALID;
	p++;
	if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m) || *p++ != ':' ||
	    digits(&p, 2, &sec))
		return HS_INVALID;
	if (*p == '.') {
		int nd = 0;
		p++;
		while (*p >= '0' && *p <= '9') {
			if (nd < 9) {
				frac = frac * 10 + (*p - '0');
				nd++;
			}
			p++;
		}
		if (nd == 0)
			return HS_INVALID;
		for (; nd < 9; nd++)
			frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		p++;
		if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
			return HS_INVALID;
	} else {
		return HS_INVALID;
	}
	if (*p != '\0' || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 ||
	    oh > 23 || om > 59 || Y < 1)
		return HS_INVALID;
	struct tm tm = { 0 };
	tm.tm_year = Y - 1900;
	tm.tm_mon = M - 1;
	tm.tm_mday = D;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = sec;
	long long t = (long long)timegm(&tm);
	t -= (long long)sign * (oh * 3600 + om * 60);
	if (t < MIN_TS || t > MAX_TS)
		return HS_INVALID;
	*seconds = t;
	*nanos = frac;
	return HS_OK;
}

