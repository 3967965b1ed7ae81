// Secrets never leave the institution: a release names a secret, the bank
// provides its value on the agent host, the container reads it at
// /run/secrets/NAME — and the hub's database file, its WAL, its logs and its
// API answers hold no trace of the value. A missing value shows at the hub as
// FERRY_E_SECRET_MISSING with the secret's name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildTestImage, dockerOk, requireDocker } from '../helpers/docker.js';
import { fleet } from '../helpers/fleet.js';
import { run } from '../helpers/proc.js';
import { service } from '../helpers/signing.js';
import { tempDir } from '../helpers/tmp.js';

test('a secret reaches its container from the agent host and never passes the hub', async (t) => {
  if (!(await requireDocker(t))) return;
  const img = await buildTestImage('ferry-test/secret-app', 'v1', { push: true, applets: ['stat'] });
  const f = await fleet(t, { bakeMs: 300, driftIntervalMs: 1000 });
  const [a] = f.agents as [(typeof f.agents)[0]];
  const value = `s3cret-${randomBytes(12).toString('hex')}`;
  const forms = [value, Buffer.from(value).toString('base64'), Buffer.from(value).toString('hex')];

  await f.publish('vault', '1.0.0', {
    app: service(img.ref!, { secrets: [{ name: 'db_password', target: '/run/secrets/db_password' }, { name: 'api_key', target: '/etc/app/key', mode: 0o400 }] }),
  });
  assert.equal((await f.deploy(a, 'vault', '1.0.0')).status, 'accepted');
  const waiting = await f.waitRelease(a, 'vault', '1.0.0', 'failed');
  assert.equal(waiting.code, 'FERRY_E_SECRET_MISSING');
  const env = { FERRY_HUB: f.th.url, FERRY_TOKEN: f.th.adminToken, XDG_CONFIG_HOME: tempDir(t) };
  const shown = await run('ferry', ['agent', 'show', a.id], { env });
  assert.match(shown.stdout, /release\s+vault@1\.0\.0 failed \(FERRY_E_SECRET_MISSING\)/, 'the hub shows why it waits');
  const detail = (await f.th.api('GET', `/v1/agents/${a.id}`)).body.running.releases[0].message as string;
  assert.match(detail, /needs secret db_password \(for app\), secret api_key \(for app\)/, 'with the names the bank must provide');

  // The bank provides the values on the agent host; the release starts on the agent's next pass.
  const dir = tempDir(t);
  writeFileSync(join(dir, 'pw'), value);
  writeFileSync(join(dir, 'key'), `key-${value}`);
  for (const [name, file] of [['db_password', 'pw'], ['api_key', 'key']] as const) {
    const r = await run('agent', ['secret', 'set', name, '--from-file', join(dir, file), '--state-dir', a.stateDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(statSync(join(a.stateDir, 'secrets', name)).mode & 0o777, 0o600);
  }
  await f.waitRelease(a, 'vault', '1.0.0', 'applied');
  const id = await dockerOk(['ps', '-q', '--filter', `label=ferry.agent=${a.id}`, '--filter', 'label=ferry.service=app']);
  assert.equal(await dockerOk(['exec', id, 'cat', '/run/secrets/db_password']), value);
  assert.equal(await dockerOk(['exec', id, 'cat', '/etc/app/key']), `key-${value}`);
  assert.equal(await dockerOk(['exec', id, 'stat', '-c', '%a', '/etc/app/key']), '400');

  // Nothing the hub holds or says contains the value, in any encoding.
  const hubFiles = readdirSync(f.th.dataDir).map((n) => join(f.th.dataDir, n)).filter((p) => statSync(p).isFile());
  assert.ok(hubFiles.some((p) => p.endsWith('-wal')), `the WAL is among the files read: ${hubFiles.join(', ')}`);
  const answers = await Promise.all(
    [`/v1/agents/${a.id}`, '/v1/agents', '/v1/releases', '/v1/releases/vault/1.0.0', `/v1/agents/${a.id}/plan`, '/v1/audit'].map(async (p) => JSON.stringify((await f.th.api('GET', p)).body)),
  );
  for (const log of ['bank-r', '_hub']) {
    const res = await fetch(`${f.th.url}/v1/audit/${log}/export`, { headers: { authorization: `Bearer ${f.th.adminToken}` } });
    assert.equal(res.status, 200);
    answers.push(await res.text()); // NDJSON; entries are base64 too, so decode them before searching
    answers.push(answers.at(-1)!.split('\n').filter(Boolean).map((l) => Buffer.from((JSON.parse(l) as { data?: string }).data ?? '', 'base64').toString('utf8')).join('\n'));
  }
  const haystacks: [string, Buffer | string][] = [
    ...hubFiles.map((p) => [p, readFileSync(p)] as [string, Buffer]),
    ['hub logs', JSON.stringify(f.th.logs)],
    ...answers.map((x, i) => [`API answer ${i}`, x] as [string, string]),
    ['agent output', a.daemon.output()],
  ];
  for (const [where, text] of haystacks) {
    for (const form of forms) assert.ok(!text.includes(form), `${where} contains the secret (${form.slice(0, 8)}…)`);
  }
  assert.ok(answers[0]!.includes('vault'), 'the answers searched are the real ones');
});
