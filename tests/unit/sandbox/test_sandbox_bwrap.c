/* The bwrap driver for real: a shell loop writing into the workspace, pause
 * (cgroup freezer and signals) stops its progress, resume continues, destroy
 * kills the whole tree; exit codes, the log cap, isolation. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"
#include "log.h"

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

static void create_start(sbt_env *env, const char *id, const char *task, const char *script)
{
	const char *argv[] = { "/bin/sh", "-c", script };
	hs_sandbox_spec spec = { .sandbox_id = id, .driver = "bwrap", .task_id = task,
				 .entrypoint = argv, .entrypoint_len = 3 };
	hs_error err = { 0 };
	hs_sandbox_info info;
	if (hs_sandbox_create(env->mgr, &sbt_alice, &spec, NULL, &err) != HS_OK)
		fail_msg("create: %s", err.msg);
	if (hs_sandbox_start(env->mgr, &sbt_alice, id, &info, &err) != HS_OK)
		fail_msg("start: %s", err.msg);
	assert_int_equal(info.state, HS_SANDBOX_RUNNING);
	assert_string_equal(info.driver, "bwrap");
	hs_sandbox_info_dispose(&info);
}

static long long wait_growth(const char *path, long long above, unsigned ms)
{
	long long sz = -1;
	for (unsigned w = 0; w < ms; w += 10) {
		sz = sbt_file_size(path);
		if (sz > above)
			break;
		sbt_sleep_ms(10);
	}
	return sz;
}

/* The loop carries a unique marker in its command line so we can count its
 * processes from outside. */
/* Our own sandbox cgroup when the freezer is in use (cgroup v2 mounted and
 * writable, harnessd in the root cgroup as in these tests), else "". */
static void freezer_dir(sbt_env *env, const char *id, char *out, size_t cap)
{
	char inst[300];
	sbt_instance_cgroup(env, inst, sizeof(inst));
	out[0] = '\0';
	if (inst[0] != '\0')
		snprintf(out, cap, "%s/%s", inst, id);
}

static void pause_resume_destroy(sbt_env *env, const char *marker, bool freezer)
{
	char cg[400];
	char script[512], progress[512];
	hs_error err = { 0 };
	hs_sandbox_info info;
	snprintf(script, sizeof(script),
		 "sleep 1000 & (exec -a %s-bg sleep 1000) & "
		 "while :; do echo %s >> progress; sleep 0.02; done",
		 marker, marker);
	create_start(env, "sb-loop", "task-loop", script);
	snprintf(progress, sizeof(progress), "%s/task-loop/progress", env->workspaces);
	assert_true(wait_growth(progress, 0, 30000) > 0);
	assert_true(sbt_count_procs(marker) >= 2);
	freezer_dir(env, "sb-loop", cg, sizeof(cg));
	if (cg[0] != '\0' && freezer)
		assert_true(sbt_exists(cg)); /* root can write cgroup v2 here: freezer in use */
	if (!freezer)
		assert_false(sbt_exists(cg));

	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "sb-loop", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_PAUSED);
	hs_sandbox_info_dispose(&info);
	sbt_sleep_ms(50);
	long long before = sbt_file_size(progress);
	sbt_sleep_ms(300);
	assert_int_equal(sbt_file_size(progress), before);

	assert_int_equal(hs_sandbox_resume(env->mgr, &sbt_alice, "sb-loop", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_RUNNING);
	pid_t leader = (pid_t)info.pid;
	hs_sandbox_info_dispose(&info);
	assert_true(wait_growth(progress, before, 30000) > before);

	/* destroy while paused: the whole tree dies, the workspace stays */
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "sb-loop", NULL, &err), HS_OK);
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "sb-loop", NULL, &err), HS_OK);
	assert_true(sbt_pid_gone(leader));
	assert_int_equal(sbt_wait_procs(marker, 0, 30000), 0);
	long long final = sbt_file_size(progress);
	sbt_sleep_ms(100);
	assert_int_equal(sbt_file_size(progress), final);
	char rt[400];
	snprintf(rt, sizeof(rt), "%s/sb-loop", env->runtime);
	assert_false(sbt_exists(rt));
	if (cg[0] != '\0')
		assert_false(sbt_exists(cg));
}

static void test_sandbox_bwrap__freezer_pause_resume_destroy(void **state)
{
	sbt_env *env = *state;
	sbt_open_mgr(env);
	pause_resume_destroy(env, "hsmark-freezer", true);
}

static void test_sandbox_bwrap__signal_pause_resume_destroy(void **state)
{
	sbt_env *env = *state;
	env->cfg.cgroup_root = "none";
	sbt_open_mgr(env);
	pause_resume_destroy(env, "hsmark-signals", false);
}

static void test_sandbox_bwrap__exit_code_and_log(void **state)
{
	sbt_env *env = *state;
	hs_sandbox_info info;
	sbt_open_mgr(env);
	create_start(env, "sb-exit", NULL, "echo hello-out; echo hello-err >&2; exit 7");
	assert_int_equal(sbt_wait_state(env, &sbt_alice, "sb-exit", HS_SANDBOX_STOPPED, 30000),
			 HS_SANDBOX_STOPPED);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "sb-exit", &info, NULL), HS_OK);
	assert_true(info.has_exit_code);
	assert_int_equal(info.exit_code, 7);
	assert_int_equal(info.pid, 0);
	assert_true(info.stopped_at_ms >= info.started_at_ms && info.started_at_ms > 0);
	char *log = sbt_read_file(info.log_path);
	assert_true(sbt_contains(log, "hello-out"));
	assert_true(sbt_contains(log, "hello-err"));
	free(log);
	/* destroying a STOPPED sandbox keeps when it stopped */
	int64_t stopped = info.stopped_at_ms;
	hs_sandbox_info_dispose(&info);
	sbt_sleep_ms(5);
	assert_int_equal(hs_sandbox_destroy(env->mgr, &sbt_alice, "sb-exit", &info, NULL), HS_OK);
	assert_int_equal(info.state, HS_SANDBOX_DESTROYED);
	assert_int_equal(info.stopped_at_ms, stopped);
	hs_sandbox_info_dispose(&info);

	/* killed by a signal it did not get from us: FAILED */
	create_start(env, "sb-sig", NULL, "kill -9 $$");
	int st = sbt_wait_state(env, &sbt_alice, "sb-sig", HS_SANDBOX_STOPPED, 30000);
	assert_true(st == HS_SANDBOX_STOPPED || st == HS_SANDBOX_FAILED);
}

static void test_sandbox_bwrap__log_is_capped(void **state)
{
	sbt_env *env = *state;
	hs_sandbox_info info;
	env->cfg.log_max_bytes = 1000;
	sbt_open_mgr(env);
	/* 200 KB of output: more than a pipe holds, so a writer that blocked on
	 * an undrained pipe would never exit. */
	create_start(env, "sb-chatty", NULL,
		     "i=0; while [ $i -lt 4000 ]; do echo 0123456789012345678901234567890123456789012345678; i=$((i+1)); done; exit 0");
	assert_int_equal(sbt_wait_state(env, &sbt_alice, "sb-chatty", HS_SANDBOX_STOPPED, 10000),
			 HS_SANDBOX_STOPPED);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "sb-chatty", &info, NULL), HS_OK);
	assert_int_equal(info.exit_code, 0);
	long long sz = sbt_file_size(info.log_path);
	assert_true(sz >= 1000 && sz < 1200);
	char *log = sbt_read_file(info.log_path);
	assert_true(sbt_contains(log, "truncated"));
	free(log);
	hs_sandbox_info_dispose(&info);
}

static void test_sandbox_bwrap__isolation(void **state)
{
	sbt_env *env = *state;
	char path[512];
	setenv("HARNESS_JWT_SECRET", "must-not-leak", 1);
	sbt_open_mgr(env);
	create_start(env, "sb-iso", "task-iso",
		     "env > env.txt; pwd > pwd.txt; "
		     "if touch /usr/hs-ro-probe 2>/dev/null; then echo rw; else echo ro; fi > ro.txt; "
		     "wc -l < /proc/net/dev > net.txt; ls /tmp | wc -l > tmp.txt; exit 0");
	assert_int_equal(sbt_wait_state(env, &sbt_alice, "sb-iso", HS_SANDBOX_STOPPED, 30000),
			 HS_SANDBOX_STOPPED);
	unsetenv("HARNESS_JWT_SECRET");
	snprintf(path, sizeof(path), "%s/task-iso/env.txt", env->workspaces);
	char *s = sbt_read_file(path);
	assert_true(sbt_contains(s, "HARNESS_SANDBOX_ID=sb-iso"));
	assert_true(sbt_contains(s, "HARNESS_TASK_ID=task-iso"));
	assert_false(sbt_contains(s, "must-not-leak"));
	free(s);
	snprintf(path, sizeof(path), "%s/task-iso/pwd.txt", env->workspaces);
	s = sbt_read_file(path);
	char want[400];
	snprintf(want, sizeof(want), "%s/task-iso\n", env->workspaces);
	assert_string_equal(s, want);
	free(s);
	snprintf(path, sizeof(path), "%s/task-iso/ro.txt", env->workspaces);
	s = sbt_read_file(path);
	assert_string_equal(s, "ro\n");
	free(s);
	snprintf(path, sizeof(path), "%s/task-iso/net.txt", env->workspaces);
	s = sbt_read_file(path);
	assert_string_equal(s, "3\n"); /* two header lines + lo: no host interfaces */
	free(s);
	assert_false(sbt_exists("/usr/hs-ro-probe"));
}

/* No task: task_id "" and no workspace; the entrypoint starts in "/" with
 * HOME=/tmp and no HARNESS_TASK_ID (it checks that itself: exit 0). */
static void test_sandbox_bwrap__no_task_no_workspace(void **state)
{
	sbt_env *env = *state;
	hs_sandbox_info info;
	const char *argv[] = { "/bin/sh", "-c",
			       "test \"$(pwd)\" = / && test \"$HOME\" = /tmp && "
			       "test -z \"${HARNESS_TASK_ID+x}\" && echo ok > /tmp/x && exit 0; "
			       "pwd; env; exit 9" };
	hs_sandbox_spec spec = { .sandbox_id = "sb-notask", .driver = "bwrap", .entrypoint = argv,
				 .entrypoint_len = 3 };
	hs_error err = { 0 };
	sbt_open_mgr(env);
	assert_int_equal(hs_sandbox_create(env->mgr, &sbt_alice, &spec, &info, &err), HS_OK);
	assert_string_equal(info.task_id, "");
	assert_string_equal(info.workspace, "");
	hs_sandbox_info_dispose(&info);
	assert_int_equal(hs_sandbox_start(env->mgr, &sbt_alice, "sb-notask", NULL, &err), HS_OK);
	assert_int_equal(sbt_wait_state(env, &sbt_alice, "sb-notask", HS_SANDBOX_STOPPED, 30000),
			 HS_SANDBOX_STOPPED);
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "sb-notask", &info, NULL), HS_OK);
	if (info.exit_code != 0) {
		char *log = sbt_read_file(info.log_path);
		fail_msg("exit %d: %s", info.exit_code, log ? log : "");
	}
	hs_sandbox_info_dispose(&info);
}

static long destroy_ms(sbt_env *env, const char *id, unsigned grace_ms)
{
	struct timespec t0, t1;
	hs_error err = { 0 };
	hs_sandbox_info info;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (hs_sandbox_destroy_grace(env->mgr, &sbt_alice, id, grace_ms, &info, &err) != HS_OK)
		fail_msg("destroy %s: %s", id, err.msg);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(info.state, HS_SANDBOX_DESTROYED);
	assert_true(info.stopped_at_ms > 0);
	hs_sandbox_info_dispose(&info);
	return (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
}

/* DestroySandbox's grace: the entrypoint gets SIGTERM and the time to act on
 * it (bwrap itself must not take the namespace down at once); one that
 * ignores SIGTERM is killed when the grace asked for (or the configured
 * one) is over. */
static void test_sandbox_bwrap__destroy_honours_grace(void **state)
{
	sbt_env *env = *state;
	char path[512], marker[64];
	/* No upper bound on how long a destroy takes (that is load): each
	 * bound below is one the wrong behaviour could not meet. The manager's
	 * own grace is 30 s here, so "ignored the grace asked for" would take
	 * at least 30 s. */
	env->cfg.stop_grace_ms = 30000;
	sbt_open_mgr(env);
	/* graceful: cleans up for 300 ms after SIGTERM, then exits */
	create_start(env, "sb-polite", "task-polite",
		     "trap 'sleep 0.3; echo bye > bye.txt; exit 0' TERM; "
		     "echo up > up.txt; while :; do sleep 0.05; done");
	snprintf(path, sizeof(path), "%s/task-polite/up.txt", env->workspaces);
	for (int i = 0; i < 3000 && !sbt_exists(path); i++)
		sbt_sleep_ms(10);
	assert_true(sbt_exists(path));
	long ms = destroy_ms(env, "sb-polite", 20000);
	snprintf(path, sizeof(path), "%s/task-polite/bye.txt", env->workspaces);
	assert_true(sbt_exists(path));
	/* ran its 300 ms of cleanup; returned when it exited, not after 20 s */
	if (ms < 250 || ms >= 20000)
		fail_msg("graceful destroy took %ld ms", ms);
	/* stubborn: ignores SIGTERM (so do its children) */
	snprintf(marker, sizeof(marker), "86397.%06d", (int)(getpid() % 1000000));
	char script[256];
	snprintf(script, sizeof(script),
		 "trap '' TERM; sleep %s & echo up > up.txt; while :; do sleep 0.05; done", marker);
	/* 300 ms asked for: SIGKILL after it, not after the manager's 30 s;
	 * then 0 = the manager's grace (1.5 s in a second manager). */
	static const struct {
		const char *id, *task;
		unsigned mgr_grace_ms, grace_ms, min_ms, max_ms;
	} cases[] = { { "sb-stub1", "task-stub1", 30000, 300, 280, 30000 },
		      { "sb-stub2", "task-stub2", 1500, 0, 1480, 0 } };
	for (size_t i = 0; i < 2; i++) {
		if (env->cfg.stop_grace_ms != cases[i].mgr_grace_ms) {
			hs_sandbox_mgr_free(env->mgr);
			env->mgr = NULL;
			env->cfg.stop_grace_ms = cases[i].mgr_grace_ms;
			sbt_open_mgr(env);
		}
		create_start(env, cases[i].id, cases[i].task, script);
		snprintf(path, sizeof(path), "%s/%s/up.txt", env->workspaces, cases[i].task);
		for (int k = 0; k < 3000 && !sbt_exists(path); k++)
			sbt_sleep_ms(10);
		assert_true(sbt_exists(path));
		ms = destroy_ms(env, cases[i].id, cases[i].grace_ms);
		if (ms < (long)cases[i].min_ms ||
		    (cases[i].max_ms > 0 && ms >= (long)cases[i].max_ms))
			fail_msg("%s: destroy took %ld ms, want >= %u (< %u if set)", cases[i].id,
				 ms, cases[i].min_ms, cases[i].max_ms);
		assert_int_equal(sbt_wait_procs(marker, 0, 30000), 0);
	}
}

static void test_sandbox_bwrap__no_memory_snapshots(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	sbt_open_mgr(env);
	create_start(env, "sb-nosnap", NULL, "exec sleep 1000");
	assert_int_equal(hs_sandbox_pause(env->mgr, &sbt_alice, "sb-nosnap", NULL, &err), HS_OK);
	assert_int_equal(hs_sandbox_snapshot(env->mgr, &sbt_alice, "sb-nosnap", HS_SNAPSHOT_FULL,
					     NULL, &err),
			 HS_CONFLICT);
	assert_true(sbt_contains(err.msg, "bwrap sandboxes have no memory snapshots"));
	hs_error_clear(&err);
	assert_int_equal(hs_sandbox_restore(env->mgr, &sbt_alice, "sb-nosnap", NULL, true, NULL,
					    &err),
			 HS_CONFLICT);
	assert_true(sbt_contains(err.msg, "no memory snapshots"));
}

static void test_sandbox_bwrap__probe(void **state)
{
	sbt_env *env = *state;
	hs_error err = { 0 };
	assert_int_equal(hs_sandbox_driver_probe(&env->cfg, "bwrap", &err), HS_OK);
	/* The emulator wrapper passes with skip_kvm_check (tests only); without
	 * it, a host without /dev/kvm has no firecracker. */
	assert_int_equal(hs_sandbox_driver_probe(&env->cfg, "firecracker", &err), HS_OK);
	hs_sandbox_config cfg = env->cfg;
	cfg.skip_kvm_check = false;
	if (access("/dev/kvm", F_OK) != 0) {
		assert_int_equal(hs_sandbox_driver_probe(&cfg, "firecracker", &err), HS_UNAVAILABLE);
		assert_true(sbt_contains(err.msg, "/dev/kvm"));
	}
	cfg = env->cfg;
	cfg.bwrap_bin = "/nonexistent/bwrap";
	assert_int_equal(hs_sandbox_driver_probe(&cfg, "bwrap", &err), HS_UNAVAILABLE);
	assert_int_equal(hs_sandbox_driver_probe(&cfg, "qemu", &err), HS_INVALID);
	cfg.firecracker_bin = "/nonexistent/firecracker";
	assert_string_equal(hs_sandbox_driver_resolve(&cfg, "auto"), "bwrap");
	assert_string_equal(hs_sandbox_driver_resolve(&cfg, "firecracker"), "firecracker");
}

/* Without CAP_SYS_ADMIN (harnessd switching uids but unable to make a
 * mount namespace of its own) there is no portal: bwrap binds the
 * workspace by descriptor (--bind-fd) and the init by path, as the sandbox
 * account, which then needs to traverse the path. */
static bool set_cap_effective(int cap, bool on)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) != 0)
		return false;
	if (on)
		d[cap / 32].effective |= 1u << (cap % 32);
	else
		d[cap / 32].effective &= ~(1u << (cap % 32));
	return syscall(SYS_capset, &h, d) == 0;
}

static void test_sandbox_bwrap__without_portal(void **state)
{
	sbt_env *env = *state;
	if (geteuid() != 0) {
		skip(); /* not root: the same-uid mode every other test uses */
		return;
	}
	assert_true(set_cap_effective(CAP_SYS_ADMIN, false));
	chmod(env->dir, 0711); /* the sandbox account walks the path itself now */
	sbt_open_mgr(env);
	hs_sandbox_host h;
	assert_int_equal(hs_sandbox_mgr_identity(env->mgr, &h, NULL), HS_OK);
	assert_false(h.portal);
	assert_true(h.switch_uid);
	create_start(env, "sb-noportal", "task-np",
		     "test -x /run/harness/init && id -u > uid.txt && exit 0; exit 3");
	assert_int_equal(sbt_wait_state(env, &sbt_alice, "sb-noportal", HS_SANDBOX_STOPPED, 30000),
			 HS_SANDBOX_STOPPED);
	hs_sandbox_info info;
	assert_int_equal(hs_sandbox_get(env->mgr, &sbt_alice, "sb-noportal", &info, NULL), HS_OK);
	assert_int_equal(info.exit_code, 0);
	hs_sandbox_info_dispose(&info);
	char path[512];
	snprintf(path, sizeof(path), "%s/task-np/uid.txt", env->workspaces);
	char *uid = sbt_read_file(path);
	assert_non_null(uid);
	assert_int_equal(strtol(uid, NULL, 10), SBT_SANDBOX_UID);
	free(uid);
	assert_true(set_cap_effective(CAP_SYS_ADMIN, true));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sandbox_bwrap__freezer_pause_resume_destroy,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_bwrap__signal_pause_resume_destroy,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_bwrap__exit_code_and_log, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_bwrap__log_is_capped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_bwrap__isolation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_bwrap__no_task_no_workspace, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_bwrap__destroy_honours_grace, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_bwrap__no_memory_snapshots, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_bwrap__probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_bwrap__without_portal, setup, teardown),
	};
	hs_log_min_level = HS_LOG_ERROR;
	return cmocka_run_group_tests_name("unit.sandbox.bwrap", tests, NULL, NULL);
}
