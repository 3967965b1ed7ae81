// Agent self-upgrade with automatic revert, through real processes: a hub,
// a real agent enrolled with it, installed in versioned directories and run
// by the launcher (supervised as systemd runs it), bundles built from this
// checkout (good ones and broken ones), uploaded, signed by the tenant's
// release role (2 of 3) and rolled out with the rollout engine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readLaunch } from '../../agent/upgrade/launch-state.js';
import { run } from '../helpers/proc.js';
import { BASE, RM, TENANT, bundle, converged, publishBundle, rollOut, rolloutState, upgradeHost, upgradeHub } from '../helpers/upgrade.js';

test('self-upgrade: a good version commits; crashing, unauthenticated and hanging ones revert by themselves', { timeout: 290_000 }, async (t) => {
  const th = await upgradeHub(t);
  for (const [v, broken] of [['0.2.0'], ['0.2.1', 'crash'], ['0.2.2', 'no-auth'], ['0.2.3', 'hang']] as const) await publishBundle(th, bundle(v, broken), [TENANT], RM.slice(0, 2));
  const h = await upgradeHost(t, th, { windowMs: 12_000 });

  await t.test('a version that crashes at start reverts, and the hub hears why', async () => {
    const ro = await rollOut(th, '0.2.1', `id=${h.id}`);
    const v = await converged(th, h, '0.2.1', BASE, 'reverted');
    assert.equal(v.upgrade.version, '0.2.1');
    assert.equal(v.upgrade.code, 'FERRY_E_UPGRADE_CRASHED');
    assert.match(v.upgrade.message, /exited with code 3 .*before it was healthy/);
    assert.match(v.upgrade.message, /boom: this build of the agent is broken/, 'the new version\'s last words are in the reason');
    const r = await rolloutState(th, ro, 'paused');
    assert.equal(r.targets[0].state, 'failed');
    assert.equal(r.targets[0].code, 'FERRY_E_UPGRADE_CRASHED');
    const audit = (await th.api('GET', `/v1/audit/${TENANT}/entries`)).body.entries as { action: string; outcome: string }[];
    assert.ok(audit.some((e) => e.action === 'agent.upgrade.reverted' && e.outcome === 'failed'), 'the revert is in the tenant\'s audit log');
    assert.equal((await th.api('POST', `/v1/rollouts/${ro}/abort`)).status, 200);
  });

  await t.test('a version that cannot authenticate reverts after the health window, saying so', async () => {
    const ro = await rollOut(th, '0.2.2', `id=${h.id}`);
    const v = await converged(th, h, '0.2.2', BASE, 'reverted');
    assert.equal(v.upgrade.code, 'FERRY_E_UPGRADE_UNHEALTHY');
    assert.match(v.upgrade.message, /not healthy within 12 s \(got as far as: connecting: FERRY_E_AGENT_AUTH_INVALID/);
    await rolloutState(th, ro, 'paused');
    assert.equal((await th.api('POST', `/v1/rollouts/${ro}/abort`)).status, 200);
  });

  await t.test('a version that hangs reverts after the window', async () => {
    const ro = await rollOut(th, '0.2.3', `id=${h.id}`);
    const v = await converged(th, h, '0.2.3', BASE, 'reverted');
    assert.equal(v.upgrade.code, 'FERRY_E_UPGRADE_UNHEALTHY');
    assert.match(v.upgrade.message, /0\.2\.3 was not healthy within 12 s \(got as far as: started\)/);
    await rolloutState(th, ro, 'paused');
    assert.equal((await th.api('POST', `/v1/rollouts/${ro}/abort`)).status, 200);
  });

  await t.test('a good version connects, authenticates, verifies its directive, reconciles and commits', async () => {
    const ro = await rollOut(th, '0.2.0', `id=${h.id}`, { bakeMs: 500 });
    const v = await converged(th, h, '0.2.0', '0.2.0', 'committed');
    assert.equal(v.previous, BASE);
    await rolloutState(th, ro, 'succeeded');
    const l = readLaunch(h.root)!;
    assert.deepEqual(l.history.map((x) => [x.version, x.outcome, x.code ?? null]), [
      ['0.2.1', 'reverted', 'FERRY_E_UPGRADE_CRASHED'],
      ['0.2.2', 'reverted', 'FERRY_E_UPGRADE_UNHEALTHY'],
      ['0.2.3', 'reverted', 'FERRY_E_UPGRADE_UNHEALTHY'],
      ['0.2.0', 'committed', null],
    ]);
    // ferry-agent status (of the new version) shows installed, previous and pending
    const st = await run('agent', ['status', '--state-dir', h.stateDir, '--root', h.root], { main: join(h.root, 'current', 'dist', 'agent', 'main.js') });
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /^version\s+0\.2\.0$/m);
    assert.match(st.stdout, /^installed\s+0\.2\.0 \(/m);
    assert.match(st.stdout, /^previous\s+0\.1\.0$/m);
    assert.match(st.stdout, /^pending\s+-$/m);
    // ferry agent ls shows it across the fleet
    const ls = await run('ferry', ['agent', 'ls', '--tenant', TENANT], { env: { FERRY_HUB: th.url, FERRY_TOKEN: th.adminToken } });
    assert.match(ls.stdout, new RegExp(`${h.id}.*\\s0\\.2\\.0\\s`));
  });
});
