/* The verified-token cache: hits only for the very same bytes under the
 * same key set and before expiry; bounded; flushed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "token_cache.h"

static hs_token_entry entry(const char *sub)
{
	hs_token_entry e;
	memset(&e, 0, sizeof(e));
	snprintf(e.sub, sizeof(e.sub), "%s", sub);
	snprintf(e.role, sizeof(e.role), "user");
	snprintf(e.sid, sizeof(e.sid), "s-1");
	e.iat = 1000;
	return e;
}

static void test_token_cache__hit_only_for_same_bytes(void **s)
{
	hs_token_cache *c = hs_token_cache_new(64);
	assert_non_null(c);
	const char *tok = "aaa.bbb.signature";
	long long now = (long long)time(NULL);
	hs_token_entry e = entry("u-1"), out;
	assert_false(hs_token_cache_get(c, tok, strlen(tok), 0, now, &out));
	hs_token_cache_put(c, tok, strlen(tok), 0, now + 60, &e);
	assert_true(hs_token_cache_get(c, tok, strlen(tok), 0, now, &out));
	assert_string_equal(out.sub, "u-1");
	assert_string_equal(out.sid, "s-1");
	assert_int_equal(out.iat, 1000);
	/* another signature, another payload, a prefix: misses */
	assert_false(hs_token_cache_get(c, "aaa.bbb.signaturf", 17, 0, now, &out));
	assert_false(hs_token_cache_get(c, "aaa.bbc.signature", 17, 0, now, &out));
	assert_false(hs_token_cache_get(c, tok, strlen(tok) - 1, 0, now, &out));
	/* a new key set: miss */
	assert_false(hs_token_cache_get(c, tok, strlen(tok), 1, now, &out));
	/* expiry: valid while now < valid_until */
	assert_false(hs_token_cache_get(c, tok, strlen(tok), 0, now + 60, &out));
	hs_token_cache_flush(c);
	assert_false(hs_token_cache_get(c, tok, strlen(tok), 0, now, &out));
	assert_int_equal(hs_token_cache_size(c), 0);
	hs_token_cache_free(c);
}

static void test_token_cache__bounded(void **s)
{
	hs_token_cache *c = hs_token_cache_new(32);
	long long now = (long long)time(NULL);
	hs_token_entry e = entry("u-2"), out;
	char tok[64];
	for (int i = 0; i < 10000; i++) {
		snprintf(tok, sizeof(tok), "token-%d", i);
		hs_token_cache_put(c, tok, strlen(tok), 0, now + 60, &e);
	}
	assert_true(hs_token_cache_size(c) <= 32);
	/* the last one is there */
	assert_true(hs_token_cache_get(c, tok, strlen(tok), 0, now, &out));
	/* the same token twice takes one entry */
	hs_token_cache_flush(c);
	hs_token_cache_put(c, "x.y.z", 5, 0, now + 60, &e);
	hs_token_cache_put(c, "x.y.z", 5, 0, now + 60, &e);
	assert_int_equal(hs_token_cache_size(c), 1);
	/* too long: not cached */
	static char big[HS_TOKEN_CACHE_TOKEN_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	hs_token_cache_put(c, big, strlen(big), 0, now + 60, &e);
	assert_false(hs_token_cache_get(c, big, strlen(big), 0, now, &out));
	hs_token_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_cache__hit_only_for_same_bytes),
		cmocka_unit_test(test_token_cache__bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
