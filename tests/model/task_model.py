"""A reference model of one task's state machine, written from the contract
in proto/harness/v1/health.proto (the diagram and "Fencing" in its header),
not from the C code. The driver (model_driver.py) runs random sequences
against a real harnessd and checks every reply, event and GetTask against
this model.

The model is deterministic given the order of inputs. Inputs come from the
driver's RPCs (register, heartbeat, recover, cancel, complete, checkpoint)
and from the server's timers and recovery workers; those are not under the
driver's control, so the model predicts the one event each of them emits
next (next_async) and applies it when the driver observes it (advance).
"""

RUNNING, STALLED, RECOVERING, COMPLETED, FAILED, CANCELLED = 1, 2, 3, 4, 5, 6
TERMINAL = (COMPLETED, FAILED, CANCELLED)
STATE_NAMES = {1: "RUNNING", 2: "STALLED", 3: "RECOVERING", 4: "COMPLETED", 5: "FAILED", 6: "CANCELLED"}

CONTINUE, CANCEL, RESUME, WAIT = 1, 2, 3, 4
INSTRUCTION_NAMES = {1: "CONTINUE", 2: "CANCEL", 3: "RESUME", 4: "WAIT"}

(REGISTERED, TIMEOUT, RECOVERY_STARTED, RECOVERED, RECOVERY_FAILED, EV_COMPLETED, EV_FAILED,
 EV_CANCELLED) = 1, 2, 3, 4, 5, 6, 7, 8
WORKSPACE_RESTORED, LATE_HEARTBEAT = 11, 12
EVENT_NAMES = {1: "REGISTERED", 2: "TIMEOUT", 3: "RECOVERY_STARTED", 4: "RECOVERED", 5: "RECOVERY_FAILED",
               6: "COMPLETED", 7: "FAILED", 8: "CANCELLED", 11: "WORKSPACE_RESTORED", 12: "LATE_HEARTBEAT"}

OK, INVALID, NOT_FOUND, EXISTS, PRECONDITION = "OK", "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", \
    "FAILED_PRECONDITION"


class Ev:
    """An expected event: the fields the model can predict."""

    def __init__(self, type_, state, gen, attempt=0, step=None, checkpoint=None):
        self.type, self.state, self.gen, self.attempt = type_, state, gen, attempt
        self.step, self.checkpoint = step, checkpoint

    def mismatch(self, e):
        """None if the observed TaskEvent e matches, else why not."""
        want = [("type", self.type, e.type), ("state", self.state, e.state),
                ("recovery_generation", self.gen, e.recovery_generation), ("attempt", self.attempt, e.attempt)]
        if self.step is not None:
            want.append(("step", self.step, e.step))
        if self.checkpoint is not None:
            want.append(("checkpoint_id", self.checkpoint, e.checkpoint_id))
        bad = ["%s %r != %r" % (n, got, w) for n, w, got in want if w != got]
        return "; ".join(bad) if bad else None

    def __repr__(self):
        return "%s(%s, gen %d, attempt %d)" % (EVENT_NAMES.get(self.type, self.type),
                                              STATE_NAMES.get(self.state, self.state), self.gen, self.attempt)


class Reply:
    def __init__(self, code=OK, instruction=None, state=None, gen=0, resume=None):
        self.code, self.instruction, self.state, self.gen, self.resume = code, instruction, state, gen, resume

    def __repr__(self):
        return "Reply(%s, %s, %s, gen %d, resume %s)" % (
            self.code, INSTRUCTION_NAMES.get(self.instruction), STATE_NAMES.get(self.state), self.gen, self.resume)


class TaskModel:
    """One task as the server must see it."""

    def __init__(self, task_id, max_attempts, hook_wired):
        self.id = task_id
        self.max_attempts = max_attempts
        self.hook_wired = hook_wired
        self.state = RUNNING
        self.attempts = 0
        self.current_step = 0
        self.gen = self.base = self.acked = 0
        self.restored = False
        self.resume = None          # (checkpoint_id, step) of gen's restore
        self.last_ckpt = ""         # Task.last_checkpoint_id
        self.latest = None          # the latest acknowledged checkpoint: (id, step)
        self.cancel_requested = False
        self.attempt_due = False    # STALLED and the backoff is over

    # ---- helpers -----------------------------------------------------------

    def current(self, g):
        """Fencing: may an agent that acknowledged g touch the workspace?"""
        return g == self.gen or (g < self.gen and self.gen == self.base)

    def _ev(self, type_, attempt=0, step=None, checkpoint=None):
        return Ev(type_, self.state, self.gen, attempt, step, checkpoint)

    # ---- RPCs (each returns (Reply, [expected events])) ---------------------

    def reregister(self):
        if self.state not in TERMINAL:
            return Reply(EXISTS), []
        self.state = RUNNING
        self.attempts = 0
        self.current_step = 0
        self.base = self.acked = self.gen
        self.restored = False
        self.resume = None
        self.cancel_requested = False
        self.attempt_due = False
        return Reply(OK, state=RUNNING), [self._ev(REGISTERED, step=0)]

    def heartbeat(self, g, step):
        if self.state == COMPLETED:
            return Reply(PRECONDITION), []
        if self.state in (CANCELLED, FAILED):
            return Reply(OK, CANCEL, self.state, 0), []
        if g < 0:
            return Reply(INVALID), []
        if g > self.gen:
            return Reply(PRECONDITION), []
        stale = not self.current(g)
        if stale or self.gen > self.acked:
            if not self.restored:
                return Reply(OK, WAIT, self.state, 0), []
            if stale:
                return Reply(OK, RESUME, self.state, self.gen, self.resume), []
            # the acknowledgement
            self.state = RUNNING
            self.acked = self.gen
            self.attempts = 0
            self.attempt_due = False
            self.current_step = step
            return Reply(OK, CONTINUE, RUNNING, self.gen), [
                self._ev(RECOVERED, step=self.resume[1], checkpoint=self.resume[0])]
        if self.state == RUNNING:
            self.current_step = step
            return Reply(OK, CONTINUE, RUNNING, self.gen), []
        assert self.state == STALLED, self.state
        self.state = RUNNING
        self.attempts = 0
        self.attempt_due = False
        self.current_step = step
        return Reply(OK, CONTINUE, RUNNING, self.gen), [self._ev(LATE_HEARTBEAT, step=step)]

    def recover(self):
        if self.state in (RECOVERING, COMPLETED, CANCELLED):
            return Reply(PRECONDITION), []
        if self.latest is None:
            return Reply(PRECONDITION), []  # no checkpoint: nothing changes
        if self.state == FAILED:
            self.attempts = 0
        return Reply(OK, state=RECOVERING), [self._start()]

    def _start(self):
        self.state = RECOVERING
        self.attempts += 1
        self.gen += 1
        self.restored = False
        self.resume = self.latest
        self.attempt_due = False
        return self._ev(RECOVERY_STARTED, self.attempts, self.resume[1], self.resume[0])

    def cancel(self):
        if self.state == CANCELLED:
            return Reply(OK, state=CANCELLED), []
        if self.state in TERMINAL:
            return Reply(PRECONDITION), []
        self.state = CANCELLED
        self.cancel_requested = True
        self.attempt_due = False
        return Reply(OK, state=CANCELLED), [self._ev(EV_CANCELLED)]

    def complete(self, success):
        if self.state in TERMINAL:
            return Reply(PRECONDITION), []
        self.state = COMPLETED if success else FAILED
        self.attempt_due = False
        return Reply(OK, state=self.state), [self._ev(EV_COMPLETED if success else EV_FAILED)]

    def checkpoint_created(self, ckpt_id, step):
        """CreateCheckpoint acknowledged this checkpoint (no state change)."""
        self.latest = (ckpt_id, step)
        if self.hook_wired:
            self.last_ckpt = ckpt_id

    # ---- the server's own inputs ---------------------------------------------

    def next_async(self):
        """The one event the server's timers/workers emit next, or None."""
        if self.state == RUNNING:
            return Ev(TIMEOUT, STALLED, self.gen, 0, self.current_step)
        if self.state == STALLED:
            if self.latest is None:
                return Ev(RECOVERY_FAILED, FAILED, self.gen, self.attempts + 1)
            return Ev(RECOVERY_STARTED, RECOVERING, self.gen + 1, self.attempts + 1, self.latest[1],
                      self.latest[0])
        if self.state == RECOVERING and not self.restored:
            return Ev(WORKSPACE_RESTORED, RECOVERING, self.gen, self.attempts, self.resume[1], self.resume[0])
        if self.state == RECOVERING:
            if self.attempts >= self.max_attempts:
                return Ev(RECOVERY_FAILED, FAILED, self.gen, self.attempts)
            return Ev(TIMEOUT, STALLED, self.gen, self.attempts)
        return None

    def advance(self):
        """Apply next_async() (the driver observed it)."""
        ev = self.next_async()
        assert ev is not None
        if ev.type == TIMEOUT:
            self.state = STALLED
        elif ev.type == RECOVERY_STARTED:
            self._start()
        elif ev.type == WORKSPACE_RESTORED:
            self.restored = True
            self.current_step = self.resume[1]
            self.last_ckpt = self.resume[0]
        elif ev.type == RECOVERY_FAILED:
            self.state = FAILED
            if self.latest is None:
                self.attempts += 1
        self.attempt_due = False
        return ev

    # ---- GetTask ------------------------------------------------------------

    def mismatch(self, t):
        """None if Task t agrees with the model, else what differs."""
        want = [("state", self.state, t.state), ("recovery_attempts", self.attempts, t.recovery_attempts),
                ("current_step", self.current_step, t.current_step),
                ("recovery_generation", self.gen, t.recovery_generation),
                ("acknowledged_generation", self.acked, t.acknowledged_generation),
                ("cancel_requested", self.cancel_requested, t.cancel_requested),
                ("last_checkpoint_id", self.last_ckpt, t.last_checkpoint_id)]
        awaiting = self.restored and self.gen > self.acked
        want.append(("resume_checkpoint_id", self.resume[0] if awaiting else "", t.resume_checkpoint_id))
        want.append(("resume_step", self.resume[1] if awaiting else 0, t.resume_step))
        bad = ["%s: server %r, model %r" % (n, got, w) for n, w, got in want if w != got]
        return "; ".join(bad) if bad else None

    def __repr__(self):
        return "%s[%s att %d gen %d base %d acked %d restored %s resume %s latest %s step %d]" % (
            self.id, STATE_NAMES[self.state], self.attempts, self.gen, self.base, self.acked, self.restored,
            self.resume, self.latest, self.current_step)
