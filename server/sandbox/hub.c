/* The I/O thread of GetSandboxLogs and ExecSandbox streams (the "hub").
 *
 * Design and invariants
 * - One thread per manager waits in epoll_wait on an eventfd (a stream was
 *   started, a request from another thread, shutdown), an inotify
 *   descriptor (a followed log grew) and the descriptors of the streams
 *   (an exec's pipes and its connection to harness-sandbox-init), and
 *   otherwise until the nearest timer (a retry, the rate limit, a
 *   deadline). A follower waiting for output costs a watch, not a thread;
 *   no RPC worker is held while a stream is idle.
 * - A stream is pumped when one of its descriptors is ready, a request
 *   marked it dirty, its timer came or its log file changed; pump does what
 *   it can without blocking (stream.h).
 * - Backpressure: a stream holds at most one undelivered chunk. When the
 *   sink is full (the call's send queue), the chunk stays pending, the
 *   stream stops watching its input and offers it again RETRY_MS later; an
 *   exec'd command then blocks on its full pipe, a log simply waits.
 *   Nothing is buffered beyond that chunk and the bounded stdin buffer.
 * - Limits are counted when a stream is made (stream_new), under the lock:
 *   per user, per sandbox and in all.
 * - Lifetime: only the hub thread unlinks streams, at the end of a round
 *   (so no epoll event of that round can point to a freed one); other
 *   threads insert at the head and set flags under hub->lock. A stream has
 *   two references: the hub's, dropped when it is unlinked, and the
 *   caller's.
 * - Lock order: a sandbox entry's lock, then hub->lock. Sinks are called
 *   with no lock held. */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "log.h"

#define RETRY_MS 10       /* a full sink is offered its chunk again after this */
#define BURST_MS 250      /* the rate limit allows this much time's worth at once */
#define MAX_EVENTS 64

typedef struct file_watch {
	int wd;
	unsigned refs;
} file_watch;

struct hs_sandbox__hub {
	hs_sandbox__hub_limits lim;
	pthread_mutex_t lock;
	pthread_t thread;
	bool thread_started;
	int epfd, wake_fd, ino_fd;
	bool stopping;             /* lock */
	hs_sandbox_stream *head;   /* lock for writes; the hub thread reads */
	file_watch *watches;       /* hub thread */
	size_t n_watches, cap_watches;
};

/* Sentinels for epoll's data.ptr. */
static char wake_tag, ino_tag;

void hs_sandbox__hub_lock(hs_sandbox__hub *hub) { pthread_mutex_lock(&hub->lock); }
void hs_sandbox__hub_unlock(hs_sandbox__hub *hub) { pthread_mutex_unlock(&hub->lock); }

static void wake(hs_sandbox__hub *hub)
{
	uint64_t one = 1;
	if (write(hub->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		hs_log(HS_LOG_WARN, "sandbox", "cannot wake the stream thread",
		       HS_LS("error", strerror(errno)));
}

void hs_sandbox__stream_poke_locked(hs_sandbox_stream *s)
{
	s->dirty = true;
	wake(s->hub);
}

void hs_sandbox__stream_poke(hs_sandbox_stream *s)
{
	pthread_mutex_lock(&s->hub->lock);
	hs_sandbox__stream_poke_locked(s);
	pthread_mutex_unlock(&s->hub->lock);
}

/* ---- making and starting streams --------------------------------------- */

static bool counts(const hs_sandbox_stream *x)
{
	return !x->discarded && !atomic_load(&x->over);
}

int hs_sandbox__stream_new(hs_sandbox__hub *hub, hs_sandbox__stream_kind kind,
			   const hs_sandbox__stream_ops *ops, const char *sandbox_id,
			   const char *user, const hs_sandbox_sink *sink, hs_sandbox_stream **out,
			   hs_error *err)
{
	hs_sandbox_stream *s = calloc(1, sizeof(*s));
	char *buf = malloc(HS_SANDBOX_CHUNK);
	if (s == NULL || buf == NULL) {
		free(s);
		free(buf);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	s->hub = hub;
	s->ops = ops;
	s->kind = kind;
	s->sink = *sink;
	s->buf = buf;
	snprintf(s->sandbox_id, sizeof(s->sandbox_id), "%s", sandbox_id);
	snprintf(s->user, sizeof(s->user), "%s", user);
	atomic_init(&s->refs, 2);
	atomic_init(&s->over, false);
	for (int i = 0; i < HS_STREAM_WATCHES; i++)
		s->watch[i].fd = -1;
	s->tokens = (double)hub->lim.rate * BURST_MS / 1000.0;
	s->tokens_at = hs_clock_mono_ms();

	int rc = HS_OK;
	unsigned all = 0, user_n = 0, sandbox_n = 0;
	pthread_mutex_lock(&hub->lock);
	for (hs_sandbox_stream *x = hub->head; x != NULL; x = x->next) {
		if (!counts(x))
			continue;
		all++;
		if (x->kind == kind && strcmp(x->user, user) == 0)
			user_n++;
		if (x->kind == kind && strcmp(x->sandbox_id, sandbox_id) == 0)
			sandbox_n++;
	}
	if (hub->stopping)
		rc = hs_error_set(err, HS_UNAVAILABLE, "server shutting down");
	else if (hub->lim.total > 0 && all >= hub->lim.total)
		rc = hs_error_set(err, HS_LIMIT, "the server has %u log and exec streams open; "
				  "the limit is %u", all, hub->lim.total);
	else if (kind == HS_STREAM_LOGS && hub->lim.logs_per_user > 0 &&
		 user_n >= hub->lim.logs_per_user)
		rc = hs_error_set(err, HS_LIMIT, "user %s has %u log streams open; the limit is %u",
				  user, user_n, hub->lim.logs_per_user);
	else if (kind == HS_STREAM_EXEC && hub->lim.exec_per_sandbox > 0 &&
		 sandbox_n >= hub->lim.exec_per_sandbox)
		rc = hs_error_set(err, HS_LIMIT, "sandbox %s runs %u commands; the limit is %u",
				  sandbox_id, sandbox_n, hub->lim.exec_per_sandbox);
	else if (kind == HS_STREAM_EXEC && hub->lim.exec_per_user > 0 &&
		 user_n >= hub->lim.exec_per_user)
		rc = hs_error_set(err, HS_LIMIT, "user %s runs %u commands; the limit is %u", user,
				  user_n, hub->lim.exec_per_user);
	if (rc == HS_OK) {
		s->next = hub->head;
		hub->head = s;
	}
	pthread_mutex_unlock(&hub->lock);
	if (rc != HS_OK) {
		free(buf);
		free(s);
		return rc;
	}
	*out = s;
	return HS_OK;
}

void hs_sandbox__stream_start(hs_sandbox_stream *s)
{
	pthread_mutex_lock(&s->hub->lock);
	s->started = true;
	hs_sandbox__stream_poke_locked(s);
	pthread_mutex_unlock(&s->hub->lock);
}

void hs_sandbox__stream_discard(hs_sandbox_stream *s)
{
	atomic_store(&s->over, true);
	atomic_fetch_sub(&s->refs, 1); /* the caller's: it never got one */
	pthread_mutex_lock(&s->hub->lock);
	s->discarded = true;
	wake(s->hub);
	pthread_mutex_unlock(&s->hub->lock);
}

void hs_sandbox_stream_cancel(hs_sandbox_stream *s)
{
	if (s == NULL || atomic_load(&s->over))
		return;
	pthread_mutex_lock(&s->hub->lock);
	s->cancel = true;
	hs_sandbox__stream_poke_locked(s);
	pthread_mutex_unlock(&s->hub->lock);
}

static void stream_free(hs_sandbox_stream *s)
{
	free(s->in.buf);
	free(s->buf);
	free(s);
}

void hs_sandbox_stream_unref(hs_sandbox_stream *s)
{
	if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
		stream_free(s);
}

void hs_sandbox__hub_sandbox_down(hs_sandbox__hub *hub, const char *sandbox_id)
{
	if (hub == NULL)
		return;
	pthread_mutex_lock(&hub->lock);
	for (hs_sandbox_stream *x = hub->head; x != NULL; x = x->next) {
		if (x->kind == HS_STREAM_LOGS && strcmp(x->sandbox_id, sandbox_id) == 0) {
			x->final = true;
			hs_sandbox__stream_poke_locked(x);
		}
	}
	pthread_mutex_unlock(&hub->lock);
}

/* ---- what pump uses ------------------------------------------------------ */

void hs_sandbox__stream_watch(hs_sandbox_stream *s, int slot, int fd, uint32_t events)
{
	hs_sandbox__hub *hub = s->hub;
	if (fd < 0)
		events = 0;
	if (s->watch[slot].fd == fd && s->watch[slot].events == events)
		return;
	/* A descriptor we do not want to hear from is taken out of the set:
	 * epoll reports EPOLLHUP even with no events asked for. */
	if (s->watch[slot].events != 0 && (fd != s->watch[slot].fd || events == 0))
		epoll_ctl(hub->epfd, EPOLL_CTL_DEL, s->watch[slot].fd, NULL);
	struct epoll_event ev = { .events = events, .data.ptr = s };
	if (events != 0) {
		bool had = s->watch[slot].fd == fd && s->watch[slot].events != 0;
		if (epoll_ctl(hub->epfd, had ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
			hs_log(HS_LOG_ERROR, "sandbox", "epoll_ctl failed",
			       HS_LS("sandbox_id", s->sandbox_id), HS_LS("error", strerror(errno)));
			events = 0;
			hs_sandbox__stream_later(s, hs_clock_mono_ms() + 100); /* poll instead */
		}
	}
	s->watch[slot].fd = fd;
	s->watch[slot].events = events;
}

void hs_sandbox__stream_later(hs_sandbox_stream *s, int64_t at)
{
	if (s->next_at == 0 || at < s->next_at)
		s->next_at = at;
}

size_t hs_sandbox__stream_budget(hs_sandbox_stream *s, int64_t now)
{
	double rate_ms = (double)s->hub->lim.rate / 1000.0;
	if (rate_ms <= 0)
		return HS_SANDBOX_CHUNK;
	double burst = rate_ms * BURST_MS;
	if (burst < HS_SANDBOX_CHUNK)
		burst = HS_SANDBOX_CHUNK;
	s->tokens += (double)(now - s->tokens_at) * rate_ms;
	s->tokens_at = now;
	if (s->tokens > burst)
		s->tokens = burst;
	if (s->tokens >= HS_SANDBOX_CHUNK)
		return HS_SANDBOX_CHUNK;
	/* Wait for a whole chunk's worth: fewer, fuller messages. A stream
	 * that is not at its rate always has a chunk's worth (the burst). */
	int64_t wait = (int64_t)((HS_SANDBOX_CHUNK - s->tokens) / rate_ms) + 1;
	hs_sandbox__stream_later(s, now + wait);
	return 0;
}

int hs_sandbox__stream_offer(hs_sandbox_stream *s, const hs_sandbox_out *out, int64_t now)
{
	if (s->ended)
		return HS_CANCELLED;
	int rc = s->sink.deliver(out, s->sink.payload);
	if (rc == HS_OK) {
		s->tokens -= (double)out->len;
		s->has_pend = false;
		return HS_OK;
	}
	if (rc == HS_LIMIT) {
		if (out != &s->pend)
			s->pend = *out;
		s->has_pend = true;
		hs_sandbox__stream_later(s, now + RETRY_MS);
		return HS_LIMIT;
	}
	hs_sandbox__stream_end(s, HS_CANCELLED, "the receiver is gone");
	return HS_CANCELLED;
}

int hs_sandbox__stream_flush(hs_sandbox_stream *s, int64_t now)
{
	if (!s->has_pend)
		return HS_OK;
	return hs_sandbox__stream_offer(s, &s->pend, now);
}

void hs_sandbox__stream_end(hs_sandbox_stream *s, int code, const char *fmt, ...)
{
	if (s->ended)
		return;
	char msg[HS_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->ended = true;
	atomic_store(&s->over, true);
	s->sink.end(code, msg, s->sink.payload);
}

int hs_sandbox__hub_watch_file(hs_sandbox__hub *hub, const char *path)
{
	int wd = inotify_add_watch(hub->ino_fd, path, IN_MODIFY);
	if (wd < 0)
		return -1;
	for (size_t i = 0; i < hub->n_watches; i++) {
		if (hub->watches[i].wd == wd) {
			hub->watches[i].refs++;
			return wd;
		}
	}
	if (hub->n_watches == hub->cap_watches) {
		size_t cap = hub->cap_watches ? 2 * hub->cap_watches : 16;
		file_watch *w = realloc(hub->watches, cap * sizeof(*w));
		if (w == NULL) {
			inotify_rm_watch(hub->ino_fd, wd);
			return -1;
		}
		hub->watches = w;
		hub->cap_watches = cap;
	}
	hub->watches[hub->n_watches++] = (file_watch){ wd, 1 };
	return wd;
}

void hs_sandbox__hub_unwatch_file(hs_sandbox__hub *hub, int wd)
{
	for (size_t i = 0; i < hub->n_watches; i++) {
		if (hub->watches[i].wd != wd)
			continue;
		if (--hub->watches[i].refs == 0) {
			inotify_rm_watch(hub->ino_fd, wd);
			hub->watches[i] = hub->watches[--hub->n_watches];
		}
		return;
	}
}

/* ---- the thread ------------------------------------------------------------ */

/* Log streams whose file changed: marked to run. */
static void read_inotify(hs_sandbox__hub *hub, hs_sandbox_stream *head)
{
	_Alignas(struct inotify_event) char buf[4096];
	ssize_t n;
	while ((n = read(hub->ino_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			for (hs_sandbox_stream *s = head; s != NULL; s = s->next)
				if (s->kind == HS_STREAM_LOGS && s->live && s->u.log.wd == ev->wd)
					s->run = true;
			p += sizeof(*ev) + ev->len;
		}
	}
}

static int timeout_ms(hs_sandbox_stream *head, int64_t now)
{
	int64_t next = -1;
	for (hs_sandbox_stream *s = head; s != NULL; s = s->next)
		if (s->live && !s->ended && s->next_at > 0 && (next < 0 || s->next_at < next))
			next = s->next_at;
	if (next < 0)
		return -1;
	return next <= now ? 0 : (int)(next - now > 60000 ? 60000 : next - now);
}

/* Unlinks ended and discarded streams (the hub thread only unlinks). */
static void reap(hs_sandbox__hub *hub)
{
	hs_sandbox_stream *gone = NULL;
	pthread_mutex_lock(&hub->lock);
	for (hs_sandbox_stream **p = &hub->head; *p != NULL;) {
		hs_sandbox_stream *s = *p;
		if (s->discarded || s->ended) {
			*p = s->next;
			s->next = gone;
			gone = s;
		} else {
			p = &s->next;
		}
	}
	pthread_mutex_unlock(&hub->lock);
	while (gone != NULL) {
		hs_sandbox_stream *s = gone;
		gone = s->next;
		for (int i = 0; i < HS_STREAM_WATCHES; i++)
			hs_sandbox__stream_watch(s, i, -1, 0);
		/* A discarded stream's kind never got going: its maker cleaned up. */
		if (!s->discarded && s->ops->dispose != NULL)
			s->ops->dispose(s);
		hs_sandbox_stream_unref(s); /* the hub's */
	}
}

static void *hub_main(void *payload)
{
	hs_sandbox__hub *hub = payload;
	struct epoll_event evs[MAX_EVENTS];
	/* A command that closed its stdin makes our write fail with EPIPE; the
	 * signal stays pending on this thread, harmless, whatever harnessd's
	 * disposition of SIGPIPE. */
	sigset_t pipe_sig;
	sigemptyset(&pipe_sig);
	sigaddset(&pipe_sig, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_sig, NULL);
	for (;;) {
		pthread_mutex_lock(&hub->lock);
		hs_sandbox_stream *head = hub->head;
		pthread_mutex_unlock(&hub->lock);
		int n = epoll_wait(hub->epfd, evs, MAX_EVENTS, timeout_ms(head, hs_clock_mono_ms()));
		if (n < 0 && errno != EINTR) {
			hs_log(HS_LOG_ERROR, "sandbox", "epoll_wait failed", HS_LS("error", strerror(errno)));
			hs_sandbox__sleep_ms(10);
		}
		bool inotify = false;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &wake_tag) {
				uint64_t v;
				if (read(hub->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					hs_log(HS_LOG_WARN, "sandbox", "stream thread wake-up read failed",
					       HS_LS("error", strerror(errno)));
			} else if (evs[i].data.ptr == &ino_tag) {
				inotify = true;
			} else {
				((hs_sandbox_stream *)evs[i].data.ptr)->run = true;
			}
		}
		pthread_mutex_lock(&hub->lock);
		bool stopping = hub->stopping;
		head = hub->head;
		for (hs_sandbox_stream *s = head; s != NULL; s = s->next) {
			if (s->dirty) {
				s->dirty = false;
				s->run = true;
			}
			s->live = s->started && !s->discarded;
			s->cancel_seen = s->cancel;
			s->final_seen = s->final;
		}
		pthread_mutex_unlock(&hub->lock);
		if (inotify)
			read_inotify(hub, head);
		int64_t now = hs_clock_mono_ms();
		for (hs_sandbox_stream *s = head; s != NULL; s = s->next) {
			if (!s->live || s->ended)
				continue;
			if (stopping) { /* dispose kills an exec's command */
				hs_sandbox__stream_end(s, HS_UNAVAILABLE, "server shutting down");
				continue;
			}
			if (!s->run && !(s->next_at > 0 && s->next_at <= now))
				continue;
			s->run = false;
			s->next_at = 0;
			s->ops->pump(s, now);
		}
		reap(hub);
		if (stopping) {
			pthread_mutex_lock(&hub->lock);
			bool empty = hub->head == NULL;
			pthread_mutex_unlock(&hub->lock);
			if (empty)
				break;
		}
	}
	return NULL;
}

int hs_sandbox__hub_new(hs_sandbox__hub **out, const hs_sandbox__hub_limits *lim, hs_error *err)
{
	hs_sandbox__hub *hub = calloc(1, sizeof(*hub));
	if (hub == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	hub->lim = *lim;
	hub->epfd = hub->wake_fd = hub->ino_fd = -1;
	pthread_mutex_init(&hub->lock, NULL);
	int rc = HS_OK;
	hub->epfd = epoll_create1(EPOLL_CLOEXEC);
	hub->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	hub->ino_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (hub->epfd < 0 || hub->wake_fd < 0) {
		rc = hs_error_set(err, HS_INTERNAL, "stream thread: %s", strerror(errno));
		goto fail;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &wake_tag };
	if (epoll_ctl(hub->epfd, EPOLL_CTL_ADD, hub->wake_fd, &ev) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "stream thread: %s", strerror(errno));
		goto fail;
	}
	ev.data.ptr = &ino_tag;
	if (hub->ino_fd >= 0 && epoll_ctl(hub->epfd, EPOLL_CTL_ADD, hub->ino_fd, &ev) != 0) {
		close(hub->ino_fd);
		hub->ino_fd = -1;
	}
	if (hub->ino_fd < 0) /* followers then poll their file (logs.c) */
		hs_log(HS_LOG_WARN, "sandbox", "no inotify: log followers poll");
	if (pthread_create(&hub->thread, NULL, hub_main, hub) != 0) {
		rc = hs_error_set(err, HS_INTERNAL, "cannot start the stream thread");
		goto fail;
	}
	hub->thread_started = true;
	*out = hub;
	return HS_OK;
fail:
	if (hub->epfd >= 0)
		close(hub->epfd);
	if (hub->wake_fd >= 0)
		close(hub->wake_fd);
	if (hub->ino_fd >= 0)
		close(hub->ino_fd);
	pthread_mutex_destroy(&hub->lock);
	free(hub);
	return rc;
}

void hs_sandbox__hub_free(hs_sandbox__hub *hub)
{
	if (hub == NULL)
		return;
	pthread_mutex_lock(&hub->lock);
	hub->stopping = true;
	wake(hub);
	pthread_mutex_unlock(&hub->lock);
	if (hub->thread_started)
		pthread_join(hub->thread, NULL);
	for (size_t i = 0; i < hub->n_watches; i++)
		inotify_rm_watch(hub->ino_fd, hub->watches[i].wd);
	free(hub->watches);
	close(hub->epfd);
	close(hub->wake_fd);
	if (hub->ino_fd >= 0)
		close(hub->ino_fd);
	pthread_mutex_destroy(&hub->lock);
	free(hub);
}
