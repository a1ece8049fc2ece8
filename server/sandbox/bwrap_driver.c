/* The bwrap driver: the sandbox's entrypoint runs under bubblewrap in new
 * user/pid/ipc/uts (and net, unless network is asked for) namespaces, the
 * host read-only, a private /tmp, and the task workspace bound read-write at
 * the SAME absolute path (so paths the agent prints mean the same thing to
 * the checkpoint service) as its working directory. A sandbox without a
 * workspace (no task, none named) starts in "/" with HOME=/tmp.
 *
 * Process tree:  harnessd -> leader (fork, no exec) -> bwrap -> ns init -> entrypoint
 * The leader calls setsid(), so the whole tree is one process group (-pid)
 * without a controlling terminal (what bwrap's --new-session protects
 * against; we do not pass it because it would move the entrypoint out of the
 * group we signal). The leader pumps the tree's stdout+stderr from a pipe
 * into <runtime_dir>/sandbox.log, writing at most log_max_bytes and then
 * draining (the sandbox never blocks on a full pipe; a truncation note marks
 * the cut), then exits with bwrap's status (re-raising a fatal signal), so
 * the tracked pid carries the exit code. The leader only uses async-signal-
 * safe calls (harnessd is multi-threaded). It is not tied to harnessd, so a
 * sandbox survives a harnessd restart and is re-adopted; bwrap runs with
 * --die-with-parent, so killing the leader kills bwrap, and with
 * --unshare-pid the death of the ns init kills every process inside.
 *
 * Pause/resume: the cgroup v2 freezer (cgroup.freeze) of a per-sandbox cgroup
 * under <our cgroup>/harness-sandboxes/ when cgroup v2 is mounted and
 * writable (also in hybrid mode, /sys/fs/cgroup/unified); the leader is moved
 * into it before it forks. Otherwise SIGSTOP/SIGCONT to the process group.
 * Destroy: thaw, SIGTERM to the workload (every process of the group but the
 * leader and bwrap's own two: bwrap dies of SIGTERM and --die-with-parent
 * would then SIGKILL the namespace at once, leaving the entrypoint no grace),
 * wait up to the grace period for the tree to end (bwrap exits with its
 * entrypoint), then SIGKILL to the group (cgroup.kill as well when present),
 * reap, rmdir the cgroup. The entrypoint's environment is a clean
 * one (PATH, HOME, HARNESS_SANDBOX_ID, HARNESS_TASK_ID and the spec's env):
 * nothing of harnessd's environment leaks in. */
#include "driver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

static const char truncated_note[] = "\n[harness: output truncated at the log size limit]\n";

int hs_sandbox__bwrap_argv(const hs_sandbox_config *cfg, const hs_sandbox__rec *sb, char ***out,
			   hs_error *err)
{
	hs_sandbox__argv a = { 0 };
	hs_sandbox__argv_add(&a, cfg->bwrap_bin);
	hs_sandbox__argv_add(&a, "--die-with-parent");
	hs_sandbox__argv_add(&a, "--unshare-user");
	hs_sandbox__argv_add(&a, "--unshare-pid");
	hs_sandbox__argv_add(&a, "--unshare-ipc");
	hs_sandbox__argv_add(&a, "--unshare-uts");
	if (!sb->network)
		hs_sandbox__argv_add(&a, "--unshare-net");
	hs_sandbox__argv_add(&a, "--hostname");
	hs_sandbox__argv_add(&a, sb->id);
	hs_sandbox__argv_add(&a, "--ro-bind");
	hs_sandbox__argv_add(&a, "/");
	hs_sandbox__argv_add(&a, "/");
	hs_sandbox__argv_add(&a, "--dev");
	hs_sandbox__argv_add(&a, "/dev");
	hs_sandbox__argv_add(&a, "--proc");
	hs_sandbox__argv_add(&a, "/proc");
	hs_sandbox__argv_add(&a, "--tmpfs");
	hs_sandbox__argv_add(&a, "/tmp");
	/* After --tmpfs /tmp, so a workspace under /tmp is visible on top of it. */
	if (sb->workspace[0] != '\0') {
		hs_sandbox__argv_add(&a, "--bind");
		hs_sandbox__argv_add(&a, sb->workspace);
		hs_sandbox__argv_add(&a, sb->workspace);
	}
	hs_sandbox__argv_add(&a, "--chdir");
	hs_sandbox__argv_add(&a, sb->workspace[0] != '\0' ? sb->workspace : "/");
	hs_sandbox__argv_add(&a, "--");
	if (sb->entrypoint != NULL && sb->entrypoint[0] != NULL) {
		for (char **p = sb->entrypoint; *p != NULL; p++)
			hs_sandbox__argv_add(&a, *p);
	} else {
		hs_sandbox__argv_add(&a, "/bin/sh");
		hs_sandbox__argv_add(&a, "-c");
		hs_sandbox__argv_add(&a, "exec sleep infinity");
	}
	if (a.oom) {
		hs_sandbox__argv_free(a.v);
		return hs_error_set(err, HS_INTERNAL, "out of memory building bwrap argv");
	}
	*out = a.v;
	return HS_OK;
}

static int build_env(const hs_sandbox__rec *sb, char ***out, hs_error *err)
{
	hs_sandbox__argv a = { 0 };
	hs_sandbox__argv_add(&a, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	hs_sandbox__argv_addf(&a, "HOME=%s", sb->workspace[0] != '\0' ? sb->workspace : "/tmp");
	hs_sandbox__argv_addf(&a, "HARNESS_SANDBOX_ID=%s", sb->id);
	if (sb->task_id[0] != '\0')
		hs_sandbox__argv_addf(&a, "HARNESS_TASK_ID=%s", sb->task_id);
	for (char **p = sb->env; p != NULL && *p != NULL; p++)
		hs_sandbox__argv_add(&a, *p);
	if (a.oom) {
		hs_sandbox__argv_free(a.v);
		return hs_error_set(err, HS_INTERNAL, "out of memory building env");
	}
	*out = a.v;
	return HS_OK;
}

/* <v2 mount><our cgroup>/harness-sandboxes, created; "" if unusable. */
static void cgroup_base(const hs_sandbox_config *cfg, char *out, size_t cap)
{
	out[0] = '\0';
	if (cfg->cgroup_root != NULL && strcmp(cfg->cgroup_root, "none") == 0)
		return;
	if (cfg->cgroup_root != NULL && cfg->cgroup_root[0] != '\0') {
		snprintf(out, cap, "%s", cfg->cgroup_root);
	} else {
		const char *mount = NULL;
		if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0)
			mount = "/sys/fs/cgroup";
		else if (access("/sys/fs/cgroup/unified/cgroup.controllers", F_OK) == 0)
			mount = "/sys/fs/cgroup/unified";
		if (mount == NULL)
			return;
		char line[PATH_MAX], self[PATH_MAX] = "";
		FILE *f = fopen("/proc/self/cgroup", "re");
		if (f == NULL)
			return;
		while (fgets(line, sizeof(line), f) != NULL) {
			if (strncmp(line, "0::", 3) == 0) {
				line[strcspn(line, "\n")] = '\0';
				snprintf(self, sizeof(self), "%s", line + 3);
			}
		}
		fclose(f);
		if (strcmp(self, "/") == 0)
			self[0] = '\0';
		if (snprintf(out, cap, "%s%s/harness-sandboxes", mount, self) >= (int)cap) {
			out[0] = '\0';
			return;
		}
	}
	if (mkdir(out, 0755) != 0 && errno != EEXIST)
		out[0] = '\0';
}

static int write_file(const char *dir, const char *name, const char *value)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -1;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, value, strlen(value));
	close(fd);
	return n == (ssize_t)strlen(value) ? 0 : -1;
}

/* Does <dir>/cgroup.events have the line "<key> <value>"? */
static bool cgroup_event(const char *dir, const char *key, char value)
{
	char path[PATH_MAX], buf[512];
	snprintf(path, sizeof(path), "%s/cgroup.events", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	for (char *p = strstr(buf, key); p != NULL; p = strstr(p + 1, key)) {
		if ((p == buf || p[-1] == '\n') && p[strlen(key)] == ' ')
			return p[strlen(key) + 1] == value;
	}
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

/* The leader (see the top comment). Async-signal-safe calls only. */
static void leader(int go_fd, int log_fd, size_t cap, const char *bin, char **argv, char **envp)
{
	char buf[8192];
	int pfd[2];
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigaction(SIGTERM, &dfl, NULL);
	sigaction(SIGINT, &dfl, NULL);
	sigaction(SIGPIPE, &dfl, NULL);
	sigaction(SIGCHLD, &dfl, NULL);
	setsid();
	/* Nor harnessd's stdin/stdout/stderr: the leader outlives harnessd, and
	 * whoever reads harnessd's output (a supervisor, a test) must see EOF
	 * when harnessd exits. */
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
		_exit(127);
	/* Keep nothing of harnessd's (listening sockets, database) but our two fds. */
	int lo = go_fd < log_fd ? go_fd : log_fd, hi = go_fd < log_fd ? log_fd : go_fd;
	if (lo > 3)
		close_range(3, (unsigned)lo - 1, 0);
	if (hi > lo + 1)
		close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
	close_range((unsigned)hi + 1, ~0U, 0);
	if (read(go_fd, buf, 1) != 1) /* the parent moves us into the cgroup first */
		_exit(127);
	close(go_fd);
	if (pipe2(pfd, O_CLOEXEC) != 0)
		_exit(127);
	pid_t child = fork();
	if (child < 0)
		_exit(127);
	if (child == 0) {
		int null = open("/dev/null", O_RDONLY);
		if (null < 0 || dup2(null, 0) < 0 || dup2(pfd[1], 1) < 0 || dup2(pfd[1], 2) < 0)
			_exit(127);
		execve(bin, argv, envp);
		_exit(127);
	}
	close(pfd[1]);
	struct stat st;
	size_t written = fstat(log_fd, &st) == 0 ? (size_t)st.st_size : 0;
	bool noted = written >= cap;
	for (;;) {
		ssize_t n = read(pfd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (written < cap) {
			size_t k = (size_t)n < cap - written ? (size_t)n : cap - written;
			if (write(log_fd, buf, k) > 0)
				written += k;
		}
		if (written >= cap && !noted) {
			noted = write(log_fd, truncated_note, sizeof(truncated_note) - 1) >= 0;
		}
	}
	int status;
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR)
			_exit(127);
	}
	if (WIFSIGNALED(status)) {
		sigaction(WTERMSIG(status), &dfl, NULL);
		kill(getpid(), WTERMSIG(status));
		_exit(128 + WTERMSIG(status));
	}
	_exit(WEXITSTATUS(status));
}

static int bw_validate(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_error *err)
{
	if (sb->entrypoint != NULL && sb->entrypoint[0] != NULL && sb->entrypoint[0][0] == '\0')
		return hs_error_set(err, HS_INVALID, "entrypoint[0]: must not be empty");
	if (sb->workspace[0] != '\0' && sb->workspace[0] != '/')
		return hs_error_set(err, HS_INVALID, "workspace: must be an absolute path");
	if (access(cfg->bwrap_bin, X_OK) != 0)
		return hs_error_set(err, HS_UNAVAILABLE, "bwrap %s: %s", cfg->bwrap_bin,
				    strerror(errno));
	return HS_OK;
}

static void cgroup_remove(hs_sandbox__rec *sb)
{
	if (sb->cgroup_dir[0] == '\0')
		return;
	cgroup_wait(sb->cgroup_dir, "populated", '0', 2000);
	if (rmdir(sb->cgroup_dir) != 0 && errno != ENOENT)
		hs_log(HS_LOG_WARN, "sandbox", "cannot remove cgroup", HS_LS("sandbox_id", sb->id),
		       HS_LS("path", sb->cgroup_dir), HS_LS("error", strerror(errno)));
	sb->cgroup_dir[0] = '\0';
}

static int bw_start(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		    hs_error *err)
{
	int rc;
	char **argv = NULL, **envp = NULL;
	int go[2] = { -1, -1 }, log_fd = -1;
	char base[PATH_MAX];

	if (sb->workspace[0] != '\0' &&
	    (rc = hs_sandbox__mkdirs(sb->workspace, 0755, err)) != HS_OK)
		return rc;
	if ((rc = hs_sandbox__bwrap_argv(cfg, sb, &argv, err)) != HS_OK ||
	    (rc = build_env(sb, &envp, err)) != HS_OK)
		goto done;
	log_fd = open(sb->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (log_fd < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "open %s: %s", sb->log_path, strerror(errno));
		goto done;
	}
	if (pipe2(go, O_CLOEXEC) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "pipe: %s", strerror(errno));
		goto done;
	}
	pid_t pid = fork();
	if (pid < 0) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "fork: %s", strerror(errno));
		goto done;
	}
	if (pid == 0) {
		close(go[1]);
		leader(go[0], log_fd, cfg->log_max_bytes, cfg->bwrap_bin, argv, envp);
	}
	close(go[0]);
	go[0] = -1;
	sb->pid = pid;
	sb->is_child = true;
	setpgid(pid, pid); /* also done by the leader's setsid; avoids a race with kill(-pid) */
	hs_sandbox__proc_starttime(pid, &sb->pid_start_time);
	sb->cgroup_dir[0] = '\0';
	cgroup_base(cfg, base, sizeof(base));
	if (base[0] != '\0') {
		char pidbuf[32];
		hs_sandbox__path(sb->cgroup_dir, sizeof(sb->cgroup_dir), NULL, "", "%s/%s", base, sb->id);
		snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
		if ((mkdir(sb->cgroup_dir, 0755) != 0 && errno != EEXIST) ||
		    write_file(sb->cgroup_dir, "cgroup.procs", pidbuf) != 0) {
			hs_log(HS_LOG_WARN, "sandbox", "cgroup unusable; pausing with signals",
			       HS_LS("sandbox_id", sb->id), HS_LS("path", sb->cgroup_dir));
			rmdir(sb->cgroup_dir);
			sb->cgroup_dir[0] = '\0';
		}
	}
	if (write(go[1], "g", 1) != 1) {
		rc = hs_error_set(err, HS_INTERNAL, "cannot release sandbox leader: %s",
				  strerror(errno));
		goto done;
	}
	/* A bwrap that fails at setup exits 1 at once; poll reports it (STOPPED,
	 * exit code 1, bwrap's message in the log). */
	rc = HS_OK;
done:
	if (go[0] >= 0)
		close(go[0]);
	if (go[1] >= 0)
		close(go[1]);
	if (log_fd >= 0)
		close(log_fd);
	hs_sandbox__argv_free(argv);
	hs_sandbox__argv_free(envp);
	if (rc != HS_OK) {
		hs_sandbox__proc_terminate(sb, true, 0);
		cgroup_remove(sb);
	}
	return rc;
}

static int bw_pause(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		    hs_error *err)
{
	if (sb->cgroup_dir[0] != '\0') {
		if (write_file(sb->cgroup_dir, "cgroup.freeze", "1") != 0)
			return hs_error_set(err, HS_INTERNAL, "freeze %s: %s", sb->cgroup_dir,
					    strerror(errno));
		if (!cgroup_wait(sb->cgroup_dir, "frozen", '1',
				 hs_sandbox__bound(cfg->api_timeout_ms, timeout_ms))) {
			write_file(sb->cgroup_dir, "cgroup.freeze", "0");
			return hs_error_set(err, HS_TIMEOUT, "sandbox %s did not freeze", sb->id);
		}
		return HS_OK;
	}
	if (kill(-sb->pid, SIGSTOP) != 0)
		return hs_error_set(err, HS_UNAVAILABLE, "SIGSTOP sandbox %s: %s", sb->id,
				    strerror(errno));
	return HS_OK;
}

static int bw_resume(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		     hs_error *err)
{
	if (sb->cgroup_dir[0] != '\0') {
		if (write_file(sb->cgroup_dir, "cgroup.freeze", "0") != 0)
			return hs_error_set(err, HS_INTERNAL, "thaw %s: %s", sb->cgroup_dir,
					    strerror(errno));
		cgroup_wait(sb->cgroup_dir, "frozen", '0',
			    hs_sandbox__bound(cfg->api_timeout_ms, timeout_ms));
		return HS_OK;
	}
	if (kill(-sb->pid, SIGCONT) != 0)
		return hs_error_set(err, HS_UNAVAILABLE, "SIGCONT sandbox %s: %s", sb->id,
				    strerror(errno));
	return HS_OK;
}

static int bw_snapshot(const hs_sandbox_config *cfg, hs_sandbox__rec *sb,
		       hs_sandbox_snapshot_type type, const char *snapshot_path,
		       const char *mem_path, unsigned timeout_ms, hs_error *err)
{
	return hs_error_set(err, HS_CONFLICT, "sandbox %s: bwrap sandboxes have no memory snapshots",
			    sb->id);
}

static int bw_restore(const hs_sandbox_config *cfg, hs_sandbox__rec *sb,
		      const char *snapshot_path, const char *mem_path, bool resume,
		      unsigned timeout_ms, hs_error *err)
{
	return hs_error_set(err, HS_CONFLICT, "sandbox %s: bwrap sandboxes have no memory snapshots",
			    sb->id);
}

/* ppid and pgrp of pid from /proc/<pid>/stat; false if it is gone. */
static bool proc_parent_group(pid_t pid, pid_t *ppid, pid_t *pgrp)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* comm may contain spaces and parentheses */
	int pp, pg;
	char st;
	if (p == NULL || sscanf(p + 1, " %c %d %d", &st, &pp, &pg) != 3)
		return false;
	*ppid = pp;
	*pgrp = pg;
	return true;
}

/* SIGTERM to the workload: the members of the leader's process group that
 * are neither the leader, bwrap (its child) nor bwrap's namespace init (its
 * grandchild). Returns how many were signalled (0: not started yet or
 * already gone; the caller then signals the group). */
static int term_workload(const hs_sandbox__rec *sb)
{
	DIR *d = opendir("/proc");
	if (d == NULL)
		return 0;
	pid_t plumbing[8];
	size_t n_plumbing = 0;
	pid_t members[1024];
	pid_t parents[1024];
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL && n < sizeof(members) / sizeof(members[0])) {
		char *end;
		long v = strtol(de->d_name, &end, 10);
		pid_t ppid, pgrp;
		if (*end != '\0' || v <= 0 || v == sb->pid ||
		    !proc_parent_group((pid_t)v, &ppid, &pgrp) || pgrp != sb->pid)
			continue;
		members[n] = (pid_t)v;
		parents[n++] = ppid;
	}
	closedir(d);
	/* bwrap = a child of the leader; its namespace init = a child of bwrap. */
	for (size_t i = 0; i < n && n_plumbing < 8; i++)
		if (parents[i] == sb->pid)
			plumbing[n_plumbing++] = members[i];
	size_t bwraps = n_plumbing;
	for (size_t i = 0; i < n && n_plumbing < 8; i++)
		for (size_t j = 0; j < bwraps; j++)
			if (parents[i] == plumbing[j])
				plumbing[n_plumbing++] = members[i];
	int sent = 0;
	for (size_t i = 0; i < n; i++) {
		bool skip = false;
		for (size_t j = 0; j < n_plumbing && !skip; j++)
			skip = members[i] == plumbing[j];
		if (!skip && kill(members[i], SIGTERM) == 0)
			sent++;
	}
	return sent;
}

static int bw_stop(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_error *err)
{
	if (sb->pid > 0) {
		unsigned grace = cfg->stop_grace_ms;
		if (sb->cgroup_dir[0] != '\0')
			write_file(sb->cgroup_dir, "cgroup.freeze", "0");
		else
			kill(-sb->pid, SIGCONT); /* paused by SIGSTOP: SIGTERM acts only when continued */
		if (term_workload(sb) > 0) {
			/* Either the tree ended (bwrap exits with its entrypoint) or
			 * the grace is used up: no second wait after SIGTERM. */
			hs_sandbox__exit ex;
			hs_sandbox__proc_wait(sb, grace, &ex);
			grace = 0;
		}
		bool gone = hs_sandbox__proc_terminate(sb, true, grace);
		if (!gone)
			return hs_error_set(err, HS_INTERNAL, "sandbox %s leader did not die", sb->id);
	}
	if (sb->cgroup_dir[0] != '\0') {
		/* Anything that left the process group but not the cgroup. */
		if (write_file(sb->cgroup_dir, "cgroup.kill", "1") != 0)
			write_file(sb->cgroup_dir, "cgroup.freeze", "0");
		cgroup_remove(sb);
	}
	return HS_OK;
}

static void bw_poll(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_sandbox__exit *out)
{
	(void)cfg;
	hs_sandbox__proc_poll(sb, out);
}

static void bw_adopt(const hs_sandbox_config *cfg, hs_sandbox__rec *sb)
{
	char base[PATH_MAX];
	struct stat st;
	cgroup_base(cfg, base, sizeof(base));
	sb->cgroup_dir[0] = '\0';
	if (base[0] != '\0') {
		hs_sandbox__path(sb->cgroup_dir, sizeof(sb->cgroup_dir), NULL, "", "%s/%s", base, sb->id);
		if (stat(sb->cgroup_dir, &st) != 0)
			sb->cgroup_dir[0] = '\0';
	}
}

const hs_sandbox__driver hs_sandbox__bwrap_driver = {
	.name = "bwrap",
	.validate = bw_validate,
	.start = bw_start,
	.pause = bw_pause,
	.resume = bw_resume,
	.snapshot = bw_snapshot,
	.restore = bw_restore,
	.stop = bw_stop,
	.poll = bw_poll,
	.adopt = bw_adopt,
};
