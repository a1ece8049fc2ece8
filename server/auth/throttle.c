/* Failure counters with growing delays in a bounded hash table with an LRU
 * list (design in throttle.h).
 *
 * Keys are "p:<account>\x1f<address>" for a pair and "a:<address>" for an
 * address; the caller passes the account's normal form and a bare address
 * (no port). Entries live in one array of `capacity` slots, chained by index
 * from `nbuckets` heads; a doubly linked LRU list orders them by last touch.
 * A head holds its first entry's index + 1 (0 = empty, and NIL + 1 wraps to
 * 0), so the heads come zeroed from calloc: neither array is touched, and
 * so neither is resident, before counters are stored (the default capacity
 * reserves ~41 MB of address space; a quiet server keeps a few pages of it).
 * An attacker who floods the table with fresh keys to evict a counter is
 * itself counted per address. */
#include "throttle.h"
#include "clock.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 340 /* "p:" + 254-byte email + 0x1f + address */
#define NIL ((size_t)-1)

typedef struct entry {
	char key[KEY_MAX];
	unsigned long long hash;
	long long last_ms;  /* last failure */
	long long until_ms; /* refused before this */
	int count;
	int used;
	size_t next;        /* bucket chain */
	size_t lru_prev, lru_next;
} entry;

struct hs_throttle {
	pthread_mutex_t mu;
	hs_throttle_config cfg;
	entry *e;
	size_t *buckets, nbuckets;
	size_t n, free_next;  /* slots [free_next, capacity) never used yet */
	size_t free_list;     /* released slots, chained by `next` */
	size_t lru_head, lru_tail; /* head = most recent */
};

static unsigned long long fnv1a(const char *s)
{
	unsigned long long h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

int hs_throttle_new(hs_throttle **out, const hs_throttle_config *cfg, hs_error *err)
{
	hs_throttle_config def = HS_THROTTLE_CONFIG_INIT;
	hs_throttle *t;
	if (cfg == NULL)
		cfg = &def;
	if (cfg->pair_free < 0 || cfg->address_free < 0 || cfg->base_delay_ms <= 0 ||
	    cfg->max_delay_ms < cfg->base_delay_ms || cfg->forget_s <= 0 || cfg->capacity < 2 ||
	    cfg->capacity > 10000000)
		return hs_error_set(err, HS_INVALID, "login throttle: bad limits");
	if ((t = calloc(1, sizeof(*t))) == NULL)
		goto oom;
	t->cfg = *cfg;
	t->nbuckets = 1;
	while (t->nbuckets < cfg->capacity)
		t->nbuckets <<= 1;
	t->e = calloc(cfg->capacity, sizeof(entry));
	t->buckets = calloc(t->nbuckets, sizeof(size_t)); /* all empty */
	if (t->e == NULL || t->buckets == NULL) {
		hs_throttle_free(t);
		goto oom;
	}
	t->lru_head = t->lru_tail = t->free_list = NIL;
	pthread_mutex_init(&t->mu, NULL);
	*out = t;
	return HS_OK;
oom:
	return hs_error_set(err, HS_INTERNAL, "login throttle: out of memory");
}

void hs_throttle_free(hs_throttle *t)
{
	if (t == NULL)
		return;
	if (t->e != NULL && t->buckets != NULL)
		pthread_mutex_destroy(&t->mu);
	free(t->e);
	free(t->buckets);
	free(t);
}

size_t hs_throttle_size(hs_throttle *t)
{
	pthread_mutex_lock(&t->mu);
	size_t n = t->n;
	pthread_mutex_unlock(&t->mu);
	return n;
}

/* key = prefix + a [+ 0x1f + b], cut at KEY_MAX - 1 (a longer key shares
 * its slot with others: only ever stricter). */
static void make_key(char *key, const char *prefix, const char *a, const char *b)
{
	size_t n = 0;
	for (const char *p = prefix; *p && n < KEY_MAX - 1; p++)
		key[n++] = *p;
	for (const char *p = a; *p && n < KEY_MAX - 1; p++)
		key[n++] = *p;
	if (b != NULL) {
		if (n < KEY_MAX - 1)
			key[n++] = '\x1f';
		for (const char *p = b; *p && n < KEY_MAX - 1; p++)
			key[n++] = *p;
	}
	key[n] = '\0';
}

static void lru_unlink(hs_throttle *t, size_t i)
{
	entry *e = &t->e[i];
	if (e->lru_prev != NIL) t->e[e->lru_prev].lru_next = e->lru_next;
	else t->lru_head = e->lru_next;
	if (e->lru_next != NIL) t->e[e->lru_next].lru_prev = e->lru_prev;
	else t->lru_tail = e->lru_prev;
}

static void lru_push_front(hs_throttle *t, size_t i)
{
	entry *e = &t->e[i];
	e->lru_prev = NIL;
	e->lru_next = t->lru_head;
	if (t->lru_head != NIL)
		t->e[t->lru_head].lru_prev = i;
	t->lru_head = i;
	if (t->lru_tail == NIL)
		t->lru_tail = i;
}

static size_t find(hs_throttle *t, const char *key, unsigned long long h)
{
	for (size_t i = t->buckets[h & (t->nbuckets - 1)] - 1; i != NIL; i = t->e[i].next)
		if (t->e[i].hash == h && strcmp(t->e[i].key, key) == 0)
			return i;
	return NIL;
}

static void remove_entry(hs_throttle *t, size_t i)
{
	size_t *head = &t->buckets[t->e[i].hash & (t->nbuckets - 1)];
	if (*head - 1 == i) {
		*head = t->e[i].next + 1;
	} else {
		size_t j = *head - 1;
		while (t->e[j].next != i)
			j = t->e[j].next;
		t->e[j].next = t->e[i].next;
	}
	lru_unlink(t, i);
	t->e[i].used = 0;
	t->e[i].next = t->free_list;
	t->free_list = i;
	t->n--;
}

static size_t insert(hs_throttle *t, const char *key, unsigned long long h)
{
	size_t i;
	if (t->n >= t->cfg.capacity)
		remove_entry(t, t->lru_tail); /* evict the least recently touched */
	if (t->free_list != NIL) {
		i = t->free_list;
		t->free_list = t->e[i].next;
	} else {
		i = t->free_next++;
	}
	entry *e = &t->e[i];
	memcpy(e->key, key, strlen(key) + 1);
	e->hash = h;
	e->count = 0;
	e->last_ms = 0;
	e->until_ms = 0;
	e->used = 1;
	e->next = t->buckets[h & (t->nbuckets - 1)] - 1;
	t->buckets[h & (t->nbuckets - 1)] = i + 1;
	lru_push_front(t, i);
	t->n++;
	return i;
}

/* Remaining delay of key at now (0 = none); forgets a stale counter. */
static long long delay_left(hs_throttle *t, const char *key, long long now)
{
	size_t i = find(t, key, fnv1a(key));
	if (i == NIL)
		return 0;
	entry *e = &t->e[i];
	if (now - e->last_ms >= (long long)t->cfg.forget_s * 1000) {
		remove_entry(t, i);
		return 0;
	}
	return e->until_ms > now ? e->until_ms - now : 0;
}

static void count_failure(hs_throttle *t, const char *key, int free_n, long long now)
{
	unsigned long long h = fnv1a(key);
	size_t i = find(t, key, h);
	if (i == NIL) {
		i = insert(t, key, h);
	} else {
		lru_unlink(t, i);
		lru_push_front(t, i);
	}
	entry *e = &t->e[i];
	if (e->count > 0 && now - e->last_ms >= (long long)t->cfg.forget_s * 1000)
		e->count = 0;
	if (e->count < 1000000)
		e->count++;
	e->last_ms = now;
	if (e->count >= free_n) {
		int doublings = e->count - free_n;
		long long d = t->cfg.base_delay_ms;
		while (doublings-- > 0 && d < t->cfg.max_delay_ms)
			d *= 2;
		if (d > t->cfg.max_delay_ms)
			d = t->cfg.max_delay_ms;
		e->until_ms = now + d;
	}
}

static long long now_or(long long now_ms) { return now_ms != 0 ? now_ms : hs_clock_wall_ms(); }

int hs_throttle_check(hs_throttle *t, const char *email, const char *address, long long now_ms,
		      long long *retry_ms, hs_error *err)
{
	char key[KEY_MAX];
	long long left = 0, l;
	long long now = now_or(now_ms);
	pthread_mutex_lock(&t->mu);
	if (address != NULL && t->cfg.address_free > 0) {
		make_key(key, "a:", address, NULL);
		left = delay_left(t, key, now);
	}
	if (email != NULL && address != NULL && t->cfg.pair_free > 0) {
		make_key(key, "p:", email, address);
		if ((l = delay_left(t, key, now)) > left)
			left = l;
	}
	pthread_mutex_unlock(&t->mu);
	if (retry_ms != NULL)
		*retry_ms = left;
	if (left > 0)
		return hs_error_set(err, HS_LIMIT, "Too many failed login attempts, try again later");
	return HS_OK;
}

void hs_throttle_failure(hs_throttle *t, const char *email, const char *address, long long now_ms)
{
	char key[KEY_MAX];
	long long now = now_or(now_ms);
	if (address == NULL)
		return;
	pthread_mutex_lock(&t->mu);
	if (t->cfg.address_free > 0) {
		make_key(key, "a:", address, NULL);
		count_failure(t, key, t->cfg.address_free, now);
	}
	if (email != NULL && t->cfg.pair_free > 0) {
		make_key(key, "p:", email, address);
		count_failure(t, key, t->cfg.pair_free, now);
	}
	pthread_mutex_unlock(&t->mu);
}

void hs_throttle_success(hs_throttle *t, const char *email, const char *address)
{
	char key[KEY_MAX];
	if (email == NULL || address == NULL)
		return;
	make_key(key, "p:", email, address);
	pthread_mutex_lock(&t->mu);
	size_t i = find(t, key, fnv1a(key));
	if (i != NIL)
		remove_entry(t, i);
	pthread_mutex_unlock(&t->mu);
}
