/* harness-gateway: the REST gateway (civetweb) in front of harnessd's
 * AuthService. Signals: SIGTERM/SIGINT stop accepting, finish in-flight
 * requests, exit 0. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "gateway_config.h"
#include "log.h"
#include "memtrim.h"
#include "server.h"

int main(int argc, char **argv)
{
	static hs_gw_config cfg;
	hs_error err;
	hs_error_clear(&err);
	int rc = hs_gw_config_load(&cfg, argc, argv, stdout, &err);
	if (rc == HS_GW_CONFIG_EXIT)
		return 0;
	if (rc != HS_OK) {
		fprintf(stderr, "harness-gateway: %s\n", err.msg);
		return 2;
	}
	hs_log_level lvl = HS_LOG_INFO;
	(void)hs_log_level_parse(cfg.log_level, &lvl);
	hs_log_min_level = lvl;

	/* Every thread (gRPC's, civetweb's) inherits this mask; only sigwait
	 * below takes these signals. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	hs_client_opts copts = HS_CLIENT_OPTS_INIT;
	copts.default_deadline_ms = cfg.request_timeout_ms;
	copts.user_agent = "harness-gateway/" HS_VERSION;
	copts.tls_ca_file = cfg.grpc_tls_ca[0] ? cfg.grpc_tls_ca : NULL;
	copts.tls_cert_file = cfg.grpc_tls_cert[0] ? cfg.grpc_tls_cert : NULL;
	copts.tls_key_file = cfg.grpc_tls_key[0] ? cfg.grpc_tls_key : NULL;
	copts.tls_server_name = cfg.grpc_tls_server_name[0] ? cfg.grpc_tls_server_name : NULL;
	hs_client *client = NULL;
	rc = hs_client_new(&client, cfg.grpc_target, &copts, &err);
	if (rc != HS_OK) {
		hs_log(HS_LOG_ERROR, "gateway", "cannot create gRPC client", HS_LS("error", err.msg));
		return 1;
	}
	hs_gw_server *srv = NULL;
	int port = 0;
	rc = hs_gw_server_start(&srv, &cfg, client, &port, &err);
	if (rc != HS_OK) {
		hs_log(HS_LOG_ERROR, "gateway", "cannot start", HS_LS("error", err.msg));
		hs_client_free(client);
		return 1;
	}
	if (cfg.gateway_secret_file[0] == '\0')
		hs_log(HS_LOG_WARN, "gateway", "no --gateway-secret-file: harnessd will not believe the "
		       "client addresses sent to it and throttles logins by this gateway's address");
	hs_log(HS_LOG_INFO, "gateway", "listening", HS_LI("port", port), HS_LS("listen", cfg.listen),
	       HS_LS("grpc_target", cfg.grpc_target), HS_LB("grpc_tls", copts.tls_ca_file != NULL ||
							    copts.tls_cert_file != NULL),
	       HS_LB("production", cfg.production),
	       HS_LB("csrf_strict", cfg.csrf_strict));
	/* The library pages only startup touched, given back (common/memtrim.h). */
	size_t trimmed_kb = 0;
	hs_error terr;
	hs_error_clear(&terr);
	if (hs_memtrim_startup(&trimmed_kb, &terr) == HS_OK)
		hs_log(HS_LOG_DEBUG, "gateway", "startup pages dropped", HS_LI("kb", trimmed_kb));
	else
		hs_log(HS_LOG_WARN, "gateway", "startup pages kept", HS_LS("error", terr.msg));

	int sig = 0;
	sigwait(&set, &sig);
	hs_log(HS_LOG_INFO, "gateway", "stopping", HS_LS("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));
	hs_gw_server_stop(srv);
	hs_client_free(client);
	hs_log(HS_LOG_INFO, "gateway", "stopped");
	return 0;
}
