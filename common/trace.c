/* Request ids, traceparent and the per-thread log context (trace.h). */
#include "trace.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static _Thread_local hs_trace_ctx tctx;
static _Thread_local uint64_t rng_s[2];

/* xorshift128+, seeded per thread from getrandom: a new id costs no
 * system call on the hot path. Ids need to be unique, not secret. */
static uint64_t next64(void)
{
	if (rng_s[0] == 0 && rng_s[1] == 0) {
		if (getrandom(rng_s, sizeof(rng_s), GRND_NONBLOCK) != (ssize_t)sizeof(rng_s)) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			rng_s[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uintptr_t)&tctx;
			rng_s[1] = (uint64_t)ts.tv_sec ^ 0xbf58476d1ce4e5b9ull;
		}
		if (rng_s[0] == 0 && rng_s[1] == 0)
			rng_s[0] = 1;
	}
	uint64_t x = rng_s[0];
	const uint64_t y = rng_s[1];
	rng_s[0] = y;
	x ^= x << 23;
	rng_s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
	return rng_s[1] + y;
}

static void hex(char *out, uint64_t v, int digits)
{
	static const char h[] = "0123456789abcdef";
	for (int i = digits - 1; i >= 0; i--, v >>= 4)
		out[i] = h[v & 15];
}

bool hs_trace_request_id_ok(const char *v, size_t n)
{
	if (v == NULL || n == 0 || n > HS_REQUEST_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

void hs_trace_request_id_new(char *out)
{
	hex(out, next64(), 16);
	hex(out + 16, next64(), 16);
	out[32] = '\0';
}

static bool lowhex(const char *v, size_t n, bool *all_zero)
{
	*all_zero = true;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		if (c != '0')
			*all_zero = false;
	}
	return true;
}

bool hs_trace_parent_ok(const char *v, size_t n)
{
	bool zero;
	if (v == NULL || n != HS_TRACEPARENT_LEN || v[2] != '-' || v[35] != '-' || v[52] != '-')
		return false;
	if (v[0] != '0' || v[1] != '0') /* only the version we understand */
		return false;
	if (!lowhex(v + 3, 32, &zero) || zero)
		return false;
	if (!lowhex(v + 36, 16, &zero) || zero)
		return false;
	return lowhex(v + 53, 2, &zero);
}

void hs_trace_parent_new(char *out)
{
	memcpy(out, "00-", 3);
	hex(out + 3, next64() | 1, 16);
	hex(out + 19, next64(), 16);
	out[35] = '-';
	hex(out + 36, next64() | 1, 16);
	memcpy(out + 52, "-01", 4); /* with the NUL */
}

void hs_trace_begin(const char *request_id, size_t rid_len, const char *traceparent,
		    size_t tp_len)
{
	if (hs_trace_request_id_ok(request_id, rid_len)) {
		memcpy(tctx.request_id, request_id, rid_len);
		tctx.request_id[rid_len] = '\0';
	} else {
		hs_trace_request_id_new(tctx.request_id);
	}
	if (hs_trace_parent_ok(traceparent, tp_len)) {
		memcpy(tctx.traceparent, traceparent, tp_len);
		tctx.traceparent[tp_len] = '\0';
	} else {
		hs_trace_parent_new(tctx.traceparent);
	}
}

void hs_trace_restore(const hs_trace_ctx *ctx)
{
	if (ctx == NULL) {
		hs_trace_end();
		return;
	}
	tctx = *ctx;
}

void hs_trace_end(void)
{
	tctx.request_id[0] = '\0';
	tctx.traceparent[0] = '\0';
}

const hs_trace_ctx *hs_trace_current(void)
{
	return &tctx;
}
