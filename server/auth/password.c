/* argon2id password hashes and random tokens over libsodium. */
#include "password.h"
#include "clock.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#define OPS crypto_pwhash_OPSLIMIT_INTERACTIVE
#define MEM crypto_pwhash_MEMLIMIT_INTERACTIVE

/* The hash gate: a counting semaphore on a mutex and a monotonic condvar. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned max, running, peak;
	int wait_ms;
} gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, HS_PASSWORD_GATE_DEFAULT, 0, 0,
	   HS_PASSWORD_GATE_WAIT_DEFAULT_MS };
static pthread_once_t gate_once = PTHREAD_ONCE_INIT;

static void gate_init(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_destroy(&gate.cv);
	pthread_cond_init(&gate.cv, &a);
	pthread_condattr_destroy(&a);
}

int hs_password_gate_config(unsigned max, int wait_ms, hs_error *err)
{
	if (max == 0 || max > 256 || wait_ms < 0)
		return hs_error_set(err, HS_INVALID,
				    "password hash concurrency: 1..256, wait >= 0 ms");
	pthread_once(&gate_once, gate_init);
	pthread_mutex_lock(&gate.mu);
	gate.max = max;
	gate.wait_ms = wait_ms;
	pthread_cond_broadcast(&gate.cv);
	pthread_mutex_unlock(&gate.mu);
	return HS_OK;
}

void hs_password_gate_stats(unsigned *running, unsigned *peak)
{
	pthread_mutex_lock(&gate.mu);
	if (running != NULL)
		*running = gate.running;
	if (peak != NULL)
		*peak = gate.peak;
	pthread_mutex_unlock(&gate.mu);
}

static int gate_enter(hs_error *err)
{
	int rc = 0;
	pthread_once(&gate_once, gate_init);
	pthread_mutex_lock(&gate.mu);
	struct timespec until = hs_clock_deadline(CLOCK_MONOTONIC, gate.wait_ms);
	while (gate.running >= gate.max && rc == 0)
		rc = pthread_cond_timedwait(&gate.cv, &gate.mu, &until);
	if (gate.running >= gate.max) {
		pthread_mutex_unlock(&gate.mu);
		return hs_error_set(err, HS_LIMIT,
				    "server busy: too many password checks at once, retry shortly");
	}
	if (++gate.running > gate.peak)
		gate.peak = gate.running;
	pthread_mutex_unlock(&gate.mu);
	return HS_OK;
}

static void gate_leave(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.running--;
	pthread_cond_signal(&gate.cv);
	pthread_mutex_unlock(&gate.mu);
}

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
	if ((rc = gate_enter(err)) != HS_OK) {
		free(h);
		return rc;
	}
	rc = crypto_pwhash_str_alg(h, password, strlen(password), OPS, MEM,
				   crypto_pwhash_ALG_ARGON2ID13);
	gate_leave();
	if (rc != 0) {
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
	    strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
		return hs_error_set(err, HS_UNAUTH, "password does not match");
	if ((rc = gate_enter(err)) != HS_OK)
		return rc;
	rc = crypto_pwhash_str_verify(hash, password, strlen(password));
	gate_leave();
	if (rc != 0)
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

int hs_password_verify_dummy(const char *password, hs_error *err)
{
	int rc;
	if (hs_password_init(NULL) != HS_OK)
		return hs_error_set(err, HS_UNAUTH, "password does not match");
	pthread_once(&dummy_once, make_dummy);
	if (dummy_rc != 0)
		return hs_error_set(err, HS_UNAUTH, "password does not match");
	if (check_password(password, NULL) != HS_OK)
		password = "x";
	if ((rc = gate_enter(err)) != HS_OK)
		return rc;
	/* cannot match: the dummy password is random */
	rc = crypto_pwhash_str_verify(dummy_hash, password, strlen(password));
	gate_leave();
	(void)rc;
	return hs_error_set(err, HS_UNAUTH, "password does not match");
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
