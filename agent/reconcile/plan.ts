// The planner: pure and synchronous. Given what the engine has (Current) and
// what the accepted releases ask for (DesiredStack[]), it returns the next
// batch of steps, plus why it is still waiting when there is nothing to do
// yet (a dependency not healthy, a new container warming up). The loop runs
// observe -> plan -> execute until both are empty. Steps in one batch never
// depend on each other except through the executor's fixed phase order:
// pull, networks and volumes, stop, remove, create, alias, removeNetwork.
//
// A start-first replacement takes several passes, each waiting on what the
// engine reports: create the new container on the service's networks WITHOUT
// the service alias (so the name never resolves to a container that does not
// serve yet); wait until it is ready; give it the alias (the old one still
// has it: the name always resolves to a serving container); only then drain
// the old one (it re-joins its networks without the alias) and stop it.
// Every step is decided from observed state alone, so a crash between any two
// of them converges the same way.
import type { Current, DesiredContainer, DesiredJob, DesiredStack, ObservedContainer } from './model.js';
import { LABEL, isJob } from './model.js';

export type Step =
  | { kind: 'pull'; image: string }
  /** `labels`: the release's own labels, besides Ferry's. */
  | { kind: 'createNetwork'; name: string; stack: string; internal: boolean; labels?: Record<string, string> }
  | { kind: 'createVolume'; name: string; stack: string; labels?: Record<string, string> }
  /** `drain`: first re-join these networks without the service's aliases, so the name stops resolving to it while it still answers. */
  | { kind: 'stop'; id: string; name: string; graceMs: number; reason: string; drain?: string[] }
  | { kind: 'remove'; id: string; name: string; reason: string }
  /**
   * Create and start a container for one service replica. `deferAlias`
   * (start-first replacement): join the networks without the service aliases;
   * an `alias` step adds them once the container is ready.
   */
  | { kind: 'create'; container: DesiredContainer; reason: string; deferAlias?: boolean }
  /** Start an existing container of the right config (created but not started, or stopped by hand). */
  | { kind: 'start'; id: string; name: string; reason: string }
  /** Make a running container resolve as `aliases` on each of `networks` (those where it does not yet). */
  | { kind: 'alias'; id: string; name: string; networks: string[]; aliases: string[]; reason: string }
  | { kind: 'removeNetwork'; id: string; name: string }
  /** Create and start one run of a verification job (a one-shot container; the reconciler reads how it exited). */
  | { kind: 'runJob'; job: DesiredJob; run: string; reason: string };

export type StepKind = Step['kind'];
/** The order in which the executor runs the kinds of one batch. */
export const PHASES: readonly StepKind[][] = [['pull'], ['createNetwork', 'createVolume'], ['stop'], ['remove'], ['create', 'start', 'runJob'], ['alias'], ['removeNetwork']];

export interface Plan {
  steps: Step[];
  waiting: string[];
}

export interface PlanFacts {
  /** Default stop grace for containers whose desired spec is unknown (removed services). */
  defaultGraceMs: number;
  /** Stacks to leave exactly as they run (their release waits for a secret): nothing of theirs is removed. */
  keep?: readonly string[];
  /** Services (`stack/service`) an operator stopped: their containers are left as they are (not started, not removed). */
  keepServices?: readonly string[];
  /**
   * Verification jobs under way, per stack: the run, the jobs whose result is
   * recorded, and whether to start the others now (the verification gate) or
   * only keep what runs (a converge before it, e.g. after a crash). Job
   * containers of any other run, or recorded, are removed.
   */
  jobs?: readonly JobFacts[];
}

export interface JobFacts {
  stack: string;
  run: string;
  done: readonly string[];
  start: boolean;
}

const live = (c: ObservedContainer) => c.status === 'running' || c.status === 'restarting' || c.status === 'paused';
/** Ready to serve: healthy, or running when it has no healthcheck. */
const ready = (c: ObservedContainer) => c.status === 'running' && (c.health === 'healthy' || c.health === 'none');
/** The service's networks on which the container does not resolve as every one of the service's aliases. */
const unaliased = (c: ObservedContainer, dc: DesiredContainer) => dc.spec.networks.filter((n) => !dc.spec.aliases.every((a) => c.networks[n]?.includes(a)));
/** The engine's own networks, which a container joins through a network mode, never by alias. */
const ENGINE_NETWORKS: ReadonlySet<string> = new Set(['host', 'none', 'bridge']);
const slotKey = (stack: string, service: string, replica: number | string) => `${stack}/${service}/${replica}`;

function rank(c: ObservedContainer): number {
  return c.status === 'running' ? 0 : c.status === 'restarting' ? 1 : c.status === 'created' ? 2 : 3;
}

export function plan(current: Current, desired: readonly DesiredStack[], facts: PlanFacts): Plan {
  const steps: Step[] = [];
  const waiting: string[] = [];
  const images = new Set(current.images);
  const netByName = new Map(current.networks.map((n) => [n.name, n]));
  const volumes = new Set(current.volumes.map((v) => v.name));
  const slots = new Map<string, ObservedContainer[]>();
  for (const c of current.containers) {
    if (isJob(c)) continue; // planned by planJobs
    const k = slotKey(c.labels[LABEL.stack] ?? '', c.labels[LABEL.service] ?? '', c.labels[LABEL.replica] ?? '');
    slots.set(k, [...(slots.get(k) ?? []), c]);
  }
  const wanted = new Set<string>(); // container ids that belong to the desired state
  const pulls = new Set<string>();
  const stopAndRemove = (c: ObservedContainer, graceMs: number, reason: string, drain = false) => {
    // drained on its own networks; Docker's host, none and bridge (a service's network mode) carry no alias
    const aliasedOn = Object.keys(c.networks).filter((n) => !ENGINE_NETWORKS.has(n));
    if (live(c) || c.status === 'created') steps.push({ kind: 'stop', id: c.id, name: c.name, graceMs, reason, ...(drain && c.status === 'running' && aliasedOn.length ? { drain: aliasedOn } : {}) });
    if (c.status !== 'removing') steps.push({ kind: 'remove', id: c.id, name: c.name, reason });
  };

  for (const stack of desired) {
    const missingNets = stack.networks.filter((n) => !netByName.has(n.name));
    const missingVols = stack.volumes.filter((v) => !volumes.has(v));
    for (const n of missingNets) steps.push({ kind: 'createNetwork', name: n.name, stack: stack.stack, internal: n.internal, ...(n.labels && { labels: n.labels }) });
    for (const v of missingVols) steps.push({ kind: 'createVolume', name: v, stack: stack.stack, ...(stack.volumeLabels?.[v] && { labels: stack.volumeLabels[v] }) });
    const infraReady = missingNets.length === 0 && missingVols.length === 0;
    // The matching containers of each service, for depends_on conditions.
    const byService = new Map<string, { dc: DesiredContainer; c: ObservedContainer | undefined }[]>();
    for (const dc of stack.containers) {
      const match = (slots.get(slotKey(dc.stack, dc.service, dc.replica)) ?? []).filter((c) => c.labels[LABEL.configHash] === dc.configHash).sort((a, b) => rank(a) - rank(b))[0];
      byService.set(dc.service, [...(byService.get(dc.service) ?? []), { dc, c: match }]);
    }
    const depsMet = (dc: DesiredContainer): string | null => {
      for (const [dep, { condition }] of Object.entries(dc.dependsOn)) {
        const members = byService.get(dep) ?? [];
        const ok = members.length > 0 && members.every(({ dc: d, c }) => {
          if (!c) return false;
          if (condition === 'service_started') return c.status === 'running';
          if (condition === 'service_healthy') return d.hasHealthcheck ? c.status === 'running' && c.health === 'healthy' : c.status === 'running';
          return c.status === 'exited' && c.exitCode === 0;
        });
        if (!ok) return `${dc.stack}/${dc.service} waits for ${dep} (${condition})`;
      }
      return null;
    };

    for (const dc of stack.containers) {
      const slot = slots.get(slotKey(dc.stack, dc.service, dc.replica)) ?? [];
      const matching = slot.filter((c) => c.labels[LABEL.configHash] === dc.configHash).sort((a, b) => rank(a) - rank(b));
      const stale = slot.filter((c) => c.labels[LABEL.configHash] !== dc.configHash);
      const [best, ...extra] = matching;
      const label = `${dc.stack}/${dc.service}#${dc.replica}`;
      for (const c of matching) wanted.add(c.id);
      for (const c of extra) {
        wanted.delete(c.id);
        stopAndRemove(c, dc.spec.stopGraceMs, `duplicate of ${label}`);
      }

      if (!best) {
        if (!images.has(dc.spec.image)) {
          if (!pulls.has(dc.spec.image)) steps.push({ kind: 'pull', image: dc.spec.image });
          pulls.add(dc.spec.image);
          continue; // nothing is stopped before the new image is here
        }
        if (!infraReady) continue;
        const blocked = depsMet(dc);
        if (blocked) {
          waiting.push(blocked);
          continue;
        }
        const liveStale = stale.filter(live);
        if (dc.updateOrder === 'stop-first' && stale.length > 0) {
          for (const c of stale) stopAndRemove(c, dc.spec.stopGraceMs, `stop-first update of ${label}`);
          continue; // create once the old one is gone (it may hold the same ports)
        }
        if (liveStale.length) steps.push({ kind: 'create', container: dc, reason: `start-first update of ${label}`, deferAlias: true });
        else steps.push({ kind: 'create', container: dc, reason: `${label} missing` });
        continue;
      }

      switch (best.status) {
        case 'created':
        case 'exited':
        case 'dead': {
          const blocked = depsMet(dc);
          if (blocked) waiting.push(blocked);
          else steps.push({ kind: 'start', id: best.id, name: best.name, reason: best.status === 'created' ? `${label} created` : `${label} is ${best.status} (drift)` });
          break;
        }
        case 'removing':
        case 'paused':
          waiting.push(`${label} is ${best.status}`);
          break;
        case 'running':
        case 'restarting': {
          const missing = unaliased(best, dc);
          const replacing = stale.some(live);
          if (missing.length > 0) {
            // Start-first (or an alias lost by hand, or a crash before the alias step): the alias comes
            // only once the container is ready, and before any old container of the slot goes.
            if (ready(best)) steps.push({ kind: 'alias', id: best.id, name: best.name, networks: missing, aliases: dc.spec.aliases, reason: replacing ? `${label} ready; takes its alias before the old one goes` : `${label} lacks its alias` });
            else waiting.push(`${label}: new container not ready yet (${best.health}); it takes the alias once ready${replacing ? ', the old one keeps serving' : ''}`);
          } else if (stale.length > 0) {
            if (ready(best)) for (const c of stale) stopAndRemove(c, dc.spec.stopGraceMs, `${label} replaced; new container ready`, dc.updateOrder === 'start-first');
            else waiting.push(`${label}: new container not ready yet (${best.health}); old one keeps serving`);
          }
          break;
        }
      }
    }
  }

  // Everything owned but not wanted: other stacks, removed services, surplus replicas.
  const desiredKeys = new Set(desired.flatMap((s) => s.containers.map((dc) => slotKey(dc.stack, dc.service, dc.replica))));
  const keep = new Set(facts.keep ?? []);
  planJobs(current, desired, facts, steps, waiting, stopAndRemove);
  const keepServices = new Set(facts.keepServices ?? []);
  for (const c of current.containers) {
    if (isJob(c) || wanted.has(c.id) || keep.has(c.labels[LABEL.stack] ?? '')) continue;
    if (keepServices.has(`${c.labels[LABEL.stack]}/${c.labels[LABEL.service]}`)) continue;
    const k = slotKey(c.labels[LABEL.stack] ?? '', c.labels[LABEL.service] ?? '', c.labels[LABEL.replica] ?? '');
    if (desiredKeys.has(k)) continue; // stale container of a desired slot: handled above
    stopAndRemove(c, facts.defaultGraceMs, `${c.labels[LABEL.stack]}/${c.labels[LABEL.service]} is no longer desired`);
  }
  const desiredStacks = new Set(desired.map((s) => s.stack));
  const desiredNets = new Set(desired.flatMap((s) => s.networks.map((n) => n.name)));
  // A network no release asks for goes once nothing of ours uses it: for a stack no longer desired, once all
  // its containers are gone; for a network dropped from a desired stack, once no container is attached to it.
  for (const n of current.networks) {
    const stack = n.labels[LABEL.stack] ?? '';
    if (desiredNets.has(n.name) || keep.has(stack)) continue;
    const stackGone = !desiredStacks.has(stack);
    const users = current.containers.filter((c) => Object.hasOwn(c.networks, n.name) || (stackGone && c.labels[LABEL.stack] === stack));
    if (users.length === 0) steps.push({ kind: 'removeNetwork', id: n.id, name: n.name });
    else if (users.some((c) => !wanted.has(c.id))) waiting.push(`network ${n.name} waits for its containers to go`);
    // else: a container we keep was attached to it by hand; the network stays while it is.
  }
  return { steps, waiting };
}

/**
 * Verification jobs: a run's container is started once (the gate), kept while
 * it runs or until its result is recorded, then removed; containers of any
 * other run, or of a stack no longer verifying, are removed.
 */
function planJobs(current: Current, desired: readonly DesiredStack[], facts: PlanFacts, steps: Step[], waiting: string[], stopAndRemove: (c: ObservedContainer, graceMs: number, reason: string) => void): void {
  const keep = new Set(facts.keep ?? []);
  const jobsOf = new Map(desired.map((d) => [d.stack, d.jobs ?? []]));
  const runs = new Map((facts.jobs ?? []).map((j) => [j.stack, j]));
  const seen = new Set<string>();
  for (const c of current.containers.filter(isJob)) {
    const stack = c.labels[LABEL.stack] ?? '';
    if (keep.has(stack)) continue;
    const svc = c.labels[LABEL.service] ?? '';
    const f = runs.get(stack);
    const job = (jobsOf.get(stack) ?? []).find((j) => j.service === svc && j.configHash === c.labels[LABEL.configHash]);
    if (f && job && c.labels[LABEL.jobRun] === f.run && !f.done.includes(svc)) {
      seen.add(`${stack}/${svc}`);
      if (c.status === 'created' && f.start) steps.push({ kind: 'start', id: c.id, name: c.name, reason: `${stack}/${svc} verification job created` });
      else if (c.status === 'running' && f.start) waiting.push(`${stack}/${svc}: verification job running`);
      continue;
    }
    stopAndRemove(c, job?.spec.stopGraceMs ?? facts.defaultGraceMs, f && job && c.labels[LABEL.jobRun] === f.run ? `${stack}/${svc} verification job finished` : `${stack}/${svc} verification job of another run`);
  }
  for (const f of facts.jobs ?? []) {
    if (!f.start) continue;
    const images = new Set(current.images);
    for (const job of jobsOf.get(f.stack) ?? []) {
      if (f.done.includes(job.service) || seen.has(`${f.stack}/${job.service}`)) continue;
      if (!images.has(job.spec.image)) {
        if (!steps.some((s) => s.kind === 'pull' && s.image === job.spec.image)) steps.push({ kind: 'pull', image: job.spec.image });
        continue;
      }
      steps.push({ kind: 'runJob', job, run: f.run, reason: `verify ${f.stack}@${job.release}` });
    }
  }
}

