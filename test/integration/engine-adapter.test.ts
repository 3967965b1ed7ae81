// The agent's Docker adapter (agent/engine/docker.ts) against the real engine
// and the local registry: pulls pinned by digest with every failure mapped to
// its catalogue code, and the container lifecycle the reconciler drives —
// network, volume, create with ports/mounts/env/healthcheck/aliases, start,
// health, aliases joined later, stop, remove, events — checked the way a user
// would (HTTP to the published port, `docker inspect`, `docker logs`).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import { DockerEngine } from '../../agent/engine/docker.js';
import type { Engine, EngineEvent } from '../../agent/engine/engine.js';
import { LABEL, configHash, type ContainerSpec } from '../../agent/reconcile/model.js';
import { FerryError, type ErrorCode } from '../../shared/errors.js';
import { REGISTRY, type TestImage, buildTestImage, docker, dockerOk, requireDocker, requireRegistry, testLabel } from '../helpers/docker.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { waitFor } from '../helpers/tmp.js';

const WEB_IMAGE = 'ferry-test/adapter-web';
const WEB_FILES = { '/www/index.html': 'hello from ferry\n' };
const ZERO_DIGEST = `sha256:${'0'.repeat(64)}`;
let web: Promise<TestImage> | undefined;

/** The shared web image, pushed once per run: `127.0.0.1:5000/ferry-test/adapter-web@sha256:…`. */
async function webRef(): Promise<string> {
  web ??= buildTestImage(WEB_IMAGE, 'v1', { push: true, files: WEB_FILES });
  return (await web).ref!;
}

/** This test's owner labels: the per-test cleanup label and a unique `ferry.agent`. */
function owner(t: TestContext) {
  const [key, value] = testLabel(t).split('=') as [string, string];
  const agentId = `agt_adapter${randomBytes(4).toString('hex')}`;
  const labels = { [key]: value, [LABEL.agent]: agentId };
  return { agentId, labels, agent: { key: LABEL.agent, value: agentId }, suffix: value };
}

/** A full ContainerSpec with Ferry's labels, its config hash among them. */
function containerSpec(name: string, labels: Record<string, string>, s: Partial<ContainerSpec> & { image: string }): ContainerSpec {
  const base: Omit<ContainerSpec, 'name'> = { labels: {}, env: [], ports: [], mounts: [], networks: [], aliases: [], restart: 'no', stopGraceMs: 10_000, ...s };
  const hash = configHash(base);
  return { ...base, name, labels: { ...base.labels, ...labels, [LABEL.configHash]: hash } };
}

/** Resolves once the stream feeding `events` is live: a labeled container created now shows up in it (and is removed again). */
async function eventsLive(engine: Engine, events: EngineEvent[], image: string, o: ReturnType<typeof owner>): Promise<void> {
  const probe = await engine.createContainer(containerSpec(`ferry_${o.suffix}_probe`, o.labels, { image, command: ['true'] }));
  await waitFor('the engine event stream to be live', () => events.some((e) => e.id === probe && e.action === 'create'), 10_000, 20);
  await engine.removeContainer(probe);
}

async function failure(p: Promise<unknown>): Promise<FerryError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof FerryError, `expected a FerryError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a FerryError');
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode): Promise<FerryError> {
  const err = await failure(p);
  assert.equal(err.code, code, err.message);
  return err;
}

function listen(t: TestContext, server: Server): Promise<number> {
  t.after(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

async function freePort(): Promise<number> {
  const server = createTcpServer();
  const port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as { port: number }).port)));
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * A front for the local registry on a port of its own: with `auth`, it answers
 * 401 (Basic) unless given those credentials; with `swap`, it serves another
 * manifest for one path (what a tampering registry or mirror would do); with
 * `stall`, it never answers a manifest request.
 */
async function front(
  t: TestContext,
  opts: { auth?: { user: string; pass: string }; swap?: { from: string; to: string }; stall?: boolean },
): Promise<{ host: string; manifestRequests: string[] }> {
  const expected = opts.auth && 'Basic ' + Buffer.from(`${opts.auth.user}:${opts.auth.pass}`).toString('base64');
  const manifestRequests: string[] = [];
  const server = createServer((req, res) => {
    if (req.url?.includes('/manifests/')) {
      manifestRequests.push(`${req.method} ${req.url}`);
      if (opts.stall) return; // a registry that accepts the connection and never answers
    }
    if (expected && req.headers.authorization !== expected) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="ferry-test"', 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    }
    const path = opts.swap && req.url === opts.swap.from ? opts.swap.to : req.url;
    const headers = { ...req.headers, host: REGISTRY };
    delete headers.authorization;
    const up = httpRequest(`http://${REGISTRY}${path}`, { method: req.method, headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', (err) => res.writeHead(502).end(err.message));
    req.pipe(up);
  });
  return { host: `127.0.0.1:${await listen(t, server)}`, manifestRequests };
}

/** A fresh image under a unique name, pushed, then removed locally so only the registry holds it. */
async function registryOnlyImage(t: TestContext): Promise<{ name: string; digest: string; ref: string }> {
  const id = randomBytes(6).toString('hex');
  const name = `ferry-test/adapter-pull-${id}`;
  const img = await buildTestImage(name, 'v1', { push: true, files: { '/etc/ferry-test-id': `${id}\n` } });
  const refs = () => [img.image, `${img.repo}:v1`, img.ref!];
  const forget = async () => {
    for (const r of refs()) await docker(['rmi', r]); // only this test's unique names
  };
  await forget();
  t.after(async () => {
    await forget();
    const res = await request(`http://${REGISTRY}/v2/${name}/manifests/${img.digest}`, { method: 'DELETE' }).catch(() => undefined);
    await res?.body.dump();
  });
  return { name, digest: img.digest!, ref: img.ref! };
}

test('pullImage fetches a pinned digest from the registry, and refuses or maps every failure', async (t) => {
  if (!(await requireRegistry(t))) return;
  const engine = new DockerEngine();
  const img = await registryOnlyImage(t);

  assert.equal(await engine.hasImage(img.ref), false, 'removed locally before the pull');
  await engine.pullImage(img.ref);
  assert.equal(await engine.hasImage(img.ref), true);
  await engine.pullImage(img.ref); // again: nothing to do, still fine
  assert.match(await dockerOk(['image', 'inspect', '--format', '{{json .RepoDigests}}', img.ref]), new RegExp(img.digest));

  await rejectsWith(engine.pullImage(`${REGISTRY}/${img.name}:v1`), 'FERRY_E_POLICY_DIGEST');
  await rejectsWith(engine.pullImage(`${REGISTRY}/${img.name}`), 'FERRY_E_POLICY_DIGEST');
  await rejectsWith(engine.pullImage(`${REGISTRY}/${img.name}@sha256:abc`), 'FERRY_E_POLICY_DIGEST');
  const missing = await rejectsWith(engine.pullImage(`${REGISTRY}/${img.name}@${ZERO_DIGEST}`), 'FERRY_E_IMAGE_NOT_FOUND');
  assert.match(missing.message, new RegExp(img.name), 'names the image');
  await rejectsWith(engine.pullImage(`${REGISTRY}/ferry-test/no-such-repo-${randomBytes(4).toString('hex')}@${ZERO_DIGEST}`), 'FERRY_E_IMAGE_NOT_FOUND');
  const closed = await freePort();
  const refused = await rejectsWith(engine.pullImage(`127.0.0.1:${closed}/x@${ZERO_DIGEST}`), 'FERRY_E_REGISTRY_UNREACHABLE');
  assert.match(refused.message, new RegExp(`127\\.0\\.0\\.1:${closed}`));
  assert.equal(await engine.hasImage(`${REGISTRY}/${img.name}@${ZERO_DIGEST}`), false);

  const aborted = new AbortController();
  aborted.abort();
  await assert.rejects(engine.pullImage(img.ref, undefined, aborted.signal), { name: 'AbortError' });
});

test('pullImage sends registry credentials, and a refusal is FERRY_E_REGISTRY_AUTH', async (t) => {
  if (!(await requireRegistry(t))) return;
  const engine = new DockerEngine();
  const img = await registryOnlyImage(t);
  const auth = { username: 'ferry', password: randomBytes(8).toString('hex') };
  const { host } = await front(t, { auth: { user: auth.username, pass: auth.password } });
  const ref = `${host}/${img.name}@${img.digest}`;
  t.after(async () => void (await docker(['rmi', ref])));

  t.diagnostic((await rejectsWith(engine.pullImage(ref), 'FERRY_E_REGISTRY_AUTH')).message);
  await rejectsWith(engine.pullImage(ref, { username: auth.username, password: 'wrong' }), 'FERRY_E_REGISTRY_AUTH');
  await engine.pullImage(ref, auth);
  assert.equal(await engine.hasImage(ref), true);
});

test('a registry serving other content than the pinned digest is FERRY_E_IMAGE_DIGEST', async (t) => {
  if (!(await requireRegistry(t))) return;
  const engine = new DockerEngine();
  const img = await registryOnlyImage(t);
  await webRef();
  const other = (await web)!;
  // Asked for img's manifest, the front answers with the web image's manifest.
  const { host } = await front(t, { swap: { from: `/v2/${img.name}/manifests/${img.digest}`, to: `/v2/${WEB_IMAGE}/manifests/${other.digest}` } });
  const ref = `${host}/${img.name}@${img.digest}`;
  t.after(async () => void (await docker(['rmi', ref])));

  t.diagnostic((await rejectsWith(engine.pullImage(ref), 'FERRY_E_IMAGE_DIGEST')).message);
  assert.equal(await engine.hasImage(ref), false, 'nothing was stored under the pinned digest');
});

test('aborting a pull in flight rejects at once with the abort reason', async (t) => {
  if (!(await requireRegistry(t))) return;
  const engine = new DockerEngine();
  const { host, manifestRequests } = await front(t, { stall: true });
  const ref = `${host}/ferry-test/stalled@${ZERO_DIGEST}`;
  const ac = new AbortController();
  const pull = engine.pullImage(ref, undefined, ac.signal);
  await waitFor('the engine to ask the registry for the manifest', () => manifestRequests.length > 0, 20_000, 20);
  const t0 = Date.now();
  ac.abort();
  await assert.rejects(pull, { name: 'AbortError' });
  assert.ok(Date.now() - t0 < 2_000, `took ${Date.now() - t0} ms`);
  assert.equal(await engine.hasImage(ref), false);
});

test('networks and volumes are created idempotently, listed by label, removed tolerantly', async (t) => {
  if (!(await requireDocker(t))) return;
  const engine = new DockerEngine();
  const o = owner(t);
  const net = `ferry_${o.suffix}_net`;
  const vol = `ferry_${o.suffix}_vol`;

  const id = await engine.createNetwork(net, o.labels, false);
  assert.equal(await engine.createNetwork(net, o.labels, false), id, 'same name and labels: the same network');
  await rejectsWith(engine.createNetwork(net, { ...o.labels, other: '1' }, false), 'FERRY_E_CONFLICT');
  const internal = await engine.createNetwork(`${net}_int`, o.labels, true);
  assert.equal(await dockerOk(['network', 'inspect', '--format', '{{.Internal}} {{.Driver}}', internal]), 'true bridge');
  await engine.createVolume(vol, o.labels);
  await engine.createVolume(vol, o.labels);

  const nets = await engine.listNetworks(o.agent);
  assert.deepEqual(nets.map((n) => n.name).sort(), [net, `${net}_int`]);
  assert.deepEqual(nets.find((n) => n.id === id)?.labels, o.labels);
  assert.deepEqual(await engine.listVolumes(o.agent), [{ name: vol, labels: o.labels }]);
  assert.deepEqual(await engine.listNetworks({ key: LABEL.agent, value: 'agt_nobody' }), []);

  await engine.removeNetwork(id);
  await engine.removeNetwork(id);
  await engine.removeNetwork(`${net}_int`);
  assert.deepEqual(await engine.listNetworks(o.agent), []);
});

test('a container from a spec: ports, volume, env, command, healthcheck, aliases across networks; stop and remove', async (t) => {
  if (!(await requireRegistry(t))) return;
  const engine = new DockerEngine();
  const o = owner(t);
  const image = await webRef();
  const [netA, netB, vol] = ['a', 'b', 'data'].map((s) => `ferry_${o.suffix}_${s}`) as [string, string, string];
  await engine.createNetwork(netA, o.labels, false);
  await engine.createNetwork(netB, o.labels, false);
  await engine.createVolume(vol, o.labels);
  const port = await freePort();
  const stamp = randomBytes(4).toString('hex');

  const spec = containerSpec(`ferry_${o.suffix}_web_0`, o.labels, {
    image,
    labels: { 'com.example.team': 'payments' },
    env: ['GREETING=hello-env', `STAMP=${stamp}`],
    // sh as PID 1 with a TERM trap: a graceful stop exits 0.
    command: ['sh', '-c', 'trap "exit 0" TERM; echo "$GREETING $(pwd)" > /www/env.txt; echo "$STAMP" > /data/stamp; httpd -f -p 8080 -h /www & wait'],
    workingDir: '/tmp',
    ports: [{ target: 8080, published: port, protocol: 'tcp', hostIp: '127.0.0.1' }, { target: 9000, protocol: 'udp' }],
    mounts: [{ type: 'volume', source: vol, target: '/data', readOnly: false }],
    networks: [netA, netB],
    aliases: ['web'],
    restart: 'unless-stopped',
    healthcheck: { test: ['CMD', 'wget', '-q', '-O-', 'http://127.0.0.1:8080/'], intervalMs: 500, timeoutMs: 2_000, retries: 3 },
    stopGraceMs: 8_500,
  });
  const id = await engine.createContainer(spec);
  assert.equal(await engine.createContainer(spec), id, 'the same name and config hash: the same container');
  await rejectsWith(engine.createContainer({ ...spec, labels: { ...spec.labels, [LABEL.configHash]: 'f'.repeat(64) } }), 'FERRY_E_CONFLICT');

  let [seen] = await engine.listContainers(o.agent);
  assert.equal(seen?.id, id);
  assert.deepEqual({ status: seen?.status, health: seen?.health, exitCode: seen?.exitCode, startedAt: seen?.startedAt }, { status: 'created', health: 'none', exitCode: null, startedAt: null });
  const inspect = JSON.parse(await dockerOk(['inspect', id]))[0];
  assert.equal(inspect.HostConfig.RestartPolicy.Name, 'unless-stopped');
  assert.equal(inspect.Config.StopTimeout, 9, 'ceil(8.5 s)');
  assert.deepEqual(inspect.Config.Healthcheck, { Test: spec.healthcheck!.test, Interval: 500e6, Timeout: 2e9, Retries: 3 });
  assert.deepEqual(Object.keys(inspect.Config.ExposedPorts).sort(), ['8080/tcp', '9000/udp']);
  // A port without a published one is published on a port the engine picks, as compose does.
  assert.deepEqual(inspect.HostConfig.PortBindings, { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }], '9000/udp': [{ HostIp: '', HostPort: '' }] });
  assert.deepEqual(Object.keys(inspect.NetworkSettings.Networks).sort(), [netA, netB].sort(), 'joined both networks before start');

  await engine.startContainer(id);
  await engine.startContainer(id); // already running: fine
  seen = await waitFor('the container to become healthy', async () => (await engine.listContainers(o.agent)).find((c) => c.health === 'healthy'), 30_000, 200);
  assert.equal(seen.status, 'running');
  assert.equal(seen.name, spec.name);
  assert.equal(seen.image, image);
  for (const [k, v] of Object.entries(spec.labels)) assert.equal(seen.labels[k], v, k);
  assert.match(seen.labels[LABEL.configHash]!, /^[0-9a-f]{64}$/);
  assert.ok(seen.startedAt && Date.parse(seen.startedAt) > Date.now() - 120_000, seen.startedAt ?? 'no startedAt');

  const page = await request(`http://127.0.0.1:${port}/index.html`);
  assert.equal(page.statusCode, 200);
  assert.equal(await page.body.text(), WEB_FILES['/www/index.html']);
  const env = await request(`http://127.0.0.1:${port}/env.txt`);
  assert.equal(await env.body.text(), 'hello-env /tmp\n', 'env and working directory reached the process');

  // Another container on the second network (joined after create) finds the first by its alias and shares the volume.
  const client = containerSpec(`ferry_${o.suffix}_client_0`, o.labels, {
    image,
    command: ['sh', '-c', 'cat /data/stamp && wget -q -O- http://web:8080/index.html'],
    mounts: [{ type: 'volume', source: vol, target: '/data', readOnly: true }],
    networks: [netB],
    aliases: ['client'],
  });
  const clientId = await engine.createContainer(client);
  await engine.startContainer(clientId);
  const done = await waitFor('the client to exit', async () => (await engine.listContainers(o.agent)).find((c) => c.id === clientId && c.status === 'exited'), 30_000, 200);
  const logs = await dockerOk(['logs', clientId]);
  assert.equal(done.exitCode, 0, logs);
  assert.equal(logs, `${stamp}\n${WEB_FILES['/www/index.html']}`.trim());

  const t0 = Date.now();
  await engine.stopContainer(id, spec.stopGraceMs);
  assert.ok(Date.now() - t0 < 5_000, 'stopped on SIGTERM, not after the grace period');
  [seen] = (await engine.listContainers(o.agent)).filter((c) => c.id === id);
  assert.deepEqual({ status: seen?.status, exitCode: seen?.exitCode }, { status: 'exited', exitCode: 0 });
  await engine.stopContainer(id, spec.stopGraceMs); // not running: fine
  await engine.removeContainer(id);
  await engine.removeContainer(id); // gone: fine
  await engine.stopContainer(id, 1_000); // gone: fine
  await engine.removeContainer(clientId);
  assert.deepEqual(await engine.listContainers(o.agent), []);
  assert.deepEqual((await engine.listVolumes(o.agent)).map((v) => v.name), [vol], 'named volumes outlive their containers');
  await rejectsWith(engine.startContainer(id), 'FERRY_E_NOT_FOUND');
});

test('setAliases: a container created without its alias resolves under it only afterwards, on every network; idempotent; drained with none', async (t) => {
  if (!(await requireRegistry(t))) return;
  const engine = new DockerEngine();
  const o = owner(t);
  const image = await webRef();
  const [netA, netB] = ['a', 'b'].map((s) => `ferry_${o.suffix}_${s}`) as [string, string];
  await engine.createNetwork(netA, o.labels, false);
  await engine.createNetwork(netB, o.labels, false);
  // What the executor creates for a start-first replacement: the full spec's hash, no aliases yet.
  const spec = containerSpec(`ferry_${o.suffix}_web_0`, o.labels, { image, command: ['httpd', '-f', '-p', '8080', '-h', '/www'], networks: [netA, netB], aliases: ['web'] });
  const id = await engine.createContainer({ ...spec, aliases: [] });
  await engine.startContainer(id);
  const observedNets = async () => (await engine.listContainers(o.agent)).find((c) => c.id === id)!.networks;
  assert.deepEqual(await observedNets(), { [netA]: [], [netB]: [] }, 'attached to both, without aliases (Docker\'s short-id alias is left out)');
  /** A client on `net` fetching http://web:8080/ once (exit code and output). */
  const fetchWeb = (net: string) => docker(['run', '--rm', '--label', Object.entries(o.labels)[0]!.join('='), '--network', net, image, 'wget', '-q', '-O-', 'http://web:8080/index.html']);
  assert.notEqual((await fetchWeb(netB)).code, 0, 'the name does not resolve yet');

  await engine.setAliases(id, [netA, netB], ['web']);
  assert.deepEqual(await observedNets(), { [netA]: ['web'], [netB]: ['web'] });
  for (const net of [netA, netB]) {
    const r = await fetchWeb(net);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, WEB_FILES['/www/index.html']);
  }
  const endpoints = async () => dockerOk(['inspect', '-f', '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.EndpointID}} {{end}}', id]);
  const before = await endpoints();
  await engine.setAliases(id, [netA, netB], ['web']);
  assert.equal(await endpoints(), before, 'already aliased: left alone (no re-join)');

  // Left a network (by hand, or a crash between disconnect and connect): joined again with the aliases.
  await dockerOk(['network', 'disconnect', netB, id]);
  assert.deepEqual(Object.keys(await observedNets()), [netA]);
  await engine.setAliases(id, [netA, netB], ['web', 'www']);
  assert.deepEqual(await observedNets(), { [netA]: ['web', 'www'], [netB]: ['web', 'www'] }, 'other aliases re-join; a missing network joins');
  assert.equal((await fetchWeb(netB)).code, 0);

  // Drained: no alias any more, still attached, at the address it had (the lowest free one is the one it released).
  const ip = async () => dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${netA}").IPAddress}}`, id]);
  const ipBefore = await ip();
  await engine.setAliases(id, [netA, netB], []);
  assert.deepEqual(await observedNets(), { [netA]: [], [netB]: [] });
  assert.notEqual((await fetchWeb(netA)).code, 0, 'the name no longer resolves');
  assert.equal(await ip(), ipBefore, 'same address after the re-join');
  const direct = await docker(['run', '--rm', '--label', Object.entries(o.labels)[0]!.join('='), '--network', netA, image, 'wget', '-q', '-O-', `http://${ipBefore}:8080/index.html`]);
  assert.equal(direct.stdout, WEB_FILES['/www/index.html'], 'and still serves there');

  await rejectsWith(engine.setAliases(id, [`ferry_${o.suffix}_nonet`], ['web']), 'FERRY_E_NOT_FOUND');
  await engine.removeContainer(id);
  await rejectsWith(engine.setAliases(id, [netA], ['web']), 'FERRY_E_NOT_FOUND');
});

test('events() yields start and die for labeled containers and ends when aborted', async (t) => {
  if (!(await requireRegistry(t))) return;
  const engine = new DockerEngine();
  const o = owner(t);
  const image = await webRef();
  const net = `ferry_${o.suffix}_ev`;
  await engine.createNetwork(net, o.labels, false);

  const ac = new AbortController();
  t.after(() => ac.abort());
  const events: EngineEvent[] = [];
  const consumer = (async () => {
    for await (const e of engine.events(o.agent, ac.signal)) events.push(e);
  })();
  // An unlabeled container's events must not show up.
  const stranger = await dockerOk(['create', '--label', Object.entries(o.labels)[0]!.join('='), image, 'true']);
  await eventsLive(engine, events, image, o);

  const spec = containerSpec(`ferry_${o.suffix}_job_0`, o.labels, { image, command: ['sh', '-c', 'exit 3'], networks: [net] });
  const id = await engine.createContainer(spec);
  await dockerOk(['start', stranger]);
  await engine.startContainer(id);
  const die = await waitFor('a die event', () => events.find((e) => e.id === id && e.action === 'die'), 20_000, 50);
  assert.ok(events.some((e) => e.id === id && e.action === 'start' && e.type === 'container'), JSON.stringify(events));
  assert.equal(die.labels.exitCode, '3');
  assert.equal(die.labels[LABEL.agent], o.agentId);
  assert.equal(die.labels[LABEL.configHash], spec.labels[LABEL.configHash]);
  assert.ok(!events.some((e) => e.id === stranger), 'only labeled objects');

  ac.abort();
  await Promise.race([consumer, new Promise((_, reject) => setTimeout(() => reject(new Error('events() did not end after abort')), 5_000))]);
  const [seen] = await engine.listContainers(o.agent);
  assert.deepEqual({ status: seen?.status, exitCode: seen?.exitCode }, { status: 'exited', exitCode: 3 });
});

test('freeDiskBytes() reports the free space under the engine root', async (t) => {
  if (!(await requireDocker(t))) return;
  const free = await new DockerEngine().freeDiskBytes();
  assert.ok(typeof free === 'number' && Number.isSafeInteger(free) && free > 0, String(free));
});

test('every call against a socket nobody serves is FERRY_E_ENGINE_UNREACHABLE', async () => {
  const engine = new DockerEngine({ socketPath: '/nonexistent.sock', timeoutMs: 2_000 });
  const label = { key: LABEL.agent, value: 'agt_x' };
  const ref = `${REGISTRY}/x@${ZERO_DIGEST}`;
  const calls: (() => Promise<unknown>)[] = [
    () => engine.listContainers(label),
    () => engine.listNetworks(label),
    () => engine.hasImage(ref),
    () => engine.pullImage(ref),
    () => engine.freeDiskBytes(),
    () => engine.createVolume('ferry_x', {}),
    () => engine.startContainer('x'),
    () => engine.stopContainer('x', 1_000),
    () => engine.setAliases('x', ['ferry_x'], ['web']),
  ];
  for (const call of calls) await rejectsWith(call(), 'FERRY_E_ENGINE_UNREACHABLE');
  const it = engine.events(label, new AbortController().signal)[Symbol.asyncIterator]();
  await rejectsWith(it.next(), 'FERRY_E_ENGINE_UNREACHABLE');
});

/**
 * What the reconciler relies on, run against the real adapter and the fake
 * engine alike, so unit tests on the fake see the engine's semantics.
 */
async function contract(engine: Engine, image: string, o: ReturnType<typeof owner>): Promise<string[]> {
  const ac = new AbortController();
  const events: EngineEvent[] = [];
  const consumer = (async () => {
    for await (const e of engine.events(o.agent, ac.signal)) events.push(e);
  })();
  await eventsLive(engine, events, image, o);
  const net = `ferry_${o.suffix}_contract`;
  const vol = `ferry_${o.suffix}_contract_data`;
  const netId = await engine.createNetwork(net, o.labels, false);
  assert.equal(await engine.createNetwork(net, o.labels, false), netId);
  await rejectsWith(engine.createNetwork(net, { ...o.labels, x: 'y' }, false), 'FERRY_E_CONFLICT');
  await engine.createVolume(vol, o.labels);
  await engine.createVolume(vol, o.labels);
  await rejectsWith(engine.pullImage(image.replace(/@sha256:.*/, ':v1')), 'FERRY_E_POLICY_DIGEST');
  assert.equal(await engine.hasImage(image), true);

  const spec = containerSpec(`ferry_${o.suffix}_svc_0`, o.labels, {
    image,
    command: ['sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done'],
    mounts: [{ type: 'volume', source: vol, target: '/data', readOnly: false }],
    networks: [net],
    aliases: ['svc'],
    healthcheck: { test: ['CMD', 'false'], intervalMs: 60_000, retries: 1 },
  });
  const id = await engine.createContainer(spec);
  assert.equal(await engine.createContainer(spec), id);
  await rejectsWith(engine.createContainer({ ...spec, labels: { ...spec.labels, [LABEL.configHash]: '0'.repeat(64) } }), 'FERRY_E_CONFLICT');
  const states: string[] = [];
  const state = async () => {
    const [c] = await engine.listContainers(o.agent);
    states.push(c ? `${c.status}/${c.health}/${c.exitCode}` : 'gone');
  };
  await state();
  await engine.startContainer(id);
  await engine.startContainer(id);
  await state();
  // Aliases as the reconciler reads them: one more (a re-join), then none (a drain); each twice.
  const aliases = async () => {
    const [c] = await engine.listContainers(o.agent);
    states.push(`aliases ${JSON.stringify(Object.entries(c?.networks ?? {}).map(([n, a]) => [n === net, a]))}`);
  };
  await aliases();
  for (const want of [['svc', 'svc2'], []]) {
    await engine.setAliases(id, [net], want);
    await engine.setAliases(id, [net], want);
    await aliases();
  }
  // A network with a running container refuses removal (with only stopped ones, the engine lets it go).
  await rejectsWith(engine.removeNetwork(net), 'FERRY_E_ENGINE_FAILED');
  await engine.stopContainer(id, 5_000);
  await engine.stopContainer(id, 5_000);
  await state();
  await aliases(); // a stopped container keeps its attachments
  await engine.removeContainer(id);
  await engine.removeContainer(id);
  await engine.stopContainer(id, 1_000);
  await state();
  await rejectsWith(engine.startContainer(id), 'FERRY_E_NOT_FOUND');
  await engine.removeNetwork(net);
  await engine.removeNetwork(net);
  assert.deepEqual(await engine.listNetworks(o.agent), []);
  assert.deepEqual((await engine.listVolumes(o.agent)).map((v) => v.name), [vol]);

  await waitFor('the destroy event', () => events.some((e) => e.id === id && e.action === 'destroy'), 10_000, 20);
  ac.abort();
  await consumer;
  const actions = events.filter((e) => e.id === id && ['create', 'start', 'die', 'stop', 'destroy'].includes(e.action)).map((e) => e.action);
  return [...states, ...actions];
}

test('the fake engine keeps the real engine\'s semantics (one scenario, both engines)', async (t) => {
  if (!(await requireRegistry(t))) return;
  const image = await webRef();
  const real = await contract(new DockerEngine(), image, owner(t));
  const fake = new FakeEngine();
  fake.addImage(image);
  const o = owner(t);
  assert.deepEqual(await contract(fake, image, o), real);
  assert.deepEqual(real, ['created/none/null', 'running/starting/null', 'aliases [[true,["svc"]]]', 'aliases [[true,["svc","svc2"]]]', 'aliases [[true,[]]]', 'exited/unhealthy/0', 'aliases [[true,[]]]', 'gone', 'create', 'start', 'die', 'stop', 'destroy']);
  assert.ok(fake.calls.includes(`create ferry_${o.suffix}_svc_0`), fake.calls.join('\n'));
});
