"""The TypeScript/Node SDK (clients/typescript) end to end against a real
harnessd (issue 20): installed with `npm install --install-links` from the
repository (dependencies @grpc/grpc-js and @grpc/proto-loader from the npm
registry; node_modules kept in <build>/sdk/ts/app), its example agent
(examples/counter-agent.js) goes through the same scenarios as the Python
one (test_sdk_python.PythonSdkTest: killed mid-step and restarted, stalled
under a restore), and the Client's refresh, API keys, request_id replays,
errors and deadlines are checked from node."""
import os
import subprocess

import hstest
import sdkenv
import test_sdk_python as tp


class TypeScriptSdkTest(tp.PythonSdkTest):
    @classmethod
    def agent_cmd(cls):
        node, example = sdkenv.node_sdk()
        return [node, example]


class TypeScriptClientTest(hstest.HarnessTestCase):
    @classmethod
    def setUpClass(cls):
        cls.node, example = sdkenv.node_sdk()  # before harnessd: a failed install leaves no server behind
        cls.app = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(example))))
        super().setUpClass()

    def run_node(self, code):
        e = dict(os.environ, TARGET=self.hd.target, EMAIL=tp.ADMIN[0], PASSWORD=tp.ADMIN[1])
        p = subprocess.run([self.node, "-e", code], capture_output=True, text=True, env=e, timeout=tp.WAIT,
                           cwd=self.app)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p.stdout

    def test_refresh_api_key_request_id_errors_deadline(self):
        out = self.run_node(r'''
const { Client, HarnessError } = require("harness-sdk");
(async () => {
  const c = new Client(process.env.TARGET, { email: process.env.EMAIL, password: process.env.PASSWORD });
  await c.login();
  c._access = "garbage";  // refused: the client refreshes once and retries
  const t = await c.tasks.RegisterTask({ taskId: "ts-cl", heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 600000 });
  console.log("refreshed", t.taskId, t.state);
  const key = (await c.auth.CreateApiKey({ name: "ts", role: "user" })).key;
  const k = new Client(process.env.TARGET, { apiKey: key });
  console.log("apikey", (await k.auth.WhoAmI({})).role);
  const a = await c.checkpoints.CreateCheckpoint({ taskId: "ts-cl", step: 1, requestId: "r-1",
    externalState: { fields: { n: { numberValue: 1 } } } });
  const b = await c.checkpoints.CreateCheckpoint({ taskId: "ts-cl", step: 1, requestId: "r-1" });
  console.log("replayed", b.replayed, a.checkpoint.checkpointId === b.checkpoint.checkpointId);
  try { await c.tasks.GetTask({ taskId: "no-such" }); } catch (e) {
    console.log("error", e instanceof HarnessError, e.codeName);
  }
  const r = new Client(process.env.TARGET, { refreshToken: (await new Client(process.env.TARGET,
    { email: process.env.EMAIL, password: process.env.PASSWORD }).login()).refreshToken });
  const all = await Promise.allSettled(Array.from({ length: 8 }, () => r.auth.WhoAmI({})));
  console.log("concurrent errors", all.filter((x) => x.status === "rejected").length);
  r._expiresAt = 1;
  console.log("after", (await r.auth.WhoAmI({})).role);
  const s = await c.tasks.WatchTasks({ taskId: "ts-cl" }, { timeoutMs: 500 });
  try { for await (const _ of s) { /* nothing happens */ } } catch (e) { console.log("stream", e.code); }
  c.close(); k.close();
})().catch((e) => { console.error(e); process.exit(1); });
''')
        self.assertIn("refreshed ts-cl TASK_STATE_RUNNING", out)
        self.assertIn("apikey user", out)
        self.assertIn("replayed true true", out)
        self.assertIn("error true NOT_FOUND", out)
        self.assertIn("stream 4", out)  # DEADLINE_EXCEEDED
        self.assertIn("concurrent errors 0", out)  # one Refresh for eight calls
        self.assertIn("after admin", out)

    def test_install_as_written_from_the_repository_root(self):
        """`npm install ./clients/typescript` run in the repository root (a
        copy: clients/typescript beside proto/) links the package and
        installs its dependencies beside it; the SDK loads and calls."""
        root = os.path.join(sdkenv.SDK_DIR, "ts", "src")
        with sdkenv._locked("node"):
            p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error",
                                "./clients/typescript"], cwd=root, capture_output=True, text=True, timeout=300)
            self.assertEqual(p.returncode, 0, p.stderr)
            e = dict(os.environ, TARGET=self.hd.target, EMAIL=tp.ADMIN[0], PASSWORD=tp.ADMIN[1])
            p = subprocess.run([self.node, "-e", r'''
const { Client } = require("harness-sdk");
const c = new Client(process.env.TARGET, { email: process.env.EMAIL, password: process.env.PASSWORD });
c.login().then(() => c.auth.WhoAmI({})).then((u) => { console.log("whoami", u.role); c.close(); },
  (e) => { console.error(e); process.exit(1); });
'''], cwd=root, capture_output=True, text=True, env=e, timeout=tp.WAIT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("whoami admin", p.stdout)

    def test_quickstart_type_checks(self):
        """examples/quickstart.ts (the dozen-line agent) against index.d.ts with tsc --strict."""
        src = os.path.join(self.app, "node_modules", "harness-sdk", "examples", "quickstart.ts")
        with open(src) as f, open(os.path.join(self.app, "quickstart.ts"), "w") as g:
            g.write(f.read())
        p = subprocess.run([os.path.join(self.app, "node_modules", ".bin", "tsc"), "--noEmit", "--strict",
                            "--target", "es2020", "--module", "commonjs", "--moduleResolution", "node",
                            "--types", "node", "quickstart.ts"], cwd=self.app, capture_output=True, text=True,
                           timeout=tp.WAIT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(os.path.join(self.app, "bad.ts"), "w") as g:  # the check can fail
            g.write('import { Agent } from "harness-sdk";\nnew Agent(null as any, "t").run((s: string) => {});\n')
        p = subprocess.run([os.path.join(self.app, "node_modules", ".bin", "tsc"), "--noEmit", "--strict",
                            "--types", "node", "bad.ts"], cwd=self.app, capture_output=True, text=True,
                           timeout=tp.WAIT)
        self.assertNotEqual(p.returncode, 0)

    def test_unavailable_is_retried(self):
        port = tp.hstest_free_port()
        ready = os.path.join(self.hd.data_dir, "ts-client-started")
        code = r'''
const fs = require("fs");
const { Client } = require("harness-sdk");
(async () => {
  const c = new Client("127.0.0.1:%d", { email: process.env.EMAIL, password: process.env.PASSWORD,
    retries: 40, backoffInitialMs: 50, backoffMaxMs: 500, timeoutMs: 5000 });
  fs.writeFileSync(process.env.READY, "");
  await c.login();
  console.log("role", (await c.auth.WhoAmI({})).role);
  c.close();
})().catch((e) => { console.error(e); process.exit(1); });
''' % port
        e = dict(os.environ, EMAIL=tp.ADMIN[0], PASSWORD=tp.ADMIN[1], READY=ready)
        child = subprocess.Popen([self.node, "-e", code], env=e, cwd=self.app, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (child.poll() is None and child.kill(), child.wait()))
        while not os.path.exists(ready):
            self.assertIsNone(child.poll())
            tp.time.sleep(0.02)
        tp.time.sleep(0.3)
        late = hstest.Harnessd(args=["--listen", "127.0.0.1:%d" % port])
        try:
            out, err = child.communicate(timeout=tp.WAIT)
            self.assertEqual(child.returncode, 0, err)
            self.assertIn("role admin", out)
        finally:
            late.close()


class TypeScriptTlsTest(tp.TlsTest):
    @classmethod
    def setup_sdk(cls):
        cls.node, example = sdkenv.node_sdk()
        cls.app = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(example))))

    def test_mutual_tls(self):
        e = dict(os.environ, TARGET="127.0.0.1:%d" % self.hd.port, EMAIL=tp.ADMIN[0], PASSWORD=tp.ADMIN[1],
                 CA=self.ca, OTHER=self.other, CERT=self.client_cert, KEY=self.client_key)
        code = r'''
const { Client } = require("harness-sdk");
const E = process.env;
(async () => {
  const c = new Client(E.TARGET, { email: E.EMAIL, password: E.PASSWORD, tlsCa: E.CA, tlsCert: E.CERT,
    tlsKey: E.KEY, tlsServerName: "harnessd.test" });
  await c.login();
  console.log("ok", (await c.auth.WhoAmI({})).email);
  c.close();
  for (const [name, o] of [["wrong-ca", { tlsCa: E.OTHER, tlsCert: E.CERT, tlsKey: E.KEY }],
                           ["no-client-cert", { tlsCa: E.CA }]]) {
    const x = new Client(E.TARGET, { email: E.EMAIL, password: E.PASSWORD, retries: 0, timeoutMs: 5000,
      tlsServerName: "harnessd.test", ...o });
    try { await x.login(); console.log(name, "got in"); } catch (err) { console.log(name, err.codeName); }
    x.close();
  }
})().catch((err) => { console.error(err); process.exit(1); });
'''
        p = subprocess.run([self.node, "-e", code], capture_output=True, text=True, env=e, timeout=tp.WAIT,
                           cwd=self.app)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("ok admin@example.com", p.stdout)
        self.assertIn("wrong-ca UNAVAILABLE", p.stdout)
        self.assertIn("no-client-cert UNAVAILABLE", p.stdout)
