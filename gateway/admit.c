/* Connection admission (admit.h): a small array of open connections, each
 * (address, port); counting an address is a scan, which at civetweb's
 * scale (threads + queue, tens of entries) is cheaper than a hash. */
#include "admit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct conn {
	char ip[HS_IP_TEXT_MAX]; /* "" = free */
	int port;
} conn;

struct hs_gw_admit {
	pthread_mutex_t mu;
	conn *v;
	size_t cap;
	long per_client;
	hs_cidr_list exempt;
};

int hs_gw_admit_new(hs_gw_admit **out, size_t capacity, long per_client,
		    const hs_cidr_list *exempt, hs_error *err)
{
	if (capacity == 0 || per_client < 1)
		return hs_error_set(err, HS_INVALID, "connection admission: bad limits");
	hs_gw_admit *a = calloc(1, sizeof(*a));
	if (a == NULL || (a->v = calloc(capacity, sizeof(*a->v))) == NULL) {
		free(a);
		return hs_error_set(err, HS_INTERNAL, "connection admission: out of memory");
	}
	pthread_mutex_init(&a->mu, NULL);
	a->cap = capacity;
	a->per_client = per_client;
	if (exempt != NULL)
		a->exempt = *exempt;
	*out = a;
	return HS_OK;
}

void hs_gw_admit_free(hs_gw_admit *a)
{
	if (a == NULL)
		return;
	pthread_mutex_destroy(&a->mu);
	free(a->v);
	free(a);
}

static long count_locked(hs_gw_admit *a, const char *ip)
{
	long n = 0;
	for (size_t i = 0; i < a->cap; i++)
		n += a->v[i].ip[0] != '\0' && strcmp(a->v[i].ip, ip) == 0;
	return n;
}

bool hs_gw_admit_open(hs_gw_admit *a, const char *ip, int port)
{
	if (ip == NULL || strlen(ip) >= HS_IP_TEXT_MAX ||
	    hs_cidr_list_has(&a->exempt, ip, strlen(ip)))
		return true;
	bool keep = true;
	pthread_mutex_lock(&a->mu);
	if (count_locked(a, ip) >= a->per_client) {
		keep = false;
	} else {
		for (size_t i = 0; i < a->cap; i++) {
			if (a->v[i].ip[0] == '\0') {
				memcpy(a->v[i].ip, ip, strlen(ip) + 1);
				a->v[i].port = port;
				break;
			}
		}
	}
	pthread_mutex_unlock(&a->mu);
	return keep;
}

void hs_gw_admit_close(hs_gw_admit *a, const char *ip, int port)
{
	if (ip == NULL)
		return;
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < a->cap; i++) {
		if (a->v[i].port == port && a->v[i].ip[0] != '\0' && strcmp(a->v[i].ip, ip) == 0) {
			a->v[i].ip[0] = '\0';
			break;
		}
	}
	pthread_mutex_unlock(&a->mu);
}

long hs_gw_admit_count(hs_gw_admit *a, const char *ip)
{
	pthread_mutex_lock(&a->mu);
	long n = count_locked(a, ip);
	pthread_mutex_unlock(&a->mu);
	return n;
}
