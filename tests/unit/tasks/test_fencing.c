/* Fencing through the task registry (issue 12), with a real store and fake
 * recovery ops whose restores wait at a gate the test opens: the stalled
 * agent scenario, a heartbeat between each step of an attempt, a deadline
 * that passed before the heartbeat was handled, a generation from the
 * future, restarts in the middle of a restore and while a restore awaits
 * acknowledgement, an old agent that never acknowledges, and the
 * checkpoint hook. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "fixture.h"

static void reg_policy(fx *f, const char *id, int64_t interval, int64_t timeout,
		       hs_task_policy p)
{
	hs_error err = { 0 };
	hs_task_spec s = { .task_id = id, .heartbeat_interval_ms = interval,
			   .heartbeat_timeout_ms = timeout, .policy = p };
	if (hs_tasks_register(f->tasks, &alice, &s, NULL, &err) != HS_OK)
		fail_msg("register %s: %s", id, err.msg);
}

static hs_task_info info_of(fx *f, const char *id)
{
	hs_task_info info;
	hs_error err = { 0 };
	assert_int_equal(hs_tasks_get(f->tasks, &alice, id, &info, &err), HS_OK);
	return info;
}

static void recover(fx *f, const char *id)
{
	hs_error err = { 0 };
	hs_task_info info;
	if (hs_tasks_recover(f->tasks, &alice, id, "test", &info, &err) != HS_OK)
		fail_msg("recover %s: %s", id, err.msg);
	assert_int_equal(info.state, HS_TASK_RECOVERING);
	hs_task_info_dispose(&info);
}

static int wait_event(fx *f, int type, const char *id, size_t from)
{
	int i = sink_wait(&f->sk, type, id, from, 30000);
	if (i < 0)
		fail_msg("no event %d for %s", type, id);
	return i;
}

/* Issue 12's first finding, through the registry and its timers: a second
 * TIMEOUT after a restore must not let the agent CONTINUE. */
static void test_fencing__stalled_agent_is_never_rolled_back_silently(void **state)
{
	fx *f = *state;
	/* Backoff 50 ms, then 5 s: the second attempt stays far away. */
	reg_policy(f, "s", 100, 300, (hs_task_policy){ 3, 50, 100.0, 10000 });
	pthread_mutex_lock(&f->fk.mu);
	snprintf(f->fk.latest_id, sizeof(f->fk.latest_id), "ckpt-2-000000000002");
	f->fk.latest_step = 2;
	pthread_mutex_unlock(&f->fk.mu);
	assert_int_equal(instruction_of(f, "s", 1, 0), HS_TASK_CONTINUE);
	hs_tasks_note_checkpoint(f->tasks, "s", "ckpt-1-000000000001", 1);
	assert_int_equal(instruction_of(f, "s", 2, 0), HS_TASK_CONTINUE);
	hs_tasks_note_checkpoint(f->tasks, "s", "ckpt-2-000000000002", 2);
	/* The agent goes silent: TIMEOUT, restore to step 2, and no
	 * acknowledgement within the timeout: TIMEOUT again, STALLED. */
	int i = wait_event(f, HS_TEV_TIMEOUT, "s", 0);
	i = wait_event(f, HS_TEV_RECOVERY_STARTED, "s", (size_t)i);
	assert_int_equal(f->sk.ev[i].step, 2);
	i = wait_event(f, HS_TEV_WORKSPACE_RESTORED, "s", (size_t)i);
	i = wait_event(f, HS_TEV_TIMEOUT, "s", (size_t)i);
	assert_int_equal(f->sk.ev[i].state, HS_TASK_STALLED);
	assert_int_equal(f->sk.ev[i].attempt, 1);
	assert_int_equal(state_of(f, "s"), HS_TASK_STALLED);
	/* The agent comes back, still at step 3 in its head. */
	hs_task_beat_reply r;
	for (int k = 0; k < 2; k++) {
		assert_int_equal(beat_gen(f, &alice, "s", 3, 0, &r), HS_OK);
		assert_int_equal(r.instruction, HS_TASK_RESUME);
		assert_int_equal(r.resume_step, 2);
		assert_string_equal(r.checkpoint_id, "ckpt-2-000000000002");
		assert_string_equal(r.external_state, FAKE_EXTERNAL);
		assert_int_equal(r.recovery_generation, 1);
		assert_int_equal(r.state, HS_TASK_STALLED);
		hs_task_beat_reply_dispose(&r);
	}
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERED, "s"), 0);
	assert_int_equal(instruction_of(f, "s", 2, 1), HS_TASK_CONTINUE);
	i = wait_event(f, HS_TEV_RECOVERED, "s", 0);
	assert_int_equal(f->sk.ev[i].recovery_generation, 1);
	hs_task_info info = info_of(f, "s");
	assert_int_equal(info.state, HS_TASK_RUNNING);
	assert_int_equal(info.current_step, 2);
	assert_int_equal(info.next_attempt_ms, 0);
	hs_task_info_dispose(&info);
	assert_int_equal(f->fk.restore_calls, 1);
}

static void test_fencing__heartbeat_between_each_step_of_an_attempt(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	reg(f, &alice, "g", 100, 60000, 3, 1000);
	assert_int_equal(instruction_of(f, "g", 4, 0), HS_TASK_CONTINUE);
	gate(f, true);
	recover(f, "g"); /* RECOVERY_STARTED: generation 1, restore at the gate */
	gate_wait(f, 1);
	hs_task_info info = info_of(f, "g");
	assert_int_equal(info.recovery_generation, 1);
	assert_string_equal(info.resume_checkpoint_id, ""); /* not restored yet */
	hs_task_info_dispose(&info);
	/* Mid-restore: wait; an "acknowledgement" of a restore that has not
	 * finished (the generation read from GetTask) is no acknowledgement. */
	assert_int_equal(instruction_of(f, "g", 4, 0), HS_TASK_WAIT);
	assert_int_equal(instruction_of(f, "g", 4, 1), HS_TASK_WAIT);
	assert_int_equal(state_of(f, "g"), HS_TASK_RECOVERING);
	assert_int_equal(hs_tasks_recover(f->tasks, &alice, "g", "", NULL, &err), HS_CONFLICT);
	gate(f, false);
	wait_event(f, HS_TEV_WORKSPACE_RESTORED, "g", 0);
	assert_int_equal(instruction_of(f, "g", 4, 0), HS_TASK_RESUME);
	assert_int_equal(instruction_of(f, "g", 5, 1), HS_TASK_CONTINUE);
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERED, "g"), 1);
	/* Cancelled while the next restore runs: its result is dropped. */
	gate(f, true);
	recover(f, "g");
	gate_wait(f, 1);
	assert_int_equal(hs_tasks_cancel(f->tasks, &alice, "g", "stop", NULL, &err), HS_OK);
	assert_int_equal(instruction_of(f, "g", 5, 1), HS_TASK_CANCEL);
	gate(f, false);
	close_tasks(f); /* joins the worker: its late result has been handled */
	assert_int_equal(f->fk.restore_calls, 2);
	assert_int_equal(sink_count(&f->sk, HS_TEV_WORKSPACE_RESTORED, "g"), 1);
	reopen_tasks(f);
	info = info_of(f, "g");
	assert_int_equal(info.state, HS_TASK_CANCELLED);
	assert_int_equal(info.recovery_generation, 2);
	hs_task_info_dispose(&info);
}

/* "A resume instruction can be spent on a reply nobody reads": a heartbeat
 * handled after its deadline changes nothing. */
static void test_fencing__late_heartbeat_consumes_nothing(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	hs_task_beat_reply r;
	reg(f, &alice, "d", 100, 60000, 3, 1000);
	recover(f, "d");
	wait_event(f, HS_TEV_WORKSPACE_RESTORED, "d", 0);
	hs_task_beat late = { 9, 0, 1, 1, 1, "late", 1, hs_clock_mono_ms() - 1 };
	assert_int_equal(hs_tasks_heartbeat(f->tasks, &alice, "d", &late, &r, &err), HS_TIMEOUT);
	assert_non_null(strstr(err.msg, "nothing changed"));
	hs_task_info info = info_of(f, "d");
	assert_int_equal(info.state, HS_TASK_RECOVERING);
	assert_int_equal(info.acknowledged_generation, 0);
	assert_int_equal(info.current_step, 5);
	hs_task_info_dispose(&info);
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERED, "d"), 0);
	/* In time: the acknowledgement counts. */
	hs_task_beat ok = late;
	ok.deadline_mono_ms = hs_clock_mono_ms() + 60000;
	assert_int_equal(hs_tasks_heartbeat(f->tasks, &alice, "d", &ok, &r, &err), HS_OK);
	assert_int_equal(r.instruction, HS_TASK_CONTINUE);
	hs_task_beat_reply_dispose(&r);
	/* The hot path too: a late progress report is not recorded. */
	assert_int_equal(hs_tasks_heartbeat(f->tasks, &alice, "d", &late, &r, &err), HS_TIMEOUT);
	info = info_of(f, "d");
	assert_int_equal(info.current_step, 9);
	hs_task_info_dispose(&info);
	late.current_step = 11;
	assert_int_equal(hs_tasks_heartbeat(f->tasks, &alice, "d", &late, &r, &err), HS_TIMEOUT);
	info = info_of(f, "d");
	assert_int_equal(info.current_step, 9);
	hs_task_info_dispose(&info);
}

static void test_fencing__generation_from_the_future_is_refused(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	hs_task_beat_reply r;
	reg(f, &alice, "future", 100, 60000, 3, 1000);
	hs_task_beat b = { 1, 0, 0, 0, 0, NULL, 3, 0 };
	assert_int_equal(hs_tasks_heartbeat(f->tasks, &alice, "future", &b, &r, &err), HS_CONFLICT);
	assert_non_null(strstr(err.msg, "recovery_generation"));
	b.recovery_generation = -1;
	assert_int_equal(hs_tasks_heartbeat(f->tasks, &alice, "future", &b, &r, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "recovery_generation"));
}

/* Usage figures must be finite and >= 0 (red team: +Infinity was stored). */
static void test_fencing__usage_must_be_finite(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	hs_task_beat_reply r;
	reg(f, &alice, "usage", 100, 60000, 3, 1000);
	const double bad[] = { -1.0, NAN, INFINITY, -INFINITY };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hs_task_beat b = { 1, 0, 0, 0, 0, NULL, 0, 0 };
		b.disk_usage_mb = bad[i];
		err = (hs_error){ 0 };
		assert_int_equal(hs_tasks_heartbeat(f->tasks, &alice, "usage", &b, &r, &err), HS_INVALID);
		assert_non_null(strstr(err.msg, "disk_usage_mb"));
		b.disk_usage_mb = 0;
		b.cpu_usage = bad[i];
		err = (hs_error){ 0 };
		assert_int_equal(hs_tasks_heartbeat(f->tasks, &alice, "usage", &b, &r, &err), HS_INVALID);
		assert_non_null(strstr(err.msg, "cpu_usage"));
	}
	hs_task_beat ok = { 1, 0, 12.5, 3, 7, NULL, 0, 0 };
	assert_int_equal(hs_tasks_heartbeat(f->tasks, &alice, "usage", &ok, &r, &err), HS_OK);
	hs_task_beat_reply_dispose(&r);
}

/* kill -9 during a restore, as the store saw it: the restore runs again,
 * same generation, no second RECOVERY_STARTED. */
static void test_fencing__restart_mid_restore_runs_it_again(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	reg(f, &alice, "m", 100, 60000, 3, 1000);
	gate(f, true);
	recover(f, "m");
	gate_wait(f, 1);
	hs_store_task_row *row = malloc(sizeof(*row));
	assert_non_null(row);
	assert_int_equal(hs_store_task_get(f->store, "m", row, &err), HS_OK);
	assert_int_equal(row->state, HS_TASK_RECOVERING);
	assert_false(row->restored);
	assert_int_equal(row->recovery_generation, 1);
	gate(f, false);
	wait_event(f, HS_TEV_WORKSPACE_RESTORED, "m", 0);
	close_tasks(f);
	assert_int_equal(hs_store_task_update(f->store, row, &err), HS_OK); /* the crash */
	free(row);
	reopen_tasks(f);
	int i = wait_event(f, HS_TEV_WORKSPACE_RESTORED, "m", 0);
	assert_int_equal(f->sk.ev[i].recovery_generation, 1);
	assert_int_equal(f->sk.ev[i].attempt, 1);
	assert_int_equal(f->fk.restore_calls, 2);
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERY_STARTED, "m"), 0); /* not again */
	assert_int_equal(instruction_of(f, "m", 0, 0), HS_TASK_RESUME);
	assert_int_equal(instruction_of(f, "m", 5, 1), HS_TASK_CONTINUE);
}

static void test_fencing__restart_while_awaiting_acknowledgement(void **state)
{
	fx *f = *state;
	reg(f, &alice, "w", 100, 60000, 3, 1000);
	reg(f, &alice, "w2", 100, 60000, 3, 1000);
	recover(f, "w");
	recover(f, "w2");
	wait_event(f, HS_TEV_WORKSPACE_RESTORED, "w", 0);
	wait_event(f, HS_TEV_WORKSPACE_RESTORED, "w2", 0);
	hs_task_info before = info_of(f, "w");
	close_tasks(f);
	reopen_tasks(f);
	hs_task_info after = info_of(f, "w");
	assert_int_equal(after.state, HS_TASK_RECOVERING);
	assert_int_equal(after.recovery_generation, 1);
	assert_int_equal(after.next_deadline_ms, before.next_deadline_ms); /* continues */
	assert_string_equal(after.resume_checkpoint_id, FAKE_CKPT);
	hs_task_info_dispose(&before);
	hs_task_info_dispose(&after);
	/* The resume point's external state is read again from the checkpoint. */
	hs_task_beat_reply r;
	assert_int_equal(beat_gen(f, &alice, "w", 0, 0, &r), HS_OK);
	assert_int_equal(r.instruction, HS_TASK_RESUME);
	assert_string_equal(r.external_state, FAKE_EXTERNAL);
	hs_task_beat_reply_dispose(&r);
	assert_int_equal(f->fk.state_calls, 1);
	assert_int_equal(instruction_of(f, "w", 5, 1), HS_TASK_CONTINUE);
	/* Unreadable: wait, never a resume without its state. */
	pthread_mutex_lock(&f->fk.mu);
	f->fk.state_rc = HS_UNAVAILABLE;
	pthread_mutex_unlock(&f->fk.mu);
	assert_int_equal(instruction_of(f, "w2", 0, 0), HS_TASK_WAIT);
	assert_int_equal(state_of(f, "w2"), HS_TASK_RECOVERING);
}

/* A task a harnessd before fencing left RECOVERING (no generation, no
 * resume point): the attempt runs again, now fenced. */
static void test_fencing__recovering_row_from_before_fencing_recovers_again(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	reg(f, &alice, "old-row", 100, 60000, 3, 50);
	hs_store_task_row *row = malloc(sizeof(*row));
	assert_non_null(row);
	close_tasks(f);
	assert_int_equal(hs_store_task_get(f->store, "old-row", row, &err), HS_OK);
	row->state = HS_TASK_RECOVERING;
	row->recovery_attempts = 1;
	row->recovery_generation = row->acked_generation = row->base_generation = 0;
	row->resume_checkpoint_id[0] = '\0';
	row->deadline_ms = 0;
	assert_int_equal(hs_store_task_update(f->store, row, &err), HS_OK);
	free(row);
	reopen_tasks(f);
	int i = wait_event(f, HS_TEV_RECOVERY_STARTED, "old-row", 0);
	assert_int_equal(f->sk.ev[i].recovery_generation, 1);
	assert_int_equal(f->sk.ev[i].attempt, 1); /* the interrupted attempt, again */
	wait_event(f, HS_TEV_WORKSPACE_RESTORED, "old-row", 0);
	assert_int_equal(instruction_of(f, "old-row", 0, 0), HS_TASK_RESUME);
	assert_int_equal(instruction_of(f, "old-row", 5, 1), HS_TASK_CONTINUE);
}

static void test_fencing__old_agent_that_never_acknowledges_fails_the_task(void **state)
{
	fx *f = *state;
	reg_policy(f, "old", 100, 300, (hs_task_policy){ 2, 50, 1.0, 50 });
	assert_int_equal(instruction_of(f, "old", 1, 0), HS_TASK_CONTINUE);
	recover(f, "old");
	/* It beats every 100 ms but never sends a generation. */
	int continues = 0, replies = 0;
	for (int k = 0; k < 300 && state_of(f, "old") != HS_TASK_FAILED; k++) {
		int ins = instruction_of(f, "old", 3, 0);
		continues += ins == HS_TASK_CONTINUE;
		replies++;
		usleep(100 * 1000);
	}
	assert_int_equal(state_of(f, "old"), HS_TASK_FAILED);
	assert_int_equal(continues, 0);
	/* How many beats fit before it fails depends on the machine's speed;
	 * at least one was answered (the loop starts while it recovers). */
	assert_true(replies >= 1);
	assert_int_equal(instruction_of(f, "old", 3, 0), HS_TASK_CANCEL);
	int i = wait_event(f, HS_TEV_RECOVERY_FAILED, "old", 0);
	assert_non_null(strstr(f->sk.ev[i].message, "did not acknowledge"));
	assert_int_equal(sink_count(&f->sk, HS_TEV_RECOVERED, "old"), 0);
}

static void test_fencing__checkpoint_hook_is_persisted(void **state)
{
	fx *f = *state;
	reg(f, &alice, "h", 100, 60000, 3, 1000);
	hs_tasks_note_checkpoint(f->tasks, "h", "ckpt-4-000000000004", 4);
	hs_tasks_note_checkpoint(f->tasks, "h", "ckpt-6-000000000006", 6);
	assert_int_equal(sink_count(&f->sk, 0, "h"), 1); /* REGISTERED only */
	close_tasks(f);
	reopen_tasks(f);
	hs_task_info info = info_of(f, "h");
	assert_string_equal(info.last_checkpoint_id, "ckpt-6-000000000006");
	assert_int_equal(info.last_checkpoint_step, 6);
	assert_int_equal(info.state, HS_TASK_RUNNING);
	hs_task_info_dispose(&info);
	/* Checkpoints do not count as heartbeats: no state change, no event. */
	assert_int_equal(sink_count(&f->sk, 0, "h"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fencing__stalled_agent_is_never_rolled_back_silently,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_fencing__heartbeat_between_each_step_of_an_attempt,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_fencing__late_heartbeat_consumes_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fencing__usage_must_be_finite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fencing__generation_from_the_future_is_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_fencing__restart_mid_restore_runs_it_again, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fencing__restart_while_awaiting_acknowledgement,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_fencing__recovering_row_from_before_fencing_recovers_again, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_fencing__old_agent_that_never_acknowledges_fails_the_task, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fencing__checkpoint_hook_is_persisted, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
