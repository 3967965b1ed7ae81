// Secrets and configs on the agent, against the in-memory engine: a release
// whose value is missing is not started (and what ran before keeps running),
// it starts once the bank provides the value, and a changed value replaces
// the containers that use it. Also the model: anonymous volumes are each
// replica's own and keep their name across updates, and a release that uses
// none of the new settings keeps its config hash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../shared/logger.js';
import type { Release } from '../../shared/release.js';
import { Reconciler, type Target } from '../../agent/reconcile/reconciler.js';
import { LABEL, configHash, desiredStack } from '../../agent/reconcile/model.js';
import { fileProvider, listValues, setValue } from '../../agent/secrets.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { releaseDoc, service } from '../helpers/signing.js';
import { tempDir } from '../helpers/tmp.js';

const AGENT = 'agt_0123456789abcdef0123';
const IMG = `127.0.0.1:5000/app@sha256:${'1'.repeat(64)}`;
const target = (r: Release): Target => ({ stack: r.stack, version: r.version, digest: 'sha256:' + createHash('sha256').update(JSON.stringify(r)).digest('hex'), release: r });
const withSecret = (version: string) => releaseDoc('shop', version, {}, { api: service(IMG, { secrets: [{ name: 'db_password', target: '/run/secrets/db_password' }] }) });

test('a release whose secret is missing waits with FERRY_E_SECRET_MISSING, and starts once the bank provides it', async (t) => {
  const stateDir = tempDir(t);
  const engine = new FakeEngine();
  engine.addImage(IMG);
  const reports: { stack: string; state: string; code?: string; message?: string }[][] = [];
  const r = new Reconciler({ engine, agentId: AGENT, stateDir, files: fileProvider(stateDir), log: silentLogger(), bakeMs: 20, pollMs: 5, applyTimeoutMs: 2000, report: (releases) => reports.push(releases) });
  t.after(() => r.close());
  const ac = new AbortController();

  await r.apply(1, [target(withSecret('1.0.0'))], ac.signal);
  assert.equal(engine.containers.size, 0, 'not started');
  const status = reports.at(-1)![0]!;
  assert.equal(status.state, 'failed');
  assert.equal(status.code, 'FERRY_E_SECRET_MISSING');
  assert.match(status.message!, /shop@1\.0\.0 needs secret db_password \(for api\)/);

  setValue(stateDir, 'secret', 'db_password', Buffer.from('hunter2'));
  assert.equal(statSync(join(stateDir, 'secrets', 'db_password')).mode & 0o777, 0o600);
  assert.deepEqual(listValues(stateDir, 'secret'), ['db_password']);
  await r.repair(ac.signal); // the periodic pass notices the value
  const [c] = [...engine.containers.values()];
  assert.ok(c && c.status === 'running', 'started once the value is there');
  assert.equal(reports.at(-1)![0]!.state, 'applied');
  const mount = c.spec.mounts.find((m) => m.target === '/run/secrets/db_password')!;
  assert.deepEqual({ type: mount.type, readOnly: mount.readOnly }, { type: 'bind', readOnly: true });
  assert.equal(readFileSync(mount.source, 'utf8'), 'hunter2');
  assert.equal(statSync(mount.source).mode & 0o777, 0o444, "compose's default mode");
  assert.ok(!mount.source.includes(createHash('sha256').update('hunter2').digest('hex')), 'the path does not carry the value\'s digest');

  // A new value: the container is replaced, and the new one mounts the new value.
  setValue(stateDir, 'secret', 'db_password', Buffer.from('correct horse'));
  await r.repair(ac.signal);
  const now = [...engine.containers.values()].filter((x) => x.status === 'running');
  assert.equal(now.length, 1);
  assert.notEqual(now[0]!.id, c.id, 'replaced');
  assert.notEqual(now[0]!.labels[LABEL.configHash], c.labels[LABEL.configHash]);
  assert.equal(readFileSync(now[0]!.spec.mounts.find((m) => m.target === '/run/secrets/db_password')!.source, 'utf8'), 'correct horse');

  // The secret goes away while v2 needs it: v2 waits, and v1 keeps running untouched.
  const running = now[0]!.id;
  await r.apply(2, [target(releaseDoc('shop', '2.0.0', {}, { api: service(IMG, { secrets: [{ name: 'other', target: '/run/secrets/other' }] }) }))], ac.signal);
  assert.equal(engine.containers.get(running)?.status, 'running', 'the running release is left as it is');
  assert.equal(reports.at(-1)![0]!.code, 'FERRY_E_SECRET_MISSING');
});

test('a path named in the policy wins over the state directory', (t) => {
  const stateDir = tempDir(t);
  setValue(stateDir, 'config', 'app_conf', Buffer.from('from state dir'));
  const bankFile = join(tempDir(t), 'app.conf');
  const provide = fileProvider(stateDir, { secret: new Map(), config: new Map([['app_conf', bankFile]]) });
  assert.equal(provide('config', { name: 'app_conf', target: '/app_conf' }), undefined, 'the policy names a file that does not exist yet');
  writeFileSync(bankFile, 'from the bank');
  const got = provide('config', { name: 'app_conf', target: '/app_conf', mode: 0o440 })!;
  assert.equal(readFileSync(got.path, 'utf8'), 'from the bank');
  assert.equal(statSync(got.path).mode & 0o777, 0o440);
  assert.equal(got.digest, `sha256:${createHash('sha256').update('from the bank').digest('hex')}`);
});

test('anonymous volumes are per replica and keep their name across updates; a release without new settings keeps its hash', () => {
  const v1 = releaseDoc('shop', '1.0.0', {}, { db: service(IMG, { replicas: 2, volumes: [{ type: 'anonymous', source: '', target: '/data', readOnly: false }] }) });
  const v2 = releaseDoc('shop', '2.0.0', {}, { db: service(IMG, { replicas: 2, volumes: [{ type: 'anonymous', source: '', target: '/data', readOnly: false }], environment: { NEW: '1' } }) });
  const [a, b] = [desiredStack(AGENT, v1), desiredStack(AGENT, v2)];
  const vol = (s: typeof a, i: number) => s.containers[i]!.spec.mounts[0]!.source;
  assert.notEqual(vol(a, 0), vol(a, 1), 'each replica has its own volume');
  assert.equal(vol(a, 0), vol(b, 0), 'an update keeps replica 0\'s volume');
  assert.equal(vol(a, 1), vol(b, 1));
  assert.deepEqual(a.volumes.sort(), [vol(a, 0), vol(a, 1)].sort(), 'the planner creates them (owned, labelled)');
  assert.equal(a.containers[0]!.configHash, a.containers[1]!.configHash, 'replicas share one config hash');

  // The hash of a plain service is computed from exactly the fields it always had.
  const plain = desiredStack(AGENT, releaseDoc('shop', '1.0.0', {}, { web: service(IMG) })).containers[0]!;
  const { name: _n, ...spec } = plain.spec;
  assert.deepEqual(Object.keys(spec).sort(), ['aliases', 'env', 'image', 'labels', 'mounts', 'networks', 'ports', 'restart', 'stopGraceMs']);
  assert.equal(plain.configHash, configHash(spec));
});
