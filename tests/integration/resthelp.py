"""Helpers for the REST tests: a JSON client of harness-gateway's /v1 routes
and a Server-Sent Events reader, both on plain http.client (an independent
HTTP client, nothing of ours)."""
import http.client
import json
import socket
import time

import hstest


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.text = body.decode("utf-8", "replace")

    def header(self, name):
        return next((v for k, v in self.headers if k == name.lower()), None)

    def json(self):
        return json.loads(self.text)


class Rest:
    """Calls on one gateway port as one caller (token None = anonymous)."""

    def __init__(self, port, token=None, source="127.0.0.1"):
        self.port, self.token, self.source = port, token, source

    def request(self, method, path, body=None, headers=None, raw=None, timeout=30):
        h = {}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * hstest.SLOW,
                                          source_address=(self.source, 0))
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return Reply(r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read())
        finally:
            conn.close()

    def ok(self, method, path, body=None, **kw):
        r = self.request(method, path, body, **kw)
        if r.status != 200:
            raise AssertionError("%s %s -> %d %s" % (method, path, r.status, r.text))
        return r.json()

    def get(self, path, **kw):
        return self.ok("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.ok("POST", path, {} if body is None else body, **kw)

    def error(self, method, path, body=None, **kw):
        """(http status, google.rpc.Status dict) of a call that must fail."""
        r = self.request(method, path, body, **kw)
        if r.status == 200:
            raise AssertionError("%s %s succeeded: %s" % (method, path, r.text))
        return r.status, r.json()

    def stream(self, path, last_event_id=None, headers=None):
        h = {"Accept": "text/event-stream"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if last_event_id is not None:
            h["Last-Event-ID"] = str(last_event_id)
        h.update(headers or {})
        return EventStream(self.port, path, h, self.source)


class EventStream:
    """One text/event-stream response, read event by event."""

    def __init__(self, port, path, headers, source):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * hstest.SLOW,
                                               source_address=(source, 0))
        self.conn.request("GET", path, headers=headers)
        self.sock = self.conn.sock  # the response takes it over (Connection: close)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = [(k.lower(), v) for k, v in self.resp.getheaders()]
        self.retry = None
        self.comments = 0

    def header(self, name):
        return next((v for k, v in self.headers if k == name.lower()), None)

    def error(self):
        return json.loads(self.resp.read())

    def next(self, timeout=20.0):
        """The next event as (id or None, event name, data dict), or None when
        the server closed the stream. Comments and retry lines are counted,
        not returned."""
        self.sock.settimeout(timeout * hstest.SLOW)
        ev_id, name, data = None, "message", []
        while True:
            try:
                line = self.resp.fp.readline()
            except (ConnectionError, ValueError):
                return None
            if not line:
                return None
            line = line.decode().rstrip("\r\n")
            if line == "":
                if data:
                    return ev_id, name, json.loads("\n".join(data))
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                ev_id = value
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "retry":
                self.retry = int(value)

    def messages(self, n, timeout=20.0):
        out = []
        while len(out) < n:
            ev = self.next(timeout)
            if ev is None:
                raise AssertionError("stream closed after %d of %d events" % (len(out), n))
            out.append(ev)
        return out

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.resp.close()
        self.conn.close()


def wait_until(pred, timeout=30.0, what="condition"):
    # waits for what must happen: generous whatever was asked (a loaded CI)
    deadline = time.monotonic() + max(timeout, 30) * hstest.SLOW
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)
