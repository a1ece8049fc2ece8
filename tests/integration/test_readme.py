"""Every README command run as written (issue 20).

The README's ```sh blocks are parsed; every command that calls harnessctl,
curl or grpcurl is run against a harnessd and a harness-gateway started
here (the gateway from the README's own gateway command). What is replaced
is only what must differ on a test machine: the addresses (127.0.0.1:50051
and localhost:8080 become the servers' ports; harnessctl finds harnessd
through HARNESS_SERVER), the build directory (build/ becomes this build's),
and the admin's password, which the README reads from $PW or the terminal
(harnessctl login's prompt is answered on a pseudo-terminal).

A block runs in one bash (variables such as $T carry from one command to
the next); each command must exit 0, streams (an SSE curl) must still be
open after a few seconds. grpcurl is not a Debian package: when it is
absent its commands are done with the reflection and health services
through grpcio (what grpcurl would do), and the test says so."""
import fcntl
import json
import os
import pty
import re
import shlex
import shutil
import subprocess
import tempfile
import termios
import threading
import time
import unittest

import grpc

import hstest
from google.protobuf import descriptor_pb2, json_format
from harness.v1 import health_pb2
from hsstd import health_pb2 as std_health_pb2
from hsstd import reflection_v1_pb2 as refl

ADMIN = ("admin@example.com", "admin-password-1")
README = os.path.join(hstest.SOURCE, "README.md")
RUN = re.compile(r"(^|[\s$(])(build/clients/harnessctl|harnessctl|curl|grpcurl)\s")
STREAM_SECONDS = 4 * hstest.SLOW


def blocks():
    """[(first line number, [logical commands])] of the ```sh blocks."""
    out, cur, start, in_sh = [], None, 0, False
    with open(README) as f:
        for n, line in enumerate(f, 1):
            s = line.rstrip("\n")
            if not in_sh and s.strip() == "```sh":
                in_sh, cur, start = True, [], n + 1
                continue
            if in_sh and s.strip() == "```":
                in_sh = False
                cmds, acc = [], ""
                for l in cur:
                    acc += l
                    if acc.endswith("\\"):
                        acc = acc[:-1] + " "
                        continue
                    if acc.strip():
                        cmds.append(acc.strip())
                    acc = ""
                out.append((start, cmds))
                continue
            if in_sh:
                cur.append(s)
    return out


def is_stream(cmd):
    return " -sN " in cmd or ":watch" in cmd


class ReadmeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hd = hstest.Harnessd()
        cls.gw = None
        cls.tmp = tempfile.TemporaryDirectory(prefix="hs-readme-")
        try:
            cls.gw = cls.start_gateway_from_readme()
        except Exception:
            cls.hd.close()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.gw is not None:
            cls.gw.stop()
        cls.hd.close()
        cls.tmp.cleanup()

    @classmethod
    def start_gateway_from_readme(cls):
        line = next(c for _, cmds in blocks() for c in cmds if c.startswith("build/gateway/harness-gateway"))
        argv = shlex.split(line.split("  #")[0])
        argv[0] = hstest.GATEWAY
        sub = {"127.0.0.1:8080": "127.0.0.1:0", "127.0.0.1:9091": "127.0.0.1:0",
               "127.0.0.1:50051": cls.hd.target,
               "harness-data/gateway.key": os.path.join(cls.hd.data_dir, "gateway.key")}
        argv = [sub.get(a, a) for a in argv]
        gw = hstest.Process(argv, env={"NODE_ENV": "", "HARNESS_ENV": "", "ALLOWED_ORIGINS": ""},
                            ready=lambda l: l.get("msg") == "listening")
        gw.port = next(l for l in gw.lines if l.get("msg") == "listening")["port"]
        gw.metrics_port = next((l["port"] for l in gw.lines if l.get("msg") == "metrics"), None)
        return gw

    def substitute(self, cmd):
        cmd = cmd.replace("build/", hstest.BUILD.rstrip("/") + "/")
        cmd = cmd.replace("localhost:8080", "127.0.0.1:%d" % self.gw.port)
        cmd = cmd.replace("127.0.0.1:8080", "127.0.0.1:%d" % self.gw.port)
        cmd = cmd.replace("127.0.0.1:9090", "127.0.0.1:%d" % self.hd.metrics_port)
        if self.gw.metrics_port is not None:
            cmd = cmd.replace("127.0.0.1:9091", "127.0.0.1:%d" % self.gw.metrics_port)
        return cmd.replace("127.0.0.1:50051", self.hd.target)

    # -- grpcurl, done through grpcio when grpcurl is absent ----------------

    def grpcurl(self, cmd):
        args = shlex.split(cmd.split("  #")[0])[1:]
        data = None
        if "-d" in args:
            i = args.index("-d")
            data = args[i + 1]
            del args[i:i + 2]
        args = [a for a in args if a != "-plaintext"]
        target = self.hd.target  # the README's address, substituted
        verb = args[1:]
        ch = grpc.insecure_channel(target)
        try:
            reflect = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                       request_serializer=refl.ServerReflectionRequest.SerializeToString,
                                       response_deserializer=refl.ServerReflectionResponse.FromString)
            if verb == ["list"]:
                resp = next(reflect(iter([refl.ServerReflectionRequest(list_services="")]), timeout=30))
                names = [s.name for s in resp.list_services_response.service]
                for svc in ("harness.v1.CheckpointService", "harness.v1.HealthService", "grpc.health.v1.Health"):
                    self.assertIn(svc, names)
                return "\n".join(names)
            if verb and verb[0] == "describe":
                sym = verb[1]
                resp = next(reflect(iter([refl.ServerReflectionRequest(file_containing_symbol=sym)]), timeout=30))
                self.assertFalse(resp.HasField("error_response"), resp.error_response.error_message)
                fds = [descriptor_pb2.FileDescriptorProto.FromString(b)
                       for b in resp.file_descriptor_response.file_descriptor_proto]
                fd = next(f for f in fds if any(sym == "%s.%s" % (f.package, s.name) for s in f.service))
                comments = [l.leading_comments for l in fd.source_code_info.location if l.leading_comments]
                self.assertTrue(comments, "describe %s shows no documentation" % sym)
                return fd.name
            if verb and "/" in verb[0]:
                svc, method = verb[0].split("/")
                self.assertEqual(svc, "grpc.health.v1.Health")
                fn = ch.unary_unary("/%s/%s" % (svc, method),
                                    request_serializer=std_health_pb2.HealthCheckRequest.SerializeToString,
                                    response_deserializer=std_health_pb2.HealthCheckResponse.FromString)
                req = json_format.Parse(data or "{}", std_health_pb2.HealthCheckRequest())
                resp = fn(req, timeout=30)
                self.assertEqual(resp.status, std_health_pb2.HealthCheckResponse.SERVING)
                return json_format.MessageToJson(resp)
            self.fail("grpcurl form the test does not know: %s" % cmd)
        finally:
            ch.close()

    # -- a block in bash, on a pseudo-terminal for harnessctl's prompts -------

    def run_block(self, start, cmds, env):
        work = tempfile.mkdtemp(dir=self.tmp.name)
        results = os.path.join(work, "results")
        script = ["set -a", "exec 3>%s" % shlex.quote(results)]
        for i, c in enumerate(cmds):
            c = self.substitute(c)
            out, err = os.path.join(work, "out.%d" % i), os.path.join(work, "err.%d" % i)
            if is_stream(c):
                body = "timeout -s INT %d bash -c %s" % (STREAM_SECONDS, shlex.quote(c))
            else:
                body = c
            script.append("{ %s\n} >%s 2>%s; echo \"%d $?\" >&3" % (body, out, err, i))
        path = os.path.join(work, "block.sh")
        with open(path, "w") as f:
            f.write("\n".join(script) + "\n")
        master, slave = pty.openpty()

        def ctty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        p = subprocess.Popen(["bash", path], stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=env, cwd=work, preexec_fn=ctty)
        os.close(slave)
        seen = []

        def answer():  # harnessctl login's "Password: " on /dev/tty
            buf = b""
            while True:
                try:
                    chunk = os.read(master, 1024)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                seen.append(chunk)
                if buf.rstrip().endswith(b"Password:"):
                    # after harnessctl turned echo off (its TCSAFLUSH drops earlier input)
                    for _ in range(500):
                        if not termios.tcgetattr(master)[3] & termios.ECHO:
                            break
                        time.sleep(0.01)
                    os.write(master, env["PW"].encode() + b"\n")
                    buf = b""
        t = threading.Thread(target=answer, daemon=True)
        t.start()
        try:
            p.wait(timeout=300 * hstest.SLOW)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            t.join(timeout=5)
            os.close(master)
        rcs = {}
        with open(results) as f:
            for line in f:
                i, rc = line.split()
                rcs[int(i)] = int(rc)
        outs = []
        for i, c in enumerate(cmds):
            with open(os.path.join(work, "out.%d" % i)) as f:
                o = f.read()
            with open(os.path.join(work, "err.%d" % i)) as f:
                e = f.read()
            want = 124 if is_stream(c) else 0
            self.assertEqual(rcs.get(i), want, "README.md block at line %d: %s\nexit %s\nstdout:%s\nstderr:%s" % (
                start, c, rcs.get(i), o[-2000:], e[-2000:]))
            outs.append((c, o, e))
        return outs

    def test_every_command_as_written(self):
        home = os.path.join(self.tmp.name, "home")
        os.makedirs(home)
        env = dict(os.environ, HOME=home, HARNESS_SERVER=self.hd.target, PW=ADMIN[1])
        for k in ("HARNESS_TOKEN", "HARNESS_TOKEN_FILE", "HARNESS_ADMIN_EMAIL", "HARNESS_ADMIN_PASSWORD"):
            env.pop(k, None)
        # one running task, so the lists and the event stream have something to show
        tok = hstest.login(self.hd.channel, *ADMIN)
        hstest.ServiceClient(self.hd.channel, health_pb2, "HealthService", tok).RegisterTask(
            task_id="readme-t0", heartbeat_interval_ms=1000, heartbeat_timeout_ms=3600000)
        have_grpcurl = shutil.which("grpcurl") is not None
        ran = []
        for start, cmds in blocks():
            todo = [c for c in cmds if RUN.search(" " + c + " ")]
            if not todo:
                continue
            if not have_grpcurl and all(c.startswith("grpcurl") for c in todo):
                print("note: grpcurl is not installed; README.md line %d's grpcurl commands are done through "
                      "grpcio reflection and health calls" % start)
                for c in todo:
                    self.grpcurl(c)
                    ran.append(c)
                continue
            self.assertFalse(any(c.startswith("grpcurl") for c in todo) and not have_grpcurl,
                             "a block mixes grpcurl with other commands: %s" % todo)
            for c, out, err in self.run_block(start, todo, env):
                ran.append(c)
                if ":9090/" in c or ":9091/" in c:  # Prometheus text and probes, not JSON
                    self.assertTrue(out.strip(), "%s printed nothing" % c)
                    continue
                if "curl" in c and not is_stream(c) and not c.startswith("T="):
                    body = json.loads(out)
                    self.assertNotIn("code", body, out)  # not a google.rpc.Status
                    self.assertIn("readme-t0", out)
                if is_stream(c):
                    self.assertIn("readme-t0", out)
                if "task list" in c:
                    self.assertIn("readme-t0", out)
        # what the README promises is all there: login, curl with $T, the demo, completion
        joined = "\n".join(ran)
        for must in ("harnessctl login", "auth:login", "tasks:watch", "harnessctl demo", "completion bash",
                     "grpcurl -plaintext"):
            self.assertIn(must, joined)
