/* harnessctl checkpoint <verb>: CheckpointService through the generic path;
 * only positional ids and columns here. */
#include "ctl.h"
#include "harness/v1/checkpoint.pb-c.h"

#define SVC (&harness__v1__checkpoint_service__descriptor)
#define CP_COLS "ID=checkpoint_id TASK=task_id STEP=step FILES=files_changed CREATED=created_at DESCRIPTION=description"

const hs_ctl_cmd hs_ctl_checkpoint_cmds[] = {
	{ "checkpoint", "create", SVC, "CreateCheckpoint", { "task_id" },
	  "Checkpoint the task's workspace (a git commit in its shadow repository).",
	  "  harnessctl checkpoint create t1 --step 3 --description 'tests pass' \\\n"
	  "      --external-state '{\"pr\":42,\"issues\":[\"A-1\"]}'\n"
	  "  harnessctl checkpoint create t1 --step 4 --recovery-generation 2   # fenced: refused if stale\n",
	  NULL,
	  "ID=checkpoint.checkpoint_id TASK=checkpoint.task_id STEP=checkpoint.step "
	  "FILES=checkpoint.files_changed UNCHANGED=unchanged COMMIT=checkpoint.commit",
	  0, NULL, { { 0 } } },
	{ "checkpoint", "list", SVC, "ListCheckpoints", { "task_id" }, "List a task's checkpoints, newest first.",
	  "  harnessctl checkpoint list t1\n  harnessctl checkpoint list t1 --before-step 5 --page-size 20\n",
	  "checkpoints", CP_COLS, 0, NULL, { { 0 } } },
	{ "checkpoint", "get", SVC, "GetCheckpoint", { "task_id", "checkpoint_id" }, "Show one checkpoint.",
	  "  harnessctl checkpoint get t1 ckpt-3-1a2b3c4d5e6f\n", NULL, CP_COLS, HS_CTL_DETAIL, NULL, { { 0 } } },
	{ "checkpoint", "latest", SVC, "GetLatestCheckpoint", { "task_id" }, "Show the task's newest checkpoint.",
	  "  harnessctl checkpoint latest t1 -o json\n", NULL, CP_COLS, HS_CTL_DETAIL, NULL, { { 0 } } },
	{ "checkpoint", "restore", SVC, "RestoreCheckpoint", { "task_id", "checkpoint_id" },
	  "Make the workspace match a checkpoint exactly (untracked files removed).",
	  "  harnessctl checkpoint restore t1 ckpt-3-1a2b3c4d5e6f\n", NULL,
	  "ID=checkpoint.checkpoint_id STEP=checkpoint.step RESTORED=files_restored REMOVED=files_removed", 0,
	  NULL, { { 0 } } },
	{ "checkpoint", "verify", SVC, "VerifyConsistency", { "task_id", "?checkpoint_id" },
	  "Compare the workspace with a checkpoint (default the latest). Exit 0 either way; see CONSISTENT.",
	  "  harnessctl checkpoint verify t1\n  harnessctl checkpoint verify t1 -o json | jq .consistent\n", NULL,
	  "CONSISTENT=consistent CHECKPOINT=checkpoint_id ADDED=added MODIFIED=modified DELETED=deleted", 0,
	  NULL, { { 0 } } },
	{ "checkpoint", "diff", SVC, "DiffCheckpoints", { "task_id", "?from_checkpoint_id", "?to_checkpoint_id" },
	  "List files that differ between two checkpoints (default: the latest and its parent).",
	  "  harnessctl checkpoint diff t1\n  harnessctl checkpoint diff t1 ckpt-1-0a1b2c3d4e5f ckpt-3-1a2b3c4d5e6f\n", "files",
	  "STATUS=status PATH=path OLD_PATH=old_path ADDED=additions DELETED=deletions BINARY=binary", 0, NULL,
	  { { 0 } } },
	{ "checkpoint", "prune", SVC, "PruneCheckpoints", { "task_id" },
	  "Delete all but the newest --keep-last checkpoints.",
	  "  harnessctl checkpoint prune t1 --keep-last 5 --dry-run\n", NULL,
	  "PRUNED=pruned_count KEPT=kept_count IDS=pruned_checkpoint_ids", 0, NULL, { { 0 } } },
	{ 0 },
};
