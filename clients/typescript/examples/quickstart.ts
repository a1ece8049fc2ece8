// The dozen lines that add Harness to a TypeScript agent (type-checked in
// CI with tsc --strict against index.d.ts). The workspace is
// <workspace-root>/<task id> on the harnessd host.
import { Agent, Client } from "harness-sdk";

async function main(): Promise<void> {
  const client = new Client(process.env.HARNESS_SERVER ?? "127.0.0.1:50051", { apiKey: process.env.HARNESS_TOKEN });
  const agent = new Agent(client, "quickstart", { totalSteps: 10, heartbeatIntervalMs: 1000 });
  let state: { done: number[] } = { done: [] };

  agent.onResume((step, externalState) => {        // the workspace was restored to `step`
    state = { done: (externalState.done as number[]) ?? [] };
  });

  await agent.run(async (step) => {                // do step `step`; agent.check() inside long steps
    state.done.push(step);
  }, { externalState: () => state });              // a checkpoint after each step
  client.close();
}

main().catch((e: unknown) => { console.error(e); process.exitCode = 1; });
