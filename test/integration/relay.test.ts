// The relay's copy engine against real registries (Debian's docker-registry
// as vendor, bank primary and bank standby, started here), with images built
// locally: a multi-layer image and its next version, a multi-arch index, a
// blob altered on the way, a standby down during the copy, retention, and the
// hub's origin contract (signed requests) played by a double that follows it.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { loadAgentConfig } from '../../agent/config.js';
import { parsePolicy } from '../../agent/policy.js';
import { Relay } from '../../agent/relay/relay.js';
import { relaySource } from '../../agent/relay/source.js';
import { REGISTRY_PATH, checkSignedRequest, hostOf } from '../../shared/auth.js';
import { FerryError } from '../../shared/errors.js';
import { generateKeyPair, type KeyPair } from '../../shared/keys.js';
import { silentLogger } from '../../shared/logger.js';
import type { Release } from '../../shared/release.js';
import { buildTestImage, requireDocker } from '../helpers/docker.js';
import { blobsOf, countingProxy, has, layeredImage, noise, pushIndex, pushTo, requireRegistryBinary, startRegistry, type TestRegistry } from '../helpers/registries.js';
import { releaseDoc, service } from '../helpers/signing.js';
import { tempDir } from '../helpers/tmp.js';

const PREFIX = 'vendor/acme';
const MB = 1024 * 1024;

async function ready(t: TestContext): Promise<boolean> {
  return (await requireDocker(t)) && requireRegistryBinary(t);
}

interface RelayRig {
  relay: Relay;
  stateDir: string;
}

/** A Relay as the agent builds it, from a config file naming the bank's registries, fetching directly from `direct`. */
function relayFor(t: TestContext, bank: { primary: TestRegistry; standbys?: TestRegistry[]; extra?: string }, direct: string[], o: { hub?: string; key?: KeyPair; source?: 'hub' | 'direct'; stateDir?: string } = {}): RelayRig {
  const stateDir = o.stateDir ?? tempDir(t, 'ferry-relay-');
  const file = join(stateDir, '..', `agent-${Math.random().toString(36).slice(2)}.yaml`);
  const standbys = (bank.standbys ?? []).map((s) => `    - url: ${s.url}\n`).join('');
  writeFileSync(file, `bankRegistry:\n  primary:\n    url: ${bank.primary.url}\n${standbys ? `  standbys:\n${standbys}` : ''}  prefix: ${PREFIX}\n  source: ${o.source ?? 'direct'}\n  chunkKb: 256\n  catchUpMs: 100\n${bank.extra ?? ''}`);
  const cfg = loadAgentConfig({ stateDir, configFile: file });
  const policy = parsePolicy(`directRegistries: ${JSON.stringify(direct)}\n`, 'test-policy');
  const sources = relaySource({ cfg, policy, hubUrl: o.hub ?? 'http://127.0.0.1:1', agentId: 'agt_relaytest', key: o.key ?? generateKeyPair() });
  const relay = new Relay({ bank: cfg.bankRegistry!, stateDir, log: silentLogger(), source: sources.source, retry: { attempts: 3, baseMs: 50, capMs: 200 } });
  t.after(() => (relay.close(), sources.close()));
  return { relay, stateDir };
}

const release = (stack: string, version: string, images: Record<string, string>): Release => releaseDoc(stack, version, {}, Object.fromEntries(Object.entries(images).map(([n, i]) => [n, service(i)])));

async function failure(p: Promise<unknown>): Promise<FerryError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof FerryError, String(err));
    return err;
  }
  assert.fail('expected a FerryError');
}

/** Nine 1 MiB layers (v1), and v2 with the same nine plus a tenth: 90% shared. */
async function versions(): Promise<{ v1: string; v2: string }> {
  const shared = Array.from({ length: 9 }, (_, i) => ({ [`/data/shared-${i}`]: noise(MB) }));
  const v1 = await layeredImage('ferry-test/relay-app', 'v1', shared);
  const v2 = await layeredImage('ferry-test/relay-app', 'v2', [...shared, { '/data/new': noise(MB) }]);
  return { v1, v2 };
}

test('a multi-layer image lands in the bank under the prefix with its tag; the next version moves only its new layer', async (t) => {
  if (!(await ready(t))) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const bank = await startRegistry(t, { name: 'bank' });
  const wire = await countingProxy(t, vendor.port); // the source as the agent reaches it, counted
  const { v1, v2 } = await versions();
  const ref1 = (await pushTo(vendor, v1, 'relay/app', 'v1')).replace(vendor.host, wire.host);
  const ref2 = (await pushTo(vendor, v2, 'relay/app', 'v2')).replace(vendor.host, wire.host);
  const { relay } = relayFor(t, { primary: bank }, [wire.host]);

  const pull = await relay.ensure([release('shop', '1.0.0', { web: ref1 })]);
  const d1 = ref1.slice(ref1.indexOf('@') + 1);
  assert.equal(pull[ref1], `${bank.host}/${PREFIX}/relay/app@${d1}`);
  assert.equal(await has(bank, `${PREFIX}/relay/app`, 'manifests', d1), d1);
  assert.equal(await has(bank, `${PREFIX}/relay/app`, 'manifests', 'shop-1.0.0'), d1, 'tagged with the release');
  const blobs1 = await blobsOf(vendor, 'relay/app', d1);
  assert.ok(blobs1.length >= 11, `config + base + 9 layers: ${blobs1.length}`);
  for (const b of blobs1) assert.ok(await has(bank, `${PREFIX}/relay/app`, 'blobs', b.digest), `blob ${b.digest} in the bank`);
  const status = relay.images().find((i) => i.image === ref1)!;
  assert.equal(status.state, 'verified');
  assert.equal(status.bytesDone, status.bytesTotal);
  const full = blobs1.reduce((n, b) => n + b.size, 0);
  assert.ok(wire.down >= full, `the first copy read the whole image (${wire.down} >= ${full})`);

  wire.reset();
  await relay.ensure([release('shop', '1.1.0', { web: ref2 })]);
  const d2 = ref2.slice(ref2.indexOf('@') + 1);
  const blobs2 = await blobsOf(vendor, 'relay/app', d2);
  const fresh = blobs2.filter((b) => !blobs1.some((x) => x.digest === b.digest));
  const freshBytes = fresh.reduce((n, b) => n + b.size, 0);
  assert.equal(fresh.length, 2, 'v2 differs by its new layer and its config');
  t.diagnostic(`v2: ${wire.down} bytes from the vendor for ${freshBytes} new of ${blobs2.reduce((n, b) => n + b.size, 0)}`);
  assert.ok(wire.down >= freshBytes && wire.down < freshBytes + 128 * 1024, `only the new layer moved: ${wire.down} bytes read, new blobs ${freshBytes}`);
  assert.equal(await has(bank, `${PREFIX}/relay/app`, 'manifests', 'shop-1.1.0'), d2);

  // Again: everything is present, nothing is read but manifests' HEADs.
  wire.reset();
  await relay.ensure([release('shop', '1.1.0', { web: ref2 })]);
  assert.equal(relay.images().find((i) => i.image === ref2)!.state, 'present');
  assert.equal(wire.down, 0, 'a present image reads nothing from the source');
});

test('a multi-arch index is copied with all its children; a second repository mounts shared blobs instead of uploading them', async (t) => {
  if (!(await ready(t))) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const bank = await startRegistry(t, { name: 'bank' });
  const amd = await layeredImage('ferry-test/relay-arch', 'amd64', [{ '/arch': Buffer.from('amd64\n') }]);
  const arm = await layeredImage('ferry-test/relay-arch', 'arm64', [{ '/arch': Buffer.from('arm64\n') }]);
  const index = await pushIndex(vendor, 'relay/multi', 'v1', amd, arm);
  const other = await pushTo(vendor, amd, 'relay/other', 'v1'); // same layers, another repository
  const { relay } = relayFor(t, { primary: bank }, [vendor.host]);
  await relay.ensure([release('multi', '1.0.0', { app: index.ref })]);
  const digest = index.ref.slice(index.ref.indexOf('@') + 1);
  assert.equal(await has(bank, `${PREFIX}/relay/multi`, 'manifests', digest), digest);
  for (const c of index.children) {
    assert.equal(await has(bank, `${PREFIX}/relay/multi`, 'manifests', c), c, `child ${c}`);
    for (const b of await blobsOf(vendor, 'relay/multi', c)) assert.ok(await has(bank, `${PREFIX}/relay/multi`, 'blobs', b.digest));
  }
  const sent = relay.stats.sentBytes;
  await relay.ensure([release('other', '1.0.0', { app: other })]);
  assert.ok(relay.stats.mountedBlobs >= 2, `blobs mounted from ${PREFIX}/relay/multi: ${relay.stats.mountedBlobs}`);
  assert.equal(relay.stats.sentBytes, sent, 'nothing uploaded for the second repository');
  assert.ok(await has(bank, `${PREFIX}/relay/other`, 'manifests', 'other-1.0.0'));
});

test('a blob altered on the way is refused with FERRY_E_REGISTRY_DIGEST and never reaches the bank', async (t) => {
  if (!(await ready(t))) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const bank = await startRegistry(t, { name: 'bank' });
  const img = await layeredImage('ferry-test/relay-tamper', 'v1', [{ '/payload': noise(MB) }]);
  const ref = await pushTo(vendor, img, 'relay/tamper', 'v1');
  const digest = ref.slice(ref.indexOf('@') + 1);
  const layers = await blobsOf(vendor, 'relay/tamper', digest);
  const target = layers.at(-1)!; // the 1 MiB layer
  // A man in the middle: passes everything, but flips one byte in the middle of that layer.
  const mitm = createServer((req, res) => {
    const up = httpRequest({ host: '127.0.0.1', port: vendor.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      if (!req.url?.endsWith(target.digest) || req.method !== 'GET') return void r.pipe(res);
      let at = 0;
      const mid = Math.floor(target.size / 2);
      r.on('data', (c: Buffer) => {
        if (at <= mid && at + c.length > mid) c[mid - at]! ^= 0xff;
        at += c.length;
        res.write(c);
      });
      r.on('end', () => res.end());
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => mitm.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => (mitm.closeAllConnections(), mitm.close(() => r()))));
  const host = `127.0.0.1:${(mitm.address() as { port: number }).port}`;
  const { relay } = relayFor(t, { primary: bank }, [host]);
  const err = await failure(relay.ensure([release('tamper', '1.0.0', { app: ref.replace(vendor.host, host) })]));
  assert.equal(err.code, 'FERRY_E_REGISTRY_DIGEST');
  assert.match(err.message, new RegExp(target.digest));
  assert.equal(await has(bank, `${PREFIX}/relay/tamper`, 'blobs', target.digest), null, 'the altered blob is not in the bank');
  assert.equal(await has(bank, `${PREFIX}/relay/tamper`, 'manifests', digest), null, 'nor the manifest');
  const st = relay.images()[0]!;
  assert.equal(st.state, 'failed');
  assert.equal(st.code, 'FERRY_E_REGISTRY_DIGEST');
});

test('a standby down during the copy is caught up later; the primary serves meanwhile', async (t) => {
  if (!(await ready(t))) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const primary = await startRegistry(t, { name: 'primary' });
  const standby = await startRegistry(t, { name: 'standby' });
  const img = await buildTestImage('ferry-test/relay-standby', 'v1', { files: { '/x': 'standby\n' } });
  const ref = await pushTo(vendor, img.image, 'relay/standby', 'v1');
  const digest = ref.slice(ref.indexOf('@') + 1);
  await standby.stop();
  const { relay } = relayFor(t, { primary, standbys: [standby] }, [vendor.host]);
  const pull = await relay.ensure([release('sb', '1.0.0', { app: ref })]);
  assert.equal(pull[ref], `${primary.host}/${PREFIX}/relay/standby@${digest}`);
  const st = relay.images()[0]!;
  assert.deepEqual(st.registries.map((r) => [r.registry, r.state, r.code ?? null]), [[primary.host, 'present', null], [standby.host, 'behind', 'FERRY_E_REGISTRY_UNREACHABLE']]);
  await standby.start();
  assert.equal(await relay.catchUp(), 1);
  assert.equal(await has(standby, `${PREFIX}/relay/standby`, 'manifests', digest), digest);
  assert.equal(await has(standby, `${PREFIX}/relay/standby`, 'manifests', 'sb-1.0.0'), digest, 'with its tag');
  assert.deepEqual(relay.images()[0]!.registries.map((r) => r.state), ['present', 'present']);
});

test('retention keeps the newest versions and what is in use, and touches nothing outside the prefix', async (t) => {
  if (!(await ready(t))) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const bank = await startRegistry(t, { name: 'bank' });
  const mk = async (tag: string) => pushTo(vendor, (await buildTestImage('ferry-test/relay-keep', tag, { files: { '/v': tag } })).image, 'relay/keep', tag);
  const [a, b, c, d] = [await mk('a'), await mk('b'), await mk('c'), await mk('d')];
  const common = await mk('common'); // used by every version
  const own = (await buildTestImage('ferry-test/relay-keep', 'own', { files: { '/v': 'bank' } })).image;
  const bankOwn = await pushTo(bank, own, 'bank-team/app', 'v1'); // the bank's own image, outside the prefix
  const { relay } = relayFor(t, { primary: bank, extra: '  retention:\n    keep: 2\n' }, [vendor.host]);
  const rels = [release('keep', '1.0.0', { app: a, side: common }), release('keep', '1.1.0', { app: b, side: common }), release('keep', '1.2.0', { app: c, side: common }), release('keep', '2.0.0', { app: d, side: common })];
  for (const r of rels) await relay.ensure([r]);
  const dig = (ref: string) => ref.slice(ref.indexOf('@') + 1);
  // 1.0.0 still runs somewhere (in use): kept; 1.1.0 is neither new nor in use: its own image goes.
  const removed = await relay.retain([rels[0]!]);
  assert.deepEqual(removed, [`${PREFIX}/relay/keep@${dig(b)}`]);
  assert.equal(await has(bank, `${PREFIX}/relay/keep`, 'manifests', dig(b)), null, '1.1.0 removed');
  for (const ref of [a, c, d, common]) assert.equal(await has(bank, `${PREFIX}/relay/keep`, 'manifests', dig(ref)), dig(ref), `${ref} kept`);
  assert.equal(await has(bank, 'bank-team/app', 'manifests', dig(bankOwn)), dig(bankOwn), 'the bank\'s own image is untouched');
  assert.deepEqual(await relay.retain([rels[0]!]), [], 'nothing more to remove');
});

test('through the hub\'s origin: every request is signed by the agent key, verified as the contract says, Range resumes', async (t) => {
  if (!(await ready(t))) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const bank = await startRegistry(t, { name: 'bank' });
  const img = await layeredImage('ferry-test/relay-hub', 'v1', [{ '/payload': noise(MB) }]);
  const ref = await pushTo(vendor, img, 'relay/hub', 'v1');
  const key = generateKeyPair();
  const seen = new Set<string>();
  const served: string[] = [];
  let refusedOnce = false;
  // A double of the hub endpoint (the lead builds the real one): checks the proof, serves from the vendor.
  const origin = createServer((req, res) => {
    try {
      const url = req.url ?? '';
      checkSignedRequest(req.headers, { method: req.method ?? '', path: url, host: hostOf(`http://${req.headers.host}`), now: Date.now(), publicKey: (id) => (id === 'agt_relaytest' ? key.publicKey : null), firstUse: (a, n) => !seen.has(a + n) && !!seen.add(a + n) });
      const m = new RegExp(`^${REGISTRY_PATH}/v2/${vendor.host}/(.+)/(manifests|blobs)/(sha256:[0-9a-f]{64})$`).exec(url);
      if (!m) return void res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'FERRY_E_NOT_FOUND', message: 'not in any release of this tenant' } }));
      // Cut the first blob download half way, as a dropped connection would.
      served.push(`${req.method} ${m[2]} ${req.headers.range ?? ''}`);
      const up = httpRequest({ host: '127.0.0.1', port: vendor.port, method: req.method, path: `/v2/${m[1]}/${m[2]}/${m[3]}`, headers: { accept: req.headers.accept ?? '*/*', ...(req.headers.range ? { range: req.headers.range } : {}) } }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        if (m[2] === 'blobs' && !refusedOnce && Number(r.headers['content-length']) > MB / 2) {
          refusedOnce = true;
          let n = 0;
          return void r.on('data', (c: Buffer) => {
            n += c.length;
            res.write(c);
            if (n > MB / 2) res.destroy();
          });
        }
        r.pipe(res);
      });
      up.end();
    } catch (err) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: (err as FerryError).code, message: (err as Error).message } }));
    }
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => (origin.closeAllConnections(), origin.close(() => r()))));
  const hub = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;
  const { relay } = relayFor(t, { primary: bank }, [], { hub, key, source: 'hub' });
  await relay.ensure([release('hub', '1.0.0', { app: ref })]);
  const digest = ref.slice(ref.indexOf('@') + 1);
  assert.equal(await has(bank, `${PREFIX}/relay/hub`, 'manifests', digest), digest);
  assert.ok(served.some((s) => /^GET blobs bytes=\d+-$/.test(s)), `the cut download resumed with a Range request: ${served.join(', ')}`);

  // Another agent key: refused with the hub's code, nothing copied.
  const { relay: stranger } = relayFor(t, { primary: bank }, [], { hub, key: generateKeyPair(), source: 'hub' });
  const img2 = await pushTo(vendor, (await buildTestImage('ferry-test/relay-hub', 'x', { files: { '/x': 'x' } })).image, 'relay/hub2', 'v1');
  const err = await failure(stranger.ensure([release('hub2', '1.0.0', { app: img2 })]));
  assert.equal(err.code, 'FERRY_E_AGENT_AUTH_INVALID');
});

test('a pinned digest the source does not hold fails with FERRY_E_IMAGE_NOT_FOUND and stores nothing', async (t) => {
  if (!(await ready(t))) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const bank = await startRegistry(t, { name: 'bank' });
  const img = await buildTestImage('ferry-test/relay-pin', 'v1', { files: { '/x': 'pin\n' } });
  const ref = await pushTo(vendor, img.image, 'relay/pin', 'v1');
  const wrong = `${ref.slice(0, ref.indexOf('@'))}@sha256:${createHash('sha256').update('another').digest('hex')}`;
  const { relay } = relayFor(t, { primary: bank }, [vendor.host]);
  const err = await failure(relay.ensure([release('pin', '1.0.0', { app: wrong })]));
  assert.equal(err.code, 'FERRY_E_IMAGE_NOT_FOUND');
  assert.deepEqual(await (await fetch(`${bank.url}/v2/_catalog`)).json(), { repositories: [] });
});
