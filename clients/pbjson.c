/* pbjson: proto3 JSON <-> protobuf-c messages through descriptors only.
 *
 * Decoding builds the message in place with malloc'd memory laid out as
 * protobuf_c_message_unpack would (strings, arrays, sub-messages), keeping
 * it consistent at every step so that a failure half-way is cleaned up by
 * protobuf_c_message_free_unpacked: arrays are calloc'd and their count set
 * at once, a oneof's case is set together with its member, and a string
 * overwritten by a repeated key is freed first. */
#include "pbjson.h"
#include "utf8.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PATH_MAX_LEN 200

typedef struct dec {
	const hs_pbjson_opts *opts;
	hs_error *err;
	unsigned depth; /* message levels entered (bounded by HS_PBJSON_DEPTH_MAX) */
	char path[PATH_MAX_LEN];
} dec;

static const hs_pbjson_opts default_opts = HS_PBJSON_OPTS_INIT;

/* ---- names ------------------------------------------------------------ */

void hs_pbjson_json_name(char *buf, size_t n, const char *name)
{
	size_t o = 0;
	int up = 0;
	if (n == 0)
		return;
	for (const char *p = name; *p && o + 1 < n; p++) {
		if (*p == '_') {
			up = 1;
			continue;
		}
		buf[o++] = (up && *p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
		up = 0;
	}
	buf[o] = '\0';
}

const ProtobufCFieldDescriptor *hs_pbjson_field_lookup(const ProtobufCMessageDescriptor *desc,
						       const char *name)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, name);
	if (f != NULL)
		return f;
	for (unsigned i = 0; i < desc->n_fields; i++) {
		char jn[128];
		hs_pbjson_json_name(jn, sizeof(jn), desc->fields[i].name);
		if (strcmp(jn, name) == 0)
			return &desc->fields[i];
	}
	return NULL;
}

bool hs_pbjson_field_is_map(const ProtobufCFieldDescriptor *f)
{
	if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
		return false;
	const ProtobufCMessageDescriptor *d = f->descriptor;
	size_t nl = strlen(d->name);
	return d->n_fields == 2 && nl > 5 && strcmp(d->name + nl - 5, "Entry") == 0 &&
	       strcmp(d->fields[0].name, "key") == 0 && d->fields[0].id == 1 &&
	       strcmp(d->fields[1].name, "value") == 0 && d->fields[1].id == 2;
}

static bool is_wkt(const ProtobufCMessageDescriptor *d, const char *short_name)
{
	return strncmp(d->name, "google.protobuf.", 16) == 0 && strcmp(d->name + 16, short_name) == 0;
}

static const ProtobufCFieldDescriptor *field_named(const ProtobufCMessageDescriptor *d, const char *n)
{
	return protobuf_c_message_descriptor_get_field_by_name(d, n);
}

#define SLOT(m, f) ((void *)((char *)(m) + (f)->offset))
#define CSLOT(m, f) ((const void *)((const char *)(m) + (f)->offset))
#define QUANT(m, f) ((void *)((char *)(m) + (f)->quantifier_offset))
#define CQUANT(m, f) ((const void *)((const char *)(m) + (f)->quantifier_offset))

static size_t elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

/* ---- encode ----------------------------------------------------------- */

static json_t *enc_message(const ProtobufCMessage *m, const hs_pbjson_opts *o, hs_error *err);

static json_t *enc_double(double v)
{
	if (isnan(v))
		return json_string("NaN");
	if (isinf(v))
		return json_string(v > 0 ? "Infinity" : "-Infinity");
	/* Integral values print as integers (1, not 1.0), as most encoders do. */
	if (v == floor(v) && fabs(v) < 9007199254740992.0)
		return json_integer((json_int_t)v);
	return json_real(v);
}

static json_t *enc_u64(uint64_t v)
{
	char b[32];
	snprintf(b, sizeof(b), "%" PRIu64, v);
	return json_string(b);
}

static json_t *enc_i64(int64_t v)
{
	char b[32];
	snprintf(b, sizeof(b), "%" PRId64, v);
	return json_string(b);
}

static json_t *enc_scalar(const ProtobufCFieldDescriptor *f, const void *p, const hs_pbjson_opts *o,
			  hs_error *err)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_integer(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_integer(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return enc_i64(*(const int64_t *)p);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return enc_u64(*(const uint64_t *)p);
	case PROTOBUF_C_TYPE_FLOAT:
		return enc_double(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return enc_double(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return json_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		if (strcmp(ed->name, "google.protobuf.NullValue") == 0)
			return json_null();
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
		return ev ? json_string(ev->name) : json_integer(v);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		if (!hs_utf8_valid(s ? s : "", NULL)) {
			hs_error_set(err, HS_INVALID, "%s: not valid UTF-8", f->name);
			return NULL;
		}
		json_t *j = json_string_nocheck(s ? s : "");
		if (j == NULL)
			hs_error_set(err, HS_INTERNAL, "out of memory");
		return j;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		char *s = hs_pbjson_b64_encode(b->data, b->len);
		json_t *j = s ? json_string(s) : NULL;
		free(s);
		return j;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sm = *(ProtobufCMessage *const *)p;
		if (sm == NULL)
			return json_null();
		return enc_message(sm, o, err);
	}
	}
	return NULL;
}

static bool scalar_is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		return s == NULL || *s == '\0';
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)p)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(ProtobufCMessage *const *)p == NULL;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)p == 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0;
	default: {
		size_t n = elem_size(f->type);
		static const char zero[8];
		return memcmp(p, zero, n) == 0;
	}
	}
}

static json_t *enc_map(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m,
		       const hs_pbjson_opts *o, hs_error *err)
{
	size_t n = *(const size_t *)CQUANT(m, f);
	ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)CSLOT(m, f);
	const ProtobufCMessageDescriptor *ed = f->descriptor;
	const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
	json_t *obj = json_object();
	for (size_t i = 0; obj && i < n; i++) {
		char kb[48];
		const char *key = kb;
		const void *kp = CSLOT(arr[i], kf);
		switch (kf->type) {
		case PROTOBUF_C_TYPE_STRING:
			key = *(char *const *)kp ? *(char *const *)kp : "";
			break;
		case PROTOBUF_C_TYPE_BOOL:
			key = *(const protobuf_c_boolean *)kp ? "true" : "false";
			break;
		default: {
			json_t *kj = enc_scalar(kf, kp, o, err);
			if (json_is_string(kj))
				snprintf(kb, sizeof(kb), "%s", json_string_value(kj));
			else
				snprintf(kb, sizeof(kb), "%" JSON_INTEGER_FORMAT, json_integer_value(kj));
			json_decref(kj);
		}
		}
		json_t *v = enc_scalar(vf, CSLOT(arr[i], vf), o, err);
		if (v == NULL || json_object_set_new(obj, key, v) != 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

static json_t *enc_wkt(const ProtobufCMessage *m, const hs_pbjson_opts *o, hs_error *err, bool *handled)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	*handled = true;
	if (is_wkt(d, "Timestamp")) {
		const ProtobufCFieldDescriptor *fs = field_named(d, "seconds"), *fn = field_named(d, "nanos");
		char b[48];
		long long s = *(const int64_t *)CSLOT(m, fs);
		int ns = *(const int32_t *)CSLOT(m, fn);
		if (hs_pbjson_format_time(b, sizeof(b), s, ns) != HS_OK) {
			hs_error_set(err, HS_INVALID, "Timestamp out of range: %lld.%09d", s, ns);
			return NULL;
		}
		return json_string(b);
	}
	if (is_wkt(d, "Struct")) {
		const ProtobufCFieldDescriptor *ff = field_named(d, "fields");
		return enc_map(ff, m, o, err);
	}
	if (is_wkt(d, "ListValue")) {
		const ProtobufCFieldDescriptor *vf = field_named(d, "values");
		size_t n = *(const size_t *)CQUANT(m, vf);
		ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)CSLOT(m, vf);
		json_t *a = json_array();
		for (size_t i = 0; a && i < n; i++) {
			json_t *v = enc_message(arr[i], o, err);
			if (v == NULL || json_array_append_new(a, v) != 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	if (is_wkt(d, "Value")) {
		/* As protojson does: a Value holds a JSON value, and NaN, the
		 * infinities and "no kind set" have no JSON form (a "NaN" string
		 * would come back as a string_value). */
		for (unsigned i = 0; i < d->n_fields; i++) {
			const ProtobufCFieldDescriptor *f = &d->fields[i];
			if (*(const uint32_t *)CQUANT(m, f) != f->id)
				continue;
			if (f->type == PROTOBUF_C_TYPE_DOUBLE && !isfinite(*(const double *)CSLOT(m, f))) {
				hs_error_set(err, HS_INVALID,
					     "a Value's number must be finite (NaN and Infinity have no JSON form)");
				return NULL;
			}
			return enc_scalar(f, CSLOT(m, f), o, err);
		}
		hs_error_set(err, HS_INVALID, "a Value must have one kind set");
		return NULL;
	}
	*handled = false;
	return NULL;
}

/* Message levels the encoder has entered on this thread. Every recursion of
 * the encoder passes through enc_message, so counting here bounds them all
 * without a depth argument on every helper. */
static _Thread_local unsigned enc_depth;

static json_t *enc_message_body(const ProtobufCMessage *m, const hs_pbjson_opts *o,
				hs_error *err);

static json_t *enc_message(const ProtobufCMessage *m, const hs_pbjson_opts *o, hs_error *err)
{
	if (enc_depth >= HS_PBJSON_DEPTH_MAX) {
		hs_error_set(err, HS_INVALID, "nested deeper than %d levels", HS_PBJSON_DEPTH_MAX);
		return NULL;
	}
	enc_depth++;
	json_t *j = enc_message_body(m, o, err);
	enc_depth--;
	return j;
}

static json_t *enc_message_body(const ProtobufCMessage *m, const hs_pbjson_opts *o,
				hs_error *err)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	bool handled;
	json_t *w = enc_wkt(m, o, err, &handled);
	if (handled)
		return w;
	json_t *obj = json_object();
	if (obj == NULL)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const void *p = CSLOT(m, f);
		json_t *v = NULL;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			if (*(const uint32_t *)CQUANT(m, f) != f->id)
				continue;
			v = enc_scalar(f, p, o, err);
		} else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)CQUANT(m, f);
			if (n == 0 && !o->emit_defaults)
				continue;
			if (hs_pbjson_field_is_map(f)) {
				v = enc_map(f, m, o, err);
			} else {
				const char *arr = *(const char *const *)p;
				size_t es = elem_size(f->type);
				v = json_array();
				for (size_t k = 0; v && k < n; k++) {
					json_t *e = enc_scalar(f, arr + k * es, o, err);
					if (e == NULL || json_array_append_new(v, e) != 0) {
						json_decref(v);
						v = NULL;
					}
				}
			}
		} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
			   f->type != PROTOBUF_C_TYPE_STRING && f->quantifier_offset != 0) {
			if (!*(const protobuf_c_boolean *)CQUANT(m, f) && !o->emit_defaults)
				continue;
			v = enc_scalar(f, p, o, err);
		} else {
			if (scalar_is_default(f, p) && !o->emit_defaults)
				continue;
			v = enc_scalar(f, p, o, err);
		}
		if (v == NULL) {
			json_decref(obj);
			if (err != NULL && err->code == HS_OK)
				hs_error_set(err, HS_INTERNAL, "%s: cannot encode", f->name);
			return NULL;
		}
		char jn[128];
		if (!o->original_names)
			hs_pbjson_json_name(jn, sizeof(jn), f->name);
		json_object_set_new(obj, o->original_names ? f->name : jn, v);
	}
	return obj;
}

int hs_pbjson_encode(json_t **out, const ProtobufCMessage *msg, const hs_pbjson_opts *opts,
		     hs_error *err)
{
	hs_error local = { 0 };
	json_t *j = enc_message(msg, opts ? opts : &default_opts, &local);
	if (j == NULL) {
		if (local.code == HS_OK)
			hs_error_set(&local, HS_INTERNAL, "%s: cannot encode", msg->descriptor->name);
		return hs_error_set(err, local.code, "%s", local.msg);
	}
	*out = j;
	return HS_OK;
}

int hs_pbjson_to_string(char **out, const ProtobufCMessage *msg, const hs_pbjson_opts *opts,
			size_t flags, hs_error *err)
{
	json_t *j;
	int rc = hs_pbjson_encode(&j, msg, opts, err);
	if (rc != HS_OK)
		return rc;
	if ((flags & JSON_REAL_PRECISION(31)) == 0)
		flags |= JSON_REAL_PRECISION(15);
	char *s = json_dumps(j, flags | JSON_ENCODE_ANY);
	json_decref(j);
	if (s == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	*out = s;
	return HS_OK;
}

/* ---- decode ----------------------------------------------------------- */

static int dec_message(dec *d, ProtobufCMessage *m, const json_t *j);

static int fail(dec *d, const char *fmt, const char *detail)
{
	return hs_error_set(d->err, HS_INVALID, "%s: %s%s", d->path[0] ? d->path : "(message)", fmt,
			    detail ? detail : "");
}

static ProtobufCMessage *msg_new(const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = calloc(1, desc->sizeof_message);
	if (m != NULL)
		desc->message_init(m);
	return m;
}

static size_t path_push(dec *d, const char *name, bool index, size_t i)
{
	size_t len = strlen(d->path);
	if (index)
		snprintf(d->path + len, sizeof(d->path) - len, "[%zu]", i);
	else
		snprintf(d->path + len, sizeof(d->path) - len, "%s%s", len ? "." : "", name);
	return len;
}

/* Integer from a JSON number or numeric string, within [lo, hi]. */
static int get_int(dec *d, const json_t *j, long long lo, long long hi, long long *out)
{
	long long v;
	if (json_is_integer(j)) {
		v = json_integer_value(j);
	} else if (json_is_real(j)) {
		double x = json_real_value(j);
		if (x != floor(x) || x < -9.3e18 || x > 9.3e18)
			return fail(d, "not an integer", NULL);
		v = (long long)x;
	} else if (json_is_string(j)) {
		const char *s = json_string_value(j);
		char *end;
		errno = 0;
		v = strtoll(s, &end, 10);
		if (*s == '\0' || *end != '\0' || errno != 0)
			return fail(d, "not an integer: ", s);
	} else {
		return fail(d, "expected an integer", NULL);
	}
	if (v < lo || v > hi)
		return fail(d, "integer out of range", NULL);
	*out = v;
	return HS_OK;
}

static int get_u64(dec *d, const json_t *j, uint64_t *out)
{
	if (json_is_string(j)) {
		const char *s = json_string_value(j);
		char *end;
		errno = 0;
		unsigned long long v = strtoull(s, &end, 10);
		if (*s == '\0' || *s == '-' || *end != '\0' || errno != 0)
			return fail(d, "not an unsigned integer: ", s);
		*out = v;
		return HS_OK;
	}
	long long v;
	int rc = get_int(d, j, 0, LLONG_MAX, &v);
	if (rc == HS_OK)
		*out = (uint64_t)v;
	return rc;
}

static int get_double(dec *d, const json_t *j, double *out)
{
	if (json_is_number(j)) {
		*out = json_number_value(j);
		return HS_OK;
	}
	if (json_is_string(j)) {
		const char *s = json_string_value(j);
		if (strcmp(s, "NaN") == 0) {
			*out = NAN;
		} else if (strcmp(s, "Infinity") == 0) {
			*out = INFINITY;
		} else if (strcmp(s, "-Infinity") == 0) {
			*out = -INFINITY;
		} else {
			char *end;
			errno = 0;
			*out = strtod(s, &end);
			if (*s == '\0' || *end != '\0' || errno != 0)
				return fail(d, "not a number: ", s);
		}
		return HS_OK;
	}
	return fail(d, "expected a number", NULL);
}

static int dec_enum(dec *d, const ProtobufCEnumDescriptor *ed, const json_t *j, int *out)
{
	if (json_is_string(j)) {
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(j));
		if (ev == NULL)
			return fail(d, "unknown enum value: ", json_string_value(j));
		*out = ev->value;
		return HS_OK;
	}
	long long v;
	int rc = get_int(d, j, INT32_MIN, INT32_MAX, &v);
	if (rc == HS_OK)
		*out = (int)v;
	return rc;
}

static int dec_wkt(dec *d, ProtobufCMessage *m, const json_t *j, bool *handled);

/* One value of field f into p (a singular slot or an array element). */
static int dec_value(dec *d, const ProtobufCFieldDescriptor *f, const json_t *j, void *p)
{
	long long v;
	int rc = HS_OK;
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		if ((rc = get_int(d, j, INT32_MIN, INT32_MAX, &v)) == HS_OK)
			*(int32_t *)p = (int32_t)v;
		return rc;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if ((rc = get_int(d, j, 0, UINT32_MAX, &v)) == HS_OK)
			*(uint32_t *)p = (uint32_t)v;
		return rc;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if ((rc = get_int(d, j, LLONG_MIN, LLONG_MAX, &v)) == HS_OK)
			*(int64_t *)p = v;
		return rc;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return get_u64(d, j, (uint64_t *)p);
	case PROTOBUF_C_TYPE_FLOAT: {
		double x;
		if ((rc = get_double(d, j, &x)) == HS_OK)
			*(float *)p = (float)x;
		return rc;
	}
	case PROTOBUF_C_TYPE_DOUBLE:
		return get_double(d, j, (double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(j))
			return fail(d, "expected true or false", NULL);
		*(protobuf_c_boolean *)p = json_is_true(j);
		return HS_OK;
	case PROTOBUF_C_TYPE_ENUM:
		return dec_enum(d, f->descriptor, j, (int *)p);
	case PROTOBUF_C_TYPE_STRING: {
		if (!json_is_string(j))
			return fail(d, "expected a string", NULL);
		char *s = strdup(json_string_value(j));
		if (s == NULL)
			return hs_error_set(d->err, HS_INTERNAL, "out of memory");
		char **slot = p;
		if (*slot != NULL && *slot != (char *)f->default_value && *slot != protobuf_c_empty_string)
			free(*slot);
		*slot = s;
		return HS_OK;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		ProtobufCBinaryData *b = p;
		uint8_t *data;
		size_t n;
		if (!json_is_string(j))
			return fail(d, "expected a base64 string", NULL);
		if (hs_pbjson_b64_decode(json_string_value(j), &data, &n) != 0)
			return fail(d, "invalid base64", NULL);
		const ProtobufCBinaryData *def = f->default_value;
		if (b->data != NULL && (def == NULL || def->data != b->data))
			free(b->data);
		b->data = data;
		b->len = n;
		return HS_OK;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		ProtobufCMessage **slot = p;
		if (*slot == NULL) {
			*slot = msg_new(f->descriptor);
			if (*slot == NULL)
				return hs_error_set(d->err, HS_INTERNAL, "out of memory");
		}
		return dec_message(d, *slot, j);
	}
	}
	return fail(d, "unsupported field type", NULL);
}

/* Map key from its JSON object key text. */
static int dec_map_key(dec *d, const ProtobufCFieldDescriptor *kf, const char *key, void *p)
{
	if (kf->type == PROTOBUF_C_TYPE_BOOL) {
		if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
			return fail(d, "map key must be true or false", NULL);
		*(protobuf_c_boolean *)p = strcmp(key, "true") == 0;
		return HS_OK;
	}
	if (!hs_utf8_valid(key, NULL))
		return fail(d, "map key is not valid UTF-8", NULL);
	json_t *k = json_string_nocheck(key);
	if (k == NULL)
		return hs_error_set(d->err, HS_INTERNAL, "out of memory");
	int rc = dec_value(d, kf, k, p);
	json_decref(k);
	return rc;
}

static int dec_repeated(dec *d, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const json_t *j)
{
	size_t *np = QUANT(m, f);
	void **arrp = SLOT(m, f);
	size_t es = elem_size(f->type);
	bool map = hs_pbjson_field_is_map(f);
	size_t n;
	if (map && !json_is_object(j))
		return fail(d, "expected an object (map)", NULL);
	if (!map && !json_is_array(j))
		return fail(d, "expected an array", NULL);
	n = map ? json_object_size(j) : json_array_size(j);
	if (n == 0)
		return HS_OK;
	*arrp = calloc(n, es);
	if (*arrp == NULL)
		return hs_error_set(d->err, HS_INTERNAL, "out of memory");
	*np = n;
	if (!map) {
		for (size_t i = 0; i < n; i++) {
			const json_t *e = json_array_get(j, i);
			size_t len = path_push(d, NULL, true, i);
			int rc = json_is_null(e) && !(f->type == PROTOBUF_C_TYPE_MESSAGE &&
						     is_wkt(f->descriptor, "Value"))
					 ? fail(d, "null is not allowed in a list", NULL)
					 : dec_value(d, f, e, (char *)*arrp + i * es);
			if (rc != HS_OK)
				return rc;
			d->path[len] = '\0';
		}
		return HS_OK;
	}
	const ProtobufCMessageDescriptor *ed = f->descriptor;
	const char *key;
	const json_t *val;
	size_t i = 0;
	json_object_foreach((json_t *)j, key, val)
	{
		ProtobufCMessage *e = msg_new(ed);
		if (e == NULL)
			return hs_error_set(d->err, HS_INTERNAL, "out of memory");
		((ProtobufCMessage **)*arrp)[i++] = e;
		size_t len = path_push(d, key, false, 0);
		int rc = dec_map_key(d, &ed->fields[0], key, SLOT(e, &ed->fields[0]));
		if (rc == HS_OK)
			rc = json_is_null(val) && !(ed->fields[1].type == PROTOBUF_C_TYPE_MESSAGE &&
						    is_wkt(ed->fields[1].descriptor, "Value"))
				     ? fail(d, "null is not allowed as a map value", NULL)
				     : dec_value(d, &ed->fields[1], val, SLOT(e, &ed->fields[1]));
		if (rc != HS_OK)
			return rc;
		d->path[len] = '\0';
	}
	return HS_OK;
}

static int dec_field(dec *d, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const json_t *j)
{
	bool value_field = f->type == PROTOBUF_C_TYPE_MESSAGE && is_wkt(f->descriptor, "Value");
	if (json_is_null(j) && !value_field)
		return HS_OK; /* null = default */
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return dec_repeated(d, m, f, j);
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		uint32_t *c = QUANT(m, f);
		if (*c != 0 && *c != f->id)
			return fail(d, "more than one member of a oneof is set", NULL);
		*c = f->id;
	} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
		   f->type != PROTOBUF_C_TYPE_STRING && f->quantifier_offset != 0) {
		*(protobuf_c_boolean *)QUANT(m, f) = 1;
	}
	return dec_value(d, f, j, SLOT(m, f));
}

static int set_value_kind(dec *d, ProtobufCMessage *m, const char *fname, const json_t *j)
{
	const ProtobufCFieldDescriptor *f = field_named(m->descriptor, fname);
	*(uint32_t *)QUANT(m, f) = f->id;
	if (strcmp(fname, "null_value") == 0) {
		*(int *)SLOT(m, f) = 0;
		return HS_OK;
	}
	return dec_value(d, f, j, SLOT(m, f));
}

static int dec_wkt(dec *d, ProtobufCMessage *m, const json_t *j, bool *handled)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	*handled = true;
	if (is_wkt(desc, "Timestamp")) {
		long long s;
		int ns;
		if (!json_is_string(j) || hs_pbjson_parse_time(json_string_value(j), &s, &ns) != HS_OK)
			return fail(d, "expected an RFC 3339 timestamp like 2024-05-01T10:00:00Z", NULL);
		*(int64_t *)SLOT(m, field_named(desc, "seconds")) = s;
		*(int32_t *)SLOT(m, field_named(desc, "nanos")) = ns;
		return HS_OK;
	}
	if (is_wkt(desc, "Struct")) {
		if (!json_is_object(j))
			return fail(d, "expected a JSON object", NULL);
		return dec_repeated(d, m, field_named(desc, "fields"), j);
	}
	if (is_wkt(desc, "ListValue")) {
		if (!json_is_array(j))
			return fail(d, "expected a JSON array", NULL);
		return dec_repeated(d, m, field_named(desc, "values"), j);
	}
	if (is_wkt(desc, "Value")) {
		if (json_is_null(j))
			return set_value_kind(d, m, "null_value", j);
		if (json_is_number(j))
			return set_value_kind(d, m, "number_value", j);
		if (json_is_string(j))
			return set_value_kind(d, m, "string_value", j);
		if (json_is_boolean(j))
			return set_value_kind(d, m, "bool_value", j);
		if (json_is_object(j))
			return set_value_kind(d, m, "struct_value", j);
		return set_value_kind(d, m, "list_value", j);
	}
	*handled = false;
	return HS_OK;
}

static int dec_message_body(dec *d, ProtobufCMessage *m, const json_t *j);

static int dec_message(dec *d, ProtobufCMessage *m, const json_t *j)
{
	if (d->depth >= HS_PBJSON_DEPTH_MAX)
		return hs_error_set(d->err, HS_INVALID, "%s: nested deeper than %d levels",
				    d->path[0] ? d->path : "(message)", HS_PBJSON_DEPTH_MAX);
	d->depth++;
	int rc = dec_message_body(d, m, j);
	d->depth--;
	return rc;
}

static int dec_message_body(dec *d, ProtobufCMessage *m, const json_t *j)
{
	bool handled;
	int rc = dec_wkt(d, m, j, &handled);
	if (handled)
		return rc;
	if (!json_is_object(j))
		return fail(d, "expected a JSON object for ", m->descriptor->name);
	const char *key;
	const json_t *val;
	/* A field may be named once (proto or JSON name, not both). */
	bool *seen = calloc(m->descriptor->n_fields + 1, sizeof(bool));
	if (seen == NULL)
		return hs_error_set(d->err, HS_INTERNAL, "out of memory");
	json_object_foreach((json_t *)j, key, val)
	{
		const ProtobufCFieldDescriptor *f = hs_pbjson_field_lookup(m->descriptor, key);
		size_t len = path_push(d, f ? f->name : key, false, 0);
		if (f == NULL) {
			if (d->opts->ignore_unknown) {
				d->path[len] = '\0';
				continue;
			}
			rc = fail(d, "unknown field of ", m->descriptor->name);
			break;
		}
		if (seen[f - m->descriptor->fields]) {
			rc = fail(d, "field given twice (proto and JSON name)", NULL);
			break;
		}
		seen[f - m->descriptor->fields] = true;
		if ((rc = dec_field(d, m, f, val)) != HS_OK)
			break;
		d->path[len] = '\0';
	}
	free(seen);
	return rc;
}

int hs_pbjson_decode(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
		     const json_t *in, const hs_pbjson_opts *opts, hs_error *err)
{
	dec d = { opts ? opts : &default_opts, err, 0, "" };
	ProtobufCMessage *m = msg_new(desc);
	if (m == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	int rc = dec_message(&d, m, in);
	if (rc != HS_OK) {
		protobuf_c_message_free_unpacked(m, NULL);
		return rc;
	}
	*out = m;
	return HS_OK;
}

int hs_pbjson_from_string(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
			  const char *text, const hs_pbjson_opts *opts, hs_error *err)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
	if (j == NULL)
		return hs_error_set(err, HS_INVALID, "invalid JSON at line %d column %d: %s", je.line,
				    je.column, je.text);
	int rc = hs_pbjson_decode(out, desc, j, opts, err);
	json_decref(j);
	return rc;
}

/* ---- google.protobuf.Struct as stored text ----------------------------- */

int hs_pbjson_struct_to_text(const Google__Protobuf__Struct *s, char **out, hs_error *err)
{
	if (s == NULL) {
		char *e = strdup("{}");
		if (e == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		*out = e;
		return HS_OK;
	}
	/* 17 significant digits: a double survives the trip to text and back. */
	return hs_pbjson_to_string(out, &s->base, NULL,
				   JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17), err);
}

int hs_pbjson_struct_from_text(const char *text, ProtobufCAllocator *alloc,
			       Google__Protobuf__Struct **out, hs_error *err)
{
	ProtobufCMessage *m = NULL;
	int rc = hs_pbjson_from_string(&m, &google__protobuf__struct__descriptor,
				       text != NULL && text[0] != '\0' ? text : "{}", NULL, err);
	if (rc != HS_OK)
		return rc;
	if (alloc == NULL) {
		*out = (Google__Protobuf__Struct *)m;
		return HS_OK;
	}
	/* Re-read into the caller's allocator (an RPC arena): one pack and
	 * unpack rather than a second decoder that allocates differently. */
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	ProtobufCMessage *copy = NULL;
	if (buf != NULL) {
		protobuf_c_message_pack(m, buf);
		copy = protobuf_c_message_unpack(&google__protobuf__struct__descriptor, alloc, len, buf);
	}
	free(buf);
	protobuf_c_message_free_unpacked(m, NULL);
	if (copy == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	*out = (Google__Protobuf__Struct *)copy;
	return HS_OK;
}
