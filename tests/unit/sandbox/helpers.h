/* Shared helpers of the sandbox tests: temp dirs, a store, the emulator
 * wrapper, process checks. */
#ifndef HS_TEST_SANDBOX_HELPERS_H
#define HS_TEST_SANDBOX_HELPERS_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "sandbox.h"
#include "store.h"
#include "tenancy.h"

/* The sandbox uid the tests use when they run as root (no account needed). */
#define SBT_SANDBOX_UID 64123

typedef struct sbt_env {
	char dir[256];        /* /tmp/hs-sbt-XXXXXX */
	char runtime[300];
	char workspaces[300];
	char data[300];
	char fc_bin[300];     /* wrapper that execs the emulator */
	char emu_log[300];
	char emu_env[300];    /* the emulator wrapper sources this (FC_EMU_*) */
	char uid[32];         /* cfg.sandbox_user points here */
	char kernel[300];
	char rootfs[300];
	hs_store *store;
	hs_tenancy *tenancy;
	hs_sandbox_config cfg;
	hs_sandbox_mgr *mgr;
} sbt_env;

/* Temp dir, store, config (bwrap default, emulator as firecracker), manager. */
void sbt_setup(sbt_env *env);
/* Fault injection for the emulator (FC_EMU_*): it reads them from a file,
 * since the VMM never sees harnessd's environment. */
void sbt_emu_setenv(sbt_env *env, const char *name, const char *value);
void sbt_emu_unsetenv(sbt_env *env, const char *name);
/* <v2 cgroup mount>/harness-<instance id of env->runtime> ("" without v2). */
void sbt_instance_cgroup(const sbt_env *env, char *out, size_t cap);
/* Open the manager with env->cfg (after changing it). */
void sbt_open_mgr(sbt_env *env);
/* Destroy every sandbox still live, free everything, rm -rf the temp dir. */
void sbt_teardown(sbt_env *env);

extern const hs_sandbox_caller sbt_alice, sbt_bob, sbt_admin;

/* JSON lines of the emulator log (array; json_decref it). */
json_t *sbt_emu_log(const sbt_env *env);
/* Pid from the last "start" event of the emulator log, 0 if none. */
pid_t sbt_emu_last_pid(const sbt_env *env);
/* The process is gone (reaped or never ours): kill(pid, 0) fails with ESRCH. */
bool sbt_pid_gone(pid_t pid);
/* Processes whose command line contains marker. */
int sbt_count_procs(const char *marker);
/* Poll until exactly `want` processes carry the marker or ms pass; returns
 * the last count (assert on it, not on a fresh count: processes come and go). */
int sbt_wait_procs(const char *marker, int want, unsigned ms);
long long sbt_file_size(const char *path);
bool sbt_exists(const char *path);
/* Poll get() until state or timeout; returns the final state. */
int sbt_wait_state(sbt_env *env, const hs_sandbox_caller *c, const char *id, int state,
		   unsigned ms);
void sbt_sleep_ms(unsigned ms);
bool sbt_contains(const char *hay, const char *needle);
char *sbt_read_file(const char *path);

#endif
