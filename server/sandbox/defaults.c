/* Sandbox configuration defaults, state names, and choosing a driver. */
#include "driver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void hs_sandbox_config_init(hs_sandbox_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->default_driver = "auto";
	cfg->bwrap_bin = "/usr/bin/bwrap";
	cfg->firecracker_bin = "/usr/bin/firecracker";
	cfg->jailer_bin = "";
	cfg->chroot_base_dir = "/srv/jailer";
	cfg->cgroup_version = 2;
	cfg->boot_args = "console=ttyS0 reboot=k panic=1 pci=off";
	cfg->pids_max = 1024;
	cfg->max_vcpu = 8;
	cfg->max_mem_mib = 8192;
	cfg->max_per_user = 16;
	cfg->api_timeout_ms = 5000;
	cfg->socket_wait_ms = 5000;
	cfg->stop_grace_ms = 5000; /* the proto's DestroySandbox default */
	cfg->log_max_bytes = 8u << 20;
	cfg->reaper_interval_ms = 1000;
	cfg->log_streams_per_user = 8;
	cfg->exec_per_sandbox = 8;
	cfg->exec_per_user = 16;
	cfg->streams_max = 1024;
	cfg->stream_rate = 8u << 20;
	cfg->exec_output_max = 1ll << 30;
}

const char *hs_sandbox_state_name(int state)
{
	switch (state) {
	case HS_SANDBOX_CREATED: return "CREATED";
	case HS_SANDBOX_RUNNING: return "RUNNING";
	case HS_SANDBOX_PAUSED: return "PAUSED";
	case HS_SANDBOX_STOPPED: return "STOPPED";
	case HS_SANDBOX_FAILED: return "FAILED";
	case HS_SANDBOX_DESTROYED: return "DESTROYED";
	}
	return "UNSPECIFIED";
}

const hs_sandbox__driver *hs_sandbox__driver_by_name(const char *name)
{
	if (name != NULL && strcmp(name, "firecracker") == 0)
		return &hs_sandbox__fc_driver;
	if (name != NULL && strcmp(name, "bwrap") == 0)
		return &hs_sandbox__bwrap_driver;
	return NULL;
}

int hs_sandbox_driver_probe(const hs_sandbox_config *cfg, const char *driver, hs_error *err)
{
	if (driver != NULL && strcmp(driver, "firecracker") == 0) {
		FILE *kvm = cfg->skip_kvm_check ? NULL : fopen("/dev/kvm", "re+");
		if (!cfg->skip_kvm_check && kvm == NULL)
			return hs_error_set(err, HS_UNAVAILABLE, "/dev/kvm: %s", strerror(errno));
		if (kvm != NULL)
			fclose(kvm);
		if (access(cfg->firecracker_bin, X_OK) != 0)
			return hs_error_set(err, HS_UNAVAILABLE, "firecracker %s: %s",
					    cfg->firecracker_bin, strerror(errno));
		if (cfg->jailer_bin != NULL && cfg->jailer_bin[0] != '\0' &&
		    access(cfg->jailer_bin, X_OK) != 0)
			return hs_error_set(err, HS_UNAVAILABLE, "jailer %s: %s", cfg->jailer_bin,
					    strerror(errno));
		return HS_OK;
	}
	if (driver != NULL && strcmp(driver, "bwrap") == 0)
		return hs_sandbox__bwrap_probe(cfg, err);
	return hs_error_set(err, HS_INVALID, "driver: unknown \"%s\"", driver ? driver : "");
}

const char *hs_sandbox_driver_resolve(const hs_sandbox_config *cfg, const char *driver)
{
	if (driver == NULL || driver[0] == '\0')
		driver = cfg->default_driver;
	if (driver == NULL || driver[0] == '\0' || strcmp(driver, "auto") == 0)
		return hs_sandbox_driver_probe(cfg, "firecracker", NULL) == HS_OK ? "firecracker"
										   : "bwrap";
	return driver;
}
