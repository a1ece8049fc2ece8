/* gRPC adapter of the checkpoint module: harness.v1.CheckpointService. */
#ifndef HS_CHECKPOINT_SERVICE_H
#define HS_CHECKPOINT_SERVICE_H

#include "checkpoint.h"
#include "rpc.h"

/* Registers CheckpointService on srv (every method on the worker pool);
 * mgr must outlive the server. */
int hs_ckpt_service_register(hs_rpc_server *srv, hs_ckpt_mgr *mgr, hs_error *err);

#endif
