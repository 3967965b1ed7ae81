import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { decodePublicKey, decodeSignature, encodePublicKey, generateKeyPair, isSmallOrder, privateKeyFromPem, privateKeyToPem, sign, verifyNacl, verifyNode } from '../../shared/keys.js';

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

test('a public key of small order never verifies, whatever the signature (OpenSSL and tweetnacl alone accept some)', () => {
  const orders = ['00'.repeat(32), '01' + '00'.repeat(31), '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', 'ec' + 'ff'.repeat(30) + '7f'];
  let accepted = 0;
  for (const hex of orders) {
    const pub = new Uint8Array(Buffer.from(hex, 'hex'));
    assert.ok(isSmallOrder(pub), hex);
    const signed = new Uint8Array(pub);
    signed[31]! |= 0x80; // the same point with the sign bit set
    assert.ok(isSmallOrder(signed), `${hex} with the sign bit`);
    for (let i = 0; i < 64; i++) {
      const msg = Buffer.from(`message ${i}`);
      const zero = new Uint8Array(64);
      const forged = new Uint8Array(64);
      forged.set(pub, 0); // R = the small-order point itself, S = 0
      for (const sig of [zero, forged]) {
        assert.equal(verifyNode(msg, sig, pub), false);
        assert.equal(verifyNacl(msg, sig, pub), false);
        try {
          if (nodeVerify(null, msg, createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]), format: 'der', type: 'spki' }), sig)) accepted++;
        } catch {
          // OpenSSL refused the encoding itself
        }
      }
    }
  }
  assert.ok(accepted > 0, 'OpenSSL alone accepts some of these forgeries: the check is what refuses them');
  assert.equal(isSmallOrder(generateKeyPair().publicKey), false);
});
