// The reconcile loop against the in-memory engine: convergence, the
// verification gate, rollback, drift repair. Real-engine behaviour is in
// test/integration/reconcile.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { silentLogger } from '../../shared/logger.js';
import type { Release } from '../../shared/release.js';
import { Reconciler, type Target } from '../../agent/reconcile/reconciler.js';
import { LABEL } from '../../agent/reconcile/model.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { releaseDoc, service } from '../helpers/signing.js';
import { tempDir } from '../helpers/tmp.js';

const AGENT = 'agt_fedcba9876543210fedc';
const img = (n: number) => `127.0.0.1:5000/app@sha256:${String(n).repeat(64).slice(0, 64)}`;
const target = (r: Release): Target => ({ stack: r.stack, version: r.version, digest: 'sha256:' + createHash('sha256').update(r.version + JSON.stringify(r.services)).digest('hex'), release: r });
const stackOf = (version: string, image: string, health = true) =>
  releaseDoc('shop', version, {}, {
    api: service(image, { ...(health ? { healthcheck: { test: ['CMD', 'true'] } } : {}) }),
    worker: service(img(9), { dependsOn: { api: { condition: 'service_healthy' } } }),
  });

function setup(t: import('node:test').TestContext) {
  const engine = new FakeEngine();
  for (const i of [1, 2, 9]) engine.addImage(img(i));
  const reports: { releases: { stack: string; state: string; code?: string }[]; drift: string[] }[] = [];
  const r = new Reconciler({ engine, agentId: AGENT, stateDir: tempDir(t), log: silentLogger(), bakeMs: 50, pollMs: 5, applyTimeoutMs: 2000, drainMs: 10, report: (releases, _s, drift) => reports.push({ releases, drift }) });
  t.after(() => r.close());
  // the fake reports health `starting` for containers with a healthcheck; make them healthy as a real check would
  const healthy = setInterval(() => {
    for (const c of engine.containers.values()) if (c.status === 'running' && c.health === 'starting') engine.setHealth(c.id, 'healthy');
  }, 5);
  t.after(() => clearInterval(healthy));
  return { engine, r, reports };
}

const running = (e: FakeEngine) => [...e.containers.values()].filter((c) => c.status === 'running').map((c) => `${c.labels[LABEL.service]}@${c.labels[LABEL.release]}`).sort();

test('applies a release: dependencies first, everything running and healthy, then applied', async (t) => {
  const { engine, r, reports } = setup(t);
  await r.apply(1, [target(stackOf('1.0.0', img(1)))], new AbortController().signal);
  assert.deepEqual(running(engine), ['api@1.0.0', 'worker@1.0.0']);
  const creates = engine.calls.filter((c) => c.startsWith('create ')).map((c) => c.split('_')[3]);
  assert.deepEqual(creates.filter((c) => c !== undefined).slice(0, 2), ['api', 'worker']);
  assert.equal(reports.at(-1)!.releases[0]!.state, 'applied');
  // a second apply of the same state changes nothing
  const before = engine.calls.length;
  await r.apply(2, [target(stackOf('1.0.0', img(1)))], new AbortController().signal);
  assert.equal(engine.calls.filter((c, i) => i >= before && !c.startsWith('pull')).length, 0);
});

test('an unhealthy new release is rolled back to the last good one and not retried', async (t) => {
  const { engine, r, reports } = setup(t);
  await r.apply(1, [target(stackOf('1.0.0', img(1)))], new AbortController().signal);
  const bad = stackOf('2.0.0', img(2));
  const watcher = setInterval(() => {
    for (const c of engine.containers.values()) if (c.labels[LABEL.release] === '2.0.0' && c.labels[LABEL.service] === 'api' && c.status === 'running') engine.setHealth(c.id, 'unhealthy');
  }, 1);
  t.after(() => clearInterval(watcher));
  await r.apply(2, [target(bad)], new AbortController().signal);
  clearInterval(watcher);
  assert.deepEqual(running(engine), ['api@1.0.0', 'worker@1.0.0']);
  const last = reports.at(-1)!.releases[0]!;
  assert.equal(last.state, 'rolled-back');
  assert.equal(last.code, 'FERRY_E_UNHEALTHY');
  const journal = readFileSync(join((r as unknown as { o: { stateDir: string } }).o.stateDir, 'journal.jsonl'), 'utf8');
  assert.match(journal, /"event":"rolled-back"/);
  // the same directive again (an agent restart, a drift pass): not retried
  const before = engine.calls.length;
  await r.apply(2, [target(bad)], new AbortController().signal);
  assert.deepEqual(await r.repair(new AbortController().signal), []);
  assert.equal(engine.calls.slice(before).filter((c) => c.startsWith('create')).length, 0);
  assert.equal(reports.at(-1)!.releases[0]!.state, 'rolled-back');
  // deployed again by the hub (a new directive), now that the cause is fixed: retried once, and applied
  clearInterval(watcher);
  await r.apply(3, [target(bad)], new AbortController().signal);
  assert.deepEqual(running(engine), ['api@2.0.0', 'worker@1.0.0'], 'api replaced; worker unchanged, so kept');
  assert.equal(reports.at(-1)!.releases[0]!.state, 'applied');
});

test('a release that failed is retried under a new directive only, and fails again cleanly if still bad', async (t) => {
  const { engine, r, reports } = setup(t);
  await r.apply(1, [target(stackOf('1.0.0', img(1)))], new AbortController().signal);
  engine.removeImage(img(2));
  engine.failPull(img(2), 'FERRY_E_REGISTRY_UNREACHABLE');
  const bad = target(stackOf('2.0.0', img(2)));
  await r.apply(2, [bad], new AbortController().signal);
  const pulls = () => engine.calls.filter((c) => c.startsWith('pull') && c.includes(img(2))).length;
  const tried = pulls();
  assert.ok(tried >= 1);
  await r.apply(2, [bad], new AbortController().signal);
  assert.equal(pulls(), tried, 'not retried under the directive it failed under');
  await r.apply(3, [bad], new AbortController().signal);
  assert.ok(pulls() > tried, 'retried under a new directive');
  assert.deepEqual(running(engine), ['api@1.0.0', 'worker@1.0.0']);
  assert.equal(reports.at(-1)!.releases[0]!.state, 'rolled-back');
  assert.equal(reports.at(-1)!.releases[0]!.code, 'FERRY_E_REGISTRY_UNREACHABLE');
});

test('a pull failure leaves the old version serving', async (t) => {
  const { engine, r, reports } = setup(t);
  await r.apply(1, [target(stackOf('1.0.0', img(1)))], new AbortController().signal);
  engine.removeImage(img(2));
  engine.failPull(img(2), 'FERRY_E_REGISTRY_UNREACHABLE');
  await r.apply(2, [target(stackOf('2.0.0', img(2)))], new AbortController().signal);
  assert.deepEqual(running(engine), ['api@1.0.0', 'worker@1.0.0']);
  assert.ok(!engine.calls.some((c) => c.startsWith('stop')), 'nothing was stopped');
  assert.equal(reports.at(-1)!.releases[0]!.code, 'FERRY_E_REGISTRY_UNREACHABLE');
});

test('drift: a container stopped or removed by hand is put back and reported', async (t) => {
  const { engine, r, reports } = setup(t);
  await r.apply(1, [target(stackOf('1.0.0', img(1)))], new AbortController().signal);
  const api = [...engine.containers.values()].find((c) => c.labels[LABEL.service] === 'api')!;
  await engine.stopContainer(api.id, 0);
  const worker = [...engine.containers.values()].find((c) => c.labels[LABEL.service] === 'worker')!;
  await engine.removeContainer(worker.id);
  const done = await r.repair(new AbortController().signal);
  assert.ok(done.some((d) => d.startsWith('start')) && done.some((d) => d.startsWith('create')), done.join('\n'));
  assert.deepEqual(running(engine), ['api@1.0.0', 'worker@1.0.0']);
  assert.ok(reports.at(-1)!.drift.length >= 2);
  assert.deepEqual(await r.repair(new AbortController().signal), [], 'converged: nothing more to do');
});

test('start-first: the new container takes the alias only once healthy, and the old one is drained and stopped only after that', async (t) => {
  const { engine, r } = setup(t);
  const rel = (version: string, image: string) => releaseDoc('shop', version, {}, { api: service(image, { updateOrder: 'start-first', healthcheck: { test: ['CMD', 'true'] } }) });
  await r.apply(1, [target(rel('1.0.0', img(1)))], new AbortController().signal);
  const old = [...engine.containers.values()][0]!;
  const net = Object.keys(old.networks)[0]!;
  assert.deepEqual(old.networks[net], ['api']);
  // Snapshot at every change: who resolves as `api` and who serves (running and healthy).
  const seen: string[] = [];
  const from = engine.calls.length;
  const watch = setInterval(() => {
    const named = [...engine.containers.values()].filter((c) => c.networks[net]?.includes('api'));
    seen.push(named.map((c) => `${c.labels[LABEL.release]}:${c.status}/${c.health}`).join(' '));
  }, 1);
  t.after(() => clearInterval(watch));
  await r.apply(2, [target(rel('2.0.0', img(2)))], new AbortController().signal);
  clearInterval(watch);
  const next = [...engine.containers.values()];
  assert.deepEqual(next.map((c) => `${c.labels[LABEL.release]} ${c.status} ${JSON.stringify(c.networks)}`), [`2.0.0 running ${JSON.stringify({ [net]: ['api'] })}`]);
  const calls = engine.calls.slice(from).map((c) => c.replace(/ ferry_\S+_api_0_([0-9a-f]+)/, (_, h: string) => ` ${h === old.labels[LABEL.configHash]!.slice(0, 8) ? 'old' : 'new'}`));
  assert.deepEqual(calls, ['create new', 'start new', 'setAliases new api', 'setAliases old -', 'stop old', 'remove old']);
  // Never a moment when the name resolves to nothing, or to a container that is not healthy.
  assert.ok(seen.length > 0);
  for (const s of seen) {
    assert.ok(s.length > 0, 'the name always resolves');
    assert.ok(s.split(' ').every((x) => x.endsWith('running/healthy')), `only healthy containers under the name: ${s}`);
  }
});

test('start-first: an old container already gone when it is drained is fine', async (t) => {
  const { engine, r, reports } = setup(t);
  const rel = (version: string, image: string) => releaseDoc('shop', version, {}, { api: service(image, { updateOrder: 'start-first' }) });
  await r.apply(1, [target(rel('1.0.0', img(1)))], new AbortController().signal);
  engine.failCall(/^setAliases \S+ -$/, 'FERRY_E_NOT_FOUND'); // removed by hand between observe and drain
  await r.apply(2, [target(rel('2.0.0', img(2)))], new AbortController().signal);
  assert.equal(reports.at(-1)!.releases[0]!.state, 'applied');
  assert.deepEqual(running(engine), ['api@2.0.0']);
});
