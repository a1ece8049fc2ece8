/* Caller-chosen ids: one rule (ids.h). */
#include "ids.h"

#include <string.h>

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static const char *task_problem(const char *id)
{
	if (id == NULL || id[0] == '\0')
		return "required";
	size_t n = strlen(id);
	if (n > HS_ID_MAX)
		return "longer than 64 characters";
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-')
			return "only [A-Za-z0-9._-] allowed";
	if (id[0] == '.')
		return "must not start with '.'";
	if (strstr(id, "..") != NULL)
		return "must not contain \"..\"";
	if (n >= 5 && strcmp(id + n - 5, ".lock") == 0)
		return "must not end in \".lock\"";
	return NULL;
}

static const char *name_problem(const char *id)
{
	if (id == NULL || id[0] == '\0')
		return "required";
	size_t n = strlen(id);
	if (n > HS_ID_MAX)
		return "longer than 64 characters";
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(id[i]) && id[i] != '-')
			return "only letters, digits and '-' allowed";
	if (!is_alnum(id[0]))
		return "must start with a letter or digit";
	return NULL;
}

int hs_id_check_task(const char *field, const char *id, hs_error *err)
{
	const char *why = task_problem(id);
	return why ? hs_error_set(err, HS_INVALID, "%s: %s", field, why) : HS_OK;
}

int hs_id_check_name(const char *field, const char *id, hs_error *err)
{
	const char *why = name_problem(id);
	return why ? hs_error_set(err, HS_INVALID, "%s: %s", field, why) : HS_OK;
}

bool hs_id_is_task(const char *id)
{
	return task_problem(id) == NULL;
}

bool hs_id_is_name(const char *id)
{
	return name_problem(id) == NULL;
}
