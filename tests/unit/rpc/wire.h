/* Hand-built protobuf wire format for the tests and fuzz seeds that need
 * what no encoder will produce (nesting thousands of levels deep). */
#ifndef HS_TEST_WIRE_H
#define HS_TEST_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An append buffer (aborts when out of memory: tests only). */
typedef struct hs_wire {
	uint8_t *buf;
	size_t len, cap;
} hs_wire;

void hs_wire_init(hs_wire *w, size_t cap);
/* Appends field `field` as a length-delimited field holding data. */
void hs_wire_bytes(hs_wire *w, uint32_t field, const uint8_t *data, size_t len);
void hs_wire_dispose(hs_wire *w);

/* A google.protobuf.Struct nested `levels` deep: {"a": {"a": ...{}}} or,
 * with list, {"a": [[[...[null]...]]]}. malloc'd; *len its size. */
uint8_t *hs_wire_deep_struct(unsigned levels, bool list, size_t *len);

/* CreateCheckpointRequest{task_id: "t", external_state: that Struct}. */
uint8_t *hs_wire_deep_create_checkpoint(unsigned levels, bool list, size_t *len);

#endif
