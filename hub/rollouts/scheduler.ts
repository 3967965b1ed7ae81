// The rollout scheduler: the I/O around the pure machine. A tick reads each
// active rollout from sqlite, asks `decide` what to do and does it, each
// transition in one transaction with its audit entry (directives: in the
// transaction that issues them). Ticks run on agent acks, status reports and
// connections, and on a timer for bake times, retries and timeouts. Nothing
// lives only in memory, so a restarted hub carries on from the database: a
// directive recorded as issued is redelivered by Delivery, never re-issued.
import { EventEmitter } from 'node:events';
import { HUB_LOG } from '../../shared/audit.js';
import { FerryError, asFerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { AuditInput, AuditLog } from '../audit.js';
import type { Delivery } from '../delivery.js';
import type { Gateway } from '../gateway.js';
import type { Releases } from '../releases.js';
import type { Store } from '../store.js';
import { command as checkCommand, decide, type Command, type Decision, type OnFailure, type OnTimeout, type RolloutState } from './machine.js';
import { matches, parseSelector } from './selector.js';
import { RolloutStore, type RolloutRecord } from './store.js';
import { parseWaves, planWaves } from './waves.js';

/** One transition, as other surfaces (console, chat) receive it on `events`' 'transition'. */
export interface TransitionEvent {
  rollout: string;
  kind: 'rollout' | 'wave' | 'target' | 'directive';
  at: number;
  from?: string;
  to?: string;
  reason?: string;
  wave?: number;
  agentId?: string;
  tenant?: string;
  seq?: number;
  version?: string;
  code?: string | null;
}

export interface Actor {
  actor: AuditInput['actor'];
  surface: AuditInput['surface'];
  personal?: Record<string, string>;
}

export interface CreateRollout {
  stack: string;
  version: string;
  selector: string;
  waves: string;
  bakeMs: number;
  maxFailures: number;
  onFailure: OnFailure;
  agentTimeoutMs: number;
  onTimeout: OnTimeout;
  retryMs: number;
}

const HUB_ACTOR: Actor = { actor: { kind: 'hub', id: null }, surface: 'hub' };

export class Rollouts {
  readonly events = new EventEmitter();
  readonly rows: RolloutStore;
  private timer: NodeJS.Timeout | undefined;
  private queued = false;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly releases: Releases,
    private readonly delivery: Delivery,
    private readonly gateway: Gateway,
    private readonly audit: AuditLog,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    tickMs = 1000,
  ) {
    this.events.setMaxListeners(0);
    this.rows = new RolloutStore(store.db);
    const kick = () => this.kick();
    delivery.on('status', kick);
    delivery.on('ack', kick);
    gateway.on('hello', kick);
    gateway.on('disconnected', kick);
    this.timer = setInterval(kick, tickMs);
    this.timer.unref();
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** Validates, selects and plans; stores the rollout, which the next tick starts. */
  create(input: CreateRollout, by: Actor & { tokenId: string | null }): RolloutRecord {
    const sel = parseSelector(input.selector);
    const specs = parseWaves(input.waves);
    this.releases.get(input.stack, input.version); // FERRY_E_NOT_FOUND for an unknown release
    const busy = this.rows.busyAgents(input.stack);
    const agents = this.store
      .listAgents()
      .filter((a) => a.revokedAt === null && matches(sel, a))
      .sort((a, b) => a.tenant.localeCompare(b.tenant) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    if (!agents.length) throw new FerryError('FERRY_E_SELECTOR_EMPTY', sel.text);
    const clash = agents.filter((a) => busy.has(a.id));
    if (clash.length) throw new FerryError('FERRY_E_ROLLOUT_ACTIVE', `${input.stack} on ${clash.slice(0, 5).map((a) => a.id).join(', ')}${clash.length > 5 ? ', …' : ''}`);
    const waves = planWaves(specs, agents.length);
    const now = this.now();
    const r = this.store.db.transaction(() => {
      const rec = this.rows.insert({ ...input, selector: sel.text, waveSpec: input.waves, waves, createdBy: by.tokenId }, agents, now);
      const details = { rollout: rec.id, stack: rec.stack, version: rec.version, selector: sel.text, waves: JSON.stringify(waves), agents: agents.length };
      this.append(by, { log: HUB_LOG, action: 'rollout.create', target: { type: 'rollout', id: rec.id }, details });
      for (const tenant of new Set(agents.map((a) => a.tenant))) {
        const mine = agents.filter((a) => a.tenant === tenant).map((a) => a.id);
        this.append(by, { log: tenant, action: 'rollout.create', target: { type: 'rollout', id: rec.id }, agents: mine.slice(0, 1000), details: { ...details, agents: mine.length } });
      }
      return rec;
    })();
    this.log.info({ rolloutId: r.id, stack: r.stack, version: r.version, agents: agents.length, waves }, 'rollout created');
    this.emit({ rollout: r.id, kind: 'rollout', to: 'running', reason: 'created', at: now });
    this.kick();
    return r;
  }

  /** pause | resume | promote | abort | rollback, recorded for the audit log. */
  command(id: string, cmd: Command, by: Actor): RolloutRecord {
    const now = this.now();
    const ev = this.store.db.transaction(() => {
      const r = this.rows.get(id);
      const next = checkCommand(r, this.rows.targets(id), cmd);
      const reason = `${cmd} by operator`;
      this.rows.setRollout(id, r.state, next.to, reason, now, { failuresAccepted: next.failuresAccepted });
      this.append(by, { log: HUB_LOG, action: `rollout.${cmd}`, target: { type: 'rollout', id }, details: { rollout: id, from: r.state, to: next.to } });
      const evs: TransitionEvent[] = [{ rollout: id, kind: 'rollout', from: r.state, to: next.to, reason, at: now }];
      if (next.startWave !== undefined) evs.push(this.startWave(r, next.startWave, now, by));
      return evs;
    })();
    for (const e of ev) this.emit(e);
    this.kick();
    return this.rows.get(id);
  }

  /**
   * Coalesces requests for a tick into one, run soon. Acks and status reports
   * arrive one per message; a tick reads the whole rollout, so they are
   * batched (at most one tick per 50 ms) or a large fleet makes it quadratic.
   */
  kick(): void {
    if (this.queued || this.stopped) return;
    this.queued = true;
    setTimeout(() => {
      this.queued = false;
      if (this.stopped) return;
      try {
        this.tick();
      } catch (err) {
        this.log.error({ err: asFerryError(err).message }, 'rollout tick failed');
      }
    }, 50);
  }

  /** One pass over every active rollout, repeated while decisions change something. */
  tick(): void {
    for (const r0 of this.rows.active()) {
      for (let pass = 0; pass < 8; pass++) {
        const r = this.rows.get(r0.id);
        const targets = this.rows.targets(r.id);
        const facts = this.rows.facts(r.id, r.stack, (a) => this.gateway.session(a) !== undefined);
        const decisions = decide(r, targets, (a) => facts.get(a)!, this.now());
        if (!decisions.length) break;
        for (const d of decisions) this.perform(r, d);
        if (decisions.some((d) => d.kind === 'rollout')) break;
      }
    }
  }

  private perform(r: RolloutRecord, d: Decision): void {
    const now = this.now();
    const log = this.log.child({ rolloutId: r.id });
    try {
      switch (d.kind) {
        case 'start-wave': {
          const ev = this.store.db.transaction(() => this.startWave(r, d.wave, now, HUB_ACTOR))();
          log.info({ wave: d.wave + 1, reach: r.waves[d.wave] }, 'wave started');
          return this.emit(ev);
        }
        case 'issue':
          return this.issue(r, d, now);
        case 'target': {
          const tenant = this.store.agent(d.agentId).tenant;
          this.store.db.transaction(() => {
            this.rows.setTarget(r.id, d.agentId, d.from, d.to, now, { code: d.code, appliedAt: d.appliedAt, retryAt: d.retryAt });
            this.append(HUB_ACTOR, { log: tenant, action: 'rollout.target', target: { type: 'agent', id: d.agentId }, agents: [d.agentId], outcome: d.to === 'failed' || d.to === 'revert-failed' ? 'failed' : 'ok', details: { rollout: r.id, from: d.from, to: d.to, code: d.code ?? null } });
          })();
          log.info({ agentId: d.agentId, from: d.from, to: d.to, code: d.code }, 'target changed');
          return this.emit({ rollout: r.id, kind: 'target', agentId: d.agentId, tenant, from: d.from, to: d.to, code: d.code ?? null, at: now });
        }
        case 'rollout':
          this.store.db.transaction(() => {
            this.rows.setRollout(r.id, d.from, d.to, d.reason, now);
            this.append(HUB_ACTOR, { log: HUB_LOG, action: `rollout.${d.to}`, target: { type: 'rollout', id: r.id }, outcome: d.to === 'succeeded' || d.to === 'rolled-back' ? 'ok' : 'failed', details: { rollout: r.id, from: d.from, to: d.to, reason: d.reason } });
          })();
          log.info({ from: d.from, to: d.to, reason: d.reason }, 'rollout changed');
          return this.emit({ rollout: r.id, kind: 'rollout', from: d.from, to: d.to, reason: d.reason, at: now });
        default: {
          const never: never = d;
          return never;
        }
      }
    } catch (err) {
      const e = asFerryError(err);
      // A stale decision (another tick or a command got there first) changes nothing.
      if (e.code === 'FERRY_E_ROLLOUT_STATE') log.debug({ decision: d.kind, err: e.message }, 'decision skipped');
      else throw err;
    }
  }

  /** Issues a directive and records it on the target in the same transaction. */
  private issue(r: RolloutRecord, d: Extract<Decision, { kind: 'issue' }>, now: number): void {
    const from = d.purpose === 'deploy' ? this.targetState(r.id, d.agentId, ['waiting']) : this.targetState(r.id, d.agentId, ['issued', 'baking', 'done', 'failed']);
    if (!from) return;
    const to = d.purpose === 'deploy' ? 'issued' : 'reverting';
    try {
      const { directive, sent } = this.delivery.deploy(d.agentId, r.stack, d.version, r.id, (dir, tenant) => {
        this.rows.setTarget(r.id, d.agentId, from, to, now, { seq: dir.seq, previous: d.previous, code: null });
        this.append(HUB_ACTOR, { log: tenant, action: 'directive.issue', target: { type: 'agent', id: d.agentId }, agents: [d.agentId], details: { rollout: r.id, seq: dir.seq, stack: r.stack, version: d.version, digest: dir.digest, purpose: d.purpose } });
      });
      this.emit({ rollout: r.id, kind: 'directive', agentId: d.agentId, seq: directive.seq, version: d.version, from, to, at: now });
      this.log.debug({ rolloutId: r.id, agentId: d.agentId, seq: directive.seq, sent }, 'rollout directive issued');
    } catch (err) {
      const e = asFerryError(err);
      if (e.code === 'FERRY_E_ROLLOUT_STATE') return;
      // The hub cannot issue to this agent (revoked, no root, threshold unmet): it fails, others go on.
      this.perform(r, { kind: 'target', agentId: d.agentId, from, to: d.purpose === 'deploy' ? 'failed' : 'revert-failed', code: e.code });
    }
  }

  private targetState<S extends string>(id: string, agentId: string, allowed: S[]): S | undefined {
    const row = this.store.db.prepare('SELECT state FROM rollout_targets WHERE rollout = ? AND agent_id = ?').get(Number(id.slice(2)), agentId) as { state: S } | undefined;
    return row && allowed.includes(row.state) ? row.state : undefined;
  }

  private startWave(r: RolloutRecord, wave: number, now: number, by: Actor): TransitionEvent {
    const reach = r.waves[wave]!;
    const started = this.rows.startWave(r.id, wave, reach, now);
    this.append(by, { log: HUB_LOG, action: 'rollout.wave', target: { type: 'rollout', id: r.id }, details: { rollout: r.id, wave: wave + 1, of: r.waves.length, reach, started: started.length } });
    return { rollout: r.id, kind: 'wave', wave: wave + 1, at: now };
  }

  private append(by: Actor, e: Omit<AuditInput, 'actor' | 'surface' | 'personal'>): void {
    this.audit.append({ ...e, actor: by.actor, surface: by.surface, personal: by.personal ?? {} }, this.now());
  }

  private emit(ev: TransitionEvent): void {
    this.events.emit('transition', ev);
  }
}

export type { RolloutState };
