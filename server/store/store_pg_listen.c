/* Event announcements (store.h, hs_store_listener): a connection of its
 * own that LISTENs on harness_task_events, where the task_events trigger
 * (migration 7 of store_pg_schema.c) announces every event id at commit.
 * Waiting is poll() on the connection's socket, so it costs nothing while
 * nothing happens; a lost connection is dropped and the next wait connects
 * again and reports -1 (announcements may have been missed meanwhile). */
#include "store_internal.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

struct hs_store_listener {
	hs_store *s;
	PGconn *c; /* NULL: not connected */
};

int hs_store_listener_new(hs_store *s, hs_store_listener **out, hs_error *err)
{
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store_listener *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	l->s = s;
	*out = l;
	return HS_OK;
}

void hs_store_listener_free(hs_store_listener *l)
{
	if (l == NULL)
		return;
	if (l->c != NULL)
		PQfinish(l->c);
	free(l);
}

static void drop(hs_store_listener *l)
{
	PQfinish(l->c);
	l->c = NULL;
}

/* Read what arrived; the largest announced id into *max. */
static int drain(hs_store_listener *l, int64_t *max, hs_error *err)
{
	PGnotify *n;
	if (PQconsumeInput(l->c) == 0 || PQstatus(l->c) != CONNECTION_OK) {
		drop(l);
		return hs_error_set(err, HS_UNAVAILABLE, "store: listener: connection lost");
	}
	while ((n = PQnotifies(l->c)) != NULL) {
		int64_t id = n->extra != NULL ? strtoll(n->extra, NULL, 10) : 0;
		if (id > *max)
			*max = id;
		PQfreemem(n);
	}
	return HS_OK;
}

int hs_store_listener_wait(hs_store_listener *l, int timeout_ms, int64_t *max_event_id_out,
			   hs_error *err)
{
	int rc;
	int64_t max = 0;
	if (l == NULL || max_event_id_out == NULL || timeout_ms < 0)
		return hs_error_set(err, HS_INVALID, "store: listener: bad argument");
	if (!l->s->drv->postgres) {
		(void)poll(NULL, 0, timeout_ms);
		*max_event_id_out = 0;
		return HS_OK;
	}
	if (l->c == NULL) {
		if ((rc = hs_store__pg_connect(l->s, &l->c, err)) != HS_OK)
			return rc;
		PGresult *r = PQexec(l->c, "LISTEN harness_task_events");
		bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		if (!ok) {
			drop(l);
			return hs_error_set(err, HS_UNAVAILABLE, "store: listener: LISTEN failed");
		}
		*max_event_id_out = -1;
		return HS_OK;
	}
	if ((rc = drain(l, &max, err)) != HS_OK)
		return rc;
	if (max == 0) {
		struct pollfd pfd = { .fd = PQsocket(l->c), .events = POLLIN };
		if (pfd.fd < 0) {
			drop(l);
			return hs_error_set(err, HS_UNAVAILABLE, "store: listener: connection lost");
		}
		if (poll(&pfd, 1, timeout_ms) > 0 && (rc = drain(l, &max, err)) != HS_OK)
			return rc;
	}
	*max_event_id_out = max;
	return HS_OK;
}
