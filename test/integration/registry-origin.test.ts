// The hub's registry origin (hub/registry/) with real agents whose only
// source of images is the hub (bankRegistry.source: hub, no direct
// registries allowed): a release lands in the bank's registry and runs from
// there; a rollout pre-stages the agents of later waves; the origin serves
// only the tenant's own digests to requests signed by a live agent, once per
// nonce; a vendor registry serving other bytes never gets them into the bank.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { loadIdentity, loadKey } from '../../agent/state.js';
import { REGISTRY_PATH, signRequest } from '../../shared/auth.js';
import { canonicalJson, type Release } from '../../shared/release.js';
import { bytesText } from '../../cli/image-commands.js';
import { buildTestImage, docker, requireDocker } from '../helpers/docker.js';
import { containerImage, ownedContainers } from '../helpers/faults.js';
import { fleet, type FleetAgent } from '../helpers/fleet.js';
import { run } from '../helpers/proc.js';
import { blobsOf, has, layeredImage, noise, pushTo, requireRegistryBinary, startRegistry, type TestRegistry } from '../helpers/registries.js';
import { service } from '../helpers/signing.js';
import { waitFor } from '../helpers/tmp.js';

const PREFIX = 'vendor/acme';
const MB = 1024 * 1024;
const bankYaml = (bank: TestRegistry) => `bankRegistry:\n  primary:\n    url: ${bank.url}\n  prefix: ${PREFIX}\n  source: hub\n  chunkKb: 256\n`;
const web = (image: string) => ({ web: service(image, { stopGracePeriodMs: 1000 }) });
const digestOf = (ref: string) => ref.slice(ref.indexOf('@') + 1);
const repoOf = (ref: string) => ref.slice(ref.indexOf('/') + 1, ref.indexOf('@'));

/** A GET (or HEAD) of the origin signed with the agent's own key, as agent/relay/source.ts signs it. */
function signedGet(hubUrl: string, a: FleetAgent, path: string, o: { method?: 'GET' | 'HEAD'; headers?: Record<string, string>; nonce?: string } = {}) {
  const url = new URL(`${REGISTRY_PATH}/v2/${path}`, hubUrl);
  const key = loadKey(a.stateDir);
  const signed = signRequest({ method: o.method ?? 'GET', path: url.pathname, host: url.host, agentId: loadIdentity(a.stateDir).agentId, time: Date.now(), nonce: o.nonce }, key.secretKey);
  return { url, headers: { ...signed, ...o.headers } };
}

async function get(url: URL, headers: Record<string, string>, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(url, { method, headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, json: () => (JSON.parse(body.toString()) as { error: { code: string; message: string } }).error };
}


test('through the hub only: a release lands in the bank registry and runs from it; a rollout pre-stages the later wave; images status and the audit log say what moved', async (t) => {
  if (!(await requireDocker(t)) || !requireRegistryBinary(t)) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const banks = [await startRegistry(t, { name: 'bank-0' }), await startRegistry(t, { name: 'bank-1' })];
  const img = await layeredImage('ferry-test/origin-run', 'v1', [{ '/payload': noise(3 * MB) }, { '/www/index.html': Buffer.from('through the hub\n') }]);
  const ref = await pushTo(vendor, img, 'origin/run', 'v1');
  const digest = digestOf(ref);
  // No directRegistries in the policy: the vendor's registry is reachable for the agents only through the hub.
  const f = await fleet(t, { agents: 2, agentConfig: (i) => bankYaml(banks[i]!), policy: '' });
  const [a0, a1] = f.agents as [FleetAgent, FleetAgent];
  await f.publish('run', '1.0.0', web(ref));

  // One wave of one agent, baking for an hour: the second agent's wave is far off, its images come now.
  const created = await f.th.api('POST', '/v1/rollouts', { stack: 'run', version: '1.0.0', selector: 'tenant=bank-r', waves: '1,100%', bakeMs: 3_600_000 });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.id as string;
  await f.waitRelease(a0, 'run', '1.0.0', 'applied', 120_000);
  assert.equal(await containerImage(a0.id), `${banks[0]!.host}/${PREFIX}/origin/run@${digest}`, 'runs from the bank registry, by the signed digest');
  const [c] = await ownedContainers(a0.id);
  assert.equal((await docker(['exec', c!.id, 'wget', '-q', '-O-', 'http://127.0.0.1:8080/'])).stdout.trim(), 'through the hub');

  // Pre-staged: the second agent's bank has the image while its target is still pending and nothing runs there.
  await waitFor('pre-staged in the second bank', () => has(banks[1]!, `${PREFIX}/origin/run`, 'manifests', digest), 60_000, 200);
  const view = (await f.th.api('GET', `/v1/rollouts/${id}`)).body as { targets?: { agentId: string; state: string }[]; waves: { agents: { id: string; state: string }[] }[] };
  assert.deepEqual(await ownedContainers(a1.id), [], 'nothing runs before its wave');
  assert.ok(JSON.stringify(view).includes(a1.id));

  // What the agents report, through the API and the CLI.
  let last: unknown;
  const images = await waitFor('both agents report verified', async () => {
    const r = await f.th.api('GET', `/v1/rollouts/${id}/images`);
    last = r.body;
    const done = r.body.agents.every((a: { images: { state: string }[] }) => a.images.length === 1 && ['verified', 'present'].includes(a.images[0]!.state));
    return done ? r.body : null;
  }, 20_000, 200).catch((err: Error) => assert.fail(`${err.message}: ${JSON.stringify(last)}`));
  assert.equal(images.release, 'run@1.0.0');
  for (const a of images.agents) {
    assert.equal(a.images[0].image, ref);
    assert.equal(a.images[0].target, `${banks[a.agentId === a0.id ? 0 : 1]!.host}/${PREFIX}/origin/run@${digest}`);
  }
  // The pre-staged agent copied it (the first wave's agent got it with its directive).
  const pre = images.agents.find((a: { agentId: string }) => a.agentId === a1.id).images[0];
  assert.equal(pre.state, 'verified');
  assert.equal(pre.bytesDone, pre.bytesTotal);
  assert.ok(pre.bytesTotal > 3 * MB, JSON.stringify(pre));
  const cli = await run('ferry', ['images', 'status', '--rollout', id, '--hub', f.th.url, '--token', f.th.adminToken]);
  assert.equal(cli.code, 0, cli.stderr);
  const size = bytesText(pre.bytesTotal).replace('.', '\\.');
  assert.match(cli.stdout, new RegExp(`${a1.id} +origin/run@${digest.slice(7, 19)} +verified +${size} / ${size} +\\d+(\\.\\d)? [KM]iB/s`));
  assert.match(cli.stderr, /2\/2 agents reporting; (1 present, 1 verified|2 verified); .* \(100%\)/);
  const one = await run('ferry', ['images', 'status', '--agent', a0.id, '--hub', f.th.url, '--token', f.th.adminToken, '--json']);
  assert.match(JSON.parse(one.stdout).agents[0].images[0].state, /^(verified|present)$/);

  // The audit log: one entry per agent and image, with the releases it belongs to and the bytes served.
  await f.th.hub.registry.flush();
  const log = (await f.th.api('GET', '/v1/audit/bank-r/entries?limit=5000')).body.entries as { action: string; actor: { id: string }; target: { id: string }; details: Record<string, string | number> }[];
  const served = log.filter((e) => e.action === 'image.served');
  assert.deepEqual(served.map((e) => e.actor.id).sort(), [a0.id, a1.id].sort(), JSON.stringify(served));
  for (const e of served) {
    assert.equal(e.target.id, ref.slice(0, ref.indexOf('@')));
    assert.equal(e.details.releases, 'run@1.0.0');
    assert.ok(Number(e.details.blobs) >= 3 && Number(e.details.bytes) > 3 * MB, JSON.stringify(e.details));
  }
  const hubLog = (await f.th.api('GET', '/v1/audit/_hub/entries?limit=5000')).body.entries as { action: string }[];
  assert.equal(hubLog.filter((e) => e.action === 'image.served').length, 0, "served images are the tenant's record");
});

test('the origin serves a digest only to a live agent of a tenant that may have it, once per signed request', async (t) => {
  if (!(await requireDocker(t)) || !requireRegistryBinary(t)) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const bank = await startRegistry(t, { name: 'bank' });
  const mine = await pushTo(vendor, (await buildTestImage('ferry-test/origin-mine', 'v1', { files: { '/mine': 'mine\n' } })).image, 'origin/mine', 'v1');
  const theirs = await pushTo(vendor, (await buildTestImage('ferry-test/origin-theirs', 'v1', { files: { '/theirs': 'theirs\n' } })).image, 'origin/theirs', 'v1');
  const f = await fleet(t, { agentConfig: () => bankYaml(bank), policy: '' });
  const a = f.agents[0]!;
  await f.publish('mine', '1.0.0', web(mine));
  assert.equal((await f.th.api('POST', '/v1/releases/mine/1.0.0/tenants', { tenants: ['bank-r'] })).status, 200);
  // Another tenant's release (offered to bank-s only), by an admin: bank-r's agent may not have it.
  assert.equal((await f.th.api('POST', '/v1/tenants', { name: 'bank-s' })).status, 201);
  const doc: Release = { _type: 'release', stack: 'theirs', version: '1.0.0', createdAt: Date.now(), services: web(theirs), networks: {}, volumes: {} };
  assert.equal((await f.th.api('POST', '/v1/releases', { payload: canonicalJson(doc).toString('base64') })).status, 201);
  assert.equal((await f.th.api('POST', '/v1/releases/theirs/1.0.0/tenants', { tenants: ['bank-s'] })).status, 200);

  const manifest = `${repoOfFull(mine)}/manifests/${digestOf(mine)}`;
  const ok = signedGet(f.th.url, a, manifest);
  const m = await get(ok.url, ok.headers);
  assert.equal(m.status, 200, m.body.toString());
  assert.equal(m.headers['docker-content-digest'], digestOf(mine));
  const blobs = await blobsOf(vendor, repoOf(mine), digestOf(mine));
  assert.deepEqual((JSON.parse(m.body.toString()) as { layers: { digest: string }[] }).layers.map((l) => l.digest), blobs.slice(1).map((b) => b.digest));

  // The same signed request again: a replay.
  const replay = await get(ok.url, ok.headers);
  assert.equal(replay.status, 401);
  assert.equal(replay.json().code, 'FERRY_E_AGENT_AUTH_REPLAYED');
  // Unsigned, and signed for another path.
  const bare = await get(ok.url, {});
  assert.equal(bare.status, 401);
  assert.equal(bare.json().code, 'FERRY_E_AGENT_AUTH_MISSING');
  const other = signedGet(f.th.url, a, `${repoOfFull(mine)}/manifests/sha256:${'1'.repeat(64)}`);
  const moved = await get(ok.url, other.headers);
  assert.equal(moved.status, 401);
  assert.equal(moved.json().code, 'FERRY_E_AGENT_AUTH_INVALID');

  // A blob with a range (a resume), and a HEAD.
  const layer = blobs[1]!;
  const part = signedGet(f.th.url, a, `${repoOfFull(mine)}/blobs/${layer.digest}`, { headers: { range: 'bytes=10-' } });
  const r = await get(part.url, part.headers);
  assert.equal(r.status, 206);
  assert.equal(r.body.length, layer.size - 10);
  const head = signedGet(f.th.url, a, `${repoOfFull(mine)}/blobs/${layer.digest}`, { method: 'HEAD' });
  const h = await get(head.url, head.headers, 'HEAD');
  assert.equal(h.status, 200);
  assert.equal(Number(h.headers['content-length']), layer.size);

  // Not the tenant's: another tenant's release, a digest in no release, a blob of their image under my name.
  const theirBlobs = await blobsOf(vendor, repoOf(theirs), digestOf(theirs));
  for (const path of [
    `${repoOfFull(theirs)}/manifests/${digestOf(theirs)}`,
    `${repoOfFull(theirs)}/blobs/${theirBlobs[1]!.digest}`,
    `${repoOfFull(mine)}/manifests/sha256:${'2'.repeat(64)}`,
    `${repoOfFull(mine)}/blobs/${theirBlobs[1]!.digest}`,
  ]) {
    const s = signedGet(f.th.url, a, path);
    const res = await get(s.url, s.headers);
    assert.equal(res.status, 404, path);
    // As if it did not exist: the same answer as for a digest in no release at all.
    const [name, , digest] = path.split(/\/(manifests|blobs)\//);
    assert.deepEqual(res.json(), { code: 'FERRY_E_NOT_FOUND', message: `No such resource: ${name}@${digest}`, hint: 'Check the name or id; list what exists with the matching `ls` command.' }, path);
  }

  // Revoked: nothing more.
  assert.equal((await f.th.api('POST', `/v1/agents/${a.id}/revoke`)).status, 200);
  const late = signedGet(f.th.url, a, manifest);
  const gone = await get(late.url, late.headers);
  assert.equal(gone.status, 401);
  assert.equal(gone.json().code, 'FERRY_E_AGENT_REVOKED');
});

test('a vendor registry serving other bytes under a pinned digest: the agent refuses them, the bank never gets them, the running version stays', async (t) => {
  if (!(await requireDocker(t)) || !requireRegistryBinary(t)) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const bank = await startRegistry(t, { name: 'bank' });
  const good = await pushTo(vendor, (await buildTestImage('ferry-test/origin-good', 'v1', { cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'], files: { '/www/index.html': 'good\n' } })).image, 'origin/app', 'v1');
  const img2 = await layeredImage('ferry-test/origin-bad', 'v2', [{ '/payload': noise(MB) }]);
  const bad = await pushTo(vendor, img2, 'origin/app', 'v2');
  const f = await fleet(t, { agentConfig: () => bankYaml(bank), policy: '' });
  const a = f.agents[0]!;
  await f.publish('app', '1.0.0', web(good));
  await f.deploy(a, 'app', '1.0.0');
  await f.waitRelease(a, 'app', '1.0.0', 'applied', 120_000);

  // The 1 MiB layer of 2.0.0, rewritten in the vendor registry's storage: same size, other bytes.
  const layer = (await blobsOf(vendor, 'origin/app', digestOf(bad))).reduce((x, b) => (b.size > x.size ? b : x));
  const file = blobFile(vendor, layer.digest);
  assert.equal(statSync(file).size, layer.size);
  const bytes = readFileSync(file);
  bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
  writeFileSync(file, bytes);

  await f.publish('app', '2.0.0', web(bad));
  await f.deploy(a, 'app', '2.0.0');
  const failed = await f.waitRelease(a, 'app', '2.0.0', 'failed', 120_000);
  assert.equal(failed.code, 'FERRY_E_REGISTRY_DIGEST', JSON.stringify(failed));
  assert.equal(await has(bank, `${PREFIX}/origin/app`, 'blobs', layer.digest), null, 'the altered layer is not in the bank');
  assert.equal(await has(bank, `${PREFIX}/origin/app`, 'manifests', digestOf(bad)), null, 'nor the manifest naming it');
  assert.equal(await containerImage(a.id), `${bank.host}/${PREFIX}/origin/app@${digestOf(good)}`, 'the previous version keeps running');
  const st = await f.th.api('GET', `/v1/agents/${a.id}/images`);
  const failedImage = st.body.agents[0].images.find((i: { image: string }) => i.image === bad);
  assert.equal(failedImage.state, 'failed');
  assert.equal(failedImage.code, 'FERRY_E_REGISTRY_DIGEST');
  assert.ok(f.th.logs.some((l) => l.code === 'FERRY_E_REGISTRY_DIGEST' && l.digest === layer.digest), 'the hub logs what it cut off');
});

/** `127.0.0.1:port/origin/app@sha256:…` -> `127.0.0.1:port/origin/app` (the name as the origin's path carries it). */
function repoOfFull(ref: string): string {
  return ref.slice(0, ref.indexOf('@'));
}

/** Where Debian's docker-registry keeps a blob's bytes. */
function blobFile(reg: TestRegistry, digest: string): string {
  const hex = digest.slice(7);
  const dir = join(reg.dir, 'data', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex);
  assert.deepEqual(readdirSync(dir), ['data']);
  return join(dir, 'data');
}
