// Fault injection for the reconciler's real-engine tests: a registry front
// that lies about manifests, the agent's own containers/networks/volumes as
// the engine lists them, its journal, and small process and port helpers.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { JOURNAL_FILE } from '../../agent/reconcile/journal.js';
import { docker, dockerOk, REGISTRY } from './docker.js';
import type { Daemon } from './proc.js';

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface OwnedContainer {
  id: string;
  name: string;
  state: string;
  startedAt: string;
  labels: Record<string, string>;
}

/** The containers carrying `ferry.agent=<id>`, as `docker inspect` sees them. */
export async function ownedContainers(agentId: string): Promise<OwnedContainer[]> {
  const ids = (await dockerOk(['ps', '-aq', '--no-trunc', '--filter', `label=ferry.agent=${agentId}`])).split('\n').filter(Boolean);
  if (ids.length === 0) return [];
  const r = await docker(['inspect', ...ids]);
  // a container may go between ps and inspect: inspect prints what it found and exits non-zero
  const list = JSON.parse(r.stdout || '[]') as { Id: string; Name: string; State: { Status: string; StartedAt: string }; Config: { Labels: Record<string, string> | null } }[];
  return list.map((c) => ({ id: c.Id, name: c.Name.replace(/^\//, ''), state: c.State.Status, startedAt: c.State.StartedAt, labels: c.Config.Labels ?? {} }));
}

/** The image reference the agent's one container was created from (none running is an error). */
export async function containerImage(agentId: string): Promise<string> {
  const [c] = await ownedContainers(agentId);
  if (!c) throw new Error(`no container of ${agentId}`);
  return (await dockerOk(['inspect', '--format', '{{.Config.Image}}', c.id])).trim();
}

/** Names of the networks or volumes carrying `ferry.agent=<id>`. */
export async function ownedNames(kind: 'network' | 'volume', agentId: string): Promise<string[]> {
  const out = await dockerOk([kind, 'ls', '--filter', `label=ferry.agent=${agentId}`, '--format', '{{.Name}}']);
  return out.split('\n').filter(Boolean).sort();
}

/** The agent's journal records, oldest first (a torn last line is skipped). */
export function journal(stateDir: string): { event: string; kind?: string; what?: string; seq?: number }[] {
  let text = '';
  try {
    text = readFileSync(join(stateDir, JOURNAL_FILE), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
}

/** Waits for a daemon to exit; resolves with the signal that ended it (or `exit <code>`). */
export async function exitOf(d: Daemon, timeoutMs: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`process still running after ${timeoutMs} ms:\n${d.output().slice(-3000)}`)), timeoutMs);
  });
  try {
    const code = await Promise.race([d.exited, timeout]);
    return d.child.signalCode ?? `exit ${code}`;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Makes the engine forget a pushed image's registry references (tag and
 * digest), so that the next use of `repo@digest` needs a pull. The image
 * itself stays under its local name, so the pull has no layers to fetch.
 */
export async function forgetPulled(ref: string, tag: string): Promise<void> {
  const repo = ref.slice(0, ref.indexOf('@'));
  await docker(['rmi', `${repo}:${tag}`]);
  await docker(['rmi', ref]);
  const still = await docker(['image', 'inspect', ref]);
  if (still.code === 0) throw new Error(`the engine still resolves ${ref} after rmi`);
}

export interface ManifestFront {
  /** `127.0.0.1:<port>`: use as the registry host of an image reference. */
  host: string;
  /** Manifest requests (by digest) that were answered with altered bytes. */
  altered: string[];
  /** Every request line seen, for diagnostics. */
  seen: string[];
}

const MANIFEST_BY_DIGEST = /^\/v2\/(.+)\/manifests\/(sha256:[0-9a-f]{64})$/;

/**
 * A registry front on 127.0.0.1:<ephemeral> that passes everything through to
 * the local registry, except GET/HEAD of a manifest by digest: it fetches the
 * real manifest, hands it to `alter`, and serves the result while claiming
 * the requested digest (Docker-Content-Digest) — a registry (or a man in the
 * middle) serving other bytes under a pinned digest.
 */
export async function manifestFront(t: TestContext, alter: (manifest: Buffer, repo: string, digest: string) => Promise<Buffer> | Buffer): Promise<ManifestFront> {
  const front: ManifestFront = { host: '', altered: [], seen: [] };
  const upstream = (req: IncomingMessage, path: string, method = req.method ?? 'GET') =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const headers = { ...req.headers, host: REGISTRY };
      const up = httpRequest({ host: '127.0.0.1', port: Number(REGISTRY.split(':')[1]), method, path, headers }, resolve);
      up.on('error', reject);
      if (method === 'GET' || method === 'HEAD') up.end();
      else req.pipe(up);
    });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/';
    front.seen.push(`${req.method} ${path}`);
    void (async () => {
      const m = MANIFEST_BY_DIGEST.exec(path);
      if (m && (req.method === 'GET' || req.method === 'HEAD')) {
        const [, repo, digest] = m as unknown as [string, string, string];
        const real = await upstream(req, path, 'GET');
        const chunks: Buffer[] = [];
        for await (const c of real) chunks.push(c as Buffer);
        if (real.statusCode !== 200) {
          res.writeHead(real.statusCode ?? 502, real.headers);
          return res.end(Buffer.concat(chunks));
        }
        const body = await alter(Buffer.concat(chunks), repo, digest);
        front.altered.push(`${req.method} ${path}`);
        res.writeHead(200, {
          'content-type': real.headers['content-type'] ?? 'application/vnd.docker.distribution.manifest.v2+json',
          'content-length': String(body.length),
          'docker-content-digest': digest,
          'docker-distribution-api-version': 'registry/2.0',
          etag: `"${digest}"`,
        });
        return res.end(req.method === 'HEAD' ? undefined : body);
      }
      const up = await upstream(req, path);
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    })().catch((err: Error) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(String(err.message));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  front.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return front;
}

const SCHEMA2 = 'application/vnd.docker.distribution.manifest.v2+json';

/**
 * Stores in the local registry a manifest no engine has seen: the manifest of
 * `repo:tag` with a random annotation (same config and layers, so the image
 * is the same), and returns its digest. Engines keep manifests they pulled in
 * a content store keyed by digest and reuse them without asking the registry
 * again, so only a fresh digest makes an engine read what a registry serves.
 */
export async function freshManifest(repo: string, tag: string): Promise<string> {
  const res = await fetch(`http://${REGISTRY}/v2/${repo}/manifests/${tag}`, { headers: { accept: SCHEMA2 } });
  if (res.status !== 200) throw new Error(`manifest ${repo}:${tag}: ${res.status}`);
  const doc = (await res.json()) as Record<string, unknown>;
  if (doc.mediaType !== SCHEMA2) throw new Error(`manifest ${repo}:${tag} is ${String(doc.mediaType)}`);
  const body = Buffer.from(JSON.stringify({ ...doc, annotations: { 'ferry.test.nonce': randomBytes(8).toString('hex') } }, null, 3));
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const put = await fetch(`http://${REGISTRY}/v2/${repo}/manifests/${digest}`, { method: 'PUT', headers: { 'content-type': SCHEMA2 }, body });
  if (put.status !== 201) throw new Error(`manifest put ${repo}@${digest}: ${put.status} ${await put.text()}`);
  return digest;
}
