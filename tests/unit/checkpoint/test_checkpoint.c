/* Unit tests of the checkpoint module on real temporary directories. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <git2.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "log.h"
#include "fixture.h"

/* ---- tests -------------------------------------------------------------- */

/* Workspace names are checked, resolved beneath the root, never through a
 * link; a missing one says what to do. */
static void test_checkpoint__workspace_traversal(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	char outside[PATH_MAX], link[PATH_MAX];
	snprintf(outside, sizeof(outside), "%s/outside", f->root);
	mkdirs(outside);
	snprintf(link, sizeof(link), "%s/escape", f->wsroot);
	assert_int_equal(symlink(outside, link), 0);
	hs_ckpt_info info;
	bool unch;
	const char *bad[] = { "../outside", "t1/../../outside", "/tmp", ".", "t1/./x", "t1//x", NULL };
	for (int i = 0; bad[i]; i++) {
		hs_error_clear(&err);
		assert_int_equal(hs_ckpt_create(f->mgr, "t1", bad[i], &ALICE, 1, "x", NULL, &info, &unch,
						NULL, &err), HS_INVALID);
		assert_non_null(strstr(err.msg, "workspace"));
	}
	/* A link where the workspace (or a directory on its way) should be. */
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", "escape", &ALICE, 1, "x", NULL, &info, &unch,
					NULL, &err), HS_CONFLICT);
	assert_non_null(strstr(err.msg, "symbolic link"));
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", "escape/x", &ALICE, 1, "x", NULL, &info,
					&unch, NULL, &err), HS_CONFLICT);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_create(f->mgr, "../t1", NULL, &ALICE, 1, "x", NULL, &info, &unch,
					NULL, &err), HS_INVALID);
	/* A named workspace that does not exist: the path and what to do. */
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", "t1/nope", &ALICE, 1, "x", NULL, &info, &unch,
					NULL, &err), HS_NOT_FOUND);
	assert_non_null(strstr(err.msg, "<workspace-root>/t1/nope"));
	assert_non_null(strstr(err.msg, "leave workspace empty"));
	put(f, "a", "a", 0644);
	hs_ckpt_info c1;
	mk(f, 1, "one", &c1, false);
	uint32_t a, b;
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_restore(f->mgr, "t1", c1.checkpoint_id, "escape", &info, &a, &b,
					 &err), HS_CONFLICT);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_restore(f->mgr, "t1", c1.checkpoint_id, "../outside", &info, &a,
					 &b, &err), HS_INVALID);
	hs_ckpt_verify_result v;
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_verify(f->mgr, "t1", NULL, "escape", &v, &err), HS_CONFLICT);
	/* Nothing was written through the link. */
	char probe[PATH_MAX];
	snprintf(probe, sizeof(probe), "%s/a", outside);
	assert_int_equal(access(probe, F_OK), -1);
	hs_ckpt_info_dispose(&c1);
}

/* The task's default workspace is created by its first checkpoint. */
static void test_checkpoint__default_workspace_created(void **state)
{
	fx *f = *state;
	hs_ckpt_info c;
	char ws[PATH_MAX];
	snprintf(ws, sizeof(ws), "%s/fresh-task", f->wsroot);
	assert_false(exists_in(f->wsroot, "fresh-task"));
	mk_ws(f, "fresh-task", NULL, 3, "tests pass", &c, false);
	assert_true(exists_in(f->wsroot, "fresh-task"));
	assert_int_equal(c.files_changed, 0);
	assert_string_equal(c.workspace, "fresh-task");
	hs_ckpt_info_dispose(&c);
	put_in(ws, "f", "x", 0644);
	mk_ws(f, "fresh-task", NULL, 4, "a file", &c, false);
	assert_int_equal(c.files_changed, 1);
	hs_ckpt_info_dispose(&c);
}

static void test_checkpoint__roundtrip_byte_exact(void **state)
{
	fx *f = *state;
	hs_ckpt_info c1, c2, c3;
	put(f, ".gitignore", "*.log\nbuild/\n", 0644);
	put(f, "a.txt", "alpha\n", 0644);
	put(f, "bin/run.sh", "#!/bin/sh\necho hi\n", 0755);
	put(f, "sub/deep/b.txt", "beta\n", 0644);
	mk(f, 1, "first", &c1, false);
	assert_int_equal(c1.step, 1);
	assert_string_equal(c1.parent_checkpoint_id, "");
	assert_int_equal(c1.files_changed, 4);
	assert_non_null(strstr(c1.external_state_json, "\"k\""));

	put(f, "a.txt", "alpha changed\n", 0644);
	rm(f, "sub/deep/b.txt");
	put(f, "c.txt", "gamma\n", 0644);
	mk(f, 2, "second", &c2, false);
	assert_string_equal(c2.parent_checkpoint_id, c1.checkpoint_id);
	assert_int_equal(c2.files_changed, 3);

	char p[PATH_MAX], l[PATH_MAX];
	snprintf(p, sizeof(p), "%s/bin/run.sh", f->ws);
	assert_int_equal(chmod(p, 0644), 0);
	snprintf(l, sizeof(l), "%s/link", f->ws);
	assert_int_equal(symlink("a.txt", l), 0);
	mk(f, 3, "third", &c3, false);

	/* Ignored and untracked files appear after the last checkpoint. */
	put(f, "debug.log", "keep me\n", 0644);
	put(f, "build/out.o", "obj\n", 0644);
	put(f, "untracked.txt", "remove me\n", 0644);
	put(f, "newdir/x.txt", "remove me too\n", 0644);

	uint32_t restored = 0, removed = 0;
	restore(f, c1.checkpoint_id, &restored, &removed);
	expect_file(f, "a.txt", "alpha\n", 0644);
	expect_file(f, "bin/run.sh", "#!/bin/sh\necho hi\n", 0755);
	expect_file(f, "sub/deep/b.txt", "beta\n", 0644);
	expect_file(f, ".gitignore", "*.log\nbuild/\n", 0644);
	assert_false(exists_in(f->ws, "c.txt"));
	assert_false(exists_in(f->ws, "link"));
	assert_false(exists_in(f->ws, "untracked.txt"));
	assert_false(exists_in(f->ws, "newdir/x.txt"));
	expect_file(f, "debug.log", "keep me\n", 0644);
	expect_file(f, "build/out.o", "obj\n", 0644);
	assert_false(exists_in(f->ws, ".git"));
	/* a.txt, run.sh mode, b.txt back; c.txt, link, 2 untracked removed */
	assert_int_equal(restored, 3);
	assert_int_equal(removed, 4);
	expect_consistent(f, c1.checkpoint_id, true);

	/* Later checkpoints are still there and restorable. */
	restore(f, c3.checkpoint_id, NULL, NULL);
	expect_file(f, "a.txt", "alpha changed\n", 0644);
	expect_file(f, "bin/run.sh", "#!/bin/sh\necho hi\n", 0644);
	expect_file(f, "c.txt", "gamma\n", 0644);
	assert_false(exists_in(f->ws, "sub/deep/b.txt"));
	char target[64] = { 0 };
	assert_int_equal(readlink(l, target, sizeof(target) - 1), 5);
	assert_string_equal(target, "a.txt");
	expect_consistent(f, NULL, true);

	restore(f, c2.checkpoint_id, NULL, NULL);
	expect_file(f, "bin/run.sh", "#!/bin/sh\necho hi\n", 0755);
	assert_false(exists_in(f->ws, "link"));
	expect_file(f, "debug.log", "keep me\n", 0644);
	expect_consistent(f, c2.checkpoint_id, true);
	expect_consistent(f, NULL, false); /* latest is c3 */

	/* No .git and nothing else of ours appeared anywhere. */
	assert_false(exists_in(f->ws, ".git"));
	assert_false(exists_in(f->ws, ".harness"));
	hs_ckpt_info_dispose(&c1);
	hs_ckpt_info_dispose(&c2);
	hs_ckpt_info_dispose(&c3);
}

/* Every create records a checkpoint (issue 12): an unchanged tree is an
 * empty commit that still carries its step, description and state. */
static void test_checkpoint__unchanged_and_parent(void **state)
{
	fx *f = *state;
	hs_ckpt_info c1, c2, same, touched, again, c4;
	put(f, "a", "1", 0644);
	mk(f, 1, "one", &c1, false);
	mk(f, 2, "same tree", &same, true);
	assert_string_not_equal(same.checkpoint_id, c1.checkpoint_id);
	assert_string_equal(same.parent_checkpoint_id, c1.checkpoint_id);
	assert_int_equal(same.files_changed, 0);
	assert_true(same.unchanged);
	assert_int_equal(same.step, 2);
	assert_string_equal(same.description, "same tree");
	assert_int_equal(same.seq, c1.seq + 1);
	/* touching without change is still unchanged */
	put(f, "a", "1", 0644);
	mk(f, 2, "touched", &touched, true);
	assert_string_equal(touched.parent_checkpoint_id, same.checkpoint_id);

	put(f, "a", "2", 0644);
	mk(f, 2, "two", &c2, false);
	assert_false(c2.unchanged);
	assert_int_equal(c2.files_changed, 1);
	restore(f, c1.checkpoint_id, NULL, NULL);
	mk(f, 3, "after restore", &again, true);
	assert_string_equal(again.parent_checkpoint_id, c1.checkpoint_id);
	/* The next new checkpoint's parent is the last one created or restored. */
	put(f, "b", "b", 0644);
	mk(f, 4, "branch", &c4, false);
	assert_string_equal(c4.parent_checkpoint_id, again.checkpoint_id);
	assert_true(c4.seq > c2.seq);

	hs_error err = { 0 };
	hs_ckpt_info latest;
	assert_int_equal(hs_ckpt_latest(f->mgr, "t1", &latest, &err), HS_OK);
	assert_string_equal(latest.checkpoint_id, c4.checkpoint_id);
	hs_ckpt_info_dispose(&latest);
	hs_ckpt_info got;
	assert_int_equal(hs_ckpt_get(f->mgr, "t1", c2.checkpoint_id, &got, &err), HS_OK);
	assert_int_equal(got.step, 2);
	assert_string_equal(got.description, "two");
	assert_string_equal(got.external_state_json, "{\"k\":1}");
	assert_string_equal(got.commit, c2.commit);
	assert_true(got.created_at_ms > 1600000000000LL);
	hs_ckpt_info_dispose(&got);
	assert_int_equal(hs_ckpt_get(f->mgr, "t1", same.checkpoint_id, &got, &err), HS_OK);
	assert_true(got.unchanged);
	assert_string_equal(got.description, "same tree");
	hs_ckpt_info_dispose(&got);
	hs_ckpt_info *arr;
	size_t n;
	char *tok;
	assert_int_equal(hs_ckpt_list(f->mgr, "t1", 0, NULL, 0, &arr, &n, &tok, &err), HS_OK);
	assert_int_equal(n, 6);
	hs_ckpt_info_array_free(arr, n);
	hs_ckpt_info_dispose(&c1);
	hs_ckpt_info_dispose(&same);
	hs_ckpt_info_dispose(&touched);
	hs_ckpt_info_dispose(&c2);
	hs_ckpt_info_dispose(&again);
	hs_ckpt_info_dispose(&c4);
}

static void test_checkpoint__list_paging_filter(void **state)
{
	fx *f = *state;
	char ids[7][HS_CKPT_ID_MAX];
	for (int i = 1; i <= 6; i++) {
		char c[16];
		snprintf(c, sizeof(c), "%d", i);
		put(f, "f", c, 0644);
		hs_ckpt_info info;
		mk(f, i * 10, "step", &info, false);
		memcpy(ids[i], info.checkpoint_id, HS_CKPT_ID_MAX);
		hs_ckpt_info_dispose(&info);
	}
	hs_error err = { 0 };
	hs_ckpt_info *arr = NULL;
	size_t n = 0;
	char *tok = NULL;
	assert_int_equal(hs_ckpt_list(f->mgr, "t1", 0, NULL, 4, &arr, &n, &tok, &err), HS_OK);
	assert_int_equal(n, 4);
	for (int i = 0; i < 4; i++)
		assert_string_equal(arr[i].checkpoint_id, ids[6 - i]);
	assert_non_null(tok);
	hs_ckpt_info_array_free(arr, n);
	char *tok2 = NULL;
	assert_int_equal(hs_ckpt_list(f->mgr, "t1", 0, tok, 4, &arr, &n, &tok2, &err), HS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(arr[0].checkpoint_id, ids[2]);
	assert_string_equal(arr[1].checkpoint_id, ids[1]);
	assert_null(tok2);
	hs_ckpt_info_array_free(arr, n);
	free(tok);

	assert_int_equal(hs_ckpt_list(f->mgr, "t1", 35, NULL, 0, &arr, &n, &tok, &err), HS_OK);
	assert_int_equal(n, 3);
	assert_int_equal(arr[0].step, 30);
	assert_int_equal(arr[2].step, 10);
	assert_null(tok);
	hs_ckpt_info_array_free(arr, n);

	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_list(f->mgr, "t1", 0, "garbage", 0, &arr, &n, &tok, &err), HS_INVALID);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_list(f->mgr, "t1", -1, NULL, 0, &arr, &n, &tok, &err), HS_INVALID);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_list(f->mgr, "none", 0, NULL, 0, &arr, &n, &tok, &err), HS_NOT_FOUND);
}

static bool has(const hs_ckpt_strlist *l, const char *s)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->items[i], s) == 0)
			return true;
	return false;
}

static void test_checkpoint__verify_clean_and_dirty(void **state)
{
	fx *f = *state;
	hs_ckpt_info c1;
	put(f, ".gitignore", "*.tmp\n", 0644);
	put(f, "keep", "k", 0644);
	put(f, "mod", "m", 0644);
	put(f, "del", "d", 0644);
	put(f, "x/exec", "e", 0644);
	mk(f, 1, "base", &c1, false);
	expect_consistent(f, NULL, true);
	expect_consistent(f, c1.checkpoint_id, true);

	put(f, "mod", "changed", 0644);
	rm(f, "del");
	put(f, "new/added", "a", 0644);
	put(f, "ignored.tmp", "i", 0644);
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/x/exec", f->ws);
	chmod(p, 0755);
	hs_error err = { 0 };
	hs_ckpt_verify_result v;
	assert_int_equal(hs_ckpt_verify(f->mgr, "t1", NULL, NULL, &v, &err), HS_OK);
	assert_false(v.consistent);
	assert_string_equal(v.checkpoint_id, c1.checkpoint_id);
	assert_int_equal(v.added.count, 1);
	assert_true(has(&v.added, "new/added"));
	assert_int_equal(v.modified.count, 2);
	assert_true(has(&v.modified, "mod"));
	assert_true(has(&v.modified, "x/exec"));
	assert_int_equal(v.deleted.count, 1);
	assert_true(has(&v.deleted, "del"));
	hs_ckpt_verify_result_dispose(&v);

	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_verify(f->mgr, "t1", "ckpt-1-000000000000", NULL, &v, &err),
			 HS_NOT_FOUND);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_verify(f->mgr, "t1", "HEAD", NULL, &v, &err), HS_INVALID);
	hs_ckpt_info_dispose(&c1);
}

static void test_checkpoint__diff_line_counts(void **state)
{
	fx *f = *state;
	hs_ckpt_info c1, c2;
	put(f, "text", "1\n2\n3\n", 0644);
	put(f, "gone", "bye\n", 0644);
	put(f, "bin", "\x01\x02", 0644);
	put(f, "renamed-from", "a long enough line so rename detection is sure\nline two\n", 0644);
	mk(f, 1, "a", &c1, false);
	put(f, "text", "1\nTWO\n3\n4\n", 0644);
	rm(f, "gone");
	put(f, "added", "x\ny\n", 0644);
	char bin[8] = { 1, 0, 3, 4, 0, 6, 7, 0 };
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/bin", f->ws);
	FILE *fp = fopen(p, "wb");
	fwrite(bin, 1, sizeof(bin), fp);
	fclose(fp);
	char from[PATH_MAX], to[PATH_MAX];
	snprintf(from, sizeof(from), "%s/renamed-from", f->ws);
	snprintf(to, sizeof(to), "%s/renamed-to", f->ws);
	assert_int_equal(rename(from, to), 0);
	mk(f, 2, "b", &c2, false);

	hs_error err = { 0 };
	hs_ckpt_diff_entry *d = NULL;
	size_t n = 0;
	assert_int_equal(hs_ckpt_diff(f->mgr, "t1", c1.checkpoint_id, c2.checkpoint_id, NULL, NULL, &d, &n, &err),
			 HS_OK);
	assert_int_equal(n, 5);
	int seen = 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(d[i].path, "text") == 0) {
			assert_int_equal(d[i].status, HS_CKPT_MODIFIED);
			assert_int_equal(d[i].additions, 2);
			assert_int_equal(d[i].deletions, 1);
			assert_false(d[i].binary);
			seen++;
		} else if (strcmp(d[i].path, "gone") == 0) {
			assert_int_equal(d[i].status, HS_CKPT_DELETED);
			assert_int_equal(d[i].deletions, 1);
			seen++;
		} else if (strcmp(d[i].path, "added") == 0) {
			assert_int_equal(d[i].status, HS_CKPT_ADDED);
			assert_int_equal(d[i].additions, 2);
			seen++;
		} else if (strcmp(d[i].path, "bin") == 0) {
			assert_true(d[i].binary);
			seen++;
		} else if (strcmp(d[i].path, "renamed-to") == 0) {
			assert_int_equal(d[i].status, HS_CKPT_RENAMED);
			assert_string_equal(d[i].old_path, "renamed-from");
			seen++;
		}
	}
	assert_int_equal(seen, 5);
	hs_ckpt_diff_free(d, n);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_diff(f->mgr, "t1", c1.checkpoint_id, "ckpt-9-abcdefabcdef", NULL, NULL, &d, &n,
				      &err), HS_NOT_FOUND);
	hs_ckpt_info_dispose(&c1);
	hs_ckpt_info_dispose(&c2);
}

static void test_checkpoint__prune(void **state)
{
	fx *f = *state;
	char ids[6][HS_CKPT_ID_MAX];
	for (int i = 1; i <= 5; i++) {
		char c[16];
		snprintf(c, sizeof(c), "v%d", i);
		put(f, "f", c, 0644);
		hs_ckpt_info info;
		mk(f, i, "s", &info, false);
		memcpy(ids[i], info.checkpoint_id, HS_CKPT_ID_MAX);
		hs_ckpt_info_dispose(&info);
	}
	hs_error err = { 0 };
	uint32_t kept = 0;
	hs_ckpt_strlist pruned = { 0 };
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 0, false, &kept, &pruned, NULL, &err), HS_INVALID);
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 2, false, &kept, &pruned, NULL, &err), HS_OK);
	assert_int_equal(kept, 2);
	assert_int_equal(pruned.count, 3);
	assert_true(has(&pruned, ids[1]) && has(&pruned, ids[2]) && has(&pruned, ids[3]));
	hs_ckpt_strlist_dispose(&pruned);
	hs_ckpt_info *arr;
	size_t n;
	char *tok;
	assert_int_equal(hs_ckpt_list(f->mgr, "t1", 0, NULL, 0, &arr, &n, &tok, &err), HS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(arr[0].checkpoint_id, ids[5]);
	hs_ckpt_info_array_free(arr, n);
	hs_ckpt_info info;
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_get(f->mgr, "t1", ids[2], &info, &err), HS_NOT_FOUND);
	restore(f, ids[4], NULL, NULL);
	expect_file(f, "f", "v4", 0644);
	/* Parent of a new checkpoint after pruning still works. */
	put(f, "f", "v6", 0644);
	mk(f, 6, "s", &info, false);
	assert_string_equal(info.parent_checkpoint_id, ids[4]);
	hs_ckpt_info_dispose(&info);
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 10, false, &kept, &pruned, NULL, &err), HS_OK);
	assert_int_equal(kept, 3);
	assert_int_equal(pruned.count, 0);
	hs_ckpt_strlist_dispose(&pruned);
}

static void test_checkpoint__nested_repo_captured_as_content(void **state)
{
	fx *f = *state;
	/* The agent's own repos: one at the workspace root, one nested. */
	put(f, ".git/HEAD", "ref: refs/heads/main\n", 0644);
	put(f, ".git/config", "[core]\n", 0644);
	put(f, "top.txt", "top\n", 0644);
	put(f, "proj/.git/HEAD", "ref: refs/heads/main\n", 0644);
	put(f, "proj/.git/objects/aa/bb", "obj", 0644);
	put(f, "proj/.gitignore", "*.o\n", 0644);
	put(f, "proj/src/main.c", "int main;\n", 0644);
	put(f, "proj/src/main.o", "ignored", 0644);
	put(f, "proj/inner/.git/HEAD", "x", 0644);
	put(f, "proj/inner/file", "inner\n", 0644);
	hs_ckpt_info c1, c2;
	mk(f, 1, "nested", &c1, false);
	expect_consistent(f, NULL, true);

	/* Restore into a fresh workspace: content came along, no .git did. */
	hs_error err = { 0 };
	hs_ckpt_info info;
	uint32_t a, b;
	assert_int_equal(hs_ckpt_restore(f->mgr, "t1", c1.checkpoint_id, "fresh", &info, &a, &b, &err),
			 HS_OK);
	hs_ckpt_info_dispose(&info);
	char fresh[PATH_MAX];
	snprintf(fresh, sizeof(fresh), "%s/fresh", f->wsroot);
	expect_file_in(fresh, "top.txt", "top\n", 0644);
	expect_file_in(fresh, "proj/src/main.c", "int main;\n", 0644);
	expect_file_in(fresh, "proj/inner/file", "inner\n", 0644);
	expect_file_in(fresh, "proj/.gitignore", "*.o\n", 0644);
	assert_false(exists_in(fresh, "proj/src/main.o"));
	assert_false(exists_in(fresh, ".git"));
	assert_false(exists_in(fresh, "proj/.git"));
	assert_false(exists_in(fresh, "proj/inner/.git"));

	/* Changes inside a nested repo are seen; its .git is never touched. */
	put(f, "proj/src/main.c", "int main(void);\n", 0644);
	put(f, "proj/src/new.c", "new\n", 0644);
	put(f, "proj/.git/index", "agent index", 0644);
	mk(f, 2, "nested 2", &c2, false);
	assert_int_equal(c2.files_changed, 2);
	/* A repo created after c1 (never captured) survives restore, and so do
	 * all the agent's .git directories. */
	put(f, "later/.git/HEAD", "x", 0644);
	put(f, "later/work.txt", "w", 0644);
	restore(f, c1.checkpoint_id, NULL, NULL);
	expect_file(f, "proj/src/main.c", "int main;\n", 0644);
	assert_false(exists_in(f->ws, "proj/src/new.c"));
	expect_file(f, "proj/.git/index", "agent index", 0644);
	expect_file(f, "proj/.git/objects/aa/bb", "obj", 0644);
	expect_file(f, ".git/HEAD", "ref: refs/heads/main\n", 0644);
	expect_file(f, "later/.git/HEAD", "x", 0644);
	expect_file(f, "later/work.txt", "w", 0644);
	hs_ckpt_info_dispose(&c1);
	hs_ckpt_info_dispose(&c2);
}

typedef struct thr_arg {
	fx *f;
	const char *task;
	const char *ws;
	int n;
	char ids[8][HS_CKPT_ID_MAX];
	int failures;
} thr_arg;

static void *creator(void *p)
{
	thr_arg *t = p;
	char wsdir[PATH_MAX];
	snprintf(wsdir, sizeof(wsdir), "%s/%s", t->f->wsroot, t->ws ? t->ws : t->task);
	for (int i = 0; i < t->n; i++) {
		char c[64];
		snprintf(c, sizeof(c), "%s %d", t->ws ? t->ws : t->task, i);
		put_in(wsdir, t->ws ? t->ws : "file", c, 0644);
		hs_error err = { 0 };
		hs_ckpt_info info;
		bool unch = true;
		if (hs_ckpt_create(t->f->mgr, t->task, t->ws, &ALICE, i, "c", NULL, &info, &unch, NULL,
				   &err) != HS_OK || unch) {
			fprintf(stderr, "thread create: %s\n", err.msg);
			t->failures++;
			continue;
		}
		memcpy(t->ids[i], info.checkpoint_id, HS_CKPT_ID_MAX);
		hs_ckpt_info_dispose(&info);
	}
	return NULL;
}

static void test_checkpoint__concurrent_creates_one_task(void **state)
{
	fx *f = *state;
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/wa", f->wsroot);
	mkdirs(p);
	snprintf(p, sizeof(p), "%s/wb", f->wsroot);
	mkdirs(p);
	thr_arg a = { .f = f, .task = "shared", .ws = "wa", .n = 6 };
	thr_arg b = { .f = f, .task = "shared", .ws = "wb", .n = 6 };
	pthread_t ta, tb;
	pthread_create(&ta, NULL, creator, &a);
	pthread_create(&tb, NULL, creator, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(a.failures + b.failures, 0);
	hs_error err = { 0 };
	hs_ckpt_info *arr;
	size_t n;
	char *tok;
	assert_int_equal(hs_ckpt_list(f->mgr, "shared", 0, NULL, 0, &arr, &n, &tok, &err), HS_OK);
	assert_int_equal(n, 12);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(arr[i].seq, n - i); /* strictly ordered, no gaps */
		for (size_t j = i + 1; j < n; j++)
			assert_string_not_equal(arr[i].commit, arr[j].commit);
	}
	hs_ckpt_info_array_free(arr, n);
}

static void test_checkpoint__parallel_tasks(void **state)
{
	fx *f = *state;
	const char *tasks[4] = { "p0", "p1", "p2", "p3" };
	thr_arg args[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "%s/%s", f->wsroot, tasks[i]);
		mkdirs(p);
		args[i] = (thr_arg){ .f = f, .task = tasks[i], .ws = NULL, .n = 5 };
		pthread_create(&th[i], NULL, creator, &args[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].failures, 0);
		hs_error err = { 0 };
		hs_ckpt_info latest;
		assert_int_equal(hs_ckpt_latest(f->mgr, tasks[i], &latest, &err), HS_OK);
		assert_string_equal(latest.checkpoint_id, args[i].ids[4]);
		assert_int_equal(latest.seq, 5);
		hs_ckpt_info_dispose(&latest);
	}
}

static void test_checkpoint__errors_owner_delete(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	hs_ckpt_info info;
	bool unch;
	bool ex = true;
	assert_int_equal(hs_ckpt_task_exists(f->mgr, "t1", &ex, &err), HS_OK);
	assert_false(ex);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_latest(f->mgr, "t1", &info, &err), HS_NOT_FOUND);
	put(f, "a", "a", 0644);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, &ALICE, 1, "d", "[1,2]", &info, &unch,
					NULL, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "external_state"));
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, &ALICE, -1, "d", NULL, &info, &unch,
					NULL, &err), HS_INVALID);
	hs_error_clear(&err);
	char longdesc[5000];
	memset(longdesc, 'd', sizeof(longdesc) - 1);
	longdesc[sizeof(longdesc) - 1] = '\0';
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, &ALICE, 1, longdesc, NULL, &info, &unch,
					NULL, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "description"));
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, &ALICE, 1, "d\nmore", NULL, &info, &unch,
					NULL, &err), HS_OK);
	assert_null(info.external_state_json);
	assert_string_equal(info.description, "d\nmore");
	hs_ckpt_info_dispose(&info);
	/* Another user sees nothing (NOT_FOUND, as for a missing task); an
	 * admin may; the owner stays. */
	put(f, "a", "b", 0644);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, &BOB, 2, "d", NULL, &info, &unch, NULL,
					&err), HS_NOT_FOUND);
	assert_non_null(strstr(err.msg, "not found"));
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", &BOB, &err), HS_DENIED); /* for the tasks module */
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", &ALICE, &err), HS_OK);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", &ROOT, &err), HS_OK);
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, &ROOT, 2, "d", NULL, &info, &unch, NULL,
					&err), HS_OK);
	assert_string_equal(info.created_by, "root");
	hs_ckpt_info_dispose(&info);
	char owner[HS_PRINCIPAL_ID_MAX];
	assert_int_equal(hs_tenancy_check_task(f->ten, &ALICE, "t1", owner, &err), HS_OK);
	assert_string_equal(owner, "alice");
	assert_int_equal(hs_ckpt_task_exists(f->mgr, "t1", &ex, &err), HS_OK);
	assert_true(ex);
	uint32_t a, b;
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_restore(f->mgr, "t1", "ckpt-1-0123456789ab", NULL, &info, &a, &b,
					 &err), HS_NOT_FOUND);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_restore(f->mgr, "t1", "../../etc", NULL, &info, &a, &b, &err),
			 HS_INVALID);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_get(f->mgr, "t1", "ckpt-1-0123456789AB", &info, &err), HS_INVALID);
	assert_int_equal(hs_ckpt_delete_task(f->mgr, "t1", &err), HS_OK);
	assert_int_equal(hs_ckpt_task_exists(f->mgr, "t1", &ex, &err), HS_OK);
	assert_false(ex);
	expect_file(f, "a", "b", 0644); /* the workspace is not touched */
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_delete_task(f->mgr, "t1", &err), HS_NOT_FOUND);
}

static void test_checkpoint__stale_locks_after_crash(void **state)
{
	fx *f = *state;
	hs_ckpt_info c1, c2;
	put(f, "a", "1", 0644);
	mk(f, 1, "one", &c1, false);
	/* What a kill -9 mid-checkpoint can leave: index and ref lock files,
	 * found by the restarted process (a new manager: nothing cached). */
	hs_ckpt_mgr_free(f->mgr);
	f->mgr = NULL;
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/t1.git/index.lock", f->data);
	put_in("/", p + 1, "junk", 0644);
	snprintf(p, sizeof(p), "%s/t1.git/refs/harness/checkpoints/ckpt-2-aaaaaaaaaaaa.lock", f->data);
	put_in("/", p + 1, "0000000000000000000000000000000000000000\n", 0644);
	snprintf(p, sizeof(p), "%s/t1.git/refs/harness/latest.lock", f->data);
	put_in("/", p + 1, "junk", 0644);
	/* A torn index (it is a cache, not fsync'd) is dropped and rebuilt. */
	snprintf(p, sizeof(p), "%s/t1.git/index", f->data);
	put_in("/", p + 1, "DIRC torn", 0644);
	assert_int_equal(open_mgr(f, NULL), 0);
	put(f, "a", "2", 0644);
	mk(f, 2, "two", &c2, false);
	assert_string_equal(c2.parent_checkpoint_id, c1.checkpoint_id);
	assert_int_equal(c2.files_changed, 1);
	hs_error err = { 0 };
	hs_ckpt_info *arr;
	size_t n;
	char *tok;
	assert_int_equal(hs_ckpt_list(f->mgr, "t1", 0, NULL, 0, &arr, &n, &tok, &err), HS_OK);
	assert_int_equal(n, 2);
	hs_ckpt_info_array_free(arr, n);
	restore(f, c1.checkpoint_id, NULL, NULL);
	expect_file(f, "a", "1", 0644);
	hs_ckpt_info_dispose(&c1);
	hs_ckpt_info_dispose(&c2);
}

static void test_checkpoint__push_to_remote(void **state)
{
	fx *f = *state;
	char remote[PATH_MAX];
	snprintf(remote, sizeof(remote), "%s/remote.git", f->root);
	git_libgit2_init();
	git_repository *r = NULL;
	assert_int_equal(git_repository_init(&r, remote, 1), 0);
	git_repository_free(r);
	hs_ckpt_mgr_free(f->mgr);
	f->mgr = NULL;
	assert_int_equal(open_mgr(f, remote), 0);
	put(f, "a", "pushed", 0644);
	hs_ckpt_info c1;
	mk(f, 1, "push", &c1, false);
	assert_int_equal(git_repository_open_bare(&r, remote), 0);
	char ref[256];
	snprintf(ref, sizeof(ref), "refs/harness/t1/checkpoints/%s", c1.checkpoint_id);
	git_oid oid;
	assert_int_equal(git_reference_name_to_id(&oid, r, ref), 0);
	char hex[41];
	git_oid_tostr(hex, sizeof(hex), &oid);
	assert_string_equal(hex, c1.commit);
	git_repository_free(r);
	hs_ckpt_info_dispose(&c1);

	/* An unreachable remote: reported, the local checkpoint stands. */
	hs_ckpt_mgr_free(f->mgr);
	f->mgr = NULL;
	snprintf(remote, sizeof(remote), "%s/no-such-remote.git", f->root);
	assert_int_equal(open_mgr(f, remote), 0);
	put(f, "a", "local only", 0644);
	hs_error err = { 0 };
	bool unch;
	char *perr = NULL;
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, &ALICE, 2, "x", NULL, &c1, &unch, &perr,
					&err), HS_OK);
	assert_non_null(perr);
	free(perr);
	hs_ckpt_info got;
	assert_int_equal(hs_ckpt_get(f->mgr, "t1", c1.checkpoint_id, &got, &err), HS_OK);
	hs_ckpt_info_dispose(&got);
	hs_ckpt_info_dispose(&c1);
	git_libgit2_shutdown();
}

static double since_ms(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Not a benchmark: shows the stat cache works (HS_CKPT_TEST_FILES to grow). */
static void test_checkpoint__large_tree_incremental(void **state)
{
	fx *f = *state;
	const char *env = getenv("HS_CKPT_TEST_FILES");
	int files = env ? (int)strtol(env, NULL, 10) : 3000;
	char rel[64], content[128];
	for (int i = 0; i < files; i++) {
		snprintf(rel, sizeof(rel), "d%02d/sub%02d/f%05d.txt", i % 50, (i / 50) % 20, i);
		snprintf(content, sizeof(content), "file %d\n", i);
		put(f, rel, content, 0644);
	}
	struct timespec t0;
	hs_ckpt_info c;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mk(f, 1, "first", &c, false);
	double first = since_ms(&t0);
	hs_ckpt_info_dispose(&c);
	sleep(1); /* leave git's racy-timestamp window */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mk(f, 2, "none", &c, true);
	double none = since_ms(&t0);
	hs_ckpt_info_dispose(&c);
	for (int i = 0; i < 10; i++) {
		snprintf(rel, sizeof(rel), "d%02d/sub%02d/f%05d.txt", i % 50, (i / 50) % 20, i);
		put(f, rel, "changed\n", 0644);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mk(f, 3, "ten", &c, false);
	double ten = since_ms(&t0);
	assert_int_equal(c.files_changed, 10);
	hs_ckpt_info_dispose(&c);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	expect_consistent(f, NULL, true);
	double verify = since_ms(&t0);
	fprintf(stderr, "[ large tree ] %d files: first %.1f ms, unchanged %.1f ms, 10 changed %.1f ms, verify %.1f ms\n",
		files, first, none, ten, verify);
}

int main(void)
{
	hs_log_min_level = getenv("HS_CKPT_TEST_VERBOSE") ? HS_LOG_INFO : HS_LOG_WARN;
	if (getenv("HS_CKPT_TEST_FILTER")) /* e.g. "*large*" */
		cmocka_set_test_filter(getenv("HS_CKPT_TEST_FILTER"));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_checkpoint__workspace_traversal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__default_workspace_created, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__roundtrip_byte_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__unchanged_and_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__list_paging_filter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__verify_clean_and_dirty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__diff_line_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__nested_repo_captured_as_content, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__concurrent_creates_one_task, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__parallel_tasks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__errors_owner_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__stale_locks_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__push_to_remote, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__large_tree_incremental, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
