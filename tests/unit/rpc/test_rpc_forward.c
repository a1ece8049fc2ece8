/* Forwarding (server/rpc/forward.c, forward_stream.c): real hs_rpc_servers
 * on loopback. The "front" server (node_id "node-b") answers every call
 * with HS_UNAVAILABLE and err->where = the "owner" server's address; the
 * owner answers itself and records the metadata it saw. A third server
 * answers like the front but its methods lack HS_RPC_FORWARD.
 *
 *   grpc.health.v1.Health/Check   unary: forwarded (or not)
 *   grpc.health.v1.Health/Watch   server stream: forwarded; the owner's
 *     answer by service name: "fail" an error, "many" 300 messages
 *     (status i % 4) from a producer, "follow" one message then open until
 *     cancelled, anything else 3 messages
 *   grpc.reflection.v1.ServerReflection/ServerReflectionInfo   bidi:
 *     forwarded; the owner echoes each request's host as valid_host
 *     ("quiet..." hosts: counted, no answer) */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpc/grpc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "log.h"
#include "rpc.h"

#define M_CHECK "/grpc.health.v1.Health/Check"
#define M_WATCH "/grpc.health.v1.Health/Watch"
#define M_INFO "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
#define MANY 300
#define MAX_STREAMS 3 /* --user-max-streams of every server here */

typedef Grpc__Health__V1__HealthCheckRequest CheckReq;
typedef Grpc__Health__V1__HealthCheckResponse CheckResp;
typedef Grpc__Reflection__V1__ServerReflectionRequest InfoReq;
typedef Grpc__Reflection__V1__ServerReflectionResponse InfoResp;
static const ProtobufCMessageDescriptor *const INFO_RESP =
	&grpc__reflection__v1__server_reflection_response__descriptor;
static const ProtobufCMessageDescriptor *const CHECK_RESP =
	&grpc__health__v1__health_check_response__descriptor;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	int calls; /* calls the owner answered (each stream once) */
	int follow_open, follow_done; /* "follow" streams open at the owner, ended */
	int quiet; /* bidi messages the owner took without answering */
	char authorization[128], forwarded_by[64], request_id[128];
	int64_t deadline_left_ms;
} seen;
static char where[64]; /* what the front server names as the owner */

static void copy_md(hs_rpc_call *call, const char *key, char *buf, size_t cap)
{
	const char *v = hs_rpc_call_metadata(call, key, NULL);
	snprintf(buf, cap, "%s", v != NULL ? v : "");
}

/* The owner: "fail" -> FAILED_PRECONDITION with a reason; anything else
 * SERVING. Records what it saw. */
static void record(hs_rpc_call *call)
{
	pthread_mutex_lock(&mu);
	seen.calls++;
	copy_md(call, "authorization", seen.authorization, sizeof(seen.authorization));
	copy_md(call, "harness-forwarded-by", seen.forwarded_by, sizeof(seen.forwarded_by));
	copy_md(call, "x-request-id", seen.request_id, sizeof(seen.request_id));
	seen.deadline_left_ms = hs_rpc_call_deadline_left_ms(call);
	pthread_mutex_unlock(&mu);
}

static int owner_check(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       hs_error *err)
{
	const CheckReq *r = (const CheckReq *)req;
	record(call);
	if (strcmp(r->service, "fail") == 0) {
		int rc = hs_error_set(err, HS_CONFLICT, "owner: object is busy");
		hs_error_set_reason(err, "OWNER_SAYS");
		return rc;
	}
	CheckResp *out = hs_rpc_call_alloc(call, sizeof(*out));
	if (out == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	grpc__health__v1__health_check_response__init(out);
	out->status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	*resp = &out->base;
	return HS_OK;
}

/* "many": MANY messages, status i % 4, as fast as the reader takes them. */
static void produce(hs_rpc_call *call, void *payload)
{
	int *next = payload;
	CheckResp m = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	for (; *next < MANY; (*next)++) {
		m.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)(*next % 4);
		int rc = hs_rpc_call_send(call, &m.base);
		if (rc == HS_LIMIT) {
			(void)hs_rpc_call_when_writable(call, produce, payload);
			return;
		}
		if (rc != HS_OK)
			return;
	}
	hs_rpc_call_finish(call, HS_OK, NULL);
}

static void follow_done(hs_rpc_call *call, void *payload)
{
	(void)payload;
	pthread_mutex_lock(&mu);
	seen.follow_open--;
	seen.follow_done++;
	pthread_mutex_unlock(&mu);
	hs_rpc_call_unref(call);
}

static int owner_watch(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	const CheckReq *r = (const CheckReq *)req;
	record(call);
	CheckResp m = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	m.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	if (strcmp(r->service, "fail") == 0) {
		int rc = hs_error_set(err, HS_CONFLICT, "owner: stream refused");
		hs_error_set_reason(err, "OWNER_SAYS");
		return rc;
	}
	if (strcmp(r->service, "many") == 0) {
		int *next = hs_rpc_call_alloc(call, sizeof(*next));
		if (next == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		hs_rpc_call_set_send_queue(call, 4);
		produce(call, next);
		return HS_OK;
	}
	if (strcmp(r->service, "follow") == 0) {
		/* Counted open before its message goes out: a caller that got
		 * the message sees it open until follow_done. */
		hs_rpc_call_ref(call); /* follow_done's */
		pthread_mutex_lock(&mu);
		seen.follow_open++;
		pthread_mutex_unlock(&mu);
		hs_rpc_call_on_done(call, follow_done, NULL);
		(void)hs_rpc_call_send(call, &m.base);
		return HS_OK;
	}
	for (int i = 0; i < 3; i++)
		(void)hs_rpc_call_send(call, &m.base);
	hs_rpc_call_finish(call, HS_OK, NULL);
	return HS_OK;
}

/* Bidi: each request's host comes back as valid_host; the half-close ends
 * the call with OK (the core does). */
static int owner_info(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	(void)err;
	if (req == NULL)
		return HS_OK;
	const InfoReq *r = (const InfoReq *)req;
	if (strcmp(r->host, "first") == 0)
		record(call);
	if (strncmp(r->host, "quiet", 5) == 0) { /* no answer (not even metadata) */
		pthread_mutex_lock(&mu);
		seen.quiet++;
		pthread_mutex_unlock(&mu);
		return HS_OK;
	}
	InfoResp m = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
	m.valid_host = r->host;
	(void)hs_rpc_call_send(call, &m.base);
	return HS_OK;
}

static int elsewhere(hs_error *err)
{
	int rc = hs_error_set(err, HS_UNAVAILABLE, "object runs on node a (%s)", where);
	hs_error_set_reason(err, "ELSEWHERE");
	hs_error_set_where(err, where);
	return rc;
}

static int front_check(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       hs_error *err)
{
	(void)call, (void)req, (void)resp;
	return elsewhere(err);
}

static int front_stream(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	(void)call;
	if (req == NULL) /* a bidi client half-closed before its first message */
		return HS_OK;
	return elsewhere(err);
}

static hs_rpc_server *start(const char *node_id, bool front, unsigned fwd)
{
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.listen = "127.0.0.1:0";
	cfg.node_id = node_id;
	cfg.workers = 4; /* a user's share 2: one forward at a time */
	cfg.long_workers = 1;
	cfg.liveness_workers = 1;
	cfg.user_max_streams = MAX_STREAMS;
	hs_error err = { 0 };
	hs_rpc_server *srv = NULL;
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, &err), HS_OK);
	const hs_rpc_handler h[] = {
		{ "Check", HS_RPC_UNARY, HS_RPC_BLOCKING | HS_RPC_PUBLIC | fwd,
		  front ? front_check : owner_check, NULL },
		{ "Watch", HS_RPC_SERVER_STREAM, HS_RPC_BLOCKING | HS_RPC_PUBLIC | fwd, NULL,
		  front ? front_stream : owner_watch },
	};
	const hs_rpc_handler info[] = {
		{ "ServerReflectionInfo", HS_RPC_BIDI_STREAM, HS_RPC_BLOCKING | HS_RPC_PUBLIC | fwd,
		  NULL, front ? front_stream : owner_info },
	};
	assert_int_equal(hs_rpc_server_add_service(srv, &grpc__health__v1__health__descriptor, h,
						   2, NULL, &err),
			 HS_OK);
	assert_int_equal(hs_rpc_server_add_service(
				 srv, &grpc__reflection__v1__server_reflection__descriptor, info,
				 1, NULL, &err),
			 HS_OK);
	assert_int_equal(hs_rpc_server_start(srv, &err), HS_OK);
	return srv;
}

static hs_rpc_server *owner, *front, *unflagged;
static grpc_channel *ch, *ch_unflagged;

static int group_setup(void **state)
{
	(void)state;
	owner = start("node-a", false, 0);
	front = start("node-b", true, HS_RPC_FORWARD);
	unflagged = start("node-c", true, 0); /* Check without HS_RPC_FORWARD */
	ch = tc_channel(hs_rpc_server_port(front));
	ch_unflagged = tc_channel(hs_rpc_server_port(unflagged));
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	grpc_channel_destroy(ch);
	grpc_channel_destroy(ch_unflagged);
	hs_rpc_server_shutdown(unflagged, 1000);
	hs_rpc_server_free(unflagged);
	hs_rpc_server_shutdown(front, 1000);
	hs_rpc_server_free(front);
	hs_rpc_server_shutdown(owner, 1000);
	hs_rpc_server_free(owner);
	return 0;
}

static int each_setup(void **state)
{
	(void)state;
	pthread_mutex_lock(&mu);
	memset(&seen, 0, sizeof(seen));
	pthread_mutex_unlock(&mu);
	snprintf(where, sizeof(where), "127.0.0.1:%d", hs_rpc_server_port(owner));
	return 0;
}

static int owner_calls(void)
{
	pthread_mutex_lock(&mu);
	int n = seen.calls;
	pthread_mutex_unlock(&mu);
	return n;
}

static void check(const char *service, const char *const *md, size_t n_md, int deadline_ms,
		  const char *md_key, tc_reply *out)
{
	CheckReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = (char *)service;
	tc_unary(ch, M_CHECK, &req.base, NULL, 0, md, n_md, deadline_ms, CHECK_RESP, md_key, out);
	assert_false(out->timed_out);
}

/* The owner answers, and sees the caller's credential, the request id and
 * the marker; the forward carries the caller's deadline (never longer). */
static void test_rpc_forward__unary_answered_by_owner(void **state)
{
	(void)state;
	const char *md[] = { "authorization", "Bearer tok-1", "x-request-id", "req-fwd-1" };
	tc_reply r;
	check("ok", md, 2, 20000, "x-request-id", &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	assert_non_null(r.msg);
	assert_int_equal(((CheckResp *)r.msg)->status,
			 GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	tc_reply_dispose(&r);
	pthread_mutex_lock(&mu);
	assert_int_equal(seen.calls, 1);
	assert_string_equal(seen.authorization, "Bearer tok-1");
	assert_string_equal(seen.forwarded_by, "node-b");
	assert_string_equal(seen.request_id, "req-fwd-1");
	/* The caller's deadline (grpc-timeout is sent rounded up). */
	assert_true(seen.deadline_left_ms > 0 && seen.deadline_left_ms <= 21000);
	pthread_mutex_unlock(&mu);
}

/* The owner's error comes back as it gave it: code, message, reason. */
static void test_rpc_forward__owner_error_relayed(void **state)
{
	(void)state;
	const char *md[] = { "authorization", "Bearer tok-1" };
	tc_reply r;
	check("fail", md, 1, 20000, HS_ERROR_REASON_KEY, &r);
	assert_int_equal(r.status, GRPC_STATUS_FAILED_PRECONDITION);
	assert_string_equal(r.details, "owner: object is busy");
	assert_string_equal(r.trail_md, "OWNER_SAYS");
	tc_reply_dispose(&r);
	assert_int_equal(owner_calls(), 1);
}

/* No authorization (a client-certificate identity cannot be forwarded):
 * the UNAVAILABLE stands, with the address as trailing metadata. */
static void test_rpc_forward__without_authorization_not_forwarded(void **state)
{
	(void)state;
	tc_reply r;
	check("ok", NULL, 0, 20000, HS_ERROR_WHERE_KEY, &r);
	assert_int_equal(r.status, GRPC_STATUS_UNAVAILABLE);
	assert_string_equal(r.trail_md, where);
	assert_non_null(strstr(r.details, "runs on node a"));
	tc_reply_dispose(&r);
	assert_int_equal(owner_calls(), 0);
}

/* The loop guard: a call already forwarded is never forwarded again. */
static void test_rpc_forward__forwarded_call_not_forwarded_again(void **state)
{
	(void)state;
	const char *md[] = { "authorization", "Bearer tok-1", "harness-forwarded-by", "node-c" };
	tc_reply r;
	check("ok", md, 2, 20000, HS_ERROR_WHERE_KEY, &r);
	assert_int_equal(r.status, GRPC_STATUS_UNAVAILABLE);
	assert_string_equal(r.trail_md, where);
	tc_reply_dispose(&r);
	assert_int_equal(owner_calls(), 0);
}

/* A method not flagged HS_RPC_FORWARD answers with the address only. */
static void test_rpc_forward__unflagged_method_not_forwarded(void **state)
{
	(void)state;
	const char *md[] = { "authorization", "Bearer tok-1" };
	CheckReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = (char *)"ok";
	tc_reply r;
	tc_unary(ch_unflagged, M_CHECK, &req.base, NULL, 0, md, 1, 20000, CHECK_RESP,
		 HS_ERROR_WHERE_KEY, &r);
	assert_false(r.timed_out);
	assert_int_equal(r.status, GRPC_STATUS_UNAVAILABLE);
	assert_string_equal(r.trail_md, where);
	tc_reply_dispose(&r);
	assert_int_equal(owner_calls(), 0);
}

/* A port nobody listens on (bound, never listened: refused). */
static int dead_port(int *fd_out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*fd_out = fd;
	return ntohs(a.sin_port);
}

/* The owner is down: UNAVAILABLE naming where it went in words, not a
 * deadline, and without harness-node-address (the call may have reached
 * the owner: a client must not send it again on its own). */
static void test_rpc_forward__owner_down_unavailable(void **state)
{
	(void)state;
	int fd;
	snprintf(where, sizeof(where), "127.0.0.1:%d", dead_port(&fd));
	const char *md[] = { "authorization", "Bearer tok-1" };
	tc_reply r;
	check("ok", md, 1, 30000, HS_ERROR_WHERE_KEY, &r);
	close(fd);
	assert_int_equal(r.status, GRPC_STATUS_UNAVAILABLE);
	char want[96];
	snprintf(want, sizeof(want), "forward to %s: ", where);
	assert_non_null(strstr(r.details, want));
	assert_string_equal(r.trail_md, "");
	tc_reply_dispose(&r);
}

/* A stream without authorization is not forwarded either: the status
 * names the address. */
static void test_rpc_forward__stream_names_address(void **state)
{
	(void)state;
	CheckReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = (char *)"ok";
	tc_stream s;
	assert_true(tc_stream_start(&s, ch, M_WATCH, 20000, CHECK_RESP, &req.base, true));
	bool ok = true;
	assert_null(tc_stream_recv(&s, &ok));
	char details[256], got[64];
	grpc_status_code st = tc_stream_finish_md(&s, details, sizeof(details), HS_ERROR_WHERE_KEY,
						  got, sizeof(got));
	assert_int_equal(st, GRPC_STATUS_UNAVAILABLE);
	assert_non_null(strstr(details, "runs on node a"));
	assert_string_equal(got, where);
	assert_int_equal(owner_calls(), 0);
}

/* Two nodes each holding the other's objects, callers at both at once:
 * every call either reaches the owner or is told where to go at once;
 * none waits for its deadline because the workers of both nodes were all
 * forwarding to each other (found by review: 16 of 16 calls timed out). */
static char cross_x[64], cross_y[64];

static int cross_check(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       hs_error *err)
{
	(void)req;
	if (hs_rpc_call_metadata(call, "harness-forwarded-by", NULL) == NULL) {
		int rc = hs_error_set(err, HS_UNAVAILABLE, "the object is on the other node");
		hs_error_set_where(err, hs_rpc_call_payload(call) == (void *)1 ? cross_y : cross_x);
		return rc;
	}
	usleep(20000);
	CheckResp *out = hs_rpc_call_alloc(call, sizeof(*out));
	if (out == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	grpc__health__v1__health_check_response__init(out);
	out->status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	*resp = &out->base;
	return HS_OK;
}

static hs_rpc_server *cross_start(const char *node_id, void *payload)
{
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.listen = "127.0.0.1:0";
	cfg.node_id = node_id;
	cfg.workers = 4;
	hs_error err = { 0 };
	hs_rpc_server *srv = NULL;
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, &err), HS_OK);
	const hs_rpc_handler h[] = {
		{ "Check", HS_RPC_UNARY, HS_RPC_BLOCKING | HS_RPC_PUBLIC | HS_RPC_FORWARD, cross_check,
		  NULL },
	};
	assert_int_equal(hs_rpc_server_add_service(srv, &grpc__health__v1__health__descriptor, h, 1,
						   payload, &err),
			 HS_OK);
	assert_int_equal(hs_rpc_server_start(srv, &err), HS_OK);
	return srv;
}

typedef struct cross_job {
	grpc_channel *ch;
	tc_reply r;
} cross_job;

static void *cross_one(void *p)
{
	cross_job *j = p;
	CheckReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = "x";
	const char *md[] = { "authorization", "Bearer tok-1" };
	/* The deadline only bounds a failure: a wedged pair would hold it all. */
	tc_unary(j->ch, M_CHECK, &req.base, NULL, 0, md, 1, 30000, CHECK_RESP, NULL, &j->r);
	return NULL;
}

static void test_rpc_forward__two_nodes_forwarding_to_each_other_do_not_wedge(void **state)
{
	(void)state;
	hs_rpc_server *x = cross_start("node-x", (void *)1); /* X's objects are on Y */
	hs_rpc_server *y = cross_start("node-y", (void *)2); /* Y's objects are on X */
	snprintf(cross_x, sizeof(cross_x), "127.0.0.1:%d", hs_rpc_server_port(x));
	snprintf(cross_y, sizeof(cross_y), "127.0.0.1:%d", hs_rpc_server_port(y));
	grpc_channel *cx = tc_channel(hs_rpc_server_port(x)), *cy = tc_channel(hs_rpc_server_port(y));
	enum { N = 8 };
	cross_job jobs[2 * N];
	pthread_t th[2 * N];
	memset(jobs, 0, sizeof(jobs));
	for (int i = 0; i < 2 * N; i++) {
		jobs[i].ch = i % 2 ? cy : cx;
		assert_int_equal(pthread_create(&th[i], NULL, cross_one, &jobs[i]), 0);
	}
	int ok = 0;
	for (int i = 0; i < 2 * N; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		if (jobs[i].r.status != GRPC_STATUS_OK && jobs[i].r.status != GRPC_STATUS_UNAVAILABLE)
			fail_msg("call %d: status %d (%s)", i, jobs[i].r.status, jobs[i].r.details);
		ok += jobs[i].r.status == GRPC_STATUS_OK;
		tc_reply_dispose(&jobs[i].r);
	}
	assert_true(ok >= 1); /* forwarding still works under the bound */
	grpc_channel_destroy(cx);
	grpc_channel_destroy(cy);
	hs_rpc_server_shutdown(x, 2000);
	hs_rpc_server_shutdown(y, 2000);
	hs_rpc_server_free(x);
	hs_rpc_server_free(y);
}

/* Per-user forward bounds and the channel cache: a front (node-f) that
 * names, for each call, the address in the request's service field (or
 * the gate owner when it is empty), and an owner (node-g) that holds
 * user-a's calls until the gate opens. Callers are users by their token
 * ("Bearer user-a"). Both have 8 main-lane workers: 4 per user, so 2
 * forwards per user and 4 in all. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int gate_held, gate_done;
static char gate_owner[64];

static int user_auth(hs_rpc_call *call, hs_rpc_principal *out, hs_error *err, void *payload)
{
	(void)payload;
	const char *a = hs_rpc_call_metadata(call, "authorization", NULL);
	if (a == NULL || strncmp(a, "Bearer ", 7) != 0)
		return hs_error_set(err, HS_UNAUTH, "no token");
	out->authenticated = true;
	snprintf(out->user_id, sizeof(out->user_id), "%s", a + 7);
	return HS_OK;
}

static int gate_check(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		      hs_error *err)
{
	const CheckReq *r = (const CheckReq *)req;
	if (hs_rpc_call_payload(call) == (void *)1) { /* the front */
		int rc = hs_error_set(err, HS_UNAVAILABLE, "the object is on another node");
		hs_error_set_where(err, r->service[0] != '\0' ? r->service : gate_owner);
		return rc;
	}
	if (strcmp(hs_rpc_call_principal(call)->user_id, "user-a") == 0) {
		pthread_mutex_lock(&gate_mu);
		gate_held++;
		while (!gate_open)
			pthread_cond_wait(&gate_cv, &gate_mu);
		gate_held--;
		pthread_mutex_unlock(&gate_mu);
	}
	CheckResp *out = hs_rpc_call_alloc(call, sizeof(*out));
	if (out == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	grpc__health__v1__health_check_response__init(out);
	out->status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	*resp = &out->base;
	return HS_OK;
}

static hs_rpc_server *gate_start(const char *node_id, void *payload)
{
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.listen = "127.0.0.1:0";
	cfg.node_id = node_id;
	cfg.workers = 8;
	hs_error err = { 0 };
	hs_rpc_server *srv = NULL;
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, &err), HS_OK);
	hs_rpc_server_set_authenticator(srv, user_auth, NULL);
	const hs_rpc_handler h[] = {
		{ "Check", HS_RPC_UNARY, HS_RPC_BLOCKING | HS_RPC_FORWARD, gate_check, NULL },
	};
	assert_int_equal(hs_rpc_server_add_service(srv, &grpc__health__v1__health__descriptor, h, 1,
						   payload, &err),
			 HS_OK);
	assert_int_equal(hs_rpc_server_start(srv, &err), HS_OK);
	return srv;
}

typedef struct gate_job {
	grpc_channel *ch;
	const char *token, *service;
	tc_reply r;
} gate_job;

static void gate_call(gate_job *j)
{
	CheckReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = (char *)(j->service != NULL ? j->service : "");
	const char *md[] = { "authorization", j->token };
	tc_unary(j->ch, M_CHECK, &req.base, NULL, 0, md, 1, 30000, CHECK_RESP, HS_ERROR_WHERE_KEY,
		 &j->r);
}

static void *gate_one(void *p)
{
	gate_call(p);
	pthread_mutex_lock(&gate_mu);
	gate_done++;
	pthread_mutex_unlock(&gate_mu);
	return NULL;
}

static void gate_reset(void)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = false;
	gate_held = gate_done = 0;
	pthread_mutex_unlock(&gate_mu);
}

/* Polls (up to 20 s) until held calls wait at the owner and done calls
 * came back; asserts on what the poll saw. */
static void gate_wait(int held, int done)
{
	int h = -1, d = -1;
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&gate_mu);
		h = gate_held;
		d = gate_done;
		pthread_mutex_unlock(&gate_mu);
		if (h == held && d == done)
			break;
		usleep(10000);
	}
	assert_int_equal(h, held);
	assert_int_equal(d, done);
}

static void gate_release(void)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = true;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

/* One user's burst takes its own forward slots only (2 of the lane's 4):
 * the rest of the burst is told where to go at once, and another user is
 * still forwarded while the burst holds its slots. With one bound for
 * the whole lane (2), user-b was answered UNAVAILABLE here. */
static void test_rpc_forward__one_users_burst_leaves_slots_for_others(void **state)
{
	(void)state;
	gate_reset();
	hs_rpc_server *g = gate_start("node-g", (void *)2);
	hs_rpc_server *f = gate_start("node-f", (void *)1);
	snprintf(gate_owner, sizeof(gate_owner), "127.0.0.1:%d", hs_rpc_server_port(g));
	grpc_channel *cf = tc_channel(hs_rpc_server_port(f));
	enum { N = 4 };
	gate_job jobs[N];
	pthread_t th[N];
	memset(jobs, 0, sizeof(jobs));
	for (int i = 0; i < N; i++) {
		jobs[i].ch = cf;
		jobs[i].token = "Bearer user-a";
		assert_int_equal(pthread_create(&th[i], NULL, gate_one, &jobs[i]), 0);
	}
	gate_wait(2, 2); /* two forwarded and held at the owner, two told where to go */

	gate_job b = { .ch = cf, .token = "Bearer user-b" };
	gate_call(&b);
	assert_int_equal(b.r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&b.r);

	gate_release();
	int ok = 0, redirected = 0;
	for (int i = 0; i < N; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		if (jobs[i].r.status == GRPC_STATUS_OK) {
			ok++;
		} else {
			assert_int_equal(jobs[i].r.status, GRPC_STATUS_UNAVAILABLE);
			assert_string_equal(jobs[i].r.trail_md, gate_owner);
			redirected++;
		}
		tc_reply_dispose(&jobs[i].r);
	}
	assert_int_equal(ok, 2);
	assert_int_equal(redirected, 2);
	grpc_channel_destroy(cf);
	hs_rpc_server_shutdown(f, 2000);
	hs_rpc_server_shutdown(g, 2000);
	hs_rpc_server_free(f);
	hs_rpc_server_free(g);
}

/* The channel cache holds 32 addresses: forwards to 40 others evict the
 * owner's channel while a forward on it is in flight; that forward still
 * completes (the channel is reference-counted: destroyed when it is done,
 * not under it), and a later forward to the owner makes a new one. */
static void test_rpc_forward__channel_evicted_while_in_use(void **state)
{
	(void)state;
	gate_reset();
	hs_rpc_server *g = gate_start("node-g", (void *)2);
	hs_rpc_server *f = gate_start("node-f", (void *)1);
	snprintf(gate_owner, sizeof(gate_owner), "127.0.0.1:%d", hs_rpc_server_port(g));
	grpc_channel *cf = tc_channel(hs_rpc_server_port(f));
	gate_job held = { .ch = cf, .token = "Bearer user-a" };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, gate_one, &held), 0);
	gate_wait(1, 0);

	/* 40 addresses where nothing listens (ports bound, then closed) */
	enum { N = 40 };
	char addrs[N][32];
	int fds[N];
	for (int i = 0; i < N; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t sl = sizeof(sa);
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fds[i] >= 0);
		assert_int_equal(bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(getsockname(fds[i], (struct sockaddr *)&sa, &sl), 0);
		snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d", ntohs(sa.sin_port));
	}
	for (int i = 0; i < N; i++)
		close(fds[i]);
	for (int i = 0; i < N; i++) {
		gate_job j = { .ch = cf, .token = "Bearer user-b", .service = addrs[i] };
		gate_call(&j);
		assert_false(j.r.timed_out);
		assert_int_equal(j.r.status, GRPC_STATUS_UNAVAILABLE);
		tc_reply_dispose(&j.r);
	}
	gate_release();
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(held.r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&held.r);
	gate_job again = { .ch = cf, .token = "Bearer user-b" };
	gate_call(&again);
	assert_int_equal(again.r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&again.r);
	grpc_channel_destroy(cf);
	hs_rpc_server_shutdown(f, 2000);
	hs_rpc_server_shutdown(g, 2000);
	hs_rpc_server_free(f);
	hs_rpc_server_free(g);
}

static const char *const AUTH_MD[] = { "authorization", "Bearer tok-1", "x-request-id",
				       "req-fwd-2" };

static void watch_start(tc_stream *s, const char *service, const char *const *md, size_t n_md)
{
	CheckReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = (char *)service;
	assert_true(tc_stream_start_md(s, ch, M_WATCH, 30000, CHECK_RESP, &req.base, true, md,
				       n_md));
}

/* Receives messages until the end; returns how many (each freed). */
static int drain(tc_stream *s)
{
	int n = 0;
	bool ok = true;
	ProtobufCMessage *m;
	while ((m = tc_stream_recv(s, &ok)) != NULL) {
		protobuf_c_message_free_unpacked(m, NULL);
		n++;
	}
	assert_true(ok);
	return n;
}

/* Polls (up to 20 s) until the owner has no "follow" stream open; returns
 * how many ended in all. */
static int follows_ended(void)
{
	int open = -1, done = 0;
	for (int i = 0; i < 2000 && open != 0; i++) {
		pthread_mutex_lock(&mu);
		open = seen.follow_open;
		done = seen.follow_done;
		pthread_mutex_unlock(&mu);
		if (open != 0)
			usleep(10000);
	}
	assert_int_equal(open, 0);
	return done;
}

/* A server stream sent to the wrong node is answered by the owner: every
 * message, then its OK; the owner saw the caller's credential, request id
 * and the marker. */
static void test_rpc_forward__stream_relayed_from_owner(void **state)
{
	(void)state;
	tc_stream s;
	watch_start(&s, "three", AUTH_MD, 2);
	assert_int_equal(drain(&s), 3);
	assert_int_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_OK);
	pthread_mutex_lock(&mu);
	assert_int_equal(seen.calls, 1);
	assert_string_equal(seen.authorization, "Bearer tok-1");
	assert_string_equal(seen.forwarded_by, "node-b");
	assert_string_equal(seen.request_id, "req-fwd-2");
	/* The caller's deadline, not none (grpc-timeout is sent rounded up). */
	assert_true(seen.deadline_left_ms > 0 && seen.deadline_left_ms <= 31000);
	pthread_mutex_unlock(&mu);
}

/* Many messages from a producer held back by its small send queue (the
 * relay reads one at a time): all arrive, in order. */
static void test_rpc_forward__stream_many_in_order(void **state)
{
	(void)state;
	tc_stream s;
	watch_start(&s, "many", AUTH_MD, 1);
	int n = 0;
	bool ok = true;
	ProtobufCMessage *m;
	while ((m = tc_stream_recv(&s, &ok)) != NULL) {
		assert_int_equal((int)((CheckResp *)m)->status, n % 4);
		protobuf_c_message_free_unpacked(m, NULL);
		n++;
	}
	assert_true(ok);
	assert_int_equal(n, MANY);
	assert_int_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_OK);
}

/* The owner's error ends the stream as it gave it: code, message, reason. */
static void test_rpc_forward__stream_owner_error_relayed(void **state)
{
	(void)state;
	tc_stream s;
	watch_start(&s, "fail", AUTH_MD, 1);
	assert_int_equal(drain(&s), 0);
	char details[256], reason[64];
	assert_int_equal(tc_stream_finish_md(&s, details, sizeof(details), HS_ERROR_REASON_KEY,
					     reason, sizeof(reason)),
			 GRPC_STATUS_FAILED_PRECONDITION);
	assert_string_equal(details, "owner: stream refused");
	assert_string_equal(reason, "OWNER_SAYS");
	assert_int_equal(owner_calls(), 1);
}

/* The caller cancelling a relayed stream ends the owner's stream. */
static void test_rpc_forward__stream_cancel_ends_upstream(void **state)
{
	(void)state;
	tc_stream s;
	watch_start(&s, "follow", AUTH_MD, 1);
	bool ok = true;
	ProtobufCMessage *m = tc_stream_recv(&s, &ok);
	assert_non_null(m);
	protobuf_c_message_free_unpacked(m, NULL);
	pthread_mutex_lock(&mu);
	assert_int_equal(seen.follow_open, 1);
	pthread_mutex_unlock(&mu);
	tc_stream_cancel(&s);
	assert_int_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_CANCELLED);
	assert_int_equal(follows_ended(), 1);
}

/* Relayed streams count in the caller's open streams at the first node:
 * one past --user-max-streams is refused there, never reaching the owner. */
static void test_rpc_forward__stream_limit_at_first_node(void **state)
{
	(void)state;
	tc_stream s[MAX_STREAMS + 1];
	for (int i = 0; i < MAX_STREAMS; i++) {
		watch_start(&s[i], "follow", AUTH_MD, 1);
		bool ok = true;
		ProtobufCMessage *m = tc_stream_recv(&s[i], &ok);
		assert_non_null(m);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	watch_start(&s[MAX_STREAMS], "follow", AUTH_MD, 1);
	assert_int_equal(drain(&s[MAX_STREAMS]), 0);
	char details[256];
	assert_int_equal(tc_stream_finish(&s[MAX_STREAMS], details, sizeof(details)),
			 GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(details, "too many open streams"));
	assert_int_equal(owner_calls(), MAX_STREAMS);
	for (int i = 0; i < MAX_STREAMS; i++) {
		tc_stream_cancel(&s[i]);
		(void)tc_stream_finish(&s[i], NULL, 0);
	}
	assert_int_equal(follows_ended(), MAX_STREAMS);
}

/* The loop guard holds for streams: a forwarded stream is not sent on. */
static void test_rpc_forward__stream_forwarded_not_forwarded_again(void **state)
{
	(void)state;
	const char *md[] = { "authorization", "Bearer tok-1", "harness-forwarded-by", "node-c" };
	tc_stream s;
	watch_start(&s, "three", md, 2);
	assert_int_equal(drain(&s), 0);
	char got[64];
	assert_int_equal(tc_stream_finish_md(&s, NULL, 0, HS_ERROR_WHERE_KEY, got, sizeof(got)),
			 GRPC_STATUS_UNAVAILABLE);
	assert_string_equal(got, where);
	assert_int_equal(owner_calls(), 0);
}

/* The owner is down: UNAVAILABLE naming where the stream went in words,
 * without harness-node-address (an exec may have started there). */
static void test_rpc_forward__stream_owner_down_unavailable(void **state)
{
	(void)state;
	int fd;
	snprintf(where, sizeof(where), "127.0.0.1:%d", dead_port(&fd));
	tc_stream s;
	watch_start(&s, "three", AUTH_MD, 1);
	assert_int_equal(drain(&s), 0);
	char details[256], got[64];
	grpc_status_code st = tc_stream_finish_md(&s, details, sizeof(details), HS_ERROR_WHERE_KEY,
						  got, sizeof(got));
	close(fd);
	assert_int_equal(st, GRPC_STATUS_UNAVAILABLE);
	char want[96];
	snprintf(want, sizeof(want), "forward to %s: ", where);
	assert_non_null(strstr(details, want));
	assert_string_equal(got, "");
}

/* The first node shutting down ends a relayed stream (it does not wait
 * for the owner) and with it the owner's stream. */
static void test_rpc_forward__stream_ends_at_shutdown(void **state)
{
	(void)state;
	hs_rpc_server *front2 = start("node-d", true, HS_RPC_FORWARD);
	grpc_channel *ch2 = tc_channel(hs_rpc_server_port(front2));
	CheckReq req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = (char *)"follow";
	tc_stream s;
	assert_true(tc_stream_start_md(&s, ch2, M_WATCH, 30000, CHECK_RESP, &req.base, true,
				       AUTH_MD, 1));
	bool ok = true;
	ProtobufCMessage *m = tc_stream_recv(&s, &ok);
	assert_non_null(m);
	protobuf_c_message_free_unpacked(m, NULL);
	hs_rpc_server_shutdown(front2, 1000);
	assert_int_not_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_OK);
	hs_rpc_server_free(front2);
	grpc_channel_destroy(ch2);
	assert_int_equal(follows_ended(), 1);
}

static void info_send(tc_stream *s, const char *host)
{
	InfoReq r = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	r.host = (char *)host;
	r.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
	r.list_services = (char *)"";
	assert_true(tc_stream_send(s, &r.base));
}

static void info_expect(tc_stream *s, const char *host)
{
	bool ok = true;
	InfoResp *m = (InfoResp *)tc_stream_recv(s, &ok);
	assert_non_null(m);
	assert_string_equal(m->valid_host, host);
	protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* A bidi stream sent to the wrong node: the first message and every later
 * one reach the owner, its answers come back in turn, the client's
 * half-close ends the owner's call and its OK comes back. */
static void test_rpc_forward__bidi_relayed(void **state)
{
	(void)state;
	tc_stream s;
	assert_true(tc_stream_start_md(&s, ch, M_INFO, 30000, INFO_RESP, NULL, false, AUTH_MD, 1));
	info_send(&s, "first");
	info_expect(&s, "first");
	info_send(&s, "second");
	info_expect(&s, "second");
	info_send(&s, "third");
	info_expect(&s, "third");
	assert_true(tc_stream_close(&s));
	assert_int_equal(drain(&s), 0);
	assert_int_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_OK);
	pthread_mutex_lock(&mu);
	assert_int_equal(seen.calls, 1);
	assert_string_equal(seen.forwarded_by, "node-b");
	assert_string_equal(seen.authorization, "Bearer tok-1");
	pthread_mutex_unlock(&mu);
}

/* A bidi owner that answers nothing (sends no metadata) until the client
 * is done, like an exec of `cat`: every message still reaches it, then the
 * half-close, then its OK comes back. */
static void test_rpc_forward__bidi_owner_quiet_until_half_close(void **state)
{
	(void)state;
	tc_stream s;
	assert_true(tc_stream_start_md(&s, ch, M_INFO, 30000, INFO_RESP, NULL, false, AUTH_MD, 1));
	info_send(&s, "quiet-1");
	info_send(&s, "quiet-2");
	info_send(&s, "quiet-3");
	assert_true(tc_stream_close(&s));
	assert_int_equal(drain(&s), 0);
	assert_int_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_OK);
	pthread_mutex_lock(&mu);
	int quiet = seen.quiet;
	pthread_mutex_unlock(&mu);
	assert_int_equal(quiet, 3);
}

int main(void)
{
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull >= 0 && getenv("HS_TEST_LOG") == NULL)
		hs_log_set_fd(devnull);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_rpc_forward__unary_answered_by_owner, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__owner_error_relayed, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__without_authorization_not_forwarded,
				       each_setup),
		cmocka_unit_test_setup(test_rpc_forward__forwarded_call_not_forwarded_again,
				       each_setup),
		cmocka_unit_test_setup(test_rpc_forward__unflagged_method_not_forwarded, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__owner_down_unavailable, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__stream_names_address, each_setup),
		cmocka_unit_test(test_rpc_forward__two_nodes_forwarding_to_each_other_do_not_wedge),
		cmocka_unit_test(test_rpc_forward__one_users_burst_leaves_slots_for_others),
		cmocka_unit_test(test_rpc_forward__channel_evicted_while_in_use),
		cmocka_unit_test_setup(test_rpc_forward__stream_relayed_from_owner, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__stream_many_in_order, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__stream_owner_error_relayed, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__stream_cancel_ends_upstream, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__stream_limit_at_first_node, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__stream_forwarded_not_forwarded_again,
				       each_setup),
		cmocka_unit_test_setup(test_rpc_forward__stream_owner_down_unavailable, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__bidi_relayed, each_setup),
		cmocka_unit_test_setup(test_rpc_forward__bidi_owner_quiet_until_half_close,
				       each_setup),
		cmocka_unit_test_setup(test_rpc_forward__stream_ends_at_shutdown, each_setup),
	};
	int failed = cmocka_run_group_tests_name("rpc_forward", tests, group_setup, group_teardown);
	if (devnull >= 0)
		close(devnull);
	return failed;
}
