/* Verified access tokens, by token (see token_cache.h).
 *
 * Layout: n_sets sets of WAYS entries; a token hashes (64-bit FNV-1a) to
 * one set; the set's mutex is locks[set % N_LOCKS]. An entry holds a heap
 * copy of its token, compared byte for byte on lookup, so a hash collision
 * is only a slower miss. Replacement in a set: an empty or expired way,
 * else the oldest insertion (a per-set round-robin cursor). */
#include "token_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAYS 4
#define N_LOCKS 16

typedef struct slot {
	char *token; /* NULL = empty */
	size_t len;
	uint64_t hash, key_gen;
	long long valid_until;
	hs_token_entry e;
} slot;

struct hs_token_cache {
	size_t n_sets;
	slot *slots;           /* n_sets * WAYS */
	unsigned char *cursor; /* per set: the next way to replace */
	pthread_mutex_t locks[N_LOCKS];
};

/* A word at a time (a JWT is ~300 bytes; FNV-1a a byte at a time was 1.4 %
 * of GetTask's CPU). Not keyed: only verified tokens are ever stored, and a
 * lookup compares the whole token, so a collision costs a miss, never a
 * wrong hit. */
static uint64_t mix(uint64_t h, uint64_t w)
{
	h ^= w;
	h *= 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 32);
}

static uint64_t hash_bytes(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull ^ n;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = mix(h, w);
	}
	if (i < n) {
		uint64_t w = 0;
		memcpy(&w, p + i, n - i);
		h = mix(h, w);
	}
	return h ^ (h >> 29);
}

hs_token_cache *hs_token_cache_new(size_t capacity)
{
	if (capacity == 0)
		capacity = 4096;
	hs_token_cache *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->n_sets = (capacity + WAYS - 1) / WAYS;
	c->slots = calloc(c->n_sets * WAYS, sizeof(slot));
	c->cursor = calloc(c->n_sets, 1);
	if (c->slots == NULL || c->cursor == NULL) {
		free(c->slots);
		free(c->cursor);
		free(c);
		return NULL;
	}
	for (int i = 0; i < N_LOCKS; i++)
		pthread_mutex_init(&c->locks[i], NULL);
	return c;
}

void hs_token_cache_flush(hs_token_cache *c)
{
	for (size_t s = 0; s < c->n_sets; s++) {
		pthread_mutex_t *mu = &c->locks[s % N_LOCKS];
		pthread_mutex_lock(mu);
		for (int w = 0; w < WAYS; w++) {
			slot *sl = &c->slots[s * WAYS + w];
			free(sl->token);
			memset(sl, 0, sizeof(*sl));
		}
		pthread_mutex_unlock(mu);
	}
}

void hs_token_cache_free(hs_token_cache *c)
{
	if (c == NULL)
		return;
	hs_token_cache_flush(c);
	for (int i = 0; i < N_LOCKS; i++)
		pthread_mutex_destroy(&c->locks[i]);
	free(c->slots);
	free(c->cursor);
	free(c);
}

bool hs_token_cache_get(hs_token_cache *c, const char *token, size_t len, uint64_t key_gen,
			long long now_s, hs_token_entry *out)
{
	if (len == 0 || len > HS_TOKEN_CACHE_TOKEN_MAX)
		return false;
	uint64_t h = hash_bytes(token, len);
	size_t set = (size_t)(h % c->n_sets);
	pthread_mutex_t *mu = &c->locks[set % N_LOCKS];
	bool hit = false;
	pthread_mutex_lock(mu);
	for (int w = 0; w < WAYS && !hit; w++) {
		const slot *sl = &c->slots[set * WAYS + w];
		if (sl->token != NULL && sl->hash == h && sl->len == len && sl->key_gen == key_gen &&
		    now_s < sl->valid_until && memcmp(sl->token, token, len) == 0) {
			*out = sl->e;
			hit = true;
		}
	}
	pthread_mutex_unlock(mu);
	return hit;
}

void hs_token_cache_put(hs_token_cache *c, const char *token, size_t len, uint64_t key_gen,
			long long valid_until_s, const hs_token_entry *e)
{
	if (len == 0 || len > HS_TOKEN_CACHE_TOKEN_MAX)
		return;
	char *copy = malloc(len);
	if (copy == NULL)
		return;
	memcpy(copy, token, len);
	uint64_t h = hash_bytes(token, len);
	size_t set = (size_t)(h % c->n_sets);
	pthread_mutex_t *mu = &c->locks[set % N_LOCKS];
	char *old = NULL;
	pthread_mutex_lock(mu);
	slot *ways = &c->slots[set * WAYS];
	int victim = -1;
	for (int w = 0; w < WAYS && victim < 0; w++) /* already there (two first checks at once) */
		if (ways[w].token != NULL && ways[w].hash == h && ways[w].len == len &&
		    memcmp(ways[w].token, token, len) == 0)
			victim = w;
	long long now = (long long)time(NULL);
	for (int w = 0; w < WAYS && victim < 0; w++) /* an empty or expired way */
		if (ways[w].token == NULL || ways[w].valid_until <= now)
			victim = w;
	if (victim < 0) {
		victim = c->cursor[set] % WAYS;
		c->cursor[set] = (unsigned char)((victim + 1) % WAYS);
	}
	slot *sl = &ways[victim];
	old = sl->token;
	sl->token = copy;
	sl->len = len;
	sl->hash = h;
	sl->key_gen = key_gen;
	sl->valid_until = valid_until_s;
	sl->e = *e;
	pthread_mutex_unlock(mu);
	free(old);
}

size_t hs_token_cache_size(hs_token_cache *c)
{
	size_t n = 0;
	for (size_t s = 0; s < c->n_sets; s++) {
		pthread_mutex_t *mu = &c->locks[s % N_LOCKS];
		pthread_mutex_lock(mu);
		for (int w = 0; w < WAYS; w++)
			n += c->slots[s * WAYS + w].token != NULL;
		pthread_mutex_unlock(mu);
	}
	return n;
}
