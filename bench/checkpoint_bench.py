#!/usr/bin/env python3
"""Checkpoint benchmark: harnessd's CheckpointService (libgit2 in process,
over gRPC) side by side with what the seed does (the git CLI in the
workspace: `git add -A && git commit --allow-empty`, `git status
--porcelain`, `git reset --hard && git clean -fd`), in the same run, on
identical copies of one generated workspace.

Steps (each timed end to end, client side; page cache warm for both):
  first      first checkpoint of the whole workspace
  ten        a checkpoint after changing 10 files
  none       a checkpoint with nothing changed
  verify     is the workspace identical to the latest checkpoint? (dirty: 10 changed files)
  restore    back to the first checkpoint from a dirty workspace
             (10 changed files + 10 untracked ones)
Then, harness only, on a second task with a one-file workspace (--history N):
  N checkpoints one after another; the create time of the first and the last
  tens, GetLatestCheckpoint and the first ListCheckpoints page at N (does a
  task's history make its calls slower?).

Usage: checkpoint_bench.py [--files N[,N...]] [--mb M] [--history N] [--keep]
  --files 20000,100000,200000 runs each size in turn (a fresh harnessd and
  workspace each), --mb is then per 20,000 files (the default keeps ~10 KiB
  per file), and the history run is skipped unless --history is given.
Needs HS_BUILD_DIR (harnessd + pygen stubs) and HS_SOURCE_DIR."""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("HS_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.setdefault("HS_BUILD_DIR", os.path.join(SRC, "build"))
sys.path[:0] = [os.path.join(BUILD, "pygen"), os.path.join(SRC, "tests", "integration")]

import hstest  # noqa: E402  (starts and stops harnessd)
from harness.v1 import auth_pb2, checkpoint_pb2 as pb  # noqa: E402

WORDS = ("int", "return", "static", "void", "struct", "if", "for", "while", "const", "char",
         "self", "def", "import", "class", "None", "true", "false", "=", "{", "}", "(", ")",
         "\n", "\n    ", ";", "->", "+", "0", "1", "name", "value", "count", "buf", "err")


def gen_workspace(root, files, total_mb, seed=1):
    """files text-like files (compressible, each unique) in 2 levels of
    directories, about total_mb MiB in all."""
    rnd = random.Random(seed)
    corpus = " ".join(rnd.choice(WORDS) for _ in range(400000)).encode()
    avg = max(64, total_mb * 1024 * 1024 // files)
    total = 0
    for i in range(files):
        d = os.path.join(root, "pkg%03d" % (i % 200), "mod%02d" % (i // 200 % 25))
        os.makedirs(d, exist_ok=True)
        size = rnd.randint(avg // 2, avg * 3 // 2)
        off = rnd.randrange(0, len(corpus) - size)
        data = b"// file %d\n" % i + corpus[off:off + size]
        with open(os.path.join(d, "f%05d.c" % i), "wb") as f:
            f.write(data)
        total += len(data)
    return total


def touch_ten(root, files, tag):
    for i in range(10):
        j = (i * 7919) % files
        p = os.path.join(root, "pkg%03d" % (j % 200), "mod%02d" % (j // 200 % 25), "f%05d.c" % j)
        with open(p, "ab") as f:
            f.write(b"\n// changed %s\n" % tag.encode())


def dirty(root, files, tag):
    touch_ten(root, files, tag)
    for i in range(10):
        with open(os.path.join(root, "untracked-%s-%d.tmp" % (tag, i)), "w") as f:
            f.write("junk\n")


def timed(fn):
    # harnessd flushes the filesystem (syncfs) before acknowledging: start
    # every timed step with nothing dirty, so no side pays for the other's
    # unflushed writes.
    os.sync()
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000.0, out


def git(ws, *args, check=True):
    r = subprocess.run(["git", "-C", ws] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise RuntimeError("git %s: %s" % (" ".join(args), r.stderr.decode()))
    return r.stdout.decode()


def seed_commit(ws, msg):
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "--allow-empty", "-m", msg)
    return git(ws, "rev-parse", "HEAD").strip()


def history(rpc, ws, n):
    """n creates on task "hist" (each after changing its one file), then the
    reads whose cost could grow with the history. Medians, ms."""
    os.makedirs(ws)
    path = os.path.join(ws, "f")
    times = []
    for i in range(1, n + 1):
        with open(path, "w") as f:
            f.write("version %d\n" % i)
        t, r = timed(rpc("CreateCheckpoint", pb.CreateCheckpointRequest, pb.CreateCheckpointResponse,
                         task_id="hist", step=i))
        assert not r.unchanged, r
        times.append(t)
    latest = rpc("GetLatestCheckpoint", pb.GetLatestCheckpointRequest, pb.Checkpoint, task_id="hist")
    page = rpc("ListCheckpoints", pb.ListCheckpointsRequest, pb.ListCheckpointsResponse,
               task_id="hist", page_size=50)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    k = min(10, n)
    return [("create, checkpoints 1-%d" % k, med(times[:k])),
            ("create, checkpoints %d-%d" % (n - k + 1, n), med(times[-k:])),
            ("GetLatestCheckpoint at %d" % n, med([timed(latest)[0] for _ in range(5)])),
            ("ListCheckpoints first 50 at %d" % n, med([timed(page)[0] for _ in range(5)]))]


def scrape(hd):
    """harnessd's metrics exposition, as lines ([] without an endpoint)."""
    if not hd.metrics_port:
        return []
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % hd.metrics_port, timeout=10) as r:
        return r.read().decode().splitlines()


def run_size(files, mb, history_n, keep):
    tmp = tempfile.mkdtemp(prefix="hs-ckpt-bench-")
    data = os.path.join(tmp, "data")
    ws = os.path.join(data, "workspaces", "bench")
    seed_ws = os.path.join(tmp, "seed-ws")
    os.makedirs(ws)
    print("generating %d files (~%d MiB) in %s ..." % (files, mb, ws), flush=True)
    size = gen_workspace(ws, files, mb)
    shutil.copytree(ws, seed_ws, symlinks=True)
    git(seed_ws, "init", "-q")
    git(seed_ws, "config", "user.email", "harness@agent.ai")
    git(seed_ws, "config", "user.name", "Harness Agent")
    # No detached `git gc --auto` after a commit: it would run during the
    # next steps of both sides (it is not counted on git's side anyway).
    git(seed_ws, "config", "gc.auto", "0")
    # Warm the page cache for both copies alike.
    subprocess.run(["du", "-s", ws, seed_ws], stdout=subprocess.DEVNULL)

    hd = hstest.Harnessd(data_dir=data)
    res = {}
    hist = None
    try:
        login = hstest.stub(hd.channel, "/harness.v1.AuthService/Login", auth_pb2.LoginRequest,
                            auth_pb2.AuthResponse)
        tok = login(auth_pb2.LoginRequest(email="admin@example.com", password="admin-password-1"),
                    timeout=30).access_token
        md = [("authorization", "Bearer " + tok)]

        def rpc(name, req_cls, resp_cls, **kw):
            fn = hstest.stub(hd.channel, "/harness.v1.CheckpointService/" + name, req_cls, resp_cls)
            return lambda: fn(req_cls(**kw), metadata=md, timeout=900)
        create = lambda step: rpc("CreateCheckpoint", pb.CreateCheckpointRequest,
                                  pb.CreateCheckpointResponse, task_id="bench", step=step)()

        res["first"] = (timed(lambda: create(1)), timed(lambda: seed_commit(seed_ws, "c1")))
        c1 = res["first"][0][1].checkpoint.checkpoint_id
        s1 = res["first"][1][1]
        time.sleep(1.1)  # out of the racy-timestamp second for both
        # One unchanged checkpoint first: it refreshes the entries stored
        # smudged by the first (racy), as `git status` does for git's index.
        create(2)
        git(seed_ws, "status", "--porcelain")
        touch_ten(ws, files, "a")
        touch_ten(seed_ws, files, "a")
        res["ten"] = (timed(lambda: create(3)), timed(lambda: seed_commit(seed_ws, "c2")))
        assert res["ten"][0][1].checkpoint.files_changed == 10, res["ten"][0][1]
        time.sleep(1.1)
        create(4)  # past the racy second of the ten changed files
        res["none"] = (timed(lambda: create(5)), timed(lambda: seed_commit(seed_ws, "c3")))
        assert res["none"][0][1].unchanged
        dirty(ws, files, "b")
        dirty(seed_ws, files, "b")
        verify = rpc("VerifyConsistency", pb.VerifyConsistencyRequest, pb.VerifyConsistencyResponse,
                     task_id="bench")
        res["verify"] = (timed(verify), timed(lambda: git(seed_ws, "status", "--porcelain")))
        v = res["verify"][0][1]
        assert (len(v.modified), len(v.added)) == (10, 10), v
        assert len(res["verify"][1][1].splitlines()) == 20
        restore = rpc("RestoreCheckpoint", pb.RestoreCheckpointRequest, pb.RestoreCheckpointResponse,
                      task_id="bench", checkpoint_id=c1)
        res["restore"] = (timed(restore), timed(lambda: (git(seed_ws, "reset", "-q", "--hard", s1),
                                                         git(seed_ws, "clean", "-q", "-fd"))))
        r = res["restore"][0][1]
        assert r.files_removed == 10 and r.files_restored == 10, r
        check = rpc("VerifyConsistency", pb.VerifyConsistencyRequest, pb.VerifyConsistencyResponse,
                    task_id="bench", checkpoint_id=c1)
        assert check().consistent
        assert git(seed_ws, "status", "--porcelain") == ""
        server_lines = [l for l in hd.lines if l.get("module") == "checkpoint"]
        scans = [l for l in scrape(hd) if l.startswith("harness_checkpoint_scans_total")]
        if history_n:
            hist = history(rpc, os.path.join(data, "workspaces", "hist"), history_n)
    finally:
        hd.close()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print("\nworkspace: %d files, %.0f MiB; harness = harnessd over gRPC (libgit2, fsync of what a"
          " create wrote before ack),\nseed = git CLI in a copy of the workspace (no fsync)\n"
          % (files, size / 2**20))
    print("server side (harnessd log, microseconds):")
    for l in server_lines:
        if l.get("msg") in ("created", "restored"):
            print("  %-10s %s" % (l["msg"], " ".join("%s=%s" % (k, v) for k, v in l.items()
                                                    if k.endswith("us") or k in ("hashed", "scan", "reason", "paths"))))
    for l in scans:
        print("  " + l)
    print()
    print("%-9s %12s %12s %8s" % ("step", "harness ms", "seed ms", "seed/harness"))
    for k in ("first", "ten", "none", "verify", "restore"):
        h, s = res[k][0][0], res[k][1][0]
        print("%-9s %12.1f %12.1f %8.1fx" % (k, h, s, s / h if h else float("inf")), flush=True)
    if hist:
        print("\nhistory (harness only, one-file workspace, %d checkpoints, ms, median):" % history_n)
        for k, v in hist:
            print("  %-36s %8.2f" % (k, v))
    return {k: (res[k][0][0], res[k][1][0]) for k in res}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", default=os.environ.get("BENCH_FILES", "20000"),
                    help="files, or several sizes: 20000,100000,200000")
    ap.add_argument("--mb", type=int, default=int(os.environ.get("BENCH_MB", "200")),
                    help="MiB of content (per 20,000 files when several sizes are given)")
    ap.add_argument("--history", type=int, default=None,
                    help="checkpoints in the history run (default 1000 for one size, 0 for several)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = ap.parse_args()
    sizes = [int(x) for x in a.files.split(",")]
    many = len(sizes) > 1
    hist = a.history if a.history is not None else (0 if many else
                                                    int(os.environ.get("BENCH_HISTORY", "1000")))
    table = {}
    for n in sizes:
        mb = a.mb * n // 20000 if many else a.mb
        table[n] = run_size(n, mb, hist if n == sizes[0] else 0, a.keep)
    if many:
        print("\nall sizes (ms, harness / git CLI, ratio):")
        print("%-9s " % "step" + " ".join("%26s" % ("%d files" % n) for n in sizes))
        for k in ("first", "ten", "none", "verify", "restore"):
            cells = []
            for n in sizes:
                h, s = table[n][k]
                cells.append("%26s" % ("%.1f / %.1f (%.1fx)" % (h, s, s / h if h else 0)))
            print("%-9s " % k + " ".join(cells))


if __name__ == "__main__":
    main()
