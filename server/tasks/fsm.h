/* The task state machine as one pure function (no I/O, no locks, no
 * clock): hs_task_decide(task, input) -> decision. Every RPC, timer and
 * recovery-worker event of a task is an input; transition.c applies the
 * decision (store, events, timers, jobs). The diagram and the fencing rules
 * are in fsm.c; tests/model/task_model.py is the same machine in Python.
 * Private to server/tasks. */
#ifndef HS_TASKS_FSM_H
#define HS_TASKS_FSM_H

#include <stdbool.h>
#include <stdint.h>

#include "tasks.h"

/* Checkpoint ids kept per task: the checkpoint module's ids are
 * "ckpt-<step>-<12 hex>" (< 48 bytes); the struct stays small because
 * 100,000 tasks live in memory. */
#define HS_TASK_CKPT_LOCAL 64

/* What the machine reads and writes of a task. Everything here is
 * persisted (the task row) except where noted. */
typedef struct hs_task_fsm {
	int state;
	int32_t attempts;              /* recovery attempts since last RUNNING */
	int64_t current_step, total_steps;
	int64_t last_heartbeat_ms;
	/* Fencing. gen: bumped by every attempt that may touch the workspace
	 * (RECOVERY_STARTED); base_gen: gen at (re-)registration; acked_gen:
	 * the highest gen the agent acknowledged (base_gen <= acked_gen <= gen).
	 * restored: gen's restore finished; resume_*: its checkpoint. */
	int64_t gen, base_gen, acked_gen;
	bool restored;
	char resume_ckpt[HS_TASK_CKPT_LOCAL];
	int64_t resume_step;
	char last_ckpt[HS_TASK_CKPT_LOCAL];
	int64_t last_ckpt_step;
	bool cancel_requested;
	/* Wall-clock deadline of the state's timer, 0 = none: RUNNING the
	 * heartbeat deadline (derived from last_heartbeat_ms after a
	 * restart), STALLED the next attempt, RECOVERING (restored) the
	 * acknowledgement deadline. */
	int64_t deadline_ms;
	int64_t finished_at_ms;
	/* Settings of the registration (read here, changed only by
	 * re-registration). */
	int64_t interval_ms, timeout_ms;
	hs_task_policy policy;
} hs_task_fsm;

typedef enum hs_task_input_kind {
	HS_TIN_BEAT = 1,       /* Heartbeat */
	HS_TIN_DEADLINE,       /* the state's timer fired */
	HS_TIN_START,          /* begin an attempt: latest checkpoint known */
	HS_TIN_RESTORED,       /* the attempt's restore (and sandbox) succeeded */
	HS_TIN_ATTEMPT_FAILED, /* an attempt failed (before or after touching the workspace) */
	HS_TIN_COMPLETE,       /* CompleteTask */
	HS_TIN_CANCEL,         /* CancelTask */
	HS_TIN_REGISTER,       /* RegisterTask: a new task (from the zero machine,
				* state 0) or a terminal task's id again */
	HS_TIN_CHECKPOINT,     /* a checkpoint of the task was created */
} hs_task_input_kind;

typedef struct hs_task_input {
	hs_task_input_kind kind;
	int64_t now_ms; /* wall clock */
	/* BEAT */
	int64_t generation; /* the agent's acknowledged generation (0 = none) */
	int64_t step, total_steps;
	/* START: manual = RecoverTask (else the coordinator after backoff);
	 * START and CHECKPOINT: the checkpoint. */
	bool manual;
	const char *checkpoint_id;
	int64_t checkpoint_step;
	/* RESTORED, ATTEMPT_FAILED: the generation the job worked on;
	 * ATTEMPT_FAILED: before_start = the workspace was not touched (the
	 * checkpoint lookup failed), final = retrying cannot help. */
	int64_t job_gen;
	bool before_start, final;
	/* COMPLETE */
	bool success;
	/* START, ATTEMPT_FAILED, COMPLETE, CANCEL: reason / message. */
	const char *message;
	/* REGISTER: the registration's settings (and total_steps). */
	int64_t interval_ms, timeout_ms;
	hs_task_policy policy;
} hs_task_input;

typedef struct hs_task_decision {
	int rc;        /* HS_OK, or an error for the caller (nothing changes) */
	char msg[200]; /* the error's message */
	hs_task_fsm next;
	/* What applying it means: */
	bool touched;     /* anything changes (else a pure reply) */
	bool beat_only;   /* the hot path: heartbeat columns only */
	bool write_row;   /* write the whole row (with the event, if any) */
	bool progress;    /* take the beat's progress (cpu, memory, disk, details) */
	bool enqueue;     /* a recovery job is due (attempt or restore) */
	bool new_resume;  /* a new generation: forget the cached external_state */
	bool set_failure; /* failure_reason = failure */
	bool set_result;  /* result_message = message */
	const char *failure, *result;
	hs_task_event_type event; /* 0 = none */
	int64_t ev_step;
	const char *ev_ckpt;
	int32_t ev_attempt;
	char ev_msg[HS_TASK_REASON_MAX];
	/* BEAT: the reply (resume fields come from next.resume_*). */
	hs_task_instruction instruction;
	int64_t reply_gen;
	int64_t reply_deadline_ms;
} hs_task_decision;

/* The initial machine of a newly registered task. */
void hs_task_fsm_init(hs_task_fsm *m, int64_t total_steps, int64_t interval_ms,
		      int64_t timeout_ms, const hs_task_policy *policy, int64_t now_ms);

/* The transition for input in on machine cur of task id (named in
 * messages). d->next is cur when nothing changes. Pure: d's string
 * pointers point into in or d->next. */
void hs_task_decide(const char *id, const hs_task_fsm *cur, const hs_task_input *in,
		    hs_task_decision *d);

/* May an agent that acknowledged generation g touch the workspace? (The
 * fencing rule by itself, for tests and the adapter's docs.) */
bool hs_task_fsm_current(const hs_task_fsm *m, int64_t g);

/* May a checkpoint of the task be recorded now, for a caller that
 * acknowledged generation g (0 = not sent)? HS_OK; HS_INVALID for g < 0;
 * HS_CONFLICT with the reason in why (cap bytes) when an attempt started
 * and was not acknowledged (gen > acked_gen: RECOVERING, or STALLED/FAILED
 * after it), whatever g says, or when g is sent and not current (older
 * after a restore, or newer than the task's). Pure: no lock, no I/O. */
int hs_task_checkpoint_fence(const hs_task_fsm *m, int64_t g, char *why, size_t cap);

#endif
