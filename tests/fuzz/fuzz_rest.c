/* libFuzzer target: what a REST client controls (method, path, query
 * string, body) against every route the gateway reads from the
 * google.api.http rules: matching and transcoding must be memory-safe, a
 * request they accept must pack and unpack as its message, and the
 * response encoding of that message must be valid JSON. Input: a method
 * selector byte, then path, query and body separated by NUL bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "descriptor_set.h"
#include "routes.h"
#include "services.h"
#include "transcode.h"

static hs_gw_routes *R;

static const char *const METHODS[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (R == NULL) {
		size_t n;
		const ProtobufCServiceDescriptor *const *sv = hs_gw_services(&n);
		if (hs_gw_routes_load(&R, hs_descriptor_set, hs_descriptor_set_len, sv, n, NULL) != HS_OK)
			abort();
	}
	if (size < 1)
		return 0;
	const char *method = METHODS[data[0] % 6];
	char *buf = malloc(size);
	if (buf == NULL)
		abort();
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	const char *path = buf;
	size_t at = strlen(path) + 1;
	const char *query = at < size ? buf + at : "";
	at += strlen(query) + 1;
	const char *body = at < size ? buf + at : NULL;
	size_t blen = body != NULL ? size - 1 - at : 0;

	hs_gw_match *m = malloc(sizeof(*m));
	if (m == NULL)
		abort();
	if (hs_gw_routes_match(R, method, path, m) == HS_GW_MATCH_OK) {
		ProtobufCMessage *msg = NULL;
		hs_error err = { 0 };
		if (hs_gw_transcode_request(&msg, m, query, body, blen, &err) == HS_OK) {
			size_t n = protobuf_c_message_get_packed_size(msg);
			uint8_t *wire = malloc(n ? n : 1);
			protobuf_c_message_pack(msg, wire);
			ProtobufCMessage *back = protobuf_c_message_unpack(msg->descriptor, NULL, n, wire);
			if (back == NULL)
				abort(); /* what we send harnessd is a valid message */
			protobuf_c_message_free_unpacked(back, NULL);
			free(wire);
			hs_gw_route fake = *m->route; /* encode the request as if it were a response */
			fake.out = msg->descriptor;
			fake.response_body = "";
			char *json = NULL;
			size_t jlen = 0;
			if (hs_gw_transcode_response(&json, &jlen, &fake, msg, &err) == HS_OK) {
				json_t *j = json_loadb(json, jlen, JSON_DECODE_ANY, NULL);
				if (j == NULL)
					abort();
				json_decref(j);
				free(json);
			}
			protobuf_c_message_free_unpacked(msg, NULL);
		} else if (err.msg[0] == '\0') {
			abort(); /* a refusal names its reason */
		}
	}
	free(m);
	free(buf);
	return 0;
}
