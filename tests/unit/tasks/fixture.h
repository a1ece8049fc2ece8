/* Shared fixture of the task registry tests: a temp dir with a real store
 * and tenancy, the registry with fake recovery ops (faults, counts, and a
 * gate that holds a restore until the test opens it, so a heartbeat can
 * arrive between any two steps of an attempt), and an event sink. */
#ifndef HS_TEST_TASKS_FIXTURE_H
#define HS_TEST_TASKS_FIXTURE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "tasks.h"
#include "tenancy.h"

extern const hs_principal alice, bob, admin;

#define FAKE_CKPT "ckpt-5-abcdef012345"
#define FAKE_EXTERNAL "{\"cursor\":5}"

typedef struct fake {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int latest_rc;        /* HS_OK or an error */
	char latest_id[64];   /* FAKE_CKPT unless set */
	int64_t latest_step;  /* 5 unless set */
	int restore_fail;     /* fail this many restores, then succeed */
	int restore_calls;
	int restore_sleep_ms;
	bool gate_closed;     /* restores wait until the gate opens */
	int at_gate;          /* restores waiting at the gate */
	int state_calls;      /* checkpoint_state calls */
	int state_rc;         /* its result */
} fake;

#define MAX_EV 512
typedef struct sink {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	hs_task_event ev[MAX_EV];
	int64_t at_ms[MAX_EV];
	size_t n;
	int refuse; /* answer HS_LIMIT this many times */
} sink;

typedef struct fx {
	char dir[256];
	hs_store *store;
	hs_tenancy *ten;
	hs_tasks *tasks;
	fake fk;
	hs_task_recovery_ops ops;
	sink sk;
	hs_task_watch *w;
	size_t max_tasks_per_user; /* 0 = the default (for open_tasks) */
} fx;

int64_t now_ms(void);
void sink_init(sink *s);
int sink_send(const hs_task_event *ev, void *payload);
/* Index of the first event of type (0 = any) of task (NULL = any) at or
 * after index from, waiting up to ms; -1 if none came. */
int sink_wait(sink *s, int type, const char *task, size_t from, int ms);
size_t sink_count(sink *s, int type, const char *task);

void open_tasks(fx *f);  /* registry + an admin watcher into f->sk */
/* After a restart: empties f->sk and replays events after the last one it
 * held (timers may fire before the watcher is there). */
void reopen_tasks(fx *f);
void close_tasks(fx *f); /* as a crash would, minus the store */
int setup(void **state);
int teardown(void **state);

/* Open or close the restore gate; wait until n restores wait at it. */
void gate(fx *f, bool closed);
void gate_wait(fx *f, int n);

void reg(fx *f, const hs_principal *c, const char *id, int64_t interval, int64_t timeout,
	 int32_t max_attempts, int64_t backoff);
int state_of(fx *f, const char *id);
/* A heartbeat at step with the agent's generation; *out disposed by caller. */
int beat_gen(fx *f, const hs_principal *c, const char *id, int64_t step, int64_t gen,
	     hs_task_beat_reply *out);
int beat(fx *f, const hs_principal *c, const char *id, int64_t step, hs_task_beat_reply *out);
/* Heartbeat and return its instruction (disposing the reply). */
int instruction_of(fx *f, const char *id, int64_t step, int64_t gen);

#endif
