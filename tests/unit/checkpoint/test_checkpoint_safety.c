/* Unit tests of the checkpoint module, part three: tenants and paths. The
 * attacks of issue 11 on a real filesystem (links planted where directories
 * are expected, on both the restore and the scan side), another user's task
 * and workspace, the owner migration of older repositories, .gitignore
 * semantics (ours, since libgit2's reads by path), and racy stat data. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint_internal.h"
#include "log.h"
#include "fixture.h"

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	if (d == NULL)
		return 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void replace_by_link(fx *f, const char *rel, const char *target)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", f->ws, rel);
	rmtree(p);
	assert_int_equal(symlink(target, p), 0);
}

static bool is_dir_in(const char *ws, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", ws, rel);
	return lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Issue 11: checkpoint d/victim.txt, replace d by a link to a directory
 * outside, restore: nothing is written outside, d is a directory again.
 * The same two levels down, and for a removal through a link. */
static void test_checkpoint__restore_never_follows_links(void **state)
{
	fx *f = *state;
	char outside[PATH_MAX];
	snprintf(outside, sizeof(outside), "%s/outside", f->root);
	mkdirs(outside);
	put_in(outside, "precious", "keep me", 0644);
	put(f, "d/victim.txt", "v1", 0644);
	put(f, "a/b/c.txt", "deep", 0644);
	put(f, "keep", "k", 0644);
	hs_ckpt_info c1;
	mk(f, 1, "one", &c1, false);

	replace_by_link(f, "d", outside);
	replace_by_link(f, "a/b", outside);
	char x[PATH_MAX];
	snprintf(x, sizeof(x), "%s/x", f->ws);
	assert_int_equal(symlink(outside, x), 0); /* untracked: removed, as a link */
	uint32_t restored = 0, removed = 0;
	restore(f, c1.checkpoint_id, &restored, &removed);
	assert_int_equal(count_entries(outside), 1);
	expect_file_in(outside, "precious", "keep me", 0644);
	assert_true(is_dir_in(f->ws, "d"));
	assert_true(is_dir_in(f->ws, "a/b"));
	expect_file(f, "d/victim.txt", "v1", 0644);
	expect_file(f, "a/b/c.txt", "deep", 0644);
	assert_false(exists_in(f->ws, "x"));
	assert_int_equal(restored, 2);
	assert_int_equal(removed, 3); /* the links d, a/b and x */
	expect_consistent(f, c1.checkpoint_id, true);

	/* A link the scan cannot see (ignored) standing in the way is replaced
	 * all the same. */
	put(f, ".gitignore", "d\n", 0644);
	replace_by_link(f, "d", outside);
	restore(f, c1.checkpoint_id, NULL, NULL);
	assert_true(is_dir_in(f->ws, "d"));
	expect_file(f, "d/victim.txt", "v1", 0644);
	assert_int_equal(count_entries(outside), 1);
	hs_ckpt_info_dispose(&c1);
}

/* The scan side: links are recorded as links and never read through, a
 * .gitignore that is a link is not read, restores recreate links. */
static void test_checkpoint__scan_never_follows_links(void **state)
{
	fx *f = *state;
	char outside[PATH_MAX], rules[PATH_MAX];
	snprintf(outside, sizeof(outside), "%s/outside", f->root);
	mkdirs(outside);
	put_in(outside, "secret.txt", "s3cr3t", 0644);
	snprintf(rules, sizeof(rules), "%s/ignore-all", outside);
	put(f, "inner.txt", "in", 0644);
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/link", f->ws);
	assert_int_equal(symlink(outside, p), 0);
	snprintf(p, sizeof(p), "%s/.gitignore", f->ws);
	put_in(outside, "ignore-all", "*\n", 0644);
	assert_int_equal(symlink(rules, p), 0); /* followed, it would ignore everything */
	hs_ckpt_info c1;
	mk(f, 1, "links", &c1, false);
	hs_error err = { 0 };
	hs_ckpt_diff_entry *d = NULL;
	size_t n = 0;
	assert_int_equal(hs_ckpt_diff(f->mgr, "t1", NULL, c1.checkpoint_id, NULL, NULL, &d, &n, &err),
			 HS_OK);
	assert_int_equal(n, 3);
	assert_string_equal(d[0].path, ".gitignore");
	assert_string_equal(d[1].path, "inner.txt");
	assert_string_equal(d[2].path, "link");
	hs_ckpt_diff_free(d, n);
	/* Restored elsewhere: the links come back as links. */
	hs_ckpt_info info;
	uint32_t a, b;
	assert_int_equal(hs_ckpt_restore(f->mgr, "t1", c1.checkpoint_id, "t1/copy", &info, &a, &b,
					 &err), HS_OK);
	hs_ckpt_info_dispose(&info);
	char copy[PATH_MAX], target[PATH_MAX] = { 0 };
	snprintf(copy, sizeof(copy), "%s/copy/link", f->ws);
	assert_true(readlink(copy, target, sizeof(target) - 1) > 0);
	assert_string_equal(target, outside);
	assert_int_equal(count_entries(outside), 2);
	hs_ckpt_info_dispose(&c1);
}

/* Issue 11's scenarios between two plain users, at the module. */
static void test_checkpoint__other_tenants_task_and_workspace(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	char a1[PATH_MAX];
	snprintf(a1, sizeof(a1), "%s/a1", f->wsroot);
	put_in(a1, "file", "alice's", 0644);
	put_in(a1, "other", "alice's too", 0644);
	hs_ckpt_info c, info;
	mk_ws(f, "a1", NULL, 1, "alice", &c, false);
	/* Bob checkpoints alice's workspace under his own task id. */
	bool unch;
	assert_int_equal(hs_ckpt_create(f->mgr, "b-steal", "a1", &BOB, 1, "x", NULL, &info, &unch,
					NULL, &err), HS_NOT_FOUND);
	/* Bob restores his checkpoint into alice's workspace. */
	char b[PATH_MAX];
	snprintf(b, sizeof(b), "%s/b-evil", f->wsroot);
	put_in(b, "file", "bob's", 0644);
	assert_int_equal(hs_ckpt_create(f->mgr, "b-evil", NULL, &BOB, 1, "x", NULL, &info, &unch,
					NULL, &err), HS_OK);
	uint32_t wr, rm_;
	hs_ckpt_info r;
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_restore_as(f->mgr, &BOB, "b-evil", info.checkpoint_id, "a1", &r, &wr,
					    &rm_, &err), HS_NOT_FOUND);
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_restore_as(f->mgr, &BOB, "b-evil", info.checkpoint_id, "a1/sub", &r,
					    &wr, &rm_, &err), HS_NOT_FOUND);
	hs_ckpt_verify_result v;
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_verify_as(f->mgr, &BOB, "b-evil", NULL, "a1", &v, &err), HS_NOT_FOUND);
	expect_file_in(a1, "file", "alice's", 0644);
	expect_file_in(a1, "other", "alice's too", 0644);
	assert_false(exists_in(a1, "sub"));
	/* Bob on alice's task: every operation is NOT_FOUND. */
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_restore_as(f->mgr, &BOB, "a1", c.checkpoint_id, NULL, &r, &wr, &rm_,
					    &err), HS_NOT_FOUND);
	assert_int_equal(hs_ckpt_verify_as(f->mgr, &BOB, "a1", NULL, NULL, &v, &err), HS_NOT_FOUND);
	assert_int_equal(hs_ckpt_access(f->mgr, &BOB, "a1", false, &err), HS_NOT_FOUND);
	assert_int_equal(hs_ckpt_access(f->mgr, &BOB, "a1", true, &err), HS_NOT_FOUND);
	/* The admin may do both. */
	assert_int_equal(hs_ckpt_restore_as(f->mgr, &ROOT, "b-evil", info.checkpoint_id, "a1", &r, &wr,
					    &rm_, &err), HS_OK);
	hs_ckpt_info_dispose(&r);
	expect_file_in(a1, "file", "bob's", 0644);
	/* Alice may restore into another workspace of hers. */
	assert_int_equal(hs_ckpt_restore_as(f->mgr, &ALICE, "a1", c.checkpoint_id, "a1/copy", &r, &wr,
					    &rm_, &err), HS_OK);
	hs_ckpt_info_dispose(&r);
	hs_ckpt_info_dispose(&info);
	hs_ckpt_info_dispose(&c);
}

/* A repository of an older version names its owner in its config: the
 * owner gets the task id on first open, nobody else can take it. */
static void test_checkpoint__owner_in_config_migrates(void **state)
{
	fx *f = *state;
	hs_error err = { 0 };
	put(f, "a", "1", 0644);
	hs_ckpt_info c;
	bool unch;
	/* Made by harnessd (no caller: nothing claimed), then marked the way
	 * older versions did. */
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, NULL, 1, "old", NULL, &c, &unch, NULL,
					&err), HS_OK);
	char repo_path[PATH_MAX];
	snprintf(repo_path, sizeof(repo_path), "%s/t1.git", f->data);
	git_libgit2_init();
	git_repository *repo = NULL;
	git_config *cfg = NULL;
	assert_int_equal(git_repository_open_bare(&repo, repo_path), 0);
	assert_int_equal(git_repository_config(&cfg, repo), 0);
	assert_int_equal(git_config_set_string(cfg, "harness.owner", "alice"), 0);
	git_config_free(cfg);
	git_repository_free(repo);
	assert_int_equal(open_mgr(f, NULL), 0); /* a restart */
	/* Bob asks first: the migration runs before his claim. */
	assert_int_equal(hs_ckpt_access(f->mgr, &BOB, "t1", true, &err), HS_NOT_FOUND);
	assert_int_equal(hs_ckpt_access(f->mgr, &ALICE, "t1", false, &err), HS_OK);
	hs_ckpt_info got;
	assert_int_equal(hs_ckpt_get(f->mgr, "t1", c.checkpoint_id, &got, &err), HS_OK);
	hs_ckpt_info_dispose(&got);
	char owner[HS_PRINCIPAL_ID_MAX];
	assert_int_equal(hs_tenancy_check_task(f->ten, &ROOT, "t1", owner, &err), HS_OK);
	assert_string_equal(owner, "alice");
	assert_int_equal(git_repository_open_bare(&repo, repo_path), 0);
	assert_int_equal(git_repository_config_snapshot(&cfg, repo), 0);
	const char *v = NULL;
	assert_int_equal(git_config_get_string(&v, cfg, "harness.owner"), GIT_ENOTFOUND);
	git_config_free(cfg);
	git_repository_free(repo);
	git_libgit2_shutdown();
	hs_ckpt_info_dispose(&c);
}

/* gitignore(5) as git matches it. */
static void test_checkpoint__wildmatch(void **state)
{
	(void)state;
	struct {
		const char *pat, *text;
		bool want;
	} cases[] = {
		{ "*.log", "a.log", true },        { "*.log", "dir/a.log", false },
		{ "a?c", "abc", true },            { "a?c", "a/c", false },
		{ "[a-c]x", "bx", true },          { "[!a-c]x", "bx", false },
		{ "[^a-c]x", "dx", true },         { "[[:digit:]]*", "7up", true },
		{ "[]]", "]", true },              { "\\*", "*", true },
		{ "\\*", "x", false },             { "**/foo", "foo", true },
		{ "**/foo", "a/b/foo", true },     { "foo/**", "foo/a/b", true },
		{ "foo/**", "foo", false },        { "a/**/b", "a/b", true },
		{ "a/**/b", "a/x/y/b", true },     { "a/*/b", "a/x/y/b", false },
		{ "a/*", "a/b", true },            { "a/*", "a/b/c", false },
		{ "a**b", "axxb", true },          { "a**b", "ax/xb", false },
		{ "*", "", true },                 { "doc/*.txt", "doc/x.txt", true },
		{ "[a-", "a", false },             { "***/x", "a/x", true },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = hs_ckpt__wildmatch(cases[i].pat, cases[i].text);
		if (got != cases[i].want)
			fprintf(stderr, "wildmatch(%s, %s) = %d\n", cases[i].pat, cases[i].text, got);
		assert_int_equal(got, cases[i].want);
	}
	/* A pattern that would take exponential time finishes (no match). */
	char pat[300], text[300];
	size_t k = 0;
	for (int i = 0; i < 40; i++) {
		pat[k++] = '*';
		pat[k++] = 'a';
	}
	pat[k++] = 'b';
	pat[k] = '\0';
	memset(text, 'a', 200);
	text[200] = '\0';
	assert_false(hs_ckpt__wildmatch(pat, text));
}

/* The rules end to end: negation, directory-only, anchored, "**", nested
 * .gitignore files applying below themselves only. */
static void test_checkpoint__gitignore_rules(void **state)
{
	fx *f = *state;
	put(f, ".gitignore", "# comment\n*.log\n!keep.log\n/build/\ndocs/**/*.tmp\ntrailing\\ \n",
	    0644);
	put(f, "sub/.gitignore", "local.txt\n", 0644);
	const char *ignored[] = { "a.log", "build/x", "docs/a/b/c.tmp", "docs/c.tmp", "sub/local.txt",
				  "sub/deeper/x.log", "trailing ", NULL };
	const char *kept[] = { ".gitignore", "keep.log", "local.txt", "sub/.gitignore", "sub/build/y",
			       "trailing", NULL };
	for (int i = 0; ignored[i]; i++)
		put(f, ignored[i], "i", 0644);
	for (int i = 0; kept[i]; i++)
		if (strcmp(kept[i], ".gitignore") != 0 && strcmp(kept[i], "sub/.gitignore") != 0)
			put(f, kept[i], "k", 0644);
	hs_ckpt_info c;
	mk(f, 1, "rules", &c, false);
	hs_error err = { 0 };
	hs_ckpt_diff_entry *d = NULL;
	size_t n = 0;
	assert_int_equal(hs_ckpt_diff(f->mgr, "t1", NULL, c.checkpoint_id, NULL, NULL, &d, &n, &err),
			 HS_OK);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "%s%s", i ? " " : "recorded: ", d[i].path);
	fprintf(stderr, "\n");
	assert_int_equal(n, 6);
	for (int i = 0; kept[i]; i++)
		assert_string_equal(d[i].path, kept[i]);
	hs_ckpt_diff_free(d, n);
	/* Restore leaves ignored files alone. */
	put(f, "keep.log", "changed", 0644);
	restore(f, c.checkpoint_id, NULL, NULL);
	expect_file(f, "keep.log", "k", 0644);
	for (int i = 0; ignored[i]; i++)
		assert_true(exists_in(f->ws, ignored[i]));
	hs_ckpt_info_dispose(&c);
}

/* A change that keeps size and mtime is still seen (ctime and the racy
 * window), and so is one right after a checkpoint. */
static void test_checkpoint__same_size_same_mtime_change_is_seen(void **state)
{
	fx *f = *state;
	hs_ckpt_info c1, c2;
	put(f, "f", "aaaa", 0644);
	mk(f, 1, "a", &c1, false);
	char p[PATH_MAX];
	struct stat st;
	snprintf(p, sizeof(p), "%s/f", f->ws);
	assert_int_equal(stat(p, &st), 0);
	put(f, "f", "bbbb", 0644);
	struct timespec times[2] = { st.st_atim, st.st_mtim };
	assert_int_equal(utimensat(AT_FDCWD, p, times, 0), 0);
	mk(f, 2, "b", &c2, false);
	assert_int_equal(c2.files_changed, 1);
	expect_consistent(f, c2.checkpoint_id, true);
	restore(f, c1.checkpoint_id, NULL, NULL);
	expect_file(f, "f", "aaaa", 0644);
	hs_ckpt_info_dispose(&c1);
	hs_ckpt_info_dispose(&c2);
}

/* A nested repository standing where the checkpoint has a file is not
 * removed: the restore refuses with a clear error. */
static void test_checkpoint__restore_keeps_nested_git(void **state)
{
	fx *f = *state;
	hs_ckpt_info c1;
	put(f, "thing", "a file", 0644);
	mk(f, 1, "file", &c1, false);
	rm(f, "thing");
	put(f, "thing/.git/HEAD", "ref", 0644);
	hs_error err = { 0 };
	hs_ckpt_info info;
	uint32_t a, b;
	assert_int_equal(hs_ckpt_restore(f->mgr, "t1", c1.checkpoint_id, NULL, &info, &a, &b, &err),
			 HS_CONFLICT);
	assert_non_null(strstr(err.msg, ".git"));
	expect_file(f, "thing/.git/HEAD", "ref", 0644);
	hs_ckpt_info_dispose(&c1);
}

int main(void)
{
	hs_log_min_level = getenv("HS_CKPT_TEST_VERBOSE") ? HS_LOG_INFO : HS_LOG_WARN;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_checkpoint__restore_never_follows_links, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__scan_never_follows_links, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__other_tenants_task_and_workspace, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__owner_in_config_migrates, setup,
						teardown),
		cmocka_unit_test(test_checkpoint__wildmatch),
		cmocka_unit_test_setup_teardown(test_checkpoint__gitignore_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__same_size_same_mtime_change_is_seen,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__restore_keeps_nested_git, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
