// Three real agent processes on the real engine carry a two-wave rollout end
// to end: the canary first, the other two only after it baked; then a
// rollout of a broken release pauses on the canary, which rolled itself back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTestImage, dockerOk, requireDocker } from '../helpers/docker.js';
import { fleet } from '../helpers/fleet.js';
import { service } from '../helpers/signing.js';
import { waitFor } from '../helpers/tmp.js';

const HEALTH = { test: ['CMD', 'wget', '-q', '-O-', 'http://127.0.0.1:8080/'], intervalMs: 300, timeoutMs: 2000, retries: 3 };

async function webImage(version: string) {
  const img = await buildTestImage('ferry-test/rollout-web', version, { push: true, cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'], files: { '/www/index.html': `${version}\n` } });
  return img.ref!;
}

test('three real agents: a two-wave rollout end to end, then a broken release pauses on the canary', { timeout: 300_000 }, async (t) => {
  if (!(await requireDocker(t))) return;
  const f = await fleet(t, { agents: 3, bakeMs: 1000 });
  const [v1, v2] = [await webImage('v1'), await webImage('v2')];
  await f.publish('shop', '1.0.0', { web: service(v1, { healthcheck: HEALTH, stopGracePeriodMs: 1000 }) });
  await f.publish('shop', '2.0.0', { web: service(v2, { healthcheck: HEALTH, stopGracePeriodMs: 1000 }) });
  await f.publish('shop', '2.1.0', { web: service(v2, { healthcheck: { ...HEALTH, test: ['CMD', 'false'], retries: 1 }, stopGracePeriodMs: 1000 }) });
  const api = f.th.api;
  const go = async (version: string, extra: Record<string, unknown> = {}) => {
    const r = await api('POST', '/v1/rollouts', { stack: 'shop', version, selector: 'tenant=bank-r', waves: '1,100%', bakeMs: 1500, ...extra });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id as string;
  };
  const until = (id: string, states: string[]) =>
    waitFor(`${id} ${states.join('|')}`, async () => {
      const v = (await api('GET', `/v1/rollouts/${id}`)).body;
      return states.includes(v.state) ? v : null;
    }, 180_000, 250);

  const r1 = await until(await go('1.0.0'), ['succeeded', 'paused']);
  assert.equal(r1.state, 'succeeded');
  const id2 = await go('2.0.0');
  const r2 = await until(id2, ['succeeded', 'paused']);
  assert.equal(r2.state, 'succeeded');
  assert.deepEqual(r2.waveList.map((w: { reach: number }) => w.reach), [1, 3]);
  // gating: the second wave's directives came after the canary applied and baked
  const [canary, ...rest] = r2.targets as { agent: string; appliedAt: string; seq: number }[];
  for (const x of rest) {
    const d = (await api('GET', `/v1/agents/${x.agent}/directives/${x.seq}`)).body;
    assert.ok(Date.parse(d.issuedAt) >= Date.parse(canary!.appliedAt) + 1500, 'wave 2 waited for the canary bake');
  }
  for (const a of f.agents) {
    await f.waitRelease(a, 'shop', '2.0.0', 'applied');
    const images = await dockerOk(['ps', '--filter', `label=ferry.agent=${a.id}`, '--format', '{{.Image}}']);
    assert.match(images, /rollout-web/);
    assert.doesNotMatch(images, new RegExp(v1.split('@')[1]!));
  }

  // a broken release: the canary's agent rolls itself back, the rollout pauses, nobody else is touched
  const id3 = await go('2.1.0');
  const r3 = await until(id3, ['paused', 'succeeded']);
  assert.equal(r3.state, 'paused');
  assert.equal(r3.targets[0].state, 'failed');
  assert.equal(r3.targets[0].code, 'FERRY_E_UNHEALTHY');
  assert.ok(r3.targets.slice(1).every((x: { seq: number | null }) => x.seq === null));
  // roll back what it changed: the canary's desired state goes back to 2.0.0
  await api('POST', `/v1/rollouts/${id3}/rollback`);
  const back = await until(id3, ['rolled-back', 'failed']);
  assert.equal(back.state, 'rolled-back', JSON.stringify(back.targets));
  // the canary's accepted desired state is 2.0.0 again, and 2.0.0 is what runs
  const view = await waitFor('canary directed back to 2.0.0', async () => {
    const v = (await api('GET', `/v1/agents/${r3.targets[0].agent}`)).body;
    return v.desired?.releases?.some((x: { stack: string; version: string }) => x.stack === 'shop' && x.version === '2.0.0') ? v : null;
  }, 30_000);
  assert.equal(view.running.releases.find((x: { stack: string }) => x.stack === 'shop').runningVersion, '2.0.0');
});
