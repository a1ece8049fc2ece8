"""Agent: the agent side of HealthService's fencing protocol, done once.

The contract (proto/harness/v1/health.proto, "Fencing"): the agent keeps
gen, the recovery generation it last acknowledged, and sends it on every
heartbeat. CONTINUE: keep going. WAIT: a restore is under way, do not touch
the workspace. RESUME_FROM_CHECKPOINT: the workspace was restored under the
agent: stop, discard in-memory progress, reload external_state, continue
after resume_step, set gen to the reply's generation and heartbeat at once
(the acknowledgement; the task is RUNNING again only then). CANCEL: stop.

How this class keeps it:

* A heartbeat thread sends gen every heartbeat_interval. A reply other than
  CONTINUE fences the agent (`fenced`): the work loop does not start a step,
  `check()` raises Fenced inside a step, and a step that was running when the
  fence came is discarded (no checkpoint of it).
* A RESUME is handled by the work loop, not the thread: it calls the resume
  callback with (step, external_state), then sets gen and sends the
  acknowledging heartbeat itself, so the server hears the acknowledgement
  only after the agent really reloaded its state. Heartbeats are
  serialised: a reply is applied only if it answers the current gen.
* checkpoint() first heartbeats and requires CONTINUE at the current gen,
  then calls CreateCheckpoint with a request_id unique to (this process,
  gen, step): a retry after UNAVAILABLE cannot record the step twice. It
  sends gen as recovery_generation: a restore that starts between that
  heartbeat and the checkpoint makes the server refuse it
  (FAILED_PRECONDITION) rather than record the stale workspace.
* A restarted agent process attaches to its task: an existing RUNNING,
  STALLED or FAILED task with a checkpoint gets RecoverTask (the workspace is
  restored to the latest checkpoint, and this process is told to RESUME from
  it), a RECOVERING one is simply joined; a new or finished task is
  registered (a COMPLETED one only with rerun=True).
"""
import dataclasses
import threading
import uuid

import grpc

from ._gen.harness.v1 import health_pb2
from ._stubs import struct_to_dict
from .client import HarnessError

TS = health_pb2.TaskState
INS = health_pb2.Instruction


class Cancelled(Exception):
    """The task was cancelled (INSTRUCTION_CANCEL or a CANCELLED task)."""


class Fenced(Exception):
    """The workspace may have been restored under this agent: stop the step."""


@dataclasses.dataclass
class ResumeInfo:
    step: int
    checkpoint_id: str
    external_state: dict
    details: str
    generation: int


class Agent:
    def __init__(self, client, task_id, *, total_steps=0, heartbeat_interval=1.0, heartbeat_timeout=None,
                 workspace="", sandbox_id="", labels=None, recovery_policy=None, on_resume=None,
                 rerun=False):
        self.client = client
        self.task_id = task_id
        self.total_steps = total_steps
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout or max(3 * heartbeat_interval, heartbeat_interval + 1)
        self.workspace = workspace
        self.sandbox_id = sandbox_id
        self.labels = dict(labels or {})
        self.recovery_policy = dict(recovery_policy or {})
        self.rerun = rerun
        self._on_resume = on_resume
        self.on_heartbeat = None  # optional hook: fn(HeartbeatResponse), called from the heartbeat path
        self.on_checkpoint = None  # optional hook: fn(Checkpoint), after CreateCheckpoint returned
        self.details = ""         # sent with heartbeats (handed back on recovery)
        self.task = None          # the Task as registered / attached
        self.already_completed = False
        self._cv = threading.Condition()
        self._hb_lock = threading.Lock()
        self._gen = 0
        self._current_step = 0
        self._pending = None
        self._fenced = True       # until the first heartbeat reply says otherwise
        self._answered = False
        self._cancelled = False
        self._fatal = None
        self._stop = False
        self._poke = False
        self._thread = None
        self._nonce = uuid.uuid4().hex[:12]

    # -- decorators / properties -----------------------------------------

    def on_resume(self, fn):
        """Registers fn(step, external_state): called after the workspace was
        restored to the checkpoint of `step`; reload state from
        external_state. Work continues with step + 1."""
        self._on_resume = fn
        return fn

    @property
    def generation(self):
        with self._cv:
            return self._gen

    @property
    def fenced(self):
        with self._cv:
            return self._fenced or self._pending is not None or self._cancelled

    def check(self):
        """Raises Fenced (or Cancelled) when the agent must stop touching the
        workspace; call it inside long steps."""
        with self._cv:
            if self._cancelled:
                raise Cancelled(self.task_id)
            if self._fenced or self._pending is not None:
                raise Fenced(self.task_id)

    # -- attach / register -------------------------------------------------

    def _register(self):
        req = {"task_id": self.task_id, "total_steps": self.total_steps,
               "heartbeat_interval_ms": int(self.heartbeat_interval * 1000),
               "heartbeat_timeout_ms": int(self.heartbeat_timeout * 1000),
               "workspace": self.workspace, "sandbox_id": self.sandbox_id, "labels": self.labels}
        if self.recovery_policy:
            req["recovery_policy"] = self.recovery_policy
        task = self.client.tasks.RegisterTask(**req)
        self._gen = task.recovery_generation
        return task

    def _recover(self, task):
        self._gen = task.acknowledged_generation
        if not task.last_checkpoint_id:
            return task
        try:
            return self.client.tasks.RecoverTask(task_id=self.task_id,
                                                 reason="agent restarted: resume from the latest checkpoint")
        except HarnessError as e:
            if e.code != grpc.StatusCode.FAILED_PRECONDITION:  # already RECOVERING: join it
                raise
            return task

    def _attach(self, again=True):
        try:
            task = self.client.tasks.GetTask(task_id=self.task_id)
        except HarnessError as e:
            if e.code != grpc.StatusCode.NOT_FOUND:
                raise
            task = None
        try:
            if task is None:
                return self._register()
            st = task.state
            if st == TS.TASK_STATE_COMPLETED and not self.rerun:
                self.already_completed = True
                return task
            if st == TS.TASK_STATE_CANCELLED and not self.rerun:
                raise Cancelled("%s: the task was cancelled (%s)" % (self.task_id, task.failure_reason))
            if st in (TS.TASK_STATE_COMPLETED, TS.TASK_STATE_CANCELLED):
                return self._register()
            if st == TS.TASK_STATE_FAILED and not task.last_checkpoint_id:
                return self._register()
            if st == TS.TASK_STATE_RECOVERING:
                self._gen = task.acknowledged_generation
                return task
            return self._recover(task)  # RUNNING, STALLED, FAILED with a checkpoint
        except HarnessError as e:
            if e.code == grpc.StatusCode.ALREADY_EXISTS and task is None and again:
                return self._attach(again=False)  # registered meanwhile: attach to it
            raise

    def start(self):
        """Registers or attaches, then starts heartbeating. False when the
        task had COMPLETED already (nothing to do)."""
        self.task = self._attach()
        if self.already_completed:
            return False
        if self.task.heartbeat_interval_ms > 0:
            self.heartbeat_interval = self.task.heartbeat_interval_ms / 1000.0
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="harness-heartbeat-" + self.task_id, daemon=True)
        self._thread.start()
        return True

    def stop(self):
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    # -- heartbeats ----------------------------------------------------------

    def heartbeat(self, retry=True):
        """One heartbeat with the current gen and step; applies the reply."""
        with self._hb_lock:
            with self._cv:
                gen, step = self._gen, self._current_step
            resp = self.client.tasks.Heartbeat(task_id=self.task_id, current_step=step, recovery_generation=gen,
                                               details=self.details,
                                               timeout=max(1.0, min(2 * self.heartbeat_interval, 10.0)),
                                               retry=retry)
            self._apply(resp, gen)
        if self.on_heartbeat is not None:
            self.on_heartbeat(resp)
        return resp

    def _apply(self, resp, sent_gen):
        with self._cv:
            if sent_gen != self._gen:
                return  # answers a generation this agent has moved past
            self._answered = True
            ins = resp.instruction
            if ins == INS.INSTRUCTION_CONTINUE:
                self._fenced = self._pending is not None
            elif ins == INS.INSTRUCTION_RESUME_FROM_CHECKPOINT:
                g = resp.recovery_generation
                if g > self._gen and (self._pending is None or self._pending.generation < g):
                    self._pending = ResumeInfo(step=resp.resume_step, checkpoint_id=resp.checkpoint_id,
                                               external_state=struct_to_dict(resp.external_state)
                                               if resp.HasField("external_state") else {},
                                               details=resp.details, generation=g)
                self._fenced = True
            elif ins == INS.INSTRUCTION_WAIT:
                self._fenced = True
            elif ins == INS.INSTRUCTION_CANCEL:
                self._cancelled = True
                self._fenced = True
            self._cv.notify_all()

    def _loop(self):
        while True:
            with self._cv:
                if self._stop:
                    return
            try:
                self.heartbeat(retry=False)  # the next tick is the retry
            except HarnessError as e:
                if e.code == grpc.StatusCode.FAILED_PRECONDITION:
                    with self._cv:  # COMPLETED under us, or a generation the server never gave
                        self._fatal = e
                        self._cv.notify_all()
                    return
            except Exception as e:  # noqa: BLE001 (a hook raised: keep heartbeating)
                _ = e
            with self._cv:
                self._cv.wait_for(lambda: self._stop or self._poke, timeout=self.heartbeat_interval)
                self._poke = False

    def _wait_runnable(self):
        """Blocks until the agent may work (CONTINUE at its generation) or must
        resume; returns the ResumeInfo to handle, or None."""
        with self._cv:
            self._cv.wait_for(lambda: self._cancelled or self._fatal is not None or self._pending is not None or
                              (self._answered and not self._fenced))
            if self._cancelled:
                raise Cancelled(self.task_id)
            if self._fatal is not None:
                raise self._fatal
            return self._pending

    def _resume(self, info):
        if self._on_resume is not None:
            self._on_resume(info.step, info.external_state)
        with self._hb_lock:
            with self._cv:
                self._gen = info.generation
                self._current_step = info.step
                self._pending = None
                self._fenced = True  # until the acknowledgement's reply
        self.heartbeat()  # the acknowledgement

    # -- checkpoints and completion -------------------------------------------

    def checkpoint(self, step, external_state=None, description=""):
        """CreateCheckpoint of the workspace at `step` (work up to and
        including it done), fenced by a heartbeat; raises Fenced when the
        agent must not checkpoint now. Returns the Checkpoint."""
        self.heartbeat()
        with self._cv:
            if self._cancelled:
                raise Cancelled(self.task_id)
            if self._fenced or self._pending is not None:
                raise Fenced(self.task_id)
            gen = self._gen
        try:
            resp = self.client.checkpoints.CreateCheckpoint(
                task_id=self.task_id, step=step, description=description, external_state=external_state or {},
                workspace=self.workspace, request_id="%s-g%d-s%d" % (self._nonce, gen, step),
                recovery_generation=gen)
        except HarnessError as e:
            if e.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            # Refused by the fence: a restore began after our heartbeat.
            # The next heartbeat tells us what to do (WAIT or RESUME).
            self.heartbeat()
            with self._cv:
                if self._fenced or self._pending is not None:
                    raise Fenced(self.task_id) from e
            raise
        with self._cv:
            if self._gen == gen:
                self._current_step = step
        if self.on_checkpoint is not None:
            self.on_checkpoint(resp.checkpoint)
        return resp.checkpoint

    def complete(self, success=True, message=""):
        return self.client.tasks.CompleteTask(task_id=self.task_id, success=success, message=message[:1000])

    # -- the loop ------------------------------------------------------------

    def run(self, work, *, external_state=None, checkpoint_every=1, description="step {step}", complete=True):
        """Runs work(step) for step 1..total_steps with heartbeats, a
        checkpoint after every checkpoint_every steps (external_state: a dict
        or a callable returning one), resumes as told, then CompleteTask.
        Returns the number of steps run by this process. Raises Cancelled on
        INSTRUCTION_CANCEL; an exception from work completes the task as
        FAILED and propagates."""
        if self.total_steps <= 0:
            raise ValueError("run() needs total_steps > 0")
        if self._thread is None and not self.start():
            return 0
        ran = 0
        try:
            step = 1
            while step <= self.total_steps:
                info = self._wait_runnable()
                if info is not None:
                    self._resume(info)
                    step = info.step + 1
                    continue
                try:
                    try:
                        work(step)
                    except (Fenced, Cancelled, HarnessError):
                        raise
                    except Exception as e:
                        if complete:
                            self.complete(False, "step %d: %s" % (step, e))
                        raise
                    ran += 1
                    self.check()
                    if step % checkpoint_every == 0 or step == self.total_steps:
                        st = external_state() if callable(external_state) else external_state
                        self.checkpoint(step, st, description.format(step=step))
                    else:
                        with self._cv:
                            self._current_step = step
                except Fenced:
                    continue  # the loop waits for the instruction and resumes as told
                step += 1
            if complete:
                self.complete(True, "%d steps" % self.total_steps)
            return ran
        finally:
            self.stop()
