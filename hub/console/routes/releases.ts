// Releases (signers, thresholds per tenant, floor, images, where they run)
// and stacks (per tenant: each stack's services and containers across its
// agents).
import { z } from 'zod';
import { FerryError } from '../../../shared/errors.js';
import { listScope } from '../../http/access.js';
import { can, type Principal } from '../../http/principal.js';
import { releaseOf } from '../../http/routes/releases.js';
import { releaseView } from '../../http/views.js';
import type { ReleaseRecord } from '../../releases.js';
import type { ConsoleRoute } from '../console.js';
import { shellFor, type ConsoleContext } from '../context.js';
import type { Running } from '../models.js';
import { releasePage, releasesPage, stacksPage, type ReleaseItem, type StackModel } from '../views/releases.js';

const text = (max: number) => z.preprocess((v) => (v === '' ? undefined : v), z.string().max(max).optional());
const ReleasesQuery = z.strictObject({ stack: text(64) });
const StacksQuery = z.strictObject({ tenant: text(64) });

export function releasePages(route: ConsoleRoute, c: ConsoleContext): void {
  const { store } = c;
  /** The vendor's people see every release; a bank's, those delivered to it (as GET /v1/releases). */
  const scopeOf = async (p: Principal) => (can(p, 'hub.read', 'vendor') ? null : await listScope(store, p, 'read'));
  const item = async (r: ReleaseRecord, scope: readonly string[] | null): Promise<ReleaseItem> => {
    const v = await releaseView(r, c, scope);
    const delivered = (await store.releases.deliveries(r.id)).filter((t) => scope === null || scope.includes(t));
    return {
      stack: v.stack,
      version: v.version,
      digest: v.digest,
      floor: v.floor,
      createdAt: v.createdAt,
      images: Object.entries(v.services),
      signers: v.signers.map((s) => ({ name: s.name ?? `key ${s.keyid.slice(0, 12)}`, signedAt: s.signedAt })),
      tenants: v.tenants,
      delivered,
    };
  };

  route({
    method: 'GET',
    url: '/releases',
    access: { list: 'read' },
    query: ReleasesQuery,
    handler: async ({ query, principal }) => {
      const scope = await scopeOf(principal);
      const all = await c.releases.list({ tenants: scope });
      const out = [];
      for (const r of all) if (!query.stack || r.stack === query.stack) out.push(await item(r, scope));
      return releasesPage(shellFor(c, principal, 'Releases', 'releases'), { now: c.now(), stack: query.stack ?? '', stacks: [...new Set(all.map((r) => r.stack))].sort(), releases: out });
    },
  });

  route({
    method: 'GET',
    url: '/releases/:stack/:version',
    access: { tenant: 'read', vendor: 'hub.read', of: releaseOf(c) },
    handler: async ({ params, principal }) => {
      const scope = await scopeOf(principal);
      const r = await c.releases.get(params.stack!, params.version!);
      const base = await item(r, scope);
      const runsOn = [];
      for (const t of base.delivered) {
        const agents = [];
        for (const a of await store.fleetQuery.statuses(t)) {
          const rel = ((a.status as Running | null)?.releases ?? []).find((x) => x.stack === r.stack && (x.runningVersion ?? x.version) === r.version);
          if (rel) agents.push({ id: a.id, name: a.name, state: rel.state });
        }
        runsOn.push({ tenant: t, agents });
      }
      return releasePage(shellFor(c, principal, `${r.stack}@${r.version}`, 'releases'), { now: c.now(), r: { ...base, runsOn } });
    },
  });

  route({
    method: 'GET',
    url: '/stacks',
    access: { list: 'read' },
    query: StacksQuery,
    handler: async ({ query, principal }) => {
      const scope = await listScope(store, principal, 'read');
      const tenants = (await store.fleet.listTenants(scope)).map((t) => t.name);
      const tenant = query.tenant ?? tenants[0] ?? '';
      // Another tenant's name answers like one that does not exist.
      if (query.tenant && !tenants.includes(query.tenant)) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${query.tenant}`);
      const stacks = new Map<string, StackModel['stacks'][number] & { byVersion: Map<string, number>; bySvc: Map<string, StackModel['stacks'][number]['services'][number]> }>();
      for (const a of tenant ? await store.fleetQuery.statuses(tenant) : []) {
        const st = (a.status ?? {}) as Partial<Running>;
        for (const rel of st.releases ?? []) {
          const s = stacks.get(rel.stack) ?? { name: rel.stack, versions: [], services: [], byVersion: new Map(), bySvc: new Map() };
          stacks.set(rel.stack, s);
          const v = rel.runningVersion ?? rel.version;
          s.byVersion.set(v, (s.byVersion.get(v) ?? 0) + 1);
        }
        for (const svc of st.services ?? []) {
          const s = stacks.get(svc.stack) ?? { name: svc.stack, versions: [], services: [], byVersion: new Map(), bySvc: new Map() };
          stacks.set(svc.stack, s);
          let row = s.bySvc.get(svc.service);
          if (!row) s.bySvc.set(svc.service, (row = { name: svc.service, containers: [] }));
          row.containers.push({ agentId: a.id, agent: a.name, replica: svc.replica, version: svc.release, status: svc.status, health: svc.health, restarts: svc.restarts, image: svc.image });
        }
      }
      const list = [...stacks.values()]
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((s) => ({ name: s.name, versions: [...s.byVersion].map(([version, agents]) => ({ version, agents })).sort((a, b) => b.agents - a.agents), services: [...s.bySvc.values()].sort((a, b) => a.name.localeCompare(b.name)) }));
      return stacksPage(shellFor(c, principal, 'Stacks', 'stacks'), { now: c.now(), tenant, tenants, stacks: list });
    },
  });
}
