// Rollouts and their event stream.
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { FerryError } from '../../../shared/errors.js';
import type { Command } from '../../rollouts/machine.js';
import { parseEventQuery } from '../../rollouts/events.js';
import { rolloutId } from '../../store/rollouts.js';
import { listScope, type Resolver } from '../access.js';
import type { RouteDef } from '../app.js';
import type { HubContext } from '../context.js';
import { actorOf, can } from '../principal.js';
import { rolloutSummary, rolloutView } from '../views.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

const DAY_MS = 86_400_000;
const CreateBody = z.strictObject({
  stack: z.string().max(64),
  version: z.string().max(64),
  /** The selector language: see hub/rollouts/selector.ts and README. */
  selector: z.string().max(2000),
  waves: z.string().max(400).default('100%'),
  bakeMs: z.number().int().min(0).max(DAY_MS).default(0),
  maxFailures: z.number().int().min(0).max(100_000).default(0),
  onFailure: z.enum(['pause', 'rollback']).default('pause'),
  agentTimeoutMs: z.number().int().min(1000).max(7 * DAY_MS).default(30 * 60_000),
  onTimeout: z.enum(['failed', 'skip']).default('failed'),
  retryMs: z.number().int().min(100).max(DAY_MS).default(60_000),
});
const COMMANDS: readonly Command[] = ['pause', 'resume', 'promote', 'abort', 'rollback'];

/** A rollout in the path: it belongs to the tenants its targets are in. */
export const rolloutOf =
  (ctx: HubContext): Resolver =>
  async (req: FastifyRequest) => {
    const id = String((req.params as { id?: string }).id ?? '').slice(0, 40);
    const what = `rollout ${id}`;
    const r = /^R-\d{1,9}$/.test(id) ? await ctx.store.rollouts.find(id) : undefined;
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', what);
    return { tenants: await ctx.store.rollouts.tenants(id), what };
  };

export function rolloutRoutes(route: Route, ctx: HubContext): void {
  const { store } = ctx;
  /** What of a rollout the caller sees: everything (vendor) or their tenants' part. */
  const viewScope = async (p: Parameters<typeof can>[0]) => (can(p, 'hub.read', 'vendor') ? null : await listScope(store, p, 'read'));

  route({
    method: 'POST',
    url: '/v1/rollouts',
    // The selector picks only among agents the caller may deploy to; none left is "matches nothing".
    access: { list: 'deploy' },
    body: CreateBody,
    status: 201,
    handler: async ({ body, principal }) => {
      const scope = await listScope(store, principal, 'deploy');
      if (scope !== null && scope.length === 0) throw new FerryError('FERRY_E_FORBIDDEN', `needs deploy on at least one tenant; ${principal.userName} may deploy nowhere`);
      const r = await ctx.rollouts.create(body, actorOf(principal), scope);
      return rolloutView(r, await store.rollouts.targets(r.id), await viewScope(principal));
    },
  });
  route({
    method: 'GET',
    url: '/v1/rollouts',
    access: { list: 'read' },
    handler: async ({ principal }) => {
      const scope = await viewScope(principal);
      const out = [];
      for (const r of await store.rollouts.list(100, scope)) out.push(rolloutSummary(r, await store.rollouts.targets(r.id), scope));
      return { rollouts: out };
    },
  });
  route({
    method: 'GET',
    url: '/v1/rollouts/:id',
    access: { tenant: 'read', of: rolloutOf(ctx) },
    handler: async ({ params, principal }) => {
      const r = await store.rollouts.get(params.id!);
      return rolloutView(r, await store.rollouts.targets(r.id), await viewScope(principal));
    },
  });
  for (const cmd of COMMANDS) {
    route({
      method: 'POST',
      url: `/v1/rollouts/:id/${cmd}`,
      // A command changes the rollout for every tenant it reaches: deploy on all of them.
      access: { tenant: 'deploy', of: rolloutOf(ctx), mode: 'all' },
      handler: async ({ params, principal }) => {
        const r = await ctx.rollouts.command(params.id!, cmd, actorOf(principal));
        ctx.log.info({ rolloutId: r.id, cmd, by: principal.userName }, 'rollout command');
        return rolloutView(r, await store.rollouts.targets(r.id), await viewScope(principal));
      },
    });
  }

  // Server-Sent Events: every rollout transition the caller may see, resumable with Last-Event-ID or ?since= (hub/rollouts/events.ts).
  route({
    method: 'GET',
    url: '/v1/events',
    access: { list: 'read' },
    handler: async ({ req, reply, principal }) => {
      const filter = parseEventQuery(new URL(req.url, 'http://hub').searchParams, req.headers['last-event-id']);
      const scope = await listScope(store, principal, 'read');
      if (filter.rollout !== null) {
        const id = rolloutId(filter.rollout);
        const visible = (await store.rollouts.find(id)) && (scope === null || (await store.rollouts.tenants(id)).some((t) => scope.includes(t)));
        if (!visible) throw new FerryError('FERRY_E_NOT_FOUND', `rollout ${id}`);
      }
      if (ctx.events.count(principal.userId) >= ctx.maxStreamsPerUser) throw new FerryError('FERRY_E_STREAMS_LIMIT', `${ctx.maxStreamsPerUser} open`);
      reply.hijack();
      await ctx.events.open(req.raw, reply.raw, filter, { owner: principal.userId, tenants: scope });
    },
  });
}
