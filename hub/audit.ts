// The hub's audit logs: append-only per-tenant Merkle logs (plus "_hub"),
// written in the same sqlite transaction as the operation they record, and
// signed checkpoints that tenants' agents witness and cosign.
//
// `append` must run inside the caller's transaction: if the operation fails,
// the entry is rolled back with it; an entry never exists without its
// operation. Triggers refuse UPDATE and DELETE on the log tables (someone
// with the file can drop them; that is what checkpoints witnessed by the
// institutions' own agents are for).
import { randomBytes } from 'node:crypto';
import { commitment, parseEntry, type AuditEntry, type Checkpoint } from '../shared/audit.js';
import { PAYLOAD_TYPES, addSignature, createEnvelope, pae, signatureFor, type Envelope } from '../shared/dsse.js';
import { FerryError } from '../shared/errors.js';
import { decodePublicKey, decodeSignature, verify, type KeyPair } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import { MerkleTree, leafHash } from '../shared/merkle.js';
import { canonicalJson } from '../shared/release.js';
import type { DB } from './db.js';

export interface AuditInput {
  log: string;
  actor: AuditEntry['actor'];
  surface: AuditEntry['surface'];
  action: string;
  target?: AuditEntry['target'];
  agents?: string[];
  outcome?: AuditEntry['outcome'];
  details?: AuditEntry['details'];
  /** Personal data: stored as salted commitments in the leaf, values off the log. */
  personal?: Record<string, string>;
}

export interface StoredEntry {
  index: number;
  at: number;
  data: Buffer;
  leafHash: Buffer;
}

export interface StoredCheckpoint {
  log: string;
  size: number;
  root: Buffer;
  at: number;
  envelope: Envelope;
  cosignatures: { agentId: string; sig: string; at: number }[];
}

export class AuditLog {
  private readonly trees = new Map<string, MerkleTree>();
  // Prepared once: append runs inside every audited operation (bench/audit).
  private readonly nextIndex;
  private readonly insertPersonal;
  private readonly insertEntry;

  constructor(
    private readonly db: DB,
    private readonly hubKey: KeyPair,
    private readonly log: Logger,
  ) {
    this.nextIndex = db.prepare('SELECT max(idx) AS m FROM audit_entries WHERE log = ?');
    this.insertPersonal = db.prepare('INSERT INTO audit_personal (log, idx, field, salt, value) VALUES (?, ?, ?, ?, ?)');
    this.insertEntry = db.prepare('INSERT INTO audit_entries (log, idx, at, data, leaf_hash) VALUES (?, ?, ?, ?, ?)');
  }

  get hubPublicKey(): Uint8Array {
    return this.hubKey.publicKey;
  }

  /** Appends an entry; call inside the operation's transaction. Returns its index. */
  append(input: AuditInput, now: number): number {
    if (!this.db.inTransaction) throw new FerryError('FERRY_E_INTERNAL', 'audit entries are written inside the operation\'s transaction');
    const index = ((this.nextIndex.get(input.log) as { m: number | null }).m ?? -1) + 1;
    const personal: Record<string, string> = {};
    for (const [field, value] of Object.entries(input.personal ?? {})) {
      const salt = randomBytes(16);
      personal[field] = commitment(salt, value);
      this.insertPersonal.run(input.log, index, field, salt, value);
    }
    const entry: AuditEntry = {
      log: input.log,
      index,
      at: now,
      actor: input.actor,
      surface: input.surface,
      action: input.action,
      target: input.target ?? null,
      agents: input.agents ?? [],
      outcome: input.outcome ?? 'ok',
      details: input.details ?? {},
      personal,
    };
    const data = canonicalJson(entry);
    parseEntry(data); // never write what verify would refuse
    this.insertEntry.run(input.log, index, now, data, leafHash(data));
    return index;
  }

  logs(): string[] {
    return (this.db.prepare('SELECT DISTINCT log FROM audit_entries ORDER BY log').all() as { log: string }[]).map((r) => r.log);
  }

  size(log: string): number {
    return ((this.db.prepare('SELECT max(idx) AS m FROM audit_entries WHERE log = ?').get(log) as { m: number | null }).m ?? -1) + 1;
  }

  /** The log's tree, caught up with committed entries (appends never touch it, so a rollback cannot corrupt it). */
  tree(log: string): MerkleTree {
    let t = this.trees.get(log);
    if (!t) this.trees.set(log, (t = new MerkleTree()));
    const rows = this.db.prepare('SELECT idx, leaf_hash FROM audit_entries WHERE log = ? AND idx >= ? ORDER BY idx').iterate(log, t.size) as Iterable<{ idx: number; leaf_hash: Buffer }>;
    for (const r of rows) {
      if (r.idx !== t.size) throw new FerryError('FERRY_E_DB', `audit log ${log}: entry ${t.size} is missing`);
      t.append(r.leaf_hash);
    }
    return t;
  }

  entries(log: string, opts: { since?: number; from?: number; limit?: number } = {}): (StoredEntry & { entry: AuditEntry })[] {
    const rows = this.db
      .prepare('SELECT idx, at, data, leaf_hash FROM audit_entries WHERE log = ? AND idx >= ? AND at >= ? ORDER BY idx LIMIT ?')
      .all(log, opts.from ?? 0, opts.since ?? 0, opts.limit ?? 1000) as { idx: number; at: number; data: Buffer; leaf_hash: Buffer }[];
    return rows.map((r) => ({ index: r.idx, at: r.at, data: r.data, leafHash: r.leaf_hash, entry: parseEntry(r.data) }));
  }

  /** Every entry in order, for export; rows as stored, not trusted. */
  *scan(log: string): Generator<StoredEntry> {
    for (const r of this.db.prepare('SELECT idx, at, data, leaf_hash FROM audit_entries WHERE log = ? ORDER BY idx').iterate(log) as Iterable<{ idx: number; at: number; data: Buffer; leaf_hash: Buffer }>) {
      yield { index: r.idx, at: r.at, data: r.data, leafHash: r.leaf_hash };
    }
  }

  personalValues(log: string, index: number): Record<string, string | null> {
    const rows = this.db.prepare('SELECT field, value FROM audit_personal WHERE log = ? AND idx = ?').all(log, index) as { field: string; value: string | null }[];
    return Object.fromEntries(rows.map((r) => [r.field, r.value]));
  }

  /** Signs a checkpoint of the log's current size if it grew since the last one. */
  checkpoint(log: string, now: number): StoredCheckpoint | null {
    const tree = this.tree(log);
    const last = this.latestCheckpoint(log);
    if (tree.size === 0 || (last && last.size >= tree.size)) return null;
    const cp: Checkpoint = { _type: 'checkpoint', log, size: tree.size, root: tree.root().toString('hex'), at: now };
    let env = createEnvelope(PAYLOAD_TYPES.checkpoint, canonicalJson(cp));
    env = addSignature(env, signatureFor(env, this.hubKey));
    this.db.prepare('INSERT INTO audit_checkpoints (log, size, root, at, envelope) VALUES (?, ?, ?, ?, ?)').run(log, cp.size, Buffer.from(cp.root, 'hex'), now, JSON.stringify(env));
    this.log.debug({ log, size: cp.size }, 'audit checkpoint signed');
    return this.latestCheckpoint(log);
  }

  latestCheckpoint(log: string): StoredCheckpoint | null {
    const r = this.db.prepare('SELECT * FROM audit_checkpoints WHERE log = ? ORDER BY size DESC, at DESC LIMIT 1').get(log) as CheckpointRow | undefined;
    return r ? this.toCheckpoint(r) : null;
  }

  checkpoints(log: string): StoredCheckpoint[] {
    return (this.db.prepare('SELECT * FROM audit_checkpoints WHERE log = ? ORDER BY size, at').all(log) as CheckpointRow[]).map((r) => this.toCheckpoint(r));
  }

  /** Stores an agent's cosignature after checking it over the checkpoint's payload. */
  cosign(log: string, size: number, root: string, agentId: string, agentPublicKey: string, sig: string, now: number): boolean {
    const r = this.db.prepare('SELECT * FROM audit_checkpoints WHERE log = ? AND size = ? AND root = ?').get(log, size, Buffer.from(root, 'hex')) as CheckpointRow | undefined;
    if (!r) return false;
    const env = JSON.parse(r.envelope) as Envelope;
    const s = decodeSignature(sig);
    if (!s || !verify(pae(PAYLOAD_TYPES.checkpoint, Buffer.from(env.payload, 'base64')), s, decodePublicKey(agentPublicKey))) return false;
    this.db.prepare('INSERT OR IGNORE INTO audit_cosignatures (log, size, agent_id, sig, at) VALUES (?, ?, ?, ?, ?)').run(log, size, agentId, sig, now);
    return true;
  }

  /** The newest checkpoint this agent cosigned, to prove consistency from. */
  lastWitnessed(log: string, agentId: string): { size: number; root: string } | null {
    const r = this.db
      .prepare('SELECT c.size, c.root FROM audit_cosignatures s JOIN audit_checkpoints c ON c.log = s.log AND c.size = s.size WHERE s.log = ? AND s.agent_id = ? ORDER BY c.size DESC LIMIT 1')
      .get(log, agentId) as { size: number; root: Buffer } | undefined;
    return r ? { size: r.size, root: r.root.toString('hex') } : null;
  }

  private toCheckpoint(r: CheckpointRow): StoredCheckpoint {
    const cos = this.db.prepare('SELECT agent_id, sig, at FROM audit_cosignatures WHERE log = ? AND size = ? ORDER BY at').all(r.log, r.size) as { agent_id: string; sig: string; at: number }[];
    return { log: r.log, size: r.size, root: r.root, at: r.at, envelope: JSON.parse(r.envelope) as Envelope, cosignatures: cos.map((c) => ({ agentId: c.agent_id, sig: c.sig, at: c.at })) };
  }
}

interface CheckpointRow {
  log: string;
  size: number;
  root: Buffer;
  at: number;
  envelope: string;
}


