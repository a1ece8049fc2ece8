/* Who is asking, as every module sees it: the authenticated user and
 * whether it is an admin. Modules never see tokens or gRPC; the RPC core's
 * authenticator establishes the principal and adapters pass it down.
 *
 * Ownership rule (one for every resource): a user acts on what it owns;
 * an admin on everything. A NULL principal is harnessd itself (recovery,
 * the reaper), which acts on everything. */
#ifndef HS_COMMON_PRINCIPAL_H
#define HS_COMMON_PRINCIPAL_H

#include <stdbool.h>

#define HS_PRINCIPAL_ID_MAX 128 /* bytes of a user id, NUL included */

typedef struct hs_principal {
	const char *user_id; /* never NULL for a caller; "" only for harnessd itself */
	bool is_admin;
} hs_principal;

/* May p act on a resource owned by owner? */
bool hs_principal_may(const hs_principal *p, const char *owner);

#endif
