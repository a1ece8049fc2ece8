/* ListTasks: the visible tasks in memory, most recently registered first,
 * filtered by state and label selector, paged by an opaque token (split
 * from ops.c). */
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
