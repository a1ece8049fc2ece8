/* The store's schema history. Entry i takes the schema from version i to
 * i + 1 (PRAGMA user_version); store.c runs each pending entry in its own
 * transaction. Never edit a released entry: append a new one. */
#include "store_internal.h"

const char *const hs_store__migrations[] = {
	/* 1: initial schema */
	"CREATE TABLE users ("
	"  id TEXT PRIMARY KEY,"
	"  email TEXT NOT NULL UNIQUE,"
	"  name TEXT NOT NULL DEFAULT '',"
	"  role TEXT NOT NULL CHECK (role IN ('user', 'admin')),"
	"  password_hash TEXT NOT NULL DEFAULT '',"
	"  created_at_ms INTEGER NOT NULL,"
	"  disabled INTEGER NOT NULL DEFAULT 0"
	") WITHOUT ROWID;"
	"CREATE TABLE refresh_tokens ("
	"  token_hash TEXT PRIMARY KEY,"
	"  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	"  family_id TEXT NOT NULL,"
	"  issued_at_ms INTEGER NOT NULL,"
	"  expires_at_ms INTEGER NOT NULL,"
	"  used_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  revoked INTEGER NOT NULL DEFAULT 0"
	") WITHOUT ROWID;"
	"CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);"
	"CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);"
	"CREATE INDEX refresh_tokens_expires ON refresh_tokens(expires_at_ms);"
	"CREATE TABLE sandboxes ("
	"  sandbox_id TEXT PRIMARY KEY,"
	"  owner TEXT NOT NULL,"
	"  task_id TEXT NOT NULL DEFAULT '',"
	"  driver TEXT NOT NULL DEFAULT '',"
	"  state INTEGER NOT NULL,"
	"  pid INTEGER NOT NULL DEFAULT 0,"
	"  pid_start_time INTEGER NOT NULL DEFAULT 0,"
	"  vcpu_count INTEGER NOT NULL DEFAULT 0,"
	"  mem_size_mib INTEGER NOT NULL DEFAULT 0,"
	"  ttl_seconds INTEGER NOT NULL DEFAULT 0,"
	"  expires_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  created_at_ms INTEGER NOT NULL,"
	"  started_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  exit_code INTEGER NOT NULL DEFAULT 0,"
	"  failure_reason TEXT NOT NULL DEFAULT '',"
	"  config_json TEXT NOT NULL DEFAULT '{}',"
	"  labels_json TEXT NOT NULL DEFAULT '{}',"
	"  log_path TEXT NOT NULL DEFAULT '',"
	"  runtime_dir TEXT NOT NULL DEFAULT ''"
	");"
	"CREATE INDEX sandboxes_owner ON sandboxes(owner, sandbox_id);"
	"CREATE INDEX sandboxes_task ON sandboxes(task_id);"
	"CREATE TABLE snapshots ("
	"  snapshot_id TEXT PRIMARY KEY,"
	"  sandbox_id TEXT NOT NULL REFERENCES sandboxes(sandbox_id) ON DELETE CASCADE,"
	"  type TEXT NOT NULL DEFAULT '',"
	"  created_at_ms INTEGER NOT NULL,"
	"  mem_file_path TEXT NOT NULL DEFAULT '',"
	"  snapshot_path TEXT NOT NULL DEFAULT '',"
	"  size_bytes INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE INDEX snapshots_sandbox ON snapshots(sandbox_id, created_at_ms);"
	"CREATE TABLE tasks ("
	"  task_id TEXT PRIMARY KEY,"
	"  owner TEXT NOT NULL,"
	"  state INTEGER NOT NULL,"
	"  total_steps INTEGER NOT NULL DEFAULT 0,"
	"  current_step INTEGER NOT NULL DEFAULT 0,"
	"  heartbeat_interval_ms INTEGER NOT NULL DEFAULT 0,"
	"  heartbeat_timeout_ms INTEGER NOT NULL DEFAULT 0,"
	"  sandbox_id TEXT NOT NULL DEFAULT '',"
	"  policy_max_attempts INTEGER NOT NULL DEFAULT 0,"
	"  policy_initial_backoff_ms INTEGER NOT NULL DEFAULT 0,"
	"  policy_multiplier REAL NOT NULL DEFAULT 0,"
	"  policy_max_backoff_ms INTEGER NOT NULL DEFAULT 0,"
	"  last_heartbeat_ms INTEGER NOT NULL DEFAULT 0,"
	"  registered_at_ms INTEGER NOT NULL,"
	"  recovery_attempts INTEGER NOT NULL DEFAULT 0,"
	"  last_checkpoint_id TEXT NOT NULL DEFAULT '',"
	"  cancel_requested INTEGER NOT NULL DEFAULT 0,"
	"  cpu_usage REAL NOT NULL DEFAULT 0,"
	"  memory_usage_mb REAL NOT NULL DEFAULT 0,"
	"  disk_usage_mb REAL NOT NULL DEFAULT 0,"
	"  details TEXT NOT NULL DEFAULT '',"
	"  failure_reason TEXT NOT NULL DEFAULT '',"
	"  workspace TEXT NOT NULL DEFAULT '',"
	"  labels_json TEXT NOT NULL DEFAULT '{}',"
	"  updated_at_ms INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE INDEX tasks_owner ON tasks(owner, task_id);"
	"CREATE INDEX tasks_state ON tasks(state);"
	"CREATE TABLE task_events ("
	"  event_id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  task_id TEXT NOT NULL,"
	"  type INTEGER NOT NULL,"
	"  step INTEGER NOT NULL DEFAULT 0,"
	"  checkpoint_id TEXT NOT NULL DEFAULT '',"
	"  message TEXT NOT NULL DEFAULT '',"
	"  attempt INTEGER NOT NULL DEFAULT 0,"
	"  state INTEGER NOT NULL DEFAULT 0,"
	"  occurred_at_ms INTEGER NOT NULL"
	");"
	"CREATE INDEX task_events_task ON task_events(task_id, event_id);"
	"CREATE TABLE store_probe ("
	"  id INTEGER PRIMARY KEY,"
	"  written_at_ms INTEGER NOT NULL"
	");",
	/* 2: sandboxes listed newest first (created_at_ms DESC, sandbox_id DESC,
	 * the keyset cursor of ListSandboxes: the index is scanned backwards);
	 * when a sandbox stopped; the full snapshot a diff snapshot layers on,
	 * backfilled for existing diffs as the newest full one before each (the
	 * rule restore has always used). */
	"CREATE INDEX sandboxes_created ON sandboxes(created_at_ms, sandbox_id);"
	"ALTER TABLE sandboxes ADD COLUMN stopped_at_ms INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE snapshots ADD COLUMN base_snapshot_id TEXT NOT NULL DEFAULT '';"
	"UPDATE snapshots SET base_snapshot_id = COALESCE(("
	"  SELECT f.snapshot_id FROM snapshots AS f"
	"  WHERE f.sandbox_id = snapshots.sandbox_id AND f.type = 'full'"
	"    AND (f.created_at_ms < snapshots.created_at_ms"
	"      OR (f.created_at_ms = snapshots.created_at_ms AND f.rowid < snapshots.rowid))"
	"  ORDER BY f.created_at_ms DESC, f.rowid DESC LIMIT 1), '')"
	" WHERE type = 'diff';",
	/* 3: task ids are one namespace per server: whoever first names a task
	 * id (RegisterTask, a checkpoint, a sandbox, a workspace) owns it and
	 * everything scoped to it. Registered tasks keep their owner. */
	"CREATE TABLE task_owners ("
	"  task_id TEXT PRIMARY KEY,"
	"  owner TEXT NOT NULL,"
	"  claimed_at_ms INTEGER NOT NULL"
	");"
	"CREATE INDEX task_owners_owner ON task_owners(owner);"
	"INSERT OR IGNORE INTO task_owners(task_id, owner, claimed_at_ms)"
	"  SELECT task_id, owner, registered_at_ms FROM tasks;",
	/* 4: auth. Revoked access tokens (users disabled or deleted, sessions
	 * logged out, single tokens), kept until every token they could match
	 * has expired; seq lets other processes catch up incrementally.
	 * Emails re-normalised with the one rule (common/email.h, registered
	 * as the SQL function hs_email_normalize): a row takes its normal form
	 * unless another row already holds it or an older row of the same
	 * normal form takes it (created_at_ms, then id); such a row keeps its
	 * old address, which login still finds by exact match, so no account
	 * is locked out. */
	"CREATE TABLE auth_revocations ("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  kind TEXT NOT NULL CHECK (kind IN ('user', 'session', 'token')),"
	"  id TEXT NOT NULL,"
	"  revoked_at_ms INTEGER NOT NULL,"
	"  expires_at_ms INTEGER NOT NULL,"
	"  UNIQUE (kind, id)"
	");"
	"CREATE INDEX auth_revocations_expires ON auth_revocations(expires_at_ms);"
	"UPDATE users SET email = hs_email_normalize(email)"
	" WHERE hs_email_normalize(email) IS NOT NULL"
	"   AND hs_email_normalize(email) <> email"
	"   AND NOT EXISTS (SELECT 1 FROM users AS o WHERE o.email = hs_email_normalize(users.email))"
	"   AND NOT EXISTS (SELECT 1 FROM users AS o"
	"     WHERE o.id <> users.id AND hs_email_normalize(o.email) = hs_email_normalize(users.email)"
	"       AND (o.created_at_ms < users.created_at_ms"
	"         OR (o.created_at_ms = users.created_at_ms AND o.id < users.id)));",
	/* 5: API keys, the identities of services. Stored by the hex SHA-256
	 * of the whole key (high-entropy secrets: a fast hash is enough);
	 * never the key. seq grows with every create and revoke so other
	 * processes sharing the store catch up incrementally; last_used_at_ms
	 * is written in batches and does not move seq. */
	"CREATE TABLE api_keys ("
	"  id TEXT PRIMARY KEY,"
	"  name TEXT NOT NULL,"
	"  role TEXT NOT NULL CHECK (role IN ('user', 'admin')),"
	"  secret_hash TEXT NOT NULL,"
	"  allowed_methods TEXT NOT NULL DEFAULT '',"
	"  created_by TEXT NOT NULL DEFAULT '',"
	"  created_at_ms INTEGER NOT NULL,"
	"  expires_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  last_used_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  revoked_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  seq INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE INDEX api_keys_seq ON api_keys(seq);",
	/* 6: recovery fencing. Every restore of a task's workspace starts a new
	 * recovery generation; the task remembers the generation its agent
	 * acknowledged, the one it had at registration, whether the current
	 * generation's restore finished and to which checkpoint (the resume
	 * point handed to agents until they acknowledge), the step of the
	 * latest checkpoint, and the deadline of the timer the state arms
	 * (backoff or acknowledgement), so a restart re-arms it unchanged.
	 * Events carry the generation they belong to. */
	"ALTER TABLE tasks ADD COLUMN recovery_generation INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN base_generation INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN acked_generation INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN restored INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN resume_checkpoint_id TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE tasks ADD COLUMN resume_step INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN last_checkpoint_step INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN deadline_ms INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE task_events ADD COLUMN recovery_generation INTEGER NOT NULL DEFAULT 0;",
	/* 7: several nodes on one store (used on PostgreSQL; on SQLite there
	 * is one node). Each node advertises itself (address for forwarding)
	 * with a lease it renews; a task's stall detection and recovery belong
	 * to the node holding the task's lease, whose fencing token grows by
	 * one whenever the lease changes hands. IF NOT EXISTS: only new
	 * tables, so a database forged back to an older version by a test
	 * (its tables kept) still migrates. */
	"CREATE TABLE IF NOT EXISTS nodes ("
	"  node_id TEXT PRIMARY KEY,"
	"  address TEXT NOT NULL DEFAULT '',"
	"  started_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  expires_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  updated_at_ms INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE TABLE IF NOT EXISTS task_leases ("
	"  task_id TEXT PRIMARY KEY,"
	"  node_id TEXT NOT NULL,"
	"  fence INTEGER NOT NULL,"
	"  expires_at_ms INTEGER NOT NULL"
	");"
	"CREATE INDEX IF NOT EXISTS task_leases_node ON task_leases(node_id);"
	"CREATE INDEX IF NOT EXISTS task_leases_expires ON task_leases(expires_at_ms);",
	/* 8: a sandbox belongs to the node that runs it (its process lives on
	 * that host): a node loads and re-adopts only its own rows; '' is
	 * the one node of a single-node store (every row made before). */
	"ALTER TABLE sandboxes ADD COLUMN node_id TEXT NOT NULL DEFAULT '';",
	/* 9: the order of ListTasks across nodes (hs_store_task_list_newest:
	 * registered_at_ms DESC, task_id; an admin's pages have no owner to
	 * narrow by): read in index order, LIMIT stops the scan, no sort. */
	"CREATE INDEX IF NOT EXISTS tasks_newest ON tasks(registered_at_ms DESC, task_id);",
	/* 10: as PostgreSQL's 10 (lease renewals without index upkeep): the
	 * index on task_leases.expires_at_ms goes. */
	"DROP INDEX IF EXISTS task_leases_expires;",
	/* 11: as PostgreSQL's 11 (ids in byte order). SQLite's TEXT columns
	 * already compare with BINARY (memcmp, strcmp's order): nothing to
	 * change; the entry keeps both histories at one version number. */
	"SELECT 1;",
};

const int hs_store__migration_count =
	(int)(sizeof(hs_store__migrations) / sizeof(hs_store__migrations[0]));
