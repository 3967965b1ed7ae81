// Pure parts of the relay: the signed-request statement the hub's registry
// origin verifies, manifests as descriptors, release tags and image names,
// the bank registry's config, the bandwidth cap's schedule, and the config
// hash staying the pinned image's whichever registry an image runs from.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAgentConfig } from '../../agent/config.js';
import { Throttle } from '../../agent/relay/pace.js';
import { pinnedImage, releaseTag } from '../../agent/relay/relay.js';
import { desiredStack } from '../../agent/reconcile/model.js';
import { AUTH_CLOCK_SKEW_MS, AUTH_HEADERS, checkSignedRequest, requestStatement, signRequest } from '../../shared/auth.js';
import { FerryError } from '../../shared/errors.js';
import { generateKeyPair } from '../../shared/keys.js';
import { parseManifest, registryErrors } from '../../shared/oci.js';
import { IMAGE, releaseDoc } from '../helpers/signing.js';

const kp = generateKeyPair();
const NOW = 1_800_000_000_000;
const PATH = '/agent/v1/registry/v2/vendor.example:5000/payments/api/blobs/sha256:' + 'b'.repeat(64);

function check(headers: Record<string, string>, over: Partial<Parameters<typeof checkSignedRequest>[1]> = {}, seen = new Set<string>()) {
  return checkSignedRequest(headers, {
    method: 'GET',
    path: PATH,
    host: 'hub.example.com:7443',
    now: NOW,
    publicKey: (id) => (id === 'agt_1' ? kp.publicKey : null),
    firstUse: (a, n) => !seen.has(a + n) && !!seen.add(a + n),
    ...over,
  });
}

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FerryError, String(err));
    return err.code;
  }
  assert.fail('expected a FerryError');
};

test('the request statement is fixed text over method, path, host, agent, nonce and time', () => {
  const s = Buffer.from(requestStatement({ method: 'head', path: '/p?q=1', host: 'Hub.Example.com:7443', agentId: 'agt_1', nonce: 'n', time: 5 })).toString();
  assert.equal(s, 'ferry-agent-request/v1\nmethod=HEAD\npath=/p?q=1\nhost=hub.example.com:7443\nagent=agt_1\nnonce=n\ntime=5\n');
});

test('a signed request verifies once; replay, another path, method, host, key, clock or a missing header is refused with its code', () => {
  const h = signRequest({ method: 'GET', path: PATH, host: 'hub.example.com:7443', agentId: 'agt_1', time: NOW - 1000 }, kp.secretKey);
  assert.deepEqual(Object.keys(h).sort(), Object.values(AUTH_HEADERS).sort());
  const seen = new Set<string>();
  assert.equal(check(h, {}, seen), 'agt_1');
  assert.equal(code(() => check(h, {}, seen)), 'FERRY_E_AGENT_AUTH_REPLAYED');
  assert.equal(code(() => check(h, { path: PATH.replace('blobs', 'manifests') })), 'FERRY_E_AGENT_AUTH_INVALID');
  assert.equal(code(() => check(h, { method: 'HEAD' })), 'FERRY_E_AGENT_AUTH_INVALID');
  assert.equal(code(() => check(h, { host: 'other.example.com' })), 'FERRY_E_AGENT_AUTH_INVALID');
  assert.equal(code(() => check(h, { publicKey: () => generateKeyPair().publicKey })), 'FERRY_E_AGENT_AUTH_INVALID');
  assert.equal(code(() => check(h, { publicKey: () => null })), 'FERRY_E_AGENT_UNKNOWN');
  assert.equal(code(() => check(h, { now: NOW + AUTH_CLOCK_SKEW_MS + 1 })), 'FERRY_E_AGENT_AUTH_CLOCK');
  const { [AUTH_HEADERS.nonce]: _n, ...noNonce } = h;
  assert.equal(code(() => check(noNonce)), 'FERRY_E_AGENT_AUTH_MISSING');
  assert.equal(code(() => check({ ...h, [AUTH_HEADERS.nonce]: 'short' })), 'FERRY_E_AGENT_AUTH_INVALID');
  assert.notEqual(signRequest({ method: 'GET', path: PATH, host: 'h', agentId: 'agt_1', time: NOW }, kp.secretKey)[AUTH_HEADERS.nonce], h[AUTH_HEADERS.nonce], 'a fresh nonce per request');
});

test('manifests parse into descriptors: images, indexes, foreign layers; schema 1 and junk are refused', () => {
  const d = (c: string, size = 3) => ({ mediaType: 'x', digest: `sha256:${c.repeat(64)}`, size });
  const img = parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config: d('a'), layers: [d('b'), { ...d('c'), urls: ['https://x'] }] })));
  assert.equal(img.kind, 'image');
  assert.deepEqual(img.kind === 'image' && img.layers.map((l) => !!l.urls), [false, true]);
  const idx = parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [d('d'), d('e')] })), 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(idx.kind === 'index' && idx.children.map((c) => c.digest[7]), ['d', 'e']);
  assert.equal(idx.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.equal(code(() => parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 1, fsLayers: [] })))), 'FERRY_E_REGISTRY_FAILED');
  assert.equal(code(() => parseManifest(Buffer.from('nope'))), 'FERRY_E_REGISTRY_FAILED');
  assert.equal(code(() => parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: 'md5:1', size: 1 }, layers: [] })))), 'FERRY_E_REGISTRY_FAILED');
  assert.deepEqual(registryErrors(Buffer.from('{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":"no space left on device"}]}')), [{ code: 'UNKNOWN', message: 'unknown error: no space left on device' }]);
});

test('images are named under the prefix by their repository, and tagged <stack>-<version>', () => {
  const digest = 'sha256:' + 'a'.repeat(64);
  assert.deepEqual(pinnedImage(`registry.vendor.com:5000/payments/api@${digest}`), { ref: `registry.vendor.com:5000/payments/api@${digest}`, name: 'registry.vendor.com:5000/payments/api', registry: 'registry.vendor.com:5000', repository: 'payments/api', digest });
  assert.equal(pinnedImage(`nginx@${digest}`).repository, 'library/nginx');
  assert.equal(pinnedImage(`docker.io/acme/web@${digest}`).repository, 'acme/web');
  assert.equal(releaseTag('payments', '2.4.0-rc.1+build.7'), 'payments-2.4.0-rc.1_build.7');
});

test('the bank registry config: defaults, units, and refusals by name', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const load = (yaml: string) => {
    writeFileSync(join(dir, 'a.yaml'), yaml);
    return loadAgentConfig({ stateDir: dir, configFile: join(dir, 'a.yaml') }, {});
  };
  const b = load('bankRegistry:\n  primary: { url: "https://reg.bank.internal", username: ferry, password: s3cret }\n  standbys: [{ url: "https://reg2.bank.internal:5000" }]\n  prefix: vendor/acme\n  bandwidthMbps: 80\n  retention: { keep: 3 }\n').bankRegistry!;
  assert.equal(b.primary.host, 'reg.bank.internal');
  assert.equal(b.standbys[0]!.host, 'reg2.bank.internal:5000');
  assert.deepEqual([b.standbyMode, b.source, b.parallel, b.chunkBytes, b.bytesPerSecond, b.keepVersions], ['push', 'hub', 4, 8 * 1024 * 1024, 10_000_000, 3]);
  assert.equal(b.proxy.httpsProxy, undefined, 'no proxy for the bank registry unless configured');
  assert.equal(load('logLevel: info\n').bankRegistry, null);
  const refused = (yaml: string, re: RegExp) => assert.throws(() => load(yaml), (e: FerryError) => e.code === 'FERRY_E_CONFIG_INVALID' && re.test(e.message));
  refused('bankRegistry:\n  primary: { url: "https://r/path" }\n  prefix: v\n', /bankRegistry\.primary\.url/);
  refused('bankRegistry:\n  primary: { url: "ftp://r" }\n  prefix: v\n', /bankRegistry\.primary\.url/);
  refused('bankRegistry:\n  primary: { url: "https://r" }\n  prefix: Vendor/ACME\n', /bankRegistry\.prefix/);
  refused('bankRegistry:\n  primary: { url: "https://r" }\n  standbys: [{ url: "https://r" }]\n  prefix: v\n', /different registries/);
  refused('bankRegistry:\n  primary: { url: "https://r" }\n  prefix: v\n  mirror: true\n', /bankRegistry/);
});

test('the bandwidth cap schedules bytes on one clock shared by all streams', async () => {
  let now = 0;
  const th = new Throttle(1000, () => now);
  // within the 250 ms burst take() does not wait; the schedule is what a cap is
  await th.take(250);
  assert.equal((th as unknown as { next: number }).next, 250, '250 bytes at 1000 B/s end at 250 ms');
  await th.take(0);
  now = 1000;
  await th.take(100);
  assert.equal((th as unknown as { next: number }).next, 1100, 'idle time is not saved up beyond now');
  assert.equal(await new Throttle(null).take(1e9), undefined, 'no cap: never waits');
});

test('running an image from the bank keeps the config hash of the pinned image', () => {
  const rel = releaseDoc('payments', '1.0.0');
  const plain = desiredStack('agt_1', rel).containers[0]!;
  const moved = desiredStack('agt_1', rel, undefined, { [IMAGE]: `reg.bank.internal/vendor/acme/ferry/web@sha256:${'a'.repeat(64)}` }).containers[0]!;
  assert.equal(moved.configHash, plain.configHash);
  assert.equal(moved.spec.name, plain.spec.name);
  assert.equal(moved.spec.image, `reg.bank.internal/vendor/acme/ferry/web@sha256:${'a'.repeat(64)}`);
  assert.equal(plain.spec.image, IMAGE);
});
