/* JWKS (server/auth/jwks.h): documents with RSA and EC keys made here with
 * OpenSSL, tokens picked by kid with the alg pinned per key, what is
 * refused, and fetching from the user-service double: rotation, unknown
 * kids answered without a flood of fetches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "clock.h"
#include "double.h"
#include "jwks.h"
#include "jwt.h"

#define API_KEY "jwks-api-key"

/* A generated key: its signing hs_jwt_key and its JWK members. */
typedef struct tkey {
	hs_jwt_key *sign;
	char jwk[2048];
} tkey;

static char *bn_b64(const BIGNUM *bn, int pad)
{
	unsigned char buf[1024];
	int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
	assert_true(n > 0);
	return hs_jwt_b64url_encode(buf, (size_t)n);
}

static void make_key(tkey *k, const char *type, int bits, const char *kid, const char *extra)
{
	EVP_PKEY *p = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits)
					      : EVP_PKEY_Q_keygen(NULL, NULL, "EC", bits == 384
											  ? "P-384"
											  : "P-256");
	assert_non_null(p);
	BIO *b = BIO_new(BIO_s_mem());
	assert_true(PEM_write_bio_PrivateKey(b, p, NULL, NULL, 0, NULL, NULL) == 1);
	char *pem = NULL;
	long len = BIO_get_mem_data(b, &pem);
	hs_jwt_alg alg = strcmp(type, "RSA") == 0 ? HS_JWT_RS256 : HS_JWT_ES256;
	k->sign = NULL;
	if (bits >= 2048 || strcmp(type, "EC") == 0)
		(void)hs_jwt_key_new_pem(&k->sign, alg, pem, (size_t)len, NULL);
	BIO_free(b);
	if (strcmp(type, "RSA") == 0) {
		BIGNUM *n = NULL, *e = NULL;
		assert_true(EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_RSA_N, &n));
		assert_true(EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_RSA_E, &e));
		char *nb = bn_b64(n, 0), *eb = bn_b64(e, 0);
		snprintf(k->jwk, sizeof(k->jwk), "{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"%s}",
			 kid, nb, eb, extra);
		free(nb);
		free(eb);
		BN_free(n);
		BN_free(e);
	} else {
		BIGNUM *x = NULL, *y = NULL;
		assert_true(EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_EC_PUB_X, &x));
		assert_true(EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_EC_PUB_Y, &y));
		int sz = bits == 384 ? 48 : 32;
		char *xb = bn_b64(x, sz), *yb = bn_b64(y, sz);
		snprintf(k->jwk, sizeof(k->jwk),
			 "{\"kty\":\"EC\",\"crv\":\"%s\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"%s}",
			 bits == 384 ? "P-384" : "P-256", kid, xb, yb, extra);
		free(xb);
		free(yb);
		BN_free(x);
		BN_free(y);
	}
	EVP_PKEY_free(p);
}

static char *token(const tkey *k, const char *kid)
{
	hs_jwt_claims c = { 0 };
	hs_jwt_sign_opts o = { NULL, NULL, kid };
	char *t = NULL;
	c.sub = "u-1";
	c.role = "user";
	c.exp = (long long)time(NULL) + 600;
	assert_int_equal(hs_jwt_sign(k->sign, &c, &o, &t, NULL), HS_OK);
	return t;
}

static int verify(hs_jwks *j, const char *t, hs_error *err)
{
	hs_jwt_claims c = { 0 };
	int rc = hs_jwks_verify(j, t, NULL, &c, err);
	hs_jwt_claims_dispose(&c);
	return rc;
}

static void test_jwks__documents(void **s)
{
	(void)s;
	tkey rsa, ec, ec2;
	make_key(&rsa, "RSA", 2048, "r1", ",\"use\":\"sig\",\"alg\":\"RS256\"");
	make_key(&ec, "EC", 256, "e1", "");
	make_key(&ec2, "EC", 256, "e2", "");
	hs_jwks *j = NULL;
	assert_int_equal(hs_jwks_new(&j, NULL, NULL), HS_OK);
	char doc[16384];
	snprintf(doc, sizeof(doc), "{\"keys\":[%s,%s]}", rsa.jwk, ec.jwk);
	size_t n = 0;
	hs_error err = { 0 };
	if (hs_jwks_load(j, doc, strlen(doc), &n, &err) != HS_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(n, 2);

	char *tr = token(&rsa, "r1"), *te = token(&ec, "e1");
	assert_int_equal(verify(j, tr, NULL), HS_OK);
	assert_int_equal(verify(j, te, NULL), HS_OK);
	/* The kid picks the key and the key pins the alg: an ES256 token under
	 * the RSA key's kid, a token of a key not in the set. */
	char *cross = token(&ec, "r1"), *other = token(&ec2, "e1"), *unknown = token(&ec2, "zz");
	assert_int_equal(verify(j, cross, NULL), HS_UNAUTH);
	assert_int_equal(verify(j, other, NULL), HS_UNAUTH);
	hs_error_clear(&err);
	assert_int_equal(verify(j, unknown, &err), HS_UNAUTH); /* no URL: nothing to refresh */
	assert_string_equal(err.msg, "token: unknown signing key");
	/* No kid: fine with exactly one key, refused with several. */
	char *nokid = token(&ec, NULL);
	assert_int_equal(verify(j, nokid, NULL), HS_UNAUTH);
	snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", ec.jwk);
	assert_int_equal(hs_jwks_load(j, doc, strlen(doc), &n, NULL), HS_OK);
	assert_int_equal(verify(j, nokid, NULL), HS_OK);
	assert_int_equal(verify(j, tr, NULL), HS_UNAUTH); /* r1 is gone with the new set */

	/* Keys we do not take are skipped; a set with none leaves the old one. */
	tkey small, p384, enc, hmac_alg;
	make_key(&small, "RSA", 1024, "small", "");
	make_key(&p384, "EC", 384, "p384", "");
	make_key(&enc, "EC", 256, "enc", ",\"use\":\"enc\"");
	make_key(&hmac_alg, "RSA", 2048, "hs", ",\"alg\":\"HS256\"");
	snprintf(doc, sizeof(doc), "{\"keys\":[%s,%s,%s,%s,{\"kty\":\"oct\",\"kid\":\"o\",\"k\":\"c2VjcmV0\"},"
		 "{\"kty\":\"RSA\",\"kid\":\"bad\",\"n\":\"!!\",\"e\":\"AQAB\"},7]}",
		 small.jwk, p384.jwk, enc.jwk, hmac_alg.jwk);
	hs_error_clear(&err);
	assert_int_equal(hs_jwks_load(j, doc, strlen(doc), &n, &err), HS_INVALID);
	assert_int_equal(verify(j, nokid, NULL), HS_OK);
	const char *bad_docs[] = { "", "[]", "{\"keys\":{}}", "{\"keys\":[]}", "{\"keys\":[1,2]}",
				   "{\"keys\":[],\"keys\":[]}" };
	for (size_t i = 0; i < sizeof(bad_docs) / sizeof(bad_docs[0]); i++)
		assert_int_equal(hs_jwks_load(j, bad_docs[i], strlen(bad_docs[i]), NULL, NULL),
				 HS_INVALID);
	char *big = malloc(HS_JWKS_MAX_BYTES + 2);
	memset(big, ' ', HS_JWKS_MAX_BYTES + 1);
	big[HS_JWKS_MAX_BYTES + 1] = '\0';
	assert_int_equal(hs_jwks_load(j, big, strlen(big), NULL, NULL), HS_INVALID);
	free(big);
	/* A kid that is not printable or too long is a malformed token. */
	char longkid[HS_JWKS_KID_MAX + 2];
	memset(longkid, 'k', sizeof(longkid) - 1);
	longkid[sizeof(longkid) - 1] = '\0';
	char *lk = token(&ec, longkid), *ck = token(&ec, "a\x01");
	assert_int_equal(verify(j, lk, NULL), HS_UNAUTH);
	assert_int_equal(verify(j, ck, NULL), HS_UNAUTH);

	tkey *all[] = { &rsa, &ec, &ec2, &small, &p384, &enc, &hmac_alg };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		hs_jwt_key_free(all[i]->sign);
	char *toks[] = { tr, te, cross, other, unknown, nokid, lk, ck };
	for (size_t i = 0; i < sizeof(toks) / sizeof(toks[0]); i++)
		free(toks[i]);
	hs_jwks_free(j);
}

static void test_jwks__jwk_members(void **s)
{
	(void)s;
	hs_jwt_key *k = NULL;
	assert_int_equal(hs_jwt_key_new_rsa_jwk(&k, NULL, "AQAB", NULL), HS_INVALID);
	assert_int_equal(hs_jwt_key_new_rsa_jwk(&k, "AQAB", "AQAB", NULL), HS_INVALID); /* tiny */
	assert_int_equal(hs_jwt_key_new_rsa_jwk(&k, "a=b", "AQAB", NULL), HS_INVALID);
	assert_int_equal(hs_jwt_key_new_ec_jwk(&k, "AQAB", "AQAB", NULL), HS_INVALID);
	/* 32 zero bytes: not a point on the curve */
	const char *zero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	assert_int_equal(hs_jwt_key_new_ec_jwk(&k, zero, zero, NULL), HS_INVALID);
	assert_null(k);
	char kid[16];
	assert_int_equal(hs_jwt_token_kid("x", kid, sizeof(kid), NULL), HS_UNAUTH);
	assert_int_equal(hs_jwt_token_kid("e30.x.y", kid, sizeof(kid), NULL), HS_OK); /* {} */
	assert_string_equal(kid, "");
}

/* Against the double: the first set at start, a rotation found through an
 * unknown kid, made-up kids that cost at most one fetch per interval. */
/* Stopped by the group teardown too, so a failing test leaves no process. */
static test_double d;

static int stop_double(void **s)
{
	(void)s;
	test_double_stop(&d);
	return 0;
}

static void test_jwks__fetch_and_rotate(void **s)
{
	(void)s;
	assert_int_equal(test_double_start_alg(&d, API_KEY, "unused-secret-0123456789abcdef0123",
					       "ES256"), 0);
	char url[128];
	snprintf(url, sizeof(url), "%s/.well-known/jwks.json", d.url);
	hs_jwks_config cfg = { url, 5000, 200, 0 };
	hs_jwks *j = NULL;
	assert_int_equal(hs_jwks_new(&j, &cfg, NULL), HS_OK);
	assert_int_equal(hs_jwks_fetches(j), 1);
	assert_int_equal(test_double_stat(&d, "jwks_requests"), 1);
	char t1[4096], t2[4096];
	assert_int_equal(test_double_token(&d, API_KEY, "alice@example.com", "password123", t1,
					   sizeof(t1)), 0);
	assert_int_equal(verify(j, t1, NULL), HS_OK);

	/* Rotation to an RSA key the set does not have yet: the call is told
	 * to retry (a fetch is requested), ensure() waits for that fetch. */
	char kid[64];
	assert_int_equal(test_double_rotate(&d, "RS256", 0, kid, sizeof(kid)), 0);
	assert_int_equal(test_double_token(&d, API_KEY, "alice@example.com", "password123", t2,
					   sizeof(t2)), 0);
	hs_error err = { 0 };
	assert_int_equal(verify(j, t2, &err), HS_UNAVAILABLE);
	hs_jwks_ensure(j, t2, 10000);
	assert_int_equal(verify(j, t2, NULL), HS_OK);
	assert_int_equal(verify(j, t1, NULL), HS_OK); /* the old key is still published */

	/* Made-up kids: each is asked for once, then unknown for good; the
	 * fetcher runs at most once per min_interval (200 ms) meanwhile. */
	tkey ec;
	make_key(&ec, "EC", 256, "x", "");
	uint64_t before = hs_jwks_fetches(j);
	int64_t t0 = hs_clock_mono_ms();
	char *forged[40];
	for (int i = 0; i < 40; i++) {
		char k[32];
		snprintf(k, sizeof(k), "made-up-%d", i);
		forged[i] = token(&ec, k);
		int rc = verify(j, forged[i], NULL);
		assert_true(rc == HS_UNAVAILABLE || rc == HS_UNAUTH);
	}
	/* One fetch that started after the last of them answers for all. */
	hs_jwks_ensure(j, forged[39], 10000);
	for (int i = 0; i < 40; i++)
		assert_int_equal(verify(j, forged[i], NULL), HS_UNAUTH);
	int64_t elapsed = hs_clock_mono_ms() - t0;
	uint64_t fetched = hs_jwks_fetches(j) - before;
	if (fetched > (uint64_t)(elapsed / 200 + 2))
		fail_msg("%llu fetches in %lld ms", (unsigned long long)fetched, (long long)elapsed);
	assert_true(fetched >= 1);

	/* The old key dropped from the set: its tokens stop verifying once the
	 * set is fetched again. */
	assert_int_equal(test_double_rotate(&d, "ES256", 1, kid, sizeof(kid)), 0);
	char t3[4096];
	assert_int_equal(test_double_token(&d, API_KEY, "alice@example.com", "password123", t3,
					   sizeof(t3)), 0);
	hs_jwks_ensure(j, t3, 10000);
	assert_int_equal(verify(j, t3, NULL), HS_OK);
	int rc1 = verify(j, t1, NULL); /* asked for once, ... */
	assert_true(rc1 == HS_UNAVAILABLE || rc1 == HS_UNAUTH);
	hs_jwks_ensure(j, t1, 10000);
	assert_int_equal(verify(j, t1, NULL), HS_UNAUTH); /* ... then refused for good */
	assert_int_equal(verify(j, t2, NULL) == HS_OK, 0);

	/* The service down: the set is kept. */
	test_double_stop(&d);
	hs_jwks_ensure(j, forged[0], 10000);
	assert_int_equal(verify(j, t3, NULL), HS_OK);
	for (int i = 0; i < 40; i++)
		free(forged[i]);
	hs_jwt_key_free(ec.sign);
	hs_jwks_free(j);
}

static void test_jwks__bad_config(void **s)
{
	(void)s;
	hs_jwks *j = NULL;
	const char *bad[] = { "ftp://x/jwks", "file:///etc/passwd", "http://a b", "jwks.json" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hs_jwks_config c = { bad[i], 0, 0, 0 };
		assert_int_equal(hs_jwks_new(&j, &c, NULL), HS_INVALID);
	}
	/* Nothing listening: starts anyway, with no key (every token refused). */
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/jwks", test_closed_port());
	hs_jwks_config c = { url, 1000, 0, 0 };
	assert_int_equal(hs_jwks_new(&j, &c, NULL), HS_OK);
	assert_int_equal(verify(j, "e30.e30.e30", NULL), HS_UNAUTH);
	hs_jwks_free(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jwks__documents),
		cmocka_unit_test(test_jwks__jwk_members),
		cmocka_unit_test(test_jwks__fetch_and_rotate),
		cmocka_unit_test(test_jwks__bad_config),
	};
	return cmocka_run_group_tests(tests, NULL, stop_double);
}
