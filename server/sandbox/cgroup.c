/* Cgroups of bwrap sandboxes: one tree per harnessd instance, one fresh
 * cgroup per sandbox run.
 *
 *   <v2 base>/harness-<instance>/<sandbox_id>      freezer (pause), kill,
 *                                                  and limits where delegated
 *   <v1 mount>/<our path>/harness-<instance>/<id>  pids/memory/cpu limits on
 *                                                  hybrid hosts whose v2 tree
 *                                                  has no controllers
 *
 * The instance id lives in the data dir, so two harnessd instances never
 * share a sandbox cgroup (same sandbox id or not), and a restarted instance
 * finds its own again. A cgroup left by a crash is thawed, killed and
 * removed before a sandbox of that id starts, so nothing frozen ever
 * swallows a new process.
 *
 * <v2 base> is harnessd's own cgroup (auto) or the delegated directory the
 * operator configured (cgroup_root). Limits (memory.max from mem_size_mib,
 * cpu.max from vcpu_count, pids.max) are applied only where the controller
 * is available to the sandbox cgroup; in auto mode harnessd never changes
 * its parent's controllers, with a configured root it enables them there.
 * What was applied is recorded in sb->limits (GetSandbox reports it). All
 * of this is best effort: without cgroups a sandbox pauses by signals and
 * runs without limits, and says so. */
#include "driver.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static const char *const v1_ctrl[HS_CG_V1_N] = { "pids", "memory", "cpu" };

static int write_file(const char *dir, const char *name, const char *value)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -1;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, value, strlen(value));
	int e = errno;
	close(fd);
	errno = e;
	return n == (ssize_t)strlen(value) ? 0 : -1;
}

static ssize_t read_file(const char *dir, const char *name, char *buf, size_t cap)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n;
}

/* Is word one of the space-separated words of list? */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
		if ((p == list || p[-1] == ' ' || p[-1] == ',') &&
		    (p[n] == '\0' || p[n] == ' ' || p[n] == '\n' || p[n] == ','))
			return true;
	return false;
}

/* Does <dir>/cgroup.events have the line "<key> <value>"? */
static bool cgroup_event(const char *dir, const char *key, char value)
{
	char buf[512];
	if (read_file(dir, "cgroup.events", buf, sizeof(buf)) <= 0)
		return false;
	size_t n = strlen(key);
	for (char *p = strstr(buf, key); p != NULL; p = strstr(p + 1, key))
		if ((p == buf || p[-1] == '\n') && p[n] == ' ')
			return p[n + 1] == value;
	return false;
}

static bool cgroup_wait(const char *dir, const char *key, char value, unsigned ms)
{
	int64_t until = hs_clock_mono_ms() + ms;
	while (!cgroup_event(dir, key, value)) {
		if (hs_clock_mono_ms() >= until)
			return false;
		hs_sandbox__sleep_ms(2);
	}
	return true;
}

/* SIGKILL every process listed in <dir>/cgroup.procs; true once it is empty. */
static bool kill_listed(const char *dir, unsigned ms)
{
	char buf[16384];
	int64_t until = hs_clock_mono_ms() + ms;
	for (;;) {
		ssize_t n = read_file(dir, "cgroup.procs", buf, sizeof(buf));
		if (n <= 0)
			return true;
		for (char *p = buf; *p != '\0';) {
			char *end;
			long pid = strtol(p, &end, 10);
			if (end == p)
				break;
			if (pid > 1)
				kill((pid_t)pid, SIGKILL);
			p = end;
			while (*p == '\n')
				p++;
		}
		if (hs_clock_mono_ms() >= until)
			return false;
		hs_sandbox__sleep_ms(5);
	}
}

/* Our path in the v2 hierarchy ("0::<path>") or in the v1 hierarchy whose
 * controller list holds ctrl ("N:a,b:<path>"); *list_out gets that list. */
static bool self_path(const char *ctrl, char *path, size_t cap, char *list_out, size_t list_cap)
{
	char line[PATH_MAX + 64];
	bool found = false;
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c2 == NULL)
			continue;
		*c2 = '\0';
		const char *list = c1 + 1;
		if (ctrl == NULL ? list[0] == '\0' : (list[0] != '\0' && has_word(list, ctrl))) {
			found = snprintf(path, cap, "%s", strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1) <
				(int)cap;
			if (list_out != NULL)
				snprintf(list_out, list_cap, "%s", list);
		}
	}
	fclose(f);
	return found;
}

/* <v2 base>/harness-<instance> ("" = no usable v2 tree). */
static void v2_instance_dir(const hs_sandbox_config *cfg, char *out, size_t cap)
{
	char self[PATH_MAX];
	out[0] = '\0';
	if (cfg->cgroup_root != NULL && strcmp(cfg->cgroup_root, "none") == 0)
		return;
	if (cfg->cgroup_root != NULL && cfg->cgroup_root[0] != '\0') {
		if (snprintf(out, cap, "%s/harness-%s", cfg->cgroup_root, cfg->host.instance_id) >=
		    (int)cap)
			out[0] = '\0';
		return;
	}
	const char *mount = NULL;
	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0)
		mount = "/sys/fs/cgroup";
	else if (access("/sys/fs/cgroup/unified/cgroup.controllers", F_OK) == 0)
		mount = "/sys/fs/cgroup/unified";
	if (mount == NULL || !self_path(NULL, self, sizeof(self), NULL, 0))
		return;
	if (snprintf(out, cap, "%s%s/harness-%s", mount, self, cfg->host.instance_id) >= (int)cap)
		out[0] = '\0';
}

/* <v1 mount of ctrl><our path>/harness-<instance> ("" = none). Only in auto
 * mode (a configured root is a v2 delegation). */
static void v1_instance_dir(const hs_sandbox_config *cfg, const char *ctrl, char *out,
			    size_t cap)
{
	char self[PATH_MAX], list[128], probe[PATH_MAX + 32];
	out[0] = '\0';
	if (cfg->cgroup_root != NULL && cfg->cgroup_root[0] != '\0')
		return;
	if (!self_path(ctrl, self, sizeof(self), list, sizeof(list)))
		return;
	if (snprintf(probe, sizeof(probe), "/sys/fs/cgroup/%s/cgroup.procs", list) >=
		    (int)sizeof(probe) ||
	    access(probe, W_OK) != 0)
		return;
	if (snprintf(out, cap, "/sys/fs/cgroup/%s%s/harness-%s", list, self,
		     cfg->host.instance_id) >= (int)cap)
		out[0] = '\0';
}

static bool join(char *out, size_t cap, const char *dir, const char *id)
{
	if (dir[0] == '\0' || snprintf(out, cap, "%s/%s", dir, id) >= (int)cap) {
		out[0] = '\0';
		return false;
	}
	return true;
}

/* A leftover of a crash: thaw, kill, remove. */
static void clean_stale(const char *dir, bool v2, const char *id)
{
	struct stat st;
	if (stat(dir, &st) != 0)
		return;
	hs_log(HS_LOG_WARN, "sandbox", "removing a stale sandbox cgroup", HS_LS("sandbox_id", id),
	       HS_LS("path", dir));
	if (v2) {
		write_file(dir, "cgroup.freeze", "0");
		if (write_file(dir, "cgroup.kill", "1") != 0)
			kill_listed(dir, 2000);
		cgroup_wait(dir, "populated", '0', 2000);
	} else {
		kill_listed(dir, 2000);
	}
	if (rmdir(dir) != 0 && errno != ENOENT)
		hs_log(HS_LOG_WARN, "sandbox", "cannot remove a stale cgroup", HS_LS("path", dir),
		       HS_LS("error", strerror(errno)));
}

static bool make_dir(const char *dir)
{
	return mkdir(dir, 0755) == 0 || errno == EEXIST;
}

/* v2: make the instance dir and let its children have the controllers. */
static void v2_prepare(const hs_sandbox_config *cfg, const char *inst)
{
	static const char *const ctrls[] = { "+memory", "+cpu", "+pids" };
	char parent[PATH_MAX];
	if (cfg->cgroup_root != NULL && cfg->cgroup_root[0] != '\0') {
		/* A delegated root: ours to configure. */
		snprintf(parent, sizeof(parent), "%s", cfg->cgroup_root);
		for (size_t i = 0; i < 3; i++)
			write_file(parent, "cgroup.subtree_control", ctrls[i]);
	}
	if (!make_dir(inst))
		return;
	char have[256];
	if (read_file(inst, "cgroup.controllers", have, sizeof(have)) <= 0)
		return;
	for (size_t i = 0; i < 3; i++)
		if (has_word(have, ctrls[i] + 1))
			write_file(inst, "cgroup.subtree_control", ctrls[i]);
}

static unsigned apply_v2_limits(const hs_sandbox_config *cfg, const hs_sandbox__rec *sb,
				const char *dir)
{
	char have[256], v[64];
	unsigned got = 0;
	if (read_file(dir, "cgroup.controllers", have, sizeof(have)) <= 0)
		return 0;
	if (has_word(have, "memory")) {
		snprintf(v, sizeof(v), "%llu", (unsigned long long)sb->mem_size_mib << 20);
		if (write_file(dir, "memory.max", v) == 0) {
			got |= HS_LIMIT_MEMORY;
			write_file(dir, "memory.swap.max", "0"); /* absent without swap accounting */
		}
	}
	if (has_word(have, "cpu")) {
		snprintf(v, sizeof(v), "%u 100000", sb->vcpu_count * 100000u);
		if (write_file(dir, "cpu.max", v) == 0)
			got |= HS_LIMIT_CPU;
	}
	if (has_word(have, "pids") && cfg->pids_max > 0) {
		snprintf(v, sizeof(v), "%u", cfg->pids_max);
		if (write_file(dir, "pids.max", v) == 0)
			got |= HS_LIMIT_PIDS;
	}
	return got;
}

static unsigned apply_v1_limit(const hs_sandbox_config *cfg, const hs_sandbox__rec *sb, int which,
			       const char *dir)
{
	char v[64];
	switch (which) {
	case HS_CG_V1_PIDS:
		snprintf(v, sizeof(v), "%u", cfg->pids_max);
		return cfg->pids_max > 0 && write_file(dir, "pids.max", v) == 0 ? HS_LIMIT_PIDS : 0;
	case HS_CG_V1_MEMORY:
		snprintf(v, sizeof(v), "%llu", (unsigned long long)sb->mem_size_mib << 20);
		return write_file(dir, "memory.limit_in_bytes", v) == 0 ? HS_LIMIT_MEMORY : 0;
	case HS_CG_V1_CPU:
		snprintf(v, sizeof(v), "%u", sb->vcpu_count * 100000u);
		return write_file(dir, "cpu.cfs_period_us", "100000") == 0 &&
				       write_file(dir, "cpu.cfs_quota_us", v) == 0
			       ? HS_LIMIT_CPU
			       : 0;
	}
	return 0;
}

void hs_sandbox__cg_create(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, pid_t pid)
{
	char inst[PATH_MAX], pidbuf[32];
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
	sb->limits = 0;
	sb->cgroup_dir[0] = '\0';
	v2_instance_dir(cfg, inst, sizeof(inst));
	if (join(sb->cgroup_dir, sizeof(sb->cgroup_dir), inst, sb->id)) {
		v2_prepare(cfg, inst);
		clean_stale(sb->cgroup_dir, true, sb->id);
		if (mkdir(sb->cgroup_dir, 0755) != 0 ||
		    write_file(sb->cgroup_dir, "cgroup.procs", pidbuf) != 0) {
			hs_log(HS_LOG_WARN, "sandbox", "cgroup v2 unusable; pausing with signals",
			       HS_LS("sandbox_id", sb->id), HS_LS("path", sb->cgroup_dir),
			       HS_LS("error", strerror(errno)));
			rmdir(sb->cgroup_dir);
			sb->cgroup_dir[0] = '\0';
		} else {
			sb->limits = apply_v2_limits(cfg, sb, sb->cgroup_dir);
		}
	}
	static const unsigned bit[HS_CG_V1_N] = { HS_LIMIT_PIDS, HS_LIMIT_MEMORY, HS_LIMIT_CPU };
	for (int i = 0; i < HS_CG_V1_N; i++) {
		char *dir = sb->cgroup_v1[i];
		dir[0] = '\0';
		if (sb->limits & bit[i])
			continue; /* v2 has it */
		v1_instance_dir(cfg, v1_ctrl[i], inst, sizeof(inst));
		if (!join(dir, PATH_MAX, inst, sb->id) || !make_dir(inst)) {
			dir[0] = '\0';
			continue;
		}
		clean_stale(dir, false, sb->id);
		unsigned got = 0;
		if (mkdir(dir, 0755) == 0)
			got = apply_v1_limit(cfg, sb, i, dir);
		if (got == 0 || write_file(dir, "cgroup.procs", pidbuf) != 0) {
			rmdir(dir);
			rmdir(inst); /* fails while other sandboxes use it */
			dir[0] = '\0';
			continue;
		}
		sb->limits |= got;
	}
	sb->pids_max = (sb->limits & HS_LIMIT_PIDS) ? cfg->pids_max : 0;
}

int hs_sandbox__cg_freeze(hs_sandbox__rec *sb, bool frozen, unsigned wait_ms, hs_error *err)
{
	if (write_file(sb->cgroup_dir, "cgroup.freeze", frozen ? "1" : "0") != 0)
		return hs_error_set(err, HS_INTERNAL, "%s %s: %s", frozen ? "freeze" : "thaw",
				    sb->cgroup_dir, strerror(errno));
	if (!cgroup_wait(sb->cgroup_dir, "frozen", frozen ? '1' : '0', wait_ms)) {
		if (frozen)
			write_file(sb->cgroup_dir, "cgroup.freeze", "0");
		return hs_error_set(err, HS_TIMEOUT, "sandbox %s did not %s", sb->id,
				    frozen ? "freeze" : "thaw");
	}
	return HS_OK;
}

void hs_sandbox__cg_kill(hs_sandbox__rec *sb)
{
	if (sb->cgroup_dir[0] != '\0') {
		write_file(sb->cgroup_dir, "cgroup.freeze", "0");
		if (write_file(sb->cgroup_dir, "cgroup.kill", "1") != 0)
			kill_listed(sb->cgroup_dir, 2000);
	}
	for (int i = 0; i < HS_CG_V1_N; i++)
		if (sb->cgroup_v1[i][0] != '\0')
			kill_listed(sb->cgroup_v1[i], 2000);
}

static void remove_dir(char *dir, bool v2, const char *id)
{
	if (dir[0] == '\0')
		return;
	if (v2)
		cgroup_wait(dir, "populated", '0', 2000);
	else
		kill_listed(dir, 2000);
	if (rmdir(dir) != 0 && errno != ENOENT)
		hs_log(HS_LOG_WARN, "sandbox", "cannot remove cgroup", HS_LS("sandbox_id", id),
		       HS_LS("path", dir), HS_LS("error", strerror(errno)));
	/* The instance dir goes with its last sandbox (EBUSY/ENOTEMPTY otherwise). */
	char *slash = strrchr(dir, '/');
	if (slash != NULL) {
		*slash = '\0';
		rmdir(dir);
	}
	dir[0] = '\0';
}

void hs_sandbox__cg_remove(hs_sandbox__rec *sb)
{
	remove_dir(sb->cgroup_dir, true, sb->id);
	for (int i = 0; i < HS_CG_V1_N; i++)
		remove_dir(sb->cgroup_v1[i], false, sb->id);
}

void hs_sandbox__cg_adopt(const hs_sandbox_config *cfg, hs_sandbox__rec *sb)
{
	char inst[PATH_MAX];
	struct stat st;
	v2_instance_dir(cfg, inst, sizeof(inst));
	if (join(sb->cgroup_dir, sizeof(sb->cgroup_dir), inst, sb->id) &&
	    stat(sb->cgroup_dir, &st) != 0)
		sb->cgroup_dir[0] = '\0';
	for (int i = 0; i < HS_CG_V1_N; i++) {
		v1_instance_dir(cfg, v1_ctrl[i], inst, sizeof(inst));
		if (join(sb->cgroup_v1[i], PATH_MAX, inst, sb->id) &&
		    stat(sb->cgroup_v1[i], &st) != 0)
			sb->cgroup_v1[i][0] = '\0';
	}
}
