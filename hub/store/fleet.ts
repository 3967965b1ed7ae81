// Tenants, enrollment tokens and agents. Secrets (enrollment tokens) are
// stored only as SHA-256 hashes: they are high-entropy random strings, so a
// fast hash suffices.
import { createHash, randomBytes } from 'node:crypto';
import { FerryError } from '../../shared/errors.js';
import { inList, type Db } from './db.js';

export const TENANT_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const LABEL_KEY = /^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/;
export const LABEL_VALUE = /^[A-Za-z0-9._-]{0,63}$/;

export type Labels = Record<string, string>;

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
  /** The replica holding the agent's socket while its lease lasts (several replicas on PostgreSQL). */
  replica: string | null;
  leaseUntil: number | null;
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

export interface AgentRow {
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
  replica: string | null;
  lease_until: number | null;
}

export const AGENT_SELECT = `SELECT a.id, t.name AS tenant, a.name, a.public_key, a.labels, a.enrolled_at, a.revoked_at, a.last_seen_at, a.agent_version, a.facts,
  a.status, a.status_at, a.replica, rp.lease_until FROM agents a JOIN tenants t ON t.id = a.tenant_id LEFT JOIN hub_replicas rp ON rp.id = a.replica`;

export function toAgent(r: AgentRow): AgentRecord {
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
    replica: r.replica,
    leaseUntil: r.lease_until,
  };
}

/** Who may be seen: every tenant (null), or these tenant names. */
export type TenantScope = readonly string[] | null;

function scopeClause(scope: TenantScope, column: string): { sql: string; params: string[] } {
  if (scope === null) return { sql: '', params: [] };
  return { sql: ` AND ${column} IN ${inList(scope.length)}`, params: [...scope] };
}

/** A batch of presence, as written once a second. */
export interface PresenceWrite {
  agentId: string;
  lastSeenAt: number;
  hello?: { agentVersion: string; facts: string };
  /** Held by this replica until then, or released (null). */
  lease: { replica: string; until: number } | null;
}

export class Fleet {
  constructor(private readonly db: Db) {}

  // ---- tenants ----------------------------------------------------------------

  async createTenant(name: string, now: number): Promise<Tenant> {
    if (!TENANT_NAME.test(name)) {
      throw new FerryError('FERRY_E_VALIDATION', `tenant name ${JSON.stringify(name)}: lowercase letters, digits and dashes, 1-63 characters`);
    }
    if (name === '_hub') throw new FerryError('FERRY_E_VALIDATION', 'tenant name _hub is reserved');
    if (await this.findTenant(name)) throw new FerryError('FERRY_E_CONFLICT', `tenant ${name}`);
    const t = { id: newId('ten'), name, createdAt: now };
    await this.db.run('INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)', [t.id, t.name, t.createdAt]);
    return t;
  }

  findTenant(name: string): Promise<Tenant | undefined> {
    return this.db.get<Tenant>('SELECT id, name, created_at AS "createdAt" FROM tenants WHERE name = ?', [name]);
  }

  async tenant(name: string): Promise<Tenant> {
    const t = await this.findTenant(name);
    if (!t) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${name}`);
    return t;
  }

  async listTenants(scope: TenantScope = null): Promise<(Tenant & { agents: number })[]> {
    const s = scopeClause(scope, 't.name');
    return this.db.all<Tenant & { agents: number }>(
      `SELECT t.id, t.name, t.created_at AS "createdAt",
              (SELECT count(*) FROM agents a WHERE a.tenant_id = t.id AND a.revoked_at IS NULL) AS agents
         FROM tenants t WHERE 1 = 1${s.sql} ORDER BY t.name`,
      s.params,
    );
  }

  async tenantNames(): Promise<string[]> {
    return (await this.db.all<{ name: string }>('SELECT name FROM tenants ORDER BY name')).map((r) => r.name);
  }

  // ---- enrollment ----------------------------------------------------------------

  async createEnrollmentToken(tenantName: string, ttlMs: number, createdBy: string | null, now: number) {
    const t = await this.tenant(tenantName);
    const token = newSecret('ferry_enr');
    const id = newId('enr');
    const expiresAt = now + ttlMs;
    await this.db.run('INSERT INTO enrollment_tokens (id, tenant_id, token_hash, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?)', [
      id,
      t.id,
      hashSecret(token),
      now,
      createdBy,
      expiresAt,
    ]);
    return { id, token, tenant: t.name, expiresAt };
  }

  /**
   * Whether an enrollment token could be used now — looked up before the
   * (dearer) proof is verified, so junk requests cost a hash and an index read.
   */
  async checkEnrollmentToken(token: string, now: number): Promise<void> {
    const row = await this.db.get<{ expires_at: number; used_at: number | null }>('SELECT expires_at, used_at FROM enrollment_tokens WHERE token_hash = ?', [hashSecret(token)]);
    if (!row) throw new FerryError('FERRY_E_TOKEN_INVALID');
    if (row.used_at !== null) throw new FerryError('FERRY_E_TOKEN_USED');
    if (row.expires_at <= now) throw new FerryError('FERRY_E_TOKEN_EXPIRED');
  }

  /**
   * Consumes a single-use enrollment token and registers the agent; call in
   * a transaction. The conditional UPDATE is what makes two concurrent
   * enrollments with one token yield exactly one agent.
   */
  async enroll(input: { token: string; publicKey: string; name: string; labels: Labels }, now: number): Promise<AgentRecord> {
    const row = await this.db.get<{ id: string; expires_at: number; used_at: number | null; tenant_id: string }>(
      'SELECT id, expires_at, used_at, tenant_id FROM enrollment_tokens WHERE token_hash = ?',
      [hashSecret(input.token)],
    );
    if (!row) throw new FerryError('FERRY_E_TOKEN_INVALID');
    if (row.used_at !== null) throw new FerryError('FERRY_E_TOKEN_USED');
    if (row.expires_at <= now) throw new FerryError('FERRY_E_TOKEN_EXPIRED');
    const agentId = newId('agt');
    const claimed = await this.db.run('UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL', [now, agentId, row.id]);
    if (claimed !== 1) throw new FerryError('FERRY_E_TOKEN_USED');
    if (await this.db.get('SELECT 1 AS x FROM agents WHERE public_key = ?', [input.publicKey])) {
      throw new FerryError('FERRY_E_CONFLICT', 'this public key is already enrolled');
    }
    await this.db.run('INSERT INTO agents (id, tenant_id, name, public_key, labels, enrolled_at) VALUES (?, ?, ?, ?, ?, ?)', [
      agentId,
      row.tenant_id,
      input.name,
      input.publicKey,
      JSON.stringify(input.labels),
      now,
    ]);
    return this.agent(agentId);
  }

  // ---- agents ----------------------------------------------------------------------

  async findAgent(id: string): Promise<AgentRecord | undefined> {
    const r = await this.db.get<AgentRow>(`${AGENT_SELECT} WHERE a.id = ?`, [id]);
    return r ? toAgent(r) : undefined;
  }

  async agent(id: string): Promise<AgentRecord> {
    const a = await this.findAgent(id);
    if (!a) throw new FerryError('FERRY_E_NOT_FOUND', `agent ${id}`);
    return a;
  }

  /** Just an agent's tenant and revocation, for paths that run once per agent of a wave. */
  async agentTenant(id: string): Promise<{ tenant: string; revokedAt: number | null }> {
    const r = await this.db.get<{ tenant: string; revokedAt: number | null }>(
      'SELECT t.name AS tenant, a.revoked_at AS "revokedAt" FROM agents a JOIN tenants t ON t.id = a.tenant_id WHERE a.id = ?',
      [id],
    );
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', `agent ${id}`);
    return r;
  }

  /** `agentTenant` for many agents (those that exist), 500 to a query. */
  async agentTenants(ids: readonly string[]): Promise<Map<string, { tenant: string; revokedAt: number | null }>> {
    const out = new Map<string, { tenant: string; revokedAt: number | null }>();
    for (let i = 0; i < ids.length; i += 500) {
      const part = ids.slice(i, i + 500);
      const rows = await this.db.values<[string, string, number | null]>(`SELECT a.id, t.name, a.revoked_at FROM agents a JOIN tenants t ON t.id = a.tenant_id WHERE a.id IN ${inList(part.length)}`, part);
      for (const [id, tenant, revokedAt] of rows) out.set(id, { tenant, revokedAt });
    }
    return out;
  }

  /** Every agent of the scope, with just what a selector and a rollout's order need. */
  async listSelectable(scope: TenantScope = null): Promise<{ id: string; tenant: string; name: string; labels: Labels; revokedAt: number | null }[]> {
    const s = scopeClause(scope, 't.name');
    const rows = await this.db.all<{ id: string; tenant: string; name: string; labels: string; revokedAt: number | null }>(
      `SELECT a.id, t.name AS tenant, a.name, a.labels, a.revoked_at AS "revokedAt" FROM agents a JOIN tenants t ON t.id = a.tenant_id
        WHERE 1 = 1${s.sql} ORDER BY t.name, a.name, a.id`,
      s.params,
    );
    return rows.map((r) => ({ ...r, labels: JSON.parse(r.labels) as Labels }));
  }

  async listAgents(filter: { tenant?: string; scope?: TenantScope } = {}): Promise<AgentRecord[]> {
    const s = scopeClause(filter.scope ?? null, 't.name');
    if (filter.tenant) {
      await this.tenant(filter.tenant);
      return (await this.db.all<AgentRow>(`${AGENT_SELECT} WHERE t.name = ?${s.sql} ORDER BY t.name, a.name, a.id`, [filter.tenant, ...s.params])).map(toAgent);
    }
    return (await this.db.all<AgentRow>(`${AGENT_SELECT} WHERE 1 = 1${s.sql} ORDER BY t.name, a.name, a.id`, s.params)).map(toAgent);
  }

  /** Public keys by agent id (audit export: who cosigned). */
  async publicKeys(tenant: string): Promise<Map<string, string>> {
    const rows = await this.db.all<{ id: string; public_key: string }>('SELECT a.id, a.public_key FROM agents a JOIN tenants t ON t.id = a.tenant_id WHERE t.name = ?', [tenant]);
    return new Map(rows.map((r) => [r.id, r.public_key]));
  }

  async revokeAgent(id: string, by: string | null, now: number): Promise<AgentRecord> {
    const a = await this.agent(id);
    if (a.revokedAt === null) await this.db.run('UPDATE agents SET revoked_at = ?, revoked_by = ? WHERE id = ?', [now, by, id]);
    return this.agent(id);
  }

  /** Sets and removes labels (`ferry agent label`); returns the agent as it is now. */
  async setLabels(id: string, set: Labels, remove: string[]): Promise<AgentRecord> {
    const a = await this.agent(id);
    const labels = { ...a.labels, ...set };
    for (const k of remove) delete labels[k];
    if (Object.keys(labels).length > 64) throw new FerryError('FERRY_E_VALIDATION', 'labels: at most 64 per agent');
    await this.db.run('UPDATE agents SET labels = ? WHERE id = ?', [JSON.stringify(labels), id]);
    return this.agent(id);
  }

  /** Stores the agent's latest status report; returns the previous one. */
  async recordStatus(id: string, status: unknown, now: number): Promise<unknown> {
    const prev = await this.db.get<{ status: string | null }>('SELECT status FROM agents WHERE id = ?', [id]);
    await this.db.run('UPDATE agents SET status = ?, status_at = ? WHERE id = ?', [JSON.stringify(status), now, id]);
    return prev?.status ? (JSON.parse(prev.status) as unknown) : null;
  }

  /** `recordStatus` for many agents (one report each): their previous reports, then the new ones in one statement per 200. */
  async recordStatuses(reports: readonly { agentId: string; status: unknown; at: number }[]): Promise<Map<string, unknown>> {
    const prev = new Map<string, unknown>();
    for (let i = 0; i < reports.length; i += 500) {
      const ids = reports.slice(i, i + 500).map((r) => r.agentId);
      for (const [id, status] of await this.db.values<[string, string | null]>(`SELECT id, status FROM agents WHERE id IN ${inList(ids.length)}`, ids)) {
        prev.set(id, status ? (JSON.parse(status) as unknown) : null);
      }
    }
    for (let i = 0; i < reports.length; i += 200) {
      const part = reports.slice(i, i + 200);
      await this.db.run(
        `UPDATE agents SET status = v.column2, status_at = v.column3 FROM (VALUES ${part.map(() => '(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT))').join(', ')}) AS v WHERE agents.id = v.column1`,
        part.flatMap((r) => [r.agentId, JSON.stringify(r.status), r.at]),
      );
    }
    return prev;
  }

  // ---- presence ------------------------------------------------------------------------

  /**
   * Writes a batch of presence in one transaction; an agent connected here
   * names this replica, whose lease (one row) is taken or extended with it.
   * A lease is released only by the replica that holds it.
   */
  async writePresence(batch: readonly PresenceWrite[]): Promise<void> {
    await this.db.tx(async () => {
      const lease = batch.find((p) => p.lease)?.lease;
      if (lease) await this.renewLease(lease.replica, lease.until);
      // 200 agents to a statement (one agent once per batch): a reconnect storm is a few statements a second.
      for (let i = 0; i < batch.length; i += 200) {
        const part = batch.slice(i, i + 200);
        await this.db.run(
          `UPDATE agents SET last_seen_at = v.column2,
                  agent_version = CASE WHEN v.column3 = 1 THEN v.column4 ELSE agent_version END,
                  facts = CASE WHEN v.column3 = 1 THEN v.column5 ELSE facts END,
                  replica = CASE WHEN v.column6 = 1 THEN v.column7 ELSE replica END
             FROM (VALUES ${part.map(() => '(CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT))').join(', ')}) AS v
            WHERE agents.id = v.column1`,
          part.flatMap((p) => [p.agentId, p.lastSeenAt, p.hello ? 1 : 0, p.hello?.agentVersion ?? null, p.hello?.facts ?? null, p.lease ? 1 : 0, p.lease?.replica ?? null]),
        );
      }
    });
  }

  /** Ends leases this replica holds (the socket closed); another replica's lease is left alone. */
  async releaseLeases(replica: string, agentIds: readonly string[]): Promise<void> {
    for (let i = 0; i < agentIds.length; i += 500) {
      const ids = agentIds.slice(i, i + 500);
      await this.db.run(`UPDATE agents SET replica = NULL WHERE replica = ? AND id IN ${inList(ids.length)}`, [replica, ...ids]);
    }
  }

  /** Extends the lease of this replica, and with it of every agent it holds: one row, however many agents. */
  async renewLease(replica: string, until: number): Promise<void> {
    await this.db.run('INSERT INTO hub_replicas (id, lease_until) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until', [replica, until]);
  }

  /**
   * Marks a handshake nonce used, for every replica: false when it already
   * was (a replay). Only with several replicas; one replica keeps them in
   * memory (hub/gateway/challenge.ts). Losing the last moments of these in a
   * database crash costs nothing (nonces live a minute), so the commit does
   * not wait for the disk.
   */
  async claimNonce(nonce: string, expiresAt: number): Promise<boolean> {
    return (await this.claimNonces([{ nonce, expiresAt }])).has(nonce);
  }

  /** `claimNonce` for several (distinct) nonces in one transaction: those claimed now. */
  async claimNonces(claims: readonly { nonce: string; expiresAt: number }[]): Promise<Set<string>> {
    return this.db.tx(async () => {
      if (this.db.dialect === 'postgres') await this.db.run('SET LOCAL synchronous_commit = off');
      const out = new Set<string>();
      for (let i = 0; i < claims.length; i += 200) {
        const part = claims.slice(i, i + 200);
        const rows = await this.db.values<[string]>(
          `INSERT INTO agent_nonces (nonce, expires_at) VALUES ${part.map(() => '(?, ?)').join(', ')} ON CONFLICT DO NOTHING RETURNING nonce`,
          part.flatMap((c) => [c.nonce, c.expiresAt]),
        );
        for (const [n] of rows) out.add(n);
      }
      return out;
    });
  }

  pruneNonces(now: number): Promise<number> {
    return this.db.run('DELETE FROM agent_nonces WHERE expires_at < ?', [now]);
  }

  /**
   * Agents held by a replica whose lease has run out (it died) or that has
   * none (a copied or older database): offline. Leases over an hour old go.
   */
  async expireLeases(now: number): Promise<number> {
    const n = await this.db.run('UPDATE agents SET replica = NULL WHERE replica IS NOT NULL AND replica NOT IN (SELECT id FROM hub_replicas WHERE lease_until > ?)', [now]);
    await this.db.run('DELETE FROM hub_replicas WHERE lease_until < ?', [Math.min(now, Number.MAX_SAFE_INTEGER - 3_600_000) - 3_600_000]);
    return n;
  }
}
