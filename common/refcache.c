/* A small LRU cache of reference-counted values; see refcache.h. */
#include "refcache.h"

#include <stdlib.h>
#include <string.h>

void hs_refcache_init(hs_refcache *c, hs_refcache_entry **slots, size_t cap,
		      void (*destroy)(void *val))
{
	*c = (hs_refcache){ .slots = slots, .cap = cap, .destroy = destroy };
}

static void unref(hs_refcache *c, hs_refcache_entry *e)
{
	if (--e->refs > 0)
		return;
	c->destroy(e->val);
	free(e);
}

hs_refcache_entry *hs_refcache_acquire(hs_refcache *c, const char *key,
				       void *(*make)(void *ctx, const char *key), void *ctx)
{
	size_t n = strlen(key);
	if (n >= sizeof(((hs_refcache_entry *)0)->key))
		return NULL;
	hs_refcache_entry *e = NULL;
	size_t free_slot = c->cap, lru = 0;
	for (size_t i = 0; i < c->cap && e == NULL; i++) {
		hs_refcache_entry *q = c->slots[i];
		if (q == NULL) {
			if (free_slot == c->cap)
				free_slot = i;
		} else if (strcmp(q->key, key) == 0) {
			e = q;
		} else if (c->slots[lru] == NULL || q->used < c->slots[lru]->used) {
			lru = i;
		}
	}
	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL)
			return NULL;
		memcpy(e->key, key, n + 1);
		if ((e->val = make(ctx, key)) == NULL) {
			free(e);
			return NULL;
		}
		size_t slot = free_slot;
		if (slot == c->cap) { /* full: the least recently used goes */
			slot = lru;
			unref(c, c->slots[slot]);
		}
		c->slots[slot] = e;
		e->refs = 1; /* the cache's */
	}
	e->refs++;
	e->used = ++c->tick;
	return e;
}

void hs_refcache_release(hs_refcache *c, hs_refcache_entry *e)
{
	if (e != NULL)
		unref(c, e);
}

void hs_refcache_clear(hs_refcache *c)
{
	for (size_t i = 0; i < c->cap; i++) {
		if (c->slots[i] != NULL)
			unref(c, c->slots[i]);
		c->slots[i] = NULL;
	}
}

size_t hs_refcache_count(const hs_refcache *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->cap; i++)
		n += c->slots[i] != NULL;
	return n;
}
