// The reconcile loop: observe -> plan -> execute until nothing is left, one
// apply at a time. An apply counts only when every service is running and
// healthy through the bake time; a failure (pull error, crash loop,
// unhealthy, timeout) rolls the changed stacks back to their last good
// release, and the failed release is not retried until the hub sends a new
// directive (a higher seq: another release, or the same one deployed again).
// Between applies, engine events and a periodic pass put back what was
// changed by hand (drift).
import { sleep } from '../../shared/sleep.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, asFerryError } from '../../shared/errors.js';
import { writeFileAtomic } from '../../shared/files.js';
import type { Logger } from '../../shared/logger.js';
import type { OperatorHold, ReleaseStatus, ServiceStatus, Verification } from '../../shared/protocol.js';
import type { Release } from '../../shared/release.js';
import type { Engine, PullAuth } from '../engine/engine.js';
import { describeStep, executors, runSteps, type Executors } from './execute.js';
import { Journal } from './journal.js';
import { LABEL, desiredStack, isJob, jobRun, type Current, type DesiredStack, type FileProvider, type ObservedContainer } from './model.js';
import { plan, type JobFacts, type Plan } from './plan.js';
import { jobContainerOf, jobFacts, jobOutcome, readResult, verificationError } from './verify-jobs.js';
import { heldRelease, holdKey, holdView, liveHolds, stoppedServices, withoutStopped, type Hold } from './holds.js';

export const RECONCILE_FILE = 'reconcile.json';

export interface Target {
  stack: string;
  version: string;
  digest: string;
  release: Release;
  /** Pinned image -> the reference it runs from (the bank's registry); absent: as pinned. */
  pull?: Record<string, string>;
}

interface Persisted {
  format: 1;
  lastGood: Record<string, Target>;
  /**
   * Releases per stack that failed here, with the seq of the directive they
   * failed under: not retried under that directive (restarts, drift passes),
   * retried once under a later one.
   */
  failed: Record<string, FailedRelease[]>;
  statuses: Record<string, ReleaseStatus>;
  /** Verification jobs of the newest apply of each stack that has some (absent in files before them). */
  verification?: Record<string, Verification>;
  /** Operators' stops and scales (holds.ts), by `stack/service`; absent in files of earlier versions. */
  holds?: Record<string, Hold>;
}

/** What an operator asks of one service: stopped, a replica count, or as the release says. */
export type HoldChange = { state: 'stopped' } | { state: 'scaled'; replicas: number } | { state: 'none' };

interface FailedRelease {
  digest: string;
  seq: number;
}

export interface ReconcilerOptions {
  engine: Engine;
  agentId: string;
  stateDir: string;
  log: Logger;
  auth?: (image: string) => PullAuth | undefined;
  /** How long every service must stay running and healthy before a release counts as applied. */
  bakeMs?: number;
  pollMs?: number;
  applyTimeoutMs?: number;
  concurrency?: number;
  minFreeBytes?: number;
  /** How long a start-first update's old container keeps running once the service name no longer resolves to it. */
  drainMs?: number;
  report?: (releases: ReleaseStatus[], services: ServiceStatus[], drift: string[], holds: OperatorHold[]) => void;
  /**
   * Before a changed release starts: place its images where they run from
   * (agent/relay) and return each pinned image's pull reference. A failure
   * fails the release before anything is stopped (state failed, with the code).
   */
  prepare?: (targets: Target[], signal: AbortSignal) => Promise<Record<string, string>>;
  now?: () => number;
  /** Secret and config values prepared on this host (agent/secrets.ts); default: none are provided. */
  files?: FileProvider;
  /** Replicas the autoscaler chose for a stack's autoscaled services (agent/autoscale); clamped to the signed bounds. */
  scale?: (stack: string) => Readonly<Record<string, number>>;
}

/** A release that cannot be started yet: a secret or config has no value here. Its stack is left as it runs. */
interface Blocked {
  target: Target;
  error: FerryError;
}

/** Pure: is every desired container up? 'pending' while some are still starting. */
export function assess(current: Current, desired: readonly DesiredStack[], baseline: ReadonlyMap<string, number>): { state: 'ok' | 'pending' } | { state: 'failed'; error: FerryError } {
  let pending = false;
  for (const dc of desired.flatMap((s) => s.containers)) {
    const c = current.containers.find((x) => x.labels[LABEL.configHash] === dc.configHash && x.labels[LABEL.stack] === dc.stack && x.labels[LABEL.replica] === String(dc.replica));
    const label = `${dc.stack}/${dc.service}#${dc.replica}`;
    if (!c) return { state: 'failed', error: new FerryError('FERRY_E_UNHEALTHY', `${label} has no container`) };
    const base = baseline.get(c.id);
    if (base !== undefined && c.restartCount > base) return { state: 'failed', error: new FerryError('FERRY_E_CRASH_LOOP', `${label} restarted ${c.restartCount - base} time(s)`) };
    if (c.status === 'restarting') return { state: 'failed', error: new FerryError('FERRY_E_CRASH_LOOP', `${label} is restarting`) };
    if (c.status !== 'running') return { state: 'failed', error: new FerryError('FERRY_E_UNHEALTHY', `${label} is ${c.status}${c.exitCode !== null ? ` (exit ${c.exitCode})` : ''}`) };
    if (c.health === 'unhealthy') return { state: 'failed', error: new FerryError('FERRY_E_UNHEALTHY', `${label} is unhealthy`) };
    if (c.health === 'starting') pending = true;
  }
  return { state: pending ? 'pending' : 'ok' };
}

/** Pure: a desired container that has already failed (unhealthy, or restarting over and over). */
export function failing(current: Current, desired: readonly DesiredStack[]): FerryError | null {
  for (const dc of desired.flatMap((s) => s.containers)) {
    for (const c of current.containers) {
      if (c.labels[LABEL.configHash] !== dc.configHash || c.labels[LABEL.stack] !== dc.stack || c.labels[LABEL.replica] !== String(dc.replica)) continue;
      const label = `${dc.stack}/${dc.service}#${dc.replica}`;
      if (c.status === 'running' && c.health === 'unhealthy') return new FerryError('FERRY_E_UNHEALTHY', `${label} is unhealthy`);
      if (c.restartCount >= 3) return new FerryError('FERRY_E_CRASH_LOOP', `${label} restarted ${c.restartCount} times`);
    }
  }
  return null;
}

export function serviceStatuses(current: Current): ServiceStatus[] {
  return current.containers.filter((c) => !isJob(c)).map((c: ObservedContainer) => ({
    stack: c.labels[LABEL.stack] ?? '',
    service: c.labels[LABEL.service] ?? '',
    replica: Number(c.labels[LABEL.replica] ?? 0),
    release: c.labels[LABEL.release] ?? '',
    status: c.status,
    health: c.health,
    restarts: c.restartCount,
    image: c.image.slice(0, 512),
  }));
}

export class Reconciler {
  private persisted: Persisted;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly exec: Executors;
  private readonly journal: Journal;
  private readonly o: Required<Omit<ReconcilerOptions, 'auth' | 'report' | 'prepare'>> & Pick<ReconcilerOptions, 'report' | 'prepare'>;
  /** Digests of the releases waiting for a secret or config, retried on every drift pass. */
  private blocked = new Set<string>();
  private targets: Target[] = [];
  private seq = 0;

  constructor(opts: ReconcilerOptions) {
    this.o = { bakeMs: 10_000, pollMs: 500, applyTimeoutMs: 300_000, concurrency: 4, minFreeBytes: 256 * 1024 * 1024, drainMs: 2000, now: Date.now, files: () => undefined, scale: () => ({}), ...opts };
    this.exec = executors(opts.engine, { agentId: opts.agentId, auth: opts.auth ?? (() => undefined), minFreeBytes: this.o.minFreeBytes, drainMs: this.o.drainMs });
    this.journal = new Journal(opts.stateDir);
    this.persisted = load(opts.stateDir);
  }

  /** The last good release of each stack: what runs, or is rolled back to. */
  get running(): Target[] {
    return Object.values(this.persisted.lastGood);
  }

  get statuses(): ReleaseStatus[] {
    const v = this.persisted.verification ?? {};
    // An apply under way shows its own run once it starts, not the previous release's.
    return Object.values(this.persisted.statuses).map((st) => (v[st.stack] && (st.state !== 'applying' || v[st.stack]!.state === 'running') ? { ...st, verification: v[st.stack] } : st));
  }

  /** Services an operator stopped or scaled, as kept until started, scaled back or a new release. */
  get holds(): OperatorHold[] {
    return Object.values(this.persisted.holds ?? {}).map(holdView);
  }

  /** The release a stack runs under now (the target, or its last good one after a failure), if any. */
  targetOf(stack: string): Target | undefined {
    return this.effective(this.targets, this.seq).find((t) => t.stack === stack) ?? this.persisted.lastGood[stack];
  }

  /** Runs `fn` between applies and drift passes (remote operations that touch containers). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.enqueue(fn);
  }

  /**
   * An operator's stop, start or scale of one service: the hold is persisted
   * first, then (for a stop) its containers are stopped, then one pass makes
   * the engine match (creates or removes replicas, starts what was stopped).
   * Returns the steps run and the hold now in force.
   */
  operatorHold(stack: string, service: string, change: HoldChange, operation: string, signal: AbortSignal): Promise<{ steps: string[]; hold: OperatorHold | null }> {
    return this.enqueue(async () => {
      const t = this.targetOf(stack);
      const svc = t?.release.services[service];
      if (!t || !svc) throw new FerryError('FERRY_E_OPERATION_INVALID', `${stack}/${service} is not part of what this agent runs`);
      if (change.state === 'scaled' && change.replicas > 1 && svc.containerName) throw new FerryError('FERRY_E_OPERATION_INVALID', `${stack}/${service} has a container name (container_name): it runs one replica`);
      const key = holdKey(stack, service);
      const holds = { ...(this.persisted.holds ?? {}) };
      if (change.state === 'none' || (change.state === 'scaled' && change.replicas === svc.replicas)) delete holds[key];
      else holds[key] = { stack, service, state: change.state, ...(change.state === 'scaled' ? { replicas: change.replicas } : {}), release: t.version, digest: t.digest, since: new Date(this.o.now()).toISOString(), operation };
      this.persisted.holds = holds;
      this.save();
      const steps: string[] = [];
      if (change.state === 'stopped') {
        const current = await this.observe([]);
        for (const c of current.containers.filter((x) => x.labels[LABEL.stack] === stack && x.labels[LABEL.service] === service && x.status !== 'exited' && x.status !== 'dead')) {
          await this.o.engine.stopContainer(c.id, svc.stopGracePeriodMs);
          steps.push(`stop ${c.name} (stopped by an operator)`);
        }
      }
      const { stacks, blocked } = this.resolve(this.effective(this.targets, this.seq));
      steps.push(...(await this.converge(stacks, signal, this.o.applyTimeoutMs, blocked)));
      this.o.log.info({ stack, service, hold: holds[key] ?? null, operation, steps: steps.length }, 'operator hold');
      await this.report();
      return { steps, hold: holds[key] ? holdView(holds[key]) : null };
    });
  }

  close(): void {
    this.journal.close();
  }

  /** Applies the accepted releases (one apply at a time; later calls queue). */
  apply(seq: number, targets: Target[], signal: AbortSignal): Promise<void> {
    return this.enqueue(() => this.applyNow(seq, targets, signal));
  }

  /** One pass toward the current targets without a bake: drift repair. Returns what it did. */
  repair(signal: AbortSignal): Promise<string[]> {
    return this.enqueue(async () => {
      const { stacks: desired, blocked } = this.resolve(this.effective(this.targets, this.seq));
      if ([...this.blocked].some((d) => !blocked.some((b) => b.target.digest === d))) {
        // A value the bank was asked for is here now: apply (with its bake) what waited for it.
        await this.applyNow(this.seq, this.targets, signal);
        return ['applied releases whose secrets and configs were provided'];
      }
      const done = await this.converge(desired, signal, this.o.applyTimeoutMs, blocked);
      this.o.log.debug({ steps: done.length }, 'drift pass');
      if (done.length) {
        this.journal.write({ event: 'drift-repaired', what: done });
        this.o.log.warn({ steps: done }, 'drift repaired');
        await this.report(done);
      }
      return done;
    });
  }

  /** What one pass would do now, without doing it (`ferry-agent plan`). */
  async dryRun(targets: Target[], seq = this.seq): Promise<Plan> {
    const { stacks, blocked } = this.resolve(this.effective(targets, seq));
    const p = plan(await this.observe(stacks), stacks, { defaultGraceMs: 10_000, keep: blocked.map((b) => b.target.stack), keepServices: stoppedServices(this.persisted.holds ?? {}) });
    return { steps: p.steps, waiting: [...p.waiting, ...blocked.map((b) => `${b.target.stack}@${b.target.version} waits: ${b.error.message}`)] };
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The targets with each release that failed under this directive (or a later one) replaced by the stack's last good one. */
  private effective(targets: Target[], seq: number): Target[] {
    return targets.flatMap((t) => {
      const good = this.persisted.lastGood[t.stack];
      // The last good target of the same release carries where its images were placed (pull).
      if (!(this.persisted.failed[t.stack] ?? []).some((f) => f.digest === t.digest && f.seq >= seq)) return [good?.digest === t.digest ? good : t];
      return good ? [good] : [];
    });
  }

  /** The desired stacks, and the targets whose secrets or configs are not all here yet. */
  private resolve(targets: Target[]): { stacks: DesiredStack[]; blocked: Blocked[] } {
    const stacks: DesiredStack[] = [];
    const blocked: Blocked[] = [];
    const holds = this.persisted.holds ?? {};
    const stopped = stoppedServices(holds);
    for (const t of targets) {
      try {
        // An operator's scale of a service outranks the autoscaler's for as long as it holds.
        const scale = Object.fromEntries(Object.entries(this.o.scale(t.stack)).filter(([service]) => !holds[holdKey(t.stack, service)]));
        stacks.push(withoutStopped(desiredStack(this.o.agentId, heldRelease(t.release, t.digest, holds), this.o.files, t.pull, scale), stopped));
      } catch (err) {
        const e = asFerryError(err);
        if (e.code !== 'FERRY_E_SECRET_MISSING' && e.code !== 'FERRY_E_SECRET_FILE') throw e;
        blocked.push({ target: t, error: e });
      }
    }
    return { stacks, blocked };
  }

  private async applyNow(seq: number, targets: Target[], signal: AbortSignal): Promise<void> {
    this.targets = targets;
    this.seq = seq;
    // A new release of a stack ends the operators' holds on it.
    const held = this.persisted.holds ?? {};
    const kept = liveHolds(held, targets);
    if (Object.keys(kept).length !== Object.keys(held).length) {
      this.o.log.info({ ended: Object.keys(held).filter((k) => !kept[k]) }, 'operator holds ended by a new release');
      this.persisted.holds = kept;
      this.save();
    }
    let effective = this.effective(targets, seq);
    let { stacks: desired, blocked } = this.resolve(effective);
    const log = this.o.log.child({ seq });
    this.blocked = new Set(blocked.map((b) => b.target.digest));
    for (const b of blocked) {
      // Not started and not counted failed: it waits, and is retried on every drift pass until the value is here.
      log.warn({ code: b.error.code, detail: b.error.detail }, 'release waits for secrets or configs');
      this.persisted.statuses[b.target.stack] = { stack: b.target.stack, version: b.target.version, state: 'failed', code: b.error.code, message: b.error.message.slice(0, 1000), since: new Date(this.o.now()).toISOString(), runningVersion: this.persisted.lastGood[b.target.stack]?.version ?? null };
    }
    const ready = effective.filter((t) => !this.blocked.has(t.digest));
    const changed = ready.filter((t) => this.persisted.lastGood[t.stack]?.digest !== t.digest);
    this.journal.write({ event: 'apply-start', seq, targets: effective.map(({ stack, version, digest }) => ({ stack, version, digest })) });
    for (const t of changed) this.setStatus(t, 'applying');
    this.save();
    await this.report();
    if (this.o.prepare && changed.length) {
      let pull: Record<string, string>;
      try {
        pull = await this.o.prepare(changed, signal);
      } catch (err) {
        const e = asFerryError(err);
        if (signal.aborted) throw e;
        log.error({ code: e.code, detail: e.detail }, 'release not started: its images are not in place');
        this.journal.write({ event: 'failed', seq, code: e.code, message: e.message });
        const at = new Date(this.o.now()).toISOString();
        for (const t of changed) {
          this.persisted.failed[t.stack] = [...(this.persisted.failed[t.stack] ?? []).filter((f) => f.digest !== t.digest), { digest: t.digest, seq }].slice(-20);
          this.persisted.statuses[t.stack] = { stack: t.stack, version: t.version, state: 'failed', code: e.code, message: e.message.slice(0, 1000), since: at, runningVersion: this.persisted.lastGood[t.stack]?.version ?? null };
        }
        this.save();
        await this.report();
        return;
      }
      // Unchanged stacks keep running from where they were placed before.
      effective = effective.map((t) => (changed.includes(t) ? { ...t, pull } : t));
      this.targets = targets.map((t) => effective.find((e) => e.digest === t.digest) ?? t);
      ({ stacks: desired, blocked } = this.resolve(effective));
    }
    const verifying = desired.filter((d) => d.jobs?.length && changed.some((t) => t.stack === d.stack));
    this.startVerification(verifying, changed, seq);
    try {
      // A job of this run that outlived a crash is kept (and its result read by the gate), not started again.
      await this.converge(desired, signal, this.o.applyTimeoutMs, blocked, jobFacts(this.persisted.verification ?? {}, verifying, false));
      await this.bake(desired, signal);
      await this.verifyJobs(desired, verifying, blocked, signal);
    } catch (err) {
      const e = asFerryError(err);
      if (signal.aborted) throw e;
      log.error({ code: e.code, detail: e.detail }, 'apply failed; rolling back');
      this.journal.write({ event: 'failed', seq, code: e.code, message: e.message });
      for (const t of changed) this.persisted.failed[t.stack] = [...(this.persisted.failed[t.stack] ?? []).filter((f) => f.digest !== t.digest), { digest: t.digest, seq }].slice(-20);
      this.save();
      const back = this.resolve(this.effective(targets, seq));
      try {
        await this.converge(back.stacks, signal, this.o.applyTimeoutMs, back.blocked);
      } catch (err2) {
        log.error({ err: asFerryError(err2).message }, 'rollback did not converge');
      }
      for (const t of changed) {
        const good = this.persisted.lastGood[t.stack];
        this.persisted.statuses[t.stack] = { stack: t.stack, version: t.version, state: 'rolled-back', code: e.code, message: e.message.slice(0, 1000), since: new Date(this.o.now()).toISOString(), runningVersion: good?.version ?? null };
      }
      this.journal.write({ event: 'rolled-back', seq, stacks: changed.map((t) => t.stack) });
      this.save();
      await this.report();
      return;
    }
    for (const t of ready) {
      this.persisted.lastGood[t.stack] = t;
      if (changed.some((c) => c.stack === t.stack)) this.setStatus(t, 'applied');
    }
    for (const stack of Object.keys(this.persisted.lastGood)) {
      if (!effective.some((t) => t.stack === stack)) {
        delete this.persisted.lastGood[stack];
        delete this.persisted.statuses[stack];
      }
    }
    this.journal.write({ event: 'applied', seq });
    this.save();
    log.info({ releases: effective.map((t) => `${t.stack}@${t.version}`) }, 'release applied and healthy');
    await this.report();
  }

  private setStatus(t: Target, state: ReleaseStatus['state']): void {
    this.persisted.statuses[t.stack] = { stack: t.stack, version: t.version, state, since: new Date(this.o.now()).toISOString(), runningVersion: state === 'applied' ? t.version : (this.persisted.lastGood[t.stack]?.version ?? null) };
    this.save();
  }

  async observe(desired: readonly DesiredStack[]): Promise<Current> {
    const label = { key: LABEL.agent, value: this.o.agentId };
    const [containers, networks, volumes] = await Promise.all([this.o.engine.listContainers(label), this.o.engine.listNetworks(label), this.o.engine.listVolumes(label)]);
    const wanted = [...new Set(desired.flatMap((s) => [...s.containers.map((c) => c.spec.image), ...(s.jobs ?? []).map((j) => j.spec.image)]))];
    const present = await Promise.all(wanted.map((i) => this.o.engine.hasImage(i)));
    return { containers, networks, volumes, images: wanted.filter((_, i) => present[i]) };
  }

  /** A new run of the verification jobs of each changed stack that has some (an interrupted run of the same apply carries on). */
  private startVerification(verifying: DesiredStack[], changed: Target[], seq: number): void {
    const records = (this.persisted.verification ??= {});
    for (const t of changed) {
      if (!verifying.some((d) => d.stack === t.stack)) delete records[t.stack]; // its new release has no jobs
      else if (records[t.stack]?.run !== jobRun(seq, t.digest)) records[t.stack] = { run: jobRun(seq, t.digest), state: 'running', jobs: [], since: new Date(this.o.now()).toISOString() };
    }
  }

  /**
   * The verification gate's jobs: each runs once; a result is recorded before
   * its container goes. Throws the first failure (the apply rolls back).
   */
  private async verifyJobs(desired: DesiredStack[], verifying: DesiredStack[], blocked: readonly Blocked[], signal: AbortSignal): Promise<void> {
    if (!verifying.length) return;
    const records = this.persisted.verification!;
    void this.report();
    for (;;) {
      if (signal.aborted) throw new FerryError('FERRY_E_UNAVAILABLE', 'agent stopping');
      const current = await this.observe(desired);
      let recorded = false;
      for (const d of verifying) {
        const v = records[d.stack]!;
        for (const job of d.jobs!) {
          if (v.jobs.some((j) => j.service === job.service)) continue;
          const c = jobContainerOf(current, job, v.run);
          const outcome = jobOutcome(c, job, this.o.now());
          if (!c || !outcome) continue;
          const result = await readResult(this.o.engine, c, job, outcome);
          v.jobs.push(result);
          this.journal.write({ event: 'job-done', stack: d.stack, service: job.service, run: v.run, state: result.state });
          this.o.log.info({ stack: d.stack, job: job.service, state: result.state, exitCode: result.exitCode }, 'verification job finished');
          recorded = true;
        }
        if (d.jobs!.every((j) => v.jobs.some((r) => r.service === j.service))) v.state = v.jobs.every((j) => j.state === 'passed') ? 'passed' : 'failed';
      }
      if (recorded) {
        this.save();
        void this.report();
      }
      const p = plan(current, desired, { defaultGraceMs: 10_000, keep: blocked.map((b) => b.target.stack), jobs: jobFacts(records, verifying, true) });
      if (p.steps.length) {
        await runSteps(p.steps, this.exec, { concurrency: this.o.concurrency, journal: this.journal, signal });
        continue;
      }
      if (verifying.every((d) => records[d.stack]!.state !== 'running')) break;
      await sleep(this.o.pollMs, signal);
    }
    for (const d of verifying) {
      const e = verificationError(d.stack, records[d.stack]!, Object.fromEntries(d.jobs!.map((j) => [j.service, j.timeoutMs])));
      if (e) throw e;
    }
  }

  /** observe -> plan -> execute until nothing is left to do. Returns the steps it ran. */
  private async converge(desired: DesiredStack[], signal: AbortSignal, timeoutMs: number, blocked: readonly Blocked[] = [], jobs: JobFacts[] = []): Promise<string[]> {
    const keep = blocked.map((b) => b.target.stack);
    const deadline = this.o.now() + timeoutMs;
    const done: string[] = [];
    for (;;) {
      if (signal.aborted) throw new FerryError('FERRY_E_UNAVAILABLE', 'agent stopping');
      const current = await this.observe(desired);
      const broken = failing(current, desired);
      if (broken) throw broken; // a new container that already failed will not become ready by waiting
      const p = plan(current, desired, { defaultGraceMs: 10_000, keep, jobs, keepServices: stoppedServices(this.persisted.holds ?? {}) });
      if (p.steps.length === 0 && p.waiting.length === 0) return done;
      if (this.o.now() > deadline) throw new FerryError('FERRY_E_APPLY_TIMEOUT', p.waiting.join('; ') || 'steps still pending');
      if (p.steps.length) {
        await runSteps(p.steps, this.exec, { concurrency: this.o.concurrency, journal: this.journal, signal });
        done.push(...p.steps.map(describeStep));
        void this.report(); // progress: the hub sees containers come and go while it works
      } else await sleep(this.o.pollMs, signal);
    }
  }

  /** Verification gate: all running and healthy, then still so (no restarts) through the bake time. */
  private async bake(desired: DesiredStack[], signal: AbortSignal): Promise<void> {
    const deadline = this.o.now() + this.o.applyTimeoutMs;
    let baseline: Map<string, number> | null = null;
    let bakeEnds = 0;
    for (;;) {
      const current = await this.observe(desired);
      const a = assess(current, desired, baseline ?? new Map());
      if (a.state === 'failed') throw a.error;
      if (a.state === 'ok') {
        if (!baseline) {
          baseline = new Map(current.containers.map((c) => [c.id, c.restartCount]));
          bakeEnds = this.o.now() + this.o.bakeMs;
        }
        if (this.o.now() >= bakeEnds) return;
      } else if (this.o.now() > deadline) throw new FerryError('FERRY_E_UNHEALTHY', 'services did not become healthy in time');
      await sleep(this.o.pollMs, signal);
    }
  }

  /** Sends the current release states and containers (and any drift just repaired) to the hub. */
  async report(drift: string[] = []): Promise<void> {
    if (!this.o.report) return;
    try {
      const current = await this.observe([]);
      this.o.report(this.statuses, serviceStatuses(current), drift, this.holds);
    } catch (err) {
      this.o.log.warn({ err: asFerryError(err).message }, 'could not read service status');
    }
  }

  private save(): void {
    writeFileAtomic(join(this.o.stateDir, RECONCILE_FILE), JSON.stringify(this.persisted) + '\n', 0o600);
  }
}

function load(dir: string): Persisted {
  try {
    const p = JSON.parse(readFileSync(join(dir, RECONCILE_FILE), 'utf8')) as Persisted;
    // Before the seq was kept, a failed release was a bare digest: keep it failed until a different release arrives, as then.
    for (const [stack, list] of Object.entries(p.failed)) p.failed[stack] = (list as (FailedRelease | string)[]).map((f) => (typeof f === 'string' ? { digest: f, seq: Number.MAX_SAFE_INTEGER } : f));
    return p;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { format: 1, lastGood: {}, failed: {}, statuses: {} };
    throw new FerryError('FERRY_E_STATE_CORRUPT', `${RECONCILE_FILE}: ${(err as Error).message}`);
  }
}
