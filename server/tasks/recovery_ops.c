/* The default recovery operations over the checkpoint and sandbox modules'
 * public headers (see hs_task_recovery_ops in tasks.h).
 *
 * Sandbox recovery: a sandbox whose node was lost (the task moved here for
 * that reason) comes back on this node first (hs_sandbox_recover_lost:
 * taken over, bwrap started again from its spec on the workspace the
 * restore just brought back; firecracker cannot, and the attempt fails
 * saying why). Otherwise restore the sandbox's latest snapshot into a fresh VMM
 * (resumed). When it has none (bwrap sandboxes never do) fall back to what
 * the sandbox module offers without the original spec: a PAUSED sandbox is
 * resumed, a RUNNING one is left as is; a STOPPED/FAILED sandbox without
 * snapshots cannot be brought back (the module has no restart), which fails
 * the attempt with that reason. Sandbox calls act as the task's owner. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "sandbox.h"
#include "tasks_internal.h"

typedef hs_tasks_ops_ctx ops_ctx;

static int op_latest(void *ctx, const char *task_id, char *id_out, size_t id_len,
		     int64_t *step_out, hs_error *err)
{
	ops_ctx *c = ctx;
	hs_ckpt_info info;
	memset(&info, 0, sizeof(info));
	int rc = hs_ckpt_latest(c->ckpt, task_id, &info, err);
	if (rc != HS_OK)
		return rc;
	snprintf(id_out, id_len, "%s", info.checkpoint_id);
	*step_out = info.step;
	hs_ckpt_info_dispose(&info);
	return HS_OK;
}

static char *external_of(const hs_ckpt_info *info)
{
	return strdup(info->external_state_json ? info->external_state_json : "");
}

static int op_restore(void *ctx, const char *task_id, const char *checkpoint_id,
		      const char *workspace, char **external_out, hs_error *err)
{
	ops_ctx *c = ctx;
	hs_ckpt_info info;
	uint32_t restored = 0, removed = 0;
	memset(&info, 0, sizeof(info));
	/* The default workspace (= task id): let the checkpoint's recorded
	 * workspace decide, it is where the agent's files were taken from. */
	if (workspace != NULL && strcmp(workspace, task_id) == 0)
		workspace = NULL;
	int rc = hs_ckpt_restore(c->ckpt, task_id, checkpoint_id, workspace, &info, &restored,
				 &removed, err);
	if (rc != HS_OK)
		return rc;
	char *external = external_of(&info);
	hs_ckpt_info_dispose(&info);
	if (external == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	hs_ckpt_verify_result res;
	memset(&res, 0, sizeof(res));
	if ((rc = hs_ckpt_verify(c->ckpt, task_id, checkpoint_id, workspace, &res, err)) != HS_OK) {
		free(external);
		return rc;
	}
	if (!res.consistent)
		rc = hs_error_set(err, HS_INTERNAL,
				  "workspace differs from %s after restore (%zu added, %zu modified, "
				  "%zu deleted)",
				  checkpoint_id, res.added.count, res.modified.count, res.deleted.count);
	hs_ckpt_verify_result_dispose(&res);
	if (rc == HS_OK)
		*external_out = external;
	else
		free(external);
	return rc;
}

static int op_checkpoint_state(void *ctx, const char *task_id, const char *checkpoint_id,
			       char **external_out, hs_error *err)
{
	ops_ctx *c = ctx;
	hs_ckpt_info info;
	memset(&info, 0, sizeof(info));
	int rc = hs_ckpt_get(c->ckpt, task_id, checkpoint_id, &info, err);
	if (rc != HS_OK)
		return rc;
	char *external = external_of(&info);
	hs_ckpt_info_dispose(&info);
	if (external == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	*external_out = external;
	return HS_OK;
}

/* Defence in depth until the checkpoint module claims task ids through
 * tenancy: an id whose checkpoints another user created is taken. */
static int op_ckpt_check(void *ctx, const char *task_id, const hs_principal *caller,
			 hs_error *err)
{
	ops_ctx *c = ctx;
	hs_principal cc = { caller->user_id, caller->is_admin };
	hs_error e = { 0 };
	int rc = hs_ckpt_authorize(c->ckpt, task_id, &cc, &e);
	if (rc == HS_NOT_FOUND || rc == HS_OK)
		return HS_OK;
	if (rc == HS_DENIED)
		return hs_error_set(err, HS_EXISTS, "task id taken: %s belongs to another user",
				    task_id);
	return hs_error_set(err, rc, "%s", e.msg);
}

static int op_sandbox_recover(void *ctx, const char *sandbox_id, const char *owner, hs_error *err)
{
	ops_ctx *c = ctx;
	hs_sandbox_caller caller = { { owner, false }, 0 };
	hs_sandbox_info info;
	hs_error e = { 0 };
	memset(&info, 0, sizeof(info));
	/* The task moved here because its node was lost: its sandbox comes
	 * back on this node (bwrap: started again from its spec on the
	 * workspace just restored), or the error says why it cannot. */
	bool done = false;
	int rc = hs_sandbox_recover_lost(c->sb, &caller, sandbox_id, &done, &info, &e);
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", e.msg);
	if (done) {
		hs_sandbox_info_dispose(&info);
		return HS_OK;
	}
	rc = hs_sandbox_restore(c->sb, &caller, sandbox_id, NULL, true, &info, &e);
	if (rc == HS_OK) {
		hs_sandbox_info_dispose(&info);
		return HS_OK;
	}
	if (rc != HS_CONFLICT)
		return hs_error_set(err, rc, "sandbox restore: %s", e.msg);
	/* No snapshot: resume or keep what is there. */
	if ((rc = hs_sandbox_get(c->sb, &caller, sandbox_id, &info, err)) != HS_OK)
		return rc;
	hs_sandbox_state st = info.state;
	hs_sandbox_info_dispose(&info);
	if (st == HS_SANDBOX_RUNNING)
		return HS_OK;
	if (st == HS_SANDBOX_PAUSED) {
		rc = hs_sandbox_resume(c->sb, &caller, sandbox_id, &info, err);
		if (rc == HS_OK)
			hs_sandbox_info_dispose(&info);
		return rc;
	}
	return hs_error_set(err, HS_CONFLICT, "sandbox %s is %s and has no snapshot to restore",
			    sandbox_id, hs_sandbox_state_name(st));
}

static int op_sandbox_check(void *ctx, const char *sandbox_id, const hs_principal *caller,
			    hs_error *err)
{
	ops_ctx *c = ctx;
	hs_sandbox_caller sc = { *caller, 0 };
	hs_sandbox_info info;
	memset(&info, 0, sizeof(info));
	int rc = hs_sandbox_get(c->sb, &sc, sandbox_id, &info, err);
	if (rc == HS_OK)
		hs_sandbox_info_dispose(&info);
	return rc;
}

void hs_tasks__default_ops(hs_task_recovery_ops *out, hs_tasks_ops_ctx *c)
{
	memset(out, 0, sizeof(*out));
	out->ctx = c;
	if (c->ckpt != NULL) {
		out->latest = op_latest;
		out->restore = op_restore;
		out->checkpoint_state = op_checkpoint_state;
		out->checkpoints_check = op_ckpt_check;
	}
	if (c->sb != NULL) {
		out->sandbox_recover = op_sandbox_recover;
		out->sandbox_check = op_sandbox_check;
	}
}
