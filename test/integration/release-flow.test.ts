// The signed-release workflow end to end between real processes: keys made
// with `ferry key generate`, a root signed by its holder, a compose file
// pinned against a real registry, two of three release managers signing,
// an agent that verifies before it accepts, an institution policy the hub
// cannot change, and a key rotation the agent follows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildTestImage, docker, requireDocker } from '../helpers/docker.js';
import { enrollmentToken } from '../helpers/agents.js';
import { startHub } from '../helpers/hub.js';
import { daemon, run } from '../helpers/proc.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

test('release managers sign on their own machines; the agent accepts only what verifies under its root and policy', async (t) => {
  if (!(await requireDocker(t))) return;
  const th = await startHub(t);
  const dir = tempDir(t);
  const env = { FERRY_HUB: th.url, FERRY_TOKEN: th.adminToken, XDG_CONFIG_HOME: join(dir, 'xdg') };
  const ferry = async (...args: string[]) => run('ferry', args, { env });
  const ok = async (...args: string[]) => {
    const r = await ferry(...args);
    assert.equal(r.code, 0, `ferry ${args.join(' ')}\n${r.stderr}`);
    return r;
  };

  // keys: one root holder, three release managers, one approver at the bank
  for (const k of ['root', 'alice', 'bob', 'carol', 'bank-approver']) await ok('key', 'generate', '--out', join(dir, `${k}.key`));
  const keyFile = (k: string) => join(dir, `${k}.key`);
  const pub = (k: string) => join(dir, `${k}.key.pub`);

  await ok('tenant', 'create', 'bank-a');
  await ok('trust', 'init', '--tenant', 'bank-a', '--root-key', pub('root'), '--release-key', pub('alice'), '--release-key', pub('bob'), '--release-key', pub('carol'), '--release-threshold', '2');
  let shown = JSON.parse((await ok('trust', 'show', '--tenant', 'bank-a', '--json')).stdout);
  assert.equal(shown.active, null, 'not active until signed');
  const signed = await ok('trust', 'sign', '--tenant', 'bank-a', '--key', keyFile('root'));
  assert.match(signed.stdout, /root v1 is active/);
  shown = JSON.parse((await ok('trust', 'show', '--tenant', 'bank-a', '--json')).stdout);
  const fingerprint = shown.fingerprint as string;
  assert.match(fingerprint, /^SHA256:/);

  // the bank enrolls its agent, pinning the fingerprint it got out of band
  const state = join(dir, 'agent');
  const e = await run('agent', ['enroll', '--hub', th.url, '--token', await enrollmentToken(th, 'bank-a'), '--state-dir', state, '--root-fingerprint', fingerprint, '--json']);
  assert.equal(e.code, 0, e.stderr);
  const agentId = JSON.parse(e.stdout).agentId as string;
  // the agent runs what it accepts: remove its containers and networks afterwards, pass or fail
  t.after(async () => {
    for (const kind of [['ps', '-aq'], ['network', 'ls', '-q']]) {
      const ids = (await docker([...kind, '--filter', `label=ferry.agent=${agentId}`])).stdout.split('\n').filter(Boolean);
      if (ids.length) await docker(kind[0] === 'ps' ? ['rm', '-f', ...ids] : ['network', 'rm', ...ids]);
    }
  });
  const wrongPin = await run('agent', ['enroll', '--hub', th.url, '--token', await enrollmentToken(th, 'bank-a'), '--state-dir', join(dir, 'agent2'), '--root-fingerprint', 'SHA256:AAAA']);
  assert.equal(wrongPin.code, 3);
  assert.match(wrongPin.stderr, /FERRY_E_ROOT_UNTRUSTED/);

  // a compose file with an image by tag; the release pins it to the registry's digest
  const img = await buildTestImage('ferry-test/web', 'v1', { push: true, cmd: ['httpd', '-f', '-p', '8080'] });
  writeFileSync(join(dir, 'compose.yml'), `services:\n  web:\n    image: ${img.repo}:v1\n    ports: ["18080:8080"]\n    environment:\n      MODE: prod\n`);
  const created = JSON.parse((await ok('release', 'create', 'web', '1.0.0', '--compose', join(dir, 'compose.yml'), '--json')).stdout);
  assert.equal(created.services.web, img.ref);

  // unsigned: the hub will not even send it
  let r = await ferry('deploy', 'web@1.0.0', '--agent', agentId);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /FERRY_E_SIG_THRESHOLD/);
  await ok('release', 'sign', 'web@1.0.0', '--key', keyFile('alice'));
  await ok('release', 'sign', 'web@1.0.0', '--key', keyFile('alice')); // twice by one key still counts once
  let ls = JSON.parse((await ok('release', 'ls', '--json')).stdout).releases[0];
  assert.deepEqual(ls.tenants, [{ tenant: 'bank-a', met: false, have: 1, threshold: 2 }]);
  await ok('release', 'sign', 'web@1.0.0', '--key', keyFile('bob'));
  ls = JSON.parse((await ok('release', 'ls', '--json')).stdout).releases[0];
  assert.equal(ls.tenants[0].met, true);
  assert.deepEqual(ls.signers.map((s: { name: string }) => s.name).sort(), ['alice', 'bob']);

  // the agent accepts, persists and acknowledges; the bank sees what and who
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, 'registries: ["127.0.0.1:5000"]\n');
  let agent = daemon(t, 'agent', ['run', '--state-dir', state, '--policy', policyFile]);
  await waitFor('agent connected', async () => (await th.api('GET', `/v1/agents/${agentId}`)).body.status === 'connected');
  r = await ok('deploy', 'web@1.0.0', '--agent', agentId, '--wait', '30', '--json');
  const d1 = JSON.parse(r.stdout);
  assert.equal(d1.status, 'accepted');
  const status = await run('agent', ['status', '--state-dir', state, '--policy', policyFile]);
  assert.match(status.stdout, /release\s+web@1\.0\.0, signed by (alice, bob|bob, alice)/);
  assert.match(status.stdout, /trust root\s+v1, v1 fingerprint SHA256:\S+ \(pinned\)/);
  assert.ok(status.stdout.includes(img.ref!));
  const trustFile = JSON.parse(readFileSync(join(state, 'trust.json'), 'utf8'));
  assert.equal(trustFile.desired.seq, d1.seq);

  // the bank now requires its own approver: 1.0.1 without that co-signature is refused
  writeFileSync(policyFile, `registries: ["127.0.0.1:5000"]\ncosigners:\n  threshold: 1\n  keys: ["${readFileSync(pub('bank-approver'), 'utf8').trim()}"]\n`);
  await agent.stop();
  agent = daemon(t, 'agent', ['run', '--state-dir', state, '--policy', policyFile]);
  await waitFor('agent reconnected', async () => (await th.api('GET', `/v1/agents/${agentId}`)).body.status === 'connected');
  await ok('release', 'create', 'web', '1.0.1', '--compose', join(dir, 'compose.yml'));
  await ok('release', 'sign', 'web@1.0.1', '--key', keyFile('alice'));
  await ok('release', 'sign', 'web@1.0.1', '--key', keyFile('carol'));
  r = await ferry('deploy', 'web@1.0.1', '--agent', agentId, '--wait', '30');
  assert.equal(r.code, 3);
  assert.match(r.stderr, /FERRY_E_POLICY_COSIGN/);
  assert.match(readFileSync(join(state, 'refusals.jsonl'), 'utf8'), /FERRY_E_POLICY_COSIGN/);
  const view = (await th.api('GET', `/v1/agents/${agentId}`)).body;
  assert.equal(view.lastDirective.status, 'refused');
  assert.equal(view.lastDirective.code, 'FERRY_E_POLICY_COSIGN');
  assert.equal(view.desired.releases[0].version, '1.0.0', 'the refused release did not replace the accepted one');
  // The co-signing key is the bank's (in its policy, in no root): the vendor cannot upload it...
  r = await ferry('release', 'sign', 'web@1.0.1', '--key', keyFile('bank-approver'));
  assert.equal(r.code, 3);
  assert.match(r.stderr, /FERRY_E_SIG_UNKNOWN_KEY/);
  // ...the bank's own approver does, with their own account, for what is delivered or offered to the bank.
  const approver = await th.person({ tenants: { 'bank-a': 'approver' } });
  const asApprover = async (...args: string[]) => {
    const x = await run('ferry', args, { env: { ...env, FERRY_TOKEN: approver.token } });
    assert.equal(x.code, 0, `ferry ${args.join(' ')} (approver)\n${x.stderr}`);
    return x;
  };
  await asApprover('release', 'sign', 'web@1.0.1', '--key', keyFile('bank-approver'));
  r = await ok('deploy', 'web@1.0.1', '--agent', agentId, '--wait', '30', '--json');
  assert.equal(JSON.parse(r.stdout).status, 'accepted');

  // rotation: alice leaves; root v2 is signed by the root holder and pushed to the agent
  await ok('trust', 'remove-key', '--tenant', 'bank-a', '--role', 'release', '--key', pub('alice'));
  assert.match((await ok('trust', 'sign', '--tenant', 'bank-a', '--key', keyFile('root'))).stdout, /root v2 is active/);
  await waitFor('agent took root v2', () => rootsHeld(state) === 2, 10_000);
  await ok('release', 'create', 'web', '1.0.2', '--compose', join(dir, 'compose.yml'));
  // alice's key is in no root now: the hub refuses her signature at upload
  r = await ferry('release', 'sign', 'web@1.0.2', '--key', keyFile('alice'));
  assert.equal(r.code, 3);
  assert.match(r.stderr, /FERRY_E_SIG_UNKNOWN_KEY/);
  await ok('release', 'sign', 'web@1.0.2', '--key', keyFile('bob'));
  // not offered yet: to the bank's approver it does not exist
  r = await run('ferry', ['release', 'sign', 'web@1.0.2', '--key', keyFile('bank-approver')], { env: { ...env, FERRY_TOKEN: approver.token } });
  assert.equal(r.code, 4, r.stderr);
  await ok('release', 'offer', 'web@1.0.2', '--tenant', 'bank-a');
  await asApprover('release', 'sign', 'web@1.0.2', '--key', keyFile('bank-approver'));
  r = await ferry('deploy', 'web@1.0.2', '--agent', agentId);
  assert.equal(r.code, 3, 'alice no longer counts');
  assert.match(r.stderr, /1 of 2/);
});

/** How many root versions the agent holds, from its own trust file. */
function rootsHeld(state: string): number {
  return (JSON.parse(readFileSync(join(state, 'trust.json'), 'utf8')) as { state: { roots: unknown[] } }).state.roots.length;
}
