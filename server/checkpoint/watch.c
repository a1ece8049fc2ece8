/* Change tracking: which paths of a workspace changed since its task's
 * index last described it, so create, verify and restore stat and hash only
 * those (track.c) instead of walking the whole tree (walk.c).
 *
 * One tracker per (task, workspace) in use, kept with the task's entry in
 * the manager (checkpoint.c), at most max_workspaces of them (least recently
 * used dropped first). A tracker is an inotify instance with one watch per
 * directory of the workspace (not in ignored directories, never in a
 * `.git`): the walks add them (walk.c: a directory is watched before it is
 * read), the reader thread records the events as paths (nothing here touches
 * the filesystem). inotify works on inodes, so a change made through another
 * mount of the same directory, e.g. a bwrap sandbox's bind mount of the
 * workspace, is seen as well.
 *
 * The contract (the baseline): while a tracker is `valid`, the task's index
 * plus the paths in `dirty` describe the workspace: every change since the
 * index was last made to match it has its path, or an ancestor directory's
 * path, in dirty. Extra paths are harmless (they are only re-checked).
 *   create / restore   take dirty (drained from the kernel queue first, so
 *                      every write that returned before the call is in it)
 *                      and bring the index up to date; what changes meanwhile
 *                      lands in the new dirty set.
 *   verify             reads dirty and leaves it.
 * Events and what they mark:
 *   a name in directory D created, deleted, written, closed after writing,
 *   chmod()ed or moved in or out   -> "D/name" (a directory there is walked
 *                                     again whole, watches and all)
 *   D/.gitignore changed            -> "D" (the rules of the whole subtree)
 *   a file seen with more than one link is re-checked every time (a write
 *   through another name raises no event here), as are the other names of
 *   its inode in the index (track.c).
 * When tracking cannot be trusted the next call walks everything (and so
 * becomes the new baseline) and says why, in the log and in
 * harness_checkpoint_scans_total{reason}: not watched yet (first use, a
 * harnessd restart: `new`), dropped by the LRU bound (`evicted`), another
 * workspace than the tracked one (`workspace`), the kernel queue overflowed
 * (`overflow`), the watch limit (ours per workspace or the kernel's
 * max_user_watches / max_user_instances: `watch_limit`, then no new try for
 * a minute), a watch that could not be added (`watch_error`), the workspace
 * directory itself moved, deleted or unmounted (`moved`), an earlier call
 * failed half way (`error`), more than max_changes paths pending
 * (`too_many`), tracking off (`disabled`).
 *
 * Not seen by inotify, so not by us: writes through a shared memory mapping
 * after the file was closed, and writes through a hard link created from
 * outside the workspace after the last check (the inode's link count
 * changes without an event in the workspace). docs/architecture.md says so.
 *
 * Locking: one mutex (watcher.mu) guards every tracker's sets and maps; it
 * is held only for in-memory work and inotify_add_watch. Lock order:
 * mgr->map_mu before watcher.mu (eviction). */
#include "checkpoint_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics.h"

#define WATCH_MASK                                                                           \
	(IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM |      \
	 IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
#define DRAIN_SLICE (256u << 10)    /* event bytes the reader takes per round */
#define DRAIN_BEGIN_MAX (16u << 20) /* a call's catch-up; beyond it walks all */
#define BACKOFF_MS 60000 /* after a watch limit, full scans without watching for this long */

static const char *const WHY_NAMES[HS_CKPT__WHY_N] = {
	"none", "new", "evicted", "workspace", "overflow", "watch_limit",
	"watch_error", "moved", "error", "too_many", "disabled",
};
static const char *const OP_NAMES[HS_CKPT__OP_N] = { "create", "verify", "restore" };

const char *hs_ckpt__why_name(hs_ckpt__why why)
{
	return why < HS_CKPT__WHY_N ? WHY_NAMES[why] : "?";
}

/* ---- small hash tables ------------------------------------------------------------ */

typedef struct strset {
	char **v; /* NULL: empty */
	size_t cap, n;
} strset;

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

static int strset_grow(strset *s)
{
	size_t ncap = s->cap ? s->cap * 2 : 64;
	char **nv = calloc(ncap, sizeof(*nv));
	if (nv == NULL)
		return -1;
	for (size_t i = 0; i < s->cap; i++)
		if (s->v[i]) {
			size_t j = hash_bytes(s->v[i], strlen(s->v[i])) & (ncap - 1);
			while (nv[j])
				j = (j + 1) & (ncap - 1);
			nv[j] = s->v[i];
		}
	free(s->v);
	s->v = nv;
	s->cap = ncap;
	return 0;
}

/* Add a copy of s[0..len) unless present. 0 or -1 (no memory). */
static int strset_add(strset *s, const char *p, size_t len)
{
	if ((s->n + 1) * 2 > s->cap && strset_grow(s) != 0)
		return -1;
	size_t j = hash_bytes(p, len) & (s->cap - 1);
	for (; s->v[j]; j = (j + 1) & (s->cap - 1))
		if (strncmp(s->v[j], p, len) == 0 && s->v[j][len] == '\0')
			return 0;
	if (!(s->v[j] = strndup(p, len)))
		return -1;
	s->n++;
	return 0;
}

static void strset_clear(strset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* Append copies of the members to out. */
static int strset_copy_to(const strset *s, hs_ckpt_strlist *out)
{
	for (size_t i = 0; i < s->cap; i++)
		if (s->v[i] && hs_ckpt__strlist_push(out, s->v[i]) != 0)
			return -1;
	return 0;
}

typedef struct wdslot {
	int wd; /* 0: empty, -1: deleted */
	char *dir;
} wdslot;

typedef struct wdmap {
	wdslot *v;
	size_t cap, used; /* used counts deleted slots too */
} wdmap;

static wdslot *wd_find(const wdmap *m, int wd)
{
	if (m->cap == 0)
		return NULL;
	for (size_t j = ((size_t)wd * 2654435761u) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
		if (m->v[j].wd == wd)
			return &m->v[j];
		if (m->v[j].wd == 0)
			return NULL;
	}
}

static int wd_put(wdmap *m, int wd, const char *dir, bool *added)
{
	*added = false;
	wdslot *s = wd_find(m, wd);
	char *copy = strdup(dir);
	if (copy == NULL)
		return -1;
	if (s != NULL) {
		free(s->dir); /* the same directory under a new path (it moved) */
		s->dir = copy;
		return 0;
	}
	if ((m->used + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 64;
		wdslot *nv = calloc(ncap, sizeof(*nv));
		if (nv == NULL) {
			free(copy);
			return -1;
		}
		size_t used = 0;
		for (size_t i = 0; i < m->cap; i++)
			if (m->v[i].wd > 0) {
				size_t j = ((size_t)m->v[i].wd * 2654435761u) & (ncap - 1);
				while (nv[j].wd != 0)
					j = (j + 1) & (ncap - 1);
				nv[j] = m->v[i];
				used++;
			}
		free(m->v);
		m->v = nv;
		m->cap = ncap;
		m->used = used;
	}
	size_t j = ((size_t)wd * 2654435761u) & (m->cap - 1);
	while (m->v[j].wd > 0)
		j = (j + 1) & (m->cap - 1);
	if (m->v[j].wd == 0)
		m->used++;
	m->v[j].wd = wd;
	m->v[j].dir = copy;
	*added = true;
	return 0;
}

static bool wd_del(wdmap *m, int wd)
{
	wdslot *s = wd_find(m, wd);
	if (s == NULL)
		return false;
	free(s->dir);
	s->dir = NULL;
	s->wd = -1;
	return true;
}

static void wd_clear(wdmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->v[i].dir);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* ---- trackers ----------------------------------------------------------------------- */

struct hs_ckpt__track {
	hs_ckpt__watcher *owner;
	uint64_t id;
	int fd; /* inotify instance; -1 after a watch limit (released) */
	char *ws;
	dev_t dev;
	ino_t ino;
	int root_wd;
	bool valid;       /* the baseline holds (see the top of this file) */
	hs_ckpt__why why; /* why not, for the next call */
	int64_t retry_after_ms;
	wdmap map;
	size_t watches;
	strset dirty;
	strset multi; /* files seen with more than one link */
	uint64_t last_used;
	struct hs_ckpt__track *next;
};

struct hs_ckpt__watcher {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	hs_ckpt_watch_config cfg;
	bool enabled;
	int epfd, evfd;
	pthread_t thr;
	bool started, stopping, paused;
	hs_ckpt__track *list;
	unsigned count;
	uint64_t next_id;
	hs_metrics *metrics;
	hs_counter scans[HS_CKPT__OP_N][HS_CKPT__WHY_N];
	hs_counter lost[HS_CKPT__WHY_N];
	hs_counter events;
	hs_counter paths_checked;
};

static void collect(hs_metrics_out *out, void *payload);

int hs_ckpt__watcher_new(hs_ckpt__watcher **out, const hs_ckpt_watch_config *cfg,
			 hs_metrics *metrics, hs_error *err)
{
	hs_ckpt__watcher *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return hs_error_set(err, HS_INTERNAL, "checkpoint: out of memory");
	w->cfg = *cfg;
	w->enabled = !cfg->off;
	if (w->cfg.max_workspaces == 0)
		w->cfg.max_workspaces = HS_CKPT_WATCH_WORKSPACES_DEFAULT;
	if (w->cfg.max_dirs == 0)
		w->cfg.max_dirs = HS_CKPT_WATCH_DIRS_DEFAULT;
	if (w->cfg.max_changes == 0)
		w->cfg.max_changes = HS_CKPT_WATCH_CHANGES_DEFAULT;
	w->epfd = w->evfd = -1;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (metrics != NULL) {
		int rc = hs_metrics_add(metrics, collect, w, err);
		if (rc != HS_OK) {
			pthread_mutex_destroy(&w->mu);
			pthread_cond_destroy(&w->cv);
			free(w);
			return rc;
		}
		w->metrics = metrics;
	}
	*out = w;
	return HS_OK;
}

static void track_release_fd(hs_ckpt__watcher *w, hs_ckpt__track *t)
{
	if (t->fd >= 0) {
		if (w->epfd >= 0)
			epoll_ctl(w->epfd, EPOLL_CTL_DEL, t->fd, NULL);
		close(t->fd);
	}
	t->fd = -1;
	t->root_wd = -1;
	t->watches = 0;
	wd_clear(&t->map);
}

/* w->mu held. */
static void lose(hs_ckpt__watcher *w, hs_ckpt__track *t, hs_ckpt__why why)
{
	if (t->valid || t->why == HS_CKPT__WHY_NONE) {
		t->why = why;
		hs_counter_add(&w->lost[why], 1);
	}
	t->valid = false;
	strset_clear(&t->dirty);
	strset_clear(&t->multi);
	if (why == HS_CKPT__WHY_WATCH_LIMIT) {
		/* Give the kernel's watches back; retry later, not every call. */
		track_release_fd(w, t);
		t->retry_after_ms = hs_clock_mono_ms() + BACKOFF_MS;
	}
}

static void mark(hs_ckpt__watcher *w, hs_ckpt__track *t, const char *p, size_t len)
{
	if (!t->valid)
		return;
	if (strset_add(&t->dirty, p, len) != 0 || t->dirty.n > w->cfg.max_changes)
		lose(w, t, HS_CKPT__WHY_TOO_MANY);
}

static void on_event(hs_ckpt__watcher *w, hs_ckpt__track *t, const struct inotify_event *ev)
{
	hs_counter_add(&w->events, 1);
	if (ev->mask & IN_Q_OVERFLOW) {
		lose(w, t, HS_CKPT__WHY_OVERFLOW);
		return;
	}
	if (ev->mask & IN_IGNORED) {
		if (wd_del(&t->map, ev->wd) && t->watches > 0)
			t->watches--;
		if (ev->wd == t->root_wd)
			lose(w, t, HS_CKPT__WHY_MOVED);
		return;
	}
	wdslot *s = wd_find(&t->map, ev->wd);
	if (s == NULL)
		return; /* a watch already forgotten */
	if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
		/* Any other directory: its parent reports the name. */
		if (ev->wd == t->root_wd || (ev->mask & IN_UNMOUNT))
			lose(w, t, HS_CKPT__WHY_MOVED);
		return;
	}
	if (ev->len == 0 || ev->name[0] == '\0')
		return;
	if ((ev->mask & IN_ISDIR) &&
	    !(ev->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)))
		return; /* a directory's own mode or times: not git's business */
	char path[4200];
	int n = snprintf(path, sizeof(path), "%s%s", s->dir, ev->name);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		lose(w, t, HS_CKPT__WHY_WATCH_ERROR);
		return;
	}
	if (strcmp(ev->name, ".gitignore") == 0) {
		size_t dl = strlen(s->dir);
		mark(w, t, s->dir, dl ? dl - 1 : 0); /* "" is the whole workspace */
	}
	mark(w, t, path, (size_t)n);
}

/* Read t's queued events, at most max_bytes of them; w->mu held. true:
 * the queue is empty. */
static bool drain(hs_ckpt__watcher *w, hs_ckpt__track *t, size_t max_bytes)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	size_t total = 0;
	while (t->fd >= 0) {
		if (total >= max_bytes)
			return false;
		ssize_t n = read(t->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return true; /* EAGAIN: nothing more */
		total += (size_t)n;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			on_event(w, t, ev);
			p += sizeof(*ev) + ev->len;
		}
	}
	return true;
}

static void *reader_main(void *arg)
{
	hs_ckpt__watcher *w = arg;
	struct epoll_event evs[16];
	for (;;) {
		int n = epoll_wait(w->epfd, evs, 16, -1);
		if (n < 0 && errno != EINTR)
			break;
		pthread_mutex_lock(&w->mu);
		while (w->paused && !w->stopping)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stopping) {
			pthread_mutex_unlock(&w->mu);
			break;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == 0) {
				uint64_t v;
				(void)!read(w->evfd, &v, sizeof(v));
				continue;
			}
			/* A slice at a time (the queue is level-triggered: the
			 * rest is read on the next round), so a flood does not
			 * keep the mutex from the calls that need it. */
			for (hs_ckpt__track *t = w->list; t; t = t->next)
				if (t->id == evs[i].data.u64) {
					(void)drain(w, t, DRAIN_SLICE);
					break;
				}
		}
		pthread_mutex_unlock(&w->mu);
	}
	return NULL;
}

/* Start the reader on first use; w->mu held. */
static int start_reader(hs_ckpt__watcher *w)
{
	if (w->started)
		return 0;
	if (w->epfd < 0 && (w->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return -1;
	if (w->evfd < 0) {
		if ((w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
			return -1;
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev) != 0)
			return -1;
	}
	if (pthread_create(&w->thr, NULL, reader_main, w) != 0)
		return -1;
	w->started = true;
	return 0;
}

/* (Re)open t's inotify instance; w->mu held. 0 or the reason it failed. */
static hs_ckpt__why open_instance(hs_ckpt__watcher *w, hs_ckpt__track *t)
{
	if (start_reader(w) != 0)
		return HS_CKPT__WHY_WATCH_ERROR;
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0)
		return errno == EMFILE || errno == ENFILE ? HS_CKPT__WHY_WATCH_LIMIT
							  : HS_CKPT__WHY_WATCH_ERROR;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = t->id };
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		close(fd);
		return HS_CKPT__WHY_WATCH_ERROR;
	}
	t->fd = fd;
	return HS_CKPT__WHY_NONE;
}

void hs_ckpt__track_free(hs_ckpt__watcher *w, hs_ckpt__track *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	for (hs_ckpt__track **p = &w->list; *p; p = &(*p)->next)
		if (*p == t) {
			*p = t->next;
			w->count--;
			break;
		}
	track_release_fd(w, t);
	pthread_mutex_unlock(&w->mu);
	strset_clear(&t->dirty);
	strset_clear(&t->multi);
	free(t->ws);
	free(t);
}

void hs_ckpt__watcher_free(hs_ckpt__watcher *w)
{
	if (w == NULL)
		return;
	if (w->metrics)
		hs_metrics_remove(w->metrics, collect, w);
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (w->started) {
		uint64_t one = 1;
		(void)!write(w->evfd, &one, sizeof(one));
		pthread_join(w->thr, NULL);
	}
	/* Trackers belong to the manager's entries, freed before us. */
	if (w->evfd >= 0)
		close(w->evfd);
	if (w->epfd >= 0)
		close(w->epfd);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}

unsigned hs_ckpt__watcher_count(hs_ckpt__watcher *w)
{
	pthread_mutex_lock(&w->mu);
	unsigned n = w->count;
	pthread_mutex_unlock(&w->mu);
	return n;
}

unsigned hs_ckpt__watcher_max(const hs_ckpt__watcher *w)
{
	return w->cfg.max_workspaces;
}

uint64_t hs_ckpt__track_last_used(const hs_ckpt__track *t)
{
	return t->last_used;
}

void hs_ckpt__watcher_pause(hs_ckpt__watcher *w, bool paused)
{
	pthread_mutex_lock(&w->mu);
	w->paused = paused;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void hs_ckpt__watch_dir(hs_ckpt__track *t, const char *rel, int dirfd)
{
	hs_ckpt__watcher *w = t->owner;
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
	pthread_mutex_lock(&w->mu);
	if (!t->valid || t->fd < 0)
		goto done;
	if (t->watches >= w->cfg.max_dirs) {
		lose(w, t, HS_CKPT__WHY_WATCH_LIMIT);
		goto done;
	}
	/* By descriptor (opened beneath the workspace without following
	 * links), never by spelling the path. */
	int wd = inotify_add_watch(t->fd, proc, WATCH_MASK);
	if (wd < 0) {
		lose(w, t, errno == ENOSPC ? HS_CKPT__WHY_WATCH_LIMIT : HS_CKPT__WHY_WATCH_ERROR);
		goto done;
	}
	bool added = false;
	if (wd_put(&t->map, wd, rel, &added) != 0) {
		lose(w, t, HS_CKPT__WHY_WATCH_ERROR);
		goto done;
	}
	if (added)
		t->watches++;
	if (rel[0] == '\0')
		t->root_wd = wd;
done:
	pthread_mutex_unlock(&w->mu);
}

void hs_ckpt__watch_mark(hs_ckpt__track *t, const char *path)
{
	hs_ckpt__watcher *w = t->owner;
	pthread_mutex_lock(&w->mu);
	mark(w, t, path, strlen(path));
	pthread_mutex_unlock(&w->mu);
}

void hs_ckpt__watch_multi(hs_ckpt__track *t, const char *path)
{
	hs_ckpt__watcher *w = t->owner;
	pthread_mutex_lock(&w->mu);
	if (t->valid && strset_add(&t->multi, path, strlen(path)) != 0)
		lose(w, t, HS_CKPT__WHY_ERROR);
	pthread_mutex_unlock(&w->mu);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void hs_ckpt__changes_dispose(hs_ckpt__changes *c)
{
	hs_ckpt_strlist_dispose(&c->paths);
}

int hs_ckpt__watch_begin(hs_ckpt__watcher *w, hs_ckpt__track **slot, hs_ckpt__why *freed_why,
			 const char *ws, int wsfd, hs_ckpt__op op, uint64_t tick,
			 hs_ckpt__changes *out)
{
	memset(out, 0, sizeof(*out));
	out->op = op;
	if (w == NULL || !w->enabled) {
		out->why = HS_CKPT__WHY_DISABLED;
		return HS_OK;
	}
	struct stat st;
	if (fstat(wsfd, &st) != 0)
		memset(&st, 0, sizeof(st));
	hs_ckpt__track *t = *slot;
	out->why = *freed_why;
	if (t != NULL && (strcmp(t->ws, ws) != 0 || t->dev != st.st_dev || t->ino != st.st_ino)) {
		/* The index now describes another workspace (or this name is
		 * another directory): start over. */
		hs_ckpt__track_free(w, t);
		*slot = t = NULL;
		out->why = HS_CKPT__WHY_WORKSPACE;
	}
	if (t == NULL) {
		t = calloc(1, sizeof(*t));
		if (t == NULL || !(t->ws = strdup(ws))) {
			free(t);
			return HS_INTERNAL;
		}
		t->owner = w;
		t->fd = -1;
		t->root_wd = -1;
		t->dev = st.st_dev;
		t->ino = st.st_ino;
		t->why = HS_CKPT__WHY_NONE;
		pthread_mutex_lock(&w->mu);
		t->id = ++w->next_id;
		t->next = w->list;
		w->list = t;
		w->count++;
		pthread_mutex_unlock(&w->mu);
		*slot = t;
		*freed_why = HS_CKPT__WHY_NEW;
	}
	pthread_mutex_lock(&w->mu);
	t->last_used = tick;
	/* Every event of a write that returned before this call is queued:
	 * read them all, unless a flood makes that unbounded. */
	if (!drain(w, t, DRAIN_BEGIN_MAX))
		lose(w, t, HS_CKPT__WHY_TOO_MANY);
	if (t->valid) {
		/* Everything that changed since the index, and the files with
		 * other names. create and restore take them (the index follows),
		 * verify leaves them. */
		if (strset_copy_to(&t->dirty, &out->paths) != 0 ||
		    strset_copy_to(&t->multi, &out->paths) != 0) {
			pthread_mutex_unlock(&w->mu);
			hs_ckpt_strlist_dispose(&out->paths);
			return HS_INTERNAL;
		}
		if (op != HS_CKPT__OP_VERIFY) {
			strset_clear(&t->dirty);
			strset_clear(&t->multi);
		}
		out->tracked = true;
		out->why = HS_CKPT__WHY_NONE;
	} else {
		if (t->why != HS_CKPT__WHY_NONE)
			out->why = t->why;
		hs_ckpt__why failed = HS_CKPT__WHY_NONE;
		if (t->fd < 0 && hs_clock_mono_ms() >= t->retry_after_ms)
			failed = open_instance(w, t);
		else if (t->fd < 0)
			failed = HS_CKPT__WHY_WATCH_LIMIT; /* still backing off */
		if (failed == HS_CKPT__WHY_NONE) {
			/* This call's full walk, which watches every directory
			 * before reading it, becomes the baseline. */
			strset_clear(&t->dirty);
			strset_clear(&t->multi);
			t->valid = true;
			t->why = HS_CKPT__WHY_NONE;
			out->watching = true;
		} else {
			t->why = failed;
			if (failed == HS_CKPT__WHY_WATCH_LIMIT && t->retry_after_ms == 0)
				t->retry_after_ms = hs_clock_mono_ms() + BACKOFF_MS;
		}
	}
	pthread_mutex_unlock(&w->mu);
	if (out->paths.count > 1)
		qsort(out->paths.items, out->paths.count, sizeof(char *), cmp_str);
	out->track = t;
	*freed_why = HS_CKPT__WHY_NEW;
	hs_counter_add(&w->scans[op][out->tracked ? HS_CKPT__WHY_NONE : out->why], 1);
	hs_counter_add(&w->paths_checked, out->paths.count);
	return HS_OK;
}

bool hs_ckpt__watch_valid(hs_ckpt__track *t)
{
	hs_ckpt__watcher *w = t->owner;
	pthread_mutex_lock(&w->mu);
	bool v = t->valid;
	pthread_mutex_unlock(&w->mu);
	return v;
}

void hs_ckpt__watch_fail(hs_ckpt__track *t)
{
	if (t == NULL)
		return;
	hs_ckpt__watcher *w = t->owner;
	pthread_mutex_lock(&w->mu);
	lose(w, t, HS_CKPT__WHY_ERROR);
	pthread_mutex_unlock(&w->mu);
}

/* ---- metrics ------------------------------------------------------------------------ */

static void collect(hs_metrics_out *out, void *payload)
{
	hs_ckpt__watcher *w = payload;
	hs_metrics_family(out, "harness_checkpoint_scans_total", "counter",
			  "Workspace reads by create, verify and restore: mode tracked (only the "
			  "paths the watcher saw change) or full (the whole tree, and why)");
	for (int op = 0; op < HS_CKPT__OP_N; op++)
		for (int why = 0; why < HS_CKPT__WHY_N; why++) {
			uint64_t v = hs_counter_get(&w->scans[op][why]);
			if (v == 0 && why != HS_CKPT__WHY_NONE && why != HS_CKPT__WHY_NEW)
				continue;
			const char *labels[] = { "op", OP_NAMES[op], "mode",
						 why == HS_CKPT__WHY_NONE ? "tracked" : "full", "reason",
						 WHY_NAMES[why], NULL };
			hs_metrics_sample(out, "harness_checkpoint_scans_total", labels, (double)v);
		}
	hs_metrics_family(out, "harness_checkpoint_tracking_lost_total", "counter",
			  "Times a workspace's change tracking stopped being trusted, by reason");
	for (int why = 1; why < HS_CKPT__WHY_N; why++) {
		uint64_t v = hs_counter_get(&w->lost[why]);
		if (v == 0)
			continue;
		const char *labels[] = { "reason", WHY_NAMES[why], NULL };
		hs_metrics_sample(out, "harness_checkpoint_tracking_lost_total", labels, (double)v);
	}
	hs_metrics_family(out, "harness_checkpoint_watch_events_total", "counter",
			  "inotify events read for watched workspaces");
	hs_metrics_sample(out, "harness_checkpoint_watch_events_total", NULL,
			  (double)hs_counter_get(&w->events));
	hs_metrics_family(out, "harness_checkpoint_tracked_paths_total", "counter",
			  "Paths re-checked by tracked reads (changed paths and multi-link files)");
	hs_metrics_sample(out, "harness_checkpoint_tracked_paths_total", NULL,
			  (double)hs_counter_get(&w->paths_checked));
	unsigned count = 0;
	size_t watches = 0;
	pthread_mutex_lock(&w->mu);
	count = w->count;
	for (hs_ckpt__track *t = w->list; t; t = t->next)
		watches += t->watches;
	pthread_mutex_unlock(&w->mu);
	hs_metrics_family(out, "harness_checkpoint_watched_workspaces", "gauge",
			  "Workspaces with a change tracker (bounded, least recently used dropped)");
	hs_metrics_sample(out, "harness_checkpoint_watched_workspaces", NULL, (double)count);
	hs_metrics_family(out, "harness_checkpoint_watches", "gauge",
			  "inotify watches held (one per watched directory)");
	hs_metrics_sample(out, "harness_checkpoint_watches", NULL, (double)watches);
}
