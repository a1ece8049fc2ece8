/* Internal to server/sandbox: the I/O thread that carries GetSandboxLogs
 * and ExecSandbox streams (hub.c) and the two kinds of stream (logs.c,
 * exec.c). See hub.c's top comment for the design. */
#ifndef HS_SANDBOX_STREAM_H
#define HS_SANDBOX_STREAM_H

#include <stdatomic.h>
#include <stdint.h>

#include "driver.h"
#include "principal.h"

typedef struct hs_sandbox__hub hs_sandbox__hub;

typedef enum hs_sandbox__stream_kind {
	HS_STREAM_LOGS = 1,
	HS_STREAM_EXEC,
} hs_sandbox__stream_kind;

typedef struct hs_sandbox__stream_ops {
	/* Make whatever progress is possible without blocking (hub thread):
	 * read, offer, write stdin; end the stream when done. Whatever the
	 * stream waits for next is a watched descriptor or a later() time. */
	void (*pump)(hs_sandbox_stream *s, int64_t now);
	/* Release the kind's resources (hub thread, after the end; watches
	 * are already removed). */
	void (*dispose)(hs_sandbox_stream *s);
} hs_sandbox__stream_ops;

enum { HS_STREAM_WATCHES = 4 };

/* An exec's stdin, shared by the caller's thread and the hub (hub->lock). */
typedef struct hs_sandbox__stdin {
	char *buf;           /* HS_SANDBOX__STDIN_CAP bytes, allocated on first use */
	size_t len;
	bool close_asked;    /* no more data after buf */
	bool closed;         /* the pipe is closed (asked, or the command closed it) */
	bool waiting;        /* the caller was told to wait for stdin_ready */
} hs_sandbox__stdin;

#define HS_SANDBOX__STDIN_CAP (256 * 1024)
#define HS_SANDBOX__STDIN_LOW (64 * 1024) /* stdin_ready once at most this is left */

struct hs_sandbox_stream {
	hs_sandbox__hub *hub;
	const hs_sandbox__stream_ops *ops;
	hs_sandbox__stream_kind kind;
	hs_sandbox_sink sink;
	char sandbox_id[HS_SANDBOX_ID_MAX + 1];
	char user[HS_PRINCIPAL_ID_MAX];
	atomic_int refs;      /* the hub's and the caller's */
	atomic_bool over;     /* ended or discarded: cancel is a no-op */

	/* Under hub->lock: requests from other threads. */
	bool started;         /* handed to the hub thread */
	bool discarded;       /* never started; the hub frees it */
	bool dirty;           /* pump it */
	bool cancel;          /* hs_sandbox_stream_cancel */
	bool final;           /* the sandbox stopped running (logs: read to the end) */
	hs_sandbox__stdin in; /* exec */

	/* The hub thread only. */
	bool ended;
	bool live;            /* started and not discarded (copied under the lock) */
	bool run;             /* pump in this round */
	bool cancel_seen, final_seen; /* snapshots of cancel/final for pump */
	int64_t next_at;      /* pump again at this hs_clock_mono_ms() (0 = no timer) */
	int64_t deadline;     /* end with HS_TIMEOUT at this time (0 = none) */
	double tokens;        /* rate limit: bytes that may be sent now */
	int64_t tokens_at;
	char *buf;            /* HS_SANDBOX_CHUNK: the chunk being read/offered */
	hs_sandbox_out pend;  /* an offered chunk the sink could not take yet */
	bool has_pend;
	struct {
		int fd;          /* -1 = none */
		uint32_t events; /* registered with epoll (0 = not registered) */
	} watch[HS_STREAM_WATCHES];

	/* The kind's state (hub thread, after start). */
	union {
		struct {
			int fd;           /* the log, read with pread */
			int64_t offset;   /* next byte to read */
			int64_t left;     /* limit_bytes left; -1 = no limit */
			bool follow;
			int wd;           /* inotify watch, -1 = none (then polled) */
			char path[PATH_MAX];
		} log;
		struct {
			int ctl;          /* connection to harness-sandbox-init, -1 after close */
			int in, out, err; /* our pipe ends, -1 once closed */
			bool out_done, err_done; /* end of file, or drained after the exit */
			bool exited, ctl_gone;
			bool exit_offered; /* EXIT offered (maybe pending): the last thing */
			int exit_code, signal;
			int next_pipe;    /* fairness: read this one first */
			int64_t sent;     /* output bytes read */
			int64_t after_end; /* ... of them after the exit report */
			int64_t output_max;
		} exec;
	} u;

	struct hs_sandbox_stream *next; /* hub->head list; written under hub->lock */
};

typedef struct hs_sandbox__hub_limits {
	unsigned logs_per_user, exec_per_sandbox, exec_per_user, total;
	size_t rate; /* bytes per second per stream */
} hs_sandbox__hub_limits;

int hs_sandbox__hub_new(hs_sandbox__hub **out, const hs_sandbox__hub_limits *lim, hs_error *err);
/* Ends every stream (HS_UNAVAILABLE "server shutting down"), joins the
 * thread. NULL is a no-op. */
void hs_sandbox__hub_free(hs_sandbox__hub *hub);

/* The sandbox stopped running: its log streams read to the end and stop.
 * Any thread (the manager calls it with the entry locked). */
void hs_sandbox__hub_sandbox_down(hs_sandbox__hub *hub, const char *sandbox_id);

/* A stream counted against the limits (HS_LIMIT naming the one reached),
 * not running yet: fill u, then hs_sandbox__stream_start (or _discard on a
 * failure, which calls no sink). */
int hs_sandbox__stream_new(hs_sandbox__hub *hub, hs_sandbox__stream_kind kind,
			   const hs_sandbox__stream_ops *ops, const char *sandbox_id,
			   const char *user, const hs_sandbox_sink *sink, hs_sandbox_stream **out,
			   hs_error *err);
/* Hands it to the hub thread; the caller keeps one reference. */
void hs_sandbox__stream_start(hs_sandbox_stream *s);
void hs_sandbox__stream_discard(hs_sandbox_stream *s);

/* Marks s for a pump and wakes the hub; with hub->lock held: _locked. */
void hs_sandbox__stream_poke(hs_sandbox_stream *s);
void hs_sandbox__hub_lock(hs_sandbox__hub *hub);
void hs_sandbox__hub_unlock(hs_sandbox__hub *hub);
void hs_sandbox__stream_poke_locked(hs_sandbox_stream *s);

/* ---- for pump (hub thread) --------------------------------------------- */

/* Wants events (EPOLLIN/EPOLLOUT; 0 = none) on fd in slot; fd -1 drops the
 * slot (before closing the descriptor). */
void hs_sandbox__stream_watch(hs_sandbox_stream *s, int slot, int fd, uint32_t events);
/* Pump again at `at` at the latest. */
void hs_sandbox__stream_later(hs_sandbox_stream *s, int64_t at);
/* Bytes the rate limit allows now (at most HS_SANDBOX_CHUNK); 0 = none,
 * and a later() is set for when there will be. */
size_t hs_sandbox__stream_budget(hs_sandbox_stream *s, int64_t now);
/* Offers out (its data in s->buf, or none) to the sink and charges the rate
 * limit. HS_OK taken; HS_LIMIT kept as pending and retried soon (read
 * nothing more meanwhile); else the stream has ended. */
int hs_sandbox__stream_offer(hs_sandbox_stream *s, const hs_sandbox_out *out, int64_t now);
/* Offers the pending chunk again: HS_OK when none is left. */
int hs_sandbox__stream_flush(hs_sandbox_stream *s, int64_t now);
/* Tells the sink the end (once) and marks the stream for removal. */
void hs_sandbox__stream_end(hs_sandbox_stream *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* inotify watch on a file for modification (-1 if none could be made) and
 * its release. */
int hs_sandbox__hub_watch_file(hs_sandbox__hub *hub, const char *path);
void hs_sandbox__hub_unwatch_file(hs_sandbox__hub *hub, int wd);

/* logs.c / exec.c */
extern const hs_sandbox__stream_ops hs_sandbox__logs_ops;
extern const hs_sandbox__stream_ops hs_sandbox__exec_ops;

#endif
