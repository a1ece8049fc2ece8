/* harnessctl output: `-o json` prints the response in the proto3 JSON
 * mapping (pbjson, lowerCamelCase, defaults included so scripts can rely on
 * every field); the default prints human tables: one row per item for list
 * responses (cmd->list_field), a one-row table for other responses with
 * columns, and FIELD/VALUE rows for detail views. Cells show enum values
 * without their prefix (RUNNING, not SANDBOX_STATE_RUNNING) and times to the
 * second in UTC. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "pbjson.h"

#define MAX_COLS 40

typedef struct buf {
	char *s;
	size_t len, cap;
} buf;

static void bput(buf *b, const char *s)
{
	size_t n = strlen(s);
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->s, cap);
		if (p == NULL)
			return;
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n + 1);
	b->len += n;
}

/* s as terminal-safe text: C0 controls, DEL and C1 controls (U+0080 to
 * U+009F) become \xNN / \u00NN, so text another user chose (a task's
 * failure reason, a label, an event message) cannot move the cursor,
 * retitle the window or rewrite what the table shows. */
static void bput_text(buf *b, const char *s)
{
	char esc[8];
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		const unsigned char *q = p;
		while (*q && *q >= 0x20 && *q != 0x7f && !(q[0] == 0xc2 && q[1] >= 0x80 && q[1] <= 0x9f))
			q++;
		if (q > p) {
			char chunk[256];
			size_t n = (size_t)(q - p) < sizeof(chunk) - 1 ? (size_t)(q - p) : sizeof(chunk) - 1;
			memcpy(chunk, p, n);
			chunk[n] = '\0';
			bput(b, chunk);
			p += n;
			continue;
		}
		if (*p == 0xc2) {
			snprintf(esc, sizeof(esc), "\\u%04x", p[1]);
			p += 2;
		} else {
			snprintf(esc, sizeof(esc), "\\x%02x", *p);
			p++;
		}
		bput(b, esc);
	}
}

static bool is_wkt(const ProtobufCMessageDescriptor *d, const char *name)
{
	return strncmp(d->name, "google.protobuf.", 16) == 0 && strcmp(d->name + 16, name) == 0;
}

/* Text of one element of field f stored at p. */
static void elem_text(buf *b, const ProtobufCFieldDescriptor *f, const void *p)
{
	char t[64];
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		snprintf(t, sizeof(t), "%" PRId32, *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		snprintf(t, sizeof(t), "%" PRIu32, *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(t, sizeof(t), "%" PRId64, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(t, sizeof(t), "%" PRIu64, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		snprintf(t, sizeof(t), "%g", (double)*(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		snprintf(t, sizeof(t), "%g", *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		snprintf(t, sizeof(t), "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, *(const int *)p);
		if (ev != NULL)
			bput(b, ev->name + hs_ctl_enum_prefix(ed));
		else
			snprintf(t, sizeof(t), "%d", *(const int *)p), bput(b, t);
		return;
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		bput_text(b, s ? s : "");
		return;
	}
	case PROTOBUF_C_TYPE_BYTES:
		snprintf(t, sizeof(t), "<%zu bytes>", ((const ProtobufCBinaryData *)p)->len);
		break;
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
		if (m == NULL)
			return;
		if (is_wkt(m->descriptor, "Timestamp")) {
			const int64_t *sec = (const int64_t *)((const char *)m +
							 protobuf_c_message_descriptor_get_field_by_name(
								 m->descriptor, "seconds")->offset);
			char tb[48];
			if (hs_pbjson_format_time(tb, sizeof(tb), *sec, 0) == HS_OK)
				bput(b, tb);
			return;
		}
		char *js = NULL;
		if (hs_pbjson_to_string(&js, m, NULL, JSON_COMPACT, NULL) == HS_OK)
			bput_text(b, js); /* JSON leaves C1 controls as they are */
		free(js);
		return;
	}
	}
	bput(b, t);
}

static void field_text(buf *b, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const char *p = (const char *)m + f->offset;
	if (f->label != PROTOBUF_C_LABEL_REPEATED) {
		elem_text(b, f, p);
		return;
	}
	size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
	if (hs_pbjson_field_is_map(f)) {
		ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)p;
		const ProtobufCMessageDescriptor *ed = f->descriptor;
		for (size_t i = 0; i < n; i++) {
			if (i)
				bput(b, ",");
			elem_text(b, &ed->fields[0], (const char *)arr[i] + ed->fields[0].offset);
			bput(b, "=");
			elem_text(b, &ed->fields[1], (const char *)arr[i] + ed->fields[1].offset);
		}
		return;
	}
	static const size_t sizes[] = {
		[PROTOBUF_C_TYPE_INT32] = 4,  [PROTOBUF_C_TYPE_SINT32] = 4,  [PROTOBUF_C_TYPE_SFIXED32] = 4,
		[PROTOBUF_C_TYPE_INT64] = 8,  [PROTOBUF_C_TYPE_SINT64] = 8,  [PROTOBUF_C_TYPE_SFIXED64] = 8,
		[PROTOBUF_C_TYPE_UINT32] = 4, [PROTOBUF_C_TYPE_FIXED32] = 4, [PROTOBUF_C_TYPE_UINT64] = 8,
		[PROTOBUF_C_TYPE_FIXED64] = 8, [PROTOBUF_C_TYPE_FLOAT] = 4,  [PROTOBUF_C_TYPE_DOUBLE] = 8,
		[PROTOBUF_C_TYPE_BOOL] = sizeof(protobuf_c_boolean), [PROTOBUF_C_TYPE_ENUM] = 4,
		[PROTOBUF_C_TYPE_STRING] = sizeof(char *), [PROTOBUF_C_TYPE_BYTES] = sizeof(ProtobufCBinaryData),
		[PROTOBUF_C_TYPE_MESSAGE] = sizeof(void *),
	};
	const char *arr = *(const char *const *)p;
	for (size_t i = 0; i < n; i++) {
		if (i)
			bput(b, ",");
		elem_text(b, f, arr + i * sizes[f->type]);
	}
}

char *hs_ctl_field_text(const ProtobufCMessage *msg, const char *path)
{
	buf b = { 0 };
	const ProtobufCMessage *m = msg;
	bput(&b, "");
	for (const char *p = path; m != NULL;) {
		const char *dot = strchr(p, '.');
		char name[96];
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		if (n >= sizeof(name))
			break;
		memcpy(name, p, n);
		name[n] = '\0';
		const ProtobufCFieldDescriptor *f = hs_pbjson_field_lookup(m->descriptor, name);
		if (f == NULL)
			break;
		if (dot == NULL) {
			field_text(&b, m, f);
			break;
		}
		if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
			break;
		m = *(ProtobufCMessage *const *)((const char *)m + f->offset);
		p = dot + 1;
	}
	return b.s;
}

/* ---- tables ------------------------------------------------------------ */

typedef struct cols {
	int n;
	char head[MAX_COLS][32];
	char path[MAX_COLS][96];
} cols;

static void cols_parse(cols *c, const char *spec)
{
	c->n = 0;
	for (const char *p = spec; p && *p && c->n < MAX_COLS;) {
		while (*p == ' ')
			p++;
		const char *end = strchr(p, ' ');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq != NULL) {
			snprintf(c->head[c->n], sizeof(c->head[0]), "%.*s", (int)(eq - p), p);
			snprintf(c->path[c->n], sizeof(c->path[0]), "%.*s", (int)(len - (size_t)(eq - p) - 1), eq + 1);
			c->n++;
		}
		p = end;
	}
}

/* -o wide: the command's columns, then every other field of the row
 * message that fits a cell (scalars, enums, maps, repeated scalars,
 * timestamps), in proto order. */
static void cols_widen(cols *c, const ProtobufCMessageDescriptor *d)
{
	for (unsigned i = 0; i < d->n_fields && c->n < MAX_COLS; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		bool dup = false;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE && !hs_pbjson_field_is_map(f) &&
		    !is_wkt(f->descriptor, "Timestamp"))
			continue;
		for (int k = 0; k < c->n && !dup; k++)
			dup = strcmp(c->path[k], f->name) == 0;
		if (dup)
			continue;
		size_t j = 0;
		for (; f->name[j] && j + 1 < sizeof(c->head[0]); j++)
			c->head[c->n][j] = (char)toupper((unsigned char)f->name[j]);
		c->head[c->n][j] = '\0';
		snprintf(c->path[c->n], sizeof(c->path[0]), "%s", f->name);
		c->n++;
	}
}

/* One cell: padded to w, or the row's end. */
static void cell(const char *s, size_t w, bool last)
{
	if (last)
		printf("%s\n", s);
	else
		printf("%-*s  ", (int)w, s);
}

static void print_rows(const cols *c, char ***cells, size_t nrows)
{
	size_t w[MAX_COLS];
	for (int k = 0; k < c->n; k++) {
		w[k] = strlen(c->head[k]);
		for (size_t r = 0; r < nrows; r++)
			if (strlen(cells[r][k]) > w[k])
				w[k] = strlen(cells[r][k]);
	}
	for (int k = 0; k < c->n; k++)
		cell(c->head[k], w[k], k + 1 == c->n);
	for (size_t r = 0; r < nrows; r++)
		for (int k = 0; k < c->n; k++)
			cell(cells[r][k], w[k], k + 1 == c->n);
}

static char **row_cells(const cols *c, const ProtobufCMessage *m)
{
	char **row = calloc((size_t)c->n, sizeof(char *));
	for (int k = 0; row && k < c->n; k++) {
		row[k] = hs_ctl_field_text(m, c->path[k]);
		if (row[k] != NULL && row[k][0] == '\0') {
			free(row[k]);
			row[k] = strdup("-");
		}
		if (row[k] == NULL)
			row[k] = strdup("?");
	}
	return row;
}

static void free_rows(char ***cells, size_t nrows, int ncols)
{
	for (size_t r = 0; r < nrows; r++) {
		for (int k = 0; cells[r] && k < ncols; k++)
			free(cells[r][k]);
		free(cells[r]);
	}
	free(cells);
}

typedef struct kv {
	char **k, **v;
	size_t n, cap;
} kv;

static void kv_add(kv *l, const char *k, char *v)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		char **nk = realloc(l->k, cap * sizeof(char *));
		if (nk != NULL)
			l->k = nk;
		char **nv = realloc(l->v, cap * sizeof(char *));
		if (nv != NULL)
			l->v = nv;
		if (nk == NULL || nv == NULL) {
			free(v);
			return;
		}
		l->cap = cap;
	}
	l->k[l->n] = strdup(k);
	l->v[l->n++] = v;
}

/* FIELD/VALUE rows for every set field; sub-messages flattened. */
static void detail(kv *l, const ProtobufCMessage *m, const char *prefix)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *p = (const char *)m + f->offset;
		char key[160];
		snprintf(key, sizeof(key), "%s%s", prefix, f->name);
		if (f->label != PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE) {
			const ProtobufCMessage *sm = *(ProtobufCMessage *const *)p;
			if (sm == NULL)
				continue;
			if (strncmp(sm->descriptor->name, "google.protobuf.", 16) != 0) {
				char sub[170];
				snprintf(sub, sizeof(sub), "%s.", key);
				detail(l, sm, sub);
				continue;
			}
		}
		buf b = { 0 };
		bput(&b, "");
		field_text(&b, m, f);
		bool zero = b.s == NULL || b.s[0] == '\0' || strcmp(b.s, "0") == 0 || strcmp(b.s, "false") == 0 ||
			    strcmp(b.s, "UNSPECIFIED") == 0;
		if (zero)
			free(b.s);
		else
			kv_add(l, key, b.s);
	}
}

static void print_detail(const ProtobufCMessage *m)
{
	kv l = { 0 };
	size_t w = 0;
	detail(&l, m, "");
	for (size_t i = 0; i < l.n; i++)
		if (strlen(l.k[i]) > w)
			w = strlen(l.k[i]);
	for (size_t i = 0; i < l.n; i++) {
		printf("%-*s  %s\n", (int)w, l.k[i], l.v[i]);
		free(l.k[i]);
		free(l.v[i]);
	}
	free(l.k);
	free(l.v);
}

/* Writes JSON text (jansson's or pbjson's output) to stdout with C1
 * controls, which JSON leaves as they are, as \u00NN escapes: valid JSON and
 * YAML, and nothing a terminal acts on (C0 controls are escaped already). */
static void put_json_text(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			printf("\\u%04x", p[1]);
			p++;
		} else {
			putchar(*p);
		}
	}
}

/* ---- YAML (block style; strings double-quoted with JSON escapes, which
 * YAML's double-quoted scalars accept) ---------------------------------- */

static void yaml_key(const char *k)
{
	bool plain = *k != '\0';
	for (const char *p = k; *p && plain; p++)
		plain = isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.';
	if (plain) {
		fputs(k, stdout);
		return;
	}
	json_t *s = json_string(k);
	char *q = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
	put_json_text(q ? q : "\"\"");
	free(q);
	json_decref(s);
}

static void yaml_scalar(const json_t *v)
{
	char *q = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	put_json_text(q ? q : "null");
	free(q);
}

static bool yaml_nested(const json_t *v)
{
	return (json_is_object(v) && json_object_size(v) > 0) || (json_is_array(v) && json_array_size(v) > 0);
}

static void yaml_value(const json_t *v, int indent, bool inline_first);

/* Writes "key: value" lines at indent; with inline_first the first line's
 * indentation was already written (after "- "). */
static void yaml_object(const json_t *o, int indent, bool inline_first)
{
	const char *k;
	json_t *v;
	bool first = true;
	json_object_foreach((json_t *)o, k, v)
	{
		if (!(first && inline_first))
			printf("%*s", indent, "");
		first = false;
		yaml_key(k);
		if (yaml_nested(v)) {
			fputs(":\n", stdout);
			yaml_value(v, json_is_array(v) ? indent : indent + 2, false);
		} else {
			fputs(": ", stdout);
			yaml_value(v, indent, false);
		}
	}
}

static void yaml_value(const json_t *v, int indent, bool inline_first)
{
	if (json_is_object(v) && json_object_size(v) > 0) {
		yaml_object(v, indent, inline_first);
	} else if (json_is_array(v) && json_array_size(v) > 0) {
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
		{
			printf("%*s- ", indent, "");
			if (json_is_array(e) && json_array_size(e) > 0) {
				fputs("\n", stdout);
				yaml_value(e, indent + 2, false);
			} else {
				yaml_value(e, indent + 2, true);
			}
		}
	} else if (json_is_object(v)) {
		fputs("{}\n", stdout);
	} else if (json_is_array(v)) {
		fputs("[]\n", stdout);
	} else {
		yaml_scalar(v);
		fputc('\n', stdout);
	}
}

int hs_ctl_print_yaml(const ProtobufCMessage *msg, bool doc_sep)
{
	json_t *j = NULL;
	hs_error err = { 0 };
	hs_pbjson_opts o = HS_PBJSON_OPTS_INIT;
	o.emit_defaults = true;
	if (hs_pbjson_encode(&j, msg, &o, &err) != HS_OK) {
		fprintf(stderr, "harnessctl: cannot print the response: %s\n", err.msg);
		return HS_CTL_EXIT_ERROR;
	}
	if (doc_sep)
		fputs("---\n", stdout);
	yaml_value(j, 0, false);
	json_decref(j);
	return HS_CTL_EXIT_OK;
}

void hs_ctl_print_stream_msg(const hs_ctl *c, const hs_ctl_cmd *cmd, const ProtobufCMessage *msg, bool first)
{
	(void)first;
	if (c->json)
		hs_ctl_print_json_line(msg);
	else if (c->yaml)
		hs_ctl_print_yaml(msg, true);
	else
		hs_ctl_print_stream_row(c, cmd, msg, first);
}

int hs_ctl_print(const hs_ctl *c, const hs_ctl_cmd *cmd, const ProtobufCMessage *msg)
{
	if (c->yaml)
		return hs_ctl_print_yaml(msg, false);
	if (c->json) {
		char *s = NULL;
		hs_error err = { 0 };
		hs_pbjson_opts o = HS_PBJSON_OPTS_INIT;
		o.emit_defaults = true;
		if (hs_pbjson_to_string(&s, msg, &o, JSON_INDENT(2), &err) != HS_OK) {
			fprintf(stderr, "%s: cannot print the response: %s\n", c->prog, err.msg);
			return HS_CTL_EXIT_ERROR;
		}
		put_json_text(s);
		putchar('\n');
		free(s);
		return HS_CTL_EXIT_OK;
	}
	if ((cmd->flags & HS_CTL_DETAIL) || cmd->columns == NULL) {
		print_detail(msg);
		return HS_CTL_EXIT_OK;
	}
	cols cs;
	cols_parse(&cs, cmd->columns);
	if (cmd->list_field == NULL) {
		if (c->wide)
			cols_widen(&cs, msg->descriptor);
		char **row = row_cells(&cs, msg);
		char **rows[1] = { row };
		print_rows(&cs, rows, 1);
		for (int k = 0; k < cs.n; k++)
			free(row[k]);
		free(row);
		return HS_CTL_EXIT_OK;
	}
	const ProtobufCFieldDescriptor *lf = hs_pbjson_field_lookup(msg->descriptor, cmd->list_field);
	size_t n = *(const size_t *)((const char *)msg + lf->quantifier_offset);
	ProtobufCMessage *const *items = *(ProtobufCMessage *const *const *)((const char *)msg + lf->offset);
	if (c->wide && lf->type == PROTOBUF_C_TYPE_MESSAGE)
		cols_widen(&cs, lf->descriptor);
	if (n == 0) {
		fprintf(stderr, "No %s found.\n", cmd->list_field);
	} else {
		char ***cells = calloc(n, sizeof(char **));
		for (size_t r = 0; cells && r < n; r++)
			cells[r] = row_cells(&cs, items[r]);
		if (cells != NULL)
			print_rows(&cs, cells, n);
		free_rows(cells, cells ? n : 0, cs.n);
	}
	const ProtobufCFieldDescriptor *np = hs_pbjson_field_lookup(msg->descriptor, "next_page_token");
	if (np != NULL) {
		const char *tok = *(char *const *)((const char *)msg + np->offset);
		if (tok != NULL && *tok)
			fprintf(stderr, "More results: add --page-token %s, or --all for every page\n", tok);
	}
	return HS_CTL_EXIT_OK;
}

int hs_ctl_print_json_line(const ProtobufCMessage *msg)
{
	char *s = NULL;
	hs_pbjson_opts o = HS_PBJSON_OPTS_INIT;
	o.emit_defaults = true;
	if (hs_pbjson_to_string(&s, msg, &o, JSON_COMPACT, NULL) != HS_OK)
		return HS_CTL_EXIT_ERROR;
	put_json_text(s);
	putchar('\n');
	free(s);
	return HS_CTL_EXIT_OK;
}

void hs_ctl_print_stream_row(const hs_ctl *c, const hs_ctl_cmd *cmd, const ProtobufCMessage *msg, bool header)
{
	static size_t w[MAX_COLS];
	cols cs;
	cols_parse(&cs, cmd->columns);
	if (c->wide)
		cols_widen(&cs, msg->descriptor);
	char **row = row_cells(&cs, msg);
	if (row == NULL)
		return;
	for (int k = 0; k < cs.n; k++) {
		size_t l = strlen(cs.head[k]);
		if (w[k] < l)
			w[k] = l;
		if (w[k] < strlen(row[k]) && strlen(row[k]) <= 40)
			w[k] = strlen(row[k]);
	}
	if (header)
		for (int k = 0; k < cs.n; k++)
			cell(cs.head[k], w[k], k + 1 == cs.n);
	for (int k = 0; k < cs.n; k++) {
		cell(row[k], w[k], k + 1 == cs.n);
		free(row[k]);
	}
	free(row);
}
