/* /proc/<pid>/stat (procstat.h). */
#include "procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int hs_procstat_read(pid_t pid, hs_procstat *out, hs_error *err)
{
	char path[64], buf[1024];
	if (pid == 0)
		snprintf(path, sizeof(path), "/proc/self/stat");
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hs_error_set(err, errno == ENOENT ? HS_NOT_FOUND : HS_INTERNAL, "%s: %s", path,
				    strerror(errno));
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return hs_error_set(err, n == 0 ? HS_NOT_FOUND : HS_INTERNAL, "%s: empty", path);
	buf[n] = '\0';
	/* "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime stime cutime cstime priority nice num_threads
	 * itrealvalue starttime vsize rss ..." */
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return hs_error_set(err, HS_INTERNAL, "%s: malformed", path);
	hs_procstat s = { 0 };
	int ppid = 0, pgrp = 0;
	long long threads = 0, rss = 0;
	int got = sscanf(p + 1,
			 " %c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %" SCNu64 " %" SCNu64
			 " %*d %*d %*d %*d %lld %*d %" SCNu64 " %" SCNu64 " %lld",
			 &s.state, &ppid, &pgrp, &s.utime_ticks, &s.stime_ticks, &threads,
			 &s.start_ticks, &s.vsize_bytes, &rss);
	if (got != 9)
		return hs_error_set(err, HS_INTERNAL, "%s: malformed", path);
	s.ppid = ppid;
	s.pgrp = pgrp;
	s.num_threads = threads;
	s.rss_pages = rss;
	*out = s;
	return HS_OK;
}
