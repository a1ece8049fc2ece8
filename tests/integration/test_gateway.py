"""harness-gateway end to end: the REAL gateway in front of a REAL harnessd,
in upstream mode against the REAL user-service double and in the default
local mode, driven over loopback HTTP like a browser frontend would.

Covers every case of the seed's Express integration test (auth.test.ts) plus
what the gateway does better: outages are 503/504 and keep the cookie,
refresh-token reuse revokes the family, CSRF/CORS/helmet rules, body caps."""
import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import unittest
import urllib.request

import hstest

API_KEY = "test-api-key"
SECRET = "test-jwt-secret-of-at-least-32-bytes!!"
ADMIN = ("admin@example.com", "admin-password-1")
ORIGIN = "http://localhost:3000"
HELMET = {
    "content-security-policy": "default-src 'self';base-uri 'self';font-src 'self' https: data:;"
                               "form-action 'self';frame-ancestors 'self';img-src 'self' data:;"
                               "object-src 'none';script-src 'self';script-src-attr 'none';"
                               "style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "origin-agent-cluster": "?1",
    "referrer-policy": "no-referrer",
    "strict-transport-security": "max-age=15552000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-dns-prefetch-control": "off",
    "x-download-options": "noopen",
    "x-frame-options": "SAMEORIGIN",
    "x-permitted-cross-domain-policies": "none",
    "x-xss-protection": "0",
}


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (lower-case name, value)
        self.body = body
        self.text = body.decode("utf-8", "replace")

    def header(self, name):
        vals = [v for k, v in self.headers if k == name.lower()]
        return vals[0] if vals else None

    def json(self):
        return json.loads(self.text)

    @property
    def cookie(self):
        """The Set-Cookie for refreshToken, or None."""
        return next((v for k, v in self.headers if k == "set-cookie" and v.startswith("refreshToken=")), None)

    @property
    def token(self):
        c = self.cookie
        return c.split(";")[0].split("=", 1)[1] if c else None


def cleared(cookie):
    return cookie is not None and cookie.startswith("refreshToken=;") and "Max-Age=0" in cookie


class Gateway(hstest.Process):
    def __init__(self, target, args=(), env=None):
        e = {"NODE_ENV": "", "HARNESS_ENV": "", "ALLOWED_ORIGINS": "", "HARNESS_CSRF_STRICT": ""}
        e.update(env or {})
        argv = [hstest.GATEWAY, "--listen", "127.0.0.1:0", "--grpc-target", target] + list(args)
        super().__init__(argv, env=e, ready=lambda l: l.get("msg") == "listening")
        self.port = next(l for l in self.lines if l.get("msg") == "listening")["port"]

    def request(self, method, path, body=None, headers=None, cookie=None, timeout=30, source="127.0.0.1"):
        h = {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if cookie is not None:
            h["Cookie"] = "refreshToken=" + cookie
        h.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * hstest.SLOW,
                                          source_address=(source, 0))
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Response(r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read())
        finally:
            conn.close()

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def login(self, email, password, **kw):
        return self.post("/api/v1/auth/login", {"email": email, "password": password}, **kw)

    def raw(self, data):
        """Sends raw bytes; returns the raw response."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10 * hstest.SLOW) as s:
            s.sendall(data)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, rest = out.partition(b"\r\n\r\n")
                    m = re.search(rb"(?i)content-length: *(\d+)", head)
                    if m and len(rest) >= int(m.group(1)):
                        break
            return out

    def raw_until_closed(self, data, timeout=10):
        """Sends raw bytes; returns (everything received, whether the server
        closed the connection) after the server closes it or goes quiet."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout * hstest.SLOW) as s:
            s.sendall(data)
            out = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        return out, True
                    out += chunk
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True

    def close(self):
        code = self.stop()
        if code != 0:
            raise AssertionError("gateway exited %s; stderr tail:\n%s" % (code, "\n".join(self.raw_lines[-20:])))


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

    def control(self, **kw):
        req = urllib.request.Request(self.url + "/__control", data=json.dumps(kw).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=5).read()


class UpstreamGatewayTest(unittest.TestCase):
    """The seed's BFF contract: gateway -> harnessd (upstream) -> user service."""
    TIMEOUT_MS = 2500

    @classmethod
    def setUpClass(cls):
        cls.us = UserServiceDouble()
        try:
            cls.hd = hstest.Harnessd(args=("--auth-backend", "upstream", "--user-service-url", cls.us.url),
                                     env={"USER_SERVICE_API_KEY": API_KEY, "HARNESS_JWT_SECRET": SECRET})
        except BaseException:
            cls.us.kill()
            raise
        try:
            cls.gw = Gateway(cls.hd.target, args=("--request-timeout-ms", str(int(cls.TIMEOUT_MS * hstest.SLOW))))
        except BaseException:
            cls.hd.close()
            cls.us.kill()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.close()
        finally:
            try:
                cls.hd.close()
            finally:
                cls.us.kill()

    def setUp(self):
        self.us.control(mode="ok")

    def alice(self):
        r = self.gw.login("alice@example.com", "password123")
        self.assertEqual(r.status, 200, r.text)
        return r

    # --- the seed's auth.test.ts --------------------------------------------
    def test_login_ok_sets_httponly_cookie(self):
        r = self.alice()
        b = r.json()
        self.assertIs(b["success"], True)
        self.assertEqual(b["data"]["user"]["email"], "alice@example.com")
        self.assertEqual(b["data"]["user"], {"id": "u-alice", "email": "alice@example.com", "name": "Alice Example",
                                             "role": "user", "createdAt": "2024-01-15T10:30:00.000Z"})
        self.assertEqual(b["data"]["accessToken"].count("."), 2)
        self.assertEqual(b["data"]["expiresIn"], 900)
        c = r.cookie
        self.assertIsNotNone(c)
        self.assertIn("HttpOnly", c)
        self.assertIn("SameSite=Strict", c)
        self.assertIn("Max-Age=604800", c)
        self.assertIn("Path=/api/v1/auth", c)
        self.assertNotIn("Secure", c)
        self.assertNotIn(r.token, r.text)  # the refresh token never in a body
        self.assertNotIn("refresh", r.text.lower())
        self.assertEqual(r.header("cache-control"), "no-store")

    def test_login_normalises_email(self):
        r = self.gw.login("  Alice@EXAMPLE.com ", "password123")
        self.assertEqual(r.status, 200, r.text)

    def test_invalid_email_is_400_validation_error(self):
        r = self.gw.login("invalid-email", "password123")
        self.assertEqual(r.status, 400)
        b = r.json()
        self.assertEqual(b["code"], "VALIDATION_ERROR")
        self.assertEqual(b["message"], "Invalid input")
        self.assertEqual(b["details"], [{"type": "field", "msg": "Invalid value", "path": "email", "location": "body"}])
        r = self.gw.login("alice@example.com", "12345")
        self.assertEqual([d["path"] for d in r.json()["details"]], ["password"])
        r = self.gw.post("/api/v1/auth/login", {})
        self.assertEqual([d["path"] for d in r.json()["details"]], ["email", "password"])
        self.assertIsNone(r.cookie)

    def test_upstream_rejection_is_401(self):
        r = self.gw.login("alice@example.com", "wrong-password")
        self.assertEqual(r.status, 401, r.text)
        # the user service's own code and message, as the seed's errorHandler answered
        self.assertEqual(r.json()["code"], "INVALID_CREDENTIALS")
        self.assertTrue(r.json()["message"])
        self.assertNotIn("INVALID_CREDENTIALS:", r.json()["message"])
        self.assertIsNone(r.cookie)

    def test_logout_with_authorization_ends_the_upstream_access_token(self):
        import grpc
        from harness.v1 import auth_pb2
        r = self.alice()
        access = r.json()["data"]["accessToken"]
        me = hstest.ServiceClient(self.hd.channel, auth_pb2, "AuthService", token=access)
        self.assertEqual(me.WhoAmI().id, "u-alice")
        out = self.gw.post("/api/v1/auth/logout", cookie=r.token, headers={"Authorization": "Bearer " + access})
        self.assertEqual(out.status, 200, out.text)
        self.assertEqual(me.error("WhoAmI")[0], grpc.StatusCode.UNAUTHENTICATED)
        # a bad one never blocks a logout
        out = self.gw.post("/api/v1/auth/logout", headers={"Authorization": "Bearer not.a.token"})
        self.assertEqual(out.status, 200, out.text)

    def test_refresh_ok_replaces_the_cookie(self):
        tok = self.alice().token
        r = self.gw.post("/api/v1/auth/refresh", cookie=tok)
        self.assertEqual(r.status, 200, r.text)
        self.assertTrue(r.json()["data"]["accessToken"])
        self.assertIsNotNone(r.token)
        self.assertNotEqual(r.token, tok)
        self.assertNotIn(r.token, r.text)
        self.assertEqual(self.gw.post("/api/v1/auth/refresh", cookie=r.token).status, 200)

    def test_refresh_without_cookie_is_401(self):
        r = self.gw.post("/api/v1/auth/refresh")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json(), {"code": "UNAUTHORIZED", "message": "No refresh token provided"})

    def test_refresh_with_unknown_token_is_401_and_clears(self):
        r = self.gw.post("/api/v1/auth/refresh", cookie="valid-refresh-token")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json(), {"code": "UNAUTHORIZED", "message": "Invalid or expired refresh token"})
        self.assertTrue(cleared(r.cookie), r.cookie)

    # --- better than the seed ------------------------------------------------
    def test_upstream_down_is_503_and_keeps_the_cookie(self):
        tok = self.alice().token
        for mode in ("down", "fail500", "fail503"):
            self.us.control(mode=mode)
            r = self.gw.post("/api/v1/auth/refresh", cookie=tok)
            self.assertEqual(r.status, 503, mode + ": " + r.text)
            self.assertEqual(r.json()["code"], "SERVICE_UNAVAILABLE")
            self.assertIsNone(r.cookie, mode)  # not cleared: the token is still good
            self.assertEqual(self.gw.login("alice@example.com", "password123").status, 503)
        self.us.control(mode="ok")
        self.assertEqual(self.gw.post("/api/v1/auth/refresh", cookie=tok).status, 200)

    def test_upstream_slow_is_504_within_the_deadline(self):
        tok = self.alice().token
        # 503/504, not the 200 the upstream sends after 8 s: the gateway's
        # own deadline ended the call (no bound on the elapsed time: load).
        self.us.control(mode="stall", stall_ms=8000)
        r = self.gw.post("/api/v1/auth/refresh", cookie=tok)
        self.assertIn(r.status, (503, 504), r.text)
        self.assertIsNone(r.cookie)
        r = self.gw.login("alice@example.com", "password123")
        self.assertIn(r.status, (503, 504), r.text)

    def test_upstream_garbage_is_500_without_leaks(self):
        self.us.control(mode="garbage")
        r = self.gw.login("alice@example.com", "password123")
        self.assertEqual(r.status, 500, r.text)
        self.assertNotIn("<html", r.text)


def gateway_key(hd):
    """The gateway key harnessd created in its data dir."""
    return ("--gateway-secret-file", os.path.join(hd.data_dir, "gateway.key"))


class LocalGatewayTest(unittest.TestCase):
    """The embedded default: harnessd --auth-backend local."""

    @classmethod
    def setUpClass(cls):
        cls.hd = hstest.Harnessd()
        try:
            cls.gw = Gateway(cls.hd.target, args=gateway_key(cls.hd))
        except BaseException:
            cls.hd.close()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.close()
        finally:
            cls.hd.close()

    def admin(self):
        r = self.gw.login(*ADMIN)
        self.assertEqual(r.status, 200, r.text)
        return r

    def test_login_and_refresh_local(self):
        r = self.admin()
        self.assertEqual(r.json()["data"]["user"]["role"], "admin")
        self.assertRegex(r.json()["data"]["user"]["createdAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(self.gw.post("/api/v1/auth/refresh", cookie=r.token).status, 200)

    def test_refresh_token_reuse_revokes_the_family(self):
        t1 = self.admin().token
        r2 = self.gw.post("/api/v1/auth/refresh", cookie=t1)
        self.assertEqual(r2.status, 200, r2.text)
        t2 = r2.token
        reuse = self.gw.post("/api/v1/auth/refresh", cookie=t1)
        self.assertEqual(reuse.status, 401)
        self.assertEqual(reuse.json()["code"], "UNAUTHORIZED")
        self.assertTrue(cleared(reuse.cookie), reuse.cookie)
        later = self.gw.post("/api/v1/auth/refresh", cookie=t2)  # the whole family is revoked
        self.assertEqual(later.status, 401)
        self.assertTrue(cleared(later.cookie))

    def test_logout_revokes_and_clears_the_cookie(self):
        tok = self.admin().token
        r = self.gw.post("/api/v1/auth/logout", cookie=tok)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"success": True})
        self.assertTrue(cleared(r.cookie), r.cookie)
        self.assertEqual(self.gw.post("/api/v1/auth/refresh", cookie=tok).status, 401)
        r = self.gw.post("/api/v1/auth/logout")
        self.assertEqual((r.status, r.json()), (200, {"success": True}))

    def send_cookie(self, cookie):
        out = self.gw.raw(b"POST /api/v1/auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                          b"Connection: close\r\nCookie: " + cookie + b"\r\n\r\n")
        return out.split(b"\r\n\r\n")[0]

    def test_crlf_in_cookie_is_refused(self):
        # Encoded CR/LF/NUL and over-long values reach us: 401 and the cookie cleared.
        for cookie in (b"refreshToken=abc%0d%0aSet-Cookie:%20evil=1", b"refreshToken=%00abc",
                       b"refreshToken=abc%0aX", b"refreshToken=" + b"a" * 5000):
            head = self.send_cookie(cookie)
            self.assertTrue(head.startswith(b"HTTP/1.1 401"), head[:200])
            self.assertNotIn(b"evil", head)
            self.assertIn(b"Set-Cookie: refreshToken=; Max-Age=0", head)
        # Raw control bytes and a bare CR inside the header: civetweb refuses the
        # request itself (400, our JSON and headers); the gateway keeps serving.
        for cookie in (b"refreshToken=abc\x01def", b"refreshToken=abc\rSet-Cookie: evil=1"):
            head = self.send_cookie(cookie)
            self.assertRegex(head[:12], rb"^HTTP/1\.[01] 40[01]", head[:200])
            self.assertNotIn(b"Set-Cookie: evil", head)
            self.assertIn(b"X-Frame-Options: SAMEORIGIN", head)
        self.assertEqual(self.gw.request("GET", "/health").status, 200)

    def test_oversized_body_is_413(self):
        big = {"email": "a@example.com", "password": "x" * 20000}
        r = self.gw.post("/api/v1/auth/login", big)
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json()["code"], "PAYLOAD_TOO_LARGE")
        body = json.dumps(big).encode()
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        out = self.gw.raw(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
        self.assertTrue(out.startswith(b"HTTP/1.1 413"), out[:100])

    def test_form_and_non_json_types_are_415(self):
        for ct, body in (("application/x-www-form-urlencoded", b"email=a%40b.com&password=123456"),
                         ("multipart/form-data; boundary=x", b"--x--\r\n"),
                         ("text/plain", b'{"email":"a@example.com","password":"123456"}'),
                         ("application/xml", b"<a/>")):
            r = self.gw.post("/api/v1/auth/login", body, headers={"Content-Type": ct})
            self.assertEqual(r.status, 415, ct)
            self.assertEqual(r.json()["code"], "UNSUPPORTED_MEDIA_TYPE")
        r = self.gw.post("/api/v1/auth/logout", b"", headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 415)

    def test_malformed_json_is_400(self):
        r = self.gw.post("/api/v1/auth/login", b'{"email": ', headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["code"], "INVALID_JSON")

    def test_cross_site_requests_are_refused(self):
        r = self.gw.login(*ADMIN, headers={"Sec-Fetch-Site": "cross-site"})
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["code"], "FORBIDDEN")
        for origin in ("https://evil.example", "null", "http://localhost:3000.evil.example"):
            r = self.gw.post("/api/v1/auth/logout", headers={"Origin": origin})
            self.assertEqual(r.status, 403, origin)
            self.assertIsNone(r.header("access-control-allow-origin"))
        r = self.gw.login(*ADMIN, headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-site"})
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.header("access-control-allow-origin"), ORIGIN)
        self.assertEqual(r.header("access-control-allow-credentials"), "true")
        self.assertIn("Origin", r.header("vary"))

    def test_cors_preflight(self):
        r = self.gw.request("OPTIONS", "/api/v1/auth/login", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-requested-with"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.header("access-control-allow-origin"), ORIGIN)
        self.assertEqual(r.header("access-control-allow-credentials"), "true")
        self.assertIn("POST", r.header("access-control-allow-methods"))
        self.assertIn("content-type", r.header("access-control-allow-headers").lower())
        self.assertEqual(r.body, b"")
        r = self.gw.request("OPTIONS", "/api/v1/auth/login", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        self.assertIsNone(r.header("access-control-allow-origin"))

    def test_security_headers_and_health(self):
        r = self.gw.request("GET", "/health")
        self.assertEqual(r.status, 200)
        b = r.json()
        self.assertEqual(b["status"], "ok")
        self.assertRegex(b["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        for k, v in HELMET.items():
            self.assertEqual(r.header(k), v, k)
        self.assertIsNone(r.header("x-powered-by"))
        self.assertIsNone(r.header("server"))
        for path in ("/api/v1/auth/login", "/nope"):
            self.assertEqual(self.gw.post(path, {}).header("x-frame-options"), "SAMEORIGIN")

    def test_unknown_route_and_method(self):
        r = self.gw.request("GET", "/nope")
        self.assertEqual((r.status, r.json()["code"]), (404, "NOT_FOUND"))
        r = self.gw.request("GET", "/api/v1/auth/login")
        self.assertEqual(r.status, 405)
        self.assertIn("POST", r.header("allow"))

    def test_access_log_never_holds_secrets(self):
        r = self.admin()
        self.gw.post("/api/v1/auth/refresh", cookie=r.token)
        self.gw.wait_for(lambda l: l.get("msg") == "request" and l.get("path") == "/api/v1/auth/refresh")
        text = "\n".join(self.gw.raw_lines)
        for secret in (ADMIN[1], r.token, r.json()["data"]["accessToken"]):
            self.assertNotIn(secret, text)
        line = next(l for l in self.gw.lines if l.get("msg") == "request" and l.get("path") == "/api/v1/auth/login")
        for key in ("method", "path", "status", "ms"):
            self.assertIn(key, line)


class GatewayAbuseTest(unittest.TestCase):
    """issue 11/14 through the gateway: a third party cannot lock an account
    out over REST, request-smuggling shapes are 400 and closed, slow clients
    do not starve /health, logout ends the access token, and an email means
    one account however it is typed. Clients come from 127.0.0.2/.3 (the
    attacker, the owner) and 127.0.0.1 (everyone else)."""

    @classmethod
    def setUpClass(cls):
        # login delays of a minute: a throttled pair stays throttled for the
        # test, however slow the machine
        cls.hd = hstest.Harnessd(args=("--login-backoff-ms", "60000"))
        try:
            cls.gw = Gateway(cls.hd.target, args=gateway_key(cls.hd) + (
                "--threads", "8", "--max-connections-per-client", "4"))
        except BaseException:
            cls.hd.close()
            raise
        import grpc
        from harness.v1 import auth_pb2
        cls.pb = auth_pb2
        cls.grpc = grpc
        cls.auth = hstest.ServiceClient(cls.hd.channel, auth_pb2, "AuthService")
        cls.admin = hstest.ServiceClient(cls.hd.channel, auth_pb2, "AuthService",
                                         token=hstest.login(cls.hd.channel, *ADMIN))

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.close()
        finally:
            cls.hd.close()

    def user(self, name):
        email = "%s@example.com" % name
        self.admin.CreateUser(email=email, password=name + "-password-1")
        return email, name + "-password-1"

    def test_third_party_cannot_lock_an_account_out_over_rest(self):
        alice = self.user("alice-rest")
        statuses = [self.gw.login(alice[0], "wrong-password-%d" % i, source="127.0.0.2").status
                    for i in range(12)]
        self.assertEqual(statuses[0], 401)
        self.assertIn(429, statuses)
        r = self.gw.login(*alice, source="127.0.0.2")  # even with the right password
        self.assertEqual((r.status, r.json()["code"]), (429, "RATE_LIMITED"))
        # the owner, elsewhere: in (harnessd believes the signed client address)
        r = self.gw.login(*alice, source="127.0.0.3")
        self.assertEqual(r.status, 200, r.text)

    def test_unsigned_client_addresses_are_not_believed(self):
        # a gateway without the key: harnessd counts everything against the
        # gateway itself, so the attacker's failures do reach the owner
        bob = self.user("bob-unsigned")
        gw = Gateway(self.hd.target)
        try:
            for i in range(12):
                gw.login(bob[0], "wrong-password-%d" % i, source="127.0.0.2")
            self.assertEqual(gw.login(*bob, source="127.0.0.3").status, 429)
        finally:
            gw.close()

    def test_smuggling_shapes_are_400_and_closed(self):
        body = b'{"email":"a@example.com","password":"123456"}'
        smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        shapes = {
            "CL+TE": b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % len(body),
            "TE+CL": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            "CL,CL": b"Content-Length: 5\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
            "CL=CL": b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n%s" % (len(body), len(body), body),
            "CL list": b"Content-Length: %d, %d\r\n\r\n%s" % (len(body), len(body), body),
            "TE,TE": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        }
        for name, rest in shapes.items():
            out, closed = self.gw.raw_until_closed(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + rest + smuggled)
            self.assertTrue(out.startswith(b"HTTP/1.1 400"), (name, out[:120]))
            self.assertEqual(out.count(b"HTTP/1.1 "), 1, name)  # the smuggled request is never answered
            self.assertIn(b"Connection: close", out, name)
            self.assertTrue(closed, name)
        # a clean request on a kept-alive connection still works
        self.assertEqual(self.gw.request("GET", "/health").status, 200)

    def test_refusals_before_routing_are_json_and_closed(self):
        """civetweb's own errors (http_error) and ambiguous framing
        (begin_request) answer before any route runs: the seed's error shape,
        helmet's headers and the connection closed."""
        def head_body(out):
            head, _, body = out.partition(b"\r\n\r\n")
            return head.decode("latin-1"), json.loads(body)
        cases = (
            ("request line", b"GARBAGE\r\n\r\n", 400, "BAD_REQUEST"),
            ("version", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 505, "INTERNAL_ERROR"),
            ("headers", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
             400, "BAD_REQUEST"),
            ("framing", b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
             b"Content-Length: 6\r\n\r\nabcde", 400, "BAD_REQUEST"),
        )
        for name, data, status, code in cases:
            out, closed = self.gw.raw_until_closed(data)
            head, body = head_body(out)
            self.assertTrue(head.startswith("HTTP/1.1 %d " % status), (name, head[:60]))
            self.assertEqual(body["code"], code, name)
            self.assertIn("\r\nX-Content-Type-Options: nosniff\r\n", head, name)
            self.assertIn("\r\nConnection: close", head, name)
            self.assertTrue(closed, name)

    def test_slow_clients_do_not_starve_health(self):
        # 40 half-open requests from one address (5x the gateway's 8 threads),
        # each dribbling a header line now and then, like slowloris
        socks, stop = [], threading.Event()
        try:
            for _ in range(40):
                s = socket.socket()
                s.bind(("127.0.0.2", 0))
                s.settimeout(10)
                s.connect(("127.0.0.1", self.gw.port))
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)

            def dribble():
                while not stop.wait(0.5):
                    for s in socks:
                        try:
                            s.sendall(b"X-Slow: 1\r\n")
                        except OSError:
                            pass
            t = threading.Thread(target=dribble, daemon=True)
            t.start()
            # everyone else is served, well inside the header timeout (10 s)
            for _ in range(3):
                r = self.gw.request("GET", "/health", timeout=5)
                self.assertEqual(r.status, 200, r.text)
            # the slow client's excess connections were closed at once
            closed = 0
            for s in socks:
                s.settimeout(0.2 * hstest.SLOW)
                try:
                    closed += s.recv(1) == b""
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    closed += 1
            self.assertGreaterEqual(closed, 36)
            stop.set()
            t.join(timeout=5)
        finally:
            stop.set()
            for s in socks:
                s.close()

    def test_logout_ends_the_access_token_at_once(self):
        carol = self.user("carol-rest")
        r = self.gw.login(*carol)
        self.assertEqual(r.status, 200, r.text)
        me = hstest.ServiceClient(self.hd.channel, self.pb, "AuthService", token=r.json()["data"]["accessToken"])
        self.assertEqual(me.WhoAmI().email, carol[0])
        self.assertEqual(self.gw.post("/api/v1/auth/logout", cookie=r.token).status, 200)
        self.assertEqual(me.error("WhoAmI")[0], self.grpc.StatusCode.UNAUTHENTICATED)

    def test_email_is_one_identity_over_rest(self):
        u = self.admin.CreateUser(email="Jane.Doe+news@gmail.com", password="jane-password-1")
        self.assertEqual(u.email, "janedoe@gmail.com")
        for typed in ("Jane.Doe+news@gmail.com", "janedoe@gmail.com", "J.A.N.E.doe@googlemail.com"):
            r = self.gw.login(typed, "jane-password-1")
            self.assertEqual(r.status, 200, (typed, r.text))
            self.assertEqual(r.json()["data"]["user"]["id"], u.id)
            self.assertEqual(r.json()["data"]["user"]["email"], "janedoe@gmail.com")


class GatewayModesTest(unittest.TestCase):
    """Gateways with other settings; harnessd is down or started per test."""

    def test_harnessd_down_is_503_cookie_kept_generic_in_production(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        gw = Gateway("127.0.0.1:%d" % port)
        try:
            r = gw.post("/api/v1/auth/refresh", cookie="some-valid-token")
            self.assertEqual(r.status, 503, r.text)
            self.assertIsNone(r.cookie)
            self.assertEqual(gw.login(*ADMIN).status, 503)
        finally:
            gw.close()
        gw = Gateway("127.0.0.1:%d" % port, env={"NODE_ENV": "production"})
        try:
            r = gw.post("/api/v1/auth/refresh", cookie="some-valid-token")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json()["message"], "Internal server error")
            r = gw.post("/api/v1/auth/logout")
            self.assertIn("Secure", r.cookie)
        finally:
            gw.close()

    def test_strict_csrf_needs_x_requested_with(self):
        gw = Gateway("127.0.0.1:1", env={"HARNESS_CSRF_STRICT": "1"})
        try:
            r = gw.post("/api/v1/auth/refresh")
            self.assertEqual(r.status, 403)
            r = gw.post("/api/v1/auth/refresh", headers={"X-Requested-With": "XMLHttpRequest"})
            self.assertEqual(r.status, 401)
        finally:
            gw.close()

    def test_health_is_503_when_harnessd_is_unreachable(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        gw = Gateway("127.0.0.1:%d" % port)
        try:
            r = gw.request("GET", "/health")
            self.assertEqual(r.status, 503, r.text)
            self.assertEqual(r.json()["status"], "unavailable")
            self.assertEqual(r.header("x-frame-options"), "SAMEORIGIN")
        finally:
            gw.close()

    def test_tls_options_are_refused(self):
        p = hstest.Process([hstest.GATEWAY, "--listen", "127.0.0.1:0", "--tls-cert", "x.pem"])
        self.assertEqual(p.proc.wait(timeout=10 * hstest.SLOW), 2)
        p.kill()
        self.assertIn("TLS", "\n".join(p.raw_lines))

    def test_login_throttling_is_429(self):
        hd = hstest.Harnessd()
        try:
            gw = Gateway(hd.target, args=gateway_key(hd))
            try:
                statuses = [gw.login(ADMIN[0], "wrong-password-%d" % i).status for i in range(10)]
                self.assertEqual(statuses[0], 401)
                self.assertIn(429, statuses)
                r = gw.login(ADMIN[0], "wrong-password")
                self.assertEqual((r.status, r.json()["code"]), (429, "RATE_LIMITED"))
            finally:
                gw.close()
        finally:
            hd.close()


if __name__ == "__main__":
    unittest.main()
