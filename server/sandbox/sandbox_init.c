/* harness-sandbox-init: the first program bwrap runs inside a sandbox and,
 * for as long as the sandbox runs, its supervisor.
 *
 *   harness-sandbox-init REPORT_FD EXEC_FD|- ENTRYPOINT [ARG...]
 *
 * 1. The entrypoint. It is started with posix_spawnp, which answers only
 *    once the program was executed (or why it could not be). harnessd
 *    learns that over REPORT_FD, a Unix socket whose other end it holds:
 *    bwrap keeps a copy of every inherited descriptor for the sandbox's
 *    whole life, so we send harnessd the read end of a fresh pipe instead
 *    and keep the write end: end-of-file on it = executed, "E<errno>" = it
 *    could not be (we then exit 127, or 126).
 *
 * 2. Exec requests (ExecSandbox). EXEC_FD is a listening SOCK_SEQPACKET
 *    socket harnessd bound at <runtime dir>/exec.sock, a path that does not
 *    exist inside the sandbox. Every connection carries one request:
 *
 *      "HSX1" u32 argc u32 envc, then NUL-terminated strings: cwd ("" = ours),
 *      argv[argc], env[envc] ("NAME=value", added to or replacing ours);
 *      SCM_RIGHTS: the command's stdin, stdout and stderr
 *
 *    We answer "S<pid>" once the command was executed, "E<errno>" when it
 *    could not be, "C<errno>" when cwd is unusable, then "X<status>" or
 *    "K<signal>" when it ends, and close. The command is our child: it has
 *    exactly the identity and restrictions the entrypoint has (uid/gid,
 *    no capabilities, no_new_privs, the seccomp filter, namespaces, mount
 *    view, cgroup), because they are all inherited and nothing here can
 *    widen them. It gets a process group of its own; when harnessd closes
 *    the connection before the command ended (a cancelled call), that whole
 *    group is killed.
 *
 * 3. The end. When the entrypoint ends, running commands' groups are
 *    killed and we exit with the entrypoint's status (re-raising its
 *    signal), so bwrap and the leader report exactly what they did before
 *    there was a supervisor. SIGTERM, SIGINT and SIGHUP are ignored here
 *    (the entrypoint gets its own: DestroySandbox signals every process of
 *    the sandbox's process group, then waits for the entrypoint).
 *
 * Every exit is _exit: nothing is buffered, and a sanitizer build must not
 * run its leak check at exit in here (it cannot work inside a sandbox).
 *
 * We run already confined (namespaces, seccomp, the sandbox uid) and trust
 * nothing but our arguments and harnessd's requests. We make ourselves
 * non-dumpable, so the workload (the same uid) can neither read our memory
 * nor open our descriptors through /proc (ptrace and pidfd_getfd are also
 * refused by the filter). libc only. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CONNS 64
#define MAX_REQUEST (96 * 1024)
#define MAX_ARGS 256
#define MAX_ENV 512

extern char **environ;

typedef struct conn {
	int fd;      /* -1 = free slot */
	pid_t pid;   /* the command (its process group), 0 before it runs */
} conn;

static conn conns[MAX_CONNS];
static sigset_t orig_mask; /* what bwrap gave us: the children get it back */
static const int our_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD };

static void say(const char *msg)
{
	ssize_t n = write(2, msg, strlen(msg));
	(void)n;
}

/* The signal state every child starts with: bwrap's mask, and default
 * dispositions for what we changed. */
static int spawn_attr(posix_spawnattr_t *a, bool own_group)
{
	sigset_t def;
	sigemptyset(&def);
	for (size_t i = 0; i < sizeof(our_signals) / sizeof(our_signals[0]); i++)
		sigaddset(&def, our_signals[i]);
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	if (own_group)
		flags |= POSIX_SPAWN_SETPGROUP;
	if (posix_spawnattr_init(a) != 0)
		return -1;
	if (posix_spawnattr_setflags(a, flags) != 0 || posix_spawnattr_setsigmask(a, &orig_mask) != 0 ||
	    posix_spawnattr_setsigdefault(a, &def) != 0 ||
	    (own_group && posix_spawnattr_setpgroup(a, 0) != 0)) {
		posix_spawnattr_destroy(a);
		return -1;
	}
	return 0;
}

/* Sends "<tag><number>" on a connection (best effort: harnessd may be gone). */
static void reply(int fd, char tag, long v)
{
	char msg[32];
	int n = snprintf(msg, sizeof(msg), "%c%ld", tag, v);
	ssize_t r = send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)r;
}

/* ---- 1. the entrypoint -------------------------------------------------- */

static pid_t start_entrypoint(int report, char **argv)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		say("harness-sandbox-init: pipe failed\n");
		_exit(127);
	}
	char tag = 'P';
	struct iovec iov = { &tag, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &p[0], sizeof(int));
	if (sendmsg(report, &m, MSG_NOSIGNAL) != 1) {
		say("harness-sandbox-init: cannot report to harnessd\n");
		_exit(127);
	}
	close(p[0]);
	close(report);

	posix_spawnattr_t attr;
	posix_spawn_file_actions_t fa;
	if (spawn_attr(&attr, false) != 0 || posix_spawn_file_actions_init(&fa) != 0 ||
	    posix_spawn_file_actions_addclosefrom_np(&fa, 3) != 0) {
		say("harness-sandbox-init: cannot prepare the entrypoint\n");
		_exit(127);
	}
	pid_t pid;
	int e = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (e != 0) {
		char msg[32];
		int n = snprintf(msg, sizeof(msg), "E%d", e);
		if (write(p[1], msg, (size_t)n) != n)
			_exit(127);
		say("harness-sandbox-init: cannot execute ");
		say(argv[0]);
		say(": ");
		say(strerror(e));
		say("\n");
		_exit(e == ENOENT ? 127 : 126);
	}
	close(p[1]); /* end-of-file at harnessd: executed */
	return pid;
}

/* ---- 2. exec requests --------------------------------------------------- */

static uint32_t get_u32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* argv[0] through the PATH of env: the full path in buf, or NULL (errno). */
static const char *resolve(const char *file, char *const *env, char *buf, size_t cap)
{
	if (strchr(file, '/') != NULL)
		return file;
	const char *path = "/usr/local/bin:/usr/bin:/bin";
	for (char *const *e = env; *e != NULL; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	int err = ENOENT;
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		size_t dlen = (size_t)(end - p);
		int n = snprintf(buf, cap, "%.*s%s%s", (int)dlen, p, dlen ? "/" : "", file);
		struct stat st;
		if (n > 0 && (size_t)n < cap && stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
			if (access(buf, X_OK) == 0)
				return buf;
			err = EACCES;
		}
		if (*end == '\0')
			break;
		p = end;
	}
	errno = err;
	return NULL;
}

/* Our environment with the request's variables added or replaced. */
static char **merge_env(char **req, uint32_t n)
{
	size_t ours = 0;
	while (environ[ours] != NULL)
		ours++;
	char **out = calloc(ours + n + 1, sizeof(*out));
	if (out == NULL)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < ours; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		bool replaced = false;
		for (uint32_t j = 0; j < n && !replaced; j++)
			replaced = strncmp(req[j], environ[i], nl) == 0 && req[j][nl] == '=';
		if (!replaced)
			out[k++] = environ[i];
	}
	for (uint32_t j = 0; j < n; j++)
		out[k++] = req[j];
	out[k] = NULL;
	return out;
}

/* Reads one request from c and starts its command; answers the outcome.
 * Returns false when the connection is done (closed by the caller). */
static bool start_command(conn *c)
{
	static char buf[MAX_REQUEST];
	int fds[3] = { -1, -1, -1 };
	size_t nfds = 0;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} u;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	ssize_t n = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h != NULL; h = CMSG_NXTHDR(&m, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int got[4];
		memcpy(got, CMSG_DATA(h), (k < 4 ? k : 4) * sizeof(int));
		for (size_t i = 0; i < k && i < 4; i++) {
			if (nfds < 3)
				fds[nfds++] = got[i];
			else
				close(got[i]);
		}
	}
	bool ok = false;
	int e = EINVAL;
	char tag = 'E';
	char **argv = NULL, **env = NULL, **envp = NULL;
	if (n < 12 || nfds != 3 || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    memcmp(buf, "HSX1", 4) != 0)
		goto done;
	uint32_t argc = get_u32(buf + 4), envc = get_u32(buf + 8);
	if (argc < 1 || argc > MAX_ARGS || envc > MAX_ENV)
		goto done;
	argv = calloc(argc + 1, sizeof(*argv));
	env = calloc(envc + 1, sizeof(*env));
	if (argv == NULL || env == NULL) {
		e = ENOMEM;
		goto done;
	}
	/* cwd, argv, env: each NUL-terminated, filling the message exactly. */
	const char *p = buf + 12, *end = buf + n, *cwd = NULL;
	for (uint32_t i = 0; i < 1 + argc + envc; i++) {
		const char *z = memchr(p, '\0', (size_t)(end - p));
		if (z == NULL)
			goto done;
		if (i == 0)
			cwd = p;
		else if (i <= argc)
			argv[i - 1] = (char *)p;
		else
			env[i - 1 - argc] = (char *)p;
		p = z + 1;
	}
	if (p != end || argv[0][0] == '\0')
		goto done;
	for (uint32_t i = 0; i < envc; i++)
		if (strchr(env[i], '=') == NULL || env[i][0] == '=')
			goto done;
	if (cwd[0] != '\0') {
		struct stat st;
		int r = stat(cwd, &st);
		if (r != 0 || !S_ISDIR(st.st_mode)) {
			e = r != 0 ? errno : ENOTDIR;
			tag = 'C';
			goto done;
		}
	}
	if ((envp = merge_env(env, envc)) == NULL) {
		e = ENOMEM;
		goto done;
	}
	char path[4096];
	const char *file = resolve(argv[0], envp, path, sizeof(path));
	if (file == NULL) {
		e = errno;
		goto done;
	}
	posix_spawnattr_t attr;
	posix_spawn_file_actions_t fa;
	if (spawn_attr(&attr, true) != 0) {
		e = ENOMEM;
		goto done;
	}
	if (posix_spawn_file_actions_init(&fa) != 0) {
		posix_spawnattr_destroy(&attr);
		e = ENOMEM;
		goto done;
	}
	if (posix_spawn_file_actions_adddup2(&fa, fds[0], 0) != 0 ||
	    posix_spawn_file_actions_adddup2(&fa, fds[1], 1) != 0 ||
	    posix_spawn_file_actions_adddup2(&fa, fds[2], 2) != 0 ||
	    (cwd[0] != '\0' && posix_spawn_file_actions_addchdir_np(&fa, cwd) != 0) ||
	    posix_spawn_file_actions_addclosefrom_np(&fa, 3) != 0) {
		e = ENOMEM;
	} else {
		pid_t pid;
		e = posix_spawn(&pid, file, &fa, &attr, argv, envp);
		if (e == 0) {
			c->pid = pid;
			ok = true;
		}
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
done:
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	free(argv);
	free(env);
	free(envp);
	if (ok) {
		reply(c->fd, 'S', c->pid);
		return true;
	}
	if (n > 0)
		reply(c->fd, tag, e);
	return false;
}

static void drop(conn *c, bool kill_group)
{
	if (kill_group && c->pid > 0)
		kill(-c->pid, SIGKILL);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->pid = 0;
}

/* ---- 3. the end --------------------------------------------------------- */

static void exit_like(int status)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].fd >= 0)
			drop(&conns[i], true);
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		struct rlimit none = { 0, 0 };
		setrlimit(RLIMIT_CORE, &none); /* the entrypoint dumped, if anyone */
		signal(sig, SIG_DFL);
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, sig);
		sigprocmask(SIG_UNBLOCK, &s, NULL);
		kill(getpid(), sig);
		_exit(128 + sig);
	}
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 127);
}

/* Reaps what ended: the entrypoint ends us; a command's status goes to its
 * connection. */
static void reap(pid_t entry)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == entry)
			exit_like(status);
		for (int i = 0; i < MAX_CONNS; i++) {
			if (conns[i].fd < 0 || conns[i].pid != pid)
				continue;
			if (WIFSIGNALED(status))
				reply(conns[i].fd, 'K', WTERMSIG(status));
			else
				reply(conns[i].fd, 'X', WEXITSTATUS(status));
			drop(&conns[i], false);
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		say("harness-sandbox-init: usage: harness-sandbox-init REPORT_FD EXEC_FD|- ENTRYPOINT [ARG...]\n");
		_exit(127);
	}
	char *end;
	errno = 0;
	long report = strtol(argv[1], &end, 10);
	if (errno != 0 || *end != '\0' || report < 3 || report > 1024) {
		say("harness-sandbox-init: bad REPORT_FD\n");
		_exit(127);
	}
	long lfd = -1;
	if (strcmp(argv[2], "-") != 0) {
		lfd = strtol(argv[2], &end, 10);
		if (*end != '\0' || lfd < 3 || lfd > 1024 || lfd == report) {
			say("harness-sandbox-init: bad EXEC_FD\n");
			_exit(127);
		}
		fcntl((int)lfd, F_SETFD, FD_CLOEXEC);
		fcntl((int)lfd, F_SETFL, O_NONBLOCK);
	}
	/* Nothing of the launch survives in us but the two descriptors. */
	long keep_lo = lfd >= 0 && lfd < report ? lfd : report;
	long keep_hi = lfd > report ? lfd : report;
	if (keep_lo > 3)
		close_range(3, (unsigned)keep_lo - 1, 0);
	if (keep_hi > keep_lo + 1)
		close_range((unsigned)keep_lo + 1, (unsigned)keep_hi - 1, 0);
	close_range((unsigned)keep_hi + 1, ~0U, 0);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	sigprocmask(SIG_SETMASK, NULL, &orig_mask);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		say("harness-sandbox-init: signalfd failed\n");
		_exit(127);
	}
	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;

	pid_t entry = start_entrypoint((int)report, argv + 3);

	for (;;) {
		struct pollfd p[MAX_CONNS + 2];
		int where[MAX_CONNS + 2];
		nfds_t np = 0;
		int used = 0;
		p[np] = (struct pollfd){ sfd, POLLIN, 0 };
		where[np++] = -1;
		for (int i = 0; i < MAX_CONNS; i++) {
			if (conns[i].fd < 0)
				continue;
			used++;
			p[np] = (struct pollfd){ conns[i].fd, POLLIN, 0 };
			where[np++] = i;
		}
		if (lfd >= 0 && used < MAX_CONNS) {
			p[np] = (struct pollfd){ (int)lfd, POLLIN, 0 };
			where[np++] = -2;
		}
		if (poll(p, np, -1) < 0) {
			if (errno == EINTR)
				continue;
			say("harness-sandbox-init: poll failed\n");
			reap(entry);
			continue;
		}
		for (nfds_t i = 0; i < np; i++) {
			if (p[i].revents == 0)
				continue;
			if (where[i] == -1) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
					;
				reap(entry);
			} else if (where[i] == -2) {
				int fd = accept4((int)lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
				for (int k = 0; fd >= 0 && k < MAX_CONNS; k++) {
					if (conns[k].fd < 0) {
						conns[k].fd = fd;
						conns[k].pid = 0;
						fd = -1;
					}
				}
				if (fd >= 0)
					close(fd);
			} else {
				conn *c = &conns[where[i]];
				if (c->fd < 0)
					continue; /* reaped above in this round */
				if (c->pid == 0) {
					if (!start_command(c))
						drop(c, false);
				} else {
					/* harnessd closed (or wrote): the call is over. */
					drop(c, true);
				}
			}
		}
	}
}
