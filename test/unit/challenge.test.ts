import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Challenges, NONCE_TTL_MS, NonceClaims, sharedChallengeSecret } from '../../hub/gateway/challenge.js';
import { FerryError } from '../../shared/errors.js';
import { generateKeyPair } from '../../shared/keys.js';

const refused = (p: Promise<void>, detail: RegExp) =>
  assert.rejects(p, (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_AGENT_AUTH_REPLAYED' && detail.test(e.message));

test('a nonce redeems once', async () => {
  const c = new Challenges();
  const { nonce } = c.issue(1_000_000);
  await c.redeem(nonce, 1_000_500);
  await refused(c.redeem(nonce, 1_000_600), /already used/);
});

test('expired, forged, truncated and foreign nonces are refused', async () => {
  const c = new Challenges();
  const { nonce } = c.issue(1_000_000);
  await refused(c.redeem(nonce, 1_000_000 + NONCE_TTL_MS + 1), /expired/);
  const raw = Buffer.from(c.issue(1_000_000).nonce, 'base64url');
  raw[3] = raw[3]! ^ 1;
  await refused(c.redeem(raw.toString('base64url'), 1_000_001), /not a nonce issued/);
  await refused(c.redeem(nonce.slice(0, 20), 1_000_001), /not a nonce/);
  await refused(c.redeem('', 1_000_001), /not a nonce/);
  // a restarted hub (new secret) does not honour the old process's nonces
  await refused(new Challenges().redeem(c.issue(1_000_000).nonce, 1_000_001), /not a nonce issued by this hub process/);
});

test('replicas sharing the hub key redeem each other\'s nonces, each once across all of them', async () => {
  const key = generateKeyPair();
  const used = new Set<string>();
  // The database's record of used nonces, as every replica claims them.
  const claim = async (n: string) => (used.has(n) ? false : (used.add(n), true));
  const a = new Challenges(sharedChallengeSecret(key.secretKey.subarray(0, 32)), claim);
  const b = new Challenges(sharedChallengeSecret(key.secretKey.subarray(0, 32)), claim);
  const { nonce } = a.issue(1_000_000);
  await b.redeem(nonce, 1_000_010);
  await refused(a.redeem(nonce, 1_000_020), /already used \(on another replica\)/);
  // another hub key: not ours
  const other = new Challenges(sharedChallengeSecret(generateKeyPair().secretKey.subarray(0, 32)), claim);
  await refused(other.redeem(a.issue(1_000_000).nonce, 1_000_001), /not a nonce issued/);
  // the shared secret is not the seed
  assert.notDeepEqual(sharedChallengeSecret(key.secretKey.subarray(0, 32)), Buffer.from(key.secretKey.subarray(0, 32)));
});

test('nonce claims of one turn share one write; the same nonce twice in it is claimed once, and a write that fails fails them all', async () => {
  const used = new Set<string>(['old']);
  const writes: string[][] = [];
  const claims = new NonceClaims(async (cs) => {
    writes.push(cs.map((c) => c.nonce));
    const got = new Set<string>();
    for (const c of cs) if (!used.has(c.nonce)) (used.add(c.nonce), got.add(c.nonce));
    return got;
  });
  const got = await Promise.all([claims.claim('a', 1), claims.claim('b', 1), claims.claim('a', 1), claims.claim('old', 1)]);
  assert.deepEqual(got, [true, true, false, false]);
  assert.deepEqual(writes, [['a', 'b', 'old']], 'one write, each nonce once');
  assert.equal(await claims.claim('b', 1), false, 'a replay in a later turn');
  const failing = new NonceClaims(async () => {
    throw new Error('database gone');
  });
  await assert.rejects(Promise.all([failing.claim('x', 1), failing.claim('y', 1)]), /database gone/);
});
