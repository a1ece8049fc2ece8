"""Many harnessd nodes on one PostgreSQL store, one owner per task (issue 19,
part 2): three harnessd on loopback, each with its own data dir and
workspace root, sharing one database of the pg fixture's server, with short
task leases (--task-lease-ms).

* a task belongs to the node that registered it (one lease, fence 1), every
  node advertises itself, a heartbeat or GetTask sent to another node is
  served from the store without moving the lease, and a call that would
  change the task there answers UNAVAILABLE naming the holder's address;
* kill -9 the node that owns a task in the middle of its recovery: another
  node takes the lease over and finishes the recovery exactly once (one
  RECOVERY_STARTED for the generation, no lost or duplicated event);
* a node whose lease was taken over while it was paused stops acting on the
  task: the task times out exactly once, by its new owner;
* ListTasks answers every node's tasks on any node (read from the store):
  alice sees all of hers and only hers, paging by 2 across nodes (a token
  from one node continued on the next) gives every task once, newest
  first; state and label filters apply; the admin sees every task;
* a node stopped with SIGTERM gives its leases up and leaves the node list;
  a survivor takes its tasks;
* a node paused longer than its lease, whose id another process claimed
  meanwhile, exits (75) when it resumes without overwriting the new
  process's node row or giving up the leases it now renews.

No timed assertions: every wait polls for a condition with a generous
limit."""
import os
import signal
import time
import unittest

import grpc

from harness.v1 import auth_pb2, checkpoint_pb2, health_pb2

import hstest

H = health_pb2
S = hstest.SLOW
ENV = {"HARNESS_JWT_SECRET": "integration-test-secret-0123456789abcdef",
       "HARNESS_METRICS_LISTEN": "127.0.0.1:0"}
LEASE_MS = 1500
NAMES = ("node-a", "node-b", "node-c")
EV_REGISTERED, EV_TIMEOUT, EV_STARTED, EV_RECOVERED = 1, 2, 3, 4


class Client(hstest.ServiceClient):
    def __init__(self, channel, token):
        super().__init__(channel, H, "HealthService", token, timeout=20 * S)

    def checkpoint(self, task_id, step):
        fn = hstest.stub(self.channel, "/harness.v1.CheckpointService/CreateCheckpoint",
                         checkpoint_pb2.CreateCheckpointRequest,
                         checkpoint_pb2.CreateCheckpointResponse)
        req = checkpoint_pb2.CreateCheckpointRequest(task_id=task_id, step=step, description="s")
        return fn(req, metadata=self.md, timeout=30 * S).checkpoint


def login(channel):
    return hstest.login(channel, "admin@example.com", "admin-password-1", timeout=20 * S)


def make_user(channel, admin_token, email, password):
    create_user = hstest.stub(channel, "/harness.v1.AuthService/CreateUser",
                              auth_pb2.CreateUserRequest, auth_pb2.User)
    create_user(auth_pb2.CreateUserRequest(email=email, password=password,
                                           name=email.split("@")[0], role="user"),
                metadata=[("authorization", "Bearer " + admin_token)], timeout=30 * S)


def poll(pred, timeout, what):
    deadline = time.time() + timeout * S
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


@unittest.skipUnless(hstest.STORE_PG, "needs the pg fixture (HS_TEST_STORE_PG)")
class NodesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dsn = hstest.pg_create_database(hstest.STORE_PG, "hs_nodes_%d" % os.getpid())
        cls.nodes = []
        for name in NAMES:
            cls.nodes.append(hstest.Harnessd(args=["--store", cls.dsn, "--node-id", name,
                                                   "--task-lease-ms", str(LEASE_MS)], env=ENV))
        cls.clients = [Client(n.channel, login(n.channel)) for n in cls.nodes]

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            if n.proc.poll() is None:
                n.close()
            else:  # killed by a test
                n.channel.close()
                if n._tmp is not None:
                    n._tmp.cleanup()

    def query(self, sql):
        return hstest.PgServer.query(None, sql, self.dsn)

    def lease(self, task_id):
        rows = self.query("SELECT node_id, fence FROM task_leases WHERE task_id = '%s'" % task_id)
        return (rows[0][0], int(rows[0][1])) if rows else None

    def events(self, task_id):
        return [(int(r[0]), int(r[1]), int(r[2])) for r in self.query(
            "SELECT event_id, type, recovery_generation FROM task_events "
            "WHERE task_id = '%s' ORDER BY event_id" % task_id)]

    def register(self, client, task_id, timeout_ms, **kw):
        return client.RegisterTask(
            task_id=task_id, heartbeat_interval_ms=200, heartbeat_timeout_ms=timeout_ms,
            recovery_policy=H.RecoveryPolicy(max_attempts=3, initial_backoff_ms=100,
                                             max_backoff_ms=100), **kw)

    def test_each_task_is_owned_by_exactly_one_node(self):
        for i in range(6):
            self.register(self.clients[i % 3], "spread-%d" % i, 600000)
        for i in range(6):
            self.assertEqual(self.lease("spread-%d" % i), (NAMES[i % 3], 1))
        live = {r[0]: r[1] for r in self.query(
            "SELECT node_id, address FROM nodes WHERE expires_at_ms > "
            "(extract(epoch from now()) * 1000)::bigint")}
        self.assertEqual(live, {"node-a": self.nodes[0].target, "node-b": self.nodes[1].target,
                                "node-c": self.nodes[2].target})
        # Registering it again on another node: it exists (held by its owner).
        with self.assertRaises(grpc.RpcError) as cm:
            self.register(self.clients[1], "spread-0", 600000)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        # A heartbeat and a GetTask sent to a node that does not own the
        # task: served through the store; the lease stays where it was.
        r = self.clients[1].Heartbeat(task_id="spread-0", current_step=7)
        self.assertEqual(r.instruction, H.INSTRUCTION_CONTINUE)
        self.assertEqual(self.clients[2].GetTask(task_id="spread-0").current_step, 7)
        # The holder shows the progress reported through another node too.
        self.assertEqual(self.clients[0].GetTask(task_id="spread-0").current_step, 7)
        self.assertEqual(self.lease("spread-0"), ("node-a", 1))
        # A call that would change a task another node holds is forwarded
        # to the holder with the caller's credentials; one already
        # forwarded is not forwarded again: UNAVAILABLE with where to go
        # (the holder and its address, also as trailing metadata).
        self.assertEqual(self.clients[1].GetTask(task_id="spread-1").state, H.TASK_STATE_RUNNING)
        req_cls, resp_cls = hstest.method_classes(H, "HealthService", "CompleteTask")
        complete = hstest.stub(self.nodes[0].channel, "/harness.v1.HealthService/CompleteTask",
                               req_cls, resp_cls)
        with self.assertRaises(grpc.RpcError) as cm:
            complete(req_cls(task_id="spread-1", success=True), timeout=30 * S,
                     metadata=self.clients[0].md + [("harness-forwarded-by", "node-x")])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("node-b", cm.exception.details())
        self.assertIn(self.nodes[1].target, cm.exception.details())
        trailers = dict(cm.exception.trailing_metadata() or ())
        self.assertEqual(trailers.get("harness-node-address"), self.nodes[1].target)
        self.assertEqual(self.clients[1].GetTask(task_id="spread-1").state, H.TASK_STATE_RUNNING)
        done = self.clients[0].CompleteTask(task_id="spread-1", success=True)
        self.assertEqual(done.state, H.TASK_STATE_COMPLETED)
        self.assertEqual(self.clients[1].GetTask(task_id="spread-1").state, H.TASK_STATE_COMPLETED)

    def test_kill_the_owner_mid_recovery_another_node_finishes_it_once(self):
        a, owner = self.clients[0], self.nodes[0]
        tid = "kill-1"
        timeout = int(4000 * S)
        self.register(a, tid, timeout)
        ws = os.path.join(owner.data_dir, "workspaces", tid)
        os.makedirs(ws, exist_ok=True)
        with open(os.path.join(ws, "work.txt"), "w") as f:
            f.write("step 1")
        ckpt = a.checkpoint(tid, 1)
        a.Heartbeat(task_id=tid, current_step=1)
        # The agent stops: it times out, recovery starts and restores the
        # checkpoint on node-a, then waits for the agent's acknowledgement.
        poll(lambda: a.GetTask(task_id=tid).resume_checkpoint_id == ckpt.checkpoint_id,
             30, "the restore on node-a")
        r = a.Heartbeat(task_id=tid, current_step=1)
        self.assertEqual(r.instruction, H.INSTRUCTION_RESUME_FROM_CHECKPOINT)
        gen = r.recovery_generation
        self.assertEqual(gen, 1)
        # A checkpoint sent to a node that does not hold the task is fenced
        # on the stored row: the restore is not acknowledged, so it is
        # refused and records nothing.
        os.makedirs(os.path.join(self.nodes[1].data_dir, "workspaces", tid), exist_ok=True)
        with self.assertRaises(grpc.RpcError) as cm:
            self.clients[1].checkpoint(tid, 2)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION,
                         cm.exception.details())
        owner.kill()  # kill -9 mid-recovery (RECOVERING, unacknowledged)
        # The agent acknowledges through the survivors until one of them
        # holds the task (once node-a's lease expired) and takes it.
        acked = []

        def ack():
            for c in self.clients[1:]:
                try:
                    r = c.Heartbeat(task_id=tid, current_step=1, recovery_generation=gen)
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE, e.details())
                    continue
                acked.append(r)
                return True
            return False
        poll(ack, 30, "a survivor to take the task over")
        self.assertEqual(acked[0].instruction, H.INSTRUCTION_CONTINUE)
        self.assertEqual(self.clients[1].GetTask(task_id=tid).state, H.TASK_STATE_RUNNING)
        holder, fence = self.lease(tid)
        self.assertIn(holder, ("node-b", "node-c"))
        self.assertEqual(fence, 2)
        types = [t for _, t, _ in self.events(tid)]
        self.assertEqual(types.count(EV_REGISTERED), 1, types)
        self.assertEqual(types.count(EV_TIMEOUT), 1, types)
        self.assertEqual(types.count(EV_STARTED), 1, types)  # one per generation (1)
        self.assertEqual(types.count(EV_RECOVERED), 1, types)
        self.assertEqual(types.index(EV_RECOVERED), len(types) - 1, types)

    def test_a_node_that_lost_its_lease_stops_acting(self):
        b = self.nodes[1]
        tid = "pause-1"
        timeout = int(3000 * S)
        self.register(self.clients[1], tid, timeout)
        os.kill(b.proc.pid, signal.SIGSTOP)
        try:
            # The agent beats through node-c; once node-b's lease expired
            # node-c (on a heartbeat) or node-a (its lease scan) takes the
            # task over.
            poll(lambda: self.clients[2].Heartbeat(task_id=tid, current_step=1) and
                 self.lease(tid) in (("node-a", 2), ("node-c", 2)), 30,
                 "another node to take the task over")
        finally:
            os.kill(b.proc.pid, signal.SIGCONT)
        # The agent stops. node-b, resumed with the task's deadline long
        # past, must not act on it: only the new owner times it out, once.
        b.wait_for(lambda l: l.get("msg", "").startswith("task lease lost") and
                   l.get("task_id") == tid, timeout=30 * S)
        poll(lambda: EV_TIMEOUT in [t for _, t, _ in self.events(tid)], 30, "the timeout")
        time.sleep(timeout / 1000.0)  # room for a second, wrong, TIMEOUT to show
        types = [t for _, t, _ in self.events(tid)]
        self.assertEqual(types.count(EV_TIMEOUT), 1, types)
        # node-b still answers for it (through the store).
        self.assertEqual(self.clients[1].GetTask(task_id=tid).task_id, tid)

    def list_all(self, clients, **kw):
        """Every page of ListTasks, page i asked of clients[i % len]."""
        seen, token, i = [], "", 0
        while True:
            r = clients[i % len(clients)].ListTasks(page_size=2, page_token=token, **kw)
            self.assertLessEqual(len(r.tasks), 2)
            seen.extend(r.tasks)
            token, i = r.next_page_token, i + 1
            if not token:
                return seen
            self.assertLess(i, 1000, "paging does not end")

    def test_list_tasks_is_the_same_on_every_node(self):
        live = [i for i, n in enumerate(self.nodes) if n.proc.poll() is None]
        self.assertGreaterEqual(len(live), 2)
        admin_token = login(self.nodes[live[0]].channel)
        users = {"alice": ("alice-list@example.com", "alice-password-1"),
                 "bob": ("bob-list@example.com", "bob-password-1")}
        for email, password in users.values():
            make_user(self.nodes[live[0]].channel, admin_token, email, password)
        cl = {u: [Client(self.nodes[i].channel,
                         hstest.login(self.nodes[i].channel, *users[u], timeout=20 * S))
                  for i in live] for u in users}
        mine = {"alice": [], "bob": []}
        for j in range(5):  # spread over the nodes, interleaved between users
            for u in ("alice", "bob"):
                tid = "list-%s-%d" % (u, j)
                self.register(cl[u][j % len(live)], tid, 600000,
                              labels={"who": u, "odd": str(j % 2)})
                mine[u].append(tid)
        cl["alice"][0].CompleteTask(task_id="list-alice-0", success=True)
        for u in users:
            for c in cl[u]:  # every node answers the same, whole list
                got = [t.task_id for t in c.ListTasks(page_size=1000).tasks]
                self.assertEqual(sorted(got), sorted(mine[u]))
            got = self.list_all(cl[u])  # paging by 2, each page on the next node
            ids = [t.task_id for t in got]
            self.assertEqual(len(ids), len(set(ids)), "a task listed twice")
            self.assertEqual(sorted(ids), sorted(mine[u]))
            keys = [(-t.registered_at.seconds, -t.registered_at.nanos, t.task_id) for t in got]
            self.assertEqual(keys, sorted(keys), "not newest first")
        # Filters apply to every node's tasks; the state seen is the holder's.
        for c in cl["alice"]:
            done = c.ListTasks(state=H.TASK_STATE_COMPLETED).tasks
            self.assertEqual([t.task_id for t in done], ["list-alice-0"])
            odd = {t.task_id for t in c.ListTasks(label_selector={"odd": "1"}).tasks}
            self.assertEqual(odd, {"list-alice-1", "list-alice-3"})
        odd = self.list_all(cl["bob"], label_selector={"odd": "0"})
        self.assertEqual(sorted(t.task_id for t in odd),
                         ["list-bob-0", "list-bob-2", "list-bob-4"])
        # The admin sees every task in the store, once, from any node.
        stored = {r[0] for r in self.query("SELECT task_id FROM tasks")}
        admins = [self.clients[i] for i in live]
        ids = [t.task_id for t in self.list_all(admins)]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(set(ids), stored)
        self.assertTrue(set(mine["alice"]) | set(mine["bob"]) <= stored)

    def test_an_acknowledgement_sent_to_another_node_reaches_the_holder(self):
        a, b = self.clients[0], self.clients[1]
        tid = "ack-elsewhere"
        self.register(a, tid, int(2000 * S))
        ws = os.path.join(self.nodes[0].data_dir, "workspaces", tid)
        os.makedirs(ws, exist_ok=True)
        with open(os.path.join(ws, "work.txt"), "w") as f:
            f.write("step 1")
        ckpt = a.checkpoint(tid, 1)
        a.Heartbeat(task_id=tid, current_step=1)
        # The agent goes silent; node-a (the holder) restores step 1.
        poll(lambda: a.GetTask(task_id=tid).resume_checkpoint_id == ckpt.checkpoint_id,
             30, "the restore on node-a")
        # The agent, now talking to node-b, is told to resume there and
        # acknowledges there: both changes happen at the holder (forwarded).
        r = b.Heartbeat(task_id=tid, current_step=1)
        self.assertEqual(r.instruction, H.INSTRUCTION_RESUME_FROM_CHECKPOINT)
        self.assertEqual(r.resume_step, 1)
        r = b.Heartbeat(task_id=tid, current_step=1, recovery_generation=r.recovery_generation)
        self.assertEqual(r.instruction, H.INSTRUCTION_CONTINUE)
        got = a.GetTask(task_id=tid)
        self.assertEqual(got.state, H.TASK_STATE_RUNNING)
        self.assertEqual(got.acknowledged_generation, got.recovery_generation)
        self.assertEqual(self.lease(tid)[0], "node-a")
        a.CompleteTask(task_id=tid, success=True)

    def test_z_a_stopping_node_hands_its_tasks_over(self):
        # Runs last (node-a is dead by now): node-b registers a task and
        # stops (SIGTERM): it gives its leases up, and node-c takes the task
        # at its next scan without waiting for the lease to run out.
        self.register(self.clients[1], "handoff-1", 600000)
        self.assertEqual(self.lease("handoff-1"), ("node-b", 1))
        self.nodes[1].close()
        poll(lambda: self.lease("handoff-1") == ("node-c", 2), 30, "node-c to take it over")
        # its row stays, expired at the stop (survivors see since when)
        self.assertEqual(self.query("SELECT count(*) FROM nodes WHERE node_id = 'node-b' AND "
                                    "expires_at_ms > (extract(epoch from now()) * 1000)::bigint"),
                         [["0"]])
        self.assertEqual(self.clients[2].GetTask(task_id="handoff-1").state,
                         H.TASK_STATE_RUNNING)


@unittest.skipUnless(hstest.STORE_PG, "needs the pg fixture (HS_TEST_STORE_PG)")
class NodeIdClaimedTest(unittest.TestCase):
    def test_a_paused_node_whose_id_was_claimed_exits_untouched(self):
        dsn = hstest.pg_create_database(hstest.STORE_PG, "hs_nodeclaim_%d" % os.getpid())
        q = lambda sql: hstest.PgServer.query(None, sql, dsn)  # noqa: E731
        args = ["--store", dsn, "--node-id", "node-x", "--task-lease-ms", "1000"]
        old = hstest.Harnessd(args=args, env=ENV)
        new = None
        try:
            c = Client(old.channel, login(old.channel))
            c.RegisterTask(task_id="claim-1", heartbeat_interval_ms=200,
                           heartbeat_timeout_ms=600000)
            old_addr = q("SELECT address FROM nodes WHERE node_id = 'node-x'")[0][0]
            os.kill(old.proc.pid, signal.SIGSTOP)
            try:
                poll(lambda: q("SELECT count(*) FROM nodes WHERE node_id = 'node-x' AND "
                               "expires_at_ms <= (extract(epoch from now()) * 1000)::bigint")
                     == [["1"]], 30, "the paused node's row to expire")
                new = hstest.Harnessd(args=args, env=ENV)  # claims the id
            finally:
                os.kill(old.proc.pid, signal.SIGCONT)
            code = poll(lambda: old.proc.poll(), 30, "the resumed node to exit")
            self.assertEqual(code, 75, "\n".join(old.raw_lines[-20:]))
            row = q("SELECT address FROM nodes WHERE node_id = 'node-x'")
            self.assertNotEqual(row[0][0], old_addr)  # the new process's row stands
            # The task's lease is still node-x's first one, and the new
            # process serves the task.
            self.assertEqual(q("SELECT node_id, fence FROM task_leases WHERE task_id = 'claim-1'"),
                             [["node-x", "1"]])
            c2 = Client(new.channel, login(new.channel))
            self.assertEqual(c2.GetTask(task_id="claim-1").state, H.TASK_STATE_RUNNING)
        finally:
            if old.proc.poll() is None:
                os.kill(old.proc.pid, signal.SIGCONT)
            old.close(expect_exit=None)
            if new is not None:
                new.close()


if __name__ == "__main__":
    unittest.main()
