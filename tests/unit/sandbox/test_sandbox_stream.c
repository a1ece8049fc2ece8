/* GetSandboxLogs and ExecSandbox in the module, with real bwrap sandboxes:
 * tails, follow until the sandbox stops, limits; commands' exit codes,
 * stdin, stdout/stderr kept apart, signals, cancellation and deadlines
 * killing the process group, flow control both ways (a sink that refuses,
 * stdin larger than the buffer), refusals (state, owner, rules, limits),
 * and the end of the manager ending every stream. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "helpers.h"
#include "log.h"

/* ---- a sink that collects --------------------------------------------------- */

typedef struct buf {
	char *p;
	size_t len, cap;
} buf;

typedef struct col {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	buf log, out, err;
	int64_t next_offset; /* LOG chunks must be contiguous */
	bool gap;
	bool exited;
	int exit_code, signal;
	bool ended;
	int end_code;
	char end_msg[256];
	int refuse_every;    /* > 0: HS_LIMIT on every n-th offer (backpressure) */
	int offers, refused;
	int ready;           /* stdin_ready calls */
	bool after_end;      /* a delivery after the end: a bug */
} col;

static void buf_add(buf *b, const char *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static int col_deliver(const hs_sandbox_out *o, void *payload)
{
	col *c = payload;
	pthread_mutex_lock(&c->mu);
	c->after_end |= c->ended;
	c->offers++;
	if (c->refuse_every > 0 && c->offers % c->refuse_every == 0) {
		c->refused++;
		pthread_mutex_unlock(&c->mu);
		return HS_LIMIT;
	}
	switch (o->kind) {
	case HS_SANDBOX_OUT_LOG:
		c->gap |= o->offset != c->next_offset && c->log.len > 0;
		c->next_offset = o->offset + (int64_t)o->len;
		buf_add(&c->log, o->data, o->len);
		break;
	case HS_SANDBOX_OUT_STDOUT:
		buf_add(&c->out, o->data, o->len);
		break;
	case HS_SANDBOX_OUT_STDERR:
		buf_add(&c->err, o->data, o->len);
		break;
	case HS_SANDBOX_OUT_EXIT:
		c->exited = true;
		c->exit_code = o->exit_code;
		c->signal = o->signal;
		break;
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return HS_OK;
}

static void col_ready(void *payload)
{
	col *c = payload;
	pthread_mutex_lock(&c->mu);
	c->ready++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void col_end(int code, const char *msg, void *payload)
{
	col *c = payload;
	pthread_mutex_lock(&c->mu);
	assert_false(c->ended); /* exactly once */
	c->ended = true;
	c->end_code = code;
	snprintf(c->end_msg, sizeof(c->end_msg), "%s", msg);
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static col *col_new(void)
{
	col *c = calloc(1, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	return c;
}

static void col_free(col *c)
{
	free(c->log.p);
	free(c->out.p);
	free(c->err.p);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

static hs_sandbox_sink sink_of(col *c)
{
	return (hs_sandbox_sink){ col_deliver, col_ready, col_end, c };
}

typedef bool (*col_pred)(col *c, const void *arg);

/* Waits (bounded, generously: never a timing assertion) for pred. */
static bool col_wait(col *c, col_pred pred, const void *arg, unsigned ms)
{
	int64_t until = hs_clock_mono_ms() + ms;
	pthread_mutex_lock(&c->mu);
	bool ok;
	while (!(ok = pred(c, arg)) && hs_clock_mono_ms() < until) {
		struct timespec ts = hs_clock_deadline(CLOCK_REALTIME, 20);
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	}
	pthread_mutex_unlock(&c->mu);
	return ok;
}

static bool is_ended(col *c, const void *arg)
{
	(void)arg;
	return c->ended;
}

static bool out_has(col *c, const void *arg)
{
	return c->out.p != NULL && strstr(c->out.p, arg) != NULL;
}

static bool log_has(col *c, const void *arg)
{
	return c->log.p != NULL && strstr(c->log.p, arg) != NULL;
}

static bool ready_seen(col *c, const void *arg)
{
	return c->ready > *(const int *)arg || c->ended;
}

/* ---- fixtures ------------------------------------------------------------------- */

static int setup(void **state)
{
	sbt_env *env = calloc(1, sizeof(*env));
	sbt_setup(env);
	*state = env;
	return 0;
}

static int teardown(void **state)
{
	sbt_env *env = *state;
	sbt_teardown(env);
	free(env);
	return 0;
}

static void create_start(sbt_env *env, const char *id, const char *task, const char *script)
{
	const char *argv[] = { "/bin/sh", "-c", script };
	hs_sandbox_spec spec = { .sandbox_id = id, .driver = "bwrap", .task_id = task,
				 .entrypoint = argv, .entrypoint_len = 3 };
	hs_error err = { 0 };
	if (hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err) != HS_OK)
		fail_msg("create: %s", err.msg);
	if (hs_sandbox_start(env->mgr, &sbt_alice, id, NULL, &err) != HS_OK)
		fail_msg("start: %s", err.msg);
}

/* Waits (bounded) until the entrypoint made task/name. */
static void wait_path(sbt_env *env, const char *task, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s/%s", env->workspaces, task, name);
	for (int i = 0; i < 3000 && !sbt_exists(path); i++)
		sbt_sleep_ms(10);
	assert_true(sbt_exists(path));
}

static void touch(sbt_env *env, const char *task, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s/%s", env->workspaces, task, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
}

/* A log stream run to its end; returns the collector (col_free it). */
static col *read_logs(sbt_env *env, const char *id, hs_sandbox_logs_opts o)
{
	col *c = col_new();
	hs_sandbox_sink sink = sink_of(c);
	hs_sandbox_stream *s = NULL;
	hs_error err = { 0 };
	if (hs_sandbox_logs(env->mgr, &sbt_alice, id, &o, &sink, &s, &err) != HS_OK)
		fail_msg("logs: %s", err.msg);
	assert_true(col_wait(c, is_ended, NULL, 10000));
	hs_sandbox_stream_unref(s);
	assert_int_equal(c->end_code, HS_OK);
	assert_false(c->gap);
	return c;
}

static void expect_log(sbt_env *env, const char *id, hs_sandbox_logs_opts o, const char *want)
{
	col *c = read_logs(env, id, o);
	assert_string_equal(c->log.p ? c->log.p : "", want);
	col_free(c);
}

static hs_sandbox_stream *exec_in(sbt_env *env, const hs_sandbox_caller *who, const char *id,
				  const char *const *cmd, size_t n, col *c, int want_rc,
				  hs_error *err)
{
	hs_sandbox_exec_spec spec = { .command = cmd, .command_len = n };
	hs_sandbox_sink sink = sink_of(c);
	hs_sandbox_stream *s = NULL;
	int rc = hs_sandbox_exec(env->mgr, who, id, &spec, &sink, &s, err);
	if (rc != want_rc)
		fail_msg("exec %s: got %d want %d: %s", cmd[0], rc, want_rc, err->msg);
	return s;
}

/* Runs sh -c script in id to its end; the collector has what it wrote. */
static col *run_sh(sbt_env *env, const char *id, const char *script, const char *input)
{
	const char *cmd[] = { "/bin/sh", "-c", script };
	col *c = col_new();
	hs_error err = { 0 };
	hs_sandbox_stream *s = exec_in(env, &sbt_alice, id, cmd, 3, c, HS_OK, &err);
	bool wait;
	/* HS_CANCELLED: it already ended (it did not wait for its stdin). */
	int rc = hs_sandbox_exec_stdin(s, input, input ? strlen(input) : 0, true, &wait, &err);
	assert_true(rc == HS_OK || (rc == HS_CANCELLED && input == NULL));
	assert_true(col_wait(c, is_ended, NULL, 10000));
	hs_sandbox_stream_unref(s);
	return c;
}

/* ---- logs ---------------------------------------------------------------------------- */

static void test_sandbox_stream__logs_tail_and_follow(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	env->cfg.log_streams_per_user = 2;
	sbt_open_mgr(env);
	create_start(env, "sb-log", "task-log",
		     "echo line1; echo line2; echo line3; "
		     "while [ ! -e go ]; do sleep 0.02; done; echo line4; printf partial; exit 0");
	col *probe = NULL;
	for (int i = 0; i < 500; i++) { /* until line3 is in the log */
		probe = read_logs(env, "sb-log", (hs_sandbox_logs_opts){ 0 });
		bool have = log_has(probe, "line3\n");
		col_free(probe);
		if (have)
			break;
		sbt_sleep_ms(10);
	}
	expect_log(env, "sb-log", (hs_sandbox_logs_opts){ 0 }, "line1\nline2\nline3\n");
	expect_log(env, "sb-log", (hs_sandbox_logs_opts){ .tail_lines = 2 }, "line2\nline3\n");
	expect_log(env, "sb-log", (hs_sandbox_logs_opts){ .tail_lines = 9 }, "line1\nline2\nline3\n");
	expect_log(env, "sb-log", (hs_sandbox_logs_opts){ .tail_bytes = 8 }, "2\nline3\n");
	expect_log(env, "sb-log", (hs_sandbox_logs_opts){ .tail_lines = 1, .tail_bytes = 100 },
		   "line3\n");
	expect_log(env, "sb-log", (hs_sandbox_logs_opts){ .limit_bytes = 7 }, "line1\nl");

	/* Follow from the last line: what is written next arrives, and the
	 * stream ends (OK) once the sandbox stops and all was sent. */
	col *f = col_new();
	hs_sandbox_sink sink = sink_of(f);
	hs_sandbox_stream *s = NULL;
	hs_sandbox_logs_opts fo = { .tail_lines = 1, .follow = true };
	assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_alice, "sb-log", &fo, &sink, &s, &err),
			 HS_OK);
	assert_true(col_wait(f, log_has, "line3\n", 10000));
	/* The per-user limit counts open streams (2 here). */
	col *g = col_new();
	hs_sandbox_sink gsink = sink_of(g);
	hs_sandbox_stream *s2 = NULL, *s3 = NULL;
	assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_alice, "sb-log", &fo, &gsink, &s2, &err),
			 HS_OK);
	assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_alice, "sb-log", &fo, &gsink, &s3, &err),
			 HS_LIMIT);
	assert_true(sbt_contains(err.msg, "log streams"));
	hs_sandbox_stream_cancel(s2);
	assert_true(col_wait(g, is_ended, NULL, 10000));
	assert_int_equal(g->end_code, HS_CANCELLED);
	hs_sandbox_stream_unref(s2);
	col_free(g);
	assert_false(f->ended);
	touch(env, "task-log", "go");
	assert_true(col_wait(f, is_ended, NULL, 10000));
	assert_int_equal(f->end_code, HS_OK);
	assert_string_equal(f->log.p, "line3\nline4\npartial");
	assert_false(f->after_end);
	hs_sandbox_stream_unref(s);
	col_free(f);
	assert_int_equal(sbt_wait_state(env, &sbt_alice, "sb-log", HS_SANDBOX_STOPPED, 30000),
			 HS_SANDBOX_STOPPED);

	/* A stopped sandbox is read to its end even with follow; the last line
	 * without a newline counts as a line. */
	expect_log(env, "sb-log", (hs_sandbox_logs_opts){ .tail_lines = 1, .follow = true },
		   "partial");
	expect_log(env, "sb-log", (hs_sandbox_logs_opts){ .tail_lines = 2 }, "line4\npartial");

	/* Refusals. */
	col *x = col_new();
	hs_sandbox_sink xs = sink_of(x);
	hs_sandbox_logs_opts bad[] = { { .tail_lines = -1 }, { .tail_lines = 100001 },
				       { .tail_bytes = -5 }, { .limit_bytes = -1 } };
	const char *field[] = { "tail_lines", "tail_lines", "tail_bytes", "limit_bytes" };
	for (size_t i = 0; i < 4; i++) {
		hs_error_clear(&err);
		assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_alice, "sb-log", &bad[i], &xs, &s, &err),
				 HS_INVALID);
		assert_true(sbt_contains(err.msg, field[i]));
	}
	hs_sandbox_logs_opts none = { 0 };
	assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_bob, "sb-log", &none, &xs, &s, &err),
			 HS_NOT_FOUND);
	assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_alice, "sb-nope", &none, &xs, &s, &err),
			 HS_NOT_FOUND);
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "sb-log", NULL, &err), HS_OK);
	assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_alice, "sb-log", &none, &xs, &s, &err),
			 HS_CONFLICT);
	assert_false(x->ended);
	col_free(x);
}

/* A follower of a sandbox that is destroyed ends OK; one whose sink is full
 * most of the time still gets every byte, in order. */
static void test_sandbox_stream__logs_backpressure_and_destroy(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	env->cfg.stream_rate = 0; /* unpaced: the refusals are the brake here */
	sbt_open_mgr(env);
	create_start(env, "sb-chat", "task-chat",
		     "i=0; while [ $i -lt 3000 ]; do echo \"row $i 0123456789abcdef\"; i=$((i+1)); "
		     "done; echo done-writing; exec sleep 1000");
	col *c = col_new();
	c->refuse_every = 2;
	hs_sandbox_sink sink = sink_of(c);
	hs_sandbox_stream *s = NULL;
	hs_sandbox_logs_opts o = { .follow = true };
	assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_alice, "sb-chat", &o, &sink, &s, &err),
			 HS_OK);
	assert_true(col_wait(c, log_has, "done-writing\n", 20000));
	assert_true(c->refused > 0);
	assert_false(c->gap);
	assert_true(sbt_contains(c->log.p, "row 0 0123456789abcdef\nrow 1 "));
	assert_true(sbt_contains(c->log.p, "row 2999 0123456789abcdef\ndone-writing\n"));
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "sb-chat", NULL, &err), HS_OK);
	assert_true(col_wait(c, is_ended, NULL, 10000));
	assert_int_equal(c->end_code, HS_OK);
	hs_sandbox_stream_unref(s);
	col_free(c);
}

/* ---- exec ---------------------------------------------------------------------------------- */

static void test_sandbox_stream__exec_runs_commands(void **state)
{
	sbt_env *env = *state;
	sbt_open_mgr(env);
	create_start(env, "sb-x", "task-x", "mkdir -p sub/dir; exec sleep 1000");
	wait_path(env, "task-x", "sub/dir");

	/* exit code, stdout and stderr apart, stdin through cat */
	col *c = run_sh(env, "sb-x", "cat; echo to-err >&2; echo \"$HARNESS_SANDBOX_ID\"; exit 3",
			"from-stdin\n");
	assert_int_equal(c->end_code, HS_OK);
	assert_true(c->exited);
	assert_int_equal(c->exit_code, 3);
	assert_int_equal(c->signal, 0);
	assert_string_equal(c->out.p, "from-stdin\nsb-x\n");
	assert_string_equal(c->err.p, "to-err\n");
	assert_false(c->after_end);
	col_free(c);

	/* killed by a signal: 128 + signal, and the signal */
	c = run_sh(env, "sb-x", "kill -TERM $$", NULL);
	assert_true(c->exited);
	assert_int_equal(c->signal, SIGTERM);
	assert_int_equal(c->exit_code, 128 + SIGTERM);
	col_free(c);

	/* env overlays the sandbox's; working_dir is below the workspace */
	const char *cmd[] = { "/bin/sh", "-c", "echo \"$GREETING $HARNESS_TASK_ID\"; pwd" };
	hs_label env_kv[] = { { "GREETING", "hello" } };
	c = col_new();
	hs_sandbox_exec_spec spec = { .command = cmd, .command_len = 3, .env = env_kv, .env_len = 1,
				      .working_dir = "sub/dir" };
	hs_sandbox_sink sink = sink_of(c);
	hs_sandbox_stream *s = NULL;
	hs_error err = { 0 };
	assert_int_equal(hs_sandbox_exec(env->mgr, &sbt_alice, "sb-x", &spec, &sink, &s, &err), HS_OK);
	assert_true(col_wait(c, is_ended, NULL, 10000));
	char want[600];
	snprintf(want, sizeof(want), "hello task-x\n%s/task-x/sub/dir\n", env->workspaces);
	assert_string_equal(c->out.p, want);
	assert_int_equal(c->exit_code, 0);
	hs_sandbox_stream_unref(s);
	col_free(c);

	/* PATH lookup of command[0]; a command that closes stdin early */
	const char *head[] = { "head", "-c", "3" };
	c = col_new();
	s = exec_in(env, &sbt_alice, "sb-x", head, 3, c, HS_OK, &err);
	bool wait;
	assert_int_equal(hs_sandbox_exec_stdin(s, "abcdef", 6, false, &wait, &err), HS_OK);
	assert_true(col_wait(c, is_ended, NULL, 10000));
	assert_string_equal(c->out.p, "abc");
	assert_int_equal(c->exit_code, 0);
	/* after the end: nothing to do */
	assert_int_equal(hs_sandbox_exec_stdin(s, "x", 1, false, &wait, &err), HS_CANCELLED);
	hs_sandbox_stream_unref(s);
	col_free(c);
}

static void test_sandbox_stream__exec_refusals(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	env->cfg.exec_per_sandbox = 1;
	sbt_open_mgr(env);
	create_start(env, "sb-r", "task-r", "ln -s /etc link; exec sleep 1000");
	wait_path(env, "task-r", "link");
	const char *ok[] = { "true" };
	col *c = col_new();
	hs_sandbox_sink sink = sink_of(c);
	hs_sandbox_stream *s = NULL;
	struct {
		const char *const *cmd;
		size_t n;
		hs_label env;
		size_t env_len;
		const char *wd;
		bool tty;
		int rc;
		const char *msg;
	} cases[] = {
		{ ok, 0, { 0 }, 0, NULL, false, HS_INVALID, "command" },
		{ (const char *[]){ "" }, 1, { 0 }, 0, NULL, false, HS_INVALID, "command[0]" },
		{ (const char *[]){ "/no/such/tool" }, 1, { 0 }, 0, NULL, false, HS_INVALID,
		  "No such file" },
		{ (const char *[]){ "/etc/passwd" }, 1, { 0 }, 0, NULL, false, HS_INVALID,
		  "Permission denied" },
		{ ok, 1, { "LD_PRELOAD", "/tmp/x.so" }, 1, NULL, false, HS_INVALID, "LD_PRELOAD" },
		{ ok, 1, { "HARNESS_SANDBOX_ID", "x" }, 1, NULL, false, HS_INVALID, "HARNESS_SANDBOX_ID" },
		{ ok, 1, { "A-B", "x" }, 1, NULL, false, HS_INVALID, "env" },
		{ ok, 1, { 0 }, 0, NULL, true, HS_INVALID, "tty" },
		{ ok, 1, { 0 }, 0, "../task-other", false, HS_INVALID, "working_dir" },
		{ ok, 1, { 0 }, 0, "/etc", false, HS_INVALID, "working_dir" },
		{ ok, 1, { 0 }, 0, "missing", false, HS_NOT_FOUND, "working_dir" },
		{ ok, 1, { 0 }, 0, "link", false, HS_CONFLICT, "working_dir" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hs_sandbox_exec_spec spec = { .command = cases[i].cmd, .command_len = cases[i].n,
					      .env = &cases[i].env, .env_len = cases[i].env_len,
					      .working_dir = cases[i].wd, .tty = cases[i].tty };
		hs_error_clear(&err);
		int rc = hs_sandbox_exec(env->mgr, &sbt_alice, "sb-r", &spec, &sink, &s, &err);
		if (rc != cases[i].rc || !sbt_contains(err.msg, cases[i].msg))
			fail_msg("case %zu: %d \"%s\", want %d with \"%s\"", i, rc, err.msg,
				 cases[i].rc, cases[i].msg);
	}
	/* Another user's: not found; unknown: not found. */
	hs_sandbox_exec_spec spec = { .command = ok, .command_len = 1 };
	assert_int_equal(hs_sandbox_exec(env->mgr, &sbt_bob, "sb-r", &spec, &sink, &s, &err),
			 HS_NOT_FOUND);
	assert_false(sbt_contains(err.msg, "usr_alice"));
	assert_int_equal(hs_sandbox_exec(env->mgr, &sbt_alice, "sb-none", &spec, &sink, &s, &err),
			 HS_NOT_FOUND);
	/* One command per sandbox here: the second is refused while the first runs. */
	const char *slow[] = { "sleep", "1000" };
	hs_sandbox_stream *first = exec_in(env, &sbt_alice, "sb-r", slow, 2, c, HS_OK, &err);
	col *c2 = col_new();
	hs_sandbox_sink sink2 = sink_of(c2);
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_exec(env->mgr, &sbt_alice, "sb-r", &spec, &sink2, &s, &err),
			 HS_LIMIT);
	assert_true(sbt_contains(err.msg, "the limit is 1"));
	/* PAUSED: refused, naming the state. */
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "sb-r", NULL, &err), HS_OK);
	hs_sandbox_stream_cancel(first);
	assert_true(col_wait(c, is_ended, NULL, 10000));
	hs_sandbox_stream_unref(first);
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_exec(env->mgr, &sbt_alice, "sb-r", &spec, &sink2, &s, &err),
			 HS_CONFLICT);
	assert_true(sbt_contains(err.msg, "PAUSED"));
	assert_int_equal(hs_sandbox_resume(env->mgr, &sbt_alice, "sb-r", NULL, &err), HS_OK);
	assert_int_equal(hs_sandbox_exec(env->mgr, &sbt_alice, "sb-r", &spec, &sink2, &s, &err),
			 HS_OK);
	assert_true(col_wait(c2, is_ended, NULL, 10000));
	assert_int_equal(c2->exit_code, 0);
	hs_sandbox_stream_unref(s);
	assert_false(c2->after_end);
	col_free(c2);
	col_free(c);

	/* A sandbox without a workspace takes no working_dir; a stopped one no command. */
	const char *argv[] = { "sleep", "1000" };
	hs_sandbox_spec ns = { .sandbox_id = "sb-nows", .driver = "bwrap", .entrypoint = argv,
			       .entrypoint_len = 2 };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &ns, NULL, &err), HS_OK);
	c = col_new();
	sink = sink_of(c);
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_exec(env->mgr, &sbt_alice, "sb-nows", &spec, &sink, &s, &err),
			 HS_CONFLICT);
	assert_true(sbt_contains(err.msg, "CREATED"));
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "sb-nows", NULL, &err), HS_OK);
	spec.working_dir = "x";
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_exec(env->mgr, &sbt_alice, "sb-nows", &spec, &sink, &s, &err),
			 HS_INVALID);
	assert_true(sbt_contains(err.msg, "no workspace"));
	col_free(c);
}

/* Cancel, the call's deadline and the sandbox's end each end the command,
 * and its whole process group is gone. */
static void test_sandbox_stream__exec_cancel_deadline_stop(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	char marker[32], script[200];
	sbt_open_mgr(env);
	create_start(env, "sb-k", "task-k", "exec sleep 1000");
	snprintf(marker, sizeof(marker), "86395.%06d", (int)(getpid() % 1000000));
	snprintf(script, sizeof(script), "sleep %s & sleep %s & echo started; wait", marker, marker);
	const char *cmd[] = { "/bin/sh", "-c", script };

	int64_t deadline_ms = 1500;
	for (int round = 0; round < 3; round++) {
		col *c = col_new();
		hs_sandbox_exec_spec spec = { .command = cmd, .command_len = 3 };
		if (round == 1)
			spec.deadline_ms = hs_clock_mono_ms() + deadline_ms;
		hs_sandbox_sink sink = sink_of(c);
		hs_sandbox_stream *s = NULL;
		assert_int_equal(hs_sandbox_exec(env->mgr, &sbt_alice, "sb-k", &spec, &sink, &s, &err),
				 HS_OK);
		if (!col_wait(c, out_has, "started", 30000)) {
			/* The deadline raced the command's start (a loaded machine):
			 * let it go, then again with twice the time. */
			if (round == 1 && deadline_ms < 30000 && col_wait(c, is_ended, NULL, 30000) &&
			    c->end_code == HS_TIMEOUT) {
				sbt_wait_procs(marker, 0, 30000);
				hs_sandbox_stream_unref(s);
				col_free(c);
				deadline_ms *= 2;
				round--;
				continue;
			}
			fail_msg("round %d: no \"started\"", round);
		}
		/* sh -c "..." and two sleeps: both were forked before the echo (and
		 * carry the marker from then on). Round 1's deadline may already
		 * have ended them by now, so count only in the other rounds. */
		if (round != 1) {
			assert_int_equal(sbt_wait_procs(marker, 3, 30000), 3);
		}
		if (round == 0)
			hs_sandbox_stream_cancel(s);
		else if (round == 2)
			assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "sb-k", NULL, &err),
					 HS_OK);
		assert_true(col_wait(c, is_ended, NULL, 10000));
		int want[] = { HS_CANCELLED, HS_TIMEOUT, HS_UNAVAILABLE };
		if (c->end_code != want[round])
			fail_msg("round %d: ended %d (%s)", round, c->end_code, c->end_msg);
		assert_false(c->exited);
		assert_int_equal(sbt_wait_procs(marker, 0, 30000), 0);
		hs_sandbox_stream_unref(s);
		col_free(c);
	}
}

/* stdin larger than the buffer: the caller is told to wait and resumed;
 * output through a sink that refuses every other chunk: all of it, in order. */
static void test_sandbox_stream__exec_flow_control(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	env->cfg.stream_rate = 0;
	sbt_open_mgr(env);
	create_start(env, "sb-f", "task-f", "exec sleep 1000");

	const char *cmd[] = { "/bin/sh", "-c", "sleep 0.3; wc -c" };
	col *c = col_new();
	hs_sandbox_stream *s = exec_in(env, &sbt_alice, "sb-f", cmd, 3, c, HS_OK, &err);
	static char chunk[HS_SANDBOX_STDIN_CHUNK];
	memset(chunk, 'z', sizeof(chunk));
	int waits = 0;
	for (int i = 0; i < 32; i++) { /* 2 MiB */
		bool wait = false;
		assert_int_equal(hs_sandbox_exec_stdin(s, chunk, sizeof(chunk), i == 31, &wait, &err),
				 HS_OK);
		if (wait) {
			pthread_mutex_lock(&c->mu);
			int seen = c->ready;
			pthread_mutex_unlock(&c->mu);
			waits++;
			assert_true(col_wait(c, ready_seen, &seen, 10000));
		}
	}
	/* More than chunk size per message is refused. */
	bool w;
	static char big[HS_SANDBOX_STDIN_CHUNK + 1];
	assert_int_equal(hs_sandbox_exec_stdin(s, big, sizeof(big), false, &w, &err), HS_INVALID);
	if (!col_wait(c, is_ended, NULL, 20000))
		fail_msg("wc did not end: waits %d ready %d out %s", waits, c->ready,
			 c->out.p ? c->out.p : "");
	assert_true(waits > 0);
	assert_int_equal(c->exit_code, 0);
	assert_int_equal(strtol(c->out.p, NULL, 10), 32 * HS_SANDBOX_STDIN_CHUNK);
	hs_sandbox_stream_unref(s);
	col_free(c);

	/* 1 MiB out (more than a pipe holds: the command blocks while we wait). */
	const char *gen[] = { "/bin/sh", "-c",
			      "head -c 1048576 /dev/zero | tr '\\0' a; echo; echo err-end >&2" };
	c = col_new();
	c->refuse_every = 2;
	s = exec_in(env, &sbt_alice, "sb-f", gen, 3, c, HS_OK, &err);
	assert_int_equal(hs_sandbox_exec_stdin(s, NULL, 0, true, &w, &err), HS_OK);
	if (!col_wait(c, is_ended, NULL, 20000))
		fail_msg("not ended: out %zu err %zu offers %d refused %d exited %d", c->out.len,
			 c->err.len, c->offers, c->refused, c->exited);
	assert_int_equal(c->end_code, HS_OK);
	assert_int_equal(c->out.len, 1048577);
	assert_int_equal(strspn(c->out.p, "a"), 1048576);
	assert_string_equal(c->err.p, "err-end\n");
	assert_true(c->refused > 0);
	hs_sandbox_stream_unref(s);
	col_free(c);

	/* stdin sent after close is refused (the command waits for "done") */
	c = col_new();
	const char *cat[] = { "/bin/sh", "-c", "cat; while [ ! -e done ]; do sleep 0.02; done" };
	s = exec_in(env, &sbt_alice, "sb-f", cat, 3, c, HS_OK, &err);
	assert_int_equal(hs_sandbox_exec_stdin(s, "a", 1, true, &w, &err), HS_OK);
	assert_int_equal(hs_sandbox_exec_stdin(s, "b", 1, false, &w, &err), HS_INVALID);
	touch(env, "task-f", "done");
	assert_true(col_wait(c, is_ended, NULL, 10000));
	assert_string_equal(c->out.p, "a");
	hs_sandbox_stream_unref(s);
	col_free(c);
}

/* Per-user and total stream counts; the output cap kills the command. */
static void test_sandbox_stream__exec_user_limit_and_output_cap(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	char marker[32], script[200];
	env->cfg.exec_per_user = 1;
	env->cfg.exec_output_max = 100000;
	env->cfg.stream_rate = 0;
	sbt_open_mgr(env);
	create_start(env, "sb-u1", "task-u1", "exec sleep 1000");
	create_start(env, "sb-u2", "task-u2", "exec sleep 1000");
	const char *slow[] = { "sleep", "1000" };
	col *c = col_new(), *c2 = col_new();
	hs_sandbox_stream *s = exec_in(env, &sbt_alice, "sb-u1", slow, 2, c, HS_OK, &err);
	hs_sandbox_exec_spec spec = { .command = slow, .command_len = 2 };
	hs_sandbox_sink sink2 = sink_of(c2);
	hs_sandbox_stream *s2 = NULL;
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_exec(env->mgr, &sbt_alice, "sb-u2", &spec, &sink2, &s2, &err),
			 HS_LIMIT);
	assert_true(sbt_contains(err.msg, "user usr_alice runs 1 commands"));
	hs_sandbox_stream_cancel(s);
	assert_true(col_wait(c, is_ended, NULL, 10000));
	hs_sandbox_stream_unref(s);
	col_free(c);

	/* More output than the cap: the stream ends HS_LIMIT, the group is killed. */
	snprintf(marker, sizeof(marker), "86392.%06d", (int)(getpid() % 1000000));
	snprintf(script, sizeof(script),
		 "sleep %s & head -c 1000000 /dev/zero; wait", marker);
	const char *cmd[] = { "/bin/sh", "-c", script };
	s2 = exec_in(env, &sbt_alice, "sb-u2", cmd, 3, c2, HS_OK, &err);
	assert_true(col_wait(c2, is_ended, NULL, 10000));
	assert_int_equal(c2->end_code, HS_LIMIT);
	assert_true(sbt_contains(c2->end_msg, "more than 100000 bytes"));
	assert_true(c2->out.len <= 100000);
	assert_false(c2->exited);
	assert_int_equal(sbt_wait_procs(marker, 0, 30000), 0);
	hs_sandbox_stream_unref(s2);
	col_free(c2);
}

/* The server-wide count. */
static void test_sandbox_stream__total_limit(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	env->cfg.streams_max = 1;
	sbt_open_mgr(env);
	create_start(env, "sb-t", "task-t", "echo x; exec sleep 1000");
	col *c = col_new(), *c2 = col_new();
	hs_sandbox_logs_opts o = { .follow = true };
	hs_sandbox_sink sink = sink_of(c), sink2 = sink_of(c2);
	hs_sandbox_stream *s = NULL, *s2 = NULL;
	assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_alice, "sb-t", &o, &sink, &s, &err), HS_OK);
	assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_admin, "sb-t", &o, &sink2, &s2, &err),
			 HS_LIMIT);
	assert_true(sbt_contains(err.msg, "the limit is 1"));
	hs_sandbox_stream_cancel(s);
	assert_true(col_wait(c, is_ended, NULL, 10000));
	assert_int_equal(c->end_code, HS_CANCELLED);
	hs_sandbox_stream_unref(s);
	/* counted out once ended */
	for (int i = 0; i < 500; i++) {
		hs_error_clear(&err);
		if (hs_sandbox_logs(env->mgr, &sbt_admin, "sb-t", &o, &sink2, &s2, &err) == HS_OK)
			break;
		sbt_sleep_ms(10);
	}
	assert_true(col_wait(c2, log_has, "x\n", 10000));
	hs_sandbox_stream_cancel(s2);
	assert_true(col_wait(c2, is_ended, NULL, 10000));
	hs_sandbox_stream_unref(s2);
	col_free(c);
	col_free(c2);
}

/* Freeing the manager ends every stream (UNAVAILABLE) and kills commands. */
static void test_sandbox_stream__shutdown_ends_streams(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	char marker[32];
	sbt_open_mgr(env);
	create_start(env, "sb-s", "task-s", "echo hi; exec sleep 1000");
	snprintf(marker, sizeof(marker), "86394.%06d", (int)(getpid() % 1000000));
	const char *cmd[] = { "sleep", marker };
	col *c = col_new(), *l = col_new();
	hs_sandbox_stream *s = exec_in(env, &sbt_alice, "sb-s", cmd, 2, c, HS_OK, &err);
	hs_sandbox_logs_opts o = { .follow = true };
	hs_sandbox_sink ls = sink_of(l);
	hs_sandbox_stream *f = NULL;
	assert_int_equal(hs_sandbox_logs(env->mgr, &sbt_alice, "sb-s", &o, &ls, &f, &err), HS_OK);
	assert_true(col_wait(l, log_has, "hi\n", 10000));
	assert_int_equal(sbt_wait_procs(marker, 1, 30000), 1);
	hs_sandbox_stream_unref(s);
	hs_sandbox_stream_unref(f);
	hs_sandbox_mgr_free(env->mgr);
	env->mgr = NULL;
	assert_true(c->ended && l->ended);
	assert_int_equal(c->end_code, HS_UNAVAILABLE);
	assert_int_equal(l->end_code, HS_UNAVAILABLE);
	assert_int_equal(sbt_wait_procs(marker, 0, 30000), 0);
	col_free(c);
	col_free(l);
	/* the sandbox itself survives (re-adopted by the next manager) */
	sbt_open_mgr(env);
	assert_int_equal(sbt_wait_state(env, &sbt_alice, "sb-s", HS_SANDBOX_RUNNING, 30000),
			 HS_SANDBOX_RUNNING);
	c = run_sh(env, "sb-s", "echo after-restart", NULL);
	assert_string_equal(c->out.p, "after-restart\n");
	col_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sandbox_stream__logs_tail_and_follow, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_stream__logs_backpressure_and_destroy,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_stream__exec_runs_commands, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_stream__exec_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_stream__exec_cancel_deadline_stop, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_stream__exec_flow_control, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_stream__exec_user_limit_and_output_cap,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_stream__total_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_stream__shutdown_ends_streams, setup,
						teardown),
	};
	hs_log_min_level = HS_LOG_ERROR;
	return cmocka_run_group_tests_name("unit.sandbox.stream", tests, NULL, NULL);
}
