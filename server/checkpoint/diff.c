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

/* Files (blobs and links) below a tree entry: 1 for a file, all of them for
 * a tree. -1 on error. */
static int64_t files_below(git_repository *repo, const git_tree_entry *e, int depth)
{
	if (git_tree_entry_type(e) != GIT_OBJECT_TREE)
		return git_tree_entry_type(e) == GIT_OBJECT_BLOB ? 1 : 0;
	if (depth > HS_CKPT__DEPTH_MAX + 1)
		return -1;
	git_tree *t = NULL;
	if (git_tree_lookup(&t, repo, git_tree_entry_id(e)) < 0)
		return -1;
	int64_t n = 0;
	for (size_t i = 0; i < git_tree_entrycount(t) && n >= 0; i++) {
		int64_t k = files_below(repo, git_tree_entry_byindex(t, i), depth + 1);
		n = k < 0 ? -1 : n + k;
	}
	git_tree_free(t);
	return n;
}

/* Paths whose file differs between two trees (either may be NULL), as
 * git's tree-to-tree diff counts them (a file replaced by a directory is
 * one deletion plus its additions), entering only subtrees that differ:
 * a checkpoint of 10 changed files costs the same at 200,000 files. */
static int64_t count_diff(git_repository *repo, git_tree *a, git_tree *b, int depth)
{
	if (depth > HS_CKPT__DEPTH_MAX + 1)
		return -1;
	int64_t n = 0;
	size_t na = a ? git_tree_entrycount(a) : 0, nb = b ? git_tree_entrycount(b) : 0;
	for (size_t i = 0; i < nb && n >= 0; i++) {
		const git_tree_entry *eb = git_tree_entry_byindex(b, i);
		const git_tree_entry *ea = a ? git_tree_entry_byname(a, git_tree_entry_name(eb)) : NULL;
		if (ea && git_oid_equal(git_tree_entry_id(ea), git_tree_entry_id(eb)) &&
		    git_tree_entry_filemode(ea) == git_tree_entry_filemode(eb))
			continue;
		bool ta = ea && git_tree_entry_type(ea) == GIT_OBJECT_TREE;
		bool tb = git_tree_entry_type(eb) == GIT_OBJECT_TREE;
		int64_t k;
		if (ta && tb) {
			git_tree *sa = NULL, *sb = NULL;
			k = git_tree_lookup(&sa, repo, git_tree_entry_id(ea)) < 0 ||
					    git_tree_lookup(&sb, repo, git_tree_entry_id(eb)) < 0
				    ? -1
				    : count_diff(repo, sa, sb, depth + 1);
			git_tree_free(sa);
			git_tree_free(sb);
		} else if (ea && !ta && !tb) {
			/* Modified or chmod()ed: one; a file that became a link or
			 * the reverse: a deletion and an addition, as git counts. */
			bool la = git_tree_entry_filemode(ea) == GIT_FILEMODE_LINK;
			bool lb = git_tree_entry_filemode(eb) == GIT_FILEMODE_LINK;
			k = la == lb ? 1 : 2;
		} else {
			int64_t x = ea ? files_below(repo, ea, depth + 1) : 0;
			int64_t y = files_below(repo, eb, depth + 1);
			k = x < 0 || y < 0 ? -1 : x + y;
		}
		n = k < 0 ? -1 : n + k;
	}
	for (size_t i = 0; i < na && n >= 0; i++) {
		const git_tree_entry *ea = git_tree_entry_byindex(a, i);
		if (b && git_tree_entry_byname(b, git_tree_entry_name(ea)))
			continue;
		int64_t k = files_below(repo, ea, depth + 1);
		n = k < 0 ? -1 : n + k;
	}
	return n;
}

int hs_ckpt__count_changes(git_repository *repo, git_tree *old_tree, git_tree *new_tree,
			   uint32_t *out, const char *task_id, hs_error *err)
{
	int64_t n = count_diff(repo, old_tree, new_tree, 0);
	if (n < 0)
		return hs_ckpt__git_err(err, -1, "count changes", task_id);
	*out = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
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
