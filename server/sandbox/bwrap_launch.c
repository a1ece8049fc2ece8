/* Starting a bwrap sandbox: the leader, the privilege drop, the exec report.
 *
 * Process tree:
 *   harnessd -> leader (fork, no exec, harnessd's uid)
 *            -> bwrap (fork; the sandbox uid from here on)
 *            -> bwrap's namespace init -> harness-sandbox-init = the entrypoint
 *
 * The leader calls setsid(), so the whole tree is one process group (-pid)
 * without a controlling terminal, pumps the tree's stdout+stderr from a pipe
 * into sandbox.log (at most log_max bytes, then drains; a note marks the
 * cut) and exits with bwrap's status (re-raising a fatal signal), so the
 * pid harnessd tracks carries the exit code. It is not tied to harnessd: a
 * sandbox survives a harnessd restart and is re-adopted. Leader and child
 * use async-signal-safe calls only (harnessd is multi-threaded); everything
 * that allocates is prepared before fork.
 *
 * The child, before it executes bwrap:
 *  - with the portal (harnessd has CAP_SYS_ADMIN), clones the bind sources
 *    (workspace, rootfs, init) as detached mounts from their descriptors
 *    (open_tree), enters a private mount namespace with a tmpfs on /tmp and
 *    attaches them at /tmp/hs/{ws,rootfs,init}: bwrap then binds paths no
 *    one else can change, and the sandbox account never needs to walk a
 *    host path (the data dir stays 0700). Without the portal, bwrap binds
 *    the workspace by descriptor (--bind-fd: it checks that what it mounted
 *    is what the descriptor holds) and the rest by path;
 *  - drops to the sandbox uid/gid (setgroups, setgid, setuid) and sets
 *    no_new_privs;
 *  - executes bwrap with a fixed environment (PATH only) and its options in
 *    a memfd (--args), so nothing of the caller's reaches the host side and
 *    the host's process list shows no sandbox environment.
 *
 * Descriptors in bwrap: 0 /dev/null, 1+2 the log pipe, 3 the options, 4 the
 * seccomp program, 5 the exec report socket, 6-8 the bind sources (portal:
 * closed before exec), 9 the exec socket (listening). bwrap consumes 3, 4
 * and 6; harness-sandbox-init keeps 9 for itself and starts the entrypoint
 * with nothing but 0-2.
 *
 * Exec report: harness-sandbox-init sends harnessd (over 5) the read end of
 * a pipe whose close-on-exec write end only it holds; end-of-file on it
 * means the entrypoint was executed, "E<errno>" that it could not be. An
 * end-of-file on 5 itself means bwrap died before the sandbox existed. */
#include "bwrap.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/mount.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

#define FD_GO 10
#define FD_LOG 11

static const char truncated_note[] = "\n[harness: output truncated at the log size limit]\n";

/* A failure in the child, before bwrap: a fixed message and errno (digits
 * by hand: snprintf is not async-signal-safe) into the log, then exit 126. */
static void die(const char *what)
{
	char num[16];
	int e = errno, i = (int)sizeof(num);
	num[--i] = '\n';
	do {
		num[--i] = (char)('0' + e % 10);
		e /= 10;
	} while (e > 0 && i > 0);
	static const char pre[] = "harness: cannot set up the sandbox: ";
	ssize_t r = write(2, pre, sizeof(pre) - 1);
	r = write(2, what, strlen(what));
	r = write(2, " failed, errno ", 15);
	r = write(2, num + i, sizeof(num) - (size_t)i);
	(void)r;
	_exit(126);
}

static int open_tree_clone(int fd)
{
	return (int)syscall(SYS_open_tree, fd, "", OPEN_TREE_CLONE | AT_EMPTY_PATH | OPEN_TREE_CLOEXEC);
}

static void attach(int tree, const char *at)
{
	if (syscall(SYS_move_mount, tree, "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) != 0)
		die("move_mount");
	close(tree);
}

/* The portal (see the top comment); fds 6-8 are consumed. */
static void portal(const hs_sandbox__launch *l)
{
	int ws = -1, rootfs = -1, init = -1;
	if (l->ws_fd >= 0 && (ws = open_tree_clone(HS_BW_FD_WS)) < 0)
		die("open_tree (workspace)");
	if (l->rootfs_fd >= 0 && (rootfs = open_tree_clone(HS_BW_FD_ROOTFS)) < 0)
		die("open_tree (rootfs)");
	if (l->init_fd >= 0 && (init = open_tree_clone(HS_BW_FD_INIT)) < 0)
		die("open_tree (init)");
	/* Only the slots that held a source: a clone may sit in an empty one. */
	if (l->ws_fd >= 0)
		close(HS_BW_FD_WS);
	if (l->rootfs_fd >= 0)
		close(HS_BW_FD_ROOTFS);
	if (l->init_fd >= 0)
		close(HS_BW_FD_INIT);
	if (unshare(CLONE_NEWNS) != 0)
		die("unshare");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		die("making mounts private");
	if (mount("hs-portal", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") != 0)
		die("mounting the portal");
	if (mkdir(HS_BW_PORTAL, 0755) != 0)
		die("mkdir portal");
	if (ws >= 0) {
		if (mkdir(HS_BW_PORTAL "/ws", 0755) != 0)
			die("mkdir portal/ws");
		attach(ws, HS_BW_PORTAL "/ws");
	}
	if (rootfs >= 0) {
		if (mkdir(HS_BW_PORTAL "/rootfs", 0755) != 0)
			die("mkdir portal/rootfs");
		attach(rootfs, HS_BW_PORTAL "/rootfs");
	}
	if (init >= 0) {
		int f = open(HS_BW_PORTAL "/init", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
		if (f < 0)
			die("creating portal/init");
		close(f);
		attach(init, HS_BW_PORTAL "/init");
	}
}

/* The bwrap process (the leader's child). */
static void child(const hs_sandbox__launch *l, int out_w)
{
	/* 0 is already /dev/null (the leader's). */
	if (dup2(out_w, 1) < 0 || dup2(out_w, 2) < 0)
		_exit(127);
	close_range(HS_BW_FD_EXEC + 1, ~0U, 0); /* the leader's log and the pipe */
	if (l->portal)
		portal(l);
	if (l->switch_uid) {
		if (setgroups(0, NULL) != 0)
			die("setgroups");
		if (setgid(l->gid) != 0)
			die("setgid");
		if (setuid(l->uid) != 0)
			die("setuid");
		if (setuid(0) == 0) /* a drop that can be undone is no drop */
			die("dropping root");
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		die("no_new_privs");
	execve(l->bwrap_bin, l->argv, l->envp);
	die("executing bwrap");
}

/* The leader (see the top comment). */
static void leader(const hs_sandbox__launch *l)
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
	 * whoever reads harnessd's output must see EOF when harnessd exits. */
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
		_exit(127);
	/* Our descriptors to their fixed numbers (3..11), nothing else of
	 * harnessd's (listening sockets, the database). Above 11 first, so no
	 * source is overwritten before it is copied. */
	int src[9] = { l->args_fd, l->seccomp_fd, l->report_fd, l->ws_fd, l->rootfs_fd,
		       l->init_fd, l->exec_fd, l->go_fd, l->log_fd };
	int tmp[9];
	for (int i = 0; i < 9; i++) {
		tmp[i] = -1;
		if (src[i] >= 0 && (tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, FD_LOG + 1)) < 0)
			_exit(127);
	}
	close_range(3, FD_LOG, 0);
	for (int i = 0; i < 9; i++)
		if (tmp[i] >= 0 && dup2(tmp[i], 3 + i) < 0)
			_exit(127);
	close_range(FD_LOG + 1, ~0U, 0);
	fcntl(FD_GO, F_SETFD, FD_CLOEXEC);
	fcntl(FD_LOG, F_SETFD, FD_CLOEXEC);
	if (read(FD_GO, buf, 1) != 1) /* harnessd moves us into the cgroups first */
		_exit(127);
	close(FD_GO);
	/* Above FD_LOG, so the child's 3-9 stay exactly what harnessd gave. */
	int raw[2];
	if (pipe2(raw, O_CLOEXEC) != 0 || (pfd[0] = fcntl(raw[0], F_DUPFD_CLOEXEC, FD_LOG + 1)) < 0 ||
	    (pfd[1] = fcntl(raw[1], F_DUPFD_CLOEXEC, FD_LOG + 1)) < 0)
		_exit(127);
	close(raw[0]);
	close(raw[1]);
	pid_t c = fork();
	if (c < 0)
		_exit(127);
	if (c == 0)
		child(l, pfd[1]);
	close(pfd[1]);
	for (int fd = 3; fd <= HS_BW_FD_EXEC; fd++)
		close(fd); /* the report socket too: only bwrap's copy keeps it open */
	struct stat st;
	size_t cap = l->log_max;
	size_t written = fstat(FD_LOG, &st) == 0 ? (size_t)st.st_size : 0;
	bool noted = written >= cap;
	for (;;) {
		ssize_t n = read(pfd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (written < cap) {
			size_t k = (size_t)n < cap - written ? (size_t)n : cap - written;
			if (write(FD_LOG, buf, k) > 0)
				written += k;
		}
		if (written >= cap && !noted)
			noted = write(FD_LOG, truncated_note, sizeof(truncated_note) - 1) >= 0;
	}
	int status;
	while (waitpid(c, &status, 0) < 0) {
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

pid_t hs_sandbox__bw_fork_leader(const hs_sandbox__launch *l)
{
	pid_t pid = fork();
	if (pid == 0)
		leader(l);
	return pid;
}

/* One message from the report socket: its tag byte, and a descriptor when
 * one came along. 0 = end of file, -1 = error/timeout (errno). */
static int recv_report(int sock, unsigned ms, char *tag, int *fd)
{
	struct pollfd p = { sock, POLLIN, 0 };
	int r;
	while ((r = poll(&p, 1, (int)ms)) < 0 && errno == EINTR)
		;
	if (r == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	if (r < 0)
		return -1;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = { tag, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	ssize_t n;
	while ((n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return (int)n;
	*fd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fds[4];
			memcpy(fds, CMSG_DATA(c), (k < 4 ? k : 4) * sizeof(int));
			for (size_t i = 0; i < k && i < 4; i++) {
				if (*fd < 0)
					*fd = fds[i];
				else
					close(fds[i]);
			}
		}
	}
	return 1;
}

/* The last line bwrap (or the child) wrote into the log, for messages. */
static void log_tail(const char *path, char *out, size_t cap)
{
	char buf[1024];
	out[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	char *line = strrchr(buf, '\n');
	line = line ? line + 1 : buf;
	size_t len = strlen(line) < cap - 1 ? strlen(line) : cap - 1;
	memcpy(out, line, len);
	out[len] = '\0';
}

int hs_sandbox__bw_wait_exec(int report, unsigned ms, const char *argv0, const char *log_path,
			     hs_error *err)
{
	char tag = 0;
	int pipe_fd = -1;
	char tail[200];
	int64_t until = hs_clock_mono_ms() + ms;
	int r = recv_report(report, ms, &tag, &pipe_fd);
	if (r == 0 || (r > 0 && (tag != 'P' || pipe_fd < 0))) {
		if (pipe_fd >= 0)
			close(pipe_fd);
		hs_sandbox__sleep_ms(20); /* let the leader write bwrap's last words */
		log_tail(log_path, tail, sizeof(tail));
		return hs_error_set(err, HS_UNAVAILABLE, "bwrap could not set up the sandbox: %s",
				    tail[0] ? tail : "no message");
	}
	if (r < 0)
		return hs_error_set(err, errno == ETIMEDOUT ? HS_TIMEOUT : HS_INTERNAL,
				    "sandbox setup: %s", strerror(errno));
	int64_t left = until - hs_clock_mono_ms();
	struct pollfd p = { pipe_fd, POLLIN, 0 };
	while ((r = poll(&p, 1, left > 0 ? (int)left : 0)) < 0 && errno == EINTR)
		;
	if (r <= 0) {
		close(pipe_fd);
		return hs_error_set(err, HS_TIMEOUT, "entrypoint not executed within %u ms", ms);
	}
	char msg[32];
	ssize_t n = read(pipe_fd, msg, sizeof(msg) - 1);
	close(pipe_fd);
	if (n <= 0)
		return HS_OK; /* closed by a successful exec */
	msg[n] = '\0';
	char *end;
	long e = msg[0] == 'E' ? strtol(msg + 1, &end, 10) : 0;
	if (e <= 0 || e > 4095)
		return hs_error_set(err, HS_INTERNAL, "entrypoint: bad exec report");
	if (e == ENOENT || e == EACCES || e == ENOEXEC || e == ENOTDIR || e == ELOOP ||
	    e == ENAMETOOLONG || e == EISDIR)
		return hs_error_set(err, HS_INVALID, "entrypoint[0] \"%.128s\": %s", argv0,
				    strerror((int)e));
	return hs_error_set(err, HS_UNAVAILABLE, "entrypoint[0] \"%.128s\": %s", argv0,
			    strerror((int)e));
}

/* The address of <dir>/exec.sock; through *dirfd (opened here, -1 when not
 * needed) when the path is too long for a sockaddr_un. */
static int exec_addr(const char *dir, struct sockaddr_un *sa, int *dirfd, hs_error *err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	*dirfd = -1;
	int n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/" HS_BW_EXEC_SOCK, dir);
	if (n > 0 && (size_t)n < sizeof(sa->sun_path))
		return HS_OK;
	if ((*dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return hs_error_set(err, HS_INTERNAL, "runtime dir %s: %s", dir, strerror(errno));
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/" HS_BW_EXEC_SOCK, *dirfd);
	return HS_OK;
}

int hs_sandbox__bw_exec_listen(const char *runtime_dir, int *out, hs_error *err)
{
	struct sockaddr_un sa;
	int dirfd, rc;
	if ((rc = exec_addr(runtime_dir, &sa, &dirfd, err)) != HS_OK)
		return rc;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "exec socket: %s", strerror(errno));
		goto done;
	}
	if ((unlink(sa.sun_path) != 0 && errno != ENOENT) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(sa.sun_path, 0600) != 0 ||
	    listen(fd, 16) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "exec socket in %s: %s", runtime_dir,
				  strerror(errno));
		close(fd);
		goto done;
	}
	*out = fd;
done:
	if (dirfd >= 0)
		close(dirfd);
	return rc;
}

int hs_sandbox__bw_exec_connect(const char *runtime_dir, int *out, hs_error *err)
{
	struct sockaddr_un sa;
	int dirfd, rc;
	if ((rc = exec_addr(runtime_dir, &sa, &dirfd, err)) != HS_OK)
		return rc;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "exec socket: %s", strerror(errno));
		goto done;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		close(fd);
		/* No socket: started by a harnessd without exec; refused: its
		 * init is gone (the sandbox is ending). */
		if (e == ENOENT)
			rc = hs_error_set(err, HS_CONFLICT,
					  "the sandbox was started by a harnessd without exec "
					  "support; recreate it to run commands in it");
		else
			rc = hs_error_set(err, HS_UNAVAILABLE,
					  "the sandbox does not accept commands: %s", strerror(e));
		goto done;
	}
	*out = fd;
done:
	if (dirfd >= 0)
		close(dirfd);
	return rc;
}
