/* Worker pool: a ring buffer of jobs under one mutex and two condition
 * variables. Lock hold times are a few instructions, which is all a pool of
 * a handful of threads serving blocking handlers needs. */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct job {
	hs_pool_fn fn;
	void *arg;
} job;

struct hs_pool {
	pthread_mutex_t mu;
	pthread_cond_t has_work;
	job *ring;
	unsigned cap, head, len;
	bool stopping;
	unsigned nthreads;
	pthread_t *threads;
};

static void *worker_main(void *p)
{
	hs_pool *pool = p;
	for (;;) {
		pthread_mutex_lock(&pool->mu);
		while (pool->len == 0 && !pool->stopping)
			pthread_cond_wait(&pool->has_work, &pool->mu);
		if (pool->len == 0) { /* stopping and drained */
			pthread_mutex_unlock(&pool->mu);
			return NULL;
		}
		job j = pool->ring[pool->head];
		pool->head = (pool->head + 1) % pool->cap;
		pool->len--;
		pthread_mutex_unlock(&pool->mu);
		j.fn(j.arg);
	}
}

hs_pool *hs_pool_new(unsigned threads, unsigned queue_cap)
{
	if (threads == 0 || queue_cap == 0)
		return NULL;
	hs_pool *pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		return NULL;
	pool->ring = calloc(queue_cap, sizeof(job));
	pool->threads = calloc(threads, sizeof(pthread_t));
	if (pool->ring == NULL || pool->threads == NULL)
		goto fail;
	pool->cap = queue_cap;
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
	free(pool->ring);
	free(pool->threads);
	free(pool);
	return NULL;
}

bool hs_pool_submit(hs_pool *pool, hs_pool_fn fn, void *arg)
{
	pthread_mutex_lock(&pool->mu);
	if (pool->stopping || pool->len == pool->cap) {
		pthread_mutex_unlock(&pool->mu);
		return false;
	}
	pool->ring[(pool->head + pool->len) % pool->cap] = (job){ fn, arg };
	pool->len++;
	pthread_cond_signal(&pool->has_work);
	pthread_mutex_unlock(&pool->mu);
	return true;
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
	free(pool->ring);
	free(pool->threads);
	free(pool);
}
