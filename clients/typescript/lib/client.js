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
const fs = require("fs");
const grpc = require("@grpc/grpc-js");
const { load } = require("./protos");

const SERVICES = ["AuthService", "SandboxService", "CheckpointService", "HealthService"];

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
    if (opts.tls || opts.tlsCa || opts.tlsCert || opts.tlsKey || opts.tlsServerName) {
      creds = grpc.credentials.createSsl(pem(opts.tlsCa), pem(opts.tlsKey), pem(opts.tlsCert));
      if (opts.tlsServerName) channelOpts["grpc.ssl_target_name_override"] = opts.tlsServerName;
    } else {
      creds = grpc.credentials.createInsecure();
    }
    this._stubs = {};
    for (const s of SERVICES) this._stubs[s] = new pkg[s](target, creds, channelOpts);
    this.auth = this._proxy("AuthService");
    this.sandboxes = this._proxy("SandboxService");
    this.checkpoints = this._proxy("CheckpointService");
    this.tasks = this._proxy("HealthService");
  }

  close() {
    for (const s of Object.values(this._stubs)) s.close();
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
      try {
        return await new Promise((resolve, reject) => {
          stub[method](request, md, { deadline }, (err, resp) => (err ? reject(err) : resolve(resp)));
        });
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
  async stream(service, method, request = {}, opts = {}) {
    const md = await this._metadata(opts.auth !== false);
    const o = opts.timeoutMs ? { deadline: new Date(Date.now() + opts.timeoutMs) } : {};
    return this._stubs[service][method](request, md, o);
  }
}

module.exports = { Client, HarnessError };
