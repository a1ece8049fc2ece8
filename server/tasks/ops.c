/* The task operations behind the RPCs: register, heartbeat, get, list,
 * complete, cancel, recover, and the checkpoint hook. Validation, defaults,
 * ownership and paging live here (the adapter only converts); every change
 * of a task goes through hs_tasks__apply (the state machine). */
#include "tasks_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tenancy.h"

#define RECOVER_TRIES 3

static bool terminal(int s)
{
	return s == HS_TASK_COMPLETED || s == HS_TASK_FAILED || s == HS_TASK_CANCELLED;
}

int hs_tasks__check_caller(const hs_principal *c, hs_error *err)
{
	if (c == NULL || c->user_id == NULL || c->user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "no authenticated caller");
	if (strlen(c->user_id) >= HS_TASK_OWNER_MAX)
		return hs_error_set(err, HS_INVALID, "caller id too long");
	return HS_OK;
}

/* Find a visible task and lock it. Another user's task is not found (one
 * rule for every resource: existence does not leak).
 *
 * Many nodes (t->leases): a task acts only where its lease is held. With
 * take, a task held by nobody live (its lease free or expired) is taken
 * over here first (blocks: the store); else, and when another node holds
 * it live, the answer is ELSEWHERE with the holder in *holder (NULL
 * allowed; node_id "" = not looked up) and the task's stored row in *row
 * (NULL allowed) after checking that the caller may see it. */
enum { ELSEWHERE = 3 };

static int find_locked_at(hs_tasks *t, const hs_principal *caller, const char *id, bool take,
			  task **out, hs_store_lease_row *holder, hs_store_task_row *row,
			  hs_error *err)
{
	int rc;
	if ((rc = hs_tasks__check_caller(caller, err)) != HS_OK)
		return rc;
	if ((rc = hs_id_check_task("task_id", id, err)) != HS_OK)
		return rc;
	for (int tries = 0;; tries++) {
		task *k = hs_tasks__lookup(t, id);
		if (k != NULL) {
			pthread_mutex_lock(&k->mu);
			if (!hs_tasks__visible(k, caller)) {
				pthread_mutex_unlock(&k->mu);
				return hs_error_set(err, HS_NOT_FOUND, "task %s not found", id);
			}
			if (hs_tasks__held(t, k)) {
				*out = k;
				return HS_OK;
			}
			pthread_mutex_unlock(&k->mu);
		}
		if (!t->leases)
			return hs_error_set(err, HS_NOT_FOUND, "task %s not found", id);
		hs_store_lease_row l;
		memset(&l, 0, sizeof(l));
		if (take && tries < 2) {
			rc = hs_tasks__lease_take(t, id, &l, err);
			if (rc == HS_OK)
				continue; /* held here now: look it up again */
			if (rc == HS_NOT_FOUND) {
				(void)hs_store_lease_release(t->store, id, t->node_id, l.fence, NULL);
				return hs_error_set(err, HS_NOT_FOUND, "task %s not found", id);
			}
			if (rc != HS_CONFLICT)
				return rc;
		} else if (take) {
			return hs_error_set(err, HS_UNAVAILABLE, "task %s: its lease keeps changing "
					    "hands; retry", id);
		}
		/* Held elsewhere (or not taken): visible to the caller? */
		hs_store_task_row *r = row != NULL ? row : malloc(sizeof(*r));
		if (r == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		rc = hs_store_task_get(t->store, id, r, err);
		bool may = rc == HS_OK && hs_principal_may(caller, r->owner);
		if (r != row)
			free(r);
		if (rc != HS_OK && rc != HS_NOT_FOUND)
			return rc;
		if (!may)
			return hs_error_set(err, HS_NOT_FOUND, "task %s not found", id);
		if (holder != NULL)
			*holder = l;
		return ELSEWHERE;
	}
}

static int find_locked(hs_tasks *t, const hs_principal *caller, const char *id, task **out,
		       hs_error *err)
{
	hs_store_lease_row holder;
	int rc = find_locked_at(t, caller, id, true, out, &holder, NULL, err);
	if (rc == ELSEWHERE)
		rc = hs_tasks__elsewhere(t, id, &holder, err);
	return rc;
}

static int info_out(const task *k, hs_task_info *out, hs_error *err)
{
	if (out == NULL)
		return HS_OK;
	bool oom = false;
	hs_tasks__info_of(k, out, &oom);
	return oom ? hs_error_set(err, HS_INTERNAL, "out of memory") : HS_OK;
}

/* ---- register -------------------------------------------------------------- */

/* labels (checked) -> compact JSON object text, keys sorted; heap. */
static int labels_json(const hs_label *labels, size_t n, char **out, hs_error *err)
{
	int rc;
	if ((rc = hs_labels_check("labels", labels, n, err)) != HS_OK)
		return rc;
	json_t *j = json_object();
	for (size_t i = 0; j != NULL && i < n; i++)
		if (json_object_set_new(j, labels[i].key, json_string(labels[i].value)) != 0)
			json_decref(j), j = NULL;
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (s == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	if (strlen(s) >= HS_STORE_JSON_MAX) {
		free(s);
		return hs_error_set(err, HS_INVALID, "labels: too large");
	}
	*out = s;
	return HS_OK;
}

/* Validated registration: defaults applied, workspace canonical, labels
 * as JSON. Heap strings: spec_dispose. */
typedef struct spec_ok {
	int64_t interval, timeout;
	hs_task_policy policy;
	char *workspace, *labels;
} spec_ok;

static void spec_dispose(spec_ok *v)
{
	free(v->workspace);
	free(v->labels);
}

static int validate_spec(const hs_task_spec *s, spec_ok *v, hs_error *err)
{
	int rc;
	memset(v, 0, sizeof(*v));
	if ((rc = hs_id_check_task("task_id", s->task_id, err)) != HS_OK)
		return rc;
	if (s->total_steps < 0)
		return hs_error_set(err, HS_INVALID, "total_steps: must be >= 0");
	if (s->heartbeat_interval_ms != 0 &&
	    (s->heartbeat_interval_ms < 100 || s->heartbeat_interval_ms > 3600000))
		return hs_error_set(err, HS_INVALID, "heartbeat_interval_ms: must be 0 or 100..3600000");
	v->interval = s->heartbeat_interval_ms ? s->heartbeat_interval_ms : 30000;
	if (s->heartbeat_timeout_ms < 0 || s->heartbeat_timeout_ms > 86400000)
		return hs_error_set(err, HS_INVALID, "heartbeat_timeout_ms: must be 0..86400000");
	v->timeout = s->heartbeat_timeout_ms ? s->heartbeat_timeout_ms : 90000;
	if (v->timeout <= v->interval)
		return hs_error_set(err, HS_INVALID,
				    "heartbeat_timeout_ms: must be greater than heartbeat_interval_ms");
	if (s->sandbox_id != NULL && s->sandbox_id[0] != '\0' &&
	    (rc = hs_id_check_name("sandbox_id", s->sandbox_id, err)) != HS_OK)
		return rc;
	v->policy = s->policy;
	if ((rc = hs_task_policy_resolve(&v->policy, err)) != HS_OK)
		return rc;
	if ((rc = hs_tenancy_workspace_name(s->task_id, s->workspace, &v->workspace, err)) != HS_OK)
		return rc;
	if (strlen(v->workspace) >= HS_STORE_PATH_MAX) {
		spec_dispose(v);
		return hs_error_set(err, HS_INVALID, "workspace: too long");
	}
	if ((rc = labels_json(s->labels, s->n_labels, &v->labels, err)) != HS_OK) {
		spec_dispose(v);
		return rc;
	}
	return HS_OK;
}

/* Claim the task id and the workspace's task id for the caller; owner_out
 * gets the owner of the task id (an admin may register a user's id). */
static int claim(hs_tasks *t, const hs_principal *caller, const char *task_id,
		 const char *workspace, char owner_out[HS_TASK_OWNER_MAX], hs_error *err)
{
	int rc;
	snprintf(owner_out, HS_TASK_OWNER_MAX, "%s", caller->user_id);
	if (t->tenancy == NULL)
		return HS_OK;
	hs_error e = { 0 };
	rc = hs_tenancy_claim_task(t->tenancy, caller, task_id, &e);
	if (rc == HS_NOT_FOUND)
		return hs_error_set(err, HS_EXISTS, "task id taken: %s belongs to another user",
				    task_id);
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", e.msg);
	size_t first = strcspn(workspace, "/");
	if (strncmp(workspace, task_id, first) != 0 || task_id[first] != '\0') {
		char ws_task[HS_TASK_ID_MAX + 1];
		snprintf(ws_task, sizeof(ws_task), "%.*s", (int)first, workspace);
		if ((rc = hs_tenancy_claim_task(t->tenancy, caller, ws_task, &e)) != HS_OK)
			return hs_error_set(err, rc, "workspace: %s", e.msg);
	}
	char owner[HS_PRINCIPAL_ID_MAX];
	if ((rc = hs_tenancy_check_task(t->tenancy, caller, task_id, owner, &e)) != HS_OK)
		return hs_error_set(err, rc, "%s", e.msg);
	snprintf(owner_out, HS_TASK_OWNER_MAX, "%s", owner);
	return HS_OK;
}

static void fill_row(hs_store_task_row *row, const hs_task_spec *s, const spec_ok *v,
		     const char *owner, const hs_task_fsm *m, int64_t now)
{
	memset(row, 0, sizeof(*row));
	COPY(row->task_id, s->task_id);
	COPY(row->owner, owner);
	COPY(row->sandbox_id, s->sandbox_id);
	COPY(row->workspace, v->workspace);
	COPY(row->labels_json, v->labels);
	row->registered_at_ms = now;
	row->updated_at_ms = now;
	row->state = m->state;
	row->total_steps = m->total_steps;
	row->heartbeat_interval_ms = m->interval_ms;
	row->heartbeat_timeout_ms = m->timeout_ms;
	row->policy_max_attempts = m->policy.max_attempts;
	row->policy_initial_backoff_ms = m->policy.initial_backoff_ms;
	row->policy_multiplier = m->policy.multiplier;
	row->policy_max_backoff_ms = m->policy.max_backoff_ms;
	row->last_heartbeat_ms = m->last_heartbeat_ms;
	row->deadline_ms = m->deadline_ms;
}

/* One user must not take every task slot from the others: a new task id
 * beyond max_tasks_per_user (counting every task the user owns, terminal
 * ones too: they stay in memory) is HS_LIMIT, before the id is claimed.
 * Re-registering a terminal task adds nothing and is never refused here;
 * admins are exempt (max_tasks still binds). Concurrent registrations may
 * pass the check together: the limit can be exceeded by as many calls as
 * run at once, like max_tasks. */
static int check_user_limit(hs_tasks *t, const hs_principal *caller, const char *task_id,
			    hs_error *err)
{
	if (caller->is_admin)
		return HS_OK;
	if (hs_tasks__lookup(t, task_id) != NULL)
		return HS_OK; /* not a new task (or another user's: EXISTS later) */
	pthread_mutex_lock(&t->mu);
	size_t n = hs_tasks__owner_count(t, caller->user_id);
	pthread_mutex_unlock(&t->mu);
	if (n >= t->max_tasks_per_user)
		return hs_error_set(err, HS_LIMIT,
				    "too many tasks for this user: %zu registered, the limit "
				    "(--max-tasks-per-user) is %zu",
				    n, t->max_tasks_per_user);
	return HS_OK;
}

/* A new task: row and REGISTERED in one transaction, then indexed. */
static int register_new(hs_tasks *t, const hs_task_spec *s, const spec_ok *v, const char *owner,
			int64_t fence, hs_task_info *out, hs_error *err)
{
	int rc;
	pthread_mutex_lock(&t->mu);
	bool full = t->n_all >= t->max_tasks;
	pthread_mutex_unlock(&t->mu);
	if (full)
		return hs_error_set(err, HS_LIMIT, "too many registered tasks (limit %zu)", t->max_tasks);
	hs_store_task_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	int64_t now = hs_clock_wall_ms();
	/* The state machine from its zero state, like every registration. */
	hs_task_fsm none;
	memset(&none, 0, sizeof(none));
	hs_task_input in = { .kind = HS_TIN_REGISTER, .now_ms = now, .total_steps = s->total_steps,
			     .interval_ms = v->interval, .timeout_ms = v->timeout,
			     .policy = v->policy };
	hs_task_decision d;
	hs_task_decide(s->task_id, &none, &in, &d);
	fill_row(row, s, v, owner, &d.next, now);
	hs_task_event ev;
	memset(&ev, 0, sizeof(ev));
	COPY(ev.task_id, s->task_id);
	ev.type = d.event;
	ev.step = d.ev_step;
	COPY(ev.checkpoint_id, d.ev_ckpt);
	ev.state = d.next.state;
	ev.recovery_generation = d.next.gen;
	ev.occurred_at_ms = now;
	COPY(ev.owner, owner);
	COPY(ev.sandbox_id, s->sandbox_id);
	/* Publish before indexing: nothing can act on the task until it is
	 * in the map, and watchers may see REGISTERED a moment early. */
	rc = hs_tasks__publish(t, row, true, &ev, fence, err);
	if (rc == HS_EXISTS) /* raced with another RegisterTask */
		rc = hs_error_set(err, HS_EXISTS, "task %s already exists", s->task_id);
	task *k = NULL;
	if (rc == HS_OK && (k = hs_tasks__insert(t, row, err)) == NULL)
		rc = HS_INTERNAL;
	free(row);
	if (rc != HS_OK)
		return rc;
	pthread_mutex_lock(&k->mu);
	k->fence = fence;
	hs_tasks__arm_at(t, k, k->m.deadline_ms);
	rc = info_out(k, out, err);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

/* Swap the registration's own fields into k (and back on failure). */
typedef struct reg_fields {
	char sandbox_id[HS_TASK_ID_MAX + 1];
	int64_t registered_at_ms;
	double cpu, mem, disk;
	char *details, *workspace, *labels_json;
} reg_fields;

static void swap_fields(task *k, reg_fields *f)
{
	reg_fields old;
	COPY(old.sandbox_id, k->sandbox_id);
	old.registered_at_ms = k->registered_at_ms;
	old.cpu = k->cpu;
	old.mem = k->mem;
	old.disk = k->disk;
	old.details = k->details;
	old.workspace = k->workspace;
	old.labels_json = k->labels_json;
	COPY(k->sandbox_id, f->sandbox_id);
	k->registered_at_ms = f->registered_at_ms;
	k->cpu = f->cpu;
	k->mem = f->mem;
	k->disk = f->disk;
	k->details = f->details;
	k->workspace = f->workspace;
	k->labels_json = f->labels_json;
	*f = old;
}

/* A terminal task's id registered again: a new run. Owner and the
 * checkpoint record stay (an admin may revive a user's task). */
static int register_again(hs_tasks *t, task *k, const hs_task_spec *s, const spec_ok *v,
			  hs_task_info *out, hs_error *err)
{
	reg_fields f = { .registered_at_ms = hs_clock_wall_ms() };
	COPY(f.sandbox_id, s->sandbox_id);
	if (hs_tasks__set_str(&f.details, "") || hs_tasks__set_str(&f.workspace, v->workspace) ||
	    hs_tasks__set_str(&f.labels_json, v->labels)) {
		hs_tasks__free_str(f.workspace);
		hs_tasks__free_str(f.labels_json);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	hs_task_input in = { .kind = HS_TIN_REGISTER, .now_ms = f.registered_at_ms,
			     .total_steps = s->total_steps, .interval_ms = v->interval,
			     .timeout_ms = v->timeout, .policy = v->policy };
	swap_fields(k, &f); /* f now holds the old fields */
	int rc = hs_tasks__apply(t, k, &in, NULL, NULL, err);
	if (rc != HS_OK)
		swap_fields(k, &f); /* back: f holds the new ones again */
	hs_tasks__free_str(f.details);
	hs_tasks__free_str(f.workspace);
	hs_tasks__free_str(f.labels_json);
	if (rc == HS_OK)
		rc = info_out(k, out, err);
	return rc;
}

int hs_tasks_register(hs_tasks *t, const hs_principal *caller, const hs_task_spec *spec,
		      hs_task_info *out, hs_error *err)
{
	int rc;
	spec_ok v;
	char owner[HS_TASK_OWNER_MAX];
	if ((rc = hs_tasks__check_caller(caller, err)) != HS_OK ||
	    (rc = validate_spec(spec, &v, err)) != HS_OK)
		return rc;
	/* Checkpoints first: a refused id must not be claimed on the way. */
	if (t->ops.checkpoints_check != NULL &&
	    (rc = t->ops.checkpoints_check(t->ops.ctx, spec->task_id, caller, err)) != HS_OK)
		goto done;
	if ((rc = check_user_limit(t, caller, spec->task_id, err)) != HS_OK)
		goto done;
	if ((rc = claim(t, caller, spec->task_id, v.workspace, owner, err)) != HS_OK)
		goto done;
	if (spec->sandbox_id != NULL && spec->sandbox_id[0] != '\0') {
		if (t->ops.sandbox_check == NULL) {
			rc = hs_error_set(err, HS_UNAVAILABLE, "sandbox_id: sandboxes are not available");
			goto done;
		}
		if ((rc = t->ops.sandbox_check(t->ops.ctx, spec->sandbox_id, caller, err)) != HS_OK)
			goto done;
	}
	int64_t fence = 0;
	if (t->leases) {
		/* Many nodes: the lease first (the task's row may be new). */
		hs_store_lease_row l;
		memset(&l, 0, sizeof(l));
		rc = hs_tasks__lease_take(t, spec->task_id, &l, err);
		if (rc == HS_CONFLICT) {
			if (hs_store_lease_get(t->store, spec->task_id, &l, NULL) != HS_OK)
				COPY(l.node_id, "?");
			rc = hs_error_set(err, HS_EXISTS, "task %s already exists (held by node %s)",
					  spec->task_id, l.node_id);
			goto done;
		}
		if (rc == HS_NOT_FOUND) {
			fence = l.fence;
			hs_error_clear(err);
		} else if (rc != HS_OK) {
			goto done;
		}
	}
	task *k = hs_tasks__lookup(t, spec->task_id);
	if (k == NULL || fence > 0) {
		if (k != NULL || (t->leases && fence == 0)) { /* store and memory disagree: a race */
			rc = hs_error_set(err, HS_UNAVAILABLE, "task %s: changed meanwhile; retry",
					  spec->task_id);
			if (fence > 0)
				(void)hs_store_lease_release(t->store, spec->task_id, t->node_id,
							     fence, NULL);
			goto done;
		}
		rc = register_new(t, spec, &v, owner, fence, out, err);
		if (rc != HS_OK && fence > 0)
			(void)hs_store_lease_release(t->store, spec->task_id, t->node_id, fence, NULL);
		goto done;
	}
	pthread_mutex_lock(&k->mu);
	if (!hs_tasks__visible(k, caller))
		rc = hs_error_set(err, HS_EXISTS, "task id taken: %s belongs to another user",
				  spec->task_id);
	else if (!terminal(k->m.state))
		rc = hs_error_set(err, HS_EXISTS, "task %s already exists and is %s", spec->task_id,
				  hs_task_state_name(k->m.state));
	else
		rc = register_again(t, k, spec, &v, out, err);
	pthread_mutex_unlock(&k->mu);
done:
	spec_dispose(&v);
	return rc;
}

/* ---- heartbeat ------------------------------------------------------------- */

int hs_tasks__beat_input(const char *task_id, const hs_task_beat *b, hs_task_input *in,
			 hs_error *err)
{
	/* Past its deadline nobody reads the reply: consume nothing. */
	if (b->deadline_mono_ms > 0 && hs_clock_mono_ms() >= b->deadline_mono_ms)
		return hs_error_set(err, HS_TIMEOUT,
				    "heartbeat of task %s: deadline passed before it was handled; "
				    "nothing changed",
				    task_id);
	*in = (hs_task_input){ .kind = HS_TIN_BEAT, .now_ms = hs_clock_wall_ms(),
			       .generation = b->recovery_generation, .step = b->current_step,
			       .total_steps = b->total_steps };
	return HS_OK;
}

/* NaN, a negative or an infinite figure is no usage (red team: +Infinity
 * was stored and shown). */
static bool usage_ok(double v)
{
	return isfinite(v) && v >= 0;
}

static int check_beat(const hs_task_beat *b, hs_error *err)
{
	if (b->current_step < 0)
		return hs_error_set(err, HS_INVALID, "current_step: must be >= 0");
	if (b->total_steps < 0)
		return hs_error_set(err, HS_INVALID, "total_steps: must be >= 0");
	if (!usage_ok(b->cpu_usage) || !usage_ok(b->memory_usage_mb) || !usage_ok(b->disk_usage_mb))
		return hs_error_set(err, HS_INVALID, "%s: must be a finite number >= 0",
				    !usage_ok(b->cpu_usage)         ? "cpu_usage"
				    : !usage_ok(b->memory_usage_mb) ? "memory_usage_mb"
								    : "disk_usage_mb");
	if (b->details != NULL && strlen(b->details) > HS_TASK_DETAILS_MAX)
		return hs_error_set(err, HS_INVALID, "details: at most %d bytes", HS_TASK_DETAILS_MAX);
	if (b->recovery_generation < 0)
		return hs_error_set(err, HS_INVALID, "recovery_generation: must be >= 0");
	return HS_OK;
}

/* The resume point's external state, read from the checkpoint module
 * without the task lock (a restore from before a restart). k->mu held on
 * entry and exit. */
static void fetch_external(hs_tasks *t, task *k)
{
	char id[HS_TASK_ID_MAX + 1], ckpt[HS_TASK_CKPT_LOCAL];
	int64_t gen = k->m.gen;
	char *json = NULL;
	hs_error e = { 0 };
	COPY(id, k->id);
	COPY(ckpt, k->m.resume_ckpt);
	pthread_mutex_unlock(&k->mu);
	int rc = t->ops.checkpoint_state != NULL
			 ? t->ops.checkpoint_state(t->ops.ctx, id, ckpt, &json, &e)
			 : hs_error_set(&e, HS_UNAVAILABLE, "checkpoints are not configured");
	if (rc != HS_OK)
		hs_log(HS_LOG_WARN, "tasks", "cannot read the resume point's external state",
		       HS_LS("task_id", id), HS_LS("checkpoint_id", ckpt), HS_LS("error", e.msg));
	pthread_mutex_lock(&k->mu);
	if (rc == HS_OK && k->m.gen == gen && k->resume_external == NULL)
		k->resume_external = json, json = NULL;
	free(json);
}

int hs_tasks_heartbeat(hs_tasks *t, const hs_principal *caller, const char *task_id,
		       const hs_task_beat *b, hs_task_beat_reply *out, hs_error *err)
{
	task *k = NULL;
	int rc;
	hs_task_decision d;
	hs_store_lease_row holder;
	if ((rc = check_beat(b, err)) != HS_OK)
		return rc;
	hs_store_task_row *row = NULL; /* many nodes: the stored row, for a task held elsewhere */
	if (t->leases && (row = malloc(sizeof(*row))) == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	rc = find_locked_at(t, caller, task_id, true, &k, &holder, row, err);
	if (rc == ELSEWHERE) /* another node holds it: through the store */
		rc = hs_tasks__remote_beat(t, row, b, &holder, out, err);
	free(row);
	if (rc != HS_OK || k == NULL)
		return rc;
	memset(out, 0, sizeof(*out));
	for (int tries = 0;; tries++) {
		hs_task_input in;
		if ((rc = hs_tasks__beat_input(task_id, b, &in, err)) != HS_OK)
			goto done;
		if ((rc = hs_tasks__apply(t, k, &in, b, &d, err)) != HS_OK)
			goto done;
		if (d.instruction != HS_TASK_RESUME || k->resume_external != NULL)
			break;
		if (tries > 0) { /* the resume point is unreadable: wait for a new restore */
			d.instruction = HS_TASK_WAIT;
			d.reply_gen = 0;
			break;
		}
		fetch_external(t, k); /* unlocks meanwhile: decide again */
	}
	out->state = (hs_task_state)k->m.state;
	out->instruction = d.instruction;
	out->recovery_generation = d.reply_gen;
	out->next_deadline_ms = d.instruction == HS_TASK_CANCEL ? 0 : d.reply_deadline_ms;
	if (d.instruction == HS_TASK_RESUME) {
		out->resume_step = k->m.resume_step;
		COPY(out->checkpoint_id, k->m.resume_ckpt);
		out->details = strdup(k->details ? k->details : "");
		out->external_state = strdup(k->resume_external);
		if (out->details == NULL || out->external_state == NULL) {
			hs_task_beat_reply_dispose(out);
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		}
	}
done:
	pthread_mutex_unlock(&k->mu);
	return rc;
}

int hs_tasks_heartbeat_start(hs_tasks *t, const hs_principal *caller, const char *task_id,
			     const hs_task_beat *b, hs_task_beat_reply *out,
			     hs_task_beat_done_fn done, void *arg, hs_error *err)
{
	task *k = NULL;
	int rc;
	hs_task_decision d;
	if ((rc = check_beat(b, err)) != HS_OK)
		return rc;
	if (t->leases) { /* no I/O here: a task not held here goes to a worker */
		task *h = hs_tasks__lookup(t, task_id);
		if (h == NULL || !hs_tasks__held(t, h))
			return HS_TASKS_BLOCKS;
	}
	if ((rc = find_locked(t, caller, task_id, &k, err)) != HS_OK)
		return rc;
	memset(out, 0, sizeof(*out));
	hs_task_input in;
	if ((rc = hs_tasks__beat_input(task_id, b, &in, err)) != HS_OK)
		goto done;
	hs_task_decide(k->id, &k->m, &in, &d);
	if (d.rc != HS_OK) {
		rc = hs_error_set(err, d.rc, "%s", d.msg);
		goto done;
	}
	/* A resume (may read the checkpoint module) or a state change (row
	 * and event in one transaction): the blocking path, on a worker. */
	if (d.instruction == HS_TASK_RESUME || (d.touched && !d.beat_only)) {
		rc = HS_TASKS_BLOCKS;
		goto done;
	}
	if (d.touched) {
		rc = hs_tasks__apply_beat_async(t, k, &in, b, &d, done, arg, err);
		if (rc == HS_LIMIT) /* the commit queue is full: the lane's bounds decide */
			rc = HS_TASKS_BLOCKS;
		if (rc != HS_OK)
			goto done;
		rc = HS_TASKS_PENDING;
	}
	out->state = (hs_task_state)k->m.state;
	out->instruction = d.instruction;
	out->recovery_generation = d.reply_gen;
	out->next_deadline_ms = d.instruction == HS_TASK_CANCEL ? 0 : d.reply_deadline_ms;
done:
	pthread_mutex_unlock(&k->mu);
	return rc;
}

/* ---- get, complete, cancel, recover ---------------------------------------- */

int hs_tasks_get(hs_tasks *t, const hs_principal *caller, const char *task_id,
		 hs_task_info *out, hs_error *err)
{
	task *k = NULL;
	hs_store_task_row *row = NULL; /* many nodes: the stored row, for a task held elsewhere */
	if (t->leases && (row = malloc(sizeof(*row))) == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	int rc = find_locked_at(t, caller, task_id, false, &k, NULL, row, err);
	if (rc == ELSEWHERE) /* held by another node, or by none: the store's row */
		rc = hs_tasks__remote_get(t, row, out, err);
	free(row);
	if (rc != HS_OK || k == NULL)
		return rc;
	rc = info_out(k, out, err);
	pthread_mutex_unlock(&k->mu);
	if (rc == HS_OK && t->leases)
		hs_tasks__remote_progress(t, out);
	return rc;
}

static int finish(hs_tasks *t, const hs_principal *caller, const char *task_id,
		  const hs_task_input *in, hs_task_info *out, hs_error *err)
{
	task *k = NULL;
	int rc = find_locked(t, caller, task_id, &k, err);
	if (rc != HS_OK)
		return rc;
	rc = hs_tasks__apply(t, k, in, NULL, NULL, err);
	if (rc == HS_OK)
		rc = info_out(k, out, err);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

int hs_tasks_complete(hs_tasks *t, const hs_principal *caller, const char *task_id,
		      bool success, const char *message, hs_task_info *out, hs_error *err)
{
	if (message != NULL && strlen(message) > HS_TASK_MESSAGE_MAX)
		return hs_error_set(err, HS_INVALID, "message: at most %d bytes", HS_TASK_MESSAGE_MAX);
	hs_task_input in = { .kind = HS_TIN_COMPLETE, .now_ms = hs_clock_wall_ms(),
			     .success = success, .message = message ? message : "" };
	return finish(t, caller, task_id, &in, out, err);
}

int hs_tasks_cancel(hs_tasks *t, const hs_principal *caller, const char *task_id,
		    const char *reason, hs_task_info *out, hs_error *err)
{
	if (reason != NULL && strlen(reason) >= HS_TASK_REASON_MAX)
		return hs_error_set(err, HS_INVALID, "reason: at most %d bytes", HS_TASK_REASON_MAX - 1);
	hs_task_input in = { .kind = HS_TIN_CANCEL, .now_ms = hs_clock_wall_ms(),
			     .message = reason ? reason : "" };
	return finish(t, caller, task_id, &in, out, err);
}

int hs_tasks_recover(hs_tasks *t, const hs_principal *caller, const char *task_id,
		     const char *reason, hs_task_info *out, hs_error *err)
{
	task *k = NULL;
	int rc;
	if (reason != NULL && strlen(reason) >= HS_TASK_REASON_MAX)
		return hs_error_set(err, HS_INVALID, "reason: at most %d bytes", HS_TASK_REASON_MAX - 1);
	if ((rc = find_locked(t, caller, task_id, &k, err)) != HS_OK)
		return rc;
	for (int tries = 0;; tries++) {
		int st = k->m.state;
		if (st == HS_TASK_RECOVERING || st == HS_TASK_COMPLETED || st == HS_TASK_CANCELLED) {
			rc = hs_error_set(err, HS_CONFLICT, "task %s is %s", task_id,
					  st == HS_TASK_RECOVERING ? "already RECOVERING"
								   : hs_task_state_name(st));
			break;
		}
		if (tries == RECOVER_TRIES) {
			rc = hs_error_set(err, HS_CONFLICT,
					  "task %s kept changing while the recovery started; retry",
					  task_id);
			break;
		}
		/* The latest checkpoint, looked up without the lock. */
		uint64_t epoch = k->epoch;
		char ckpt[HS_TASK_CKPT_ID_MAX] = "";
		int64_t step = 0;
		hs_error e = { 0 };
		pthread_mutex_unlock(&k->mu);
		rc = t->ops.latest != NULL
			     ? t->ops.latest(t->ops.ctx, task_id, ckpt, sizeof(ckpt), &step, &e)
			     : hs_error_set(&e, HS_UNAVAILABLE, "checkpoints are not configured");
		pthread_mutex_lock(&k->mu);
		if (rc == HS_NOT_FOUND) {
			rc = hs_error_set(err, HS_CONFLICT, "task %s has no checkpoint to recover from",
					  task_id);
			break;
		}
		if (rc != HS_OK) {
			rc = hs_error_set(err, rc, "%s", e.msg);
			break;
		}
		if (k->epoch != epoch)
			continue;
		hs_task_input in = { .kind = HS_TIN_START, .now_ms = hs_clock_wall_ms(),
				     .manual = true, .checkpoint_id = ckpt, .checkpoint_step = step,
				     .message = reason && reason[0] ? reason : "RecoverTask" };
		rc = hs_tasks__apply(t, k, &in, NULL, NULL, err);
		if (rc == HS_OK)
			atomic_fetch_add(&t->n_recoveries, 1);
		break;
	}
	if (rc == HS_OK)
		rc = info_out(k, out, err);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

void hs_tasks_note_checkpoint(hs_tasks *t, const char *task_id, const char *checkpoint_id,
			      int64_t step)
{
	if (t == NULL || task_id == NULL || checkpoint_id == NULL || !hs_id_is_task(task_id) ||
	    strlen(checkpoint_id) >= HS_TASK_CKPT_LOCAL)
		return;
	task *k = hs_tasks__lookup(t, task_id);
	if (k == NULL)
		return; /* checkpoints of a task nobody registered (or held elsewhere) */
	hs_error err = { 0 };
	hs_task_input in = { .kind = HS_TIN_CHECKPOINT, .now_ms = hs_clock_wall_ms(),
			     .checkpoint_id = checkpoint_id, .checkpoint_step = step };
	pthread_mutex_lock(&k->mu);
	if (hs_tasks__apply(t, k, &in, NULL, NULL, &err) != HS_OK)
		hs_log(HS_LOG_WARN, "tasks", "cannot record a checkpoint", HS_LS("task_id", task_id),
		       HS_LS("checkpoint_id", checkpoint_id), HS_LS("error", err.msg));
	pthread_mutex_unlock(&k->mu);
}

int hs_tasks_checkpoint_fence(hs_tasks *t, const char *task_id, int64_t generation,
			      hs_error *err)
{
	if (t == NULL || task_id == NULL)
		return HS_OK;
	char why[256];
	int rc;
	task *k = hs_tasks__lookup(t, task_id);
	if (k != NULL) {
		pthread_mutex_lock(&k->mu);
		bool held = hs_tasks__held(t, k);
		if (held)
			rc = hs_task_checkpoint_fence(&k->m, generation, why, sizeof(why));
		pthread_mutex_unlock(&k->mu);
		if (held)
			return rc != HS_OK ? hs_error_set(err, rc, "%s", why) : HS_OK;
	}
	if (!t->leases)
		return HS_OK; /* checkpoints of a task nobody registered */
	/* Many nodes: a task another node holds is fenced on its stored row
	 * (review: a checkpoint sent to a non-holder skipped the fence). */
	hs_store_task_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	rc = hs_store_task_get(t->store, task_id, row, err);
	if (rc == HS_NOT_FOUND) {
		free(row);
		return HS_OK; /* checkpoints of a task nobody registered */
	}
	if (rc == HS_OK)
		rc = hs_tasks__remote_fence(row, generation, err);
	free(row);
	return rc;
}
