"""Instructions per request (issue 15), a figure the machine's load does not
move: each server runs under callgrind (valgrind) with collection off; after a
warm-up the script switches collection on, drives N requests with h2load
(-c50 -m20, the bodies of rpc_ab.py), switches it off and divides the
instructions executed in user space (the server's code, libgrpc, libc...; the
kernel is not counted) by the requests answered. Subjects: the bare C-core
echo (bench/c_echo.c), then for each harnessd given, health Check, Check with
the Bearer JWT GetTask carries (ignored by Check: what gRPC's decoding of the
`authorization` header costs by itself; h2load sends it Huffman-coded and
never indexed), GetTask (Bearer JWT) and Heartbeat on one task (the body of
rpc_ab.py; its fdatasync and the rest of the kernel are not counted). The hardware counters (`perf stat -e instructions`) are not
available in this VM, hence callgrind. Also writes each profile
(callgrind.out.<subject>) to OUTDIR for callgrind_annotate.
  HS_BUILD_DIR=build /usr/bin/python3 bench/rpc_perf.py REQUESTS OUTDIR HARNESSD...
e.g. bench/rpc_perf.py 20000 /tmp/prof /tmp/base/harnessd build/server/harnessd"""
import os, sys, tempfile, subprocess, shutil, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rpc_bench as rb
n, outdir, bins = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
os.makedirs(outdir, exist_ok=True)
tmp = tempfile.mkdtemp(prefix="hs-perf-")
echo_bin = rb.build_echo(tmp, debug=True)
files = rb.ab_bodies(tmp)
def vg(name):
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--fair-sched=yes",
            "--callgrind-out-file=" + os.path.join(outdir, "callgrind.out." + name)]
def ctl(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
def instr(proc, name, fn):
    fn(n // 10)  # warm up: arenas, free lists, HPACK tables
    before = set(os.listdir(outdir))
    ctl(proc.p.pid, "-z")
    ctl(proc.p.pid, "-i", "on")
    ok = fn(n)
    ctl(proc.p.pid, "-i", "off")
    ctl(proc.p.pid, "-d")
    ir = 0
    for f in set(os.listdir(outdir)) - before:
        for line in open(os.path.join(outdir, f)):
            if line.startswith("summary:") or line.startswith("totals:"):
                ir = max(ir, int(line.split()[1]))
        os.rename(os.path.join(outdir, f), os.path.join(outdir, "callgrind." + name))
    print("%-16s %8.0f instructions/request  (%d requests)" % (name, ir / ok if ok else 0, ok), flush=True)
try:
    port = rb.free_port()
    e = rb.Proc(vg("echo") + [echo_bin, "127.0.0.1:%d" % port], port)
    instr(e, "echo-Check", lambda k: rb.h2load(e.port, rb.CHECK, files["check"], k))
    e.stop()
    for i, b in enumerate(bins):
        port = rb.free_port()
        env = dict(os.environ, HARNESS_ADMIN_EMAIL="admin@example.com",
                   HARNESS_ADMIN_PASSWORD="admin-password-1", HARNESS_METRICS_LISTEN="127.0.0.1:0")
        hd = rb.Proc(vg("hd%d" % i) + [b, "--listen", "127.0.0.1:%d" % port, "--data-dir",
                     os.path.join(tmp, "hd%d" % i), "--log-level", "warn"], port, env)
        tok = rb.prepare(hd, tmp, 10)
        instr(hd, "hd%d-Check" % i, lambda k: rb.h2load(hd.port, rb.CHECK, files["check"], k))
        instr(hd, "hd%d-CheckJWT" % i, lambda k: rb.h2load(hd.port, rb.CHECK, files["check"], k, tok))
        instr(hd, "hd%d-GetTask" % i, lambda k: rb.h2load(hd.port, rb.SVC + "GetTask", files["get"], k, tok))
        instr(hd, "hd%d-Heartbeat1" % i, lambda k: rb.h2load(hd.port, rb.SVC + "Heartbeat", files["beat"], k, tok))
        hd.stop()
finally:
    shutil.rmtree(tmp, ignore_errors=True)
