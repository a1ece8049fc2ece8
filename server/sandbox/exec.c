/* ExecSandbox: a command run inside a RUNNING bwrap sandbox.
 *
 * Design. harnessd never enters a sandbox itself: the sandbox's own init
 * (harness-sandbox-init, its supervisor) starts the command as its child,
 * so the command inherits exactly what the entrypoint has (uid/gid, no
 * capabilities, no_new_privs, the seccomp filter, the namespaces, the mount
 * view, the cgroup) and no code of ours with more privilege ever runs in
 * the sandbox's namespaces. See sandbox_init.c and docs/security.md.
 *
 * Opening (here, on the caller's thread, with the sandbox locked so it
 * cannot be paused or stopped meanwhile): the request is checked (the argv
 * and environment rules of CreateSandbox, working_dir resolved beneath the
 * workspace without links), three pipes are made, and one message goes to
 * the init over <runtime dir>/exec.sock carrying the argv, environment and
 * directory, with the command's ends of the pipes. The init answers once
 * the command was executed, or why not (then the call fails: INVALID for a
 * command or directory that does not work).
 *
 * Running (the hub thread, exec_pump): stdin bytes queued by the caller
 * (at most HS_SANDBOX__STDIN_CAP; the caller is told to wait above the low
 * mark and resumed by sink->stdin_ready) are written as the pipe takes
 * them; stdout and stderr are read one chunk at a time, only when the
 * previous chunk was delivered and the rate allows (so a slow client makes
 * the command block on a full pipe, never harnessd buffer). The init
 * reports the end ("X<status>" / "K<signal>"); what the command wrote
 * before it is drained, then EXIT is delivered. Closing our connection
 * (cancel, deadline, output limit, shutdown, any end) makes the init kill
 * the command's process group. */
#include "bwrap.h"
#include "sandbox_internal.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "tenancy.h"

#define REQUEST_MAX (64 * 1024) /* command + env */
#define WORKING_DIR_MAX 1023
#define DRAIN_AFTER_EXIT (1 << 20) /* output still read after the exit report */
#define BATCH 16

enum { W_CTL, W_OUT, W_ERR, W_IN };

/* ---- opening --------------------------------------------------------------- */

static int check_spec(const hs_sandbox_exec_spec *spec, hs_error *err)
{
	int rc;
	if (spec->command_len == 0)
		return hs_error_set(err, HS_INVALID, "command: required");
	if ((rc = hs_sandbox__check_argv("command", spec->command, spec->command_len, err)) !=
		    HS_OK ||
	    (rc = hs_sandbox__check_env(spec->env, spec->env_len, err)) != HS_OK)
		return rc;
	size_t total = 0;
	for (size_t i = 0; i < spec->command_len; i++)
		total += strlen(spec->command[i] ? spec->command[i] : "") + 1;
	for (size_t i = 0; i < spec->env_len; i++)
		total += strlen(spec->env[i].key) + strlen(spec->env[i].value ? spec->env[i].value : "") +
			 2;
	if (total > REQUEST_MAX)
		return hs_error_set(err, HS_INVALID, "command and env: more than %d bytes together",
				    REQUEST_MAX);
	if (spec->tty)
		return hs_error_set(err, HS_INVALID,
				    "tty: not supported yet (stdin, stdout and stderr are pipes)");
	if (spec->working_dir != NULL && strlen(spec->working_dir) > WORKING_DIR_MAX)
		return hs_error_set(err, HS_INVALID, "working_dir: longer than %d characters",
				    WORKING_DIR_MAX);
	return HS_OK;
}

/* The directory to run in, as the sandbox sees it ("" = the init's own:
 * the workspace, or "/"). Checked on the host beneath the workspace, one
 * component at a time, never through a link. That check is for the caller's
 * sake: the init changes into it inside the sandbox, where a link the agent
 * swaps in can only lead to what the sandbox sees anyway. */
static int resolve_cwd(const hs_sandbox_config *cfg, const hs_sandbox__rec *rec, const char *wd,
		       char *out, size_t cap, hs_error *err)
{
	out[0] = '\0';
	if (wd == NULL || wd[0] == '\0')
		return HS_OK;
	if (rec->workspace_name[0] == '\0')
		return hs_error_set(err, HS_INVALID,
				    "working_dir: sandbox %s has no workspace (leave it empty)", rec->id);
	int ws = -1, dir = -1, rc;
	hs_error sub = { 0 };
	rc = hs_tenancy_open_workspace(cfg->tenancy, NULL, NULL, rec->workspace_name, 0, &ws,
				       NULL, &sub);
	if (rc == HS_OK)
		rc = hs_tenancy_open_beneath(ws, wd, 0, &dir, &sub);
	if (ws >= 0)
		close(ws);
	if (dir >= 0)
		close(dir);
	if (rc != HS_OK) {
		const char *m = strncmp(sub.msg, "workspace: ", 11) == 0 ? sub.msg + 11 : sub.msg;
		return hs_error_set(err, rc, "working_dir \"%.200s\": %s", wd, m);
	}
	return hs_sandbox__path(out, cap, err, "working_dir", "%s/%s", rec->workspace, wd);
}

static void put_u32(char *p, uint32_t v) { memcpy(p, &v, sizeof(v)); }

/* The request message (sandbox_init.c): malloc'd into *out / *len. */
static int build_request(const hs_sandbox_exec_spec *spec, const char *cwd, char **out,
			 size_t *len, hs_error *err)
{
	size_t n = 12 + strlen(cwd) + 1;
	for (size_t i = 0; i < spec->command_len; i++)
		n += strlen(spec->command[i]) + 1;
	for (size_t i = 0; i < spec->env_len; i++)
		n += strlen(spec->env[i].key) + 1 + strlen(spec->env[i].value ? spec->env[i].value : "") +
		     1;
	char *buf = malloc(n), *p = buf;
	if (buf == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	memcpy(p, "HSX1", 4);
	put_u32(p + 4, (uint32_t)spec->command_len);
	put_u32(p + 8, (uint32_t)spec->env_len);
	p += 12;
	p = stpcpy(p, cwd) + 1;
	for (size_t i = 0; i < spec->command_len; i++)
		p = stpcpy(p, spec->command[i]) + 1;
	for (size_t i = 0; i < spec->env_len; i++) {
		p = stpcpy(p, spec->env[i].key);
		*p++ = '=';
		p = stpcpy(p, spec->env[i].value ? spec->env[i].value : "") + 1;
	}
	*out = buf;
	*len = n;
	return HS_OK;
}

static int send_request(int ctl, const char *req, size_t len, const int fds[3], hs_error *err)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(3 * sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = { (void *)req, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(3 * sizeof(int));
	memcpy(CMSG_DATA(c), fds, 3 * sizeof(int));
	ssize_t n;
	while ((n = sendmsg(ctl, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)len)
		return hs_error_set(err, HS_UNAVAILABLE, "the sandbox does not accept commands: %s",
				    n < 0 ? strerror(errno) : "short write");
	return HS_OK;
}

/* The init's answer to a request within ms. */
static int await_start(int ctl, unsigned ms, const hs_sandbox_exec_spec *spec, const char *wd,
		       const char *id, hs_error *err)
{
	struct pollfd p = { ctl, POLLIN, 0 };
	int r;
	while ((r = poll(&p, 1, (int)ms)) < 0 && errno == EINTR)
		;
	if (r == 0)
		return hs_error_set(err, HS_UNAVAILABLE,
				    "sandbox %s did not start the command within %u ms", id, ms);
	char msg[32];
	ssize_t n = r > 0 ? recv(ctl, msg, sizeof(msg) - 1, 0) : -1;
	if (n <= 0)
		return hs_error_set(err, HS_UNAVAILABLE,
				    "sandbox %s did not accept the command (its init is busy or gone)",
				    id);
	msg[n] = '\0';
	char *end;
	long v = strtol(msg + 1, &end, 10);
	if (*end != '\0' || v < 0 || v > 4095)
		return hs_error_set(err, HS_INTERNAL, "sandbox %s: bad answer from its init", id);
	int e = (int)v;
	switch (msg[0]) {
	case 'S':
		return HS_OK;
	case 'C':
		return hs_error_set(err, e == ENOENT ? HS_NOT_FOUND : HS_INVALID,
				    "working_dir \"%.200s\": %s", wd ? wd : "", strerror(e));
	case 'E':
		if (e == ENOENT || e == EACCES || e == ENOEXEC || e == ENOTDIR || e == ELOOP ||
		    e == ENAMETOOLONG || e == EISDIR)
			return hs_error_set(err, HS_INVALID, "command[0] \"%.128s\": %s",
					    spec->command[0], strerror(e));
		if (e == EINVAL)
			return hs_error_set(err, HS_INTERNAL, "sandbox %s refused the request", id);
		return hs_error_set(err, HS_UNAVAILABLE, "command[0] \"%.128s\": %s",
				    spec->command[0], strerror(e));
	}
	return hs_error_set(err, HS_INTERNAL, "sandbox %s: bad answer from its init", id);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int hs_sandbox_exec(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		    const hs_sandbox_exec_spec *spec, const hs_sandbox_sink *sink,
		    hs_sandbox_stream **out, hs_error *err)
{
	int rc;
	if ((rc = check_spec(spec, err)) != HS_OK)
		return rc;
	hs_sandbox__entry *e = NULL;
	if ((rc = hs_sandbox__acquire(mgr, caller, id, "ExecSandbox", HS_NEED(HS_SANDBOX_RUNNING),
				      &e, err)) != HS_OK)
		return rc;
	hs_sandbox_stream *s = NULL;
	char *req = NULL;
	size_t req_len = 0;
	int in[2] = { -1, -1 }, outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, ctl = -1;
	char cwd[PATH_MAX];
	if (e->drv != &hs_sandbox__bwrap_driver) {
		rc = hs_error_set(err, HS_UNIMPLEMENTED,
				  "ExecSandbox: %s sandboxes need a guest agent to run commands "
				  "(not available yet)", e->drv->name);
		goto done;
	}
	if ((rc = resolve_cwd(&mgr->cfg, &e->rec, spec->working_dir, cwd, sizeof(cwd), err)) !=
		    HS_OK ||
	    (rc = build_request(spec, cwd, &req, &req_len, err)) != HS_OK ||
	    (rc = hs_sandbox__stream_new(mgr->hub, HS_STREAM_EXEC, &hs_sandbox__exec_ops, id,
					 caller->who.user_id, sink, &s, err)) != HS_OK)
		goto done;
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(outp, O_CLOEXEC) != 0 ||
	    pipe2(errp, O_CLOEXEC) != 0 || nonblock(in[1]) != 0 || nonblock(outp[0]) != 0 ||
	    nonblock(errp[0]) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "pipe: %s", strerror(errno));
		goto done;
	}
	if ((rc = hs_sandbox__bw_exec_connect(e->rec.runtime_dir, &ctl, err)) != HS_OK)
		goto done;
	const int fds[3] = { in[0], outp[1], errp[1] };
	unsigned ms = mgr->cfg.api_timeout_ms;
	if (spec->deadline_ms > 0) {
		int64_t left = spec->deadline_ms - hs_clock_mono_ms();
		ms = hs_sandbox__bound(ms, left <= 0 ? 1 : (left > ms ? ms : (unsigned)left));
	}
	if ((rc = send_request(ctl, req, req_len, fds, err)) != HS_OK ||
	    (rc = await_start(ctl, ms, spec, spec->working_dir, id, err)) != HS_OK)
		goto done;
	if (nonblock(ctl) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "exec socket: %s", strerror(errno));
		goto done;
	}
	s->u.exec.ctl = ctl;
	s->u.exec.in = in[1];
	s->u.exec.out = outp[0];
	s->u.exec.err = errp[0];
	s->u.exec.output_max = mgr->cfg.exec_output_max;
	s->deadline = spec->deadline_ms;
	ctl = in[1] = outp[0] = errp[0] = -1;
	hs_sandbox__stream_start(s);
	hs_log(HS_LOG_INFO, "sandbox", "exec started", HS_LS("sandbox_id", id),
	       HS_LS("user", caller->who.user_id), HS_LS("command", spec->command[0]));
	*out = s;
	s = NULL;
done:
	/* Our copies of the command's ends, and everything on a failure. */
	close_fd(&in[0]);
	close_fd(&outp[1]);
	close_fd(&errp[1]);
	close_fd(&in[1]);
	close_fd(&outp[0]);
	close_fd(&errp[0]);
	close_fd(&ctl);
	free(req);
	if (s != NULL)
		hs_sandbox__stream_discard(s);
	hs_sandbox__release(mgr, e);
	return rc;
}

/* ---- stdin (any thread) ------------------------------------------------------ */

int hs_sandbox_exec_stdin(hs_sandbox_stream *s, const void *data, size_t len, bool close_stdin,
			  bool *wait, hs_error *err)
{
	*wait = false;
	if (len > HS_SANDBOX_STDIN_CHUNK)
		return hs_error_set(err, HS_INVALID, "stdin: at most %d bytes per message",
				    HS_SANDBOX_STDIN_CHUNK);
	int rc = HS_OK;
	hs_sandbox__hub_lock(s->hub);
	hs_sandbox__stdin *in = &s->in;
	if (atomic_load(&s->over)) {
		rc = hs_error_set(err, HS_CANCELLED, "the command has ended");
	} else if (len > 0 && in->close_asked) {
		rc = hs_error_set(err, HS_INVALID, "stdin: sent after close_stdin");
	} else if (len > 0 && in->closed) {
		/* The command closed its stdin: like a pipe nobody reads, it goes
		 * nowhere. */
	} else if (len > 0 && in->len + len > HS_SANDBOX__STDIN_CAP) {
		rc = hs_error_set(err, HS_LIMIT, "stdin: %d bytes are waiting for the command",
				  HS_SANDBOX__STDIN_CAP);
	} else if (len > 0 && in->buf == NULL && (in->buf = malloc(HS_SANDBOX__STDIN_CAP)) == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
	} else {
		if (len > 0) {
			memcpy(in->buf + in->len, data, len);
			in->len += len;
		}
		in->close_asked |= close_stdin;
		if (in->len > HS_SANDBOX__STDIN_CAP - HS_SANDBOX_STDIN_CHUNK)
			*wait = in->waiting = true;
		hs_sandbox__stream_poke_locked(s);
	}
	hs_sandbox__hub_unlock(s->hub);
	return rc;
}

/* ---- running (hub thread) ------------------------------------------------------ */

/* The init's reports: the exit, or its connection gone. */
static void read_ctl(hs_sandbox_stream *s)
{
	char msg[32];
	while (s->u.exec.ctl >= 0 && !s->u.exec.exited && !s->u.exec.ctl_gone) {
		ssize_t n = recv(s->u.exec.ctl, msg, sizeof(msg) - 1, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			s->u.exec.ctl_gone = true;
			return;
		}
		msg[n] = '\0';
		char *end;
		long v = strtol(msg + 1, &end, 10);
		if (*end != '\0' || v < 0 || v > 255)
			continue; /* "S..." again, or garbage: not an end */
		if (msg[0] == 'X') {
			s->u.exec.exited = true;
			s->u.exec.exit_code = (int)v;
		} else if (msg[0] == 'K') {
			s->u.exec.exited = true;
			s->u.exec.signal = (int)v;
			s->u.exec.exit_code = 128 + (int)v;
		}
	}
}

/* Writes queued stdin as far as the pipe takes it; closes it when asked. */
static void pump_stdin(hs_sandbox_stream *s)
{
	bool ready = false;
	hs_sandbox__hub_lock(s->hub);
	hs_sandbox__stdin *in = &s->in;
	int *fd = &s->u.exec.in;
	while (*fd >= 0 && in->len > 0) {
		ssize_t n = write(*fd, in->buf, in->len);
		if (n > 0) {
			memmove(in->buf, in->buf + n, in->len - (size_t)n);
			in->len -= (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			break;
		} else { /* EPIPE: the command closed its stdin; the rest goes nowhere */
			in->len = 0;
			hs_sandbox__stream_watch(s, W_IN, -1, 0);
			close_fd(fd);
			in->closed = true;
		}
	}
	if (*fd >= 0 && in->len == 0 && in->close_asked) {
		hs_sandbox__stream_watch(s, W_IN, -1, 0);
		close_fd(fd);
		in->closed = true;
	}
	if (in->waiting && (in->len <= HS_SANDBOX__STDIN_LOW || in->closed)) {
		in->waiting = false;
		ready = true;
	}
	hs_sandbox__stream_watch(s, W_IN, *fd, *fd >= 0 && in->len > 0 ? EPOLLOUT : 0);
	hs_sandbox__hub_unlock(s->hub);
	if (ready && s->sink.stdin_ready != NULL)
		s->sink.stdin_ready(s->sink.payload);
}

static void pipe_done(hs_sandbox_stream *s, int which)
{
	int *fd = which == W_OUT ? &s->u.exec.out : &s->u.exec.err;
	hs_sandbox__stream_watch(s, which, -1, 0);
	close_fd(fd);
	if (which == W_OUT)
		s->u.exec.out_done = true;
	else
		s->u.exec.err_done = true;
}

/* Reads stdout and stderr while the sink takes what we read. */
static void pump_output(hs_sandbox_stream *s, int64_t now)
{
	bool ending = s->u.exec.exited || s->u.exec.ctl_gone;
	bool idle[2] = { false, false };
	for (int i = 0; i < BATCH; i++) {
		int which = -1;
		for (int k = 0; k < 2 && which < 0; k++) {
			int w = (s->u.exec.next_pipe + k) % 2 == 0 ? W_OUT : W_ERR;
			bool done = w == W_OUT ? s->u.exec.out_done : s->u.exec.err_done;
			if (!done && !idle[w - W_OUT])
				which = w;
		}
		if (which < 0)
			break;
		s->u.exec.next_pipe = which == W_OUT ? 1 : 0;
		size_t want = hs_sandbox__stream_budget(s, now);
		if (want == 0)
			goto unwatch;
		int fd = which == W_OUT ? s->u.exec.out : s->u.exec.err;
		ssize_t n = read(fd, s->buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			/* After the exit report, "nothing now" is the end: what the
			 * command wrote before it ended is in the pipe already. */
			if (ending)
				pipe_done(s, which);
			else
				idle[which - W_OUT] = true;
			continue;
		}
		if (n <= 0) {
			pipe_done(s, which);
			continue;
		}
		s->u.exec.sent += n;
		if (s->u.exec.output_max > 0 && s->u.exec.sent > s->u.exec.output_max) {
			hs_sandbox__stream_end(s, HS_LIMIT,
					       "the command wrote more than %lld bytes; it was killed",
					       (long long)s->u.exec.output_max);
			return;
		}
		/* Background processes may keep writing after the exit: bounded. */
		if (ending && (s->u.exec.after_end += n) > DRAIN_AFTER_EXIT)
			pipe_done(s, which);
		hs_sandbox_out o = { .kind = which == W_OUT ? HS_SANDBOX_OUT_STDOUT
							  : HS_SANDBOX_OUT_STDERR,
				     .data = s->buf, .len = (size_t)n };
		if (hs_sandbox__stream_offer(s, &o, now) != HS_OK)
			goto unwatch;
	}
	if (!s->u.exec.out_done && !idle[0])
		hs_sandbox__stream_later(s, now); /* more to read: next round */
	if (!s->u.exec.err_done && !idle[1])
		hs_sandbox__stream_later(s, now);
	hs_sandbox__stream_watch(s, W_OUT, s->u.exec.out, s->u.exec.out_done ? 0 : EPOLLIN);
	hs_sandbox__stream_watch(s, W_ERR, s->u.exec.err, s->u.exec.err_done ? 0 : EPOLLIN);
	return;
unwatch: /* a pending chunk or the rate limit: a timer brings us back */
	if (!s->ended) {
		hs_sandbox__stream_watch(s, W_OUT, s->u.exec.out, 0);
		hs_sandbox__stream_watch(s, W_ERR, s->u.exec.err, 0);
	}
}

static void exec_pump(hs_sandbox_stream *s, int64_t now)
{
	if (s->cancel_seen) {
		hs_sandbox__stream_end(s, HS_CANCELLED, "cancelled; the command was killed");
		return;
	}
	if (s->deadline > 0) {
		if (now >= s->deadline) {
			hs_sandbox__stream_end(s, HS_TIMEOUT, "deadline exceeded; the command was killed");
			return;
		}
		hs_sandbox__stream_later(s, s->deadline);
	}
	if (s->u.exec.exit_offered) { /* only the EXIT delivery is left */
		if (hs_sandbox__stream_flush(s, now) == HS_OK)
			hs_sandbox__stream_end(s, HS_OK, "exited");
		return;
	}
	read_ctl(s);
	pump_stdin(s);
	if (hs_sandbox__stream_flush(s, now) == HS_OK)
		pump_output(s, now);
	else if (!s->ended) {
		hs_sandbox__stream_watch(s, W_OUT, s->u.exec.out, 0);
		hs_sandbox__stream_watch(s, W_ERR, s->u.exec.err, 0);
	}
	if (s->ended)
		return;
	bool drained = s->u.exec.out_done && s->u.exec.err_done && !s->has_pend;
	if (s->u.exec.exited && drained) {
		hs_sandbox_out o = { .kind = HS_SANDBOX_OUT_EXIT, .exit_code = s->u.exec.exit_code,
				     .signal = s->u.exec.signal };
		s->u.exec.exit_offered = true;
		if (hs_sandbox__stream_offer(s, &o, now) == HS_OK)
			hs_sandbox__stream_end(s, HS_OK, "exited");
		return;
	}
	if (s->u.exec.ctl_gone && !s->u.exec.exited && drained) {
		hs_sandbox__stream_end(s, HS_UNAVAILABLE,
				       "sandbox %s stopped while the command was running",
				       s->sandbox_id);
		return;
	}
	bool listen = !s->u.exec.exited && !s->u.exec.ctl_gone;
	hs_sandbox__stream_watch(s, W_CTL, s->u.exec.ctl, listen ? EPOLLIN : 0);
	if (!listen && !drained)
		hs_sandbox__stream_later(s, now + 10); /* draining after the end */
}

/* Closing the connection is what kills the command's process group, if it
 * still runs (sandbox_init.c). */
static void exec_dispose(hs_sandbox_stream *s)
{
	close_fd(&s->u.exec.ctl);
	close_fd(&s->u.exec.in);
	close_fd(&s->u.exec.out);
	close_fd(&s->u.exec.err);
}

const hs_sandbox__stream_ops hs_sandbox__exec_ops = { exec_pump, exec_dispose };
