/* Fixed-window failure counters in a bounded hash table with an LRU list.
 *
 * Keys are "a:<lowercased email>" and "p:<address>", where a gRPC peer
 * "ipv4:1.2.3.4:5678" / "ipv6:[::1]:5678" loses its port (each connection
 * has a new one). Entries live in one array of `capacity` slots, chained by
 * index from `nbuckets` heads; a doubly linked LRU list orders them by last
 * touch. Eviction when full: the LRU entry. An attacker who floods the table
 * with fresh keys to evict a victim's counter is itself limited per peer. */
#include "throttle.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_MAX 300
#define NIL ((size_t)-1)

typedef struct entry {
	char key[KEY_MAX];
	unsigned long long hash;
	long long window_start;
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
	if (cfg->account_max < 0 || cfg->peer_max < 0 || cfg->account_window_s <= 0 ||
	    cfg->peer_window_s <= 0 || cfg->capacity < 2 || cfg->capacity > 10000000)
		return hs_error_set(err, HS_INVALID, "login throttle: bad limits");
	if ((t = calloc(1, sizeof(*t))) == NULL)
		goto oom;
	t->cfg = *cfg;
	t->nbuckets = 1;
	while (t->nbuckets < cfg->capacity)
		t->nbuckets <<= 1;
	t->e = calloc(cfg->capacity, sizeof(entry));
	t->buckets = malloc(t->nbuckets * sizeof(size_t));
	if (t->e == NULL || t->buckets == NULL) {
		hs_throttle_free(t);
		goto oom;
	}
	for (size_t i = 0; i < t->nbuckets; i++)
		t->buckets[i] = NIL;
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

/* "a:" + lowercased email, or "p:" + address without port; 0 if too long. */
static int make_key(char *key, const char *prefix, const char *s, int lower)
{
	size_t n = strlen(s), start = 0, end = n;
	if (!lower) {
		if (strncmp(s, "ipv4:", 5) == 0) {
			const char *colon = strrchr(s + 5, ':');
			if (colon != NULL)
				end = (size_t)(colon - s);
		} else if (strncmp(s, "ipv6:[", 6) == 0) {
			const char *br = strchr(s, ']');
			if (br != NULL)
				end = (size_t)(br - s) + 1;
		}
	}
	if (end - start + 3 > KEY_MAX)
		end = start + KEY_MAX - 3; /* long keys share a slot: only stricter */
	memcpy(key, prefix, 2);
	for (size_t i = start; i < end; i++)
		key[2 + i - start] = lower ? (char)tolower((unsigned char)s[i]) : s[i];
	key[2 + end - start] = '\0';
	return 1;
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
	for (size_t i = t->buckets[h & (t->nbuckets - 1)]; i != NIL; i = t->e[i].next)
		if (t->e[i].hash == h && strcmp(t->e[i].key, key) == 0)
			return i;
	return NIL;
}

static void remove_entry(hs_throttle *t, size_t i)
{
	size_t *p = &t->buckets[t->e[i].hash & (t->nbuckets - 1)];
	while (*p != i)
		p = &t->e[*p].next;
	*p = t->e[i].next;
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
	e->window_start = 0;
	e->used = 1;
	e->next = t->buckets[h & (t->nbuckets - 1)];
	t->buckets[h & (t->nbuckets - 1)] = i;
	lru_push_front(t, i);
	t->n++;
	return i;
}

static int locked_out(hs_throttle *t, const char *key, int max, int window, long long now)
{
	if (max == 0)
		return 0;
	size_t i = find(t, key, fnv1a(key));
	if (i == NIL)
		return 0;
	entry *e = &t->e[i];
	if (now - e->window_start >= window) {
		remove_entry(t, i);
		return 0;
	}
	return e->count >= max;
}

static void count_failure(hs_throttle *t, const char *key, int max, int window, long long now)
{
	if (max == 0)
		return;
	unsigned long long h = fnv1a(key);
	size_t i = find(t, key, h);
	if (i == NIL) {
		i = insert(t, key, h);
	} else {
		lru_unlink(t, i);
		lru_push_front(t, i);
	}
	entry *e = &t->e[i];
	if (e->count == 0 || now - e->window_start >= window) {
		e->window_start = now;
		e->count = 0;
	}
	if (e->count < max)
		e->count++;
}

static long long now_or(long long now) { return now ? now : (long long)time(NULL); }

int hs_throttle_check(hs_throttle *t, const char *email, const char *peer, long long now,
		      hs_error *err)
{
	char ka[KEY_MAX], kp[KEY_MAX];
	int limited = 0;
	now = now_or(now);
	pthread_mutex_lock(&t->mu);
	if (email != NULL && make_key(ka, "a:", email, 1))
		limited |= locked_out(t, ka, t->cfg.account_max, t->cfg.account_window_s, now);
	if (peer != NULL && make_key(kp, "p:", peer, 0))
		limited |= locked_out(t, kp, t->cfg.peer_max, t->cfg.peer_window_s, now);
	pthread_mutex_unlock(&t->mu);
	if (limited)
		return hs_error_set(err, HS_LIMIT, "Too many failed login attempts, try again later");
	return HS_OK;
}

void hs_throttle_failure(hs_throttle *t, const char *email, const char *peer, long long now)
{
	char ka[KEY_MAX], kp[KEY_MAX];
	now = now_or(now);
	pthread_mutex_lock(&t->mu);
	if (email != NULL && make_key(ka, "a:", email, 1))
		count_failure(t, ka, t->cfg.account_max, t->cfg.account_window_s, now);
	if (peer != NULL && make_key(kp, "p:", peer, 0))
		count_failure(t, kp, t->cfg.peer_max, t->cfg.peer_window_s, now);
	pthread_mutex_unlock(&t->mu);
}

void hs_throttle_success(hs_throttle *t, const char *email, const char *peer)
{
	char ka[KEY_MAX];
	(void)peer;
	if (email == NULL || !make_key(ka, "a:", email, 1))
		return;
	pthread_mutex_lock(&t->mu);
	size_t i = find(t, ka, fnv1a(ka));
	if (i != NIL)
		remove_entry(t, i);
	pthread_mutex_unlock(&t->mu);
}
