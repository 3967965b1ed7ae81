// What agents say about what runs (protocol 'checks' and 'figures'), stored
// in batches: one transaction a second however many agents speak, as the
// relay progress and the report queue are. Transitions are acknowledged to
// their agent (`checks-ack`) only once committed; an agent sends again what
// was not acknowledged, and a transition is stored once by its number.
// Autoscale changes go to the event stream and the tenant's audit log in the
// same transaction; alarms agents raise become alerts (raised once).
import type { Logger } from '../../shared/logger.js';
import type { ChecksMessage, FiguresMessage, ScaleChange, StatusMessage } from '../../shared/protocol.js';
import type { AuditLog } from '../audit/log.js';
import type { Delivery } from '../gateway/delivery.js';
import type { Gateway } from '../gateway/gateway.js';
import type { AgentChecks } from '../store/checks.js';
import type { Store } from '../store/store.js';
import { createHash } from 'node:crypto';

export const FLUSH_MS = 1000;
/** Agents batched at most before a flush runs at once. */
const MAX_BATCH = 2000;

interface Pending {
  checks: Map<string, AgentChecks>;
  figures: Map<string, { tenant: string; f: FiguresMessage; at: number }>;
  scaled: { agentId: string; tenant: string; c: ScaleChange }[];
  alarms: { agentId: string; tenant: string; at: string; code: string; message: string; kind?: string }[];
}

const empty = (): Pending => ({ checks: new Map(), figures: new Map(), scaled: [], alarms: [] });

export class CheckIntake {
  private pending = empty();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  /** Called after each committed batch (the alert rules look sooner). */
  onStored: () => void = () => {};

  constructor(
    private readonly store: Store,
    private readonly gateway: Gateway,
    private readonly audit: AuditLog,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    gateway.on('checks', (agentId: string, msg: ChecksMessage) => {
      const tenant = gateway.session(agentId)?.tenant;
      if (!tenant) return;
      const p = this.pending.checks.get(agentId) ?? { tenant, transitions: [] };
      p.transitions.push(...msg.transitions);
      if (msg.snapshot) p.snapshot = msg.snapshot;
      this.pending.checks.set(agentId, p);
      this.schedule();
    });
    gateway.on('figures', (agentId: string, msg: FiguresMessage) => {
      const tenant = gateway.session(agentId)?.tenant;
      if (!tenant) return;
      this.pending.figures.set(agentId, { tenant, f: msg, at: this.now() });
      for (const c of msg.scaled ?? []) this.pending.scaled.push({ agentId, tenant, c });
      this.schedule();
    });
  }

  /** Alarms in status reports (delivery has recorded them) become alerts. */
  watchAlarms(delivery: Delivery): void {
    delivery.on('status', (agentId: string, msg: StatusMessage) => {
      if (!msg.alarms?.length) return;
      const tenant = this.gateway.session(agentId)?.tenant;
      if (!tenant) return;
      for (const a of msg.alarms) this.pending.alarms.push({ agentId, tenant, ...a });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.pending.checks.size + this.pending.figures.size >= MAX_BATCH) return void this.flush();
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS);
  }

  /** Writes what is batched (also on shutdown), then acknowledges it. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = empty();
    this.writing = this.writing.then(() => this.store.detached(() => this.write(batch)).catch((err: unknown) => this.log.error({ err: (err as Error).message, agents: batch.checks.size }, 'could not record checks')));
    return this.writing;
  }

  private async write(b: Pending): Promise<void> {
    if (!b.checks.size && !b.figures.size && !b.scaled.length && !b.alarms.length) return;
    const now = this.now();
    const acked = await this.store.tx(async () => {
      const acked = await this.store.checks.ingest(b.checks, now);
      await this.store.checks.writeFigures(b.figures);
      for (const { agentId, tenant, c } of b.scaled) {
        await this.store.checks.appendScaleEvent({ at: c.at, agentId, tenant, stack: c.stack, service: c.service, from: c.from, to: c.to, reason: c.reason });
        await this.audit.append(
          { log: tenant, actor: { kind: 'agent', id: agentId }, surface: 'agent', action: 'service.autoscale', target: { type: 'agent', id: agentId }, agents: [agentId], outcome: 'ok', details: { stack: c.stack, service: c.service, from: c.from, to: c.to, reason: c.reason } },
          now,
        );
      }
      for (const a of b.alarms) {
        const id = createHash('sha256').update(`${a.at}\n${a.code}\n${a.message}`).digest('hex').slice(0, 16);
        await this.store.checks.raiseOnce({
          key: `alarm:${a.agentId}:${id}`, kind: 'audit-alarm', tenant: a.tenant, agentId: a.agentId, rollout: null, state: 'firing', since: now,
          summary: `agent ${a.agentId} raised ${a.code}: ${a.message}`.slice(0, 1000), detail: JSON.stringify({ code: a.code, kind: a.kind ?? null, raisedAt: a.at, message: a.message.slice(0, 2000) }),
        });
      }
      return acked;
    });
    for (const [agentId, upTo] of acked) this.gateway.send(agentId, { type: 'checks-ack', upTo });
    if (b.scaled.length) this.onScaled();
    this.onStored();
  }

  /** Called when autoscale events were written (the event streams ring). */
  onScaled: () => void = () => {};
}
