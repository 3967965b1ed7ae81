// Pinning images against real registries: the local one on 127.0.0.1:5000
// that scripts/test-env.sh starts, and Debian's docker-registry started here
// as pull-through caches of it, one behind htpasswd (Basic) auth and one
// behind token (Bearer) auth with a token service in this process.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type OutgoingHttpHeaders, type Server, createServer } from 'node:http';
import { type Socket, createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import type { ComposeService } from '../../cli/compose.js';
import { parseImageRef, pinImages, resolveImage } from '../../cli/registry.js';
import { FerryError } from '../../shared/errors.js';
import { REGISTRY, type TestImage, buildTestImage, dockerOk, registryDigest, requireRegistry } from '../helpers/docker.js';
import { skipOrFail } from '../helpers/skip.js';
import { tempDir, waitFor } from '../helpers/tmp.js';
import { htpasswdLine } from '../helpers/registries.js';

const REPO = 'ferry-test/registry';
const IMAGE_OPTS = { push: true, files: { '/etc/ferry-test': 'image resolution\n' } };
let pushed: Promise<TestImage> | undefined;

/** A tiny image pushed to the local registry as ferry-test/registry:v1 (built once per run). */
function image(): Promise<TestImage> {
  pushed ??= buildTestImage(REPO, 'v1', IMAGE_OPTS);
  return pushed;
}

async function failure(p: Promise<unknown>): Promise<FerryError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof FerryError, String(err));
    return err;
  }
  assert.fail('expected a FerryError');
}

function listen(t: TestContext, server: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

async function closedPort(): Promise<number> {
  const server = createTcpServer();
  const port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as { port: number }).port)));
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Debian's docker-registry as a pull-through cache of the local registry,
 * with the given `auth:` section; stopped and its storage removed after the test.
 */
async function startRegistry(t: TestContext, auth: string): Promise<number> {
  if (spawnSync('docker-registry', ['--version']).error) {
    skipOrFail(t, 'docker-registry is not installed; run `bash scripts/test-env.sh`');
    return 0;
  }
  const dir = mkdtempSync(join(tmpdir(), 'ferry-registry-'));
  const port = await closedPort();
  const config = join(dir, 'config.yml');
  writeFileSync(config, `version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ${join(dir, 'data')}
http:
  addr: 127.0.0.1:${port}
  secret: ${randomBytes(16).toString('hex')}
${auth}
proxy:
  remoteurl: http://${REGISTRY}
`);
  const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d));
  child.stderr.on('data', (d: Buffer) => (log += d));
  const exited = new Promise((r) => child.on('exit', r));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor(`docker-registry on 127.0.0.1:${port}`, async () => {
    if (child.exitCode !== null) throw new Error(`docker-registry exited ${child.exitCode}: ${log}`);
    const res = await request(`http://127.0.0.1:${port}/v2/`);
    await res.body.dump();
    return res.statusCode === 401;
  }, 20_000, 100);
  return port;
}

/**
 * A front for the local registry on a port of its own: counts manifest
 * requests and, in `no-head` mode, refuses HEAD and strips Docker-Content-Digest
 * (what some registries and proxies do), so the digest must be computed.
 */
async function front(t: TestContext, mode: 'transparent' | 'no-head'): Promise<{ host: string; manifestRequests: string[] }> {
  const manifestRequests: string[] = [];
  const server = createServer((req, res) => {
    if (req.url?.includes('/manifests/')) manifestRequests.push(`${req.method} ${req.url}`);
    if (mode === 'no-head' && req.method === 'HEAD') return void res.writeHead(405).end();
    request(`http://${REGISTRY}${req.url}`, { method: req.method as 'GET' | 'HEAD', headers: { accept: req.headers.accept ?? '*/*' } })
      .then(async (up) => {
        const body = Buffer.from(await up.body.arrayBuffer());
        const headers: OutgoingHttpHeaders = { ...up.headers };
        for (const h of ['connection', 'keep-alive', 'transfer-encoding']) delete headers[h];
        if (mode === 'no-head') delete headers['docker-content-digest'];
        res.writeHead(up.statusCode, headers).end(body);
      })
      .catch((err: Error) => res.writeHead(502).end(err.message));
  });
  return { host: `127.0.0.1:${await listen(t, server)}`, manifestRequests };
}

test('image references parse the way Docker parses them', () => {
  const d = `sha256:${'0f'.repeat(32)}`;
  assert.deepEqual(parseImageRef('nginx'), { ref: 'nginx', name: 'nginx', registry: 'docker.io', repository: 'library/nginx', tag: 'latest' });
  assert.deepEqual(parseImageRef('acme/app:1.2'), { ref: 'acme/app:1.2', name: 'acme/app', registry: 'docker.io', repository: 'acme/app', tag: '1.2' });
  assert.deepEqual(parseImageRef('index.docker.io/redis:7'), { ref: 'index.docker.io/redis:7', name: 'index.docker.io/redis', registry: 'docker.io', repository: 'library/redis', tag: '7' });
  assert.deepEqual(parseImageRef('localhost/app'), { ref: 'localhost/app', name: 'localhost/app', registry: 'localhost', repository: 'app', tag: 'latest' });
  assert.deepEqual(parseImageRef(`127.0.0.1:5000/a/b@${d}`), { ref: `127.0.0.1:5000/a/b@${d}`, name: '127.0.0.1:5000/a/b', registry: '127.0.0.1:5000', repository: 'a/b', digest: d });
  assert.deepEqual(parseImageRef(`registry.example.com/app:v1@${d}`).digest, d);
  assert.equal(parseImageRef(`registry.example.com/app:v1@${d}`).tag, undefined);
  for (const bad of ['', 'Nginx', 'app:', 'app:-x', 'app@sha256:abc', `app@sha512:${'0'.repeat(128)}`, '/app', 'a//b', 'foo:bar/baz', 'Registry.Example.com/app']) {
    assert.throws(() => parseImageRef(bad), (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_VALIDATION', bad);
  }
});

test('a tag resolves to the digest the registry reports', async (t) => {
  if (!(await requireRegistry(t))) return;
  const img = await image();
  const pinned = await resolveImage(`${REGISTRY}/${REPO}:v1`);
  assert.equal(pinned, `${REGISTRY}/${REPO}@${img.digest}`);
  const repoDigests = JSON.parse(await dockerOk(['image', 'inspect', '--format', '{{json .RepoDigests}}', img.image])) as string[];
  assert.ok(repoDigests.includes(pinned), `${pinned} not in ${repoDigests.join(', ')}`);
  assert.equal(pinned.split('@')[1], await registryDigest(REPO, 'v1'));

  const latest = await buildTestImage(REPO, 'latest', IMAGE_OPTS);
  assert.equal(await resolveImage(`${REGISTRY}/${REPO}`), latest.ref, 'no tag means latest');
});

test('a digest reference is checked to exist and kept', async (t) => {
  if (!(await requireRegistry(t))) return;
  const img = await image();
  assert.equal(await resolveImage(img.ref!), img.ref);
  assert.equal(await resolveImage(`${REGISTRY}/${REPO}:some-tag@${img.digest}`), img.ref, 'the tag beside a digest is dropped');
  const missing = await failure(resolveImage(`${REGISTRY}/${REPO}@sha256:${'0'.repeat(64)}`));
  assert.equal(missing.code, 'FERRY_E_IMAGE_NOT_FOUND');
});

test('an unknown tag or repository is FERRY_E_IMAGE_NOT_FOUND naming the image', async (t) => {
  if (!(await requireRegistry(t))) return;
  await image();
  const tag = await failure(resolveImage(`${REGISTRY}/${REPO}:no-such-tag`));
  assert.equal(tag.code, 'FERRY_E_IMAGE_NOT_FOUND');
  assert.match(tag.message, new RegExp(`${REGISTRY}/${REPO}:no-such-tag is not in registry ${REGISTRY}`));
  const repo = await failure(resolveImage(`${REGISTRY}/ferry-test/no-such-repo-${randomBytes(4).toString('hex')}:v1`));
  assert.equal(repo.code, 'FERRY_E_IMAGE_NOT_FOUND');
});

test('an unreachable or silent registry is FERRY_E_REGISTRY_UNREACHABLE naming it', async (t) => {
  const port = await closedPort();
  const refused = await failure(resolveImage(`127.0.0.1:${port}/app:v1`));
  assert.equal(refused.code, 'FERRY_E_REGISTRY_UNREACHABLE');
  assert.match(refused.message, new RegExp(`registry 127\\.0\\.0\\.1:${port} at http://127\\.0\\.0\\.1:${port}: ECONNREFUSED`));

  const sockets: Socket[] = [];
  const silent = createTcpServer((s) => void sockets.push(s)); // accepts, never answers
  t.after(() => sockets.forEach((s) => s.destroy()));
  const silentPort = await listen(t, silent);
  const started = Date.now();
  const quiet = await failure(resolveImage(`127.0.0.1:${silentPort}/app:v1`, { timeoutMs: 300 }));
  assert.equal(quiet.code, 'FERRY_E_REGISTRY_UNREACHABLE');
  assert.match(quiet.message, /no answer within 300 ms/);
  assert.ok(Date.now() - started < 5_000);

  // Names that cannot resolve; https unless the host is marked insecure.
  const dns = await failure(resolveImage('registry.invalid/app:v1', { timeoutMs: 5_000 }));
  assert.equal(dns.code, 'FERRY_E_REGISTRY_UNREACHABLE');
  assert.match(dns.message, /registry registry\.invalid at https:\/\/registry\.invalid: /);
  const insecure = await failure(resolveImage('registry.invalid/app:v1', { timeoutMs: 5_000, insecure: ['registry.invalid'] }));
  assert.match(insecure.message, /at http:\/\/registry\.invalid: /);
});

test('without a digest header or HEAD, the digest is the sha256 of the manifest', async (t) => {
  if (!(await requireRegistry(t))) return;
  const img = await image();
  const { host, manifestRequests } = await front(t, 'no-head');
  assert.equal(await resolveImage(`${host}/${REPO}:v1`), `${host}/${REPO}@${img.digest}`);
  assert.deepEqual(manifestRequests, [`HEAD /v2/${REPO}/manifests/v1`, `GET /v2/${REPO}/manifests/v1`]);
});

test('a registry with htpasswd auth: no or wrong credentials are FERRY_E_REGISTRY_AUTH, right ones resolve', async (t) => {
  if (!(await requireRegistry(t))) return;
  const line = htpasswdLine('ferry', 'right-password');
  if (!line) return void skipOrFail(t, 'no bcrypt tool: install apache2-utils (htpasswd) or perl with libxcrypt');
  const dir = tempDir(t);
  writeFileSync(join(dir, 'htpasswd'), `${line}\n`);
  const img = await image();
  const port = await startRegistry(t, `auth:\n  htpasswd:\n    realm: ferry-test\n    path: ${join(dir, 'htpasswd')}`);
  if (!port) return;
  const ref = `127.0.0.1:${port}/${REPO}:v1`;

  const none = await failure(resolveImage(ref));
  assert.equal(none.code, 'FERRY_E_REGISTRY_AUTH');
  assert.match(none.message, new RegExp(`registry 127\\.0\\.0\\.1:${port} needs credentials for ${REPO}: give --registry-user`));
  const wrong = await failure(resolveImage(ref, { username: 'ferry', password: 'wrong-password' }));
  assert.equal(wrong.code, 'FERRY_E_REGISTRY_AUTH');
  assert.match(wrong.message, /refused access to ferry-test\/registry \(HTTP 401 with the given credentials\)/);
  const elsewhere = await failure(resolveImage(ref, { username: 'ferry', password: 'right-password', credentialsFor: 'other.example.com' }));
  assert.match(elsewhere.message, /needs credentials/, 'credentials for another registry are not sent');

  assert.equal(await resolveImage(ref, { username: 'ferry', password: 'right-password' }), `127.0.0.1:${port}/${REPO}@${img.digest}`);
  assert.equal(await resolveImage(ref, { username: 'ferry', password: 'right-password', credentialsFor: `127.0.0.1:${port}` }), `127.0.0.1:${port}/${REPO}@${img.digest}`);
});

test('a registry with token auth: the token service gets the scope and the credentials', async (t) => {
  if (!(await requireRegistry(t))) return;
  const dir = tempDir(t);
  const ssl = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=ferry-test-token-issuer', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { encoding: 'utf8' });
  if (ssl.status !== 0) {
    return void skipOrFail(t, `openssl is missing or failed (${ssl.error?.message ?? ssl.stderr.trim()}); run \`bash scripts/test-env.sh\``);
  }
  const key = createPrivateKey(readFileSync(join(dir, 'key.pem')));
  const x5c = new X509Certificate(readFileSync(join(dir, 'cert.pem'))).raw.toString('base64');
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const asked: { query: string; user?: string }[] = [];
  const tokens = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const user = req.headers.authorization ? Buffer.from(req.headers.authorization.replace(/^Basic /, ''), 'base64').toString() : undefined;
    asked.push({ query: url.search, ...(user && { user }) });
    if (user !== 'ferry:token-password') return void res.writeHead(401).end('{"details":"bad credentials"}');
    const [type, name, actions] = (url.searchParams.get('scope') ?? '').split(':');
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'ferry-test-issuer', sub: 'ferry', aud: url.searchParams.get('service'), iat: now, nbf: now - 10, exp: now + 300, jti: randomBytes(8).toString('hex'), access: [{ type, name, actions: actions?.split(',') }] };
    const unsigned = `${b64({ typ: 'JWT', alg: 'ES256', x5c: [x5c] })}.${b64(claims)}`;
    const signature = sign('sha256', Buffer.from(unsigned), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${unsigned}.${signature}` }));
  });
  const tokenPort = await listen(t, tokens);
  const img = await image();
  const port = await startRegistry(t, `auth:
  token:
    realm: http://127.0.0.1:${tokenPort}/token
    service: ferry-test-registry
    issuer: ferry-test-issuer
    rootcertbundle: ${join(dir, 'cert.pem')}`);
  if (!port) return;
  const ref = `127.0.0.1:${port}/${REPO}:v1`;

  assert.equal(await resolveImage(ref, { username: 'ferry', password: 'token-password' }), `127.0.0.1:${port}/${REPO}@${img.digest}`);
  assert.deepEqual(asked.at(-1), { query: `?service=ferry-test-registry&scope=${encodeURIComponent(`repository:${REPO}:pull`)}`, user: 'ferry:token-password' });

  const wrong = await failure(resolveImage(ref, { username: 'ferry', password: 'nope' }));
  assert.equal(wrong.code, 'FERRY_E_REGISTRY_AUTH');
  assert.match(wrong.message, new RegExp(`token service http://127\\.0\\.0\\.1:${tokenPort} for registry 127\\.0\\.0\\.1:${port} refused the given credentials`));
  const anonymous = await failure(resolveImage(ref));
  assert.equal(anonymous.code, 'FERRY_E_REGISTRY_AUTH');
  assert.match(anonymous.message, /refused an anonymous request/);
});

test('pinImages resolves each distinct image once and names the services of a missing one', async (t) => {
  if (!(await requireRegistry(t))) return;
  const img = await image();
  const { host, manifestRequests } = await front(t, 'transparent');
  const svc = (imageRef: string): ComposeService => ({
    imageRef, environment: {}, ports: [], volumes: [], networks: ['default'], dependsOn: {}, restart: 'no', labels: {},
    stopGracePeriodMs: 10_000, replicas: 1, updateOrder: 'stop-first',
  });
  const services = { web: svc(`${host}/${REPO}:v1`), worker: svc(`${host}/${REPO}:v1`), cache: svc(`${host}/${REPO}@${img.digest}`) };
  const pinned = await pinImages(services, { concurrency: 2 });
  const { imageRef: _drop, ...rest } = services.web;
  assert.deepEqual(pinned.web, { image: `${host}/${REPO}@${img.digest}`, ...rest });
  assert.equal(pinned.worker!.image, `${host}/${REPO}@${img.digest}`);
  assert.equal(pinned.cache!.image, `${host}/${REPO}@${img.digest}`);
  assert.ok(!('imageRef' in pinned.web!));
  assert.equal(manifestRequests.length, 2, manifestRequests.join('\n'));

  const missing = await failure(pinImages({ ...services, api: svc(`${host}/${REPO}:gone`), jobs: svc(`${host}/${REPO}:gone`) }));
  assert.equal(missing.code, 'FERRY_E_IMAGE_NOT_FOUND');
  assert.match(missing.message, new RegExp(`${REPO}:gone is not in registry 127\\.0\\.0\\.1:\\d+ \\(services api, jobs\\)`));
});
