/* Unit tests of the checkpoint module, part four: quotas, prune giving
 * space back, pushes outside the task lock and bounded in time, request_id
 * idempotency and the on_create notification (issue 12). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <git2.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_internal.h"
#include "log.h"
#include "fixture.h"

static void put_random(fx *f, const char *rel, size_t n)
{
	char *buf = malloc(n + 1);
	FILE *r = fopen("/dev/urandom", "rb");
	assert_non_null(r);
	assert_int_equal(fread(buf, 1, n, r), n);
	fclose(r);
	/* No NUL inside: put() writes a C string. */
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = 'z';
	buf[n] = '\0';
	put(f, rel, buf, 0644);
	free(buf);
}

static uint64_t repo_size(fx *f, const char *task)
{
	char p[PATH_MAX];
	uint64_t b = 0;
	snprintf(p, sizeof(p), "%s/%s.git", f->data, task);
	assert_int_equal(hs_ckpt__repo_bytes(p, &b), 0);
	return b;
}

static int create_as(fx *f, const hs_principal *who, int64_t step, const char *ext,
		     hs_ckpt_info *out, hs_error *err)
{
	bool unch;
	return hs_ckpt_create(f->mgr, "t1", NULL, who, step, "q", ext, out, &unch, NULL, err);
}

static void test_checkpoint__quotas(void **state)
{
	fx *f = *state;
	f->cfg.quota.checkpoints_per_task = 3;
	f->cfg.quota.external_state_bytes = 32;
	f->cfg.quota.workspace_files = 5;
	f->cfg.quota.workspace_bytes = 4000;
	assert_int_equal(reopen_mgr(f), 0);
	hs_error err = { 0 };
	hs_ckpt_info c;
	put(f, "a", "1", 0644);
	assert_int_equal(hs_ckpt_access(f->mgr, &ALICE, "t1", true, &err), HS_OK);
	/* external_state */
	const char *big = "{\"state\":\"0123456789012345678901234567890123456789\"}";
	assert_int_equal(create_as(f, &ALICE, 1, big, &c, &err), HS_LIMIT);
	assert_non_null(strstr(err.msg, "external_state quota"));
	assert_int_equal(create_as(f, &ROOT, 1, big, &c, &err), HS_OK); /* admins exempt */
	hs_ckpt_info_dispose(&c);
	/* workspace files and bytes */
	for (int i = 0; i < 6; i++) {
		char rel[32];
		snprintf(rel, sizeof(rel), "many/%d", i);
		put(f, rel, "x", 0644);
	}
	hs_error_clear(&err);
	assert_int_equal(create_as(f, &ALICE, 2, NULL, &c, &err), HS_LIMIT);
	assert_non_null(strstr(err.msg, "workspace quota"));
	put(f, ".gitignore", "many/\n", 0644);
	put_random(f, "big", 5000);
	hs_error_clear(&err);
	assert_int_equal(create_as(f, &ALICE, 2, NULL, &c, &err), HS_LIMIT);
	assert_non_null(strstr(err.msg, "bytes"));
	put(f, ".gitignore", "many/\nbig\n", 0644);
	assert_int_equal(create_as(f, &ALICE, 2, NULL, &c, &err), HS_OK);
	hs_ckpt_info_dispose(&c);
	/* checkpoints per task: 2 so far (admin's and alice's) */
	assert_int_equal(create_as(f, &ALICE, 3, NULL, &c, &err), HS_OK);
	hs_ckpt_info_dispose(&c);
	hs_error_clear(&err);
	assert_int_equal(create_as(f, &ALICE, 4, NULL, &c, &err), HS_LIMIT);
	assert_non_null(strstr(err.msg, "checkpoints per task quota"));
	assert_non_null(strstr(err.msg, "PruneCheckpoints"));
	assert_int_equal(create_as(f, &ROOT, 4, NULL, &c, &err), HS_OK);
	hs_ckpt_info_dispose(&c);
	uint32_t kept;
	hs_ckpt_strlist pruned = { 0 };
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 1, false, &kept, &pruned, NULL, &err), HS_OK);
	hs_ckpt_strlist_dispose(&pruned);
	assert_int_equal(create_as(f, &ALICE, 5, NULL, &c, &err), HS_OK);
	hs_ckpt_info_dispose(&c);
}

static void test_checkpoint__repo_quota(void **state)
{
	fx *f = *state;
	f->cfg.quota.repo_bytes = 96 * 1024;
	assert_int_equal(reopen_mgr(f), 0);
	hs_error err = { 0 };
	hs_ckpt_info c;
	put_random(f, "blob1", 64 * 1024);
	assert_int_equal(create_as(f, &ALICE, 1, NULL, &c, &err), HS_OK); /* checked before */
	hs_ckpt_info_dispose(&c);
	put_random(f, "blob2", 64 * 1024);
	assert_int_equal(create_as(f, &ALICE, 2, NULL, &c, &err), HS_OK); /* ~64 KiB used */
	hs_ckpt_info_dispose(&c);
	put_random(f, "blob3", 64 * 1024);
	hs_error_clear(&err);
	assert_int_equal(create_as(f, &ALICE, 3, NULL, &c, &err), HS_LIMIT);
	assert_non_null(strstr(err.msg, "repository quota"));
	/* After a restart (measured afresh) too; admins are exempt. */
	assert_int_equal(reopen_mgr(f), 0);
	hs_error_clear(&err);
	assert_int_equal(create_as(f, &ALICE, 3, NULL, &c, &err), HS_LIMIT);
	assert_int_equal(create_as(f, &ROOT, 3, NULL, &c, &err), HS_OK);
	hs_ckpt_info_dispose(&c);
}

/* PruneCheckpoints frees disk space: pruned checkpoints' objects leave the
 * repository; what is kept still restores; git agrees the repo is sound. */
static void test_checkpoint__prune_frees_space(void **state)
{
	fx *f = *state;
	hs_ckpt_info c[6];
	for (int i = 0; i < 6; i++) {
		char rel[32];
		snprintf(rel, sizeof(rel), "data%d.bin", i);
		put_random(f, rel, 200 * 1024);
		if (i > 0) {
			snprintf(rel, sizeof(rel), "data%d.bin", i - 1);
			rm(f, rel); /* each checkpoint holds one big file */
		}
		mk(f, i + 1, "big", &c[i], false);
	}
	uint64_t before = repo_size(f, "t1");
	assert_true(before > 6 * 200 * 1024);
	hs_error err = { 0 };
	uint32_t kept = 0;
	uint64_t freed = 0;
	hs_ckpt_strlist pruned = { 0 };
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 2, true, &kept, &pruned, &freed, &err), HS_OK);
	assert_int_equal(freed, 0);
	assert_true(repo_size(f, "t1") >= before);
	hs_ckpt_strlist_dispose(&pruned);
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 2, false, &kept, &pruned, &freed, &err), HS_OK);
	assert_int_equal(pruned.count, 4);
	hs_ckpt_strlist_dispose(&pruned);
	uint64_t after = repo_size(f, "t1");
	fprintf(stderr, "[ prune ] repository %llu -> %llu bytes (freed %llu)\n",
		(unsigned long long)before, (unsigned long long)after, (unsigned long long)freed);
	assert_true(after < before - 4 * 200 * 1024);
	assert_true(after < 3 * 200 * 1024 + 64 * 1024);
	assert_true(freed >= 4 * 200 * 1024);
	/* The kept ones restore, exactly. */
	restore(f, c[4].checkpoint_id, NULL, NULL);
	expect_consistent(f, c[4].checkpoint_id, true);
	assert_true(exists_in(f->ws, "data4.bin"));
	restore(f, c[5].checkpoint_id, NULL, NULL);
	expect_consistent(f, c[5].checkpoint_id, true);
	/* The stat cache survived the repack (its blobs were kept). */
	put(f, "small", "s", 0644);
	hs_ckpt_info n;
	mk(f, 7, "after prune", &n, false);
	assert_int_equal(n.files_changed, 1);
	hs_ckpt_info_dispose(&n);
	/* A diff whose default parent was pruned says so. */
	hs_ckpt_diff_entry *d = NULL;
	size_t nd = 0;
	hs_error_clear(&err);
	assert_int_equal(hs_ckpt_diff(f->mgr, "t1", NULL, c[4].checkpoint_id, NULL, NULL, &d, &nd,
				      &err), HS_NOT_FOUND);
	assert_non_null(strstr(err.msg, "pruned"));
	if (access("/usr/bin/git", X_OK) == 0) {
		char cmd[PATH_MAX + 64];
		snprintf(cmd, sizeof(cmd), "git --git-dir %s/t1.git fsck --no-dangling >/dev/null 2>&1",
			 f->data);
		assert_int_equal(system(cmd), 0);
	}
	for (int i = 0; i < 6; i++)
		hs_ckpt_info_dispose(&c[i]);
}

/* Repositories of older versions have git parents: a prune still frees the
 * pruned commits (the kept ones are marked shallow). */
static void test_checkpoint__prune_legacy_parents(void **state)
{
	fx *f = *state;
	hs_ckpt_info c1, c2;
	put_random(f, "old.bin", 100 * 1024);
	mk(f, 1, "old", &c1, false);
	rm(f, "old.bin");
	put(f, "new", "n", 0644);
	mk(f, 2, "new", &c2, false);
	/* Rewrite c2 the way older versions made it: with c1 as git parent. */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/t1.git", f->data);
	git_libgit2_init();
	git_repository *repo;
	git_commit *p1, *p2;
	git_oid o1, o2, legacy;
	assert_int_equal(git_repository_open_bare(&repo, path), 0);
	git_oid_fromstr(&o1, c1.commit);
	git_oid_fromstr(&o2, c2.commit);
	assert_int_equal(git_commit_lookup(&p1, repo, &o1), 0);
	assert_int_equal(git_commit_lookup(&p2, repo, &o2), 0);
	git_tree *t2;
	assert_int_equal(git_commit_tree(&t2, p2), 0);
	const git_commit *parents[1] = { p1 };
	assert_int_equal(git_commit_create(&legacy, repo, NULL, git_commit_author(p2),
					   git_commit_committer(p2), "UTF-8", git_commit_message(p2),
					   t2, 1, parents), 0);
	char id[HS_CKPT_ID_MAX], ref[128], old_ref[128];
	hs_ckpt__make_id(id, 2, &legacy);
	snprintf(ref, sizeof(ref), "refs/harness/checkpoints/%s", id);
	snprintf(old_ref, sizeof(old_ref), "refs/harness/checkpoints/%s", c2.checkpoint_id);
	git_reference *r = NULL;
	assert_int_equal(git_reference_create(&r, repo, ref, &legacy, 0, NULL), 0);
	git_reference_free(r);
	assert_int_equal(git_reference_remove(repo, old_ref), 0);
	assert_int_equal(git_reference_create(&r, repo, "refs/harness/latest", &legacy, 1, NULL), 0);
	git_reference_free(r);
	assert_int_equal(git_reference_create(&r, repo, "refs/harness/current", &legacy, 1, NULL), 0);
	git_reference_free(r);
	git_tree_free(t2);
	git_commit_free(p1);
	git_commit_free(p2);
	git_repository_free(repo);
	assert_int_equal(reopen_mgr(f), 0);
	uint64_t before = repo_size(f, "t1");
	hs_error err = { 0 };
	uint32_t kept = 0;
	hs_ckpt_strlist pruned = { 0 };
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 1, false, &kept, &pruned, NULL, &err), HS_OK);
	assert_int_equal(pruned.count, 1);
	hs_ckpt_strlist_dispose(&pruned);
	assert_true(repo_size(f, "t1") < before - 90 * 1024);
	restore(f, id, NULL, NULL);
	expect_file(f, "new", "n", 0644);
	assert_false(exists_in(f->ws, "old.bin"));
	char shallow[PATH_MAX];
	snprintf(shallow, sizeof(shallow), "%s/t1.git/shallow", f->data);
	assert_int_equal(access(shallow, F_OK), 0);
	if (access("/usr/bin/git", X_OK) == 0) {
		char cmd[PATH_MAX + 64];
		snprintf(cmd, sizeof(cmd), "git --git-dir %s/t1.git fsck --no-dangling >/dev/null 2>&1",
			 f->data);
		assert_int_equal(system(cmd), 0);
	}
	git_libgit2_shutdown();
	hs_ckpt_info_dispose(&c1);
	hs_ckpt_info_dispose(&c2);
}

/* ---- a remote that accepts connections and never answers ------------------ */

typedef struct silent_remote {
	int lfd;
	int conns[16];
	int nconns;
	int stop_pipe[2];
	pthread_t thr;
	int port;
} silent_remote;

static void *silent_main(void *arg)
{
	silent_remote *s = arg;
	for (;;) {
		struct pollfd p[2] = { { s->lfd, POLLIN, 0 }, { s->stop_pipe[0], POLLIN, 0 } };
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		int c = accept(s->lfd, NULL, NULL);
		if (c >= 0 && s->nconns < 16)
			s->conns[s->nconns++] = c; /* read nothing, answer nothing */
		else if (c >= 0)
			close(c);
	}
}

static void silent_start(silent_remote *s)
{
	memset(s, 0, sizeof(*s));
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 16), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
	s->port = ntohs(a.sin_port);
	assert_int_equal(pipe(s->stop_pipe), 0);
	pthread_create(&s->thr, NULL, silent_main, s);
}

/* Closing the connections ends the hung pushes (they see EOF). */
static void silent_stop(silent_remote *s)
{
	assert_int_equal(write(s->stop_pipe[1], "x", 1), 1);
	pthread_join(s->thr, NULL);
	for (int i = 0; i < s->nconns; i++)
		close(s->conns[i]);
	close(s->lfd);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
}

/* A hung remote delays a create by the push timeout at most, never holds
 * the task lock, and at most pushes_in_flight pushes hang at once. */
static void test_checkpoint__push_outside_lock_bounded(void **state)
{
	fx *f = *state;
	silent_remote s;
	silent_start(&s);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/r.git", s.port);
	f->cfg.push_timeout_ms = 300;
	f->cfg.pushes_in_flight = 1;
	assert_int_equal(open_mgr(f, url), 0);
	put(f, "a", "1", 0644);
	hs_error err = { 0 };
	hs_ckpt_info c1, c2, got;
	bool unch;
	char *perr = NULL;
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, &ALICE, 1, "x", NULL, &c1, &unch, &perr,
					&err), HS_OK);
	assert_non_null(perr);
	assert_non_null(strstr(perr, "still running"));
	free(perr);
	/* The push still hangs; the task is not locked by it. */
	assert_int_equal(hs_ckpt_get(f->mgr, "t1", c1.checkpoint_id, &got, &err), HS_OK);
	hs_ckpt_info_dispose(&got);
	put(f, "a", "2", 0644);
	assert_int_equal(hs_ckpt_create(f->mgr, "t1", NULL, &ALICE, 2, "y", NULL, &c2, &unch, &perr,
					&err), HS_OK);
	assert_non_null(perr);
	assert_non_null(strstr(perr, "not pushed")); /* the one allowed push still hangs */
	free(perr);
	hs_ckpt_mgr_free(f->mgr); /* may go while a push hangs */
	f->mgr = NULL;
	silent_stop(&s);
	assert_int_equal(open_mgr(f, NULL), 0);
	hs_ckpt_info_dispose(&c1);
	hs_ckpt_info_dispose(&c2);
	/* The hung push sees EOF and ends (before the process exits: LSan). */
	assert_true(hs_ckpt_background_wait(30000));
}

/* ---- request_id and on_create --------------------------------------------------------- */

typedef struct hook_log {
	fx *f;
	int calls;
	char last_id[HS_CKPT_ID_MAX];
	int64_t last_step;
	int latest_rc; /* a module call from inside the hook: no lock is held */
} hook_log;

static void on_create(void *payload, const char *task_id, const char *checkpoint_id, int64_t step)
{
	hook_log *h = payload;
	h->calls++;
	snprintf(h->last_id, sizeof(h->last_id), "%s", checkpoint_id);
	h->last_step = step;
	hs_ckpt_info info;
	hs_error err = { 0 };
	h->latest_rc = hs_ckpt_latest(h->f->mgr, task_id, &info, &err);
	if (h->latest_rc == HS_OK) {
		if (strcmp(info.checkpoint_id, checkpoint_id) != 0)
			h->latest_rc = -100;
		hs_ckpt_info_dispose(&info);
	}
}

static int create_req(fx *f, int64_t step, const char *request_id, hs_ckpt_create_result *out)
{
	hs_ckpt_create_opts o = { &ALICE, NULL, step, "d", "{\"n\":1}", request_id, 0 };
	hs_error err = { 0 };
	int rc = hs_ckpt_create_with(f->mgr, "t1", &o, out, &err);
	if (rc)
		fprintf(stderr, "create: %s\n", err.msg);
	return rc;
}

static size_t count_checkpoints(fx *f)
{
	hs_error err = { 0 };
	hs_ckpt_info *arr;
	size_t n;
	char *tok;
	assert_int_equal(hs_ckpt_list(f->mgr, "t1", 0, NULL, 0, &arr, &n, &tok, &err), HS_OK);
	hs_ckpt_info_array_free(arr, n);
	free(tok);
	return n;
}

static void test_checkpoint__request_id_and_on_create(void **state)
{
	fx *f = *state;
	hook_log h = { .f = f };
	f->cfg.on_create = on_create;
	f->cfg.on_create_payload = &h;
	assert_int_equal(reopen_mgr(f), 0);
	put(f, "a", "1", 0644);
	hs_ckpt_create_result r1, r2, r3, r4;
	assert_int_equal(create_req(f, 1, "req-1", &r1), HS_OK);
	assert_false(r1.replayed);
	assert_int_equal(h.calls, 1);
	assert_string_equal(h.last_id, r1.checkpoint.checkpoint_id);
	assert_int_equal(h.last_step, 1);
	assert_int_equal(h.latest_rc, HS_OK);
	/* The retry: the same checkpoint, nothing recorded, no notification. */
	put(f, "a", "changed meanwhile", 0644);
	assert_int_equal(create_req(f, 7, "req-1", &r2), HS_OK);
	assert_true(r2.replayed);
	assert_string_equal(r2.checkpoint.checkpoint_id, r1.checkpoint.checkpoint_id);
	assert_int_equal(r2.checkpoint.step, 1);
	assert_int_equal(count_checkpoints(f), 1);
	assert_int_equal(h.calls, 1);
	/* Without a request_id every call records, unchanged trees included. */
	assert_int_equal(create_req(f, 2, NULL, &r3), HS_OK);
	assert_int_equal(create_req(f, 3, "", &r4), HS_OK);
	assert_false(r3.unchanged);
	assert_true(r4.unchanged);
	assert_int_equal(r4.checkpoint.files_changed, 0);
	assert_string_equal(r4.checkpoint.external_state_json, "{\"n\":1}");
	assert_int_equal(count_checkpoints(f), 3);
	assert_int_equal(h.calls, 3);
	assert_int_equal(h.last_step, 3);
	/* The key survives a restart (it is in the commit) ... */
	assert_int_equal(reopen_mgr(f), 0);
	hs_ckpt_create_result r5;
	assert_int_equal(create_req(f, 9, "req-1", &r5), HS_OK);
	assert_true(r5.replayed);
	assert_string_equal(r5.checkpoint.checkpoint_id, r1.checkpoint.checkpoint_id);
	hs_ckpt_create_result_dispose(&r5);
	/* ... and lasts as long as its checkpoint. */
	hs_error err = { 0 };
	uint32_t kept;
	hs_ckpt_strlist pruned = { 0 };
	assert_int_equal(hs_ckpt_prune(f->mgr, "t1", 1, false, &kept, &pruned, NULL, &err), HS_OK);
	hs_ckpt_strlist_dispose(&pruned);
	assert_int_equal(create_req(f, 9, "req-1", &r5), HS_OK);
	assert_false(r5.replayed);
	hs_ckpt_create_result_dispose(&r5);
	/* Bad keys are refused, naming the field. */
	hs_ckpt_create_opts o = { &ALICE, NULL, 1, "d", NULL, "has space", 0 };
	assert_int_equal(hs_ckpt_create_with(f->mgr, "t1", &o, &r5, &err), HS_INVALID);
	assert_non_null(strstr(err.msg, "request_id"));
	hs_ckpt_create_result_dispose(&r1);
	hs_ckpt_create_result_dispose(&r2);
	hs_ckpt_create_result_dispose(&r3);
	hs_ckpt_create_result_dispose(&r4);
}

int main(void)
{
	hs_log_min_level = getenv("HS_CKPT_TEST_VERBOSE") ? HS_LOG_INFO : HS_LOG_ERROR;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_checkpoint__quotas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__repo_quota, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__prune_frees_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__prune_legacy_parents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__push_outside_lock_bounded, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint__request_id_and_on_create, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
