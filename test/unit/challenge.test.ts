import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Challenges, NONCE_TTL_MS } from '../../hub/challenge.js';
import { FerryError } from '../../shared/errors.js';

const refused = (fn: () => void, detail: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_AGENT_AUTH_REPLAYED' && detail.test(e.message));

test('a nonce redeems once', () => {
  const c = new Challenges();
  const { nonce } = c.issue(1_000_000);
  c.redeem(nonce, 1_000_500);
  refused(() => c.redeem(nonce, 1_000_600), /already used/);
});

test('expired, forged, truncated and foreign nonces are refused', () => {
  const c = new Challenges();
  const { nonce } = c.issue(1_000_000);
  refused(() => c.redeem(nonce, 1_000_000 + NONCE_TTL_MS + 1), /expired/);
  const raw = Buffer.from(c.issue(1_000_000).nonce, 'base64url');
  raw[3] = raw[3]! ^ 1;
  refused(() => c.redeem(raw.toString('base64url'), 1_000_001), /not a nonce issued/);
  refused(() => c.redeem(nonce.slice(0, 20), 1_000_001), /not a nonce/);
  refused(() => c.redeem('', 1_000_001), /not a nonce/);
  // a restarted hub (new secret) does not honour the old process's nonces
  refused(() => new Challenges().redeem(c.issue(1_000_000).nonce, 1_000_001), /not a nonce issued by this hub process/);
});
