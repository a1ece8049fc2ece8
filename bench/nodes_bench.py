"""Issue 19's bench (see nodes_bench.sh): 100,000 tasks over 3 harnessd
nodes on one PostgreSQL vs one harnessd on SQLite, in the same run.

Per setup:
1. The store is created by a first harnessd start (migrations, admin user),
   then --bulk tasks are written straight into it (tasks + task_owners, one
   transaction; healthy: 1 h timeout). With several nodes each bulk task
   also gets a live lease of node i %% N, as a cluster that registered them
   round-robin and restarts would have. Then the nodes start (one after the
   other): time to serving, the "tasks loaded" figures, RSS.
2. --register tasks through RegisterTask, round-robin over the nodes (each
   holds what it registered): registrations/s.
3. Heartbeats/s with h2load: every heartbeat at the task's holder, then
   spread over the nodes as a client that does not know the holder would
   (client c sends to node c %% N, 1 in N at the holder).
4. Detection lag: --silent tasks registered round-robin with short,
   staggered timeouts that never beat; lag = TIMEOUT event - (last beat +
   timeout), server-stamped (occurred_at) and as a WatchTasks client on
   node 0 sees it (other nodes' events reach it through the store).
5. Idle CPU of every node (and of PostgreSQL) with everything armed, over
   a few lease periods.
6. Takeover (several nodes): --takeover-silent tasks that never beat are
   registered at the last node, which is then killed (-9) with its third
   of the leases; time until the survivors hold every one of them (from
   the kill and from its last lease's expiry), how they split them, and
   the lag of those silent tasks' TIMEOUTs (fired by their new holders).
"""
import argparse
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import tasks_bench as tb  # noqa: E402
from tasks_bench import H, SVC, grpc, hstest  # noqa: E402

SECRET = "bench-nodes-secret-0123456789abcdef0123"


def ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])
    except OSError:
        return 0


def pg_pids(pg):
    """The postmaster and its children (PostgreSQL's CPU)."""
    with open(os.path.join(pg.dir, "data", "postmaster.pid")) as f:
        root = int(f.readline())
    out = [root]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == root:
                        out.append(int(d))
            except (OSError, ValueError):
                pass
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def bulk_sqlite(data, n, now):
    db = sqlite3.connect(os.path.join(data, "harness.db"))
    owner = db.execute("SELECT id FROM users LIMIT 1").fetchone()[0]
    cols = ("task_id, owner, state, total_steps, current_step, heartbeat_interval_ms, heartbeat_timeout_ms, "
            "sandbox_id, policy_max_attempts, policy_initial_backoff_ms, policy_multiplier, "
            "policy_max_backoff_ms, last_heartbeat_ms, registered_at_ms, recovery_attempts, "
            "last_checkpoint_id, cancel_requested, cpu_usage, memory_usage_mb, disk_usage_mb, details, "
            "failure_reason, workspace, labels_json, updated_at_ms")
    db.executemany("INSERT INTO tasks(%s) VALUES(%s)" % (cols, ",".join("?" * 25)),
                   (("bulk-%06d" % i, owner, 1, 100, 1, 30000, 3600000, "", 3, 1000, 2.0, 60000, now, now,
                     0, "", 0, 0.0, 0.0, 0.0, "", "", "bulk-%06d" % i, "{}", now) for i in range(n)))
    db.execute("INSERT INTO task_owners(task_id, owner, claimed_at_ms) "
               "SELECT task_id, owner, registered_at_ms FROM tasks WHERE task_id LIKE 'bulk-%'")
    db.commit()
    db.close()


def bulk_pg(pg, dsn, n, now, nodes, lease_ms, old_leases=False):
    owner = pg.query("SELECT id FROM users LIMIT 1", dsn)[0][0]
    pg.query("INSERT INTO tasks(task_id, owner, state, total_steps, current_step, "
             "heartbeat_interval_ms, heartbeat_timeout_ms, policy_max_attempts, "
             "policy_initial_backoff_ms, policy_multiplier, policy_max_backoff_ms, "
             "last_heartbeat_ms, registered_at_ms, workspace, updated_at_ms) "
             "SELECT 'bulk-' || lpad(i::text, 6, '0'), '%s', 1, 100, 1, 30000, 3600000, 3, "
             "1000, 2.0, 60000, %d, %d, 'bulk-' || lpad(i::text, 6, '0'), %d "
             "FROM generate_series(0, %d) AS i" % (owner, now, now, now, n - 1), dsn)
    pg.query("INSERT INTO task_owners(task_id, owner, claimed_at_ms) "
             "SELECT task_id, owner, registered_at_ms FROM tasks WHERE task_id LIKE 'bulk-%'", dsn)
    if nodes > 1:
        # leases as a cluster that registered them round-robin has them; a
        # while left, so the first node to start does not take them all
        pg.query("INSERT INTO task_leases(task_id, node_id, fence, expires_at_ms) "
                 "SELECT 'bulk-' || lpad(i::text, 6, '0'), 'bench-node-' || (i %% %d), 1, %d "
                 "FROM generate_series(0, %d) AS i" % (nodes, now + 600000, n - 1), dsn)
    if old_leases:  # before migration 10: every renewal also updates an index
        pg.query("CREATE INDEX task_leases_expires ON task_leases(expires_at_ms); "
                 "ALTER TABLE task_leases SET (fillfactor = 100)", dsn)
        pg.query("VACUUM FULL task_leases", dsn)
    pg.query("ANALYZE", dsn)


def h2load_pass(tok, tmp, clients, conns, streams, requests, task_of, target_of, step):
    files = []
    for c in range(clients):
        body = H.HeartbeatRequest(task_id=task_of(c), current_step=step, cpu_usage=12.5,
                                  memory_usage_mb=100).SerializeToString()
        path = os.path.join(tmp, "hb-%d.bin" % c)
        with open(path, "wb") as f:
            f.write(b"\x00" + struct.pack(">I", len(body)) + body)
        files.append(path)
    per = requests // clients
    t0 = time.time()
    procs = [subprocess.Popen(
        ["h2load", "-n", str(per), "-c", str(conns), "-m", str(streams), "-t", "1",
         "-d", files[c], "-H", "content-type: application/grpc", "-H", "te: trailers",
         "-H", "authorization: Bearer " + tok,
         "http://%s%sHeartbeat" % (target_of(c), SVC)], stdout=subprocess.PIPE, text=True)
        for c in range(clients)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.time() - t0
    ok = sum(int(line.split(",")[2].split()[0]) for o in outs for line in o.splitlines()
             if line.startswith("requests:"))
    return ok, wall


def run_setup(args, tmp, name, n_nodes, pg=None):
    print("== %s: %d node%s, %d tasks (load %s)" % (name, n_nodes, "s" if n_nodes > 1 else "",
                                                     args.bulk + args.register + args.silent, loadavg()))
    dsn = hstest.pg_create_database(pg.dsn, "bench_%s" % name) if pg else None
    datas = [os.path.join(tmp, "%s-node%d" % (name, i)) for i in range(n_nodes)]
    extra = ["--max-tasks-per-user", "1000000"]
    node_extra = (lambda i: ["--node-id", "bench-node-%d" % i, "--task-lease-ms", str(args.lease_ms)]
                  if n_nodes > 1 else [])
    tb.Server.store = (lambda d: dsn) if pg else None
    first = tb.Server(datas[0], extra=extra + node_extra(0))
    tb.login(first.channel)
    first.close()
    now = int(time.time() * 1000)
    t0 = time.time()
    if pg:
        bulk_pg(pg, dsn, args.bulk, now, n_nodes, args.lease_ms, args.pg_old_leases)
    else:
        bulk_sqlite(datas[0], args.bulk, now)
    print("bulk insert of %d tasks: %.1f s" % (args.bulk, time.time() - t0))
    nodes = []
    try:
        for i in range(n_nodes):
            t0 = time.time()
            nodes.append(tb.Server(datas[i], level="info", extra=extra + node_extra(i)))
            lo = nodes[-1].loaded() or {}
            print("node %d start: %.2f s to serving (tasks in memory %s, armed %s), RSS %.1f MiB" % (
                i, time.time() - t0, lo.get("tasks"), lo.get("armed"), tb.rss_kb(nodes[-1].proc.pid) / 1024.0))
        tok = tb.login(nodes[0].channel).access_token
        md = [("authorization", "Bearer " + tok)]
        if n_nodes > 1:
            held = pg.query("SELECT node_id, count(*) FROM task_leases GROUP BY node_id ORDER BY 1", dsn)
            print("leases after start: %s" % ", ".join("%s %s" % (r[0], r[1]) for r in held))

        # 2. registrations, round-robin (task tp-k at node k % N)
        t0 = time.time()
        ths = [threading.Thread(target=tb.register_many, args=(
            n.channel, md, ["tp-%05d" % k for k in range(args.register) if k % n_nodes == i], 1000, 600000))
            for i, n in enumerate(nodes)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        reg = time.time() - t0
        print("RegisterTask: %d in %.1f s = %.0f /s (64 in flight per node)" % (
            args.register, reg, args.register / reg))

        # 3. heartbeats
        def task_of(c):  # a task of node c % N
            return "tp-%05d" % (c % n_nodes + n_nodes * (c // n_nodes) * 7)
        passes = [("at the holder", lambda c: nodes[c % n_nodes].target)]
        if n_nodes > 1:  # task of node (c // N) % N sent to node c % N
            passes.append(("spread over nodes (1 in %d at the holder)" % n_nodes,
                           lambda c: nodes[(c + c // n_nodes) % n_nodes].target))
        for step, (what, target_of) in enumerate(passes, 42):
            ok, wall = h2load_pass(tok, tmp, args.clients, args.conns, args.streams, args.requests,
                                   task_of, target_of, step)
            print("Heartbeat %s: %d OK in %.2f s = %.0f req/s (%d clients x %d conns x %d streams; load %s)" % (
                what, ok, wall, ok / wall, args.clients, args.conns, args.streams, loadavg()))
            get = hstest.stub(nodes[0].channel, SVC + "GetTask", H.GetTaskRequest, H.Task)
            for c in range(args.clients):  # h2load does not read gRPC status: check they landed
                t = get(H.GetTaskRequest(task_id=task_of(c)), metadata=md, timeout=10)
                assert t.current_step == step, t

        # 4. detection lag
        seen = {}
        cond = threading.Condition()
        w = hstest.stub(nodes[0].channel, SVC + "WatchTasks", H.WatchTasksRequest, H.TaskEvent, "unary_stream")
        stream = w(H.WatchTasksRequest(), metadata=md, timeout=600)

        def reader():
            try:
                for ev in stream:
                    if ev.type == H.TASK_EVENT_TYPE_TIMEOUT:
                        with cond:
                            seen[ev.task_id] = (time.time(), ev.occurred_at.ToMilliseconds())
                            cond.notify_all()
            except grpc.RpcError:
                pass
        threading.Thread(target=reader, daemon=True).start()
        silent = ["silent-%05d" % i for i in range(args.silent)]
        tasks, lock = {}, threading.Lock()

        def reg_silent(i, n):
            out = {}
            ids = [s for k, s in enumerate(silent) if k % n_nodes == i]
            # staggered: deadlines 2-4 s after registration, not all at once
            fn = hstest.stub(n.channel, SVC + "RegisterTask", H.RegisterTaskRequest, H.Task)
            pend = []
            for tid in ids:
                k = int(tid[-5:])
                req = H.RegisterTaskRequest(task_id=tid, heartbeat_interval_ms=100,
                                            heartbeat_timeout_ms=2000 + (k % 100) * 20,
                                            recovery_policy=H.RecoveryPolicy(initial_backoff_ms=600000))
                pend.append((tid, fn.future(req, metadata=md, timeout=120)))
                if len(pend) >= 64:
                    t, f = pend.pop(0)
                    out[t] = f.result()
            for t, f in pend:
                out[t] = f.result()
            with lock:
                tasks.update(out)
        t0 = time.time()
        ths = [threading.Thread(target=reg_silent, args=(i, n)) for i, n in enumerate(nodes)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        print("registered %d silent tasks in %.1f s" % (len(silent), time.time() - t0))
        with cond:
            cond.wait_for(lambda: len(seen) >= len(silent), timeout=120)
        stream.cancel()
        server_lag, client_lag = [], []
        for tid in silent:
            if tid not in seen:
                continue
            t = tasks[tid]
            deadline = t.last_heartbeat_at.ToMilliseconds() + t.heartbeat_timeout_ms
            recv, occurred = seen[tid]
            server_lag.append(occurred - deadline)
            client_lag.append(recv * 1000 - deadline)
        print("detection lag, %d of %d silent tasks seen TIMEOUT (deadline -> event):" % (
            len(server_lag), len(silent)))
        missing = [tid for tid in silent if tid not in seen]
        if missing and pg:  # what the store says about them
            for r in pg.query("SELECT t.task_id, t.state, l.node_id, l.fence, (SELECT string_agg("
                              "e.type::text, ',' ORDER BY e.event_id) FROM task_events e WHERE "
                              "e.task_id = t.task_id) FROM tasks t LEFT JOIN task_leases l USING "
                              "(task_id) WHERE t.task_id IN (%s)" % ",".join(
                                  "'%s'" % m for m in missing[:10]), dsn):
                print("  not seen: %s" % " ".join(r))
        if server_lag:
            for what, xs in (("server-stamped", server_lag), ("WatchTasks client on node 0", client_lag)):
                print("  %s: p50 %.0f ms, p99 %.0f ms, max %.0f ms" % (
                    what, tb.pct(xs, 50), tb.pct(xs, 99), max(xs)))

        # 5. idle CPU and memory
        secs = max(3.0, 2 * args.lease_ms / 1000.0) if n_nodes > 1 else 3.0
        pids = [n.proc.pid for n in nodes] + (pg_pids(pg) if pg else [])
        a = [ticks(p) for p in pids]
        time.sleep(secs)
        b = [ticks(p) for p in pids]
        hz = os.sysconf("SC_CLK_TCK")
        cpu = ["node %d %.1f%%" % (i, (b[i] - a[i]) / hz / secs * 100) for i in range(n_nodes)]
        if pg:
            cpu.append("PostgreSQL %.1f%%" % ((sum(b[n_nodes:]) - sum(a[n_nodes:])) / hz / secs * 100))
        print("idle CPU over %.0f s (of one core): %s" % (secs, ", ".join(cpu)))
        print("RSS: %s" % ", ".join("node %d %.1f MiB" % (i, tb.rss_kb(n.proc.pid) / 1024.0)
                                    for i, n in enumerate(nodes)))
        # 6. takeover: kill -9 one node, time until survivors hold its leases
        if n_nodes > 1:
            takeover(args, nodes, md, pg, dsn)
    finally:
        for n in nodes:
            n.close()


def takeover(args, nodes, md, pg, dsn):
    """Kill -9 the last node (its third of the leases, and --takeover-silent
    tasks registered there that never beat), then time until every one of
    its leases is held by a survivor (task_leases polled), from the kill and
    from the moment its last lease expired; and the lag of the silent
    tasks' TIMEOUTs (the survivors fire them once they take them over)."""
    victim = nodes[-1]
    vid = "bench-node-%d" % (len(nodes) - 1)
    seen = {}
    cond = threading.Condition()
    w = hstest.stub(nodes[0].channel, SVC + "WatchTasks", H.WatchTasksRequest, H.TaskEvent, "unary_stream")
    stream = w(H.WatchTasksRequest(), metadata=md, timeout=900)

    def reader():
        try:
            for ev in stream:
                if ev.type == H.TASK_EVENT_TYPE_TIMEOUT and ev.task_id.startswith("orphan-"):
                    with cond:
                        seen[ev.task_id] = ev.occurred_at.ToMilliseconds()
                        cond.notify_all()
        except grpc.RpcError:
            pass
    threading.Thread(target=reader, daemon=True).start()
    orphans = ["orphan-%05d" % i for i in range(args.takeover_silent)]
    fn = hstest.stub(victim.channel, SVC + "RegisterTask", H.RegisterTaskRequest, H.Task)
    tasks, pend = {}, []
    for tid in orphans:  # deadlines 3-5 s after registration: the node is dead by then
        req = H.RegisterTaskRequest(task_id=tid, heartbeat_interval_ms=100,
                                    heartbeat_timeout_ms=3000 + (int(tid[-5:]) % 100) * 20,
                                    recovery_policy=H.RecoveryPolicy(initial_backoff_ms=600000))
        pend.append((tid, fn.future(req, metadata=md, timeout=120)))
        if len(pend) >= 64:
            t, f = pend.pop(0)
            tasks[t] = f.result()
    for tid, f in pend:
        tasks[tid] = f.result()
    victim.proc.kill()
    victim.proc.wait()
    t_kill = time.time()
    r = pg.query("SELECT count(*), max(expires_at_ms) FROM task_leases WHERE node_id = '%s'" % vid, dsn)
    held, expiry = int(r[0][0]), int(r[0][1] or 0)
    print("takeover: killed %s holding %d leases (%d silent tasks among them); its last lease "
          "expires %.1f s after the kill (load %s)" % (vid, held, len(orphans),
                                                       expiry / 1000.0 - t_kill, loadavg()))
    left, t_done = held, None
    while time.time() < t_kill + 900:
        left = int(pg.query("SELECT count(*) FROM task_leases WHERE node_id = '%s'" % vid, dsn)[0][0])
        if left == 0:
            t_done = time.time()
            break
        time.sleep(0.2)
    if t_done is None:
        print("takeover: %d of %d leases still held by %s after 900 s" % (left, held, vid))
    else:
        print("takeover: all %d leases held by survivors %.1f s after the kill, %.1f s after the "
              "last one expired (%.0f leases/s)" % (held, t_done - t_kill, t_done - expiry / 1000.0,
                                                     held / max(0.001, t_done - expiry / 1000.0)))
    split = pg.query("SELECT node_id, count(*) FROM task_leases GROUP BY node_id ORDER BY 1", dsn)
    print("takeover: leases now %s" % ", ".join("%s %s" % (x[0], x[1]) for x in split))
    with cond:
        cond.wait_for(lambda: len(seen) >= len(orphans), timeout=120)
    stream.cancel()
    lag = [seen[t] - (tasks[t].last_heartbeat_at.ToMilliseconds() + tasks[t].heartbeat_timeout_ms)
           for t in orphans if t in seen]
    if lag:
        print("takeover: %d of %d silent tasks of the dead node saw TIMEOUT, lag (deadline -> "
              "event, server-stamped): p50 %.0f ms, p99 %.0f ms, max %.0f ms" % (
                  len(lag), len(orphans), tb.pct(lag, 50), tb.pct(lag, 99), max(lag)))
    else:
        print("takeover: none of the dead node's silent tasks saw TIMEOUT")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bulk", type=int, default=96000, help="tasks written into the store before start")
    ap.add_argument("--register", type=int, default=3000, help="tasks registered through the API")
    ap.add_argument("--silent", type=int, default=1000, help="silent tasks for the detection lag")
    ap.add_argument("--requests", type=int, default=40000)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--conns", type=int, default=2)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--lease-ms", type=int, default=10000)
    ap.add_argument("--takeover-silent", type=int, default=300,
                    help="silent tasks registered at the node killed for the takeover phase")
    ap.add_argument("--only", choices=["sqlite", "pg"])
    ap.add_argument("--pg-old-leases", action="store_true",
                    help="for comparison: task_leases as before migration 10 (an index on "
                         "expires_at_ms, full pages: no renewal is a HOT update)")
    args = ap.parse_args()
    os.environ.setdefault("HARNESS_JWT_SECRET", SECRET)  # a token from one node is good on all
    with tempfile.TemporaryDirectory(prefix="hs-nodes-bench-") as tmp:
        if args.only != "pg":
            run_setup(args, tmp, "sqlite", 1)
        if args.only != "sqlite":
            pg = hstest.PgServer()
            try:
                print("store: PostgreSQL 15 (private, fsync on)")
                run_setup(args, tmp, "pg", args.nodes, pg)
            finally:
                pg.close()


if __name__ == "__main__":
    main()
