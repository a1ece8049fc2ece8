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

/* The 16 lowercase hex digits of v, two per lookup (ids are made on every
 * call). */
static void hex16(char *out, uint64_t v)
{
	static const char pairs[513] =
		"000102030405060708090a0b0c0d0e0f"
		"101112131415161718191a1b1c1d1e1f"
		"202122232425262728292a2b2c2d2e2f"
		"303132333435363738393a3b3c3d3e3f"
		"404142434445464748494a4b4c4d4e4f"
		"505152535455565758595a5b5c5d5e5f"
		"606162636465666768696a6b6c6d6e6f"
		"707172737475767778797a7b7c7d7e7f"
		"808182838485868788898a8b8c8d8e8f"
		"909192939495969798999a9b9c9d9e9f"
		"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
		"b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
		"c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
		"d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
		"e0e1e2e3e4e5e6e7e8e9eaebecedeeef"
		"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
	for (int i = 7; i >= 0; i--, v >>= 8)
		memcpy(out + 2 * i, pairs + 2 * (v & 0xff), 2);
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
	hex16(out, next64());
	hex16(out + 16, next64());
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
	hex16(out + 3, next64() | 1);
	hex16(out + 19, next64());
	out[35] = '-';
	hex16(out + 36, next64() | 1);
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
