// The `ferry` CLI as an operator uses it: the real binary as a child process
// against a real hub (real sqlite, real port), with a temp config directory.
// Assertions are on exit codes, stdout/stderr text and --json fields.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import { startHub, type TestHub } from '../helpers/hub.js';
import { run, type RunResult } from '../helpers/proc.js';
import { skipOrFail } from '../helpers/skip.js';
import { tempDir } from '../helpers/tmp.js';

/** An environment with its own config home and none of the caller's Ferry settings. */
function cliEnv(t: TestContext, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv & { XDG_CONFIG_HOME: string; HOME: string } {
  const home = tempDir(t, 'ferry-cli-');
  return {
    HOME: home,
    XDG_CONFIG_HOME: join(home, 'xdg'),
    FERRY_HUB: undefined,
    FERRY_TOKEN: undefined,
    FERRY_CONTEXT: undefined,
    FERRY_CA_FILE: undefined,
    NODE_EXTRA_CA_CERTS: undefined,
    ...extra,
  };
}

const ferry = (args: string[], env: NodeJS.ProcessEnv) => run('ferry', args, { env });

/** Runs ferry, expects exit 0, returns stdout. */
async function ok(args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  const r = await ferry(args, env);
  assert.equal(r.code, 0, `ferry ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** Runs ferry, expects the exit code and the error code on stderr. */
async function fails(args: string[], env: NodeJS.ProcessEnv, exit: number, code?: string): Promise<RunResult> {
  const r = await ferry(args, env);
  assert.equal(r.code, exit, `ferry ${args.join(' ')}: expected exit ${exit}, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.equal(r.stdout, '', 'errors print nothing on stdout');
  if (code) assert.match(r.stderr, new RegExp(`^error ${code}: .+\n  \\S`, 'm'));
  return r;
}

const login = (hub: TestHub, env: NodeJS.ProcessEnv, extra: string[] = []) => ok(['login', '--hub', hub.url, '--token', hub.adminToken, ...extra], env);

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function enrollAgent(t: TestContext, hub: TestHub, token: string, name: string): Promise<{ agentId: string; fingerprint: string; tenant: string }> {
  const stateDir = join(tempDir(t, 'ferry-agent-'), 'state');
  const r = await run('agent', ['enroll', '--hub', hub.url, '--token', token, '--state-dir', stateDir, '--name', name, '--label', 'env=prod', '--json'], {
    env: { FERRY_AGENT_HUB: undefined, FERRY_AGENT_TOKEN: undefined, FERRY_AGENT_CONFIG: undefined, FERRY_AGENT_CA_FILE: undefined },
  });
  assert.equal(r.code, 0, `ferry-agent enroll failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { agentId: string; fingerprint: string; tenant: string };
}

test('login checks the token, saves a 0600 context atomically, and later commands use it', async (t) => {
  const hub = await startHub(t);
  const env = cliEnv(t);
  const r = await login(hub, env, ['--context', 'prod']);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /Logged in to http:\/\/127\.0\.0\.1:\d+ as admin \(admin \(vendor-wide\)\)/);

  const dir = join(env.XDG_CONFIG_HOME, 'ferry');
  const file = join(dir, 'config.json');
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), ['config.json'], 'no temp file left behind');
  const cfg = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(cfg.current, 'prod');
  assert.deepEqual(cfg.contexts.prod, { hub: hub.url, token: hub.adminToken });

  await ok(['tenant', 'create', 'acme'], env);
  const ls = await ok(['tenant', 'ls', '--json'], env);
  assert.deepEqual(JSON.parse(ls.stdout).tenants.map((x: { name: string }) => x.name), ['acme']);
  const who = JSON.parse((await ok(['whoami', '--json'], env)).stdout);
  assert.equal(who.user, 'admin');
  assert.equal(who.vendorRole, 'admin');
  assert.equal(who.token.role, 'admin');
  assert.match((await ok(['whoami'], env)).stdout, /^roles\s+admin \(vendor-wide\)$/m);

  // A second context, `context use` and `context ls`.
  const viewer = await hub.tokenFor('viewer');
  await ok(['login', '--hub', hub.url + '/', '--token', viewer, '--context', 'ro'], env);
  let ctx = await ok(['context', 'ls'], env);
  assert.match(ctx.stdout, /^CURRENT\s+NAME\s+HUB\n/);
  assert.match(ctx.stdout, new RegExp(`^\\*\\s+ro\\s+${hub.url.replace(/\./g, '\\.')}$`, 'm'), 'the trailing slash is normalised away');
  assert.doesNotMatch(ctx.stdout + (await ok(['context', 'ls', '--json'], env)).stdout, new RegExp(viewer), 'tokens are never listed');
  await fails(['tenant', 'create', 'beta'], env, 3, 'FERRY_E_FORBIDDEN');
  await ok(['context', 'use', 'prod'], env);
  ctx = await ok(['context', 'ls', '--json'], env);
  assert.equal(JSON.parse(ctx.stdout).current, 'prod');
  await ok(['tenant', 'create', 'beta'], env);
  await fails(['context', 'use', 'nope'], env, 4, 'FERRY_E_NOT_FOUND');
});

test('without XDG_CONFIG_HOME the config goes to ~/.config/ferry/config.json', async (t) => {
  const hub = await startHub(t);
  const env = { ...cliEnv(t), XDG_CONFIG_HOME: undefined };
  await login(hub, env);
  const file = join(env.HOME, '.config', 'ferry', 'config.json');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(JSON.parse(readFileSync(file, 'utf8')).current, new URL(hub.url).host, 'the context is named after the hub by default');
  await ok(['tenant', 'ls'], env);
});

test('login with a bad token fails with exit 3 and saves nothing', async (t) => {
  const hub = await startHub(t);
  const env = cliEnv(t);
  await fails(['login', '--hub', hub.url, '--token', 'ferry_api_nope'], env, 3, 'FERRY_E_AUTH_INVALID');
  assert.equal(existsSync(join(env.XDG_CONFIG_HOME, 'ferry', 'config.json')), false);
  const r = await fails(['login', '--token', 'x'], env, 2);
  assert.match(r.stderr, /login needs --hub URL and --token TOKEN/);
});

test('precedence: flag over env over --context/FERRY_CONTEXT over the current context', async (t) => {
  const a = await startHub(t);
  const b = await startHub(t);
  assert.equal((await a.api('POST', '/v1/tenants', { name: 'on-a' })).status, 201);
  assert.equal((await b.api('POST', '/v1/tenants', { name: 'on-b' })).status, 201);
  const env = cliEnv(t);
  await login(b, env, ['--context', 'b']);
  await login(a, env, ['--context', 'a']); // current
  const tenants = async (args: string[], e: NodeJS.ProcessEnv) =>
    JSON.parse((await ok([...args, 'tenant', 'ls', '--json'], e)).stdout).tenants.map((x: { name: string }) => x.name);

  assert.deepEqual(await tenants([], env), ['on-a']);
  assert.deepEqual(await tenants(['--context', 'b'], env), ['on-b']);
  assert.deepEqual(await tenants([], { ...env, FERRY_CONTEXT: 'b' }), ['on-b']);
  assert.deepEqual(await tenants(['--context', 'a'], { ...env, FERRY_CONTEXT: 'b' }), ['on-a']);
  assert.deepEqual(await tenants([], { ...env, FERRY_HUB: b.url, FERRY_TOKEN: b.adminToken }), ['on-b']);
  assert.deepEqual(await tenants(['--hub', a.url, '--token', a.adminToken], { ...env, FERRY_HUB: b.url, FERRY_TOKEN: b.adminToken }), ['on-a']);

  // Env token over the context's token, flag token over the env token.
  const viewer = await a.tokenFor('viewer');
  await fails(['tenant', 'create', 'x'], { ...env, FERRY_TOKEN: viewer }, 3, 'FERRY_E_FORBIDDEN');
  await ok(['--token', a.adminToken, 'tenant', 'create', 'x'], { ...env, FERRY_TOKEN: viewer });
  // Global options also work after the subcommand.
  await fails(['tenant', 'create', 'y', '--token', viewer], env, 3, 'FERRY_E_FORBIDDEN');

  // A context's token is only ever sent to its own hub.
  const r = await fails(['--hub', b.url, 'tenant', 'ls'], env, 3, 'FERRY_E_AUTH_REQUIRED');
  assert.match(r.stderr, /no API token for http:\/\/127\.0\.0\.1:\d+ \(context a is for/);
  await fails(['--context', 'nope', 'tenant', 'ls'], env, 4, 'FERRY_E_NOT_FOUND');
});

test('no hub or token anywhere: exit 3 FERRY_E_AUTH_REQUIRED with a hint to log in', async (t) => {
  const env = cliEnv(t);
  const r = await fails(['tenant', 'ls'], env, 3, 'FERRY_E_AUTH_REQUIRED');
  assert.match(r.stderr, /ferry login --hub URL --token TOKEN/);
  const j = await fails(['agent', 'ls', '--json'], env, 3);
  assert.equal(JSON.parse(j.stderr).error.code, 'FERRY_E_AUTH_REQUIRED');
});

test('tenant create and ls: table, --json, duplicate (exit 5) and bad name (exit 7)', async (t) => {
  const hub = await startHub(t);
  const env = cliEnv(t, { FERRY_HUB: hub.url, FERRY_TOKEN: hub.adminToken });
  const c = await ok(['tenant', 'create', 'bank-a'], env);
  assert.match(c.stdout, /^created tenant bank-a \(ten_\w+\)\n$/);
  const cj = JSON.parse((await ok(['tenant', 'create', 'bank-b', '--json'], env)).stdout);
  assert.equal(cj.name, 'bank-b');
  assert.match(cj.id, /^ten_/);
  assert.ok(!Number.isNaN(Date.parse(cj.createdAt)));

  const ls = await ok(['tenant', 'ls'], env);
  const lines = ls.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^NAME\s+AGENTS\s+CREATED$/);
  assert.match(lines[1]!, /^bank-a\s+0\s+(just now|\ds ago)$/);
  assert.match(lines[2]!, /^bank-b\s+0\s+/);
  assert.equal(lines[0]!.indexOf('AGENTS'), lines[1]!.indexOf('0'), 'columns are aligned');
  const lj = JSON.parse((await ok(['tenant', 'ls', '--json'], env)).stdout);
  assert.deepEqual(Object.keys(lj.tenants[0]).sort(), ['agents', 'createdAt', 'id', 'name']);

  const dup = await fails(['tenant', 'create', 'bank-a'], env, 5, 'FERRY_E_CONFLICT');
  assert.match(dup.stderr, /tenant bank-a/);
  const bad = await fails(['tenant', 'create', 'Bank A'], env, 7, 'FERRY_E_VALIDATION');
  assert.match(bad.stderr, /lowercase letters, digits and dashes/);
});

test('token create prints only a token the hub accepts; agent ls/show show the enrolled agent', async (t) => {
  const hub = await startHub(t);
  const env = cliEnv(t, { FERRY_HUB: hub.url, FERRY_TOKEN: hub.adminToken });
  await ok(['tenant', 'create', 'acme'], env);
  await ok(['tenant', 'create', 'other'], env);

  const r = await ok(['token', 'create', '--tenant', 'acme'], env);
  assert.match(r.stdout, /^ferry_enr_[A-Za-z0-9_-]+\n$/, 'stdout is the token alone, for $(...)');
  const token = r.stdout.trim();
  assert.match(r.stderr, /tenant acme: single use, expires \d{4}-\d\d-\d\dT[\d:.]+Z \(in 1h\)/);
  assert.ok(!r.stderr.includes(token), 'the token is not repeated on stderr');

  const enrolled = await enrollAgent(t, hub, token, 'web-1');
  assert.equal(enrolled.tenant, 'acme');

  const ls = await ok(['agent', 'ls'], env);
  assert.match(ls.stdout, /^ID\s+TENANT\s+NAME\s+STATUS\s+LAST SEEN\s+VERSION\s+DOCKER\s+LABELS\n/);
  assert.match(ls.stdout, new RegExp(`^${enrolled.agentId}\\s+acme\\s+web-1\\s+disconnected\\s+-\\s+-\\s+-\\s+env=prod$`, 'm'));
  const lj = JSON.parse((await ok(['agent', 'ls', '--json', '--tenant', 'acme'], env)).stdout);
  assert.equal(lj.agents.length, 1);
  assert.equal(lj.agents[0].id, enrolled.agentId);
  const other = JSON.parse((await ok(['agent', 'ls', '--tenant', 'other', '--json'], env)).stdout);
  assert.deepEqual(other.agents, []);
  await fails(['agent', 'ls', '--tenant', 'nope'], env, 4, 'FERRY_E_NOT_FOUND');

  const show = JSON.parse((await ok(['agent', 'show', enrolled.agentId, '--json'], env)).stdout);
  assert.equal(show.id, enrolled.agentId);
  assert.equal(show.tenant, 'acme');
  assert.equal(show.name, 'web-1');
  assert.equal(show.status, 'disconnected');
  assert.deepEqual(show.labels, { env: 'prod' });
  assert.equal(show.fingerprint, enrolled.fingerprint);
  assert.equal(show.revokedAt, null);
  const human = await ok(['agent', 'show', enrolled.agentId], env);
  assert.match(human.stdout, new RegExp(`^fingerprint\\s+${enrolled.fingerprint.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  assert.match(human.stdout, /^status\s+disconnected$/m);

  const tenants = JSON.parse((await ok(['tenant', 'ls', '--json'], env)).stdout);
  assert.equal(tenants.tenants.find((x: { name: string }) => x.name === 'acme').agents, 1);

  // --ttl in other units, sent as ttlSeconds.
  const before = Date.now();
  const j = JSON.parse((await ok(['token', 'create', '--tenant', 'acme', '--ttl', '2d', '--json'], env)).stdout);
  assert.match(j.token, /^ferry_enr_/);
  assert.equal(j.tenant, 'acme');
  assert.ok(Math.abs(Date.parse(j.expiresAt) - (before + 2 * 86_400_000)) < 60_000, `expiresAt ${j.expiresAt}`);
  const s = await ok(['token', 'create', '--tenant', 'acme', '--ttl', '90s'], env);
  assert.match(s.stderr, /\(in 1m\)/);
  await fails(['token', 'create', '--tenant', 'nope'], env, 4, 'FERRY_E_NOT_FOUND');
});

test('agent revoke: status becomes revoked; unknown agent is exit 4', async (t) => {
  const hub = await startHub(t);
  const env = cliEnv(t, { FERRY_HUB: hub.url, FERRY_TOKEN: hub.adminToken });
  await ok(['tenant', 'create', 'acme'], env);
  const token = (await ok(['token', 'create', '--tenant', 'acme'], env)).stdout.trim();
  const { agentId } = await enrollAgent(t, hub, token, 'db-1');

  const r = await ok(['agent', 'revoke', agentId], env);
  assert.equal(r.stdout, `revoked agent ${agentId} (db-1, tenant acme)\n`);
  const show = JSON.parse((await ok(['agent', 'show', agentId, '--json'], env)).stdout);
  assert.equal(show.status, 'revoked');
  assert.ok(!Number.isNaN(Date.parse(show.revokedAt)));
  assert.match((await ok(['agent', 'ls'], env)).stdout, new RegExp(`^${agentId}\\s+acme\\s+db-1\\s+revoked\\s`, 'm'));

  const nf = await fails(['agent', 'show', 'agt_doesnotexist'], env, 4, 'FERRY_E_NOT_FOUND');
  assert.match(nf.stderr, /agent agt_doesnotexist/);
  await fails(['agent', 'revoke', 'agt_doesnotexist'], env, 4, 'FERRY_E_NOT_FOUND');
});

test('roles and tokens: viewer is refused (exit 3), a bad token is exit 3', async (t) => {
  const hub = await startHub(t);
  const viewer = cliEnv(t, { FERRY_HUB: hub.url, FERRY_TOKEN: await hub.tokenFor('viewer') });
  const f = await fails(['tenant', 'create', 'acme'], viewer, 3, 'FERRY_E_FORBIDDEN');
  assert.match(f.stderr, /needs tenant\.create across the vendor; person-\d+-\d+ is viewer \(vendor-wide\)/);
  assert.match(f.stderr, /Ask an admin/);
  await ok(['tenant', 'ls'], viewer);
  // a viewer lists only their own tokens, and cannot list another account's
  const mine = await ok(['api-token', 'ls'], viewer);
  assert.equal(mine.stdout.trim().split('\n').length, 2, mine.stdout);
  assert.doesNotMatch(mine.stdout, /admin-initial/);
  await fails(['api-token', 'ls', '--user', 'admin'], viewer, 3, 'FERRY_E_FORBIDDEN');

  const bad = cliEnv(t, { FERRY_HUB: hub.url, FERRY_TOKEN: 'ferry_api_not-a-token' });
  await fails(['tenant', 'ls'], bad, 3, 'FERRY_E_AUTH_INVALID');
});

test('api-token create, ls and revoke', async (t) => {
  const hub = await startHub(t);
  const env = cliEnv(t, { FERRY_HUB: hub.url, FERRY_TOKEN: hub.adminToken });
  const c = await ok(['api-token', 'create', '--name', 'ci', '--role', 'operator'], env);
  assert.match(c.stdout, /^ferry_api_\S+\n$/);
  assert.match(c.stderr, /API token tok_\w+ for ci \(operator, user admin\); it is shown only once/);
  const op = { ...env, FERRY_TOKEN: c.stdout.trim() };
  await ok(['tenant', 'create', 'acme'], env);
  await ok(['token', 'create', '--tenant', 'acme'], op);
  await fails(['tenant', 'create', 'other'], op, 3, 'FERRY_E_FORBIDDEN');

  const j = JSON.parse((await ok(['api-token', 'create', '--name', 'bot', '--role', 'viewer', '--json'], env)).stdout);
  assert.equal(j.name, 'bot');
  assert.equal(j.role, 'viewer');
  assert.match(j.token, /^ferry_api_/);

  const ls = await ok(['api-token', 'ls'], env);
  assert.match(ls.stdout, /^ID\s+USER\s+NAME\s+ROLE\s+TENANTS\s+STATUS\s+EXPIRES\s+LAST USED\n/);
  assert.match(ls.stdout, /^tok_\w+\s+admin\s+ci\s+operator\s+all\s+active\s/m);
  assert.ok(!ls.stdout.includes(j.token), 'secrets are never listed');
  const lj = JSON.parse((await ok(['api-token', 'ls', '--json'], env)).stdout);
  const ci = lj.tokens.find((x: { name: string }) => x.name === 'ci');
  assert.equal(ci.role, 'operator');

  const rv = await ok(['api-token', 'revoke', ci.id], env);
  assert.equal(rv.stdout, `revoked API token ${ci.id}\n`);
  await fails(['tenant', 'ls'], op, 3, 'FERRY_E_AUTH_INVALID');
  assert.match((await ok(['api-token', 'ls'], env)).stdout, /^tok_\w+\s+admin\s+ci\s+operator\s+all\s+revoked\s/m);
  await fails(['api-token', 'revoke', 'tok_nope'], env, 4, 'FERRY_E_NOT_FOUND');
});

test('unreachable hub: exit 6 FERRY_E_HUB_UNREACHABLE', async (t) => {
  const port = await closedPort();
  const env = cliEnv(t, { FERRY_HUB: `http://127.0.0.1:${port}`, FERRY_TOKEN: 'ferry_api_x' });
  const r = await fails(['tenant', 'ls'], env, 6, 'FERRY_E_HUB_UNREACHABLE');
  assert.match(r.stderr, /ECONNREFUSED/);
  assert.match(r.stderr, /Check the hub URL/);
  await fails(['login', '--hub', `http://127.0.0.1:${port}`, '--token', 'x'], cliEnv(t), 6, 'FERRY_E_HUB_UNREACHABLE');
  await fails(['--hub', 'ftp://hub', '--token', 'x', 'tenant', 'ls'], cliEnv(t), 7, 'FERRY_E_CONFIG_INVALID');
});

test('input and usage errors: bad --ttl is exit 7 naming the flag; commander usage errors are exit 2', async (t) => {
  const hub = await startHub(t);
  const env = cliEnv(t, { FERRY_HUB: hub.url, FERRY_TOKEN: hub.adminToken });
  await ok(['tenant', 'create', 'acme'], env);
  const half = await fails(['token', 'create', '--tenant', 'acme', '--ttl=90.5s'], env, 7, 'FERRY_E_VALIDATION');
  assert.match(half.stderr, /--ttl "90\.5s": whole seconds only/);
  for (const ttl of ['5x', '10', 'soon', '-1h']) {
    const r = await fails(['token', 'create', '--tenant', 'acme', `--ttl=${ttl}`], env, 7, 'FERRY_E_VALIDATION');
    assert.match(r.stderr, /--ttl "[^"]*": a duration like 500ms, 30s, 10m, 1h30m or 2d/);
  }
  const range = await fails(['token', 'create', '--tenant', 'acme', '--ttl', '30s'], env, 7, 'FERRY_E_VALIDATION');
  assert.match(range.stderr, /--ttl 30s: must be between 1m and 30d/);
  await fails(['token', 'create', '--tenant', 'acme', '--ttl', '31d'], env, 7, 'FERRY_E_VALIDATION');

  const usage = [
    ['tenant', 'frobnicate'],
    ['token', 'create'],
    ['api-token', 'create', '--name', 'x', '--role', 'root'],
    ['agent', 'show'],
    ['tenant', 'ls', '--bogus'],
  ];
  for (const args of usage) {
    const r = await ferry(args, env);
    assert.equal(r.code, 2, `ferry ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /error: /);
  }
  assert.equal((await ferry(['--help'], env)).code, 0);
});

test('--json errors are one JSON object on stderr', async (t) => {
  const hub = await startHub(t);
  const env = cliEnv(t, { FERRY_HUB: hub.url, FERRY_TOKEN: hub.adminToken });
  const r = await fails(['agent', 'show', 'agt_missing', '--json'], env, 4);
  const body = JSON.parse(r.stderr);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(body.error.code, 'FERRY_E_NOT_FOUND');
  assert.equal(body.error.message, 'No such resource: agent agt_missing');
  assert.match(body.error.hint, /ls/);
  await ok(['tenant', 'create', 'acme'], env);
  const dup = JSON.parse((await fails(['tenant', 'create', 'acme', '--json'], env, 5)).stderr);
  assert.equal(dup.error.code, 'FERRY_E_CONFLICT');
  const ttl = JSON.parse((await fails(['token', 'create', '--tenant', 'acme', '--ttl', 'x', '--json'], env, 7)).stderr);
  assert.equal(ttl.error.code, 'FERRY_E_VALIDATION');
});

/** A self-signed certificate for 127.0.0.1, or null when openssl is missing. */
function selfSigned(t: TestContext): { cert: string; key: string; certFile: string } | null {
  const dir = tempDir(t, 'ferry-tls-');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const r = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
  ]);
  if (r.error || r.status !== 0) return null;
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile };
}

test('https hub: untrusted is exit 6 FERRY_E_HUB_TLS; --ca-file, FERRY_CA_FILE and NODE_EXTRA_CA_CERTS make it trusted', async (t) => {
  const tls = selfSigned(t);
  if (!tls) return skipOrFail(t, 'openssl is not installed or failed; run `bash scripts/test-env.sh`');
  const hub = await startHub(t, { tls: { cert: tls.cert, key: tls.key } });
  assert.match(hub.url, /^https:/);
  const env = cliEnv(t, { FERRY_HUB: hub.url, FERRY_TOKEN: hub.adminToken });
  await fails(['tenant', 'ls'], env, 6, 'FERRY_E_HUB_TLS');
  await ok(['--ca-file', tls.certFile, 'tenant', 'ls'], env);
  await ok(['tenant', 'ls'], { ...env, FERRY_CA_FILE: tls.certFile });
  await ok(['tenant', 'ls'], { ...env, NODE_EXTRA_CA_CERTS: tls.certFile });
  await fails(['--ca-file', '/nonexistent/ca.pem', 'tenant', 'ls'], env, 7, 'FERRY_E_CONFIG_INVALID');

  // login keeps the CA file with the context.
  const plain = cliEnv(t);
  await ok(['login', '--hub', hub.url, '--token', hub.adminToken, '--ca-file', tls.certFile], plain);
  await ok(['tenant', 'ls'], plain);
});
