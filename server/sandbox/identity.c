/* Who sandboxes run as, and what this harnessd may do about it.
 *
 * The sandbox account (--sandbox-uid/--sandbox-gid, default the account
 * "harness-sandbox" that scripts/sandbox-account.sh, the Dockerfile and the
 * chart create) is an unprivileged identity distinct from harnessd's: a
 * sandboxed process then owns nothing of harnessd's (its 0600 files, its
 * process), whatever it manages to see. uid 0 is never accepted; harnessd's
 * own uid only with allow_same_uid (development, where harnessd is not
 * root and cannot switch).
 *
 * Switching needs CAP_SETUID and CAP_SETGID (root). With CAP_SYS_ADMIN as
 * well, the launch prepares its bind sources in a private mount namespace
 * (the "portal", bwrap_launch.c) so the sandbox account never walks a host
 * path; with CAP_CHOWN the workspace is handed to the sandbox account. */
#include "driver.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DEFAULT_ACCOUNT "harness-sandbox"

static bool has_cap(int cap)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) != 0)
		return false;
	return (d[cap / 32].effective >> (cap % 32)) & 1u;
}

/* A decimal id: all digits, below 2^31. */
static bool parse_id(const char *s, unsigned long *out)
{
	if (s == NULL || s[0] < '0' || s[0] > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > 0x7fffffffUL)
		return false;
	*out = v;
	return true;
}

static int resolve_user(const char *spec, uid_t *uid, gid_t *primary, bool *has_primary,
			hs_error *err)
{
	unsigned long v;
	struct passwd pw, *res = NULL;
	char buf[4096];
	*has_primary = false;
	if (parse_id(spec, &v)) {
		*uid = (uid_t)v;
		if (getpwuid_r(*uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL) {
			*primary = pw.pw_gid;
			*has_primary = true;
		}
		return HS_OK;
	}
	int e = getpwnam_r(spec, &pw, buf, sizeof(buf), &res);
	if (e != 0 || res == NULL)
		return hs_error_set(err, HS_UNAVAILABLE,
				    "sandbox-uid: no account \"%.64s\" (create it with "
				    "scripts/sandbox-account.sh, or name a uid)",
				    spec);
	*uid = pw.pw_uid;
	*primary = pw.pw_gid;
	*has_primary = true;
	return HS_OK;
}

static int resolve_group(const char *spec, gid_t *gid, hs_error *err)
{
	unsigned long v;
	struct group gr, *res = NULL;
	char buf[8192];
	if (parse_id(spec, &v)) {
		*gid = (gid_t)v;
		return HS_OK;
	}
	int e = getgrnam_r(spec, &gr, buf, sizeof(buf), &res);
	if (e != 0 || res == NULL)
		return hs_error_set(err, HS_UNAVAILABLE, "sandbox-gid: no group \"%.64s\"", spec);
	*gid = gr.gr_gid;
	return HS_OK;
}

static int resolve_init(const hs_sandbox_config *cfg, char *out, size_t cap, hs_error *err)
{
	if (cfg->init_bin != NULL && cfg->init_bin[0] != '\0') {
		if (hs_sandbox__path(out, cap, err, "sandbox init", "%s", cfg->init_bin) != HS_OK)
			return HS_INVALID;
	} else {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0)
			return hs_error_set(err, HS_UNAVAILABLE, "/proc/self/exe: %s",
					    strerror(errno));
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash != NULL)
			*slash = '\0';
		if (hs_sandbox__path(out, cap, err, "sandbox init", "%s/harness-sandbox-init",
				     self) != HS_OK)
			return HS_INVALID;
	}
	if (out[0] != '/' || access(out, X_OK) != 0)
		return hs_error_set(err, HS_UNAVAILABLE, "sandbox init %s: %s", out,
				    out[0] != '/' ? "not an absolute path" : strerror(errno));
	return HS_OK;
}

int hs_sandbox__identity(const hs_sandbox_config *cfg, hs_sandbox_host *out, hs_error *err)
{
	int rc;
	hs_sandbox_host h;
	memset(&h, 0, sizeof(h));
	const char *user = cfg->sandbox_user && cfg->sandbox_user[0] ? cfg->sandbox_user
								       : DEFAULT_ACCOUNT;
	gid_t primary = 0;
	bool has_primary = false;
	if ((rc = resolve_user(user, &h.uid, &primary, &has_primary, err)) != HS_OK)
		return rc;
	if (cfg->sandbox_group != NULL && cfg->sandbox_group[0] != '\0') {
		if ((rc = resolve_group(cfg->sandbox_group, &h.gid, err)) != HS_OK)
			return rc;
	} else {
		h.gid = has_primary ? primary : (gid_t)h.uid;
	}
	if (h.uid == 0 || h.gid == 0)
		return hs_error_set(err, HS_UNAVAILABLE,
				    "sandbox-uid/sandbox-gid: %u:%u; root (0) is never a sandbox identity",
				    (unsigned)h.uid, (unsigned)h.gid);
	uid_t me = geteuid();
	gid_t my_gid = getegid();
	if (h.uid == me && !cfg->allow_same_uid)
		return hs_error_set(err, HS_UNAVAILABLE,
				    "sandbox-uid: %u is harnessd's own uid, so a sandbox would own "
				    "harnessd's files (use a dedicated account, or "
				    "--sandbox-allow-same-uid for development)",
				    (unsigned)h.uid);
	h.switch_uid = h.uid != me || h.gid != my_gid;
	if (h.switch_uid && (!has_cap(CAP_SETUID) || !has_cap(CAP_SETGID)))
		return hs_error_set(err, HS_UNAVAILABLE,
				    "harnessd (uid %u) cannot switch to the sandbox identity %u:%u "
				    "(needs CAP_SETUID and CAP_SETGID, e.g. run as root)",
				    (unsigned)me, (unsigned)h.uid, (unsigned)h.gid);
	h.portal = h.switch_uid && has_cap(CAP_SYS_ADMIN);
	h.chown_workspace = h.switch_uid && has_cap(CAP_CHOWN);
	if ((rc = resolve_init(cfg, h.init_bin, sizeof(h.init_bin), err)) != HS_OK)
		return rc;
	*out = h;
	return HS_OK;
}

int hs_sandbox__instance_id(const char *runtime_root, char out[17], hs_error *err)
{
	char path[PATH_MAX], buf[32];
	if (hs_sandbox__path(path, sizeof(path), err, "instance id path", "%s/instance-id",
			     runtime_root) != HS_OK)
		return HS_INVALID;
	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0) {
			ssize_t n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n >= 16 && strspn(buf, "0123456789abcdef") >= 16) {
				memcpy(out, buf, 16);
				out[16] = '\0';
				return HS_OK;
			}
			return hs_error_set(err, HS_INTERNAL, "%s: not an instance id", path);
		}
		if (errno != ENOENT)
			return hs_error_set(err, HS_UNAVAILABLE, "%s: %s", path, strerror(errno));
		char id[32];
		hs_sandbox__gen_id("", id, sizeof(id));
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EEXIST)
			continue; /* another instance on this data dir was first */
		if (fd < 0)
			return hs_error_set(err, HS_UNAVAILABLE, "create %s: %s", path,
					    strerror(errno));
		int len = snprintf(buf, sizeof(buf), "%s\n", id);
		bool ok = write(fd, buf, (size_t)len) == len && fsync(fd) == 0;
		close(fd);
		if (!ok) {
			unlink(path);
			return hs_error_set(err, HS_UNAVAILABLE, "write %s: %s", path,
					    strerror(errno));
		}
	}
	return hs_error_set(err, HS_INTERNAL, "%s: cannot be read or created", path);
}
