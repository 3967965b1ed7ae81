// ferry-hub as a real process: init, serve, probes, a kill -9 and restart
// that loses nothing, and agents that come back on their own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { daemon, run } from '../helpers/proc.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function api(url: string, token: string | null, method = 'GET', body?: unknown) {
  const res = await request(url, {
    method: method as 'GET',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
}

test('init once, refuse to init twice or serve an empty dir, refuse a bad listen address', async (t) => {
  const dir = join(tempDir(t), 'hub');
  const init = await run('hub', ['init', '--data-dir', dir]);
  assert.equal(init.code, 0, init.stderr);
  assert.match(init.stdout.trim(), /^ferry_api_[A-Za-z0-9_-]{43}$/);
  const again = await run('hub', ['init', '--data-dir', dir]);
  assert.equal(again.code, 5);
  assert.match(again.stderr, /FERRY_E_HUB_ALREADY_INITIALISED/);
  const empty = await run('hub', ['serve', '--data-dir', join(dir, 'nope')]);
  assert.notEqual(empty.code, 0);
  assert.match(empty.stderr, /FERRY_E_HUB_NOT_INITIALISED/);
  assert.match(empty.stderr, /ferry-hub init/);
  const badListen = await run('hub', ['serve', '--data-dir', dir, '--listen', 'nonsense']);
  assert.equal(badListen.code, 7);
  assert.match(badListen.stderr, /FERRY_E_CONFIG_INVALID/);
  const envTwin = await run('hub', ['serve'], { env: { FERRY_HUB_DATA_DIR: dir, FERRY_HUB_LISTEN: 'also nonsense' } });
  assert.equal(envTwin.code, 7, 'FERRY_HUB_LISTEN is read');
});

test('a hub killed with -9 restarts with everything it had, and agents reconnect by themselves', async (t) => {
  const base = tempDir(t);
  const dataDir = join(base, 'hub');
  const token = (await run('hub', ['init', '--data-dir', dataDir])).stdout.trim();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const serveArgs = ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--heartbeat-ms', '1000'];
  let hub = daemon(t, 'hub', serveArgs);
  await hub.waitFor(/listening on/);
  assert.equal((await api(`${url}/livez`, null)).status, 200);
  assert.equal((await api(`${url}/readyz`, null)).body.status, 'ready');

  assert.equal((await api(`${url}/v1/tenants`, token, 'POST', { name: 'bank-a' })).status, 201);
  const enr = (await api(`${url}/v1/tenants/bank-a/enrollment-tokens`, token, 'POST', {})).body.token;
  const stateDir = join(base, 'agent');
  const cfg = join(base, 'agent.yaml');
  writeFileSync(cfg, 'reconnect:\n  baseMs: 100\n  capMs: 1000\n');
  const e = await run('agent', ['enroll', '--hub', url, '--token', enr, '--state-dir', stateDir, '--json']);
  assert.equal(e.code, 0, e.stderr);
  const { agentId } = JSON.parse(e.stdout);
  const agent = daemon(t, 'agent', ['run', '--state-dir', stateDir, '--config', cfg]);
  const isConnected = async () => (await api(`${url}/v1/agents/${agentId}`, token)).body?.status === 'connected';
  await waitFor('agent connected', isConnected);

  hub.child.kill('SIGKILL');
  await hub.exited;
  await agent.waitFor(/disconnected from hub/);
  hub = daemon(t, 'hub', serveArgs);
  await hub.waitFor(/listening on/);
  await waitFor('agent reconnected after restart', isConnected, 15_000);
  const tenants = (await api(`${url}/v1/tenants`, token)).body.tenants;
  assert.deepEqual(tenants.map((x: { name: string }) => x.name), ['bank-a']);
  // the old enrollment token stays used across the restart
  const reuse = await run('agent', ['enroll', '--hub', url, '--token', enr, '--state-dir', join(base, 'agent2')]);
  assert.match(reuse.stderr, /FERRY_E_TOKEN_USED/);

  // SIGTERM: a clean exit, and the agent notices
  assert.equal(await hub.stop('SIGTERM'), 0);
  await waitFor('agent saw the hub go', () => agent.output().split('disconnected from hub').length > 2);
});
