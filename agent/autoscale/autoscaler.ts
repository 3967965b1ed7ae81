// The autoscaler's I/O around the pure decision (./decide.ts): every
// interval it samples the running replicas of each autoscaled service
// (engine stats), decides, and when the answer changes records it
// (autoscale.json, before anything moves), reports it to the hub and asks the
// reconciler for a pass, which adds or removes replicas like any drift
// repair. The reconciler reads the chosen replicas through `scaleOf` and
// clamps them to the signed bounds again, so nothing here can take a service
// outside what its release allows.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { asFerryError } from '../../shared/errors.js';
import { writeFileAtomic } from '../../shared/files.js';
import type { Logger } from '../../shared/logger.js';
import type { ScaleChange } from '../../shared/protocol.js';
import type { Release } from '../../shared/release.js';
import { sleep } from '../../shared/sleep.js';
import type { ContainerStats, Engine } from '../engine/engine.js';
import { LABEL, isJob } from '../reconcile/model.js';
import { bounds, cpuPercent, decide, type Usage } from './decide.js';

export const AUTOSCALE_FILE = 'autoscale.json';

interface Chosen {
  replicas: number;
  changedAt: number;
}

export interface AutoscalerOptions {
  agentId: string;
  stateDir: string;
  engine: Pick<Engine, 'usage' | 'listContainers'>;
  /** The bank's policy: off, or a cap. */
  policy: { enabled: boolean; maxReplicas: number | null };
  log: Logger;
  intervalMs: number;
  /** Converges the engine to the replicas now chosen (the reconciler's drift pass). */
  apply: (signal: AbortSignal) => Promise<unknown>;
  report: (change: ScaleChange) => void;
  now?: () => number;
}

export class Autoscaler {
  private chosen: Record<string, Record<string, Chosen>>;
  private releases: readonly Release[] = [];
  /** The previous sample of each container, for its CPU share. */
  private samples = new Map<string, ContainerStats & { at: number }>();
  private readonly now: () => number;

  constructor(private readonly o: AutoscalerOptions) {
    this.now = o.now ?? Date.now;
    this.chosen = load(o.stateDir);
  }

  /** The replicas chosen for a stack's autoscaled services (the reconciler clamps them to the release's bounds). */
  scaleOf(stack: string): Record<string, number> {
    if (!this.o.policy.enabled) return {};
    return Object.fromEntries(Object.entries(this.chosen[stack] ?? {}).map(([svc, c]) => [svc, c.replicas]));
  }

  /** The releases that run now (what is autoscaled). */
  update(releases: readonly Release[]): void {
    this.releases = releases;
  }

  async run(signal: AbortSignal): Promise<void> {
    if (!this.o.policy.enabled) return;
    while (!signal.aborted) {
      await sleep(this.o.intervalMs, signal).catch(() => undefined);
      if (signal.aborted) break;
      await this.tick(signal).catch((err) => this.o.log.warn({ err: asFerryError(err).message }, 'autoscale pass failed'));
    }
  }

  /** One pass: sample, decide, and apply what changed. */
  async tick(signal: AbortSignal): Promise<void> {
    const services = this.releases.flatMap((r) => Object.entries(r.services).flatMap(([name, s]) => (s.autoscale ? [{ stack: r.stack, name, s, spec: s.autoscale }] : [])));
    if (!services.length) return;
    const containers = (await this.o.engine.listContainers({ key: LABEL.agent, value: this.o.agentId })).filter((c) => !isJob(c) && c.status === 'running');
    const seen = new Set<string>();
    let changed = false;
    for (const { stack, name, s, spec } of services) {
      const replicas = containers.filter((c) => c.labels[LABEL.stack] === stack && c.labels[LABEL.service] === name);
      let usage: Usage | null = null;
      const shares: { cpu: number; mem: number }[] = [];
      for (const c of replicas) {
        seen.add(c.id);
        const st = await this.o.engine.usage(c.id);
        if (!st) continue;
        const sample = { ...st, at: this.now() };
        const prev = this.samples.get(c.id);
        this.samples.set(c.id, sample);
        const cpu = prev ? cpuPercent(prev, sample) : null;
        const limit = s.resources?.memoryBytes ?? st.memoryLimitBytes;
        if (cpu !== null) shares.push({ cpu, mem: limit > 0 ? (st.memoryBytes / limit) * 100 : 0 });
      }
      // Only a full set: every running replica sampled twice (new replicas are left a pass to settle).
      if (replicas.length && shares.length === replicas.length) usage = { cpuPercent: avg(shares.map((x) => x.cpu)), memoryPercent: avg(shares.map((x) => x.mem)) };
      const prior = this.chosen[stack]?.[name];
      const { min, max } = bounds(spec, this.o.policy.maxReplicas);
      const current = prior?.replicas ?? Math.min(max, Math.max(min, s.replicas));
      const d = decide({ spec, current, cap: this.o.policy.maxReplicas, usage, lastChangeAt: prior?.changedAt ?? null, now: this.now() });
      if (!d) continue;
      const at = this.now();
      (this.chosen[stack] ??= {})[name] = { replicas: d.replicas, changedAt: at };
      this.save();
      changed = true;
      this.o.log.info({ stack, service: name, from: current, to: d.replicas, reason: d.reason }, 'autoscale');
      this.o.report({ stack, service: name, from: current, to: d.replicas, reason: d.reason.slice(0, 256), at });
    }
    for (const id of this.samples.keys()) if (!seen.has(id)) this.samples.delete(id);
    // Services no release autoscales any more are forgotten.
    for (const [stack, svcs] of Object.entries(this.chosen)) for (const svc of Object.keys(svcs)) if (!services.some((x) => x.stack === stack && x.name === svc)) delete svcs[svc];
    if (changed) await this.o.apply(signal);
  }

  private save(): void {
    writeFileAtomic(join(this.o.stateDir, AUTOSCALE_FILE), JSON.stringify(this.chosen) + '\n', 0o600);
  }
}

const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function load(dir: string): Record<string, Record<string, Chosen>> {
  try {
    return JSON.parse(readFileSync(join(dir, AUTOSCALE_FILE), 'utf8')) as Record<string, Record<string, Chosen>>;
  } catch {
    return {}; // absent (or torn before its first rename): the signed replicas
  }
}
