/* JSON-lines logger: formats into a bounded stack buffer, then one write(2). */
#include "log.h"
#include "trace.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

hs_log_level hs_log_min_level = HS_LOG_INFO;
static int log_fd = 2;

void hs_log_set_fd(int fd) { log_fd = fd; }

bool hs_log_level_parse(const char *name, hs_log_level *out)
{
	static const char *const names[] = { "debug", "info", "warn", "error", "off" };
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (hs_log_level)i;
			return true;
		}
	}
	return false;
}

typedef struct buf {
	char *p;
	size_t len, cap; /* cap excludes the reserve for closing '"' and "}\n" */
	bool full;
} buf;

/* All or nothing: a piece that does not fit marks the buffer full, so a
 * line is never cut inside an escape sequence. */
static void put(buf *b, const char *s, size_t n)
{
	if (b->full || n > b->cap - b->len) {
		b->full = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* A JSON string; cut short (but always closed, from the reserve) if full. */
static void put_json_str(buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	put(b, "\"", 1);
	for (const unsigned char *c = (const unsigned char *)(s ? s : ""); *c && !b->full; c++) {
		char esc[6];
		if (*c == '"' || *c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*c;
			put(b, esc, 2);
		} else if (*c < 0x20 || *c == 0x7f) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*c >> 4];
			esc[5] = hex[*c & 15];
			put(b, esc, 6);
		} else {
			put(b, (const char *)c, 1);
		}
	}
	b->p[b->len++] = '"'; /* from the reserve when full */
}

void hs_log_emit(hs_log_level lvl, const char *module, const char *msg,
		 const hs_log_field *fields, unsigned nfields)
{
	static const char *const lvl_names[] = { "debug", "info", "warn", "error", "off" };
	char storage[4096];
	/* reserve: '"' closing a cut string, ",\"truncated\":true", "}\n" */
	buf b = { storage, 0, sizeof(storage) - 24, false };
	char tmp[64];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(tmp + n, sizeof(tmp) - n, ".%03ldZ", ts.tv_nsec / 1000000);

	puts_(&b, "{\"ts\":\"");
	puts_(&b, tmp);
	puts_(&b, "\",\"level\":\"");
	puts_(&b, lvl_names[lvl <= HS_LOG_OFF ? lvl : HS_LOG_ERROR]);
	puts_(&b, "\",\"module\":");
	put_json_str(&b, module);
	puts_(&b, ",\"msg\":");
	put_json_str(&b, msg);
	/* the call this thread works for (trace.h): already validated tokens */
	const hs_trace_ctx *tc = hs_trace_current();
	bool ctx_rid = tc->request_id[0] != '\0';
	if (ctx_rid) {
		puts_(&b, ",\"request_id\":");
		put_json_str(&b, tc->request_id);
	}
	if (tc->traceparent[0] != '\0') {
		char tid[HS_TRACE_ID_LEN + 1];
		memcpy(tid, tc->traceparent + 3, HS_TRACE_ID_LEN);
		tid[HS_TRACE_ID_LEN] = '\0';
		puts_(&b, ",\"trace_id\":");
		put_json_str(&b, tid);
	}
	bool truncated = b.full;
	for (unsigned i = 0; i < nfields && !truncated; i++) {
		const hs_log_field *f = &fields[i];
		if (f->key == NULL || (ctx_rid && strcmp(f->key, "request_id") == 0))
			continue; /* one request_id per line: the context's */
		size_t mark = b.len;
		puts_(&b, ",");
		put_json_str(&b, f->key);
		puts_(&b, ":");
		switch (f->type) {
		case HS_LOG_T_STR:
			put_json_str(&b, f->s);
			break;
		case HS_LOG_T_INT:
			snprintf(tmp, sizeof(tmp), "%lld", f->i);
			puts_(&b, tmp);
			break;
		case HS_LOG_T_DBL:
			snprintf(tmp, sizeof(tmp), "%.3f", f->d);
			puts_(&b, tmp);
			break;
		case HS_LOG_T_BOOL:
			puts_(&b, f->i ? "true" : "false");
			break;
		default:
			puts_(&b, "null");
		}
		if (b.full) { /* drop the field that did not fit, whole */
			b.len = mark;
			truncated = true;
		}
	}
	b.full = false;
	b.cap = sizeof(storage); /* release the reserve */
	if (truncated)
		puts_(&b, ",\"truncated\":true");
	put(&b, "}\n", 2);
	ssize_t w = write(log_fd, b.p, b.len);
	(void)w; /* nowhere left to report a failing log write */
}
