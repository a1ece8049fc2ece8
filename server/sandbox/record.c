/* Conversions between a CreateSandbox spec, the driver record, the store row
 * (its config_json and labels_json columns) and the info callers get. */
#include "sandbox_internal.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void hs_sandbox__gen_id(const char *prefix, char *out, size_t cap)
{
	unsigned char r[8] = { 0 };
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, r, sizeof(r)) != (ssize_t)sizeof(r))
			memset(r, 0, sizeof(r));
		close(fd);
	}
	snprintf(out, cap, "%s%02x%02x%02x%02x%02x%02x%02x%02x", prefix, r[0], r[1], r[2], r[3],
		 r[4], r[5], r[6], r[7]);
}

/* Fields that only one driver understands (the other would ignore them). */
int hs_sandbox__check_driver_fields(const hs_sandbox__driver *drv, const hs_sandbox_spec *spec,
				    hs_error *err)
{
	bool fc = drv == &hs_sandbox__fc_driver;
	if (fc && spec->entrypoint_len > 0)
		return hs_error_set(err, HS_INVALID,
				    "entrypoint: bwrap only (a microVM runs its guest's init)");
	if (fc && spec->env_len > 0)
		return hs_error_set(err, HS_INVALID, "env: bwrap only");
	if (fc && spec->network)
		return hs_error_set(err, HS_INVALID,
				    "network_enabled: must be false for firecracker (use network_interfaces)");
	if (fc && spec->workspace != NULL && spec->workspace[0] != '\0')
		return hs_error_set(err, HS_INVALID, "workspace: bwrap only");
	if (!fc && spec->kernel_image_path != NULL && spec->kernel_image_path[0] != '\0')
		return hs_error_set(err, HS_INVALID, "kernel_image_path: firecracker only");
	if (!fc && spec->rootfs_path != NULL && spec->rootfs_path[0] != '\0')
		return hs_error_set(err, HS_INVALID,
				    "rootfs_path: not supported by the bwrap driver (the host root is bound read-only)");
	if (!fc && spec->boot_args != NULL && spec->boot_args[0] != '\0')
		return hs_error_set(err, HS_INVALID, "boot_args: firecracker only");
	if (!fc && (spec->nics_len > 0 || (spec->tap_dev != NULL && spec->tap_dev[0] != '\0')))
		return hs_error_set(err, HS_INVALID, "network_interfaces: firecracker only");
	return HS_OK;
}

static char *dup_or_null(const char *s)
{
	return (s != NULL && s[0] != '\0') ? strdup(s) : NULL;
}

static char **dup_vec(const char *const *v, size_t n)
{
	char **out = calloc(n + 1, sizeof(*out));
	for (size_t i = 0; out != NULL && i < n; i++)
		out[i] = strdup(v[i] ? v[i] : "");
	return out;
}

int hs_sandbox__rec_from_spec(hs_sandbox__rec *rec, const hs_sandbox_spec *spec,
			      const hs_sandbox_config *cfg, hs_error *err)
{
	rec->kernel_image_path = dup_or_null(spec->kernel_image_path && spec->kernel_image_path[0]
						     ? spec->kernel_image_path
						     : cfg->kernel_image);
	rec->rootfs_path = dup_or_null(spec->rootfs_path && spec->rootfs_path[0]
					       ? spec->rootfs_path
					       : cfg->rootfs_image);
	rec->boot_args = dup_or_null(spec->boot_args);
	rec->tap_dev = dup_or_null(spec->tap_dev);
	rec->guest_mac = dup_or_null(spec->guest_mac);
	rec->network = spec->network;
	if (spec->entrypoint_len > 0 &&
	    (rec->entrypoint = dup_vec(spec->entrypoint, spec->entrypoint_len)) == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	if (spec->env_len > 0) {
		rec->env = calloc(spec->env_len + 1, sizeof(*rec->env));
		for (size_t i = 0; rec->env != NULL && i < spec->env_len; i++) {
			const char *v = spec->env[i].value ? spec->env[i].value : "";
			size_t len = strlen(spec->env[i].key) + strlen(v) + 2;
			if ((rec->env[i] = malloc(len)) == NULL)
				return hs_error_set(err, HS_INTERNAL, "out of memory");
			snprintf(rec->env[i], len, "%s=%s", spec->env[i].key, v);
		}
		if (rec->env == NULL)
			return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	return HS_OK;
}

static json_t *vec_json(char **v)
{
	json_t *a = json_array();
	for (; v != NULL && *v != NULL; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

static char **json_vec(json_t *a)
{
	if (!json_is_array(a) || json_array_size(a) == 0)
		return NULL;
	size_t n = json_array_size(a);
	char **out = calloc(n + 1, sizeof(*out));
	for (size_t i = 0; out != NULL && i < n; i++) {
		const char *s = json_string_value(json_array_get(a, i));
		out[i] = strdup(s ? s : "");
	}
	return out;
}

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v != NULL)
		json_object_set_new(o, k, json_string(v));
}

int hs_sandbox__rec_to_config_json(const hs_sandbox__rec *rec, char *out, size_t cap,
				   hs_error *err)
{
	json_t *o = json_object();
	set_str(o, "kernel_image_path", rec->kernel_image_path);
	set_str(o, "rootfs_path", rec->rootfs_path);
	set_str(o, "boot_args", rec->boot_args);
	set_str(o, "tap_dev", rec->tap_dev);
	set_str(o, "guest_mac", rec->guest_mac);
	set_str(o, "workspace", rec->workspace);
	set_str(o, "workspace_name", rec->workspace_name);
	json_object_set_new(o, "limits", json_integer(rec->limits));
	json_object_set_new(o, "pids_max", json_integer(rec->pids_max));
	json_object_set_new(o, "network", json_boolean(rec->network));
	json_object_set_new(o, "entrypoint", vec_json(rec->entrypoint));
	json_object_set_new(o, "env", vec_json(rec->env));
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	int rc = HS_OK;
	if (s == NULL)
		rc = hs_error_set(err, HS_INTERNAL, "cannot encode sandbox config");
	else if (strlen(s) >= cap)
		rc = hs_error_set(err, HS_INVALID, "sandbox spec too large (%zu bytes, max %zu)",
				  strlen(s), cap - 1);
	else
		memcpy(out, s, strlen(s) + 1);
	free(s);
	return rc;
}

static char *get_dup(json_t *o, const char *k)
{
	return dup_or_null(json_string_value(json_object_get(o, k)));
}

int hs_sandbox__rec_from_config_json(hs_sandbox__rec *rec, const char *text, hs_error *err)
{
	json_t *o = json_loads(text, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return hs_error_set(err, HS_INTERNAL, "sandbox %s: bad config_json", rec->id);
	}
	rec->kernel_image_path = get_dup(o, "kernel_image_path");
	rec->rootfs_path = get_dup(o, "rootfs_path");
	rec->boot_args = get_dup(o, "boot_args");
	rec->tap_dev = get_dup(o, "tap_dev");
	rec->guest_mac = get_dup(o, "guest_mac");
	const char *ws = json_string_value(json_object_get(o, "workspace"));
	snprintf(rec->workspace, sizeof(rec->workspace), "%s", ws ? ws : "");
	ws = json_string_value(json_object_get(o, "workspace_name"));
	snprintf(rec->workspace_name, sizeof(rec->workspace_name), "%s", ws ? ws : "");
	rec->limits = (unsigned)json_integer_value(json_object_get(o, "limits"));
	rec->pids_max = (unsigned)json_integer_value(json_object_get(o, "pids_max"));
	rec->network = json_is_true(json_object_get(o, "network"));
	rec->entrypoint = json_vec(json_object_get(o, "entrypoint"));
	rec->env = json_vec(json_object_get(o, "env"));
	json_decref(o);
	return HS_OK;
}

void hs_sandbox__rec_dispose(hs_sandbox__rec *rec)
{
	free(rec->kernel_image_path);
	free(rec->rootfs_path);
	free(rec->boot_args);
	free(rec->tap_dev);
	free(rec->guest_mac);
	hs_sandbox__argv_free(rec->entrypoint);
	hs_sandbox__argv_free(rec->env);
	rec->kernel_image_path = rec->rootfs_path = rec->boot_args = NULL;
	rec->tap_dev = rec->guest_mac = NULL;
	rec->entrypoint = rec->env = NULL;
}

int hs_sandbox__labels_to_json(const hs_label *labels, size_t n, char *out, size_t cap,
			       hs_error *err)
{
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++) {
		if (labels[i].key == NULL || labels[i].key[0] == '\0') {
			json_decref(o);
			return hs_error_set(err, HS_INVALID, "labels: empty key");
		}
		json_object_set_new(o, labels[i].key,
				    json_string(labels[i].value ? labels[i].value : ""));
	}
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	int rc = HS_OK;
	if (s == NULL) /* keys and values were checked (common/labels.h) */
		rc = hs_error_set(err, HS_INTERNAL, "out of memory");
	else if (strlen(s) >= cap)
		rc = hs_error_set(err, HS_INVALID, "labels: too large (max %zu bytes)", cap - 1);
	else
		memcpy(out, s, strlen(s) + 1);
	free(s);
	return rc;
}

static char *xdup(const char *s, bool *oom)
{
	char *d = strdup(s ? s : "");
	if (d == NULL)
		*oom = true;
	return d;
}

int hs_sandbox__info_from_row(const hs_store_sandbox_row *row, hs_sandbox_info *out,
			      hs_error *err)
{
	hs_sandbox_info in = { 0 };
	bool oom = false;
	in.sandbox_id = xdup(row->sandbox_id, &oom);
	in.owner = xdup(row->owner, &oom);
	in.task_id = xdup(row->task_id, &oom);
	in.driver = xdup(row->driver, &oom);
	in.failure_reason = xdup(row->failure_reason, &oom);
	in.log_path = xdup(row->log_path, &oom);
	in.runtime_dir = xdup(row->runtime_dir, &oom);
	in.state = (hs_sandbox_state)row->state;
	in.pid = row->pid;
	in.vcpu_count = (unsigned)row->vcpu_count;
	in.mem_size_mib = (unsigned)row->mem_size_mib;
	in.ttl_seconds = row->ttl_seconds;
	in.expires_at_ms = row->expires_at_ms;
	in.created_at_ms = row->created_at_ms;
	in.started_at_ms = row->started_at_ms;
	in.stopped_at_ms = row->stopped_at_ms;
	in.has_exit_code = row->exit_code >= 0;
	in.exit_code = row->exit_code;
	json_t *o = json_loads(row->labels_json, 0, NULL);
	if (json_is_object(o) && json_object_size(o) > 0) {
		in.labels = calloc(json_object_size(o), sizeof(*in.labels));
		if (in.labels == NULL)
			oom = true;
		const char *k;
		json_t *v;
		json_object_foreach(o, k, v)
		{
			if (in.labels == NULL)
				break;
			in.labels[in.labels_len].key = xdup(k, &oom);
			in.labels[in.labels_len].value = xdup(json_string_value(v), &oom);
			in.labels_len++;
		}
	}
	json_decref(o);
	/* The spec part, from config_json (written by rec_to_config_json). */
	o = json_loads(row->config_json, 0, NULL);
	in.kernel_image_path = xdup(json_string_value(json_object_get(o, "kernel_image_path")), &oom);
	in.rootfs_path = xdup(json_string_value(json_object_get(o, "rootfs_path")), &oom);
	in.boot_args = xdup(json_string_value(json_object_get(o, "boot_args")), &oom);
	in.tap_dev = xdup(json_string_value(json_object_get(o, "tap_dev")), &oom);
	in.guest_mac = xdup(json_string_value(json_object_get(o, "guest_mac")), &oom);
	in.workspace = xdup(json_string_value(json_object_get(o, "workspace")), &oom);
	in.api_socket_path = xdup("", &oom);
	in.network_enabled = json_is_true(json_object_get(o, "network")) ||
			     (in.tap_dev != NULL && in.tap_dev[0] != '\0');
	in.entrypoint = json_vec(json_object_get(o, "entrypoint"));
	for (; in.entrypoint != NULL && in.entrypoint[in.entrypoint_len] != NULL;)
		in.entrypoint_len++;
	unsigned limits = (unsigned)json_integer_value(json_object_get(o, "limits"));
	in.memory_enforced = (limits & HS_LIMIT_MEMORY) != 0;
	in.cpu_enforced = (limits & HS_LIMIT_CPU) != 0;
	in.pids_enforced = (limits & HS_LIMIT_PIDS) != 0;
	in.pids_max = in.pids_enforced ? (unsigned)json_integer_value(json_object_get(o, "pids_max")) : 0;
	json_decref(o);
	if (oom) {
		hs_sandbox_info_dispose(&in);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	*out = in;
	return HS_OK;
}

void hs_sandbox_info_dispose(hs_sandbox_info *info)
{
	if (info == NULL)
		return;
	free(info->sandbox_id);
	free(info->owner);
	free(info->task_id);
	free(info->driver);
	free(info->failure_reason);
	free(info->log_path);
	free(info->runtime_dir);
	for (size_t i = 0; i < info->labels_len; i++) {
		free(info->labels[i].key);
		free(info->labels[i].value);
	}
	free(info->labels);
	free(info->kernel_image_path);
	free(info->rootfs_path);
	free(info->boot_args);
	free(info->tap_dev);
	free(info->guest_mac);
	free(info->workspace);
	free(info->api_socket_path);
	hs_sandbox__argv_free(info->entrypoint);
	memset(info, 0, sizeof(*info));
}

void hs_sandbox_info_array_free(hs_sandbox_info *infos, size_t n)
{
	for (size_t i = 0; infos != NULL && i < n; i++)
		hs_sandbox_info_dispose(&infos[i]);
	free(infos);
}

int hs_sandbox__snapshot_from_row(const hs_store_snapshot_row *row,
				  hs_sandbox_snapshot_info *out, hs_error *err)
{
	hs_sandbox_snapshot_info s = { 0 };
	bool oom = false;
	s.snapshot_id = xdup(row->snapshot_id, &oom);
	s.sandbox_id = xdup(row->sandbox_id, &oom);
	s.snapshot_path = xdup(row->snapshot_path, &oom);
	s.mem_file_path = xdup(row->mem_file_path, &oom);
	s.base_snapshot_id = xdup(row->base_snapshot_id, &oom);
	s.type = strcmp(row->type, "diff") == 0 ? HS_SNAPSHOT_DIFF : HS_SNAPSHOT_FULL;
	s.created_at_ms = row->created_at_ms;
	s.size_bytes = row->size_bytes;
	if (oom) {
		hs_sandbox_snapshot_info_dispose(&s);
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	}
	*out = s;
	return HS_OK;
}

void hs_sandbox_snapshot_info_dispose(hs_sandbox_snapshot_info *snap)
{
	if (snap == NULL)
		return;
	free(snap->snapshot_id);
	free(snap->sandbox_id);
	free(snap->snapshot_path);
	free(snap->mem_file_path);
	free(snap->base_snapshot_id);
	memset(snap, 0, sizeof(*snap));
}

void hs_sandbox_snapshot_info_array_free(hs_sandbox_snapshot_info *snaps, size_t n)
{
	for (size_t i = 0; snaps != NULL && i < n; i++)
		hs_sandbox_snapshot_info_dispose(&snaps[i]);
	free(snaps);
}
