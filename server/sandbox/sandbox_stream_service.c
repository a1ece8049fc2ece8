/* SandboxService's two streams over the sandbox module: GetSandboxLogs (a
 * server stream) and ExecSandbox (bidi). Conversion only: a sink turns the
 * module's output into response messages (hs_rpc_call_send; its HS_LIMIT
 * from a full send queue is the module's backpressure), the module's end
 * finishes the call, the call's end cancels the module's stream, and
 * ExecSandbox's later messages go to the stream their call started.
 *
 * A context per call ties the two together. It holds two references: the
 * sink's (dropped at the module's end, with the call reference the sink
 * keeps until then) and the on_done callback's (dropped when the call
 * ends). A bidi call's handler runs once per message and has no place of
 * its own for state, so exec contexts are found by call in a small
 * registry, from which on_done removes them (before the core recycles the
 * call). */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "harness/v1/sandbox.pb-c.h"
#include "sandbox_service_internal.h"

#define SEND_QUEUE 16 /* messages of at most 32 KiB waiting behind the one on the wire */

typedef struct stream_ctx {
	hs_rpc_call *call;
	hs_sandbox_stream *stream;
	atomic_int refs;
	struct stream_ctx *next; /* registry (exec) */
} stream_ctx;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static stream_ctx *reg_head;

static stream_ctx *ctx_new(hs_rpc_call *call, int refs)
{
	stream_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return NULL;
	ctx->call = call;
	atomic_init(&ctx->refs, refs);
	hs_rpc_call_ref(call); /* the sink's, until end */
	return ctx;
}

static void ctx_unref(stream_ctx *ctx)
{
	if (atomic_fetch_sub(&ctx->refs, 1) == 1) {
		hs_sandbox_stream_unref(ctx->stream);
		free(ctx);
	}
}

/* The context of an exec call, with a reference; NULL if none. */
static stream_ctx *reg_find(hs_rpc_call *call)
{
	pthread_mutex_lock(&reg_mu);
	stream_ctx *c = reg_head;
	while (c != NULL && c->call != call)
		c = c->next;
	if (c != NULL)
		atomic_fetch_add(&c->refs, 1);
	pthread_mutex_unlock(&reg_mu);
	return c;
}

static void reg_add(stream_ctx *ctx)
{
	pthread_mutex_lock(&reg_mu);
	ctx->next = reg_head;
	reg_head = ctx;
	pthread_mutex_unlock(&reg_mu);
}

static void reg_remove(stream_ctx *ctx)
{
	pthread_mutex_lock(&reg_mu);
	for (stream_ctx **p = &reg_head; *p != NULL; p = &(*p)->next) {
		if (*p == ctx) {
			*p = ctx->next;
			break;
		}
	}
	pthread_mutex_unlock(&reg_mu);
}

/* The call ended (client gone, deadline, finished): stop the stream. */
static void on_done(hs_rpc_call *call, void *payload)
{
	(void)call;
	stream_ctx *ctx = payload;
	reg_remove(ctx);
	hs_sandbox_stream_cancel(ctx->stream);
	ctx_unref(ctx);
}

static void sink_end(int code, const char *msg, void *payload)
{
	stream_ctx *ctx = payload;
	hs_rpc_call_finish(ctx->call, code, code == HS_OK ? NULL : msg);
	hs_rpc_call_unref(ctx->call);
	ctx_unref(ctx);
}

/* The call's deadline on the module's clock (0 = none). */
static int64_t deadline_of(hs_rpc_call *call)
{
	int64_t left = hs_rpc_call_deadline_left_ms(call);
	if (left == INT64_MAX)
		return 0;
	return hs_clock_mono_ms() + (left > 0 ? left : 1);
}

/* --- GetSandboxLogs ------------------------------------------------------------- */

static int deliver_log(const hs_sandbox_out *out, void *payload)
{
	stream_ctx *ctx = payload;
	Harness__V1__GetSandboxLogsResponse m = HARNESS__V1__GET_SANDBOX_LOGS_RESPONSE__INIT;
	m.data.data = (uint8_t *)out->data;
	m.data.len = out->len;
	m.offset = out->offset;
	return hs_rpc_call_send(ctx->call, &m.base);
}

int hs_sandbox__svc_get_logs(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	const Harness__V1__GetSandboxLogsRequest *r = (const void *)req;
	hs_sandbox_logs_opts o = { r->tail_lines, r->tail_bytes, r->limit_bytes, r->follow,
				   deadline_of(call) };
	stream_ctx *ctx = ctx_new(call, 2);
	if (ctx == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	hs_rpc_call_set_send_queue(call, SEND_QUEUE);
	hs_sandbox_sink sink = { deliver_log, NULL, sink_end, ctx };
	hs_sandbox_caller c = hs_sandbox__caller_of(call);
	int rc = hs_sandbox_logs(hs_rpc_call_payload(call), &c, r->sandbox_id, &o, &sink,
				 &ctx->stream, err);
	if (rc != HS_OK) {
		hs_rpc_call_unref(call);
		free(ctx);
		return rc;
	}
	hs_rpc_call_on_done(call, on_done, ctx);
	return HS_OK;
}

/* --- ExecSandbox -------------------------------------------------------------------- */

static int deliver_exec(const hs_sandbox_out *out, void *payload)
{
	stream_ctx *ctx = payload;
	Harness__V1__ExecSandboxResponse m = HARNESS__V1__EXEC_SANDBOX_RESPONSE__INIT;
	Harness__V1__ExecExit x = HARNESS__V1__EXEC_EXIT__INIT;
	ProtobufCBinaryData chunk = { out->len, (uint8_t *)out->data };
	if (out->kind == HS_SANDBOX_OUT_STDOUT) {
		m.stdout = chunk;
	} else if (out->kind == HS_SANDBOX_OUT_STDERR) {
		m.stderr = chunk;
	} else {
		x.exit_code = out->exit_code;
		x.signal = out->signal;
		m.exit = &x;
	}
	return hs_rpc_call_send(ctx->call, &m.base);
}

static void stdin_ready(void *payload)
{
	stream_ctx *ctx = payload;
	hs_rpc_call_resume_recv(ctx->call);
}

/* stdin and close_stdin of one message (req NULL: the client half-closed). */
static int feed(hs_rpc_call *call, stream_ctx *ctx, const Harness__V1__ExecSandboxRequest *r,
		hs_error *err)
{
	bool wait = false;
	const void *data = r != NULL ? r->stdin.data : NULL;
	size_t len = r != NULL ? r->stdin.len : 0;
	bool close_stdin = r == NULL || r->close_stdin;
	if (len == 0 && !close_stdin)
		return HS_OK;
	hs_error serr = { 0 };
	int rc = hs_sandbox_exec_stdin(ctx->stream, data, len, close_stdin, &wait, &serr);
	if (rc == HS_CANCELLED) /* the command ended: its status is on its way */
		return HS_OK;
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", serr.msg);
	if (wait && r != NULL)
		hs_rpc_call_pause_recv(call);
	return HS_OK;
}

static int exec_start(hs_rpc_call *call, const Harness__V1__ExecSandboxRequest *r, hs_error *err)
{
	const Harness__V1__ExecStart *st = r->start;
	int rc;
	hs_label *env = NULL;
	if (st->n_env > 0 &&
	    (env = hs_rpc_call_alloc(call, st->n_env * sizeof(*env))) == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	for (size_t i = 0; i < st->n_env; i++) {
		env[i].key = st->env[i]->key;
		env[i].value = st->env[i]->value;
	}
	hs_sandbox_exec_spec spec = { (const char *const *)st->command, st->n_command, env, st->n_env,
				      st->working_dir, st->tty, deadline_of(call) };
	/* The sink's and on_done's references, and ours for this message. */
	stream_ctx *ctx = ctx_new(call, 3);
	if (ctx == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	hs_rpc_call_set_send_queue(call, SEND_QUEUE);
	hs_sandbox_sink sink = { deliver_exec, stdin_ready, sink_end, ctx };
	hs_sandbox_caller c = hs_sandbox__caller_of(call);
	rc = hs_sandbox_exec(hs_rpc_call_payload(call), &c, st->sandbox_id, &spec, &sink,
			     &ctx->stream, err);
	if (rc != HS_OK) {
		hs_rpc_call_unref(call);
		free(ctx);
		return rc;
	}
	reg_add(ctx);
	hs_rpc_call_on_done(call, on_done, ctx);
	rc = feed(call, ctx, r, err);
	ctx_unref(ctx);
	return rc;
}

int hs_sandbox__svc_exec(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	const Harness__V1__ExecSandboxRequest *r = (const void *)req;
	stream_ctx *ctx = reg_find(call);
	if (ctx == NULL) {
		if (r == NULL || r->start == NULL)
			return hs_error_set(err, HS_INVALID,
					    "start: required in the first ExecSandbox message");
		return exec_start(call, r, err);
	}
	int rc = r != NULL && r->start != NULL
			 ? hs_error_set(err, HS_INVALID, "start: only in the first message")
			 : feed(call, ctx, r, err);
	ctx_unref(ctx);
	return rc;
}
