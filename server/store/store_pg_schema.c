/* The PostgreSQL schema history: entry i takes the schema from version i
 * to i + 1, the same versions and tables as the SQLite history
 * (store_migrations.c) in PostgreSQL's dialect: INTEGER columns are
 * BIGINT (SQLite integers are 64-bit), REAL is DOUBLE PRECISION, an
 * AUTOINCREMENT key is a BIGSERIAL (a database sequence), and snapshots
 * carry SQLite's implicit rowid as an explicit BIGSERIAL column of that
 * name (insertion order breaks created_at_ms ties). store_pg.c runs each
 * pending entry in its own transaction under an advisory lock. Never edit a
 * released entry: append a new one, to both histories. */
#include "store_internal.h"

const char *const hs_store__pg_migrations[] = {
	/* 1: initial schema */
	"CREATE TABLE users ("
	"  id TEXT PRIMARY KEY,"
	"  email TEXT NOT NULL UNIQUE,"
	"  name TEXT NOT NULL DEFAULT '',"
	"  role TEXT NOT NULL CHECK (role IN ('user', 'admin')),"
	"  password_hash TEXT NOT NULL DEFAULT '',"
	"  created_at_ms BIGINT NOT NULL,"
	"  disabled BIGINT NOT NULL DEFAULT 0"
	");"
	"CREATE TABLE refresh_tokens ("
	"  token_hash TEXT PRIMARY KEY,"
	"  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	"  family_id TEXT NOT NULL,"
	"  issued_at_ms BIGINT NOT NULL,"
	"  expires_at_ms BIGINT NOT NULL,"
	"  used_at_ms BIGINT NOT NULL DEFAULT 0,"
	"  revoked BIGINT NOT NULL DEFAULT 0"
	");"
	"CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);"
	"CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);"
	"CREATE INDEX refresh_tokens_expires ON refresh_tokens(expires_at_ms);"
	"CREATE TABLE sandboxes ("
	"  sandbox_id TEXT PRIMARY KEY,"
	"  owner TEXT NOT NULL,"
	"  task_id TEXT NOT NULL DEFAULT '',"
	"  driver TEXT NOT NULL DEFAULT '',"
	"  state BIGINT NOT NULL,"
	"  pid BIGINT NOT NULL DEFAULT 0,"
	"  pid_start_time BIGINT NOT NULL DEFAULT 0,"
	"  vcpu_count BIGINT NOT NULL DEFAULT 0,"
	"  mem_size_mib BIGINT NOT NULL DEFAULT 0,"
	"  ttl_seconds BIGINT NOT NULL DEFAULT 0,"
	"  expires_at_ms BIGINT NOT NULL DEFAULT 0,"
	"  created_at_ms BIGINT NOT NULL,"
	"  started_at_ms BIGINT NOT NULL DEFAULT 0,"
	"  exit_code BIGINT NOT NULL DEFAULT 0,"
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
	"  created_at_ms BIGINT NOT NULL,"
	"  mem_file_path TEXT NOT NULL DEFAULT '',"
	"  snapshot_path TEXT NOT NULL DEFAULT '',"
	"  size_bytes BIGINT NOT NULL DEFAULT 0,"
	"  rowid BIGSERIAL NOT NULL"
	");"
	"CREATE INDEX snapshots_sandbox ON snapshots(sandbox_id, created_at_ms);"
	"CREATE TABLE tasks ("
	"  task_id TEXT PRIMARY KEY,"
	"  owner TEXT NOT NULL,"
	"  state BIGINT NOT NULL,"
	"  total_steps BIGINT NOT NULL DEFAULT 0,"
	"  current_step BIGINT NOT NULL DEFAULT 0,"
	"  heartbeat_interval_ms BIGINT NOT NULL DEFAULT 0,"
	"  heartbeat_timeout_ms BIGINT NOT NULL DEFAULT 0,"
	"  sandbox_id TEXT NOT NULL DEFAULT '',"
	"  policy_max_attempts BIGINT NOT NULL DEFAULT 0,"
	"  policy_initial_backoff_ms BIGINT NOT NULL DEFAULT 0,"
	"  policy_multiplier DOUBLE PRECISION NOT NULL DEFAULT 0,"
	"  policy_max_backoff_ms BIGINT NOT NULL DEFAULT 0,"
	"  last_heartbeat_ms BIGINT NOT NULL DEFAULT 0,"
	"  registered_at_ms BIGINT NOT NULL,"
	"  recovery_attempts BIGINT NOT NULL DEFAULT 0,"
	"  last_checkpoint_id TEXT NOT NULL DEFAULT '',"
	"  cancel_requested BIGINT NOT NULL DEFAULT 0,"
	"  cpu_usage DOUBLE PRECISION NOT NULL DEFAULT 0,"
	"  memory_usage_mb DOUBLE PRECISION NOT NULL DEFAULT 0,"
	"  disk_usage_mb DOUBLE PRECISION NOT NULL DEFAULT 0,"
	"  details TEXT NOT NULL DEFAULT '',"
	"  failure_reason TEXT NOT NULL DEFAULT '',"
	"  workspace TEXT NOT NULL DEFAULT '',"
	"  labels_json TEXT NOT NULL DEFAULT '{}',"
	"  updated_at_ms BIGINT NOT NULL DEFAULT 0"
	");"
	"CREATE INDEX tasks_owner ON tasks(owner, task_id);"
	"CREATE INDEX tasks_state ON tasks(state);"
	"CREATE TABLE task_events ("
	"  event_id BIGSERIAL PRIMARY KEY,"
	"  task_id TEXT NOT NULL,"
	"  type BIGINT NOT NULL,"
	"  step BIGINT NOT NULL DEFAULT 0,"
	"  checkpoint_id TEXT NOT NULL DEFAULT '',"
	"  message TEXT NOT NULL DEFAULT '',"
	"  attempt BIGINT NOT NULL DEFAULT 0,"
	"  state BIGINT NOT NULL DEFAULT 0,"
	"  occurred_at_ms BIGINT NOT NULL"
	");"
	"CREATE INDEX task_events_task ON task_events(task_id, event_id);"
	"CREATE TABLE store_probe ("
	"  id BIGINT PRIMARY KEY,"
	"  written_at_ms BIGINT NOT NULL"
	");",
	/* 2: as SQLite's 2 (newest-first sandbox index, stopped_at_ms, the full
	 * snapshot a diff layers on, backfilled by insertion order). */
	"CREATE INDEX sandboxes_created ON sandboxes(created_at_ms, sandbox_id);"
	"ALTER TABLE sandboxes ADD COLUMN stopped_at_ms BIGINT NOT NULL DEFAULT 0;"
	"ALTER TABLE snapshots ADD COLUMN base_snapshot_id TEXT NOT NULL DEFAULT '';"
	"UPDATE snapshots SET base_snapshot_id = COALESCE(("
	"  SELECT f.snapshot_id FROM snapshots AS f"
	"  WHERE f.sandbox_id = snapshots.sandbox_id AND f.type = 'full'"
	"    AND (f.created_at_ms < snapshots.created_at_ms"
	"      OR (f.created_at_ms = snapshots.created_at_ms AND f.rowid < snapshots.rowid))"
	"  ORDER BY f.created_at_ms DESC, f.rowid DESC LIMIT 1), '')"
	" WHERE type = 'diff';",
	/* 3: task ids are one namespace (as SQLite's 3). */
	"CREATE TABLE task_owners ("
	"  task_id TEXT PRIMARY KEY,"
	"  owner TEXT NOT NULL,"
	"  claimed_at_ms BIGINT NOT NULL"
	");"
	"CREATE INDEX task_owners_owner ON task_owners(owner);"
	"INSERT INTO task_owners(task_id, owner, claimed_at_ms)"
	"  SELECT task_id, owner, registered_at_ms FROM tasks ON CONFLICT DO NOTHING;",
	/* 4: access-token revocations (as SQLite's 4). SQLite's 4 also
	 * re-normalised emails written before the one email rule; no
	 * PostgreSQL database predates this code, so there is nothing to
	 * re-normalise. seq is a sequence (auth_revocations_seq_seq); a put
	 * takes a new value from it. */
	"CREATE TABLE auth_revocations ("
	"  seq BIGSERIAL PRIMARY KEY,"
	"  kind TEXT NOT NULL CHECK (kind IN ('user', 'session', 'token')),"
	"  id TEXT NOT NULL,"
	"  revoked_at_ms BIGINT NOT NULL,"
	"  expires_at_ms BIGINT NOT NULL,"
	"  UNIQUE (kind, id)"
	");"
	"CREATE INDEX auth_revocations_expires ON auth_revocations(expires_at_ms);",
	/* 5: API keys (as SQLite's 5). */
	"CREATE TABLE api_keys ("
	"  id TEXT PRIMARY KEY,"
	"  name TEXT NOT NULL,"
	"  role TEXT NOT NULL CHECK (role IN ('user', 'admin')),"
	"  secret_hash TEXT NOT NULL,"
	"  allowed_methods TEXT NOT NULL DEFAULT '',"
	"  created_by TEXT NOT NULL DEFAULT '',"
	"  created_at_ms BIGINT NOT NULL,"
	"  expires_at_ms BIGINT NOT NULL DEFAULT 0,"
	"  last_used_at_ms BIGINT NOT NULL DEFAULT 0,"
	"  revoked_at_ms BIGINT NOT NULL DEFAULT 0,"
	"  seq BIGINT NOT NULL"
	");"
	"CREATE INDEX api_keys_seq ON api_keys(seq);",
	/* 6: recovery fencing (as SQLite's 6). */
	"ALTER TABLE tasks ADD COLUMN recovery_generation BIGINT NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN base_generation BIGINT NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN acked_generation BIGINT NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN restored BIGINT NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN resume_checkpoint_id TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE tasks ADD COLUMN resume_step BIGINT NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN last_checkpoint_step BIGINT NOT NULL DEFAULT 0;"
	"ALTER TABLE tasks ADD COLUMN deadline_ms BIGINT NOT NULL DEFAULT 0;"
	"ALTER TABLE task_events ADD COLUMN recovery_generation BIGINT NOT NULL DEFAULT 0;",
	/* 7: nodes and task leases (as SQLite's 7), and every appended event
	 * is announced on the channel harness_task_events (payload: its
	 * event_id) when its transaction commits, for watchers on other nodes
	 * (LISTEN harness_task_events; fall back to polling by event id). */
	"CREATE TABLE nodes ("
	"  node_id TEXT PRIMARY KEY,"
	"  address TEXT NOT NULL DEFAULT '',"
	"  started_at_ms BIGINT NOT NULL DEFAULT 0,"
	"  expires_at_ms BIGINT NOT NULL DEFAULT 0,"
	"  updated_at_ms BIGINT NOT NULL DEFAULT 0"
	");"
	"CREATE TABLE task_leases ("
	"  task_id TEXT PRIMARY KEY,"
	"  node_id TEXT NOT NULL,"
	"  fence BIGINT NOT NULL,"
	"  expires_at_ms BIGINT NOT NULL"
	");"
	"CREATE INDEX task_leases_node ON task_leases(node_id);"
	"CREATE INDEX task_leases_expires ON task_leases(expires_at_ms);"
	"CREATE FUNCTION harness_task_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
	" BEGIN PERFORM pg_notify('harness_task_events', NEW.event_id::text); RETURN NULL; END $$;"
	"CREATE TRIGGER task_events_notify AFTER INSERT ON task_events"
	" FOR EACH ROW EXECUTE FUNCTION harness_task_event_notify();",
	/* 8: as SQLite's 8: the node that runs a sandbox ('' = rows made
	 * before; no node of a shared store loads them). */
	"ALTER TABLE sandboxes ADD COLUMN node_id TEXT NOT NULL DEFAULT '';",
	/* 9: as SQLite's 9: the order of ListTasks across nodes. */
	"CREATE INDEX IF NOT EXISTS tasks_newest ON tasks(registered_at_ms DESC, task_id);",
	/* 10: lease renewals as HOT updates (as SQLite's 10). A node renews
	 * every lease it holds each --task-lease-ms / 3; with an index on
	 * expires_at_ms each renewed row was a new tuple plus three index
	 * entries, and at 100,000 leases that WAL slowed every commit on the
	 * server (bench/README.md: detection lag p50 seconds). Without it,
	 * and with room on each page, a renewal rewrites the row in place;
	 * the expired-lease scan reads the table instead (a few ms per
	 * 100,000 leases, once per period per node). */
	"DROP INDEX IF EXISTS task_leases_expires; ALTER TABLE task_leases SET (fillfactor = 50);",
	/* 11: ids in byte order (SQLite's BINARY, C's strcmp), whatever the
	 * database's collation. The code pages and walks by these columns
	 * with a cursor it computes itself (task_id > $after ORDER BY
	 * task_id; the lease renewal's next cursor is the strcmp() greatest
	 * row renewed); under a linguistic collation (ICU en-US, en_US.utf8:
	 * the official image's default) "B" sorts after "a" there but before
	 * it in C, so a walk revisited rows forever and pages skipped or
	 * repeated ids. COLLATE "C" is byte order in every encoding; changing
	 * only the collation does not rewrite a table, and PostgreSQL rebuilds
	 * the indexes on the column (tasks_owner, tasks_newest, the primary
	 * keys), so the keyset queries keep their index scans. The columns a
	 * foreign key or a join compares with them follow, so both sides of
	 * each comparison have one collation. */
	"ALTER TABLE tasks ALTER COLUMN task_id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE task_leases ALTER COLUMN task_id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE task_owners ALTER COLUMN task_id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE task_events ALTER COLUMN task_id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE sandboxes ALTER COLUMN sandbox_id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE sandboxes ALTER COLUMN task_id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE snapshots ALTER COLUMN sandbox_id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE users ALTER COLUMN id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE refresh_tokens ALTER COLUMN user_id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE api_keys ALTER COLUMN id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE nodes ALTER COLUMN node_id TYPE TEXT COLLATE \"C\";"
	"ALTER TABLE task_leases ALTER COLUMN node_id TYPE TEXT COLLATE \"C\";",
};

const int hs_store__pg_migration_count =
	(int)(sizeof(hs_store__pg_migrations) / sizeof(hs_store__pg_migrations[0]));
