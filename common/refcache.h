/* A small cache of reference-counted values keyed by a short string (a
 * node address), the least recently used evicted when it is full. Used for
 * the channels harnessd forwards over (server/rpc/forward.c) and the
 * channels a client follows to (clients/follow.c): one rule for when a
 * cached channel may be destroyed.
 *
 * The cache holds one reference to each entry it caches; every acquire
 * adds one for its caller; an evicted entry is destroyed when its last
 * reference is released, so a call still using it finishes on it. Not
 * thread-safe: the owner holds its own lock around every call (the
 * callbacks run under it). */
#ifndef HS_COMMON_REFCACHE_H
#define HS_COMMON_REFCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct hs_refcache_entry {
	char key[HS_ERROR_WHERE_MAX];
	void *val;     /* made by the acquire's make callback */
	unsigned refs; /* the cache's (while cached) + one per acquire */
	uint64_t used; /* the cache's tick at the last acquire: LRU */
} hs_refcache_entry;

typedef struct hs_refcache {
	hs_refcache_entry **slots; /* the owner's storage, cap entries, NULL = free */
	size_t cap;
	uint64_t tick;
	void (*destroy)(void *val); /* called once, at the last release */
} hs_refcache;

/* slots: cap zeroed pointers the owner keeps for the cache's life. */
void hs_refcache_init(hs_refcache *c, hs_refcache_entry **slots, size_t cap,
		      void (*destroy)(void *val));

/* The entry for key (strlen(key) < HS_ERROR_WHERE_MAX), with a reference
 * for the caller: the cached one, or a new one whose value make(ctx, key)
 * returns (NULL: nothing cached, NULL returned), evicting the least
 * recently used entry when the cache is full. NULL on failure. */
hs_refcache_entry *hs_refcache_acquire(hs_refcache *c, const char *key,
				       void *(*make)(void *ctx, const char *key), void *ctx);

/* Drops the caller's reference (NULL ok). */
void hs_refcache_release(hs_refcache *c, hs_refcache_entry *e);

/* Drops the cache's references: entries nobody holds are destroyed now,
 * the others at their last release. The cache is empty afterwards. */
void hs_refcache_clear(hs_refcache *c);

size_t hs_refcache_count(const hs_refcache *c);

#endif
