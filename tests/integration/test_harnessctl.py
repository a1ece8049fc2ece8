"""harnessctl against a real harnessd on loopback: every verb, help at every
level, exit codes (usage 2, not found 3, auth 4, unavailable 5), the token
cache (mode 0600), -o json, task/health watch ended by SIGINT, and the demo.

Services that harnessd does not implement yet answer UNIMPLEMENTED: the
test asserts harnessctl reports that (exit 1, the method named) and skips
with a message naming the method."""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import unittest

import hstest

ADMIN = ("admin@example.com", "admin-password-1")
CTL = hstest.HARNESSCTL
TIMEOUT = 60 * hstest.SLOW

GROUPS = {
    "user": ["create", "get"],
    "sandbox": ["create", "start", "get", "list", "pause", "resume", "snapshot", "restore", "destroy",
                "snapshots"],
    "checkpoint": ["create", "list", "get", "latest", "restore", "verify", "diff", "prune"],
    "task": ["register", "heartbeat", "get", "list", "watch", "complete", "recover", "cancel"],
    "health": ["check", "watch"],
}
TOP = ["login", "refresh", "logout", "whoami", "demo"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class CtlTestCase(hstest.HarnessTestCase):
    """One harnessd per class; each test gets its own HOME and token file."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="hs-ctl-")
        self.home = self._tmp.name
        self.token_file = os.path.join(self.home, "cfg", "harness", "token")
        self.env = dict(os.environ)
        for k in ("HARNESS_TOKEN", "HARNESS_SERVER", "HARNESS_TOKEN_FILE", "HARNESS_ADMIN_EMAIL",
                  "HARNESS_ADMIN_PASSWORD"):
            self.env.pop(k, None)
        self.env.update({"HOME": self.home, "HARNESS_SERVER": self.hd.target,
                         "HARNESS_TOKEN_FILE": self.token_file})
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1")

    def tearDown(self):
        self._tmp.cleanup()

    def ctl(self, *args, input=None, env=None, timeout=TIMEOUT):
        e = dict(self.env)
        if env:
            e.update(env)
        # A new session: no controlling terminal, so nothing can prompt on /dev/tty.
        return subprocess.run([CTL] + list(args), input=input, capture_output=True, text=True, env=e,
                              timeout=timeout, start_new_session=True)

    def ok(self, *args, **kw):
        p = self.ctl(*args, **kw)
        self.skip_if_unimplemented(p, args)
        self.assertEqual(p.returncode, 0, "harnessctl %s: exit %d\nstdout:%s\nstderr:%s" % (
            " ".join(args), p.returncode, p.stdout, p.stderr))
        self.assertNotIn("Sanitizer", p.stderr)
        return p

    def code(self, want, *args, **kw):
        p = self.ctl(*args, **kw)
        self.skip_if_unimplemented(p, args)
        self.assertEqual(p.returncode, want, "harnessctl %s: exit %d (want %d)\nstdout:%s\nstderr:%s" % (
            " ".join(args), p.returncode, want, p.stdout, p.stderr))
        self.assertNotIn("Sanitizer", p.stderr)
        return p

    def json(self, *args, **kw):
        p = self.ok(*(list(args) + ["-o", "json"]), **kw)
        return json.loads(p.stdout)

    def skip_if_unimplemented(self, p, args):
        if "UNIMPLEMENTED" in p.stderr:
            self.assertEqual(p.returncode, 1, p.stderr)
            m = re.search(r"(harness\.v1\.\w+/\w+|grpc\.[\w.]+/\w+): UNIMPLEMENTED", p.stderr)
            self.assertIsNotNone(m, "UNIMPLEMENTED without the method named: " + p.stderr)
            self.skipTest("%s is not implemented by harnessd yet (harnessctl %s)" % (m.group(1), " ".join(args)))

    def cache(self):
        with open(self.token_file) as f:
            return json.load(f)

    def login(self, who=ADMIN):
        self.ok("login", "--email", who[0], "--password", who[1])


class HelpAndUsageTest(CtlTestCase):
    def test_help_at_every_level(self):
        p = self.ok("--help")
        self.assertIn("Exit codes", p.stdout)
        for word in ("usage error", "not found", "UNAUTHENTICATED", "UNAVAILABLE"):
            self.assertIn(word, p.stdout)
        for group, verbs in GROUPS.items():
            p = self.ok(group, "--help")
            for v in verbs:
                self.assertIn(v, p.stdout)
            for v in verbs:
                p = self.ok(group, v, "--help")
                self.assertIn("Usage: harnessctl %s %s" % (group, v), p.stdout)
                self.assertIn("Examples:", p.stdout)
        for top in TOP:
            p = self.ok(top, "--help")
            self.assertIn("Usage: harnessctl " + top, p.stdout)
            self.assertIn("Examples:", p.stdout)

    def test_verb_help_lists_request_fields_as_flags(self):
        p = self.ok("sandbox", "create", "--help")
        for flag in ("--entrypoint STRING", "--labels KEY=VALUE", "--driver", "--json"):
            self.assertIn(flag, p.stdout)
        p = self.ok("task", "register", "-h")
        self.assertIn("--recovery-policy.max-attempts INT", p.stdout)
        p = self.ok("sandbox", "list", "--help")
        self.assertIn("created|running|paused", p.stdout)

    def test_usage_errors_exit_2(self):
        cases = [
            [],
            ["frobnicate"],
            ["sandbox"],
            ["sandbox", "frob"],
            ["sandbox", "get"],  # missing SANDBOX_ID
            ["sandbox", "get", "a", "b"],  # extra argument
            ["sandbox", "list", "--bogus", "1"],
            ["sandbox", "list", "--state", "sideways"],
            ["sandbox", "list", "--page-size"],  # missing value
            ["task", "register", "t1", "--total-steps", "many"],
            ["task", "complete", "t1", "--success=maybe"],
            ["checkpoint", "create", "t1", "--external-state", "{not json"],
            ["task", "register", "t1", "--json", "[1,2]"],
            ["task", "register", "t1", "--labels", "novalue"],
            ["-o", "xml", "whoami"],
            ["--timeout", "soon", "whoami"],
            ["--nope", "whoami"],
            ["demo", "--bogus"],
        ]
        for args in cases:
            p = self.ctl(*args)
            self.assertEqual(p.returncode, 2, "%s: exit %d\n%s" % (args, p.returncode, p.stderr))
            self.assertTrue(p.stderr.strip(), args)
        p = self.ctl("sandbox", "list", "--state", "sideways")
        self.assertIn("one of: created|running", p.stderr)
        p = self.ctl("task", "register", "t1", "--total-steps", "many")
        self.assertIn("total_steps", p.stderr)

    def test_version(self):
        p = self.ok("--version")
        self.assertTrue(p.stdout.startswith("harnessctl "))


class AuthCommandsTest(CtlTestCase):
    def test_login_writes_token_cache_0600(self):
        p = self.ok("login", "--email", ADMIN[0], "--password", ADMIN[1])
        self.assertIn("admin@example.com", p.stdout)
        self.assertIn("Token saved to " + self.token_file, p.stderr)
        st = os.stat(self.token_file)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.token_file)).st_mode), 0o700)
        cache = self.cache()
        self.assertEqual(cache["access_token"].count("."), 2)
        self.assertTrue(cache["refresh_token"])
        self.assertGreater(cache["expires_at"], time.time())
        # no temporary files left next to it
        self.assertEqual(os.listdir(os.path.dirname(self.token_file)), ["token"])
        # the refresh token never reaches stdout
        self.assertNotIn(cache["refresh_token"], p.stdout)

    def test_login_default_cache_path_under_home(self):
        env = {"HARNESS_TOKEN_FILE": ""}
        self.ok("login", "--email", ADMIN[0], "--password", ADMIN[1], env=env)
        path = os.path.join(self.home, ".config", "harness", "token")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.ok("whoami", env=env)

    def test_login_password_stdin_and_json(self):
        p = self.ok("login", "--email", ADMIN[0], "--password-stdin", "-o", "json", input=ADMIN[1] + "\n")
        r = json.loads(p.stdout)
        self.assertEqual(r["user"]["email"], ADMIN[0])
        self.assertEqual(r["accessToken"].count("."), 2)
        self.assertEqual(r.get("refreshToken", ""), "")

    def test_login_without_password_and_tty_is_usage_error(self):
        p = self.ctl("login", "--email", ADMIN[0], input="")
        self.assertEqual(p.returncode, 2, p.stderr)

    def test_bad_credentials_exit_4(self):
        p = self.code(4, "login", "--email", ADMIN[0], "--password", "wrong-password")
        self.assertIn("UNAUTHENTICATED", p.stderr)
        self.assertFalse(os.path.exists(self.token_file))

    def test_whoami_table_and_json(self):
        self.login()
        p = self.ok("whoami")
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "EMAIL", "NAME", "ROLE", "CREATED"])
        self.assertIn("admin@example.com", lines[1])
        r = self.json("whoami")
        self.assertEqual(r["email"], ADMIN[0])
        self.assertEqual(r["role"], "admin")
        self.assertRegex(r["createdAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

    def test_token_sources_and_auth_exit_codes(self):
        p = self.code(4, "whoami")
        self.assertIn("harnessctl login", p.stderr)
        self.login()
        tok = self.cache()["access_token"]
        self.code(4, "--token", "garbage", "whoami")  # flag beats the cache
        self.code(4, "whoami", env={"HARNESS_TOKEN": "garbage"})  # env beats the cache
        os.unlink(self.token_file)
        self.ok("whoami", env={"HARNESS_TOKEN": tok})
        self.ok("whoami", "--token", tok)

    def test_refresh_rotates_and_old_token_is_refused(self):
        self.login()
        old = self.cache()["refresh_token"]
        self.ok("refresh")
        new = self.cache()
        self.assertNotEqual(new["refresh_token"], old)
        self.assertEqual(stat.S_IMODE(os.stat(self.token_file).st_mode), 0o600)
        self.code(4, "refresh", "--refresh-token", old)

    def test_refresh_without_cache_is_auth_error(self):
        self.code(4, "refresh")

    def test_expired_cached_token_is_refreshed_automatically(self):
        self.login()
        cache = self.cache()
        cache["expires_at"] = int(time.time()) - 10
        with open(self.token_file, "w") as f:
            json.dump(cache, f)
        self.ok("whoami")
        after = self.cache()
        self.assertNotEqual(after["refresh_token"], cache["refresh_token"])
        self.assertGreater(after["expires_at"], time.time())

    def test_logout_revokes_and_removes_cache(self):
        self.login()
        old = self.cache()["refresh_token"]
        p = self.ok("logout")
        self.assertIn("Logged out", p.stdout)
        self.assertFalse(os.path.exists(self.token_file))
        self.code(4, "refresh", "--refresh-token", old)
        p = self.ok("logout")  # idempotent
        self.assertIn("Not logged in", p.stderr)

    def test_user_create_and_get(self):
        self.login()
        email = "ctl-user-%d@example.com" % os.getpid()
        u = self.json("user", "create", "--email", email, "--password", "user-pass-1", "--name", "Ctl User")
        self.assertEqual(u["role"], "user")
        g = self.json("user", "get", u["id"])
        self.assertEqual(g["email"], email)
        p = self.ok("user", "get", u["id"])
        self.assertRegex(p.stdout, r"email\s+%s" % re.escape(email))
        self.code(3, "user", "get", "no-such-user")
        self.code(1, "user", "create", "--email", "not-an-email", "--password", "user-pass-1")
        # a plain user may not read the admin
        admin_id = self.json("whoami")["id"]
        self.login((email, "user-pass-1"))
        self.assertEqual(self.json("whoami")["email"], email)
        self.code(4, "user", "get", admin_id)
        self.code(4, "user", "create", "--email", "x" + email, "--password", "user-pass-1")

    def test_server_down_exit_5(self):
        port = free_port()
        p = self.code(5, "--server", "127.0.0.1:%d" % port, "--timeout", "3", "whoami")
        self.assertIn("UNAVAILABLE", p.stderr)
        p = self.code(5, "health", env={"HARNESS_SERVER": "127.0.0.1:%d" % port})
        self.code(5, "login", "--email", ADMIN[0], "--password", ADMIN[1], "--server", "127.0.0.1:%d" % port)


class StdHealthTest(CtlTestCase):
    def test_health_check(self):
        p = self.ok("health")
        self.assertEqual(p.stdout.split(), ["STATUS", "SERVING"])
        self.assertEqual(self.json("health", "check")["status"], "SERVING")
        self.ok("health", "--service", "harness.v1.AuthService")
        p = self.code(3, "health", "--service", "no.such.Service")
        self.assertIn("NOT_FOUND", p.stderr)

    def test_health_watch_streams_until_sigint(self):
        lines = self.stream_until_sigint(["health", "watch", "-o", "json"], wait_lines=1)
        self.assertEqual(json.loads(lines[0])["status"], "SERVING")

    def stream_until_sigint(self, args, wait_lines, action=None):
        return run_stream(self, args, wait_lines, action)


def run_stream(tc, args, wait_lines, action=None, timeout=30.0, ready_lines=0):
    """Starts harnessctl args, waits for ready_lines stdout lines (the
    stream is open then), runs action, waits for wait_lines stdout lines,
    sends SIGINT and asserts a clean exit 0. Returns the lines."""
    proc = subprocess.Popen([CTL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=tc.env, start_new_session=True)
    lines, cond = [], threading.Condition()

    def reader():
        for line in proc.stdout:
            with cond:
                lines.append(line.rstrip("\n"))
                cond.notify_all()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + timeout * hstest.SLOW
        with cond:
            while len(lines) < ready_lines and time.monotonic() < deadline and proc.poll() is None:
                cond.wait(0.1)
        if action is not None:
            action()
        with cond:
            while len(lines) < wait_lines and time.monotonic() < deadline and proc.poll() is None:
                cond.wait(0.1)
        if proc.poll() is not None:
            err = proc.stderr.read()
            tc.skip_if_unimplemented(subprocess.CompletedProcess(args, proc.returncode, "", err), args)
            tc.fail("stream ended early: exit %s: %s" % (proc.returncode, err))
        tc.assertGreaterEqual(len(lines), wait_lines, "got %r" % lines)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10 * hstest.SLOW)
        err = proc.stderr.read()
        tc.assertEqual(rc, 0, err)
        tc.assertNotIn("AddressSanitizer", err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        t.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    return lines


class SandboxCommandsTest(CtlTestCase):
    server_args = ("--sandbox-driver", "bwrap")

    def test_sandbox_lifecycle(self):
        self.login()
        sb = "ctl-sb-%d" % os.getpid()
        r = self.json("sandbox", "create", sb, "--driver", "bwrap", "--entrypoint", "sleep", "--entrypoint", "30",
                      "--label", "suite=ctl", "--task-id", "ctl-sb-task")
        self.assertEqual(r["sandboxId"], sb)
        self.assertEqual(r["state"], "SANDBOX_STATE_CREATED")
        self.assertEqual(r["entrypoint"], ["sleep", "30"])
        self.assertEqual(r["labels"], {"suite": "ctl"})
        try:
            p = self.ok("sandbox", "start", sb)
            self.assertIn("RUNNING", p.stdout)
            p = self.ok("sandbox", "get", sb)
            self.assertRegex(p.stdout, r"sandbox_id\s+%s" % sb)
            self.assertRegex(p.stdout, r"state\s+RUNNING")
            p = self.ok("sandbox", "list")
            self.assertEqual(p.stdout.splitlines()[0].split()[:3], ["ID", "STATE", "DRIVER"])
            self.assertIn(sb, p.stdout)
            ids = [s["sandboxId"] for s in self.json("sandbox", "list", "--label-selector", "suite=ctl")["sandboxes"]]
            self.assertIn(sb, ids)
            self.assertEqual(self.json("sandbox", "list", "--state", "paused")["sandboxes"], [])
            self.assertIn("PAUSED", self.ok("sandbox", "pause", sb).stdout)
            self.assertIn("RUNNING", self.ok("sandbox", "resume", sb).stdout)
            # VM snapshots are firecracker-only: FAILED_PRECONDITION -> exit 1
            p = self.code(1, "sandbox", "snapshot", sb)
            self.assertIn("FAILED_PRECONDITION", p.stderr)
            self.code(1, "sandbox", "restore", sb)
            self.assertEqual(self.json("sandbox", "snapshots", sb).get("snapshots", []), [])
            self.code(1, "sandbox", "create", sb, "--driver", "bwrap", "--entrypoint", "true")  # exists
        finally:
            p = self.ok("sandbox", "destroy", sb, "--grace-period-ms", "500")
        self.assertIn("DESTROYED", p.stdout)
        self.assertIn("DESTROYED", self.ok("sandbox", "destroy", sb).stdout)  # idempotent
        self.code(3, "sandbox", "get", "no-such-sandbox")
        self.code(3, "sandbox", "start", "no-such-sandbox")

    def test_sandbox_needs_auth(self):
        self.code(4, "sandbox", "list")

    def test_create_from_json_with_flag_override(self):
        self.login()
        r = self.json("sandbox", "create", "--json",
                      '{"driver":"bwrap","entrypoint":["sleep","5"],"labels":{"a":"1"},"sandboxId":"ctl-js-%d"}'
                      % os.getpid(), "--label", "b=2")
        try:
            self.assertEqual(r["labels"], {"a": "1", "b": "2"})
            self.assertEqual(r["entrypoint"], ["sleep", "5"])
        finally:
            self.ok("sandbox", "destroy", r["sandboxId"])


class CheckpointCommandsTest(CtlTestCase):
    def workspace(self, task):
        path = os.path.join(self.hd.data_dir, "workspaces", task)
        os.makedirs(path, exist_ok=True)
        return path

    def test_checkpoint_verbs(self):
        self.login()
        task = "ctl-ck-%d" % os.getpid()
        ws = self.workspace(task)
        with open(os.path.join(ws, "a.txt"), "w") as f:
            f.write("one\n")
        r = self.json("checkpoint", "create", task, "--step", "1", "--description", "first",
                      "--external-state", '{"pr": 42, "issues": ["A-1"], "nested": {"ok": true}}')
        cp1 = r["checkpoint"]["checkpointId"]
        self.assertEqual(r["checkpoint"]["step"], "1")
        self.assertEqual(r["checkpoint"]["externalState"], {"pr": 42, "issues": ["A-1"], "nested": {"ok": True}})
        self.assertFalse(r["unchanged"])
        p = self.ok("checkpoint", "create", task, "--step", "1")
        self.assertIn("true", p.stdout)  # UNCHANGED column: recorded, no file changed
        cp_same = p.stdout.splitlines()[1].split()[0]
        with open(os.path.join(ws, "b.txt"), "w") as f:
            f.write("two\n")
        with open(os.path.join(ws, "a.txt"), "w") as f:
            f.write("one, edited\n")
        cp2 = self.json("checkpoint", "create", task, "--step", "2", "--description", "second")["checkpoint"]["checkpointId"]

        p = self.ok("checkpoint", "list", task)
        self.assertEqual(p.stdout.splitlines()[0].split()[:3], ["ID", "TASK", "STEP"])
        ids = [c["checkpointId"] for c in self.json("checkpoint", "list", task)["checkpoints"]]
        self.assertEqual(ids[:3], [cp2, cp_same, cp1])
        self.assertEqual(self.json("checkpoint", "get", task, cp1)["description"], "first")
        p = self.ok("checkpoint", "get", task, cp1)
        self.assertRegex(p.stdout, r"description\s+first")
        self.assertEqual(self.json("checkpoint", "latest", task)["checkpointId"], cp2)

        d = self.json("checkpoint", "diff", task, cp1, cp2)
        files = {f["path"]: f["status"] for f in d["files"]}
        self.assertEqual(files, {"a.txt": "FILE_STATUS_MODIFIED", "b.txt": "FILE_STATUS_ADDED"})
        p = self.ok("checkpoint", "diff", task)
        self.assertIn("ADDED", p.stdout)
        self.assertIn("b.txt", p.stdout)

        self.assertTrue(self.json("checkpoint", "verify", task)["consistent"])
        os.unlink(os.path.join(ws, "b.txt"))
        with open(os.path.join(ws, "c.txt"), "w") as f:
            f.write("stray\n")
        v = self.json("checkpoint", "verify", task)
        self.assertFalse(v["consistent"])
        self.assertEqual(v["added"], ["c.txt"])
        self.assertEqual(v["deleted"], ["b.txt"])

        p = self.ok("checkpoint", "restore", task, cp1)
        self.assertIn(cp1, p.stdout)
        self.assertEqual(sorted(os.listdir(ws)), ["a.txt"])
        with open(os.path.join(ws, "a.txt")) as f:
            self.assertEqual(f.read(), "one\n")
        self.assertTrue(self.json("checkpoint", "verify", task, cp1)["consistent"])

        pr = self.json("checkpoint", "prune", task, "--keep-last", "1", "--dry-run")
        self.assertEqual(pr["prunedCount"], 2)
        self.assertEqual(len(self.json("checkpoint", "list", task)["checkpoints"]), 3)
        pr = self.json("checkpoint", "prune", task, "--keep-last", "1")
        self.assertEqual(pr["keptCount"], 1)

        self.code(3, "checkpoint", "get", task, "ckpt-1-000000000000")
        self.code(3, "checkpoint", "latest", "ctl-no-such-task")
        self.code(1, "checkpoint", "prune", task, "--keep-last", "0")  # INVALID_ARGUMENT
        self.code(1, "checkpoint", "create", "../escape")

    def test_checkpoint_needs_auth(self):
        self.code(4, "checkpoint", "latest", "t1")


class TaskCommandsTest(CtlTestCase):
    def test_task_verbs(self):
        self.login()
        task = "ctl-task-%d" % os.getpid()
        r = self.json("task", "register", task, "--total-steps", "5", "--heartbeat-interval-ms", "1000",
                      "--heartbeat-timeout-ms", "60000", "--label", "suite=ctl",
                      "--recovery-policy.max-attempts", "2")
        self.assertEqual(r["state"], "TASK_STATE_RUNNING")
        self.assertEqual(r["recoveryPolicy"]["maxAttempts"], 2)
        p = self.ok("task", "heartbeat", task, "--current-step", "2", "--cpu-usage", "12.5")
        self.assertIn("CONTINUE", p.stdout)
        t = self.json("task", "get", task)
        self.assertEqual(t["currentStep"], "2")
        self.assertEqual(t["cpuUsage"], 12.5)
        p = self.ok("task", "get", task)
        self.assertRegex(p.stdout, r"current_step\s+2")
        p = self.ok("task", "list")
        self.assertIn(task, p.stdout)
        self.assertIn(task, [x["taskId"] for x in self.json("task", "list", "--state", "running")["tasks"]])

        # watch: events arrive as they happen; SIGINT ends it with exit 0
        # (--send-initial: its first line says the stream is open, so the
        # event cannot happen before the watch, whatever the load)
        lines = run_stream(self, ["task", "watch", task, "--send-initial", "-o", "json"], wait_lines=2,
                           ready_lines=1,
                           action=lambda: self.ok("task", "complete", task, "--success", "--message", "done"))
        self.assertEqual(json.loads(lines[0])["type"], "TASK_EVENT_TYPE_INITIAL_STATE")
        ev = json.loads(lines[1])
        self.assertEqual(ev["taskId"], task)
        self.assertEqual(ev["type"], "TASK_EVENT_TYPE_COMPLETED")
        self.assertEqual(self.json("task", "get", task)["state"], "TASK_STATE_COMPLETED")
        self.code(1, "task", "complete", task, "--success")  # already terminal: FAILED_PRECONDITION

        t2 = task + "-b"
        self.ok("task", "register", t2, "--heartbeat-timeout-ms", "60000")
        lines = run_stream(self, ["task", "watch", t2, "--send-initial"], wait_lines=3, ready_lines=2,
                           action=lambda: self.ok("task", "cancel", t2, "--reason", "not needed"))
        self.assertEqual(lines[0].split()[:3], ["TIME", "EVENT", "TASK"])
        self.assertIn("INITIAL_STATE", lines[1])
        self.assertIn("CANCELLED", lines[2])
        self.assertEqual(self.json("task", "get", t2)["state"], "TASK_STATE_CANCELLED")

        # recover: no checkpoint -> the attempt fails, but the verb itself answers
        t3 = task + "-c"
        self.ok("task", "register", t3, "--heartbeat-timeout-ms", "60000")
        p = self.ctl("task", "recover", t3, "--reason", "manual")
        self.skip_if_unimplemented(p, ["task", "recover"])
        self.assertIn(p.returncode, (0, 1), p.stderr)
        if p.returncode == 1:
            self.assertIn("FAILED_PRECONDITION", p.stderr)

        # --json with JSON names; the positional id and flags override it
        t4 = task + "-d"
        r = self.json("task", "register", t4, "--json",
                      '{"taskId":"ignored","heartbeatTimeoutMs":"60000","labels":{"a":"1"}}', "--label", "b=2")
        self.assertEqual((r["taskId"], r["heartbeatTimeoutMs"], r["labels"]), (t4, "60000", {"a": "1", "b": "2"}))
        self.code(2, "task", "register", t4, "--json", '{"taskId":"x","task_id":"y"}')

        self.code(3, "task", "get", "ctl-no-such-task")
        self.code(3, "task", "heartbeat", "ctl-no-such-task")
        self.code(1, "task", "register", "bad/id")

    def test_task_needs_auth(self):
        self.code(4, "task", "list")


class WatchReconnectTest(unittest.TestCase):
    """task watch across a kill -9 and restart of harnessd on the same
    address: it reconnects with after_event_id, shows the events that
    happened while it was away, and never shows an event twice."""

    def test_watch_survives_kill_9_without_duplicates(self):
        tmp = tempfile.TemporaryDirectory(prefix="hs-ctl-watch-")
        data = os.path.join(tmp.name, "data")
        env = dict(os.environ)
        for k in ("HARNESS_TOKEN", "HARNESS_SERVER", "HARNESS_TOKEN_FILE"):
            env.pop(k, None)
        port = free_port()
        target = "127.0.0.1:%d" % port
        env.update({"HOME": tmp.name, "HARNESS_SERVER": target,
                    "HARNESS_TOKEN_FILE": os.path.join(tmp.name, "token")})
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        args = ("--listen", target)
        hd = hstest.Harnessd(data_dir=data, args=args)
        watch = None
        try:
            def ctl(*a):
                p = subprocess.run([CTL] + list(a), capture_output=True, text=True, env=env,
                                   timeout=TIMEOUT, start_new_session=True)
                self.assertEqual(p.returncode, 0, "harnessctl %s: %s" % (" ".join(a), p.stderr))
                return p
            ctl("login", "--email", ADMIN[0], "--password", ADMIN[1])
            ctl("task", "register", "w1", "--heartbeat-interval-ms", "100", "--heartbeat-timeout-ms", "60000")
            watch = subprocess.Popen([CTL, "task", "watch", "--send-initial", "-o", "json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=True)
            lines, cond = [], threading.Condition()

            def reader():
                for line in watch.stdout:
                    with cond:
                        lines.append(json.loads(line))
                        cond.notify_all()
            threading.Thread(target=reader, daemon=True).start()

            def wait_for(pred, what):
                deadline = time.monotonic() + 30 * hstest.SLOW
                with cond:
                    while not any(pred(e) for e in lines):
                        self.assertLess(time.monotonic(), deadline, "%s not seen: %s" % (what, lines))
                        cond.wait(0.1)
            wait_for(lambda e: e["type"] == "TASK_EVENT_TYPE_INITIAL_STATE", "the initial state of w1")
            ctl("task", "register", "w2", "--heartbeat-interval-ms", "100", "--heartbeat-timeout-ms", "60000")
            wait_for(lambda e: e["taskId"] == "w2", "w2 REGISTERED")
            hd.kill()  # kill -9: the stream breaks mid-flight
            hd = hstest.Harnessd(data_dir=data, args=args)
            # While the watcher reconnects: events it must still see, once.
            ctl("task", "cancel", "w1", "--reason", "while away")
            ctl("task", "register", "w3", "--heartbeat-interval-ms", "100", "--heartbeat-timeout-ms", "60000")
            ctl("task", "complete", "w2", "--success")
            wait_for(lambda e: e["taskId"] == "w2" and e["type"] == "TASK_EVENT_TYPE_COMPLETED", "w2 COMPLETED")
            watch.send_signal(signal.SIGINT)
            watch.wait(timeout=10 * hstest.SLOW)
            self.assertEqual(watch.returncode, 0, watch.stderr.read())
            self.assertEqual(lines[0]["type"], "TASK_EVENT_TYPE_INITIAL_STATE")
            self.assertEqual(int(lines[0]["eventId"]), 1)  # w1's REGISTERED: the newest then
            ids = [int(e["eventId"]) for e in lines[1:]]
            self.assertEqual(ids, list(range(2, len(ids) + 2)), "an event missed or shown twice")
            seen = [(e["taskId"], e["type"].replace("TASK_EVENT_TYPE_", "")) for e in lines[1:]]
            self.assertEqual(seen, [("w2", "REGISTERED"), ("w1", "CANCELLED"), ("w3", "REGISTERED"),
                                    ("w2", "COMPLETED")])
        finally:
            if watch is not None and watch.poll() is None:
                watch.kill()
                watch.wait()
            if watch is not None:
                watch.stdout.close()
                watch.stderr.close()
            hd.close()
            tmp.cleanup()


class DemoTest(CtlTestCase):
    server_args = ("--sandbox-driver", "bwrap")

    def test_demo_recovers(self):
        env = {"HARNESS_ADMIN_EMAIL": ADMIN[0], "HARNESS_ADMIN_PASSWORD": ADMIN[1]}
        # the story's 1.5 s heartbeat timeout; more when sanitizers slow everything down
        p = self.ctl("demo", "--heartbeat-timeout-ms", str(int(1500 * max(1.0, hstest.SLOW / 2))), env=env,
                     timeout=180 * hstest.SLOW)
        self.skip_if_unimplemented(p, ["demo"])
        self.assertEqual(p.returncode, 0, "demo failed\nstdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr))
        out = p.stdout
        for what in ("logged in as admin@example.com", "event TIMEOUT", "event RECOVERY_STARTED",
                     "RESUME_FROM_CHECKPOINT", "event RECOVERED", "workspace matches checkpoint",
                     "sandbox", "destroyed"):
            self.assertIn(what, out)
        # order: TIMEOUT -> RECOVERY_STARTED -> RECOVERED
        self.assertLess(out.index("event TIMEOUT"), out.index("event RECOVERY_STARTED"))
        self.assertLess(out.index("event RECOVERY_STARTED"), out.index("event RECOVERED"))
        m = re.search(r"resumes at step (\d+) of 4", out)
        self.assertIsNotNone(m, out)
        self.assertEqual(m.group(1), "4")  # step 3 was checkpointed last

    def test_demo_bad_credentials_exit_4(self):
        p = self.ctl("demo", "--email", ADMIN[0], "--password", "wrong-password", timeout=60)
        self.assertEqual(p.returncode, 4, p.stdout + p.stderr)

    def test_demo_server_down_exit_5(self):
        p = self.ctl("demo", "--server", "127.0.0.1:%d" % free_port(), "--email", ADMIN[0], "--password",
                     ADMIN[1], timeout=60)
        self.assertEqual(p.returncode, 5, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
