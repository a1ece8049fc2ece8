/* Internal to the bwrap driver: bwrap_driver.c (the view, the driver ops)
 * and bwrap_launch.c (leader, privilege drop, exec report). */
#ifndef HS_SANDBOX_BWRAP_H
#define HS_SANDBOX_BWRAP_H

#include "driver.h"

/* Descriptors inside the bwrap process (bwrap_launch.c's top comment). */
#define HS_BW_FD_ARGS 3
#define HS_BW_FD_SECCOMP 4
#define HS_BW_FD_REPORT 5
#define HS_BW_FD_WS 6
#define HS_BW_FD_ROOTFS 7
#define HS_BW_FD_INIT 8
#define HS_BW_FD_EXEC 9 /* harness-sandbox-init's exec socket (listening) */

/* Where the portal attaches the bind sources, in the bwrap process's own
 * mount namespace (never the host's). */
#define HS_BW_PORTAL "/tmp/hs"
/* Where harness-sandbox-init appears inside the sandbox. */
#define HS_BW_INIT_PATH "/run/harness/init"
/* The exec socket's name in the sandbox's runtime dir (sandbox_init.c). */
#define HS_BW_EXEC_SOCK "exec.sock"

/* Everything the leader and its child need, prepared before fork (they
 * cannot allocate). Descriptors are harnessd's; -1 = none. */
typedef struct hs_sandbox__launch {
	const char *bwrap_bin;
	char **argv;            /* bwrap's argv */
	char **envp;            /* bwrap's environment: fixed, PATH only */
	int args_fd, seccomp_fd, report_fd, ws_fd, rootfs_fd, init_fd, exec_fd;
	int go_fd;              /* the leader waits for one byte here */
	int log_fd;             /* sandbox.log, append */
	size_t log_max;
	bool portal, switch_uid;
	uid_t uid;
	gid_t gid;
} hs_sandbox__launch;

/* Fork the leader (which never returns); -1 with errno on failure. */
pid_t hs_sandbox__bw_fork_leader(const hs_sandbox__launch *l);

/* Wait up to ms for the exec report on the socket `report`: HS_OK once the
 * entrypoint was executed; HS_INVALID "entrypoint[0] ...: <why>" when it
 * could not be (missing, not executable); HS_UNAVAILABLE when bwrap failed
 * before the sandbox existed (its last log line); HS_TIMEOUT. */
int hs_sandbox__bw_wait_exec(int report, unsigned ms, const char *argv0, const char *log_path,
			     hs_error *err);

/* The exec socket of a sandbox: a listening SOCK_SEQPACKET socket bound at
 * <runtime_dir>/exec.sock (mode 0600, any stale one replaced), handed to
 * harness-sandbox-init; and a connection to it. Close-on-exec descriptors
 * in *out. Paths longer than a sockaddr_un holds go through a directory
 * descriptor (/proc/self/fd/N/exec.sock). */
int hs_sandbox__bw_exec_listen(const char *runtime_dir, int *out, hs_error *err);
int hs_sandbox__bw_exec_connect(const char *runtime_dir, int *out, hs_error *err);

#endif
