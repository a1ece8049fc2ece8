/* CreateSandbox's rules, in one place: every field of a spec is checked
 * here (HS_INVALID naming the field, HS_LIMIT over a configured limit) and
 * the defaults are chosen here; the gRPC adapter only copies fields. */
#include "sandbox_internal.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "ids.h"

#define MAX_VCPU_ANY 32
#define MAX_MEM_ANY 262144
#define MIN_MEM 128
#define DEFAULT_VCPU 1
#define DEFAULT_MEM 256
#define MAX_ENTRYPOINT 256
#define MAX_ARG_BYTES 4096
#define MAX_ENV 128
#define MAX_ENV_NAME 128
#define MAX_TTL_S 315360000 /* ten years: keeps created_at + ttl in range */
#define MAX_BOOT_ARGS 2048
#define MAX_WORKSPACE 1023

/* Variables that change how a program is loaded or a shell starts: refused
 * even though they only ever reach the inside of a sandbox (glibc's
 * "unsecure" list, the dynamic loader's LD_*, bash's startup hooks). */
static const char *const env_denied[] = {
	"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS",
	"GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH",
	"NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR",
	/* set by harnessd itself */
	"HARNESS_SANDBOX_ID", "HARNESS_TASK_ID",
};
static const char *const env_denied_prefix[] = { "LD_", "BASH_FUNC_", "MALLOC_" };

int hs_sandbox__check_argv(const char *field, const char *const *argv, size_t n, hs_error *err)
{
	if (n > MAX_ENTRYPOINT)
		return hs_error_set(err, HS_INVALID, "%s: at most %d elements", field,
				    MAX_ENTRYPOINT);
	for (size_t i = 0; i < n; i++) {
		const char *a = argv[i] ? argv[i] : "";
		if (strlen(a) > MAX_ARG_BYTES || (i == 0 && a[0] == '\0'))
			return hs_error_set(err, HS_INVALID, "%s[%zu]: empty or longer than %d bytes",
					    field, i, MAX_ARG_BYTES);
	}
	return HS_OK;
}

int hs_sandbox__check_env(const hs_label *env, size_t n, hs_error *err)
{
	if (n > MAX_ENV)
		return hs_error_set(err, HS_INVALID, "env: at most %d entries", MAX_ENV);
	for (size_t i = 0; i < n; i++) {
		const char *k = env[i].key ? env[i].key : "";
		size_t len = strlen(k);
		bool ok = len >= 1 && len <= MAX_ENV_NAME &&
			  strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789") ==
				  len &&
			  !(k[0] >= '0' && k[0] <= '9');
		if (!ok)
			return hs_error_set(err, HS_INVALID,
					    "env: name \"%.64s\" must match [A-Za-z_][A-Za-z0-9_]* (at most %d)",
					    k, MAX_ENV_NAME);
		for (size_t j = 0; j < sizeof(env_denied) / sizeof(env_denied[0]); j++)
			if (strcmp(k, env_denied[j]) == 0)
				return hs_error_set(err, HS_INVALID,
						    "env: %s is not allowed (it changes how programs load or start, or is set by harnessd)",
						    k);
		for (size_t j = 0; j < sizeof(env_denied_prefix) / sizeof(env_denied_prefix[0]);
		     j++)
			if (strncmp(k, env_denied_prefix[j], strlen(env_denied_prefix[j])) == 0)
				return hs_error_set(err, HS_INVALID,
						    "env: %s is not allowed (%s* changes how programs load)",
						    k, env_denied_prefix[j]);
		if (env[i].value != NULL && strlen(env[i].value) > MAX_ARG_BYTES)
			return hs_error_set(err, HS_INVALID, "env[%s]: value longer than %d bytes",
					    k, MAX_ARG_BYTES);
		for (size_t j = 0; j < i; j++)
			if (strcmp(env[j].key, k) == 0)
				return hs_error_set(err, HS_INVALID, "env[%s]: given twice", k);
	}
	return HS_OK;
}

static int check_abs_path(const char *field, const char *p, hs_error *err)
{
	if (p != NULL && p[0] != '\0' && (p[0] != '/' || strlen(p) >= PATH_MAX))
		return hs_error_set(err, HS_INVALID, "%s: must be an absolute path", field);
	return HS_OK;
}

static bool valid_mac(const char *m)
{
	if (strlen(m) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		char c = m[i];
		bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
		if (i % 3 == 2 ? c != ':' : !hex)
			return false;
	}
	return true;
}

static bool set(const char *s)
{
	return s != NULL && s[0] != '\0';
}

static int check_nic(const hs_sandbox_spec *spec, hs_error *err)
{
	if (spec->nics_len > 1)
		return hs_error_set(err, HS_INVALID,
				    "network_interfaces: this server attaches at most one (eth0)");
	if (spec->nics_len == 0 && !set(spec->tap_dev))
		return HS_OK;
	if (spec->nics_len == 1 && (spec->iface_id == NULL || strcmp(spec->iface_id, "eth0") != 0))
		return hs_error_set(err, HS_INVALID,
				    "network_interfaces[0].iface_id: must be \"eth0\"");
	const char *tap = spec->tap_dev ? spec->tap_dev : "";
	if (tap[0] == '\0' || strlen(tap) > 15 || strpbrk(tap, "/ \t\n") != NULL)
		return hs_error_set(err, HS_INVALID,
				    "network_interfaces[0].host_dev_name: 1-15 characters, no '/' or spaces");
	if (set(spec->guest_mac) && !valid_mac(spec->guest_mac))
		return hs_error_set(err, HS_INVALID,
				    "network_interfaces[0].guest_mac: must be XX:XX:XX:XX:XX:XX");
	return HS_OK;
}

int hs_sandbox__check_spec(const hs_sandbox_config *cfg, const hs_sandbox_spec *spec,
			   unsigned *vcpu, unsigned *mem, hs_error *err)
{
	int rc;
	if (set(spec->sandbox_id) && (rc = hs_id_check_name("sandbox_id", spec->sandbox_id, err)) != HS_OK)
		return rc;
	if (set(spec->task_id) && (rc = hs_id_check_task("task_id", spec->task_id, err)) != HS_OK)
		return rc;
	if (spec->vcpu_count < 0 || spec->vcpu_count > MAX_VCPU_ANY)
		return hs_error_set(err, HS_INVALID, "vcpu_count: %lld is outside 1..%d (0 = %d)",
				    (long long)spec->vcpu_count, MAX_VCPU_ANY, DEFAULT_VCPU);
	*vcpu = spec->vcpu_count ? (unsigned)spec->vcpu_count : DEFAULT_VCPU;
	if (*vcpu > 1 && *vcpu % 2 != 0)
		return hs_error_set(err, HS_INVALID, "vcpu_count: %u must be 1 or even", *vcpu);
	if (*vcpu > cfg->max_vcpu)
		return hs_error_set(err, HS_LIMIT, "vcpu_count: %u exceeds the limit of %u", *vcpu,
				    cfg->max_vcpu);
	if (spec->mem_size_mib < 0 || spec->mem_size_mib > MAX_MEM_ANY ||
	    (spec->mem_size_mib > 0 && spec->mem_size_mib < MIN_MEM))
		return hs_error_set(err, HS_INVALID, "mem_size_mib: %lld is outside %d..%d (0 = %d)",
				    (long long)spec->mem_size_mib, MIN_MEM, MAX_MEM_ANY, DEFAULT_MEM);
	*mem = spec->mem_size_mib ? (unsigned)spec->mem_size_mib : DEFAULT_MEM;
	if (*mem > cfg->max_mem_mib)
		return hs_error_set(err, HS_LIMIT, "mem_size_mib: %u exceeds the limit of %u", *mem,
				    cfg->max_mem_mib);
	if ((rc = check_abs_path("kernel_image_path", spec->kernel_image_path, err)) != HS_OK ||
	    (rc = check_abs_path("rootfs_path", spec->rootfs_path, err)) != HS_OK)
		return rc;
	if ((rc = hs_sandbox__check_argv("entrypoint", spec->entrypoint, spec->entrypoint_len,
					 err)) != HS_OK)
		return rc;
	if (spec->ttl_seconds < 0 || spec->ttl_seconds > MAX_TTL_S)
		return hs_error_set(err, HS_INVALID, "ttl_seconds: must be 0..%d", MAX_TTL_S);
	if (cfg->max_ttl_seconds > 0 && spec->ttl_seconds > cfg->max_ttl_seconds)
		return hs_error_set(err, HS_LIMIT, "ttl_seconds: %lld exceeds the limit of %lld",
				    (long long)spec->ttl_seconds, (long long)cfg->max_ttl_seconds);
	if ((rc = hs_labels_check("labels", spec->labels, spec->labels_len, err)) != HS_OK)
		return rc;
	if (set(spec->boot_args) && strlen(spec->boot_args) > MAX_BOOT_ARGS)
		return hs_error_set(err, HS_INVALID, "boot_args: longer than %d characters",
				    MAX_BOOT_ARGS);
	if ((rc = check_nic(spec, err)) != HS_OK)
		return rc;
	if (spec->drives_len > 0)
		return hs_error_set(err, HS_INVALID, "drives: additional drives are not supported yet");
	if (spec->rootfs_read_only)
		return hs_error_set(err, HS_INVALID, "rootfs_read_only: not supported yet");
	if (spec->smt)
		return hs_error_set(err, HS_INVALID, "smt: not supported yet");
	if (set(spec->working_dir))
		return hs_error_set(err, HS_INVALID,
				    "working_dir: not supported (the sandbox starts in its workspace)");
	if ((rc = hs_sandbox__check_env(spec->env, spec->env_len, err)) != HS_OK)
		return rc;
	if (set(spec->workspace) && strlen(spec->workspace) > MAX_WORKSPACE)
		return hs_error_set(err, HS_INVALID, "workspace: longer than %d characters",
				    MAX_WORKSPACE);
	return HS_OK;
}
