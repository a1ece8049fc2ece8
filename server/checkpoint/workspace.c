/* Task id validation and workspace resolution: every workspace is an existing
 * directory strictly below the configured root, after resolving symlinks. */
#include "checkpoint_internal.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A relative path with no "..", no empty-root, no absolute start. "." parts
 * are harmless (realpath folds them). */
static int check_relative(const char *rel, hs_error *err)
{
	if (rel[0] == '/')
		return hs_error_set(err, HS_INVALID, "workspace: must be relative to the workspace root");
	const char *p = rel;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return hs_error_set(err, HS_INVALID, "workspace: \"..\" not allowed");
		if (!slash)
			break;
		p = slash + 1;
	}
	if (strlen(rel) >= PATH_MAX / 2)
		return hs_error_set(err, HS_INVALID, "workspace: too long");
	return HS_OK;
}

static bool strictly_below(const char *root, const char *path)
{
	size_t n = strlen(root);
	return strncmp(path, root, n) == 0 && path[n] == '/' && path[n + 1] != '\0';
}

int hs_ckpt__workspace(const hs_ckpt_mgr *mgr, const char *task_id, const char *workspace,
		       bool create_missing, char **out, hs_error *err)
{
	char joined[PATH_MAX];
	char resolved[PATH_MAX];
	const char *rel = (workspace && workspace[0]) ? workspace : task_id;
	int rc = check_relative(rel, err);
	if (rc)
		return rc;
	int n = snprintf(joined, sizeof(joined), "%s/%s", mgr->ws_root, rel);
	if (n < 0 || (size_t)n >= sizeof(joined))
		return hs_error_set(err, HS_INVALID, "workspace: too long");

	if (realpath(joined, resolved) == NULL) {
		if (errno != ENOENT || !create_missing)
			return errno == ENOENT
				       ? hs_error_set(err, HS_NOT_FOUND, "workspace %s: does not exist", rel)
				       : hs_error_set(err, HS_INVALID, "workspace %s: %s", rel, strerror(errno));
		/* Create only the last component, and only below the root. */
		char parent[PATH_MAX];
		memcpy(parent, joined, (size_t)n + 1);
		while (n > 1 && parent[n - 1] == '/')
			parent[--n] = '\0';
		char *slash = strrchr(parent, '/');
		*slash = '\0';
		if (realpath(parent, resolved) == NULL)
			return hs_error_set(err, HS_NOT_FOUND, "workspace %s: parent does not exist", rel);
		if (strcmp(resolved, mgr->ws_root) != 0 && !strictly_below(mgr->ws_root, resolved))
			return hs_error_set(err, HS_INVALID, "workspace %s: outside the workspace root", rel);
		if (mkdir(joined, 0755) != 0 && errno != EEXIST)
			return hs_error_set(err, HS_INTERNAL, "workspace %s: mkdir: %s", rel, strerror(errno));
		if (realpath(joined, resolved) == NULL)
			return hs_error_set(err, HS_INTERNAL, "workspace %s: %s", rel, strerror(errno));
	}
	if (!strictly_below(mgr->ws_root, resolved))
		return hs_error_set(err, HS_INVALID, "workspace %s: outside the workspace root", rel);
	struct stat st;
	if (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode))
		return hs_error_set(err, HS_CONFLICT, "workspace %s: not a directory", rel);
	char *copy = strdup(resolved);
	if (!copy)
		return hs_error_set(err, HS_INTERNAL, "workspace: out of memory");
	*out = copy;
	return HS_OK;
}

int hs_ckpt_workspace_resolve(hs_ckpt_mgr *mgr, const char *task_id, const char *workspace,
			      char **out, hs_error *err)
{
	int rc = hs_id_check_task("task_id", task_id, err);
	if (rc)
		return rc;
	return hs_ckpt__workspace(mgr, task_id, workspace, false, out, err);
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
