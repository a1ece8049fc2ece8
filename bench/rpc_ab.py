"""Two (or more) harnessd builds side by side in one run (issue 15): server CPU
per request of health Check, GetTask (Bearer JWT) and Heartbeat on one task,
h2load -c50 -m20 as rpc_bench.py, each round: the bare C-core echo, then each
binary in turn; the median over rounds with the ratio to the echo.
  HS_BUILD_DIR=build /usr/bin/python3 bench/rpc_ab.py ROUNDS REQUESTS HARNESSD...
e.g. a build of main and of a branch:
  bench/rpc_ab.py 5 100000 /tmp/main/build/server/harnessd build/server/harnessd"""
import os, sys, statistics, tempfile, shutil
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rpc_bench as rb
rounds, n, bins = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
tmp = tempfile.mkdtemp(prefix="hs-ab-")
echo_bin = rb.build_echo(tmp)
files = rb.ab_bodies(tmp)
res = {}
def rec(k, r):
    if r: res.setdefault(k, []).append(r["us"])
try:
  for rnd in range(rounds):
    port = rb.free_port()
    e = rb.Proc([echo_bin, "127.0.0.1:%d" % port], port)
    rec("echo Check", rb.measure(e, lambda: rb.h2load(e.port, rb.CHECK, files["check"], n)))
    e.stop()
    for i, b in enumerate(bins):
        rb.hstest.HARNESSD = b
        hd = rb.start_harnessd(tmp, "hd%d-%d" % (i, rnd))
        tok = rb.prepare(hd, tmp, 10)
        t = "[%d]" % i
        rec(t + " Check", rb.measure(hd, lambda: rb.h2load(hd.port, rb.CHECK, files["check"], n)))
        rec(t + " GetTask", rb.measure(hd, lambda: rb.h2load(hd.port, rb.SVC + "GetTask", files["get"], n, tok)))
        rec(t + " Heartbeat1", rb.measure(hd, lambda: rb.h2load(hd.port, rb.SVC + "Heartbeat", files["beat"], n // 2, tok)))
        hd.stop()
    print("round", rnd + 1, "load", open("/proc/loadavg").read().split()[:3], flush=True)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
base = statistics.median(res["echo Check"])
for k, v in res.items():
    m = statistics.median(v)
    print("%-16s %6.1f us  %.2fx   [%s]" % (k, m, m / base, " ".join("%.1f" % x for x in v)))
