"""The client libraries follow harness-node-address (issue 19), against fake
nodes: grpcio servers on loopback that answer every call either
UNAVAILABLE with a chosen trailing metadata "harness-node-address" (as a
harnessd that did not forward) or with a message naming themselves.

For each client library (the C client through harnessctl, the Python SDK,
the TypeScript SDK under node):

* a call sent to A, which names B, is answered by B, with the caller's
  metadata (authorization) and within the same deadline; a server stream
  too (Python, TS);
* hostile or malformed values are never followed: a scheme ("dns:///",
  "unix:"), a path, user info, a port out of range, trailing junk, an
  overlong name, two values; B (alive, and the address the value is made
  of) gets no call and the caller gets A's UNAVAILABLE as it is;
* one hop only: A names B, B names C: C gets no call, the caller gets B's
  UNAVAILABLE.

The real two-node case (mutual TLS caller, not forwarded by harnessd) is in
test_sandbox_nodes."""
import json
import os
import subprocess
import tempfile
import threading
import unittest
from concurrent import futures

import grpc

from harness.v1 import auth_pb2, health_pb2

import hstest
import sdkenv

KEY = "harness-node-address"
TOKEN = "follow-test-token"
WAIT = 60 * hstest.SLOW


class Fake:
    """One fake node. redirect: None (answer as itself) or a list of
    values for harness-node-address (answer UNAVAILABLE)."""

    def __init__(self, name):
        self.name = name
        self.redirect = None
        self.calls = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers([self])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = "127.0.0.1:%d" % self.port
        self.server.start()

    def count(self):
        with self.lock:
            return len(self.calls)

    def _seen(self, method, context, req):
        with self.lock:
            self.calls.append((method, dict(context.invocation_metadata()), req))
        if self.redirect is not None:
            context.set_trailing_metadata([(KEY, v) for v in self.redirect])
            context.abort(grpc.StatusCode.UNAVAILABLE, "elsewhere, says %s" % self.name)

    def service(self, details):
        method = details.method
        if method.endswith("/WatchTasks"):
            def stream(req, context):
                self._seen(method, context, req)
                for i in (1, 2):
                    yield health_pb2.TaskEvent(event_id=i, task_id=self.name).SerializeToString()
            return grpc.unary_stream_rpc_method_handler(stream)

        def unary(req, context):
            self._seen(method, context, req)
            if method.endswith("/GetTask"):
                return health_pb2.Task(task_id=self.name).SerializeToString()
            return auth_pb2.User(id=self.name, email=self.name + "@example.com").SerializeToString()
        return grpc.unary_unary_rpc_method_handler(unary)

    def close(self):
        self.server.stop(None).wait()


def hostile(b_port):
    """Values that must not be followed (B listens where most of them point)."""
    b = "127.0.0.1:%d" % b_port
    return [
        ["dns:///" + b], ["ipv4:" + b], ["unix:/tmp/hs-follow.sock"], ["unix:" + b],
        [b + "/x"], ["user@" + b], [b + " "], [" " + b], ["127.0.0.1:%d0000" % b_port],
        ["127.0.0.1:0"], ["127.0.0.1:65536"], ["127.0.0.1:"], [":%d" % b_port], ["127.0.0.1"],
        ["http://" + b], ["-bad-.example:%d" % b_port], ["a..b:%d" % b_port],
        [("a" * 60 + ".") * 5 + "com:%d" % b_port], ["[::1:%d" % b_port], ["127.0.0.1:%d:1" % b_port],
        [b, b],  # two values: neither
        [""],
    ]


class FollowTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.a, cls.b, cls.c = Fake("node-a"), Fake("node-b"), Fake("node-c")

    @classmethod
    def tearDownClass(cls):
        for f in (cls.a, cls.b, cls.c):
            f.close()

    def setUp(self):
        for f in (self.a, self.b, self.c):
            with f.lock:
                f.calls.clear()
            f.redirect = None
        self.a.redirect = [self.b.target]

    # -- the three clients, each returning (ok, what) -----------------------

    def harnessctl(self, method, extra=()):
        with tempfile.TemporaryDirectory(prefix="hs-follow-ctl-") as home:
            env = dict(os.environ, HOME=home, HARNESS_SERVER=self.a.target, HARNESS_TOKEN=TOKEN)
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
            args = {"unary": ["task", "get", "t1"], "stream": ["task", "watch", "t1"]}[method]
            p = subprocess.run([hstest.HARNESSCTL, "-o", "json", "--timeout", "20"] + args + list(extra),
                               capture_output=True, text=True, env=env, timeout=WAIT,
                               start_new_session=True)
        self.assertNotIn("Sanitizer", p.stderr)
        if p.returncode != 0:
            return False, p.stderr
        out = json.loads(p.stdout.splitlines()[0] if method == "stream" else p.stdout)
        return True, out.get("taskId", out.get("task_id"))

    def python(self, script):
        py = sdkenv.python_sdk()
        p = subprocess.run([py, "-c", PY_PRELUDE + script], capture_output=True, text=True,
                           env=dict(os.environ, TARGET=self.a.target, TOKEN=TOKEN), timeout=WAIT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return json.loads(p.stdout.strip().splitlines()[-1])

    def node(self, script):
        node, example = sdkenv.node_sdk()
        app = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(example))))
        p = subprocess.run([node, "-e", TS_PRELUDE + script], capture_output=True, text=True, cwd=app,
                           env=dict(os.environ, TARGET=self.a.target, TOKEN=TOKEN), timeout=WAIT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return json.loads(p.stdout.strip().splitlines()[-1])

    def calls(self, lang, kind):
        """[ok, who or error details] of one call through lang."""
        if lang == "c":
            ok, what = self.harnessctl(kind)
            return [ok, what]
        if lang == "python":
            return self.python(PY_UNARY if kind == "unary" else PY_STREAM)
        return self.node(TS_UNARY if kind == "unary" else TS_STREAM)

    # -- the checks ---------------------------------------------------------

    def check_followed(self, lang, kind="unary"):
        ok, who = self.calls(lang, kind)
        self.assertTrue(ok, who)
        self.assertEqual(who, "node-b")
        self.assertEqual(self.a.count(), 1)
        self.assertEqual(self.b.count(), 1)
        method, md, req = self.b.calls[0]
        self.assertEqual(md.get("authorization"), "Bearer " + TOKEN)
        # the followed call carries the caller's request, not an empty one
        self.assertEqual(req, self.a.calls[0][2])
        self.assertIn(b"t1", req)
        self.assertNotIn("harness-forwarded-by", md)

    def check_hostile(self, lang):
        for value in hostile(self.b.port):
            with self.subTest(value=value):
                self.setUp()
                self.a.redirect = value
                ok, what = self.calls(lang, "unary")
                self.assertFalse(ok, what)
                self.assertIn("elsewhere, says node-a", what)
                self.assertEqual(self.b.count(), 0, "followed %r" % (value,))

    def check_one_hop(self, lang, kind="unary"):
        self.b.redirect = [self.c.target]
        ok, what = self.calls(lang, kind)
        self.assertFalse(ok, what)
        self.assertIn("elsewhere, says node-b", what)
        self.assertEqual((self.a.count(), self.b.count(), self.c.count()), (1, 1, 0))

    def test_c_client_follows(self):
        self.check_followed("c")

    def test_c_client_stream_follows(self):
        self.check_followed("c", "stream")

    def test_c_client_refuses_hostile_addresses(self):
        self.check_hostile("c")

    def test_c_client_follows_one_hop(self):
        self.check_one_hop("c")

    def test_python_sdk_follows(self):
        self.check_followed("python")

    def test_python_sdk_stream_follows(self):
        self.check_followed("python", "stream")

    def test_python_sdk_refuses_hostile_addresses(self):
        self.check_hostile("python")

    def test_python_sdk_follows_one_hop(self):
        self.check_one_hop("python")
        self.setUp()
        self.check_one_hop("python", "stream")

    def test_typescript_sdk_follows(self):
        self.check_followed("ts")

    def test_typescript_sdk_stream_follows(self):
        self.check_followed("ts", "stream")

    def test_typescript_sdk_refuses_hostile_addresses(self):
        self.check_hostile("ts")

    def test_typescript_sdk_follows_one_hop(self):
        self.check_one_hop("ts")
        self.setUp()
        self.check_one_hop("ts", "stream")

    def test_following_off(self):
        """follow=False / no_follow: the UNAVAILABLE goes to the caller."""
        ok, what = self.python('c = Client(os.environ["TARGET"], token=os.environ["TOKEN"], retries=0, '
                               'follow=False)\nunary(c)')
        self.assertEqual([ok, self.b.count()], [False, 0], what)
        ok, what = self.node('run(new Client(process.env.TARGET, { token: process.env.TOKEN, retries: 0, '
                             'follow: false }), unary);')
        self.assertEqual([ok, self.b.count()], [False, 0], what)


PY_PRELUDE = r'''
import json, os, sys
import grpc
from harness_sdk import Client, HarnessError
def unary(c):
    try:
        print(json.dumps([True, c.tasks.GetTask(task_id="t1", timeout=20).task_id]))
    except HarnessError as e:
        print(json.dumps([False, e.details]))
def stream(c):
    try:
        print(json.dumps([True, [e.task_id for e in c.tasks.WatchTasks(task_id="t1", timeout=20)][0]]))
    except grpc.RpcError as e:
        print(json.dumps([False, e.details()]))
'''
PY_UNARY = 'unary(Client(os.environ["TARGET"], token=os.environ["TOKEN"], retries=0))'
PY_STREAM = 'stream(Client(os.environ["TARGET"], token=os.environ["TOKEN"], retries=0))'

TS_PRELUDE = r'''
const { Client, HarnessError } = require("harness-sdk");
async function unary(c) {
  try {
    return [true, (await c.tasks.GetTask({ taskId: "t1" }, { timeoutMs: 20000 })).taskId];
  } catch (e) {
    return [false, e.details || String(e)];
  }
}
async function stream(c) {
  const ids = [];
  try {
    for await (const ev of await c.tasks.WatchTasks({ taskId: "t1" }, { timeoutMs: 20000 })) ids.push(ev.taskId);
    return [true, ids[0]];
  } catch (e) {
    return [false, e.details || String(e)];
  }
}
function run(c, fn) {
  fn(c).then((r) => { console.log(JSON.stringify(r)); c.close(); },
             (e) => { console.error(e); process.exit(1); });
}
'''
TS_UNARY = 'run(new Client(process.env.TARGET, { token: process.env.TOKEN, retries: 0 }), unary);'
TS_STREAM = 'run(new Client(process.env.TARGET, { token: process.env.TOKEN, retries: 0 }), stream);'

if __name__ == "__main__":
    unittest.main()
