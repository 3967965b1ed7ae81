// The hub's identity and transport: listening where other hosts can reach it
// needs the public URL agents sign for, and TLS (or an explicit, warned-about
// --insecure-http); agents must connect to that host.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { connect, enrollBody, enrollmentToken, helloFrame, postEnroll } from '../helpers/agents.js';
import { generateKeyPair } from '../../shared/keys.js';
import { startHub } from '../helpers/hub.js';
import { daemon, run } from '../helpers/proc.js';
import { tempDir } from '../helpers/tmp.js';
import { freePort } from '../helpers/faults.js';

test('listening on a non-loopback address needs --public-url and TLS, or --insecure-http (warned about at every start)', async (t) => {
  const dataDir = join(tempDir(t), 'hub');
  assert.equal((await run('hub', ['init', '--data-dir', dataDir])).code, 0);
  const port = await freePort();
  let r = await run('hub', ['serve', '--data-dir', dataDir, '--listen', `0.0.0.0:${port}`]);
  assert.equal(r.code, 7, r.stderr);
  assert.match(r.stderr, /FERRY_E_CONFIG_INVALID: .*--listen 0\.0\.0\.0:\d+ is reachable from other hosts: give --public-url/);
  r = await run('hub', ['serve', '--data-dir', dataDir, '--listen', `0.0.0.0:${port}`, '--public-url', `http://hub.lab:${port}`]);
  assert.equal(r.code, 7, r.stderr);
  assert.match(r.stderr, /give --tls-cert and --tls-key, or --insecure-http for a closed lab network/);
  const hub = daemon(t, 'hub', ['serve', '--data-dir', dataDir, '--listen', `0.0.0.0:${port}`, '--public-url', `http://hub.lab:${port}`, '--insecure-http']);
  await hub.waitFor(/listening on/);
  assert.match(hub.output(), /serving plain HTTP \(--insecure-http\)/);
  await hub.stop();
  // loopback needs neither
  const local = daemon(t, 'hub', ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`]);
  await local.waitFor(/listening on/);
  assert.doesNotMatch(local.output(), /plain HTTP/);
});

test('with a public URL, an agent must connect to its host and sign for it', async (t) => {
  const publicUrl = 'http://hub.bank-facing.example:9443';
  const th = await startHub(t, { publicUrl });
  const token = await enrollmentToken(th, 'bank-a');
  const kp = generateKeyPair();
  // enrollment proofs are bound to the public host too
  assert.equal((await postEnroll(th.url, enrollBody(th.url, token, kp))).body.error.code, 'FERRY_E_ENROLL_PROOF');
  const e = await postEnroll(th.url, enrollBody(publicUrl, token, kp));
  assert.equal(e.status, 201, JSON.stringify(e.body));
  const agent = { id: e.body.agentId as string, tenant: 'bank-a', kp };
  // signed for the public host, but connected under another name
  const wrongHost = await connect(th.url, agent, { host: 'hub.bank-facing.example:9443' });
  assert.equal(wrongHost.ok, false);
  if (!wrongHost.ok) {
    assert.equal(wrongHost.status, 401);
    assert.equal(wrongHost.body.error.code, 'FERRY_E_AGENT_AUTH_HOST');
  }
  // connected under the public host (as through the bank's DNS or a TCP balancer) and signed for it
  const good = await connect(th.url, agent, { host: 'hub.bank-facing.example:9443' }, { headers: { host: 'hub.bank-facing.example:9443' } });
  assert.ok(good.ok, JSON.stringify(good));
  if (good.ok) {
    await good.box.next('welcome');
    good.ws.send(helloFrame());
    good.ws.close();
  }
});
