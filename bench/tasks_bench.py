"""HealthService benchmark (see tasks_bench.sh):

1. Heartbeat throughput: 10,000 registered tasks, authenticated Heartbeat
   RPCs from h2load (a real gRPC load generator), spread over a few tasks.
2. Detection lag: with 100,000 registered healthy tasks, probe tasks stop
   heartbeating; lag = TIMEOUT event time - (last heartbeat + timeout),
   p50/p99, as the server stamps it and as a watching client sees it.
3. Memory: harnessd RSS with 0 vs 100,000 tasks loaded.

The 100,000 healthy tasks are written straight into the store's tasks table
(one SQL transaction) before harnessd starts, which then loads and arms them
like after any restart; probes and the throughput tasks go through the API.

--store-postgres runs the same on a private PostgreSQL 15 (tests/pg/pgtest.sh,
fsync on) as harnessd's store (--store postgres://..., a database per run)."""
import argparse
import json
import os
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("HS_BUILD_DIR", os.path.join(here, "..", "build"))
sys.path.insert(0, os.path.join(BUILD, "pygen"))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))
os.environ.setdefault("HS_BUILD_DIR", BUILD)

import grpc  # noqa: E402

import hstest  # noqa: E402
from harness.v1 import auth_pb2, health_pb2 as H  # noqa: E402

SVC = "/harness.v1.HealthService/"
PG = {}  # "server": the hstest.PgServer of a --store-postgres run


class Server:
    """harnessd on a free port with its log in a file (not parsed: at
    --log-level warn there is no "serving" line to wait for)."""

    store = None  # a function data_dir -> --store value (PostgreSQL runs)

    def __init__(self, data_dir, level="warn", extra=()):
        import socket
        sk = socket.socket()
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
        sk.close()
        self.target = "127.0.0.1:%d" % port
        self.log_path = data_dir + ".log"
        os.makedirs(data_dir, exist_ok=True)
        env = dict(os.environ, HARNESS_ADMIN_EMAIL="admin@example.com", HARNESS_ADMIN_PASSWORD="admin-password-1")
        self.log = open(self.log_path, "ab")
        store = ["--store", Server.store(data_dir)] if Server.store else []
        self.proc = subprocess.Popen([hstest.HARNESSD, "--listen", self.target, "--data-dir", data_dir,
                                      "--log-level", level] + store + list(extra),
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        self.channel = grpc.insecure_channel(self.target)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=120)
        except Exception:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            raise

    def loaded(self):
        with open(self.log_path) as f:
            for line in f:
                if '"tasks loaded"' in line:
                    return json.loads(line)
        return None

    def close(self, expect_exit=None):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def login(ch):
    fn = hstest.stub(ch, "/harness.v1.AuthService/Login", auth_pb2.LoginRequest, auth_pb2.AuthResponse)
    return fn(auth_pb2.LoginRequest(email="admin@example.com", password="admin-password-1"), timeout=30)


def register_many(ch, md, ids, interval, timeout, backoff=600000, inflight=64):
    fn = hstest.stub(ch, SVC + "RegisterTask", H.RegisterTaskRequest, H.Task)
    out, pending = {}, []
    for tid in ids:
        req = H.RegisterTaskRequest(task_id=tid, heartbeat_interval_ms=interval, heartbeat_timeout_ms=timeout,
                                    recovery_policy=H.RecoveryPolicy(initial_backoff_ms=backoff))
        pending.append((tid, fn.future(req, metadata=md, timeout=60)))
        if len(pending) >= inflight:
            t, f = pending.pop(0)
            out[t] = f.result()
    for t, f in pending:
        out[t] = f.result()
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def throughput(args, tmp):
    if args.nodes > 1:
        return throughput_nodes(args, tmp)
    hd = Server(os.path.join(tmp, "tp"))
    try:
        tok = login(hd.channel).access_token
        md = [("authorization", "Bearer " + tok)]
        t0 = time.time()
        register_many(hd.channel, md, ["tp-%05d" % i for i in range(args.tasks)], 1000, 600000)
        reg_s = time.time() - t0
        print("registered %d tasks via RegisterTask in %.1f s (%.0f/s)" % (args.tasks, reg_s, args.tasks / reg_s))
        procs, files = [], []
        per = args.requests // args.clients
        for c in range(args.clients):
            body = H.HeartbeatRequest(task_id="tp-%05d" % (c * 997 % args.tasks), current_step=42,
                                      cpu_usage=12.5, memory_usage_mb=100).SerializeToString()
            path = os.path.join(tmp, "hb-%d.bin" % c)
            with open(path, "wb") as f:
                f.write(b"\x00" + struct.pack(">I", len(body)) + body)
            files.append(path)
        t0 = time.time()
        for c in range(args.clients):
            procs.append(subprocess.Popen(
                ["h2load", "-n", str(per), "-c", str(args.conns), "-m", str(args.streams), "-t", "1",
                 "-d", files[c], "-H", "content-type: application/grpc", "-H", "te: trailers",
                 "-H", "authorization: Bearer " + tok,
                 "http://%s%sHeartbeat" % (hd.target, SVC)], stdout=subprocess.PIPE, text=True))
        outs = [p.communicate()[0] for p in procs]
        wall = time.time() - t0
        ok = 0
        for o in outs:
            for line in o.splitlines():
                if line.startswith("requests:") or line.startswith("status codes:") or \
                        line.startswith("time for request:"):
                    print("  h2load", line.strip())
                if line.startswith("requests:"):
                    ok += int(line.split(",")[2].split()[0])  # "N succeeded"
        print("heartbeat throughput: %d requests in %.2f s = %.0f req/s (%d h2load clients x %d conns x %d streams)"
              % (ok, wall, ok / wall, args.clients, args.conns, args.streams))
        # gRPC status is in trailers, which h2load does not check: verify the
        # heartbeats really landed.
        get = hstest.stub(hd.channel, SVC + "GetTask", H.GetTaskRequest, H.Task)
        t = get(H.GetTaskRequest(task_id="tp-00000"), metadata=md, timeout=10)
        assert t.current_step == 42 and t.cpu_usage == 12.5, t
        print("harnessd RSS with %d tasks: %.1f MiB" % (args.tasks, rss_kb(hd.proc.pid) / 1024.0))
    finally:
        hd.close(expect_exit=None)


def throughput_nodes(args, tmp):
    """--nodes N (PostgreSQL): N harnessd on one database, each registering
    its share of the tasks (so it holds their leases); h2load client c
    beats a task of node c %% N through node (c + shift) %% N: shift 0 =
    every heartbeat at its owner, 1 = every heartbeat at another node
    (written through the store)."""
    nodes = [Server(os.path.join(tmp, "node%d" % i),
                    extra=["--node-id", "bench-node-%d" % i]) for i in range(args.nodes)]
    try:
        tok = login(nodes[0].channel).access_token
        md = [("authorization", "Bearer " + tok)]
        t0 = time.time()
        threads = []
        for i, n in enumerate(nodes):
            ids = ["tp-%05d" % k for k in range(args.tasks) if k % args.nodes == i]
            threads.append(threading.Thread(target=register_many,
                                            args=(n.channel, md, ids, 1000, 600000)))
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        reg_s = time.time() - t0
        print("registered %d tasks over %d nodes in %.1f s (%.0f/s)" % (
            args.tasks, args.nodes, reg_s, args.tasks / reg_s))
        for shift in (0, 1):
            files, targets = [], []
            per = args.requests // args.clients
            for c in range(args.clients):
                owner = c % args.nodes
                k = owner + args.nodes * (c // args.nodes) * 7  # a task of that node
                body = H.HeartbeatRequest(task_id="tp-%05d" % k, current_step=42 + shift,
                                          cpu_usage=12.5, memory_usage_mb=100).SerializeToString()
                path = os.path.join(tmp, "hbn-%d.bin" % c)
                with open(path, "wb") as f:
                    f.write(b"\x00" + struct.pack(">I", len(body)) + body)
                files.append(path)
                targets.append(nodes[(owner + shift) % args.nodes].target)
            t0 = time.time()
            procs = [subprocess.Popen(
                ["h2load", "-n", str(per), "-c", str(args.conns), "-m", str(args.streams), "-t", "1",
                 "-d", files[c], "-H", "content-type: application/grpc", "-H", "te: trailers",
                 "-H", "authorization: Bearer " + tok,
                 "http://%s%sHeartbeat" % (targets[c], SVC)], stdout=subprocess.PIPE, text=True)
                for c in range(args.clients)]
            outs = [p.communicate()[0] for p in procs]
            wall = time.time() - t0
            ok = sum(int(l.split(",")[2].split()[0]) for o in outs for l in o.splitlines()
                     if l.startswith("requests:"))
            print("heartbeat throughput, %s: %d requests in %.2f s = %.0f req/s" % (
                "each at its owner" if shift == 0 else "each at another node", ok, wall,
                ok / wall))
            # gRPC status is in trailers, which h2load does not check: every
            # beaten task must show this pass's step.
            get = hstest.stub(nodes[0].channel, SVC + "GetTask", H.GetTaskRequest, H.Task)
            for c in range(args.clients):
                k = c % args.nodes + args.nodes * (c // args.nodes) * 7
                t = get(H.GetTaskRequest(task_id="tp-%05d" % k), metadata=md, timeout=10)
                assert t.current_step == 42 + shift and t.cpu_usage == 12.5, t
    finally:
        for n in nodes:
            n.close()


def lag(args, tmp):
    data = os.path.join(tmp, "lag")
    hd = Server(data)
    login(hd.channel)
    time.sleep(0.5)
    rss0 = rss_kb(hd.proc.pid)
    hd.close(expect_exit=None)
    now = int(time.time() * 1000)
    if Server.store:
        pg, dsn = PG["server"], Server.store(data)
        owner = pg.query("SELECT id FROM users LIMIT 1", dsn)[0][0]
        pg.query("INSERT INTO tasks(task_id, owner, state, total_steps, current_step, "
                 "heartbeat_interval_ms, heartbeat_timeout_ms, policy_max_attempts, "
                 "policy_initial_backoff_ms, policy_multiplier, policy_max_backoff_ms, "
                 "last_heartbeat_ms, registered_at_ms, workspace, updated_at_ms) "
                 "SELECT 'bulk-' || lpad(i::text, 6, '0'), '%s', 1, 100, 1, 30000, 3600000, 3, "
                 "1000, 2.0, 60000, %d, %d, 'bulk-' || lpad(i::text, 6, '0'), %d "
                 "FROM generate_series(0, %d) AS i" % (owner, now, now, now, args.bulk - 1), dsn)
        return lag_run(args, data, rss0)
    db = sqlite3.connect(os.path.join(data, "harness.db"))
    owner = db.execute("SELECT id FROM users LIMIT 1").fetchone()[0]
    cols = ("task_id, owner, state, total_steps, current_step, heartbeat_interval_ms, heartbeat_timeout_ms, "
            "sandbox_id, policy_max_attempts, policy_initial_backoff_ms, policy_multiplier, "
            "policy_max_backoff_ms, last_heartbeat_ms, registered_at_ms, recovery_attempts, "
            "last_checkpoint_id, cancel_requested, cpu_usage, memory_usage_mb, disk_usage_mb, details, "
            "failure_reason, workspace, labels_json, updated_at_ms")
    rows = (("bulk-%06d" % i, owner, 1, 100, 1, 30000, 3600000, "", 3, 1000, 2.0, 60000, now, now, 0, "",
             0, 0.0, 0.0, 0.0, "", "", "bulk-%06d" % i, "{}", now) for i in range(args.bulk))
    db.executemany("INSERT INTO tasks(%s) VALUES(%s)" % (cols, ",".join("?" * 25)), rows)
    db.commit()
    db.close()
    return lag_run(args, data, rss0)


def lag_run(args, data, rss0):
    t0 = time.time()
    hd = Server(data, level="info")
    try:
        loaded = hd.loaded()
        print("harnessd start with %d tasks: %.2f s to serving (loaded=%d armed=%d)" % (
            args.bulk, time.time() - t0, loaded["tasks"], loaded["armed"]))
        time.sleep(1.0)
        rss1 = rss_kb(hd.proc.pid)
        print("harnessd RSS: %.1f MiB with 0 tasks, %.1f MiB with %d tasks -> %.1f MiB per 100,000 tasks" % (
            rss0 / 1024.0, rss1 / 1024.0, args.bulk, (rss1 - rss0) / 1024.0 * 100000 / args.bulk))
        md = [("authorization", "Bearer " + login(hd.channel).access_token)]
        seen = {}
        cond = threading.Condition()
        w = hstest.stub(hd.channel, SVC + "WatchTasks", H.WatchTasksRequest, H.TaskEvent, "unary_stream")
        stream = w(H.WatchTasksRequest(), metadata=md, timeout=300)

        def reader():
            try:
                for ev in stream:
                    if ev.type == H.TASK_EVENT_TYPE_TIMEOUT:
                        with cond:
                            seen[ev.task_id] = (time.time(), ev.occurred_at.ToMilliseconds())
                            cond.notify_all()
            except grpc.RpcError:
                pass
        th = threading.Thread(target=reader, daemon=True)
        th.start()
        # Probes: staggered so deadlines do not all coincide.
        probes = ["probe-%04d" % i for i in range(args.probes)]
        tasks = {}
        for i, tid in enumerate(probes):
            tasks.update(register_many(hd.channel, md, [tid], 100, 1000 + (i % 50) * 20, inflight=1))
        with cond:
            cond.wait_for(lambda: len(seen) >= len(probes), timeout=60)
        stream.cancel()
        server_lag, client_lag = [], []
        for tid in probes:
            t = tasks[tid]
            deadline_ms = t.last_heartbeat_at.ToMilliseconds() + t.heartbeat_timeout_ms
            recv, occurred = seen[tid]
            server_lag.append(occurred - deadline_ms)
            client_lag.append(recv * 1000 - deadline_ms)
        print("detection lag over %d probes with %d healthy tasks armed (deadline -> TIMEOUT):" % (
            len(probes), args.bulk))
        print("  server-stamped: p50 %.0f ms, p99 %.0f ms, max %.0f ms" % (
            pct(server_lag, 50), pct(server_lag, 99), max(server_lag)))
        print("  client-observed (watch stream): p50 %.0f ms, p99 %.0f ms, max %.0f ms" % (
            pct(client_lag, 50), pct(client_lag, 99), max(client_lag)))
        print("harnessd CPU while idle with %d tasks: %s" % (args.bulk, idle_cpu(hd.proc.pid)))
    finally:
        hd.close(expect_exit=None)


def idle_cpu(pid, secs=2.0):
    def ticks():
        with open("/proc/%d/stat" % pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])
    a = ticks()
    time.sleep(secs)
    b = ticks()
    return "%.1f%% of one core" % ((b - a) / os.sysconf("SC_CLK_TCK") / secs * 100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--requests", type=int, default=40000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--bulk", type=int, default=100000)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-lag", action="store_true")
    ap.add_argument("--store-postgres", action="store_true",
                    help="harnessd's store on a private PostgreSQL 15 instead of SQLite")
    ap.add_argument("--nodes", type=int, default=1,
                    help="with --store-postgres: this many harnessd on one database "
                         "(throughput only)")
    args = ap.parse_args()
    if args.nodes > 1 and not args.store_postgres:
        ap.error("--nodes needs --store-postgres")
    if args.nodes > 1:
        args.skip_lag = True
        # one signing secret: a token from one node is good on the others
        os.environ.setdefault("HARNESS_JWT_SECRET", "bench-nodes-secret-0123456789abcdef0123")
    if args.store_postgres:
        PG["server"] = hstest.PgServer()
        dbs = {}

        def store(data_dir):
            if args.nodes > 1:
                data_dir = "shared"  # one database for every node
            if data_dir not in dbs:
                dbs[data_dir] = hstest.pg_create_database(PG["server"].dsn, "bench_%d" % len(dbs))
            return dbs[data_dir]
        Server.store = store
        print("store: PostgreSQL 15 (private, fsync on)")
    else:
        print("store: SQLite")
    with tempfile.TemporaryDirectory(prefix="hs-tasks-bench-") as tmp:
        if not args.skip_throughput:
            throughput(args, tmp)
        if not args.skip_lag:
            lag(args, tmp)


if __name__ == "__main__":
    main()
