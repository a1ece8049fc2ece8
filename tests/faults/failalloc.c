/* The failing allocator of harnessd-faults (SQLite's fault injection is the
 * model): harnessd's own code, linked with -Wl,--wrap for the allocation
 * functions, allocates through these wrappers. Armed with a count n, the n-th
 * allocation after arming fails once (NULL, errno ENOMEM), wherever it
 * happens: in the RPC core, a handler, a background thread. Libraries that
 * allocate for themselves (gRPC, SQLite, libgit2, protobuf-c, jansson) are
 * not wrapped: their own out-of-memory handling is not ours to test (gRPC
 * aborts on it by design; jansson's lexer reports a failed allocation as a
 * syntax error, so failing it would only test jansson).
 *
 * Control: a unix stream socket at $HS_FAULTS_CTL, one line per command,
 * answered on the same connection by the control thread (which allocates
 * nothing):
 *   "arm N\n"  -> "ok\n"              the N-th allocation from now fails
 *   "off\n"    -> "fired\n" | "idle\n" disarm; whether the failure happened
 * The integration test (tests/integration/test_alloc_faults.py) arms
 * n = 1, 2, ... around one RPC until a call no longer reaches the n-th
 * allocation. With $HS_FAULTS_TRACE set, the stack of each failed
 * allocation goes to stderr (addr2line -e harnessd-faults turns it into
 * lines). Never linked into harnessd itself. */
#include <errno.h>
#include <execinfo.h>
#include <stdarg.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__real_reallocarray(void *p, size_t k, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **out, const char *fmt, va_list ap);

static atomic_long left;    /* allocations until the failure; 0 = disarmed */
static atomic_bool fired;
static bool trace;          /* $HS_FAULTS_TRACE: the failing call's stack on stderr */

/* True when this allocation is the one to fail. */
static bool fail_now(void)
{
	long v = atomic_load_explicit(&left, memory_order_relaxed);
	while (v > 0) {
		if (atomic_compare_exchange_weak(&left, &v, v - 1)) {
			if (v == 1) {
				atomic_store(&fired, true);
				if (trace) {
					void *frames[32];
					int k = backtrace(frames, 32);
					backtrace_symbols_fd(frames, k, 2);
				}
				errno = ENOMEM;
				return true;
			}
			return false;
		}
	}
	return false;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t k, size_t n) { return fail_now() ? NULL : __real_calloc(k, n); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
void *__wrap_reallocarray(void *p, size_t k, size_t n)
{
	return fail_now() ? NULL : __real_reallocarray(p, k, n);
}
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return fail_now() ? NULL : __real_strndup(s, n); }
int __wrap_vasprintf(char **out, const char *fmt, va_list ap)
{
	return fail_now() ? -1 : __real_vasprintf(out, fmt, ap);
}
int __wrap_asprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = __wrap_vasprintf(out, fmt, ap);
	va_end(ap);
	return rc;
}

static void answer(int fd, const char *s) { (void)!write(fd, s, strlen(s)); }

static void *control_main(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		char line[64];
		size_t n = 0;
		ssize_t r;
		while ((r = read(fd, line + n, 1)) == 1) {
			if (line[n] == '\n' || n + 2 >= sizeof(line)) {
				line[n] = '\0';
				if (strncmp(line, "arm ", 4) == 0) {
					char *end = NULL;
					long v = strtol(line + 4, &end, 10);
					atomic_store(&fired, false);
					atomic_store(&left, v > 0 ? v : 0);
					answer(fd, "ok\n");
				} else if (strcmp(line, "off") == 0) {
					atomic_store(&left, 0);
					answer(fd, atomic_load(&fired) ? "fired\n" : "idle\n");
				} else {
					answer(fd, "?\n");
				}
				n = 0;
			} else {
				n++;
			}
		}
		close(fd);
	}
	return NULL;
}

/* Before main: the control socket. */
__attribute__((constructor)) static void faults_init(void)
{
	const char *tr = getenv("HS_FAULTS_TRACE");
	if (tr != NULL && tr[0] != '\0') {
		void *frames[2];
		trace = true;
		backtrace(frames, 2); /* loads libgcc now: no allocation when it fires */
	}
	const char *path = getenv("HS_FAULTS_CTL");
	if (path == NULL || path[0] == '\0')
		return;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "HS_FAULTS_CTL too long\n");
		_exit(2);
	}
	memcpy(a.sun_path, path, strlen(path) + 1);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 4) != 0) {
		perror("HS_FAULTS_CTL");
		_exit(2);
	}
	pthread_t t;
	if (pthread_create(&t, NULL, control_main, (void *)(intptr_t)lfd) != 0)
		_exit(2);
	pthread_detach(t);
}
