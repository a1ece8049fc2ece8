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
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 1, true, &kept, &pruned, NULL, &err), HS_OK);
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

/* Every page of the task's listing, newest first, into seqs/ids (cap n). */
static size_t list_all(fx *f, int64_t before_step, uint32_t page_size, uint64_t *seqs,
		       char (*ids)[HS_CKPT_ID_MAX], size_t cap)
{
	hs_error err = { 0 };
	char *tok = NULL;
	size_t total = 0;
	do {
		hs_ckpt_info *arr = NULL;
		size_t n = 0;
		char *next = NULL;
		int rc = hs_ckpt_list(f->mgr, "t1", before_step, tok, page_size, &arr, &n, &next, &err);
		if (rc)
			fprintf(stderr, "list: %s\n", err.msg);
		assert_int_equal(rc, HS_OK);
		assert_true(n <= (page_size ? page_size : HS_CKPT_PAGE_DEFAULT));
		for (size_t i = 0; i < n; i++) {
			assert_true(total < cap);
			seqs[total] = arr[i].seq;
			snprintf(ids[total], HS_CKPT_ID_MAX, "%s", arr[i].checkpoint_id);
			total++;
		}
		hs_ckpt_info_array_free(arr, n);
		free(tok);
		tok = next;
	} while (tok);
	return total;
}

static void restart(fx *f)
{
	hs_ckpt_mgr_free(f->mgr);
	f->mgr = NULL;
	assert_int_equal(open_mgr(f, NULL), 0);
}

static void expect_latest(fx *f, uint64_t seq, const char *id)
{
	hs_error err = { 0 };
	hs_ckpt_info c;
	assert_int_equal(hs_ckpt_latest(f->mgr, "t1", &c, &err), HS_OK);
	assert_int_equal(c.seq, seq);
	assert_string_equal(c.checkpoint_id, id);
	hs_ckpt_info_dispose(&c);
}

/* Create at step s with new content; returns the checkpoint's seq and checks
 * its parent. */
static void mk_expect(fx *f, int64_t s, uint64_t seq, const char *parent, char *id_out)
{
	char content[32];
	hs_ckpt_info c;
	snprintf(content, sizeof(content), "v%lld", (long long)s);
	put(f, "f", content, 0644);
	mk(f, s, "d", &c, false);
	assert_int_equal(c.seq, seq);
	assert_string_equal(c.parent_checkpoint_id, parent);
	snprintf(id_out, HS_CKPT_ID_MAX, "%s", c.checkpoint_id);
	hs_ckpt_info_dispose(&c);
}

/* Hundreds of checkpoints: seq, parent, latest, listing and prune stay right
 * from the in-memory catalog and after every restart (rebuilt from refs),
 * including a current checkpoint that was restored or pruned. */
static void test_checkpoint__many_checkpoints_restart(void **state)
{
	enum { N = 300, CAP = N + 16 };
	fx *f = *state;
	static char ids[CAP][HS_CKPT_ID_MAX], got[CAP][HS_CKPT_ID_MAX];
	static uint64_t seqs[CAP];
	hs_error err = { 0 };
	ids[0][0] = '\0';
	for (int i = 1; i <= N; i++)
		mk_expect(f, i, (uint64_t)i, ids[i - 1], ids[i]);
	expect_latest(f, N, ids[N]);

	restart(f);
	expect_latest(f, N, ids[N]);
	assert_int_equal(list_all(f, 0, 7, seqs, got, CAP), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(seqs[i], (uint64_t)(N - i));
		assert_string_equal(got[i], ids[N - i]);
	}
	/* Filter: steps 1..99, newest first, across pages. */
	assert_int_equal(list_all(f, 100, 40, seqs, got, CAP), 99);
	assert_string_equal(got[0], ids[99]);
	assert_string_equal(got[98], ids[1]);

	/* Continues after the restart; a restored checkpoint is the next parent. */
	mk_expect(f, N + 1, N + 1, ids[N], ids[N + 1]);
	restore(f, ids[150], NULL, NULL);
	mk_expect(f, N + 2, N + 2, ids[150], ids[N + 2]);
	restart(f);
	hs_ckpt_info c;
	/* current = N + 2: an unchanged tree is recorded on top of it. */
	mk(f, N + 3, "same tree", &c, true);
	assert_string_equal(c.parent_checkpoint_id, ids[N + 2]);
	assert_int_equal(c.seq, N + 3);
	snprintf(ids[N + 3], HS_CKPT_ID_MAX, "%s", c.checkpoint_id);
	hs_ckpt_info_dispose(&c);
	restore(f, ids[10], NULL, NULL);
	restart(f); /* current comes back from refs/harness/current */
	mk_expect(f, N + 4, N + 4, ids[10], ids[N + 4]);
	expect_latest(f, N + 4, ids[N + 4]);

	/* Prune while the current checkpoint is an old one: it goes, the newest
	 * stands in as the next parent. */
	restore(f, ids[20], NULL, NULL);
	uint32_t kept = 0;
	hs_ckpt_strlist pruned = { 0 };
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 5, false, &kept, &pruned, NULL, &err), HS_OK);
	assert_int_equal(kept, 5);
	assert_int_equal(pruned.count, N + 4 - 5);
	assert_string_equal(pruned.items[0], ids[N - 1]); /* newest pruned first */
	assert_string_equal(pruned.items[pruned.count - 1], ids[1]);
	hs_ckpt_strlist_dispose(&pruned);
	assert_int_equal(hs_ckpt_get(f->mgr, "t1", ids[20], &c, &err), HS_NOT_FOUND);
	assert_int_equal(list_all(f, 0, 2, seqs, got, CAP), 5);
	assert_int_equal(seqs[0], N + 4);
	assert_int_equal(seqs[4], N);
	mk_expect(f, N + 5, N + 5, ids[N + 4], ids[N + 5]);
	restart(f);
	assert_int_equal(list_all(f, 0, 0, seqs, got, CAP), 6);
	assert_string_equal(got[0], ids[N + 5]);
	assert_string_equal(got[5], ids[N]);
	expect_latest(f, N + 5, ids[N + 5]);
	/* A cache of no open repository rebuilds the catalog on every call. */
	hs_ckpt_mgr_set_open_repos(f->mgr, 0);
	mk_expect(f, N + 6, N + 6, ids[N + 5], ids[N + 6]);
	mk_expect(f, N + 7, N + 7, ids[N + 6], ids[N + 7]);
	expect_latest(f, N + 7, ids[N + 7]);
}

/* Ownership is the task id's (tenancy): the first to name it owns it;
 * anyone else gets NOT_FOUND, admins pass, harnessd (NULL) passes. */
static void test_checkpoint__authorize(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", &ALICE, &err), HS_NOT_FOUND);
	put(f, "a", "1", 0644);
	hs_ckpt_info c;
	bool unch;
	/* Created by harnessd itself: nobody's, so admins only. */
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, NULL, 1, "x", NULL, &c, &unch, NULL, &err),
			 HS_OK);
	hs_ckpt_info_dispose(&c);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", &ALICE, &err), HS_DENIED);
	assert_int_equal(hs_ckpt_access(f->mgr, &ALICE, "t1", false, &err), HS_NOT_FOUND);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", &ROOT, &err), HS_OK);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "t1", NULL, &err), HS_NOT_FOUND);
	assert_int_equal(hs_ckpt_access(f->mgr, NULL, "t1", false, &err), HS_OK);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "bad/id", &ROOT, &err), HS_INVALID);
	/* The first user to name an id owns it, for reads too. */
	assert_int_equal(hs_ckpt_access(f->mgr, &BOB, "bobs", true, &err), HS_OK);
	assert_int_equal(hs_ckpt_access(f->mgr, &ALICE, "bobs", true, &err), HS_NOT_FOUND);
	assert_int_equal(hs_ckpt_access(f->mgr, &ALICE, "bobs", false, &err), HS_NOT_FOUND);
	assert_int_equal(hs_ckpt_access(f->mgr, &ROOT, "bobs", false, &err), HS_OK);
	/* What the tasks module asks before a registration: another user's id
	 * is DENIED there (its answer to users is its own business). */
	put_in(f->wsroot, "bobs/f", "b", 0644);
	assert_int_equal(hs_ckpt_create(f->mgr, "bobs", NULL, &BOB, 1, "x", NULL, &c, &unch, NULL,
					&err), HS_OK);
	hs_ckpt_info_dispose(&c);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "bobs", &ALICE, &err), HS_DENIED);
	assert_int_equal(hs_ckpt_authorize(f->mgr, "bobs", &BOB, &err), HS_OK);
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
		cmocka_unit_test_setup_teardown(test_checkpoint__many_checkpoints_restart, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
