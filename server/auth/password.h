/* Password hashing (argon2id via libsodium) and random secrets (refresh
 * tokens, generated passwords). All functions are thread-safe; call
 * hs_password_init() once before anything else (idempotent).
 *
 * Cost: crypto_pwhash OPSLIMIT_INTERACTIVE (2 passes) / MEMLIMIT_INTERACTIVE
 * (64 MiB), about 50-100 ms per hash on one core. "Moderate" (256 MiB) would
 * let a handful of concurrent logins exhaust a small container; login
 * throttling bounds how often this cost can be triggered. Hashes are the
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

/* argon2id hash string of password into *out (heap, caller frees).
 * HS_INVALID for an empty or over-long password, HS_INTERNAL when memory
 * for the hash cannot be allocated. */
int hs_password_hash(const char *password, char **out, hs_error *err);

/* HS_OK if password matches hash, HS_UNAUTH otherwise (also for a malformed
 * hash). The message is always the same generic one. */
int hs_password_verify(const char *hash, const char *password, hs_error *err);

/* Verify against a fixed dummy hash and fail: same cost as a real verify,
 * for "unknown user" paths (no user enumeration through timing). */
/* Makes the dummy hash now (64 MiB for a moment) rather than at the first
 * unknown-email login, so that login's timing matches the others. The local
 * backend calls it at start; HS_INTERNAL when libsodium fails. */
int hs_password_prepare_dummy(hs_error *err);

void hs_password_verify_dummy(const char *password);

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
