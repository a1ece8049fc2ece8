/* Server lifecycle: creation, method registration from protobuf-c service
 * descriptors, completion-queue threads, and graceful shutdown.
 *
 * Each polling thread owns one completion queue; every method keeps one
 * request outstanding per queue (re-armed as soon as it is taken; more,
 * up to RPC_ARM_MAX, while it has more calls in flight), plus one
 * generic request per queue so that unknown methods get UNIMPLEMENTED instead
 * of hanging until the client's deadline. */
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "decode.h"
#include "log.h"
#include "rpc_internal.h"

static grpc_arg int_arg(const char *key, int value)
{
	grpc_arg a;
	memset(&a, 0, sizeof(a));
	a.type = GRPC_ARG_INTEGER;
	a.key = (char *)key;
	a.value.integer = value;
	return a;
}

static void *cq_main(void *arg)
{
	cq_thread *t = arg;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		rpc_tag *tag = ev.tag;
		if (tag->kind == TAG_SHUTDOWN) {
			pthread_mutex_lock(&t->srv->mu);
			t->srv->shutdown_notified = true;
			pthread_cond_broadcast(&t->srv->cv);
			pthread_mutex_unlock(&t->srv->mu);
			continue;
		}
		hs_rpc__on_tag(tag, ev.success != 0);
	}
	return NULL;
}

static bool request_one(hs_rpc_server *srv, rpc_method *m, cq_thread *cqt,
			hs_rpc_call *recycled)
{
	hs_rpc_call *call = hs_rpc__call_get(srv, recycled);
	if (call == NULL) {
		hs_log(HS_LOG_ERROR, "rpc", "out of memory arming a call");
		return false;
	}
	call->m = m;
	call->cqt = cqt;
	grpc_call_error e;
	if (m == NULL) {
		grpc_call_details_init(&call->details);
		e = grpc_server_request_call(srv->server, &call->gcall, &call->details,
					     &call->req_md, cqt->cq, cqt->cq, &call->t_new);
	} else {
		bool reads = m->implemented && m->handler.kind != HS_RPC_BIDI_STREAM;
		e = grpc_server_request_registered_call(srv->server, m->registered, &call->gcall,
							&call->deadline, &call->req_md,
							reads ? &call->payload : NULL, cqt->cq,
							cqt->cq, &call->t_new);
	}
	if (e != GRPC_CALL_OK) {
		hs_log(HS_LOG_ERROR, "rpc", "request_call failed", HS_LI("error", e));
		hs_rpc__call_release(srv, call);
		if (m != NULL) {
			pthread_mutex_lock(&srv->mu);
			m->armed[cqt - srv->cqs]--;
			pthread_mutex_unlock(&srv->mu);
		}
		return false;
	}
	return true;
}

bool hs_rpc__request(hs_rpc_server *srv, rpc_method *m, cq_thread *cqt, hs_rpc_call *arrived)
{
	hs_rpc_call *got[2] = { NULL, NULL };
	unsigned n = 1;
	bool first = arrived == NULL;
	pthread_mutex_lock(&srv->mu);
	if (arrived != NULL)
		hs_rpc__call_accept_locked(srv, arrived);
	if (srv->shutting_down) {
		pthread_mutex_unlock(&srv->mu);
		return false;
	}
	if (m != NULL) {
		uint8_t *armed = &m->armed[cqt - srv->cqs];
		if (!first)
			(*armed)--; /* the one just taken */
		if (!first && m->live > *armed + 1u && *armed + 2u <= RPC_ARM_MAX)
			n = 2;
		*armed += (uint8_t)n;
	}
	for (unsigned i = 0; i < n && srv->free_calls != NULL; i++) {
		got[i] = srv->free_calls;
		srv->free_calls = got[i]->free_next;
	}
	pthread_mutex_unlock(&srv->mu);
	bool ok = false;
	for (unsigned i = 0; i < n; i++)
		ok |= request_one(srv, m, cqt, got[i]);
	return ok;
}

int hs_rpc_server_new(hs_rpc_server **out, const hs_rpc_config *cfg, hs_error *err)
{
	hs_rpc_config defaults = HS_RPC_CONFIG_INIT;
	if (cfg == NULL)
		cfg = &defaults;
	if (cfg->cq_threads == 0 || cfg->cq_threads > 64 || cfg->workers == 0 ||
	    cfg->workers > 1024 || cfg->worker_queue == 0 || cfg->max_message_bytes == 0 ||
	    cfg->max_message_bytes > (size_t)INT32_MAX || cfg->long_workers == 0 ||
	    cfg->long_workers > 1024 || cfg->liveness_workers == 0 || cfg->liveness_workers > 1024 ||
	    cfg->user_concurrency > 1024 || cfg->user_max_calls == 0 || cfg->max_depth == 0 ||
	    cfg->max_depth > HS_RPC_DEPTH_MAX)
		return hs_error_set(err, HS_INVALID, "rpc config out of range");

	hs_rpc_server *srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	srv->cfg = *cfg;
	srv->metrics_on = cfg->metrics != NULL;
	snprintf(srv->listen, sizeof(srv->listen), "%s", cfg->listen ? cfg->listen : "127.0.0.1:50051");
	srv->cfg.listen = srv->listen;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->cv, &ca);
	pthread_condattr_destroy(&ca);
	srv->shutdown_tag = (rpc_tag){ TAG_SHUTDOWN, NULL };

	grpc_init();

	grpc_arg args[4];
	size_t nargs = 0;
	args[nargs++] = int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
							(int)cfg->max_message_bytes);
	args[nargs++] = int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
							(int)cfg->max_message_bytes);
	/* A second harnessd on the same port must fail, not share it. */
	args[nargs++] = int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0);
	if (cfg->max_concurrent_streams > 0)
		args[nargs++] = int_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS,
								(int)cfg->max_concurrent_streams);
	grpc_channel_args cargs = { nargs, args };
	srv->server = grpc_server_create(&cargs, NULL);

	srv->n_cqs = cfg->cq_threads;
	srv->cqs = calloc(srv->n_cqs, sizeof(*srv->cqs));
	if (srv->cqs == NULL) {
		hs_rpc_server_free(srv);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	for (unsigned i = 0; i < srv->n_cqs; i++) {
		srv->cqs[i].srv = srv;
		srv->cqs[i].cq = grpc_completion_queue_create_for_next(NULL);
		grpc_server_register_completion_queue(srv->server, srv->cqs[i].cq, NULL);
	}

	int rc = hs_rpc__tls_new(&srv->tls, cfg, err);
	if (rc == HS_OK && cfg->node_id != NULL && cfg->node_id[0] != '\0')
		rc = hs_rpc__forward_new(srv, err);
	if (rc != HS_OK) {
		hs_rpc_server_free(srv);
		return rc;
	}
	grpc_server_credentials *creds = srv->tls != NULL ? hs_rpc__tls_credentials(srv->tls)
							  : grpc_insecure_server_credentials_create();
	srv->port = creds != NULL ? grpc_server_add_http2_port(srv->server, srv->listen, creds) : 0;
	if (creds != NULL)
		grpc_server_credentials_release(creds);
	if (srv->port == 0) {
		hs_error_set(err, HS_UNAVAILABLE, "cannot listen on %s (address in use or invalid)",
			     srv->listen);
		hs_rpc_server_free(srv);
		return HS_UNAVAILABLE;
	}
	*out = srv;
	return HS_OK;
}

int hs_rpc_server_port(const hs_rpc_server *srv) { return srv->port; }

void hs_rpc_server_set_authenticator(hs_rpc_server *srv, hs_rpc_auth_fn fn, void *payload)
{
	srv->auth = fn;
	srv->auth_payload = payload;
}

void hs_rpc_server_set_recheck(hs_rpc_server *srv, hs_rpc_recheck_fn fn, void *payload)
{
	srv->recheck = fn;
	srv->recheck_payload = payload;
}

size_t hs_rpc_server_services(const hs_rpc_server *srv, const char *const **out)
{
	*out = srv->services;
	return srv->n_services;
}

int hs_rpc_server_add_service(hs_rpc_server *srv, const ProtobufCServiceDescriptor *svc,
			      const hs_rpc_handler *handlers, size_t n_handlers,
			      void *payload, hs_error *err)
{
	if (srv->started)
		return hs_error_set(err, HS_CONFLICT, "add_service after start");
	/* Every handler must name a method of the service: catches typos. */
	for (size_t i = 0; i < n_handlers; i++) {
		bool found = false;
		for (unsigned j = 0; j < svc->n_methods && !found; j++)
			found = strcmp(svc->methods[j].name, handlers[i].method) == 0;
		if (!found)
			return hs_error_set(err, HS_INVALID, "%s has no method %s", svc->name,
					    handlers[i].method);
		bool ok = handlers[i].kind == HS_RPC_UNARY ? handlers[i].unary != NULL
							   : handlers[i].stream != NULL;
		if (!ok)
			return hs_error_set(err, HS_INVALID, "%s/%s: handler function missing",
					    svc->name, handlers[i].method);
	}
	size_t need = srv->n_methods + svc->n_methods;
	if (need > srv->cap_methods) {
		/* Reallocation is safe: nothing points into the table before start. */
		size_t cap = need * 2;
		rpc_method *m = realloc(srv->methods, cap * sizeof(*m));
		if (m == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		srv->methods = m;
		srv->cap_methods = cap;
	}
	const char **names = realloc(srv->services, (srv->n_services + 1) * sizeof(*names));
	if (names == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	srv->services = names;
	srv->services[srv->n_services++] = svc->name;

	for (unsigned j = 0; j < svc->n_methods; j++) {
		rpc_method *m = &srv->methods[srv->n_methods];
		memset(m, 0, sizeof(*m));
		int n = snprintf(m->path, sizeof(m->path), "/%s/%s", svc->name, svc->methods[j].name);
		if (n < 0 || (size_t)n >= sizeof(m->path))
			return hs_error_set(err, HS_INVALID, "method path too long");
		m->desc = &svc->methods[j];
		m->service = svc->name;
		m->payload = payload;
		hs_rpc__metrics_init(m);
		for (size_t i = 0; i < n_handlers; i++) {
			if (strcmp(handlers[i].method, svc->methods[j].name) == 0) {
				m->handler = handlers[i];
				m->implemented = true;
			}
		}
		/* Only requests whose type can nest without bound (or deeper
		 * than allowed) pay for the pre-scan. */
		m->prescan = hs_rpc__type_depth(m->desc->input) > srv->cfg.max_depth;
		unsigned fl = m->handler.flags;
		m->lane = fl & HS_RPC_LIVENESS ? LANE_LIVENESS
			  : fl & HS_RPC_LONG   ? LANE_LONG
			  : fl & HS_RPC_BLOCKING ? LANE_MAIN
						 : LANE_INLINE;
		m->try_inline = (fl & HS_RPC_TRY_INLINE) && m->lane != LANE_INLINE &&
				m->handler.kind == HS_RPC_UNARY;
		bool reads = m->implemented && m->handler.kind != HS_RPC_BIDI_STREAM;
		m->registered = grpc_server_register_method(
			srv->server, m->path, NULL,
			reads ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
		if (m->registered == NULL)
			return hs_error_set(err, HS_INTERNAL, "cannot register %s", m->path);
		srv->n_methods++;
	}
	return HS_OK;
}

/* Threads a user's calls may occupy at once in a lane of `threads`: the
 * configured value (at most the lane), or half the lane. The heartbeat lane
 * has no such bound (its calls are short; users take turns). */
unsigned hs_rpc__user_running(const hs_rpc_config *cfg, unsigned threads)
{
	if (cfg->user_concurrency != 0)
		return cfg->user_concurrency < threads ? cfg->user_concurrency : threads;
	return threads / 2 > 0 ? threads / 2 : 1;
}

int hs_rpc_server_start(hs_rpc_server *srv, hs_error *err)
{
	const hs_rpc_config *c = &srv->cfg;
	srv->lanes[LANE_MAIN] = hs_pool_new_fair(c->workers, c->worker_queue,
						 hs_rpc__user_running(c, c->workers), c->user_max_calls);
	srv->lanes[LANE_LONG] = hs_pool_new_fair(c->long_workers, c->worker_queue,
						 hs_rpc__user_running(c, c->long_workers), c->user_max_calls);
	/* Heartbeats: short, and one service account may beat for many agents
	 * at once; a user may hold up to half the lane's queue (never all of
	 * it, so others' heartbeats always find room) and users take turns. */
	unsigned half = c->worker_queue / 2 > 0 ? c->worker_queue / 2 : 1;
	srv->lanes[LANE_LIVENESS] = hs_pool_new_fair(
		c->liveness_workers, c->worker_queue, 0,
		c->user_max_calls > half ? c->user_max_calls : half);
	for (int i = 0; i < N_LANES; i++)
		if (srv->lanes[i] == NULL)
			return hs_error_set(err, HS_INTERNAL, "cannot start the %s worker lane",
					    hs_rpc__lane_names[i]);
	if (c->metrics != NULL) {
		int rc = hs_metrics_add(c->metrics, hs_rpc__collect, srv, err);
		if (rc != HS_OK)
			return rc;
		srv->metrics_registered = true;
	}
	grpc_server_start(srv->server);
	srv->started = true;
	for (unsigned i = 0; i < srv->n_cqs; i++) {
		cq_thread *t = &srv->cqs[i];
		for (size_t j = 0; j < srv->n_methods; j++) {
			if (!hs_rpc__request(srv, &srv->methods[j], t, NULL))
				return hs_error_set(err, HS_INTERNAL, "cannot arm %s", srv->methods[j].path);
		}
		if (!hs_rpc__request(srv, NULL, t, NULL))
			return hs_error_set(err, HS_INTERNAL, "cannot arm the generic handler");
		if (pthread_create(&t->tid, NULL, cq_main, t) != 0)
			return hs_error_set(err, HS_INTERNAL, "cannot start a completion-queue thread");
		t->running = true;
	}
	return HS_OK;
}

static void free_lanes(hs_rpc_server *srv)
{
	if (srv->metrics_registered) { /* no scrape reads the lanes after this */
		hs_metrics_remove(srv->cfg.metrics, hs_rpc__collect, srv);
		srv->metrics_registered = false;
	}
	for (int i = 0; i < N_LANES; i++) {
		hs_pool_free(srv->lanes[i]);
		srv->lanes[i] = NULL;
	}
}

void hs_rpc_server_shutdown(hs_rpc_server *srv, int64_t grace_ms)
{
	pthread_mutex_lock(&srv->mu);
	if (srv->shutting_down || !srv->started) {
		pthread_mutex_unlock(&srv->mu);
		return;
	}
	srv->shutting_down = true;
	size_t in_flight = srv->n_live;
	pthread_mutex_unlock(&srv->mu);
	/* No new calls from here on; outstanding requests fail with TAG_NEW !ok. */
	grpc_server_shutdown_and_notify(srv->server, srv->cqs[0].cq, &srv->shutdown_tag);
	hs_log(HS_LOG_INFO, "rpc", "draining", HS_LI("calls_in_flight", in_flight),
	       HS_LI("grace_ms", grace_ms));

	/* Streams never end by themselves: end them once their queue is written. */
	pthread_mutex_lock(&srv->mu);
	for (hs_rpc_call *c = srv->live; c != NULL; c = c->live_next) {
		if (c->m != NULL && c->m->implemented && c->m->handler.kind != HS_RPC_UNARY)
			hs_rpc_call_finish(c, HS_UNAVAILABLE, "server shutting down");
	}
	struct timespec until;
	until = hs_clock_deadline(CLOCK_MONOTONIC, grace_ms > 0 ? grace_ms : 0);
	while (!srv->shutdown_notified) {
		if (pthread_cond_timedwait(&srv->cv, &srv->mu, &until) != 0)
			break;
	}
	bool forced = !srv->shutdown_notified;
	pthread_mutex_unlock(&srv->mu);
	if (forced) {
		hs_log(HS_LOG_WARN, "rpc", "grace period over: cancelling calls still in flight");
		grpc_server_cancel_all_calls(srv->server);
	}

	/* Handlers still running on workers finish (their sends now fail fast);
	 * the lanes stay up until every call has ended, since a call's last
	 * steps (a writable job, a queued handler that only sees it was
	 * cancelled) run there. */
	pthread_mutex_lock(&srv->mu);
	while (!srv->shutdown_notified || srv->n_live > 0)
		pthread_cond_wait(&srv->cv, &srv->mu);
	pthread_mutex_unlock(&srv->mu);
	free_lanes(srv);
	hs_log(HS_LOG_INFO, "rpc", "drained", HS_LB("forced", forced));
}

void hs_rpc_server_free(hs_rpc_server *srv)
{
	if (srv == NULL)
		return;
	if (srv->started && !srv->shutting_down)
		hs_rpc_server_shutdown(srv, 0);
	if (srv->server != NULL) {
		if (!srv->started && srv->cqs != NULL) {
			/* grpc_server_destroy asserts a shutdown was requested once a
			 * port is bound, started or not: request it and wait (nobody
			 * polls the queue yet). */
			grpc_server_shutdown_and_notify(srv->server, srv->cqs[0].cq, &srv->shutdown_tag);
			grpc_event ev;
			do {
				ev = grpc_completion_queue_next(srv->cqs[0].cq,
								gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
			} while (ev.type == GRPC_OP_COMPLETE && ev.tag != &srv->shutdown_tag);
		}
		grpc_server_destroy(srv->server);
	}
	for (unsigned i = 0; i < srv->n_cqs; i++) {
		cq_thread *t = &srv->cqs[i];
		if (t->cq == NULL)
			continue;
		grpc_completion_queue_shutdown(t->cq);
		if (t->running) {
			pthread_join(t->tid, NULL);
		} else { /* drain by hand: nobody polls this queue */
			while (grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
				       .type != GRPC_QUEUE_SHUTDOWN) {
			}
		}
		grpc_completion_queue_destroy(t->cq);
	}
	free_lanes(srv);
	while (srv->free_calls != NULL) {
		hs_rpc_call *c = srv->free_calls;
		srv->free_calls = c->free_next;
		hs_rpc__call_destroy(c);
	}
	hs_rpc__forward_free(srv); /* after the lanes: no forward runs any more */
	hs_rpc__tls_free(srv->tls); /* the credentials (gone with the server) called into it */
	free(srv->cqs);
	free(srv->methods);
	free(srv->services);
	pthread_cond_destroy(&srv->cv);
	hs_rpc__streams_free(srv);
	pthread_mutex_destroy(&srv->mu);
	free(srv);
	grpc_shutdown();
}
