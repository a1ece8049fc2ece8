/* Request decoding that cannot crash: protobuf-c's unpack recurses once per
 * level of nested messages with no limit of its own (a 34 KB Struct nested
 * 5,000 deep overflows the stack), and allocates tens of bytes for every
 * two bytes of some inputs. Before unpacking, a pre-scan walks the wire
 * format with the message descriptors and refuses nesting deeper than
 * max_depth; unpacking then allocates from the call arena within a budget.
 * A decoded request's strings are valid UTF-8 (proto3's rule: a tenant's
 * invalid text stored in a task would break every proto3 or JSON client
 * that reads it, the admin's listings and the gateway included).
 * Private to server/rpc (and its tests and fuzzers). */
#ifndef HS_RPC_DECODE_H
#define HS_RPC_DECODE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "error.h"

/* Largest max_depth accepted (the pre-scan's explicit stack). protobuf's own
 * parsers default to 100. */
#define HS_RPC_DEPTH_MAX 256
#define HS_RPC_DEPTH_DEFAULT 100

/* Deepest nesting of message fields below desc (0: no message fields);
 * UINT32_MAX when the type is recursive (its nesting is bounded only by
 * the input) or deeper than HS_RPC_DEPTH_MAX. */
uint32_t hs_rpc__type_depth(const ProtobufCMessageDescriptor *desc);

/* Walks data as a desc message without allocating: HS_OK, or HS_INVALID
 * when it nests message fields more than max_depth levels below the top
 * (err names the top-level field) or is malformed where the walk must
 * look. Never recurses. */
int hs_rpc__prescan(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
		    unsigned max_depth, hs_error *err);

/* What a decode may take: at most 64 KiB + 64 bytes per input byte of the
 * arena, and never more than max_bytes. */
size_t hs_rpc__decode_budget(size_t len, size_t max_bytes);

/* HS_OK when every string field of msg (repeated, map and oneof members
 * and nested messages included) is valid UTF-8, as proto3 requires and
 * protobuf's own parsers check; else HS_INVALID naming the top-level field.
 * Depth is bounded by HS_RPC_DEPTH_MAX (decoded messages are at most that
 * deep). */
int hs_rpc__check_strings(const ProtobufCMessage *msg, hs_error *err);

/* Pre-scans (when prescan is true: the type is recursive or too deep) and
 * unpacks data into arena within budget bytes. *out lives in the arena.
 * HS_INVALID malformed, too deep or a string not UTF-8; HS_LIMIT the budget
 * was exceeded. */
int hs_rpc__decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
		   bool prescan, unsigned max_depth, size_t budget, hs_arena *arena,
		   ProtobufCMessage **out, hs_error *err);

#endif
