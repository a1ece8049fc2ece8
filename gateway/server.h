/* The gateway's HTTP side: civetweb routes for the REST contract, mapped
 * onto AuthService calls through libharness-client. The only civetweb code. */
#ifndef HS_GATEWAY_SERVER_H
#define HS_GATEWAY_SERVER_H

#include "client.h"
#include "gateway_config.h"
#include "error.h"

typedef struct hs_gw_server hs_gw_server;

/* Starts listening (cfg and client must outlive the server). *port_out is
 * the bound port (useful with port 0). */
int hs_gw_server_start(hs_gw_server **out, const hs_gw_config *cfg, hs_client *client,
		       int *port_out, hs_error *err);

/* Stops accepting, waits for in-flight requests, frees. NULL is a no-op. */
void hs_gw_server_stop(hs_gw_server *s);

#endif
