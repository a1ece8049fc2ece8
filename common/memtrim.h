/* Give back the pages a process touched only while it started. Loading and
 * initialising a process's libraries (OpenSSL's providers, gnutls, krb5 and
 * ldap pulled in by libcurl, libgit2, SQLite, gRPC) maps ~22 MB of library
 * code and read-only data into harnessd and ~12 MB into the gateway, most of
 * which serving never touches again. hs_memtrim_startup() drops this
 * process's mappings of those pages (madvise MADV_DONTNEED); the pages stay
 * in the page cache and fault back in (minor faults) when they are used.
 *
 * Only file-backed, private, non-writable mappings none of whose pages were
 * ever copied on write (smaps "Anonymous: 0") are touched: for them dropping
 * a page and faulting it in again from the file is invisible. Relocated
 * read-only data (RELRO), writable data, anonymous memory and shared
 * mappings are left alone. Call once, when startup is done. The one race:
 * a library with text relocations (none in Debian's x86-64 libraries)
 * being dlopen'd by another thread at that moment could lose them.
 * HARNESS_MEMTRIM=0 (or off) in the environment turns it off. */
#ifndef HS_COMMON_MEMTRIM_H
#define HS_COMMON_MEMTRIM_H

#include <stddef.h>

#include "error.h"

/* *dropped_kb (may be NULL): the resident kB of the mappings dropped.
 * HS_INTERNAL if /proc/self/smaps cannot be read. */
int hs_memtrim_startup(size_t *dropped_kb, hs_error *err);

#endif
