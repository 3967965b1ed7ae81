// Checks and alerts: every check's state as its agent last said it, an
// agent's check history, and the alerts with their state.
import { z } from 'zod';
import { FerryError } from '../../../shared/errors.js';
import type { AlertRow, CheckEventRow, CheckRow } from '../../store/checks.js';
import { agentOf, listScope } from '../access.js';
import type { RouteDef } from '../app.js';
import type { HubContext } from '../context.js';
import { iso } from '../views.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

const flag = z.enum(['true', 'false']).transform((v) => v === 'true');
const ChecksQuery = z.strictObject({ tenant: z.string().max(64).optional(), agent: z.string().max(64).optional(), failing: flag.optional() });
const HistoryQuery = z.strictObject({ stack: z.string().max(64).optional(), check: z.string().max(64).optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) });
const AlertsQuery = z.strictObject({ tenant: z.string().max(64).optional(), state: z.enum(['firing', 'resolved']).optional(), limit: z.coerce.number().int().min(1).max(1000).default(200) });

export const checkView = (c: CheckRow) => ({
  agent: c.agentId,
  agentName: c.agentName,
  tenant: c.tenant,
  stack: c.stack,
  check: c.name,
  version: c.version,
  kind: c.kind,
  target: c.target,
  state: c.state,
  since: iso(c.since),
  lastError: c.lastError,
  reportedAt: iso(c.updatedAt),
});

const historyView = (e: CheckEventRow) => ({ n: e.n, stack: e.stack, check: e.name, from: e.from, to: e.to, at: iso(e.at), error: e.error });

const alertView = (a: AlertRow) => ({
  key: a.key,
  kind: a.kind,
  state: a.state,
  flapping: a.flapping,
  tenant: a.tenant,
  agent: a.agentId,
  rollout: a.rollout === null ? null : `R-${a.rollout}`,
  since: iso(a.since),
  summary: a.summary,
  notifiedAt: iso(a.notifiedAt),
  notifications: a.notifications,
});

export function checkRoutes(route: Route, ctx: HubContext): void {
  const { store } = ctx;
  route({
    method: 'GET',
    url: '/v1/checks',
    access: { list: 'read' },
    query: ChecksQuery,
    handler: async ({ query, principal }) => {
      const scope = await listScope(store, principal, 'read');
      // Another tenant's name answers like one that does not exist.
      if (query.tenant && scope && !scope.includes(query.tenant)) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${query.tenant}`);
      if (query.tenant && !(await store.fleet.findTenant(query.tenant))) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${query.tenant}`);
      const rows = await store.checks.list({ scope, tenant: query.tenant, agentId: query.agent, failing: query.failing });
      return { checks: rows.map(checkView) };
    },
  });
  route({
    method: 'GET',
    url: '/v1/agents/:id/checks',
    access: { tenant: 'read', of: agentOf(store) },
    query: HistoryQuery,
    handler: async ({ params, query }) => {
      const checks = await store.checks.list({ scope: null, agentId: params.id! });
      const history = await store.checks.history(params.id!, { stack: query.stack, name: query.check, limit: query.limit });
      return { agent: params.id, checks: checks.map(checkView), history: history.map(historyView) };
    },
  });
  route({
    method: 'GET',
    url: '/v1/alerts',
    access: { list: 'read' },
    query: AlertsQuery,
    handler: async ({ query, principal }) => {
      const scope = await listScope(store, principal, 'read');
      if (query.tenant && scope && !scope.includes(query.tenant)) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${query.tenant}`);
      // A tenant's people see their tenant's alerts; vendor-wide ones (rollouts) only the vendor's.
      const rows = await store.checks.alerts({ state: query.state, scope: query.tenant ? [query.tenant] : scope, limit: query.limit });
      return { alerts: rows.map(alertView) };
    },
  });
}
