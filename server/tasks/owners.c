/* How many tasks each owner has: the count behind --max-tasks-per-user.
 *
 * Tasks are never removed from the registry (terminal ones are kept for
 * GetTask/ListTasks and a later re-registration), so the registry's memory
 * is bounded by the tasks retained, not the live ones: the per-user limit
 * counts every task a user owns, whatever its state. A chained hash table
 * owner -> count, grown like the task map; every call holds t->mu. */
#include <stdlib.h>
#include <string.h>

#include "tasks_internal.h"

struct hs_tasks_owner {
	struct hs_tasks_owner *next;
	size_t n;
	char owner[]; /* NUL-terminated */
};

static struct hs_tasks_owner *find(const hs_tasks *t, const char *owner)
{
	if (t->n_owner_buckets == 0)
		return NULL;
	struct hs_tasks_owner *o = t->owner_buckets[hs_tasks__hash(owner) % t->n_owner_buckets];
	while (o != NULL && strcmp(o->owner, owner) != 0)
		o = o->next;
	return o;
}

size_t hs_tasks__owner_count(const hs_tasks *t, const char *owner)
{
	const struct hs_tasks_owner *o = find(t, owner != NULL ? owner : "");
	return o != NULL ? o->n : 0;
}

int hs_tasks__owner_add(hs_tasks *t, const char *owner)
{
	if (owner == NULL)
		owner = "";
	struct hs_tasks_owner *o = find(t, owner);
	if (o != NULL) {
		o->n++;
		return HS_OK;
	}
	if (t->n_owners >= t->n_owner_buckets) { /* keep the load factor <= 1 */
		size_t nb = t->n_owner_buckets ? t->n_owner_buckets * 2 : 64;
		struct hs_tasks_owner **b = calloc(nb, sizeof(*b));
		if (b == NULL)
			return HS_INTERNAL;
		for (size_t i = 0; i < t->n_owner_buckets; i++) {
			struct hs_tasks_owner *x = t->owner_buckets[i], *next;
			for (; x != NULL; x = next) {
				next = x->next;
				size_t h = hs_tasks__hash(x->owner) % nb;
				x->next = b[h];
				b[h] = x;
			}
		}
		free(t->owner_buckets);
		t->owner_buckets = b;
		t->n_owner_buckets = nb;
	}
	size_t len = strlen(owner);
	o = malloc(sizeof(*o) + len + 1);
	if (o == NULL)
		return HS_INTERNAL;
	memcpy(o->owner, owner, len + 1);
	o->n = 1;
	size_t h = hs_tasks__hash(owner) % t->n_owner_buckets;
	o->next = t->owner_buckets[h];
	t->owner_buckets[h] = o;
	t->n_owners++;
	return HS_OK;
}

void hs_tasks__owners_free(hs_tasks *t)
{
	for (size_t i = 0; i < t->n_owner_buckets; i++) {
		struct hs_tasks_owner *o = t->owner_buckets[i], *next;
		for (; o != NULL; o = next) {
			next = o->next;
			free(o);
		}
	}
	free(t->owner_buckets);
	t->owner_buckets = NULL;
	t->n_owner_buckets = t->n_owners = 0;
}
