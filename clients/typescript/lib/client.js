"use strict";
// Client: one channel to harnessd with credentials, deadlines and retries.
//
// Every call has a deadline (timeoutMs, default 15 s). UNAVAILABLE is
// retried with exponential backoff and full jitter (retries times); any
// other status rejects with HarnessError at once. Credentials: apiKey (or
// token) sent as "authorization: Bearer ..." as is; or email + password:
// Login, Refresh before the access token expires and once on an
// UNAUTHENTICATED answer, Login again when the refresh token is refused.
// TLS: tls (system roots), tlsCa / tlsCert / tlsKey (PEM file paths or
// Buffers), tlsServerName.
//
// Another node's object: harnessd forwards such a call to the node holding
// it; when it does not (a client-certificate caller, its forward bound
// reached) it answers UNAVAILABLE with the trailing metadata
// "harness-node-address: HOST:PORT", and the client sends the same call
// once to that address (follow: true, the default): same metadata and
// credentials, same TLS settings (a tlsServerName is kept: every node of a
// cluster presents the cluster's certificate; without one the followed HOST
// is checked), what is left of the deadline. One hop: the followed call's
// answer stands, another redirect included. Only a strict HOST:PORT is
// followed (DNS name, IPv4 or [IPv6], port 1-65535, under 256 bytes; the
// channel target is "dns:///HOST:PORT", so no scheme can be injected).
// Unary calls and server streams (before their first message) follow.
// At most 8 followed addresses keep channels (least recently used dropped,
// closed once no call holds them).
const fs = require("fs");
const { Readable } = require("stream");
const grpc = require("@grpc/grpc-js");
const { load } = require("./protos");

const SERVICES = ["AuthService", "SandboxService", "CheckpointService", "HealthService"];
const FOLLOW_KEY = "harness-node-address";
const FOLLOW_CHANNELS = 8;
const LABEL = "(?!-)[A-Za-z0-9-]{1,63}(?<!-)";
const ADDR = new RegExp(`^(\\[[0-9A-Fa-f:.]+\\]|${LABEL}(?:\\.${LABEL})*):([0-9]{1,5})$`);

// The HOST:PORT an UNAVAILABLE error says to go to (exactly one well-formed
// harness-node-address value), else null.
function followAddress(err) {
  if (!err || err.code !== grpc.status.UNAVAILABLE || !err.metadata) return null;
  const v = err.metadata.get(FOLLOW_KEY);
  if (v.length !== 1 || typeof v[0] !== "string" || v[0].length >= 256) return null;
  const m = ADDR.exec(v[0]);
  if (!m) return null;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? v[0] : null;
}

class HarnessError extends Error {
  constructor(method, code, details, reason) {
    const name = Object.keys(grpc.status).find((k) => grpc.status[k] === code) || String(code);
    super(`${method}: ${name}: ${details}${reason ? ` [${reason}]` : ""}`);
    this.name = "HarnessError";
    this.method = method;
    this.code = code;          // a grpc.status number
    this.codeName = name;      // "NOT_FOUND", ...
    this.details = details;
    this.reason = reason || "";
  }
}

function pem(v) {
  if (v === undefined || v === null) return null;
  return Buffer.isBuffer(v) ? v : fs.readFileSync(v);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Client {
  constructor(target, opts = {}) {
    const { pkg } = load();
    this.target = target;
    this.timeoutMs = opts.timeoutMs || 15000;
    this.retries = opts.retries === undefined ? 6 : opts.retries;
    this.backoffInitialMs = opts.backoffInitialMs || 100;
    this.backoffMaxMs = opts.backoffMaxMs || 5000;
    this._static = opts.apiKey || opts.token || null;
    this._email = opts.email || null;
    this._password = opts.password || null;
    this._access = null;
    this._refresh = opts.refreshToken || null;
    this._expiresAt = 0;
    this._renewing = null;
    const channelOpts = {};
    let creds;
    this.follow = opts.follow !== false;
    this._pkg = pkg;
    this._peers = new Map(); // followed HOST:PORT -> peer, least recently used first
    if (opts.tls || opts.tlsCa || opts.tlsCert || opts.tlsKey || opts.tlsServerName) {
      creds = grpc.credentials.createSsl(pem(opts.tlsCa), pem(opts.tlsKey), pem(opts.tlsCert));
      if (opts.tlsServerName) channelOpts["grpc.ssl_target_name_override"] = opts.tlsServerName;
    } else {
      creds = grpc.credentials.createInsecure();
    }
    this._creds = creds;
    this._channelOpts = channelOpts;
    this._stubs = {};
    for (const s of SERVICES) this._stubs[s] = new pkg[s](target, creds, channelOpts);
    this.auth = this._proxy("AuthService");
    this.sandboxes = this._proxy("SandboxService");
    this.checkpoints = this._proxy("CheckpointService");
    this.tasks = this._proxy("HealthService");
  }

  close() {
    for (const s of Object.values(this._stubs)) s.close();
    for (const p of this._peers.values()) {
      p.evicted = true;
      if (p.refs === 0) p.close();
    }
    this._peers.clear();
  }

  // A reference to the (cached) peer for a followed address: its stubs
  // share one channel; _peerRelease when the call is done.
  _peerAcquire(addr) {
    let p = this._peers.get(addr);
    if (p) {
      this._peers.delete(addr); // to the most recently used end
    } else {
      const channel = new grpc.Channel(`dns:///${addr}`, this._creds, this._channelOpts);
      const stubs = {};
      p = {
        refs: 0,
        evicted: false,
        stub: (service) => {
          if (!stubs[service]) {
            stubs[service] = new this._pkg[service](`dns:///${addr}`, this._creds,
              { ...this._channelOpts, channelOverride: channel });
          }
          return stubs[service];
        },
        close: () => channel.close(),
      };
    }
    this._peers.set(addr, p);
    while (this._peers.size > FOLLOW_CHANNELS) {
      const [oldest, q] = this._peers.entries().next().value;
      this._peers.delete(oldest);
      q.evicted = true;
      if (q.refs === 0) q.close();
    }
    p.refs++;
    return p;
  }

  _peerRelease(p) {
    if (--p.refs === 0 && p.evicted) p.close();
  }

  // client.tasks.GetTask({taskId: "t1"}, {timeoutMs}); streaming methods
  // return the call (an EventEmitter / async iterable of messages).
  _proxy(service) {
    const stub = this._stubs[service];
    return new Proxy({}, {
      get: (_t, name) => {
        if (typeof name !== "string" || typeof stub[name] !== "function") return undefined;
        const def = stub[name];
        if (def.responseStream) return (req, o) => this.stream(service, name, req, o);
        return (req, o) => this.call(service, name, req, o);
      },
    });
  }

  async login(email, password) {
    if (email !== undefined) {
      this._email = email;
      this._password = password;
    }
    const r = await this.call("AuthService", "Login", { email: this._email, password: this._password },
      { auth: false });
    this._take(r);
    return r;
  }

  async refresh() {
    const r = await this.call("AuthService", "Refresh", { refreshToken: this._refresh }, { auth: false });
    this._take(r);
    return r;
  }

  _take(r) {
    this._access = r.accessToken;
    if (r.refreshToken) this._refresh = r.refreshToken;
    this._expiresAt = r.expiresIn > 0 ? Date.now() + r.expiresIn * 1000 : 0;
  }

  _renew() {
    // one renewal at a time, shared by concurrent callers
    if (!this._renewing) {
      this._renewing = (async () => {
        if (this._refresh) {
          try {
            await this.refresh();
            return;
          } catch (e) {
            if (!(e instanceof HarnessError) || e.code !== grpc.status.UNAUTHENTICATED || !this._email) throw e;
          }
        }
        if (this._email) await this.login();
      })().finally(() => { this._renewing = null; });
    }
    return this._renewing;
  }

  async _token() {
    if (this._static) return this._static;
    if ((this._access === null || (this._expiresAt && this._expiresAt - Date.now() < 30000)) &&
        (this._refresh || this._email)) {
      await this._renew();
    }
    return this._access;
  }

  async _metadata(auth) {
    const md = new grpc.Metadata();
    if (auth) {
      const tok = await this._token();
      if (tok) md.set("authorization", "Bearer " + tok);
    }
    return md;
  }

  // Unary call of harness.v1.<service>/<method>.
  async call(service, method, request = {}, opts = {}) {
    const stub = this._stubs[service];
    if (!stub || typeof stub[method] !== "function") throw new TypeError(`no method ${service}/${method}`);
    const auth = opts.auth !== false;
    const retry = opts.retry !== false;
    const path = `/harness.v1.${service}/${method}`;
    let refreshed = false;
    for (let attempt = 0; ; ) {
      const md = await this._metadata(auth);
      const deadline = new Date(Date.now() + (opts.timeoutMs || this.timeoutMs));
      const once = (st) => new Promise((resolve, reject) => {
        st[method](request, md, { deadline }, (err, resp) => (err ? reject(err) : resolve(resp)));
      });
      try {
        try {
          return await once(stub);
        } catch (err) {
          const addr = this.follow ? followAddress(err) : null;
          if (!addr) throw err;
          // once more where the server said, within the same deadline
          const peer = this._peerAcquire(addr);
          try {
            return await once(peer.stub(service));
          } finally {
            this._peerRelease(peer);
          }
        }
      } catch (err) {
        const code = err.code;
        const reasonMd = err.metadata ? err.metadata.get("hs-error-code") : [];
        const reason = reasonMd.length ? String(reasonMd[0]) : "";
        if (code === grpc.status.UNAUTHENTICATED && auth && !refreshed && !this._static &&
            (this._refresh || this._email)) {
          refreshed = true;
          await this._renew();
          continue;
        }
        if (retry && code === grpc.status.UNAVAILABLE && attempt < this.retries) {
          const delay = Math.min(this.backoffMaxMs, this.backoffInitialMs * 2 ** attempt);
          await sleep(delay / 2 + Math.random() * delay / 2);
          attempt++;
          continue;
        }
        throw new HarnessError(path, code, err.details || err.message, reason);
      }
    }
  }

  // Server stream: resolves to the call (iterate it with for await); no
  // deadline unless opts.timeoutMs.
  // A stream that ends before its first message with an UNAVAILABLE naming
  // harness-node-address is opened once more there (the returned stream
  // stands for both; cancel() cancels whichever is open).
  async stream(service, method, request = {}, opts = {}) {
    const md = await this._metadata(opts.auth !== false);
    const o = opts.timeoutMs ? { deadline: new Date(Date.now() + opts.timeoutMs) } : {};
    const first = this._stubs[service][method](request, md, o);
    if (!this.follow) return first;
    let cur = null;
    const out = new Readable({
      objectMode: true,
      read: () => { if (cur) cur.resume(); },
      destroy: (err, cb) => { // the caller stopped reading: end the call too
        if (!done && cur) cur.cancel();
        finish();
        cb(err);
      },
    });
    let got = false;
    let followed = false;
    let peer = null;
    let done = false;
    const finish = () => {
      done = true;
      if (peer) this._peerRelease(peer);
      peer = null;
    };
    const attach = (call) => {
      cur = call;
      call.on("metadata", (m) => { if (cur === call) out.emit("metadata", m); });
      call.on("data", (m) => {
        if (cur !== call || done) return;
        got = true;
        if (!out.push(m)) call.pause();
      });
      call.on("status", (st) => { if (cur === call) out.emit("status", st); });
      call.on("end", () => {
        if (cur !== call || done) return;
        finish();
        out.push(null);
      });
      call.on("error", (err) => {
        if (cur !== call || done) return;
        const addr = !got && !followed ? followAddress(err) : null;
        if (addr) {
          followed = true;
          peer = this._peerAcquire(addr);
          attach(peer.stub(service)[method](request, md, o));
          return;
        }
        finish();
        out.destroy(err);
      });
    };
    attach(first);
    out.cancel = () => { if (cur) cur.cancel(); };
    out.getPeer = () => (cur ? cur.getPeer() : "");
    return out;
  }
}

module.exports = { Client, HarnessError, followAddress };
