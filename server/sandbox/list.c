/* ListSandboxes: filters (state, task, owner, labels) applied inside the
 * store query, newest first, keyset pages. A page is short only when it is
 * the last one. */
#include "sandbox_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"

#define DEFAULT_PAGE 50
#define MAX_PAGE 1000
#define MAX_TOKEN 512

/* Page tokens are keyset cursors: hex of "<filter hash>.<created_at_ms>.<id>"
 * for the last row of the page. The hash (FNV-1a of the state, task, owner
 * and label filters) binds a token to the filters it was issued for; hex
 * keeps the token opaque and free of characters that need escaping. */
#define TOKEN_MAX (2 * (8 + 1 + 20 + 1 + HS_SANDBOX_ID_MAX) + 1)

static uint32_t fnv1a(uint32_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static uint32_t filter_hash(const hs_store_sandbox_filter *f, int state)
{
	char st[16];
	int n = snprintf(st, sizeof(st), "%d", state);
	uint32_t h = fnv1a(2166136261u, st, (size_t)n + 1);
	h = fnv1a(h, f->task_id ? f->task_id : "", f->task_id ? strlen(f->task_id) + 1 : 0);
	h = fnv1a(h, "|", 1);
	h = fnv1a(h, f->owner ? f->owner : "", f->owner ? strlen(f->owner) + 1 : 0);
	h = fnv1a(h, "|", 1);
	return fnv1a(h, f->labels_json ? f->labels_json : "",
		     f->labels_json ? strlen(f->labels_json) + 1 : 0);
}

static char *token_encode(uint32_t hash, int64_t created_ms, const char *id)
{
	char raw[8 + 1 + 20 + 1 + HS_SANDBOX_ID_MAX + 1];
	int n = snprintf(raw, sizeof(raw), "%08x.%lld.%s", (unsigned)hash, (long long)created_ms,
			 id);
	if (n < 0 || (size_t)n >= sizeof(raw))
		return NULL;
	char *tok = malloc(2 * (size_t)n + 1);
	if (tok == NULL)
		return NULL;
	for (int i = 0; i < n; i++)
		snprintf(tok + 2 * i, 3, "%02x", (unsigned char)raw[i]);
	return tok;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Into id[HS_SANDBOX_ID_MAX + 1] and *created_ms; HS_INVALID unless tok is
 * a token issued for exactly these filters. */
static int token_decode(const char *tok, uint32_t hash, int64_t *created_ms, char *id,
			hs_error *err)
{
	char raw[TOKEN_MAX / 2 + 1];
	size_t len = strlen(tok);
	if (len == 0 || len % 2 != 0 || len >= TOKEN_MAX)
		goto bad;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = hexval(tok[2 * i]), lo = hexval(tok[2 * i + 1]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			goto bad;
		raw[i] = (char)(hi << 4 | lo);
	}
	raw[len / 2] = '\0';
	/* "<8 hex>.<digits>.<id>" */
	char *dot1 = strchr(raw, '.');
	char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot1 == NULL || dot2 == NULL || dot1 - raw != 8 || dot2 == dot1 + 1 || dot2 - dot1 > 20)
		goto bad;
	uint32_t h = 0;
	for (char *p = raw; p < dot1; p++) {
		int v = hexval(*p);
		if (v < 0)
			goto bad;
		h = h << 4 | (uint32_t)v;
	}
	int64_t ms = 0;
	for (char *p = dot1 + 1; p < dot2; p++) {
		if (*p < '0' || *p > '9' || ms > (INT64_MAX - 9) / 10)
			goto bad;
		ms = ms * 10 + (*p - '0');
	}
	if (!hs_id_is_name(dot2 + 1))
		goto bad;
	if (h != hash)
		return hs_error_set(err, HS_INVALID,
				    "page_token: issued for other filters (state, task_id, owner)");
	*created_ms = ms;
	snprintf(id, HS_SANDBOX_ID_MAX + 1, "%s", dot2 + 1);
	return HS_OK;
bad:
	return hs_error_set(err, HS_INVALID, "page_token: not a token from this server");
}

/* The selector as a JSON object with sorted keys (so equal selectors hash
 * equal), or NULL for none. */
static int selector_json(const hs_sandbox_filter *filter, char **out, hs_error *err)
{
	int rc;
	*out = NULL;
	if (filter->label_selector_len == 0)
		return HS_OK;
	if ((rc = hs_labels_check("label_selector", filter->label_selector,
				  filter->label_selector_len, err)) != HS_OK)
		return rc;
	json_t *o = json_object();
	for (size_t i = 0; o != NULL && i < filter->label_selector_len; i++)
		json_object_set_new(o, filter->label_selector[i].key,
				    json_string(filter->label_selector[i].value
							? filter->label_selector[i].value
							: ""));
	*out = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	if (*out == NULL) /* the selector was checked above: only memory fails */
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	return HS_OK;
}

int hs_sandbox_list(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller,
		    const hs_sandbox_filter *filter, hs_sandbox_info **out, size_t *n_out,
		    char **next_page_token, hs_error *err)
{
	hs_sandbox_filter none = { 0 };
	hs_store_sandbox_row *rows = NULL;
	hs_sandbox_info *infos = NULL;
	char *selector = NULL;
	size_t n = 0, k = 0;
	int rc;
	if (caller == NULL || caller->who.user_id == NULL || caller->who.user_id[0] == '\0')
		return hs_error_set(err, HS_UNAUTH, "no caller identity");
	if (filter == NULL)
		filter = &none;
	if (filter->state < 0 || filter->state > HS_SANDBOX_DESTROYED)
		return hs_error_set(err, HS_INVALID, "state: unknown value %d", filter->state);
	if (filter->page_size < 0)
		return hs_error_set(err, HS_INVALID, "page_size: must not be negative");
	if (filter->task_id != NULL && filter->task_id[0] != '\0' &&
	    (rc = hs_id_check_task("task_id", filter->task_id, err)) != HS_OK)
		return rc;
	bool other_owner = filter->owner != NULL && filter->owner[0] != '\0' &&
			   strcmp(filter->owner, caller->who.user_id) != 0;
	if (other_owner && !caller->who.is_admin)
		return hs_error_set(err, HS_DENIED,
				    "owner: only admins may list other users' sandboxes");
	if (filter->page_token != NULL && strlen(filter->page_token) > MAX_TOKEN)
		return hs_error_set(err, HS_INVALID, "page_token: not a token from this server");
	if ((rc = selector_json(filter, &selector, err)) != HS_OK)
		return rc;
	hs_store_sandbox_filter f = HS_STORE_SANDBOX_FILTER_INIT;
	f.owner = caller->who.user_id;
	if (caller->who.is_admin)
		f.owner = filter->owner && filter->owner[0] ? filter->owner : NULL;
	f.task_id = filter->task_id && filter->task_id[0] ? filter->task_id : NULL;
	/* 0 = every state but DESTROYED: in the query, so pages stay full. */
	f.state = filter->state ? filter->state : -1;
	f.not_state = filter->state ? -1 : HS_SANDBOX_DESTROYED;
	f.labels_json = selector;
	uint32_t hash = filter_hash(&f, filter->state);
	char after[HS_SANDBOX_ID_MAX + 1];
	if (filter->page_token != NULL && filter->page_token[0] != '\0') {
		if ((rc = token_decode(filter->page_token, hash, &f.after_created_at_ms, after,
				       err)) != HS_OK)
			goto done;
		f.after_id = after;
	}
	f.limit = filter->page_size == 0 ? DEFAULT_PAGE
					 : (filter->page_size > MAX_PAGE ? MAX_PAGE
									 : (size_t)filter->page_size);
	if ((rc = hs_store_sandbox_list(mgr->store, &f, &rows, &n, err)) != HS_OK)
		goto done;
	infos = calloc(n ? n : 1, sizeof(*infos));
	if (infos == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		if ((rc = hs_sandbox__info_from_row(&rows[i], &infos[k], err)) != HS_OK)
			goto done;
		k++;
	}
	char *token = NULL;
	if (n == f.limit && n > 0) {
		token = token_encode(hash, rows[n - 1].created_at_ms, rows[n - 1].sandbox_id);
		if (token == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
			goto done;
		}
	}
	*out = infos;
	*n_out = k;
	*next_page_token = token;
	infos = NULL;
done:
	hs_sandbox_info_array_free(infos, k);
	free(rows);
	free(selector);
	return rc;
}
