#!/usr/bin/env node
// Example agent: N steps, each writing step-<n>.txt into the task
// workspace, a checkpoint after every step carrying the running state.
// Kill it (kill -9) and start it again with the same task id: it resumes
// after the last checkpoint, with its state, and never redoes a
// checkpointed step.
//
//   node counter-agent.js --server 127.0.0.1:50051 --task-id demo-1 \
//       --workspace-dir /var/lib/harness/workspaces/demo-1 --steps 10
//
// Credentials: HARNESS_TOKEN (access token or API key), or HARNESS_EMAIL +
// HARNESS_PASSWORD. --journal FILE appends one JSON line per event.
"use strict";
const fs = require("fs");
const path = require("path");
const { parseArgs } = require("util");
const { Client, Agent, Cancelled } = require("harness-sdk");

async function main() {
  const { values: a } = parseArgs({ options: {
    server: { type: "string", default: process.env.HARNESS_SERVER || "127.0.0.1:50051" },
    "task-id": { type: "string" }, "workspace-dir": { type: "string" },
    steps: { type: "string", default: "10" }, "step-seconds": { type: "string", default: "0.5" },
    "heartbeat-interval": { type: "string", default: "0.5" }, "heartbeat-timeout": { type: "string", default: "2" },
    "tls-ca": { type: "string" }, journal: { type: "string" },
  } });
  const log = (event, kw = {}) => {
    if (a.journal) fs.appendFileSync(a.journal, JSON.stringify({ ...kw, event, pid: process.pid, t: Date.now() / 1000 }) + "\n");
  };
  const client = new Client(a.server, { token: process.env.HARNESS_TOKEN, email: process.env.HARNESS_EMAIL,
    password: process.env.HARNESS_PASSWORD, tlsCa: a["tls-ca"] });
  if (!process.env.HARNESS_TOKEN) await client.login();
  const agent = new Agent(client, a["task-id"], { totalSteps: Number(a.steps),
    heartbeatIntervalMs: Math.round(Number(a["heartbeat-interval"]) * 1000),
    heartbeatTimeoutMs: Math.round(Number(a["heartbeat-timeout"]) * 1000),
    recoveryPolicy: { initialBackoffMs: 100, maxAttempts: 5 } });
  let state = { sum: 0, done: [] };

  agent.onResume((step, ext) => {
    state = { sum: Number(ext.sum || 0), done: (ext.done || []).map(Number) };
    log("resume", { step, state });
  });
  agent.on("heartbeat", (r) => log("instruction", { instruction: r.instruction, gen: r.recoveryGeneration,
    resume_step: r.resumeStep }));
  agent.on("checkpoint", (cp) => log("checkpoint", { step: cp.step, id: cp.checkpointId }));

  const work = async (step) => {
    log("step-start", { step });
    const file = path.join(a["workspace-dir"], `step-${step}.txt`);
    fs.mkdirSync(a["workspace-dir"], { recursive: true });
    fs.writeFileSync(file, "partial\n");
    await new Promise((r) => setTimeout(r, Number(a["step-seconds"]) * 1000));
    agent.check(); // stop here if the workspace was restored meanwhile
    fs.writeFileSync(file, `done ${step}\n`);
    state.sum += step;
    state.done.push(step);
    log("step-done", { step });
  };

  try {
    await agent.run(work, { externalState: () => state });
  } catch (e) {
    if (e instanceof Cancelled) {
      log("cancelled", { message: e.message });
      return 3;
    }
    throw e;
  } finally {
    client.close();
  }
  log("completed", { state });
  console.log(JSON.stringify(state));
  return 0;
}

main().then((code) => { process.exitCode = code; }, (e) => { console.error(e); process.exitCode = 1; });
