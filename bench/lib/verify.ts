// Ed25519 verification, tweetnacl against Node's built-in (OpenSSL), on the
// very statements the hub verifies at each handshake. "First use" is what a
// freshly restarted hub pays per agent (verifyNode also builds and caches a
// KeyObject); "cached" is a reconnect of an agent the process has seen.
import { randomBytes } from 'node:crypto';
import { authStatement } from '../../shared/auth.js';
import { sign, signNacl, signNode, verifyNacl, verifyNode, type KeyPair } from '../../shared/keys.js';
import { rawKeyPair } from './seed.js';

export interface VerifyResult {
  naclVerify: number;
  nodeVerifyFirstUse: number;
  nodeVerifyCached: number;
  naclSign: number;
  /** signNode: a new KeyObject per signature. */
  nodeSign: number;
  /** shared/keys `sign`, what agent and hub use. */
  keysSign: number;
}

interface Sample {
  msg: Uint8Array;
  sig: Uint8Array;
  kp: KeyPair;
}

function samples(count: number): Sample[] {
  const out: Sample[] = [];
  for (let i = 0; i < count; i++) {
    const { publicKey, seed } = rawKeyPair();
    const kp: KeyPair = { publicKey: new Uint8Array(publicKey), secretKey: new Uint8Array(Buffer.concat([seed, publicKey])) };
    const msg = authStatement({ host: '127.0.0.1:7443', agentId: `agt_${randomBytes(10).toString('hex')}`, nonce: randomBytes(40).toString('base64url'), time: Date.now() });
    out.push({ msg, sig: signNode(msg, kp), kp });
  }
  return out;
}

/** Runs `op` over the samples (cycling) until `minMs` has passed; ops per second. */
function rate(list: Sample[], minMs: number, op: (s: Sample) => boolean, maxOps = Infinity): number {
  let n = 0;
  const t0 = performance.now();
  let elapsed = 0;
  while ((elapsed < minMs || n === 0) && n < maxOps) {
    for (let j = 0; j < 16 && n < maxOps; j++, n++) {
      if (!op(list[n % list.length]!)) throw new Error('bench signature did not verify');
    }
    elapsed = performance.now() - t0;
  }
  return (n / elapsed) * 1000;
}

function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)]!;
}

/**
 * Interleaves the contenders over several rounds and keeps each one's median,
 * so a burst of other work on the machine does not favour one of them.
 */
export function benchVerify(opts: { minMs: number; firstUseKeys: number; rounds?: number }): VerifyResult {
  const rounds = opts.rounds ?? 5;
  const slice = opts.minMs / rounds;
  const warm = samples(64);
  const fresh = samples(opts.firstUseKeys);
  const perRound = Math.floor(fresh.length / rounds);
  // Same bytes from every signer: Ed25519 is deterministic.
  const { msg, kp, sig } = warm[0]!;
  if (!Buffer.from(signNacl(msg, kp.secretKey)).equals(Buffer.from(sig)) || !Buffer.from(sign(msg, kp.secretKey)).equals(Buffer.from(sig))) {
    throw new Error('signers disagree');
  }
  rate(warm, 200, (s) => verifyNacl(s.msg, s.sig, s.kp.publicKey)); // JIT warm-up
  rate(warm, 100, (s) => verifyNode(s.msg, s.sig, s.kp.publicKey));
  const r: Record<keyof VerifyResult, number[]> = { naclVerify: [], nodeVerifyFirstUse: [], nodeVerifyCached: [], naclSign: [], nodeSign: [], keysSign: [] };
  for (let i = 0; i < rounds; i++) {
    r.naclVerify.push(rate(warm, slice, (s) => verifyNacl(s.msg, s.sig, s.kp.publicKey)));
    // Each fresh key is seen once: KeyObject creation is part of the cost.
    const keys = fresh.slice(i * perRound, (i + 1) * perRound);
    r.nodeVerifyFirstUse.push(rate(keys, 0, (s) => verifyNode(s.msg, s.sig, s.kp.publicKey), keys.length));
    r.nodeVerifyCached.push(rate(warm, slice, (s) => verifyNode(s.msg, s.sig, s.kp.publicKey)));
    r.naclSign.push(rate(warm, slice, (s) => signNacl(s.msg, s.kp.secretKey).length === 64));
    r.nodeSign.push(rate(warm, slice, (s) => signNode(s.msg, s.kp).length === 64));
    r.keysSign.push(rate(warm, slice, (s) => sign(s.msg, s.kp.secretKey).length === 64));
  }
  return {
    naclVerify: median(r.naclVerify),
    nodeVerifyFirstUse: median(r.nodeVerifyFirstUse),
    nodeVerifyCached: median(r.nodeVerifyCached),
    naclSign: median(r.naclSign),
    nodeSign: median(r.nodeSign),
    keysSign: median(r.keysSign),
  };
}
