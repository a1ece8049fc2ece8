/* The full walk of a workspace (or of one subtree of it), on several threads.
 *
 * Rules (see scan.c for the stat cache and what is captured):
 *   - every directory is opened beneath the workspace descriptor
 *     (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), every entry is
 *     stat()ed once relative to its directory's descriptor (fstatat, no
 *     full path lookup), files are opened relative to it with O_NOFOLLOW;
 *   - a directory's listing is read first: its .gitignore is opened only
 *     if the listing has one (no failing lookup per directory), and a
 *     subdirectory needs no stat (d_type says what it is);
 *   - with a watch (watch.c), a directory is watched before it is read, so
 *     nothing created in it afterwards goes unseen.
 *
 * Threads (as git's preload-index): directories are jobs on one LIFO stack
 * shared by the walkers; each job carries the .gitignore levels in force
 * for it (refcounted, shared with its siblings); each walker collects into
 * its own list, merged at the end. Quotas are counted with atomics, so a
 * scan stops near the limit whatever the thread count. The object database
 * is thread-safe (libgit2 >= 1.2 locks it internally); a git_index is not,
 * which is why walkers read the stat cache through hs_ckpt__cache. */
#include "checkpoint_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_LEN_MAX 4000
#define WALKERS_MAX 16

typedef struct job {
	char *rel; /* "" or "dir/sub/" */
	int depth;
	hs_ckpt__ignore ig; /* the levels of rel's ancestors */
	struct job *next;
} job;

typedef struct walk walk;

typedef struct walker {
	walk *w;
	hs_ckpt__scan part;
	char path[PATH_LEN_MAX + 2];
	hs_error err;
	int rc;
} walker;

struct walk {
	int wsfd;
	const hs_ckpt__scan_opts *o;
	int64_t racy_after_ns;
	const char *task_id;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	job *stack;    /* pending directories */
	unsigned busy; /* walkers holding a job */
	bool stop;     /* an error: everyone leaves */
	_Atomic uint64_t files, bytes;
};

static void job_free(job *j)
{
	if (j == NULL)
		return;
	hs_ckpt__ignore_dispose(&j->ig);
	free(j->rel);
	free(j);
}

static int too_big(walker *k)
{
	const hs_ckpt__scan_opts *o = k->w->o;
	uint64_t files = atomic_load_explicit(&k->w->files, memory_order_relaxed);
	uint64_t bytes = atomic_load_explicit(&k->w->bytes, memory_order_relaxed);
	if (o->max_files && files > o->max_files)
		return hs_error_set(&k->err, HS_LIMIT,
				    "workspace quota: more than %llu files to checkpoint (task %s); "
				    "remove files or ignore them in .gitignore",
				    (unsigned long long)o->max_files, k->w->task_id);
	if (o->max_bytes && bytes > o->max_bytes)
		return hs_error_set(&k->err, HS_LIMIT,
				    "workspace quota: more than %llu bytes to checkpoint (task %s); "
				    "remove files or ignore them in .gitignore",
				    (unsigned long long)o->max_bytes, k->w->task_id);
	return HS_OK;
}

int hs_ckpt__read_gitignore(hs_ckpt__ignore *ig, int dirfd, const char *rel, bool *pushed,
			    hs_error *err)
{
	*pushed = false;
	int fd = openat(dirfd, ".gitignore", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return HS_OK; /* none, or a link (never followed, as git does) */
	struct stat st;
	int rc = HS_OK;
	char *buf = NULL;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto done;
	size_t want = st.st_size > HS_CKPT__IGNORE_FILE_MAX ? HS_CKPT__IGNORE_FILE_MAX
							     : (size_t)st.st_size;
	if (!(buf = malloc(want + 1)))
		goto oom;
	ssize_t r = hs_ckpt__read_full(fd, buf, want);
	if (r < 0)
		goto done; /* unreadable: no rules, like a missing file */
	int pr = hs_ckpt__ignore_push(ig, rel, buf, (size_t)r);
	if (pr == -2) {
		rc = hs_error_set(err, HS_LIMIT,
				  "checkpoint: %s.gitignore: more than %u patterns or %u bytes of "
				  ".gitignore rules apply at once",
				  rel, HS_CKPT__IGNORE_RULES_MAX, HS_CKPT__IGNORE_TEXT_MAX);
		goto done;
	}
	if (pr != 0)
		goto oom;
	*pushed = true;
	goto done;
oom:
	rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
done:
	free(buf);
	close(fd);
	return rc;
}

int hs_ckpt__take_file(const hs_ckpt__take *t, int dirfd, const char *name, const char *path,
		       struct stat *st, hs_ckpt__files *out, bool *hashed_out, hs_error *err)
{
	uint32_t mode = hs_ckpt__mode_of(st->st_mode);
	const git_index_entry *e = hs_ckpt__cache_find(t->cache, path);
	git_odb *odb = t->odb_large && (uint64_t)st->st_size > HS_CKPT__READ_IN_MEMORY_MAX
			       ? t->odb_large
			       : t->odb;
	int64_t ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
	bool racy = ctime_ns >= t->racy_after_ns;
	hs_ckpt__file *f = NULL;
	*hashed_out = false;
	if (e && !racy && hs_ckpt__cache_hit(e, st, mode)) {
		if (!(f = hs_ckpt__files_add(out, path)))
			goto oom;
		f->mode = mode;
		git_oid_cpy(&f->id, &e->id);
		hs_ckpt__stat_fill(f, st, t->racy_after_ns);
		return HS_OK;
	}
	git_oid id;
	uint64_t hashed = 0;
	bool short_read = false;
	if (S_ISLNK(st->st_mode)) {
		size_t cap = (size_t)st->st_size + 1;
		if (cap > 65536)
			cap = 65536;
		char *target = malloc(cap);
		if (target == NULL)
			goto oom;
		ssize_t n = readlinkat(dirfd, name, target, cap);
		if (n < 0) {
			int e2 = errno;
			free(target);
			return e2 == ENOENT || e2 == EINVAL ? HS_OK /* gone or replaced meanwhile */
							    : hs_error_set(err, HS_CONFLICT,
									   "checkpoint: cannot read link %s: %s",
									   path, strerror(e2));
		}
		int g = odb ? git_odb_write(&id, odb, target, (size_t)n, GIT_OBJECT_BLOB)
			       : git_odb_hash(&id, target, (size_t)n, GIT_OBJECT_BLOB);
		free(target);
		if (g < 0)
			return hs_ckpt__git_err(err, g, "write blob", t->task_id);
		hashed = (uint64_t)n;
		short_read = (uint64_t)n != (uint64_t)st->st_size;
	} else {
		int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd < 0) {
			int e2 = errno;
			if (e2 == ENOENT || e2 == ELOOP)
				return HS_OK; /* gone, or now a link: the next scan sees it */
			return hs_error_set(err, e2 == EACCES ? HS_CONFLICT : HS_UNAVAILABLE,
					    "checkpoint: cannot read %s: %s", path, strerror(e2));
		}
		struct stat fst;
		if (fstat(fd, &fst) != 0 || !S_ISREG(fst.st_mode)) {
			close(fd);
			return HS_OK; /* replaced by something else meanwhile */
		}
		*st = fst; /* the stat of what we read */
		mode = hs_ckpt__mode_of(fst.st_mode);
		int hr = -1;
		for (int attempt = 0; attempt < 3; attempt++) {
			if (attempt > 0 && (lseek(fd, 0, SEEK_SET) != 0 || fstat(fd, st) != 0))
				break;
			hr = hs_ckpt__hash_fd(fd, (uint64_t)st->st_size, odb, &id, &hashed,
					      &short_read);
			if (hr == 0 || !short_read || st->st_size <= HS_CKPT__READ_IN_MEMORY_MAX)
				break;
		}
		close(fd);
		if (hr != 0) {
			if (short_read)
				return hs_error_set(err, HS_ABORTED,
						    "checkpoint: %s kept changing while it was read; retry",
						    path);
			const git_error *ge = git_error_last();
			return hs_error_set(err, HS_UNAVAILABLE, "checkpoint: reading %s: %s", path,
					    ge && ge->message ? ge->message : strerror(errno));
		}
	}
	if (!(f = hs_ckpt__files_add(out, path)))
		goto oom;
	f->mode = mode;
	f->id = id;
	f->hashed = true;
	f->written = odb != NULL ? hashed : 0;
	hs_ckpt__stat_fill(f, st, t->racy_after_ns);
	if (short_read)
		f->has_stat = false;
	*hashed_out = true;
	return HS_OK;
oom:
	return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
}

bool hs_ckpt__is_dot_git(const char *name, size_t len)
{
	return len == 4 && strncasecmp(name, ".git", 4) == 0;
}

/* One entry of a listing: name (into the listing's buffer) and d_type. */
typedef struct dent {
	size_t off;
	unsigned char type;
} dent;

typedef struct listing {
	char *names;
	size_t len, cap;
	dent *v;
	size_t n, ncap;
	bool has_gitignore;
} listing;

static int list_add(listing *l, const char *name, unsigned char type)
{
	size_t nl = strlen(name) + 1;
	if (l->len + nl > l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 4096;
		while (ncap < l->len + nl)
			ncap *= 2;
		char *nb = realloc(l->names, ncap);
		if (nb == NULL)
			return -1;
		l->names = nb;
		l->cap = ncap;
	}
	if (l->n == l->ncap) {
		size_t ncap = l->ncap ? l->ncap * 2 : 64;
		dent *nv = realloc(l->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return -1;
		l->v = nv;
		l->ncap = ncap;
	}
	memcpy(l->names + l->len, name, nl);
	l->v[l->n].off = l->len;
	l->v[l->n].type = type;
	l->n++;
	l->len += nl;
	return 0;
}

static void push_job(walk *w, job *j)
{
	pthread_mutex_lock(&w->mu);
	j->next = w->stack;
	w->stack = j;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* One directory: list it, read its .gitignore, take its files, queue its
 * subdirectories. */
static int walk_dir(walker *k, job *j)
{
	walk *w = k->w;
	const hs_ckpt__scan_opts *o = w->o;
	const char *rel = j->rel;
	int rc = HS_OK;
	bool pushed = false;
	listing l = { 0 };
	if (j->depth > HS_CKPT__DEPTH_MAX)
		return hs_error_set(&k->err, HS_LIMIT, "checkpoint: %s: deeper than %d directories",
				    rel, HS_CKPT__DEPTH_MAX);
	int fd = hs_ckpt__open_beneath(w->wsfd, rel, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		if (j->depth > 0 &&
		    (fd == -ENOENT || fd == -ELOOP || fd == -ENOTDIR || fd == -EXDEV))
			return HS_OK; /* removed or replaced by a link meanwhile: not ours to follow */
		return hs_error_set(&k->err, fd == -EACCES ? HS_CONFLICT : HS_UNAVAILABLE,
				    "checkpoint: cannot open directory %s: %s", rel[0] ? rel : ".",
				    strerror(-fd));
	}
	/* Watched before it is read: whatever appears later raises an event. */
	if (o->watch != NULL)
		hs_ckpt__watch_dir(o->watch, rel, fd);
	int lfd = dup(fd);
	DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
	if (d == NULL) {
		if (lfd >= 0)
			close(lfd);
		close(fd);
		return hs_error_set(&k->err, HS_UNAVAILABLE, "checkpoint: %s: %s", rel, strerror(errno));
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		if (nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0')))
			continue;
		if (strcmp(nm, ".gitignore") == 0)
			l.has_gitignore = true;
		if (list_add(&l, nm, de->d_type) != 0) {
			closedir(d);
			goto oom;
		}
	}
	closedir(d);
	if (l.has_gitignore &&
	    (rc = hs_ckpt__read_gitignore(&j->ig, fd, rel, &pushed, &k->err)) != HS_OK)
		goto done;
	char *path = k->path;
	size_t rl = strlen(rel);
	hs_ckpt__take take = { o->odb, o->odb_large, o->cache, w->racy_after_ns, w->task_id };
	for (size_t i = 0; i < l.n && !w->stop; i++) {
		const char *nm = l.names + l.v[i].off;
		size_t nl = strlen(nm);
		if (hs_ckpt__is_dot_git(nm, nl)) {
			/* The agent's own repository: never read, never recorded. */
			if (j->depth > 0 && hs_ckpt__strlist_push(&k->part.repo_roots, rel) != 0)
				goto oom;
			continue;
		}
		if (rl + nl + 1 > PATH_LEN_MAX) {
			rc = hs_error_set(&k->err, HS_LIMIT,
					  "checkpoint: path longer than %d bytes under %s", PATH_LEN_MAX,
					  rel[0] ? rel : ".");
			goto done;
		}
		memcpy(path, rel, rl);
		memcpy(path + rl, nm, nl + 1);
		struct stat st;
		unsigned char type = l.v[i].type;
		if (type == DT_UNKNOWN) {
			if (fstatat(fd, nm, &st, AT_SYMLINK_NOFOLLOW) != 0)
				continue; /* vanished meanwhile */
			type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG
							   : S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
		} else if (type == DT_REG || type == DT_LNK) {
			if (fstatat(fd, nm, &st, AT_SYMLINK_NOFOLLOW) != 0)
				continue;
			if (S_ISDIR(st.st_mode))
				type = DT_DIR; /* replaced meanwhile */
		}
		if (type == DT_DIR) {
			if (hs_ckpt__ignored(&j->ig, path, true))
				continue;
			job *c = calloc(1, sizeof(*c));
			if (c == NULL || !(c->rel = malloc(rl + nl + 2)) ||
			    hs_ckpt__ignore_copy(&c->ig, &j->ig) != 0) {
				job_free(c);
				goto oom;
			}
			memcpy(c->rel, path, rl + nl);
			c->rel[rl + nl] = '/';
			c->rel[rl + nl + 1] = '\0';
			c->depth = j->depth + 1;
			push_job(w, c);
			continue;
		}
		if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
			continue; /* sockets, fifos, devices: not git's business */
		if (hs_ckpt__ignored(&j->ig, path, false))
			continue;
		atomic_fetch_add_explicit(&w->files, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&w->bytes, (uint64_t)st.st_size, memory_order_relaxed);
		if ((rc = too_big(k)) != HS_OK)
			goto done;
		bool hashed = false;
		size_t before = k->part.files.n;
		if ((rc = hs_ckpt__take_file(&take, fd, nm, path, &st, &k->part.files, &hashed,
					     &k->err)) != HS_OK)
			goto done;
		if (k->part.files.n > before) {
			hs_ckpt__file *f = &k->part.files.v[k->part.files.n - 1];
			f->multi_link = st.st_nlink > 1;
			k->part.bytes += (uint64_t)st.st_size;
			if (hashed) {
				k->part.hashed++;
				k->part.written_bytes += f->written;
			}
		}
	}
	goto done;
oom:
	rc = hs_error_set(&k->err, HS_INTERNAL, "checkpoint: out of memory");
done:
	if (pushed)
		hs_ckpt__ignore_pop(&j->ig);
	free(l.names);
	free(l.v);
	close(fd);
	return rc;
}

static void *walker_main(void *arg)
{
	walker *k = arg;
	walk *w = k->w;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stop && w->stack == NULL && w->busy > 0)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop || w->stack == NULL)
			break; /* an error, or no job left and nobody to make one */
		job *j = w->stack;
		w->stack = j->next;
		w->busy++;
		pthread_mutex_unlock(&w->mu);
		int rc = walk_dir(k, j);
		job_free(j);
		pthread_mutex_lock(&w->mu);
		w->busy--;
		if (rc != HS_OK) {
			k->rc = rc;
			w->stop = true;
		}
		if (w->stop || (w->stack == NULL && w->busy == 0))
			pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int hs_ckpt__walk(int wsfd, const hs_ckpt__scan_opts *o, const char *rel, int depth,
		  const hs_ckpt__ignore *ig, hs_ckpt__scan *out, hs_error *err)
{
	walk w;
	memset(&w, 0, sizeof(w));
	w.wsfd = wsfd;
	w.o = o;
	w.racy_after_ns = o->racy_after_ns ? o->racy_after_ns : hs_ckpt__racy_after_ns();
	w.task_id = o->task_id ? o->task_id : "-";
	atomic_init(&w.files, o->files_before);
	atomic_init(&w.bytes, o->bytes_before);
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	unsigned n = o->threads == 0 ? 1 : o->threads > WALKERS_MAX ? WALKERS_MAX : o->threads;
	walker *ks = calloc(n, sizeof(*ks));
	pthread_t tids[WALKERS_MAX];
	bool started[WALKERS_MAX] = { false };
	int rc = HS_OK;
	job *root = calloc(1, sizeof(*root));
	if (ks == NULL || root == NULL || !(root->rel = strdup(rel)) ||
	    (ig ? hs_ckpt__ignore_copy(&root->ig, ig) : 0) != 0) {
		job_free(root);
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		goto done;
	}
	root->depth = depth;
	w.stack = root;
	for (unsigned i = 0; i < n; i++)
		ks[i].w = &w;
	/* The first walker is this thread; the others only if there is more
	 * than one directory to share (spawned after the root's listing). */
	for (unsigned i = 1; i < n; i++)
		started[i] = pthread_create(&tids[i], NULL, walker_main, &ks[i]) == 0;
	walker_main(&ks[0]);
	for (unsigned i = 1; i < n; i++)
		if (started[i])
			pthread_join(tids[i], NULL);
	for (unsigned i = 0; i < n && rc == HS_OK; i++)
		if (ks[i].rc != HS_OK) {
			/* The first error a walker met; quota errors first. */
			rc = hs_error_set(err, ks[i].rc, "%s", ks[i].err.msg);
		}
	/* Merge the walkers' parts into out (appended; the caller sorts). */
	for (unsigned i = 0; i < n && rc == HS_OK; i++) {
		hs_ckpt__scan *p = &ks[i].part;
		if (hs_ckpt__files_move(&out->files, &p->files) != 0) {
			rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
			break;
		}
		for (size_t r = 0; r < p->repo_roots.count && rc == HS_OK; r++)
			if (hs_ckpt__strlist_push(&out->repo_roots, p->repo_roots.items[r]) != 0)
				rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
		out->hashed += p->hashed;
		out->bytes += p->bytes;
		out->written_bytes += p->written_bytes;
	}
done:
	while (w.stack) {
		job *j = w.stack;
		w.stack = j->next;
		job_free(j);
	}
	if (ks)
		for (unsigned i = 0; i < n; i++)
			hs_ckpt__scan_dispose(&ks[i].part);
	free(ks);
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void hs_ckpt__scan_sort(hs_ckpt__scan *s)
{
	hs_ckpt__files_sort(&s->files);
	if (s->repo_roots.count > 1)
		qsort(s->repo_roots.items, s->repo_roots.count, sizeof(char *), cmp_str);
}

int hs_ckpt__scan_workspace(int wsfd, const hs_ckpt__scan_opts *o, hs_ckpt__scan *out,
			    hs_error *err)
{
	memset(out, 0, sizeof(*out));
	int rc = hs_ckpt__walk(wsfd, o, "", 0, NULL, out, err);
	if (rc != HS_OK) {
		hs_ckpt__scan_dispose(out);
		return rc;
	}
	hs_ckpt__scan_sort(out);
	return HS_OK;
}
