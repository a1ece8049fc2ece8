"""Sandbox escapes (issue 10), tried the way a plain (non-admin) user would:
every attempt must fail. Against a real harnessd with the bwrap driver, the
sandbox account created as scripts/run.sh does (hstest.SandboxAccount).

From outside: LD_PRELOAD and friends through CreateSandbox.env; workspaces
that are, or pass through, symbolic links to the data dir or another
workspace (also swapped in between create and start); another user's task
or workspace. From inside: read the data dir (jwt.key, harness.db), another
task's workspace, /root, /home; write outside the workspace; signal or
ptrace harnessd; mount; unshare; reach the network when it is off; a fork
bomb (stopped by pids.max where the host enforces it).

Also: two harnessd instances with a sandbox of the same id (separate
cgroups); kill -9 of harnessd with a paused sandbox, then a restart on the
same data dir (re-adopted, resumable, destroyable, nothing left); a stale
frozen cgroup of that id (thawed, killed, replaced); a missing entrypoint
(FAILED with the reason). Each test leaves no process, cgroup or temp dir."""
import os
import shutil
import signal
import socket
import tempfile
import time
import unittest
import uuid

import grpc

from harness.v1 import sandbox_pb2
import hstest
from test_sandboxes import (SandboxServer, alive, assert_clean, cgroup_dirs, counter_script,
                            instance_id, pids_with, read_count, wait_until)

S = sandbox_pb2
ROOT = os.geteuid() == 0


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def finished(client, sid, timeout=20):
    return wait_until(lambda: (lambda s: s if s.state in (
        S.SANDBOX_STATE_STOPPED, S.SANDBOX_STATE_FAILED) else None)(
        client.GetSandbox(sandbox_id=sid)), timeout, "%s to finish" % sid)


def slurp(path):
    with open(path, errors="replace") as f:
        return f.read()


def read_log(sb):
    return slurp(sb.log_path)


# Every probe prints "blocked <what>" when the attempt fails, "ESCAPED <what>"
# when it works: the test wants only the former.
def probe(what, cmd):
    return "if %s >/dev/null 2>&1; then echo 'ESCAPED %s'; else echo 'blocked %s'; fi\n" % (
        cmd, what, what)


class EscapeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = SandboxServer(["--sandbox-driver", "bwrap", "--sandbox-pids-max", "64"])
        cls.hd = cls.srv.hd
        cls.data = os.path.realpath(cls.hd.data_dir)
        cls.ws_root = os.path.join(cls.data, "workspaces")
        cls.alice = cls.srv.user("alice@example.com")
        cls.bob = cls.srv.user("bob@example.com")
        # Bob's task and a secret in its workspace.
        cls.bob.CreateSandbox(sandbox_id="bob-1", task_id="task-bob", entrypoint=["true"])
        with open(os.path.join(cls.ws_root, "task-bob", "secret.txt"), "w") as f:
            f.write("bob's secret\n")

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def tearDown(self):
        self.srv.destroy_all()

    def run_inside(self, sid, script, **kw):
        self.alice.CreateSandbox(sandbox_id=sid, entrypoint=["/bin/sh", "-c", script], **kw)
        self.alice.StartSandbox(sandbox_id=sid)
        sb = finished(self.alice, sid)
        return sb, read_log(sb)

    # ---- from outside ------------------------------------------------------

    def test_loader_and_shell_variables_are_refused(self):
        for name in ("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "BASH_ENV", "ENV",
                     "GLIBC_TUNABLES", "MALLOC_CHECK_", "GCONV_PATH", "HARNESS_TASK_ID"):
            code, msg = self.alice.error("CreateSandbox", sandbox_id="env-bad",
                                         entrypoint=["true"], env={name: "/tmp/x.so"})
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, name)
            self.assertIn(name, msg)
        for name in ("BASH_FUNC_x%%", "1X", "A-B", "A=B", ""):
            code, msg = self.alice.error("CreateSandbox", sandbox_id="env-bad",
                                         entrypoint=["true"], env={name: "v"})
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, name)
            self.assertIn("env", msg)

    def test_caller_env_reaches_the_inside_only(self):
        marker = "hs-env-%s" % uuid.uuid4().hex[:8]
        sb = self.alice.CreateSandbox(sandbox_id="env-ok", task_id="task-env",
                                      env={"AGENT_TOKEN": marker},
                                      entrypoint=["/bin/sh", "-c",
                                                  'echo "$AGENT_TOKEN" > seen.txt; exec sleep 1000'])
        sb = self.alice.StartSandbox(sandbox_id="env-ok")
        seen = os.path.join(sb.workspace, "seen.txt")
        wait_until(lambda: os.path.exists(seen) and slurp(seen).strip(), 10, "the entrypoint")
        self.assertEqual(slurp(seen).strip(), marker)
        # The host side (the leader, a fork of harnessd, and bwrap) never has
        # the value, in its environment or on its command line; bwrap runs
        # with a fixed environment, none of harnessd's.
        host_side = [sb.pid] + children(sb.pid)
        self.assertGreaterEqual(len(host_side), 2)
        for pid in host_side:
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read()
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmdline = f.read()
            self.assertNotIn(marker.encode(), env, pid)
            self.assertNotIn(marker.encode(), cmdline, pid)
        bwrap = children(sb.pid)[0]
        with open("/proc/%d/environ" % bwrap, "rb") as f:
            self.assertEqual([v for v in f.read().split(b"\0") if v],
                             [b"PATH=/usr/sbin:/usr/bin:/sbin:/bin"])

    def test_workspace_links_are_never_followed(self):
        # The agent plants links in its own workspace.
        sb, log = self.run_inside("links", "ln -s %s to-data; ln -s ../task-bob to-bob; "
                                  "ln -s %s/task-bob to-bob-abs; mkdir real; echo ok"
                                  % (self.data, self.ws_root), task_id="task-a")
        self.assertEqual(sb.exit_code, 0, log)
        for ws in ("task-a/to-data", "task-a/to-bob", "task-a/to-bob-abs", "task-a/to-data/x"):
            code, msg = self.alice.error("CreateSandbox", sandbox_id="via-link", workspace=ws,
                                         entrypoint=["true"])
            self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, (ws, msg))
            self.assertIn("symbolic link", msg)
        # A task directory that is itself a link.
        os.symlink(self.data, os.path.join(self.ws_root, "task-link"))
        try:
            code, msg = self.alice.error("CreateSandbox", sandbox_id="via-link", task_id="task-link",
                                         entrypoint=["true"])
            self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, msg)
        finally:
            os.unlink(os.path.join(self.ws_root, "task-link"))
        # Swapped for a link between create and start: the start fails, and
        # nothing of the data dir is bound.
        self.alice.CreateSandbox(sandbox_id="swap", workspace="task-a/real", entrypoint=[
            "/bin/sh", "-c", "ls -la; cat jwt.key"])
        real = os.path.join(self.ws_root, "task-a", "real")
        os.rename(real, real + ".moved")
        os.symlink(self.data, real)
        code, msg = self.alice.error("StartSandbox", sandbox_id="swap")
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, msg)
        self.assertIn("symbolic link", msg)
        got = self.alice.GetSandbox(sandbox_id="swap")
        self.assertEqual(got.state, S.SANDBOX_STATE_FAILED)
        with open(os.path.join(self.data, "jwt.key")) as f:
            key = f.read().strip()
        self.assertNotIn(key, read_log(got) if os.path.exists(got.log_path) else "")

    def test_another_users_task_or_workspace_is_not_found(self):
        for kw in ({"task_id": "task-bob"}, {"workspace": "task-bob"},
                   {"workspace": "task-bob/sub"}, {"task_id": "task-a", "workspace": "task-bob"}):
            code, msg = self.alice.error("CreateSandbox", sandbox_id="steal", entrypoint=["true"],
                                         **kw)
            self.assertEqual(code, grpc.StatusCode.NOT_FOUND, (kw, msg))
            self.assertNotIn("bob@", msg)
        self.assertFalse(os.path.exists(os.path.join(self.ws_root, "task-bob", "sub")))

    # ---- from inside -------------------------------------------------------

    def test_inside_the_sandbox_every_escape_fails(self):
        jwt = os.path.join(self.data, "jwt.key")
        db = os.path.join(self.data, "harness.db")
        self.assertTrue(os.path.exists(jwt) and os.path.exists(db))
        other = os.path.join(self.ws_root, "task-bob", "secret.txt")
        port = self.hd.port
        hpid = self.hd.proc.pid
        py = "/usr/bin/python3 -c"
        script = "".join([
            "id -u > uid.txt; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status "
            "> status.txt; ls / > root.txt; ls %s > wsroot.txt\n" % self.ws_root,
            probe("read-jwt-key", "cat %s" % jwt),
            probe("read-harness-db", "cat %s" % db),
            probe("see-data-dir", "test -e %s/checkpoints" % self.data),
            probe("read-other-workspace", "cat %s" % other),
            probe("list-workspace-root", "ls %s/task-bob" % self.ws_root),
            probe("list-root", "ls /root"),
            probe("list-home", "ls /home"),
            probe("read-shadow", "cat /etc/shadow"),
            probe("see-var-lib", "ls /var/lib"),
            probe("see-sys", "ls /sys/fs/cgroup"),
            probe("write-usr", "touch /usr/hs-escape"),
            probe("write-etc", "touch /etc/hs-escape"),
            probe("write-root", "touch /hs-escape"),
            # The path down to the workspace exists inside (on the private
            # /tmp here): a write there must not reach the host (checked
            # below).
            "touch %s/hs-escape %s/hs-escape 2>/dev/null\n" % (self.ws_root, self.data),
            probe("signal-harnessd", "kill -0 %d" % hpid),
            probe("ptrace-harnessd",
                  "%s 'import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); "
                  "sys.exit(0 if l.ptrace(16,%d,0,0)==0 else 1)'" % (py, hpid)),
            probe("ptrace-sibling",
                  "%s 'import ctypes,os,sys,time; p=os.fork(); p or time.sleep(5); "
                  "l=ctypes.CDLL(None,use_errno=True); sys.exit(0 if l.ptrace(16,p,0,0)==0 else 1)'"
                  % py),
            probe("mount-tmpfs", "mount -t tmpfs none /tmp"),
            probe("mount-syscall",
                  "%s 'import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); "
                  "sys.exit(0 if l.mount(b\"none\",b\"/tmp\",b\"tmpfs\",0,None)==0 else 1)'" % py),
            probe("unshare-user", "unshare -U true"),
            probe("unshare-mount", "unshare -m true"),
            probe("keyctl",
                  "%s 'import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); "
                  "sys.exit(0 if l.syscall(250,0,0,0,0,0)>=0 else 1)'" % py),
            probe("bpf",
                  "%s 'import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); "
                  "sys.exit(0 if l.syscall(321,0,0,0)>=0 else 1)'" % py),
            probe("userfaultfd",
                  "%s 'import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); "
                  "sys.exit(0 if l.syscall(323,0)>=0 else 1)'" % py),
            probe("reach-harnessd",
                  "%s 'import socket; socket.create_connection((\"127.0.0.1\",%d),2)'" % (py, port)),
            probe("reach-outside", "%s 'import socket; socket.create_connection((\"1.1.1.1\",53),2)'"
                  % py),
            "echo done\n",
        ])
        sb, log = self.run_inside("inside", script, task_id="task-a")
        self.assertEqual(sb.state, S.SANDBOX_STATE_STOPPED, log)
        escaped = [l for l in log.splitlines() if l.startswith("ESCAPED")]
        blocked = [l for l in log.splitlines() if l.startswith("blocked")]
        self.assertEqual(escaped, [], log)
        self.assertEqual(len(blocked), script.count("then echo 'ESCAPED"), log)
        self.assertIn("done", log)
        for p in ("/usr/hs-escape", "/etc/hs-escape", "/hs-escape",
                  os.path.join(self.ws_root, "hs-escape"), os.path.join(self.data, "hs-escape")):
            self.assertFalse(os.path.exists(p), p)
        self.assertTrue(alive(hpid))
        ws = sb.workspace
        uid = int(slurp(os.path.join(ws, "uid.txt")))
        self.assertNotEqual(uid, 0)
        self.assertNotEqual(uid, os.geteuid())
        acct = hstest.SandboxAccount.get()
        if acct:
            self.assertEqual(uid, acct[1])
            # The agent's files are the sandbox account's, not harnessd's.
            self.assertEqual(os.stat(os.path.join(ws, "uid.txt")).st_uid, acct[1])
        status = dict(l.split(":", 1) for l in slurp(os.path.join(ws, "status.txt")).splitlines())
        self.assertEqual(int(status["CapEff"].strip(), 16), 0)
        self.assertEqual(int(status["CapBnd"].strip(), 16), 0)
        self.assertEqual(status["NoNewPrivs"].strip(), "1")
        self.assertEqual(status["Seccomp"].strip(), "2")
        # The view: the allowlist, and of the workspace root only our workspace.
        self.assertEqual(set(slurp(os.path.join(ws, "root.txt")).split()),
                         {"bin", "dev", "etc", "lib", "lib64", "proc", "run", "sbin", "tmp",
                          "usr", "var"} | {d for d in ("lib32", "libx32") if os.path.exists("/" + d)}
                         | {self.data.split("/")[1]})
        self.assertEqual(slurp(os.path.join(ws, "wsroot.txt")).split(), ["task-a"])

    def test_fork_bomb_stops_at_pids_max(self):
        self.alice.CreateSandbox(sandbox_id="bomb", entrypoint=[
            "/usr/bin/python3", "-c",
            "import os, time\n"
            "n = 0\n"
            "try:\n"
            "    for i in range(2000):\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(3); os._exit(0)\n"
            "        n += 1\n"
            "    print('ESCAPED forked', n)\n"
            "except OSError as e:\n"
            "    print('blocked fork after', n, e.errno)\n"])
        sb = self.alice.StartSandbox(sandbox_id="bomb")
        if not sb.limits.pids:
            self.alice.DestroySandbox(sandbox_id="bomb")
            self.skipTest("pids.max is not enforced on this host (no pids controller for us)")
        self.assertEqual(sb.limits.pids_max, 64)
        sb = finished(self.alice, "bomb", timeout=30)
        log = read_log(sb)
        self.assertIn("blocked fork after", log)
        self.assertNotIn("ESCAPED", log)
        n = int(log.split("blocked fork after")[1].split()[0])
        self.assertLess(n, 64)
        self.assertTrue(sb.limits.pids)

    def test_reported_limits_are_the_cgroups(self):
        """GetSandbox.limits says what the host enforces: each limit it
        reports is in the sandbox's cgroup files with the asked-for value."""
        self.alice.CreateSandbox(sandbox_id="limits", vcpu_count=2, mem_size_mib=192,
                                 entrypoint=["sleep", "1000"])
        sb = self.alice.StartSandbox(sandbox_id="limits")
        got = self.alice.GetSandbox(sandbox_id="limits").limits
        self.assertEqual(got, sb.limits)
        files = {}
        for d in cgroup_dirs(instance_id(sb), "limits"):
            for name in ("memory.max", "memory.limit_in_bytes", "cpu.max", "cpu.cfs_quota_us",
                         "pids.max"):
                if os.path.exists(os.path.join(d, name)):
                    files[name] = slurp(os.path.join(d, name)).strip()
        mem = files.get("memory.max") or files.get("memory.limit_in_bytes")
        self.assertEqual(got.memory, mem == str(192 << 20), files)
        cpu = files.get("cpu.max", "").split(" ")[0] or files.get("cpu.cfs_quota_us")
        self.assertEqual(got.cpu, cpu == "200000", files)
        self.assertEqual(got.pids, files.get("pids.max") == "64", files)
        self.assertEqual(got.pids_max, 64 if got.pids else 0)
        self.alice.DestroySandbox(sandbox_id="limits")
        assert_clean(self, sb, pid=sb.pid)

    # ---- honest states -----------------------------------------------------

    def test_missing_entrypoint_is_failed_with_the_reason(self):
        self.alice.CreateSandbox(sandbox_id="noexec", entrypoint=["/nonexistent/agent", "--x"])
        code, msg = self.alice.error("StartSandbox", sandbox_id="noexec")
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("entrypoint[0]", msg)
        self.assertIn("No such file or directory", msg)
        sb = self.alice.GetSandbox(sandbox_id="noexec")
        self.assertEqual(sb.state, S.SANDBOX_STATE_FAILED)
        self.assertIn("/nonexistent/agent", sb.failure_reason)
        self.assertEqual(sb.pid, 0)
        # Not executable: the same.
        self.alice.CreateSandbox(sandbox_id="noexec2", entrypoint=["/etc/passwd"])
        code, msg = self.alice.error("StartSandbox", sandbox_id="noexec2")
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("Permission denied", msg)

    def test_exit_is_seen_promptly(self):
        self.alice.CreateSandbox(sandbox_id="quick", entrypoint=["/bin/sh", "-c", "exit 5"])
        sb = self.alice.StartSandbox(sandbox_id="quick")
        self.assertEqual(sb.state, S.SANDBOX_STATE_RUNNING)
        got = finished(self.alice, "quick", timeout=10)
        self.assertEqual(got.state, S.SANDBOX_STATE_STOPPED)
        self.assertEqual(got.exit_code, 5)


def make_server(data):
    return SandboxServer(["--sandbox-driver", "bwrap"], data_dir=data)


class InstancesTest(unittest.TestCase):
    """Cgroups per harnessd instance; crash and restart."""

    def setUp(self):
        self.dirs = [tempfile.mkdtemp(prefix="hs-it-esc-") for _ in range(2)]
        self.servers = []
        self.markers = []

    def tearDown(self):
        for s in self.servers:
            try:
                s.close()
            except Exception:  # already closed by the test
                pass
        for m in self.markers:  # only on failure: never leave one behind
            for pid in pids_with(m):
                os.kill(pid, signal.SIGKILL)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)

    def server(self, i):
        s = make_server(self.dirs[i])
        self.servers.append(s)
        return s

    def marker(self):
        m = "86396.%06d" % (uuid.uuid4().int % 1000000)
        self.markers.append(m)
        return m

    def test_same_id_in_two_instances(self):
        a, b = self.server(0), self.server(1)
        ma, mb = self.marker(), self.marker()
        a.admin.CreateSandbox(sandbox_id="same", task_id="task-same", entrypoint=counter_script(ma))
        sa = a.admin.StartSandbox(sandbox_id="same")
        wait_until(lambda: read_count(sa) > 2, 10, "A counting")
        self.assertEqual(a.admin.PauseSandbox(sandbox_id="same").state, S.SANDBOX_STATE_PAUSED)
        b.admin.CreateSandbox(sandbox_id="same", task_id="task-same", entrypoint=counter_script(mb))
        sb = b.admin.StartSandbox(sandbox_id="same")
        self.assertEqual(sb.state, S.SANDBOX_STATE_RUNNING)
        wait_until(lambda: read_count(sb) > 3, 10, "B counting while A is paused")
        frozen = read_count(sa)
        time.sleep(0.3)
        self.assertEqual(read_count(sa), frozen)
        self.assertNotEqual(instance_id(sa), instance_id(sb))
        a.admin.DestroySandbox(sandbox_id="same")
        b.admin.DestroySandbox(sandbox_id="same")
        assert_clean(self, sa, pid=sa.pid, marker=ma)
        assert_clean(self, sb, pid=sb.pid, marker=mb)

    def test_kill_9_with_a_paused_sandbox_then_restart(self):
        a = self.server(0)
        m = self.marker()
        a.admin.CreateSandbox(sandbox_id="crash", task_id="task-crash", entrypoint=counter_script(m))
        sb = a.admin.StartSandbox(sandbox_id="crash")
        wait_until(lambda: read_count(sb) > 2, 10, "counting")
        a.admin.PauseSandbox(sandbox_id="crash")
        a.hd.kill()  # SIGKILL: no clean shutdown
        a.hd.channel.close()
        self.servers.remove(a)
        frozen = read_count(sb)
        time.sleep(0.3)
        self.assertEqual(read_count(sb), frozen, "the paused sandbox ran without harnessd")
        self.assertTrue(alive(sb.pid))
        a = self.server(0)
        self.assertTrue(any(l.get("msg") == "re-adopted after restart" for l in a.hd.lines))
        got = a.admin.GetSandbox(sandbox_id="crash")
        self.assertEqual(got.state, S.SANDBOX_STATE_PAUSED)
        self.assertEqual(got.pid, sb.pid)
        self.assertEqual(a.admin.ResumeSandbox(sandbox_id="crash").state, S.SANDBOX_STATE_RUNNING)
        wait_until(lambda: read_count(sb) > frozen + 2, 10, "progress after resume")
        self.assertEqual(a.admin.DestroySandbox(sandbox_id="crash").state,
                         S.SANDBOX_STATE_DESTROYED)
        assert_clean(self, sb, pid=sb.pid, marker=m)

    def test_stale_frozen_cgroup_is_replaced(self):
        a = self.server(0)
        m = self.marker()
        a.admin.CreateSandbox(sandbox_id="probe", entrypoint=["true"])
        inst = instance_id(a.admin.GetSandbox(sandbox_id="probe"))
        v2 = cgroup_dirs(inst, v2_only=True)
        if not v2:
            self.skipTest("no cgroup v2 freezer here")
        # What a crash leaves: the instance's cgroup for this id, frozen,
        # with a process in it.
        stale = os.path.join(v2[0], "stale")
        os.makedirs(stale)
        victim = hstest.subprocess.Popen(["sleep", "1000"])
        try:
            with open(os.path.join(stale, "cgroup.procs"), "w") as f:
                f.write(str(victim.pid))
            with open(os.path.join(stale, "cgroup.freeze"), "w") as f:
                f.write("1")
            a.admin.CreateSandbox(sandbox_id="stale", task_id="task-stale",
                                  entrypoint=counter_script(m))
            sb = a.admin.StartSandbox(sandbox_id="stale")
            self.assertEqual(sb.state, S.SANDBOX_STATE_RUNNING)
            wait_until(lambda: read_count(sb) > 2, 10, "counting in a fresh cgroup")
            victim.wait(timeout=10)  # killed with the stale cgroup
            a.admin.DestroySandbox(sandbox_id="stale")
            assert_clean(self, sb, pid=sb.pid, marker=m)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait()


class RootfsTest(unittest.TestCase):
    """--sandbox-rootfs: the sandbox's /usr, /lib*, /bin, /sbin and /etc files
    come from that directory instead of the host's."""

    def test_rootfs_replaces_the_hosts_system(self):
        tmp = tempfile.mkdtemp(prefix="hs-it-rootfs-")
        srv = None
        try:
            rootfs = os.path.join(tmp, "rootfs")
            os.makedirs(os.path.join(rootfs, "etc"))
            # A stand-in for an unpacked distro: the host's programs (a link:
            # the operator's tree is trusted), merged-/usr links, and an
            # /etc of its own.
            os.symlink("/usr", os.path.join(rootfs, "usr"))
            for d in ("bin", "sbin", "lib", "lib64"):
                if os.path.exists("/" + d):
                    os.symlink("usr/" + d, os.path.join(rootfs, d))
            for f in ("passwd", "group", "ld.so.cache", "nsswitch.conf"):
                if os.path.exists("/etc/" + f):
                    shutil.copy("/etc/" + f, os.path.join(rootfs, "etc", f))
            with open(os.path.join(rootfs, "etc", "os-release"), "w") as f:
                f.write("ID=hs-test-rootfs\n")
            os.chmod(tmp, 0o700)  # harnessd's own: the portal binds it anyway
            srv = SandboxServer(["--sandbox-driver", "bwrap", "--sandbox-rootfs", rootfs],
                                data_dir=os.path.join(tmp, "data"))
            srv.admin.CreateSandbox(sandbox_id="rfs", task_id="task-rfs", entrypoint=[
                "/bin/sh", "-c", "cat /etc/os-release; test -e /etc/hosts || echo no-hosts; "
                "ls /usr/bin/env >/dev/null && echo has-env"])
            srv.admin.StartSandbox(sandbox_id="rfs")
            sb = finished(srv.admin, "rfs")
            log = read_log(sb)
            self.assertEqual(sb.exit_code, 0, log)
            self.assertIn("ID=hs-test-rootfs", log)
            self.assertIn("no-hosts", log)  # the rootfs has none: not the host's
            self.assertIn("has-env", log)
        finally:
            if srv is not None:
                srv.close()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_bad_rootfs_is_refused_at_start(self):
        tmp = tempfile.mkdtemp(prefix="hs-it-rootfs-")
        try:
            p = hstest.Process([hstest.HARNESSD, "--listen", "127.0.0.1:0", "--data-dir", tmp,
                                "--sandbox-driver", "bwrap", "--sandbox-rootfs", tmp]
                               + hstest.SandboxAccount.args(),
                               env={"HARNESS_ADMIN_PASSWORD": "admin-password-1"})
            p.proc.wait(timeout=20 * hstest.SLOW)
            p.stop()
            self.assertEqual(p.proc.returncode, 1)
            self.assertIn("sandbox-rootfs", "\n".join(p.raw_lines))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
