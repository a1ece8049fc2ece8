/* harnessctl task <verb> (HealthService: registration, heartbeats, watch,
 * recovery) and health [check|watch] (the standard grpc.health.v1.Health).
 * All generic except `health check`, whose exit code follows the serving
 * status, and the watch verbs, which stream (hs_ctl_run_stream). */
#include <string.h>

#include "ctl.h"
#include "grpc/health/v1/health.pb-c.h"
#include "harness/v1/health.pb-c.h"

#define SVC (&harness__v1__health_service__descriptor)
#define GSVC (&grpc__health__v1__health__descriptor)
#define TASK_COLS "TASK=task_id STATE=state STEP=current_step TOTAL=total_steps SANDBOX=sandbox_id " \
		  "CHECKPOINT=last_checkpoint_id LAST_HEARTBEAT=last_heartbeat_at"
#define EVENT_COLS "TIME=occurred_at EVENT=type TASK=task_id STEP=step CHECKPOINT=checkpoint_id " \
		   "STATE=state ATTEMPT=attempt MESSAGE=message"

/* health check: exit 0 only when SERVING (1 otherwise), like grpc_health_probe. */
static int run_health_check(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv)
{
	ProtobufCMessage *req = NULL, *resp = NULL;
	int rc = hs_ctl_request(c, cmd, argc, argv, &req);
	if (rc != HS_CTL_EXIT_OK || req == NULL)
		return rc;
	rc = hs_ctl_call(c, cmd->svc, cmd->method, req, &resp, HS_CTL_AUTH_NONE, NULL);
	if (rc == HS_CTL_EXIT_OK) {
		rc = hs_ctl_print(c, cmd, resp);
		if (rc == HS_CTL_EXIT_OK && ((Grpc__Health__V1__HealthCheckResponse *)resp)->status !=
						 GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
			rc = HS_CTL_EXIT_ERROR;
	}
	protobuf_c_message_free_unpacked(req, NULL);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}

const hs_ctl_cmd hs_ctl_task_cmds[] = {
	{ "task", "register", SVC, "RegisterTask", { "task_id" }, "Register a task (state RUNNING).",
	  "  harnessctl task register t1 --total-steps 10 --heartbeat-interval-ms 500 --heartbeat-timeout-ms 1500\n"
	  "  harnessctl task register t1 --sandbox-id sb-1 --recovery-policy.max-attempts 5 --label team=ml\n",
	  NULL, TASK_COLS, 0, NULL, { { 0 } } },
	{ "task", "heartbeat", SVC, "Heartbeat", { "task_id" },
	  "Report progress and liveness; prints what the agent must do next.",
	  "  harnessctl task heartbeat t1 --current-step 3 --cpu-usage 50 --memory-usage-mb 200\n", NULL,
	  "STATE=state INSTRUCTION=instruction RESUME_STEP=resume_step CHECKPOINT=checkpoint_id "
	  "NEXT_DEADLINE=next_heartbeat_deadline",
	  0, NULL, { { 0 } } },
	{ "task", "get", SVC, "GetTask", { "task_id" }, "Show one task (every field).",
	  "  harnessctl task get t1\n", NULL, TASK_COLS, HS_CTL_DETAIL, NULL, { { 0 } } },
	{ "task", "list", SVC, "ListTasks", { 0 }, "List tasks, most recently registered first (one page).",
	  "  harnessctl task list\n  harnessctl task list --state stalled\n", "tasks", TASK_COLS, 0, NULL,
	  { { 0 } } },
	{ "task", "watch", SVC, "WatchTasks", { "?task_id" },
	  "Stream task events as they happen until Ctrl-C (exit 0) or the server ends the stream.\n"
	  "With -o json: one JSON object per line.",
	  "  harnessctl task watch\n  harnessctl task watch t1 --send-initial\n"
	  "  harnessctl task watch --after-event-id 120 -o json\n",
	  NULL, EVENT_COLS, 0, hs_ctl_run_stream, { { 0 } } },
	{ "task", "complete", SVC, "CompleteTask", { "task_id" },
	  "Finish a task: COMPLETED with --success, else FAILED with --message as reason.",
	  "  harnessctl task complete t1 --success --message done\n"
	  "  harnessctl task complete t1 --success=false --message 'gave up'\n",
	  NULL, TASK_COLS, 0, NULL, { { 0 } } },
	{ "task", "recover", SVC, "RecoverTask", { "task_id" },
	  "Start a recovery from the latest checkpoint now.",
	  "  harnessctl task recover t1 --reason 'agent wedged'\n", NULL, TASK_COLS, 0, NULL, { { 0 } } },
	{ "task", "cancel", SVC, "CancelTask", { "task_id" }, "Cancel a task (state CANCELLED).",
	  "  harnessctl task cancel t1 --reason 'not needed'\n", NULL, TASK_COLS, 0, NULL, { { 0 } } },
	{ "health", "check", GSVC, "Check", { "?service" },
	  "Standard gRPC health check (grpc.health.v1.Health/Check; no token needed). Exit 0 only when\n"
	  "SERVING, 1 when NOT_SERVING, 3 for an unknown service. 'harnessctl health' = 'health check'.",
	  "  harnessctl health\n  harnessctl health --service harness.v1.CheckpointService\n", NULL,
	  "STATUS=status", HS_CTL_NOAUTH, run_health_check, { { 0 } } },
	{ "health", "watch", GSVC, "Watch", { "?service" },
	  "Stream serving-status changes (grpc.health.v1.Health/Watch) until Ctrl-C.",
	  "  harnessctl health watch\n", NULL, "STATUS=status", HS_CTL_NOAUTH, hs_ctl_run_stream, { { 0 } } },
	{ 0 },
};
