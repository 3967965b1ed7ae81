// The planner, pure: hand-made observations in, steps out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LABEL, desiredStack, type Current, type DesiredStack, type ObservedContainer } from '../../agent/reconcile/model.js';
import { plan, type Step } from '../../agent/reconcile/plan.js';
import { releaseDoc, service } from '../helpers/signing.js';
import type { Release } from '../../shared/release.js';

const AGENT = 'agt_0123456789abcdef0123';
const IMG1 = '127.0.0.1:5000/web@sha256:' + '1'.repeat(64);
const IMG2 = '127.0.0.1:5000/web@sha256:' + '2'.repeat(64);
const DB = '127.0.0.1:5000/db@sha256:' + '3'.repeat(64);
const facts = { defaultGraceMs: 10_000 };

function rel(version: string, web: string, order: 'stop-first' | 'start-first' = 'stop-first', extra: Partial<Release> = {}): Release {
  return releaseDoc('shop', version, { volumes: { data: {} }, ...extra }, {
    db: service(DB, { healthcheck: { test: ['CMD', 'true'] }, volumes: [{ type: 'volume', source: 'data', target: '/data', readOnly: false }] }),
    web: service(web, { updateOrder: order, dependsOn: { db: { condition: 'service_healthy' } }, ports: [{ target: 8080, published: 18080, protocol: 'tcp' }] }),
  });
}

let n = 0;
function running(d: DesiredStack, svc: string, over: Partial<ObservedContainer> = {}): ObservedContainer {
  const dc = d.containers.find((c) => c.service === svc)!;
  return { id: `c${++n}`, name: dc.spec.name, labels: dc.spec.labels, status: 'running', health: dc.hasHealthcheck ? 'healthy' : 'none', exitCode: null, restartCount: 0, startedAt: null, image: dc.spec.image, ...over };
}
function infra(d: DesiredStack): Pick<Current, 'networks' | 'volumes'> {
  return {
    networks: d.networks.map((x, i) => ({ id: `n${i}`, name: x.name, labels: { [LABEL.stack]: d.stack, [LABEL.agent]: AGENT } })),
    volumes: d.volumes.map((v) => ({ name: v, labels: { [LABEL.stack]: d.stack } })),
  };
}
const kinds = (steps: Step[]) => steps.map((s) => `${s.kind}:${'container' in s ? s.container.service : 'name' in s ? s.name : s.image}`);

test('fresh deploy: pull first, then networks and volumes, then dependencies before dependents', () => {
  const d = desiredStack(AGENT, rel('1.0.0', IMG1));
  let p = plan({ containers: [], networks: [], volumes: [], images: [] }, [d], facts);
  assert.deepEqual(p.steps.map((s) => s.kind).sort(), ['createNetwork', 'createVolume', 'pull', 'pull']);
  p = plan({ containers: [], ...infra(d), images: [IMG1, DB] }, [d], facts);
  assert.deepEqual(kinds(p.steps), ['create:db']);
  assert.match(p.waiting.join(), /shop\/web waits for db \(service_healthy\)/);
  const dbStarting = running(d, 'db', { health: 'starting' });
  p = plan({ containers: [dbStarting], ...infra(d), images: [IMG1, DB] }, [d], facts);
  assert.deepEqual(p.steps, []);
  assert.equal(p.waiting.length, 1);
  p = plan({ containers: [running(d, 'db')], ...infra(d), images: [IMG1, DB] }, [d], facts);
  assert.deepEqual(kinds(p.steps), ['create:web']);
});

test('the plan for unchanged input is empty', () => {
  const d = desiredStack(AGENT, rel('1.0.0', IMG1));
  const p = plan({ containers: [running(d, 'db'), running(d, 'web')], ...infra(d), images: [IMG1, DB] }, [d], facts);
  assert.deepEqual(p, { steps: [], waiting: [] });
  // a new version with the same configuration changes nothing either
  const same = desiredStack(AGENT, rel('1.0.1', IMG1));
  assert.deepEqual(plan({ containers: [running(d, 'db'), running(d, 'web')], ...infra(d), images: [IMG1, DB] }, [same], facts).steps, []);
});

test('stop-first upgrade: the new image is pulled before anything stops; then old goes, then new comes', () => {
  const v1 = desiredStack(AGENT, rel('1.0.0', IMG1));
  const v2 = desiredStack(AGENT, rel('2.0.0', IMG2));
  const db = running(v1, 'db');
  const web1 = running(v1, 'web');
  let p = plan({ containers: [db, web1], ...infra(v2), images: [IMG1, DB] }, [v2], facts);
  assert.deepEqual(kinds(p.steps), [`pull:${IMG2}`], 'the old web keeps serving while the image is fetched');
  p = plan({ containers: [db, web1], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);
  assert.deepEqual(kinds(p.steps), [`stop:${web1.name}`, `remove:${web1.name}`]);
  p = plan({ containers: [db], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);
  assert.deepEqual(kinds(p.steps), ['create:web']);
  // only web changed: db is untouched throughout
  assert.ok(!p.steps.some((s) => 'id' in s && s.id === db.id));
});

test('start-first upgrade: the new container starts beside the old, which stops only when the new is ready', () => {
  const v1 = desiredStack(AGENT, rel('1.0.0', IMG1, 'start-first'));
  const v2 = desiredStack(AGENT, rel('2.0.0', IMG2, 'start-first'));
  const db = running(v1, 'db');
  const web1 = running(v1, 'web');
  let p = plan({ containers: [db, web1], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);
  assert.deepEqual(kinds(p.steps), ['create:web']);
  const web2 = running(v2, 'web', { health: 'starting', status: 'running' });
  web2.labels = { ...web2.labels };
  // give web a healthcheck-like state: not ready until healthy
  const notReady = { ...web2, health: 'starting' as const };
  p = plan({ containers: [db, web1, notReady], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);
  assert.deepEqual(p.steps, []);
  assert.match(p.waiting.join(), /old one keeps serving/);
  p = plan({ containers: [db, web1, { ...web2, health: 'none' }], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);
  assert.deepEqual(kinds(p.steps), [`stop:${web1.name}`, `remove:${web1.name}`]);
});

test('drift: a container stopped or removed by hand is put back', () => {
  const d = desiredStack(AGENT, rel('1.0.0', IMG1));
  const web = running(d, 'web', { status: 'exited', exitCode: 137 });
  let p = plan({ containers: [running(d, 'db'), web], ...infra(d), images: [IMG1, DB] }, [d], facts);
  assert.deepEqual(p.steps.map((s) => s.kind), ['start']);
  assert.match((p.steps[0] as { reason: string }).reason, /drift/);
  p = plan({ containers: [running(d, 'db')], ...infra(d), images: [IMG1, DB] }, [d], facts);
  assert.deepEqual(kinds(p.steps), ['create:web']);
  // a deleted network comes back too
  p = plan({ containers: [running(d, 'db'), running(d, 'web')], networks: [], volumes: infra(d).volumes, images: [IMG1, DB] }, [d], facts);
  assert.deepEqual(p.steps.map((s) => s.kind), ['createNetwork']);
});

test('a stack no longer desired is stopped and removed, its network after its containers; volumes are kept', () => {
  const d = desiredStack(AGENT, rel('1.0.0', IMG1));
  const cs = [running(d, 'db'), running(d, 'web')];
  let p = plan({ containers: cs, ...infra(d), images: [] }, [], facts);
  assert.deepEqual(p.steps.map((s) => s.kind).sort(), ['remove', 'remove', 'stop', 'stop']);
  assert.match(p.waiting.join(), /waits for its containers/);
  p = plan({ containers: [], ...infra(d), images: [] }, [], facts);
  assert.deepEqual(p.steps.map((s) => s.kind), ['removeNetwork']);
  assert.ok(!p.steps.some((s) => s.kind === 'remove' && s.name.includes('data')));
});

test('replicas: surplus ones go, missing ones come, duplicates are cleaned', () => {
  const three = desiredStack(AGENT, releaseDoc('api', '1.0.0', {}, { api: service(IMG1, { replicas: 3 }) }));
  const two = desiredStack(AGENT, releaseDoc('api', '1.0.0', {}, { api: service(IMG1, { replicas: 2 }) }));
  const r = (i: number) => ({ id: `r${i}`, name: three.containers[i]!.spec.name, labels: three.containers[i]!.spec.labels, status: 'running' as const, health: 'none' as const, exitCode: null, restartCount: 0, startedAt: null, image: IMG1 });
  let p = plan({ containers: [r(0), r(1), r(2)], ...infra(two), images: [IMG1] }, [two], facts);
  assert.deepEqual(kinds(p.steps), [`stop:${three.containers[2]!.spec.name}`, `remove:${three.containers[2]!.spec.name}`]);
  p = plan({ containers: [r(0)], ...infra(three), images: [IMG1] }, [three], facts);
  assert.deepEqual(p.steps.map((s) => s.kind), ['create', 'create']);
  p = plan({ containers: [r(0), { ...r(0), id: 'dup' }, r(1), r(2)], ...infra(three), images: [IMG1] }, [three], facts);
  assert.deepEqual(p.steps.map((s) => `${s.kind}:${'id' in s ? s.id : ''}`), ['stop:dup', 'remove:dup']);
});
