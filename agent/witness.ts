// The agent as a witness of its tenant's audit log. It accepts a checkpoint
// only if the hub key of its trust root signed it, it is for its own tenant,
// and it extends the last checkpoint it holds (RFC 6962 consistency proof).
// Then it stores it (fsync) and cosigns it with its own key, so the
// institution holds proof of what the log said. A checkpoint that would
// rewrite history is refused loudly and never cosigned.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCheckpoint, parseEntry, type AuditEntry, type Checkpoint } from '../shared/audit.js';
import { PAYLOAD_TYPES, pae, verifyEnvelope, type Envelope } from '../shared/dsse.js';
import { FerryError, asFerryError } from '../shared/errors.js';
import { appendSynced, writeFileAtomic } from '../shared/files.js';
import { sign, type KeyPair } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import { leafHash, verifyConsistency, verifyInclusion } from '../shared/merkle.js';
import type { AgentMessage, CheckpointMessage } from '../shared/protocol.js';
import { trustedKeys, type Root } from '../shared/trust.js';
import { appendRefusal, type Refusal } from './trust-store.js';
import { refuseIfAhead, type ClockFacts } from './verify.js';

export const AUDIT_FILE = 'audit.json';
export const AUDIT_ENTRIES_FILE = 'audit-entries.jsonl';

export interface Witnessed {
  checkpoint: Checkpoint;
  envelope: Envelope;
  witnessedAt: string;
}

export interface WitnessState {
  format: 1;
  checkpoints: Witnessed[];
}

export interface HeldEntry {
  index: number;
  /** base64 of the entry bytes, as hashed. */
  data: string;
  /** Inclusion proof against the checkpoint of `size`. */
  size: number;
  proof: string[];
}

export function loadWitness(dir: string): WitnessState {
  try {
    return JSON.parse(readFileSync(join(dir, AUDIT_FILE), 'utf8')) as WitnessState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { format: 1, checkpoints: [] };
    throw new FerryError('FERRY_E_STATE_CORRUPT', `${AUDIT_FILE}: ${(err as Error).message}`);
  }
}

export function readHeldEntries(dir: string): HeldEntry[] {
  try {
    return readFileSync(join(dir, AUDIT_ENTRIES_FILE), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as HeldEntry);
  } catch {
    return [];
  }
}

/** Verifies a held entry offline against the witnessed checkpoint of its size. */
export function checkHeldEntry(e: HeldEntry, state: WitnessState): { entry: AuditEntry; ok: boolean } {
  const data = Buffer.from(e.data, 'base64');
  const cp = state.checkpoints.find((c) => c.checkpoint.size === e.size);
  const ok = !!cp && verifyInclusion(leafHash(data), e.index, e.size, e.proof.map((h) => Buffer.from(h, 'hex')), Buffer.from(cp.checkpoint.root, 'hex'));
  return { entry: parseEntry(data), ok };
}

/** The pure check: is `next` a checkpoint this agent may witness, given what it holds and its clock? */
export function checkCheckpoint(held: Checkpoint | null, msg: CheckpointMessage, root: Root, tenant: string, clock: ClockFacts): Checkpoint {
  const verified = verifyEnvelope(msg.checkpoint, PAYLOAD_TYPES.checkpoint, trustedKeys(root, 'hub'), 'hub');
  const cp = parseCheckpoint(verified.payload);
  if (cp.log !== tenant) throw new FerryError('FERRY_E_DIRECTIVE_BINDING', `checkpoint for log ${cp.log}; this agent is in ${tenant}`);
  refuseIfAhead(`audit checkpoint of size ${cp.size}`, cp.at, clock);
  if (!held) return cp;
  if (cp.size < held.size) throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', `checkpoint of size ${cp.size} after one of size ${held.size}: the log shrank`);
  if (cp.size === held.size) {
    if (cp.root !== held.root) throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', `two roots for size ${cp.size}: the log was forked`);
    return cp;
  }
  if (msg.fromSize !== held.size) throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', `proof from size ${msg.fromSize}, this agent holds ${held.size}`);
  const proof = msg.consistency.map((h) => Buffer.from(h, 'hex'));
  if (!verifyConsistency(held.size, cp.size, Buffer.from(held.root, 'hex'), Buffer.from(cp.root, 'hex'), proof)) {
    throw new FerryError('FERRY_E_AUDIT_INCONSISTENT', `size ${cp.size} does not extend the witnessed size ${held.size}: history was rewritten`);
  }
  return cp;
}

export class Witness {
  private state: WitnessState;

  constructor(
    private readonly opts: {
      stateDir: string;
      tenant: string;
      key: KeyPair;
      log: Logger;
      root: () => Root | null;
      send: (m: AgentMessage) => boolean;
      now?: () => number;
      /** How far ahead of the local clock a checkpoint may be dated (default 5 min). */
      maxSkewMs?: number;
      /** The hub's clock minus this host's, from its welcome. */
      hubClockOffsetMs?: () => number | null;
      /** Told of every refused checkpoint once it is on record (alarms among them). */
      onRefusal?: (r: Refusal) => void;
    },
  ) {
    this.state = loadWitness(opts.stateDir);
  }

  /** What hello reports, so the hub proves consistency from it. */
  last(): { size: number; root: string } | null {
    const c = this.state.checkpoints[this.state.checkpoints.length - 1]?.checkpoint;
    return c ? { size: c.size, root: c.root } : null;
  }

  onCheckpoint(msg: CheckpointMessage): void {
    const root = this.opts.root();
    const heldEntry = this.state.checkpoints[this.state.checkpoints.length - 1];
    let cp: Checkpoint;
    const now = (this.opts.now ?? Date.now)();
    try {
      if (!root) throw new FerryError('FERRY_E_ROOT_MISSING', 'cannot check a checkpoint without a trust root');
      cp = checkCheckpoint(heldEntry?.checkpoint ?? null, msg, root, this.opts.tenant, { now, maxSkewMs: this.opts.maxSkewMs, hubClockOffsetMs: this.opts.hubClockOffsetMs?.() ?? null });
    } catch (err) {
      const e = asFerryError(err);
      // on record before anything is said: the institution keeps it even if the hub never hears
      const rec = appendRefusal(this.opts.stateDir, { at: new Date(now).toISOString(), kind: 'checkpoint', seq: null, digest: null, code: e.code, message: e.message });
      const alarm = e.code === 'FERRY_E_AUDIT_INCONSISTENT';
      this.opts.log[alarm ? 'fatal' : 'warn']({ code: e.code, detail: e.detail }, alarm ? 'ALARM: the hub presented an audit log inconsistent with what this agent witnessed' : 'checkpoint refused');
      this.opts.send({ type: 'error', code: e.code, message: e.message.slice(0, 2048) });
      this.opts.onRefusal?.(rec);
      return;
    }
    const isNew = !heldEntry || heldEntry.checkpoint.size !== cp.size;
    if (isNew) {
      // entries about this agent: keep those whose inclusion proof verifies
      const lines = msg.entries
        .filter((e) => verifyInclusion(leafHash(Buffer.from(e.data, 'base64')), e.index, cp.size, e.proof.map((h) => Buffer.from(h, 'hex')), Buffer.from(cp.root, 'hex')))
        .map((e) => JSON.stringify({ index: e.index, data: e.data, size: cp.size, proof: e.proof } satisfies HeldEntry) + '\n');
      if (lines.length) appendSynced(join(this.opts.stateDir, AUDIT_ENTRIES_FILE), lines.join(''));
      this.state = { format: 1, checkpoints: [...this.state.checkpoints, { checkpoint: cp, envelope: msg.checkpoint, witnessedAt: new Date(now).toISOString() }] };
      writeFileAtomic(join(this.opts.stateDir, AUDIT_FILE), JSON.stringify(this.state) + '\n', 0o600);
      this.opts.log.info({ size: cp.size, entries: lines.length }, 'audit checkpoint witnessed');
    }
    const sig = sign(pae(PAYLOAD_TYPES.checkpoint, Buffer.from(msg.checkpoint.payload, 'base64')), this.opts.key.secretKey);
    this.opts.send({ type: 'cosign', log: cp.log, size: cp.size, root: cp.root, sig: Buffer.from(sig).toString('base64') });
  }
}
