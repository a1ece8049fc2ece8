/* The seccomp filter of a bwrap sandbox, built with libseccomp and handed
 * to bwrap (--seccomp FD), which loads it right before it executes the
 * sandbox's first process.
 *
 * Anchored on Docker's default profile: the syscalls Docker refuses to an
 * unprivileged container are refused here with EPERM (kernel modules,
 * kexec, reboot, mount and the new mount API, namespaces (unshare, setns,
 * clone with CLONE_NEW*), ptrace and cross-process memory access, bpf,
 * perf, keyrings, userfaultfd, io_uring, clocks, swap, quotas, accounting,
 * handle-based opens, terminal injection (TIOCSTI/TIOCLINUX)). clone3 answers
 * ENOSYS so libc falls back to clone, whose flags a filter can see. Any
 * other architecture than the native one (i386 via int 0x80, x32) kills
 * the process. Everything else is allowed: the sandbox's other walls are
 * its mount view, its unprivileged uid and its namespaces. */
#include "driver.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *const denied[] = {
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
	"delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
	"get_kernel_syms", "get_mempolicy", "init_module", "io_uring_enter",
	"io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp", "kexec_file_load",
	"kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr",
	"move_mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
	"open_tree", "perf_event_open", "pidfd_getfd", "pivot_root", "process_madvise",
	"process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl",
	"quotactl_fd", "reboot", "request_key", "set_mempolicy", "setns", "settimeofday",
	"stime", "swapoff", "swapon", "sysfs", "_sysctl", "syslog", "umount", "umount2",
	"unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
};

static const unsigned long ns_flags[] = {
	CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
	CLONE_NEWNET,
};

static int add(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
	       const struct scmp_arg_cmp *cmp, hs_error *err)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR)
		return HS_OK; /* not a syscall of this architecture */
	int rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
	if (rc != 0)
		return hs_error_set(err, HS_INTERNAL, "seccomp rule for %s: %s", name,
				    strerror(-rc));
	return HS_OK;
}

int hs_sandbox__seccomp_fd(int *fd_out, hs_error *err)
{
	int rc = HS_OK, fd = -1;
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (ctx == NULL)
		return hs_error_set(err, HS_INTERNAL, "seccomp_init failed");
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0 ||
	    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "seccomp attributes");
		goto done;
	}
	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++)
		if ((rc = add(ctx, SCMP_ACT_ERRNO(EPERM), denied[i], 0, NULL, err)) != HS_OK)
			goto done;
	for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++) {
		struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]);
		if ((rc = add(ctx, SCMP_ACT_ERRNO(EPERM), "clone", 1, &c, err)) != HS_OK)
			goto done;
	}
	if ((rc = add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err)) != HS_OK)
		goto done;
	static const unsigned long tty_ioctls[] = { TIOCSTI, TIOCLINUX };
	for (size_t i = 0; i < 2; i++) {
		struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, tty_ioctls[i]);
		if ((rc = add(ctx, SCMP_ACT_ERRNO(EPERM), "ioctl", 1, &c, err)) != HS_OK)
			goto done;
	}
	fd = memfd_create("hs-seccomp", MFD_CLOEXEC);
	if (fd < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "memfd_create: %s", strerror(errno));
		goto done;
	}
	int e = seccomp_export_bpf(ctx, fd);
	if (e != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "seccomp_export_bpf: %s", strerror(-e));
		goto done;
	}
	if (lseek(fd, 0, SEEK_SET) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "lseek: %s", strerror(errno));
		goto done;
	}
	*fd_out = fd;
	fd = -1;
done:
	if (fd >= 0)
		close(fd);
	seccomp_release(ctx);
	return rc;
}
