"""harnessd over TLS and mutual TLS, with certificates made here with the
openssl CLI: plaintext and wrongly-trusting clients refused, client
certificates required and verified, a client certificate acting as an API
key, the server certificate rotated the way cert-manager and kubelet do it
while a client keeps calling, the plaintext health-only listener for
kubelet probes, and harnessctl and harness-gateway dialling over TLS."""
import os
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

from harness.v1 import auth_pb2, health_pb2
from hsstd import health_pb2 as std_health_pb2
import hstest
from pki import PKI, SERVER_NAME, SecretVolume

ADMIN = ("admin@example.com", "admin-password-1")
T = 30 * hstest.SLOW


def auth(channel, name):
    req, resp = hstest.method_classes(auth_pb2, "AuthService", name)
    return hstest.stub(channel, "/harness.v1.AuthService/" + name, req, resp), req


def whoami(channel, token=None, timeout=T):
    fn, req = auth(channel, "WhoAmI")
    md = [("authorization", "Bearer " + token)] if token else []
    return fn(req(), metadata=md, timeout=timeout)


def fails(fn, *args, **kw):
    """The status code of a call that must fail."""
    try:
        fn(*args, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()
    raise AssertionError("the call succeeded")


def health_check(channel, timeout=T):
    fn = hstest.stub(channel, "/grpc.health.v1.Health/Check", std_health_pb2.HealthCheckRequest,
                     std_health_pb2.HealthCheckResponse)
    return fn(std_health_pb2.HealthCheckRequest(), timeout=timeout)


class ServerTLSTest(unittest.TestCase):
    """TLS without client certificates; the health-only listener."""

    @classmethod
    def setUpClass(cls):
        cls.pki = PKI()
        cls.pki.ca("ca")
        cls.pki.ca("other")
        cls.cert, cls.key = cls.pki.cert("ca", "server", "harnessd")
        cls.ca = cls.pki.read(cls.pki.path("ca.crt"))
        cls.hd = hstest.Harnessd(args=("--tls-cert", cls.cert, "--tls-key", cls.key,
                                       "--health-listen", "127.0.0.1:0"), tls={"ca": cls.ca})
        cls.token = hstest.login(cls.hd.channel, *ADMIN)

    @classmethod
    def tearDownClass(cls):
        cls.hd.close()
        cls.pki.close()

    def test_tls_client_with_the_ca_is_served(self):
        self.assertEqual(whoami(self.hd.channel, self.token).email, ADMIN[0])
        self.assertTrue(next(l for l in self.hd.lines if l.get("msg") == "serving")["tls"])

    def test_plaintext_client_is_refused(self):
        ch = grpc.insecure_channel(self.hd.target)
        code, _ = fails(whoami, ch, self.token, timeout=10 * hstest.SLOW)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        # nor does a plaintext Login get through (the password never crosses in clear)
        fn, req = auth(ch, "Login")
        code, _ = fails(fn, req(email=ADMIN[0], password=ADMIN[1]), timeout=10 * hstest.SLOW)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        ch.close()

    def test_client_trusting_another_ca_is_refused(self):
        ch = hstest.tls_channel(self.hd.target, self.pki.read(self.pki.path("other.crt")))
        code, _ = fails(whoami, ch, self.token, timeout=10 * hstest.SLOW)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        ch.close()

    def test_server_name_is_checked(self):
        ch = hstest.tls_channel(self.hd.target, self.ca, server_name=SERVER_NAME)
        self.assertEqual(whoami(ch, self.token).email, ADMIN[0])
        ch.close()
        ch = hstest.tls_channel(self.hd.target, self.ca, server_name="elsewhere.test")
        code, _ = fails(whoami, ch, self.token, timeout=10 * hstest.SLOW)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        ch.close()

    def test_health_listener_is_plaintext_and_health_only(self):
        self.assertIsNotNone(self.hd.health_port)
        ch = grpc.insecure_channel("127.0.0.1:%d" % self.hd.health_port)
        self.assertEqual(health_check(ch).status, std_health_pb2.HealthCheckResponse.SERVING)
        # nothing else is served there: not AuthService, not reflection
        fn, req = auth(ch, "Login")
        code, _ = fails(fn, req(email=ADMIN[0], password=ADMIN[1]), timeout=T)
        self.assertEqual(code, grpc.StatusCode.UNIMPLEMENTED)
        refl = hstest.raw(ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                          "stream_stream")
        code, _ = fails(lambda: list(refl(iter([b""]), timeout=T)))
        self.assertEqual(code, grpc.StatusCode.UNIMPLEMENTED)
        ch.close()
        # and the TLS port answers health checks too
        self.assertEqual(health_check(self.hd.channel).status, std_health_pb2.HealthCheckResponse.SERVING)

    def test_bad_tls_configuration_fails_fast(self):
        other_key = self.pki.cert("other", "mismatch", "x")[1]
        cases = [
            (("--tls-cert", self.cert), "tls-key"),
            (("--tls-cert", self.cert, "--tls-key", other_key), "does not match"),
            (("--tls-cert", "/nonexistent.crt", "--tls-key", self.key), "/nonexistent.crt"),
            (("--tls-cert", self.cert, "--tls-key", self.key, "--tls-client-ca", self.key),
             "tls client ca"),
            (("--tls-client-ca", self.pki.path("ca.crt")), "tls-client-ca"),
            (("--tls-cert", self.cert, "--tls-key", self.key, "--tls-client-auth", "optional"),
             "tls-client-auth"),
            (("--tls-cert", self.cert, "--tls-key", self.key, "--tls-client-identities",
              "cn:x=hsk_0000000000000000"), "tls-client-identities"),
        ]
        for args, want in cases:
            with tempfile.TemporaryDirectory(prefix="hs-tls-bad-") as d:
                r = subprocess.run([hstest.HARNESSD, "--listen", "127.0.0.1:0", "--data-dir", d,
                                    "--metrics-listen", ""] + hstest.SandboxAccount.args() + list(args),
                                   capture_output=True, text=True, timeout=T)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn(want, r.stderr, args)


class RotationTest(unittest.TestCase):
    """cert-manager renews the Secret; kubelet swaps the volume's ..data
    link. New handshakes get the new certificate, open connections keep
    working, and a half-updated set never replaces a good one."""

    def test_server_certificate_rotation_while_a_client_keeps_calling(self):
        pki = PKI()
        self.addCleanup(pki.close)
        pki.ca("ca1")
        pki.ca("ca2")
        c1, k1 = pki.cert("ca1", "s1", "harnessd")
        c2, k2 = pki.cert("ca2", "s2", "harnessd")
        ca1, ca2 = pki.read(pki.path("ca1.crt")), pki.read(pki.path("ca2.crt"))
        vol = SecretVolume(os.path.join(pki.dir, "secret"))
        vol.update({"tls.crt": pki.read(c1), "tls.key": pki.read(k1)})
        hd = hstest.Harnessd(args=("--tls-cert", vol.path("tls.crt"), "--tls-key", vol.path("tls.key")),
                             tls={"ca": ca1})
        self.addCleanup(hd.close)
        token = hstest.login(hd.channel, *ADMIN)

        stop = threading.Event()
        calls, errors = [0], []

        def keep_calling():
            while not stop.is_set():
                try:
                    whoami(hd.channel, token)
                    calls[0] += 1
                except grpc.RpcError as e:
                    errors.append((e.code(), e.details()))
                time.sleep(0.01)

        t = threading.Thread(target=keep_calling, daemon=True)
        t.start()
        self.addCleanup(lambda: (stop.set(), t.join(timeout=30)))

        def wait_calls(more):
            target = calls[0] + more
            deadline = time.monotonic() + T
            while calls[0] < target and not errors and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertGreaterEqual(calls[0], target, errors)

        wait_calls(5)
        # Half a rotation: the new certificate, the old key. Not usable: the
        # old certificate keeps serving new connections.
        vol.update({"tls.crt": pki.read(c2), "tls.key": pki.read(k1)})
        ch = hstest.tls_channel(hd.target, ca1)
        self.assertEqual(whoami(ch, token).email, ADMIN[0])
        ch.close()
        hd.wait_for(lambda l: "not usable" in l.get("msg", ""), timeout=T)

        # The whole rotation.
        vol.update({"tls.crt": pki.read(c2), "tls.key": pki.read(k2)})
        ch2 = hstest.tls_channel(hd.target, ca2)
        self.assertEqual(whoami(ch2, token).email, ADMIN[0])  # a new handshake: the new cert
        ch2.close()
        hd.wait_for(lambda l: l.get("msg") == "tls: certificate reloaded", timeout=T)
        ch1 = hstest.tls_channel(hd.target, ca1)
        code, _ = fails(whoami, ch1, token, timeout=10 * hstest.SLOW)  # the old cert is gone
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        ch1.close()
        # Meanwhile the first client's channel never failed and still works.
        wait_calls(5)
        stop.set()
        t.join(timeout=T)
        self.assertEqual(errors, [])
        self.assertEqual(whoami(hd.channel, token).email, ADMIN[0])


class MutualTLSTest(unittest.TestCase):
    """--tls-client-ca with require: no certificate, or one from another
    CA, never gets in; a mapped certificate acts as its API key."""

    @classmethod
    def setUpClass(cls):
        cls.pki = PKI()
        p = cls.pki
        p.ca("ca")
        p.ca("clients")
        p.ca("rogue")
        cls.cert, cls.key = p.cert("ca", "server", "harnessd")
        cls.ca = p.read(p.path("ca.crt"))
        cls.operator = tuple(p.read(x) for x in p.cert("clients", "operator", "operator", client=True))
        cls.agent_files = p.cert("clients", "agent", "svc-agent", sans=("URI:spiffe://harness.test/agent",),
                                 client=True)
        cls.agent = tuple(p.read(x) for x in cls.agent_files)
        cls.short = tuple(p.read(x) for x in p.cert("clients", "short", "short-lived", client=True))
        cls.rogue = tuple(p.read(x) for x in p.cert("rogue", "rogue-agent", "svc-agent",
                                                     sans=("URI:spiffe://harness.test/agent",),
                                                     client=True))
        cls.data = tempfile.TemporaryDirectory(prefix="hs-mtls-")
        base = ["--tls-cert", cls.cert, "--tls-key", cls.key, "--tls-client-ca", p.path("clients.crt"),
                "--tls-client-auth", "require"]
        # First start: the admin (with a client certificate) makes the
        # agent's API key; then restart with the certificate mapped to it.
        hd = hstest.Harnessd(data_dir=cls.data.name, args=base,
                             tls={"ca": cls.ca, "cert": cls.operator[0], "key": cls.operator[1]})
        cls.admin_token = hstest.login(hd.channel, *ADMIN)
        fn, req = auth(hd.channel, "CreateApiKey")
        r = fn(req(name="agent", role="user",
                   allowed_methods=["harness.v1.HealthService/*", "harness.v1.AuthService/WhoAmI"]),
               metadata=[("authorization", "Bearer " + cls.admin_token)], timeout=T)
        cls.key_id = r.id
        cls.short_id = fn(req(name="short-lived", role="user"),
                          metadata=[("authorization", "Bearer " + cls.admin_token)], timeout=T).id
        hd.close()
        cls.args = base + ["--tls-client-identities", "san:spiffe://harness.test/agent=%s,"
                           "cn:short-lived=%s" % (cls.key_id, cls.short_id)]
        cls.hd = hstest.Harnessd(data_dir=cls.data.name, args=cls.args,
                                 tls={"ca": cls.ca, "cert": cls.operator[0], "key": cls.operator[1]})
        cls.admin_token = hstest.login(cls.hd.channel, *ADMIN)

    @classmethod
    def tearDownClass(cls):
        cls.hd.close()
        cls.data.cleanup()
        cls.pki.close()

    def channel(self, client=None):
        ch = hstest.tls_channel(self.hd.target, self.ca, *(client or (None, None)))
        self.addCleanup(ch.close)
        return ch

    def test_no_client_certificate_is_refused(self):
        code, _ = fails(whoami, self.channel(), self.admin_token, timeout=10 * hstest.SLOW)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)

    def test_certificate_of_an_unknown_ca_is_refused(self):
        # same subject and SAN as the agent's, signed by a CA harnessd does not trust
        code, _ = fails(whoami, self.channel(self.rogue), timeout=10 * hstest.SLOW)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        code, _ = fails(whoami, self.channel(self.rogue), self.admin_token, timeout=10 * hstest.SLOW)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)

    def test_verified_certificate_with_a_token(self):
        self.assertEqual(whoami(self.channel(self.operator), self.admin_token).email, ADMIN[0])

    def test_unmapped_certificate_without_a_token_is_unauthenticated(self):
        code, details = fails(whoami, self.channel(self.operator))
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
        self.assertIn("maps to no identity", details)

    def test_mapped_certificate_acts_as_its_api_key(self):
        ch = self.channel(self.agent)
        me = whoami(ch)
        self.assertEqual(me.id, self.key_id)
        self.assertEqual(me.role, "user")
        hs = hstest.ServiceClient(ch, health_pb2, "HealthService")
        task = "mtls-agent-task"
        hs.RegisterTask(task_id=task, total_steps=2, heartbeat_interval_ms=60000,
                        heartbeat_timeout_ms=120000)
        self.assertEqual(hs.GetTask(task_id=task).task_id, task)
        # the key's allowed methods hold for the certificate too
        fn, req = auth(ch, "ListApiKeys")
        code, details = fails(fn, req(), timeout=T)
        self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("harness.v1.AuthService/ListApiKeys", details)
        # a bearer token wins over the certificate
        self.assertEqual(whoami(ch, self.admin_token).email, ADMIN[0])

    def test_harnessctl_over_mutual_tls(self):
        with tempfile.TemporaryDirectory(prefix="hs-ctl-tls-") as home:
            env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
            env.update(HOME=home, HARNESS_TOKEN_FILE=os.path.join(home, "token"),
                       HARNESS_SERVER=self.hd.target)
            ca = self.pki.path("ca.crt")
            run = lambda *a, **kw: subprocess.run([hstest.HARNESSCTL] + list(a), capture_output=True,
                                                  text=True, env=dict(env, **kw), timeout=T)
            # the agent's certificate alone: harnessctl acts as the key
            r = run("--tls-ca", ca, "--tls-cert", self.agent_files[0], "--tls-key", self.agent_files[1],
                    "whoami", "-o", "json")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(self.key_id, r.stdout)
            # the same through the environment, checking the name in the certificate
            r = run("whoami", "-o", "json", HARNESS_TLS_CA=ca, HARNESS_TLS_CERT=self.agent_files[0],
                    HARNESS_TLS_KEY=self.agent_files[1], HARNESS_TLS_SERVER_NAME=SERVER_NAME)
            self.assertEqual(r.returncode, 0, r.stderr)
            # without a client certificate: refused in the handshake (exit 5, a TLS hint)
            r = run("--tls-ca", ca, "whoami")
            self.assertEqual(r.returncode, 5, r.stderr)
            # plaintext: refused
            r = run("whoami")
            self.assertEqual(r.returncode, 5, r.stderr)
            self.assertIn("--tls-ca", r.stderr)
            # the wrong name expected in the server certificate
            r = run("--tls-ca", ca, "--tls-cert", self.agent_files[0], "--tls-key", self.agent_files[1],
                    "--tls-server-name", "elsewhere.test", "whoami")
            self.assertEqual(r.returncode, 5, r.stderr)
            self.assertIn("TLS", r.stderr)

    def test_gateway_dials_over_mutual_tls(self):
        from test_gateway import Gateway
        op = self.pki.path("operator.crt"), self.pki.path("operator.key")
        gw = Gateway(self.hd.target, args=("--grpc-tls-ca", self.pki.path("ca.crt"),
                                           "--grpc-tls-cert", op[0], "--grpc-tls-key", op[1],
                                           "--grpc-tls-server-name", SERVER_NAME))
        self.addCleanup(gw.stop)
        self.assertTrue(next(l for l in gw.lines if l.get("msg") == "listening")["grpc_tls"])
        r = gw.request("GET", "/health")
        self.assertEqual(r.status, 200, r.body)
        r = gw.login(*ADMIN)
        self.assertEqual(r.status, 200, r.body)
        # a gateway without the client certificate cannot reach harnessd
        gw2 = Gateway(self.hd.target, args=("--grpc-tls-ca", self.pki.path("ca.crt")))
        self.addCleanup(gw2.stop)
        self.assertEqual(gw2.request("GET", "/health").status, 503)
        self.assertEqual(gw2.login(*ADMIN).status, 503)

    def test_revoked_key_stops_its_certificate_at_once(self):
        ch = self.channel(self.short)
        self.assertEqual(whoami(ch).id, self.short_id)
        # A stream the certificate opened ends too (it was never rechecked:
        # only streams with a bearer were; red team, docs/security.md).
        hs = hstest.ServiceClient(ch, health_pb2, "HealthService")
        hs.RegisterTask(task_id="short-lived-task", heartbeat_interval_ms=60000,
                        heartbeat_timeout_ms=120000)
        watch = hstest.stub(ch, "/harness.v1.HealthService/WatchTasks", health_pb2.WatchTasksRequest,
                            health_pb2.TaskEvent, "unary_stream")
        stream = watch(health_pb2.WatchTasksRequest(task_id="short-lived-task", send_initial=True),
                       timeout=T)
        self.assertEqual(next(stream).task_id, "short-lived-task")
        fn, req = auth(self.hd.channel, "RevokeApiKey")
        fn(req(id=self.short_id), metadata=[("authorization", "Bearer " + self.admin_token)], timeout=T)
        code, _ = fails(whoami, ch)
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
        hstest.ServiceClient(self.hd.channel, health_pb2, "HealthService", self.admin_token).CancelTask(
            task_id="short-lived-task", reason="after the revocation")
        with self.assertRaises(grpc.RpcError) as cm:
            ev = next(stream)
            self.fail("the revoked certificate's stream got %s" % ev)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED, cm.exception.details())


class RequestModeTest(unittest.TestCase):
    """--tls-client-auth request: a certificate is optional, but one that
    is presented must be valid."""

    def test_request_mode(self):
        pki = PKI()
        self.addCleanup(pki.close)
        pki.ca("ca")
        pki.ca("clients")
        pki.ca("rogue")
        cert, key = pki.cert("ca", "server", "harnessd")
        ca = pki.read(pki.path("ca.crt"))
        hd = hstest.Harnessd(args=("--tls-cert", cert, "--tls-key", key, "--tls-client-ca",
                                   pki.path("clients.crt"), "--tls-client-auth", "request"),
                             tls={"ca": ca})
        self.addCleanup(hd.close)
        token = hstest.login(hd.channel, *ADMIN)
        self.assertEqual(whoami(hd.channel, token).email, ADMIN[0])  # no client certificate
        good = tuple(pki.read(x) for x in pki.cert("clients", "c", "c", client=True))
        ch = hstest.tls_channel(hd.target, ca, *good)
        self.assertEqual(whoami(ch, token).email, ADMIN[0])
        ch.close()
        rogue = tuple(pki.read(x) for x in pki.cert("rogue", "r", "c", client=True))
        ch = hstest.tls_channel(hd.target, ca, *rogue)
        code, _ = fails(whoami, ch, token, timeout=10 * hstest.SLOW)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        ch.close()


if __name__ == "__main__":
    unittest.main()
