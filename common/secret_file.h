/* Secrets kept in files (harnessd's jwt.key, the gateway key shared by
 * harnessd and harness-gateway): read, or created once with random
 * content, never half-written, never readable by more than allowed.
 *
 * A created file holds 64 random base64url characters and a newline, with
 * the mode the caller asks for; it is written under a temporary name and
 * linked into place, so two processes racing to create it agree on one
 * content (link(2) fails for the second, which then reads the first's). */
#ifndef HS_COMMON_SECRET_FILE_H
#define HS_COMMON_SECRET_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

#define HS_SECRET_MIN 32   /* bytes */
#define HS_SECRET_MAX 1024 /* bytes */

typedef struct hs_secret_file_opts {
	bool create;      /* create with random content when missing */
	mode_t mode;      /* mode of a created file (e.g. 0600, 0640) */
	mode_t forbidden; /* permission bits an existing file must not have (e.g. 077, 007) */
} hs_secret_file_opts;

/* The secret in path (trailing whitespace dropped) as a heap string of
 * *len_out bytes (NULL allowed) that the caller wipes and frees.
 * HS_INVALID: not a regular file, a forbidden permission bit, shorter than
 * HS_SECRET_MIN or longer than HS_SECRET_MAX; HS_NOT_FOUND: missing and
 * !create; HS_UNAVAILABLE: cannot be read or created. Symlinks are not
 * followed. Messages name the path, never the content. */
int hs_secret_file_load(const char *path, const hs_secret_file_opts *opts, char **out,
			size_t *len_out, hs_error *err);

#endif
