// Agent bundle downloads: GET {hub}/agent/v1/bundles/<archive digest>, the
// same signed requests as the registry origin (hub/registry/agent-request.ts).
// Only a bundle for the agent's own tenant is served; anything else answers
// 404 as if it did not exist. Range requests resume an interrupted download.
// The bytes come from the database's chunks, so any replica serves any
// bundle. A download that reached its end is audited in the tenant's log.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { BUNDLE_PATH } from '../../shared/auth.js';
import { FerryError, asFerryError } from '../../shared/errors.js';
import type { RouteDef } from '../http/app.js';
import type { HubContext } from '../http/context.js';
import { AgentRequests } from '../registry/agent-request.js';
import { CHUNK } from '../store/bundles.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

/** Downloads at the same time per agent; past that, 429 with Retry-After. */
const PER_AGENT = 2;

export class BundleServer {
  private readonly requests: AgentRequests;
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly ctx: HubContext) {
    this.requests = new AgentRequests(ctx);
  }

  routes(route: Route): void {
    route({
      method: 'GET',
      url: `${BUNDLE_PATH}/:digest`,
      access: { public: 'agents: requests signed by the agent key' },
      rateLimit: false,
      handler: ({ req, reply, params }) => this.serve(req, reply, params.digest ?? ''),
    });
  }

  private async serve(req: FastifyRequest, reply: FastifyReply, digest: string): Promise<void> {
    const agent = await this.requests.agentOf(req);
    const row = /^sha256:[0-9a-f]{64}$/.test(digest) ? await this.ctx.store.bundles.byDigest(digest) : undefined;
    if (!row || !(await this.ctx.store.bundles.tenants(row.version)).includes(agent.tenant)) throw new FerryError('FERRY_E_NOT_FOUND', `agent bundle ${digest.slice(0, 80)}`);
    const size = Number(row.size);
    const range = /^bytes=(\d{1,15})-(\d{0,15})$/.exec(String(req.headers.range ?? ''));
    let start = 0;
    let end = size - 1;
    if (range) {
      start = Number(range[1]);
      if (range[2]) end = Math.min(end, Number(range[2]));
      if (start > end) {
        void reply.header('content-range', `bytes */${size}`);
        throw Object.assign(new FerryError('FERRY_E_VALIDATION', `range ${req.headers.range} outside ${size} bytes`), { status: 416 });
      }
    }
    const n = this.inFlight.get(agent.id) ?? 0;
    if (n >= PER_AGENT) {
      void reply.header('retry-after', '2');
      throw new FerryError('FERRY_E_RATE_LIMITED', `${PER_AGENT} bundle downloads in flight for this agent`);
    }
    this.inFlight.set(agent.id, n + 1);
    try {
      const headers: Record<string, string> = { 'content-type': 'application/gzip', 'content-length': String(end - start + 1), 'accept-ranges': 'bytes', 'cache-control': 'no-store', 'docker-content-digest': digest };
      if (range) headers['content-range'] = `bytes ${start}-${end}/${size}`;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(range ? 206 : 200, headers);
      if (req.method === 'HEAD') return void res.end();
      let sent = 0;
      try {
        for (let idx = Math.floor(start / CHUNK); idx * CHUNK <= end; idx++) {
          const chunk = await this.ctx.store.bundles.chunk(digest, idx);
          if (!chunk) throw new FerryError('FERRY_E_INTERNAL', `agent bundle ${row.version}: chunk ${idx} is missing`);
          const from = Math.max(start - idx * CHUNK, 0);
          const to = Math.min(end - idx * CHUNK + 1, chunk.length);
          const part = chunk.subarray(from, to);
          sent += part.length;
          if (!res.write(part)) await new Promise<void>((r) => res.once('drain', () => r()));
          if (res.destroyed) return;
        }
        res.end();
      } catch (err) {
        this.ctx.log.error({ code: asFerryError(err).code, agentId: agent.id, version: row.version }, 'agent bundle download cut off');
        res.destroy();
        return;
      }
      if (end === size - 1) await this.audit(agent, row.version, digest, sent, start);
    } finally {
      const left = (this.inFlight.get(agent.id) ?? 1) - 1;
      if (left > 0) this.inFlight.set(agent.id, left);
      else this.inFlight.delete(agent.id);
    }
  }

  private async audit(agent: { id: string; tenant: string }, version: string, digest: string, bytes: number, from: number): Promise<void> {
    try {
      await this.ctx.store.detached(() =>
        this.ctx.store.tx(() =>
          this.ctx.audit.append(
            { log: agent.tenant, actor: { kind: 'agent', id: agent.id }, surface: 'agent', action: 'bundle.served', target: { type: 'bundle', id: version }, agents: [agent.id], details: { digest, bytes, from } },
            this.ctx.now(),
          ),
        ),
      );
    } catch (err) {
      this.ctx.log.error({ err }, 'could not record a bundle download');
    }
  }
}
