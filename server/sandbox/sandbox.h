/* The sandbox module: a registry of sandboxes (Firecracker microVMs or
 * bubblewrap process sandboxes), their state machine, limits, ownership and
 * TTLs, persisted in the store. No gRPC here: sandbox_service.c converts protobuf to
 * these calls. Every call may block (process start, Firecracker API calls,
 * snapshot files): call it from a worker thread, never from a completion-queue
 * thread. All functions are thread-safe; calls on different sandboxes run in
 * parallel (one lock per sandbox). Return HS_OK or a negative hs_code. */
#ifndef HS_SERVER_SANDBOX_H
#define HS_SERVER_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "labels.h"
#include "principal.h"

typedef struct hs_store hs_store;
typedef struct hs_tenancy hs_tenancy;
typedef struct hs_sandbox_mgr hs_sandbox_mgr;
typedef struct hs_metrics hs_metrics;

/* Values equal the proto enum SANDBOX_STATE_* (0 = unspecified). */
typedef enum hs_sandbox_state {
	HS_SANDBOX_CREATED = 1,
	HS_SANDBOX_RUNNING = 2,
	HS_SANDBOX_PAUSED = 3,
	HS_SANDBOX_STOPPED = 4,
	HS_SANDBOX_FAILED = 5,
	HS_SANDBOX_DESTROYED = 6,
} hs_sandbox_state;

typedef enum hs_sandbox_snapshot_type {
	HS_SNAPSHOT_FULL = 0,
	HS_SNAPSHOT_DIFF = 1,
} hs_sandbox_snapshot_type;

/* What hs_sandbox_mgr_new derives from the host and the configuration
 * (callers leave it zeroed): who sandboxes run as, what harnessd may do,
 * this instance's id. Drivers read it through the config. */
typedef struct hs_sandbox_host {
	uid_t uid;             /* the sandbox account's uid on the host */
	gid_t gid;             /* ... and gid */
	bool switch_uid;       /* uid/gid differ from harnessd's: set them before exec */
	bool portal;           /* CAP_SYS_ADMIN: bind sources are mounted in a private
				* mount namespace first (no host path walked as the
				* sandbox account) */
	bool chown_workspace;  /* CAP_CHOWN and switch_uid: hand the workspace to uid */
	char instance_id[17];  /* 16 hex digits kept in <runtime_root>/instance-id */
	char init_bin[4096];   /* resolved harness-sandbox-init */
} hs_sandbox_host;

/* Configuration (harnessd's config table fills it). Strings are borrowed for
 * the manager's lifetime. hs_sandbox_config_init() sets the defaults. */
typedef struct hs_sandbox_config {
	const char *default_driver;  /* "auto" (default), "firecracker", "bwrap" */
	const char *runtime_root;    /* required: <runtime_root>/<id>/ per sandbox (copied);
				      * also holds instance-id */
	hs_tenancy *tenancy;         /* required: task ownership and workspaces (borrowed) */
	const char *bwrap_bin;       /* "/usr/bin/bwrap" */
	const char *firecracker_bin; /* "/usr/bin/firecracker" */
	bool skip_kvm_check;         /* probe: do not require /dev/kvm (tests/development only) */
	const char *jailer_bin;      /* "" = launch firecracker directly (development) */
	const char *chroot_base_dir; /* jailer: "/srv/jailer" */
	uid_t jailer_uid;            /* jailer --uid: 0 = the sandbox account's */
	gid_t jailer_gid;            /* jailer --gid: 0 = the sandbox account's */
	int cgroup_version;          /* jailer --cgroup-version: 2 */
	const char *const *jailer_cgroups; /* jailer --cgroup k=v, NULL-terminated */
	const char *netns;           /* jailer --netns path, NULL/"" = none */
	bool jailer_new_pid_ns;      /* jailer --new-pid-ns (pid read from <chroot>/firecracker.pid) */
	const char *kernel_image;    /* default kernel_image_path */
	const char *rootfs_image;    /* default rootfs_path */
	const char *boot_args;       /* "console=ttyS0 reboot=k panic=1 pci=off" */
	/* Who sandboxes run as: a uid or account name, a gid or group name.
	 * NULL/"" = the account "harness-sandbox" and its primary group. The
	 * bwrap driver refuses to run as harnessd's own uid unless
	 * allow_same_uid (development), and never as uid 0. */
	const char *sandbox_user;
	const char *sandbox_group;
	bool allow_same_uid;
	const char *rootfs_dir;      /* bwrap: a root filesystem directory (an unpacked
				      * distro) whose /usr, /bin, /lib*, /sbin and /etc
				      * files replace the host's; NULL/"" = the host's */
	const char *init_bin;        /* bwrap: harness-sandbox-init; NULL/"" = the one
				      * beside harnessd (/proc/self/exe's directory) */
	const char *cgroup_root;     /* bwrap: a delegated cgroup v2 directory under which
				      * harness-<instance>/ is made; NULL/"" = auto
				      * (harnessd's own cgroup), "none" = no cgroups
				      * (pause by signals, no limits) */
	unsigned pids_max;           /* 1024: pids.max of a bwrap sandbox (where enforced) */
	unsigned max_vcpu;           /* 8 */
	unsigned max_mem_mib;        /* 8192 */
	unsigned max_per_user;       /* 16 non-destroyed sandboxes per owner */
	int64_t max_ttl_seconds;     /* 0 = unbounded */
	unsigned api_timeout_ms;     /* 5000: each Firecracker API call; bwrap: exec wait */
	unsigned socket_wait_ms;     /* 5000: API socket must appear within */
	unsigned stop_grace_ms;      /* 5000: SIGTERM -> SIGKILL (DestroySandbox grace 0) */
	size_t log_max_bytes;        /* 8 MiB: per-sandbox output log cap */
	unsigned log_streams_per_user; /* 8: GetSandboxLogs streams open per user */
	unsigned exec_per_sandbox;   /* 8: ExecSandbox commands running per sandbox (the
				      * init serves at most 64) */
	unsigned exec_per_user;      /* 16: ... per user */
	unsigned streams_max;        /* 1024: log and exec streams in all */
	size_t stream_rate;          /* 8 MiB: bytes per second each stream sends at most */
	int64_t exec_output_max;     /* 1 GiB: output of one command before it is killed */
	unsigned reaper_interval_ms; /* 1000: TTL check period (exits are seen at once) */
	const char *node_id;         /* this node (copied); NULL/"" = the one node of a
				      * single-node store. The manager loads only its own
				      * rows; a call naming another node's sandbox is
				      * HS_UNAVAILABLE naming that node and its address. */
	int64_t node_lost_ms;        /* with a node_id: another node whose row expired
				      * this long ago (or has none) is lost; its
				      * sandboxes are taken over here as FAILED "node N
				      * lost" (0 = never) */
	hs_sandbox_host host;        /* derived; see hs_sandbox_host */
} hs_sandbox_config;

void hs_sandbox_config_init(hs_sandbox_config *cfg);

/* Who is calling and how long they wait. timeout_ms is what is left of the
 * RPC deadline (0 = none); driver calls use min(config, timeout_ms). */
typedef struct hs_sandbox_caller {
	hs_principal who;
	unsigned timeout_ms;
} hs_sandbox_caller;

typedef struct hs_sandbox_kv {
	char *key;
	char *value;
} hs_sandbox_kv;

/* CreateSandbox's request; every string borrowed, NULL/0 = default. The
 * module validates every field (HS_INVALID naming it); the adapter only
 * copies. Defaults: driver = the configured one, 1 vCPU, 256 MiB. */
typedef struct hs_sandbox_spec {
	const char *sandbox_id;        /* NULL/"" = generated "sb-" + 16 hex */
	const char *driver;            /* NULL/"" = config default */
	int64_t vcpu_count;            /* 0 = 1; 1 or even, up to 32 and max_vcpu */
	int64_t mem_size_mib;          /* 0 = 256; 128 up to max_mem_mib */
	const char *kernel_image_path; /* firecracker */
	const char *rootfs_path;       /* firecracker */
	const char *boot_args;         /* firecracker */
	const char *const *entrypoint; /* bwrap argv; 0 = /bin/sh -c "exec sleep infinity" */
	size_t entrypoint_len;
	const hs_label *env;           /* bwrap: NAME/value pairs set inside the sandbox only */
	size_t env_len;
	const char *task_id;           /* task served; NULL/"" = none */
	const char *workspace;         /* bwrap: "<task_id>[/sub]" below the workspace root;
					* NULL/"" = <task_id> when a task is set, else none */
	const char *working_dir;       /* not supported: must be empty */
	int64_t ttl_seconds;           /* 0 = no TTL */
	const hs_label *labels;
	size_t labels_len;
	bool network;                  /* bwrap: share the host network; fc: refused */
	size_t nics_len;               /* firecracker: at most 1 (eth0) */
	const char *iface_id;          /* firecracker: "eth0" */
	const char *tap_dev;           /* firecracker host_dev_name */
	const char *guest_mac;         /* firecracker guest_mac */
	size_t drives_len;             /* not supported yet: must be 0 */
	bool rootfs_read_only;         /* not supported yet */
	bool smt;                      /* not supported yet */
} hs_sandbox_spec;

/* A sandbox as callers see it; owns its strings: hs_sandbox_info_dispose(). */
typedef struct hs_sandbox_info {
	char *sandbox_id;
	char *owner;
	char *task_id;
	char *driver;
	hs_sandbox_state state;
	int64_t pid;               /* 0 when no process */
	unsigned vcpu_count;
	unsigned mem_size_mib;
	int64_t ttl_seconds;
	int64_t expires_at_ms;     /* 0 = never */
	int64_t created_at_ms;
	int64_t started_at_ms;     /* 0 = never started */
	int64_t stopped_at_ms;     /* when it stopped running (entered STOPPED, FAILED or
				    * DESTROYED from a live state); 0 while CREATED, RUNNING
				    * or PAUSED */
	bool has_exit_code;
	int exit_code;
	char *failure_reason;      /* "" unless FAILED */
	char *log_path;
	char *runtime_dir;
	hs_sandbox_kv *labels;
	size_t labels_len;
	/* The spec as created ("" / NULL when not set). */
	char *kernel_image_path;   /* firecracker */
	char *rootfs_path;         /* firecracker */
	char *boot_args;           /* firecracker; "" = the server default */
	char **entrypoint;         /* bwrap argv, NULL-terminated; NULL = the default */
	size_t entrypoint_len;
	bool network_enabled;      /* bwrap: host network; firecracker: a tap is attached */
	char *tap_dev, *guest_mac; /* firecracker eth0 */
	char *workspace;           /* absolute host path bound read-write (bwrap); "" = none */
	char *api_socket_path;     /* firecracker while it has a process, else "" */
	/* Which host limits hold for the current (or last) run: bwrap cgroup
	 * memory.max / cpu.max / pids.max; firecracker: the VM's own size
	 * bounds memory and CPU. All false before the first start. */
	bool memory_enforced, cpu_enforced, pids_enforced;
	unsigned pids_max;         /* pids.max when pids_enforced, else 0 */
} hs_sandbox_info;

void hs_sandbox_info_dispose(hs_sandbox_info *info);
void hs_sandbox_info_array_free(hs_sandbox_info *infos, size_t n);

typedef struct hs_sandbox_snapshot_info {
	char *snapshot_id;
	char *sandbox_id;
	hs_sandbox_snapshot_type type;
	int64_t created_at_ms;
	char *snapshot_path;
	char *mem_file_path;
	int64_t size_bytes;
	char *base_snapshot_id;    /* DIFF: the full snapshot it layers on; FULL: "" */
} hs_sandbox_snapshot_info;

void hs_sandbox_snapshot_info_dispose(hs_sandbox_snapshot_info *snap);
void hs_sandbox_snapshot_info_array_free(hs_sandbox_snapshot_info *snaps, size_t n);

typedef struct hs_sandbox_filter {
	int state;               /* hs_sandbox_state, 0 = any except DESTROYED */
	const char *task_id;     /* NULL = any */
	const char *owner;       /* admins: NULL/"" = every owner; others: NULL/"" or
				  * their own id (another is HS_DENIED) */
	const hs_label *label_selector; /* only sandboxes carrying all these pairs */
	size_t label_selector_len;
	int64_t page_size;       /* 0 = 50, clamped to 1000; negative: HS_INVALID */
	const char *page_token;  /* from a previous call with the same filters;
				  * NULL/"" = first page */
} hs_sandbox_filter;

/* Open the manager on an open store (borrowed, must outlive it): resolve
 * the sandbox account, read or create the instance id, probe both
 * drivers once (CreateSandbox naming one that cannot run here is then
 * HS_UNAVAILABLE with the reason), start the
 * reaper thread and re-adopt the store's RUNNING/PAUSED sandboxes: a row
 * whose pid is alive with the recorded /proc starttime is adopted, any other
 * is marked FAILED "lost after restart". HS_INVALID on a bad config. */
int hs_sandbox_mgr_new(hs_sandbox_mgr **out, const hs_sandbox_config *cfg, hs_store *store,
		       hs_error *err);

/* Stop the reaper and free memory. Sandboxes keep running (a later
 * hs_sandbox_mgr_new re-adopts them); destroy them first if that is not
 * wanted. NULL is a no-op. */
void hs_sandbox_mgr_free(hs_sandbox_mgr *mgr);

/* Registers harness_sandboxes{driver,state} (a gauge read at scrape time)
 * on metrics (borrowed, outlives mgr); hs_sandbox_mgr_free removes it. */
int hs_sandbox_mgr_add_metrics(hs_sandbox_mgr *mgr, hs_metrics *metrics, hs_error *err);

/* Errors for every call below: HS_INVALID for an id that breaks the
 * resource-name rule (common/ids.h); HS_NOT_FOUND for unknown ids and for
 * another user's sandbox, task or workspace (existence is not leaked); HS_CONFLICT in the wrong state,
 * naming it ("sandbox sb-1 is PAUSED; StartSandbox needs CREATED");
 * HS_INVALID naming the field; HS_LIMIT over vcpu/memory/quota limits;
 * HS_UNAVAILABLE when the VMM died or cannot be reached; HS_TIMEOUT.
 * Functions with `out` fill it only on success (dispose it after). */

int hs_sandbox_create(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller,
		      const hs_sandbox_spec *spec, hs_sandbox_info *out, hs_error *err);
int hs_sandbox_start(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		     hs_sandbox_info *out, hs_error *err);
int hs_sandbox_get(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		   hs_sandbox_info *out, hs_error *err);
/* The caller's sandboxes (an admin's: everyone's), newest first (created_at,
 * then sandbox_id, descending). *out is an array of *n_out infos
 * (hs_sandbox_info_array_free); *next_page_token is malloc'd and opaque (a
 * keyset cursor bound to the filter), NULL on the last page. HS_INVALID for
 * a malformed token or one issued for other filters. */
int hs_sandbox_list(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller,
		    const hs_sandbox_filter *filter, hs_sandbox_info **out, size_t *n_out,
		    char **next_page_token, hs_error *err);
int hs_sandbox_pause(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		     hs_sandbox_info *out, hs_error *err);
int hs_sandbox_resume(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		      hs_sandbox_info *out, hs_error *err);
/* Needs PAUSED (Firecracker's rule); bwrap: HS_CONFLICT (no memory snapshots).
 * DIFF layers on the sandbox's newest FULL snapshot (out->base_snapshot_id);
 * HS_CONFLICT if it has none. */
int hs_sandbox_snapshot(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
			hs_sandbox_snapshot_type type, hs_sandbox_snapshot_info *out,
			hs_error *err);
/* Recovery of a task whose node was lost (several nodes on one store):
 * bring sandbox id back on this node. Another node's sandbox whose node
 * row is no longer live (its lease expired: the task's lease moved for the
 * same reason) is taken over first, as the reaper does after a grace
 * (FAILED "node N lost", this node's now: one conditional update, so one
 * node wins). A sandbox taken over that way and not run here since is
 * started again from its stored spec (bwrap: entrypoint, env, limits,
 * network) on its workspace as it is now on this node (a recovery has just
 * restored it), in a fresh runtime dir: RUNNING, *done true. *done false
 * and HS_OK when id is none of those (this node's own, a live node's, or
 * not the caller's): the caller goes on as on one node. A firecracker
 * sandbox cannot come back (its VM and snapshot files were on the lost
 * host): HS_CONFLICT saying so. */
int hs_sandbox_recover_lost(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
			    bool *done, hs_sandbox_info *out, hs_error *err);
/* Restore into a fresh VMM process: snapshot_id NULL/"" = the latest. From
 * RUNNING, PAUSED, STOPPED or FAILED; ends RUNNING if resume, else PAUSED. */
int hs_sandbox_restore(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		       const char *snapshot_id, bool resume, hs_sandbox_info *out,
		       hs_error *err);
/* Kills everything, removes the runtime dir (snapshots included); the row
 * stays with state DESTROYED. out may be NULL. The process gets SIGTERM and
 * cfg.stop_grace_ms to end before SIGKILL. */
int hs_sandbox_destroy(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		       hs_sandbox_info *out, hs_error *err);
#define HS_SANDBOX_GRACE_MAX_MS 60000
/* hs_sandbox_destroy with grace_ms between SIGTERM and SIGKILL instead
 * (0 = cfg.stop_grace_ms; 0..HS_SANDBOX_GRACE_MAX_MS, else HS_INVALID). */
int hs_sandbox_destroy_grace(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller,
			     const char *id, int64_t grace_ms, hs_sandbox_info *out,
			     hs_error *err);
/* Oldest first; *out: hs_sandbox_snapshot_info_array_free. */
int hs_sandbox_list_snapshots(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller,
			      const char *id, hs_sandbox_snapshot_info **out, size_t *n_out,
			      hs_error *err);

/* The sandbox identity the manager resolved at open: HS_OK and *out, or
 * HS_UNAVAILABLE with why there is none (then the bwrap driver is
 * unusable and the jailer needs --jailer-uid/--jailer-gid). */
int hs_sandbox_mgr_identity(hs_sandbox_mgr *mgr, hs_sandbox_host *out, hs_error *err);

/* Probe the manager's default driver now (readiness checks): HS_OK or
 * HS_UNAVAILABLE with the reason. Starts a process (bwrap). */
int hs_sandbox_mgr_probe(hs_sandbox_mgr *mgr, hs_error *err);

/* ---- output streams: GetSandboxLogs and ExecSandbox --------------------
 *
 * Both run on the manager's I/O thread (one thread, epoll; no thread per
 * stream): the call that opens one returns at once, and the module then
 * delivers output to a sink until the stream ends. Sinks are called on
 * that thread, never concurrently for one stream, and never with a module
 * lock held. Everything is bounded: chunks of at most HS_SANDBOX_CHUNK
 * bytes, one undelivered chunk per stream (a sink that is full is offered
 * it again shortly; nothing more is read meanwhile), stream_rate bytes per
 * second, and the per-user/per-sandbox stream counts of the config. */

#define HS_SANDBOX_CHUNK 32768
#define HS_SANDBOX_STDIN_CHUNK 65536      /* one ExecSandbox stdin message */
#define HS_SANDBOX_TAIL_LINES_MAX 100000
#define HS_SANDBOX_TAIL_BYTES_MAX (1ll << 30)

typedef enum hs_sandbox_out_kind {
	HS_SANDBOX_OUT_LOG = 1,  /* a chunk of the log */
	HS_SANDBOX_OUT_STDOUT,   /* exec: a chunk of stdout */
	HS_SANDBOX_OUT_STDERR,   /* exec: a chunk of stderr */
	HS_SANDBOX_OUT_EXIT,     /* exec: how the command ended (the last delivery) */
} hs_sandbox_out_kind;

typedef struct hs_sandbox_out {
	hs_sandbox_out_kind kind;
	const char *data;   /* chunks: borrowed for the call */
	size_t len;
	int64_t offset;     /* LOG: where data[0] is in the log */
	int exit_code;      /* EXIT: the status, or 128 + signal */
	int signal;         /* EXIT: the signal that killed it, 0 if none */
} hs_sandbox_out;

typedef struct hs_sandbox_sink {
	/* HS_OK: taken. HS_LIMIT: full right now; offered again later.
	 * Anything else: the receiver is gone; the stream ends (end() follows). */
	int (*deliver)(const hs_sandbox_out *out, void *payload);
	/* Exec: stdin has room again after hs_sandbox_exec_stdin said wait.
	 * May be NULL. */
	void (*stdin_ready)(void *payload);
	/* The last call, exactly once: HS_OK when complete (logs: end of log,
	 * or the sandbox stopped; exec: after the EXIT delivery), else why the
	 * stream ended (HS_CANCELLED, HS_TIMEOUT, HS_UNAVAILABLE, HS_LIMIT). */
	void (*end)(int code, const char *msg, void *payload);
	void *payload;
} hs_sandbox_sink;

typedef struct hs_sandbox_stream hs_sandbox_stream;

typedef struct hs_sandbox_logs_opts {
	int64_t tail_lines;  /* 0 = from the start; 1..HS_SANDBOX_TAIL_LINES_MAX */
	int64_t tail_bytes;  /* 0 = no bound; 1..HS_SANDBOX_TAIL_BYTES_MAX */
	int64_t limit_bytes; /* 0 = no limit; the stream ends OK after this many */
	bool follow;         /* until the sandbox stops running */
	int64_t deadline_ms; /* hs_clock_mono_ms() time to end (HS_TIMEOUT); 0 = none */
} hs_sandbox_logs_opts;

/* A sandbox's output log (bwrap; the file of Sandbox.log_path, by its
 * fixed place in the runtime dir: no caller names a path). Any state but
 * DESTROYED (HS_CONFLICT); a sandbox that is not RUNNING or PAUSED is read
 * to its end even with follow. HS_UNIMPLEMENTED for firecracker, HS_LIMIT
 * over log_streams_per_user. On HS_OK the stream runs: sink->end will be
 * called exactly once; *out is the caller's reference
 * (hs_sandbox_stream_unref, after which the sink may still be running). */
int hs_sandbox_logs(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		    const hs_sandbox_logs_opts *opts, const hs_sandbox_sink *sink,
		    hs_sandbox_stream **out, hs_error *err);

typedef struct hs_sandbox_exec_spec {
	const char *const *command; /* argv: 1..256 of at most 4096 bytes, [0] not empty */
	size_t command_len;
	const hs_label *env;        /* CreateSandbox's env rule */
	size_t env_len;
	const char *working_dir;    /* relative to the workspace; NULL/"" = the workspace */
	bool tty;                   /* not supported: must be false */
	int64_t deadline_ms;        /* hs_clock_mono_ms() time to kill it (HS_TIMEOUT); 0 = none */
} hs_sandbox_exec_spec;

/* Runs a command in a RUNNING bwrap sandbox through its init process, with
 * the entrypoint's identity and restrictions (sandbox_init.c). HS_CONFLICT
 * when not RUNNING (PAUSED included), HS_NOT_FOUND for another user's,
 * HS_INVALID naming a bad field or when command[0] cannot be executed,
 * HS_NOT_FOUND / HS_CONFLICT for a missing / linked working_dir, HS_LIMIT
 * over exec_per_sandbox or exec_per_user, HS_UNIMPLEMENTED for firecracker.
 * On HS_OK the command runs; output goes to sink (STDOUT, STDERR, then
 * EXIT), then end(). *out as for hs_sandbox_logs. */
int hs_sandbox_exec(hs_sandbox_mgr *mgr, const hs_sandbox_caller *caller, const char *id,
		    const hs_sandbox_exec_spec *spec, const hs_sandbox_sink *sink,
		    hs_sandbox_stream **out, hs_error *err);

/* Queues bytes for the command's stdin (at most HS_SANDBOX_STDIN_CHUNK per
 * call), and/or closes it once they are written. *wait (required) is set
 * when the buffer is full enough that the caller should offer nothing more
 * until sink->stdin_ready. HS_INVALID for a chunk too large or data after
 * close; HS_LIMIT when the caller ignored *wait and the buffer is full;
 * HS_CANCELLED when the stream has ended (nothing to do). Any thread. */
int hs_sandbox_exec_stdin(hs_sandbox_stream *s, const void *data, size_t len, bool close_stdin,
			  bool *wait, hs_error *err);

/* Ends a stream early: an exec's process group is killed; sink->end gets
 * HS_CANCELLED unless it already ended. Any thread; no-op after the end. */
void hs_sandbox_stream_cancel(hs_sandbox_stream *s);
/* Drops the caller's reference. Every reference must be dropped before
 * hs_sandbox_mgr_free. NULL is a no-op. */
void hs_sandbox_stream_unref(hs_sandbox_stream *s);

/* "CREATED", "RUNNING", ... */
const char *hs_sandbox_state_name(int state);

/* Whether a driver can run here: "bwrap" resolves the sandbox account
 * (refusing uid 0, and harnessd's own uid unless allow_same_uid), checks
 * harness-sandbox-init and runs `bwrap ... true` as that account;
 * "firecracker" needs /dev/kvm openable (unless cfg->skip_kvm_check) and the
 * binaries executable.
 * HS_OK or HS_UNAVAILABLE with the reason. */
int hs_sandbox_driver_probe(const hs_sandbox_config *cfg, const char *driver, hs_error *err);

/* The driver "auto" resolves to: firecracker if it probes OK, else bwrap. */
const char *hs_sandbox_driver_resolve(const hs_sandbox_config *cfg, const char *driver);

#endif
