// The autoscaler's decision. Pure and synchronous, like the planner: the
// service's signed bounds and target, the bank's cap, the replicas' usage,
// the last change and the clock in; the replicas to run (or null: keep) out.
//
// Invariants: the answer is never above the signed max or the bank's cap, and
// never below the signed min (unless the cap is lower: the bank wins); back
// inside the bounds happens at once; otherwise a change needs the usage off
// target by more than TOLERANCE, and the cooldown since the last change
// (upCooldown to add, downCooldown to remove). Sizing follows the proportion
// (replicas × usage / target, rounded up), as Kubernetes' HPA does.
import type { Autoscale } from '../../shared/release.js';

export const TOLERANCE = 0.1;

export interface Usage {
  /** Average over running replicas, percent of one core. */
  cpuPercent: number;
  /** Average over running replicas, percent of the memory limit. */
  memoryPercent: number;
}

export interface ScaleInput {
  spec: Autoscale;
  /** Replicas now desired. */
  current: number;
  /** The bank's policy cap on any service's replicas (agent policy `autoscale.maxReplicas`); null: none. */
  cap: number | null;
  /** null until two samples of every running replica exist. */
  usage: Usage | null;
  lastChangeAt: number | null;
  now: number;
}

export interface ScaleDecision {
  replicas: number;
  reason: string;
}

export function bounds(spec: Autoscale, cap: number | null): { min: number; max: number } {
  const max = cap === null ? spec.max : Math.min(spec.max, cap);
  return { min: Math.min(spec.min, max), max };
}

export function decide(i: ScaleInput): ScaleDecision | null {
  const { min, max } = bounds(i.spec, i.cap);
  if (i.current > max) return { replicas: max, reason: i.cap !== null && i.cap < i.spec.max ? `the bank's policy caps replicas at ${i.cap}` : `above max ${i.spec.max}` };
  if (i.current < min) return { replicas: min, reason: `below min ${min}` };
  if (!i.usage) return null;
  const [what, value, target] = i.spec.cpuPercent !== undefined ? ['cpu', i.usage.cpuPercent, i.spec.cpuPercent] as const : ['memory', i.usage.memoryPercent, i.spec.memoryPercent!] as const;
  const ratio = value / target;
  if (Math.abs(ratio - 1) <= TOLERANCE) return null;
  const wanted = Math.min(max, Math.max(min, Math.ceil(i.current * ratio)));
  if (wanted === i.current) return null;
  const since = i.lastChangeAt === null ? Infinity : i.now - i.lastChangeAt;
  const up = wanted > i.current;
  if (since < (up ? i.spec.upCooldownMs : i.spec.downCooldownMs)) return null;
  return { replicas: wanted, reason: `${what} ${Math.round(value)}% ${up ? '>' : '<'} ${target}% target` };
}

/** CPU percent of one core between two samples of one container. */
export function cpuPercent(a: { at: number; cpuNanos: number }, b: { at: number; cpuNanos: number }): number | null {
  const wallNs = (b.at - a.at) * 1e6;
  if (wallNs <= 0 || b.cpuNanos < a.cpuNanos) return null;
  return ((b.cpuNanos - a.cpuNanos) / wallNs) * 100;
}
