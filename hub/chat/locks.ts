// Deploy locks: `ferry lock payments env=prod "quarter close"` stops deploys
// of a stack (or every stack: *) to the agents a selector picks, within the
// tenants the locker may deploy to, until `ferry unlock L-N`. A gate on both
// deploy paths (rollouts.create and delivery.deploy, whatever the surface)
// refuses with who locked and why. A rollout already running when the lock
// is set is not stopped by it (pause it).
import { HUB_LOG } from '../../shared/audit.js';
import { FerryError } from '../../shared/errors.js';
import { listScope } from '../http/access.js';
import { audited, type HubContext } from '../http/context.js';
import type { Principal } from '../http/principal.js';
import { matches, parseSelector, type Selectable } from '../rollouts/selector.js';
import type { LockRecord } from '../store/chat.js';
import type { Store } from '../store/store.js';

export function lockCovers(l: LockRecord, stack: string, a: Selectable): boolean {
  if (l.stack !== '*' && l.stack !== stack) return false;
  if (l.tenants !== null && !l.tenants.includes(a.tenant)) return false;
  return matches(parseSelector(l.selector), a);
}

export async function lockText(store: Store, l: LockRecord): Promise<string> {
  const by = l.createdBy ? ((await store.people.userById(l.createdBy))?.name ?? l.createdBy) : 'someone';
  return `${l.id} by ${by} since ${new Date(l.createdAt).toISOString().slice(0, 16).replace('T', ' ')} UTC: "${l.reason}" (${l.stack === '*' ? 'every stack' : l.stack} on ${l.selector}${l.tenants ? `, ${l.tenants.join(', ')}` : ''})`;
}

/** The gate: refuses when any lock covers any of the agents. */
export function lockGate(store: Store): (stack: string, agents: readonly Selectable[]) => Promise<void> {
  return async (stack, agents) => {
    const locks = await store.chat.locks();
    if (!locks.length) return;
    for (const l of locks) {
      const hit = agents.filter((a) => lockCovers(l, stack, a));
      if (hit.length) throw new FerryError('FERRY_E_LOCKED', `${await lockText(store, l)} covers ${hit.length} of these agents (${hit.slice(0, 3).map((a) => a.name || a.id).join(', ')}${hit.length > 3 ? ', …' : ''})`);
    }
  };
}

/** The tenants `p` may deploy to (null: all); a lock of theirs covers only those. */
export async function deployScope(store: Store, p: Principal): Promise<string[] | null> {
  const scope = await listScope(store, p, 'deploy');
  if (scope !== null && scope.length === 0) throw new FerryError('FERRY_E_FORBIDDEN', `needs deploy on at least one tenant; ${p.userName} may deploy nowhere here`);
  return scope;
}

const logFor = (tenants: string[] | null) => (tenants?.length === 1 ? tenants[0]! : HUB_LOG);

/** Sets a lock (API and chat alike), with its audit entry. */
export async function createLock(ctx: HubContext, p: Principal, input: { stack: string; selector: string; reason: string }): Promise<LockRecord> {
  if (!/^([a-z0-9][a-z0-9-]{0,62}|\*)$/.test(input.stack)) throw new FerryError('FERRY_E_VALIDATION', `stack ${JSON.stringify(input.stack.slice(0, 70))}: a stack name or *`);
  if (!input.reason.trim()) throw new FerryError('FERRY_E_VALIDATION', 'reason: say why (it is shown to whoever is stopped)');
  const scope = await deployScope(ctx.store, p);
  const selector = parseSelector(input.selector).text;
  return audited(
    ctx,
    p,
    () => ctx.store.chat.addLock({ stack: input.stack, selector, tenants: scope, reason: input.reason.trim().slice(0, 500) }, p.userId, ctx.now()),
    (l) => ({ log: logFor(scope), action: 'lock.create', target: { type: 'lock', id: l.id }, details: { stack: l.stack, selector: l.selector, tenants: l.tenants?.join(',') ?? null, reason: l.reason } }),
  );
}

/** A lock `p` may lift: one on tenants they may all deploy to (one they cannot see answers not found, one they only see forbidden). */
export async function findLock(ctx: HubContext, p: Principal, id: string): Promise<LockRecord> {
  const l = await ctx.store.chat.lock(id);
  const within = (scope: string[] | null) => scope === null || (l!.tenants !== null && l!.tenants.every((t) => scope.includes(t)));
  if (!l || !(await visibleLocks(ctx, p)).some((v) => v.id === l.id)) throw new FerryError('FERRY_E_NOT_FOUND', `lock ${id}`);
  if (!within(await listScope(ctx.store, p, 'deploy'))) throw new FerryError('FERRY_E_FORBIDDEN', `lifting ${l.id} needs deploy on ${l.tenants?.join(', ') ?? 'every tenant (a vendor-wide lock)'}; ${p.userName} does not have it`);
  return l;
}

export async function removeLock(ctx: HubContext, p: Principal, id: string): Promise<LockRecord> {
  const l = await findLock(ctx, p, id);
  await audited(
    ctx,
    p,
    async () => {
      if (!(await ctx.store.chat.removeLock(l.id, p.userId, ctx.now()))) throw new FerryError('FERRY_E_NOT_FOUND', `lock ${l.id}`);
    },
    () => ({ log: logFor(l.tenants), action: 'lock.remove', target: { type: 'lock', id: l.id }, details: { stack: l.stack, selector: l.selector } }),
  );
  return l;
}

/** Locks in force that concern what `p` may read. */
export async function visibleLocks(ctx: HubContext, p: Principal): Promise<LockRecord[]> {
  const scope = await listScope(ctx.store, p, 'read');
  return (await ctx.store.chat.locks()).filter((l) => scope === null || (l.tenants !== null && l.tenants.some((t) => scope.includes(t))));
}
