/* In-process tests of the RPC core's limits and fairness (server/rpc):
 * worker lanes, per-user bounds, streams driven by write completions,
 * and requests that must not crash the decoder. A real hs_rpc_server on
 * 127.0.0.1:0 serving test handlers on existing service descriptors, called
 * over loopback with the gRPC C core client.
 *
 *   AuthService/WhoAmI        BLOCKING (main lane): sleeps x-sleep ms, counts per user
 *   AuthService/GetUser       LONG: sleeps x-sleep ms
 *   AuthService/Login         PUBLIC | BLOCKING (anonymous)
 *   HealthService/Heartbeat   LIVENESS
 *   HealthService/WatchTasks  server stream (BLOCKING, PUBLIC): a producer that
 *                             must not drop, continued by hs_rpc_call_when_writable
 *   CheckpointService/CreateCheckpoint  BLOCKING: the recursive request type
 *
 * No assertion on elapsed time: each test checks an order of events
 * ("B answered while A was still running"), with generous timeouts only to
 * keep a broken build from hanging. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "grpc/health/v1/health.pb-c.h"
#include "harness/v1/auth.pb-c.h"
#include "harness/v1/checkpoint.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "log.h"
#include "rpc.h"
#include "wire.h"

#define M_WHOAMI "/harness.v1.AuthService/WhoAmI"
#define M_GETUSER "/harness.v1.AuthService/GetUser"
#define M_LOGIN "/harness.v1.AuthService/Login"
#define M_HEARTBEAT "/harness.v1.HealthService/Heartbeat"
#define M_WATCH "/harness.v1.HealthService/WatchTasks"
#define M_CREATE "/harness.v1.CheckpointService/CreateCheckpoint"
#define M_CHECK "/grpc.health.v1.Health/Check"

#define MAX_USERS 4

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

static pthread_mutex_t rec_mu = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

static struct rec {
	/* per user ("a", "b", ...): started, finished, running now, max running */
	int started[MAX_USERS], finished[MAX_USERS], running[MAX_USERS], max_running[MAX_USERS];
	int long_started, long_finished, beats, logins, creates;
	/* the stream producer */
	int produced, produce_calls, produce_after_done, stream_done;
} rec;

static void rec_reset(void)
{
	pthread_mutex_lock(&rec_mu);
	memset(&rec, 0, sizeof(rec));
	pthread_mutex_unlock(&rec_mu);
}

static int rec_get(const int *v)
{
	pthread_mutex_lock(&rec_mu);
	int x = *v;
	pthread_mutex_unlock(&rec_mu);
	return x;
}

/* Waits (up to ms, to keep a broken build from hanging) until *v >= want. */
static bool rec_wait(const int *v, int want, int ms)
{
	double until = now_ms() + ms;
	while (rec_get(v) < want && now_ms() < until)
		sleep_ms(2);
	return rec_get(v) >= want;
}

static int user_index(const hs_rpc_call *call)
{
	const char *u = hs_rpc_call_principal(call)->user_id;
	int i = u[0] - 'a';
	return i >= 0 && i < MAX_USERS ? i : MAX_USERS - 1;
}

static int sleep_of(hs_rpc_call *call)
{
	const char *v = hs_rpc_call_metadata(call, "x-sleep", NULL);
	return v != NULL ? (int)strtol(v, NULL, 10) : 0;
}

/* --- handlers --------------------------------------------------------------- */

static int user_reply(hs_rpc_call *call, ProtobufCMessage **resp)
{
	Harness__V1__User *u = hs_rpc_call_alloc(call, sizeof(*u));
	harness__v1__user__init(u);
	u->id = hs_rpc_call_strdup(call, hs_rpc_call_principal(call)->user_id);
	*resp = &u->base;
	return HS_OK;
}

static int h_whoami(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		    hs_error *err)
{
	(void)req;
	(void)err;
	int u = user_index(call);
	pthread_mutex_lock(&rec_mu);
	rec.started[u]++;
	if (++rec.running[u] > rec.max_running[u])
		rec.max_running[u] = rec.running[u];
	pthread_mutex_unlock(&rec_mu);
	sleep_ms(sleep_of(call));
	pthread_mutex_lock(&rec_mu);
	rec.running[u]--;
	rec.finished[u]++;
	pthread_mutex_unlock(&rec_mu);
	return user_reply(call, resp);
}

static int h_getuser(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		     hs_error *err)
{
	(void)req;
	(void)err;
	pthread_mutex_lock(&rec_mu);
	rec.long_started++;
	pthread_mutex_unlock(&rec_mu);
	sleep_ms(sleep_of(call));
	pthread_mutex_lock(&rec_mu);
	rec.long_finished++;
	pthread_mutex_unlock(&rec_mu);
	return user_reply(call, resp);
}

static int h_login(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		   hs_error *err)
{
	(void)req;
	(void)err;
	pthread_mutex_lock(&rec_mu);
	rec.logins++;
	pthread_mutex_unlock(&rec_mu);
	Harness__V1__AuthResponse *out = hs_rpc_call_alloc(call, sizeof(*out));
	harness__v1__auth_response__init(out);
	*resp = &out->base;
	return HS_OK;
}

static int h_heartbeat(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       hs_error *err)
{
	(void)req;
	(void)err;
	pthread_mutex_lock(&rec_mu);
	rec.beats++;
	pthread_mutex_unlock(&rec_mu);
	Harness__V1__HeartbeatResponse *out = hs_rpc_call_alloc(call, sizeof(*out));
	harness__v1__heartbeat_response__init(out);
	*resp = &out->base;
	return HS_OK;
}

static int h_create(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		    hs_error *err)
{
	(void)req;
	(void)err;
	pthread_mutex_lock(&rec_mu);
	rec.creates++;
	pthread_mutex_unlock(&rec_mu);
	Harness__V1__CreateCheckpointResponse *out = hs_rpc_call_alloc(call, sizeof(*out));
	harness__v1__create_checkpoint_response__init(out);
	*resp = &out->base;
	return HS_OK;
}

/* A stream of `total` events that must all arrive, in order: what a replay
 * is. It never waits for room: when the queue is full it asks to be called
 * again (hs_rpc_call_when_writable) and returns. */
typedef struct producer {
	int next, total;
	char *pad;
	/* Set by its done callback. A producer is freed only when the server
	 * is (graveyard), so a produce() after done is counted, per stream,
	 * instead of reading freed memory or blaming another stream. */
	bool done;
	struct producer *dead_next;
} producer;

static producer *graveyard; /* rec_mu */

static void graveyard_free(void)
{
	pthread_mutex_lock(&rec_mu);
	while (graveyard != NULL) {
		producer *p = graveyard;
		graveyard = p->dead_next;
		free(p->pad);
		free(p);
	}
	pthread_mutex_unlock(&rec_mu);
}

static void produce(hs_rpc_call *call, void *payload)
{
	producer *p = payload;
	pthread_mutex_lock(&rec_mu);
	rec.produce_calls++;
	if (p->done)
		rec.produce_after_done++;
	pthread_mutex_unlock(&rec_mu);
	Harness__V1__TaskEvent ev = HARNESS__V1__TASK_EVENT__INIT;
	ev.message = p->pad;
	while (p->next < p->total) {
		ev.event_id = (uint64_t)p->next;
		int rc = hs_rpc_call_send(call, &ev.base);
		if (rc == HS_LIMIT) {
			(void)hs_rpc_call_when_writable(call, produce, p);
			return;
		}
		if (rc != HS_OK)
			return;
		p->next++;
		pthread_mutex_lock(&rec_mu);
		rec.produced++;
		pthread_mutex_unlock(&rec_mu);
	}
	hs_rpc_call_finish(call, HS_OK, NULL);
}

static void producer_done(hs_rpc_call *call, void *payload)
{
	producer *p = payload;
	pthread_mutex_lock(&rec_mu);
	p->done = true;
	p->dead_next = graveyard;
	graveyard = p;
	rec.stream_done++;
	pthread_mutex_unlock(&rec_mu);
	hs_rpc_call_unref(call);
}

static int h_watch(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	const Harness__V1__WatchTasksRequest *r = (const void *)req;
	producer *p = calloc(1, sizeof(*p));
	if (p == NULL || (p->pad = malloc(1024)) == NULL) {
		free(p);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	memset(p->pad, 'x', 1023);
	p->pad[1023] = '\0';
	p->total = (int)r->after_event_id;
	hs_rpc_call_set_send_queue(call, 4);
	hs_rpc_call_ref(call);
	produce(call, p);
	hs_rpc_call_on_done(call, producer_done, p);
	return HS_OK;
}

static int h_check(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		   hs_error *err)
{
	(void)req;
	(void)err;
	Grpc__Health__V1__HealthCheckResponse *r = hs_rpc_call_alloc(call, sizeof(*r));
	grpc__health__v1__health_check_response__init(r);
	r->status = 1;
	*resp = &r->base;
	return HS_OK;
}

static int test_auth(hs_rpc_call *call, hs_rpc_principal *out, hs_error *err, void *payload)
{
	(void)payload;
	const char *a = hs_rpc_call_metadata(call, "authorization", NULL);
	if (a == NULL || strncmp(a, "Bearer u:", 9) != 0 || a[9] == '\0')
		return hs_error_set(err, HS_UNAUTH, "bad token");
	snprintf(out->user_id, sizeof(out->user_id), "%s", a + 9);
	snprintf(out->role, sizeof(out->role), "user");
	return HS_OK;
}

static const hs_rpc_handler auth_handlers[] = {
	{ "WhoAmI", HS_RPC_UNARY, HS_RPC_BLOCKING, h_whoami, NULL },
	{ "GetUser", HS_RPC_UNARY, HS_RPC_LONG, h_getuser, NULL },
	{ "Login", HS_RPC_UNARY, HS_RPC_PUBLIC | HS_RPC_BLOCKING, h_login, NULL },
};
static const hs_rpc_handler tasks_handlers[] = {
	{ "Heartbeat", HS_RPC_UNARY, HS_RPC_LIVENESS, h_heartbeat, NULL },
	{ "WatchTasks", HS_RPC_SERVER_STREAM, HS_RPC_PUBLIC | HS_RPC_BLOCKING, NULL, h_watch },
};
static const hs_rpc_handler ckpt_handlers[] = {
	{ "CreateCheckpoint", HS_RPC_UNARY, HS_RPC_BLOCKING, h_create, NULL },
};
static const hs_rpc_handler health_handlers[] = {
	{ "Check", HS_RPC_UNARY, HS_RPC_PUBLIC, h_check, NULL },
};


/* --- servers ------------------------------------------------------------------ */

typedef struct fixture {
	hs_rpc_server *srv;
	grpc_channel *ch;
} fixture;

static fixture f;

static void start(hs_rpc_config *cfg)
{
	cfg->listen = "127.0.0.1:0";
	hs_error err = { 0 };
	memset(&f, 0, sizeof(f));
	assert_int_equal(hs_rpc_server_new(&f.srv, cfg, &err), HS_OK);
	assert_int_equal(hs_rpc_server_add_service(f.srv, &harness__v1__auth_service__descriptor,
						   auth_handlers, 3, NULL, &err),
			 HS_OK);
	assert_int_equal(hs_rpc_server_add_service(f.srv, &harness__v1__health_service__descriptor,
						   tasks_handlers, 2, NULL, &err),
			 HS_OK);
	assert_int_equal(hs_rpc_server_add_service(f.srv,
						   &harness__v1__checkpoint_service__descriptor,
						   ckpt_handlers, 1, NULL, &err),
			 HS_OK);
	assert_int_equal(hs_rpc_server_add_service(f.srv, &grpc__health__v1__health__descriptor,
						   health_handlers, 1, NULL, &err),
			 HS_OK);
	hs_rpc_server_set_authenticator(f.srv, test_auth, NULL);
	assert_int_equal(hs_rpc_server_start(f.srv, &err), HS_OK);
	f.ch = tc_channel(hs_rpc_server_port(f.srv));
}

static void stop(void)
{
	if (f.srv != NULL) {
		hs_rpc_server_shutdown(f.srv, 1000);
		hs_rpc_server_free(f.srv);
	}
	graveyard_free();
	if (f.ch != NULL)
		grpc_channel_destroy(f.ch);
	memset(&f, 0, sizeof(f));
}

static int each_setup(void **state)
{
	(void)state;
	(void)pthread_mutex_unlock(&rec_mu); /* EPERM unless a failed test left it held */
	rec_reset();
	return 0;
}

static int each_teardown(void **state)
{
	(void)state;
	stop();
	return 0;
}

/* A unary call of user (NULL: none) sleeping ms in the handler. */
static void call_as(grpc_channel *ch, const char *method, const char *user, int sleep_for,
		    int deadline_ms, tc_reply *out)
{
	char token[64], sl[16];
	snprintf(token, sizeof(token), "Bearer u:%s", user ? user : "");
	snprintf(sl, sizeof(sl), "%d", sleep_for);
	const char *md[] = { "authorization", token, "x-sleep", sl };
	const ProtobufCMessageDescriptor *resp = &harness__v1__user__descriptor;
	const ProtobufCMessage *req;
	Harness__V1__WhoAmIRequest w = HARNESS__V1__WHO_AM_IREQUEST__INIT;
	Harness__V1__GetUserRequest g = HARNESS__V1__GET_USER_REQUEST__INIT;
	Harness__V1__LoginRequest l = HARNESS__V1__LOGIN_REQUEST__INIT;
	Harness__V1__HeartbeatRequest h = HARNESS__V1__HEARTBEAT_REQUEST__INIT;
	if (strcmp(method, M_GETUSER) == 0) {
		req = &g.base;
	} else if (strcmp(method, M_LOGIN) == 0) {
		req = &l.base;
		resp = &harness__v1__auth_response__descriptor;
	} else if (strcmp(method, M_HEARTBEAT) == 0) {
		req = &h.base;
		resp = &harness__v1__heartbeat_response__descriptor;
	} else {
		req = &w.base;
	}
	tc_unary(ch, method, req, NULL, 0, md, user ? 2 : 1, deadline_ms, resp, NULL, out);
}

/* The same on its own thread. */
typedef struct bg {
	pthread_t tid;
	const char *method, *user;
	int sleep_for, deadline_ms;
	tc_reply reply;
} bg;

static void *bg_main(void *arg)
{
	bg *b = arg;
	call_as(f.ch, b->method, b->user, b->sleep_for, b->deadline_ms, &b->reply);
	return NULL;
}

static void bg_start(bg *b, const char *method, const char *user, int sleep_for)
{
	memset(b, 0, sizeof(*b));
	b->method = method;
	b->user = user;
	b->sleep_for = sleep_for;
	b->deadline_ms = 20000;
	pthread_create(&b->tid, NULL, bg_main, b);
}

static grpc_status_code bg_join(bg *b)
{
	pthread_join(b->tid, NULL);
	grpc_status_code st = b->reply.status;
	tc_reply_dispose(&b->reply);
	return st;
}

static hs_rpc_config config(unsigned workers, unsigned long_workers, unsigned liveness)
{
	hs_rpc_config cfg = HS_RPC_CONFIG_INIT;
	cfg.workers = workers;
	cfg.long_workers = long_workers;
	cfg.liveness_workers = liveness;
	cfg.max_message_bytes = 1u << 20;
	return cfg;
}

/* --- lanes ------------------------------------------------------------------- */

/* One thread per lane; each lane busy in turn; the others still answer. */
static void test_fairness__lanes_are_separate(void **state)
{
	(void)state;
	hs_rpc_config cfg = config(1, 1, 1);
	start(&cfg);
	bg main_busy, long_busy;
	bg_start(&main_busy, M_WHOAMI, "a", 1500);
	assert_true(rec_wait(&rec.started[0], 1, 5000));
	tc_reply r;
	call_as(f.ch, M_GETUSER, "b", 0, 10000, &r); /* long lane */
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	call_as(f.ch, M_HEARTBEAT, "b", 0, 10000, &r); /* heartbeat lane */
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	assert_int_equal(rec_get(&rec.finished[0]), 0); /* all while the main lane was busy */

	bg_start(&long_busy, M_GETUSER, "a", 1500);
	assert_true(rec_wait(&rec.long_started, 2, 5000));
	call_as(f.ch, M_HEARTBEAT, "b", 0, 10000, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	assert_int_equal(rec_get(&rec.long_finished), 1); /* the long one still running */
	assert_int_equal(rec_get(&rec.beats), 2);
	assert_int_equal(bg_join(&main_busy), GRPC_STATUS_OK);
	assert_int_equal(bg_join(&long_busy), GRPC_STATUS_OK);
}

/* --- per-user bounds ------------------------------------------------------------ */

/* user_concurrency 1 of 2 threads: a's second call waits for its first,
 * and b does not wait behind a at all. */
static void test_fairness__user_concurrency(void **state)
{
	(void)state;
	hs_rpc_config cfg = config(2, 1, 1);
	cfg.user_concurrency = 1;
	start(&cfg);
	bg a1, a2, a3;
	bg_start(&a1, M_WHOAMI, "a", 600);
	bg_start(&a2, M_WHOAMI, "a", 600);
	bg_start(&a3, M_WHOAMI, "a", 600);
	assert_true(rec_wait(&rec.started[0], 1, 5000));
	tc_reply r;
	call_as(f.ch, M_WHOAMI, "b", 0, 10000, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	assert_true(rec_get(&rec.finished[0]) < 3); /* b did not wait for a's backlog */
	assert_int_equal(bg_join(&a1), GRPC_STATUS_OK);
	assert_int_equal(bg_join(&a2), GRPC_STATUS_OK);
	assert_int_equal(bg_join(&a3), GRPC_STATUS_OK);
	assert_int_equal(rec_get(&rec.max_running[0]), 1);
	assert_int_equal(rec_get(&rec.finished[1]), 1);
}

/* user_max_calls 2: a's third call at once is RESOURCE_EXHAUSTED naming the
 * limit; b and anonymous calls are not affected; a may call again later. */
static void test_fairness__user_max_calls(void **state)
{
	(void)state;
	hs_rpc_config cfg = config(3, 1, 1);
	cfg.user_concurrency = 2;
	cfg.user_max_calls = 2;
	start(&cfg);
	bg a1, a2;
	bg_start(&a1, M_WHOAMI, "a", 1000);
	bg_start(&a2, M_WHOAMI, "a", 1000);
	assert_true(rec_wait(&rec.started[0], 2, 5000));
	tc_reply r;
	call_as(f.ch, M_WHOAMI, "a", 0, 10000, &r);
	assert_int_equal(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(r.details, "per-user limit"));
	assert_non_null(strstr(r.details, "--user-max-calls"));
	assert_non_null(strstr(r.details, "main lane"));
	tc_reply_dispose(&r);
	call_as(f.ch, M_WHOAMI, "b", 0, 10000, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	call_as(f.ch, M_LOGIN, NULL, 0, 10000, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	assert_int_equal(rec_get(&rec.finished[0]), 0); /* all while a's two ran */
	assert_int_equal(rec_get(&rec.started[0]), 2);  /* the refused one never ran */
	assert_int_equal(bg_join(&a1), GRPC_STATUS_OK);
	assert_int_equal(bg_join(&a2), GRPC_STATUS_OK);
	call_as(f.ch, M_WHOAMI, "a", 0, 10000, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
}

/* A call that waited for its turn past its deadline is not run. */
static void test_fairness__expired_while_queued_not_run(void **state)
{
	(void)state;
	hs_rpc_config cfg = config(1, 1, 1);
	start(&cfg);
	bg a1;
	bg_start(&a1, M_WHOAMI, "a", 800);
	assert_true(rec_wait(&rec.started[0], 1, 5000));
	tc_reply r;
	call_as(f.ch, M_WHOAMI, "b", 0, 100, &r);
	assert_int_equal(r.status, GRPC_STATUS_DEADLINE_EXCEEDED);
	tc_reply_dispose(&r);
	assert_int_equal(bg_join(&a1), GRPC_STATUS_OK);
	call_as(f.ch, M_WHOAMI, "c", 0, 10000, &r); /* b's job has been taken by now */
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	assert_int_equal(rec_get(&rec.started[1]), 0); /* b's handler never ran */
}

/* --- streams and slow readers --------------------------------------------------- */

static Harness__V1__WatchTasksRequest watch_req(int total)
{
	Harness__V1__WatchTasksRequest req = HARNESS__V1__WATCH_TASKS_REQUEST__INIT;
	req.after_event_id = (uint64_t)total;
	return req;
}

/* One worker. A stream of 2,000 x 1 KB that nobody reads holds no worker:
 * a blocking call completes meanwhile. Then every message arrives in
 * order, produced in many steps driven by the reader's pace. */
static void test_fairness__slow_reader_holds_no_worker(void **state)
{
	(void)state;
	hs_rpc_config cfg = config(1, 1, 1);
	start(&cfg);
	grpc_channel *slow = tc_channel_small_window(hs_rpc_server_port(f.srv));
	tc_stream s;
	Harness__V1__WatchTasksRequest req = watch_req(2000);
	assert_true(tc_stream_start(&s, slow, M_WATCH, 60000, &harness__v1__task_event__descriptor,
				    &req.base, true));
	assert_true(rec_wait(&rec.produce_calls, 1, 5000));
	/* stalled: the window and the queue of 4 are full */
	for (int i = 0; i < 50 && rec_get(&rec.produced) < 2000; i++) {
		int before = rec_get(&rec.produced);
		sleep_ms(20);
		if (rec_get(&rec.produced) == before)
			break;
	}
	assert_true(rec_get(&rec.produced) < 2000);
	tc_reply r;
	call_as(f.ch, M_WHOAMI, "a", 0, 10000, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	/* read it all */
	int n = 0;
	bool ok = true, in_order = true;
	ProtobufCMessage *m;
	while ((m = tc_stream_recv(&s, &ok)) != NULL) {
		const Harness__V1__TaskEvent *ev = (const void *)m;
		if (ev->event_id != (uint64_t)n)
			in_order = false;
		n++;
		protobuf_c_message_free_unpacked(m, NULL);
	}
	assert_true(ok);
	assert_int_equal(tc_stream_finish(&s, NULL, 0), GRPC_STATUS_OK);
	assert_int_equal(n, 2000);
	assert_true(in_order);
	assert_true(rec_get(&rec.produce_calls) > 10); /* resumed again and again */
	assert_true(rec_wait(&rec.stream_done, 1, 5000));
	assert_int_equal(rec_get(&rec.produce_after_done), 0);
	grpc_channel_destroy(slow);
}

/* Several stalled streams at once, one worker: still no worker held. */
static void test_fairness__many_stalled_streams(void **state)
{
	(void)state;
	hs_rpc_config cfg = config(1, 1, 1);
	start(&cfg);
	grpc_channel *slow = tc_channel_small_window(hs_rpc_server_port(f.srv));
	enum { N = 10 };
	tc_stream s[N];
	Harness__V1__WatchTasksRequest req = watch_req(1000);
	for (int i = 0; i < N; i++)
		assert_true(tc_stream_start(&s[i], slow, M_WATCH, 60000,
					    &harness__v1__task_event__descriptor, &req.base, true));
	assert_true(rec_wait(&rec.produce_calls, N, 5000));
	tc_reply r;
	call_as(f.ch, M_WHOAMI, "a", 0, 10000, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	/* The client gives up on all of them: each done callback once. */
	for (int i = 0; i < N; i++) {
		tc_stream_cancel(&s[i]);
		assert_int_equal(tc_stream_finish(&s[i], NULL, 0), GRPC_STATUS_CANCELLED);
	}
	assert_true(rec_wait(&rec.stream_done, N, 5000));
	sleep_ms(50);
	assert_int_equal(rec_get(&rec.stream_done), N);
	assert_int_equal(rec_get(&rec.produce_after_done), 0);
	grpc_channel_destroy(slow);
}

/* Shutdown with a stalled stream whose producer waits for room: the
 * server stops (after the grace), the done callback runs once. */
static void test_fairness__shutdown_with_stalled_stream(void **state)
{
	(void)state;
	hs_rpc_config cfg = config(1, 1, 1);
	start(&cfg);
	grpc_channel *slow = tc_channel_small_window(hs_rpc_server_port(f.srv));
	tc_stream s;
	Harness__V1__WatchTasksRequest req = watch_req(5000);
	assert_true(tc_stream_start(&s, slow, M_WATCH, 60000, &harness__v1__task_event__descriptor,
				    &req.base, true));
	assert_true(rec_wait(&rec.produce_calls, 1, 5000));
	hs_rpc_server_shutdown(f.srv, 200);
	assert_int_equal(rec_get(&rec.stream_done), 1);
	bool ok = true;
	int n = 0;
	ProtobufCMessage *m;
	while ((m = tc_stream_recv(&s, &ok)) != NULL) { /* what got through, then the end */
		protobuf_c_message_free_unpacked(m, NULL);
		n++;
	}
	grpc_status_code st = tc_stream_finish(&s, NULL, 0);
	assert_true(n < 5000);
	assert_true(st == GRPC_STATUS_CANCELLED || st == GRPC_STATUS_UNAVAILABLE);
	hs_rpc_server_free(f.srv);
	f.srv = NULL;
	graveyard_free();
	grpc_channel_destroy(slow);
}

/* --- requests that must not crash the decoder ------------------------------------- */

static void test_fairness__deep_request_refused(void **state)
{
	(void)state;
	hs_rpc_config cfg = config(1, 1, 1);
	start(&cfg);
	size_t len;
	uint8_t *deep = hs_wire_deep_create_checkpoint(5000, false, &len);
	const char *md[] = { "authorization", "Bearer u:a" };
	tc_reply r;
	tc_unary(f.ch, M_CREATE, NULL, deep, len, md, 1, 10000,
		 &harness__v1__create_checkpoint_response__descriptor, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(r.details, "external_state: nested deeper than 100 levels"));
	tc_reply_dispose(&r);
	free(deep);
	/* as deep as allowed: served */
	deep = hs_wire_deep_create_checkpoint(33, false, &len);
	tc_unary(f.ch, M_CREATE, NULL, deep, len, md, 1, 10000,
		 &harness__v1__create_checkpoint_response__descriptor, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	free(deep);
	assert_int_equal(rec_get(&rec.creates), 1);
	/* still serving */
	Grpc__Health__V1__HealthCheckRequest hreq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	tc_unary(f.ch, M_CHECK, &hreq.base, NULL, 0, NULL, 0, 10000,
		 &grpc__health__v1__health_check_response__descriptor, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
}

/* A smaller --max-message-depth is honoured. */
static void test_fairness__max_depth_configurable(void **state)
{
	(void)state;
	hs_rpc_config cfg = config(1, 1, 1);
	cfg.max_depth = 10;
	start(&cfg);
	size_t len;
	const char *md[] = { "authorization", "Bearer u:a" };
	tc_reply r;
	uint8_t *msg = hs_wire_deep_create_checkpoint(3, false, &len); /* 1 + 3*3 = 10 */
	tc_unary(f.ch, M_CREATE, NULL, msg, len, md, 1, 10000,
		 &harness__v1__create_checkpoint_response__descriptor, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_OK);
	tc_reply_dispose(&r);
	free(msg);
	msg = hs_wire_deep_create_checkpoint(4, false, &len);
	tc_unary(f.ch, M_CREATE, NULL, msg, len, md, 1, 10000,
		 &harness__v1__create_checkpoint_response__descriptor, NULL, &r);
	assert_int_equal(r.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(r.details, "deeper than 10 levels"));
	tc_reply_dispose(&r);
	free(msg);
}

static void test_fairness__config_out_of_range(void **state)
{
	(void)state;
	hs_rpc_server *srv = NULL;
	hs_error err = { 0 };
	hs_rpc_config cfg = config(1, 0, 1);
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, &err), HS_INVALID);
	cfg = config(1, 1, 0);
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, &err), HS_INVALID);
	cfg = config(1, 1, 1);
	cfg.user_max_calls = 0;
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, &err), HS_INVALID);
	cfg = config(1, 1, 1);
	cfg.max_depth = 257;
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, &err), HS_INVALID);
	cfg.max_depth = 0;
	assert_int_equal(hs_rpc_server_new(&srv, &cfg, &err), HS_INVALID);
	assert_null(srv);
}

int main(void)
{
	hs_log_min_level = HS_LOG_WARN;
	grpc_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fairness__lanes_are_separate, each_setup,
						each_teardown),
		cmocka_unit_test_setup_teardown(test_fairness__user_concurrency, each_setup,
						each_teardown),
		cmocka_unit_test_setup_teardown(test_fairness__user_max_calls, each_setup,
						each_teardown),
		cmocka_unit_test_setup_teardown(test_fairness__expired_while_queued_not_run,
						each_setup, each_teardown),
		cmocka_unit_test_setup_teardown(test_fairness__slow_reader_holds_no_worker,
						each_setup, each_teardown),
		cmocka_unit_test_setup_teardown(test_fairness__many_stalled_streams, each_setup,
						each_teardown),
		cmocka_unit_test_setup_teardown(test_fairness__shutdown_with_stalled_stream,
						each_setup, each_teardown),
		cmocka_unit_test_setup_teardown(test_fairness__deep_request_refused, each_setup,
						each_teardown),
		cmocka_unit_test_setup_teardown(test_fairness__max_depth_configurable, each_setup,
						each_teardown),
		cmocka_unit_test_setup_teardown(test_fairness__config_out_of_range, each_setup,
						each_teardown),
	};
	int rc = cmocka_run_group_tests_name("rpc_fairness", tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
