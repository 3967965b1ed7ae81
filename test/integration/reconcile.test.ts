// The reconciler on the real engine, between real processes: deploy, both
// update strategies, rollback, drift repair, and the plan.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTestImage, docker, dockerOk, requireDocker } from '../helpers/docker.js';
import { fleet } from '../helpers/fleet.js';
import { service } from '../helpers/signing.js';
import { run } from '../helpers/proc.js';
import { waitFor } from '../helpers/tmp.js';
import type { Service } from '../../shared/release.js';
import { agentPrefix, networkName } from '../../agent/reconcile/model.js';

const HEALTH = { test: ['CMD', 'wget', '-q', '-O-', 'http://127.0.0.1:8080/'], intervalMs: 300, timeoutMs: 2000, retries: 3 };

async function webImage(version: string) {
  const img = await buildTestImage('ferry-test/recon-web', version, { push: true, cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'], files: { '/www/index.html': `${version}\n` } });
  return img.ref!;
}

async function get(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/`);
  return (await res.text()).trim();
}

async function owned(agentId: string): Promise<{ id: string; name: string; status: string }[]> {
  const out = await dockerOk(['ps', '-a', '--filter', `label=ferry.agent=${agentId}`, '--format', '{{.ID}} {{.Names}} {{.State}}']);
  return out.split('\n').filter(Boolean).map((l) => {
    const [id, name, status] = l.split(' ');
    return { id: id!, name: name!, status: status! };
  });
}

function stack(web: string, port: number, order: Service['updateOrder'] = 'stop-first', webExtra: Partial<Service> = {}): Record<string, Service> {
  return {
    web: service(web, { ports: [{ target: 8080, published: port, protocol: 'tcp' }], healthcheck: HEALTH, updateOrder: order, stopGracePeriodMs: 2000, ...webExtra }),
    worker: service(web, { command: ['sh', '-c', 'while true; do sleep 1; done'], dependsOn: { web: { condition: 'service_healthy' } }, stopGracePeriodMs: 1000 }),
  };
}

test('deploy, upgrade stop-first touching only the changed service, a dropped network removed, and an empty plan when converged', async (t) => {
  if (!(await requireDocker(t))) return;
  const f = await fleet(t);
  const [a] = f.agents as [(typeof f.agents)[0]];
  const [v1, v2] = [await webImage('v1'), await webImage('v2')];
  // 1.0.0 has web on a second network too; 2.0.0 drops it
  await f.publish('shop', '1.0.0', stack(v1, 18181, 'stop-first', { networks: ['default', 'back'] }), { networks: { back: { internal: true } } });
  assert.equal((await f.deploy(a, 'shop', '1.0.0')).status, 'accepted');
  await f.waitRelease(a, 'shop', '1.0.0', 'applied');
  assert.equal(await get(18181), 'v1');
  const before = await owned(a.id);
  assert.equal(before.filter((c) => c.status === 'running').length, 2);

  const plan = await run('agent', ['plan', '--state-dir', a.stateDir, '--config', a.configFile]);
  assert.match(plan.stdout, /nothing to do/);
  const viaHub = await run('ferry', ['agent', 'plan', a.id, '--json'], { env: { FERRY_HUB: f.th.url, FERRY_TOKEN: f.th.adminToken, XDG_CONFIG_HOME: a.stateDir } });
  assert.equal(viaHub.code, 0, viaHub.stderr);
  assert.deepEqual(JSON.parse(viaHub.stdout), { agent: a.id, steps: [], waiting: [] });
  const shown = await run('ferry', ['agent', 'show', a.id], { env: { FERRY_HUB: f.th.url, FERRY_TOKEN: f.th.adminToken, XDG_CONFIG_HOME: a.stateDir } });
  assert.match(shown.stdout, /release\s+shop@1\.0\.0 applied/);
  assert.match(shown.stdout, /service\s+shop\/web#0 1\.0\.0 running\/healthy/);

  // v2 changes only web's image; the worker's config is the same (same image v1) so it stays
  await f.publish('shop', '2.0.0', { ...stack(v2, 18181), worker: stack(v1, 18181).worker! });
  await f.deploy(a, 'shop', '2.0.0');
  await f.waitRelease(a, 'shop', '2.0.0', 'applied');
  assert.equal(await get(18181), 'v2');
  const after = await owned(a.id);
  const worker = before.find((c) => c.name.includes('_worker_'))!;
  assert.ok(after.some((c) => c.id === worker.id), 'the worker container was not replaced');
  assert.ok(!after.some((c) => c.id === before.find((x) => x.name.includes('_web_'))!.id), 'the web container was replaced');
  assert.equal(after.length, 2, 'no stray containers');
  const networks = (await dockerOk(['network', 'ls', '--filter', `label=ferry.agent=${a.id}`, '--format', '{{.Name}}'])).split('\n').filter(Boolean);
  assert.deepEqual(networks, [networkName(agentPrefix(a.id), 'shop', 'default')], 'the network 2.0.0 dropped is gone');

  const audit = (await f.th.api('GET', '/v1/audit/bank-r/entries')).body.entries.map((e: { action: string }) => e.action);
  assert.ok(audit.filter((x: string) => x === 'release.applied').length >= 2, audit.join(','));
});

test('a failing healthcheck, a crash loop and an image that cannot be pulled each roll back; the old version keeps serving', async (t) => {
  if (!(await requireDocker(t))) return;
  const f = await fleet(t);
  const [a] = f.agents as [(typeof f.agents)[0]];
  const v1 = await webImage('v1');
  await f.publish('shop', '1.0.0', stack(v1, 18182));
  await f.deploy(a, 'shop', '1.0.0');
  await f.waitRelease(a, 'shop', '1.0.0', 'applied');

  await f.publish('shop', '1.1.0', stack(v1, 18182, 'start-first', { healthcheck: { ...HEALTH, test: ['CMD', 'false'], retries: 1 }, ports: [] }));
  await f.deploy(a, 'shop', '1.1.0');
  let r = await f.waitRelease(a, 'shop', '1.1.0', 'rolled-back');
  assert.equal(r.code, 'FERRY_E_UNHEALTHY');
  assert.equal(r.runningVersion, '1.0.0');
  assert.equal(await get(18182), 'v1');

  await f.publish('shop', '1.2.0', stack(v1, 18182, 'stop-first', { command: ['sh', '-c', 'exit 3'], restart: 'always' }));
  await f.deploy(a, 'shop', '1.2.0');
  r = await f.waitRelease(a, 'shop', '1.2.0', 'rolled-back');
  assert.ok(['FERRY_E_CRASH_LOOP', 'FERRY_E_UNHEALTHY'].includes(r.code!), r.code);
  await waitFor('v1 serving again', async () => (await get(18182).catch(() => '')) === 'v1', 30_000);

  const missing = v1.replace(/sha256:[0-9a-f]{64}/, 'sha256:' + 'e'.repeat(64));
  await f.publish('shop', '1.3.0', stack(missing, 18182));
  await f.deploy(a, 'shop', '1.3.0');
  r = await f.waitRelease(a, 'shop', '1.3.0', 'rolled-back');
  assert.equal(r.code, 'FERRY_E_IMAGE_NOT_FOUND');
  assert.equal(await get(18182), 'v1');
  assert.equal((await owned(a.id)).length, 2, 'no stray containers after three rollbacks');
});

test('drift: containers removed or stopped by hand come back; containers Ferry does not own are left alone', async (t) => {
  if (!(await requireDocker(t))) return;
  const f = await fleet(t, { driftIntervalMs: 60_000 }); // events, not the timer, must trigger the repair
  const [a] = f.agents as [(typeof f.agents)[0]];
  const v1 = await webImage('v1');
  const stranger = await dockerOk(['run', '-d', '--label', 'ferry.test=stranger', (await buildTestImage('ferry-test/stranger', 'v1')).image, 'sleep', '3600']);
  t.after(() => docker(['rm', '-f', stranger]));
  await f.publish('shop', '1.0.0', stack(v1, 18183));
  await f.deploy(a, 'shop', '1.0.0');
  await f.waitRelease(a, 'shop', '1.0.0', 'applied');
  const cs = await owned(a.id);
  await dockerOk(['rm', '-f', cs.find((c) => c.name.includes('_web_'))!.id]);
  await dockerOk(['stop', '-t', '1', cs.find((c) => c.name.includes('_worker_'))!.id]);
  await waitFor('both back and running', async () => (await owned(a.id)).filter((c) => c.status === 'running').length === 2, 30_000, 250);
  assert.equal(await waitFor('web serves', async () => (await get(18183).catch(() => '')) === 'v1', 30_000), true);
  await waitFor('drift reported to the audit log', async () => (await f.th.api('GET', '/v1/audit/bank-r/entries')).body.entries.some((e: { action: string }) => e.action === 'drift.repaired'), 15_000);
  assert.equal((await dockerOk(['inspect', '-f', '{{.State.Status}}', stranger])).trim(), 'running', 'the stranger was not touched');
});
