import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePublicKey, decodeSignature, encodePublicKey, generateKeyPair, privateKeyFromPem, privateKeyToPem, sign, verifyNacl, verifyNode } from '../../shared/keys.js';

const L = (1n << 252n) + 27742317777372353535851937790883648493n;

test('PEM round trip keeps the key pair; OpenSSL can read it', () => {
  const kp = generateKeyPair();
  const back = privateKeyFromPem(privateKeyToPem(kp));
  assert.deepEqual(back.publicKey, kp.publicKey);
  assert.deepEqual(back.secretKey, kp.secretKey);
});

test('both verifiers agree on good and bad signatures', () => {
  const kp = generateKeyPair();
  const msg = Buffer.from('ferry');
  const sig = sign(msg, kp.secretKey);
  assert.ok(verifyNacl(msg, sig, kp.publicKey));
  assert.ok(verifyNode(msg, sig, kp.publicKey));
  const flipped = Buffer.from(msg);
  flipped[0]! ^= 1;
  assert.ok(!verifyNacl(flipped, sig, kp.publicKey));
  assert.ok(!verifyNode(flipped, sig, kp.publicKey));
  const other = generateKeyPair();
  assert.ok(!verifyNode(msg, sig, other.publicKey));
});

test('wrong-length keys and signatures are refused without a crash', () => {
  const kp = generateKeyPair();
  const msg = Buffer.from('x');
  const sig = sign(msg, kp.secretKey);
  assert.ok(!verifyNode(msg, sig.subarray(0, 63), kp.publicKey));
  assert.ok(!verifyNacl(msg, sig.subarray(0, 63), kp.publicKey));
  assert.ok(!verifyNode(msg, sig, kp.publicKey.subarray(0, 31)));
  assert.ok(!verifyNacl(msg, sig, kp.publicKey.subarray(0, 31)));
  assert.equal(decodeSignature(Buffer.from(sig.subarray(0, 63)).toString('base64')), null);
  assert.throws(() => decodePublicKey(Buffer.alloc(31).toString('base64')));
  assert.equal(decodePublicKey(encodePublicKey(kp.publicKey)).length, 32);
});

test('a malleated (R, S+L) signature passes tweetnacl but not Node: thresholds must count keys', () => {
  const kp = generateKeyPair();
  const msg = Buffer.from('release');
  const sig = Buffer.from(sign(msg, kp.secretKey));
  const s = BigInt('0x' + Buffer.from(sig.subarray(32)).reverse().toString('hex')) + L;
  const sBytes = Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse();
  const mall = Buffer.concat([sig.subarray(0, 32), sBytes]);
  assert.notDeepEqual(mall, sig);
  assert.ok(verifyNacl(msg, mall, kp.publicKey), 'tweetnacl accepts the malleated copy');
  assert.ok(!verifyNode(msg, mall, kp.publicKey), 'OpenSSL rejects non-canonical S');
});
