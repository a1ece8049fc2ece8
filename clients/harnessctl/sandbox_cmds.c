/* harnessctl sandbox <verb>: SandboxService. Every verb is the generic
 * flags -> request -> table path; only positional ids and columns here. */
#include "ctl.h"
#include "harness/v1/sandbox.pb-c.h"

#define SVC (&harness__v1__sandbox_service__descriptor)
#define SB_COLS "ID=sandbox_id STATE=state DRIVER=driver PID=pid TASK=task_id CREATED=created_at"
#define SNAP_COLS "SNAPSHOT=snapshot_id SANDBOX=sandbox_id TYPE=type SIZE=size_bytes CREATED=created_at"

const hs_ctl_cmd hs_ctl_sandbox_cmds[] = {
	{ "sandbox", "create", SVC, "CreateSandbox", { "?sandbox_id" },
	  "Record a sandbox (state CREATED); 'sandbox start' launches it.",
	  "  harnessctl sandbox create --driver bwrap --task-id t1 --entrypoint sh --entrypoint -c \\\n"
	  "      --entrypoint 'echo hi > hi.txt; sleep 60'\n"
	  "  harnessctl sandbox create sb-1 --driver firecracker --vcpu-count 2 --mem-size-mib 1024 \\\n"
	  "      --label team=ml --ttl-seconds 3600\n"
	  "  harnessctl sandbox create --json '{\"driver\":\"bwrap\",\"entrypoint\":[\"sleep\",\"60\"]}'\n",
	  NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "start", SVC, "StartSandbox", { "sandbox_id" }, "Launch a CREATED or STOPPED sandbox.",
	  "  harnessctl sandbox start sb-1\n", NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "get", SVC, "GetSandbox", { "sandbox_id" }, "Show one sandbox (every field).",
	  "  harnessctl sandbox get sb-1\n  harnessctl sandbox get sb-1 -o json\n", NULL, SB_COLS, HS_CTL_DETAIL,
	  NULL, { { 0 } } },
	{ "sandbox", "list", SVC, "ListSandboxes", { 0 }, "List sandboxes, newest first (one page).",
	  "  harnessctl sandbox list\n  harnessctl sandbox list --state running --task-id t1\n"
	  "  harnessctl sandbox list --label-selector team=ml --page-size 10\n",
	  "sandboxes", SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "pause", SVC, "PauseSandbox", { "sandbox_id" }, "Pause a RUNNING sandbox.",
	  "  harnessctl sandbox pause sb-1\n", NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "resume", SVC, "ResumeSandbox", { "sandbox_id" }, "Resume a PAUSED sandbox.",
	  "  harnessctl sandbox resume sb-1\n", NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "snapshot", SVC, "SnapshotSandbox", { "sandbox_id" },
	  "Take a VM memory snapshot (firecracker only).",
	  "  harnessctl sandbox snapshot sb-1 --snapshot-type diff --leave-paused\n", NULL, SNAP_COLS, 0, NULL,
	  { { 0 } } },
	{ "sandbox", "restore", SVC, "RestoreSandbox", { "sandbox_id", "?snapshot_id" },
	  "Load a snapshot into the sandbox (firecracker only; default its latest).",
	  "  harnessctl sandbox restore sb-1 snap-1a2b --resume\n", NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "destroy", SVC, "DestroySandbox", { "sandbox_id" },
	  "Stop the sandbox and remove its runtime files (idempotent).",
	  "  harnessctl sandbox destroy sb-1 --grace-period-ms 1000\n", NULL, SB_COLS, 0, NULL, { { 0 } } },
	{ "sandbox", "snapshots", SVC, "ListSnapshots", { "sandbox_id" }, "List a sandbox's snapshots.",
	  "  harnessctl sandbox snapshots sb-1\n", "snapshots", SNAP_COLS, 0, NULL, { { 0 } } },
	{ 0 },
};
