"use strict";
// Agent: the agent side of HealthService's fencing protocol (see
// proto/harness/v1/health.proto, "Fencing"), the same rules as the Python
// SDK's harness_sdk/agent.py:
//
// * A heartbeat timer sends gen (the generation last acknowledged) every
//   heartbeatIntervalMs. Heartbeats are serialised; a reply is applied only
//   if it answers the current gen. A reply other than CONTINUE fences the
//   agent: run() starts no step, check() throws Fenced, and a step that was
//   running when the fence came is not checkpointed.
// * RESUME_FROM_CHECKPOINT is handled by run(): the resume callback gets
//   (step, externalState), then gen is set and the acknowledging heartbeat
//   sent, so the server hears the acknowledgement only after the state was
//   reloaded. Work continues with step + 1.
// * checkpoint() heartbeats first and requires CONTINUE at the current gen,
//   then CreateCheckpoint with a requestId unique to (this process, gen,
//   step): retries after UNAVAILABLE cannot record a step twice. It sends
//   gen as recoveryGeneration, so a restore that starts after that
//   heartbeat makes the server refuse the checkpoint (FAILED_PRECONDITION)
//   instead of recording the stale workspace.
// * A restarted process attaches to its task: RUNNING, STALLED or FAILED
//   with a checkpoint -> RecoverTask (the workspace is restored and this
//   process told to RESUME); RECOVERING -> joined; none or finished ->
//   RegisterTask (a COMPLETED task only with rerun: true).
const crypto = require("crypto");
const { EventEmitter } = require("events");
const grpc = require("@grpc/grpc-js");
const { HarnessError } = require("./client");
const { toStruct, fromStruct } = require("./struct");

class Cancelled extends Error {
  constructor(msg) { super(msg); this.name = "Cancelled"; }
}
class Fenced extends Error {
  constructor(msg) { super(msg); this.name = "Fenced"; }
}

class Agent extends EventEmitter {
  constructor(client, taskId, opts = {}) {
    super();
    this.client = client;
    this.taskId = taskId;
    this.totalSteps = opts.totalSteps || 0;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs || 1000;
    this.heartbeatTimeoutMs = opts.heartbeatTimeoutMs ||
      Math.max(3 * this.heartbeatIntervalMs, this.heartbeatIntervalMs + 1000);
    this.workspace = opts.workspace || "";
    this.sandboxId = opts.sandboxId || "";
    this.labels = opts.labels || {};
    this.recoveryPolicy = opts.recoveryPolicy || null;
    this.rerun = !!opts.rerun;
    this.details = "";
    this.task = null;
    this.alreadyCompleted = false;
    this._onResume = opts.onResume || null;
    this._gen = 0;
    this._step = 0;
    this._pending = null;
    this._fenced = true;     // until the first reply says otherwise
    this._answered = false;
    this._cancelled = false;
    this._fatal = null;
    this._timer = null;
    this._running = false;
    this._chain = Promise.resolve();   // heartbeats one at a time
    this._waiters = [];
    this._nonce = crypto.randomBytes(6).toString("hex");
  }

  // fn(step, externalState): the workspace was restored to `step`.
  onResume(fn) { this._onResume = fn; return fn; }

  get generation() { return this._gen; }
  get fenced() { return this._fenced || this._pending !== null || this._cancelled; }

  check() {
    if (this._cancelled) throw new Cancelled(this.taskId);
    if (this._fenced || this._pending !== null) throw new Fenced(this.taskId);
  }

  _notify() {
    const w = this._waiters;
    this._waiters = [];
    for (const f of w) f();
  }

  // -- attach / register ------------------------------------------------

  async _register() {
    const req = {
      taskId: this.taskId, totalSteps: this.totalSteps, heartbeatIntervalMs: this.heartbeatIntervalMs,
      heartbeatTimeoutMs: this.heartbeatTimeoutMs, workspace: this.workspace, sandboxId: this.sandboxId,
      labels: this.labels,
    };
    if (this.recoveryPolicy) req.recoveryPolicy = this.recoveryPolicy;
    const t = await this.client.tasks.RegisterTask(req);
    this._gen = t.recoveryGeneration;
    return t;
  }

  async _recover(t) {
    this._gen = t.acknowledgedGeneration;
    if (!t.lastCheckpointId) return t;
    try {
      return await this.client.tasks.RecoverTask({ taskId: this.taskId,
        reason: "agent restarted: resume from the latest checkpoint" });
    } catch (e) {
      if (!(e instanceof HarnessError) || e.code !== grpc.status.FAILED_PRECONDITION) throw e;
      return t; // already RECOVERING: join it
    }
  }

  async _attach(again = true) {
    let t = null;
    try {
      t = await this.client.tasks.GetTask({ taskId: this.taskId });
    } catch (e) {
      if (!(e instanceof HarnessError) || e.code !== grpc.status.NOT_FOUND) throw e;
    }
    try {
      if (t === null) return await this._register();
      const st = t.state;
      if (st === "TASK_STATE_COMPLETED" && !this.rerun) {
        this.alreadyCompleted = true;
        return t;
      }
      if (st === "TASK_STATE_CANCELLED" && !this.rerun) {
        throw new Cancelled(`${this.taskId}: the task was cancelled (${t.failureReason})`);
      }
      if (st === "TASK_STATE_COMPLETED" || st === "TASK_STATE_CANCELLED") return await this._register();
      if (st === "TASK_STATE_FAILED" && !t.lastCheckpointId) return await this._register();
      if (st === "TASK_STATE_RECOVERING") {
        this._gen = t.acknowledgedGeneration;
        return t;
      }
      return await this._recover(t);
    } catch (e) {
      if (e instanceof HarnessError && e.code === grpc.status.ALREADY_EXISTS && t === null && again) {
        return this._attach(false);
      }
      throw e;
    }
  }

  // Registers or attaches, then heartbeats. false: the task had COMPLETED.
  async start() {
    this.task = await this._attach();
    if (this.alreadyCompleted) return false;
    if (this.task.heartbeatIntervalMs > 0) this.heartbeatIntervalMs = this.task.heartbeatIntervalMs;
    this._running = true;
    this._tick();
    return true;
  }

  stop() {
    this._running = false;
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    return this._chain.catch(() => {});
  }

  _tick() {
    if (!this._running) return;
    this.heartbeat({ retry: false })
      .catch((e) => {
        if (e instanceof HarnessError && e.code === grpc.status.FAILED_PRECONDITION) {
          this._fatal = e;   // COMPLETED under us, or a generation the server never gave
          this._running = false;
          this._notify();
        }
        this.emit("heartbeatError", e);
      })
      .finally(() => {
        if (this._running) this._timer = setTimeout(() => this._tick(), this.heartbeatIntervalMs);
      });
  }

  // -- heartbeats ---------------------------------------------------------

  _serial(fn) {
    const p = this._chain.then(fn, fn);
    this._chain = p.catch(() => {});
    return p;
  }

  async _heartbeatNow(opts) {
    const gen = this._gen;
    const resp = await this.client.tasks.Heartbeat({ taskId: this.taskId, currentStep: this._step,
      recoveryGeneration: gen, details: this.details },
    { timeoutMs: Math.max(1000, Math.min(2 * this.heartbeatIntervalMs, 10000)), retry: opts.retry !== false });
    this._apply(resp, gen);
    this.emit("heartbeat", resp);
    return resp;
  }

  heartbeat(opts = {}) {
    return this._serial(() => this._heartbeatNow(opts));
  }

  _apply(resp, sentGen) {
    if (sentGen !== this._gen) return; // answers a generation this agent has moved past
    this._answered = true;
    switch (resp.instruction) {
      case "INSTRUCTION_CONTINUE":
        this._fenced = this._pending !== null;
        break;
      case "INSTRUCTION_RESUME_FROM_CHECKPOINT": {
        const g = resp.recoveryGeneration;
        if (g > this._gen && (this._pending === null || this._pending.generation < g)) {
          this._pending = { step: resp.resumeStep, checkpointId: resp.checkpointId,
            externalState: resp.externalState ? fromStruct(resp.externalState) : {},
            details: resp.details, generation: g };
        }
        this._fenced = true;
        break;
      }
      case "INSTRUCTION_CANCEL":
        this._cancelled = true;
        this._fenced = true;
        break;
      default: // WAIT
        this._fenced = true;
    }
    this._notify();
  }

  _waitRunnable() {
    return new Promise((resolve, reject) => {
      const test = () => {
        if (this._cancelled) return reject(new Cancelled(this.taskId));
        if (this._fatal) return reject(this._fatal);
        if (this._pending !== null) return resolve(this._pending);
        if (this._answered && !this._fenced) return resolve(null);
        this._waiters.push(test);
        return undefined;
      };
      test();
    });
  }

  async _resume(info) {
    if (this._onResume) await this._onResume(info.step, info.externalState);
    await this._serial(async () => {
      this._gen = info.generation;
      this._step = info.step;
      this._pending = null;
      this._fenced = true; // until the acknowledgement's reply
      await this._heartbeatNow({}); // the acknowledgement
    });
  }

  // -- checkpoints and completion -------------------------------------------

  async checkpoint(step, externalState, description = "") {
    await this.heartbeat();
    this.check();
    const gen = this._gen;
    let resp;
    try {
      resp = await this.client.checkpoints.CreateCheckpoint({
        taskId: this.taskId, step, description, externalState: toStruct(externalState || {}),
        workspace: this.workspace, requestId: `${this._nonce}-g${gen}-s${step}`,
        recoveryGeneration: gen,
      });
    } catch (e) {
      if (!(e instanceof HarnessError) || e.code !== grpc.status.FAILED_PRECONDITION) throw e;
      // Refused by the fence: a restore began after our heartbeat. The next
      // heartbeat tells us what to do (WAIT or RESUME).
      await this.heartbeat();
      if (this._fenced || this._pending !== null) throw new Fenced(this.taskId);
      throw e;
    }
    if (this._gen === gen) this._step = step;
    this.emit("checkpoint", resp.checkpoint);
    return resp.checkpoint;
  }

  complete(success = true, message = "") {
    return this.client.tasks.CompleteTask({ taskId: this.taskId, success, message: message.slice(0, 1000) });
  }

  // Runs await work(step) for step 1..totalSteps with heartbeats, a
  // checkpoint after every checkpointEvery steps (externalState: an object
  // or a function returning one), resumes as told, then CompleteTask.
  // Resolves to the number of steps this process ran.
  async run(work, opts = {}) {
    if (this.totalSteps <= 0) throw new RangeError("run() needs totalSteps > 0");
    const every = opts.checkpointEvery || 1;
    const describe = opts.description || ((s) => `step ${s}`);
    const complete = opts.complete !== false;
    if (!this._running && !(await this.start())) return 0;
    let ran = 0;
    try {
      let step = 1;
      while (step <= this.totalSteps) {
        const info = await this._waitRunnable();
        if (info !== null) {
          await this._resume(info);
          step = info.step + 1;
          continue;
        }
        try {
          try {
            await work(step);
          } catch (e) {
            if (!(e instanceof Fenced || e instanceof Cancelled || e instanceof HarnessError) && complete) {
              await this.complete(false, `step ${step}: ${e.message}`);
            }
            throw e;
          }
          ran++;
          this.check();
          if (step % every === 0 || step === this.totalSteps) {
            const st = typeof opts.externalState === "function" ? opts.externalState() : opts.externalState;
            await this.checkpoint(step, st, describe(step));
          } else {
            this._step = step;
          }
        } catch (e) {
          if (e instanceof Fenced) continue; // wait for the instruction and resume as told
          throw e;
        }
        step++;
      }
      if (complete) await this.complete(true, `${this.totalSteps} steps`);
      return ran;
    } finally {
      await this.stop();
    }
  }
}

module.exports = { Agent, Cancelled, Fenced };
