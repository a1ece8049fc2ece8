"""gRPC stubs built from the generated descriptors (harness_sdk._gen): one
callable per method, request/response classes from the descriptor, so the
stubs cannot drift from the .proto files."""
import functools
import threading
import time

import grpc

from google.protobuf import json_format, struct_pb2, symbol_database

from ._gen.harness.v1 import auth_pb2, checkpoint_pb2, health_pb2, sandbox_pb2

_MODULES = {"AuthService": auth_pb2, "SandboxService": sandbox_pb2, "CheckpointService": checkpoint_pb2,
            "HealthService": health_pb2}


class Method:
    def __init__(self, service, name):
        desc = _MODULES[service].DESCRIPTOR.services_by_name[service].methods_by_name[name]
        db = symbol_database.Default()
        self.path = "/harness.v1.%s/%s" % (service, name)
        self.request_class = db.GetSymbol(desc.input_type.full_name)
        self.response_class = db.GetSymbol(desc.output_type.full_name)
        self.server_streaming = desc.server_streaming
        self.client_streaming = desc.client_streaming

    def callable(self, channel):
        kind = "unary_unary"
        if self.server_streaming:
            kind = "stream_stream" if self.client_streaming else "unary_stream"
        return getattr(channel, kind)(self.path, request_serializer=self.request_class.SerializeToString,
                                      response_deserializer=self.response_class.FromString)


@functools.lru_cache(maxsize=None)
def method(service, name):
    return Method(service, name)


def fill(msg, fields):
    """Sets msg's fields from a dict: messages from dicts (Struct from any
    JSON-like dict), enums by name or number."""
    for k, v in fields.items():
        f = msg.DESCRIPTOR.fields_by_name[k]
        if f.message_type is not None and f.message_type.full_name == "google.protobuf.Struct":
            if v is not None:
                getattr(msg, k).update(v)
        elif f.message_type is not None and isinstance(v, dict) and not f.message_type.GetOptions().map_entry:
            json_format.ParseDict(v, getattr(msg, k))
        elif f.message_type is not None and f.message_type.GetOptions().map_entry:
            getattr(msg, k).update(v)
        elif f.message_type is not None:
            getattr(msg, k).CopyFrom(v)
        elif f.label == f.LABEL_REPEATED:
            getattr(msg, k).extend(v)
        else:
            setattr(msg, k, v)


class FollowingStream:
    """A server stream that, when it ends before its first message with an
    UNAVAILABLE naming harness-node-address, is opened once more at that
    address (client.Client._follow); otherwise the grpc call itself
    (iterate it, cancel() it, its other methods)."""

    def __init__(self, client, m, req, timeout, md):
        self._client, self._m, self._req, self._md = client, m, req, md
        self._deadline = time.monotonic() + timeout if timeout is not None else None
        self._lock = threading.Lock()
        self._call = m.callable(client.channel)(req, timeout=timeout, metadata=md)
        self._got = self._followed = self._cancelled = False

    def __iter__(self):
        return self

    def __next__(self):
        try:
            msg = next(self._call)
        except grpc.RpcError as e:
            if self._got or self._followed:
                raise
            peer = self._client._follow(e)
            if peer is None:
                raise
            left = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
            with self._lock:
                self._followed = True
                self._call = self._m.callable(peer)(self._req, timeout=left, metadata=self._md)
                if self._cancelled:
                    self._call.cancel()
            return self.__next__()
        self._got = True
        return msg

    def cancel(self):
        with self._lock:
            self._cancelled = True
            return self._call.cancel()

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._call, name)


def struct_to_dict(s):
    return json_format.MessageToDict(s) if s is not None else {}


class Service:
    """client.tasks.GetTask(task_id="t1"), client.tasks.GetTask(req, timeout=2),
    client.tasks.WatchTasks(send_initial=True) (an iterator; cancel() it)."""

    def __init__(self, client, service):
        self._client = client
        self._service = service

    def __getattr__(self, name):
        m = method(self._service, name)
        if m.server_streaming:
            def stream(request=None, *, timeout=None, **fields):
                req = request if request is not None else m.request_class()
                fill(req, fields)
                md = []
                tok, _ = self._client._token()
                if tok:
                    md.append(("authorization", "Bearer " + tok))
                if m.client_streaming:
                    return m.callable(self._client.channel)(req, timeout=timeout, metadata=md)
                return FollowingStream(self._client, m, req, timeout, md)
            return stream

        def call(request=None, *, timeout=None, retry=True, **fields):
            return self._client.call(self._service, name, request, timeout=timeout, retry=retry, **fields)
        return call


_ = struct_pb2  # Struct is registered by the generated modules' imports
