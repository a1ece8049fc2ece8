/* Comparing workspaces, indexes and trees: staging a workspace into the
 * shadow index (stat cache first), verify, and checkpoint-to-checkpoint diffs. */
#include "checkpoint_internal.h"

#include <git2/sys/diff.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int hs_ckpt__strlist_push(hs_ckpt_strlist *list, const char *s)
{
	char *copy = strdup(s);
	if (!copy)
		return -1;
	char **n = realloc(list->items, (list->count + 1) * sizeof(*n));
	if (!n) {
		free(copy);
		return -1;
	}
	n[list->count++] = copy;
	list->items = n;
	return 0;
}

/* Add every non-ignored file and symlink below rel (a directory holding a
 * nested repository, which libgit2's diff will not descend into and
 * git_index_add_bypath would record as a gitlink). `.git` entries are skipped
 * at every depth, exactly like libgit2's work tree iterator does. */
static int add_tree_as_content(git_repository *repo, git_index *index, const char *rel,
			       const char *task_id, hs_error *err)
{
	char full[PATH_MAX];
	const char *wd = git_repository_workdir(repo); /* ends with '/' */
	int rc = HS_OK, g;
	if (snprintf(full, sizeof(full), "%s%s", wd, rel) >= (int)sizeof(full))
		return hs_error_set(err, HS_LIMIT, "checkpoint: task %s: path too long: %s", task_id, rel);
	DIR *d = opendir(full);
	if (!d)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: task %s: opendir %s: %s", task_id,
				    rel, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0 || strcasecmp(nm, ".git") == 0)
			continue;
		char child[PATH_MAX];
		struct stat st;
		/* rel ends with '/' (libgit2 reports directories that way). */
		if (snprintf(child, sizeof(child), "%s%s", rel, nm) >= (int)sizeof(child) - 1) {
			rc = hs_error_set(err, HS_LIMIT, "checkpoint: task %s: path too long", task_id);
			goto done;
		}
		if (fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue; /* vanished meanwhile */
		bool is_dir = S_ISDIR(st.st_mode);
		if (!is_dir && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
			continue; /* sockets, fifos, devices: not git's business */
		if (is_dir) {
			size_t cl = strlen(child);
			child[cl] = '/';
			child[cl + 1] = '\0';
		}
		int ignored = 0;
		if ((g = git_ignore_path_is_ignored(&ignored, repo, child)) < 0) {
			rc = hs_ckpt__git_err(err, g, "ignore check", task_id);
			goto done;
		}
		if (ignored)
			continue;
		if (is_dir)
			rc = add_tree_as_content(repo, index, child, task_id, err);
		else if ((g = git_index_add_bypath(index, child)) < 0)
			rc = hs_ckpt__git_err(err, g, "add", task_id);
		if (rc)
			goto done;
	}
done:
	closedir(d);
	return rc;
}

int hs_ckpt__stage(git_repository *repo, git_index *index, const char *task_id, bool *changed,
		   size_t *hashed, hs_error *err)
{
	git_diff *diff = NULL;
	int rc = HS_OK, g;
	git_diff_options opts;
	git_diff_options_init(&opts, GIT_DIFF_OPTIONS_VERSION);
	/* UPDATE_INDEX refreshes the stat cache of files whose stat changed but
	 * content did not, so they are not hashed again next time. */
	opts.flags = GIT_DIFF_INCLUDE_UNTRACKED | GIT_DIFF_RECURSE_UNTRACKED_DIRS |
		     GIT_DIFF_INCLUDE_TYPECHANGE | GIT_DIFF_UPDATE_INDEX;
	if ((g = git_diff_index_to_workdir(&diff, repo, index, &opts)) < 0) {
		rc = hs_ckpt__git_err(err, g, "scan workspace", task_id);
		goto done;
	}
	size_t n = git_diff_num_deltas(diff);
	/* UPDATE_INDEX only refreshes entries it had to hash: no deltas and no
	 * hashing means the index was left exactly as loaded. */
	git_diff_perfdata perf = GIT_DIFF_PERFDATA_INIT;
	*changed = n > 0 || git_diff_get_perfdata(&perf, diff) < 0 || perf.oid_calculations > 0;
	*hashed = perf.oid_calculations;
	/* Removals first, so a file that became a directory (or back) never
	 * has its new entry removed after being added. */
	for (size_t i = 0; i < n; i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);
		if (d->status == GIT_DELTA_DELETED &&
		    (g = git_index_remove_bypath(index, d->old_file.path)) < 0) {
			rc = hs_ckpt__git_err(err, g, "remove", task_id);
			goto done;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);
		if (d->status == GIT_DELTA_DELETED)
			continue;
		if (d->new_file.mode == GIT_FILEMODE_TREE) {
			/* Only an untracked directory holding a `.git` is reported as
			 * a directory: a nested repository, captured as content. */
			rc = add_tree_as_content(repo, index, d->new_file.path, task_id, err);
		} else if ((g = git_index_add_bypath(index, d->new_file.path)) < 0) {
			rc = hs_ckpt__git_err(err, g, "add", task_id);
		}
		if (rc)
			goto done;
	}
done:
	git_diff_free(diff);
	return rc;
}

int hs_ckpt__compare(git_repository *repo, git_index *index, git_tree *tree, const char *task_id,
		     hs_ckpt_verify_result *out, bool *refreshed, hs_error *err)
{
	(void)index; /* libgit2 uses the repo's index, which index is */
	git_diff *diff = NULL;
	hs_ckpt_verify_result res;
	memset(&res, 0, sizeof(res));
	int rc = HS_OK, g;
	git_diff_options opts;
	git_diff_options_init(&opts, GIT_DIFF_OPTIONS_VERSION);
	opts.flags = GIT_DIFF_INCLUDE_UNTRACKED | GIT_DIFF_RECURSE_UNTRACKED_DIRS |
		     GIT_DIFF_INCLUDE_TYPECHANGE | GIT_DIFF_UPDATE_INDEX;
	if ((g = git_diff_tree_to_workdir_with_index(&diff, repo, tree, &opts)) < 0) {
		rc = hs_ckpt__git_err(err, g, "compare", task_id);
		goto done;
	}
	size_t n = git_diff_num_deltas(diff);
	for (size_t i = 0; i < n; i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);
		hs_ckpt_strlist *l = NULL;
		const char *path = d->new_file.path;
		switch (d->status) {
		case GIT_DELTA_ADDED:
		case GIT_DELTA_UNTRACKED: l = &res.added; break;
		case GIT_DELTA_DELETED: l = &res.deleted; path = d->old_file.path; break;
		case GIT_DELTA_MODIFIED:
		case GIT_DELTA_TYPECHANGE:
		case GIT_DELTA_RENAMED:
		case GIT_DELTA_COPIED: l = &res.modified; break;
		default: break; /* unmodified, ignored, unreadable */
		}
		if (l && hs_ckpt__strlist_push(l, path) != 0) {
			rc = hs_error_set(err, HS_INTERNAL, "checkpoint compare: out of memory");
			goto done;
		}
	}
	res.consistent = res.added.count == 0 && res.modified.count == 0 && res.deleted.count == 0;
	if (refreshed) {
		git_diff_perfdata perf = GIT_DIFF_PERFDATA_INIT;
		*refreshed = git_diff_get_perfdata(&perf, diff) < 0 || perf.oid_calculations > 0;
	}
	*out = res;
	memset(&res, 0, sizeof(res));
done:
	hs_ckpt_verify_result_dispose(&res);
	git_diff_free(diff);
	return rc;
}

int hs_ckpt__count_changes(git_repository *repo, git_tree *old_tree, git_tree *new_tree,
			   uint32_t *out, const char *task_id, hs_error *err)
{
	git_diff *diff = NULL;
	int g = git_diff_tree_to_tree(&diff, repo, old_tree, new_tree, NULL);
	if (g < 0)
		return hs_ckpt__git_err(err, g, "count changes", task_id);
	*out = (uint32_t)git_diff_num_deltas(diff);
	git_diff_free(diff);
	return HS_OK;
}

static hs_ckpt_change map_status(git_delta_t s)
{
	switch (s) {
	case GIT_DELTA_ADDED:
	case GIT_DELTA_COPIED: return HS_CKPT_ADDED;
	case GIT_DELTA_DELETED: return HS_CKPT_DELETED;
	case GIT_DELTA_RENAMED: return HS_CKPT_RENAMED;
	case GIT_DELTA_TYPECHANGE: return HS_CKPT_TYPECHANGE;
	default: return HS_CKPT_MODIFIED;
	}
}

int hs_ckpt__tree_diff(git_repository *repo, git_tree *from, git_tree *to, const char *task_id,
		       hs_ckpt_diff_entry **out, size_t *count, hs_error *err)
{
	git_diff *diff = NULL;
	hs_ckpt_diff_entry *arr = NULL;
	size_t n = 0;
	int rc = HS_OK, g;
	if ((g = git_diff_tree_to_tree(&diff, repo, from, to, NULL)) < 0 ||
	    (g = git_diff_find_similar(diff, NULL)) < 0) {
		rc = hs_ckpt__git_err(err, g, "diff", task_id);
		goto done;
	}
	size_t total = git_diff_num_deltas(diff);
	if (total) {
		arr = calloc(total, sizeof(*arr));
		if (!arr) {
			rc = hs_error_set(err, HS_INTERNAL, "checkpoint diff: out of memory");
			goto done;
		}
	}
	for (size_t i = 0; i < total; i++) {
		git_patch *patch = NULL;
		size_t adds = 0, dels = 0;
		if ((g = git_patch_from_diff(&patch, diff, i)) < 0) {
			rc = hs_ckpt__git_err(err, g, "diff", task_id);
			goto done;
		}
		const git_diff_delta *d = patch ? git_patch_get_delta(patch)
						: git_diff_get_delta(diff, i);
		if (patch && (g = git_patch_line_stats(NULL, &adds, &dels, patch)) < 0) {
			git_patch_free(patch);
			rc = hs_ckpt__git_err(err, g, "diff", task_id);
			goto done;
		}
		hs_ckpt_diff_entry *e = &arr[n++];
		e->status = map_status(d->status);
		e->binary = (d->flags & GIT_DIFF_FLAG_BINARY) != 0;
		e->additions = (uint32_t)adds;
		e->deletions = (uint32_t)dels;
		e->path = strdup(d->status == GIT_DELTA_DELETED ? d->old_file.path : d->new_file.path);
		e->old_path = strdup(d->old_file.path);
		git_patch_free(patch);
		if (!e->path || !e->old_path) {
			rc = hs_error_set(err, HS_INTERNAL, "checkpoint diff: out of memory");
			goto done;
		}
	}
	*out = arr;
	*count = n;
	arr = NULL;
	n = 0;
done:
	hs_ckpt_diff_free(arr, n);
	git_diff_free(diff);
	return rc;
}

void hs_ckpt_diff_free(hs_ckpt_diff_entry *arr, size_t count)
{
	if (!arr)
		return;
	for (size_t i = 0; i < count; i++) {
		free(arr[i].path);
		free(arr[i].old_path);
	}
	free(arr);
}
