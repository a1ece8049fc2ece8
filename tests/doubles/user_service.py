#!/usr/bin/env python3
"""Test double of the seed's upstream user service (the contract the Express
BFF's userService.ts calls), over plain HTTP on loopback.

    POST /api/v1/auth/login    {"email","password"}  -> 200 auth | 400 | 401
    POST /api/v1/auth/refresh  {"refreshToken"}      -> 200 auth | 401 (rotates)
    GET  /api/v1/users/{id}                          -> 200 user | 404
    auth = {"user":{id,email,name,role,created_at},"access_token",
            "refresh_token","expires_in"}; errors = {"code","message"}

Every API call needs X-API-Key (else 401 INVALID_API_KEY). Access tokens are
HS256 JWTs signed with --jwt-secret (sub, role, email, iat, exp, jti), or,
with --jwt-alg RS256|ES256, signed with a generated key whose public half is
published (with its kid) at

    GET  /.well-known/jwks.json   (no API key)   -> {"keys": [JWK, ...]}

Key rotation (test control):
    POST /__rotate {"alg": "RS256"|"ES256", "drop_old": false}
         -> {"kid": new kid}; new tokens are signed with the new key, the
            old keys stay published unless drop_old.

Test control (no API key):
    POST /__control {"mode": "ok"|"fail500"|"fail503"|"stall"|"garbage"|
                     "partial"|"huge"|"down"|"status", "stall_ms": 10000,
                     "status": 418, "body": {...}}
    GET  /__stats  -> {"requests", "connections", "last_headers", "last_path",
                       "jwks_requests"}
"down" closes the connection without answering; "stall" waits stall_ms and
then answers normally; "status" answers every API call with status/body.

Usage: user_service.py --port 0 [--host 127.0.0.1] [--api-key K]
       [--jwt-secret S] [--jwt-alg HS256|RS256|ES256] [--users users.json]
       [--access-ttl 900]
The first stdout line is "PORT <n>" (flushed); runs until killed.
"""
import argparse
import base64
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

DEFAULT_USERS = [
    {"id": "u-alice", "email": "alice@example.com", "password": "password123",
     "name": "Alice Example", "role": "user", "created_at": "2024-01-15T10:30:00.000Z"},
    {"id": "u-admin", "email": "admin@example.com", "password": "adminpass1",
     "name": "Admin", "role": "admin", "created_at": "2023-12-31T23:59:59Z"},
]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_hs256(secret, claims):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = (header + "." + payload).encode()
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return header + "." + payload + "." + b64url(sig)


def int_b64(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64url(n.to_bytes(size, "big"))


class SigningKey:
    """An RS256 or ES256 key (python3-cryptography) with a kid and its JWK."""

    def __init__(self, alg):
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        self.alg = alg
        self.kid = "k-" + secrets.token_hex(6)
        if alg == "RS256":
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pub = self.key.public_key().public_numbers()
            self.jwk = {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": alg,
                        "n": int_b64(pub.n), "e": int_b64(pub.e)}
        elif alg == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
            pub = self.key.public_key().public_numbers()
            self.jwk = {"kty": "EC", "kid": self.kid, "use": "sig", "alg": alg, "crv": "P-256",
                        "x": int_b64(pub.x, 32), "y": int_b64(pub.y, 32)}
        else:
            raise ValueError(alg)

    def sign(self, claims):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
        header = b64url(json.dumps({"alg": self.alg, "typ": "JWT", "kid": self.kid},
                                   separators=(",", ":")).encode())
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        data = (header + "." + payload).encode()
        if self.alg == "RS256":
            sig = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = utils.decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return header + "." + payload + "." + b64url(sig)


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.mode = "ok"
        self.stall_ms = 10000
        self.status = 500
        self.body = {}
        self.requests = 0
        self.connections = 0
        self.last_headers = {}
        self.last_path = ""
        self.refresh = {}  # token -> user id
        users = DEFAULT_USERS
        if args.users:
            with open(args.users, encoding="utf-8") as f:
                users = json.load(f)
        self.users = {u["id"]: u for u in users}
        self.jwks_requests = 0
        self.keys = [] if args.jwt_alg == "HS256" else [SigningKey(args.jwt_alg)]

    def public_user(self, u):
        return {k: u[k] for k in ("id", "email", "name", "role", "created_at")}

    def auth_response(self, u):
        now = int(time.time())
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.refresh[token] = u["id"]
        claims = {"sub": u["id"], "role": u["role"], "email": u["email"], "iat": now,
                  "exp": now + self.args.access_ttl, "jti": secrets.token_hex(8)}
        with self.lock:
            key = self.keys[-1] if self.keys else None
        access = key.sign(claims) if key else sign_hs256(self.args.jwt_secret, claims)
        return {"user": self.public_user(u), "access_token": access,
                "refresh_token": token, "expires_in": self.args.access_ttl}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible
    server_version = "user-service-double/1"

    def setup(self):
        super().setup()
        with self.server.state.lock:
            self.server.state.connections += 1

    def log_message(self, fmt, *args):  # quiet: tests read stdout/stderr
        pass

    def send_json(self, status, obj=None, raw=None):
        data = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def route(self, method):
        st = self.server.state
        if self.path == "/__control" and method == "POST":
            body = self.read_json() or {}
            with st.lock:
                st.mode = body.get("mode", "ok")
                st.stall_ms = int(body.get("stall_ms", st.stall_ms))
                st.status = int(body.get("status", st.status))
                st.body = body.get("body", {})
            return self.send_json(200, {"mode": st.mode})
        if self.path == "/__stats" and method == "GET":
            with st.lock:
                stats = {"requests": st.requests, "connections": st.connections,
                         "last_headers": st.last_headers, "last_path": st.last_path,
                         "jwks_requests": st.jwks_requests}
            return self.send_json(200, stats)
        if self.path == "/__rotate" and method == "POST":
            body = self.read_json() or {}
            key = SigningKey(body.get("alg", st.args.jwt_alg))
            with st.lock:
                st.keys = ([] if body.get("drop_old") else st.keys) + [key]
            return self.send_json(200, {"kid": key.kid})
        if self.path == "/.well-known/jwks.json" and method == "GET":
            with st.lock:
                st.jwks_requests += 1
                doc = {"keys": [k.jwk for k in st.keys]}
            return self.send_json(200, doc)
        body = self.read_json() if method == "POST" else None
        with st.lock:
            st.requests += 1
            st.last_headers = {k.lower(): v for k, v in self.headers.items()}
            st.last_path = self.path
            mode, stall_ms = st.mode, st.stall_ms
        if mode == "down":
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if mode == "stall":
            time.sleep(stall_ms / 1000.0)
        if mode == "fail500":
            return self.send_json(500, {"code": "INTERNAL", "message": "Upstream exploded"})
        if mode == "fail503":
            return self.send_json(503, {"message": "Maintenance"})
        if mode == "garbage":
            return self.send_json(200, raw=b"<html>not json{{")
        if mode == "partial":
            return self.send_json(200, {"user": {"id": "u-x"}, "access_token": "a"})
        if mode == "huge":
            return self.send_json(200, {"pad": "x" * (100 * 1024)})
        if mode == "status":
            return self.send_json(st.status, st.body)
        if self.headers.get("X-API-Key") != self.server.state.args.api_key:
            return self.send_json(401, {"code": "INVALID_API_KEY", "message": "Invalid API key"})
        if method == "POST" and self.path == "/api/v1/auth/login":
            return self.login(body)
        if method == "POST" and self.path == "/api/v1/auth/refresh":
            return self.refresh(body)
        if method == "GET" and self.path.startswith("/api/v1/users/"):
            uid = unquote(self.path[len("/api/v1/users/"):])
            u = st.users.get(uid)
            if u is None:
                return self.send_json(404, {"code": "USER_NOT_FOUND", "message": "User not found"})
            return self.send_json(200, st.public_user(u))
        return self.send_json(404, {"code": "NOT_FOUND", "message": "No such route"})

    def login(self, body):
        st = self.server.state
        if (not body or not isinstance(body.get("email"), str)
                or not isinstance(body.get("password"), str)):
            return self.send_json(400, {"code": "VALIDATION_ERROR",
                                        "message": "email and password required"})
        for u in st.users.values():
            if u["email"] == body["email"].lower() and hmac.compare_digest(
                    u["password"].encode(), body["password"].encode()):
                return self.send_json(200, st.auth_response(u))
        return self.send_json(401, {"code": "INVALID_CREDENTIALS",
                                    "message": "Invalid credentials"})

    def refresh(self, body):
        st = self.server.state
        token = (body or {}).get("refreshToken") or (body or {}).get("refresh_token")
        with st.lock:
            uid = st.refresh.pop(token, None) if isinstance(token, str) else None
        if uid is None or uid not in st.users:
            return self.send_json(401, {"code": "INVALID_REFRESH_TOKEN",
                                        "message": "Invalid or expired refresh token"})
        return self.send_json(200, st.auth_response(st.users[uid]))


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a client that timed out and left (stall mode) is expected
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--api-key", default="test-api-key")
    p.add_argument("--jwt-secret", default="test-jwt-secret-0123456789abcdef0123")
    p.add_argument("--jwt-alg", default="HS256", choices=("HS256", "RS256", "ES256"))
    p.add_argument("--users", help="JSON list of {id,email,password,name,role,created_at}")
    p.add_argument("--access-ttl", type=int, default=900)
    args = p.parse_args()
    srv = Server((args.host, args.port), Handler)
    srv.state = State(args)
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
