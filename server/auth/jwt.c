/* JWS compact serialisation glue over OpenSSL 3 EVP: the crypto primitives
 * are OpenSSL's, this file only builds/splits "header.payload.signature",
 * converts ES256 signatures between JOSE raw r||s and DER, and checks claims.
 *
 * Verification order (each step refuses with HS_UNAUTH): size bound ->
 * exactly three non-empty base64url parts -> header JSON -> header alg equals
 * the key's pinned alg, no "crit" -> signature over the ASCII of
 * "header.payload" (constant-time compare for HMAC) -> payload JSON -> claims.
 * Nothing from the token is ever logged or copied into an error message. */
#include "jwt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <sodium.h>

#define ES256_RAW_LEN 64
#define MAX_SIG_LEN 1024 /* RSA-8192 */
#define MAX_PEM_LEN (64 * 1024)

struct hs_jwt_key {
	hs_jwt_alg alg;
	unsigned char *secret; /* HS256 */
	size_t secret_len;
	EVP_PKEY *pkey;        /* RS256/ES256 */
	int can_sign;
	/* HS256: an HMAC-SHA256 context keyed once (algorithm fetched, key
	 * pads computed), never used itself: each thread keeps a copy for the
	 * key it used last (thread_mac) and re-arms it per MAC. NULL (out of
	 * memory at creation) falls back to one-shot HMAC(). */
	EVP_MAC_CTX *mac;
	uint64_t id; /* unique per key ever created: a thread's copy matches by id */
};

static _Atomic uint64_t next_key_id = 1;

/* One thread's HMAC context, copied from the last key it used. */
typedef struct thread_mac {
	uint64_t key_id;
	EVP_MAC_CTX *ctx;
} thread_mac;

static pthread_key_t mac_tls;
static pthread_once_t mac_tls_once = PTHREAD_ONCE_INIT;
static bool mac_tls_ok;

static void thread_mac_free(void *p)
{
	thread_mac *t = p;
	EVP_MAC_CTX_free(t->ctx);
	free(t);
}

static void mac_tls_init(void)
{
	mac_tls_ok = pthread_key_create(&mac_tls, thread_mac_free) == 0;
}

void hs_jwt_claims_dispose(hs_jwt_claims *c)
{
	if (c == NULL)
		return;
	free(c->sub);
	free(c->role);
	free(c->email);
	free(c->jti);
	free(c->sid);
	memset(c, 0, sizeof(*c));
}

static const char *const alg_names[] = { NULL, "HS256", "RS256", "ES256" };

const char *hs_jwt_alg_name(hs_jwt_alg alg)
{
	if (alg < HS_JWT_HS256 || alg > HS_JWT_ES256)
		return "?";
	return alg_names[alg];
}

int hs_jwt_alg_parse(const char *name, hs_jwt_alg *out, hs_error *err)
{
	for (int a = HS_JWT_HS256; a <= HS_JWT_ES256; a++) {
		if (name != NULL && strcmp(name, alg_names[a]) == 0) {
			*out = (hs_jwt_alg)a;
			return HS_OK;
		}
	}
	return hs_error_set(err, HS_INVALID, "jwt alg: expected HS256, RS256 or ES256");
}

hs_jwt_alg hs_jwt_key_alg(const hs_jwt_key *key) { return key->alg; }

void hs_jwt_key_free(hs_jwt_key *key)
{
	if (key == NULL)
		return;
	if (key->secret != NULL) {
		OPENSSL_cleanse(key->secret, key->secret_len);
		free(key->secret);
	}
	EVP_PKEY_free(key->pkey);
	EVP_MAC_CTX_free(key->mac);
	free(key);
}

/* A keyed HMAC-SHA256 context for k, or NULL. */
static EVP_MAC_CTX *keyed_mac(const unsigned char *secret, size_t len)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac); /* the context keeps its own reference */
	OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
								 (char *)"SHA256", 0),
				OSSL_PARAM_construct_end() };
	if (ctx != NULL && EVP_MAC_init(ctx, secret, len, params) != 1) {
		EVP_MAC_CTX_free(ctx);
		ctx = NULL;
	}
	ERR_clear_error();
	return ctx;
}

/* HMAC-SHA256 of msg under key into mac (32 bytes); 0 on success. */
static int hmac_sha256(const hs_jwt_key *key, const char *msg, size_t len,
		       unsigned char mac[EVP_MAX_MD_SIZE], unsigned int *mlen)
{
	if (key->mac == NULL)
		return HMAC(EVP_sha256(), key->secret, (int)key->secret_len,
			    (const unsigned char *)msg, len, mac, mlen) == NULL
			       ? -1
			       : 0;
	/* This thread's copy of the keyed context: re-armed (EVP_MAC_init with
	 * no key keeps the key's pads), so a MAC costs no fetch, no key setup
	 * and no allocation. */
	pthread_once(&mac_tls_once, mac_tls_init);
	thread_mac *t = mac_tls_ok ? pthread_getspecific(mac_tls) : NULL;
	if (mac_tls_ok && t == NULL && (t = calloc(1, sizeof(*t))) != NULL &&
	    pthread_setspecific(mac_tls, t) != 0) {
		free(t);
		t = NULL;
	}
	EVP_MAC_CTX *c = NULL, *own = NULL;
	if (t != NULL && t->ctx != NULL && t->key_id == key->id) {
		c = t->ctx;
	} else if ((own = EVP_MAC_CTX_dup(key->mac)) != NULL && t != NULL) {
		EVP_MAC_CTX_free(t->ctx);
		t->ctx = own;
		t->key_id = key->id;
		c = own;
		own = NULL;
	} else {
		c = own; /* no thread slot: a copy for this MAC only */
	}
	size_t out = 0;
	int rc = c != NULL && EVP_MAC_init(c, NULL, 0, NULL) == 1 &&
			 EVP_MAC_update(c, (const unsigned char *)msg, len) == 1 &&
			 EVP_MAC_final(c, mac, &out, EVP_MAX_MD_SIZE) == 1
		 ? 0
		 : -1;
	EVP_MAC_CTX_free(own);
	*mlen = (unsigned int)out;
	return rc;
}

int hs_jwt_key_new_hmac(hs_jwt_key **out, const void *secret, size_t len, hs_error *err)
{
	if (secret == NULL || len < HS_JWT_HMAC_MIN_KEY)
		return hs_error_set(err, HS_INVALID, "jwt HS256 secret: at least %d bytes required",
				    HS_JWT_HMAC_MIN_KEY);
	hs_jwt_key *k = calloc(1, sizeof(*k));
	if (k == NULL || (k->secret = malloc(len)) == NULL) {
		free(k);
		return hs_error_set(err, HS_INTERNAL, "jwt key: out of memory");
	}
	memcpy(k->secret, secret, len);
	k->secret_len = len;
	k->alg = HS_JWT_HS256;
	k->can_sign = 1;
	k->mac = keyed_mac(k->secret, len);
	k->id = atomic_fetch_add(&next_key_id, 1);
	*out = k;
	return HS_OK;
}

/* The key must match the alg: RSA >= 2048 bits, or EC on P-256. */
static int check_pkey(hs_jwt_alg alg, EVP_PKEY *pkey, hs_error *err)
{
	if (alg == HS_JWT_RS256) {
		if (!EVP_PKEY_is_a(pkey, "RSA"))
			return hs_error_set(err, HS_INVALID, "jwt key: RS256 needs an RSA key");
		if (EVP_PKEY_get_bits(pkey) < 2048)
			return hs_error_set(err, HS_INVALID, "jwt key: RSA key shorter than 2048 bits");
		return HS_OK;
	}
	char group[64] = "";
	size_t glen = 0;
	if (!EVP_PKEY_is_a(pkey, "EC") ||
	    !EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
					    sizeof(group), &glen) ||
	    (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0))
		return hs_error_set(err, HS_INVALID, "jwt key: ES256 needs an EC P-256 key");
	return HS_OK;
}

int hs_jwt_key_new_pem(hs_jwt_key **out, hs_jwt_alg alg, const char *pem, size_t len,
		       hs_error *err)
{
	int rc = HS_OK;
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	int priv = 0;
	hs_jwt_key *k = NULL;

	if (alg != HS_JWT_RS256 && alg != HS_JWT_ES256)
		return hs_error_set(err, HS_INVALID, "jwt key: PEM keys are for RS256/ES256");
	if (pem == NULL || len == 0 || len > MAX_PEM_LEN)
		return hs_error_set(err, HS_INVALID, "jwt key: empty or oversized PEM");
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "jwt key: out of memory");
		goto done;
	}
	/* A public key first; otherwise a private key (which also verifies). */
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	if (pkey == NULL) {
		(void)BIO_reset(bio);
		pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
		priv = 1;
	}
	if (pkey == NULL) {
		rc = hs_error_set(err, HS_INVALID, "jwt key: not a PEM public or private key");
		goto done;
	}
	if ((rc = check_pkey(alg, pkey, err)) != HS_OK)
		goto done;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "jwt key: out of memory");
		goto done;
	}
	k->alg = alg;
	k->pkey = pkey;
	k->can_sign = priv;
	pkey = NULL;
	*out = k;
done:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return rc;
}

int hs_jwt_key_load_pem_file(hs_jwt_key **out, hs_jwt_alg alg, const char *path,
			     hs_error *err)
{
	char *buf = NULL;
	size_t n = 0;
	int rc;
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return hs_error_set(err, HS_INVALID, "jwt key file %s: cannot open", path);
	if ((buf = malloc(MAX_PEM_LEN + 1)) == NULL) {
		fclose(f);
		return hs_error_set(err, HS_INTERNAL, "jwt key file: out of memory");
	}
	n = fread(buf, 1, MAX_PEM_LEN + 1, f);
	fclose(f);
	if (n == 0 || n > MAX_PEM_LEN)
		rc = hs_error_set(err, HS_INVALID, "jwt key file %s: empty or larger than 64 KiB", path);
	else
		rc = hs_jwt_key_new_pem(out, alg, buf, n, err);
	OPENSSL_cleanse(buf, MAX_PEM_LEN + 1);
	free(buf);
	return rc;
}

/* ---- base64url ---- */

char *hs_jwt_b64url_encode(const void *data, size_t len)
{
	size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *s = malloc(cap);
	if (s == NULL)
		return NULL;
	sodium_bin2base64(s, cap, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return s;
}

/* Strict decoding (no padding, no whitespace, canonical trailing bits). */
static int b64url_decode(const char *s, size_t slen, unsigned char **out, size_t *outlen)
{
	size_t cap = slen / 4 * 3 + 3;
	unsigned char *buf = malloc(cap + 1);
	size_t n = 0;
	const char *end = NULL;
	if (buf == NULL)
		return -1;
	if (sodium_base642bin(buf, cap, s, slen, NULL, &n, &end,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    end != s + slen) {
		free(buf);
		return -1;
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	return 0;
}

/* ---- signatures ---- */

/* Raw r||s (JOSE) <-> DER (OpenSSL) for ES256. */
static int es256_der_to_raw(const unsigned char *der, size_t der_len, unsigned char raw[64])
{
	const unsigned char *p = der;
	const BIGNUM *r, *s;
	int ok = 0;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	if (sig == NULL)
		return -1;
	ECDSA_SIG_get0(sig, &r, &s);
	ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
	ECDSA_SIG_free(sig);
	return ok ? 0 : -1;
}

static int es256_raw_to_der(const unsigned char raw[64], unsigned char **der, int *der_len)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
	int rc = -1;
	if (sig == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(sig, r, s)) {
		BN_free(r);
		BN_free(s);
		goto done;
	}
	*der = NULL;
	*der_len = i2d_ECDSA_SIG(sig, der);
	rc = *der_len > 0 ? 0 : -1;
done:
	ECDSA_SIG_free(sig);
	return rc;
}

/* Signature of msg into sig (cap MAX_SIG_LEN); returns its length or -1. */
static int sign_input(const hs_jwt_key *key, const char *msg, size_t len, unsigned char *sig)
{
	if (key->alg == HS_JWT_HS256) {
		unsigned int mlen = 0;
		if (hmac_sha256(key, msg, len, sig, &mlen) != 0)
			return -1;
		return (int)mlen;
	}
	int out = -1;
	unsigned char *der = NULL;
	size_t slen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key->pkey) != 1 ||
	    EVP_DigestSign(md, NULL, &slen, (const unsigned char *)msg, len) != 1 ||
	    slen > MAX_SIG_LEN || (der = malloc(slen)) == NULL ||
	    EVP_DigestSign(md, der, &slen, (const unsigned char *)msg, len) != 1)
		goto done;
	if (key->alg == HS_JWT_ES256) {
		if (es256_der_to_raw(der, slen, sig) == 0)
			out = ES256_RAW_LEN;
	} else {
		memcpy(sig, der, slen);
		out = (int)slen;
	}
done:
	free(der);
	EVP_MD_CTX_free(md);
	return out;
}

/* 1 if sig is a valid signature of msg, else 0. */
static int verify_input(const hs_jwt_key *key, const char *msg, size_t len,
			const unsigned char *sig, size_t sig_len)
{
	if (key->alg == HS_JWT_HS256) {
		unsigned char mac[EVP_MAX_MD_SIZE];
		unsigned int mlen = 0;
		if (hmac_sha256(key, msg, len, mac, &mlen) != 0)
			return 0;
		return sig_len == mlen && CRYPTO_memcmp(mac, sig, mlen) == 0;
	}
	int ok = 0;
	unsigned char *der = NULL;
	int der_len = 0;
	const unsigned char *vsig = sig;
	size_t vlen = sig_len;
	EVP_MD_CTX *md = NULL;
	if (key->alg == HS_JWT_ES256) {
		if (sig_len != ES256_RAW_LEN || es256_raw_to_der(sig, &der, &der_len) != 0)
			goto done;
		vsig = der;
		vlen = (size_t)der_len;
	}
	md = EVP_MD_CTX_new();
	if (md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
	    EVP_DigestVerify(md, vsig, vlen, (const unsigned char *)msg, len) == 1)
		ok = 1;
done:
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	ERR_clear_error();
	return ok;
}

/* ---- sign ---- */

static char *b64_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
	char *enc = NULL;
	if (s != NULL)
		enc = hs_jwt_b64url_encode(s, strlen(s));
	free(s);
	return enc;
}

int hs_jwt_sign(const hs_jwt_key *key, const hs_jwt_claims *c, const hs_jwt_sign_opts *opts,
		char **out, hs_error *err)
{
	int rc = HS_OK;
	json_t *hdr = NULL, *pl = NULL;
	char *h64 = NULL, *p64 = NULL, *s64 = NULL, *tok = NULL;
	unsigned char sig[MAX_SIG_LEN];
	int slen;

	if (!key->can_sign)
		return hs_error_set(err, HS_INVALID, "jwt sign: key has no private part");
	if (c == NULL || c->sub == NULL || c->sub[0] == '\0' || c->exp <= 0)
		return hs_error_set(err, HS_INVALID, "jwt sign: sub and exp required");
	hdr = json_pack("{s:s,s:s}", "alg", hs_jwt_alg_name(key->alg), "typ", "JWT");
	pl = json_pack("{s:s,s:I}", "sub", c->sub, "exp", (json_int_t)c->exp);
	if (hdr == NULL || pl == NULL ||
	    (opts && opts->kid && json_object_set_new(hdr, "kid", json_string(opts->kid)) != 0))
		goto oom;
	if ((c->iat > 0 && json_object_set_new(pl, "iat", json_integer(c->iat)) != 0) ||
	    (c->role && json_object_set_new(pl, "role", json_string(c->role)) != 0) ||
	    (c->email && json_object_set_new(pl, "email", json_string(c->email)) != 0) ||
	    (c->jti && json_object_set_new(pl, "jti", json_string(c->jti)) != 0) ||
	    (c->sid && json_object_set_new(pl, "sid", json_string(c->sid)) != 0) ||
	    (opts && opts->iss && json_object_set_new(pl, "iss", json_string(opts->iss)) != 0) ||
	    (opts && opts->aud && json_object_set_new(pl, "aud", json_string(opts->aud)) != 0))
		goto oom;
	if ((h64 = b64_json(hdr)) == NULL || (p64 = b64_json(pl)) == NULL)
		goto oom;
	size_t hl = strlen(h64), pll = strlen(p64);
	if ((tok = malloc(hl + pll + 2 + (MAX_SIG_LEN * 4 / 3 + 4))) == NULL)
		goto oom;
	memcpy(tok, h64, hl);
	tok[hl] = '.';
	memcpy(tok + hl + 1, p64, pll);
	tok[hl + 1 + pll] = '\0';
	if ((slen = sign_input(key, tok, hl + 1 + pll, sig)) < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "jwt sign: signing failed");
		goto done;
	}
	if ((s64 = hs_jwt_b64url_encode(sig, (size_t)slen)) == NULL)
		goto oom;
	tok[hl + 1 + pll] = '.';
	memcpy(tok + hl + 2 + pll, s64, strlen(s64) + 1);
	if (strlen(tok) > HS_JWT_MAX_LEN) {
		rc = hs_error_set(err, HS_INVALID, "jwt sign: token longer than %d bytes",
				  HS_JWT_MAX_LEN);
		goto done;
	}
	*out = tok;
	tok = NULL;
	goto done;
oom:
	rc = hs_error_set(err, HS_INTERNAL, "jwt sign: out of memory");
done:
	ERR_clear_error();
	json_decref(hdr);
	json_decref(pl);
	free(h64);
	free(p64);
	free(s64);
	free(tok);
	return rc;
}

/* ---- verify ---- */

static int is_b64url(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return 0;
	}
	return n > 0;
}

/* base64url text of a token part -> bytes in buf (no allocation: a token
 * is at most HS_JWT_MAX_LEN). -1 if malformed. */
#define PART_MAX (HS_JWT_MAX_LEN / 4 * 3 + 4)
static int b64url_decode_into(const char *s, size_t slen, unsigned char *buf, size_t cap,
			      size_t *outlen)
{
	const char *end = NULL;
	if (sodium_base642bin(buf, cap - 1, s, slen, NULL, outlen, &end,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    end != s + slen)
		return -1;
	buf[*outlen] = '\0';
	return 0;
}

/* A token part holding a JSON object. HS_OK, HS_UNAUTH ("token: malformed
 * <what>") or HS_INTERNAL when jansson could not allocate. */
static int decode_json(const char *s, size_t n, const char *what, json_t **out, hs_error *err)
{
	unsigned char raw[PART_MAX];
	size_t rlen = 0;
	json_error_t je;
	if (b64url_decode_into(s, n, raw, sizeof(raw), &rlen) != 0)
		return hs_error_set(err, HS_UNAUTH, "token: malformed %s", what);
	json_t *j = json_loadb((const char *)raw, rlen, JSON_REJECT_DUPLICATES, &je);
	if (j == NULL && json_error_code(&je) == json_error_out_of_memory)
		return hs_error_set(err, HS_INTERNAL, "token: out of memory");
	if (j == NULL || !json_is_object(j)) {
		json_decref(j);
		return hs_error_set(err, HS_UNAUTH, "token: malformed %s", what);
	}
	*out = j;
	return HS_OK;
}

/* A NumericDate: integer, or a real with an integral part that fits. */
static int numeric_date(json_t *v, long long *out)
{
	if (json_is_integer(v)) {
		*out = (long long)json_integer_value(v);
		return 0;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d > -1e15 && d < 1e15) {
			*out = (long long)d;
			return 0;
		}
	}
	return -1;
}

/* 0, -1 when not a string, -2 out of memory. */
static int opt_string(json_t *pl, const char *name, char **out)
{
	json_t *v = json_object_get(pl, name);
	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return -1;
	return (*out = strdup(json_string_value(v))) == NULL ? -2 : 0;
}

static int aud_matches(json_t *aud, const char *want)
{
	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	if (json_is_array(aud)) {
		size_t i;
		json_t *v;
		json_array_foreach(aud, i, v) {
			if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
				return 1;
		}
	}
	return 0;
}

static int check_claims(json_t *pl, const hs_jwt_verify_opts *o, hs_jwt_claims *c,
			hs_error *err)
{
	long long now = o->now ? o->now : (long long)time(NULL);
	long long leeway = o->leeway_s >= 0 ? o->leeway_s : 0;
	long long nbf = 0;
	json_t *v;

	v = json_object_get(pl, "sub");
	if (!json_is_string(v) || json_string_length(v) == 0)
		return hs_error_set(err, HS_UNAUTH, "token: missing sub");
	if ((v = json_object_get(pl, "exp")) == NULL || numeric_date(v, &c->exp) != 0)
		return hs_error_set(err, HS_UNAUTH, "token: missing exp");
	/* now and leeway are sane (a clock reading, a bounded setting); exp,
	 * nbf and iat are the token's: every comparison keeps them alone on
	 * one side, so no value in the token can overflow it. */
	if (now - leeway >= c->exp)
		return hs_error_set(err, HS_UNAUTH, "token expired");
	if ((v = json_object_get(pl, "nbf")) != NULL &&
	    (numeric_date(v, &nbf) != 0 || nbf > now + leeway))
		return hs_error_set(err, HS_UNAUTH, "token not yet valid");
	if ((v = json_object_get(pl, "iat")) != NULL &&
	    (numeric_date(v, &c->iat) != 0 || c->iat > now + leeway))
		return hs_error_set(err, HS_UNAUTH, "token issued in the future");
	if (o->iss != NULL) {
		v = json_object_get(pl, "iss");
		if (!json_is_string(v) || strcmp(json_string_value(v), o->iss) != 0)
			return hs_error_set(err, HS_UNAUTH, "token: wrong issuer");
	}
	if (o->aud != NULL && !aud_matches(json_object_get(pl, "aud"), o->aud))
		return hs_error_set(err, HS_UNAUTH, "token: wrong audience");
	static const char *const names[] = { "sub", "role", "email", "jti", "sid" };
	char **slots[] = { &c->sub, &c->role, &c->email, &c->jti, &c->sid };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int r = opt_string(pl, names[i], slots[i]);
		if (r == -2)
			return hs_error_set(err, HS_INTERNAL, "token: out of memory");
		if (r != 0)
			return hs_error_set(err, HS_UNAUTH, "token: malformed claims");
	}
	return HS_OK;
}

int hs_jwt_verify(const hs_jwt_key *key, const char *token, const hs_jwt_verify_opts *opts,
		  hs_jwt_claims *out, hs_error *err)
{
	hs_jwt_verify_opts defaults = HS_JWT_VERIFY_OPTS_INIT;
	hs_jwt_claims c = { 0 };
	json_t *hdr = NULL, *pl = NULL, *alg;
	unsigned char sig[PART_MAX];
	size_t sig_len = 0, len;
	const char *d1, *d2;
	int rc = HS_OK;

	if (opts == NULL)
		opts = &defaults;
	if (token == NULL || (len = strnlen(token, HS_JWT_MAX_LEN + 1)) > HS_JWT_MAX_LEN)
		return hs_error_set(err, HS_UNAUTH, "token: missing or too long");
	d1 = memchr(token, '.', len);
	d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
	if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL ||
	    !is_b64url(token, (size_t)(d1 - token)) ||
	    !is_b64url(d1 + 1, (size_t)(d2 - d1 - 1)) ||
	    !is_b64url(d2 + 1, len - (size_t)(d2 + 1 - token))) {
		rc = hs_error_set(err, HS_UNAUTH, "token: malformed");
		goto done;
	}
	if ((rc = decode_json(token, (size_t)(d1 - token), "header", &hdr, err)) != HS_OK)
		goto done;
	alg = json_object_get(hdr, "alg");
	if (!json_is_string(alg) || strcmp(json_string_value(alg), hs_jwt_alg_name(key->alg)) != 0) {
		rc = hs_error_set(err, HS_UNAUTH, "token: algorithm not accepted");
		goto done;
	}
	if (json_object_get(hdr, "crit") != NULL) {
		rc = hs_error_set(err, HS_UNAUTH, "token: unsupported critical header");
		goto done;
	}
	if (b64url_decode_into(d2 + 1, len - (size_t)(d2 + 1 - token), sig, sizeof(sig),
			       &sig_len) != 0 ||
	    !verify_input(key, token, (size_t)(d2 - token), sig, sig_len)) {
		rc = hs_error_set(err, HS_UNAUTH, "token: bad signature");
		goto done;
	}
	if ((rc = decode_json(d1 + 1, (size_t)(d2 - d1 - 1), "payload", &pl, err)) != HS_OK)
		goto done;
	if ((rc = check_claims(pl, opts, &c, err)) != HS_OK)
		goto done;
	*out = c;
	memset(&c, 0, sizeof(c));
done:
	hs_jwt_claims_dispose(&c);
	json_decref(hdr);
	json_decref(pl);
	return rc;
}

/* ---- JWK (RFC 7517/7518) verification keys ---- */

static int key_from_params(hs_jwt_key **out, hs_jwt_alg alg, const char *type,
			   OSSL_PARAM_BLD *bld, hs_error *err)
{
	int rc = HS_OK;
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;
	hs_jwt_key *k = NULL;
	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		rc = hs_error_set(err, HS_INVALID, "jwk: not a valid %s public key", type);
		goto done;
	}
	if ((rc = check_pkey(alg, pkey, err)) != HS_OK)
		goto done;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "jwk: out of memory");
		goto done;
	}
	k->alg = alg;
	k->pkey = pkey;
	pkey = NULL;
	*out = k;
done:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return rc;
}

/* base64url member -> bytes, at most max. */
static int jwk_member(const char *b64, size_t max, unsigned char **out, size_t *len)
{
	if (b64 == NULL || strlen(b64) == 0 || strlen(b64) > max * 4 / 3 + 4 ||
	    b64url_decode(b64, strlen(b64), out, len) != 0)
		return -1;
	if (*len == 0 || *len > max) {
		free(*out);
		return -1;
	}
	return 0;
}

int hs_jwt_key_new_rsa_jwk(hs_jwt_key **out, const char *n, const char *e, hs_error *err)
{
	unsigned char *nb = NULL, *eb = NULL;
	size_t nl = 0, el = 0;
	BIGNUM *bn = NULL, *be = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	int rc;
	if (jwk_member(n, 1024, &nb, &nl) != 0 || jwk_member(e, 16, &eb, &el) != 0) {
		rc = hs_error_set(err, HS_INVALID, "jwk: RSA n and e must be base64url (n up to 8192 bits)");
		goto done;
	}
	bn = BN_bin2bn(nb, (int)nl, NULL);
	be = BN_bin2bn(eb, (int)el, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn == NULL || be == NULL || bld == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be)) {
		rc = hs_error_set(err, HS_INTERNAL, "jwk: out of memory");
		goto done;
	}
	rc = key_from_params(out, HS_JWT_RS256, "RSA", bld, err);
done:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	free(nb);
	free(eb);
	return rc;
}

int hs_jwt_key_new_ec_jwk(hs_jwt_key **out, const char *x, const char *y, hs_error *err)
{
	unsigned char *xb = NULL, *yb = NULL, point[65];
	size_t xl = 0, yl = 0;
	OSSL_PARAM_BLD *bld = NULL;
	int rc;
	if (jwk_member(x, 32, &xb, &xl) != 0 || jwk_member(y, 32, &yb, &yl) != 0 || xl != 32 ||
	    yl != 32) {
		rc = hs_error_set(err, HS_INVALID, "jwk: EC x and y must be 32 bytes of base64url");
		goto done;
	}
	point[0] = 0x04; /* uncompressed */
	memcpy(point + 1, xb, 32);
	memcpy(point + 33, yb, 32);
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point))) {
		rc = hs_error_set(err, HS_INTERNAL, "jwk: out of memory");
		goto done;
	}
	rc = key_from_params(out, HS_JWT_ES256, "EC", bld, err);
done:
	OSSL_PARAM_BLD_free(bld);
	free(xb);
	free(yb);
	return rc;
}

int hs_jwt_token_kid(const char *token, char *out, size_t cap, hs_error *err)
{
	size_t len;
	const char *d1;
	if (token == NULL || (len = strnlen(token, HS_JWT_MAX_LEN + 1)) > HS_JWT_MAX_LEN ||
	    (d1 = memchr(token, '.', len)) == NULL || !is_b64url(token, (size_t)(d1 - token)))
		return hs_error_set(err, HS_UNAUTH, "token: malformed");
	json_t *hdr = NULL;
	int rc = decode_json(token, (size_t)(d1 - token), "header", &hdr, err);
	if (rc != HS_OK)
		return rc;
	json_t *kid = json_object_get(hdr, "kid");
	out[0] = '\0';
	if (kid != NULL) {
		const char *k = json_string_value(kid);
		size_t kl = k != NULL ? strlen(k) : 0;
		bool ok = k != NULL && kl > 0 && kl < cap;
		for (size_t i = 0; ok && i < kl; i++)
			ok = (unsigned char)k[i] >= 0x20 && (unsigned char)k[i] < 0x7f;
		if (ok)
			memcpy(out, k, kl + 1);
		else
			rc = hs_error_set(err, HS_UNAUTH, "token: malformed kid");
	}
	json_decref(hdr);
	return rc;
}
