/* harnessd configuration: one table (name, type, default, bounds, env, help)
 * that parses flags, HARNESS_* environment variables and a config file, and
 * produces --help. Precedence: defaults < config file < environment < flags. */
#ifndef HS_HARNESSD_CONFIG_H
#define HS_HARNESSD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

#define HS_CFG_STR 512

typedef struct hs_config {
	char listen[HS_CFG_STR];
	char data_dir[HS_CFG_STR];
	char store[HS_CFG_STR];                /* --store: "", sqlite:<path>, postgres://...; secret */
	char config_file[HS_CFG_STR];
	char log_level[16];
	int64_t shutdown_grace_ms;
	int64_t max_message_bytes;
	int64_t cq_threads;
	int64_t workers;
	int64_t max_concurrent_streams;
	/* rpc limits and fairness (server/rpc/rpc.h) */
	int64_t long_workers;
	int64_t heartbeat_workers;
	int64_t user_concurrency;
	int64_t user_max_calls;
	int64_t max_message_depth;
	char workspace_root[HS_CFG_STR];
	/* auth */
	char auth_backend[16];
	char user_service_url[HS_CFG_STR];
	char user_service_api_key[HS_CFG_STR]; /* secret: never logged */
	char jwt_secret[HS_CFG_STR];           /* secret: never logged */
	char jwt_public_key[HS_CFG_STR];
	char jwt_alg[8];
	char jwt_issuer[HS_CFG_STR];
	char jwt_audience[HS_CFG_STR];
	int64_t access_token_ttl_s;
	int64_t refresh_token_ttl_s;
	char trusted_proxies[HS_CFG_STR];
	char gateway_secret_file[HS_CFG_STR];
	int64_t login_free_failures;
	int64_t login_backoff_ms;
	int64_t login_backoff_max_ms;
	int64_t password_hash_concurrency;
	int64_t password_hash_wait_ms;
	/* sandboxes */
	char sandbox_driver[16];
	char firecracker_bin[HS_CFG_STR];
	char jailer_bin[HS_CFG_STR];
	char kernel_image[HS_CFG_STR];
	char rootfs_image[HS_CFG_STR];
	int64_t max_vcpus;
	int64_t max_mem_mib;
	int64_t sandboxes_per_user;
	char bwrap_bin[HS_CFG_STR];
	char chroot_base_dir[HS_CFG_STR];
	int64_t jailer_uid;
	int64_t jailer_gid;
	int64_t sandbox_ttl_max_s;
	int64_t firecracker_skip_kvm_check; /* 0/1: tests and development only */
	char sandbox_uid[64];               /* uid or account name; "" = harness-sandbox */
	char sandbox_gid[64];               /* gid or group name; "" = the account's group */
	int64_t sandbox_allow_same_uid;     /* 0/1: development only */
	char sandbox_rootfs[HS_CFG_STR];    /* bwrap: root filesystem dir; "" = the host's */
	char sandbox_init_bin[HS_CFG_STR];  /* "" = harness-sandbox-init beside harnessd */
	char sandbox_cgroup_root[HS_CFG_STR]; /* "" = auto, "none", or a delegated v2 dir */
	int64_t sandbox_pids_max;
	int64_t sandbox_log_streams_per_user; /* GetSandboxLogs streams per user */
	int64_t sandbox_exec_per_sandbox;     /* ExecSandbox commands per sandbox */
	int64_t sandbox_exec_per_user;        /* ... per user */
	/* checkpoints */
	char checkpoint_remote[HS_CFG_STR];
	int64_t checkpoint_push_timeout_ms;
	/* checkpoint quotas for users (admins exempt); 0 = unlimited */
	int64_t checkpoint_max_per_task;
	int64_t checkpoint_max_external_state;
	int64_t checkpoint_max_repo_bytes;
	int64_t checkpoint_max_workspace_bytes;
	int64_t checkpoint_max_workspace_files;
	/* checkpoint change tracking and full scans */
	int64_t checkpoint_watch_workspaces; /* 0: off */
	int64_t checkpoint_watch_dirs;
	int64_t checkpoint_watch_changes;
	int64_t checkpoint_scan_threads;     /* 0: auto */
	/* tasks */
	char webhook_url[HS_CFG_STR];
	int64_t max_tasks_per_user;
	/* many nodes on one PostgreSQL store (server/tasks/lease.c) */
	char node_id[128];              /* "" = the hostname */
	char advertise_address[HS_CFG_STR]; /* "" = listen host + bound port */
	int64_t task_lease_ms;
	/* TLS (server/rpc/tls.c) and service identities (server/auth) */
	char tls_cert[HS_CFG_STR];
	char tls_key[HS_CFG_STR];
	char tls_client_ca[HS_CFG_STR];
	char tls_client_auth[16];
	char tls_client_identities[4096];
	char tls_peer_ca[HS_CFG_STR]; /* verifies other nodes when forwarding (rpc/forward.c) */
	char health_listen[HS_CFG_STR];
	char jwt_jwks_url[HS_CFG_STR];
	/* observability */
	char metrics_listen[HS_CFG_STR];
	bool show_help, show_version;
} hs_config;

/* Fills cfg from defaults, the config file (--config / HARNESS_CONFIG), the
 * environment and argv. Validation errors name the setting and its source. */
int hs_config_load(hs_config *cfg, int argc, char **argv, hs_error *err);

void hs_config_print_help(FILE *out, const char *prog);

#endif
