/* Helpers shared by the sandbox tests (see helpers.h). */
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "driver.h"
#include "procstat.h"

const hs_sandbox_caller sbt_alice = { { "usr_alice", false }, 10000 };
const hs_sandbox_caller sbt_bob = { { "usr_bob", false }, 10000 };
const hs_sandbox_caller sbt_admin = { { "usr_admin", true }, 10000 };

void sbt_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

void sbt_setup(sbt_env *env)
{
	memset(env, 0, sizeof(*env));
	snprintf(env->dir, sizeof(env->dir), "/tmp/hs-sbt-XXXXXX");
	assert_non_null(mkdtemp(env->dir));
	snprintf(env->runtime, sizeof(env->runtime), "%s/run", env->dir);
	snprintf(env->workspaces, sizeof(env->workspaces), "%s/ws", env->dir);
	snprintf(env->data, sizeof(env->data), "%s/data", env->dir);
	snprintf(env->fc_bin, sizeof(env->fc_bin), "%s/firecracker", env->dir);
	snprintf(env->emu_log, sizeof(env->emu_log), "%s/emu.log", env->dir);
	snprintf(env->kernel, sizeof(env->kernel), "%s/vmlinux", env->dir);
	snprintf(env->rootfs, sizeof(env->rootfs), "%s/rootfs.ext4", env->dir);
	/* harnessd starts the VMM with a fixed environment (never its own), so
	 * the emulator's fault injection comes from a file the wrapper reads. */
	char script[1024];
	snprintf(env->emu_env, sizeof(env->emu_env), "%s/emu.env", env->dir);
	snprintf(script, sizeof(script),
		 "#!/bin/sh\nset -a\n. %s\nexec %s %s/tests/doubles/fc_emulator.py \"$@\"\n",
		 env->emu_env, HS_TEST_PYTHON, HS_SOURCE_DIR);
	write_text(env->fc_bin, script, 0755);
	snprintf(script, sizeof(script), "FC_EMU_LOG='%s'\n", env->emu_log);
	write_text(env->emu_env, script, 0644);
	write_text(env->kernel, "not really a kernel\n", 0644);
	write_text(env->rootfs, "not really an ext4 image\n", 0644);
	mkdir(env->workspaces, 0755);
	hs_error err = { 0 };
	assert_int_equal(hs_store_open(&env->store, env->data, &err), HS_OK);
	hs_tenancy_config tc = { env->store, env->workspaces };
	assert_int_equal(hs_tenancy_new(&env->tenancy, &tc, &err), HS_OK);
	hs_sandbox_config_init(&env->cfg);
	env->cfg.default_driver = "bwrap";
	env->cfg.runtime_root = env->runtime;
	env->cfg.tenancy = env->tenancy;
	env->cfg.init_bin = HS_INIT_BIN;
	/* The sandbox identity: a uid of its own when we are root (no account
	 * needed for a numeric one), else ours (development mode). */
	if (geteuid() == 0) {
		snprintf(env->uid, sizeof(env->uid), "%d", SBT_SANDBOX_UID);
	} else {
		snprintf(env->uid, sizeof(env->uid), "%u", (unsigned)geteuid());
		env->cfg.allow_same_uid = true;
	}
	env->cfg.sandbox_user = env->uid;
	env->cfg.firecracker_bin = env->fc_bin;
	env->cfg.skip_kvm_check = true; /* the emulator needs no /dev/kvm */
	env->cfg.jailer_bin = "";
	env->cfg.kernel_image = env->kernel;
	env->cfg.rootfs_image = env->rootfs;
	env->cfg.stop_grace_ms = 1000;
	env->cfg.reaper_interval_ms = 50;
}

void sbt_emu_setenv(sbt_env *env, const char *name, const char *value)
{
	FILE *f = fopen(env->emu_env, "a");
	assert_non_null(f);
	fprintf(f, "%s='%s'\n", name, value);
	fclose(f);
}

void sbt_emu_unsetenv(sbt_env *env, const char *name)
{
	FILE *f = fopen(env->emu_env, "a");
	assert_non_null(f);
	fprintf(f, "unset %s\n", name);
	fclose(f);
}

void sbt_instance_cgroup(const sbt_env *env, char *out, size_t cap)
{
	char path[400], id[32] = "";
	snprintf(path, sizeof(path), "%s/instance-id", env->runtime);
	FILE *f = fopen(path, "r");
	if (f != NULL) {
		if (fgets(id, sizeof(id), f) == NULL)
			id[0] = '\0';
		fclose(f);
	}
	id[strcspn(id, "\n")] = '\0';
	out[0] = '\0';
	if (sbt_exists("/sys/fs/cgroup/cgroup.controllers"))
		snprintf(out, cap, "/sys/fs/cgroup/harness-%s", id);
	else if (sbt_exists("/sys/fs/cgroup/unified/cgroup.controllers"))
		snprintf(out, cap, "/sys/fs/cgroup/unified/harness-%s", id);
}

void sbt_open_mgr(sbt_env *env)
{
	hs_error err = { 0 };
	int rc = hs_sandbox_mgr_new(&env->mgr, &env->cfg, env->store, &err);
	if (rc != HS_OK)
		fail_msg("mgr_new: %s", err.msg);
}

void sbt_teardown(sbt_env *env)
{
	if (env->mgr != NULL) {
		hs_sandbox_info *v = NULL;
		size_t n = 0;
		char *tok = NULL;
		hs_sandbox_filter f = { .page_size = 1000 };
		if (hs_sandbox_list(env->mgr, &sbt_admin, &f, &v, &n, &tok, NULL) == HS_OK) {
			for (size_t i = 0; i < n; i++)
				hs_sandbox_destroy(env->mgr, &sbt_admin, v[i].sandbox_id, NULL, NULL);
			hs_sandbox_info_array_free(v, n);
			free(tok);
		}
		hs_sandbox_mgr_free(env->mgr);
		env->mgr = NULL;
	}
	hs_tenancy_free(env->tenancy);
	env->tenancy = NULL;
	hs_store_free(env->store);
	env->store = NULL;
	hs_sandbox__rmtree(env->dir, NULL);
}

json_t *sbt_emu_log(const sbt_env *env)
{
	json_t *a = json_array();
	FILE *f = fopen(env->emu_log, "r");
	if (f == NULL)
		return a;
	char line[65536];
	while (fgets(line, sizeof(line), f) != NULL) {
		json_t *j = json_loads(line, 0, NULL);
		if (j != NULL)
			json_array_append_new(a, j);
	}
	fclose(f);
	return a;
}

pid_t sbt_emu_last_pid(const sbt_env *env)
{
	json_t *a = sbt_emu_log(env);
	pid_t pid = 0;
	size_t i;
	json_t *j;
	json_array_foreach(a, i, j)
	{
		if (json_object_get(j, "event") != NULL)
			pid = (pid_t)json_integer_value(json_object_get(j, "pid"));
	}
	json_decref(a);
	return pid;
}

bool sbt_pid_gone(pid_t pid)
{
	return pid > 0 && kill(pid, 0) != 0 && errno == ESRCH;
}

/* A process in the middle of execve() shows an empty cmdline for a moment
 * (the new mm is installed before its arguments are), and so does a kernel
 * thread or a zombie, for good: read again only for the first. */
static ssize_t read_cmdline(const char *pid, char *buf, size_t size)
{
	char path[300];
	snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
	for (int attempt = 0; attempt < 200; attempt++) {
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			return -1;
		ssize_t n = read(fd, buf, size);
		close(fd);
		if (n != 0)
			return n;
		/* kthreadd (pid 2) and its children are kernel threads */
		hs_procstat ps;
		pid_t id = (pid_t)strtol(pid, NULL, 10);
		if (hs_procstat_read(id, &ps, NULL) != HS_OK)
			return -1;
		if (ps.state == 'Z' || ps.state == 'X' || id == 2 || ps.ppid == 2)
			return 0;
		sbt_sleep_ms(1);
	}
	return 0;
}

int sbt_count_procs(const char *marker)
{
	int count = 0;
	DIR *d = opendir("/proc");
	struct dirent *de;
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		char buf[4096];
		ssize_t n = read_cmdline(de->d_name, buf, sizeof(buf) - 1);
		if (n <= 0)
			continue;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] == '\0')
				buf[i] = ' ';
		buf[n] = '\0';
		if (strstr(buf, marker) != NULL)
			count++;
	}
	closedir(d);
	return count;
}

int sbt_wait_procs(const char *marker, int want, unsigned ms)
{
	int n = sbt_count_procs(marker);
	for (unsigned waited = 0; n != want && waited < ms; waited += 10) {
		sbt_sleep_ms(10);
		n = sbt_count_procs(marker);
	}
	return n;
}

long long sbt_file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

bool sbt_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

int sbt_wait_state(sbt_env *env, const hs_sandbox_caller *c, const char *id, int state,
		   unsigned ms)
{
	int last = 0;
	for (unsigned waited = 0;; waited += 20) {
		hs_sandbox_info info;
		if (hs_sandbox_get(env->mgr, c, id, &info, NULL) == HS_OK) {
			last = info.state;
			hs_sandbox_info_dispose(&info);
		}
		if (last == state || waited >= ms)
			return last;
		sbt_sleep_ms(20);
	}
}

bool sbt_contains(const char *hay, const char *needle)
{
	return hay != NULL && strstr(hay, needle) != NULL;
}

char *sbt_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	char *buf = calloc(1, 1 << 20);
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}
