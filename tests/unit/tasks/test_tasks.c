/* Unit tests for the task registry (server/tasks) with a real store and
 * tenancy and injected recovery ops: backoff, validation, ownership, stall
 * detection, retries and max attempts, one recovery at a time,
 * cancellation, restart re-arming, the watcher drop policy and replay, and
 * recovery through the real checkpoint module. Fencing has its own file
 * (test_fencing.c), the state machine alone too (test_fsm.c). */
#include <fcntl.h>
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
#include "fixture.h"

/* ---- pure functions ------------------------------------------------------ */

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
	assert_string_equal(hs_task_state_name(HS_TASK_RECOVERING), "RECOVERING");
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
	s.workspace = "/etc";
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, NULL, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "workspace"));
	s.workspace = NULL;
	/* Labels follow common/labels.h, decided in the module. */
	hs_label bad_key[] = { { "no spaces", "v" } };
	s.labels = bad_key;
	s.n_labels = 1;
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, NULL, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "labels"));
	hs_label ctl[] = { { "k", "line\nbreak" } };
	s.labels = ctl;
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, NULL, &err), HS_INVALID);
	hs_label dup[] = { { "k", "a" }, { "k", "b" } };
	s.labels = dup;
	s.n_labels = 2;
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s, NULL, &err), HS_INVALID);
	s.labels = NULL;
	s.n_labels = 0;
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
	/* Another user's id: taken, whether registered or only claimed. */
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_register(f->tasks, &bob, &s, NULL, &err), HS_EXISTS);
	assert_non_null(strstr(err.msg, "task id taken"));
	assert_int_equal(hs_tenancy_claim_task(f->ten, &alice, "alices-ckpts", &err), HS_OK);
	s.task_id = "alices-ckpts";
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_register(f->tasks, &bob, &s, NULL, &err), HS_EXISTS);
	assert_non_null(strstr(err.msg, "task id taken"));
	/* Another user's workspace: not found (the attack: bob's task restoring
	 * checkpoints into alice's workspace). */
	s.task_id = "bobs";
	s.workspace = "alices-ckpts/sub";
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_register(f->tasks, &bob, &s, NULL, &err), HS_NOT_FOUND);
	assert_non_null(strstr(err.msg, "workspace"));
	/* ... and nothing of bob's was registered. */
	assert_int_equal(hs_tasks_get(f->tasks, &bob, "bobs", NULL, &err), HS_NOT_FOUND);
	/* A workspace under an id nobody holds is claimed with the task. */
	s.workspace = "bobs-ws/sub";
	assert_int_equal(hs_tasks_register(f->tasks, &bob, &s, &info, &err), HS_OK);
	assert_string_equal(info.workspace, "bobs-ws/sub");
	hs_task_info_dispose(&info);
	assert_int_equal(hs_tenancy_check_task(f->ten, &alice, "bobs-ws", NULL, &err), HS_NOT_FOUND);
	/* An admin registering a user's claimed id: the task is the user's. */
	s.task_id = "alices-ckpts";
	s.workspace = NULL;
	assert_int_equal(hs_tasks_register(f->tasks, &admin, &s, &info, &err), HS_OK);
	assert_string_equal(info.owner, "usr_alice");
	hs_task_info_dispose(&info);
}

static void test_tasks__stall_detected_at_deadline(void **state)
{
	fx *f = *state;
	f->fk.latest_rc = HS_NOT_FOUND;
	int64_t t0 = now_ms();
	reg(f, &alice, "slow", 100, 300, 1, 60000);
	/* "alive" has a 1 s timeout and beats every 100 ms for 1.2 s, past
	 * its first deadline: only a 1 s gap between two beats (a very loaded
	 * machine) could stall it. */
	reg(f, &alice, "alive", 100, 1000, 1, 60000);
	hs_task_beat_reply r;
	for (int i = 0; i < 12; i++) {
		usleep(100 * 1000);
		assert_int_equal(beat(f, &alice, "alive", i, &r), HS_OK);
		assert_int_equal(r.instruction, HS_TASK_CONTINUE);
		hs_task_beat_reply_dispose(&r);
	}
	int i = sink_wait(&f->sk, HS_TEV_TIMEOUT, NULL, 0, 30000);
	assert_true(i >= 0);
	assert_string_equal(f->sk.ev[i].task_id, "slow");
	/* Never before the deadline (1 ms of slack: both stamps are truncated
	 * wall-clock ms). No upper bound: how late a timer fires depends on the
	 * machine's load; the lag (p50 0 ms, p99 a few ms with 100,000 tasks)
	 * is measured by bench/tasks_bench.sh. */
	int64_t lag = f->sk.ev[i].occurred_at_ms - (t0 + 300);
	assert_true(lag >= -1);
	assert_int_equal(state_of(f, "slow"), HS_TASK_STALLED);
	assert_int_equal(state_of(f, "alive"), HS_TASK_RUNNING);
	assert_int_equal(sink_count(&f->sk, HS_TEV_TIMEOUT, NULL), 1);
}

typedef struct beat_done_rec {
	pthread_mutex_t mu;
	int calls, rc;
} beat_done_rec;

static void beat_done_cb(void *arg, int rc, const hs_error *err)
{
	beat_done_rec *d = arg;
	pthread_mutex_lock(&d->mu);
	d->calls++;
	d->rc = rc;
	pthread_mutex_unlock(&d->mu);
}

static int beat_done_wait(beat_done_rec *d, int calls)
{
	for (int i = 0; i < 30000; i++) {
		pthread_mutex_lock(&d->mu);
		int n = d->calls;
		pthread_mutex_unlock(&d->mu);
		if (n >= calls)
			return n;
		usleep(1000);
	}
	return -1;
}

/* The non-blocking heartbeat: a beat of a running task is queued for the
 * group commit and answered through the callback (the row is in the store
 * by then); a state change goes to the blocking path and changes nothing;
 * another user's task is NOT_FOUND. */
static void test_tasks__heartbeat_start(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	hs_task_beat_reply r;
	beat_done_rec d = { .mu = PTHREAD_MUTEX_INITIALIZER };
	reg(f, &alice, "hot", 1000, 60000, 1, 60000);
	hs_task_beat b = { .current_step = 3, .total_steps = 10, .details = "on the hot path" };
	assert_int_equal(state_of(f, "hot"), HS_TASK_RUNNING);
	assert_int_equal(hs_tasks_heartbeat_start(f->tasks, &alice, "hot", &b, &r, beat_done_cb, &d,
						  &err), HS_TASKS_PENDING);
	assert_int_equal(r.instruction, HS_TASK_CONTINUE);
	assert_int_equal(r.state, HS_TASK_RUNNING);
	assert_true(r.next_deadline_ms > 0);
	assert_int_equal(beat_done_wait(&d, 1), 1);
	assert_int_equal(d.rc, HS_OK);
	hs_store_task_row *row = calloc(1, sizeof(*row));
	assert_int_equal(hs_store_task_get(f->store, "hot", row, &err), HS_OK);
	assert_int_equal(row->current_step, 3);
	assert_string_equal(row->details, "on the hot path");
	free(row);
	/* another user's task */
	assert_int_equal(hs_tasks_heartbeat_start(f->tasks, &bob, "hot", &b, &r, beat_done_cb, &d,
						  &err), HS_NOT_FOUND);
	/* cancelled: the next beat's answer is a state change -> blocking path */
	hs_task_info info;
	assert_int_equal(hs_tasks_cancel(f->tasks, &alice, "hot", "stop", &info, &err), HS_OK);
	hs_task_info_dispose(&info);
	int rc = hs_tasks_heartbeat_start(f->tasks, &alice, "hot", &b, &r, beat_done_cb, &d, &err);
	assert_true(rc == HS_OK || rc == HS_TASKS_BLOCKS);
	if (rc == HS_OK)
		assert_int_equal(r.instruction, HS_TASK_CANCEL);
	usleep(20 * 1000);
	pthread_mutex_lock(&d.mu);
	assert_int_equal(d.calls, 1); /* no write was queued */
	pthread_mutex_unlock(&d.mu);
}

/* Small pages over many tasks (the bounded-heap selection) give exactly
 * the order of one big page (the full sort), each task once. */
static void test_tasks__small_pages_match_one_big_page(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	char id[32];
	for (int i = 0; i < 40; i++) {
		snprintf(id, sizeof(id), "pg-%02d", (i * 7) % 40);
		reg(f, &alice, id, 1000, 60000, 1, 60000);
	}
	hs_task_list_opts big = { .page_size = 1000 };
	hs_task_info *all = NULL, *arr = NULL;
	size_t n_all = 0, n = 0;
	char *next = NULL;
	assert_int_equal(hs_tasks_list(f->tasks, &alice, &big, &all, &n_all, &next, &err), HS_OK);
	assert_null(next);
	assert_int_equal(n_all, 40);
	size_t seen = 0;
	char *tok = NULL;
	do {
		hs_task_list_opts o = { .page_size = 3, .page_token = tok };
		assert_int_equal(hs_tasks_list(f->tasks, &alice, &o, &arr, &n, &next, &err), HS_OK);
		for (size_t i = 0; i < n; i++, seen++) {
			assert_true(seen < n_all);
			assert_string_equal(arr[i].task_id, all[seen].task_id);
		}
		hs_task_info_array_free(arr, n);
		free(tok);
		tok = next;
	} while (tok != NULL);
	assert_int_equal(seen, n_all);
	hs_task_info_array_free(all, n_all);
}

static void test_tasks__recovery_then_resume(void **state)
{
	fx *f = *state;
	reg(f, &alice, "t", 100, 200, 3, 50);
	hs_task_beat_reply r;
	assert_int_equal(beat(f, &alice, "t", 7, &r), HS_OK);
	assert_int_equal(r.recovery_generation, 0);
	hs_task_beat_reply_dispose(&r);
	assert_true(sink_wait(&f->sk, HS_TEV_TIMEOUT, NULL, 0, 30000) >= 0);
	int i = sink_wait(&f->sk, HS_TEV_RECOVERY_STARTED, NULL, 0, 30000);
	assert_true(i >= 0);
	assert_int_equal(f->sk.ev[i].step, 5);
	assert_string_equal(f->sk.ev[i].checkpoint_id, FAKE_CKPT);
	assert_int_equal(f->sk.ev[i].attempt, 1);
	assert_int_equal(f->sk.ev[i].recovery_generation, 1);
	i = sink_wait(&f->sk, HS_TEV_WORKSPACE_RESTORED, NULL, 0, 30000);
	assert_true(i >= 0);
	assert_int_equal(f->sk.ev[i].state, HS_TASK_RECOVERING);
	hs_task_info info;
	hs_error err = { 0 };
	assert_int_equal(hs_tasks_get(f->tasks, &alice, "t", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_TASK_RECOVERING);
	assert_int_equal(info.recovery_generation, 1);
	assert_int_equal(info.acknowledged_generation, 0);
	assert_string_equal(info.resume_checkpoint_id, FAKE_CKPT);
	assert_string_equal(info.last_checkpoint_id, FAKE_CKPT);
	assert_int_equal(info.current_step, 5);
	hs_task_info_dispose(&info);
	/* The agent (generation 0) is told to resume, with the checkpoint's
	 * external state, as often as it asks, until it acknowledges. */
	for (int k = 0; k < 2; k++) {
		assert_int_equal(beat(f, &alice, "t", 9, &r), HS_OK);
		assert_int_equal(r.instruction, HS_TASK_RESUME);
		assert_int_equal(r.state, HS_TASK_RECOVERING);
		assert_int_equal(r.resume_step, 5);
		assert_int_equal(r.recovery_generation, 1);
		assert_string_equal(r.checkpoint_id, FAKE_CKPT);
		assert_string_equal(r.details, "d");
		assert_string_equal(r.external_state, FAKE_EXTERNAL);
		hs_task_beat_reply_dispose(&r);
	}
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERED, NULL), 0);
	/* The acknowledgement. */
	assert_int_equal(beat_gen(f, &alice, "t", 5, 1, &r), HS_OK);
	assert_int_equal(r.instruction, HS_TASK_CONTINUE);
	assert_int_equal(r.state, HS_TASK_RUNNING);
	assert_int_equal(r.recovery_generation, 1);
	assert_null(r.external_state);
	hs_task_beat_reply_dispose(&r);
	i = sink_wait(&f->sk, HS_TEV_RECOVERED, NULL, 0, 30000);
	assert_true(i >= 0);
	assert_int_equal(f->sk.ev[i].step, 5);
	assert_int_equal(f->sk.ev[i].recovery_generation, 1);
	assert_int_equal(hs_tasks_get(f->tasks, &alice, "t", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_TASK_RUNNING);
	assert_int_equal(info.recovery_attempts, 0);
	assert_int_equal(info.acknowledged_generation, 1);
	assert_string_equal(info.resume_checkpoint_id, "");
	hs_task_info_dispose(&info);
	/* Next heartbeat: plain continue; exactly one RECOVERED. */
	assert_int_equal(instruction_of(f, "t", 6, 1), HS_TASK_CONTINUE);
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERED, NULL), 1);
	assert_int_equal(hs_tasks_complete(f->tasks, &alice, "t", true, "done", NULL, &err), HS_OK);
}

static void test_tasks__backoff_and_max_attempts(void **state)
{
	fx *f = *state;
	f->fk.restore_fail = 1000;
	reg(f, &alice, "bad", 100, 200, 3, 100); /* delays 100, 200, 400 */
	size_t from = 0;
	int64_t at[3];
	for (int a = 0; a < 3; a++) {
		int i = sink_wait(&f->sk, HS_TEV_RECOVERY_FAILED, NULL, from, 30000);
		assert_true(i >= 0);
		assert_int_equal(f->sk.ev[i].attempt, a + 1);
		assert_non_null(strstr(f->sk.ev[i].message, "disk on fire"));
		assert_int_equal(f->sk.ev[i].state, a < 2 ? HS_TASK_STALLED : HS_TASK_FAILED);
		/* Server-stamped: the backoff is counted from the failure's own
		 * time, so receipt times (after each fsync) would blur it. */
		at[a] = f->sk.ev[i].occurred_at_ms;
		from = (size_t)i + 1;
	}
	/* The backoff is never cut short (a lower bound, not a speed check). */
	assert_true(at[1] - at[0] >= 200);
	assert_true(at[2] - at[1] >= 400);
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
	int i = sink_wait(&f->sk, HS_TEV_RECOVERY_FAILED, NULL, 0, 30000);
	assert_true(i >= 0);
	assert_string_equal(f->sk.ev[i].message, "no checkpoint to recover from");
	assert_int_equal(f->sk.ev[i].state, HS_TASK_FAILED);
	assert_int_equal(state_of(f, "nock"), HS_TASK_FAILED);
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERY_STARTED, NULL), 0);
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
	/* Mid-restore heartbeat: wait, never continue. */
	hs_task_beat_reply r;
	assert_int_equal(beat(f, &alice, "c", 1, &r), HS_OK);
	assert_int_equal(r.state, HS_TASK_RECOVERING);
	assert_int_equal(r.instruction, HS_TASK_WAIT);
	hs_task_beat_reply_dispose(&r);
	assert_true(sink_wait(&f->sk, HS_TEV_WORKSPACE_RESTORED, NULL, 0, 30000) >= 0);
	assert_int_equal(f->fk.restore_calls, 1);
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERY_STARTED, NULL), 1);
	int i = sink_wait(&f->sk, HS_TEV_RECOVERY_STARTED, NULL, 0, 0);
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
	assert_true(sink_wait(&f->sk, HS_TEV_CANCELLED, NULL, 0, 30000) >= 0);
	/* Completed: heartbeat is FAILED_PRECONDITION. */
	reg(f, &alice, "y", 1000, 60000, 0, 0);
	assert_int_equal(hs_tasks_complete(f->tasks, &alice, "y", true, "ok", &info, &err), HS_OK);
	assert_string_equal(info.result_message, "ok");
	hs_task_info_dispose(&info);
	assert_int_equal(beat(f, &alice, "y", 1, &r), HS_CONFLICT);
	/* Re-registration of a terminal task. */
	reg(f, &alice, "y", 1000, 60000, 0, 0);
}

static int reg_rc(fx *f, const hs_principal *c, const char *id, hs_error *err)
{
	hs_task_spec s = { .task_id = id, .heartbeat_interval_ms = 1000,
			   .heartbeat_timeout_ms = 60000 };
	hs_error_clear(err);
	return hs_tasks_register(f->tasks, c, &s, NULL, err);
}

/* One user cannot take every task slot: past max_tasks_per_user a new id
 * is HS_LIMIT naming the limit; terminal tasks count (they stay in
 * memory), re-running one does not; the refused id is not claimed; the
 * count survives a restart; other users and admins go on. */
static void test_tasks__per_user_limit(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	close_tasks(f);
	f->max_tasks_per_user = 3;
	open_tasks(f);
	reg(f, &alice, "a0", 1000, 60000, 0, 0);
	reg(f, &alice, "a1", 1000, 60000, 0, 0);
	reg(f, &alice, "a2", 1000, 60000, 0, 0);
	assert_int_equal(reg_rc(f, &alice, "a3", &err), HS_LIMIT);
	assert_non_null(strstr(err.msg, "--max-tasks-per-user"));
	assert_non_null(strstr(err.msg, "is 3"));
	assert_int_equal(hs_tasks_complete(f->tasks, &alice, "a0", true, "", NULL, &err), HS_OK);
	assert_int_equal(reg_rc(f, &alice, "a3", &err), HS_LIMIT);
	assert_int_equal(reg_rc(f, &alice, "a0", &err), HS_OK); /* a new run, not a new task */
	/* after a restart the count is rebuilt from the store */
	close_tasks(f);
	open_tasks(f);
	assert_int_equal(reg_rc(f, &alice, "a3", &err), HS_LIMIT);
	/* bob is not locked out, and a3 was never claimed for alice */
	assert_int_equal(reg_rc(f, &bob, "a3", &err), HS_OK);
	for (int i = 0; i < 5; i++) {
		char id[16];
		snprintf(id, sizeof(id), "adm%d", i);
		assert_int_equal(reg_rc(f, &admin, id, &err), HS_OK);
	}
	hs_task_info info;
	assert_int_equal(hs_tasks_get(f->tasks, &bob, "a3", &info, &err), HS_OK);
	assert_string_equal(info.owner, "usr_bob");
	hs_task_info_dispose(&info);
}

static void test_tasks__ownership_and_list(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	reg(f, &alice, "a1", 1000, 60000, 0, 0);
	usleep(2000);
	hs_task_spec s2 = { .task_id = "a2", .heartbeat_interval_ms = 1000,
			    .heartbeat_timeout_ms = 60000 };
	hs_label team[] = { { "team", "ml" }, { "tier", "gold" } };
	s2.labels = team;
	s2.n_labels = 2;
	assert_int_equal(hs_tasks_register(f->tasks, &alice, &s2, NULL, &err), HS_OK);
	reg(f, &bob, "b1", 1000, 60000, 0, 0);
	hs_task_info info;
	/* One rule for every resource: another user's task is not found. */
	assert_int_equal(hs_tasks_get(f->tasks, &bob, "a1", &info, &err), HS_NOT_FOUND);
	assert_string_equal(err.msg, "task a1 not found");
	hs_error_clear(&err);
	assert_int_equal(hs_tasks_get(f->tasks, &bob, "nope", &info, &err), HS_NOT_FOUND);
	assert_string_equal(err.msg, "task nope not found");
	hs_task_beat_reply r;
	assert_int_equal(beat(f, &bob, "a1", 1, &r), HS_NOT_FOUND);
	assert_int_equal(hs_tasks_cancel(f->tasks, &bob, "a1", "", NULL, &err), HS_NOT_FOUND);
	assert_int_equal(hs_tasks_complete(f->tasks, &bob, "a1", true, "", NULL, &err), HS_NOT_FOUND);
	assert_int_equal(hs_tasks_recover(f->tasks, &bob, "a1", "", NULL, &err), HS_NOT_FOUND);
	assert_int_equal(state_of(f, "a1"), HS_TASK_RUNNING);
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
	/* Label selector (common/labels.h), inside the module, before paging. */
	hs_label sel[] = { { "team", "ml" } };
	hs_task_list_opts by_label = { .selector = sel, .n_selector = 1, .page_size = 1 };
	assert_int_equal(hs_tasks_list(f->tasks, &admin, &by_label, &arr, &n, &next, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(arr[0].task_id, "a2");
	assert_string_equal(arr[0].labels_json, "{\"team\":\"ml\",\"tier\":\"gold\"}");
	assert_null(next);
	hs_task_info_array_free(arr, n);
	hs_label bad_sel[] = { { "bad key", "x" } };
	by_label.selector = bad_sel;
	assert_int_equal(hs_tasks_list(f->tasks, &admin, &by_label, &arr, &n, &next, &err),
			 HS_INVALID);
	hs_task_list_opts neg = { .page_size = -1 };
	assert_int_equal(hs_tasks_list(f->tasks, &admin, &neg, &arr, &n, &next, &err), HS_INVALID);
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
	hs_task_watch *w2 = NULL;
	assert_int_equal(hs_tasks_watch(f->tasks, &bob, "a1", false, 0, sink_send, &bs, &w2, &err),
			 HS_NOT_FOUND);
	hs_tasks_unwatch(f->tasks, w);
	pthread_mutex_destroy(&bs.mu);
}

/* One tenant cannot take every watcher slot (red team, issue 18): bob may
 * hold max_watchers / 8 watchers (128 of the default 1024); then alice and
 * the admin still get theirs. Before, bob could open all 1024 and every
 * other user's WatchTasks was RESOURCE_EXHAUSTED. */
static void test_tasks__watchers_per_user(void **state)
{
	fx *f = *state;
	enum { PER_USER = 1024 / 8 };
	sink s;
	sink_init(&s);
	hs_error err = { 0 };
	hs_task_watch *mine[PER_USER + 1];
	for (int i = 0; i < PER_USER; i++)
		assert_int_equal(hs_tasks_watch(f->tasks, &bob, NULL, false, 0, sink_send, &s, &mine[i],
						&err),
				 HS_OK);
	hs_task_watch *extra = NULL;
	assert_int_equal(hs_tasks_watch(f->tasks, &bob, NULL, false, 0, sink_send, &s, &extra, &err),
			 HS_LIMIT);
	assert_non_null(strstr(err.msg, "for this user"));
	assert_null(extra);
	hs_task_watch *wa = NULL, *wadm = NULL;
	assert_int_equal(hs_tasks_watch(f->tasks, &alice, NULL, false, 0, sink_send, &s, &wa, &err),
			 HS_OK);
	assert_int_equal(hs_tasks_watch(f->tasks, &admin, NULL, false, 0, sink_send, &s, &wadm, &err),
			 HS_OK);
	/* a slot freed is bob's again */
	hs_tasks_unwatch(f->tasks, mine[0]);
	assert_int_equal(hs_tasks_watch(f->tasks, &bob, NULL, false, 0, sink_send, &s, &mine[0], &err),
			 HS_OK);
	for (int i = 0; i < PER_USER; i++)
		hs_tasks_unwatch(f->tasks, mine[i]);
	hs_tasks_unwatch(f->tasks, wa);
	hs_tasks_unwatch(f->tasks, wadm);
	pthread_mutex_destroy(&s.mu);
}

static void test_tasks__restart_rearms_deadlines(void **state)
{
	fx *f = *state;
	f->fk.latest_rc = HS_NOT_FOUND;
	reg(f, &alice, "r1", 100, 2000, 1, 60000);
	reg(f, &alice, "r2", 100, 60000, 1, 60000);
	int64_t last = f->sk.ev[f->sk.n - 1].event_id;
	close_tasks(f);
	usleep(2100 * 1000); /* r1's deadline passes while "down" */
	int64_t t0 = now_ms();
	open_tasks(f); /* the timeout may fire before its watcher is there: */
	sink s;
	sink_init(&s);
	hs_task_watch *w;
	hs_error err = { 0 };
	assert_int_equal(hs_tasks_watch(f->tasks, &admin, NULL, false, last, sink_send, &s, &w, &err),
			 HS_OK);
	int i = sink_wait(&s, HS_TEV_TIMEOUT, NULL, 0, 30000);
	assert_true(i >= 0);
	assert_string_equal(s.ev[i].task_id, "r1");
	/* At once, not after a fresh 2 s timeout (the deadline is the last
	 * heartbeat + timeout, already past). A fresh timer armed at open
	 * could not fire before t0 + 2000 (a timer never fires early), so that
	 * is the bound: it fails only if opening the registry took 2 s. */
	assert_true(s.ev[i].occurred_at_ms - t0 < 2000);
	assert_int_equal(state_of(f, "r2"), HS_TASK_RUNNING);
	/* Event ids continue across restarts. */
	assert_int_equal(s.ev[0].event_id, last + 1);
	hs_tasks_unwatch(f->tasks, w);
	pthread_mutex_destroy(&s.mu);
	pthread_cond_destroy(&s.cv);
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
	cfg.tenancy = f->ten;
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
	reg(f, &alice, "job", 100, 200, 2, 10);
	assert_int_equal(hs_ckpt_create(ck, "job", NULL, &owner, 3, "s3", "{\"calls\":[\"api-1\"]}",
					&info, &unchanged, &push, &err),
			 HS_OK);
	char id[HS_CKPT_ID_MAX];
	snprintf(id, sizeof(id), "%s", info.checkpoint_id);
	hs_ckpt_info_dispose(&info);
	/* What main.c's on_create hook does: the task follows its checkpoints. */
	hs_tasks_note_checkpoint(f->tasks, "job", id, 3);
	hs_tasks_note_checkpoint(f->tasks, "nobody-registered-this", id, 3); /* ignored */
	hs_tasks_note_checkpoint(NULL, "job", id, 3);                       /* no-op */
	hs_task_info ti;
	assert_int_equal(hs_tasks_get(f->tasks, &alice, "job", &ti, &err), HS_OK);
	assert_string_equal(ti.last_checkpoint_id, id);
	assert_int_equal(ti.last_checkpoint_step, 3);
	hs_task_info_dispose(&ti);
	write_file(p, "half-written garbage");
	snprintf(p, sizeof(p), "%s/junk.tmp", ws);
	write_file(p, "junk");
	int i = sink_wait(&f->sk, HS_TEV_RECOVERY_STARTED, NULL, 0, 30000);
	assert_true(i >= 0);
	assert_string_equal(f->sk.ev[i].checkpoint_id, id);
	hs_task_beat_reply r = { 0 };
	for (int k = 0; k < 3000; k++) {
		assert_int_equal(beat(f, &alice, "job", 0, &r), HS_OK);
		if (r.instruction == HS_TASK_RESUME)
			break;
		hs_task_beat_reply_dispose(&r);
		usleep(10 * 1000);
	}
	assert_int_equal(r.instruction, HS_TASK_RESUME);
	assert_int_equal(r.resume_step, 3);
	assert_string_equal(r.checkpoint_id, id);
	assert_string_equal(r.external_state, "{\"calls\":[\"api-1\"]}");
	int64_t gen = r.recovery_generation;
	hs_task_beat_reply_dispose(&r);
	assert_int_equal(instruction_of(f, "job", 3, gen), HS_TASK_CONTINUE);
	assert_int_equal(state_of(f, "job"), HS_TASK_RUNNING);
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
		cmocka_unit_test(test_tasks__backoff),
		cmocka_unit_test_setup_teardown(test_tasks__register_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__stall_detected_at_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__heartbeat_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__small_pages_match_one_big_page, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tasks__recovery_then_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__backoff_and_max_attempts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__no_checkpoint_fails_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__concurrent_recover_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__cancel_via_heartbeat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__ownership_and_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__watchers_per_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__restart_rearms_deadlines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__drop_policy_and_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__per_user_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tasks__catch_up_in_steps_loses_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tasks__recovery_with_real_checkpoints, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
