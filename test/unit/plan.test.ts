// The planner, pure: hand-made observations in, steps out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LABEL, desiredStack, type Current, type DesiredContainer, type DesiredStack, type ObservedContainer } from '../../agent/reconcile/model.js';
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
/** Attached to the container's networks with its aliases, as created by a plain `create` step. */
const aliased = (dc: DesiredContainer): Record<string, string[]> => Object.fromEntries(dc.spec.networks.map((x) => [x, [...dc.spec.aliases]]));
/** Attached without the aliases, as created by a start-first `create` (deferAlias), or drained. */
const unaliased = (dc: DesiredContainer): Record<string, string[]> => Object.fromEntries(dc.spec.networks.map((x) => [x, []]));
function running(d: DesiredStack, svc: string, over: Partial<ObservedContainer> = {}): ObservedContainer {
  const dc = d.containers.find((c) => c.service === svc)!;
  return { id: `c${++n}`, name: dc.spec.name, labels: dc.spec.labels, status: 'running', health: dc.hasHealthcheck ? 'healthy' : 'none', exitCode: null, restartCount: 0, startedAt: null, image: dc.spec.image, networks: aliased(dc), ...over };
}
function infra(d: DesiredStack): Pick<Current, 'networks' | 'volumes'> {
  return {
    networks: d.networks.map((x, i) => ({ id: `n${i}`, name: x.name, labels: { [LABEL.stack]: d.stack, [LABEL.agent]: AGENT } })),
    volumes: d.volumes.map((v) => ({ name: v, labels: { [LABEL.stack]: d.stack } })),
  };
}
const kinds = (steps: Step[]) => steps.map((s) => `${s.kind}:${'container' in s ? s.container.service : 'job' in s ? s.job.service : 'name' in s ? s.name : s.image}`);

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

test('start-first upgrade: the new container starts beside the old without the alias, takes it once ready, and only then the old one goes', () => {
  const v1 = desiredStack(AGENT, rel('1.0.0', IMG1, 'start-first'));
  const v2 = desiredStack(AGENT, rel('2.0.0', IMG2, 'start-first'));
  const web2spec = v2.containers.find((c) => c.service === 'web')!;
  const db = running(v1, 'db');
  const web1 = running(v1, 'web');
  const at = (...cs: ObservedContainer[]) => plan({ containers: [db, web1, ...cs], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);

  let p = at();
  assert.deepEqual(kinds(p.steps), ['create:web']);
  assert.equal((p.steps[0] as Extract<Step, { kind: 'create' }>).deferAlias, true, 'created without the service alias');

  // Started, not ready: nothing to do; the old one keeps the name.
  const web2 = running(v2, 'web', { health: 'starting', networks: unaliased(web2spec) });
  p = at(web2);
  assert.deepEqual(p.steps, []);
  assert.match(p.waiting.join(), /not ready yet \(starting\); it takes the alias once ready, the old one keeps serving/);

  // Ready: the alias, on every network of the service; the old one is not touched in the same batch.
  p = at({ ...web2, health: 'none' });
  assert.deepEqual(p.steps, [{ kind: 'alias', id: web2.id, name: web2.name, networks: web2spec.spec.networks, aliases: ['web'], reason: 'shop/web#0 ready; takes its alias before the old one goes' }]);

  // Aliased and ready: now the old one is drained (re-joins its networks without the alias), stopped and removed.
  p = at({ ...web2, health: 'none', networks: aliased(web2spec) });
  assert.deepEqual(kinds(p.steps), [`stop:${web1.name}`, `remove:${web1.name}`]);
  assert.deepEqual((p.steps[0] as Extract<Step, { kind: 'stop' }>).drain, Object.keys(web1.networks));
});

test('start-first: an alias step only where it is missing, and a new container that lost readiness waits', () => {
  const svc = (order: 'start-first' | 'stop-first') => releaseDoc('shop', '2.0.0', { networks: { front: { internal: false }, back: { internal: true } } }, { web: service(IMG2, { updateOrder: order, networks: ['front', 'back'], healthcheck: { test: ['CMD', 'true'] } }) });
  const v2 = desiredStack(AGENT, svc('start-first'));
  const dc = v2.containers[0]!;
  const [front, back] = dc.spec.networks as [string, string];
  const old = { ...running(desiredStack(AGENT, releaseDoc('shop', '1.0.0', { networks: { front: { internal: false }, back: { internal: true } } }, { web: service(IMG1, { updateOrder: 'start-first', networks: ['front', 'back'] }) })), 'web') };
  // kill -9 after the alias joined one of two networks: the other one is what is left
  const half = running(v2, 'web', { networks: { [front]: ['web'], [back]: [] } });
  let p = plan({ containers: [old, half], ...infra(v2), images: [IMG1, IMG2] }, [v2], facts);
  assert.deepEqual(p.steps.map((s) => (s.kind === 'alias' ? `alias:${s.networks.join()}` : s.kind)), [`alias:${back}`]);
  // a network the container left entirely counts as missing too
  p = plan({ containers: [old, { ...half, networks: { [front]: ['web'] } }], ...infra(v2), images: [IMG1, IMG2] }, [v2], facts);
  assert.deepEqual(p.steps.map((s) => (s.kind === 'alias' ? `alias:${s.networks.join()}` : s.kind)), [`alias:${back}`]);
  // unhealthy or restarting: no alias, the old one stays
  for (const over of [{ health: 'unhealthy' as const }, { status: 'restarting' as const }]) {
    p = plan({ containers: [old, { ...half, ...over }], ...infra(v2), images: [IMG1, IMG2] }, [v2], facts);
    assert.deepEqual(p.steps, [], JSON.stringify(over));
    assert.equal(p.waiting.length, 1);
  }
  // stop-first creates with the alias: nothing else serves meanwhile
  const stopFirst = desiredStack(AGENT, svc('stop-first'));
  p = plan({ containers: [], ...infra(stopFirst), images: [IMG2] }, [stopFirst], facts);
  assert.deepEqual(p.steps.map((s) => [s.kind, (s as { deferAlias?: boolean }).deferAlias]), [['create', undefined]]);
  // start-first with nothing to replace (first deploy, or the old one is already stopped) also creates with the alias
  p = plan({ containers: [{ ...old, status: 'exited', exitCode: 0 }], ...infra(v2), images: [IMG1, IMG2] }, [v2], facts);
  assert.deepEqual(p.steps.map((s) => [s.kind, (s as { deferAlias?: boolean }).deferAlias]), [['create', undefined]]);
});

test('kill -9 between create and alias: a ready new container without its alias gets it, with or without the old one', () => {
  const v1 = desiredStack(AGENT, rel('1.0.0', IMG1, 'start-first'));
  const v2 = desiredStack(AGENT, rel('2.0.0', IMG2, 'start-first'));
  const web1spec = v1.containers.find((c) => c.service === 'web')!;
  const web2spec = v2.containers.find((c) => c.service === 'web')!;
  const db = running(v1, 'db');
  const web1 = running(v1, 'web');
  const created = running(v2, 'web', { status: 'created', health: 'none', networks: unaliased(web2spec) });
  // created, never started: start it (the alias follows once it is ready)
  let p = plan({ containers: [db, web1, created], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);
  assert.deepEqual(p.steps.map((s) => s.kind), ['start']);
  const ready = { ...created, status: 'running' as const };
  p = plan({ containers: [db, web1, ready], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);
  assert.deepEqual(p.steps.map((s) => s.kind), ['alias']);
  // the old one was removed by hand meanwhile: the alias all the same, reported as missing
  p = plan({ containers: [db, ready], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);
  assert.deepEqual(p.steps.map((s) => [s.kind, (s as { reason: string }).reason]), [['alias', 'shop/web#0 lacks its alias']]);
  // drained old one (kill -9 between its drain and its stop): drained again (a no-op), stopped and removed
  p = plan({ containers: [db, { ...web1, networks: unaliased(web1spec) }, { ...ready, networks: aliased(web2spec) }], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);
  assert.deepEqual(kinds(p.steps), [`stop:${web1.name}`, `remove:${web1.name}`]);
  assert.deepEqual((p.steps[0] as Extract<Step, { kind: 'stop' }>).drain, web1spec.spec.networks);
  // converged
  p = plan({ containers: [db, { ...ready, networks: aliased(web2spec) }], ...infra(v2), images: [IMG1, IMG2, DB] }, [v2], facts);
  assert.deepEqual(p, { steps: [], waiting: [] });
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

test('a stack no longer desired is stopped and removed, its network after its containers; its volume outlives it', () => {
  const d = desiredStack(AGENT, rel('1.0.0', IMG1));
  const cs = [running(d, 'db'), running(d, 'web')];
  let p = plan({ containers: cs, ...infra(d), images: [] }, [], facts);
  assert.deepEqual(p.steps.map((s) => s.kind).sort(), ['remove', 'remove', 'stop', 'stop']);
  assert.match(p.waiting.join(), /waits for its containers/);
  p = plan({ containers: [], ...infra(d), images: [] }, [], facts);
  assert.deepEqual(p.steps.map((s) => s.kind), ['removeNetwork']);
  // the stack is gone but its volume is still on the engine: no later pass touches it
  const { volumes } = infra(d);
  assert.deepEqual(plan({ containers: [], networks: [], volumes, images: [] }, [], facts), { steps: [], waiting: [] });
  // deployed again, the new db mounts that same volume (its data), which is not created afresh
  p = plan({ containers: [], networks: infra(d).networks, volumes, images: [IMG1, DB] }, [d], facts);
  const create = p.steps.find((s): s is Extract<Step, { kind: 'create' }> => s.kind === 'create' && s.container.service === 'db');
  assert.deepEqual(create?.container.spec.mounts, [{ type: 'volume', source: d.volumes[0], target: '/data', readOnly: false }]);
  assert.ok(!p.steps.some((s) => s.kind === 'createVolume'));
});

test('a volume survives a plan that replaces its service: the new container mounts the same volume', () => {
  const DB2 = '127.0.0.1:5000/db@sha256:' + '4'.repeat(64);
  const v1 = desiredStack(AGENT, rel('1.0.0', IMG1));
  const v2rel = rel('2.0.0', IMG1);
  v2rel.services.db = { ...v2rel.services.db!, image: DB2 };
  const v2 = desiredStack(AGENT, v2rel);
  const [oldDb, web] = [running(v1, 'db'), running(v1, 'web')];
  const images = [IMG1, DB, DB2];
  // stop-first: the old db goes first (the volume stays: no step kind removes a volume)
  let p = plan({ containers: [oldDb, web], ...infra(v1), images }, [v2], facts);
  assert.deepEqual(kinds(p.steps), [`stop:${oldDb.name}`, `remove:${oldDb.name}`]);
  // then the new db is created on the volume the old one used
  p = plan({ containers: [web], ...infra(v1), images }, [v2], facts);
  const create = p.steps.find((s): s is Extract<Step, { kind: 'create' }> => s.kind === 'create');
  assert.equal(create?.container.spec.image, DB2);
  const oldMounts = v1.containers.find((c) => c.service === 'db')!.spec.mounts;
  assert.deepEqual(create.container.spec.mounts, oldMounts);
  assert.equal(oldMounts[0]!.source, infra(v1).volumes[0]!.name);
  assert.ok(!p.steps.some((s) => s.kind === 'createVolume'), 'the volume is reused, not made anew');
});

test('replicas: surplus ones go, missing ones come, duplicates are cleaned', () => {
  const three = desiredStack(AGENT, releaseDoc('api', '1.0.0', {}, { api: service(IMG1, { replicas: 3 }) }));
  const two = desiredStack(AGENT, releaseDoc('api', '1.0.0', {}, { api: service(IMG1, { replicas: 2 }) }));
  const r = (i: number) => ({ id: `r${i}`, name: three.containers[i]!.spec.name, labels: three.containers[i]!.spec.labels, status: 'running' as const, health: 'none' as const, exitCode: null, restartCount: 0, startedAt: null, image: IMG1, networks: aliased(three.containers[i]!) });
  let p = plan({ containers: [r(0), r(1), r(2)], ...infra(two), images: [IMG1] }, [two], facts);
  assert.deepEqual(kinds(p.steps), [`stop:${three.containers[2]!.spec.name}`, `remove:${three.containers[2]!.spec.name}`]);
  p = plan({ containers: [r(0)], ...infra(three), images: [IMG1] }, [three], facts);
  assert.deepEqual(p.steps.map((s) => s.kind), ['create', 'create']);
  p = plan({ containers: [r(0), { ...r(0), id: 'dup' }, r(1), r(2)], ...infra(three), images: [IMG1] }, [three], facts);
  assert.deepEqual(p.steps.map((s) => `${s.kind}:${'id' in s ? s.id : ''}`), ['stop:dup', 'remove:dup']);
});

test('a network dropped from a stack that stays is removed once no container is attached to it', () => {
  const both = { networks: { front: { internal: false }, back: { internal: true } } };
  const v1 = desiredStack(AGENT, releaseDoc('shop', '1.0.0', both, { web: service(IMG1, { networks: ['front', 'back'] }) }));
  const v2 = desiredStack(AGENT, releaseDoc('shop', '2.0.0', { networks: { front: { internal: false } } }, { web: service(IMG2, { networks: ['front'] }) }));
  const back = v1.networks.find((x) => x.name.endsWith('_back'))!.name;
  const nets = infra(v1).networks; // both still exist on the engine
  const web1 = running(v1, 'web');
  const web2 = running(v2, 'web');
  const at = (...cs: ObservedContainer[]) => plan({ containers: cs, networks: nets, volumes: [], images: [IMG1, IMG2] }, [v2], facts);
  // the old container is still attached: it goes first (stop-first), the network waits
  let p = at(web1);
  assert.deepEqual(p.steps.map((s) => s.kind), ['stop', 'remove']);
  assert.match(p.waiting.join(), new RegExp(`network ${back} waits for its containers to go`));
  // a stopped container keeps its attachment: still waits
  p = at({ ...web1, status: 'exited', exitCode: 0 }, web2);
  assert.ok(!p.steps.some((s) => s.kind === 'removeNetwork'));
  // nothing attached any more: removed; the network the stack still uses stays
  p = at(web2);
  assert.deepEqual(p.steps, [{ kind: 'removeNetwork', id: nets.find((x) => x.name === back)!.id, name: back }]);
  assert.deepEqual(p.waiting, []);
  // a kept container attached to it by hand keeps it, and does not hold the plan up
  p = at({ ...web2, networks: { ...web2.networks, [back]: [] } });
  assert.deepEqual(p, { steps: [], waiting: [] });
});

test('a release without the privilege-widening settings keeps the config hash it always had', () => {
  const r = releaseDoc('shop', '1.0.0', { volumes: { data: {} } }, {
    web: service(IMG1, { ports: [{ target: 8080, published: 18080, protocol: 'tcp' }], volumes: [{ type: 'volume', source: 'data', target: '/data', readOnly: false }], user: '1000' }),
  });
  // computed by the agent before capAdd, networkMode and the rest existed: an upgrade recreates no container
  assert.equal(desiredStack(AGENT, r).containers[0]!.configHash, '42bc8aa3694941fc00f892e4c8924a8184b6caaadafd7d9a58d5045115fdf2fd');
  const widened = releaseDoc('shop', '1.0.0', { volumes: { data: {} } }, { web: { ...r.services.web!, capAdd: ['NET_ADMIN'] } });
  assert.notEqual(desiredStack(AGENT, widened).containers[0]!.configHash, desiredStack(AGENT, r).containers[0]!.configHash, 'each setting is part of the hash');
});

test('a service with a network mode joins none of the stack networks, has no alias, and is not drained', () => {
  const d = desiredStack(AGENT, releaseDoc('edge', '1.0.0', {}, { proxy: service(IMG1, { networkMode: 'host', capAdd: ['NET_BIND_SERVICE'], updateOrder: 'start-first' }) }));
  assert.deepEqual(d.networks, [], 'no default network when no service uses it');
  const spec = d.containers[0]!.spec;
  assert.deepEqual({ networks: spec.networks, aliases: spec.aliases, networkMode: spec.networkMode, capAdd: spec.capAdd }, { networks: [], aliases: [], networkMode: 'host', capAdd: ['NET_BIND_SERVICE'] });
  // running as the engine reports a host-network container: converged, nothing to alias
  const old = running(d, 'proxy', { networks: { host: [] } });
  assert.deepEqual(plan({ containers: [old], networks: [], volumes: [], images: [IMG1] }, [d], facts), { steps: [], waiting: [] });
  // a start-first update: the new one starts, then the old one stops without a drain on `host`
  const d2 = desiredStack(AGENT, releaseDoc('edge', '2.0.0', {}, { proxy: service(IMG2, { networkMode: 'host', updateOrder: 'start-first' }) }));
  const fresh = running(d2, 'proxy', { networks: { host: [] } });
  const p = plan({ containers: [old, fresh], networks: [], volumes: [], images: [IMG1, IMG2] }, [d2], facts);
  assert.deepEqual(kinds(p.steps), [`stop:${old.name}`, `remove:${old.name}`]);
  assert.equal((p.steps[0] as Extract<Step, { kind: 'stop' }>).drain, undefined);
});
