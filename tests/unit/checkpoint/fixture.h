/* Test fixture for test_checkpoint.c: a temp root with a data dir, a
 * workspace root and the workspace of task "t1", plus file helpers. Included
 * once (static functions), after cmocka.h. */
#ifndef HS_TEST_CHECKPOINT_FIXTURE_H
#define HS_TEST_CHECKPOINT_FIXTURE_H

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "store.h"
#include "tenancy.h"

static const hs_principal ALICE = { "alice", false };
static const hs_principal BOB = { "bob", false };
static const hs_principal ROOT = { "root", true };

typedef struct fx {
	char root[PATH_MAX];
	char data[PATH_MAX];
	char wsroot[PATH_MAX];
	char ws[PATH_MAX]; /* <wsroot>/t1 */
	hs_store *store;   /* real SQLite in <root>/store */
	hs_tenancy *ten;
	hs_ckpt_mgr *mgr;
	hs_ckpt_config cfg; /* as last opened (tests change quotas and hooks) */
} fx;

static int rm_cb(const char *p, const struct stat *st, int fl, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return fl == FTW_DP ? rmdir(p) : unlink(p);
}

static void rmtree(const char *p)
{
	nftw(p, rm_cb, 32, FTW_DEPTH | FTW_PHYS);
}

static void mkdirs(const char *path)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(tmp, 0755);
			*p = '/';
		}
	mkdir(tmp, 0755);
}

/* (Re)open the manager with f->cfg (repos, root, tenancy filled in). */
static int reopen_mgr(fx *f)
{
	hs_ckpt_mgr_free(f->mgr);
	f->mgr = NULL;
	f->cfg.repos_dir = f->data;
	f->cfg.workspace_root = f->wsroot;
	f->cfg.tenancy = f->ten;
	f->cfg.fsync = getenv("HS_CKPT_TEST_FSYNC") != NULL;
	hs_error err = { 0 };
	int rc = hs_ckpt_mgr_new(&f->mgr, &f->cfg, &err);
	if (rc)
		fprintf(stderr, "mgr_new: %s\n", err.msg);
	return rc;
}

static int open_mgr(fx *f, const char *remote)
{
	f->cfg.remote_url = remote;
	return reopen_mgr(f);
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	snprintf(f->root, sizeof(f->root), "/tmp/hs-ckpt-XXXXXX");
	if (!mkdtemp(f->root))
		return -1;
	snprintf(f->data, sizeof(f->data), "%s/data/checkpoints", f->root);
	snprintf(f->wsroot, sizeof(f->wsroot), "%s/ws", f->root);
	snprintf(f->ws, sizeof(f->ws), "%s/ws/t1", f->root);
	char d[PATH_MAX];
	snprintf(d, sizeof(d), "%s/data", f->root);
	mkdirs(d);
	mkdirs(f->ws);
	hs_error err = { 0 };
	char store_dir[PATH_MAX];
	snprintf(store_dir, sizeof(store_dir), "%s/store", f->root);
	if (hs_store_open(&f->store, store_dir, &err) != HS_OK) {
		fprintf(stderr, "store: %s\n", err.msg);
		return -1;
	}
	hs_tenancy_config tc = { f->store, f->wsroot };
	if (hs_tenancy_new(&f->ten, &tc, &err) != HS_OK) {
		fprintf(stderr, "tenancy: %s\n", err.msg);
		return -1;
	}
	if (open_mgr(f, NULL))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	hs_ckpt_mgr_free(f->mgr);
	hs_tenancy_free(f->ten);
	hs_store_free(f->store);
	rmtree(f->root);
	free(f);
	return 0;
}

/* Write <ws>/<rel> (parents created) with mode. */
static void put_in(const char *ws, const char *rel, const char *content, mode_t mode)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", ws, rel);
	char *slash = strrchr(p, '/');
	*slash = '\0';
	mkdirs(p);
	*slash = '/';
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	size_t n = strlen(content);
	assert_int_equal(write(fd, content, n), (ssize_t)n);
	close(fd);
	assert_int_equal(chmod(p, mode), 0);
}

static void put(fx *f, const char *rel, const char *content, mode_t mode)
{
	put_in(f->ws, rel, content, mode);
}

static bool exists_in(const char *ws, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", ws, rel);
	return lstat(p, &st) == 0;
}

static void expect_file_in(const char *ws, const char *rel, const char *content, mode_t mode)
{
	char p[PATH_MAX], buf[4096];
	snprintf(p, sizeof(p), "%s/%s", ws, rel);
	struct stat st;
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0111, mode & 0111);
	int fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_int_equal((size_t)n, strlen(content));
	assert_memory_equal(buf, content, (size_t)n);
}

static void expect_file(fx *f, const char *rel, const char *content, mode_t mode)
{
	expect_file_in(f->ws, rel, content, mode);
}

static void rm(fx *f, const char *rel)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", f->ws, rel);
	assert_int_equal(unlink(p), 0);
}

static void mk_ws(fx *f, const char *task, const char *ws, int64_t step, const char *desc,
		  hs_ckpt_info *out, bool expect_unchanged)
{
	hs_error err = { 0 };
	bool unchanged = !expect_unchanged;
	char *push_err = (char *)1;
	int rc = hs_ckpt_create(f->mgr, task, ws, &ALICE, step, desc, "{\"k\":1}", out, &unchanged,
				&push_err, &err);
	if (rc)
		fprintf(stderr, "create: %s\n", err.msg);
	assert_int_equal(rc, HS_OK);
	assert_int_equal(unchanged, expect_unchanged);
	assert_null(push_err);
}

static void mk(fx *f, int64_t step, const char *desc, hs_ckpt_info *out, bool expect_unchanged)
{
	mk_ws(f, "t1", NULL, step, desc, out, expect_unchanged);
}

static void restore(fx *f, const char *id, uint32_t *restored, uint32_t *removed)
{
	hs_error err = { 0 };
	hs_ckpt_info info;
	uint32_t a = 0, b = 0;
	int rc = hs_ckpt_restore(f->mgr, "t1", id, NULL, &info, &a, &b, &err);
	if (rc)
		fprintf(stderr, "restore: %s\n", err.msg);
	assert_int_equal(rc, HS_OK);
	assert_string_equal(info.checkpoint_id, id);
	hs_ckpt_info_dispose(&info);
	if (restored)
		*restored = a;
	if (removed)
		*removed = b;
}

static void expect_consistent(fx *f, const char *id, bool want)
{
	hs_error err = { 0 };
	hs_ckpt_verify_result v;
	int rc = hs_ckpt_verify(f->mgr, "t1", id, NULL, &v, &err);
	if (rc)
		fprintf(stderr, "verify: %s\n", err.msg);
	assert_int_equal(rc, HS_OK);
	if (v.consistent != want)
		for (size_t i = 0; i < v.added.count; i++)
			fprintf(stderr, "added %s\n", v.added.items[i]);
	assert_int_equal(v.consistent, want);
	hs_ckpt_verify_result_dispose(&v);
}

#endif
