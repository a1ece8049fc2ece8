/* grpc.health.v1.Health: per-service serving status with Check and Watch.
 * Watchers hold a reference to their call and are dropped in the call's
 * done callback; a watcher that does not read its updates is ended with
 * RESOURCE_EXHAUSTED (the client reconnects and gets the current status)
 * instead of ever blocking a status change. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "log.h"
#include "std_services.h"

#define MAX_SERVICES 32
#define NAME_MAX_LEN 200

typedef struct watcher {
	struct watcher *next;
	hs_rpc_call *call;
	hs_grpc_health *h;
	char service[NAME_MAX_LEN];
} watcher;

struct hs_grpc_health {
	pthread_mutex_t mu;
	struct {
		char name[NAME_MAX_LEN];
		hs_grpc_health_status status;
	} svc[MAX_SERVICES];
	unsigned n;
	bool shut;
	watcher *watchers;
};

static int find(const hs_grpc_health *h, const char *name)
{
	for (unsigned i = 0; i < h->n; i++)
		if (strcmp(h->svc[i].name, name) == 0)
			return (int)i;
	return -1;
}

int hs_grpc_health_new(hs_grpc_health **out, hs_error *err)
{
	hs_grpc_health *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	pthread_mutex_init(&h->mu, NULL);
	h->n = 1; /* "" = the whole server */
	h->svc[0].status = HS_GRPC_HEALTH_NOT_SERVING;
	*out = h;
	return HS_OK;
}

static void send_status(hs_rpc_call *call, hs_grpc_health_status st, bool known)
{
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	resp.status = known ? (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st
			    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	int rc = hs_rpc_call_send(call, &resp.base);
	if (rc == HS_LIMIT)
		hs_rpc_call_finish(call, HS_LIMIT, "health watcher too slow: reconnect");
}

int hs_grpc_health_set(hs_grpc_health *h, const char *service, hs_grpc_health_status status)
{
	if (strlen(service) >= NAME_MAX_LEN)
		return HS_INVALID;
	pthread_mutex_lock(&h->mu);
	if (h->shut && status != HS_GRPC_HEALTH_NOT_SERVING) {
		pthread_mutex_unlock(&h->mu);
		return HS_CONFLICT;
	}
	int i = find(h, service);
	if (i < 0) {
		if (h->n == MAX_SERVICES) {
			pthread_mutex_unlock(&h->mu);
			return HS_LIMIT;
		}
		i = (int)h->n++;
		snprintf(h->svc[i].name, sizeof(h->svc[i].name), "%s", service); /* length checked above */
		h->svc[i].status = HS_GRPC_HEALTH_UNKNOWN;
	}
	bool changed = h->svc[i].status != status;
	h->svc[i].status = status;
	if (changed) {
		hs_log(HS_LOG_INFO, "health", "status changed", HS_LS("service", service),
		       HS_LS("status", status == HS_GRPC_HEALTH_SERVING ? "SERVING" : "NOT_SERVING"));
		for (watcher *w = h->watchers; w != NULL; w = w->next)
			if (strcmp(w->service, service) == 0)
				send_status(w->call, status, true);
	}
	pthread_mutex_unlock(&h->mu);
	return HS_OK;
}

hs_grpc_health_status hs_grpc_health_get(hs_grpc_health *h, const char *service, bool *known)
{
	pthread_mutex_lock(&h->mu);
	int i = find(h, service);
	hs_grpc_health_status st = i >= 0 ? h->svc[i].status : HS_GRPC_HEALTH_UNKNOWN;
	pthread_mutex_unlock(&h->mu);
	if (known != NULL)
		*known = i >= 0;
	return st;
}

void hs_grpc_health_shutdown(hs_grpc_health *h)
{
	pthread_mutex_lock(&h->mu);
	unsigned n = h->n;
	char names[MAX_SERVICES][NAME_MAX_LEN];
	for (unsigned i = 0; i < n; i++)
		memcpy(names[i], h->svc[i].name, NAME_MAX_LEN);
	pthread_mutex_unlock(&h->mu);
	for (unsigned i = 0; i < n; i++)
		hs_grpc_health_set(h, names[i], HS_GRPC_HEALTH_NOT_SERVING);
	pthread_mutex_lock(&h->mu);
	h->shut = true;
	pthread_mutex_unlock(&h->mu);
}

void hs_grpc_health_free(hs_grpc_health *h)
{
	if (h == NULL)
		return;
	pthread_mutex_destroy(&h->mu);
	free(h);
}

static int check(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		 hs_error *err)
{
	hs_grpc_health *h = hs_rpc_call_payload(call);
	const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
	bool known;
	hs_grpc_health_status st = hs_grpc_health_get(h, r->service, &known);
	if (!known)
		return hs_error_set(err, HS_NOT_FOUND, "unknown service %s", r->service);
	Grpc__Health__V1__HealthCheckResponse *out = hs_rpc_call_alloc(call, sizeof(*out));
	if (out == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	grpc__health__v1__health_check_response__init(out);
	out->status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
	*resp = &out->base;
	return HS_OK;
}

static void watch_done(hs_rpc_call *call, void *payload)
{
	watcher *w = payload;
	hs_grpc_health *h = w->h;
	pthread_mutex_lock(&h->mu);
	for (watcher **p = &h->watchers; *p != NULL; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	pthread_mutex_unlock(&h->mu);
	free(w);
	hs_rpc_call_unref(call);
}

static int watch(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err)
{
	hs_grpc_health *h = hs_rpc_call_payload(call);
	const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
	if (strlen(r->service) >= NAME_MAX_LEN)
		return hs_error_set(err, HS_INVALID, "service: name too long");
	watcher *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	w->call = call;
	w->h = h;
	snprintf(w->service, sizeof(w->service), "%s", r->service); /* length checked above */
	hs_rpc_call_ref(call);
	hs_rpc_call_set_send_queue(call, 16);
	/* Register and send the current status under the lock, so no change
	 * can slip in between. */
	pthread_mutex_lock(&h->mu);
	w->next = h->watchers;
	h->watchers = w;
	int i = find(h, r->service);
	send_status(call, i >= 0 ? h->svc[i].status : HS_GRPC_HEALTH_UNKNOWN, i >= 0);
	pthread_mutex_unlock(&h->mu);
	hs_rpc_call_on_done(call, watch_done, w);
	return HS_OK;
}

int hs_grpc_health_register(hs_grpc_health *h, hs_rpc_server *srv, hs_error *err)
{
	static const hs_rpc_handler handlers[] = {
		{ "Check", HS_RPC_UNARY, HS_RPC_PUBLIC, check, NULL },
		{ "Watch", HS_RPC_SERVER_STREAM, HS_RPC_PUBLIC, NULL, watch },
	};
	return hs_rpc_server_add_service(srv, &grpc__health__v1__health__descriptor, handlers,
					 2, h, err);
}
