/* The ownership rule (principal.h). */
#include "principal.h"

#include <string.h>

bool hs_principal_may(const hs_principal *p, const char *owner)
{
	if (p == NULL || p->is_admin)
		return true;
	return p->user_id != NULL && p->user_id[0] != '\0' && owner != NULL &&
	       strcmp(p->user_id, owner) == 0;
}
