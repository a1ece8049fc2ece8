/* A fixed-size worker pool with a bounded job queue, for handlers that block
 * (disk, network). Jobs run in FIFO order; submit never blocks. */
#ifndef HS_RPC_POOL_H
#define HS_RPC_POOL_H

#include <stdbool.h>

typedef struct hs_pool hs_pool;
typedef void (*hs_pool_fn)(void *arg);

/* Starts `threads` workers; `queue_cap` jobs may wait. NULL on failure. */
hs_pool *hs_pool_new(unsigned threads, unsigned queue_cap);

/* Queues fn(arg). Returns false when the queue is full or the pool is
 * stopping: the caller still owns arg. */
bool hs_pool_submit(hs_pool *pool, hs_pool_fn fn, void *arg);

/* Runs every queued job, joins the workers and frees the pool. */
void hs_pool_free(hs_pool *pool);

#endif
