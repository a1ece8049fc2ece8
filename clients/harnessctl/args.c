/* harnessctl argument parsing: global flags, and a verb's flags mapped onto
 * its request message through the message descriptor, so every RPC gets
 * flags for every field without per-verb code:
 *
 *   --task-id t1                 string/number field (dashes = underscores;
 *                                proto or JSON names both work)
 *   --success / --success=false  bool field
 *   --state running              enum, full name or the part after the
 *                                enum's prefix, any case
 *   --entrypoint sh --entrypoint -c   repeated: one flag per element
 *   --labels k=v (or --label)    map: one KEY=VALUE per flag
 *   --external-state '{"k":1}'   message field: JSON (proto3 mapping)
 *   --recovery-policy.max-attempts 3   a field of a message field
 *   --json '{"taskId":"t1"}'     the whole request; flags override it
 *
 * The flags build a proto-JSON object that pbjson turns into the message,
 * so value checks (ranges, enum names, JSON) live in one place. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "pbjson.h"

static int usage(const hs_ctl *c, const hs_ctl_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int usage(const hs_ctl *c, const hs_ctl_cmd *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", c->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (cmd != NULL)
		fprintf(stderr, "\nRun '%s %s%s%s --help' for usage.\n", c->prog, cmd->group,
			cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
	else
		fprintf(stderr, "\nRun '%s --help' for usage.\n", c->prog);
	return HS_CTL_EXIT_USAGE;
}

/* "--name=value" / "--name value" / "-o value" / "-ovalue". */
static int flag_value(int argc, char **argv, int *i, const char *eq, const char **out)
{
	if (eq != NULL) {
		*out = eq + 1;
		return 0;
	}
	if (*i + 1 >= argc)
		return -1;
	*out = argv[++*i];
	return 0;
}

int hs_ctl_global_flag(hs_ctl *c, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *v = NULL;
	const char *eq = strchr(a, '=');
	size_t n = eq ? (size_t)(eq - a) : strlen(a);
	enum { NONE, OUT, SERVER, TOKEN, TIMEOUT, TLS_CA, TLS_CERT, TLS_KEY, TLS_NAME } which = NONE;
	static const struct {
		const char *flag;
		int which;
	} tls_flags[] = { { "--tls-ca", TLS_CA },
			  { "--tls-cert", TLS_CERT },
			  { "--tls-key", TLS_KEY },
			  { "--tls-server-name", TLS_NAME } };
	if (strcmp(a, "--tls") == 0) {
		c->tls = true;
		return 1;
	}
	if (strcmp(a, "--all") == 0) {
		c->all = true;
		return 1;
	}
	for (size_t k = 0; k < sizeof(tls_flags) / sizeof(tls_flags[0]); k++)
		if (n == strlen(tls_flags[k].flag) && strncmp(a, tls_flags[k].flag, n) == 0)
			which = tls_flags[k].which;
	if (strncmp(a, "-o", 2) == 0 && a[2] != '\0' && a[2] != '-') {
		v = a + 2 + (a[2] == '=');
		which = OUT;
	} else if ((n == 2 && strncmp(a, "-o", 2) == 0) || (n == 8 && strncmp(a, "--output", 8) == 0)) {
		which = OUT;
	} else if (which != NONE) {
		/* a --tls-* flag */
	} else if (n == 8 && strncmp(a, "--server", 8) == 0) {
		which = SERVER;
	} else if (n == 7 && strncmp(a, "--token", 7) == 0) {
		which = TOKEN;
	} else if (n == 9 && strncmp(a, "--timeout", 9) == 0) {
		which = TIMEOUT;
	}
	if (which == NONE)
		return 0;
	if (v == NULL && flag_value(argc, argv, i, eq, &v) != 0) {
		usage(c, NULL, "%.*s needs a value", (int)n, a);
		return -1;
	}
	switch (which) {
	case OUT:
		c->json = strcmp(v, "json") == 0;
		c->yaml = strcmp(v, "yaml") == 0;
		c->wide = strcmp(v, "wide") == 0;
		if (!c->json && !c->yaml && !c->wide && strcmp(v, "table") != 0) {
			static const char *const fmts[] = { "table", "json", "yaml", "wide", NULL };
			const char *s = hs_ctl_suggest(v, fmts);
			char dym[64] = "";
			if (s != NULL)
				snprintf(dym, sizeof(dym), "; did you mean '%s'?", s);
			usage(c, NULL, "-o: unknown output format '%s' (table, wide, json or yaml)%s", v, dym);
			return -1;
		}
		break;
	case SERVER:
		if (*v == '\0') {
			usage(c, NULL, "--server: empty address");
			return -1;
		}
		c->server = v;
		break;
	case TOKEN:
		c->token_flag = v;
		break;
	case TLS_CA:
		c->tls_ca = v;
		break;
	case TLS_CERT:
		c->tls_cert = v;
		break;
	case TLS_KEY:
		c->tls_key = v;
		break;
	case TLS_NAME:
		c->tls_server_name = v;
		break;
	case TIMEOUT: {
		char *end;
		errno = 0;
		double t = strtod(v, &end);
		if (*v == '\0' || *end != '\0' || errno != 0 || !(t > 0) || t > 86400) {
			usage(c, NULL, "--timeout: '%s' is not a number of seconds in (0, 86400]", v);
			return -1;
		}
		c->timeout_s = t;
		c->timeout_set = true;
		break;
	}
	default:
		break;
	}
	return 1;
}

/* Levenshtein distance, bounded inputs (names are short). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[65];
	if (la > 64 || lb > 64)
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cur = row[j];
			size_t best = prev + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

const char *hs_ctl_suggest(const char *typed, const char *const *cands)
{
	const char *best = NULL;
	size_t bd = (size_t)-1, tl = strlen(typed);
	for (size_t i = 0; cands[i] != NULL; i++) {
		size_t d = edit_distance(typed, cands[i]);
		if (tl >= 2 && strncmp(cands[i], typed, tl) == 0 && d > 1)
			d = 1; /* a prefix: "check" for "che" */
		if (d < bd) {
			bd = d;
			best = cands[i];
		}
	}
	size_t limit = tl <= 3 ? 1 : 2;
	return bd <= limit ? best : NULL;
}

static const char *const global_flags[] = { "server", "token", "output", "timeout", "tls", "tls-ca",
					    "tls-cert", "tls-key", "tls-server-name", "all", "help", "json", NULL };

void hs_ctl_flag_advice(const hs_ctl_cmd *cmd, const char *typed, char *buf, size_t n)
{
	enum { MAXC = 96 };
	char names[MAXC][64];
	const char *cands[MAXC + 1];
	size_t k = 0;
	buf[0] = '\0';
	for (size_t g = 0; global_flags[g] && k < MAXC; g++)
		cands[k++] = global_flags[g];
	for (int e = 0; cmd != NULL && e < HS_CTL_MAX_EXTRA && cmd->extra[e].name && k < MAXC; e++)
		cands[k++] = cmd->extra[e].name;
	if (cmd != NULL && cmd->svc != NULL) {
		const ProtobufCMethodDescriptor *m = hs_ctl_method(cmd->svc, cmd->method);
		for (unsigned i = 0; i < m->input->n_fields && k < MAXC; i++) {
			snprintf(names[k], sizeof(names[k]), "%s", m->input->fields[i].name);
			for (char *p = names[k]; *p; p++)
				if (*p == '_')
					*p = '-';
			cands[k] = names[k];
			k++;
		}
	}
	cands[k] = NULL;
	const char *s = hs_ctl_suggest(typed, cands);
	if (s != NULL)
		snprintf(buf, n, "; did you mean --%s?", s);
}

size_t hs_ctl_enum_prefix(const ProtobufCEnumDescriptor *ed)
{
	if (ed->n_values < 2)
		return 0;
	size_t n = strlen(ed->values[0].name);
	for (unsigned i = 1; i < ed->n_values; i++) {
		size_t k = 0;
		while (k < n && ed->values[i].name[k] == ed->values[0].name[k])
			k++;
		n = k;
	}
	while (n > 0 && ed->values[0].name[n - 1] != '_')
		n--;
	return n;
}

static json_t *enum_json(const ProtobufCEnumDescriptor *ed, const char *s)
{
	char up[128];
	size_t k = 0, pre = hs_ctl_enum_prefix(ed);
	if (protobuf_c_enum_descriptor_get_value_by_name(ed, s) != NULL)
		return json_string(s);
	for (; s[k] && k + 1 < sizeof(up); k++)
		up[k] = s[k] == '-' ? '_' : (char)toupper((unsigned char)s[k]);
	up[k] = '\0';
	for (unsigned i = 0; i < ed->n_values; i++) {
		const char *name = ed->values[i].name;
		if (strcmp(name, up) == 0 || strcmp(name + pre, up) == 0)
			return json_string(name);
	}
	char *end;
	long v = strtol(s, &end, 10);
	if (*s != '\0' && *end == '\0')
		return json_integer(v);
	return NULL;
}

static void enum_choices(const ProtobufCEnumDescriptor *ed, char *buf, size_t n)
{
	size_t pre = hs_ctl_enum_prefix(ed), o = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < ed->n_values && o < n; i++) {
		const char *name = ed->values[i].name + pre;
		if (strcmp(name, "UNSPECIFIED") == 0)
			continue;
		o += (size_t)snprintf(buf + o, n - o, "%s", o ? "|" : "");
		for (; *name && o + 1 < n; name++)
			buf[o++] = (char)tolower((unsigned char)*name);
		buf[o < n ? o : n - 1] = '\0';
	}
}

static bool is_wkt(const ProtobufCMessageDescriptor *d, const char *name)
{
	return strncmp(d->name, "google.protobuf.", 16) == 0 && strcmp(d->name + 16, name) == 0;
}

/* One element's JSON from its flag text; NULL after printing a usage error. */
static json_t *value_json(const hs_ctl *c, const hs_ctl_cmd *cmd, const char *flag,
			  const ProtobufCFieldDescriptor *f, const char *s)
{
	json_t *v = NULL;
	switch (f->type) {
	case PROTOBUF_C_TYPE_BOOL:
		if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes"))
			return json_true();
		if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no"))
			return json_false();
		usage(c, cmd, "--%s: '%s' is not true or false", flag, s);
		return NULL;
	case PROTOBUF_C_TYPE_ENUM:
		v = enum_json(f->descriptor, s);
		if (v == NULL) {
			char ch[400], msg[600];
			enum_choices(f->descriptor, ch, sizeof(ch));
			snprintf(msg, sizeof(msg), "--%s: unknown value '%s' (one of: %s)", flag, s, ch);
			usage(c, cmd, "%s", msg);
		}
		return v;
	case PROTOBUF_C_TYPE_MESSAGE:
		if (is_wkt(f->descriptor, "Timestamp"))
			break;
		{
			json_error_t je;
			v = json_loads(s, JSON_DECODE_ANY, &je);
			if (v == NULL)
				usage(c, cmd, "--%s: invalid JSON: %s", flag, je.text);
			return v;
		}
	default:
		break;
	}
	v = json_string(s);
	if (v == NULL)
		usage(c, cmd, "--%s: '%s' is not valid UTF-8", flag, s);
	return v;
}

/* Field for one dash-separated flag component; repeated fields also answer
 * to their singular ("--label" for labels). */
static const ProtobufCFieldDescriptor *lookup(const ProtobufCMessageDescriptor *d, const char *comp,
					      size_t n)
{
	char name[128];
	if (n + 2 > sizeof(name))
		return NULL;
	for (size_t k = 0; k < n; k++)
		name[k] = comp[k] == '-' ? '_' : comp[k];
	name[n] = '\0';
	const ProtobufCFieldDescriptor *f = hs_pbjson_field_lookup(d, name);
	if (f == NULL) {
		name[n] = 's';
		name[n + 1] = '\0';
		f = hs_pbjson_field_lookup(d, name);
		if (f != NULL && f->label != PROTOBUF_C_LABEL_REPEATED)
			f = NULL;
	}
	return f;
}

/* Sets the field named by path ("recovery-policy.max-attempts") in root to
 * the text s (appending for repeated fields). */
static int set_path(const hs_ctl *c, const hs_ctl_cmd *cmd, json_t *root, const ProtobufCMessageDescriptor *d,
		    const char *path, const char *s)
{
	json_t *cur = root;
	const char *p = path;
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		const ProtobufCFieldDescriptor *f = lookup(d, p, n);
		if (f == NULL)
			return usage(c, cmd, "unknown flag --%s", path);
		if (dot != NULL) {
			if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED ||
			    strncmp(((const ProtobufCMessageDescriptor *)f->descriptor)->name,
				    "google.protobuf.", 16) == 0)
				return usage(c, cmd, "--%s: %s has no sub-fields", path, f->name);
			json_t *sub = json_object_get(cur, f->name);
			if (!json_is_object(sub)) {
				sub = json_object();
				json_object_set_new(cur, f->name, sub);
			}
			cur = sub;
			d = f->descriptor;
			p = dot + 1;
			continue;
		}
		if (hs_pbjson_field_is_map(f)) {
			json_t *obj = json_object_get(cur, f->name);
			if (!json_is_object(obj)) {
				obj = json_object();
				json_object_set_new(cur, f->name, obj);
			}
			if (s[0] == '{') {
				json_error_t je;
				json_t *more = json_loads(s, 0, &je);
				if (!json_is_object(more)) {
					json_decref(more);
					return usage(c, cmd, "--%s: invalid JSON object: %s", path, je.text);
				}
				json_object_update(obj, more);
				json_decref(more);
				return 0;
			}
			const char *eq = strchr(s, '=');
			if (eq == NULL || eq == s)
				return usage(c, cmd, "--%s: expected KEY=VALUE, got '%s'", path, s);
			const ProtobufCMessageDescriptor *ed = f->descriptor;
			json_t *v = value_json(c, cmd, path, &ed->fields[1], eq + 1);
			if (v == NULL)
				return HS_CTL_EXIT_USAGE;
			char *key = strndup(s, (size_t)(eq - s));
			json_object_set_new(obj, key, v);
			free(key);
			return 0;
		}
		json_t *v = value_json(c, cmd, path, f, s);
		if (v == NULL)
			return HS_CTL_EXIT_USAGE;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			json_t *arr = json_object_get(cur, f->name);
			if (!json_is_array(arr)) {
				arr = json_array();
				json_object_set_new(cur, f->name, arr);
			}
			json_array_append_new(arr, v);
		} else {
			json_object_set_new(cur, f->name, v);
		}
		return 0;
	}
}

static const ProtobufCFieldDescriptor *path_field(const ProtobufCMessageDescriptor *d, const char *path)
{
	const ProtobufCFieldDescriptor *f = NULL;
	for (const char *p = path;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		f = lookup(d, p, n);
		if (f == NULL || dot == NULL)
			return f;
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			return NULL;
		d = f->descriptor;
		p = dot + 1;
	}
}

static void upper_name(char *buf, size_t n, const char *field)
{
	size_t k = 0;
	for (; field[k] && k + 1 < n; k++)
		buf[k] = (char)toupper((unsigned char)field[k]);
	buf[k] = '\0';
}

int hs_ctl_args_parse(hs_ctl *c, const hs_ctl_cmd *cmd, const ProtobufCMessageDescriptor *d, int argc,
		   char **argv, hs_ctl_args *out)
{
	int npos = 0, rc = 0;
	bool dashdash = false;
	json_t *base = NULL;
	memset(out, 0, sizeof(*out));
	out->req = json_object();
	for (int i = 0; i < argc && rc == 0; i++) {
		const char *a = argv[i];
		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && a[0] == '-' && a[1] != '\0' && !isdigit((unsigned char)a[1])) {
			if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
				out->help = true;
				continue;
			}
			int g = hs_ctl_global_flag(c, argc, argv, &i);
			if (g < 0) {
				rc = HS_CTL_EXIT_USAGE;
				break;
			}
			if (g > 0)
				continue;
			if (a[1] != '-') {
				rc = usage(c, cmd, "unknown flag %s%s", a,
					   strlen(a) > 2 ? "; long flags start with '--'" : "");
				break;
			}
			const char *name = a + 2, *eq = strchr(name, '='), *v = NULL;
			size_t n = eq ? (size_t)(eq - name) : strlen(name);
			char fname[160];
			if (n == 0 || n >= sizeof(fname)) {
				rc = usage(c, cmd, "bad flag %s", a);
				break;
			}
			memcpy(fname, name, n);
			fname[n] = '\0';
			int ex = -1;
			for (int k = 0; k < HS_CTL_MAX_EXTRA && cmd->extra[k].name; k++)
				if (strcmp(cmd->extra[k].name, fname) == 0)
					ex = k;
			if (ex >= 0) {
				if (!cmd->extra[ex].takes_value)
					v = eq ? eq + 1 : "";
				else if (flag_value(argc, argv, &i, eq, &v) != 0)
					rc = usage(c, cmd, "--%s needs a value", fname);
				out->extra_val[ex] = v;
				continue;
			}
			if (d == NULL) {
				char adv[96];
				hs_ctl_flag_advice(cmd, fname, adv, sizeof(adv));
				rc = usage(c, cmd, "unknown flag --%s%s", fname, adv);
				break;
			}
			const ProtobufCFieldDescriptor *f = strcmp(fname, "json") ? path_field(d, fname) : NULL;
			if (f == NULL && strcmp(fname, "json") != 0) {
				char adv[96];
				hs_ctl_flag_advice(cmd, fname, adv, sizeof(adv));
				rc = usage(c, cmd, "unknown flag --%s%s", fname, adv);
				break;
			}
			if (f != NULL && f->type == PROTOBUF_C_TYPE_BOOL && f->label != PROTOBUF_C_LABEL_REPEATED &&
			    eq == NULL) {
				/* --flag alone is true; an explicit next word true/false is taken. */
				const char *nx = i + 1 < argc ? argv[i + 1] : "";
				if (!strcmp(nx, "true") || !strcmp(nx, "false"))
					v = argv[++i];
				else
					v = "true";
			} else if (flag_value(argc, argv, &i, eq, &v) != 0) {
				rc = usage(c, cmd, "--%s needs a value", fname);
				break;
			}
			if (strcmp(fname, "json") == 0) {
				json_error_t je;
				json_decref(base);
				base = json_loads(v, 0, &je);
				if (!json_is_object(base))
					rc = usage(c, cmd, "--json: expected a JSON object: %s", je.text);
				continue;
			}
			rc = set_path(c, cmd, out->req, d, fname, v);
			continue;
		}
		/* positional */
		if (npos >= HS_CTL_MAX_POS || cmd->pos[npos] == NULL) {
			rc = usage(c, cmd, "unexpected argument '%s'", a);
			break;
		}
		if (d == NULL) {
			rc = usage(c, cmd, "unexpected argument '%s'", a);
			break;
		}
		const char *field = cmd->pos[npos][0] == '?' ? cmd->pos[npos] + 1 : cmd->pos[npos];
		rc = set_path(c, cmd, out->req, d, field, a);
		npos++;
	}
	if (rc == 0 && base != NULL) {
		/* Canonical proto names first, so --json '{"taskId":..}' and
		 * --task-id (or a positional id) meet under one key. */
		ProtobufCMessage *m = NULL;
		json_t *canon = NULL;
		hs_error err = { 0 };
		hs_pbjson_opts o = HS_PBJSON_OPTS_INIT;
		o.original_names = true;
		if (hs_pbjson_decode(&m, d, base, NULL, &err) != HS_OK ||
		    hs_pbjson_encode(&canon, m, &o, &err) != HS_OK)
			rc = usage(c, cmd, "--json: %s", err.msg);
		if (m != NULL)
			protobuf_c_message_free_unpacked(m, NULL);
		json_decref(base);
		base = canon;
	}
	if (rc == 0 && base != NULL) {
		json_object_update_recursive(base, out->req);
		json_decref(out->req);
		out->req = base;
		base = NULL;
	}
	for (int k = npos; rc == 0 && !out->help && k < HS_CTL_MAX_POS && cmd->pos[k]; k++) {
		const char *field = cmd->pos[k];
		char up[64], jn[64];
		if (field[0] == '?')
			continue;
		hs_pbjson_json_name(jn, sizeof(jn), field);
		if (json_object_get(out->req, field) || json_object_get(out->req, jn))
			continue;
		upper_name(up, sizeof(up), field);
		rc = usage(c, cmd, "missing %s", up);
	}
	json_decref(base);
	if (rc != 0) {
		json_decref(out->req);
		out->req = NULL;
	}
	return rc;
}

void hs_ctl_args_dispose(hs_ctl_args *a)
{
	json_decref(a->req);
	a->req = NULL;
}

int hs_ctl_args_message(hs_ctl *c, const hs_ctl_cmd *cmd, const ProtobufCMessageDescriptor *d, const hs_ctl_args *a,
		     ProtobufCMessage **out)
{
	hs_error err = { 0 };
	if (hs_pbjson_decode(out, d, a->req, NULL, &err) != HS_OK)
		return usage(c, cmd, "%s", err.msg);
	return 0;
}

/* ---- help -------------------------------------------------------------- */

static const char *type_word(const ProtobufCFieldDescriptor *f, char *buf, size_t n)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		return "STRING";
	case PROTOBUF_C_TYPE_BYTES:
		return "BASE64";
	case PROTOBUF_C_TYPE_BOOL:
		return "[=BOOL]";
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		return "NUMBER";
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return "UINT";
	case PROTOBUF_C_TYPE_ENUM:
		enum_choices(f->descriptor, buf, n);
		return buf;
	case PROTOBUF_C_TYPE_MESSAGE:
		if (hs_pbjson_field_is_map(f))
			return "KEY=VALUE";
		if (is_wkt(f->descriptor, "Timestamp"))
			return "RFC3339";
		return "JSON";
	default:
		return "INT";
	}
}

static void field_help(FILE *o, const ProtobufCMessageDescriptor *d, const char *prefix, int depth)
{
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		char flag[128], tb[400];
		snprintf(flag, sizeof(flag), "%s%s", prefix, f->name);
		for (char *p = flag; *p; p++)
			if (*p == '_')
				*p = '-';
		const char *t = type_word(f, tb, sizeof(tb));
		const char *rep = f->label == PROTOBUF_C_LABEL_REPEATED ? "  (repeat the flag)" : "";
		if (f->type == PROTOBUF_C_TYPE_BOOL)
			fprintf(o, "  --%s%s%s\n", flag, t, rep);
		else
			fprintf(o, "  --%s %s%s\n", flag, t, rep);
		if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->label != PROTOBUF_C_LABEL_REPEATED && depth < 1 &&
		    strncmp(((const ProtobufCMessageDescriptor *)f->descriptor)->name, "google.protobuf.", 16) != 0) {
			char sub[140];
			snprintf(sub, sizeof(sub), "%s%s.", prefix, f->name);
			field_help(o, f->descriptor, sub, depth + 1);
		}
	}
}

void hs_ctl_verb_help(const hs_ctl *c, const hs_ctl_cmd *cmd, FILE *o)
{
	fprintf(o, "Usage: %s %s%s%s", c->prog, cmd->group, cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
	for (int k = 0; k < HS_CTL_MAX_POS && cmd->pos[k]; k++) {
		char up[64];
		bool opt = cmd->pos[k][0] == '?';
		upper_name(up, sizeof(up), cmd->pos[k] + opt);
		fprintf(o, opt ? " [%s]" : " %s", up);
	}
	fprintf(o, " [flags]\n\n%s\n", cmd->summary);
	if (cmd->svc != NULL) {
		const ProtobufCMethodDescriptor *m = hs_ctl_method(cmd->svc, cmd->method);
		fprintf(o, "\nCalls %s/%s.\n\nFlags (fields of %s; proto or JSON names, '-' for '_'):\n",
			cmd->svc->name, cmd->method, m->input->name);
		field_help(o, m->input, "", 0);
		fprintf(o, "  --json JSON          the whole request as proto3 JSON; flags override it\n");
	}
	for (int k = 0; k < HS_CTL_MAX_EXTRA && cmd->extra[k].name; k++)
		fprintf(o, "  --%s%s  %s\n", cmd->extra[k].name, cmd->extra[k].takes_value ? " VALUE" : "",
			cmd->extra[k].help);
	fprintf(o, "\nGlobal flags: --server ADDR, --token T, -o table|wide|json|yaml, --timeout SECONDS%s.\n",
		cmd->list_field != NULL ? ", --all (every page)" : "");
	if (cmd->examples != NULL)
		fprintf(o, "\nExamples:\n%s", cmd->examples);
}

int hs_ctl_request(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv, ProtobufCMessage **req)
{
	const ProtobufCMethodDescriptor *m = hs_ctl_method(cmd->svc, cmd->method);
	hs_ctl_args a;
	*req = NULL;
	int rc = hs_ctl_args_parse(c, cmd, m->input, argc, argv, &a);
	if (rc != 0)
		return rc;
	if (a.help)
		hs_ctl_verb_help(c, cmd, stdout);
	else
		rc = hs_ctl_args_message(c, cmd, m->input, &a, req);
	hs_ctl_args_dispose(&a);
	return rc;
}
