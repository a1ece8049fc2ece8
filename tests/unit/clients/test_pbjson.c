/* clients/pbjson: the proto3 JSON mapping over real generated descriptors
 * (harness.v1, grpc reflection, google.protobuf well-known types). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "harness/v1/auth.pb-c.h"
#include "harness/v1/checkpoint.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "harness/v1/sandbox.pb-c.h"
#include "pbjson.h"

static char *enc(const ProtobufCMessage *m, const hs_pbjson_opts *o)
{
	char *s = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_pbjson_to_string(&s, m, o, JSON_COMPACT | JSON_SORT_KEYS, &err), HS_OK);
	return s;
}

static void assert_enc(const ProtobufCMessage *m, const hs_pbjson_opts *o, const char *want)
{
	char *s = enc(m, o);
	assert_string_equal(s, want);
	free(s);
}

static ProtobufCMessage *dec_ok(const ProtobufCMessageDescriptor *d, const char *text)
{
	ProtobufCMessage *m = NULL;
	hs_error err = { 0 };
	int rc = hs_pbjson_from_string(&m, d, text, NULL, &err);
	if (rc != HS_OK)
		fail_msg("decode %s: %s", text, err.msg);
	return m;
}

static void assert_dec_fails(const ProtobufCMessageDescriptor *d, const char *text, const char *in_msg)
{
	ProtobufCMessage *m = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_pbjson_from_string(&m, d, text, NULL, &err), HS_INVALID);
	assert_null(m);
	if (strstr(err.msg, in_msg) == NULL)
		fail_msg("error '%s' does not contain '%s'", err.msg, in_msg);
}

static void test_pbjson__encodes_sandbox_with_camel_names_enums_int64_maps_time(void **state)
{
	Harness__V1__Sandbox sb = HARNESS__V1__SANDBOX__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Harness__V1__Sandbox__LabelsEntry l1 = HARNESS__V1__SANDBOX__LABELS_ENTRY__INIT;
	Harness__V1__Sandbox__LabelsEntry *labels[] = { &l1 };
	char *ep[] = { "sh", "-c", "echo hi" };
	sb.sandbox_id = "sb-1";
	sb.state = HARNESS__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING;
	sb.ttl_seconds = 3600;
	ts.seconds = 1718000000;
	ts.nanos = 500000000;
	sb.created_at = &ts;
	l1.key = "team";
	l1.value = "a";
	sb.n_labels = 1;
	sb.labels = labels;
	sb.n_entrypoint = 3;
	sb.entrypoint = ep;
	sb.pid = 42;
	assert_enc(&sb.base, NULL,
		   "{\"createdAt\":\"2024-06-10T06:13:20.500Z\",\"entrypoint\":[\"sh\",\"-c\",\"echo hi\"],"
		   "\"labels\":{\"team\":\"a\"},\"pid\":42,\"sandboxId\":\"sb-1\","
		   "\"state\":\"SANDBOX_STATE_RUNNING\",\"ttlSeconds\":\"3600\"}");
	hs_pbjson_opts o = HS_PBJSON_OPTS_INIT;
	o.original_names = true;
	char *s = enc(&sb.base, &o);
	assert_non_null(strstr(s, "\"sandbox_id\":\"sb-1\""));
	assert_non_null(strstr(s, "\"ttl_seconds\":\"3600\""));
	assert_null(strstr(s, "sandboxId"));
	free(s);
}

static void test_pbjson__omits_defaults_unless_asked(void **state)
{
	Harness__V1__Checkpoint cp = HARNESS__V1__CHECKPOINT__INIT;
	assert_enc(&cp.base, NULL, "{}");
	hs_pbjson_opts o = HS_PBJSON_OPTS_INIT;
	o.emit_defaults = true;
	char *s = enc(&cp.base, &o);
	assert_non_null(strstr(s, "\"step\":\"0\""));
	assert_non_null(strstr(s, "\"checkpointId\":\"\""));
	assert_non_null(strstr(s, "\"filesChanged\":0"));
	assert_non_null(strstr(s, "\"externalState\":null"));
	free(s);
}

static void test_pbjson__struct_round_trips_as_plain_json(void **state)
{
	const char *in = "{\"taskId\":\"t1\",\"step\":\"3\",\"externalState\":{\"a\":1,\"b\":\"x\","
			 "\"c\":[true,null,2.5],\"d\":{\"e\":{}}}}";
	ProtobufCMessage *m = dec_ok(&harness__v1__create_checkpoint_request__descriptor, in);
	Harness__V1__CreateCheckpointRequest *r = (Harness__V1__CreateCheckpointRequest *)m;
	assert_string_equal(r->task_id, "t1");
	assert_int_equal(r->step, 3);
	assert_int_equal(r->external_state->n_fields, 4);
	assert_enc(m, NULL,
		   "{\"externalState\":{\"a\":1,\"b\":\"x\",\"c\":[true,null,2.5],\"d\":{\"e\":{}}},"
		   "\"step\":\"3\",\"taskId\":\"t1\"}");
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_pbjson__parse_accepts_both_names_and_numbers_or_strings(void **state)
{
	ProtobufCMessage *m = dec_ok(&harness__v1__register_task_request__descriptor,
				     "{\"task_id\":\"t\",\"totalSteps\":3,\"heartbeat_timeout_ms\":\"1500\","
				     "\"recoveryPolicy\":{\"max_attempts\":\"2\",\"backoffMultiplier\":1.5},"
				     "\"labels\":{\"k\":\"v\",\"k2\":\"v2\"}}");
	Harness__V1__RegisterTaskRequest *r = (Harness__V1__RegisterTaskRequest *)m;
	assert_string_equal(r->task_id, "t");
	assert_int_equal(r->total_steps, 3);
	assert_int_equal(r->heartbeat_timeout_ms, 1500);
	assert_int_equal(r->recovery_policy->max_attempts, 2);
	assert_true(r->recovery_policy->backoff_multiplier == 1.5);
	assert_int_equal(r->n_labels, 2);
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_pbjson__enums_by_name_or_number(void **state)
{
	ProtobufCMessage *m = dec_ok(&harness__v1__list_sandboxes_request__descriptor,
				     "{\"state\":\"SANDBOX_STATE_PAUSED\"}");
	assert_int_equal(((Harness__V1__ListSandboxesRequest *)m)->state, 3);
	protobuf_c_message_free_unpacked(m, NULL);
	m = dec_ok(&harness__v1__list_sandboxes_request__descriptor, "{\"state\":2}");
	assert_int_equal(((Harness__V1__ListSandboxesRequest *)m)->state, 2);
	/* An unknown number stays a number on output. */
	((Harness__V1__ListSandboxesRequest *)m)->state = 77;
	assert_enc(m, NULL, "{\"state\":77}");
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_pbjson__uint64_and_doubles(void **state)
{
	Harness__V1__TaskEvent ev = HARNESS__V1__TASK_EVENT__INIT;
	ev.event_id = UINT64_MAX;
	ev.type = HARNESS__V1__TASK_EVENT_TYPE__TASK_EVENT_TYPE_RECOVERED;
	assert_enc(&ev.base, NULL,
		   "{\"eventId\":\"18446744073709551615\",\"type\":\"TASK_EVENT_TYPE_RECOVERED\"}");
	ProtobufCMessage *m = dec_ok(&harness__v1__task_event__descriptor,
				     "{\"eventId\":\"18446744073709551615\"}");
	assert_true(((Harness__V1__TaskEvent *)m)->event_id == UINT64_MAX);
	protobuf_c_message_free_unpacked(m, NULL);

	Harness__V1__HeartbeatRequest hb = HARNESS__V1__HEARTBEAT_REQUEST__INIT;
	hb.cpu_usage = NAN;
	hb.memory_usage_mb = INFINITY;
	hb.disk_usage_mb = 12.25;
	assert_enc(&hb.base, NULL,
		   "{\"cpuUsage\":\"NaN\",\"diskUsageMb\":12.25,\"memoryUsageMb\":\"Infinity\"}");
	m = dec_ok(&harness__v1__heartbeat_request__descriptor,
		   "{\"cpuUsage\":\"-Infinity\",\"memoryUsageMb\":\"2.5\",\"diskUsageMb\":3}");
	Harness__V1__HeartbeatRequest *h = (Harness__V1__HeartbeatRequest *)m;
	assert_true(isinf(h->cpu_usage) && h->cpu_usage < 0);
	assert_true(h->memory_usage_mb == 2.5 && h->disk_usage_mb == 3.0);
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_pbjson__bytes_base64_both_alphabets(void **state)
{
	uint8_t raw1[] = { 0xfb, 0xff, 0x00 }, raw2[] = { 'h', 'i' };
	ProtobufCBinaryData b[] = { { sizeof(raw1), raw1 }, { sizeof(raw2), raw2 } };
	Grpc__Reflection__V1__FileDescriptorResponse r = GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
	r.n_file_descriptor_proto = 2;
	r.file_descriptor_proto = b;
	assert_enc(&r.base, NULL, "{\"fileDescriptorProto\":[\"+/8A\",\"aGk=\"]}");
	ProtobufCMessage *m = dec_ok(&grpc__reflection__v1__file_descriptor_response__descriptor,
				     "{\"fileDescriptorProto\":[\"-_8A\",\"aGk\"]}");
	Grpc__Reflection__V1__FileDescriptorResponse *d = (Grpc__Reflection__V1__FileDescriptorResponse *)m;
	assert_int_equal(d->n_file_descriptor_proto, 2);
	assert_memory_equal(d->file_descriptor_proto[0].data, raw1, 3);
	assert_int_equal(d->file_descriptor_proto[1].len, 2);
	protobuf_c_message_free_unpacked(m, NULL);
	assert_dec_fails(&grpc__reflection__v1__file_descriptor_response__descriptor,
			 "{\"fileDescriptorProto\":[\"a\"]}", "base64");
}

static void test_pbjson__proto2_optional_presence(void **state)
{
	Google__Protobuf__FieldDescriptorProto f = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;
	f.has_number = 1;
	f.number = 0; /* present though zero */
	assert_enc(&f.base, NULL, "{\"number\":0}");
	ProtobufCMessage *m = dec_ok(&google__protobuf__field_descriptor_proto__descriptor,
				     "{\"name\":\"x\",\"number\":7}");
	Google__Protobuf__FieldDescriptorProto *g = (Google__Protobuf__FieldDescriptorProto *)m;
	assert_true(g->has_number);
	assert_int_equal(g->number, 7);
	assert_false(g->has_type);
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_pbjson__timestamps(void **state)
{
	char b[48];
	long long s;
	int ns;
	assert_int_equal(hs_pbjson_format_time(b, sizeof(b), 0, 0), HS_OK);
	assert_string_equal(b, "1970-01-01T00:00:00Z");
	assert_int_equal(hs_pbjson_format_time(b, sizeof(b), 1, 1000), HS_OK);
	assert_string_equal(b, "1970-01-01T00:00:01.000001Z");
	assert_int_equal(hs_pbjson_format_time(b, sizeof(b), 1, 1), HS_OK);
	assert_string_equal(b, "1970-01-01T00:00:01.000000001Z");
	assert_int_equal(hs_pbjson_format_time(b, sizeof(b), 253402300800LL, 0), HS_INVALID);
	/* Years before 1000 keep four digits (found by tests/fuzz: "223-11-14..."
	 * came out, which the parser rightly refused). */
	assert_int_equal(hs_pbjson_format_time(b, sizeof(b), -55102556800LL, 0), HS_OK);
	assert_string_equal(b, "0223-11-14T22:13:20Z");
	assert_int_equal(hs_pbjson_parse_time(b, &s, &ns), HS_OK);
	assert_int_equal(s, -55102556800LL);
	assert_int_equal(hs_pbjson_format_time(b, sizeof(b), -62135596800LL, 0), HS_OK);
	assert_string_equal(b, "0001-01-01T00:00:00Z");
	assert_int_equal(hs_pbjson_parse_time("2024-06-10T08:13:20.5+02:00", &s, &ns), HS_OK);
	assert_int_equal(s, 1718000000);
	assert_int_equal(ns, 500000000);
	assert_int_equal(hs_pbjson_parse_time("2024-06-10T06:13:20Z", &s, &ns), HS_OK);
	assert_int_equal(ns, 0);
	assert_int_equal(hs_pbjson_parse_time("2024-06-10 06:13:20", &s, &ns), HS_INVALID);
	assert_int_equal(hs_pbjson_parse_time("2024-13-10T06:13:20Z", &s, &ns), HS_INVALID);
	assert_int_equal(hs_pbjson_parse_time("2024-06-10T06:13:20.Z", &s, &ns), HS_INVALID);
	ProtobufCMessage *m = dec_ok(&harness__v1__user__descriptor,
				     "{\"createdAt\":\"2024-06-10T06:13:20.123Z\"}");
	assert_int_equal(((Harness__V1__User *)m)->created_at->nanos, 123000000);
	assert_enc(m, NULL, "{\"createdAt\":\"2024-06-10T06:13:20.123Z\"}");
	protobuf_c_message_free_unpacked(m, NULL);
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Harness__V1__User u = HARNESS__V1__USER__INIT;
	ts.nanos = -1;
	u.created_at = &ts;
	char *out = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_pbjson_to_string(&out, &u.base, NULL, 0, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "Timestamp"));
	assert_null(out);
}

static void test_pbjson__errors_name_the_field_and_leak_nothing(void **state)
{
	const ProtobufCMessageDescriptor *reg = &harness__v1__register_task_request__descriptor;
	assert_dec_fails(reg, "{\"task_id\":\"t\",\"bogus\":1}", "bogus: unknown field");
	assert_dec_fails(reg, "{\"task_id\":5}", "task_id: expected a string");
	assert_dec_fails(reg, "{\"total_steps\":\"x\"}", "total_steps: not an integer");
	assert_dec_fails(reg, "{\"recovery_policy\":{\"max_attempts\":3000000000}}",
			 "recovery_policy.max_attempts: integer out of range");
	assert_dec_fails(reg, "{\"recovery_policy\":{\"max_attempts\":1.5}}", "not an integer");
	assert_dec_fails(reg, "{\"labels\":{\"a\":\"b\",\"c\":7}}", "labels.c: expected a string");
	assert_dec_fails(reg, "{\"labels\":[\"a\"]}", "labels: expected an object");
	assert_dec_fails(reg, "[1]", "expected a JSON object");
	assert_dec_fails(reg, "{\"task_id\":", "invalid JSON");
	assert_dec_fails(reg, "{\"task_id\":\"a\",\"taskId\":\"b\"}", "task_id: field given twice");
	assert_dec_fails(reg, "{\"labels\":{\"a\":\"1\"},\"labels\":{}}", "invalid JSON");
	assert_dec_fails(&harness__v1__create_sandbox_request__descriptor,
			 "{\"entrypoint\":[\"sh\",null]}", "entrypoint[1]: null is not allowed");
	assert_dec_fails(&harness__v1__create_sandbox_request__descriptor,
			 "{\"entrypoint\":[\"sh\",1]}", "entrypoint[1]: expected a string");
	assert_dec_fails(&harness__v1__list_sandboxes_request__descriptor,
			 "{\"state\":\"RUNNING\"}", "state: unknown enum value: RUNNING");
	assert_dec_fails(&harness__v1__user__descriptor, "{\"createdAt\":\"yesterday\"}", "RFC 3339");
	assert_dec_fails(&harness__v1__create_checkpoint_request__descriptor,
			 "{\"externalState\":[1]}", "external_state: expected a JSON object");
	assert_dec_fails(&harness__v1__complete_task_request__descriptor, "{\"success\":\"yes\"}",
			 "success: expected true or false");
	assert_dec_fails(&harness__v1__heartbeat_request__descriptor, "{\"cpuUsage\":\"fast\"}",
			 "cpu_usage: not a number");
	assert_dec_fails(&harness__v1__task_event__descriptor, "{\"eventId\":\"-1\"}",
			 "event_id: not an unsigned integer");
}

static void test_pbjson__ignore_unknown_and_null_means_default(void **state)
{
	ProtobufCMessage *m = NULL;
	hs_pbjson_opts o = HS_PBJSON_OPTS_INIT;
	o.ignore_unknown = true;
	assert_int_equal(hs_pbjson_from_string(&m, &harness__v1__get_task_request__descriptor,
					       "{\"taskId\":\"t\",\"future\":{\"x\":1}}", &o, NULL),
			 HS_OK);
	assert_string_equal(((Harness__V1__GetTaskRequest *)m)->task_id, "t");
	protobuf_c_message_free_unpacked(m, NULL);
	m = dec_ok(&harness__v1__get_task_request__descriptor, "{\"taskId\":null}");
	assert_string_equal(((Harness__V1__GetTaskRequest *)m)->task_id, "");
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_pbjson__decoded_messages_pack_like_native_ones(void **state)
{
	/* The wire bytes of a decoded message equal those of one built by hand. */
	ProtobufCMessage *m = dec_ok(&harness__v1__create_sandbox_request__descriptor,
				     "{\"driver\":\"bwrap\",\"entrypoint\":[\"sh\",\"-c\",\"true\"],"
				     "\"taskId\":\"t1\",\"env\":{\"A\":\"1\"},\"ttlSeconds\":\"60\"}");
	Harness__V1__CreateSandboxRequest r = HARNESS__V1__CREATE_SANDBOX_REQUEST__INIT;
	Harness__V1__CreateSandboxRequest__EnvEntry e = HARNESS__V1__CREATE_SANDBOX_REQUEST__ENV_ENTRY__INIT;
	Harness__V1__CreateSandboxRequest__EnvEntry *ea[] = { &e };
	char *ep[] = { "sh", "-c", "true" };
	r.driver = "bwrap";
	r.n_entrypoint = 3;
	r.entrypoint = ep;
	r.task_id = "t1";
	r.ttl_seconds = 60;
	e.key = "A";
	e.value = "1";
	r.n_env = 1;
	r.env = ea;
	size_t n1 = protobuf_c_message_get_packed_size(m), n2 = protobuf_c_message_get_packed_size(&r.base);
	assert_int_equal(n1, n2);
	uint8_t *b1 = malloc(n1), *b2 = malloc(n2);
	protobuf_c_message_pack(m, b1);
	protobuf_c_message_pack(&r.base, b2);
	assert_memory_equal(b1, b2, n1);
	free(b1);
	free(b2);
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_pbjson__field_lookup_and_names(void **state)
{
	char b[64];
	hs_pbjson_json_name(b, sizeof(b), "mem_size_mib");
	assert_string_equal(b, "memSizeMib");
	hs_pbjson_json_name(b, 4, "sandbox_id");
	assert_string_equal(b, "san");
	const ProtobufCMessageDescriptor *d = &harness__v1__create_sandbox_request__descriptor;
	assert_string_equal(hs_pbjson_field_lookup(d, "vcpuCount")->name, "vcpu_count");
	assert_string_equal(hs_pbjson_field_lookup(d, "vcpu_count")->name, "vcpu_count");
	assert_null(hs_pbjson_field_lookup(d, "nope"));
	assert_true(hs_pbjson_field_is_map(hs_pbjson_field_lookup(d, "labels")));
	assert_false(hs_pbjson_field_is_map(hs_pbjson_field_lookup(d, "drives")));
	assert_false(hs_pbjson_field_is_map(hs_pbjson_field_lookup(d, "entrypoint")));
}

/* An arena stand-in for hs_pbjson_struct_from_text: remember every block,
 * free them all at the end. */
typedef struct pool {
	void *blocks[4096];
	size_t n;
} pool;

static void *pool_alloc(void *payload, size_t size)
{
	pool *p = payload;
	if (p->n == sizeof(p->blocks) / sizeof(p->blocks[0]))
		return NULL;
	return p->blocks[p->n++] = calloc(1, size);
}

static void pool_nofree(void *payload, void *ptr)
{
	(void)payload;
	(void)ptr;
}

static void pool_free(pool *p)
{
	while (p->n)
		free(p->blocks[--p->n]);
}

/* external_state's codec: text <-> Struct in an arena, sorted and stable. */
static void test_pbjson__struct_text_round_trip_in_an_arena(void **state)
{
	(void)state;
	static pool p;
	ProtobufCAllocator a = { pool_alloc, pool_nofree, &p };
	const char *in = "{\"a\":1,\"b\":[true,null,\"x\",2.5,{\"c\":{}}],\"d\":\"\xc3\xa9\",\"e\":-3,"
			 "\"f\":0.10000000000000001}";
	Google__Protobuf__Struct *s = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_pbjson_struct_from_text(in, &a, &s, &err), HS_OK);
	assert_int_equal(s->n_fields, 5);
	char *out = NULL;
	assert_int_equal(hs_pbjson_struct_to_text(s, &out, &err), HS_OK);
	assert_string_equal(out, in); /* keys sorted, integers stay integers, 17 digits */
	free(out);
	pool_free(&p);
	/* NULL / "" -> an empty Struct, and back to "{}"; NULL Struct -> "{}" */
	assert_int_equal(hs_pbjson_struct_from_text(NULL, &a, &s, &err), HS_OK);
	assert_int_equal(s->n_fields, 0);
	assert_int_equal(hs_pbjson_struct_to_text(s, &out, &err), HS_OK);
	assert_string_equal(out, "{}");
	free(out);
	assert_int_equal(hs_pbjson_struct_to_text(NULL, &out, &err), HS_OK);
	assert_string_equal(out, "{}");
	free(out);
	pool_free(&p);
	assert_int_equal(hs_pbjson_struct_from_text("[1]", &a, &s, &err), HS_INVALID);
	hs_error_clear(&err);
	/* the default allocator when none is given */
	assert_int_equal(hs_pbjson_struct_from_text("{\"k\":\"v\"}", NULL, &s, &err), HS_OK);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	pool_free(&p);
}

/* A Value without a JSON form, and nesting past HS_PBJSON_DEPTH_MAX, both
 * ways: refused with a message, never a crash or a string "NaN". */
static void test_pbjson__struct_refusals_and_depth(void **state)
{
	(void)state;
	hs_error err = { 0 };
	char *out = NULL;
	Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
	Google__Protobuf__Struct__FieldsEntry e = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
	Google__Protobuf__Struct__FieldsEntry *ep = &e;
	Google__Protobuf__Struct s = GOOGLE__PROTOBUF__STRUCT__INIT;
	e.key = "k";
	e.value = &v;
	s.n_fields = 1;
	s.fields = &ep;
	v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
	v.number_value = NAN;
	assert_int_equal(hs_pbjson_struct_to_text(&s, &out, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "finite"));
	hs_error_clear(&err);
	v.number_value = -INFINITY;
	assert_int_equal(hs_pbjson_struct_to_text(&s, &out, &err), HS_INVALID);
	hs_error_clear(&err);
	v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET;
	assert_int_equal(hs_pbjson_struct_to_text(&s, &out, &err), HS_INVALID);
	hs_error_clear(&err);
	/* encode: a list nested deeper than the bound */
	enum { DEPTH = HS_PBJSON_DEPTH_MAX };
	static Google__Protobuf__Value vs[DEPTH];
	static Google__Protobuf__ListValue ls[DEPTH];
	static Google__Protobuf__Value *vp[DEPTH];
	for (int i = 0; i < DEPTH; i++) {
		google__protobuf__value__init(&vs[i]);
		google__protobuf__list_value__init(&ls[i]);
		vs[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
		vs[i].list_value = &ls[i];
		if (i + 1 < DEPTH) {
			vp[i] = &vs[i + 1];
			ls[i].n_values = 1;
			ls[i].values = &vp[i];
		}
	}
	e.value = &vs[0];
	assert_int_equal(hs_pbjson_struct_to_text(&s, &out, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "nested deeper than 100 levels"));
	hs_error_clear(&err);
	/* decode: JSON arrays nested 2,000 deep (jansson parses them) */
	enum { N = 2000 };
	char *deep = malloc(2 * N + 16);
	assert_non_null(deep);
	size_t k = 0;
	k += (size_t)snprintf(deep, 8, "{\"k\":");
	for (int i = 0; i < N; i++)
		deep[k++] = '[';
	for (int i = 0; i < N; i++)
		deep[k++] = ']';
	deep[k++] = '}';
	deep[k] = '\0';
	Google__Protobuf__Struct *got = NULL;
	int rc = hs_pbjson_struct_from_text(deep, NULL, &got, &err);
	assert_int_equal(rc, HS_INVALID);
	free(deep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pbjson__encodes_sandbox_with_camel_names_enums_int64_maps_time),
		cmocka_unit_test(test_pbjson__omits_defaults_unless_asked),
		cmocka_unit_test(test_pbjson__struct_round_trips_as_plain_json),
		cmocka_unit_test(test_pbjson__parse_accepts_both_names_and_numbers_or_strings),
		cmocka_unit_test(test_pbjson__enums_by_name_or_number),
		cmocka_unit_test(test_pbjson__uint64_and_doubles),
		cmocka_unit_test(test_pbjson__bytes_base64_both_alphabets),
		cmocka_unit_test(test_pbjson__proto2_optional_presence),
		cmocka_unit_test(test_pbjson__timestamps),
		cmocka_unit_test(test_pbjson__errors_name_the_field_and_leak_nothing),
		cmocka_unit_test(test_pbjson__ignore_unknown_and_null_means_default),
		cmocka_unit_test(test_pbjson__decoded_messages_pack_like_native_ones),
		cmocka_unit_test(test_pbjson__field_lookup_and_names),
		cmocka_unit_test(test_pbjson__struct_text_round_trip_in_an_arena),
		cmocka_unit_test(test_pbjson__struct_refusals_and_depth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
