/* PostgreSQL's heartbeat batch: one UPDATE ... FROM unnest(arrays) for the
 * whole batch (store_heartbeat.c runs it inside the batch's transaction). On SQLite a
 * statement costs a function call; on PostgreSQL each is a round trip to
 * another process (or machine), which a batch of a few hundred beats would
 * otherwise pay a few hundred times before its one COMMIT.
 *
 * The batch is sorted by task_id (store_heartbeat.c) and each beat links to the last
 * beat of its task (latest): only those go into the arrays (UPDATE ... FROM
 * with duplicate keys would apply an arbitrary one), and every beat of the
 * task gets its result. A task the RETURNING list lacks
 * does not exist: HS_NOT_FOUND. If the statement fails (a trigger or a
 * constraint refused one row) the caller re-runs the batch with a savepoint
 * per beat, so only the refused beat fails. */
#include "store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
	char *p;
	size_t n, cap;
	bool oom;
} buf;

static void put(buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

/* One element of a text[] literal: always quoted, \ and " escaped. */
static void put_text(buf *b, const char *s)
{
	put(b, b->n > 1 ? ",\"" : "\"", b->n > 1 ? 2 : 1);
	for (const char *c = s; *c != '\0'; c++) {
		if (*c == '"' || *c == '\\')
			put(b, "\\", 1);
		put(b, c, 1);
	}
	put(b, "\"", 1);
}

static void put_int(buf *b, int64_t v)
{
	char num[32];
	int n = snprintf(num, sizeof(num), "%s%lld", b->n > 1 ? "," : "", (long long)v);
	put(b, num, (size_t)n);
}

static void put_double(buf *b, double v)
{
	char num[40];
	int n = snprintf(num, sizeof(num), "%s%.17g", b->n > 1 ? "," : "", v);
	put(b, num, (size_t)n);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

enum { A_ID, A_STEP, A_TOTAL, A_CPU, A_MEM, A_DISK, A_DETAILS, A_NOW, A__COUNT };

int hs_store__pg_heartbeat_batch(hs_store *s, hs_store__beat *batch, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	buf arr[A__COUNT] = { 0 };
	char **found = NULL;
	size_t n_found = 0, cap_found = 0;
	for (int i = 0; i < A__COUNT; i++)
		put(&arr[i], "{", 1);
	for (hs_store__beat *b = batch; b != NULL; b = b->next) {
		if (b->latest != NULL)
			continue; /* coalesced: a later beat of this task wins */
		put_text(&arr[A_ID], b->task_id);
		put_int(&arr[A_STEP], b->step);
		put_int(&arr[A_TOTAL], b->total);
		put_double(&arr[A_CPU], b->cpu);
		put_double(&arr[A_MEM], b->mem_mb);
		put_double(&arr[A_DISK], b->disk_mb);
		put_text(&arr[A_DETAILS], b->details);
		put_int(&arr[A_NOW], b->now_ms);
	}
	for (int i = 0; i < A__COUNT; i++) {
		put(&arr[i], "}", 1);
		if (arr[i].oom) {
			rc = hs_error_set(err, HS_INTERNAL, "store: out of memory");
			goto done;
		}
	}
	HS_STMT(st, HS_STMT_TASK_HEARTBEAT_BATCH,
		"UPDATE tasks AS t SET current_step = v.step, total_steps = v.total, "
		"cpu_usage = v.cpu, memory_usage_mb = v.mem, disk_usage_mb = v.disk, "
		"details = v.details, last_heartbeat_ms = v.now, updated_at_ms = v.now "
		"FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::float8[], $5::float8[], "
		"$6::float8[], $7::text[], $8::bigint[]) "
		"AS v(task_id, step, total, cpu, mem, disk, details, now) "
		"WHERE t.task_id = v.task_id RETURNING t.task_id");
	for (int i = 0; i < A__COUNT; i++)
		HS_BIND_T(st, i + 1, arr[i].p, arr[i].n + 1, "heartbeat batch");
	while ((rc = hs_store__step(st, "heartbeat", err)) == HS_STORE_ROW) {
		if ((rc = hs_store__grow((void **)&found, &cap_found, n_found, sizeof(*found), err)) !=
		    HS_OK)
			goto done;
		size_t len = 0;
		const char *id = st->drv->col_text(st, 0, &len);
		if (id == NULL || (found[n_found] = strndup(id, len)) == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "store: out of memory");
			goto done;
		}
		n_found++;
	}
	if (rc != HS_OK)
		goto done;
	if (n_found > 1)
		qsort(found, n_found, sizeof(*found), cmp_str);
	for (hs_store__beat *b = batch; b != NULL; b = b->next) {
		if (n_found > 0 &&
		    bsearch(&b->task_id, found, n_found, sizeof(*found), cmp_str) != NULL)
			b->rc = HS_OK;
		else
			b->rc = hs_error_set(&b->err, HS_NOT_FOUND, "store: task %s not found",
					     b->task_id);
	}
done:
	hs_store__release(st);
	for (size_t i = 0; i < n_found; i++)
		free(found[i]);
	free(found);
	for (int i = 0; i < A__COUNT; i++)
		free(arr[i].p);
	return rc;
}
