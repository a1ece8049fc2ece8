/* GetSandboxLogs: a sandbox's output log as a stream.
 *
 * The log is the file the leader writes (bwrap_launch.c), at its fixed
 * place in the sandbox's runtime dir: no request names a path. It only
 * grows, and is capped (log_max_bytes, with a note at the cut), so what a
 * stream can send is bounded by the cap; the rate by stream_rate.
 *
 * The start is computed at open (tail_lines: scanning back from the end in
 * blocks; tail_bytes), then the hub pumps the stream: pread from the
 * offset, one chunk at a time, until the end of the file. Without follow,
 * or once the sandbox stopped running (hs_sandbox__hub_sandbox_down, from
 * the manager's state change: the leader wrote everything before it
 * exited), the end of the file ends the stream; otherwise the stream waits
 * on an inotify watch of the file (polled every POLL_MS without inotify). */
#include "sandbox_internal.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAIL_BLOCK 32768
#define POLL_MS 250
#define BATCH 16 /* chunks per pump, then the other streams get a turn */

/* Offset of the first byte to send: the last `lines` lines (a last line
 * without a newline counts) and the last `bytes` bytes, whichever is less. */
static int tail_start(int fd, int64_t size, int64_t lines, int64_t bytes, int64_t *out,
		      hs_error *err)
{
	int64_t start = 0;
	if (lines > 0 && size > 0) {
		char *buf = malloc(TAIL_BLOCK);
		if (buf == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		char last = 0;
		int64_t pos = size, seen = 0;
		if (pread(fd, &last, 1, size - 1) == 1 && last == '\n')
			pos = size - 1; /* that newline ends the last line */
		bool found = false;
		while (pos > 0 && !found) {
			size_t k = pos > TAIL_BLOCK ? TAIL_BLOCK : (size_t)pos;
			if (pread(fd, buf, k, pos - (int64_t)k) != (ssize_t)k) {
				free(buf);
				return hs_error_set(err, HS_INTERNAL, "reading the log: %s",
						    strerror(errno ? errno : EIO));
			}
			for (size_t i = k; i-- > 0;) {
				if (buf[i] == '\n' && ++seen == lines) {
					start = pos - (int64_t)k + (int64_t)i + 1;
					found = true;
					break;
				}
			}
			pos -= (int64_t)k;
		}
		free(buf);
	}
	if (bytes > 0 && size - bytes > start)
		start = size - bytes;
	*out = start;
	return HS_OK;
}

int hs_sandbox_logs(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		    const hs_sandbox_logs_opts *opts, const hs_sandbox_sink *sink,
		    hs_sandbox_stream **out, hs_error *err)
{
	if (opts->tail_lines < 0 || opts->tail_lines > HS_SANDBOX_TAIL_LINES_MAX)
		return hs_error_set(err, HS_INVALID, "tail_lines: must be 0..%d",
				    HS_SANDBOX_TAIL_LINES_MAX);
	if (opts->tail_bytes < 0 || opts->tail_bytes > HS_SANDBOX_TAIL_BYTES_MAX)
		return hs_error_set(err, HS_INVALID, "tail_bytes: must be 0..%lld",
				    (long long)HS_SANDBOX_TAIL_BYTES_MAX);
	if (opts->limit_bytes < 0)
		return hs_error_set(err, HS_INVALID, "limit_bytes: must not be negative");
	hs_sandbox__entry *e = NULL;
	int rc = hs_sandbox__acquire(mgr, caller, id, "GetSandboxLogs", 0, &e, err);
	if (rc != HS_OK)
		return rc;
	hs_sandbox_stream *s = NULL;
	int fd = -1;
	if (e->drv != &hs_sandbox__bwrap_driver) {
		rc = hs_error_set(err, HS_UNIMPLEMENTED,
				  "GetSandboxLogs: %s sandboxes need a guest agent for their logs "
				  "(not available yet)", e->drv->name);
		goto done;
	}
	bool live = e->row.state == HS_SANDBOX_RUNNING || e->row.state == HS_SANDBOX_PAUSED;
	if ((rc = hs_sandbox__stream_new(mgr->hub, HS_STREAM_LOGS, &hs_sandbox__logs_ops, id,
					 caller->who.user_id, sink, &s, err)) != HS_OK)
		goto done;
	int64_t size = 0, start = 0;
	fd = open(e->rec.log_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno != ENOENT) { /* ENOENT: never started, nothing written */
		rc = hs_error_set(err, HS_INTERNAL, "sandbox %s log: %s", id, strerror(errno));
		goto done;
	}
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0)
		size = st.st_size;
	if (fd >= 0 && (rc = tail_start(fd, size, opts->tail_lines, opts->tail_bytes, &start,
					err)) != HS_OK)
		goto done;
	s->u.log.fd = fd;
	s->u.log.offset = start;
	s->u.log.left = opts->limit_bytes > 0 ? opts->limit_bytes : -1;
	s->u.log.follow = opts->follow && live && fd >= 0;
	s->u.log.wd = -1;
	snprintf(s->u.log.path, sizeof(s->u.log.path), "%s", e->rec.log_path);
	s->deadline = opts->deadline_ms;
	fd = -1;
	/* Under the entry's lock: a stop after this point reaches the stream
	 * (it is in the hub's list since stream_new). */
	hs_sandbox__stream_start(s);
	*out = s;
	s = NULL;
done:
	if (fd >= 0)
		close(fd);
	if (s != NULL)
		hs_sandbox__stream_discard(s);
	hs_sandbox__release(mgr, e);
	return rc;
}

static void logs_pump(hs_sandbox_stream *s, int64_t now)
{
	if (s->cancel_seen) {
		hs_sandbox__stream_end(s, HS_CANCELLED, "cancelled");
		return;
	}
	if (s->deadline > 0) {
		if (now >= s->deadline) {
			hs_sandbox__stream_end(s, HS_TIMEOUT, "deadline exceeded");
			return;
		}
		hs_sandbox__stream_later(s, s->deadline);
	}
	if (hs_sandbox__stream_flush(s, now) != HS_OK)
		return;
	if (s->u.log.follow && s->u.log.wd == -1) { /* -2: tried, none: poll */
		int wd = hs_sandbox__hub_watch_file(s->hub, s->u.log.path);
		s->u.log.wd = wd >= 0 ? wd : -2;
	}
	/* Read before deciding: final is a snapshot taken before this pump. */
	bool final = !s->u.log.follow || s->final_seen;
	for (int i = 0; i < BATCH; i++) {
		if (s->u.log.left == 0) {
			hs_sandbox__stream_end(s, HS_OK, "limit_bytes reached");
			return;
		}
		size_t want = hs_sandbox__stream_budget(s, now);
		if (want == 0)
			return;
		if (s->u.log.left > 0 && (int64_t)want > s->u.log.left)
			want = (size_t)s->u.log.left;
		ssize_t n = s->u.log.fd >= 0 ? pread(s->u.log.fd, s->buf, want, s->u.log.offset) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			hs_sandbox__stream_end(s, HS_INTERNAL, "reading the log of %s: %s",
					       s->sandbox_id, strerror(errno));
			return;
		}
		if (n == 0) {
			if (final)
				hs_sandbox__stream_end(s, HS_OK, "end of log");
			else if (s->u.log.wd < 0)
				hs_sandbox__stream_later(s, now + POLL_MS);
			return;
		}
		hs_sandbox_out o = { .kind = HS_SANDBOX_OUT_LOG, .data = s->buf, .len = (size_t)n,
				     .offset = s->u.log.offset };
		s->u.log.offset += n;
		if (s->u.log.left > 0)
			s->u.log.left -= n;
		if (hs_sandbox__stream_offer(s, &o, now) != HS_OK)
			return;
	}
	hs_sandbox__stream_later(s, now); /* more to read: next round */
}

static void logs_dispose(hs_sandbox_stream *s)
{
	if (s->u.log.wd >= 0)
		hs_sandbox__hub_unwatch_file(s->hub, s->u.log.wd);
	if (s->u.log.fd >= 0)
		close(s->u.log.fd);
	s->u.log.fd = -1;
}

const hs_sandbox__stream_ops hs_sandbox__logs_ops = { logs_pump, logs_dispose };
