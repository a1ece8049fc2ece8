/* Connection admission: how many connections each client address may hold
 * open at once, so a few slow (or idle) clients cannot take every civetweb
 * worker. A connection is counted from accept to close; one that would
 * exceed the limit is refused at accept, before it reaches a worker or
 * civetweb's queue. Addresses in `exempt` (trusted proxies, which carry
 * everyone's traffic) are never counted.
 *
 * The table holds one entry per open counted connection; civetweb never
 * holds more than its threads plus its queue, so `capacity` of that size
 * is enough (when it is full anyway, a connection is admitted uncounted).
 * Thread-safe (one mutex). Pure: no sockets, unit-tested. */
#ifndef HS_GATEWAY_ADMIT_H
#define HS_GATEWAY_ADMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "netaddr.h"

typedef struct hs_gw_admit hs_gw_admit;

/* per_client >= 1; exempt copied (NULL = none). */
int hs_gw_admit_new(hs_gw_admit **out, size_t capacity, long per_client,
		    const hs_cidr_list *exempt, hs_error *err);
void hs_gw_admit_free(hs_gw_admit *a);

/* A connection from ip (canonical text) port was accepted: true = keep it
 * (counted unless exempt), false = the address already holds per_client
 * connections: close it. */
bool hs_gw_admit_open(hs_gw_admit *a, const char *ip, int port);

/* The connection from ip port closed (no-op for one never counted). */
void hs_gw_admit_close(hs_gw_admit *a, const char *ip, int port);

/* Counted connections of ip (tests). */
long hs_gw_admit_count(hs_gw_admit *a, const char *ip);

#endif
