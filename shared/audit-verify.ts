// `ferry audit verify`: checks a log end to end from what the hub exported,
// trusting none of it but the signing keys. Pure: entries and checkpoints go
// in, a report comes out. It names a bad entry only when a check singled that
// entry out (its bytes, its position, its absence); when only a checkpoint
// gives a change away (an entry's data and leaf hash both rewritten), it
// names the range of entries that checkpoint can no longer vouch for.
//
// Ground truth is the checkpoints (signed by the hub, cosigned by the
// institutions' agents). Each stored entry must hash to its stored leaf hash
// and carry its own log and index; the tree rebuilt from the entries must
// reproduce every checkpoint's root; two checkpoints of one size must agree.
import { parseCheckpoint, parseEntry } from './audit.js';
import { PAYLOAD_TYPES, pae, payloadBytes, validSigners, type Envelope } from './dsse.js';
import { decodePublicKey, decodeSignature, verify } from './keys.js';
import { MerkleTree, leafHash } from './merkle.js';

export interface ExportedEntry {
  index: number;
  data: Buffer;
  leafHash: Buffer;
}

export interface ExportedCheckpoint {
  envelope: Envelope;
  cosignatures: { agentId: string; publicKey: string | null; sig: string }[];
}

export interface Problem {
  kind: 'edited' | 'moved' | 'missing' | 'truncated' | 'forked' | 'mismatch' | 'bad-checkpoint' | 'bad-cosignature';
  /** The entry a check singled out (edited, moved, missing, truncated); null when no single entry can be named. */
  index: number | null;
  /** Entries (inclusive) a checkpoint no longer vouches for, when the problem concerns a range (mismatch, forked). */
  range?: { from: number; to: number };
  message: string;
}

/** Entries a checkpoint can no longer vouch for: one of them changed, and no check could tell which. */
export interface Unvouched {
  from: number;
  to: number;
  /** The size of the checkpoint that gave it away. */
  checkpointSize: number;
  /** Whether agents witnessed (cosigned) that checkpoint. */
  witnessed: boolean;
}

export interface VerifyReport {
  log: string;
  ok: boolean;
  entries: number;
  checkpoints: number;
  /** Checkpoints with at least one valid agent cosignature. */
  witnessed: number;
  /** Largest checkpoint size the rebuilt log matches. */
  verifiedSize: number;
  /** The first entry a check singled out as bad, if any (never a guess from a range). */
  firstBad: number | null;
  /** The first range of entries a checkpoint could not vouch for, if any. */
  unvouched: Unvouched | null;
  problems: Problem[];
}

export function verifyLog(log: string, entries: Iterable<ExportedEntry>, checkpoints: ExportedCheckpoint[], hubKeys: ReadonlyMap<string, Uint8Array>): VerifyReport {
  const problems: Problem[] = [];
  // 1. checkpoints: hub-signed, for this log; cosignatures by agents
  const bySize = new Map<number, { root: string; witnessed: boolean }[]>();
  let witnessed = 0;
  for (const cp of checkpoints) {
    let payload: Buffer;
    try {
      if (validSigners(cp.envelope, hubKeys).length < 1 || cp.envelope.payloadType !== PAYLOAD_TYPES.checkpoint) throw new Error('not signed by the hub key');
      payload = payloadBytes(cp.envelope);
    } catch (err) {
      problems.push({ kind: 'bad-checkpoint', index: null, message: `a checkpoint does not verify: ${(err as Error).message}` });
      continue;
    }
    const c = parseCheckpoint(payload);
    if (c.log !== log) {
      problems.push({ kind: 'bad-checkpoint', index: null, message: `checkpoint for log ${c.log} found in log ${log}` });
      continue;
    }
    const message = pae(PAYLOAD_TYPES.checkpoint, payload);
    const good = cp.cosignatures.filter((s) => {
      const sig = decodeSignature(s.sig);
      try {
        return !!(sig && s.publicKey && verify(message, sig, decodePublicKey(s.publicKey)));
      } catch {
        return false;
      }
    });
    for (const s of cp.cosignatures) if (!good.includes(s)) problems.push({ kind: 'bad-cosignature', index: null, message: `cosignature by agent ${s.agentId} on checkpoint ${c.size} does not verify` });
    if (good.length) witnessed++;
    const list = bySize.get(c.size) ?? [];
    list.push({ root: c.root, witnessed: good.length > 0 });
    bySize.set(c.size, list);
  }
  for (const [size, list] of bySize) {
    if (new Set(list.map((x) => x.root)).size > 1) {
      problems.push({ kind: 'forked', index: null, ...(size > 0 ? { range: { from: 0, to: size - 1 } } : {}), message: `two different roots signed for size ${size}: the log was forked; the hub showed two histories of entries 0..${size - 1}` });
    }
  }
  const sizes = [...bySize.keys()].sort((a, b) => a - b);

  // 2. entries: in order, intact, each where it says it is; rebuild the tree
  const tree = new MerkleTree();
  let broken = false;
  const bad = (p: Problem) => {
    problems.push(p);
    broken = true;
  };
  let next = 0;
  let verifiedSize = 0;
  let unvouched: Unvouched | null = null;
  let si = 0;
  const checkUpTo = () => {
    while (si < sizes.length && sizes[si]! <= tree.size) {
      const size = sizes[si++]!;
      const root = size === 0 ? null : tree.root(size).toString('hex');
      const expected = bySize.get(size)!;
      if (root !== null && expected.every((e) => e.root !== root)) {
        const prev = verifiedSize;
        const witnessedCp = expected.some((e) => e.witnessed);
        bad({
          kind: 'mismatch',
          index: null,
          range: { from: prev, to: size - 1 },
          message:
            `entries ${prev}..${size - 1} do not reproduce the checkpoint at size ${size}${witnessedCp ? ' that agents witnessed' : ''}` +
            (broken ? '' : `: at least one of them was changed along with its leaf hash, so no single entry can be named; the checkpoint no longer vouches for entries ${prev}..${size - 1}`),
        });
        unvouched ??= { from: prev, to: size - 1, checkpointSize: size, witnessed: witnessedCp };
      } else if (!broken) verifiedSize = size;
    }
  };
  for (const e of entries) {
    if (e.index !== next) {
      bad({ kind: 'missing', index: next, message: `entry ${next}${e.index > next + 1 ? `..${e.index - 1}` : ''} is missing` });
      // keep positions honest: the tree gets placeholders so later roots still mismatch
      while (next < e.index) {
        tree.append(Buffer.alloc(32));
        next++;
      }
    }
    const recomputed = leafHash(e.data);
    if (!recomputed.equals(e.leafHash)) bad({ kind: 'edited', index: e.index, message: `entry ${e.index} was edited: its bytes no longer hash to its leaf` });
    try {
      const entry = parseEntry(e.data);
      if (entry.log !== log || entry.index !== e.index) bad({ kind: 'moved', index: e.index, message: `entry ${e.index} says it is entry ${entry.index} of log ${entry.log}: entries were moved or reordered` });
    } catch (err) {
      bad({ kind: 'edited', index: e.index, message: `entry ${e.index} is not a valid entry: ${(err as Error).message}` });
    }
    tree.append(recomputed);
    next++;
    checkUpTo();
  }
  const largest = sizes[sizes.length - 1] ?? 0;
  if (largest > tree.size) {
    bad({ kind: 'truncated', index: tree.size, message: `the log has ${tree.size} entries but a checkpoint of size ${largest} was signed: entries ${tree.size}..${largest - 1} were removed` });
  }
  // Only an entry a specific check caught is named; a range stays a range.
  const specific = problems.filter((p) => p.index !== null).map((p) => p.index!);
  const firstBad = specific.length ? Math.min(...specific) : null;
  return { log, ok: problems.length === 0, entries: tree.size, checkpoints: checkpoints.length, witnessed, verifiedSize, firstBad, unvouched, problems };
}
