/* Checkpoint-to-checkpoint diffs (tree to tree, libgit2's diff with rename
 * detection) and small list helpers. Workspaces are compared in restore.c. */
#include "checkpoint_internal.h"

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
