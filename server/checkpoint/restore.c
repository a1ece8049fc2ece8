/* Writing a checkpoint back into a workspace, and comparing one with it.
 *
 * Why not libgit2's checkout: it writes by path below the work tree
 * (open(), mkdir(), unlink() on "<workdir>/<path>"), so a directory the
 * agent replaced by a symbolic link is followed and the write lands outside
 * the workspace, as harnessd's uid. Here every write and removal goes
 * through directory descriptors opened beneath the workspace without
 * following links:
 *   - the paths to change come from a scan (scan.c) compared with the
 *     checkpoint's tree: only what differs is touched;
 *   - removals: the parent is opened beneath the workspace
 *     (RESOLVE_NO_SYMLINKS), the entry unlinked there; directories that
 *     became empty go too (never one holding a `.git`);
 *   - writes: each directory component is opened with O_NOFOLLOW from its
 *     parent; a missing one is created, a file or a symbolic link where a
 *     directory is expected is removed (the link itself) and replaced by a
 *     directory. Content comes from the object database, is written to a
 *     fresh temporary name (O_CREAT | O_EXCL | O_NOFOLLOW) in that directory
 *     and renamed over the entry (renameat never follows the old entry).
 *     Symbolic links are recreated as links (symlinkat + rename).
 * Untracked content of a nested repository the checkpoint does not contain
 * at all (the agent's own repo, created since) is left alone, and a `.git`
 * is never removed: a directory holding one that stands where the
 * checkpoint has a file is a conflict (FAILED_PRECONDITION). */
#include "checkpoint_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a tree as a file list ------------------------------------------------------ */

typedef struct tree_walk {
	hs_ckpt__files *out;
	int rc;
} tree_walk;

static int tree_cb(const char *root, const git_tree_entry *entry, void *payload)
{
	tree_walk *tw = payload;
	git_filemode_t m = git_tree_entry_filemode(entry);
	if (m == GIT_FILEMODE_TREE)
		return 0;
	if (m != GIT_FILEMODE_BLOB && m != GIT_FILEMODE_BLOB_EXECUTABLE && m != GIT_FILEMODE_LINK)
		return 0; /* gitlinks: never recorded by us */
	char path[4200];
	if (snprintf(path, sizeof(path), "%s%s", root, git_tree_entry_name(entry)) >= (int)sizeof(path)) {
		tw->rc = HS_LIMIT;
		return -1;
	}
	hs_ckpt__file *f = hs_ckpt__files_add(tw->out, path);
	if (f == NULL) {
		tw->rc = HS_INTERNAL;
		return -1;
	}
	f->mode = m;
	git_oid_cpy(&f->id, git_tree_entry_id(entry));
	return 0;
}

int hs_ckpt__tree_files(git_tree *tree, hs_ckpt__files *out, const char *task_id, hs_error *err)
{
	tree_walk tw = { out, HS_OK };
	memset(out, 0, sizeof(*out));
	int g = git_tree_walk(tree, GIT_TREEWALK_PRE, tree_cb, &tw);
	if (g < 0 || tw.rc != HS_OK) {
		hs_ckpt__files_dispose(out);
		if (tw.rc == HS_LIMIT)
			return hs_error_set(err, HS_LIMIT, "checkpoint: task %s: path too long", task_id);
		if (tw.rc == HS_INTERNAL)
			return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		return hs_ckpt__git_err(err, g, "read tree", task_id);
	}
	hs_ckpt__files_sort(out);
	return HS_OK;
}

/* ---- compare ------------------------------------------------------------------------ */

int hs_ckpt__compare_files(const hs_ckpt__files *ws, const hs_ckpt__files *tree,
			   hs_ckpt_verify_result *out, hs_error *err)
{
	hs_ckpt_verify_result r;
	memset(&r, 0, sizeof(r));
	size_t i = 0, j = 0;
	while (i < ws->n || j < tree->n) {
		int c = i == ws->n ? 1 : j == tree->n ? -1 : strcmp(ws->v[i].path, tree->v[j].path);
		hs_ckpt_strlist *l = NULL;
		const char *p = NULL;
		if (c < 0) {
			l = &r.added;
			p = ws->v[i++].path;
		} else if (c > 0) {
			l = &r.deleted;
			p = tree->v[j++].path;
		} else {
			if (ws->v[i].mode != tree->v[j].mode || !git_oid_equal(&ws->v[i].id, &tree->v[j].id)) {
				l = &r.modified;
				p = ws->v[i].path;
			}
			i++;
			j++;
		}
		if (l && hs_ckpt__strlist_push(l, p) != 0) {
			hs_ckpt_verify_result_dispose(&r);
			return hs_error_set(err, HS_INTERNAL, "checkpoint compare: out of memory");
		}
	}
	r.consistent = r.added.count == 0 && r.modified.count == 0 && r.deleted.count == 0;
	*out = r;
	return HS_OK;
}

int hs_ckpt__index_refresh(git_index *index, const hs_ckpt__files *ws, bool *changed,
			   const char *task_id, hs_error *err)
{
	*changed = false;
	for (size_t i = 0; i < ws->n; i++) {
		const hs_ckpt__file *f = &ws->v[i];
		if (!f->hashed || !f->has_stat)
			continue;
		const git_index_entry *e = git_index_get_bypath(index, f->path, 0);
		if (!e || e->mode != f->mode || !git_oid_equal(&e->id, &f->id))
			continue; /* content changed: the index keeps what the checkpoint has */
		git_index_entry ne;
		hs_ckpt__entry_from_file(&ne, f);
		int g = git_index_add(index, &ne);
		if (g < 0)
			return hs_ckpt__git_err(err, g, "index", task_id);
		*changed = true;
	}
	return HS_OK;
}

/* ---- writing beneath the workspace --------------------------------------------------- */


/* rm -r of name in dirfd, beneath it, never following a link; refuses
 * (HS_CONFLICT) a tree that holds a `.git`. */
static int remove_tree(int dirfd, const char *name, const char *shown, int depth, hs_error *err)
{
	if (depth > HS_CKPT__DEPTH_MAX)
		return hs_error_set(err, HS_LIMIT, "restore: %s: too deep to remove", shown);
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOTDIR || errno == ELOOP)
			return unlinkat(dirfd, name, 0) == 0 || errno == ENOENT
				       ? HS_OK
				       : hs_error_set(err, HS_UNAVAILABLE, "restore: remove %s: %s", shown,
						      strerror(errno));
		return errno == ENOENT ? HS_OK
				       : hs_error_set(err, HS_UNAVAILABLE, "restore: open %s: %s", shown,
						      strerror(errno));
	}
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return hs_error_set(err, HS_UNAVAILABLE, "restore: %s: %s", shown, strerror(errno));
	}
	int rc = HS_OK;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
			continue;
		if (hs_ckpt__is_dot_git(nm, strlen(nm))) {
			rc = hs_error_set(err, HS_CONFLICT,
					  "restore: %s holds a nested repository (.git) where the checkpoint "
					  "has a file; move it away and retry",
					  shown);
			break;
		}
		struct stat st;
		if (fstatat(fd, nm, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if ((rc = remove_tree(fd, nm, shown, depth + 1, err)) != HS_OK)
				break;
		} else if (unlinkat(fd, nm, 0) != 0 && errno != ENOENT) {
			rc = hs_error_set(err, HS_UNAVAILABLE, "restore: remove in %s: %s", shown,
					  strerror(errno));
			break;
		}
	}
	closedir(d);
	if (rc == HS_OK && unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		rc = hs_error_set(err, HS_UNAVAILABLE, "restore: rmdir %s: %s", shown, strerror(errno));
	return rc;
}

/* Open (creating as needed) the directory rel ("" or "a/b") beneath wsfd,
 * one component at a time; whatever stands where a directory is expected
 * and is not one (a file, a symbolic link) is removed first. O_PATH fd or
 * a negative hs_code. */
static int ensure_dir(int wsfd, const char *rel, hs_error *err)
{
	int cur = openat(wsfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return hs_error_set(err, HS_UNAVAILABLE, "restore: workspace: %s", strerror(errno));
	for (const char *p = rel; *p;) {
		size_t len = strcspn(p, "/");
		char comp[256];
		if (len == 0 || len >= sizeof(comp) || hs_ckpt__is_dot_git(p, len) ||
		    (len <= 2 && strncmp(p, "..", len) == 0)) {
			close(cur);
			return hs_error_set(err, HS_INTERNAL, "restore: unexpected path %s", rel);
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		int next = -1;
		for (int attempt = 0; attempt < 3 && next < 0; attempt++) {
			next = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (next >= 0)
				break;
			if (errno == ENOENT) {
				if (mkdirat(cur, comp, 0755) != 0 && errno != EEXIST)
					break;
			} else if (errno == ENOTDIR || errno == ELOOP) {
				/* A file or a symbolic link: replaced, never followed. */
				if (unlinkat(cur, comp, 0) != 0 && errno != ENOENT)
					break;
			} else {
				break;
			}
		}
		if (next < 0) {
			int e = errno;
			close(cur);
			return hs_error_set(err, HS_UNAVAILABLE, "restore: directory %.*s: %s",
					    (int)(p - rel + len), rel, strerror(e));
		}
		close(cur);
		cur = next;
		p += len;
		if (*p == '/')
			p++;
	}
	return cur;
}

static void temp_name(char out[32])
{
	unsigned char r[8] = { 0 };
	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		uint64_t v = (uint64_t)hs_clock_mono_ns() ^ ((uint64_t)getpid() << 32);
		memcpy(r, &v, sizeof(r));
	}
	snprintf(out, 32, ".hs-restore-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3],
		 r[4], r[5], r[6], r[7]);
}

static int write_all(int fd, const void *data, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = write(fd, (const char *)data + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}

/* Write one checkpoint entry at path (its directory already resolved to
 * dirfd); *st gets the stat of what was written. */
static int write_entry(git_repository *repo, int dirfd, const char *base, const hs_ckpt__file *t,
		       struct stat *st, const char *task_id, hs_error *err)
{
	git_blob *blob = NULL;
	char tmp[32];
	int rc = HS_OK, g;
	bool made = false;
	if ((g = git_blob_lookup(&blob, repo, &t->id)) < 0)
		return hs_ckpt__git_err(err, g, "restore: read blob", task_id);
	const void *data = git_blob_rawcontent(blob);
	size_t size = (size_t)git_blob_rawsize(blob);
	for (int attempt = 0; attempt < 8 && !made; attempt++) {
		temp_name(tmp);
		if (t->mode == GIT_FILEMODE_LINK) {
			char *target = strndup(data, size);
			if (target == NULL) {
				rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
				goto done;
			}
			made = symlinkat(target, dirfd, tmp) == 0;
			free(target);
		} else {
			mode_t m = t->mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644;
			int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, m);
			if (fd >= 0) {
				made = true;
				if (write_all(fd, data, size) != 0) {
					int e = errno;
					close(fd);
					unlinkat(dirfd, tmp, 0);
					rc = hs_error_set(err, HS_UNAVAILABLE, "restore: write %s: %s", t->path,
							  strerror(e));
					goto done;
				}
				close(fd);
			}
		}
		if (!made && errno != EEXIST) {
			rc = hs_error_set(err, HS_UNAVAILABLE, "restore: create %s: %s", t->path,
					  strerror(errno));
			goto done;
		}
	}
	if (!made) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "restore: create %s: no free temporary name",
				  t->path);
		goto done;
	}
	if (renameat(dirfd, tmp, dirfd, base) != 0) {
		/* A directory stands there (untracked or ignored content): it goes,
		 * unless it holds a nested repository. */
		if ((errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST) &&
		    (rc = remove_tree(dirfd, base, t->path, 0, err)) == HS_OK &&
		    renameat(dirfd, tmp, dirfd, base) == 0) {
			rc = HS_OK;
		} else {
			if (rc == HS_OK)
				rc = hs_error_set(err, HS_UNAVAILABLE, "restore: rename %s: %s", t->path,
						  strerror(errno));
			unlinkat(dirfd, tmp, 0);
			goto done;
		}
	}
	if (fstatat(dirfd, base, st, AT_SYMLINK_NOFOLLOW) != 0)
		memset(st, 0, sizeof(*st));
done:
	git_blob_free(blob);
	return rc;
}

/* Split "a/b/c" into dir "a/b" (buf) and base "c". */
static const char *split_path(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL) {
		dir[0] = '\0';
		return path;
	}
	size_t n = (size_t)(slash - path);
	if (n >= cap)
		n = cap - 1;
	memcpy(dir, path, n);
	dir[n] = '\0';
	return slash + 1;
}

/* Is path inside a nested repository the target does not contain at all? */
static bool in_foreign_repo(const char *path, const hs_ckpt_strlist *roots,
			    const hs_ckpt__files *target)
{
	for (size_t i = 0; i < roots->count; i++) {
		const char *r = roots->items[i]; /* "dir/" */
		size_t rl = strlen(r);
		if (strncmp(path, r, rl) != 0)
			continue;
		/* Does the target have anything below r? First path >= r. */
		size_t lo = 0, hi = target->n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (strcmp(target->v[mid].path, r) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == target->n || strncmp(target->v[lo].path, r, rl) != 0)
			return true;
	}
	return false;
}

/* Remove dir and its now-empty ancestors below the workspace (best effort:
 * rmdir fails on anything that still holds an entry). */
static void prune_empty_dirs(int wsfd, const char *dir)
{
	char d[4200];
	snprintf(d, sizeof(d), "%s", dir);
	while (d[0] != '\0') {
		char parent[4200];
		const char *base = split_path(d, parent, sizeof(parent));
		int pfd = hs_ckpt__open_beneath(wsfd, parent, O_PATH | O_DIRECTORY);
		if (pfd < 0)
			return;
		int ok = unlinkat(pfd, base, AT_REMOVEDIR);
		close(pfd);
		if (ok != 0)
			return;
		memmove(d, parent, strlen(parent) + 1);
	}
}

int hs_ckpt__restore_files(git_repository *repo, int wsfd, const hs_ckpt__files *target,
			   const hs_ckpt__scan *now, hs_ckpt__files *final, uint32_t *written,
			   uint32_t *removed, hs_ckpt_strlist *left, const char *task_id,
			   hs_error *err)
{
	const hs_ckpt__files *ws = &now->files;
	hs_ckpt_strlist probed = { 0 };
	size_t *writes = NULL, *drops = NULL, nw = 0, nd = 0;
	int rc = HS_OK;
	char dir[4200];
	*written = *removed = 0;
	memset(final, 0, sizeof(*final));
	if ((target->n && !(writes = malloc(target->n * sizeof(*writes)))) ||
	    (ws->n && !(drops = malloc(ws->n * sizeof(*drops)))))
		goto oom;
	/* final: the target, with stat data where the workspace already has
	 * the same content (kept) or once written (below). */
	for (size_t j = 0; j < target->n; j++) {
		hs_ckpt__file *f = hs_ckpt__files_add(final, target->v[j].path);
		if (f == NULL)
			goto oom;
		f->mode = target->v[j].mode;
		f->id = target->v[j].id;
	}
	/* A tracked read did not list the nested repositories: look at the
	 * ancestors of what would be removed. */
	const hs_ckpt_strlist *roots = &now->repo_roots;
	if (now->roots_unknown) {
		hs_ckpt__files cand = { 0 };
		int prc = 0;
		for (size_t i = 0, j = 0; i < ws->n && prc == 0;) {
			int c = j == target->n ? -1 : strcmp(ws->v[i].path, target->v[j].path);
			if (c < 0) {
				if (!hs_ckpt__files_add(&cand, ws->v[i].path))
					prc = -1;
				i++;
			} else if (c > 0) {
				j++;
			} else {
				i++;
				j++;
			}
		}
		if (prc == 0)
			prc = hs_ckpt__probe_repo_roots(wsfd, &cand, &probed);
		hs_ckpt__files_dispose(&cand);
		if (prc != 0)
			goto oom;
		roots = &probed;
	}
	for (size_t i = 0, j = 0; i < ws->n || j < target->n;) {
		int c = i == ws->n ? 1 : j == target->n ? -1 : strcmp(ws->v[i].path, target->v[j].path);
		if (c < 0) {
			if (!in_foreign_repo(ws->v[i].path, roots, target))
				drops[nd++] = i;
			else if (hs_ckpt__strlist_push(left, ws->v[i].path) != 0)
				goto oom;
			i++;
		} else if (c > 0) {
			writes[nw++] = j++;
		} else {
			if (ws->v[i].mode != target->v[j].mode ||
			    !git_oid_equal(&ws->v[i].id, &target->v[j].id)) {
				writes[nw++] = j;
			} else {
				final->v[j].st = ws->v[i].st;
				final->v[j].has_stat = ws->v[i].has_stat;
			}
			i++;
			j++;
		}
	}
	/* Removals first, deepest first, so a file that became a directory (or
	 * the reverse) is out of the way before its replacement is written. */
	for (size_t k = nd; k-- > 0;) {
		const char *path = ws->v[drops[k]].path;
		const char *base = split_path(path, dir, sizeof(dir));
		int pfd = hs_ckpt__open_beneath(wsfd, dir, O_PATH | O_DIRECTORY);
		if (pfd < 0)
			continue; /* its directory is gone or is a link now: nothing beneath to remove */
		struct stat st;
		if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
		    unlinkat(pfd, base, 0) != 0 && errno != ENOENT) {
			rc = hs_error_set(err, HS_UNAVAILABLE, "restore: remove %s: %s", path,
					  strerror(errno));
			close(pfd);
			goto done;
		}
		close(pfd);
		(*removed)++;
		if (dir[0] != '\0' && (k == 0 || strncmp(ws->v[drops[k - 1]].path, dir, strlen(dir)) != 0 ||
				       ws->v[drops[k - 1]].path[strlen(dir)] != '/'))
			prune_empty_dirs(wsfd, dir); /* the last removal in this directory */
	}
	int dfd = -1;
	char open_dir[4200] = "";
	for (size_t k = 0; k < nw; k++) {
		const hs_ckpt__file *t = &target->v[writes[k]];
		const char *base = split_path(t->path, dir, sizeof(dir));
		if (dfd < 0 || strcmp(dir, open_dir) != 0) {
			if (dfd >= 0)
				close(dfd);
			dfd = -1;
			int fd = ensure_dir(wsfd, dir, err);
			if (fd < 0) {
				rc = fd;
				goto done;
			}
			dfd = fd;
			snprintf(open_dir, sizeof(open_dir), "%s", dir);
		}
		struct stat st;
		if ((rc = write_entry(repo, dfd, base, t, &st, task_id, err)) != HS_OK) {
			close(dfd);
			goto done;
		}
		hs_ckpt__file *f = &final->v[writes[k]];
		if (st.st_ino != 0)
			hs_ckpt__stat_fill(f, &st, hs_ckpt__racy_after_ns());
		(*written)++;
	}
	if (dfd >= 0)
		close(dfd);
	goto done;
oom:
	rc = hs_error_set(err, HS_INTERNAL, "checkpoint restore: out of memory");
done:
	hs_ckpt_strlist_dispose(&probed);
	free(writes);
	free(drops);
	if (rc != HS_OK)
		hs_ckpt__files_dispose(final);
	return rc;
}
