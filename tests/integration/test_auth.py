"""AuthService through grpcio against a real harnessd: the local backend
(embedded users, rotating refresh tokens) and the upstream backend (the BFF
pattern against the real user-service double on loopback)."""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import unittest

import grpc

from harness.v1 import auth_pb2
import hstest

ADMIN = ("admin@example.com", "admin-password-1")
SECRET = "test-jwt-secret-of-at-least-32-bytes!!"
API_KEY = "test-api-key"


def rpc(channel, name, req_cls, resp_cls):
    return hstest.stub(channel, "/harness.v1.AuthService/" + name, req_cls, resp_cls)


def bearer(token):
    return [("authorization", "Bearer " + token)]


def forge(claims, secret):
    b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
    h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b(json.dumps(claims).encode())
    s = b(hmac.new(secret.encode(), (h + "." + p).encode(), hashlib.sha256).digest())
    return h + "." + p + "." + s


class Api:
    def __init__(self, channel):
        self.login = rpc(channel, "Login", auth_pb2.LoginRequest, auth_pb2.AuthResponse)
        self.refresh = rpc(channel, "Refresh", auth_pb2.RefreshRequest, auth_pb2.AuthResponse)
        self.logout = rpc(channel, "Logout", auth_pb2.LogoutRequest, auth_pb2.LogoutResponse)
        self.get_user = rpc(channel, "GetUser", auth_pb2.GetUserRequest, auth_pb2.User)
        self.whoami = rpc(channel, "WhoAmI", auth_pb2.WhoAmIRequest, auth_pb2.User)
        self.create_user = rpc(channel, "CreateUser", auth_pb2.CreateUserRequest, auth_pb2.User)


class LocalAuthTest(hstest.HarnessTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.api = Api(cls.channel)
        cls.admin = cls.api.login(auth_pb2.LoginRequest(email=ADMIN[0], password=ADMIN[1]), timeout=10)

    def code_of(self, fn, *args, **kw):
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, timeout=10, **kw)
        return cm.exception.code(), cm.exception.details()

    def test_login_returns_user_and_tokens(self):
        r = self.admin
        self.assertEqual(r.user.email, ADMIN[0])
        self.assertEqual(r.user.role, "admin")
        self.assertGreater(r.user.created_at.seconds, 0)
        self.assertEqual(r.expires_in, 900)
        self.assertEqual(r.access_token.count("."), 2)
        self.assertTrue(r.refresh_token)

    def test_failed_logins_share_one_generic_message(self):
        bad_pw = self.code_of(self.api.login, auth_pb2.LoginRequest(email=ADMIN[0], password="nope-nope"))
        no_user = self.code_of(self.api.login, auth_pb2.LoginRequest(email="ghost@example.com", password="nope-nope"))
        self.assertEqual(bad_pw, no_user)
        self.assertEqual(bad_pw[0], grpc.StatusCode.UNAUTHENTICATED)

    def test_empty_fields_are_invalid_argument_naming_the_field(self):
        code, msg = self.code_of(self.api.login, auth_pb2.LoginRequest(email="", password="x"))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("email", msg)

    def test_protected_rpc_needs_a_valid_token(self):
        self.assertEqual(self.code_of(self.api.whoami, auth_pb2.WhoAmIRequest())[0],
                         grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(self.code_of(self.api.whoami, auth_pb2.WhoAmIRequest(),
                                      metadata=[("authorization", "Basic abc")])[0],
                         grpc.StatusCode.UNAUTHENTICATED)
        tampered = self.admin.access_token[:-3] + ("AAA" if not self.admin.access_token.endswith("AAA") else "BBB")
        self.assertEqual(self.code_of(self.api.whoami, auth_pb2.WhoAmIRequest(), metadata=bearer(tampered))[0],
                         grpc.StatusCode.UNAUTHENTICATED)
        forged = forge({"sub": self.admin.user.id, "role": "admin", "exp": int(time.time()) + 600}, "not-the-key" * 4)
        self.assertEqual(self.code_of(self.api.whoami, auth_pb2.WhoAmIRequest(), metadata=bearer(forged))[0],
                         grpc.StatusCode.UNAUTHENTICATED)
        none_alg = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode() + "." + \
            base64.urlsafe_b64encode(json.dumps({"sub": "x", "exp": 9999999999}).encode()).rstrip(b"=").decode() + "."
        self.assertEqual(self.code_of(self.api.whoami, auth_pb2.WhoAmIRequest(), metadata=bearer(none_alg))[0],
                         grpc.StatusCode.UNAUTHENTICATED)
        me = self.api.whoami(auth_pb2.WhoAmIRequest(), metadata=bearer(self.admin.access_token), timeout=10)
        self.assertEqual(me.id, self.admin.user.id)

    def test_expired_token_is_unauthenticated(self):
        with open(os.path.join(self.hd.data_dir, "jwt.key")) as f:
            key = f.read().strip()
        expired = forge({"sub": self.admin.user.id, "role": "admin", "iat": int(time.time()) - 4000,
                         "exp": int(time.time()) - 3600}, key)
        code, msg = self.code_of(self.api.whoami, auth_pb2.WhoAmIRequest(), metadata=bearer(expired))
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
        self.assertIn("expired", msg)
        # the same key with a valid exp is accepted: the key was the only difference
        fresh = forge({"sub": self.admin.user.id, "role": "admin", "iat": int(time.time()),
                       "exp": int(time.time()) + 600}, key)
        self.api.whoami(auth_pb2.WhoAmIRequest(), metadata=bearer(fresh), timeout=10)

    def test_refresh_rotates_and_reuse_revokes_the_family(self):
        s = self.api.login(auth_pb2.LoginRequest(email=ADMIN[0], password=ADMIN[1]), timeout=10)
        r1 = self.api.refresh(auth_pb2.RefreshRequest(refresh_token=s.refresh_token), timeout=10)
        self.assertNotEqual(r1.refresh_token, s.refresh_token)
        r2 = self.api.refresh(auth_pb2.RefreshRequest(refresh_token=r1.refresh_token), timeout=10)
        # an old token comes back: theft assumed, the whole family dies
        self.assertEqual(self.code_of(self.api.refresh, auth_pb2.RefreshRequest(refresh_token=s.refresh_token))[0],
                         grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(self.code_of(self.api.refresh, auth_pb2.RefreshRequest(refresh_token=r2.refresh_token))[0],
                         grpc.StatusCode.UNAUTHENTICATED)
        # other sessions are untouched
        self.api.refresh(auth_pb2.RefreshRequest(refresh_token=self.admin.refresh_token), timeout=10)

    def test_logout_revokes_and_is_idempotent(self):
        s = self.api.login(auth_pb2.LoginRequest(email=ADMIN[0], password=ADMIN[1]), timeout=10)
        self.api.logout(auth_pb2.LogoutRequest(refresh_token=s.refresh_token), timeout=10)
        self.api.logout(auth_pb2.LogoutRequest(refresh_token=s.refresh_token), timeout=10)
        self.api.logout(auth_pb2.LogoutRequest(refresh_token=""), timeout=10)
        self.assertEqual(self.code_of(self.api.refresh, auth_pb2.RefreshRequest(refresh_token=s.refresh_token))[0],
                         grpc.StatusCode.UNAUTHENTICATED)

    def test_users_and_cross_user_access(self):
        md = bearer(self.admin.access_token)
        carol = self.api.create_user(auth_pb2.CreateUserRequest(email="carol@example.com", password="carolpw1"),
                                     metadata=md, timeout=10)
        self.assertEqual(carol.role, "user")
        self.assertEqual(self.code_of(self.api.create_user, auth_pb2.CreateUserRequest(
            email="carol@example.com", password="carolpw1"), metadata=md)[0], grpc.StatusCode.ALREADY_EXISTS)
        self.assertEqual(self.code_of(self.api.create_user, auth_pb2.CreateUserRequest(
            email="dave@example.com", password="x"), metadata=md)[0], grpc.StatusCode.INVALID_ARGUMENT)
        c = self.api.login(auth_pb2.LoginRequest(email="carol@example.com", password="carolpw1"), timeout=10)
        cmd = bearer(c.access_token)
        self.assertEqual(self.api.get_user(auth_pb2.GetUserRequest(id=carol.id), metadata=cmd, timeout=10).email,
                         "carol@example.com")
        self.assertEqual(self.code_of(self.api.get_user, auth_pb2.GetUserRequest(id=self.admin.user.id),
                                      metadata=cmd)[0], grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(self.code_of(self.api.create_user, auth_pb2.CreateUserRequest(
            email="eve@example.com", password="evepass1"), metadata=cmd)[0], grpc.StatusCode.PERMISSION_DENIED)
        # admins read anyone
        self.assertEqual(self.api.get_user(auth_pb2.GetUserRequest(id=carol.id), metadata=md, timeout=10).id, carol.id)

    def test_secrets_never_in_logs(self):
        s = self.api.login(auth_pb2.LoginRequest(email=ADMIN[0], password=ADMIN[1]), timeout=10)
        self.api.whoami(auth_pb2.WhoAmIRequest(), metadata=bearer(s.access_token), timeout=10)
        time.sleep(0.2)
        text = "\n".join(self.hd.raw_lines)
        for secret in (ADMIN[1], s.access_token, s.refresh_token):
            self.assertNotIn(secret, text)


class ThrottleTest(hstest.HarnessTestCase):
    def test_repeated_failures_are_resource_exhausted(self):
        api = Api(self.channel)
        codes = []
        for _ in range(8):
            try:
                api.login(auth_pb2.LoginRequest(email=ADMIN[0], password="wrong-password"), timeout=10)
            except grpc.RpcError as e:
                codes.append(e.code())
        self.assertIn(grpc.StatusCode.RESOURCE_EXHAUSTED, codes)
        self.assertEqual(codes[0], grpc.StatusCode.UNAUTHENTICATED)


class UserServiceDouble(hstest.Process):
    def __init__(self):
        argv = [sys.executable, os.path.join(hstest.SOURCE, "tests/doubles/user_service.py"), "--port", "0",
                "--api-key", API_KEY, "--jwt-secret", SECRET]
        super().__init__(argv)
        deadline = time.monotonic() + 10
        while not self.stdout_lines and time.monotonic() < deadline:
            time.sleep(0.02)
        self.port = int(self.stdout_lines[0].split()[1])
        self.url = "http://127.0.0.1:%d" % self.port

    def stats(self):
        import urllib.request
        with urllib.request.urlopen(self.url + "/__stats", timeout=5) as r:
            return json.loads(r.read())

    def control(self, **kw):
        import urllib.request
        req = urllib.request.Request(self.url + "/__control", data=json.dumps(kw).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=5).read()


class UpstreamAuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.us = UserServiceDouble()
        cls.hd = hstest.Harnessd(args=("--auth-backend", "upstream", "--user-service-url", cls.us.url),
                                 env={"USER_SERVICE_API_KEY": API_KEY, "HARNESS_JWT_SECRET": SECRET})
        cls.api = Api(cls.hd.channel)

    @classmethod
    def tearDownClass(cls):
        cls.hd.close()
        cls.us.kill()

    def setUp(self):
        self.us.control(mode="ok")

    def login(self, timeout=10):
        return self.api.login(auth_pb2.LoginRequest(email="alice@example.com", password="password123"),
                              timeout=timeout)

    def test_login_maps_snake_case_and_token_verifies(self):
        r = self.login()
        self.assertEqual(r.user.id, "u-alice")
        self.assertEqual(r.user.name, "Alice Example")
        self.assertEqual(r.user.created_at.seconds, 1705314600)  # 2024-01-15T10:30:00Z
        me = self.api.whoami(auth_pb2.WhoAmIRequest(), metadata=bearer(r.access_token), timeout=10)
        self.assertEqual(me.email, "alice@example.com")
        r2 = self.api.refresh(auth_pb2.RefreshRequest(refresh_token=r.refresh_token), timeout=10)
        self.assertTrue(r2.access_token)

    def test_upstream_rejection_is_unauthenticated_with_its_message(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.api.login(auth_pb2.LoginRequest(email="alice@example.com", password="bad-password"), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        # the user service's own code travels as trailing metadata, its message as the status
        trailers = dict(cm.exception.trailing_metadata() or ())
        self.assertRegex(trailers.get("hs-error-code", ""), r"^[A-Z0-9_]+$")
        self.assertNotIn(trailers["hs-error-code"] + ":", cm.exception.details())

    def test_upstream_down_is_unavailable(self):
        for mode in ("down", "fail500", "fail503"):
            self.us.control(mode=mode)
            with self.assertRaises(grpc.RpcError) as cm:
                self.login()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE, mode)

    def test_upstream_garbage_is_internal_and_leaks_nothing(self):
        self.us.control(mode="garbage")
        with self.assertRaises(grpc.RpcError) as cm:
            self.login()
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)
        self.assertNotIn("<", cm.exception.details())

    def test_upstream_stall_ends_within_the_callers_deadline(self):
        self.us.control(mode="stall", stall_ms=8000)
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            self.login(timeout=1.0)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.monotonic() - t0, 3.0 * hstest.SLOW)
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:  # our own 5 s limit
            self.login(timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertLess(time.monotonic() - t0, 7.0 * hstest.SLOW)

    def test_token_signed_with_another_key_is_refused(self):
        bad = forge({"sub": "u-alice", "role": "admin", "exp": int(time.time()) + 600}, "x" * 40)
        with self.assertRaises(grpc.RpcError) as cm:
            self.api.whoami(auth_pb2.WhoAmIRequest(), metadata=bearer(bad), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_create_user_is_not_for_upstream(self):
        admin = self.api.login(auth_pb2.LoginRequest(email="admin@example.com", password="adminpass1"), timeout=10)
        with self.assertRaises(grpc.RpcError) as cm:
            self.api.create_user(auth_pb2.CreateUserRequest(email="z@example.com", password="zzzzzz1"),
                                 metadata=bearer(admin.access_token), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)


class DrainTest(unittest.TestCase):
    """SIGTERM with a unary call in flight: the call (a Login waiting on a slow
    user service, on a worker thread) finishes OK, new calls are refused, and
    harnessd exits 0."""

    def test_sigterm_lets_an_in_flight_call_finish(self):
        import signal
        import threading
        us = UserServiceDouble()
        hd = hstest.Harnessd(args=("--auth-backend", "upstream", "--user-service-url", us.url),
                             env={"USER_SERVICE_API_KEY": API_KEY, "HARNESS_JWT_SECRET": SECRET})
        try:
            us.control(mode="stall", stall_ms=3000)
            api = Api(hd.channel)
            before = us.stats()["requests"]
            result = {}

            def call():
                try:
                    result["resp"] = api.login(auth_pb2.LoginRequest(email="alice@example.com",
                                                                     password="password123"), timeout=30)
                except grpc.RpcError as e:
                    result["err"] = e
            t = threading.Thread(target=call)
            t.start()
            deadline = time.monotonic() + 10 * hstest.SLOW
            while us.stats()["requests"] == before:  # wait until it is waiting on the user service
                self.assertLess(time.monotonic(), deadline, "the login never reached the user service")
                time.sleep(0.02)
            hd.proc.send_signal(signal.SIGTERM)
            hd.wait_for(lambda l: l.get("msg") == "draining", timeout=10)
            # new connections are refused once the listener is closed (it
            # closes asynchronously, right after "draining")
            refused, deadline = False, time.monotonic() + 5 * hstest.SLOW
            while not refused and time.monotonic() < deadline:
                with grpc.insecure_channel(hd.target) as fresh:
                    try:
                        hstest.raw(fresh, "/grpc.health.v1.Health/Check")(b"", timeout=1)
                        time.sleep(0.05)
                    except grpc.RpcError:
                        refused = True
            self.assertTrue(refused, "new calls still accepted while draining")
            t.join(timeout=20 * hstest.SLOW)
            self.assertNotIn("err", result, result.get("err"))
            self.assertEqual(result["resp"].user.id, "u-alice")
            self.assertEqual(hd.proc.wait(timeout=20 * hstest.SLOW), 0)
            drained = [l for l in hd.lines if l.get("msg") == "draining"]
            self.assertEqual(drained[0]["calls_in_flight"], 1)
        finally:
            hd.close(expect_exit=None)
            us.kill()


if __name__ == "__main__":
    unittest.main()
