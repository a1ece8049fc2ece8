#!/usr/bin/env python3
"""Sandbox control-plane benchmark: what harnessd adds around a sandbox's
own work, measured by a gRPC client on loopback.

  bwrap      N x (CreateSandbox, StartSandbox, DestroySandbox) of a bwrap
             sandbox running `sleep infinity` (the default entrypoint).
  emulator   the same with the firecracker driver against
             tests/doubles/fc_emulator.py (launched in place of firecracker:
             python start-up, Unix-socket API, boot sequence, SIGTERM).
  emu-alone  the emulator's own work without harnessd: spawn it, wait for
             its socket, the same API calls the driver makes for a cold
             boot (logger, metrics, boot-source, drives, machine-config,
             InstanceStart), SIGTERM, reap. Subtracting its
             median from the emulator row's median gives the control-plane
             cost (percentiles are reported for both; the difference of
             two p99s is not a p99, so only medians are subtracted).
  alive      K bwrap sandboxes running at once: harnessd VmRSS before and
             with them, and VmHWM at the end.

Usage: sandbox_bench.py [--n 200] [--alive 100]
Needs HS_BUILD_DIR (harnessd + pygen stubs) and HS_SOURCE_DIR."""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("HS_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.setdefault("HS_BUILD_DIR", os.path.join(SRC, "build"))
sys.path[:0] = [os.path.join(BUILD, "pygen"), os.path.join(SRC, "tests", "integration")]

import hstest  # noqa: E402
from harness.v1 import auth_pb2, sandbox_pb2 as S  # noqa: E402

EMULATOR = os.path.join(os.path.abspath(SRC), "tests", "doubles", "fc_emulator.py")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def row(name, xs):
    return "%-22s p50 %7.2f ms   p99 %7.2f ms   mean %7.2f ms" % (
        name, pct(xs, 50), pct(xs, 99), sum(xs) / len(xs))


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Client:
    def __init__(self, hd):
        login = hstest.stub(hd.channel, "/harness.v1.AuthService/Login", auth_pb2.LoginRequest,
                            auth_pb2.AuthResponse)
        tok = login(auth_pb2.LoginRequest(email="admin@example.com", password="admin-password-1"),
                    timeout=10).access_token
        self.md = [("authorization", "Bearer " + tok)]
        self.hd = hd

    def call(self, name, req, resp_cls):
        fn = hstest.stub(self.hd.channel, "/harness.v1.SandboxService/" + name, type(req), resp_cls)
        return fn(req, metadata=self.md, timeout=60)


def cycle(c, sid):
    """(create, start, destroy, total) in ms for one sandbox."""
    t0 = time.perf_counter()
    c.call("CreateSandbox", S.CreateSandboxRequest(sandbox_id=sid), S.Sandbox)
    t1 = time.perf_counter()
    sb = c.call("StartSandbox", S.StartSandboxRequest(sandbox_id=sid), S.Sandbox)
    assert sb.state == S.SANDBOX_STATE_RUNNING, sb
    t2 = time.perf_counter()
    c.call("DestroySandbox", S.DestroySandboxRequest(sandbox_id=sid), S.Sandbox)
    t3 = time.perf_counter()
    return [(t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t3 - t0) * 1e3]


def run_cycles(label, hd, n):
    c = Client(hd)
    for i in range(5):  # warm-up
        cycle(c, "warm-%d" % i)
    res = [cycle(c, "%s-%d" % (label, i)) for i in range(n)]
    print("== %s: %d x create+start+destroy" % (label, n))
    for k, name in enumerate(("  CreateSandbox", "  StartSandbox", "  DestroySandbox", "  total")):
        print(row(name, [r[k] for r in res]))
    return [r[3] for r in res]


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def emulator_alone_once(fc_bin, kernel, rootfs, tmp):
    """ms of the emulator's own cost of one cold boot + stop, without harnessd."""
    sock = os.path.join(tmp, "alone.sock")
    logf, metf = os.path.join(tmp, "alone.log"), os.path.join(tmp, "alone.metrics")
    for p in (logf, metf):
        open(p, "w").close()
    t0 = time.perf_counter()
    p = subprocess.Popen([fc_bin, "--api-sock", sock, "--id", "alone"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        while True:  # like the driver: the socket is ready once connect() works
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(sock)
                break
            except OSError:
                time.sleep(0.001)
            finally:
                probe.close()
        conn = UnixHTTP(sock)
        for method, path, body in (
                ("PUT", "/logger", {"log_path": logf, "level": "Info", "show_level": True,
                                    "show_log_origin": False}),
                ("PUT", "/metrics", {"metrics_path": metf}),
                ("PUT", "/boot-source", {"kernel_image_path": kernel, "boot_args": "console=ttyS0"}),
                ("PUT", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": rootfs,
                                           "is_root_device": True, "is_read_only": False}),
                ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 256, "smt": False,
                                            "track_dirty_pages": True}),
                ("PUT", "/actions", {"action_type": "InstanceStart"})):
            conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status // 100 == 2, (path, r.status)
        conn.close()
        p.send_signal(signal.SIGTERM)
        p.wait()
        if os.path.exists(sock):
            os.unlink(sock)
    finally:  # never leave an emulator behind, even on an error
        if p.poll() is None:
            p.kill()
            p.wait()
    return (time.perf_counter() - t0) * 1e3


def run_emulator(hd, n, fc_bin, kernel, rootfs, tmp):
    """Cycles through harnessd interleaved with the emulator alone, so both
    see the same machine load."""
    c = Client(hd)
    for i in range(5):  # warm-up
        cycle(c, "warm-%d" % i)
        emulator_alone_once(fc_bin, kernel, rootfs, tmp)
    res, alone = [], []
    for i in range(n):
        res.append(cycle(c, "emu-%d" % i))
        alone.append(emulator_alone_once(fc_bin, kernel, rootfs, tmp))
    print("== emulator: %d x create+start+destroy (interleaved with the emulator alone)" % n)
    for k, name in enumerate(("  CreateSandbox", "  StartSandbox", "  DestroySandbox", "  total")):
        print(row(name, [r[k] for r in res]))
    print(row("  emulator alone", alone))
    print("  (emulator alone = spawn, socket, logger/metrics/boot-source/drives/machine-config/"
          "InstanceStart, SIGTERM, reap)")
    diff = [r[3] - a for r, a in zip(res, alone)]
    print(row("  pairwise difference", diff))
    print("== control-plane cost with the emulator: median total - median alone = %.2f ms"
          % (pct([r[3] for r in res], 50) - pct(alone, 50)))


def alive_rss(hd, k):
    c = Client(hd)
    pid = hd.proc.pid
    before = status_kb(pid, "VmRSS")
    t0 = time.perf_counter()
    for i in range(k):
        c.call("CreateSandbox", S.CreateSandboxRequest(sandbox_id="alive-%d" % i), S.Sandbox)
        c.call("StartSandbox", S.StartSandboxRequest(sandbox_id="alive-%d" % i), S.Sandbox)
    t1 = time.perf_counter()
    lst = c.call("ListSandboxes", S.ListSandboxesRequest(page_size=1000,
                                                         state=S.SANDBOX_STATE_RUNNING),
                 S.ListSandboxesResponse)
    running = len(lst.sandboxes)
    time.sleep(1.0)  # a few reaper passes over all of them
    with_them = status_kb(pid, "VmRSS")
    for i in range(k):
        c.call("DestroySandbox", S.DestroySandboxRequest(sandbox_id="alive-%d" % i), S.Sandbox)
    t2 = time.perf_counter()
    print("== %d bwrap sandboxes alive at once (%d RUNNING per ListSandboxes)" % (k, running))
    print("  harnessd VmRSS before %d kB, with them %d kB (+%d kB, %.1f kB each); VmHWM %d kB"
          % (before, with_them, with_them - before, (with_them - before) / float(k),
             status_kb(pid, "VmHWM")))
    print("  create+start of all %.2f s, destroy of all %.2f s" % (t1 - t0, t2 - t1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--alive", type=int, default=100)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hs-sb-bench-")
    fc_bin = os.path.join(tmp, "firecracker")
    with open(fc_bin, "w") as f:
        f.write("#!/bin/sh\nexec /usr/bin/python3 %s \"$@\"\n" % EMULATOR)
    os.chmod(fc_bin, 0o755)
    kernel, rootfs = os.path.join(tmp, "vmlinux"), os.path.join(tmp, "rootfs.ext4")
    for p in (kernel, rootfs):
        with open(p, "w") as f:
            f.write("dummy\n")
    common = ["--sandboxes-per-user", str(max(1000, args.alive + 10))]
    hd = None
    try:
        hd = hstest.Harnessd(data_dir=os.path.join(tmp, "bwrap"),
                             args=common + ["--sandbox-driver", "bwrap"])
        run_cycles("bwrap", hd, args.n)
        alive_rss(hd, args.alive)
        hd.close()
        hd = hstest.Harnessd(data_dir=os.path.join(tmp, "fc"), args=common + [
            "--sandbox-driver", "firecracker", "--firecracker-bin", fc_bin,
            "--firecracker-skip-kvm-check", "1", "--kernel-image", kernel, "--rootfs-image", rootfs])
        run_emulator(hd, args.n, fc_bin, kernel, rootfs, tmp)
        hd.close()
        hd = None
    finally:
        if hd is not None:  # on an error: sandboxes outlive harnessd, destroy them first
            try:
                c = Client(hd)
                lst = c.call("ListSandboxes", S.ListSandboxesRequest(page_size=1000),
                             S.ListSandboxesResponse)
                for sb in lst.sandboxes:
                    c.call("DestroySandbox", S.DestroySandboxRequest(sandbox_id=sb.sandbox_id),
                           S.Sandbox)
            finally:
                hd.close(expect_exit=None)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
