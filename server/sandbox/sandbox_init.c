/* harness-sandbox-init: the first program bwrap runs inside a sandbox. It
 * tells harnessd whether the entrypoint was really executed, then becomes
 * the entrypoint.
 *
 *   harness-sandbox-init REPORT_FD ENTRYPOINT [ARG...]
 *
 * REPORT_FD is a Unix socket whose other end harnessd holds. bwrap keeps a
 * copy of every inherited descriptor for the sandbox's whole life, so an
 * inherited pipe could never report "closed by exec". Instead we make a
 * fresh pipe, send its read end to harnessd (SCM_RIGHTS) and keep only the
 * write end, close-on-exec: harnessd then sees end-of-file exactly when
 * execvp succeeded, or "E<errno>" when it failed (we exit 127). Every other
 * descriptor above stderr is closed first, so nothing of the launch (the
 * report socket, anything bwrap passed along) reaches the entrypoint.
 *
 * It runs already confined (namespaces, seccomp, the sandbox uid) and
 * trusts nothing but its arguments. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void say(const char *msg)
{
	ssize_t n = write(2, msg, strlen(msg));
	(void)n;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		say("harness-sandbox-init: usage: harness-sandbox-init REPORT_FD ENTRYPOINT [ARG...]\n");
		return 127;
	}
	char *end;
	errno = 0;
	long report = strtol(argv[1], &end, 10);
	if (errno != 0 || *end != '\0' || report < 3 || report > 1024) {
		say("harness-sandbox-init: bad REPORT_FD\n");
		return 127;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		say("harness-sandbox-init: pipe failed\n");
		return 127;
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
	if (sendmsg((int)report, &m, MSG_NOSIGNAL) != 1) {
		say("harness-sandbox-init: cannot report to harnessd\n");
		return 127;
	}
	/* Only stdin/stdout/stderr and our write end survive. */
	int w = p[1];
	if (w != 3) {
		if (dup3(w, 3, O_CLOEXEC) < 0)
			return 127;
		w = 3;
	}
	close_range(4, ~0U, 0);
	execvp(argv[2], argv + 2);
	int e = errno;
	char msg[32];
	int n = snprintf(msg, sizeof(msg), "E%d", e);
	if (write(w, msg, (size_t)n) != n)
		return 127;
	say("harness-sandbox-init: cannot execute ");
	say(argv[2]);
	say(": ");
	say(strerror(e));
	say("\n");
	return e == ENOENT ? 127 : 126;
}
