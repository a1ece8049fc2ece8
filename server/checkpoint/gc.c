/* Disk usage of a shadow repository: measuring it (for the repository
 * quota) and giving space back after a prune.
 *
 * Why a prune can free space: checkpoints are root commits (their parent
 * is recorded in the metadata, not as a git parent), so a checkpoint whose
 * ref is deleted is reachable from nothing. hs_ckpt__repack then writes one
 * pack (libgit2's packbuilder) with what the remaining refs reach (commits
 * and their trees, never git parents) plus the blobs the index names (its
 * invariant: every entry's blob exists), makes it durable, and only then
 * deletes every other pack and loose object. A crash at any point leaves
 * every needed object in place (maybe twice). Repositories written before
 * checkpoints became root commits keep their git parents in the commits;
 * those parents are not kept either, and the commits that lost them are
 * listed in `shallow` (git's own marker for that), so `git fsck` and `git
 * log` stay happy. The caller holds the task lock and drops its cached
 * repository afterwards (the object database changed under it). */
#include "checkpoint_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static __thread uint64_t sum_bytes;

static int add_size(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_F && S_ISREG(st->st_mode))
		sum_bytes += (uint64_t)st->st_size;
	return 0;
}

int hs_ckpt__repo_bytes(const char *gitdir, uint64_t *out)
{
	sum_bytes = 0;
	if (nftw(gitdir, add_size, 16, FTW_PHYS) != 0)
		return -1;
	*out = sum_bytes;
	return 0;
}

typedef struct oidset {
	git_oid *v;
	size_t n, cap;
} oidset;

static int oidset_add(oidset *s, const git_oid *id)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 64;
		git_oid *nv = realloc(s->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return -1;
		s->v = nv;
		s->cap = ncap;
	}
	git_oid_cpy(&s->v[s->n++], id);
	return 0;
}

static int oid_cmp(const void *a, const void *b)
{
	return git_oid_cmp(a, b);
}

static bool oidset_has(const oidset *s, const git_oid *id)
{
	return bsearch(id, s->v, s->n, sizeof(*s->v), oid_cmp) != NULL;
}

/* Delete loose objects and every pack but keep ("pack-<hex>"; NULL: all). */
static int drop_other_objects(const char *gitdir, const char *keep)
{
	char dir[4200];
	int failures = 0;
	snprintf(dir, sizeof(dir), "%s/objects", gitdir);
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		bool fanout = strlen(nm) == 2 && strspn(nm, "0123456789abcdef") == 2;
		bool pack = strcmp(nm, "pack") == 0;
		if (!fanout && !pack)
			continue;
		int sfd = openat(dirfd(d), nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sfd < 0)
			continue;
		DIR *s = fdopendir(sfd);
		if (s == NULL) {
			close(sfd);
			continue;
		}
		struct dirent *fe;
		while ((fe = readdir(s)) != NULL) {
			const char *fn = fe->d_name;
			if (fn[0] == '.')
				continue;
			if (pack && (strncmp(fn, "pack-", 5) != 0 ||
				     (keep && strncmp(fn, keep, strlen(keep)) == 0 && fn[strlen(keep)] == '.')))
				continue;
			if (unlinkat(sfd, fn, 0) != 0 && errno != ENOENT)
				failures++;
		}
		closedir(s);
		if (fanout)
			(void)unlinkat(dirfd(d), nm, AT_REMOVEDIR);
	}
	closedir(d);
	return failures ? -1 : 0;
}

static int write_shallow(const char *gitdir, const oidset *shallow)
{
	char path[4200], tmp[4300];
	snprintf(path, sizeof(path), "%s/shallow", gitdir);
	if (shallow->n == 0)
		return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *fp = fopen(tmp, "we");
	if (fp == NULL)
		return -1;
	for (size_t i = 0; i < shallow->n; i++) {
		char hex[GIT_OID_HEXSZ + 1];
		git_oid_tostr(hex, sizeof(hex), &shallow->v[i]);
		fprintf(fp, "%s\n", hex);
	}
	if (fclose(fp) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

int hs_ckpt__repack(git_repository *repo, git_index *index, bool durable, const char *task_id,
		    hs_error *err)
{
	git_packbuilder *pb = NULL;
	git_reference_iterator *it = NULL;
	git_odb *odb = NULL;
	oidset kept = { 0 }, shallow = { 0 };
	char gitdir[4096], packdir[4200], keep[128] = "";
	int rc = HS_OK, g;
	const char *name;
	snprintf(gitdir, sizeof(gitdir), "%s", git_repository_path(repo));
	size_t gl = strlen(gitdir);
	if (gl > 1 && gitdir[gl - 1] == '/')
		gitdir[gl - 1] = '\0';
	snprintf(packdir, sizeof(packdir), "%s/objects/pack", gitdir);
	if ((g = git_packbuilder_new(&pb, repo)) < 0 || (g = git_repository_odb(&odb, repo)) < 0 ||
	    (g = git_reference_iterator_glob_new(&it, repo, "refs/harness/*")) < 0)
		goto git_fail;
	git_packbuilder_set_threads(pb, 1);
	while ((g = git_reference_next_name(&name, it)) == 0) {
		git_oid oid;
		if (git_reference_name_to_id(&oid, repo, name) < 0)
			continue;
		if (oidset_add(&kept, &oid) != 0)
			goto oom;
	}
	if (g != GIT_ITEROVER)
		goto git_fail;
	if (kept.n > 1)
		qsort(kept.v, kept.n, sizeof(*kept.v), oid_cmp);
	for (size_t i = 0; i < kept.n; i++) {
		if (i > 0 && git_oid_equal(&kept.v[i], &kept.v[i - 1]))
			continue;
		git_commit *c = NULL;
		if ((g = git_commit_lookup(&c, repo, &kept.v[i])) < 0)
			goto git_fail;
		for (unsigned p = 0; p < git_commit_parentcount(c); p++)
			if (!oidset_has(&kept, git_commit_parent_id(c, p))) {
				if (oidset_add(&shallow, &kept.v[i]) != 0) {
					git_commit_free(c);
					goto oom;
				}
				break;
			}
		git_commit_free(c);
		if ((g = git_packbuilder_insert_commit(pb, &kept.v[i])) < 0)
			goto git_fail;
	}
	for (size_t i = 0, n = index ? git_index_entrycount(index) : 0; i < n; i++) {
		const git_index_entry *e = git_index_get_byindex(index, i);
		if (git_odb_exists(odb, &e->id) && (g = git_packbuilder_insert(pb, &e->id, NULL)) < 0)
			goto git_fail;
	}
	if (git_packbuilder_object_count(pb) > 0) {
		if ((g = git_packbuilder_write(pb, packdir, 0, NULL, NULL)) < 0)
			goto git_fail;
		snprintf(keep, sizeof(keep), "pack-%s", git_packbuilder_name(pb));
	}
	/* The new pack durable before anything it replaces goes: the pack,
	 * its index and the directory that holds them (no syncfs). */
	if (durable && keep[0]) {
		static const char *const exts[] = { ".pack", ".idx", NULL };
		char p[4400];
		for (size_t i = 0; exts[i]; i++) {
			snprintf(p, sizeof(p), "%s/%s%s", packdir, keep, exts[i]);
			if (hs_ckpt__fsync_path(p, false) != 0) {
				rc = hs_error_set(err, HS_INTERNAL, "checkpoint prune: task %s: fsync %s",
						  task_id, p);
				goto done;
			}
		}
		if (hs_ckpt__fsync_path(packdir, true) != 0) {
			rc = hs_error_set(err, HS_INTERNAL, "checkpoint prune: task %s: fsync %s",
					  task_id, packdir);
			goto done;
		}
	}
	if (write_shallow(gitdir, &shallow) != 0) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "checkpoint prune: task %s: shallow: %s", task_id,
				  strerror(errno));
		goto done;
	}
	if (drop_other_objects(gitdir, keep[0] ? keep : NULL) != 0)
		hs_log(HS_LOG_WARN, "checkpoint", "some old objects could not be removed",
		       HS_LS("task_id", task_id));
	goto done;
git_fail:
	rc = hs_ckpt__git_err(err, g, "repack", task_id);
	goto done;
oom:
	rc = hs_error_set(err, HS_INTERNAL, "checkpoint prune: out of memory");
done:
	free(kept.v);
	free(shallow.v);
	git_reference_iterator_free(it);
	git_odb_free(odb);
	git_packbuilder_free(pb);
	return rc;
}
