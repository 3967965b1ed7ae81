// Hub state in sqlite: operators' API tokens, tenants, enrollment tokens and
// agents. Secrets (API and enrollment tokens) are stored only as SHA-256
// hashes; they are high-entropy random strings, so a fast hash suffices.
import { createHash, randomBytes } from 'node:crypto';
import { FerryError } from '../shared/errors.js';
import { stmt, type DB } from './db.js';

export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export const TENANT_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const LABEL_KEY = /^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/;
export const LABEL_VALUE = /^[A-Za-z0-9._-]{0,63}$/;

export type Labels = Record<string, string>;

export interface Principal {
  tokenId: string;
  name: string;
  role: Role;
}

export interface Tenant {
  id: string;
  name: string;
  createdAt: number;
}

export interface AgentRecord {
  id: string;
  tenant: string;
  name: string;
  publicKey: string;
  labels: Labels;
  enrolledAt: number;
  revokedAt: number | null;
  lastSeenAt: number | null;
  agentVersion: string | null;
  facts: unknown;
  status: unknown;
  statusAt: number | null;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(10).toString('hex')}`;
}

export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

interface AgentRow {
  id: string;
  tenant: string;
  name: string;
  public_key: string;
  labels: string;
  enrolled_at: number;
  revoked_at: number | null;
  last_seen_at: number | null;
  agent_version: string | null;
  facts: string | null;
  status: string | null;
  status_at: number | null;
}

const AGENT_SELECT = `SELECT a.*, t.name AS tenant FROM agents a JOIN tenants t ON t.id = a.tenant_id`;

function toAgent(r: AgentRow): AgentRecord {
  return {
    id: r.id,
    tenant: r.tenant,
    name: r.name,
    publicKey: r.public_key,
    labels: JSON.parse(r.labels) as Labels,
    enrolledAt: r.enrolled_at,
    revokedAt: r.revoked_at,
    lastSeenAt: r.last_seen_at,
    agentVersion: r.agent_version,
    facts: r.facts ? (JSON.parse(r.facts) as unknown) : null,
    status: r.status ? (JSON.parse(r.status) as unknown) : null,
    statusAt: r.status_at,
  };
}

/** What an agent's connections and hellos said, not yet written (see `Store.flushPresence`). */
interface Presence {
  lastSeenAt: number;
  hello?: { agentVersion: string; facts: string };
}

/** How long presence (last seen, hello facts) waits in memory before one transaction writes it all. */
export const PRESENCE_FLUSH_MS = 1000;

export class Store {
  private readonly presence = new Map<string, Presence>();
  private presenceTimer: NodeJS.Timeout | undefined;

  constructor(readonly db: DB) {}

  // ---- API tokens -----------------------------------------------------------

  createApiToken(name: string, role: Role, createdBy: string | null, now: number): { id: string; token: string } {
    const token = newSecret('ferry_api');
    const id = newId('tok');
    this.db
      .prepare('INSERT INTO api_tokens (id, name, role, token_hash, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)')
      .run(id, name, role, hashSecret(token), now, createdBy);
    return { id, token };
  }

  /** The principal behind a bearer token, or null. Records last use. */
  authenticate(token: string, now: number): Principal | null {
    const row = this.db
      .prepare('SELECT id, name, role FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL')
      .get(hashSecret(token)) as { id: string; name: string; role: Role } | undefined;
    if (!row) return null;
    this.db.prepare('UPDATE api_tokens SET last_used_at = ? WHERE id = ?').run(now, row.id);
    return { tokenId: row.id, name: row.name, role: row.role };
  }

  listApiTokens(): { id: string; name: string; role: Role; createdAt: number; revokedAt: number | null; lastUsedAt: number | null }[] {
    return this.db
      .prepare('SELECT id, name, role, created_at AS createdAt, revoked_at AS revokedAt, last_used_at AS lastUsedAt FROM api_tokens ORDER BY created_at')
      .all() as never;
  }

  revokeApiToken(id: string, now: number): void {
    const r = this.db.prepare('UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id);
    if (r.changes !== 1) throw new FerryError('FERRY_E_NOT_FOUND', `api token ${id}`);
  }

  // ---- tenants ----------------------------------------------------------------

  createTenant(name: string, now: number): Tenant {
    if (!TENANT_NAME.test(name)) {
      throw new FerryError('FERRY_E_VALIDATION', `tenant name ${JSON.stringify(name)}: lowercase letters, digits and dashes, 1-63 characters`);
    }
    if (this.findTenant(name)) throw new FerryError('FERRY_E_CONFLICT', `tenant ${name}`);
    const t = { id: newId('ten'), name, createdAt: now };
    this.db.prepare('INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)').run(t.id, t.name, t.createdAt);
    return t;
  }

  findTenant(name: string): Tenant | undefined {
    return stmt(this.db, 'SELECT id, name, created_at AS createdAt FROM tenants WHERE name = ?').get(name) as Tenant | undefined;
  }

  tenant(name: string): Tenant {
    const t = this.findTenant(name);
    if (!t) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${name}`);
    return t;
  }

  listTenants(): (Tenant & { agents: number })[] {
    return this.db
      .prepare(
        `SELECT t.id, t.name, t.created_at AS createdAt,
                (SELECT count(*) FROM agents a WHERE a.tenant_id = t.id AND a.revoked_at IS NULL) AS agents
           FROM tenants t ORDER BY t.name`,
      )
      .all() as (Tenant & { agents: number })[];
  }

  // ---- enrollment ----------------------------------------------------------------

  createEnrollmentToken(tenantName: string, ttlMs: number, createdBy: string | null, now: number) {
    const t = this.tenant(tenantName);
    const token = newSecret('ferry_enr');
    const id = newId('enr');
    const expiresAt = now + ttlMs;
    this.db
      .prepare('INSERT INTO enrollment_tokens (id, tenant_id, token_hash, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(id, t.id, hashSecret(token), now, createdBy, expiresAt);
    return { id, token, tenant: t.name, expiresAt };
  }

  /**
   * Consumes a single-use enrollment token and registers the agent, in one
   * transaction. The conditional UPDATE is what makes two concurrent
   * enrollments with one token yield exactly one agent.
   */
  enroll(input: { token: string; publicKey: string; name: string; labels: Labels }, now: number): AgentRecord {
    return this.db.transaction(() => {
      const row = this.db
        .prepare('SELECT e.id, e.expires_at, e.used_at, e.tenant_id FROM enrollment_tokens e WHERE e.token_hash = ?')
        .get(hashSecret(input.token)) as { id: string; expires_at: number; used_at: number | null; tenant_id: string } | undefined;
      if (!row) throw new FerryError('FERRY_E_TOKEN_INVALID');
      if (row.used_at !== null) throw new FerryError('FERRY_E_TOKEN_USED');
      if (row.expires_at <= now) throw new FerryError('FERRY_E_TOKEN_EXPIRED');
      const agentId = newId('agt');
      const claimed = this.db
        .prepare('UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL')
        .run(now, agentId, row.id);
      if (claimed.changes !== 1) throw new FerryError('FERRY_E_TOKEN_USED');
      if (this.db.prepare('SELECT 1 FROM agents WHERE public_key = ?').get(input.publicKey)) {
        throw new FerryError('FERRY_E_CONFLICT', 'this public key is already enrolled');
      }
      this.db
        .prepare('INSERT INTO agents (id, tenant_id, name, public_key, labels, enrolled_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(agentId, row.tenant_id, input.name, input.publicKey, JSON.stringify(input.labels), now);
      return this.agent(agentId);
    }).immediate();
  }

  // ---- agents ----------------------------------------------------------------------

  findAgent(id: string): AgentRecord | undefined {
    const r = stmt(this.db, `${AGENT_SELECT} WHERE a.id = ?`).get(id) as AgentRow | undefined;
    return r ? this.withPresence(toAgent(r)) : undefined;
  }

  agent(id: string): AgentRecord {
    const a = this.findAgent(id);
    if (!a) throw new FerryError('FERRY_E_NOT_FOUND', `agent ${id}`);
    return a;
  }

  /** Every agent, with just what a selector and a rollout's order need: what creating a rollout over the fleet reads. */
  listSelectable(): { id: string; tenant: string; name: string; labels: Labels; revokedAt: number | null }[] {
    const rows = stmt(this.db, 'SELECT a.id, t.name AS tenant, a.name, a.labels, a.revoked_at AS revokedAt FROM agents a JOIN tenants t ON t.id = a.tenant_id ORDER BY t.name, a.name, a.id').all() as {
      id: string;
      tenant: string;
      name: string;
      labels: string;
      revokedAt: number | null;
    }[];
    return rows.map((r) => ({ ...r, labels: JSON.parse(r.labels) as Labels }));
  }

  /** Just an agent's tenant and revocation, for paths that run once per agent of a wave. */
  agentTenant(id: string): { tenant: string; revokedAt: number | null } {
    const r = stmt(this.db, 'SELECT t.name AS tenant, a.revoked_at AS revokedAt FROM agents a JOIN tenants t ON t.id = a.tenant_id WHERE a.id = ?').get(id) as
      | { tenant: string; revokedAt: number | null }
      | undefined;
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', `agent ${id}`);
    return r;
  }

  listAgents(filter: { tenant?: string } = {}): AgentRecord[] {
    if (filter.tenant) {
      this.tenant(filter.tenant);
      return (stmt(this.db, `${AGENT_SELECT} WHERE t.name = ? ORDER BY t.name, a.name, a.id`).all(filter.tenant) as AgentRow[]).map((r) => this.withPresence(toAgent(r)));
    }
    return (stmt(this.db, `${AGENT_SELECT} ORDER BY t.name, a.name, a.id`).all() as AgentRow[]).map((r) => this.withPresence(toAgent(r)));
  }

  revokeAgent(id: string, by: string | null, now: number): AgentRecord {
    const a = this.agent(id);
    if (a.revokedAt === null) {
      this.db.prepare('UPDATE agents SET revoked_at = ?, revoked_by = ? WHERE id = ?').run(now, by, id);
    }
    return this.agent(id);
  }

  /** Sets and removes labels (`ferry agent label`); returns the agent as it is now. */
  setLabels(id: string, set: Labels, remove: string[]): AgentRecord {
    const a = this.agent(id);
    const labels = { ...a.labels, ...set };
    for (const k of remove) delete labels[k];
    if (Object.keys(labels).length > 64) throw new FerryError('FERRY_E_VALIDATION', 'labels: at most 64 per agent');
    this.db.prepare('UPDATE agents SET labels = ? WHERE id = ?').run(JSON.stringify(labels), id);
    return this.agent(id);
  }

  /** Stores the agent's latest status report; returns the previous one. */
  recordStatus(id: string, status: unknown, now: number): unknown {
    const prev = stmt(this.db, 'SELECT status FROM agents WHERE id = ?').get(id) as { status: string | null } | undefined;
    stmt(this.db, 'UPDATE agents SET status = ?, status_at = ? WHERE id = ?').run(JSON.stringify(status), now, id);
    return prev?.status ? (JSON.parse(prev.status) as unknown) : null;
  }

  // ---- presence ----------------------------------------------------------------------
  // Last seen and hello facts are written in batches (every PRESENCE_FLUSH_MS,
  // and by `flushPresence` on shutdown), not one fsync'd commit per connect,
  // hello and disconnect: in a reconnect storm those commits were most of the
  // hub's CPU. Reads see the value in memory. A kill -9 loses at most the last
  // second of it, which the agent's next hello restores; nothing audited or
  // directed depends on it.

  recordHello(id: string, agentVersion: string, facts: unknown, now: number): void {
    this.presence.set(id, { lastSeenAt: now, hello: { agentVersion, facts: JSON.stringify(facts) } });
    this.schedulePresence();
  }

  touchAgent(id: string, now: number): void {
    const p = this.presence.get(id);
    if (p) p.lastSeenAt = now;
    else this.presence.set(id, { lastSeenAt: now });
    this.schedulePresence();
  }

  /** Writes buffered presence in one transaction (a no-op once the database is closed). */
  flushPresence(): void {
    clearTimeout(this.presenceTimer);
    this.presenceTimer = undefined;
    if (!this.presence.size || !this.db.open) return;
    const seen = stmt(this.db, 'UPDATE agents SET last_seen_at = ? WHERE id = ?');
    const hello = stmt(this.db, 'UPDATE agents SET agent_version = ?, facts = ?, last_seen_at = ? WHERE id = ?');
    this.db.transaction(() => {
      for (const [id, p] of this.presence) {
        if (p.hello) hello.run(p.hello.agentVersion, p.hello.facts, p.lastSeenAt, id);
        else seen.run(p.lastSeenAt, id);
      }
    })();
    // Only after the commit: a failed flush keeps everything for the next one.
    this.presence.clear();
  }

  private schedulePresence(): void {
    if (this.presenceTimer) return;
    this.presenceTimer = setTimeout(() => {
      try {
        this.flushPresence();
      } catch {
        this.schedulePresence(); // e.g. the database busy: try again later
      }
    }, PRESENCE_FLUSH_MS);
    this.presenceTimer.unref();
  }

  private withPresence(a: AgentRecord): AgentRecord {
    const p = this.presence.get(a.id);
    if (!p) return a;
    a.lastSeenAt = p.lastSeenAt;
    if (p.hello) {
      a.agentVersion = p.hello.agentVersion;
      a.facts = JSON.parse(p.hello.facts) as unknown;
    }
    return a;
  }
}
