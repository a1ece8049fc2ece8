/* Secret files: read, or create once (secret_file.h). */
#include "secret_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define RAW_BYTES 48 /* -> 64 base64url characters */

static int read_secret(int fd, const char *path, const hs_secret_file_opts *o, char **out,
		       size_t *len_out, hs_error *err)
{
	struct stat st;
	char buf[HS_SECRET_MAX + 1];
	ssize_t n;
	size_t len = 0;
	int rc = HS_OK;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return hs_error_set(err, HS_INVALID, "%s: not a regular file", path);
	if (st.st_mode & o->forbidden)
		return hs_error_set(err, HS_INVALID, "%s: permissions too open (chmod %03o it)",
				    path, (unsigned)(st.st_mode & 0777 & ~o->forbidden));
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		len--;
	if (len > HS_SECRET_MAX)
		rc = hs_error_set(err, HS_INVALID, "%s: longer than %d bytes", path, HS_SECRET_MAX);
	else if (len < HS_SECRET_MIN)
		rc = hs_error_set(err, HS_INVALID, "%s: shorter than %d bytes", path, HS_SECRET_MIN);
	else if ((*out = malloc(len + 1)) == NULL)
		rc = hs_error_set(err, HS_INTERNAL, "%s: out of memory", path);
	else {
		memcpy(*out, buf, len);
		(*out)[len] = '\0';
		if (len_out != NULL)
			*len_out = len;
	}
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

static void b64url(char *out, const unsigned char *in, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t w = 0;
	for (size_t i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[w++] = a[v >> 18 & 63];
		out[w++] = a[v >> 12 & 63];
		out[w++] = a[v >> 6 & 63];
		out[w++] = a[v & 63];
	}
	out[w] = '\0';
}

/* Writes fresh content to a temporary file and links it into place. */
static int create_secret(const char *path, mode_t mode, hs_error *err)
{
	char tmp[4096], s[RAW_BYTES / 3 * 4 + 2];
	unsigned char raw[RAW_BYTES];
	int fd, rc = HS_OK;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid()) >= sizeof(tmp))
		return hs_error_set(err, HS_INVALID, "%s: path too long", path);
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return hs_error_set(err, HS_UNAVAILABLE, "%s: no randomness: %s", path,
				    strerror(errno));
	b64url(s, raw, sizeof(raw));
	explicit_bzero(raw, sizeof(raw));
	size_t sl = strlen(s);
	s[sl] = '\n';
	s[sl + 1] = '\0';
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "%s: cannot create: %s", tmp, strerror(errno));
		goto done;
	}
	/* open() applied the umask: set exactly what was asked */
	if (fchmod(fd, mode) != 0 || write(fd, s, sl + 1) != (ssize_t)(sl + 1) || fsync(fd) != 0) {
		rc = hs_error_set(err, HS_UNAVAILABLE, "%s: write failed: %s", tmp, strerror(errno));
		close(fd);
		(void)unlink(tmp);
		goto done;
	}
	close(fd);
	if (link(tmp, path) != 0 && errno != EEXIST)
		rc = hs_error_set(err, HS_UNAVAILABLE, "%s: cannot create: %s", path, strerror(errno));
	(void)unlink(tmp);
	if (rc == HS_OK)
		hs_log(HS_LOG_INFO, "secret", "generated a secret file", HS_LS("path", path));
done:
	explicit_bzero(s, sizeof(s));
	return rc;
}

int hs_secret_file_load(const char *path, const hs_secret_file_opts *opts, char **out,
			size_t *len_out, hs_error *err)
{
	int fd, rc;
	if (path == NULL || path[0] == '\0' || opts == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "secret file: no path");
	for (int attempt = 0; attempt < 2; attempt++) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0) {
			rc = read_secret(fd, path, opts, out, len_out, err);
			close(fd);
			return rc;
		}
		if (errno != ENOENT)
			return hs_error_set(err, HS_UNAVAILABLE, "%s: cannot open: %s", path,
					    strerror(errno));
		if (!opts->create)
			return hs_error_set(err, HS_NOT_FOUND, "%s: missing", path);
		if ((rc = create_secret(path, opts->mode, err)) != HS_OK)
			return rc;
	}
	return hs_error_set(err, HS_INTERNAL, "%s: vanished after creation", path);
}
