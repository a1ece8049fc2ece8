"""Sandboxes belong to their node (issue 19, slice 5): two harnessd on one
PostgreSQL database of the pg fixture's server (--node-id node-a/node-b),
the bwrap driver for real.

* a sandbox created on node-a stays RUNNING (same process, still counting)
  when node-b starts and when node-b restarts: node-b neither marks it
  FAILED "lost after restart" nor re-adopts it;
* a unary call naming it sent to node-b works: node-b forwards it to
  node-a with the caller's own credentials (GetSandbox answers node-a's
  process; Pause/Resume through node-b change its state at node-a;
  DestroySandbox through node-b ends it on node-a; a REST call
  through a gateway in front of node-b works too); another user gets
  NOT_FOUND on either node (ownership is checked before any forward);
  ListSandboxes on node-b shows it;
* a call already marked harness-forwarded-by is not forwarded again (the
  loop guard): UNAVAILABLE naming node-a and its address, which also comes
  as trailing metadata harness-node-address (streams too);
* the streams sent to node-b are relayed to node-a: GetSandboxLogs with
  follow sees the sandbox's output as it prints; a second log stream is
  refused by node-a's --sandbox-log-streams-per-user 1 (node-a's error
  relayed) until the first is cancelled at node-b (the cancel ends
  node-a's stream); ExecSandbox runs `cat` on node-a with stdin sent to
  node-b;
* a forward to a node that is down answers UNAVAILABLE naming the address,
  before the caller's deadline;
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
from pki import PKI
from resthelp import Rest
from test_gateway import Gateway
from test_sandbox_exec import Streams
from test_sandboxes import (ADMIN, Client, alive, make_user, pids_with, read_count,
                            wait_until)

S = sandbox_pb2
ENV = {"HARNESS_JWT_SECRET": "integration-test-secret-0123456789abcdef",
       "HARNESS_METRICS_LISTEN": "127.0.0.1:0"}
WHERE_KEY = "harness-node-address"


def counter_script(marker):
    """test_sandboxes' counter, also printing each count (its log)."""
    return ["/bin/sh", "-c",
            "sleep %s & i=0; while true; do i=$((i+1)); echo $i > count.tmp; "
            "mv -f count.tmp count.txt; echo tick-$i; sleep 0.05; done" % marker]


def trailer(err, key):
    return dict(err.trailing_metadata() or ()).get(key)


@unittest.skipUnless(hstest.STORE_PG, "needs the pg fixture (HS_TEST_STORE_PG)")
class SandboxNodesTest(unittest.TestCase):
    def node(self, name, args=(), tls=None):
        n = hstest.Harnessd(args=["--store", self.dsn, "--node-id", name,
                                  "--sandbox-driver", "bwrap", "--sandboxes-per-user", "1"]
                            + list(args), env=ENV, tls=tls)
        self.started.append(n)
        return n

    def test_sandbox_stays_with_its_node(self):
        self.started = []
        self.dsn = hstest.pg_create_database(hstest.STORE_PG, "hs_sbnodes_%d" % os.getpid())
        marker = "86397.%06d" % (uuid.uuid4().int % 1000000)
        a = self.node("node-a", ["--sandbox-log-streams-per-user", "1"])
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
                # forwarded to node-a: its process, as node-a sees it
                got = admin_b.GetSandbox(sandbox_id="sb-on-a")
                self.assertEqual(got.state, S.SANDBOX_STATE_RUNNING, got.failure_reason)
                self.assertEqual(got.pid, sb.pid)
                # the loop guard: a call marked as forwarded is not forwarded again
                get = hstest.stub(b.channel, "/harness.v1.SandboxService/GetSandbox",
                                  S.GetSandboxRequest, S.Sandbox)
                with self.assertRaises(grpc.RpcError) as cm:
                    get(S.GetSandboxRequest(sandbox_id="sb-on-a"), timeout=30,
                        metadata=admin_b.md + [("harness-forwarded-by", "node-x")])
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
                self.assertIn("node-a", cm.exception.details())
                self.assertIn(a.target, cm.exception.details())
                self.assertEqual(trailer(cm.exception, WHERE_KEY), a.target)
                self.assertEqual(trailer(cm.exception, "hs-error-code"), "SANDBOX_ELSEWHERE")
                # streams too: where to go comes with the status
                logs = b.channel.unary_stream("/harness.v1.SandboxService/GetSandboxLogs",
                                              request_serializer=S.GetSandboxLogsRequest.SerializeToString,
                                              response_deserializer=S.GetSandboxLogsResponse.FromString)
                with self.assertRaises(grpc.RpcError) as cm:
                    list(logs(S.GetSandboxLogsRequest(sandbox_id="sb-on-a"), timeout=30,
                              metadata=admin_b.md + [("harness-forwarded-by", "node-x")]))
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
                self.assertEqual(trailer(cm.exception, WHERE_KEY), a.target)
                # ownership first: bob's call is NOT_FOUND at node-b, never forwarded
                with self.assertRaises(grpc.RpcError) as cm:
                    bob_b.GetSandbox(sandbox_id="sb-on-a")
                self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
                self.assertIsNone(trailer(cm.exception, WHERE_KEY))
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
                if round_ == 0:
                    b.close()
                    b = None

            # the streams sent to node-b are relayed to node-a
            streams_b = Streams(b.channel, admin_b)
            follow = streams_b.logs(timeout=60, sandbox_id="sb-on-a", follow=True)
            seen = b""
            for r in follow:
                seen += r.data
                if b"tick-" in seen:
                    break
            self.assertIn(b"tick-", seen)
            # node-a allows one log stream per user: its refusal comes back
            code, details = streams_b.logs_error(sandbox_id="sb-on-a")
            self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
            follow.cancel()  # ends node-a's stream: another one is taken again

            def another_stream():
                try:
                    return streams_b.read_logs(sandbox_id="sb-on-a", tail_lines=1)
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    return None
            got = wait_until(another_stream, 20, "node-a's log stream to end")
            self.assertIn(b"tick-", got)
            out, err, exit_ = streams_b.run("sb-on-a", ["/bin/cat"], stdin=b"hello via node-b\n")
            self.assertEqual((out, err), (b"hello via node-b\n", b""))
            self.assertEqual(exit_.exit_code, 0)

            # REST through a gateway in front of node-b
            gw = Gateway(b.target, args=["--gateway-secret-file",
                                         os.path.join(b.data_dir, "gateway.key")])
            try:
                rest_b = Rest(gw.port, admin_b.md[0][1][len("Bearer "):])
                got = rest_b.get("/v1/sandboxes/sb-on-a")
                self.assertEqual(got["sandboxId"], "sb-on-a")
                self.assertEqual(got["state"], "SANDBOX_STATE_RUNNING")
            finally:
                gw.stop()
            # paused and resumed through node-b: the state changes at node-a
            self.assertEqual(admin_b.PauseSandbox(sandbox_id="sb-on-a").state,
                             S.SANDBOX_STATE_PAUSED)
            self.assertEqual(admin_a.GetSandbox(sandbox_id="sb-on-a").state,
                             S.SANDBOX_STATE_PAUSED)
            self.assertEqual(admin_b.ResumeSandbox(sandbox_id="sb-on-a").state,
                             S.SANDBOX_STATE_RUNNING)
            self.assertEqual(admin_a.GetSandbox(sandbox_id="sb-on-a").state,
                             S.SANDBOX_STATE_RUNNING)

            bob_a = Client(a.channel, hstest.login(a.channel, "bob@example.com",
                                                   "password-bob@example.com"))
            with self.assertRaises(grpc.RpcError) as cm:
                bob_a.GetSandbox(sandbox_id="sb-on-a")
            self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
            # destroyed through node-b: the process on node-a ends
            self.assertEqual(admin_b.DestroySandbox(sandbox_id="sb-on-a").state,
                             S.SANDBOX_STATE_DESTROYED)
            self.assertEqual(admin_a.GetSandbox(sandbox_id="sb-on-a").state,
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

    def test_forward_to_a_node_that_is_down(self):
        """node-a is killed: a call through node-b for its sandbox answers
        UNAVAILABLE naming node-a's address, well before its deadline (the
        connection is refused: the forward does not wait for the deadline)."""
        self.started = []
        self.dsn = hstest.pg_create_database(hstest.STORE_PG, "hs_sbdown_%d" % os.getpid())
        a = self.node("node-a")
        b = None
        try:
            admin_a = Client(a.channel, hstest.login(a.channel, *ADMIN))
            admin_a.CreateSandbox(sandbox_id="sb-idle", task_id="task-idle",
                                  entrypoint=["/bin/true"])  # CREATED: no process to leave behind
            b = self.node("node-b")
            admin_b = Client(b.channel, hstest.login(b.channel, *ADMIN))
            self.assertEqual(admin_b.GetSandbox(sandbox_id="sb-idle").state,
                             S.SANDBOX_STATE_CREATED)
            a.kill()
            with self.assertRaises(grpc.RpcError) as cm:
                admin_b.GetSandbox(sandbox_id="sb-idle", timeout=60)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE,
                             cm.exception.details())
            self.assertIn("forward to " + a.target, cm.exception.details())
            # in words only: the call may have reached node-a before it
            # failed, so no address invites a client to send it again
            self.assertIsNone(trailer(cm.exception, WHERE_KEY))
        finally:
            for n in (b, a):
                if n is not None:
                    n.close(expect_exit=None)
        for n in self.started:
            bad = [l for l in n.raw_lines if "runtime error" in l or "Sanitizer" in l]
            self.assertEqual(bad[:20], [], "sanitizer reports")

    def test_forward_over_tls(self):
        """Nodes serving TLS forward over TLS and verify the other node's
        certificate: against --tls-peer-ca the call works; with only the
        system roots (which do not hold the test CA) it is refused."""
        self.started = []
        self.dsn = hstest.pg_create_database(hstest.STORE_PG, "hs_sbtls_%d" % os.getpid())
        pki = PKI()
        nodes = []
        try:
            pki.ca("ca")
            cert, key = pki.cert("ca", "server", "harnessd")
            tls = {"ca": pki.read(pki.path("ca.crt"))}
            base = ["--tls-cert", cert, "--tls-key", key]
            a = self.node("node-a", base + ["--tls-peer-ca", pki.path("ca.crt")], tls)
            nodes.append(a)
            Client(a.channel, hstest.login(a.channel, *ADMIN)).CreateSandbox(
                sandbox_id="sb-tls", task_id="task-tls", entrypoint=["/bin/true"])
            b = self.node("node-b", base, tls)  # no --tls-peer-ca: a's CA is not trusted
            nodes.append(b)
            admin_b = Client(b.channel, hstest.login(b.channel, *ADMIN))
            with self.assertRaises(grpc.RpcError) as cm:
                admin_b.GetSandbox(sandbox_id="sb-tls")
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("forward to " + a.target, cm.exception.details())
            b.close()
            nodes.remove(b)
            b = self.node("node-b", base + ["--tls-peer-ca", pki.path("ca.crt")], tls)
            nodes.append(b)
            admin_b = Client(b.channel, hstest.login(b.channel, *ADMIN))
            self.assertEqual(admin_b.GetSandbox(sandbox_id="sb-tls").state,
                             S.SANDBOX_STATE_CREATED)
        finally:
            for n in reversed(nodes):
                n.close()
            pki.close()
        for n in self.started:
            bad = [l for l in n.raw_lines if "runtime error" in l or "Sanitizer" in l]
            self.assertEqual(bad[:20], [], "sanitizer reports")


if __name__ == "__main__":
    unittest.main()
