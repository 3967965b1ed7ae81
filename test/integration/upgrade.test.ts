// Agent self-upgrade with automatic revert, through real processes: a hub,
// a real agent enrolled with it, installed in versioned directories and run
// by the launcher (supervised as systemd runs it), bundles built from this
// checkout (good ones and broken ones), uploaded, signed by the tenant's
// release role (2 of 3) and rolled out with the rollout engine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { readLaunch } from '../../agent/upgrade/launch-state.js';
import type { TestHub } from '../helpers/hub.js';
import { run } from '../helpers/proc.js';
import { waitFor } from '../helpers/tmp.js';
import { BASE, RM, TENANT, bundle, publishBundle, rollOut, upgradeHost, upgradeHub, waitVersions, type Host } from '../helpers/upgrade.js';

/** The host converged after an upgrade to `target`: one agent process, on `version`, its identity and key as before, no upgrade half done. */
async function converged(th: TestHub, h: Host, target: string, version: string, state: string) {
  const v = await waitVersions(th, h.id, { installed: version, state, upgrade: target }, 90_000).catch((err: Error) => assert.fail(`${err.message}\n${h.sup.output().slice(-4000)}`));
  await waitFor('exactly one agent process', () => h.sup.agents().length === 1, 10_000).catch(() => assert.fail(`agent processes: ${JSON.stringify(h.sup.agents())}`));
  assert.match(h.sup.agents()[0]!, new RegExp(`/${version.replace(/\./g, '\\.')}/dist/agent/main\\.js`));
  const l = readLaunch(h.root)!;
  assert.equal(l.current, version);
  assert.equal(l.pending, null);
  assert.equal(readlinkSync(join(h.root, 'current')), version);
  assert.equal(readFileSync(join(h.stateDir, 'identity.json'), 'utf8'), h.identity, 'identity intact');
  assert.equal(readFileSync(join(h.stateDir, 'agent.key'), 'utf8'), h.key, 'key intact');
  const trust = JSON.parse(readFileSync(join(h.stateDir, 'trust.json'), 'utf8')) as { format: number; desired: { seq: number } | null };
  assert.equal(trust.format, 1);
  assert.ok(trust.desired && trust.desired.seq >= 1, 'the accepted directive is still there');
  await waitFor('no state backup left', () => !existsSync(join(h.stateDir, '.upgrade-backup')), 10_000);
  return v;
}

async function rolloutState(th: TestHub, id: string, state: string) {
  return waitFor(`rollout ${id} ${state}`, async () => {
    const r = (await th.api('GET', `/v1/rollouts/${id}`)).body;
    return r.state === state ? r : null;
  }, 60_000, 200);
}

test('self-upgrade: a good version commits; crashing, unauthenticated and hanging ones revert by themselves', { timeout: 600_000 }, async (t) => {
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

// kill -9 at every step of an upgrade (the process reaching it kills itself: test/helpers/crash-hook.ts)
// and a power cut: the host converges to exactly one running version with its state intact.
const STEPS: { step: string; version: string; state: string }[] = [
  { step: 'downloaded', version: '0.2.0', state: 'committed' },
  { step: 'unpacked', version: '0.2.0', state: 'committed' },
  { step: 'pending', version: '0.2.0', state: 'committed' },
  { step: 'backup-copied', version: '0.2.0', state: 'committed' },
  { step: 'backed-up', version: '0.2.0', state: 'committed' },
  // from here the new version was handed the state: a trial that did not finish is reverted
  { step: 'trial-marked', version: BASE, state: 'reverted' },
  { step: 'healthy', version: BASE, state: 'reverted' },
  { step: 'committed', version: '0.2.0', state: 'committed' },
];

test('kill -9 at every step of an upgrade converges to one running version with state intact', { timeout: 900_000 }, async (t) => {
  const th = await upgradeHub(t);
  await publishBundle(th, bundle('0.2.0'), [TENANT], RM.slice(1, 3));
  await publishBundle(th, bundle('0.2.1', 'crash'), [TENANT], RM.slice(0, 2));
  for (const s of STEPS) {
    await t.test(`killed at ${s.step}: ends on ${s.version} (${s.state})`, async (tt) => {
      const h = await upgradeHost(tt, th, { crashAt: `upgrade:${s.step}` });
      const ro = await rollOut(th, '0.2.0', `id=${h.id}`);
      const v = await converged(th, h, '0.2.0', s.version, s.state);
      assert.ok(h.sup.exits.some((c) => c !== 0), `the process really died at ${s.step} (exits ${JSON.stringify(h.sup.exits)})`);
      if (s.state === 'reverted') assert.equal(v.upgrade.code, 'FERRY_E_UPGRADE_INTERRUPTED');
      await rolloutState(th, ro, s.state === 'committed' ? 'succeeded' : 'paused');
      await h.sup.stop();
    });
  }
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

test('refused bundles: a digest mismatch on the way installs nothing; the hub will not name a bundle below threshold', { timeout: 300_000 }, async (t) => {
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
