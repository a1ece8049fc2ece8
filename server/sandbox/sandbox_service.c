/* harness.v1.SandboxService over the sandbox module. Only conversion,
 * validation at the edge (INVALID_ARGUMENT naming the field) and the few
 * idempotency rules the proto promises (pause of a PAUSED sandbox, resume of
 * a RUNNING one, destroy of a DESTROYED one answer the sandbox as it is);
 * the state machine, limits and ownership live in the module. Every handler
 * blocks (process start, Firecracker API calls, snapshot files) and runs on
 * the RPC worker pool. */
#include "sandbox_service.h"
#include "ids.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_pb.h"
#include "harness/v1/sandbox.pb-c.h"

#define MAX_ENTRYPOINT 256
#define MAX_ARG_BYTES 4096
#define MAX_LABELS 64
#define MAX_ENV 128
#define MAX_TTL_S 315360000 /* ten years: keeps created_at + ttl in range */
#define DEFAULT_PAGE 50
#define MAX_PAGE 1000

typedef Harness__V1__Sandbox SandboxMsg;
typedef Harness__V1__Snapshot SnapshotMsg;

/* --- edge validation ------------------------------------------------------- */

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* chars of s all in [A-Za-z0-9] or extra; length 1..max. */
static bool chars_ok(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && strchr(extra, s[i]) == NULL)
			return false;
	return true;
}

/* An optional task id: empty means none. */
static int check_task_id(const char *t, hs_error *err)
{
	return t[0] == '\0' ? HS_OK : hs_id_check_task("task_id", t, err);
}

static int check_abs_path(const char *field, const char *p, hs_error *err)
{
	if (p[0] != '\0' && (p[0] != '/' || strlen(p) >= PATH_MAX))
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

static bool valid_env_key(const char *k)
{
	if (!((k[0] >= 'A' && k[0] <= 'Z') || (k[0] >= 'a' && k[0] <= 'z') || k[0] == '_'))
		return false;
	return chars_ok(k, 128, "_");
}

/* What is left of the caller's deadline for the module (0 = no deadline). */
static hs_sandbox_caller caller_of(hs_rpc_call *call)
{
	const hs_rpc_principal *p = hs_rpc_call_principal(call);
	int64_t left = hs_rpc_call_deadline_left_ms(call);
	hs_sandbox_caller c = { { p->user_id, p->is_admin }, 0 };
	if (left != INT64_MAX)
		c.timeout_ms = left <= 0 ? 1 : (left > 3600000 ? 3600000 : (unsigned)left);
	return c;
}

/* --- module -> proto --------------------------------------------------------- */

/* Arena copy; sets *oom on failure (then returns ""). */
static char *adup(hs_rpc_call *call, const char *s, bool *oom)
{
	char *d = hs_rpc_call_strdup(call, s ? s : "");
	if (d == NULL) {
		*oom = true;
		return "";
	}
	return d;
}

static SandboxMsg *sandbox_msg(hs_rpc_call *call, const hs_sandbox_info *in)
{
	bool oom = false;
	SandboxMsg *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL)
		return NULL;
	harness__v1__sandbox__init(m);
	m->sandbox_id = adup(call, in->sandbox_id, &oom);
	m->state = (Harness__V1__SandboxState)in->state;
	m->driver = adup(call, in->driver, &oom);
	m->pid = (int32_t)in->pid;
	m->owner = adup(call, in->owner, &oom);
	m->task_id = adup(call, in->task_id, &oom);
	m->vcpu_count = (int32_t)in->vcpu_count;
	m->mem_size_mib = (int32_t)in->mem_size_mib;
	m->ttl_seconds = in->ttl_seconds;
	m->exit_code = in->state == HS_SANDBOX_STOPPED && in->has_exit_code ? in->exit_code : 0;
	m->failure_reason = adup(call, in->failure_reason, &oom);
	m->log_path = adup(call, in->log_path, &oom);
	m->kernel_image_path = adup(call, in->kernel_image_path, &oom);
	m->rootfs_path = adup(call, in->rootfs_path, &oom);
	m->boot_args = adup(call, in->boot_args, &oom);
	m->network_enabled = in->network_enabled;
	m->workspace = adup(call, in->workspace, &oom);
	m->api_socket_path = adup(call, in->api_socket_path, &oom);
	/* The firecracker driver always tracks dirty pages (Diff snapshots). */
	m->track_dirty_pages = in->driver != NULL && strcmp(in->driver, "firecracker") == 0;
	if ((m->created_at = hs_rpc_timestamp(call, in->created_at_ms)) == NULL)
		oom = true;
	if (in->started_at_ms > 0 && (m->started_at = hs_rpc_timestamp(call, in->started_at_ms)) == NULL)
		oom = true;
	if (in->expires_at_ms > 0 && (m->expires_at = hs_rpc_timestamp(call, in->expires_at_ms)) == NULL)
		oom = true;
	if (in->stopped_at_ms > 0 && (m->stopped_at = hs_rpc_timestamp(call, in->stopped_at_ms)) == NULL)
		oom = true;
	if (in->labels_len > 0) {
		m->labels = hs_rpc_call_alloc(call, in->labels_len * sizeof(*m->labels));
		for (size_t i = 0; m->labels != NULL && i < in->labels_len; i++) {
			Harness__V1__Sandbox__LabelsEntry *l = hs_rpc_call_alloc(call, sizeof(*l));
			if (l == NULL)
				break;
			harness__v1__sandbox__labels_entry__init(l);
			l->key = adup(call, in->labels[i].key, &oom);
			l->value = adup(call, in->labels[i].value, &oom);
			m->labels[m->n_labels++] = l;
		}
		oom = oom || m->n_labels != in->labels_len;
	}
	if (in->entrypoint_len > 0) {
		m->entrypoint = hs_rpc_call_alloc(call, in->entrypoint_len * sizeof(char *));
		for (size_t i = 0; m->entrypoint != NULL && i < in->entrypoint_len; i++)
			m->entrypoint[m->n_entrypoint++] = adup(call, in->entrypoint[i], &oom);
		oom = oom || m->n_entrypoint != in->entrypoint_len;
	}
	if (in->tap_dev != NULL && in->tap_dev[0] != '\0') {
		Harness__V1__NetworkInterface *nic = hs_rpc_call_alloc(call, sizeof(*nic));
		m->network_interfaces = hs_rpc_call_alloc(call, sizeof(*m->network_interfaces));
		if (nic == NULL || m->network_interfaces == NULL)
			return NULL;
		harness__v1__network_interface__init(nic);
		nic->iface_id = "eth0";
		nic->host_dev_name = adup(call, in->tap_dev, &oom);
		nic->guest_mac = adup(call, in->guest_mac, &oom);
		m->network_interfaces[0] = nic;
		m->n_network_interfaces = 1;
	}
	return oom ? NULL : m;
}

static SnapshotMsg *snapshot_msg(hs_rpc_call *call, const hs_sandbox_snapshot_info *in)
{
	bool oom = false;
	SnapshotMsg *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL)
		return NULL;
	harness__v1__snapshot__init(m);
	m->snapshot_id = adup(call, in->snapshot_id, &oom);
	m->sandbox_id = adup(call, in->sandbox_id, &oom);
	m->type = in->type == HS_SNAPSHOT_DIFF ? HARNESS__V1__SNAPSHOT_TYPE__SNAPSHOT_TYPE_DIFF
					       : HARNESS__V1__SNAPSHOT_TYPE__SNAPSHOT_TYPE_FULL;
	m->mem_file_path = adup(call, in->mem_file_path, &oom);
	m->snapshot_path = adup(call, in->snapshot_path, &oom);
	m->size_bytes = in->size_bytes > 0 ? (uint64_t)in->size_bytes : 0;
	m->base_snapshot_id = adup(call, in->base_snapshot_id, &oom);
	if ((m->created_at = hs_rpc_timestamp(call, in->created_at_ms)) == NULL)
		oom = true;
	return oom ? NULL : m;
}

/* Converts (and disposes) a module result into *resp. */
static int sandbox_reply(hs_rpc_call *call, int rc, hs_sandbox_info *info,
			 ProtobufCMessage **resp, hs_error *err)
{
	if (rc == HS_OK) {
		SandboxMsg *m = sandbox_msg(call, info);
		if (m == NULL)
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		else
			*resp = &m->base;
		hs_sandbox_info_dispose(info);
	}
	return rc;
}

/* --- CreateSandbox ----------------------------------------------------------- */

static int check_create(const Harness__V1__CreateSandboxRequest *r, hs_error *err)
{
	int rc;
	if (r->sandbox_id[0] != '\0' && (rc = hs_id_check_name("sandbox_id", r->sandbox_id, err)) != HS_OK)
		return rc;
	if (r->driver[0] != '\0' && strcmp(r->driver, "firecracker") != 0 &&
	    strcmp(r->driver, "bwrap") != 0)
		return hs_error_set(err, HS_INVALID,
				    "driver: must be \"firecracker\", \"bwrap\" or empty");
	if (r->vcpu_count < 0 || r->vcpu_count > 32)
		return hs_error_set(err, HS_INVALID, "vcpu_count: must be 1..32 (0 = default)");
	if (r->mem_size_mib < 0 || r->mem_size_mib > 262144 ||
	    (r->mem_size_mib > 0 && r->mem_size_mib < 128))
		return hs_error_set(err, HS_INVALID,
				    "mem_size_mib: must be 128..262144 (0 = default)");
	if ((rc = check_abs_path("kernel_image_path", r->kernel_image_path, err)) != HS_OK ||
	    (rc = check_abs_path("rootfs_path", r->rootfs_path, err)) != HS_OK ||
	    (rc = check_task_id(r->task_id, err)) != HS_OK)
		return rc;
	if (r->n_entrypoint > MAX_ENTRYPOINT)
		return hs_error_set(err, HS_INVALID, "entrypoint: at most %d elements",
				    MAX_ENTRYPOINT);
	for (size_t i = 0; i < r->n_entrypoint; i++)
		if (strlen(r->entrypoint[i]) > MAX_ARG_BYTES || (i == 0 && !r->entrypoint[0][0]))
			return hs_error_set(err, HS_INVALID,
					    "entrypoint[%zu]: empty or longer than %d bytes", i,
					    MAX_ARG_BYTES);
	if (r->ttl_seconds < 0 || r->ttl_seconds > MAX_TTL_S)
		return hs_error_set(err, HS_INVALID, "ttl_seconds: must be 0..%d", MAX_TTL_S);
	if (r->n_labels > MAX_LABELS)
		return hs_error_set(err, HS_INVALID, "labels: at most %d entries", MAX_LABELS);
	for (size_t i = 0; i < r->n_labels; i++) {
		if (!chars_ok(r->labels[i]->key, 63, "._/-"))
			return hs_error_set(err, HS_INVALID,
					    "labels: key \"%.63s\" must be 1-63 of [A-Za-z0-9._/-]",
					    r->labels[i]->key);
		if (strlen(r->labels[i]->value) > 256)
			return hs_error_set(err, HS_INVALID,
					    "labels[%s]: value longer than 256 characters",
					    r->labels[i]->key);
	}
	if (strlen(r->boot_args) > 2048)
		return hs_error_set(err, HS_INVALID, "boot_args: longer than 2048 characters");
	if (r->n_network_interfaces > 1)
		return hs_error_set(err, HS_INVALID,
				    "network_interfaces: this server attaches at most one (eth0)");
	for (size_t i = 0; i < r->n_network_interfaces; i++) {
		const Harness__V1__NetworkInterface *n = r->network_interfaces[i];
		if (strcmp(n->iface_id, "eth0") != 0)
			return hs_error_set(err, HS_INVALID,
					    "network_interfaces[0].iface_id: must be \"eth0\"");
		if (n->host_dev_name[0] == '\0' || strlen(n->host_dev_name) > 15 ||
		    strpbrk(n->host_dev_name, "/ \t\n") != NULL)
			return hs_error_set(err, HS_INVALID,
					    "network_interfaces[0].host_dev_name: 1-15 characters, no '/' or spaces");
		if (n->guest_mac[0] != '\0' && !valid_mac(n->guest_mac))
			return hs_error_set(err, HS_INVALID,
					    "network_interfaces[0].guest_mac: must be XX:XX:XX:XX:XX:XX");
	}
	if (r->n_drives > 0)
		return hs_error_set(err, HS_INVALID, "drives: additional drives are not supported yet");
	if (r->rootfs_read_only)
		return hs_error_set(err, HS_INVALID, "rootfs_read_only: not supported yet");
	if (r->smt)
		return hs_error_set(err, HS_INVALID, "smt: not supported yet");
	if (r->working_dir[0] != '\0')
		return hs_error_set(err, HS_INVALID,
				    "working_dir: not supported (the sandbox starts in its workspace)");
	if (r->n_env > MAX_ENV)
		return hs_error_set(err, HS_INVALID, "env: at most %d entries", MAX_ENV);
	for (size_t i = 0; i < r->n_env; i++) {
		if (!valid_env_key(r->env[i]->key))
			return hs_error_set(err, HS_INVALID,
					    "env: key \"%.64s\" must match [A-Za-z_][A-Za-z0-9_]*",
					    r->env[i]->key);
		if (strlen(r->env[i]->value) > MAX_ARG_BYTES)
			return hs_error_set(err, HS_INVALID, "env[%s]: value longer than %d bytes",
					    r->env[i]->key, MAX_ARG_BYTES);
	}
	if (strlen(r->workspace) > 255)
		return hs_error_set(err, HS_INVALID, "workspace: longer than 255 characters");
	return HS_OK;
}

static int create_sandbox(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			  hs_error *err)
{
	const Harness__V1__CreateSandboxRequest *r = (const void *)req;
	int rc = check_create(r, err);
	if (rc != HS_OK)
		return rc;
	hs_sandbox_spec spec = { 0 };
	spec.sandbox_id = r->sandbox_id;
	spec.driver = r->driver;
	spec.vcpu_count = (unsigned)r->vcpu_count;
	spec.mem_size_mib = (unsigned)r->mem_size_mib;
	spec.kernel_image_path = r->kernel_image_path;
	spec.rootfs_path = r->rootfs_path;
	spec.boot_args = r->boot_args;
	spec.entrypoint = (const char *const *)r->entrypoint;
	spec.entrypoint_len = r->n_entrypoint;
	spec.task_id = r->task_id;
	spec.workspace = r->workspace;
	spec.ttl_seconds = r->ttl_seconds;
	spec.network = r->network_enabled;
	if (r->n_network_interfaces == 1) {
		spec.tap_dev = r->network_interfaces[0]->host_dev_name;
		spec.guest_mac = r->network_interfaces[0]->guest_mac;
	}
	if (r->n_labels > 0) {
		hs_sandbox_kv *kv = hs_rpc_call_alloc(call, r->n_labels * sizeof(*kv));
		if (kv == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		for (size_t i = 0; i < r->n_labels; i++) {
			kv[i].key = r->labels[i]->key;
			kv[i].value = r->labels[i]->value;
		}
		spec.labels = kv;
		spec.labels_len = r->n_labels;
	}
	if (r->n_env > 0) {
		const char **env = hs_rpc_call_alloc(call, r->n_env * sizeof(*env));
		if (env == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
		for (size_t i = 0; i < r->n_env; i++) {
			size_t len = strlen(r->env[i]->key) + strlen(r->env[i]->value) + 2;
			char *kv = hs_rpc_call_alloc(call, len);
			if (kv == NULL)
				return hs_error_set(err, HS_INTERNAL, "out of memory");
			snprintf(kv, len, "%s=%s", r->env[i]->key, r->env[i]->value);
			env[i] = kv;
		}
		spec.env = env;
		spec.env_len = r->n_env;
	}
	hs_sandbox_caller c = caller_of(call);
	hs_sandbox_info info = { 0 };
	rc = hs_sandbox_create(hs_rpc_call_payload(call), &c, &spec, &info, err);
	return sandbox_reply(call, rc, &info, resp, err);
}

/* --- one-sandbox calls ---------------------------------------------------------- */

typedef int (*one_fn)(hs_sandbox_mgr *, const hs_sandbox_caller *, const char *,
		      hs_sandbox_info *, hs_error *);

/* Runs fn; when it refuses with a wrong state and the sandbox already is in
 * `idem` (0 = none), answers the sandbox as it is (the proto's no-ops). */
static int one(hs_rpc_call *call, const char *id, one_fn fn, int idem, ProtobufCMessage **resp,
	       hs_error *err)
{
	int rc = hs_id_check_name("sandbox_id", id, err);
	if (rc != HS_OK)
		return rc;
	hs_sandbox_mgr *mgr = hs_rpc_call_payload(call);
	hs_sandbox_caller c = caller_of(call);
	hs_sandbox_info info = { 0 };
	hs_error ferr = { 0 };
	rc = fn(mgr, &c, id, &info, &ferr);
	if (rc == HS_CONFLICT && idem != 0 &&
	    hs_sandbox_get(mgr, &c, id, &info, NULL) == HS_OK) {
		if ((int)info.state == idem)
			return sandbox_reply(call, HS_OK, &info, resp, err);
		hs_sandbox_info_dispose(&info);
	}
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", ferr.msg);
	return sandbox_reply(call, rc, &info, resp, err);
}

static int start_sandbox(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			 hs_error *err)
{
	const Harness__V1__StartSandboxRequest *r = (const void *)req;
	return one(call, r->sandbox_id, hs_sandbox_start, 0, resp, err);
}

static int get_sandbox(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       hs_error *err)
{
	const Harness__V1__GetSandboxRequest *r = (const void *)req;
	return one(call, r->sandbox_id, hs_sandbox_get, 0, resp, err);
}

static int pause_sandbox(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			 hs_error *err)
{
	const Harness__V1__PauseSandboxRequest *r = (const void *)req;
	return one(call, r->sandbox_id, hs_sandbox_pause, HS_SANDBOX_PAUSED, resp, err);
}

static int resume_sandbox(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			  hs_error *err)
{
	const Harness__V1__ResumeSandboxRequest *r = (const void *)req;
	return one(call, r->sandbox_id, hs_sandbox_resume, HS_SANDBOX_RUNNING, resp, err);
}

static int destroy_sandbox(hs_rpc_call *call, const ProtobufCMessage *req,
			   ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__DestroySandboxRequest *r = (const void *)req;
	int rc = hs_id_check_name("sandbox_id", r->sandbox_id, err);
	if (rc != HS_OK)
		return rc;
	if (r->grace_period_ms < 0 || r->grace_period_ms > 60000)
		return hs_error_set(err, HS_INVALID, "grace_period_ms: must be 0..60000");
	hs_sandbox_mgr *mgr = hs_rpc_call_payload(call);
	hs_sandbox_caller c = caller_of(call);
	hs_sandbox_info info = { 0 };
	hs_error ferr = { 0 };
	/* 0 = the configured grace (the module's default). */
	rc = hs_sandbox_destroy_grace(mgr, &c, r->sandbox_id, (unsigned)r->grace_period_ms, &info,
				      &ferr);
	if (rc == HS_CONFLICT && hs_sandbox_get(mgr, &c, r->sandbox_id, &info, NULL) == HS_OK) {
		if (info.state == HS_SANDBOX_DESTROYED) /* idempotent */
			return sandbox_reply(call, HS_OK, &info, resp, err);
		hs_sandbox_info_dispose(&info);
	}
	if (rc != HS_OK)
		return hs_error_set(err, rc, "%s", ferr.msg);
	return sandbox_reply(call, rc, &info, resp, err);
}

/* --- lists ------------------------------------------------------------------------ */

static bool labels_match(const hs_sandbox_info *in, const Harness__V1__ListSandboxesRequest *r)
{
	for (size_t i = 0; i < r->n_label_selector; i++) {
		bool found = false;
		for (size_t j = 0; j < in->labels_len && !found; j++)
			found = strcmp(in->labels[j].key, r->label_selector[i]->key) == 0 &&
				strcmp(in->labels[j].value, r->label_selector[i]->value) == 0;
		if (!found)
			return false;
	}
	return true;
}

static int list_sandboxes(hs_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__ListSandboxesRequest *r = (const void *)req;
	hs_sandbox_caller c = caller_of(call);
	if (r->page_size < 0)
		return hs_error_set(err, HS_INVALID, "page_size: must not be negative");
	if ((int)r->state < 0 || (int)r->state > HS_SANDBOX_DESTROYED)
		return hs_error_set(err, HS_INVALID, "state: unknown value %d", (int)r->state);
	int rc = check_task_id(r->task_id, err);
	if (rc != HS_OK)
		return rc;
	if (r->owner[0] != '\0' && !c.who.is_admin && strcmp(r->owner, c.who.user_id) != 0)
		return hs_error_set(err, HS_DENIED, "owner: only admins may list other users' sandboxes");
	if (strlen(r->page_token) > 512) /* the module checks it; this bounds the work */
		return hs_error_set(err, HS_INVALID, "page_token: not a token from this server");
	hs_sandbox_filter f = { 0 };
	f.state = (int)r->state;
	f.task_id = r->task_id;
	f.owner = r->owner;
	f.page_size = r->page_size == 0 ? DEFAULT_PAGE
					: (r->page_size > MAX_PAGE ? MAX_PAGE : (size_t)r->page_size);
	f.page_token = r->page_token;
	hs_sandbox_info *infos = NULL;
	size_t n = 0;
	char *next = NULL;
	rc = hs_sandbox_list(hs_rpc_call_payload(call), &c, &f, &infos, &n, &next, err);
	if (rc != HS_OK)
		return rc;
	Harness__V1__ListSandboxesResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		goto done;
	}
	harness__v1__list_sandboxes_response__init(m);
	m->next_page_token = hs_rpc_call_strdup(call, next ? next : "");
	m->sandboxes = hs_rpc_call_alloc(call, (n ? n : 1) * sizeof(*m->sandboxes));
	if (m->sandboxes == NULL || m->next_page_token == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		if (!labels_match(&infos[i], r))
			continue;
		SandboxMsg *s = sandbox_msg(call, &infos[i]);
		if (s == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
			goto done;
		}
		m->sandboxes[m->n_sandboxes++] = s;
	}
	*resp = &m->base;
done:
	hs_sandbox_info_array_free(infos, n);
	free(next);
	return rc;
}

static int list_snapshots(hs_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__ListSnapshotsRequest *r = (const void *)req;
	int rc = hs_id_check_name("sandbox_id", r->sandbox_id, err);
	if (rc != HS_OK)
		return rc;
	hs_sandbox_caller c = caller_of(call);
	hs_sandbox_snapshot_info *snaps = NULL;
	size_t n = 0;
	rc = hs_sandbox_list_snapshots(hs_rpc_call_payload(call), &c, r->sandbox_id, &snaps, &n,
				       err);
	if (rc != HS_OK)
		return rc;
	Harness__V1__ListSnapshotsResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m != NULL) {
		harness__v1__list_snapshots_response__init(m);
		m->snapshots = hs_rpc_call_alloc(call, (n ? n : 1) * sizeof(*m->snapshots));
	}
	if (m == NULL || m->snapshots == NULL) {
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		goto done;
	}
	for (size_t i = n; i-- > 0;) { /* the module lists oldest first */
		SnapshotMsg *s = snapshot_msg(call, &snaps[i]);
		if (s == NULL) {
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
			goto done;
		}
		m->snapshots[m->n_snapshots++] = s;
	}
	*resp = &m->base;
done:
	hs_sandbox_snapshot_info_array_free(snaps, n);
	return rc;
}

/* --- snapshots ----------------------------------------------------------------- */

/* The module snapshots PAUSED VMs only (Firecracker's rule); the proto also
 * takes a RUNNING one, paused for the duration and resumed unless
 * leave_paused. */
static int snapshot_sandbox(hs_rpc_call *call, const ProtobufCMessage *req,
			    ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__SnapshotSandboxRequest *r = (const void *)req;
	int rc = hs_id_check_name("sandbox_id", r->sandbox_id, err);
	if (rc != HS_OK)
		return rc;
	hs_sandbox_snapshot_type type;
	switch (r->snapshot_type) {
	case HARNESS__V1__SNAPSHOT_TYPE__SNAPSHOT_TYPE_UNSPECIFIED:
	case HARNESS__V1__SNAPSHOT_TYPE__SNAPSHOT_TYPE_FULL:
		type = HS_SNAPSHOT_FULL;
		break;
	case HARNESS__V1__SNAPSHOT_TYPE__SNAPSHOT_TYPE_DIFF:
		type = HS_SNAPSHOT_DIFF;
		break;
	default:
		return hs_error_set(err, HS_INVALID, "snapshot_type: unknown value %d",
				    (int)r->snapshot_type);
	}
	hs_sandbox_mgr *mgr = hs_rpc_call_payload(call);
	hs_sandbox_caller c = caller_of(call);
	hs_sandbox_info info = { 0 };
	if ((rc = hs_sandbox_get(mgr, &c, r->sandbox_id, &info, err)) != HS_OK)
		return rc;
	bool paused_here = info.state == HS_SANDBOX_RUNNING && strcmp(info.driver, "bwrap") != 0;
	hs_sandbox_info_dispose(&info);
	if (paused_here && (rc = hs_sandbox_pause(mgr, &c, r->sandbox_id, NULL, err)) != HS_OK)
		return rc;
	hs_sandbox_snapshot_info snap = { 0 };
	rc = hs_sandbox_snapshot(mgr, &c, r->sandbox_id, type, &snap, err);
	if (paused_here && !(rc == HS_OK && r->leave_paused)) {
		hs_error rerr = { 0 };
		int rrc = hs_sandbox_resume(mgr, &c, r->sandbox_id, NULL, &rerr);
		if (rc == HS_OK && rrc != HS_OK)
			rc = hs_error_set(err, rrc, "snapshot %s taken, but resuming failed: %s",
					  snap.snapshot_id, rerr.msg);
	}
	if (rc == HS_OK) {
		SnapshotMsg *m = snapshot_msg(call, &snap);
		if (m == NULL)
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		else
			*resp = &m->base;
	}
	hs_sandbox_snapshot_info_dispose(&snap);
	return rc;
}

static int restore_sandbox(hs_rpc_call *call, const ProtobufCMessage *req,
			   ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__RestoreSandboxRequest *r = (const void *)req;
	int rc = hs_id_check_name("sandbox_id", r->sandbox_id, err);
	if (rc != HS_OK)
		return rc;
	if (r->snapshot_id[0] != '\0' && (rc = hs_id_check_name("snapshot_id", r->snapshot_id, err)) != HS_OK)
		return rc;
	hs_sandbox_caller c = caller_of(call);
	hs_sandbox_info info = { 0 };
	rc = hs_sandbox_restore(hs_rpc_call_payload(call), &c, r->sandbox_id, r->snapshot_id,
				r->resume, &info, err);
	return sandbox_reply(call, rc, &info, resp, err);
}

int hs_sandbox_service_register(hs_rpc_server *srv, hs_sandbox_mgr *mgr, hs_error *err)
{
	static const hs_rpc_handler handlers[] = {
		{ "CreateSandbox", HS_RPC_UNARY, HS_RPC_BLOCKING, create_sandbox, NULL },
		{ "StartSandbox", HS_RPC_UNARY, HS_RPC_BLOCKING, start_sandbox, NULL },
		{ "GetSandbox", HS_RPC_UNARY, HS_RPC_BLOCKING, get_sandbox, NULL },
		{ "ListSandboxes", HS_RPC_UNARY, HS_RPC_BLOCKING, list_sandboxes, NULL },
		{ "PauseSandbox", HS_RPC_UNARY, HS_RPC_BLOCKING, pause_sandbox, NULL },
		{ "ResumeSandbox", HS_RPC_UNARY, HS_RPC_BLOCKING, resume_sandbox, NULL },
		{ "SnapshotSandbox", HS_RPC_UNARY, HS_RPC_LONG, snapshot_sandbox, NULL },
		{ "RestoreSandbox", HS_RPC_UNARY, HS_RPC_LONG, restore_sandbox, NULL },
		{ "DestroySandbox", HS_RPC_UNARY, HS_RPC_LONG, destroy_sandbox, NULL },
		{ "ListSnapshots", HS_RPC_UNARY, HS_RPC_BLOCKING, list_snapshots, NULL },
	};
	return hs_rpc_server_add_service(srv, &harness__v1__sandbox_service__descriptor, handlers,
					 sizeof(handlers) / sizeof(handlers[0]), mgr, err);
}
