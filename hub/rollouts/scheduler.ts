// The rollout scheduler: the I/O around the pure machine. A tick reads each
// active rollout from the store, asks `decide` what to do and does it: every
// transition is written with its audit entry in the same transaction, a
// directive in the transaction that records it on its target, and sent only
// after that commits. A wave's per-target transitions are written in chunks
// (one transaction each), so a large wave is a few commits and its first
// agents are reached while later ones are still being issued. Ticks run on
// agent acks, status reports and connections, and on a timer for bake times,
// retries and timeouts — on one replica at a time (the cluster's leader; a
// new leader carries on from the stored state). Nothing lives only in
// memory, so a restarted hub carries on from the database: a directive
// recorded as issued is redelivered by Delivery, never re-issued.
import { EventEmitter } from 'node:events';
import { AGENT_STACK } from '../../shared/agent-bundle.js';
import { HUB_LOG } from '../../shared/audit.js';
import { FerryError, asFerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { AuditInput, AuditLog } from '../audit/log.js';
import type { Cluster } from '../cluster/cluster.js';
import { IssueMemo, type DirectiveRecord } from '../directives.js';
import type { Delivery } from '../gateway/delivery.js';
import type { Gateway } from '../gateway/gateway.js';
import type { ReleaseRecord, Releases } from '../releases.js';
import type { TenantScope } from '../store/fleet.js';
import type { RolloutRecord, RolloutRows } from '../store/rollouts.js';
import type { Store } from '../store/store.js';
import { command as checkCommand, decide, type AgentFacts, type Command, type Decision, type OnFailure, type OnTimeout, type RolloutState, type TargetState } from './machine.js';
import { matches, parseSelector, type Selectable, type Selector } from './selector.js';
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

/** An agent a rollout or deploy would reach. */
export type SelectedAgent = Selectable & { revokedAt: number | null };

/** A check before deploying `stack` to `agents`; throws (a FerryError) to refuse. */
export type DeployGate = (stack: string, agents: readonly Selectable[]) => Promise<void>;

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
  readonly rows: RolloutRows;
  /** Checks a new rollout must pass (deploy locks, hub/chat/locks.ts): each throws to refuse. */
  readonly gates: DeployGate[] = [];
  /** Per-target decisions per transaction (CHUNK; tests lower it to make a small wave span several). */
  chunkSize = CHUNK;
  /** Looks up an agent bundle for agent-version rollouts (hub/upgrades), set once the hub is assembled. */
  agentBundles: ((version: string) => Promise<{ tenants: readonly string[] } | undefined>) | null = null;
  private timer: NodeJS.Timeout | undefined;
  private queued = false;
  private ticking = false;
  /** A tick was asked for while one ran. */
  private again = false;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly releases: Releases,
    private readonly delivery: Delivery,
    private readonly gateway: Gateway,
    private readonly audit: AuditLog,
    private readonly cluster: Cluster,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    tickMs = 1000,
  ) {
    this.events.setMaxListeners(0);
    this.rows = store.rollouts;
    const kick = () => this.kick();
    delivery.on('status', kick);
    delivery.on('ack', kick);
    gateway.on('hello', kick);
    gateway.on('disconnected', kick);
    cluster.on('kick', kick);
    cluster.onLeadership((leader) => {
      if (leader) this.kick(0);
    });
    this.timer = setInterval(kick, tickMs);
    this.timer.unref();
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** Waits for a tick in progress to end (shutdown). */
  async idle(): Promise<void> {
    while (this.ticking) await new Promise((r) => setTimeout(r, 10));
  }

  /**
   * Validates, selects and plans; stores the rollout, which the next tick
   * starts. `scope`: the tenants the caller may deploy to (null: all); the
   * selector picks only among their agents.
   */
  async create(input: CreateRollout, by: Actor & { userId: string | null }, scope: TenantScope = null): Promise<RolloutRecord> {
    const { selector: sel, release, agents, waves } = await this.preview(input, scope);
    const now = this.now();
    const tenants = [...new Set(agents.map((a) => a.tenant))];
    const r = await this.store.tx(async () => {
      const rec = await this.rows.insert({ ...input, selector: sel.text, waveSpec: input.waves, waves, createdBy: by.userId }, agents, now);
      const details = { rollout: rec.id, stack: rec.stack, version: rec.version, selector: sel.text, waves: JSON.stringify(waves), agents: agents.length };
      await this.append(by, { log: HUB_LOG, action: 'rollout.create', target: { type: 'rollout', id: rec.id }, details });
      for (const tenant of tenants) {
        const mine = agents.filter((a) => a.tenant === tenant).map((a) => a.id);
        // A tenant's log says what concerns it, not the selector or the other tenants' share.
        await this.append(by, { log: tenant, action: 'rollout.create', target: { type: 'rollout', id: rec.id }, agents: mine.slice(0, 1000), details: { rollout: rec.id, stack: rec.stack, version: rec.version, agents: mine.length } });
        if (release) await this.store.releases.deliveredTo(release.id, tenant, now);
      }
      return rec;
    });
    this.log.info({ rolloutId: r.id, stack: r.stack, version: r.version, agents: agents.length, waves }, 'rollout created');
    this.emit({ rollout: r.id, kind: 'rollout', to: 'running', reason: 'created', at: now });
    this.kick(0); // an operator is waiting: no need to wait for more reports
    return r;
  }

  /**
   * What `create` would start, changing nothing: the release, the agents
   * selected (in wave order) and the waves' cumulative reach. Refuses as
   * `create` does (unknown release, empty selection, agents busy with
   * another rollout of the stack, a gate such as a deploy lock).
   */
  async preview(input: Pick<CreateRollout, 'stack' | 'version' | 'selector' | 'waves'>, scope: TenantScope = null): Promise<{ selector: Selector; release: ReleaseRecord | null; agents: SelectedAgent[]; waves: number[] }> {
    const sel = parseSelector(input.selector);
    const specs = parseWaves(input.waves);
    // An agent-version rollout's stack is the agent itself (AGENT_STACK): its "release" is an agent bundle.
    const agentVersion = input.stack === AGENT_STACK;
    const release = agentVersion ? null : await this.releases.get(input.stack, input.version); // FERRY_E_NOT_FOUND for an unknown release
    const bundle = agentVersion ? await this.agentBundles?.(input.version) : undefined;
    if (agentVersion && !bundle) throw new FerryError('FERRY_E_NOT_FOUND', `agent bundle ${input.version}`);
    const busy = await this.rows.busyAgents(input.stack);
    const agents = (await this.store.fleet.listSelectable(scope))
      .filter((a) => a.revokedAt === null && matches(sel, a) && (!bundle || bundle.tenants.includes(a.tenant)))
      .sort((a, b) => a.tenant.localeCompare(b.tenant) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    if (!agents.length) throw new FerryError('FERRY_E_SELECTOR_EMPTY', sel.text);
    const clash = agents.filter((a) => busy.has(a.id));
    if (clash.length) throw new FerryError('FERRY_E_ROLLOUT_ACTIVE', `${input.stack} on ${clash.slice(0, 5).map((a) => a.id).join(', ')}${clash.length > 5 ? ', …' : ''}`);
    for (const gate of this.gates) await gate(input.stack, agents);
    return { selector: sel, release, agents, waves: planWaves(specs, agents.length) };
  }

  /** pause | resume | promote | abort | rollback, recorded for the audit log. */
  async command(id: string, cmd: Command, by: Actor): Promise<RolloutRecord> {
    const now = this.now();
    const ev = await this.store.tx(async () => {
      await this.rows.lock(id);
      const r = await this.rows.get(id);
      const next = checkCommand(r, await this.rows.targets(id), cmd);
      const reason = `${cmd} by operator`;
      await this.rows.setRollout(id, r.state, next.to, reason, now, { failuresAccepted: next.failuresAccepted });
      await this.append(by, { log: HUB_LOG, action: `rollout.${cmd}`, target: { type: 'rollout', id }, details: { rollout: id, from: r.state, to: next.to } });
      const evs: TransitionEvent[] = [{ rollout: id, kind: 'rollout', from: r.state, to: next.to, reason, at: now }];
      if (next.startWave !== undefined) evs.push(await this.startWave(r, next.startWave, now, by));
      return evs;
    });
    for (const e of ev) this.emit(e);
    this.kick(0);
    return this.rows.get(id);
  }

  /**
   * Coalesces requests for a tick into one, run soon. Acks and status reports
   * arrive one per message; a tick reads the whole rollout, so they are
   * batched (at most one tick per 50 ms) or a large fleet makes it quadratic.
   * One tick runs at a time; a request during a tick runs another after it.
   * Only the leading replica ticks; the others ring it.
   */
  kick(delayMs = 50): void {
    if (this.stopped) return;
    if (!this.cluster.leader) {
      if (this.cluster.shared && delayMs === 0) this.cluster.publish('kick', {});
      return;
    }
    if (this.ticking) {
      this.again = true;
      return;
    }
    if (this.queued) return;
    this.queued = true;
    const t = setTimeout(() => {
      this.queued = false;
      if (this.stopped || !this.cluster.leader) return;
      if (this.ticking) {
        this.again = true;
        return;
      }
      this.ticking = true;
      this.store
        .detached(() => this.tick())
        .catch((err: unknown) => this.log.error({ err: asFerryError(err).message }, 'rollout tick failed'))
        .finally(() => {
          this.ticking = false;
          if (this.again) {
            this.again = false;
            this.kick();
          }
        });
    }, delayMs);
    t.unref();
  }

  /** One pass over every active rollout, repeated while decisions change something. */
  async tick(): Promise<void> {
    // Decide on everything agents have said so far.
    await this.delivery.drainReports();
    for (const r0 of await this.rows.active()) {
      for (let pass = 0; pass < 8; pass++) {
        if (this.stopped || !this.cluster.leader) return;
        const r = await this.rows.get(r0.id);
        const targets = await this.rows.targets(r.id);
        // Read when first asked: starting a wave needs none.
        const needsFacts = r.state !== 'succeeded' && targets.some((t) => t.state !== 'pending');
        const facts = needsFacts ? await this.rows.facts(r.id, r.stack, (a, replica, lease) => this.gateway.presence.isConnected({ id: a, replica, leaseUntil: lease })) : new Map<string, AgentFacts>();
        const decisions = decide({ ...r, verification: await this.hasJobs(r.stack, r.version) }, targets, (a) => facts.get(a)!, this.now());
        if (!decisions.length) break;
        const finished = await this.performAll(r, decisions, new Map(targets.map((t) => [t.agentId, t.tenant])));
        if (!finished || decisions.some((d) => d.kind === 'rollout')) break;
      }
    }
  }

  /** Whether a release has verification jobs (its bytes never change, so the answer is kept). */
  private async hasJobs(stack: string, version: string): Promise<boolean> {
    if (stack === AGENT_STACK) return false; // an agent version: a bundle, no services
    const k = `${stack}@${version}`;
    let v = this.jobs.get(k);
    if (v === undefined) {
      v = Object.values((await this.releases.get(stack, version)).release.services).some((s) => s.verify);
      this.jobs.set(k, v);
    }
    return v;
  }

  private readonly jobs = new Map<string, boolean>();

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
          const now = await this.rows.find(r.id);
          if (this.stopped || !this.cluster.leader || !now || now.state !== r.state || now.wave !== r.wave) return false;
        }
        if (!(await this.performChunk(r, perTarget.slice(i, i + chunk), tenants))) return false;
      }
    } finally {
      if (large) this.delivery.holdReports(false);
    }
    for (const d of decisions) if (d.kind === 'start-wave' || d.kind === 'rollout') await this.perform(r, d);
    return true;
  }

  /**
   * Per-target decisions in one transaction, in a few statements however
   * many there are: the targets' states are read once (under the rollout's
   * lock, so they hold), the directives issued together, the targets'
   * moves written together and the audit entries appended together. A stale decision
   * (its target moved meanwhile) changes nothing; an agent the hub cannot
   * issue to (revoked, no root, threshold unmet) fails its target, and the
   * others go on. Directives are sent and events emitted only after the
   * commit; an unexpected error rolls the chunk back and is rethrown (the
   * next pass decides again). Returns false, changing nothing, when the
   * rollout is no longer as it was decided on (an operator's pause committed
   * before this chunk always stops it).
   */
  private async performChunk(r: RolloutRecord, ds: TargetDecision[], tenants: Map<string, string>): Promise<boolean> {
    const now = this.now();
    const log = this.log.child({ rolloutId: r.id });
    // Made anew by each run of the transaction's body (PostgreSQL may run it again).
    let memo = new IssueMemo();
    let after: (() => void)[] = [];
    let issued: { d: DirectiveRecord; ev: TransitionEvent }[] = [];
    const current = await this.store.tx(async () => {
      memo = new IssueMemo();
      after = [];
      issued = [];
      await this.rows.lock(r.id);
      const now2 = await this.rows.find(r.id);
      if (!now2 || now2.state !== r.state || now2.wave !== r.wave) return false;
      const ids = [...new Set(ds.map((d) => d.agentId))];
      const state = await this.rows.targetStates(r.id, ids);
      const missing = ids.filter((id) => !tenants.has(id));
      const more = missing.length ? await this.store.fleet.agentTenants(missing) : new Map<string, { tenant: string }>();
      const tenantOf = (id: string) => tenants.get(id) ?? more.get(id)?.tenant ?? HUB_LOG;
      // The decisions that still hold, in order, each on the state the ones before it leave.
      const steps: ({ kind: 'target'; d: Extract<TargetDecision, { kind: 'target' }> } | { kind: 'issue'; d: Extract<TargetDecision, { kind: 'issue' }>; from: TargetState; to: TargetState })[] = [];
      for (const d of ds) {
        const st = state.get(d.agentId);
        if (d.kind === 'target') {
          if (st !== d.from) {
            log.debug({ decision: d.kind, agentId: d.agentId, from: d.from, now: st }, 'decision skipped');
            continue;
          }
          steps.push({ kind: 'target', d });
          state.set(d.agentId, d.to);
        } else {
          const allowed: readonly string[] = d.purpose === 'deploy' ? ['waiting'] : ['issued', 'baking', 'done', 'failed'];
          if (!st || !allowed.includes(st)) continue;
          const to = d.purpose === 'deploy' ? 'issued' : 'reverting';
          steps.push({ kind: 'issue', d, from: st, to });
          state.set(d.agentId, to);
        }
      }
      // The directives, per version (a revert names each target's previous one).
      const byVersion = new Map<string, string[]>();
      for (const st of steps) if (st.kind === 'issue') byVersion.set(st.d.version, [...(byVersion.get(st.d.version) ?? []), st.d.agentId]);
      const dirs = new Map<string, DirectiveRecord | FerryError>();
      for (const [version, agents] of byVersion) for (const [id, x] of await this.delivery.issueMany(agents, r.stack, version, r.id, memo)) dirs.set(`${version}\n${id}`, x);
      // The targets' moves, in order, in a few statements; then the audit entries of those made.
      const moves: { move: Extract<TargetDecision, { kind: 'target' }>; dir?: DirectiveRecord; issue?: Extract<TargetDecision, { kind: 'issue' }> }[] = steps.map((st) => {
        if (st.kind === 'target') return { move: st.d };
        const x = dirs.get(`${st.d.version}\n${st.d.agentId}`)!;
        if (x instanceof FerryError) return { move: { kind: 'target', agentId: st.d.agentId, from: st.from, to: st.d.purpose === 'deploy' ? 'failed' : 'revert-failed', code: x.code } };
        return { move: { kind: 'target', agentId: st.d.agentId, from: st.from, to: st.to }, dir: x, issue: st.d };
      });
      const made = await this.rows.setTargets(
        r.id,
        moves.map(({ move: m, dir, issue }) => ({ agentId: m.agentId, from: m.from, to: m.to, ...(dir ? { seq: dir.seq, previous: issue!.previous, code: null } : { code: m.code, appliedAt: m.appliedAt, retryAt: m.retryAt }) })),
        now,
      );
      const entries: Omit<AuditInput, 'actor' | 'surface' | 'personal'>[] = [];
      moves.forEach(({ move: m, dir, issue }, i) => {
        if (!made.has(i)) {
          log.debug({ agentId: m.agentId, from: m.from, to: m.to }, 'decision skipped');
          return;
        }
        const tenant = tenantOf(m.agentId);
        if (dir) {
          entries.push({ log: tenant, action: 'directive.issue', target: { type: 'agent', id: m.agentId }, agents: [m.agentId], details: { rollout: r.id, seq: dir.seq, stack: r.stack, version: issue!.version, digest: dir.digest, purpose: issue!.purpose } });
          issued.push({ d: dir, ev: { rollout: r.id, kind: 'directive', agentId: m.agentId, tenant, seq: dir.seq, version: issue!.version, from: m.from, to: m.to, at: now } });
          return;
        }
        const failed = m.to === 'failed' || m.to === 'revert-failed';
        entries.push({ log: tenant, action: 'rollout.target', target: { type: 'agent', id: m.agentId }, agents: [m.agentId], outcome: failed ? 'failed' : 'ok', details: { rollout: r.id, from: m.from, to: m.to, code: m.code ?? null } });
        after.push(() => {
          log.info({ agentId: m.agentId, from: m.from, to: m.to, code: m.code }, 'target changed');
          this.emit({ rollout: r.id, kind: 'target', agentId: m.agentId, tenant, from: m.from, to: m.to, code: m.code ?? null, at: now });
        });
      });
      await this.audit.appendMany(
        entries.map((e) => ({ ...e, actor: HUB_ACTOR.actor, surface: HUB_ACTOR.surface, personal: HUB_ACTOR.personal ?? {} })),
        now,
      );
      return true;
    });
    if (!current) return false;
    // Committed: now the directives may go out.
    const sent = await this.delivery.send(
      issued.map((x) => x.d),
      memo,
    );
    issued.forEach(({ d, ev }, i) => {
      this.emit(ev);
      log.debug({ agentId: d.agentId, seq: d.seq, sent: sent[i] }, 'rollout directive issued');
    });
    if (issued.length) log.info({ issued: issued.length, sent: sent.filter(Boolean).length }, 'rollout directives issued');
    for (const f of after) f();
    return true;
  }

  /** A rollout-level decision (start a wave, change the rollout's state) in its own transaction. */
  private async perform(r: RolloutRecord, d: Extract<Decision, { kind: 'start-wave' | 'rollout' }>): Promise<void> {
    const now = this.now();
    const log = this.log.child({ rolloutId: r.id });
    try {
      switch (d.kind) {
        case 'start-wave': {
          const ev = await this.store.tx(async () => {
            await this.rows.lock(r.id);
            return this.startWave(r, d.wave, now, HUB_ACTOR);
          });
          log.info({ wave: d.wave + 1, reach: r.waves[d.wave] }, 'wave started');
          return this.emit(ev);
        }
        case 'rollout':
          await this.store.tx(async () => {
            await this.rows.lock(r.id);
            await this.rows.setRollout(r.id, d.from, d.to, d.reason, now);
            await this.append(HUB_ACTOR, {
              log: HUB_LOG,
              action: `rollout.${d.to}`,
              target: { type: 'rollout', id: r.id },
              outcome: d.to === 'succeeded' || d.to === 'rolled-back' ? 'ok' : 'failed',
              details: { rollout: r.id, from: d.from, to: d.to, reason: d.reason },
            });
          });
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

  private async startWave(r: RolloutRecord, wave: number, now: number, by: Actor): Promise<TransitionEvent> {
    const reach = r.waves[wave]!;
    const started = await this.rows.startWave(r.id, wave, reach, now);
    await this.append(by, { log: HUB_LOG, action: 'rollout.wave', target: { type: 'rollout', id: r.id }, details: { rollout: r.id, wave: wave + 1, of: r.waves.length, reach, started: started.length } });
    return { rollout: r.id, kind: 'wave', wave: wave + 1, at: now };
  }

  private append(by: Actor, e: Omit<AuditInput, 'actor' | 'surface' | 'personal'>): Promise<number> {
    return this.audit.append({ ...e, actor: by.actor, surface: by.surface, personal: by.personal ?? {} }, this.now());
  }

  /** In-process subscribers hear at once; event streams on every replica are rung (they read the stored events). */
  private emit(ev: TransitionEvent): void {
    this.events.emit('transition', ev);
    if (this.cluster.shared) this.ringEvents();
  }

  private eventsRung = false;
  private ringEvents(): void {
    if (this.eventsRung) return;
    this.eventsRung = true;
    setImmediate(() => {
      this.eventsRung = false;
      this.cluster.publish('events', {});
    });
  }
}

export type { RolloutState };
