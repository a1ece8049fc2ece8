/* Call arena: most calls fit the inline block and never touch malloc. */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct hs_arena_block {
	hs_arena_block *next;
	size_t cap, used;
	_Alignas(16) char data[];
};

#define ALIGN16(n) (((n) + 15u) & ~(size_t)15u)

void hs_arena_init(hs_arena *a, void *inline_block, size_t cap)
{
	a->base = inline_block;
	a->cap = cap;
	a->used = 0;
	a->extra = NULL;
}

void *hs_arena_alloc(hs_arena *a, size_t size)
{
	if (size == 0)
		size = 1;
	if (size > SIZE_MAX / 2)
		return NULL;
	size_t need = ALIGN16(size);
	if (a->cap - a->used >= need) {
		void *p = a->base + a->used;
		a->used += need;
		memset(p, 0, size);
		return p;
	}
	hs_arena_block *b = a->extra;
	if (b == NULL || b->cap - b->used < need) {
		size_t cap = need > 8192 ? need : 8192;
		b = malloc(sizeof(*b) + cap);
		if (b == NULL)
			return NULL;
		b->cap = cap;
		b->used = 0;
		b->next = a->extra;
		a->extra = b;
	}
	void *p = b->data + b->used;
	b->used += need;
	memset(p, 0, size);
	return p;
}

void hs_arena_reset(hs_arena *a)
{
	hs_arena_block *b = a->extra;
	while (b != NULL) {
		hs_arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->extra = NULL;
	a->used = 0;
}
