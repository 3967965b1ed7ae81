// The fleet page (every agent the person may see, paged and filtered in the
// store) and enrollment (a token shown once, with the command to run).
import { z } from 'zod';
import { listScope } from '../../http/access.js';
import { FleetFilterFields, fleetFilter } from '../../http/fleet-filter.js';
import { agentView } from '../../http/views.js';
import type { ConsoleRoute } from '../console.js';
import { eventsUrl, forward, scopeOrForbidden, shellFor, type ConsoleContext } from '../context.js';
import { agentRow } from '../models.js';
import { enrollPage, enrolledFragment } from '../views/enroll.js';
import { fleetPage } from '../views/fleet.js';

export const FLEET_PAGE_SIZE = 50;
const page = z.preprocess((v) => (v === '' ? undefined : v), z.string().regex(/^\d{1,6}$/, 'a page number').transform(Number).pipe(z.number().int().min(1)).optional());
const FleetQuery = z.strictObject({ ...FleetFilterFields, page });
const EnrollForm = z.strictObject({ tenant: z.string().max(64), ttl: z.enum(['600', '3600', '86400', '604800']).default('3600') });

/** How stale the version filter's choices may be: they cost a scan of every agent in scope. */
const VERSIONS_MAX_AGE_MS = 10_000;

export function fleetPages(route: ConsoleRoute, c: ConsoleContext): void {
  const { store } = c;
  // The fleet filter's agent versions, per scope: a distinct scan of the whole fleet on every
  // page view cost more than the page itself at 10,000 agents (bench/console).
  const versionChoices = new Map<string, { at: number; versions: Promise<string[]> }>();
  const versionsFor = (scope: string[] | null): Promise<string[]> => {
    const key = scope === null ? '*' : scope.join('\n');
    const now = Date.now();
    const hit = versionChoices.get(key);
    if (hit && now - hit.at < VERSIONS_MAX_AGE_MS) return hit.versions;
    if (versionChoices.size > 1000) versionChoices.clear();
    const versions = store.fleetQuery.versions(scope);
    versionChoices.set(key, { at: now, versions });
    versions.catch(() => versionChoices.delete(key));
    return versions;
  };

  route({
    method: 'GET',
    url: '/fleet',
    access: { list: 'read' },
    query: FleetQuery,
    handler: async ({ query, principal }) => {
      const events = await eventsUrl(c, { kind: 'target,directive' });
      const scope = await listScope(store, principal, 'read');
      const { page: n = 1, ...filters } = query;
      const f = fleetFilter(filters, scope);
      const p = await store.fleetQuery.page(f, (a) => c.gateway.presence.isConnected(a), (n - 1) * FLEET_PAGE_SIZE, FLEET_PAGE_SIZE);
      const rows = [];
      for (const a of p.agents) rows.push(agentRow(await agentView(a, c.gateway, store)));
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(filters)) if (v !== undefined) qs.set(k, String(v));
      const tenants = (await store.fleet.listTenants(scope)).map((t) => t.name);
      const manageable = await listScope(store, principal, 'agent.manage');
      return fleetPage(shellFor(c, principal, 'Fleet', 'fleet', { events }), {
        now: c.now(),
        filter: { tenant: filters.tenant ?? '', state: filters.state ?? '', label: filters.label ?? '', stack: filters.stack ?? '', version: filters.version ?? '', q: filters.q ?? '' },
        query: qs.toString(),
        tenants,
        versions: await versionsFor(scope),
        counts: p.counts,
        total: p.total,
        page: n,
        pages: Math.max(1, Math.ceil(p.total / FLEET_PAGE_SIZE)),
        rows,
        canEnroll: manageable === null || manageable.length > 0,
      });
    },
  });

  route({
    method: 'GET',
    url: '/enroll',
    access: { list: 'agent.manage' },
    handler: async ({ principal }) => {
      const scope = await scopeOrForbidden(c, principal, 'agent.manage', 'enrolling an agent');
      const tenants = (await store.fleet.listTenants(scope)).map((t) => t.name);
      return enrollPage(shellFor(c, principal, 'Enroll an agent', 'fleet'), { tenants });
    },
  });
  route({
    method: 'POST',
    url: '/enroll',
    // The API route decides per tenant (agent.manage there); another tenant's name is not found.
    access: { list: 'agent.manage' },
    body: EnrollForm,
    handler: async ({ req, body, principal }) => {
      await scopeOrForbidden(c, principal, 'agent.manage', 'enrolling an agent');
      const r = await forward<{ token: string; tenant: string; expiresAt: string }>(c, req, 'POST', `/v1/tenants/${encodeURIComponent(body.tenant)}/enrollment-tokens`, { ttlSeconds: Number(body.ttl) });
      const hub = c.auth.origin(req.headers);
      return enrolledFragment({ tenant: r.body.tenant, token: r.body.token, expiresAt: r.body.expiresAt, hub, now: c.now() });
    },
  });
}
