/* harnessctl demo: the harness story end to end against a running server.
 *
 *   log in -> create a bwrap sandbox for task T whose script writes
 *   step1.txt..step3.txt into T's workspace (then a half-done step4.partial)
 *   -> register T with a 1.5 s heartbeat timeout -> start the sandbox (which
 *   creates the workspace) -> baseline checkpoint (step 0) -> while heartbeating, checkpoint each step
 *   as its file appears (VerifyConsistency shows what is new) -> wait for the
 *   script to finish -> stop heartbeating (the agent "crashes") -> watch T:
 *   TIMEOUT -> RECOVERY_STARTED (recovery generation 1: the agent is fenced)
 *   -> WORKSPACE_RESTORED -> the restarted agent's heartbeat (generation 0)
 *   is told RESUME_FROM_CHECKPOINT with the checkpoint's step and
 *   external_state, and told so again if it asks again, never CONTINUE ->
 *   it acknowledges generation 1 -> RECOVERED -> verify the workspace
 *   equals the checkpoint -> complete T, destroy the sandbox.
 *
 * Exit 0 only if the RECOVERED event arrived and the workspace is
 * consistent. Events are read by a thread into a queue so the main thread
 * can heartbeat while it waits. The sandbox is deliberately not attached to
 * the task (RegisterTask.sandbox_id): recovery would restart it, and the
 * rerun script would race the verification. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "harness/v1/auth.pb-c.h"
#include "harness/v1/checkpoint.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "harness/v1/sandbox.pb-c.h"
#include "pbjson.h"

#define AUTH (&harness__v1__auth_service__descriptor)
#define SBX (&harness__v1__sandbox_service__descriptor)
#define CKPT (&harness__v1__checkpoint_service__descriptor)
#define HLTH (&harness__v1__health_service__descriptor)
#define STEPS 3 /* steps the sandbox completes before the "crash" */
#define TOTAL 4 /* the task's steps: it dies during step 4 */
#define SCRIPT                                                                          \
	"sleep 1; for i in 1 2 3; do echo \"step $i done\" > step$i.txt; sleep 0.5; done; " \
	"echo 'half-written' > step4.partial"

typedef struct demo {
	hs_ctl *c;
	struct timespec t0;
	char task[80];
	char sandbox[80];
	bool registered, completed;
	int64_t done; /* last checkpointed step */
	int64_t gen;  /* the recovery generation the agent acknowledged */
	char last_cp[160];
	/* event queue filled by the watch thread */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	Harness__V1__TaskEvent *q[64];
	int qn;
	bool stream_over;
	hs_client_status stream_st;
	int stream_rc;
	hs_client_stream *stream;
} demo;

static void say(demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(demo *d, const char *fmt, ...)
{
	struct timespec now;
	va_list ap;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double t = (double)(now.tv_sec - d->t0.tv_sec) + (double)(now.tv_nsec - d->t0.tv_nsec) / 1e9;
	printf("[%6.2fs] ", t);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Calls svc/method with a request given as JSON (steals j). Reports
 * UNIMPLEMENTED as a missing service. */
static int call(demo *d, const ProtobufCServiceDescriptor *svc, const char *method, json_t *j,
		ProtobufCMessage **resp, hs_ctl_auth auth)
{
	const ProtobufCMethodDescriptor *m = hs_ctl_method(svc, method);
	ProtobufCMessage *req = NULL;
	hs_client_status st;
	hs_error err = { 0 };
	if (j == NULL || hs_pbjson_decode(&req, m->input, j, NULL, &err) != HS_OK) {
		fprintf(stderr, "demo: internal error building %s: %s\n", method, err.msg);
		json_decref(j);
		return HS_CTL_EXIT_ERROR;
	}
	json_decref(j);
	*resp = NULL;
	int rc = hs_ctl_call(d->c, svc, method, req, resp, auth, &st);
	protobuf_c_message_free_unpacked(req, NULL);
	if (rc != 0 && st.code == 12)
		fprintf(stderr, "demo: %s is not implemented by the server at %s; the demo needs AuthService, "
				"SandboxService, CheckpointService and HealthService\n",
			svc->name, d->c->server);
	return rc;
}

static void drop(ProtobufCMessage *m)
{
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- watch thread ------------------------------------------------------ */

static void *watch_main(void *arg)
{
	demo *d = arg;
	for (;;) {
		ProtobufCMessage *m = NULL;
		hs_client_status st = { 0 };
		int rc = hs_client_stream_next(d->stream, &m, &st);
		pthread_mutex_lock(&d->mu);
		if (rc != HS_OK || m == NULL) {
			d->stream_over = true;
			d->stream_rc = rc;
			d->stream_st = st;
		} else if (d->qn < (int)(sizeof(d->q) / sizeof(d->q[0]))) {
			d->q[d->qn++] = (Harness__V1__TaskEvent *)m;
		} else {
			drop(m);
		}
		pthread_cond_signal(&d->cv);
		bool over = d->stream_over;
		pthread_mutex_unlock(&d->mu);
		if (over)
			return NULL;
	}
}

/* Next event within wait_s; NULL on timeout or end of stream. */
static Harness__V1__TaskEvent *next_event(demo *d, double wait_s, bool *over)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	long ns = dl.tv_nsec + (long)(wait_s * 1e9);
	dl.tv_sec += ns / 1000000000L;
	dl.tv_nsec = ns % 1000000000L;
	Harness__V1__TaskEvent *ev = NULL;
	pthread_mutex_lock(&d->mu);
	while (d->qn == 0 && !d->stream_over)
		if (pthread_cond_timedwait(&d->cv, &d->mu, &dl) != 0)
			break;
	if (d->qn > 0) {
		ev = d->q[0];
		memmove(d->q, d->q + 1, (size_t)(d->qn - 1) * sizeof(d->q[0]));
		d->qn--;
	}
	*over = d->stream_over && d->qn == 0 && ev == NULL;
	pthread_mutex_unlock(&d->mu);
	return ev;
}

/* ---- steps ------------------------------------------------------------- */

static int heartbeat(demo *d, Harness__V1__HeartbeatResponse **out)
{
	ProtobufCMessage *r = NULL;
	int rc = call(d, HLTH, "Heartbeat",
		      json_pack("{s:s, s:I, s:I, s:I}", "task_id", d->task, "current_step", (json_int_t)d->done,
				"total_steps", (json_int_t)TOTAL, "recovery_generation", (json_int_t)d->gen),
		      &r, HS_CTL_AUTH_REQUIRED);
	if (rc == 0 && out != NULL)
		*out = (Harness__V1__HeartbeatResponse *)r;
	else
		drop(r);
	return rc;
}

static int checkpoint(demo *d, int64_t step, const char *desc)
{
	ProtobufCMessage *r = NULL;
	int rc = call(d, CKPT, "CreateCheckpoint",
		      json_pack("{s:s, s:I, s:s, s:{s:I, s:s}}", "task_id", d->task, "step", (json_int_t)step,
				"description", desc, "external_state", "step", (json_int_t)step, "agent",
				"harnessctl demo"),
		      &r, HS_CTL_AUTH_REQUIRED);
	if (rc != 0)
		return rc;
	Harness__V1__CreateCheckpointResponse *cr = (Harness__V1__CreateCheckpointResponse *)r;
	if (cr->checkpoint != NULL) {
		snprintf(d->last_cp, sizeof(d->last_cp), "%s", cr->checkpoint->checkpoint_id);
		say(d, "checkpoint %s: step %lld, %u file(s) changed%s (%s)", cr->checkpoint->checkpoint_id,
		    (long long)step, cr->checkpoint->files_changed, cr->unchanged ? ", unchanged" : "", desc);
	}
	d->done = step;
	drop(r);
	return 0;
}

/* Highest N of the stepN.txt files the workspace has beyond the latest
 * checkpoint; 0 when none. Prints the other differences when show. */
static int new_step(demo *d, int64_t *out, bool show, bool *consistent)
{
	ProtobufCMessage *r = NULL;
	int rc = call(d, CKPT, "VerifyConsistency", json_pack("{s:s}", "task_id", d->task), &r,
		      HS_CTL_AUTH_REQUIRED);
	if (rc != 0)
		return rc;
	Harness__V1__VerifyConsistencyResponse *v = (Harness__V1__VerifyConsistencyResponse *)r;
	*out = 0;
	for (size_t i = 0; i < v->n_added; i++) {
		int n = 0;
		char tail[8] = "";
		if (sscanf(v->added[i], "step%d.tx%1s", &n, tail) == 2 && strcmp(tail, "t") == 0 && n > *out)
			*out = n;
	}
	if (consistent != NULL)
		*consistent = v->consistent;
	if (show) {
		for (size_t i = 0; i < v->n_added; i++)
			say(d, "  workspace has a file not in checkpoint %s: %s", v->checkpoint_id, v->added[i]);
		for (size_t i = 0; i < v->n_modified; i++)
			say(d, "  workspace file modified since checkpoint %s: %s", v->checkpoint_id, v->modified[i]);
		for (size_t i = 0; i < v->n_deleted; i++)
			say(d, "  workspace file deleted since checkpoint %s: %s", v->checkpoint_id, v->deleted[i]);
	}
	drop(r);
	return 0;
}

static int sandbox_state(demo *d, int *state, char *why, size_t n)
{
	ProtobufCMessage *r = NULL;
	int rc = call(d, SBX, "GetSandbox", json_pack("{s:s}", "sandbox_id", d->sandbox), &r,
		      HS_CTL_AUTH_REQUIRED);
	if (rc != 0)
		return rc;
	Harness__V1__Sandbox *s = (Harness__V1__Sandbox *)r;
	*state = s->state;
	snprintf(why, n, "%s%s%s", s->failure_reason, *s->log_path ? "; log: " : "", s->log_path);
	drop(r);
	return 0;
}

static const char *short_enum(const ProtobufCEnumDescriptor *ed, int v)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
	return ev ? ev->name + hs_ctl_enum_prefix(ed) : "?";
}

static int login(demo *d, const char *email, const char *password)
{
	ProtobufCMessage *r = NULL;
	if (email != NULL && password != NULL) {
		int rc = call(d, AUTH, "Login", json_pack("{s:s, s:s}", "email", email, "password", password),
			      &r, HS_CTL_AUTH_NONE);
		if (rc != 0)
			return rc;
		Harness__V1__AuthResponse *a = (Harness__V1__AuthResponse *)r;
		free(d->c->token);
		d->c->token = strdup(a->access_token);
		d->c->token_resolved = true;
		say(d, "logged in as %s (role %s)", a->user ? a->user->email : email, a->user ? a->user->role : "?");
		drop(r);
		return 0;
	}
	if (hs_ctl_token(d->c) == NULL) {
		fprintf(stderr, "demo: no credentials: pass --email and --password, set HARNESS_ADMIN_EMAIL and "
				"HARNESS_ADMIN_PASSWORD, or log in first ('harnessctl login')\n");
		return HS_CTL_EXIT_AUTH;
	}
	int rc = call(d, AUTH, "WhoAmI", json_object(), &r, HS_CTL_AUTH_REQUIRED);
	if (rc != 0)
		return rc;
	Harness__V1__User *u = (Harness__V1__User *)r;
	say(d, "using the current token of %s (role %s)", u->email, u->role);
	drop(r);
	return 0;
}

/* Heartbeats, checkpointing each new step, until STEPS are checkpointed
 * and the sandbox's script has finished. */
static int run_steps(demo *d)
{
	double deadline = now_s() + 60;
	bool finished = false;
	int rc;
	while (!(d->done >= STEPS && finished)) {
		if (hs_ctl_signals_interrupted())
			return HS_CTL_EXIT_ERROR;
		if (now_s() > deadline) {
			fprintf(stderr, "demo: the sandbox did not write its steps within 60 s\n");
			return HS_CTL_EXIT_ERROR;
		}
		if ((rc = heartbeat(d, NULL)) != 0)
			return rc;
		int64_t n = 0;
		if (d->done < STEPS) {
			if ((rc = new_step(d, &n, false, NULL)) != 0)
				return rc;
			if (n > d->done) {
				char desc[64];
				snprintf(desc, sizeof(desc), "step %lld done", (long long)n);
				say(d, "sandbox wrote step%lld.txt", (long long)n);
				if ((rc = checkpoint(d, n, desc)) != 0)
					return rc;
				if ((rc = heartbeat(d, NULL)) != 0)
					return rc;
				say(d, "heartbeat: step %lld/%d", (long long)d->done, TOTAL);
			}
		}
		int st = 0;
		char why[600];
		if ((rc = sandbox_state(d, &st, why, sizeof(why))) != 0)
			return rc;
		bool stopped = st == HARNESS__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED;
		if (stopped && d->done < STEPS) {
			/* Ended: anything it wrote is visible now; nothing new means it died early. */
			if ((rc = new_step(d, &n, false, NULL)) != 0)
				return rc;
		}
		if (st == HARNESS__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED ||
		    st == HARNESS__V1__SANDBOX_STATE__SANDBOX_STATE_DESTROYED ||
		    (stopped && d->done < STEPS && n <= d->done)) {
			fprintf(stderr, "demo: the sandbox ended (%s) before writing all steps: %s\n",
				short_enum(&harness__v1__sandbox_state__descriptor, st), why);
			return HS_CTL_EXIT_ERROR;
		}
		if (st == HARNESS__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED && !finished && d->done >= STEPS) {
			finished = true;
			say(d, "sandbox script finished; it died during step 4, leaving a half-written step4.partial");
		}
		usleep(250 * 1000);
	}
	return 0;
}

/* Stops heartbeating and follows the task's events through recovery. */
static int watch_recovery(demo *d, bool *recovered, int64_t *resume_step, char *cp, size_t cpn)
{
	const ProtobufCMethodDescriptor *m = hs_ctl_method(HLTH, "WatchTasks");
	Harness__V1__WatchTasksRequest req = HARNESS__V1__WATCH_TASKS_REQUEST__INIT;
	hs_client_status st = { 0 };
	hs_client_md md[1];
	char bearer[8192];
	pthread_t th;
	int rc;
	req.task_id = d->task;
	snprintf(bearer, sizeof(bearer), "Bearer %s", hs_ctl_token(d->c) ? hs_ctl_token(d->c) : "");
	md[0].key = "authorization";
	md[0].value = bearer;
	say(d, "the agent stops heartbeating now (simulated crash); timeout is 1.5 s");
	rc = hs_client_stream_start(&d->stream, hs_ctl_client(d->c), "/harness.v1.HealthService/WatchTasks", &req.base,
				    m->output, md, 1, 60000, &st);
	if (rc != HS_OK) {
		rc = hs_ctl_report_status(d->c, "harness.v1.HealthService/WatchTasks", rc, &st);
		if (st.code == 12)
			fprintf(stderr, "demo: HealthService.WatchTasks is not implemented by the server\n");
		return rc;
	}
	hs_ctl_signals_watch(d->stream);
	if (pthread_create(&th, NULL, watch_main, d) != 0) {
		hs_ctl_signals_watch(NULL);
		hs_client_stream_free(d->stream);
		return HS_CTL_EXIT_ERROR;
	}
	bool recovering = false, resumed = false, acked = false, waited = false, over = false;
	double deadline = now_s() + 45;
	rc = HS_CTL_EXIT_ERROR;
	while (!*recovered && !over && now_s() < deadline && !hs_ctl_signals_interrupted()) {
		Harness__V1__TaskEvent *ev = next_event(d, 0.3, &over);
		if (ev != NULL) {
			const char *type = short_enum(&harness__v1__task_event_type__descriptor, (int)ev->type);
			say(d, "event %s: step %lld, checkpoint %s, state %s, generation %lld%s%s", type,
			    (long long)ev->step, *ev->checkpoint_id ? ev->checkpoint_id : "-",
			    short_enum(&harness__v1__task_state__descriptor, (int)ev->state),
			    (long long)ev->recovery_generation, *ev->message ? ": " : "", ev->message);
			switch (ev->type) {
			case HARNESS__V1__TASK_EVENT_TYPE__TASK_EVENT_TYPE_RECOVERY_STARTED:
				recovering = true;
				snprintf(cp, cpn, "%s", ev->checkpoint_id);
				*resume_step = ev->step;
				break;
			case HARNESS__V1__TASK_EVENT_TYPE__TASK_EVENT_TYPE_RECOVERED:
				*recovered = true;
				*resume_step = ev->step;
				if (*ev->checkpoint_id)
					snprintf(cp, cpn, "%s", ev->checkpoint_id);
				rc = 0;
				break;
			case HARNESS__V1__TASK_EVENT_TYPE__TASK_EVENT_TYPE_RECOVERY_FAILED:
				if (ev->state == HARNESS__V1__TASK_STATE__TASK_STATE_FAILED)
					over = true;
				break;
			case HARNESS__V1__TASK_EVENT_TYPE__TASK_EVENT_TYPE_FAILED:
			case HARNESS__V1__TASK_EVENT_TYPE__TASK_EVENT_TYPE_CANCELLED:
				over = true;
				break;
			default:
				break;
			}
			drop(&ev->base);
		}
		if (recovering && !acked) {
			/* The restarted agent heartbeats with the generation it
			 * knows and learns where to resume. */
			Harness__V1__HeartbeatResponse *hb = NULL;
			if (heartbeat(d, &hb) != 0)
				break;
			if (hb->instruction == HARNESS__V1__INSTRUCTION__INSTRUCTION_RESUME_FROM_CHECKPOINT) {
				char *ext = NULL;
				hs_error e = { 0 };
				if (hb->external_state != NULL)
					hs_pbjson_to_string(&ext, &hb->external_state->base, NULL, JSON_COMPACT, &e);
				if (!resumed) {
					say(d, "agent heartbeat (generation %lld) -> RESUME_FROM_CHECKPOINT: workspace "
					       "restored to %s, resume after step %lld, external_state %s, acknowledge "
					       "generation %lld",
					    (long long)d->gen, hb->checkpoint_id, (long long)hb->resume_step,
					    ext ? ext : "{}", (long long)hb->recovery_generation);
					resumed = true;
					*resume_step = hb->resume_step;
					snprintf(cp, cpn, "%s", hb->checkpoint_id);
				} else {
					/* Fencing: until acknowledged, the old generation is
					 * told to resume again, never to continue. */
					say(d, "a late heartbeat of the crashed agent (generation %lld) -> "
					       "RESUME_FROM_CHECKPOINT again, never CONTINUE",
					    (long long)d->gen);
					d->done = hb->resume_step;
					d->gen = hb->recovery_generation;
				}
				free(ext);
			} else if (hb->instruction == HARNESS__V1__INSTRUCTION__INSTRUCTION_CONTINUE && resumed) {
				acked = true;
				say(d, "agent heartbeat (generation %lld, step %lld) -> CONTINUE: acknowledged",
				    (long long)d->gen, (long long)d->done);
			} else if (hb->instruction == HARNESS__V1__INSTRUCTION__INSTRUCTION_WAIT && !waited) {
				waited = true;
				say(d, "agent heartbeat -> WAIT: the workspace is being restored");
			} else if (hb->instruction == HARNESS__V1__INSTRUCTION__INSTRUCTION_CANCEL) {
				say(d, "agent heartbeat -> CANCEL");
				over = true;
			} else if (hb->instruction == HARNESS__V1__INSTRUCTION__INSTRUCTION_CONTINUE) {
				fprintf(stderr, "demo: the agent was told to CONTINUE on a restored workspace\n");
				over = true;
			}
			drop(&hb->base);
		}
	}
	if (!*recovered) {
		pthread_mutex_lock(&d->mu);
		hs_client_status sst = d->stream_st;
		bool ended = d->stream_over;
		int srr = d->stream_rc;
		pthread_mutex_unlock(&d->mu);
		if (ended && srr != HS_OK && !hs_ctl_signals_interrupted())
			rc = hs_ctl_report_status(d->c, "harness.v1.HealthService/WatchTasks", srr, &sst);
		else
			fprintf(stderr, "demo: no RECOVERED event for task %s%s\n", d->task,
				hs_ctl_signals_interrupted() ? " (interrupted)" : "");
	}
	hs_ctl_signals_watch(NULL);
	hs_client_stream_cancel(d->stream);
	pthread_join(th, NULL);
	hs_client_stream_free(d->stream);
	d->stream = NULL;
	for (int i = 0; i < d->qn; i++)
		drop(&d->q[i]->base);
	d->qn = 0;
	return rc;
}

static void cleanup(demo *d, bool keep)
{
	ProtobufCMessage *r = NULL;
	if (keep) {
		say(d, "keeping task %s and sandbox %s (--keep)", d->task, d->sandbox[0] ? d->sandbox : "-");
		return;
	}
	if (d->registered && !d->completed &&
	    call(d, HLTH, "CancelTask", json_pack("{s:s, s:s}", "task_id", d->task, "reason", "demo aborted"), &r,
		 HS_CTL_AUTH_REQUIRED) == 0)
		say(d, "task %s cancelled", d->task);
	drop(r);
	r = NULL;
	if (d->sandbox[0] &&
	    call(d, SBX, "DestroySandbox", json_pack("{s:s, s:i}", "sandbox_id", d->sandbox, "grace_period_ms", 1000),
		 &r, HS_CTL_AUTH_REQUIRED) == 0)
		say(d, "sandbox %s destroyed", d->sandbox);
	drop(r);
}

int hs_ctl_demo(hs_ctl *c, const hs_ctl_cmd *cmd, int argc, char **argv)
{
	demo d = { .c = c, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	ProtobufCMessage *r = NULL;
	hs_ctl_args a;
	int rc = hs_ctl_args_parse(c, cmd, NULL, argc, argv, &a);
	if (rc != 0)
		return rc;
	hs_ctl_args_dispose(&a);
	if (a.help) {
		hs_ctl_verb_help(c, cmd, stdout);
		return HS_CTL_EXIT_OK;
	}
	const char *email = a.extra_val[0] ? a.extra_val[0] : getenv("HARNESS_ADMIN_EMAIL");
	const char *password = a.extra_val[1] ? a.extra_val[1] : getenv("HARNESS_ADMIN_PASSWORD");
	long hb_timeout = 1500;
	bool keep = a.extra_val[4] != NULL;
	if (a.extra_val[3] != NULL) {
		char *end;
		hb_timeout = strtol(a.extra_val[3], &end, 10);
		if (*end != '\0' || hb_timeout < 600 || hb_timeout > 600000) {
			fprintf(stderr, "%s: demo: --heartbeat-timeout-ms must be 600..600000\n", c->prog);
			return HS_CTL_EXIT_USAGE;
		}
	}
	if (a.extra_val[2] != NULL)
		snprintf(d.task, sizeof(d.task), "%s", a.extra_val[2]);
	else
		snprintf(d.task, sizeof(d.task), "demo-%lld-%d", (long long)time(NULL), (int)getpid());
	clock_gettime(CLOCK_MONOTONIC, &d.t0);
	hs_ctl_signals_cooperative(true);
	say(&d, "harness demo against %s, task %s", c->server, d.task);

	if ((rc = login(&d, email, password)) != 0)
		goto done;
	rc = call(&d, SBX, "CreateSandbox",
		  json_pack("{s:s, s:s, s:[s,s,s], s:{s:s}, s:I}", "driver", "bwrap", "task_id", d.task, "entrypoint",
			    "sh", "-c", SCRIPT, "labels", "app", "harnessctl-demo", "ttl_seconds", (json_int_t)600),
		  &r, HS_CTL_AUTH_REQUIRED);
	if (rc != 0)
		goto done;
	snprintf(d.sandbox, sizeof(d.sandbox), "%s", ((Harness__V1__Sandbox *)r)->sandbox_id);
	say(&d, "sandbox %s created (bwrap): sh -c '%s'", d.sandbox, SCRIPT);
	drop(r);
	r = NULL;
	rc = call(&d, HLTH, "RegisterTask",
		  json_pack("{s:s, s:I, s:I, s:I, s:{s:i, s:I}}", "task_id", d.task, "total_steps", (json_int_t)TOTAL,
			    "heartbeat_interval_ms", (json_int_t)(hb_timeout / 3), "heartbeat_timeout_ms",
			    (json_int_t)hb_timeout, "recovery_policy", "max_attempts", 3, "initial_backoff_ms",
			    (json_int_t)200),
		  &r, HS_CTL_AUTH_REQUIRED);
	if (rc != 0)
		goto done;
	d.registered = true;
	say(&d, "task %s registered: %d steps, heartbeat timeout %ld ms", d.task, TOTAL, hb_timeout);
	drop(r);
	r = NULL;
	rc = call(&d, SBX, "StartSandbox", json_pack("{s:s}", "sandbox_id", d.sandbox), &r,
		  HS_CTL_AUTH_REQUIRED);
	if (rc != 0)
		goto done;
	say(&d, "sandbox %s %s (pid %d), workspace %s", d.sandbox,
	    short_enum(&harness__v1__sandbox_state__descriptor, (int)((Harness__V1__Sandbox *)r)->state),
	    ((Harness__V1__Sandbox *)r)->pid, ((Harness__V1__Sandbox *)r)->workspace);
	drop(r);
	r = NULL;
	/* The script sleeps 1 s first: this baseline sees the empty workspace. */
	if ((rc = checkpoint(&d, 0, "workspace before the first step")) != 0)
		goto done;
	if ((rc = run_steps(&d)) != 0)
		goto done;
	int64_t dummy;
	bool consistent = false;
	say(&d, "workspace vs. the latest checkpoint %s:", d.last_cp);
	if ((rc = new_step(&d, &dummy, true, &consistent)) != 0)
		goto done;

	bool recovered = false;
	int64_t resume_step = -1;
	char cp[160] = "";
	if ((rc = watch_recovery(&d, &recovered, &resume_step, cp, sizeof(cp))) != 0)
		goto done;
	rc = call(&d, CKPT, "VerifyConsistency", json_pack("{s:s, s:s}", "task_id", d.task, "checkpoint_id", cp), &r,
		  HS_CTL_AUTH_REQUIRED);
	if (rc != 0)
		goto done;
	consistent = ((Harness__V1__VerifyConsistencyResponse *)r)->consistent;
	drop(r);
	r = NULL;
	if (!consistent) {
		say(&d, "VerifyConsistency: the workspace does NOT match checkpoint %s:", cp);
		new_step(&d, &dummy, true, NULL);
		rc = HS_CTL_EXIT_ERROR;
		goto done;
	}
	say(&d, "VerifyConsistency: workspace matches checkpoint %s exactly (step4.partial is gone)", cp);
	if (call(&d, HLTH, "CompleteTask",
		 json_pack("{s:s, s:b, s:s}", "task_id", d.task, "success", 1, "message", "demo finished"), &r,
		 HS_CTL_AUTH_REQUIRED) == 0) {
		d.completed = true;
		say(&d, "task %s completed", d.task);
	}
	drop(r);
	r = NULL;
	say(&d, "RECOVERED: the control plane restored checkpoint %s; the agent resumes at step %lld of %d", cp,
	    (long long)resume_step + 1, TOTAL);
	rc = HS_CTL_EXIT_OK;
done:
	if (hs_ctl_signals_interrupted() && rc == 0)
		rc = HS_CTL_EXIT_ERROR;
	cleanup(&d, keep);
	if (rc != 0)
		say(&d, "demo FAILED (exit %d)%s", rc, hs_ctl_signals_interrupted() ? ": interrupted" : "");
	return rc;
}
