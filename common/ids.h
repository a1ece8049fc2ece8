/* The one rule for every id a caller can choose. Ids become file names
 * (shadow repos, runtime dirs), git ref components, cgroup names and
 * Firecracker jailer ids, so the rule is the intersection of what those
 * accept; every module and the protos under proto/harness/v1 document this rule.
 *
 *   task ids          1-64 of [A-Za-z0-9._-], not starting with '.', no "..",
 *                     not ending in ".lock" (git's lock files)
 *   resource names    1-64 of [A-Za-z0-9-], starting with a letter or digit
 *                     (sandbox and snapshot ids: the jailer's --id rule) */
#ifndef HS_COMMON_IDS_H
#define HS_COMMON_IDS_H

#include <stdbool.h>

#include "error.h"

#define HS_ID_MAX 64 /* characters; buffers need HS_ID_MAX + 1 */

/* HS_OK, or HS_INVALID with a message naming field ("task_id: ..."). An
 * empty or NULL id is invalid ("field: required"). */
int hs_id_check_task(const char *field, const char *id, hs_error *err);
int hs_id_check_name(const char *field, const char *id, hs_error *err);

bool hs_id_is_task(const char *id);
bool hs_id_is_name(const char *id);

#endif
