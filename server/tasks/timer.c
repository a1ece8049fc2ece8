/* Binary min-heap with intrusive indexes (see timer.h). */
#include "timer.h"

#include <stdlib.h>

void hs_timer_node_init(hs_timer_node *node)
{
	node->deadline = 0;
	node->index = HS_TIMER_UNARMED;
}

void hs_timer_heap_init(hs_timer_heap *h)
{
	h->v = NULL;
	h->n = h->cap = 0;
}

void hs_timer_heap_dispose(hs_timer_heap *h)
{
	for (size_t i = 0; i < h->n; i++)
		h->v[i]->index = HS_TIMER_UNARMED;
	free(h->v);
	hs_timer_heap_init(h);
}

static void place(hs_timer_heap *h, size_t i, hs_timer_node *node)
{
	h->v[i] = node;
	node->index = i;
}

static void sift_up(hs_timer_heap *h, size_t i)
{
	hs_timer_node *node = h->v[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (h->v[parent]->deadline <= node->deadline)
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, node);
}

static void sift_down(hs_timer_heap *h, size_t i)
{
	hs_timer_node *node = h->v[i];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;
		int64_t best = node->deadline;
		if (l < h->n && h->v[l]->deadline < best) {
			min = l;
			best = h->v[l]->deadline;
		}
		if (r < h->n && h->v[r]->deadline < best)
			min = r;
		if (min == i)
			break;
		place(h, i, h->v[min]);
		i = min;
	}
	place(h, i, node);
}

int hs_timer_arm(hs_timer_heap *h, hs_timer_node *node, int64_t deadline)
{
	if (hs_timer_armed(node)) {
		int64_t old = node->deadline;
		node->deadline = deadline;
		if (deadline < old)
			sift_up(h, node->index);
		else if (deadline > old)
			sift_down(h, node->index);
		return HS_OK;
	}
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		hs_timer_node **v = realloc(h->v, cap * sizeof(*v));
		if (v == NULL)
			return HS_INTERNAL;
		h->v = v;
		h->cap = cap;
	}
	node->deadline = deadline;
	place(h, h->n++, node);
	sift_up(h, node->index);
	return HS_OK;
}

void hs_timer_cancel(hs_timer_heap *h, hs_timer_node *node)
{
	if (!hs_timer_armed(node))
		return;
	size_t i = node->index;
	node->index = HS_TIMER_UNARMED;
	h->n--;
	if (i == h->n)
		return;
	hs_timer_node *last = h->v[h->n];
	place(h, i, last);
	/* The moved node may belong above or below its new slot. */
	sift_up(h, i);
	sift_down(h, last->index);
}

hs_timer_node *hs_timer_peek(const hs_timer_heap *h)
{
	return h->n > 0 ? h->v[0] : NULL;
}

hs_timer_node *hs_timer_pop_expired(hs_timer_heap *h, int64_t now)
{
	hs_timer_node *top = hs_timer_peek(h);
	if (top == NULL || top->deadline > now)
		return NULL;
	hs_timer_cancel(h, top);
	return top;
}
