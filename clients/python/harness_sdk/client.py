"""Client: one channel to harnessd with credentials, deadlines and retries.

Every call has a deadline (timeout, default 15 s). UNAVAILABLE is retried
with exponential backoff and full jitter (retries times); every other
status raises HarnessError at once. Credentials, in order of preference:

* api_key (or token): sent as "authorization: Bearer ..." as is;
* email + password: Login, then Refresh before the access token expires
  (and once more on an UNAUTHENTICATED answer); when the refresh token is
  refused too, Login again;
* refresh_token alone: Refresh.

TLS: tls=True uses the system roots; tls_ca / tls_cert / tls_key are PEM
file paths (client certificate for mutual TLS), tls_server_name overrides
the name checked in harnessd's certificate.

Another node's object: harnessd forwards such a call to the node that holds
it; when it does not (a client-certificate caller, its forward bound
reached), it answers UNAVAILABLE with the trailing metadata
"harness-node-address: HOST:PORT". The client then sends the same call once
to that address (follow=True, the default): same metadata and credentials,
same TLS settings (a tls_server_name is kept: every node of a cluster
presents the cluster's certificate; without one the followed HOST is
checked), what is left of the deadline. One hop: the followed call's answer
stands, another redirect included. Only a strict HOST:PORT is followed (a
DNS name, IPv4 or [IPv6] address and a port 1-65535, under 256 bytes; the
channel is made for "dns:///HOST:PORT", so no scheme can be injected).
Unary calls and server streams (before their first message) follow; bidi
streams do not. At most 8 channels to followed addresses are kept (least
recently used dropped; a dropped channel closes once no call holds it).
"""
import collections
import random
import re
import threading
import time

import grpc

from . import _stubs

RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)
FOLLOW_KEY = "harness-node-address"
FOLLOW_CHANNELS = 8
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_ADDR = re.compile(r"(\[[0-9A-Fa-f:.]+\]|%s(?:\.%s)*):([0-9]{1,5})" % (_LABEL, _LABEL), re.ASCII)


def follow_address(err):
    """The HOST:PORT an UNAVAILABLE grpc.RpcError says to go to (exactly one
    well-formed harness-node-address value), else None."""
    if not isinstance(err, grpc.RpcError) or not hasattr(err, "code"):
        return None
    if err.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    values = [v for k, v in (err.trailing_metadata() or ()) if k == FOLLOW_KEY]
    if len(values) != 1 or not isinstance(values[0], str) or len(values[0]) >= 256:
        return None
    m = _ADDR.fullmatch(values[0])
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        return None
    return values[0]


class HarnessError(Exception):
    """A failed call: code (grpc.StatusCode), details (the server's message)
    and reason (the machine-readable reason from the trailing metadata, or
    "")."""

    def __init__(self, method, code, details, reason=""):
        super().__init__("%s: %s: %s%s" % (method, code.name, details, " [%s]" % reason if reason else ""))
        self.method = method
        self.code = code
        self.details = details
        self.reason = reason


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class Client:
    def __init__(self, target, *, api_key=None, token=None, email=None, password=None, refresh_token=None,
                 tls=False, tls_ca=None, tls_cert=None, tls_key=None, tls_server_name=None,
                 timeout=15.0, retries=6, backoff_initial=0.1, backoff_max=5.0, options=(), follow=True):
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._static_token = api_key or token
        self._email, self._password = email, password
        self._access, self._refresh, self._expires_at = None, refresh_token, 0.0
        self._version = 0  # bumped by every new access token
        self._lock = threading.Lock()
        # One renewal at a time: two Refresh calls with the same refresh
        # token would look like reuse to the server and revoke the family.
        self._renew_lock = threading.Lock()
        opts = list(options)
        creds = None
        if tls or tls_ca or tls_cert or tls_key or tls_server_name:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca) if tls_ca else None,
                private_key=_read(tls_key) if tls_key else None,
                certificate_chain=_read(tls_cert) if tls_cert else None)
            if tls_server_name:
                opts.append(("grpc.ssl_target_name_override", tls_server_name))
            self.channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self.channel = grpc.insecure_channel(target, options=opts)
        self.follow = follow
        self._creds, self._opts = creds, opts
        self._peers = collections.OrderedDict()  # followed HOST:PORT -> channel, LRU first
        self.auth = _stubs.Service(self, "AuthService")
        self.sandboxes = _stubs.Service(self, "SandboxService")
        self.checkpoints = _stubs.Service(self, "CheckpointService")
        self.tasks = _stubs.Service(self, "HealthService")

    # -- lifecycle ---------------------------------------------------------

    def close(self):
        self.channel.close()
        with self._lock:
            peers, self._peers = list(self._peers.values()), collections.OrderedDict()
        for ch in peers:
            ch.close()

    def _peer(self, addr):
        """The (cached) channel to a followed address."""
        with self._lock:
            ch = self._peers.get(addr)
            if ch is not None:
                self._peers.move_to_end(addr)
                return ch
            target = "dns:///" + addr
            if self._creds is not None:
                ch = grpc.secure_channel(target, self._creds, options=self._opts)
            else:
                ch = grpc.insecure_channel(target, options=self._opts)
            self._peers[addr] = ch
            while len(self._peers) > FOLLOW_CHANNELS:
                # not closed here: a call may still use it; it closes
                # when the last reference goes
                self._peers.popitem(last=False)
            return ch

    def _follow(self, err):
        """The channel to follow err to, or None."""
        if not self.follow:
            return None
        addr = follow_address(err)
        return self._peer(addr) if addr is not None else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- credentials -------------------------------------------------------

    def login(self, email=None, password=None):
        """Logs in (and remembers the credentials for later re-logins)."""
        if email is not None:
            self._email, self._password = email, password
        resp = self.call("AuthService", "Login", {"email": self._email, "password": self._password},
                         auth=False)
        self._take(resp)
        return resp

    def refresh(self):
        resp = self.call("AuthService", "Refresh", {"refresh_token": self._refresh}, auth=False)
        self._take(resp)
        return resp

    def _take(self, resp):
        with self._lock:
            self._access = resp.access_token
            self._refresh = resp.refresh_token or self._refresh
            self._expires_at = time.monotonic() + resp.expires_in if resp.expires_in > 0 else 0.0
            self._version += 1

    def _renew(self, seen):
        """A fresh access token from the refresh token, else from Login;
        nothing when another thread renewed since version `seen`."""
        with self._renew_lock:
            with self._lock:
                if self._version != seen:
                    return
            if self._refresh:
                try:
                    self.refresh()
                    return
                except HarnessError as e:
                    if e.code != grpc.StatusCode.UNAUTHENTICATED or not self._email:
                        raise
            if self._email:
                self.login()

    def _token(self):
        """(access token or None, its version)."""
        if self._static_token:
            return self._static_token, 0
        with self._lock:
            access, exp, version = self._access, self._expires_at, self._version
        if access is None or (exp and exp - time.monotonic() < 30):
            if self._refresh or self._email:
                self._renew(version)
            with self._lock:
                access, version = self._access, self._version
        return access, version

    # -- calls -------------------------------------------------------------

    def call(self, service, method, request=None, *, timeout=None, auth=True, retry=True, **fields):
        """Unary call of harness.v1.<service>/<method>. request is a message,
        a dict, or None with fields as keyword arguments."""
        m = _stubs.method(service, method)
        if request is None or isinstance(request, dict):
            req = m.request_class()
            _stubs.fill(req, dict(request or {}, **fields))
        else:
            req = request
        refreshed = False
        attempt = 0
        while True:
            md = []
            version = 0
            if auth:
                tok, version = self._token()
                if tok:
                    md.append(("authorization", "Bearer " + tok))
            limit = timeout or self.timeout
            deadline = time.monotonic() + limit
            try:
                try:
                    return m.callable(self.channel)(req, timeout=limit, metadata=md)
                except grpc.RpcError as e:
                    peer = self._follow(e)
                    if peer is None:
                        raise
                # once more where the server said, in what is left of the deadline
                return m.callable(peer)(req, timeout=max(0.0, deadline - time.monotonic()), metadata=md)
            except grpc.RpcError as e:
                code = e.code()
                reason = ""
                for k, v in (e.trailing_metadata() or ()):
                    if k == "hs-error-code":
                        reason = v
                if (code == grpc.StatusCode.UNAUTHENTICATED and auth and not refreshed and
                        not self._static_token and (self._refresh or self._email)):
                    refreshed = True
                    self._renew(version)
                    continue
                if retry and code in RETRYABLE and attempt < self.retries:
                    delay = min(self.backoff_max, self.backoff_initial * (2 ** attempt))
                    time.sleep(random.uniform(delay / 2, delay))
                    attempt += 1
                    continue
                raise HarnessError(m.path, code, e.details() or "", reason) from None
