/* harnessctl task <verb> (HealthService: registration, heartbeats, watch,
 * recovery) and health [check|watch] (the standard grpc.health.v1.Health).
 * All generic except `health check`, whose exit code follows the serving
 * status, `task watch`, which reconnects, and `health watch`, which streams
 * (hs_ctl_run_stream). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "grpc/health/v1/health.pb-c.h"
#include "harness/v1/health.pb-c.h"

#define SVC (&harness__v1__health_service__descriptor)
#define GSVC (&grpc__health__v1__health__descriptor)
#define TASK_COLS "TASK=task_id STATE=state STEP=current_step TOTAL=total_steps SANDBOX=sandbox_id " \
		  "CHECKPOINT=last_checkpoint_id GEN=recovery_generation LAST_HEARTBEAT=last_heartbeat_at"
#define EVENT_COLS "TIME=occurred_at EVENT=type TASK=task_id STEP=step CHECKPOINT=checkpoint_id " \
		   "STATE=state ATTEMPT=attempt GEN=recovery_generation MESSAGE=message"
#define GRPC_UNAVAILABLE 14
#define RECONNECT_MIN_MS 200
#define RECONNECT_MAX_MS 5000

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

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* One connection of task watch: prints events newer than *last (raising
 * it) until the stream ends. *again: reconnect (the server went away or
 * the stream fell behind: EVENTS_DROPPED); else rc is the exit code. */
static int watch_once(hs_ctl *c, const hs_ctl_cmd *cmd, Harness__V1__WatchTasksRequest *req,
		      uint64_t *last, bool *header, bool *again)
{
	hs_client_stream *s = NULL;
	hs_client_status st;
	*again = false;
	int rc = hs_ctl_stream(c, cmd->svc, cmd->method, &req->base, &s, &st);
	if (rc != HS_CTL_EXIT_OK) {
		*again = st.code == GRPC_UNAVAILABLE && !hs_ctl_signals_interrupted();
		return hs_ctl_signals_interrupted() ? HS_CTL_EXIT_OK : rc;
	}
	hs_ctl_signals_watch(s);
	for (;;) {
		ProtobufCMessage *msg = NULL;
		int r = hs_client_stream_next(s, &msg, &st);
		if (r != HS_OK) {
			char path[160];
			snprintf(path, sizeof(path), "%s/%s", cmd->svc->name, cmd->method);
			if (hs_ctl_signals_interrupted()) {
				rc = HS_CTL_EXIT_OK;
			} else if (st.code == GRPC_UNAVAILABLE) {
				*again = true;
				fprintf(stderr, "%s: task watch: %s; reconnecting after event %llu\n", c->prog,
					st.details[0] ? st.details : "server unavailable",
					(unsigned long long)*last);
			} else {
				rc = hs_ctl_report_status(c, path, r, &st);
			}
			break;
		}
		if (msg == NULL) {
			rc = HS_CTL_EXIT_OK; /* the server ended the stream */
			break;
		}
		Harness__V1__TaskEvent *ev = (Harness__V1__TaskEvent *)msg;
		if (ev->type == HARNESS__V1__TASK_EVENT_TYPE__TASK_EVENT_TYPE_EVENTS_DROPPED) {
			/* Fell behind: the store has what was dropped; replay it. */
			protobuf_c_message_free_unpacked(msg, NULL);
			*again = true;
			break;
		}
		bool initial = ev->type == HARNESS__V1__TASK_EVENT_TYPE__TASK_EVENT_TYPE_INITIAL_STATE;
		if (initial || ev->event_id > *last) { /* never the same event twice */
			hs_ctl_print_stream_msg(c, cmd, msg, *header);
			*header = false;
			fflush(stdout);
		}
		if (ev->event_id > *last)
			*last = ev->event_id;
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	hs_ctl_signals_watch(NULL);
	hs_client_stream_free(s);
	return rc;
}

/* task watch: streams events until Ctrl-C (exit 0) or the server ends the
 * stream. When the server goes away (UNAVAILABLE: restart, shutdown) or
 * the stream falls behind (EVENTS_DROPPED), it reconnects with
 * after_event_id = the highest event id shown, so stored events are
 * replayed and none is shown twice. Only before the first event is seen
 * can a reconnect miss events (pass --after-event-id to close that gap). */
static int run_task_watch(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv)
{
	ProtobufCMessage *msg = NULL;
	int rc = hs_ctl_request(c, cmd, argc, argv, &msg);
	if (rc != HS_CTL_EXIT_OK || msg == NULL)
		return rc;
	Harness__V1__WatchTasksRequest *req = (Harness__V1__WatchTasksRequest *)msg;
	hs_ctl_signals_exit_status(0); /* interrupting a watch is its normal end */
	uint64_t last = req->after_event_id;
	bool header = true, again = false;
	long delay = RECONNECT_MIN_MS;
	for (;;) {
		uint64_t before = last;
		rc = watch_once(c, cmd, req, &last, &header, &again);
		if (!again || hs_ctl_signals_interrupted())
			break;
		req->send_initial = false; /* initial states once, then events */
		req->after_event_id = last;
		delay = last > before ? RECONNECT_MIN_MS : delay;
		sleep_ms(delay);
		delay = delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay * 2;
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	return hs_ctl_signals_interrupted() ? HS_CTL_EXIT_OK : rc;
}

const hs_ctl_cmd hs_ctl_task_cmds[] = {
	{ "task", "register", SVC, "RegisterTask", { "task_id" }, "Register a task (state RUNNING).",
	  "  harnessctl task register t1 --total-steps 10 --heartbeat-interval-ms 500 --heartbeat-timeout-ms 1500\n"
	  "  harnessctl task register t1 --sandbox-id sb-1 --recovery-policy.max-attempts 5 --label team=ml\n",
	  NULL, TASK_COLS, 0, NULL, { { 0 } } },
	{ "task", "heartbeat", SVC, "Heartbeat", { "task_id" },
	  "Report progress and liveness; prints what the agent must do next.",
	  "  harnessctl task heartbeat t1 --current-step 3 --cpu-usage 50 --memory-usage-mb 200\n"
	  "  harnessctl task heartbeat t1 --current-step 2 --recovery-generation 1   # acknowledge a resume\n",
	  NULL,
	  "STATE=state INSTRUCTION=instruction RESUME_STEP=resume_step CHECKPOINT=checkpoint_id "
	  "GEN=recovery_generation NEXT_DEADLINE=next_heartbeat_deadline",
	  0, NULL, { { 0 } } },
	{ "task", "get", SVC, "GetTask", { "task_id" }, "Show one task (every field).",
	  "  harnessctl task get t1\n", NULL, TASK_COLS, HS_CTL_DETAIL, NULL, { { 0 } } },
	{ "task", "list", SVC, "ListTasks", { 0 }, "List tasks, most recently registered first (one page; --all for every page).",
	  "  harnessctl task list\n  harnessctl task list --state stalled\n", "tasks", TASK_COLS, 0, NULL,
	  { { 0 } } },
	{ "task", "watch", SVC, "WatchTasks", { "?task_id" },
	  "Stream task events as they happen until Ctrl-C (exit 0) or the server ends the stream.\n"
	  "Reconnects when the server restarts or the stream falls behind, replaying from the last\n"
	  "event shown (after_event_id): no event is shown twice. With -o json: one JSON object per line.",
	  "  harnessctl task watch\n  harnessctl task watch t1 --send-initial\n"
	  "  harnessctl task watch --after-event-id 120 -o json\n",
	  NULL, EVENT_COLS, 0, run_task_watch, { { 0 } } },
	{ "task", "complete", SVC, "CompleteTask", { "task_id" },
	  "Finish a task: COMPLETED with --success, else FAILED with --message as reason.",
	  "  harnessctl task complete t1 --success --message done\n"
	  "  harnessctl task complete t1 --success=false --message 'gave up'\n",
	  NULL, TASK_COLS, 0, NULL, { { 0 } } },
	{ "task", "recover", SVC, "RecoverTask", { "task_id" },
	  "Start a recovery from the latest checkpoint now (a new recovery generation).",
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
