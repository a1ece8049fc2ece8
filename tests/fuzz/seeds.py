#!/usr/bin/python3
"""Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/:
for every request (and response) type a message with every field set, an
empty one, and deep Structs, in the input format of each target. Run with
the build's python stubs:
    PYTHONPATH=build/pygen tests/fuzz/seeds.py
The seeds are committed; libFuzzer grows its own corpus from them."""
import hashlib
import json
import os
import sys

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from harness.v1 import auth_pb2, checkpoint_pb2, health_pb2, sandbox_pb2
from hsstd import health_pb2 as std_health, reflection_v1_pb2, reflection_v1alpha_pb2
from google.protobuf import symbol_database

HERE = os.path.dirname(os.path.abspath(__file__))
# Same order as fuzz_types.h.
SERVICES = [
    (auth_pb2, "AuthService"), (sandbox_pb2, "SandboxService"),
    (checkpoint_pb2, "CheckpointService"), (health_pb2, "HealthService"),
    (std_health, "Health"), (reflection_v1_pb2, "ServerReflection"),
    (reflection_v1alpha_pb2, "ServerReflection"),
]
SAMPLE_STRUCT = {"issue": 42, "ok": True, "tags": ["a", "b", None, 1.5], "nested": {"k": "v"}}


def fill(msg, depth=0):
    """Sets every field of msg to a plausible value."""
    if msg.DESCRIPTOR.full_name == "google.protobuf.Struct":
        msg.update(SAMPLE_STRUCT)
        return msg
    if msg.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        msg.seconds, msg.nanos = 1700000000, 500000000
        return msg
    for f in msg.DESCRIPTOR.fields:
        rep = f.label == f.LABEL_REPEATED
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            m = getattr(msg, f.name)
            key = "team" if f.message_type.fields_by_name["key"].type == f.TYPE_STRING else 1
            vf = f.message_type.fields_by_name["value"]
            if vf.message_type is None:
                m[key] = "blue" if vf.type == vf.TYPE_STRING else 1
            continue
        if f.message_type is not None:
            if depth > 3 or f.containing_oneof is not None and depth > 0:
                continue
            if rep:
                fill(getattr(msg, f.name).add(), depth + 1)
            else:
                fill(getattr(msg, f.name), depth + 1)
            continue
        v = {f.TYPE_STRING: "task-1", f.TYPE_BYTES: b"\x00\x01bytes", f.TYPE_BOOL: True,
             f.TYPE_DOUBLE: 0.5, f.TYPE_FLOAT: 0.25, f.TYPE_ENUM: 1}.get(f.type, 7)
        if f.type == f.TYPE_ENUM:
            v = f.enum_type.values[-1].number
        if rep:
            getattr(msg, f.name).extend([v, v])
        else:
            setattr(msg, f.name, v)
    return msg


def types(requests_only):
    db = symbol_database.Default()
    out = []
    for pb2, svc in SERVICES:
        for m in pb2.DESCRIPTOR.services_by_name[svc].methods:
            out.append(db.GetSymbol(m.input_type.full_name))
            if not requests_only:
                out.append(db.GetSymbol(m.output_type.full_name))
    return out


def field(num, payload):
    def varint(n):
        b = bytearray()
        while True:
            c, n = n & 0x7F, n >> 7
            b.append(c | (0x80 if n else 0))
            if not n:
                return bytes(b)
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def deep_struct(levels):
    s = b""
    for _ in range(levels):
        s = field(1, field(1, b"a") + field(2, field(5, s)))
    return s


def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def main():
    reqs = types(True)
    for i, cls in enumerate(reqs):
        write("rpc_decode", bytes([i]) + b"")
        write("rpc_decode", bytes([i]) + fill(cls()).SerializeToString())
    create = next(i for i, c in enumerate(reqs) if c.DESCRIPTOR.name == "CreateCheckpointRequest")
    for levels in (33, 34, 200):  # at the bound, one past, far past
        write("rpc_decode", bytes([create]) + field(1, b"t") + field(4, deep_struct(levels)))
    both = types(False)
    for i, cls in enumerate(both):
        for flags in (0, 1):
            text = json_format.MessageToJson(fill(cls()), indent=None)
            write("pbjson", bytes([(i << 1 | flags) & 0xFF]) + text.encode())
    write("pbjson", b"\x00" + b'"2024-05-01T10:00:00.5+02:00"')
    write("pbjson", b"\x00" + b"aGVsbG8gd29ybGQ=")
    for text in (json.dumps(SAMPLE_STRUCT), "{}", '{"a":{"b":{"c":[[[1e308,-0.0,"\\u00e9"]]]}}}',
                 json.dumps({"x" * 100: list(range(50))})):
        write("struct_json", b"\x00" + text.encode())
    s = struct_pb2.Struct()
    s.update(SAMPLE_STRUCT)
    write("struct_json", b"\x01" + s.SerializeToString())
    write("struct_json", b"\x01" + deep_struct(40))
    for fields in (
        [b'{"email":"Jane.Doe+news@GoogleMail.com","password":"hunter22"}'],
        [b"a@b.co", b"pw", b"refreshToken=abc.def-ghi; theme=dark", b"/api/v1/auth"],
        [b"x@example.org", b"refreshToken", b'refreshToken="a%2Fb"', b"/", b"https://app.example.com,http://localhost:3000",
         b"203.0.113.7, 10.0.0.1"],
        [b"https://app.example.com", b"cross-site", b"application/json; charset=utf-8", b"XMLHttpRequest",
         b"https://app.example.com", b"1"],
        [b"user@xn--bcher-kva.example", b"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", b"text/plain", b"",
         b"http://a.b:8080", b"::1, 2001:db8::1"],
    ):
        write("gateway", b"\x00".join(fields))
    return 0


if __name__ == "__main__":
    sys.exit(main())
