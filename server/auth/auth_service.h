/* gRPC adapter of the auth module: harness.v1.AuthService and the RPC core's
 * authenticator (the "interceptor" that turns `authorization: Bearer` into
 * the caller's principal). */
#ifndef HS_AUTH_AUTH_SERVICE_H
#define HS_AUTH_AUTH_SERVICE_H

#include "auth.h"
#include "rpc.h"

/* Registers AuthService on srv and installs the authenticator; auth must
 * outlive the server. */
int hs_auth_service_register(hs_rpc_server *srv, hs_auth *auth, hs_error *err);

#endif
