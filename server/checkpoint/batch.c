/* One pack per create: a create's new objects are collected in memory
 * (libgit2's mempack, the first backend of the task repository's object
 * database, so every object write of the repository lands there and every
 * read sees it) and those the repository lacks are written as one pack, so
 * making them durable costs three fsync()s (pack, its index, the pack
 * directory) instead of one per object and object directory.
 *
 * Memory is bounded by what changed: a tracked create's blobs larger than
 * HS_CKPT__READ_IN_MEMORY_MAX, and every blob of a full walk (a first
 * checkpoint, a fallback), go through a second, loose-only object database
 * on the same directory, and are fsync()ed one by one
 * (hs_ckpt__flush_objects); their trees and the commit still go in the
 * pack.
 *
 * Small packs accumulate, one per create: beyond HS_CKPT__PACKS_MAX packs,
 * those under HS_CKPT__SMALL_PACK_BYTES are merged into one (their objects
 * read from their .idx files, packed with libgit2's packbuilder, made
 * durable, then the merged packs deleted); large packs (a prune's) stay. A
 * crash in between leaves objects in two packs, never in none. */
#include "checkpoint_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HS_CKPT__PACKS_MAX 32
#define HS_CKPT__SMALL_PACK_BYTES (16u << 20)

void hs_ckpt__batch_free(hs_ckpt__batch *b)
{
	if (b == NULL)
		return;
	git_odb_free(b->loose); /* the mempack is the repository's */
	free(b);
}

int hs_ckpt__batch_get(hs_ckpt__batch **out, hs_ckpt__task_lock *l, const char *task_id,
		       hs_error *err)
{
	char objects[4200];
	git_odb *odb = NULL;
	git_odb_backend *mem = NULL, *loose = NULL;
	int g;
	if (l->batch != NULL) {
		(void)git_mempack_reset(l->batch->mem); /* whatever a failed create left */
		*out = l->batch;
		return HS_OK;
	}
	hs_ckpt__batch *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	snprintf(objects, sizeof(objects), "%sobjects", git_repository_path(l->repo));
	if ((g = git_repository_odb(&odb, l->repo)) < 0 || (g = git_mempack_new(&mem)) < 0)
		goto fail;
	if ((g = git_odb_add_backend(odb, mem, 1000)) < 0) {
		mem->free(mem); /* not the odb's */
		goto fail;
	}
	b->mem = mem;
	if ((g = git_odb_new(&b->loose)) < 0 ||
	    (g = git_odb_backend_loose(&loose, objects, -1, 0, 0, 0)) < 0)
		goto fail;
	if ((g = git_odb_add_backend(b->loose, loose, 1)) < 0) {
		loose->free(loose);
		goto fail;
	}
	git_odb_free(odb);
	l->batch = *out = b;
	return HS_OK;
fail: {
		int rc = hs_ckpt__git_err(err, g, "batch", task_id);
		git_odb_free(odb);
		/* A mempack already added stays with the repository: empty, and
		 * dropped with it. */
		hs_ckpt__batch_free(b);
		return rc;
	}
}

/* Write a pack (bytes in buf) into packdir through libgit2's indexer;
 * *name: its "pack-<hex>" base. durable: fsync pack, index, directory. */
static int store_pack(const char *packdir, git_odb *odb, const void *buf, size_t len, bool durable,
		      char name[128], const char *task_id, hs_error *err)
{
	git_indexer *idx = NULL;
	git_indexer_progress stats;
	git_indexer_options opts;
	int rc = HS_OK, g;
	git_indexer_options_init(&opts, GIT_INDEXER_OPTIONS_VERSION);
	if ((g = git_indexer_new(&idx, packdir, 0, odb, &opts)) < 0 ||
	    (g = git_indexer_append(idx, buf, len, &stats)) < 0 ||
	    (g = git_indexer_commit(idx, &stats)) < 0) {
		rc = hs_ckpt__git_err(err, g, "write pack", task_id);
		goto done;
	}
	snprintf(name, 128, "pack-%s", git_indexer_name(idx));
	if (durable) {
		static const char *const exts[] = { ".pack", ".idx", NULL };
		char p[4400];
		for (size_t i = 0; exts[i]; i++) {
			snprintf(p, sizeof(p), "%s/%s%s", packdir, name, exts[i]);
			if (hs_ckpt__fsync_path(p, false) != 0)
				goto fsync_fail;
		}
		snprintf(p, sizeof(p), "%s", packdir);
		if (hs_ckpt__fsync_path(p, true) != 0)
			goto fsync_fail;
	}
	goto done;
fsync_fail:
	rc = hs_error_set(err, HS_INTERNAL, "checkpoint: task %s: fsync of a new pack: %s", task_id,
			  strerror(errno));
done:
	git_indexer_free(idx);
	return rc;
}

/* The object ids listed in a version 2 pack index. */
static int idx_oids(const char *path, git_packbuilder *pb)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	int rc = -1;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || st.st_size < 8 + 256 * 4) {
		close(fd);
		return -1;
	}
	const unsigned char *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -1;
	uint32_t magic, version, n;
	memcpy(&magic, m, 4);
	memcpy(&version, m + 4, 4);
	memcpy(&n, m + 8 + 255 * 4, 4);
	n = ntohl(n);
	if (ntohl(magic) != 0xff744f63u || ntohl(version) != 2 ||
	    (uint64_t)st.st_size < 8 + 256 * 4 + (uint64_t)n * 20)
		goto done;
	for (uint32_t i = 0; i < n; i++) {
		git_oid id;
		git_oid_fromraw(&id, m + 8 + 256 * 4 + (size_t)i * 20);
		if (git_packbuilder_insert(pb, &id, NULL) < 0)
			goto done;
	}
	rc = 0;
done:
	munmap((void *)m, (size_t)st.st_size);
	return rc;
}

/* Merge the small packs of packdir when there are too many (see top). */
static void merge_small_packs(git_repository *repo, const char *packdir, bool durable,
			      const char *task_id)
{
	DIR *d = opendir(packdir);
	if (d == NULL)
		return;
	char *small[512];
	size_t nsmall = 0, total = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l < 6 || strcmp(de->d_name + l - 5, ".pack") != 0)
			continue;
		total++;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_size < HS_CKPT__SMALL_PACK_BYTES && nsmall < 512 &&
		    (small[nsmall] = strndup(de->d_name, l - 5)) != NULL)
			nsmall++;
	}
	closedir(d);
	git_packbuilder *pb = NULL;
	git_buf buf = { 0 };
	hs_error e = { 0 };
	char name[128], p[4400];
	if (total <= HS_CKPT__PACKS_MAX || nsmall < 2)
		goto done;
	if (git_packbuilder_new(&pb, repo) < 0)
		goto fail;
	git_packbuilder_set_threads(pb, 1);
	for (size_t i = 0; i < nsmall; i++) {
		snprintf(p, sizeof(p), "%s/%s.idx", packdir, small[i]);
		if (idx_oids(p, pb) != 0)
			goto fail;
	}
	git_odb *odb = NULL;
	if (git_packbuilder_write_buf(&buf, pb) < 0 || git_repository_odb(&odb, repo) < 0)
		goto fail;
	int rc = store_pack(packdir, odb, buf.ptr, buf.size, durable, name, task_id, &e);
	git_odb_free(odb);
	if (rc != HS_OK)
		goto fail;
	/* The merged pack is durable: the small ones may go (not the new one,
	 * should it carry the same name as one of them). */
	for (size_t i = 0; i < nsmall; i++) {
		if (strcmp(small[i], name) == 0)
			continue;
		static const char *const exts[] = { ".keep", ".idx", ".pack", ".rev", NULL };
		for (size_t k = 0; exts[k]; k++) {
			snprintf(p, sizeof(p), "%s/%s%s", packdir, small[i], exts[k]);
			(void)unlink(p);
		}
	}
	hs_log(HS_LOG_INFO, "checkpoint", "small packs merged", HS_LS("task_id", task_id),
	       HS_LI("packs", nsmall), HS_LS("into", name));
	goto done;
fail:
	hs_log(HS_LOG_WARN, "checkpoint", "merging small packs failed (they stay)",
	       HS_LS("task_id", task_id), HS_LS("error", e.msg[0] ? e.msg
						 : git_error_last() ? git_error_last()->message : ""));
done:
	git_buf_dispose(&buf);
	git_packbuilder_free(pb);
	for (size_t i = 0; i < nsmall; i++)
		free(small[i]);
}

int hs_ckpt__batch_commit(hs_ckpt__batch *b, git_repository *repo, git_tree *tree,
			  git_tree *old_tree, const git_oid *commit, bool durable,
			  const char *task_id, hs_error *err)
{
	git_buf buf = { 0 };
	git_odb *odb = NULL;
	git_packbuilder *pb = NULL;
	git_oid *ids = NULL;
	size_t n = 0;
	char packdir[4200], name[128];
	int rc = HS_OK, g;
	snprintf(packdir, sizeof(packdir), "%sobjects/pack", git_repository_path(repo));
	if (mkdir(packdir, 0755) != 0 && errno != EEXIST)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: task %s: %s: %s", task_id, packdir,
				    strerror(errno));
	/* Only what is new and in memory: not libgit2's git_mempack_dump,
	 * which packs all a commit reaches (the whole workspace). */
	if (hs_ckpt__new_objects(repo, tree, old_tree, commit, &ids, &n) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: task %s: listing new objects failed",
				  task_id);
		goto done;
	}
	if ((g = git_repository_odb(&odb, repo)) < 0 || (g = git_packbuilder_new(&pb, repo)) < 0)
		goto git_fail;
	git_packbuilder_set_threads(pb, 1);
	for (size_t i = 0; i < n; i++)
		if (b->mem->exists(b->mem, &ids[i]) && (g = git_packbuilder_insert(pb, &ids[i], NULL)) < 0)
			goto git_fail;
	if (git_packbuilder_object_count(pb) > 0) {
		if ((g = git_packbuilder_write_buf(&buf, pb)) < 0)
			goto git_fail;
		if ((rc = store_pack(packdir, odb, buf.ptr, buf.size, durable, name, task_id, err)))
			goto done;
		/* The object database rescans its packs on a miss only: make it
		 * see this one before the memory copies go. */
		if ((g = git_odb_refresh(odb)) < 0)
			goto git_fail;
	}
	(void)git_mempack_reset(b->mem);
	goto done;
git_fail:
	rc = hs_ckpt__git_err(err, g, "pack", task_id);
done:
	free(ids);
	git_packbuilder_free(pb);
	git_odb_free(odb);
	git_buf_dispose(&buf);
	return rc;
}

bool hs_ckpt__packs_maintain(git_repository *repo, bool durable, const char *task_id)
{
	char packdir[4200];
	snprintf(packdir, sizeof(packdir), "%sobjects/pack", git_repository_path(repo));
	size_t packs = 0;
	DIR *d = opendir(packdir);
	if (d == NULL)
		return false;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		packs += l > 5 && strcmp(de->d_name + l - 5, ".pack") == 0;
	}
	closedir(d);
	if (packs <= HS_CKPT__PACKS_MAX)
		return false;
	merge_small_packs(repo, packdir, durable, task_id);
	return true;
}
