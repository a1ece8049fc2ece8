/* A bump allocator for one call: the first block lives inside the owner,
 * overflow blocks come from malloc; everything is released at once. */
#ifndef HS_RPC_ARENA_H
#define HS_RPC_ARENA_H

#include <stddef.h>

typedef struct hs_arena_block hs_arena_block;

typedef struct hs_arena {
	char *base; /* inline block */
	size_t cap, used;
	hs_arena_block *extra; /* overflow blocks, newest first */
} hs_arena;

void hs_arena_init(hs_arena *a, void *inline_block, size_t cap);
/* Zeroed, 16-byte aligned; NULL only when malloc fails or size overflows. */
void *hs_arena_alloc(hs_arena *a, size_t size);
/* Frees overflow blocks and makes the whole inline block available again. */
void hs_arena_reset(hs_arena *a);

#endif
