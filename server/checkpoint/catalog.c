/* The per-task catalog: every checkpoint's seq, step, id and commit, oldest
 * first, plus which one is "current", kept in memory next to the task's open
 * repository. It is what makes create, latest, list pages and prune cost
 * O(1) or O(page) commit reads instead of reading every checkpoint commit.
 *
 * Invariants: built in one pass over the checkpoint refs (one commit read
 * each) the first time a call needs it after the repository was opened;
 * from then on changed only by the holder of the task mutex, in step with
 * the refs it writes (create appends, restore moves current, prune drops the
 * oldest). It lives and dies with the cached repository (hs_ckpt__repo_forget,
 * eviction, delete_task), so any failed or half-done write is followed by a
 * rebuild from the refs. Only harnessd writes these repositories (one per
 * data dir), so the refs cannot change behind the catalog's back. */
#include "checkpoint_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void hs_ckpt__catalog_dispose(hs_ckpt__catalog *cat)
{
	if (!cat)
		return;
	for (size_t i = 0; i < cat->n; i++)
		free(cat->v[i].request_id);
	free(cat->v);
	memset(cat, 0, sizeof(*cat));
}

/* seq, step and request_id (heap or NULL) from a checkpoint commit's
 * metadata, nothing else copied. */
static int read_seq_step(const git_commit *c, uint64_t *seq, int64_t *step, char **request_id)
{
	const char *msg = git_commit_message(c);
	const char *body = msg ? strstr(msg, "\n\n") : NULL;
	json_t *o = body ? json_loads(body + 2, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
	json_int_t s = 0, st = 0;
	const char *rid = NULL;
	int rc = (o && json_unpack(o, "{s:I, s:I, s?s}", "seq", &s, "step", &st, "request_id",
				   &rid) == 0) ? 0 : -1;
	*request_id = rc == 0 && rid && rid[0] ? strdup(rid) : NULL;
	json_decref(o);
	*seq = (uint64_t)s;
	*step = st;
	return rc;
}

static int cmp_seq_asc(const void *a, const void *b)
{
	const hs_ckpt__entry *x = a, *y = b;
	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return strcmp(x->id, y->id);
}

static int reserve(hs_ckpt__catalog *cat, size_t want)
{
	if (want <= cat->cap)
		return 0;
	size_t ncap = cat->cap ? cat->cap * 2 : 64;
	while (ncap < want)
		ncap *= 2;
	hs_ckpt__entry *nv = realloc(cat->v, ncap * sizeof(*nv));
	if (!nv)
		return -1;
	cat->v = nv;
	cat->cap = ncap;
	return 0;
}

int hs_ckpt__catalog_load(hs_ckpt__catalog *cat, git_repository *repo, const char *task_id,
			  hs_error *err)
{
	git_reference_iterator *it = NULL;
	hs_ckpt__catalog fresh;
	memset(&fresh, 0, sizeof(fresh));
	const char *name;
	int rc = HS_OK, g;
	if (cat->loaded)
		return HS_OK;
	int64_t t0 = hs_clock_mono_us();
	if ((g = git_reference_iterator_glob_new(&it, repo, HS_CKPT__REF_PREFIX "*")) < 0) {
		rc = hs_ckpt__git_err(err, g, "list", task_id);
		goto done;
	}
	while ((g = git_reference_next_name(&name, it)) == 0) {
		git_oid oid;
		git_commit *c = NULL;
		if ((g = git_reference_name_to_id(&oid, repo, name)) < 0 ||
		    (g = git_commit_lookup(&c, repo, &oid)) < 0) {
			rc = hs_ckpt__git_err(err, g, "list", task_id);
			goto done;
		}
		hs_ckpt__entry e;
		memset(&e, 0, sizeof(e));
		int bad = read_seq_step(c, &e.seq, &e.step, &e.request_id);
		git_commit_free(c);
		if (bad) {
			char hex[GIT_OID_HEXSZ + 1];
			git_oid_tostr(hex, sizeof(hex), &oid);
			rc = hs_error_set(err, HS_INTERNAL,
					  "checkpoint: task %s: commit %s has no metadata", task_id, hex);
			goto done;
		}
		e.commit = oid;
		hs_ckpt__make_id(e.id, e.step, &oid);
		/* The ref name is the id: a ref renamed by hand must not lie. */
		if (strcmp(name + strlen(HS_CKPT__REF_PREFIX), e.id) != 0) {
			hs_log(HS_LOG_WARN, "checkpoint", "ref does not match its commit",
			       HS_LS("task_id", task_id), HS_LS("ref", name));
			free(e.request_id);
			continue;
		}
		if (reserve(&fresh, fresh.n + 1) != 0) {
			free(e.request_id);
			rc = hs_error_set(err, HS_INTERNAL, "checkpoint list: out of memory");
			goto done;
		}
		fresh.v[fresh.n++] = e;
	}
	if (g != GIT_ITEROVER) {
		rc = hs_ckpt__git_err(err, g, "list", task_id);
		goto done;
	}
	if (fresh.n > 1)
		qsort(fresh.v, fresh.n, sizeof(*fresh.v), cmp_seq_asc);
	git_oid cur;
	if (git_reference_name_to_id(&cur, repo, HS_CKPT__REF_CURRENT) == 0)
		for (size_t i = 0; i < fresh.n; i++)
			if (git_oid_equal(&fresh.v[i].commit, &cur))
				fresh.current_seq = fresh.v[i].seq;
	fresh.loaded = true;
	*cat = fresh;
	memset(&fresh, 0, sizeof(fresh));
	hs_log(HS_LOG_DEBUG, "checkpoint", "catalog loaded", HS_LS("task_id", task_id),
	       HS_LI("checkpoints", cat->n), HS_LI("us", hs_clock_mono_us() - t0));
done:
	git_reference_iterator_free(it);
	hs_ckpt__catalog_dispose(&fresh);
	return rc;
}

const hs_ckpt__entry *hs_ckpt__catalog_latest(const hs_ckpt__catalog *cat)
{
	return cat->n ? &cat->v[cat->n - 1] : NULL;
}

size_t hs_ckpt__catalog_below(const hs_ckpt__catalog *cat, uint64_t seq)
{
	size_t lo = 0, hi = cat->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cat->v[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const hs_ckpt__entry *hs_ckpt__catalog_find(const hs_ckpt__catalog *cat, uint64_t seq)
{
	size_t i = hs_ckpt__catalog_below(cat, seq);
	return i < cat->n && cat->v[i].seq == seq ? &cat->v[i] : NULL;
}

const hs_ckpt__entry *hs_ckpt__catalog_find_request(const hs_ckpt__catalog *cat,
						    const char *request_id)
{
	for (size_t i = cat->n; i-- > 0;)
		if (cat->v[i].request_id && strcmp(cat->v[i].request_id, request_id) == 0)
			return &cat->v[i];
	return NULL;
}

const hs_ckpt__entry *hs_ckpt__catalog_current(const hs_ckpt__catalog *cat)
{
	const hs_ckpt__entry *e = cat->current_seq ? hs_ckpt__catalog_find(cat, cat->current_seq)
						   : NULL;
	return e ? e : hs_ckpt__catalog_latest(cat);
}

int hs_ckpt__catalog_append(hs_ckpt__catalog *cat, const hs_ckpt_info *info,
			    const char *request_id)
{
	if (!cat->loaded)
		return 0;
	const hs_ckpt__entry *last = hs_ckpt__catalog_latest(cat);
	hs_ckpt__entry e;
	memset(&e, 0, sizeof(e));
	if ((last && info->seq <= last->seq) || git_oid_fromstr(&e.commit, info->commit) < 0 ||
	    reserve(cat, cat->n + 1) != 0) {
		hs_ckpt__catalog_dispose(cat); /* rebuilt from the refs next time */
		return -1;
	}
	e.seq = info->seq;
	e.step = info->step;
	memcpy(e.id, info->checkpoint_id, sizeof(e.id));
	if (request_id && request_id[0] && !(e.request_id = strdup(request_id))) {
		hs_ckpt__catalog_dispose(cat);
		return -1;
	}
	cat->v[cat->n++] = e;
	cat->current_seq = e.seq;
	return 0;
}

void hs_ckpt__catalog_set_current(hs_ckpt__catalog *cat, uint64_t seq)
{
	if (cat->loaded)
		cat->current_seq = hs_ckpt__catalog_find(cat, seq) ? seq : 0;
}

void hs_ckpt__catalog_drop_oldest(hs_ckpt__catalog *cat, size_t k)
{
	if (!cat->loaded || k == 0)
		return;
	if (k > cat->n)
		k = cat->n;
	for (size_t i = 0; i < k; i++)
		free(cat->v[i].request_id);
	memmove(cat->v, cat->v + k, (cat->n - k) * sizeof(*cat->v));
	cat->n -= k;
	if (cat->current_seq && !hs_ckpt__catalog_find(cat, cat->current_seq))
		cat->current_seq = 0; /* pruned: the newest stands in, as when reloaded */
}
