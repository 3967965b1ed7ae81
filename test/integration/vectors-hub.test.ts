// The shared vectors on the hub's path, through its real API: the release
// payload is uploaded, each signature is offered one by one (the hub keeps
// only those that verify), and the hub's verdict — whether the tenant's
// release threshold is met — must match the agent's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PAYLOAD_TYPES, pae } from '../../shared/dsse.js';
import { encodePublicKey, keyId, sign } from '../../shared/keys.js';
import { seededKey } from '../helpers/signing.js';
import { startHub } from '../helpers/hub.js';
import { loadVectors } from '../vectors/load.js';

test('hub: every shared vector gets the verdict the agent gives', async (t) => {
  const th = await startHub(t);
  const file = loadVectors();
  const root = seededKey('vec-root');
  const releaseKeys = ['vec-alice', 'vec-bob', 'vec-carol'].map((l) => ({ public: encodePublicKey(seededKey(l).publicKey), name: l }));
  assert.equal((await th.api('POST', '/v1/tenants', { name: 'vec-bank' })).status, 201);
  const init = await th.api('POST', '/v1/tenants/vec-bank/trust/init', { root: [{ public: encodePublicKey(root.publicKey) }], rootThreshold: 1, release: releaseKeys, releaseThreshold: 2 });
  assert.equal(init.status, 201, JSON.stringify(init.body));
  const payload = Buffer.from(init.body.envelope.payload, 'base64');
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.root, payload), root.secretKey)).toString('base64');
  const activated = await th.api('POST', '/v1/tenants/vec-bank/trust/signatures', { version: 1, keyid: keyId(root.publicKey), sig });
  assert.equal(activated.body.active, true);

  for (const v of file.vectors) {
    const created = await th.api('POST', '/v1/releases', { payload: v.release.payload });
    if (created.status !== 201) {
      assert.notEqual(v.expect, 'accept', `${v.name}: hub refused the payload (${created.body.error.code}) but the agent accepts it`);
      assert.equal(created.body.error.code, v.expect, v.name);
      continue;
    }
    const { stack, version } = created.body;
    for (const s of v.release.signatures) {
      const publicKey = file.keys[s.keyid];
      if (publicKey) await th.api('POST', `/v1/releases/${stack}/${version}/signatures`, { publicKey, sig: s.sig });
    }
    const shown = await th.api('GET', `/v1/releases/${stack}/${version}`);
    const met = shown.body.tenants.find((x: { tenant: string }) => x.tenant === 'vec-bank').met as boolean;
    assert.equal(met, v.expect === 'accept', `${v.name}: hub says threshold ${met ? 'met' : 'not met'}, vector expects ${v.expect}`);
  }
});
