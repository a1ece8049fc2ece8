/* Internal to server/sandbox: the record the manager keeps per sandbox, the
 * driver vtable, and process/file helpers shared by the drivers. Drivers are
 * called with the sandbox's lock held and never touch the store or the
 * registry; they only change the process fields of the record. */
#ifndef HS_SANDBOX_DRIVER_H
#define HS_SANDBOX_DRIVER_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "clock.h"
#include "error.h"
#include "ids.h"
#include "sandbox.h"

#define HS_SANDBOX_ID_MAX HS_ID_MAX /* resource names: common/ids.h */

enum { HS_CG_V1_PIDS, HS_CG_V1_MEMORY, HS_CG_V1_CPU, HS_CG_V1_N };
enum { HS_LIMIT_MEMORY = 1u << 0, HS_LIMIT_CPU = 1u << 1, HS_LIMIT_PIDS = 1u << 2 };

/* What a driver needs to know about one sandbox. The manager fills the spec
 * part (persisted as config_json) and derives the paths; the driver owns the
 * process part. */
typedef struct hs_sandbox__rec {
	char id[HS_SANDBOX_ID_MAX + 1];
	char runtime_dir[PATH_MAX]; /* <runtime_root>/<id>; snapshots under it */
	char log_path[PATH_MAX];    /* <runtime_dir>/sandbox.log */
	char workspace[PATH_MAX];   /* bwrap: absolute host path of the workspace (what the
				     * sandbox sees at the same path); "" = none */
	char workspace_name[PATH_MAX]; /* its canonical name below the workspace root
				     * ("<task_id>[/sub]"), re-resolved at every start */
	char task_id[128];          /* "" = none (HARNESS_TASK_ID) */
	/* spec */
	unsigned vcpu_count, mem_size_mib;
	char *kernel_image_path, *rootfs_path, *boot_args;
	char **entrypoint; /* NULL-terminated */
	char **env;        /* NULL-terminated "NAME=value" (set inside the sandbox only) */
	bool network;
	char *tap_dev, *guest_mac;
	/* process */
	pid_t pid;               /* 0 = none */
	uint64_t pid_start_time; /* /proc/<pid>/stat field 22 */
	bool is_child;           /* waitpid() works; false after re-adoption */
	char api_sock[PATH_MAX]; /* firecracker: host path of the API socket */
	char chroot_dir[PATH_MAX]; /* firecracker+jailer: <base>/<exec>/<id> */
	int pidfd;               /* pidfd_open(pid) for exit notification, -1 = none */
	char cgroup_dir[PATH_MAX]; /* bwrap: v2 cgroup (freezer, kill), "" = signals */
	char cgroup_v1[HS_CG_V1_N][PATH_MAX]; /* bwrap: v1 pids/memory/cpu, "" = none */
	unsigned limits;         /* HS_LIMIT_* enforced for the current/last run */
	unsigned pids_max;       /* pids.max applied (HS_LIMIT_PIDS), else 0 */
} hs_sandbox__rec;

/* Exit of a sandbox's process, from poll. */
typedef struct hs_sandbox__exit {
	bool exited;
	bool known;   /* exit status known (we reaped it) */
	bool signaled;
	int code;     /* exit code, or signal number if signaled */
} hs_sandbox__exit;

typedef struct hs_sandbox__driver {
	const char *name;
	/* Validate the spec and check files (HS_INVALID naming the field). */
	int (*validate)(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_error *err);
	/* Launch and boot. On failure nothing it made is left. */
	int (*start)(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		     hs_error *err);
	int (*pause)(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		     hs_error *err);
	int (*resume)(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, unsigned timeout_ms,
		      hs_error *err);
	/* Write the state and memory files at these host paths. */
	int (*snapshot)(const hs_sandbox_config *cfg, hs_sandbox__rec *sb,
			hs_sandbox_snapshot_type type, const char *snapshot_path,
			const char *mem_path, unsigned timeout_ms, hs_error *err);
	/* Stop any current process, start a fresh one and load the snapshot. */
	int (*restore)(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, const char *snapshot_path,
		       const char *mem_path, bool resume, unsigned timeout_ms, hs_error *err);
	/* Kill everything, reap, remove the socket/chroot/cgroup (not runtime_dir:
	 * the manager removes it). Idempotent; safe without a process. */
	int (*stop)(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_error *err);
	/* Non-blocking: has the process ended? */
	void (*poll)(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, hs_sandbox__exit *out);
	/* After a restart: recompute derived paths for an adopted process. */
	void (*adopt)(const hs_sandbox_config *cfg, hs_sandbox__rec *sb);
} hs_sandbox__driver;

extern const hs_sandbox__driver hs_sandbox__fc_driver;
/* "firecracker" or "bwrap"; NULL otherwise. */
const hs_sandbox__driver *hs_sandbox__driver_by_name(const char *name);
extern const hs_sandbox__driver hs_sandbox__bwrap_driver;

/* Firecracker's command line for this sandbox: the jailer's flags, `--`,
 * then firecracker's, or firecracker alone when cfg->jailer_bin is empty.
 * *out is NULL-terminated and malloc'd: hs_sandbox__argv_free(). */
int hs_sandbox__fc_argv(const hs_sandbox_config *cfg, const hs_sandbox__rec *sb, char ***out,
			hs_error *err);
/* The bwrap command line: `bwrap --args 3 -- /run/harness/init 5 9 <entrypoint>`. */
int hs_sandbox__bwrap_argv(const hs_sandbox_config *cfg, const hs_sandbox__rec *sb, char ***out,
			   hs_error *err);
/* bwrap's options (the sandbox's view, namespaces, environment), as passed
 * through --args; NULL-terminated, hs_sandbox__argv_free(). */
int hs_sandbox__bwrap_options(const hs_sandbox_config *cfg, const hs_sandbox__rec *sb,
			      char ***out, hs_error *err);
/* The bwrap driver's probe (hs_sandbox_driver_probe). */
int hs_sandbox__bwrap_probe(const hs_sandbox_config *cfg, hs_error *err);
void hs_sandbox__argv_free(char **argv);

/* A growing NULL-terminated argv; oom is sticky (check it once at the end). */
typedef struct hs_sandbox__argv {
	char **v;
	size_t n, cap;
	bool oom;
} hs_sandbox__argv;
void hs_sandbox__argv_add(hs_sandbox__argv *a, const char *s);
void hs_sandbox__argv_addf(hs_sandbox__argv *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- identity.c, seccomp.c, cgroup.c, workspace.c ------------------------- */

/* Resolve the sandbox account and what harnessd may do (hs_sandbox_host);
 * HS_UNAVAILABLE with the reason when the bwrap driver cannot run so. */
int hs_sandbox__identity(const hs_sandbox_config *cfg, hs_sandbox_host *out, hs_error *err);
/* Read <runtime_root>/instance-id, creating it (16 random hex) the first time. */
int hs_sandbox__instance_id(const char *runtime_root, char out[17], hs_error *err);
/* A memfd (close-on-exec, at offset 0) holding the bwrap sandbox's seccomp
 * BPF program. */
int hs_sandbox__seccomp_fd(int *fd_out, hs_error *err);

/* Fresh cgroups for a run (stale ones killed first), the limits applied
 * (sb->limits), pid moved in. Best effort: logs what is unusable. */
void hs_sandbox__cg_create(const hs_sandbox_config *cfg, hs_sandbox__rec *sb, pid_t pid);
int hs_sandbox__cg_freeze(hs_sandbox__rec *sb, bool frozen, unsigned wait_ms, hs_error *err);
/* Thaw and SIGKILL everything in the sandbox's cgroups. */
void hs_sandbox__cg_kill(hs_sandbox__rec *sb);
/* Wait for them to empty and rmdir them (and the instance dirs when last). */
void hs_sandbox__cg_remove(hs_sandbox__rec *sb);
/* After a restart: the sandbox's cgroups, where they exist. */
void hs_sandbox__cg_adopt(const hs_sandbox_config *cfg, hs_sandbox__rec *sb);

/* Hand the workspace tree beneath dirfd to uid:gid: directories, symbolic
 * links and singly-linked regular files owned by harnessd's euid; never
 * following a link, at most 64 levels deep. */
int hs_sandbox__chown_tree(int dirfd, uid_t uid, gid_t gid, hs_error *err);

/* ---- helpers (proc.c) ---------------------------------------------------- */

/* "<prefix>" + 16 random hex digits. */
void hs_sandbox__gen_id(const char *prefix, char *out, size_t cap);
/* pidfd_open(pid), -1 if the kernel or the process says no. */
int hs_sandbox__pidfd_open(pid_t pid);
/* Forget the process: close the pidfd, zero pid/start time. */
void hs_sandbox__proc_forget(hs_sandbox__rec *sb);

void hs_sandbox__sleep_ms(unsigned ms);
/* min(a, b) where 0 means "no bound" for b. */
unsigned hs_sandbox__bound(unsigned a, unsigned b);

/* Field 22 of /proc/<pid>/stat; HS_NOT_FOUND if no such process. */
int hs_sandbox__proc_starttime(pid_t pid, uint64_t *out);
/* pid exists, is not a zombie, and has this starttime. */
bool hs_sandbox__proc_alive(pid_t pid, uint64_t starttime);
/* Non-blocking exit check: waitpid(WNOHANG) for children, else liveness. */
void hs_sandbox__proc_poll(hs_sandbox__rec *sb, hs_sandbox__exit *out);
/* Wait up to ms for the process to end (reaping it if it is a child). */
bool hs_sandbox__proc_wait(hs_sandbox__rec *sb, unsigned ms, hs_sandbox__exit *out);
/* SIGTERM (to -pid if group), wait grace_ms, SIGKILL, wait, reap. Clears
 * sb->pid. Returns true if the process is gone. */
bool hs_sandbox__proc_terminate(hs_sandbox__rec *sb, bool group, unsigned grace_ms);

int hs_sandbox__mkdirs(const char *path, mode_t mode, hs_error *err);
/* rm -rf without following symlinks; missing is OK. */
int hs_sandbox__rmtree(const char *path, hs_error *err);
/* A full copy (mode 0600); a partial copy is removed. */
int hs_sandbox__copy_file(const char *from, const char *to, hs_error *err);
/* Hard link, or copy when linking fails (EXDEV, EPERM). */
int hs_sandbox__link_or_copy(const char *from, const char *to, hs_error *err);
/* snprintf into buf; HS_INVALID "<what> too long" if it does not fit. */
int hs_sandbox__path(char *buf, size_t cap, hs_error *err, const char *what, const char *fmt,
		     ...) __attribute__((format(printf, 5, 6)));

#endif
