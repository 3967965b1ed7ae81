// The audit logs as stored: entries (append-only: the schema's triggers
// refuse UPDATE and DELETE), the personal data beside them (erasable), signed
// checkpoints and the agents' cosignatures.
import type { Envelope } from '../../shared/dsse.js';
import { inList, type Db } from './db.js';

export interface EntryRow {
  idx: number;
  at: number;
  data: Buffer;
  leaf_hash: Buffer;
}

export interface CheckpointRow {
  log: string;
  size: number;
  root: Buffer;
  at: number;
  envelope: string;
}

export class AuditRows {
  constructor(private readonly db: Db) {}

  /**
   * The next index of `log`; call in the transaction that appends it. The
   * lock keeps appends to one log serial across replicas, so the log stays a
   * line (an index is never taken twice, and commits follow index order).
   */
  async nextIndex(log: string): Promise<number> {
    return (await this.nextIndexes([log])).get(log)!;
  }

  /** `nextIndex` of several logs: their locks in one statement, their heads in one query. */
  async nextIndexes(logs: readonly string[]): Promise<Map<string, number>> {
    await this.db.lockAll(logs.map((l) => `audit:${l}`));
    const out = new Map(logs.map((l) => [l, 0]));
    const rows = await this.db.values<[string, number | string]>(`SELECT log, max(idx) FROM audit_entries WHERE log IN ${inList(logs.length)} GROUP BY log`, logs);
    for (const [log, m] of rows) out.set(log, Number(m) + 1);
    return out;
  }

  async insertEntry(log: string, idx: number, at: number, data: Buffer, leafHash: Buffer): Promise<void> {
    await this.insertEntries([{ log, idx, at, data, leaf_hash: leafHash }]);
  }

  /** Entries (each log's consecutive), 200 to a statement. */
  async insertEntries(rows: readonly (EntryRow & { log: string })[]): Promise<void> {
    for (let i = 0; i < rows.length; i += 200) {
      const part = rows.slice(i, i + 200);
      await this.db.run(
        `INSERT INTO audit_entries (log, idx, at, data, leaf_hash) VALUES ${part.map(() => '(?, ?, ?, ?, ?)').join(', ')}`,
        part.flatMap((r) => [r.log, r.idx, r.at, r.data, r.leaf_hash]),
      );
    }
  }

  async insertPersonal(log: string, idx: number, field: string, salt: Buffer, value: string): Promise<void> {
    await this.db.run('INSERT INTO audit_personal (log, idx, field, salt, value) VALUES (?, ?, ?, ?, ?)', [log, idx, field, salt, value]);
  }

  async logs(): Promise<string[]> {
    return (await this.db.all<{ log: string }>('SELECT DISTINCT log FROM audit_entries ORDER BY log')).map((r) => r.log);
  }

  async size(log: string): Promise<number> {
    const r = await this.db.get<{ m: number | null }>('SELECT max(idx) AS m FROM audit_entries WHERE log = ?', [log]);
    return (r?.m ?? -1) + 1;
  }

  /** Leaf hashes from index `from`, in order, at most `limit`. */
  leafHashes(log: string, from: number, limit: number): Promise<[number, Buffer][]> {
    return this.db.values<[number, Buffer]>('SELECT idx, leaf_hash FROM audit_entries WHERE log = ? AND idx >= ? ORDER BY idx LIMIT ?', [log, from, limit]);
  }

  entries(log: string, opts: { from: number; since: number; limit: number }): Promise<EntryRow[]> {
    return this.db.all<EntryRow>('SELECT idx, at, data, leaf_hash FROM audit_entries WHERE log = ? AND idx >= ? AND at >= ? ORDER BY idx LIMIT ?', [log, opts.from, opts.since, opts.limit]);
  }

  async personalValues(log: string, idx: number): Promise<Record<string, string | null>> {
    const rows = await this.db.all<{ field: string; value: string | null }>('SELECT field, value FROM audit_personal WHERE log = ? AND idx = ?', [log, idx]);
    return Object.fromEntries(rows.map((r) => [r.field, r.value]));
  }

  /** Personal values of a run of entries (the console's audit page), by index. */
  async personalRange(log: string, from: number, to: number): Promise<Map<number, Record<string, string | null>>> {
    const rows = await this.db.all<{ idx: number; field: string; value: string | null }>('SELECT idx, field, value FROM audit_personal WHERE log = ? AND idx >= ? AND idx < ?', [log, from, to]);
    const out = new Map<number, Record<string, string | null>>();
    for (const r of rows) {
      let m = out.get(r.idx);
      if (!m) out.set(r.idx, (m = {}));
      m[r.field] = r.value;
    }
    return out;
  }

  async insertCheckpoint(log: string, size: number, root: Buffer, at: number, envelope: Envelope): Promise<boolean> {
    return (await this.db.run('INSERT INTO audit_checkpoints (log, size, root, at, envelope) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING', [log, size, root, at, JSON.stringify(envelope)])) === 1;
  }

  latestCheckpoint(log: string): Promise<CheckpointRow | undefined> {
    return this.db.get<CheckpointRow>('SELECT * FROM audit_checkpoints WHERE log = ? ORDER BY size DESC, at DESC LIMIT 1', [log]);
  }

  checkpoints(log: string): Promise<CheckpointRow[]> {
    return this.db.all<CheckpointRow>('SELECT * FROM audit_checkpoints WHERE log = ? ORDER BY size, at', [log]);
  }

  checkpoint(log: string, size: number, root: Buffer): Promise<CheckpointRow | undefined> {
    return this.db.get<CheckpointRow>('SELECT * FROM audit_checkpoints WHERE log = ? AND size = ? AND root = ?', [log, size, root]);
  }

  cosignatures(log: string, size: number): Promise<{ agent_id: string; sig: string; at: number }[]> {
    return this.db.all('SELECT agent_id, sig, at FROM audit_cosignatures WHERE log = ? AND size = ? ORDER BY at, agent_id', [log, size]);
  }

  async insertCosignature(log: string, size: number, agentId: string, sig: string, at: number): Promise<void> {
    await this.db.run('INSERT INTO audit_cosignatures (log, size, agent_id, sig, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING', [log, size, agentId, sig, at]);
  }

  /** The newest checkpoint this agent cosigned, to prove consistency from. */
  async lastWitnessed(log: string, agentId: string): Promise<{ size: number; root: string } | null> {
    const r = await this.db.get<{ size: number; root: Buffer }>(
      'SELECT c.size, c.root FROM audit_cosignatures s JOIN audit_checkpoints c ON c.log = s.log AND c.size = s.size WHERE s.log = ? AND s.agent_id = ? ORDER BY c.size DESC LIMIT 1',
      [log, agentId],
    );
    return r ? { size: r.size, root: r.root.toString('hex') } : null;
  }
}
