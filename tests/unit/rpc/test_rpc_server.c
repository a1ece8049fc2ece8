/* In-process tests of the RPC core (server/rpc/server.c, call.c): a real
 * hs_rpc_server on 127.0.0.1:0 serving test handlers on existing service
 * descriptors, called over loopback with the gRPC C core client API.
 *
 *   grpc.health.v1.Health/Check        unary, inline: metadata, errors, codes
 *   grpc.health.v1.Health/Watch        server stream, inline: streams, cancel
 *   harness.v1.AuthService/Login       unary, BLOCKING: sleeps, deadlines
 *   harness.v1.AuthService/WhoAmI      unary, needs the authenticator
 *   harness.v1.AuthService/Logout...   no handler: UNIMPLEMENTED
 *   harness.v1.HealthService/WatchTasks server stream, BLOCKING: flow control
 *   grpc.reflection.v1.ServerReflection/ServerReflectionInfo  bidi echo */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpc/grpc.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "harness/v1/auth.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "log.h"
#include "rpc.h"

extern char **environ;

#define M_CHECK "/grpc.health.v1.Health/Check"
#define M_WATCH "/grpc.health.v1.Health/Watch"
#define M_LOGIN "/harness.v1.AuthService/Login"
#define M_WHOAMI "/harness.v1.AuthService/WhoAmI"
#define M_LOGOUT "/harness.v1.AuthService/Logout"
#define M_WATCHTASKS "/harness.v1.HealthService/WatchTasks"
#define M_GETTASK "/harness.v1.HealthService/GetTask"
#define M_REFL "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"

static const ProtobufCMessageDescriptor *const CHECK_RESP =
	&grpc__health__v1__health_check_response__descriptor;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
	usleep((useconds_t)ms * 1000);
}

/* --- what the handlers saw ------------------------------------------------ */

/* Error-checking, so that each_setup can release it if a failed assertion
 * (cmocka longjmps out of the test) left it locked by this thread: the next
 * tests then fail or pass on their own instead of deadlocking. */
static pthread_mutex_t rec_mu = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

static struct rec {
	int payload_marker;
	/* Check echo */
	char md_seen[128];
	char peer[128];
	char method[128];
	bool payload_ok;
	pthread_t inline_thread;
	int bad_md_rc[6];
	/* Login */
	int login_started, login_finished;
	pthread_t login_thread;
	int64_t login_left_start, login_left_end;
	bool login_cancelled;
	/* Watch hold */
	int hold_done;
	int hold_send_after_done;
	/* WatchTasks */
	int flood_rc, flood_sent;
	bool flood_done;
	bool late_started, late_registered, late_saw_cancel;
	int late_done;
	hs_rpc_call *late_call;
	/* bidi */
	int bidi_msgs, bidi_half_close;
	char bidi_hosts[4][32];
	/* auth */
	char principal_user[128];
	bool principal_admin, principal_auth;
} rec;

static void rec_reset(void)
{
	pthread_mutex_lock(&rec_mu);
	memset(&rec, 0, sizeof(rec));
	pthread_mutex_unlock(&rec_mu);
}

/* Waits (up to ms) until *flag >= want, polling under rec_mu. */
static bool rec_wait_int(const int *flag, int want, int ms)
{
	double until = now_ms() + ms;
	pthread_mutex_lock(&rec_mu);
	while (*flag < want && now_ms() < until) {
		pthread_mutex_unlock(&rec_mu);
		sleep_ms(5);
		pthread_mutex_lock(&rec_mu);
	}
	bool ok = *flag >= want;
	pthread_mutex_unlock(&rec_mu);
	return ok;
}

static bool rec_wait_bool(const bool *flag, int ms)
{
	double until = now_ms() + ms;
	pthread_mutex_lock(&rec_mu);
	while (!*flag && now_ms() < until) {
		pthread_mutex_unlock(&rec_mu);
		sleep_ms(5);
		pthread_mutex_lock(&rec_mu);
	}
	bool ok = *flag;
	pthread_mutex_unlock(&rec_mu);
	return ok;
}

/* --- handlers --------------------------------------------------------------- */

static int reply_status(hs_rpc_call *call, ProtobufCMessage **resp, int status)
{
	Grpc__Health__V1__HealthCheckResponse *r = hs_rpc_call_alloc(call, sizeof(*r));
	grpc__health__v1__health_check_response__init(r);
	r->status = status;
	*resp = &r->base;
	return HS_OK;
}

static int h_check(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		   hs_error *err)
{
	const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
	const char *svc = r->service;
	if (strcmp(svc, "echo-md") == 0) {
		size_t len = 0;
		const char *v = hs_rpc_call_metadata(call, "x-test", &len);
		const char *peer = hs_rpc_call_peer(call);
		pthread_mutex_lock(&rec_mu);
		snprintf(rec.md_seen, sizeof(rec.md_seen), "%s:%zu", v ? v : "(null)", len);
		snprintf(rec.peer, sizeof(rec.peer), "%s", peer ? peer : "");
		snprintf(rec.method, sizeof(rec.method), "%s", hs_rpc_call_method(call));
		rec.payload_ok = hs_rpc_call_payload(call) == &rec.payload_marker;
		rec.inline_thread = pthread_self();
		pthread_mutex_unlock(&rec_mu);
		if (hs_rpc_call_metadata(call, "x-absent", NULL) != NULL)
			return hs_error_set(err, HS_INTERNAL, "absent key found");
		if (hs_rpc_call_add_initial_metadata(call, "x-echo", v ? v : "") != HS_OK ||
		    hs_rpc_call_add_trailing_metadata(call, "x-trail", "bye") != HS_OK)
			return hs_error_set(err, HS_INTERNAL, "metadata refused");
		return reply_status(call, resp, 1);
	}
	if (strcmp(svc, "bad-md") == 0) {
		pthread_mutex_lock(&rec_mu);
		rec.bad_md_rc[0] = hs_rpc_call_add_initial_metadata(call, "Bad Key", "v");
		rec.bad_md_rc[1] = hs_rpc_call_add_initial_metadata(call, "x-ok", "line\r\nbreak");
		rec.bad_md_rc[2] = hs_rpc_call_add_trailing_metadata(call, "", "v");
		/* gRPC refuses a batch with a non-ASCII text value: the call
		 * would never be answered (red team) */
		rec.bad_md_rc[4] = hs_rpc_call_add_trailing_metadata(call, "x-utf8", "caf\xc3\xa9");
		rec.bad_md_rc[5] = hs_rpc_call_add_initial_metadata(call, "x-raw-bin", "\xc3\xa9\x01");
		int rc = HS_OK;
		for (int i = 0; i < 8 && rc == HS_OK; i++)
			rc = hs_rpc_call_add_trailing_metadata(call, "x-many", "v");
		rec.bad_md_rc[3] = hs_rpc_call_add_trailing_metadata(call, "x-many", "v");
		pthread_mutex_unlock(&rec_mu);
		return reply_status(call, resp, 1);
	}
	if (strncmp(svc, "code:", 5) == 0) {
		int code = (int)strtol(svc + 5, NULL, 10);
		return hs_error_set(err, (hs_code)code, "handler says %d", code);
	}
	if (strcmp(svc, "noresp") == 0)
		return HS_OK;
	if (strcmp(svc, "wrongtype") == 0) {
		Harness__V1__User *u = hs_rpc_call_alloc(call, sizeof(*u));
		harness__v1__user__init(u);
		*resp = &u->base;
		return HS_OK;
	}
	return reply_status(call, resp, 1);
}

static void hold_done(hs_rpc_call *call, void *payload)
{
	(void)payload;
	Grpc__Health__V1__HealthCheckResponse m = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	int rc = hs_rpc_call_send(call, &m.base);
	pthread_mutex_lock(&rec_mu);
	rec.hold_done++;
	rec.hold_send_after_done = rc;
	pthread_mutex_unlock(&rec_mu);
	hs_rpc_call_unref(call);
}

static int h_watch(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
	Grpc__Health__V1__HealthCheckResponse m = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	if (strcmp(r->service, "many") == 0) {
		if (hs_rpc_call_add_initial_metadata(call, "x-stream", "yes") != HS_OK)
			return hs_error_set(err, HS_INTERNAL, "md");
		for (int i = 0; i < 5; i++) {
			m.status = i % 3;
			int rc = hs_rpc_call_send(call, &m.base);
			if (rc != HS_OK)
				return hs_error_set(err, HS_INTERNAL, "send %d failed: %d", i, rc);
		}
		/* too late for initial metadata now */
		if (hs_rpc_call_add_initial_metadata(call, "x-late", "no") != HS_CONFLICT)
			return hs_error_set(err, HS_INTERNAL, "late initial md accepted");
		hs_rpc_call_finish(call, HS_OK, NULL);
		hs_rpc_call_finish(call, HS_INTERNAL, "second finish must not count");
		if (hs_rpc_call_send(call, &m.base) != HS_CANCELLED)
			return hs_error_set(err, HS_INTERNAL, "send after finish accepted");
		return HS_OK;
	}
	if (strcmp(r->service, "hold") == 0) {
		hs_rpc_call_ref(call);
		hs_rpc_call_on_done(call, hold_done, NULL);
		m.status = 1;
		hs_rpc_call_send(call, &m.base);
		return HS_OK;
	}
	if (strcmp(r->service, "half-then-fail") == 0) {
		m.status = 2;
		hs_rpc_call_send(call, &m.base);
		return hs_error_set(err, HS_DENIED, "watch denied after one message");
	}
	return hs_error_set(err, HS_DENIED, "watch of %s denied", r->service);
}

static int h_login(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		   hs_error *err)
{
	const Harness__V1__LoginRequest *r = (const void *)req;
	int sleep_for = 0;
	bool interruptible = strncmp(r->email, "isleep:", 7) == 0;
	if (strncmp(r->email, "sleep:", 6) == 0 || interruptible)
		sleep_for = (int)strtol(strchr(r->email, ':') + 1, NULL, 10);
	pthread_mutex_lock(&rec_mu);
	rec.login_started++;
	rec.login_thread = pthread_self();
	rec.login_left_start = hs_rpc_call_deadline_left_ms(call);
	pthread_mutex_unlock(&rec_mu);
	double until = now_ms() + sleep_for;
	while (now_ms() < until) {
		if (interruptible && hs_rpc_call_cancelled(call))
			break;
		sleep_ms(5);
	}
	pthread_mutex_lock(&rec_mu);
	rec.login_cancelled = hs_rpc_call_cancelled(call);
	rec.login_left_end = hs_rpc_call_deadline_left_ms(call);
	rec.login_finished++;
	pthread_mutex_unlock(&rec_mu);
	if (strcmp(r->password, "fail") == 0)
		return hs_error_set(err, HS_UNAVAILABLE, "upstream down");
	Harness__V1__AuthResponse *out = hs_rpc_call_alloc(call, sizeof(*out));
	harness__v1__auth_response__init(out);
	out->token_type = hs_rpc_call_strdup(call, "Bearer");
	out->expires_in = sleep_for;
	*resp = &out->base;
	return HS_OK;
}

static int h_whoami(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		    hs_error *err)
{
	(void)req;
	(void)err;
	const hs_rpc_principal *p = hs_rpc_call_principal(call);
	pthread_mutex_lock(&rec_mu);
	snprintf(rec.principal_user, sizeof(rec.principal_user), "%s", p->user_id);
	rec.principal_admin = p->is_admin;
	rec.principal_auth = p->authenticated;
	pthread_mutex_unlock(&rec_mu);
	Harness__V1__User *u = hs_rpc_call_alloc(call, sizeof(*u));
	harness__v1__user__init(u);
	u->id = hs_rpc_call_strdup(call, p->user_id);
	u->role = hs_rpc_call_strdup(call, p->role);
	*resp = &u->base;
	return HS_OK;
}

static void late_done(hs_rpc_call *call, void *payload)
{
	(void)payload;
	pthread_mutex_lock(&rec_mu);
	rec.late_done++;
	pthread_mutex_unlock(&rec_mu);
	hs_rpc_call_unref(call);
}

static int h_watch_tasks(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	const Harness__V1__WatchTasksRequest *r = (const void *)req;
	if (strcmp(r->task_id, "flood") == 0) {
		hs_rpc_call_set_send_queue(call, 2);
		static char big[16384];
		memset(big, 'x', sizeof(big) - 1);
		Harness__V1__TaskEvent ev = HARNESS__V1__TASK_EVENT__INIT;
		ev.message = big;
		int rc = HS_OK, sent = 0;
		double until = now_ms() + 4000;
		while (rc == HS_OK && now_ms() < until) {
			ev.event_id = (uint64_t)sent;
			rc = hs_rpc_call_send(call, &ev.base);
			if (rc == HS_OK)
				sent++;
		}
		pthread_mutex_lock(&rec_mu);
		rec.flood_rc = rc;
		rec.flood_sent = sent;
		rec.flood_done = true;
		pthread_mutex_unlock(&rec_mu);
		return hs_error_set(err, HS_LIMIT, "client too slow");
	}
	if (strcmp(r->task_id, "late-done") == 0) {
		pthread_mutex_lock(&rec_mu);
		rec.late_started = true;
		pthread_mutex_unlock(&rec_mu);
		double until = now_ms() + 3000;
		while (!hs_rpc_call_cancelled(call) && now_ms() < until)
			sleep_ms(5);
		bool saw = hs_rpc_call_cancelled(call);
		/* A service registering a stream after the client already left:
		 * the contract says the callback still runs exactly once. */
		hs_rpc_call_ref(call);
		hs_rpc_call_on_done(call, late_done, NULL);
		pthread_mutex_lock(&rec_mu);
		rec.late_saw_cancel = saw;
		rec.late_call = call;
		rec.late_registered = true;
		pthread_mutex_unlock(&rec_mu);
		return HS_OK;
	}
	return hs_error_set(err, HS_INVALID, "unknown scenario");
}

/* HS_RPC_TRY_INLINE: "inline" answers on the CQ thread, "defer" asks for
 * the lane, "pending"/"pending-fail"/"pending-soon" answer later from
 * another thread. */
static _Atomic int gt_on_cq_runs, gt_worker_runs;

typedef struct later {
	hs_rpc_call *call;
	bool fail;
} later;

static void *complete_later(void *arg)
{
	later *l = arg;
	sleep_ms(50);
	Harness__V1__Task *t = hs_rpc_call_alloc(l->call, sizeof(*t));
	harness__v1__task__init(t);
	t->task_id = hs_rpc_call_strdup(l->call, "completed-later");
	hs_error e = { 0 };
	if (l->fail)
		hs_error_set(&e, HS_NOT_FOUND, "no such task (later)");
	hs_rpc_call_complete(l->call, l->fail ? HS_NOT_FOUND : HS_OK, l->fail ? NULL : &t->base,
			     &e);
	free(l);
	return NULL;
}

static int h_get_task(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		      hs_error *err)
{
	const Harness__V1__GetTaskRequest *r = (const void *)req;
	bool on_cq = hs_rpc_call_on_cq(call);
	atomic_fetch_add(on_cq ? &gt_on_cq_runs : &gt_worker_runs, 1);
	if (strcmp(r->task_id, "defer") == 0 && on_cq)
		return HS_RPC_DEFER;
	if (strncmp(r->task_id, "pending", 7) == 0) {
		later *l = calloc(1, sizeof(*l));
		l->call = call;
		l->fail = strcmp(r->task_id, "pending-fail") == 0;
		hs_rpc_call_ref(call);
		pthread_t tid;
		if (pthread_create(&tid, NULL, complete_later, l) != 0)
			return hs_error_set(err, HS_INTERNAL, "thread");
		pthread_detach(tid);
		return strcmp(r->task_id, "pending-soon") == 0 ? HS_RPC_PENDING_SOON : HS_RPC_PENDING;
	}
	Harness__V1__Task *t = hs_rpc_call_alloc(call, sizeof(*t));
	harness__v1__task__init(t);
	t->task_id = hs_rpc_call_strdup(call, on_cq ? "on-cq" : "on-worker");
	*resp = &t->base;
	return HS_OK;
}

static int h_refl(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	if (req == NULL) {
		pthread_mutex_lock(&rec_mu);
		rec.bidi_half_close++;
		pthread_mutex_unlock(&rec_mu);
		return HS_OK;
	}
	const Grpc__Reflection__V1__ServerReflectionRequest *r = (const void *)req;
	if (strcmp(r->host, "fail") == 0)
		return hs_error_set(err, HS_ABORTED, "bidi aborted on request");
	pthread_mutex_lock(&rec_mu);
	if (rec.bidi_msgs < 4)
		snprintf(rec.bidi_hosts[rec.bidi_msgs], sizeof(rec.bidi_hosts[0]), "%s", r->host);
	rec.bidi_msgs++;
	pthread_mutex_unlock(&rec_mu);
	Grpc__Reflection__V1__ServerReflectionResponse *resp = hs_rpc_call_alloc(call, sizeof(*resp));
	grpc__reflection__v1__server_reflection_response__init(resp);
	size_t n = strlen(r->host) + 8;
	resp->valid_host = hs_rpc_call_alloc(call, n);
	snprintf(resp->valid_host, n, "echo:%s", r->host);
	int rc = hs_rpc_call_send(call, &resp->base);
	return rc == HS_OK ? HS_OK : hs_error_set(err, rc, "send failed");
}

static int test_auth(hs_rpc_call *call, hs_rpc_principal *out, hs_error *err, void *payload)
{
	(void)payload;
	const char *a = hs_rpc_call_metadata(call, "authorization", NULL);
	if (a == NULL)
		return hs_error_set(err, HS_UNAUTH, "missing authorization");
	if (strcmp(a, "Bearer good") != 0)
		return hs_error_set(err, HS_UNAUTH, "invalid token");
	snprintf(out->user_id, sizeof(out->user_id), "user-7");
	snprintf(out->role, sizeof(out->role), "admin");
	out->is_admin = true;
	return HS_OK;
}

static const hs_rpc_handler health_handlers[] = {
	{ "Check", HS_RPC_UNARY, HS_RPC_PUBLIC, h_check, NULL },
	{ "Watch", HS_RPC_SERVER_STREAM, HS_RPC_PUBLIC, NULL, h_watch },
};
static const hs_rpc_handler auth_handlers[] = {
	{ "Login", HS_RPC_UNARY, HS_RPC_PUBLIC | HS_RPC_BLOCKING, h_login, NULL },
	{ "WhoAmI", HS_RPC_UNARY, 0, h_whoami, NULL },
};
static const hs_rpc_handler tasks_handlers[] = {
	{ "WatchTasks", HS_RPC_SERVER_STREAM, HS_RPC_PUBLIC | HS_RPC_BLOCKING, NULL, h_watch_tasks },
	{ "GetTask", HS_RPC_UNARY, HS_RPC_PUBLIC | HS_RPC_BLOCKING | HS_RPC_TRY_INLINE, h_get_task,
	  NULL },
};
static const hs_rpc_handler refl_handlers[] = {
	{ "ServerReflectionInfo", HS_RPC_BIDI_STREAM, HS_RPC_PUBLIC, NULL, h_refl },
};

/* --- servers ------------------------------------------------------------------ */

typedef struct fixture {
	hs_rpc_server *srv;
	grpc_channel *ch;
} fixture;

static int start_server(fixture *f, unsigned workers, unsigned worker_queue, bool with_auth)
{
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.listen = "127.0.0.1:0";
	cfg.workers = workers;
	cfg.worker_queue = worker_queue;
	cfg.max_message_bytes = 64 * 1024;
	hs_error err = { 0 };
	memset(f, 0, sizeof(*f));
	if (hs_rpc_server_new(&f->srv, &cfg, &err) != HS_OK) {
		fprintf(stderr, "server_new: %s\n", err.msg);
		return -1;
	}
	if (hs_rpc_server_add_service(f->srv, &grpc__health__v1__health__descriptor, health_handlers,
				      2, &rec.payload_marker, &err) != HS_OK ||
	    hs_rpc_server_add_service(f->srv, &harness__v1__auth_service__descriptor, auth_handlers,
				      2, NULL, &err) != HS_OK ||
	    hs_rpc_server_add_service(f->srv, &harness__v1__health_service__descriptor,
				      tasks_handlers, 2, NULL, &err) != HS_OK ||
	    hs_rpc_server_add_service(f->srv, &grpc__reflection__v1__server_reflection__descriptor,
				      refl_handlers, 1, NULL, &err) != HS_OK) {
		fprintf(stderr, "add_service: %s\n", err.msg);
		hs_rpc_server_free(f->srv);
		return -1;
	}
	if (with_auth)
		hs_rpc_server_set_authenticator(f->srv, test_auth, NULL);
	if (hs_rpc_server_start(f->srv, &err) != HS_OK) {
		fprintf(stderr, "start: %s\n", err.msg);
		hs_rpc_server_free(f->srv);
		return -1;
	}
	f->ch = tc_channel(hs_rpc_server_port(f->srv));
	return 0;
}

static void stop_server(fixture *f, int64_t grace_ms)
{
	if (f->srv != NULL) {
		hs_rpc_server_shutdown(f->srv, grace_ms);
		hs_rpc_server_free(f->srv);
	}
	if (f->ch != NULL)
		grpc_channel_destroy(f->ch);
	memset(f, 0, sizeof(*f));
}

static fixture main_srv;

static int group_setup(void **state)
{
	(void)state;
	rec_reset();
	return start_server(&main_srv, 4, 64, true);
}

static int group_teardown(void **state)
{
	(void)state;
	stop_server(&main_srv, 1000);
	return 0;
}

static int each_setup(void **state)
{
	(void)state;
	(void)pthread_mutex_unlock(&rec_mu); /* EPERM unless a failed test left it held */
	rec_reset();
	return 0;
}

/* Shorthands. */
static void check(const char *service, const char *const *md, size_t n_md, int deadline_ms,
		  tc_reply *out)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = (char *)service;
	tc_unary(main_srv.ch, M_CHECK, &req.base, NULL, 0, md, n_md, deadline_ms, CHECK_RESP, NULL,
		 out);
}

static void login(grpc_channel *ch, const char *email, const char *password, int deadline_ms,
		  tc_reply *out)
{
	Harness__V1__LoginRequest req = HARNESS__V1__LOGIN_REQUEST__INIT;
	req.email = (char *)email;
	req.password = (char *)password;
	tc_unary(ch, M_LOGIN, &req.base, NULL, 0, NULL, 0, deadline_ms,
		 &harness__v1__auth_response__descriptor, NULL, out);
}

/* A login call on its own thread. */
typedef struct bg_login {
	pthread_t tid;
	grpc_channel *ch;
	const char *email;
	int deadline_ms;
	tc_reply reply;
	double done_at;
} bg_login;

static void *bg_login_main(void *arg)
{
	bg_login *b = arg;
	login(b->ch, b->email, "", b->deadline_ms, &b->reply);
	b->done_at = now_ms();
	return NULL;
}

static void bg_start(bg_login *b, grpc_channel *ch, const char *email, int deadline_ms)
{
	memset(&b->reply, 0, sizeof(b->reply));
	b->ch = ch;
	b->email = email;
	b->deadline_ms = deadline_ms;
	pthread_create(&b->tid, NULL, bg_login_main, b);
}

static void bg_join(bg_login *b)
{
	pthread_join(b->tid, NULL);
}

/* --- unary ------------------------------------------------------------------- */

static void test_rpc_server__unary_ok_with_metadata(void **state)
{
	(void)state;
	const char *md[] = { "x-test", "hello-42" };
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = "echo-md";
	tc_reply r;
	tc_unary(main_srv.ch, M_CHECK, &req.base, NULL, 0, md, 1, 5000, CHECK_RESP, "x-echo", &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	assert_non_null(r.msg);
	assert_int_equal(((Grpc__Health__V1__HealthCheckResponse *)r.msg)->status, 1);
	assert_string_equal(r.init_md, "hello-42");
	tc_reply_dispose(&r);
	/* trailing metadata */
	tc_unary(main_srv.ch, M_CHECK, &req.base, NULL, 0, md, 1, 5000, CHECK_RESP, "x-trail", &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	assert_string_equal(r.trail_md, "bye");
	tc_reply_dispose(&r);
	pthread_mutex_lock(&rec_mu);
	assert_string_equal(rec.md_seen, "hello-42:8");
	assert_string_equal(rec.method, M_CHECK);
	assert_true(rec.payload_ok);
	assert_true(strncmp(rec.peer, "ipv4:127.0.0.1:", 15) == 0);
	pthread_mutex_unlock(&rec_mu);
}

/* Many callers at once on one method (more than RPC_ARM_MAX requests a
 * method keeps armed per queue): every call is answered, each with its own
 * x-request-id back (the server adds it from the call's own trace context,
 * which a recycled call must not mix up), a bad one replaced. */
#define BURST_THREADS 48
#define BURST_CALLS 20
typedef struct burst {
	pthread_t tid;
	int idx, ok, id_ok;
} burst;

static void *burst_main(void *arg)
{
	burst *b = arg;
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = "";
	for (int i = 0; i < BURST_CALLS; i++) {
		char id[64];
		snprintf(id, sizeof(id), "burst-%d-%d", b->idx, i);
		bool bad = i % 5 == 4; /* not a valid request id: replaced */
		const char *md[] = { "x-request-id", bad ? "no spaces allowed" : id };
		tc_reply r;
		tc_unary(main_srv.ch, M_CHECK, &req.base, NULL, 0, md, 1, 30000, CHECK_RESP,
			 "x-request-id", &r);
		if (r.status == GRPC_STATUS_OK && r.msg != NULL)
			b->ok++;
		if (bad ? strlen(r.init_md) == 32 && strspn(r.init_md, "0123456789abcdef") == 32
			: strcmp(r.init_md, id) == 0)
			b->id_ok++;
		tc_reply_dispose(&r);
	}
	return NULL;
}

static void test_rpc_server__burst_on_one_method(void **state)
{
	(void)state;
	burst *b = calloc(BURST_THREADS, sizeof(*b));
	assert_non_null(b);
	for (int i = 0; i < BURST_THREADS; i++) {
		b[i].idx = i;
		assert_int_equal(pthread_create(&b[i].tid, NULL, burst_main, &b[i]), 0);
	}
	int ok = 0, id_ok = 0;
	for (int i = 0; i < BURST_THREADS; i++) {
		pthread_join(b[i].tid, NULL);
		ok += b[i].ok;
		id_ok += b[i].id_ok;
	}
	free(b);
	assert_int_equal(ok, BURST_THREADS * BURST_CALLS);
	assert_int_equal(id_ok, BURST_THREADS * BURST_CALLS);
}

static void test_rpc_server__metadata_validation(void **state)
{
	(void)state;
	tc_reply r;
	check("bad-md", NULL, 0, 5000, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	pthread_mutex_lock(&rec_mu);
	assert_int_equal(rec.bad_md_rc[0], HS_INVALID); /* upper case and space in the key */
	assert_int_equal(rec.bad_md_rc[1], HS_INVALID); /* CR/LF in the value */
	assert_int_equal(rec.bad_md_rc[2], HS_INVALID); /* empty key */
	assert_int_equal(rec.bad_md_rc[3], HS_LIMIT);   /* more than 8 entries */
	assert_int_equal(rec.bad_md_rc[4], HS_INVALID); /* a non-ASCII text value */
	assert_int_equal(rec.bad_md_rc[5], HS_OK);      /* any byte in a -bin value */
	pthread_mutex_unlock(&rec_mu);
}

static void test_rpc_server__handler_error_maps_status(void **state)
{
	(void)state;
	static const struct {
		hs_code code;
		grpc_status_code grpc;
	} cases[] = {
		{ HS_INVALID, GRPC_STATUS_INVALID_ARGUMENT },
		{ HS_NOT_FOUND, GRPC_STATUS_NOT_FOUND },
		{ HS_EXISTS, GRPC_STATUS_ALREADY_EXISTS },
		{ HS_CONFLICT, GRPC_STATUS_FAILED_PRECONDITION },
		{ HS_DENIED, GRPC_STATUS_PERMISSION_DENIED },
		{ HS_UNAUTH, GRPC_STATUS_UNAUTHENTICATED },
		{ HS_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE },
		{ HS_TIMEOUT, GRPC_STATUS_DEADLINE_EXCEEDED },
		{ HS_LIMIT, GRPC_STATUS_RESOURCE_EXHAUSTED },
		{ HS_INTERNAL, GRPC_STATUS_INTERNAL },
		{ HS_ABORTED, GRPC_STATUS_ABORTED },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char svc[32], want[64];
		snprintf(svc, sizeof(svc), "code:%d", (int)cases[i].code);
		snprintf(want, sizeof(want), "handler says %d", (int)cases[i].code);
		tc_reply r;
		check(svc, NULL, 0, 5000, &r);
		assert_int_equal(r.status, cases[i].grpc);
		assert_string_equal(r.details, want);
		assert_null(r.msg);
		tc_reply_dispose(&r);
	}
}

static void test_rpc_server__handler_without_response_is_internal(void **state)
{
	(void)state;
	tc_reply r;
	check("noresp", NULL, 0, 5000, &r);
	assert_int_equal(r.status, GRPC_STATUS_INTERNAL);
	assert_non_null(strstr(r.details, "returned no response"));
	tc_reply_dispose(&r);
	check("wrongtype", NULL, 0, 5000, &r);
	assert_int_equal(r.status, GRPC_STATUS_INTERNAL);
	assert_non_null(strstr(r.details, "wrong message type"));
	tc_reply_dispose(&r);
}

static void test_rpc_server__malformed_payload_invalid_argument(void **state)
{
	(void)state;
	static const unsigned char junk[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	tc_reply r;
	tc_unary(main_srv.ch, M_CHECK, NULL, junk, sizeof(junk), NULL, 0, 5000, CHECK_RESP, NULL,
		 &r);
	assert_int_equal(r.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(r.details, "malformed"));
	assert_non_null(strstr(r.details, "HealthCheckRequest"));
	tc_reply_dispose(&r);
}

static void test_rpc_server__unknown_method_unimplemented_fast(void **state)
{
	(void)state;
	tc_reply r;
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	tc_unary(main_srv.ch, "/no.such.Service/Nope", &req.base, NULL, 0, NULL, 0, 5000,
		 CHECK_RESP, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_UNIMPLEMENTED);
	assert_non_null(strstr(r.details, "/no.such.Service/Nope"));
	/* UNIMPLEMENTED, not DEADLINE_EXCEEDED: answered, not left to the 5 s
	 * deadline (no bound on the elapsed time: that is load) */
	tc_reply_dispose(&r);
	/* a known service, unknown method */
	tc_unary(main_srv.ch, "/grpc.health.v1.Health/Nope", &req.base, NULL, 0, NULL, 0, 5000,
		 CHECK_RESP, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_UNIMPLEMENTED);
	tc_reply_dispose(&r);
}

static void test_rpc_server__method_without_handler_unimplemented(void **state)
{
	(void)state;
	Harness__V1__LogoutRequest req = HARNESS__V1__LOGOUT_REQUEST__INIT;
	tc_reply r;
	tc_unary(main_srv.ch, M_LOGOUT, &req.base, NULL, 0, NULL, 0, 5000,
		 &harness__v1__logout_response__descriptor, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_UNIMPLEMENTED);
	assert_non_null(strstr(r.details, "harness.v1.AuthService/Logout"));
	tc_reply_dispose(&r);
}

static void test_rpc_server__message_too_large_resource_exhausted(void **state)
{
	(void)state;
	char *big = malloc(100 * 1024);
	assert_non_null(big);
	memset(big, 'a', 100 * 1024 - 1);
	big[100 * 1024 - 1] = '\0';
	tc_reply r;
	check(big, NULL, 0, 5000, &r);
	free(big);
	assert_int_equal(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
	tc_reply_dispose(&r);
	/* the server is still fine */
	check("ok", NULL, 0, 5000, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
}

static void test_rpc_server__blocking_handler_runs_on_worker(void **state)
{
	(void)state;
	bg_login b;
	bg_start(&b, main_srv.ch, "sleep:300", 0);
	assert_true(rec_wait_int(&rec.login_started, 1, 30000));
	/* while the blocking handler sleeps, an inline call completes */
	tc_reply r;
	const char *md[] = { "x-test", "v" };
	check("echo-md", md, 1, 5000, &r);
	double check_done = now_ms();
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	bg_join(&b);
	assert_int_equal(b.reply.status, GRPC_STATUS_OK);
	assert_non_null(b.reply.msg);
	assert_string_equal(((Harness__V1__AuthResponse *)b.reply.msg)->token_type, "Bearer");
	tc_reply_dispose(&b.reply);
	assert_true(check_done < b.done_at);
	pthread_mutex_lock(&rec_mu);
	assert_false(pthread_equal(rec.login_thread, rec.inline_thread));
	assert_false(pthread_equal(rec.login_thread, pthread_self()));
	assert_true(rec.login_left_start == INT64_MAX); /* no deadline */
	assert_false(rec.login_cancelled);
	pthread_mutex_unlock(&rec_mu);
}

static void get_task(const char *id, tc_reply *out)
{
	Harness__V1__GetTaskRequest req = HARNESS__V1__GET_TASK_REQUEST__INIT;
	req.task_id = (char *)id;
	tc_unary(main_srv.ch, M_GETTASK, &req.base, NULL, 0, NULL, 0, 5000,
		 &harness__v1__task__descriptor, NULL, out);
}

/* HS_RPC_TRY_INLINE: answered on the CQ thread when the handler can; on
 * the lane when it defers; later, from another thread, when pending. */
static void test_rpc_server__try_inline_defer_and_pending(void **state)
{
	(void)state;
	atomic_store(&gt_on_cq_runs, 0);
	atomic_store(&gt_worker_runs, 0);
	tc_reply r;
	get_task("inline", &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	assert_string_equal(((Harness__V1__Task *)r.msg)->task_id, "on-cq");
	tc_reply_dispose(&r);
	assert_int_equal(atomic_load(&gt_worker_runs), 0);

	get_task("defer", &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	assert_string_equal(((Harness__V1__Task *)r.msg)->task_id, "on-worker");
	tc_reply_dispose(&r);
	assert_int_equal(atomic_load(&gt_on_cq_runs), 2);
	assert_int_equal(atomic_load(&gt_worker_runs), 1);

	get_task("pending", &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	assert_string_equal(((Harness__V1__Task *)r.msg)->task_id, "completed-later");
	tc_reply_dispose(&r);
	get_task("pending-fail", &r);
	assert_int_equal(r.status, GRPC_STATUS_NOT_FOUND);
	assert_string_equal(r.details, "no such task (later)");
	tc_reply_dispose(&r);
	/* HS_RPC_PENDING_SOON: no close batch of its own; the answer's final
	 * batch carries it. */
	get_task("pending-soon", &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	assert_string_equal(((Harness__V1__Task *)r.msg)->task_id, "completed-later");
	tc_reply_dispose(&r);
	assert_int_equal(atomic_load(&gt_worker_runs), 1);
}

/* A client that gives up while a HS_RPC_PENDING_SOON answer is on its way:
 * the late answer goes nowhere, the call is still released once (ASan:
 * nothing leaked or used after free), and the server goes on serving. */
static void test_rpc_server__pending_soon_after_the_client_left(void **state)
{
	(void)state;
	Harness__V1__GetTaskRequest req = HARNESS__V1__GET_TASK_REQUEST__INIT;
	req.task_id = "pending-soon";
	for (int i = 0; i < 4; i++) {
		tc_reply r;
		tc_unary(main_srv.ch, M_GETTASK, &req.base, NULL, 0, NULL, 0, 30,
			 &harness__v1__task__descriptor, NULL, &r);
		assert_int_equal(r.status, GRPC_STATUS_DEADLINE_EXCEEDED);
		tc_reply_dispose(&r);
	}
	sleep_ms(150); /* the late answers (50 ms) went out meanwhile */
	tc_reply r;
	get_task("pending-soon", &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	assert_string_equal(((Harness__V1__Task *)r.msg)->task_id, "completed-later");
	tc_reply_dispose(&r);
}

static void test_rpc_server__deadline_exceeded(void **state)
{
	(void)state;
	tc_reply r;
	/* 1 s: the handler starts well within it even on a loaded machine (it
	 * must, to see a positive deadline); the client's deadline ends the call
	 * client-side whatever the server does, so no bound on the elapsed time. */
	login(main_srv.ch, "isleep:5000", "", 1000, &r);
	assert_int_equal(r.status, GRPC_STATUS_DEADLINE_EXCEEDED);
	tc_reply_dispose(&r);
	/* the handler saw the deadline and the cancellation, and stopped early */
	assert_true(rec_wait_int(&rec.login_finished, 1, 30000));
	pthread_mutex_lock(&rec_mu);
	int64_t left_start = rec.login_left_start, left_end = rec.login_left_end;
	bool cancelled = rec.login_cancelled;
	pthread_mutex_unlock(&rec_mu); /* a failed assert must not leave it locked */
	/* the client's 1 s, as grpc-timeout carried it (rounded up to its units) */
	if (!(left_start > 0 && left_start <= 1100))
		fail_msg("deadline left at the start: %lld ms", (long long)left_start);
	/* The client's deadline fires first and cancels the call; the server's
	 * copy of the deadline (arrival + grpc-timeout) may be a few ms later. */
	assert_true(left_end <= 50);
	assert_true(cancelled);
}

static void test_rpc_server__handler_error_from_worker(void **state)
{
	(void)state;
	tc_reply r;
	login(main_srv.ch, "x", "fail", 5000, &r);
	assert_int_equal(r.status, GRPC_STATUS_UNAVAILABLE);
	assert_string_equal(r.details, "upstream down");
	tc_reply_dispose(&r);
}

/* --- authentication ----------------------------------------------------------- */

static void whoami(grpc_channel *ch, const char *authz, tc_reply *out)
{
	Harness__V1__WhoAmIRequest req = HARNESS__V1__WHO_AM_IREQUEST__INIT;
	const char *md[] = { "authorization", authz };
	tc_unary(ch, M_WHOAMI, &req.base, NULL, 0, md, authz ? 1 : 0, 5000,
		 &harness__v1__user__descriptor, NULL, out);
}

static void test_rpc_server__authenticator_sets_principal(void **state)
{
	(void)state;
	tc_reply r;
	whoami(main_srv.ch, "Bearer good", &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	assert_non_null(r.msg);
	assert_string_equal(((Harness__V1__User *)r.msg)->id, "user-7");
	assert_string_equal(((Harness__V1__User *)r.msg)->role, "admin");
	tc_reply_dispose(&r);
	pthread_mutex_lock(&rec_mu);
	assert_string_equal(rec.principal_user, "user-7");
	assert_true(rec.principal_admin);
	assert_true(rec.principal_auth);
	pthread_mutex_unlock(&rec_mu);
}

static void test_rpc_server__authenticator_rejects(void **state)
{
	(void)state;
	tc_reply r;
	whoami(main_srv.ch, "Bearer bad", &r);
	assert_int_equal(r.status, GRPC_STATUS_UNAUTHENTICATED);
	assert_string_equal(r.details, "invalid token");
	tc_reply_dispose(&r);
	whoami(main_srv.ch, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_UNAUTHENTICATED);
	assert_string_equal(r.details, "missing authorization");
	tc_reply_dispose(&r);
	pthread_mutex_lock(&rec_mu);
	assert_string_equal(rec.principal_user, ""); /* the handler never ran */
	pthread_mutex_unlock(&rec_mu);
}

static void test_rpc_server__no_authenticator_unauthenticated(void **state)
{
	(void)state;
	fixture f;
	assert_int_equal(start_server(&f, 1, 4, false), 0);
	tc_reply r;
	whoami(f.ch, "Bearer good", &r);
	assert_int_equal(r.status, GRPC_STATUS_UNAUTHENTICATED);
	tc_reply_dispose(&r);
	/* public methods need none */
	login(f.ch, "x", "", 5000, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	stop_server(&f, 1000);
}

/* --- server streams ------------------------------------------------------------- */

static void test_rpc_server__server_stream_messages_then_ok(void **state)
{
	(void)state;
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = "many";
	tc_stream s;
	assert_true(tc_stream_start(&s, main_srv.ch, M_WATCH, 5000, CHECK_RESP, &req.base, true));
	int n = 0;
	bool ok = true;
	ProtobufCMessage *m;
	while ((m = tc_stream_recv(&s, &ok)) != NULL) {
		assert_int_equal(((Grpc__Health__V1__HealthCheckResponse *)m)->status, n % 3);
		protobuf_c_message_free_unpacked(m, NULL);
		n++;
	}
	assert_true(ok);
	assert_int_equal(n, 5);
	bool found = false;
	for (size_t i = 0; i < s.init_md.count; i++)
		found |= grpc_slice_str_cmp(s.init_md.metadata[i].key, "x-stream") == 0;
	assert_true(found);
	char details[256];
	assert_int_equal(tc_stream_finish(&s, details, sizeof(details)), GRPC_STATUS_OK);
}

static void test_rpc_server__server_stream_handler_error(void **state)
{
	(void)state;
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = "nope";
	tc_stream s;
	assert_true(tc_stream_start(&s, main_srv.ch, M_WATCH, 5000, CHECK_RESP, &req.base, true));
	bool ok;
	assert_null(tc_stream_recv(&s, &ok));
	char details[256];
	assert_int_equal(tc_stream_finish(&s, details, sizeof(details)),
			 GRPC_STATUS_PERMISSION_DENIED);
	assert_string_equal(details, "watch of nope denied");

	/* an error after a message: the message arrives, then the status */
	req.service = "half-then-fail";
	assert_true(tc_stream_start(&s, main_srv.ch, M_WATCH, 5000, CHECK_RESP, &req.base, true));
	ProtobufCMessage *m = tc_stream_recv(&s, &ok);
	assert_non_null(m);
	protobuf_c_message_free_unpacked(m, NULL);
	assert_null(tc_stream_recv(&s, &ok));
	assert_int_equal(tc_stream_finish(&s, details, sizeof(details)),
			 GRPC_STATUS_PERMISSION_DENIED);
}

static void test_rpc_server__send_queue_limit(void **state)
{
	(void)state;
	Harness__V1__WatchTasksRequest req = HARNESS__V1__WATCH_TASKS_REQUEST__INIT;
	req.task_id = "flood";
	tc_stream s;
	assert_true(tc_stream_start(&s, main_srv.ch, M_WATCHTASKS, 60000,
				    &harness__v1__task_event__descriptor, &req.base, true));
	/* never read: the transport fills up, then the queue of 2 */
	bool done = rec_wait_bool(&rec.flood_done, 30000);
	tc_stream_cancel(&s);
	grpc_status_code st = tc_stream_finish(&s, NULL, 0);
	assert_true(done);
	assert_true(st == GRPC_STATUS_CANCELLED || st == GRPC_STATUS_RESOURCE_EXHAUSTED);
	pthread_mutex_lock(&rec_mu);
	assert_int_equal(rec.flood_rc, HS_LIMIT);
	assert_true(rec.flood_sent >= 3); /* one in flight + 2 queued at least */
	pthread_mutex_unlock(&rec_mu);
}

static void test_rpc_server__client_cancel_runs_on_done_once(void **state)
{
	(void)state;
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = "hold";
	tc_stream s;
	assert_true(tc_stream_start(&s, main_srv.ch, M_WATCH, 10000, CHECK_RESP, &req.base, true));
	bool ok;
	ProtobufCMessage *m = tc_stream_recv(&s, &ok);
	assert_non_null(m);
	protobuf_c_message_free_unpacked(m, NULL);
	tc_stream_cancel(&s);
	assert_int_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_CANCELLED);
	assert_true(rec_wait_int(&rec.hold_done, 1, 30000));
	sleep_ms(100);
	pthread_mutex_lock(&rec_mu);
	assert_int_equal(rec.hold_done, 1);
	assert_int_equal(rec.hold_send_after_done, HS_CANCELLED);
	pthread_mutex_unlock(&rec_mu);
}

/* hs_rpc_call_on_done() on a call whose client already left: rpc.h promises
 * the callback runs exactly once "when the call ends for any reason". */
static void test_rpc_server__on_done_registered_after_cancel_runs(void **state)
{
	(void)state;
	Harness__V1__WatchTasksRequest req = HARNESS__V1__WATCH_TASKS_REQUEST__INIT;
	req.task_id = "late-done";
	tc_stream s;
	assert_true(tc_stream_start(&s, main_srv.ch, M_WATCHTASKS, 10000,
				    &harness__v1__task_event__descriptor, &req.base, true));
	assert_true(rec_wait_bool(&rec.late_started, 30000));
	tc_stream_cancel(&s);
	tc_stream_finish(&s, NULL, 0);
	assert_true(rec_wait_bool(&rec.late_registered, 30000));
	bool ran = rec_wait_int(&rec.late_done, 1, 30000);
	pthread_mutex_lock(&rec_mu);
	bool saw_cancel = rec.late_saw_cancel;
	hs_rpc_call *leaked = ran ? NULL : rec.late_call;
	int n = rec.late_done;
	pthread_mutex_unlock(&rec_mu);
	if (leaked != NULL)
		hs_rpc_call_unref(leaked); /* drop the ref on_done never dropped */
	assert_true(saw_cancel);
	if (!ran)
		fail_msg("on_done registered after the client cancelled never ran: "
			 "the service's call reference leaks (shutdown would wait forever)");
	assert_int_equal(n, 1);
}

/* --- bidi ----------------------------------------------------------------------- */

static void test_rpc_server__bidi_echo(void **state)
{
	(void)state;
	tc_stream s;
	assert_true(tc_stream_start(&s, main_srv.ch, M_REFL, 5000,
				    &grpc__reflection__v1__server_reflection_response__descriptor,
				    NULL, false));
	for (int i = 0; i < 3; i++) {
		char host[16];
		snprintf(host, sizeof(host), "h%d", i);
		Grpc__Reflection__V1__ServerReflectionRequest req =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
		req.host = host;
		assert_true(tc_stream_send(&s, &req.base));
		bool ok;
		ProtobufCMessage *m = tc_stream_recv(&s, &ok);
		assert_non_null(m);
		char want[32];
		snprintf(want, sizeof(want), "echo:%s", host);
		assert_string_equal(
			((Grpc__Reflection__V1__ServerReflectionResponse *)m)->valid_host, want);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	pthread_mutex_lock(&rec_mu);
	assert_int_equal(rec.bidi_half_close, 0);
	pthread_mutex_unlock(&rec_mu);
	assert_true(tc_stream_close(&s));
	bool ok;
	assert_null(tc_stream_recv(&s, &ok));
	assert_int_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_OK);
	pthread_mutex_lock(&rec_mu);
	assert_int_equal(rec.bidi_msgs, 3);
	assert_int_equal(rec.bidi_half_close, 1);
	assert_string_equal(rec.bidi_hosts[0], "h0");
	assert_string_equal(rec.bidi_hosts[2], "h2");
	pthread_mutex_unlock(&rec_mu);
}

static void test_rpc_server__bidi_handler_error_ends_stream(void **state)
{
	(void)state;
	tc_stream s;
	assert_true(tc_stream_start(&s, main_srv.ch, M_REFL, 5000,
				    &grpc__reflection__v1__server_reflection_response__descriptor,
				    NULL, false));
	Grpc__Reflection__V1__ServerReflectionRequest req =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	req.host = "fail";
	tc_stream_send(&s, &req.base);
	bool ok;
	assert_null(tc_stream_recv(&s, &ok));
	char details[128];
	assert_int_equal(tc_stream_finish(&s, details, sizeof(details)), GRPC_STATUS_ABORTED);
	assert_string_equal(details, "bidi aborted on request");
}

static void test_rpc_server__bidi_malformed_message(void **state)
{
	(void)state;
	tc_stream s;
	assert_true(tc_stream_start(&s, main_srv.ch, M_REFL, 5000,
				    &grpc__reflection__v1__server_reflection_response__descriptor,
				    NULL, false));
	/* TaskEvent.event_id is field 1 as a varint; ServerReflectionRequest's
	 * field 1 (host) is a string: a wire-type mismatch, so unpack fails. */
	Harness__V1__TaskEvent junk = HARNESS__V1__TASK_EVENT__INIT;
	junk.event_id = 7;
	junk.task_id = "zz";
	tc_stream_send(&s, &junk.base);
	bool ok;
	assert_null(tc_stream_recv(&s, &ok));
	char details[128];
	assert_int_equal(tc_stream_finish(&s, details, sizeof(details)),
			 GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(details, "malformed"));
}

/* --- lifecycle ------------------------------------------------------------------ */

static void test_rpc_server__graceful_shutdown_waits_for_inflight(void **state)
{
	(void)state;
	fixture f;
	assert_int_equal(start_server(&f, 2, 8, true), 0);
	bg_login b;
	bg_start(&b, f.ch, "sleep:300", 60000);
	assert_true(rec_wait_int(&rec.login_started, 1, 30000));
	double t0 = now_ms();
	hs_rpc_server_shutdown(f.srv, 30000);
	double took = now_ms() - t0;
	/* It waited for the call (an order of events, not a duration) ... */
	pthread_mutex_lock(&rec_mu);
	int finished = rec.login_finished;
	bool cancelled = rec.login_cancelled;
	pthread_mutex_unlock(&rec_mu);
	assert_int_equal(finished, 1);
	assert_false(cancelled);
	bg_join(&b);
	assert_int_equal(b.reply.status, GRPC_STATUS_OK); /* finished, not cancelled */
	tc_reply_dispose(&b.reply);
	/* ... and no longer: not the whole 30 s grace */
	assert_true(took < 29000);
	/* no new calls once shut down */
	tc_reply r;
	login(f.ch, "x", "", 2000, &r);
	assert_int_equal(r.status, GRPC_STATUS_UNAVAILABLE);
	tc_reply_dispose(&r);
	hs_rpc_server_shutdown(f.srv, 5000); /* a second call is a no-op */
	stop_server(&f, 0);
}

typedef struct shut_arg {
	hs_rpc_server *srv;
	int64_t grace_ms;
	double took;
} shut_arg;

static void *shut_main(void *p)
{
	shut_arg *a = p;
	double t0 = now_ms();
	hs_rpc_server_shutdown(a->srv, a->grace_ms);
	a->took = now_ms() - t0;
	return NULL;
}

static void test_rpc_server__new_call_during_shutdown_refused(void **state)
{
	(void)state;
	fixture f;
	assert_int_equal(start_server(&f, 2, 8, true), 0);
	tc_reply r;
	login(f.ch, "x", "", 2000, &r); /* connected */
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	bg_login b;
	bg_start(&b, f.ch, "sleep:500", 60000);
	assert_true(rec_wait_int(&rec.login_started, 2, 30000));
	shut_arg sa = { f.srv, 30000, 0 };
	pthread_t tid;
	pthread_create(&tid, NULL, shut_main, &sa);
	/* Once the shutdown has begun (when depends on the load: ask until
	 * then), a new call is refused. A call that races its start may still
	 * be answered, or be cancelled, or (gRPC core: a stream that arrived as
	 * the server stopped taking calls) be left unanswered until the grace
	 * is over; such a call also holds the shutdown until then. */
	int st = GRPC_STATUS_OK;
	bool raced = false;
	for (int i = 0; i < 3000 && st != GRPC_STATUS_UNAVAILABLE; i++) {
		login(f.ch, "x", "", 1000, &r);
		st = r.status;
		tc_reply_dispose(&r);
		if (st != GRPC_STATUS_OK && st != GRPC_STATUS_UNAVAILABLE) {
			assert_true(st == GRPC_STATUS_CANCELLED || st == GRPC_STATUS_DEADLINE_EXCEEDED);
			raced = true;
		}
		if (st != GRPC_STATUS_UNAVAILABLE)
			sleep_ms(10);
	}
	assert_int_equal(st, GRPC_STATUS_UNAVAILABLE);
	bg_join(&b);
	pthread_join(tid, NULL);
	assert_int_equal(b.reply.status, GRPC_STATUS_OK);
	tc_reply_dispose(&b.reply);
	if (!raced)
		assert_true(sa.took < 29000); /* not the whole 30 s grace */
	stop_server(&f, 0);
}

static void test_rpc_server__short_grace_cancels_inflight(void **state)
{
	(void)state;
	fixture f;
	assert_int_equal(start_server(&f, 2, 8, true), 0);
	bg_login b;
	bg_start(&b, f.ch, "isleep:30000", 60000);
	assert_true(rec_wait_int(&rec.login_started, 1, 30000));
	double t0 = now_ms();
	hs_rpc_server_shutdown(f.srv, 100);
	double took = now_ms() - t0;
	bg_join(&b);
	assert_true(b.reply.status == GRPC_STATUS_CANCELLED ||
		    b.reply.status == GRPC_STATUS_UNAVAILABLE);
	tc_reply_dispose(&b.reply);
	assert_true(took < 29000); /* did not wait out the 30 s handler */
	pthread_mutex_lock(&rec_mu);
	assert_true(rec.login_cancelled);
	pthread_mutex_unlock(&rec_mu);
	stop_server(&f, 0);
}

static void test_rpc_server__worker_queue_full_busy(void **state)
{
	(void)state;
	fixture f;
	assert_int_equal(start_server(&f, 1, 1, true), 0);
	bg_login a, b;
	bg_start(&a, f.ch, "sleep:400", 5000);
	assert_true(rec_wait_int(&rec.login_started, 1, 30000)); /* the only worker is busy */
	bg_start(&b, f.ch, "sleep:0", 5000);
	sleep_ms(150); /* b waits in the queue of 1 */
	tc_reply r;
	login(f.ch, "sleep:0", "", 5000, &r);
	assert_int_equal(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(r.details, "server busy"));
	tc_reply_dispose(&r);
	bg_join(&a);
	bg_join(&b);
	assert_int_equal(a.reply.status, GRPC_STATUS_OK);
	assert_int_equal(b.reply.status, GRPC_STATUS_OK);
	tc_reply_dispose(&a.reply);
	tc_reply_dispose(&b.reply);
	stop_server(&f, 1000);
}

static void test_rpc_server__config_out_of_range(void **state)
{
	(void)state;
	hs_rpc_server *srv = NULL;
	hs_error err = { 0 };
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.listen = "127.0.0.1:0";
	cfg.workers = 0;
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, &err), HS_INVALID);
	assert_null(srv);
	cfg.workers = 1;
	cfg.max_message_bytes = 0;
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, NULL), HS_INVALID);
	assert_null(srv);
}

static void test_rpc_server__registration_errors(void **state)
{
	(void)state;
	hs_rpc_server *srv = NULL;
	hs_error err = { 0 };
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.listen = "127.0.0.1:0";
	cfg.workers = 1;
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, &err), HS_OK);
	assert_true(hs_rpc_server_port(srv) > 0);
	static const hs_rpc_handler typo[] = {
		{ "Chek", HS_RPC_UNARY, 0, h_check, NULL },
	};
	assert_int_equal(hs_rpc_server_add_service(srv, &grpc__health__v1__health__descriptor,
						   typo, 1, NULL, &err),
			 HS_INVALID);
	assert_non_null(strstr(err.msg, "Chek"));
	static const hs_rpc_handler missing[] = {
		{ "Check", HS_RPC_UNARY, 0, NULL, h_watch },
	};
	hs_error_clear(&err);
	assert_int_equal(hs_rpc_server_add_service(srv, &grpc__health__v1__health__descriptor,
						   missing, 1, NULL, &err),
			 HS_INVALID);
	assert_int_equal(hs_rpc_server_add_service(srv, &grpc__health__v1__health__descriptor,
						   health_handlers, 2, NULL, &err),
			 HS_OK);
	const char *const *names;
	assert_int_equal(hs_rpc_server_services(srv, &names), 1);
	assert_string_equal(names[0], "grpc.health.v1.Health");
	assert_int_equal(hs_rpc_server_start(srv, &err), HS_OK);
	hs_error_clear(&err);
	assert_int_equal(hs_rpc_server_add_service(srv, &harness__v1__auth_service__descriptor,
						   auth_handlers, 2, NULL, &err),
			 HS_CONFLICT);
	hs_rpc_server_free(srv); /* free without an explicit shutdown */
	hs_rpc_server_free(NULL);
}

/* Scenarios that may abort() run in a child process (this executable
 * re-run with --child NAME), so a crash fails one test, not all of them. */
static int child_port_in_use(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sin);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 1) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
		return 2;
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sin.sin_port));
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.listen = addr;
	cfg.workers = 1;
	hs_rpc_server *srv = NULL;
	hs_error err = { 0 };
	int rc = hs_rpc_server_new(&srv, &cfg, &err);
	close(fd);
	if (rc != HS_UNAVAILABLE || srv != NULL || strstr(err.msg, addr) == NULL) {
		fprintf(stderr, "port in use: rc %d msg '%s'\n", rc, err.msg);
		return 1;
	}
	return 0;
}

static int child_free_without_start(void)
{
	hs_rpc_server *srv = NULL;
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.listen = "127.0.0.1:0";
	cfg.workers = 1;
	if (hs_rpc_server_new(&srv, &cfg, NULL) != HS_OK)
		return 1;
	if (hs_rpc_server_add_service(srv, &grpc__health__v1__health__descriptor, health_handlers,
				      2, NULL, NULL) != HS_OK)
		return 1;
	hs_rpc_server_shutdown(srv, 100); /* not started: a no-op */
	hs_rpc_server_free(srv);
	return 0;
}

static void expect_child_ok(const char *name)
{
	char *argv[] = { "test_rpc_server", "--child", (char *)name, NULL };
	pid_t pid;
	assert_int_equal(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ), 0);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFSIGNALED(st))
		fail_msg("%s: the process died of signal %d (gRPC's 'ShutdownCalled() || "
			 "listeners_.empty()' assertion: grpc_server_destroy without shutdown)",
			 name, WTERMSIG(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* The port is taken: a clean HS_UNAVAILABLE, not a crash. */
static void test_rpc_server__port_in_use_unavailable(void **state)
{
	(void)state;
	expect_child_ok("port-in-use");
}

/* hs_rpc_server_new() then hs_rpc_server_free() without start (main()
 * failing to register a service, say) must not crash. */
static void test_rpc_server__free_without_start(void **state)
{
	(void)state;
	expect_child_ok("free-without-start");
}

int main(int argc, char **argv)
{
	if (getenv("HS_TEST_LOG") == NULL) {
		int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (devnull >= 0)
			hs_log_set_fd(devnull); /* the "rpc finished" lines still get formatted */
	}
	if (argc == 3 && strcmp(argv[1], "--child") == 0) {
		int rc = 3;
		if (strcmp(argv[2], "port-in-use") == 0)
			rc = child_port_in_use();
		else if (strcmp(argv[2], "free-without-start") == 0)
			rc = child_free_without_start();
		return rc;
	}
	grpc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_rpc_server__unary_ok_with_metadata, each_setup),
		cmocka_unit_test_setup(test_rpc_server__burst_on_one_method, each_setup),
		cmocka_unit_test_setup(test_rpc_server__metadata_validation, each_setup),
		cmocka_unit_test_setup(test_rpc_server__handler_error_maps_status, each_setup),
		cmocka_unit_test_setup(test_rpc_server__handler_without_response_is_internal, each_setup),
		cmocka_unit_test_setup(test_rpc_server__malformed_payload_invalid_argument, each_setup),
		cmocka_unit_test_setup(test_rpc_server__unknown_method_unimplemented_fast, each_setup),
		cmocka_unit_test_setup(test_rpc_server__method_without_handler_unimplemented, each_setup),
		cmocka_unit_test_setup(test_rpc_server__message_too_large_resource_exhausted, each_setup),
		cmocka_unit_test_setup(test_rpc_server__blocking_handler_runs_on_worker, each_setup),
		cmocka_unit_test_setup(test_rpc_server__try_inline_defer_and_pending, each_setup),
		cmocka_unit_test_setup(test_rpc_server__pending_soon_after_the_client_left, each_setup),
		cmocka_unit_test_setup(test_rpc_server__deadline_exceeded, each_setup),
		cmocka_unit_test_setup(test_rpc_server__handler_error_from_worker, each_setup),
		cmocka_unit_test_setup(test_rpc_server__authenticator_sets_principal, each_setup),
		cmocka_unit_test_setup(test_rpc_server__authenticator_rejects, each_setup),
		cmocka_unit_test_setup(test_rpc_server__no_authenticator_unauthenticated, each_setup),
		cmocka_unit_test_setup(test_rpc_server__server_stream_messages_then_ok, each_setup),
		cmocka_unit_test_setup(test_rpc_server__server_stream_handler_error, each_setup),
		cmocka_unit_test_setup(test_rpc_server__send_queue_limit, each_setup),
		cmocka_unit_test_setup(test_rpc_server__client_cancel_runs_on_done_once, each_setup),
		cmocka_unit_test_setup(test_rpc_server__on_done_registered_after_cancel_runs, each_setup),
		cmocka_unit_test_setup(test_rpc_server__bidi_echo, each_setup),
		cmocka_unit_test_setup(test_rpc_server__bidi_handler_error_ends_stream, each_setup),
		cmocka_unit_test_setup(test_rpc_server__bidi_malformed_message, each_setup),
		cmocka_unit_test_setup(test_rpc_server__graceful_shutdown_waits_for_inflight, each_setup),
		cmocka_unit_test_setup(test_rpc_server__new_call_during_shutdown_refused, each_setup),
		cmocka_unit_test_setup(test_rpc_server__short_grace_cancels_inflight, each_setup),
		cmocka_unit_test_setup(test_rpc_server__worker_queue_full_busy, each_setup),
		cmocka_unit_test_setup(test_rpc_server__config_out_of_range, each_setup),
		cmocka_unit_test_setup(test_rpc_server__registration_errors, each_setup),
		cmocka_unit_test_setup(test_rpc_server__port_in_use_unavailable, each_setup),
		cmocka_unit_test_setup(test_rpc_server__free_without_start, each_setup),
	};
	int failed = cmocka_run_group_tests_name("rpc_server", tests, group_setup, group_teardown);
	grpc_shutdown_blocking();
	return failed;
}
