/* gRPC adapter of the sandbox module: harness.v1.SandboxService, and the
 * start-up glue that builds the manager from harnessd's configuration. */
#ifndef HS_SANDBOX_SANDBOX_SERVICE_H
#define HS_SANDBOX_SANDBOX_SERVICE_H

#include "harnessd_config.h"
#include "rpc.h"
#include "sandbox.h"

/* Opens the sandbox manager from harnessd's settings: runtime root
 * <data-dir>/sandboxes, tasks and workspaces through tenancy, the sandbox
 * account, limits, and the default driver. "auto" becomes firecracker when it probes OK, else
 * bwrap; a driver named explicitly that cannot run here is an error
 * (HS_UNAVAILABLE with the reason), so a misconfigured host fails fast.
 * Logs the driver in use. cfg and store are borrowed and must outlive *out
 * (hs_sandbox_mgr_free); so does tenancy. --jailer-bin without an
 * unprivileged jailer uid (configured, or the sandbox account) is
 * HS_INVALID. */
int hs_sandbox_service_open(hs_sandbox_mgr **out, const hs_config *cfg, hs_store *store,
			    hs_tenancy *tenancy, hs_error *err);

/* Registers SandboxService on srv (every handler runs on the worker pool);
 * mgr must outlive the server. */
int hs_sandbox_service_register(hs_rpc_server *srv, hs_sandbox_mgr *mgr, hs_error *err);

#endif
