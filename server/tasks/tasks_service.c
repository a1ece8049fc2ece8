/* harness.v1.HealthService adapter: protobuf <-> hs_tasks, errors mapped by
 * the hs_code returned. Validation, ownership (another user's task is
 * NOT_FOUND), labels, fencing and paging are the module's; this file only
 * converts (external_state JSON -> Struct through the one proto3 JSON
 * codec, pbjson) and passes the call's deadline down. */
#include "tasks_service.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "google/protobuf/struct.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "pbjson.h"
#include "rpc_pb.h"

#define WATCH_QUEUE 128
/* ListTasks scans every task in memory: up to this many it is cheap enough
 * (~20 µs at 1,000 tasks) for the completion-queue thread; beyond, the lane. */
#define LIST_INLINE_MAX 1024

static int caller_of(hs_rpc_call *call, hs_principal *out, hs_error *err)
{
	const hs_rpc_principal *p = hs_rpc_call_principal(call);
	if (p == NULL || !p->authenticated || p->user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "authentication required");
	out->user_id = p->user_id;
	out->is_admin = p->is_admin;
	return HS_OK;
}

static Google__Protobuf__Timestamp *ts(hs_rpc_call *call, int64_t ms)
{
	if (ms <= 0)
		return NULL;
	return hs_rpc_timestamp(call, ms);
}

#define OOM(x)                                                              \
	do {                                                                \
		if ((x) == NULL)                                            \
			return hs_error_set(err, HS_INTERNAL, "out of memory"); \
	} while (0)

static int task_to_pb(hs_rpc_call *call, const hs_task_info *in, Harness__V1__Task **out,
		      hs_error *err)
{
	Harness__V1__Task *t = hs_rpc_call_alloc(call, sizeof(*t));
	Harness__V1__RecoveryPolicy *p = hs_rpc_call_alloc(call, sizeof(*p));
	OOM(t);
	OOM(p);
	harness__v1__task__init(t);
	harness__v1__recovery_policy__init(p);
	OOM(t->task_id = hs_rpc_call_strdup(call, in->task_id));
	OOM(t->owner = hs_rpc_call_strdup(call, in->owner));
	t->state = (Harness__V1__TaskState)in->state;
	t->total_steps = in->total_steps;
	t->current_step = in->current_step;
	t->heartbeat_interval_ms = in->heartbeat_interval_ms;
	t->heartbeat_timeout_ms = in->heartbeat_timeout_ms;
	OOM(t->sandbox_id = hs_rpc_call_strdup(call, in->sandbox_id));
	p->max_attempts = in->policy.max_attempts;
	p->initial_backoff_ms = in->policy.initial_backoff_ms;
	p->backoff_multiplier = in->policy.multiplier;
	p->max_backoff_ms = in->policy.max_backoff_ms;
	t->recovery_policy = p;
	t->last_heartbeat_at = ts(call, in->last_heartbeat_ms);
	t->registered_at = ts(call, in->registered_at_ms);
	t->recovery_attempts = in->recovery_attempts;
	OOM(t->last_checkpoint_id = hs_rpc_call_strdup(call, in->last_checkpoint_id));
	t->cancel_requested = in->cancel_requested;
	t->cpu_usage = in->cpu_usage;
	t->memory_usage_mb = in->memory_usage_mb;
	t->disk_usage_mb = in->disk_usage_mb;
	OOM(t->details = hs_rpc_call_strdup(call, in->details));
	OOM(t->failure_reason = hs_rpc_call_strdup(call, in->failure_reason));
	OOM(t->result_message = hs_rpc_call_strdup(call, in->result_message));
	OOM(t->workspace = hs_rpc_call_strdup(call, in->workspace));
	t->next_heartbeat_deadline = ts(call, in->next_deadline_ms);
	t->finished_at = ts(call, in->finished_at_ms);
	t->recovery_generation = in->recovery_generation;
	t->acknowledged_generation = in->acknowledged_generation;
	OOM(t->resume_checkpoint_id = hs_rpc_call_strdup(call, in->resume_checkpoint_id));
	t->resume_step = in->resume_step;
	t->last_checkpoint_step = in->last_checkpoint_step;
	t->next_attempt_at = ts(call, in->next_attempt_ms);
	/* Most tasks have no labels: no parse for "{}". */
	json_t *j = in->labels_json == NULL || strcmp(in->labels_json, "{}") == 0
			    ? NULL
			    : json_loads(in->labels_json, 0, NULL);
	if (json_is_object(j) && json_object_size(j) > 0) {
		size_t n = json_object_size(j), i = 0;
		t->labels = hs_rpc_call_alloc(call, n * sizeof(*t->labels));
		const char *key;
		json_t *v;
		json_object_foreach(j, key, v)
		{
			Harness__V1__Task__LabelsEntry *e = hs_rpc_call_alloc(call, sizeof(*e));
			if (t->labels == NULL || e == NULL || !json_is_string(v))
				continue;
			harness__v1__task__labels_entry__init(e);
			e->key = hs_rpc_call_strdup(call, key);
			e->value = hs_rpc_call_strdup(call, json_string_value(v));
			if (e->key == NULL || e->value == NULL)
				continue;
			t->labels[i++] = e;
		}
		t->n_labels = i;
	}
	json_decref(j);
	*out = t;
	return HS_OK;
}

/* Reply with one task; disposes info. */
static int reply_task(hs_rpc_call *call, hs_task_info *info, ProtobufCMessage **resp,
		      hs_error *err)
{
	Harness__V1__Task *t = NULL;
	int rc = task_to_pb(call, info, &t, err);
	hs_task_info_dispose(info);
	if (rc == HS_OK)
		*resp = &t->base;
	return rc;
}

/* Map entries -> borrowed hs_label pairs in the call arena. */
#define LABELS_OF(call, entries, n, out)                                              \
	do {                                                                          \
		*(out) = NULL;                                                        \
		if ((n) > 0) {                                                        \
			hs_label *l_ = hs_rpc_call_alloc((call), (n) * sizeof(*l_));  \
			OOM(l_);                                                      \
			for (size_t i_ = 0; i_ < (n); i_++)                           \
				l_[i_] = (hs_label){ (entries)[i_]->key,              \
						     (entries)[i_]->value };          \
			*(out) = l_;                                                  \
		}                                                                     \
	} while (0)

static int register_task(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			 hs_error *err)
{
	const Harness__V1__RegisterTaskRequest *r = (const void *)req;
	hs_principal c;
	int rc;
	if ((rc = caller_of(call, &c, err)) != HS_OK)
		return rc;
	hs_task_spec s = { 0 };
	s.task_id = r->task_id;
	s.total_steps = r->total_steps;
	s.heartbeat_interval_ms = r->heartbeat_interval_ms;
	s.heartbeat_timeout_ms = r->heartbeat_timeout_ms;
	s.sandbox_id = r->sandbox_id;
	s.workspace = r->workspace;
	if (r->recovery_policy != NULL) {
		s.policy.max_attempts = r->recovery_policy->max_attempts;
		s.policy.initial_backoff_ms = r->recovery_policy->initial_backoff_ms;
		s.policy.multiplier = r->recovery_policy->backoff_multiplier;
		s.policy.max_backoff_ms = r->recovery_policy->max_backoff_ms;
	}
	hs_label *labels;
	LABELS_OF(call, r->labels, r->n_labels, &labels);
	s.labels = labels;
	s.n_labels = r->n_labels;
	hs_task_info info;
	rc = hs_tasks_register(hs_rpc_call_payload(call), &c, &s, &info, err);
	return rc == HS_OK ? reply_task(call, &info, resp, err) : rc;
}

/* JSON object text -> Struct in the call arena (pbjson's one Struct codec). */
static int struct_of(hs_rpc_call *call, const char *json, Google__Protobuf__Struct **out,
		     hs_error *err)
{
	ProtobufCAllocator a = hs_rpc_call_allocator(call);
	return hs_pbjson_struct_from_text(json, &a, out, err);
}

static int beat_response(hs_rpc_call *call, const hs_task_beat_reply *rep,
			 Harness__V1__HeartbeatResponse **out, hs_error *err)
{
	int rc = HS_OK;
	Harness__V1__HeartbeatResponse *o = hs_rpc_call_alloc(call, sizeof(*o));
	if (o != NULL) {
		harness__v1__heartbeat_response__init(o);
		o->state = (Harness__V1__TaskState)rep->state;
		o->instruction = (Harness__V1__Instruction)rep->instruction;
		o->resume_step = rep->resume_step;
		o->checkpoint_id = hs_rpc_call_strdup(call, rep->checkpoint_id);
		o->details = hs_rpc_call_strdup(call, rep->details ? rep->details : "");
		o->next_heartbeat_deadline = ts(call, rep->next_deadline_ms);
		o->recovery_generation = rep->recovery_generation;
		if (rep->external_state != NULL)
			rc = struct_of(call, rep->external_state, &o->external_state, err);
	}
	if (rc != HS_OK)
		return rc;
	if (o == NULL || o->checkpoint_id == NULL || o->details == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	*out = o;
	return HS_OK;
}

/* A heartbeat answered when its group commit is durable: the handler (with
 * the response built) and the store's callback (with the result) each
 * check in; the second one answers the call. */
typedef struct beat_wait {
	hs_rpc_call *call;
	_Atomic int left; /* 2: handler and commit; the last one answers */
	ProtobufCMessage *resp; /* written by the handler */
	int resp_rc;
	hs_error resp_err;
	int commit_rc; /* written by the store's callback */
	hs_error commit_err;
} beat_wait;

static void beat_check_in(beat_wait *w)
{
	if (atomic_fetch_sub(&w->left, 1) != 1)
		return;
	if (w->commit_rc != HS_OK)
		hs_rpc_call_complete(w->call, w->commit_rc, NULL, &w->commit_err);
	else if (w->resp_rc != HS_OK)
		hs_rpc_call_complete(w->call, w->resp_rc, NULL, &w->resp_err);
	else
		hs_rpc_call_complete(w->call, HS_OK, w->resp, NULL);
}

static void beat_durable(void *arg, int rc, const hs_error *err)
{
	beat_wait *w = arg;
	w->commit_rc = rc;
	if (rc != HS_OK && err != NULL)
		w->commit_err = *err;
	beat_check_in(w);
}

/* On the completion-queue thread: decide, queue the write, answer when it
 * is durable (no thread waits). A state change or a resume goes to the
 * heartbeat lane (HS_RPC_DEFER), where the blocking path runs. */
static int heartbeat(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		     hs_error *err)
{
	const Harness__V1__HeartbeatRequest *r = (const void *)req;
	hs_principal c;
	int rc;
	if ((rc = caller_of(call, &c, err)) != HS_OK)
		return rc;
	int64_t left = hs_rpc_call_deadline_left_ms(call);
	hs_task_beat b = { r->current_step, r->total_steps, r->cpu_usage, r->memory_usage_mb,
			   r->disk_usage_mb, r->details, r->recovery_generation,
			   left == INT64_MAX ? 0 : hs_clock_mono_ms() + (left > 0 ? left : 0) };
	hs_task_beat_reply rep;
	Harness__V1__HeartbeatResponse *o = NULL;
	if (hs_rpc_call_on_cq(call)) {
		beat_wait *w = hs_rpc_call_alloc(call, sizeof(*w));
		if (w == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		w->call = call;
		atomic_init(&w->left, 2);
		hs_rpc_call_ref(call); /* dropped by hs_rpc_call_complete */
		rc = hs_tasks_heartbeat_start(hs_rpc_call_payload(call), &c, r->task_id, &b, &rep,
					      beat_durable, w, err);
		if (rc != HS_TASKS_PENDING) {
			hs_rpc_call_unref(call);
			if (rc == HS_TASKS_BLOCKS)
				return HS_RPC_DEFER;
			if (rc != HS_OK)
				return rc;
			rc = beat_response(call, &rep, &o, err);
			hs_task_beat_reply_dispose(&rep);
			if (rc != HS_OK)
				return rc;
			*resp = &o->base;
			return HS_OK;
		}
		/* The commit may already be done: the response is built first,
		 * then the handler checks in. */
		if ((w->resp_rc = beat_response(call, &rep, &o, &w->resp_err)) == HS_OK)
			w->resp = &o->base;
		beat_check_in(w);
		return HS_RPC_PENDING_SOON; /* the next group commit answers it */
	}
	if ((rc = hs_tasks_heartbeat(hs_rpc_call_payload(call), &c, r->task_id, &b, &rep, err)) != HS_OK)
		return rc;
	rc = beat_response(call, &rep, &o, err);
	hs_task_beat_reply_dispose(&rep);
	if (rc != HS_OK)
		return rc;
	*resp = &o->base;
	return HS_OK;
}

static int get_task(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		    hs_error *err)
{
	const Harness__V1__GetTaskRequest *r = (const void *)req;
	hs_principal c;
	hs_task_info info;
	int rc;
	/* Many nodes: GetTask reads the store (a worker's job). */
	if (hs_rpc_call_on_cq(call) && hs_tasks_shared(hs_rpc_call_payload(call)))
		return HS_RPC_DEFER;
	if ((rc = caller_of(call, &c, err)) != HS_OK ||
	    (rc = hs_tasks_get(hs_rpc_call_payload(call), &c, r->task_id, &info, err)) != HS_OK)
		return rc;
	return reply_task(call, &info, resp, err);
}

static int list_tasks(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		      hs_error *err)
{
	const Harness__V1__ListTasksRequest *r = (const void *)req;
	hs_principal c;
	int rc;
	/* Many nodes: ListTasks reads the store (a worker's job), like GetTask. */
	if (hs_rpc_call_on_cq(call) && (hs_tasks_count(hs_rpc_call_payload(call)) > LIST_INLINE_MAX ||
					hs_tasks_shared(hs_rpc_call_payload(call))))
		return HS_RPC_DEFER;
	if ((rc = caller_of(call, &c, err)) != HS_OK)
		return rc;
	hs_label *sel;
	LABELS_OF(call, r->label_selector, r->n_label_selector, &sel);
	hs_task_list_opts o = { r->page_size, r->page_token, (int)r->state, sel,
				r->n_label_selector };
	hs_task_info *arr = NULL;
	size_t n = 0;
	char *next = NULL;
	if ((rc = hs_tasks_list(hs_rpc_call_payload(call), &c, &o, &arr, &n, &next, err)) != HS_OK)
		return rc;
	Harness__V1__ListTasksResponse *out = hs_rpc_call_alloc(call, sizeof(*out));
	if (out == NULL)
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
	if (rc == HS_OK) {
		harness__v1__list_tasks_response__init(out);
		out->next_page_token = hs_rpc_call_strdup(call, next ? next : "");
		out->tasks = hs_rpc_call_alloc(call, (n ? n : 1) * sizeof(*out->tasks));
		if (out->tasks == NULL || out->next_page_token == NULL)
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		for (size_t i = 0; rc == HS_OK && i < n; i++)
			rc = task_to_pb(call, &arr[i], &out->tasks[i], err);
		out->n_tasks = n;
	}
	hs_task_info_array_free(arr, n);
	free(next);
	if (rc == HS_OK)
		*resp = &out->base;
	return rc;
}

static int complete_task(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			 hs_error *err)
{
	const Harness__V1__CompleteTaskRequest *r = (const void *)req;
	hs_principal c;
	hs_task_info info;
	int rc;
	if ((rc = caller_of(call, &c, err)) != HS_OK ||
	    (rc = hs_tasks_complete(hs_rpc_call_payload(call), &c, r->task_id, r->success,
				    r->message, &info, err)) != HS_OK)
		return rc;
	return reply_task(call, &info, resp, err);
}

static int recover_task(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			hs_error *err)
{
	const Harness__V1__RecoverTaskRequest *r = (const void *)req;
	hs_principal c;
	hs_task_info info;
	int rc;
	if ((rc = caller_of(call, &c, err)) != HS_OK ||
	    (rc = hs_tasks_recover(hs_rpc_call_payload(call), &c, r->task_id, r->reason, &info,
				   err)) != HS_OK)
		return rc;
	return reply_task(call, &info, resp, err);
}

static int cancel_task(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       hs_error *err)
{
	const Harness__V1__CancelTaskRequest *r = (const void *)req;
	hs_principal c;
	hs_task_info info;
	int rc;
	if ((rc = caller_of(call, &c, err)) != HS_OK ||
	    (rc = hs_tasks_cancel(hs_rpc_call_payload(call), &c, r->task_id, r->reason, &info,
				  err)) != HS_OK)
		return rc;
	return reply_task(call, &info, resp, err);
}

/* ---- WatchTasks ------------------------------------------------------------ */

typedef struct watch_ctx {
	hs_rpc_call *call;
	hs_tasks *tasks;
	hs_task_watch *w;
} watch_ctx;

static int send_event(const hs_task_event *ev, void *payload)
{
	watch_ctx *x = payload;
	Harness__V1__TaskEvent e = HARNESS__V1__TASK_EVENT__INIT;
	Google__Protobuf__Timestamp at = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	at.seconds = ev->occurred_at_ms / 1000;
	at.nanos = (int32_t)(ev->occurred_at_ms % 1000) * 1000000;
	e.event_id = (uint64_t)ev->event_id;
	e.task_id = (char *)ev->task_id;
	e.type = (Harness__V1__TaskEventType)ev->type;
	e.step = ev->step;
	e.checkpoint_id = (char *)ev->checkpoint_id;
	e.occurred_at = &at;
	e.message = (char *)ev->message;
	e.attempt = ev->attempt;
	e.state = (Harness__V1__TaskState)ev->state;
	e.dropped_count = ev->dropped_count;
	e.owner = (char *)ev->owner;
	e.sandbox_id = (char *)ev->sandbox_id;
	e.recovery_generation = ev->recovery_generation;
	return hs_rpc_call_send(x->call, &e.base);
}

/* Catching up goes on from the stream's write completions: a slow reader
 * holds no worker (hs_rpc_call_when_writable runs this again once its
 * queue has room). */
static void watch_continue(hs_rpc_call *call, void *payload)
{
	watch_ctx *x = payload;
	hs_error err = { 0 };
	int rc = hs_tasks_watch_pump(x->tasks, x->w, &err);
	if (rc == HS_LIMIT)
		(void)hs_rpc_call_when_writable(call, watch_continue, x); /* else the call ended */
	else if (rc != HS_OK)
		hs_rpc_call_finish(call, rc, err.msg);
}

static void watch_done(hs_rpc_call *call, void *payload)
{
	watch_ctx *x = payload;
	hs_tasks_unwatch(x->tasks, x->w);
	free(x);
	hs_rpc_call_unref(call);
}

static int watch_tasks(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	const Harness__V1__WatchTasksRequest *r = (const void *)req;
	hs_principal c;
	int rc;
	if ((rc = caller_of(call, &c, err)) != HS_OK)
		return rc;
	if (r->after_event_id > (uint64_t)INT64_MAX)
		return hs_error_set(err, HS_INVALID, "after_event_id: out of range");
	watch_ctx *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	x->call = call;
	x->tasks = hs_rpc_call_payload(call);
	hs_rpc_call_set_send_queue(call, WATCH_QUEUE);
	hs_rpc_call_ref(call);
	rc = hs_tasks_watch(x->tasks, &c, r->task_id, r->send_initial, (int64_t)r->after_event_id,
			    send_event, x, &x->w, err);
	if (rc != HS_OK) {
		free(x);
		hs_rpc_call_unref(call);
		return rc;
	}
	watch_continue(call, x);
	/* Runs watch_done at once if the call already ended (and no
	 * watch_continue is scheduled or running: the core waits for it). */
	hs_rpc_call_on_done(call, watch_done, x);
	return HS_OK;
}

int hs_tasks_service_register(hs_rpc_server *srv, hs_tasks *tasks, hs_error *err)
{
	static const hs_rpc_handler handlers[] = {
		{ "RegisterTask", HS_RPC_UNARY, HS_RPC_BLOCKING, register_task, NULL },
		/* the CQ thread, answered by the group commit; the lane for state changes */
		{ "Heartbeat", HS_RPC_UNARY, HS_RPC_LIVENESS | HS_RPC_TRY_INLINE | HS_RPC_FORWARD, heartbeat,
		  NULL },
		/* memory only: on the completion-queue thread (many nodes: a worker) */
		{ "GetTask", HS_RPC_UNARY, HS_RPC_BLOCKING | HS_RPC_TRY_INLINE, get_task, NULL },
		{ "ListTasks", HS_RPC_UNARY, HS_RPC_BLOCKING | HS_RPC_TRY_INLINE, list_tasks, NULL },
		{ "WatchTasks", HS_RPC_SERVER_STREAM, HS_RPC_BLOCKING, NULL, watch_tasks },
		/* Calls that change a task held by another node are forwarded
		 * to its holder (server/rpc/forward.c), who checks the caller
		 * again; so is a Heartbeat that must change it (an
		 * acknowledgement): a progress beat is written through the store. */
		{ "CompleteTask", HS_RPC_UNARY, HS_RPC_BLOCKING | HS_RPC_FORWARD, complete_task, NULL },
		{ "RecoverTask", HS_RPC_UNARY, HS_RPC_BLOCKING | HS_RPC_FORWARD, recover_task, NULL },
		{ "CancelTask", HS_RPC_UNARY, HS_RPC_BLOCKING | HS_RPC_FORWARD, cancel_task, NULL },
	};
	if (tasks == NULL)
		return hs_error_set(err, HS_INVALID, "health service: tasks registry required");
	return hs_rpc_server_add_service(srv, &harness__v1__health_service__descriptor, handlers,
					 sizeof(handlers) / sizeof(handlers[0]), tasks, err);
}
