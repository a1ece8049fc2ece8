"""Second red-team pass as a hostile second tenant (bob next to alice, the
admin watching everything) over gRPC with raw protobuf bytes and over the
REST gateway: the REAL harnessd and gateway on loopback. Each test is an
attack that once worked; docs/security.md records each finding."""
import time
import unittest

import grpc

import hstest
from harness.v1 import health_pb2
from hsstd import health_pb2 as std_health_pb2
from resthelp import Rest
from test_rest import ADMIN, start_gateway


def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([b])
        out += bytes([b | 0x80])


def field(num, value):
    """A length-delimited protobuf field (bytes as given: no UTF-8 check,
    unlike the python protobuf runtime)."""
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


class RedTeamTest(unittest.TestCase):
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
        cls.admin_token = r["accessToken"]
        cls.admin = Rest(cls.gw.port, cls.admin_token)
        cls.a, cls.a_token = cls.user("alice")
        cls.b, cls.b_token = cls.user("bob")

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.hd.close()

    @classmethod
    def user(cls, name):
        cls.admin.post("/v1/users", {"email": name + "@example.com", "name": name,
                                     "password": name + "-password-1", "role": "user"})
        token = cls.anon.post("/v1/auth:login", {"email": name + "@example.com",
                                                 "password": name + "-password-1"})["accessToken"]
        return Rest(cls.gw.port, token), token

    def grpc_raw(self, method, data, token):
        """(code, details or reply bytes) of a raw unary call."""
        fn = hstest.raw(self.hd.channel, method)
        try:
            return grpc.StatusCode.OK, fn(data, metadata=[("authorization", "Bearer " + token)],
                                          timeout=30 * hstest.SLOW)
        except grpc.RpcError as e:
            return e.code(), e.details()

    def test_invalid_utf8_strings_are_refused(self):
        """Bob's heartbeat details and cancel reason with bytes that are not
        UTF-8 were stored as sent; every later GetTask/ListTasks/WatchTasks
        reply carrying them failed to parse in proto3 clients (grpcio) and
        the gateway answered 500 for the admin's GET /v1/tasks, so one
        tenant broke the admin's task listing. Now every request string is
        checked as protobuf's own parsers check it (server/rpc/decode.c),
        on every RPC: INVALID_ARGUMENT naming the field."""
        H = "/harness.v1.HealthService/"
        self.b.post("/v1/tasks", {"taskId": "rt-utf8"})
        bad = b"x\xff\xfe\x1b[31m"
        for method, data, name in [
                ("Heartbeat", field(1, "rt-utf8") + field(7, bad), "details"),
                ("CancelTask", field(1, "rt-utf8") + field(2, bad), "reason"),
                ("CompleteTask", field(1, "rt-utf8") + field(3, bad), "message"),
                ("RegisterTask", field(1, "rt-utf8-2") + field(8, field(1, "k") + field(2, bad)),
                 "labels")]:
            code, details = self.grpc_raw(H + method, data, self.b_token)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, (method, details))
            self.assertEqual(details, "%s: not valid UTF-8" % name)
        # Another service and a nested message (a Struct's string value).
        code, details = self.grpc_raw(
            "/harness.v1.CheckpointService/CreateCheckpoint",
            field(1, "rt-utf8") + field(4, field(1, field(1, "k") + field(2, field(3, b"\xc0\x80")))),
            self.b_token)
        self.assertEqual((code, details), (grpc.StatusCode.INVALID_ARGUMENT,
                                           "external_state: not valid UTF-8"))
        # The admin's listings still parse: grpcio with the generated classes and REST.
        md = [("authorization", "Bearer " + self.admin_token)]
        lst = hstest.stub(self.hd.channel, H + "ListTasks", health_pb2.ListTasksRequest,
                          health_pb2.ListTasksResponse)
        self.assertIn("rt-utf8", [t.task_id for t in lst(health_pb2.ListTasksRequest(page_size=1000),
                                                         metadata=md, timeout=30).tasks])
        r = self.admin.request("GET", "/v1/tasks?pageSize=1000")
        self.assertEqual(r.status, 200, r.text)
        # Valid text of any script still passes.
        code, _ = self.grpc_raw(H + "Heartbeat", field(1, "rt-utf8") + field(7, "d\u00e9j\u00e0 \U0001F600"),
                                self.b_token)
        self.assertEqual(code, grpc.StatusCode.OK)

    def admin_user(self, name):
        """A second admin: (its Rest client, its id)."""
        u = self.admin.post("/v1/users", {"email": name + "@example.com", "name": name,
                                          "password": name + "-password-1", "role": "admin"})
        token = self.anon.post("/v1/auth:login", {"email": name + "@example.com",
                                                  "password": name + "-password-1"})["accessToken"]
        return Rest(self.gw.port, token), u["id"]

    def key(self, creator, name, role="admin"):
        k = creator.post("/v1/apiKeys", {"name": name, "role": role})["key"]
        self.assertEqual(Rest(self.gw.port, k).request("GET", "/v1/auth:whoami").status, 200)
        return k

    def assert_dead(self, *keys):
        for k in keys:
            r = Rest(self.gw.port, k).request("GET", "/v1/auth:whoami")
            self.assertEqual(r.status, 401, r.text)

    def test_keys_end_with_their_creators_authority(self):
        """An admin made API keys (one of them admin-role) and, with that
        key, another key; then it was disabled (or deleted). Every key it
        made kept working with its role: the disabled admin's key still
        created new admin users. Now DisableUser and DeleteUser revoke the
        keys the user made and the keys those made, and RevokeApiKey takes
        the keys a key made with it."""
        eve, eve_id = self.admin_user("eve")
        k1 = self.key(eve, "eve-admin")
        k2 = self.key(Rest(self.gw.port, k1), "made-by-key", role="user")
        k3 = self.key(eve, "eve-user", role="user")
        keep = self.key(self.admin, "admins-own")
        self.admin.post("/v1/users/%s:disable" % eve_id)
        self.assert_dead(k1, k2, k3)
        r = Rest(self.gw.port, k1).request("POST", "/v1/users", {
            "email": "mallory@example.com", "name": "m", "password": "mallory-password-1",
            "role": "admin"})
        self.assertEqual(r.status, 401, r.text)
        ids = {k["name"]: k for k in self.admin.get("/v1/apiKeys?includeRevoked=true")["apiKeys"]}
        for name in ("eve-admin", "made-by-key", "eve-user"):
            self.assertTrue(ids[name].get("revokedAt"), name)
        self.assertFalse(ids["admins-own"].get("revokedAt"))

        frank, frank_id = self.admin_user("frank")
        k4 = self.key(frank, "frank-admin")
        self.admin.request("DELETE", "/v1/users/%s" % frank_id)
        self.assert_dead(k4)

        k5 = self.key(self.admin, "parent")
        k6 = self.key(Rest(self.gw.port, k5), "child")
        k7 = self.key(Rest(self.gw.port, k6), "grandchild", role="user")
        self.admin.post("/v1/apiKeys/%s:revoke" % k5[:20])  # the id: "hsk_" + 16 hex
        self.assert_dead(k5, k6, k7)
        r = Rest(self.gw.port, keep).request("GET", "/v1/auth:whoami")
        self.assertEqual(r.status, 200, r.text)


    def test_anonymous_streams_are_bounded(self):
        """An anonymous client opened grpc.health.v1 Watch streams (public,
        no credential) without limit: each held ~17 KB of harnessd's memory
        for as long as it stayed open (4,000 streams: +70 MB), so a few
        connections could grow harnessd until it was killed. Now one peer
        address holds at most --user-max-streams (256) open streams and
        anonymous callers together 1024: the next one is
        RESOURCE_EXHAUSTED, and a closed stream frees its slot."""
        chans = [grpc.insecure_channel(self.hd.target) for _ in range(3)]
        try:
            calls = []
            for i in range(300):
                w = chans[i % 3].unary_stream(
                    "/grpc.health.v1.Health/Watch",
                    request_serializer=std_health_pb2.HealthCheckRequest.SerializeToString,
                    response_deserializer=std_health_pb2.HealthCheckResponse.FromString)
                calls.append(w(std_health_pb2.HealthCheckRequest(service=""), timeout=60 * hstest.SLOW))
            served, refused = 0, 0
            for c in calls:
                try:
                    next(c)
                    served += 1
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
                    refused += 1
            self.assertEqual((served, refused), (256, 44))
            # Authenticated calls are not affected; closing streams frees slots.
            self.assertEqual(self.b.request("GET", "/v1/auth:whoami").status, 200)
            for c in calls:
                c.cancel()
            w = chans[0].unary_stream(
                "/grpc.health.v1.Health/Watch",
                request_serializer=std_health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=std_health_pb2.HealthCheckResponse.FromString)
            deadline = time.monotonic() + 30 * hstest.SLOW
            while True:  # cancellations reach harnessd asynchronously
                c = w(std_health_pb2.HealthCheckRequest(service=""), timeout=30 * hstest.SLOW)
                try:
                    next(c)
                    c.cancel()
                    break
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                    self.assertLess(time.monotonic(), deadline, "slots never freed")
                    time.sleep(0.1)
        finally:
            for ch in chans:
                ch.close()


    def test_error_text_cut_mid_character_stays_utf8(self):
        """Bob's sandbox entrypoint of 100 "\u00e9" failed to start; the
        error quotes it cut to 128 bytes ("%.128s"), which split a
        character. That message became the sandbox's failure_reason, so
        GetSandbox answered 500 on the gateway (and grpcio could not parse
        it), and so did the admin's GET /v1/sandboxes for every sandbox of
        every user. Now every error message is repaired to valid UTF-8
        where it is made (common/error.c)."""
        self.b.post("/v1/tasks", {"taskId": "rt-cut"})
        self.b.post("/v1/sandboxes", {"sandboxId": "rt-cut", "taskId": "rt-cut",
                                      "entrypoint": ["/nonexistent/a" + "\u00e9" * 100]})
        r = self.b.request("POST", "/v1/sandboxes/rt-cut:start", {})
        self.assertEqual(r.status, 400, r.text)
        self.assertIn("/nonexistent/a\u00e9", r.json()["message"])
        r = self.b.request("GET", "/v1/sandboxes/rt-cut")
        self.assertEqual(r.status, 200, r.text)
        self.assertIn("\u00e9", r.json()["failureReason"])
        r = self.admin.request("GET", "/v1/sandboxes?pageSize=1000")
        self.assertEqual(r.status, 200, r.text)
        from harness.v1 import sandbox_pb2
        get = hstest.stub(self.hd.channel, "/harness.v1.SandboxService/GetSandbox",
                          sandbox_pb2.GetSandboxRequest, sandbox_pb2.Sandbox)
        sb = get(sandbox_pb2.GetSandboxRequest(sandbox_id="rt-cut"),
                 metadata=[("authorization", "Bearer " + self.b_token)], timeout=30)
        self.assertEqual(sb.sandbox_id, "rt-cut")


    def test_harnessctl_prints_no_terminal_controls(self):
        """Bob cancelled his task with a reason holding terminal escapes
        (retitle the window, clear the screen, a C1 CSI, CR LF and a forged
        row); the admin's `harnessctl task get` printed them raw into the
        admin's terminal. Tables now show control characters escaped
        (clients/harnessctl/table.c), and -o json/yaml, which escaped C0
        controls already, escape C1 controls too."""
        import os
        import subprocess
        import tempfile
        self.b.post("/v1/tasks", {"taskId": "rt-esc"})
        reason = "ok\x1b]0;pwned\x07\x1b[2J\u009b31m\r\nFAKE ROW"
        self.b.post("/v1/tasks/rt-esc:cancel", {"reason": reason})
        with tempfile.TemporaryDirectory(prefix="hs-rt-ctl-") as home:
            env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
            env.update(HOME=home, HARNESS_SERVER=self.hd.target, HARNESS_TOKEN=self.admin_token,
                       HARNESS_TOKEN_FILE=os.path.join(home, "token"))
            outs = {}
            for args in (["task", "get", "rt-esc"], ["task", "list"], ["task", "get", "rt-esc", "-o", "yaml"],
                         ["task", "get", "rt-esc", "-o", "json"]):
                r = subprocess.run([hstest.HARNESSCTL] + args, env=env, capture_output=True,
                                   timeout=30 * hstest.SLOW)
                self.assertEqual(r.returncode, 0, r.stderr)
                outs[args[1] + args[-1]] = out = r.stdout.decode()
                self.assertNotRegex(out, "[\x00-\x09\x0b-\x1f\x7f\x80-\x9f]", args)
            self.assertIn("ok\\x1b]0;pwned\\x07\\x1b[2J\\u009b31m\\x0d\\x0aFAKE ROW",
                          outs["getrt-esc"])


    def test_file_names_that_are_not_utf8_are_reported(self):
        """A file whose name is not UTF-8 in bob's workspace (an agent can
        make one) made VerifyConsistency and DiffCheckpoints of that task
        answer 500 on the gateway and unparseable replies over gRPC, for
        bob and for an admin inspecting the task. Names are now reported
        with such bytes as '?' (the checkpoint itself keeps the real
        name)."""
        import os
        self.b.post("/v1/tasks", {"taskId": "rt-names"})
        ws = os.path.join(self.hd.data_dir, "workspaces", "rt-names")
        os.makedirs(ws, exist_ok=True)
        with open(os.path.join(ws, "good.txt"), "w") as f:
            f.write("x")
        c1 = self.b.post("/v1/tasks/rt-names/checkpoints", {"step": 1})["checkpoint"]["checkpointId"]
        with open(os.path.join(ws.encode(), b"bad\xff\xfe.txt"), "w") as f:
            f.write("y")
        for who in (self.b, self.admin):
            r = who.request("GET", "/v1/tasks/rt-names/checkpoints:verify")
            self.assertEqual(r.status, 200, r.text)
            self.assertEqual(r.json()["added"], ["bad??.txt"])
        c2 = self.b.post("/v1/tasks/rt-names/checkpoints", {"step": 2})["checkpoint"]["checkpointId"]
        r = self.admin.request("GET", "/v1/tasks/rt-names/checkpoints:diff?fromCheckpointId=%s"
                               "&toCheckpointId=%s" % (c1, c2))
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual([f["path"] for f in r.json()["files"]], ["bad??.txt"])


if __name__ == "__main__":
    unittest.main()
