// The hub's registry origin for agents: the only place an agent inside a
// bank fetches images from (README: "The hub's registry origin"). Read-only
// OCI distribution GET/HEAD of manifests and blobs by digest, under
// /agent/v1/registry/v2/<name>/(manifests|blobs)/<digest>, where <name> is
// the image as a release pins it (registry host included).
//
// Each request is signed by the agent's key (shared/auth.ts
// requestStatement: method, path, hub host, agent, nonce, time); a nonce
// works once. A digest is served only when it belongs to a release delivered
// to the agent's tenant: a pinned manifest, a manifest an index of one names,
// or a blob one of those references — anything else, another tenant's
// release included, is 404 as if it did not exist. Bytes stream from the
// vendor's registry, their digest checked on the way (a whole blob that does
// not match is cut off before its end, so it is never taken as whole); Range
// is passed through for resumes (the agent checks the whole blob itself).
// What was served is audited per agent and minute, not per blob.
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { REGISTRY_PATH } from '../../shared/auth.js';
import { FerryError, asFerryError } from '../../shared/errors.js';
import { SHA256, parseManifest, sha256Digest } from '../../shared/oci.js';
import { DIGEST_REF } from '../../shared/release.js';
import type { RouteDef } from '../http/app.js';
import type { HubContext } from '../http/context.js';
import { AgentRequests } from './agent-request.js';
import { Upstream, type UpstreamOptions } from './upstream.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

export interface OriginOptions extends UpstreamOptions {
  /** Requests in flight per agent, and for the whole hub; past them, 429 with Retry-After. */
  perAgent: number;
  perHub: number;
}

export const ORIGIN_DEFAULTS: OriginOptions = Object.freeze({ credentials: new Map(), insecure: [], timeoutMs: 60_000, perAgent: 8, perHub: 128 });

const MAX_MANIFEST = 4 * 1024 * 1024;
const AUDIT_EVERY_MS = 60_000;
const PATH = /^\/agent\/v1\/registry\/v2\/(.+)\/(manifests|blobs)\/(sha256:[0-9a-f]{64})$/;

interface Served {
  agentId: string;
  tenant: string;
  image: string;
  releases: string[];
  manifests: number;
  blobs: number;
  bytes: number;
}

interface Pins {
  digests: Set<string>;
  releases: Set<string>;
}

export class Origin {
  private readonly upstream: Upstream;
  private readonly inFlight = new Map<string, number>();
  private total = 0;
  private readonly requests: AgentRequests;
  /** Children (blobs and manifests) of manifests by digest: content-addressed, so never stale. */
  private readonly closure = new Map<string, { digests: Set<string>; mediaType: string }>();
  /** Images (name -> pinned digests, and the releases pinning them) per tenant, re-read when a request is not found in them. */
  private readonly pinned = new Map<string, { at: number; images: Map<string, Pins> }>();
  private readonly tally = new Map<string, Served>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly ctx: HubContext,
    private readonly o: OriginOptions,
  ) {
    this.upstream = new Upstream(o);
    this.requests = new AgentRequests(ctx);
    this.timer = setInterval(() => void this.flush(), AUDIT_EVERY_MS);
    this.timer.unref();
  }

  /** GET (fastify answers HEAD with the same handler, `req.method` saying which). */
  routes(route: Route): void {
    route({
      method: 'GET',
      url: `${REGISTRY_PATH}/v2/*`,
      access: { public: 'agents: requests signed by the agent key' },
      rateLimit: false,
      handler: ({ req, reply }) => this.serve(req, reply),
    });
  }

  private async images(tenant: string, fresh: boolean): Promise<Map<string, Pins>> {
    const hit = this.pinned.get(tenant);
    if (hit && !fresh && this.ctx.now() - hit.at < 60_000) return hit.images;
    const images = new Map<string, Pins>();
    for (const r of await this.ctx.releases.list({ tenants: [tenant] })) {
      for (const s of Object.values(r.release.services)) {
        const m = DIGEST_REF.exec(s.image);
        if (!m?.groups?.repo) continue;
        const digest = s.image.slice(s.image.lastIndexOf('@') + 1);
        let pins = images.get(m.groups.repo);
        if (!pins) images.set(m.groups.repo, (pins = { digests: new Set(), releases: new Set() }));
        pins.digests.add(digest);
        pins.releases.add(`${r.stack}@${r.version}`);
      }
    }
    this.pinned.set(tenant, { at: this.ctx.now(), images });
    return images;
  }

  /** The manifest's bytes from upstream, checked against its digest; its children remembered. */
  private async manifest(name: string, digest: string): Promise<{ bytes: Buffer; mediaType: string }> {
    const res = await this.upstream.fetch('GET', name, 'manifests', digest);
    if (res.status === 404) {
      await res.body.dump();
      throw new FerryError('FERRY_E_IMAGE_NOT_FOUND', `${name}@${digest} at the vendor's registry`);
    }
    if (res.status === 401 || res.status === 403) {
      await res.body.dump();
      throw new FerryError('FERRY_E_REGISTRY_AUTH', `${name}: the vendor's registry refused the hub (${res.status})`);
    }
    if (res.status !== 200) {
      await res.body.dump();
      throw new FerryError('FERRY_E_REGISTRY_FAILED', `${name}@${digest}: the vendor's registry answered ${res.status}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res.body) {
      size += (c as Buffer).length;
      if (size > MAX_MANIFEST) throw new FerryError('FERRY_E_REGISTRY_FAILED', `${name}@${digest}: a manifest over 4 MiB`);
      chunks.push(c as Buffer);
    }
    const bytes = Buffer.concat(chunks);
    if (sha256Digest(bytes) !== digest) throw new FerryError('FERRY_E_REGISTRY_DIGEST', `${name}@${digest}: the vendor's registry served other bytes`);
    const mediaType = String(res.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (!this.closure.has(digest)) {
      const m = parseManifest(bytes, mediaType);
      const digests = new Set(m.kind === 'index' ? m.children.map((c) => c.digest) : [m.config.digest, ...m.layers.map((l) => l.digest)]);
      if (this.closure.size > 50_000) this.closure.clear();
      this.closure.set(digest, { digests, mediaType: m.mediaType });
    }
    return { bytes, mediaType: mediaType || this.closure.get(digest)!.mediaType };
  }

  /** The releases of the tenant that (name, digest) is part of: pinned, or reachable from a pinned manifest; none: not the tenant's. */
  private async allowed(tenant: string, name: string, kind: 'manifests' | 'blobs', digest: string): Promise<string[] | null> {
    for (const fresh of [false, true]) {
      const pins = (await this.images(tenant, fresh)).get(name);
      if (!pins) continue;
      const yes = [...pins.releases];
      if (kind === 'manifests' && pins.digests.has(digest)) return yes;
      // Walk down from each pinned manifest (an index's children are manifests too).
      const seen = new Set<string>();
      const stack = [...pins.digests];
      while (stack.length) {
        const m = stack.pop()!;
        if (seen.has(m)) continue;
        seen.add(m);
        if (!this.closure.has(m)) await this.manifest(name, m).catch(() => undefined);
        const c = this.closure.get(m);
        if (!c) continue;
        if (c.digests.has(digest)) return yes;
        if (/index|list/.test(c.mediaType)) stack.push(...c.digests);
      }
    }
    return null;
  }

  private async serve(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const m = PATH.exec(req.url.split('?')[0]!);
    if (!m) throw new FerryError('FERRY_E_NOT_FOUND', 'no such endpoint: /agent/v1/registry/v2/<name>/(manifests|blobs)/sha256:<hex>');
    const [, name, kind, digest] = m as unknown as [string, string, 'manifests' | 'blobs', string];
    if (!SHA256.test(digest)) throw new FerryError('FERRY_E_NOT_FOUND', digest);
    const agent = await this.requests.agentOf(req);
    const mine = this.inFlight.get(agent.id) ?? 0;
    if (mine >= this.o.perAgent || this.total >= this.o.perHub) {
      void reply.header('retry-after', '2');
      throw new FerryError('FERRY_E_RATE_LIMITED', `${mine >= this.o.perAgent ? `${this.o.perAgent} requests in flight for this agent` : `${this.o.perHub} for the hub`}`);
    }
    this.inFlight.set(agent.id, mine + 1);
    this.total++;
    try {
      const releases = await this.allowed(agent.tenant, name, kind, digest);
      if (!releases) throw new FerryError('FERRY_E_NOT_FOUND', `${name}@${digest}`);
      const served = this.served(agent, name, releases);
      if (kind === 'manifests') return await this.sendManifest(req, reply, served, name, digest);
      return await this.sendBlob(req, reply, served, agent.id, name, digest);
    } finally {
      this.total--;
      const n = (this.inFlight.get(agent.id) ?? 1) - 1;
      if (n > 0) this.inFlight.set(agent.id, n);
      else this.inFlight.delete(agent.id);
    }
  }

  private async sendManifest(req: FastifyRequest, reply: FastifyReply, served: Served, name: string, digest: string): Promise<void> {
    const { bytes, mediaType } = await this.manifest(name, digest);
    served.manifests++;
    if (req.method !== 'HEAD') served.bytes += bytes.length;
    void reply.code(200).header('content-type', mediaType).header('docker-content-digest', digest).header('content-length', String(bytes.length));
    await reply.send(req.method === 'HEAD' ? undefined : bytes);
  }

  private async sendBlob(req: FastifyRequest, reply: FastifyReply, served: Served, agentId: string, name: string, digest: string): Promise<void> {
    const range = typeof req.headers.range === 'string' && /^bytes=\d+-\d*$/.test(req.headers.range) ? req.headers.range : undefined;
    const up = await this.upstream.fetch(req.method === 'HEAD' ? 'HEAD' : 'GET', name, 'blobs', digest, range);
    if (up.status === 404) {
      await up.body.dump();
      throw new FerryError('FERRY_E_IMAGE_NOT_FOUND', `${name}@${digest} at the vendor's registry`);
    }
    if (up.status !== 200 && up.status !== 206) {
      await up.body.dump();
      throw new FerryError(up.status === 401 || up.status === 403 ? 'FERRY_E_REGISTRY_AUTH' : 'FERRY_E_REGISTRY_FAILED', `${name}@${digest}: the vendor's registry answered ${up.status}`);
    }
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'docker-content-digest': digest, 'cache-control': 'no-store' };
    for (const h of ['content-length', 'content-range', 'accept-ranges'] as const) if (up.headers[h] !== undefined) headers[h] = String(up.headers[h]);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(up.status, headers);
    if (req.method === 'HEAD') {
      await up.body.dump();
      res.end();
      return;
    }
    // Whole blobs are checked on the way: one whose bytes do not match is cut off before its end.
    const hash = up.status === 200 ? createHash('sha256') : null;
    const expected = Number(up.headers['content-length'] ?? -1);
    let sent = 0;
    try {
      for await (const chunk of up.body) {
        const c = chunk as Buffer;
        hash?.update(c);
        const last = expected >= 0 && sent + c.length >= expected;
        if (last && hash && `sha256:${hash.copy().digest('hex')}` !== digest) {
          // Hold back the final bytes: the agent sees a short body, never a whole wrong blob.
          const keep = Math.max(0, expected - sent - 1);
          if (keep) res.write(c.subarray(0, keep));
          throw new FerryError('FERRY_E_REGISTRY_DIGEST', `${name}@${digest}: the vendor's registry served other bytes`);
        }
        sent += c.length;
        if (!res.write(c)) await new Promise<void>((r) => res.once('drain', () => r()));
        if (res.destroyed) break;
      }
      if (hash && expected < 0 && `sha256:${hash.digest('hex')}` !== digest) throw new FerryError('FERRY_E_REGISTRY_DIGEST', `${name}@${digest}: the vendor's registry served other bytes`);
      res.end();
    } catch (err) {
      const e = asFerryError(err);
      this.ctx.log.error({ code: e.code, agentId, name, digest }, 'blob relay to an agent cut off');
      res.destroy();
    } finally {
      served.blobs++;
      served.bytes += sent;
    }
  }

  /** The tally of what this agent was served of this image since the last flush. */
  private served(agent: { id: string; tenant: string }, image: string, releases: string[]): Served {
    const key = `${agent.id}\n${image}`;
    let s = this.tally.get(key);
    if (!s) this.tally.set(key, (s = { agentId: agent.id, tenant: agent.tenant, image, releases: [], manifests: 0, blobs: 0, bytes: 0 }));
    s.releases = releases;
    return s;
  }

  /** One audit entry per agent and image served since the last flush (a minute), not one per blob. */
  async flush(): Promise<void> {
    if (!this.tally.size) return;
    const batch = [...this.tally.values()];
    this.tally.clear();
    try {
      await this.ctx.store.detached(() =>
        this.ctx.store.tx(async () => {
          for (const s of batch) {
            await this.ctx.audit.append(
              {
                log: s.tenant,
                actor: { kind: 'agent', id: s.agentId },
                surface: 'agent',
                action: 'image.served',
                target: { type: 'image', id: s.image },
                agents: [s.agentId],
                details: { releases: s.releases.slice(0, 20).join(', '), manifests: s.manifests, blobs: s.blobs, bytes: s.bytes },
              },
              this.ctx.now(),
            );
          }
        }),
      );
    } catch (err) {
      this.ctx.log.error({ err }, 'could not record images served');
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    await this.upstream.close();
  }
}
