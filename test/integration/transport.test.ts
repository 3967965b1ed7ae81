// The agent's way out of a locked-down network: through an authenticating
// HTTP CONNECT proxy, honouring no_proxy, to a hub with a private certificate.
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { enrollmentToken } from '../helpers/agents.js';
import { startHub, type TestHub } from '../helpers/hub.js';
import { daemon, run } from '../helpers/proc.js';
import { startProxy } from '../helpers/proxy.js';
import { makePki } from '../helpers/tls.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

/** Environment with no proxy variables inherited from the machine. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'NODE_EXTRA_CA_CERTS']) delete env[k];
  return { ...env, ...extra };
}

async function connected(th: TestHub, agentId: string) {
  await waitFor('agent connected', async () => (await th.api('GET', `/v1/agents/${agentId}`)).body.status === 'connected', 15_000);
}

test('through an authenticating CONNECT proxy (credentials in the URL), and around it with no_proxy', async (t) => {
  const th = await startHub(t);
  const proxy = await startProxy(t, { user: 'svc-ferry', pass: 'p@ss:word' });
  const hubPort = new URL(th.url).port;
  const env = cleanEnv({ http_proxy: proxy.url, https_proxy: proxy.url });
  const dir = join(tempDir(t), 'state');
  const r = await run('agent', ['enroll', '--hub', th.url, '--token', await enrollmentToken(th, 'bank-a'), '--state-dir', dir, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const { agentId } = JSON.parse(r.stdout);
  assert.ok(proxy.tunnels.some((x) => x.target === `127.0.0.1:${hubPort}` && x.authorised), 'enrollment went through the proxy');

  const before = proxy.tunnels.length;
  const agent = daemon(t, 'agent', ['run', '--state-dir', dir], { env });
  await connected(th, agentId);
  assert.ok(proxy.tunnels.length >= before + 2, 'challenge and WebSocket both tunnelled');
  assert.ok(proxy.tunnels.every((x) => x.authorised));
  await agent.stop();

  // no_proxy exempts the hub: the proxy sees nothing more
  const seen = proxy.tunnels.length;
  const direct = daemon(t, 'agent', ['run', '--state-dir', dir], { env: { ...env, no_proxy: 'localhost,127.0.0.1' } });
  await direct.waitFor(/hub welcomed agent/);
  assert.equal(proxy.tunnels.length, seen);
  await direct.stop();
});

test('wrong proxy credentials: a clear unreachable error, and the config file overrides the environment', async (t) => {
  const th = await startHub(t);
  const proxy = await startProxy(t, { user: 'svc', pass: 'right' });
  const wrong = proxy.url.replace('right', 'wrong');
  const dir = join(tempDir(t), 'state');
  const token = await enrollmentToken(th, 'bank-a');
  const r = await run('agent', ['enroll', '--hub', th.url, '--token', token, '--state-dir', dir], { env: cleanEnv({ http_proxy: wrong }) });
  assert.equal(r.code, 6);
  assert.match(r.stderr, /FERRY_E_HUB_UNREACHABLE/);
  assert.match(r.stderr, /proxy/i);
  assert.ok(proxy.tunnels.some((x) => !x.authorised));

  // env says the wrong proxy; the agent's config file names the right one
  const cfg = join(tempDir(t), 'agent.yaml');
  writeFileSync(cfg, `proxy:\n  http: ${proxy.url}\nreconnect:\n  baseMs: 100\n  capMs: 1000\n`);
  const ok = await run('agent', ['enroll', '--hub', th.url, '--token', token, '--state-dir', dir, '--config', cfg], { env: cleanEnv({ http_proxy: wrong }) });
  assert.equal(ok.code, 0, ok.stderr);

  // a config file with an unknown key is refused by name
  writeFileSync(cfg, 'proxy:\n  htps: http://x\n');
  const bad = await run('agent', ['run', '--state-dir', dir, '--config', cfg], { env: cleanEnv() });
  assert.equal(bad.code, 7);
  assert.match(bad.stderr, /FERRY_E_CONFIG_INVALID/);
  assert.match(bad.stderr, /htps/);
});

test('a hub with a private CA: refused until the CA is given by --ca-file or NODE_EXTRA_CA_CERTS; works through the proxy too', async (t) => {
  const pki = makePki(tempDir(t));
  const th = await startHub(t, { tls: { cert: pki.cert, key: pki.key }, clientCa: readFileSync(pki.caFile) });
  assert.match(th.url, /^https:/);
  const dir = join(tempDir(t), 'state');
  const token = await enrollmentToken(th, 'bank-a');
  const untrusted = await run('agent', ['enroll', '--hub', th.url, '--token', token, '--state-dir', dir], { env: cleanEnv() });
  assert.equal(untrusted.code, 6);
  assert.match(untrusted.stderr, /FERRY_E_HUB_TLS/);

  const r = await run('agent', ['enroll', '--hub', th.url, '--token', token, '--state-dir', dir, '--ca-file', pki.caFile, '--json'], { env: cleanEnv() });
  assert.equal(r.code, 0, r.stderr);
  const { agentId } = JSON.parse(r.stdout);

  const viaEnv = daemon(t, 'agent', ['run', '--state-dir', dir], { env: cleanEnv({ NODE_EXTRA_CA_CERTS: pki.caFile }) });
  await connected(th, agentId);
  await viaEnv.stop();

  const proxy = await startProxy(t);
  const viaProxy = daemon(t, 'agent', ['run', '--state-dir', dir, '--ca-file', pki.caFile], { env: cleanEnv({ https_proxy: proxy.url }) });
  await viaProxy.waitFor(/hub welcomed agent/);
  assert.ok(proxy.tunnels.length >= 2);
  await viaProxy.stop();
});
