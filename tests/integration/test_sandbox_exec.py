"""GetSandboxLogs and ExecSandbox through grpcio against a real harnessd
(bwrap driver, the sandbox account as scripts/run.sh makes it), and
harnessctl's `sandbox logs` and `sandbox exec` end to end.

Logs: tails, follow (a sandbox that prints over time: the follower sees each
new line, and the stream ends when the sandbox stops), limits and refusals.
Exec: exit codes and signals, stdin to a `cat`, stdout and stderr apart,
half-close as the end of stdin, a cancelled call (and a deadline) killing
the command's process group, refusals (paused, another user's, the env rule,
bad commands, the per-sandbox limit), the exec'd process having exactly the
entrypoint's identity and restrictions (/proc/self/status, mount view,
cgroup, namespaces) and no way into the data dir, large stdin and output
with a slow reader. Every test leaves no process behind."""
import hashlib
import os
import signal
import subprocess
import threading
import time
import unittest
import uuid

import grpc

from harness.v1 import sandbox_pb2
import hstest
from test_sandboxes import SandboxServer, alive, pids_with, wait_until

S = sandbox_pb2
LOGS = "/harness.v1.SandboxService/GetSandboxLogs"
EXEC = "/harness.v1.SandboxService/ExecSandbox"


def slurp(path):
    with open(path, errors="replace") as f:
        return f.read()


class Streams:
    """One user's GetSandboxLogs / ExecSandbox."""

    def __init__(self, channel, client):
        self.md = client.md
        self.logs_fn = hstest.stub(channel, LOGS, S.GetSandboxLogsRequest, S.GetSandboxLogsResponse,
                                   "unary_stream")
        self.exec_fn = hstest.stub(channel, EXEC, S.ExecSandboxRequest, S.ExecSandboxResponse,
                                   "stream_stream")

    def logs(self, timeout=30, **req):
        return self.logs_fn(S.GetSandboxLogsRequest(**req), metadata=self.md,
                            timeout=timeout * hstest.SLOW)

    def read_logs(self, **req):
        return b"".join(r.data for r in self.logs(**req))

    def exec_call(self, requests, timeout=60):
        return self.exec_fn(iter(requests) if isinstance(requests, list) else requests,
                            metadata=self.md, timeout=timeout * hstest.SLOW)

    def run(self, sandbox_id, command, stdin=b"", env=None, working_dir="", half_close=False,
            timeout=60):
        """Runs a command to its end: (stdout, stderr, ExecExit)."""
        first = S.ExecSandboxRequest(start=S.ExecStart(sandbox_id=sandbox_id, command=command,
                                                       env=env or {}, working_dir=working_dir))
        reqs = [first]
        for i in range(0, len(stdin), 65536):
            reqs.append(S.ExecSandboxRequest(stdin=stdin[i:i + 65536]))
        if not half_close:  # else the end of the request stream closes stdin
            reqs.append(S.ExecSandboxRequest(close_stdin=True))
        out, err, exit_ = b"", b"", None
        for r in self.exec_call(reqs, timeout=timeout):
            self.assert_one(r)
            out += r.stdout
            err += r.stderr
            if r.HasField("exit"):
                exit_ = r.exit
        return out, err, exit_

    @staticmethod
    def assert_one(r):
        assert sum([bool(r.stdout), bool(r.stderr), r.HasField("exit")]) == 1, r

    def error(self, requests, timeout=30):
        try:
            for _ in self.exec_call(requests, timeout=timeout):
                pass
        except grpc.RpcError as e:
            return e.code(), e.details()
        raise AssertionError("ExecSandbox succeeded")

    def logs_error(self, **req):
        try:
            self.read_logs(**req)
        except grpc.RpcError as e:
            return e.code(), e.details()
        raise AssertionError("GetSandboxLogs succeeded")


def start(sandbox_id, command=("true",), **kw):
    return S.ExecSandboxRequest(start=S.ExecStart(sandbox_id=sandbox_id, command=list(command), **kw))


class StreamsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = SandboxServer(["--sandbox-driver", "bwrap", "--sandbox-exec-per-sandbox", "2",
                                 "--sandbox-log-streams-per-user", "3"])
        cls.hd = cls.srv.hd
        cls.data = os.path.realpath(cls.hd.data_dir)
        cls.alice_c = cls.srv.user("alice@example.com")
        cls.bob_c = cls.srv.user("bob@example.com")
        cls.alice = Streams(cls.hd.channel, cls.alice_c)
        cls.bob = Streams(cls.hd.channel, cls.bob_c)
        cls.markers = []

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def tearDown(self):
        self.srv.destroy_all()
        for m in self.markers:  # only on failure: never leave one behind
            for pid in pids_with(m):
                os.kill(pid, signal.SIGKILL)

    def marker(self):
        m = "86393%d.%06d" % (os.getpid() % 10, uuid.uuid4().int % 1000000)
        self.markers.append(m)
        return m

    def sandbox(self, sid, script, task=None):
        self.alice_c.CreateSandbox(sandbox_id=sid, task_id=task or "task-" + sid,
                                   entrypoint=["/bin/sh", "-c", script])
        return self.alice_c.StartSandbox(sandbox_id=sid)

    # ---- logs -----------------------------------------------------------------

    def test_logs_tail_and_follow(self):
        sb = self.sandbox("logs-1", "echo line1; echo line2; echo line3; "
                          "while [ ! -e go ]; do sleep 0.02; done; echo line4; "
                          "while [ ! -e go2 ]; do sleep 0.02; done; echo line5; exit 0")
        ws = sb.workspace
        wait_until(lambda: b"line3\n" in self.alice.read_logs(sandbox_id="logs-1"), 10, "line3")
        self.assertEqual(self.alice.read_logs(sandbox_id="logs-1"), b"line1\nline2\nline3\n")
        self.assertEqual(self.alice.read_logs(sandbox_id="logs-1", tail_lines=2), b"line2\nline3\n")
        self.assertEqual(self.alice.read_logs(sandbox_id="logs-1", tail_bytes=6), b"line3\n")
        self.assertEqual(self.alice.read_logs(sandbox_id="logs-1", limit_bytes=8), b"line1\nli")
        chunks = list(self.alice.logs(sandbox_id="logs-1", tail_lines=1))
        self.assertEqual([(c.data, c.offset) for c in chunks], [(b"line3\n", 12)])

        # Follow: each new line arrives while the stream is open; it ends
        # (OK) when the sandbox stops, after the last line.
        call = self.alice.logs(sandbox_id="logs-1", tail_lines=1, follow=True)
        got = b""
        while b"line3\n" not in got:
            got += next(call).data
        open(os.path.join(ws, "go"), "w").close()
        while b"line4\n" not in got:
            got += next(call).data
        self.assertEqual(self.alice_c.GetSandbox(sandbox_id="logs-1").state,
                         S.SANDBOX_STATE_RUNNING)
        open(os.path.join(ws, "go2"), "w").close()
        got += b"".join(c.data for c in call)  # to the end of the stream
        self.assertEqual(got, b"line3\nline4\nline5\n")
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assertEqual(self.alice_c.GetSandbox(sandbox_id="logs-1").state,
                         S.SANDBOX_STATE_STOPPED)
        # A stopped sandbox is read to its end even with follow.
        self.assertEqual(self.alice.read_logs(sandbox_id="logs-1", tail_lines=2, follow=True),
                         b"line4\nline5\n")

    def test_logs_refusals_and_limits(self):
        self.sandbox("logs-2", "echo hi; exec sleep 1000")
        wait_until(lambda: self.alice.read_logs(sandbox_id="logs-2") == b"hi\n", 10, "hi")
        for req, field in (({"tail_lines": -1}, "tail_lines"), ({"tail_lines": 100001}, "tail_lines"),
                           ({"tail_bytes": -1}, "tail_bytes"), ({"limit_bytes": -3}, "limit_bytes")):
            code, msg = self.alice.logs_error(sandbox_id="logs-2", **req)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, req)
            self.assertIn(field, msg)
        code, msg = self.bob.logs_error(sandbox_id="logs-2")
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        self.assertNotIn("alice", msg)
        self.assertEqual(self.alice.logs_error(sandbox_id="no-such")[0], grpc.StatusCode.NOT_FOUND)
        self.assertEqual(self.alice.logs_error(sandbox_id="bad id!")[0],
                         grpc.StatusCode.INVALID_ARGUMENT)
        # Three followers per user here: a fourth is refused, bob is not.
        calls = [self.alice.logs(sandbox_id="logs-2", follow=True) for _ in range(3)]
        for c in calls:
            self.assertEqual(next(c).data, b"hi\n")
        code, msg = self.alice.logs_error(sandbox_id="logs-2", follow=True)
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("log streams", msg)
        for c in calls:
            c.cancel()

        def counted_out():
            # The server counts a cancelled stream out when its call ends,
            # after the client's cancel: until then a read is still refused.
            try:
                return self.alice.read_logs(sandbox_id="logs-2") == b"hi\n"
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                return False
        wait_until(counted_out, 10, "the followers to be counted out")
        # Destroyed: its log is gone.
        self.alice_c.DestroySandbox(sandbox_id="logs-2")
        self.assertEqual(self.alice.logs_error(sandbox_id="logs-2")[0],
                         grpc.StatusCode.FAILED_PRECONDITION)

    # ---- exec ----------------------------------------------------------------------

    def test_exec_exit_codes_stdin_and_output(self):
        sb = self.sandbox("ex-1", "mkdir -p sub/dir; exec sleep 1000")
        wait_until(lambda: os.path.isdir(os.path.join(sb.workspace, "sub/dir")), 10, "sub/dir")
        out, err, x = self.alice.run("ex-1", ["sh", "-c", "exit 7"])
        self.assertEqual((out, err, x.exit_code, x.signal), (b"", b"", 7, 0))
        out, err, x = self.alice.run("ex-1", ["cat"], stdin=b"hello\nworld\n")
        self.assertEqual((out, x.exit_code), (b"hello\nworld\n", 0))
        # The client's half-close is the end of stdin; the call stays open
        # for the output and the exit status.
        out, err, x = self.alice.run("ex-1", ["sh", "-c", "cat; echo after-eof"], stdin=b"in\n",
                                     half_close=True)
        self.assertEqual((out, x.exit_code), (b"in\nafter-eof\n", 0))
        out, err, x = self.alice.run("ex-1", ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
        self.assertEqual((out, err, x.exit_code), (b"to-out\n", b"to-err\n", 3))
        out, err, x = self.alice.run("ex-1", ["sh", "-c", "kill -KILL $$"])
        self.assertEqual((x.signal, x.exit_code), (9, 137))
        out, err, x = self.alice.run("ex-1", ["sh", "-c", 'echo "$GREETING"; pwd'],
                                     env={"GREETING": "hi there"}, working_dir="sub/dir")
        sb = self.alice_c.GetSandbox(sandbox_id="ex-1")
        self.assertEqual(out.decode(), "hi there\n%s/sub/dir\n" % sb.workspace)
        # stdin and start in one message
        reqs = [S.ExecSandboxRequest(start=S.ExecStart(sandbox_id="ex-1", command=["cat"]),
                                     stdin=b"one message", close_stdin=True)]
        self.assertEqual(b"".join(r.stdout for r in self.alice.exec_call(reqs)), b"one message")

    def test_exec_cancel_and_deadline_kill_the_process_group(self):
        self.sandbox("ex-k", "exec sleep 1000")
        deadline = 3.0  # seconds (times SLOW), doubled when it beat the command's start
        for how in ("cancel", "deadline", "deadline", "deadline", "deadline"):
            m = self.marker()
            stop = threading.Event()

            def reqs():
                yield start("ex-k", ["sh", "-c", "sleep %s & sleep %s & echo started; wait" % (m, m)])
                stop.wait()  # keep our side open: stdin never closes
            call = self.alice.exec_call(reqs(), timeout=deadline if how == "deadline" else 60)
            try:
                try:
                    first = next(call)
                except grpc.RpcError as e:
                    # A loaded machine: the deadline ended the call before
                    # the command said "started". Again, with more time.
                    if how != "deadline" or e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                        raise
                    wait_until(lambda: not pids_with(m), 10, "the process group to be killed")
                    deadline *= 2
                    continue
                self.assertEqual(first.stdout, b"started\n")
                # sh and both sleeps were forked before the echo (all carry
                # the marker); the deadline may have ended them already.
                if how == "cancel":
                    wait_until(lambda: len(pids_with(m)) == 3, 10, "sh and two sleeps")
                    call.cancel()
                with self.assertRaises(grpc.RpcError) as cm:
                    for _ in call:
                        pass
                self.assertEqual(cm.exception.code(), grpc.StatusCode.CANCELLED if how == "cancel"
                                 else grpc.StatusCode.DEADLINE_EXCEEDED)
                wait_until(lambda: not pids_with(m), 10, "the process group to be killed")
            finally:
                stop.set()
            if how == "deadline":
                break
        else:
            self.fail("the command never started within its deadline (up to %gs)" % (deadline / 2))
        # The sandbox itself runs on.
        self.assertEqual(self.alice_c.GetSandbox(sandbox_id="ex-k").state, S.SANDBOX_STATE_RUNNING)

    def test_exec_refusals(self):
        self.sandbox("ex-r", "exec sleep 1000")
        cases = [
            ([start("ex-r", env={"LD_PRELOAD": "/tmp/x.so"})], grpc.StatusCode.INVALID_ARGUMENT,
             "LD_PRELOAD"),
            ([start("ex-r", env={"HARNESS_TASK_ID": "t"})], grpc.StatusCode.INVALID_ARGUMENT,
             "HARNESS_TASK_ID"),
            ([start("ex-r", env={"BASH_ENV": "/x"})], grpc.StatusCode.INVALID_ARGUMENT, "BASH_ENV"),
            ([start("ex-r", env={"A-B": "x"})], grpc.StatusCode.INVALID_ARGUMENT, "env"),
            ([start("ex-r", command=[])], grpc.StatusCode.INVALID_ARGUMENT, "command"),
            ([start("ex-r", command=["/no/such/tool"])], grpc.StatusCode.INVALID_ARGUMENT,
             "No such file"),
            ([start("ex-r", tty=True)], grpc.StatusCode.INVALID_ARGUMENT, "tty"),
            ([start("ex-r", working_dir="../other")], grpc.StatusCode.INVALID_ARGUMENT,
             "working_dir"),
            ([start("ex-r", working_dir="nope")], grpc.StatusCode.NOT_FOUND, "working_dir"),
            ([S.ExecSandboxRequest(stdin=b"x")], grpc.StatusCode.INVALID_ARGUMENT, "start"),
            ([], grpc.StatusCode.INVALID_ARGUMENT, "start"),
            ([start("ex-r", ["cat"]), start("ex-r")], grpc.StatusCode.INVALID_ARGUMENT, "start"),
            ([start("ex-r", ["cat"]), S.ExecSandboxRequest(stdin=b"x" * 65537)],
             grpc.StatusCode.INVALID_ARGUMENT, "stdin"),
            ([start("ex-r", ["sh", "-c", "cat; exec sleep 1000"]),
              S.ExecSandboxRequest(close_stdin=True), S.ExecSandboxRequest(stdin=b"late")],
             grpc.StatusCode.INVALID_ARGUMENT, "stdin"),
            ([start("no-such")], grpc.StatusCode.NOT_FOUND, "not found"),
        ]
        for reqs, code, word in cases:
            got, msg = self.alice.error(reqs)
            self.assertEqual(got, code, (reqs, msg))
            self.assertIn(word, msg)
        # Another user's sandbox: exactly like a missing one.
        got, msg = self.bob.error([start("ex-r")])
        self.assertEqual(got, grpc.StatusCode.NOT_FOUND)
        self.assertNotIn("alice", msg)
        # Paused: refused, naming the state; resumed: accepted.
        self.alice_c.PauseSandbox(sandbox_id="ex-r")
        got, msg = self.alice.error([start("ex-r")])
        self.assertEqual(got, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("PAUSED", msg)
        self.alice_c.ResumeSandbox(sandbox_id="ex-r")
        self.assertEqual(self.alice.run("ex-r", ["true"])[2].exit_code, 0)
        # Two commands at a time in one sandbox here: a third is refused.
        stop = threading.Event()

        def held():
            yield start("ex-r", ["sh", "-c", "echo up; cat"])
            stop.wait()
        calls = [self.alice.exec_call(held()) for _ in range(2)]
        try:
            for c in calls:
                self.assertEqual(next(c).stdout, b"up\n")
            got, msg = self.alice.error([start("ex-r")])
            self.assertEqual(got, grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("the limit is 2", msg)
        finally:
            stop.set()
            for c in calls:
                c.cancel()

    def test_exec_has_the_entrypoints_identity_and_no_more(self):
        probe = ("grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|"
                 "Seccomp|Seccomp_filters):' /proc/self/status; echo ==; cat /proc/self/mountinfo; "
                 "echo ==; cat /proc/self/cgroup; echo ==; "
                 "for n in mnt pid net ipc uts user cgroup; do readlink /proc/self/ns/$n; done")
        sb = self.sandbox("ex-id", "(%s) > ep.txt; exec sleep 1000" % probe)
        ep = os.path.join(sb.workspace, "ep.txt")
        wait_until(lambda: os.path.exists(ep) and slurp(ep).count("==") == 3
                   and slurp(ep).endswith("\n") and len(slurp(ep).split("==")[3].split()) == 7,
                   10, "the entrypoint's view")
        out, err, x = self.alice.run("ex-id", ["sh", "-c", probe])
        self.assertEqual(x.exit_code, 0, err)
        mine, theirs = out.decode().split("=="), slurp(ep).split("==")
        self.assertEqual(mine, theirs)  # status, mount view, cgroup, namespaces: all the same
        status = dict(l.split(":", 1) for l in mine[0].strip().splitlines())
        uid = int(status["Uid"].split()[0])
        self.assertNotEqual(uid, 0)
        self.assertNotEqual(uid, os.geteuid())
        acct = hstest.SandboxAccount.get()
        if acct:
            self.assertEqual(uid, acct[1])
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            self.assertEqual(int(status[cap].strip(), 16), 0, cap)
        self.assertEqual(status["NoNewPrivs"].strip(), "1")
        self.assertEqual(status["Seccomp"].strip(), "2")
        # Nothing of the data dir: not jwt.key, not the database, not the
        # sandboxes' runtime dirs (where the exec socket is).
        key = slurp(os.path.join(self.data, "jwt.key")).strip()
        for target in ("jwt.key", "harness.db", "sandboxes"):
            out, err, x = self.alice.run("ex-id", ["sh", "-c", "cat %s/%s || ls %s/%s" % (
                self.data, target, self.data, target)])
            self.assertNotEqual(x.exit_code, 0, target)
            self.assertNotIn(key.encode(), out)
        # The sandbox's init (our parent, holding the exec socket) is not
        # open to the workload: no /proc access to its descriptors or memory.
        out, err, x = self.alice.run("ex-id", ["sh", "-c",
                                               "ls /proc/self/fd >/dev/null && "
                                               "! ls /proc/$PPID/fd && ! cat /proc/$PPID/environ "
                                               "&& ! head -c1 /proc/$PPID/mem && echo sealed"])
        self.assertEqual(out, b"sealed\n", err)
        out, err, x = self.alice.run("ex-id", ["sh", "-c", "kill -0 %d" % self.hd.proc.pid])
        self.assertNotEqual(x.exit_code, 0)
        self.assertTrue(alive(self.hd.proc.pid))
        # The exec'd process sees no harnessd environment either.
        out, err, x = self.alice.run("ex-id", ["env"])
        self.assertNotIn(b"HARNESS_ADMIN", out)
        self.assertIn(b"HARNESS_SANDBOX_ID=ex-id\n", out)

    def test_exec_large_stdin_and_output_with_a_slow_reader(self):
        self.sandbox("ex-big", "exec sleep 1000")
        # 3 MiB of stdin to a command that reads nothing at first: far more
        # than the server queues (256 KiB), so it must stop reading the call
        # (flow control) instead of failing or buffering it all.
        data = os.urandom(3 << 20)
        out, err, x = self.alice.run("ex-big", ["sh", "-c", "sleep 0.5; sha256sum"], stdin=data)
        self.assertEqual(x.exit_code, 0, err)
        self.assertEqual(out.split()[0].decode(), hashlib.sha256(data).hexdigest())
        # 4 MiB out while we read slowly at first: the command waits, nothing is lost.
        call = self.alice.exec_call([start("ex-big", ["sh", "-c",
                                                      "head -c 4194304 /dev/zero | tr '\\0' b"]),
                                     S.ExecSandboxRequest(close_stdin=True)])
        total, exit_ = 0, None
        for i, r in enumerate(call):
            if i < 5:
                time.sleep(0.2)
            Streams.assert_one(r)
            self.assertLessEqual(len(r.stdout), 32768)
            total += len(r.stdout)
            if r.HasField("exit"):
                exit_ = r.exit
        self.assertEqual(total, 4 << 20)
        self.assertEqual(exit_.exit_code, 0)

    def test_exec_ends_when_the_sandbox_stops(self):
        self.sandbox("ex-stop", "exec sleep 1000")
        m = self.marker()
        stop = threading.Event()

        def reqs():
            yield start("ex-stop", ["sh", "-c", "echo up; exec sleep %s" % m])
            stop.wait()
        call = self.alice.exec_call(reqs())
        try:
            self.assertEqual(next(call).stdout, b"up\n")
            self.alice_c.DestroySandbox(sandbox_id="ex-stop")
            with self.assertRaises(grpc.RpcError) as cm:
                for _ in call:
                    pass
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("stopped", cm.exception.details())
            wait_until(lambda: not pids_with(m), 10, "the command to be gone")
        finally:
            stop.set()

    # ---- harnessctl -------------------------------------------------------------------

    def ctl(self, *args, input=None, user=None, timeout=60):
        tok = (user or self.alice_c).md[0][1].split()[1]
        env = dict(os.environ, HARNESS_SERVER=self.hd.target, HARNESS_TOKEN=tok)
        return subprocess.run([hstest.HARNESSCTL] + list(args), input=input, env=env,
                              capture_output=True, timeout=timeout * hstest.SLOW)

    def test_harnessctl_logs_and_exec(self):
        sb = self.sandbox("ctl-1", "mkdir -p sub; echo first; echo second; "
                          "while [ ! -e go ]; do sleep 0.02; done; echo third; exec sleep 1000")
        wait_until(lambda: b"second" in self.alice.read_logs(sandbox_id="ctl-1"), 10, "output")
        p = self.ctl("sandbox", "logs", "ctl-1")
        self.assertEqual((p.returncode, p.stdout), (0, b"first\nsecond\n"), p.stderr)
        p = self.ctl("sandbox", "logs", "--tail", "1", "ctl-1")
        self.assertEqual((p.returncode, p.stdout), (0, b"second\n"), p.stderr)
        # -f: follows until the sandbox stops.
        f = subprocess.Popen([hstest.HARNESSCTL, "sandbox", "logs", "-f", "--tail=1", "ctl-1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, HARNESS_SERVER=self.hd.target,
                                      HARNESS_TOKEN=self.alice_c.md[0][1].split()[1]))
        try:
            self.assertEqual(f.stdout.readline(), b"second\n")
            open(os.path.join(sb.workspace, "go"), "w").close()
            self.assertEqual(f.stdout.readline(), b"third\n")
            self.alice_c.DestroySandbox(sandbox_id="ctl-1")
            self.assertEqual(f.wait(timeout=30 * hstest.SLOW), 0, f.stderr.read())
            self.assertEqual(f.stdout.read(), b"")
        finally:
            if f.poll() is None:
                f.kill()
                f.wait()
            f.stdout.close()
            f.stderr.close()

        sb = self.sandbox("ctl-2", "mkdir -p sub; exec sleep 1000")
        wait_until(lambda: os.path.isdir(os.path.join(sb.workspace, "sub")), 10, "sub")
        # stdin forwarded, stdout and stderr apart, the command's exit status.
        p = self.ctl("sandbox", "exec", "ctl-2", "--", "sh", "-c", "cat; echo oops >&2; exit 5",
                     input=b"piped in\n")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (5, b"piped in\n", b"oops\n"))
        p = self.ctl("sandbox", "exec", "--env", "X=42", "-w", "sub", "ctl-2", "--", "sh", "-c",
                     'echo "$X"; basename "$PWD"', input=b"")
        self.assertEqual((p.returncode, p.stdout), (0, b"42\nsub\n"), p.stderr)
        p = self.ctl("sandbox", "exec", "--no-stdin", "ctl-2", "--", "sh", "-c", "kill -TERM $$")
        self.assertEqual(p.returncode, 128 + 15)
        # Errors: one line, the gRPC code's exit status.
        p = self.ctl("sandbox", "exec", "ctl-2", "--", "sh", user=self.bob_c, input=b"")
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn(b"NOT_FOUND", p.stderr)
        p = self.ctl("sandbox", "exec", "ctl-2", "ls")
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--", p.stderr)
        p = self.ctl("sandbox", "exec", "--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"SANDBOX_ID -- COMMAND", p.stdout)
        # Ctrl-C kills the command: exit 130, nothing left running.
        m = self.marker()
        e = subprocess.Popen([hstest.HARNESSCTL, "sandbox", "exec", "ctl-2", "--", "sh", "-c",
                              "echo up; exec sleep %s" % m], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, HARNESS_SERVER=self.hd.target,
                                      HARNESS_TOKEN=self.alice_c.md[0][1].split()[1]))
        try:
            self.assertEqual(e.stdout.readline(), b"up\n")
            wait_until(lambda: pids_with(m), 10, "the command")
            e.send_signal(signal.SIGINT)
            self.assertEqual(e.wait(timeout=30 * hstest.SLOW), 130)
            wait_until(lambda: not pids_with(m), 10, "the command to be killed")
        finally:
            if e.poll() is None:
                e.kill()
                e.wait()
            for s in (e.stdin, e.stdout, e.stderr):
                s.close()


if __name__ == "__main__":
    unittest.main()
