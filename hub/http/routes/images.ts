// Images on their way into each bank's registry, as agents report them
// (hub/registry/progress.ts): `ferry images status --agent | --rollout`.
import type { ImageRelay } from '../../../shared/protocol.js';
import { agentOf, listScope } from '../access.js';
import type { RouteDef } from '../app.js';
import type { HubContext } from '../context.js';
import { can } from '../principal.js';
import { rolloutOf } from './rollouts.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

interface AgentImages {
  agentId: string;
  tenant: string;
  /** When the agent last reported; null: never (no bank registry configured, or an older agent). */
  updatedAt: string | null;
  images: ImageRelay[];
}

/** Counts by state and bytes over every image listed. */
function totals(agents: readonly AgentImages[]) {
  const states: Record<string, number> = {};
  let bytesDone = 0;
  let bytesTotal = 0;
  for (const a of agents) {
    for (const i of a.images) {
      states[i.state] = (states[i.state] ?? 0) + 1;
      bytesDone += i.bytesDone;
      bytesTotal += i.bytesTotal;
    }
  }
  return { agents: agents.length, reporting: agents.filter((a) => a.updatedAt !== null).length, states, bytesDone, bytesTotal };
}

export function imageRoutes(route: Route, ctx: HubContext, progress: { of(ids: readonly string[]): Promise<Map<string, { images: ImageRelay[]; updatedAt: number }>> }): void {
  const { store } = ctx;
  route({
    method: 'GET',
    url: '/v1/agents/:id/images',
    access: { tenant: 'read', of: agentOf(store) },
    handler: async ({ params }) => {
      const a = await store.fleet.agent(params.id!);
      const r = (await progress.of([a.id])).get(a.id);
      const agents: AgentImages[] = [{ agentId: a.id, tenant: a.tenant, updatedAt: r ? new Date(r.updatedAt).toISOString() : null, images: r?.images ?? [] }];
      return { agents, totals: totals(agents) };
    },
  });
  route({
    method: 'GET',
    url: '/v1/rollouts/:id/images',
    access: { tenant: 'read', of: rolloutOf(ctx) },
    handler: async ({ params, principal }) => {
      const r = await store.rollouts.get(params.id!);
      const scope = can(principal, 'hub.read', 'vendor') ? null : await listScope(store, principal, 'read');
      const targets = (await store.rollouts.targets(r.id)).filter((t) => scope === null || scope.includes(t.tenant));
      const reports = await progress.of(targets.map((t) => t.agentId));
      const release = `${r.stack}@${r.version}`;
      const agents: AgentImages[] = targets.map((t) => {
        const rep = reports.get(t.agentId);
        return { agentId: t.agentId, tenant: t.tenant, updatedAt: rep ? new Date(rep.updatedAt).toISOString() : null, images: (rep?.images ?? []).filter((i) => i.releases.includes(release)) };
      });
      return { rollout: r.id, release, agents, totals: totals(agents) };
    },
  });
}
