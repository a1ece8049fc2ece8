"""SandboxService through grpcio against a real harnessd: the whole lifecycle
on the bwrap driver for real (processes, workspace, freezer), and on the
firecracker driver against tests/doubles/fc_emulator.py (a Firecracker API
emulator launched in place of the firecracker binary). Every test leaves no
process, runtime dir, socket or cgroup behind."""
import json
import os
import shutil
import signal
import tempfile
import time
import unittest
import uuid

import grpc

from harness.v1 import auth_pb2, sandbox_pb2
import hstest

ADMIN = ("admin@example.com", "admin-password-1")
S = sandbox_pb2


def instance_id(sb):
    """The instance id of the harnessd that made sb (kept in its data dir)."""
    runtime = os.path.dirname(os.path.dirname(sb.log_path))
    with open(os.path.join(runtime, "instance-id")) as f:
        return f.read().strip()


def cgroup_dirs(instance, sandbox_id=None, v2_only=False):
    """Where harnessd (our child, so in our cgroups) keeps the cgroups of an
    instance, or of one of its sandboxes: the v2 tree and the v1 pids,
    memory and cpu hierarchies, those that exist on this host."""
    out = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            path = "" if path == "/" else path
            if ctrls == "":
                mounts = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            elif not v2_only and set(ctrls.split(",")) & {"pids", "memory", "cpu"}:
                mounts = ["/sys/fs/cgroup/" + ctrls]
            else:
                continue
            for m in mounts:
                if os.path.exists(os.path.join(m, "cgroup.controllers" if ctrls == "" else
                                               "cgroup.procs")):
                    d = "%s%s/harness-%s" % (m, path, instance)
                    out.append(os.path.join(d, sandbox_id) if sandbox_id else d)
    return out


class Client(hstest.ServiceClient):
    """One user's view of SandboxService: client.GetSandbox(sandbox_id=...)."""

    def __init__(self, channel, token):
        super().__init__(channel, sandbox_pb2, "SandboxService", token, timeout=30 * hstest.SLOW)


login = hstest.login


def make_user(channel, admin_token, email):
    fn = hstest.stub(channel, "/harness.v1.AuthService/CreateUser", auth_pb2.CreateUserRequest,
                     auth_pb2.User)
    fn(auth_pb2.CreateUserRequest(email=email, password="password-" + email, role="user"),
       metadata=[("authorization", "Bearer " + admin_token)], timeout=10)
    return Client(channel, login(channel, email, "password-" + email))


def alive(pid):
    """pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pids_with(marker):
    """Host processes whose command line contains marker."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if marker.encode() in f.read() and alive(int(d)):
                    found.append(int(d))
        except OSError:
            pass
    return found


def wait_until(pred, timeout, what):
    # waits for what must happen: generous whatever was asked (a loaded CI)
    deadline = time.monotonic() + max(timeout, 30) * hstest.SLOW
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def counter_script(marker):
    """An entrypoint that counts into the workspace and keeps a marked child."""
    return ["/bin/sh", "-c",
            # written to a temp file and renamed: a reader (or a kill) never
            # sees a truncated count
            "sleep %s & i=0; while true; do i=$((i+1)); echo $i > count.tmp; "
            "mv -f count.tmp count.txt; sleep 0.05; done"
            % marker]


def read_count(sb):
    try:
        with open(os.path.join(sb.workspace, "count.txt")) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def assert_clean(test, sb, pid=None, marker=None):
    """Nothing of a destroyed sandbox is left: process, runtime dir, socket, cgroup."""
    if pid:
        wait_until(lambda: not alive(pid), 10, "pid %d to end" % pid)
    if marker:
        wait_until(lambda: not pids_with(marker), 10, "processes with %s to end" % marker)
    test.assertFalse(os.path.exists(os.path.dirname(sb.log_path)), "runtime dir left")
    if sb.api_socket_path:
        test.assertFalse(os.path.exists(sb.api_socket_path), "API socket left")
    for d in cgroup_dirs(instance_id(sb), sb.sandbox_id):
        test.assertFalse(os.path.exists(d), "cgroup left: " + d)


class SandboxServer:
    """harnessd plus an admin and a user client; closes with no sandbox left."""

    def __init__(self, args=(), env=None, data_dir=None):
        self.hd = hstest.Harnessd(data_dir=data_dir, args=list(args), env=env)
        self.admin_token = login(self.hd.channel, *ADMIN)
        self.admin = Client(self.hd.channel, self.admin_token)

    def user(self, email):
        return make_user(self.hd.channel, self.admin_token, email)

    def destroy_all(self):
        for sb in self.admin.ListSandboxes(page_size=1000).sandboxes:
            self.admin.DestroySandbox(sandbox_id=sb.sandbox_id)

    def close(self, destroy=True):
        try:
            if destroy:
                self.destroy_all()
        finally:
            self.hd.close()
        bad = [l for l in self.hd.raw_lines if "runtime error" in l or "Sanitizer" in l]
        if bad:
            raise AssertionError("sanitizer reports:\n" + "\n".join(bad[:20]))


class BwrapTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = SandboxServer(["--sandbox-driver", "bwrap", "--sandboxes-per-user", "3",
                                 "--max-vcpus", "4"])
        cls.alice = cls.srv.user("alice@example.com")
        cls.bob = cls.srv.user("bob@example.com")

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def tearDown(self):
        self.srv.destroy_all()

    def marker(self):
        return "8639%d.%06d" % (os.getpid() % 10, uuid.uuid4().int % 1000000)

    def test_lifecycle_pause_resume_destroy(self):
        m = self.marker()
        sb = self.alice.CreateSandbox(sandbox_id="life-1", task_id="task-life",
                                      entrypoint=counter_script(m), labels={"team": "a"},
                                      env={"GREETING": "hi"}, ttl_seconds=600)
        self.assertEqual(sb.state, S.SANDBOX_STATE_CREATED)
        self.assertEqual(sb.driver, "bwrap")
        self.assertEqual(sb.pid, 0)
        self.assertEqual(sb.task_id, "task-life")
        self.assertEqual(list(sb.entrypoint), counter_script(m))
        self.assertEqual(dict(sb.labels), {"team": "a"})
        self.assertTrue(sb.workspace.endswith("/workspaces/task-life"), sb.workspace)
        self.assertGreater(sb.created_at.seconds, 0)
        self.assertEqual(sb.expires_at.seconds - sb.created_at.seconds, 600)
        self.assertFalse(sb.HasField("started_at"))

        sb = self.alice.StartSandbox(sandbox_id="life-1")
        self.assertEqual(sb.state, S.SANDBOX_STATE_RUNNING)
        self.assertGreater(sb.pid, 0)
        self.assertTrue(sb.HasField("started_at"))
        pid = sb.pid
        self.assertTrue(alive(pid))
        wait_until(lambda: read_count(sb) > 3, 10, "the script to count")
        self.assertEqual(self.alice.GetSandbox(sandbox_id="life-1").pid, pid)
        ids = [s.sandbox_id for s in self.alice.ListSandboxes().sandboxes]
        self.assertIn("life-1", ids)
        self.assertEqual([s.sandbox_id for s in self.alice.ListSandboxes(
            label_selector={"team": "a"}).sandboxes], ["life-1"])
        self.assertEqual(list(self.alice.ListSandboxes(label_selector={"team": "b"}).sandboxes), [])
        self.assertEqual([s.sandbox_id for s in self.alice.ListSandboxes(
            state=S.SANDBOX_STATE_RUNNING, task_id="task-life").sandboxes], ["life-1"])

        self.assertEqual(self.alice.PauseSandbox(sandbox_id="life-1").state, S.SANDBOX_STATE_PAUSED)
        time.sleep(0.2)
        frozen = read_count(sb)
        time.sleep(0.6)
        self.assertEqual(read_count(sb), frozen, "a paused sandbox made progress")
        # Pausing a PAUSED sandbox is a no-op.
        self.assertEqual(self.alice.PauseSandbox(sandbox_id="life-1").state, S.SANDBOX_STATE_PAUSED)
        self.assertEqual(self.alice.ResumeSandbox(sandbox_id="life-1").state, S.SANDBOX_STATE_RUNNING)
        wait_until(lambda: read_count(sb) > frozen + 3, 10, "progress after resume")
        self.assertEqual(self.alice.ResumeSandbox(sandbox_id="life-1").state, S.SANDBOX_STATE_RUNNING)
        self.assertTrue(pids_with(m), "the marked child should run")

        d = self.alice.DestroySandbox(sandbox_id="life-1")
        self.assertEqual(d.state, S.SANDBOX_STATE_DESTROYED)
        assert_clean(self, sb, pid=pid, marker=m)
        self.assertEqual(self.alice.GetSandbox(sandbox_id="life-1").state, S.SANDBOX_STATE_DESTROYED)
        # Idempotent; and DESTROYED ones are listed only when asked for.
        self.assertEqual(self.alice.DestroySandbox(sandbox_id="life-1").state, S.SANDBOX_STATE_DESTROYED)
        self.assertNotIn("life-1", [s.sandbox_id for s in self.alice.ListSandboxes().sandboxes])
        self.assertIn("life-1", [s.sandbox_id for s in self.alice.ListSandboxes(
            state=S.SANDBOX_STATE_DESTROYED).sandboxes])
        # The workspace belongs to the task, not the sandbox: it stays.
        self.assertGreater(read_count(sb), 0)

    def test_exit_code_is_reported(self):
        self.alice.CreateSandbox(sandbox_id="exit-3", entrypoint=["/bin/sh", "-c", "exit 3"])
        self.alice.StartSandbox(sandbox_id="exit-3")
        sb = wait_until(lambda: (lambda s: s if s.state == S.SANDBOX_STATE_STOPPED else None)(
            self.alice.GetSandbox(sandbox_id="exit-3")), 10, "STOPPED")
        self.assertEqual(sb.exit_code, 3)
        self.assertEqual(sb.pid, 0)
        # stopped_at: when it stopped; kept when it is destroyed afterwards.
        self.assertTrue(sb.HasField("stopped_at"))
        self.assertGreaterEqual(sb.stopped_at.ToMilliseconds(), sb.started_at.ToMilliseconds())
        d = self.alice.DestroySandbox(sandbox_id="exit-3")
        self.assertEqual(d.stopped_at, sb.stopped_at)

    def test_list_is_newest_first_with_stable_pages(self):
        for i in range(1, 4):  # alice's quota here is 3
            sb = self.alice.CreateSandbox(sandbox_id="ord-%d" % i, entrypoint=["true"])
            self.assertFalse(sb.HasField("stopped_at"))
        got, token, pages = [], "", 0
        while True:
            page = self.alice.ListSandboxes(page_size=1, page_token=token)
            got += [s.sandbox_id for s in page.sandboxes]
            token, pages = page.next_page_token, pages + 1
            if not token:
                break
            # A token is bound to its filters.
            code, msg = self.alice.error("ListSandboxes", page_size=1, page_token=token,
                                         state=S.SANDBOX_STATE_CREATED)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("page_token", msg)
        self.assertEqual(got, ["ord-3", "ord-2", "ord-1"])
        self.assertGreaterEqual(pages, 3)
        self.assertEqual([s.sandbox_id for s in self.alice.ListSandboxes().sandboxes],
                         ["ord-3", "ord-2", "ord-1"])

    def test_no_task_means_empty_task_id_and_no_workspace(self):
        sb = self.alice.CreateSandbox(sandbox_id="notask-1", entrypoint=[
            "/bin/sh", "-c",
            'test "$(pwd)" = / && test "$HOME" = /tmp && test -z "${HARNESS_TASK_ID+x}"'])
        self.assertEqual(sb.task_id, "")
        self.assertEqual(sb.workspace, "")
        self.alice.StartSandbox(sandbox_id="notask-1")
        sb = wait_until(lambda: (lambda s: s if s.state == S.SANDBOX_STATE_STOPPED else None)(
            self.alice.GetSandbox(sandbox_id="notask-1")), 10, "STOPPED")
        self.assertEqual(sb.exit_code, 0)
        self.assertEqual(sb.task_id, "")

    def test_destroy_honours_grace_period(self):
        # Graceful: the entrypoint gets SIGTERM and time to clean up.
        sb = self.alice.CreateSandbox(sandbox_id="grace-1", task_id="task-grace-1", entrypoint=[
            "/bin/sh", "-c", "trap 'sleep 0.3; echo bye > bye.txt; exit 0' TERM; "
            "echo up > up.txt; while :; do sleep 0.05; done"])
        self.alice.StartSandbox(sandbox_id="grace-1")
        up = os.path.join(sb.workspace, "up.txt")
        wait_until(lambda: os.path.exists(up), 10, "the entrypoint to run")
        t0 = time.monotonic()
        self.assertEqual(self.alice.DestroySandbox(sandbox_id="grace-1", grace_period_ms=30000)
                         .state, S.SANDBOX_STATE_DESTROYED)
        # it returned when the entrypoint exited, not when the 30 s were over
        self.assertLess(time.monotonic() - t0, 29.0)
        self.assertTrue(os.path.exists(os.path.join(sb.workspace, "bye.txt")))
        # Stubborn: SIGTERM ignored; SIGKILL once the grace asked for is over
        # (the server default would be 5 s).
        m = self.marker()
        sb = self.alice.CreateSandbox(sandbox_id="grace-2", task_id="task-grace-2", entrypoint=[
            "/bin/sh", "-c", "trap '' TERM; sleep %s & echo up > up.txt; "
            "while :; do sleep 0.05; done" % m])
        sb = self.alice.StartSandbox(sandbox_id="grace-2")
        up = os.path.join(sb.workspace, "up.txt")
        wait_until(lambda: os.path.exists(up), 10, "the entrypoint to run")
        t0 = time.monotonic()
        d = self.alice.DestroySandbox(sandbox_id="grace-2", grace_period_ms=300)
        took = time.monotonic() - t0
        self.assertEqual(d.state, S.SANDBOX_STATE_DESTROYED)
        self.assertTrue(d.HasField("stopped_at"))
        self.assertGreaterEqual(took, 0.28)
        # the server default would take at least 5 s (the one bound the wrong
        # behaviour could not meet; no tighter upper bound: that is load)
        self.assertLess(took, 5.0)
        assert_clean(self, sb, pid=sb.pid, marker=m)

    def test_wrong_state_is_failed_precondition_naming_the_state(self):
        self.alice.CreateSandbox(sandbox_id="ws-1", entrypoint=["sleep", "1000"])
        code, msg = self.alice.error("PauseSandbox", sandbox_id="ws-1")
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("is CREATED", msg)
        code, msg = self.alice.error("ResumeSandbox", sandbox_id="ws-1")
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("CREATED", msg)
        sb = self.alice.StartSandbox(sandbox_id="ws-1")
        code, msg = self.alice.error("StartSandbox", sandbox_id="ws-1")
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("is RUNNING", msg)
        # No memory snapshots on bwrap, in any state.
        for _ in range(2):
            code, msg = self.alice.error("SnapshotSandbox", sandbox_id="ws-1")
            self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION)
            self.assertIn("no memory snapshots", msg)
            code, msg = self.alice.error("RestoreSandbox", sandbox_id="ws-1")
            self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION)
            self.alice.PauseSandbox(sandbox_id="ws-1")
        self.assertEqual(self.alice.GetSandbox(sandbox_id="ws-1").state, S.SANDBOX_STATE_PAUSED)
        self.assertEqual(len(self.alice.ListSnapshots(sandbox_id="ws-1").snapshots), 0)
        self.alice.DestroySandbox(sandbox_id="ws-1")
        assert_clean(self, sb, pid=sb.pid)
        code, msg = self.alice.error("StartSandbox", sandbox_id="ws-1")
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("DESTROYED", msg)

    def test_ttl_expiry_destroys(self):
        m = self.marker()
        self.alice.CreateSandbox(sandbox_id="ttl-1", entrypoint=counter_script(m), ttl_seconds=2)
        sb = self.alice.StartSandbox(sandbox_id="ttl-1")
        wait_until(lambda: self.alice.GetSandbox(sandbox_id="ttl-1").state ==
                   S.SANDBOX_STATE_DESTROYED, 10, "TTL expiry")
        got = self.alice.GetSandbox(sandbox_id="ttl-1")
        self.assertIn("ttl", got.failure_reason)
        assert_clean(self, sb, pid=sb.pid, marker=m)

    def test_quota_is_resource_exhausted(self):
        for i in range(3):
            self.bob.CreateSandbox(sandbox_id="q-%d" % i, entrypoint=["true"])
        code, msg = self.bob.error("CreateSandbox", sandbox_id="q-3", entrypoint=["true"])
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("limit", msg)
        # Alice's quota is hers.
        self.alice.CreateSandbox(sandbox_id="q-alice", entrypoint=["true"])
        self.bob.DestroySandbox(sandbox_id="q-0")
        self.bob.CreateSandbox(sandbox_id="q-3", entrypoint=["true"])
        code, msg = self.alice.error("CreateSandbox", sandbox_id="big", entrypoint=["true"],
                                     vcpu_count=8)
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("vcpu_count", msg)

    def test_another_users_sandbox_is_refused(self):
        self.alice.CreateSandbox(sandbox_id="mine-1", entrypoint=["sleep", "1000"])
        for name in ("GetSandbox", "StartSandbox", "PauseSandbox", "DestroySandbox",
                     "ListSnapshots", "SnapshotSandbox"):
            code, msg = self.bob.error(name, sandbox_id="mine-1")
            self.assertEqual(code, grpc.StatusCode.NOT_FOUND, name)
            self.assertNotIn("alice", msg)
        self.assertEqual(list(self.bob.ListSandboxes().sandboxes), [])
        code, _ = self.bob.error("ListSandboxes", owner="someone-else")
        self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED)
        # Taken ids stay taken, whoever asks.
        code, _ = self.bob.error("CreateSandbox", sandbox_id="mine-1", entrypoint=["true"])
        self.assertEqual(code, grpc.StatusCode.ALREADY_EXISTS)
        # Admins see everyone's and can filter by owner.
        owner = self.alice.GetSandbox(sandbox_id="mine-1").owner
        got = self.srv.admin.ListSandboxes(owner=owner).sandboxes
        self.assertEqual([s.sandbox_id for s in got], ["mine-1"])
        self.assertEqual(self.srv.admin.GetSandbox(sandbox_id="mine-1").owner, owner)

    def test_bad_fields_are_invalid_argument_naming_the_field(self):
        cases = [
            ("GetSandbox", {"sandbox_id": ""}, "sandbox_id"),
            ("GetSandbox", {"sandbox_id": "bad/id"}, "sandbox_id"),
            ("DestroySandbox", {"sandbox_id": "x" * 65}, "sandbox_id"),
            ("StartSandbox", {"sandbox_id": "-lead"}, "sandbox_id"),
            ("CreateSandbox", {"sandbox_id": "under_score"}, "sandbox_id"),
            ("CreateSandbox", {"driver": "qemu"}, "driver"),
            ("CreateSandbox", {"vcpu_count": 33}, "vcpu_count"),
            ("CreateSandbox", {"vcpu_count": -1}, "vcpu_count"),
            ("CreateSandbox", {"mem_size_mib": 64}, "mem_size_mib"),
            ("CreateSandbox", {"ttl_seconds": -1}, "ttl_seconds"),
            ("CreateSandbox", {"task_id": ".hidden"}, "task_id"),
            ("CreateSandbox", {"labels": {"bad key": "v"}}, "labels"),
            ("CreateSandbox", {"env": {"1BAD": "v"}}, "env"),
            ("CreateSandbox", {"entrypoint": [""]}, "entrypoint"),
            ("CreateSandbox", {"kernel_image_path": "/boot/vmlinux"}, "kernel_image_path"),
            ("CreateSandbox", {"kernel_image_path": "relative"}, "kernel_image_path"),
            ("CreateSandbox", {"workspace": "../escape"}, "workspace"),
            ("CreateSandbox", {"working_dir": "/x"}, "working_dir"),
            ("CreateSandbox", {"drives": [S.Drive(drive_id="d", path_on_host="/x")]}, "drives"),
            ("ListSandboxes", {"page_size": -1}, "page_size"),
            ("ListSandboxes", {"page_token": "not a token"}, "page_token"),
            ("DestroySandbox", {"sandbox_id": "ok-id", "grace_period_ms": 60001}, "grace_period_ms"),
            ("RestoreSandbox", {"sandbox_id": "ok-id", "snapshot_id": "../x"}, "snapshot_id"),
        ]
        for name, kw, field in cases:
            code, msg = self.alice.error(name, **kw)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, (name, kw, msg))
            self.assertIn(field, msg, (name, kw))
        code, _ = self.alice.error("GetSandbox", sandbox_id="no-such-sandbox")
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        # A driver that cannot run on this host (no KVM here) is UNAVAILABLE.
        if not os.path.exists("/dev/kvm"):
            code, msg = self.alice.error("CreateSandbox", driver="firecracker")
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
            self.assertIn("firecracker cannot run here", msg)

    def test_no_token_is_unauthenticated(self):
        anon = Client(self.srv.hd.channel, "not-a-token")
        code, _ = anon.error("ListSandboxes")
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)


class StartupTest(unittest.TestCase):
    """The driver is chosen and checked at start."""

    def run_harnessd(self, *args):
        data = tempfile.mkdtemp(prefix="hs-it-sbs-")
        try:
            p = hstest.Process([hstest.HARNESSD, "--listen", "127.0.0.1:0", "--data-dir", data]
                               + list(args), env={"HARNESS_ADMIN_PASSWORD": "admin-password-1"})
            try:
                p.proc.wait(timeout=20 * hstest.SLOW)
            except Exception:
                p.stop()
                raise
            p.stop()
            return p
        finally:
            shutil.rmtree(data, ignore_errors=True)

    def test_unusable_firecracker_fails_fast(self):
        p = self.run_harnessd("--sandbox-driver", "firecracker", "--firecracker-bin",
                              "/nonexistent/firecracker")
        self.assertEqual(p.proc.returncode, 1)
        err = "\n".join(p.raw_lines)
        self.assertIn("sandbox driver firecracker cannot run here", err)
        # Without the escape hatch /dev/kvm is required (none on our machines).
        if not os.path.exists("/dev/kvm"):
            p = self.run_harnessd("--sandbox-driver", "firecracker", "--firecracker-bin", "/bin/true")
            self.assertEqual(p.proc.returncode, 1)
            self.assertIn("/dev/kvm", "\n".join(p.raw_lines))

    def test_no_usable_driver(self):
        # Configured: fail fast.
        p = self.run_harnessd("--sandbox-driver", "bwrap", "--bwrap-bin", "/nonexistent/bwrap")
        self.assertEqual(p.proc.returncode, 1)
        self.assertIn("sandbox driver bwrap cannot run here", "\n".join(p.raw_lines))
        # The jailer without an unprivileged uid (none configured, the
        # sandbox identity refused) is refused at start, not at the first
        # sandbox.
        p = self.run_harnessd("--jailer-bin", "/bin/true", "--sandbox-uid", "0")
        self.assertEqual(p.proc.returncode, 1)
        self.assertIn("jailer-uid", "\n".join(p.raw_lines))
        # auto: the rest of harnessd serves; sandboxes are UNAVAILABLE with the reason.
        srv = SandboxServer(["--firecracker-bin", "/nonexistent/fc", "--bwrap-bin",
                             "/nonexistent/bwrap"])
        try:
            srv.hd.wait_for(lambda l: l.get("msg") == "no sandbox driver can run here")
            code, msg = srv.admin.error("CreateSandbox", entrypoint=["true"])
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
            self.assertIn("/nonexistent/bwrap", msg)
        finally:
            srv.close()

    def test_auto_falls_back_to_bwrap(self):
        srv = SandboxServer(["--sandbox-driver", "auto", "--firecracker-bin", "/nonexistent/fc"])
        try:
            sel = srv.hd.wait_for(lambda l: l.get("msg") == "sandbox driver selected")
            self.assertEqual(sel.get("driver"), "bwrap")
            sb = srv.admin.CreateSandbox(entrypoint=["true"])
            self.assertEqual(sb.driver, "bwrap")
            self.assertTrue(sb.sandbox_id.startswith("sb-"))
        finally:
            srv.close()


class RestartTest(unittest.TestCase):
    """A bwrap sandbox outlives harnessd and is re-adopted by the next one."""

    def test_restart_readopts_running_sandbox(self):
        data = tempfile.mkdtemp(prefix="hs-it-sbr-")
        m = "86398.%06d" % (uuid.uuid4().int % 1000000)
        srv = SandboxServer(["--sandbox-driver", "bwrap"], data_dir=data)
        try:
            srv.admin.CreateSandbox(sandbox_id="keep-1", task_id="task-keep",
                                    entrypoint=counter_script(m))
            sb = srv.admin.StartSandbox(sandbox_id="keep-1")
            wait_until(lambda: read_count(sb) > 2, 10, "counting")
            srv.close(destroy=False)  # SIGTERM: the sandbox keeps running
            srv = None
            self.assertTrue(alive(sb.pid))
            before = read_count(sb)
            wait_until(lambda: read_count(sb) > before + 2, 10, "counting without harnessd")
            srv = SandboxServer(["--sandbox-driver", "bwrap"], data_dir=data)
            self.assertTrue(any(l.get("msg") == "re-adopted after restart" for l in srv.hd.lines))
            got = srv.admin.GetSandbox(sandbox_id="keep-1")
            self.assertEqual(got.state, S.SANDBOX_STATE_RUNNING)
            self.assertEqual(got.pid, sb.pid)
            self.assertEqual(srv.admin.PauseSandbox(sandbox_id="keep-1").state,
                             S.SANDBOX_STATE_PAUSED)
            self.assertEqual(srv.admin.DestroySandbox(sandbox_id="keep-1").state,
                             S.SANDBOX_STATE_DESTROYED)
            assert_clean(self, sb, pid=sb.pid, marker=m)
        finally:
            if srv is not None:
                srv.close()
            for pid in pids_with(m):  # only on failure: never leave one behind
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(data, ignore_errors=True)


class FirecrackerEmulatorTest(unittest.TestCase):
    """The firecracker driver, harnessd launching the emulator as its VMM."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hs-it-fc-")
        cls.kernel = os.path.join(cls.tmp, "vmlinux")
        cls.rootfs = os.path.join(cls.tmp, "rootfs.ext4")
        for p in (cls.kernel, cls.rootfs):
            with open(p, "w") as f:
                f.write("not really an image\n")
        cls.emu_log = os.path.join(cls.tmp, "emu.log")
        cls.srv = cls.server()

    @classmethod
    def server(cls, **env):
        # harnessd starts the VMM with a fixed environment (never its own),
        # so the emulator's settings are baked into its wrapper.
        e = {"FC_EMU_LOG": cls.emu_log}
        e.update(env)
        fc_bin = os.path.join(cls.tmp, "firecracker-%s" % uuid.uuid4().hex[:8])
        with open(fc_bin, "w") as f:
            f.write("#!/bin/sh\n%sexec /usr/bin/python3 %s/tests/doubles/fc_emulator.py \"$@\"\n" % (
                "".join("export %s='%s'\n" % kv for kv in sorted(e.items())),
                os.path.abspath(hstest.SOURCE)))
        os.chmod(fc_bin, 0o755)
        return SandboxServer(["--sandbox-driver", "firecracker", "--firecracker-bin", fc_bin,
                              "--firecracker-skip-kvm-check", "1", "--kernel-image", cls.kernel,
                              "--rootfs-image", cls.rootfs])

    @classmethod
    def tearDownClass(cls):
        try:
            cls.srv.close()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):
        self.srv.destroy_all()

    def emu_requests(self, pid):
        out, mine = [], False
        with open(self.emu_log) as f:  # requests follow their process's start line
            for line in f:
                d = json.loads(line)
                if d.get("event") == "start":
                    mine = d.get("pid") == pid
                elif mine and "method" in d:
                    out.append("%s %s" % (d["method"], d["path"]))
        return out

    def test_vm_lifecycle_snapshot_restore_destroy(self):
        c = self.srv.admin
        sb = c.CreateSandbox(sandbox_id="vm-1", vcpu_count=2, mem_size_mib=256, labels={"k": "v"})
        self.assertEqual(sb.driver, "firecracker")
        self.assertEqual(sb.kernel_image_path, self.kernel)
        self.assertEqual(sb.rootfs_path, self.rootfs)
        self.assertTrue(sb.track_dirty_pages)
        sb = c.StartSandbox(sandbox_id="vm-1")
        self.assertEqual(sb.state, S.SANDBOX_STATE_RUNNING)
        self.assertGreater(sb.pid, 0)
        self.assertTrue(os.path.exists(sb.api_socket_path), sb.api_socket_path)
        reqs = self.emu_requests(sb.pid)
        self.assertLess(reqs.index("PUT /boot-source"), reqs.index("PUT /actions"))
        self.assertLess(reqs.index("PUT /machine-config"), reqs.index("PUT /actions"))
        first = sb

        self.assertEqual(c.PauseSandbox(sandbox_id="vm-1").state, S.SANDBOX_STATE_PAUSED)
        s1 = c.SnapshotSandbox(sandbox_id="vm-1")
        self.assertEqual(s1.type, S.SNAPSHOT_TYPE_FULL)
        self.assertTrue(os.path.exists(s1.snapshot_path) and os.path.exists(s1.mem_file_path))
        self.assertGreater(s1.size_bytes, 0)
        self.assertEqual(c.GetSandbox(sandbox_id="vm-1").state, S.SANDBOX_STATE_PAUSED)
        self.assertEqual(c.ResumeSandbox(sandbox_id="vm-1").state, S.SANDBOX_STATE_RUNNING)
        # From RUNNING: paused for the snapshot, then resumed (or left paused).
        s2 = c.SnapshotSandbox(sandbox_id="vm-1", snapshot_type=S.SNAPSHOT_TYPE_DIFF)
        self.assertEqual(s2.type, S.SNAPSHOT_TYPE_DIFF)
        self.assertEqual(s1.base_snapshot_id, "")
        self.assertEqual(s2.base_snapshot_id, s1.snapshot_id)
        self.assertEqual(c.GetSandbox(sandbox_id="vm-1").state, S.SANDBOX_STATE_RUNNING)
        c.SnapshotSandbox(sandbox_id="vm-1", leave_paused=True)
        self.assertEqual(c.GetSandbox(sandbox_id="vm-1").state, S.SANDBOX_STATE_PAUSED)
        snaps = c.ListSnapshots(sandbox_id="vm-1").snapshots
        self.assertEqual(len(snaps), 3)
        self.assertEqual(snaps[2].snapshot_id, s1.snapshot_id)  # newest first
        self.assertEqual(snaps[1].base_snapshot_id, s1.snapshot_id)

        r = c.RestoreSandbox(sandbox_id="vm-1", snapshot_id=s1.snapshot_id, resume=True)
        self.assertEqual(r.state, S.SANDBOX_STATE_RUNNING)
        self.assertNotEqual(r.pid, first.pid)
        wait_until(lambda: not alive(first.pid), 10, "the old VMM to end")
        self.assertIn("PUT /snapshot/load", self.emu_requests(r.pid))
        r = c.RestoreSandbox(sandbox_id="vm-1")  # latest, left paused
        self.assertEqual(r.state, S.SANDBOX_STATE_PAUSED)
        code, _ = c.error("RestoreSandbox", sandbox_id="vm-1", snapshot_id="snap-0000000000000000")
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)

        d = c.DestroySandbox(sandbox_id="vm-1")
        self.assertEqual(d.state, S.SANDBOX_STATE_DESTROYED)
        assert_clean(self, r, pid=r.pid)
        self.assertFalse(os.path.exists(s1.snapshot_path))

    def test_fc_wrong_state_and_fields(self):
        c = self.srv.admin
        c.CreateSandbox(sandbox_id="vm-ws")
        code, msg = c.error("SnapshotSandbox", sandbox_id="vm-ws")
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("CREATED", msg)
        # A diff snapshot needs a full one to layer on.
        c.StartSandbox(sandbox_id="vm-ws")
        code, msg = c.error("SnapshotSandbox", sandbox_id="vm-ws",
                            snapshot_type=S.SNAPSHOT_TYPE_DIFF)
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("no full snapshot", msg)
        self.assertEqual(c.GetSandbox(sandbox_id="vm-ws").state, S.SANDBOX_STATE_RUNNING)
        code, msg = c.error("CreateSandbox", sandbox_id="vm-ep", entrypoint=["sh"])
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("entrypoint", msg)
        code, msg = c.error("CreateSandbox", sandbox_id="vm-nic", network_interfaces=[
            S.NetworkInterface(iface_id="eth0", host_dev_name="tap0", guest_mac="zz")])
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("guest_mac", msg)
        sb = c.CreateSandbox(sandbox_id="vm-nic", network_interfaces=[
            S.NetworkInterface(iface_id="eth0", host_dev_name="tap0", guest_mac="AA:FC:00:00:00:01")])
        self.assertTrue(sb.network_enabled)
        self.assertEqual(sb.network_interfaces[0].host_dev_name, "tap0")
        code, msg = c.error("CreateSandbox", sandbox_id="vm-k", kernel_image_path="/nonexistent/k")
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("kernel_image_path", msg)

    def test_fault_message_is_surfaced(self):
        srv = self.server(FC_EMU_FAIL="PUT /machine-config")
        try:
            srv.admin.CreateSandbox(sandbox_id="vm-fault")
            code, msg = srv.admin.error("StartSandbox", sandbox_id="vm-fault")
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("injected", msg.lower())
            sb = srv.admin.GetSandbox(sandbox_id="vm-fault")
            self.assertEqual(sb.state, S.SANDBOX_STATE_FAILED)
            self.assertIn("machine-config", sb.failure_reason)
            self.assertEqual(sb.pid, 0)
            srv.admin.DestroySandbox(sandbox_id="vm-fault")
            assert_clean(self, sb)
        finally:
            srv.close()

    def test_logs_and_exec_are_unimplemented_without_a_guest_agent(self):
        c = self.srv.admin
        c.CreateSandbox(sandbox_id="vm-x")
        c.StartSandbox(sandbox_id="vm-x")
        md = c.md
        logs = hstest.stub(self.srv.hd.channel, "/harness.v1.SandboxService/GetSandboxLogs",
                           S.GetSandboxLogsRequest, S.GetSandboxLogsResponse, "unary_stream")
        exe = hstest.stub(self.srv.hd.channel, "/harness.v1.SandboxService/ExecSandbox",
                          S.ExecSandboxRequest, S.ExecSandboxResponse, "stream_stream")
        calls = (lambda: list(logs(S.GetSandboxLogsRequest(sandbox_id="vm-x"), metadata=md,
                                   timeout=30)),
                 lambda: list(exe(iter([S.ExecSandboxRequest(start=S.ExecStart(
                     sandbox_id="vm-x", command=["true"]))]), metadata=md, timeout=30)))
        for call in calls:
            with self.assertRaises(grpc.RpcError) as cm:
                call()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
            self.assertIn("guest agent", cm.exception.details())
        self.assertEqual(c.GetSandbox(sandbox_id="vm-x").state, S.SANDBOX_STATE_RUNNING)

    def test_vmm_dying_is_unavailable_and_failed(self):
        srv = self.server(FC_EMU_DIE_ON="PATCH /vm")
        try:
            srv.admin.CreateSandbox(sandbox_id="vm-die")
            sb = srv.admin.StartSandbox(sandbox_id="vm-die")
            code, _ = srv.admin.error("PauseSandbox", sandbox_id="vm-die")
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
            got = srv.admin.GetSandbox(sandbox_id="vm-die")
            self.assertEqual(got.state, S.SANDBOX_STATE_FAILED)
            self.assertTrue(got.failure_reason)
            self.assertFalse(alive(sb.pid))
            srv.admin.DestroySandbox(sandbox_id="vm-die")
            assert_clean(self, sb, pid=sb.pid)
        finally:
            srv.close()


if __name__ == "__main__":
    unittest.main()
