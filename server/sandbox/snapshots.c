/* Snapshots: SnapshotSandbox, RestoreSandbox and ListSnapshots.
 *
 * Files live in <runtime_dir>/snapshots/<snapshot_id>/{vmstate,mem}; rows in
 * the store's snapshots table. A Full snapshot's mem file is the whole guest
 * memory; a Diff snapshot's is sparse (only pages dirtied since the previous
 * snapshot). Restoring a Diff snapshot therefore layers the chain: the
 * newest Full snapshot before it, then every Diff after that one up to the
 * target, copied data-extent by data-extent (SEEK_DATA/SEEK_HOLE) into
 * <snapshot dir>/mem.merged, which the new VMM maps (it must stay until the
 * sandbox is destroyed). The chain assumes diffs were taken in one process
 * lineage, which holds because every restore loads full memory and starts
 * dirty-page tracking afresh only for later diffs of that lineage. That Full
 * snapshot is chosen when the Diff is taken (the newest Full one then) and
 * recorded as its base_snapshot_id; a Diff without a Full before it is
 * refused (HS_CONFLICT), since it could never be restored. */
#include "sandbox_internal.h"
#include "ids.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static int no_memory_snapshots(hs_sandbox__entry *e, hs_error *err)
{
	return hs_error_set(err, HS_CONFLICT, "sandbox %s: bwrap sandboxes have no memory snapshots",
			    e->rec.id);
}

static int64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* The id of the sandbox's newest Full snapshot (the base of a new Diff);
 * HS_CONFLICT if it has none. */
static int newest_full(hs_sandbox_mgr *mgr, const char *id, char *out, size_t cap, hs_error *err)
{
	hs_store_snapshot_row *rows = NULL;
	size_t n = 0;
	int rc = hs_store_snapshot_list_by_sandbox(mgr->store, id, &rows, &n, err);
	if (rc != HS_OK)
		return rc;
	size_t i = n;
	while (i-- > 0 && strcmp(rows[i].type, "full") != 0)
		;
	if (i < n)
		snprintf(out, cap, "%s", rows[i].snapshot_id);
	else
		rc = hs_error_set(err, HS_CONFLICT,
				  "sandbox %s has no full snapshot; a diff snapshot needs one to layer on",
				  id);
	free(rows);
	return rc;
}

int hs_sandbox_snapshot(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
			hs_sandbox_snapshot_type type, hs_sandbox_snapshot_info *out,
			hs_error *err)
{
	hs_sandbox__entry *e = NULL;
	hs_store_snapshot_row row = { 0 };
	char dir[PATH_MAX];
	int rc = hs_sandbox__acquire(mgr, caller, id, "SnapshotSandbox", 0, &e, err);
	if (rc != HS_OK)
		return rc;
	dir[0] = '\0';
	if (e->drv == &hs_sandbox__bwrap_driver) {
		rc = no_memory_snapshots(e, err);
		goto done;
	}
	if (type != HS_SNAPSHOT_FULL && type != HS_SNAPSHOT_DIFF) {
		rc = hs_error_set(err, HS_INVALID, "type: must be full or diff");
		goto done;
	}
	if (e->row.state != HS_SANDBOX_PAUSED) {
		rc = hs_error_set(err, HS_CONFLICT, "sandbox %s is %s; SnapshotSandbox needs PAUSED",
				  id, hs_sandbox_state_name(e->row.state));
		goto done;
	}
	if (type == HS_SNAPSHOT_DIFF &&
	    (rc = newest_full(mgr, id, row.base_snapshot_id, sizeof(row.base_snapshot_id), err)) !=
		    HS_OK)
		goto done;
	hs_sandbox__gen_id("snap-", row.snapshot_id, sizeof(row.snapshot_id));
	snprintf(row.sandbox_id, sizeof(row.sandbox_id), "%s", id);
	snprintf(row.type, sizeof(row.type), "%s", type == HS_SNAPSHOT_DIFF ? "diff" : "full");
	if ((rc = hs_sandbox__path(dir, sizeof(dir), err, "snapshot dir", "%s/snapshots/%s",
				   e->rec.runtime_dir, row.snapshot_id)) != HS_OK ||
	    (rc = hs_sandbox__path(row.snapshot_path, sizeof(row.snapshot_path), err,
				   "snapshot path", "%s/vmstate", dir)) != HS_OK ||
	    (rc = hs_sandbox__path(row.mem_file_path, sizeof(row.mem_file_path), err, "mem path",
				   "%s/mem", dir)) != HS_OK ||
	    (rc = hs_sandbox__mkdirs(dir, 0750, err)) != HS_OK) {
		dir[0] = '\0';
		goto done;
	}
	hs_error derr = { 0 };
	rc = e->drv->snapshot(&mgr->cfg, &e->rec, type, row.snapshot_path, row.mem_file_path,
			      caller->timeout_ms, &derr);
	if (rc != HS_OK) {
		rc = hs_error_set(err, rc, "%s", derr.msg);
		hs_sandbox__check_exit(mgr, e, derr.msg, rc == HS_UNAVAILABLE ? 500 : 0);
		goto done;
	}
	row.created_at_ms = hs_clock_wall_ms();
	row.size_bytes = file_size(row.snapshot_path) + file_size(row.mem_file_path);
	if ((rc = hs_store_snapshot_insert(mgr->store, &row, err)) != HS_OK)
		goto done;
	hs_log(HS_LOG_INFO, "sandbox", "snapshot created", HS_LS("sandbox_id", id),
	       HS_LS("snapshot_id", row.snapshot_id), HS_LS("type", row.type),
	       HS_LI("size_bytes", row.size_bytes));
	dir[0] = '\0'; /* keep it */
	if (out != NULL)
		rc = hs_sandbox__snapshot_from_row(&row, out, err);
done:
	if (dir[0] != '\0')
		hs_sandbox__rmtree(dir, NULL);
	hs_sandbox__release(mgr, e);
	return rc;
}

/* Copy the data extents of a sparse diff mem file over `out` at the same
 * offsets. */
static int apply_diff(const char *diff, int out, hs_error *err)
{
	int rc = HS_OK;
	char *buf = NULL;
	int in = open(diff, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return hs_error_set(err, HS_INTERNAL, "open %s: %s", diff, strerror(errno));
	buf = malloc(1 << 16);
	if (buf == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		goto done;
	}
	off_t off = 0;
	for (;;) {
		off_t data = lseek(in, off, SEEK_DATA);
		if (data < 0)
			break; /* ENXIO: no more data */
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0) {
			rc = hs_error_set(err, HS_INTERNAL, "seek %s: %s", diff, strerror(errno));
			goto done;
		}
		for (off_t p = data; p < hole;) {
			size_t want = (size_t)(hole - p) < (1 << 16) ? (size_t)(hole - p) : (1 << 16);
			ssize_t n = pread(in, buf, want, p);
			if (n <= 0 || pwrite(out, buf, (size_t)n, p) != n) {
				rc = hs_error_set(err, HS_INTERNAL, "merge %s: %s", diff,
						  strerror(errno));
				goto done;
			}
			p += n;
		}
		off = hole;
	}
done:
	free(buf);
	close(in);
	return rc;
}

/* The mem file to load for `target`: its own (Full) or a merged chain (Diff). */
static int memory_for(hs_sandbox_mgr *mgr, const hs_store_snapshot_row *target, char *mem,
		      size_t cap, hs_error *err)
{
	if (strcmp(target->type, "diff") != 0)
		return hs_sandbox__path(mem, cap, err, "mem path", "%s", target->mem_file_path);
	hs_store_snapshot_row *rows = NULL;
	size_t n = 0;
	int rc = hs_store_snapshot_list_by_sandbox(mgr->store, target->sandbox_id, &rows, &n, err);
	if (rc != HS_OK)
		return rc;
	size_t at = n, base = n;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(rows[i].snapshot_id, target->snapshot_id) == 0)
			at = i;
	}
	/* The recorded base; rows from before it was recorded name none: the
	 * newest Full before the target, the rule it is recorded by. */
	for (size_t i = at; at < n && i-- > 0;) {
		if (target->base_snapshot_id[0] != '\0'
			    ? strcmp(rows[i].snapshot_id, target->base_snapshot_id) == 0
			    : strcmp(rows[i].type, "full") == 0) {
			base = i;
			break;
		}
	}
	if (at == n || base == n) {
		rc = hs_error_set(err, HS_CONFLICT, "diff snapshot %s has no full snapshot before it",
				  target->snapshot_id);
		goto done;
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", target->mem_file_path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL)
		*slash = '\0';
	if ((rc = hs_sandbox__path(mem, cap, err, "mem path", "%s/mem.merged", dir)) != HS_OK)
		goto done;
	unlink(mem);
	if ((rc = hs_sandbox__copy_file(rows[base].mem_file_path, mem, err)) != HS_OK)
		goto done;
	int fd = open(mem, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "open %s: %s", mem, strerror(errno));
		goto done;
	}
	for (size_t i = base + 1; i <= at && rc == HS_OK; i++)
		rc = apply_diff(rows[i].mem_file_path, fd, err);
	close(fd);
done:
	free(rows);
	return rc;
}

int hs_sandbox_restore(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		       const char *snapshot_id, bool resume, hs_sandbox_info *out,
		       hs_error *err)
{
	hs_sandbox__entry *e = NULL;
	hs_store_snapshot_row *snap = NULL;
	char mem[PATH_MAX];
	const unsigned need = HS_NEED(HS_SANDBOX_RUNNING) | HS_NEED(HS_SANDBOX_PAUSED) |
			      HS_NEED(HS_SANDBOX_STOPPED) | HS_NEED(HS_SANDBOX_FAILED);
	int rc;
	if (snapshot_id != NULL && snapshot_id[0] != '\0' &&
	    (rc = hs_id_check_name("snapshot_id", snapshot_id, err)) != HS_OK)
		return rc;
	rc = hs_sandbox__acquire(mgr, caller, id, "RestoreSandbox", 0, &e, err);
	if (rc != HS_OK)
		return rc;
	if (e->drv == &hs_sandbox__bwrap_driver) {
		rc = no_memory_snapshots(e, err);
		goto done;
	}
	if (!(need & HS_NEED(e->row.state))) {
		rc = hs_error_set(err, HS_CONFLICT,
				  "sandbox %s is %s; RestoreSandbox needs RUNNING, PAUSED, STOPPED "
				  "or FAILED",
				  id, hs_sandbox_state_name(e->row.state));
		goto done;
	}
	snap = calloc(1, sizeof(*snap));
	if (snap == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		goto done;
	}
	if (snapshot_id != NULL && snapshot_id[0] != '\0') {
		rc = hs_store_snapshot_get(mgr->store, snapshot_id, snap, NULL);
		if (rc == HS_NOT_FOUND || (rc == HS_OK && strcmp(snap->sandbox_id, id) != 0)) {
			rc = hs_error_set(err, HS_NOT_FOUND, "snapshot %.64s of sandbox %s not found",
					  snapshot_id, id);
			goto done;
		}
	} else {
		rc = hs_store_snapshot_latest_for_sandbox(mgr->store, id, snap, NULL);
		if (rc == HS_NOT_FOUND) {
			rc = hs_error_set(err, HS_CONFLICT, "sandbox %s has no snapshots to restore",
					  id);
			goto done;
		}
	}
	if (rc != HS_OK) {
		rc = hs_error_set(err, rc, "sandbox %s: cannot read snapshots", id);
		goto done;
	}
	if ((rc = memory_for(mgr, snap, mem, sizeof(mem), err)) != HS_OK)
		goto done;
	hs_error derr = { 0 };
	rc = e->drv->restore(&mgr->cfg, &e->rec, snap->snapshot_path, mem, resume,
			     caller->timeout_ms, &derr);
	if (rc != HS_OK) {
		e->rec.pid = 0; /* the driver removed what it started */
		hs_sandbox__set_state(mgr, e, HS_SANDBOX_FAILED, derr.msg, NULL);
		rc = hs_error_set(err, rc, "%s", derr.msg);
		goto done;
	}
	hs_log(HS_LOG_INFO, "sandbox", "restored", HS_LS("sandbox_id", id),
	       HS_LS("snapshot_id", snap->snapshot_id), HS_LB("resume", resume));
	e->row.exit_code = -1;
	rc = hs_sandbox__set_state(mgr, e, resume ? HS_SANDBOX_RUNNING : HS_SANDBOX_PAUSED, NULL,
				   err);
	if (rc == HS_OK && out != NULL)
		rc = hs_sandbox__info_from_row(&e->row, out, err);
done:
	free(snap);
	hs_sandbox__release(mgr, e);
	return rc;
}

int hs_sandbox_list_snapshots(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller,
			      const char *id, hs_sandbox_snapshot_info **out, size_t *n_out,
			      hs_error *err)
{
	hs_sandbox__entry *e = NULL;
	hs_store_snapshot_row *rows = NULL;
	hs_sandbox_snapshot_info *v = NULL;
	size_t n = 0, k = 0;
	int rc = hs_sandbox__acquire(mgr, caller, id, "ListSnapshots", 0, &e, err);
	if (rc != HS_OK)
		return rc;
	if ((rc = hs_store_snapshot_list_by_sandbox(mgr->store, id, &rows, &n, err)) != HS_OK)
		goto done;
	v = calloc(n ? n : 1, sizeof(*v));
	if (v == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		goto done;
	}
	for (; k < n; k++) {
		if ((rc = hs_sandbox__snapshot_from_row(&rows[k], &v[k], err)) != HS_OK)
			goto done;
	}
	*out = v;
	*n_out = n;
	v = NULL;
done:
	hs_sandbox_snapshot_info_array_free(v, k);
	free(rows);
	hs_sandbox__release(mgr, e);
	return rc;
}
