/* The gRPC services harness-gateway serves over REST (their protobuf-c
 * descriptors give the message types of each route). */
#ifndef HS_GATEWAY_SERVICES_H
#define HS_GATEWAY_SERVICES_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* The four harness.v1 services and grpc.health.v1.Health; *n set. */
const ProtobufCServiceDescriptor *const *hs_gw_services(size_t *n);

#endif
