// Watching what runs, as stored: each agent's checks (the newest snapshot and
// transitions it sent), their history, the agents' low-rate figures, alerts
// with their de-duplication state, and the alert webhook's outbox. Written in
// batches by hub/checks/intake.ts; alerts by the leader (hub/checks/alerts.ts).
import type { CheckInfo, CheckState, CheckTransition, FiguresMessage } from '../../shared/protocol.js';
import { inList, type Db } from './db.js';
import type { TenantScope } from './fleet.js';

export interface AgentChecks {
  tenant: string;
  transitions: CheckTransition[];
  snapshot?: CheckInfo[];
}

export interface CheckRow {
  agentId: string;
  agentName: string;
  tenant: string;
  stack: string;
  name: string;
  version: string;
  kind: string;
  target: string;
  state: CheckState;
  since: number;
  lastError: string | null;
  updatedAt: number;
}

export interface CheckEventRow {
  n: number;
  stack: string;
  name: string;
  from: CheckState;
  to: CheckState;
  at: number;
  error: string | null;
}

export interface AlertRow {
  key: string;
  kind: string;
  tenant: string | null;
  agentId: string | null;
  rollout: number | null;
  state: 'firing' | 'resolved';
  since: number;
  summary: string;
  detail: string;
  flapping: boolean;
  dirty: boolean;
  notifiedAt: number | null;
  notifications: number;
}

export interface OutboxRow {
  id: number;
  event: string;
  body: string;
  attempts: number;
}

export interface TenantFigures {
  tenant: string;
  agents: number;
  containersRunning: number;
  servicesHealthy: number;
  servicesUnhealthy: number;
}

type Raw = Record<string, string | number | null>;
const alertOf = (r: Raw): AlertRow => ({
  key: String(r.key),
  kind: String(r.kind),
  tenant: r.tenant === null ? null : String(r.tenant),
  agentId: r.agent_id === null ? null : String(r.agent_id),
  rollout: r.rollout === null ? null : Number(r.rollout),
  state: r.state as AlertRow['state'],
  since: Number(r.since),
  summary: String(r.summary),
  detail: String(r.detail),
  flapping: Number(r.flapping) === 1,
  dirty: Number(r.dirty) === 1,
  notifiedAt: r.notified_at === null ? null : Number(r.notified_at),
  notifications: Number(r.notifications),
});

export class CheckRows {
  constructor(private readonly db: Db) {}

  /**
   * Stores what agents said, in one transaction: each agent's snapshot,
   * which replaces its checks, then transitions once each (by the agent's
   * numbering), each over an older state only. A check whose state changes is marked for the alert rules.
   * Returns the newest transition number stored per agent (what is acknowledged).
   */
  async ingest(batch: ReadonlyMap<string, AgentChecks>, now: number): Promise<Map<string, number>> {
    const acked = new Map<string, number>();
    if (!batch.size) return acked;
    await this.db.tx(async () => {
      for (const [agentId, b] of batch) {
        // The snapshot first: transitions batched with it may be newer (each applies only over an older state).
        if (b.snapshot) {
          const keep = b.snapshot.map((c) => `${c.stack}/${c.check}`);
          const rows = await this.db.all<{ stack: string; name: string }>('SELECT stack, name FROM checks WHERE agent_id = ?', [agentId]);
          for (const r of rows) if (!keep.includes(`${r.stack}/${r.name}`)) await this.db.run('DELETE FROM checks WHERE agent_id = ? AND stack = ? AND name = ?', [agentId, r.stack, r.name]);
          for (const c of b.snapshot) {
            await this.db.run(
              `INSERT INTO checks (agent_id, tenant, stack, name, version, kind, target, state, since, last_error, updated_at, dirty) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (agent_id, stack, name) DO UPDATE SET version = excluded.version, kind = excluded.kind, target = excluded.target, state = excluded.state, since = excluded.since,
                 last_error = excluded.last_error, updated_at = excluded.updated_at, dirty = CASE WHEN checks.state = excluded.state THEN checks.dirty ELSE 1 END`,
              [agentId, b.tenant, c.stack, c.check, c.version, c.kind, c.target, c.state, c.since, c.error ?? null, now, c.state === 'failing' ? 1 : 0],
            );
          }
        }
        for (const t of b.transitions) {
          await this.db.run(
            `INSERT INTO check_events (agent_id, n, tenant, stack, name, from_state, to_state, at, error, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, n) DO NOTHING`,
            [agentId, t.n, b.tenant, t.stack, t.check, t.from, t.to, t.at, t.error ?? null, now],
          );
          await this.db.run(
            `UPDATE checks SET state = ?, since = ?, last_error = ?, updated_at = ?, dirty = CASE WHEN state = ? THEN dirty ELSE 1 END WHERE agent_id = ? AND stack = ? AND name = ? AND since <= ?`,
            [t.to, t.at, t.to === 'failing' ? (t.error ?? null) : null, now, t.to, agentId, t.stack, t.check, t.at],
          );
          acked.set(agentId, Math.max(acked.get(agentId) ?? 0, t.n));
        }
      }
    });
    return acked;
  }

  async list(q: { scope: TenantScope; tenant?: string; agentId?: string; failing?: boolean }): Promise<CheckRow[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (q.scope) {
      where.push(`c.tenant IN ${inList(q.scope.length)}`);
      params.push(...q.scope);
    }
    if (q.tenant) {
      where.push('c.tenant = ?');
      params.push(q.tenant);
    }
    if (q.agentId) {
      where.push('c.agent_id = ?');
      params.push(q.agentId);
    }
    if (q.failing) where.push("c.state = 'failing'");
    const rows = await this.db.all<Raw>(
      `SELECT c.*, a.name AS agent_name FROM checks c JOIN agents a ON a.id = c.agent_id ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY c.tenant, a.name, c.agent_id, c.stack, c.name LIMIT 10000`,
      params,
    );
    return rows.map((r) => ({
      agentId: String(r.agent_id),
      agentName: String(r.agent_name),
      tenant: String(r.tenant),
      stack: String(r.stack),
      name: String(r.name),
      version: String(r.version),
      kind: String(r.kind),
      target: String(r.target),
      state: r.state as CheckState,
      since: Number(r.since),
      lastError: r.last_error === null ? null : String(r.last_error),
      updatedAt: Number(r.updated_at),
    }));
  }

  /** An agent's check transitions, newest first. */
  async history(agentId: string, q: { stack?: string; name?: string; limit: number }): Promise<CheckEventRow[]> {
    const where = ['agent_id = ?'];
    const params: (string | number)[] = [agentId];
    if (q.stack) {
      where.push('stack = ?');
      params.push(q.stack);
    }
    if (q.name) {
      where.push('name = ?');
      params.push(q.name);
    }
    params.push(q.limit);
    const rows = await this.db.all<Raw>(`SELECT n, stack, name, from_state, to_state, at, error FROM check_events WHERE ${where.join(' AND ')} ORDER BY at DESC, n DESC LIMIT ?`, params);
    return rows.map((r) => ({ n: Number(r.n), stack: String(r.stack), name: String(r.name), from: r.from_state as CheckState, to: r.to_state as CheckState, at: Number(r.at), error: r.error === null ? null : String(r.error) }));
  }

  /** Transitions of one check since `since` (flapping). */
  async transitionsSince(agentId: string, stack: string, name: string, since: number): Promise<number> {
    const r = await this.db.get<{ n: number }>('SELECT count(*) AS n FROM check_events WHERE agent_id = ? AND stack = ? AND name = ? AND at >= ?', [agentId, stack, name, since]);
    return Number(r?.n ?? 0);
  }

  /** Deletes history older than `before`. */
  prune(before: number): Promise<number> {
    return this.db.run('DELETE FROM check_events WHERE received_at < ?', [before]);
  }

  /** Checks whose state changed since the alert rules last looked. */
  async dirty(limit: number): Promise<CheckRow[]> {
    const rows = await this.db.all<Raw>(`SELECT c.*, a.name AS agent_name FROM checks c JOIN agents a ON a.id = c.agent_id WHERE c.dirty = 1 ORDER BY c.updated_at LIMIT ?`, [limit]);
    return rows.map((r) => ({
      agentId: String(r.agent_id), agentName: String(r.agent_name), tenant: String(r.tenant), stack: String(r.stack), name: String(r.name), version: String(r.version),
      kind: String(r.kind), target: String(r.target), state: r.state as CheckState, since: Number(r.since), lastError: r.last_error === null ? null : String(r.last_error), updatedAt: Number(r.updated_at),
    }));
  }

  async has(agentId: string, stack: string, name: string): Promise<boolean> {
    return (await this.db.get('SELECT 1 AS x FROM checks WHERE agent_id = ? AND stack = ? AND name = ?', [agentId, stack, name])) !== undefined;
  }

  /** Marks a check for the alert rules to look at again (a flapping one may have settled). */
  async touch(agentId: string, stack: string, name: string): Promise<void> {
    await this.db.run('UPDATE checks SET dirty = 1 WHERE agent_id = ? AND stack = ? AND name = ?', [agentId, stack, name]);
  }

  async clean(agentId: string, stack: string, name: string): Promise<void> {
    await this.db.run('UPDATE checks SET dirty = 0 WHERE agent_id = ? AND stack = ? AND name = ?', [agentId, stack, name]);
  }

  // ---- figures ----------------------------------------------------------------------

  async writeFigures(batch: ReadonlyMap<string, { tenant: string; f: FiguresMessage; at: number }>): Promise<void> {
    if (!batch.size) return;
    await this.db.tx(async () => {
      for (const [agentId, { tenant, f, at }] of batch) {
        await this.db.run(
          `INSERT INTO agent_figures (agent_id, tenant, at, containers, containers_running, services_healthy, services_unhealthy, checks_passing, checks_failing, checks_pending, rss_bytes, cpu_ms)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (agent_id) DO UPDATE SET tenant = excluded.tenant, at = excluded.at, containers = excluded.containers, containers_running = excluded.containers_running,
             services_healthy = excluded.services_healthy, services_unhealthy = excluded.services_unhealthy, checks_passing = excluded.checks_passing,
             checks_failing = excluded.checks_failing, checks_pending = excluded.checks_pending, rss_bytes = excluded.rss_bytes, cpu_ms = excluded.cpu_ms`,
          [agentId, tenant, at, f.containers, f.containersRunning, f.servicesHealthy, f.servicesUnhealthy, f.checksPassing, f.checksFailing, f.checksPending, f.rssBytes, Math.round(f.cpuSeconds * 1000)],
        );
      }
    });
  }

  /** Per tenant: figures of agents heard from since `since` (an aggregate, not a scan per scrape). */
  async tenantFigures(since: number): Promise<TenantFigures[]> {
    const rows = await this.db.all<Raw>(
      `SELECT tenant, count(*) AS agents, sum(containers_running) AS running, sum(services_healthy) AS healthy, sum(services_unhealthy) AS unhealthy FROM agent_figures WHERE at >= ? GROUP BY tenant`,
      [since],
    );
    return rows.map((r) => ({ tenant: String(r.tenant), agents: Number(r.agents), containersRunning: Number(r.running ?? 0), servicesHealthy: Number(r.healthy ?? 0), servicesUnhealthy: Number(r.unhealthy ?? 0) }));
  }

  /** Checks per tenant and state. */
  async tenantChecks(): Promise<{ tenant: string; state: CheckState; n: number }[]> {
    const rows = await this.db.all<Raw>('SELECT tenant, state, count(*) AS n FROM checks GROUP BY tenant, state');
    return rows.map((r) => ({ tenant: String(r.tenant), state: r.state as CheckState, n: Number(r.n) }));
  }

  // ---- alerts -----------------------------------------------------------------------

  async alert(key: string): Promise<AlertRow | undefined> {
    const r = await this.db.get<Raw>('SELECT * FROM alerts WHERE key = ?', [key]);
    return r ? alertOf(r) : undefined;
  }

  async alerts(q: { state?: 'firing' | 'resolved'; kind?: string; scope?: TenantScope; limit?: number }): Promise<AlertRow[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (q.state) {
      where.push('state = ?');
      params.push(q.state);
    }
    if (q.kind) {
      where.push('kind = ?');
      params.push(q.kind);
    }
    if (q.scope) {
      where.push(`tenant IN ${inList(q.scope.length)}`);
      params.push(...q.scope);
    }
    params.push(q.limit ?? 10_000);
    return (await this.db.all<Raw>(`SELECT * FROM alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY since DESC LIMIT ?`, params)).map(alertOf);
  }

  /** Raised or changed by whoever saw it; `dirty` until the leader has notified it. Returns whether the state changed. */
  async putAlert(a: Omit<AlertRow, 'dirty' | 'notifiedAt' | 'notifications'>): Promise<void> {
    await this.db.run(
      `INSERT INTO alerts (key, kind, tenant, agent_id, rollout, state, since, summary, detail, flapping, dirty) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
       ON CONFLICT (key) DO UPDATE SET state = excluded.state, since = excluded.since, summary = excluded.summary, detail = excluded.detail, flapping = excluded.flapping, dirty = 1`,
      [a.key, a.kind, a.tenant, a.agentId, a.rollout, a.state, a.since, a.summary, a.detail, a.flapping ? 1 : 0],
    );
  }

  /** Raised once: a second report of the same alarm changes nothing. */
  async raiseOnce(a: Omit<AlertRow, 'dirty' | 'notifiedAt' | 'notifications' | 'flapping'>): Promise<void> {
    await this.db.run(
      `INSERT INTO alerts (key, kind, tenant, agent_id, rollout, state, since, summary, detail, flapping, dirty) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1) ON CONFLICT (key) DO NOTHING`,
      [a.key, a.kind, a.tenant, a.agentId, a.rollout, a.state, a.since, a.summary, a.detail],
    );
  }

  /** Alerts to notify: changed ones, and firing ones whose last notice is older than `repeatBefore` (null: no reminders). */
  async due(repeatBefore: number | null, limit: number): Promise<AlertRow[]> {
    const dirty = (await this.db.all<Raw>('SELECT * FROM alerts WHERE dirty = 1 ORDER BY since LIMIT ?', [limit])).map(alertOf);
    if (repeatBefore === null || dirty.length >= limit) return dirty;
    // An alarm an agent raised is a one-off (the bank acknowledges it at the agent): noticed once, never reminded.
    const repeat = (await this.db.all<Raw>("SELECT * FROM alerts WHERE state = 'firing' AND dirty = 0 AND notified_at < ? AND kind <> 'audit-alarm' ORDER BY notified_at LIMIT ?", [repeatBefore, limit - dirty.length])).map(alertOf);
    return [...dirty, ...repeat];
  }

  async notified(key: string, at: number): Promise<void> {
    await this.db.run('UPDATE alerts SET dirty = 0, notified_at = ?, notifications = notifications + 1 WHERE key = ?', [at, key]);
  }

  /** The alert on the event stream: a row of the stream's table, so every replica's streams carry it. */
  async appendAlertEvent(e: { at: number; rollout: number | null; event: string; state: string; tenant: string | null; agentId: string | null; summary: string; detail: string }): Promise<number> {
    const r = await this.db.get<{ id: number }>(
      "INSERT INTO rollout_events (at, rollout, kind, to_state, reason, agent_id, tenant, code, detail) VALUES (?, ?, 'alert', ?, ?, ?, ?, ?, ?) RETURNING id",
      [e.at, e.rollout, e.state, e.summary.slice(0, 1000), e.agentId, e.tenant, e.event, e.detail],
    );
    return Number(r!.id);
  }

  async appendScaleEvent(e: { at: number; agentId: string; tenant: string; stack: string; service: string; from: number; to: number; reason: string }): Promise<void> {
    await this.db.run("INSERT INTO rollout_events (at, kind, agent_id, tenant, reason, detail) VALUES (?, 'scale', ?, ?, ?, ?)", [
      e.at, e.agentId, e.tenant, e.reason, JSON.stringify({ stack: e.stack, service: e.service, from: e.from, to: e.to }),
    ]);
  }

  /** Every agent's presence, as rows (the offline rule and the fleet gauges read this every few seconds). */
  async presence(): Promise<{ id: string; tenant: string; revoked: boolean; lastSeenAt: number | null; replica: string | null; leaseUntil: number | null }[]> {
    const rows = await this.db.values<[string, string, number | null, number | null, string | null, number | null]>(
      'SELECT a.id, t.name, a.revoked_at, a.last_seen_at, a.replica, rp.lease_until FROM agents a JOIN tenants t ON t.id = a.tenant_id LEFT JOIN hub_replicas rp ON rp.id = a.replica',
    );
    return rows.map(([id, tenant, revoked, seen, replica, lease]) => ({ id, tenant, revoked: revoked !== null, lastSeenAt: seen === null ? null : Number(seen), replica, leaseUntil: lease === null ? null : Number(lease) }));
  }

  /** Running or paused rollouts with when anything last moved in them. */
  async rolloutActivity(): Promise<{ rollout: number; state: string; stack: string; version: string; lastMoved: number }[]> {
    const rows = await this.db.all<Raw>(
      `SELECT r.num, r.state, r.stack, r.version, r.since, max(t.updated_at) AS moved FROM rollouts r LEFT JOIN rollout_targets t ON t.rollout = r.num
        WHERE r.state IN ('running', 'paused') GROUP BY r.num, r.state, r.stack, r.version, r.since`,
    );
    return rows.map((r) => ({ rollout: Number(r.num), state: String(r.state), stack: String(r.stack), version: String(r.version), lastMoved: Math.max(Number(r.since), Number(r.moved ?? 0)) }));
  }

  /** Rollouts per state (the hub's gauges). */
  async rolloutStates(): Promise<{ state: string; n: number }[]> {
    return (await this.db.all<Raw>('SELECT state, count(*) AS n FROM rollouts GROUP BY state')).map((r) => ({ state: String(r.state), n: Number(r.n) }));
  }

  // ---- webhook outbox ---------------------------------------------------------------

  async enqueue(event: string, body: string, now: number): Promise<void> {
    await this.db.run('INSERT INTO alert_outbox (created_at, event, body, next_at) VALUES (?, ?, ?, ?)', [now, event, body, now]);
  }

  async dueDeliveries(now: number, limit: number): Promise<OutboxRow[]> {
    const rows = await this.db.all<Raw>('SELECT id, event, body, attempts FROM alert_outbox WHERE sent_at IS NULL AND next_at <= ? ORDER BY id LIMIT ?', [now, limit]);
    return rows.map((r) => ({ id: Number(r.id), event: String(r.event), body: String(r.body), attempts: Number(r.attempts) }));
  }

  async delivered(id: number, now: number): Promise<void> {
    await this.db.run('UPDATE alert_outbox SET sent_at = ?, attempts = attempts + 1, error = NULL WHERE id = ?', [now, id]);
  }

  /** A failed attempt: tried again at `nextAt`, or given up (`nextAt` null: marked sent with its error). */
  async failedDelivery(id: number, error: string, nextAt: number | null, now: number): Promise<void> {
    if (nextAt === null) await this.db.run('UPDATE alert_outbox SET sent_at = ?, attempts = attempts + 1, error = ? WHERE id = ?', [now, error.slice(0, 1000), id]);
    else await this.db.run('UPDATE alert_outbox SET attempts = attempts + 1, next_at = ?, error = ? WHERE id = ?', [nextAt, error.slice(0, 1000), id]);
  }

  /** Drops delivered webhook rows older than `before`. */
  pruneOutbox(before: number): Promise<number> {
    return this.db.run('DELETE FROM alert_outbox WHERE sent_at IS NOT NULL AND sent_at < ?', [before]);
  }
}
