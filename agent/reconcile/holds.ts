// Operators' holds on services (remote operations): a service stopped by an
// operator stays stopped, a scaled one keeps its replica count, until an
// operator starts or scales it back or a new release of its stack arrives.
// Pure: the reconciler persists the holds (reconcile.json) and asks these
// functions what they change in the desired state it plans toward.
import type { OperatorHold } from '../../shared/protocol.js';
import type { Release } from '../../shared/release.js';
import type { DesiredStack } from './model.js';

/** A hold as the reconciler keeps it: the wire's view plus the release digest it holds for. */
export interface Hold extends OperatorHold {
  digest: string;
}

export const holdKey = (stack: string, service: string) => `${stack}/${service}`;

/** The holds that still apply to these targets: a hold ends when its stack runs another release, or none. */
export function liveHolds(holds: Readonly<Record<string, Hold>>, targets: readonly { stack: string; digest: string }[]): Record<string, Hold> {
  return Object.fromEntries(Object.entries(holds).filter(([, h]) => targets.some((t) => t.stack === h.stack && t.digest === h.digest)));
}

/** The release as the holds have it: scaled services with their held replica count. */
export function heldRelease(release: Release, digest: string, holds: Readonly<Record<string, Hold>>): Release {
  let services = release.services;
  for (const h of Object.values(holds)) {
    if (h.stack !== release.stack || h.digest !== digest || h.state !== 'scaled' || h.replicas === undefined || !services[h.service]) continue;
    services = { ...services, [h.service]: { ...services[h.service]!, replicas: h.replicas } };
  }
  return services === release.services ? release : { ...release, services };
}

/** `stack/service` of every service an operator stopped: the planner leaves their containers as they are. */
export function stoppedServices(holds: Readonly<Record<string, Hold>>): string[] {
  return Object.values(holds)
    .filter((h) => h.state === 'stopped')
    .map((h) => holdKey(h.stack, h.service));
}

/** The desired stack without the containers of stopped services (nothing is created, started or checked for them). */
export function withoutStopped(stack: DesiredStack, stopped: readonly string[]): DesiredStack {
  if (!stopped.some((k) => k.startsWith(`${stack.stack}/`))) return stack;
  return { ...stack, containers: stack.containers.filter((c) => !stopped.includes(holdKey(c.stack, c.service))) };
}

/** The wire's view of a hold. */
export function holdView(h: Hold): OperatorHold {
  const { digest: _d, ...rest } = h;
  return rest;
}
