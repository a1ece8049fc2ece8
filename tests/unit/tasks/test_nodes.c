/* Two task registries with node ids on one store (SQLite implements the
 * leases too): one owner per task, calls through the other node, a node
 * whose lease was taken stops acting, and a stopping node hands its tasks
 * over. The PostgreSQL version with three harnessd and kill -9 is
 * tests/integration/test_nodes.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "fixture.h"

#define LEASE_MS 300

static hs_tasks *open_node(fx *f, const char *node_id)
{
	hs_error err = { 0 };
	hs_tasks_config cfg = { 0 };
	cfg.store = f->store;
	cfg.tenancy = f->ten;
	cfg.ops = &f->ops;
	cfg.node_id = node_id;
	cfg.lease_ms = LEASE_MS;
	hs_tasks *t = NULL;
	assert_int_equal(hs_tasks_new(&t, &cfg, &err), HS_OK);
	assert_int_equal(hs_tasks_advertise(t, "127.0.0.1:1", &err), HS_OK);
	return t;
}

static void register_on(hs_tasks *t, const char *id)
{
	hs_error err = { 0 };
	hs_task_spec s = { .task_id = id, .heartbeat_interval_ms = 100,
			   .heartbeat_timeout_ms = 600000 };
	hs_task_info info;
	if (hs_tasks_register(t, &alice, &s, &info, &err) != HS_OK)
		fail_msg("register %s: %s", id, err.msg);
	hs_task_info_dispose(&info);
}

static int beat_on(hs_tasks *t, const char *id, int64_t step, hs_error *err)
{
	hs_task_beat b = { .current_step = step };
	hs_task_beat_reply r;
	int rc = hs_tasks_heartbeat(t, &alice, id, &b, &r, err);
	if (rc == HS_OK)
		hs_task_beat_reply_dispose(&r);
	return rc;
}

static int64_t step_on(hs_tasks *t, const char *id)
{
	hs_error err = { 0 };
	hs_task_info info;
	assert_int_equal(hs_tasks_get(t, &alice, id, &info, &err), HS_OK);
	int64_t step = info.current_step;
	hs_task_info_dispose(&info);
	return step;
}

static bool lease_is(fx *f, const char *id, const char *node, int64_t fence)
{
	hs_store_lease_row l;
	return hs_store_lease_get(f->store, id, &l, NULL) == HS_OK &&
	       strcmp(l.node_id, node) == 0 && l.fence == fence;
}

typedef struct count_ctx {
	int type;
	int n;
} count_ctx;

static int count_cb(const hs_store_event_row *e, void *payload)
{
	count_ctx *c = payload;
	if (e->type == c->type)
		c->n++;
	return 0;
}

/* Stored events of type for task id (whichever node wrote them). */
static int stored_events(fx *f, const char *id, int type)
{
	hs_error err = { 0 };
	count_ctx c = { type, 0 };
	assert_int_equal(hs_store_event_list_after(f->store, 0, id, 0, count_cb, &c, &err), HS_OK);
	return c.n;
}

static void test_nodes__one_owner_and_calls_through_another_node(void **state)
{
	fx *f = *state;
	close_tasks(f);
	hs_tasks *a = open_node(f, "node-a"), *b = open_node(f, "node-b");
	hs_error err = { 0 };
	register_on(a, "n1");
	assert_true(lease_is(f, "n1", "node-a", 1));
	/* Registering it on node-b: it exists, held by node-a. */
	hs_task_spec s = { .task_id = "n1", .heartbeat_interval_ms = 100,
			   .heartbeat_timeout_ms = 600000 };
	hs_task_info info;
	assert_int_equal(hs_tasks_register(b, &alice, &s, &info, &err), HS_EXISTS);
	assert_non_null(strstr(err.msg, "node-a"));
	/* A progress heartbeat through node-b goes through the store; both
	 * nodes show it; the lease stays. */
	assert_int_equal(beat_on(b, "n1", 9, &err), HS_OK);
	assert_int_equal(step_on(b, "n1"), 9);
	assert_int_equal(step_on(a, "n1"), 9);
	assert_true(lease_is(f, "n1", "node-a", 1));
	/* A change through node-b: UNAVAILABLE naming the holder. */
	assert_int_equal(hs_tasks_cancel(b, &alice, "n1", "no", &info, &err), HS_UNAVAILABLE);
	assert_non_null(strstr(err.msg, "node-a"));
	assert_non_null(strstr(err.msg, "127.0.0.1:1"));
	/* Another user's task is not found there either (no holder named). */
	assert_int_equal(hs_tasks_cancel(b, &bob, "n1", "no", &info, &err), HS_NOT_FOUND);
	assert_null(strstr(err.msg, "node-a"));
	hs_tasks_free(b);
	hs_tasks_free(a);
}

static void test_nodes__a_node_whose_lease_was_taken_stops_acting(void **state)
{
	fx *f = *state;
	close_tasks(f);
	hs_tasks *a = open_node(f, "node-a"), *b = open_node(f, "node-b");
	hs_error err = { 0 };
	register_on(a, "n2");
	/* node-b's clock says node-a's lease ran out: it takes the lease
	 * (fence 2) behind node-a's back. */
	int64_t later = hs_clock_wall_ms() + 3600000;
	hs_store_lease_row l;
	assert_int_equal(hs_store_lease_acquire(f->store, "n2", "node-b", later, later + 3600000, &l,
						&err),
			 HS_OK);
	assert_int_equal(l.fence, 2);
	/* node-a's write is refused by the fence: nothing is written, the
	 * task is dropped there, and the caller is told to retry. */
	hs_task_info info;
	assert_int_equal(hs_tasks_cancel(a, &alice, "n2", "stale", &info, &err), HS_UNAVAILABLE);
	hs_store_task_row row;
	assert_int_equal(hs_store_task_get(f->store, "n2", &row, &err), HS_OK);
	assert_int_equal(row.state, HS_TASK_RUNNING);
	assert_int_equal(stored_events(f, "n2", HS_TEV_CANCELLED), 0);
	/* Again through node-a: now it names node-b. */
	assert_int_equal(hs_tasks_cancel(a, &alice, "n2", "stale", &info, &err), HS_UNAVAILABLE);
	assert_non_null(strstr(err.msg, "node-b"));
	/* node-b's lease thread finds a lease of its own whose task it does
	 * not hold, and holds it: node-b acts on it now (the cancel that
	 * node-a could not write). */
	for (int i = 0; i < 3000 && hs_tasks_count(b) == 0; i++) /* no call needed */
		usleep(10000);
	assert_int_equal(hs_tasks_count(b), 1);
	int rc = HS_UNAVAILABLE;
	for (int i = 0; i < 3000 && rc == HS_UNAVAILABLE; i++) {
		rc = hs_tasks_cancel(b, &alice, "n2", "now", &info, &err);
		if (rc == HS_UNAVAILABLE)
			usleep(10000);
	}
	assert_int_equal(rc, HS_OK);
	hs_task_info_dispose(&info);
	assert_int_equal(stored_events(f, "n2", HS_TEV_CANCELLED), 1);
	hs_tasks_free(b);
	hs_tasks_free(a);
}

static void test_nodes__a_stopping_node_hands_its_tasks_over(void **state)
{
	fx *f = *state;
	close_tasks(f);
	hs_tasks *a = open_node(f, "node-a"), *b = open_node(f, "node-b");
	hs_error err = { 0 };
	register_on(a, "n3");
	int64_t stopped = hs_clock_wall_ms();
	hs_tasks_free(a); /* gives its leases up and leaves the node list */
	/* its row stays, expired at the stop (survivors see since when) */
	hs_store_node_row n;
	assert_int_equal(hs_store_node_get(f->store, "node-a", &n, NULL), HS_OK);
	assert_true(n.expires_at_ms >= stopped);
	assert_true(n.expires_at_ms <= hs_clock_wall_ms());
	bool moved = false;
	for (int i = 0; i < 3000 && !moved; i++) { /* node-b's scan: every LEASE_MS / 3 */
		moved = lease_is(f, "n3", "node-b", 2);
		if (!moved)
			usleep(10000);
	}
	assert_true(moved);
	/* node-b acts on it now. */
	hs_task_info info;
	assert_int_equal(hs_tasks_complete(b, &alice, "n3", true, "done", &info, &err), HS_OK);
	assert_int_equal(info.state, HS_TASK_COMPLETED);
	hs_task_info_dispose(&info);
	assert_int_equal(stored_events(f, "n3", HS_TEV_REGISTERED), 1);
	assert_int_equal(stored_events(f, "n3", HS_TEV_COMPLETED), 1);
	/* Finished: the lease is given back. */
	assert_int_equal(hs_store_lease_get(f->store, "n3", &(hs_store_lease_row){ 0 }, NULL),
			 HS_NOT_FOUND);
	hs_tasks_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nodes__one_owner_and_calls_through_another_node,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_nodes__a_node_whose_lease_was_taken_stops_acting,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_nodes__a_stopping_node_hands_its_tasks_over,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
