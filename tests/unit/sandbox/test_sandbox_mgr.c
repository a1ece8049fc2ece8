/* The manager on bwrap sandboxes: the state machine, ownership, limits and
 * quota, TTL expiry, paging, restart re-adoption. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"
#include "sandbox_internal.h"
#include "log.h"

static const char *sleeper[] = { "/bin/sh", "-c", "exec sleep 1000" };

static int setup(void **state)
{
	sbt_env *env = calloc(1, sizeof(*env));
	sbt_setup(env);
	*state = env;
	return 0;
}

static int teardown(void **state)
{
	sbt_env *env = *state;
	sbt_teardown(env);
	free(env);
	return 0;
}

static int create(sbt_env *env, const hs_sandbox_caller *c, const char *id, hs_error *err)
{
	hs_sandbox_spec spec = { .sandbox_id = id, .entrypoint = sleeper, .entrypoint_len = 3 };
	return hs_sandbox_create(env->mgr, c, &spec, NULL, err);
}

static void expect_conflict(int rc, const hs_error *err, const char *msg)
{
	assert_int_equal(rc, HS_CONFLICT);
	if (strstr(err->msg, msg) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err->msg, msg);
}

static void test_sandbox_mgr__wrong_state_names_it(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_info info;
	sbt_open_mgr(env);
	assert_int_equal(create(env, &sbt_alice, "sb-1", &err), HS_OK);
	expect_conflict(hs_sandbox_pause(env->mgr, &sbt_alice, "sb-1", NULL, &err), &err,
			"sandbox sb-1 is CREATED; PauseSandbox needs RUNNING");
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "sb-1", NULL, &err), HS_OK);
	expect_conflict(hs_sandbox_start(env->mgr, &sbt_alice, "sb-1", NULL, &err), &err,
			"sandbox sb-1 is RUNNING; StartSandbox needs CREATED");
	hs_error_clear(&err);
	expect_conflict(hs_sandbox_resume(env->mgr, &sbt_alice, "sb-1", NULL, &err), &err,
			"is RUNNING; ResumeSandbox needs PAUSED");
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "sb-1", &info, &err), HS_OK);
	assert_int_equal(info.stopped_at_ms, 0); /* live: not stopped */
	hs_sandbox_info_dispose(&info);
	expect_conflict(hs_sandbox_start(env->mgr, &sbt_alice, "sb-1", NULL, &err), &err,
			"sandbox sb-1 is PAUSED; StartSandbox needs CREATED");
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "sb-1", NULL, &err), HS_OK);
	expect_conflict(hs_sandbox_start(env->mgr, &sbt_alice, "sb-1", NULL, &err), &err,
			"is DESTROYED; StartSandbox needs CREATED");
	hs_error_clear(&err);
	expect_conflict(hs_sandbox_destroy(env->mgr, &sbt_alice, "sb-1", NULL, &err), &err,
			"is DESTROYED");
	/* a destroyed sandbox is still visible, as DESTROYED, with when it stopped */
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "sb-1", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_DESTROYED);
	assert_true(info.stopped_at_ms >= info.started_at_ms && info.started_at_ms > 0);
	hs_sandbox_info_dispose(&info);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "nope", &info, &err), HS_NOT_FOUND);
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "../etc", &info, &err), HS_INVALID);
	assert_true(sbt_contains(err.msg, "sandbox_id"));
}

static void test_sandbox_mgr__other_users_sandbox_refused(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_info info, *v;
	size_t n;
	char *tok;
	sbt_open_mgr(env);
	assert_int_equal(create(env, &sbt_alice, "sb-alice", &err), HS_OK);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_bob, "sb-alice", &info, &err), HS_NOT_FOUND);
	assert_true(sbt_contains(err.msg, "not found"));
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_bob, "sb-alice", NULL, &err),
			 HS_NOT_FOUND);
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_bob, "sb-alice", NULL, &err),
			 HS_NOT_FOUND);
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_bob, NULL, &v, &n, &tok, &err), HS_OK);
	assert_int_equal(n, 0);
	hs_sandbox_info_array_free(v, n);
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_admin, NULL, &v, &n, &tok, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].owner, "usr_alice");
	hs_sandbox_info_array_free(v, n);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_admin, "sb-alice", &info, &err), HS_OK);
	hs_sandbox_info_dispose(&info);
	/* a taken id is taken for everyone; no identity is refused */
	assert_int_equal(create(env, &sbt_bob, "sb-alice", &err), HS_EXISTS);
	hs_sandbox_caller anon = { { NULL, false }, 0 };
	assert_int_equal(hs_sandbox_get(env->mgr, &anon, "sb-alice", &info, &err), HS_UNAUTH);
}

static void test_sandbox_mgr__limits_and_quota(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	env->cfg.max_per_user = 2;
	env->cfg.max_vcpu = 4;
	env->cfg.max_mem_mib = 1024;
	sbt_open_mgr(env);
	hs_sandbox_spec spec = { .vcpu_count = 8 };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_LIMIT);
	assert_true(sbt_contains(err.msg, "vcpu_count"));
	spec.vcpu_count = 3;
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_INVALID);
	spec = (hs_sandbox_spec){ .mem_size_mib = 4096 };
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_LIMIT);
	assert_true(sbt_contains(err.msg, "mem_size_mib"));
	spec = (hs_sandbox_spec){ .sandbox_id = "bad_id!" };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_INVALID);
	spec = (hs_sandbox_spec){ .sandbox_id = "x123456789x123456789x123456789x123456789x123456789"
						"x123456789x12345" };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_INVALID);
	spec = (hs_sandbox_spec){ .task_id = "../escape" };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_INVALID);
	spec = (hs_sandbox_spec){ .ttl_seconds = -1 };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_INVALID);
	spec = (hs_sandbox_spec){ .driver = "qemu" };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_INVALID);

	/* generated ids; quota of 2 live sandboxes per user */
	hs_sandbox_info a;
	spec = (hs_sandbox_spec){ 0 };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, &a, &err), HS_OK);
	assert_int_equal(strlen(a.sandbox_id), 19);
	assert_memory_equal(a.sandbox_id, "sb-", 3);
	assert_int_equal(create(env, &sbt_alice, "sb-q2", &err), HS_OK);
	hs_error_clear(&err);
	assert_int_equal(create(env, &sbt_alice, "sb-q3", &err), HS_LIMIT);
	assert_true(sbt_contains(err.msg, "limit is 2"));
	assert_int_equal(create(env, &sbt_bob, "sb-bob", &err), HS_OK);
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, a.sandbox_id, NULL, &err), HS_OK);
	assert_int_equal(create(env, &sbt_alice, "sb-q3", &err), HS_OK);
	hs_sandbox_info_dispose(&a);
}

static void test_sandbox_mgr__ttl_expiry(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_info info;
	sbt_open_mgr(env);
	hs_sandbox_spec spec = { .sandbox_id = "sb-ttl", .entrypoint = sleeper,
				 .entrypoint_len = 3, .ttl_seconds = 1 };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_OK);
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "sb-ttl", &info, &err), HS_OK);
	pid_t pid = (pid_t)info.pid;
	assert_true(info.expires_at_ms >= info.created_at_ms + 1000);
	hs_sandbox_info_dispose(&info);
	assert_int_equal(sbt_wait_state(env, &sbt_alice, "sb-ttl", HS_SANDBOX_DESTROYED, 30000),
			 HS_SANDBOX_DESTROYED);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "sb-ttl", &info, &err), HS_OK);
	assert_string_equal(info.failure_reason, "ttl expired");
	hs_sandbox_info_dispose(&info);
	assert_true(sbt_pid_gone(pid));
}

static void test_sandbox_mgr__list_paging_and_filters(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	char *next_none = NULL;
	sbt_open_mgr(env);
	const char *ids[] = { "p-a", "p-b", "p-c", "p-d", "p-e" };
	/* newest first: p-e (created last) .. p-a; several may share a
	 * millisecond, then the id (descending) decides, in the same order */
	const char *want[] = { "p-e", "p-d", "p-c", "p-b", "p-a" };
	for (int i = 0; i < 5; i++)
		assert_int_equal(create(env, &sbt_alice, ids[i], &err), HS_OK);
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "p-c", NULL, &err), HS_OK);
	hs_sandbox_filter f = { .page_size = 2 };
	char *tok = NULL;
	int seen = 0, pages = 0;
	do {
		hs_sandbox_info *v;
		size_t n;
		char *next = NULL;
		f.page_token = tok;
		assert_int_equal(hs_sandbox_list(env->mgr, &sbt_alice, &f, &v, &n, &next, &err),
				 HS_OK);
		for (size_t i = 0; i < n; i++) {
			assert_true(seen < 5);
			assert_string_equal(v[i].sandbox_id, want[seen++]);
		}
		hs_sandbox_info_array_free(v, n);
		if (pages == 0) { /* a newer sandbox does not shift the later pages */
			sbt_sleep_ms(2);
			assert_int_equal(create(env, &sbt_alice, "p-new", &err), HS_OK);
		}
		free(tok);
		tok = next;
		pages++;
	} while (tok != NULL);
	assert_int_equal(seen, 5);
	assert_true(pages >= 3);
	/* the first page now starts with it */
	{
		hs_sandbox_info *v;
		size_t n;
		hs_sandbox_filter first = { .page_size = 1 };
		assert_int_equal(hs_sandbox_list(env->mgr, &sbt_alice, &first, &v, &n, &tok, &err),
				 HS_OK);
		assert_int_equal(n, 1);
		assert_string_equal(v[0].sandbox_id, "p-new");
		assert_non_null(tok);
		hs_sandbox_info_array_free(v, n);
		/* a token is bound to its filters */
		hs_sandbox_filter other = { .page_size = 1, .state = HS_SANDBOX_CREATED,
					    .page_token = tok };
		hs_error_clear(&err);
		assert_int_equal(hs_sandbox_list(env->mgr, &sbt_alice, &other, &v, &n, &next_none,
						 &err),
				 HS_INVALID);
		assert_true(sbt_contains(err.msg, "page_token"));
		other = (hs_sandbox_filter){ .page_size = 1, .task_id = "t", .page_token = tok };
		assert_int_equal(hs_sandbox_list(env->mgr, &sbt_alice, &other, &v, &n, &next_none,
						 &err),
				 HS_INVALID);
		/* an admin listing every owner has other filters than alice */
		first.page_token = tok;
		assert_int_equal(hs_sandbox_list(env->mgr, &sbt_admin, &first, &v, &n, &next_none,
						 &err),
				 HS_INVALID);
		/* tampered or truncated tokens are refused */
		char *bad = strdup(tok);
		static const size_t cut[] = { 25, 18 }; /* half a byte; "<hash>.<ms" */
		for (size_t c = 0; c < 2; c++) {
			bad[cut[c]] = '\0';
			first.page_token = bad;
			assert_int_equal(hs_sandbox_list(env->mgr, &sbt_alice, &first, &v, &n,
							 &next_none, &err),
					 HS_INVALID);
		}
		bad[0] = 'g';
		assert_int_equal(hs_sandbox_list(env->mgr, &sbt_alice, &first, &v, &n, &next_none,
						 &err),
				 HS_INVALID);
		free(bad);
		free(tok);
		tok = NULL;
	}
	hs_sandbox_filter running = { .state = HS_SANDBOX_RUNNING };
	hs_sandbox_info *v;
	size_t n;
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_alice, &running, &v, &n, &tok, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].sandbox_id, "p-c");
	hs_sandbox_info_array_free(v, n);
	free(tok);
	hs_sandbox_filter bad = { .page_token = "not a token!" };
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_alice, &bad, &v, &n, &tok, &err),
			 HS_INVALID);
}

static void test_sandbox_mgr__restart_readoption(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_info info;
	sbt_open_mgr(env);
	assert_int_equal(create(env, &sbt_alice, "sb-live", &err), HS_OK);
	assert_int_equal(create(env, &sbt_alice, "sb-dead", &err), HS_OK);
	assert_int_equal(create(env, &sbt_alice, "sb-idle", &err), HS_OK);
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "sb-live", &info, &err), HS_OK);
	pid_t live = (pid_t)info.pid;
	hs_sandbox_info_dispose(&info);
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "sb-dead", &info, &err), HS_OK);
	pid_t dead = (pid_t)info.pid;
	hs_sandbox_info_dispose(&info);
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "sb-live", NULL, &err), HS_OK);

	hs_sandbox_mgr_free(env->mgr);
	env->mgr = NULL;
	kill(-dead, SIGKILL);
	waitpid(dead, NULL, 0);

	sbt_open_mgr(env);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "sb-live", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_PAUSED);
	assert_int_equal(info.pid, live);
	hs_sandbox_info_dispose(&info);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "sb-dead", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_FAILED);
	assert_string_equal(info.failure_reason, "lost after restart");
	assert_int_equal(info.pid, 0);
	hs_sandbox_info_dispose(&info);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "sb-idle", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_CREATED);
	hs_sandbox_info_dispose(&info);
	/* the adopted one is controlled again: resume, then destroy kills it */
	assert_int_equal(hs_sandbox_resume(env->mgr, &sbt_alice, "sb-live", NULL, &err), HS_OK);
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "sb-live", NULL, &err), HS_OK);
	assert_true(sbt_pid_gone(live));
	/* the quota still counts the FAILED and CREATED ones */
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "sb-dead", NULL, &err), HS_OK);
}

/* A sandbox of a lost node started again on a survivor is checked against
 * the survivor's limits (the spec was checked against the lost node's). */
static void test_sandbox_mgr__relaunch_checks_this_nodes_limits(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_info info;
	env->cfg.node_id = "node-a";
	sbt_open_mgr(env);
	hs_sandbox_spec spec = { .sandbox_id = "sb-big", .entrypoint = sleeper,
				 .entrypoint_len = 3, .mem_size_mib = 512 };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_OK);
	hs_sandbox_mgr_free(env->mgr);
	env->mgr = NULL;
	/* node-a's row expired a second ago; node-b allows 256 MiB */
	hs_store_node_row a = { .node_id = "node-a", .address = "a:1",
				.expires_at_ms = hs_clock_wall_ms() - 1000 };
	assert_int_equal(hs_store_node_put(env->store, &a, &err), HS_OK);
	env->cfg.node_id = "node-b";
	env->cfg.max_mem_mib = 256;
	env->cfg.node_lost_ms = 3600 * 1000; /* the reaper's sweep waits an hour */
	sbt_open_mgr(env);
	/* expired, but not yet for node_lost_ms: recovery does not take it
	 * before the reaper would */
	bool done = true;
	int rc = hs_sandbox_recover_lost(env->mgr, &sbt_alice, "sb-big", &done, &info, &err);
	assert_int_equal(rc, HS_OK);
	assert_false(done);
	hs_store_sandbox_row *row = calloc(1, sizeof(*row));
	assert_non_null(row);
	assert_int_equal(hs_store_sandbox_get(env->store, "sb-big", row, &err), HS_OK);
	assert_string_equal(row->node_id, "node-a");
	assert_int_equal(row->state, HS_SANDBOX_CREATED);
	free(row);
	/* once node-a is lost for that long, recovery takes it */
	a.expires_at_ms = hs_clock_wall_ms() - 3601 * 1000;
	assert_int_equal(hs_store_node_put(env->store, &a, &err), HS_OK);
	rc = hs_sandbox_recover_lost(env->mgr, &sbt_alice, "sb-big", &done, &info, &err);
	assert_int_equal(rc, HS_LIMIT);
	assert_false(done);
	if (strstr(err.msg, "mem_size_mib 512 exceeds this node's limit of 256") == NULL)
		fail_msg("message: %s", err.msg);
	/* taken here (FAILED, the lost node named), not started */
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "sb-big", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_FAILED);
	assert_int_equal(info.pid, 0);
	assert_true(sbt_contains(info.failure_reason, "node node-a lost"));
	hs_sandbox_info_dispose(&info);
	/* node-b restarts with a higher limit: the row still says "taken, not
	 * run here" and carries node-b's runtime paths, so recovery starts it */
	row = calloc(1, sizeof(*row));
	assert_non_null(row);
	assert_int_equal(hs_store_sandbox_get(env->store, "sb-big", row, &err), HS_OK);
	char want_dir[400];
	snprintf(want_dir, sizeof(want_dir), "%s/sb-big", env->runtime);
	assert_string_equal(row->runtime_dir, want_dir);
	free(row);
	hs_sandbox_mgr_free(env->mgr);
	env->mgr = NULL;
	env->cfg.max_mem_mib = 8192;
	sbt_open_mgr(env);
	done = false;
	rc = hs_sandbox_recover_lost(env->mgr, &sbt_alice, "sb-big", &done, &info, &err);
	if (rc != HS_OK)
		fail_msg("recover after restart: %s", err.msg);
	assert_true(done);
	assert_int_equal(info.state, HS_SANDBOX_RUNNING);
	hs_sandbox_info_dispose(&info);
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "sb-big", NULL, &err), HS_OK);
}

/* Fields one driver does not understand are refused by name; the info
 * carries the spec back; workspace overrides; admins filter by owner. */
static void test_sandbox_mgr__spec_fields_and_driver_checks(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_info info;
	static const char *ep[] = { "/bin/true" };
	static const hs_label env_kv[] = { { "A", "1" } };
	sbt_open_mgr(env);
	struct {
		hs_sandbox_spec spec;
		const char *field;
	} bad[] = {
		{ { .sandbox_id = "b1", .kernel_image_path = "/k" }, "kernel_image_path" },
		{ { .sandbox_id = "b2", .rootfs_path = "/r" }, "rootfs_path" },
		{ { .sandbox_id = "b3", .boot_args = "quiet" }, "boot_args" },
		{ { .sandbox_id = "b4", .tap_dev = "tap0" }, "network_interfaces" },
		{ { .sandbox_id = "b5", .workspace = "../up" }, "workspace" },
		{ { .sandbox_id = "b6", .workspace = "/abs" }, "workspace" },
		{ { .sandbox_id = "b7", .workspace = "a/./b" }, "workspace" },
		{ { .sandbox_id = "f1", .driver = "firecracker", .entrypoint = ep,
		    .entrypoint_len = 1 }, "entrypoint" },
		{ { .sandbox_id = "f2", .driver = "firecracker", .env = env_kv, .env_len = 1 },
		  "env" },
		{ { .sandbox_id = "f3", .driver = "firecracker", .network = true },
		  "network_enabled" },
		{ { .sandbox_id = "f4", .driver = "firecracker", .workspace = "w" }, "workspace" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hs_error_clear(&err);
		assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &bad[i].spec, NULL, &err),
				 HS_INVALID);
		if (!sbt_contains(err.msg, bad[i].field))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, bad[i].field);
	}

	hs_sandbox_spec spec = { .sandbox_id = "sp-1", .entrypoint = sleeper, .entrypoint_len = 3,
				 .task_id = "t1", .workspace = "shared/ws", .network = true };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, &info, &err), HS_OK);
	assert_int_equal(info.entrypoint_len, 3);
	assert_string_equal(info.entrypoint[2], "exec sleep 1000");
	assert_null(info.entrypoint[3]);
	assert_true(info.network_enabled);
	assert_string_equal(info.kernel_image_path, ""); /* no firecracker defaults on bwrap */
	assert_string_equal(info.rootfs_path, "");
	assert_string_equal(info.api_socket_path, "");
	char want[600];
	snprintf(want, sizeof(want), "%s/shared/ws", env->workspaces);
	assert_string_equal(info.workspace, want);
	hs_sandbox_info_dispose(&info);

	hs_sandbox_spec fc = { .sandbox_id = "vm-1", .driver = "firecracker" };
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_bob, &fc, &info, &err), HS_OK);
	assert_string_equal(info.kernel_image_path, env->kernel);
	assert_string_equal(info.rootfs_path, env->rootfs);
	assert_null(info.entrypoint);
	assert_false(info.network_enabled);
	hs_sandbox_info_dispose(&info);

	hs_sandbox_filter f = { .owner = "usr_bob" };
	hs_sandbox_info *list = NULL;
	size_t n = 0;
	char *next = NULL;
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_admin, &f, &list, &n, &next, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].sandbox_id, "vm-1");
	hs_sandbox_info_array_free(list, n);
	/* A non-admin naming another owner is refused; naming itself is fine. */
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_alice, &f, &list, &n, &next, &err),
			 HS_DENIED);
	assert_true(sbt_contains(err.msg, "owner"));
	f.owner = "usr_alice";
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_alice, &f, &list, &n, &next, &err), HS_OK);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].sandbox_id, "sp-1");
	hs_sandbox_info_array_free(list, n);

	/* A driver that did not probe OK at open is refused at create. */
	hs_sandbox_mgr_free(env->mgr);
	env->cfg.firecracker_bin = "/nonexistent/firecracker";
	sbt_open_mgr(env);
	hs_sandbox_spec fc2 = { .sandbox_id = "vm-2", .driver = "firecracker" };
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_bob, &fc2, NULL, &err), HS_UNAVAILABLE);
	assert_true(sbt_contains(err.msg, "driver firecracker cannot run here"));
	assert_true(sbt_contains(err.msg, "/nonexistent/firecracker"));
}

/* Label and state filters are applied in the query: with a selector that
 * matches every other sandbox, and destroyed ones in between, every page
 * but the last is full (REVIEW-NOTES: pages came back short or empty with a
 * next-page token). Bad selectors and environment names are refused by
 * the module's rules. */
static void test_sandbox_mgr__filters_keep_pages_full(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	sbt_open_mgr(env);
	for (int i = 0; i < 12; i++) {
		char id[16];
		snprintf(id, sizeof(id), "lab-%02d", i);
		hs_label lab = { "team", i % 2 ? "a" : "b" };
		hs_sandbox_spec spec = { .sandbox_id = id, .entrypoint = sleeper, .entrypoint_len = 3,
					 .labels = &lab, .labels_len = 1 };
		assert_int_equal(hs_sandbox_create(env->mgr, &sbt_admin, &spec, NULL, &err), HS_OK);
		if (i % 4 == 1) /* some "a" ones are destroyed: not listed by default */
			assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_admin, id, NULL, &err),
					 HS_OK);
	}
	hs_label sel = { "team", "a" };
	hs_sandbox_filter f = { .page_size = 2, .label_selector = &sel, .label_selector_len = 1 };
	char *tok = NULL;
	size_t total = 0;
	do {
		hs_sandbox_info *v;
		size_t n;
		char *next = NULL;
		f.page_token = tok;
		assert_int_equal(hs_sandbox_list(env->mgr, &sbt_admin, &f, &v, &n, &next, &err),
				 HS_OK);
		if (next != NULL)
			assert_int_equal(n, 2);
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(v[i].labels_len, 1);
			assert_string_equal(v[i].labels[0].value, "a");
			assert_int_not_equal(v[i].state, HS_SANDBOX_DESTROYED);
		}
		total += n;
		hs_sandbox_info_array_free(v, n);
		free(tok);
		tok = next;
	} while (tok != NULL);
	assert_int_equal(total, 3); /* lab-03, -07, -11 */
	/* a token is bound to its selector too */
	f = (hs_sandbox_filter){ .page_size = 1, .label_selector = &sel, .label_selector_len = 1 };
	hs_sandbox_info *v;
	size_t n;
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_admin, &f, &v, &n, &tok, &err), HS_OK);
	hs_sandbox_info_array_free(v, n);
	hs_label other = { "team", "b" };
	f.label_selector = &other;
	f.page_token = tok;
	char *none = NULL;
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_admin, &f, &v, &n, &none, &err),
			 HS_INVALID);
	free(tok);
	hs_label bad = { "bad key", "x" };
	f = (hs_sandbox_filter){ .label_selector = &bad, .label_selector_len = 1 };
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_admin, &f, &v, &n, &none, &err),
			 HS_INVALID);
	assert_true(sbt_contains(err.msg, "label_selector"));
	f = (hs_sandbox_filter){ .page_size = -1 };
	assert_int_equal(hs_sandbox_list(env->mgr, &sbt_admin, &f, &v, &n, &none, &err),
			 HS_INVALID);
	/* the environment rule */
	static const struct {
		const char *name;
		bool ok;
	} names[] = { { "GREETING", true },  { "_x1", true },	      { "PATH", true },
		      { "LD_PRELOAD", false }, { "LD_AUDIT", false },     { "BASH_ENV", false },
		      { "ENV", false },	       { "GLIBC_TUNABLES", false }, { "MALLOC_ARENA_MAX", false },
		      { "HARNESS_SANDBOX_ID", false }, { "1A", false }, { "A-B", false },
		      { "", false } };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		hs_label e = { names[i].name, "v" };
		hs_error_clear(&err);
		int rc = hs_sandbox__check_env(&e, 1, &err);
		if (names[i].ok != (rc == HS_OK))
			fail_msg("env %s: %d %s", names[i].name, rc, err.msg);
		if (!names[i].ok && names[i].name[0] != '\0' && !sbt_contains(err.msg, names[i].name))
			fail_msg("env %s: message \"%s\" does not name it", names[i].name, err.msg);
	}
}

/* The bwrap view is an allowlist: no host root, nothing of the data dir,
 * the workspace by descriptor or through the portal, / read-only, the
 * environment cleared and set inside only, userns disabled, seccomp on. */
static void test_sandbox_mgr__bwrap_view_is_an_allowlist(void **state)
{
	sbt_env *env = *state;
	hs_sandbox__rec rec;
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.id, sizeof(rec.id), "sb-view");
	snprintf(rec.workspace, sizeof(rec.workspace), "%s/task-v", env->workspaces);
	snprintf(rec.task_id, sizeof(rec.task_id), "task-v");
	rec.mem_size_mib = 256;
	char *envv[] = { "GREETING=hi there", NULL };
	rec.env = envv;
	hs_sandbox_config cfg = env->cfg;
	snprintf(cfg.host.init_bin, sizeof(cfg.host.init_bin), "/opt/h/harness-sandbox-init");
	for (int portal = 0; portal < 2; portal++) {
		cfg.host.portal = portal;
		char **o = NULL;
		assert_int_equal(hs_sandbox__bwrap_options(&cfg, &rec, &o, NULL), HS_OK);
		bool clearenv = false, remount = false, userns_off = false, seccomp = false,
		     netns = false, ws = false, greet = false;
		for (size_t i = 0; o[i] != NULL; i++) {
			/* never the host root, never the data dir */
			if (strcmp(o[i], "--ro-bind") == 0 || strcmp(o[i], "--bind") == 0 ||
			    strcmp(o[i], "--ro-bind-try") == 0) {
				assert_string_not_equal(o[i + 1], "/");
				assert_false(sbt_contains(o[i + 1], env->data));
				if (strcmp(o[i + 2], rec.workspace) == 0)
					ws = portal && strcmp(o[i + 1], "/tmp/hs/ws") == 0;
			}
			if (strcmp(o[i], "--bind-fd") == 0 && strcmp(o[i + 2], rec.workspace) == 0)
				ws = !portal && strcmp(o[i + 1], "6") == 0;
			clearenv |= strcmp(o[i], "--clearenv") == 0;
			/* the environment comes after --clearenv, inside only */
			if (strcmp(o[i], "--setenv") == 0) {
				assert_true(clearenv);
				greet |= strcmp(o[i + 1], "GREETING") == 0 &&
					 strcmp(o[i + 2], "hi there") == 0;
			}
			remount |= strcmp(o[i], "--remount-ro") == 0 && strcmp(o[i + 1], "/") == 0;
			userns_off |= strcmp(o[i], "--disable-userns") == 0;
			seccomp |= strcmp(o[i], "--seccomp") == 0;
			netns |= strcmp(o[i], "--unshare-net") == 0;
		}
		assert_true(clearenv && remount && userns_off && seccomp && netns && ws && greet);
		hs_sandbox__argv_free(o);
	}
	/* the command: bwrap --args 3 -- init 5 9 <entrypoint> */
	char **a = NULL;
	assert_int_equal(hs_sandbox__bwrap_argv(&cfg, &rec, &a, NULL), HS_OK);
	assert_string_equal(a[1], "--args");
	assert_string_equal(a[3], "--");
	assert_string_equal(a[4], "/run/harness/init");
	assert_string_equal(a[5], "5");
	assert_string_equal(a[6], "9");
	for (size_t i = 0; a[i] != NULL; i++)
		assert_false(sbt_contains(a[i], "hi there"));
	hs_sandbox__argv_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__wrong_state_names_it, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__other_users_sandbox_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__limits_and_quota, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__ttl_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__spec_fields_and_driver_checks,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__filters_keep_pages_full, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__bwrap_view_is_an_allowlist, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__list_paging_and_filters, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__relaunch_checks_this_nodes_limits,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__restart_readoption, setup,
						teardown),
	};
	hs_log_min_level = HS_LOG_ERROR;
	return cmocka_run_group_tests_name("unit.sandbox.mgr", tests, NULL, NULL);
}
