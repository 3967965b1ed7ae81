// Signed state as stored: trust roots per tenant, releases and their
// signatures, and directives per agent.
import type { Envelope, Signature } from '../../shared/dsse.js';
import { FerryError } from '../../shared/errors.js';
import type { ReleaseRef } from '../../shared/release.js';
import { inList, type Db } from './db.js';

// ---- trust roots -------------------------------------------------------------

export interface RootRow {
  version: number;
  payload: Buffer;
  signatures: string;
  activated_at: number | null;
  created_at: number;
}

export class RootRows {
  constructor(private readonly db: Db) {}

  list(tenantId: string): Promise<RootRow[]> {
    return this.db.all<RootRow>('SELECT version, payload, signatures, activated_at, created_at FROM trust_roots WHERE tenant_id = ? ORDER BY version', [tenantId]);
  }

  /** Replaces the tenant's pending draft (there is at most one) with `payload`. */
  async draft(tenantId: string, version: number, payload: Buffer, by: string | null, now: number): Promise<void> {
    await this.db.tx(async () => {
      await this.db.run('DELETE FROM trust_roots WHERE tenant_id = ? AND activated_at IS NULL', [tenantId]);
      await this.db.run('INSERT INTO trust_roots (tenant_id, version, payload, created_at, created_by) VALUES (?, ?, ?, ?, ?)', [tenantId, version, payload, now, by]);
    });
  }

  async setSignatures(tenantId: string, version: number, signatures: Signature[], activatedAt: number | null): Promise<void> {
    await this.db.run('UPDATE trust_roots SET signatures = ?, activated_at = ? WHERE tenant_id = ? AND version = ?', [JSON.stringify(signatures), activatedAt, tenantId, version]);
  }

  /** Each tenant's current root (its newest active version). */
  async activePayloads(): Promise<Buffer[]> {
    const rows = await this.db.all<{ payload: Buffer }>(
      'SELECT payload FROM trust_roots r WHERE activated_at IS NOT NULL AND version = (SELECT max(version) FROM trust_roots x WHERE x.tenant_id = r.tenant_id AND x.activated_at IS NOT NULL)',
    );
    return rows.map((r) => r.payload);
  }
}

// ---- releases -------------------------------------------------------------------

export interface ReleaseRow {
  id: string;
  stack: string;
  version: string;
  payload: Buffer;
  digest: string;
  created_at: number;
  created_by: string | null;
}

export interface SignatureRow {
  keyid: string;
  sig: string;
  created_at: number;
  created_by: string | null;
}

export class ReleaseRows {
  constructor(private readonly db: Db) {}

  async insert(r: { id: string; stack: string; version: string; payload: Buffer; digest: string }, by: string | null, now: number): Promise<void> {
    await this.db.run('INSERT INTO releases (id, stack, version, payload, digest, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)', [r.id, r.stack, r.version, r.payload, r.digest, now, by]);
  }

  find(stack: string, version: string): Promise<ReleaseRow | undefined> {
    return this.db.get<ReleaseRow>('SELECT * FROM releases WHERE stack = ? AND version = ?', [stack, version]);
  }

  byDigest(digest: string): Promise<ReleaseRow | undefined> {
    return this.db.get<ReleaseRow>('SELECT * FROM releases WHERE digest = ?', [digest]);
  }

  /** Every release, or those delivered to one of `tenants`, optionally of one stack. */
  list(opts: { stack?: string; tenants?: readonly string[] | null }): Promise<ReleaseRow[]> {
    const where: string[] = [];
    const params: string[] = [];
    if (opts.stack) {
      where.push('r.stack = ?');
      params.push(opts.stack);
    }
    if (opts.tenants) {
      where.push(`EXISTS (SELECT 1 FROM release_tenants rt JOIN tenants t ON t.id = rt.tenant_id WHERE rt.release_id = r.id AND t.name IN ${inList(opts.tenants.length)})`);
      params.push(...opts.tenants);
    }
    return this.db.all<ReleaseRow>(`SELECT r.* FROM releases r${where.length ? ` WHERE ${where.join(' AND ')}` : ''}`, params);
  }

  signatures(releaseId: string): Promise<SignatureRow[]> {
    return this.db.all<SignatureRow>('SELECT keyid, sig, created_at, created_by FROM release_signatures WHERE release_id = ? ORDER BY created_at, keyid', [releaseId]);
  }

  async upsertSignature(releaseId: string, s: { keyid: string; publicKey: string; sig: string }, by: string | null, now: number): Promise<void> {
    await this.db.run(
      `INSERT INTO release_signatures (release_id, keyid, public_key, sig, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (release_id, keyid) DO UPDATE SET public_key = excluded.public_key, sig = excluded.sig, created_at = excluded.created_at, created_by = excluded.created_by`,
      [releaseId, s.keyid, s.publicKey, s.sig, now, by],
    );
  }

  /** Records that a release goes (or went) to a tenant: from then on the tenant's people see it. */
  async deliveredTo(releaseId: string, tenant: string, now: number): Promise<void> {
    await this.db.run('INSERT INTO release_tenants (release_id, tenant_id, since) SELECT ?, id, ? FROM tenants WHERE name = ? ON CONFLICT DO NOTHING', [releaseId, now, tenant]);
  }

  async deliveries(releaseId: string): Promise<string[]> {
    return (await this.db.all<{ name: string }>('SELECT t.name FROM release_tenants rt JOIN tenants t ON t.id = rt.tenant_id WHERE rt.release_id = ? ORDER BY t.name', [releaseId])).map((r) => r.name);
  }
}

// ---- directives -------------------------------------------------------------------

export type DirectiveStatus = 'pending' | 'accepted' | 'refused';

export interface DirectiveRecord {
  agentId: string;
  seq: number;
  digest: string;
  releases: ReleaseRef[];
  issuedAt: number;
  expiresAt: number;
  status: DirectiveStatus;
  code: string | null;
  message: string | null;
  ackedAt: number | null;
  envelope: Envelope;
  /** The agent version the directive names (self-upgrade), or null. */
  upgrade?: UpgradeRef | null;
}

export interface UpgradeRef {
  version: string;
  digest: string;
}

interface DirectiveRow {
  agent_id: string;
  seq: number;
  digest: string;
  envelope: string;
  releases: string;
  issued_at: number;
  expires_at: number;
  created_by: string | null;
  status: DirectiveStatus;
  code: string | null;
  message: string | null;
  acked_at: number | null;
  upgrade?: string | null;
}

const toDirective = (r: DirectiveRow): DirectiveRecord => ({
  agentId: r.agent_id,
  seq: r.seq,
  digest: r.digest,
  releases: JSON.parse(r.releases) as ReleaseRef[],
  issuedAt: r.issued_at,
  expiresAt: r.expires_at,
  status: r.status,
  code: r.code,
  message: r.message,
  ackedAt: r.acked_at,
  envelope: JSON.parse(r.envelope) as Envelope,
  upgrade: r.upgrade ? (JSON.parse(r.upgrade) as UpgradeRef) : null,
});

export class DirectiveRows {
  constructor(private readonly db: Db) {}

  async latest(agentId: string): Promise<DirectiveRecord | undefined> {
    const r = await this.db.get<DirectiveRow>('SELECT * FROM directives WHERE agent_id = ? ORDER BY seq DESC LIMIT 1', [agentId]);
    return r ? toDirective(r) : undefined;
  }

  async find(agentId: string, seq: number): Promise<DirectiveRecord | undefined> {
    const r = await this.db.get<DirectiveRow>('SELECT * FROM directives WHERE agent_id = ? AND seq = ?', [agentId, seq]);
    return r ? toDirective(r) : undefined;
  }

  async get(agentId: string, seq: number): Promise<DirectiveRecord> {
    const d = await this.find(agentId, seq);
    if (!d) throw new FerryError('FERRY_E_NOT_FOUND', `directive ${seq} of agent ${agentId}`);
    return d;
  }

  /** The releases the agent last accepted (its desired state as the hub knows it). */
  async accepted(agentId: string): Promise<DirectiveRecord | undefined> {
    const r = await this.db.get<DirectiveRow>("SELECT * FROM directives WHERE agent_id = ? AND status = 'accepted' ORDER BY seq DESC LIMIT 1", [agentId]);
    return r ? toDirective(r) : undefined;
  }

  /**
   * The agent's next seq; call in the transaction that inserts it. The lock
   * serialises issuers on several replicas, so seqs stay strictly increasing.
   */
  async nextSeq(agentId: string): Promise<number> {
    return (await this.nextSeqs([agentId])).get(agentId)!;
  }

  /** `nextSeq` for many agents: their locks in one statement, their seqs in one query per 500. */
  async nextSeqs(agentIds: readonly string[]): Promise<Map<string, number>> {
    await this.db.lockAll(agentIds.map((id) => `agent:${id}`));
    const out = new Map(agentIds.map((id) => [id, 1]));
    for (let i = 0; i < agentIds.length; i += 500) {
      const part = agentIds.slice(i, i + 500);
      for (const [id, s] of await this.db.values<[string, number]>(`SELECT agent_id, max(seq) FROM directives WHERE agent_id IN ${inList(part.length)} GROUP BY agent_id`, part)) out.set(id, Number(s) + 1);
    }
    return out;
  }

  /** What the last directive each agent did not refuse named (its releases, its agent version); none for an agent never directed. */
  async lastDirectedOf(agentIds: readonly string[]): Promise<Map<string, { releases: ReleaseRef[]; upgrade: UpgradeRef | null }>> {
    const out = new Map<string, { releases: ReleaseRef[]; upgrade: UpgradeRef | null }>();
    for (let i = 0; i < agentIds.length; i += 500) {
      const part = agentIds.slice(i, i + 500);
      const rows = await this.db.values<[string, string, string | null]>(
        `SELECT d.agent_id, d.releases, d.upgrade FROM directives d
          WHERE d.agent_id IN ${inList(part.length)} AND d.status != 'refused'
            AND d.seq = (SELECT max(x.seq) FROM directives x WHERE x.agent_id = d.agent_id AND x.status != 'refused')`,
        part,
      );
      for (const [id, releases, upgrade] of rows) out.set(id, { releases: JSON.parse(releases) as ReleaseRef[], upgrade: upgrade ? (JSON.parse(upgrade) as UpgradeRef) : null });
    }
    return out;
  }

  async insert(d: DirectiveRecord, by: string | null): Promise<void> {
    await this.insertMany([d], by);
  }

  /** Inserts directives, 200 to a statement. */
  async insertMany(ds: readonly DirectiveRecord[], by: string | null): Promise<void> {
    for (let i = 0; i < ds.length; i += 200) {
      const part = ds.slice(i, i + 200);
      await this.db.run(
        `INSERT INTO directives (agent_id, seq, digest, envelope, releases, issued_at, expires_at, created_by, upgrade) VALUES ${part.map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`,
        part.flatMap((d) => [d.agentId, d.seq, d.digest, JSON.stringify(d.envelope), JSON.stringify(d.releases), d.issuedAt, d.expiresAt, by, d.upgrade ? JSON.stringify(d.upgrade) : null]),
      );
    }
  }

  /** Records an agent's answer; only the pending directive it names changes. */
  async ack(agentId: string, a: { seq: number; digest: string; accepted: boolean; code: string | null; message: string | null }, now: number): Promise<boolean> {
    const n = await this.db.run("UPDATE directives SET status = ?, code = ?, message = ?, acked_at = ? WHERE agent_id = ? AND seq = ? AND digest = ? AND status = 'pending'", [
      a.accepted ? 'accepted' : 'refused',
      a.code,
      a.message,
      now,
      agentId,
      a.seq,
      a.digest,
    ]);
    return n === 1;
  }

  /**
   * `ack` for many answers in one statement per 200: the directives that
   * changed (an answer naming no pending directive changes nothing). One
   * answer per directive: a second for the same one is left to the next call.
   */
  async ackMany(acks: readonly { agentId: string; seq: number; digest: string; accepted: boolean; code: string | null; message: string | null; at: number }[]): Promise<DirectiveRecord[]> {
    const out: DirectiveRecord[] = [];
    for (let i = 0; i < acks.length; i += 200) {
      const part = acks.slice(i, i + 200);
      const rows = await this.db.all<DirectiveRow>(
        `UPDATE directives SET status = v.column4, code = v.column5, message = v.column6, acked_at = v.column7
           FROM (VALUES ${part.map(() => '(CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT))').join(', ')}) AS v
          WHERE directives.agent_id = v.column1 AND directives.seq = v.column2 AND directives.digest = v.column3 AND directives.status = 'pending'
          RETURNING agent_id, seq, digest, envelope, releases, issued_at, expires_at, created_by, status, code, message, acked_at, upgrade`,
        part.flatMap((a) => [a.agentId, a.seq, a.digest, a.accepted ? 'accepted' : 'refused', a.code, a.message, a.at]),
      );
      out.push(...rows.map(toDirective));
    }
    return out;
  }

  /** These directives (agent, seq), those still pending, 500 agents to a query. */
  async pendingByKey(keys: readonly (readonly [string, number])[]): Promise<Map<string, DirectiveRecord>> {
    const out = new Map<string, DirectiveRecord>();
    const want = new Map(keys);
    for (let i = 0; i < keys.length; i += 500) {
      const ids = keys.slice(i, i + 500).map(([id]) => id);
      const rows = await this.db.all<DirectiveRow>(`SELECT * FROM directives WHERE status = 'pending' AND agent_id IN ${inList(ids.length)}`, ids);
      for (const r of rows) if (want.get(r.agent_id) === Number(r.seq)) out.set(r.agent_id, toDirective(r));
    }
    return out;
  }

  async pendingOf(agentIds: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (let i = 0; i < agentIds.length; i += 500) {
      const ids = agentIds.slice(i, i + 500);
      const rows = await this.db.all<{ agent_id: string; seq: number }>(
        `SELECT agent_id, max(seq) AS seq FROM directives WHERE status = 'pending' AND agent_id IN ${inList(ids.length)} GROUP BY agent_id`,
        ids,
      );
      for (const r of rows) out.set(r.agent_id, r.seq);
    }
    return out;
  }
}

// ---- answers from agents (plans), for the replica that asked ------------------------

export class AnswerRows {
  constructor(private readonly db: Db) {}

  async put(id: string, agentId: string, body: string, now: number): Promise<void> {
    await this.db.run('INSERT INTO agent_answers (id, agent_id, body, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING', [id, agentId, body, now]);
  }

  async take(id: string): Promise<{ agentId: string; body: string } | undefined> {
    const r = await this.db.get<{ agent_id: string; body: string }>('SELECT agent_id, body FROM agent_answers WHERE id = ?', [id]);
    if (r) await this.db.run('DELETE FROM agent_answers WHERE id = ?', [id]);
    return r ? { agentId: r.agent_id, body: r.body } : undefined;
  }

  prune(before: number): Promise<number> {
    return this.db.run('DELETE FROM agent_answers WHERE created_at < ?', [before]);
  }
}
