/* Process and file helpers for the sandbox drivers: /proc starttime (the
 * identity that survives pid reuse), bounded waits, terminate-and-reap,
 * mkdir -p, rm -rf, link-or-copy. */
#include "driver.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void hs_sandbox__sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

unsigned hs_sandbox__bound(unsigned a, unsigned b)
{
	if (b == 0 || a < b)
		return a;
	return b;
}

/* Reads state (field 3) and starttime (field 22) of /proc/<pid>/stat. The
 * comm field may hold spaces and parentheses: parse after the last ')'. */
static int read_stat(pid_t pid, char *state, uint64_t *starttime)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return HS_NOT_FOUND;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return HS_NOT_FOUND;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ')
		return HS_INTERNAL;
	p += 2; /* field 3 */
	*state = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (p == NULL)
			return HS_INTERNAL;
		p++;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p, &end, 10);
	if (errno != 0 || end == p)
		return HS_INTERNAL;
	*starttime = v;
	return HS_OK;
}

int hs_sandbox__proc_starttime(pid_t pid, uint64_t *out)
{
	char st;
	uint64_t t;
	int rc = read_stat(pid, &st, &t);
	if (rc == HS_OK)
		*out = t;
	return rc;
}

bool hs_sandbox__proc_alive(pid_t pid, uint64_t starttime)
{
	char st;
	uint64_t t;
	if (pid <= 0 || read_stat(pid, &st, &t) != HS_OK)
		return false;
	return st != 'Z' && st != 'X' && t == starttime;
}

void hs_sandbox__proc_poll(hs_sandbox__rec *sb, hs_sandbox__exit *out)
{
	memset(out, 0, sizeof(*out));
	if (sb->pid <= 0) {
		out->exited = true;
		return;
	}
	if (sb->is_child) {
		int status;
		pid_t r = waitpid(sb->pid, &status, WNOHANG);
		if (r == sb->pid) {
			out->exited = true;
			out->known = true;
			if (WIFSIGNALED(status)) {
				out->signaled = true;
				out->code = WTERMSIG(status);
			} else {
				out->code = WEXITSTATUS(status);
			}
			return;
		}
		if (r == 0)
			return;
		/* ECHILD: someone else reaped it; fall through to liveness. */
		sb->is_child = false;
	}
	if (!hs_sandbox__proc_alive(sb->pid, sb->pid_start_time))
		out->exited = true;
}

bool hs_sandbox__proc_wait(hs_sandbox__rec *sb, unsigned ms, hs_sandbox__exit *out)
{
	int64_t until = hs_clock_mono_ms() + ms;
	unsigned step = 1;
	for (;;) {
		hs_sandbox__proc_poll(sb, out);
		if (out->exited)
			return true;
		if (hs_clock_mono_ms() >= until)
			return false;
		hs_sandbox__sleep_ms(step);
		if (step < 4) /* 1, 2, 4, 4, ...: exits are noticed within ~4 ms */
			step *= 2;
	}
}

bool hs_sandbox__proc_terminate(hs_sandbox__rec *sb, bool group, unsigned grace_ms)
{
	hs_sandbox__exit ex;
	if (sb->pid <= 0)
		return true;
	hs_sandbox__proc_poll(sb, &ex);
	if (!ex.exited) {
		if (group && getpgid(sb->pid) != sb->pid)
			group = false; /* not a group leader (e.g. adopted VMM in a pid ns) */
		pid_t target = group ? -sb->pid : sb->pid;
		kill(target, SIGTERM);
		kill(target, SIGCONT); /* a stopped process acts on SIGTERM only when continued */
		if (!hs_sandbox__proc_wait(sb, grace_ms, &ex)) {
			/* The pid is still ours (not reaped), so it cannot have been reused. */
			kill(target, SIGKILL);
			if (!hs_sandbox__proc_wait(sb, 5000, &ex))
				return false;
		}
	}
	hs_sandbox__proc_forget(sb);
	return true;
}

int hs_sandbox__pidfd_open(pid_t pid)
{
	return pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1; /* close-on-exec */
}

void hs_sandbox__proc_forget(hs_sandbox__rec *sb)
{
	if (sb->pidfd >= 0)
		close(sb->pidfd);
	sb->pidfd = -1;
	sb->pid = 0;
	sb->pid_start_time = 0;
	sb->is_child = false;
}

int hs_sandbox__path(char *buf, size_t cap, hs_error *err, const char *what, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap)
		return hs_error_set(err, HS_INVALID, "%s too long (max %zu bytes)", what, cap - 1);
	return HS_OK;
}

int hs_sandbox__mkdirs(const char *path, mode_t mode, hs_error *err)
{
	char buf[PATH_MAX];
	if (hs_sandbox__path(buf, sizeof(buf), err, "directory path", "%s", path) != HS_OK)
		return HS_INVALID;
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(buf, mode) != 0 && errno != EEXIST)
				return hs_error_set(err, HS_INTERNAL, "mkdir %s: %s", buf,
						    strerror(errno));
			*p = c;
			if (c == '\0')
				break;
		}
	}
	return HS_OK;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int rc = (flag == FTW_DP) ? rmdir(path) : unlink(path);
	return (rc != 0 && errno != ENOENT) ? -1 : 0;
}

int hs_sandbox__rmtree(const char *path, hs_error *err)
{
	struct stat st;
	if (path == NULL || path[0] == '\0' || lstat(path, &st) != 0)
		return HS_OK;
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
		return hs_error_set(err, HS_INTERNAL, "remove %s: %s", path, strerror(errno));
	return HS_OK;
}

int hs_sandbox__copy_file(const char *from, const char *to, hs_error *err)
{
	int rc = HS_OK;
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = -1;
	if (in < 0) {
		rc = hs_error_set(err, HS_INVALID, "open %s: %s", from, strerror(errno));
		goto done;
	}
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "create %s: %s", to, strerror(errno));
		goto done;
	}
	char buf[65536];
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = hs_error_set(err, HS_INTERNAL, "read %s: %s", from, strerror(errno));
			goto done;
		}
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = hs_error_set(err, HS_INTERNAL, "write %s: %s", to,
						  strerror(errno));
				goto done;
			}
			off += w;
		}
	}
done:
	if (in >= 0)
		close(in);
	if (out >= 0 && close(out) != 0 && rc == HS_OK)
		rc = hs_error_set(err, HS_INTERNAL, "close %s: %s", to, strerror(errno));
	if (rc != HS_OK && out >= 0)
		unlink(to);
	return rc;
}

int hs_sandbox__link_or_copy(const char *from, const char *to, hs_error *err)
{
	if (link(from, to) == 0)
		return HS_OK;
	if (errno == ENOENT)
		return hs_error_set(err, HS_INVALID, "%s: %s", from, strerror(errno));
	return hs_sandbox__copy_file(from, to, err);
}

void hs_sandbox__argv_free(char **argv)
{
	if (argv == NULL)
		return;
	for (char **p = argv; *p != NULL; p++)
		free(*p);
	free(argv);
}

void hs_sandbox__argv_add(hs_sandbox__argv *a, const char *s)
{
	if (a->oom)
		return;
	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 32;
		char **v = realloc(a->v, cap * sizeof(*v));
		if (v == NULL) {
			a->oom = true;
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	char *d = strdup(s);
	if (d == NULL) {
		a->oom = true;
		return;
	}
	a->v[a->n++] = d;
	a->v[a->n] = NULL;
}

void hs_sandbox__argv_addf(hs_sandbox__argv *a, const char *fmt, ...)
{
	char buf[PATH_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		a->oom = true;
		return;
	}
	hs_sandbox__argv_add(a, buf);
}
