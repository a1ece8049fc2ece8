/* harness-gateway configuration: one table (flag, env, type, default,
 * bounds, help) that parses argv + environment and prints --help. */
#ifndef HS_GATEWAY_CONFIG_H
#define HS_GATEWAY_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "error.h"
#include "netaddr.h"
#include "policy.h"

typedef struct hs_gw_config {
	char listen[128];         /* civetweb listening_ports form: "127.0.0.1:8080" */
	char metrics_listen[128]; /* GET /metrics, /livez, /readyz; "" = off */
	char grpc_target[256];
	/* TLS to harnessd (any file set = TLS) */
	char grpc_tls_ca[1024];
	char grpc_tls_cert[1024];
	char grpc_tls_key[1024];
	char grpc_tls_server_name[256];
	long request_timeout_ms;  /* per-request gRPC deadline */
	long body_limit;          /* bytes */
	long threads;             /* workers for requests; 0 = auto (8 per CPU, at least 32) */
	long sse_max_streams;     /* event streams open at once (each holds a worker) */
	long sse_max_per_client;  /* event streams one client address may hold */
	long sse_max_seconds;     /* a stream is closed (the client reconnects) after this */
	long sse_keepalive_ms;    /* comment line sent on an idle stream (finds gone clients) */
	bool console;             /* serve the web console at / */
	char allowed_origins[2048];
	char trusted_proxies[1024];
	char gateway_secret_file[1024];
	long header_timeout_ms;   /* civetweb request_timeout_ms: request line + headers */
	long max_connections_per_client;
	char cookie_path[256];
	char log_level[16];
	char env[32];             /* HARNESS_ENV / NODE_ENV */
	bool csrf_strict;
	/* derived */
	long workers;             /* civetweb num_threads: threads + sse_max_streams */
	bool production;
	hs_gw_origins origins;
	hs_cidr_list proxies;
} hs_gw_config;

#define HS_GW_CONFIG_EXIT 1 /* --help or --version printed: exit 0 */

/* Defaults < environment < flags. HS_OK, HS_GW_CONFIG_EXIT, or HS_INVALID
 * with a precise message (unknown flag, bad value, TLS requested). */
int hs_gw_config_load(hs_gw_config *out, int argc, char **argv, FILE *help_out, hs_error *err);

#endif
