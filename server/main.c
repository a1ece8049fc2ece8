/* harnessd: wires the store, the services and the RPC core together, and
 * turns SIGTERM/SIGINT into a graceful drain (Kubernetes sends SIGTERM). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harnessd_config.h"
#include "clock.h"
#include "auth.h"
#include "harness/v1/auth.pb-c.h"
#include "harness/v1/checkpoint.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "harness/v1/sandbox.pb-c.h"
#include "log.h"
#include "rpc.h"
#include "auth_service.h"
#include "sandbox_service.h"
#include "checkpoint_service.h"
#include "std_services.h"
#include "store.h"
#include "tenancy.h"
#include "memtrim.h"
#include "metrics.h"
#include "metrics_http.h"
#include "tasks_service.h"
#include "tasks.h"
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

/* Creates dir (and parents) with mode 0700 if missing. */
static int mkdir_p(const char *dir, hs_error *err)
{
	char path[HS_CFG_STR];
	int n = snprintf(path, sizeof(path), "%s", dir);
	if (n < 0 || (size_t)n >= sizeof(path))
		return hs_error_set(err, HS_INVALID, "path too long: %s", dir);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return hs_error_set(err, HS_UNAVAILABLE, "mkdir %s: %s", path, strerror(errno));
		*p = '/';
	}
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return hs_error_set(err, HS_UNAVAILABLE, "mkdir %s: %s", path, strerror(errno));
	return HS_OK;
}

typedef struct app {
	hs_config cfg;
	hs_store *store;
	hs_tenancy *tenancy;     /* who owns which task id; workspaces beneath the root */
	hs_metrics *metrics;     /* every module's collector; scraped at --metrics-listen */
	hs_metrics_http *metrics_http;
	hs_rpc_server *srv;
	hs_rpc_server *health_srv; /* --health-listen: plaintext, grpc.health.v1 only */
	hs_grpc_health *health;
	hs_reflection *reflection;
	hs_auth *auth;
	hs_ckpt_mgr *ckpt;       /* CheckpointService (also used by HealthService recovery) */
	hs_sandbox_mgr *sandbox; /* SandboxService (also used by HealthService recovery) */
	hs_tasks *tasks;         /* HealthService */
	pthread_t ready_thr;     /* periodic readiness_check() */
	pthread_mutex_t ready_mu;
	pthread_cond_t ready_cv;
	bool ready_started, ready_stop;
	_Atomic int64_t ready_round_ms; /* monotonic end of the last readiness round */
	_Atomic int ready_checks[3];    /* last round: store, workspace, sandbox driver ok */
	pthread_t live_thr;      /* liveness watchdog (live_main) */
	bool live_started;
} app;

/* grpc.health.v1 service name of liveness (readiness is ""). */
#define LIVENESS_SERVICE "liveness"
/* A readiness round that has not finished for this long means the process
 * is wedged (a store or disk call that never returns): liveness fails and
 * Kubernetes restarts it. A full disk fails a round quickly: unready, not
 * restarted. */
#define LIVENESS_STALL_MS 60000

static const ProtobufCServiceDescriptor *const harness_services[] = {
	&harness__v1__auth_service__descriptor,
	&harness__v1__sandbox_service__descriptor,
	&harness__v1__checkpoint_service__descriptor,
	&harness__v1__health_service__descriptor,
};
#define N_HARNESS_SERVICES (sizeof(harness_services) / sizeof(harness_services[0]))

static int start_auth(app *a, hs_error *err)
{
	const hs_config *c = &a->cfg;
	hs_auth_config ac = HS_AUTH_CONFIG_INIT;
	ac.backend = strcmp(c->auth_backend, "upstream") == 0 ? HS_AUTH_UPSTREAM : HS_AUTH_LOCAL;
	ac.user_service_url = c->user_service_url[0] ? c->user_service_url : NULL;
	ac.api_key = c->user_service_api_key[0] ? c->user_service_api_key : NULL;
	ac.jwt_alg = c->jwt_alg[0] ? c->jwt_alg : NULL;
	ac.jwt_secret = c->jwt_secret[0] ? c->jwt_secret : NULL;
	ac.jwt_public_key_file = c->jwt_public_key[0] ? c->jwt_public_key : NULL;
	ac.jwt_issuer = c->jwt_issuer[0] ? c->jwt_issuer : NULL;
	ac.jwt_audience = c->jwt_audience[0] ? c->jwt_audience : NULL;
	ac.access_ttl_s = (int)c->access_token_ttl_s;
	ac.refresh_ttl_s = (int)c->refresh_token_ttl_s;
	ac.store = a->store;
	ac.data_dir = c->data_dir;
	ac.bootstrap_admin = ac.backend == HS_AUTH_LOCAL;
	ac.admin_email = getenv("HARNESS_ADMIN_EMAIL");
	ac.admin_password = getenv("HARNESS_ADMIN_PASSWORD");
	ac.trusted_proxies = c->trusted_proxies;
	ac.gateway_secret_file = strcmp(c->gateway_secret_file, "none") == 0 ? ""
				 : c->gateway_secret_file[0]		      ? c->gateway_secret_file
									      : NULL;
	ac.throttle.pair_free = (int)c->login_free_failures;
	ac.throttle.base_delay_ms = (int)c->login_backoff_ms;
	ac.throttle.max_delay_ms = (int)(c->login_backoff_max_ms > c->login_backoff_ms
						 ? c->login_backoff_max_ms
						 : c->login_backoff_ms);
	ac.hash_concurrency = (unsigned)c->password_hash_concurrency;
	ac.hash_wait_ms = c->password_hash_wait_ms > 0 ? (int)c->password_hash_wait_ms : -1;
	ac.jwt_jwks_url = c->jwt_jwks_url[0] ? c->jwt_jwks_url : NULL;
	ac.client_identities = c->tls_client_identities;
	return hs_auth_new(&a->auth, &ac, err);
}

/* Readiness for grpc.health.v1: the store takes writes, the workspace root
 * takes writes, the sandbox driver can run. "" (what Kubernetes probes)
 * needs the store and the workspace root; each harness service needs what
 * it uses (SandboxService also a usable driver: on a host where no driver
 * runs, the rest of harnessd stays ready). Called at start and every 5 s
 * from its own thread (never blocks an RPC thread). */
static void readiness_check(app *a)
{
	hs_error e = { 0 };
	bool store_ok = hs_store_check_writable(a->store, &e) == HS_OK;
	char probe[HS_CFG_STR + 32];
	snprintf(probe, sizeof(probe), "%s/.hs-ready-XXXXXX", a->cfg.workspace_root);
	int fd = mkstemp(probe);
	bool ws_ok = fd >= 0 && write(fd, "ok", 2) == 2;
	if (fd >= 0) {
		close(fd);
		unlink(probe);
	}
	/* Probing the driver starts a process (bwrap) or opens /dev/kvm: once a
	 * minute is plenty; the store and the disk are checked every time. */
	static unsigned round;
	static bool sb_ok;
	hs_error se = { 0 };
	if (round++ % 12 == 0)
		sb_ok = hs_sandbox_mgr_probe(a->sandbox, &se) == HS_OK;
	hs_grpc_health_status up = HS_GRPC_HEALTH_SERVING, down = HS_GRPC_HEALTH_NOT_SERVING;
	if (!sb_ok && hs_grpc_health_get(a->health, "harness.v1.SandboxService", NULL) != down)
		hs_log(HS_LOG_WARN, "main", "sandbox driver unusable: SandboxService NOT_SERVING",
		       HS_LS("error", se.msg));
	hs_grpc_health_set(a->health, "", store_ok && ws_ok ? up : down);
	for (size_t i = 0; i < N_HARNESS_SERVICES; i++) {
		const ProtobufCServiceDescriptor *d = harness_services[i];
		bool needs_ws = d == &harness__v1__checkpoint_service__descriptor ||
				d == &harness__v1__health_service__descriptor ||
				d == &harness__v1__sandbox_service__descriptor;
		bool needs_sb = d == &harness__v1__sandbox_service__descriptor;
		hs_grpc_health_set(a->health, d->name,
			      store_ok && (ws_ok || !needs_ws) && (sb_ok || !needs_sb) ? up : down);
	}
	if (!store_ok)
		hs_log(HS_LOG_ERROR, "main", "store not writable: NOT_SERVING", HS_LS("error", e.msg));
	if (!ws_ok)
		hs_log(HS_LOG_ERROR, "main", "workspace root not writable: NOT_SERVING",
		       HS_LS("workspace_root", a->cfg.workspace_root));
	atomic_store(&a->ready_checks[0], store_ok);
	atomic_store(&a->ready_checks[1], ws_ok);
	atomic_store(&a->ready_checks[2], sb_ok);
	atomic_store(&a->ready_round_ms, hs_clock_mono_ms());
}

/* harness_ready_check{check}: what the last readiness round found (1 ok,
 * 0 failing): alerts on an unwritable store or disk need no log parsing. */
static void collect_ready(hs_metrics_out *out, void *payload)
{
	app *a = payload;
	static const char *const names[] = { "store", "workspace", "sandbox_driver" };
	hs_metrics_family(out, "harness_ready_check", "gauge",
			  "Readiness checks of the last round (every 5 s): 1 passed, 0 failed.");
	for (int i = 0; i < 3; i++) {
		const char *l[] = { "check", names[i], NULL };
		hs_metrics_sample(out, "harness_ready_check", l, atomic_load(&a->ready_checks[i]));
	}
	hs_metrics_family(out, "harness_ready", "gauge",
			  "1 while harnessd is ready (grpc.health.v1 \"\" SERVING), else 0.");
	hs_metrics_sample(out, "harness_ready", NULL,
			  hs_grpc_health_get(a->health, "", NULL) == HS_GRPC_HEALTH_SERVING);
}

/* Liveness: grpc.health.v1 "liveness" is SERVING while the readiness loop
 * keeps finishing rounds (answered by the RPC core itself, so a probe also
 * proves it takes calls). Checked every second; only atomics and the
 * health table, so it cannot hang on what it watches. */
static void *live_main(void *arg)
{
	app *a = arg;
	hs_grpc_health_status last = HS_GRPC_HEALTH_SERVING;
	pthread_mutex_lock(&a->ready_mu);
	while (!a->ready_stop) {
		struct timespec ts = hs_clock_deadline(CLOCK_REALTIME, 1000);
		pthread_cond_timedwait(&a->ready_cv, &a->ready_mu, &ts);
		if (a->ready_stop)
			break;
		int64_t age = hs_clock_mono_ms() - atomic_load(&a->ready_round_ms);
		hs_grpc_health_status now = age > LIVENESS_STALL_MS ? HS_GRPC_HEALTH_NOT_SERVING
								    : HS_GRPC_HEALTH_SERVING;
		if (now != last) {
			hs_grpc_health_set(a->health, LIVENESS_SERVICE, now);
			if (now != HS_GRPC_HEALTH_SERVING)
				hs_log(HS_LOG_ERROR, "main", "readiness loop stalled: liveness NOT_SERVING",
				       HS_LI("stalled_ms", age));
			last = now;
		}
	}
	pthread_mutex_unlock(&a->ready_mu);
	return NULL;
}

/* /livez and /readyz on --metrics-listen: the same answers as the gRPC
 * probes ("liveness" and "" in grpc.health.v1). */
static bool http_probe(void *payload, bool ready)
{
	app *a = payload;
	return hs_grpc_health_get(a->health, ready ? "" : LIVENESS_SERVICE, NULL) ==
	       HS_GRPC_HEALTH_SERVING;
}

static void *readiness_main(void *arg)
{
	app *a = arg;
	pthread_mutex_lock(&a->ready_mu);
	while (!a->ready_stop) {
		struct timespec ts = hs_clock_deadline(CLOCK_REALTIME, 5000);
		pthread_cond_timedwait(&a->ready_cv, &a->ready_mu, &ts);
		if (a->ready_stop)
			break;
		pthread_mutex_unlock(&a->ready_mu);
		readiness_check(a);
		pthread_mutex_lock(&a->ready_mu);
	}
	pthread_mutex_unlock(&a->ready_mu);
	return NULL;
}

/* The node's row (many nodes on PostgreSQL): --advertise-address, else
 * the listen address with the bound port (a wildcard host: the hostname). */
static int advertise(app *a, hs_error *err)
{
	char addr[sizeof(a->cfg.listen) + 160];
	if (a->cfg.advertise_address[0] != '\0') {
		snprintf(addr, sizeof(addr), "%s", a->cfg.advertise_address);
	} else {
		const char *colon = strrchr(a->cfg.listen, ':');
		int hlen = colon ? (int)(colon - a->cfg.listen) : (int)strlen(a->cfg.listen);
		char host[128] = "";
		if (hlen == 0 || strncmp(a->cfg.listen, "0.0.0.0", (size_t)hlen) == 0 ||
		    strncmp(a->cfg.listen, "[::]", (size_t)hlen) == 0) {
			if (gethostname(host, sizeof(host) - 1) != 0)
				snprintf(host, sizeof(host), "localhost");
			snprintf(addr, sizeof(addr), "%s:%d", host, hs_rpc_server_port(a->srv));
		} else {
			snprintf(addr, sizeof(addr), "%.*s:%d", hlen, a->cfg.listen,
				 hs_rpc_server_port(a->srv));
		}
	}
	return hs_tasks_advertise(a->tasks, addr, err);
}

/* --health-listen: grpc.health.v1 alone, in plaintext, for probes that
 * cannot speak TLS (kubelet's gRPC probes). Nothing else is served there. */
static int start_health_listener(app *a, hs_error *err)
{
	int rc;
	if (a->cfg.health_listen[0] == '\0')
		return HS_OK;
	hs_rpc_config hc = HS_RPC_CONFIG_INIT;
	hc.listen = a->cfg.health_listen;
	hc.cq_threads = 1;
	hc.workers = hc.long_workers = hc.liveness_workers = 1;
	hc.worker_queue = 64;
	hc.max_message_bytes = 64 * 1024;
	if ((rc = hs_rpc_server_new(&a->health_srv, &hc, err)) != HS_OK ||
	    (rc = hs_grpc_health_register(a->health, a->health_srv, err)) != HS_OK ||
	    (rc = hs_rpc_server_start(a->health_srv, err)) != HS_OK)
		return rc;
	hs_log(HS_LOG_INFO, "main", "health listener", HS_LS("listen", a->cfg.health_listen),
	       HS_LI("port", hs_rpc_server_port(a->health_srv)));
	return HS_OK;
}

/* The checkpoint module's on_create hook: Task.last_checkpoint_id and the
 * step a recovery resumes from follow every checkpoint, not only those a
 * recovery made. */
static void note_checkpoint(void *tasks, const char *task_id, const char *checkpoint_id,
			    int64_t step)
{
	hs_tasks_note_checkpoint(tasks, task_id, checkpoint_id, step);
}

/* The checkpoint module's fence: no checkpoint of a task whose recovery is
 * unacknowledged, or from an agent with a stale generation. */
static int fence_checkpoint(void *tasks, const char *task_id, int64_t generation, hs_error *err)
{
	return hs_tasks_checkpoint_fence(tasks, task_id, generation, err);
}

/* A thread count: the configured one, or (0) per_cpu per online CPU within
 * [lo, hi]. */
static unsigned sized(int configured, unsigned per_cpu, unsigned lo, unsigned hi)
{
	if (configured > 0)
		return (unsigned)configured;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned v = (unsigned)(n > 0 ? n : 1) * per_cpu;
	return v < lo ? lo : v > hi ? hi : v;
}

static int start(app *a, hs_error *err)
{
	int rc;
	if ((rc = mkdir_p(a->cfg.data_dir, err)) != HS_OK)
		return rc;
	if ((rc = mkdir_p(a->cfg.workspace_root, err)) != HS_OK)
		return rc;
	if ((rc = hs_store_open_spec(&a->store, a->cfg.store, a->cfg.data_dir, err)) != HS_OK)
		return rc;
	if ((rc = hs_metrics_new(&a->metrics, err)) != HS_OK ||
	    (rc = hs_metrics_add(a->metrics, hs_metrics_collect_process, NULL, err)) != HS_OK ||
	    (rc = hs_metrics_add(a->metrics, hs_store_collect_metrics, a->store, err)) != HS_OK)
		return rc;
	/* Many nodes: this process is the node --node-id, nobody else (a live
	 * holder of the id refuses the start), before any module loads what
	 * belongs to the node. */
	if (strcmp(hs_store_backend(a->store), "postgres") == 0 &&
	    (rc = hs_tasks_claim_node(a->store, a->cfg.node_id,
				      a->cfg.advertise_address[0] ? a->cfg.advertise_address
								  : a->cfg.listen,
				      a->cfg.task_lease_ms, err)) != HS_OK)
		return rc;
	hs_tenancy_config tc_cfg = { a->store, a->cfg.workspace_root };
	if ((rc = hs_tenancy_new(&a->tenancy, &tc_cfg, err)) != HS_OK)
		return rc;

	hs_rpc_config rc_cfg = HS_RPC_CONFIG_INIT;
	rc_cfg.listen = a->cfg.listen;
	rc_cfg.cq_threads = sized(a->cfg.cq_threads, 1, 2, 16);
	rc_cfg.workers = sized(a->cfg.workers, 4, 8, 256);
	rc_cfg.max_message_bytes = (size_t)a->cfg.max_message_bytes;
	rc_cfg.max_concurrent_streams = (unsigned)a->cfg.max_concurrent_streams;
	rc_cfg.long_workers = (unsigned)a->cfg.long_workers;
	rc_cfg.liveness_workers = sized(a->cfg.heartbeat_workers, 2, 4, 64);
	rc_cfg.user_concurrency = (unsigned)a->cfg.user_concurrency;
	rc_cfg.user_max_calls = (unsigned)a->cfg.user_max_calls;
	rc_cfg.max_depth = (unsigned)a->cfg.max_message_depth;
	/* grpc_server_* metrics, scraped at --metrics-listen ("" = none: the
	 * RPC core then counts nothing) */
	rc_cfg.metrics = a->cfg.metrics_listen[0] != '\0' ? a->metrics : NULL;
	rc_cfg.node_id = a->cfg.node_id; /* forwarding to a sandbox's node (rpc/forward.c) */
	rc_cfg.tls_cert_file = a->cfg.tls_cert[0] ? a->cfg.tls_cert : NULL;
	rc_cfg.tls_key_file = a->cfg.tls_key[0] ? a->cfg.tls_key : NULL;
	rc_cfg.tls_client_ca_file = a->cfg.tls_client_ca[0] ? a->cfg.tls_client_ca : NULL;
	rc_cfg.tls_peer_ca_file = a->cfg.tls_peer_ca[0] ? a->cfg.tls_peer_ca : NULL;
	rc_cfg.tls_client_auth = strcmp(a->cfg.tls_client_auth, "request") == 0
					 ? HS_RPC_TLS_CLIENT_REQUEST
					 : HS_RPC_TLS_CLIENT_REQUIRE;
	if ((rc = hs_rpc_server_new(&a->srv, &rc_cfg, err)) != HS_OK)
		return rc;
	if ((rc = hs_grpc_health_new(&a->health, err)) != HS_OK ||
	    (rc = hs_grpc_health_register(a->health, a->srv, err)) != HS_OK)
		return rc;
	/* Live from the start; the watchdog (live_main) takes over once the
	 * readiness loop runs. */
	atomic_store(&a->ready_round_ms, hs_clock_mono_ms());
	hs_grpc_health_set(a->health, LIVENESS_SERVICE, HS_GRPC_HEALTH_SERVING);
	if ((rc = hs_reflection_new(&a->reflection, err)) != HS_OK ||
	    (rc = hs_reflection_register(a->reflection, a->srv, err)) != HS_OK)
		return rc;
	if ((rc = start_auth(a, err)) != HS_OK ||
	    (rc = hs_auth_service_register(a->srv, a->auth, err)) != HS_OK)
		return rc;
	/* SandboxService: runtime state under <data-dir>/sandboxes; the driver is
	 * probed here (a configured one that cannot run fails the start). */
	if ((rc = hs_sandbox_service_open(&a->sandbox, &a->cfg, a->store, a->tenancy, err)) !=
		    HS_OK ||
	    (rc = hs_sandbox_service_register(a->srv, a->sandbox, err)) != HS_OK ||
	    (rc = hs_sandbox_mgr_add_metrics(a->sandbox, a->metrics, err)) != HS_OK)
		return rc;
	/* CheckpointService: one shadow repo per task under <data-dir>/checkpoints;
	 * a create is acknowledged once durable (fsync of what it wrote); workspaces
	 * in use are change-tracked (inotify), counted on a->metrics. */
	{
		char repos[sizeof(a->cfg.data_dir) + 16];
		snprintf(repos, sizeof(repos), "%s/checkpoints", a->cfg.data_dir);
		hs_ckpt_config cc = { 0 };
		cc.repos_dir = repos;
		cc.workspace_root = a->cfg.workspace_root;
		cc.tenancy = a->tenancy;
		cc.remote_url = a->cfg.checkpoint_remote[0] ? a->cfg.checkpoint_remote : NULL;
		cc.push_timeout_ms = a->cfg.checkpoint_push_timeout_ms;
		cc.quota.checkpoints_per_task = (uint64_t)a->cfg.checkpoint_max_per_task;
		cc.quota.external_state_bytes = (uint64_t)a->cfg.checkpoint_max_external_state;
		cc.quota.repo_bytes = (uint64_t)a->cfg.checkpoint_max_repo_bytes;
		cc.quota.workspace_bytes = (uint64_t)a->cfg.checkpoint_max_workspace_bytes;
		cc.quota.workspace_files = (uint64_t)a->cfg.checkpoint_max_workspace_files;
		cc.fsync = true;
		cc.watch.off = a->cfg.checkpoint_watch_workspaces == 0;
		cc.watch.max_workspaces = (unsigned)a->cfg.checkpoint_watch_workspaces;
		cc.watch.max_dirs = (unsigned)a->cfg.checkpoint_watch_dirs;
		cc.watch.max_changes = (unsigned)a->cfg.checkpoint_watch_changes;
		cc.scan_threads = (unsigned)a->cfg.checkpoint_scan_threads;
		cc.metrics = a->metrics;
		if ((rc = hs_ckpt_mgr_new(&a->ckpt, &cc, err)) != HS_OK ||
		    (rc = hs_ckpt_service_register(a->srv, a->ckpt, err)) != HS_OK)
			return rc;
	}
	/* HealthService: recovery restores through a->ckpt and brings sandboxes
	 * back through a->sandbox (both created above). */
	hs_tasks_config tc = { 0 };
	tc.store = a->store;
	tc.tenancy = a->tenancy;
	tc.ckpt = a->ckpt;
	tc.sandboxes = a->sandbox;
	tc.webhook_url = a->cfg.webhook_url[0] ? a->cfg.webhook_url : NULL;
	tc.metrics = a->metrics;
	tc.max_tasks_per_user = (size_t)a->cfg.max_tasks_per_user;
	/* Many nodes share a PostgreSQL store: tasks are owned through leases.
	 * SQLite has one node: no leases (tasks.h). */
	if (strcmp(hs_store_backend(a->store), "postgres") == 0) {
		tc.node_id = a->cfg.node_id;
		tc.lease_ms = a->cfg.task_lease_ms;
	}
	if ((rc = hs_tasks_new(&a->tasks, &tc, err)) != HS_OK ||
	    (rc = hs_tasks_service_register(a->srv, a->tasks, err)) != HS_OK)
		return rc;
	if (a->ckpt != NULL) {
		hs_ckpt_mgr_set_on_create(a->ckpt, note_checkpoint, a->tasks);
		hs_ckpt_mgr_set_fence(a->ckpt, fence_checkpoint, a->tasks);
	}
	if ((rc = hs_rpc_server_start(a->srv, err)) != HS_OK ||
	    (rc = start_health_listener(a, err)) != HS_OK ||
	    (rc = advertise(a, err)) != HS_OK)
		return rc;
	if (a->cfg.metrics_listen[0] != '\0') {
		hs_metrics_http_opts mo = { http_probe, a };
		if ((rc = hs_metrics_http_start_with(&a->metrics_http, a->cfg.metrics_listen,
						     a->metrics, &mo, err)) != HS_OK)
			return rc;
		hs_log(HS_LOG_INFO, "main", "metrics", HS_LS("listen", a->cfg.metrics_listen),
		       HS_LI("port", hs_metrics_http_port(a->metrics_http)));
	}

	/* Ready only once the store and the workspace root take writes;
	 * re-checked every 5 s. Live while those rounds keep finishing. */
	readiness_check(a);
	if ((rc = hs_metrics_add(a->metrics, collect_ready, a, err)) != HS_OK)
		return rc;
	pthread_mutex_init(&a->ready_mu, NULL);
	pthread_cond_init(&a->ready_cv, NULL);
	if (pthread_create(&a->ready_thr, NULL, readiness_main, a) == 0)
		a->ready_started = true;
	if (pthread_create(&a->live_thr, NULL, live_main, a) == 0)
		a->live_started = true;
	hs_error_clear(err);
	return HS_OK;
}

static void stop(app *a)
{
	if (a->ready_started || a->live_started) {
		pthread_mutex_lock(&a->ready_mu);
		a->ready_stop = true;
		pthread_cond_broadcast(&a->ready_cv);
		pthread_mutex_unlock(&a->ready_mu);
	}
	if (a->ready_started) {
		pthread_join(a->ready_thr, NULL);
		a->ready_started = false;
	}
	if (a->live_started) {
		pthread_join(a->live_thr, NULL);
		a->live_started = false;
	}
	hs_metrics_http_stop(a->metrics_http); /* no scrape runs past this */
	a->metrics_http = NULL;
	if (a->metrics != NULL)
		hs_metrics_remove(a->metrics, collect_ready, a);
	if (a->health != NULL)
		hs_grpc_health_shutdown(a->health);
	if (a->srv != NULL)
		hs_rpc_server_shutdown(a->srv, a->cfg.shutdown_grace_ms);
	hs_rpc_server_free(a->srv);
	hs_rpc_server_free(a->health_srv);
	/* service modules go after the server, which may still call them */
	hs_tasks_free(a->tasks);
	hs_ckpt_mgr_free(a->ckpt);
	/* Pushes and fetches still running end within their own timeouts;
	 * exit under none of them if they end soon. */
	(void)hs_ckpt_background_wait(2000);
	hs_sandbox_mgr_free(a->sandbox); /* sandboxes keep running: re-adopted at the next start */
	hs_auth_free(a->auth);
	hs_reflection_free(a->reflection);
	hs_grpc_health_free(a->health);
	hs_tenancy_free(a->tenancy);
	hs_metrics_free(a->metrics);
	hs_store_free(a->store);
}

int main(int argc, char **argv)
{
	app a;
	memset(&a, 0, sizeof(a));
	hs_error err = { 0 };
	if (hs_config_load(&a.cfg, argc, argv, &err) != HS_OK) {
		fprintf(stderr, "harnessd: %s\n", err.msg);
		return 2;
	}
	if (a.cfg.show_help) {
		hs_config_print_help(stdout, "harnessd");
		return 0;
	}
	if (a.cfg.show_version) {
		printf("harnessd %s\n", HS_VERSION);
		return 0;
	}
	hs_log_level lvl;
	if (!hs_log_level_parse(a.cfg.log_level, &lvl)) {
		fprintf(stderr, "harnessd: log-level: unknown level '%s'\n", a.cfg.log_level);
		return 2;
	}
	hs_log_min_level = lvl;

	/* Signals are taken by sigwait in this thread only: block them before
	 * any thread starts so every thread inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (start(&a, &err) != HS_OK) {
		hs_log(HS_LOG_ERROR, "main", "cannot start", HS_LS("error", err.msg));
		fprintf(stderr, "harnessd: %s\n", err.msg);
		stop(&a);
		return 1;
	}
	hs_log(HS_LOG_INFO, "main", "serving", HS_LS("version", HS_VERSION),
	       HS_LS("listen", a.cfg.listen), HS_LI("port", hs_rpc_server_port(a.srv)),
	       HS_LB("tls", a.cfg.tls_cert[0] != '\0'),
	       HS_LS("data_dir", a.cfg.data_dir), HS_LS("auth_backend", a.cfg.auth_backend),
	       HS_LS("node_id", a.cfg.node_id));
	/* The library pages only startup touched, given back (common/memtrim.h). */
	size_t trimmed_kb = 0;
	hs_error terr = { 0 };
	if (hs_memtrim_startup(&trimmed_kb, &terr) == HS_OK)
		hs_log(HS_LOG_DEBUG, "main", "startup pages dropped", HS_LI("kb", trimmed_kb));
	else
		hs_log(HS_LOG_WARN, "main", "startup pages kept", HS_LS("error", terr.msg));

	int sig = 0;
	sigwait(&sigs, &sig); /* only fails for an invalid set */
	hs_log(HS_LOG_INFO, "main", "signal received: draining", HS_LS("signal", strsignal(sig)));
	stop(&a);
	hs_log(HS_LOG_INFO, "main", "stopped");
	return 0;
}
