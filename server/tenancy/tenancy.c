/* Task ownership and workspace resolution (tenancy.h). */
#include "tenancy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "ids.h"
#include "store.h"

#define WORKSPACE_NAME_MAX 1024
#define COMPONENT_MAX 255

struct hs_tenancy {
	hs_store *store;
	char *root;
	int root_fd; /* O_PATH handle on the workspace root */
};

int hs_tenancy_new(hs_tenancy **out, const hs_tenancy_config *cfg, hs_error *err)
{
	if (cfg == NULL || cfg->store == NULL || cfg->workspace_root == NULL ||
	    cfg->workspace_root[0] != '/')
		return hs_error_set(err, HS_INVALID, "tenancy: a store and an absolute workspace root are required");
	int fd = open(cfg->workspace_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return hs_error_set(err, HS_INVALID, "workspace-root %s: %s", cfg->workspace_root,
				    strerror(errno));
	hs_tenancy *t = calloc(1, sizeof(*t));
	if (t == NULL || (t->root = strdup(cfg->workspace_root)) == NULL) {
		free(t);
		close(fd);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	t->store = cfg->store;
	t->root_fd = fd;
	*out = t;
	return HS_OK;
}

void hs_tenancy_free(hs_tenancy *t)
{
	if (t == NULL)
		return;
	close(t->root_fd);
	free(t->root);
	free(t);
}

const char *hs_tenancy_workspace_root(const hs_tenancy *t)
{
	return t->root;
}

int hs_tenancy_claim_task(hs_tenancy *t, const hs_principal *who, const char *task_id,
			  hs_error *err)
{
	int rc;
	if ((rc = hs_id_check_task("task_id", task_id, err)) != HS_OK)
		return rc;
	if (who == NULL)
		return HS_OK;
	if (who->user_id == NULL || who->user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "no caller identity");
	char owner[HS_STORE_ID_MAX];
	if ((rc = hs_store_task_claim(t->store, task_id, who->user_id, hs_clock_wall_ms(), owner,
				      err)) != HS_OK)
		return rc;
	if (!hs_principal_may(who, owner))
		return hs_error_set(err, HS_NOT_FOUND, "task %s not found", task_id);
	return HS_OK;
}

int hs_tenancy_check_task(hs_tenancy *t, const hs_principal *who, const char *task_id,
			  char *owner_out, hs_error *err)
{
	int rc;
	if ((rc = hs_id_check_task("task_id", task_id, err)) != HS_OK)
		return rc;
	char owner[HS_STORE_ID_MAX];
	hs_error e = { 0 };
	rc = hs_store_task_owner(t->store, task_id, owner, &e);
	if (rc == HS_NOT_FOUND || (rc == HS_OK && !hs_principal_may(who, owner)))
		return hs_error_set(err, HS_NOT_FOUND, "task %s not found", task_id);
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", e.msg);
	if (owner_out != NULL)
		snprintf(owner_out, HS_PRINCIPAL_ID_MAX, "%s", owner);
	return HS_OK;
}

/* A relative path of non-empty components, none "." or "..", no control
 * characters, bounded in length. */
static int check_components(const char *rel, hs_error *err)
{
	size_t n = strlen(rel);
	if (n == 0)
		return hs_error_set(err, HS_INVALID, "workspace: empty");
	if (n >= WORKSPACE_NAME_MAX)
		return hs_error_set(err, HS_INVALID, "workspace: longer than %d bytes",
				    WORKSPACE_NAME_MAX - 1);
	if (rel[0] == '/')
		return hs_error_set(err, HS_INVALID,
				    "workspace: must be relative to the workspace root");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)rel[i] < 0x20 || rel[i] == 0x7f)
			return hs_error_set(err, HS_INVALID, "workspace: control characters");
	const char *p = rel;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0)
			return hs_error_set(err, HS_INVALID, "workspace: empty path component");
		if (len > COMPONENT_MAX)
			return hs_error_set(err, HS_INVALID, "workspace: a component is longer than %d bytes",
					    COMPONENT_MAX);
		if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
			return hs_error_set(err, HS_INVALID, "workspace: \".\" and \"..\" not allowed");
		if (slash == NULL)
			return HS_OK;
		p = slash + 1;
	}
}

int hs_tenancy_workspace_name(const char *task_id, const char *workspace, char **out,
			      hs_error *err)
{
	int rc;
	const char *name = workspace && workspace[0] ? workspace : task_id;
	if (name == NULL || name[0] == '\0')
		return hs_error_set(err, HS_INVALID, "workspace: required (or a task_id)");
	if ((rc = check_components(name, err)) != HS_OK)
		return rc;
	const char *slash = strchr(name, '/');
	size_t len = slash ? (size_t)(slash - name) : strlen(name);
	char first[HS_ID_MAX + 2];
	if (len > HS_ID_MAX || !(memcpy(first, name, len), first[len] = '\0', hs_id_is_task(first)))
		return hs_error_set(err, HS_INVALID,
				    "workspace: must be <task_id> or <task_id>/<dir>, with a valid task id first");
	if ((*out = strdup(name)) == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	return HS_OK;
}

int hs_tenancy_open_beneath(int dirfd, const char *rel, unsigned flags, int *fd_out,
			    hs_error *err)
{
	int rc;
	if ((rc = check_components(rel, err)) != HS_OK)
		return rc;
	int cur = dup(dirfd);
	if (cur < 0)
		return hs_error_set(err, HS_UNAVAILABLE, "workspace: %s", strerror(errno));
	const char *p = rel;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		char comp[COMPONENT_MAX + 1];
		memcpy(comp, p, len);
		comp[len] = '\0';
		/* O_NOFOLLOW with O_PATH opens a symlink itself; O_DIRECTORY then
		 * refuses it: a link where a directory is expected is never
		 * followed. */
		int next = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && (flags & HS_WORKSPACE_CREATE)) {
			if (mkdirat(cur, comp, 0770) != 0 && errno != EEXIST) {
				rc = hs_error_set(err, HS_UNAVAILABLE, "workspace %.*s: mkdir: %s",
						  (int)(p + len - rel), rel, strerror(errno));
				break;
			}
			next = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (next < 0) {
			int e = errno;
			struct stat st;
			bool link = fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				    S_ISLNK(st.st_mode);
			if (e == ENOENT)
				rc = hs_error_set(err, HS_NOT_FOUND, "workspace %.*s does not exist",
						  (int)(p + len - rel), rel);
			else if (link || e == ELOOP)
				rc = hs_error_set(err, HS_CONFLICT,
						  "workspace %.*s is a symbolic link (never followed)",
						  (int)(p + len - rel), rel);
			else if (e == ENOTDIR)
				rc = hs_error_set(err, HS_CONFLICT, "workspace %.*s is not a directory",
						  (int)(p + len - rel), rel);
			else
				rc = hs_error_set(err, HS_UNAVAILABLE, "workspace %.*s: %s",
						  (int)(p + len - rel), rel, strerror(e));
			break;
		}
		close(cur);
		cur = next;
		if (slash == NULL) {
			*fd_out = cur;
			return HS_OK;
		}
		p = slash + 1;
	}
	close(cur);
	return rc;
}

int hs_tenancy_open_workspace(hs_tenancy *t, const hs_principal *who, const char *task_id,
			      const char *workspace, unsigned flags, int *fd_out, char **name_out,
			      hs_error *err)
{
	char *name = NULL;
	int rc = hs_tenancy_workspace_name(task_id, workspace, &name, err);
	if (rc != HS_OK)
		return rc;
	char owner_task[HS_ID_MAX + 1];
	size_t len = strcspn(name, "/");
	memcpy(owner_task, name, len);
	owner_task[len] = '\0';
	int fd = -1;
	if ((rc = hs_tenancy_claim_task(t, who, owner_task, err)) != HS_OK ||
	    (rc = hs_tenancy_open_beneath(t->root_fd, name, flags, &fd, err)) != HS_OK) {
		free(name);
		return rc;
	}
	*fd_out = fd;
	if (name_out != NULL)
		*name_out = name;
	else
		free(name);
	return HS_OK;
}
