// Harness console: sign-in, a live task table, a task's events and
// checkpoints, sandboxes. Plain DOM (text only: nothing from the server is
// ever parsed as HTML), hash routes: #/tasks, #/tasks/<id>, #/sandboxes.
import * as api from "./api.js";

const $ = (sel) => document.querySelector(sel);

// el("td", {class: "x", onclick: f}, "text", child...)
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k ?? ""));
  return e;
}

const short = (s, p) => (s || "").replace(p, "");
const state = (s) => short(s, "TASK_STATE_");
const evType = (s) => short(s, "TASK_EVENT_TYPE_");
const sbState = (s) => short(s, "SANDBOX_STATE_");

function ago(ts) {
  if (!ts) return "–";
  const s = Math.round((Date.now() - Date.parse(ts)) / 1000);
  if (s < 0) return "just now";
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  return Math.floor(s / 3600) + "h ago";
}

function flash(msg, kind = "ok") {
  const f = $("#flash");
  f.textContent = msg;
  f.className = kind;
  f.hidden = false;
  clearTimeout(flash.t);
  flash.t = setTimeout(() => { f.hidden = true; }, 6000);
}

// A modal confirmation (no window.confirm: it blocks the page).
function confirmDialog(text, okLabel) {
  const d = $("#confirm");
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = okLabel;
  d.returnValue = "";
  d.showModal();
  return new Promise((ok) => d.addEventListener("close", () => ok(d.returnValue === "ok"), { once: true }));
}

// --- views ---------------------------------------------------------------

let teardown = () => {};
const views = ["login-view", "tasks-view", "task-view", "sandboxes-view"];
function show(id) {
  for (const v of views) $("#" + v).hidden = v !== id;
}

// Tasks: ListTasks once, then WatchTasks (send_initial) keeps the table live;
// the heartbeat ages tick every second and the list is re-read every 5 s
// (heartbeats are not events).
function tasksView() {
  show("tasks-view");
  const tasks = new Map(); // taskId -> {task, recoveries, lastEvent}
  const body = $("#tasks tbody");
  const status = $("#tasks-live");

  function row(id) {
    const t = tasks.get(id);
    const task = t.task;
    const tr = el("tr", { "data-task": id, onclick: () => { location.hash = "#/tasks/" + encodeURIComponent(id); } },
      el("td", { class: "id" }, el("a", { href: "#/tasks/" + encodeURIComponent(id) }, id)),
      el("td", { class: "state state-" + state(task.state).toLowerCase() }, state(task.state)),
      el("td", { class: "step" }, task.currentStep + (task.totalSteps !== "0" ? " / " + task.totalSteps : "")),
      el("td", { class: "heartbeat", "data-ts": task.lastHeartbeatAt || "" }, ago(task.lastHeartbeatAt)),
      el("td", { class: "recoveries" }, String(t.recoveries) +
        (task.recoveryAttempts > 0 ? " (attempt " + task.recoveryAttempts + ")" : "")),
      el("td", { class: "event" }, evType(t.lastEvent)),
      el("td", { class: "owner" }, task.owner));
    return tr;
  }
  function render() {
    const ids = [...tasks.keys()].sort((a, b) =>
      (tasks.get(b).task.registeredAt || "").localeCompare(tasks.get(a).task.registeredAt || ""));
    body.replaceChildren(...ids.map(row));
    $("#tasks-empty").hidden = ids.length > 0;
  }
  function upsert(task) {
    const t = tasks.get(task.taskId) || { recoveries: 0, lastEvent: "" };
    t.task = task;
    tasks.set(task.taskId, t);
  }
  async function reload() {
    try {
      const r = await api.call("GET", "/v1/tasks?pageSize=200");
      for (const task of r.tasks) upsert(task);
      render();
    } catch (e) { status.textContent = "error: " + e.message; }
  }
  const pending = new Set();
  function refreshTask(id) {
    if (pending.has(id)) return;
    pending.add(id);
    api.call("GET", "/v1/tasks/" + encodeURIComponent(id))
      .then((task) => { upsert(task); render(); })
      .catch(() => {})
      .finally(() => pending.delete(id));
  }
  const s = api.stream("/v1/tasks:watch?sendInitial=true", (ev) => {
    if (!ev.taskId) { reload(); return; } // EVENTS_DROPPED: re-read
    const t = tasks.get(ev.taskId) || { recoveries: 0, lastEvent: "", task: { taskId: ev.taskId, currentStep: ev.step, totalSteps: "0", owner: ev.owner, recoveryAttempts: 0 } };
    t.task = Object.assign({}, t.task, { state: ev.state, currentStep: ev.step });
    if (ev.type !== "TASK_EVENT_TYPE_INITIAL_STATE") t.lastEvent = ev.type;
    if (ev.type === "TASK_EVENT_TYPE_RECOVERED") t.recoveries++;
    tasks.set(ev.taskId, t);
    render();
    refreshTask(ev.taskId);
  }, (st, detail) => {
    status.textContent = st === "live" ? "live" : st + (detail ? ": " + detail : "");
    status.className = "live-" + st;
    if (st === "live") reload();
  });
  const tick = setInterval(() => {
    for (const td of body.querySelectorAll("td.heartbeat")) td.textContent = ago(td.dataset.ts);
  }, 1000);
  const poll = setInterval(reload, 5000);
  return () => { s.close(); clearInterval(tick); clearInterval(poll); };
}

function taskView(id) {
  show("task-view");
  $("#task-title").textContent = id;
  const enc = encodeURIComponent(id);
  const details = $("#task-details");
  const events = $("#task-events");
  events.replaceChildren();
  $("#diff-out").replaceChildren();

  async function loadTask() {
    try {
      const t = await api.call("GET", "/v1/tasks/" + enc);
      details.replaceChildren(...[
        ["State", state(t.state)], ["Step", t.currentStep + " / " + t.totalSteps],
        ["Last heartbeat", t.lastHeartbeatAt ? new Date(t.lastHeartbeatAt).toLocaleString() : "–"],
        ["Recovery attempts", t.recoveryAttempts], ["Last checkpoint", t.lastCheckpointId || "–"],
        ["Sandbox", t.sandboxId || "–"], ["Owner", t.owner], ["Workspace", t.workspace],
        ["Failure", t.failureReason || "–"],
      ].flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)]));
    } catch (e) { details.replaceChildren(el("dd", { class: "error" }, e.message)); }
  }

  async function loadCheckpoints() {
    const tbody = $("#checkpoints tbody");
    try {
      const r = await api.call("GET", "/v1/tasks/" + enc + "/checkpoints?pageSize=100");
      const cps = r.checkpoints;
      tbody.replaceChildren(...cps.map((c) => el("tr", { "data-checkpoint": c.checkpointId },
        el("td", { class: "id" }, c.checkpointId), el("td", {}, c.step), el("td", {}, c.description),
        el("td", {}, new Date(c.createdAt).toLocaleString()), el("td", {}, c.filesChanged),
        el("td", {}, el("button", { class: "restore", onclick: () => restore(c) }, "Restore")))));
      for (const sel of [$("#diff-from"), $("#diff-to")])
        sel.replaceChildren(...cps.map((c) => el("option", { value: c.checkpointId }, c.checkpointId + " (step " + c.step + ")")));
      if (cps.length > 1) $("#diff-from").value = cps[1].checkpointId;
      $("#checkpoints-empty").hidden = cps.length > 0;
    } catch (e) { tbody.replaceChildren(el("tr", {}, el("td", { class: "error" }, e.message))); }
  }

  async function restore(c) {
    if (!(await confirmDialog("Restore checkpoint " + c.checkpointId + " (step " + c.step +
      ")? Files written since then in the workspace are replaced or removed.", "Restore"))) return;
    try {
      const r = await api.call("POST", "/v1/tasks/" + enc + "/checkpoints/" + encodeURIComponent(c.checkpointId) + ":restore", {});
      flash("Restored " + c.checkpointId + ": " + r.filesRestored + " files restored, " + r.filesRemoved + " removed");
      loadTask();
    } catch (e) { flash("Restore failed: " + e.message, "error"); }
  }

  $("#diff-go").onclick = async () => {
    const out = $("#diff-out");
    try {
      const q = "?fromCheckpointId=" + encodeURIComponent($("#diff-from").value) +
        "&toCheckpointId=" + encodeURIComponent($("#diff-to").value);
      const r = await api.call("GET", "/v1/tasks/" + enc + "/checkpoints:diff" + q);
      out.replaceChildren(...(r.files.length ? r.files.map((f) => el("li", { class: "diff-" + short(f.status, "FILE_STATUS_").toLowerCase() },
        short(f.status, "FILE_STATUS_") + " " + (f.oldPath ? f.oldPath + " → " : "") + f.path +
        (f.binary ? " (binary)" : " +" + f.additions + " −" + f.deletions))) : [el("li", {}, "no differences")]));
    } catch (e) { out.replaceChildren(el("li", { class: "error" }, e.message)); }
  };
  $("#task-recover").onclick = async () => {
    try { await api.call("POST", "/v1/tasks/" + enc + ":recover", { reason: "from the console" }); flash("Recovery started"); loadTask(); }
    catch (e) { flash(e.message, "error"); }
  };
  $("#task-cancel").onclick = async () => {
    if (!(await confirmDialog("Cancel task " + id + "?", "Cancel task"))) return;
    try { await api.call("POST", "/v1/tasks/" + enc + ":cancel", { reason: "from the console" }); flash("Cancelled"); loadTask(); }
    catch (e) { flash(e.message, "error"); }
  };

  loadTask();
  loadCheckpoints();
  // every stored event of the task, then live ones
  const s = api.stream("/v1/tasks:watch?taskId=" + enc + "&afterEventId=1", (ev) => {
    if (ev.type === "TASK_EVENT_TYPE_INITIAL_STATE") return;
    events.prepend(el("li", { "data-type": evType(ev.type) },
      el("time", {}, new Date(ev.occurredAt).toLocaleTimeString()), " ",
      el("strong", {}, evType(ev.type)), " step " + ev.step +
      (ev.checkpointId ? " · " + ev.checkpointId : "") + (ev.message ? " · " + ev.message : "")));
    loadTask();
    if (ev.type === "TASK_EVENT_TYPE_RECOVERED" || ev.type === "TASK_EVENT_TYPE_RECOVERY_STARTED") loadCheckpoints();
  });
  return () => s.close();
}

function sandboxesView() {
  show("sandboxes-view");
  const tbody = $("#sandboxes tbody");
  const actions = {
    CREATED: [["Start", "start"]], RUNNING: [["Pause", "pause"]], PAUSED: [["Resume", "resume"]],
  };
  async function act(sb, verb) {
    try {
      await api.call("POST", "/v1/sandboxes/" + encodeURIComponent(sb.sandboxId) + ":" + verb, {});
      flash(sb.sandboxId + ": " + verb + " done");
    } catch (e) { flash(e.message, "error"); }
    load();
  }
  async function destroy(sb) {
    if (!(await confirmDialog("Destroy sandbox " + sb.sandboxId + "?", "Destroy"))) return;
    try { await api.call("DELETE", "/v1/sandboxes/" + encodeURIComponent(sb.sandboxId)); flash(sb.sandboxId + " destroyed"); }
    catch (e) { flash(e.message, "error"); }
    load();
  }
  async function load() {
    try {
      const r = await api.call("GET", "/v1/sandboxes?pageSize=200");
      tbody.replaceChildren(...r.sandboxes.map((sb) => {
        const st = sbState(sb.state);
        const btns = (actions[st] || []).map(([label, verb]) => el("button", { onclick: () => act(sb, verb) }, label));
        if (st !== "DESTROYED") btns.push(el("button", { class: "danger", onclick: () => destroy(sb) }, "Destroy"));
        return el("tr", { "data-sandbox": sb.sandboxId },
          el("td", { class: "id" }, sb.sandboxId), el("td", { class: "state state-" + st.toLowerCase() }, st),
          el("td", {}, sb.driver), el("td", {}, sb.taskId || "–"), el("td", {}, sb.pid || "–"),
          el("td", {}, sb.createdAt ? new Date(sb.createdAt).toLocaleString() : "–"),
          el("td", { class: "actions" }, ...btns));
      }));
      $("#sandboxes-empty").hidden = r.sandboxes.length > 0;
    } catch (e) { tbody.replaceChildren(el("tr", {}, el("td", { class: "error" }, e.message))); }
  }
  load();
  const poll = setInterval(load, 5000);
  return () => clearInterval(poll);
}

// --- wiring -----------------------------------------------------------------

function route() {
  teardown();
  teardown = () => {};
  if (!api.currentUser()) { show("login-view"); return; }
  const h = location.hash || "#/tasks";
  let m;
  if ((m = h.match(/^#\/tasks\/(.+)$/))) teardown = taskView(decodeURIComponent(m[1]));
  else if (h === "#/sandboxes") teardown = sandboxesView();
  else teardown = tasksView();
  for (const a of document.querySelectorAll("nav a"))
    a.classList.toggle("active", h.startsWith(a.getAttribute("href")));
}

// Re-route when someone signs in or out (not on each token refresh).
let shownUser;
api.onSession((u) => {
  $("#who").textContent = u ? u.email + " (" + u.role + ")" : "";
  $("#logout").hidden = !u;
  $("nav").hidden = !u;
  if (shownUser === undefined || (shownUser && shownUser.id) !== (u && u.id)) {
    shownUser = u;
    route();
  }
});

$("#login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const err = $("#login-error");
  err.textContent = "";
  try {
    await api.login($("#email").value, $("#password").value);
    $("#password").value = "";
  } catch (x) {
    err.textContent = x.status === 400 ? "Enter an email address and a password of at least 6 characters."
      : x.message;
  }
});
$("#logout").addEventListener("click", () => api.logout());
window.addEventListener("hashchange", route);

api.refresh().catch(() => null).then((u) => { if (!u && shownUser === undefined) { shownUser = null; route(); } });
