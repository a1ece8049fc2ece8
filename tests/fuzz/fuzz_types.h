/* The message types the fuzzers pick from: every request and response
 * type of every service harnessd serves, by their service descriptors. */
#ifndef HS_FUZZ_TYPES_H
#define HS_FUZZ_TYPES_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "harness/v1/auth.pb-c.h"
#include "harness/v1/checkpoint.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "harness/v1/sandbox.pb-c.h"

#define FUZZ_MAX_TYPES 256

/* Fills types with the request types (requests_only) or the request and
 * response types of every method; returns how many. */
static inline size_t fuzz_types(const ProtobufCMessageDescriptor **types, int requests_only)
{
	static const ProtobufCServiceDescriptor *const services[] = {
		&harness__v1__auth_service__descriptor,
		&harness__v1__sandbox_service__descriptor,
		&harness__v1__checkpoint_service__descriptor,
		&harness__v1__health_service__descriptor,
		&grpc__health__v1__health__descriptor,
		&grpc__reflection__v1__server_reflection__descriptor,
		&grpc__reflection__v1alpha__server_reflection__descriptor,
	};
	size_t n = 0;
	for (size_t s = 0; s < sizeof(services) / sizeof(services[0]); s++) {
		for (unsigned m = 0; m < services[s]->n_methods && n + 2 <= FUZZ_MAX_TYPES; m++) {
			types[n++] = services[s]->methods[m].input;
			if (!requests_only)
				types[n++] = services[s]->methods[m].output;
		}
	}
	return n;
}

#endif
