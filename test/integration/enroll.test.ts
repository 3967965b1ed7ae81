// Enrollment end to end: the real ferry-agent binary against a real hub, and
// every way a token or request can be wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair } from '../../shared/keys.js';
import { enrollBody, enrollmentToken, postEnroll } from '../helpers/agents.js';
import { dbPath, startHub } from '../helpers/hub.js';
import { ROOT, daemon, run } from '../helpers/proc.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

test('ferry-agent enroll makes a 0600 key that never leaves the host, then runs and connects', async (t) => {
  const th = await startHub(t);
  const token = await enrollmentToken(th, 'bank-a');
  const dir = join(tempDir(t), 'state');
  const r = await run('agent', ['enroll', '--hub', th.url, '--token', token, '--state-dir', dir, '--name', 'dc1-host7', '--label', 'env=prod', '--label', 'zone=dmz', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const id = JSON.parse(r.stdout);
  assert.equal(id.tenant, 'bank-a');
  assert.deepEqual(id.labels, { env: 'prod', zone: 'dmz' });
  const keyFile = join(dir, 'agent.key');
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  assert.equal(statSync(dir).mode & 0o777, 0o700);

  // the hub holds the public key only: the private seed is nowhere in its database
  const pem = readFileSync(keyFile, 'utf8');
  const seed = Buffer.from(pem.split('\n')[1]!, 'base64').subarray(16);
  for (const f of [dbPath(th.dataDir), dbPath(th.dataDir) + '-wal']) {
    if (existsSync(f)) assert.equal(readFileSync(f).indexOf(seed), -1, `${f} contains the private key`);
  }
  if (th.backend === 'postgres') {
    const everything = JSON.stringify(await th.rawSql('SELECT a.*, e.* FROM agents a, enrollment_tokens e'));
    for (const form of [seed.toString('base64'), seed.toString('hex')]) assert.ok(!everything.includes(form), 'the database holds the private key');
  }
  const view = await th.api('GET', `/v1/agents/${id.agentId}`);
  assert.equal(view.body.name, 'dc1-host7');
  assert.equal(view.body.fingerprint, id.fingerprint);

  const agent = daemon(t, 'agent', ['run', '--state-dir', dir]);
  // connected, and its hello (sent once engine facts are read) has arrived
  const facts = await waitFor('agent connected with facts', async () => {
    const b = (await th.api('GET', `/v1/agents/${id.agentId}`)).body;
    return b.status === 'connected' && b.agentVersion ? b : null;
  });
  // the version the hub shows is the package's, as `ferry-agent --version` prints it
  const pkgVersion = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  assert.equal(facts.agentVersion, pkgVersion);
  assert.equal((await run('agent', ['--version'])).stdout.trim(), pkgVersion);
  assert.ok(facts.facts.host.hostname.length > 0);
  assert.ok('engine' in facts.facts);

  const status = await run('agent', ['status', '--state-dir', dir]);
  assert.equal(status.code, 0);
  assert.match(status.stdout, new RegExp(`agent\\s+${id.agentId}`));
  assert.match(status.stdout, /tenant\s+bank-a/);

  // enrolling again into the same state dir is refused and changes nothing
  const again = await run('agent', ['enroll', '--hub', th.url, '--token', await enrollmentToken(th, 'bank-a'), '--state-dir', dir]);
  assert.equal(again.code, 5);
  assert.match(again.stderr, /FERRY_E_ALREADY_ENROLLED/);
  assert.equal(readFileSync(keyFile, 'utf8'), pem);

  // revocation stops the agent process with exit 78 (systemd must not restart it)
  await th.api('POST', `/v1/agents/${id.agentId}/revoke`);
  assert.equal(await agent.exited, 78);
  assert.match(agent.output(), /FERRY_E_AGENT_REVOKED/);
});

test('used, expired and unknown tokens are refused with their codes and leave no key behind', async (t) => {
  const th = await startHub(t);
  const token = await enrollmentToken(th, 'bank-a');
  const base = tempDir(t);
  const ok = await run('agent', ['enroll', '--hub', th.url, '--token', token, '--state-dir', join(base, 'a')]);
  assert.equal(ok.code, 0, ok.stderr);

  const reused = await run('agent', ['enroll', '--hub', th.url, '--token', token, '--state-dir', join(base, 'b')]);
  assert.equal(reused.code, 3);
  assert.match(reused.stderr, /FERRY_E_TOKEN_USED/);
  assert.ok(!existsSync(join(base, 'b', 'agent.key')), 'failed enrollment removes its key');

  const unknown = await run('agent', ['enroll', '--hub', th.url, '--token', 'ferry_enr_nope', '--state-dir', join(base, 'c')]);
  assert.equal(unknown.code, 3);
  assert.match(unknown.stderr, /FERRY_E_TOKEN_INVALID/);

  const expiring = await enrollmentToken(th, 'bank-a');
  await th.rawSql('UPDATE enrollment_tokens SET expires_at = ? WHERE used_at IS NULL', [Date.now() - 1]);
  const expired = await run('agent', ['enroll', '--hub', th.url, '--token', expiring, '--state-dir', join(base, 'd')]);
  assert.equal(expired.code, 3);
  assert.match(expired.stderr, /FERRY_E_TOKEN_EXPIRED/);

  const unreachable = await run('agent', ['enroll', '--hub', 'http://127.0.0.1:9', '--token', 'x', '--state-dir', join(base, 'e')]);
  assert.equal(unreachable.code, 6);
  assert.match(unreachable.stderr, /FERRY_E_HUB_UNREACHABLE/);

  const agents = (await th.api('GET', '/v1/agents')).body.agents;
  assert.equal(agents.length, 1);
});

test('two concurrent enrollments with one token: exactly one succeeds', async (t) => {
  const th = await startHub(t);
  for (let round = 0; round < 5; round++) {
    const token = await enrollmentToken(th, 'bank-a');
    const results = await Promise.all(Array.from({ length: 8 }, () => postEnroll(th.url, enrollBody(th.url, token, generateKeyPair()))));
    const wins = results.filter((r) => r.status === 201);
    assert.equal(wins.length, 1, JSON.stringify(results.map((r) => r.status)));
    for (const r of results.filter((x) => x.status !== 201)) assert.equal(r.body.error.code, 'FERRY_E_TOKEN_USED');
  }
  assert.equal((await th.api('GET', '/v1/agents')).body.agents.length, 5);
});

test('enrollment requests that lie about the key, the tenant or their shape are refused', async (t) => {
  const th = await startHub(t);
  const token = await enrollmentToken(th, 'bank-a');
  await enrollmentToken(th, 'bank-b');
  const kp = generateKeyPair();

  // proof signed by a different key than the one registered
  const wrongKey = { ...enrollBody(th.url, token, kp), proof: enrollBody(th.url, token, generateKeyPair()).proof };
  let r = await postEnroll(th.url, wrongKey);
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, 'FERRY_E_ENROLL_PROOF');
  // proof bound to another hub
  r = await postEnroll(th.url, enrollBody('https://other-hub.example', token, kp));
  assert.equal(r.body.error.code, 'FERRY_E_ENROLL_PROOF');
  // asking for another tenant is not a thing an enrollment can do
  r = await postEnroll(th.url, { ...enrollBody(th.url, token, kp), tenant: 'bank-b' });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, 'FERRY_E_VALIDATION');
  assert.match(r.body.error.message, /tenant|unrecognized/i);
  // a 31-byte key
  r = await postEnroll(th.url, { ...enrollBody(th.url, token, kp), publicKey: Buffer.alloc(31).toString('base64') });
  assert.equal(r.body.error.code, 'FERRY_E_VALIDATION');
  // bad labels
  r = await postEnroll(th.url, enrollBody(th.url, token, kp, 'x', { 'Bad Key': 'v' }));
  assert.equal(r.body.error.code, 'FERRY_E_VALIDATION');
  // none of the refusals consumed the token: it still enrolls, into its own tenant
  r = await postEnroll(th.url, enrollBody(th.url, token, kp));
  assert.equal(r.status, 201);
  assert.equal(r.body.tenant, 'bank-a');
  assert.equal((await th.api('GET', '/v1/agents?tenant=bank-b')).body.agents.length, 0);
  assert.equal((await th.api('GET', '/v1/agents?tenant=nope')).body.error.code, 'FERRY_E_NOT_FOUND');
  // the same public key cannot be enrolled twice
  r = await postEnroll(th.url, enrollBody(th.url, await enrollmentToken(th, 'bank-b'), kp));
  assert.equal(r.status, 409);
});

test('malformed and oversized API bodies are refused; the hub keeps serving', async (t) => {
  const th = await startHub(t);
  let r = await th.api('POST', '/v1/tenants', '{"name": ');
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, 'FERRY_E_BAD_REQUEST');
  r = await th.api('POST', '/v1/tenants', JSON.stringify({ name: 'x'.repeat(70 * 1024) }));
  assert.equal(r.status, 413);
  assert.equal(r.body.error.code, 'FERRY_E_PAYLOAD_TOO_LARGE');
  r = await th.api('POST', '/v1/tenants', { name: 'Bank A!' });
  assert.equal(r.body.error.code, 'FERRY_E_VALIDATION');
  r = await th.api('POST', '/v1/tenants', { name: 'bank-a', admin: true });
  assert.equal(r.body.error.code, 'FERRY_E_VALIDATION');
  r = await th.api('POST', '/v1/tenants/nope/enrollment-tokens', {});
  assert.equal(r.status, 404);
  assert.equal((await th.api('POST', '/v1/tenants', { name: 'bank-b' })).status, 201);
  r = await th.api('POST', '/v1/tenants/bank-b/enrollment-tokens', { ttlSeconds: 1.5 });
  assert.equal(r.body.error.code, 'FERRY_E_VALIDATION');
  r = await th.api('GET', '/v1/tenants', undefined, null);
  assert.equal(r.status, 401);
  assert.equal(r.body.error.code, 'FERRY_E_AUTH_REQUIRED');
  r = await th.api('GET', '/v1/tenants', undefined, 'ferry_api_forged');
  assert.equal(r.body.error.code, 'FERRY_E_AUTH_INVALID');
  r = await th.api('POST', '/v1/tenants', { name: 'bank-z' }, await th.tokenFor('viewer'));
  assert.equal(r.status, 403);
  assert.equal(r.body.error.code, 'FERRY_E_FORBIDDEN');
  r = await th.api('GET', '/nope');
  assert.equal(r.status, 404);
  assert.equal((await th.api('GET', '/readyz', undefined, null)).status, 200);
  assert.equal((await th.api('POST', '/v1/tenants', { name: 'bank-a' })).status, 201);
});

test('the agent refuses a private key that others can read', async (t) => {
  const th = await startHub(t);
  const dir = join(tempDir(t), 'state');
  const r = await run('agent', ['enroll', '--hub', th.url, '--token', await enrollmentToken(th, 'bank-a'), '--state-dir', dir]);
  assert.equal(r.code, 0, r.stderr);
  chmodSync(join(dir, 'agent.key'), 0o644);
  const started = await run('agent', ['run', '--state-dir', dir]);
  assert.notEqual(started.code, 0);
  assert.match(started.stderr, /FERRY_E_KEY_PERMISSIONS/);
  assert.match(started.stderr, /chmod 600/);
});
