// Runs one verified, allowed operation through the engine seam: what each
// kind does, and what it answers. Kinds that touch containers run between
// the reconciler's applies and drift passes (`reconciler.exclusive`), so an
// operator's restart never races a repair; stop, start and scale change the
// reconciler's desired state itself (operator holds, reconcile/holds.ts).
// Streamed kinds (logs, exec, stats while watched) are in stream-kinds.ts.
import { FerryError } from '../../shared/errors.js';
import { sleep } from '../../shared/sleep.js';
import type { Logger } from '../../shared/logger.js';
import type { Operation } from '../../shared/operation.js';
import type { ContainerStats, NetworkView, OperationResult } from '../../shared/protocol.js';
import type { Release } from '../../shared/release.js';
import type { Engine } from '../engine/engine.js';
import type { OperationsEngine } from '../engine/operations.js';
import { LABEL, agentPrefix, networkName, type ObservedContainer } from '../reconcile/model.js';
import type { Reconciler } from '../reconcile/reconciler.js';

/** How long a rolling restart waits for one replica to be ready before it stops (the others are left as they run). */
export const READY_TIMEOUT_MS = 120_000;

export interface RunContext {
  engine: Engine & OperationsEngine;
  reconciler: Reconciler;
  agentId: string;
  log: Logger;
  signal: AbortSignal;
  now: () => number;
  pollMs?: number;
}

/** `api#0`: how a container is named in answers and stream chunks. */
export const srcOf = (c: ObservedContainer) => `${c.labels[LABEL.service] ?? '?'}#${c.labels[LABEL.replica] ?? '?'}`;
const replicaOf = (c: ObservedContainer) => Number(c.labels[LABEL.replica] ?? 0);

/** This agent's containers of a stack (and service, and replica), by replica. */
export async function containersOf(ctx: RunContext, stack?: string, service?: string, replica?: number): Promise<ObservedContainer[]> {
  const all = await ctx.engine.listContainers({ key: LABEL.agent, value: ctx.agentId });
  return all
    .filter((c) => (!stack || c.labels[LABEL.stack] === stack) && (!service || c.labels[LABEL.service] === service) && (replica === undefined || replicaOf(c) === replica))
    .sort((a, b) => (a.labels[LABEL.stack] ?? '').localeCompare(b.labels[LABEL.stack] ?? '') || (a.labels[LABEL.service] ?? '').localeCompare(b.labels[LABEL.service] ?? '') || replicaOf(a) - replicaOf(b));
}

/** The service as the release running here has it; FERRY_E_OPERATION_INVALID when it runs no such service. */
export function serviceOf(ctx: RunContext, stack: string, service: string): { release: Release; svc: Release['services'][string] } {
  const t = ctx.reconciler.targetOf(stack);
  const svc = t?.release.services[service];
  if (!t || !svc) throw new FerryError('FERRY_E_OPERATION_INVALID', `${stack}/${service} is not part of what this agent runs`);
  return { release: t.release, svc };
}

const ready = (c: ObservedContainer) => c.status === 'running' && (c.health === 'healthy' || c.health === 'none');

/** Restarts the service's containers, one at a time; with several, each must be ready before the next goes. */
export async function restart(op: Operation, ctx: RunContext): Promise<OperationResult> {
  const stack = op.stack!;
  const service = op.service!;
  return ctx.reconciler.exclusive(async () => {
    const { svc } = serviceOf(ctx, stack, service);
    if (ctx.reconciler.holds.some((h) => h.stack === stack && h.service === service && h.state === 'stopped')) {
      throw new FerryError('FERRY_E_OPERATION_INVALID', `${stack}/${service} was stopped by an operator: start it (\`ferry service start\`) instead`);
    }
    const cs = await containersOf(ctx, stack, service, op.args.replica);
    if (!cs.length) throw new FerryError('FERRY_E_OPERATION_INVALID', `${stack}/${service}${op.args.replica !== undefined ? `#${op.args.replica}` : ''} has no container here`);
    const done: string[] = [];
    for (const c of cs) {
      await ctx.engine.restartContainer(c.id, svc.stopGracePeriodMs);
      done.push(c.name);
      if (cs.length > 1) await waitReady(ctx, c, `${stack}/${srcOf(c)}`, done.length < cs.length);
    }
    ctx.log.info({ stack, service, containers: done }, 'restarted by an operator');
    return { containers: done };
  });
}

async function waitReady(ctx: RunContext, c: ObservedContainer, label: string, more: boolean): Promise<void> {
  const deadline = ctx.now() + READY_TIMEOUT_MS;
  for (;;) {
    const now = (await ctx.engine.listContainers({ key: LABEL.agent, value: ctx.agentId })).find((x) => x.id === c.id);
    if (now && ready(now)) return;
    if (ctx.now() > deadline || ctx.signal.aborted) {
      throw new FerryError('FERRY_E_UNHEALTHY', `${label} is ${now ? `${now.status}/${now.health}` : 'gone'} ${READY_TIMEOUT_MS / 1000} s after its restart${more ? '; the replicas after it were not restarted' : ''}`);
    }
    await sleep(ctx.pollMs ?? 250, ctx.signal);
  }
}

/** stop, start, scale: an operator hold, persisted before anything is done, and one pass toward it. */
export async function hold(op: Operation, ctx: RunContext): Promise<OperationResult> {
  const change = op.kind === 'stop' ? ({ state: 'stopped' } as const) : op.kind === 'scale' ? ({ state: 'scaled', replicas: op.args.replicas! } as const) : ({ state: 'none' } as const);
  const r = await ctx.reconciler.operatorHold(op.stack!, op.service!, change, op.id, ctx.signal);
  const cs = await containersOf(ctx, op.stack, op.service);
  return { steps: r.steps.map((s) => s.slice(0, 1024)), hold: r.hold, containers: cs.map((c) => `${c.name} ${c.status}`) };
}

/** The networks a service of the release joins (its names in the release). */
function serviceNetworks(svc: Release['services'][string]): string[] {
  return svc.networkMode ? [] : svc.networks.length ? svc.networks : ['default'];
}

/** Each stack's networks here, who is attached, and which containers should be and are not. */
export async function networks(op: Operation, ctx: RunContext): Promise<OperationResult> {
  const prefix = agentPrefix(ctx.agentId);
  const label = { key: LABEL.agent, value: ctx.agentId };
  const [nets, containers] = await Promise.all([ctx.engine.listNetworks(label), ctx.engine.listContainers(label)]);
  const stacks = op.stack ? [op.stack] : ctx.reconciler.running.map((t) => t.stack).sort();
  const out: NetworkView[] = [];
  for (const stack of stacks) {
    const t = ctx.reconciler.targetOf(stack);
    if (!t) {
      if (op.stack) throw new FerryError('FERRY_E_OPERATION_INVALID', `stack ${stack} does not run on this agent`);
      continue;
    }
    const names = new Set<string>(Object.keys(t.release.networks));
    for (const svc of Object.values(t.release.services)) for (const n of serviceNetworks(svc)) names.add(n);
    for (const network of [...names].sort()) {
      const engineName = networkName(prefix, stack, network);
      const mine = containers.filter((c) => c.labels[LABEL.stack] === stack);
      const attached = mine
        .filter((c) => Object.hasOwn(c.networks, engineName))
        .map((c) => ({ src: srcOf(c), name: c.name, aliases: (c.networks[engineName] ?? []).slice(0, 16) }))
        .sort((x, y) => x.src.localeCompare(y.src));
      const missing = mine
        .filter((c) => {
          const svc = t.release.services[c.labels[LABEL.service] ?? ''];
          return !!svc && serviceNetworks(svc).includes(network) && !Object.hasOwn(c.networks, engineName);
        })
        .map(srcOf)
        .sort();
      out.push({ stack, network, engineName, present: nets.some((n) => n.name === engineName), internal: t.release.networks[network]?.internal ?? false, attached, missing });
    }
  }
  return { networks: out };
}

/** Joins the service's containers to the networks of the release they are missing (with the service's alias). */
export async function reconnect(op: Operation, ctx: RunContext): Promise<OperationResult> {
  const stack = op.stack!;
  const service = op.service!;
  return ctx.reconciler.exclusive(async () => {
    const { release, svc } = serviceOf(ctx, stack, service);
    const wanted = serviceNetworks(svc).filter((n) => !op.args.network || n === op.args.network);
    if (op.args.network && !wanted.length) throw new FerryError('FERRY_E_OPERATION_INVALID', `${stack}/${service} is not on network ${op.args.network} in ${stack}@${release.version}`);
    const prefix = agentPrefix(ctx.agentId);
    const steps: string[] = [];
    for (const c of await containersOf(ctx, stack, service)) {
      const missing = wanted.map((n) => networkName(prefix, stack, n)).filter((n) => !Object.hasOwn(c.networks, n));
      if (!missing.length) continue;
      await ctx.engine.setAliases(c.id, missing, [service]);
      steps.push(`${srcOf(c)} joined ${missing.join(', ')}`);
    }
    ctx.log.info({ stack, service, steps }, 'networks reconnected by an operator');
    return { steps, containers: steps.length ? steps.map((s) => s.split(' ')[0]!) : [] };
  });
}

/** One sample of every container of the target (all of this agent's when no stack is named). */
export async function sample(op: Pick<Operation, 'stack' | 'service' | 'args'>, ctx: RunContext): Promise<ContainerStats[]> {
  const cs = await containersOf(ctx, op.stack, op.service, op.args.replica);
  const out: ContainerStats[] = [];
  // one moment per round: a watcher groups the samples of a round by it
  const at = new Date(ctx.now()).toISOString();
  let next = 0;
  const worker = async () => {
    while (next < cs.length) {
      const c = cs[next++]!;
      const base = { src: srcOf(c), stack: c.labels[LABEL.stack] ?? '', name: c.name, state: c.status, restarts: c.restartCount, at };
      if (c.status !== 'running') {
        out.push({ ...base, cpuPercent: 0, memoryBytes: 0, memoryLimitBytes: 0, netRxBytes: 0, netTxBytes: 0, pids: 0 });
        continue;
      }
      try {
        out.push({ ...base, ...(await ctx.engine.stats(c.id, ctx.signal)) });
      } catch (err) {
        if ((err as FerryError).code !== 'FERRY_E_NOT_FOUND') throw err; // removed meanwhile
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, cs.length) }, worker));
  return out.sort((a, b) => a.stack.localeCompare(b.stack) || a.src.localeCompare(b.src));
}
