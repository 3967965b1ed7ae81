// What the routes work with, and `audited`: an operation and its audit entry
// in one transaction.
import type { Logger } from '../../shared/logger.js';
import type { AuditInput, AuditLog } from '../audit/log.js';
import type { Witnessing } from '../audit/witness.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Directives } from '../directives.js';
import type { Challenges } from '../gateway/challenge.js';
import type { Delivery } from '../gateway/delivery.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Plans } from '../gateway/plans.js';
import type { OperationIssuer } from '../operations/issue.js';
import type { HubOperations } from '../operations/operations.js';
import type { Releases } from '../releases.js';
import type { EventStreams } from '../rollouts/events.js';
import type { Rollouts } from '../rollouts/scheduler.js';
import type { Store } from '../store/store.js';
import type { TrustRoots } from '../trust.js';
import type { Authenticator } from './auth.js';
import type { AuthGuard } from './guard.js';
import { actorOf, type Principal } from './principal.js';

export interface HubContext {
  store: Store;
  cluster: Cluster;
  gateway: Gateway;
  challenges: Challenges;
  trust: TrustRoots;
  releases: Releases;
  directives: Directives;
  delivery: Delivery;
  plans: Plans;
  /** Remote operations: signing them, and carrying them to agents and their answers back (hub/operations). */
  issuer: OperationIssuer;
  operations: HubOperations;
  audit: AuditLog;
  witness: Witnessing;
  rollouts: Rollouts;
  events: EventStreams;
  auth: Authenticator;
  guard: AuthGuard;
  log: Logger;
  /** host[:port] agents must sign for, when a public URL is set. */
  publicHost?: string;
  now: () => number;
  isReady: () => boolean;
  /** Open event streams per person at most. */
  maxStreamsPerUser: number;
}

export type AuditFields = Omit<AuditInput, 'actor' | 'surface' | 'personal'>;

/**
 * Runs an operation and appends its audit entry in one transaction: if either
 * fails, neither happens. The person's name is personal data (a salted
 * commitment in the leaf); their user id identifies the actor, and the token
 * used (if any) is in the details.
 */
export async function audited<T>(ctx: HubContext, p: Principal | null, fn: () => Promise<T>, entry: (r: T) => AuditFields): Promise<T> {
  const who = actorOf(p);
  return ctx.store.tx(async () => {
    const r = await fn();
    const e = entry(r);
    await ctx.audit.append({ ...e, details: { ...(e.details ?? {}), ...(p?.tokenId ? { token: p.tokenId } : {}) }, actor: who.actor, surface: who.surface, personal: who.personal }, ctx.now());
    return r;
  });
}
