/* libFuzzer target: the RPC core's request decoding (pre-scan + budgeted
 * unpack, server/rpc/decode.c) for the request type of every method, as
 * harnessd runs it on each received message. The first byte picks the
 * method; the rest is the message. A decoded message must pack again, and
 * what it packs to must decode again (when the scan found the input well
 * formed: protobuf-c keeps some malformed fields, e.g. a two-byte zero tag,
 * as unknown fields it then packs into bytes it refuses). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "fuzz_types.h"

static const ProtobufCMessageDescriptor *types[FUZZ_MAX_TYPES];
static size_t n_types;

static int decode(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
		  hs_arena *a, ProtobufCMessage **out)
{
	bool prescan = hs_rpc__type_depth(d) > HS_RPC_DEPTH_DEFAULT;
	return hs_rpc__decode(d, data, len, prescan, HS_RPC_DEPTH_DEFAULT,
			      hs_rpc__decode_budget(len, 64u << 20), a, out, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (n_types == 0)
		n_types = fuzz_types(types, 1);
	if (size < 1)
		return 0;
	const ProtobufCMessageDescriptor *d = types[data[0] % n_types];
	data++;
	size--;
	/* The scan alone, on every type (also those that skip it in harnessd). */
	bool well_formed = hs_rpc__prescan(d, data, size, HS_RPC_DEPTH_DEFAULT, NULL) == HS_OK;

	static char inline_block[3072];
	hs_arena a;
	hs_arena_init(&a, inline_block, sizeof(inline_block));
	ProtobufCMessage *msg = NULL;
	if (decode(d, data, size, &a, &msg) == HS_OK && well_formed) {
		size_t n = protobuf_c_message_get_packed_size(msg);
		uint8_t *buf = malloc(n ? n : 1);
		if (buf == NULL)
			abort();
		if (protobuf_c_message_pack(msg, buf) != n)
			abort(); /* packed size and pack disagree */
		hs_arena b;
		static char inline_b[3072];
		hs_arena_init(&b, inline_b, sizeof(inline_b));
		ProtobufCMessage *again = NULL;
		/* What we packed is no deeper than what we accepted: it must
		 * decode (a larger budget: packing may normalise, not grow much). */
		if (hs_rpc__decode(d, buf, n, true, HS_RPC_DEPTH_DEFAULT, 64u << 20, &b, &again,
				   NULL) != HS_OK)
			abort();
		hs_arena_reset(&b);
		free(buf);
	}
	hs_arena_reset(&a);
	return 0;
}
