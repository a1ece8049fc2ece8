/* Start-up glue: harnessd's settings -> the sandbox manager, with the driver
 * chosen (and checked) once so a misconfigured host fails at start rather
 * than on the first CreateSandbox. */
#include "sandbox_service.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

int hs_sandbox_service_open(hs_sandbox_mgr **out, const hs_config *c, hs_store *store,
			    hs_error *err)
{
	hs_sandbox_config sc;
	char runtime_root[HS_CFG_STR + 16];
	hs_sandbox_config_init(&sc);
	int n = snprintf(runtime_root, sizeof(runtime_root), "%s/sandboxes", c->data_dir);
	if (n < 0 || (size_t)n >= sizeof(runtime_root))
		return hs_error_set(err, HS_INVALID, "data-dir: path too long");
	if (runtime_root[0] != '/' || c->workspace_root[0] != '/')
		return hs_error_set(err, HS_INVALID,
				    "sandboxes need an absolute --data-dir and --workspace-root");
	sc.runtime_root = runtime_root; /* copied by the manager */
	sc.workspace_root = c->workspace_root;
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

	if (c->jailer_bin[0] != '\0' && (c->jailer_uid == 0 || c->jailer_gid == 0))
		return hs_error_set(err, HS_INVALID,
				    "jailer-uid/jailer-gid: set a dedicated unprivileged uid and gid when --jailer-bin is used");

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
	int rc = hs_sandbox_mgr_new(out, &sc, store, err);
	if (rc == HS_OK)
		hs_log(HS_LOG_INFO, "sandbox", "sandbox driver selected", HS_LS("driver", driver),
		       HS_LS("configured", c->sandbox_driver),
		       HS_LS("runtime_root", runtime_root));
	return rc;
}
