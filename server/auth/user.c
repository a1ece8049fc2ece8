/* Disposal of the auth result types; token memory is wiped before free. */
#include "user.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static void free_secret(char *s)
{
	if (s == NULL)
		return;
	sodium_memzero(s, strlen(s));
	free(s);
}

void hs_auth_user_dispose(hs_auth_user *user)
{
	if (user == NULL)
		return;
	free(user->id);
	free(user->email);
	free(user->name);
	free(user->role);
	memset(user, 0, sizeof(*user));
}

void hs_auth_result_dispose(hs_auth_result *res)
{
	if (res == NULL)
		return;
	hs_auth_user_dispose(&res->user);
	free_secret(res->access_token);
	free_secret(res->refresh_token);
	memset(res, 0, sizeof(*res));
}
