// The rollout scheduler: the I/O around the pure machine. A tick reads each
// active rollout from sqlite, asks `decide` what to do and does it: every
// transition is written with its audit entry in the same transaction, a
// directive in the transaction that records it on its target, and sent only
// after that commits. A wave's per-target transitions are written in chunks
// (one transaction each), so a large wave is a few commits and its first
// agents are reached while later ones are still being issued. Ticks run on
// agent acks, status reports and connections, and on a timer for bake times,
// retries and timeouts. Nothing lives only in memory, so a restarted hub
// carries on from the database: a directive recorded as issued is
// redelivered by Delivery, never re-issued.
import { EventEmitter } from 'node:events';
import { HUB_LOG } from '../../shared/audit.js';
import { FerryError, asFerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { AuditInput, AuditLog } from '../audit.js';
import { stmt } from '../db.js';
import type { Delivery } from '../delivery.js';
import { IssueMemo, type DirectiveRecord } from '../directives.js';
import type { Gateway } from '../gateway.js';
import type { Releases } from '../releases.js';
import type { Store } from '../store.js';
import { command as checkCommand, decide, type AgentFacts, type Command, type Decision, type OnFailure, type OnTimeout, type RolloutState } from './machine.js';
import { matches, parseSelector } from './selector.js';
import { RolloutStore, rolloutNum, type RolloutRecord } from './store.js';
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

/**
 * Per-target decisions written per transaction. A 10,000-agent wave is 20
 * commits, not 10,000, and the first 500 agents have their directives after
 * one chunk's work (bench/rollout).
 */
const CHUNK = 500;

type TargetDecision = Extract<Decision, { kind: 'issue' | 'target' }>;

export class Rollouts {
  readonly events = new EventEmitter();
  readonly rows: RolloutStore;
  /** Per-target decisions per transaction (CHUNK; tests lower it to make a small wave span several). */
  chunkSize = CHUNK;
  private timer: NodeJS.Timeout | undefined;
  private queued = false;
  private ticking = false;
  /** A tick was asked for while one ran. */
  private again = false;
  private stopped = false;
  /** Runs its argument in a savepoint (it is only called inside a transaction). */
  private readonly savepoint: (fn: () => void) => void;

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
    this.savepoint = store.db.transaction((fn: () => void) => fn());
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
      .listSelectable()
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
    this.kick(0); // an operator is waiting: no need to wait for more reports
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
    this.kick(0);
    return this.rows.get(id);
  }

  /**
   * Coalesces requests for a tick into one, run soon. Acks and status reports
   * arrive one per message; a tick reads the whole rollout, so they are
   * batched (at most one tick per 50 ms) or a large fleet makes it quadratic.
   * One tick runs at a time; a request during a tick runs another after it.
   */
  kick(delayMs = 50): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    if (this.queued) return;
    this.queued = true;
    setTimeout(() => {
      this.queued = false;
      if (this.stopped) return;
      if (this.ticking) {
        this.again = true;
        return;
      }
      this.ticking = true;
      this.tick()
        .catch((err: unknown) => this.log.error({ err: asFerryError(err).message }, 'rollout tick failed'))
        .finally(() => {
          this.ticking = false;
          if (this.again) {
            this.again = false;
            this.kick();
          }
        });
    }, delayMs);
  }

  /** One pass over every active rollout, repeated while decisions change something. */
  async tick(): Promise<void> {
    // Decide on everything agents have said so far.
    this.delivery.flushReports();
    for (const r0 of this.rows.active()) {
      for (let pass = 0; pass < 8; pass++) {
        if (this.stopped) return;
        const r = this.rows.get(r0.id);
        const targets = this.rows.targets(r.id);
        // Read when first asked: starting a wave needs none.
        let facts: Map<string, AgentFacts> | undefined;
        const factsOf = (a: string) => (facts ??= this.rows.facts(r.id, r.stack, (x) => this.gateway.session(x) !== undefined)).get(a)!;
        const decisions = decide(r, targets, factsOf, this.now());
        if (!decisions.length) break;
        const finished = await this.performAll(r, decisions, new Map(targets.map((t) => [t.agentId, t.tenant])));
        if (!finished || decisions.some((d) => d.kind === 'rollout')) break;
      }
    }
  }

  /**
   * Performs one pass's decisions: the per-target ones (issues, target
   * moves) in chunks of `chunkSize`, each chunk one transaction, its directives
   * sent once it has committed; then the rollout's own. Between chunks the
   * event loop runs (acks, heartbeats, API calls), so the first agents get
   * their directives while later ones are still being issued. Returns false
   * when the rollout changed meanwhile (an operator command): what is left
   * was decided on stale state, and the next pass decides again.
   */
  private async performAll(r: RolloutRecord, decisions: Decision[], tenants: Map<string, string>): Promise<boolean> {
    const perTarget = decisions.filter((d): d is TargetDecision => d.kind === 'issue' || d.kind === 'target');
    const chunk = this.chunkSize;
    const large = perTarget.length > chunk;
    if (large) this.delivery.holdReports(true);
    try {
      for (let i = 0; i < perTarget.length; i += chunk) {
        if (i > 0) {
          await new Promise((resolve) => setImmediate(resolve));
          const now = this.rows.find(r.id);
          if (this.stopped || !now || now.state !== r.state || now.wave !== r.wave) return false;
        }
        this.performChunk(r, perTarget.slice(i, i + chunk), tenants);
      }
    } finally {
      if (large) this.delivery.holdReports(false);
    }
    for (const d of decisions) if (d.kind === 'start-wave' || d.kind === 'rollout') this.perform(r, d);
    return true;
  }

  /**
   * Per-target decisions in one transaction, each in a savepoint (a stale
   * one changes nothing, the others go on); directives are sent and events
   * emitted only after the commit. An unexpected error stops the chunk
   * there: what came before it is committed, and the error is rethrown.
   */
  private performChunk(r: RolloutRecord, ds: TargetDecision[], tenants: Map<string, string>): void {
    const now = this.now();
    const log = this.log.child({ rolloutId: r.id });
    const memo = new IssueMemo();
    const after: (() => void)[] = [];
    const issued: { d: DirectiveRecord; ev: TransitionEvent }[] = [];
    let failure: unknown;
    this.store.db.transaction(() => {
      for (const d of ds) {
        const tenant = tenants.get(d.agentId) ?? this.store.agent(d.agentId).tenant;
        try {
          if (d.kind === 'target') this.savepoint(() => after.push(this.moveTarget(r, d, tenant, now, log)));
          else this.issueOne(r, d, tenant, now, memo, log, issued, after);
        } catch (err) {
          const e = asFerryError(err);
          // A stale decision (another tick or a command got there first) changes nothing.
          if (e.code === 'FERRY_E_ROLLOUT_STATE') log.debug({ decision: d.kind, agentId: d.agentId, err: e.message }, 'decision skipped');
          else {
            failure = err;
            break;
          }
        }
      }
    })();
    // Committed: now the directives may go out.
    const sent = this.delivery.send(issued.map((x) => x.d), memo);
    issued.forEach(({ d, ev }, i) => {
      this.emit(ev);
      log.debug({ agentId: d.agentId, seq: d.seq, sent: sent[i] }, 'rollout directive issued');
    });
    if (issued.length) log.info({ issued: issued.length, sent: sent.filter(Boolean).length }, 'rollout directives issued');
    for (const f of after) f();
    if (failure) throw failure;
  }

  /** Records a target's move with its audit entry; returns what to announce after the commit. */
  private moveTarget(r: RolloutRecord, d: Extract<Decision, { kind: 'target' }>, tenant: string, now: number, log: Logger): () => void {
    this.rows.setTarget(r.id, d.agentId, d.from, d.to, now, { code: d.code, appliedAt: d.appliedAt, retryAt: d.retryAt });
    const failed = d.to === 'failed' || d.to === 'revert-failed';
    this.append(HUB_ACTOR, { log: tenant, action: 'rollout.target', target: { type: 'agent', id: d.agentId }, agents: [d.agentId], outcome: failed ? 'failed' : 'ok', details: { rollout: r.id, from: d.from, to: d.to, code: d.code ?? null } });
    return () => {
      log.info({ agentId: d.agentId, from: d.from, to: d.to, code: d.code }, 'target changed');
      this.emit({ rollout: r.id, kind: 'target', agentId: d.agentId, tenant, from: d.from, to: d.to, code: d.code ?? null, at: now });
    };
  }

  /**
   * Issues a directive and records it on the target, in one savepoint of the
   * chunk's transaction. When the hub cannot issue to this agent (revoked,
   * no root, threshold unmet) the target fails instead; the others go on.
   */
  private issueOne(
    r: RolloutRecord,
    d: Extract<Decision, { kind: 'issue' }>,
    tenant: string,
    now: number,
    memo: IssueMemo,
    log: Logger,
    issued: { d: DirectiveRecord; ev: TransitionEvent }[],
    after: (() => void)[],
  ): void {
    const from = d.purpose === 'deploy' ? this.targetState(r.id, d.agentId, ['waiting']) : this.targetState(r.id, d.agentId, ['issued', 'baking', 'done', 'failed']);
    if (!from) return;
    const to = d.purpose === 'deploy' ? 'issued' : 'reverting';
    try {
      this.savepoint(() => {
        const dir = this.delivery.issue(d.agentId, r.stack, d.version, r.id, memo);
        this.rows.setTarget(r.id, d.agentId, from, to, now, { seq: dir.seq, previous: d.previous, code: null });
        this.append(HUB_ACTOR, { log: tenant, action: 'directive.issue', target: { type: 'agent', id: d.agentId }, agents: [d.agentId], details: { rollout: r.id, seq: dir.seq, stack: r.stack, version: d.version, digest: dir.digest, purpose: d.purpose } });
        issued.push({ d: dir, ev: { rollout: r.id, kind: 'directive', agentId: d.agentId, seq: dir.seq, version: d.version, from, to, at: now } });
      });
    } catch (err) {
      const e = asFerryError(err);
      if (e.code === 'FERRY_E_ROLLOUT_STATE') return;
      const fail = { kind: 'target', agentId: d.agentId, from, to: d.purpose === 'deploy' ? 'failed' : 'revert-failed', code: e.code } as const;
      this.savepoint(() => after.push(this.moveTarget(r, fail, tenant, now, log)));
    }
  }

  /** A rollout-level decision (start a wave, change the rollout's state) in its own transaction. */
  private perform(r: RolloutRecord, d: Extract<Decision, { kind: 'start-wave' | 'rollout' }>): void {
    const now = this.now();
    const log = this.log.child({ rolloutId: r.id });
    try {
      switch (d.kind) {
        case 'start-wave': {
          const ev = this.store.db.transaction(() => this.startWave(r, d.wave, now, HUB_ACTOR))();
          log.info({ wave: d.wave + 1, reach: r.waves[d.wave] }, 'wave started');
          return this.emit(ev);
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

  private targetState<S extends string>(id: string, agentId: string, allowed: S[]): S | undefined {
    const row = stmt(this.store.db, 'SELECT state FROM rollout_targets WHERE rollout = ? AND agent_id = ?').get(rolloutNum(id), agentId) as { state: S } | undefined;
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
