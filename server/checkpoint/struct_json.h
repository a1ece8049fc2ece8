/* google.protobuf.Struct <-> JSON object text, for the checkpoint adapter:
 * the module stores external_state as JSON, the wire carries a Struct. */
#ifndef HS_CHECKPOINT_STRUCT_JSON_H
#define HS_CHECKPOINT_STRUCT_JSON_H

#include "error.h"
#include "google/protobuf/struct.pb-c.h"

#define HS_STRUCT_JSON_DEPTH_MAX 64

/* Allocation for built messages: zeroed memory that the caller releases as
 * a whole (the RPC call arena). NULL when out of memory. */
typedef void *(*hs_struct_json_alloc_fn)(size_t size, void *payload);

/* JSON object text (compact, heap: free()) of s. NaN/Infinity, values
 * nested deeper than HS_STRUCT_JSON_DEPTH_MAX and unset kinds are
 * HS_INVALID with a message naming "external_state". */
int hs_struct_to_json(const Google__Protobuf__Struct *s, char **out, hs_error *err);

/* The Struct for JSON object text (NULL or "" -> an empty Struct). Every
 * node and string is allocated with alloc(payload); nothing to free apart
 * from what alloc hands out. HS_INVALID if json is not an object. */
int hs_struct_from_json(const char *json, hs_struct_json_alloc_fn alloc, void *payload,
			Google__Protobuf__Struct **out, hs_error *err);

#endif
