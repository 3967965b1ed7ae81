// Alerts: the leader evaluates the rules (./rules.ts) from the database —
// checks that changed state, agents offline, rollouts stuck, alarms agents
// raised — and notifies each change once: a row on the event stream (which
// every replica's streams read), a webhook notice in the outbox, and, after
// the commit, an 'alert' on `events` (on the leader only: chat subscribes
// there, so it too hears each notice once).
import { EventEmitter } from 'node:events';
import { asFerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Gateway } from '../gateway/gateway.js';
import type { AlertRow } from '../store/checks.js';
import type { Store } from '../store/store.js';
import { ALERT_DEFAULTS, checkAlert, checkEvent, isOffline, isStuck, type AlertOptions } from './rules.js';

/** One notice, as the event stream, the webhook and in-process subscribers (chat) get it. */
export interface Alert {
  /** Its id on the event stream. */
  id: number;
  /** check.failing, check.recovered, check.flapping, agent.offline, agent.online, rollout.stuck, rollout.moving, audit.alarm */
  event: string;
  state: 'firing' | 'resolved';
  /** A reminder of an alert still firing (every repeat interval). */
  repeat: boolean;
  /** What it is about, stable across its notices: `check:<agent>:<stack>/<check>`, `agent-offline:<agent>`, ... */
  key: string;
  tenant: string | null;
  agentId: string | null;
  rollout: string | null;
  summary: string;
  /** When it entered its state, and when this notice was made (ISO). */
  since: string;
  at: string;
  detail: Record<string, unknown>;
}

export function alertEventName(a: Pick<AlertRow, 'kind' | 'state' | 'flapping'>): string {
  switch (a.kind) {
    case 'check':
      return checkEvent(a);
    case 'agent-offline':
      return a.state === 'firing' ? 'agent.offline' : 'agent.online';
    case 'rollout-stuck':
      return a.state === 'firing' ? 'rollout.stuck' : 'rollout.moving';
    default:
      return a.kind === 'audit-alarm' ? 'audit.alarm' : a.kind;
  }
}

export class Alerts {
  /** 'alert' (Alert): each notice once, on the leader, after it is committed. */
  readonly events = new EventEmitter();
  readonly opts: AlertOptions;
  /** Notices made by this replica (a figure for /metrics). */
  notices = 0;
  private timers: NodeJS.Timeout[] = [];
  private busy = false;
  private again = false;
  private lastScan = 0;
  private lastPrune = 0;

  constructor(
    private readonly store: Store,
    private readonly cluster: Cluster,
    private readonly gateway: Gateway,
    private readonly log: Logger,
    opts: Partial<AlertOptions> = {},
    /** Whether notices go to the webhook's outbox. */
    private readonly webhook: boolean,
    /** Rings the event streams (this replica's and the others'). */
    private readonly ring: () => void,
    private readonly now: () => number = Date.now,
  ) {
    this.opts = Object.freeze({ ...ALERT_DEFAULTS, ...opts });
    this.events.setMaxListeners(0);
  }

  start(): void {
    const t = setInterval(() => this.kick(), this.opts.tickMs);
    t.unref();
    this.timers.push(t);
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
  }

  /** Looks soon (new check states were stored). */
  kick(): void {
    if (!this.cluster.leader) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    void this.store
      .detached(() => this.tick())
      .catch((err: unknown) => this.log.warn({ err: asFerryError(err).message }, 'alert pass failed'))
      .finally(() => {
        this.busy = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** One pass of the rules, then the notices they made. */
  async tick(): Promise<void> {
    const now = this.now();
    await this.checks(now);
    if (now - this.lastScan >= this.opts.scanMs) {
      this.lastScan = now;
      await this.scan(now);
    }
    if (now - this.lastPrune >= 3600_000) {
      this.lastPrune = now;
      await this.store.checks.prune(now - this.opts.historyMs);
      await this.store.checks.pruneOutbox(now - this.opts.historyMs);
    }
    await this.notify(now);
  }

  /** Checks that changed state: their alerts. */
  private async checks(now: number): Promise<void> {
    for (;;) {
      const changed = await this.store.checks.dirty(500);
      for (const c of changed) {
        const key = `check:${c.agentId}:${c.stack}/${c.name}`;
        const prev = await this.store.checks.alert(key);
        const flaps = await this.store.checks.transitionsSince(c.agentId, c.stack, c.name, now - this.opts.flapWindowMs);
        const next = checkAlert(prev, c.state, flaps, this.opts);
        await this.store.tx(async () => {
          if (next) {
            const what = `${c.stack}/${c.name} on ${c.agentName} (${c.tenant})`;
            const summary = next.state === 'resolved' ? `${what} is back to normal` : next.flapping ? `${what} is flapping: ${flaps} changes in ${Math.round(this.opts.flapWindowMs / 60_000)} min` : `${what} is failing: ${c.lastError ?? 'no reason given'}`;
            await this.store.checks.putAlert({
              key, kind: 'check', tenant: c.tenant, agentId: c.agentId, rollout: null, state: next.state, since: c.since, summary: summary.slice(0, 1000), flapping: next.flapping,
              detail: JSON.stringify({ agent: c.agentName, stack: c.stack, check: c.name, version: c.version, kind: c.kind, target: c.target, error: c.lastError, changes: flaps }),
            });
          }
          await this.store.checks.clean(c.agentId, c.stack, c.name);
        });
      }
      if (changed.length < 500) return;
    }
  }

  /** Agents offline, rollouts stuck (and back), and flapping checks looked at again. */
  private async scan(now: number): Promise<void> {
    const firing = new Map((await this.store.checks.alerts({ state: 'firing' })).map((a) => [a.key, a]));
    for (const a of await this.store.checks.presence()) {
      const key = `agent-offline:${a.id}`;
      const connected = this.gateway.presence.isConnected({ id: a.id, replica: a.replica, leaseUntil: a.leaseUntil });
      const off = isOffline({ connected, revoked: a.revoked, lastSeenAt: a.lastSeenAt }, now, this.opts);
      if (off === firing.has(key)) continue;
      const mins = a.lastSeenAt === null ? 0 : Math.round((now - a.lastSeenAt) / 60_000);
      await this.store.checks.putAlert({
        key, kind: 'agent-offline', tenant: a.tenant, agentId: a.id, rollout: null, state: off ? 'firing' : 'resolved', since: off ? (a.lastSeenAt ?? now) : now, flapping: false,
        summary: off ? `agent ${a.id} (${a.tenant}) offline for ${mins} min` : a.revoked ? `agent ${a.id} (${a.tenant}) revoked` : `agent ${a.id} (${a.tenant}) is connected again`,
        detail: JSON.stringify({ lastSeenAt: a.lastSeenAt === null ? null : new Date(a.lastSeenAt).toISOString() }),
      });
    }
    const active = await this.store.checks.rolloutActivity();
    for (const r of active) {
      const key = `rollout-stuck:R-${r.rollout}`;
      const stuck = isStuck(r, now, this.opts);
      if (stuck === firing.has(key)) continue;
      await this.store.checks.putAlert({
        key, kind: 'rollout-stuck', tenant: null, agentId: null, rollout: r.rollout, state: stuck ? 'firing' : 'resolved', since: stuck ? r.lastMoved : now, flapping: false,
        summary: stuck ? `rollout R-${r.rollout} (${r.stack}@${r.version}) is ${r.state} and nothing moved for ${Math.round((now - r.lastMoved) / 60_000)} min` : `rollout R-${r.rollout} (${r.stack}@${r.version}) is moving again`,
        detail: JSON.stringify({ stack: r.stack, version: r.version, state: r.state }),
      });
    }
    for (const a of firing.values()) {
      // A stuck rollout that finished, or was aborted: resolved.
      if (a.kind === 'rollout-stuck' && !active.some((r) => `rollout-stuck:R-${r.rollout}` === a.key)) {
        await this.store.checks.putAlert({ ...a, state: 'resolved', since: now, summary: `rollout R-${a.rollout} is no longer running` });
      }
      if (a.kind === 'check' && a.agentId) {
        const d = JSON.parse(a.detail) as { stack?: string; check?: string };
        // A check its release no longer declares (or of an agent gone): nothing is failing any more.
        if (!(await this.store.checks.has(a.agentId, d.stack ?? '', d.check ?? ''))) {
          await this.store.checks.putAlert({ ...a, state: 'resolved', flapping: false, since: now, summary: `${d.stack}/${d.check} is no longer checked on ${a.agentId}` });
          continue;
        }
        // A flapping check may have settled: its alert is looked at again.
        if (a.flapping) await this.store.checks.touch(a.agentId, d.stack ?? '', d.check ?? '');
      }
    }
  }

  /** Notices for what changed and reminders due: event stream and outbox in one transaction, then subscribers. */
  private async notify(now: number): Promise<void> {
    const due = await this.store.checks.due(this.opts.repeatMs > 0 ? now - this.opts.repeatMs : null, 200);
    if (!due.length) return;
    const made: Alert[] = [];
    await this.store.tx(async () => {
      made.length = 0;
      for (const a of due) {
        const event = alertEventName(a);
        const repeat = !a.dirty;
        const detail = JSON.parse(a.detail) as Record<string, unknown>;
        const summary = repeat ? `still: ${a.summary}` : a.summary;
        const id = await this.store.checks.appendAlertEvent({ at: now, rollout: a.rollout, event, state: a.state, tenant: a.tenant, agentId: a.agentId, summary, detail: JSON.stringify({ ...detail, key: a.key, repeat }) });
        const alert: Alert = { id, event, state: a.state, repeat, key: a.key, tenant: a.tenant, agentId: a.agentId, rollout: a.rollout === null ? null : `R-${a.rollout}`, summary, since: new Date(a.since).toISOString(), at: new Date(now).toISOString(), detail };
        if (this.webhook) await this.store.checks.enqueue(event, JSON.stringify(alert), now);
        await this.store.checks.notified(a.key, now);
        made.push(alert);
      }
    });
    this.notices += made.length;
    for (const a of made) {
      this.log[a.state === 'firing' ? 'warn' : 'info']({ alert: a.event, key: a.key, tenant: a.tenant, repeat: a.repeat }, a.summary);
      this.events.emit('alert', a);
    }
    this.ring();
  }
}
