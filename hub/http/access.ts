// Authorisation in one place. Every route declares, in its `config.access`,
// the action it performs and how to find the tenant(s) of what it touches;
// one preHandler hook (app.ts) authenticates the caller and applies the rule
// before any handler runs, and a route without a rule cannot be registered.
//
// What another tenant owns answers 404 exactly as what does not exist (the
// same code and message): a bank's people cannot learn that other tenants or
// their objects exist. Something visible but beyond the caller's role is 403.
// Lists are filtered, not just guarded (`listScope`).
import type { FastifyRequest } from 'fastify';
import { FerryError } from '../../shared/errors.js';
import type { Action } from '../../shared/roles.js';
import type { Store } from '../store/store.js';
import { can, tenantsFor, type Principal } from './principal.js';

/** The tenants an object belongs to, and how to say it is not found. */
export interface Subject {
  tenants: readonly string[];
  /** The detail of the 404 (the same whether it does not exist or is not visible). */
  what: string;
}

export type Resolver = (req: FastifyRequest) => Promise<Subject>;

export type AccessRule =
  /** No credentials at all: probes and the agents' own endpoints (agents prove themselves otherwise). */
  | { public: string }
  /** Any signed-in person; the handler acts on the caller's own things only (whoami, own tokens, logout). */
  | { signedIn: true }
  /** A vendor-wide action on the vendor's own objects. */
  | { vendor: Action }
  /** A listing: the handler shows only what `listScope(req, action)` allows. */
  | { list: Action }
  /**
   * An object of one or more tenants. `vendor`: the object is the vendor's
   * too (a release), and this vendor-wide action also allows it. `mode`:
   * whether the action is needed on any or on all of its tenants (default:
   * any for read, all for everything else).
   */
  | { tenant: Action; of: Resolver; vendor?: Action; mode?: 'any' | 'all' };

export function ruleText(r: AccessRule): string {
  if ('public' in r) return 'public';
  if ('signedIn' in r) return 'signed in';
  if ('vendor' in r && !('tenant' in r)) return `vendor ${r.vendor}`;
  if ('list' in r) return `list ${r.list}`;
  return `tenant ${r.tenant}${r.vendor ? ` or vendor ${r.vendor}` : ''}`;
}

/** Applies a route's rule to its caller; returns the subject it resolved (for the handler). */
export async function authorise(rule: AccessRule, p: Principal | null, req: FastifyRequest): Promise<Subject | null> {
  if ('public' in rule) return null;
  if (!p) throw new FerryError('FERRY_E_AUTH_REQUIRED');
  if ('signedIn' in rule) return null;
  if ('list' in rule) return null;
  if (!('tenant' in rule)) {
    // Says nothing about any tenant: a plain 403.
    if (!can(p, rule.vendor, 'vendor')) throw new FerryError('FERRY_E_FORBIDDEN', `needs ${rule.vendor} across the vendor; ${whoIs(p)}`);
    return null;
  }
  const subject = await rule.of(req);
  const vendorSees = rule.vendor !== undefined && can(p, 'hub.read', 'vendor');
  const visible = vendorSees || subject.tenants.some((t) => can(p, 'read', t));
  if (!visible) throw new FerryError('FERRY_E_NOT_FOUND', subject.what);
  if (rule.vendor !== undefined && can(p, rule.vendor, 'vendor')) return subject;
  const mode = rule.mode ?? (rule.tenant === 'read' ? 'any' : 'all');
  const ok = subject.tenants.length > 0 && (mode === 'any' ? subject.tenants.some((t) => can(p, rule.tenant, t)) : subject.tenants.every((t) => can(p, rule.tenant, t)));
  if (!ok) throw new FerryError('FERRY_E_FORBIDDEN', `needs ${rule.tenant}${rule.vendor ? ` (or ${rule.vendor} across the vendor)` : ''} on ${subject.what}; ${whoIs(p)}`);
  return subject;
}

/** What the caller has, for a 403 they can act on (their own grants only). */
function whoIs(p: Principal): string {
  const roles = [p.grants.vendorRole ? `${p.grants.vendorRole} (vendor-wide)` : null, ...Object.entries(p.grants.tenants).map(([t, r]) => `${r} on ${t}`)].filter(Boolean);
  const token = p.scope ? `, through a token limited to ${p.scope.role}${p.scope.tenants ? ` on ${p.scope.tenants.join(', ')}` : ''}` : '';
  return `${p.userName} is ${roles.length ? roles.join(', ') : 'granted nothing'}${token}`;
}

/** The tenants a listing may show for `action`: null for all, else their names (possibly none). */
export async function listScope(store: Store, p: Principal, action: Action): Promise<string[] | null> {
  const all = await store.fleet.tenantNames();
  return tenantsFor(p, action, all);
}

// ---- resolvers -------------------------------------------------------------------

type Params = Record<string, string | undefined>;
const param = (req: FastifyRequest, name: string) => ((req.params as Params)[name] ?? '').slice(0, 200);

/** A tenant named in the path. */
export const tenantParam =
  (store: Store, name = 'tenant'): Resolver =>
  async (req) => {
    const t = param(req, name);
    const what = `tenant ${t}`;
    if (!(await store.fleet.findTenant(t))) throw new FerryError('FERRY_E_NOT_FOUND', what);
    return { tenants: [t], what };
  };

/** An agent named in the path (or by `pick` from the body). */
export const agentOf =
  (store: Store, pick: (req: FastifyRequest) => string | undefined = (req) => param(req, 'id')): Resolver =>
  async (req) => {
    const id = String(pick(req) ?? '').slice(0, 200);
    const what = `agent ${id}`;
    const a = await store.fleet.agentTenant(id).catch(() => null);
    if (!a) throw new FerryError('FERRY_E_NOT_FOUND', what);
    return { tenants: [a.tenant], what };
  };
