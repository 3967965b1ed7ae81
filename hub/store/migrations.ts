// Schema migrations for both backends. Append-only: a released migration
// never changes. sqlite counts them in `user_version`; PostgreSQL in the
// `ferry_schema` table. Both reach the same SCHEMA_VERSION with the same
// tables, so `ferry-hub migrate` can copy one into the other. A database from
// a newer hub is refused (FERRY_E_DB_VERSION), never guessed at.
import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { FerryError } from '../../shared/errors.js';

// 1-6: the hub before people and several replicas (kept verbatim).
const LEGACY: readonly string[] = [
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

// 7: people (users, per-tenant grants, sessions), API tokens bound to a user
// with a scope, presence leases for several replicas, rollout events written
// by the store instead of triggers, answers from agents, release deliveries.
const V7_SQL = `
  CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('person', 'service')),
    vendor_role   TEXT CHECK (vendor_role IN ('admin', 'operator', 'release-manager', 'viewer')),
    password_hash TEXT,
    disabled_at   INTEGER,
    locked_until  INTEGER,
    created_at    INTEGER NOT NULL,
    created_by    TEXT
  );
  CREATE TABLE user_grants (
    user_id    TEXT NOT NULL REFERENCES users(id),
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    role       TEXT NOT NULL CHECK (role IN ('tenant-admin', 'operator', 'approver', 'viewer')),
    created_at INTEGER NOT NULL,
    created_by TEXT,
    PRIMARY KEY (user_id, tenant_id)
  );
  CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id),
    csrf         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
  );
  CREATE INDEX sessions_user ON sessions(user_id);
  CREATE TABLE api_tokens_v7 (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id),
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'release-manager', 'viewer', 'tenant-admin', 'approver')),
    tenants      TEXT,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    created_by   TEXT,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
  );
  ALTER TABLE agents ADD COLUMN replica TEXT;
  ALTER TABLE agents ADD COLUMN lease_until INTEGER;
  DROP TRIGGER rollout_events_create;
  DROP TRIGGER rollout_events_state;
  DROP TRIGGER rollout_events_wave;
  DROP TRIGGER rollout_events_target;
  CREATE TABLE agent_answers (
    id         TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX directives_pending ON directives(agent_id) WHERE status = 'pending';
  CREATE TABLE release_tenants (
    release_id TEXT NOT NULL REFERENCES releases(id),
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    since      INTEGER NOT NULL,
    PRIMARY KEY (release_id, tenant_id)
  );
  CREATE TABLE agent_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
  );
  INSERT OR IGNORE INTO release_tenants (release_id, tenant_id, since)
    SELECT r.id, a.tenant_id, min(d.issued_at)
      FROM directives d JOIN agents a ON a.id = d.agent_id, json_each(d.releases) j JOIN releases r ON r.digest = json_extract(j.value, '$.digest')
     GROUP BY r.id, a.tenant_id;
`;

/** Lower-case user names made from old token names (which were free text). */
export function userNameFrom(tokenName: string): string {
  const n = tokenName.toLowerCase().replace(/[^a-z0-9._@-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 63).replace(/[^a-z0-9]+$/, '');
  return n || 'user';
}

const OLD_RANK = { viewer: 0, operator: 1, admin: 2 } as const;

/**
 * Tokens from before people existed become vendor-wide tokens of a person
 * named after the token, with their role; tokens sharing a name share the
 * person, who gets the highest of their roles.
 */
function migrateTokensToUsers(db: Database.Database): void {
  const tokens = db.prepare('SELECT * FROM api_tokens ORDER BY created_at').all() as { id: string; name: string; role: keyof typeof OLD_RANK; token_hash: string; created_at: number; created_by: string | null; revoked_at: number | null; last_used_at: number | null }[];
  const users = new Map<string, { id: string; role: keyof typeof OLD_RANK; createdAt: number }>();
  for (const t of tokens) {
    const name = userNameFrom(t.name);
    const u = users.get(name);
    if (!u) users.set(name, { id: `usr_${randomBytes(10).toString('hex')}`, role: t.role, createdAt: t.created_at });
    else if (OLD_RANK[t.role] > OLD_RANK[u.role]) u.role = t.role;
  }
  const insUser = db.prepare("INSERT INTO users (id, name, kind, vendor_role, created_at, created_by) VALUES (?, ?, 'person', ?, ?, 'migration-7')");
  for (const [name, u] of users) insUser.run(u.id, name, u.role, u.createdAt);
  const insTok = db.prepare('INSERT INTO api_tokens_v7 (id, user_id, name, role, tenants, token_hash, created_at, created_by, expires_at, revoked_at, last_used_at) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, NULL, ?, ?)');
  for (const t of tokens) insTok.run(t.id, users.get(userNameFrom(t.name))!.id, t.name, t.role, t.token_hash, t.created_at, t.created_by, t.revoked_at, t.last_used_at);
  db.exec('DROP TABLE api_tokens; ALTER TABLE api_tokens_v7 RENAME TO api_tokens; CREATE INDEX api_tokens_user ON api_tokens(user_id);');
}

// 8: images on their way into each bank's registry, as the agent last said
// (protocol 'relay', the whole list each time; GET /v1/agents/:id/images), and the pending targets of
// an agent found without a scan (pre-staging on reconnect).
function V8_SQL(text: string, int: string): string {
  return `
  CREATE TABLE agent_images (
    agent_id    ${text} PRIMARY KEY REFERENCES agents(id),
    images      ${text} NOT NULL,
    updated_at  ${int} NOT NULL
  );
  CREATE INDEX rollout_targets_agent ON rollout_targets(agent_id);
  `;
}

// 9: ChatOps (hub/chat/): platform transports and rooms (secrets encrypted at rest),
// chat accounts linked to people, one-time link codes, confirmations bound to a
// plan's hash, the tenants' approval rules, deploy locks, the notice outbox (sent
// by the leader, rate-limited and merged per room), cursors over what notices come
// from, agents' presence changes, requests already seen (replays), and the console
// rooms' messages (its chat panel reads them as a stream).
function V9_SQL(text: string, int: string, serial: string): string {
  return `
  CREATE TABLE chat_transports (
    name       ${text} PRIMARY KEY,
    platform   ${text} NOT NULL,
    config     ${text} NOT NULL,
    created_at ${int} NOT NULL,
    created_by ${text}
  );
  CREATE TABLE chat_rooms (
    id         ${text} PRIMARY KEY,
    transport  ${text} NOT NULL,
    room       ${text} NOT NULL,
    tenants    ${text},
    subscribe  ${text} NOT NULL,
    config     ${text} NOT NULL,
    created_at ${int} NOT NULL,
    created_by ${text},
    UNIQUE (transport, room)
  );
  CREATE TABLE chat_accounts (
    transport  ${text} NOT NULL,
    account    ${text} NOT NULL,
    user_id    ${text} NOT NULL,
    linked_at  ${int} NOT NULL,
    PRIMARY KEY (transport, account)
  );
  CREATE TABLE chat_link_codes (
    code_hash  ${text} PRIMARY KEY,
    user_id    ${text} NOT NULL,
    expires_at ${int} NOT NULL
  );
  CREATE TABLE chat_confirmations (
    code           ${text} PRIMARY KEY,
    room_id        ${text} NOT NULL,
    requester      ${text} NOT NULL,
    command        ${text} NOT NULL,
    plan           ${text} NOT NULL,
    plan_hash      ${text} NOT NULL,
    needs_approver ${int} NOT NULL,
    tenants        ${text} NOT NULL,
    state          ${text} NOT NULL,
    approver       ${text},
    thread         ${text},
    created_at     ${int} NOT NULL,
    expires_at     ${int} NOT NULL,
    updated_at     ${int} NOT NULL
  );
  CREATE INDEX chat_confirmations_open ON chat_confirmations(expires_at) WHERE state IN ('pending', 'confirmed');
  CREATE TABLE chat_policies (
    tenant     ${text} PRIMARY KEY,
    approval   ${text},
    updated_at ${int} NOT NULL
  );
  CREATE TABLE chat_locks (
    num        ${serial},
    stack      ${text} NOT NULL,
    selector   ${text} NOT NULL,
    tenants    ${text},
    reason     ${text} NOT NULL,
    created_by ${text},
    created_at ${int} NOT NULL,
    removed_at ${int},
    removed_by ${text}
  );
  CREATE TABLE chat_outbox (
    id         ${serial},
    room_id    ${text} NOT NULL,
    kind       ${text} NOT NULL,
    alarm      ${int} NOT NULL,
    body       ${text} NOT NULL,
    created_at ${int} NOT NULL,
    due_at     ${int} NOT NULL,
    sent_at    ${int},
    attempts   ${int} NOT NULL DEFAULT 0,
    digest     ${int},
    error      ${text}
  );
  CREATE INDEX chat_outbox_unsent ON chat_outbox(room_id, id) WHERE sent_at IS NULL;
  CREATE TABLE chat_cursors (
    name  ${text} PRIMARY KEY,
    value ${text} NOT NULL
  );
  CREATE TABLE chat_feed (
    id       ${serial},
    at       ${int} NOT NULL,
    kind     ${text} NOT NULL,
    agent_id ${text} NOT NULL,
    tenant   ${text} NOT NULL
  );
  CREATE TABLE chat_seen (
    transport  ${text} NOT NULL,
    seen_key   ${text} NOT NULL,
    expires_at ${int} NOT NULL,
    PRIMARY KEY (transport, seen_key)
  );
  CREATE TABLE chat_messages (
    id      ${serial},
    room_id ${text} NOT NULL,
    at      ${int} NOT NULL,
    kind    ${text} NOT NULL,
    author  ${text},
    text    ${text} NOT NULL,
    meta    ${text} NOT NULL
  );
  CREATE INDEX chat_messages_room ON chat_messages(room_id, id);
  `;
}

// 10: watching what runs. Each agent's checks as it last said (protocol 'checks': a snapshot and numbered
// transitions), their history (kept for the retention, idempotent by the agent's numbering), the agents'
// low-rate figures (/metrics aggregates them per tenant), alerts with their de-duplication state, and the
// webhook's outbox. Alerts and autoscale changes join the event stream: rollout_events takes kinds alert
// and scale, with no rollout, and a JSON `detail`.
function V10_SQL(text: string, int: string, serial: string): string {
  return `
  CREATE TABLE checks (
    agent_id   ${text} NOT NULL REFERENCES agents(id),
    tenant     ${text} NOT NULL,
    stack      ${text} NOT NULL,
    name       ${text} NOT NULL,
    version    ${text} NOT NULL,
    kind       ${text} NOT NULL,
    target     ${text} NOT NULL,
    state      ${text} NOT NULL CHECK (state IN ('pending', 'passing', 'failing')),
    since      ${int} NOT NULL,
    last_error ${text},
    updated_at ${int} NOT NULL,
    dirty      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, stack, name)
  );
  CREATE INDEX checks_tenant ON checks(tenant, state);
  CREATE INDEX checks_dirty ON checks(dirty) WHERE dirty = 1;
  CREATE TABLE check_events (
    agent_id    ${text} NOT NULL,
    n           ${int} NOT NULL,
    tenant      ${text} NOT NULL,
    stack       ${text} NOT NULL,
    name        ${text} NOT NULL,
    from_state  ${text} NOT NULL,
    to_state    ${text} NOT NULL,
    at          ${int} NOT NULL,
    error       ${text},
    received_at ${int} NOT NULL,
    PRIMARY KEY (agent_id, n)
  );
  CREATE INDEX check_events_check ON check_events(agent_id, stack, name, at);
  CREATE INDEX check_events_received ON check_events(received_at);
  CREATE TABLE agent_figures (
    agent_id           ${text} PRIMARY KEY REFERENCES agents(id),
    tenant             ${text} NOT NULL,
    at                 ${int} NOT NULL,
    containers         INTEGER NOT NULL,
    containers_running INTEGER NOT NULL,
    services_healthy   INTEGER NOT NULL,
    services_unhealthy INTEGER NOT NULL,
    checks_passing     INTEGER NOT NULL,
    checks_failing     INTEGER NOT NULL,
    checks_pending     INTEGER NOT NULL,
    rss_bytes          ${int} NOT NULL,
    cpu_ms             ${int} NOT NULL
  );
  CREATE TABLE alerts (
    key            ${text} PRIMARY KEY,
    kind           ${text} NOT NULL,
    tenant         ${text},
    agent_id       ${text},
    rollout        ${int},
    state          ${text} NOT NULL CHECK (state IN ('firing', 'resolved')),
    since          ${int} NOT NULL,
    summary        ${text} NOT NULL,
    detail         ${text} NOT NULL,
    flapping       INTEGER NOT NULL DEFAULT 0,
    dirty          INTEGER NOT NULL DEFAULT 1,
    notified_at    ${int},
    notifications  INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX alerts_dirty ON alerts(dirty) WHERE dirty = 1;
  CREATE INDEX alerts_state ON alerts(state, kind);
  CREATE TABLE alert_outbox (
    id         ${serial},
    created_at ${int} NOT NULL,
    event      ${text} NOT NULL,
    body       ${text} NOT NULL,
    sent_at    ${int},
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    ${int} NOT NULL,
    error      ${text}
  );
  CREATE INDEX alert_outbox_due ON alert_outbox(next_at) WHERE sent_at IS NULL;
  `;
}

/** sqlite cannot change a column's constraints: rollout_events is copied into its new form (ids kept, AUTOINCREMENT carried on). */
const V10_SQLITE_EVENTS = `
  CREATE TABLE rollout_events_v9 (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    rollout    INTEGER,
    kind       TEXT NOT NULL CHECK (kind IN ('rollout', 'wave', 'target', 'directive', 'alert', 'scale')),
    from_state TEXT,
    to_state   TEXT,
    reason     TEXT,
    wave       INTEGER,
    agent_id   TEXT,
    tenant     TEXT,
    seq        INTEGER,
    version    TEXT,
    code       TEXT,
    detail     TEXT
  );
  INSERT INTO rollout_events_v9 (id, at, rollout, kind, from_state, to_state, reason, wave, agent_id, tenant, seq, version, code)
    SELECT id, at, rollout, kind, from_state, to_state, reason, wave, agent_id, tenant, seq, version, code FROM rollout_events;
  DROP TABLE rollout_events;
  ALTER TABLE rollout_events_v9 RENAME TO rollout_events;
  CREATE INDEX rollout_events_rollout ON rollout_events(rollout, id);
`;

const PG_V10_EVENTS = `
  ALTER TABLE rollout_events ALTER COLUMN rollout DROP NOT NULL;
  ALTER TABLE rollout_events DROP CONSTRAINT rollout_events_kind_check;
  ALTER TABLE rollout_events ADD CONSTRAINT rollout_events_kind_check CHECK (kind IN ('rollout', 'wave', 'target', 'directive', 'alert', 'scale'));
  ALTER TABLE rollout_events ADD COLUMN detail ${'TEXT COLLATE "C"'};
`;

// 11: remote operations (hub/operations): each signed operation with its per-agent seq, its answer and,
// for exec, the transcript the hub kept and its digest; and the chunks of a stream whose client is on
// another replica than the agent's socket (transient: deleted as that replica reads them).
function V11_SQL(text: string, int: string): string {
  return `
  CREATE TABLE operations (
    id                ${text} PRIMARY KEY,
    agent_id          ${text} NOT NULL REFERENCES agents(id),
    tenant            ${text} NOT NULL,
    seq               ${int} NOT NULL,
    kind              ${text} NOT NULL,
    stack             ${text},
    service           ${text},
    args              ${text} NOT NULL,
    envelope          ${text} NOT NULL,
    issued_at         ${int} NOT NULL,
    expires_at        ${int} NOT NULL,
    created_by        ${text},
    surface           ${text},
    batch             ${text},
    status            ${text} NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ok', 'refused', 'failed', 'timeout')),
    code              ${text},
    message           ${text},
    result            ${text},
    exit_code         ${int},
    bytes             ${int},
    duration_ms       ${int},
    stream_reason     ${text},
    agent_digest      ${text},
    transcript        ${text},
    transcript_digest ${text},
    finished_at       ${int},
    UNIQUE (agent_id, seq)
  );
  CREATE INDEX operations_agent ON operations(agent_id, issued_at);
  CREATE INDEX operations_batch ON operations(batch);
  CREATE TABLE operation_chunks (
    op_id      ${text} NOT NULL,
    n          ${int} NOT NULL,
    body       ${text} NOT NULL,
    created_at ${int} NOT NULL,
    PRIMARY KEY (op_id, n)
  );
  `;
}

// 12: agent bundles (self-upgrade): the archive in 1 MiB chunks in the
// database itself, so every replica on one PostgreSQL serves every bundle
// with nothing to share on disk; the signed statement and its signatures;
// the tenants a bundle is for; each agent's version report (protocol
// 'upgrade'); the agent version a directive names.
function V12_SQL(text: string, int: string, blob: string): string {
  return `
  CREATE TABLE agent_bundles (
    version          ${text} PRIMARY KEY,
    digest           ${text} NOT NULL UNIQUE,
    size             ${int} NOT NULL,
    statement        ${blob} NOT NULL,
    statement_digest ${text} NOT NULL UNIQUE,
    manifest         ${text} NOT NULL,
    created_at       ${int} NOT NULL,
    created_by       ${text}
  );
  CREATE TABLE agent_bundle_tenants (
    version ${text} NOT NULL REFERENCES agent_bundles(version),
    tenant  ${text} NOT NULL,
    PRIMARY KEY (version, tenant)
  );
  CREATE INDEX agent_bundle_tenants_tenant ON agent_bundle_tenants(tenant);
  CREATE TABLE agent_bundle_signatures (
    version    ${text} NOT NULL REFERENCES agent_bundles(version),
    keyid      ${text} NOT NULL,
    public_key ${text} NOT NULL,
    sig        ${text} NOT NULL,
    created_at ${int} NOT NULL,
    created_by ${text},
    PRIMARY KEY (version, keyid)
  );
  CREATE TABLE agent_bundle_chunks (
    digest ${text} NOT NULL,
    idx    INTEGER NOT NULL,
    data   ${blob} NOT NULL,
    PRIMARY KEY (digest, idx)
  );
  CREATE TABLE agent_versions (
    agent_id   ${text} PRIMARY KEY REFERENCES agents(id),
    status     ${text} NOT NULL,
    updated_at ${int} NOT NULL
  );
  ALTER TABLE directives ADD COLUMN upgrade ${text};
  `;
}

// 13: presence leases per replica, not per agent. A replica renews one row
// (its own) instead of every row of the agents it holds: at 10,000 agents
// on two replicas that renewal updated 5,000 rows every 10 s and waited on,
// or deadlocked with, the report batches touching the same rows. An agent
// is connected while the replica named in agents.replica has a live lease.
function V13_SQL(text: string, int: string): string {
  return `
  CREATE TABLE hub_replicas (
    id          ${text} PRIMARY KEY,
    lease_until ${int} NOT NULL
  );
  ALTER TABLE agents DROP COLUMN lease_until;
  `;
}

type SqliteStep = string | ((db: Database.Database) => void);

const SQLITE: readonly SqliteStep[] = [
  ...LEGACY,
  (db) => {
    db.exec(V7_SQL);
    migrateTokensToUsers(db);
  },
  V8_SQL('TEXT', 'INTEGER'),
  V9_SQL('TEXT', 'INTEGER', 'INTEGER PRIMARY KEY AUTOINCREMENT'),
  V10_SQLITE_EVENTS + V10_SQL('TEXT', 'INTEGER', 'INTEGER PRIMARY KEY AUTOINCREMENT'),
  V11_SQL('TEXT', 'INTEGER'),
  V12_SQL('TEXT', 'INTEGER', 'BLOB'),
  V13_SQL('TEXT', 'INTEGER'),
];

export const SCHEMA_VERSION = SQLITE.length;

/** Brings the file to `target` (this hub's version; tests build older files with a lower one). */
export function migrateSqlite(db: Database.Database, target = SCHEMA_VERSION): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) throw new FerryError('FERRY_E_DB_VERSION', `schema ${current}, this hub knows up to ${SCHEMA_VERSION}`);
  for (let v = current; v < target; v++) {
    const step = SQLITE[v]!;
    db.transaction(() => {
      if (typeof step === 'string') db.exec(step);
      else step(db);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

// ---- PostgreSQL -------------------------------------------------------------
// The same tables at SCHEMA_VERSION in one step (a PostgreSQL store starts at
// 7; later migrations are appended to both lists). Text that is ordered or
// compared sorts as bytes (COLLATE "C"), as sqlite does, so both backends
// list in the same order.

const T = 'TEXT COLLATE "C"';

const PG_V7 = `
  CREATE TABLE ferry_schema (version INTEGER NOT NULL);
  CREATE TABLE tenants (
    id         ${T} PRIMARY KEY,
    name       ${T} NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
  );
  CREATE TABLE users (
    id            ${T} PRIMARY KEY,
    name          ${T} NOT NULL UNIQUE,
    kind          ${T} NOT NULL CHECK (kind IN ('person', 'service')),
    vendor_role   ${T} CHECK (vendor_role IN ('admin', 'operator', 'release-manager', 'viewer')),
    password_hash ${T},
    disabled_at   BIGINT,
    locked_until  BIGINT,
    created_at    BIGINT NOT NULL,
    created_by    ${T}
  );
  CREATE TABLE user_grants (
    user_id    ${T} NOT NULL REFERENCES users(id),
    tenant_id  ${T} NOT NULL REFERENCES tenants(id),
    role       ${T} NOT NULL CHECK (role IN ('tenant-admin', 'operator', 'approver', 'viewer')),
    created_at BIGINT NOT NULL,
    created_by ${T},
    PRIMARY KEY (user_id, tenant_id)
  );
  CREATE TABLE sessions (
    id_hash      ${T} PRIMARY KEY,
    user_id      ${T} NOT NULL REFERENCES users(id),
    csrf         ${T} NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
  );
  CREATE INDEX sessions_user ON sessions(user_id);
  CREATE TABLE api_tokens (
    id           ${T} PRIMARY KEY,
    user_id      ${T} NOT NULL REFERENCES users(id),
    name         ${T} NOT NULL,
    role         ${T} NOT NULL CHECK (role IN ('admin', 'operator', 'release-manager', 'viewer', 'tenant-admin', 'approver')),
    tenants      ${T},
    token_hash   ${T} NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    created_by   ${T},
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
  );
  CREATE INDEX api_tokens_user ON api_tokens(user_id);
  CREATE TABLE enrollment_tokens (
    id         ${T} PRIMARY KEY,
    tenant_id  ${T} NOT NULL REFERENCES tenants(id),
    token_hash ${T} NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by ${T},
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    used_by    ${T}
  );
  CREATE TABLE agents (
    id            ${T} PRIMARY KEY,
    tenant_id     ${T} NOT NULL REFERENCES tenants(id),
    name          ${T} NOT NULL,
    public_key    ${T} NOT NULL UNIQUE,
    labels        ${T} NOT NULL DEFAULT '{}',
    enrolled_at   BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoked_by    ${T},
    last_seen_at  BIGINT,
    agent_version ${T},
    facts         ${T},
    status        ${T},
    status_at     BIGINT,
    replica       ${T},
    lease_until   BIGINT
  );
  CREATE INDEX agents_tenant ON agents(tenant_id);
  CREATE INDEX agents_replica ON agents(replica) WHERE replica IS NOT NULL;
  CREATE TABLE trust_roots (
    tenant_id    ${T} NOT NULL REFERENCES tenants(id),
    version      INTEGER NOT NULL,
    payload      BYTEA NOT NULL,
    signatures   ${T} NOT NULL DEFAULT '[]',
    created_at   BIGINT NOT NULL,
    created_by   ${T},
    activated_at BIGINT,
    PRIMARY KEY (tenant_id, version)
  );
  CREATE TABLE releases (
    id         ${T} PRIMARY KEY,
    stack      ${T} NOT NULL,
    version    ${T} NOT NULL,
    payload    BYTEA NOT NULL,
    digest     ${T} NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by ${T},
    UNIQUE (stack, version)
  );
  CREATE TABLE release_signatures (
    release_id ${T} NOT NULL REFERENCES releases(id),
    keyid      ${T} NOT NULL,
    public_key ${T} NOT NULL,
    sig        ${T} NOT NULL,
    created_at BIGINT NOT NULL,
    created_by ${T},
    PRIMARY KEY (release_id, keyid)
  );
  CREATE TABLE release_tenants (
    release_id ${T} NOT NULL REFERENCES releases(id),
    tenant_id  ${T} NOT NULL REFERENCES tenants(id),
    since      BIGINT NOT NULL,
    PRIMARY KEY (release_id, tenant_id)
  );
  CREATE TABLE directives (
    agent_id   ${T} NOT NULL REFERENCES agents(id),
    seq        BIGINT NOT NULL,
    digest     ${T} NOT NULL,
    envelope   ${T} NOT NULL,
    releases   ${T} NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_by ${T},
    status     ${T} NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'refused')),
    code       ${T},
    message    ${T},
    acked_at   BIGINT,
    PRIMARY KEY (agent_id, seq)
  );
  CREATE INDEX directives_pending ON directives(agent_id) WHERE status = 'pending';
  CREATE TABLE audit_entries (
    log       ${T} NOT NULL,
    idx       BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    data      BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL,
    PRIMARY KEY (log, idx)
  );
  CREATE TABLE audit_personal (
    log       ${T} NOT NULL,
    idx       BIGINT NOT NULL,
    field     ${T} NOT NULL,
    salt      BYTEA NOT NULL,
    value     ${T},
    erased_at BIGINT,
    PRIMARY KEY (log, idx, field)
  );
  CREATE TABLE audit_checkpoints (
    log      ${T} NOT NULL,
    size     BIGINT NOT NULL,
    root     BYTEA NOT NULL,
    at       BIGINT NOT NULL,
    envelope ${T} NOT NULL,
    PRIMARY KEY (log, size, root)
  );
  CREATE TABLE audit_cosignatures (
    log      ${T} NOT NULL,
    size     BIGINT NOT NULL,
    agent_id ${T} NOT NULL,
    sig      ${T} NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (log, size, agent_id)
  );
  CREATE FUNCTION ferry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;
  CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries FOR EACH ROW EXECUTE FUNCTION ferry_append_only();
  CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries FOR EACH STATEMENT EXECUTE FUNCTION ferry_append_only();
  CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION ferry_append_only();
  CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION ferry_append_only();
  CREATE TRIGGER audit_cosignatures_append_only BEFORE UPDATE OR DELETE ON audit_cosignatures FOR EACH ROW EXECUTE FUNCTION ferry_append_only();
  CREATE TRIGGER audit_cosignatures_no_truncate BEFORE TRUNCATE ON audit_cosignatures FOR EACH STATEMENT EXECUTE FUNCTION ferry_append_only();
  CREATE FUNCTION ferry_personal_erase_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN RAISE EXCEPTION 'erase personal data by setting it to NULL'; END IF;
      IF NEW.value IS NOT NULL OR NEW.salt IS DISTINCT FROM OLD.salt OR NEW.log IS DISTINCT FROM OLD.log
         OR NEW.idx IS DISTINCT FROM OLD.idx OR NEW.field IS DISTINCT FROM OLD.field THEN
        RAISE EXCEPTION 'personal data can only be erased';
      END IF;
      RETURN NEW;
    END $$;
  CREATE TRIGGER audit_personal_erase_only BEFORE UPDATE OR DELETE ON audit_personal FOR EACH ROW EXECUTE FUNCTION ferry_personal_erase_only();
  CREATE TRIGGER audit_personal_no_truncate BEFORE TRUNCATE ON audit_personal FOR EACH STATEMENT EXECUTE FUNCTION ferry_append_only();
  CREATE TABLE rollouts (
    num               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    stack             ${T} NOT NULL,
    version           ${T} NOT NULL,
    selector          ${T} NOT NULL,
    wave_spec         ${T} NOT NULL,
    waves             ${T} NOT NULL,
    wave              INTEGER NOT NULL DEFAULT -1,
    state             ${T} NOT NULL CHECK (state IN ('running', 'paused', 'succeeded', 'failed', 'aborted', 'rolling-back', 'rolled-back')),
    since             BIGINT NOT NULL,
    reason            ${T},
    bake_ms           BIGINT NOT NULL,
    max_failures      INTEGER NOT NULL,
    failures_accepted INTEGER NOT NULL DEFAULT 0,
    on_failure        ${T} NOT NULL CHECK (on_failure IN ('pause', 'rollback')),
    agent_timeout_ms  BIGINT NOT NULL,
    on_timeout        ${T} NOT NULL CHECK (on_timeout IN ('failed', 'skip')),
    retry_ms          BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    created_by        ${T}
  );
  CREATE TABLE rollout_targets (
    rollout    BIGINT NOT NULL REFERENCES rollouts(num),
    agent_id   ${T} NOT NULL REFERENCES agents(id),
    tenant     ${T} NOT NULL,
    position   INTEGER NOT NULL,
    state      ${T} NOT NULL,
    seq        BIGINT,
    previous   ${T},
    started_at BIGINT,
    applied_at BIGINT,
    retry_at   BIGINT,
    code       ${T},
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (rollout, agent_id)
  );
  CREATE INDEX rollout_targets_position ON rollout_targets(rollout, position);
  CREATE TABLE rollout_events (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    rollout    BIGINT NOT NULL,
    kind       ${T} NOT NULL CHECK (kind IN ('rollout', 'wave', 'target', 'directive')),
    from_state ${T},
    to_state   ${T},
    reason     ${T},
    wave       INTEGER,
    agent_id   ${T},
    tenant     ${T},
    seq        BIGINT,
    version    ${T},
    code       ${T}
  );
  CREATE INDEX rollout_events_rollout ON rollout_events(rollout, id);
  CREATE TABLE agent_nonces (
    nonce      ${T} PRIMARY KEY,
    expires_at BIGINT NOT NULL
  );
  CREATE TABLE agent_answers (
    id         ${T} PRIMARY KEY,
    agent_id   ${T} NOT NULL,
    body       ${T} NOT NULL,
    created_at BIGINT NOT NULL
  );
`;

/** PostgreSQL steps by the version they reach (v1-v6 exist only on sqlite). */
export const POSTGRES: readonly { version: number; sql: string }[] = [
  { version: 7, sql: PG_V7 },
  { version: 8, sql: V8_SQL(T, 'BIGINT') },
  { version: 9, sql: V9_SQL(T, 'BIGINT', 'BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY') },
  { version: 10, sql: PG_V10_EVENTS + V10_SQL(T, 'BIGINT', 'BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY') },
  { version: 11, sql: V11_SQL(T, 'BIGINT') },
  { version: 12, sql: V12_SQL(T, 'BIGINT', 'BYTEA') },
  { version: 13, sql: V13_SQL(T, 'BIGINT') },
];
