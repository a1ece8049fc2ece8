/* The firecracker driver against tests/doubles/fc_emulator.py, launched in
 * place of firecracker (no jailer): boot sequence and bodies, pause,
 * snapshots, restore into a fresh process, and every failure path. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "driver.h"
#include "helpers.h"
#include "log.h"

static int setup(void **state)
{
	sbt_env *env = calloc(1, sizeof(*env));
	sbt_setup(env);
	env->cfg.default_driver = "firecracker";
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

static void create_fc(sbt_env *env, const char *id, const char *tap)
{
	hs_sandbox_spec spec = { .sandbox_id = id, .driver = "firecracker", .vcpu_count = 2,
				 .mem_size_mib = 256, .tap_dev = tap,
				 .guest_mac = tap ? "06:00:ac:10:00:02" : NULL };
	hs_error err = { 0 };
	hs_sandbox_info info;
	int rc = hs_sandbox_create(env->mgr, &sbt_alice, &spec, &info, &err);
	if (rc != HS_OK)
		fail_msg("create %s: %s", id, err.msg);
	assert_int_equal(info.state, HS_SANDBOX_CREATED);
	assert_string_equal(info.driver, "firecracker");
	hs_sandbox_info_dispose(&info);
}

static pid_t start_fc(sbt_env *env, const char *id)
{
	hs_error err = { 0 };
	hs_sandbox_info info;
	int rc = hs_sandbox_start(env->mgr, &sbt_alice, id, &info, &err);
	if (rc != HS_OK)
		fail_msg("start %s: %s", id, err.msg);
	assert_int_equal(info.state, HS_SANDBOX_RUNNING);
	pid_t pid = (pid_t)info.pid;
	assert_true(pid > 0);
	hs_sandbox_info_dispose(&info);
	return pid;
}

/* The requests (method + path) of the emulator log after the n-th start. */
static json_t *requests_of_run(sbt_env *env, int run)
{
	json_t *all = sbt_emu_log(env), *out = json_array(), *j;
	size_t i;
	int seen = -1;
	json_array_foreach(all, i, j)
	{
		if (json_object_get(j, "event") != NULL)
			seen++;
		else if (seen == run)
			json_array_append(out, j);
	}
	json_decref(all);
	return out;
}

static void assert_req(json_t *reqs, size_t i, const char *method, const char *path)
{
	json_t *r = json_array_get(reqs, i);
	if (r == NULL)
		fail_msg("request %zu missing (want %s %s)", i, method, path);
	assert_string_equal(json_string_value(json_object_get(r, "method")), method);
	assert_string_equal(json_string_value(json_object_get(r, "path")), path);
	json_t *st = json_object_get(r, "status");
	assert_true(json_integer_value(st) >= 200 && json_integer_value(st) < 300);
}

static json_t *body_of(json_t *reqs, size_t i)
{
	return json_object_get(json_array_get(reqs, i), "body");
}

static void test_sandbox_fc__cold_boot_order_and_bodies(void **state)
{
	sbt_env *env = *state;
	sbt_open_mgr(env);
	create_fc(env, "vm-boot", "tap7");
	pid_t pid = start_fc(env, "vm-boot");

	json_t *all = sbt_emu_log(env);
	json_t *start = json_array_get(all, 0);
	char *argv = json_dumps(json_object_get(start, "argv"), JSON_COMPACT);
	char want[600];
	snprintf(want, sizeof(want), "[\"--api-sock\",\"%s/vm-boot/fc.sock\",\"--id\",\"vm-boot\"]",
		 env->runtime);
	assert_string_equal(argv, want);
	free(argv);
	json_decref(all);

	json_t *r = requests_of_run(env, 0);
	assert_int_equal(json_array_size(r), 7);
	assert_req(r, 0, "PUT", "/logger");
	assert_req(r, 1, "PUT", "/metrics");
	assert_req(r, 2, "PUT", "/boot-source");
	assert_req(r, 3, "PUT", "/drives/rootfs");
	assert_req(r, 4, "PUT", "/machine-config");
	assert_req(r, 5, "PUT", "/network-interfaces/eth0");
	assert_req(r, 6, "PUT", "/actions");
	assert_string_equal(json_string_value(json_object_get(body_of(r, 2), "kernel_image_path")),
			    env->kernel);
	assert_non_null(json_object_get(body_of(r, 2), "boot_args"));
	char disk[400];
	snprintf(disk, sizeof(disk), "%s/vm-boot/rootfs.ext4", env->runtime);
	assert_string_equal(json_string_value(json_object_get(body_of(r, 3), "path_on_host")), disk);
	assert_true(json_is_true(json_object_get(body_of(r, 3), "is_root_device")));
	assert_true(json_is_false(json_object_get(body_of(r, 3), "is_read_only")));
	assert_int_equal(json_integer_value(json_object_get(body_of(r, 4), "vcpu_count")), 2);
	assert_int_equal(json_integer_value(json_object_get(body_of(r, 4), "mem_size_mib")), 256);
	assert_true(json_is_true(json_object_get(body_of(r, 4), "track_dirty_pages")));
	assert_string_equal(json_string_value(json_object_get(body_of(r, 5), "host_dev_name")),
			    "tap7");
	assert_string_equal(json_string_value(json_object_get(body_of(r, 5), "guest_mac")),
			    "06:00:ac:10:00:02");
	assert_string_equal(json_string_value(json_object_get(body_of(r, 6), "action_type")),
			    "InstanceStart");
	json_decref(r);
	assert_true(sbt_exists(disk)); /* the sandbox's own copy of the rootfs */

	/* destroy: no process, no socket, no runtime dir */
	char sock[400], rt[400];
	snprintf(sock, sizeof(sock), "%s/vm-boot/fc.sock", env->runtime);
	snprintf(rt, sizeof(rt), "%s/vm-boot", env->runtime);
	assert_true(sbt_exists(sock));
	hs_sandbox_info info;
	hs_error err = { 0 };
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "vm-boot", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_DESTROYED);
	hs_sandbox_info_dispose(&info);
	assert_true(sbt_pid_gone(pid));
	assert_false(sbt_exists(sock));
	assert_false(sbt_exists(rt));
}

static void test_sandbox_fc__pause_snapshot_resume(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_snapshot_info s1, s2;
	sbt_open_mgr(env);
	create_fc(env, "vm-snap", NULL);
	start_fc(env, "vm-snap");

	assert_int_equal(hs_sandbox_snapshot(env->mgr, &sbt_alice, "vm-snap", HS_SNAPSHOT_FULL, &s1,
					     &err),
			 HS_CONFLICT);
	assert_true(sbt_contains(err.msg, "is RUNNING; SnapshotSandbox needs PAUSED"));
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "vm-snap", NULL, &err), HS_OK);
	/* a diff needs a full snapshot to layer on */
	assert_int_equal(hs_sandbox_snapshot(env->mgr, &sbt_alice, "vm-snap", HS_SNAPSHOT_DIFF, &s2,
					     &err),
			 HS_CONFLICT);
	assert_true(sbt_contains(err.msg, "no full snapshot"));
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_snapshot(env->mgr, &sbt_alice, "vm-snap", HS_SNAPSHOT_FULL, &s1,
					     &err),
			 HS_OK);
	assert_int_equal(hs_sandbox_snapshot(env->mgr, &sbt_alice, "vm-snap", HS_SNAPSHOT_DIFF, &s2,
					     &err),
			 HS_OK);
	assert_int_equal(s1.type, HS_SNAPSHOT_FULL);
	assert_int_equal(s2.type, HS_SNAPSHOT_DIFF);
	assert_string_equal(s1.base_snapshot_id, "");
	assert_string_equal(s2.base_snapshot_id, s1.snapshot_id);
	assert_true(sbt_file_size(s1.snapshot_path) > 0);
	assert_int_equal(sbt_file_size(s1.mem_file_path), 256LL << 20);
	assert_true(s1.size_bytes > 0);
	char prefix[400];
	snprintf(prefix, sizeof(prefix), "%s/vm-snap/snapshots/", env->runtime);
	assert_memory_equal(s1.snapshot_path, prefix, strlen(prefix));

	hs_sandbox_snapshot_info *v = NULL;
	size_t n = 0;
	assert_int_equal(hs_sandbox_list_snapshots(env->mgr, &sbt_alice, "vm-snap", &v, &n, &err),
			 HS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].snapshot_id, s1.snapshot_id);
	assert_string_equal(v[1].snapshot_id, s2.snapshot_id);
	assert_string_equal(v[1].base_snapshot_id, s1.snapshot_id);
	hs_sandbox_snapshot_info_array_free(v, n);
	/* someone else's sandbox: not found */
	assert_int_equal(hs_sandbox_list_snapshots(env->mgr, &sbt_bob, "vm-snap", &v, &n, &err),
			 HS_NOT_FOUND);

	hs_sandbox_info info;
	assert_int_equal(hs_sandbox_resume(env->mgr, &sbt_alice, "vm-snap", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_RUNNING);
	hs_sandbox_info_dispose(&info);

	json_t *r = requests_of_run(env, 0);
	size_t k = json_array_size(r);
	assert_true(k >= 5);
	assert_req(r, k - 4, "PATCH", "/vm");
	assert_string_equal(json_string_value(json_object_get(body_of(r, k - 4), "state")), "Paused");
	assert_req(r, k - 3, "PUT", "/snapshot/create");
	assert_string_equal(json_string_value(json_object_get(body_of(r, k - 3), "snapshot_type")),
			    "Full");
	assert_string_equal(json_string_value(json_object_get(body_of(r, k - 3), "mem_file_path")),
			    s1.mem_file_path);
	assert_req(r, k - 2, "PUT", "/snapshot/create");
	assert_string_equal(json_string_value(json_object_get(body_of(r, k - 2), "snapshot_type")),
			    "Diff");
	assert_req(r, k - 1, "PATCH", "/vm");
	assert_string_equal(json_string_value(json_object_get(body_of(r, k - 1), "state")),
			    "Resumed");
	json_decref(r);
	hs_sandbox_snapshot_info_dispose(&s1);
	hs_sandbox_snapshot_info_dispose(&s2);
}

/* DestroySandbox's grace: a VMM that ignores SIGTERM (a shell around the
 * emulator: the emulator exits on SIGTERM, the shell then sleeps with TERM
 * ignored) gets exactly the grace asked for, or the configured one, before
 * SIGKILL; nothing survives either way. */
static void test_sandbox_fc__destroy_honours_grace(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	char script[1024];
	static char bin[320]; /* env->cfg keeps a pointer to it */
	snprintf(bin, sizeof(bin), "%s/fc-stubborn", env->dir);
	snprintf(script, sizeof(script),
		 "#!/bin/sh\ntrap '' TERM\n%s %s/tests/doubles/fc_emulator.py \"$@\"\n"
		 "exec sleep 30\n",
		 HS_TEST_PYTHON, HS_SOURCE_DIR);
	FILE *fp = fopen(bin, "w");
	assert_non_null(fp);
	fputs(script, fp);
	fclose(fp);
	chmod(bin, 0755);
	env->cfg.firecracker_bin = bin;
	/* Only bounds the wrong behaviour could not meet (no upper bound on
	 * how long a destroy takes, that is load): 300 ms asked for with the
	 * manager's grace at 30 s must not take 30 s; then 0 = the manager's
	 * grace (1.5 s, a second manager) is waited out. */
	static const struct {
		const char *id;
		unsigned mgr_grace_ms, grace_ms, min_ms, max_ms;
	} cases[] = { { "vm-g1", 30000, 300, 280, 30000 }, { "vm-g2", 1500, 0, 1480, 0 } };
	for (size_t i = 0; i < 2; i++) {
		if (env->mgr == NULL || env->cfg.stop_grace_ms != cases[i].mgr_grace_ms) {
			if (env->mgr != NULL)
				hs_sandbox_mgr_free(env->mgr);
			env->mgr = NULL;
			env->cfg.stop_grace_ms = cases[i].mgr_grace_ms;
			sbt_open_mgr(env);
		}
		create_fc(env, cases[i].id, NULL);
		pid_t pid = start_fc(env, cases[i].id);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		hs_sandbox_info info;
		assert_int_equal(hs_sandbox_destroy_grace(env->mgr, &sbt_alice, cases[i].id,
							  cases[i].grace_ms, &info, &err),
				 HS_OK);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long ms = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
		if (ms < (long)cases[i].min_ms ||
		    (cases[i].max_ms > 0 && ms >= (long)cases[i].max_ms))
			fail_msg("%s: destroy took %ld ms, want >= %u (< %u if set)", cases[i].id,
				 ms, cases[i].min_ms, cases[i].max_ms);
		assert_int_equal(info.state, HS_SANDBOX_DESTROYED);
		assert_true(info.stopped_at_ms > 0);
		hs_sandbox_info_dispose(&info);
		assert_true(sbt_pid_gone(pid));
	}
}

static void test_sandbox_fc__restore_into_new_process(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_snapshot_info full, diff;
	hs_sandbox_info info;
	sbt_open_mgr(env);
	create_fc(env, "vm-rest", "tap9");
	pid_t first = start_fc(env, "vm-rest");
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "vm-rest", NULL, &err), HS_OK);
	assert_int_equal(hs_sandbox_snapshot(env->mgr, &sbt_alice, "vm-rest", HS_SNAPSHOT_FULL,
					     &full, &err),
			 HS_OK);
	assert_int_equal(hs_sandbox_snapshot(env->mgr, &sbt_alice, "vm-rest", HS_SNAPSHOT_DIFF,
					     &diff, &err),
			 HS_OK);

	/* restore the full snapshot, resumed */
	assert_int_equal(hs_sandbox_restore(env->mgr, &sbt_alice, "vm-rest", full.snapshot_id, true,
					    &info, &err),
			 HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_RUNNING);
	pid_t second = (pid_t)info.pid;
	hs_sandbox_info_dispose(&info);
	assert_true(second > 0 && second != first);
	assert_true(sbt_pid_gone(first));
	json_t *r = requests_of_run(env, 1);
	assert_int_equal(json_array_size(r), 4);
	assert_req(r, 0, "PUT", "/logger");
	assert_req(r, 1, "PUT", "/metrics");
	assert_req(r, 2, "PUT", "/snapshot/load");
	assert_req(r, 3, "GET", "/");
	json_t *b = body_of(r, 2);
	assert_string_equal(json_string_value(json_object_get(b, "snapshot_path")),
			    full.snapshot_path);
	json_t *mb = json_object_get(b, "mem_backend");
	assert_string_equal(json_string_value(json_object_get(mb, "backend_type")), "File");
	assert_string_equal(json_string_value(json_object_get(mb, "backend_path")),
			    full.mem_file_path);
	assert_true(json_is_true(json_object_get(b, "resume_vm")));
	json_t *ov = json_array_get(json_object_get(b, "network_overrides"), 0);
	assert_string_equal(json_string_value(json_object_get(ov, "host_dev_name")), "tap9");
	json_decref(r);

	/* the latest (the diff), paused: memory is the merged chain */
	assert_int_equal(hs_sandbox_restore(env->mgr, &sbt_alice, "vm-rest", NULL, false, &info,
					    &err),
			 HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_PAUSED);
	hs_sandbox_info_dispose(&info);
	assert_true(sbt_pid_gone(second));
	r = requests_of_run(env, 2);
	b = body_of(r, 2);
	const char *merged = json_string_value(
		json_object_get(json_object_get(b, "mem_backend"), "backend_path"));
	assert_true(sbt_contains(merged, "mem.merged"));
	assert_true(sbt_contains(merged, diff.snapshot_id));
	assert_int_equal(sbt_file_size(merged), 256LL << 20);
	assert_true(json_is_false(json_object_get(b, "resume_vm")));
	json_decref(r);

	/* unknown snapshot */
	assert_int_equal(hs_sandbox_restore(env->mgr, &sbt_alice, "vm-rest", "snap-nope", true,
					    &info, &err),
			 HS_NOT_FOUND);
	hs_sandbox_snapshot_info_dispose(&full);
	hs_sandbox_snapshot_info_dispose(&diff);
}

static void test_sandbox_fc__failed_load_ends_process(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_snapshot_info snap;
	hs_sandbox_info info;
	sbt_open_mgr(env);
	create_fc(env, "vm-bad", NULL);
	start_fc(env, "vm-bad");
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "vm-bad", NULL, &err), HS_OK);
	assert_int_equal(hs_sandbox_snapshot(env->mgr, &sbt_alice, "vm-bad", HS_SNAPSHOT_FULL,
					     &snap, &err),
			 HS_OK);
	FILE *f = fopen(snap.snapshot_path, "w");
	fputs("garbage", f);
	fclose(f);
	assert_int_equal(hs_sandbox_restore(env->mgr, &sbt_alice, "vm-bad", NULL, true, NULL, &err),
			 HS_INVALID);
	assert_true(sbt_contains(err.msg, "Load snapshot error"));
	pid_t pid = sbt_emu_last_pid(env);
	assert_true(sbt_pid_gone(pid));
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "vm-bad", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_FAILED);
	assert_true(sbt_contains(info.failure_reason, "Load snapshot error"));
	hs_sandbox_info_dispose(&info);
	hs_sandbox_snapshot_info_dispose(&snap);
}

static void test_sandbox_fc__fault_message_surfaces(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_info info;
	sbt_emu_setenv(env, "FC_EMU_FAIL", "PUT /machine-config");
	sbt_open_mgr(env);
	create_fc(env, "vm-fault", NULL);
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "vm-fault", NULL, &err), HS_INVALID);
	assert_true(sbt_contains(err.msg, "injected failure: PUT /machine-config"));
	assert_true(sbt_contains(err.msg, "PUT /machine-config"));
	pid_t pid = sbt_emu_last_pid(env);
	assert_true(sbt_pid_gone(pid));
	char sock[400];
	snprintf(sock, sizeof(sock), "%s/vm-fault/fc.sock", env->runtime);
	assert_false(sbt_exists(sock));
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "vm-fault", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_FAILED);
	assert_int_equal(info.pid, 0);
	hs_sandbox_info_dispose(&info);
}

static void test_sandbox_fc__socket_never_appears(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	sbt_emu_setenv(env, "FC_EMU_NO_SOCKET", "1");
	env->cfg.socket_wait_ms = 400;
	sbt_open_mgr(env);
	create_fc(env, "vm-nosock", NULL);
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "vm-nosock", NULL, &err),
			 HS_UNAVAILABLE);
	assert_true(sbt_contains(err.msg, "did not appear within 400 ms"));
	/* Under load the emulator may be killed before it logs its start: look
	 * for any process still holding the sandbox's socket path instead. */
	pid_t pid = sbt_emu_last_pid(env);
	assert_true(pid == 0 || sbt_pid_gone(pid));
	assert_int_equal(sbt_wait_procs("vm-nosock/fc.sock", 0, 30000), 0);
}

static void test_sandbox_fc__dies_mid_call(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	hs_sandbox_info info;
	sbt_emu_setenv(env, "FC_EMU_DIE_ON", "PUT /actions");
	sbt_open_mgr(env);
	create_fc(env, "vm-die", NULL);
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "vm-die", NULL, &err),
			 HS_UNAVAILABLE);
	assert_true(sbt_pid_gone(sbt_emu_last_pid(env)));
	char sock[400];
	snprintf(sock, sizeof(sock), "%s/vm-die/fc.sock", env->runtime);
	assert_false(sbt_exists(sock));

	/* dying while paused is noticed by the call: FAILED, nothing left */
	sbt_emu_setenv(env, "FC_EMU_DIE_ON", "PATCH /vm");
	create_fc(env, "vm-die2", NULL);
	start_fc(env, "vm-die2");
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "vm-die2", NULL, &err),
			 HS_UNAVAILABLE);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "vm-die2", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_FAILED);
	hs_sandbox_info_dispose(&info);
	assert_true(sbt_pid_gone(sbt_emu_last_pid(env)));
}

static void test_sandbox_fc__call_timeout(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	sbt_emu_setenv(env, "FC_EMU_DELAY_MS", "1500");
	env->cfg.api_timeout_ms = 300;
	sbt_open_mgr(env);
	create_fc(env, "vm-slow", NULL);
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "vm-slow", NULL, &err), HS_TIMEOUT);
	assert_true(sbt_contains(err.msg, "timed out"));
	assert_true(sbt_pid_gone(sbt_emu_last_pid(env)));
}

typedef struct pause_arg {
	sbt_env *env;
	int rc;
	int done; /* __atomic: vm-a's call has returned */
} pause_arg;

static void *pause_slow(void *p)
{
	pause_arg *a = p;
	a->rc = hs_sandbox_pause(a->env->mgr, &sbt_alice, "vm-a", NULL, NULL);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* A slow call on one sandbox does not hold up another. */
static void test_sandbox_fc__per_sandbox_locking(void **state)
{
	sbt_env *env = *state;
	sbt_open_mgr(env);
	/* vm-a's VMM answers PATCH /vm (pause) 3 s late; vm-b's at once. */
	sbt_emu_setenv(env, "FC_EMU_DELAY_MS", "3000");
	sbt_emu_setenv(env, "FC_EMU_DELAY_ON", "PATCH /vm");
	create_fc(env, "vm-a", NULL);
	start_fc(env, "vm-a");
	sbt_emu_unsetenv(env, "FC_EMU_DELAY_MS");
	sbt_emu_unsetenv(env, "FC_EMU_DELAY_ON");
	create_fc(env, "vm-b", NULL);
	start_fc(env, "vm-b");
	pause_arg a = { env, -1, 0 };
	pthread_t t;
	pthread_create(&t, NULL, pause_slow, &a);
	sbt_sleep_ms(100);
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "vm-b", NULL, NULL), HS_OK);
	hs_sandbox_info info;
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "vm-b", &info, NULL), HS_OK);
	hs_sandbox_info_dispose(&info);
	/* vm-b was served while vm-a's call was still in flight (an order of
	 * events, not a duration): behind a shared lock it would have waited
	 * for vm-a's 3 s answer. */
	bool a_done = __atomic_load_n(&a.done, __ATOMIC_ACQUIRE);
	pthread_join(t, NULL);
	assert_int_equal(a.rc, HS_OK);
	assert_false(a_done);
}

static void test_sandbox_fc__restart_readoption(void **state)
{
	sbt_env *env = *state;
	hs_sandbox_info info;
	hs_error err = { 0 };
	sbt_open_mgr(env);
	create_fc(env, "vm-live", NULL);
	pid_t live = start_fc(env, "vm-live");
	create_fc(env, "vm-dead", NULL);
	pid_t dead = start_fc(env, "vm-dead");
	create_fc(env, "vm-new", NULL);
	hs_sandbox_mgr_free(env->mgr); /* "harnessd stops"; the VMs keep running */
	env->mgr = NULL;
	kill(dead, SIGKILL); /* one dies while nobody watches */
	waitpid(dead, NULL, 0);

	sbt_open_mgr(env);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "vm-live", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_RUNNING);
	assert_int_equal(info.pid, live);
	hs_sandbox_info_dispose(&info);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "vm-dead", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_FAILED);
	assert_string_equal(info.failure_reason, "lost after restart");
	hs_sandbox_info_dispose(&info);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "vm-new", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_CREATED);
	hs_sandbox_info_dispose(&info);
	/* the adopted VM is driven through its socket again */
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "vm-live", NULL, &err), HS_OK);
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "vm-live", NULL, &err), HS_OK);
	assert_true(sbt_pid_gone(live));
}

static void test_sandbox_fc__jailer_argv_and_socket_limit(void **state)
{
	sbt_env *env = *state;
	static const char *const cgroups[] = { "cpu.weight=100", "memory.max=536870912", NULL };
	hs_sandbox_config cfg = env->cfg;
	cfg.jailer_bin = "/usr/bin/jailer";
	cfg.firecracker_bin = "/usr/bin/firecracker";
	cfg.jailer_uid = 1234;
	cfg.jailer_gid = 5678;
	cfg.chroot_base_dir = "/srv/jailer";
	cfg.jailer_cgroups = cgroups;
	cfg.netns = "/var/run/netns/sb1";
	cfg.jailer_new_pid_ns = true;
	hs_sandbox__rec rec = { 0 };
	snprintf(rec.id, sizeof(rec.id), "sb-1");
	char **argv = NULL;
	assert_int_equal(hs_sandbox__fc_argv(&cfg, &rec, &argv, NULL), HS_OK);
	const char *want[] = { "/usr/bin/jailer", "--id", "sb-1", "--exec-file",
			       "/usr/bin/firecracker", "--uid", "1234", "--gid", "5678",
			       "--cgroup-version", "2", "--cgroup", "cpu.weight=100", "--cgroup",
			       "memory.max=536870912", "--chroot-base-dir", "/srv/jailer", "--netns",
			       "/var/run/netns/sb1", "--new-pid-ns", "--", "--api-sock",
			       "/run/firecracker.socket", NULL };
	for (size_t i = 0; want[i] != NULL; i++) {
		assert_non_null(argv[i]);
		assert_string_equal(argv[i], want[i]);
	}
	assert_null(argv[sizeof(want) / sizeof(want[0]) - 1]);
	hs_sandbox__argv_free(argv);

	/* jailer uid 0 means the sandbox account's ... */
	cfg.jailer_uid = 0;
	cfg.jailer_gid = 0;
	cfg.host.uid = 4321;
	cfg.host.gid = 8765;
	assert_int_equal(hs_sandbox__fc_argv(&cfg, &rec, &argv, NULL), HS_OK);
	assert_string_equal(argv[5], "--uid");
	assert_string_equal(argv[6], "4321");
	assert_string_equal(argv[8], "8765");
	hs_sandbox__argv_free(argv);
	/* ... and without one, jailed sandboxes are refused (never root) */
	cfg.host.uid = 0;
	cfg.host.gid = 0;
	cfg.runtime_root = env->runtime;
	rec.kernel_image_path = env->kernel;
	rec.rootfs_path = env->rootfs;
	hs_error err = { 0 };
	assert_int_equal(hs_sandbox__fc_driver.validate(&cfg, &rec, &err), HS_UNAVAILABLE);
	assert_true(sbt_contains(err.msg, "jailer uid/gid must not be 0"));

	/* a socket path over 107 bytes is refused at create, naming the limit */
	char deep[400];
	snprintf(deep, sizeof(deep), "%s/%s", env->dir,
		 "a-very-long-runtime-directory-name-that-pushes-the-socket-path-beyond-"
		 "the-unix-limit");
	env->cfg.runtime_root = deep;
	sbt_open_mgr(env);
	hs_sandbox_spec spec = { .sandbox_id = "vm-long-socket-path-id", .driver = "firecracker" };
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err), HS_INVALID);
	assert_true(sbt_contains(err.msg, "Unix sockets allow 107"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sandbox_fc__cold_boot_order_and_bodies, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__pause_snapshot_resume, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__destroy_honours_grace, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__restore_into_new_process, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__failed_load_ends_process, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__fault_message_surfaces, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__socket_never_appears, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__dies_mid_call, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__call_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__per_sandbox_locking, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__restart_readoption, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_fc__jailer_argv_and_socket_limit,
						setup, teardown),
	};
	hs_log_min_level = HS_LOG_ERROR;
	return cmocka_run_group_tests_name("unit.sandbox.fc", tests, NULL, NULL);
}
