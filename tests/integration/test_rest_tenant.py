"""Red team of the REST gateway as a hostile second tenant (issue 18's
attack surface): the REAL gateway in front of a REAL harnessd, users A
(alice) and B (bob) made by the admin, driven with plain HTTP. Each test is
an attack that once worked, or one that must keep failing."""
import os
import re
import unittest

import hstest
from resthelp import Rest
from test_gateway import Gateway
from test_rest import ADMIN, start_gateway


class TenantAttackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hd = hstest.Harnessd()
        try:
            cls.gw = start_gateway(cls.hd)
        except BaseException:
            cls.hd.close()
            raise
        cls.anon = Rest(cls.gw.port)
        r = cls.anon.post("/v1/auth:login", {"email": ADMIN[0], "password": ADMIN[1]})
        cls.admin = Rest(cls.gw.port, r["accessToken"])
        cls.a, cls.a_id = cls.user("alice")
        cls.b, cls.b_id = cls.user("bob")

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.hd.close()

    @classmethod
    def user(cls, name):
        u = cls.admin.post("/v1/users", {"email": name + "@example.com", "name": name,
                                          "password": name + "-password-1", "role": "user"})
        return Rest(cls.gw.port, cls.login(name)["accessToken"]), u["id"]

    @classmethod
    def login(cls, name):
        return cls.anon.post("/v1/auth:login", {"email": name + "@example.com",
                                                "password": name + "-password-1"})

    def test_encoded_path_cannot_reach_another_route(self):
        """B sends the admin a console link #/tasks/<id> whose id holds
        "../users/<A>:disable" and an encoded NUL; the console encodes the id
        (encodeURIComponent) into POST /v1/tasks/<id>:recover. The gateway
        used civetweb's decoded and dot-cleaned path, which made that
        POST /v1/users/<A>:disable with the admin's token. Now an escape
        decodes inside its segment only, and an encoded NUL is 400."""
        a_id = self.a_id
        bad = [
            ("POST", "/v1/tasks/..%%2Fusers%%2F%s%%3Adisable%%00:recover" % a_id),
            ("POST", "/v1/tasks/..%%2Fusers%%2F%s%%3Adisable%%00:cancel" % a_id),
            ("GET", "/v1/tasks/x%00"),
            ("GET", "/v1/tasks/x%zz"),
        ]
        for method, path in bad:
            st, e = self.admin.error(method, path, {"reason": "from the console"}
                                     if method == "POST" else None)
            self.assertEqual((st, e["code"]), (400, 3), path)
        # without the NUL the whole id is one value: no such task
        st, e = self.admin.error("POST", "/v1/tasks/..%%2Fusers%%2F%s%%3Adisable:recover" % a_id,
                                 {"reason": "x"})
        self.assertEqual(st // 100, 4)
        self.assertNotIn(e["code"], (0,))
        self.assertIs(self.admin.get("/v1/users/" + a_id)["disabled"], False)
        self.assertEqual(self.a.get("/v1/auth:whoami")["id"], a_id)
        # "%2F" and "%2E%2E" stay inside the value: B cannot climb from its
        # own task to A's
        self.a.post("/v1/tasks", {"taskId": "enc-a"})
        self.b.post("/v1/tasks", {"taskId": "enc-b"})
        st, e = self.b.error("GET", "/v1/tasks/enc-b%2F..%2Fenc-a")
        self.assertEqual((st, e["code"]), (400, 3))  # not a task id
        st, e = self.b.error("GET", "/v1/tasks/%2E%2E")
        self.assertEqual((st, e["code"]), (400, 3))
        # an encoded ':' is part of the id, not a verb
        st, e = self.b.error("POST", "/v1/tasks/enc-b%3Acancel", {})
        self.assertEqual(st, 405)
        self.assertEqual(self.b.get("/v1/tasks/enc-b")["state"], "TASK_STATE_RUNNING")
        # plain escapes of ordinary characters still work
        self.assertEqual(self.b.get("/v1/tasks/enc%2Db")["taskId"], "enc-b")

    def test_every_route_naming_anothers_object_is_404(self):
        """B names A's task, checkpoint, sandbox and workspace in the path,
        the query and the body (optional fields too, and fields bound twice:
        the path wins): always 404 NOT_FOUND with the wording of a missing
        object, and A's objects are unchanged. Admin-only routes are 403
        for B whatever they name."""
        A, B = self.a, self.b
        A.post("/v1/tasks", {"taskId": "own-a", "heartbeatTimeoutMs": 60000})
        os.makedirs(os.path.join(self.hd.data_dir, "workspaces", "own-a", "sub"), exist_ok=True)
        ca = A.post("/v1/tasks/own-a/checkpoints", {"step": 1})["checkpoint"]["checkpointId"]
        A.post("/v1/sandboxes", {"sandboxId": "own-sa", "driver": "bwrap", "taskId": "own-a",
                                 "entrypoint": ["/bin/sh", "-c", "exec sleep 60"]})
        B.post("/v1/tasks", {"taskId": "own-b"})
        cb = B.post("/v1/tasks/own-b/checkpoints", {"step": 1})["checkpoint"]["checkpointId"]
        B.post("/v1/sandboxes", {"sandboxId": "own-sb", "driver": "bwrap",
                                 "entrypoint": ["/bin/sh", "-c", "exec sleep 60"]})
        not_found = [
            ("GET", "/v1/tasks/own-a", None),
            ("POST", "/v1/tasks/own-a:heartbeat", {"taskId": "own-b"}),
            ("POST", "/v1/tasks/own-a:complete", {"success": True}),
            ("POST", "/v1/tasks/own-a:cancel", {}),
            ("POST", "/v1/tasks/own-a:recover", {}),
            ("POST", "/v1/tasks", {"taskId": "own-b2", "sandboxId": "own-sa"}),
            ("POST", "/v1/tasks", {"taskId": "own-b3", "workspace": "own-a"}),
            ("POST", "/v1/tasks", {"taskId": "own-b4", "workspace": "own-a/sub"}),
            ("GET", "/v1/tasks/own-a/checkpoints", None),
            ("GET", "/v1/tasks/own-a/checkpoints/" + ca, None),
            ("GET", "/v1/tasks/own-b/checkpoints/" + ca, None),
            ("GET", "/v1/tasks/own-a/checkpoints:latest", None),
            ("GET", "/v1/tasks/own-a/checkpoints:verify", None),
            ("GET", "/v1/tasks/own-b/checkpoints:verify?workspace=own-a", None),
            ("GET", "/v1/tasks/own-b/checkpoints:diff?fromCheckpointId=%s&toCheckpointId=%s" % (ca, cb), None),
            ("POST", "/v1/tasks/own-a/checkpoints", {"step": 2}),
            ("POST", "/v1/tasks/own-b/checkpoints", {"step": 2, "workspace": "own-a"}),
            ("POST", "/v1/tasks/own-b/checkpoints", {"step": 2, "workspace": "own-a/sub"}),
            ("POST", "/v1/tasks/own-a/checkpoints/%s:restore" % ca, {}),
            ("POST", "/v1/tasks/own-b/checkpoints/%s:restore" % ca, {}),
            ("POST", "/v1/tasks/own-b/checkpoints/%s:restore" % cb, {"workspace": "own-a"}),
            ("POST", "/v1/tasks/own-a/checkpoints:prune", {"keepLast": 1}),
            ("GET", "/v1/sandboxes/own-sa", None),
            ("POST", "/v1/sandboxes/own-sa:start", {}),
            ("POST", "/v1/sandboxes/own-sa:pause", {}),
            ("POST", "/v1/sandboxes/own-sa:resume", {}),
            ("POST", "/v1/sandboxes/own-sa/snapshots", {}),
            ("POST", "/v1/sandboxes/own-sa:restore", {"snapshotId": "x"}),
            ("GET", "/v1/sandboxes/own-sa/snapshots", None),
            ("DELETE", "/v1/sandboxes/own-sa?sandboxId=own-sb", None),
            ("POST", "/v1/sandboxes", {"sandboxId": "own-sb2", "driver": "bwrap", "taskId": "own-a"}),
            ("POST", "/v1/sandboxes", {"sandboxId": "own-sb3", "driver": "bwrap", "workspace": "own-a"}),
            ("POST", "/v1/sandboxes", {"sandboxId": "own-sb4", "driver": "bwrap", "workspace": "own-a/sub"}),
        ]
        for method, path, body in not_found:
            st, e = B.error(method, path, body)
            self.assertEqual((st, e["code"]), (404, 5), "%s %s %s: %s" % (method, path, body, e))
            self.assertRegex(e["message"], r"not found$", path)
        for path in ("/v1/tasks:watch?taskId=own-a", "/v1/sandboxes/own-sa/logs"):
            es = B.stream(path)
            self.assertEqual(es.status, 404, path)
            es.close()
        # the path wins over the query and the body
        lst = B.get("/v1/tasks/own-b/checkpoints?taskId=own-a&task_id=own-a")["checkpoints"]
        self.assertEqual([c["taskId"] for c in lst], ["own-b"])
        self.assertEqual(B.post("/v1/tasks/own-b:heartbeat", {"task_id": "own-a"})["state"],
                         "TASK_STATE_RUNNING")
        # lists show B's own objects only, whatever the query says
        mine = B.get("/v1/tasks?pageSize=1000")["tasks"]
        self.assertIn("own-b", [t["taskId"] for t in mine])
        self.assertEqual({t["owner"] for t in mine}, {self.b_id})
        self.assertEqual(B.get("/v1/sandboxes?taskId=own-a")["sandboxes"], [])
        st, e = B.error("GET", "/v1/sandboxes?owner=" + self.a_id)
        self.assertEqual((st, e["code"]), (403, 7))
        # admin-only routes: 403 for B, whatever they name
        for method, path, body in [("GET", "/v1/users/" + self.a_id, None),
                                   ("POST", "/v1/users/%s:disable" % self.a_id, {}),
                                   ("DELETE", "/v1/users/" + self.a_id, None),
                                   ("GET", "/v1/apiKeys", None),
                                   ("POST", "/v1/apiKeys", {"name": "b", "role": "admin"}),
                                   ("POST", "/v1/apiKeys/hsk_0000000000000000:revoke", {})]:
            st, e = B.error(method, path, body)
            self.assertEqual((st, e["code"]), (403, 7), path)
        # A's objects are as A left them
        self.assertEqual(A.get("/v1/tasks/own-a")["state"], "TASK_STATE_RUNNING")
        self.assertEqual(A.get("/v1/sandboxes/own-sa")["state"], "SANDBOX_STATE_CREATED")
        self.assertEqual(len(A.get("/v1/tasks/own-a/checkpoints")["checkpoints"]), 1)
        self.assertIs(self.admin.get("/v1/users/" + self.a_id)["disabled"], False)
        A.ok("DELETE", "/v1/sandboxes/own-sa")
        B.ok("DELETE", "/v1/sandboxes/own-sb")

    def test_transcoding_abuse_is_400_never_another_field(self):
        """Malformed requests are 400 naming what is wrong (never a 5xx,
        never a value landing in another field)."""
        B = self.b
        B.post("/v1/tasks", {"taskId": "tc-b"})
        json_h = {"Content-Type": "application/json"}
        cases = [
            ("POST", "/v1/tasks", b'{"taskId":"tc-b2","taskId":"own-a"}', "malformed JSON"),
            ("POST", "/v1/tasks", b'{"taskId":"tc-b2","task_id":"own-a"}', "given twice"),
            ("POST", "/v1/tasks", b'{"taskId":"tc-b2","totalSteps":"99999999999999999999"}', "total_steps"),
            ("POST", "/v1/tasks", b'{"taskId":"tc-b2","recoveryPolicy":{"maxAttempts":4294967296}}',
             "max_attempts"),
            ("POST", "/v1/tasks", b'{"taskId":"t\\u0000b"}', "malformed JSON"),
            ("POST", "/v1/tasks", b'{"taskId":"tc-b2","labels":' + b'{"a":' * 70 + b'1' + b'}' * 70 + b'}',
             "nested deeper"),
            ("POST", "/v1/tasks", b'["tc-b2"]', "expected a JSON object"),
            ("GET", "/v1/tasks?" + "&".join("x%d=1" % i for i in range(65)), None, "more than 64"),
            ("GET", "/v1/tasks?state=TASK_STATE_NOPE", None, "state"),
            ("GET", "/v1/tasks?pageSize=1e3", None, "page_size"),
            ("GET", "/v1/tasks?labelSelector=x", None, "labelSelector"),
            ("GET", "/v1/tasks?labelSelector[%00]=x", None, "percent-encoding"),
            ("GET", "/v1/tasks?pageToken=%ff", None, "UTF-8"),
            ("GET", "/v1/tasks:watch?afterEventId=-1", None, "after_event_id"),
        ]
        for method, path, raw, needle in cases:
            r = B.request(method, path, raw=raw, headers=json_h if raw is not None else None)
            self.assertEqual((r.status, r.json()["code"]), (400, 3), "%s %s" % (path, raw))
            self.assertIn(needle, r.json()["message"], path)
        for lei in ("-1", "abc", "99999999999999999999999", "1e3"):
            es = B.stream("/v1/tasks:watch", last_event_id=lei)
            self.assertEqual(es.status, 400, lei)
            self.assertIn("Last-Event-ID", es.error()["message"])
            es.close()
        # a cross-site page gets nothing done, with or without a body
        for h in ({"Origin": "null"}, {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            r = B.request("POST", "/v1/tasks/tc-b:cancel", {}, headers=h)
            self.assertEqual(r.status, 403, h)
            r = B.request("POST", "/v1/tasks/tc-b:cancel", headers=h)
            self.assertEqual(r.status, 403, h)
        r = B.request("POST", "/v1/tasks/tc-b:cancel", raw=b"{}", headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 415)
        self.assertEqual(B.get("/v1/tasks/tc-b")["state"], "TASK_STATE_RUNNING")
        # no cookie authorises /v1, not even the refresh cookie
        login = self.gw.login("bob@example.com", "bob-password-1")
        cookie = next(v for k, v in login.headers if k == "set-cookie").split(";")[0]
        st, e = self.anon.error("GET", "/v1/tasks", headers={"Cookie": cookie})
        self.assertEqual((st, e["code"]), (401, 16))

    def test_csrf_on_every_state_changing_route(self):
        """Every non-GET route of /openapi.json refuses a cross-site page
        (403) before harnessd sees the call, even with a valid token."""
        spec = self.anon.get("/openapi.json")
        n = 0
        for path, ops in spec["paths"].items():
            for method in ops:
                if method.upper() not in ("POST", "PUT", "PATCH", "DELETE"):
                    continue
                url = re.sub(r"\{[^}]+\}", "csrf-x", path)
                for h in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
                    r = self.b.request(method.upper(), url, {}, headers=h)
                    want = 7 if url.startswith("/v1/") else "FORBIDDEN"  # the seed's shape
                    self.assertEqual((r.status, r.json()["code"]), (403, want), "%s %s %s" % (method, url, h))
                n += 1
        self.assertGreaterEqual(n, 20)

    def test_console_responses_forbid_framing_and_inline_script(self):
        pages = ["/", "/console/app.js", "/console/api.js", "/console/style.css"]
        for p in pages:
            r = self.anon.request("GET", p)
            self.assertEqual(r.status, 200, p)
            self.assertEqual(r.header("x-content-type-options"), "nosniff", p)
            self.assertIsNotNone(r.header("x-frame-options"), p)
            self.assertIn("frame-ancestors", r.header("content-security-policy"), p)
        r = self.anon.request("GET", "/")
        csp = r.header("content-security-policy")
        for d in ("script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"):
            self.assertIn(d, csp)
        self.assertNotIn("unsafe-inline", csp)
        r = self.anon.request("GET", "/", headers={"If-None-Match": r.header("etag")})
        self.assertEqual(r.status, 304)
        self.assertIn("frame-ancestors 'none'", r.header("content-security-policy"))

    def _next_message(self, es):
        """The next event that is not a keep-alive: (id, name, data) or None."""
        return es.next(timeout=20.0)

    def test_open_stream_ends_when_its_session_is_revoked(self):
        """A stream opened before a logout kept delivering the (logged out)
        session's task events: the token was checked only when the stream
        started. Now harnessd re-checks the credential before every
        message: the next event is not delivered, the stream ends with
        UNAUTHENTICATED."""
        s = self.login("bob")
        bob2 = Rest(self.gw.port, s["accessToken"])
        self.b.post("/v1/tasks", {"taskId": "rev-b"})
        es = bob2.stream("/v1/tasks:watch?taskId=rev-b&sendInitial=true")
        try:
            self.assertEqual(es.status, 200)
            _, name, d = self._next_message(es)
            self.assertEqual(d["type"], "TASK_EVENT_TYPE_INITIAL_STATE")
            self.assertEqual(self.anon.post("/v1/auth:logout", {"refreshToken": s["refreshToken"]}), {})
            self.b.post("/v1/tasks/rev-b:cancel", {"reason": "after the logout"})
            ev = self._next_message(es)
            self.assertIsNotNone(ev)
            _, name, d = ev
            self.assertEqual(name, "end", "an event reached a logged-out session: %s" % d)
            self.assertEqual(d["code"], 16)
            self.assertIn("no longer valid", d["message"])
        finally:
            es.close()

    def test_open_stream_ends_when_its_user_is_disabled(self):
        carol, carol_id = self.user("carol")
        carol.post("/v1/tasks", {"taskId": "rev-c"})
        es = carol.stream("/v1/tasks:watch?taskId=rev-c")
        try:
            self.assertEqual(es.status, 200)
            self.assertIs(self.admin.post("/v1/users/%s:disable" % carol_id)["disabled"], True)
            self.admin.post("/v1/tasks/rev-c:cancel", {"reason": "by the admin"})
            _, name, d = self._next_message(es)
            self.assertEqual(name, "end", "an event reached a disabled user: %s" % d)
            self.assertEqual(d["code"], 16)
        finally:
            es.close()

    def test_open_stream_ends_when_its_api_key_is_revoked(self):
        k = self.admin.post("/v1/apiKeys", {"name": "rev-key", "role": "user"})
        key = Rest(self.gw.port, k["key"])
        key.post("/v1/tasks", {"taskId": "rev-k"})
        es = key.stream("/v1/tasks:watch?taskId=rev-k")
        try:
            self.assertEqual(es.status, 200)
            self.admin.post("/v1/apiKeys/%s:revoke" % k["id"])
            self.admin.post("/v1/tasks/rev-k:cancel", {"reason": "by the admin"})
            _, name, d = self._next_message(es)
            self.assertEqual(name, "end", "an event reached a revoked API key: %s" % d)
            self.assertEqual(d["code"], 16)
        finally:
            es.close()
        # a live credential keeps its stream
        es = self.a.stream("/v1/tasks:watch?taskId=live-a&afterEventId=0")
        self.assertEqual(es.status, 404)  # no such task yet (and a refusal is an HTTP status)
        es.close()
        self.a.post("/v1/tasks", {"taskId": "live-a"})
        es = self.a.stream("/v1/tasks:watch?taskId=live-a")
        try:
            self.a.post("/v1/tasks/live-a:cancel", {"reason": "mine"})
            _, name, d = self._next_message(es)
            self.assertEqual((name, d["type"]), ("message", "TASK_EVENT_TYPE_CANCELLED"))
        finally:
            es.close()

    def test_exec_session_takes_no_input_after_its_session_is_revoked(self):
        """ExecSandbox (gRPC only, no REST mapping): a shell opened before a
        logout ran the lines it was sent afterwards; only its output was
        checked. Now each message the caller sends is checked too."""
        import queue
        import grpc
        from harness.v1 import sandbox_pb2 as S
        s = self.login("bob")
        self.b.post("/v1/tasks", {"taskId": "ex-b"})
        self.b.post("/v1/sandboxes", {"sandboxId": "ex-sb", "driver": "bwrap", "taskId": "ex-b",
                                      "entrypoint": ["/bin/sh", "-c", "exec sleep 120"]})
        self.b.post("/v1/sandboxes/ex-sb:start")
        marker = os.path.join(self.hd.data_dir, "workspaces", "ex-b", "after-logout")
        fn = hstest.stub(self.hd.channel, "/harness.v1.SandboxService/ExecSandbox",
                         S.ExecSandboxRequest, S.ExecSandboxResponse, "stream_stream")
        q = queue.Queue()
        q.put(S.ExecSandboxRequest(start=S.ExecStart(sandbox_id="ex-sb", command=["/bin/sh"])))
        q.put(S.ExecSandboxRequest(stdin=b"echo ready\n"))

        def reqs():
            while True:
                r = q.get()
                if r is None:
                    return
                yield r
        call = fn(reqs(), metadata=[("authorization", "Bearer " + s["accessToken"])],
                  timeout=60 * hstest.SLOW)
        try:
            out = b""
            it = iter(call)
            while b"ready" not in out:
                out += next(it).stdout
            self.assertEqual(self.anon.post("/v1/auth:logout", {"refreshToken": s["refreshToken"]}), {})
            q.put(S.ExecSandboxRequest(stdin=b"touch after-logout; echo ran\n"))
            with self.assertRaises(grpc.RpcError) as cm:
                for r in it:
                    out += r.stdout
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            self.assertNotIn(b"ran", out)
            self.assertFalse(os.path.exists(marker), "a logged-out session ran a command")
        finally:
            q.put(None)
            call.cancel()
            self.b.ok("DELETE", "/v1/sandboxes/ex-sb")

    def test_production_hides_5xx_messages_in_stream_end_events(self):
        """In production a 5xx answer says only "Internal server error"; a
        stream's end event carried harnessd's message unchanged."""
        hd = hstest.Harnessd()
        gw, hd_open = None, True
        try:
            gw = Gateway(hd.target, args=["--gateway-secret-file", os.path.join(hd.data_dir, "gateway.key")],
                         env={"HARNESS_ENV": "production"})
            tok = Rest(gw.port).post("/v1/auth:login", {"email": ADMIN[0], "password": ADMIN[1]})["accessToken"]
            es = Rest(gw.port, tok).stream("/v1/health:watch")
            self.assertEqual(es.next()[2], {"status": "SERVING"})
            hd_open = False
            hd.close()  # the stream ends UNAVAILABLE (503) with harnessd's words
            ev = es.next()
            while ev is not None and ev[1] != "end":
                ev = es.next()
            self.assertIsNotNone(ev)
            self.assertEqual(ev[2]["code"], 14)
            self.assertEqual(ev[2]["message"], "Internal server error")
            es.close()
        finally:
            if gw is not None:
                self.assertEqual(gw.stop(), 0)
            if hd_open:
                hd.close()


if __name__ == "__main__":
    unittest.main()
