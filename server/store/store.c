/* The store: lifecycle (choosing a backend), and the helpers the entity
 * files (users.c, tokens.c, sandboxes.c, tasks.c, owners.c, apikeys.c)
 * share over the backend's driver (store_internal.h).
 *
 * Backends
 * --------
 * Two implement the driver: embedded SQLite (store_sqlite.c, the default:
 * one file, no server) and PostgreSQL (store_pg.c, libpq: the store
 * several harnessd nodes share). The entity files are written once, in SQL
 * both understand (?N parameters become $N for PostgreSQL; the few
 * statements that differ give both texts with HS_STMT2), so every function
 * of store.h has the same semantics on both, and the one store suite
 * (tests/unit/store) runs against each. Each backend documents its own
 * threading, durability and migrations at the top of its file. */
#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "log.h"

int hs_store__stmt(hs_store *s, hs_stmt_id id, const char *sql, hs_stmt **out, hs_error *err)
{
	return s->drv->stmt(s, id, sql, out, err);
}

int hs_store__stmt2(hs_store *s, hs_stmt_id id, const char *sql_sqlite, const char *sql_pg,
		    hs_stmt **out, hs_error *err)
{
	return s->drv->stmt(s, id, s->drv->postgres ? sql_pg : sql_sqlite, out, err);
}

int hs_store__step_done(hs_store *s, hs_stmt *st, const char *op, hs_error *err)
{
	(void)s;
	int rc = hs_store__step(st, op, err);
	if (rc == HS_STORE_ROW)
		return hs_error_set(err, HS_INTERNAL, "store: %s: unexpected row", op);
	return rc;
}

int hs_store__step_row(hs_stmt *st, const char *op, hs_error *err)
{
	int rc = hs_store__step(st, op, err);
	if (rc == HS_STORE_ROW)
		return HS_OK;
	if (rc == HS_OK)
		return hs_error_set(err, HS_INTERNAL, "store: %s: no row", op);
	return rc;
}

int hs_store__ordered_lock(hs_store *s, const char *key, hs_error *err)
{
	char sql[64];
	if (!s->drv->postgres)
		return HS_OK;
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%s)", key);
	return s->drv->exec(s, sql, "order seq", err);
}

int hs_store__commit(hs_store *s, hs_error *err)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	int rc = s->drv->commit(s, err);
	clock_gettime(CLOCK_MONOTONIC, &b);
	hs_histogram_observe(&s->m_commit_seconds, (double)(b.tv_sec - a.tv_sec) +
							   (double)(b.tv_nsec - a.tv_nsec) / 1e9);
	return rc;
}

int hs_store__ordered_begin(hs_store *s, const char *key, hs_error *err)
{
	int rc;
	if (!s->drv->postgres)
		return HS_OK;
	if ((rc = hs_store__begin(s, err)) != HS_OK)
		return rc;
	if ((rc = hs_store__ordered_lock(s, key, err)) != HS_OK)
		hs_store__rollback(s);
	return rc;
}

int hs_store__ordered_end(hs_store *s, int rc, hs_error *err)
{
	if (!s->drv->postgres)
		return rc;
	if (rc == HS_OK)
		rc = hs_store__commit(s, err);
	if (rc != HS_OK)
		hs_store__rollback(s); /* no transaction (begin failed): a no-op */
	return rc;
}

int hs_store__bind_text(hs_store *s, hs_stmt *st, int idx, const char *v, size_t cap,
			const char *field, hs_error *err)
{
	(void)s;
	size_t n = 0;
	if (v != NULL) {
		n = strnlen(v, cap);
		if (n >= cap)
			return hs_error_set(err, HS_INVALID, "store: %s is longer than %zu bytes",
					    field, cap - 1);
	}
	return st->drv->bind_text(st, idx, v, n, err);
}

int hs_store__bind_int(hs_store *s, hs_stmt *st, int idx, int64_t v, hs_error *err)
{
	(void)s;
	return st->drv->bind_int(st, idx, v, err);
}

int hs_store__bind_double(hs_store *s, hs_stmt *st, int idx, double v, hs_error *err)
{
	(void)s;
	return st->drv->bind_double(st, idx, v, err);
}

int hs_store__col_text(hs_stmt *st, int col, char *dst, size_t cap, const char *field,
		       hs_error *err)
{
	size_t n = 0;
	const char *v = st->drv->col_text(st, col, &n);
	if (v == NULL) {
		dst[0] = '\0';
		return HS_OK;
	}
	if (n >= cap)
		return hs_error_set(err, HS_INTERNAL, "store: stored %s is longer than %zu bytes",
				    field, cap - 1);
	memcpy(dst, v, n);
	dst[n] = '\0';
	return HS_OK;
}

int hs_store__check_key(const char *v, size_t cap, const char *field, hs_error *err)
{
	if (v == NULL || v[0] == '\0')
		return hs_error_set(err, HS_INVALID, "store: %s is empty", field);
	if (strnlen(v, cap) >= cap)
		return hs_error_set(err, HS_INVALID, "store: %s is longer than %zu bytes", field, cap - 1);
	return HS_OK;
}

int hs_store__grow(void **arr, size_t *cap, size_t n, size_t elem, hs_error *err)
{
	if (n < *cap)
		return HS_OK;
	size_t ncap = *cap ? *cap * 2 : 16;
	void *p = reallocarray(*arr, ncap, elem);
	if (p == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	*arr = p;
	*cap = ncap;
	return HS_OK;
}

int hs_store__collect(hs_store *s, hs_stmt *st, size_t elem, hs_store__row_reader read,
		      const char *what, void **out, size_t *n_out, hs_error *err)
{
	(void)s;
	int rc;
	char *rows = NULL;
	size_t n = 0, cap = 0;
	while ((rc = hs_store__step(st, what, err)) == HS_STORE_ROW) {
		if ((rc = hs_store__grow((void **)&rows, &cap, n, elem, err)) != HS_OK ||
		    (rc = read(st, rows + n * elem, err)) != HS_OK)
			goto done;
		n++;
	}
	if (rc != HS_OK)
		goto done;
	*out = rows;
	*n_out = n;
	rows = NULL;
done:
	free(rows);
	return rc;
}

int hs_store__sorted_out(int rc, void *rows, size_t n, size_t elem,
			 int (*cmp)(const void *, const void *), void **out, size_t *n_out)
{
	if (rc != HS_OK) {
		free(rows);
		return rc;
	}
	if (n > 1)
		qsort(rows, n, elem, cmp);
	*out = rows;
	*n_out = n;
	return HS_OK;
}

int hs_store__get_one(hs_store *s, int stmt_id, const char *sql, const char *key, size_t key_cap,
		      const char *key_name, size_t elem, hs_store__row_reader read,
		      const char *not_found, void *out, hs_error *err)
{
	int rc;
	hs_stmt *st = NULL;
	void *row = malloc(elem); /* some rows are several KiB: not on the stack */
	if (row == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	hs_store__lock(s);
	HS_STMT(st, (hs_stmt_id)stmt_id, sql);
	HS_BIND_T(st, 1, key, key_cap, key_name);
	rc = hs_store__step(st, not_found, err);
	if (rc == HS_OK) {
		rc = hs_error_set(err, HS_NOT_FOUND, "%s", not_found);
		goto done;
	}
	if (rc != HS_STORE_ROW)
		goto done;
	if ((rc = read(st, row, err)) != HS_OK)
		goto done;
	memcpy(out, row, elem);
done:
	hs_store__release(st);
	hs_store__unlock(s);
	free(row);
	return rc;
}

size_t hs_store__limit(size_t limit)
{
	if (limit == 0)
		return HS_STORE_LIST_DEFAULT;
	return limit > HS_STORE_LIST_MAX ? HS_STORE_LIST_MAX : limit;
}

/* ---- lifecycle ------------------------------------------------------------ */

static const double commit_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
					0.05,	0.1,   0.25,   0.5,   1,    2.5 };
static const double beats_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };

static int store_new(hs_store **out, hs_error *err)
{
	hs_store *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return hs_error_set(err, HS_INTERNAL, "store: out of memory");
	if (pthread_mutex_init(&s->hb_mu, NULL) != 0) {
		free(s);
		return hs_error_set(err, HS_INTERNAL, "store: mutex init failed");
	}
	if (pthread_cond_init(&s->hb_cv, NULL) != 0) {
		pthread_mutex_destroy(&s->hb_mu);
		free(s);
		return hs_error_set(err, HS_INTERNAL, "store: condition variable init failed");
	}
	hs_histogram_init(&s->m_commit_seconds, commit_bounds,
			  sizeof(commit_bounds) / sizeof(commit_bounds[0]), 1e6);
	hs_histogram_init(&s->m_beats_per_commit, beats_bounds,
			  sizeof(beats_bounds) / sizeof(beats_bounds[0]), 1);
	*out = s;
	return HS_OK;
}

/* mkdir -p with mode 0700 for every directory we create. */
static int make_dirs(const char *dir, hs_error *err)
{
	char buf[HS_STORE_PATH_MAX];
	size_t n = strnlen(dir, sizeof(buf));
	if (n >= sizeof(buf))
		return hs_error_set(err, HS_INVALID, "store: data_dir is longer than %zu bytes",
				    sizeof(buf) - 1);
	memcpy(buf, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return hs_error_set(err, HS_UNAVAILABLE, "store: mkdir %s: %s", buf,
					    strerror(errno));
		buf[i] = c;
	}
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return hs_error_set(err, HS_UNAVAILABLE, "store: data_dir %s is not a directory", dir);
	return HS_OK;
}

static int open_sqlite_file(hs_store **out, const char *path, hs_error *err)
{
	int rc;
	hs_store *s = NULL;
	if ((rc = store_new(&s, err)) != HS_OK)
		return rc;
	if ((rc = hs_store__sqlite_open(s, path, err)) != HS_OK) {
		hs_store_free(s);
		return rc;
	}
	*out = s;
	return HS_OK;
}

int hs_store_open(hs_store **out, const char *data_dir, hs_error *err)
{
	int rc;
	char path[HS_STORE_PATH_MAX + 16];
	if (out == NULL || data_dir == NULL || data_dir[0] == '\0')
		return hs_error_set(err, HS_INVALID, "store: data_dir is empty");
	if ((rc = make_dirs(data_dir, err)) != HS_OK)
		return rc;
	int n = snprintf(path, sizeof(path), "%s/harness.db", data_dir);
	if (n < 0 || (size_t)n >= sizeof(path))
		return hs_error_set(err, HS_INVALID, "store: data_dir is too long");
	return open_sqlite_file(out, path, err);
}

bool hs_store_spec_is_postgres(const char *spec)
{
	return spec != NULL && (strncmp(spec, "postgres://", 11) == 0 ||
				strncmp(spec, "postgresql://", 13) == 0);
}

int hs_store_open_spec(hs_store **out, const char *spec, const char *data_dir, hs_error *err)
{
	int rc;
	if (out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	if (spec == NULL || spec[0] == '\0')
		return hs_store_open(out, data_dir, err);
	if (strncmp(spec, "sqlite:", 7) == 0) {
		const char *path = spec + 7;
		char dir[HS_STORE_PATH_MAX];
		if (path[0] == '\0')
			return hs_error_set(err, HS_INVALID, "store: sqlite: needs a file path");
		size_t n = strnlen(path, sizeof(dir));
		if (n >= sizeof(dir))
			return hs_error_set(err, HS_INVALID, "store: sqlite path is too long");
		memcpy(dir, path, n + 1);
		char *slash = strrchr(dir, '/');
		if (slash != NULL && slash != dir) {
			*slash = '\0';
			if ((rc = make_dirs(dir, err)) != HS_OK)
				return rc;
		}
		return open_sqlite_file(out, path, err);
	}
	if (hs_store_spec_is_postgres(spec)) {
		hs_store *s = NULL;
		if ((rc = store_new(&s, err)) != HS_OK)
			return rc;
		if ((rc = hs_store__pg_open(s, spec, err)) != HS_OK) {
			hs_store_free(s);
			return rc;
		}
		*out = s;
		return HS_OK;
	}
	return hs_error_set(err, HS_INVALID,
			    "store: --store must be empty, sqlite:<path> or postgres://...");
}

void hs_store_collect_metrics(hs_metrics_out *out, void *payload)
{
	hs_store *s = payload;
	hs_store__hb_stats hb;
	hs_store__heartbeat_stats(s, &hb);
	const char *backend[] = { "backend", s->drv->name, NULL };
	hs_metrics_family(out, "harness_store_info", "gauge", "The store's backend.");
	hs_metrics_sample(out, "harness_store_info", backend, 1);
	hs_metrics_family(out, "harness_store_unavailable_total", "counter",
			  "Store calls that failed because the database could not serve them.");
	hs_metrics_sample(out, "harness_store_unavailable_total", NULL,
			  (double)hs_counter_get(&s->unavailable));
	hs_metrics_family(out, "harness_store_heartbeat_batches_total", "counter",
			  "Heartbeat group commits (transactions).");
	hs_metrics_sample(out, "harness_store_heartbeat_batches_total", NULL, (double)hb.batches);
	hs_metrics_family(out, "harness_store_heartbeats_total", "counter",
			  "Heartbeats written by group commits.");
	hs_metrics_sample(out, "harness_store_heartbeats_total", NULL, (double)hb.beats);
	hs_metrics_family(out, "harness_store_commit_seconds", "histogram",
			  "Time a store COMMIT took (fsync or WAL flush included).");
	hs_metrics_histogram(out, "harness_store_commit_seconds", NULL, &s->m_commit_seconds);
	hs_metrics_family(out, "harness_store_heartbeats_per_commit", "histogram",
			  "Heartbeats made durable by one group commit.");
	hs_metrics_histogram(out, "harness_store_heartbeats_per_commit", NULL,
			     &s->m_beats_per_commit);
	if (s->drv->collect != NULL)
		s->drv->collect(s, out);
}

const char *hs_store_backend(hs_store *store)
{
	return store != NULL && store->drv != NULL ? store->drv->name : "";
}

void hs_store_free(hs_store *store)
{
	if (store == NULL)
		return;
	hs_store__heartbeat_stop(store); /* commits what is queued, before the driver closes */
	if (store->drv != NULL)
		store->drv->close(store);
	pthread_cond_destroy(&store->hb_cv);
	pthread_mutex_destroy(&store->hb_mu);
	free(store);
}

int hs_store_schema_version(hs_store *store, int *out, hs_error *err)
{
	if (store == NULL || out == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL argument");
	return store->drv->schema_version(store, out, err);
}

int hs_store_schema_version_latest(void)
{
	return hs_store__migration_count;
}

int hs_store_check_writable(hs_store *store, hs_error *err)
{
	hs_store *s = store;
	int rc;
	hs_stmt *st = NULL;
	if (s == NULL)
		return hs_error_set(err, HS_INVALID, "store: NULL store");
	hs_store__lock(s);
	if ((rc = hs_store__begin(s, err)) != HS_OK)
		goto done;
	HS_STMT(st, HS_STMT_PROBE,
		"INSERT INTO store_probe(id, written_at_ms) VALUES(1, ?1) "
		"ON CONFLICT(id) DO UPDATE SET written_at_ms = excluded.written_at_ms");
	HS_BIND_I(st, 1, hs_clock_wall_ms());
	if ((rc = hs_store__step_done(s, st, "probe write", err)) != HS_OK)
		goto done;
	rc = hs_store__commit(s, err);
done:
	hs_store__release(st);
	if (rc != HS_OK) {
		hs_store__rollback(s);
		if (err != NULL)
			err->code = HS_UNAVAILABLE;
		rc = HS_UNAVAILABLE;
	}
	hs_store__unlock(s);
	return rc;
}
