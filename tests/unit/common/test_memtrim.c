/* common/memtrim: startup's library pages are dropped from this process,
 * and nothing a page held is lost: a private file mapping whose pages were
 * written (copied on write) and then made read-only, as the loader does with
 * relocated data (RELRO), keeps what was written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "memtrim.h"

static long self_rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	assert_non_null(f);
	char line[256];
	long kb = -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

static void test_memtrim__drops_library_pages(void **state)
{
	(void)state;
	long before = self_rss_kb();
	size_t dropped = 0;
	hs_error err = { 0 };
	assert_int_equal(hs_memtrim_startup(&dropped, &err), HS_OK);
	/* libc's and this binary's code were resident: some of it went */
	assert_true(dropped > 0);
	long after = self_rss_kb();
	assert_true(after < before);
	/* and the code still runs (it faults back in) */
	char buf[64];
	snprintf(buf, sizeof(buf), "%d-%s", 42, "x");
	assert_string_equal(buf, "42-x");
	assert_int_equal(hs_memtrim_startup(NULL, &err), HS_OK);
}

static void test_memtrim__keeps_written_private_pages(void **state)
{
	(void)state;
	char path[] = "/tmp/hs-memtrim-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	long pg = sysconf(_SC_PAGESIZE);
	char *page = calloc(1, (size_t)pg);
	assert_non_null(page);
	memset(page, 'f', (size_t)pg);
	for (int i = 0; i < 4; i++)
		assert_int_equal(write(fd, page, (size_t)pg), pg);
	free(page);
	/* RELRO's life: mapped private and writable, written, made read-only */
	char *m = mmap(NULL, (size_t)pg * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(m != MAP_FAILED);
	m[0] = 'w';
	assert_int_equal(mprotect(m, (size_t)pg * 4, PROT_READ), 0);
	/* a read-only private mapping never written: dropped, and reads the file again */
	char *r = mmap(NULL, (size_t)pg * 4, PROT_READ, MAP_PRIVATE, fd, 0);
	assert_true(r != MAP_FAILED);
	assert_int_equal(r[(size_t)pg * 3], 'f');
	hs_error err = { 0 };
	assert_int_equal(hs_memtrim_startup(NULL, &err), HS_OK);
	assert_int_equal(m[0], 'w'); /* dropping it would read 'f' from the file */
	assert_int_equal(m[1], 'f');
	assert_int_equal(r[(size_t)pg * 3], 'f');
	munmap(m, (size_t)pg * 4);
	munmap(r, (size_t)pg * 4);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memtrim__drops_library_pages),
		cmocka_unit_test(test_memtrim__keeps_written_private_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
