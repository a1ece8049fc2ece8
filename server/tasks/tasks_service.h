/* harness.v1.HealthService: the gRPC adapter over the task registry
 * (tasks.h). Converts protobuf <-> module calls and validates fields at the
 * edge; the logic lives in the module. */
#ifndef HS_TASKS_SERVICE_H
#define HS_TASKS_SERVICE_H

#include "error.h"
#include "rpc.h"
#include "tasks.h"

/* Registers every HealthService method with tasks (borrowed; must outlive
 * the server). Store-touching methods run on the worker pool; WatchTasks is
 * a server stream (bounded send queue, drop policy in tasks.h). */
int hs_tasks_service_register(hs_rpc_server *srv, hs_tasks *tasks, hs_error *err);

#endif
