/* The firecracker driver: one Firecracker process per running sandbox,
 * launched through the jailer (or directly when no jailer is configured, for
 * development and for the test emulator), driven over its API socket.
 *
 * Paths. Direct: the socket is <runtime_dir>/fc.sock and every path given to
 * the API is a host path. Jailed: the jail is <chroot_base>/<exec>/<id>, the
 * VMM sees <jail>/root as "/", its socket is <jail>/root/run/firecracker.socket
 * and files it needs (kernel, the sandbox's rootfs copy, snapshot files) are
 * hard-linked (copied across filesystems) into the jail and chowned to the
 * jailer uid. The rootfs is copied per sandbox into <runtime_dir>/rootfs.ext4
 * (reflink when the filesystem can) since the guest writes it; a snapshot's
 * memory is only consistent with that same disk, which is why it lives in the
 * runtime dir across restores.
 *
 * The pid. Without --new-pid-ns the jailer execs firecracker, so the pid we
 * spawned is the VMM. With --new-pid-ns the jailer forks the VMM into a new
 * pid namespace, writes its pid (as seen from our namespace) to
 * <jail>/root/firecracker.pid and exits: we reap the jailer, read that file
 * and track the VMM by pid + /proc starttime (it is no longer our child, so
 * its exit status is unknown).
 *
 * Failure: whatever start/restore made (process, socket, jail) is removed
 * before the error returns. */
#include "driver.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <linux/fs.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fc_api.h"
#include "log.h"

/* The VMM and the jailer start with this environment, never harnessd's. */
static char fixed_path[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
static char *const fixed_env[] = { fixed_path, NULL };

static bool jailed(const hs_sandbox_config *cfg)
{
	return cfg->jailer_bin != NULL && cfg->jailer_bin[0] != '\0';
}

/* The jailer's identity: the configured one, else the sandbox account. */
static uid_t jail_uid(const hs_sandbox_config *cfg)
{
	return cfg->jailer_uid ? cfg->jailer_uid : cfg->host.uid;
}

static gid_t jail_gid(const hs_sandbox_config *cfg)
{
	return cfg->jailer_gid ? cfg->jailer_gid : cfg->host.gid;
}

static const char *exec_name(const hs_sandbox_config *cfg)
{
	const char *s = strrchr(cfg->firecracker_bin, '/');
	return s ? s + 1 : cfg->firecracker_bin;
}

/* Fill api_sock and chroot_dir from the config. */
static int derive_paths(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_error *err)
{
	int rc;
	if (jailed(cfg)) {
		rc = hs_sandbox__path(sb->chroot_dir, sizeof(sb->chroot_dir), err, "jail path",
				      "%s/%s/%s", cfg->chroot_base_dir, exec_name(cfg), sb->id);
		if (rc == HS_OK)
			rc = hs_sandbox__path(sb->api_sock, sizeof(sb->api_sock), err,
					      "API socket path", "%s/root/run/firecracker.socket",
					      sb->chroot_dir);
	} else {
		sb->chroot_dir[0] = '\0';
		rc = hs_sandbox__path(sb->api_sock, sizeof(sb->api_sock), err, "API socket path",
				      "%s/fc.sock", sb->runtime_dir);
	}
	if (rc == HS_OK && strlen(sb->api_sock) > HS_FC_SOCK_MAX)
		rc = hs_error_set(err, HS_INVALID,
				  "API socket path %s is %zu bytes; Unix sockets allow %d",
				  sb->api_sock, strlen(sb->api_sock), HS_FC_SOCK_MAX);
	return rc;
}

int hs_sandbox__fc_argv(const hs_sandbox_config *cfg, const hs_sandbox__rec *sb, char ***out,
			hs_error *err)
{
	hs_sandbox__argv a = { 0 };
	if (jailed(cfg)) {
		hs_sandbox__argv_add(&a, cfg->jailer_bin);
		hs_sandbox__argv_add(&a, "--id");
		hs_sandbox__argv_add(&a, sb->id);
		hs_sandbox__argv_add(&a, "--exec-file");
		hs_sandbox__argv_add(&a, cfg->firecracker_bin);
		hs_sandbox__argv_add(&a, "--uid");
		hs_sandbox__argv_addf(&a, "%u", (unsigned)jail_uid(cfg));
		hs_sandbox__argv_add(&a, "--gid");
		hs_sandbox__argv_addf(&a, "%u", (unsigned)jail_gid(cfg));
		hs_sandbox__argv_add(&a, "--cgroup-version");
		hs_sandbox__argv_addf(&a, "%d", cfg->cgroup_version ? cfg->cgroup_version : 2);
		for (const char *const *c = cfg->jailer_cgroups; c != NULL && *c != NULL; c++) {
			hs_sandbox__argv_add(&a, "--cgroup");
			hs_sandbox__argv_add(&a, *c);
		}
		hs_sandbox__argv_add(&a, "--chroot-base-dir");
		hs_sandbox__argv_add(&a, cfg->chroot_base_dir);
		if (cfg->netns != NULL && cfg->netns[0] != '\0') {
			hs_sandbox__argv_add(&a, "--netns");
			hs_sandbox__argv_add(&a, cfg->netns);
		}
		if (cfg->jailer_new_pid_ns)
			hs_sandbox__argv_add(&a, "--new-pid-ns");
		hs_sandbox__argv_add(&a, "--");
		hs_sandbox__argv_add(&a, "--api-sock");
		hs_sandbox__argv_add(&a, "/run/firecracker.socket");
	} else {
		hs_sandbox__argv_add(&a, cfg->firecracker_bin);
		hs_sandbox__argv_add(&a, "--api-sock");
		hs_sandbox__argv_add(&a, sb->api_sock);
		hs_sandbox__argv_add(&a, "--id");
		hs_sandbox__argv_add(&a, sb->id);
	}
	if (a.oom) {
		hs_sandbox__argv_free(a.v);
		return hs_error_set(err, HS_INTERNAL, "out of memory building argv");
	}
	*out = a.v;
	return HS_OK;
}

/* The path the VMM sees for a host path inside the jail root. */
static const char *guest_path(const hs_sandbox__rec *sb, const char *host)
{
	size_t n = strlen(sb->chroot_dir);
	if (n > 0 && strncmp(host, sb->chroot_dir, n) == 0 && strncmp(host + n, "/root/", 6) == 0)
		return host + n + 5;
	return host;
}

/* Make `name` available to the VMM: in the jail, a link under root/ owned by
 * the jailer uid; directly, the host path itself. `out` gets the host path. */
static int expose(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, const char *host,
		  const char *name, char *out, size_t cap, hs_error *err)
{
	if (!jailed(cfg))
		return hs_sandbox__path(out, cap, err, "path", "%s", host);
	int rc = hs_sandbox__path(out, cap, err, "jail path", "%s/root/%s", sb->chroot_dir, name);
	if (rc != HS_OK)
		return rc;
	unlink(out);
	rc = hs_sandbox__link_or_copy(host, out, err);
	if (rc == HS_OK && chown(out, jail_uid(cfg), jail_gid(cfg)) != 0)
		rc = hs_error_set(err, HS_INTERNAL, "chown %s: %s", out, strerror(errno));
	return rc;
}

static int make_file(const char *path, const hs_sandbox_config *cfg, hs_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return hs_error_set(err, HS_INTERNAL, "create %s: %s", path, strerror(errno));
	if (jailed(cfg) && fchown(fd, jail_uid(cfg), jail_gid(cfg)) != 0) {
		close(fd);
		return hs_error_set(err, HS_INTERNAL, "chown %s: %s", path, strerror(errno));
	}
	close(fd);
	return HS_OK;
}

static int api(hs_sandbox__rec *sb, const char *method, const char *path, json_t *body,
	       unsigned timeout_ms, hs_error *err)
{
	char *text = NULL;
	if (body != NULL) {
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		if (text == NULL)
			return hs_error_set(err, HS_INTERNAL, "cannot encode %s body", path);
	}
	int rc = hs_fc_api_call(sb->api_sock, method, path, text, timeout_ms, NULL, err);
	free(text);
	return rc;
}

static bool sock_ready(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		close(fd);
		return false;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static int read_pid_file(const char *path, pid_t *out)
{
	char buf[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return HS_NOT_FOUND;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return HS_NOT_FOUND;
	buf[n] = '\0';
	char *end;
	long v = strtol(buf, &end, 10);
	if (v <= 0 || end == buf)
		return HS_NOT_FOUND;
	*out = (pid_t)v;
	return HS_OK;
}

static int fc_stop(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_error *err);

/* Spawn the VMM (via the jailer or not) and wait for its API socket. */
static int launch(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		  hs_error *err)
{
	int rc;
	char **argv = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_init = false, attr_init = false;
	hs_sandbox__exit ex;

	if ((rc = derive_paths(cfg, sb, err)) != HS_OK)
		return rc;
	unlink(sb->api_sock);
	if ((rc = hs_sandbox__fc_argv(cfg, sb, &argv, err)) != HS_OK)
		goto done;
	posix_spawn_file_actions_init(&fa);
	fa_init = true;
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, sb->log_path, O_WRONLY | O_CREAT | O_APPEND,
					 0640);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawnattr_init(&attr);
	attr_init = true;
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
	pid_t pid;
	int e = posix_spawn(&pid, argv[0], &fa, &attr, argv, fixed_env);
	if (e != 0) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "spawn %s: %s", argv[0], strerror(e));
		goto done;
	}
	sb->pid = pid;
	sb->is_child = true;
	hs_sandbox__proc_starttime(pid, &sb->pid_start_time);
	sb->pidfd = hs_sandbox__pidfd_open(pid);

	unsigned wait_ms = hs_sandbox__bound(cfg->socket_wait_ms, timeout_ms);
	int64_t until = hs_clock_mono_ms() + wait_ms;
	if (jailed(cfg) && cfg->jailer_new_pid_ns) {
		/* The jailer forks the VMM and exits: reap it, then track the VMM. */
		char pidfile[PATH_MAX];
		pid_t vmm = 0;
		rc = hs_sandbox__path(pidfile, sizeof(pidfile), err, "pid file", "%s/root/%s.pid",
				      sb->chroot_dir, exec_name(cfg));
		if (rc != HS_OK)
			goto done;
		while (read_pid_file(pidfile, &vmm) != HS_OK) {
			hs_sandbox__proc_poll(sb, &ex);
			if ((ex.exited && ex.code != 0) || hs_clock_mono_ms() >= until) {
				rc = hs_error_set(err, HS_UNAVAILABLE,
						  "jailer for %s wrote no pid file %s", sb->id,
						  pidfile);
				goto done;
			}
			hs_sandbox__sleep_ms(5);
		}
		hs_sandbox__proc_wait(sb, 1000, &ex);
		hs_sandbox__proc_forget(sb);
		sb->pid = vmm;
		sb->pidfd = hs_sandbox__pidfd_open(vmm);
		if (hs_sandbox__proc_starttime(vmm, &sb->pid_start_time) != HS_OK) {
			rc = hs_error_set(err, HS_UNAVAILABLE, "firecracker %d for %s is gone",
					  (int)vmm, sb->id);
			goto done;
		}
	}
	unsigned step = 1;
	while (!sock_ready(sb->api_sock)) {
		hs_sandbox__proc_poll(sb, &ex);
		if (ex.exited) {
			hs_sandbox__proc_forget(sb);
			rc = hs_error_set(err, HS_UNAVAILABLE,
					  "firecracker for %s exited (%s %d) before its API socket "
					  "appeared; see %s",
					  sb->id, ex.signaled ? "signal" : "code", ex.code,
					  sb->log_path);
			goto done;
		}
		if (hs_clock_mono_ms() >= until) {
			rc = hs_error_set(err, HS_UNAVAILABLE,
					  "firecracker API socket %s did not appear within %u ms",
					  sb->api_sock, wait_ms);
			goto done;
		}
		hs_sandbox__sleep_ms(step);
		if (step < 4) /* 1, 2, 4, 4, ...: real Firecracker is up in ~10 ms */
			step *= 2;
	}
	rc = HS_OK;
done:
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_init)
		posix_spawnattr_destroy(&attr);
	hs_sandbox__argv_free(argv);
	if (rc != HS_OK)
		fc_stop(cfg, sb, NULL);
	return rc;
}

/* Jail skeleton (only run/ for the socket), then launch. Unjailed, the
 * logger and metrics files live in the runtime dir and are configured (before
 * boot or load); jailed, nothing but the kernel, the rootfs copy and the
 * socket goes into the chroot, so the VMM's log goes to its stderr, which is
 * sandbox.log. */
static int prepare_and_launch(const hs_sandbox_config *cfg, hs_sandbox__rec *sb,
			      unsigned timeout_ms, char *log_host, char *metrics_host,
			      hs_error *err)
{
	int rc;
	char path[PATH_MAX];
	if ((rc = derive_paths(cfg, sb, err)) != HS_OK)
		return rc;
	if (jailed(cfg)) {
		hs_sandbox__rmtree(sb->chroot_dir, NULL); /* a stale jail from a crash */
		if ((rc = hs_sandbox__path(path, sizeof(path), err, "jail path", "%s/root/run",
					   sb->chroot_dir)) != HS_OK ||
		    (rc = hs_sandbox__mkdirs(path, 0750, err)) != HS_OK)
			goto fail;
		if (chown(path, jail_uid(cfg), jail_gid(cfg)) != 0) {
			rc = hs_error_set(err, HS_INTERNAL, "chown %s: %s", path, strerror(errno));
			goto fail;
		}
		log_host[0] = metrics_host[0] = '\0';
		return launch(cfg, sb, timeout_ms, err);
	}
	hs_sandbox__path(log_host, PATH_MAX, NULL, "", "%s/firecracker.log", sb->runtime_dir);
	hs_sandbox__path(metrics_host, PATH_MAX, NULL, "", "%s/metrics.json", sb->runtime_dir);
	if ((rc = make_file(log_host, cfg, err)) != HS_OK ||
	    (rc = make_file(metrics_host, cfg, err)) != HS_OK)
		goto fail;
	if ((rc = launch(cfg, sb, timeout_ms, err)) != HS_OK)
		goto fail;
	unsigned t = hs_sandbox__bound(cfg->api_timeout_ms, timeout_ms);
	rc = api(sb, "PUT", "/logger",
		 json_pack("{s:s, s:s, s:b, s:b}", "log_path", guest_path(sb, log_host), "level",
			   "Info", "show_level", 1, "show_log_origin", 0),
		 t, err);
	if (rc == HS_OK)
		rc = api(sb, "PUT", "/metrics",
			 json_pack("{s:s}", "metrics_path", guest_path(sb, metrics_host)), t, err);
	if (rc != HS_OK)
		goto fail;
	return HS_OK;
fail:
	fc_stop(cfg, sb, NULL);
	return rc;
}

static int copy_rootfs(const char *from, const char *to, hs_error *err)
{
	struct stat st;
	if (stat(to, &st) == 0)
		return HS_OK; /* the sandbox's disk from an earlier run */
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return hs_error_set(err, HS_INVALID, "rootfs_path %s: %s", from, strerror(errno));
	int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return hs_error_set(err, HS_INTERNAL, "create %s: %s", to, strerror(errno));
	}
	int cloned = ioctl(out, FICLONE, in);
	close(in);
	close(out);
	if (cloned == 0)
		return HS_OK;
	unlink(to);
	return hs_sandbox__copy_file(from, to, err);
}

static int fc_validate(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_error *err)
{
	if (sb->kernel_image_path == NULL || sb->kernel_image_path[0] == '\0')
		return hs_error_set(err, HS_INVALID, "kernel_image_path: required");
	if (sb->rootfs_path == NULL || sb->rootfs_path[0] == '\0')
		return hs_error_set(err, HS_INVALID, "rootfs_path: required");
	if (access(sb->kernel_image_path, R_OK) != 0)
		return hs_error_set(err, HS_INVALID, "kernel_image_path %s: %s",
				    sb->kernel_image_path, strerror(errno));
	if (access(sb->rootfs_path, R_OK) != 0)
		return hs_error_set(err, HS_INVALID, "rootfs_path %s: %s", sb->rootfs_path,
				    strerror(errno));
	if (jailed(cfg) && (jail_uid(cfg) == 0 || jail_gid(cfg) == 0))
		return hs_error_set(err, HS_UNAVAILABLE,
				    "jailer uid/gid must not be 0 (no sandbox account: set "
				    "--sandbox-uid/--sandbox-gid or --jailer-uid/--jailer-gid)");
	return derive_paths(cfg, sb, err);
}

static int fc_start(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		    hs_error *err)
{
	int rc;
	char log_host[PATH_MAX], metrics_host[PATH_MAX], disk[PATH_MAX];
	char kernel[PATH_MAX], rootfs[PATH_MAX];
	unsigned t = hs_sandbox__bound(cfg->api_timeout_ms, timeout_ms);

	if ((rc = hs_sandbox__path(disk, sizeof(disk), err, "rootfs path", "%s/rootfs.ext4",
				   sb->runtime_dir)) != HS_OK ||
	    (rc = copy_rootfs(sb->rootfs_path, disk, err)) != HS_OK)
		return rc;
	if ((rc = prepare_and_launch(cfg, sb, timeout_ms, log_host, metrics_host, err)) != HS_OK)
		return rc;
	if ((rc = expose(cfg, sb, sb->kernel_image_path, "vmlinux", kernel, sizeof(kernel),
			 err)) != HS_OK ||
	    (rc = expose(cfg, sb, disk, "rootfs.ext4", rootfs, sizeof(rootfs), err)) != HS_OK)
		goto fail;
	json_t *boot = json_pack("{s:s}", "kernel_image_path", guest_path(sb, kernel));
	const char *args = sb->boot_args && sb->boot_args[0] ? sb->boot_args : cfg->boot_args;
	if (boot != NULL && args != NULL && args[0] != '\0')
		json_object_set_new(boot, "boot_args", json_string(args));
	if ((rc = api(sb, "PUT", "/boot-source", boot, t, err)) != HS_OK)
		goto fail;
	rc = api(sb, "PUT", "/drives/rootfs",
		 json_pack("{s:s, s:s, s:b, s:b}", "drive_id", "rootfs", "path_on_host",
			   guest_path(sb, rootfs), "is_root_device", 1, "is_read_only", 0),
		 t, err);
	if (rc != HS_OK)
		goto fail;
	rc = api(sb, "PUT", "/machine-config",
		 json_pack("{s:i, s:i, s:b, s:b}", "vcpu_count", (int)sb->vcpu_count,
			   "mem_size_mib", (int)sb->mem_size_mib, "smt", 0, "track_dirty_pages",
			   1),
		 t, err);
	if (rc != HS_OK)
		goto fail;
	if (sb->tap_dev != NULL && sb->tap_dev[0] != '\0') {
		json_t *nic = json_pack("{s:s, s:s}", "iface_id", "eth0", "host_dev_name",
					sb->tap_dev);
		if (nic != NULL && sb->guest_mac != NULL && sb->guest_mac[0] != '\0')
			json_object_set_new(nic, "guest_mac", json_string(sb->guest_mac));
		if ((rc = api(sb, "PUT", "/network-interfaces/eth0", nic, t, err)) != HS_OK)
			goto fail;
	}
	rc = api(sb, "PUT", "/actions", json_pack("{s:s}", "action_type", "InstanceStart"), t,
		 err);
	if (rc != HS_OK)
		goto fail;
	return HS_OK;
fail:
	fc_stop(cfg, sb, NULL);
	return rc;
}

static int set_vm_state(hs_sandbox__rec *sb, const char *state, unsigned t, hs_error *err)
{
	return api(sb, "PATCH", "/vm", json_pack("{s:s}", "state", state), t, err);
}

static int fc_pause(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		    hs_error *err)
{
	return set_vm_state(sb, "Paused", hs_sandbox__bound(cfg->api_timeout_ms, timeout_ms), err);
}

static int fc_resume(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		     hs_error *err)
{
	return set_vm_state(sb, "Resumed", hs_sandbox__bound(cfg->api_timeout_ms, timeout_ms),
			    err);
}

/* Move a file the VMM wrote inside the jail to its place in the runtime dir. */
static int move_out(const char *from, const char *to, hs_error *err)
{
	if (rename(from, to) == 0)
		return HS_OK;
	int rc = hs_sandbox__link_or_copy(from, to, err);
	unlink(from);
	return rc;
}

static int fc_snapshot(const hs_sandbox_config *cfg, hs_sandbox__rec *sb,
		       hs_sandbox_snapshot_type type, const char *snapshot_path,
		       const char *mem_path, unsigned timeout_ms, hs_error *err)
{
	int rc;
	char vs[PATH_MAX], mem[PATH_MAX];
	/* Writing guest memory takes longer than a config call: allow 10x. */
	unsigned t = hs_sandbox__bound(cfg->api_timeout_ms * 10, timeout_ms);
	if (jailed(cfg)) {
		rc = hs_sandbox__path(vs, sizeof(vs), err, "jail path", "%s/root/snapshot.vmstate",
				      sb->chroot_dir);
		if (rc == HS_OK)
			rc = hs_sandbox__path(mem, sizeof(mem), err, "jail path",
					      "%s/root/snapshot.mem", sb->chroot_dir);
	} else {
		rc = hs_sandbox__path(vs, sizeof(vs), err, "snapshot path", "%s", snapshot_path);
		if (rc == HS_OK)
			rc = hs_sandbox__path(mem, sizeof(mem), err, "mem path", "%s", mem_path);
	}
	if (rc != HS_OK)
		return rc;
	rc = api(sb, "PUT", "/snapshot/create",
		 json_pack("{s:s, s:s, s:s}", "snapshot_type",
			   type == HS_SNAPSHOT_DIFF ? "Diff" : "Full", "snapshot_path",
			   guest_path(sb, vs), "mem_file_path", guest_path(sb, mem)),
		 t, err);
	if (rc == HS_OK && jailed(cfg)) {
		rc = move_out(vs, snapshot_path, err);
		if (rc == HS_OK)
			rc = move_out(mem, mem_path, err);
	}
	if (jailed(cfg)) { /* the jail holds kernel, rootfs and socket only */
		unlink(vs);
		unlink(mem);
	}
	return rc;
}

static int fc_restore(const hs_sandbox_config *cfg, hs_sandbox__rec *sb,
		      const char *snapshot_path, const char *mem_path, bool resume,
		      unsigned timeout_ms, hs_error *err)
{
	int rc;
	char log_host[PATH_MAX], metrics_host[PATH_MAX], vs[PATH_MAX], mem[PATH_MAX];
	char disk[PATH_MAX], kernel[PATH_MAX], rootfs[PATH_MAX];
	char *info = NULL;
	json_t *j = NULL;
	unsigned t = hs_sandbox__bound(cfg->api_timeout_ms * 10, timeout_ms);

	if ((rc = fc_stop(cfg, sb, err)) != HS_OK)
		return rc;
	if ((rc = prepare_and_launch(cfg, sb, timeout_ms, log_host, metrics_host, err)) != HS_OK)
		return rc;
	hs_sandbox__path(disk, sizeof(disk), NULL, "", "%s/rootfs.ext4", sb->runtime_dir);
	/* The snapshot refers to the kernel and disk by the paths used at boot. */
	if (jailed(cfg) &&
	    ((rc = expose(cfg, sb, sb->kernel_image_path, "vmlinux", kernel, sizeof(kernel),
			  err)) != HS_OK ||
	     (rc = expose(cfg, sb, disk, "rootfs.ext4", rootfs, sizeof(rootfs), err)) != HS_OK))
		goto fail;
	if ((rc = expose(cfg, sb, snapshot_path, "snapshot.vmstate", vs, sizeof(vs), err)) !=
		    HS_OK ||
	    (rc = expose(cfg, sb, mem_path, "snapshot.mem", mem, sizeof(mem), err)) != HS_OK)
		goto fail;
	json_t *body = json_pack("{s:s, s:{s:s, s:s}, s:b, s:b}", "snapshot_path",
				 guest_path(sb, vs), "mem_backend", "backend_type", "File",
				 "backend_path", guest_path(sb, mem), "track_dirty_pages", 1,
				 "resume_vm", resume ? 1 : 0);
	if (body != NULL && sb->tap_dev != NULL && sb->tap_dev[0] != '\0')
		json_object_set_new(body, "network_overrides",
				    json_pack("[{s:s, s:s}]", "iface_id", "eth0", "host_dev_name",
					      sb->tap_dev));
	/* A failed load ends the Firecracker process; fc_stop reaps it. */
	if ((rc = api(sb, "PUT", "/snapshot/load", body, t, err)) != HS_OK)
		goto fail;
	rc = hs_fc_api_call(sb->api_sock, "GET", "/", NULL, t, &info, err);
	if (rc != HS_OK)
		goto fail;
	j = json_loads(info, 0, NULL);
	const char *state = j ? json_string_value(json_object_get(j, "state")) : NULL;
	const char *want = resume ? "Running" : "Paused";
	if (state == NULL || strcmp(state, want) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "firecracker for %s is %s after load, not %s",
				  sb->id, state ? state : "(unknown)", want);
		goto fail;
	}
	json_decref(j);
	free(info);
	if (jailed(cfg)) { /* loaded (the VMM keeps what it mapped): out of the jail */
		unlink(vs);
		unlink(mem);
	}
	return HS_OK;
fail:
	json_decref(j);
	free(info);
	fc_stop(cfg, sb, NULL);
	return rc;
}

static int fc_stop(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_error *err)
{
	if (sb->pid > 0 && !hs_sandbox__proc_terminate(sb, sb->is_child, cfg->stop_grace_ms))
		return hs_error_set(err, HS_INTERNAL, "firecracker %d for %s did not die",
				    (int)sb->pid, sb->id);
	if (sb->api_sock[0] != '\0')
		unlink(sb->api_sock);
	if (sb->chroot_dir[0] != '\0')
		return hs_sandbox__rmtree(sb->chroot_dir, err);
	return HS_OK;
}

static void fc_poll(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_sandbox__exit *out)
{
	(void)cfg;
	hs_sandbox__proc_poll(sb, out);
}

static void fc_adopt(const hs_sandbox_config *cfg, hs_sandbox__rec *sb)
{
	derive_paths(cfg, sb, NULL);
}

const hs_sandbox__driver hs_sandbox__fc_driver = {
	.name = "firecracker",
	.validate = fc_validate,
	.start = fc_start,
	.pause = fc_pause,
	.resume = fc_resume,
	.snapshot = fc_snapshot,
	.restore = fc_restore,
	.stop = fc_stop,
	.poll = fc_poll,
	.adopt = fc_adopt,
};
