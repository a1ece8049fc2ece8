/* The harnessd settings table and its three sources. */
#include "harnessd_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { T_STR, T_INT, T_BOOL } opt_type;

typedef struct opt {
	const char *name; /* flag without "--"; config-file key */
	const char *env;  /* environment variable */
	opt_type type;
	size_t off, size; /* field in hs_config */
	const char *def;
	int64_t min, max;    /* T_INT bounds */
	const char *choices; /* T_STR: "a|b|c" or NULL */
	bool secret;         /* never echoed in errors */
	const char *help;
} opt;

#define S(f) T_STR, offsetof(hs_config, f), sizeof(((hs_config *)0)->f)
#define I(f) T_INT, offsetof(hs_config, f), sizeof(int64_t)

static const opt opts[] = {
	{ "listen", "HARNESS_LISTEN", S(listen), "127.0.0.1:50051", 0, 0, NULL, false,
	  "gRPC listen address (host:port; port 0 picks a free one)" },
	{ "data-dir", "HARNESS_DATA_DIR", S(data_dir), "harness-data", 0, 0, NULL, false,
	  "directory for the SQLite store, checkpoints and sandbox state" },
	{ "store", "HARNESS_STORE", S(store), "", 0, 0, NULL, true,
	  "the store: empty = SQLite in <data-dir>/harness.db, sqlite:<path>, or postgres://... "
	  "(a libpq URI, shared by several nodes; it may hold a password: prefer the environment)" },
	{ "config", "HARNESS_CONFIG", S(config_file), "", 0, 0, NULL, false,
	  "config file: one 'name = value' per line, names as the flags" },
	{ "log-level", "HARNESS_LOG_LEVEL", S(log_level), "info", 0, 0, "debug|info|warn|error|off",
	  false, "JSON-lines log level on stderr" },
	{ "shutdown-grace-ms", "HARNESS_SHUTDOWN_GRACE_MS", I(shutdown_grace_ms), "25000", 0,
	  3600000, NULL, false, "on SIGTERM, how long in-flight calls may take before they are cancelled" },
	{ "max-message-bytes", "HARNESS_MAX_MESSAGE_BYTES", I(max_message_bytes), "4194304", 1024,
	  INT32_MAX, NULL, false, "largest gRPC message received or sent" },
	{ "cq-threads", "HARNESS_CQ_THREADS", I(cq_threads), "0", 0, 64, NULL, false,
	  "completion-queue polling threads; cheap handlers run on them (0 = one per CPU, at least 2)" },
	{ "workers", "HARNESS_WORKERS", I(workers), "0", 0, 1024, NULL, false,
	  "worker threads for handlers that block (disk, network) (0 = 4 per CPU, at least 8)" },
	{ "max-concurrent-streams", "HARNESS_MAX_CONCURRENT_STREAMS", I(max_concurrent_streams), "0",
	  0, 1000000, NULL, false, "HTTP/2 streams per connection (0 = gRPC default)" },
	{ "long-workers", "HARNESS_LONG_WORKERS", I(long_workers), "4", 1, 1024, NULL, false,
	  "worker threads for long operations (DestroySandbox's grace, restores)" },
	{ "heartbeat-workers", "HARNESS_HEARTBEAT_WORKERS", I(heartbeat_workers), "0", 0, 1024, NULL,
	  false, "worker threads reserved for heartbeats that change a task's state (a busy server "
	  "never starves them; plain heartbeats need none) (0 = 2 per CPU, at least 4)" },
	{ "user-concurrency", "HARNESS_USER_CONCURRENCY", I(user_concurrency), "0", 0, 1024, NULL,
	  false, "one user's calls running at once in the main or long-operation lane (0 = half its threads)" },
	{ "user-max-calls", "HARNESS_USER_MAX_CALLS", I(user_max_calls), "256", 1, 1000000, NULL, false,
	  "one user's calls waiting or running in one lane; more are RESOURCE_EXHAUSTED" },
	{ "max-message-depth", "HARNESS_MAX_MESSAGE_DEPTH", I(max_message_depth), "100", 1, 256, NULL,
	  false, "deepest nesting of messages in a request (e.g. a Struct); deeper is INVALID_ARGUMENT" },
	{ "workspace-root", "HARNESS_WORKSPACE_ROOT", S(workspace_root), "", 0, 0, NULL, false,
	  "task workspaces live under this directory (default <data-dir>/workspaces)" },
	{ "auth-backend", "HARNESS_AUTH_BACKEND", S(auth_backend), "local", 0, 0, "local|upstream",
	  false, "users in the embedded store, or the user service at --user-service-url" },
	{ "user-service-url", "USER_SERVICE_URL", S(user_service_url), "", 0, 0, NULL, false,
	  "base URL of the user service (upstream backend)" },
	{ "user-service-api-key", "USER_SERVICE_API_KEY", S(user_service_api_key), "", 0, 0, NULL,
	  true, "X-API-Key sent to the user service" },
	{ "jwt-secret", "HARNESS_JWT_SECRET", S(jwt_secret), "", 0, 0, NULL, true,
	  "HS256 key for access tokens (upstream: the user service's key; local: generated and kept in the data dir if empty)" },
	{ "jwt-public-key", "HARNESS_JWT_PUBLIC_KEY", S(jwt_public_key), "", 0, 0, NULL, false,
	  "PEM public key file to verify RS256/ES256 access tokens (upstream backend)" },
	{ "jwt-alg", "HARNESS_JWT_ALG", S(jwt_alg), "", 0, 0, "|HS256|RS256|ES256", false,
	  "pinned JWT algorithm (default: HS256 with --jwt-secret, else from the key type)" },
	{ "jwt-issuer", "HARNESS_JWT_ISSUER", S(jwt_issuer), "", 0, 0, NULL, false,
	  "required iss claim (empty: not checked)" },
	{ "jwt-audience", "HARNESS_JWT_AUDIENCE", S(jwt_audience), "", 0, 0, NULL, false,
	  "required aud claim (empty: not checked)" },
	{ "access-token-ttl", "HARNESS_ACCESS_TOKEN_TTL", I(access_token_ttl_s), "900", 30, 86400,
	  NULL, false, "local backend: access token lifetime in seconds" },
	{ "refresh-token-ttl", "HARNESS_REFRESH_TOKEN_TTL", I(refresh_token_ttl_s), "604800", 60,
	  31536000, NULL, false, "local backend: refresh token lifetime in seconds" },
	{ "trusted-proxies", "HARNESS_TRUSTED_PROXIES", S(trusted_proxies), "", 0, 0, NULL, false,
	  "CIDR,... of proxies whose x-forwarded-for is believed for login throttling (default none; harness-gateway is recognised by the gateway key instead)" },
	{ "gateway-secret-file", "HARNESS_GATEWAY_SECRET_FILE", S(gateway_secret_file), "", 0, 0,
	  NULL, false, "key harness-gateway signs x-forwarded-for with (default <data-dir>/gateway.key, created 0640; \"none\": no gateway)" },
	{ "login-free-failures", "HARNESS_LOGIN_FREE_FAILURES", I(login_free_failures), "5", 1, 1000,
	  NULL, false, "failed logins per (account, client address) before delays start" },
	{ "login-backoff-ms", "HARNESS_LOGIN_BACKOFF_MS", I(login_backoff_ms), "1000", 1, 3600000,
	  NULL, false, "first login delay after the free failures; doubles with each further failure" },
	{ "login-backoff-max-ms", "HARNESS_LOGIN_BACKOFF_MAX_MS", I(login_backoff_max_ms), "900000", 1,
	  86400000, NULL, false, "longest login delay" },
	{ "password-hash-concurrency", "HARNESS_PASSWORD_HASH_CONCURRENCY",
	  I(password_hash_concurrency), "4", 1, 256, NULL, false,
	  "argon2id hashes running at once (64 MiB each); more wait, then RESOURCE_EXHAUSTED" },
	{ "password-hash-wait-ms", "HARNESS_PASSWORD_HASH_WAIT_MS", I(password_hash_wait_ms), "1000",
	  0, 60000, NULL, false, "how long a login waits for a free hash slot" },
	{ "sandbox-driver", "HARNESS_SANDBOX_DRIVER", S(sandbox_driver), "auto", 0, 0,
	  "auto|firecracker|bwrap", false, "auto: firecracker where /dev/kvm and the binary exist, else bwrap" },
	{ "firecracker-bin", "HARNESS_FIRECRACKER_BIN", S(firecracker_bin), "/usr/local/bin/firecracker",
	  0, 0, NULL, false, "firecracker binary" },
	{ "jailer-bin", "HARNESS_JAILER_BIN", S(jailer_bin), "", 0, 0, NULL, false,
	  "jailer binary (empty: start firecracker directly, for development)" },
	{ "kernel-image", "HARNESS_KERNEL_IMAGE", S(kernel_image), "", 0, 0, NULL, false,
	  "default guest kernel for CreateSandbox" },
	{ "rootfs-image", "HARNESS_ROOTFS_IMAGE", S(rootfs_image), "", 0, 0, NULL, false,
	  "default root filesystem for CreateSandbox" },
	{ "max-vcpus", "HARNESS_MAX_VCPUS", I(max_vcpus), "8", 1, 32, NULL, false,
	  "largest vcpu_count a sandbox may ask for" },
	{ "max-mem-mib", "HARNESS_MAX_MEM_MIB", I(max_mem_mib), "8192", 128, 1048576, NULL, false,
	  "largest mem_size_mib a sandbox may ask for" },
	{ "sandboxes-per-user", "HARNESS_SANDBOXES_PER_USER", I(sandboxes_per_user), "20", 1, 100000,
	  NULL, false, "live sandboxes one user may have" },
	{ "bwrap-bin", "HARNESS_BWRAP_BIN", S(bwrap_bin), "/usr/bin/bwrap", 0, 0, NULL, false,
	  "bubblewrap binary (bwrap driver)" },
	{ "chroot-base-dir", "HARNESS_CHROOT_BASE_DIR", S(chroot_base_dir), "/srv/jailer", 0, 0,
	  NULL, false, "jailer --chroot-base-dir" },
	{ "jailer-uid", "HARNESS_JAILER_UID", I(jailer_uid), "0", 0, INT32_MAX, NULL, false,
	  "jailer --uid (0: the sandbox account's uid)" },
	{ "jailer-gid", "HARNESS_JAILER_GID", I(jailer_gid), "0", 0, INT32_MAX, NULL, false,
	  "jailer --gid (0: the sandbox account's gid)" },
	{ "sandbox-ttl-max", "HARNESS_SANDBOX_TTL_MAX", I(sandbox_ttl_max_s), "0", 0, 315360000,
	  NULL, false, "largest ttl_seconds a sandbox may ask for (0 = unbounded)" },
	{ "firecracker-skip-kvm-check", "HARNESS_FIRECRACKER_SKIP_KVM_CHECK",
	  I(firecracker_skip_kvm_check), "0", 0, 1, NULL, false,
	  "1: accept the firecracker driver without /dev/kvm (tests/development only, e.g. with a Firecracker API emulator)" },
	{ "sandbox-uid", "HARNESS_SANDBOX_UID", S(sandbox_uid), "", 0, 0, NULL, false,
	  "uid or account name sandboxes run as (bwrap processes, the jailer's default; empty: the account harness-sandbox)" },
	{ "sandbox-gid", "HARNESS_SANDBOX_GID", S(sandbox_gid), "", 0, 0, NULL, false,
	  "gid or group name sandboxes run as (empty: the sandbox account's group)" },
	{ "sandbox-allow-same-uid", "HARNESS_SANDBOX_ALLOW_SAME_UID", I(sandbox_allow_same_uid), "0",
	  0, 1, NULL, false,
	  "1: let sandboxes run as harnessd's own uid (development only: they could then read harnessd's files)" },
	{ "sandbox-rootfs", "HARNESS_SANDBOX_ROOTFS", S(sandbox_rootfs), "", 0, 0, NULL, false,
	  "bwrap: a root filesystem directory (e.g. an unpacked distro) whose /usr, /lib*, /bin, /sbin and /etc files sandboxes see instead of the host's" },
	{ "sandbox-init-bin", "HARNESS_SANDBOX_INIT_BIN", S(sandbox_init_bin), "", 0, 0, NULL, false,
	  "harness-sandbox-init (empty: the one beside harnessd)" },
	{ "sandbox-cgroup-root", "HARNESS_SANDBOX_CGROUP_ROOT", S(sandbox_cgroup_root), "", 0, 0, NULL,
	  false, "bwrap: a delegated cgroup v2 directory for the sandboxes' cgroups (empty: harnessd's own cgroup; none: no cgroups)" },
	{ "sandbox-pids-max", "HARNESS_SANDBOX_PIDS_MAX", I(sandbox_pids_max), "1024", 8, 4194304,
	  NULL, false, "bwrap: pids.max of each sandbox (where cgroups allow)" },
	{ "sandbox-log-streams-per-user", "HARNESS_SANDBOX_LOG_STREAMS_PER_USER",
	  I(sandbox_log_streams_per_user), "8", 1, 10000, NULL, false,
	  "GetSandboxLogs streams one user may have open" },
	{ "sandbox-exec-per-sandbox", "HARNESS_SANDBOX_EXEC_PER_SANDBOX", I(sandbox_exec_per_sandbox),
	  "8", 1, 64, NULL, false, "ExecSandbox commands running at once in one sandbox (at most 64: what its init serves)" },
	{ "sandbox-exec-per-user", "HARNESS_SANDBOX_EXEC_PER_USER", I(sandbox_exec_per_user), "16", 1,
	  10000, NULL, false, "ExecSandbox commands one user may run at once" },
	{ "checkpoint-remote", "HARNESS_CHECKPOINT_REMOTE", S(checkpoint_remote), "", 0, 0, NULL,
	  false, "git remote URL checkpoint refs are pushed to after each create (empty: none)" },
	{ "checkpoint-push-timeout-ms", "HARNESS_CHECKPOINT_PUSH_TIMEOUT_MS",
	  I(checkpoint_push_timeout_ms), "10000", 100, 3600000, NULL, false,
	  "how long a CreateCheckpoint waits for its push (it then goes on in the background)" },
	{ "checkpoint-max-per-task", "HARNESS_CHECKPOINT_MAX_PER_TASK", I(checkpoint_max_per_task),
	  "10000", 0, INT64_MAX, NULL, false,
	  "quota: checkpoints one task may hold (users; admins exempt; 0 = unlimited)" },
	{ "checkpoint-max-external-state", "HARNESS_CHECKPOINT_MAX_EXTERNAL_STATE",
	  I(checkpoint_max_external_state), "262144", 0, 1048576, NULL, false,
	  "quota: bytes of one checkpoint's external_state (users; at most 1 MiB for anyone; 0 = only that)" },
	{ "checkpoint-max-repo-bytes", "HARNESS_CHECKPOINT_MAX_REPO_BYTES",
	  I(checkpoint_max_repo_bytes), "2147483648", 0, INT64_MAX, NULL, false,
	  "quota: bytes of one task's checkpoint repository (users; admins exempt; 0 = unlimited)" },
	{ "checkpoint-max-workspace-bytes", "HARNESS_CHECKPOINT_MAX_WORKSPACE_BYTES",
	  I(checkpoint_max_workspace_bytes), "8589934592", 0, INT64_MAX, NULL, false,
	  "quota: bytes of files one checkpoint may scan (users; admins exempt; 0 = unlimited)" },
	{ "checkpoint-max-workspace-files", "HARNESS_CHECKPOINT_MAX_WORKSPACE_FILES",
	  I(checkpoint_max_workspace_files), "500000", 0, INT64_MAX, NULL, false,
	  "quota: files one checkpoint may scan (users; admins exempt; 0 = unlimited)" },
	{ "checkpoint-watch-workspaces", "HARNESS_CHECKPOINT_WATCH_WORKSPACES",
	  I(checkpoint_watch_workspaces), "32", 0, 100000, NULL, false,
	  "change tracking (inotify): workspaces tracked at once, least recently used dropped (0 = off: every checkpoint walks the whole workspace)" },
	{ "checkpoint-watch-dirs", "HARNESS_CHECKPOINT_WATCH_DIRS", I(checkpoint_watch_dirs),
	  "100000", 1, 10000000, NULL, false,
	  "change tracking: directories (inotify watches) per workspace; a larger one is walked whole each time" },
	{ "checkpoint-watch-changes", "HARNESS_CHECKPOINT_WATCH_CHANGES",
	  I(checkpoint_watch_changes), "100000", 1, 10000000, NULL, false,
	  "change tracking: changed paths kept per workspace between checkpoints; beyond, the next one walks the whole workspace" },
	{ "checkpoint-scan-threads", "HARNESS_CHECKPOINT_SCAN_THREADS", I(checkpoint_scan_threads),
	  "0", 0, 16, NULL, false, "threads of a full workspace walk (0 = one per CPU, at most 4)" },
	{ "webhook-url", "HARNESS_WEBHOOK_URL", S(webhook_url), "", 0, 0, NULL, false,
	  "task events are POSTed here as JSON (empty: none)" },
	{ "max-tasks-per-user", "HARNESS_MAX_TASKS_PER_USER", I(max_tasks_per_user), "10000", 1,
	  1000000, NULL, false,
	  "tasks one user may own, terminal ones included (they stay in memory); a new task id "
	  "beyond it is RESOURCE_EXHAUSTED (admins exempt; at most 1,000,000 tasks in all)" },
	{ "node-id", "HARNESS_NODE_ID", S(node_id), "", 0, 0, NULL, false,
	  "this node's id among the harnessd sharing a PostgreSQL store (empty: the hostname; unique per node)" },
	{ "advertise-address", "HARNESS_ADVERTISE_ADDRESS", S(advertise_address), "", 0, 0, NULL,
	  false, "host:port other nodes and clients reach this node's gRPC on (empty: the listen address with the bound port)" },
	{ "task-lease-ms", "HARNESS_TASK_LEASE_MS", I(task_lease_ms), "10000", 300, 3600000, NULL,
	  false, "PostgreSQL store: how long a node's task leases last without renewal (renewed every third of it); a dead node's tasks move after this" },
	{ "tls-cert", "HARNESS_TLS_CERT", S(tls_cert), "", 0, 0, NULL, false,
	  "PEM certificate chain: serve gRPC over TLS (with --tls-key); re-read when the file changes" },
	{ "tls-key", "HARNESS_TLS_KEY", S(tls_key), "", 0, 0, NULL, false,
	  "PEM private key of --tls-cert (unencrypted; keep it 0600)" },
	{ "tls-client-ca", "HARNESS_TLS_CLIENT_CA", S(tls_client_ca), "", 0, 0, NULL, false,
	  "PEM CA bundle client certificates must chain to (mutual TLS; empty: no client certificates)" },
	{ "tls-client-auth", "HARNESS_TLS_CLIENT_AUTH", S(tls_client_auth), "require", 0, 0,
	  "request|require", false,
	  "with --tls-client-ca: require a client certificate, or only verify one when presented" },
	{ "tls-client-identities", "HARNESS_TLS_CLIENT_IDENTITIES", S(tls_client_identities), "", 0,
	  0, NULL, false,
	  "client certificate names that act as an API key: cn:NAME=KEY_ID,san:NAME=KEY_ID,... (needs --tls-client-ca)" },
	{ "tls-peer-ca", "HARNESS_TLS_PEER_CA", S(tls_peer_ca), "", 0, 0, NULL, false,
	  "with --tls-cert: PEM CA bundle other nodes' certificates must chain to when a call is forwarded to them (empty: the system roots; never --tls-client-ca, which vouches for callers, not nodes)" },
	{ "health-listen", "HARNESS_HEALTH_LISTEN", S(health_listen), "", 0, 0, NULL, false,
	  "plaintext host:port serving only grpc.health.v1 (for kubelet gRPC probes, which cannot speak TLS; empty: off)" },
	{ "jwt-jwks-url", "HARNESS_JWT_JWKS_URL", S(jwt_jwks_url), "", 0, 0, NULL, false,
	  "upstream backend: verify RS256/ES256 access tokens with the user service's JWKS (fetched, cached, refreshed on an unknown kid)" },
	{ "metrics-listen", "HARNESS_METRICS_LISTEN", S(metrics_listen), "127.0.0.1:9090", 0, 0,
	  NULL, false,
	  "Prometheus /metrics, /livez and /readyz over HTTP on host:port (empty: off; port 0 "
	  "picks one)" },
};

static const opt *find_opt(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
			return &opts[i];
	return NULL;
}

static bool in_choices(const char *choices, const char *v)
{
	size_t n = strlen(v);
	for (const char *p = choices;;) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && strncmp(p, v, n) == 0)
			return true;
		if (bar == NULL)
			return false;
		p = bar + 1;
	}
}

static int set_opt(hs_config *cfg, const opt *o, const char *value, const char *source,
		   hs_error *err)
{
	char *field = (char *)cfg + o->off;
	const char *shown = o->secret ? "(secret)" : value;
	if (o->type == T_STR) {
		if (strlen(value) >= o->size)
			return hs_error_set(err, HS_INVALID, "%s (%s): longer than %zu bytes", o->name,
					    source, o->size - 1);
		if (o->choices != NULL && !in_choices(o->choices, value))
			return hs_error_set(err, HS_INVALID, "%s (%s): '%s' is not one of %s", o->name,
					    source, shown, o->choices);
		memcpy(field, value, strlen(value) + 1);
		return HS_OK;
	}
	char *end = NULL;
	errno = 0;
	long long v = strtoll(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0')
		return hs_error_set(err, HS_INVALID, "%s (%s): '%s' is not an integer", o->name, source,
				    shown);
	if (v < o->min || v > o->max)
		return hs_error_set(err, HS_INVALID, "%s (%s): %lld is outside [%lld, %lld]", o->name,
				    source, v, (long long)o->min, (long long)o->max);
	memcpy(field, &(int64_t){ v }, sizeof(int64_t));
	if ((cfg->tls_cert[0] != '\0') != (cfg->tls_key[0] != '\0'))
		return hs_error_set(err, HS_INVALID, "tls-cert and tls-key: give both (or neither)");
	if (cfg->tls_client_ca[0] != '\0' && cfg->tls_cert[0] == '\0')
		return hs_error_set(err, HS_INVALID, "tls-client-ca: needs --tls-cert and --tls-key");
	if (cfg->tls_client_identities[0] != '\0' && cfg->tls_client_ca[0] == '\0')
		return hs_error_set(err, HS_INVALID, "tls-client-identities: needs --tls-client-ca");
	if (cfg->tls_peer_ca[0] != '\0' && cfg->tls_cert[0] == '\0')
		return hs_error_set(err, HS_INVALID, "tls-peer-ca: needs --tls-cert and --tls-key");
	return HS_OK;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

static int load_file(hs_config *cfg, const char *path, hs_error *err)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return hs_error_set(err, HS_INVALID, "config: cannot open %s: %s", path, strerror(errno));
	char line[2048];
	int lineno = 0, rc = HS_OK;
	while (rc == HS_OK && fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			rc = hs_error_set(err, HS_INVALID, "%s:%d: line too long", path, lineno);
			break;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strpbrk(s, "=:");
		if (eq == NULL) {
			rc = hs_error_set(err, HS_INVALID, "%s:%d: expected 'name = value'", path, lineno);
			break;
		}
		*eq = '\0';
		char *key = trim(s), *val = trim(eq + 1);
		size_t vl = strlen(val);
		if (vl >= 2 && ((val[0] == '"' && val[vl - 1] == '"') || (val[0] == '\'' && val[vl - 1] == '\''))) {
			val[vl - 1] = '\0';
			val++;
		}
		const opt *o = find_opt(key, strlen(key));
		if (o == NULL || strcmp(o->name, "config") == 0) {
			rc = hs_error_set(err, HS_INVALID, "%s:%d: unknown setting '%s'", path, lineno, key);
			break;
		}
		char src[600];
		snprintf(src, sizeof(src), "%s:%d", path, lineno);
		rc = set_opt(cfg, o, val, src, err);
	}
	fclose(f);
	return rc;
}

void hs_config_print_help(FILE *out, const char *prog)
{
	fprintf(out,
		"Usage: %s [options]\n\n"
		"harnessd: the Harness control plane (gRPC). Serves AuthService, SandboxService,\n"
		"CheckpointService, HealthService, grpc.health.v1 and server reflection.\n\n"
		"Options (each also as the environment variable shown; precedence: defaults <\n"
		"--config file < environment < flags):\n",
		prog);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		const opt *o = &opts[i];
		char flag[64];
		snprintf(flag, sizeof(flag), "--%s %s", o->name, o->type == T_INT ? "N" : "VALUE");
		fprintf(out, "  %-34s %s\n  %-34s env %s", flag, o->help, "", o->env);
		if (o->def[0] != '\0')
			fprintf(out, ", default %s", o->def);
		if (o->choices != NULL)
			fprintf(out, ", one of %s", o->choices);
		fprintf(out, "\n");
	}
	fprintf(out, "  %-34s this help\n  %-34s print the version\n", "--help, -h", "--version");
}

int hs_config_load(hs_config *cfg, int argc, char **argv, hs_error *err)
{
	memset(cfg, 0, sizeof(*cfg));
	int rc;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if ((rc = set_opt(cfg, &opts[i], opts[i].def, "default", err)) != HS_OK)
			return rc;

	/* The config file's path comes from the environment or the flags. */
	const char *file = getenv("HARNESS_CONFIG");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			file = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			file = argv[i] + 9;
	}
	if (file != NULL && file[0] != '\0') {
		if ((rc = load_file(cfg, file, err)) != HS_OK)
			return rc;
		if ((rc = set_opt(cfg, find_opt("config", 6), file, "flag", err)) != HS_OK)
			return rc;
	}

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		const char *v = getenv(opts[i].env);
		if (v != NULL && (rc = set_opt(cfg, &opts[i], v, opts[i].env, err)) != HS_OK)
			return rc;
	}

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			cfg->show_help = true;
			continue;
		}
		if (strcmp(a, "--version") == 0) {
			cfg->show_version = true;
			continue;
		}
		if (strncmp(a, "--", 2) != 0)
			return hs_error_set(err, HS_INVALID, "unexpected argument '%s' (see --help)", a);
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const opt *o = find_opt(name, len);
		if (o == NULL)
			return hs_error_set(err, HS_INVALID, "unknown option '%.*s' (see --help)",
					    (int)len + 2, a);
		const char *v = eq ? eq + 1 : NULL;
		if (v == NULL) {
			if (i + 1 >= argc)
				return hs_error_set(err, HS_INVALID, "option --%s needs a value", o->name);
			v = argv[++i];
		}
		if ((rc = set_opt(cfg, o, v, "flag", err)) != HS_OK)
			return rc;
	}

	if (cfg->data_dir[0] == '\0')
		return hs_error_set(err, HS_INVALID, "data-dir: must not be empty");
	if (cfg->store[0] != '\0' && strncmp(cfg->store, "sqlite:", 7) != 0 &&
	    strncmp(cfg->store, "postgres://", 11) != 0 && strncmp(cfg->store, "postgresql://", 13) != 0)
		return hs_error_set(err, HS_INVALID,
				    "store: must be empty, sqlite:<path> or postgres://... (value not shown)");
	if (strcmp(cfg->store, "sqlite:") == 0)
		return hs_error_set(err, HS_INVALID, "store: sqlite: needs a file path");
	if (cfg->node_id[0] == '\0' &&
	    gethostname(cfg->node_id, sizeof(cfg->node_id) - 1) != 0)
		snprintf(cfg->node_id, sizeof(cfg->node_id), "harnessd");
	cfg->node_id[sizeof(cfg->node_id) - 1] = '\0';
	for (const char *p = cfg->node_id; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
			return hs_error_set(err, HS_INVALID,
					    "node-id: only letters, digits, '.', '-' and '_'");
	if (cfg->node_id[0] == '\0')
		return hs_error_set(err, HS_INVALID, "node-id: must not be empty");
	if (cfg->workspace_root[0] == '\0') {
		int n = snprintf(cfg->workspace_root, sizeof(cfg->workspace_root), "%s/workspaces",
				 cfg->data_dir);
		if (n < 0 || (size_t)n >= sizeof(cfg->workspace_root))
			return hs_error_set(err, HS_INVALID, "data-dir: path too long");
	}
	if (strcmp(cfg->auth_backend, "upstream") == 0) {
		if (cfg->user_service_url[0] == '\0')
			return hs_error_set(err, HS_INVALID,
					    "auth-backend upstream needs --user-service-url (USER_SERVICE_URL)");
		if (cfg->jwt_secret[0] == '\0' && cfg->jwt_public_key[0] == '\0' &&
		    cfg->jwt_jwks_url[0] == '\0')
			return hs_error_set(err, HS_INVALID,
					    "auth-backend upstream needs --jwt-secret, --jwt-public-key or --jwt-jwks-url to verify the user service's tokens");
	}
	if ((cfg->tls_cert[0] != '\0') != (cfg->tls_key[0] != '\0'))
		return hs_error_set(err, HS_INVALID, "tls-cert and tls-key: give both (or neither)");
	if (cfg->tls_client_ca[0] != '\0' && cfg->tls_cert[0] == '\0')
		return hs_error_set(err, HS_INVALID, "tls-client-ca: needs --tls-cert and --tls-key");
	if (cfg->tls_client_identities[0] != '\0' && cfg->tls_client_ca[0] == '\0')
		return hs_error_set(err, HS_INVALID, "tls-client-identities: needs --tls-client-ca");
	if (cfg->tls_peer_ca[0] != '\0' && cfg->tls_cert[0] == '\0')
		return hs_error_set(err, HS_INVALID, "tls-peer-ca: needs --tls-cert and --tls-key");
	return HS_OK;
}
