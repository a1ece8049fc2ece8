/* Worker lane: a fixed set of threads, a bounded queue, round robin between
 * keys (users).
 *
 * Every key with queued jobs has a flow: its FIFO of jobs and two counts.
 * A flow that has a queued job and is under its running bound sits in the
 * ready FIFO; a worker takes the flow at the head, runs its first job and
 * puts it back at the tail if it is still ready, so keys take turns:
 *
 *   idle --submit--> ready --worker takes a job--> ready (more queued, under bound)
 *                      ^                        \-> waiting (at user_running: back
 *                      |                             in ready when one of its jobs ends)
 *                      +------ job ends ------------/   or idle (nothing queued or running:
 *                                                        the flow is released)
 *
 * One mutex and one condition variable; each job that becomes runnable
 * signals one waiting worker (never a broadcast, so no thundering herd).
 * Lock hold times are a few pointer operations plus, for a new key, one
 * small allocation. Job nodes come from a preallocated free list. */
#include "pool.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 128
#define N_BUCKETS 256
#define FREE_FLOWS_KEPT 64

typedef struct job {
	struct job *next;
	hs_pool_fn fn;
	void *arg;
} job;

typedef struct flow {
	struct flow *hnext; /* hash chain (keyed flows) or free list */
	struct flow *rnext; /* ready FIFO */
	job *head, *tail;
	unsigned queued, running;
	bool ready, anon;
	uint32_t hash;
	char key[KEY_MAX];
} flow;

struct hs_pool {
	pthread_mutex_t mu;
	pthread_cond_t has_work;
	job *nodes, *free_jobs;
	unsigned cap, len; /* len: jobs queued (not running), all keys */
	unsigned user_running, user_queued;
	flow *buckets[N_BUCKETS];
	flow anon;
	flow *free_flows;
	unsigned n_free_flows;
	flow *ready_head, *ready_tail;
	bool stopping;
	unsigned nthreads;
	pthread_t *threads;
};

static uint32_t hash_key(const char *key)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static bool may_run(const hs_pool *pool, const flow *f)
{
	return f->anon || f->running < pool->user_running;
}

static void push_ready(hs_pool *pool, flow *f)
{
	f->ready = true;
	f->rnext = NULL;
	if (pool->ready_tail != NULL)
		pool->ready_tail->rnext = f;
	else
		pool->ready_head = f;
	pool->ready_tail = f;
}

static flow *pop_ready(hs_pool *pool)
{
	flow *f = pool->ready_head;
	if (f == NULL)
		return NULL;
	pool->ready_head = f->rnext;
	if (pool->ready_head == NULL)
		pool->ready_tail = NULL;
	f->ready = false;
	return f;
}

static flow *lookup(hs_pool *pool, const char *key, uint32_t h)
{
	for (flow *f = pool->buckets[h % N_BUCKETS]; f != NULL; f = f->hnext)
		if (f->hash == h && strcmp(f->key, key) == 0)
			return f;
	return NULL;
}

/* The flow of key, created when absent; NULL only when out of memory. */
static flow *flow_get(hs_pool *pool, const char *key)
{
	if (key == NULL)
		return &pool->anon;
	char k[KEY_MAX];
	size_t n = strnlen(key, KEY_MAX - 1);
	memcpy(k, key, n);
	k[n] = '\0';
	uint32_t h = hash_key(k);
	flow *f = lookup(pool, k, h);
	if (f != NULL)
		return f;
	f = pool->free_flows;
	if (f != NULL) {
		pool->free_flows = f->hnext;
		pool->n_free_flows--;
	} else if ((f = malloc(sizeof(*f))) == NULL) {
		return NULL;
	}
	memset(f, 0, sizeof(*f));
	memcpy(f->key, k, n + 1);
	f->hash = h;
	f->hnext = pool->buckets[h % N_BUCKETS];
	pool->buckets[h % N_BUCKETS] = f;
	return f;
}

/* A keyed flow with nothing queued or running goes away. */
static void flow_release_if_idle(hs_pool *pool, flow *f)
{
	if (f == &pool->anon || f->queued > 0 || f->running > 0 || f->ready)
		return;
	for (flow **p = &pool->buckets[f->hash % N_BUCKETS]; *p != NULL; p = &(*p)->hnext) {
		if (*p == f) {
			*p = f->hnext;
			break;
		}
	}
	if (pool->n_free_flows < FREE_FLOWS_KEPT) {
		f->hnext = pool->free_flows;
		pool->free_flows = f;
		pool->n_free_flows++;
	} else {
		free(f);
	}
}

static void *worker_main(void *p)
{
	hs_pool *pool = p;
	pthread_mutex_lock(&pool->mu);
	for (;;) {
		while (pool->ready_head == NULL && !(pool->stopping && pool->len == 0))
			pthread_cond_wait(&pool->has_work, &pool->mu);
		flow *f = pop_ready(pool);
		if (f == NULL) /* stopping and drained */
			break;
		job *j = f->head;
		f->head = j->next;
		if (f->head == NULL)
			f->tail = NULL;
		f->queued--;
		f->running++;
		pool->len--;
		if (pool->stopping && pool->len == 0) /* waiters behind a bound may leave now */
			pthread_cond_broadcast(&pool->has_work);
		if (f->queued > 0 && may_run(pool, f)) {
			push_ready(pool, f); /* its turn again after the others' */
			pthread_cond_signal(&pool->has_work);
		}
		hs_pool_fn fn = j->fn;
		void *arg = j->arg;
		j->next = pool->free_jobs;
		pool->free_jobs = j;
		pthread_mutex_unlock(&pool->mu);

		fn(arg);

		pthread_mutex_lock(&pool->mu);
		f->running--;
		if (f->queued > 0 && !f->ready && may_run(pool, f))
			push_ready(pool, f); /* this worker loops and takes it (or another's) */
		else
			flow_release_if_idle(pool, f);
	}
	pthread_mutex_unlock(&pool->mu);
	return NULL;
}

hs_pool *hs_pool_new_fair(unsigned threads, unsigned queue_cap, unsigned user_running,
			  unsigned user_queued)
{
	if (threads == 0 || queue_cap == 0)
		return NULL;
	hs_pool *pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		return NULL;
	pool->nodes = calloc(queue_cap, sizeof(job));
	pool->threads = calloc(threads, sizeof(pthread_t));
	if (pool->nodes == NULL || pool->threads == NULL)
		goto fail;
	for (unsigned i = 0; i < queue_cap; i++) {
		pool->nodes[i].next = pool->free_jobs;
		pool->free_jobs = &pool->nodes[i];
	}
	pool->cap = queue_cap;
	pool->user_running = user_running == 0 || user_running > threads ? threads : user_running;
	pool->user_queued = user_queued == 0 ? UINT32_MAX : user_queued;
	pool->anon.anon = true;
	if (pthread_mutex_init(&pool->mu, NULL) != 0)
		goto fail;
	if (pthread_cond_init(&pool->has_work, NULL) != 0) {
		pthread_mutex_destroy(&pool->mu);
		goto fail;
	}
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
			hs_pool_free(pool); /* joins the ones started */
			return NULL;
		}
		pool->nthreads++;
	}
	return pool;
fail:
	free(pool->nodes);
	free(pool->threads);
	free(pool);
	return NULL;
}

hs_pool *hs_pool_new(unsigned threads, unsigned queue_cap)
{
	return hs_pool_new_fair(threads, queue_cap, 0, 0);
}

hs_pool_rc hs_pool_submit_as(hs_pool *pool, const char *key, bool continuation, hs_pool_fn fn,
			     void *arg)
{
	hs_pool_rc rc = HS_POOL_OK;
	pthread_mutex_lock(&pool->mu);
	flow *f = NULL;
	if (pool->stopping) {
		rc = HS_POOL_STOPPING;
	} else if (pool->len == pool->cap || pool->free_jobs == NULL) {
		rc = HS_POOL_FULL;
	} else if ((f = flow_get(pool, key)) == NULL) {
		rc = HS_POOL_FULL; /* out of memory for a new key: as good as full */
	} else if (!f->anon && !continuation && f->queued + f->running >= pool->user_queued) {
		rc = HS_POOL_USER_FULL;
	}
	if (rc != HS_POOL_OK) {
		if (f != NULL)
			flow_release_if_idle(pool, f);
		pthread_mutex_unlock(&pool->mu);
		return rc;
	}
	job *j = pool->free_jobs;
	pool->free_jobs = j->next;
	*j = (job){ NULL, fn, arg };
	if (f->tail != NULL)
		f->tail->next = j;
	else
		f->head = j;
	f->tail = j;
	f->queued++;
	pool->len++;
	if (!f->ready && may_run(pool, f)) {
		push_ready(pool, f);
		pthread_cond_signal(&pool->has_work);
	}
	pthread_mutex_unlock(&pool->mu);
	return HS_POOL_OK;
}

bool hs_pool_submit(hs_pool *pool, hs_pool_fn fn, void *arg)
{
	return hs_pool_submit_as(pool, NULL, false, fn, arg) == HS_POOL_OK;
}

unsigned hs_pool_key_load(hs_pool *pool, const char *key)
{
	char k[KEY_MAX];
	if (key != NULL) {
		size_t n = strnlen(key, KEY_MAX - 1);
		memcpy(k, key, n);
		k[n] = '\0';
	}
	pthread_mutex_lock(&pool->mu);
	const flow *f = key == NULL ? &pool->anon : lookup(pool, k, hash_key(k));
	unsigned n = f != NULL ? f->queued + f->running : 0;
	pthread_mutex_unlock(&pool->mu);
	return n;
}

unsigned hs_pool_queued(hs_pool *pool)
{
	pthread_mutex_lock(&pool->mu);
	unsigned n = pool->len;
	pthread_mutex_unlock(&pool->mu);
	return n;
}

void hs_pool_free(hs_pool *pool)
{
	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->mu);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->has_work);
	pthread_mutex_unlock(&pool->mu);
	for (unsigned i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_cond_destroy(&pool->has_work);
	pthread_mutex_destroy(&pool->mu);
	for (unsigned b = 0; b < N_BUCKETS; b++) {
		while (pool->buckets[b] != NULL) { /* none left once drained; be safe */
			flow *f = pool->buckets[b];
			pool->buckets[b] = f->hnext;
			free(f);
		}
	}
	while (pool->free_flows != NULL) {
		flow *f = pool->free_flows;
		pool->free_flows = f->hnext;
		free(f);
	}
	free(pool->nodes);
	free(pool->threads);
	free(pool);
}
