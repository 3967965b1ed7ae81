// Who is calling, as every surface (API, console, chat) sees them once
// authenticated: a person (or service account), their grants, the scope of
// the token they came with, and the surface the hub decided from how they
// authenticated (never from a header the client sets).
import type { AuditEntry } from '../../shared/audit.js';
import { allows, tenantsAllowing, type Action, type Grants, type Subject, type TokenScope } from '../../shared/roles.js';

export type Surface = Extract<AuditEntry['surface'], 'api' | 'cli' | 'console' | 'chat'>;

export interface Principal {
  userId: string;
  userName: string;
  kind: 'person' | 'service';
  grants: Grants;
  /** The token's narrowing (null: a session or chat identity, with all the person's grants). */
  scope: TokenScope | null;
  tokenId: string | null;
  /** The console session's CSRF token, when authenticated by cookie. */
  csrf: string | null;
  surface: Surface;
}

export function can(p: Principal, action: Action, subject: Subject): boolean {
  return allows(p.grants, p.scope, action, subject);
}

/** Tenants (out of `all`) where `action` is allowed: null when it is allowed on every tenant. */
export function tenantsFor(p: Principal, action: Action, all: readonly string[]): string[] | null {
  return tenantsAllowing(p.grants, p.scope, action, all);
}

/** The audit entry's who and from where, for an operation by `p`. */
export function actorOf(p: Principal | null): { actor: AuditEntry['actor']; surface: AuditEntry['surface']; personal: Record<string, string>; userId: string | null } {
  if (!p) return { actor: { kind: 'anonymous', id: null }, surface: 'api', personal: {}, userId: null };
  return { actor: { kind: p.surface === 'chat' ? 'chat' : 'operator', id: p.userId }, surface: p.surface, personal: { operator: p.userName }, userId: p.userId };
}

/** What `ferry whoami` shows. */
export function principalView(p: Principal) {
  return {
    user: p.userName,
    userId: p.userId,
    kind: p.kind,
    vendorRole: p.grants.vendorRole,
    tenants: p.grants.tenants,
    token: p.tokenId ? { id: p.tokenId, role: p.scope?.role ?? null, tenants: p.scope?.tenants ?? null } : null,
    surface: p.surface,
    // Before people existed, whoami answered with the token's name and role; keep both for older CLIs.
    name: p.userName,
    role: p.scope?.role ?? p.grants.vendorRole,
    tokenId: p.tokenId,
  };
}
