// Generates the shared test vectors in test/vectors/*.json (run after a
// build: `node dist/test/vectors/generate.js`). Keys come from fixed seeds
// and Ed25519 is deterministic, so the output is reproducible; the files are
// committed and read by the agent-side and the hub-side tests alike.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PAYLOAD_TYPES, addSignature, createEnvelope, signatureFor, type Envelope } from '../../shared/dsse.js';
import { canonicalJson } from '../../shared/release.js';
import { IMAGE, releaseDoc, rootDoc, seededKey, service, signed } from '../helpers/signing.js';

const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const root = seededKey('vec-root');
const [a, b, c] = ['vec-alice', 'vec-bob', 'vec-carol'].map(seededKey) as [ReturnType<typeof seededKey>, ReturnType<typeof seededKey>, ReturnType<typeof seededKey>];
const hub = seededKey('vec-hub');
const outsider = seededKey('vec-outsider');

export interface ReleaseVector {
  name: string;
  /** The tenant's root v1 (root role 1-of-1, release role 2-of-3). */
  root: Envelope;
  release: Envelope;
  /** "accept", or the error code the agent gives. */
  expect: string;
}

const root1 = signed('root', rootDoc({ tenant: 'vec-bank', root: [root], release: [a, b, c], releaseThreshold: 2, hub: [hub] }), [root]);
const good = (version = '1.0.0', signers = [a, b]) => signed('release', releaseDoc('vecstack', version), signers);

function withPayload(text: string, signers = [a, b]): Envelope {
  let env = createEnvelope(PAYLOAD_TYPES.release, Buffer.from(text));
  for (const k of signers) env = addSignature(env, signatureFor(env, k));
  return env;
}

function malleate(sigB64: string): string {
  const raw = Buffer.from(sigB64, 'base64');
  const s = BigInt('0x' + Buffer.from(raw.subarray(32)).reverse().toString('hex')) + L;
  return Buffer.concat([raw.subarray(0, 32), Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse()]).toString('base64');
}

const flipped = (() => {
  const env = good('2.0.1');
  const bytes = Buffer.from(env.payload, 'base64');
  bytes[bytes.indexOf('"2.0.1"') + 5]! ^= 0x01; // now "2.0.0": still a valid release, no longer the signed one
  return { ...env, payload: bytes.toString('base64') };
})();
const one = good('1.0.2', [a]);
const oneAt = (version: string) => good(version, [a]);
const twice = oneAt('1.0.9');
const smuggled = oneAt('1.0.10');
const mall = oneAt('1.0.11');
const garbage = good('1.0.3');
const retyped = (() => {
  let env = createEnvelope(PAYLOAD_TYPES.directive, canonicalJson(releaseDoc('vecstack', '1.0.4')));
  for (const k of [a, b]) env = addSignature(env, signatureFor(env, k));
  return { ...env, payloadType: PAYLOAD_TYPES.release };
})();
const dupKeys = canonicalJson(releaseDoc('vecstack', '1.0.5')).toString().replace('"stack":"vecstack"', '"stack":"vecstack","stack":"other"');
const floatAt = canonicalJson(releaseDoc('vecstack', '1.0.6')).toString().replace(/"createdAt":\d+/, '"createdAt":1.5');
const bigInt = canonicalJson(releaseDoc('vecstack', '1.0.7')).toString().replace(/"createdAt":\d+/, '"createdAt":9007199254740992');
const short = good('1.0.8', [a]);

const vectors: ReleaseVector[] = [
  { name: 'valid: 2 of 3 release managers', root: root1, release: good(), expect: 'accept' },
  { name: 'valid: all three', root: root1, release: good('1.1.0', [a, b, c]), expect: 'accept' },
  { name: 'one flipped payload byte', root: root1, release: flipped, expect: 'FERRY_E_SIG_THRESHOLD' },
  { name: 'only one signature', root: root1, release: one, expect: 'FERRY_E_SIG_THRESHOLD' },
  { name: 'a key not in the root', root: root1, release: good('1.2.0', [a, outsider]), expect: 'FERRY_E_SIG_THRESHOLD' },
  { name: 'the same signature twice', root: root1, release: { ...twice, signatures: [twice.signatures[0]!, twice.signatures[0]!] }, expect: 'FERRY_E_SIG_THRESHOLD' },
  {
    name: "one key's signature presented under another key's id",
    root: root1,
    release: { ...smuggled, signatures: [smuggled.signatures[0]!, { keyid: signatureFor(smuggled, b).keyid, sig: smuggled.signatures[0]!.sig }] },
    expect: 'FERRY_E_SIG_THRESHOLD',
  },
  { name: 'a malleated (R, S+L) copy as second approver', root: root1, release: { ...mall, signatures: [mall.signatures[0]!, { keyid: mall.signatures[0]!.keyid, sig: malleate(mall.signatures[0]!.sig) }] }, expect: 'FERRY_E_SIG_THRESHOLD' },
  { name: 'threshold met plus a garbage signature', root: root1, release: { ...garbage, signatures: [...garbage.signatures, { keyid: signatureFor(garbage, c).keyid, sig: Buffer.alloc(64, 9).toString('base64') }] }, expect: 'accept' },
  { name: 'a 63-byte signature as second approver', root: root1, release: { ...short, signatures: [...short.signatures, { keyid: signatureFor(short, b).keyid, sig: Buffer.from(signatureFor(short, b).sig, 'base64').subarray(0, 63).toString('base64') }] }, expect: 'FERRY_E_SIG_THRESHOLD' },
  { name: 'signed as another payload type', root: root1, release: retyped, expect: 'FERRY_E_SIG_THRESHOLD' },
  { name: 'duplicate JSON keys', root: root1, release: withPayload(dupKeys), expect: 'FERRY_E_PAYLOAD_INVALID' },
  { name: 'a float', root: root1, release: withPayload(floatAt), expect: 'FERRY_E_PAYLOAD_INVALID' },
  { name: '2^53', root: root1, release: withPayload(bigInt), expect: 'FERRY_E_PAYLOAD_INVALID' },
  { name: 'an image by tag', root: root1, release: signed('release', releaseDoc('vecstack', '1.3.0', {}, { web: service('127.0.0.1:5000/ferry/web:latest') }), [a, b]), expect: 'FERRY_E_POLICY_DIGEST' },
];
void IMAGE;

const out = fileURLToPath(new URL('../../../test/vectors/releases.json', import.meta.url));
const keys = Object.fromEntries([a, b, c, outsider].map((k) => [signatureFor(one, k).keyid, Buffer.from(k.publicKey).toString('base64')]));
writeFileSync(
  out,
  JSON.stringify({ about: 'Release envelopes and the verdict both the hub and the agent must reach. Generated by test/vectors/generate.ts.', seeds: 'sha256("ferry-test-key:" + label)', keys, vectors }, null, 1) + '\n',
);
console.log(`wrote ${vectors.length} vectors to ${out}`);
