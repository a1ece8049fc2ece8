/* harness.v1.CheckpointService over the checkpoint module: protobuf <->
 * module conversion and the caller's principal; validation, ownership
 * (hs_ckpt_access, the task id's owner; anyone else's task is NOT_FOUND),
 * quotas and defaults live in the module. Every handler blocks on disk and
 * runs on the worker pool (HS_RPC_BLOCKING). */
#include "checkpoint_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_pb.h"
#include "harness/v1/checkpoint.pb-c.h"
#include "pbjson.h"
#include "utf8.h"

#define VERIFY_LIST_MAX 1000
#define DIFF_MAX 10000

/* --- edge checks ----------------------------------------------------------- */

static hs_principal caller_of(hs_rpc_call *call)
{
	const hs_rpc_principal *p = hs_rpc_call_principal(call);
	hs_principal c = { p->user_id, p->is_admin };
	return c;
}

/* Cheap checks before expensive work: the caller may have given up. */
static int still_wanted(hs_rpc_call *call, hs_error *err)
{
	if (!hs_rpc_call_cancelled(call))
		return HS_OK;
	if (hs_rpc_call_deadline_left_ms(call) <= 0)
		return hs_error_set(err, HS_TIMEOUT, "deadline exceeded before the checkpoint work began");
	return hs_error_set(err, HS_CANCELLED, "cancelled by the client");
}

/* Still wanted, caller may read the task's checkpoints. */
static int enter(hs_rpc_call *call, const char *task_id, hs_error *err)
{
	hs_principal c = caller_of(call);
	int rc = still_wanted(call, err);
	if (rc)
		return rc;
	return hs_ckpt_access(hs_rpc_call_payload(call), &c, task_id, false, err);
}

static int required_id(const char *id, const char *field, hs_error *err)
{
	if (!id || !id[0])
		return hs_error_set(err, HS_INVALID, "%s: required", field);
	return hs_ckpt_validate_checkpoint_id(id, field, err);
}

static int optional_id(const char *id, const char *field, hs_error *err)
{
	return (!id || !id[0]) ? HS_OK : hs_ckpt_validate_checkpoint_id(id, field, err);
}

/* --- conversions ------------------------------------------------------------ */

/* external_state is kept as JSON text by the module and travels as a
 * Struct: pbjson's one Struct codec, errors named after the field. */
static int external_state_text(const Google__Protobuf__Struct *s, char **out, hs_error *err)
{
	hs_error e = { 0 };
	if (hs_pbjson_struct_to_text(s, out, &e) != HS_OK)
		return hs_error_set(err, e.code, "external_state: %s", e.msg);
	return HS_OK;
}

static int external_state_of(hs_rpc_call *call, const char *json, Google__Protobuf__Struct **out,
			     hs_error *err)
{
	ProtobufCAllocator a = hs_rpc_call_allocator(call);
	hs_error e = { 0 };
	if (hs_pbjson_struct_from_text(json, &a, out, &e) != HS_OK)
		return hs_error_set(err, e.code, "external_state: %s", e.msg);
	return HS_OK;
}

#define OOM(err) hs_error_set(err, HS_INTERNAL, "out of memory")

static int checkpoint_msg(hs_rpc_call *call, const hs_ckpt_info *in, Harness__V1__Checkpoint **out,
			  hs_error *err)
{
	Harness__V1__Checkpoint *m = hs_rpc_call_alloc(call, sizeof(*m));
	Google__Protobuf__Timestamp *ts = hs_rpc_timestamp(call, in->created_at_ms);
	if (!m || !ts)
		return OOM(err);
	harness__v1__checkpoint__init(m);
	m->created_at = ts;
	m->checkpoint_id = hs_rpc_call_strdup(call, in->checkpoint_id);
	m->task_id = hs_rpc_call_strdup(call, in->task_id);
	m->step = in->step;
	m->description = hs_rpc_call_strdup(call, in->description ? in->description : "");
	m->commit = hs_rpc_call_strdup(call, in->commit);
	m->files_changed = in->files_changed;
	m->parent_checkpoint_id = hs_rpc_call_strdup(call, in->parent_checkpoint_id);
	m->workspace = hs_rpc_call_strdup(call, in->workspace ? in->workspace : "");
	m->created_by = hs_rpc_call_strdup(call, in->created_by);
	if (!m->checkpoint_id || !m->task_id || !m->description || !m->commit ||
	    !m->parent_checkpoint_id || !m->workspace || !m->created_by)
		return OOM(err);
	int rc = external_state_of(call, in->external_state_json, &m->external_state, err);
	if (rc)
		return rc;
	*out = m;
	return HS_OK;
}

/* Arena copy of a module string list, cut at max. */
static int str_list(hs_rpc_call *call, const hs_ckpt_strlist *l, size_t max, char ***out,
		    size_t *n, bool *truncated, hs_error *err)
{
	size_t k = l->count > max ? max : l->count;
	*out = NULL;
	*n = 0;
	if (l->count > max)
		*truncated = true;
	if (k == 0)
		return HS_OK;
	char **arr = hs_rpc_call_alloc(call, k * sizeof(*arr));
	if (!arr)
		return OOM(err);
	for (size_t i = 0; i < k; i++) {
		if (!(arr[i] = hs_rpc_call_strdup(call, l->items[i])))
			return OOM(err);
		hs_utf8_repair(arr[i]); /* a file name is bytes; a proto3 string is UTF-8 */
	}
	*out = arr;
	*n = k;
	return HS_OK;
}

/* --- handlers --------------------------------------------------------------- */

static int create_checkpoint(hs_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__CreateCheckpointRequest *r = (const void *)req;
	hs_ckpt_mgr *mgr = hs_rpc_call_payload(call);
	hs_principal who = caller_of(call);
	char *ext = NULL;
	hs_ckpt_create_result res;
	int rc;
	if ((r->external_state && (rc = external_state_text(r->external_state, &ext, err))) ||
	    (rc = still_wanted(call, err)))
		goto done;
	hs_ckpt_create_opts o = { .caller = &who,
				  .workspace = r->workspace,
				  .step = r->step,
				  .description = r->description,
				  .external_state_json = ext,
				  .request_id = r->request_id,
				  .recovery_generation = r->recovery_generation };
	if ((rc = hs_ckpt_create_with(mgr, r->task_id, &o, &res, err)))
		goto done;
	Harness__V1__CreateCheckpointResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (!m) {
		rc = OOM(err);
	} else {
		harness__v1__create_checkpoint_response__init(m);
		m->unchanged = res.unchanged;
		m->replayed = res.replayed;
		m->push_error = hs_rpc_call_strdup(call, res.push_error ? res.push_error : "");
		if (!m->push_error)
			rc = OOM(err);
		else if (!(rc = checkpoint_msg(call, &res.checkpoint, &m->checkpoint, err)))
			*resp = &m->base;
	}
	hs_ckpt_create_result_dispose(&res);
done:
	free(ext);
	return rc;
}

static int restore_checkpoint(hs_rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__RestoreCheckpointRequest *r = (const void *)req;
	hs_principal who = caller_of(call);
	hs_ckpt_info info;
	uint32_t restored = 0, removed = 0;
	int rc;
	if ((rc = required_id(r->checkpoint_id, "checkpoint_id", err)) || (rc = still_wanted(call, err)))
		return rc;
	rc = hs_ckpt_restore_as(hs_rpc_call_payload(call), &who, r->task_id, r->checkpoint_id,
				r->workspace, &info, &restored, &removed, err);
	if (rc)
		return rc;
	Harness__V1__RestoreCheckpointResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (!m) {
		rc = OOM(err);
	} else {
		harness__v1__restore_checkpoint_response__init(m);
		m->files_restored = restored;
		m->files_removed = removed;
		if (!(rc = checkpoint_msg(call, &info, &m->checkpoint, err)))
			*resp = &m->base;
	}
	hs_ckpt_info_dispose(&info);
	return rc;
}

/* Get and GetLatest share the reply. */
static int reply_info(hs_rpc_call *call, int rc, hs_ckpt_info *info, ProtobufCMessage **resp,
		      hs_error *err)
{
	if (rc)
		return rc;
	Harness__V1__Checkpoint *m = NULL;
	rc = checkpoint_msg(call, info, &m, err);
	hs_ckpt_info_dispose(info);
	if (!rc)
		*resp = &m->base;
	return rc;
}

static int get_checkpoint(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			  hs_error *err)
{
	const Harness__V1__GetCheckpointRequest *r = (const void *)req;
	hs_ckpt_info info;
	int rc;
	if ((rc = hs_id_check_task("task_id", r->task_id, err)) ||
	    (rc = required_id(r->checkpoint_id, "checkpoint_id", err)) ||
	    (rc = enter(call, r->task_id, err)))
		return rc;
	rc = hs_ckpt_get(hs_rpc_call_payload(call), r->task_id, r->checkpoint_id, &info, err);
	return reply_info(call, rc, &info, resp, err);
}

static int get_latest(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		      hs_error *err)
{
	const Harness__V1__GetLatestCheckpointRequest *r = (const void *)req;
	hs_ckpt_info info;
	int rc = enter(call, r->task_id, err);
	if (rc)
		return rc;
	rc = hs_ckpt_latest(hs_rpc_call_payload(call), r->task_id, &info, err);
	return reply_info(call, rc, &info, resp, err);
}

static int list_checkpoints(hs_rpc_call *call, const ProtobufCMessage *req,
			    ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__ListCheckpointsRequest *r = (const void *)req;
	hs_ckpt_info *arr = NULL;
	size_t n = 0;
	char *next = NULL;
	int rc;
	if ((rc = hs_id_check_task("task_id", r->task_id, err)))
		return rc;
	if (r->page_size < 0)
		return hs_error_set(err, HS_INVALID, "page_size: must be >= 0");
	if (r->before_step < 0)
		return hs_error_set(err, HS_INVALID, "before_step: must be >= 0");
	if ((rc = enter(call, r->task_id, err)))
		return rc;
	/* The module clamps page_size to HS_CKPT_PAGE_MAX. */
	rc = hs_ckpt_list(hs_rpc_call_payload(call), r->task_id, r->before_step, r->page_token,
			  (uint32_t)r->page_size, &arr, &n, &next, err);
	if (rc)
		return rc;
	Harness__V1__ListCheckpointsResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (!m || (n && !(m->checkpoints = hs_rpc_call_alloc(call, n * sizeof(*m->checkpoints))))) {
		rc = OOM(err);
		goto done;
	}
	Harness__V1__Checkpoint **items = m->checkpoints;
	harness__v1__list_checkpoints_response__init(m);
	m->checkpoints = items;
	for (size_t i = 0; i < n; i++)
		if ((rc = checkpoint_msg(call, &arr[i], &m->checkpoints[i], err)))
			goto done;
	m->n_checkpoints = n;
	if (!(m->next_page_token = hs_rpc_call_strdup(call, next ? next : ""))) {
		rc = OOM(err);
		goto done;
	}
	*resp = &m->base;
done:
	hs_ckpt_info_array_free(arr, n);
	free(next);
	return rc;
}

static int verify_consistency(hs_rpc_call *call, const ProtobufCMessage *req,
			      ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__VerifyConsistencyRequest *r = (const void *)req;
	hs_ckpt_verify_result v;
	int rc;
	hs_principal who = caller_of(call);
	if ((rc = hs_id_check_task("task_id", r->task_id, err)) ||
	    (rc = optional_id(r->checkpoint_id, "checkpoint_id", err)) || (rc = still_wanted(call, err)))
		return rc;
	rc = hs_ckpt_verify_as(hs_rpc_call_payload(call), &who, r->task_id, r->checkpoint_id,
			       r->workspace, &v, err);
	if (rc)
		return rc;
	Harness__V1__VerifyConsistencyResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (!m) {
		rc = OOM(err);
		goto done;
	}
	harness__v1__verify_consistency_response__init(m);
	bool cut = false;
	m->consistent = v.consistent;
	if (!(m->checkpoint_id = hs_rpc_call_strdup(call, v.checkpoint_id)))
		rc = OOM(err);
	if (rc || (rc = str_list(call, &v.added, VERIFY_LIST_MAX, &m->added, &m->n_added, &cut, err)) ||
	    (rc = str_list(call, &v.modified, VERIFY_LIST_MAX, &m->modified, &m->n_modified, &cut,
			   err)) ||
	    (rc = str_list(call, &v.deleted, VERIFY_LIST_MAX, &m->deleted, &m->n_deleted, &cut, err)))
		goto done;
	m->truncated = cut;
	*resp = &m->base;
done:
	hs_ckpt_verify_result_dispose(&v);
	return rc;
}

static Harness__V1__FileStatus file_status(hs_ckpt_change c)
{
	switch (c) {
	case HS_CKPT_ADDED: return HARNESS__V1__FILE_STATUS__FILE_STATUS_ADDED;
	case HS_CKPT_DELETED: return HARNESS__V1__FILE_STATUS__FILE_STATUS_DELETED;
	case HS_CKPT_RENAMED: return HARNESS__V1__FILE_STATUS__FILE_STATUS_RENAMED;
	case HS_CKPT_TYPECHANGE: return HARNESS__V1__FILE_STATUS__FILE_STATUS_TYPE_CHANGED;
	default: return HARNESS__V1__FILE_STATUS__FILE_STATUS_MODIFIED;
	}
}

static int diff_checkpoints(hs_rpc_call *call, const ProtobufCMessage *req,
			    ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__DiffCheckpointsRequest *r = (const void *)req;
	hs_ckpt_diff_entry *d = NULL;
	size_t n = 0;
	char from[HS_CKPT_ID_MAX], to[HS_CKPT_ID_MAX];
	int rc;
	if ((rc = hs_id_check_task("task_id", r->task_id, err)) ||
	    (rc = optional_id(r->from_checkpoint_id, "from_checkpoint_id", err)) ||
	    (rc = optional_id(r->to_checkpoint_id, "to_checkpoint_id", err)) ||
	    (rc = enter(call, r->task_id, err)))
		return rc;
	rc = hs_ckpt_diff(hs_rpc_call_payload(call), r->task_id, r->from_checkpoint_id,
			  r->to_checkpoint_id, from, to, &d, &n, err);
	if (rc)
		return rc;
	size_t k = n > DIFF_MAX ? DIFF_MAX : n;
	Harness__V1__DiffCheckpointsResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	Harness__V1__FileDiff *files = k ? hs_rpc_call_alloc(call, k * sizeof(*files)) : NULL;
	Harness__V1__FileDiff **ptrs = k ? hs_rpc_call_alloc(call, k * sizeof(*ptrs)) : NULL;
	if (!m || (k && (!files || !ptrs))) {
		rc = OOM(err);
		goto done;
	}
	harness__v1__diff_checkpoints_response__init(m);
	for (size_t i = 0; i < k; i++) {
		Harness__V1__FileDiff *f = &files[i];
		harness__v1__file_diff__init(f);
		f->status = file_status(d[i].status);
		f->path = hs_rpc_call_strdup(call, d[i].path);
		f->old_path = hs_rpc_call_strdup(call, d[i].status == HS_CKPT_RENAMED ? d[i].old_path : "");
		f->additions = d[i].additions;
		f->deletions = d[i].deletions;
		f->binary = d[i].binary;
		if (!f->path || !f->old_path) {
			rc = OOM(err);
			goto done;
		}
		hs_utf8_repair(f->path); /* file names are bytes; proto3 strings are UTF-8 */
		hs_utf8_repair(f->old_path);
		ptrs[i] = f;
	}
	m->files = ptrs;
	m->n_files = k;
	m->truncated = n > k;
	m->from_checkpoint_id = hs_rpc_call_strdup(call, from);
	m->to_checkpoint_id = hs_rpc_call_strdup(call, to);
	if (!m->from_checkpoint_id || !m->to_checkpoint_id) {
		rc = OOM(err);
		goto done;
	}
	*resp = &m->base;
done:
	hs_ckpt_diff_free(d, n);
	return rc;
}

static int prune_checkpoints(hs_rpc_call *call, const ProtobufCMessage *req,
			     ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__PruneCheckpointsRequest *r = (const void *)req;
	hs_ckpt_strlist pruned = { 0 };
	uint32_t kept = 0;
	uint64_t freed = 0;
	int rc;
	if ((rc = hs_id_check_task("task_id", r->task_id, err)))
		return rc;
	if (r->keep_last < 1)
		return hs_error_set(err, HS_INVALID, "keep_last: must be >= 1");
	if ((rc = enter(call, r->task_id, err)))
		return rc;
	rc = hs_ckpt_prune(hs_rpc_call_payload(call), r->task_id, (uint32_t)r->keep_last, r->dry_run,
			   &kept, &pruned, &freed, err);
	if (rc)
		return rc;
	Harness__V1__PruneCheckpointsResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	bool cut = false;
	if (!m) {
		rc = OOM(err);
		goto done;
	}
	harness__v1__prune_checkpoints_response__init(m);
	m->pruned_count = (uint32_t)pruned.count;
	m->kept_count = kept;
	m->bytes_freed = freed;
	if ((rc = str_list(call, &pruned, pruned.count, &m->pruned_checkpoint_ids,
			   &m->n_pruned_checkpoint_ids, &cut, err)))
		goto done;
	*resp = &m->base;
done:
	hs_ckpt_strlist_dispose(&pruned);
	return rc;
}

int hs_ckpt_service_register(hs_rpc_server *srv, hs_ckpt_mgr *mgr, hs_error *err)
{
	/* Served to users, ownership must be checkable. */
	if (!hs_ckpt_mgr_checks_ownership(mgr))
		return hs_error_set(err, HS_INVALID, "CheckpointService needs a manager with a tenancy");
	static const hs_rpc_handler handlers[] = {
		{ "CreateCheckpoint", HS_RPC_UNARY, HS_RPC_BLOCKING, create_checkpoint, NULL },
		{ "RestoreCheckpoint", HS_RPC_UNARY, HS_RPC_LONG, restore_checkpoint, NULL },
		{ "GetCheckpoint", HS_RPC_UNARY, HS_RPC_BLOCKING, get_checkpoint, NULL },
		{ "GetLatestCheckpoint", HS_RPC_UNARY, HS_RPC_BLOCKING, get_latest, NULL },
		{ "ListCheckpoints", HS_RPC_UNARY, HS_RPC_BLOCKING, list_checkpoints, NULL },
		{ "VerifyConsistency", HS_RPC_UNARY, HS_RPC_BLOCKING, verify_consistency, NULL },
		{ "DiffCheckpoints", HS_RPC_UNARY, HS_RPC_BLOCKING, diff_checkpoints, NULL },
		{ "PruneCheckpoints", HS_RPC_UNARY, HS_RPC_BLOCKING, prune_checkpoints, NULL },
	};
	return hs_rpc_server_add_service(srv, &harness__v1__checkpoint_service__descriptor, handlers,
					 sizeof(handlers) / sizeof(handlers[0]), mgr, err);
}
