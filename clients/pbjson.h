/* pbjson: the proto3 JSON mapping for any protobuf-c message, driven only by
 * its ProtobufCMessageDescriptor (jansson values in and out). Used by
 * harnessctl for `-o json`, `--json` and flags that take a message.
 *
 * Mapping (https://protobuf.dev/programming-guides/proto3/#json):
 *   field names      lowerCamelCase on output (original proto names with
 *                    original_names); parsing accepts both.
 *   int64/uint64     decimal strings on output; numbers or strings parsed.
 *   32-bit ints      numbers; numeric strings are accepted when parsing.
 *   float/double     numbers, "NaN", "Infinity", "-Infinity".
 *   enums            value names on output (numbers for unknown values);
 *                    names or numbers parsed.
 *   bytes            standard base64 (padded) on output; standard or URL-safe
 *                    base64, padding optional, parsed.
 *   repeated         arrays; map<K,V> (entry messages) objects.
 *   Timestamp        RFC 3339 in UTC ("2024-05-01T10:00:00.500Z"); parsing
 *                    accepts any offset.
 *   Struct/Value/ListValue   plain JSON object / value / array.
 *   defaults         fields with their default value (0, "", false, empty
 *                    list, unset message) are omitted unless emit_defaults;
 *                    members of a oneof and proto2 optionals that are set are
 *                    always emitted. JSON null on a field means "default".
 *
 * Messages returned by hs_pbjson_decode are allocated with protobuf-c's
 * default allocator exactly as protobuf_c_message_unpack does, so they are
 * freed with protobuf_c_message_free_unpacked(msg, NULL). */
#ifndef HS_CLIENTS_PBJSON_H
#define HS_CLIENTS_PBJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "error.h"
#include "google/protobuf/struct.pb-c.h"

/* Nesting bound of encode and decode, in message levels below the top (a
 * JSON object inside a Struct is three: the entry, the Value, the Struct).
 * The RPC core's default max_depth, so whatever harnessd accepted encodes. */
#define HS_PBJSON_DEPTH_MAX 100

typedef struct hs_pbjson_opts {
	bool original_names; /* encode: proto field names (task_id), not taskId */
	bool emit_defaults;  /* encode: also fields holding their default value */
	bool ignore_unknown; /* decode: skip unknown keys instead of HS_INVALID */
} hs_pbjson_opts;

#define HS_PBJSON_OPTS_INIT { false, false, false }

/* msg -> new JSON value (*out; json_decref it). opts NULL = defaults.
 * HS_INVALID only for a message that breaks its own descriptor (e.g. a
 * Timestamp out of range). */
int hs_pbjson_encode(json_t **out, const ProtobufCMessage *msg, const hs_pbjson_opts *opts,
		     hs_error *err);

/* JSON -> new message of type desc (*out; protobuf_c_message_free_unpacked).
 * HS_INVALID with the offending field's path named in err ("labels.k: ...",
 * "external_state: ..."). */
int hs_pbjson_decode(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
		     const json_t *in, const hs_pbjson_opts *opts, hs_error *err);

/* Convenience: encode and serialise (*out is malloc'd; free it). flags are
 * jansson dump flags (e.g. JSON_INDENT(2) | JSON_SORT_KEYS); 15 significant
 * digits are used for doubles unless flags set a precision. */
int hs_pbjson_to_string(char **out, const ProtobufCMessage *msg, const hs_pbjson_opts *opts,
			size_t flags, hs_error *err);

/* Convenience: parse text as JSON, then hs_pbjson_decode. */
int hs_pbjson_from_string(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
			  const char *text, const hs_pbjson_opts *opts, hs_error *err);

/* The field named name (proto name "task_id" or JSON name "taskId") of desc,
 * or NULL. Borrowed from the descriptor. */
const ProtobufCFieldDescriptor *hs_pbjson_field_lookup(const ProtobufCMessageDescriptor *desc,
						       const char *name);

/* proto field name -> lowerCamelCase JSON name into buf (truncated to n). */
void hs_pbjson_json_name(char *buf, size_t n, const char *proto_name);

/* True when f is a map field (a repeated entry message with key and value). */
bool hs_pbjson_field_is_map(const ProtobufCFieldDescriptor *f);

/* Formats a Timestamp's seconds/nanos as RFC 3339 UTC into buf (>= 40 bytes).
 * HS_INVALID when out of the years 0001-9999. */
int hs_pbjson_format_time(char *buf, size_t n, long long seconds, int nanos);

/* Parses RFC 3339 ("2024-05-01T10:00:00Z", fraction up to 9 digits, Z or
 * +hh:mm offset). HS_INVALID if malformed. */
int hs_pbjson_parse_time(const char *s, long long *seconds, int *nanos);

/* bytes -> standard padded base64 (malloc'd; NULL if out of memory). */
char *hs_pbjson_b64_encode(const uint8_t *data, size_t n);

/* Standard or URL-safe base64, padding optional -> malloc'd bytes in *out
 * (*outn bytes). -1 if malformed. */
int hs_pbjson_b64_decode(const char *s, uint8_t **out, size_t *outn);

/* google.protobuf.Struct <-> JSON object text: the one codec for a Struct
 * kept as text (a checkpoint's or a task's external_state). Text is compact
 * with sorted keys and doubles in 17 digits; NULL s is "{}". *out: free(). */
int hs_pbjson_struct_to_text(const Google__Protobuf__Struct *s, char **out, hs_error *err);

/* JSON object text (NULL or "" -> an empty Struct) -> *out allocated with
 * alloc (e.g. an RPC call arena; NULL = protobuf-c's default allocator, then
 * free with protobuf_c_message_free_unpacked). HS_INVALID if text is not a
 * JSON object or nests deeper than HS_PBJSON_DEPTH_MAX. */
int hs_pbjson_struct_from_text(const char *text, ProtobufCAllocator *alloc,
			       Google__Protobuf__Struct **out, hs_error *err);

#endif
