// The audit logs: listing entries, exporting a log for `ferry audit verify`,
// proofs, and forcing a checkpoint. A tenant's log is that tenant's; the
// hub-wide log (_hub) is the vendor's.
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { HUB_LOG, LOG_NAME } from '../../../shared/audit.js';
import { FerryError } from '../../../shared/errors.js';
import { encodePublicKey } from '../../../shared/keys.js';
import { listScope, type Resolver } from '../access.js';
import type { RouteDef } from '../app.js';
import type { HubContext } from '../context.js';
import { can } from '../principal.js';
import { iso } from '../views.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

const whole = (what: string) => z.string().regex(/^\d{1,15}$/, `${what} must be a whole number`).transform(Number);
const EntriesQuery = z.strictObject({ since: z.string().max(40).optional(), from: whole('from').optional(), limit: whole('limit').optional() });
const ProofQuery = z.strictObject({ size: whole('size').optional(), index: whole('index').optional(), from: whole('from').optional() });

/** A log in the path: a tenant's (its people's and the vendor's), or _hub (the vendor's only). */
export const logOf =
  (ctx: HubContext): Resolver =>
  async (req: FastifyRequest) => {
    const raw = String((req.params as { log?: string }).log ?? '');
    if (!LOG_NAME.test(raw)) throw new FerryError('FERRY_E_VALIDATION', `log ${JSON.stringify(raw.slice(0, 70))}: a tenant name or _hub`);
    const what = `audit log ${raw}`;
    if (raw === HUB_LOG) return { tenants: [], what };
    if (!(await ctx.store.fleet.findTenant(raw))) throw new FerryError('FERRY_E_NOT_FOUND', what);
    return { tenants: [raw], what };
  };

export function auditRoutes(route: Route, ctx: HubContext): void {
  const read = { tenant: 'read', vendor: 'hub.read', of: logOf(ctx) } as const;

  route({
    method: 'GET',
    url: '/v1/audit',
    access: { list: 'read' },
    handler: async ({ principal }) => {
      const scope = await listScope(ctx.store, principal, 'read');
      const vendor = can(principal, 'hub.read', 'vendor');
      const logs = [];
      for (const log of await ctx.audit.logs()) {
        if (log === HUB_LOG ? !vendor : scope !== null && !scope.includes(log)) continue;
        logs.push({ log, size: await ctx.audit.size(log), checkpoint: (await ctx.audit.latestCheckpoint(log))?.size ?? null });
      }
      return { hubKey: encodePublicKey(ctx.audit.hubPublicKey), logs };
    },
  });

  route({
    method: 'GET',
    url: '/v1/audit/:log/entries',
    access: read,
    query: EntriesQuery,
    handler: async ({ params, query }) => {
      const log = params.log!;
      const sinceMs = query.since ? Date.parse(query.since) : 0;
      if (Number.isNaN(sinceMs)) throw new FerryError('FERRY_E_VALIDATION', 'since: an ISO time');
      const rows = await ctx.audit.entries(log, { since: sinceMs, from: query.from ?? 0, limit: Math.min(query.limit ?? 500, 5000) });
      const entries = [];
      for (const r of rows) entries.push({ ...r.entry, at: iso(r.at), personalValues: await ctx.audit.personalValues(log, r.index) });
      return { log, size: await ctx.audit.size(log), entries };
    },
  });

  // NDJSON: one line per checkpoint (with cosignatures and agents' public keys), then one per entry, as stored.
  route({
    method: 'GET',
    url: '/v1/audit/:log/export',
    access: read,
    handler: async ({ params, reply }) => {
      const log = params.log!;
      const keys = log === HUB_LOG ? new Map<string, string>() : await ctx.store.fleet.publicKeys(log);
      const checkpoints = await ctx.audit.checkpoints(log);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      const write = (text: string) => (res.write(text) ? Promise.resolve() : new Promise<void>((r) => res.once('drain', () => r())));
      try {
        for (const cp of checkpoints) {
          await write(JSON.stringify({ kind: 'checkpoint', envelope: cp.envelope, cosignatures: cp.cosignatures.map((c) => ({ agentId: c.agentId, publicKey: keys.get(c.agentId) ?? null, sig: c.sig })) }) + '\n');
        }
        let buf = '';
        for await (const e of ctx.audit.scan(log)) {
          buf += JSON.stringify({ kind: 'entry', index: e.index, data: e.data.toString('base64'), leafHash: e.leafHash.toString('hex') }) + '\n';
          if (buf.length > 256 * 1024) {
            await write(buf);
            buf = '';
          }
          if (res.destroyed) return;
        }
        res.end(buf);
      } catch (err) {
        ctx.log.error({ err, log }, 'audit export failed midway');
        res.destroy();
      }
    },
  });

  route({
    method: 'GET',
    url: '/v1/audit/:log/proof',
    access: read,
    query: ProofQuery,
    handler: async ({ params, query }) => {
      const log = params.log!;
      const tree = await ctx.audit.tree(log);
      const size = query.size ?? tree.size;
      if (size > tree.size || size < 1) throw new FerryError('FERRY_E_VALIDATION', `size must be 1..${tree.size}`);
      if (query.index !== undefined) {
        const i = query.index;
        if (i >= size) throw new FerryError('FERRY_E_VALIDATION', `index must be below ${size}`);
        return { log, index: i, size, root: tree.root(size).toString('hex'), proof: tree.inclusionProof(i, size).map((h) => h.toString('hex')) };
      }
      const m = query.from ?? 1;
      if (m < 1 || m > size) throw new FerryError('FERRY_E_VALIDATION', `from must be 1..${size}`);
      return { log, from: m, size, root: tree.root(size).toString('hex'), proof: tree.consistencyProof(m, size).map((h) => h.toString('hex')) };
    },
  });

  route({
    method: 'POST',
    url: '/v1/audit/:log/checkpoint',
    access: { tenant: 'trust.manage', vendor: 'audit.checkpoint', of: logOf(ctx) },
    handler: async ({ params }) => {
      const cp = await ctx.witness.checkpoint(params.log!);
      return cp ? { log: cp.log, size: cp.size, root: cp.root.toString('hex'), at: iso(cp.at) } : { log: params.log, size: 0 };
    },
  });
}
