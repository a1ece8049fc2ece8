/* libFuzzer target: the proto3 JSON mapping (clients/pbjson.c) for every
 * request and response type. The first byte picks the type and options;
 * the rest is JSON text. What decodes must encode, and what it encodes to
 * must decode again to the same wire bytes. Also the small parsers on the
 * raw input: RFC 3339 times and base64. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_types.h"
#include "pbjson.h"

static const ProtobufCMessageDescriptor *types[FUZZ_MAX_TYPES];
static size_t n_types;

static uint8_t *packed(const ProtobufCMessage *m, size_t *n)
{
	*n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(*n ? *n : 1);
	if (buf == NULL)
		abort();
	protobuf_c_message_pack(m, buf);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (n_types == 0)
		n_types = fuzz_types(types, 0);
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	char *text = malloc(size);
	if (text == NULL)
		abort();
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';

	long long secs;
	int nanos;
	if (hs_pbjson_parse_time(text, &secs, &nanos) == HS_OK) {
		char buf[64];
		(void)hs_pbjson_format_time(buf, sizeof(buf), secs, nanos);
	}
	uint8_t *raw = NULL;
	size_t rawn = 0;
	if (hs_pbjson_b64_decode(text, &raw, &rawn) == 0) {
		char *enc = hs_pbjson_b64_encode(raw, rawn);
		free(enc);
		free(raw);
	}

	const ProtobufCMessageDescriptor *d = types[(sel >> 1) % n_types];
	hs_pbjson_opts opts = HS_PBJSON_OPTS_INIT;
	opts.ignore_unknown = sel & 1;
	ProtobufCMessage *msg = NULL;
	if (hs_pbjson_from_string(&msg, d, text, &opts, NULL) == HS_OK) {
		hs_pbjson_opts out_opts = HS_PBJSON_OPTS_INIT;
		out_opts.emit_defaults = (sel & 2) != 0;
		out_opts.original_names = (sel & 4) != 0;
		char *json = NULL;
		/* 17 digits: the default 15 are for people (documented as such)
		 * and do not round-trip every double. */
		if (hs_pbjson_to_string(&json, msg, &out_opts, JSON_REAL_PRECISION(17), NULL) == HS_OK) {
			ProtobufCMessage *again = NULL;
			hs_pbjson_opts strict = HS_PBJSON_OPTS_INIT;
			if (hs_pbjson_from_string(&again, d, json, &strict, NULL) != HS_OK)
				abort(); /* our own output must parse */
			size_t n1, n2;
			uint8_t *p1 = packed(msg, &n1), *p2 = packed(again, &n2);
			if (n1 != n2 || memcmp(p1, p2, n1) != 0)
				abort(); /* the round trip changed the message */
			free(p1);
			free(p2);
			protobuf_c_message_free_unpacked(again, NULL);
			free(json);
		}
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	free(text);
	return 0;
}
