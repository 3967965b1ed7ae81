// The verification gate's second half (x-ferry.verify): once a changed
// release runs and is healthy through its bake time, each of its
// verification jobs runs once, on the stack's networks, and must exit 0
// within its timeout. Results are recorded (persisted, journaled) the moment
// they are read, before the job's container goes, so an agent killed at any
// point neither loses a result nor runs a finished job again; a job killed
// with the agent runs again from the start.
import { FerryError } from '../../shared/errors.js';
import type { JobResult, Verification } from '../../shared/protocol.js';
import type { Engine } from '../engine/engine.js';
import { LABEL, isJob, type Current, type DesiredJob, type DesiredStack, type ObservedContainer } from './model.js';
import type { JobFacts } from './plan.js';

/** Output lines kept per job (what reaches the hub). */
export const OUTPUT_LINES = 20;

/** The job's container of this run, if the engine has it. */
export function jobContainerOf(current: Current, job: DesiredJob, run: string): ObservedContainer | undefined {
  return current.containers.find((c) => isJob(c) && c.labels[LABEL.stack] === job.stack && c.labels[LABEL.service] === job.service && c.labels[LABEL.jobRun] === run);
}

/** Pure: the plan facts for the stacks being verified. */
export function jobFacts(records: Readonly<Record<string, Verification>>, stacks: readonly DesiredStack[], start: boolean): JobFacts[] {
  return stacks.flatMap((d) => {
    const v = records[d.stack];
    return d.jobs?.length && v ? [{ stack: d.stack, run: v.run, done: v.jobs.filter((j) => j.state !== 'running').map((j) => j.service), start }] : [];
  });
}

/**
 * Pure: what a job's container says now. `finished` for an exited one; a
 * running one past its timeout is `timeout`; otherwise null (not started,
 * or still running in time).
 */
export function jobOutcome(c: ObservedContainer | undefined, job: DesiredJob, now: number): 'finished' | 'timeout' | null {
  if (!c) return null;
  if (c.status === 'exited' || c.status === 'dead') return 'finished';
  if (c.status === 'running' && c.startedAt && now - Date.parse(c.startedAt) > job.timeoutMs) return 'timeout';
  return null;
}

/** Reads a finished (or timed-out) job's result from the engine. */
export async function readResult(engine: Engine, c: ObservedContainer, job: DesiredJob, outcome: 'finished' | 'timeout'): Promise<JobResult> {
  const output = (await engine.tail(c.id, OUTPUT_LINES).catch(() => [] as string[])).map((l) => l.slice(0, 512));
  if (outcome === 'timeout') return { service: job.service, state: 'timeout', exitCode: null, output };
  return { service: job.service, state: c.exitCode === 0 ? 'passed' : 'failed', exitCode: c.exitCode, output };
}

/** The error a failed verification rolls back with: the first failed job, its exit and last line. */
export function verificationError(stack: string, v: Verification, timeouts: Readonly<Record<string, number>>): FerryError | null {
  const bad = v.jobs.find((j) => j.state === 'failed' || j.state === 'timeout');
  if (!bad) return null;
  const last = bad.output.filter((l) => l.trim()).slice(-3).join(' | ');
  if (bad.state === 'timeout') return new FerryError('FERRY_E_VERIFY_TIMEOUT', `${stack}/${bad.service} ran longer than ${Math.round((timeouts[bad.service] ?? 0) / 1000)} s${last ? `: ${last}` : ''}`);
  return new FerryError('FERRY_E_VERIFY_FAILED', `${stack}/${bad.service} exited ${bad.exitCode}${last ? `: ${last}` : ''}`);
}
