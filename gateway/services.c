/* The services served over REST (services.h). */
#include "services.h"

#include "grpc/health/v1/health.pb-c.h"
#include "harness/v1/auth.pb-c.h"
#include "harness/v1/checkpoint.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "harness/v1/sandbox.pb-c.h"

static const ProtobufCServiceDescriptor *const SERVICES[] = {
	&harness__v1__auth_service__descriptor,
	&harness__v1__sandbox_service__descriptor,
	&harness__v1__checkpoint_service__descriptor,
	&harness__v1__health_service__descriptor,
	&grpc__health__v1__health__descriptor,
};

const ProtobufCServiceDescriptor *const *hs_gw_services(size_t *n)
{
	*n = sizeof(SERVICES) / sizeof(SERVICES[0]);
	return SERVICES;
}
