"""Limits and fairness of the RPC core, end to end through grpcio against a
real harnessd, with two plain users: bob attacks, alice must not notice.

* A 5,000-deep google.protobuf.Struct (tens of KB) used to overflow the
  stack inside protobuf-c: it is INVALID_ARGUMENT and harnessd stays up.
* Slow readers: a dozen WatchTasks{after_event_id: 1} streams whose client
  does not read used to hold every worker in the replay; alice's Login,
  RegisterTask, Heartbeat and GetTask still answer, and the stalled replays
  arrive complete and in order once read.
* Long operations: DestroySandbox with a grace period runs on its own lane,
  bounded per user; with those and the slow streams together, alice's
  heartbeats keep their deadlines and her task is never declared stalled.

No timed assertions: each call has a deadline far above its normal latency
(scaled under sanitizers); what is checked is that it answers at all while
bob's load is in place, and that alice's task stays RUNNING."""
import os
import threading
import time
import unittest
import uuid

import grpc

from harness.v1 import auth_pb2, checkpoint_pb2, health_pb2, sandbox_pb2
from hsstd import health_pb2 as std_health_pb2

import hstest

H = health_pb2
S = hstest.SLOW
ADMIN = ("admin@example.com", "admin-password-1")
N_SLOW = 12  # more slow streams than the server has workers (8)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, payload):
    """A length-delimited field."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def deep_create_checkpoint(levels):
    """CreateCheckpointRequest{task_id, external_state: {"a": {"a": ...}}},
    built by hand: no encoder produces 5,000 levels."""
    s = b""
    for _ in range(levels):
        value = field(5, s)                      # Value.struct_value
        s = field(1, field(1, b"a") + field(2, value))  # Struct.fields entry
    return field(1, b"b-deep") + field(4, s)


def make_user(channel, admin_token, email):
    fn = hstest.stub(channel, "/harness.v1.AuthService/CreateUser", auth_pb2.CreateUserRequest,
                     auth_pb2.User)
    fn(auth_pb2.CreateUserRequest(email=email, password="password-" + email, role="user"),
       metadata=[("authorization", "Bearer " + admin_token)], timeout=10 * S)
    return hstest.login(channel, email, "password-" + email)


class User:
    def __init__(self, channel, email, token):
        self.channel, self.email, self.token = channel, email, token
        self.md = [("authorization", "Bearer " + token)]
        self.tasks = hstest.ServiceClient(channel, H, "HealthService", token, timeout=10 * S)
        self.sandboxes = hstest.ServiceClient(channel, sandbox_pb2, "SandboxService", token,
                                              timeout=60 * S)

    def watch(self, channel, timeout=120, **kw):
        fn = hstest.stub(channel, "/harness.v1.HealthService/WatchTasks", H.WatchTasksRequest,
                         H.TaskEvent, "unary_stream")
        return fn(H.WatchTasksRequest(**kw), metadata=self.md, timeout=timeout * S)

    def login(self, timeout):
        return hstest.login(self.channel, self.email, "password-" + self.email, timeout=timeout)


class FairnessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hd = hstest.Harnessd(args=["--sandbox-driver", "bwrap"])
        ch = cls.hd.channel
        admin = hstest.login(ch, *ADMIN)
        cls.alice = User(ch, "alice@example.com", make_user(ch, admin, "alice@example.com"))
        cls.bob = User(ch, "bob@example.com", make_user(ch, admin, "bob@example.com"))
        # Bob's event history: enough bytes that a replay fills a 64 KiB
        # window and the server's send queue many times over.
        reason = "r" * 1000
        cls.bob_tasks = ["bob-%03d" % i for i in range(250)]
        for tid in cls.bob_tasks:
            cls.bob.tasks.RegisterTask(task_id=tid, heartbeat_interval_ms=60000,
                                       heartbeat_timeout_ms=600000)
            cls.bob.tasks.CancelTask(task_id=tid, reason=reason)

    @classmethod
    def tearDownClass(cls):
        cls.hd.close()
        bad = [l for l in cls.hd.raw_lines if "runtime error" in l or "Sanitizer" in l]
        if bad:
            raise AssertionError("sanitizer reports:\n" + "\n".join(bad[:20]))

    def alive(self):
        fn = hstest.stub(self.hd.channel, "/grpc.health.v1.Health/Check",
                         std_health_pb2.HealthCheckRequest, std_health_pb2.HealthCheckResponse)
        return fn(std_health_pb2.HealthCheckRequest(), timeout=10 * S).status

    def slow_streams(self, user):
        """N_SLOW replaying streams on a channel with a fixed 64 KiB window
        (no BDP probing) that nobody reads."""
        ch = grpc.insecure_channel(self.hd.target, options=[("grpc.http2.bdp_probe", 0)])
        streams = [user.watch(ch, after_event_id=1) for _ in range(N_SLOW)]
        return ch, streams

    # -- parsing --------------------------------------------------------------

    def test_deep_struct_is_refused_and_harnessd_stays_up(self):
        msg = deep_create_checkpoint(5000)
        self.assertLess(len(msg), 100 * 1024)
        create = hstest.raw(self.hd.channel, "/harness.v1.CheckpointService/CreateCheckpoint")
        with self.assertRaises(grpc.RpcError) as cm:
            create(msg, metadata=self.bob.md, timeout=10 * S)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("external_state: nested deeper than 100 levels", cm.exception.details())
        self.assertEqual(self.hd.proc.poll(), None)
        self.assertEqual(self.alive(), std_health_pb2.HealthCheckResponse.SERVING)
        # Also unauthenticated: refused before anything is decoded.
        with self.assertRaises(grpc.RpcError) as cm:
            create(msg, timeout=10 * S)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        # As deep as the checkpoint module allows (30 JSON levels: 91
        # message levels) reaches it, which then judges the request itself
        # (it creates the task's default workspace and records the step).
        try:
            create(deep_create_checkpoint(30), metadata=self.bob.md, timeout=10 * S)
        except grpc.RpcError as e:
            self.assertNotIn("nested deeper", e.details())
        self.assertEqual(self.alive(), std_health_pb2.HealthCheckResponse.SERVING)

    # -- slow readers -------------------------------------------------------------

    def test_slow_watchers_do_not_stall_other_users(self):
        ch, streams = self.slow_streams(self.bob)
        try:
            time.sleep(1.0 * S)  # every replay has filled its window and queue by now
            tid = "alice-%s" % uuid.uuid4().hex[:8]
            self.alice.login(timeout=10 * S)
            self.alice.tasks.RegisterTask(task_id=tid, heartbeat_interval_ms=1000,
                                          heartbeat_timeout_ms=60000, timeout=10 * S)
            self.alice.tasks.Heartbeat(task_id=tid, current_step=1, timeout=10 * S)
            self.assertEqual(self.alice.tasks.GetTask(task_id=tid, timeout=10 * S).current_step, 1)
            # Bob's own calls too: his streams hold nothing.
            self.bob.tasks.GetTask(task_id=self.bob_tasks[0], timeout=10 * S)
            # A stalled replay, once read, is complete and in order: no event
            # lost or repeated across the many steps it took.
            last = {}
            prev = 0
            for ev in streams[0]:
                self.assertGreater(ev.event_id, prev)
                prev = ev.event_id
                last[(ev.task_id, ev.type)] = ev.event_id
                if ev.task_id == self.bob_tasks[-1] and ev.type == H.TASK_EVENT_TYPE_CANCELLED:
                    break
            want = {(t, ty) for t in self.bob_tasks
                    for ty in (H.TASK_EVENT_TYPE_REGISTERED, H.TASK_EVENT_TYPE_CANCELLED)}
            want.discard((self.bob_tasks[0], H.TASK_EVENT_TYPE_REGISTERED))  # event 1: not after 1
            self.assertEqual(sorted(want - set(last)), [])
            self.assertFalse([k for k in last if k[0].startswith("alice-")])  # only his own
        finally:
            for s in streams:
                s.cancel()
            ch.close()

    # -- everything at once ---------------------------------------------------------

    def test_heartbeats_keep_deadlines_under_slow_streams_and_long_destroys(self):
        # Alice's agent: heartbeats every 200 ms, stalled after 3 s without.
        tid = "alice-hb-%s" % uuid.uuid4().hex[:8]
        self.alice.tasks.RegisterTask(task_id=tid, heartbeat_interval_ms=200,
                                      heartbeat_timeout_ms=int(3000 * S))
        stop = threading.Event()
        beats, failures = [], []

        def agent():
            step = 0
            while not stop.is_set():
                step += 1
                try:
                    # the property is her task's deadline (checked below),
                    # not a latency: a generous per-call limit
                    self.alice.tasks.Heartbeat(task_id=tid, current_step=step, timeout=10.0 * S)
                    beats.append(step)
                except grpc.RpcError as e:
                    failures.append((step, e.code(), e.details()))
                stop.wait(0.2)

        hb = threading.Thread(target=agent, daemon=True)
        hb.start()
        # Bob: sandboxes that ignore SIGTERM, destroyed with a 3 s grace each,
        # all at once, plus a dozen replays nobody reads.
        n_sb = 6
        ids = ["bob-sb-%d-%s" % (i, uuid.uuid4().hex[:6]) for i in range(n_sb)]
        for sid in ids:
            self.bob.sandboxes.CreateSandbox(sandbox_id=sid, entrypoint=[
                "/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"])
            self.bob.sandboxes.StartSandbox(sandbox_id=sid)
        ch, streams = self.slow_streams(self.bob)
        try:
            destroys = [self.bob.sandboxes.DestroySandbox.future(sandbox_id=sid, grace_period_ms=3000,
                                                                 timeout=120 * S)
                        for sid in ids]
            time.sleep(0.5 * S)
            # While all that is in flight, alice's interactive calls answer.
            while not all(d.done() for d in destroys):
                self.alice.login(timeout=10 * S)
                self.alice.tasks.GetTask(task_id=tid, timeout=10 * S)
                time.sleep(0.3)
            for d in destroys:
                self.assertEqual(d.result().state, sandbox_pb2.SANDBOX_STATE_DESTROYED)
        finally:
            for s in streams:
                s.cancel()
            ch.close()
            stop.set()
            hb.join(timeout=30)
        self.assertEqual(failures, [])
        self.assertGreater(len(beats), 5)
        t = self.alice.tasks.GetTask(task_id=tid)
        self.assertEqual(t.state, H.TASK_STATE_RUNNING)
        self.assertEqual(t.recovery_attempts, 0)


if __name__ == "__main__":
    unittest.main()
