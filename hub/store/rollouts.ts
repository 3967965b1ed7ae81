// Rollouts as stored: one row per rollout, one per (rollout, agent) target,
// and the event stream of their transitions (GET /v1/events).
//
// Every write is conditional on the state it expects, so a decision made on
// stale state changes nothing (FERRY_E_ROLLOUT_STATE; the caller's
// transaction or savepoint then rolls back). Each transition writes its
// event in the same transaction, so an event exists exactly when its
// transition committed; event writers take one lock, so ids are committed in
// order and a reader resuming after id N never misses one below it.
import type { EventKind } from '../../shared/events.js';
import { FerryError } from '../../shared/errors.js';
import type { AgentFacts, OnFailure, OnTimeout, Rollout, RolloutState, Target, TargetState } from '../rollouts/machine.js';
import { inList, type Db } from './db.js';
import { AGENT_STACK } from '../../shared/agent-bundle.js';
import type { UpgradeMessage } from '../../shared/protocol.js';

/** An agent's version report as a rollout sees it: committed is applied, reverted is rolled back. */
const UPGRADE_STATE: Record<UpgradeMessage['state'], 'applying' | 'applied' | 'failed' | 'rolled-back'> = {
  idle: 'applying',
  installing: 'applying',
  trial: 'applying',
  committed: 'applied',
  reverted: 'rolled-back',
  failed: 'failed',
};

export interface RolloutRecord extends Rollout {
  num: number;
  selector: string;
  waveSpec: string;
  reason: string | null;
  createdAt: number;
  createdBy: string | null;
}

interface RolloutRow {
  num: number;
  stack: string;
  version: string;
  selector: string;
  wave_spec: string;
  waves: string;
  wave: number;
  state: RolloutState;
  since: number;
  reason: string | null;
  bake_ms: number;
  max_failures: number;
  failures_accepted: number;
  on_failure: OnFailure;
  agent_timeout_ms: number;
  on_timeout: OnTimeout;
  retry_ms: number;
  created_at: number;
  created_by: string | null;
}

/** A rollout_targets row in column order (see `targets`). */
type TargetTuple = [
  agentId: string,
  tenant: string,
  position: number,
  state: TargetState,
  seq: number | null,
  previous: string | null,
  startedAt: number | null,
  appliedAt: number | null,
  retryAt: number | null,
  code: string | null,
  updatedAt: number,
];

export const rolloutId = (num: number) => `R-${num}`;

export function rolloutNum(id: string): number {
  const m = /^R-(\d{1,9})$/.exec(id);
  if (!m) throw new FerryError('FERRY_E_NOT_FOUND', `rollout ${JSON.stringify(id)} (ids look like R-17)`);
  return Number(m[1]);
}

const toRollout = (r: RolloutRow): RolloutRecord => ({
  id: rolloutId(r.num),
  num: r.num,
  stack: r.stack,
  version: r.version,
  selector: r.selector,
  waveSpec: r.wave_spec,
  waves: JSON.parse(r.waves) as number[],
  wave: r.wave,
  state: r.state,
  since: r.since,
  reason: r.reason,
  bakeMs: r.bake_ms,
  maxFailures: r.max_failures,
  failuresAccepted: r.failures_accepted,
  onFailure: r.on_failure,
  agentTimeoutMs: r.agent_timeout_ms,
  onTimeout: r.on_timeout,
  retryMs: r.retry_ms,
  createdAt: r.created_at,
  createdBy: r.created_by,
});

export interface TargetRecord extends Target {
  updatedAt: number;
}

export type NewRollout = Omit<Rollout, 'id' | 'wave' | 'state' | 'since' | 'failuresAccepted'> & { selector: string; waveSpec: string; createdBy: string | null };

export const ACTIVE_STATES: readonly RolloutState[] = ['running', 'paused', 'rolling-back'];
const ACTIVE_SQL = `(${ACTIVE_STATES.map((s) => `'${s}'`).join(', ')})`;

export interface EventRow {
  id: number;
  at: number;
  /** null for alerts and autoscale changes (hub/checks). */
  rollout: number | null;
  kind: EventKind;
  from_state: string | null;
  to_state: string | null;
  reason: string | null;
  wave: number | null;
  agent_id: string | null;
  tenant: string | null;
  seq: number | null;
  version: string | null;
  code: string | null;
  /** JSON: an alert's or autoscale change's details. */
  detail?: string | null;
}

export interface EventQuery {
  after: number;
  rollout: number | null;
  kinds: readonly EventKind[] | null;
  /** Only what these tenants may see (null: everything). */
  tenants: readonly string[] | null;
  limit: number;
}

const EVENT_LOCK = 'rollout-events';

/** A target's move, as `setTargets` takes it. */
export interface TargetMove {
  agentId: string;
  from: TargetState;
  to: TargetState;
  code?: string | null;
  appliedAt?: number;
  retryAt?: number | null;
  seq?: number;
  previous?: string | null;
}

export class RolloutRows {
  constructor(private readonly db: Db) {}

  async insert(r: NewRollout, agents: { id: string; tenant: string }[], now: number): Promise<RolloutRecord> {
    await this.db.lock(EVENT_LOCK);
    const row = await this.db.get<{ num: number }>(
      `INSERT INTO rollouts (stack, version, selector, wave_spec, waves, wave, state, since, bake_ms, max_failures, on_failure, agent_timeout_ms, on_timeout, retry_ms, created_at, created_by)
         VALUES (?, ?, ?, ?, ?, -1, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING num`,
      [r.stack, r.version, r.selector, r.waveSpec, JSON.stringify(r.waves), now, r.bakeMs, r.maxFailures, r.onFailure, r.agentTimeoutMs, r.onTimeout, r.retryMs, now, r.createdBy],
    );
    const num = row!.num;
    for (let i = 0; i < agents.length; i += 200) {
      const part = agents.slice(i, i + 200);
      const values = part.map(() => "(?, ?, ?, ?, 'pending', ?)").join(', ');
      await this.db.run(
        `INSERT INTO rollout_targets (rollout, agent_id, tenant, position, state, updated_at) VALUES ${values}`,
        part.flatMap((a, j) => [num, a.id, a.tenant, i + j, now]),
      );
    }
    await this.db.run("INSERT INTO rollout_events (at, rollout, kind, to_state, reason) VALUES (?, ?, 'rollout', 'running', 'created')", [now, num]);
    return this.get(rolloutId(num));
  }

  /**
   * In a transaction: holds the rollout until it ends. Whoever changes a
   * rollout (the scheduler's chunks, operators' commands) takes it first, so
   * a chunk that re-reads the rollout under it sees every command committed
   * before it, and a command waits for a chunk under way.
   */
  lock(id: string): Promise<void> {
    return this.db.lock(`rollout:${rolloutNum(id)}`);
  }

  async find(id: string): Promise<RolloutRecord | undefined> {
    const r = await this.db.get<RolloutRow>('SELECT * FROM rollouts WHERE num = ?', [rolloutNum(id)]);
    return r ? toRollout(r) : undefined;
  }

  async get(id: string): Promise<RolloutRecord> {
    const r = await this.find(id);
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', `rollout ${id}`);
    return r;
  }

  /** Newest first; with `tenants`, only rollouts with a target in one of them. */
  async list(limit = 100, tenants: readonly string[] | null = null): Promise<RolloutRecord[]> {
    if (tenants === null) return (await this.db.all<RolloutRow>('SELECT * FROM rollouts ORDER BY num DESC LIMIT ?', [limit])).map(toRollout);
    const rows = await this.db.all<RolloutRow>(
      `SELECT * FROM rollouts r WHERE EXISTS (SELECT 1 FROM rollout_targets t WHERE t.rollout = r.num AND t.tenant IN ${inList(tenants.length)}) ORDER BY num DESC LIMIT ?`,
      [...tenants, limit],
    );
    return rows.map(toRollout);
  }

  async active(): Promise<RolloutRecord[]> {
    return (await this.db.all<RolloutRow>(`SELECT * FROM rollouts WHERE state IN ${ACTIVE_SQL} ORDER BY num`)).map(toRollout);
  }

  async targets(id: string): Promise<TargetRecord[]> {
    // Rows as arrays: half the time of objects, and this runs on every tick, and every summary, over the whole fleet.
    const rows = await this.db.values<TargetTuple>(
      'SELECT agent_id, tenant, position, state, seq, previous, started_at, applied_at, retry_at, code, updated_at FROM rollout_targets WHERE rollout = ? ORDER BY position',
      [rolloutNum(id)],
    );
    return rows.map(([agentId, tenant, position, state, seq, previous, startedAt, appliedAt, retryAt, code, updatedAt]) => ({ agentId, tenant, position, state, seq, previous, startedAt, appliedAt, retryAt, code, updatedAt }));
  }

  /** The tenants a rollout touches. */
  async tenants(id: string): Promise<string[]> {
    return (await this.db.all<{ tenant: string }>('SELECT DISTINCT tenant FROM rollout_targets WHERE rollout = ? ORDER BY tenant', [rolloutNum(id)])).map((r) => r.tenant);
  }

  /** Agents of active rollouts of `stack` (one rollout per agent and stack at a time). */
  async busyAgents(stack: string): Promise<Set<string>> {
    const rows = await this.db.all<{ agent_id: string }>(`SELECT t.agent_id FROM rollout_targets t JOIN rollouts r ON r.num = t.rollout WHERE r.stack = ? AND r.state IN ${ACTIVE_SQL}`, [stack]);
    return new Set(rows.map((r) => r.agent_id));
  }

  /** Active rollouts that have yet to reach this agent (pre-staging when it connects). */
  async pendingFor(agentId: string): Promise<{ id: string; stack: string; version: string }[]> {
    const rows = await this.db.all<{ num: number; stack: string; version: string }>(
      `SELECT r.num, r.stack, r.version FROM rollout_targets t JOIN rollouts r ON r.num = t.rollout WHERE t.agent_id = ? AND t.state = 'pending' AND r.state IN ('running', 'paused')`,
      [agentId],
    );
    return rows.map((r) => ({ id: rolloutId(Number(r.num)), stack: r.stack, version: r.version }));
  }

  async targetState(id: string, agentId: string): Promise<TargetState | undefined> {
    return (await this.db.get<{ state: TargetState }>('SELECT state FROM rollout_targets WHERE rollout = ? AND agent_id = ?', [rolloutNum(id), agentId]))?.state;
  }

  /** The states of these targets (those of the rollout), 500 to a query. */
  async targetStates(id: string, agentIds: readonly string[]): Promise<Map<string, TargetState>> {
    const out = new Map<string, TargetState>();
    for (let i = 0; i < agentIds.length; i += 500) {
      const part = agentIds.slice(i, i + 500);
      for (const [a, s] of await this.db.values<[string, TargetState]>(`SELECT agent_id, state FROM rollout_targets WHERE rollout = ? AND agent_id IN ${inList(part.length)}`, [rolloutNum(id), ...part])) out.set(a, s);
    }
    return out;
  }

  /** Everything `decide` needs about each target's agent, in one query; `connected` answers from presence. */
  async facts(id: string, stack: string, connected: (agentId: string, replica: string | null, leaseUntil: number | null) => boolean): Promise<Map<string, AgentFacts>> {
    if (stack === AGENT_STACK) return this.agentFacts(id, connected);
    const rows = await this.db.all<{
      agent_id: string;
      tstate: TargetState;
      tseq: number | null;
      astatus: string | null;
      status_at: number | null;
      replica: string | null;
      lease_until: number | null;
      dseq: number | null;
      dstatus: 'pending' | 'accepted' | 'refused' | null;
      dcode: string | null;
      dissued: number | null;
    }>(
      `SELECT t.agent_id, t.state AS tstate, t.seq AS tseq, a.status AS astatus, a.status_at, a.replica, rp.lease_until, d.seq AS dseq, d.status AS dstatus, d.code AS dcode, d.issued_at AS dissued
         FROM rollout_targets t JOIN agents a ON a.id = t.agent_id
         LEFT JOIN hub_replicas rp ON rp.id = a.replica
         LEFT JOIN directives d ON d.agent_id = t.agent_id AND d.seq = t.seq
        WHERE t.rollout = ?`,
      [rolloutNum(id)],
    );
    const out = new Map<string, AgentFacts>();
    const needCurrent: { agentId: string; fallback: string | null; set: (v: string | null) => void }[] = [];
    for (const r of rows) {
      const status = r.astatus ? (JSON.parse(r.astatus) as { releases?: { stack: string; version: string; state: 'applying' | 'applied' | 'failed' | 'rolled-back'; runningVersion: string | null; code?: string; verification?: { state: 'running' | 'passed' | 'failed' } }[] }) : null;
      const rel = status?.releases?.find((x) => x.stack === stack);
      const f: AgentFacts = {
        connected: connected(r.agent_id, r.replica, r.lease_until),
        report: rel ? { version: rel.version, state: rel.state, runningVersion: rel.runningVersion, code: rel.code ?? null, at: r.status_at ?? 0, verification: rel.verification?.state ?? null } : null,
        directive: r.dseq !== null ? { seq: r.dseq, status: r.dstatus!, code: r.dcode, issuedAt: r.dissued! } : null,
        current: null,
      };
      // Only a target about to get its first directive asks (for its `previous`).
      if (r.tstate === 'waiting' && r.tseq === null) needCurrent.push({ agentId: r.agent_id, fallback: rel?.runningVersion ?? null, set: (v) => (f.current = v) });
      out.set(r.agent_id, f);
    }
    // What the stack is at on each agent now, as last directed (the rollout's "previous"): one query per 500 agents.
    for (let i = 0; i < needCurrent.length; i += 500) {
      const part = needCurrent.slice(i, i + 500);
      const rows2 = await this.db.all<{ agent_id: string; releases: string }>(
        `SELECT d.agent_id, d.releases FROM directives d
          WHERE d.agent_id IN ${inList(part.length)} AND d.seq = (SELECT max(seq) FROM directives x WHERE x.agent_id = d.agent_id AND x.status != 'refused')`,
        part.map((p) => p.agentId),
      );
      const by = new Map(rows2.map((x) => [x.agent_id, JSON.parse(x.releases) as { stack: string; version: string }[]]));
      for (const p of part) p.set(by.get(p.agentId)?.find((x) => x.stack === stack)?.version ?? p.fallback);
    }
    return out;
  }

  /**
   * `facts` for an agent-version rollout: the report is the agent's own
   * version report (protocol 'upgrade'), "applied" meaning the new version
   * committed; what the agent ran before is its installed version then.
   */
  private async agentFacts(id: string, connected: (agentId: string, replica: string | null, leaseUntil: number | null) => boolean): Promise<Map<string, AgentFacts>> {
    const rows = await this.db.all<{
      agent_id: string;
      version: string | null;
      vstatus: string | null;
      vat: number | null;
      replica: string | null;
      lease_until: number | null;
      dseq: number | null;
      dstatus: 'pending' | 'accepted' | 'refused' | null;
      dcode: string | null;
      dissued: number | null;
    }>(
      `SELECT t.agent_id, a.agent_version AS version, v.status AS vstatus, v.updated_at AS vat, a.replica, rp.lease_until, d.seq AS dseq, d.status AS dstatus, d.code AS dcode, d.issued_at AS dissued
         FROM rollout_targets t JOIN agents a ON a.id = t.agent_id
         LEFT JOIN hub_replicas rp ON rp.id = a.replica
         LEFT JOIN agent_versions v ON v.agent_id = t.agent_id
         LEFT JOIN directives d ON d.agent_id = t.agent_id AND d.seq = t.seq
        WHERE t.rollout = ?`,
      [rolloutNum(id)],
    );
    const out = new Map<string, AgentFacts>();
    for (const r of rows) {
      const v = r.vstatus ? (JSON.parse(r.vstatus) as UpgradeMessage) : null;
      out.set(r.agent_id, {
        connected: connected(r.agent_id, r.replica, r.lease_until),
        report: v && v.version ? { version: v.version, state: UPGRADE_STATE[v.state], runningVersion: v.installed, code: v.code ?? null, at: Number(r.vat ?? 0) } : null,
        directive: r.dseq !== null ? { seq: r.dseq, status: r.dstatus!, code: r.dcode, issuedAt: r.dissued! } : null,
        current: v?.installed ?? r.version,
      });
    }
    return out;
  }

  async setRollout(id: string, from: RolloutState, to: RolloutState, reason: string | null, now: number, extra: { wave?: number; failuresAccepted?: number } = {}): Promise<void> {
    await this.db.lock(EVENT_LOCK);
    const n = await this.db.run('UPDATE rollouts SET state = ?, since = ?, reason = ?, wave = coalesce(?, wave), failures_accepted = coalesce(?, failures_accepted) WHERE num = ? AND state = ?', [
      to,
      now,
      reason,
      extra.wave ?? null,
      extra.failuresAccepted ?? null,
      rolloutNum(id),
      from,
    ]);
    if (n !== 1) throw new FerryError('FERRY_E_ROLLOUT_STATE', `${id} is no longer ${from}`);
    await this.db.run("INSERT INTO rollout_events (at, rollout, kind, from_state, to_state, reason) VALUES (?, ?, 'rollout', ?, ?, ?)", [now, rolloutNum(id), from, to, reason]);
  }

  /** Starts wave `wave`: its pending targets begin waiting for delivery. Returns the agents started. */
  async startWave(id: string, wave: number, reach: number, now: number): Promise<string[]> {
    const num = rolloutNum(id);
    await this.db.lock(EVENT_LOCK);
    const n = await this.db.run('UPDATE rollouts SET wave = ? WHERE num = ? AND wave < ?', [wave, num, wave]);
    if (n !== 1) throw new FerryError('FERRY_E_ROLLOUT_STATE', `${id} already started wave ${wave + 1}`);
    const started = await this.db.all<{ agent_id: string }>("SELECT agent_id FROM rollout_targets WHERE rollout = ? AND state = 'pending' AND position < ? ORDER BY position", [num, reach]);
    await this.db.run("UPDATE rollout_targets SET state = 'waiting', started_at = ?, updated_at = ? WHERE rollout = ? AND state = 'pending' AND position < ?", [now, now, num, reach]);
    // The wave event stands for its targets' pending -> waiting.
    await this.db.run("INSERT INTO rollout_events (at, rollout, kind, wave) VALUES (?, ?, 'wave', ?)", [now, num, wave + 1]);
    return started.map((s) => s.agent_id);
  }

  /**
   * Moves targets of one rollout, in order, in a few statements: each move
   * applies only if its target is still in `from`. Its event is a
   * `directive` event when a directive is recorded on it (`seq`), else a
   * `target` event.
   * Returns the index of each move made. A target's second move goes in
   * the second round, and so on (one statement updates a row once); moves
   * of different targets are independent.
   */
  async setTargets(id: string, moves: readonly TargetMove[], now: number): Promise<Set<number>> {
    const num = rolloutNum(id);
    const made = new Set<number>();
    if (!moves.length) return made;
    await this.db.lock(EVENT_LOCK);
    const rounds: { m: TargetMove; i: number }[][] = [];
    const times = new Map<string, number>();
    moves.forEach((m, i) => {
      const k = times.get(m.agentId) ?? 0;
      times.set(m.agentId, k + 1);
      (rounds[k] ??= []).push({ m, i });
    });
    for (const round of rounds) {
      for (let j = 0; j < round.length; j += 200) {
        const part = round.slice(j, j + 200);
        const changed = await this.db.values<[string]>(
          `UPDATE rollout_targets SET state = v.column3, updated_at = ?,
                  code = CASE WHEN v.column4 = 1 THEN v.column5 ELSE code END,
                  applied_at = coalesce(v.column6, applied_at),
                  retry_at = CASE WHEN v.column7 = 1 THEN v.column8 ELSE retry_at END,
                  seq = coalesce(v.column9, seq),
                  previous = CASE WHEN v.column10 = 1 AND seq IS NULL THEN v.column11 ELSE previous END
             FROM (VALUES ${part.map(() => '(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS INTEGER), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS INTEGER), CAST(? AS TEXT))').join(', ')}) AS v
            WHERE rollout_targets.rollout = ? AND rollout_targets.agent_id = v.column1 AND rollout_targets.state = v.column2
            RETURNING agent_id`,
          [
            now,
            ...part.flatMap(({ m }) => [
              m.agentId,
              m.from,
              m.to,
              m.code !== undefined ? 1 : 0,
              m.code ?? null,
              m.appliedAt ?? null,
              m.retryAt !== undefined ? 1 : 0,
              m.retryAt ?? null,
              m.seq ?? null,
              m.previous !== undefined ? 1 : 0,
              m.previous ?? null,
            ]),
            num,
          ],
        );
        const ok = new Set(changed.map(([a]) => a));
        const done = part.filter(({ m }) => ok.has(m.agentId));
        for (const { i } of done) made.add(i);
        if (!done.length) continue;
        // Their events: a directive (with its seq and version) or a target move.
        await this.db.run(
          `INSERT INTO rollout_events (at, rollout, kind, from_state, to_state, agent_id, tenant, seq, version, code)
             SELECT ?, t.rollout, CASE WHEN v.column3 = 1 THEN 'directive' ELSE 'target' END, v.column2, t.state, t.agent_id, t.tenant,
                    CASE WHEN v.column3 = 1 THEN t.seq END,
                    CASE WHEN v.column3 = 1 THEN (CASE WHEN t.state = 'reverting' THEN t.previous ELSE r.version END) END,
                    CASE WHEN v.column3 = 1 THEN NULL ELSE t.code END
               FROM (VALUES ${done.map(() => '(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS INTEGER))').join(', ')}) AS v
               JOIN rollout_targets t ON t.rollout = ? AND t.agent_id = v.column1
               JOIN rollouts r ON r.num = t.rollout
              ORDER BY v.column4`,
          [now, ...done.flatMap(({ m, i }) => [m.agentId, m.from, m.seq !== undefined ? 1 : 0, i]), num],
        );
      }
    }
    return made;
  }

  // ---- the event stream ---------------------------------------------------------------

  /** The newest event id (0: none yet). Pruning always keeps the newest, so ids never go back. */
  async head(): Promise<number> {
    return (await this.db.get<{ id: number | null }>('SELECT max(id) AS id FROM rollout_events'))?.id ?? 0;
  }

  async oldest(): Promise<number | null> {
    return (await this.db.get<{ id: number | null }>('SELECT min(id) AS id FROM rollout_events'))?.id ?? null;
  }

  events(q: EventQuery): Promise<EventRow[]> {
    const where = ['id > ?'];
    const params: (string | number)[] = [q.after];
    if (q.rollout !== null) {
      where.push('rollout = ?');
      params.push(q.rollout);
    }
    if (q.kinds) {
      where.push(`kind IN ${inList(q.kinds.length)}`);
      params.push(...q.kinds);
    }
    if (q.tenants) {
      // A tenant's people see their own agents' events, and the rollout-wide ones of rollouts that reach them.
      const list = inList(q.tenants.length);
      where.push(`(tenant IN ${list} OR (tenant IS NULL AND EXISTS (SELECT 1 FROM rollout_targets t WHERE t.rollout = rollout_events.rollout AND t.tenant IN ${list})))`);
      params.push(...q.tenants, ...q.tenants);
    }
    params.push(q.limit);
    return this.db.all<EventRow>(`SELECT * FROM rollout_events WHERE ${where.join(' AND ')} ORDER BY id LIMIT ?`, params);
  }

  async firstAtOrAfter(at: number): Promise<number | null> {
    return (await this.db.get<{ id: number }>('SELECT id FROM rollout_events WHERE at >= ? ORDER BY id LIMIT 1', [at]))?.id ?? null;
  }

  /** Deletes events below `below`, never the newest. */
  async prune(below: number): Promise<number> {
    const head = await this.head();
    return this.db.run('DELETE FROM rollout_events WHERE id < ?', [Math.min(below, head)]);
  }
}
