/* google.protobuf.Struct <-> JSON text with jansson. Numbers are doubles on
 * the wire: JSON integers become doubles, doubles with no fraction that fit
 * in 2^53 go back out as JSON integers. */
#include "struct_json.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIELD "external_state"

/* --- Struct -> JSON -------------------------------------------------------- */

static json_t *value_to_json(const Google__Protobuf__Value *v, int depth, hs_error *err);

static json_t *struct_to_json(const Google__Protobuf__Struct *s, int depth, hs_error *err)
{
	if (depth > HS_STRUCT_JSON_DEPTH_MAX) {
		hs_error_set(err, HS_INVALID, FIELD ": nested deeper than %d", HS_STRUCT_JSON_DEPTH_MAX);
		return NULL;
	}
	json_t *o = json_object();
	if (!o) {
		hs_error_set(err, HS_INTERNAL, FIELD ": out of memory");
		return NULL;
	}
	for (size_t i = 0; s && i < s->n_fields; i++) {
		const Google__Protobuf__Struct__FieldsEntry *e = s->fields[i];
		json_t *v = value_to_json(e->value, depth + 1, err);
		if (!v || json_object_set_new(o, e->key ? e->key : "", v) != 0) {
			if (v)
				hs_error_set(err, HS_INVALID, FIELD ": key is not UTF-8");
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static json_t *value_to_json(const Google__Protobuf__Value *v, int depth, hs_error *err)
{
	json_t *j = NULL;
	if (depth > HS_STRUCT_JSON_DEPTH_MAX) {
		hs_error_set(err, HS_INVALID, FIELD ": nested deeper than %d", HS_STRUCT_JSON_DEPTH_MAX);
		return NULL;
	}
	if (!v) {
		hs_error_set(err, HS_INVALID, FIELD ": value without a kind");
		return NULL;
	}
	switch (v->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE: j = json_null(); break;
	case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE: j = json_boolean(v->bool_value); break;
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
		j = json_string(v->string_value ? v->string_value : "");
		if (!j) {
			hs_error_set(err, HS_INVALID, FIELD ": string is not UTF-8");
			return NULL;
		}
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE: {
		double d = v->number_value;
		if (!isfinite(d)) {
			hs_error_set(err, HS_INVALID, FIELD ": NaN and Infinity are not JSON");
			return NULL;
		}
		if (d == floor(d) && fabs(d) <= 9007199254740992.0)
			j = json_integer((json_int_t)d);
		else
			j = json_real(d);
		break;
	}
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		return struct_to_json(v->struct_value, depth + 1, err);
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: {
		j = json_array();
		const Google__Protobuf__ListValue *l = v->list_value;
		for (size_t i = 0; j && l && i < l->n_values; i++) {
			json_t *e = value_to_json(l->values[i], depth + 1, err);
			if (!e) {
				json_decref(j);
				return NULL;
			}
			json_array_append_new(j, e);
		}
		break;
	}
	default:
		hs_error_set(err, HS_INVALID, FIELD ": value without a kind");
		return NULL;
	}
	if (!j)
		hs_error_set(err, HS_INTERNAL, FIELD ": out of memory");
	return j;
}

int hs_struct_to_json(const Google__Protobuf__Struct *s, char **out, hs_error *err)
{
	json_t *o = struct_to_json(s, 0, err);
	if (!o)
		return err ? err->code : HS_INVALID;
	char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (!text)
		return hs_error_set(err, HS_INTERNAL, FIELD ": out of memory");
	*out = text;
	return HS_OK;
}

/* --- JSON -> Struct -------------------------------------------------------- */

typedef struct builder {
	hs_struct_json_alloc_fn alloc;
	void *payload;
} builder;

static char *b_strdup(builder *b, const char *s, size_t n)
{
	char *c = b->alloc(n + 1, b->payload);
	if (c)
		memcpy(c, s, n); /* zeroed: NUL-terminated */
	return c;
}

static Google__Protobuf__Value *json_to_value(builder *b, json_t *j, int depth);

static Google__Protobuf__Struct *json_to_struct(builder *b, json_t *o, int depth)
{
	Google__Protobuf__Struct *s = b->alloc(sizeof(*s), b->payload);
	if (!s)
		return NULL;
	google__protobuf__struct__init(s);
	size_t n = json_object_size(o);
	if (n == 0)
		return s;
	s->fields = b->alloc(n * sizeof(*s->fields), b->payload);
	if (!s->fields)
		return NULL;
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		Google__Protobuf__Struct__FieldsEntry *e = b->alloc(sizeof(*e), b->payload);
		if (!e)
			return NULL;
		google__protobuf__struct__fields_entry__init(e);
		if (!(e->key = b_strdup(b, key, strlen(key))) || !(e->value = json_to_value(b, v, depth + 1)))
			return NULL;
		s->fields[s->n_fields++] = e;
	}
	return s;
}

static Google__Protobuf__Value *json_to_value(builder *b, json_t *j, int depth)
{
	Google__Protobuf__Value *v = b->alloc(sizeof(*v), b->payload);
	if (!v)
		return NULL;
	google__protobuf__value__init(v);
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
		if (!(v->struct_value = json_to_struct(b, j, depth + 1)))
			return NULL;
		break;
	case JSON_ARRAY: {
		Google__Protobuf__ListValue *l = b->alloc(sizeof(*l), b->payload);
		if (!l)
			return NULL;
		google__protobuf__list_value__init(l);
		size_t n = json_array_size(j);
		if (n && !(l->values = b->alloc(n * sizeof(*l->values), b->payload)))
			return NULL;
		for (size_t i = 0; i < n; i++)
			if (!(l->values[l->n_values++] = json_to_value(b, json_array_get(j, i), depth + 1)))
				return NULL;
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
		v->list_value = l;
		break;
	}
	case JSON_STRING:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
		if (!(v->string_value = b_strdup(b, json_string_value(j), json_string_length(j))))
			return NULL;
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
		v->number_value = json_number_value(j);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
		v->bool_value = json_is_true(j);
		break;
	default:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
		v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
		break;
	}
	return v;
}

int hs_struct_from_json(const char *json, hs_struct_json_alloc_fn alloc, void *payload,
			Google__Protobuf__Struct **out, hs_error *err)
{
	builder b = { alloc, payload };
	json_t *o = NULL;
	if (json && json[0]) {
		o = json_loads(json, JSON_DECODE_ANY, NULL);
		if (!o || !json_is_object(o)) {
			json_decref(o);
			return hs_error_set(err, HS_INVALID, FIELD ": stored value is not a JSON object");
		}
	}
	json_t *empty = o ? NULL : json_object();
	Google__Protobuf__Struct *s = json_to_struct(&b, o ? o : empty, 0);
	json_decref(o);
	json_decref(empty);
	if (!s)
		return hs_error_set(err, HS_INTERNAL, FIELD ": out of memory");
	*out = s;
	return HS_OK;
}
