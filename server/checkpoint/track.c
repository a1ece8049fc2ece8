/* Tracked reads: the workspace as the task's index plus what the watcher
 * (watch.c) says changed since. Only those paths are stat()ed and, if their
 * stat data no longer matches the index, hashed; a changed path that is a
 * directory is walked whole (walk.c, which also watches what it walks).
 *
 * The result is a delta: `gone` paths p (sorted, none below another) whose
 * index entry p and entries below p/ no longer hold, and `found`, what is
 * there now at or below them. Applied to the index (create), overlaid on it
 * (restore, and verify against another tree), or compared with it (verify
 * against the tree the index holds) it gives what a full walk would have.
 *
 * The same rules as a full walk, beneath the workspace descriptor: every
 * ancestor directory of a changed path is opened from its parent with
 * O_NOFOLLOW (a link where a directory was makes the path absent), its
 * .gitignore read, its ignore status checked; nothing inside a `.git` is
 * ever looked at. Besides the changed paths, entries stored smudged (racy
 * at their last check) and every name of an inode with several links are
 * re-checked (a write through one name raises no event for the others). */
#include "checkpoint_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRACK_PATH_MAX 4000

void hs_ckpt__delta_dispose(hs_ckpt__delta *d)
{
	if (d == NULL)
		return;
	hs_ckpt_strlist_dispose(&d->gone);
	hs_ckpt__scan_dispose(&d->found);
	memset(d, 0, sizeof(*d));
}

/* Is b at or below a ("" covers everything)? */
static bool covers(const char *a, const char *b)
{
	size_t n = strlen(a);
	return n == 0 || (strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/'));
}

static bool has_dot_git(const char *p)
{
	for (const char *c = p; *c;) {
		size_t len = strcspn(c, "/");
		if (hs_ckpt__is_dot_git(c, len))
			return true;
		c += len;
		if (*c == '/')
			c++;
	}
	return false;
}

/* The open ancestors of the path being read: level i is the directory
 * rel[i] ("" or "a/b/"), its descriptor and whether it pushed ignore rules. */
typedef struct ancestors {
	int wsfd;
	struct {
		char *rel;
		int fd;
		bool pushed;
	} v[HS_CKPT__DEPTH_MAX + 2];
	size_t n;
	hs_ckpt__ignore ig;
} ancestors;

static void anc_pop(ancestors *a)
{
	a->n--;
	if (a->v[a->n].pushed)
		hs_ckpt__ignore_pop(&a->ig);
	close(a->v[a->n].fd);
	free(a->v[a->n].rel);
}

static void anc_dispose(ancestors *a)
{
	while (a->n > 0)
		anc_pop(a);
	hs_ckpt__ignore_dispose(&a->ig);
}

/* Open dir ("" or "a/b/") and its ancestors. HS_OK with *fd (borrowed), or
 * HS_NOT_FOUND when it is missing, not a directory, ignored or a link. */
static int anc_open(ancestors *a, const char *dir, int *fd, hs_error *err)
{
	int rc;
	while (a->n > 0 && strncmp(dir, a->v[a->n - 1].rel, strlen(a->v[a->n - 1].rel)) != 0)
		anc_pop(a);
	if (a->n == 0) {
		int root = hs_ckpt__open_beneath(a->wsfd, "", O_RDONLY | O_DIRECTORY);
		if (root < 0)
			return hs_error_set(err, HS_UNAVAILABLE, "checkpoint: workspace: %s",
					    strerror(-root));
		a->v[0].fd = root;
		a->v[0].pushed = false;
		if (!(a->v[0].rel = strdup(""))) {
			close(root);
			return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		}
		a->n = 1;
		if ((rc = hs_ckpt__read_gitignore(&a->ig, root, "", &a->v[0].pushed, err)) != HS_OK)
			return rc;
	}
	for (;;) {
		const char *have = a->v[a->n - 1].rel;
		size_t hl = strlen(have);
		if (dir[hl] == '\0')
			break;
		if (a->n > HS_CKPT__DEPTH_MAX)
			return hs_error_set(err, HS_LIMIT, "checkpoint: %s: deeper than %d directories",
					    dir, HS_CKPT__DEPTH_MAX);
		size_t cl = strcspn(dir + hl, "/");
		char *rel = strndup(dir, hl + cl + 1); /* "a/b/" */
		if (rel == NULL)
			return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		rel[hl + cl] = '\0';
		bool ignored = hs_ckpt__ignored(&a->ig, rel, true);
		rel[hl + cl] = '/';
		char comp[256];
		if (ignored || cl >= sizeof(comp)) {
			free(rel);
			return HS_NOT_FOUND;
		}
		memcpy(comp, dir + hl, cl);
		comp[cl] = '\0';
		int cfd = openat(a->v[a->n - 1].fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0) {
			int e = errno;
			free(rel);
			if (e == ENOENT || e == ENOTDIR || e == ELOOP)
				return HS_NOT_FOUND;
			return hs_error_set(err, e == EACCES ? HS_CONFLICT : HS_UNAVAILABLE,
					    "checkpoint: cannot open directory %s: %s", dir, strerror(e));
		}
		size_t k = a->n++;
		a->v[k].rel = rel;
		a->v[k].fd = cfd;
		a->v[k].pushed = false;
		if ((rc = hs_ckpt__read_gitignore(&a->ig, cfd, rel, &a->v[k].pushed, err)) != HS_OK)
			return rc;
	}
	*fd = a->v[a->n - 1].fd;
	return HS_OK;
}

/* Read one changed path into out. */
static int read_path(ancestors *a, const hs_ckpt__scan_opts *o, const hs_ckpt__take *take,
		     const char *p, hs_ckpt__delta *out, hs_error *err)
{
	int rc;
	if (hs_ckpt__strlist_push(&out->gone, p) != 0)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	if (p[0] == '\0') {
		/* The whole workspace (its root .gitignore changed). */
		hs_ckpt__scan_opts wo = *o;
		return hs_ckpt__walk(a->wsfd, &wo, "", 0, NULL, &out->found, err);
	}
	if (has_dot_git(p) || strlen(p) > TRACK_PATH_MAX)
		return HS_OK;
	char dir[TRACK_PATH_MAX + 2];
	const char *slash = strrchr(p, '/');
	size_t dl = slash ? (size_t)(slash - p) + 1 : 0;
	memcpy(dir, p, dl);
	dir[dl] = '\0';
	const char *base = p + dl;
	int dfd = -1;
	if ((rc = anc_open(a, dir, &dfd, err)) == HS_NOT_FOUND)
		return HS_OK; /* absent: its entries go */
	if (rc != HS_OK)
		return rc;
	struct stat st;
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return HS_OK;
	if (S_ISDIR(st.st_mode)) {
		if (hs_ckpt__ignored(&a->ig, p, true))
			return HS_OK;
		char rel[TRACK_PATH_MAX + 2];
		snprintf(rel, sizeof(rel), "%s/", p);
		return hs_ckpt__walk(a->wsfd, o, rel, (int)a->n, &a->ig, &out->found, err);
	}
	if ((!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) || hs_ckpt__ignored(&a->ig, p, false))
		return HS_OK;
	bool hashed = false;
	size_t before = out->found.files.n;
	if ((rc = hs_ckpt__take_file(take, dfd, base, p, &st, &out->found.files, &hashed, err)) !=
	    HS_OK)
		return rc;
	if (out->found.files.n > before) {
		hs_ckpt__file *f = &out->found.files.v[before];
		f->multi_link = st.st_nlink > 1;
		out->found.bytes += (uint64_t)st.st_size;
		if (hashed) {
			out->found.hashed++;
			out->found.written_bytes += f->written;
		}
	}
	return HS_OK;
}

/* Read the sorted paths, skipping those below one read before (and those
 * in skip, already read). */
static int read_paths(int wsfd, const hs_ckpt__scan_opts *o, char **paths, size_t n,
		      const hs_ckpt_strlist *skip, hs_ckpt__delta *out, hs_error *err)
{
	ancestors a;
	memset(&a, 0, sizeof(a));
	a.wsfd = wsfd;
	hs_ckpt__take take = { o->odb, o->odb_large, o->cache,
			       o->racy_after_ns ? o->racy_after_ns : hs_ckpt__racy_after_ns(),
			       o->task_id ? o->task_id : "-" };
	const char *last = NULL;
	int rc = HS_OK;
	for (size_t i = 0; i < n && rc == HS_OK; i++) {
		if (last && covers(last, paths[i]))
			continue;
		bool done = false;
		for (size_t k = 0; skip && k < skip->count && !done; k++)
			done = covers(skip->items[k], paths[i]);
		if (done)
			continue;
		last = paths[i];
		rc = read_path(&a, o, &take, paths[i], out, err);
	}
	anc_dispose(&a);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int hs_ckpt__track_read(int wsfd, const hs_ckpt__scan_opts *o, const hs_ckpt_strlist *changed,
			hs_ckpt__delta *out, hs_error *err)
{
	hs_ckpt_strlist work = { 0 }, more = { 0 };
	int rc = HS_OK;
	memset(out, 0, sizeof(*out));
	out->found.roots_unknown = true;
	/* The changed paths, and entries stored smudged (racy last time). */
	for (size_t i = 0; i < changed->count; i++)
		if (hs_ckpt__strlist_push(&work, changed->items[i]) != 0)
			goto oom;
	const hs_ckpt__cache *c = o->cache;
	for (size_t i = 0; c && i < c->n; i++)
		if (c->v[i]->ctime.seconds == 0 && c->v[i]->ctime.nanoseconds == 0 &&
		    hs_ckpt__strlist_push(&work, c->v[i]->path) != 0)
			goto oom;
	if (work.count > 1)
		qsort(work.items, work.count, sizeof(char *), cmp_str);
	if ((rc = read_paths(wsfd, o, work.items, work.count, NULL, out, err)) != HS_OK)
		goto done;
	/* Files with several links: their other names in the index too. */
	for (size_t i = 0; c && i < out->found.files.n; i++) {
		const hs_ckpt__file *f = &out->found.files.v[i];
		if (!f->multi_link || f->st.ino == 0)
			continue;
		for (size_t k = 0; k < c->n; k++)
			if (c->v[k]->ino == f->st.ino && c->v[k]->dev == f->st.dev &&
			    strcmp(c->v[k]->path, f->path) != 0 &&
			    hs_ckpt__strlist_push(&more, c->v[k]->path) != 0)
				goto oom;
	}
	if (more.count > 0) {
		qsort(more.items, more.count, sizeof(char *), cmp_str);
		hs_ckpt_strlist first = out->gone;
		memset(&out->gone, 0, sizeof(out->gone));
		rc = read_paths(wsfd, o, more.items, more.count, &first, out, err);
		for (size_t i = 0; i < first.count && rc == HS_OK; i++)
			if (hs_ckpt__strlist_push(&out->gone, first.items[i]) != 0)
				rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		hs_ckpt_strlist_dispose(&first);
		if (rc != HS_OK)
			goto done;
	}
	if (out->gone.count > 1)
		qsort(out->gone.items, out->gone.count, sizeof(char *), cmp_str);
	hs_ckpt__scan_sort(&out->found);
	goto done;
oom:
	rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
done:
	hs_ckpt_strlist_dispose(&work);
	hs_ckpt_strlist_dispose(&more);
	if (rc != HS_OK)
		hs_ckpt__delta_dispose(out);
	return rc;
}

/* ---- using a delta -------------------------------------------------------------------- */

/* Mark in keep[] (one per cache entry, true by default) the entries a gone
 * path replaces: p itself and everything below p/. */
static void drop_gone(const hs_ckpt__cache *c, const hs_ckpt_strlist *gone, bool *keep)
{
	for (size_t g = 0; g < gone->count; g++) {
		const char *p = gone->items[g];
		size_t pl = strlen(p);
		if (pl == 0) {
			for (size_t i = 0; i < c->n; i++)
				keep[i] = false;
			return;
		}
		size_t i = hs_ckpt__cache_lower(c, p);
		if (i < c->n && strcmp(c->v[i]->path, p) == 0)
			keep[i] = false;
		/* "p/" .. entries sort as a block after "p/" (before "p0"). */
		char *pre = malloc(pl + 2);
		if (pre == NULL)
			continue; /* caller treats as all-kept: checked below */
		memcpy(pre, p, pl);
		pre[pl] = '/';
		pre[pl + 1] = '\0';
		for (i = hs_ckpt__cache_lower(c, pre); i < c->n && strncmp(c->v[i]->path, pre, pl + 1) == 0;
		     i++)
			keep[i] = false;
		free(pre);
	}
}

static void file_from_entry(hs_ckpt__file *f, const git_index_entry *e)
{
	f->mode = e->mode;
	git_oid_cpy(&f->id, &e->id);
	f->st.ctime_s = e->ctime.seconds;
	f->st.ctime_ns = e->ctime.nanoseconds;
	f->st.mtime_s = e->mtime.seconds;
	f->st.mtime_ns = e->mtime.nanoseconds;
	f->st.dev = e->dev;
	f->st.ino = e->ino;
	f->st.uid = e->uid;
	f->st.gid = e->gid;
	f->st.size = e->file_size;
	f->has_stat = e->ctime.seconds != 0 || e->ctime.nanoseconds != 0;
}

int hs_ckpt__delta_overlay(const hs_ckpt__cache *c, const hs_ckpt__delta *d, hs_ckpt__files *out,
			   hs_error *err)
{
	bool *keep = c->n ? malloc(c->n) : NULL;
	memset(out, 0, sizeof(*out));
	if (c->n && keep == NULL)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	if (keep != NULL)
		memset(keep, 1, c->n);
	drop_gone(c, &d->gone, keep);
	const hs_ckpt__files *fd = &d->found.files;
	size_t i = 0, j = 0;
	while (i < c->n || j < fd->n) {
		while (i < c->n && !keep[i])
			i++;
		if (i == c->n && j == fd->n)
			break;
		int cmp = i == c->n ? 1 : j == fd->n ? -1 : strcmp(c->v[i]->path, fd->v[j].path);
		hs_ckpt__file *f = hs_ckpt__files_add(out, cmp <= 0 ? c->v[i]->path : fd->v[j].path);
		if (f == NULL) {
			free(keep);
			hs_ckpt__files_dispose(out);
			return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		}
		if (cmp < 0) {
			file_from_entry(f, c->v[i++]);
		} else {
			char *path = f->path;
			*f = fd->v[j++];
			f->path = path;
			if (cmp == 0)
				i++; /* cannot happen: found paths are all below gone ones */
		}
	}
	free(keep);
	return HS_OK;
}

int hs_ckpt__delta_compare(const hs_ckpt__cache *c, const hs_ckpt__delta *d,
			   hs_ckpt_verify_result *out, hs_error *err)
{
	hs_ckpt_verify_result r;
	memset(&r, 0, sizeof(r));
	bool *keep = c->n ? malloc(c->n) : NULL;
	if (c->n && keep == NULL)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	if (keep != NULL)
		memset(keep, 1, c->n);
	drop_gone(c, &d->gone, keep);
	/* Only the replaced entries and the found files can differ. */
	const hs_ckpt__files *fd = &d->found.files;
	size_t i = 0, j = 0;
	int rc = HS_OK;
	while (rc == HS_OK && (i < c->n || j < fd->n)) {
		while (i < c->n && keep[i])
			i++;
		if (i == c->n && j == fd->n)
			break;
		int cmp = i == c->n ? 1 : j == fd->n ? -1 : strcmp(c->v[i]->path, fd->v[j].path);
		hs_ckpt_strlist *l = NULL;
		const char *p = NULL;
		if (cmp < 0) {
			l = &r.deleted;
			p = c->v[i++]->path;
		} else if (cmp > 0) {
			/* A found file whose path had no entry, or an entry kept: look. */
			const git_index_entry *e = hs_ckpt__cache_find(c, fd->v[j].path);
			if (e == NULL) {
				l = &r.added;
			} else if (e->mode != fd->v[j].mode || !git_oid_equal(&e->id, &fd->v[j].id)) {
				l = &r.modified;
			}
			p = fd->v[j++].path;
		} else {
			if (c->v[i]->mode != fd->v[j].mode || !git_oid_equal(&c->v[i]->id, &fd->v[j].id)) {
				l = &r.modified;
				p = fd->v[j].path;
			}
			i++;
			j++;
		}
		if (l && hs_ckpt__strlist_push(l, p) != 0)
			rc = hs_error_set(err, HS_INTERNAL, "checkpoint compare: out of memory");
	}
	free(keep);
	if (rc != HS_OK) {
		hs_ckpt_verify_result_dispose(&r);
		return rc;
	}
	r.consistent = r.added.count == 0 && r.modified.count == 0 && r.deleted.count == 0;
	*out = r;
	return HS_OK;
}

int hs_ckpt__delta_apply(git_index *index, const hs_ckpt__cache *c, const hs_ckpt__delta *d,
			 bool *changed, const char *task_id, hs_error *err)
{
	bool *keep = c->n ? malloc(c->n) : NULL;
	char **drop = NULL;
	size_t ndrop = 0, *add = NULL, nadd = 0;
	const hs_ckpt__files *fd = &d->found.files;
	int rc = HS_OK;
	*changed = false;
	if ((c->n && (!keep || !(drop = malloc(c->n * sizeof(*drop))))) ||
	    (fd->n && !(add = malloc(fd->n * sizeof(*add)))))
		goto oom;
	if (keep != NULL)
		memset(keep, 1, c->n);
	drop_gone(c, &d->gone, keep);
	/* The replaced entries vs the found files; the cache's pointers go
	 * stale once the index changes, so collect first. */
	size_t i = 0, j = 0;
	while (i < c->n || j < fd->n) {
		while (i < c->n && keep[i])
			i++;
		if (i == c->n && j == fd->n)
			break;
		int cmp = i == c->n ? 1 : j == fd->n ? -1 : strcmp(c->v[i]->path, fd->v[j].path);
		if (cmp < 0) {
			if (!(drop[ndrop] = strdup(c->v[i]->path)))
				goto oom;
			ndrop++;
			i++;
		} else if (cmp > 0) {
			add[nadd++] = j++;
		} else {
			git_index_entry want;
			hs_ckpt__entry_from_file(&want, &fd->v[j]);
			if (!hs_ckpt__entry_equal(c->v[i], &want))
				add[nadd++] = j;
			i++;
			j++;
		}
	}
	rc = hs_ckpt__index_edit(index, drop, ndrop, fd->v, add, nadd, task_id, changed, err);
	goto done;
oom:
	rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
done:
	for (size_t k = 0; k < ndrop; k++)
		free(drop[k]);
	free(drop);
	free(add);
	free(keep);
	return rc;
}

void hs_ckpt__delta_totals(const hs_ckpt__cache *c, const hs_ckpt__delta *d, uint64_t *files,
			   uint64_t *bytes)
{
	uint64_t nf = d->found.files.n, nb = d->found.bytes;
	bool *keep = c->n ? malloc(c->n) : NULL;
	if (keep != NULL) {
		memset(keep, 1, c->n);
		drop_gone(c, &d->gone, keep);
	}
	for (size_t i = 0; i < c->n; i++)
		if (keep == NULL || keep[i]) {
			nf++;
			nb += c->v[i]->file_size;
		}
	free(keep);
	*files = nf;
	*bytes = nb;
}

int hs_ckpt__probe_repo_roots(int wsfd, const hs_ckpt__files *paths, hs_ckpt_strlist *out)
{
	/* Each distinct ancestor directory of the paths: does it hold a .git? */
	char last[TRACK_PATH_MAX + 2] = "";
	for (size_t i = 0; i < paths->n; i++) {
		const char *p = paths->v[i].path;
		for (const char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
			size_t dl = (size_t)(s - p) + 1;
			if (dl > TRACK_PATH_MAX)
				break;
			if (strncmp(last, p, dl) == 0 && last[dl] == '\0')
				continue;
			char dir[TRACK_PATH_MAX + 2];
			memcpy(dir, p, dl);
			dir[dl] = '\0';
			memcpy(last, dir, dl + 1);
			bool seen = false;
			for (size_t k = 0; k < out->count && !seen; k++)
				seen = strcmp(out->items[k], dir) == 0;
			if (seen)
				continue;
			int fd = hs_ckpt__open_beneath(wsfd, dir, O_PATH | O_DIRECTORY);
			if (fd < 0)
				continue;
			struct stat st;
			bool has = fstatat(fd, ".git", &st, AT_SYMLINK_NOFOLLOW) == 0 ||
				   fstatat(fd, ".GIT", &st, AT_SYMLINK_NOFOLLOW) == 0;
			close(fd);
			if (has && hs_ckpt__strlist_push(out, dir) != 0)
				return -1;
		}
	}
	if (out->count > 1)
		qsort(out->items, out->count, sizeof(char *), cmp_str);
	return 0;
}
