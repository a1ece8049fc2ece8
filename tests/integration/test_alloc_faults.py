"""Out of memory, one allocation at a time (issue 13; SQLite's fault
injection is the model). harnessd-faults is harnessd linked with a failing
allocator (tests/faults/failalloc.c): for n = 1, 2, ... the n-th allocation
of harnessd's own code after arming fails once, around one representative
RPC of each service, until the RPC no longer reaches the n-th allocation.
Every call must end cleanly: OK, or RESOURCE_EXHAUSTED / INTERNAL /
UNAVAILABLE with a message (never UNKNOWN, never a crash, never a hang);
harnessd must keep serving and its state stay usable; at the end it stops
with exit 0 (under ASan+UBSan LeakSanitizer then also finds no leak)."""
import os
import socket
import tempfile
import unittest

import grpc
from google.protobuf import struct_pb2

from harness.v1 import auth_pb2, checkpoint_pb2, health_pb2, sandbox_pb2
import hstest

FAULTS = os.path.join(hstest.BUILD, "server", "harnessd-faults")
CLEAN = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL,
         grpc.StatusCode.UNAVAILABLE}
MAX_N = 3000  # far more allocations than any of these calls makes


class Faults:
    def __init__(self, path):
        self.path = path

    def _cmd(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.path)
            s.sendall(line.encode() + b"\n")
            return s.recv(16).decode().strip()

    def arm(self, n):
        assert self._cmd("arm %d" % n) == "ok"

    def off(self):
        """True when the armed allocation failed."""
        return self._cmd("off") == "fired"


class AllocFaultsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="hs-faults-")
        ctl = os.path.join(cls.tmp.name, "ctl")
        saved = hstest.HARNESSD
        hstest.HARNESSD = FAULTS
        try:
            cls.hd = hstest.Harnessd(env={"HS_FAULTS_CTL": ctl})
        finally:
            hstest.HARNESSD = saved
        cls.faults = Faults(ctl)
        ch = cls.hd.channel
        token = hstest.login(ch, "admin@example.com", "admin-password-1")
        t = 20 * hstest.SLOW
        # AuthService is called with the admin's access token (the JWT path);
        # the other services with an API key (the service-identity path).
        cls.auth = hstest.ServiceClient(ch, auth_pb2, "AuthService", token, timeout=t)
        key = cls.auth.CreateApiKey(name="faults", role="admin").key
        cls.health = hstest.ServiceClient(ch, health_pb2, "HealthService", key, timeout=t)
        cls.ckpt = hstest.ServiceClient(ch, checkpoint_pb2, "CheckpointService", key, timeout=t)
        cls.sandbox = hstest.ServiceClient(ch, sandbox_pb2, "SandboxService", key, timeout=t)
        cls.check = hstest.stub(ch, "/grpc.health.v1.Health/Check",
                                *cls._health_classes())

    @staticmethod
    def _health_classes():
        from hsstd import health_pb2 as gh
        return gh.HealthCheckRequest, gh.HealthCheckResponse

    @classmethod
    def tearDownClass(cls):
        try:
            cls.faults._cmd("off")
        finally:
            cls.hd.close()  # exit 0: a clean shutdown, no leak under LSan
            cls.tmp.cleanup()

    def sweep(self, name, call):
        """Runs call(n) with the n-th allocation failing, n = 1, 2, ...,
        until the failure is no longer reached. Returns (n, outcomes)."""
        outcomes = {}
        for n in range(1, MAX_N + 1):
            self.faults.arm(n)
            code, detail = grpc.StatusCode.OK, ""
            try:
                call(n)
            except grpc.RpcError as e:
                code, detail = e.code(), e.details()
            fired = self.faults.off()
            outcomes[code] = outcomes.get(code, 0) + 1
            if code != grpc.StatusCode.OK:
                self.assertIn(code, CLEAN, "%s, allocation %d: %s %s" % (name, n, code, detail))
                self.assertTrue(detail, "%s, allocation %d: no message" % (name, n))
            # still serving, still answering the same question
            self.assertEqual(self.check(self._health_classes()[0](service=""), timeout=10).status, 1)
            if not fired:
                return n, outcomes
        self.fail("%s: still allocating after %d allocations" % (name, MAX_N))

    def test_health_register_heartbeat_get(self):
        def call(n):
            tid = "fa-task-%d" % n
            self.health.RegisterTask(task_id=tid, total_steps=3, heartbeat_timeout_ms=600000)
            self.health.Heartbeat(task_id=tid, current_step=1)
            self.health.GetTask(task_id=tid)
        n, outcomes = self.sweep("HealthService", call)
        self.assertGreater(n, 10, outcomes)
        # every task that registered is whole: GetTask answers for it
        tasks = self.health.ListTasks(page_size=1000).tasks
        for t in tasks:
            if t.task_id.startswith("fa-task-"):
                self.assertEqual(self.health.GetTask(task_id=t.task_id).task_id, t.task_id)

    def test_checkpoint_create_and_list(self):
        ws = os.path.join(self.hd.data_dir, "workspaces", "fa-ckpt")
        os.makedirs(ws, exist_ok=True)

        def call(n):
            with open(os.path.join(ws, "f.txt"), "w") as f:
                f.write("step %d\n" % n)
            st = struct_pb2.Struct()
            st.update({"n": n, "l": [1, "x", {"k": True}]})
            self.ckpt.CreateCheckpoint(task_id="fa-ckpt", step=n, description="d",
                                       external_state=st)
            self.ckpt.ListCheckpoints(task_id="fa-ckpt")
        n, outcomes = self.sweep("CheckpointService", call)
        self.assertGreater(n, 10, outcomes)
        # the repository is still whole: a new checkpoint and a restore work
        c = self.ckpt.CreateCheckpoint(task_id="fa-ckpt", step=100000, description="after")
        self.ckpt.RestoreCheckpoint(task_id="fa-ckpt", checkpoint_id=c.checkpoint.checkpoint_id)

    def test_auth_whoami_and_api_key(self):
        def call(n):
            self.auth.WhoAmI()
            self.auth.CreateApiKey(name="fa-key-%d" % n)
        n, outcomes = self.sweep("AuthService", call)
        self.assertGreater(n, 5, outcomes)
        self.auth.WhoAmI()

    def test_sandbox_create_get_delete(self):
        def call(n):
            sid = "fa-sb-%d" % n
            self.sandbox.CreateSandbox(sandbox_id=sid, task_id="fa-sb", entrypoint=["true"])
            self.sandbox.GetSandbox(sandbox_id=sid)
        n, outcomes = self.sweep("SandboxService", call)
        self.assertGreater(n, 10, outcomes)
        # whatever was created can be listed and deleted
        for s in self.sandbox.ListSandboxes(page_size=1000).sandboxes:
            self.sandbox.DestroySandbox(sandbox_id=s.sandbox_id)


if __name__ == "__main__":
    unittest.main()
