// What an agent accepts as an operation. Pure and synchronous, like
// agent/verify.ts for directives: the envelope, the trust root the agent
// holds, what it has already seen, and the clock go in; the operation and
// the new replay state come out, or a FerryError naming the first check that
// failed. Checks in order: envelope shape, payload type and the hub role's
// signature against the pinned root, strict parse, tenant and agent binding,
// the id the message claimed, date (not ahead of the local clock beyond the
// skew), lifetime, expiry on trusted time, and seq (not seen before).
import { FerryError } from '../../shared/errors.js';
import { PAYLOAD_TYPES, decodeEnvelope, payloadDigest, verifyEnvelope } from '../../shared/dsse.js';
import { MAX_OPERATION_TTL_MS, parseOperation, type Operation } from '../../shared/operation.js';
import { trustedKeys, type Root } from '../../shared/trust.js';
import { refuseIfAhead, span, type ClockFacts } from '../verify.js';

/**
 * What the agent remembers of operations, to refuse a replay: every seq
 * accepted whose operation has not yet expired, and a floor at or below which
 * every seq is refused (raised as remembered ones expire, so the list stays
 * as short as the operations issued in one lifetime).
 */
export interface SeenOperations {
  floor: number;
  seen: { seq: number; expiresAt: number }[];
  /** Newest issuedAt accepted: trusted time for operations never goes below it. */
  maxIssuedAt: number;
}

export const NO_OPERATIONS_SEEN: SeenOperations = { floor: 0, seen: [], maxIssuedAt: 0 };

export interface OperationFacts extends ClockFacts {
  agentId: string;
  tenant: string;
  root: Root | null;
  /** The newest directive issuedAt accepted (agent/verify.ts): trusted time is never below it either. */
  directivesIssuedAt: number;
}

export interface AcceptedOperation {
  operation: Operation;
  digest: string;
  seen: SeenOperations;
}

export function verifyOperation(seen: SeenOperations, raw: unknown, claimedId: string, f: OperationFacts): AcceptedOperation {
  const env = decodeEnvelope(raw);
  if (!f.root) throw new FerryError('FERRY_E_ROOT_MISSING', 'this agent holds no trust root yet');
  const v = verifyEnvelope(env, PAYLOAD_TYPES.operation, trustedKeys(f.root, 'hub'), 'hub');
  const op = parseOperation(v.payload);
  if (op.tenant !== f.tenant || op.agent !== f.agentId) throw new FerryError('FERRY_E_OPERATION_BINDING', `operation for ${op.agent} of ${op.tenant}; this is ${f.agentId} of ${f.tenant}`);
  if (op.id !== claimedId) throw new FerryError('FERRY_E_OPERATION_BINDING', `the message says ${claimedId}, the signed operation is ${op.id}`);
  refuseIfAhead(`operation ${op.id}`, op.issuedAt, f);
  if (op.expiresAt - op.issuedAt > MAX_OPERATION_TTL_MS) throw new FerryError('FERRY_E_OPERATION_EXPIRED', `${op.id} claims to live ${span(op.expiresAt - op.issuedAt)}; operations live at most ${span(MAX_OPERATION_TTL_MS)}`);
  const trustedNow = Math.max(f.now, seen.maxIssuedAt, f.directivesIssuedAt);
  if (op.expiresAt <= trustedNow) {
    const why = trustedNow > f.now ? ` (trusted time is ${span(trustedNow - f.now)} ahead of this host's clock: was the clock set back?)` : '';
    throw new FerryError('FERRY_E_OPERATION_EXPIRED', `${op.id} expired ${new Date(op.expiresAt).toISOString()}, trusted time ${new Date(trustedNow).toISOString()}${why}`);
  }
  if (op.seq <= seen.floor || seen.seen.some((s) => s.seq === op.seq)) throw new FerryError('FERRY_E_OPERATION_REPLAY', `${op.id} (seq ${op.seq}) was already received`);
  return { operation: op, digest: payloadDigest(env), seen: remember(seen, op, trustedNow) };
}

/** Adds the operation; forgets those expired by `now`, raising the floor past them. */
export function remember(seen: SeenOperations, op: Pick<Operation, 'seq' | 'expiresAt' | 'issuedAt'>, now: number): SeenOperations {
  let floor = seen.floor;
  const kept: SeenOperations['seen'] = [];
  for (const s of seen.seen) {
    if (s.expiresAt <= now) floor = Math.max(floor, s.seq);
    else kept.push(s);
  }
  // A seq below the floor is refused anyway: only newer ones need remembering.
  return { floor, seen: [...kept.filter((s) => s.seq > floor), { seq: op.seq, expiresAt: op.expiresAt }], maxIssuedAt: Math.max(seen.maxIssuedAt, op.issuedAt) };
}
