/* Workspace ownership for sandboxes that run as another uid: before a run,
 * what harnessd wrote into the workspace (the directory tenancy created,
 * files a checkpoint restore wrote) is handed to the sandbox account, so the
 * agent can write its workspace and nothing else of harnessd's.
 *
 * The walk starts at a descriptor (never a path), opens every directory
 * with O_NOFOLLOW beneath its parent's descriptor and changes owners with
 * AT_SYMLINK_NOFOLLOW, so a link planted by an agent is never followed. Only
 * entries owned by harnessd's euid change hands, and a regular file with
 * more than one link is left alone (it could be a hard link to a file
 * outside the workspace). Depth is bounded; deeper levels stay as they are. */
#include "driver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define MAX_DEPTH 64

static bool ours(const struct stat *st, uid_t me)
{
	if (st->st_uid != me)
		return false;
	return S_ISDIR(st->st_mode) || S_ISLNK(st->st_mode) ||
	       (S_ISREG(st->st_mode) && st->st_nlink == 1);
}

/* dfd: an open (readable) directory; consumed. */
static int walk(int dfd, uid_t uid, gid_t gid, uid_t me, int depth, hs_error *err)
{
	int rc = HS_OK;
	DIR *d = fdopendir(dfd);
	if (d == NULL) {
		close(dfd);
		return hs_error_set(err, HS_UNAVAILABLE, "workspace: %s", strerror(errno));
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue; /* gone meanwhile */
		if (ours(&st, me) && fchownat(dirfd(d), n, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 &&
		    errno != ENOENT) {
			rc = hs_error_set(err, HS_UNAVAILABLE, "workspace %s: chown: %s", n,
					  strerror(errno));
			break;
		}
		if (!S_ISDIR(st.st_mode))
			continue;
		if (depth >= MAX_DEPTH) {
			hs_log(HS_LOG_WARN, "sandbox", "workspace deeper than the ownership walk",
			       HS_LI("max_depth", MAX_DEPTH));
			continue;
		}
		int sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue; /* replaced by a link or gone: not ours to follow */
		if ((rc = walk(sub, uid, gid, me, depth + 1, err)) != HS_OK)
			break;
	}
	closedir(d);
	return rc;
}

int hs_sandbox__chown_tree(int dirfd, uid_t uid, gid_t gid, hs_error *err)
{
	uid_t me = geteuid();
	struct stat st;
	if (fstatat(dirfd, "", &st, AT_EMPTY_PATH) != 0)
		return hs_error_set(err, HS_UNAVAILABLE, "workspace: %s", strerror(errno));
	if (st.st_uid == me && fchownat(dirfd, "", uid, gid, AT_EMPTY_PATH) != 0)
		return hs_error_set(err, HS_UNAVAILABLE, "workspace: chown: %s", strerror(errno));
	int d = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d < 0)
		return hs_error_set(err, HS_UNAVAILABLE, "workspace: %s", strerror(errno));
	return walk(d, uid, gid, me, 1, err);
}
