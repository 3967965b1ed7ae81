// kill -9 at steps of an upgrade (the process reaching the step kills itself: test/helpers/crash-hook.ts,
// upgrade steps in agent/upgrade/launch-state.ts): the host converges to exactly one running version with
// its state intact. Split over upgrade-kill-*.test.ts so each file stays within the runner's per-file timeout.
import { test } from 'node:test';
import { RM, TENANT, bundle, killAtSteps, publishBundle, upgradeHub } from '../helpers/upgrade.js';

test('kill -9 when the new version is healthy but not yet committed, and once committed', { timeout: 290_000 }, async (t) => {
  const th = await upgradeHub(t);
  await publishBundle(th, bundle('0.2.0'), [TENANT], RM.slice(1, 3));
  await killAtSteps(t, th, [
    { step: 'healthy', version: '0.1.0', state: 'reverted' },
    { step: 'committed', version: '0.2.0', state: 'committed' },
  ]);
});
