/* Unit tests of the checkpoint module, part two: the open-repository cache,
 * restores that touch only what differs, recorded workspaces, diff
 * defaults and dry-run prunes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "log.h"
#include "fixture.h"

static void mtime_of(fx *f, const char *rel, struct timespec *out)
{
	char p[PATH_MAX];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", f->ws, rel);
	assert_int_equal(lstat(p, &st), 0);
	*out = st.st_mtim;
}

/* Many tasks through a cache of one open repository: every switch closes
 * the previous task's repo, and nothing is lost or stale. */
static void test_checkpoint__open_repo_cache_eviction(void **state)
{
	fx *f = *state;
	hs_ckpt_mgr_set_open_repos(f->mgr, 1);
	char ws[PATH_MAX], task[16];
	hs_ckpt_info c;
	for (int round = 0; round < 3; round++)
		for (int t = 0; t < 3; t++) {
			snprintf(task, sizeof(task), "c%d", t);
			snprintf(ws, sizeof(ws), "%s/%s", f->wsroot, task);
			char content[32];
			snprintf(content, sizeof(content), "round %d", round);
			put_in(ws, "f", content, 0644);
			mk_ws(f, task, NULL, round + 1, "r", &c, false);
			assert_int_equal(c.seq, (uint64_t)round + 1);
			hs_ckpt_info_dispose(&c);
		}
	/* Removing a task drops its cached repo; re-creating starts over. */
	hs_error err = { 0 };
	assert_int_equal(hs_ckpt_delete_task(f->mgr, "c2", &err), HS_OK);
	mk_ws(f, "c2", NULL, 9, "again", &c, false);
	assert_int_equal(c.seq, 1);
	assert_string_equal(c.parent_checkpoint_id, "");
	hs_ckpt_info_dispose(&c);
	hs_ckpt_mgr_set_open_repos(f->mgr, 0); /* closes every idle repo */
	hs_ckpt_info *arr;
	size_t n;
	char *tok;
	assert_int_equal(hs_ckpt_list(f->mgr, "c0", 0, NULL, 0, &arr, &n, &tok, &err), HS_OK);
	assert_int_equal(n, 3);
	hs_ckpt_info_array_free(arr, n);
}

/* A restore writes what differs and leaves every other file alone (its
 * mtime unchanged): the baseline is our index, not the shadow repo's
 * unborn HEAD. */
static void test_checkpoint__restore_touches_only_differences(void **state)
{
	fx *f = *state;
	hs_ckpt_info c1, c2;
	put(f, "same/a", "a", 0644);
	put(f, "same/b", "b", 0755);
	put(f, "changes", "one", 0644);
	mk(f, 1, "one", &c1, false);
	put(f, "changes", "two", 0644);
	put(f, "added-later", "x", 0644);
	mk(f, 2, "two", &c2, false);
	struct timespec before, after;
	mtime_of(f, "same/a", &before);
	sleep(1);
	put(f, "untracked", "u", 0644);
	uint32_t restored = 0, removed = 0;
	restore(f, c1.checkpoint_id, &restored, &removed);
	assert_int_equal(restored, 1);  /* "changes" */
	assert_int_equal(removed, 2);   /* "added-later", "untracked" */
	mtime_of(f, "same/a", &after);
	assert_int_equal(before.tv_sec, after.tv_sec);
	assert_int_equal(before.tv_nsec, after.tv_nsec);
	expect_file(f, "changes", "one", 0644);
	expect_file(f, "same/b", "b", 0755);
	assert_false(exists_in(f->ws, "added-later"));
	assert_false(exists_in(f->ws, "untracked"));
	expect_consistent(f, c1.checkpoint_id, true);
	/* Restoring what is already there writes nothing. */
	restore(f, c1.checkpoint_id, &restored, &removed);
	assert_int_equal(restored + removed, 0);
	restore(f, c2.checkpoint_id, &restored, &removed);
	expect_file(f, "changes", "two", 0644);
	expect_file(f, "added-later", "x", 0644);
	expect_consistent(f, c2.checkpoint_id, true);
	hs_ckpt_info_dispose(&c1);
	hs_ckpt_info_dispose(&c2);
}

/* Restore and verify default to the workspace recorded in the checkpoint. */
static void test_checkpoint__recorded_workspace(void **state)
{
	fx *f = *state;
	char other[PATH_MAX];
	snprintf(other, sizeof(other), "%s/elsewhere", f->wsroot);
	put_in(other, "f", "there", 0644);
	hs_ckpt_info c;
	mk_ws(f, "t1", "elsewhere", 1, "other ws", &c, false);
	assert_string_equal(c.workspace, "elsewhere");
	assert_string_equal(c.created_by, "alice");
	put_in(other, "f", "changed", 0644);
	hs_error err = { 0 };
	hs_ckpt_verify_result v;
	assert_int_equal(hs_ckpt_verify(f->mgr, "t1", NULL, NULL, &v, &err), HS_OK);
	assert_false(v.consistent);
	assert_int_equal(v.modified.count, 1);
	hs_ckpt_verify_result_dispose(&v);
	restore(f, c.checkpoint_id, NULL, NULL);
	expect_file_in(other, "f", "there", 0644);
	assert_false(exists_in(f->ws, "f")); /* the default workspace was not touched */
	hs_ckpt_info got;
	assert_int_equal(hs_ckpt_get(f->mgr, "t1", c.checkpoint_id, &got, &err), HS_OK);
	assert_string_equal(got.workspace, "elsewhere");
	hs_ckpt_info_dispose(&got);
	hs_ckpt_info_dispose(&c);
}

static void test_checkpoint__diff_defaults_and_prune_dry_run(void **state)
{
	fx *f = *state;
	hs_ckpt_info c1, c2, c3;
	put(f, "a", "1\n", 0644);
	mk(f, 1, "one", &c1, false);
	put(f, "a", "1\n2\n", 0644);
	mk(f, 2, "two", &c2, false);
	put(f, "b", "b\n", 0644);
	mk(f, 3, "three", &c3, false);
	hs_error err = { 0 };
	hs_ckpt_diff_entry *d = NULL;
	size_t n = 0;
	char from[HS_CKPT_ID_MAX], to[HS_CKPT_ID_MAX];
	/* to = latest, from = its parent */
	assert_int_equal(hs_ckpt_diff(f->mgr, "t1", NULL, "", from, to, &d, &n, &err), HS_OK);
	assert_string_equal(to, c3.checkpoint_id);
	assert_string_equal(from, c2.checkpoint_id);
	assert_int_equal(n, 1);
	assert_string_equal(d[0].path, "b");
	hs_ckpt_diff_free(d, n);
	/* the first checkpoint diffs against the empty tree */
	assert_int_equal(hs_ckpt_diff(f->mgr, "t1", NULL, c1.checkpoint_id, from, to, &d, &n, &err),
			 HS_OK);
	assert_string_equal(from, "");
	assert_int_equal(n, 1);
	assert_int_equal(d[0].status, HS_CKPT_ADDED);
	assert_int_equal(d[0].additions, 1);
	hs_ckpt_diff_free(d, n);
	assert_int_equal(hs_ckpt_diff(f->mgr, "t1", "bogus", NULL, from, to, &d, &n, &err),
			 HS_INVALID);
	/* dry run reports, deletes nothing */
	uint32_t kept = 0;
	hs_ckpt_strlist pruned = { 0 };
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 1, true, &kept, &pruned, &err), HS_OK);
	assert_int_equal(kept, 1);
	assert_int_equal(pruned.count, 2);
	assert_string_equal(pruned.items[0], c2.checkpoint_id);
	assert_string_equal(pruned.items[1], c1.checkpoint_id);
	hs_ckpt_strlist_dispose(&pruned);
	hs_ckpt_info got;
	assert_int_equal(hs_ckpt_get(f->mgr, "t1", c1.checkpoint_id, &got, &err), HS_OK);
	hs_ckpt_info_dispose(&got);
	hs_ckpt_info_dispose(&c1);
	hs_ckpt_info_dispose(&c2);
	hs_ckpt_info_dispose(&c3);
}

/* Ownership: the first create's caller owns the task. */
static void test_checkpoint__authorize(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", &ALICE, &err), HS_NOT_FOUND);
	put(f, "a", "1", 0644);
	hs_ckpt_info c;
	bool unch;
	/* Created without a caller: nobody's, so admins only. */
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, NULL, 1, "x", NULL, &c, &unch, NULL, &err),
			 HS_OK);
	hs_ckpt_info_dispose(&c);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", &ALICE, &err), HS_DENIED);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", &ROOT, &err), HS_OK);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", NULL, &err), HS_DENIED);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "bad/id", &ROOT, &err), HS_INVALID);
}

int main(void)
{
	hs_log_min_level = HS_LOG_WARN;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_checkpoint__open_repo_cache_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__restore_touches_only_differences, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__recorded_workspace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__diff_defaults_and_prune_dry_run, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__authorize, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
