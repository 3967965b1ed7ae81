// Integration helpers for the real Docker engine and the local registry that
// `scripts/test-env.sh` starts. Images are made here, with no internet: a
// root filesystem holding only a static busybox is `docker import`ed, and can
// be pushed to 127.0.0.1:5000 so tests get real `repo@sha256:` digests.
//
// Tests talk to Docker through the CLI here (what a user would type), never
// through dockerode: the agent's engine adapter is what is under test.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readSync, closeSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { request } from 'undici';
import { skipOrFail } from './skip.js';

export const REGISTRY = '127.0.0.1:5000';
/** Label on everything a test creates, so `cleanupByLabel` finds it. */
export const TEST_LABEL = 'ferry.test';
const CLI = process.env.FERRY_TEST_DOCKER_CLI ?? 'docker';

export interface DockerResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the docker CLI to completion; never throws on a non-zero exit. */
export function docker(args: string[], opts: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<DockerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(CLI, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined); // the CLI may exit before reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs the docker CLI and returns trimmed stdout; throws with stderr on failure. */
export async function dockerOk(args: string[], opts: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<string> {
  const r = await docker(args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout.trim();
}

/** Whether a Docker engine answers `docker version` (client and server). */
export async function dockerAvailable(): Promise<boolean> {
  try {
    const r = await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 15_000 });
    return r.code === 0 && r.stdout.trim() !== '';
  } catch {
    return false; // no docker CLI at all
  }
}

/**
 * For the first line of a Docker test: true when the engine answers. When it
 * does not, the test fails under CI (where `.ci/run` starts the engine, so a
 * missing one is a bug) and is skipped elsewhere, with the way to fix it.
 */
export async function requireDocker(t: TestContext): Promise<boolean> {
  if (await dockerAvailable()) return true;
  skipOrFail(t, 'no Docker engine answers; run `bash scripts/test-env.sh` (as root) first');
  return false;
}

/** Docker and the local registry on 127.0.0.1:5000, or a skip (a failure under CI, where both must run). */
export async function requireRegistry(t: TestContext): Promise<boolean> {
  if (!(await requireDocker(t))) return false;
  if (await registryAvailable()) return true;
  skipOrFail(t, `no registry answers on http://${REGISTRY}/v2/; run \`bash scripts/test-env.sh\` first`);
  return false;
}

/** The engine's version as `docker version` prints it. */
export function serverVersion(): Promise<string> {
  return dockerOk(['version', '--format', '{{.Server.Version}}']);
}

// ---- images ---------------------------------------------------------------

export interface TestImageOptions {
  /** CMD, exec form. Default: a shell that sleeps until stopped. */
  cmd?: string[];
  entrypoint?: string[];
  env?: Record<string, string>;
  labels?: Record<string, string>;
  /** Ports for EXPOSE, e.g. [80] or ['53/udp']. */
  expose?: (number | string)[];
  workdir?: string;
  user?: string;
  /** Extra files in the root filesystem: absolute path -> content. */
  files?: Record<string, string | Buffer>;
  /** Busybox applets linked into /bin besides the default set. */
  applets?: string[];
  /** Push to the local registry and return its digest. */
  push?: boolean;
}

export interface TestImage {
  /** Local reference, `name:tag`. */
  image: string;
  /** Image id, `sha256:…`. */
  id: string;
  /** Registry repository, `127.0.0.1:5000/name` (when pushed). */
  repo?: string;
  /** Manifest digest in the registry, `sha256:…` (when pushed). */
  digest?: string;
  /** Pinned reference `127.0.0.1:5000/name@sha256:…` (when pushed). */
  ref?: string;
}

const DEFAULT_APPLETS = [
  'sh', 'ash', 'httpd', 'sleep', 'cat', 'echo', 'printf', 'ls', 'mkdir', 'rm', 'touch', 'env', 'true', 'false', 'test', '[',
  'kill', 'ps', 'date', 'hostname', 'id', 'wget', 'nc', 'grep', 'sed', 'head', 'tail', 'wc', 'tee', 'uname', 'ip', 'ping', 'nslookup',
];

const SPEC_LABEL = 'ferry.test.image-spec';
const building = new Map<string, Promise<TestImage>>();

/**
 * Makes (or reuses) a tiny local image from a static busybox: no base image,
 * no network. An image with the same name, tag and options is not rebuilt
 * (its options' hash is stored in a label); with `push`, it is pushed to the
 * local registry once and its real manifest digest returned.
 */
export function buildTestImage(name: string, tag = 'latest', opts: TestImageOptions = {}): Promise<TestImage> {
  const key = `${name}:${tag}`;
  const pending = building.get(key);
  if (pending) return pending;
  const p = build(name, tag, opts).finally(() => building.delete(key));
  building.set(key, p);
  return p;
}

async function build(name: string, tag: string, opts: TestImageOptions): Promise<TestImage> {
  const image = `${name}:${tag}`;
  const spec = specHash(opts);
  let id = await existingImage(image, spec);
  if (!id) {
    const root = mkdtempSync(join(tmpdir(), 'ferry-rootfs-'));
    try {
      makeRootfs(root, opts);
      const tarball = `${root}.tar`;
      await run('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '-cf', tarball, '.']);
      try {
        id = await dockerOk(['import', ...importChanges(opts, spec), tarball, image]);
      } finally {
        rmSync(tarball, { force: true });
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
  if (!opts.push) return { image, id };
  return { image, id, ...(await pushImage(image, name, tag)) };
}

async function existingImage(image: string, spec: string): Promise<string | undefined> {
  const r = await docker(['image', 'inspect', '--format', `{{.Id}} {{index .Config.Labels "${SPEC_LABEL}"}}`, image]);
  if (r.code !== 0) return undefined;
  const [id, have] = r.stdout.trim().split(' ');
  return have === spec ? id : undefined;
}

function specHash(opts: TestImageOptions): string {
  const { push: _push, files, ...rest } = opts;
  const h = createHash('sha256').update(JSON.stringify(rest));
  for (const [path, content] of Object.entries(files ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    h.update(`\0${path}\0`).update(content);
  }
  return h.digest('hex').slice(0, 16);
}

function importChanges(opts: TestImageOptions, spec: string): string[] {
  const changes = [`CMD ${JSON.stringify(opts.cmd ?? ['/bin/sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done'])}`];
  if (opts.entrypoint) changes.push(`ENTRYPOINT ${JSON.stringify(opts.entrypoint)}`);
  changes.push('ENV PATH=/bin');
  for (const [k, v] of Object.entries(opts.env ?? {})) changes.push(`ENV ${k}=${JSON.stringify(v)}`);
  const labels = { [TEST_LABEL]: '1', [SPEC_LABEL]: spec, ...opts.labels };
  for (const [k, v] of Object.entries(labels)) changes.push(`LABEL ${JSON.stringify(k)}=${JSON.stringify(v)}`);
  for (const p of opts.expose ?? []) changes.push(`EXPOSE ${p}`);
  if (opts.workdir) changes.push(`WORKDIR ${opts.workdir}`);
  if (opts.user) changes.push(`USER ${opts.user}`);
  return changes.flatMap((c) => ['--change', c]);
}

/** The static busybox to put in images: $FERRY_TEST_BUSYBOX, or the host's. */
function findBusybox(): string {
  const candidates = [process.env.FERRY_TEST_BUSYBOX, '/bin/busybox', '/usr/bin/busybox'].filter((p): p is string => !!p);
  const path = candidates.find((p) => existsSync(p));
  if (!path) throw new Error('no busybox found; run `bash scripts/test-env.sh` (installs busybox-static)');
  if (hasInterpreter(path)) throw new Error(`${path} is dynamically linked and cannot run in an empty image; install busybox-static (bash scripts/test-env.sh)`);
  return path;
}

/** True when an ELF file names a program interpreter (PT_INTERP), i.e. is not static. */
function hasInterpreter(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(64);
    readSync(fd, head, 0, 64, 0);
    if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return false; // only ELF64 little-endian is checked
    const phoff = Number(head.readBigUInt64LE(0x20));
    const phentsize = head.readUInt16LE(0x36);
    const phnum = head.readUInt16LE(0x38);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) if (ph.readUInt32LE(i * phentsize) === 3) return true;
    return false;
  } finally {
    closeSync(fd);
  }
}

function makeRootfs(root: string, opts: TestImageOptions): void {
  for (const d of ['bin', 'etc', 'tmp', 'www', 'data', 'proc', 'sys', 'dev']) mkdirSync(join(root, d), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);
  copyFileSync(findBusybox(), join(root, 'bin', 'busybox'));
  chmodSync(join(root, 'bin', 'busybox'), 0o755);
  for (const a of new Set([...DEFAULT_APPLETS, ...(opts.applets ?? [])])) symlinkSync('busybox', join(root, 'bin', a));
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  for (const [path, content] of Object.entries(opts.files ?? {})) {
    const dest = join(root, path.replace(/^\/+/, ''));
    if (!dest.startsWith(root + '/')) throw new Error(`file path ${path} escapes the image root`);
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, content);
  }
}

// ---- registry -------------------------------------------------------------

const MANIFEST_TYPES = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

/** Whether the local registry answers on http://127.0.0.1:5000/v2/. */
export async function registryAvailable(): Promise<boolean> {
  try {
    const res = await request(`http://${REGISTRY}/v2/`, { headersTimeout: 5_000, bodyTimeout: 5_000 });
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    return false;
  }
}

/** The registry's `Docker-Content-Digest` for `repo:tagOrDigest` (repo without the registry host), or undefined. */
export async function registryDigest(repo: string, tagOrDigest: string): Promise<string | undefined> {
  const res = await request(`http://${REGISTRY}/v2/${repo}/manifests/${tagOrDigest}`, { method: 'HEAD', headers: { accept: MANIFEST_TYPES } });
  await res.body.dump();
  const d = res.headers['docker-content-digest'];
  return res.statusCode === 200 && typeof d === 'string' ? d : undefined;
}

async function pushImage(image: string, name: string, tag: string): Promise<{ repo: string; digest: string; ref: string }> {
  const repo = `${REGISTRY}/${name}`;
  // Reuse an earlier push of this very image if the registry still has it under this tag.
  const known = await docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', image]);
  if (known.code === 0) {
    const digests = (JSON.parse(known.stdout) as string[] | null) ?? [];
    const mine = digests.find((d) => d.startsWith(`${repo}@`))?.slice(repo.length + 1);
    if (mine && (await registryDigest(name, tag).catch(() => undefined)) === mine) return { repo, digest: mine, ref: `${repo}@${mine}` };
  }
  await dockerOk(['tag', image, `${repo}:${tag}`]);
  const out = await dockerOk(['push', `${repo}:${tag}`], { timeoutMs: 300_000 });
  const digest = /digest: (sha256:[0-9a-f]{64})/.exec(out)?.[1] ?? (await registryDigest(name, tag));
  if (!digest) throw new Error(`pushed ${repo}:${tag} but found no digest in:\n${out}`);
  return { repo, digest, ref: `${repo}@${digest}` };
}

// ---- cleanup --------------------------------------------------------------

/**
 * Removes the containers (with their anonymous volumes), networks and volumes
 * carrying `label` (`key` or `key=value`). Images are left: they are a cache.
 */
export async function cleanupByLabel(label: string): Promise<void> {
  const filter = ['--filter', `label=${label}`];
  const ids = (out: string) => out.split('\n').map((s) => s.trim()).filter(Boolean);
  const containers = ids(await dockerOk(['ps', '-aq', ...filter]));
  if (containers.length) await dockerOk(['rm', '-f', '-v', ...containers]);
  const networks = ids(await dockerOk(['network', 'ls', '-q', ...filter]));
  if (networks.length) await dockerOk(['network', 'rm', ...networks]);
  const volumes = ids(await dockerOk(['volume', 'ls', '-q', ...filter]));
  if (volumes.length) await dockerOk(['volume', 'rm', '-f', ...volumes]);
}

/**
 * A label unique to this test (`ferry.test.run=<random>`), whose containers,
 * networks and volumes are removed after the test, pass or fail.
 */
export function testLabel(t: TestContext): string {
  const label = `${TEST_LABEL}.run=${randomBytes(6).toString('hex')}`;
  t.after(() => cleanupByLabel(label));
  return label;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim()}`))));
  });
}
