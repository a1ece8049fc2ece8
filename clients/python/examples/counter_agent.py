#!/usr/bin/env python3
"""Example agent: N steps, each writing step-<n>.txt into the task
workspace, a checkpoint after every step carrying the running state. Kill
it (kill -9) and start it again with the same task id: it resumes after
the last checkpoint, with its state, and never redoes a checkpointed step.

    python3 counter_agent.py --server 127.0.0.1:50051 --task-id demo-1 \\
        --workspace-dir /var/lib/harness/workspaces/demo-1 --steps 10

Credentials: HARNESS_TOKEN (an access token or an API key hsk_...), or
HARNESS_EMAIL + HARNESS_PASSWORD. --journal FILE appends one JSON line per
event (steps, checkpoints, heartbeat instructions, resumes) for tests.
"""
import argparse
import json
import os
import sys
import time

from harness_sdk import Agent, Cancelled, Client
from harness_sdk._gen.harness.v1 import health_pb2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("HARNESS_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--task-id", required=True)
    ap.add_argument("--workspace-dir", required=True, help="the task workspace on this machine")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--step-seconds", type=float, default=0.5)
    ap.add_argument("--heartbeat-interval", type=float, default=0.5)
    ap.add_argument("--heartbeat-timeout", type=float, default=2.0)
    ap.add_argument("--tls-ca")
    ap.add_argument("--journal")
    a = ap.parse_args()

    journal = open(a.journal, "a", buffering=1) if a.journal else None

    def log(event, **kw):
        if journal:
            journal.write(json.dumps(dict(kw, event=event, pid=os.getpid(), t=time.time())) + "\n")

    client = Client(a.server, token=os.environ.get("HARNESS_TOKEN"), email=os.environ.get("HARNESS_EMAIL"),
                    password=os.environ.get("HARNESS_PASSWORD"), tls_ca=a.tls_ca)
    if not os.environ.get("HARNESS_TOKEN"):
        client.login()
    agent = Agent(client, a.task_id, total_steps=a.steps, heartbeat_interval=a.heartbeat_interval,
                  heartbeat_timeout=a.heartbeat_timeout,
                  recovery_policy={"initial_backoff_ms": 100, "max_attempts": 5})
    state = {"sum": 0, "done": []}

    @agent.on_resume
    def resume(step, external_state):
        state.clear()
        state.update({"sum": int(external_state.get("sum", 0)),
                      "done": [int(x) for x in external_state.get("done", [])]})
        log("resume", step=step, state=state)

    agent.on_heartbeat = lambda r: log("instruction", instruction=health_pb2.Instruction.Name(r.instruction),
                                       gen=r.recovery_generation, resume_step=r.resume_step)

    def work(step):
        log("step-start", step=step)
        path = os.path.join(a.workspace_dir, "step-%d.txt" % step)
        os.makedirs(a.workspace_dir, exist_ok=True)
        with open(path, "w") as f:
            f.write("partial\n")
        time.sleep(a.step_seconds)
        agent.check()  # stop here if the workspace was restored meanwhile
        with open(path, "w") as f:
            f.write("done %d\n" % step)
        state["sum"] += step
        state["done"].append(step)
        log("step-done", step=step)

    agent.on_checkpoint = lambda cp: log("checkpoint", step=cp.step, id=cp.checkpoint_id)

    try:
        agent.run(work, external_state=lambda: state)
    except Cancelled as e:
        log("cancelled", message=str(e))
        return 3
    log("completed", state=state)
    print(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
