/* The shadow repository: opening/creating it, stale-lock recovery, libgit2
 * error translation, checkpoint ids, and the metadata kept in each commit. */
#include "checkpoint_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int hs_ckpt__git_err(hs_error *err, int gerr, const char *what, const char *task_id)
{
	const git_error *e = git_error_last();
	const char *msg = (e && e->message) ? e->message : "unknown libgit2 error";
	hs_code code = HS_INTERNAL;
	switch (gerr) {
	case GIT_ENOTFOUND: code = HS_NOT_FOUND; break;
	case GIT_EOWNER: code = HS_CONFLICT; break;
	case GIT_EINVALIDSPEC: code = HS_INVALID; break;
	case GIT_ELOCKED: code = HS_ABORTED; break;
	default: break;
	}
	return hs_error_set(err, code, "checkpoint %s: task %s: %s", what, task_id, msg);
}

char *hs_ckpt__repo_path(const hs_ckpt_mgr *mgr, const char *task_id)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s.git", mgr->repos_dir, task_id) < 0)
		return NULL;
	return p;
}

/* Remove "*.lock" entries of one directory (non-recursive). */
static void unlink_locks_in(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		if (n > 5 && strcmp(de->d_name + n - 5, ".lock") == 0) {
			char p[PATH_MAX];
			if (snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) < (int)sizeof(p) &&
			    unlinkat(dirfd(d), de->d_name, 0) == 0)
				hs_log(HS_LOG_WARN, "checkpoint", "removed stale lock", HS_LS("path", p));
		}
	}
	closedir(d);
}

/* Lock files can only be stale here: every writer of this repo in the
 * process holds the task lock, which our caller holds now. A crash between
 * writing an object and its ref leaves an unreferenced object (harmless) and
 * perhaps a ref lock, which never became the ref: removing it loses nothing
 * that was acknowledged. */
static void remove_stale_locks(const char *gitdir)
{
	char p[PATH_MAX];
	unlink_locks_in(gitdir); /* index.lock, HEAD.lock, config.lock, packed-refs.lock */
	if (snprintf(p, sizeof(p), "%s/refs/harness", gitdir) < (int)sizeof(p))
		unlink_locks_in(p);
	if (snprintf(p, sizeof(p), "%s/refs/harness/checkpoints", gitdir) < (int)sizeof(p))
		unlink_locks_in(p);
}

/* Attributes with the highest precedence ($GIT_DIR/info/attributes): no
 * end-of-line conversion, ident or filter drivers, whatever the workspace's
 * .gitattributes say, so a restore is byte-exact. */
static const char ATTRIBUTES[] = "* -text -ident -filter -working-tree-encoding\n";

static int write_file(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	size_t n = strlen(data);
	ssize_t w = write(fd, data, n);
	int rc = (w == (ssize_t)n && fsync(fd) == 0) ? 0 : -1;
	close(fd);
	return rc;
}

static int init_repo(const char *final_path, hs_ckpt_mgr *mgr, const char *task_id,
		     hs_error *err)
{
	char *tmp = NULL;
	git_repository *repo = NULL;
	git_config *cfg = NULL;
	int rc = HS_OK, g;

	if (asprintf(&tmp, "%s/.tmp-%s-XXXXXX", mgr->repos_dir, task_id) < 0)
		return hs_error_set(err, HS_INTERNAL, "checkpoint init: out of memory");
	if (mkdtemp(tmp) == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint init: task %s: mkdtemp: %s", task_id,
				  strerror(errno));
		goto done;
	}
	git_repository_init_options opts;
	git_repository_init_options_init(&opts, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
	opts.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_NO_REINIT;
	opts.description = "harness checkpoints (shadow repository)";
	if ((g = git_repository_init_ext(&repo, tmp, &opts)) < 0 ||
	    (g = git_repository_config(&cfg, repo)) < 0 ||
	    (g = git_config_set_bool(cfg, "core.filemode", 1)) < 0 ||
	    (g = git_config_set_bool(cfg, "core.symlinks", 1)) < 0 ||
	    (g = git_config_set_bool(cfg, "core.autocrlf", 0)) < 0 ||
	    (g = git_config_set_bool(cfg, "core.ignorecase", 0)) < 0 ||
	    (g = git_config_set_bool(cfg, "core.logallrefupdates", 0)) < 0 ||
	    (g = git_config_set_string(cfg, "harness.task", task_id)) < 0) {
		rc = hs_ckpt__git_err(err, g, "init", task_id);
		goto done;
	}
	char attr[PATH_MAX];
	snprintf(attr, sizeof(attr), "%s/info", tmp);
	if ((mkdir(attr, 0755) != 0 && errno != EEXIST) ||
	    snprintf(attr, sizeof(attr), "%s/info/attributes", tmp) >= (int)sizeof(attr) ||
	    write_file(attr, ATTRIBUTES) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint init: task %s: info/attributes: %s",
				  task_id, strerror(errno));
		goto done;
	}
	git_config_free(cfg);
	cfg = NULL;
	git_repository_free(repo);
	repo = NULL;
	/* The repo appears whole or not at all. */
	if (rename(tmp, final_path) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint init: task %s: rename: %s", task_id,
				  strerror(errno));
		goto done;
	}
	int dfd = open(mgr->repos_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	free(tmp);
	tmp = NULL;
done:
	git_config_free(cfg);
	git_repository_free(repo);
	if (tmp) {
		(void)hs_ckpt__rmtree(tmp);
		free(tmp);
	}
	return rc;
}

/* Older versions kept the task's owner in the repository's config
 * (harness.owner). Ownership is the task id's now (tenancy): claim the id
 * for that owner (first claim wins: a task registered meanwhile keeps its
 * owner) and drop the key, once. Nobody is locked out: the owner keeps the
 * task, and a failure leaves the key for the next open. */
static void migrate_owner(hs_ckpt_mgr *mgr, git_repository *repo, const char *task_id)
{
	git_config *cfg = NULL;
	git_buf buf = { 0 };
	if (mgr->tenancy == NULL || git_repository_config(&cfg, repo) < 0)
		return;
	if (git_config_get_string_buf(&buf, cfg, "harness.owner") == 0) {
		hs_error e = { 0 };
		int rc = HS_OK;
		if (buf.ptr[0] != '\0') {
			hs_principal p = { buf.ptr, false };
			rc = hs_tenancy_claim_task(mgr->tenancy, &p, task_id, &e);
		}
		if (rc == HS_OK || rc == HS_NOT_FOUND) {
			(void)git_config_delete_entry(cfg, "harness.owner");
			hs_log(HS_LOG_INFO, "checkpoint", "owner moved to the task id",
			       HS_LS("task_id", task_id), HS_LS("owner", buf.ptr),
			       HS_LB("kept_other_owner", rc == HS_NOT_FOUND));
		} else {
			hs_log(HS_LOG_WARN, "checkpoint", "owner migration deferred",
			       HS_LS("task_id", task_id), HS_LS("error", e.msg));
		}
	}
	git_buf_dispose(&buf);
	git_config_free(cfg);
}

int hs_ckpt__repo_open(git_repository **out, hs_ckpt_mgr *mgr, hs_ckpt__task_lock *l,
		       const char *task_id, bool create, hs_error *err)
{
	int rc = HS_OK, g;
	char *path = hs_ckpt__repo_path(mgr, task_id);
	if (!path)
		return hs_error_set(err, HS_INTERNAL, "checkpoint open: out of memory");
	struct stat st;
	if (stat(path, &st) != 0) {
		/* Gone behind our back: a cached handle would lie. */
		hs_ckpt__repo_forget(mgr, l);
		if (!create) {
			rc = hs_error_set(err, HS_NOT_FOUND, "task %s has no checkpoints", task_id);
			goto done;
		}
		if ((rc = init_repo(path, mgr, task_id, err)) != HS_OK)
			goto done;
	} else if (l->repo) {
		*out = l->repo;
		goto done;
	} else {
		remove_stale_locks(path);
	}
	git_repository *repo = NULL;
	g = git_repository_open_ext(&repo, path,
				    GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, NULL);
	if (g < 0) {
		rc = hs_ckpt__git_err(err, g, "open", task_id);
		goto done;
	}
	migrate_owner(mgr, repo, task_id);
	hs_ckpt__repo_keep(mgr, l, repo);
	*out = repo;
done:
	free(path);
	return rc;
}

int hs_ckpt__index(git_index **out, hs_ckpt__task_lock *l, const char *task_id, hs_error *err)
{
	if (l->index != NULL) {
		*out = l->index;
		return HS_OK;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%sindex", git_repository_path(l->repo));
	int g = git_index_open(&l->index, path);
	if (g < 0) {
		/* The index is only a cache (it is not fsync'd): if a crash left
		 * it torn, drop it; the next scan re-hashes the workspace once. */
		hs_log(HS_LOG_WARN, "checkpoint", "unreadable index dropped", HS_LS("task_id", task_id),
		       HS_LS("error", git_error_last() ? git_error_last()->message : ""));
		l->index = NULL;
		if (unlink(path) != 0 || (g = git_index_open(&l->index, path)) < 0) {
			l->index = NULL;
			return hs_ckpt__git_err(err, g, "index", task_id);
		}
	}
	*out = l->index;
	return HS_OK;
}

int hs_ckpt__index_save(hs_ckpt__task_lock *l, bool force, const char *task_id)
{
	if (l == NULL || l->index == NULL || !l->index_dirty)
		return 0;
	int64_t now = hs_clock_mono_ms();
	if (!force && now - l->index_saved_ms < HS_CKPT__INDEX_SAVE_MS)
		return 0;
	if (git_index_write(l->index) < 0) {
		hs_log(HS_LOG_WARN, "checkpoint", "index write failed", HS_LS("task_id", task_id),
		       HS_LS("error", git_error_last() ? git_error_last()->message : ""));
		return -1;
	}
	l->index_dirty = false;
	l->index_saved_ms = now;
	return 0;
}

/* ---- durability: fsync exactly what a checkpoint wrote ------------------------ */

int hs_ckpt__fsync_path(const char *path, bool dir)
{
	int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 1 : -1;
	int rc = fsync(fd) == 0 ? 0 : -1;
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

typedef struct oidlist {
	git_oid *v;
	size_t n, cap;
} oidlist;

static int oidlist_add(oidlist *l, const git_oid *id)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 256;
		git_oid *nv = realloc(l->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return -1;
		l->v = nv;
		l->cap = ncap;
	}
	git_oid_cpy(&l->v[l->n++], id);
	return 0;
}

/* The entries of tree that old (may be NULL) lacks at the same path, and
 * below them. Unchanged subtrees are not entered. */
static int collect_new(git_repository *repo, git_tree *tree, git_tree *old, oidlist *out, int depth)
{
	if (depth > HS_CKPT__DEPTH_MAX + 1)
		return -1;
	size_t n = git_tree_entrycount(tree);
	for (size_t i = 0; i < n; i++) {
		const git_tree_entry *e = git_tree_entry_byindex(tree, i);
		const git_tree_entry *o = old ? git_tree_entry_byname(old, git_tree_entry_name(e)) : NULL;
		if (o && git_oid_equal(git_tree_entry_id(o), git_tree_entry_id(e)))
			continue;
		git_object_t type = git_tree_entry_type(e);
		if (type != GIT_OBJECT_BLOB && type != GIT_OBJECT_TREE)
			continue;
		if (oidlist_add(out, git_tree_entry_id(e)) != 0)
			return -1;
		if (type != GIT_OBJECT_TREE)
			continue;
		git_tree *sub = NULL, *osub = NULL;
		if (git_tree_lookup(&sub, repo, git_tree_entry_id(e)) < 0)
			return -1;
		if (o && git_tree_entry_type(o) == GIT_OBJECT_TREE &&
		    git_tree_lookup(&osub, repo, git_tree_entry_id(o)) < 0)
			osub = NULL;
		int rc = collect_new(repo, sub, osub, out, depth + 1);
		git_tree_free(sub);
		git_tree_free(osub);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int hs_ckpt__new_objects(git_repository *repo, git_tree *tree, git_tree *old_tree,
			 const git_oid *commit, git_oid **out, size_t *n)
{
	oidlist l = { 0 };
	if ((!old_tree || !git_oid_equal(git_tree_id(tree), git_tree_id(old_tree))) &&
	    (oidlist_add(&l, git_tree_id(tree)) != 0 || collect_new(repo, tree, old_tree, &l, 0) != 0))
		goto fail;
	if (commit && oidlist_add(&l, commit) != 0)
		goto fail;
	*out = l.v;
	*n = l.n;
	return 0;
fail:
	free(l.v);
	return -1;
}

int hs_ckpt__flush_objects(git_repository *repo, git_tree *tree, git_tree *old_tree,
			   const git_oid *commit, const char *task_id, hs_error *err)
{
	oidlist l = { 0 };
	int rc = HS_OK;
	bool dirs[256] = { false };
	char path[PATH_MAX];
	const char *gitdir = git_repository_path(repo); /* ends with '/' */
	if (hs_ckpt__new_objects(repo, tree, old_tree, commit, &l.v, &l.n) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "checkpoint: task %s: listing new objects failed",
				  task_id);
		goto done;
	}
	/* Written first, fsync()ed after: the first fsync commits the journal
	 * for all of them, the rest find little to do. An object that is not
	 * loose is in a pack made durable by the prune that wrote it. */
	for (size_t i = 0; i < l.n; i++) {
		char hex[GIT_OID_HEXSZ + 1];
		git_oid_tostr(hex, sizeof(hex), &l.v[i]);
		snprintf(path, sizeof(path), "%sobjects/%.2s/%s", gitdir, hex, hex + 2);
		int r = hs_ckpt__fsync_path(path, false);
		if (r < 0)
			goto fail;
		if (r == 0)
			dirs[l.v[i].id[0]] = true;
	}
	for (int d = 0; d < 256; d++)
		if (dirs[d]) {
			snprintf(path, sizeof(path), "%sobjects/%02x", gitdir, d);
			if (hs_ckpt__fsync_path(path, true) < 0)
				goto fail;
		}
	snprintf(path, sizeof(path), "%sobjects", gitdir);
	if (hs_ckpt__fsync_path(path, true) < 0)
		goto fail;
	goto done;
fail:
	rc = hs_error_set(err, HS_INTERNAL, "checkpoint: task %s: fsync %s: %s", task_id, path,
			  strerror(errno));
done:
	free(l.v);
	return rc;
}

int hs_ckpt__flush_refs(git_repository *repo, const char *const *refs, const char *task_id,
			hs_error *err)
{
	const char *gitdir = git_repository_path(repo);
	char path[PATH_MAX], last_dir[PATH_MAX] = "";
	for (size_t i = 0; refs[i]; i++) {
		snprintf(path, sizeof(path), "%s%s", gitdir, refs[i]);
		int r = hs_ckpt__fsync_path(path, false);
		if (r == 1) {
			/* Packed: the file holding it. */
			snprintf(path, sizeof(path), "%spacked-refs", gitdir);
			r = hs_ckpt__fsync_path(path, false) < 0 ? -1 : 0;
			snprintf(path, sizeof(path), "%s%s", gitdir, refs[i]);
		}
		if (r < 0)
			goto fail;
		/* Its directory (and the rename into it), once per directory. */
		char *slash = strrchr(path, '/');
		*slash = '\0';
		if (strcmp(path, last_dir) != 0) {
			if (hs_ckpt__fsync_path(path, true) < 0)
				goto fail;
			snprintf(last_dir, sizeof(last_dir), "%s", path);
		}
	}
	return HS_OK;
fail:
	return hs_error_set(err, HS_INTERNAL, "checkpoint: task %s: fsync %s: %s", task_id, path,
			    strerror(errno));
}

void hs_ckpt__make_id(char out[HS_CKPT_ID_MAX], int64_t step, const git_oid *commit)
{
	char hex[GIT_OID_HEXSZ + 1];
	git_oid_tostr(hex, sizeof(hex), commit);
	snprintf(out, HS_CKPT_ID_MAX, "ckpt-%lld-%.12s", (long long)step, hex);
}

int hs_ckpt__check_id(const char *id, hs_error *err)
{
	if (id == NULL || strncmp(id, "ckpt-", 5) != 0)
		return hs_error_set(err, HS_INVALID, "checkpoint_id: malformed");
	const char *p = id + 5;
	size_t digits = 0;
	while (*p >= '0' && *p <= '9') {
		p++;
		digits++;
	}
	if (digits == 0 || digits > 19 || *p != '-')
		return hs_error_set(err, HS_INVALID, "checkpoint_id: malformed");
	p++;
	size_t hex = 0;
	while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')) {
		p++;
		hex++;
	}
	if (hex != 12 || *p != '\0')
		return hs_error_set(err, HS_INVALID, "checkpoint_id: malformed");
	return HS_OK;
}

int hs_ckpt_validate_checkpoint_id(const char *id, const char *field, hs_error *err)
{
	if (hs_ckpt__check_id(id, NULL) != HS_OK)
		return hs_error_set(err, HS_INVALID, "%s: malformed (expected ckpt-<step>-<12 hex>)",
				    field);
	return HS_OK;
}

char *hs_ckpt__format_message(const hs_ckpt_info *info, const char *request_id)
{
	char *msg = NULL, *meta = NULL;
	json_t *ext = NULL;
	if (info->external_state_json) {
		ext = json_loads(info->external_state_json, 0, NULL);
		if (!ext)
			return NULL;
	}
	json_t *o = json_pack("{s:i, s:s, s:I, s:I, s:s, s:o, s:I, s:s, s:I, s:s, s:s, s:b}",
			      "harness_checkpoint", 1, "task_id", info->task_id, "step",
			      (json_int_t)info->step, "seq", (json_int_t)info->seq, "description",
			      info->description ? info->description : "", "external_state",
			      ext ? ext : json_null(), "created_at_ms", (json_int_t)info->created_at_ms,
			      "parent", info->parent_checkpoint_id, "files_changed",
			      (json_int_t)info->files_changed, "workspace",
			      info->workspace ? info->workspace : "", "created_by", info->created_by,
			      "unchanged", info->unchanged);
	if (!o)
		return NULL;
	if (request_id && request_id[0] &&
	    json_object_set_new(o, "request_id", json_string(request_id)) != 0) {
		json_decref(o);
		return NULL;
	}
	meta = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (!meta)
		return NULL;
	/* A readable summary for `git log`: first line of the description, capped. */
	char summary[73];
	const char *d = info->description ? info->description : "";
	size_t i = 0;
	for (; d[i] && d[i] != '\n' && d[i] != '\r' && i < sizeof(summary) - 1; i++)
		summary[i] = d[i];
	summary[i] = '\0';
	if (asprintf(&msg, "checkpoint step %lld: %s\n\n%s\n", (long long)info->step, summary, meta) < 0)
		msg = NULL;
	free(meta);
	return msg;
}

int hs_ckpt__parse_commit(const git_commit *commit, const char *task_id, hs_ckpt_info *out,
			  hs_error *err)
{
	hs_ckpt_info info;
	memset(&info, 0, sizeof(info));
	const char *msg = git_commit_message(commit);
	const char *body = msg ? strstr(msg, "\n\n") : NULL;
	json_t *o = body ? json_loads(body + 2, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
	json_int_t step = 0, seq = 0, created = 0, files = 0;
	const char *desc = NULL, *parent = NULL, *ws = "", *by = "";
	int unchanged = 0;
	json_t *ext = NULL;
	char hex[GIT_OID_HEXSZ + 1];
	git_oid_tostr(hex, sizeof(hex), git_commit_id(commit));
	/* workspace, created_by, unchanged: absent in commits of older versions. */
	if (!o || json_unpack(o, "{s:I, s:I, s:s, s?o, s:I, s:s, s:I, s?s, s?s, s?b}", "step", &step,
			      "seq", &seq, "description", &desc, "external_state", &ext,
			      "created_at_ms", &created, "parent", &parent, "files_changed", &files,
			      "workspace", &ws, "created_by", &by, "unchanged", &unchanged) != 0) {
		json_decref(o);
		return hs_error_set(err, HS_INTERNAL, "checkpoint: task %s: commit %s has no metadata",
				    task_id, hex);
	}
	info.step = step;
	info.seq = (uint64_t)seq;
	info.created_at_ms = created;
	info.files_changed = (uint32_t)files;
	info.unchanged = unchanged != 0;
	snprintf(info.task_id, sizeof(info.task_id), "%s", task_id);
	snprintf(info.parent_checkpoint_id, sizeof(info.parent_checkpoint_id), "%s", parent);
	snprintf(info.created_by, sizeof(info.created_by), "%s", by);
	info.workspace = strdup(ws);
	memcpy(info.commit, hex, sizeof(info.commit));
	hs_ckpt__make_id(info.checkpoint_id, info.step, git_commit_id(commit));
	info.description = strdup(desc);
	bool has_ext = ext && !json_is_null(ext);
	if (has_ext)
		info.external_state_json = json_dumps(ext, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(o); /* owns desc, parent, ws, by and ext */
	if (!info.description || !info.workspace || (has_ext && !info.external_state_json)) {
		hs_ckpt_info_dispose(&info);
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	}
	*out = info;
	return HS_OK;
}

int hs_ckpt__lookup(git_commit **out, git_repository *repo, const char *task_id,
		    const char *checkpoint_id, hs_error *err)
{
	int rc = hs_ckpt__check_id(checkpoint_id, err);
	if (rc)
		return rc;
	char ref[128];
	snprintf(ref, sizeof(ref), HS_CKPT__REF_PREFIX "%s", checkpoint_id);
	git_oid oid;
	int g = git_reference_name_to_id(&oid, repo, ref);
	if (g == GIT_ENOTFOUND)
		return hs_error_set(err, HS_NOT_FOUND, "checkpoint %s of task %s not found",
				    checkpoint_id, task_id);
	if (g < 0 || (g = git_commit_lookup(out, repo, &oid)) < 0)
		return hs_ckpt__git_err(err, g, "lookup", task_id);
	return HS_OK;
}
