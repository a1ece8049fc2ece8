/* Workspaces as the checkpoint module opens them: through the tenancy
 * (names, ownership, beneath the root without following links), or, for a
 * manager without one, with the same naming and walk minus ownership. */
#include "checkpoint_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int hs_ckpt__workspace_open(hs_ckpt_mgr *mgr, const hs_principal *who, const char *task_id,
			    const char *workspace, bool create, int *fd_out, char **name_out,
			    hs_error *err)
{
	char *name = NULL;
	int fd = -1, rc;
	hs_error e = { 0 };
	if ((rc = hs_tenancy_workspace_name(task_id, workspace, &name, err)) != HS_OK)
		return rc;
	/* The workspace belongs to its first component's task (tenancy.h),
	 * claimed as hs_tenancy_open_workspace does; then the walk. */
	char owner_task[HS_ID_MAX + 1];
	size_t len = strcspn(name, "/");
	memcpy(owner_task, name, len);
	owner_task[len] = '\0';
	if (mgr->tenancy != NULL && who != NULL &&
	    (rc = hs_tenancy_claim_task(mgr->tenancy, who, owner_task, err)) != HS_OK)
		goto done;
	/* create makes the last directory only: its parent must exist (a
	 * misspelt path is an error, not a new tree). */
	const char *slash = strrchr(name, '/');
	if (!create || slash == NULL) {
		rc = hs_tenancy_open_beneath(mgr->ws_root_fd, name, create ? HS_WORKSPACE_CREATE : 0,
					     &fd, &e);
	} else {
		int pfd = -1;
		*(char *)slash = '\0';
		rc = hs_tenancy_open_beneath(mgr->ws_root_fd, name, 0, &pfd, &e);
		*(char *)slash = '/';
		if (rc == HS_OK) {
			hs_error_clear(&e);
			rc = hs_tenancy_open_beneath(pfd, slash + 1, HS_WORKSPACE_CREATE, &fd, &e);
			close(pfd);
		}
	}
	if (rc == HS_NOT_FOUND) {
		/* Say which directory is missing and what to do (issue 20). */
		rc = hs_error_set(err, HS_NOT_FOUND,
				  "workspace %s: no such directory under the workspace root; create "
				  "<workspace-root>/%s first, or leave workspace empty to use the "
				  "task's default workspace",
				  name, name);
		goto done;
	}
	if (rc != HS_OK) {
		rc = hs_error_set(err, rc, "%s", e.msg);
		goto done;
	}
	*fd_out = fd;
	if (name_out != NULL) {
		*name_out = name;
		name = NULL;
	}
done:
	free(name);
	return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path);
	return unlink(path);
}

int hs_ckpt__rmtree(const char *path)
{
	return nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}
