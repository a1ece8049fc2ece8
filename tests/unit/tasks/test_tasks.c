/* Unit tests for the task registry (server/tasks): state machine, backoff,
 * validation, stall detection latency, recovery with injected faults,
 * one-recovery-at-a-time, cancellation, ownership, restart re-arming, the
 * watcher drop policy and replay, and recovery through the real checkpoint
 * module. Each test has its own temp data dir and store. */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "checkpoint.h"
#include "store.h"
#include "tasks.h"

static const hs_principal alice = { "usr_alice", false };
static const hs_principal bob = { "usr_bob", false };
static const hs_principal admin = { "usr_admin", true };

/* ---- fake recovery ops -------------------------------------------------- */

typedef struct fake {
	pthread_mutex_t mu;
	int latest_rc;       /* HS_OK or HS_NOT_FOUND */
	int restore_fail;    /* fail this many restores, then succeed */
	int restore_calls;
	int restore_sleep_ms;
} fake;

static int f_latest(void *ctx, const char *task_id, char *id, size_t len, int64_t *step,
		    hs_error *err)
{
	fake *f = ctx;
	(void)task_id;
	if (f->latest_rc != HS_OK)
		return hs_error_set(err, f->latest_rc, "none");
	snprintf(id, len, "ckpt-5-abcdef012345");
	*step = 5;
	return HS_OK;
}

static int f_restore(void *ctx, const char *task_id, const char *ckpt, const char *ws,
		     hs_error *err)
{
	fake *f = ctx;
	(void)task_id;
	(void)ckpt;
	(void)ws;
	if (f->restore_sleep_ms)
		usleep((useconds_t)f->restore_sleep_ms * 1000);
	pthread_mutex_lock(&f->mu);
	int n = ++f->restore_calls;
	pthread_mutex_unlock(&f->mu);
	if (n <= f->restore_fail)
		return hs_error_set(err, HS_INTERNAL, "disk on fire (%d)", n);
	return HS_OK;
}

/* ---- event sink ---------------------------------------------------------- */

#define MAX_EV 256
typedef struct sink {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	hs_task_event ev[MAX_EV];
	int64_t at_ms[MAX_EV];
	size_t n;
	int refuse; /* answer HS_LIMIT this many times */
} sink;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sink_send(const hs_task_event *ev, void *payload)
{
	sink *s = payload;
	pthread_mutex_lock(&s->mu);
	int rc = HS_OK;
	if (s->refuse > 0) {
		s->refuse--;
		rc = HS_LIMIT;
	} else if (s->n < MAX_EV) {
		s->at_ms[s->n] = now_ms();
		s->ev[s->n++] = *ev;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* Index of the first event of type after index from, waiting up to ms. */
static int sink_wait(sink *s, int type, size_t from, int ms)
{
	int64_t until = now_ms() + ms;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		for (size_t i = from; i < s->n; i++) {
			if ((int)s->ev[i].type == type) {
				pthread_mutex_unlock(&s->mu);
				return (int)i;
			}
		}
		if (now_ms() >= until)
			break;
		struct timespec ts = { 0, 10 * 1000000 };
		pthread_mutex_unlock(&s->mu);
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return -1;
}

static size_t sink_count(sink *s, int type)
{
	size_t c = 0;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->n; i++)
		c += (int)s->ev[i].type == type;
	pthread_mutex_unlock(&s->mu);
	return c;
}

/* ---- fixture ------------------------------------------------------------- */

typedef struct fx {
	char dir[256];
	hs_store *store;
	hs_tasks *tasks;
	fake fk;
	hs_task_recovery_ops ops;
	sink sk;
	hs_task_watch *w;
} fx;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void open_tasks(fx *f)
{
	hs_error err = { 0 };
	hs_tasks_config cfg = { 0 };
	cfg.store = f->store;
	cfg.ops = &f->ops;
	assert_int_equal(hs_tasks_new(&f->tasks, &cfg, &err), HS_OK);
	assert_int_equal(hs_tasks_watch(f->tasks, &admin, NULL, false, 0, sink_send, &f->sk, &f->w,
					&err),
			 HS_OK);
}

static void close_tasks(fx *f)
{
	if (f->w != NULL)
		hs_tasks_unwatch(f->tasks, f->w);
	f->w = NULL;
	hs_tasks_free(f->tasks);
	f->tasks = NULL;
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	hs_error err = { 0 };
	snprintf(f->dir, sizeof(f->dir), "/tmp/hs_tasks_test.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(hs_store_open(&f->store, f->dir, &err), HS_OK);
	pthread_mutex_init(&f->fk.mu, NULL);
	pthread_mutex_init(&f->sk.mu, NULL);
	pthread_cond_init(&f->sk.cv, NULL);
	f->ops.latest = f_latest;
	f->ops.restore = f_restore;
	f->ops.ctx = &f->fk;
	open_tasks(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	close_tasks(f);
	hs_store_free(f->store);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	pthread_mutex_destroy(&f->fk.mu);
	pthread_mutex_destroy(&f->sk.mu);
	pthread_cond_destroy(&f->sk.cv);
	free(f);
	return 0;
}

static void reg(fx *f, const hs_principal *c, const char *id, int64_t interval, int64_t timeout,
		int32_t max_attempts, int64_t backoff)
{
	hs_error err = { 0 };
	hs_task_spec s = { 0 };
	s.task_id = id;
	s.heartbeat_interval_ms = interval;
	s.heartbeat_timeout_ms = timeout;
	s.policy.max_attempts = max_attempts;
	s.policy.initial_backoff_ms = backoff;
	hs_task_info info;
	int rc = hs_tasks_register(f->tasks, c, &s, &info, &err);
	if (rc != HS_OK)
		fail_msg("register %s: %s", id, err.msg);
	assert_int_equal(info.state, HS_TASK_RUNNING);
	hs_task_info_dispose(&info);
}

static int state_of(fx *f, const char *id)
{
	hs_task_info info;
	hs_error err = { 0 };
	assert_int_equal(hs_tasks_get(f->tasks, &admin, id, &info, &err), HS_OK);
	int st = info.state;
	hs_task_info_dispose(&info);
	return st;
}

static int beat(fx *f, const hs_principal *c, const char *id, int64_t step,
		hs_task_beat_reply *out)
{
	hs_error err = { 0 };
	hs_task_beat b = { step, 0, 1.0, 2.0, 3.0, "d" };
	return hs_tasks_heartbeat(f->tasks, c, id, &b, out, &err);
}

/* ---- pure functions ------------------------------------------------------ */

static void test_tasks__state_machine(void **state)
{
	(void)state;
	assert_true(hs_task_transition_ok(HS_TASK_RUNNING, HS_TASK_STALLED));
	assert_true(hs_task_transition_ok(HS_TASK_STALLED, HS_TASK_RUNNING));
	assert_true(hs_task_transition_ok(HS_TASK_STALLED, HS_TASK_RECOVERING));
	assert_true(hs_task_transition_ok(HS_TASK_RECOVERING, HS_TASK_RUNNING));
	assert_true(hs_task_transition_ok(HS_TASK_RECOVERING, HS_TASK_STALLED));
	assert_true(hs_task_transition_ok(HS_TASK_RECOVERING, HS_TASK_FAILED));
	assert_true(hs_task_transition_ok(HS_TASK_FAILED, HS_TASK_RECOVERING));
	assert_true(hs_task_transition_ok(HS_TASK_RUNNING, HS_TASK_CANCELLED));
	assert_false(hs_task_transition_ok(HS_TASK_COMPLETED, HS_TASK_RECOVERING));
	assert_false(hs_task_transition_ok(HS_TASK_CANCELLED, HS_TASK_RECOVERING));
	assert_false(hs_task_transition_ok(HS_TASK_CANCELLED, HS_TASK_STALLED));
	assert_false(hs_task_transition_ok(HS_TASK_FAILED, HS_TASK_STALLED));
	assert_false(hs_task_transition_ok(HS_TASK_COMPLETED, HS_TASK_CANCELLED));
	assert_string_equal(hs_task_state_name(HS_TASK_RECOVERING), "RECOVERING");
}

static void test_tasks__backoff(void **state)
{
	(void)state;
	hs_error err = { 0 };
	hs_task_policy p = { 0 };
	assert_int_equal(hs_task_policy_resolve(&p, &err), HS_OK);
	assert_int_equal(p.max_attempts, 3);
	assert_int_equal(p.initial_backoff_ms, 1000);
	assert_true(p.multiplier == 2.0);
	assert_int_equal(p.max_backoff_ms, 60000);
	assert_int_equal(hs_task_backoff_ms(&p, 1), 1000);
	assert_int_equal(hs_task_backoff_ms(&p, 2), 2000);
	assert_int_equal(hs_task_backoff_ms(&p, 4), 8000);
	assert_int_equal(hs_task_backoff_ms(&p, 7), 60000); /* 64000 capped */
	assert_int_equal(hs_task_backoff_ms(&p, 100), 60000);
	hs_task_policy q = { 5, 100, 1.5, 300 };
	assert_int_equal(hs_task_policy_resolve(&q, &err), HS_OK);
	assert_int_equal(hs_task_backoff_ms(&q, 2), 150);
	assert_int_equal(hs_task_backoff_ms(&q, 3), 225);
	assert_int_equal(hs_task_backoff_ms(&q, 4), 300);
	hs_task_policy bad = { 0, 0, 0.5, 0 };
	assert_int_equal(hs_task_policy_resolve(&bad, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "backoff_multiplier"));
	hs_task_policy bad2 = { 101, 0, 0, 0 };
	assert_int_equal(hs_task_policy_resolve(&bad2, &err), HS_INVALID);
	hs_task_policy bad3 = { 0, 5000, 0, 1000 };
	hs_error_clear(&err);
	assert_int_equal(hs_task_policy_resolve(&bad3, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "max_backoff_ms"));
}

/* ---- registry ----------------------------------------------------------- */

static void test_tasks__register_validation(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	hs_task_spec s = { 0 };
	s.task_id = "../etc";
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, NULL, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "task_id"));
	s.task_id = "ok-1";
	s.heartbeat_interval_ms = 50;
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, NULL, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "heartbeat_interval_ms"));
	s.heartbeat_interval_ms = 1000;
	s.heartbeat_timeout_ms = 1000;
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, NULL, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "heartbeat_timeout_ms"));
	s.heartbeat_timeout_ms = 0;
	s.heartbeat_interval_ms = 0;
	s.workspace = "a/../../b";
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, NULL, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "workspace"));
	s.workspace = NULL;
	s.sandbox_id = "sb-1";
	hs_error_clear(&err); /* no sandbox ops: unavailable */
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, NULL, &err), HS_UNAVAILABLE);
	s.sandbox_id = NULL;
	hs_task_info info;
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, &info, &err), HS_OK);
	assert_int_equal(info.heartbeat_interval_ms, 30000);
	assert_int_equal(info.heartbeat_timeout_ms, 90000);
	assert_string_equal(info.workspace, "ok-1");
	hs_task_info_dispose(&info);
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, NULL, &err), HS_EXISTS);
	assert_int_equal(hs_tasks_register(f->tasks, &bob, &s, NULL, &err), HS_DENIED);
}

static void test_tasks__stall_detected_within_100ms(void **state)
{
	fx *f = *state;
	f->fk.latest_rc = HS_NOT_FOUND;
	int64_t t0 = now_ms();
	reg(f, &alice, "slow", 100, 300, 1, 60000);
	reg(f, &alice, "alive", 100, 300, 1, 60000);
	hs_task_beat_reply r;
	for (int i = 0; i < 8; i++) { /* keep "alive" alive for 800 ms */
		usleep(100 * 1000);
		assert_int_equal(beat(f, &alice, "alive", i, &r), HS_OK);
		assert_int_equal(r.instruction, HS_TASK_CONTINUE);
		hs_task_beat_reply_dispose(&r);
	}
	int i = sink_wait(&f->sk, HS_TEV_TIMEOUT, 0, 1000);
	assert_true(i >= 0);
	assert_string_equal(f->sk.ev[i].task_id, "slow");
	/* Never before the deadline (1 ms of slack: both stamps are truncated
	 * wall-clock ms), and driven by the deadline rather than by a periodic
	 * scan. The bound is loose on purpose: a test must not fail on a loaded
	 * machine. The lag itself (p50 0 ms, p99 a few ms with 100,000 tasks) is
	 * measured by bench/tasks_bench.sh. */
	int64_t lag = f->sk.ev[i].occurred_at_ms - (t0 + 300);
	assert_true(lag >= -1);
	assert_true(lag < 1000);
	assert_int_equal(state_of(f, "slow"), HS_TASK_STALLED);
	assert_int_equal(state_of(f, "alive"), HS_TASK_RUNNING);
	assert_int_equal(sink_count(&f->sk, HS_TEV_TIMEOUT), 1);
}

static void test_tasks__recovery_then_resume(void **state)
{
	fx *f = *state;
	reg(f, &alice, "t", 100, 200, 3, 50);
	hs_task_beat_reply r;
	assert_int_equal(beat(f, &alice, "t", 7, &r), HS_OK);
	hs_task_beat_reply_dispose(&r);
	assert_true(sink_wait(&f->sk, HS_TEV_TIMEOUT, 0, 1000) >= 0);
	int i = sink_wait(&f->sk, HS_TEV_RECOVERY_STARTED, 0, 1000);
	assert_true(i >= 0);
	assert_int_equal(f->sk.ev[i].step, 5);
	assert_string_equal(f->sk.ev[i].checkpoint_id, "ckpt-5-abcdef012345");
	assert_int_equal(f->sk.ev[i].attempt, 1);
	/* Wait until the restore is done (the task records the checkpoint). */
	hs_task_info info;
	hs_error err = { 0 };
	for (int k = 0; k < 100; k++) {
		assert_int_equal(hs_tasks_get(f->tasks, &alice, "t", &info, &err), HS_OK);
		bool done = strcmp(info.last_checkpoint_id, "ckpt-5-abcdef012345") == 0;
		assert_int_equal(info.state, HS_TASK_RECOVERING);
		hs_task_info_dispose(&info);
		if (done)
			break;
		usleep(10 * 1000);
	}
	assert_int_equal(beat(f, &alice, "t", 9, &r), HS_OK);
	assert_int_equal(r.instruction, HS_TASK_RESUME);
	assert_int_equal(r.state, HS_TASK_RUNNING);
	assert_int_equal(r.resume_step, 5);
	assert_string_equal(r.checkpoint_id, "ckpt-5-abcdef012345");
	assert_string_equal(r.details, "d");
	hs_task_beat_reply_dispose(&r);
	i = sink_wait(&f->sk, HS_TEV_RECOVERED, 0, 1000);
	assert_true(i >= 0);
	assert_int_equal(f->sk.ev[i].step, 5);
	assert_int_equal(hs_tasks_get(f->tasks, &alice, "t", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_TASK_RUNNING);
	assert_int_equal(info.recovery_attempts, 0);
	assert_int_equal(info.current_step, 5);
	hs_task_info_dispose(&info);
	/* Next heartbeat: plain continue. */
	assert_int_equal(beat(f, &alice, "t", 6, &r), HS_OK);
	assert_int_equal(r.instruction, HS_TASK_CONTINUE);
	hs_task_beat_reply_dispose(&r);
	assert_int_equal(hs_tasks_complete(f->tasks, &alice, "t", true, "done", NULL, &err), HS_OK);
}

static void test_tasks__backoff_and_max_attempts(void **state)
{
	fx *f = *state;
	f->fk.restore_fail = 1000;
	reg(f, &alice, "bad", 100, 200, 3, 100); /* delays 100, 200, 400 */
	int last = sink_wait(&f->sk, HS_TEV_FAILED + 100, 0, 0); /* -1 */
	(void)last;
	size_t from = 0;
	int64_t at[3];
	for (int a = 0; a < 3; a++) {
		int i = sink_wait(&f->sk, HS_TEV_RECOVERY_FAILED, from, 3000);
		assert_true(i >= 0);
		assert_int_equal(f->sk.ev[i].attempt, a + 1);
		assert_non_null(strstr(f->sk.ev[i].message, "disk on fire"));
		assert_int_equal(f->sk.ev[i].state, a < 2 ? HS_TASK_STALLED : HS_TASK_FAILED);
		at[a] = f->sk.at_ms[i];
		from = (size_t)i + 1;
	}
	assert_true(at[1] - at[0] >= 200 - 5);
	assert_true(at[2] - at[1] >= 400 - 5);
	assert_int_equal(f->fk.restore_calls, 3);
	hs_task_info info;
	hs_error err = { 0 };
	assert_int_equal(hs_tasks_get(f->tasks, &alice, "bad", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_TASK_FAILED);
	assert_int_equal(info.recovery_attempts, 3);
	assert_non_null(strstr(info.failure_reason, "disk on fire"));
	hs_task_info_dispose(&info);
	/* Heartbeat of a FAILED task: told to stop. */
	hs_task_beat_reply r;
	assert_int_equal(beat(f, &alice, "bad", 1, &r), HS_OK);
	assert_int_equal(r.instruction, HS_TASK_CANCEL);
	hs_task_beat_reply_dispose(&r);
}

static void test_tasks__no_checkpoint_fails_at_once(void **state)
{
	fx *f = *state;
	f->fk.latest_rc = HS_NOT_FOUND;
	reg(f, &alice, "nock", 100, 200, 5, 20);
	int i = sink_wait(&f->sk, HS_TEV_RECOVERY_FAILED, 0, 2000);
	assert_true(i >= 0);
	assert_string_equal(f->sk.ev[i].message, "no checkpoint to recover from");
	assert_int_equal(f->sk.ev[i].state, HS_TASK_FAILED);
	assert_int_equal(state_of(f, "nock"), HS_TASK_FAILED);
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERY_STARTED), 0);
}

typedef struct rec_arg {
	fx *f;
	int rc;
} rec_arg;

static void *recover_thread(void *p)
{
	rec_arg *a = p;
	hs_error err = { 0 };
	a->rc = hs_tasks_recover(a->f->tasks, &alice, "c", "manual", NULL, &err);
	return NULL;
}

static void test_tasks__concurrent_recover_once(void **state)
{
	fx *f = *state;
	f->fk.restore_sleep_ms = 200;
	reg(f, &alice, "c", 1000, 60000, 3, 1000);
	pthread_t th[8];
	rec_arg args[8];
	for (int i = 0; i < 8; i++) {
		args[i] = (rec_arg){ f, 1 };
		pthread_create(&th[i], NULL, recover_thread, &args[i]);
	}
	int ok = 0, conflict = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ok += args[i].rc == HS_OK;
		conflict += args[i].rc == HS_CONFLICT;
	}
	assert_int_equal(ok, 1);
	assert_int_equal(conflict, 7);
	/* Mid-recovery heartbeat: RECOVERING. */
	hs_task_beat_reply r;
	assert_int_equal(beat(f, &alice, "c", 1, &r), HS_OK);
	assert_int_equal(r.state, HS_TASK_RECOVERING);
	assert_int_equal(r.instruction, HS_TASK_CONTINUE);
	hs_task_beat_reply_dispose(&r);
	usleep(400 * 1000);
	assert_int_equal(f->fk.restore_calls, 1);
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERY_STARTED), 1);
	int i = sink_wait(&f->sk, HS_TEV_RECOVERY_STARTED, 0, 0);
	assert_string_equal(f->sk.ev[i].message, "manual");
}

static void test_tasks__cancel_via_heartbeat(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	hs_task_info info;
	reg(f, &alice, "x", 1000, 60000, 0, 0);
	assert_int_equal(hs_tasks_cancel(f->tasks, &alice, "x", "user asked", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_TASK_CANCELLED);
	assert_true(info.cancel_requested);
	assert_string_equal(info.failure_reason, "user asked");
	hs_task_info_dispose(&info);
	hs_task_beat_reply r;
	assert_int_equal(beat(f, &alice, "x", 1, &r), HS_OK);
	assert_int_equal(r.instruction, HS_TASK_CANCEL);
	assert_int_equal(r.state, HS_TASK_CANCELLED);
	assert_int_equal(r.next_deadline_ms, 0);
	hs_task_beat_reply_dispose(&r);
	assert_int_equal(hs_tasks_cancel(f->tasks, &alice, "x", "again", NULL, &err), HS_OK);
	assert_int_equal(hs_tasks_complete(f->tasks, &alice, "x", true, "", NULL, &err), HS_CONFLICT);
	assert_int_equal(hs_tasks_recover(f->tasks, &alice, "x", "", NULL, &err), HS_CONFLICT);
	assert_true(sink_wait(&f->sk, HS_TEV_CANCELLED, 0, 100) >= 0);
	/* Completed: heartbeat is FAILED_PRECONDITION. */
	reg(f, &alice, "y", 1000, 60000, 0, 0);
	assert_int_equal(hs_tasks_complete(f->tasks, &alice, "y", true, "ok", &info, &err), HS_OK);
	assert_string_equal(info.result_message, "ok");
	hs_task_info_dispose(&info);
	assert_int_equal(beat(f, &alice, "y", 1, &r), HS_CONFLICT);
	/* Re-registration of a terminal task. */
	reg(f, &alice, "y", 1000, 60000, 0, 0);
}

static void test_tasks__ownership_and_list(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	reg(f, &alice, "a1", 1000, 60000, 0, 0);
	usleep(2000);
	reg(f, &alice, "a2", 1000, 60000, 0, 0);
	reg(f, &bob, "b1", 1000, 60000, 0, 0);
	hs_task_info info;
	assert_int_equal(hs_tasks_get(f->tasks, &bob, "a1", &info, &err), HS_DENIED);
	assert_int_equal(hs_tasks_get(f->tasks, &bob, "nope", &info, &err), HS_NOT_FOUND);
	hs_task_beat_reply r;
	assert_int_equal(beat(f, &bob, "a1", 1, &r), HS_DENIED);
	assert_int_equal(hs_tasks_cancel(f->tasks, &bob, "a1", "", NULL, &err), HS_DENIED);
	assert_int_equal(hs_tasks_get(f->tasks, &admin, "a1", &info, &err), HS_OK);
	assert_string_equal(info.owner, "usr_alice");
	hs_task_info_dispose(&info);

	hs_task_list_opts o = { 0 };
	o.page_size = 1;
	hs_task_info *arr;
	size_t n;
	char *next;
	assert_int_equal(hs_tasks_list(f->tasks, &alice, &o, &arr, &n, &next, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(arr[0].task_id, "a2"); /* newest first */
	assert_non_null(next);
	hs_task_info_array_free(arr, n);
	o.page_token = next;
	assert_int_equal(hs_tasks_list(f->tasks, &alice, &o, &arr, &n, &next, &err), HS_OK);
	free((char *)o.page_token);
	assert_int_equal(n, 1);
	assert_string_equal(arr[0].task_id, "a1");
	assert_null(next);
	hs_task_info_array_free(arr, n);
	hs_task_list_opts all = { 0 };
	assert_int_equal(hs_tasks_list(f->tasks, &admin, &all, &arr, &n, &next, &err), HS_OK);
	assert_int_equal(n, 3);
	hs_task_info_array_free(arr, n);
	o.page_token = "garbage";
	assert_int_equal(hs_tasks_list(f->tasks, &alice, &o, &arr, &n, &next, &err), HS_INVALID);

	/* Watchers see only their own tasks. */
	sink bs;
	memset(&bs, 0, sizeof(bs));
	pthread_mutex_init(&bs.mu, NULL);
	pthread_cond_init(&bs.cv, NULL);
	hs_task_watch *w;
	assert_int_equal(hs_tasks_watch(f->tasks, &bob, NULL, true, 0, sink_send, &bs, &w, &err),
			 HS_OK);
	assert_int_equal(bs.n, 1); /* initial state of b1 */
	assert_string_equal(bs.ev[0].task_id, "b1");
	assert_int_equal(bs.ev[0].type, HS_TEV_INITIAL_STATE);
	assert_int_equal(hs_tasks_cancel(f->tasks, &alice, "a1", "", NULL, &err), HS_OK);
	assert_int_equal(hs_tasks_cancel(f->tasks, &bob, "b1", "", NULL, &err), HS_OK);
	assert_int_equal(bs.n, 2);
	assert_string_equal(bs.ev[1].task_id, "b1");
	assert_int_equal(hs_tasks_watch(f->tasks, &bob, "a1", false, 0, sink_send, &bs, &w, &err) ==
				 HS_DENIED,
			 1);
	hs_tasks_unwatch(f->tasks, w);
	pthread_mutex_destroy(&bs.mu);
}

static void test_tasks__restart_rearms_deadlines(void **state)
{
	fx *f = *state;
	f->fk.latest_rc = HS_NOT_FOUND;
	reg(f, &alice, "r1", 100, 2000, 1, 60000);
	reg(f, &alice, "r2", 100, 60000, 1, 60000);
	close_tasks(f);
	usleep(2100 * 1000); /* r1's deadline passes while "down" */
	memset(&f->sk.n, 0, sizeof(f->sk.n));
	int64_t t0 = now_ms();
	open_tasks(f);
	int i = sink_wait(&f->sk, HS_TEV_TIMEOUT, 0, 1000);
	assert_true(i >= 0);
	assert_string_equal(f->sk.ev[i].task_id, "r1");
	/* At once, not after a fresh 2 s timeout (the deadline is the last
	 * heartbeat + timeout, already past); loose enough for a loaded machine. */
	assert_true(f->sk.at_ms[i] - t0 < 1000);
	assert_int_equal(state_of(f, "r2"), HS_TASK_RUNNING);
	/* Event ids continue across restarts. */
	assert_true(f->sk.ev[i].event_id > 2);
}

static void test_tasks__drop_policy_and_replay(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	sink s;
	memset(&s, 0, sizeof(s));
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	hs_task_watch *w;
	assert_int_equal(hs_tasks_watch(f->tasks, &alice, NULL, false, 0, sink_send, &s, &w, &err),
			 HS_OK);
	s.refuse = 3; /* a full queue for three sends */
	reg(f, &alice, "d1", 1000, 60000, 0, 0); /* dropped */
	reg(f, &alice, "d2", 1000, 60000, 0, 0); /* DROPPED notice refused: dropped */
	reg(f, &alice, "d3", 1000, 60000, 0, 0); /* notice refused again */
	reg(f, &alice, "d4", 1000, 60000, 0, 0); /* notice (3) + d4 */
	assert_int_equal(s.n, 2);
	assert_int_equal(s.ev[0].type, HS_TEV_EVENTS_DROPPED);
	assert_int_equal(s.ev[0].dropped_count, 3);
	assert_string_equal(s.ev[1].task_id, "d4");
	hs_tasks_unwatch(f->tasks, w);
	/* Replay from the store: everything after the first event. */
	int64_t first = s.ev[1].event_id - 3;
	memset(&s, 0, sizeof(s));
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	s.refuse = 5; /* replay never drops: it stops where the queue is full */
	assert_int_equal(hs_tasks_watch(f->tasks, &alice, NULL, false, first, sink_send, &s, &w, &err),
			 HS_OK);
	assert_int_equal(s.n, 0); /* refused at once: nothing sent, nothing lost */
	int pumps = 0, rc;
	while ((rc = hs_tasks_watch_pump(f->tasks, w, &err)) == HS_LIMIT)
		pumps++; /* each pump is what a write completion would trigger */
	assert_int_equal(rc, HS_OK);
	assert_int_equal(pumps, 4); /* the other four refusals */
	assert_int_equal(s.n, 3);
	assert_string_equal(s.ev[0].task_id, "d2");
	assert_string_equal(s.ev[2].task_id, "d4");
	hs_tasks_unwatch(f->tasks, w);
	pthread_mutex_destroy(&s.mu);
}

/* A reader that takes `room` events, then says its queue is full. */
typedef struct step_sink {
	hs_task_event ev[512];
	size_t n;
	int room;
} step_sink;

static int step_send(const hs_task_event *ev, void *payload)
{
	step_sink *s = payload;
	if (s->room == 0)
		return HS_LIMIT;
	s->room--;
	if (s->n < 512)
		s->ev[s->n++] = *ev;
	return HS_OK;
}

/* Catching up in many small steps (as write completions drive it), with
 * events emitted meanwhile: every event exactly once, in order, then live. */
static void test_tasks__catch_up_in_steps_loses_nothing(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	char id[16];
	for (int i = 0; i < 100; i++) {
		snprintf(id, sizeof(id), "c%03d", i);
		reg(f, &alice, id, 1000, 60000, 0, 0);
	}
	static step_sink s;
	memset(&s, 0, sizeof(s));
	hs_task_watch *w;
	/* after the first of the 100: 99 to replay; the reader is full at once */
	pthread_mutex_lock(&f->sk.mu); /* the fixture's admin watcher saw them live */
	assert_int_equal(f->sk.n, 100);
	int64_t first = f->sk.ev[0].event_id;
	pthread_mutex_unlock(&f->sk.mu);
	assert_int_equal(hs_tasks_watch(f->tasks, &alice, NULL, false, first, step_send, &s, &w, &err),
			 HS_OK);
	assert_int_equal(s.n, 0);
	int rc, steps = 0;
	do {
		if (steps < 10) { /* stored while the watcher catches up */
			snprintf(id, sizeof(id), "late%d", steps);
			reg(f, &alice, id, 1000, 60000, 0, 0);
		}
		s.room = 7;
		rc = hs_tasks_watch_pump(f->tasks, w, &err);
		steps++;
	} while (rc == HS_LIMIT && steps < 1000);
	assert_int_equal(rc, HS_OK);
	assert_true(steps > 10);
	s.room = 100;
	reg(f, &alice, "live-now", 1000, 60000, 0, 0); /* delivered live */
	assert_int_equal(s.n, 99 + 10 + 1);
	for (size_t i = 0; i < s.n; i++)
		assert_int_equal(s.ev[i].event_id, first + 1 + (int64_t)i);
	assert_string_equal(s.ev[98].task_id, "c099");
	assert_string_equal(s.ev[108].task_id, "late9");
	assert_string_equal(s.ev[109].task_id, "live-now");
	hs_tasks_unwatch(f->tasks, w);
}

/* End to end with the real checkpoint module: files come back byte-exact. */
static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void test_tasks__recovery_with_real_checkpoints(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	close_tasks(f);
	char root[512], repos[512], ws[600], p[700];
	snprintf(root, sizeof(root), "%s/ws", f->dir);
	snprintf(repos, sizeof(repos), "%s/ckpt", f->dir);
	snprintf(ws, sizeof(ws), "%s/job", root);
	mkdir(root, 0700);
	mkdir(ws, 0700);
	hs_ckpt_config cc = { .repos_dir = repos, .workspace_root = root };
	hs_ckpt_mgr *ck;
	assert_int_equal(hs_ckpt_mgr_new(&ck, &cc, &err), HS_OK);
	hs_tasks_config cfg = { 0 };
	cfg.store = f->store;
	cfg.ckpt = ck;
	assert_int_equal(hs_tasks_new(&f->tasks, &cfg, &err), HS_OK);
	assert_int_equal(hs_tasks_watch(f->tasks, &admin, NULL, false, 0, sink_send, &f->sk, &f->w,
					&err),
			 HS_OK);
	snprintf(p, sizeof(p), "%s/a.txt", ws);
	write_file(p, "step three\n");
	hs_ckpt_info info;
	bool unchanged;
	char *push = NULL;
	hs_principal owner = { "usr_alice", false };
	assert_int_equal(hs_ckpt_create(ck, "job", NULL, &owner, 3, "s3", NULL, &info,
					&unchanged, &push, &err),
			 HS_OK);
	char id[HS_CKPT_ID_MAX];
	snprintf(id, sizeof(id), "%s", info.checkpoint_id);
	hs_ckpt_info_dispose(&info);
	reg(f, &alice, "job", 100, 200, 2, 10);
	write_file(p, "half-written garbage");
	snprintf(p, sizeof(p), "%s/junk.tmp", ws);
	write_file(p, "junk");
	int i = sink_wait(&f->sk, HS_TEV_RECOVERY_STARTED, 0, 2000);
	assert_true(i >= 0);
	assert_string_equal(f->sk.ev[i].checkpoint_id, id);
	hs_task_beat_reply r = { 0 };
	for (int k = 0; k < 200; k++) {
		assert_int_equal(beat(f, &alice, "job", 0, &r), HS_OK);
		if (r.instruction == HS_TASK_RESUME)
			break;
		hs_task_beat_reply_dispose(&r);
		usleep(10 * 1000);
	}
	assert_int_equal(r.instruction, HS_TASK_RESUME);
	assert_int_equal(r.resume_step, 3);
	assert_string_equal(r.checkpoint_id, id);
	hs_task_beat_reply_dispose(&r);
	assert_int_equal(access(p, F_OK), -1); /* untracked file removed */
	snprintf(p, sizeof(p), "%s/a.txt", ws);
	char buf[64] = "";
	FILE *fp = fopen(p, "r");
	assert_non_null(fp);
	size_t got = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[got] = '\0';
	assert_string_equal(buf, "step three\n");
	close_tasks(f);
	hs_ckpt_mgr_free(ck);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tasks__state_machine),
		cmocka_unit_test(test_tasks__backoff),
		cmocka_unit_test_setup_teardown(test_tasks__register_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__stall_detected_within_100ms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__recovery_then_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__backoff_and_max_attempts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__no_checkpoint_fails_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__concurrent_recover_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__cancel_via_heartbeat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__ownership_and_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__restart_rearms_deadlines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__drop_policy_and_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__catch_up_in_steps_loses_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tasks__recovery_with_real_checkpoints, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
