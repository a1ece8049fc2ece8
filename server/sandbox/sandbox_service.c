/* harness.v1.SandboxService over the sandbox module: only conversion
 * between protobuf and module calls, and the few idempotency rules the
 * proto promises (pause of a PAUSED sandbox, resume of a RUNNING one,
 * destroy of a DESTROYED one answer the sandbox as it is). Validation,
 * defaults, filtering and paging live in the module. Every handler blocks
 * (process start, Firecracker API calls, snapshot files) and runs on the
 * RPC worker pool. The two streams are in sandbox_stream_service.c. */
#include "sandbox_service.h"
#include "sandbox_service_internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_pb.h"
#include "harness/v1/sandbox.pb-c.h"

typedef Harness__V1__Sandbox SandboxMsg;
typedef Harness__V1__Snapshot SnapshotMsg;

hs_sandbox_caller hs_sandbox__caller_of(hs_rpc_call *call)
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
	Harness__V1__SandboxLimits *lim = hs_rpc_call_alloc(call, sizeof(*lim));
	if (lim == NULL)
		return NULL;
	harness__v1__sandbox_limits__init(lim);
	lim->memory = in->memory_enforced;
	lim->cpu = in->cpu_enforced;
	lim->pids = in->pids_enforced;
	lim->pids_max = (int32_t)in->pids_max;
	m->limits = lim;
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

/* A protobuf map as module label pairs (arena memory). */
static int pairs(hs_rpc_call *call, Harness__V1__CreateSandboxRequest__LabelsEntry **in, size_t n,
		 const hs_label **out, hs_error *err)
{
	*out = NULL;
	if (n == 0)
		return HS_OK;
	hs_label *v = hs_rpc_call_alloc(call, n * sizeof(*v));
	if (v == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		v[i].key = in[i]->key;
		v[i].value = in[i]->value;
	}
	*out = v;
	return HS_OK;
}

static int create_sandbox(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			  hs_error *err)
{
	const Harness__V1__CreateSandboxRequest *r = (const void *)req;
	int rc;
	hs_sandbox_spec spec = { 0 };
	spec.sandbox_id = r->sandbox_id;
	spec.driver = r->driver;
	spec.vcpu_count = r->vcpu_count;
	spec.mem_size_mib = r->mem_size_mib;
	spec.kernel_image_path = r->kernel_image_path;
	spec.rootfs_path = r->rootfs_path;
	spec.boot_args = r->boot_args;
	spec.entrypoint = (const char *const *)r->entrypoint;
	spec.entrypoint_len = r->n_entrypoint;
	spec.task_id = r->task_id;
	spec.workspace = r->workspace;
	spec.working_dir = r->working_dir;
	spec.ttl_seconds = r->ttl_seconds;
	spec.network = r->network_enabled;
	spec.nics_len = r->n_network_interfaces;
	if (r->n_network_interfaces > 0) {
		spec.iface_id = r->network_interfaces[0]->iface_id;
		spec.tap_dev = r->network_interfaces[0]->host_dev_name;
		spec.guest_mac = r->network_interfaces[0]->guest_mac;
	}
	spec.drives_len = r->n_drives;
	spec.rootfs_read_only = r->rootfs_read_only;
	spec.smt = r->smt;
	/* The labels and env map entries have the same layout (key, value). */
	if ((rc = pairs(call, r->labels, r->n_labels, &spec.labels, err)) != HS_OK ||
	    (rc = pairs(call, (Harness__V1__CreateSandboxRequest__LabelsEntry **)r->env, r->n_env,
			&spec.env, err)) != HS_OK)
		return rc;
	spec.labels_len = r->n_labels;
	spec.env_len = r->n_env;
	hs_sandbox_caller c = hs_sandbox__caller_of(call);
	hs_sandbox_info info = { 0 };
	rc = hs_sandbox_create(hs_rpc_call_payload(call), &c, &spec, &info, err);
	return sandbox_reply(call, rc, &info, resp, err);
}

/* --- one-sandbox calls ---------------------------------------------------------- */

typedef int (*one_fn)(hs_sandbox_mgr *, const hs_sandbox_caller *, const char *,
		      hs_sandbox_info *, hs_error *);

/* The module's error as the answer: message, reason and where (the node
 * holding the sandbox, from which the rpc core forwards the call). */
static int pass_error(hs_error *err, int rc, const hs_error *from)
{
	hs_error_set(err, rc, "%s", from->msg);
	hs_error_set_reason(err, from->reason);
	hs_error_set_where(err, from->where);
	return rc;
}

/* Runs fn; when it refuses with a wrong state and the sandbox already is in
 * `idem` (0 = none), answers the sandbox as it is (the proto's no-ops). */
static int one(hs_rpc_call *call, const char *id, one_fn fn, int idem, ProtobufCMessage **resp,
	       hs_error *err)
{
	hs_sandbox_mgr *mgr = hs_rpc_call_payload(call);
	hs_sandbox_caller c = hs_sandbox__caller_of(call);
	hs_sandbox_info info = { 0 };
	hs_error ferr = { 0 };
	int rc = fn(mgr, &c, id, &info, &ferr);
	if (rc == HS_CONFLICT && idem != 0 &&
	    hs_sandbox_get(mgr, &c, id, &info, NULL) == HS_OK) {
		if ((int)info.state == idem)
			return sandbox_reply(call, HS_OK, &info, resp, err);
		hs_sandbox_info_dispose(&info);
	}
	if (rc != HS_OK)
		return pass_error(err, rc, &ferr);
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
	int rc;
	hs_sandbox_mgr *mgr = hs_rpc_call_payload(call);
	hs_sandbox_caller c = hs_sandbox__caller_of(call);
	hs_sandbox_info info = { 0 };
	hs_error ferr = { 0 };
	/* 0 = the configured grace (the module's default). */
	rc = hs_sandbox_destroy_grace(mgr, &c, r->sandbox_id, r->grace_period_ms, &info,
				      &ferr);
	if (rc == HS_CONFLICT && hs_sandbox_get(mgr, &c, r->sandbox_id, &info, NULL) == HS_OK) {
		if (info.state == HS_SANDBOX_DESTROYED) /* idempotent */
			return sandbox_reply(call, HS_OK, &info, resp, err);
		hs_sandbox_info_dispose(&info);
	}
	if (rc != HS_OK)
		return pass_error(err, rc, &ferr);
	return sandbox_reply(call, rc, &info, resp, err);
}

/* --- lists ------------------------------------------------------------------------ */

static int list_sandboxes(hs_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__ListSandboxesRequest *r = (const void *)req;
	hs_sandbox_caller c = hs_sandbox__caller_of(call);
	hs_sandbox_filter f = { 0 };
	int rc;
	f.state = (int)r->state;
	f.task_id = r->task_id;
	f.owner = r->owner;
	f.page_size = r->page_size;
	f.page_token = r->page_token;
	if ((rc = pairs(call, (Harness__V1__CreateSandboxRequest__LabelsEntry **)r->label_selector,
			r->n_label_selector, &f.label_selector, err)) != HS_OK)
		return rc;
	f.label_selector_len = r->n_label_selector;
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
	int rc;
	hs_sandbox_caller c = hs_sandbox__caller_of(call);
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
	int rc;
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
	hs_sandbox_caller c = hs_sandbox__caller_of(call);
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
	int rc;
	hs_sandbox_caller c = hs_sandbox__caller_of(call);
	hs_sandbox_info info = { 0 };
	rc = hs_sandbox_restore(hs_rpc_call_payload(call), &c, r->sandbox_id, r->snapshot_id,
				r->resume, &info, err);
	return sandbox_reply(call, rc, &info, resp, err);
}

int hs_sandbox_service_register(hs_rpc_server *srv, hs_sandbox_mgr *mgr, hs_error *err)
{
	/* Calls naming one sandbox: one running on another node is forwarded
	 * there (server/rpc/forward.c; the streams as a whole,
	 * forward_stream.c). */
	enum { FWD = HS_RPC_FORWARD };
	static const hs_rpc_handler handlers[] = {
		{ "CreateSandbox", HS_RPC_UNARY, HS_RPC_BLOCKING, create_sandbox, NULL },
		{ "StartSandbox", HS_RPC_UNARY, HS_RPC_BLOCKING | FWD, start_sandbox, NULL },
		{ "GetSandbox", HS_RPC_UNARY, HS_RPC_BLOCKING | FWD, get_sandbox, NULL },
		{ "ListSandboxes", HS_RPC_UNARY, HS_RPC_BLOCKING, list_sandboxes, NULL },
		{ "PauseSandbox", HS_RPC_UNARY, HS_RPC_BLOCKING | FWD, pause_sandbox, NULL },
		{ "ResumeSandbox", HS_RPC_UNARY, HS_RPC_BLOCKING | FWD, resume_sandbox, NULL },
		{ "SnapshotSandbox", HS_RPC_UNARY, HS_RPC_LONG | FWD, snapshot_sandbox, NULL },
		{ "RestoreSandbox", HS_RPC_UNARY, HS_RPC_LONG | FWD, restore_sandbox, NULL },
		{ "DestroySandbox", HS_RPC_UNARY, HS_RPC_LONG | FWD, destroy_sandbox, NULL },
		{ "ListSnapshots", HS_RPC_UNARY, HS_RPC_BLOCKING | FWD, list_snapshots, NULL },
		/* Opening a stream blocks (files, the sandbox's init); the stream
		 * then runs on the module's I/O thread. */
		{ "GetSandboxLogs", HS_RPC_SERVER_STREAM, HS_RPC_BLOCKING | FWD, NULL,
		  hs_sandbox__svc_get_logs },
		{ "ExecSandbox", HS_RPC_BIDI_STREAM, HS_RPC_BLOCKING | HS_RPC_SELF_FINISH | FWD, NULL,
		  hs_sandbox__svc_exec },
	};
	return hs_rpc_server_add_service(srv, &harness__v1__sandbox_service__descriptor, handlers,
					 sizeof(handlers) / sizeof(handlers[0]), mgr, err);
}
