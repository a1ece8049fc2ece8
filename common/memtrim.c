#include "memtrim.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* One mapping's header line of /proc/self/smaps:
 * "lo-hi perms offset dev inode [path]". */
static bool parse_range(const char *line, unsigned long *lo, unsigned long *hi, bool *cand)
{
	char *end;
	errno = 0;
	unsigned long a = strtoul(line, &end, 16);
	if (end == line || *end != '-' || errno != 0)
		return false;
	const char *p = end + 1;
	unsigned long b = strtoul(p, &end, 16);
	if (end == p || *end != ' ' || errno != 0 || b <= a)
		return false;
	const char *perms = end + 1; /* "r-xp" */
	if (strlen(perms) < 5 || perms[4] != ' ')
		return false;
	/* offset, device, inode: the inode is the fourth field after perms */
	const char *q = perms + 5;
	for (int field = 0; field < 2; field++) {
		q = strchr(q, ' ');
		if (q == NULL)
			return false;
		q++;
	}
	unsigned long ino = strtoul(q, &end, 10);
	if (end == q)
		return false;
	*lo = a;
	*hi = b;
	*cand = ino != 0 && perms[1] == '-' && perms[3] == 'p';
	return true;
}

static long field_kb(const char *line, size_t name_len)
{
	return strtol(line + name_len, NULL, 10);
}

int hs_memtrim_startup(size_t *dropped_kb, hs_error *err)
{
	int rc = HS_OK;
	const char *knob = getenv("HARNESS_MEMTRIM");
	if (knob != NULL && (strcmp(knob, "0") == 0 || strcmp(knob, "off") == 0)) {
		if (dropped_kb != NULL)
			*dropped_kb = 0;
		return HS_OK; /* the operator's choice: keep every page mapped */
	}
	FILE *f = fopen("/proc/self/smaps", "re");
	if (f == NULL)
		return hs_error_set(err, HS_INTERNAL, "memtrim: /proc/self/smaps: %s", strerror(errno));
	char line[4096];
	unsigned long lo = 0, hi = 0;
	bool cand = false;
	long rss = 0;
	size_t total = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strchr(line, '\n') == NULL && !feof(f)) { /* a path longer than the buffer */
			int c;
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
		}
		unsigned long a, b;
		bool c;
		if (line[0] >= 'A' && line[0] <= 'Z') { /* "Name: value" */
			if (!cand)
				continue;
			if (strncmp(line, "Rss:", 4) == 0) {
				rss = field_kb(line, 4);
			} else if (strncmp(line, "Anonymous:", 10) == 0) {
				/* Rss comes before Anonymous in every smaps record */
				if (field_kb(line, 10) == 0 && rss > 0 &&
				    madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0)
					total += (size_t)rss;
				cand = false;
			}
		} else if (parse_range(line, &a, &b, &c)) {
			lo = a;
			hi = b;
			cand = c;
			rss = 0;
		}
	}
	if (ferror(f))
		rc = hs_error_set(err, HS_INTERNAL, "memtrim: reading /proc/self/smaps failed");
	fclose(f);
	if (rc == HS_OK && dropped_kb != NULL)
		*dropped_kb = total;
	return rc;
}
