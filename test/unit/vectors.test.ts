// The shared vectors on the agent's path: each release goes through the full
// acceptance check (verifyBundle) inside a hub-signed directive. The hub's
// path runs the same file in test/integration/vectors-hub.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { payloadDigest } from '../../shared/dsse.js';
import { FerryError } from '../../shared/errors.js';
import { NO_POLICY } from '../../agent/policy.js';
import { EMPTY_STATE, verifyBundle } from '../../agent/verify.js';
import { seededKey, signed } from '../helpers/signing.js';
import { loadVectors } from '../vectors/load.js';

const NOW = 1_800_000_000_000;

for (const v of loadVectors().vectors) {
  test(`agent: ${v.name} -> ${v.expect}`, () => {
    let ref = { stack: 'vecstack', version: '0.0.0' };
    try {
      const doc = JSON.parse(Buffer.from(v.release.payload, 'base64').toString()) as { stack: string; version: string };
      ref = { stack: doc.stack, version: doc.version };
    } catch {
      // unparseable payloads are refused before the reference matters
    }
    const directive = signed(
      'directive',
      { _type: 'directive', tenant: 'vec-bank', agent: 'agt_vec', seq: 1, issuedAt: NOW, expiresAt: NOW + 60_000, rootVersion: 1, releases: [{ ...ref, digest: payloadDigest(v.release) }] },
      [seededKey('vec-hub')],
    );
    const run = () => verifyBundle(EMPTY_STATE, { directive, releases: [v.release], roots: [v.root] }, { agentId: 'agt_vec', tenant: 'vec-bank', now: NOW, policy: NO_POLICY });
    if (v.expect === 'accept') {
      assert.equal(run().releases.length, 1);
    } else {
      assert.throws(run, (e: unknown) => e instanceof FerryError && e.code === v.expect);
    }
  });
}
