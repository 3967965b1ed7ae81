// kill -9 during a revert, and a power cut during the trial: the host converges to the previous version,
// exactly one running, with its state intact (the other steps: upgrade-kill-install|backup|trial.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readLaunch } from '../../agent/upgrade/launch-state.js';
import { waitFor } from '../helpers/tmp.js';
import { BASE, RM, TENANT, bundle, converged, publishBundle, rollOut, upgradeHost, upgradeHub } from '../helpers/upgrade.js';

test('kill -9 while a revert restores the state, and a power cut during the trial', { timeout: 290_000 }, async (t) => {
  const th = await upgradeHub(t);
  await publishBundle(th, bundle('0.2.0'), [TENANT], RM.slice(1, 3));
  await publishBundle(th, bundle('0.2.1', 'crash'), [TENANT], RM.slice(0, 2));
  await t.test('killed while the state is being restored after a crash: the revert finishes', async (tt) => {
    const h = await upgradeHost(tt, th, { crashAt: 'upgrade:restore-emptied' });
    await rollOut(th, '0.2.1', `id=${h.id}`);
    const v = await converged(th, h, '0.2.1', BASE, 'reverted');
    assert.equal(v.upgrade.code, 'FERRY_E_UPGRADE_INTERRUPTED');
    await h.sup.stop();
  });
  await t.test('a power cut (everything killed) during the trial', async (tt) => {
    const h = await upgradeHost(tt, th);
    await rollOut(th, '0.2.0', `id=${h.id}`);
    await waitFor('the trial to start', () => readLaunch(h.root)?.pending?.stage === 'trial', 60_000);
    const starts = h.sup.starts;
    h.sup.powerCut();
    await waitFor('the launcher to be started again', () => h.sup.starts > starts, 10_000);
    const v = await converged(th, h, '0.2.0', BASE, 'reverted');
    assert.equal(v.upgrade.code, 'FERRY_E_UPGRADE_INTERRUPTED');
    await h.sup.stop();
  });
});
