/* Nodes and task leases (store.h, "nodes and task leases"): the rows
 * several harnessd nodes on one PostgreSQL store coordinate through. The
 * lease is one atomic upsert whose WHERE clause is the compare-and-set
 * (SQLite serialises writers; PostgreSQL re-evaluates it on the row a
 * concurrent writer committed), so two nodes racing for an expired lease
 * cannot both win, and the loser learns who did. */
#include "store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODE_COLS "node_id, address, started_at_ms, expires_at_ms, updated_at_ms"
#define LEASE_COLS "task_id, node_id, fence, expires_at_ms"

static int read_node(hs_stmt *st, void *row, hs_error *err)
{
	int rc;
	hs_store_node_row *r = row;
	memset(r, 0, sizeof(*r));
	HS_COL_T(st, 0, r->node_id, "node_id");
	HS_COL_T(st, 1, r->address, "address");
	r->started_at_ms = hs_store__col_int64(st, 2);
	r->expires_at_ms = hs_store__col_int64(st, 3);
	r->updated_at_ms = hs_store__col_int64(st, 4);
	rc = HS_OK;
done:
	return rc;
}

static int read_lease(hs_stmt *st, void *row, hs_error *err)
{
	int rc;
	hs_store_lease_row *r = row;
	memset(r, 0, sizeof(*r));
	HS_COL_T(st, 0, r->task_id, "task_id");
	HS_COL_T(st, 1, r->node_id, "node_id");
	r->fence = hs_store__col_int64(st, 2);
	r->expires_at_ms = hs_store__col_int64(st, 3);
	rc = HS_OK;
done:
	return rc;
}

static int by_task_id(const void *a, const void *b)
{
	return strcmp(((const hs_store_lease_row *)a)->task_id,
		      ((const hs_store_lease_row *)b)->task_id);
}

/* The nodes row's upsert, shared by put, claim and renew, which differ
 * only in the WHERE that lets it replace an existing row (and RETURNING,
 * to tell whether it did). */
#define NODE_UPSERT                                                                      \
	"INSERT INTO nodes(" NODE_COLS ") VALUES(?1, ?2, ?3, ?4, ?5) "                    \
	"ON CONFLICT(node_id) DO UPDATE SET address = excluded.address, "                 \
	"started_at_ms = excluded.started_at_ms, expires_at_ms = excluded.expires_at_ms, " \
	"updated_at_ms = excluded.updated_at_ms"

/* Checks r, takes the store's lock and prepares statement id (sql: a
 * NODE_UPSERT) with r's five columns bound as ?1..?5 into *out. On
 * success the caller holds the lock and releases *out and the lock; on
 * error neither is held. */
static int node_upsert(hs_store *s, hs_stmt_id id, const char *sql, const hs_store_node_row *r,
		       hs_stmt **out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || r == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(r->node_id, sizeof(r->node_id), "node_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, id, sql);
	HS_BIND_F(st, 1, r, node_id);
	HS_BIND_F(st, 2, r, address);
	HS_BIND_I(st, 3, r->started_at_ms);
	HS_BIND_I(st, 4, r->expires_at_ms);
	HS_BIND_I(st, 5, r->updated_at_ms);
	*out = st;
	return HS_OK;
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_node_put(hs_store *s, const hs_store_node_row *r, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if ((rc = node_upsert(s, HS_STMT_NODE_PUT, NODE_UPSERT, r, &st, err)) != HS_OK)
		return rc;
	rc = hs_store__step_done(s, st, "put node", err);
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_node_claim(hs_store *s, const hs_store_node_row *r, int64_t now_ms,
			hs_store_node_row *holder, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	/* RETURNING yields no row when a live row makes the WHERE false. */
	if ((rc = node_upsert(s, HS_STMT_NODE_CLAIM,
			      NODE_UPSERT " WHERE nodes.expires_at_ms <= ?6 RETURNING node_id", r,
			      &st, err)) != HS_OK)
		return rc;
	HS_BIND_I(st, 6, now_ms);
	rc = hs_store__step(st, "claim node id", err);
	if (rc == HS_STORE_ROW) {
		/* Finish the statement (SQLite: RETURNING rows come after the write). */
		while ((rc = hs_store__step(st, "claim node id", err)) == HS_STORE_ROW)
			;
		goto done;
	}
	if (rc != HS_OK)
		goto done;
	hs_store__release(st);
	st = NULL;
	hs_store_node_row h;
	HS_STMT(st, HS_STMT_NODE_GET, "SELECT " NODE_COLS " FROM nodes WHERE node_id = ?1");
	HS_BIND_F(st, 1, r, node_id);
	if ((rc = hs_store__step(st, "claim node id", err)) == HS_STORE_ROW &&
	    (rc = read_node(st, &h, err)) == HS_OK) {
		if (holder != NULL)
			*holder = h;
		rc = hs_error_set(err, HS_EXISTS,
				  "store: node id %s is held by a live node at %s (its lease "
				  "expires in %lld ms)",
				  r->node_id, h.address[0] ? h.address : "no address",
				  (long long)(h.expires_at_ms - now_ms));
	} else if (rc == HS_OK) {
		rc = hs_error_set(err, HS_CONFLICT, "store: node id %s: claim raced a stop",
				  r->node_id);
	}
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_node_renew(hs_store *s, const hs_store_node_row *r, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	bool ours = false;
	/* RETURNING yields no row when another incarnation (another
	 * started_at_ms) holds the row; ours keeps its started_at_ms. */
	if ((rc = node_upsert(s, HS_STMT_NODE_RENEW,
			      NODE_UPSERT " WHERE nodes.started_at_ms = excluded.started_at_ms "
			      "RETURNING node_id", r, &st, err)) != HS_OK)
		return rc;
	while ((rc = hs_store__step(st, "renew node", err)) == HS_STORE_ROW)
		ours = true;
	if (rc == HS_OK && !ours)
		rc = hs_error_set(err, HS_CONFLICT,
				  "store: node id %s was claimed by another process (its row is "
				  "not this process's any more)",
				  r->node_id);
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_node_get(hs_store *s, const char *node_id, hs_store_node_row *out, hs_error *err)
{
	int rc;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(node_id, HS_STORE_ID_MAX, "node_id", err)) != HS_OK)
		return rc;
	return hs_store__get_one(s, HS_STMT_NODE_GET,
				 "SELECT " NODE_COLS " FROM nodes WHERE node_id = ?1", node_id,
				 HS_STORE_ID_MAX, "node_id", sizeof(*out), read_node,
				 "store: no such node", out, err);
}

int hs_store_node_list(hs_store *s, int64_t now_ms, hs_store_node_row **out, size_t *n_out,
		       hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_NODE_LIST,
		"SELECT " NODE_COLS " FROM nodes WHERE CAST(?1 AS BIGINT) <= 0 OR expires_at_ms > ?1 "
		"ORDER BY node_id LIMIT ?2");
	HS_BIND_I(st, 1, now_ms);
	HS_BIND_I(st, 2, HS_STORE_LIST_MAX);
	rc = hs_store__collect(s, st, sizeof(hs_store_node_row), read_node, "list nodes",
			       (void **)out, n_out, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_node_delete(hs_store *s, const char *node_id, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(node_id, HS_STORE_ID_MAX, "node_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_NODE_DELETE, "DELETE FROM nodes WHERE node_id = ?1");
	HS_BIND_T(st, 1, node_id, HS_STORE_ID_MAX, "node_id");
	if ((rc = hs_store__step_done(s, st, "delete node", err)) == HS_OK &&
	    hs_store__changes(st) == 0)
		rc = hs_error_set(err, HS_NOT_FOUND, "store: no such node");
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

int hs_store_lease_acquire(hs_store *s, const char *task_id, const char *node_id, int64_t now_ms,
			   int64_t expires_at_ms, hs_store_lease_row *out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	hs_store_lease_row row;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(task_id, HS_STORE_ID_MAX, "task_id", err)) != HS_OK ||
	    (rc = hs_store__check_key(node_id, HS_STORE_ID_MAX, "node_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	/* Granted to the holder (renewal, same fence) or over an expired
	 * lease (takeover, fence + 1); RETURNING yields no row when a live
	 * lease of another node makes the WHERE false. */
	HS_STMT(st, HS_STMT_LEASE_ACQUIRE,
		"INSERT INTO task_leases(" LEASE_COLS ") VALUES(?1, ?2, 1, ?4) "
		"ON CONFLICT(task_id) DO UPDATE SET "
		"fence = CASE WHEN task_leases.node_id = excluded.node_id THEN task_leases.fence "
		"ELSE task_leases.fence + 1 END, "
		"node_id = excluded.node_id, expires_at_ms = excluded.expires_at_ms "
		"WHERE task_leases.node_id = excluded.node_id OR task_leases.expires_at_ms <= ?3 "
		"RETURNING " LEASE_COLS);
	HS_BIND_T(st, 1, task_id, HS_STORE_ID_MAX, "task_id");
	HS_BIND_T(st, 2, node_id, HS_STORE_ID_MAX, "node_id");
	HS_BIND_I(st, 3, now_ms);
	HS_BIND_I(st, 4, expires_at_ms);
	rc = hs_store__step(st, "acquire task lease", err);
	if (rc == HS_OK) {
		rc = hs_error_set(err, HS_CONFLICT, "store: task %s is leased by another node",
				  task_id);
		goto done;
	}
	if (rc != HS_STORE_ROW)
		goto done;
	if ((rc = read_lease(st, &row, err)) != HS_OK)
		goto done;
	/* Finish the statement (SQLite: RETURNING rows come after the write). */
	while ((rc = hs_store__step(st, "acquire task lease", err)) == HS_STORE_ROW)
		;
done:
	hs_store__release(st);
	hs_store__unlock(s);
	if (rc == HS_OK && out != NULL)
		*out = row;
	return rc;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ids are checked names, but the array is SQL input: escaped. */
static int json_array(const char *const *ids, size_t n, char **out, hs_error *err)
{
	size_t cap = 3;
	for (size_t i = 0; i < n; i++)
		cap += strlen(ids[i]) * 6 + 3;
	char *p = malloc(cap), *w = p;
	if (p == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	*w++ = '[';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			*w++ = ',';
		*w++ = '"';
		for (const unsigned char *c = (const unsigned char *)ids[i]; *c != '\0'; c++) {
			if (*c == '"' || *c == '\\') {
				*w++ = '\\';
				*w++ = (char)*c;
			} else if (*c < 0x20) {
				w += snprintf(w, 7, "\\u%04x", *c);
			} else {
				*w++ = (char)*c;
			}
		}
		*w++ = '"';
	}
	*w++ = ']';
	*w = '\0';
	*out = p;
	return HS_OK;
}

int hs_store__json_task_ids(const char *const *task_ids, size_t n, char **out, hs_error *err)
{
	int rc;
	if (n > HS_STORE_LIST_MAX)
		return hs_error_set(err, HS_INVALID, "store: more than %d task ids in one statement",
				    HS_STORE_LIST_MAX);
	for (size_t i = 0; i < n; i++)
		if ((rc = hs_store__check_key(task_ids[i], HS_STORE_ID_MAX, "task_id", err)) != HS_OK)
			return rc;
	/* Sorted and unique: one row is written once per statement, and two
	 * nodes' batches lock common rows in the same order (no deadlock). */
	const char **ids = malloc((n > 0 ? n : 1) * sizeof(*ids));
	if (ids == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	size_t n_ids = 0;
	if (n > 0)
		memcpy(ids, task_ids, n * sizeof(*ids));
	qsort(ids, n, sizeof(*ids), cmp_id);
	for (size_t i = 0; i < n; i++)
		if (n_ids == 0 || strcmp(ids[n_ids - 1], ids[i]) != 0)
			ids[n_ids++] = ids[i];
	rc = json_array(ids, n_ids, out, err);
	free(ids);
	return rc;
}

int hs_store_lease_acquire_many(hs_store *s, const char *const *task_ids, size_t n,
				const char *node_id, int64_t now_ms, int64_t expires_at_ms,
				hs_store_lease_row **out, size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	char *json = NULL;
	hs_store_lease_row *rows = NULL;
	size_t n_rows = 0;
	if (s == NULL || out == NULL || n_out == NULL || (n > 0 && task_ids == NULL))
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(node_id, HS_STORE_ID_MAX, "node_id", err)) != HS_OK)
		return rc;
	if (n == 0) {
		*out = NULL;
		*n_out = 0;
		return HS_OK;
	}
	if ((rc = hs_store__json_task_ids(task_ids, n, &json, err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	/* hs_store_lease_acquire's upsert over the whole list: a row comes
	 * back for each lease granted; one held live by another node is left
	 * alone and not returned. */
#define ACQUIRE_SET                                                                       \
	" ON CONFLICT(task_id) DO UPDATE SET "                                            \
	"fence = CASE WHEN task_leases.node_id = excluded.node_id THEN task_leases.fence " \
	"ELSE task_leases.fence + 1 END, "                                                \
	"node_id = excluded.node_id, expires_at_ms = excluded.expires_at_ms "             \
	"WHERE task_leases.node_id = excluded.node_id OR task_leases.expires_at_ms <= ?3 " \
	"RETURNING " LEASE_COLS
	HS_STMT2(st, HS_STMT_LEASE_ACQUIRE_MANY,
		 "INSERT INTO task_leases(" LEASE_COLS ") SELECT value, ?2, 1, ?4 "
		 "FROM json_each(?1) WHERE true" ACQUIRE_SET,
		 "INSERT INTO task_leases(" LEASE_COLS ") SELECT v, $2, 1, $4 "
		 "FROM json_array_elements_text($1::json) AS v" ACQUIRE_SET);
#undef ACQUIRE_SET
	HS_BIND_T(st, 1, json, strlen(json) + 1, "task_ids");
	HS_BIND_T(st, 2, node_id, HS_STORE_ID_MAX, "node_id");
	HS_BIND_I(st, 3, now_ms);
	HS_BIND_I(st, 4, expires_at_ms);
	rc = hs_store__collect(s, st, sizeof(hs_store_lease_row), read_lease,
			       "acquire task leases", (void **)&rows, &n_rows, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	free(json);
	return hs_store__sorted_out(rc, rows, n_rows, sizeof(*rows), by_task_id, (void **)out,
				    n_out);
}

int hs_store_lease_get(hs_store *s, const char *task_id, hs_store_lease_row *out, hs_error *err)
{
	int rc;
	if (s == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(task_id, HS_STORE_ID_MAX, "task_id", err)) != HS_OK)
		return rc;
	return hs_store__get_one(s, HS_STMT_LEASE_GET,
				 "SELECT " LEASE_COLS " FROM task_leases WHERE task_id = ?1", task_id,
				 HS_STORE_ID_MAX, "task_id", sizeof(*out), read_lease,
				 "store: task has no lease", out, err);
}

int hs_store_lease_release(hs_store *s, const char *task_id, const char *node_id, int64_t fence,
			   hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(task_id, HS_STORE_ID_MAX, "task_id", err)) != HS_OK ||
	    (rc = hs_store__check_key(node_id, HS_STORE_ID_MAX, "node_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	HS_STMT(st, HS_STMT_LEASE_RELEASE,
		"DELETE FROM task_leases WHERE task_id = ?1 AND node_id = ?2 AND fence = ?3");
	HS_BIND_T(st, 1, task_id, HS_STORE_ID_MAX, "task_id");
	HS_BIND_T(st, 2, node_id, HS_STORE_ID_MAX, "node_id");
	HS_BIND_I(st, 3, fence);
	if ((rc = hs_store__step_done(s, st, "release task lease", err)) != HS_OK ||
	    hs_store__changes(st) == 1)
		goto done;
	/* Not ours (any more): someone else's, or nobody's. */
	hs_store__release(st);
	st = NULL;
	HS_STMT(st, HS_STMT_LEASE_GET, "SELECT " LEASE_COLS " FROM task_leases WHERE task_id = ?1");
	HS_BIND_T(st, 1, task_id, HS_STORE_ID_MAX, "task_id");
	rc = hs_store__step(st, "release task lease", err);
	if (rc == HS_STORE_ROW)
		rc = hs_error_set(err, HS_CONFLICT, "store: task %s's lease changed hands", task_id);
	else if (rc == HS_OK)
		rc = hs_error_set(err, HS_NOT_FOUND, "store: task %s has no lease", task_id);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return rc;
}

#define RENEW_CHUNK 1000
#define RENEW_IDLE_MAX 16

/* One chunk of hs_store_lease_renew_node: the leases node_id holds after
 * task_id `after`, at most RENEW_CHUNK, appended to *rows. *more tells
 * whether node_id may hold a lease past the chunk: after a full chunk,
 * yes; after a short one (even empty) the store is asked, since leases
 * the chunk chose may have changed hands (see hs_store_lease_renew_node). */
static int renew_chunk(hs_store *s, const char *node_id, int64_t expires_at_ms, const char *after,
		       hs_store_lease_row **rows, size_t *n, bool *more, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	hs_store_lease_row *got = NULL;
	size_t n_got = 0;
	hs_store__lock(s);
	/* PostgreSQL re-evaluates the WHERE on a row a concurrent takeover
	 * committed: a lease that just changed hands is skipped. There, IN
	 * (subquery) was planned as a hash join over all the node's leases
	 * per chunk (twice the work of one UPDATE for them all); = ANY(ARRAY)
	 * looks the chunk up by primary key. */
	HS_STMT2(st, HS_STMT_LEASE_RENEW_NODE,
		 "UPDATE task_leases SET expires_at_ms = ?2 WHERE node_id = ?1 AND task_id IN "
		 "(SELECT task_id FROM task_leases WHERE node_id = ?1 AND task_id > ?3 "
		 "ORDER BY task_id LIMIT ?4) RETURNING " LEASE_COLS,
		 "UPDATE task_leases SET expires_at_ms = $2 WHERE node_id = $1 AND task_id = "
		 "ANY(ARRAY(SELECT task_id FROM task_leases WHERE node_id = $1 AND task_id > $3 "
		 "ORDER BY task_id LIMIT $4)) RETURNING " LEASE_COLS);
	HS_BIND_T(st, 1, node_id, HS_STORE_ID_MAX, "node_id");
	HS_BIND_I(st, 2, expires_at_ms);
	HS_BIND_T(st, 3, after, HS_STORE_ID_MAX, "task_id");
	HS_BIND_I(st, 4, RENEW_CHUNK);
	if ((rc = hs_store__collect(s, st, sizeof(hs_store_lease_row), read_lease,
				    "renew task leases", (void **)&got, &n_got, err)) != HS_OK)
		goto done;
	/* The walk's termination rests on the store's order being strcmp's
	 * (task_id is COLLATE "C" since migration 11): every row a chunk
	 * renews lies past `after`. A row that does not is a store whose
	 * order disagrees (a column that lost its collation); walking on
	 * would renew the same rows forever, so the renewal fails instead. */
	for (size_t i = 0; i < n_got; i++)
		if (strcmp(got[i].task_id, after) <= 0) {
			rc = hs_error_set(err, HS_INTERNAL,
					  "store: task_leases.task_id is not in byte order (collation "
					  "not \"C\"): renewal stopped at task %s",
					  got[i].task_id);
			goto done;
		}
	*more = true;
	if (n_got == RENEW_CHUNK)
		goto done;
	hs_store__release(st);
	st = NULL;
	/* Past the last lease renewed (or `after` if none was). */
	const char *last = after;
	for (size_t i = 0; i < n_got; i++)
		if (strcmp(got[i].task_id, last) > 0)
			last = got[i].task_id;
	HS_STMT(st, HS_STMT_LEASE_HELD_AFTER,
		"SELECT 1 FROM task_leases WHERE node_id = ?1 AND task_id > ?2 LIMIT 1");
	HS_BIND_T(st, 1, node_id, HS_STORE_ID_MAX, "node_id");
	HS_BIND_T(st, 2, last, HS_STORE_ID_MAX, "task_id");
	rc = hs_store__step(st, "renew task leases", err);
	*more = rc == HS_STORE_ROW;
	if (rc == HS_STORE_ROW)
		rc = HS_OK;
done:
	hs_store__release(st);
	hs_store__unlock(s);
	if (rc == HS_OK && n_got > 0) {
		hs_store_lease_row *all = realloc(*rows, (*n + n_got) * sizeof(*all));
		if (all == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "store: out of memory");
		} else {
			memcpy(all + *n, got, n_got * sizeof(*got));
			*rows = all;
			*n += n_got;
		}
	}
	free(got);
	return rc;
}

int hs_store_lease_renew_node(hs_store *s, const char *node_id, int64_t expires_at_ms,
			      hs_store_lease_row **out, size_t *n_out, hs_error *err)
{
	int rc;
	hs_store_lease_row *rows = NULL;
	size_t n = 0;
	if (s == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(node_id, HS_STORE_ID_MAX, "node_id", err)) != HS_OK)
		return rc;
	/* In chunks by task_id, the store's lock released between them: one
	 * UPDATE of a node's 33,000 leases held the connection (and on
	 * PostgreSQL a burst of WAL) long enough to delay that node's timeouts
	 * and registrations by seconds. On PostgreSQL a chunk comes back short,
	 * even empty, when leases it chose changed hands before it wrote them,
	 * so the walk ends only when the node holds no lease past the last one
	 * renewed (asked after a short chunk). It ends: each turn renews a lease
	 * past `after`, or found every lease it chose taken by another node
	 * (fewer leases are then ours; none comes back but by this node's own
	 * acquisitions). */
	char after[HS_STORE_ID_MAX] = "";
	bool more = true;
	int idle = 0;
	while (more && rc == HS_OK) {
		size_t before = n;
		rc = renew_chunk(s, node_id, expires_at_ms, after, &rows, &n, &more, err);
		for (size_t i = before; i < n; i++)
			if (strcmp(rows[i].task_id, after) > 0)
				memcpy(after, rows[i].task_id, sizeof(after)); /* same size */
		/* Bounded: renew_chunk fails unless each row lies past `after`,
		 * so a turn that renews anything moves `after` strictly forward
		 * (no lease is renewed twice; at most the node's leases, plus
		 * its own acquisitions during the walk, are). A turn that renews
		 * nothing yet is told to go on (every lease it chose changed
		 * hands meanwhile) may repeat only RENEW_IDLE_MAX times in a
		 * row; then the walk ends with HS_UNAVAILABLE (the caller's
		 * next renewal, a third of a lease period later, walks again). */
		if (rc == HS_OK && more && n == before && ++idle >= RENEW_IDLE_MAX)
			rc = hs_error_set(err, HS_UNAVAILABLE,
					  "store: leases of node %s kept changing hands during renewal",
					  node_id);
		else if (n > before)
			idle = 0;
	}
	return hs_store__sorted_out(rc, rows, n, sizeof(*rows), by_task_id, (void **)out, n_out);
}

int hs_store_lease_take_expired(hs_store *s, const char *node_id, int64_t now_ms,
				int64_t expires_at_ms, size_t limit, hs_store_lease_row **out,
				size_t *n_out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	hs_store_lease_row *rows = NULL;
	size_t n = 0;
	if (s == NULL || out == NULL || n_out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if ((rc = hs_store__check_key(node_id, HS_STORE_ID_MAX, "node_id", err)) != HS_OK)
		return rc;
	hs_store__lock(s);
	/* The outer expiry test is the compare-and-set: PostgreSQL evaluates
	 * it again on a row another taker committed meanwhile (READ
	 * COMMITTED), SQLite serialises writers. The subquery picks the
	 * batch; on PostgreSQL it locks it, skipping what another taker
	 * holds locked. = ANY(ARRAY) looks the batch up by primary key. */
	HS_STMT2(st, HS_STMT_LEASE_TAKE_EXPIRED,
		 "UPDATE task_leases SET fence = CASE WHEN node_id = ?1 THEN fence ELSE fence + 1 "
		 "END, node_id = ?1, expires_at_ms = ?3 WHERE expires_at_ms <= ?2 AND task_id IN "
		 "(SELECT task_id FROM task_leases WHERE expires_at_ms <= ?2 "
		 "ORDER BY expires_at_ms, task_id LIMIT ?4) RETURNING " LEASE_COLS,
		 "UPDATE task_leases SET fence = CASE WHEN node_id = $1 THEN fence ELSE fence + 1 "
		 "END, node_id = $1, expires_at_ms = $3 WHERE expires_at_ms <= $2 AND task_id = "
		 "ANY(ARRAY(SELECT task_id FROM task_leases WHERE expires_at_ms <= $2 "
		 "ORDER BY expires_at_ms, task_id LIMIT $4 FOR UPDATE SKIP LOCKED)) "
		 "RETURNING " LEASE_COLS);
	HS_BIND_T(st, 1, node_id, HS_STORE_ID_MAX, "node_id");
	HS_BIND_I(st, 2, now_ms);
	HS_BIND_I(st, 3, expires_at_ms);
	HS_BIND_I(st, 4, hs_store__limit(limit));
	rc = hs_store__collect(s, st, sizeof(hs_store_lease_row), read_lease,
			       "take expired task leases", (void **)&rows, &n, err);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	return hs_store__sorted_out(rc, rows, n, sizeof(*rows), by_task_id, (void **)out, n_out);
}

int hs_store__lease_check_locked(hs_store *s, const char *task_id, const char *node_id,
				 int64_t fence, int64_t now_ms, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	HS_STMT2(st, HS_STMT_LEASE_CHECK,
		 "SELECT 1 FROM task_leases WHERE task_id = ?1 AND node_id = ?2 AND fence = ?3 "
		 "AND expires_at_ms > ?4",
		 "SELECT 1 FROM task_leases WHERE task_id = $1 AND node_id = $2 AND fence = $3 "
		 "AND expires_at_ms > $4 FOR UPDATE");
	HS_BIND_T(st, 1, task_id, HS_STORE_ID_MAX, "task_id");
	HS_BIND_T(st, 2, node_id, HS_STORE_ID_MAX, "node_id");
	HS_BIND_I(st, 3, fence);
	HS_BIND_I(st, 4, now_ms);
	rc = hs_store__step(st, "check task lease", err);
	if (rc == HS_STORE_ROW)
		rc = HS_OK;
	else if (rc == HS_OK)
		rc = hs_error_set(err, HS_CONFLICT,
				  "store: task %s: this node no longer holds its lease (fence %lld)",
				  task_id, (long long)fence);
done:
	hs_store__release(st);
	return rc;
}
