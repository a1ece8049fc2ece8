"""Identities of services and of the upstream user service's keys, against
a real harnessd through grpcio:

* API keys: created by an admin and shown once, used as a bearer token,
  listed without their secret, revoked at once, expiring, surviving a
  restart with their last-used time; the authorization matrix of a key's
  role and allowed_methods.
* JWKS: the user service rotates its signing keys (RS256 -> ES256 -> RS256,
  old keys dropped) and harnessd follows through --jwt-jwks-url, while
  tokens with made-up kids cost at most one fetch per second."""
import base64
import json
import os
import tempfile
import time
import unittest

import grpc
from google.protobuf import timestamp_pb2

from harness.v1 import auth_pb2, health_pb2, sandbox_pb2
import hstest
from test_auth import API_KEY, UserServiceDouble

ADMIN = ("admin@example.com", "admin-password-1")
T = 30 * hstest.SLOW


def fails(fn, **kw):
    try:
        fn(**kw)
    except grpc.RpcError as e:
        return e.code(), e.details()
    raise AssertionError("the call succeeded")


class ApiKeyTest(hstest.HarnessTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.admin_token = hstest.login(cls.channel, *ADMIN)
        cls.admin = hstest.ServiceClient(cls.channel, auth_pb2, "AuthService", cls.admin_token)
        cls.admin_id = cls.admin.WhoAmI().id
        cls.admin.CreateUser(email="bob@example.com", password="bob-password-1", role="user")
        cls.bob_token = hstest.login(cls.channel, "bob@example.com", "bob-password-1")
        hstest.ServiceClient(cls.channel, health_pb2, "HealthService", cls.admin_token).RegisterTask(
            task_id="admins-task-ak", heartbeat_interval_ms=60000, heartbeat_timeout_ms=120000)

    def create(self, name, **kw):
        return self.admin.CreateApiKey(name=name, **kw)

    def as_key(self, key, service="AuthService", pb2=auth_pb2):
        return hstest.ServiceClient(self.channel, pb2, service, key)

    def test_create_use_list_revoke(self):
        r = self.create("ci-runner")
        self.assertRegex(r.id, r"^hsk_[0-9a-f]{16}$")
        self.assertRegex(r.key, r"^hsk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")
        self.assertTrue(r.key.startswith(r.id + "_"))
        self.assertEqual(r.api_key.created_by, self.admin_id)
        self.assertEqual(r.api_key.role, "user")
        self.assertFalse(r.api_key.HasField("expires_at"))
        me = self.as_key(r.key).WhoAmI()
        self.assertEqual((me.id, me.role, me.name, me.email), (r.id, "user", "ci-runner", ""))
        # listed without the secret, with its last use
        listed = self.admin.ListApiKeys(page_size=1000)
        k = next(k for k in listed.api_keys if k.id == r.id)
        self.assertTrue(k.HasField("last_used_at"))
        self.assertNotIn(r.key[len(r.id) + 1:].encode(), listed.SerializeToString())
        # revoked: refused at once
        rev = self.admin.RevokeApiKey(id=r.id)
        self.assertTrue(rev.HasField("revoked_at"))
        code, details = self.as_key(r.key).error("WhoAmI")
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
        self.assertIn("invalid API key", details)
        self.assertEqual(self.admin.RevokeApiKey(id=r.id).revoked_at, rev.revoked_at)  # idempotent
        self.assertEqual(self.admin.error("RevokeApiKey", id="hsk_0000000000000000")[0],
                         grpc.StatusCode.NOT_FOUND)
        self.assertNotIn(r.id, [k.id for k in self.admin.ListApiKeys(page_size=1000).api_keys])
        self.assertIn(r.id, [k.id for k in self.admin.ListApiKeys(page_size=1000,
                                                                   include_revoked=True).api_keys])

    def test_a_wrong_secret_is_refused(self):
        r = self.create("typo")
        bad = r.key[:-1] + ("A" if r.key[-1] != "A" else "B")
        self.assertEqual(self.as_key(bad).error("WhoAmI")[0], grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(self.as_key(r.key + "x").error("WhoAmI")[0], grpc.StatusCode.UNAUTHENTICATED)

    def test_only_admins_manage_keys(self):
        user_key = self.create("plain").key
        for token in (self.bob_token, user_key):
            c = hstest.ServiceClient(self.channel, auth_pb2, "AuthService", token)
            self.assertEqual(fails(c.CreateApiKey, name="x")[0], grpc.StatusCode.PERMISSION_DENIED)
            self.assertEqual(c.error("ListApiKeys")[0], grpc.StatusCode.PERMISSION_DENIED)
            self.assertEqual(c.error("RevokeApiKey", id="hsk_0000000000000000")[0],
                             grpc.StatusCode.PERMISSION_DENIED)

    def test_bad_requests_name_the_field(self):
        past = timestamp_pb2.Timestamp(seconds=int(time.time()) - 60)
        cases = [
            (dict(name=""), "name"),
            (dict(name="x" * 201), "name"),
            (dict(name="x", role="root"), "role"),
            (dict(name="x", expires_at=past), "expires_at"),
            (dict(name="x", allowed_methods=["harness.v1.Nope/Method"]), "allowed_methods"),
            (dict(name="x", allowed_methods=["harness.v1.AuthService/Nope"]), "allowed_methods"),
            (dict(name="x", allowed_methods=["WhoAmI"]), "allowed_methods"),
            (dict(name="x", allowed_methods=["harness.v1.AuthService/WhoAmI"] * 65), "allowed_methods"),
        ]
        for fields, field in cases:
            code, details = fails(self.admin.CreateApiKey, **fields)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, fields)
            self.assertTrue(details.startswith(field), (fields, details))
        code, details = self.admin.error("ListApiKeys", page_token="../x")
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("page_token", details)

    def test_paging(self):
        ids = sorted(self.create("page-%d" % i).id for i in range(3))
        seen, token = [], ""
        while True:
            page = self.admin.ListApiKeys(page_size=2, page_token=token)
            seen += [k.id for k in page.api_keys]
            self.assertLessEqual(len(page.api_keys), 2)
            if not page.next_page_token:
                break
            token = page.next_page_token
        self.assertEqual(seen, sorted(seen))
        self.assertTrue(set(ids) <= set(seen))

    def test_user_key_matrix(self):
        key = self.create("worker").key
        kid = self.as_key(key).WhoAmI().id
        tasks = self.as_key(key, "HealthService", health_pb2)
        tasks.RegisterTask(task_id="key-task", heartbeat_interval_ms=60000, heartbeat_timeout_ms=120000)
        self.assertEqual(tasks.GetTask(task_id="key-task").owner, kid)  # owned by the key
        self.assertEqual({t.task_id for t in tasks.ListTasks(page_size=1000).tasks}, {"key-task"})
        code, _ = tasks.error("GetTask", task_id="admins-task-ak")
        self.assertIn(code, (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED))
        a = self.as_key(key)
        self.assertEqual(a.error("CreateUser", email="x@example.com", password="pw-123456")[0],
                         grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(a.error("GetUser", id=self.admin_id)[0], grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(a.GetUser(id=kid).name, "worker")  # itself
        sb = self.as_key(key, "SandboxService", sandbox_pb2)
        self.assertEqual(list(sb.ListSandboxes().sandboxes), [])
        # bob (a person) sees none of the key's tasks, the admin sees them
        bob = hstest.ServiceClient(self.channel, health_pb2, "HealthService", self.bob_token)
        self.assertNotIn("key-task", {t.task_id for t in bob.ListTasks(page_size=1000).tasks})
        admin_tasks = hstest.ServiceClient(self.channel, health_pb2, "HealthService", self.admin_token)
        self.assertEqual(admin_tasks.GetTask(task_id="key-task").owner, kid)

    def test_admin_key_matrix(self):
        key = self.create("ops", role="admin").key
        a = self.as_key(key)
        self.assertEqual(a.WhoAmI().role, "admin")
        self.assertEqual(a.CreateUser(email="carol@example.com", password="carol-pw-1").email,
                         "carol@example.com")
        self.assertTrue(a.ListApiKeys().api_keys)
        tasks = self.as_key(key, "HealthService", health_pb2)
        self.assertEqual(tasks.GetTask(task_id="admins-task-ak").task_id, "admins-task-ak")
        self.assertEqual(a.GetUser(id=self.admin_id).email, ADMIN[0])

    def test_allowed_methods(self):
        key = self.create("beats", allowed_methods=["harness.v1.HealthService/*",
                                                    "harness.v1.AuthService/WhoAmI"]).key
        self.assertTrue(self.as_key(key).WhoAmI().id)
        tasks = self.as_key(key, "HealthService", health_pb2)
        tasks.RegisterTask(task_id="beats-task", heartbeat_interval_ms=60000, heartbeat_timeout_ms=120000)
        tasks.Heartbeat(task_id="beats-task", current_step=1)
        for svc, pb2, method, fields in (("SandboxService", sandbox_pb2, "ListSandboxes", {}),
                                         ("AuthService", auth_pb2, "GetUser", {"id": "x"})):
            code, details = self.as_key(key, svc, pb2).error(method, **fields)
            self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED)
            self.assertIn("harness.v1.%s/%s" % (svc, method), details)
        # an admin key narrowed to one method is narrowed
        narrow = self.create("lister", role="admin", allowed_methods=["harness.v1.AuthService/ListApiKeys"]).key
        self.assertTrue(self.as_key(narrow).ListApiKeys().api_keys)
        code, details = self.as_key(narrow).error("CreateUser", email="d@example.com", password="pw-123456")
        self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("harness.v1.AuthService/CreateUser", details)

    def test_expiry(self):
        expires = time.time() + 2
        r = self.create("brief", expires_at=timestamp_pb2.Timestamp(seconds=int(expires) + 1))
        self.assertEqual(r.api_key.expires_at.seconds, int(expires) + 1)
        while time.time() < int(expires) + 1.2:
            time.sleep(0.1)
        code, details = self.as_key(r.key).error("WhoAmI")
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
        self.assertIn("expired", details)


class ApiKeyRestartTest(unittest.TestCase):
    """Keys, their revocation and last use survive a restart."""

    def test_restart(self):
        data = tempfile.TemporaryDirectory(prefix="hs-keys-")
        self.addCleanup(data.cleanup)
        hd = hstest.Harnessd(data_dir=data.name)
        admin = hstest.ServiceClient(hd.channel, auth_pb2, "AuthService", hstest.login(hd.channel, *ADMIN))
        live, dead = admin.CreateApiKey(name="live"), admin.CreateApiKey(name="dead")
        hstest.ServiceClient(hd.channel, auth_pb2, "AuthService", live.key).WhoAmI()
        used = next(k for k in admin.ListApiKeys().api_keys if k.id == live.id).last_used_at
        admin.RevokeApiKey(id=dead.id)
        hd.close()
        hd = hstest.Harnessd(data_dir=data.name)
        self.addCleanup(hd.close)
        self.assertEqual(hstest.ServiceClient(hd.channel, auth_pb2, "AuthService", live.key).WhoAmI().id,
                         live.id)
        self.assertEqual(hstest.ServiceClient(hd.channel, auth_pb2, "AuthService", dead.key).error("WhoAmI")[0],
                         grpc.StatusCode.UNAUTHENTICATED)
        admin = hstest.ServiceClient(hd.channel, auth_pb2, "AuthService", hstest.login(hd.channel, *ADMIN))
        k = next(k for k in admin.ListApiKeys().api_keys if k.id == live.id)
        self.assertGreaterEqual(k.last_used_at.seconds, used.seconds)


def b64(d):
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


def forge(header, claims=None):
    claims = claims or {"sub": "u-alice", "role": "admin", "exp": int(time.time()) + 600}
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()) + "." + b64(b"\0" * 64)


class JwksTest(unittest.TestCase):
    """harnessd --auth-backend upstream --jwt-jwks-url against the double,
    which signs with RS256/ES256 keys it publishes and rotates."""

    @classmethod
    def setUpClass(cls):
        cls.us = UserServiceDouble(extra=("--jwt-alg", "RS256"))
        cls.hd = hstest.Harnessd(args=("--auth-backend", "upstream", "--user-service-url", cls.us.url,
                                       "--jwt-jwks-url", cls.us.url + "/.well-known/jwks.json"),
                                 env={"USER_SERVICE_API_KEY": API_KEY})

    @classmethod
    def tearDownClass(cls):
        cls.hd.close()
        cls.us.kill()

    def login(self):
        return hstest.login(self.hd.channel, "alice@example.com", "password123")

    def direct_token(self):
        """A token from the user service itself, not through harnessd."""
        return self.us.post("/api/v1/auth/login", {"email": "alice@example.com", "password": "password123"},
                            headers={"X-API-Key": API_KEY})["access_token"]

    def whoami(self, token):
        return hstest.ServiceClient(self.hd.channel, auth_pb2, "AuthService", token).WhoAmI()

    def code(self, token):
        return hstest.ServiceClient(self.hd.channel, auth_pb2, "AuthService", token).error("WhoAmI")

    def settle(self, token, want):
        """Calls until the answer is no longer UNAVAILABLE (the key set being
        refetched); at most 50 tries. Returns the code (OK as None)."""
        for _ in range(50):
            try:
                self.whoami(token)
                got = None
            except grpc.RpcError as e:
                got = e.code()
            if got != grpc.StatusCode.UNAVAILABLE:
                break
            time.sleep(0.2)
        self.assertEqual(got, want)

    def test_rotation(self):
        t1 = self.login()
        self.assertEqual(self.whoami(t1).id, "u-alice")
        # A new ES256 key (the old one still published): Login waits for the
        # key set, so the new token works at once.
        self.us.post("/__rotate", {"alg": "ES256"})
        t2 = self.login()
        self.assertNotEqual(json.loads(base64.urlsafe_b64decode(t2.split(".")[0] + "==")).get("kid"),
                            json.loads(base64.urlsafe_b64decode(t1.split(".")[0] + "==")).get("kid"))
        self.assertEqual(self.whoami(t2).id, "u-alice")
        self.assertEqual(self.whoami(t1).id, "u-alice")
        # Rotated again with the old keys withdrawn, the token taken from the
        # user service directly: harnessd fetches the set for the unknown kid.
        self.us.post("/__rotate", {"alg": "RS256", "drop_old": True})
        t3 = self.direct_token()
        self.settle(t3, None)
        self.settle(t1, grpc.StatusCode.UNAUTHENTICATED)
        self.settle(t2, grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(self.whoami(self.login()).id, "u-alice")

    def test_made_up_kids_cost_at_most_one_fetch_per_second(self):
        before = self.us.stats()["jwks_requests"]
        t0 = time.monotonic()
        for i in range(30):
            code, _ = self.code(forge({"alg": "RS256", "typ": "JWT", "kid": "made-up-%d" % i}))
            self.assertIn(code, (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED))
        self.settle(forge({"alg": "RS256", "typ": "JWT", "kid": "made-up-0"}),
                    grpc.StatusCode.UNAUTHENTICATED)
        fetched = self.us.stats()["jwks_requests"] - before
        self.assertLessEqual(fetched, (time.monotonic() - t0) / 1.0 + 2)

    def test_other_algorithms_are_refused(self):
        """The key a kid names pins the algorithm: none, HMAC (with the
        public key as the secret) and the other curve family are refused."""
        import urllib.request
        with urllib.request.urlopen(self.us.url + "/.well-known/jwks.json", timeout=5) as r:
            current = json.loads(r.read())["keys"][-1]
        other = "ES256" if current["alg"] == "RS256" else "RS256"
        for alg in ("HS256", "none", "PS256", other):
            code, _ = self.code(forge({"alg": alg, "typ": "JWT", "kid": current["kid"]}))
            self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED, alg)


if __name__ == "__main__":
    unittest.main()
