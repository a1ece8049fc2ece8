/* argon2id password hashes and random tokens over libsodium. */
#include "password.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define OPS crypto_pwhash_OPSLIMIT_INTERACTIVE
#define MEM crypto_pwhash_MEMLIMIT_INTERACTIVE

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static int init_rc = -1;
static int dummy_rc = -1;
static char dummy_hash[crypto_pwhash_STRBYTES];

static void do_init(void)
{
	if (sodium_init() < 0)
		return;
	init_rc = 0;
}

/* A real hash of a random password with the live parameters, so the dummy
 * verify costs exactly what a real one costs. Made on first use, not at
 * start: it takes 64 MiB for a moment, which a server that never checks a
 * password (upstream backend) should not pay. */
static void make_dummy(void)
{
	unsigned char pw[16];
	randombytes_buf(pw, sizeof(pw));
	if (crypto_pwhash_str_alg(dummy_hash, (const char *)pw, sizeof(pw), OPS, MEM,
				  crypto_pwhash_ALG_ARGON2ID13) == 0)
		dummy_rc = 0;
	sodium_memzero(pw, sizeof(pw));
}

int hs_password_init(hs_error *err)
{
	pthread_once(&init_once, do_init);
	if (init_rc != 0)
		return hs_error_set(err, HS_INTERNAL, "password: libsodium initialisation failed");
	return HS_OK;
}

static int check_password(const char *pw, hs_error *err)
{
	if (pw == NULL || pw[0] == '\0')
		return hs_error_set(err, HS_INVALID, "password: empty");
	if (strnlen(pw, HS_PASSWORD_MAX_LEN + 1) > HS_PASSWORD_MAX_LEN)
		return hs_error_set(err, HS_INVALID, "password: longer than %d bytes",
				    HS_PASSWORD_MAX_LEN);
	return HS_OK;
}

int hs_password_hash(const char *password, char **out, hs_error *err)
{
	char *h;
	int rc;
	if ((rc = hs_password_init(err)) != HS_OK || (rc = check_password(password, err)) != HS_OK)
		return rc;
	if ((h = malloc(crypto_pwhash_STRBYTES)) == NULL)
		return hs_error_set(err, HS_INTERNAL, "password hash: out of memory");
	if (crypto_pwhash_str_alg(h, password, strlen(password), OPS, MEM,
				  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		free(h);
		return hs_error_set(err, HS_INTERNAL, "password hash: out of memory");
	}
	*out = h;
	return HS_OK;
}

int hs_password_verify(const char *hash, const char *password, hs_error *err)
{
	int rc;
	if ((rc = hs_password_init(err)) != HS_OK)
		return rc;
	if (check_password(password, NULL) != HS_OK || hash == NULL ||
	    strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES ||
	    crypto_pwhash_str_verify(hash, password, strlen(password)) != 0)
		return hs_error_set(err, HS_UNAUTH, "password does not match");
	return HS_OK;
}

int hs_password_prepare_dummy(hs_error *err)
{
	int rc = hs_password_init(err);
	if (rc != HS_OK)
		return rc;
	pthread_once(&dummy_once, make_dummy);
	if (dummy_rc != 0)
		return hs_error_set(err, HS_INTERNAL, "password: cannot make the dummy hash");
	return HS_OK;
}

void hs_password_verify_dummy(const char *password)
{
	if (hs_password_init(NULL) != HS_OK)
		return;
	pthread_once(&dummy_once, make_dummy);
	if (dummy_rc != 0)
		return;
	if (check_password(password, NULL) != HS_OK)
		password = "x";
	if (crypto_pwhash_str_verify(dummy_hash, password, strlen(password)) == 0)
		return; /* cannot happen: the dummy password is random */
}

bool hs_password_needs_rehash(const char *hash)
{
	if (hash == NULL || strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
		return true;
	/* 1 = other params, -1 = not an argon2id hash at all */
	return crypto_pwhash_str_needs_rehash(hash, OPS, MEM) != 0;
}

static int random_b64(size_t nbytes, char **out, hs_error *err)
{
	unsigned char buf[64];
	size_t cap = sodium_base64_ENCODED_LEN(nbytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *s;
	int rc;
	if ((rc = hs_password_init(err)) != HS_OK)
		return rc;
	if ((s = malloc(cap)) == NULL)
		return hs_error_set(err, HS_INTERNAL, "random token: out of memory");
	randombytes_buf(buf, nbytes);
	sodium_bin2base64(s, cap, buf, nbytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(buf, sizeof(buf));
	*out = s;
	return HS_OK;
}

int hs_password_random_token(char **out, hs_error *err)
{
	return random_b64(HS_PASSWORD_TOKEN_BYTES, out, err);
}

int hs_password_generate(char **out, hs_error *err) { return random_b64(18, out, err); }

void hs_password_token_sha256(const char *token, char out[HS_PASSWORD_SHA256_HEX])
{
	unsigned char d[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(d, (const unsigned char *)token, strlen(token));
	sodium_bin2hex(out, HS_PASSWORD_SHA256_HEX, d, sizeof(d));
}
