// Gets signed state to agents: on (re)connect the tenant's root chain and any
// unacknowledged directive; after a deploy the new directive at once; after a
// root rotation the new chain. Acks and status reports are recorded (with
// their audit entries) and announced to waiters.
//
// With several replicas, a directive committed on one replica for an agent
// whose socket another holds is announced with a 'deliver' wake-up; the
// holder reads it from the database and sends it. A sweep (every SWEEP_MS)
// sends anything a lost wake-up left behind.
//
// Acks and status reports are queued in arrival order and written in batches,
// one transaction each (at most one batch per REPORT_FLUSH_MS while they keep
// coming; at once when the hub is idle): 10,000 agents answering a wave were
// 20,000 fsync'd commits. Each report still gets its own audit entry, and is
// announced only after its batch commits. A status report replaces one from
// the same agent still queued (only the newest state matters), and the queue
// is bounded: past MAX_QUEUED, the oldest status reports are dropped (never
// an ack; an agent reports again on its next change and on reconnect). A kill
// -9 loses what is queued; agents report again on reconnect and re-ack
// redelivered directives, so nothing is lost for good.
import { EventEmitter } from 'node:events';
import { AGENT_STACK } from '../../shared/agent-bundle.js';
import { asFerryError, type FerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { Ack, StatusMessage } from '../../shared/protocol.js';
import type { AuditInput, AuditLog } from '../audit/log.js';
import type { Cluster } from '../cluster/cluster.js';
import { IssueMemo, type DirectiveRecord, type Directives } from '../directives.js';
import type { Store } from '../store/store.js';
import type { TrustRoots } from '../trust.js';
import type { Gateway } from './gateway.js';

/** The least time between two batches of acks and status reports. */
export const REPORT_FLUSH_MS = 50;
/** The most a report waits while they are held (see `holdReports`): a 10,000-agent wave takes about 2 s to issue. */
export const REPORT_MAX_HOLD_MS = 5000;
/** Reports written per transaction; more wait for the next turn of the event loop. */
const REPORT_BATCH = 1000;
/** Reports queued at most (see above). */
export const MAX_QUEUED = 50_000;
/** How often a replica checks that its agents have their newest directive (several replicas). */
export const SWEEP_MS = 5000;

type Report = { kind: 'ack'; agentId: string; ack: Ack; at: number } | { kind: 'status'; agentId: string; msg: StatusMessage; at: number; dropped?: boolean };

/** What an agent's status report stores. */
const statusDoc = (msg: StatusMessage) => ({ releases: msg.releases, services: msg.services, ...(msg.alarms ? { alarms: msg.alarms } : {}), ...(msg.holds ? { holds: msg.holds } : {}), ...(msg.samples ? { samples: msg.samples } : {}) });

/** The audit entry of an agent's answer to a directive. */
const ackEntry = (agentId: string, tenant: string, ack: Ack): AuditInput => ({
  log: tenant,
  actor: { kind: 'agent', id: agentId },
  surface: 'agent',
  action: ack.accepted ? 'directive.accepted' : 'directive.refused',
  target: { type: 'agent', id: agentId },
  agents: [agentId],
  outcome: ack.accepted ? 'ok' : 'refused',
  details: { seq: ack.seq, digest: ack.digest, code: ack.code ?? null, message: ack.message?.slice(0, 500) ?? null },
});

export class Delivery extends EventEmitter {
  private readonly queue: Report[] = [];
  /** The queued status report of each agent (replaced by a newer one). */
  private readonly queuedStatus = new Map<string, Report & { kind: 'status' }>();
  private flushTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private lastFlush = 0;
  private held = false;
  private flushing: Promise<void> | null = null;
  /** Status reports dropped because the queue was full (a figure for /metrics). */
  droppedReports = 0;
  /** Checks a deploy must pass (deploy locks, hub/chat/locks.ts): each throws to refuse. */
  readonly gates: ((stack: string, agents: readonly { id: string; tenant: string; name: string; labels: Record<string, string> }[]) => Promise<void>)[] = [];

  constructor(
    private readonly gateway: Gateway,
    private readonly directives: Directives,
    private readonly trust: TrustRoots,
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly cluster: Cluster,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.setMaxListeners(0);
    gateway.on('hello', (agentId: string) => void this.onHello(agentId));
    gateway.on('ack', (agentId: string, ack: Ack) => this.enqueue({ kind: 'ack', agentId, ack, at: this.now() }));
    gateway.on('status', (agentId: string, msg: StatusMessage) => this.enqueue({ kind: 'status', agentId, msg, at: this.now() }));
    cluster.on('deliver', ({ agents }) => void this.deliverStored(agents.filter((a) => gateway.session(a))));
    cluster.on('roots', ({ tenant }) => void this.pushRootsLocal(tenant));
    cluster.on('ack', ({ acks }) => {
      for (const [agentId, seq] of acks) this.emit('remote-ack', agentId, seq);
    });
    if (cluster.shared) {
      this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_MS);
      this.sweepTimer.unref();
    }
  }

  private enqueue(r: Report): void {
    if (r.kind === 'status') {
      const older = this.queuedStatus.get(r.agentId);
      if (older) {
        // Keep its place in the queue, with the newest content.
        older.msg = r.msg;
        older.at = r.at;
        return;
      }
      this.queuedStatus.set(r.agentId, r);
    }
    this.queue.push(r);
    if (this.queue.length > MAX_QUEUED) this.dropOldestStatus();
    this.scheduleFlush();
  }

  private dropOldestStatus(): void {
    const i = this.queue.findIndex((x) => x.kind === 'status');
    if (i < 0) return;
    const [r] = this.queue.splice(i, 1) as [Report & { kind: 'status' }];
    this.queuedStatus.delete(r.agentId);
    this.droppedReports++;
    if (this.droppedReports % 1000 === 1) this.log.warn({ dropped: this.droppedReports, queued: this.queue.length }, 'report queue full: oldest status reports dropped (agents report again)');
  }

  /**
   * While a large wave is being issued the scheduler holds reports: they are
   * received and queued but written only when it is done (or once the oldest
   * has waited REPORT_MAX_HOLD_MS), so the hub's CPU goes to getting the
   * wave's directives out first (bench/rollout). The total work is the same.
   */
  holdReports(on: boolean): void {
    this.held = on;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.queue.length) this.scheduleFlush();
  }

  private scheduleFlush(delayMs?: number): void {
    if (this.flushTimer) return;
    const now = this.now();
    const due = this.held && this.queue.length ? this.queue[0]!.at + REPORT_MAX_HOLD_MS : this.lastFlush + REPORT_FLUSH_MS;
    this.flushTimer = setTimeout(
      () => {
        this.flushTimer = undefined;
        void this.flushReports();
      },
      delayMs ?? Math.max(0, due - now),
    );
  }

  /**
   * Writes queued acks and status reports (up to `max`) in one transaction,
   * then announces them. The scheduler calls it before deciding, so it
   * decides on everything agents have said. One flush at a time.
   */
  /**
   * Writes every report queued now, batch by batch (the event loop runs in
   * between), so one decision sees them all: after a wave, 20,000 acks and
   * reports are one pass of the scheduler, not twenty.
   */
  async drainReports(): Promise<void> {
    for (let left = this.queue.length; left > 0 && this.queue.length > 0; left -= REPORT_BATCH) {
      await this.flushReports();
      if (this.queue.length) await new Promise((r) => setImmediate(r));
    }
  }

  flushReports(max = REPORT_BATCH): Promise<void> {
    this.flushing ??= this.store.detached(() => this.writeReports(max)).finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async writeReports(max: number): Promise<void> {
    if (!this.queue.length) return;
    if (!this.store.db.isOpen) {
      this.log.warn({ reports: this.queue.length }, 'database closed; acks and status reports not recorded');
      this.queue.length = 0;
      this.queuedStatus.clear();
      return;
    }
    this.lastFlush = this.now();
    const batch = this.queue.splice(0, max);
    for (const r of batch) if (r.kind === 'status' && this.queuedStatus.get(r.agentId) === r) this.queuedStatus.delete(r.agentId);
    let done: (() => void)[] = [];
    try {
      await this.store.tx(async () => {
        done = [];
        try {
          done = await this.store.tx(() => this.recordBatch(batch));
          return;
        } catch (err) {
          this.log.warn({ err: (err as Error).message, reports: batch.length }, 'could not record the reports together; recording them one by one');
        }
        // One by one, each in a savepoint: a report that cannot be recorded is logged and the others go on.
        // The audit entries go in at the end, all at once (each log's lock is held for the commit only).
        const entries: (AuditInput & { at: number })[] = [];
        for (const r of batch) {
          const mine: (AuditInput & { at: number })[] = [];
          try {
            await this.store.tx(async () => {
              mine.length = 0;
              const tenant = await this.tenantOf(r.agentId);
              if (r.kind === 'ack') {
                const rec = await this.directives.recordAck(r.agentId, r.ack, r.at);
                if (rec) mine.push({ ...ackEntry(r.agentId, tenant, r.ack), at: r.at });
                done.push(this.ackAnnounced(r.agentId, r.ack, rec));
              } else {
                const prev = await this.store.fleet.recordStatus(r.agentId, statusDoc(r.msg), r.at);
                const x = this.statusEntries(r.agentId, tenant, prev, r.msg);
                mine.push(...x.entries.map((e) => ({ ...e, at: r.at })));
                done.push(x.announce);
              }
            });
            entries.push(...mine);
          } catch (err) {
            this.log.error({ agentId: r.agentId, kind: r.kind, err }, 'could not record a report from an agent');
          }
        }
        await this.audit.appendMany(entries, this.now());
      });
    } catch (err) {
      // The commit itself failed (database busy or gone): keep the batch, in order, for the next try.
      this.queue.unshift(...batch);
      for (const r of batch) if (r.kind === 'status' && !this.queuedStatus.has(r.agentId)) this.queuedStatus.set(r.agentId, r);
      this.log.error({ err, reports: batch.length }, 'could not record acks and status reports; will retry');
      this.scheduleFlush(REPORT_FLUSH_MS);
      return;
    }
    for (const announce of done) announce();
    if (done.length) this.cluster.publish('kick', {});
    // The other replicas' waiters (deploy --wait), in one wake-up for the batch.
    const acks = batch.filter((r): r is Report & { kind: 'ack' } => r.kind === 'ack').map((r): [string, number] => [r.agentId, r.ack.seq]);
    if (acks.length && this.cluster.shared) this.cluster.publish('ack', { acks });
    // A backlog (after a hold) drains batch by batch, the event loop running in between.
    if (this.queue.length) this.scheduleFlush(this.held ? undefined : 0);
  }

  private async tenantOf(agentId: string): Promise<string> {
    return this.gateway.session(agentId)?.tenant ?? (await this.store.fleet.agentTenant(agentId)).tenant;
  }

  /**
   * A batch of acks and status reports in a few statements whatever its
   * size (on PostgreSQL each statement is a round trip): the answers in
   * one, the agents' previous reports in one and the new ones in one, the
   * audit entries per log at the end. Returns the announcements; throws when
   * any part fails (the caller then records the reports one by one).
   */
  private async recordBatch(batch: readonly Report[]): Promise<(() => void)[]> {
    const statuses = batch.filter((r): r is Report & { kind: 'status' } => r.kind === 'status');
    if (new Set(statuses.map((r) => r.agentId)).size !== statuses.length) throw new Error('two status reports of one agent in a batch');
    const acks = batch.filter((r): r is Report & { kind: 'ack' } => r.kind === 'ack');
    const tenants = new Map<string, string>();
    for (const r of batch) if (!tenants.has(r.agentId)) tenants.set(r.agentId, await this.tenantOf(r.agentId));
    const acked = new Map(
      (await this.store.directives.ackMany(acks.map((r) => ({ agentId: r.agentId, seq: r.ack.seq, digest: r.ack.digest, accepted: r.ack.accepted, code: r.ack.code ?? null, message: r.ack.message ?? null, at: r.at })))).map((d) => [`${d.agentId}\n${d.seq}`, d]),
    );
    const prev = await this.store.fleet.recordStatuses(statuses.map((r) => ({ agentId: r.agentId, status: statusDoc(r.msg), at: r.at })));
    const entries: (AuditInput & { at: number })[] = [];
    const done: (() => void)[] = [];
    for (const r of batch) {
      const tenant = tenants.get(r.agentId)!;
      if (r.kind === 'ack') {
        const k = `${r.agentId}\n${r.ack.seq}`;
        const rec = acked.get(k);
        acked.delete(k); // the first answer changed it; a second is a duplicate
        if (rec) entries.push({ ...ackEntry(r.agentId, tenant, r.ack), at: r.at });
        else this.log.warn({ agentId: r.agentId, seq: r.ack.seq, digest: r.ack.digest }, 'ack for no pending directive (duplicate or stale)');
        done.push(this.ackAnnounced(r.agentId, r.ack, rec));
      } else {
        const x = this.statusEntries(r.agentId, tenant, prev.get(r.agentId) ?? null, r.msg);
        entries.push(...x.entries.map((e) => ({ ...e, at: r.at })));
        done.push(x.announce);
      }
    }
    await this.audit.appendMany(entries, this.now());
    return done;
  }

  /** What a status report puts on the audit log (release state changes, drift repairs, new alarms), and its announcement. */
  private statusEntries(agentId: string, tenant: string, prevDoc: unknown, msg: StatusMessage): { entries: AuditInput[]; announce: () => void } {
    const prev = prevDoc as { releases?: StatusMessage['releases']; alarms?: StatusMessage['alarms'] } | null;
    const before = new Map((prev?.releases ?? []).map((r) => [r.stack, `${r.version}:${r.state}`]));
    const entries: AuditInput[] = [];
    const append = (action: string, outcome: 'ok' | 'failed', details: Record<string, string | number | null>) =>
      entries.push({ log: tenant, actor: { kind: 'agent', id: agentId }, surface: 'agent', action, target: { type: 'agent', id: agentId }, agents: [agentId], outcome, details });
    for (const r of msg.releases) {
      if (before.get(r.stack) === `${r.version}:${r.state}` || r.state === 'applying') continue;
      append(`release.${r.state}`, r.state === 'applied' ? 'ok' : 'failed', { stack: r.stack, version: r.version, code: r.code ?? null, message: r.message ?? null, running: r.runningVersion });
    }
    if (msg.drift?.length) append('drift.repaired', 'ok', { steps: msg.drift.join('; ').slice(0, 4000) });
    // An alarm the agent raised (its own record of it is what counts): one entry when first reported.
    const known = new Set((prev?.alarms ?? []).map((a) => `${a.at} ${a.code}`));
    const raised = (msg.alarms ?? []).filter((a) => !known.has(`${a.at} ${a.code}`));
    for (const a of raised) append('agent.alarm', 'failed', { code: a.code, kind: a.kind ?? null, at: a.at, message: a.message.slice(0, 2000) });
    return {
      entries,
      announce: () => {
        for (const a of raised) this.log.error({ agentId, tenant, code: a.code, kind: a.kind, raisedAt: a.at, message: a.message }, 'ALARM raised by agent');
        this.emit('status', agentId, msg);
      },
    };
  }

  private ackAnnounced(agentId: string, ack: Ack, rec: DirectiveRecord | undefined): () => void {
    return () => {
      const log = this.log.child({ agentId, seq: ack.seq });
      if (ack.accepted) log.info({ duplicate: ack.duplicate ?? false }, 'agent accepted directive');
      else log.warn({ code: ack.code, message: ack.message }, 'agent refused directive');
      if (rec) this.emit('ack', rec);
    };
  }

  private async onHello(agentId: string): Promise<void> {
    try {
      const tenant = await this.tenantOf(agentId);
      const roots = await this.trust.chain(tenant);
      if (roots.length) this.gateway.send(agentId, { type: 'roots', roots });
      const msg = await this.directives.pendingFor(agentId, this.now());
      if (msg) this.gateway.send(agentId, msg);
    } catch (err) {
      this.log.error({ agentId, err }, 'could not deliver state to agent');
    }
  }

  /**
   * Issues a deploy directive inside the caller's transaction. Send it with
   * `send` once that transaction has committed, never before.
   */
  issue(agentId: string, stack: string, version: string, by: string | null, memo: IssueMemo): Promise<DirectiveRecord> {
    // An agent-version rollout's "stack" is the agent itself: the directive names the version to upgrade to.
    if (stack === AGENT_STACK) return this.directives.upgrade(agentId, version, by, this.now(), memo);
    return this.directives.deploy(agentId, stack, version, by, this.now(), memo);
  }

  /**
   * `issue` for many agents (a rollout's chunk), inside the caller's
   * transaction: each agent's directive, or why it cannot have one (the
   * others go on).
   */
  async issueMany(agentIds: readonly string[], stack: string, version: string, by: string | null, memo: IssueMemo): Promise<Map<string, DirectiveRecord | FerryError>> {
    if (stack !== AGENT_STACK) return this.directives.deployMany(agentIds, stack, version, by, this.now(), memo);
    const out = new Map<string, DirectiveRecord | FerryError>();
    for (const id of agentIds) {
      try {
        out.set(id, await this.store.tx(() => this.directives.upgrade(id, version, by, this.now(), memo)));
      } catch (err) {
        out.set(id, asFerryError(err));
      }
    }
    return out;
  }

  /**
   * Sends committed directives to those of their agents connected here, and
   * rings the replicas holding the others. Says which went out from here.
   */
  async send(directives: DirectiveRecord[], memo = new IssueMemo()): Promise<boolean[]> {
    const elsewhere: string[] = [];
    const sent: boolean[] = [];
    for (const d of directives) {
      try {
        const session = this.gateway.session(d.agentId);
        if (!session) {
          elsewhere.push(d.agentId);
          sent.push(false);
          continue;
        }
        sent.push(this.gateway.sendEncoded(d.agentId, 'directive', await this.directives.encodedMessage(d, memo, session.tenant), d.seq));
      } catch (err) {
        // Stored: the agent gets it on its next hello.
        this.log.error({ agentId: d.agentId, seq: d.seq, err }, 'could not send directive');
        sent.push(false);
      }
    }
    if (elsewhere.length && this.cluster.shared) this.cluster.publish('deliver', { agents: elsewhere });
    return sent;
  }

  /** Sends each of these (local) agents its newest pending directive, read from the database. */
  private async deliverStored(agentIds: string[], onlyNewer = false): Promise<void> {
    if (!agentIds.length) return;
    try {
      const pending = await this.store.directives.pendingOf(agentIds);
      const wanted = [...pending].filter(([agentId, seq]) => {
        const s = this.gateway.session(agentId);
        return s && !(onlyNewer && seq <= s.sentSeq);
      });
      // The directives in a few queries, not one per agent (a wave rung from another replica).
      const directives = await this.store.directives.pendingByKey(wanted);
      const memo = new IssueMemo();
      for (const [agentId] of wanted) {
        const s = this.gateway.session(agentId);
        const d = directives.get(agentId);
        if (!s || !d) continue; // gone meanwhile, or answered
        if (d.expiresAt <= this.now()) {
          const msg = await this.directives.pendingFor(agentId, this.now());
          if (msg) this.gateway.send(agentId, msg);
          continue;
        }
        this.gateway.sendEncoded(agentId, 'directive', await this.directives.encodedMessage(d, memo, s.tenant), d.seq);
      }
    } catch (err) {
      this.log.error({ err, agents: agentIds.length }, 'could not deliver stored directives');
    }
  }

  /** Several replicas: whatever a lost wake-up left behind. */
  private sweep(): Promise<void> {
    return this.deliverStored(this.gateway.localAgents(), true);
  }

  /** Issues a deploy directive (recorded by `record` in the same transaction) and sends it once committed. */
  async deploy(agentId: string, stack: string, version: string, by: string | null, record: (d: DirectiveRecord, tenant: string) => Promise<void>): Promise<{ directive: DirectiveRecord; sent: boolean }> {
    const tenant = (await this.store.fleet.agentTenant(agentId)).tenant;
    if (this.gates.length) {
      const a = await this.store.fleet.agent(agentId);
      for (const gate of this.gates) await gate(stack, [a]);
    }
    let memo = new IssueMemo();
    const directive = await this.store.tx(async () => {
      memo = new IssueMemo();
      const d = await this.issue(agentId, stack, version, by, memo);
      await record(d, tenant);
      return d;
    });
    const sent = (await this.send([directive], memo))[0]!;
    this.log.info({ agentId, seq: directive.seq, stack, version, sent }, 'directive issued');
    this.cluster.publish('kick', {});
    return { directive, sent };
  }

  /** Pushes the tenant's root chain to its connected agents, here and on the other replicas (after a rotation). */
  async pushRoots(tenant: string): Promise<number> {
    const n = await this.pushRootsLocal(tenant);
    if (this.cluster.shared) this.cluster.publish('roots', { tenant });
    return n;
  }

  private async pushRootsLocal(tenant: string): Promise<number> {
    try {
      const roots = await this.trust.chain(tenant);
      let n = 0;
      for (const id of this.gateway.localAgents()) if (this.gateway.session(id)?.tenant === tenant && this.gateway.send(id, { type: 'roots', roots })) n++;
      return n;
    } catch (err) {
      this.log.error({ tenant, err }, 'could not push trust roots');
      return 0;
    }
  }

  /** Resolves when the agent acknowledges directive `seq` (on any replica), or with its current record on timeout. */
  async waitForAck(agentId: string, seq: number, timeoutMs: number): Promise<DirectiveRecord> {
    const now = await this.directives.get(agentId, seq);
    if (now.status !== 'pending') return now;
    return new Promise((resolve) => {
      let done = false;
      const finish = (rec: DirectiveRecord) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.off('ack', onAck);
        this.off('remote-ack', onRemote);
        resolve(rec);
      };
      const reread = () =>
        void this.directives.get(agentId, seq).then(
          (rec) => (rec.status !== 'pending' ? finish(rec) : undefined),
          () => undefined,
        );
      const onAck = (rec: DirectiveRecord) => {
        if (rec.agentId === agentId && rec.seq === seq) finish(rec);
      };
      const onRemote = (a: string, s: number) => {
        if (a === agentId && s === seq) reread();
      };
      const timer = setTimeout(() => void this.directives.get(agentId, seq).then(finish, () => finish(now)), timeoutMs);
      this.on('ack', onAck);
      this.on('remote-ack', onRemote);
      // It may have been answered between the read above and now.
      reread();
    });
  }

  close(): void {
    clearInterval(this.sweepTimer);
  }
}
