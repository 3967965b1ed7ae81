// The CLI never misleads: each defect a new user met, as that user meets it
// (the real binaries against a real hub), with what it says now.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VERSION } from '../../shared/version.js';
import { buildTestImage, registryDigest, requireDocker } from '../helpers/docker.js';
import { fleet } from '../helpers/fleet.js';
import { startHub } from '../helpers/hub.js';
import { ROOT, run } from '../helpers/proc.js';
import { tempDir } from '../helpers/tmp.js';

function cli(t: TestContext, hub?: { url: string; adminToken: string }) {
  const home = tempDir(t, 'ferry-cli-');
  const env: NodeJS.ProcessEnv = { HOME: home, XDG_CONFIG_HOME: join(home, 'xdg'), FERRY_CONTEXT: undefined, FERRY_CA_FILE: undefined, FERRY_HUB: hub?.url, FERRY_TOKEN: hub?.adminToken };
  return (...args: string[]) => run('ferry', args, { env, timeoutMs: 120_000 });
}

test('usage errors show the command\'s usage line and where --help is; versions, help texts and defaults say what they are', async (t) => {
  const th = await startHub(t);
  const ferry = cli(t, th);
  const missing = await ferry('deploy');
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^error: required option '--agent <id>' not specified\nUsage: ferry deploy \[options\] <ref>\nRun 'ferry deploy --help' for more\.\n$/);
  const unknown = await ferry('release', 'create', 'shop', '1.0.0', '--compose', 'x.yml', '--bogus');
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown option '--bogus'[\s\S]*Usage: ferry release create \[options\] <stack-or-version> \[version\]\nRun 'ferry release create --help' for more\./);

  const v = await ferry('version');
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout, `ferry ${VERSION}\nhub   ${VERSION} at ${th.url}\n`);
  const offline = await cli(t)('version');
  assert.equal(offline.code, 0);
  assert.match(offline.stdout, new RegExp(`^ferry ${VERSION.replace(/\./g, '\\.')}\nhub   - \\(no hub configured`));

  const serve = await run('hub', ['serve', '--help']);
  assert.equal(serve.code, 0);
  const help = serve.stdout.replace(/\s+/g, ' '); // commander wraps lines
  for (const d of ['default: "127.0.0.1:7443"', 'default 15000', 'default 60000', 'default 1000', 'default info', 'default: plain HTTP']) assert.ok(help.includes(d), `serve --help shows ${d}:\n${serve.stdout}`);
  const qs = spawnSync('bash', [join(ROOT, 'scripts/quickstart.sh'), '--help'], { encoding: 'utf8' });
  assert.equal(qs.status, 0, qs.stderr);
  assert.match(qs.stdout, /bash scripts\/quickstart\.sh stop/);
  const qsBad = spawnSync('bash', [join(ROOT, 'scripts/quickstart.sh'), 'frobnicate'], { encoding: 'utf8' });
  assert.notEqual(qsBad.status, 0);
  assert.match(qsBad.stderr, /unknown command frobnicate/);
});

test('https to a plain-HTTP hub says it does not speak TLS; audit ls of an unknown tenant is not found; deploy of a missing release does not say it waits', async (t) => {
  const th = await startHub(t);
  const ferry = cli(t, th);
  const tls = await run('ferry', ['tenant', 'ls', '--hub', th.url.replace('http:', 'https:'), '--token', th.adminToken], { env: { XDG_CONFIG_HOME: tempDir(t) } });
  assert.equal(tls.code, 6);
  assert.match(tls.stderr, /^error FERRY_E_HUB_NOT_TLS: The server at that address does not speak TLS: https:\/\/127\.0\.0\.1:\d+: the server answered in plain HTTP .*; use http:\/\/127\.0\.0\.1:\d+\n  The hub serves plain HTTP there/);

  assert.equal((await ferry('tenant', 'create', 'bank-a')).code, 0);
  assert.equal((await ferry('audit', 'ls', '--tenant', 'bank-a')).code, 0);
  const nosuch = await ferry('audit', 'ls', '--tenant', 'nosuch');
  assert.equal(nosuch.code, 4, nosuch.stderr);
  assert.match(nosuch.stderr, /^error FERRY_E_NOT_FOUND: No such resource: audit log nosuch/);
  assert.equal(nosuch.stdout, '', 'no empty table');

  const deploy = await ferry('deploy', 'shop@9.9.9', '--agent', 'agt_nope', '--wait');
  assert.equal(deploy.code, 4, deploy.stderr);
  assert.doesNotMatch(deploy.stderr, /Waiting/);
});

test('compose errors: a missing file, bad YAML and a missing image each get a hint that fits, and the image error names its line', async (t) => {
  const th = await startHub(t);
  const ferry = cli(t, th);
  const dir = tempDir(t);
  const missing = await ferry('release', 'create', 'shop', '1.0.0', '--compose', join(dir, 'nope.yml'));
  assert.equal(missing.code, 7);
  assert.match(missing.stderr, /^error FERRY_E_COMPOSE_FILE: A file of the compose project cannot be read: .*nope\.yml:1: cannot be read: ENOENT\n  Check the path/);
  writeFileSync(join(dir, 'bad.yml'), 'services:\n  web:\n    image: "x\n');
  const yaml = await ferry('release', 'create', 'shop', '1.0.0', '--compose', join(dir, 'bad.yml'));
  assert.equal(yaml.code, 7);
  assert.match(yaml.stderr, /^error FERRY_E_COMPOSE_YAML: .*bad\.yml:3: is not valid YAML: [\s\S]*\n  Fix the YAML syntax at the named line/);
  writeFileSync(join(dir, 'img.yml'), 'services:\n  web:\n    image: 127.0.0.1:5000/ferry-test/no-such-image:v9\n');
  const image = await ferry('release', 'create', 'shop', '1.0.0', '--compose', join(dir, 'img.yml'));
  assert.equal(image.code, 4, image.stderr);
  assert.match(image.stderr, /error FERRY_E_IMAGE_NOT_FOUND: .*img\.yml:3: services\.web\.image: 127\.0\.0\.1:5000\/ferry-test\/no-such-image:v9 is not in registry/);
});

test('signing with a key no root names, trust sign, deploy --wait past 30 s to an offline agent, agent ls with Docker facts', async (t) => {
  if (!(await requireDocker(t))) return;
  const img = await buildTestImage('ferry-test/honest', 'v1', { push: true });
  const f = await fleet(t);
  const [a] = f.agents as [(typeof f.agents)[0]];
  const ferry = cli(t, f.th);
  const dir = tempDir(t);

  const ls = await ferry('agent', 'ls');
  assert.match(ls.stdout, /DOCKER/);
  assert.match(ls.stdout, /Docker \d+\.\d+\.\d+[^,]*, \d+\/\d+ running/, 'the Docker facts the README promises');

  // A key that no tenant's root names: the vendor's upload is refused, saying so...
  writeFileSync(join(dir, 'c.yml'), `services:\n  app:\n    image: ${img.ref}\n`);
  assert.equal((await ferry('release', 'create', 'honest', '1.0.0', '--compose', join(dir, 'c.yml'))).code, 0);
  assert.equal((await ferry('key', 'generate', '--out', join(dir, 'stranger.key'))).code, 0);
  const refused = await ferry('release', 'sign', 'honest@1.0.0', '--key', join(dir, 'stranger.key'));
  assert.equal(refused.code, 3, refused.stderr);
  assert.match(refused.stderr, /error FERRY_E_SIG_UNKNOWN_KEY: The signing key is not named by any tenant's trust root/);
  assert.match(refused.stderr, /Sign with a release key a tenant's root lists/);
  // ...while the bank's own approver may co-sign with such a key (its policy names it): kept, with a warning that says what it counts for
  assert.equal((await ferry('release', 'offer', 'honest@1.0.0', '--tenant', 'bank-r')).code, 0);
  const approver = await f.th.person({ tenants: { 'bank-r': 'approver' } });
  const stranger = await run('ferry', ['release', 'sign', 'honest@1.0.0', '--key', join(dir, 'stranger.key')], { env: { HOME: dir, XDG_CONFIG_HOME: join(dir, 'xdg'), FERRY_HUB: f.th.url, FERRY_TOKEN: approver.token } });
  assert.equal(stranger.code, 0, stranger.stderr);
  assert.match(stranger.stderr, /warning FERRY_E_SIG_UNKNOWN_KEY: The signing key is not named by any tenant's trust root: key .* this signature counts for no tenant \(bank-r 0 of 1\); it counts only on agents whose local policy names this key as a co-signer/);

  // trust sign: no "0 of 1 needed" before "active".
  assert.equal((await ferry('tenant', 'create', 'bank-t')).code, 0);
  assert.equal((await ferry('key', 'generate', '--out', join(dir, 'root.key'))).code, 0);
  assert.equal((await ferry('trust', 'init', '--tenant', 'bank-t', '--root-key', join(dir, 'root.key.pub'), '--release-key', join(dir, 'root.key.pub'))).code, 0);
  const signed = await ferry('trust', 'sign', '--tenant', 'bank-t', '--key', join(dir, 'root.key'));
  assert.equal(signed.code, 0, signed.stderr);
  assert.match(signed.stdout, /^root v1 is active/);
  assert.doesNotMatch(signed.stderr, /signed by 0 of 1 needed/);

  // deploy --wait 32 to an agent that is offline: the client waits the whole time, then says the agent did not answer.
  await f.publish('honest', '2.0.0', { app: { image: img.ref!, environment: {}, ports: [], volumes: [], networks: [], dependsOn: {}, restart: 'no', labels: {}, stopGracePeriodMs: 1000, replicas: 1, updateOrder: 'stop-first' } });
  await a.daemon.stop();
  const started = Date.now();
  const wait = await ferry('deploy', 'honest@2.0.0', '--agent', a.id, '--wait', '32');
  assert.ok(Date.now() - started >= 32_000, 'it waited as long as asked');
  assert.equal(wait.code, 1, wait.stderr);
  assert.match(wait.stderr, /Waiting up to 32 s/);
  assert.match(wait.stderr, new RegExp(`error FERRY_E_AGENT_NO_ANSWER: The agent has not answered yet: agent ${a.id} \\(disconnected, last seen \\S+\\) did not answer directive \\d+ within 32 s`));
  assert.doesNotMatch(wait.stderr, /UND_ERR|shutting down/);
});

test('release create --build --push-to builds with the local engine, pushes, and pins the pushed digest', async (t) => {
  if (!(await requireDocker(t))) return;
  const base = await buildTestImage('ferry-test/build-base', 'v1');
  const th = await startHub(t);
  const ferry = cli(t, th);
  const dir = tempDir(t);
  mkdirSync(join(dir, 'api'));
  writeFileSync(join(dir, 'api', 'Containerfile'), `FROM ${base.image}\nARG GREETING\nRUN echo "$GREETING" > /www/greeting\nCMD ["cat", "/www/greeting"]\n`);
  writeFileSync(join(dir, 'compose.yml'), 'services:\n  api:\n    build: {context: ./api, dockerfile: Containerfile, args: {GREETING: hello}}\n');
  const refused = await ferry('release', 'create', 'built', '1.0.0', '--compose', join(dir, 'compose.yml'));
  assert.equal(refused.code, 7);
  assert.match(refused.stderr, /services\.api has build: but no image: build and push it with `ferry release create --build --push-to REGISTRY\/PREFIX`/);
  const prefix = `127.0.0.1:5000/ferry-test-build-${process.pid}`;
  const r = await ferry('release', 'create', 'built', '1.0.0', '--compose', join(dir, 'compose.yml'), '--build', '--push-to', prefix, '--json');
  assert.equal(r.code, 0, r.stderr);
  const digest = await registryDigest(`${prefix.slice('127.0.0.1:5000/'.length)}/api`, '1.0.0');
  assert.ok(digest, 'pushed to the registry under the version');
  assert.equal(JSON.parse(r.stdout).services.api, `${prefix}/api@${digest}`, 'the release pins the pushed digest');
  t.after(() => void spawnSync('docker', ['rmi', `${prefix}/api:1.0.0`]));
});
