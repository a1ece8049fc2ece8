"""A dead node's sandboxes and duplicate node ids (issue 19): harnessd
nodes on one database of the pg fixture's server, --task-lease-ms 1500.

* a second harnessd given a live node's --node-id refuses to start, naming
  the node id and the holder's address;
* node-a is killed (-9, and its sandbox processes with it: the host is
  gone): once its node row has been expired for one more lease length,
  one of the survivors node-b and node-c takes each of its sandboxes over
  (exactly one: one takeover log line per sandbox) as FAILED "node node-a
  lost": Get and List tell so, they still count against
  --sandboxes-per-user, and DestroySandbox on the taker works and frees
  the quota;
* node-a restarts with the same id (its lease ran out): it starts, and
  does not resurrect the sandbox a survivor took (still FAILED, the
  survivor's);
* recovery elsewhere: node-a runs a task with a bwrap sandbox (nodes share
  a --checkpoint-remote); node-a is killed; node-b takes the task over,
  times it out, restores its checkpoint (fetched from the remote) and
  starts the sandbox again on node-b from its stored spec, on the restored
  workspace.

No timed assertions: every wait polls for a condition with a generous
limit and asserts on what the poll saw."""
import os
import signal
import subprocess
import tempfile
import time
import unittest
import uuid

import grpc

from harness.v1 import health_pb2, sandbox_pb2

import hstest
from test_nodes import Client as TaskClient
from test_sandboxes import ADMIN, Client, alive, counter_script, pids_with, read_count, wait_until

S = sandbox_pb2
ENV = {"HARNESS_JWT_SECRET": "integration-test-secret-0123456789abcdef",
       "HARNESS_METRICS_LISTEN": "127.0.0.1:0"}
LEASE_MS = "1500"


def kill_all(marker):
    for pid in pids_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # ended with its parent meanwhile


def only_libgit2_regexp_leaks(lines):
    """True when every LeakSanitizer report in lines is the one known leak
    of Debian 12's libgit2 1.5 (git_regexp_search leaves its pcre2 match
    data behind when nothing matches; fixed upstream), reached from
    git_remote_create_anonymous in checkpoint/fetch.c: each leak's first
    frame past malloc is in libpcre2. Any other leak, or any other
    sanitizer report, is ours and fails the test."""
    leaks = 0
    for i, l in enumerate(lines):
        if "Direct leak" in l or "Indirect leak" in l:
            leaks += 1
            frame = next((x for x in lines[i + 1:i + 4] if x.strip().startswith("#1 ")), "")
            if "libpcre2" not in frame:
                return False
        elif "ERROR: AddressSanitizer" in l or "runtime error" in l:
            return False
    return leaks > 0


def poll_value(fn, pred, timeout, what):
    """fn() until pred(value) holds; returns that value (errors retried)."""
    deadline = time.monotonic() + max(timeout, 30) * hstest.SLOW
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if pred(last):
                return last
        except grpc.RpcError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


@unittest.skipUnless(hstest.STORE_PG, "needs the pg fixture (HS_TEST_STORE_PG)")
class NodeTakeoverTest(unittest.TestCase):
    extra = []

    def args(self, name):
        return ["--store", self.dsn, "--node-id", name, "--sandbox-driver", "bwrap",
                "--sandboxes-per-user", "2", "--task-lease-ms", LEASE_MS] + self.extra

    def node(self, name):
        n = hstest.Harnessd(args=self.args(name), env=ENV)
        self.started.append(n)
        return n

    def refused_start(self, name):
        """Runs a harnessd as node `name` that must refuse to start; its stderr."""
        with tempfile.TemporaryDirectory(prefix="hs-it-") as d:
            argv = [hstest.HARNESSD, "--listen", "127.0.0.1:0", "--data-dir", d]
            argv += hstest.SandboxAccount.args() + self.args(name)
            env = dict(os.environ)
            env.update(ENV)
            env.update({"HARNESS_ADMIN_EMAIL": ADMIN[0], "HARNESS_ADMIN_PASSWORD": ADMIN[1]})
            try:
                p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, timeout=60 * hstest.SLOW)
            except subprocess.TimeoutExpired:
                raise AssertionError("a second %s did not refuse to start" % name)
        self.assertNotEqual(p.returncode, 0, "a second %s started" % name)
        return p.stderr.decode("utf-8", "replace")

    def test_dead_node_sandboxes_and_duplicate_ids(self):
        self.started = []
        self.dsn = hstest.pg_create_database(hstest.STORE_PG, "hs_takeover_%d" % os.getpid())
        marker = "86398.%06d" % (uuid.uuid4().int % 1000000)
        a = self.node("node-a")
        b = c = a2 = None
        try:
            admin_a = Client(a.channel, hstest.login(a.channel, *ADMIN))
            for sid in ("sb-lost-1", "sb-lost-2"):
                admin_a.CreateSandbox(sandbox_id=sid, task_id="task-lost",
                                      entrypoint=counter_script(marker))
                sb = admin_a.StartSandbox(sandbox_id=sid)
            wait_until(lambda: read_count(sb) > 1, 20, "counting on node-a")

            # a second node-a while node-a lives: refused, naming both
            err = self.refused_start("node-a")
            self.assertIn("node id node-a is in use", err)
            self.assertIn(a.target, err)

            b, c = self.node("node-b"), self.node("node-c")
            survivors = {"node-b": b, "node-c": c}
            admin_b = Client(b.channel, hstest.login(b.channel, *ADMIN))
            # while node-a lives, node-b forwards a call for its sandbox there
            self.assertEqual(admin_b.GetSandbox(sandbox_id="sb-lost-1").state, S.SANDBOX_STATE_RUNNING)

            # node-a's host is gone: harnessd and its sandboxes
            a.kill()
            kill_all(marker)

            listed = poll_value(
                lambda: admin_b.ListSandboxes(page_size=100).sandboxes,
                lambda v: len(v) == 2 and all(x.state == S.SANDBOX_STATE_FAILED for x in v),
                30, "a survivor to take node-a's sandboxes over")
            self.assertEqual(sorted(x.sandbox_id for x in listed), ["sb-lost-1", "sb-lost-2"])
            for x in listed:
                self.assertIn("node node-a lost", x.failure_reason)

            def takers():
                return {sid: [name for name, n in survivors.items() for l in list(n.lines)
                              if l.get("msg") == "taken over from a lost node"
                              and l.get("sandbox_id") == sid]
                        for sid in ("sb-lost-1", "sb-lost-2")}
            # exactly one survivor took each
            took = poll_value(takers, lambda t: all(t.values()), 30, "the takeover log lines")
            self.assertEqual([len(v) for v in took.values()], [1, 1], took)
            holder = {sid: Client(survivors[v[0]].channel,
                                  hstest.login(survivors[v[0]].channel, *ADMIN))
                      for sid, v in took.items()}
            got = holder["sb-lost-1"].GetSandbox(sandbox_id="sb-lost-1")
            self.assertEqual(got.state, S.SANDBOX_STATE_FAILED)
            self.assertIn("node node-a lost", got.failure_reason)
            # FAILED still counts against the quota until destroyed
            with self.assertRaises(grpc.RpcError) as cm:
                admin_b.CreateSandbox(sandbox_id="sb-new", task_id="task-new",
                                      entrypoint=["/bin/true"])
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertEqual(holder["sb-lost-1"].DestroySandbox(sandbox_id="sb-lost-1").state,
                             S.SANDBOX_STATE_DESTROYED)
            admin_b.CreateSandbox(sandbox_id="sb-new", task_id="task-new",
                                  entrypoint=["/bin/true"])
            admin_b.DestroySandbox(sandbox_id="sb-new")

            # node-a comes back with its id (its lease ran out): it starts
            # and leaves what node-b took alone
            a2 = self.node("node-a")
            admin_a2 = Client(a2.channel, hstest.login(a2.channel, *ADMIN))
            owner2 = took["sb-lost-2"][0]
            got = holder["sb-lost-2"].GetSandbox(sandbox_id="sb-lost-2")
            self.assertEqual(got.state, S.SANDBOX_STATE_FAILED)
            self.assertIn("node node-a lost", got.failure_reason)
            try:
                got = admin_a2.GetSandbox(sandbox_id="sb-lost-2")
                self.assertEqual(got.state, S.SANDBOX_STATE_FAILED)  # forwarded
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE)
                self.assertIn(owner2, e.details())
            self.assertEqual(holder["sb-lost-2"].DestroySandbox(sandbox_id="sb-lost-2").state,
                             S.SANDBOX_STATE_DESTROYED)
        finally:
            for n in (a2, c, b, a):
                if n is None:
                    continue
                if n is a:
                    a.kill()
                    kill_all(marker)  # before its workspace goes: they write there
                    if a._tmp is not None:
                        a._tmp.cleanup()
                else:
                    n.close()
            kill_all(marker)  # never leave one behind
        for n in self.started:
            bad = [l for l in n.raw_lines if "runtime error" in l or "Sanitizer" in l]
            self.assertEqual(bad[:20], [], "sanitizer reports")

    def test_a_stalled_node_is_fenced(self):
        """node-a stalls (SIGSTOP) past its lease while its sandbox runs;
        node-b takes the sandbox over. node-a resumes: its next state write
        (PauseSandbox) does not take the row back (the store's fence), its
        local process for the sandbox is killed and its entry dropped."""
        self.started = []
        self.dsn = hstest.pg_create_database(hstest.STORE_PG, "hs_fence_%d" % os.getpid())
        marker = "86397.%06d" % (uuid.uuid4().int % 1000000)
        sid = "sb-fenced"
        a = self.node("node-a")
        b = None
        stopped = False
        try:
            admin_a = Client(a.channel, hstest.login(a.channel, *ADMIN))
            admin_a.CreateSandbox(sandbox_id=sid, task_id="task-fenced",
                                  entrypoint=counter_script(marker))
            sb = admin_a.StartSandbox(sandbox_id=sid)
            wait_until(lambda: read_count(sb) > 1, 20, "counting on node-a")
            b = self.node("node-b")
            admin_b = Client(b.channel, hstest.login(b.channel, *ADMIN))

            a.proc.send_signal(signal.SIGSTOP)  # stalls; its sandbox runs on
            stopped = True
            listed = poll_value(
                lambda: admin_b.ListSandboxes(page_size=100).sandboxes,
                lambda v: len(v) == 1 and v[0].state == S.SANDBOX_STATE_FAILED,
                30, "node-b to take the stalled node's sandbox over")
            self.assertIn("node node-a lost", listed[0].failure_reason)
            self.assertTrue(pids_with(marker), "the sandbox still runs on node-a's host")
            a.proc.send_signal(signal.SIGCONT)
            stopped = False

            # node-a's write is fenced: never OK, never the row back to node-a
            with self.assertRaises(grpc.RpcError) as cm:
                admin_a.PauseSandbox(sandbox_id=sid)
            self.assertIn(cm.exception.code(), (grpc.StatusCode.UNAVAILABLE,
                                                grpc.StatusCode.FAILED_PRECONDITION),
                          cm.exception.details())
            got = admin_b.GetSandbox(sandbox_id=sid)  # node-b holds it: served there
            self.assertEqual(got.state, S.SANDBOX_STATE_FAILED)
            self.assertIn("node node-a lost", got.failure_reason)
            # node-a stopped its own copy (the write, or its sweep) and said so
            wait_until(lambda: not pids_with(marker), 30, "node-a to kill its copy")
            self.assertTrue(wait_until(
                lambda: any(l.get("msg") == "taken by another node: stopped and dropped here"
                            and l.get("sandbox_id") == sid for l in list(a.lines)),
                30, "node-a's fence log line"))
            self.assertEqual(admin_b.DestroySandbox(sandbox_id=sid).state,
                             S.SANDBOX_STATE_DESTROYED)
        finally:
            if stopped:
                a.proc.send_signal(signal.SIGCONT)
            try:
                if b is not None:
                    b.close()
            finally:  # node-a is stopped even when node-b's close fails
                try:
                    a.close()
                finally:
                    kill_all(marker)  # never leave one behind
        for n in self.started:
            bad = [l for l in n.raw_lines if "runtime error" in l or "Sanitizer" in l]
            self.assertEqual(bad[:20], [], "sanitizer reports")

    def test_a_sandbox_task_recovers_on_a_survivor(self):
        self.started = []
        self.dsn = hstest.pg_create_database(hstest.STORE_PG,
                                             "hs_takeover_rec_%d" % os.getpid())
        tmp = tempfile.TemporaryDirectory(prefix="hs-it-remote-")
        remote = os.path.join(tmp.name, "remote.git")
        subprocess.run(["git", "init", "--quiet", "--bare", remote], check=True)
        self.extra = ["--checkpoint-remote", "file://" + remote]
        marker = "86399.%06d" % (uuid.uuid4().int % 1000000)
        tid, sid = "task-sb", "sb-task"
        a = self.node("node-a")
        b = None
        try:
            sb_a = Client(a.channel, hstest.login(a.channel, *ADMIN))
            tasks_a = TaskClient(a.channel, hstest.login(a.channel, *ADMIN))
            sb_a.CreateSandbox(sandbox_id=sid, task_id=tid, entrypoint=counter_script(marker))
            first = sb_a.StartSandbox(sandbox_id=sid)
            tasks_a.RegisterTask(
                task_id=tid, heartbeat_interval_ms=200,
                heartbeat_timeout_ms=int(3000 * hstest.SLOW), sandbox_id=sid,
                recovery_policy=health_pb2.RecoveryPolicy(max_attempts=5, initial_backoff_ms=100,
                                                          max_backoff_ms=200))
            with open(os.path.join(first.workspace, "work.txt"), "w") as f:
                f.write("step 1")
            wait_until(lambda: read_count(first) > 1, 20, "counting on node-a")
            ckpt = tasks_a.checkpoint(tid, 1)
            b = self.node("node-b")
            tasks_b = TaskClient(b.channel, hstest.login(b.channel, *ADMIN))
            sb_b = Client(b.channel, hstest.login(b.channel, *ADMIN))
            tasks_a.Heartbeat(task_id=tid, current_step=1)

            a.kill()  # its host is gone: harnessd and its sandboxes
            kill_all(marker)

            got = poll_value(lambda: sb_b.GetSandbox(sandbox_id=sid),
                             lambda x: x.state == S.SANDBOX_STATE_RUNNING, 30,
                             "the sandbox to run again on node-b")
            self.assertTrue(got.workspace.startswith(b.data_dir), got.workspace)
            self.assertTrue(alive(got.pid))
            with open(os.path.join(got.workspace, "work.txt")) as f:
                self.assertEqual(f.read(), "step 1")  # the restored workspace
            wait_until(lambda: read_count(got) > 2, 20, "counting on node-b")
            self.assertTrue(any(l.get("msg") == "started again on this node" and
                                l.get("sandbox_id") == sid for l in list(b.lines)))
            r = poll_value(lambda: tasks_b.Heartbeat(task_id=tid, current_step=1),
                           lambda r: r.instruction == health_pb2.INSTRUCTION_RESUME_FROM_CHECKPOINT,
                           30, "node-b to offer the restored checkpoint")
            self.assertEqual(r.checkpoint_id, ckpt.checkpoint_id)
            self.assertEqual(tasks_b.GetTask(task_id=tid).sandbox_id, sid)
            self.assertEqual(sb_b.DestroySandbox(sandbox_id=sid).state,
                             S.SANDBOX_STATE_DESTROYED)
        except BaseException:
            if b is not None:  # what node-b did, for the failure report
                print("\n".join(l for l in b.raw_lines if "task" in l)[-6000:])
            raise
        finally:
            if b is not None:
                # node-b restored a checkpoint fetched from the remote: the
                # only exit status tolerated besides 0 is LeakSanitizer's
                # for libgit2 1.5's own leak (nothing of ours)
                code = b.close(expect_exit=None)
                if code != 0 and not only_libgit2_regexp_leaks(b.raw_lines):
                    raise AssertionError("node-b exited %s:\n%s" % (
                        code, "\n".join(b.raw_lines[-40:])))
            a.kill()
            kill_all(marker)  # before its workspace goes: they write there
            if a._tmp is not None:
                a._tmp.cleanup()
            tmp.cleanup()
        for n in self.started:
            if only_libgit2_regexp_leaks(n.raw_lines):
                continue  # checked above: libgit2's own leak, nothing else
            bad = [l for l in n.raw_lines if "runtime error" in l or "Sanitizer" in l]
            self.assertEqual(bad[:20], [], "sanitizer reports")


if __name__ == "__main__":
    unittest.main()
