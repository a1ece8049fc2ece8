/* Unit tests of the CheckpointService's Struct <-> JSON converter. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "struct_json.h"

/* An arena stand-in: remember every block, free them all at the end. */
typedef struct pool {
	void *blocks[4096];
	size_t n;
} pool;

static void *pool_alloc(size_t size, void *payload)
{
	pool *p = payload;
	if (p->n == sizeof(p->blocks) / sizeof(p->blocks[0]))
		return NULL;
	return p->blocks[p->n++] = calloc(1, size);
}

static void pool_free(pool *p)
{
	while (p->n)
		free(p->blocks[--p->n]);
}

static void test_struct_json__roundtrip(void **state)
{
	(void)state;
	static pool p;
	const char *in = "{\"a\":1,\"b\":[true,null,\"x\",2.5,{\"c\":{}}],\"d\":\"\xc3\xa9\",\"e\":-3}";
	Google__Protobuf__Struct *s = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_struct_from_json(in, pool_alloc, &p, &s, &err), HS_OK);
	assert_int_equal(s->n_fields, 4);
	char *out = NULL;
	assert_int_equal(hs_struct_to_json(s, &out, &err), HS_OK);
	assert_string_equal(out, in); /* keys sorted, integers stay integers */
	free(out);
	pool_free(&p);
	/* NULL / "" -> an empty Struct, and back to "{}" */
	assert_int_equal(hs_struct_from_json(NULL, pool_alloc, &p, &s, &err), HS_OK);
	assert_int_equal(s->n_fields, 0);
	assert_int_equal(hs_struct_to_json(s, &out, &err), HS_OK);
	assert_string_equal(out, "{}");
	free(out);
	pool_free(&p);
	assert_int_equal(hs_struct_from_json("[1]", pool_alloc, &p, &s, &err), HS_INVALID);
	pool_free(&p);
}

static void test_struct_json__refusals(void **state)
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
	assert_int_equal(hs_struct_to_json(&s, &out, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "external_state"));
	hs_error_clear(&err);
	v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET;
	assert_int_equal(hs_struct_to_json(&s, &out, &err), HS_INVALID);
	hs_error_clear(&err);
	/* nesting deeper than the limit */
	enum { DEPTH = HS_STRUCT_JSON_DEPTH_MAX + 2 };
	Google__Protobuf__Value vs[DEPTH];
	Google__Protobuf__ListValue ls[DEPTH];
	Google__Protobuf__Value *vp[DEPTH];
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
	assert_int_equal(hs_struct_to_json(&s, &out, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "deeper"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_struct_json__roundtrip),
		cmocka_unit_test(test_struct_json__refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
