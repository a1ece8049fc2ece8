/* Differential test of change tracking (issue 16): random mutation
 * sequences on one workspace, after each of which a checkpoint by a manager
 * that tracks changes (inotify, reads only the changed paths) must record
 * the same tree as a checkpoint by a manager that walks everything. Also:
 * verify answers the same, restores keep them equal, a mass change that
 * overflows the kernel queue, and changes made while the tracking manager
 * is down (a restart) fall back to a full walk, as the metrics say.
 *
 *   HS_CKPT_DIFF_SEED=<n>    the seed (default 1: fixed in CI)
 *   HS_CKPT_DIFF_ROUNDS=<n>  rounds (default 60)
 * tests/unit/checkpoint/differential.sh runs many seeds (long runs). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <git2.h>

#include "fixture.h"
#include "checkpoint_internal.h"
#include "metrics.h"

typedef struct dx {
	fx *f;
	hs_ckpt_mgr *full;    /* watch.off: walks everything every time */
	char full_data[PATH_MAX];
	char outside[PATH_MAX]; /* beside the workspace root, for moves in and out */
	hs_metrics *metrics;  /* the tracked manager's */
	uint64_t rng;
	unsigned round;
	char *prev_ids[512];  /* tracked checkpoint ids, with the full one's beside */
	char *prev_full[512];
	unsigned nprev;
} dx;

static uint64_t rnd(dx *d)
{
	uint64_t x = d->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	d->rng = x;
	return x;
}

static unsigned pick(dx *d, unsigned n)
{
	return (unsigned)(rnd(d) % n);
}

static const char *const DIRS[] = { "", "a/", "a/b/", "c/", "c/d/e/", "ign/", "n/", "a/b/z/" };
static const char *const NAMES[] = { "f0", "f1", "f2", "f3", "x.tmp", "g", "sub" };

static void rel_path(dx *d, char *out, size_t cap)
{
	snprintf(out, cap, "%s%s", DIRS[pick(d, sizeof(DIRS) / sizeof(DIRS[0]))],
		 NAMES[pick(d, sizeof(NAMES) / sizeof(NAMES[0]))]);
}

static void abs_path(dx *d, const char *rel, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", d->f->ws, rel);
}

static void parent_dirs(const char *p)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", p);
	char *s = strrchr(tmp, '/');
	if (s) {
		*s = '\0';
		mkdirs(tmp);
	}
}

static void write_file(const char *p, const char *data, size_t n, bool append)
{
	parent_dirs(p);
	int fd = open(p, O_WRONLY | O_CREAT | O_NOFOLLOW | (append ? O_APPEND : O_TRUNC), 0644);
	if (fd < 0)
		return; /* a directory or a link there: skipped */
	(void)!write(fd, data, n);
	close(fd);
}

/* One random change of the workspace (errors ignored: the path may not be
 * there, or be of another type). */
static void mutate(dx *d)
{
	char r1[256], r2[256], p1[PATH_MAX], p2[PATH_MAX], buf[96];
	rel_path(d, r1, sizeof(r1));
	rel_path(d, r2, sizeof(r2));
	abs_path(d, r1, p1, sizeof(p1));
	abs_path(d, r2, p2, sizeof(p2));
	size_t n = pick(d, 64);
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)('a' + pick(d, 26));
	const char *dir1 = DIRS[1 + pick(d, sizeof(DIRS) / sizeof(DIRS[0]) - 1)];
	char dp1[PATH_MAX], dp2[PATH_MAX];
	snprintf(dp1, sizeof(dp1), "%s/%.*s", d->f->ws, (int)strlen(dir1) - 1, dir1);
	const char *dir2 = DIRS[1 + pick(d, sizeof(DIRS) / sizeof(DIRS[0]) - 1)];
	snprintf(dp2, sizeof(dp2), "%s/%.*s%u", d->f->ws, (int)strlen(dir2) - 1, dir2, pick(d, 3));
	switch (pick(d, 17)) {
	case 0: case 1:
		write_file(p1, buf, n, false);
		break;
	case 2:
		write_file(p1, buf, n, true);
		break;
	case 3:
		unlink(p1);
		break;
	case 4: /* rename a file, maybe across directories */
		parent_dirs(p2);
		rename(p1, p2);
		break;
	case 5: /* rename a directory, maybe across directories */
		parent_dirs(dp2);
		rename(dp1, dp2);
		break;
	case 6:
		rmtree(dp1);
		break;
	case 7: {
		struct stat st;
		if (lstat(p1, &st) == 0 && S_ISREG(st.st_mode))
			chmod(p1, (st.st_mode & 0100) ? 0644 : 0755);
		break;
	}
	case 8: {
		static const char *const targets[] = { "f1", "../a", "a/b", "/etc/passwd", "" };
		parent_dirs(p1);
		unlink(p1);
		symlink(targets[pick(d, 4)], p1);
		break;
	}
	case 9: /* a file becomes a directory, or the reverse */
		if (unlink(p1) == 0 || errno == ENOENT) {
			mkdirs(p1);
			snprintf(p2, sizeof(p2), "%s/inner", p1);
			write_file(p2, buf, n, false);
		} else {
			rmtree(p1);
			write_file(p1, buf, n, false);
		}
		break;
	case 10: {
		static const char *const rules[] = { "*.tmp\n", "ign/\n", "f3\n", "*\n!f1\n!*/\n", "",
						     "sub\n" };
		char gi[PATH_MAX];
		snprintf(gi, sizeof(gi), "%s/%s.gitignore", d->f->ws, DIRS[pick(d, 5)]);
		const char *r = rules[pick(d, 6)];
		write_file(gi, r, strlen(r), false);
		break;
	}
	case 11: /* a hard link, then a write through one of the names */
		parent_dirs(p2);
		if (link(p1, p2) == 0)
			write_file(pick(d, 2) ? p1 : p2, buf, n, true);
		break;
	case 12: { /* the agent's own repository */
		char g[PATH_MAX];
		snprintf(g, sizeof(g), "%s/.git/HEAD", dp1);
		write_file(g, "ref: refs/heads/main\n", 21, false);
		snprintf(g, sizeof(g), "%s/tracked-in-repo", dp1);
		write_file(g, buf, n, false);
		break;
	}
	case 13: { /* moved in from outside the workspace (never watched) */
		char o[PATH_MAX], f1[PATH_MAX];
		snprintf(o, sizeof(o), "%s/in%u", d->outside, d->round);
		snprintf(f1, sizeof(f1), "%s/deep/er/file", o);
		write_file(f1, buf, n, false);
		parent_dirs(dp2);
		if (rename(o, dp2) != 0)
			rmtree(o);
		break;
	}
	case 14: { /* moved out of it */
		char o[PATH_MAX];
		snprintf(o, sizeof(o), "%s/out%u-%u", d->outside, d->round, pick(d, 1000));
		rename(dp1, o);
		break;
	}
	case 15: { /* same size, new content */
		struct stat st;
		if (lstat(p1, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
			int fd = open(p1, O_WRONLY | O_NOFOLLOW);
			if (fd >= 0) {
				char c = (char)('A' + pick(d, 26));
				(void)!pwrite(fd, &c, 1, 0);
				close(fd);
			}
		}
		break;
	}
	default: { /* nested directories */
		char deep[PATH_MAX];
		snprintf(deep, sizeof(deep), "%s/n/%u/%u/%u/leaf", d->f->ws, pick(d, 3), pick(d, 3),
			 pick(d, 3));
		write_file(deep, buf, n, false);
		break;
	}
	}
}

static void tree_of(const char *gitdir, const char *commit_hex, git_oid *out)
{
	git_repository *r = NULL;
	git_commit *c = NULL;
	git_oid id;
	assert_int_equal(git_repository_open_bare(&r, gitdir), 0);
	assert_int_equal(git_oid_fromstr(&id, commit_hex), 0);
	assert_int_equal(git_commit_lookup(&c, r, &id), 0);
	git_oid_cpy(out, git_commit_tree_id(c));
	git_commit_free(c);
	git_repository_free(r);
}

/* files_changed as libgit2's own tree-to-tree diff counts it. */
static void expect_files_changed(const char *gitdir, const hs_ckpt_info *c)
{
	git_repository *r = NULL;
	git_commit *cc = NULL, *pc = NULL;
	git_tree *t = NULL, *pt = NULL;
	git_diff *diff = NULL;
	git_oid id;
	assert_int_equal(git_repository_open_bare(&r, gitdir), 0);
	assert_int_equal(git_oid_fromstr(&id, c->commit), 0);
	assert_int_equal(git_commit_lookup(&cc, r, &id), 0);
	assert_int_equal(git_commit_tree(&t, cc), 0);
	if (c->parent_checkpoint_id[0]) {
		char ref[128];
		snprintf(ref, sizeof(ref), "refs/harness/checkpoints/%s", c->parent_checkpoint_id);
		assert_int_equal(git_reference_name_to_id(&id, r, ref), 0);
		assert_int_equal(git_commit_lookup(&pc, r, &id), 0);
		assert_int_equal(git_commit_tree(&pt, pc), 0);
	}
	assert_int_equal(git_diff_tree_to_tree(&diff, r, pt, t, NULL), 0);
	assert_int_equal(c->files_changed, git_diff_num_deltas(diff));
	git_diff_free(diff);
	git_tree_free(t);
	git_tree_free(pt);
	git_commit_free(cc);
	git_commit_free(pc);
	git_repository_free(r);
}

/* The value of harness_checkpoint_scans_total for op/mode/reason. */
static double scans(dx *d, const char *op, const char *mode, const char *reason)
{
	char key[256];
	snprintf(key, sizeof(key), "harness_checkpoint_scans_total{op=\"%s\",mode=\"%s\",reason=\"%s\"} ",
		 op, mode, reason);
	char *text = hs_metrics_render(d->metrics, NULL);
	assert_non_null(text);
	char *p = strstr(text, key);
	double v = p ? strtod(p + strlen(key), NULL) : 0;
	free(text);
	return v;
}

static void verify_same(dx *d)
{
	hs_error e = { 0 };
	hs_ckpt_verify_result a, b;
	int rc = hs_ckpt_verify(d->f->mgr, "t1", NULL, NULL, &a, &e);
	if (rc)
		fprintf(stderr, "verify: %s\n", e.msg);
	assert_int_equal(rc, HS_OK);
	assert_int_equal(hs_ckpt_verify(d->full, "t1", NULL, NULL, &b, &e), HS_OK);
	assert_int_equal(a.consistent, b.consistent);
	const hs_ckpt_strlist *la[] = { &a.added, &a.modified, &a.deleted };
	const hs_ckpt_strlist *lb[] = { &b.added, &b.modified, &b.deleted };
	for (int k = 0; k < 3; k++) {
		if (la[k]->count != lb[k]->count) {
			fprintf(stderr, "round %u: verify list %d: tracked %zu vs full %zu\n", d->round, k,
				la[k]->count, lb[k]->count);
			for (size_t i = 0; i < lb[k]->count; i++)
				fprintf(stderr, "  full: %s\n", lb[k]->items[i]);
			for (size_t i = 0; i < la[k]->count; i++)
				fprintf(stderr, "  tracked: %s\n", la[k]->items[i]);
		}
		assert_int_equal(la[k]->count, lb[k]->count);
		for (size_t i = 0; i < la[k]->count; i++)
			assert_string_equal(la[k]->items[i], lb[k]->items[i]);
	}
	hs_ckpt_verify_result_dispose(&a);
	hs_ckpt_verify_result_dispose(&b);
}

/* Checkpoint with both managers; the trees must be equal. */
static void both(dx *d)
{
	hs_error e = { 0 };
	hs_ckpt_info a, b;
	bool ua, ub;
	int rc = hs_ckpt_create(d->f->mgr, "t1", NULL, NULL, d->round, "tracked", NULL, &a, &ua, NULL,
				&e);
	if (rc)
		fprintf(stderr, "tracked create: %s\n", e.msg);
	assert_int_equal(rc, HS_OK);
	rc = hs_ckpt_create(d->full, "t1", NULL, NULL, d->round, "full", NULL, &b, &ub, NULL, &e);
	if (rc)
		fprintf(stderr, "full create: %s\n", e.msg);
	assert_int_equal(rc, HS_OK);
	char ga[PATH_MAX], gb[PATH_MAX];
	snprintf(ga, sizeof(ga), "%s/t1.git", d->f->data);
	snprintf(gb, sizeof(gb), "%s/t1.git", d->full_data);
	git_oid ta, tb;
	tree_of(ga, a.commit, &ta);
	tree_of(gb, b.commit, &tb);
	if (!git_oid_equal(&ta, &tb)) {
		char ha[41], hb[41];
		git_oid_tostr(ha, sizeof(ha), &ta);
		git_oid_tostr(hb, sizeof(hb), &tb);
		fprintf(stderr, "round %u (seed from HS_CKPT_DIFF_SEED): tracked tree %s != full tree %s\n"
			"  inspect: git --git-dir %s ls-tree -r %s; git --git-dir %s ls-tree -r %s\n",
			d->round, ha, hb, ga, ha, gb, hb);
	}
	assert_true(git_oid_equal(&ta, &tb));
	assert_int_equal(ua, ub);
	expect_files_changed(ga, &a);
	if (d->nprev < 512) {
		d->prev_ids[d->nprev] = strdup(a.checkpoint_id);
		d->prev_full[d->nprev] = strdup(b.checkpoint_id);
		d->nprev++;
	}
	hs_ckpt_info_dispose(&a);
	hs_ckpt_info_dispose(&b);
}

static void restore_both(dx *d)
{
	unsigned k = pick(d, d->nprev);
	hs_error e = { 0 };
	hs_ckpt_info a, b;
	uint32_t w, r;
	int rc = hs_ckpt_restore(d->f->mgr, "t1", d->prev_ids[k], NULL, &a, &w, &r, &e);
	if (rc)
		fprintf(stderr, "tracked restore: %s\n", e.msg);
	assert_int_equal(rc, HS_OK);
	/* The workspace is the checkpoint's tree now, except files that were
	 * ignored before and no longer are (a .gitignore went back): ignored
	 * files survive a restore, as in git. The full manager's restore of
	 * the same tree removes those (the tracker sees it do so). */
	rc = hs_ckpt_restore(d->full, "t1", d->prev_full[k], NULL, &b, &w, &r, &e);
	if (rc)
		fprintf(stderr, "full restore: %s\n", e.msg);
	assert_int_equal(rc, HS_OK);
	hs_ckpt_info_dispose(&a);
	hs_ckpt_info_dispose(&b);
}

static int open_tracked(dx *d)
{
	d->f->cfg.metrics = d->metrics;
	d->f->cfg.watch.off = false;
	d->f->cfg.scan_threads = 2;
	int rc = reopen_mgr(d->f);
	d->f->cfg.metrics = NULL;
	return rc;
}

static int dx_setup(void **state)
{
	fx *f = NULL;
	if (setup((void **)&f) != 0)
		return -1;
	dx *d = calloc(1, sizeof(*d));
	d->f = f;
	hs_error e = { 0 };
	/* The fixture's manager goes: ours registers on a metrics registry. */
	hs_ckpt_mgr_free(f->mgr);
	f->mgr = NULL;
	if (hs_metrics_new(&d->metrics, &e) != HS_OK || open_tracked(d) != 0)
		return -1;
	snprintf(d->full_data, sizeof(d->full_data), "%s/data/full", f->root);
	snprintf(d->outside, sizeof(d->outside), "%s/outside", f->root);
	mkdirs(d->outside);
	hs_ckpt_config c = { 0 };
	c.repos_dir = d->full_data;
	c.workspace_root = f->wsroot;
	c.watch.off = true;
	c.scan_threads = 1;
	if (hs_ckpt_mgr_new(&d->full, &c, &e) != HS_OK) {
		fprintf(stderr, "full mgr: %s\n", e.msg);
		return -1;
	}
	const char *seed = getenv("HS_CKPT_DIFF_SEED");
	d->rng = seed && seed[0] ? strtoull(seed, NULL, 10) : 1;
	d->rng = d->rng * 0x9E3779B97F4A7C15ull + 1;
	*state = d;
	return 0;
}

static int dx_teardown(void **state)
{
	dx *d = *state;
	for (unsigned i = 0; i < d->nprev; i++) {
		free(d->prev_ids[i]);
		free(d->prev_full[i]);
	}
	hs_ckpt_mgr_free(d->full);
	void *fs = d->f;
	teardown(&fs);
	hs_metrics_free(d->metrics);
	free(d);
	return 0;
}

static void test_checkpoint_diff__tracked_equals_full(void **state)
{
	dx *d = *state;
	const char *r = getenv("HS_CKPT_DIFF_ROUNDS");
	unsigned rounds = r && r[0] ? (unsigned)strtoul(r, NULL, 10) : 60;
	const char *s = getenv("HS_CKPT_DIFF_SEED");
	fprintf(stderr, "differential: seed %s, %u rounds\n", s && s[0] ? s : "1", rounds);
	both(d); /* the first: a full walk for both (reason new) */
	assert_int_equal(scans(d, "create", "full", "new"), 1);
	unsigned overflow_round = rounds / 3, restart_round = 2 * rounds / 3;
	for (d->round = 1; d->round <= rounds; d->round++) {
		unsigned n = 1 + pick(d, 12);
		for (unsigned i = 0; i < n; i++)
			mutate(d);
		if (d->round == overflow_round) {
			/* A mass change while nobody reads the queue: it overflows
			 * (16,384 events by default), the next create walks all. */
			double before = scans(d, "create", "full", "overflow");
			char p[PATH_MAX];
			snprintf(p, sizeof(p), "%s/mass", d->f->ws);
			mkdirs(p);
			both(d); /* mass/ is watched from here on */
			hs_ckpt__watcher_pause(d->f->mgr->watcher, true);
			for (unsigned i = 0; i < 7000; i++) {
				snprintf(p, sizeof(p), "%s/mass/m%u", d->f->ws, i);
				write_file(p, "x", 1, false); /* create, modify, close: 3 events */
			}
			hs_ckpt__watcher_pause(d->f->mgr->watcher, false);
			both(d);
			assert_int_equal(scans(d, "create", "full", "overflow"), before + 1);
			char m[PATH_MAX];
			snprintf(m, sizeof(m), "%s/mass", d->f->ws);
			rmtree(m);
			continue;
		}
		if (d->round == restart_round) {
			/* harnessd down: changes nobody sees, then a new process. */
			hs_ckpt_mgr_free(d->f->mgr);
			d->f->mgr = NULL;
			for (unsigned i = 0; i < 10; i++)
				mutate(d);
			assert_int_equal(open_tracked(d), 0);
			double before = scans(d, "create", "full", "new");
			both(d);
			assert_int_equal(scans(d, "create", "full", "new"), before + 1);
			continue;
		}
		if (pick(d, 4) == 0)
			verify_same(d);
		double tracked = scans(d, "create", "tracked", "none");
		both(d);
		/* Nothing here makes tracking untrustworthy: it was used. */
		assert_int_equal(scans(d, "create", "tracked", "none"), tracked + 1);
		if (pick(d, 6) == 0 && d->nprev > 1) {
			verify_same(d);
			restore_both(d);
			verify_same(d);
		}
	}
	verify_same(d);
	/* One pack per tracked create, small packs merged: still a valid repo. */
	char cmd[PATH_MAX * 2];
	snprintf(cmd, sizeof(cmd), "command -v git >/dev/null || exit 0; "
		 "git --git-dir '%s/t1.git' fsck --no-dangling >&2", d->f->data);
	assert_int_equal(system(cmd), 0);
	fprintf(stderr, "differential: tracked creates %.0f, verifies %.0f, restores %.0f\n",
		scans(d, "create", "tracked", "none"), scans(d, "verify", "tracked", "none"),
		scans(d, "restore", "tracked", "none"));
}

/* The watcher's bound: beyond max_workspaces the least recently used
 * tracker goes, and that workspace's next create says "evicted". */
static void test_checkpoint_diff__lru_bound_and_reasons(void **state)
{
	dx *d = *state;
	hs_ckpt_mgr_free(d->f->mgr);
	d->f->mgr = NULL;
	d->f->cfg.watch.max_workspaces = 2;
	assert_int_equal(open_tracked(d), 0);
	hs_error e = { 0 };
	const char *tasks[] = { "w1", "w2", "w3" };
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 3; i++) {
			char ws[PATH_MAX];
			snprintf(ws, sizeof(ws), "%s/%s/f", d->f->wsroot, tasks[i]);
			put_in(d->f->wsroot, ws + strlen(d->f->wsroot) + 1, round ? "b" : "a", 0644);
			hs_ckpt_info info;
			bool unchanged;
			assert_int_equal(hs_ckpt_create(d->f->mgr, tasks[i], NULL, NULL, round, "", NULL,
							&info, &unchanged, NULL, &e),
					 HS_OK);
			hs_ckpt_info_dispose(&info);
		}
	/* Round 2: each task's tracker had been evicted by the other two. */
	assert_int_equal(scans(d, "create", "full", "evicted"), 3);
	assert_int_equal(hs_ckpt__watcher_count(d->f->mgr->watcher), 2);
	char *text = hs_metrics_render(d->metrics, NULL);
	assert_non_null(strstr(text, "harness_checkpoint_watched_workspaces 2"));
	free(text);
	d->f->cfg.watch.max_workspaces = 0;
}

/* A watch limit per workspace: more directories than allowed means no
 * tracking for it (reason watch_limit), and the result stays right. */
static void test_checkpoint_diff__watch_limit_falls_back(void **state)
{
	dx *d = *state;
	hs_ckpt_mgr_free(d->f->mgr);
	d->f->mgr = NULL;
	d->f->cfg.watch.max_dirs = 3;
	assert_int_equal(open_tracked(d), 0);
	for (int i = 0; i < 6; i++) {
		char rel[64];
		snprintf(rel, sizeof(rel), "d%d/f", i);
		put(d->f, rel, "x", 0644);
	}
	d->round = 1;
	both(d);
	put(d->f, "d1/f", "changed", 0644);
	d->round = 2;
	both(d);
	assert_true(scans(d, "create", "full", "watch_limit") >= 1);
	assert_int_equal(scans(d, "create", "tracked", "none"), 0);
	d->f->cfg.watch.max_dirs = 0;
}

/* While tracked, creates leave the index file to the saver thread: it is
 * written once the task is idle, and holds what the create recorded. */
static void test_checkpoint_diff__saver_writes_idle_index(void **state)
{
	dx *d = *state;
	put(d->f, "a/f", "one", 0644);
	d->round = 1;
	both(d);
	sleep(1); /* past the racy second: the next create's stat data is kept */
	d->round = 2;
	both(d);
	char idx[PATH_MAX];
	snprintf(idx, sizeof(idx), "%s/t1.git/index", d->f->data);
	put(d->f, "a/f", "two, longer", 0644);
	put(d->f, "b/new", "new", 0644);
	sleep(1);
	d->round = 3;
	both(d);
	assert_int_equal(scans(d, "create", "tracked", "none"), 2);
	/* The file on disk catches up within a couple of the saver's rounds
	 * (the creates themselves do not write it while tracked). */
	bool saved = false;
	for (int i = 0; i < 300 && !saved; i++) {
		git_index *ix = NULL;
		if (git_index_open(&ix, idx) == 0) {
			const git_index_entry *e = git_index_get_bypath(ix, "a/f", 0);
			saved = git_index_get_bypath(ix, "b/new", 0) != NULL && e != NULL &&
				e->file_size == strlen("two, longer");
		}
		git_index_free(ix);
		if (!saved)
			usleep(50 * 1000);
	}
	assert_true(saved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_checkpoint_diff__tracked_equals_full, dx_setup,
						dx_teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint_diff__lru_bound_and_reasons, dx_setup,
						dx_teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint_diff__watch_limit_falls_back, dx_setup,
						dx_teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint_diff__saver_writes_idle_index, dx_setup,
						dx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
