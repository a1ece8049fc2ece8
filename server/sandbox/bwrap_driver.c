/* The bwrap driver: the sandbox's entrypoint runs under bubblewrap as the
 * unprivileged sandbox account, in new user (no further user namespaces),
 * pid, ipc, uts, cgroup (and net, unless network is asked for) namespaces,
 * under a seccomp filter (seccomp.c), with no capabilities and
 * no_new_privs, and sees an allowlisted view of the machine:
 *
 *   /usr, and the /bin /sbin /lib* links (or directories)   read-only, from the
 *   a handful of /etc files (passwd, group, hosts, ...)     host or --sandbox-rootfs
 *   /proc (its own pid namespace), a minimal /dev (null, zero, random, tty...)
 *   /tmp                                   a private tmpfs (at most mem_size_mib)
 *   /run/harness/init                      harness-sandbox-init, read-only
 *   the task workspace                     read-write, at its host path (so
 *                                          paths the agent prints mean the
 *                                          same to the checkpoint service)
 *   everything else                        absent; "/" itself is read-only
 *
 * Never the data dir, the workspace root, another workspace, /root, /home,
 * /var/lib, /run or /sys. The workspace is the one tenancy resolves at every
 * start (ownership checked, no symbolic link followed) and is bound by its
 * descriptor (bwrap_launch.c), so a swap between the check and the bind
 * cannot redirect it. A sandbox without a workspace starts in "/" with
 * HOME=/tmp.
 *
 * Environment: bwrap itself runs with PATH only; the entrypoint gets
 * --clearenv, then PATH, HOME, HARNESS_SANDBOX_ID, HARNESS_TASK_ID and the
 * caller's (already checked) variables. Nothing of harnessd's environment
 * leaks in, nothing of the caller's reaches the host side.
 *
 * StartSandbox is honest: it answers RUNNING only once the entrypoint was
 * executed (the exec report, bwrap_launch.c), else FAILED with the reason.
 *
 * Pause/resume: the cgroup v2 freezer of the sandbox's cgroup (cgroup.c);
 * without one, SIGSTOP/SIGCONT to the process group. Destroy: thaw, SIGTERM
 * to the workload (every process of the group but the leader and bwrap's own
 * two: bwrap dies of SIGTERM and --die-with-parent would then SIGKILL the
 * namespace at once, leaving the entrypoint no grace), wait up to the grace
 * period for the tree to end, then SIGKILL to the group and cgroup.kill,
 * reap, remove the cgroups. */
#include "bwrap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include "log.h"
#include "tenancy.h"

static char fixed_path[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
static char *const fixed_env[] = { fixed_path, NULL };

/* The /etc files a program commonly needs; each bound read-only if present. */
static const char *const etc_files[] = {
	"passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "host.conf", "gai.conf",
	"ld.so.cache", "localtime", "protocols", "services", "os-release", "alternatives", "ssl",
	"ca-certificates",
};

/* Top-level names that are links into /usr on merged-/usr systems. */
static const char *const usr_links[] = { "bin", "sbin", "lib", "lib32", "lib64", "libx32" };

static void add2(hs_sandbox__argv *a, const char *x, const char *y)
{
	hs_sandbox__argv_add(a, x);
	hs_sandbox__argv_add(a, y);
}

static void add3(hs_sandbox__argv *a, const char *x, const char *y, const char *z)
{
	hs_sandbox__argv_add(a, x);
	hs_sandbox__argv_add(a, y);
	hs_sandbox__argv_add(a, z);
}

/* /usr, the /bin /sbin /lib* links and /etc files: from the host, or from
 * the rootfs (real: where it is on the host, to look at its layout; src:
 * the path bwrap binds from, the portal's when there is one). */
static void add_system(hs_sandbox__argv *a, const hs_sandbox_config *cfg)
{
	bool own = cfg->rootfs_dir != NULL && cfg->rootfs_dir[0] != '\0';
	const char *real = own ? cfg->rootfs_dir : "";
	const char *src = own ? (cfg->host.portal ? HS_BW_PORTAL "/rootfs" : cfg->rootfs_dir) : "";
	char from[PATH_MAX], to[64], target[PATH_MAX];
	snprintf(from, sizeof(from), "%s/usr", src);
	add3(a, "--ro-bind", from, "/usr");
	for (size_t i = 0; i < sizeof(usr_links) / sizeof(usr_links[0]); i++) {
		struct stat st;
		snprintf(from, sizeof(from), "%s/%s", real, usr_links[i]);
		snprintf(to, sizeof(to), "/%s", usr_links[i]);
		if (lstat(from, &st) != 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(from, target, sizeof(target) - 1);
			if (n <= 0)
				continue;
			target[n] = '\0';
			add3(a, "--symlink", target, to);
		} else if (S_ISDIR(st.st_mode)) {
			snprintf(from, sizeof(from), "%s/%s", src, usr_links[i]);
			add3(a, "--ro-bind", from, to);
		}
	}
	for (size_t i = 0; i < sizeof(etc_files) / sizeof(etc_files[0]); i++) {
		snprintf(from, sizeof(from), "%s/etc/%s", src, etc_files[i]);
		snprintf(to, sizeof(to), "/etc/%s", etc_files[i]);
		add3(a, "--ro-bind-try", from, to);
	}
}

int hs_sandbox__bwrap_options(const hs_sandbox_config *cfg, const hs_sandbox__rec *sb, char ***out,
			      hs_error *err)
{
	hs_sandbox__argv a = { 0 };
	hs_sandbox__argv_add(&a, "--die-with-parent");
	hs_sandbox__argv_add(&a, "--unshare-user");
	hs_sandbox__argv_add(&a, "--disable-userns");
	hs_sandbox__argv_add(&a, "--unshare-pid");
	hs_sandbox__argv_add(&a, "--unshare-ipc");
	hs_sandbox__argv_add(&a, "--unshare-uts");
	hs_sandbox__argv_add(&a, "--unshare-cgroup-try");
	if (!sb->network)
		hs_sandbox__argv_add(&a, "--unshare-net");
	add2(&a, "--hostname", sb->id);
	hs_sandbox__argv_addf(&a, "--seccomp");
	hs_sandbox__argv_addf(&a, "%d", HS_BW_FD_SECCOMP);
	add_system(&a, cfg);
	add2(&a, "--proc", "/proc");
	add2(&a, "--dev", "/dev");
	hs_sandbox__argv_add(&a, "--size");
	hs_sandbox__argv_addf(&a, "%llu", (unsigned long long)(sb->mem_size_mib ? sb->mem_size_mib : 256) << 20);
	add2(&a, "--tmpfs", "/tmp");
	add2(&a, "--dir", "/var");
	add3(&a, "--symlink", "../tmp", "/var/tmp");
	/* After /tmp and /var, so a workspace below them lands on top. */
	if (sb->workspace[0] != '\0') {
		if (cfg->host.portal) {
			add3(&a, "--bind", HS_BW_PORTAL "/ws", sb->workspace);
		} else {
			hs_sandbox__argv_add(&a, "--bind-fd");
			hs_sandbox__argv_addf(&a, "%d", HS_BW_FD_WS);
			hs_sandbox__argv_add(&a, sb->workspace);
		}
	}
	add3(&a, "--ro-bind", cfg->host.portal ? HS_BW_PORTAL "/init" : cfg->host.init_bin,
	     HS_BW_INIT_PATH);
	add2(&a, "--remount-ro", "/");
	add2(&a, "--chdir", sb->workspace[0] != '\0' ? sb->workspace : "/");
	hs_sandbox__argv_add(&a, "--clearenv");
	add3(&a, "--setenv", "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	add3(&a, "--setenv", "HOME", sb->workspace[0] != '\0' ? sb->workspace : "/tmp");
	add3(&a, "--setenv", "HARNESS_SANDBOX_ID", sb->id);
	if (sb->task_id[0] != '\0')
		add3(&a, "--setenv", "HARNESS_TASK_ID", sb->task_id);
	for (char **p = sb->env; p != NULL && *p != NULL; p++) {
		const char *eq = strchr(*p, '=');
		if (eq == NULL || eq == *p || (size_t)(eq - *p) > 128)
			continue; /* checked at create; never half-parsed here */
		char name[129];
		memcpy(name, *p, (size_t)(eq - *p));
		name[eq - *p] = '\0';
		add3(&a, "--setenv", name, eq + 1);
	}
	if (a.oom) {
		hs_sandbox__argv_free(a.v);
		return hs_error_set(err, HS_INTERNAL, "out of memory building bwrap options");
	}
	*out = a.v;
	return HS_OK;
}

int hs_sandbox__bwrap_argv(const hs_sandbox_config *cfg, const hs_sandbox__rec *sb, char ***out,
			   hs_error *err)
{
	hs_sandbox__argv a = { 0 };
	hs_sandbox__argv_add(&a, cfg->bwrap_bin);
	hs_sandbox__argv_add(&a, "--args");
	hs_sandbox__argv_addf(&a, "%d", HS_BW_FD_ARGS);
	hs_sandbox__argv_add(&a, "--");
	hs_sandbox__argv_add(&a, HS_BW_INIT_PATH);
	hs_sandbox__argv_addf(&a, "%d", HS_BW_FD_REPORT);
	hs_sandbox__argv_addf(&a, "%d", HS_BW_FD_EXEC);
	if (sb->entrypoint != NULL && sb->entrypoint[0] != NULL) {
		for (char **p = sb->entrypoint; *p != NULL; p++)
			hs_sandbox__argv_add(&a, *p);
	} else {
		add3(&a, "/bin/sh", "-c", "exec sleep infinity");
	}
	if (a.oom) {
		hs_sandbox__argv_free(a.v);
		return hs_error_set(err, HS_INTERNAL, "out of memory building bwrap argv");
	}
	*out = a.v;
	return HS_OK;
}

/* The options, NUL-separated, in a memfd at offset 0 (bwrap --args). */
static int options_fd(char **opts, int *out, hs_error *err)
{
	int fd = memfd_create("hs-bwrap-args", MFD_CLOEXEC);
	if (fd < 0)
		return hs_error_set(err, HS_INTERNAL, "memfd_create: %s", strerror(errno));
	for (char **p = opts; *p != NULL; p++) {
		size_t n = strlen(*p) + 1;
		if (write(fd, *p, n) != (ssize_t)n) {
			close(fd);
			return hs_error_set(err, HS_INTERNAL, "writing bwrap options: %s",
					    strerror(errno));
		}
	}
	if (lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return hs_error_set(err, HS_INTERNAL, "lseek: %s", strerror(errno));
	}
	*out = fd;
	return HS_OK;
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

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int bw_start(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		    hs_error *err)
{
	int rc;
	char **opts = NULL, **argv = NULL;
	int go[2] = { -1, -1 }, rep[2] = { -1, -1 };
	hs_sandbox__launch l = { .bwrap_bin = cfg->bwrap_bin, .envp = (char **)fixed_env, .args_fd = -1,
				 .seccomp_fd = -1, .report_fd = -1, .ws_fd = -1, .rootfs_fd = -1,
				 .init_fd = -1, .exec_fd = -1, .go_fd = -1, .log_fd = -1,
				 .log_max = cfg->log_max_bytes, .portal = cfg->host.portal,
				 .switch_uid = cfg->host.switch_uid, .uid = cfg->host.uid,
				 .gid = cfg->host.gid };

	if (cfg->host.init_bin[0] == '\0')
		return hs_error_set(err, HS_UNAVAILABLE, "bwrap driver: no sandbox identity");
	/* The workspace as tenancy resolves it now: created if missing, never
	 * through a symbolic link, handed to the sandbox account. */
	if (sb->workspace_name[0] != '\0') {
		if ((rc = hs_tenancy_open_workspace(cfg->tenancy, NULL, NULL, sb->workspace_name,
						    HS_WORKSPACE_CREATE, &l.ws_fd, NULL, err)) !=
		    HS_OK)
			goto done;
		if (cfg->host.chown_workspace &&
		    (rc = hs_sandbox__chown_tree(l.ws_fd, cfg->host.uid, cfg->host.gid, err)) !=
			    HS_OK)
			goto done;
	}
	if (cfg->host.portal) {
		if (cfg->rootfs_dir != NULL && cfg->rootfs_dir[0] != '\0' &&
		    (l.rootfs_fd = open(cfg->rootfs_dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
			rc = hs_error_set(err, HS_UNAVAILABLE, "sandbox-rootfs %s: %s", cfg->rootfs_dir,
					  strerror(errno));
			goto done;
		}
		if ((l.init_fd = open(cfg->host.init_bin, O_PATH | O_CLOEXEC)) < 0) {
			rc = hs_error_set(err, HS_UNAVAILABLE, "sandbox init %s: %s",
					  cfg->host.init_bin, strerror(errno));
			goto done;
		}
	}
	if ((rc = hs_sandbox__bwrap_options(cfg, sb, &opts, err)) != HS_OK ||
	    (rc = hs_sandbox__bwrap_argv(cfg, sb, &argv, err)) != HS_OK ||
	    (rc = options_fd(opts, &l.args_fd, err)) != HS_OK ||
	    (rc = hs_sandbox__seccomp_fd(&l.seccomp_fd, err)) != HS_OK ||
	    (rc = hs_sandbox__bw_exec_listen(sb->runtime_dir, &l.exec_fd, err)) != HS_OK)
		goto done;
	l.argv = argv;
	l.log_fd = open(sb->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (l.log_fd < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "open %s: %s", sb->log_path, strerror(errno));
		goto done;
	}
	if (pipe2(go, O_CLOEXEC) != 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, rep) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "pipe: %s", strerror(errno));
		goto done;
	}
	l.go_fd = go[0];
	l.report_fd = rep[1];
	pid_t pid = hs_sandbox__bw_fork_leader(&l);
	if (pid < 0) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "fork: %s", strerror(errno));
		goto done;
	}
	close_fd(&go[0]);
	close_fd(&rep[1]);
	sb->pid = pid;
	sb->is_child = true;
	setpgid(pid, pid); /* also done by the leader's setsid; avoids a race with kill(-pid) */
	hs_sandbox__proc_starttime(pid, &sb->pid_start_time);
	sb->pidfd = hs_sandbox__pidfd_open(pid);
	hs_sandbox__cg_create(cfg, sb, pid);
	if (write(go[1], "g", 1) != 1) {
		rc = hs_error_set(err, HS_INTERNAL, "cannot release sandbox leader: %s",
				  strerror(errno));
		goto done;
	}
	close_fd(&go[1]);
	const char *argv0 = sb->entrypoint && sb->entrypoint[0] ? sb->entrypoint[0] : "/bin/sh";
	rc = hs_sandbox__bw_wait_exec(rep[0], hs_sandbox__bound(cfg->api_timeout_ms, timeout_ms),
				      argv0, sb->log_path, err);
done:
	close_fd(&go[0]);
	close_fd(&go[1]);
	close_fd(&rep[0]);
	close_fd(&rep[1]);
	close_fd(&l.args_fd);
	close_fd(&l.seccomp_fd);
	close_fd(&l.ws_fd);
	close_fd(&l.rootfs_fd);
	close_fd(&l.init_fd);
	close_fd(&l.exec_fd);
	close_fd(&l.log_fd);
	hs_sandbox__argv_free(opts);
	hs_sandbox__argv_free(argv);
	if (rc != HS_OK) {
		if (sb->cgroup_dir[0] != '\0')
			hs_sandbox__cg_kill(sb);
		hs_sandbox__proc_terminate(sb, true, 0);
		hs_sandbox__cg_remove(sb);
	}
	return rc;
}

static int bw_pause(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		    hs_error *err)
{
	if (sb->cgroup_dir[0] != '\0')
		return hs_sandbox__cg_freeze(sb, true,
					     hs_sandbox__bound(cfg->api_timeout_ms, timeout_ms), err);
	if (kill(-sb->pid, SIGSTOP) != 0)
		return hs_error_set(err, HS_UNAVAILABLE, "SIGSTOP sandbox %s: %s", sb->id,
				    strerror(errno));
	return HS_OK;
}

static int bw_resume(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		     hs_error *err)
{
	if (sb->cgroup_dir[0] != '\0')
		return hs_sandbox__cg_freeze(sb, false,
					     hs_sandbox__bound(cfg->api_timeout_ms, timeout_ms), err);
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
			hs_sandbox__cg_freeze(sb, false, 1000, NULL);
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
	/* Anything that left the process group but not the cgroups. */
	hs_sandbox__cg_kill(sb);
	hs_sandbox__cg_remove(sb);
	return HS_OK;
}

static void bw_poll(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_sandbox__exit *out)
{
	(void)cfg;
	hs_sandbox__proc_poll(sb, out);
}

static void bw_adopt(const hs_sandbox_config *cfg, hs_sandbox__rec *sb)
{
	hs_sandbox__cg_adopt(cfg, sb);
}

/* Run `bwrap ... true` as the sandbox account, with the fixed environment. */
static int run_probe(const hs_sandbox_config *cfg, const hs_sandbox_host *h, hs_error *err)
{
	char *const argv[] = { (char *)cfg->bwrap_bin, "--unshare-user", "--disable-userns",
			       "--unshare-pid", "--ro-bind", "/", "/", "--", "/bin/true", NULL };
	pid_t pid = fork();
	if (pid < 0)
		return hs_error_set(err, HS_UNAVAILABLE, "fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
			_exit(126);
		close_range(3, ~0U, 0);
		if (h->switch_uid && (setgroups(0, NULL) != 0 || setgid(h->gid) != 0 ||
				      setuid(h->uid) != 0))
			_exit(125);
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
		execve(cfg->bwrap_bin, argv, fixed_env);
		_exit(127);
	}
	int status = 0;
	int64_t until = hs_clock_mono_ms() + 10000;
	pid_t r;
	while ((r = waitpid(pid, &status, WNOHANG)) == 0 && hs_clock_mono_ms() < until)
		hs_sandbox__sleep_ms(5);
	if (r == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return hs_error_set(err, HS_UNAVAILABLE, "bwrap probe did not finish within 10 s");
	}
	if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return hs_error_set(err, HS_UNAVAILABLE,
				    "bwrap cannot create a sandbox here as uid %u (exit %d; "
				    "unprivileged user namespaces allowed?)",
				    (unsigned)h->uid, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return HS_OK;
}

int hs_sandbox__bwrap_probe(const hs_sandbox_config *cfg, hs_error *err)
{
	int rc;
	hs_sandbox_host h;
	struct stat st;
	char usr[PATH_MAX];
	if (access(cfg->bwrap_bin, X_OK) != 0)
		return hs_error_set(err, HS_UNAVAILABLE, "bwrap %s: %s", cfg->bwrap_bin,
				    strerror(errno));
	if ((rc = hs_sandbox__identity(cfg, &h, err)) != HS_OK)
		return rc;
	if (cfg->rootfs_dir != NULL && cfg->rootfs_dir[0] != '\0') {
		snprintf(usr, sizeof(usr), "%s/usr", cfg->rootfs_dir);
		if (cfg->rootfs_dir[0] != '/' || stat(usr, &st) != 0 || !S_ISDIR(st.st_mode))
			return hs_error_set(err, HS_UNAVAILABLE,
					    "sandbox-rootfs %s: not an absolute directory with usr/",
					    cfg->rootfs_dir);
	}
	return run_probe(cfg, &h, err);
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
