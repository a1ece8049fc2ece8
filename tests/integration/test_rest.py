"""Every RPC over REST (issue 18): the REAL gateway in front of a REAL harnessd,
driven with plain HTTP. Each route is called at least once (the last test
checks that against /openapi.json): path variables, query parameters
(enums, int64, maps, bools), bodies (nested messages, Struct, int64 as
strings), responses in the proto3 JSON mapping, and errors as
google.rpc.Status with grpc-gateway's HTTP statuses. Server streams as
Server-Sent Events: reconnecting with Last-Event-ID neither loses nor
repeats an event; streams are bounded per client and in total."""
import base64
import json
import re
import os
import signal
import time
import unittest

import hstest
from harness.v1 import health_pb2
from resthelp import Rest, wait_until
from test_gateway import Gateway

ADMIN = ("admin@example.com", "admin-password-1")
COVERED = set()


def op(name):
    COVERED.add(name)


def start_gateway(hd, args=()):
    key = os.path.join(hd.data_dir, "gateway.key")
    return Gateway(hd.target, args=["--gateway-secret-file", key] + list(args))


class RestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hd = hstest.Harnessd()
        cls.gw = start_gateway(cls.hd)
        anon = Rest(cls.gw.port)
        r = anon.post("/v1/auth:login", {"email": ADMIN[0], "password": ADMIN[1]})
        cls.admin = Rest(cls.gw.port, r["accessToken"])
        cls.admin_id = r["user"]["id"]
        u = cls.admin.post("/v1/users", {"email": "bob@example.com", "name": "Bob",
                                         "password": "bob-password-1", "role": "user"})
        cls.bob_id = u["id"]
        cls.bob = Rest(cls.gw.port, anon.post("/v1/auth:login", {
            "email": "bob@example.com", "password": "bob-password-1"})["accessToken"])
        cls.wsroot = os.path.join(cls.hd.data_dir, "workspaces")

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.hd.close()

    # --- AuthService -------------------------------------------------

    def test_auth_routes(self):
        anon = Rest(self.gw.port)
        r = anon.post("/v1/auth:login", {"email": ADMIN[0], "password": ADMIN[1]})
        op("AuthService_Login")
        self.assertEqual(r["user"]["email"], ADMIN[0])
        self.assertEqual(r["user"]["role"], "admin")
        self.assertIsInstance(r["expiresIn"], int)  # int32: a number
        self.assertTrue(r["refreshToken"])
        # bad credentials: 401 UNAUTHENTICATED; a malformed email: 400
        st, e = anon.error("POST", "/v1/auth:login", {"email": ADMIN[0], "password": "wrong-password"})
        self.assertEqual((st, e["code"]), (401, 16))
        self.assertEqual(e["details"], [])
        st, e = anon.error("POST", "/v1/auth:login", {"email": "not-an-email", "password": "x" * 8})
        self.assertEqual((st, e["code"]), (400, 3))
        self.assertIn("email", e["message"])
        r2 = anon.post("/v1/auth:refresh", {"refreshToken": r["refreshToken"]})
        op("AuthService_Refresh")
        self.assertNotEqual(r2["refreshToken"], r["refreshToken"])
        me = Rest(self.gw.port, r2["accessToken"])
        self.assertEqual(me.get("/v1/auth:whoami")["id"], self.admin_id)
        op("AuthService_WhoAmI")
        self.assertEqual(anon.post("/v1/auth:logout", {"refreshToken": r2["refreshToken"]}), {})
        op("AuthService_Logout")
        # logout ended the session: its access token is refused at once
        st, e = me.error("GET", "/v1/auth:whoami")
        self.assertEqual((st, e["code"]), (401, 16))
        # a spent refresh token used again: refused, and the whole session ends
        r3 = anon.post("/v1/auth:login", {"email": ADMIN[0], "password": ADMIN[1]})
        r4 = anon.post("/v1/auth:refresh", {"refreshToken": r3["refreshToken"]})
        st, e = anon.error("POST", "/v1/auth:refresh", {"refresh_token": r3["refreshToken"]})
        self.assertEqual((st, e["code"]), (401, 16))
        st, e = Rest(self.gw.port, r4["accessToken"]).error("GET", "/v1/auth:whoami")
        self.assertEqual((st, e["code"]), (401, 16))
        # no token at all
        st, e = anon.error("GET", "/v1/tasks")
        self.assertEqual((st, e["code"]), (401, 16))

    def test_user_routes(self):
        u = self.admin.get("/v1/users/" + self.bob_id)
        op("AuthService_GetUser")
        self.assertEqual(u["email"], "bob@example.com")
        self.assertRegex(u["createdAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        self.assertIs(u["disabled"], False)  # defaults are emitted
        # a user may not read another user: 403
        st, e = self.bob.error("GET", "/v1/users/" + self.admin_id)
        self.assertEqual((st, e["code"]), (403, 7))
        c = self.admin.post("/v1/users", {"email": "carol@example.com", "name": "Carol",
                                          "password": "carol-password", "role": "user"})
        op("AuthService_CreateUser")
        st, e = self.admin.error("POST", "/v1/users", {"email": "carol@example.com", "name": "C",
                                                       "password": "carol-password", "role": "user"})
        self.assertEqual((st, e["code"]), (409, 6))
        st, e = self.bob.error("POST", "/v1/users", {"email": "dan@example.com", "password": "x" * 8,
                                                     "role": "user"})
        self.assertEqual((st, e["code"]), (403, 7))
        d = self.admin.post("/v1/users/%s:disable" % c["id"])
        op("AuthService_DisableUser")
        self.assertIs(d["disabled"], True)
        self.assertEqual(self.admin.ok("DELETE", "/v1/users/" + c["id"]), {})
        op("AuthService_DeleteUser")
        st, e = self.admin.error("GET", "/v1/users/" + c["id"])
        self.assertEqual((st, e["code"]), (404, 5))

    def test_api_key_routes(self):
        exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        k = self.admin.post("/v1/apiKeys", {"name": "ci", "role": "user", "expiresAt": exp,
                                            "allowedMethods": ["harness.v1.HealthService/ListTasks"]})
        op("AuthService_CreateApiKey")
        self.assertTrue(k["key"].startswith("hsk_"))
        svc = Rest(self.gw.port, k["key"])
        self.assertIn("tasks", svc.get("/v1/tasks"))
        st, e = svc.error("GET", "/v1/sandboxes")  # outside allowed_methods
        self.assertEqual((st, e["code"]), (403, 7))
        lst = self.admin.get("/v1/apiKeys?pageSize=50&includeRevoked=true")
        op("AuthService_ListApiKeys")
        self.assertIn(k["id"], [x["id"] for x in lst["apiKeys"]])
        self.assertNotIn(k["key"], json.dumps(lst))
        rv = self.admin.post("/v1/apiKeys/%s:revoke" % k["id"])
        op("AuthService_RevokeApiKey")
        self.assertTrue(rv["revokedAt"])
        st, e = svc.error("GET", "/v1/tasks")
        self.assertEqual((st, e["code"]), (401, 16))

    # --- HealthService -----------------------------------------------

    def test_task_routes(self):
        t = self.admin.post("/v1/tasks", {
            "taskId": "rest-t1", "total_steps": "12", "heartbeatIntervalMs": "1000",
            "heartbeatTimeoutMs": 60000, "recoveryPolicy": {"maxAttempts": 2, "backoffMultiplier": 1.5},
            "labels": {"env": "prod", "team": "a"}, "someFutureField": [1]})
        op("HealthService_RegisterTask")
        self.assertEqual(t["taskId"], "rest-t1")
        self.assertEqual(t["state"], "TASK_STATE_RUNNING")
        self.assertEqual(t["totalSteps"], "12")
        self.assertEqual(t["recoveryPolicy"]["maxAttempts"], 2)
        self.assertEqual(t["recoveryPolicy"]["backoffMultiplier"], 1.5)
        self.assertEqual(t["labels"], {"env": "prod", "team": "a"})
        # the path wins over the body's task_id
        hb = self.admin.post("/v1/tasks/rest-t1:heartbeat", {"taskId": "other", "currentStep": "3",
                                                             "cpuUsage": 12.5})
        op("HealthService_Heartbeat")
        self.assertEqual(hb["instruction"], "INSTRUCTION_CONTINUE")
        g = self.admin.get("/v1/tasks/rest-t1")
        op("HealthService_GetTask")
        self.assertEqual(g["currentStep"], "3")
        self.assertEqual(g["cpuUsage"], 12.5)
        # another user's task: refused (harnessd answers PERMISSION_DENIED for
        # tasks today, NOT_FOUND for other resources); a missing one 404
        st, e = self.bob.error("GET", "/v1/tasks/rest-t1")
        self.assertIn((st, e["code"]), ((404, 5), (403, 7)))
        st, e = self.admin.error("GET", "/v1/tasks/no-such-task")
        self.assertEqual((st, e["code"]), (404, 5))
        # a bad field names itself: 400
        st, e = self.admin.error("POST", "/v1/tasks", {"taskId": "bad", "heartbeatIntervalMs": 5000,
                                                        "heartbeatTimeoutMs": 1000})
        self.assertEqual((st, e["code"]), (400, 3))
        self.assertIn("heartbeat_timeout_ms", e["message"])
        st, e = self.admin.error("POST", "/v1/tasks", {"taskId": "rest-t1"})  # exists
        self.assertEqual((st, e["code"]), (409, 6))
        self.admin.post("/v1/tasks", {"taskId": "rest-t2", "labels": {"env": "dev"}})
        # query: enum by name, map entries, page size, tokens
        lst = self.admin.get("/v1/tasks?state=TASK_STATE_RUNNING&labelSelector%5Benv%5D=prod")
        op("HealthService_ListTasks")
        self.assertEqual([x["taskId"] for x in lst["tasks"]], ["rest-t1"])
        page = self.admin.get("/v1/tasks?page_size=1")
        self.assertEqual(len(page["tasks"]), 1)
        self.assertTrue(page["nextPageToken"])
        nxt = self.admin.get("/v1/tasks?pageSize=1&pageToken=" + page["nextPageToken"])
        self.assertNotEqual(nxt["tasks"][0]["taskId"], page["tasks"][0]["taskId"])
        st, e = self.admin.error("GET", "/v1/tasks?state=TASK_STATE_BOGUS")
        self.assertEqual((st, e["code"]), (400, 3))
        self.assertIn("state", e["message"])
        st, e = self.admin.error("GET", "/v1/tasks?pageSize=-1")
        self.assertEqual((st, e["code"]), (400, 3))
        c = self.admin.post("/v1/tasks/rest-t2:complete", {"success": True, "message": "done"})
        op("HealthService_CompleteTask")
        self.assertEqual(c["state"], "TASK_STATE_COMPLETED")
        self.assertEqual(c["resultMessage"], "done")
        st, e = self.admin.error("POST", "/v1/tasks/rest-t2:complete", {"success": True})
        self.assertEqual((st, e["code"]), (400, 9))  # FAILED_PRECONDITION
        x = self.admin.post("/v1/tasks/rest-t1:cancel", {"reason": "test"})
        op("HealthService_CancelTask")
        self.assertEqual(x["state"], "TASK_STATE_CANCELLED")
        st, e = self.admin.error("POST", "/v1/tasks/rest-t1:recover", {"reason": "x"})
        op("HealthService_RecoverTask")
        self.assertEqual((st, e["code"]), (400, 9))
        self.admin.post("/v1/tasks", {"taskId": "rest-t3", "heartbeatIntervalMs": 100,
                                      "heartbeatTimeoutMs": 60000})
        self.admin.post("/v1/tasks/rest-t3/checkpoints", {"step": 1})
        rec = self.admin.post("/v1/tasks/rest-t3:recover", {"reason": "from REST"})
        self.assertEqual(rec["state"], "TASK_STATE_RECOVERING")
        # the stored events of one task, replayed (uint64 query value)
        es = self.admin.stream("/v1/tasks:watch?taskId=rest-t2&afterEventId=1")
        op("HealthService_WatchTasks")
        self.assertEqual(es.status, 200)
        evs = es.messages(2)
        self.assertEqual([d["type"] for _, _, d in evs],
                         ["TASK_EVENT_TYPE_REGISTERED", "TASK_EVENT_TYPE_COMPLETED"])
        self.assertEqual([i for i, _, _ in evs], [d["eventId"] for _, _, d in evs])
        es.close()
        es = self.bob.stream("/v1/tasks:watch?taskId=rest-t2")  # not bob's
        self.assertIn(es.status, (403, 404))
        es.close()

    # --- CheckpointService ---------------------------------------------

    def test_checkpoint_routes(self):
        ws = os.path.join(self.wsroot, "rest-ck")
        os.makedirs(ws, exist_ok=True)
        with open(os.path.join(ws, "a.txt"), "w") as f:
            f.write("one\n")
        state = {"cursor": 7, "nested": {"list": [1, "two", None, True], "deep": {"x": 1.5}}}
        c1 = self.admin.post("/v1/tasks/rest-ck/checkpoints", {
            "step": "1", "description": "first", "externalState": state})["checkpoint"]
        op("CheckpointService_CreateCheckpoint")
        self.assertEqual(c1["step"], "1")
        self.assertEqual(c1["externalState"], state)
        with open(os.path.join(ws, "a.txt"), "w") as f:
            f.write("two\n")
        with open(os.path.join(ws, "b.txt"), "w") as f:
            f.write("new\n")
        c2 = self.admin.post("/v1/tasks/rest-ck/checkpoints", {"step": 2, "description": "second"})["checkpoint"]
        got = self.admin.get("/v1/tasks/rest-ck/checkpoints/" + c1["checkpointId"])
        op("CheckpointService_GetCheckpoint")
        self.assertEqual(got["externalState"], state)
        self.assertEqual(self.admin.get("/v1/tasks/rest-ck/checkpoints:latest")["checkpointId"],
                         c2["checkpointId"])
        op("CheckpointService_GetLatestCheckpoint")
        lst = self.admin.get("/v1/tasks/rest-ck/checkpoints?pageSize=1")
        op("CheckpointService_ListCheckpoints")
        self.assertEqual(len(lst["checkpoints"]), 1)
        self.assertTrue(lst["nextPageToken"])
        older = self.admin.get("/v1/tasks/rest-ck/checkpoints?beforeStep=2")
        self.assertEqual([c["checkpointId"] for c in older["checkpoints"]], [c1["checkpointId"]])
        v = self.admin.get("/v1/tasks/rest-ck/checkpoints:verify")
        op("CheckpointService_VerifyConsistency")
        self.assertIs(v["consistent"], True)
        self.assertEqual(v["checkpointId"], c2["checkpointId"])
        d = self.admin.get("/v1/tasks/rest-ck/checkpoints:diff?fromCheckpointId=%s&to_checkpoint_id=%s"
                           % (c1["checkpointId"], c2["checkpointId"]))
        op("CheckpointService_DiffCheckpoints")
        files = {f["path"]: f["status"] for f in d["files"]}
        self.assertEqual(files, {"a.txt": "FILE_STATUS_MODIFIED", "b.txt": "FILE_STATUS_ADDED"})
        r = self.admin.post("/v1/tasks/rest-ck/checkpoints/%s:restore" % c1["checkpointId"])
        op("CheckpointService_RestoreCheckpoint")
        self.assertEqual(r["checkpoint"]["checkpointId"], c1["checkpointId"])
        with open(os.path.join(ws, "a.txt")) as f:
            self.assertEqual(f.read(), "one\n")
        self.assertFalse(os.path.exists(os.path.join(ws, "b.txt")))
        p = self.admin.post("/v1/tasks/rest-ck/checkpoints:prune", {"keepLast": 1, "dryRun": True})
        op("CheckpointService_PruneCheckpoints")
        self.assertEqual((p["prunedCount"], p["keptCount"], p["bytesFreed"]), (1, 1, "0"))
        self.assertEqual(p["prunedCheckpointIds"], [c1["checkpointId"]])
        # another user: NOT_FOUND; a bad id: 400 or 404, never 500
        st, e = self.bob.error("GET", "/v1/tasks/rest-ck/checkpoints")
        self.assertEqual((st, e["code"]), (404, 5))
        st, e = self.admin.error("GET", "/v1/tasks/rest-ck/checkpoints/ckpt-9-000000000000")
        self.assertEqual((st, e["code"]), (404, 5))
        st, e = self.admin.error("POST", "/v1/tasks/rest-ck/checkpoints", {"step": "x"})
        self.assertEqual((st, e["code"]), (400, 3))
        self.assertIn("step", e["message"])
        st, e = self.admin.error("POST", "/v1/tasks/rest-ck/checkpoints", {"externalState": [1, 2]})
        self.assertEqual((st, e["code"]), (400, 3))
        self.assertIn("external_state", e["message"])

    # --- SandboxService ------------------------------------------------

    def test_sandbox_routes(self):
        sb = self.admin.post("/v1/sandboxes", {
            "sandboxId": "rest-sb", "driver": "bwrap", "ttlSeconds": "600",
            "entrypoint": ["/bin/sh", "-c", "echo hello-from-rest; exec sleep 60"],
            "labels": {"k": "v"}})
        op("SandboxService_CreateSandbox")
        self.assertEqual(sb["state"], "SANDBOX_STATE_CREATED")
        self.assertEqual(sb["ttlSeconds"], "600")
        s = self.admin.post("/v1/sandboxes/rest-sb:start")
        op("SandboxService_StartSandbox")
        self.assertEqual(s["state"], "SANDBOX_STATE_RUNNING")
        self.assertGreater(s["pid"], 0)
        self.assertEqual(self.admin.get("/v1/sandboxes/rest-sb")["sandboxId"], "rest-sb")
        op("SandboxService_GetSandbox")
        lst = self.admin.get("/v1/sandboxes?state=SANDBOX_STATE_RUNNING&labelSelector[k]=v")
        op("SandboxService_ListSandboxes")
        self.assertEqual([x["sandboxId"] for x in lst["sandboxes"]], ["rest-sb"])
        self.assertEqual(self.admin.get("/v1/sandboxes?labelSelector[k]=other")["sandboxes"], [])
        self.assertEqual(self.admin.post("/v1/sandboxes/rest-sb:pause")["state"], "SANDBOX_STATE_PAUSED")
        op("SandboxService_PauseSandbox")
        self.assertEqual(self.admin.post("/v1/sandboxes/rest-sb:resume")["state"], "SANDBOX_STATE_RUNNING")
        op("SandboxService_ResumeSandbox")
        # memory snapshots: FAILED_PRECONDITION on bwrap (400)
        st, e = self.admin.error("POST", "/v1/sandboxes/rest-sb/snapshots",
                                 {"snapshotType": "SNAPSHOT_TYPE_FULL"})
        op("SandboxService_SnapshotSandbox")
        self.assertEqual((st, e["code"]), (400, 9))
        st, e = self.admin.error("POST", "/v1/sandboxes/rest-sb:restore", {"snapshotId": "x"})
        op("SandboxService_RestoreSandbox")
        self.assertIn(st, (400, 404))
        self.assertEqual(self.admin.get("/v1/sandboxes/rest-sb/snapshots"), {"snapshots": []})
        op("SandboxService_ListSnapshots")
        # the log as an event stream: base64 chunks, then a clean end
        wait_until(lambda: b"hello-from-rest" in self._logs("rest-sb"), what="sandbox output")
        op("SandboxService_GetSandboxLogs")
        # another user's sandbox: NOT_FOUND (also its log stream)
        st, e = self.bob.error("GET", "/v1/sandboxes/rest-sb")
        self.assertEqual((st, e["code"]), (404, 5))
        es = self.bob.stream("/v1/sandboxes/rest-sb/logs")
        self.assertEqual(es.status, 404)
        self.assertEqual(es.error()["code"], 5)
        es.close()
        d = self.admin.ok("DELETE", "/v1/sandboxes/rest-sb?gracePeriodMs=100")
        op("SandboxService_DestroySandbox")
        self.assertEqual(d["state"], "SANDBOX_STATE_DESTROYED")

    def _logs(self, sb):
        es = self.admin.stream("/v1/sandboxes/%s/logs?tailBytes=4096" % sb)
        try:
            self.assertEqual(es.status, 200)
            self.assertTrue(es.header("content-type").startswith("text/event-stream"))
            out = b""
            while True:
                ev = es.next()
                self.assertIsNotNone(ev, "the stream must end with an end event")
                ev_id, name, data = ev
                if name == "end":
                    self.assertEqual(data["code"], 0)
                    return out
                self.assertIsNone(ev_id)  # logs do not resume by event id
                out += base64.b64decode(data["data"])
        finally:
            es.close()

    # --- grpc.health.v1 ------------------------------------------------

    def test_grpc_health_routes(self):
        anon = Rest(self.gw.port)
        self.assertEqual(anon.get("/v1/health"), {"status": "SERVING"})
        op("Health_Check")
        self.assertEqual(anon.get("/v1/health?service=harness.v1.HealthService")["status"], "SERVING")
        st, e = anon.error("GET", "/v1/health?service=no.such.Service")
        self.assertEqual((st, e["code"]), (404, 5))
        es = anon.stream("/v1/health:watch")
        op("Health_Watch")
        self.assertEqual(es.status, 200)
        _, name, data = es.next()
        self.assertEqual((name, data), ("message", {"status": "SERVING"}))
        es.close()

    # --- the gateway's own refusals -------------------------------------

    def test_gateway_errors_are_status_shaped(self):
        a = self.admin
        st, e = a.error("GET", "/v1/nothing/here")
        self.assertEqual((st, e["code"]), (404, 5))
        r = a.request("PUT", "/v1/tasks/x")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET, OPTIONS")
        self.assertEqual(r.json()["code"], 12)
        # body rules: JSON only (415), well-formed (400), capped (413)
        r = a.request("POST", "/v1/tasks", raw=b"taskId=x",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((r.status, r.json()["code"]), (415, 3))
        r = a.request("POST", "/v1/tasks", raw=b'{"taskId":', headers={"Content-Type": "application/json"})
        self.assertEqual((r.status, r.json()["code"]), (400, 3))
        self.assertIn("malformed JSON", r.json()["message"])
        r = a.request("POST", "/v1/tasks", raw=b'{"taskId":"' + b"x" * 20000 + b'"}',
                      headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 413)
        r = a.request("GET", "/v1/tasks/x", raw=b"{}", headers={"Content-Type": "application/json"})
        self.assertEqual((r.status, r.json()["code"]), (400, 3))
        # CSRF on state-changing routes: a cross-site page is refused (403),
        # the gateway's own origin (the console) and listed origins are not
        r = a.request("POST", "/v1/tasks", {"taskId": "csrf-1"}, headers={"Origin": "https://evil.example"})
        self.assertEqual((r.status, r.json()["code"]), (403, 7))
        r = a.request("DELETE", "/v1/sandboxes/x", headers={"Sec-Fetch-Site": "cross-site"})
        self.assertEqual((r.status, r.json()["code"]), (403, 7))
        own = "http://127.0.0.1:%d" % self.gw.port
        r = a.request("POST", "/v1/tasks", {"taskId": "csrf-2"}, headers={"Origin": own})
        self.assertEqual(r.status, 200, r.text)
        r = a.request("POST", "/v1/tasks", {"taskId": "csrf-3"},
                      headers={"Origin": own, "Host": "evil.example:%d" % self.gw.port})
        self.assertEqual(r.status, 403)
        # the request id: ours when given, a new one otherwise
        r = a.request("GET", "/v1/tasks/csrf-2", headers={"X-Request-Id": "req-abc.123"})
        self.assertEqual(r.header("x-request-id"), "req-abc.123")
        for bad in ("bad id", "x" * 65):
            r = a.request("GET", "/v1/tasks/csrf-2", headers={"X-Request-Id": bad})
            self.assertRegex(r.header("x-request-id"), r"^[0-9a-f]{32}$")
        self.assertEqual(r.header("cache-control"), "no-store")
        # the seed's routes keep the seed's shape
        r = a.request("GET", "/api/v1/nothing")
        self.assertEqual(r.json(), {"code": "NOT_FOUND", "message": "Route not found"})

    def test_harnessd_unreachable_is_503(self):
        hd = hstest.Harnessd()
        gw = start_gateway(hd)
        try:
            tok = Rest(gw.port).post("/v1/auth:login", {"email": ADMIN[0], "password": ADMIN[1]})["accessToken"]
            hd.close()
            st, e = Rest(gw.port, tok).error("GET", "/v1/tasks")
            self.assertEqual((st, e["code"]), (503, 14))
            es = Rest(gw.port, tok).stream("/v1/tasks:watch")
            self.assertEqual(es.status, 503)
            es.close()
            self.assertEqual(gw.request("GET", "/health").status, 503)
        finally:
            gw.stop()

    def test_zz_every_route_was_exercised(self):
        doc = json.loads(Rest(self.gw.port).request("GET", "/openapi.json").body)
        ops = {o["operationId"] for p in doc["paths"].values() for o in p.values()
               if not o["operationId"].startswith("Gateway_")}
        if len(COVERED) < len(ops) - 3:
            self.skipTest("run with the whole module")
        self.assertEqual(ops - COVERED, set())


    def test_answers_keep_the_connection_as_http_says(self):
        """The head and body go out in one write (gateway/http_io.c); the
        connection is kept or closed as HTTP/1.0 and 1.1 say, and a HEAD
        answer carries the length but no body."""
        import socket

        def exchange(request, n_requests=1):
            s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=10)
            try:
                s.sendall(request * n_requests)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        return data, True  # the gateway closed
                    data += chunk
                    if data.count(b"HTTP/1.1 ") >= n_requests and data.endswith(b"}"):
                        try:
                            s.settimeout(0.5)
                            more = s.recv(65536)
                            if not more:
                                return data, True
                            data += more
                        except socket.timeout:
                            return data, False
            finally:
                s.close()
        # HTTP/1.1, two pipelined requests on one connection: both answered, kept open
        data, closed = exchange(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 2)
        self.assertEqual(data.count(b"HTTP/1.1 200"), 2, data)
        self.assertIn(b"Connection: keep-alive", data)
        self.assertFalse(closed)
        # HTTP/1.1 with Connection: close, and HTTP/1.0 without keep-alive: closed
        for req in (b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    b"GET /health HTTP/1.0\r\n\r\n"):
            data, closed = exchange(req)
            self.assertIn(b"Connection: close", data)
            self.assertTrue(closed, req)
        # HTTP/1.0 asking for keep-alive: kept
        data, closed = exchange(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertIn(b"Connection: keep-alive", data)
        self.assertFalse(closed)
        # every header line well formed, one blank line, the body's length exact
        head, _, body = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n")[1:]:
            self.assertRegex(line, rb"^[A-Za-z0-9-]+: [^\r\n]*$")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        self.assertEqual(len(body), length)


class StreamTest(unittest.TestCase):
    """Server-Sent Events: resume with Last-Event-ID, bounds, lifetime."""

    @classmethod
    def setUpClass(cls):
        cls.hd = hstest.Harnessd()
        cls.gw = start_gateway(cls.hd, ["--sse-max-streams", "3", "--sse-max-per-client", "2",
                                        "--sse-keepalive-ms", "200"])
        cls.admin = Rest(cls.gw.port, Rest(cls.gw.port).post("/v1/auth:login", {
            "email": ADMIN[0], "password": ADMIN[1]})["accessToken"])
        cls.health = hstest.ServiceClient(cls.hd.channel, health_pb2, "HealthService",
                                          cls.admin.token)

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.hd.close()

    def test_reconnect_with_last_event_id_loses_and_repeats_nothing(self):
        es = self.admin.stream("/v1/tasks:watch?sendInitial=true&taskId=")
        self.assertEqual(es.status, 200)
        self.assertEqual(es.header("cache-control"), "no-store")
        self.health.RegisterTask(task_id="sse-a")
        self.health.RegisterTask(task_id="sse-b")
        got = []
        while len(got) < 2:
            ev_id, name, data = es.next()
            if data["type"] == "TASK_EVENT_TYPE_INITIAL_STATE":
                continue
            self.assertEqual(ev_id, data["eventId"])  # the SSE id is the event id
            got.append((ev_id, data["taskId"], data["type"]))
        self.assertEqual([g[1] for g in got], ["sse-a", "sse-b"])
        self.assertEqual(es.retry, 3000)
        es.close()
        # while nobody listens
        self.health.RegisterTask(task_id="sse-c")
        self.health.Heartbeat(task_id="sse-a", current_step=1)  # not an event
        self.health.CompleteTask(task_id="sse-a", success=True)
        # an EventSource reconnects to the same URL with Last-Event-ID: the
        # events after it, in order, none twice, no initial state again
        es = self.admin.stream("/v1/tasks:watch?sendInitial=true&taskId=", last_event_id=got[-1][0])
        self.assertEqual(es.status, 200)
        after = es.messages(2)
        self.assertEqual([(d["taskId"], d["type"]) for _, _, d in after],
                         [("sse-c", "TASK_EVENT_TYPE_REGISTERED"), ("sse-a", "TASK_EVENT_TYPE_COMPLETED")])
        self.assertEqual([int(i) for i, _, _ in after], sorted(int(i) for i, _, _ in after))
        self.assertGreater(int(after[0][0]), int(got[-1][0]))
        self.health.CancelTask(task_id="sse-b")
        ev_id, _, d = es.next()
        self.assertEqual((d["taskId"], d["type"]), ("sse-b", "TASK_EVENT_TYPE_CANCELLED"))
        es.close()
        es = self.admin.stream("/v1/tasks:watch", last_event_id="12x")
        self.assertEqual((es.status, es.error()["code"]), (400, 3))
        es.close()

    def test_streams_are_bounded_per_client_and_in_total(self):
        a1 = self.admin.stream("/v1/health:watch")
        a2 = self.admin.stream("/v1/health:watch")
        self.assertEqual((a1.status, a2.status), (200, 200))
        a3 = self.admin.stream("/v1/health:watch")
        self.assertEqual((a3.status, a3.error()["code"]), (429, 8))
        a3.close()
        b = Rest(self.gw.port, self.admin.token, source="127.0.0.2")
        b1 = b.stream("/v1/health:watch")
        self.assertEqual(b1.status, 200)
        c = Rest(self.gw.port, self.admin.token, source="127.0.0.3")
        c1 = c.stream("/v1/health:watch")
        self.assertEqual((c1.status, c1.error()["code"]), (429, 8))
        c1.close()
        # requests still have their workers
        self.assertEqual(self.admin.get("/v1/health")["status"], "SERVING")
        # a client that goes away frees its slot (found at the next keep-alive)
        a1.close()

        def reopened():
            s = c.stream("/v1/health:watch")
            if s.status == 200:
                return s
            s.close()
            return None
        c2 = wait_until(reopened, what="a freed stream slot")
        for s in (a2, b1, c2):
            self.assertIsNotNone(s.next())
            s.close()
        # keep-alive comments flow on an idle stream
        def opened():
            s = self.admin.stream("/v1/tasks:watch?taskId=")
            if s.status == 200:
                return s
            s.close()
            return None
        s = wait_until(opened, what="a freed stream slot")
        wait_until(lambda: s.resp.fp.readline().startswith(b": keep-alive"), what="a keep-alive")
        s.close()

    def test_stream_lifetime(self):
        gw = start_gateway(self.hd, ["--sse-max-seconds", "1"])
        try:
            t0 = time.monotonic()  # before the stream opens: the lifetime is a lower bound
            es = Rest(gw.port, self.admin.token).stream("/v1/tasks:watch")
            self.assertIsNone(es.next())  # closed without an end event: the client reconnects
            self.assertGreaterEqual(time.monotonic() - t0, 0.9)
            es.close()
        finally:
            self.assertEqual(gw.stop(), 0)

    def test_harnessd_ending_a_stream_is_an_end_event(self):
        hd = hstest.Harnessd()
        gw = start_gateway(hd)
        try:
            tok = Rest(gw.port).post("/v1/auth:login", {"email": ADMIN[0], "password": ADMIN[1]})["accessToken"]
            es = Rest(gw.port, tok).stream("/v1/health:watch")
            self.assertEqual(es.next()[2], {"status": "SERVING"})
            hd.close()  # shutdown: NOT_SERVING, then the stream ends UNAVAILABLE
            ev = es.next()
            while ev is not None and ev[1] != "end":
                ev = es.next()
            self.assertIsNotNone(ev)
            self.assertEqual(ev[2]["code"], 14)
            es.close()
        finally:
            self.assertEqual(gw.stop(), 0)

    def test_gateway_stop_ends_open_streams(self):
        gw = start_gateway(self.hd)
        es = Rest(gw.port, self.admin.token).stream("/v1/tasks:watch")
        self.assertEqual(es.status, 200)
        gw.proc.send_signal(signal.SIGTERM)
        self.assertIsNone(es.next())
        self.assertEqual(gw.stop(), 0)
        es.close()


if __name__ == "__main__":
    unittest.main()
