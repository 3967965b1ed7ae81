// Tenants, enrollment tokens, agents and deploys.
import { z } from 'zod';
import { FerryError } from '../../../shared/errors.js';
import { CLOSE } from '../../../shared/protocol.js';
import { LABEL_KEY } from '../../store/fleet.js';
import { agentOf, listScope, tenantParam } from '../access.js';
import { FleetFilterFields, fleetFilter } from '../fleet-filter.js';
import type { RouteDef } from '../app.js';
import { audited, type HubContext } from '../context.js';
import { agentView, directiveView, iso } from '../views.js';
import { Labels } from './probes.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

const MAX_TTL_S = 30 * 86_400;
const TenantBody = z.strictObject({ name: z.string().max(64) });
const TokenBody = z.strictObject({ ttlSeconds: z.number().int().min(60).max(MAX_TTL_S).default(3600) });
const LabelBody = z.strictObject({ set: Labels.default({}), remove: z.array(z.string().regex(LABEL_KEY)).max(64).default([]) });
const whole = (max: number) => z.string().regex(/^\d{1,9}$/, 'a whole number').transform(Number).pipe(z.number().int().min(0).max(max));
/** Without limit, every agent (as before); with limit (and filters), one page and the counts (hub/http/fleet-filter.ts). */
const AgentsQuery = z.strictObject({ ...FleetFilterFields, limit: whole(1000).optional(), offset: whole(10_000_000).optional() });
const DeployBody = z.strictObject({
  stack: z.string().max(64),
  version: z.string().max(64),
  agent: z.string().max(64),
  /** Seconds to wait for the agent's acknowledgement (0: do not wait). */
  wait: z.number().int().min(0).max(600).default(0),
});

/** Plans ask a live agent to compute: a few per minute per caller. */
const PLAN_RATE = { max: 12, timeWindow: 60_000 };

export function fleetRoutes(route: Route, ctx: HubContext): void {
  const { store } = ctx;

  // ---- tenants --------------------------------------------------------------------
  route({
    method: 'GET',
    url: '/v1/tenants',
    access: { list: 'read' },
    handler: async ({ principal }) => ({ tenants: (await store.fleet.listTenants(await listScope(store, principal, 'read'))).map((t) => ({ ...t, createdAt: iso(t.createdAt) })) }),
  });
  route({
    method: 'POST',
    url: '/v1/tenants',
    access: { vendor: 'tenant.create' },
    body: TenantBody,
    status: 201,
    handler: async ({ body, principal }) => {
      const t = await audited(ctx, principal, () => store.fleet.createTenant(body.name, ctx.now()), (t) => ({ log: t.name, action: 'tenant.create', target: { type: 'tenant', id: t.id } }));
      ctx.log.info({ tenant: t.name, by: principal.userName }, 'tenant created');
      return { ...t, createdAt: iso(t.createdAt) };
    },
  });
  route({
    method: 'POST',
    url: '/v1/tenants/:tenant/enrollment-tokens',
    access: { tenant: 'agent.manage', of: tenantParam(store) },
    body: TokenBody,
    status: 201,
    handler: async ({ params, body, principal }) => {
      const t = await audited(
        ctx,
        principal,
        () => store.fleet.createEnrollmentToken(params.tenant!, body.ttlSeconds * 1000, principal.userId, ctx.now()),
        (t) => ({ log: t.tenant, action: 'enrollment-token.create', target: { type: 'enrollment-token', id: t.id }, details: { expiresAt: t.expiresAt } }),
      );
      ctx.log.info({ tenant: t.tenant, tokenId: t.id, by: principal.userName }, 'enrollment token created');
      return { ...t, expiresAt: iso(t.expiresAt) };
    },
  });

  // ---- agents ---------------------------------------------------------------------
  route({
    method: 'GET',
    url: '/v1/agents',
    access: { list: 'read' },
    query: AgentsQuery,
    handler: async ({ query, principal }) => {
      const scope = await listScope(store, principal, 'read');
      // Another tenant's name answers like one that does not exist.
      if (query.tenant && scope && !scope.includes(query.tenant)) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${query.tenant}`);
      const { limit, offset, ...filters } = query;
      if (limit !== undefined || offset !== undefined || Object.values(filters).some((v) => v !== undefined && v !== query.tenant)) {
        const page = await store.fleetQuery.page(fleetFilter(filters, scope), (a) => ctx.gateway.presence.isConnected(a), offset ?? 0, limit ?? 100);
        const out = [];
        for (const a of page.agents) out.push(await agentView(a, ctx.gateway, store));
        return { agents: out, total: page.total, counts: page.counts, offset: offset ?? 0, limit: limit ?? 100 };
      }
      const agents = await store.fleet.listAgents({ tenant: query.tenant, scope });
      const out = [];
      for (const a of agents) out.push(await agentView(a, ctx.gateway, store));
      return { agents: out };
    },
  });
  route({
    method: 'GET',
    url: '/v1/agents/:id',
    access: { tenant: 'read', of: agentOf(store) },
    handler: async ({ params }) => agentView(await store.fleet.agent(params.id!), ctx.gateway, store),
  });
  route({
    method: 'POST',
    url: '/v1/agents/:id/revoke',
    access: { tenant: 'agent.manage', of: agentOf(store) },
    handler: async ({ params, principal }) => {
      const a = await audited(
        ctx,
        principal,
        () => store.fleet.revokeAgent(params.id!, principal.userId, ctx.now()),
        (a) => ({ log: a.tenant, action: 'agent.revoke', target: { type: 'agent', id: a.id }, agents: [a.id] }),
      );
      const wasConnected = ctx.gateway.disconnect(a.id, CLOSE.revoked, 'agent revoked');
      if (ctx.cluster.shared) ctx.cluster.publish('revoke', { agentId: a.id });
      ctx.log.warn({ agentId: a.id, tenant: a.tenant, by: principal.userName, wasConnected }, 'agent revoked');
      return agentView(a, ctx.gateway, store);
    },
  });
  route({
    method: 'POST',
    url: '/v1/agents/:id/labels',
    access: { tenant: 'agent.manage', of: agentOf(store) },
    body: LabelBody,
    handler: async ({ params, body, principal }) => {
      const a = await audited(
        ctx,
        principal,
        () => store.fleet.setLabels(params.id!, body.set, body.remove),
        (a) => ({ log: a.tenant, action: 'agent.label', target: { type: 'agent', id: a.id }, agents: [a.id], details: { labels: JSON.stringify(a.labels) } }),
      );
      return agentView(a, ctx.gateway, store);
    },
  });
  // What the agent would do now (a dry run on the agent itself): it computes, so operators only, and few.
  route({
    method: 'GET',
    url: '/v1/agents/:id/plan',
    access: { tenant: 'agent.manage', of: agentOf(store) },
    rateLimit: PLAN_RATE,
    handler: async ({ params }) => {
      const a = await store.fleet.agent(params.id!);
      const plan = await ctx.plans.ask(a.id, ctx.gateway.presence.isConnected(a));
      return { agent: a.id, ...plan };
    },
  });
  route({
    method: 'GET',
    url: '/v1/agents/:id/directives/:seq',
    access: { tenant: 'read', of: agentOf(store) },
    handler: async ({ params }) => {
      const seq = Number(params.seq);
      if (!Number.isSafeInteger(seq) || seq < 1) throw new FerryError('FERRY_E_VALIDATION', 'seq: a whole number from 1');
      return directiveView(await ctx.directives.get(params.id!, seq));
    },
  });

  // ---- deploy -------------------------------------------------------------------------
  route({
    method: 'POST',
    url: '/v1/deploy',
    access: { tenant: 'deploy', of: agentOf(store, (req) => (req.body as { agent?: string } | undefined)?.agent) },
    body: DeployBody,
    handler: async ({ body, principal }) => {
      const { directive, sent } = await ctx.delivery.deploy(body.agent, body.stack, body.version, principal.userId, (d, tenant) =>
        audited(
          ctx,
          principal,
          async () => d,
          () => ({ log: tenant, action: 'directive.issue', target: { type: 'agent', id: body.agent }, agents: [body.agent], details: { seq: d.seq, stack: body.stack, version: body.version, digest: d.digest } }),
        ).then(() => undefined),
      );
      await ctx.witness.checkpoint((await store.fleet.agentTenant(body.agent)).tenant);
      const final = body.wait > 0 ? await ctx.delivery.waitForAck(body.agent, directive.seq, body.wait * 1000) : directive;
      const a = final.status === 'pending' ? await store.fleet.agent(body.agent) : null;
      return {
        ...directiveView(final),
        sent,
        // When the wait ended with no answer: whether the agent is there at all.
        ...(a ? { agentStatus: ctx.gateway.presence.isConnected(ctx.gateway.presence.overlay(a)) ? 'connected' : 'disconnected', agentLastSeenAt: iso(ctx.gateway.presence.overlay(a).lastSeenAt) } : {}),
      };
    },
  });
}
