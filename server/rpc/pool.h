/* A fixed-size worker pool ("lane") with a bounded job queue, for handlers
 * that block (disk, network), fair between the users who submit jobs.
 *
 * Jobs carry a key (the caller's user id; NULL = one shared anonymous
 * flow). Each key's jobs run in FIFO order; keys take turns (round robin),
 * so one user's backlog delays another user's job by at most one job per
 * busy key. Two per-key bounds (the anonymous flow has neither):
 *   user_running  jobs of one key running at once; the rest wait their turn,
 *   user_queued   jobs of one key queued or running; more are refused.
 * Submit never blocks. */
#ifndef HS_RPC_POOL_H
#define HS_RPC_POOL_H

#include <stdbool.h>

typedef struct hs_pool hs_pool;
typedef void (*hs_pool_fn)(void *arg);

typedef enum hs_pool_rc {
	HS_POOL_OK = 0,
	HS_POOL_FULL,      /* the lane's queue is full */
	HS_POOL_USER_FULL, /* the key already has user_queued jobs queued or running */
	HS_POOL_STOPPING,  /* the pool is being freed */
} hs_pool_rc;

/* Starts `threads` workers; `queue_cap` jobs may wait; no per-key bounds.
 * NULL on failure. */
hs_pool *hs_pool_new(unsigned threads, unsigned queue_cap);

/* The same with per-key bounds (user_running 0 = threads; user_queued 0 =
 * unbounded but for queue_cap). */
hs_pool *hs_pool_new_fair(unsigned threads, unsigned queue_cap, unsigned user_running,
			  unsigned user_queued);

/* Queues fn(arg) as a job of key (copied; NULL = anonymous). A continuation
 * (the next step of work already admitted, e.g. a stream's next batch) is
 * exempt from user_queued but still waits for its turn and for
 * user_running. Anything but HS_POOL_OK: the caller still owns arg. */
hs_pool_rc hs_pool_submit_as(hs_pool *pool, const char *key, bool continuation, hs_pool_fn fn,
			     void *arg);

/* hs_pool_submit_as(pool, NULL, false, fn, arg) == HS_POOL_OK. */
bool hs_pool_submit(hs_pool *pool, hs_pool_fn fn, void *arg);

/* Jobs of key queued or running now (0 for an unknown key); for tests. */
unsigned hs_pool_key_load(hs_pool *pool, const char *key);

/* Jobs waiting (not running), all keys; for metrics. */
unsigned hs_pool_queued(hs_pool *pool);

/* Runs every queued job, joins the workers and frees the pool. */
void hs_pool_free(hs_pool *pool);

#endif
