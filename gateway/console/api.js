// The console's client of the gateway: the cookie session, JSON calls on
// /v1, and Server-Sent Event streams.
//
// The session is the seed's: the access token lives in this module's memory
// only (never in localStorage or a readable cookie); the refresh token is an
// HttpOnly cookie scoped to /api/v1/auth that this code never sees. A reload
// gets a new access token from POST /api/v1/auth/refresh. Every /v1 call
// sends "Authorization: Bearer": no cookie authorises the API, so a page of
// another site cannot make a request on the user's behalf.
//
// Streams are read with fetch() (an EventSource cannot send the
// Authorization header) and reconnect as an EventSource would: after the
// server's retry delay, with Last-Event-ID, so no task event is lost or
// repeated.

let token = null;
let refreshTimer = null;
let user = null;
const listeners = new Set();

export function currentUser() { return user; }

// fn(user or null) runs whenever the session starts or ends.
export function onSession(fn) { listeners.add(fn); }

function setSession(data) {
  clearTimeout(refreshTimer);
  token = data ? data.accessToken : null;
  user = data ? data.user : null;
  if (data && data.expiresIn > 0) {
    // refresh at 80% of the token's life
    refreshTimer = setTimeout(() => refresh().catch(() => setSession(null)),
      Math.max(5, data.expiresIn * 0.8) * 1000);
  }
  for (const fn of listeners) fn(user);
}

async function authPost(path, body) {
  const headers = { "X-Requested-With": "harness-console" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, {
    method: "POST", headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(j.message || r.statusText), { status: r.status, body: j });
  return j;
}

export async function login(email, password) {
  const j = await authPost("/api/v1/auth/login", { email, password });
  setSession(j.data);
  return j.data.user;
}

// A new access token from the refresh cookie; null when there is no session.
export async function refresh() {
  try {
    const j = await authPost("/api/v1/auth/refresh");
    setSession(j.data);
    return j.data.user;
  } catch (e) {
    if (e.status === 401) { setSession(null); return null; }
    throw e;
  }
}

export async function logout() {
  try { await authPost("/api/v1/auth/logout"); } finally { setSession(null); }
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || "HTTP " + status);
    this.status = status;
    this.code = body && body.code;
  }
}

// One JSON call on /v1. A 401 refreshes the token once and retries.
export async function call(method, path, body, retried = false) {
  const headers = { "X-Requested-With": "harness-console" };
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401 && !retried && (await refresh())) return call(method, path, body, true);
  const j = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, j);
  return j;
}

// Parses one event block ("id: 1\ndata: {...}") into {id, event, data}.
function parseBlock(block) {
  const ev = { id: null, event: "message", data: [] , retry: null };
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") ev.id = value;
    else if (field === "event") ev.event = value;
    else if (field === "data") ev.data.push(value);
    else if (field === "retry" && /^[0-9]+$/.test(value)) ev.retry = Number(value);
  }
  return ev;
}

// Opens an event stream on path. onMessage(obj, id) per message;
// onStatus("live" | "reconnecting" | "ended", detail) on changes. Returns
// {close()}. Reconnects (with Last-Event-ID) when the connection drops or
// the server ends with UNAVAILABLE; refreshes the token on UNAUTHENTICATED.
export function stream(path, onMessage, onStatus = () => {}) {
  let lastId = null;
  let retry = 3000;
  let closed = false;
  let ctrl = null;

  async function once() {
    ctrl = new AbortController();
    const headers = { Accept: "text/event-stream" };
    if (token) headers.Authorization = "Bearer " + token;
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    const r = await fetch(path, { headers, signal: ctrl.signal, credentials: "same-origin" });
    if (r.status === 401) {
      if (await refresh()) return "again";
      return "stop";
    }
    if (!r.ok) {
      const j = await r.json().catch(() => null);
      onStatus("ended", (j && j.message) || "HTTP " + r.status);
      return r.status === 429 || r.status >= 500 ? "again" : "stop";
    }
    onStatus("live");
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "again"; // closed without an end event: reconnect
      buf += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const ev = parseBlock(buf.slice(0, cut));
        buf = buf.slice(cut + 2);
        if (ev.retry !== null) retry = ev.retry;
        if (ev.id !== null) lastId = ev.id;
        if (ev.data.length === 0) continue;
        const data = JSON.parse(ev.data.join("\n"));
        if (ev.event === "end") {
          if (data.code === 14) return "again";          // server going away
          if (data.code === 16 && (await refresh())) return "again";
          onStatus("ended", data.message || "stream ended");
          return "stop";
        }
        onMessage(data, ev.id);
      }
    }
  }

  (async () => {
    while (!closed) {
      let next;
      try { next = await once(); } catch (e) { next = closed ? "stop" : "again"; }
      if (closed || next === "stop") break;
      onStatus("reconnecting");
      await new Promise((ok) => setTimeout(ok, retry));
    }
  })();
  return { close() { closed = true; if (ctrl) ctrl.abort(); } };
}
