/* The task operations: register, heartbeat, get, list, complete, cancel.
 * Each transition is persisted (row, then event) before the caller sees it. */
#include "tasks_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "log.h"


static bool terminal(int s)
{
	return s == HS_TASK_COMPLETED || s == HS_TASK_FAILED || s == HS_TASK_CANCELLED;
}

static int check_caller(const hs_principal *c, hs_error *err)
{
	if (c == NULL || c->user_id == NULL || c->user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "no authenticated caller");
	if (strlen(c->user_id) >= HS_TASK_OWNER_MAX)
		return hs_error_set(err, HS_INVALID, "caller id too long");
	return HS_OK;
}

/* Find a visible task and lock it. */
static int find_locked(hs_tasks *t, const hs_principal *caller, const char *id, task **out,
		       hs_error *err)
{
	int rc;
	if ((rc = check_caller(caller, err)) != HS_OK)
		return rc;
	if ((rc = hs_id_check_task("task_id", id, err)) != HS_OK)
		return hs_error_set(err, HS_INVALID, "task_id: %s", err ? err->msg : "invalid");
	task *k = hs_tasks__lookup(t, id);
	if (k == NULL)
		return hs_error_set(err, HS_NOT_FOUND, "task %s not found", id);
	pthread_mutex_lock(&k->mu);
	if (!hs_tasks__visible(k, caller)) {
		pthread_mutex_unlock(&k->mu);
		return hs_error_set(err, HS_DENIED, "task %s belongs to another user", id);
	}
	*out = k;
	return HS_OK;
}

static int info_out(const task *k, hs_task_info *out, hs_error *err)
{
	if (out == NULL)
		return HS_OK;
	bool oom = false;
	hs_tasks__info_of(k, out, &oom);
	return oom ? hs_error_set(err, HS_INTERNAL, "out of memory") : HS_OK;
}

static int validate_spec(const hs_task_spec *s, hs_error *err)
{
	int rc;
	if ((rc = hs_id_check_task("task_id", s->task_id, err)) != HS_OK)
		return hs_error_set(err, HS_INVALID, "task_id: %s", err ? err->msg : "invalid");
	if (s->total_steps < 0)
		return hs_error_set(err, HS_INVALID, "total_steps: must be >= 0");
	if (s->heartbeat_interval_ms != 0 &&
	    (s->heartbeat_interval_ms < 100 || s->heartbeat_interval_ms > 3600000))
		return hs_error_set(err, HS_INVALID, "heartbeat_interval_ms: must be 0 or 100..3600000");
	int64_t interval = s->heartbeat_interval_ms ? s->heartbeat_interval_ms : 30000;
	if (s->heartbeat_timeout_ms < 0 || s->heartbeat_timeout_ms > 86400000)
		return hs_error_set(err, HS_INVALID, "heartbeat_timeout_ms: must be 0..86400000");
	int64_t timeout = s->heartbeat_timeout_ms ? s->heartbeat_timeout_ms : 90000;
	if (timeout <= interval)
		return hs_error_set(err, HS_INVALID,
				    "heartbeat_timeout_ms: must be greater than heartbeat_interval_ms");
	if (s->sandbox_id != NULL && s->sandbox_id[0] != '\0') {
		if ((rc = hs_id_check_name("sandbox_id", s->sandbox_id, err)) != HS_OK)
			return rc;
	}
	const char *ws = s->workspace;
	if (ws != NULL && ws[0] != '\0') {
		if (strlen(ws) >= HS_STORE_PATH_MAX || ws[0] == '/')
			return hs_error_set(err, HS_INVALID, "workspace: must be a relative path");
		for (const char *p = ws; *p;) {
			size_t len = strcspn(p, "/");
			if (len == 2 && p[0] == '.' && p[1] == '.')
				return hs_error_set(err, HS_INVALID, "workspace: must not contain '..'");
			p += len;
			p += *p == '/';
		}
	}
	if (s->labels_json != NULL && strlen(s->labels_json) >= HS_STORE_JSON_MAX)
		return hs_error_set(err, HS_INVALID, "labels: too large");
	return HS_OK;
}

int hs_tasks_register(hs_tasks *t, const hs_principal *caller, const hs_task_spec *spec,
		      hs_task_info *out, hs_error *err)
{
	int rc;
	hs_task_policy pol = spec->policy;
	if ((rc = check_caller(caller, err)) != HS_OK || (rc = validate_spec(spec, err)) != HS_OK ||
	    (rc = hs_task_policy_resolve(&pol, err)) != HS_OK)
		return rc;
	if (t->ops.checkpoints_check != NULL &&
	    (rc = t->ops.checkpoints_check(t->ops.ctx, spec->task_id, caller, err)) != HS_OK)
		return rc;
	bool has_sb = spec->sandbox_id != NULL && spec->sandbox_id[0] != '\0';
	if (has_sb) {
		if (t->ops.sandbox_check == NULL)
			return hs_error_set(err, HS_UNAVAILABLE, "sandbox_id: sandboxes are not available");
		if ((rc = t->ops.sandbox_check(t->ops.ctx, spec->sandbox_id, caller, err)) != HS_OK)
			return rc;
	}
	hs_store_task_row *row = calloc(1, sizeof(*row));
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	int64_t now = hs_clock_wall_ms();
	COPY(row->task_id, spec->task_id);
	COPY(row->owner, caller->user_id);
	row->state = HS_TASK_RUNNING;
	row->total_steps = spec->total_steps;
	row->heartbeat_interval_ms = spec->heartbeat_interval_ms ? spec->heartbeat_interval_ms : 30000;
	row->heartbeat_timeout_ms = spec->heartbeat_timeout_ms ? spec->heartbeat_timeout_ms : 90000;
	COPY(row->sandbox_id, spec->sandbox_id);
	row->policy_max_attempts = pol.max_attempts;
	row->policy_initial_backoff_ms = pol.initial_backoff_ms;
	row->policy_multiplier = pol.multiplier;
	row->policy_max_backoff_ms = pol.max_backoff_ms;
	row->last_heartbeat_ms = now;
	row->registered_at_ms = now;
	COPY(row->workspace, spec->workspace && spec->workspace[0] ? spec->workspace : spec->task_id);
	COPY(row->labels_json, spec->labels_json && spec->labels_json[0] ? spec->labels_json : "{}");
	row->updated_at_ms = now;

	task *k = hs_tasks__lookup(t, spec->task_id);
	if (k == NULL) {
		pthread_mutex_lock(&t->mu);
		bool full = t->n_all >= t->max_tasks;
		pthread_mutex_unlock(&t->mu);
		if (full) {
			rc = hs_error_set(err, HS_LIMIT, "too many registered tasks (limit %zu)", t->max_tasks);
			goto done;
		}
		rc = hs_store_task_insert(t->store, row, err);
		if (rc == HS_EXISTS) /* raced with another RegisterTask */
			rc = hs_error_set(err, HS_EXISTS, "task %s already exists", spec->task_id);
		if (rc != HS_OK)
			goto done;
		if ((k = hs_tasks__insert(t, row, err)) == NULL) {
			rc = HS_INTERNAL;
			goto done;
		}
		pthread_mutex_lock(&k->mu);
	} else {
		pthread_mutex_lock(&k->mu);
		if (!hs_tasks__visible(k, caller)) {
			pthread_mutex_unlock(&k->mu);
			rc = hs_error_set(err, HS_DENIED, "task %s belongs to another user", spec->task_id);
			goto done;
		}
		if (!terminal(k->state)) {
			pthread_mutex_unlock(&k->mu);
			rc = hs_error_set(err, HS_EXISTS, "task %s already exists and is %s", spec->task_id,
					  hs_task_state_name(k->state));
			goto done;
		}
		/* Re-registration keeps the original owner (an admin may revive
		 * a user's task) and the last known checkpoint. */
		COPY(row->owner, k->owner);
		COPY(row->last_checkpoint_id, k->last_ckpt);
		if ((rc = hs_tasks__commit(t, k, row, err)) != HS_OK) {
			pthread_mutex_unlock(&k->mu);
			goto done;
		}
		k->epoch++;
		k->restoring = false;
		k->resume_ckpt[0] = '\0';
	}
	hs_tasks__arm_at(t, k, now + k->timeout_ms);
	rc = hs_tasks__emit(t, k, HS_TEV_REGISTERED, k->current_step, k->last_ckpt, 0, "", err);
	if (rc == HS_OK)
		rc = info_out(k, out, err);
	pthread_mutex_unlock(&k->mu);
done:
	free(row);
	return rc;
}

int hs_tasks_heartbeat(hs_tasks *t, const hs_principal *caller, const char *task_id,
		       const hs_task_beat *b, hs_task_beat_reply *out, hs_error *err)
{
	task *k = NULL;
	int rc;
	if (b->current_step < 0)
		return hs_error_set(err, HS_INVALID, "current_step: must be >= 0");
	if (b->total_steps < 0)
		return hs_error_set(err, HS_INVALID, "total_steps: must be >= 0");
	if (!(b->cpu_usage >= 0) || !(b->memory_usage_mb >= 0) || !(b->disk_usage_mb >= 0))
		return hs_error_set(err, HS_INVALID, "%s: must be >= 0",
				    !(b->cpu_usage >= 0)         ? "cpu_usage"
				    : !(b->memory_usage_mb >= 0) ? "memory_usage_mb"
								 : "disk_usage_mb");
	if (b->details != NULL && strlen(b->details) > HS_TASK_DETAILS_MAX)
		return hs_error_set(err, HS_INVALID, "details: at most %d bytes", HS_TASK_DETAILS_MAX);
	if ((rc = find_locked(t, caller, task_id, &k, err)) != HS_OK)
		return rc;
	memset(out, 0, sizeof(*out));
	int64_t now = hs_clock_wall_ms();
	switch (k->state) {
	case HS_TASK_COMPLETED:
		rc = hs_error_set(err, HS_CONFLICT, "task %s is COMPLETED", task_id);
		goto done;
	case HS_TASK_CANCELLED:
	case HS_TASK_FAILED:
		out->state = (hs_task_state)k->state;
		out->instruction = HS_TASK_CANCEL;
		goto done;
	case HS_TASK_RECOVERING:
		if (k->restoring || k->resume_ckpt[0] == '\0') {
			/* Mid-recovery: the agent learns it and asks again. */
			out->state = HS_TASK_RECOVERING;
			out->instruction = HS_TASK_CONTINUE;
			out->next_deadline_ms = now + k->interval_ms;
			goto done;
		}
		/* Restored: tell the agent to resume; RUNNING again. */
		hs_store_task_row *row = malloc(sizeof(*row));
		if (row == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
			goto done;
		}
		char *saved = strdup(k->details ? k->details : "");
		hs_tasks__row_of(k, row);
		row->state = HS_TASK_RUNNING;
		row->recovery_attempts = 0;
		row->current_step = k->resume_step;
		row->last_heartbeat_ms = now;
		row->updated_at_ms = now;
		if (saved == NULL)
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		else
			rc = hs_tasks__commit(t, k, row, err);
		free(row);
		if (rc == HS_OK)
			rc = hs_tasks__emit(t, k, HS_TEV_RECOVERED, k->resume_step, k->resume_ckpt, 0,
					    "agent resumed from checkpoint", err);
		if (rc != HS_OK) {
			free(saved);
			goto done;
		}
		hs_tasks__arm_at(t, k, now + k->timeout_ms);
		out->state = HS_TASK_RUNNING;
		out->instruction = HS_TASK_RESUME;
		out->resume_step = k->resume_step;
		COPY(out->checkpoint_id, k->resume_ckpt);
		out->next_deadline_ms = now + k->timeout_ms;
		out->details = saved;
		k->resume_ckpt[0] = '\0';
		goto done;
	case HS_TASK_STALLED:
		if (k->restoring || k->working) {
			/* An attempt is about to start: it wins. */
			out->state = HS_TASK_RECOVERING;
			out->instruction = HS_TASK_CONTINUE;
			out->next_deadline_ms = now + k->interval_ms;
			goto done;
		}
		/* Late heartbeat before recovery started: RUNNING again. */
		hs_store_task_row *r2 = malloc(sizeof(*r2));
		if (r2 == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
			goto done;
		}
		hs_tasks__row_of(k, r2);
		r2->state = HS_TASK_RUNNING;
		r2->recovery_attempts = 0;
		rc = hs_tasks__commit(t, k, r2, err);
		free(r2);
		if (rc != HS_OK)
			goto done;
		hs_log(HS_LOG_INFO, "health", "late heartbeat: task running again",
		       HS_LS("task_id", task_id));
		break;
	default:
		break;
	}
	/* RUNNING: the hot path. */
	int64_t total = b->total_steps ? b->total_steps : k->total_steps;
	const char *details = b->details && b->details[0] ? b->details : k->details;
	rc = hs_store_task_heartbeat(t->store, k->id, b->current_step, total, b->cpu_usage,
				     b->memory_usage_mb, b->disk_usage_mb, details, now, err);
	if (rc != HS_OK)
		goto done;
	if (details != k->details)
		hs_tasks__set_str(&k->details, details); /* best effort: the store has it */
	k->current_step = b->current_step;
	k->total_steps = total;
	k->cpu = b->cpu_usage;
	k->mem = b->memory_usage_mb;
	k->disk = b->disk_usage_mb;
	k->last_heartbeat_ms = now;
	hs_tasks__arm_at(t, k, now + k->timeout_ms);
	out->state = HS_TASK_RUNNING;
	out->instruction = HS_TASK_CONTINUE;
	out->next_deadline_ms = now + k->timeout_ms;
done:
	pthread_mutex_unlock(&k->mu);
	return rc;
}

int hs_tasks_get(hs_tasks *t, const hs_principal *caller, const char *task_id,
		 hs_task_info *out, hs_error *err)
{
	task *k = NULL;
	int rc = find_locked(t, caller, task_id, &k, err);
	if (rc != HS_OK)
		return rc;
	rc = info_out(k, out, err);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

/* Terminal transition shared by complete and cancel (task->mu held). */
static int finish(hs_tasks *t, task *k, int state, const char *reason, const char *result,
		  bool cancel, hs_task_event_type type, hs_error *err)
{
	hs_store_task_row *row = malloc(sizeof(*row));
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	int64_t now = hs_clock_wall_ms();
	hs_tasks__row_of(k, row);
	row->state = state;
	COPY(row->failure_reason, state == HS_TASK_COMPLETED ? result : reason);
	if (cancel)
		row->cancel_requested = true;
	row->updated_at_ms = now;
	int rc = hs_tasks__commit(t, k, row, err);
	free(row);
	if (rc != HS_OK)
		return rc;
	k->finished_at_ms = now;
	k->epoch++; /* aborts an in-flight recovery */
	k->restoring = false;
	k->resume_ckpt[0] = '\0';
	hs_tasks__disarm(t, k);
	return hs_tasks__emit(t, k, type, k->current_step, k->last_ckpt, 0,
			      state == HS_TASK_COMPLETED ? result : reason, err);
}

int hs_tasks_complete(hs_tasks *t, const hs_principal *caller, const char *task_id,
		      bool success, const char *message, hs_task_info *out, hs_error *err)
{
	task *k = NULL;
	int rc;
	if (message != NULL && strlen(message) > HS_TASK_MESSAGE_MAX)
		return hs_error_set(err, HS_INVALID, "message: at most %d bytes", HS_TASK_MESSAGE_MAX);
	if ((rc = find_locked(t, caller, task_id, &k, err)) != HS_OK)
		return rc;
	if (terminal(k->state))
		rc = hs_error_set(err, HS_CONFLICT, "task %s is already %s", task_id,
				  hs_task_state_name(k->state));
	else
		rc = finish(t, k, success ? HS_TASK_COMPLETED : HS_TASK_FAILED,
			    success ? "" : (message ? message : ""), message ? message : "", false,
			    success ? HS_TEV_COMPLETED : HS_TEV_FAILED, err);
	if (rc == HS_OK)
		rc = info_out(k, out, err);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

int hs_tasks_cancel(hs_tasks *t, const hs_principal *caller, const char *task_id,
		    const char *reason, hs_task_info *out, hs_error *err)
{
	task *k = NULL;
	int rc;
	if (reason != NULL && strlen(reason) >= HS_TASK_REASON_MAX)
		return hs_error_set(err, HS_INVALID, "reason: at most %d bytes", HS_TASK_REASON_MAX - 1);
	if ((rc = find_locked(t, caller, task_id, &k, err)) != HS_OK)
		return rc;
	if (k->state == HS_TASK_CANCELLED)
		rc = HS_OK; /* idempotent */
	else if (terminal(k->state))
		rc = hs_error_set(err, HS_CONFLICT, "task %s is %s", task_id,
				  hs_task_state_name(k->state));
	else
		rc = finish(t, k, HS_TASK_CANCELLED, reason && reason[0] ? reason : "cancelled", "",
			    true, HS_TEV_CANCELLED, err);
	if (rc == HS_OK)
		rc = info_out(k, out, err);
	pthread_mutex_unlock(&k->mu);
	return rc;
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
	switch (k->state) {
	case HS_TASK_RUNNING:
	case HS_TASK_STALLED:
	case HS_TASK_FAILED:
		if (k->working) { /* cannot happen outside RECOVERING; be safe */
			rc = hs_error_set(err, HS_CONFLICT, "task %s is already RECOVERING", task_id);
			break;
		}
		if (k->state == HS_TASK_FAILED)
			k->attempts = 0; /* a manual retry starts a fresh series */
		rc = hs_tasks__begin_attempt(t, k, reason && reason[0] ? reason : "RecoverTask", err);
		if (rc == HS_OK)
			hs_tasks__enqueue(t, k);
		break;
	default:
		rc = hs_error_set(err, HS_CONFLICT, "task %s is %s", task_id,
				  k->state == HS_TASK_RECOVERING ? "already RECOVERING"
								 : hs_task_state_name(k->state));
		break;
	}
	if (rc == HS_OK)
		rc = info_out(k, out, err);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

/* ---- list ------------------------------------------------------------------ */

typedef struct list_key {
	int64_t registered_at;
	task *k;
} list_key;

static int by_newest(const void *a, const void *b)
{
	const list_key *x = a, *y = b;
	if (x->registered_at != y->registered_at)
		return x->registered_at > y->registered_at ? -1 : 1;
	return strcmp(x->k->id, y->k->id);
}

static bool labels_match(const char *labels_json, const hs_task_list_opts *o)
{
	if (o->n_labels == 0)
		return true;
	json_t *j = json_loads(labels_json ? labels_json : "{}", 0, NULL);
	bool ok = j != NULL;
	for (size_t i = 0; ok && i < o->n_labels; i++) {
		json_t *v = json_object_get(j, o->label_keys[i]);
		ok = json_is_string(v) && strcmp(json_string_value(v), o->label_values[i]) == 0;
	}
	json_decref(j);
	return ok;
}

int hs_tasks_list(hs_tasks *t, const hs_principal *caller, const hs_task_list_opts *o,
		  hs_task_info **out, size_t *n_out, char **next_token, hs_error *err)
{
	int rc;
	if ((rc = check_caller(caller, err)) != HS_OK)
		return rc;
	if (o->state < 0 || o->state > HS_TASK_CANCELLED)
		return hs_error_set(err, HS_INVALID, "state: unknown value %d", o->state);
	size_t page = o->page_size == 0 ? 50 : o->page_size > 1000 ? 1000 : o->page_size;
	long long c_reg = 0;
	char c_id[HS_TASK_ID_MAX + 1] = "";
	bool has_cursor = o->page_token != NULL && o->page_token[0] != '\0';
	if (has_cursor) {
		int used = 0;
		if (sscanf(o->page_token, "%lld.%n", &c_reg, &used) != 1 || used <= 0 ||
		    strlen(o->page_token + used) > HS_TASK_ID_MAX)
			return hs_error_set(err, HS_INVALID, "page_token: malformed");
		COPY(c_id, o->page_token + used);
	}
	pthread_mutex_lock(&t->mu);
	size_t n_all = t->n_all;
	list_key *keys = malloc((n_all ? n_all : 1) * sizeof(*keys));
	if (keys != NULL)
		for (size_t i = 0; i < n_all; i++)
			keys[i].k = t->all[i];
	pthread_mutex_unlock(&t->mu);
	if (keys == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	size_t n = 0;
	for (size_t i = 0; i < n_all; i++) {
		task *k = keys[i].k;
		pthread_mutex_lock(&k->mu);
		bool keep = hs_tasks__visible(k, caller) && (o->state == 0 || k->state == o->state) &&
			    labels_match(k->labels_json, o);
		int64_t reg = k->registered_at_ms;
		pthread_mutex_unlock(&k->mu);
		if (keep && has_cursor)
			keep = reg < c_reg || (reg == c_reg && strcmp(k->id, c_id) > 0);
		if (keep)
			keys[n++] = (list_key){ reg, k };
	}
	qsort(keys, n, sizeof(*keys), by_newest);
	size_t m = n < page ? n : page;
	hs_task_info *arr = calloc(m ? m : 1, sizeof(*arr));
	if (arr == NULL) {
		free(keys);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	bool oom = false;
	for (size_t i = 0; i < m && !oom; i++) {
		pthread_mutex_lock(&keys[i].k->mu);
		hs_tasks__info_of(keys[i].k, &arr[i], &oom);
		pthread_mutex_unlock(&keys[i].k->mu);
	}
	char *tok = NULL;
	if (!oom && m < n && m > 0) {
		size_t len = 32 + HS_TASK_ID_MAX;
		tok = malloc(len);
		if (tok == NULL)
			oom = true;
		else
			snprintf(tok, len, "%lld.%s", (long long)keys[m - 1].registered_at,
				 keys[m - 1].k->id);
	}
	free(keys);
	if (oom) {
		hs_task_info_array_free(arr, m);
		free(tok);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	*out = arr;
	*n_out = m;
	*next_token = tok;
	return HS_OK;
}
