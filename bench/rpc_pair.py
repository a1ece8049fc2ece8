"""Paired A/B of server CPU per request (issue 15): every subject is measured
right after a run of the bare C-core echo, and its ratio is taken against
that echo run, so both sample the same moment of a machine whose speed
drifts (a shared 2-vCPU VM: the same binary moves 1.5-2x between minutes).
The median over pairs is reported, with the median CPU per request.

Every server is started once and warmed (GetTask, Heartbeat, Check: 20,000
each) before anything is measured: the figures are a running server's, not
a fresh process's first requests. h2load -c50 -m20 -t1, the bodies of
rpc_ab.py (Heartbeat on one task: every request beats the same task, so
concurrent beats share group commits).
  HS_BUILD_DIR=build /usr/bin/python3 bench/rpc_pair.py ROUNDS REQUESTS HARNESSD...
e.g. bench/rpc_pair.py 8 50000 /tmp/base/harnessd build/server/harnessd"""
import os, sys, random, statistics, tempfile, shutil
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rpc_bench as rb
rounds, n, bins = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
tmp = tempfile.mkdtemp(prefix="hs-pair-")
echo_bin = rb.build_echo(tmp)
files = rb.ab_bodies(tmp)
procs = []
try:
    port = rb.free_port()
    echo = rb.Proc([echo_bin, "127.0.0.1:%d" % port], port)
    procs.append(echo)
    run_echo = lambda k: rb.h2load(echo.port, rb.CHECK, files["check"], k)
    subjects = []  # (name, proc, fn)
    for i, b in enumerate(bins):
        rb.hstest.HARNESSD = b
        hd = rb.start_harnessd(tmp, "hd%d" % i)
        procs.append(hd)
        tok = rb.prepare(hd, tmp, 10)
        def mk(hd, tok):
            return {"Check": lambda k: rb.h2load(hd.port, rb.CHECK, files["check"], k),
                    "GetTask": lambda k: rb.h2load(hd.port, rb.SVC + "GetTask", files["get"], k, tok),
                    "Heartbeat1": lambda k: rb.h2load(hd.port, rb.SVC + "Heartbeat", files["beat"], k, tok)}
        for name, fn in mk(hd, tok).items():
            fn(20000)  # warm-up
            subjects.append(("[%d] %s" % (i, name), hd, fn))
    run_echo(20000)
    ratios, cpu, echo_cpu = {}, {}, []
    for rnd in range(rounds):
        order = subjects[:]
        random.shuffle(order)
        for name, proc, fn in order:
            e = rb.measure(echo, lambda: run_echo(n))
            s = rb.measure(proc, lambda: fn(n))
            if e is None or s is None:
                print("  no answers:", name, flush=True)
                continue
            echo_cpu.append(e["us"])
            cpu.setdefault(name, []).append(s["us"])
            ratios.setdefault(name, []).append(s["us"] / e["us"])
        print("round", rnd + 1, "load", open("/proc/loadavg").read().split()[:3], flush=True)
finally:
    for p in procs:
        p.stop()
    shutil.rmtree(tmp, ignore_errors=True)
print("%-16s %6.1f us  (%d runs, %.1f-%.1f)" % ("echo Check", statistics.median(echo_cpu), len(echo_cpu), min(echo_cpu), max(echo_cpu)))
for name, _, _ in subjects:
    r = sorted(ratios[name])
    print("%-16s %6.1f us  %.2fx  (pairs %s)" % (name, statistics.median(cpu[name]), statistics.median(r), " ".join("%.2f" % x for x in r)))
