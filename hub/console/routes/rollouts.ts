// Rollouts: the list, one rollout with its waves advancing live and the
// commands its state allows, and a new rollout previewed wave by wave before
// it starts.
import { z } from 'zod';
import { durationMs } from '../../../shared/duration.js';
import { FerryError } from '../../../shared/errors.js';
import { listScope } from '../../http/access.js';
import { can, type Principal } from '../../http/principal.js';
import { rolloutOf } from '../../http/routes/rollouts.js';
import { rolloutSummary, rolloutView } from '../../http/views.js';
import { command, type Command } from '../../rollouts/machine.js';
import type { RolloutRecord, TargetRecord } from '../../store/rollouts.js';
import type { ConsoleRoute } from '../console.js';
import { eventsUrl, forward, go, isHtmx, scopeOrForbidden, shellFor, type ConsoleContext } from '../context.js';
import { newRolloutPage, previewFragment, rolloutFragment, rolloutPage, rolloutsPage, type CommandButton, type RolloutModel } from '../views/rollouts.js';

const COMMANDS: readonly Command[] = ['pause', 'resume', 'promote', 'abort', 'rollback'];
const MAX_TARGETS_SHOWN = 200;
const NewForm = z.strictObject({
  release: z.string().max(130).regex(/^[^@]+@[^@]+$/, 'stack@version'),
  selector: z.string().max(2000),
  waves: z.string().max(400),
  bake: z.string().max(20).default('0'),
  maxFailures: z.string().regex(/^\d{1,6}$/, 'a whole number').default('0'),
  onFailure: z.enum(['pause', 'rollback']).default('pause'),
});
type NewForm = z.infer<typeof NewForm>;

function createBody(f: NewForm) {
  const [stack, version] = f.release.split('@') as [string, string];
  return { stack, version, selector: f.selector, waves: f.waves, bakeMs: durationMs(f.bake, 'bake time'), maxFailures: Number(f.maxFailures), onFailure: f.onFailure };
}

/** What each command will do, in words, for the confirmation. */
function confirmText(r: RolloutRecord, targets: TargetRecord[], cmd: Command): string {
  const rel = `${r.stack}@${r.version}`;
  const changed = targets.filter((t) => t.seq !== null).length;
  switch (cmd) {
    case 'pause':
      return `Pause ${r.id}? No further wave starts and no more agents get ${rel} until it is resumed; agents already updating finish.`;
    case 'resume':
      return `Resume ${r.id}? Waves continue from wave ${r.wave + 1}; the failures so far are accepted.`;
    case 'promote': {
      const next = (r.waves[r.wave + 1] ?? 0) - (r.waves[r.wave] ?? 0);
      return `Start wave ${r.wave + 2} of ${r.id} now, without waiting for wave ${r.wave + 1} to finish its bake time? It sends ${rel} to ${next} more agent${next === 1 ? '' : 's'}.`;
    }
    case 'abort':
      return `Abort ${r.id}? No further agent gets ${rel}; the ${changed} already directed keep what they run (nothing is rolled back).`;
    case 'rollback':
      return `Roll back ${r.id}? Each of the ${changed} agent${changed === 1 ? '' : 's'} it changed goes back to its previous release.`;
  }
}

const LABELS: Record<Command, string> = { pause: 'Pause', resume: 'Resume', promote: 'Promote next wave', abort: 'Abort', rollback: 'Roll back' };

export function rolloutPages(route: ConsoleRoute, c: ConsoleContext): void {
  const { store } = c;
  const viewScope = async (p: Principal) => (can(p, 'hub.read', 'vendor') ? null : await listScope(store, p, 'read'));

  const model = async (id: string, p: Principal): Promise<RolloutModel> => {
    const r = await store.rollouts.get(id);
    const targets = await store.rollouts.targets(r.id);
    const v = rolloutView(r, targets, await viewScope(p));
    // A command changes the rollout for every tenant it reaches: deploy on all of them (as the API's rule).
    const tenants = await store.rollouts.tenants(r.id);
    const allowed = tenants.length > 0 && tenants.every((t) => can(p, 'deploy', t));
    const commands: CommandButton[] = [];
    if (allowed) {
      for (const cmd of COMMANDS) {
        try {
          command(r, targets, cmd); // the state machine says whether the state allows it
          commands.push({ cmd, label: LABELS[cmd], confirm: confirmText(r, targets, cmd), danger: cmd === 'abort' || cmd === 'rollback' });
        } catch (err) {
          if (!(err instanceof FerryError)) throw err;
        }
      }
    }
    // Agents that matter now first: the current wave's and those that failed.
    const order = (t: (typeof v.targets)[number]) => (['failed', 'revert-failed'].includes(t.state) ? 0 : t.wave === v.wave ? 1 : 2);
    const sorted = [...v.targets].sort((a, b) => order(a) - order(b) || a.position - b.position);
    return { now: c.now(), r: v, commands, shownTargets: sorted.slice(0, MAX_TARGETS_SHOWN), hiddenTargets: Math.max(0, sorted.length - MAX_TARGETS_SHOWN) };
  };

  route({
    method: 'GET',
    url: '/rollouts',
    access: { list: 'read' },
    handler: async ({ principal }) => {
      // 'target' too: the list's "agents done" counts move with each agent's report (htmx queues one refresh at most per tab).
      const events = await eventsUrl(c, { kind: 'rollout,wave,target' });
      const scope = await viewScope(principal);
      const out = [];
      for (const r of await store.rollouts.list(100, scope)) out.push(rolloutSummary(r, await store.rollouts.targets(r.id), scope));
      const deployable = await listScope(store, principal, 'deploy');
      return rolloutsPage(shellFor(c, principal, 'Rollouts', 'rollouts', { events }), { now: c.now(), rollouts: out, canCreate: deployable === null || deployable.length > 0 });
    },
  });

  route({
    method: 'GET',
    url: '/rollouts/new',
    access: { list: 'deploy' },
    handler: async ({ principal }) => {
      const deployable = await scopeOrForbidden(c, principal, 'deploy', 'a rollout');
      const scope = await viewScope(principal);
      const releases = (await c.releases.list({ tenants: scope })).map((r) => `${r.stack}@${r.version}`);
      const selector = deployable && deployable.length === 1 ? `tenant=${deployable[0]}` : '';
      return newRolloutPage(shellFor(c, principal, 'New rollout', 'rollouts'), { releases, defaults: { release: releases[0] ?? '', selector, waves: '1,10%,100%', bake: '5m', maxFailures: '0', onFailure: 'pause' } });
    },
  });

  route({
    method: 'POST',
    url: '/rollouts/preview',
    // What the rollout would reach, among the agents the caller may deploy to (as the API selects them).
    access: { list: 'deploy' },
    body: NewForm,
    handler: async ({ body, principal }) => {
      const scope = await scopeOrForbidden(c, principal, 'deploy', 'a rollout');
      const b = createBody(body);
      const plan = await c.rollouts.preview(b, scope);
      let from = 0;
      const waves = plan.waves.map((reach, i) => {
        const agents = plan.agents.slice(from, reach).map((a) => ({ id: a.id, name: a.name, tenant: a.tenant }));
        from = reach;
        return { wave: i + 1, agents };
      });
      return previewFragment({ release: body.release, selector: plan.selector.text, waves, total: plan.agents.length });
    },
  });

  route({
    method: 'POST',
    url: '/rollouts',
    access: { list: 'deploy' },
    body: NewForm,
    handler: async ({ req, reply, body }) => {
      const r = await forward<{ id: string }>(c, req, 'POST', '/v1/rollouts', createBody(body));
      return go(req, reply, `/rollouts/${r.body.id}`);
    },
  });

  route({
    method: 'GET',
    url: '/rollouts/:id',
    access: { tenant: 'read', of: rolloutOf(c) },
    handler: async ({ params, principal }) => {
      const events = await eventsUrl(c, { rollout: params.id });
      return rolloutPage(shellFor(c, principal, params.id!, 'rollouts', { events }), await model(params.id!, principal));
    },
  });

  for (const cmd of COMMANDS) {
    route({
      method: 'POST',
      url: `/rollouts/:id/${cmd}`,
      access: { tenant: 'deploy', of: rolloutOf(c), mode: 'all' },
      handler: async ({ req, reply, params, principal }) => {
        await forward(c, req, 'POST', `/v1/rollouts/${encodeURIComponent(params.id!)}/${cmd}`);
        if (!isHtmx(req)) return go(req, reply, `/rollouts/${params.id}`);
        return rolloutFragment(await model(params.id!, principal));
      },
    });
  }
}
