/* harness-gateway configuration: one table (flag, env, type, default,
 * bounds, help) that parses argv + environment and prints --help. */
#ifndef HS_GATEWAY_CONFIG_H
#define HS_GATEWAY_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "error.h"
#include "policy.h"

typedef struct hs_gw_config {
	char listen[128];         /* civetweb listening_ports form: "127.0.0.1:8080" */
	char grpc_target[256];
	long request_timeout_ms;  /* per-request gRPC deadline */
	long body_limit;          /* bytes */
	long threads;             /* civetweb worker threads */
	char allowed_origins[2048];
	char trusted_proxies[1024];
	char cookie_path[256];
	char log_level[16];
	char env[32];             /* HARNESS_ENV / NODE_ENV */
	bool csrf_strict;
	/* derived */
	bool production;
	hs_gw_origins origins;
	char proxy_buf[HS_GW_MAX_PROXIES][48];
	const char *proxies[HS_GW_MAX_PROXIES];
	size_t n_proxies;
} hs_gw_config;

#define HS_GW_CONFIG_EXIT 1 /* --help or --version printed: exit 0 */

/* Defaults < environment < flags. HS_OK, HS_GW_CONFIG_EXIT, or HS_INVALID
 * with a precise message (unknown flag, bad value, TLS requested). */
int hs_gw_config_load(hs_gw_config *out, int argc, char **argv, FILE *help_out, hs_error *err);

#endif
