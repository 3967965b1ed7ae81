// Registries for relay tests: Debian's docker-registry started here on
// ephemeral ports (vendor, bank primary, bank standby), each with its own
// storage (optionally a small tmpfs, to be full) and optionally htpasswd
// auth; a counting TCP proxy that can slow the bytes it passes; and images
// built locally and pushed to them (a multi-layer image, a multi-arch index).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { buildTestImage, docker, dockerOk } from './docker.js';
import { freePort } from './faults.js';
import { waitFor } from './tmp.js';

export interface TestRegistry {
  host: string;
  url: string;
  port: number;
  dir: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Whether Debian's docker-registry is installed; a skip (a failure under CI) otherwise. */
export function requireRegistryBinary(t: TestContext): boolean {
  if (!spawnSync('docker-registry', ['--version']).error) return true;
  if (process.env.CI) throw new Error('docker-registry is not installed; run `bash scripts/test-env.sh`');
  t.skip('docker-registry is not installed; run `bash scripts/test-env.sh`');
  return false;
}

/**
 * A docker-registry on 127.0.0.1:<free port> with delete enabled, stopped
 * and removed after the test. `htpasswd` (a line from htpasswdLine) puts it
 * behind Basic auth; `tmpfsBytes` mounts its storage on a tmpfs of that size
 * (root only), so it fills up.
 */
export async function startRegistry(t: TestContext, opts: { name: string; htpasswd?: string; tmpfsBytes?: number } = { name: 'registry' }): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), `ferry-${opts.name}-`));
  const data = join(dir, 'data');
  mkdirSync(data);
  if (opts.tmpfsBytes) {
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${opts.tmpfsBytes}`, 'tmpfs', data]);
    if (r.status !== 0) throw new Error(`mount tmpfs: ${r.stderr.toString()}`);
  }
  const port = await freePort();
  const auth = opts.htpasswd ? `auth:\n  htpasswd:\n    realm: ferry-test\n    path: ${join(dir, 'htpasswd')}\n` : '';
  if (opts.htpasswd) writeFileSync(join(dir, 'htpasswd'), opts.htpasswd);
  const config = join(dir, 'config.yml');
  writeFileSync(config, `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${data}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: ferry-test-${port}\n${auth}`);
  let child: ChildProcess | undefined;
  let log = '';
  const reg: TestRegistry = {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    async start() {
      child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d: Buffer) => (log += d));
      child.stderr!.on('data', (d: Buffer) => (log += d));
      await waitFor(`${opts.name} registry on ${port} (${log.slice(-500)})`, async () => {
        const res = await fetch(`${reg.url}/v2/`).catch(() => null);
        return res !== null && (res.status === 200 || res.status === 401);
      }, 15_000, 50);
    },
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null) return;
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    },
  };
  await reg.start();
  t.after(async () => {
    await reg.stop();
    if (opts.tmpfsBytes) spawnSync('umount', ['-l', data]);
    rmSync(dir, { recursive: true, force: true });
  });
  return reg;
}

/** An htpasswd line with a bcrypt hash: htpasswd (apache2-utils) if present, else libxcrypt through perl. */
export function htpasswdLine(user: string, password: string): string | undefined {
  const h = spawnSync('htpasswd', ['-Bbn', user, password], { encoding: 'utf8' });
  if (h.status === 0) return h.stdout.trim();
  const abc = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const salt = [...randomBytes(21)].map((b) => abc[b % 64]).join('') + '.Oeu'[randomBytes(1)[0]! % 4];
  const p = spawnSync('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1])', password, `$2b$05$${salt}`], { encoding: 'utf8' });
  return p.status === 0 && p.stdout.startsWith('$2b$05$') && p.stdout.length === 60 ? `${user}:${p.stdout}` : undefined;
}

export interface CountingProxy {
  host: string;
  port: number;
  /** Bytes passed client -> server and server -> client since start (or reset). */
  up: number;
  down: number;
  reset(): void;
  /** Bytes per second client -> server (null: no limit). */
  limit: number | null;
  /** Bytes per second server -> client (null: no limit). */
  downLimit: number | null;
  /** Called with the running server -> client count after each chunk. */
  onDown?: (total: number) => void;
  /** Called with the running client -> server count after each chunk. */
  onUp?: (total: number) => void;
  /** When client -> server bytes last passed (ms since the epoch; 0: never). */
  lastUpAt: number;
}

/** A TCP proxy to `target` on 127.0.0.1 that counts bytes each way and can slow the upstream. */
export async function countingProxy(t: TestContext, targetPort: number): Promise<CountingProxy> {
  const sockets = new Set<Socket>();
  const p: CountingProxy = { host: '', port: 0, up: 0, down: 0, limit: null, downLimit: null, lastUpAt: 0, reset: () => ((p.up = 0), (p.down = 0)) };
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    const bucket = { at: Date.now(), sent: 0 };
    const downBucket = { at: Date.now(), sent: 0 };
    client.on('data', (d: Buffer) => {
      p.up += d.length;
      p.lastUpAt = Date.now();
      upstream.write(d);
      p.onUp?.(p.up);
      if (p.limit) {
        bucket.sent += d.length;
        const due = bucket.at + (bucket.sent * 1000) / p.limit - Date.now();
        if (due > 5) {
          client.pause();
          setTimeout(() => client.resume(), due);
        }
      }
    });
    upstream.on('data', (d: Buffer) => {
      if (client.destroyed) return void upstream.destroy(); // nobody reads them: not counted as delivered
      p.down += d.length;
      client.write(d);
      p.onDown?.(p.down);
      if (p.downLimit) {
        downBucket.sent += d.length;
        const due = downBucket.at + (downBucket.sent * 1000) / p.downLimit - Date.now();
        if (due > 5) {
          upstream.pause();
          setTimeout(() => upstream.resume(), due);
        }
      }
    });
    // A side that finishes lets the other flush what it still holds, then finish too; an error cuts both, and so does a
    // client gone (a process killed): a server that is only half-closed would go on sending what nobody reads.
    const cut = () => (client.destroy(), upstream.destroy());
    client.on('end', () => upstream.end()).on('error', cut).on('close', cut);
    upstream.on('end', () => client.end()).on('error', cut).on('close', () => client.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  p.port = (server.address() as { port: number }).port;
  p.host = `127.0.0.1:${p.port}`;
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return p;
}

/** Random bytes that gzip cannot shrink: a layer of about that size on the wire. */
export function noise(bytes: number): Buffer {
  return randomBytes(bytes);
}

/**
 * A runnable multi-layer image: the busybox test image plus one COPY layer
 * per entry of `layers` (path -> content), built with the engine's classic
 * builder (no network: FROM a local image). Identical leading layers of two
 * such images are the same layers (build cache), as in a vendor's next version.
 */
export async function layeredImage(name: string, tag: string, layers: Record<string, Buffer>[], base = 'ferry-test/relay-base'): Promise<string> {
  const b = await buildTestImage(base, 'v1', { cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'], files: { '/www/index.html': 'relay\n' } });
  const ctx = mkdtempSync(join(tmpdir(), 'ferry-build-'));
  try {
    const lines = [`FROM ${b.image}`];
    layers.forEach((files, i) => {
      const d = join(ctx, `l${i}`);
      for (const [path, content] of Object.entries(files)) {
        const dest = join(d, path);
        mkdirSync(join(dest, '..'), { recursive: true });
        writeFileSync(dest, content);
        spawnSync('touch', ['-d', '2020-01-01T00:00:00Z', dest]);
      }
      lines.push(`COPY l${i}/ /`);
    });
    lines.push('LABEL ferry.test=1');
    writeFileSync(join(ctx, 'Dockerfile'), lines.join('\n') + '\n');
    const r = spawnSync('docker', ['build', '-q', '-t', `${name}:${tag}`, ctx], { encoding: 'utf8', env: { ...process.env, DOCKER_BUILDKIT: '0' } });
    if (r.status !== 0) throw new Error(`docker build: ${r.stderr}`);
    return `${name}:${tag}`;
  } finally {
    rmSync(ctx, { recursive: true, force: true });
  }
}

/** Pushes a local image to a test registry as `repo:tag`; returns `host/repo@sha256:…`. */
export async function pushTo(reg: { host: string }, image: string, repo: string, tag: string): Promise<string> {
  const ref = `${reg.host}/${repo}:${tag}`;
  await dockerOk(['tag', image, ref]);
  const out = await dockerOk(['push', ref], { timeoutMs: 300_000 });
  await docker(['rmi', ref]);
  const digest = /digest: (sha256:[0-9a-f]{64})/.exec(out)?.[1];
  if (!digest) throw new Error(`no digest in push output:\n${out}`);
  return `${reg.host}/${repo}@${digest}`;
}

const INDEX = 'application/vnd.docker.distribution.manifest.list.v2+json';

/** Pushes two images and an index (manifest list) naming them for linux/amd64 and linux/arm64; returns the index's pinned reference. */
export async function pushIndex(reg: { url: string; host: string }, repo: string, tag: string, amd64: string, arm64: string): Promise<{ ref: string; children: string[] }> {
  const children: { digest: string; size: number; mediaType: string }[] = [];
  for (const [i, img] of [amd64, arm64].entries()) {
    const pinned = await pushTo(reg, img, repo, `${tag}-${i}`);
    const digest = pinned.slice(pinned.indexOf('@') + 1);
    const res = await fetch(`${reg.url}/v2/${repo}/manifests/${digest}`, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
    const body = Buffer.from(await res.arrayBuffer());
    children.push({ digest, size: body.length, mediaType: res.headers.get('content-type') ?? '' });
  }
  const doc = {
    schemaVersion: 2,
    mediaType: INDEX,
    manifests: children.map((c, i) => ({ ...c, platform: { architecture: i === 0 ? 'amd64' : 'arm64', os: 'linux' } })),
  };
  const body = Buffer.from(JSON.stringify(doc, null, 2));
  const put = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, { method: 'PUT', headers: { 'content-type': INDEX }, body });
  if (put.status !== 201) throw new Error(`index put: ${put.status} ${await put.text()}`);
  return { ref: `${reg.host}/${repo}@${put.headers.get('docker-content-digest')}`, children: children.map((c) => c.digest) };
}

/** HEAD of a manifest or blob in a test registry: its digest header, or null. */
export async function has(reg: { url: string }, repo: string, kind: 'manifests' | 'blobs', ref: string, auth?: string): Promise<string | null> {
  const res = await fetch(`${reg.url}/v2/${repo}/${kind}/${ref}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json', ...(auth ? { authorization: auth } : {}) },
  });
  return res.status === 200 ? (res.headers.get('docker-content-digest') ?? ref) : null;
}

/** Blob descriptors (config and layers) of a manifest in a test registry. */
export async function blobsOf(reg: { url: string }, repo: string, digest: string): Promise<{ digest: string; size: number }[]> {
  const res = await fetch(`${reg.url}/v2/${repo}/manifests/${digest}`, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
  const m = (await res.json()) as { config: { digest: string; size: number }; layers: { digest: string; size: number }[] };
  return [m.config, ...m.layers];
}
