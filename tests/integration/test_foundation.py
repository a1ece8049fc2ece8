"""Foundation: harnessd's RPC core, grpc.health.v1, server reflection, bad
input, deadlines, graceful drain, flags/env/config, logs, store file."""
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from hsstd import health_pb2
from hsstd import reflection_v1_pb2 as reflection_pb2
from hsstd import reflection_v1alpha_pb2 as reflection_alpha_pb2

import hstest

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HARNESS_SERVICES = ["harness.v1.AuthService", "harness.v1.SandboxService",
                    "harness.v1.CheckpointService", "harness.v1.HealthService"]


def reflect(channel, requests, module=reflection_pb2, version="v1"):
    call = hstest.stub(channel, "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version,
                       module.ServerReflectionRequest, module.ServerReflectionResponse,
                       "stream_stream")
    return list(call(iter(requests), timeout=5))


class HealthTest(hstest.HarnessTestCase):
    def check(self, service):
        c = hstest.stub(self.channel, "/grpc.health.v1.Health/Check",
                        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse)
        return c(health_pb2.HealthCheckRequest(service=service), timeout=5)

    def test_check_overall_and_each_service(self):
        self.assertEqual(self.check("").status, SERVING)
        for s in HARNESS_SERVICES:
            self.assertEqual(self.check(s).status, SERVING, s)

    def test_check_unknown_service_is_not_found(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.check("no.such.Service")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_watch_sends_current_status_at_once(self):
        w = hstest.stub(self.channel, "/grpc.health.v1.Health/Watch",
                        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse, "unary_stream")
        stream = w(health_pb2.HealthCheckRequest(service=""), timeout=5)
        self.assertEqual(next(stream).status, SERVING)
        stream.cancel()

    def test_watch_unknown_service_says_service_unknown(self):
        w = hstest.stub(self.channel, "/grpc.health.v1.Health/Watch",
                        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse, "unary_stream")
        stream = w(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        self.assertEqual(next(stream).status, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        stream.cancel()

    def test_watch_deadline_expires_and_call_is_logged(self):
        w = hstest.stub(self.channel, "/grpc.health.v1.Health/Watch",
                        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse, "unary_stream")
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            # long enough for the first message on a loaded machine
            for m in w(health_pb2.HealthCheckRequest(service=""), timeout=2.0 * hstest.SLOW):
                got.append(m.status)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertEqual(got, [SERVING])
        # harnessd saw the deadline too (its log); no bound on the elapsed time
        self.hd.wait_for(lambda l: l.get("method") == "/grpc.health.v1.Health/Watch"
                         and l.get("code") == "DEADLINE_EXCEEDED", timeout=5)


class ReflectionTest(hstest.HarnessTestCase):
    def test_list_services(self):
        for module, version in ((reflection_pb2, "v1"), (reflection_alpha_pb2, "v1alpha")):
            resp = reflect(self.channel, [module.ServerReflectionRequest(list_services="")], module, version)
            names = {s.name for s in resp[0].list_services_response.service}
            for expected in HARNESS_SERVICES + ["grpc.health.v1.Health",
                                                "grpc.reflection.v1.ServerReflection",
                                                "grpc.reflection.v1alpha.ServerReflection"]:
                self.assertIn(expected, names, version)

    def test_describe_service_by_symbol_includes_dependencies(self):
        resp = reflect(self.channel, [reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="harness.v1.CheckpointService")])[0]
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in resp.file_descriptor_response.file_descriptor_proto]
        self.assertEqual(files[0].name, "harness/v1/checkpoint.proto")
        methods = {m.name for m in files[0].service[0].method}
        self.assertTrue({"CreateCheckpoint", "RestoreCheckpoint", "GetCheckpoint", "GetLatestCheckpoint",
                         "ListCheckpoints", "VerifyConsistency", "DiffCheckpoints",
                         "PruneCheckpoints"} <= methods, methods)
        names = {f.name for f in files}
        for dep in files[0].dependency:
            self.assertIn(dep, names)

    def test_symbols_methods_nested_types_and_filename(self):
        reqs = [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s) for s in (
            "grpc.health.v1.Health.Check", "grpc.health.v1.HealthCheckResponse.ServingStatus",
            "harness.v1.AuthService", "no.such.Symbol")]
        reqs.append(reflection_pb2.ServerReflectionRequest(file_by_filename="harness/v1/auth.proto"))
        reqs.append(reflection_pb2.ServerReflectionRequest(file_by_filename="nope.proto"))
        resp = reflect(self.channel, reqs)
        self.assertEqual(len(resp), len(reqs))
        first = lambda r: descriptor_pb2.FileDescriptorProto.FromString(
            r.file_descriptor_response.file_descriptor_proto[0]).name
        self.assertEqual(first(resp[0]), "grpc/health/v1/health.proto")
        self.assertEqual(first(resp[1]), "grpc/health/v1/health.proto")
        self.assertEqual(first(resp[2]), "harness/v1/auth.proto")
        self.assertEqual(resp[3].error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
        self.assertEqual(first(resp[4]), "harness/v1/auth.proto")
        self.assertEqual(resp[5].error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
        self.assertEqual(resp[2].original_request.file_containing_symbol, "harness.v1.AuthService")

    def test_metrics_endpoint_serves_prometheus_text(self):
        import urllib.request, urllib.error
        self.assertIsNotNone(self.hd.metrics_port)
        url = "http://127.0.0.1:%d" % self.hd.metrics_port
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            self.assertEqual(r.status, 200)
            self.assertTrue(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
            body = r.read().decode()
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                     "process_open_fds", "process_threads", "process_start_time_seconds"):
            self.assertIn("# TYPE %s " % name, body)
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(url + "/other", timeout=5)
        self.assertEqual(cm.exception.code, 404)

    def test_every_kind_of_symbol_and_documentation(self):
        """As grpc-go's server: fields, enums, enum values (both spellings),
        methods resolve; the files carry their comments (grpcurl describe
        shows them) and the options other languages generate from."""
        syms = ("harness.v1.Checkpoint.external_state", "harness.v1.SandboxState",
                "harness.v1.SANDBOX_STATE_RUNNING", "harness.v1.SandboxState.SANDBOX_STATE_RUNNING",
                "harness.v1.HealthService.Heartbeat", "harness.v1.Checkpoint")
        resp = reflect(self.channel, [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s)
                                      for s in syms])
        for sym, r in zip(syms, resp):
            self.assertTrue(r.HasField("file_descriptor_response"), sym)
            fdp = descriptor_pb2.FileDescriptorProto.FromString(
                r.file_descriptor_response.file_descriptor_proto[0])
            self.assertTrue(fdp.name.startswith("harness/v1/"), sym)
            self.assertTrue(fdp.options.go_package and fdp.options.java_package
                            and fdp.options.csharp_namespace, fdp.name)
            comments = [l.leading_comments for l in fdp.source_code_info.location if l.leading_comments]
            self.assertGreater(len(comments), 10, fdp.name)

    def test_call_built_from_reflected_descriptors_only(self):
        """What grpcurl does: no .proto, no stubs, only what reflection says."""
        resp = reflect(self.channel, [reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.health.v1.Health")])[0]
        pool = descriptor_pool.DescriptorPool()
        protos = [descriptor_pb2.FileDescriptorProto.FromString(b)
                  for b in resp.file_descriptor_response.file_descriptor_proto]
        for fdp in reversed(protos):  # dependencies first
            pool.Add(fdp)
        svc = pool.FindServiceByName("grpc.health.v1.Health")
        method = svc.FindMethodByName("Check")
        Req = message_factory.MessageFactory(pool).GetPrototype(method.input_type)
        Resp = message_factory.MessageFactory(pool).GetPrototype(method.output_type)
        call = hstest.stub(self.channel, "/%s/%s" % (svc.full_name, method.name), Req, Resp)
        out = call(Req(service="harness.v1.AuthService"), timeout=5)
        self.assertEqual(out.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_number[out.status].name,
                         "SERVING")


class BadInputTest(hstest.HarnessTestCase):
    server_args = ("--max-message-bytes", "65536")

    def test_malformed_payload_is_invalid_argument(self):
        with self.assertRaises(grpc.RpcError) as cm:
            hstest.raw(self.channel, "/grpc.health.v1.Health/Check")(b"\xff\xff\xff\xff", timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("malformed", cm.exception.details())

    def test_unknown_method_is_unimplemented_at_once(self):
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            hstest.raw(self.channel, "/x.Y/Z")(b"", timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertIn("/x.Y/Z", cm.exception.details())
        self.assertLess(time.monotonic() - t0, 5)  # not at the 10 s deadline

    def test_scaffolded_method_names_itself(self):
        with self.assertRaises(grpc.RpcError) as cm:
            hstest.raw(self.channel, "/harness.v1.SandboxService/ListSnapshots")(b"", timeout=5)
        self.assertIn(cm.exception.code(), (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAUTHENTICATED))
        if cm.exception.code() == grpc.StatusCode.UNIMPLEMENTED:
            self.assertIn("ListSnapshots", cm.exception.details())

    def test_message_over_limit_is_resource_exhausted(self):
        big = health_pb2.HealthCheckRequest(service="x" * 100000).SerializeToString()
        with self.assertRaises(grpc.RpcError) as cm:
            hstest.raw(self.channel, "/grpc.health.v1.Health/Check")(big, timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        # and the server is fine afterwards
        ok = hstest.raw(self.channel, "/grpc.health.v1.Health/Check")(b"", timeout=5)
        self.assertEqual(health_pb2.HealthCheckResponse.FromString(ok).status, SERVING)

    def test_many_bad_calls_do_not_hurt(self):
        call = hstest.raw(self.channel, "/grpc.health.v1.Health/Check")
        for i in range(200):
            with self.assertRaises(grpc.RpcError):
                call(bytes([0x0a, 0x80 | (i % 100)]), timeout=5)
        self.assertEqual(health_pb2.HealthCheckResponse.FromString(call(b"", timeout=5)).status, SERVING)


class LifecycleTest(unittest.TestCase):
    def test_sigterm_drains_watch_in_flight_and_exits_0(self):
        hd = hstest.Harnessd()
        w = hstest.stub(hd.channel, "/grpc.health.v1.Health/Watch",
                        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse, "unary_stream")
        stream = w(health_pb2.HealthCheckRequest(service=""), timeout=30)
        self.assertEqual(next(stream).status, SERVING)
        got, errs = [], []

        def reader():
            try:
                for m in stream:
                    got.append(m.status)
            except grpc.RpcError as e:
                errs.append(e)
        t = threading.Thread(target=reader)
        t.start()
        hd.proc.send_signal(signal.SIGTERM)
        t.join(timeout=10 * hstest.SLOW)
        self.assertFalse(t.is_alive())
        self.assertEqual(got, [NOT_SERVING])  # the change reached the watcher before the end
        self.assertEqual(errs[0].code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(hd.close(), 0)
        drained = [l for l in hd.lines if l.get("msg") == "drained"]
        self.assertEqual(len(drained), 1)
        self.assertFalse(drained[0]["forced"])

    def test_sigint_also_stops_cleanly(self):
        hd = hstest.Harnessd()
        hd.channel.close()
        self.assertEqual(hd.stop(signal.SIGINT), 0)
        hd._tmp.cleanup()

    def test_new_calls_refused_after_shutdown(self):
        hd = hstest.Harnessd()
        target = hd.target
        hd.close()
        with grpc.insecure_channel(target) as ch:
            with self.assertRaises(grpc.RpcError) as cm:
                hstest.raw(ch, "/grpc.health.v1.Health/Check")(b"", timeout=1)
            self.assertIn(cm.exception.code(), (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED))

    def test_store_file_in_data_dir_with_wal(self):
        with tempfile.TemporaryDirectory() as d:
            hd = hstest.Harnessd(data_dir=d)
            hd.close()
            db = os.path.join(d, "harness.db")
            self.assertTrue(os.path.exists(db))
            con = sqlite3.connect(db)
            try:
                self.assertEqual(con.execute("PRAGMA journal_mode").fetchone()[0], "wal")
                self.assertGreaterEqual(con.execute("PRAGMA user_version").fetchone()[0], 1)
            finally:
                con.close()

    def test_rpc_log_lines_are_json_with_method_code_ms_peer(self):
        hd = hstest.Harnessd()
        try:
            hstest.raw(hd.channel, "/grpc.health.v1.Health/Check")(b"", timeout=5)
            line = hd.wait_for(lambda l: l.get("msg") == "rpc finished"
                               and l.get("method") == "/grpc.health.v1.Health/Check")
            self.assertEqual(line["code"], "OK")
            self.assertIsInstance(line["ms"], (int, float))
            self.assertTrue(line["peer"].startswith("ipv4:127.0.0.1:"), line["peer"])
            for key in ("ts", "level", "module"):
                self.assertIn(key, line)
        finally:
            hd.close()
        for raw_line in hd.raw_lines:  # every stderr line is one JSON object
            if raw_line.startswith("{"):
                json.loads(raw_line)

    def test_default_listen_address(self):
        with tempfile.TemporaryDirectory() as d:
            p = hstest.Process([hstest.HARNESSD, "--data-dir", d],
                               ready=lambda l: l.get("msg") == "serving" or l.get("msg") == "cannot start")
            line = next(l for l in p.lines if l.get("msg") in ("serving", "cannot start"))
            code = p.stop()
            if line["msg"] == "cannot start":  # 50051 taken on this machine: say so, don't fail
                self.skipTest("127.0.0.1:50051 is in use here: " + line.get("error", ""))
            self.assertEqual(line["listen"], "127.0.0.1:50051")
            self.assertEqual(line["port"], 50051)
            self.assertEqual(code, 0)


class CommandLineTest(unittest.TestCase):
    def run_hd(self, *args, env=None):
        e = dict(os.environ, HARNESS_METRICS_LISTEN="127.0.0.1:0")  # never the shared :9090
        e.update(env or {})
        return subprocess.run([hstest.HARNESSD] + list(args), capture_output=True, text=True,
                              env=e, timeout=30 * hstest.SLOW)

    def test_help_lists_every_flag_with_env(self):
        r = self.run_hd("--help")
        self.assertEqual(r.returncode, 0)
        for flag, env in (("--listen", "HARNESS_LISTEN"), ("--data-dir", "HARNESS_DATA_DIR"),
                          ("--config", "HARNESS_CONFIG"), ("--workspace-root", "HARNESS_WORKSPACE_ROOT"),
                          ("--auth-backend", "HARNESS_AUTH_BACKEND"),
                          ("--user-service-url", "USER_SERVICE_URL"),
                          ("--sandbox-driver", "HARNESS_SANDBOX_DRIVER"),
                          ("--jwt-secret", "HARNESS_JWT_SECRET")):
            self.assertIn(flag, r.stdout)
            self.assertIn(env, r.stdout)

    def test_version(self):
        r = self.run_hd("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^harnessd \d+\.\d+\.\d+")

    def test_bad_flags_fail_fast_with_a_precise_message(self):
        for args, needle in ((["--no-such-flag"], "unknown option"),
                             (["--log-level", "loud"], "log-level"),
                             (["--shutdown-grace-ms", "-5"], "shutdown-grace-ms"),
                             (["--max-message-bytes", "12abc"], "not an integer"),
                             (["--auth-backend", "ldap"], "auth-backend"),
                             (["--listen"], "needs a value")):
            r = self.run_hd(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(needle, r.stderr, args)

    def test_listen_in_use_fails_clearly(self):
        hd = hstest.Harnessd()
        try:
            with tempfile.TemporaryDirectory() as d:
                r = self.run_hd("--listen", hd.target, "--data-dir", d)
                self.assertEqual(r.returncode, 1)
                self.assertIn("cannot listen", r.stderr)
        finally:
            hd.close()

    def test_config_file_env_and_flag_precedence(self):
        with tempfile.TemporaryDirectory() as d:
            cfg = os.path.join(d, "harness.conf")
            with open(cfg, "w") as f:
                f.write("# comment\nlog-level = debug\nmax-message-bytes = 2048\n")
            # file says debug, env says warn, flag says error: the flag wins
            hd = hstest.Process([hstest.HARNESSD, "--config", cfg, "--listen", "127.0.0.1:0",
                                 "--data-dir", d, "--log-level", "info"],
                                env={"HARNESS_LOG_LEVEL": "warn"},
                                ready=lambda l: l.get("msg") == "serving")
            self.assertEqual(hd.stop(), 0)
            # env beats the file: warn hides the info "serving" line
            p = subprocess.Popen([hstest.HARNESSD, "--config", cfg, "--listen", "127.0.0.1:0",
                                  "--data-dir", d],
                                 env=dict(os.environ, HARNESS_LOG_LEVEL="warn",
                                          HARNESS_METRICS_LISTEN="127.0.0.1:0"),
                                 stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
            time.sleep(1.0 * hstest.SLOW)
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=30)
            self.assertEqual(p.returncode, 0)
            self.assertNotIn(b'"serving"', err)
            with open(cfg, "a") as f:
                f.write("bogus = 1\n")
            r = self.run_hd("--config", cfg, "--data-dir", d)
            self.assertEqual(r.returncode, 2)
            self.assertIn("unknown setting 'bogus'", r.stderr)

    def test_secrets_never_echoed(self):
        r = self.run_hd("--jwt-secret", "s" * 600)
        self.assertEqual(r.returncode, 2)
        self.assertNotIn("s" * 50, r.stderr)


if __name__ == "__main__":
    unittest.main()
