#!/usr/bin/python3
"""Firecracker API emulator: a test double for the firecracker binary.

Launched in place of firecracker with the same flags (`--api-sock PATH`,
`--id ID`; other flags are accepted and logged), it serves the REST API of
shared/specs/firecracker-api.yaml over HTTP/1.1 on a Unix socket and enforces
the spec's bodies and state rules:

* bodies: required fields, types, enums, unknown fields refused (400 with
  {"fault_message": ...}, like Firecracker's serde deny_unknown_fields);
* boot-source, drives, machine-config, network-interfaces: pre-boot only;
  kernel and drive files must exist (Firecracker opens them on PUT);
* InstanceStart once, needing a boot source and a root drive;
* PATCH /vm (Paused/Resumed) only after boot; snapshot/create only when
  Paused (writes the state and memory files it is asked for; Diff needs
  track_dirty_pages); snapshot/load only on a fresh process (nothing but
  logger/metrics configured) and a failed load ends the process;
* GET / -> InstanceInfo {id, state, vmm_version, app_name}.
Successful PUT/PATCH answer 204 (as real Firecracker does), GETs 200.

Fault injection, read from the environment at start:
  FC_EMU_FAIL="PUT /machine-config,PATCH /vm"  answer 400 with a fault_message
  FC_EMU_DIE_ON="PUT /actions"                   exit abruptly on that request
  FC_EMU_NO_SOCKET=1                             never create the socket
  FC_EMU_DELAY_MS=N                              delay every response
  FC_EMU_DELAY_ON="PATCH /vm"                    ... only these requests (default: all)
  FC_EMU_LOG=/path                               append one JSON line per request
"""
import json
import os
import signal
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler

VERSION = "1.17.0-dev"
S, B, I, O, A = str, bool, int, dict, list

# name -> (required fields, {field: type or enum list})
SCHEMAS = {
    "Logger": ((), {"level": ["Error", "Warning", "Info", "Debug", "Trace", "Off"],
                    "log_path": S, "show_level": B, "show_log_origin": B, "module": S}),
    "Metrics": (("metrics_path",), {"metrics_path": S, "emit_id": B, "properties": O}),
    "BootSource": (("kernel_image_path",), {"kernel_image_path": S, "boot_args": S,
                                            "initrd_path": S}),
    "Drive": (("drive_id", "is_root_device"), {
        "drive_id": S, "partuuid": S, "is_root_device": B,
        "cache_type": ["Unsafe", "Writeback"], "is_read_only": B, "path_on_host": S,
        "rate_limiter": O, "io_engine": ["Sync", "Async"], "socket": S}),
    "MachineConfiguration": (("mem_size_mib", "vcpu_count"), {
        "cpu_template": S, "smt": B, "mem_size_mib": I, "track_dirty_pages": B,
        "vcpu_count": I, "huge_pages": ["None", "Transparent", "2M"]}),
    "NetworkInterface": (("host_dev_name", "iface_id"), {
        "guest_mac": S, "host_dev_name": S, "iface_id": S, "mtu": I,
        "rx_rate_limiter": O, "tx_rate_limiter": O}),
    "InstanceActionInfo": (("action_type",), {
        "action_type": ["FlushMetrics", "InstanceStart", "SendCtrlAltDel"]}),
    "Vm": (("state",), {"state": ["Paused", "Resumed"]}),
    "SnapshotCreateParams": (("mem_file_path", "snapshot_path"), {
        "mem_file_path": S, "snapshot_path": S, "snapshot_type": ["Full", "Diff"]}),
    "SnapshotLoadParams": (("snapshot_path",), {
        "enable_diff_snapshots": B, "track_dirty_pages": B, "mem_file_path": S,
        "mem_backend": O, "snapshot_path": S, "resume_vm": B, "network_overrides": A,
        "vsock_override": O, "clock_realtime": B,
        "huge_pages": ["Snapshot", "None", "Transparent", "2M"]}),
    "MemoryBackend": (("backend_type", "backend_path"), {
        "backend_type": ["File", "Uffd"], "backend_path": S}),
    "NetworkOverride": (("iface_id", "host_dev_name"), {"iface_id": S, "host_dev_name": S}),
}

SNAPSHOT_MAGIC = "fc-emulator-snapshot-v1"


class Fault(Exception):
    def __init__(self, msg, status=400):
        super().__init__(msg)
        self.msg = msg
        self.status = status


def check(name, body):
    if not isinstance(body, dict):
        raise Fault("An error occurred when deserializing the json body of a request: "
                    "expected struct %s" % name)
    required, fields = SCHEMAS[name]
    for k in body:
        if k not in fields:
            raise Fault("An error occurred when deserializing the json body of a request: "
                        "unknown field `%s`" % k)
    for k in required:
        if k not in body:
            raise Fault("An error occurred when deserializing the json body of a request: "
                        "missing field `%s`" % k)
    for k, v in body.items():
        t = fields[k]
        if isinstance(t, list):
            if not isinstance(v, str) or v not in t:
                raise Fault("An error occurred when deserializing the json body of a "
                            "request: unknown variant `%s` for `%s`" % (v, k))
        elif t is I:
            if isinstance(v, bool) or not isinstance(v, int):
                raise Fault("An error occurred when deserializing the json body of a "
                            "request: invalid type for `%s`, expected integer" % k)
        elif t is B:
            if not isinstance(v, bool):
                raise Fault("An error occurred when deserializing the json body of a "
                            "request: invalid type for `%s`, expected a boolean" % k)
        elif not isinstance(v, t):
            raise Fault("An error occurred when deserializing the json body of a request: "
                        "invalid type for `%s`" % k)
    return body


class VM:
    def __init__(self, vm_id):
        self.id = vm_id
        self.state = "Not started"
        self.logger = None
        self.metrics = None
        self.boot_source = None
        self.drives = {}
        self.machine = {"vcpu_count": 1, "mem_size_mib": 128, "smt": False,
                        "track_dirty_pages": False}
        self.ifaces = {}
        self.configured = False   # any boot-specific resource set
        self.loaded = False       # restored from a snapshot

    # ---- rules ---------------------------------------------------------------
    def pre_boot(self, what):
        if self.state != "Not started" or self.loaded:
            raise Fault("The requested operation is not supported after starting the "
                        "microVM: %s" % what)
        self.configured = True

    def post_boot(self, what):
        if self.state == "Not started":
            raise Fault("The requested operation is not supported before starting the "
                        "microVM: %s" % what)

    # ---- handlers ------------------------------------------------------------
    def info(self):
        return {"id": self.id, "state": self.state, "vmm_version": VERSION,
                "app_name": "Firecracker"}

    def put_logger(self, body):
        check("Logger", body)
        if self.state != "Not started":
            raise Fault("The requested operation is not supported after starting the "
                        "microVM: logger")
        path = body.get("log_path")
        if path is not None and not os.path.exists(path):
            raise Fault("Failed to open logger path %s: No such file or directory" % path)
        self.logger = body

    def put_metrics(self, body):
        check("Metrics", body)
        if self.metrics is not None:
            raise Fault("Reinitialization of metrics not allowed.")
        if not os.path.exists(body["metrics_path"]):
            raise Fault("Failed to open metrics path %s: No such file or directory"
                        % body["metrics_path"])
        self.metrics = body

    def put_boot_source(self, body):
        check("BootSource", body)
        self.pre_boot("boot-source")
        if not os.path.isfile(body["kernel_image_path"]):
            raise Fault("The kernel file cannot be opened: No such file or directory "
                        "(os error 2)")
        self.boot_source = body

    def put_drive(self, drive_id, body):
        check("Drive", body)
        self.pre_boot("drives")
        if body["drive_id"] != drive_id:
            raise Fault("The id from the path does not match the id from the body!")
        if "socket" not in body and "path_on_host" not in body:
            raise Fault("Unable to create the block device: missing path_on_host")
        if "path_on_host" in body and not os.path.isfile(body["path_on_host"]):
            raise Fault("Unable to create the block device: No such file or directory "
                        "(os error 2)")
        if body["is_root_device"]:
            for other, d in self.drives.items():
                if other != drive_id and d["is_root_device"]:
                    raise Fault("A root block device already exists!")
        self.drives[drive_id] = body

    def put_machine(self, body, partial=False):
        if partial:
            merged = dict(self.machine)
            merged.update(body)
            body = merged
        check("MachineConfiguration", body)
        self.pre_boot("machine-config")
        v, m = body["vcpu_count"], body["mem_size_mib"]
        if v < 1 or v > 32:
            raise Fault("The vCPU number is invalid! The vCPU number can only be 1 or an "
                        "even number when SMT is enabled.")
        if body.get("smt") and v > 1 and v % 2:
            raise Fault("The vCPU number is invalid! The vCPU number can only be 1 or an "
                        "even number when SMT is enabled.")
        if m < 1:
            raise Fault("The memory size (MiB) is invalid.")
        self.machine = {"vcpu_count": v, "mem_size_mib": m, "smt": body.get("smt", False),
                        "track_dirty_pages": body.get("track_dirty_pages", False)}

    def put_iface(self, iface_id, body):
        check("NetworkInterface", body)
        self.pre_boot("network-interfaces")
        if body["iface_id"] != iface_id:
            raise Fault("The id from the path does not match the id from the body!")
        mac = body.get("guest_mac")
        if mac is not None:
            parts = mac.split(":")
            if len(parts) != 6 or not all(len(p) == 2 and
                                          all(c in "0123456789abcdefABCDEF" for c in p)
                                          for p in parts):
                raise Fault("Invalid MAC address: %s" % mac)
        self.ifaces[iface_id] = body

    def put_actions(self, body):
        check("InstanceActionInfo", body)
        a = body["action_type"]
        if a == "InstanceStart":
            if self.state != "Not started" or self.loaded:
                raise Fault("The requested operation is not supported after starting the "
                            "microVM.")
            if self.boot_source is None:
                raise Fault("Cannot start microvm without kernel configuration.")
            if not any(d["is_root_device"] for d in self.drives.values()):
                raise Fault("Cannot start microvm without a root block device.")
            self.state = "Running"
        elif a == "SendCtrlAltDel":
            self.post_boot("SendCtrlAltDel")
        elif a == "FlushMetrics":
            if self.metrics is None:
                raise Fault("The metrics system is not initialized.")

    def patch_vm(self, body):
        check("Vm", body)
        self.post_boot("vm state")
        self.state = "Paused" if body["state"] == "Paused" else "Running"

    def snapshot_create(self, body):
        check("SnapshotCreateParams", body)
        self.post_boot("snapshot/create")
        if self.state != "Paused":
            raise Fault("Cannot create a snapshot: the microVM is not paused.")
        kind = body.get("snapshot_type", "Full")
        if kind == "Diff" and not self.machine.get("track_dirty_pages"):
            raise Fault("Diff snapshots are not allowed on uVMs with dirty page tracking "
                        "disabled.")
        for p in (body["snapshot_path"], body["mem_file_path"]):
            if not os.path.isdir(os.path.dirname(p) or "."):
                raise Fault("Cannot create snapshot file %s: No such file or directory" % p)
        state = {"magic": SNAPSHOT_MAGIC, "id": self.id, "type": kind,
                 "machine": self.machine, "boot_source": self.boot_source,
                 "drives": self.drives, "ifaces": self.ifaces}
        with open(body["snapshot_path"], "w") as f:
            json.dump(state, f)
        size = self.machine["mem_size_mib"] << 20
        with open(body["mem_file_path"], "wb") as f:
            # A sparse file the size of guest memory with a little data:
            # a Full snapshot at offset 0, a Diff at its second page.
            f.truncate(size)
            f.seek(0 if kind == "Full" else 4096)
            f.write(("%s %s\n" % (kind, time.time())).encode().ljust(4096, b"\0"))

    def snapshot_load(self, body):
        check("SnapshotLoadParams", body)
        if self.configured or self.state != "Not started" or self.loaded:
            raise Fault("Loading a microVM snapshot not allowed after configuring "
                        "boot-specific resources.")
        if ("mem_backend" in body) == ("mem_file_path" in body):
            raise Fault("Either mem_backend or mem_file_path must be present, not both.")
        if "mem_backend" in body:
            mb = check("MemoryBackend", body["mem_backend"])
            mem = mb["backend_path"]
        else:
            mem = body["mem_file_path"]
        try:
            with open(body["snapshot_path"]) as f:
                state = json.load(f)
            if state.get("magic") != SNAPSHOT_MAGIC:
                raise ValueError("bad magic")
        except (OSError, ValueError) as e:
            raise Fault("Load snapshot error: Cannot open snapshot file: %s" % e)
        if not os.path.isfile(mem):
            raise Fault("Load snapshot error: Cannot open the memory file: No such file "
                        "or directory (os error 2)")
        if os.path.getsize(mem) != state["machine"]["mem_size_mib"] << 20:
            raise Fault("Load snapshot error: memory file size does not match the snapshot")
        ifaces = dict(state.get("ifaces") or {})
        for o in body.get("network_overrides", []):
            check("NetworkOverride", o)
            if o["iface_id"] not in ifaces:
                raise Fault("Load snapshot error: network override for unknown interface "
                            "%s" % o["iface_id"])
            ifaces[o["iface_id"]] = dict(ifaces[o["iface_id"]],
                                         host_dev_name=o["host_dev_name"])
        self.machine = dict(state["machine"])
        if body.get("track_dirty_pages") or body.get("enable_diff_snapshots"):
            self.machine["track_dirty_pages"] = True
        self.drives = state.get("drives") or {}
        self.ifaces = ifaces
        self.loaded = True
        self.state = "Running" if body.get("resume_vm") else "Paused"

    def full_config(self):
        return {"boot-source": self.boot_source, "drives": list(self.drives.values()),
                "machine-config": self.machine, "logger": self.logger,
                "metrics": self.metrics, "network-interfaces": list(self.ifaces.values())}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Firecracker API"

    def log_message(self, fmt, *args):  # the client address of a Unix socket is ""
        pass

    def reply(self, status, obj=None):
        data = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def handle_any(self):
        srv = self.server
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        path = self.path.split("?", 1)[0]
        key = "%s %s" % (self.command, path)
        body = None
        entry = {"method": self.command, "path": path}
        status, obj, fatal = 204, None, False
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise Fault("An error occurred when deserializing the json body of a "
                                "request: not JSON")
            entry["body"] = body
            if key in srv.die_on:
                srv.log(dict(entry, status=None, died=True))
                os._exit(3)
            if srv.delay and (not srv.delay_on or key in srv.delay_on):
                time.sleep(srv.delay)
            if key in srv.fail:
                raise Fault("injected failure: %s" % key)
            status, obj = self.route(srv.vm, path, body)
        except Fault as f:
            status, obj = f.status, {"fault_message": f.msg}
            fatal = key == "PUT /snapshot/load"
        entry["status"] = status
        srv.log(entry)
        self.reply(status, obj)
        if fatal:  # Firecracker ends when a snapshot load fails
            self.wfile.flush()
            srv.cleanup()
            os._exit(1)

    def route(self, vm, path, body):
        m = self.command
        need_body = m in ("PUT", "PATCH")
        if need_body and body is None:
            raise Fault("Empty request body.")
        if m == "GET":
            if path == "/":
                return 200, vm.info()
            if path == "/version":
                return 200, {"firecracker_version": VERSION}
            if path == "/machine-config":
                return 200, vm.machine
            if path == "/vm/config":
                return 200, vm.full_config()
        elif m == "PUT":
            if path == "/logger":
                return 204, vm.put_logger(body)
            if path == "/metrics":
                return 204, vm.put_metrics(body)
            if path == "/boot-source":
                return 204, vm.put_boot_source(body)
            if path.startswith("/drives/") and len(path) > 8:
                return 204, vm.put_drive(path[8:], body)
            if path == "/machine-config":
                return 204, vm.put_machine(body)
            if path.startswith("/network-interfaces/") and len(path) > 20:
                return 204, vm.put_iface(path[20:], body)
            if path == "/actions":
                return 204, vm.put_actions(body)
            if path == "/snapshot/create":
                return 204, vm.snapshot_create(body)
            if path == "/snapshot/load":
                return 204, vm.snapshot_load(body)
        elif m == "PATCH":
            if path == "/vm":
                return 204, vm.patch_vm(body)
            if path == "/machine-config":
                return 204, vm.put_machine(body, partial=True)
        raise Fault("Invalid request method and/or path: %s %s" % (m, path), 400)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = handle_any


class Server(socketserver.UnixStreamServer):
    def __init__(self, sock, vm, env):
        self.vm = vm
        self.sock_path = sock
        self.fail = {s.strip() for s in env.get("FC_EMU_FAIL", "").split(",") if s.strip()}
        self.die_on = {s.strip() for s in env.get("FC_EMU_DIE_ON", "").split(",") if s.strip()}
        self.delay = int(env.get("FC_EMU_DELAY_MS", "0") or 0) / 1000.0
        self.delay_on = {s.strip() for s in env.get("FC_EMU_DELAY_ON", "").split(",") if s.strip()}
        self.log_path = env.get("FC_EMU_LOG")
        super().__init__(sock, Handler)

    def log(self, entry):
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def cleanup(self):
        try:
            os.unlink(self.sock_path)
        except OSError:
            pass


def parse_args(argv):
    opts, known = {}, {"--api-sock", "--id", "--config-file", "--log-path", "--level",
                       "--seccomp-filter", "--metadata", "--boot-timer", "--no-api",
                       "--no-seccomp", "--show-level", "--show-log-origin",
                       "--http-api-max-payload-size", "--mmds-size-limit", "--module",
                       "--metrics-path", "--start-time-us", "--start-time-cpu-us",
                       "--parent-cpu-time-us"}
    flags_without_value = {"--no-api", "--no-seccomp", "--boot-timer", "--show-level",
                           "--show-log-origin"}
    i, unknown = 0, []
    while i < len(argv):
        a = argv[i]
        if a in flags_without_value:
            opts[a] = True
            i += 1
        elif a in known and i + 1 < len(argv):
            opts[a] = argv[i + 1]
            i += 2
        else:
            unknown.append(a)
            i += 1
    return opts, unknown


def main():
    env = os.environ
    opts, unknown = parse_args(sys.argv[1:])
    log_path = env.get("FC_EMU_LOG")
    if log_path:
        with open(log_path, "a") as f:
            f.write(json.dumps({"event": "start", "argv": sys.argv[1:], "pid": os.getpid(),
                                "unknown": unknown}) + "\n")
    if unknown:
        print("fc_emulator: ignoring unknown arguments %s" % unknown, file=sys.stderr)
    sock = opts.get("--api-sock", "/run/firecracker.socket")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    if env.get("FC_EMU_NO_SOCKET") == "1":
        while True:
            time.sleep(3600)
    if os.path.exists(sock):
        print("fc_emulator: Failed to open the API socket at %s: Address in use" % sock,
              file=sys.stderr)
        return 1
    server = Server(sock, VM(opts.get("--id", "anonymous-instance")), env)
    print("fc_emulator: API server listening on %s" % sock, file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
