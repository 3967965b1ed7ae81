// Executors: one per step kind (a mapped type, so a missing handler is a
// compile error), and the runner that takes a batch phase by phase, steps of
// one phase in parallel (bounded), journaling each step before and after.
import { FerryError } from '../../shared/errors.js';
import { sleep } from '../../shared/sleep.js';
import type { Engine, PullAuth } from '../engine/engine.js';
import type { Journal } from './journal.js';
import { LABEL, agentPrefix, jobContainer } from './model.js';
import { PHASES, type Step, type StepKind } from './plan.js';

export type Executors = { [K in StepKind]: (step: Extract<Step, { kind: K }>, signal: AbortSignal) => Promise<void> };

export interface ExecutorOptions {
  agentId: string;
  /** Registry credentials for an image, from the agent's config. */
  auth: (image: string) => PullAuth | undefined;
  /** Refuse to pull when the engine's disk has less free space than this. */
  minFreeBytes: number;
  /** How long a drained container keeps running once the service name no longer resolves to it. Default 2 s. */
  drainMs?: number;
}

export function executors(engine: Engine, opts: ExecutorOptions): Executors {
  return {
    pull: async (s, signal) => {
      const free = await engine.freeDiskBytes();
      if (free !== null && free < opts.minFreeBytes) {
        throw new FerryError('FERRY_E_DISK_FULL', `${Math.round(free / 1048576)} MiB free, ${Math.round(opts.minFreeBytes / 1048576)} MiB required before pulling ${s.image}`);
      }
      await engine.pullImage(s.image, opts.auth(s.image), signal);
    },
    createNetwork: async (s) => {
      await engine.createNetwork(s.name, { ...s.labels, [LABEL.agent]: opts.agentId, [LABEL.stack]: s.stack }, s.internal);
    },
    createVolume: async (s) => {
      await engine.createVolume(s.name, { ...s.labels, [LABEL.agent]: opts.agentId, [LABEL.stack]: s.stack });
    },
    stop: async (s, signal) => {
      if (s.drain) {
        // Start-first: the alias stops resolving to the old container before it dies. It re-joins its networks
        // without the alias rather than leaving them: Docker drops an address from its DNS only after the address
        // is gone, so a client that resolved it a moment earlier sends its SYN to nowhere. Re-joined, the container
        // has that address again (Docker hands out the lowest free one, the one it just released) and answers the
        // client's retransmission, 1 s later (3 s for a second one: hence 2 s after the re-join); requests in
        // flight finish meanwhile.
        await engine.setAliases(s.id, s.drain, []).catch((err: unknown) => {
          if (!(err instanceof FerryError && err.code === 'FERRY_E_NOT_FOUND')) throw err; // gone already: nothing to drain
        });
        await sleep(opts.drainMs ?? 2000, signal);
      }
      await engine.stopContainer(s.id, s.graceMs);
    },
    remove: (s) => engine.removeContainer(s.id),
    create: async (s) => {
      // The config hash (a label) stays the full spec's: the container is the desired one, only not aliased yet.
      const spec = s.deferAlias ? { ...s.container.spec, aliases: [] } : s.container.spec;
      const id = await engine.createContainer(spec);
      await engine.startContainer(id);
    },
    start: (s) => engine.startContainer(s.id),
    alias: (s) => engine.setAliases(s.id, s.networks, s.aliases),
    removeNetwork: (s) => engine.removeNetwork(s.id),
    runJob: async (s) => {
      // Named for its run: after a crash between create and start, the same container is found (and started once).
      const id = await engine.createContainer(jobContainer(agentPrefix(opts.agentId), s.job, s.run));
      await engine.startContainer(id);
    },
  };
}

export function describeStep(s: Step): string {
  switch (s.kind) {
    case 'pull':
      return `pull ${s.image}`;
    case 'createNetwork':
    case 'createVolume':
    case 'removeNetwork':
      return `${s.kind} ${s.name}`;
    case 'create':
      return `create ${s.container.spec.name}${s.deferAlias ? ' without its alias' : ''} (${s.reason})`;
    case 'alias':
      return `alias ${s.name} as ${s.aliases.join(', ')} on ${s.networks.join(', ')} (${s.reason})`;
    case 'stop':
    case 'remove':
    case 'start':
      return `${s.kind} ${s.name} (${s.reason})`;
    case 'runJob':
      return `runJob ${s.job.stack}/${s.job.service} run ${s.run} (${s.reason})`;
  }
}

/** Runs a batch: phases in order, steps of a phase concurrently (at most `concurrency`). */
export async function runSteps(steps: Step[], exec: Executors, opts: { concurrency: number; journal: Journal; signal: AbortSignal }): Promise<void> {
  for (const phase of PHASES) {
    const batch = steps.filter((s) => phase.includes(s.kind));
    let next = 0;
    const worker = async () => {
      while (next < batch.length) {
        if (opts.signal.aborted) throw new FerryError('FERRY_E_UNAVAILABLE', 'agent stopping');
        const step = batch[next++]!;
        opts.journal.write({ event: 'step', kind: step.kind, what: describeStep(step) });
        await (exec[step.kind] as (s: Step, signal: AbortSignal) => Promise<void>)(step, opts.signal);
        opts.journal.write({ event: 'step-done', kind: step.kind, what: describeStep(step) });
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, batch.length) }, worker));
  }
}
