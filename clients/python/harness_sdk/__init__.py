"""Harness agent SDK: add Harness to an agent in a dozen lines.

    from harness_sdk import Client, Agent

    client = Client("127.0.0.1:50051", api_key=os.environ["HARNESS_TOKEN"])
    agent = Agent(client, "my-task", total_steps=10)
    state = {"done": []}

    @agent.on_resume
    def resume(step, external_state):      # the workspace was restored to `step`
        state.clear(); state.update(external_state)

    def work(step):                         # do step `step` in the workspace
        state["done"].append(step)

    agent.run(work, external_state=lambda: state)   # checkpoint after each step

Client: credentials (API key, token, or email/password with refresh), TLS,
deadlines on every call, retries with backoff on UNAVAILABLE.
Agent: RegisterTask (or attach to the task after a restart), a heartbeat
thread carrying the fencing generation, RESUME_FROM_CHECKPOINT handled by
stopping work, calling the resume callback and acknowledging, checkpoints
with a request_id (idempotent retries), CompleteTask.
"""
from .client import Client, HarnessError
from .agent import Agent, Cancelled, Fenced, ResumeInfo

__all__ = ["Client", "HarnessError", "Agent", "Cancelled", "Fenced", "ResumeInfo"]
__version__ = "0.1.0"
