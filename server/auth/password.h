/* Password hashing (argon2id via libsodium) and random secrets (refresh
 * tokens, generated passwords). All functions are thread-safe; call
 * hs_password_init() once before anything else (idempotent).
 *
 * Cost: crypto_pwhash OPSLIMIT_INTERACTIVE (2 passes) / MEMLIMIT_INTERACTIVE
 * (64 MiB), about 50-100 ms per hash on one core. "Moderate" (256 MiB) would
 * let a handful of concurrent logins exhaust a small container. Login
 * throttling bounds how often this cost can be triggered; the hash gate
 * bounds how many run at once (a login storm costs at most gate x 64 MiB,
 * the excess waits briefly and then gets HS_LIMIT). Hashes are the
 * self-describing "$argon2id$v=19$m=...,t=...,p=1$..." strings, so the
 * parameters can be raised later: hs_password_needs_rehash() tells when. */
#ifndef HS_AUTH_PASSWORD_H
#define HS_AUTH_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define HS_PASSWORD_MAX_LEN 1024 /* longer passwords are refused (hashing DoS) */
#define HS_PASSWORD_TOKEN_BYTES 32
#define HS_PASSWORD_SHA256_HEX 65 /* 64 hex digits + NUL */

int hs_password_init(hs_error *err);

#define HS_PASSWORD_HASH_MEM_MIB 64 /* one argon2id computation */
#define HS_PASSWORD_GATE_DEFAULT 4
#define HS_PASSWORD_GATE_WAIT_DEFAULT_MS 1000

/* The hash gate, process-wide because the memory is: at most max argon2id
 * computations (hash, verify, dummy verify) run at once; a caller waits up
 * to wait_ms for a slot, then gets HS_LIMIT. Defaults: 4 and 1000 ms. Set
 * it before serving (HS_INVALID for max 0 or > 256, wait_ms < 0). */
int hs_password_gate_config(unsigned max, int wait_ms, hs_error *err);

/* Computations running now and the most ever running at once (tests,
 * metrics). */
void hs_password_gate_stats(unsigned *running, unsigned *peak);

/* argon2id hash string of password into *out (heap, caller frees).
 * HS_INVALID for an empty or over-long password, HS_LIMIT when the gate
 * stays full, HS_INTERNAL when memory for the hash cannot be allocated. */
int hs_password_hash(const char *password, char **out, hs_error *err);

/* HS_OK if password matches hash, HS_UNAUTH otherwise (also for a malformed
 * hash; the message is always the same generic one), HS_LIMIT when the gate
 * stays full. */
int hs_password_verify(const char *hash, const char *password, hs_error *err);

/* Verify against a fixed dummy hash and fail: same cost as a real verify,
 * for "unknown user" paths (no user enumeration through timing). */
/* Makes the dummy hash now (64 MiB for a moment) rather than at the first
 * unknown-email login, so that login's timing matches the others. The local
 * backend calls it at start; HS_INTERNAL when libsodium fails. */
int hs_password_prepare_dummy(hs_error *err);

/* HS_UNAUTH after a dummy verify, or HS_LIMIT when the gate stays full. */
int hs_password_verify_dummy(const char *password, hs_error *err);

/* true when hash was made with other (older/weaker) parameters. */
bool hs_password_needs_rehash(const char *hash);

/* A random token: HS_PASSWORD_TOKEN_BYTES random bytes, unpadded base64url
 * (43 chars), into *out (heap, caller frees). */
int hs_password_random_token(char **out, hs_error *err);

/* A generated password: 18 random bytes, base64url (24 chars). */
int hs_password_generate(char **out, hs_error *err);

/* Lower-case hex SHA-256 of a token, for storing refresh tokens hashed. */
void hs_password_token_sha256(const char *token, char out[HS_PASSWORD_SHA256_HEX]);

#endif
