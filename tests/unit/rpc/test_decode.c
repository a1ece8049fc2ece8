/* Unit tests of bounded request decoding (server/rpc/decode.c): the
 * pre-scan against the 5,000-deep Struct that crashed protobuf-c, its
 * agreement with protobuf-c on what nests, malformed input, and the memory
 * budget. The same attack over the wire is in test_rpc_fairness.c and
 * tests/integration/test_fairness.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "google/protobuf/struct.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "harness/v1/checkpoint.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "wire.h"

static const ProtobufCMessageDescriptor *const CREATE =
	&harness__v1__create_checkpoint_request__descriptor;

static void test_decode__type_depth(void **state)
{
	(void)state;
	/* No message fields at all; one level (a Timestamp); recursive. */
	assert_int_equal(hs_rpc__type_depth(&grpc__health__v1__health_check_request__descriptor), 0);
	assert_int_equal(hs_rpc__type_depth(&harness__v1__get_task_request__descriptor), 0);
	assert_int_equal(hs_rpc__type_depth(&harness__v1__checkpoint__descriptor), UINT32_MAX);
	assert_int_equal(hs_rpc__type_depth(CREATE), UINT32_MAX);
	assert_int_equal(hs_rpc__type_depth(&google__protobuf__struct__descriptor), UINT32_MAX);
}

/* The attack of issue 11: 5,000 levels in tens of KB. Refused by the scan
 * with the top-level field named; protobuf-c never sees it. */
static void test_decode__deep_struct_refused(void **state)
{
	(void)state;
	size_t len;
	uint8_t *msg = hs_wire_deep_create_checkpoint(5000, false, &len);
	assert_non_null(msg);
	assert_true(len < 100 * 1024); /* far below any message size limit */
	hs_error err = { 0 };
	assert_int_equal(hs_rpc__prescan(CREATE, msg, len, 100, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "external_state: nested deeper than 100 levels"));

	hs_arena a;
	char inline_block[256];
	hs_arena_init(&a, inline_block, sizeof(inline_block));
	ProtobufCMessage *out = NULL;
	hs_error_clear(&err);
	assert_int_equal(hs_rpc__decode(CREATE, msg, len, true, 100, 64u << 20, &a, &out, &err),
			 HS_INVALID);
	assert_null(out);
	hs_arena_reset(&a);
	free(msg);

	/* Lists nest too (Value -> ListValue -> Value: two levels each). */
	msg = hs_wire_deep_create_checkpoint(5000, true, &len);
	assert_non_null(msg);
	assert_int_equal(hs_rpc__prescan(CREATE, msg, len, 100, &err), HS_INVALID);
	free(msg);
}

/* Right at the bound passes (and unpacks: protobuf-c agrees on the shape);
 * one more level does not. A JSON object level is 3 message levels here
 * (Struct -> map entry -> Value -> Struct), plus 1 for external_state. */
static void test_decode__bound_is_exact(void **state)
{
	(void)state;
	size_t len;
	hs_error err = { 0 };
	uint8_t *msg = hs_wire_deep_create_checkpoint(33, false, &len); /* 1 + 3*33 = 100 */
	assert_int_equal(hs_rpc__prescan(CREATE, msg, len, 100, &err), HS_OK);
	assert_int_equal(hs_rpc__prescan(CREATE, msg, len, 99, &err), HS_INVALID);
	hs_arena a;
	char inline_block[256];
	hs_arena_init(&a, inline_block, sizeof(inline_block));
	ProtobufCMessage *out = NULL;
	assert_int_equal(hs_rpc__decode(CREATE, msg, len, true, 100, 64u << 20, &a, &out, &err),
			 HS_OK);
	const Harness__V1__CreateCheckpointRequest *r = (const void *)out;
	assert_string_equal(r->task_id, "t");
	const Google__Protobuf__Struct *s = r->external_state;
	int levels = 0;
	while (s != NULL && s->n_fields == 1) {
		levels++;
		assert_string_equal(s->fields[0]->key, "a");
		s = s->fields[0]->value->struct_value;
	}
	assert_int_equal(levels, 33);
	hs_arena_reset(&a);
	free(msg);
}

/* Unknown fields are never parsed by protobuf-c: nesting inside them is
 * not counted (and is harmless). Nesting inside a known non-message
 * length-delimited field (a string) is just bytes. */
static void test_decode__unknown_and_string_fields_not_descended(void **state)
{
	(void)state;
	size_t inner_len;
	uint8_t *inner = hs_wire_deep_struct(5000, false, &inner_len);
	hs_wire w;
	hs_wire_init(&w, inner_len + 64);
	hs_wire_bytes(&w, 99, inner, inner_len); /* unknown field 99 */
	hs_wire_bytes(&w, 1, inner, inner_len);  /* task_id: a (weird) string */
	hs_error err = { 0 };
	assert_int_equal(hs_rpc__prescan(CREATE, w.buf, w.len, 100, &err), HS_OK);
	free(inner);
	hs_wire_dispose(&w);
}

static void test_decode__malformed(void **state)
{
	(void)state;
	hs_error err = { 0 };
	/* a length past the end */
	static const uint8_t past[] = { 0x22, 0x05, 0x0a, 0x00 };
	assert_int_equal(hs_rpc__prescan(CREATE, past, sizeof(past), 100, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "malformed harness.v1.CreateCheckpointRequest"));
	/* a sub-message whose own field runs past its end (but not past the
	 * buffer's): the frame's end bounds it */
	static const uint8_t inner_past[] = { 0x22, 0x02, 0x0a, 0x05, 0, 0, 0, 0, 0 };
	assert_int_equal(hs_rpc__prescan(CREATE, inner_past, sizeof(inner_past), 100, &err),
			 HS_INVALID);
	/* a start-group wire type */
	static const uint8_t group[] = { 0x0b, 0x0c };
	assert_int_equal(hs_rpc__prescan(CREATE, group, sizeof(group), 100, &err), HS_INVALID);
	/* an unterminated varint, a truncated fixed64 */
	static const uint8_t varint[] = { 0x10, 0xff, 0xff };
	assert_int_equal(hs_rpc__prescan(CREATE, varint, sizeof(varint), 100, &err), HS_INVALID);
	static const uint8_t fixed[] = { 0x11, 1, 2, 3 };
	assert_int_equal(hs_rpc__prescan(CREATE, fixed, sizeof(fixed), 100, &err), HS_INVALID);
	/* field number 0, in the two-byte form protobuf-c lets through */
	static const uint8_t zero_tag[] = { 0x80, 0x00, 0x61 };
	assert_int_equal(hs_rpc__prescan(CREATE, zero_tag, sizeof(zero_tag), 100, &err), HS_INVALID);
	/* empty is a valid (all-default) message */
	assert_int_equal(hs_rpc__prescan(CREATE, NULL, 0, 100, &err), HS_OK);
	hs_arena a;
	char inline_block[256];
	hs_arena_init(&a, inline_block, sizeof(inline_block));
	ProtobufCMessage *out = NULL;
	assert_int_equal(hs_rpc__decode(CREATE, NULL, 0, true, 100, 1024, &a, &out, &err), HS_OK);
	assert_non_null(out);
	/* malformed where only protobuf-c looks (a string field as a varint) */
	static const uint8_t wrong[] = { 0x08, 0x01 };
	out = NULL;
	assert_int_equal(hs_rpc__decode(CREATE, wrong, sizeof(wrong), true, 100, 1024, &a, &out, &err),
			 HS_INVALID);
	assert_null(out);
	hs_arena_reset(&a);
}

/* 100,000 null list elements: 4 bytes each on the wire, ~90 bytes each
 * decoded. Refused by the budget (HS_LIMIT) instead of taking ~9 MB. */
static void test_decode__budget(void **state)
{
	(void)state;
	size_t n = 100000;
	hs_wire list;
	hs_wire_init(&list, n * 4 + 16);
	static const uint8_t null_value[] = { 0x08, 0x00 }; /* Value{null_value: 0} */
	for (size_t i = 0; i < n; i++)
		hs_wire_bytes(&list, 1, null_value, sizeof(null_value));
	hs_wire value; /* Value{list_value} */
	hs_wire_init(&value, list.len + 16);
	hs_wire_bytes(&value, 6, list.buf, list.len);
	hs_wire entry; /* fields entry {key "a", value} */
	hs_wire_init(&entry, value.len + 16);
	hs_wire_bytes(&entry, 1, (const uint8_t *)"a", 1);
	hs_wire_bytes(&entry, 2, value.buf, value.len);
	hs_wire st;
	hs_wire_init(&st, entry.len + 16);
	hs_wire_bytes(&st, 1, entry.buf, entry.len);
	hs_wire req;
	hs_wire_init(&req, st.len + 16);
	hs_wire_bytes(&req, 4, st.buf, st.len);

	size_t budget = hs_rpc__decode_budget(req.len, 64u << 20);
	assert_int_equal(budget, 65536 + 64 * req.len);
	assert_int_equal(hs_rpc__decode_budget(1u << 30, 64u << 20), 64u << 20);

	hs_arena a;
	char inline_block[256];
	hs_arena_init(&a, inline_block, sizeof(inline_block));
	ProtobufCMessage *out = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_rpc__decode(CREATE, req.buf, req.len, true, 100, 1u << 20, &a, &out, &err),
			 HS_LIMIT);
	assert_non_null(strstr(err.msg, "needs more than 1048576 bytes"));
	assert_null(out);
	hs_arena_reset(&a);
	/* With the default budget it decodes. */
	assert_int_equal(hs_rpc__decode(CREATE, req.buf, req.len, true, 100, budget, &a, &out, &err),
			 HS_OK);
	const Harness__V1__CreateCheckpointRequest *r = (const void *)out;
	assert_int_equal(r->external_state->fields[0]->value->list_value->n_values, n);
	hs_arena_reset(&a);
	hs_wire_dispose(&list);
	hs_wire_dispose(&value);
	hs_wire_dispose(&entry);
	hs_wire_dispose(&st);
	hs_wire_dispose(&req);
}

/* Decodes msg (of desc) packed; returns decode's code and leaves err. */
static int decode_packed(const ProtobufCMessage *msg, hs_error *err)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len + 1);
	assert_non_null(buf);
	protobuf_c_message_pack(msg, buf);
	hs_arena a;
	char inline_block[256];
	hs_arena_init(&a, inline_block, sizeof(inline_block));
	ProtobufCMessage *out = NULL;
	int rc = hs_rpc__decode(msg->descriptor, buf, len, true, 100, 1u << 20, &a, &out, err);
	assert_true(rc == HS_OK ? out != NULL : out == NULL);
	hs_arena_reset(&a);
	free(buf);
	return rc;
}

/* proto3 strings must be UTF-8: a top-level string, a map value and a
 * string inside a Struct's oneof are each refused with the top-level field
 * named; a oneof whose set member is a number (sharing the string's memory)
 * is not read as a string; valid multi-byte text passes. */
static void test_decode__strings_must_be_utf8(void **state)
{
	(void)state;
	hs_error err = { 0 };
	Harness__V1__HeartbeatRequest hb = HARNESS__V1__HEARTBEAT_REQUEST__INIT;
	hb.task_id = "t1";
	hb.details = "ok \xc3\xa9";
	assert_int_equal(decode_packed(&hb.base, &err), HS_OK);
	hb.details = "bad \xff\xfe";
	assert_int_equal(decode_packed(&hb.base, &err), HS_INVALID);
	assert_string_equal(err.msg, "details: not valid UTF-8");
	hb.details = "\xc0\x80"; /* overlong NUL */
	hs_error_clear(&err);
	assert_int_equal(decode_packed(&hb.base, &err), HS_INVALID);

	Harness__V1__RegisterTaskRequest reg = HARNESS__V1__REGISTER_TASK_REQUEST__INIT;
	Harness__V1__RegisterTaskRequest__LabelsEntry e =
		HARNESS__V1__REGISTER_TASK_REQUEST__LABELS_ENTRY__INIT;
	Harness__V1__RegisterTaskRequest__LabelsEntry *ev[1] = { &e };
	reg.task_id = "t1";
	e.key = "k";
	e.value = "\xed\xa0\x80"; /* a surrogate */
	reg.labels = ev;
	reg.n_labels = 1;
	hs_error_clear(&err);
	assert_int_equal(decode_packed(&reg.base, &err), HS_INVALID);
	assert_string_equal(err.msg, "labels: not valid UTF-8");

	Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
	Google__Protobuf__Struct__FieldsEntry fe = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
	Google__Protobuf__Struct__FieldsEntry *fev[1] = { &fe };
	Google__Protobuf__Struct st = GOOGLE__PROTOBUF__STRUCT__INIT;
	fe.key = "k";
	fe.value = &v;
	st.fields = fev;
	st.n_fields = 1;
	Harness__V1__CreateCheckpointRequest cr = HARNESS__V1__CREATE_CHECKPOINT_REQUEST__INIT;
	cr.task_id = "t1";
	cr.external_state = &st;
	v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
	v.number_value = 12345.678; /* its bits are no pointer */
	hs_error_clear(&err);
	assert_int_equal(decode_packed(&cr.base, &err), HS_OK);
	v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
	v.string_value = "fine";
	assert_int_equal(decode_packed(&cr.base, &err), HS_OK);
	v.string_value = "\x80";
	assert_int_equal(decode_packed(&cr.base, &err), HS_INVALID);
	assert_string_equal(err.msg, "external_state: not valid UTF-8");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode__type_depth),
		cmocka_unit_test(test_decode__deep_struct_refused),
		cmocka_unit_test(test_decode__bound_is_exact),
		cmocka_unit_test(test_decode__unknown_and_string_fields_not_descended),
		cmocka_unit_test(test_decode__malformed),
		cmocka_unit_test(test_decode__budget),
		cmocka_unit_test(test_decode__strings_must_be_utf8),
	};
	return cmocka_run_group_tests_name("decode", tests, NULL, NULL);
}
