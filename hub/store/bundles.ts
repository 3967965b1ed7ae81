// Agent bundles as stored: the archive in chunks of CHUNK bytes (in the
// database, so every replica on one PostgreSQL serves it and a backup of the
// database holds it), the signed statement and its signatures, the tenants
// it is for, and each agent's latest version report.
import type { UpgradeMessage } from '../../shared/protocol.js';
import { inList, type Db } from './db.js';

export const CHUNK = 1024 * 1024;

export interface BundleRow {
  version: string;
  digest: string;
  size: number;
  statement: Buffer;
  statement_digest: string;
  manifest: string;
  created_at: number;
  created_by: string | null;
}

export interface BundleSignatureRow {
  keyid: string;
  public_key: string;
  sig: string;
  created_at: number;
  created_by: string | null;
}

export class BundleRows {
  constructor(private readonly db: Db) {}

  /** Stores a bundle: its row, its tenants and its archive, in the caller's transaction. */
  async insert(r: Omit<BundleRow, 'created_at' | 'created_by'>, tenants: readonly string[], archive: Buffer, by: string | null, now: number): Promise<void> {
    await this.db.run('INSERT INTO agent_bundles (version, digest, size, statement, statement_digest, manifest, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
      r.version,
      r.digest,
      r.size,
      r.statement,
      r.statement_digest,
      r.manifest,
      now,
      by,
    ]);
    for (const t of tenants) await this.db.run('INSERT INTO agent_bundle_tenants (version, tenant) VALUES (?, ?)', [r.version, t]);
    for (let i = 0; i * CHUNK < archive.length; i++) {
      await this.db.run('INSERT INTO agent_bundle_chunks (digest, idx, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING', [r.digest, i, archive.subarray(i * CHUNK, (i + 1) * CHUNK)]);
    }
  }

  find(version: string): Promise<BundleRow | undefined> {
    return this.db.get<BundleRow>('SELECT * FROM agent_bundles WHERE version = ?', [version]);
  }

  byDigest(digest: string): Promise<BundleRow | undefined> {
    return this.db.get<BundleRow>('SELECT * FROM agent_bundles WHERE digest = ?', [digest]);
  }

  byStatement(digest: string): Promise<BundleRow | undefined> {
    return this.db.get<BundleRow>('SELECT * FROM agent_bundles WHERE statement_digest = ?', [digest]);
  }

  /** Every bundle, or those for one of `tenants`. */
  list(tenants: readonly string[] | null): Promise<BundleRow[]> {
    if (tenants === null) return this.db.all<BundleRow>('SELECT * FROM agent_bundles ORDER BY created_at, version');
    return this.db.all<BundleRow>(
      `SELECT * FROM agent_bundles b WHERE EXISTS (SELECT 1 FROM agent_bundle_tenants t WHERE t.version = b.version AND t.tenant IN ${inList(tenants.length)}) ORDER BY created_at, version`,
      [...tenants],
    );
  }

  async tenants(version: string): Promise<string[]> {
    return (await this.db.all<{ tenant: string }>('SELECT tenant FROM agent_bundle_tenants WHERE version = ? ORDER BY tenant', [version])).map((r) => r.tenant);
  }

  signatures(version: string): Promise<BundleSignatureRow[]> {
    return this.db.all<BundleSignatureRow>('SELECT keyid, public_key, sig, created_at, created_by FROM agent_bundle_signatures WHERE version = ? ORDER BY created_at, keyid', [version]);
  }

  async upsertSignature(version: string, s: { keyid: string; publicKey: string; sig: string }, by: string | null, now: number): Promise<void> {
    await this.db.run(
      `INSERT INTO agent_bundle_signatures (version, keyid, public_key, sig, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (version, keyid) DO UPDATE SET public_key = excluded.public_key, sig = excluded.sig, created_at = excluded.created_at, created_by = excluded.created_by`,
      [version, s.keyid, s.publicKey, s.sig, now, by],
    );
  }

  /** Chunk `idx` of the archive with this digest. */
  async chunk(digest: string, idx: number): Promise<Buffer | undefined> {
    return (await this.db.get<{ data: Buffer }>('SELECT data FROM agent_bundle_chunks WHERE digest = ? AND idx = ?', [digest, idx]))?.data;
  }

  // ---- each agent's version report --------------------------------------------------------

  /** Stores the agent's report; returns the one it replaces. */
  async recordVersion(agentId: string, m: UpgradeMessage, now: number): Promise<UpgradeMessage | null> {
    const prev = await this.db.get<{ status: string }>('SELECT status FROM agent_versions WHERE agent_id = ?', [agentId]);
    await this.db.run('INSERT INTO agent_versions (agent_id, status, updated_at) VALUES (?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at', [
      agentId,
      JSON.stringify(m),
      now,
    ]);
    return prev ? (JSON.parse(prev.status) as UpgradeMessage) : null;
  }

  async versionOf(agentId: string): Promise<{ status: UpgradeMessage; at: number } | null> {
    const r = await this.db.get<{ status: string; updated_at: number }>('SELECT status, updated_at FROM agent_versions WHERE agent_id = ?', [agentId]);
    return r ? { status: JSON.parse(r.status) as UpgradeMessage, at: Number(r.updated_at) } : null;
  }
}
