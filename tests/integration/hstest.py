"""Shared helpers for integration tests: start the real binaries on loopback
(port 0), read their JSON-lines logs, stop them by PID, never leave a
process behind."""
import atexit
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import symbol_database

BUILD = os.environ.get("HS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("HS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
SANITIZED = os.environ.get("HS_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE")
# Sanitized binaries are several times slower: scale waits, never assertions on speed.
SLOW = 4.0 if SANITIZED else 1.0

HARNESSD = os.path.join(BUILD, "server", "harnessd")
PGTEST = os.path.join(SOURCE, "tests", "pg", "pgtest.sh")
PSQL = "/usr/lib/postgresql/15/bin/psql"
# A libpq URI (tests/pg/pgtest.sh, ctest fixture "pg"): every harnessd the
# tests start then runs on PostgreSQL, a database of its own per data dir.
STORE_PG = os.environ.get("HS_TEST_STORE_PG", "")
SANDBOX_ACCOUNT_SCRIPT = os.path.join(SOURCE, "scripts", "sandbox-account.sh")
GATEWAY = os.path.join(BUILD, "gateway", "harness-gateway")
HARNESSCTL = os.path.join(BUILD, "clients", "harnessctl")


class SandboxAccount:
    """The unprivileged account sandboxes run as, created the way
    scripts/run.sh and the Dockerfile create it (scripts/sandbox-account.sh)
    and removed when the test process ends. One per test process (a name of
    its own: test modules run in parallel). Not root: none, and harnessd
    runs sandboxes as its own uid (--sandbox-allow-same-uid)."""
    _made = None

    @classmethod
    def get(cls):
        """(name, uid, gid), or None when not root."""
        if os.geteuid() != 0:
            return None
        if cls._made is None:
            name = "hs-it-%d" % os.getpid()
            out = subprocess.run(["bash", SANDBOX_ACCOUNT_SCRIPT, "create", name], check=True,
                                 capture_output=True, text=True).stdout.split()
            cls._made = (name, int(out[0]), int(out[1]))
            atexit.register(cls.remove)
        return cls._made

    @classmethod
    def remove(cls):
        if cls._made is not None:
            subprocess.run(["bash", SANDBOX_ACCOUNT_SCRIPT, "remove", cls._made[0]], check=False)
            cls._made = None

    @classmethod
    def args(cls):
        """harnessd flags for it."""
        acct = cls.get()
        return ["--sandbox-uid", acct[0]] if acct else ["--sandbox-allow-same-uid", "1"]


def pg_database_dsn(base, name):
    """base (postgresql:///db?...) with the database name replaced."""
    head, sep, query = base.partition("?")
    return head[:head.rindex("/") + 1] + name + sep + query


def pg_create_database(base, name):
    """CREATE DATABASE name on base's server; returns its DSN."""
    subprocess.run([PSQL, "-q", "-v", "ON_ERROR_STOP=1", "-d", base, "-c",
                    'CREATE DATABASE "%s"' % name], check=True, capture_output=True)
    return pg_database_dsn(base, name)


class PgStore:
    """One database per harnessd data dir on the STORE_PG server, so a test
    that restarts harnessd on the same data dir sees the same store."""
    _dbs = {}
    _seq = 0

    @classmethod
    def dsn_for(cls, data_dir):
        if data_dir not in cls._dbs:
            cls._seq += 1
            name = "hs_it_%d_%d" % (os.getpid(), cls._seq)
            cls._dbs[data_dir] = pg_create_database(STORE_PG, name)
        return cls._dbs[data_dir]


class PgServer:
    """A private PostgreSQL 15 in a temp dir (tests/pg/pgtest.sh), for tests
    that stop or restart it; stopped and removed by close() and, failing
    that, when the test process ends."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hs-pg-it-")
        os.rmdir(self.dir)  # pgtest.sh creates it with the right owner
        self.dsn = None
        atexit.register(self.close)
        self.dsn = subprocess.run(["bash", PGTEST, "start", self.dir], check=True,
                                  capture_output=True, text=True).stdout.strip()

    def down(self):
        """Crash it (pg_ctl stop -m immediate: no checkpoint; recovery replays WAL)."""
        subprocess.run(["bash", PGTEST, "down", self.dir], check=True, capture_output=True)

    def up(self):
        subprocess.run(["bash", PGTEST, "up", self.dir], check=True, capture_output=True)

    def query(self, sql, dsn=None):
        """Rows of sql as lists of strings (psql, unaligned)."""
        out = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                              "-d", dsn or self.dsn, "-c", sql], check=True, capture_output=True,
                             text=True).stdout
        return [l.split("\t") for l in out.splitlines() if l]

    def close(self):
        if self.dir is not None:
            subprocess.run(["bash", PGTEST, "stop", self.dir], check=False, capture_output=True)
            self.dir = None


def sqlite_migrations():
    """The SQLite schema history as this source tree has it: the SQL of
    each entry of hs_store__migrations (server/store/store_migrations.c),
    entry i taking version i to i + 1. Read from the source, so a test
    never keeps a second copy of a migration."""
    import re
    with open(os.path.join(SOURCE, "server/store/store_migrations.c"), encoding="utf-8") as f:
        text = f.read()
    body = text[text.index("hs_store__migrations[] = {"):]
    body = body[body.index("{") + 1:body.index("\n};")]
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    entries, cur = [], []
    for m in re.finditer(r'"([^"\\]*)"|(,)|(\S)', body):
        if m.group(1) is not None:
            cur.append(m.group(1))
        elif m.group(2) and cur:
            entries.append("".join(cur))
            cur = []
        elif m.group(3):  # an escape or anything but literals and commas
            raise AssertionError("store_migrations.c: cannot read %r near %r; extend "
                                 "hstest.sqlite_migrations" % (m.group(3), body[m.start():m.start() + 40]))
    if cur:
        entries.append("".join(cur))
    return entries


def sqlite_database_at(path, version):
    """A SQLite store file at schema `version`, as a harnessd of that
    version left it: migrations 1..version of this tree, applied to a new
    file (never rewound from a newer schema, which would have to undo
    every later migration by hand). The caller adds its rows and starts
    harnessd, which migrates the rest."""
    import sqlite3
    db = sqlite3.connect(path)
    try:
        for sql in sqlite_migrations()[:version]:
            db.executescript(sql)
        db.execute("PRAGMA user_version=%d" % version)
        db.commit()
    finally:
        db.close()


def raw(channel, method, kind="unary_unary"):
    """A callable for method that sends and returns bytes (no stubs needed)."""
    ident = lambda b: b
    return getattr(channel, kind)(method, request_serializer=ident, response_deserializer=ident)


def stub(channel, method, req_cls, resp_cls, kind="unary_unary"):
    return getattr(channel, kind)(method, request_serializer=req_cls.SerializeToString,
                                  response_deserializer=resp_cls.FromString)


def method_classes(pb2, service, method):
    """(request class, response class) of service.method from the generated
    module's descriptor: no hand-kept tables to drift from the .proto."""
    m = pb2.DESCRIPTOR.services_by_name[service].methods_by_name[method]
    db = symbol_database.Default()
    return db.GetSymbol(m.input_type.full_name), db.GetSymbol(m.output_type.full_name)


class ServiceClient:
    """One caller's view of a harness.v1 unary service:
    client.GetSandbox(sandbox_id="x"), client.GetSandbox.future(...),
    client.error("GetSandbox", ...) -> (code, details) of a call that must fail."""

    def __init__(self, channel, pb2, service, token=None, timeout=30.0):
        self.channel, self.pb2, self.service, self.timeout = channel, pb2, service, timeout
        self.md = [("authorization", "Bearer " + token)] if token else []

    def __getattr__(self, name):
        if name.startswith("_") or name not in self.pb2.DESCRIPTOR.services_by_name[self.service].methods_by_name:
            raise AttributeError(name)
        req_cls, resp_cls = method_classes(self.pb2, self.service, name)
        fn = stub(self.channel, "/harness.v1.%s/%s" % (self.service, name), req_cls, resp_cls)

        def call(timeout=None, **fields):
            return fn(req_cls(**fields), metadata=self.md, timeout=timeout or self.timeout)
        call.future = lambda timeout=None, **fields: fn.future(
            req_cls(**fields), metadata=self.md, timeout=timeout or 2 * self.timeout)
        return call

    def error(self, name, **fields):
        try:
            getattr(self, name)(**fields)
        except grpc.RpcError as e:
            return e.code(), e.details()
        raise AssertionError("%s(%s) succeeded" % (name, fields))


def login(channel, email, password, timeout=30.0):
    """An access token for email/password (AuthService/Login)."""
    from harness.v1 import auth_pb2
    fn = stub(channel, "/harness.v1.AuthService/Login", auth_pb2.LoginRequest, auth_pb2.AuthResponse)
    return fn(auth_pb2.LoginRequest(email=email, password=password), timeout=timeout * SLOW).access_token


class Process:
    """A child process whose stderr is JSON lines, collected in a thread."""

    def __init__(self, argv, env=None, ready=None, ready_timeout=20.0):
        self.argv = argv
        self.lines = []
        self.raw_lines = []
        self._cond = threading.Condition()
        full_env = dict(os.environ)
        full_env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        # Every harnessd a test starts scrapes on a free port, never the
        # default 9090 (tests run in parallel).
        full_env.setdefault("HARNESS_METRICS_LISTEN", "127.0.0.1:0")
        full_env.setdefault("HARNESS_GATEWAY_METRICS_LISTEN", "127.0.0.1:0")
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=full_env)
        self.stdout_lines = []
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stderr, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stdout, False), daemon=True)]
        for t in self._threads:
            t.start()
        if ready is not None:
            try:
                self.wait_for(ready, timeout=ready_timeout * SLOW)
            except BaseException:
                self.kill()  # never leave a half-started process behind
                raise

    def _read(self, stream, is_err):
        for line in iter(stream.readline, b""):
            text = line.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                if is_err:
                    self.raw_lines.append(text)
                    try:
                        self.lines.append(json.loads(text))
                    except ValueError:
                        pass
                else:
                    self.stdout_lines.append(text)
                self._cond.notify_all()
        stream.close()

    def wait_for(self, pred, timeout=10.0):
        """Waits until pred(log_line_dict) holds for some line; returns it.
        Generous whatever was asked (a loaded CI): at least 30 s, and it
        stops early if the process has exited."""
        deadline = time.monotonic() + max(timeout, 30.0)
        seen = 0
        with self._cond:
            while True:
                while seen < len(self.lines):
                    line = self.lines[seen]
                    seen += 1
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and seen == len(self.lines)):
                    raise AssertionError("log line not seen within %.1fs; exit=%s; stderr tail:\n%s" % (
                        timeout, self.proc.poll(), "\n".join(self.raw_lines[-30:])))
                self._cond.wait(min(left, 0.1))

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Signals the process and waits; returns its exit code (kills on timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("%s did not stop within %.0fs" % (self.argv[0], timeout))
        for t in self._threads:
            t.join(timeout=5)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self._threads:
            t.join(timeout=5)


def close_all(processes):
    """Stops every process (and removes its temp dir) even when one exits
    badly; the first failure is raised after all were stopped."""
    failure = None
    for p in processes:
        try:
            p.close()
        except Exception as e:  # noqa: BLE001
            failure = failure or e
    if failure is not None:
        raise failure


def tls_channel(target, ca, cert=None, key=None, server_name=None):
    """A grpcio channel over TLS: roots ca (PEM bytes), an optional client
    certificate, an optional name to check instead of the target's host."""
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                         certificate_chain=cert)
    opts = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, creds, options=opts)


class Harnessd(Process):
    """harnessd on 127.0.0.1:0 with its own data dir. With tls (a dict of
    PEM bytes: ca, and cert/key for a client certificate) its channel speaks
    TLS; the --health-listen port is health_port when asked for."""

    def __init__(self, data_dir=None, args=(), env=None, tls=None):
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hs-it-")
            data_dir = self._tmp.name
        self.data_dir = data_dir
        argv = [HARNESSD, "--listen", "127.0.0.1:0", "--data-dir", data_dir]
        if STORE_PG and not any(a == "--store" for a in args):
            argv += ["--store", PgStore.dsn_for(data_dir)]
        if not any(a in ("--sandbox-uid", "--sandbox-allow-same-uid") for a in args):
            argv += SandboxAccount.args()
        argv += list(args)
        e = {"HARNESS_ADMIN_EMAIL": "admin@example.com", "HARNESS_ADMIN_PASSWORD": "admin-password-1"}
        if env:
            e.update(env)
        super().__init__(argv, env=e, ready=lambda l: l.get("msg") == "serving")
        serving = next(l for l in self.lines if l.get("msg") == "serving")
        self.port = serving["port"]
        metrics = next((l for l in self.lines if l.get("msg") == "metrics"), None)
        self.metrics_port = metrics["port"] if metrics else None
        health = next((l for l in self.lines if l.get("msg") == "health listener"), None)
        self.health_port = health["port"] if health else None
        self.target = "127.0.0.1:%d" % self.port
        if tls is not None:
            self.channel = tls_channel(self.target, tls["ca"], tls.get("cert"), tls.get("key"))
        else:
            self.channel = grpc.insecure_channel(self.target)

    def close(self, expect_exit=0):
        self.channel.close()
        try:
            code = self.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
        if expect_exit is not None and code != expect_exit:
            raise AssertionError("harnessd exited %s (expected %s); stderr tail:\n%s" % (
                code, expect_exit, "\n".join(self.raw_lines[-40:])))
        return code


class HarnessTestCase(unittest.TestCase):
    """Starts one harnessd per test class (override server_args/env)."""
    server_args = ()
    server_env = None

    @classmethod
    def setUpClass(cls):
        cls.hd = Harnessd(args=cls.server_args, env=cls.server_env)
        cls.channel = cls.hd.channel

    @classmethod
    def tearDownClass(cls):
        cls.hd.close()
