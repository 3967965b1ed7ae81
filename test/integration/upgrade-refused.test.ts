// Bundles an agent refuses, through the real hub and agent: one signed below the tenant's threshold is never
// named to it (the rollout target fails with the threshold's code), and one whose bytes changed on the way
// (here: in the hub's database) is downloaded, found wrong and installs nothing. The agent's own checks of a
// statement (threshold, tenant, floor) are test/unit/verify-agent-bundle.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readLaunch } from '../../agent/upgrade/launch-state.js';
import { waitFor } from '../helpers/tmp.js';
import { BASE, RM, TENANT, bundle, publishBundle, rollOut, rolloutState, upgradeHost, upgradeHub } from '../helpers/upgrade.js';

test('refused bundles: a digest mismatch on the way installs nothing; the hub will not name a bundle below threshold', { timeout: 290_000 }, async (t) => {
  const th = await upgradeHub(t);
  const good = await publishBundle(th, bundle('0.2.0'), [TENANT], RM.slice(0, 2));
  await publishBundle(th, bundle('0.2.4'), [TENANT], RM.slice(0, 1)); // 1 of the 2 needed
  const h = await upgradeHost(t, th);

  const below = await rollOut(th, '0.2.4', `id=${h.id}`);
  const r = await rolloutState(th, below, 'paused');
  assert.equal(r.targets[0].code, 'FERRY_E_SIG_THRESHOLD');
  assert.equal((await th.api('POST', `/v1/rollouts/${below}/abort`)).status, 200);

  // Someone with the database swaps bytes of the archive: the agent downloads it, finds the digest wrong, installs nothing.
  await th.rawSql('UPDATE agent_bundle_chunks SET data = ? WHERE digest = ? AND idx = 0', [Buffer.alloc(1024 * 1024, 7), good.digest]);
  const ro = await rollOut(th, '0.2.0', `id=${h.id}`);
  const v = await waitFor('the agent to refuse the download', async () => {
    const a = (await th.api('GET', `/v1/agents/${h.id}`)).body.versions;
    return a?.upgrade?.state === 'failed' ? a : null;
  }, 60_000, 200);
  assert.equal(v.upgrade.code, 'FERRY_E_BUNDLE_DIGEST');
  assert.equal(v.installed, BASE);
  assert.equal(readLaunch(h.root)!.pending, null);
  assert.ok(!existsSync(join(h.root, '0.2.0')), 'nothing was unpacked');
  assert.equal((await rolloutState(th, ro, 'paused')).targets[0].code, 'FERRY_E_BUNDLE_DIGEST');
});
