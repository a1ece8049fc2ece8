/* Unit tests for the task state machine alone (server/tasks/fsm.c, pure):
 * every reachable state under every input keeps the invariants and the
 * fencing rule (an exhaustive walk), and the stalled-agent scenario of
 * issue 12 with a heartbeat arriving in each state and between each step
 * of an attempt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fsm.h"

static hs_task_fsm fresh(int32_t max_attempts)
{
	hs_task_policy p = { max_attempts, 100, 2.0, 1000 };
	hs_task_fsm m;
	hs_task_fsm_init(&m, 10, 200, 600, &p, 1000);
	return m;
}

static hs_task_input in_of(hs_task_input_kind kind, int64_t now)
{
	hs_task_input in;
	memset(&in, 0, sizeof(in));
	in.kind = kind;
	in.now_ms = now;
	return in;
}

/* Apply one input to m; returns the decision. */
static hs_task_decision step(hs_task_fsm *m, const hs_task_input *in)
{
	hs_task_decision d;
	hs_task_decide("t", m, in, &d);
	if (d.rc == HS_OK)
		*m = d.next;
	return d;
}

static hs_task_decision beat_at(hs_task_fsm *m, int64_t gen, int64_t stp, int64_t now)
{
	hs_task_input in = in_of(HS_TIN_BEAT, now);
	in.generation = gen;
	in.step = stp;
	return step(m, &in);
}

static hs_task_decision start_at(hs_task_fsm *m, const char *ckpt, int64_t stp, bool manual,
				 int64_t now)
{
	hs_task_input in = in_of(HS_TIN_START, now);
	in.checkpoint_id = ckpt;
	in.checkpoint_step = stp;
	in.manual = manual;
	in.message = manual ? "RecoverTask" : "heartbeat timeout";
	return step(m, &in);
}

static hs_task_decision restored_at(hs_task_fsm *m, int64_t now)
{
	hs_task_input in = in_of(HS_TIN_RESTORED, now);
	in.job_gen = m->gen;
	return step(m, &in);
}

static hs_task_decision deadline_at(hs_task_fsm *m, int64_t now)
{
	hs_task_input in = in_of(HS_TIN_DEADLINE, now);
	return step(m, &in);
}

static void checkpoint_at(hs_task_fsm *m, const char *id, int64_t stp)
{
	hs_task_input in = in_of(HS_TIN_CHECKPOINT, 0);
	in.checkpoint_id = id;
	in.checkpoint_step = stp;
	step(m, &in);
}

/* ---- the exhaustive walk --------------------------------------------------- */

#define MAX_SEEN 20000
#define N_INPUTS 20

typedef struct key {
	int state, attempts;
	int64_t gen, base, acked;
	bool restored, armed;
} key;

static key key_of(const hs_task_fsm *m)
{
	key k = { m->state, m->attempts, m->gen, m->base_gen, m->acked_gen, m->restored,
		  m->deadline_ms != 0 };
	return k;
}

static bool same_key(const key *a, const key *b)
{
	return a->state == b->state && a->attempts == b->attempts && a->gen == b->gen &&
	       a->base == b->base && a->acked == b->acked && a->restored == b->restored &&
	       a->armed == b->armed;
}

/* The i-th input to try on m (inputs depend on m's generation). */
static hs_task_input nth_input(const hs_task_fsm *m, int i, int64_t now)
{
	static const char *ckpt = "ckpt-2-000000000002";
	hs_task_input in = in_of(HS_TIN_BEAT, now);
	in.step = 3;
	switch (i) {
	case 0: in.generation = 0; break;
	case 1: in.generation = m->gen > 0 ? m->gen - 1 : 0; break;
	case 2: in.generation = m->gen; break;
	case 3: in.generation = m->gen + 1; break;
	case 4: in.kind = HS_TIN_DEADLINE; break;
	case 5: in.kind = HS_TIN_START; in.manual = true; in.checkpoint_id = ckpt; in.checkpoint_step = 2; break;
	case 6: in.kind = HS_TIN_START; in.checkpoint_id = ckpt; in.checkpoint_step = 2; break;
	case 7: in.kind = HS_TIN_RESTORED; in.job_gen = m->gen; break;
	case 8: in.kind = HS_TIN_RESTORED; in.job_gen = m->gen - 1; break;
	case 9: in.kind = HS_TIN_ATTEMPT_FAILED; in.before_start = true; in.message = "x"; break;
	case 10: in.kind = HS_TIN_ATTEMPT_FAILED; in.before_start = true; in.final = true; in.message = "none"; break;
	case 11: in.kind = HS_TIN_ATTEMPT_FAILED; in.job_gen = m->gen; in.message = "disk"; break;
	case 12: in.kind = HS_TIN_ATTEMPT_FAILED; in.job_gen = m->gen - 1; in.message = "old"; break;
	case 13: in.kind = HS_TIN_COMPLETE; in.success = true; break;
	case 14: in.kind = HS_TIN_COMPLETE; in.success = false; in.message = "bad"; break;
	case 15: in.kind = HS_TIN_CANCEL; break;
	case 16: in.kind = HS_TIN_REGISTER; in.interval_ms = 200; in.timeout_ms = 600;
		in.policy = m->policy; break;
	case 17: in.kind = HS_TIN_CHECKPOINT; in.checkpoint_id = "ckpt-7-000000000007"; in.checkpoint_step = 7; break;
	case 18: in.kind = HS_TIN_ATTEMPT_FAILED; in.job_gen = m->gen; in.final = true; in.message = "gone"; break;
	default: in.generation = -1; break;
	}
	return in;
}

static bool terminal(int s)
{
	return s == HS_TASK_COMPLETED || s == HS_TASK_FAILED || s == HS_TASK_CANCELLED;
}

/* The agent's view of the workspace's generation: what it acknowledged,
 * or the registration's generation for an agent that never did. */
static int64_t view_of(const hs_task_fsm *m, int64_t g)
{
	return g < m->base_gen ? m->base_gen : g;
}

static void check(const hs_task_fsm *c, const hs_task_input *in, const hs_task_decision *d)
{
	const hs_task_fsm *n = &d->next;
	if (d->rc != HS_OK) {
		assert_memory_equal(n, c, sizeof(*c));
		assert_false(d->touched);
		assert_int_equal(d->event, 0);
		return;
	}
	/* Invariants. */
	assert_true(n->base_gen <= n->acked_gen && n->acked_gen <= n->gen);
	if (n->state == HS_TASK_RUNNING)
		assert_true(n->acked_gen == n->gen);
	if (n->state == HS_TASK_RECOVERING)
		assert_true(n->acked_gen < n->gen);
	if (n->restored)
		assert_true(n->resume_ckpt[0] != '\0');
	assert_true(n->gen >= c->gen);
	/* Armed timer exactly where the state needs one. */
	if (n->state == HS_TASK_RUNNING || (n->state == HS_TASK_RECOVERING && n->restored))
		assert_true(n->deadline_ms != 0);
	if (terminal(n->state) || (n->state == HS_TASK_RECOVERING && !n->restored))
		assert_true(n->deadline_ms == 0);
	/* Every state change is one event, written with its row. */
	if (n->state != c->state)
		assert_true(d->event != 0);
	if (d->event != 0)
		assert_true(d->write_row && d->touched);
	/* A new generation only by starting an attempt. */
	if (n->gen != c->gen) {
		assert_int_equal(in->kind, HS_TIN_START);
		assert_int_equal(n->gen, c->gen + 1);
		assert_int_equal(d->event, HS_TEV_RECOVERY_STARTED);
		assert_false(n->restored);
	}
	if (in->kind != HS_TIN_BEAT) {
		assert_int_equal(d->instruction, 0);
		return;
	}
	/* Fencing. */
	int64_t g = in->generation;
	switch (d->instruction) {
	case HS_TASK_CONTINUE:
		/* Never CONTINUE on a workspace that changed under the agent. */
		assert_true(view_of(c, g) == c->gen);
		assert_true(c->gen == c->acked_gen || c->restored);
		assert_int_equal(n->state, HS_TASK_RUNNING);
		assert_int_equal(d->reply_gen, n->gen);
		break;
	case HS_TASK_RESUME:
		assert_true(c->restored && view_of(c, g) < c->gen);
		assert_int_equal(d->reply_gen, c->gen);
		assert_false(d->touched); /* repeated until acknowledged: nothing consumed */
		break;
	case HS_TASK_WAIT:
		assert_false(c->restored);
		assert_int_equal(d->reply_gen, 0);
		assert_false(d->touched);
		break;
	case HS_TASK_CANCEL:
		assert_true(c->state == HS_TASK_CANCELLED || c->state == HS_TASK_FAILED);
		assert_false(d->touched);
		break;
	default:
		fail_msg("heartbeat without an instruction");
	}
	if (d->event == HS_TEV_RECOVERED) /* only the acknowledgement */
		assert_true(g == c->gen && c->restored && c->acked_gen < c->gen);
}

/* CreateCheckpoint's fence in a state, for every generation a caller may
 * send: allowed exactly when no recovery attempt is unacknowledged (never
 * in RECOVERING) and the generation, if sent, is current, so a checkpoint
 * is never recorded from a workspace the fencing rule would not let the
 * agent touch. */
static void check_fence(const hs_task_fsm *m, size_t *allowed, size_t *refused)
{
	char why[256];
	for (int64_t g = 0; g <= m->gen + 1; g++) {
		why[0] = '\0';
		int rc = hs_task_checkpoint_fence(m, g, why, sizeof(why));
		bool want = m->gen == m->acked_gen && m->state != HS_TASK_RECOVERING && g <= m->gen &&
			    (g == 0 || hs_task_fsm_current(m, g));
		if ((rc == HS_OK) != want)
			fail_msg("fence: state %d gen %lld acked %lld, sent %lld: rc %d (%s)", m->state,
				 (long long)m->gen, (long long)m->acked_gen, (long long)g, rc, why);
		if (rc == HS_OK) {
			++*allowed;
		} else {
			assert_int_equal(rc, HS_CONFLICT);
			assert_true(why[0] != '\0');
			++*refused;
		}
	}
	assert_int_equal(hs_task_checkpoint_fence(m, -1, why, sizeof(why)), HS_INVALID);
}

static void test_fsm__every_reachable_state_keeps_the_invariants(void **state)
{
	(void)state;
	hs_task_fsm *seen = calloc(MAX_SEEN, sizeof(*seen));
	assert_non_null(seen);
	size_t n = 0, head = 0, transitions = 0, continues = 0, resumes = 0, waits = 0;
	/* A new task: RegisterTask from the zero machine. */
	hs_task_fsm zero;
	memset(&zero, 0, sizeof(zero));
	hs_task_input reg = nth_input(&zero, 16, 1000);
	reg.policy = (hs_task_policy){ 2, 100, 2.0, 1000 };
	hs_task_decision d0;
	hs_task_decide("t", &zero, &reg, &d0);
	check(&zero, &reg, &d0);
	assert_int_equal(d0.event, HS_TEV_REGISTERED);
	assert_int_equal(d0.next.state, HS_TASK_RUNNING);
	assert_int_equal(d0.next.deadline_ms, 1600);
	seen[n++] = d0.next;
	int64_t now = 10000;
	size_t fence_ok = 0, fence_refused = 0;
	while (head < n) {
		hs_task_fsm cur = seen[head++];
		check_fence(&cur, &fence_ok, &fence_refused);
		for (int i = 0; i < N_INPUTS; i++) {
			hs_task_input in = nth_input(&cur, i, now += 7);
			hs_task_decision d;
			hs_task_decide("t", &cur, &in, &d);
			check(&cur, &in, &d);
			transitions++;
			continues += d.instruction == HS_TASK_CONTINUE;
			resumes += d.instruction == HS_TASK_RESUME;
			waits += d.instruction == HS_TASK_WAIT;
			if (d.rc != HS_OK || d.next.gen > 4)
				continue;
			key k = key_of(&d.next);
			bool known = false;
			for (size_t j = 0; j < n && !known; j++) {
				key kj = key_of(&seen[j]);
				known = same_key(&k, &kj);
			}
			if (!known) {
				assert_true(n < MAX_SEEN);
				seen[n++] = d.next;
			}
		}
	}
	/* The walk reached the whole machine, not a corner of it. */
	assert_true(n > 100);
	assert_true(continues > 0 && resumes > 0 && waits > 0);
	assert_true(fence_ok > 0 && fence_refused > 0);
	print_message("fsm walk: %zu states, %zu transitions\n", n, transitions);
	free(seen);
}

/* The fence along one recovery: open before, refused while restoring and
 * until acknowledged (whatever the caller sends), then only the new
 * generation (or none) is accepted. */
static void test_fsm__checkpoint_fence_along_a_recovery(void **state)
{
	(void)state;
	char why[256];
	hs_task_fsm m = fresh(3);
	assert_int_equal(hs_task_checkpoint_fence(&m, 0, why, sizeof(why)), HS_OK);
	int64_t t = 2000;
	for (int round = 0; round < 2; round++) { /* generations 1 and 2 */
		int64_t before = m.gen;
		assert_int_equal(start_at(&m, "ck-1", 1, true, t += 10).rc, HS_OK);
		assert_int_equal(m.state, HS_TASK_RECOVERING);
		for (int64_t g = 0; g <= m.gen + 1; g++) {
			assert_int_equal(hs_task_checkpoint_fence(&m, g, why, sizeof(why)), HS_CONFLICT);
			assert_non_null(strstr(why, "being restored"));
		}
		assert_int_equal(restored_at(&m, t += 10).rc, HS_OK);
		assert_int_equal(hs_task_checkpoint_fence(&m, m.gen, why, sizeof(why)), HS_CONFLICT);
		assert_non_null(strstr(why, "not acknowledged"));
		assert_int_equal(beat_at(&m, m.gen, 1, t += 10).instruction, HS_TASK_CONTINUE);
		assert_int_equal(m.state, HS_TASK_RUNNING);
		assert_int_equal(hs_task_checkpoint_fence(&m, m.gen, why, sizeof(why)), HS_OK);
		assert_int_equal(hs_task_checkpoint_fence(&m, 0, why, sizeof(why)), HS_OK);
		assert_int_equal(hs_task_checkpoint_fence(&m, m.gen + 1, why, sizeof(why)), HS_CONFLICT);
		assert_non_null(strstr(why, "newer"));
		if (before > 0) { /* the agent of the generation before: rolled back under */
			assert_int_equal(hs_task_checkpoint_fence(&m, before, why, sizeof(why)),
					 HS_CONFLICT);
			assert_non_null(strstr(why, "stale"));
		}
	}
	assert_int_equal(m.gen, 2);
}

/* ---- issue 12: a stalled agent is never rolled back silently --------------- */

static void test_fsm__stalled_agent_after_second_timeout_is_told_to_resume(void **state)
{
	(void)state;
	/* Timeout 600 ms; checkpoints at steps 1 and 2; the agent goes silent. */
	hs_task_fsm m = fresh(3);
	assert_int_equal(beat_at(&m, 0, 1, 1100).instruction, HS_TASK_CONTINUE);
	checkpoint_at(&m, "ckpt-1-000000000001", 1);
	assert_int_equal(beat_at(&m, 0, 2, 1200).instruction, HS_TASK_CONTINUE);
	checkpoint_at(&m, "ckpt-2-000000000002", 2);
	assert_int_equal(deadline_at(&m, 1800).event, HS_TEV_TIMEOUT);
	assert_int_equal(deadline_at(&m, 1900).enqueue, true); /* backoff over */
	assert_int_equal(start_at(&m, "ckpt-2-000000000002", 2, false, 1901).event,
			 HS_TEV_RECOVERY_STARTED);
	assert_int_equal(restored_at(&m, 1950).event, HS_TEV_WORKSPACE_RESTORED);
	/* The agent does not beat within 600 ms of the restore. */
	hs_task_decision d = deadline_at(&m, 2550);
	assert_int_equal(d.event, HS_TEV_TIMEOUT);
	assert_int_equal(m.state, HS_TASK_STALLED);
	/* Its next heartbeat (it was stalled, not dead, and still at step 3 in
	 * its head): the workspace is at step 2 now. */
	d = beat_at(&m, 0, 3, 2600);
	assert_int_equal(d.instruction, HS_TASK_RESUME);
	assert_int_equal(d.reply_gen, 1);
	assert_string_equal(m.resume_ckpt, "ckpt-2-000000000002");
	assert_int_equal(m.resume_step, 2);
	assert_int_equal(m.state, HS_TASK_STALLED); /* nothing consumed */
	/* Asked again (the reply was lost): the same answer. */
	assert_int_equal(beat_at(&m, 0, 3, 2650).instruction, HS_TASK_RESUME);
	/* The acknowledgement: RUNNING from step 2 on, RECOVERED. */
	d = beat_at(&m, 1, 2, 2700);
	assert_int_equal(d.instruction, HS_TASK_CONTINUE);
	assert_int_equal(d.event, HS_TEV_RECOVERED);
	assert_int_equal(d.ev_step, 2);
	assert_int_equal(m.state, HS_TASK_RUNNING);
	assert_int_equal(m.acked_gen, 1);
	assert_int_equal(m.attempts, 0);
	/* Acknowledged once: plain beats now. */
	d = beat_at(&m, 1, 3, 2800);
	assert_int_equal(d.instruction, HS_TASK_CONTINUE);
	assert_int_equal(d.event, 0);
	assert_true(d.beat_only);
}

/* The chain of one task through two attempts; at every point an old agent
 * (generation 0) and an agent at the task's generation beat once, on a
 * copy, and must get the answer the fencing rule gives. */
typedef struct point {
	const char *where;
	int old_agent;     /* instruction for generation 0 */
	int current_agent; /* instruction for generation == gen */
} point;

static void expect_at(const hs_task_fsm *m, const point *p)
{
	hs_task_fsm a = *m, b = *m;
	hs_task_decision d0 = beat_at(&a, 0, 9, 50000);
	hs_task_decision d1 = beat_at(&b, m->gen, 9, 50000);
	if ((int)d0.instruction != p->old_agent || (int)d1.instruction != p->current_agent)
		fail_msg("%s: old agent got %d (want %d), current agent got %d (want %d)", p->where,
			 d0.instruction, p->old_agent, d1.instruction, p->current_agent);
	if (p->old_agent == HS_TASK_RESUME)
		assert_int_equal(d0.reply_gen, m->gen);
}

static void test_fsm__heartbeat_in_each_state_and_between_each_step(void **state)
{
	(void)state;
	enum { C = HS_TASK_CONTINUE, R = HS_TASK_RESUME, W = HS_TASK_WAIT, X = HS_TASK_CANCEL };
	hs_task_fsm m = fresh(2);
	int64_t t = 2000;
	expect_at(&m, &(point){ "running", C, C });
	deadline_at(&m, t += 700);
	expect_at(&m, &(point){ "stalled, nothing restored", C, C });
	deadline_at(&m, t += 100);
	expect_at(&m, &(point){ "backoff over, lookup under way", C, C });
	start_at(&m, "ckpt-2-000000000002", 2, false, t += 1);
	expect_at(&m, &(point){ "restoring (generation 1)", W, W });
	restored_at(&m, t += 50);
	expect_at(&m, &(point){ "restored, awaiting acknowledgement", R, C });
	deadline_at(&m, t += 700);
	assert_int_equal(m.state, HS_TASK_STALLED);
	expect_at(&m, &(point){ "acknowledgement timed out, backoff", R, C });
	deadline_at(&m, t += 300);
	expect_at(&m, &(point){ "second attempt due", R, C });
	start_at(&m, "ckpt-2-000000000002", 2, false, t += 1);
	expect_at(&m, &(point){ "restoring (generation 2)", W, W });
	{ /* an agent that acknowledged generation 1 is stale now */
		hs_task_fsm c = m;
		assert_int_equal(beat_at(&c, 1, 9, t).instruction, HS_TASK_WAIT);
	}
	hs_task_input fail = in_of(HS_TIN_ATTEMPT_FAILED, t += 20);
	fail.job_gen = m.gen;
	fail.message = "disk on fire";
	step(&m, &fail);
	assert_int_equal(m.state, HS_TASK_FAILED); /* max_attempts 2 used up */
	expect_at(&m, &(point){ "failed", X, X });
	/* RecoverTask from FAILED: a third generation. */
	start_at(&m, "ckpt-2-000000000002", 2, true, t += 10);
	assert_int_equal(m.gen, 3);
	assert_int_equal(m.attempts, 1);
	expect_at(&m, &(point){ "manual restore under way", W, W });
	restored_at(&m, t += 10);
	{ /* generation 1 and 2 agents are told to resume too */
		hs_task_fsm c = m;
		assert_int_equal(beat_at(&c, 1, 9, t).instruction, HS_TASK_RESUME);
		assert_int_equal(beat_at(&c, 2, 9, t).instruction, HS_TASK_RESUME);
		assert_int_equal(beat_at(&c, 4, 9, t).rc, HS_CONFLICT); /* from the future */
	}
	/* A checkpoint between restore and acknowledgement changes nothing. */
	checkpoint_at(&m, "ckpt-9-000000000009", 9);
	expect_at(&m, &(point){ "restored, a checkpoint came in", R, C });
	beat_at(&m, 3, 2, t += 10);
	assert_int_equal(m.state, HS_TASK_RUNNING);
	/* The old agent is still fenced after someone else acknowledged. */
	expect_at(&m, &(point){ "running after acknowledgement", R, C });
	/* Complete; heartbeats of a COMPLETED task are refused. */
	hs_task_input done = in_of(HS_TIN_COMPLETE, t += 10);
	done.success = true;
	step(&m, &done);
	assert_int_equal(beat_at(&m, 3, 9, t).rc, HS_CONFLICT);
	/* Re-registered: a new run; its agents start current. */
	hs_task_input again = in_of(HS_TIN_REGISTER, t += 10);
	again.interval_ms = 200;
	again.timeout_ms = 600;
	again.policy = m.policy;
	step(&m, &again);
	assert_int_equal(m.gen, 3);
	assert_int_equal(m.base_gen, 3);
	expect_at(&m, &(point){ "registered again", C, C });
}

static void test_fsm__restore_failure_keeps_the_agent_fenced(void **state)
{
	(void)state;
	hs_task_fsm m = fresh(3);
	deadline_at(&m, 2000);
	deadline_at(&m, 2100);
	start_at(&m, "ckpt-2-000000000002", 2, false, 2101);
	hs_task_input fail = in_of(HS_TIN_ATTEMPT_FAILED, 2200);
	fail.job_gen = m.gen;
	fail.message = "disk on fire";
	hs_task_decision d = step(&m, &fail);
	assert_int_equal(d.event, HS_TEV_RECOVERY_FAILED);
	assert_int_equal(m.state, HS_TASK_STALLED);
	/* The workspace may be half restored: neither CONTINUE nor RESUME. */
	assert_int_equal(beat_at(&m, 0, 3, 2300).instruction, HS_TASK_WAIT);
	/* An acknowledgement of a generation whose restore never finished is
	 * no acknowledgement either. */
	assert_int_equal(beat_at(&m, 1, 3, 2300).instruction, HS_TASK_WAIT);
	assert_int_equal(m.acked_gen, 0);
	/* A lookup failure touches nothing: the agent stays current. */
	hs_task_fsm n = fresh(3);
	deadline_at(&n, 2000);
	deadline_at(&n, 2100);
	hs_task_input lookup = in_of(HS_TIN_ATTEMPT_FAILED, 2101);
	lookup.before_start = true;
	lookup.message = "store down";
	d = step(&n, &lookup);
	assert_int_equal(d.event, HS_TEV_RECOVERY_FAILED);
	assert_int_equal(n.gen, 0);
	assert_int_equal(n.attempts, 1);
	d = beat_at(&n, 0, 3, 2200);
	assert_int_equal(d.instruction, HS_TASK_CONTINUE);
	assert_int_equal(d.event, HS_TEV_LATE_HEARTBEAT);
	/* No checkpoint: FAILED at once. */
	hs_task_fsm o = fresh(3);
	deadline_at(&o, 2000);
	deadline_at(&o, 2100);
	lookup.final = true;
	d = step(&o, &lookup);
	assert_int_equal(o.state, HS_TASK_FAILED);
	assert_int_equal(d.event, HS_TEV_RECOVERY_FAILED);
}

static void test_fsm__legacy_agent_that_never_acknowledges_fails_the_task(void **state)
{
	(void)state;
	hs_task_fsm m = fresh(2);
	int64_t t = 2000;
	for (int attempt = 1; attempt <= 2; attempt++) {
		deadline_at(&m, t += 700); /* TIMEOUT (or acknowledgement timeout) */
		deadline_at(&m, t += 300); /* backoff over */
		start_at(&m, "ckpt-2-000000000002", 2, false, t += 1);
		restored_at(&m, t += 10);
		/* The old agent beats faithfully but never sends a generation. */
		for (int i = 0; i < 3; i++)
			assert_int_equal(beat_at(&m, 0, 3, t += 100).instruction, HS_TASK_RESUME);
		assert_int_equal(m.state, HS_TASK_RECOVERING); /* stale beats are not liveness */
	}
	hs_task_decision d = deadline_at(&m, t += 700);
	assert_int_equal(d.event, HS_TEV_RECOVERY_FAILED);
	assert_int_equal(m.state, HS_TASK_FAILED);
	assert_non_null(strstr(d.ev_msg, "did not acknowledge"));
	assert_int_equal(beat_at(&m, 0, 3, t).instruction, HS_TASK_CANCEL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fsm__every_reachable_state_keeps_the_invariants),
		cmocka_unit_test(test_fsm__stalled_agent_after_second_timeout_is_told_to_resume),
		cmocka_unit_test(test_fsm__heartbeat_in_each_state_and_between_each_step),
		cmocka_unit_test(test_fsm__restore_failure_keeps_the_agent_fenced),
		cmocka_unit_test(test_fsm__legacy_agent_that_never_acknowledges_fails_the_task),
		cmocka_unit_test(test_fsm__checkpoint_fence_along_a_recovery),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
