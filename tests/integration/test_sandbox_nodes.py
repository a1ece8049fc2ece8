"""Sandboxes belong to their node (issue 19, slice 5): two harnessd on one
PostgreSQL database of the pg fixture's server (--node-id node-a/node-b),
the bwrap driver for real.

* a sandbox created on node-a stays RUNNING (same process, still counting)
  when node-b starts and when node-b restarts: node-b neither marks it
  FAILED "lost after restart" nor re-adopts it;
* node-b answers a call naming it UNAVAILABLE, naming node-a and the
  address node-a advertises; another user gets NOT_FOUND on either node
  (ownership is checked first); ListSandboxes on node-b shows it;
* --sandboxes-per-user counts every node's sandboxes.

No timed assertions: every wait polls for a condition with a generous
limit."""
import os
import signal
import unittest
import uuid

import grpc

from harness.v1 import sandbox_pb2

import hstest
from test_sandboxes import (ADMIN, Client, alive, counter_script, make_user, pids_with,
                            read_count, wait_until)

S = sandbox_pb2
ENV = {"HARNESS_JWT_SECRET": "integration-test-secret-0123456789abcdef",
       "HARNESS_METRICS_LISTEN": "127.0.0.1:0"}


@unittest.skipUnless(hstest.STORE_PG, "needs the pg fixture (HS_TEST_STORE_PG)")
class SandboxNodesTest(unittest.TestCase):
    def node(self, name):
        n = hstest.Harnessd(args=["--store", self.dsn, "--node-id", name,
                                  "--sandbox-driver", "bwrap", "--sandboxes-per-user", "1"],
                            env=ENV)
        self.started.append(n)
        return n

    def test_sandbox_stays_with_its_node(self):
        self.started = []
        self.dsn = hstest.pg_create_database(hstest.STORE_PG, "hs_sbnodes_%d" % os.getpid())
        marker = "86397.%06d" % (uuid.uuid4().int % 1000000)
        a = self.node("node-a")
        b = None
        try:
            token_a = hstest.login(a.channel, *ADMIN)
            admin_a = Client(a.channel, token_a)
            make_user(a.channel, token_a, "bob@example.com")
            admin_a.CreateSandbox(sandbox_id="sb-on-a", task_id="task-sb-a",
                                  entrypoint=counter_script(marker))
            sb = admin_a.StartSandbox(sandbox_id="sb-on-a")
            wait_until(lambda: read_count(sb) > 2, 20, "counting on node-a")

            for round_ in range(2):  # node-b starts, then restarts
                b = self.node("node-b")
                admin_b = Client(b.channel, hstest.login(b.channel, *ADMIN))
                bob_b = Client(b.channel, hstest.login(b.channel, "bob@example.com",
                                                       "password-bob@example.com"))
                with self.assertRaises(grpc.RpcError) as cm:
                    admin_b.GetSandbox(sandbox_id="sb-on-a")
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
                self.assertIn("node-a", cm.exception.details())
                self.assertIn(a.target, cm.exception.details())
                with self.assertRaises(grpc.RpcError) as cm:
                    admin_b.DestroySandbox(sandbox_id="sb-on-a")
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
                with self.assertRaises(grpc.RpcError) as cm:
                    bob_b.GetSandbox(sandbox_id="sb-on-a")
                self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
                # --sandboxes-per-user counts every node's sandboxes
                with self.assertRaises(grpc.RpcError) as cm:
                    admin_b.CreateSandbox(sandbox_id="sb-on-b-%d" % round_, task_id="task-sb-b",
                                          entrypoint=["/bin/true"])
                self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                listed = admin_b.ListSandboxes(page_size=100).sandboxes
                self.assertEqual([x.sandbox_id for x in listed], ["sb-on-a"])
                self.assertEqual(listed[0].state, S.SANDBOX_STATE_RUNNING)
                # node-a still runs it: same process, still counting
                got = admin_a.GetSandbox(sandbox_id="sb-on-a")
                self.assertEqual(got.state, S.SANDBOX_STATE_RUNNING, got.failure_reason)
                self.assertEqual(got.pid, sb.pid)
                self.assertTrue(alive(sb.pid))
                before = read_count(sb)
                wait_until(lambda: read_count(sb) > before + 2, 20,
                           "counting on node-a after node-b start %d" % round_)
                b.close()
                b = None

            bob_a = Client(a.channel, hstest.login(a.channel, "bob@example.com",
                                                   "password-bob@example.com"))
            with self.assertRaises(grpc.RpcError) as cm:
                bob_a.GetSandbox(sandbox_id="sb-on-a")
            self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
            self.assertEqual(admin_a.DestroySandbox(sandbox_id="sb-on-a").state,
                             S.SANDBOX_STATE_DESTROYED)
            wait_until(lambda: not alive(sb.pid), 20, "the sandbox to end")
        finally:
            for n in (b, a):
                if n is not None:
                    n.close()
            for pid in pids_with(marker):  # only on failure: never leave one behind
                os.kill(pid, signal.SIGKILL)
        for n in self.started:
            bad = [l for l in n.raw_lines if "runtime error" in l or "Sanitizer" in l]
            self.assertEqual(bad[:20], [], "sanitizer reports")


if __name__ == "__main__":
    unittest.main()
