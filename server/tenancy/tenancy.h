/* Tenancy: who owns what, in one place. Every task-scoped resource
 * (checkpoints, sandboxes, events, workspaces) belongs to the owner of its
 * task id, and task ids are one namespace: the first user to name an id
 * (by registering it, checkpointing it, giving it to a sandbox or naming its
 * workspace) owns it for good (hs_store_task_claim, atomic).
 *
 * Workspaces are named relative to the workspace root and are always owned
 * by a task: "<task_id>" (the default) or "<task_id>/<sub/dir>". A name is
 * resolved one component at a time beneath an open handle on the root,
 * never following a symbolic link, so no spelling and no link planted by an
 * agent can reach outside the root or into another tenant's workspace.
 *
 * Errors: HS_INVALID naming the field; HS_NOT_FOUND for a task id (or a
 * workspace) that belongs to someone else, as for a missing one, so
 * existence does not leak; HS_CONFLICT when the filesystem disagrees (a
 * symbolic link or a file where a directory is expected); HS_UNAVAILABLE
 * when the store or the disk fails. Thread-safe; calls may block on the
 * store and the disk. */
#ifndef HS_TENANCY_H
#define HS_TENANCY_H

#include <stdbool.h>

#include "error.h"
#include "principal.h"

typedef struct hs_store hs_store;
typedef struct hs_tenancy hs_tenancy;

typedef struct hs_tenancy_config {
	hs_store *store;            /* borrowed; must outlive the tenancy */
	const char *workspace_root; /* an existing directory (absolute path) */
} hs_tenancy_config;

/* Opens a handle on the workspace root. HS_INVALID if it is not an
 * existing directory. Free with hs_tenancy_free (NULL is a no-op). */
int hs_tenancy_new(hs_tenancy **out, const hs_tenancy_config *cfg, hs_error *err);
void hs_tenancy_free(hs_tenancy *t);

/* The workspace root as configured (borrowed). */
const char *hs_tenancy_workspace_root(const hs_tenancy *t);

/* May who act on task_id and what is scoped to it? An id nobody holds is
 * claimed for who (admins claim for themselves too). who == NULL is
 * harnessd itself: allowed, nothing claimed. HS_NOT_FOUND "task <id> not
 * found" when another user holds it (admins pass). */
int hs_tenancy_claim_task(hs_tenancy *t, const hs_principal *who, const char *task_id,
			  hs_error *err);

/* Like hs_tenancy_claim_task without claiming: HS_NOT_FOUND also for an id
 * nobody holds. *owner_out (optional, HS_PRINCIPAL_ID_MAX bytes) gets the
 * owner on success. */
int hs_tenancy_check_task(hs_tenancy *t, const hs_principal *who, const char *task_id,
			  char *owner_out, hs_error *err);

/* The canonical name of a workspace: workspace (NULL/"" = task_id) checked
 * as a relative path of non-empty components, none "." or "..", no control
 * characters, under 1024 bytes, whose first component is a task id.
 * HS_INVALID naming "workspace". *out is heap (free()). */
int hs_tenancy_workspace_name(const char *task_id, const char *workspace, char **out,
			      hs_error *err);

enum {
	HS_WORKSPACE_CREATE = 1u << 0, /* create missing directories (mode 0770) */
};

/* Resolves a workspace for who: the name as hs_tenancy_workspace_name, its
 * task id claimed as hs_tenancy_claim_task (who == NULL: no check), then
 * opened beneath the root one component at a time without following a
 * symbolic link. *fd_out is an O_PATH directory descriptor (close() it);
 * *name_out (optional, heap) the canonical name. A missing directory is
 * HS_NOT_FOUND naming its path relative to the root unless CREATE. */
int hs_tenancy_open_workspace(hs_tenancy *t, const hs_principal *who, const char *task_id,
			      const char *workspace, unsigned flags, int *fd_out, char **name_out,
			      hs_error *err);

/* Opens rel (a relative path as above, no task check) beneath dirfd the
 * same way: each component a directory, never a symbolic link. The
 * primitive behind hs_tenancy_open_workspace, for code that walks inside a
 * workspace. O_PATH descriptor in *fd_out. */
int hs_tenancy_open_beneath(int dirfd, const char *rel, unsigned flags, int *fd_out,
			    hs_error *err);

#endif
