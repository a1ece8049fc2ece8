/* Login throttling that a third party cannot turn against an account.
 *
 * Failed logins are counted per (account, client address) pair and per
 * client address, never per account alone: five wrong passwords from an
 * attacker's address slow down that attacker's next guesses for that
 * account, while the owner (another address) logs in as usual. A counter
 * allows `free` failures, then each further failure opens a delay that
 * doubles (base, 2 base, 4 base, ... up to max); during the delay the pair
 * (or the address) is refused with HS_LIMIT, without the password being
 * checked. A counter with no failure for `forget_s` is forgotten; a
 * successful login clears its pair (not the address: a working account of
 * one's own must not reset the address's counter).
 *
 * What it does not stop: guessing one account from very many addresses, each
 * under its limits; the argon2id cost, the hash gate (password.h) and the
 * per-address counter bound its rate, not its existence.
 *
 * Memory is bounded: at most `capacity` counters (pairs and addresses
 * together); when full, the least recently touched one is evicted.
 * Thread-safe (one mutex; every operation is O(1) expected). */
#ifndef HS_AUTH_THROTTLE_H
#define HS_AUTH_THROTTLE_H

#include <stddef.h>

#include "error.h"

typedef struct hs_throttle hs_throttle;

typedef struct hs_throttle_config {
	int pair_free;      /* failures per (account, address) before delays; 0 = no limit */
	int address_free;   /* failures per address (any account) before delays; 0 = no limit */
	int base_delay_ms;  /* first delay; doubles with each further failure */
	int max_delay_ms;   /* delays grow up to this */
	int forget_s;       /* a counter with no failure for this long is dropped */
	size_t capacity;    /* counters kept, pairs and addresses together */
} hs_throttle_config;

#define HS_THROTTLE_CONFIG_INIT { 5, 50, 1000, 900000, 3600, 100000 }

int hs_throttle_new(hs_throttle **out, const hs_throttle_config *cfg, hs_error *err);
void hs_throttle_free(hs_throttle *t);

/* HS_LIMIT (one generic message) when the (email, address) pair or the
 * address is inside a delay at time now_ms (Unix ms; 0 = the clock).
 * email is the account's normal form; either may be NULL. *retry_ms
 * (NULL allowed) gets how long the delay still runs. */
int hs_throttle_check(hs_throttle *t, const char *email, const char *address, long long now_ms,
		      long long *retry_ms, hs_error *err);
void hs_throttle_failure(hs_throttle *t, const char *email, const char *address,
			 long long now_ms);
void hs_throttle_success(hs_throttle *t, const char *email, const char *address);

/* Counters currently held (tests). */
size_t hs_throttle_size(hs_throttle *t);

#endif
