/* /proc/<pid>/stat, read once and parsed right (the command name may hold
 * spaces and parentheses: fields are counted from the last ')'). One reader
 * for every user: sandbox re-adoption (start time), process metrics. */
#ifndef HS_COMMON_PROCSTAT_H
#define HS_COMMON_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

#include "error.h"

typedef struct hs_procstat {
	char state;           /* R, S, D, T, Z, ... */
	pid_t ppid;
	pid_t pgrp;
	uint64_t utime_ticks; /* user CPU, clock ticks (sysconf(_SC_CLK_TCK)) */
	uint64_t stime_ticks; /* system CPU, clock ticks */
	int64_t num_threads;
	uint64_t start_ticks; /* since boot, clock ticks: with pid, a process's identity */
	uint64_t vsize_bytes;
	int64_t rss_pages;
} hs_procstat;

/* pid 0 = this process. HS_NOT_FOUND if there is no such process,
 * HS_INTERNAL if the file cannot be parsed. */
int hs_procstat_read(pid_t pid, hs_procstat *out, hs_error *err);

#endif
