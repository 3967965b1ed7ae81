// The check runner: every check of the releases that run, on its own
// interval (first runs spread over the interval, so 1,000 checks do not fire
// at once), at most `concurrency` probes at a time, each bounded by its
// timeout. It never touches the reconciler: it reads the engine's containers
// (one shared, briefly cached list), probes, steps each check's state
// machine, and records transitions (checks.json) before sending them. The
// hub acknowledges what it stored (`checks-ack`); the rest is sent again on
// every (re)connect, so neither a lost connection nor a restart loses one.
import type { Logger } from '../../shared/logger.js';
import type { CheckInfo, ChecksMessage, CheckState } from '../../shared/protocol.js';
import type { Check, Release } from '../../shared/release.js';
import type { Engine } from '../engine/engine.js';
import { LABEL, type ObservedContainer } from '../reconcile/model.js';
import { initial, step, type CheckMemory } from './machine.js';
import { describeCheck, probe } from './probe.js';
import { CheckBook } from './store.js';

export interface CheckSpec {
  /** `stack/name` */
  key: string;
  stack: string;
  name: string;
  version: string;
  check: Check;
}

/** The checks the running releases declare. */
export function checksOf(releases: readonly Pick<Release, 'stack' | 'version' | 'checks'>[]): CheckSpec[] {
  return releases.flatMap((r) => Object.entries(r.checks ?? {}).map(([name, check]) => ({ key: `${r.stack}/${name}`, stack: r.stack, name, version: r.version, check })));
}

export interface CheckRunnerOptions {
  agentId: string;
  stateDir: string;
  engine: Pick<Engine, 'probe' | 'listContainers'>;
  log: Logger;
  send: (m: ChecksMessage) => boolean;
  /** Probes in flight at most (default 16). */
  concurrency?: number;
  /** How long one observation of the engine's containers serves probes (default 2 s). */
  observeMs?: number;
  now?: () => number;
  random?: () => number;
}

interface Running {
  spec: CheckSpec;
  memory: CheckMemory;
  timer: NodeJS.Timeout | undefined;
  /** Queued or probing: a run due meanwhile is skipped, not piled up. */
  busy: boolean;
}

const BATCH = 500;

export class CheckRunner {
  private readonly book: CheckBook;
  private readonly checks = new Map<string, Running>();
  private readonly queue: Running[] = [];
  private active = 0;
  private observed: { at: number; list: Promise<ObservedContainer[]> } | null = null;
  private sentUpTo = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private snapshotDue = true;
  private closed = false;
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(private readonly o: CheckRunnerOptions) {
    this.book = new CheckBook(o.stateDir);
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
  }

  /** Runs exactly these checks from now on (a changed check starts probing anew, keeping the state it had). */
  update(specs: readonly CheckSpec[]): void {
    const keys = new Set(specs.map((s) => s.key));
    for (const [key, r] of this.checks) {
      const next = specs.find((s) => s.key === key);
      if (next && JSON.stringify(next.check) === JSON.stringify(r.spec.check)) {
        r.spec = next;
        continue;
      }
      clearTimeout(r.timer);
      this.checks.delete(key);
    }
    for (const spec of specs) {
      if (this.checks.has(spec.key)) continue;
      // A check the agent ran before a restart carries on in the state it had.
      const kept = this.book.state(spec.key);
      const memory: CheckMemory = kept ? { ...kept, failed: 0, passed: 0 } : initial(this.now());
      const r: Running = { spec, memory, timer: undefined, busy: false };
      this.checks.set(spec.key, r);
      r.timer = setTimeout(() => this.due(r), Math.floor(this.random() * spec.check.intervalMs));
      r.timer.unref();
    }
    this.book.retain(keys);
    this.snapshotDue = true;
    this.scheduleFlush();
  }

  /** Connected (again): the hub gets every check's state and what it has not acknowledged. */
  connected(): void {
    this.sentUpTo = 0;
    this.snapshotDue = true;
    this.scheduleFlush(0);
  }

  acknowledged(upTo: number): void {
    this.book.acknowledge(upTo);
  }

  counts(): Record<CheckState, number> {
    const out: Record<CheckState, number> = { pending: 0, passing: 0, failing: 0 };
    for (const r of this.checks.values()) out[r.memory.state]++;
    return out;
  }

  /** Every check as it is now. */
  snapshot(): CheckInfo[] {
    return [...this.checks.values()].map(({ spec, memory }) => ({
      stack: spec.stack,
      check: spec.name,
      version: spec.version,
      ...describeCheck(spec.check),
      state: memory.state,
      since: memory.since,
      ...(memory.state === 'failing' && memory.error !== undefined && { error: memory.error.slice(0, 512) }),
    }));
  }

  close(): void {
    this.book.persist();
    this.closed = true;
    for (const r of this.checks.values()) clearTimeout(r.timer);
    this.checks.clear();
    clearTimeout(this.flushTimer);
  }

  private due(r: Running): void {
    if (this.closed || this.checks.get(r.spec.key) !== r) return;
    r.timer = setTimeout(() => this.due(r), r.spec.check.intervalMs);
    r.timer.unref();
    if (r.busy) return; // still queued or probing: this run is skipped
    r.busy = true;
    this.queue.push(r);
    this.pump();
  }

  private pump(): void {
    while (this.active < (this.o.concurrency ?? 16) && this.queue.length) {
      const r = this.queue.shift()!;
      this.active++;
      void this.run(r).finally(() => {
        r.busy = false;
        this.active--;
        this.pump();
      });
    }
  }

  private async run(r: Running): Promise<void> {
    let containers: ObservedContainer[];
    try {
      containers = await this.containers();
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, 'checks: engine not readable; probes wait');
      return; // the engine is not readable: that is not the service's fault
    }
    if (this.closed || this.checks.get(r.spec.key) !== r) return;
    const result = await probe(r.spec.check, { agentId: this.o.agentId, stack: r.spec.stack, containers, engine: this.o.engine });
    if (this.closed || this.checks.get(r.spec.key) !== r) return;
    const now = this.now();
    const { next, changed } = step(r.memory, result, r.spec.check, now);
    r.memory = next;
    if (!changed) return;
    this.book.record(r.spec.key, { stack: r.spec.stack, check: r.spec.name, from: changed.from, to: changed.to, at: now, ...(changed.error !== undefined && { error: changed.error.slice(0, 512) }) }, next);
    if (this.book.dropped) this.o.log.warn({ dropped: this.book.dropped }, 'check transitions dropped: the hub has not acknowledged them for a long time');
    const log = changed.to === 'failing' ? this.o.log.warn.bind(this.o.log) : this.o.log.info.bind(this.o.log);
    log({ check: r.spec.key, from: changed.from, to: changed.to, error: changed.error }, 'check changed state');
    this.scheduleFlush();
  }

  /** The engine's containers of this agent, read at most once per `observeMs` however many checks ask. */
  private containers(): Promise<ObservedContainer[]> {
    const now = this.now();
    if (!this.observed || now - this.observed.at >= (this.o.observeMs ?? 2000)) {
      const list = this.o.engine.listContainers({ key: LABEL.agent, value: this.o.agentId });
      this.observed = { at: now, list };
      list.catch(() => {
        if (this.observed?.list === list) this.observed = null;
      });
    }
    return this.observed.list;
  }

  private scheduleFlush(delayMs = 200): void {
    if (this.flushTimer || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flush();
    }, delayMs);
    this.flushTimer.unref();
  }

  /** Sends what is not yet sent on this connection: transitions in batches, and a snapshot when due. */
  private flush(): void {
    // Durable before anything leaves (and whether or not the hub is there to hear it).
    this.book.persist();
    const pending = this.book.outbox.filter((t) => t.n > this.sentUpTo);
    const snapshot = this.snapshotDue ? this.snapshot() : undefined;
    if (!pending.length && !snapshot) return;
    for (let i = 0; i < Math.max(1, pending.length); i += BATCH) {
      const part = pending.slice(i, i + BATCH);
      const last = i + BATCH >= pending.length;
      const ok = this.o.send({ type: 'checks', transitions: part, ...(last && snapshot && { snapshot: snapshot.slice(0, 2000) }) });
      if (!ok) return; // not connected: everything goes on the next connect
      if (part.length) this.sentUpTo = part[part.length - 1]!.n;
      if (last && snapshot) this.snapshotDue = false;
    }
  }
}
