// The relay inside real agent processes, with a real hub and Docker engine:
// kill -9 mid-layer resumes from the stored offset (bytes counted by a TCP
// proxy in front of the bank's registry), a bank registry refusing the
// credentials or full fails the release before it starts, and a release
// deploys from the bank's registry (its standby, the primary being down)
// with the vendor's registry stopped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAgentConfig } from '../../agent/config.js';
import { parsePolicy } from '../../agent/policy.js';
import { RELAY_DIR, Relay } from '../../agent/relay/relay.js';
import { relaySource } from '../../agent/relay/source.js';
import { UPLOADS_FILE } from '../../agent/relay/transfer.js';
import { CRASH_HOOK_ARGS } from '../helpers/crash-hook.js';
import { generateKeyPair } from '../../shared/keys.js';
import { silentLogger } from '../../shared/logger.js';
import { buildTestImage, docker, requireDocker } from '../helpers/docker.js';
import { containerImage, exitOf, ownedContainers } from '../helpers/faults.js';
import { fleet } from '../helpers/fleet.js';
import { run } from '../helpers/proc.js';
import { blobsOf, countingProxy, has, htpasswdLine, layeredImage, noise, pushTo, requireRegistryBinary, startRegistry } from '../helpers/registries.js';
import { releaseDoc, service } from '../helpers/signing.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const PREFIX = 'vendor/acme';
const MB = 1024 * 1024;
const CHUNK = 256 * 1024;

const bankYaml = (o: { primary: string; standbys?: string[]; user?: string; password?: string; extra?: string }) =>
  `bankRegistry:\n  primary:\n    url: ${o.primary}\n${o.user ? `    username: ${o.user}\n    password: ${o.password}\n` : ''}${o.standbys?.length ? `  standbys:\n${o.standbys.map((s) => `    - url: ${s}\n`).join('')}` : ''}  prefix: ${PREFIX}\n  source: direct\n  chunkKb: ${CHUNK / 1024}\n  catchUpMs: 500\n${o.extra ?? ''}`;

const web = (image: string) => ({ web: service(image, { stopGracePeriodMs: 1000 }) });


test('kill -9 of the agent mid-layer, fetching and then uploading: each resumes from the offset stored, at most one chunk moves again, and the release runs from the bank', async (t) => {
  if (!(await requireDocker(t)) || !requireRegistryBinary(t)) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const bank = await startRegistry(t, { name: 'bank' });
  const source = await countingProxy(t, vendor.port); // the source as the agent reaches it (the hub's place), counted
  const wire = await countingProxy(t, bank.port); // the bank registry as the agent reaches it, counted
  source.downLimit = 6 * MB; // slow enough that the kill lands mid-layer
  const img = await layeredImage('ferry-test/relay-kill', 'v1', [{ '/payload': noise(16 * MB) }]);
  const ref = (await pushTo(vendor, img, 'relay/kill', 'v1')).replace(vendor.host, source.host);
  const digest = ref.slice(ref.indexOf('@') + 1);
  const blobs = await blobsOf(vendor, 'relay/kill', digest);
  const blobBytes = blobs.reduce((n, b) => n + b.size, 0);
  const big = blobs.reduce((x, b) => (b.size > x.size ? b : x));
  const f = await fleet(t, { agentConfig: () => bankYaml({ primary: `http://${wire.host}` }), policy: `directRegistries: ["${source.host}"]\n` });
  const a = f.agents[0]!;

  // 1. Killed while the 16 MiB layer comes from the source, its upload following chunk by chunk: the spool keeps
  // what arrived, the upload session what was acknowledged. The kill lands right after the 24th upload chunk was
  // acknowledged and stored (the crash hook), so between two upload chunks — a moment chosen by timing would, on a
  // loaded machine, now and then cut a chunk, and Debian's registry voids a session whose request was cut (README) —
  // while the slower source is still mid-layer.
  a.daemon.child.kill('SIGKILL');
  await exitOf(a.daemon, 10_000);
  a.start({ FERRY_TEST_CRASH_AT: 'relay-chunk:24' }, CRASH_HOOK_ARGS);
  let killedAt = 0;
  a.daemon.child.once('exit', () => (killedAt = source.down));
  await f.publish('kill', '1.0.0', web(ref));
  await f.deploy(a, 'kill', '1.0.0');
  assert.equal(await exitOf(a.daemon, 60_000), 'SIGKILL');
  const part = join(a.stateDir, RELAY_DIR, 'spool', `${big.digest.slice(7)}.part`);
  const spooled = statSync(part).size;
  assert.ok(spooled > 4 * MB && spooled < big.size, `spooled ${spooled} of ${big.size} when killed`);
  const during = JSON.parse(readFileSync(join(a.stateDir, RELAY_DIR, UPLOADS_FILE), 'utf8')) as Record<string, { offset: number }>;
  t.diagnostic(`killed after ${killedAt} bytes from the source; ${spooled} bytes spooled; upload offsets stored ${JSON.stringify(Object.values(during).map((u) => u.offset))}`);

  // 2. Restarted, and killed again right after the 8th upload chunk of this run was acknowledged and stored.
  source.downLimit = null;
  a.start({ FERRY_TEST_CRASH_AT: 'relay-chunk:8' }, CRASH_HOOK_ARGS);
  assert.equal(await exitOf(a.daemon, 60_000), 'SIGKILL');
  const stored = JSON.parse(readFileSync(join(a.stateDir, RELAY_DIR, UPLOADS_FILE), 'utf8')) as Record<string, { offset: number }>;
  const offsets = Object.values(stored).map((u) => u.offset);
  assert.equal(offsets.length, 1, `one upload in flight: ${JSON.stringify(stored)}`);
  const first = Math.max(...Object.values(during).map((u) => u.offset));
  assert.ok(offsets[0]! > first && offsets[0]! < big.size, `stored offset ${offsets[0]} is mid-layer, past the first kill (${first})`);
  // The spool kept what arrived and is never behind the upload (whether the source finished before the 8th chunk is
  // a race the test does not decide: the third run resumes the spool with a Range request either way, which the
  // byte counts below check).
  const spooled2 = statSync(part).size;
  assert.ok(spooled2 >= offsets[0]! && spooled2 > spooled && spooled2 <= big.size, `spooled ${spooled2} of ${big.size} after the second kill (${spooled} after the first, upload at ${offsets[0]})`);

  // 3. Restarted: everything completes and runs from the bank.
  a.start();
  await f.waitRelease(a, 'kill', '1.0.0', 'applied');
  assert.equal(await has(bank, `${PREFIX}/relay/kill`, 'manifests', digest), digest);
  assert.equal(await containerImage(a.id), `${wire.host}/${PREFIX}/relay/kill@${digest}`, 'the container runs from the bank registry by the same digest');
  // Each side: the blobs once, at most one chunk again, and the requests' headers (and, to the bank, the engine's pull requests).
  const fetchedAgain = source.down - blobBytes;
  const sentAgain = wire.up - blobBytes;
  t.diagnostic(`from the source ${source.down} bytes, to the bank ${wire.up} bytes, for ${blobBytes} bytes of blobs: ${fetchedAgain} and ${sentAgain} more (chunk ${CHUNK})`);
  assert.ok(source.down >= blobBytes && wire.up >= blobBytes, 'every blob byte moved');
  assert.ok(fetchedAgain <= CHUNK + 96 * 1024, `at most one chunk fetched again: ${fetchedAgain} bytes over the blobs`);
  assert.ok(sentAgain <= CHUNK + 96 * 1024, `at most one chunk sent again: ${sentAgain} bytes over the blobs`);
  const status = JSON.parse((await run('agent', ['status', '--state-dir', a.stateDir, '--json'])).stdout) as { relay: { state: string; target: string }[] };
  assert.deepEqual(status.relay.map((i) => [i.target, i.state]), [[`${wire.host}/${PREFIX}/relay/kill@${digest}`, 'verified']]);
});

test('a bank registry refusing the credentials, or full, fails the release before it starts, with the code in its status', async (t) => {
  if (!(await requireDocker(t)) || !requireRegistryBinary(t)) return;
  const line = htpasswdLine('ferry', 'right-password');
  if (!line) return void t.skip('no bcrypt tool: install apache2-utils (htpasswd) or perl with libxcrypt');
  const vendor = await startRegistry(t, { name: 'vendor' });
  const locked = await startRegistry(t, { name: 'locked', htpasswd: `${line}\n` });
  const full = await startRegistry(t, { name: 'full', tmpfsBytes: 2 * MB });
  const img = await layeredImage('ferry-test/relay-full', 'v1', [{ '/payload': noise(4 * MB) }]);
  const ref = await pushTo(vendor, img, 'relay/full', 'v1');
  const configs = [bankYaml({ primary: locked.url, user: 'ferry', password: 'wrong-password' }), bankYaml({ primary: full.url })];
  const f = await fleet(t, { agents: 2, agentConfig: (i) => configs[i]!, policy: `directRegistries: ["${vendor.host}"]\n` });
  await f.publish('full', '1.0.0', web(ref));
  for (const a of f.agents) await f.deploy(a, 'full', '1.0.0');
  const [auth, quota] = [await f.waitRelease(f.agents[0]!, 'full', '1.0.0', 'failed'), await f.waitRelease(f.agents[1]!, 'full', '1.0.0', 'failed')];
  assert.equal(auth.code, 'FERRY_E_REGISTRY_AUTH');
  assert.equal(quota.code, 'FERRY_E_REGISTRY_QUOTA', JSON.stringify(quota));
  for (const a of f.agents) {
    assert.deepEqual(await ownedContainers(a.id), [], 'nothing started');
    const st = await run('agent', ['status', '--state-dir', a.stateDir]);
    assert.match(st.stdout, /image .*relay\/full@sha256:.* failed FERRY_E_REGISTRY_(AUTH|QUOTA)/);
    assert.match(st.stdout, /running .*full@- \(1\.0\.0 failed: FERRY_E_REGISTRY_(AUTH|QUOTA)/);
  }
});

test('with the vendor registry stopped and the primary down, a pre-staged release deploys from the standby by the same digest', async (t) => {
  if (!(await requireDocker(t)) || !requireRegistryBinary(t)) return;
  const vendor = await startRegistry(t, { name: 'vendor' });
  const primary = await startRegistry(t, { name: 'primary' });
  const standby = await startRegistry(t, { name: 'standby' });
  const img = await buildTestImage('ferry-test/relay-run', 'v1', { cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'], files: { '/www/index.html': 'from the bank\n' } });
  const ref = await pushTo(vendor, img.image, 'relay/run', 'v1');
  const digest = ref.slice(ref.indexOf('@') + 1);
  const yaml = bankYaml({ primary: primary.url, standbys: [standby.url] });

  // Pre-staging, as the agent does on a `prestage` message: the same relay, the same config.
  const dir = tempDir(t);
  const cfgFile = join(dir, 'agent.yaml');
  writeFileSync(cfgFile, yaml);
  const cfg = loadAgentConfig({ stateDir: join(dir, 'state'), configFile: cfgFile });
  const sources = relaySource({ cfg, policy: parsePolicy(`directRegistries: ["${vendor.host}"]\n`, 'test'), hubUrl: 'http://127.0.0.1:1', agentId: 'agt_prestage', key: generateKeyPair() });
  const relay = new Relay({ bank: cfg.bankRegistry!, stateDir: cfg.stateDir, log: silentLogger(), source: sources.source });
  await relay.ensure([releaseDoc('run', '1.0.0', {}, web(ref))]);
  relay.close();
  sources.close();
  assert.equal(await has(standby, `${PREFIX}/relay/run`, 'manifests', digest), digest);

  await vendor.stop();
  await primary.stop();
  const f = await fleet(t, { agentConfig: () => yaml, policy: `directRegistries: ["${vendor.host}"]\n` });
  const a = f.agents[0]!;
  await f.publish('run', '1.0.0', web(ref));
  await f.deploy(a, 'run', '1.0.0');
  await f.waitRelease(a, 'run', '1.0.0', 'applied', 120_000);
  assert.equal(await containerImage(a.id), `${standby.host}/${PREFIX}/relay/run@${digest}`, 'runs from the first registry that answers');
  const [c] = await ownedContainers(a.id);
  const page = await docker(['exec', c!.id, 'wget', '-q', '-O-', 'http://127.0.0.1:8080/']);
  assert.equal(page.stdout.trim(), 'from the bank');
  const st = JSON.parse((await run('agent', ['status', '--state-dir', a.stateDir, '--json'])).stdout) as { relay: { registries: { registry: string; state: string }[] }[] };
  assert.deepEqual(st.relay[0]!.registries.map((r) => [r.registry, r.state]), [[primary.host, 'behind'], [standby.host, 'present']]);
  // The primary comes back: the agent catches it up from the standby (the vendor is still stopped).
  await primary.start();
  await waitFor('primary caught up', () => has(primary, `${PREFIX}/relay/run`, 'manifests', digest), 30_000, 200);
  await waitFor('status says so', async () => {
    const s = JSON.parse((await run('agent', ['status', '--state-dir', a.stateDir, '--json'])).stdout) as { relay: { registries: { state: string }[] }[] };
    return s.relay[0]!.registries.every((r) => r.state === 'present');
  }, 15_000, 300);
});
