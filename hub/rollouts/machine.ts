// The rollout state machine. Pure and synchronous: given the stored rollout,
// its targets, what agents last reported and the time, `decide` returns the
// transitions to make; the scheduler (scheduler.ts) performs and records
// them. Operator commands are checked by `command`.
//
// Invariants:
// - a target's wave starts (state `waiting`, `startedAt` set) only after every
//   target of the waves before it is done, skipped or failed, unless an
//   operator promoted;
// - a target is only issued a directive while its agent is connected, the
//   rollout is running and (after a maintenance-window refusal) its retry
//   time has come; the scheduler records the seq in the transaction that
//   issues it, so one decision never yields two directives;
// - "done" means the agent reported stack@version applied (with its
//   verification jobs passed, when the release has some) and nothing else
//   for the whole bake time after that (the hub does not guess).
import { FerryError } from '../../shared/errors.js';

export const ROLLOUT_STATES = ['running', 'paused', 'succeeded', 'failed', 'aborted', 'rolling-back', 'rolled-back'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
export const TARGET_STATES = ['pending', 'waiting', 'issued', 'baking', 'done', 'failed', 'skipped', 'reverting', 'reverted', 'revert-failed'] as const;
export type TargetState = (typeof TARGET_STATES)[number];
export type OnFailure = 'pause' | 'rollback';
export type OnTimeout = 'failed' | 'skip';

export interface Rollout {
  id: string;
  stack: string;
  version: string;
  /** Cumulative number of targets each wave reaches. */
  waves: number[];
  /** Index of the newest started wave; -1 before the first. */
  wave: number;
  state: RolloutState;
  /** When it entered `state`. */
  since: number;
  bakeMs: number;
  maxFailures: number;
  /** Failures an operator accepted by resuming after a pause. */
  failuresAccepted: number;
  onFailure: OnFailure;
  agentTimeoutMs: number;
  onTimeout: OnTimeout;
  /** How long to wait before re-issuing after a maintenance-window refusal. */
  retryMs: number;
  /** The release has verification jobs (x-ferry.verify): an agent's apply counts only once they passed. */
  verification?: boolean;
}

export interface Target {
  agentId: string;
  tenant: string;
  /** Order in the rollout: the canary is 0. */
  position: number;
  state: TargetState;
  /** The last directive this rollout issued to the agent. */
  seq: number | null;
  /** The stack's version on the agent before the rollout first touched it. */
  previous: string | null;
  startedAt: number | null;
  appliedAt: number | null;
  retryAt: number | null;
  code: string | null;
}

export interface AgentFacts {
  connected: boolean;
  /** The agent's last report for the rollout's stack, with when the hub received it. */
  report: { version: string; state: 'applying' | 'applied' | 'failed' | 'rolled-back'; runningVersion: string | null; code: string | null; at: number; verification?: 'running' | 'passed' | 'failed' | null } | null;
  /** The directive named by the target's seq. */
  directive: { seq: number; status: 'pending' | 'accepted' | 'refused'; code: string | null; issuedAt: number } | null;
  /** The stack's version the hub last directed to the agent (for `previous`). */
  current: string | null;
}

export type Decision =
  | { kind: 'start-wave'; wave: number }
  | { kind: 'issue'; agentId: string; version: string; purpose: 'deploy' | 'revert'; previous: string | null }
  | { kind: 'target'; agentId: string; from: TargetState; to: TargetState; code?: string | null; appliedAt?: number; retryAt?: number | null }
  | { kind: 'rollout'; from: RolloutState; to: RolloutState; reason: string };

export const TERMINAL: readonly RolloutState[] = ['succeeded', 'failed', 'aborted', 'rolled-back'];
const SETTLED: readonly TargetState[] = ['done', 'skipped', 'failed'];
const REVERTIBLE: readonly TargetState[] = ['issued', 'baking', 'done', 'failed'];

export const WINDOW_CODE = 'FERRY_E_POLICY_WINDOW';
export const TIMEOUT_CODE = 'timeout';

export function inWave(r: Pick<Rollout, 'waves' | 'wave'>, t: Pick<Target, 'position'>): boolean {
  return r.wave >= 0 && t.position < r.waves[Math.min(r.wave, r.waves.length - 1)]!;
}

export function failures(targets: readonly Target[]): number {
  return targets.filter((t) => t.state === 'failed').length;
}

/** What to do now. Targets are updated in a copy so rollout decisions see this tick's outcomes. */
export function decide(r: Rollout, targets: readonly Target[], facts: (agentId: string) => AgentFacts, now: number): Decision[] {
  const out: Decision[] = [];
  const ts = targets.map((t) => ({ ...t }));
  const move = (t: Target, to: TargetState, extra: Omit<Extract<Decision, { kind: 'target' }>, 'kind' | 'agentId' | 'from' | 'to'> = {}) => {
    out.push({ kind: 'target', agentId: t.agentId, from: t.state, to, ...extra });
    t.state = to;
    if (extra.appliedAt !== undefined) t.appliedAt = extra.appliedAt;
    if (extra.retryAt !== undefined) t.retryAt = extra.retryAt;
  };
  switch (r.state) {
    case 'running':
    case 'paused':
      for (const t of ts) if (inWave(r, t)) forward(r, t, facts(t.agentId), now, out, move);
      if (r.state === 'running') advance(r, ts, now, out);
      return out;
    case 'rolling-back':
      for (const t of ts) backward(r, t, facts(t.agentId), now, out, move);
      finishRollback(r, ts, facts, out);
      return out;
    case 'succeeded':
    case 'failed':
    case 'aborted':
    case 'rolled-back':
      return out;
    default: {
      const never: never = r.state;
      return never;
    }
  }
}

type Move = (t: Target, to: TargetState, extra?: { code?: string | null; appliedAt?: number; retryAt?: number | null }) => void;

function forward(r: Rollout, t: Target, f: AgentFacts, now: number, out: Decision[], move: Move): void {
  const timedOut = t.startedAt !== null && now - t.startedAt >= r.agentTimeoutMs;
  const rep = f.report && f.report.version === r.version ? f.report : null;
  const timeout = () => move(t, r.onTimeout === 'skip' ? 'skipped' : 'failed', { code: TIMEOUT_CODE });
  switch (t.state) {
    case 'waiting':
      if (timedOut) return timeout();
      if (r.state === 'running' && f.connected && (t.retryAt === null || now >= t.retryAt)) {
        out.push({ kind: 'issue', agentId: t.agentId, version: r.version, purpose: 'deploy', previous: t.seq === null ? f.current : t.previous });
        t.state = 'issued';
      }
      return;
    case 'issued': {
      const d = f.directive;
      if (d && d.seq === t.seq && d.status === 'refused') {
        if (d.code === WINDOW_CODE) return move(t, 'waiting', { code: WINDOW_CODE, retryAt: now + r.retryMs });
        return move(t, 'failed', { code: d.code ?? 'refused' });
      }
      const fresh = rep !== null && d !== null && rep.at >= d.issuedAt;
      // With verification jobs, applied counts only with them passed (an agent that ran none has not verified it).
      const verified = !r.verification || rep?.verification === 'passed';
      if (rep && rep.state === 'applied' && rep.runningVersion === r.version && verified && (fresh || d?.status === 'accepted')) return move(t, 'baking', { appliedAt: now, code: null });
      if (rep && fresh && (rep.state === 'failed' || rep.state === 'rolled-back')) return move(t, 'failed', { code: rep.code ?? rep.state });
      if (timedOut) return timeout();
      return;
    }
    case 'baking':
      if (f.report && f.report.version !== r.version) return move(t, 'failed', { code: 'superseded' });
      if (rep && (rep.state === 'failed' || rep.state === 'rolled-back')) return move(t, 'failed', { code: rep.code ?? rep.state });
      if (t.appliedAt !== null && now - t.appliedAt >= r.bakeMs) return move(t, 'done');
      return;
    case 'pending':
    case 'done':
    case 'failed':
    case 'skipped':
    case 'reverting':
    case 'reverted':
    case 'revert-failed':
      return;
    default: {
      const never: never = t.state;
      return never;
    }
  }
}

function advance(r: Rollout, ts: Target[], now: number, out: Decision[]): void {
  if (failures(ts) - r.failuresAccepted > r.maxFailures) {
    const reason = `${failures(ts)} failed, more than the ${r.maxFailures} allowed`;
    out.push({ kind: 'rollout', from: r.state, to: r.onFailure === 'pause' ? 'paused' : 'rolling-back', reason });
    return;
  }
  const reached = ts.filter((t) => inWave(r, t));
  if (!reached.every((t) => SETTLED.includes(t.state))) return;
  if (r.wave >= r.waves.length - 1) {
    out.push({ kind: 'rollout', from: r.state, to: 'succeeded', reason: `${reached.filter((t) => t.state === 'done').length} of ${ts.length} applied` });
    return;
  }
  out.push({ kind: 'start-wave', wave: r.wave + 1 });
  const next = { ...r, wave: r.wave + 1 };
  for (const t of ts) if (t.state === 'pending' && inWave(next, t)) Object.assign(t, { state: 'waiting', startedAt: now });
}

/** Whether the rollout changed this agent: a directive of it was not refused. */
function touched(t: Target, f: AgentFacts): boolean {
  if (t.seq === null) return false;
  if (t.state === 'waiting') return false; // only refusals so far
  return !(t.state === 'failed' && f.directive?.seq === t.seq && f.directive.status === 'refused');
}

function backward(r: Rollout, t: Target, f: AgentFacts, now: number, out: Decision[], move: Move): void {
  const timedOut = now - r.since >= r.agentTimeoutMs;
  switch (t.state) {
    case 'issued':
    case 'baking':
    case 'done':
    case 'failed':
      if (!touched(t, f)) return;
      if (t.previous === null) return move(t, 'revert-failed', { code: 'no-previous-release' });
      if (t.previous === r.version) return move(t, 'reverted');
      if (f.connected) {
        out.push({ kind: 'issue', agentId: t.agentId, version: t.previous, purpose: 'revert', previous: t.previous });
        t.state = 'reverting';
      } else if (timedOut) move(t, 'revert-failed', { code: TIMEOUT_CODE });
      return;
    case 'reverting': {
      const d = f.directive;
      if (d && d.seq === t.seq && d.status === 'refused') return move(t, 'revert-failed', { code: d.code ?? 'refused' });
      const rep = f.report && f.report.version === t.previous ? f.report : null;
      if (rep && rep.state === 'applied' && rep.runningVersion === t.previous) return move(t, 'reverted');
      // An agent that rolled itself back already runs the previous release: redirected to it, it
      // has nothing to apply and keeps reporting the failed version with the previous one running.
      const selfRolledBack = f.report && f.report.version === r.version && f.report.runningVersion === t.previous && (f.report.state === 'rolled-back' || f.report.state === 'failed');
      if (selfRolledBack && d && d.seq === t.seq && d.status === 'accepted') return move(t, 'reverted');
      if (rep && d && rep.at >= d.issuedAt && (rep.state === 'failed' || rep.state === 'rolled-back')) return move(t, 'revert-failed', { code: rep.code ?? rep.state });
      if (timedOut) return move(t, 'revert-failed', { code: TIMEOUT_CODE });
      return;
    }
    case 'waiting':
      return move(t, 'skipped', { code: 'rolled-back' });
    case 'pending':
    case 'skipped':
    case 'reverted':
    case 'revert-failed':
      return;
    default: {
      const never: never = t.state;
      return never;
    }
  }
}

function finishRollback(r: Rollout, ts: Target[], facts: (agentId: string) => AgentFacts, out: Decision[]): void {
  const open = ts.some((t) => t.state === 'reverting' || (REVERTIBLE.includes(t.state) && touched(t, facts(t.agentId))));
  if (open) return;
  const bad = ts.filter((t) => t.state === 'revert-failed').length;
  out.push({ kind: 'rollout', from: r.state, to: bad ? 'failed' : 'rolled-back', reason: bad ? `${bad} agent(s) could not be rolled back` : 'every changed agent is back on its previous release' });
}

export type Command = 'pause' | 'resume' | 'promote' | 'abort' | 'rollback';

/** Checks an operator command against the rollout's state; returns the state it moves to and any wave to start. */
export function command(r: Rollout, targets: readonly Target[], cmd: Command): { to: RolloutState; startWave?: number; failuresAccepted?: number } {
  const refuse = (why: string) => new FerryError('FERRY_E_ROLLOUT_STATE', `${r.id} is ${r.state}: ${why}`);
  switch (cmd) {
    case 'pause':
      if (r.state !== 'running') throw refuse('only a running rollout can be paused');
      return { to: 'paused' };
    case 'resume':
      if (r.state !== 'paused') throw refuse('only a paused rollout can be resumed');
      return { to: 'running', failuresAccepted: failures(targets) };
    case 'promote':
      if (r.state !== 'running' && r.state !== 'paused') throw refuse('only a running or paused rollout can be promoted');
      if (r.wave >= r.waves.length - 1) throw refuse('the last wave has already started');
      return { to: 'running', startWave: r.wave + 1, failuresAccepted: failures(targets) };
    case 'abort':
      if (r.state !== 'running' && r.state !== 'paused') throw refuse('only a running or paused rollout can be aborted');
      return { to: 'aborted' };
    case 'rollback':
      if (r.state === 'rolling-back' || r.state === 'rolled-back') throw refuse('it is already rolling back or rolled back');
      return { to: 'rolling-back' };
    default: {
      const never: never = cmd;
      return never;
    }
  }
}
