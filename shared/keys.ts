// Ed25519 keys: generation, encoding, signing, verification.
//
// Keys travel as base64 of the raw 32-byte public key; private keys rest on
// disk as PKCS#8 PEM (so `openssl pkey` can read them). Signing uses
// tweetnacl; verification has two implementations, tweetnacl and Node's
// built-in (OpenSSL). bench/connections measures both; the hub uses the faster
// one on its hot path (the handshake). Note the difference: OpenSSL rejects a
// non-canonical S (>= L), tweetnacl accepts it. Code that counts signatures
// toward a threshold must count distinct keys, never signature strings.
import { createHash, createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';
import { FerryError } from './errors.js';

const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export interface KeyPair {
  /** Raw 32-byte public key. */
  publicKey: Uint8Array;
  /** tweetnacl's 64-byte secret key (seed || public key). */
  secretKey: Uint8Array;
}

export function generateKeyPair(): KeyPair {
  const kp = nacl.sign.keyPair();
  return { publicKey: kp.publicKey, secretKey: kp.secretKey };
}

export function encodePublicKey(pub: Uint8Array): string {
  return Buffer.from(pub).toString('base64');
}

/** Decodes a base64 public key, refusing anything but exactly 32 bytes. */
export function decodePublicKey(b64: string): Uint8Array {
  if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(b64)) {
    throw new FerryError('FERRY_E_VALIDATION', 'public key must be base64 of 32 bytes');
  }
  return new Uint8Array(Buffer.from(b64, 'base64'));
}

/** Decodes a base64 signature, refusing anything but exactly 64 bytes. */
export function decodeSignature(b64: string): Uint8Array | null {
  if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/]{86}==$/.test(b64)) return null;
  return new Uint8Array(Buffer.from(b64, 'base64'));
}

/** Stable key id: hex SHA-256 of the raw public key. */
export function keyId(pub: Uint8Array): string {
  return createHash('sha256').update(pub).digest('hex');
}

/** Human fingerprint, in the style of ssh: `SHA256:<base64, unpadded>`. */
export function fingerprint(data: Uint8Array | string): string {
  return 'SHA256:' + createHash('sha256').update(data).digest('base64').replace(/=+$/, '');
}

export function privateKeyToPem(kp: KeyPair): string {
  const der = Buffer.concat([PKCS8_PREFIX, Buffer.from(kp.secretKey.subarray(0, 32))]);
  const b64 = der.toString('base64');
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

export function privateKeyFromPem(pem: string): KeyPair {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new FerryError('FERRY_E_STATE_CORRUPT', 'private key is not a PEM Ed25519 key', { cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new FerryError('FERRY_E_STATE_CORRUPT', `private key is ${key.asymmetricKeyType}, expected ed25519`);
  }
  const der = key.export({ format: 'der', type: 'pkcs8' });
  const seed = new Uint8Array(der.subarray(der.length - 32));
  const kp = nacl.sign.keyPair.fromSeed(seed);
  return { publicKey: kp.publicKey, secretKey: kp.secretKey };
}

const signingKeys = new WeakMap<Uint8Array, KeyObject>();

/**
 * Ed25519 signature (deterministic: the same bytes tweetnacl would give).
 * Node's built-in signer with the key object cached per secret key: the hub
 * signs a directive per agent, and bench/verify measured tweetnacl's signing
 * 7x slower (40x once the key object is reused).
 */
export function sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  let ko = signingKeys.get(secretKey);
  if (!ko) {
    ko = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secretKey.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
    signingKeys.set(secretKey, ko);
  }
  return new Uint8Array(nodeSign(null, message, ko));
}

/** tweetnacl's signer, kept for the benchmark's comparison. */
export function signNacl(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return nacl.sign.detached(message, secretKey);
}

/**
 * The encodings of Ed25519's points of small order (libsodium's blocklist,
 * compared without the sign bit): a "public key" among them has no secret
 * behind it, and with a crafted signature (all zeros, say) it verifies for a
 * large share of messages. Neither OpenSSL nor tweetnacl refuses them, so we do.
 */
const SMALL_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((h) => Buffer.from(h, 'hex'));

/** Whether `pub` is a point of small order (never a real key). */
export function isSmallOrder(pub: Uint8Array): boolean {
  if (pub.length !== 32) return false;
  return SMALL_ORDER.some((b) => {
    let d = (pub[31]! & 0x7f) ^ b[31]!;
    for (let i = 0; i < 31; i++) d |= pub[i]! ^ b[i]!;
    return d === 0;
  });
}

export function verifyNacl(message: Uint8Array, signature: Uint8Array, pub: Uint8Array): boolean {
  if (signature.length !== 64 || pub.length !== 32 || isSmallOrder(pub)) return false;
  return nacl.sign.detached.verify(message, signature, pub);
}

const keyObjects = new Map<string, KeyObject>();

/** Node/OpenSSL verification; KeyObjects are cached per key (bounded). */
export function verifyNode(message: Uint8Array, signature: Uint8Array, pub: Uint8Array): boolean {
  if (signature.length !== 64 || pub.length !== 32 || isSmallOrder(pub)) return false;
  const id = Buffer.from(pub).toString('base64');
  let ko = keyObjects.get(id);
  if (!ko) {
    ko = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
    if (keyObjects.size >= 50_000) keyObjects.clear();
    keyObjects.set(id, ko);
  }
  try {
    return nodeVerify(null, message, ko, signature);
  } catch {
    return false;
  }
}

/** Node/OpenSSL signing, for peers (benchmarks) that sign in bulk. */
export function signNode(message: Uint8Array, kp: KeyPair): Uint8Array {
  const ko = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, kp.secretKey.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
  return new Uint8Array(nodeSign(null, message, ko));
}

/** The verifier used on hot paths; bench/connections shows why (see bench/README.md). */
export const verify = verifyNode;
