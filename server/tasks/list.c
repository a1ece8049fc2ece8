/* ListTasks: the visible tasks, most recently registered first, filtered
 * by state and label selector, paged by an opaque token (split from
 * ops.c). One node (no leases): the tasks in memory, which are all of them.
 * Many nodes on one store (t->leases): every node's tasks, read from the
 * store a bounded page at a time, so any node answers the same list and a
 * token from one node works on another. */
#include "tasks_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_DEFAULT 50
#define LIST_MAX 1000

/* ---- list ------------------------------------------------------------------ */

typedef struct list_key {
	int64_t registered_at;
	task *k;
} list_key;

static int by_newest(const void *a, const void *b)
{
	const list_key *x = a, *y = b;
	if (x->registered_at != y->registered_at)
		return x->registered_at > y->registered_at ? -1 : 1;
	return strcmp(x->k->id, y->k->id);
}

/* Moves the m first keys in by_newest order to keys[0..m), sorted, when m
 * is much smaller than n: a bounded max-heap (its root the last of the
 * best so far), O(n log m) instead of sorting all n. */
static void sift_down(list_key *h, size_t m, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, big = i;
		if (l < m && by_newest(&h[l], &h[big]) > 0)
			big = l;
		if (r < m && by_newest(&h[r], &h[big]) > 0)
			big = r;
		if (big == i)
			return;
		list_key t = h[i];
		h[i] = h[big];
		h[big] = t;
		i = big;
	}
}

static void first_m(list_key *keys, size_t n, size_t m)
{
	if (m == 0 || m * 8 >= n) {
		qsort(keys, n, sizeof(*keys), by_newest);
		return;
	}
	for (size_t i = m / 2; i-- > 0;) /* keys[0..m) as a heap */
		sift_down(keys, m, i);
	for (size_t i = m; i < n; i++) {
		if (by_newest(&keys[i], &keys[0]) < 0) { /* better than the worst kept */
			keys[0] = keys[i];
			sift_down(keys, m, 0);
		}
	}
	qsort(keys, m, sizeof(*keys), by_newest);
}

/* Does the task's labels JSON satisfy the selector (common/labels.h)? */
static bool labels_match(const char *labels_json, const hs_task_list_opts *o)
{
	if (o->n_selector == 0)
		return true;
	json_t *j = json_loads(labels_json ? labels_json : "{}", 0, NULL);
	hs_label have[HS_LABELS_MAX];
	size_t n = 0;
	const char *key;
	json_t *v;
	if (json_is_object(j))
		json_object_foreach(j, key, v)
		{
			if (n < HS_LABELS_MAX && json_is_string(v))
				have[n++] = (hs_label){ key, json_string_value(v) };
		}
	bool ok = hs_labels_match(have, n, o->selector, o->n_selector);
	json_decref(j);
	return ok;
}

/* One stored row as a task_info: the memory copy when this node holds the
 * task (fresher), with newer stored progress merged in as GetTask does;
 * otherwise the stored row. */
static int info_of_row(hs_tasks *t, const hs_store_task_row *row, hs_task_info *out,
		       hs_error *err)
{
	task *k = hs_tasks__lookup(t, row->task_id);
	if (k != NULL) {
		pthread_mutex_lock(&k->mu);
		if (hs_tasks__held(t, k)) {
			bool oom = false;
			hs_tasks__info_of(k, out, &oom);
			pthread_mutex_unlock(&k->mu);
			if (oom) {
				hs_task_info_dispose(out);
				return hs_error_set(err, HS_INTERNAL, "out of memory");
			}
			hs_tasks__merge_progress(out, row);
			return HS_OK;
		}
		pthread_mutex_unlock(&k->mu);
	}
	return hs_tasks__remote_get(t, row, out, err);
}

/* Many nodes: the page from the store. Rows come newest first in batches
 * of page + 1 (at most the store's list bound; owner and state filtered by the query; visibility checked
 * again here, the label selector applied here) until page + 1 visible
 * tasks are found or the store has no more. */
static int list_store(hs_tasks *t, const hs_principal *caller, const hs_task_list_opts *o,
		      size_t page, bool has_cursor, long long c_reg, const char *c_id,
		      hs_task_info **out, size_t *n_out, char **next_token, hs_error *err)
{
	int rc = HS_OK;
	hs_task_info *arr = calloc(page, sizeof(*arr));
	hs_store_task_row *rows = NULL;
	size_t m = 0, n_rows = 0;
	bool more = false;
	char *tok = NULL;
	char at_id[HS_STORE_ID_MAX], last_id[HS_STORE_ID_MAX] = "";
	int64_t last_reg = 0;
	if (arr == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	COPY(at_id, c_id);
	hs_store_task_page q = { .owner = caller->is_admin ? NULL : caller->user_id,
				 .state = o->state == 0 ? -1 : (int)o->state,
				 .has_cursor = has_cursor,
				 .after_reg_ms = c_reg,
				 .after_id = at_id,
				 .limit = page + 1 < HS_STORE_LIST_MAX ? page + 1 : HS_STORE_LIST_MAX };
	for (;;) {
		free(rows);
		rows = NULL;
		if ((rc = hs_store_task_list_newest(t->store, &q, &rows, &n_rows, err)) != HS_OK)
			goto done;
		for (size_t i = 0; i < n_rows; i++) {
			const hs_store_task_row *r = &rows[i];
			if (!hs_principal_may(caller, r->owner) ||
			    (o->state != 0 && r->state != (int)o->state) ||
			    !labels_match(r->labels_json, o))
				continue;
			if (m == page) {
				more = true;
				break;
			}
			if ((rc = info_of_row(t, r, &arr[m], err)) != HS_OK)
				goto done;
			m++;
			last_reg = r->registered_at_ms;
			COPY(last_id, r->task_id);
		}
		if (more || n_rows < q.limit)
			break;
		q.has_cursor = true;
		q.after_reg_ms = rows[n_rows - 1].registered_at_ms;
		COPY(at_id, rows[n_rows - 1].task_id);
	}
	if (more && m > 0) {
		size_t len = 32 + HS_TASK_ID_MAX;
		if ((tok = malloc(len)) == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
			goto done;
		}
		snprintf(tok, len, "%lld.%s", (long long)last_reg, last_id);
	}
done:
	free(rows);
	if (rc != HS_OK) {
		hs_task_info_array_free(arr, m);
		free(tok);
		return rc;
	}
	*out = arr;
	*n_out = m;
	*next_token = tok;
	return HS_OK;
}

int hs_tasks_list(hs_tasks *t, const hs_principal *caller, const hs_task_list_opts *o,
		  hs_task_info **out, size_t *n_out, char **next_token, hs_error *err)
{
	int rc;
	if ((rc = hs_tasks__check_caller(caller, err)) != HS_OK)
		return rc;
	if (o->state < 0 || o->state > HS_TASK_CANCELLED)
		return hs_error_set(err, HS_INVALID, "state: unknown value %d", o->state);
	if (o->n_selector > 0 &&
	    (rc = hs_labels_check("label_selector", o->selector, o->n_selector, err)) != HS_OK)
		return rc;
	if (o->page_size < 0)
		return hs_error_set(err, HS_INVALID, "page_size: must be >= 0");
	size_t page = o->page_size == 0	       ? LIST_DEFAULT
		      : o->page_size > LIST_MAX ? LIST_MAX
						: (size_t)o->page_size;
	long long c_reg = 0;
	char c_id[HS_TASK_ID_MAX + 1] = "";
	bool has_cursor = o->page_token != NULL && o->page_token[0] != '\0';
	if (has_cursor) {
		int used = 0;
		if (sscanf(o->page_token, "%lld.%n", &c_reg, &used) != 1 || used <= 0 ||
		    strlen(o->page_token + used) > HS_TASK_ID_MAX)
			return hs_error_set(err, HS_INVALID, "page_token: malformed");
		COPY(c_id, o->page_token + used);
	}
	if (t->leases)
		return list_store(t, caller, o, page, has_cursor, c_reg, c_id, out, n_out, next_token,
				  err);
	pthread_mutex_lock(&t->mu);
	size_t n_all = t->n_all;
	list_key *keys = malloc((n_all ? n_all : 1) * sizeof(*keys));
	if (keys != NULL)
		for (size_t i = 0; i < n_all; i++)
			keys[i].k = t->all[i];
	pthread_mutex_unlock(&t->mu);
	if (keys == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	size_t n = 0;
	for (size_t i = 0; i < n_all; i++) {
		task *k = keys[i].k;
		pthread_mutex_lock(&k->mu);
		bool keep = hs_tasks__visible(k, caller) && (o->state == 0 || k->m.state == o->state) &&
			    labels_match(k->labels_json, o);
		int64_t reg = k->registered_at_ms;
		pthread_mutex_unlock(&k->mu);
		if (keep && has_cursor)
			keep = reg < c_reg || (reg == c_reg && strcmp(k->id, c_id) > 0);
		if (keep)
			keys[n++] = (list_key){ reg, k };
	}
	size_t m = n < page ? n : page;
	first_m(keys, n, m);
	hs_task_info *arr = calloc(m ? m : 1, sizeof(*arr));
	if (arr == NULL) {
		free(keys);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	bool oom = false;
	for (size_t i = 0; i < m && !oom; i++) {
		pthread_mutex_lock(&keys[i].k->mu);
		hs_tasks__info_of(keys[i].k, &arr[i], &oom);
		pthread_mutex_unlock(&keys[i].k->mu);
	}
	char *tok = NULL;
	if (!oom && m < n && m > 0) {
		size_t len = 32 + HS_TASK_ID_MAX;
		tok = malloc(len);
		if (tok == NULL)
			oom = true;
		else
			snprintf(tok, len, "%lld.%s", (long long)keys[m - 1].registered_at,
				 keys[m - 1].k->id);
	}
	free(keys);
	if (oom) {
		hs_task_info_array_free(arr, m);
		free(tok);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	*out = arr;
	*n_out = m;
	*next_token = tok;
	return HS_OK;
}
