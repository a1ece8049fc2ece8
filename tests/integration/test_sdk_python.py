"""The Python SDK (clients/python) end to end against a real harnessd
(issue 20): installed with pip from the repository into a venv, its example
agent (clients/python/examples/counter_agent.py) is

* killed with SIGKILL in the middle of a step and started again: the new
  process resumes after the last checkpoint with its external state, never
  redoes a checkpointed step, is never told CONTINUE before it acknowledged
  the restore, and finishes with a consistent workspace;
* stopped (SIGSTOP) past its heartbeat timeout while alive, so harnessd
  restores its workspace under it: when it runs again it is fenced (no
  CONTINUE at the old generation, the interrupted step is not
  checkpointed), resumes from the restored step and finishes correctly.

Also: the Client's retries on UNAVAILABLE, deadlines, token refresh, API
keys and request_id replays."""
import json
import os
import signal
import subprocess
import time
import unittest

import grpc

import hstest
import sdkenv
from harness.v1 import auth_pb2, health_pb2

ADMIN = ("admin@example.com", "admin-password-1")
EXAMPLE = os.path.join(hstest.SOURCE, "clients", "python", "examples", "counter_agent.py")
STEPS = 8
WAIT = 60 * hstest.SLOW


def read_journal(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.endswith("\n"):
                    out.append(json.loads(line))
    return out


class PythonSdkTest(hstest.HarnessTestCase):
    """The example agent's scenarios; test_sdk_typescript.py runs the same
    ones with the TypeScript SDK's example (agent_cmd)."""

    @classmethod
    def agent_cmd(cls):
        return [sdkenv.python_sdk(), EXAMPLE]

    @classmethod
    def setUpClass(cls):
        cls.cmd = cls.agent_cmd()  # before harnessd: a failed install leaves no server behind
        super().setUpClass()
        cls.token = hstest.login(cls.channel, *ADMIN)
        cls.tasks = hstest.ServiceClient(cls.channel, health_pb2, "HealthService", cls.token)
        cls.ws_root = os.path.join(cls.hd.data_dir, "workspaces")

    def agent(self, task_id, journal, step_seconds=0.3):
        env = dict(os.environ, HARNESS_EMAIL=ADMIN[0], HARNESS_PASSWORD=ADMIN[1])
        env.pop("HARNESS_TOKEN", None)
        argv = self.cmd + ["--server", self.hd.target, "--task-id", task_id,
                "--workspace-dir", os.path.join(self.ws_root, task_id), "--steps", str(STEPS),
                "--step-seconds", str(step_seconds * hstest.SLOW), "--heartbeat-interval", str(0.3 * hstest.SLOW),
                "--heartbeat-timeout", str(1.5 * hstest.SLOW), "--journal", journal]
        p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(), p.stdout.close(), p.stderr.close()))
        return p

    def wait_journal(self, journal, pred, what):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            ev = read_journal(journal)
            if pred(ev):
                return ev
            time.sleep(0.05)
        self.fail("timed out waiting for %s; journal: %s" % (what, read_journal(journal)[-10:]))

    def finish(self, p):
        out, err = p.communicate(timeout=WAIT)
        self.assertEqual(p.returncode, 0, "agent failed:\n%s\n%s" % (out, err))
        return json.loads(out.strip().splitlines()[-1])

    def check_workspace(self, task_id, final):
        self.assertEqual(final, {"sum": STEPS * (STEPS + 1) // 2, "done": list(range(1, STEPS + 1))})
        ws = os.path.join(self.ws_root, task_id)
        self.assertEqual(sorted(os.listdir(ws)), sorted("step-%d.txt" % i for i in range(1, STEPS + 1)))
        for i in range(1, STEPS + 1):
            with open(os.path.join(ws, "step-%d.txt" % i)) as f:
                self.assertEqual(f.read(), "done %d\n" % i)
        task = self.tasks.GetTask(task_id=task_id)
        self.assertEqual(task.state, health_pb2.TASK_STATE_COMPLETED)
        self.assertGreaterEqual(task.recovery_generation, 1)
        self.assertEqual(task.acknowledged_generation, task.recovery_generation)

    def test_killed_agent_resumes_at_the_right_step(self):
        tid, journal = "py-kill", os.path.join(self.hd.data_dir, "kill.jsonl")
        first = self.agent(tid, journal)
        # mid-step: the step after a checkpoint >= 3 has started
        ev = self.wait_journal(journal, lambda ev: any(e["event"] == "checkpoint" and e["step"] >= 3 for e in ev)
                               and ev[-1]["event"] == "step-start", "a step after checkpoint 3")
        first.kill()
        first.wait()
        ev = read_journal(journal)
        cps = [e["step"] for e in ev if e["event"] == "checkpoint"]
        k = cps[-1]
        last = [e for e in ev if e["event"] != "instruction"][-1]
        self.assertEqual((last["event"], last["step"]), ("step-start", k + 1))  # killed mid-step
        second = self.agent(tid, journal)
        final = self.finish(second)
        mine = [e for e in read_journal(journal) if e["pid"] == second.pid]
        resume_at = next(i for i, e in enumerate(mine) if e["event"] == "resume")
        resume = mine[resume_at]
        self.assertEqual(resume["step"], k)
        self.assertEqual(resume["state"], {"sum": k * (k + 1) // 2, "done": list(range(1, k + 1))})
        before = mine[:resume_at]
        self.assertTrue(all(e["event"] == "instruction" and e["instruction"] != "INSTRUCTION_CONTINUE"
                            for e in before), before)
        gen = max(e["gen"] for e in before)
        self.assertGreaterEqual(gen, 1)
        starts = [e["step"] for e in mine if e["event"] == "step-start"]
        self.assertEqual(starts, list(range(k + 1, STEPS + 1)))  # nothing checkpointed is redone
        conts = [e for e in mine if e["event"] == "instruction" and e["instruction"] == "INSTRUCTION_CONTINUE"]
        self.assertTrue(conts and all(e["gen"] == gen for e in conts))
        self.check_workspace(tid, final)

    def test_stalled_agent_is_fenced_and_resumes(self):
        tid, journal = "py-stall", os.path.join(self.hd.data_dir, "stall.jsonl")
        p = self.agent(tid, journal, step_seconds=0.4)
        self.wait_journal(journal, lambda ev: any(e["event"] == "checkpoint" and e["step"] >= 2 for e in ev)
                          and ev[-1]["event"] == "step-start", "a step after checkpoint 2")
        os.kill(p.pid, signal.SIGSTOP)
        stopped_at = len(read_journal(journal))
        k = [e["step"] for e in read_journal(journal) if e["event"] == "checkpoint"][-1]
        deadline = time.monotonic() + WAIT
        while True:
            task = self.tasks.GetTask(task_id=tid)
            if task.state == health_pb2.TASK_STATE_RECOVERING and task.resume_checkpoint_id:
                break
            self.assertLess(time.monotonic(), deadline, "no restore: %s" % task)
            time.sleep(0.05)
        self.assertEqual(task.resume_step, k)
        self.assertFalse(os.path.exists(os.path.join(self.ws_root, tid, "step-%d.txt" % (k + 1))))
        os.kill(p.pid, signal.SIGCONT)
        final = self.finish(p)
        after = read_journal(journal)[stopped_at:]
        resume_at = next(i for i, e in enumerate(after) if e["event"] == "resume")
        self.assertEqual(after[resume_at]["step"], k)
        self.assertEqual(after[resume_at]["state"]["done"], list(range(1, k + 1)))
        # Between the restore and the acknowledgement: no checkpoint, and no
        # CONTINUE but the answer to the one heartbeat that was in flight when
        # the agent stopped (sent before the stall, so it carries the
        # generation from before the recovery).
        conts = [e for e in after[:resume_at] if e.get("instruction") == "INSTRUCTION_CONTINUE"]
        self.assertLessEqual(len(conts), 1, after[:resume_at])
        self.assertTrue(all(e["gen"] < task.recovery_generation for e in conts), (task, after[:resume_at]))
        for e in after[:resume_at]:
            self.assertNotEqual(e["event"], "checkpoint", after[:resume_at])
        starts = [e["step"] for e in after[resume_at:] if e["event"] == "step-start"]
        self.assertEqual(starts, list(range(k + 1, STEPS + 1)))
        self.check_workspace(tid, final)


class ClientTest(hstest.HarnessTestCase):
    """harness_sdk.Client behaviours, run in the SDK's venv (a child python)."""

    @classmethod
    def setUpClass(cls):
        cls.py = sdkenv.python_sdk()
        super().setUpClass()

    def run_py(self, code, **env):
        e = dict(os.environ, TARGET=self.hd.target, EMAIL=ADMIN[0], PASSWORD=ADMIN[1], **env)
        p = subprocess.run([self.py, "-c", code], capture_output=True, text=True, env=e, timeout=WAIT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p.stdout

    def test_refresh_api_key_request_id_and_errors(self):
        out = self.run_py(r'''
import os, grpc
from harness_sdk import Client, HarnessError
c = Client(os.environ["TARGET"], email=os.environ["EMAIL"], password=os.environ["PASSWORD"], timeout=10)
c.login()
c._access = "expired-or-garbage"        # an access token the server refuses
t = c.tasks.RegisterTask(task_id="cl-1", heartbeat_interval_ms=1000, heartbeat_timeout_ms=600000)
print("refreshed", t.task_id)
key = c.auth.CreateApiKey(name="sdk", role="user").key
k = Client(os.environ["TARGET"], api_key=key)
print("apikey", k.auth.WhoAmI().role)
a = c.checkpoints.CreateCheckpoint(task_id="cl-1", step=1, request_id="req-1")
b = c.checkpoints.CreateCheckpoint(task_id="cl-1", step=1, request_id="req-1")
print("replayed", b.replayed, a.checkpoint.checkpoint_id == b.checkpoint.checkpoint_id)
try:
    c.tasks.GetTask(task_id="no-such")
except HarnessError as e:
    print("error", e.code.name)
''')
        self.assertIn("refreshed cl-1", out)
        self.assertIn("apikey user", out)
        self.assertIn("replayed True True", out)
        self.assertIn("error NOT_FOUND", out)

    def test_concurrent_calls_refresh_once(self):
        """Eight threads needing a token at once make one Refresh: a second
        Refresh with the same refresh token would be taken for reuse and
        revoke the family (and a client with only a refresh token could not
        log in again)."""
        out = self.run_py(r'''
import os, threading
from harness_sdk import Client
seed = Client(os.environ["TARGET"], email=os.environ["EMAIL"], password=os.environ["PASSWORD"])
c = Client(os.environ["TARGET"], refresh_token=seed.login().refresh_token)
errs = []
def go():
    try:
        c.auth.WhoAmI()
    except Exception as e:
        errs.append(e)
ts = [threading.Thread(target=go) for _ in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
print("concurrent errors", len(errs), errs[:1])
c._expires_at = 1.0  # expired: the next call renews with the rotated refresh token
print("after", c.auth.WhoAmI().role)
''')
        self.assertIn("concurrent errors 0", out)
        self.assertIn("after admin", out)

    def test_unavailable_is_retried_with_backoff_until_the_server_is_up(self):
        # The server comes up only after the client started calling.
        port = hstest_free_port()
        code = r'''
import os, time
from harness_sdk import Client
c = Client("127.0.0.1:%s", email=os.environ["EMAIL"], password=os.environ["PASSWORD"], retries=40,
           backoff_initial=0.05, backoff_max=0.5, timeout=5)
open(os.environ["READY"], "w").close()
c.login()
print("role", c.auth.WhoAmI().role)
''' % port
        ready = os.path.join(self.hd.data_dir, "client-started")
        e = dict(os.environ, EMAIL=ADMIN[0], PASSWORD=ADMIN[1], READY=ready)
        child = subprocess.Popen([self.py, "-c", code], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        self.addCleanup(lambda: (child.poll() is None and child.kill(), child.wait()))
        while not os.path.exists(ready):
            self.assertIsNone(child.poll(), child.stderr.read() if child.poll() is not None else "")
            time.sleep(0.02)
        time.sleep(0.3)  # it is failing with UNAVAILABLE now
        late = hstest.Harnessd(args=["--listen", "127.0.0.1:%d" % port])
        try:
            out, err = child.communicate(timeout=WAIT)
            self.assertEqual(child.returncode, 0, err)
            self.assertIn("role admin", out)
        finally:
            late.close()

    def test_deadline_is_applied(self):
        out = self.run_py(r'''
import os, grpc
from harness_sdk import Client, HarnessError
c = Client(os.environ["TARGET"], email=os.environ["EMAIL"], password=os.environ["PASSWORD"])
c.login()
c.tasks.RegisterTask(task_id="cl-dl", heartbeat_interval_ms=1000, heartbeat_timeout_ms=600000)
s = c.tasks.WatchTasks(task_id="cl-dl", timeout=0.5)   # a stream that would never end
try:
    for _ in s:
        pass
except grpc.RpcError as e:
    print("stream", e.code().name)
''')
        self.assertIn("stream DEADLINE_EXCEEDED", out)


def hstest_free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_ = (grpc, auth_pb2, unittest)


class TlsTest(unittest.TestCase):
    """Mutual TLS from the SDK: the CA, a client certificate, a server-name
    override; a wrong CA or no client certificate does not get in."""

    @classmethod
    def setUpClass(cls):
        from pki import PKI
        cls.setup_sdk()  # before harnessd: a failed install leaves no server behind
        cls.pki = p = PKI()
        p.ca("ca")
        p.ca("clients")
        p.ca("other")
        cert, key = p.cert("ca", "server", "harnessd")
        cls.client_cert, cls.client_key = p.cert("clients", "agent", "agent", client=True)
        cls.ca, cls.other = p.path("ca.crt"), p.path("other.crt")
        try:
            cls.hd = cls._tls_harnessd(p, cert, key)
        except BaseException:
            p.close()
            raise

    @classmethod
    def _tls_harnessd(cls, p, cert, key):
        return hstest.Harnessd(args=["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", p.path("clients.crt"),
                                       "--tls-client-auth", "require"],
                                 tls={"ca": p.read(cls.ca), "cert": p.read(cls.client_cert),
                                      "key": p.read(cls.client_key)})

    @classmethod
    def setup_sdk(cls):
        cls.py = sdkenv.python_sdk()

    @classmethod
    def tearDownClass(cls):
        cls.hd.close()
        cls.pki.close()

    def run_py(self, code):
        e = dict(os.environ, TARGET="127.0.0.1:%d" % self.hd.port, EMAIL=ADMIN[0], PASSWORD=ADMIN[1],
                 CA=self.ca, OTHER=self.other, CERT=self.client_cert, KEY=self.client_key)
        p = subprocess.run([self.py, "-c", code], capture_output=True, text=True, env=e, timeout=WAIT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p.stdout

    def test_mutual_tls(self):
        out = self.run_py(r'''
import os
from harness_sdk import Client, HarnessError
E = os.environ
c = Client(E["TARGET"], email=E["EMAIL"], password=E["PASSWORD"], tls_ca=E["CA"], tls_cert=E["CERT"],
           tls_key=E["KEY"], tls_server_name="harnessd.test")
c.login()
print("ok", c.auth.WhoAmI().email)
for name, kw in (("wrong-ca", dict(tls_ca=E["OTHER"], tls_cert=E["CERT"], tls_key=E["KEY"])),
                 ("no-client-cert", dict(tls_ca=E["CA"]))):
    try:
        Client(E["TARGET"], email=E["EMAIL"], password=E["PASSWORD"], retries=0, timeout=5, **kw).login()
        print(name, "got in")
    except HarnessError as e:
        print(name, e.code.name)
''')
        self.assertIn("ok admin@example.com", out)
        self.assertIn("wrong-ca UNAVAILABLE", out)
        self.assertIn("no-client-cert UNAVAILABLE", out)
