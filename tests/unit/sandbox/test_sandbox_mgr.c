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
	assert_int_equal(sbt_wait_state(env, &sbt_alice, "sb-ttl", HS_SANDBOX_DESTROYED, 4000),
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
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__list_paging_and_filters, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_mgr__restart_readoption, setup,
						teardown),
	};
	hs_log_min_level = HS_LOG_ERROR;
	return cmocka_run_group_tests_name("unit.sandbox.mgr", tests, NULL, NULL);
}
