// Rollouts in sqlite: one row per rollout, one per (rollout, agent) target.
// Every write is conditional on the state it expects, so a decision made on
// stale state changes nothing (the caller's transaction then rolls back).
import { FerryError } from '../../shared/errors.js';
import { stmt, type DB } from '../db.js';
import type { AgentFacts, OnFailure, OnTimeout, Rollout, RolloutState, Target, TargetState } from './machine.js';

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

export class RolloutStore {
  constructor(readonly db: DB) {}

  insert(r: NewRollout, agents: { id: string; tenant: string }[], now: number): RolloutRecord {
    const res = stmt(
      this.db,
      `INSERT INTO rollouts (stack, version, selector, wave_spec, waves, wave, state, since, bake_ms, max_failures, on_failure, agent_timeout_ms, on_timeout, retry_ms, created_at, created_by)
         VALUES (?, ?, ?, ?, ?, -1, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(r.stack, r.version, r.selector, r.waveSpec, JSON.stringify(r.waves), now, r.bakeMs, r.maxFailures, r.onFailure, r.agentTimeoutMs, r.onTimeout, r.retryMs, now, r.createdBy);
    const num = Number(res.lastInsertRowid);
    const ins = stmt(this.db, `INSERT INTO rollout_targets (rollout, agent_id, tenant, position, state, updated_at) VALUES (?, ?, ?, ?, 'pending', ?)`);
    agents.forEach((a, i) => ins.run(num, a.id, a.tenant, i, now));
    return this.get(rolloutId(num));
  }

  find(id: string): RolloutRecord | undefined {
    const r = stmt(this.db, 'SELECT * FROM rollouts WHERE num = ?').get(rolloutNum(id)) as RolloutRow | undefined;
    return r ? toRollout(r) : undefined;
  }

  get(id: string): RolloutRecord {
    const r = this.find(id);
    if (!r) throw new FerryError('FERRY_E_NOT_FOUND', `rollout ${id}`);
    return r;
  }

  list(limit = 100): RolloutRecord[] {
    return (stmt(this.db, 'SELECT * FROM rollouts ORDER BY num DESC LIMIT ?').all(limit) as RolloutRow[]).map(toRollout);
  }

  active(): RolloutRecord[] {
    return (stmt(this.db, "SELECT * FROM rollouts WHERE state IN ('running', 'paused', 'rolling-back') ORDER BY num").all() as RolloutRow[]).map(toRollout);
  }

  targets(id: string): TargetRecord[] {
    // Rows as arrays: half the time of objects, and this runs on every tick, and every summary, over the whole fleet.
    const rows = stmt(this.db, 'SELECT agent_id, tenant, position, state, seq, previous, started_at, applied_at, retry_at, code, updated_at FROM rollout_targets WHERE rollout = ? ORDER BY position')
      .raw(true)
      .all(rolloutNum(id)) as TargetTuple[];
    return rows.map(([agentId, tenant, position, state, seq, previous, startedAt, appliedAt, retryAt, code, updatedAt]) => ({ agentId, tenant, position, state, seq, previous, startedAt, appliedAt, retryAt, code, updatedAt }));
  }

  /** Agents of active rollouts of `stack` (one rollout per agent and stack at a time). */
  busyAgents(stack: string): Set<string> {
    const rows = stmt(this.db, "SELECT t.agent_id FROM rollout_targets t JOIN rollouts r ON r.num = t.rollout WHERE r.stack = ? AND r.state IN ('running', 'paused', 'rolling-back')")
      .all(stack) as { agent_id: string }[];
    return new Set(rows.map((r) => r.agent_id));
  }

  /** Everything `decide` needs about each target's agent, in one query. */
  facts(id: string, stack: string, connected: (agentId: string) => boolean): Map<string, AgentFacts> {
    const rows = stmt(
      this.db,
      `SELECT t.agent_id, a.status AS astatus, a.status_at, d.seq AS dseq, d.status AS dstatus, d.code AS dcode, d.issued_at AS dissued
           FROM rollout_targets t JOIN agents a ON a.id = t.agent_id
           LEFT JOIN directives d ON d.agent_id = t.agent_id AND d.seq = t.seq
          WHERE t.rollout = ?`,
    ).all(rolloutNum(id)) as { agent_id: string; astatus: string | null; status_at: number | null; dseq: number | null; dstatus: 'pending' | 'accepted' | 'refused' | null; dcode: string | null; dissued: number | null }[];
    const lastDirected = stmt(this.db, "SELECT releases FROM directives WHERE agent_id = ? AND status != 'refused' ORDER BY seq DESC LIMIT 1");
    const out = new Map<string, AgentFacts>();
    for (const r of rows) {
      const status = r.astatus ? (JSON.parse(r.astatus) as { releases?: { stack: string; version: string; state: 'applying' | 'applied' | 'failed' | 'rolled-back'; runningVersion: string | null; code?: string }[] }) : null;
      const rel = status?.releases?.find((x) => x.stack === stack);
      let current: string | null | undefined;
      out.set(r.agent_id, {
        connected: connected(r.agent_id),
        report: rel ? { version: rel.version, state: rel.state, runningVersion: rel.runningVersion, code: rel.code ?? null, at: r.status_at ?? 0 } : null,
        directive: r.dseq !== null ? { seq: r.dseq, status: r.dstatus!, code: r.dcode, issuedAt: r.dissued! } : null,
        // Read only when the machine asks (issuing for the first time).
        get current() {
          if (current === undefined) {
            const last = lastDirected.get(r.agent_id) as { releases: string } | undefined;
            const refs = last ? (JSON.parse(last.releases) as { stack: string; version: string }[]) : [];
            current = refs.find((x) => x.stack === stack)?.version ?? rel?.runningVersion ?? null;
          }
          return current;
        },
      });
    }
    return out;
  }

  setRollout(id: string, from: RolloutState, to: RolloutState, reason: string | null, now: number, extra: { wave?: number; failuresAccepted?: number } = {}): void {
    const r = stmt(this.db, 'UPDATE rollouts SET state = ?, since = ?, reason = ?, wave = coalesce(?, wave), failures_accepted = coalesce(?, failures_accepted) WHERE num = ? AND state = ?')
      .run(to, now, reason, extra.wave ?? null, extra.failuresAccepted ?? null, rolloutNum(id), from);
    if (r.changes !== 1) throw new FerryError('FERRY_E_ROLLOUT_STATE', `${id} is no longer ${from}`);
  }

  /** Starts wave `wave`: its pending targets begin waiting for delivery. Returns the agents started. */
  startWave(id: string, wave: number, reach: number, now: number): string[] {
    const num = rolloutNum(id);
    const r = stmt(this.db, 'UPDATE rollouts SET wave = ? WHERE num = ? AND wave < ?').run(wave, num, wave);
    if (r.changes !== 1) throw new FerryError('FERRY_E_ROLLOUT_STATE', `${id} already started wave ${wave + 1}`);
    const started = stmt(this.db, "SELECT agent_id FROM rollout_targets WHERE rollout = ? AND state = 'pending' AND position < ? ORDER BY position").all(num, reach) as { agent_id: string }[];
    stmt(this.db, "UPDATE rollout_targets SET state = 'waiting', started_at = ?, updated_at = ? WHERE rollout = ? AND state = 'pending' AND position < ?").run(now, now, num, reach);
    return started.map((s) => s.agent_id);
  }

  setTarget(id: string, agentId: string, from: TargetState, to: TargetState, now: number, f: { code?: string | null; appliedAt?: number; retryAt?: number | null; seq?: number; previous?: string | null } = {}): void {
    const r = stmt(
      this.db,
      `UPDATE rollout_targets SET state = ?, updated_at = ?,
                code = CASE WHEN ? THEN ? ELSE code END,
                applied_at = coalesce(?, applied_at),
                retry_at = CASE WHEN ? THEN ? ELSE retry_at END,
                seq = coalesce(?, seq),
                previous = CASE WHEN ? AND seq IS NULL THEN ? ELSE previous END
          WHERE rollout = ? AND agent_id = ? AND state = ?`,
    ).run(
        to,
        now,
        f.code !== undefined ? 1 : 0,
        f.code ?? null,
        f.appliedAt ?? null,
        f.retryAt !== undefined ? 1 : 0,
        f.retryAt ?? null,
        f.seq ?? null,
        f.previous !== undefined ? 1 : 0,
        f.previous ?? null,
        rolloutNum(id),
        agentId,
        from,
      );
    if (r.changes !== 1) throw new FerryError('FERRY_E_ROLLOUT_STATE', `target ${agentId} of ${id} is no longer ${from}`);
  }
}
