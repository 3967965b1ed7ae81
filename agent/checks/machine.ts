// One check's state machine. Pure: a probe result and the time in, the next
// memory and the transition (if any) out. A check starts `pending`; it is
// `failing` after `failures` failed probes in a row, and `passing` after one
// passed probe when pending, or after `successes` in a row once failing.
// Only transitions leave the agent; counters stay in memory.
import type { CheckState } from '../../shared/protocol.js';

export interface CheckMemory {
  state: CheckState;
  /** When it entered `state`, ms. */
  since: number;
  /** The newest failure's reason (kept while failing, for the hub's view). */
  error?: string;
  failed: number;
  passed: number;
}

export interface ProbeResult {
  ok: boolean;
  error?: string;
}

export const initial = (now: number): CheckMemory => ({ state: 'pending', since: now, failed: 0, passed: 0 });

export function step(m: CheckMemory, r: ProbeResult, limits: { failures: number; successes: number }, now: number): { next: CheckMemory; changed: { from: CheckState; to: CheckState; error?: string } | null } {
  const failed = r.ok ? 0 : m.failed + 1;
  const passed = r.ok ? m.passed + 1 : 0;
  let to: CheckState = m.state;
  if (!r.ok && m.state !== 'failing' && failed >= limits.failures) to = 'failing';
  if (r.ok && m.state === 'pending') to = 'passing';
  if (r.ok && m.state === 'failing' && passed >= limits.successes) to = 'passing';
  const error = r.ok ? (to === 'failing' ? m.error : undefined) : r.error;
  const next: CheckMemory = { state: to, since: to === m.state ? m.since : now, failed, passed, ...(error !== undefined && { error }) };
  return { next, changed: to === m.state ? null : { from: m.state, to, ...(to === 'failing' && error !== undefined && { error }) } };
}
