// The hub's sqlite database: opening, pragmas and versioned migrations.
// Migrations are append-only; `user_version` records how many have run. A
// database from a newer hub is refused rather than guessed at.
import Database from 'better-sqlite3';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../shared/errors.js';

export type DB = Database.Database;

export const DB_FILE = 'ferry-hub.db';

const MIGRATIONS: readonly string[] = [
  // 1: operators, tenants, enrollment, agents
  `
  CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    created_by   TEXT,
    revoked_at   INTEGER,
    last_used_at INTEGER
  );
  CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE enrollment_tokens (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    TEXT
  );
  CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    name          TEXT NOT NULL,
    public_key    TEXT NOT NULL UNIQUE,
    labels        TEXT NOT NULL DEFAULT '{}',
    enrolled_at   INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoked_by    TEXT,
    last_seen_at  INTEGER,
    agent_version TEXT,
    facts         TEXT
  );
  CREATE INDEX agents_tenant ON agents(tenant_id);
  `,
  // 2: trust roots, releases and their signatures, directives
  `
  CREATE TABLE trust_roots (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    version      INTEGER NOT NULL,
    payload      BLOB NOT NULL,
    signatures   TEXT NOT NULL DEFAULT '[]',
    created_at   INTEGER NOT NULL,
    created_by   TEXT,
    activated_at INTEGER,
    PRIMARY KEY (tenant_id, version)
  );
  CREATE TABLE releases (
    id         TEXT PRIMARY KEY,
    stack      TEXT NOT NULL,
    version    TEXT NOT NULL,
    payload    BLOB NOT NULL,
    digest     TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT,
    UNIQUE (stack, version)
  );
  CREATE TABLE release_signatures (
    release_id TEXT NOT NULL REFERENCES releases(id),
    keyid      TEXT NOT NULL,
    public_key TEXT NOT NULL,
    sig        TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT,
    PRIMARY KEY (release_id, keyid)
  );
  CREATE TABLE directives (
    agent_id   TEXT NOT NULL REFERENCES agents(id),
    seq        INTEGER NOT NULL,
    digest     TEXT NOT NULL,
    envelope   TEXT NOT NULL,
    releases   TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    created_by TEXT,
    status     TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'refused')),
    code       TEXT,
    message    TEXT,
    acked_at   INTEGER,
    PRIMARY KEY (agent_id, seq)
  );
  `,
  // 3: audit logs (append-only: triggers refuse UPDATE and DELETE)
  `
  CREATE TABLE audit_entries (
    log       TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    data      BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    PRIMARY KEY (log, idx)
  );
  CREATE TABLE audit_personal (
    log       TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    field     TEXT NOT NULL,
    salt      BLOB NOT NULL,
    value     TEXT,
    erased_at INTEGER,
    PRIMARY KEY (log, idx, field)
  );
  CREATE TABLE audit_checkpoints (
    log      TEXT NOT NULL,
    size     INTEGER NOT NULL,
    root     BLOB NOT NULL,
    at       INTEGER NOT NULL,
    envelope TEXT NOT NULL,
    PRIMARY KEY (log, size, root)
  );
  CREATE TABLE audit_cosignatures (
    log      TEXT NOT NULL,
    size     INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    sig      TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (log, size, agent_id)
  );
  CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_cosignatures_no_update BEFORE UPDATE ON audit_cosignatures BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_cosignatures_no_delete BEFORE DELETE ON audit_cosignatures BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_personal_erase_only BEFORE UPDATE ON audit_personal
    WHEN NEW.value IS NOT NULL OR NEW.salt IS NOT OLD.salt OR NEW.log IS NOT OLD.log OR NEW.idx IS NOT OLD.idx OR NEW.field IS NOT OLD.field
    BEGIN SELECT RAISE(ABORT, 'personal data can only be erased'); END;
  CREATE TRIGGER audit_personal_no_delete BEFORE DELETE ON audit_personal BEGIN SELECT RAISE(ABORT, 'erase personal data by setting it to NULL'); END;
  `,
  // 4: what runs on each agent, as it last reported
  `
  ALTER TABLE agents ADD COLUMN status TEXT;
  ALTER TABLE agents ADD COLUMN status_at INTEGER;
  `,
  // 5: rollouts (R-<num>) and their per-agent targets
  `
  CREATE TABLE rollouts (
    num               INTEGER PRIMARY KEY AUTOINCREMENT,
    stack             TEXT NOT NULL,
    version           TEXT NOT NULL,
    selector          TEXT NOT NULL,
    wave_spec         TEXT NOT NULL,
    waves             TEXT NOT NULL,
    wave              INTEGER NOT NULL DEFAULT -1,
    state             TEXT NOT NULL CHECK (state IN ('running', 'paused', 'succeeded', 'failed', 'aborted', 'rolling-back', 'rolled-back')),
    since             INTEGER NOT NULL,
    reason            TEXT,
    bake_ms           INTEGER NOT NULL,
    max_failures      INTEGER NOT NULL,
    failures_accepted INTEGER NOT NULL DEFAULT 0,
    on_failure        TEXT NOT NULL CHECK (on_failure IN ('pause', 'rollback')),
    agent_timeout_ms  INTEGER NOT NULL,
    on_timeout        TEXT NOT NULL CHECK (on_timeout IN ('failed', 'skip')),
    retry_ms          INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    created_by        TEXT
  );
  CREATE TABLE rollout_targets (
    rollout    INTEGER NOT NULL REFERENCES rollouts(num),
    agent_id   TEXT NOT NULL REFERENCES agents(id),
    tenant     TEXT NOT NULL,
    position   INTEGER NOT NULL,
    state      TEXT NOT NULL,
    seq        INTEGER,
    previous   TEXT,
    started_at INTEGER,
    applied_at INTEGER,
    retry_at   INTEGER,
    code       TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (rollout, agent_id)
  );
  CREATE INDEX rollout_targets_position ON rollout_targets(rollout, position);
  `,
  // 6: rollout transitions as a resumable event stream (GET /v1/events; hub/events.ts).
  // Triggers write each event in the transaction that makes the transition, so an event
  // exists exactly when its transition committed. Ids never repeat (AUTOINCREMENT), even
  // after old events are pruned. A wave's start also moves its targets pending -> waiting;
  // the wave event stands for those.
  `
  CREATE TABLE rollout_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    rollout    INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('rollout', 'wave', 'target', 'directive')),
    from_state TEXT,
    to_state   TEXT,
    reason     TEXT,
    wave       INTEGER,
    agent_id   TEXT,
    tenant     TEXT,
    seq        INTEGER,
    version    TEXT,
    code       TEXT
  );
  CREATE INDEX rollout_events_rollout ON rollout_events(rollout, id);
  CREATE TRIGGER rollout_events_create AFTER INSERT ON rollouts BEGIN
    INSERT INTO rollout_events (at, rollout, kind, to_state, reason) VALUES (NEW.created_at, NEW.num, 'rollout', NEW.state, 'created');
  END;
  CREATE TRIGGER rollout_events_state AFTER UPDATE OF state ON rollouts BEGIN
    INSERT INTO rollout_events (at, rollout, kind, from_state, to_state, reason) VALUES (NEW.since, NEW.num, 'rollout', OLD.state, NEW.state, NEW.reason);
  END;
  CREATE TRIGGER rollout_events_wave AFTER UPDATE OF wave ON rollouts WHEN NEW.wave > OLD.wave BEGIN
    INSERT INTO rollout_events (at, rollout, kind, wave) VALUES (CAST(unixepoch('subsec') * 1000 AS INTEGER), NEW.num, 'wave', NEW.wave + 1);
  END;
  CREATE TRIGGER rollout_events_target AFTER UPDATE OF state ON rollout_targets
    WHEN NOT (OLD.state = 'pending' AND NEW.state = 'waiting') BEGIN
    INSERT INTO rollout_events (at, rollout, kind, from_state, to_state, agent_id, tenant, seq, version, code)
    SELECT NEW.updated_at, NEW.rollout, CASE WHEN d THEN 'directive' ELSE 'target' END, OLD.state, NEW.state, NEW.agent_id, NEW.tenant,
           CASE WHEN d THEN NEW.seq END,
           CASE WHEN d THEN (CASE WHEN NEW.state = 'reverting' THEN NEW.previous ELSE (SELECT version FROM rollouts WHERE num = NEW.rollout) END) END,
           CASE WHEN d THEN NULL ELSE NEW.code END
      FROM (SELECT NEW.seq IS NOT OLD.seq AS d);
  END;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

const statements = new WeakMap<DB, Map<string, Database.Statement>>();

/**
 * The statement for `text`, prepared once per database: better-sqlite3
 * compiles anew on every `prepare`, which was a fifth of the hub's CPU in a
 * 10,000-agent rollout (bench/rollout). For `get`, `all` and `run` only: a
 * statement being iterated stays busy until the loop ends.
 */
export function stmt(db: DB, text: string): Database.Statement {
  let cache = statements.get(db);
  if (!cache) statements.set(db, (cache = new Map()));
  let s = cache.get(text);
  if (!s) cache.set(text, (s = db.prepare(text)));
  return s;
}

export function dbPath(dataDir: string): string {
  return join(dataDir, DB_FILE);
}

/**
 * Opens the database in `dataDir`. With `create`, makes the directory and an
 * empty database; without it, a missing database is an error (so `serve` on a
 * mistyped path does not silently start an empty hub).
 */
export function openDb(dataDir: string, opts: { create?: boolean } = {}): DB {
  const file = dbPath(dataDir);
  const exists = existsSync(file);
  if (opts.create && exists) throw new FerryError('FERRY_E_HUB_ALREADY_INITIALISED', file);
  if (!opts.create && !exists) throw new FerryError('FERRY_E_HUB_NOT_INITIALISED', file);
  if (opts.create) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  let db: DB;
  try {
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
  } catch (err) {
    throw new FerryError('FERRY_E_DB', `${file}: ${(err as Error).message}`, { cause: err });
  }
  migrate(db);
  return db;
}

function migrate(db: DB): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    db.close();
    throw new FerryError('FERRY_E_DB_VERSION', `schema ${current}, this hub knows up to ${SCHEMA_VERSION}`);
  }
  for (let v = current; v < SCHEMA_VERSION; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
