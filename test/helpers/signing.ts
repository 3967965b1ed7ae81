// Builders for signed documents in tests: keys from fixed seeds (so vectors
// are reproducible), roots, releases and directives, signed by whoever the
// test says.
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import { PAYLOAD_TYPES, addSignature, createEnvelope, signatureFor, type Envelope } from '../../shared/dsse.js';
import { encodePublicKey, keyId, type KeyPair } from '../../shared/keys.js';
import { canonicalJson, type Release, type Service } from '../../shared/release.js';
import type { Root } from '../../shared/trust.js';

export function seededKey(label: string): KeyPair {
  const seed = createHash('sha256').update(`ferry-test-key:${label}`).digest();
  const kp = nacl.sign.keyPair.fromSeed(new Uint8Array(seed));
  return { publicKey: kp.publicKey, secretKey: kp.secretKey };
}

export const id = (kp: KeyPair) => keyId(kp.publicKey);

export function rootDoc(opts: { tenant?: string; version?: number; root: KeyPair[]; rootThreshold?: number; release: KeyPair[]; releaseThreshold?: number; hub: KeyPair[] }): Root {
  const all = [...opts.root, ...opts.release, ...opts.hub];
  const keys: Root['keys'] = {};
  for (const k of all) keys[id(k)] = { keytype: 'ed25519', public: encodePublicKey(k.publicKey) };
  return {
    _type: 'root',
    tenant: opts.tenant ?? 'bank-a',
    version: opts.version ?? 1,
    createdAt: 1_700_000_000_000,
    keys,
    roles: {
      root: { keyids: opts.root.map(id), threshold: opts.rootThreshold ?? 1 },
      release: { keyids: opts.release.map(id), threshold: opts.releaseThreshold ?? 1 },
      hub: { keyids: opts.hub.map(id), threshold: 1 },
    },
  };
}

export function signed(type: keyof typeof PAYLOAD_TYPES, doc: unknown, signers: KeyPair[]): Envelope {
  let env = createEnvelope(PAYLOAD_TYPES[type], canonicalJson(doc));
  for (const k of signers) env = addSignature(env, signatureFor(env, k));
  return env;
}

export function service(image: string, extra: Partial<Service> = {}): Service {
  return {
    image,
    environment: {},
    ports: [],
    volumes: [],
    networks: [],
    dependsOn: {},
    restart: 'unless-stopped',
    labels: {},
    stopGracePeriodMs: 10_000,
    replicas: 1,
    updateOrder: 'stop-first',
    ...extra,
  };
}

export const IMAGE = '127.0.0.1:5000/ferry/web@sha256:' + 'a'.repeat(64);

export function releaseDoc(stack = 'payments', version = '1.0.0', extra: Partial<Release> = {}, services?: Record<string, Service>): Release {
  return { _type: 'release', stack, version, createdAt: 1_700_000_000_000, services: services ?? { web: service(IMAGE) }, networks: {}, volumes: {}, ...extra };
}
