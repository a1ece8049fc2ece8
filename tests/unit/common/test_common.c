/* Unit tests of common/: hs_error_set and the code mappings, and the JSON-lines
 * logger (output captured through hs_log_set_fd into a pipe, every line
 * parsed back with jansson). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "clock.h"
#include "ids.h"
#include "labels.h"
#include "log.h"
#include "metrics.h"
#include "principal.h"
#include "procstat.h"
#include "utf8.h"
#include "trace.h"

/* --- error -------------------------------------------------------------- */

static void test_error__set_fills_code_and_message(void **state)
{
	(void)state;
	hs_error err = { 0 };
	assert_int_equal(hs_error_set(&err, HS_NOT_FOUND, "task %s not found", "t-1"), HS_NOT_FOUND);
	assert_int_equal(err.code, HS_NOT_FOUND);
	assert_string_equal(err.msg, "task t-1 not found");
}

static void test_error__null_err_returns_code(void **state)
{
	(void)state;
	assert_int_equal(hs_error_set(NULL, HS_INVALID, "x"), HS_INVALID);
}

static void test_error__ok_leaves_err_untouched(void **state)
{
	(void)state;
	hs_error err = { 0 };
	assert_int_equal(hs_error_set(&err, HS_OK, "nothing"), HS_OK);
	assert_int_equal(err.code, HS_OK);
	assert_string_equal(err.msg, "");
}

static void test_error__lower_layer_message_kept(void **state)
{
	(void)state;
	hs_error err = { 0 };
	hs_error_set(&err, HS_UNAVAILABLE, "sqlite: database is locked");
	/* same code: the lower layer's message stays */
	hs_error_set(&err, HS_UNAVAILABLE, "store unavailable");
	assert_string_equal(err.msg, "sqlite: database is locked");
	/* a different code is a new error */
	hs_error_set(&err, HS_INTERNAL, "bug");
	assert_int_equal(err.code, HS_INTERNAL);
	assert_string_equal(err.msg, "bug");
}

static void test_error__long_message_truncated(void **state)
{
	(void)state;
	hs_error err = { 0 };
	char big[1000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	hs_error_set(&err, HS_INVALID, "%s", big);
	assert_int_equal(strlen(err.msg), HS_ERROR_MSG_MAX - 1);
}

static void test_error__clear(void **state)
{
	(void)state;
	hs_error err = { 0 };
	hs_error_set(&err, HS_DENIED, "no");
	hs_error_clear(&err);
	assert_int_equal(err.code, HS_OK);
	assert_string_equal(err.msg, "");
	hs_error_clear(NULL);
}

static const struct {
	hs_code code;
	const char *name;
	int grpc, http;
} code_table[] = {
	{ HS_OK, "OK", 0, 200 },
	{ HS_INVALID, "INVALID", 3, 400 },
	{ HS_NOT_FOUND, "NOT_FOUND", 5, 404 },
	{ HS_EXISTS, "EXISTS", 6, 409 },
	{ HS_CONFLICT, "CONFLICT", 9, 400 },
	{ HS_DENIED, "DENIED", 7, 403 },
	{ HS_UNAUTH, "UNAUTH", 16, 401 },
	{ HS_UNAVAILABLE, "UNAVAILABLE", 14, 503 },
	{ HS_TIMEOUT, "TIMEOUT", 4, 504 },
	{ HS_LIMIT, "LIMIT", 8, 429 },
	{ HS_INTERNAL, "INTERNAL", 13, 500 },
	{ HS_ABORTED, "ABORTED", 10, 409 },
	{ HS_CANCELLED, "CANCELLED", 1, 499 },
	{ HS_UNIMPLEMENTED, "UNIMPLEMENTED", 12, 501 },
};

static void test_error__code_mappings(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(code_table) / sizeof(code_table[0]); i++) {
		assert_string_equal(hs_code_name(code_table[i].code), code_table[i].name);
		assert_int_equal(hs_code_to_grpc(code_table[i].code), code_table[i].grpc);
		assert_int_equal(hs_code_to_http(code_table[i].code), code_table[i].http);
	}
}

static void test_error__unknown_code_is_internal(void **state)
{
	(void)state;
	assert_string_equal(hs_code_name((hs_code)-99), "INTERNAL");
	assert_int_equal(hs_code_to_grpc((hs_code)-99), 13);
	assert_int_equal(hs_code_to_http((hs_code)-99), 500);
}

/* --- log ---------------------------------------------------------------- */

static int pipe_fds[2];

static int log_setup(void **state)
{
	(void)state;
	if (pipe(pipe_fds) != 0)
		return -1;
	/* large lines must never block the writer */
	fcntl(pipe_fds[1], F_SETPIPE_SZ, 1 << 20);
	fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
	hs_log_set_fd(pipe_fds[1]);
	hs_log_min_level = HS_LOG_INFO;
	return 0;
}

static int log_teardown(void **state)
{
	(void)state;
	hs_log_set_fd(2);
	hs_log_min_level = HS_LOG_INFO;
	close(pipe_fds[0]);
	close(pipe_fds[1]);
	return 0;
}

/* Everything written since the last call (NUL-terminated, static). */
static const char *drain(size_t *len)
{
	static char out[1 << 16];
	size_t n = 0;
	for (;;) {
		ssize_t r = read(pipe_fds[0], out + n, sizeof(out) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	out[n] = '\0';
	if (len != NULL)
		*len = n;
	return out;
}

/* Exactly one line, valid JSON: returns the parsed object (caller decrefs). */
static json_t *one_line(void)
{
	size_t n;
	const char *s = drain(&n);
	assert_true(n > 0);
	assert_int_equal(s[n - 1], '\n');
	assert_ptr_equal(strchr(s, '\n'), s + n - 1);
	json_error_t jerr;
	json_t *j = json_loadb(s, n, 0, &jerr);
	if (j == NULL)
		fail_msg("log line is not valid JSON (%s): %.200s", jerr.text, s);
	assert_true(json_is_object(j));
	return j;
}

static void test_log__json_line_with_typed_fields(void **state)
{
	(void)state;
	hs_log(HS_LOG_WARN, "rpc", "call finished", HS_LS("method", "/a.B/C"), HS_LI("n", -42),
	       HS_LD("ms", 1.5), HS_LB("forced", true), HS_LB("ok", false));
	json_t *j = one_line();
	assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
	assert_string_equal(json_string_value(json_object_get(j, "module")), "rpc");
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "call finished");
	assert_string_equal(json_string_value(json_object_get(j, "method")), "/a.B/C");
	assert_int_equal(json_integer_value(json_object_get(j, "n")), -42);
	assert_true(json_real_value(json_object_get(j, "ms")) == 1.5);
	assert_true(json_is_true(json_object_get(j, "forced")));
	assert_true(json_is_false(json_object_get(j, "ok")));
	const char *ts = json_string_value(json_object_get(j, "ts"));
	assert_non_null(ts);
	/* 2024-01-02T03:04:05.678Z */
	assert_int_equal(strlen(ts), 24);
	assert_int_equal(ts[10], 'T');
	assert_int_equal(ts[23], 'Z');
	json_decref(j);
}

static void test_log__escapes_quotes_backslashes_controls(void **state)
{
	(void)state;
	const char *nasty = "a\"b\\c\nd\re\tf\001g\177h";
	hs_log(HS_LOG_ERROR, "mod\"ule", nasty, HS_LS("k\ney", nasty));
	size_t n;
	const char *raw = drain(&n);
	/* the raw line has no control characters besides its final newline */
	for (size_t i = 0; i + 1 < n; i++)
		assert_true((unsigned char)raw[i] >= 0x20 && raw[i] != 0x7f);
	assert_non_null(strstr(raw, "\\u0001"));
	assert_non_null(strstr(raw, "\\u007f"));
	json_error_t jerr;
	json_t *j = json_loadb(raw, n, 0, &jerr);
	if (j == NULL)
		fail_msg("not JSON (%s): %s", jerr.text, raw);
	assert_string_equal(json_string_value(json_object_get(j, "msg")), nasty);
	assert_string_equal(json_string_value(json_object_get(j, "module")), "mod\"ule");
	assert_string_equal(json_string_value(json_object_get(j, "k\ney")), nasty);
	json_decref(j);
}

static void test_log__null_key_skipped_null_string_empty(void **state)
{
	(void)state;
	hs_log(HS_LOG_INFO, "m", "x", HS_LS(NULL, "hidden"), HS_LS("s", NULL));
	json_t *j = one_line();
	assert_int_equal(json_object_size(j), 5); /* ts level module msg s */
	assert_string_equal(json_string_value(json_object_get(j, "s")), "");
	json_decref(j);
}

static void test_log__level_filter(void **state)
{
	(void)state;
	hs_log_min_level = HS_LOG_WARN;
	hs_log(HS_LOG_INFO, "m", "dropped");
	hs_log(HS_LOG_DEBUG, "m", "dropped");
	size_t n;
	drain(&n);
	assert_int_equal(n, 0);
	hs_log(HS_LOG_ERROR, "m", "kept");
	json_t *j = one_line();
	assert_string_equal(json_string_value(json_object_get(j, "level")), "error");
	json_decref(j);
	hs_log_min_level = HS_LOG_OFF;
	hs_log(HS_LOG_ERROR, "m", "dropped");
	drain(&n);
	assert_int_equal(n, 0);
	hs_log_min_level = HS_LOG_INFO;
}

static void test_log__level_parse(void **state)
{
	(void)state;
	static const char *const names[] = { "debug", "info", "warn", "error", "off" };
	for (int i = 0; i < 5; i++) {
		hs_log_level l = HS_LOG_ERROR;
		assert_true(hs_log_level_parse(names[i], &l));
		assert_int_equal(l, i);
	}
	hs_log_level l = HS_LOG_WARN;
	assert_false(hs_log_level_parse("verbose", &l));
	assert_false(hs_log_level_parse("INFO", &l));
	assert_int_equal(l, HS_LOG_WARN);
}

/* A line longer than the 4 KiB buffer is cut, but must still be one line of
 * valid JSON (log shippers drop or choke on anything else). */
static void test_log__oversized_line_is_still_json(void **state)
{
	(void)state;
	char *big = malloc(6000);
	assert_non_null(big);
	memset(big, 'a', 5999);
	big[5999] = '\0';
	hs_log(HS_LOG_INFO, "m", big, HS_LS("method", "/x.Y/Z"));
	free(big);
	json_t *j = one_line();
	json_decref(j);
}

static void test_log__oversized_escapes_are_still_json(void **state)
{
	(void)state;
	char *big = malloc(3000);
	assert_non_null(big);
	memset(big, '\n', 2999); /* every byte becomes a 6-byte escape */
	big[2999] = '\0';
	hs_log(HS_LOG_INFO, "m", "field", HS_LS("body", big));
	free(big);
	json_t *j = one_line();
	json_decref(j);
}

/* ---- the shared rules: ids, labels, principal, clock ------------------------ */

/* --- trace context --------------------------------------------------------- */

static void test_trace__rules(void **state)
{
	(void)state;
	assert_true(hs_trace_request_id_ok("abc-DEF_1.2:3", 13));
	assert_false(hs_trace_request_id_ok("", 0));
	assert_false(hs_trace_request_id_ok("a b", 3));
	assert_false(hs_trace_request_id_ok("a\"}", 3));
	assert_false(hs_trace_request_id_ok("a\n", 2));
	char big[HS_REQUEST_ID_MAX + 2];
	memset(big, 'a', sizeof(big));
	assert_true(hs_trace_request_id_ok(big, HS_REQUEST_ID_MAX));
	assert_false(hs_trace_request_id_ok(big, HS_REQUEST_ID_MAX + 1));
	const char *good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	assert_true(hs_trace_parent_ok(good, strlen(good)));
	const char *bad[] = {
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   /* short */
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* upper case */
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero trace id */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero parent */
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* separator */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"", /* long */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(hs_trace_parent_ok(bad[i], strlen(bad[i])));
	char a[HS_TRACEPARENT_LEN + 1], b[HS_TRACEPARENT_LEN + 1], r1[33], r2[33];
	hs_trace_parent_new(a);
	hs_trace_parent_new(b);
	assert_true(hs_trace_parent_ok(a, strlen(a)));
	assert_string_not_equal(a, b);
	hs_trace_request_id_new(r1);
	hs_trace_request_id_new(r2);
	assert_int_equal(strlen(r1), 32);
	assert_true(hs_trace_request_id_ok(r1, 32));
	assert_string_not_equal(r1, r2);
}

/* Every line of a call carries its request id and trace id; a hostile
 * request id never reaches the log, and the context ends with the call. */
static void test_log__carries_trace_context(void **state)
{
	(void)state;
	const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	hs_trace_begin("req-42", 6, tp, strlen(tp));
	hs_log(HS_LOG_INFO, "rpc", "one", HS_LS("request_id", "other"), HS_LI("n", 1));
	json_t *j = one_line();
	assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req-42");
	assert_string_equal(json_string_value(json_object_get(j, "trace_id")),
			    "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_int_equal(json_integer_value(json_object_get(j, "n")), 1);
	json_decref(j);
	hs_trace_end();

	const char *evil = "x\",\"admin\":true,\"y\":\"";
	hs_trace_begin(evil, strlen(evil), "garbage", 7);
	hs_log(HS_LOG_INFO, "rpc", "two");
	j = one_line();
	const char *rid = json_string_value(json_object_get(j, "request_id"));
	assert_non_null(rid);
	assert_true(hs_trace_request_id_ok(rid, strlen(rid)));
	assert_null(strstr(rid, "admin"));
	assert_null(json_object_get(j, "admin"));
	const char *tid = json_string_value(json_object_get(j, "trace_id"));
	assert_non_null(tid);
	assert_int_equal(strlen(tid), 32);
	json_decref(j);
	hs_trace_end();

	hs_log(HS_LOG_INFO, "rpc", "three");
	j = one_line();
	assert_null(json_object_get(j, "request_id"));
	assert_null(json_object_get(j, "trace_id"));
	json_decref(j);
}

static void test_ids__task_rule(void **state)
{
	(void)state;
	hs_error err = { 0 };
	assert_int_equal(hs_id_check_task("task_id", "task-1_a.b", &err), HS_OK);
	const char *bad[] = { "", ".hidden", "a..b", "a/b", "a b", "\xc3\xa4", "x.lock", NULL };
	for (int i = 0; bad[i]; i++) {
		hs_error_clear(&err);
		assert_int_equal(hs_id_check_task("task_id", bad[i], &err), HS_INVALID);
		assert_non_null(strstr(err.msg, "task_id: "));
		assert_false(hs_id_is_task(bad[i]));
	}
	assert_int_equal(hs_id_check_task("task_id", NULL, &err), HS_INVALID);
	char longid[80];
	memset(longid, 'a', 65);
	longid[65] = '\0';
	assert_int_equal(hs_id_check_task("task_id", longid, &err), HS_INVALID);
	longid[64] = '\0';
	assert_int_equal(hs_id_check_task("task_id", longid, NULL), HS_OK);
}

static void test_ids__name_rule(void **state)
{
	(void)state;
	hs_error err = { 0 };
	assert_int_equal(hs_id_check_name("sandbox_id", "sb-0123abcd", &err), HS_OK);
	const char *bad[] = { "", "-x", "a_b", "a.b", "a/b", NULL };
	for (int i = 0; bad[i]; i++) {
		hs_error_clear(&err);
		assert_int_equal(hs_id_check_name("sandbox_id", bad[i], &err), HS_INVALID);
		assert_non_null(strstr(err.msg, "sandbox_id: "));
	}
}

static void test_labels__rule_and_match(void **state)
{
	(void)state;
	hs_error err = { 0 };
	hs_label ok[] = { { "team", "core" }, { "app.kubernetes.io/name", "x" } };
	assert_int_equal(hs_labels_check("labels", ok, 2, &err), HS_OK);
	hs_label badkey[] = { { "a b", "x" } };
	assert_int_equal(hs_labels_check("labels", badkey, 1, &err), HS_INVALID);
	hs_label ctl[] = { { "k", "line\nbreak" } };
	assert_int_equal(hs_labels_check("labels", ctl, 1, &err), HS_INVALID);
	hs_label dup[] = { { "k", "1" }, { "k", "2" } };
	assert_int_equal(hs_labels_check("labels", dup, 2, &err), HS_INVALID);
	hs_label sel[] = { { "team", "core" } }, miss[] = { { "team", "edge" } };
	assert_true(hs_labels_match(ok, 2, sel, 1));
	assert_false(hs_labels_match(ok, 2, miss, 1));
	assert_true(hs_labels_match(ok, 2, NULL, 0));
}

static void test_principal__ownership_rule(void **state)
{
	(void)state;
	hs_principal alice = { "usr_a", false }, admin = { "usr_x", true }, nobody = { "", false };
	assert_true(hs_principal_may(&alice, "usr_a"));
	assert_false(hs_principal_may(&alice, "usr_b"));
	assert_false(hs_principal_may(&alice, NULL));
	assert_true(hs_principal_may(&admin, "usr_b"));
	assert_true(hs_principal_may(NULL, "usr_b")); /* harnessd itself */
	assert_false(hs_principal_may(&nobody, ""));
}

static void test_clock__deadline_normalised(void **state)
{
	(void)state;
	struct timespec t = hs_clock_deadline(CLOCK_MONOTONIC, 1999);
	assert_true(t.tv_nsec >= 0 && t.tv_nsec < 1000000000);
	assert_true(hs_clock_mono_ns() / 1000000 - hs_clock_mono_ms() <= 1);
	assert_true(hs_clock_wall_ms() > 1700000000000LL);
}

/* ---- metrics: instruments, exposition, process --------------------------------- */

static const double test_bounds[3] = { 0.1, 1, 10 };

static void collect_test(hs_metrics_out *o, void *payload)
{
	hs_histogram *h = payload;
	static hs_counter c;
	hs_counter_add(&c, 2);
	hs_metrics_family(o, "t_total", "counter", "A test counter\nwith a newline.");
	const char *const l[] = { "method", "Say\"Hi\"\\\n", NULL };
	hs_metrics_sample(o, "t_total", l, (double)hs_counter_get(&c));
	hs_metrics_family(o, "t_seconds", "histogram", "A test histogram.");
	const char *const hl[] = { "k", "v", NULL };
	hs_metrics_histogram(o, "t_seconds", hl, h);
}

static void test_metrics__exposition(void **state)
{
	(void)state;
	hs_metrics *m = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_metrics_new(&m, &err), HS_OK);
	hs_histogram h;
	hs_histogram_init(&h, test_bounds, 3, 1e6);
	hs_histogram_observe(&h, 0.05);
	hs_histogram_observe(&h, 0.5);
	hs_histogram_observe(&h, 0.5);
	hs_histogram_observe(&h, 100);
	assert_int_equal(hs_metrics_add(m, collect_test, &h, &err), HS_OK);
	assert_int_equal(hs_metrics_add(m, collect_test, &h, &err), HS_EXISTS);
	size_t len = 0;
	char *text = hs_metrics_render(m, &len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "# HELP t_total A test counter\\nwith a newline.\n# TYPE t_total counter\n"));
	assert_non_null(strstr(text, "t_total{method=\"Say\\\"Hi\\\"\\\\\\n\"} 2\n"));
	assert_non_null(strstr(text, "t_seconds_bucket{k=\"v\",le=\"0.1\"} 1\n"));
	assert_non_null(strstr(text, "t_seconds_bucket{k=\"v\",le=\"1\"} 3\n"));
	assert_non_null(strstr(text, "t_seconds_bucket{k=\"v\",le=\"10\"} 3\n"));
	assert_non_null(strstr(text, "t_seconds_bucket{k=\"v\",le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(text, "t_seconds_sum{k=\"v\"} 101.05\n"));
	assert_non_null(strstr(text, "t_seconds_count{k=\"v\"} 4\n"));
	free(text);
	hs_metrics_remove(m, collect_test, &h);
	assert_int_equal(hs_metrics_add(m, hs_metrics_collect_process, NULL, &err), HS_OK);
	text = hs_metrics_render(m, &len);
	assert_non_null(text);
	assert_null(strstr(text, "t_total"));
	assert_non_null(strstr(text, "process_resident_memory_bytes "));
	assert_non_null(strstr(text, "process_open_fds "));
	assert_non_null(strstr(text, "process_start_time_seconds "));
	free(text);
	hs_metrics_free(m);
}

static void test_procstat__self_and_missing(void **state)
{
	(void)state;
	hs_procstat ps;
	hs_error err = { 0 };
	assert_int_equal(hs_procstat_read(0, &ps, &err), HS_OK);
	assert_int_equal(ps.ppid, getppid());
	assert_true(ps.num_threads >= 1 && ps.start_ticks > 0 && ps.rss_pages > 0);
	hs_procstat again;
	assert_int_equal(hs_procstat_read(getpid(), &again, &err), HS_OK);
	assert_int_equal(again.start_ticks, ps.start_ticks);
	assert_int_equal(hs_procstat_read(0x3ffffff0, &ps, &err), HS_NOT_FOUND);
}

/* One UTF-8 rule, as strict as jansson's: it must agree with json_string on
 * every input (valid <=> jansson accepts), so NULL from jansson afterwards
 * can only mean out of memory. */
static void test_utf8__strict_and_agrees_with_jansson(void **state)
{
	(void)state;
	size_t n = 99;
	assert_true(hs_utf8_valid("", &n));
	assert_int_equal(n, 0);
	assert_true(hs_utf8_valid("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", &n));
	assert_int_equal(n, 4);
	assert_false(hs_utf8_valid(NULL, NULL));
	static const char *const bad[] = {
		"\x80",	    /* lone continuation */
		"\xc0\xaf",	    /* overlong '/' */
		"\xe0\x80\xaf",   /* overlong, 3 bytes */
		"\xed\xa0\x80",   /* surrogate U+D800 */
		"\xf4\x90\x80\x80", /* past U+10FFFF */
		"\xf5\x80\x80\x80", /* lead byte past f4 */
		"\xc3",	    /* cut short */
		"\xe2\x82",	    /* cut short */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(hs_utf8_valid(bad[i], NULL));
	/* every 1- and 2-byte string, and 3-byte strings from a few lead
	 * bytes: the same answer as jansson */
	char b[4] = { 0 };
	for (int x = 1; x < 256; x++) {
		for (int y = 0; y < 256; y++) {
			b[0] = (char)x;
			b[1] = (char)y;
			b[2] = 0;
			json_t *j = json_string(b);
			assert_int_equal(hs_utf8_valid(b, NULL), j != NULL);
			json_decref(j);
			if (y == 0)
				break;
			if (x == 0xe0 || x == 0xed || x == 0xf0 || x == 0xf4) {
				for (int z = 1; z < 256; z++) {
					b[2] = (char)z;
					j = json_string(b);
					bool ok = hs_utf8_valid(b, NULL);
					assert_int_equal(ok, j != NULL);
					json_decref(j);
				}
				b[2] = 0;
			}
		}
	}
}

/* A message cut inside a multi-byte character ("%.Ns", the buffer's end)
 * or carrying bytes that are not UTF-8 is repaired: JSON and gRPC clients
 * always get valid text (a sandbox's failure_reason was stored from such a
 * message and made GetSandbox a 500 for the owner and the admin). */
static void test_error__message_is_valid_utf8(void **state)
{
	(void)state;
	hs_error err = { 0 };
	char e100[201];
	for (int i = 0; i < 100; i++)
		memcpy(e100 + 2 * i, "\xc3\xa9", 2);
	e100[200] = '\0';
	hs_error_set(&err, HS_INVALID, "x \"a%.64s\": gone", e100); /* cut after 64 bytes */
	assert_true(hs_utf8_valid(err.msg, NULL));
	hs_error_clear(&err);
	hs_error_set(&err, HS_INVALID, "x \"%.63s\": gone", e100); /* half a character */
	assert_true(hs_utf8_valid(err.msg, NULL));
	assert_non_null(strstr(err.msg, "?\": gone"));
	hs_error_clear(&err);
	char longmsg[600];
	memset(longmsg, 'a', 1);
	for (int i = 0; i < 299; i++)
		memcpy(longmsg + 1 + 2 * i, "\xc3\xa9", 2); /* ends mid-character at 255 */
	longmsg[599] = '\0';
	hs_error_set(&err, HS_INVALID, "%s", longmsg);
	assert_true(hs_utf8_valid(err.msg, NULL));
	hs_error_clear(&err);
	hs_error_set(&err, HS_INVALID, "raw \xff\xfe \xed\xa0\x80 ok \xe2\x82\xac");
	assert_string_equal(err.msg, "raw ?? ??? ok \xe2\x82\xac");
	char s[] = "\xf0\x9f\x98\x80\xf0\x9f";
	assert_int_equal(hs_utf8_repair(s), 2);
	assert_string_equal(s, "\xf0\x9f\x98\x80??");
	assert_int_equal(hs_utf8_repair(NULL), 0);
}

int main(void)
{
	const struct CMUnitTest error_tests[] = {
		cmocka_unit_test(test_metrics__exposition),
		cmocka_unit_test(test_trace__rules),
		cmocka_unit_test(test_procstat__self_and_missing),
		cmocka_unit_test(test_ids__task_rule),
		cmocka_unit_test(test_ids__name_rule),
		cmocka_unit_test(test_labels__rule_and_match),
		cmocka_unit_test(test_principal__ownership_rule),
		cmocka_unit_test(test_clock__deadline_normalised),
		cmocka_unit_test(test_error__set_fills_code_and_message),
		cmocka_unit_test(test_error__null_err_returns_code),
		cmocka_unit_test(test_error__ok_leaves_err_untouched),
		cmocka_unit_test(test_error__lower_layer_message_kept),
		cmocka_unit_test(test_error__long_message_truncated),
		cmocka_unit_test(test_error__clear),
		cmocka_unit_test(test_error__code_mappings),
		cmocka_unit_test(test_error__unknown_code_is_internal),
	};
	const struct CMUnitTest log_tests[] = {
		cmocka_unit_test(test_log__json_line_with_typed_fields),
		cmocka_unit_test(test_log__escapes_quotes_backslashes_controls),
		cmocka_unit_test(test_log__null_key_skipped_null_string_empty),
		cmocka_unit_test(test_log__level_filter),
		cmocka_unit_test(test_log__level_parse),
		cmocka_unit_test(test_log__oversized_line_is_still_json),
		cmocka_unit_test(test_log__oversized_escapes_are_still_json),
		cmocka_unit_test(test_utf8__strict_and_agrees_with_jansson),
		cmocka_unit_test(test_error__message_is_valid_utf8),
		cmocka_unit_test(test_log__carries_trace_context),
	};
	int failed = cmocka_run_group_tests_name("error", error_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("log", log_tests, log_setup, log_teardown);
	return failed;
}
