/* The task registry tests' fixture (see fixture.h). */
#include "fixture.h"

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

const hs_principal alice = { "usr_alice", false };
const hs_principal bob = { "usr_bob", false };
const hs_principal admin = { "usr_admin", true };

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- fake recovery ops -------------------------------------------------- */

static int f_latest(void *ctx, const char *task_id, char *id, size_t len, int64_t *step,
		    hs_error *err)
{
	fake *f = ctx;
	(void)task_id;
	pthread_mutex_lock(&f->mu);
	int rc = f->latest_rc;
	snprintf(id, len, "%s", f->latest_id[0] ? f->latest_id : FAKE_CKPT);
	*step = f->latest_id[0] ? f->latest_step : 5;
	pthread_mutex_unlock(&f->mu);
	if (rc != HS_OK)
		return hs_error_set(err, rc, "none");
	return HS_OK;
}

static int f_restore(void *ctx, const char *task_id, const char *ckpt, const char *ws,
		     char **external, hs_error *err)
{
	fake *f = ctx;
	(void)task_id;
	(void)ckpt;
	(void)ws;
	if (f->restore_sleep_ms)
		usleep((useconds_t)f->restore_sleep_ms * 1000);
	pthread_mutex_lock(&f->mu);
	f->at_gate++;
	pthread_cond_broadcast(&f->cv);
	while (f->gate_closed)
		pthread_cond_wait(&f->cv, &f->mu);
	f->at_gate--;
	int n = ++f->restore_calls;
	pthread_mutex_unlock(&f->mu);
	if (n <= f->restore_fail)
		return hs_error_set(err, HS_INTERNAL, "disk on fire (%d)", n);
	*external = strdup(FAKE_EXTERNAL);
	return HS_OK;
}

static int f_state(void *ctx, const char *task_id, const char *ckpt, char **external,
		   hs_error *err)
{
	fake *f = ctx;
	(void)task_id;
	(void)ckpt;
	pthread_mutex_lock(&f->mu);
	f->state_calls++;
	int rc = f->state_rc;
	pthread_mutex_unlock(&f->mu);
	if (rc != HS_OK)
		return hs_error_set(err, rc, "checkpoint unreadable");
	*external = strdup(FAKE_EXTERNAL);
	return HS_OK;
}

void gate(fx *f, bool closed)
{
	pthread_mutex_lock(&f->fk.mu);
	f->fk.gate_closed = closed;
	pthread_cond_broadcast(&f->fk.cv);
	pthread_mutex_unlock(&f->fk.mu);
}

void gate_wait(fx *f, int n)
{
	pthread_mutex_lock(&f->fk.mu);
	while (f->fk.at_gate < n)
		pthread_cond_wait(&f->fk.cv, &f->fk.mu);
	pthread_mutex_unlock(&f->fk.mu);
}

/* ---- event sink ---------------------------------------------------------- */

void sink_init(sink *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
}

int sink_send(const hs_task_event *ev, void *payload)
{
	sink *s = payload;
	pthread_mutex_lock(&s->mu);
	int rc = HS_OK;
	if (s->refuse > 0) {
		s->refuse--;
		rc = HS_LIMIT;
	} else if (s->n < MAX_EV) {
		s->at_ms[s->n] = now_ms();
		s->ev[s->n++] = *ev;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static bool ev_is(const hs_task_event *e, int type, const char *task)
{
	return (type == 0 || (int)e->type == type) && (task == NULL || strcmp(e->task_id, task) == 0);
}

int sink_wait(sink *s, int type, const char *task, size_t from, int ms)
{
	int64_t until = now_ms() + ms;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		for (size_t i = from; i < s->n; i++) {
			if (ev_is(&s->ev[i], type, task)) {
				pthread_mutex_unlock(&s->mu);
				return (int)i;
			}
		}
		if (now_ms() >= until)
			break;
		struct timespec ts = { 0, 5 * 1000000 };
		pthread_mutex_unlock(&s->mu);
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return -1;
}

size_t sink_count(sink *s, int type, const char *task)
{
	size_t c = 0;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->n; i++)
		c += ev_is(&s->ev[i], type, task);
	pthread_mutex_unlock(&s->mu);
	return c;
}

/* ---- fixture ------------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void open_after(fx *f, int64_t after)
{
	hs_error err = { 0 };
	hs_tasks_config cfg = { 0 };
	cfg.store = f->store;
	cfg.tenancy = f->ten;
	cfg.ops = &f->ops;
	cfg.max_tasks_per_user = f->max_tasks_per_user;
	assert_int_equal(hs_tasks_new(&f->tasks, &cfg, &err), HS_OK);
	assert_int_equal(hs_tasks_watch(f->tasks, &admin, NULL, false, after, sink_send, &f->sk, &f->w,
					&err),
			 HS_OK);
}

void open_tasks(fx *f)
{
	open_after(f, 0);
}

void reopen_tasks(fx *f)
{
	pthread_mutex_lock(&f->sk.mu);
	int64_t last = f->sk.n > 0 ? f->sk.ev[f->sk.n - 1].event_id : 0;
	f->sk.n = 0;
	pthread_mutex_unlock(&f->sk.mu);
	open_after(f, last);
}

void close_tasks(fx *f)
{
	if (f->w != NULL)
		hs_tasks_unwatch(f->tasks, f->w);
	f->w = NULL;
	hs_tasks_free(f->tasks);
	f->tasks = NULL;
}

int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	hs_error err = { 0 };
	char root[300];
	snprintf(f->dir, sizeof(f->dir), "/tmp/hs_tasks_test.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(root, sizeof(root), "%s/ws", f->dir);
	assert_int_equal(mkdir(root, 0700), 0);
	assert_int_equal(hs_store_open(&f->store, f->dir, &err), HS_OK);
	hs_tenancy_config tc = { f->store, root };
	assert_int_equal(hs_tenancy_new(&f->ten, &tc, &err), HS_OK);
	pthread_mutex_init(&f->fk.mu, NULL);
	pthread_cond_init(&f->fk.cv, NULL);
	sink_init(&f->sk);
	f->ops.latest = f_latest;
	f->ops.restore = f_restore;
	f->ops.checkpoint_state = f_state;
	f->ops.ctx = &f->fk;
	open_tasks(f);
	*state = f;
	return 0;
}

int teardown(void **state)
{
	fx *f = *state;
	gate(f, false);
	close_tasks(f);
	hs_tenancy_free(f->ten);
	hs_store_free(f->store);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	pthread_mutex_destroy(&f->fk.mu);
	pthread_cond_destroy(&f->fk.cv);
	pthread_mutex_destroy(&f->sk.mu);
	pthread_cond_destroy(&f->sk.cv);
	free(f);
	return 0;
}

void reg(fx *f, const hs_principal *c, const char *id, int64_t interval, int64_t timeout,
	 int32_t max_attempts, int64_t backoff)
{
	hs_error err = { 0 };
	hs_task_spec s = { 0 };
	s.task_id = id;
	s.heartbeat_interval_ms = interval;
	s.heartbeat_timeout_ms = timeout;
	s.policy.max_attempts = max_attempts;
	s.policy.initial_backoff_ms = backoff;
	hs_task_info info;
	int rc = hs_tasks_register(f->tasks, c, &s, &info, &err);
	if (rc != HS_OK)
		fail_msg("register %s: %s", id, err.msg);
	assert_int_equal(info.state, HS_TASK_RUNNING);
	hs_task_info_dispose(&info);
}

int state_of(fx *f, const char *id)
{
	hs_task_info info;
	hs_error err = { 0 };
	assert_int_equal(hs_tasks_get(f->tasks, &admin, id, &info, &err), HS_OK);
	int st = info.state;
	hs_task_info_dispose(&info);
	return st;
}

int beat_gen(fx *f, const hs_principal *c, const char *id, int64_t step, int64_t gen,
	     hs_task_beat_reply *out)
{
	hs_error err = { 0 };
	hs_task_beat b = { step, 0, 1.0, 2.0, 3.0, "d", gen, 0 };
	return hs_tasks_heartbeat(f->tasks, c, id, &b, out, &err);
}

int beat(fx *f, const hs_principal *c, const char *id, int64_t step, hs_task_beat_reply *out)
{
	return beat_gen(f, c, id, step, 0, out);
}

int instruction_of(fx *f, const char *id, int64_t step, int64_t gen)
{
	hs_task_beat_reply r;
	int rc = beat_gen(f, &alice, id, step, gen, &r);
	if (rc != HS_OK)
		return rc;
	int ins = r.instruction;
	hs_task_beat_reply_dispose(&r);
	return ins;
}
