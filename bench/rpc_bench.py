"""RPC hot path benchmark (issue 15; see rpc_bench.sh).

Server CPU per request (utime + stime of the server process over the run /
requests answered) for, in the same run:
  - the bare C-core + protobuf-c echo (bench/c_echo.c), health Check
  - gRPC's C++ async generic server (bench/cpp_async_health.cc), health Check
  - harnessd: grpc.health.v1 Check; GetTask and ListTasks(page_size 1) with a
    Bearer JWT; Heartbeat on one task; then with metrics off
    (--metrics-listen "": no registry on the RPC core) the same RPCs
  - Heartbeat on 1,000 distinct tasks and Check on the echo with c_load
    (bench/c_load.c: h2load sends one fixed body), side by side.
h2load -c50 -m20 -t1 as in the issue. Each round runs every subject once;
the median over rounds is reported with the ratio to the echo."""
import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(here, "..")
BUILD = os.environ.get("HS_BUILD_DIR", os.path.join(SRC, "build"))
sys.path.insert(0, os.path.join(BUILD, "pygen"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
os.environ.setdefault("HS_BUILD_DIR", BUILD)

import grpc  # noqa: E402

import hstest  # noqa: E402
from harness.v1 import auth_pb2, health_pb2 as H  # noqa: E402

SVC = "/harness.v1.HealthService/"
CHECK = "/grpc.health.v1.Health/Check"
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def wait_port(port, secs=60):
    t = time.time() + secs
    while time.time() < t:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


def frame(msg):
    body = msg.SerializeToString()
    return b"\x00" + struct.pack(">I", len(body)) + body


class Proc:
    def __init__(self, argv, port, env=None):
        self.port = port
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=self.log, env=env)
        wait_port(port)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()


def grpc_flags():
    """cc flags for a program on the C core and protobuf-c."""
    return subprocess.run(["pkg-config", "--cflags", "--libs", "grpc", "libprotobuf-c"],
                          capture_output=True, text=True, check=True).stdout.split()


def build_echo(tmp, debug=False):
    """Compiles the bare C-core echo (bench/c_echo.c) into tmp; its path."""
    gen = os.path.join(BUILD, "proto", "gen")
    fl = grpc_flags()
    out = os.path.join(tmp, "c_echo")
    subprocess.run(["cc", "-O2"] + (["-g"] if debug else []) + ["-o", out, os.path.join(here, "c_echo.c"),
                    os.path.join(gen, "grpc/health/v1/health.pb-c.c"), "-I" + gen] + fl + ["-lpthread"],
                   check=True)
    return out


def ab_bodies(tmp):
    """The request bodies the A/B scripts send: check (an empty message),
    get (GetTask b-0000), beat (Heartbeat of b-0000); name -> file."""
    files = {}
    for name, msg in (("check", H.HeartbeatRequest()), ("get", H.GetTaskRequest(task_id="b-0000")),
                      ("beat", H.HeartbeatRequest(task_id="b-0000", current_step=42, cpu_usage=12.5,
                                                  memory_usage_mb=100))):
        files[name] = os.path.join(tmp, name + ".bin")
        with open(files[name], "wb") as f:
            f.write(frame(msg))
    return files


def h2load(port, path, body_file, n, auth=None):
    argv = ["h2load", "-n", str(n), "-c", "50", "-m", "20", "-t", "1", "-d", body_file,
            "-H", "content-type: application/grpc", "-H", "te: trailers"]
    if auth:
        argv += ["-H", "authorization: Bearer " + auth]
    out = subprocess.run(argv + ["http://127.0.0.1:%d%s" % (port, path)], capture_output=True,
                         text=True).stdout
    ok = 0
    for line in out.splitlines():
        if line.startswith("requests:"):
            ok = int(line.split(",")[2].split()[0])  # "N succeeded"
    return ok


def c_load(tool, port, path, bodies, n, auth=None):
    argv = [tool, "127.0.0.1:%d" % port, path, bodies, "50", "20", str(n)]
    if auth:
        argv.append("Bearer " + auth)
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    # "requests: N ok, M failed in ..."
    parts = out.split()
    if not parts:
        return 0
    if int(parts[3]) != 0:
        print("  c_load failures:", out.strip())
    return int(parts[1])


def measure(proc, fn):
    c0, t0 = cpu_s(proc.p.pid), time.time()
    ok = fn()
    c1, t1 = cpu_s(proc.p.pid), time.time()
    if ok == 0:
        return None
    return {"us": (c1 - c0) / ok * 1e6, "rps": ok / (t1 - t0), "ok": ok}


def start_harnessd(tmp, name, metrics=True):
    port = free_port()
    env = dict(os.environ, HARNESS_ADMIN_EMAIL="admin@example.com",
               HARNESS_ADMIN_PASSWORD="admin-password-1",
               HARNESS_METRICS_LISTEN="127.0.0.1:0" if metrics else "")
    d = os.path.join(tmp, name)
    return Proc([hstest.HARNESSD, "--listen", "127.0.0.1:%d" % port, "--data-dir", d,
                 "--log-level", "warn"], port, env)


def prepare(hd, tmp, n_tasks):
    ch = grpc.insecure_channel("127.0.0.1:%d" % hd.port)
    grpc.channel_ready_future(ch).result(timeout=60)
    login = hstest.stub(ch, "/harness.v1.AuthService/Login", auth_pb2.LoginRequest,
                        auth_pb2.AuthResponse)
    tok = login(auth_pb2.LoginRequest(email="admin@example.com", password="admin-password-1"),
                timeout=30).access_token
    md = [("authorization", "Bearer " + tok)]
    reg = hstest.stub(ch, SVC + "RegisterTask", H.RegisterTaskRequest, H.Task)
    hb = hstest.stub(ch, SVC + "Heartbeat", H.HeartbeatRequest, H.HeartbeatResponse)
    for lo in range(0, n_tasks, 100):  # within --user-max-calls
        ids = ["b-%04d" % i for i in range(lo, min(n_tasks, lo + 100))]
        for f in [reg.future(H.RegisterTaskRequest(task_id=t, heartbeat_interval_ms=1000,
                                                   heartbeat_timeout_ms=600000), metadata=md, timeout=60)
                  for t in ids]:
            f.result()
        # one heartbeat each: RUNNING (the first beat may be a state change)
        for f in [hb.future(H.HeartbeatRequest(task_id=t, current_step=1), metadata=md, timeout=60)
                  for t in ids]:
            f.result()
    ch.close()
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=1000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hs-rpcbench-")
    tools = os.path.join(tmp, "bin")
    os.makedirs(tools)
    build_echo(tools)
    subprocess.run(["cc", "-O2", "-o", os.path.join(tools, "c_load"), os.path.join(here, "c_load.c")]
                   + grpc_flags(), check=True)
    cpp = os.path.join(tools, "cpp_async_health")
    cxx = subprocess.run(["pkg-config", "--cflags", "--libs", "grpc++"], capture_output=True, text=True)
    if cxx.returncode == 0:
        subprocess.run(["g++", "-O2", "-o", cpp, os.path.join(here, "cpp_async_health.cc")]
                       + cxx.stdout.split(), check=True)
    else:
        cpp = None
    files = ab_bodies(tmp)  # check (an empty HealthCheckRequest), get, beat
    files["list"] = os.path.join(tmp, "list.bin")
    with open(files["list"], "wb") as f:
        f.write(frame(H.ListTasksRequest(page_size=1)))
    many = os.path.join(tmp, "beats.rec")
    with open(many, "wb") as f:
        for i in range(args.tasks):
            b = H.HeartbeatRequest(task_id="b-%04d" % i, current_step=43, cpu_usage=1.0).SerializeToString()
            f.write(struct.pack(">I", len(b)) + b)
    checks = os.path.join(tmp, "checks.rec")
    with open(checks, "wb") as f:
        f.write(struct.pack(">I", 0))
    n = args.requests
    results = {}

    def rec(name, r):
        if r is not None:
            results.setdefault(name, []).append(r)

    for rnd in range(args.rounds):
        print("round %d" % (rnd + 1), flush=True)
        port = free_port()
        echo = Proc([os.path.join(tools, "c_echo"), "127.0.0.1:%d" % port, "2"], port)
        rec("echo Check (h2load)", measure(echo, lambda: h2load(echo.port, CHECK, files["check"], n)))
        rec("echo Check (c_load)", measure(echo, lambda: c_load(os.path.join(tools, "c_load"),
                                                                 echo.port, CHECK, checks, n // 2)))
        echo.stop()
        if cpp:
            port = free_port()
            cp = Proc([cpp, "127.0.0.1:%d" % port, "2"], port)
            rec("C++ async Check", measure(cp, lambda: h2load(cp.port, CHECK, files["check"], n)))
            cp.stop()
        for metrics in (True, False):
            tag = "" if metrics else " [metrics off]"
            hd = start_harnessd(tmp, "hd-%d-%d" % (rnd, metrics), metrics)
            try:
                tok = prepare(hd, tmp, args.tasks)
                rec("harnessd Check" + tag, measure(hd, lambda: h2load(hd.port, CHECK, files["check"], n)))
                rec("harnessd GetTask (JWT)" + tag,
                    measure(hd, lambda: h2load(hd.port, SVC + "GetTask", files["get"], n, tok)))
                rec("harnessd ListTasks page_size 1 (JWT)" + tag,
                    measure(hd, lambda: h2load(hd.port, SVC + "ListTasks", files["list"], n // 2, tok)))
                rec("harnessd Heartbeat, 1 task (JWT)" + tag,
                    measure(hd, lambda: h2load(hd.port, SVC + "Heartbeat", files["beat"], n // 2, tok)))
                rec("harnessd Heartbeat, %d tasks (JWT, c_load)" % args.tasks + tag,
                    measure(hd, lambda: c_load(os.path.join(tools, "c_load"), hd.port, SVC + "Heartbeat",
                                               many, n // 2, tok)))
                # the heartbeats really landed (h2load does not read gRPC trailers)
                ch = grpc.insecure_channel("127.0.0.1:%d" % hd.port)
                get = hstest.stub(ch, SVC + "GetTask", H.GetTaskRequest, H.Task)
                t = get(H.GetTaskRequest(task_id="b-0000"), metadata=[("authorization", "Bearer " + tok)],
                        timeout=10)
                assert t.current_step in (42, 43) and t.state == H.TASK_STATE_RUNNING, t
                ch.close()
            finally:
                hd.stop()
    base = statistics.median(r["us"] for r in results["echo Check (h2load)"])
    base_cl = statistics.median(r["us"] for r in results.get("echo Check (c_load)", [{"us": base}]))
    print("\n| server / RPC | CPU µs/req (median of %d) | vs bare echo | req/s |" % args.rounds)
    print("|---|---|---|---|")
    for name, rs in results.items():
        us = statistics.median(r["us"] for r in rs)
        rps = statistics.median(r["rps"] for r in rs)
        b = base_cl if "c_load" in name else base
        print("| %s | %.1f | %.2fx | %.0f |" % (name, us, us / b, rps))


if __name__ == "__main__":
    main()
