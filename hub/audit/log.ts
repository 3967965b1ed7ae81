// The hub's audit logs: append-only per-tenant Merkle logs (plus "_hub"),
// written in the same transaction as the operation they record, and signed
// checkpoints that tenants' agents witness and cosign.
//
// `append` must run inside the caller's transaction: if the operation fails,
// the entry is rolled back with it; an entry never exists without its
// operation. The store serialises appends per log (on every replica), so
// indexes form a line. Triggers refuse UPDATE and DELETE on the log tables
// (someone with the database can drop them; that is what checkpoints
// witnessed by the institutions' own agents are for).
import { randomBytes } from 'node:crypto';
import { commitment, parseEntry, type AuditEntry, type Checkpoint } from '../../shared/audit.js';
import { PAYLOAD_TYPES, addSignature, createEnvelope, pae, signatureFor, type Envelope } from '../../shared/dsse.js';
import { FerryError } from '../../shared/errors.js';
import { decodePublicKey, decodeSignature, verify, type KeyPair } from '../../shared/keys.js';
import type { Logger } from '../../shared/logger.js';
import { MerkleTree, leafHash } from '../../shared/merkle.js';
import { canonicalJson } from '../../shared/release.js';
import type { CheckpointRow } from '../store/audit.js';
import type { Store } from '../store/store.js';
import { KeyedMutex } from '../mutex.js';

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

/** Entries read per query when catching a tree up or exporting. */
const PAGE = 5000;

export class AuditLog {
  private readonly trees = new Map<string, MerkleTree>();
  private readonly treeLocks = new KeyedMutex();

  constructor(
    private readonly store: Store,
    private readonly hubKey: KeyPair,
    private readonly log: Logger,
  ) {}

  get hubPublicKey(): Uint8Array {
    return this.hubKey.publicKey;
  }

  /** Appends an entry; call inside the operation's transaction. Returns its index. */
  async append(input: AuditInput, now: number): Promise<number> {
    return (await this.appendMany([input], now))[0]!;
  }

  /**
   * Appends entries in their order (per log, consecutive indexes), each log
   * locked and written once however many entries it gets: a rollout chunk's
   * hundreds of entries are a few statements. Call inside the operation's
   * transaction. An input's `at` is its time (default `now`). Returns their indexes.
   */
  async appendMany(inputs: readonly (AuditInput & { at?: number })[], now: number): Promise<number[]> {
    if (!this.store.db.inTx) throw new FerryError('FERRY_E_INTERNAL', "audit entries are written inside the operation's transaction");
    const byLog = new Map<string, number[]>();
    inputs.forEach((input, i) => {
      const l = byLog.get(input.log);
      if (l) l.push(i);
      else byLog.set(input.log, [i]);
    });
    const indexes: number[] = new Array<number>(inputs.length);
    const next = await this.store.audit.nextIndexes([...byLog.keys()]);
    const rows = [];
    for (const [log, which] of byLog) {
      let index = next.get(log)!;
      for (const i of which) {
        const input = inputs[i]!;
        const personal: Record<string, string> = {};
        for (const [field, value] of Object.entries(input.personal ?? {})) {
          const salt = randomBytes(16);
          personal[field] = commitment(salt, value);
          await this.store.audit.insertPersonal(log, index, field, salt, value);
        }
        const at = input.at ?? now;
        const entry: AuditEntry = {
          log,
          index,
          at,
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
        rows.push({ log, idx: index, at, data, leaf_hash: leafHash(data) });
        indexes[i] = index++;
      }
    }
    await this.store.audit.insertEntries(rows);
    return indexes;
  }

  logs(): Promise<string[]> {
    return this.store.audit.logs();
  }

  size(log: string): Promise<number> {
    return this.store.audit.size(log);
  }

  /**
   * The log's tree, caught up with committed entries (appends never touch
   * it, so a rollback cannot corrupt it; other replicas' appends are read
   * like ours).
   */
  tree(log: string): Promise<MerkleTree> {
    return this.treeLocks.run(log, async () => {
      let t = this.trees.get(log);
      if (!t) this.trees.set(log, (t = new MerkleTree()));
      for (;;) {
        const rows = await this.store.detached(() => this.store.audit.leafHashes(log, t.size, PAGE));
        for (const [idx, hash] of rows) {
          if (idx !== t.size) throw new FerryError('FERRY_E_DB', `audit log ${log}: entry ${t.size} is missing`);
          t.append(hash);
        }
        if (rows.length < PAGE) return t;
      }
    });
  }

  async entries(log: string, opts: { since?: number; from?: number; limit?: number } = {}): Promise<(StoredEntry & { entry: AuditEntry })[]> {
    const rows = await this.store.audit.entries(log, { from: opts.from ?? 0, since: opts.since ?? 0, limit: opts.limit ?? 1000 });
    return rows.map((r) => ({ index: r.idx, at: r.at, data: r.data, leafHash: r.leaf_hash, entry: parseEntry(r.data) }));
  }

  /** Every entry in order, for export, a page at a time; rows as stored, not trusted. */
  async *scan(log: string): AsyncGenerator<StoredEntry> {
    let from = 0;
    for (;;) {
      const rows = await this.store.audit.entries(log, { from, since: 0, limit: PAGE });
      for (const r of rows) yield { index: r.idx, at: r.at, data: r.data, leafHash: r.leaf_hash };
      if (rows.length < PAGE) return;
      from = rows[rows.length - 1]!.idx + 1;
    }
  }

  personalValues(log: string, index: number): Promise<Record<string, string | null>> {
    return this.store.audit.personalValues(log, index);
  }

  /** Signs a checkpoint of the log's current size if it grew since the last one. */
  async checkpoint(log: string, now: number): Promise<StoredCheckpoint | null> {
    const tree = await this.tree(log);
    const last = await this.latestCheckpoint(log);
    if (tree.size === 0 || (last && last.size >= tree.size)) return null;
    const cp: Checkpoint = { _type: 'checkpoint', log, size: tree.size, root: tree.root().toString('hex'), at: now };
    let env = createEnvelope(PAYLOAD_TYPES.checkpoint, canonicalJson(cp));
    env = addSignature(env, signatureFor(env, this.hubKey));
    await this.store.audit.insertCheckpoint(log, cp.size, Buffer.from(cp.root, 'hex'), now, env);
    this.log.debug({ log, size: cp.size }, 'audit checkpoint signed');
    return this.latestCheckpoint(log);
  }

  async latestCheckpoint(log: string): Promise<StoredCheckpoint | null> {
    const r = await this.store.audit.latestCheckpoint(log);
    return r ? this.toCheckpoint(r) : null;
  }

  async checkpoints(log: string): Promise<StoredCheckpoint[]> {
    const out: StoredCheckpoint[] = [];
    for (const r of await this.store.audit.checkpoints(log)) out.push(await this.toCheckpoint(r));
    return out;
  }

  /** Stores an agent's cosignature after checking it over the checkpoint's payload. */
  async cosign(log: string, size: number, root: string, agentId: string, agentPublicKey: string, sig: string, now: number): Promise<boolean> {
    const r = await this.store.audit.checkpoint(log, size, Buffer.from(root, 'hex'));
    if (!r) return false;
    const env = JSON.parse(r.envelope) as Envelope;
    const s = decodeSignature(sig);
    if (!s || !verify(pae(PAYLOAD_TYPES.checkpoint, Buffer.from(env.payload, 'base64')), s, decodePublicKey(agentPublicKey))) return false;
    await this.store.audit.insertCosignature(log, size, agentId, sig, now);
    return true;
  }

  /** The newest checkpoint this agent cosigned, to prove consistency from. */
  lastWitnessed(log: string, agentId: string): Promise<{ size: number; root: string } | null> {
    return this.store.audit.lastWitnessed(log, agentId);
  }

  private async toCheckpoint(r: CheckpointRow): Promise<StoredCheckpoint> {
    const cos = await this.store.audit.cosignatures(r.log, r.size);
    return { log: r.log, size: r.size, root: r.root, at: r.at, envelope: JSON.parse(r.envelope) as Envelope, cosignatures: cos.map((c) => ({ agentId: c.agent_id, sig: c.sig, at: c.at })) };
  }
}
