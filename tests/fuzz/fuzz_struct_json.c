/* libFuzzer target: google.protobuf.Struct <-> JSON text for external_state
 * (clients/pbjson.c, hs_pbjson_struct_*: the adapters' one Struct codec). First byte even: the rest is JSON text
 * -> Struct -> JSON -> Struct -> JSON (the two JSON texts must agree). Odd: the
 * rest is a Struct on the wire (decoded as harnessd does) -> JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "pbjson.h"

/* The adapter allocates from the call arena; so do we. */
static void *arena_alloc(void *payload, size_t size) { return hs_arena_alloc(payload, size); }
static void arena_free(void *payload, void *p)
{
	(void)payload;
	(void)p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	static char block_a[1024], block_b[1024];
	hs_arena a, b;
	hs_arena_init(&a, block_a, sizeof(block_a));
	hs_arena_init(&b, block_b, sizeof(block_b));
	ProtobufCAllocator aa = { arena_alloc, arena_free, &a }, ab = { arena_alloc, arena_free, &b };
	if (data[0] & 1) {
		ProtobufCMessage *m = NULL;
		if (hs_rpc__decode(&google__protobuf__struct__descriptor, data + 1, size - 1, true,
				   HS_RPC_DEPTH_DEFAULT, hs_rpc__decode_budget(size, 64u << 20), &a, &m,
				   NULL) == HS_OK) {
			char *json = NULL;
			if (hs_pbjson_struct_to_text((const Google__Protobuf__Struct *)m, &json, NULL) == HS_OK) {
				Google__Protobuf__Struct *s = NULL;
				if (hs_pbjson_struct_from_text(json, &ab, &s, NULL) != HS_OK)
					abort(); /* our own JSON must convert back */
				free(json);
			}
		}
	} else {
		char *text = malloc(size);
		if (text == NULL)
			abort();
		memcpy(text, data + 1, size - 1);
		text[size - 1] = '\0';
		Google__Protobuf__Struct *s = NULL;
		if (hs_pbjson_struct_from_text(text, &aa, &s, NULL) == HS_OK) {
			char *json = NULL;
			if (hs_pbjson_struct_to_text(s, &json, NULL) == HS_OK) {
				Google__Protobuf__Struct *s2 = NULL;
				if (hs_pbjson_struct_from_text(json, &ab, &s2, NULL) != HS_OK)
					abort();
				char *json2 = NULL;
				if (hs_pbjson_struct_to_text(s2, &json2, NULL) != HS_OK || strcmp(json, json2) != 0)
					abort(); /* JSON -> Struct -> JSON is stable after one trip */
				free(json2);
				free(json);
			}
		}
		free(text);
	}
	hs_arena_reset(&a);
	hs_arena_reset(&b);
	return 0;
}
