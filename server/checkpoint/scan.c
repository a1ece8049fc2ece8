/* Reading a workspace: file lists, stat data, hashing and the stat cache
 * behind create, verify and restore. The walk itself is walk.c (full
 * scans) and track.c (only the paths a watcher saw change).
 *
 * Everything is opened beneath the workspace's directory descriptor:
 * directories with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) relative to
 * it, files with openat(O_NOFOLLOW) relative to their (so opened) directory.
 * A symbolic link is recorded as a link (its target text), never followed;
 * a link swapped in for a directory while we walk makes that open fail
 * instead of leading us out of the workspace. .gitignore files are read the
 * same way (see ignore.c). Nested `.git` entries are never read or recorded.
 *
 * Stat cache. The task's index holds, per path, the blob id and the stat
 * data (ctime, mtime, inode, device, size, mode) seen when it was hashed. A
 * file whose stat matches its entry is not read. Racy entries: a file
 * changed within the same timestamp tick as our stat would keep identical
 * stat data, so an entry recorded with a ctime less than a second before
 * the scan started is stored "smudged" (ctime zero) and hashed again next
 * time; ctime is what we trust (it cannot be set by the agent).
 *
 * Invariant kept for the index: every entry's blob is in the object
 * database. A hash-only scan (verify, restore) never hands back a new id to
 * be stored; the callers only refresh stat data of entries whose content
 * they proved unchanged. */
#include "checkpoint_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RACY_WINDOW_NS 1000000000LL   /* covers 1 s timestamp granularity */

/* ---- opening beneath ---------------------------------------------------------- */

int hs_ckpt__open_beneath(int dirfd, const char *rel, int flags)
{
	static int no_openat2; /* set once if the kernel lacks it */
	if (rel == NULL || rel[0] == '\0')
		rel = ".";
	if (!__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
		struct open_how how;
		memset(&how, 0, sizeof(how));
		how.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW);
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
		long fd = -1;
		/* EAGAIN: a rename elsewhere raced the lookup; the kernel asks us
		 * to try again rather than risk an escape. */
		for (int attempt = 0; attempt < 16; attempt++)
			if ((fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how))) >= 0 ||
			    errno != EAGAIN)
				break;
		if (fd >= 0)
			return (int)fd;
		if (errno != ENOSYS)
			return -errno;
		__atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
	}
	/* Without openat2: one component at a time, none a link. */
	if (strcmp(rel, ".") == 0) {
		int fd = openat(dirfd, ".", flags | O_CLOEXEC);
		return fd >= 0 ? fd : -errno;
	}
	const char *slash = strrchr(rel, '/');
	int parent = -1;
	if (slash != NULL) {
		char *dir = strndup(rel, (size_t)(slash - rel));
		if (dir == NULL)
			return -ENOMEM;
		int rc = hs_tenancy_open_beneath(dirfd, dir, 0, &parent, NULL);
		free(dir);
		if (rc != HS_OK)
			return rc == HS_NOT_FOUND ? -ENOENT : -ELOOP;
	}
	int fd = openat(parent >= 0 ? parent : dirfd, slash ? slash + 1 : rel,
			flags | O_CLOEXEC | O_NOFOLLOW);
	int e = errno;
	if (parent >= 0)
		close(parent);
	return fd >= 0 ? fd : -e;
}

/* ---- file lists ---------------------------------------------------------------- */

void hs_ckpt__files_dispose(hs_ckpt__files *fl)
{
	if (fl == NULL)
		return;
	for (size_t i = 0; i < fl->n; i++)
		free(fl->v[i].path);
	free(fl->v);
	memset(fl, 0, sizeof(*fl));
}

hs_ckpt__file *hs_ckpt__files_add(hs_ckpt__files *fl, const char *path)
{
	if (fl->n == fl->cap) {
		size_t ncap = fl->cap ? fl->cap * 2 : 256;
		hs_ckpt__file *nv = realloc(fl->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return NULL;
		fl->v = nv;
		fl->cap = ncap;
	}
	hs_ckpt__file *f = &fl->v[fl->n];
	memset(f, 0, sizeof(*f));
	if ((f->path = strdup(path)) == NULL)
		return NULL;
	fl->n++;
	return f;
}

int hs_ckpt__files_move(hs_ckpt__files *dst, hs_ckpt__files *src)
{
	if (src->n == 0)
		return 0;
	if (dst->n + src->n > dst->cap) {
		size_t ncap = dst->cap ? dst->cap : 256;
		while (ncap < dst->n + src->n)
			ncap *= 2;
		hs_ckpt__file *nv = realloc(dst->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return -1;
		dst->v = nv;
		dst->cap = ncap;
	}
	memcpy(dst->v + dst->n, src->v, src->n * sizeof(*src->v));
	dst->n += src->n;
	src->n = 0; /* the paths moved with them */
	return 0;
}

static int cmp_file_path(const void *a, const void *b)
{
	return strcmp(((const hs_ckpt__file *)a)->path, ((const hs_ckpt__file *)b)->path);
}

void hs_ckpt__files_sort(hs_ckpt__files *fl)
{
	if (fl->n > 1)
		qsort(fl->v, fl->n, sizeof(*fl->v), cmp_file_path);
}

const hs_ckpt__file *hs_ckpt__files_find(const hs_ckpt__files *fl, const char *path)
{
	size_t lo = 0, hi = fl->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(fl->v[mid].path, path);
		if (c == 0)
			return &fl->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void hs_ckpt__scan_dispose(hs_ckpt__scan *s)
{
	if (s == NULL)
		return;
	hs_ckpt__files_dispose(&s->files);
	hs_ckpt_strlist_dispose(&s->repo_roots);
	memset(s, 0, sizeof(*s));
}

/* ---- stat data ------------------------------------------------------------------- */

uint32_t hs_ckpt__mode_of(mode_t m)
{
	if (S_ISLNK(m))
		return GIT_FILEMODE_LINK;
	return (m & 0100) ? GIT_FILEMODE_BLOB_EXECUTABLE : GIT_FILEMODE_BLOB;
}

void hs_ckpt__stat_fill(hs_ckpt__file *f, const struct stat *st, int64_t racy_after_ns)
{
	f->st.ctime_s = (int32_t)st->st_ctim.tv_sec;
	f->st.ctime_ns = (uint32_t)st->st_ctim.tv_nsec;
	f->st.mtime_s = (int32_t)st->st_mtim.tv_sec;
	f->st.mtime_ns = (uint32_t)st->st_mtim.tv_nsec;
	f->st.dev = (uint32_t)st->st_dev;
	f->st.ino = (uint32_t)st->st_ino;
	f->st.uid = (uint32_t)st->st_uid;
	f->st.gid = (uint32_t)st->st_gid;
	f->st.size = (uint32_t)st->st_size;
	int64_t ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
	f->has_stat = ctime_ns < racy_after_ns;
}

int64_t hs_ckpt__racy_after_ns(void)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec - RACY_WINDOW_NS;
}

/* Does the cached entry describe this file as it is now? */
bool hs_ckpt__cache_hit(const git_index_entry *e, const struct stat *st, uint32_t mode)
{
	return e->mode == mode && e->file_size == (uint32_t)st->st_size &&
	       e->ctime.seconds == (int32_t)st->st_ctim.tv_sec &&
	       e->ctime.nanoseconds == (uint32_t)st->st_ctim.tv_nsec &&
	       e->mtime.seconds == (int32_t)st->st_mtim.tv_sec &&
	       e->mtime.nanoseconds == (uint32_t)st->st_mtim.tv_nsec &&
	       e->ino == (uint32_t)st->st_ino && e->dev == (uint32_t)st->st_dev;
}

int hs_ckpt__index_edit(git_index *index, char *const *drop, size_t ndrop,
			 const hs_ckpt__file *files, const size_t *add, size_t nadd,
			 const char *task_id, bool *changed, hs_error *err)
{
	int g;
	for (size_t k = 0; k < ndrop; k++)
		if ((g = git_index_remove(index, drop[k], 0)) < 0 && g != GIT_ENOTFOUND)
			return hs_ckpt__git_err(err, g, "index", task_id);
	for (size_t k = 0; k < nadd; k++) {
		git_index_entry e;
		hs_ckpt__entry_from_file(&e, &files[add[k]]);
		if ((g = git_index_add(index, &e)) < 0)
			return hs_ckpt__git_err(err, g, "index", task_id);
	}
	*changed = ndrop > 0 || nadd > 0;
	return HS_OK;
}

void hs_ckpt__entry_from_file(git_index_entry *e, const hs_ckpt__file *f)
{
	memset(e, 0, sizeof(*e));
	e->path = f->path;
	e->mode = f->mode;
	git_oid_cpy(&e->id, &f->id);
	if (!f->has_stat)
		return; /* smudged: ctime 0 matches no file, so it is hashed next time */
	e->ctime.seconds = f->st.ctime_s;
	e->ctime.nanoseconds = f->st.ctime_ns;
	e->mtime.seconds = f->st.mtime_s;
	e->mtime.nanoseconds = f->st.mtime_ns;
	e->dev = f->st.dev;
	e->ino = f->st.ino;
	e->uid = f->st.uid;
	e->gid = f->st.gid;
	e->file_size = f->st.size;
}

bool hs_ckpt__entry_equal(const git_index_entry *a, const git_index_entry *b)
{
	return a->mode == b->mode && git_oid_equal(&a->id, &b->id) &&
	       a->ctime.seconds == b->ctime.seconds && a->ctime.nanoseconds == b->ctime.nanoseconds &&
	       a->mtime.seconds == b->mtime.seconds && a->mtime.nanoseconds == b->mtime.nanoseconds &&
	       a->dev == b->dev && a->ino == b->ino && a->file_size == b->file_size &&
	       GIT_INDEX_ENTRY_STAGE(a) == 0;
}

int hs_ckpt__index_apply(git_index *index, const hs_ckpt__files *final, bool *changed,
			 const char *task_id, hs_error *err)
{
	/* Both sides sorted by path: one merge, then the changes (entry
	 * pointers of the index move while it is changed). */
	size_t n = git_index_entrycount(index), i = 0, j = 0;
	char **drop = NULL;
	size_t ndrop = 0;
	size_t *add = NULL, nadd = 0;
	int rc = HS_OK;
	*changed = false;
	if ((n && !(drop = malloc(n * sizeof(*drop)))) ||
	    (final->n && !(add = malloc(final->n * sizeof(*add)))))
		goto oom;
	while (i < n || j < final->n) {
		const git_index_entry *e = i < n ? git_index_get_byindex(index, i) : NULL;
		const hs_ckpt__file *f = j < final->n ? &final->v[j] : NULL;
		int c = !e ? 1 : !f ? -1 : strcmp(e->path, f->path);
		if (c == 0 && GIT_INDEX_ENTRY_STAGE(e) != 0)
			c = -1; /* never ours; dropped */
		if (c < 0) {
			if (!(drop[ndrop] = strdup(e->path)))
				goto oom;
			ndrop++;
			i++;
		} else if (c > 0) {
			add[nadd++] = j++;
		} else {
			git_index_entry want;
			hs_ckpt__entry_from_file(&want, f);
			if (!hs_ckpt__entry_equal(e, &want))
				add[nadd++] = j;
			i++;
			j++;
		}
	}
	rc = hs_ckpt__index_edit(index, drop, ndrop, final->v, add, nadd, task_id, changed, err);
	goto done;
oom:
	rc = hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
done:
	for (size_t k = 0; k < ndrop; k++)
		free(drop[k]);
	free(drop);
	free(add);
	return rc;
}

/* ---- hashing ------------------------------------------------------------------- */

/* Read up to want bytes (stops early at end of file). */
ssize_t hs_ckpt__read_full(int fd, void *buf, size_t want)
{
	size_t got = 0;
	while (got < want) {
		ssize_t r = read(fd, (char *)buf + got, want - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* SHA-1 of a blob streamed from fd (no object written). */
static int hash_stream(int fd, uint64_t size, git_oid *out, bool *short_read)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hdr[64];
	int hl = snprintf(hdr, sizeof(hdr), "blob %llu", (unsigned long long)size);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	char *buf = malloc(1u << 16);
	int rc = -1;
	uint64_t left = size;
	if (!c || !buf || EVP_DigestInit_ex(c, EVP_sha1(), NULL) != 1 ||
	    EVP_DigestUpdate(c, hdr, (size_t)hl + 1) != 1)
		goto done;
	while (left > 0) {
		size_t want = left < (1u << 16) ? (size_t)left : (1u << 16);
		ssize_t r = hs_ckpt__read_full(fd, buf, want);
		if (r < 0)
			goto done;
		if ((size_t)r < want) {
			*short_read = true;
			goto done;
		}
		if (EVP_DigestUpdate(c, buf, (size_t)r) != 1)
			goto done;
		left -= (uint64_t)r;
	}
	if (EVP_DigestFinal_ex(c, md, &mdlen) != 1 || mdlen != GIT_OID_RAWSZ)
		goto done;
	git_oid_fromraw(out, md);
	rc = 0;
done:
	EVP_MD_CTX_free(c);
	free(buf);
	return rc;
}

/* A blob streamed from fd into the object database. */
static int write_stream(int fd, uint64_t size, git_odb *odb, git_oid *out, bool *short_read)
{
	git_odb_stream *s = NULL;
	char *buf = malloc(1u << 16);
	int rc = -1;
	uint64_t left = size;
	if (!buf || git_odb_open_wstream(&s, odb, size, GIT_OBJECT_BLOB) < 0)
		goto done;
	while (left > 0) {
		size_t want = left < (1u << 16) ? (size_t)left : (1u << 16);
		ssize_t r = hs_ckpt__read_full(fd, buf, want);
		if (r < 0)
			goto done;
		if ((size_t)r < want) {
			*short_read = true;
			goto done;
		}
		if (git_odb_stream_write(s, buf, (size_t)r) < 0)
			goto done;
		left -= (uint64_t)r;
	}
	rc = git_odb_stream_finalize_write(out, s) < 0 ? -1 : 0;
done:
	git_odb_stream_free(s);
	free(buf);
	return rc;
}

int hs_ckpt__hash_fd(int fd, uint64_t size, git_odb *odb, git_oid *out, uint64_t *hashed_size,
		     bool *short_read)
{
	*short_read = false;
	if (size > HS_CKPT__READ_IN_MEMORY_MAX) {
		*hashed_size = size;
		return odb ? write_stream(fd, size, odb, out, short_read)
			   : hash_stream(fd, size, out, short_read);
	}
	char *buf = malloc(size ? (size_t)size : 1);
	if (buf == NULL)
		return -1;
	ssize_t r = hs_ckpt__read_full(fd, buf, (size_t)size);
	int rc = -1;
	if (r >= 0) {
		/* Shorter than its stat said: hash what is there (the stat we
		 * keep will not match next time, so it is read again). */
		*short_read = (uint64_t)r != size;
		*hashed_size = (uint64_t)r;
		rc = (odb ? git_odb_write(out, odb, buf, (size_t)r, GIT_OBJECT_BLOB)
			  : git_odb_hash(out, buf, (size_t)r, GIT_OBJECT_BLOB)) < 0 ? -1 : 0;
	}
	free(buf);
	return rc;
}

/* ---- the stat cache, read only ------------------------------------------------------ */

int hs_ckpt__cache_init(hs_ckpt__cache *c, git_index *index)
{
	memset(c, 0, sizeof(*c));
	if (index == NULL)
		return 0;
	size_t n = git_index_entrycount(index);
	if (n && !(c->v = malloc(n * sizeof(*c->v))))
		return -1;
	/* The index keeps its entries sorted by path (then stage): ours are
	 * stage 0, compared with strcmp (core.ignorecase is off). */
	for (size_t i = 0; i < n; i++) {
		const git_index_entry *e = git_index_get_byindex(index, i);
		if (e && GIT_INDEX_ENTRY_STAGE(e) == 0)
			c->v[c->n++] = e;
	}
	return 0;
}

void hs_ckpt__cache_dispose(hs_ckpt__cache *c)
{
	if (c == NULL)
		return;
	free(c->v);
	memset(c, 0, sizeof(*c));
}

size_t hs_ckpt__cache_lower(const hs_ckpt__cache *c, const char *path)
{
	size_t lo = 0, hi = c->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(c->v[mid]->path, path) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const git_index_entry *hs_ckpt__cache_find(const hs_ckpt__cache *c, const char *path)
{
	if (c == NULL)
		return NULL;
	size_t i = hs_ckpt__cache_lower(c, path);
	return i < c->n && strcmp(c->v[i]->path, path) == 0 ? c->v[i] : NULL;
}
