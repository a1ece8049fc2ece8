/* The standard gRPC services every harnessd serves: grpc.health.v1.Health
 * (Check, Watch) and server reflection (grpc.reflection.v1 and v1alpha), so
 * grpcurl and Kubernetes gRPC probes work with no .proto files at hand. */
#ifndef HS_RPC_STD_SERVICES_H
#define HS_RPC_STD_SERVICES_H

#include <stdbool.h>

#include "rpc.h"

typedef struct hs_grpc_health hs_grpc_health;

typedef enum hs_grpc_health_status {
	HS_GRPC_HEALTH_UNKNOWN = 0,
	HS_GRPC_HEALTH_SERVING = 1,
	HS_GRPC_HEALTH_NOT_SERVING = 2,
} hs_grpc_health_status;

int hs_grpc_health_new(hs_grpc_health **out, hs_error *err);
/* Registers grpc.health.v1.Health on srv (before the server starts). */
int hs_grpc_health_register(hs_grpc_health *h, hs_rpc_server *srv, hs_error *err);
/* Sets one service's status ("" is the server as a whole); watchers of that
 * service get the new status. Unknown names are added. After
 * hs_grpc_health_shutdown() only NOT_SERVING is accepted. */
int hs_grpc_health_set(hs_grpc_health *h, const char *service, hs_grpc_health_status status);
hs_grpc_health_status hs_grpc_health_get(hs_grpc_health *h, const char *service, bool *known);
/* Every service NOT_SERVING, for good (graceful shutdown). */
void hs_grpc_health_shutdown(hs_grpc_health *h);
/* After the server is shut down (no watcher left). */
void hs_grpc_health_free(hs_grpc_health *h);

/* Registers reflection v1 and v1alpha over the embedded descriptor set.
 * Lists the services registered on srv at the time of the request. */
typedef struct hs_reflection hs_reflection;
int hs_reflection_new(hs_reflection **out, hs_error *err);
int hs_reflection_register(hs_reflection *r, hs_rpc_server *srv, hs_error *err);
void hs_reflection_free(hs_reflection *r);

/* Test hooks: looks up the file (name) that declares a symbol. */
const char *hs_reflection_file_of(const hs_reflection *r, const char *symbol);

#endif
