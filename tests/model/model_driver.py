"""Model-based test driver: long random sequences against a real harnessd,
checked after every step against the reference model (task_model.py).

Steps: register (and re-register), heartbeat with and without a generation
(and stale "zombie" generations), agent work, checkpoint (changed and
unchanged), stop beating (wait for the server's timers), cancel, complete,
RecoverTask, kill -9 and restart of harnessd, and replays of the event
stream. After every step:

  * every reply and every event equals the model's prediction, and GetTask
    of the task agrees with the model (all fields the model knows);
  * no CONTINUE to an agent whose workspace was restored since the
    generation it sent (checked from the events alone, apart from the model);
  * nothing acknowledged is lost across kill -9 (the model only moves on
    acknowledged replies, and GetTask, the next restore's checkpoint and the
    restored files are checked against it);
  * events are strictly ordered (ids increase, across reconnects) and a
    replay with after_event_id gives exactly the events seen live;
  * a restored workspace holds exactly the files of the checkpoint, and the
    agent gets that checkpoint's external_state.

Timing: tasks use short heartbeat timeouts. The driver acts on a task only
while no server timer of that task can fire for a margin (it knows the
deadlines from GetTask); otherwise, and for "stop beating", it waits for
the events the server's timers produce (never a fixed sleep standing in
for one), checking each against the model. Scheduling delays only make
the driver wait longer.

Run: python3 model_driver.py --steps 2000 --seed 1 (see --help), with
PYTHONPATH holding the generated stubs and tests/integration (hstest)."""
import argparse
import collections
import json
import os
import random
import sys
import tempfile
import threading
import time

import grpc
from google.protobuf import json_format

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import hstest  # noqa: E402
from harness.v1 import checkpoint_pb2, health_pb2  # noqa: E402

import task_model as M  # noqa: E402

H = health_pb2
SLOW = hstest.SLOW
SECRET = "model-test-secret-0123456789abcdef0123"
ENV = {"HARNESS_JWT_SECRET": SECRET}
MARGIN_MS = int(200 * SLOW)   # no timer of a task we act on fires within this
WAIT_S = 20 * SLOW            # the longest any expected event may take
# See tests/integration/test_tasks.py: the checkpoint module's on_create hook
# is wired to the task registry in main.c once both branches are merged.
CKPT_HOOK_WIRED = os.environ.get("HS_CKPT_HOOK_WIRED", "0") == "1"


class ModelError(AssertionError):
    pass


def now_ms():
    return int(time.time() * 1000)


class Watcher:
    """WatchTasks on a thread; reconnects with after_event_id after a restart
    and checks that ids only ever increase (no repeats, across reconnects)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.events = []                      # every event, in id order
        self.by_task = collections.defaultdict(list)
        self.last_id = 0
        self.error = None
        self.stream = None
        self.gen = 0                          # connection generation
        self.thread = None

    def connect(self, channel, md):
        with self.cond:
            self.gen += 1
            gen = self.gen
            fn = channel.unary_stream("/harness.v1.HealthService/WatchTasks",
                                      request_serializer=H.WatchTasksRequest.SerializeToString,
                                      response_deserializer=H.TaskEvent.FromString)
            self.stream = fn(H.WatchTasksRequest(after_event_id=self.last_id), metadata=md)
            stream = self.stream
        self.thread = threading.Thread(target=self._run, args=(stream, gen), daemon=True)
        self.thread.start()

    def _run(self, stream, gen):
        try:
            for ev in stream:
                with self.cond:
                    if gen != self.gen:
                        return
                    if ev.type == H.TASK_EVENT_TYPE_EVENTS_DROPPED:
                        self.error = "the model's watcher fell behind: %s" % ev.message
                    elif ev.event_id <= self.last_id:
                        self.error = "event %d after %d: repeated or out of order" % (ev.event_id, self.last_id)
                    else:
                        self.last_id = ev.event_id
                        self.events.append(ev)
                        self.by_task[ev.task_id].append(ev)
                    self.cond.notify_all()
        except grpc.RpcError:
            pass

    def close(self):
        with self.cond:
            self.gen += 1
            if self.stream is not None:
                self.stream.cancel()
        if self.thread is not None:
            self.thread.join(5)

    def of(self, task_id):
        with self.cond:
            return list(self.by_task[task_id])

    def wait_count(self, task_id, n, timeout):
        """Waits until task_id has at least n events; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.by_task[task_id]) < n:
                if self.error:
                    raise ModelError(self.error)
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            if self.error:
                raise ModelError(self.error)
            return True


class Agent:
    def __init__(self, legacy):
        self.legacy = legacy  # never sends a generation (an agent written before fencing)
        self.gen = 0
        self.step = 0
        self.alive = True
        self.dirty = False    # wrote files since the last checkpoint


class Task:
    def __init__(self, task_id, model, agent, timeout_ms, policy):
        self.id, self.model, self.agent = task_id, model, agent
        self.timeout_ms, self.policy = timeout_ms, policy
        self.seen = 0          # events of the task accounted for by the model
        self.quiet_until = 0   # server wall ms before which no timer of it fires
        self.base_gen = 0      # generation at its last REGISTERED (from events)
        self.started_gen = 0   # highest RECOVERY_STARTED generation (from events)
        self.last_beat = 0     # when its agent last beat (driver ms)
        self.silent = False    # its agent stopped beating (a stop_beating step)


class Driver:
    def __init__(self, seed, steps, data_dir=None, verbose=False, max_tasks=5):
        self.rng = random.Random(seed)
        self.seed, self.steps, self.verbose, self.max_tasks = seed, steps, verbose, max_tasks
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hs-model-")
            data_dir = self._tmp.name
        self.data_dir = data_dir
        self.ws_root = os.path.join(data_dir, "workspaces")
        self.tasks = {}
        self.n_ids = 0
        self.ckpts = {}        # checkpoint id -> (files, external_state dict)
        self.log = collections.deque(maxlen=60)
        self.watcher = Watcher()
        self.hd = None
        self.counts = collections.Counter()
        self.times = collections.Counter()
        self.done = 0
        self.in_keepalive = False

    # ---- server --------------------------------------------------------------

    def start_server(self):
        self.hd = hstest.Harnessd(data_dir=self.data_dir, env=ENV)
        token = hstest.login(self.hd.channel, "admin@example.com", "admin-password-1", timeout=20 * SLOW)
        self.md = (("authorization", "Bearer " + token),)
        self.health = hstest.ServiceClient(self.hd.channel, H, "HealthService", token, timeout=10 * SLOW)
        self.create_ckpt = hstest.stub(self.hd.channel, "/harness.v1.CheckpointService/CreateCheckpoint",
                                       checkpoint_pb2.CreateCheckpointRequest,
                                       checkpoint_pb2.CreateCheckpointResponse)
        self.login_at = time.monotonic()
        self.watcher.connect(self.hd.channel, self.md)

    def kill_restart(self):
        self.note("kill -9 and restart")
        self.watcher.close()
        self.hd.kill()
        self.hd.channel.close()
        keep = self.hd._tmp
        self.hd._tmp = None
        assert keep is None
        self.start_server()
        for t in self.tasks.values():
            t.quiet_until = 0  # unknown until the next GetTask

    def close(self):
        self.watcher.close()
        if self.hd is not None:
            self.hd.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # ---- bookkeeping -----------------------------------------------------------

    def note(self, what):
        self.log.append("[%d] %s" % (self.done, what))
        if self.verbose:
            print(self.log[-1], flush=True)

    def fail(self, why):
        raise ModelError("seed %d step %d: %s\nrecent steps:\n  %s" % (
            self.seed, self.done, why, "\n  ".join(self.log)))

    def call(self, fn, **kw):
        """(code name, response) of a unary call."""
        try:
            return "OK", fn(**kw)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                self.fail("token rejected: %s" % e.details())
            return e.code().name, e

    def wait_events(self, t, n, timeout):
        """Wait until t has n events; meanwhile the other agents keep
        beating, as real agents would. False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.watcher.wait_count(t.id, n, 0.05):
            if time.monotonic() > deadline:
                return False
            self.keep_alive(busy=t)
        return True

    def keep_alive(self, busy=None):
        """Every live agent beats about every 1.5 heartbeat intervals (the
        ones that were told to resume acknowledge that way), while its task
        is in a window where no timer can fire."""
        if self.in_keepalive:
            return
        self.in_keepalive = True
        try:
            for t in list(self.tasks.values()):
                if t is busy or t.silent or not t.agent.alive or t.model.state in M.TERMINAL:
                    continue
                if time.monotonic() * 1000 - t.last_beat < 150 * SLOW or now_ms() + MARGIN_MS >= t.quiet_until:
                    continue
                self.agent_beat(t)
        finally:
            self.in_keepalive = False

    def sync(self, t):
        """Account for every observed event of t beyond the model's: each
        must be the one the model predicts from the server's timers."""
        evs = self.watcher.of(t.id)
        while t.seen < len(evs):
            ev = evs[t.seen]
            want = t.model.next_async()
            if want is None:
                self.fail("%s: unexpected event %s (model: %r)" % (t.id, H.TaskEventType.Name(ev.type), t.model))
            bad = want.mismatch(ev)
            if bad:
                self.fail("%s: event %s (id %d): %s; model %r" % (t.id, H.TaskEventType.Name(ev.type),
                                                                   ev.event_id, bad, t.model))
            t.model.advance()
            t.seen += 1
            self.track(t, ev)
            self.note("%s: %s (timer/worker)" % (t.id, M.EVENT_NAMES.get(ev.type)))

    def track(self, t, ev):
        """The model-independent fencing bookkeeping, from events only."""
        if ev.type == H.TASK_EVENT_TYPE_REGISTERED:
            t.base_gen = ev.recovery_generation
        if ev.type == H.TASK_EVENT_TYPE_RECOVERY_STARTED:
            t.started_gen = max(t.started_gen, ev.recovery_generation)

    def expect(self, t, evs):
        """Wait for the events an action must emit, check them in order."""
        if not evs:
            return
        if not self.wait_events(t, t.seen + len(evs), WAIT_S):
            self.fail("%s: expected %r, saw %s" % (t.id, evs, [M.EVENT_NAMES.get(e.type) for e in
                                                               self.watcher.of(t.id)[t.seen:]]))
        got = self.watcher.of(t.id)
        for want in evs:
            ev = got[t.seen]
            bad = want.mismatch(ev)
            if bad:
                self.fail("%s: event %s: %s (expected %r)" % (t.id, H.TaskEventType.Name(ev.type), bad, want))
            t.seen += 1
            self.track(t, ev)

    def check_task(self, t):
        """GetTask agrees with the model (after the events that explain any
        difference arrived); refreshes t.quiet_until."""
        deadline = time.monotonic() + WAIT_S
        while True:
            self.sync(t)
            code, got = self.call(self.health.GetTask, task_id=t.id)
            if code != "OK":
                self.fail("%s: GetTask %s" % (t.id, code))
            bad = t.model.mismatch(got)
            if bad is None:
                self.sync(t)
                if t.model.mismatch(got) is None:
                    break
            if time.monotonic() > deadline:
                self.fail("%s: GetTask disagrees: %s; model %r" % (t.id, bad, t.model))
            self.wait_events(t, len(self.watcher.of(t.id)) + 1, 0.05)
        m = t.model
        if m.state in M.TERMINAL:
            t.quiet_until = float("inf")
        elif m.state == M.RUNNING or (m.state == M.RECOVERING and m.restored):
            t.quiet_until = got.next_heartbeat_deadline.ToMilliseconds() if got.HasField(
                "next_heartbeat_deadline") else 0
        elif m.state == M.STALLED:
            t.quiet_until = got.next_attempt_at.ToMilliseconds() if got.HasField("next_attempt_at") else 0
        else:
            t.quiet_until = 0  # a restore is under way
        return got

    def settle(self, t):
        """Until no timer of t can fire within the margin: wait for the
        events its timers produce, one at a time, checking each."""
        for _ in range(50):
            self.check_task(t)
            if now_ms() + MARGIN_MS < t.quiet_until:
                return
            want = t.model.next_async()
            if want is None:
                return
            wait = max(0.0, (t.quiet_until - now_ms()) / 1000.0) + WAIT_S
            if not self.wait_events(t, t.seen + 1, wait):
                self.fail("%s: waited for %r from the server's timers; model %r" % (t.id, want, t.model))
            self.sync(t)
        self.fail("%s: does not settle" % t.id)

    # ---- the workspace -----------------------------------------------------------

    def ws(self, t):
        return os.path.join(self.ws_root, t.id)

    def read_ws(self, t):
        out = {}
        root = self.ws(t)
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = os.path.join(dirpath, n)
                with open(p, "rb") as f:
                    out[os.path.relpath(p, root)] = f.read()
        return out

    def work(self, t):
        """The agent does a step: new files, a changed one, a deleted one."""
        root = self.ws(t)
        t.agent.step += 1
        with open(os.path.join(root, "step-%d.txt" % t.agent.step), "wb") as f:
            f.write(os.urandom(self.rng.randint(1, 64)))
        if self.rng.random() < 0.3:
            with open(os.path.join(root, "notes.txt"), "ab") as f:
                f.write(b"step %d\n" % t.agent.step)
        names = [n for n in os.listdir(root) if n.startswith("step-")]
        if len(names) > 3 and self.rng.random() < 0.2:
            os.remove(os.path.join(root, self.rng.choice(names)))
        t.agent.dirty = True

    # ---- steps -----------------------------------------------------------------

    def pick(self, pred=None):
        ids = [i for i, t in self.tasks.items() if pred is None or pred(t)]
        return self.tasks[self.rng.choice(ids)] if ids else None

    def step_register(self):
        live = [t for t in self.tasks.values() if t.model.state not in M.TERMINAL]
        terminal = [t for t in self.tasks.values() if t.model.state in M.TERMINAL]
        if terminal and (len(live) >= self.max_tasks or self.rng.random() < 0.3):
            t = self.rng.choice(terminal)
            self.settle(t)
            code, _ = self.call(self.health.RegisterTask, task_id=t.id, heartbeat_interval_ms=100,
                                heartbeat_timeout_ms=t.timeout_ms, recovery_policy=t.policy)
            reply, evs = t.model.reregister()
            if code != reply.code:
                self.fail("%s: re-register %s, model %s" % (t.id, code, reply.code))
            t.agent = Agent(legacy=self.rng.random() < 0.25)
            t.agent.gen = t.model.gen if not t.agent.legacy else 0
            self.note("%s: registered again (gen %d)" % (t.id, t.model.gen))
            self.expect(t, evs)
            self.check_task(t)
            return
        if len(live) >= self.max_tasks:
            return self.step_heartbeat()
        tid = "m%d-%d" % (self.seed % 1000, self.n_ids)
        self.n_ids += 1
        timeout = int(self.rng.choice((500, 800)) * SLOW)
        policy = H.RecoveryPolicy(max_attempts=self.rng.choice((1, 2, 3)),
                                  initial_backoff_ms=int(self.rng.choice((100, 300)) * SLOW),
                                  backoff_multiplier=1.5, max_backoff_ms=int(1000 * SLOW))
        os.makedirs(os.path.join(self.ws_root, tid), exist_ok=True)
        code, r = self.call(self.health.RegisterTask, task_id=tid, heartbeat_interval_ms=100,
                            heartbeat_timeout_ms=timeout, recovery_policy=policy)
        if code != "OK":
            self.fail("%s: RegisterTask %s" % (tid, code))
        t = Task(tid, M.TaskModel(tid, policy.max_attempts, CKPT_HOOK_WIRED), Agent(self.rng.random() < 0.25),
                 timeout, policy)
        self.tasks[tid] = t
        self.note("%s: registered (timeout %d, attempts %d, %s agent)" % (
            tid, timeout, policy.max_attempts, "legacy" if t.agent.legacy else "fenced"))
        self.expect(t, [M.Ev(M.REGISTERED, M.RUNNING, 0, step=0)])
        self.check_task(t)

    def heartbeat(self, t, g, step, zombie=False):
        """One heartbeat with generation g; checks the reply against the
        model and the fencing rule; the agent follows it (not a zombie)."""
        self.settle(t)
        restored_since = t.started_gen > max(g, t.base_gen)
        code, r = self.call(self.health.Heartbeat, task_id=t.id, current_step=step, recovery_generation=g)
        reply, evs = t.model.heartbeat(g, step)
        ins = r.instruction if code == "OK" else None
        self.note("%s: heartbeat g=%d step=%d -> %s %s" % (t.id, g, step, code,
                                                           M.INSTRUCTION_NAMES.get(ins, "")))
        if code == "OK" and ins == H.INSTRUCTION_CONTINUE and restored_since:
            self.fail("%s: CONTINUE to generation %d after a restore of generation %d" % (t.id, g, t.started_gen))
        if code != reply.code:
            self.fail("%s: heartbeat %s, model %r" % (t.id, code, reply))
        if code == "OK":
            if (ins, r.state, r.recovery_generation) != (reply.instruction, reply.state, reply.gen):
                self.fail("%s: heartbeat %s %s gen %d, model %r" % (
                    t.id, H.Instruction.Name(ins), H.TaskState.Name(r.state), r.recovery_generation, reply))
            if ins == H.INSTRUCTION_RESUME_FROM_CHECKPOINT:
                self.resumed(t, r, reply, zombie)
            elif ins == H.INSTRUCTION_CANCEL and not zombie:
                t.agent.alive = False
            elif ins == H.INSTRUCTION_CONTINUE and not zombie and g == t.model.gen:
                t.agent.gen = g
        self.expect(t, evs)
        self.check_task(t)

    def resumed(self, t, r, reply, zombie):
        ckpt, step = reply.resume
        if (r.checkpoint_id, r.resume_step) != (ckpt, step):
            self.fail("%s: RESUME to %s/%d, model %s/%d" % (t.id, r.checkpoint_id, r.resume_step, ckpt, step))
        files, external = self.ckpts[ckpt]
        # Nobody wrote since the restore unless an agent that acknowledged
        # it did (then a zombie's RESUME finds that agent's work).
        got = self.read_ws(t) if t.model.acked < t.model.gen else files
        if got != files:
            self.fail("%s: workspace after restore to %s differs: extra %s, missing %s, changed %s" % (
                t.id, ckpt, sorted(set(got) - set(files)), sorted(set(files) - set(got)),
                sorted(k for k in files if k in got and got[k] != files[k])))
        if json_format.MessageToDict(r.external_state) != external:
            self.fail("%s: external_state %s, checkpoint had %s" % (
                t.id, json_format.MessageToDict(r.external_state), external))
        if zombie:
            return
        t.agent.step = step
        t.agent.dirty = False
        if not t.agent.legacy:
            t.agent.gen = r.recovery_generation

    def agent_beat(self, t):
        a = t.agent
        t.last_beat = time.monotonic() * 1000
        self.heartbeat(t, 0 if a.legacy else a.gen, a.step)

    def step_heartbeat(self):
        t = self.pick(lambda t: t.agent.alive)
        if t is None:
            return self.step_register()
        if self.rng.random() < 0.15 and t.model.gen > 0:
            # a heartbeat of an older agent (a zombie) or of one without a generation
            g = self.rng.choice((0, self.rng.randint(0, t.model.gen)))
            return self.heartbeat(t, g, self.rng.randint(0, 9), zombie=True)
        self.agent_beat(t)

    def running_and_current(self, t):
        m = t.model
        g = 0 if t.agent.legacy else t.agent.gen
        return t.agent.alive and m.state == M.RUNNING and m.current(g)

    def step_work(self):
        t = self.pick(self.running_and_current)
        if t is None:
            return self.step_heartbeat()
        self.settle(t)
        if not self.running_and_current(t):
            return
        self.work(t)
        self.note("%s: agent works on step %d" % (t.id, t.agent.step))
        self.agent_beat(t)

    def step_checkpoint(self):
        t = self.pick(self.running_and_current)
        if t is None:
            return self.step_heartbeat()
        self.settle(t)
        if not self.running_and_current(t):
            return
        if self.rng.random() < 0.6:
            self.work(t)
        files = self.read_ws(t)
        external = {"step": t.agent.step, "nonce": self.rng.randint(0, 1 << 30)}
        req = checkpoint_pb2.CreateCheckpointRequest(task_id=t.id, step=t.agent.step, description="s")
        req.external_state.update(external)
        try:
            resp = self.create_ckpt(req, metadata=self.md, timeout=30 * SLOW)
        except grpc.RpcError as e:
            self.fail("%s: CreateCheckpoint %s: %s" % (t.id, e.code(), e.details()))
        c = resp.checkpoint
        if c.checkpoint_id not in self.ckpts:
            self.ckpts[c.checkpoint_id] = (files, json_format.MessageToDict(c.external_state))
        elif self.ckpts[c.checkpoint_id][0] != files:
            self.fail("%s: checkpoint %s answered for a different tree" % (t.id, c.checkpoint_id))
        t.model.checkpoint_created(c.checkpoint_id, c.step)
        t.agent.dirty = False
        self.note("%s: checkpoint %s step %d%s" % (t.id, c.checkpoint_id, c.step,
                                                   " (unchanged)" if resp.unchanged else ""))
        self.check_task(t)

    def step_stop_beating(self):
        """The agent stops: wait for the events the server's timers make."""
        t = self.pick(lambda t: t.model.state not in M.TERMINAL)
        if t is None:
            return self.step_register()
        n = self.rng.randint(1, 4)
        self.note("%s: stops beating for %d timer event(s)" % (t.id, n))
        t.silent = True
        try:
            for _ in range(n):
                self.check_task(t)
                want = t.model.next_async()
                if want is None:
                    break
                wait = max(0.0, (t.quiet_until - now_ms()) / 1000.0) + WAIT_S
                if not self.wait_events(t, t.seen + 1, wait):
                    self.fail("%s: waited for %r; model %r" % (t.id, want, t.model))
                self.sync(t)
        finally:
            t.silent = False
        self.check_task(t)

    def step_rpc(self, name):
        t = self.pick()
        if t is None:
            return self.step_register()
        self.settle(t)
        if name == "cancel":
            code, _ = self.call(self.health.CancelTask, task_id=t.id, reason="model")
            reply, evs = t.model.cancel()
        elif name == "complete":
            ok = self.rng.random() < 0.7
            code, _ = self.call(self.health.CompleteTask, task_id=t.id, success=ok, message="model")
            reply, evs = t.model.complete(ok)
        else:
            code, _ = self.call(self.health.RecoverTask, task_id=t.id, reason="model")
            reply, evs = t.model.recover()
        self.note("%s: %s -> %s" % (t.id, name, code))
        if code != reply.code:
            self.fail("%s: %s %s, model %r" % (t.id, name, code, reply))
        self.expect(t, evs)
        if name == "recover" and code == "OK" and self.rng.random() < 0.2:
            self.kill_restart()  # mid-restore, sometimes
        self.check_task(t)

    def step_replay(self):
        """A new stream from a random point replays exactly what was seen."""
        with self.watcher.cond:
            seen = list(self.watcher.events)
        if not seen:
            return
        target = seen[-1].event_id
        k = self.rng.choice(seen).event_id - 1
        if k < 1:
            return  # after_event_id 0 means "live events only"
        one = self.rng.random() < 0.3
        # one task's replay: a task with events after k (else nothing says
        # the replay is over before its deadline)
        task = self.rng.choice([e for e in seen if e.event_id > k]).task_id if one else ""
        want = [e for e in seen if e.event_id > k and (not one or e.task_id == task)]
        fn = self.hd.channel.unary_stream("/harness.v1.HealthService/WatchTasks",
                                          request_serializer=H.WatchTasksRequest.SerializeToString,
                                          response_deserializer=H.TaskEvent.FromString)
        stream = fn(H.WatchTasksRequest(after_event_id=k, task_id=task), metadata=self.md, timeout=WAIT_S)
        got = []
        try:
            for ev in stream:
                if ev.event_id > target:
                    break
                got.append(ev)
                if ev.event_id == target or (want and ev.event_id == want[-1].event_id and one):
                    break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                self.fail("replay after %d: %s" % (k, e.code()))
        finally:
            stream.cancel()
        if [e.SerializeToString() for e in got] != [e.SerializeToString() for e in want]:
            self.fail("replay after event %d%s: %d events, %d seen live; first difference at %s" % (
                k, " of " + task if one else "", len(got), len(want),
                next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))))
        self.note("replay after %d%s: %d events" % (k, " of " + task if one else "", len(got)))

    STEPS = (("heartbeat", 30), ("work", 14), ("checkpoint", 12), ("register", 5), ("stop_beating", 4),
             ("cancel", 2), ("complete", 2), ("recover", 4), ("replay", 2), ("kill", 1))

    def run(self):
        self.start_server()
        names = [n for n, _ in self.STEPS]
        weights = [w for _, w in self.STEPS]
        for _ in range(3):
            self.step_register()
        while self.done < self.steps:
            if time.monotonic() - self.login_at > 300:  # tokens expire; log in again
                token = hstest.login(self.hd.channel, "admin@example.com", "admin-password-1")
                self.md = (("authorization", "Bearer " + token),)
                self.health.md = list(self.md)
                self.login_at = time.monotonic()
            t0 = time.monotonic()
            self.keep_alive()
            self.times["keep_alive"] += time.monotonic() - t0
            name = self.rng.choices(names, weights)[0]
            self.counts[name] += 1
            t0 = time.monotonic()
            if name == "kill":
                self.kill_restart()
                for t in self.tasks.values():
                    self.check_task(t)  # nothing acknowledged was lost
            elif name in ("cancel", "complete", "recover"):
                self.step_rpc(name)
            else:
                getattr(self, "step_" + name)()
            self.times[name] += time.monotonic() - t0
            if self.watcher.error:
                self.fail(self.watcher.error)
            for t in self.tasks.values():  # every event so far, whatever task it is of
                self.sync(t)
            if self.done % 100 == 99:      # and every task agrees, now and then
                for t in self.tasks.values():
                    self.check_task(t)
            self.done += 1
        for t in self.tasks.values():
            self.check_task(t)
        return self.done


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 31)
    d = Driver(seed, a.steps, verbose=a.verbose)
    t0 = time.monotonic()
    try:
        n = d.run()
    except ModelError as e:
        print("MODEL FAILURE\n%s" % e, file=sys.stderr)
        print(json.dumps({"seed": seed, "steps_clean": d.done, "failed": True}))
        d.close()
        return 1
    d.close()
    print(json.dumps({"seed": seed, "steps_clean": n, "failed": False, "seconds": round(time.monotonic() - t0, 1),
                      "steps": dict(d.counts), "tasks": len(d.tasks), "events": d.watcher.last_id,
                      "step_seconds": {k: round(v, 1) for k, v in d.times.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
