"""Issue 19: WatchTasks across nodes. Two harnessd on one PostgreSQL
database (the pg fixture's server): a watcher on node A sees the events
node B commits, interleaved with A's own, in event-id order, each once,
filtered by the one visibility rule (owner or admin); a replay with
after_event_id and a watch of one task work for B's tasks too."""
import os
import threading
import time
import unittest

import grpc

from harness.v1 import auth_pb2, health_pb2 as H
import hstest
from test_tasks import Collector

BASE = hstest.STORE_PG
S = hstest.SLOW
ADMIN = ("admin@example.com", "admin-password-1")
ALICE = ("alice@example.com", "alice-password-1")
BOB = ("bob@example.com", "bob-password-1")
SVC = "/harness.v1.HealthService/"


class Client(hstest.ServiceClient):
    def __init__(self, channel, token):
        super().__init__(channel, H, "HealthService", token, timeout=20 * S)

    def watch(self, timeout=120, **kw):
        fn = hstest.stub(self.channel, SVC + "WatchTasks", H.WatchTasksRequest, H.TaskEvent,
                         "unary_stream")
        return fn(H.WatchTasksRequest(**kw), metadata=self.md, timeout=timeout * S)


def ids(collector):
    with collector.cond:
        return [e.event_id for _, e in collector.events]


def wait_for(pred, what, timeout=30):
    deadline = time.time() + timeout * S
    while not pred():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


@unittest.skipUnless(BASE, "needs HS_TEST_STORE_PG (the pg fixture)")
class WatchAcrossNodesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dsn = hstest.pg_create_database(BASE, "hs_watch_nodes_%d" % os.getpid())
        cls.nodes = []
        try:
            cls.a = cls.start()
            cls.b = cls.start()
            admin = hstest.login(cls.a.channel, *ADMIN)
            create = hstest.stub(cls.a.channel, "/harness.v1.AuthService/CreateUser",
                                 auth_pb2.CreateUserRequest, auth_pb2.User)
            for email, pw in (ALICE, BOB):
                create(auth_pb2.CreateUserRequest(email=email, password=pw, name=email[:5], role="user"),
                       metadata=[("authorization", "Bearer " + admin)], timeout=30)
            cls.clients = {}
            for name, node in (("a", cls.a), ("b", cls.b)):
                for who, cred in (("admin", ADMIN), ("alice", ALICE), ("bob", BOB)):
                    cls.clients[name, who] = Client(node.channel, hstest.login(node.channel, *cred))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls):
        # each node its own id: a second harnessd with a live node's id
        # refuses to start (the default id is the hostname)
        n = hstest.Harnessd(args=("--store", cls.dsn, "--node-id", "watch-%d" % len(cls.nodes)))
        cls.nodes.append(n)
        return n

    @classmethod
    def tearDownClass(cls):
        hstest.close_all(cls.nodes)

    def register(self, node, who, task_id):
        self.clients[node, who].RegisterTask(task_id=task_id, total_steps=3,
                                             heartbeat_interval_ms=60000, heartbeat_timeout_ms=120000)

    def test_watcher_on_a_sees_b_in_order_once(self):
        # A mark: its event id; every watcher starts right after it, so none
        # can miss what follows however late its stream opens.
        self.register("a", "admin", "wn-first")  # after_event_id 0 means "live": never replayed
        self.register("a", "admin", "wn-mark")
        probe = Collector(self.clients["a", "admin"].watch(after_event_id=1))
        try:
            _, ev = probe.wait(lambda e: e.task_id == "wn-mark", 30)
        finally:
            probe.close()
        mark = ev.event_id
        admin_a = Collector(self.clients["a", "admin"].watch(after_event_id=mark))
        alice_a = Collector(self.clients["a", "alice"].watch(after_event_id=mark))
        bob_a = Collector(self.clients["a", "bob"].watch(after_event_id=mark))
        admin_b = Collector(self.clients["b", "admin"].watch(after_event_id=mark))
        try:
            # Both nodes write at once: B for alice, A for admin.
            def b_side():
                for i in range(10):
                    self.register("b", "alice", "wn-b-%d" % i)
                    self.clients["b", "alice"].CompleteTask(task_id="wn-b-%d" % i, success=True)

            def a_side():
                for i in range(10):
                    self.register("a", "admin", "wn-a-%d" % i)
                    self.clients["a", "admin"].CancelTask(task_id="wn-a-%d" % i, reason="test")

            ts = [threading.Thread(target=f) for f in (b_side, a_side)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            # 20 events from each node; everyone sees them, in the same order.
            wait_for(lambda: len(ids(admin_b)) >= 40, "node B's admin watcher to see 40 events")
            wait_for(lambda: len(ids(admin_a)) >= 40, "node A's admin watcher to see 40 events")
            wait_for(lambda: len(ids(alice_a)) >= 20, "alice's watcher on A to see B's 20 events")
            time.sleep(1.0 * S)  # a repeat, if any, would arrive now
            seen_a, seen_b = ids(admin_a), ids(admin_b)
            self.assertEqual(seen_a, sorted(set(seen_a)), "in order, once")
            self.assertEqual(seen_a, seen_b)
            self.assertEqual(len(seen_a), 40)
            with alice_a.cond:
                alice_events = [e for _, e in alice_a.events]
            self.assertEqual([e.event_id for e in alice_events],
                             sorted({e.event_id for e in alice_events}))
            self.assertEqual({e.task_id for e in alice_events}, {"wn-b-%d" % i for i in range(10)})
            self.assertEqual(len({e.owner for e in alice_events}), 1)
            self.assertNotIn("", {e.owner for e in alice_events})
            types = [e.type for e in alice_events if e.task_id == "wn-b-3"]
            self.assertEqual(types, [H.TASK_EVENT_TYPE_REGISTERED, H.TASK_EVENT_TYPE_COMPLETED])
            # bob sees nobody's events; the admin's watcher on A saw B's with their owner.
            self.assertEqual(ids(bob_a), [])
            with admin_a.cond:
                b_owned = {e.owner for _, e in admin_a.events if e.task_id.startswith("wn-b-")}
            self.assertEqual(len(b_owned), 1)
            self.assertNotIn("", b_owned)

            # Replaying on A (after_event_id) gives alice B's events again, same ids.
            replay = Collector(self.clients["a", "alice"].watch(after_event_id=mark))
            try:
                wait_for(lambda: len(ids(replay)) >= 20, "alice's replay on A")
                self.assertEqual(ids(replay)[:20], [e.event_id for e in alice_events])
            finally:
                replay.close()
            # One task of B's, watched on A: alice may, bob's answer is NOT_FOUND.
            one = Collector(self.clients["a", "alice"].watch(task_id="wn-b-1", send_initial=False,
                                                             after_event_id=mark))
            try:
                wait_for(lambda: len(ids(one)) >= 2, "alice's watch of wn-b-1 on A")
            finally:
                one.close()
            with self.assertRaises(grpc.RpcError) as cm:
                for _ in self.clients["a", "bob"].watch(task_id="wn-b-1", timeout=30):
                    break
            self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

            # send_initial on A: one INITIAL_STATE per open task of the
            # caller's, B's included (completed ones are not open).
            self.register("b", "alice", "wn-open-b")
            self.register("a", "alice", "wn-open-a")
            self.register("b", "bob", "wn-open-bob")
            init = Collector(self.clients["a", "alice"].watch(send_initial=True))
            try:
                init.wait(lambda e: e.task_id == "wn-open-b", 30)
                init.wait(lambda e: e.task_id == "wn-open-a", 30)
                time.sleep(0.5 * S)
                with init.cond:
                    initial = [e for _, e in init.events if e.type == H.TASK_EVENT_TYPE_INITIAL_STATE]
                self.assertEqual(sorted(e.task_id for e in initial), ["wn-open-a", "wn-open-b"])
                self.assertEqual({H.TaskState.Name(e.state) for e in initial}, {"TASK_STATE_RUNNING"})
            finally:
                init.close()
        finally:
            for c in (admin_a, alice_a, bob_a, admin_b):
                c.close()


if __name__ == "__main__":
    unittest.main()
