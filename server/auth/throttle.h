/* Login throttling: failed logins are counted per account (normalised email)
 * and per peer address in fixed windows that start at the first failure;
 * once a counter reaches its limit, logins for that account/peer are refused
 * with HS_LIMIT until the window ends. A success clears the account counter
 * (not the peer's). Memory is bounded: at most `capacity` entries, expired
 * entries are dropped when next looked at, and when full the least
 * recently touched entry is evicted.
 * Thread-safe (one mutex; every operation is O(1) expected). */
#ifndef HS_AUTH_THROTTLE_H
#define HS_AUTH_THROTTLE_H

#include <stddef.h>

#include "error.h"

typedef struct hs_throttle hs_throttle;

typedef struct hs_throttle_config {
	int account_max;      /* failures per account per window; 0 = no limit */
	int account_window_s;
	int peer_max;         /* failures per peer per window; 0 = no limit */
	int peer_window_s;
	size_t capacity;      /* entries kept, accounts and peers together */
} hs_throttle_config;

#define HS_THROTTLE_CONFIG_INIT { 5, 900, 20, 60, 10000 }

int hs_throttle_new(hs_throttle **out, const hs_throttle_config *cfg, hs_error *err);
void hs_throttle_free(hs_throttle *t);

/* HS_LIMIT (generic message) if either the account or the peer is locked
 * out at time now (Unix s; 0 = current time). email/peer may be NULL. */
int hs_throttle_check(hs_throttle *t, const char *email, const char *peer, long long now,
		      hs_error *err);
void hs_throttle_failure(hs_throttle *t, const char *email, const char *peer, long long now);
void hs_throttle_success(hs_throttle *t, const char *email, const char *peer);

/* Entries currently held (tests). */
size_t hs_throttle_size(hs_throttle *t);

#endif
