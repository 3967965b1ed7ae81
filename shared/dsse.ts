// Signed envelopes, after DSSE (in-toto/secure-systems-lab): a signature is
// over PAE(payloadType, payload bytes), so the type is authenticated too and
// the payload is never re-serialised before it is verified. Thresholds count
// distinct public keys — never signature strings or key ids — because
// Ed25519 signatures can be malleable and one key can hide under two ids.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { FerryError } from './errors.js';
import { decodeSignature, keyId, sign, verify, type KeyPair } from './keys.js';

export const PAYLOAD_TYPES = {
  root: 'application/vnd.ferry.root+json',
  release: 'application/vnd.ferry.release+json',
  directive: 'application/vnd.ferry.directive+json',
  checkpoint: 'application/vnd.ferry.checkpoint+json',
  operation: 'application/vnd.ferry.operation+json',
  agentBundle: 'application/vnd.ferry.agent-bundle+json',
} as const;
export type PayloadType = (typeof PAYLOAD_TYPES)[keyof typeof PAYLOAD_TYPES];

export const MAX_ENVELOPE_BYTES = 1024 * 1024;
export const MAX_SIGNATURES = 32;

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export const Signature = z.strictObject({
  keyid: z.string().regex(/^[0-9a-f]{64}$/, 'keyid: 64 hex characters'),
  sig: z.string().max(128),
});
export type Signature = z.infer<typeof Signature>;

export const Envelope = z.strictObject({
  payloadType: z.string().max(128),
  payload: z.string().max(Math.ceil((MAX_ENVELOPE_BYTES * 4) / 3) + 4).regex(B64, 'payload: canonical base64'),
  signatures: z.array(Signature).max(MAX_SIGNATURES),
});
export type Envelope = z.infer<typeof Envelope>;

/** DSSE pre-authentication encoding. */
export function pae(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

export function payloadBytes(env: Envelope): Buffer {
  return Buffer.from(env.payload, 'base64');
}

/** Content address of an envelope's payload: what directives and logs refer to. */
export function payloadDigest(env: Envelope): string {
  return 'sha256:' + createHash('sha256').update(payloadBytes(env)).digest('hex');
}

export function createEnvelope(payloadType: PayloadType, payload: Uint8Array): Envelope {
  return { payloadType, payload: Buffer.from(payload).toString('base64'), signatures: [] };
}

export function signatureFor(env: Envelope, kp: KeyPair): Signature {
  const sig = sign(pae(env.payloadType, payloadBytes(env)), kp.secretKey);
  return { keyid: keyId(kp.publicKey), sig: Buffer.from(sig).toString('base64') };
}

/** Adds (or replaces) one key's signature. */
export function addSignature(env: Envelope, s: Signature): Envelope {
  return { ...env, signatures: [...env.signatures.filter((x) => x.keyid !== s.keyid), s] };
}

/** Checks the envelope's shape from untrusted input. Throws FERRY_E_ENVELOPE_INVALID. */
export function decodeEnvelope(value: unknown): Envelope {
  if (typeof value === 'string') {
    if (Buffer.byteLength(value) > MAX_ENVELOPE_BYTES) throw new FerryError('FERRY_E_ENVELOPE_INVALID', 'envelope over 1 MiB');
    try {
      value = JSON.parse(value);
    } catch {
      throw new FerryError('FERRY_E_ENVELOPE_INVALID', 'not JSON');
    }
  }
  const r = Envelope.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FerryError('FERRY_E_ENVELOPE_INVALID', `${i?.path.join('.') || '(root)'}: ${i?.message}`);
  }
  return r.data;
}

export interface TrustedKeys {
  /** keyid -> raw public key. Key ids must be keyId(public key). */
  keys: ReadonlyMap<string, Uint8Array>;
  threshold: number;
}

export interface Verified {
  payload: Buffer;
  /** Distinct key ids whose signatures verified. */
  signers: string[];
}

/**
 * Verifies an envelope against trusted keys and a threshold. Order: payload
 * type, then signatures. Signatures by unknown keys or that do not verify are
 * ignored (a garbage extra signature does not spoil a met threshold).
 */
export function verifyEnvelope(env: Envelope, expectedType: PayloadType, trusted: TrustedKeys, role = 'signers'): Verified {
  if (env.payloadType !== expectedType) {
    throw new FerryError('FERRY_E_PAYLOAD_TYPE', `expected ${expectedType}, got ${JSON.stringify(env.payloadType.slice(0, 128))}`);
  }
  if (!Number.isSafeInteger(trusted.threshold) || trusted.threshold < 1) {
    throw new FerryError('FERRY_E_SIG_THRESHOLD', `${role}: threshold ${trusted.threshold} is not a positive integer`);
  }
  const signers = validSigners(env, trusted.keys);
  if (signers.length < trusted.threshold) {
    throw new FerryError('FERRY_E_SIG_THRESHOLD', `${role}: ${signers.length} of ${trusted.threshold} required signatures verify`);
  }
  return { payload: payloadBytes(env), signers };
}

/**
 * Key ids of the distinct trusted keys whose signatures verify over the
 * envelope. Unknown keys, bad signatures, a key id that is not its key's hash
 * and a second signature by a key already counted are all passed over.
 */
export function validSigners(env: Envelope, keys: ReadonlyMap<string, Uint8Array>): string[] {
  const message = pae(env.payloadType, payloadBytes(env));
  const counted = new Set<string>(); // distinct public keys (hex), whatever key id they came under
  const signers: string[] = [];
  for (const s of env.signatures) {
    const pub = keys.get(s.keyid);
    if (!pub || keyId(pub) !== s.keyid) continue;
    const hex = Buffer.from(pub).toString('hex');
    if (counted.has(hex)) continue;
    const sig = decodeSignature(s.sig);
    if (!sig || !verify(message, sig, pub)) continue;
    counted.add(hex);
    signers.push(s.keyid);
  }
  return signers;
}
