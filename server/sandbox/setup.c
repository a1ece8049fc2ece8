/* Start-up glue: harnessd's settings -> the sandbox manager, with the driver
 * chosen (and checked) once so a misconfigured host fails at start rather
 * than on the first CreateSandbox. */
#include "sandbox_service.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "store.h"

int hs_sandbox_service_open(hs_sandbox_mgr **out, const hs_config *c, hs_store *store,
			    hs_tenancy *tenancy, hs_error *err)
{
	hs_sandbox_config sc;
	char runtime_root[HS_CFG_STR + 16];
	hs_sandbox_config_init(&sc);
	int n = snprintf(runtime_root, sizeof(runtime_root), "%s/sandboxes", c->data_dir);
	if (n < 0 || (size_t)n >= sizeof(runtime_root))
		return hs_error_set(err, HS_INVALID, "data-dir: path too long");
	if (runtime_root[0] != '/')
		return hs_error_set(err, HS_INVALID, "sandboxes need an absolute --data-dir");
	sc.runtime_root = runtime_root; /* copied by the manager */
	sc.tenancy = tenancy;
	sc.sandbox_user = c->sandbox_uid;
	sc.sandbox_group = c->sandbox_gid;
	sc.allow_same_uid = c->sandbox_allow_same_uid != 0;
	sc.rootfs_dir = c->sandbox_rootfs;
	sc.init_bin = c->sandbox_init_bin;
	sc.cgroup_root = c->sandbox_cgroup_root;
	sc.pids_max = (unsigned)c->sandbox_pids_max;
	sc.log_streams_per_user = (unsigned)c->sandbox_log_streams_per_user;
	sc.exec_per_sandbox = (unsigned)c->sandbox_exec_per_sandbox;
	sc.exec_per_user = (unsigned)c->sandbox_exec_per_user;
	sc.bwrap_bin = c->bwrap_bin;
	sc.firecracker_bin = c->firecracker_bin;
	sc.jailer_bin = c->jailer_bin;
	sc.chroot_base_dir = c->chroot_base_dir;
	sc.jailer_uid = (uid_t)c->jailer_uid;
	sc.jailer_gid = (gid_t)c->jailer_gid;
	sc.kernel_image = c->kernel_image[0] ? c->kernel_image : NULL;
	sc.rootfs_image = c->rootfs_image[0] ? c->rootfs_image : NULL;
	sc.max_vcpu = (unsigned)c->max_vcpus;
	sc.max_mem_mib = (unsigned)c->max_mem_mib;
	sc.max_per_user = (unsigned)c->sandboxes_per_user;
	sc.max_ttl_seconds = c->sandbox_ttl_max_s;
	sc.skip_kvm_check = c->firecracker_skip_kvm_check != 0;
	/* Many nodes share a PostgreSQL store: each runs (and re-adopts) its
	 * own sandboxes. SQLite has one node: "" (every row). */
	sc.node_id = strcmp(hs_store_backend(store), "postgres") == 0 ? c->node_id : "";
	/* A node dead for one more lease length (a restart within it re-adopts
	 * its sandboxes) has lost them: a survivor takes the rows over. */
	sc.node_lost_ms = sc.node_id[0] != '\0' ? c->task_lease_ms : 0;

	if (c->sandbox_allow_same_uid)
		hs_log(HS_LOG_WARN, "sandbox",
		       "sandbox-allow-same-uid is set: sandboxes may run as harnessd's own uid (development only)");
	hs_error perr = { 0 };
	const char *driver = c->sandbox_driver;
	if (strcmp(driver, "auto") == 0) {
		if (hs_sandbox_driver_probe(&sc, "firecracker", &perr) == HS_OK) {
			driver = "firecracker";
		} else {
			hs_log(HS_LOG_INFO, "sandbox", "firecracker unusable here; using bwrap",
			       HS_LS("reason", perr.msg));
			driver = "bwrap";
		}
	}
	hs_error_clear(&perr);
	bool configured = strcmp(c->sandbox_driver, "auto") != 0;
	int prc = hs_sandbox_driver_probe(&sc, driver, &perr);
	if (prc != HS_OK && !configured) {
		/* auto on a host where nothing runs (a container without user
		 * namespaces): the other services stay up; starting a sandbox
		 * fails with the reason and readiness reports SandboxService. */
		hs_log(HS_LOG_WARN, "sandbox", "no sandbox driver can run here",
		       HS_LS("driver", driver), HS_LS("reason", perr.msg));
	} else if (prc != HS_OK) {
		const char *hint = strcmp(driver, "firecracker") == 0
					   ? " (use --sandbox-driver bwrap or auto on hosts without KVM)"
					   : " (install bubblewrap and allow unprivileged user namespaces)";
		return hs_error_set(err, HS_UNAVAILABLE, "sandbox driver %s cannot run here: %s%s",
				    driver, perr.msg, hint);
	}
	if (sc.skip_kvm_check && strcmp(driver, "firecracker") == 0)
		hs_log(HS_LOG_WARN, "sandbox",
		       "firecracker-skip-kvm-check is set: for tests and development only");
	sc.default_driver = driver;
	hs_sandbox_mgr *mgr = NULL;
	int rc = hs_sandbox_mgr_new(&mgr, &sc, store, err);
	if (rc != HS_OK)
		return rc;
	/* The jailer drops to an unprivileged uid: the configured one or the
	 * sandbox account; with neither, fail now rather than at a start. */
	if (c->jailer_bin[0] != '\0' && (c->jailer_uid == 0 || c->jailer_gid == 0)) {
		hs_sandbox_host h;
		hs_error ierr = { 0 };
		if (hs_sandbox_mgr_identity(mgr, &h, &ierr) != HS_OK) {
			hs_sandbox_mgr_free(mgr);
			return hs_error_set(err, HS_INVALID,
					    "jailer-uid/jailer-gid: --jailer-bin needs an unprivileged uid and gid (%s)",
					    ierr.msg);
		}
	}
	*out = mgr;
	if (rc == HS_OK)
		hs_log(HS_LOG_INFO, "sandbox", "sandbox driver selected", HS_LS("driver", driver),
		       HS_LS("configured", c->sandbox_driver),
		       HS_LS("runtime_root", runtime_root));
	return rc;
}
