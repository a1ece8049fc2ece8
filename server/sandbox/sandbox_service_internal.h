/* Internal to the SandboxService adapter: sandbox_service.c (unary calls,
 * registration) and sandbox_stream_service.c (GetSandboxLogs, ExecSandbox). */
#ifndef HS_SANDBOX_SANDBOX_SERVICE_INTERNAL_H
#define HS_SANDBOX_SANDBOX_SERVICE_INTERNAL_H

#include <pthread.h>

#include "rpc.h"
#include "sandbox.h"

/* The caller for the module: the principal, and what is left of the
 * call's deadline (0 = none; at most an hour). */
hs_sandbox_caller hs_sandbox__caller_of(hs_rpc_call *call);

/* GetSandboxLogs (server stream) and ExecSandbox (bidi, per message). */
int hs_sandbox__svc_get_logs(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err);
int hs_sandbox__svc_exec(hs_rpc_call *call, const ProtobufCMessage *req, hs_error *err);

#endif
