/* A binary min-heap of deadlines with an intrusive index map: every node
 * knows its slot in the heap, so arming, re-arming and cancelling one node
 * is O(log n) and finding the earliest deadline is O(1). The health module
 * keeps one node per task; a single thread sleeps until the earliest
 * deadline, so healthy tasks cost nothing while they heartbeat in time.
 *
 * Not thread-safe: the owner serialises access (the task registry holds its
 * lock around every call). Nodes are the caller's memory and must stay alive
 * while armed. */
#ifndef HS_TASKS_TIMER_H
#define HS_TASKS_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define HS_TIMER_UNARMED SIZE_MAX

typedef struct hs_timer_node {
	int64_t deadline; /* any monotonic unit; the owner's choice (ms here) */
	size_t index;     /* slot in the heap, HS_TIMER_UNARMED when not armed */
} hs_timer_node;

typedef struct hs_timer_heap {
	hs_timer_node **v;
	size_t n, cap;
} hs_timer_heap;

#define HS_TIMER_NODE_INIT { 0, HS_TIMER_UNARMED }

void hs_timer_node_init(hs_timer_node *node);
void hs_timer_heap_init(hs_timer_heap *h);
void hs_timer_heap_dispose(hs_timer_heap *h); /* nodes are not touched */

static inline bool hs_timer_armed(const hs_timer_node *node)
{
	return node->index != HS_TIMER_UNARMED;
}

static inline size_t hs_timer_count(const hs_timer_heap *h)
{
	return h->n;
}

/* Arm node at deadline, or move it there if it is already armed.
 * HS_INTERNAL only when growing the heap fails (node left as it was). */
int hs_timer_arm(hs_timer_heap *h, hs_timer_node *node, int64_t deadline);

/* Disarm node; a no-op when it is not armed. */
void hs_timer_cancel(hs_timer_heap *h, hs_timer_node *node);

/* The node with the earliest deadline (ties: any), or NULL when empty. */
hs_timer_node *hs_timer_peek(const hs_timer_heap *h);

/* Remove and return the earliest node if its deadline <= now, else NULL.
 * The returned node is unarmed. */
hs_timer_node *hs_timer_pop_expired(hs_timer_heap *h, int64_t now);

#endif
