"""Observability (issue 17) against the REAL harnessd and gateway: both
/metrics endpoints scraped after a known mix of calls, counts and labels
checked exactly and the text parsed by Prometheus' own parser (promtool
check metrics, Debian's `prometheus` package); request ids and W3C trace
context from the gateway to harnessd's log lines, the user-service double
and the webhook receiver; liveness and readiness apart, readiness flipping
on a full disk (a small tmpfs) and back while the process lives on."""
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import grpc

import hstest
from harness.v1 import checkpoint_pb2, health_pb2, sandbox_pb2
from hsstd import health_pb2 as std_health
from resthelp import Rest
from test_auth import API_KEY, SECRET, UserServiceDouble
from test_gateway import Gateway

S = hstest.SLOW
H = health_pb2
PROMTOOL = shutil.which("promtool")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def http_get(port, path):
    """(status, body text) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10 * S) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port):
    status, text = http_get(port, "/metrics")
    if status != 200:
        raise AssertionError("/metrics answered %d" % status)
    return text


def samples(text):
    """{(name, frozenset(labels)): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m is None:
            raise AssertionError("not a sample line: %r" % line)
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(s, name, **labels):
    return s.get((name, frozenset(labels.items())))


def promtool_check(test, text):
    if PROMTOOL is None:
        test.skipTest("promtool absent (Debian package prometheus; scripts/deps.sh installs it)")
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    test.assertEqual(p.returncode, 0, "promtool check metrics:\n" + p.stdout + p.stderr)


class Receiver:
    """A webhook receiver on loopback: keeps each request's headers."""

    def __init__(self):
        self.got = []
        cond = self.cond = threading.Condition()
        got = self.got

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with cond:
                    got.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                    cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.srv.server_address[1]
        self.thr = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thr.start()

    def wait(self, pred, timeout):
        # waits for what must happen: generous whatever was asked (a loaded CI)
        deadline = time.monotonic() + max(timeout, 30)
        with self.cond:
            while True:
                for h, b in self.got:
                    if pred(h, b):
                        return h, b
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no webhook matched; got %r" % self.got)
                self.cond.wait(left)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def wait_until(fn, timeout, what):
    # waits for what must happen: generous whatever was asked (a loaded CI)
    deadline = time.monotonic() + max(timeout, 30)
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.1)


class HarnessdMetricsTest(unittest.TestCase):
    """A fresh harnessd; a known mix of task, checkpoint and sandbox calls."""

    @classmethod
    def setUpClass(cls):
        cls.hd = hstest.Harnessd(env={"HARNESS_JWT_SECRET": SECRET})
        token = hstest.login(cls.hd.channel, "admin@example.com", "admin-password-1", timeout=20)
        cls.tasks = hstest.ServiceClient(cls.hd.channel, health_pb2, "HealthService", token, 10 * S)
        cls.ckpt = hstest.ServiceClient(cls.hd.channel, checkpoint_pb2, "CheckpointService", token,
                                        60 * S)
        cls.sb = hstest.ServiceClient(cls.hd.channel, sandbox_pb2, "SandboxService", token, 30 * S)

    @classmethod
    def tearDownClass(cls):
        cls.hd.close()

    def register(self, tid, timeout=60000, attempts=3):
        return self.tasks.RegisterTask(task_id=tid, heartbeat_interval_ms=100,
                                       heartbeat_timeout_ms=timeout,
                                       recovery_policy=H.RecoveryPolicy(initial_backoff_ms=50,
                                                                         max_attempts=attempts))

    def test_domain_metrics_count_exactly(self):
        self.register("m-run")
        self.register("m-done")
        self.register("m-cancel")
        self.tasks.CompleteTask(task_id="m-done", success=True)
        self.tasks.CancelTask(task_id="m-cancel")
        # one TIMEOUT: the recovery finds no checkpoint and gives up (attempts=1)
        self.register("m-stall", timeout=int(300 * S), attempts=1)
        wait_until(lambda: self.tasks.GetTask(task_id="m-stall").state == H.TASK_STATE_FAILED,
                   20 * S, "m-stall FAILED")
        ws = os.path.join(self.hd.data_dir, "workspaces", "m-run")
        os.makedirs(ws, exist_ok=True)
        for i in range(3):
            with open(os.path.join(ws, "f%d.txt" % i), "w") as f:
                f.write("file %d\n" % i)
        c = self.ckpt.CreateCheckpoint(task_id="m-run", step=1, description="one",
                                       workspace="m-run").checkpoint
        self.ckpt.RestoreCheckpoint(task_id="m-run", checkpoint_id=c.checkpoint_id,
                                    workspace="m-run")
        code, _ = self.ckpt.error("RestoreCheckpoint", task_id="m-run",
                                  checkpoint_id="ckpt-9-000000000000", workspace="m-run")
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        # one recovery that succeeds: a checkpoint, silence, the agent acknowledges
        ws2 = os.path.join(self.hd.data_dir, "workspaces", "m-rec")
        os.makedirs(ws2, exist_ok=True)
        with open(os.path.join(ws2, "state.txt"), "w") as f:
            f.write("one\n")
        self.register("m-rec", timeout=int(500 * S))
        self.ckpt.CreateCheckpoint(task_id="m-rec", step=1, description="r", workspace="m-rec")
        wait_until(lambda: self.tasks.GetTask(task_id="m-rec").state == H.TASK_STATE_RECOVERING,
                   20 * S, "m-rec RECOVERING")
        r = wait_until(lambda: (lambda r: r if r.instruction == H.INSTRUCTION_RESUME_FROM_CHECKPOINT
                                else None)(self.tasks.Heartbeat(task_id="m-rec", current_step=0)),
                       20 * S, "told to resume")
        r = self.tasks.Heartbeat(task_id="m-rec", current_step=1,
                                 recovery_generation=r.recovery_generation)
        self.assertEqual(r.state, H.TASK_STATE_RUNNING)
        self.tasks.CompleteTask(task_id="m-rec", success=True)
        self.sb.CreateSandbox(sandbox_id="m-sb", entrypoint=["true"])
        try:
            text = scrape(self.hd.metrics_port)
        finally:
            self.sb.DestroySandbox(sandbox_id="m-sb")
        s = samples(text)
        want_tasks = {"running": 1, "stalled": 0, "recovering": 0, "completed": 2, "failed": 1,
                      "cancelled": 1}
        for state, n in want_tasks.items():
            self.assertEqual(value(s, "harness_tasks", state=state), n, state)
        self.assertEqual(value(s, "harness_task_timeouts_total"), 2)
        self.assertEqual(value(s, "harness_heartbeat_lag_seconds_count"), 2)
        self.assertEqual(value(s, "harness_heartbeat_lag_seconds_bucket", le="+Inf"), 2)
        self.assertGreaterEqual(value(s, "harness_heartbeat_lag_seconds_sum"), 0)
        # m-stall: no checkpoint, gave up; m-rec: started and acknowledged
        self.assertEqual(value(s, "harness_recoveries_total", result="failed"), 1)
        self.assertEqual(value(s, "harness_recoveries_total", result="succeeded"), 1)
        self.assertEqual(value(s, "harness_recoveries_started_total"), 1)
        self.assertEqual(value(s, "harness_checkpoint_create_duration_seconds_count"), 2)
        self.assertEqual(value(s, "harness_checkpoint_files_changed_count"), 2)
        self.assertEqual(value(s, "harness_checkpoint_files_changed_sum"), 4)
        self.assertEqual(value(s, "harness_checkpoint_files_changed_bucket", le="0"), 0)
        self.assertEqual(value(s, "harness_checkpoint_files_changed_bucket", le="1"), 1)
        self.assertEqual(value(s, "harness_checkpoint_files_changed_bucket", le="10"), 2)
        # RestoreCheckpoint and the recovery's restore
        self.assertEqual(value(s, "harness_checkpoint_restore_duration_seconds_count"), 2)
        self.assertEqual(value(s, "harness_checkpoint_errors_total", op="restore"), 1)
        self.assertEqual(value(s, "harness_checkpoint_errors_total", op="create"), 0)
        self.assertEqual(value(s, "harness_sandboxes", driver="bwrap", state="created"), 1)
        for st in ("running", "paused", "stopped", "failed"):
            self.assertEqual(value(s, "harness_sandboxes", driver="bwrap", state=st), 0, st)
        for st in ("created", "running", "paused", "stopped", "failed"):
            self.assertEqual(value(s, "harness_sandboxes", driver="firecracker", state=st), 0, st)
        # only fixed label sets: no task, checkpoint or sandbox id in any label
        for (name, labels) in s:
            for k, v in labels:
                self.assertNotIn("m-", v, "%s{%s=%r}" % (name, k, v))
        promtool_check(self, text)

    def test_request_id_in_initial_metadata_and_logs(self):
        fn = self.hd.channel.unary_unary(
            "/harness.v1.HealthService/GetTask",
            request_serializer=H.GetTaskRequest.SerializeToString,
            response_deserializer=H.Task.FromString)
        md = self.tasks.md + [("x-request-id", "rid-direct-1"), ("traceparent", TRACEPARENT)]
        with self.assertRaises(grpc.RpcError) as cm:
            fn(H.GetTaskRequest(task_id="no-such-task"), metadata=md, timeout=10 * S)
        self.assertEqual(dict(cm.exception.initial_metadata())["x-request-id"], "rid-direct-1")
        # a hostile id is replaced by a new one, never echoed or logged
        evil = "x\",\"admin\":true"
        md = self.tasks.md + [("x-request-id", evil)]
        with self.assertRaises(grpc.RpcError) as cm:
            fn(H.GetTaskRequest(task_id="no-such-task"), metadata=md, timeout=10 * S)
        rid = dict(cm.exception.initial_metadata())["x-request-id"]
        self.assertRegex(rid, r"^[0-9a-f]{32}$")
        self.assertFalse(any(evil in l for l in self.hd.raw_lines))


class RequestIdEndToEndTest(unittest.TestCase):
    """gateway -> harnessd (upstream auth backend, webhook) with one id."""

    @classmethod
    def setUpClass(cls):
        cls.us = UserServiceDouble()
        cls.hook = Receiver()
        cls.hd = hstest.Harnessd(
            args=("--auth-backend", "upstream", "--user-service-url", cls.us.url,
                  "--webhook-url", cls.hook.url),
            env={"USER_SERVICE_API_KEY": API_KEY, "HARNESS_JWT_SECRET": SECRET})
        key = os.path.join(cls.hd.data_dir, "gateway.key")
        cls.gw = Gateway(cls.hd.target, args=["--gateway-secret-file", key])

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.hd.close()
        cls.us.kill()
        cls.hook.close()

    def login(self, rid, traceparent=None):
        h = {"X-Request-Id": rid}
        if traceparent:
            h["traceparent"] = traceparent
        return Rest(self.gw.port).request("POST", "/v1/auth:login",
                                          {"email": "alice@example.com", "password": "password123"},
                                          headers=h)

    def test_request_id_reaches_user_service_logs_and_webhook(self):
        self.us.control(mode="ok")
        r = self.login("obs-login-1", TRACEPARENT)
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.header("X-Request-Id"), "obs-login-1")
        got = self.us.stats()["last_headers"]
        self.assertEqual(got.get("x-request-id"), "obs-login-1")
        self.assertEqual(got.get("traceparent"), TRACEPARENT)
        token = r.json()["accessToken"]

        # harnessd's log lines of a call carry its id and trace id
        self.us.control(mode="down")
        try:
            r2 = self.login("obs-login-2", TRACEPARENT)
        finally:
            self.us.control(mode="ok")
        self.assertGreaterEqual(r2.status, 500)
        line = self.hd.wait_for(lambda l: l.get("request_id") == "obs-login-2", 10 * S)
        self.assertEqual(line["trace_id"], TRACE_ID)
        gw_line = self.gw.wait_for(lambda l: l.get("msg") == "request" and
                                   l.get("request_id") == "obs-login-2", 10 * S)
        self.assertEqual(gw_line["trace_id"], TRACE_ID)

        # the webhook of an event a call caused carries the call's id
        rest = Rest(self.gw.port, token)
        r3 = rest.request("POST", "/v1/tasks", {"taskId": "obs-task-1", "heartbeatIntervalMs": 1000,
                                                "heartbeatTimeoutMs": 60000},
                          headers={"X-Request-Id": "obs-task-1-rid", "X-Requested-With": "t"})
        self.assertEqual(r3.status, 200, r3.text)
        h, body = self.hook.wait(lambda h, b: b.get("task_id") == "obs-task-1" or
                                 b.get("taskId") == "obs-task-1", 10 * S)
        self.assertEqual(h.get("x-request-id"), "obs-task-1-rid")
        self.assertRegex(h.get("traceparent", ""), r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

    def test_bad_ids_are_replaced_not_echoed(self):
        evil = "evil id\"}"
        r = Rest(self.gw.port).request("GET", "/livez", headers={"X-Request-Id": evil,
                                                                 "traceparent": "00-zz-" + evil})
        self.assertEqual(r.status, 200)
        rid = r.header("X-Request-Id")
        self.assertRegex(rid, r"^[0-9a-f]{32}$")
        line = self.gw.wait_for(lambda l: l.get("msg") == "request" and l.get("request_id") == rid,
                                10 * S)
        self.assertRegex(line["trace_id"], r"^[0-9a-f]{32}$")
        self.assertFalse(any("evil id" in l for l in self.gw.raw_lines))


class GatewayMetricsTest(unittest.TestCase):
    """A fresh gateway: requests by route template and status, upstream errors."""

    @classmethod
    def setUpClass(cls):
        cls.hd = hstest.Harnessd()
        key = os.path.join(cls.hd.data_dir, "gateway.key")
        cls.gw = Gateway(cls.hd.target, args=["--gateway-secret-file", key])
        cls.mport = next(l for l in cls.gw.lines if l.get("msg") == "metrics")["port"]

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.hd.close()

    def test_counts_and_labels_exact(self):
        anon = Rest(self.gw.port)
        self.assertEqual(anon.request("GET", "/livez").status, 200)
        for _ in range(2):
            self.assertEqual(anon.request("GET", "/health").status, 200)
            r = anon.request("POST", "/v1/auth:login", {"email": "admin@example.com",
                                                        "password": "wrong-password-1"})
            self.assertEqual(r.status, 401)
        r = anon.request("POST", "/v1/auth:login", {"email": "admin@example.com",
                                                    "password": "admin-password-1"})
        self.assertEqual(r.status, 200)
        admin = Rest(self.gw.port, r.json()["accessToken"])
        self.assertEqual(admin.request("GET", "/v1/tasks/nope").status, 404)
        self.assertEqual(anon.request("GET", "/no/such/route").status, 404)
        # the gateway's own metrics listener answers the probes too
        self.assertEqual(http_get(self.mport, "/livez")[0], 200)
        self.assertEqual(http_get(self.mport, "/readyz")[0], 200)
        text = scrape(self.mport)
        s = samples(text)
        req = "harness_gateway_requests_total"
        want = {("GET /livez", "200"): 1, ("GET /health", "200"): 2,
                ("POST /v1/auth:login", "401"): 2, ("POST /v1/auth:login", "200"): 1,
                ("GET /v1/tasks/{task_id}", "404"): 1, ("unmatched", "404"): 1}
        got = {(dict(l)["route"], dict(l)["code"]): v for (n, l), v in s.items() if n == req}
        self.assertEqual(got, want)
        for (route, _code), n in want.items():
            total = sum(v for (r2, _c), v in want.items() if r2 == route)
            self.assertEqual(value(s, "harness_gateway_request_duration_seconds_count", route=route),
                             total, route)
        up = "harness_gateway_upstream_errors_total"
        self.assertEqual(value(s, up, grpc_code="UNAUTHENTICATED"), 2)
        self.assertEqual(value(s, up, grpc_code="NOT_FOUND"), 1)
        others = [v for (n, l), v in s.items() if n == up and dict(l)["grpc_code"] not in
                  ("UNAUTHENTICATED", "NOT_FOUND")]
        self.assertEqual(len(others), 14)  # codes 1..16 but the two above
        self.assertEqual(sum(others), 0)
        self.assertEqual(value(s, "harness_gateway_requests_in_flight"), 0)
        self.assertGreaterEqual(value(s, "harness_gateway_open_connections"), 0)
        self.assertIsNotNone(value(s, "process_open_fds"))
        promtool_check(self, text)

    def test_readiness_follows_harnessd_liveness_does_not(self):
        hd = hstest.Harnessd()
        gw = Gateway(hd.target)
        try:
            mport = next(l for l in gw.lines if l.get("msg") == "metrics")["port"]
            self.assertEqual(Rest(gw.port).request("GET", "/readyz").status, 200)
            hd.close()
            self.assertEqual(Rest(gw.port).request("GET", "/readyz").status, 503)
            self.assertEqual(Rest(gw.port).request("GET", "/health").status, 503)
            self.assertEqual(http_get(mport, "/readyz")[0], 503)
            self.assertEqual(Rest(gw.port).request("GET", "/livez").status, 200)
            self.assertEqual(http_get(mport, "/livez")[0], 200)
        finally:
            gw.stop()
            if hd.proc.poll() is None:
                hd.close()


@unittest.skipUnless(os.geteuid() == 0, "mounting a tmpfs needs root")
class FullDiskReadinessTest(unittest.TestCase):
    """harnessd's data dir on an 8 MiB tmpfs: filling it makes harnessd
    unready (readiness "" NOT_SERVING, /readyz 503) while liveness stays
    SERVING and the process lives on; freeing space makes it ready again."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hs-obs-")
        self.mnt = os.path.join(self.tmp, "disk")
        os.mkdir(self.mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", self.mnt],
                       check=True)
        self.addCleanup(self.cleanup)
        self.hd = hstest.Harnessd(data_dir=os.path.join(self.mnt, "data"),
                                  args=("--health-listen", "127.0.0.1:0"))

    def cleanup(self):
        if getattr(self, "hd", None) is not None and self.hd.proc.poll() is None:
            self.hd.close(expect_exit=None)
        subprocess.run(["umount", self.mnt], check=False)
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check(self, service):
        with grpc.insecure_channel("127.0.0.1:%d" % self.hd.health_port) as ch:
            fn = ch.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=std_health.HealthCheckRequest.SerializeToString,
                                response_deserializer=std_health.HealthCheckResponse.FromString)
            return fn(std_health.HealthCheckRequest(service=service), timeout=10 * S).status

    def test_full_disk_unready_not_dead(self):
        SERVING = std_health.HealthCheckResponse.SERVING
        pid = self.hd.proc.pid
        self.assertEqual(self.check(""), SERVING)
        self.assertEqual(self.check("liveness"), SERVING)
        self.assertEqual(http_get(self.hd.metrics_port, "/readyz")[0], 200)
        filler = os.path.join(self.mnt, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        wait_until(lambda: http_get(self.hd.metrics_port, "/readyz")[0] == 503, 30 * S,
                   "/readyz 503 on a full disk")
        self.assertNotEqual(self.check(""), SERVING)
        self.assertEqual(self.check("liveness"), SERVING)
        s = samples(scrape(self.hd.metrics_port))
        self.assertEqual(value(s, "harness_ready"), 0)
        self.assertEqual(value(s, "harness_ready_check", check="workspace"), 0)
        self.assertEqual(http_get(self.hd.metrics_port, "/livez")[0], 200)
        os.unlink(filler)
        wait_until(lambda: http_get(self.hd.metrics_port, "/readyz")[0] == 200, 30 * S,
                   "/readyz 200 once space is back")
        self.assertEqual(self.check(""), SERVING)
        s = samples(scrape(self.hd.metrics_port))
        self.assertEqual(value(s, "harness_ready"), 1)
        self.assertEqual(value(s, "harness_ready_check", check="store"), 1)
        self.assertEqual(value(s, "harness_ready_check", check="workspace"), 1)
        self.assertIsNone(self.hd.proc.poll())
        self.assertEqual(self.hd.proc.pid, pid)


if __name__ == "__main__":
    unittest.main()
