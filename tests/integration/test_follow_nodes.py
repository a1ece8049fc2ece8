"""The client libraries follow harness-node-address between real nodes
(issue 19): two harnessd (node-a, node-b) on one database of the pg
fixture's server, serving TLS with client certificates optional
(--tls-client-auth request) and an API key mapped to an agent's
certificate.

* A caller authenticated only by its client certificate cannot be
  forwarded (its identity cannot be relayed): node-b answers UNAVAILABLE
  with harness-node-address = node-a's address. Through each client
  library (harnessctl, the Python SDK with a server-name override, the
  TypeScript SDK checking the followed host) the same call sent to node-b
  is answered by node-a.
* A burst of 16 concurrent token calls for node-a's sandbox sent to node-b
  all succeed through the Python SDK with retries off: node-b forwards at
  most 2 of one user's calls at once and tells the rest where to go, which
  the SDK follows; through a harness-gateway in front of node-b the same
  burst of REST calls all succeeds too (the gateway's client follows).

No timed assertions."""
import concurrent.futures
import json
import os
import subprocess
import tempfile
import unittest

import grpc

from harness.v1 import auth_pb2, sandbox_pb2

import hstest
import sdkenv
from pki import PKI
from resthelp import Rest
from test_gateway import Gateway

ENV = {"HARNESS_JWT_SECRET": "integration-test-secret-0123456789abcdef",
       "HARNESS_METRICS_LISTEN": "127.0.0.1:0"}
ADMIN = ("admin@example.com", "admin-password-1")
KEY = "harness-node-address"
WAIT = 60 * hstest.SLOW
SAN = "spiffe://harness.test/agent"


def unary(channel, service, method, req, resp_cls, token=None, timeout=30):
    fn = hstest.stub(channel, "/harness.v1.%s/%s" % (service, method), type(req), resp_cls)
    md = [("authorization", "Bearer " + token)] if token else []
    return fn(req, metadata=md, timeout=timeout * hstest.SLOW)


@unittest.skipUnless(hstest.STORE_PG, "needs the pg fixture (HS_TEST_STORE_PG)")
class FollowNodesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.py = sdkenv.python_sdk()  # before any server: a failed install leaves none behind
        cls.node_bin, example = sdkenv.node_sdk()
        cls.app = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(example))))
        cls.nodes = []
        cls.pki = PKI()
        try:
            cls._start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start(cls):
        p = cls.pki
        p.ca("ca")
        p.ca("clients")
        cls.cert, cls.key = p.cert("ca", "server", "harnessd")
        cls.ca = p.path("ca.crt")
        cls.agent = p.cert("clients", "agent", "svc-agent", sans=("URI:" + SAN,), client=True)
        cls.dsn = hstest.pg_create_database(hstest.STORE_PG, "hs_follow_%d" % os.getpid())
        cls.base = ["--store", cls.dsn, "--sandbox-driver", "bwrap", "--tls-cert", cls.cert,
                    "--tls-key", cls.key, "--tls-client-ca", p.path("clients.crt"),
                    "--tls-client-auth", "request", "--tls-peer-ca", cls.ca]
        cls.tls = {"ca": p.read(cls.ca)}
        cls.dir_a = tempfile.TemporaryDirectory(prefix="hs-follow-a-")
        # first start of node-a: the admin makes the agent's API key
        a = cls.node("node-a", [], cls.dir_a.name)
        cls.admin = hstest.login(a.channel, *ADMIN)
        cls.key_id = unary(a.channel, "AuthService", "CreateApiKey",
                           auth_pb2.CreateApiKeyRequest(name="agent", role="user"),
                           auth_pb2.CreateApiKeyResponse, cls.admin).id
        a.close()
        cls.nodes.remove(a)
        ids = ["--tls-client-identities", "san:%s=%s" % (SAN, cls.key_id)]
        cls.a = cls.node("node-a", ids, cls.dir_a.name)
        cls.b = cls.node("node-b", ids)
        cls.admin = hstest.login(cls.a.channel, *ADMIN)
        agent_a = hstest.tls_channel(cls.a.target, cls.tls["ca"], p.read(cls.agent[0]), p.read(cls.agent[1]))
        try:
            # CREATED, never started: no process to leave behind
            unary(agent_a, "SandboxService", "CreateSandbox",
                  sandbox_pb2.CreateSandboxRequest(sandbox_id="sb-agent", task_id="task-agent",
                                                   entrypoint=["/bin/true"]), sandbox_pb2.Sandbox)
        finally:
            agent_a.close()
        unary(cls.a.channel, "SandboxService", "CreateSandbox",
              sandbox_pb2.CreateSandboxRequest(sandbox_id="sb-admin", task_id="task-admin",
                                               entrypoint=["/bin/true"]), sandbox_pb2.Sandbox, cls.admin)

    @classmethod
    def node(cls, name, args, data_dir=None):
        n = hstest.Harnessd(data_dir=data_dir, args=cls.base + ["--node-id", name] + list(args), env=ENV,
                            tls=cls.tls)
        cls.nodes.append(n)
        return n

    @classmethod
    def tearDownClass(cls):
        for n in reversed(cls.nodes):
            n.close()
        bad = [l for n in cls.nodes for l in n.raw_lines if "runtime error" in l or "Sanitizer" in l]
        cls.nodes = []
        if getattr(cls, "dir_a", None) is not None:
            cls.dir_a.cleanup()
        cls.pki.close()
        if bad:
            raise AssertionError("sanitizer reports: %s" % bad[:20])

    def test_certificate_caller_is_told_where_to_go(self):
        """The precondition of the rest: node-b does not forward the
        certificate caller and names node-a."""
        p = self.pki
        ch = hstest.tls_channel(self.b.target, self.tls["ca"], p.read(self.agent[0]), p.read(self.agent[1]))
        self.addCleanup(ch.close)
        with self.assertRaises(grpc.RpcError) as cm:
            unary(ch, "SandboxService", "GetSandbox", sandbox_pb2.GetSandboxRequest(sandbox_id="sb-agent"),
                  sandbox_pb2.Sandbox)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE, cm.exception.details())
        self.assertEqual(dict(cm.exception.trailing_metadata() or ()).get(KEY), self.a.target)

    def test_harnessctl_follows(self):
        with tempfile.TemporaryDirectory(prefix="hs-follow-ctl-") as home:
            env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
            env.update(HOME=home, HARNESS_TOKEN_FILE=os.path.join(home, "token"), HARNESS_SERVER=self.b.target)
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
            r = subprocess.run([hstest.HARNESSCTL, "--tls-ca", self.ca, "--tls-cert", self.agent[0],
                                "--tls-key", self.agent[1], "sandbox", "get", "sb-agent", "-o", "json"],
                               capture_output=True, text=True, env=env, timeout=WAIT, start_new_session=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out.get("sandboxId", out.get("sandbox_id")), "sb-agent")

    def test_python_sdk_follows(self):
        """With a server-name override, kept for the followed node."""
        p = subprocess.run([self.py, "-c", r'''
import os, sys
from harness_sdk import Client
c = Client(os.environ["TARGET"], tls_ca=os.environ["CA"], tls_cert=os.environ["CERT"],
           tls_key=os.environ["KEY"], tls_server_name="harnessd.test", retries=0)
print(c.sandboxes.GetSandbox(sandbox_id="sb-agent", timeout=30).sandbox_id)
c.close()
'''], capture_output=True, text=True, timeout=WAIT,
            env=dict(os.environ, TARGET=self.b.target, CA=self.ca, CERT=self.agent[0], KEY=self.agent[1]))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.strip(), "sb-agent")

    def test_typescript_sdk_follows(self):
        """Without an override: the followed host (127.0.0.1) is checked."""
        p = subprocess.run([self.node_bin, "-e", r'''
const { Client } = require("harness-sdk");
const c = new Client(process.env.TARGET, { tlsCa: process.env.CA, tlsCert: process.env.CERT,
                                           tlsKey: process.env.KEY, retries: 0 });
c.sandboxes.GetSandbox({ sandboxId: "sb-agent" }, { timeoutMs: 30000 }).then(
  (sb) => { console.log(sb.sandboxId); c.close(); },
  (e) => { console.error(e); process.exit(1); });
'''], capture_output=True, text=True, timeout=WAIT, cwd=self.app,
            env=dict(os.environ, TARGET=self.b.target, CA=self.ca, CERT=self.agent[0], KEY=self.agent[1]))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.strip(), "sb-agent")

    def test_burst_of_misrouted_calls_all_succeed(self):
        p = subprocess.run([self.py, "-c", r'''
import os, json
from concurrent.futures import ThreadPoolExecutor
from harness_sdk import Client, HarnessError
c = Client(os.environ["TARGET"], token=os.environ["TOKEN"], tls_ca=os.environ["CA"], retries=0)
def one(i):
    try:
        return c.sandboxes.GetSandbox(sandbox_id="sb-admin", timeout=60).sandbox_id
    except HarnessError as e:
        return str(e)
with ThreadPoolExecutor(16) as ex:
    print(json.dumps(list(ex.map(one, range(16)))))
c.close()
'''], capture_output=True, text=True, timeout=WAIT,
            env=dict(os.environ, TARGET=self.b.target, TOKEN=self.admin, CA=self.ca))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(json.loads(p.stdout.strip().splitlines()[-1]), ["sb-admin"] * 16)

    def test_gateway_burst_follows(self):
        gw = Gateway(self.b.target, args=["--grpc-tls-ca", self.ca, "--threads", "24", "--max-connections-per-client", "32",
                                          "--gateway-secret-file", os.path.join(self.b.data_dir, "gateway.key")])
        try:
            rest = Rest(gw.port, self.admin)

            def one(i):
                r = rest.request("GET", "/v1/sandboxes/sb-admin", timeout=60)
                return r.status, json.loads(r.body).get("sandboxId") if r.status == 200 else r.body
            with concurrent.futures.ThreadPoolExecutor(16) as ex:
                got = list(ex.map(one, range(16)))
        finally:
            gw.stop()
        self.assertEqual(got, [(200, "sb-admin")] * 16)


if __name__ == "__main__":
    unittest.main()
