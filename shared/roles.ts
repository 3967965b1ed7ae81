// Who may do what, in one place: roles, the actions they allow, and the
// decision for a person's grants narrowed by a token's scope. Pure; the hub
// (API, console, chat) asks it, the CLI shows its names.
//
// A person has at most one vendor-wide role (it applies to every tenant and
// to the vendor's own objects) and per-tenant roles (that tenant only). A
// token is a role, optionally limited to some tenants; what it allows is the
// intersection of that and what its person may do, now (a grant revoked
// later narrows the token too).

export const VENDOR_ROLES = ['admin', 'operator', 'release-manager', 'viewer'] as const;
export const TENANT_ROLES = ['tenant-admin', 'operator', 'approver', 'viewer'] as const;
export type VendorRole = (typeof VENDOR_ROLES)[number];
export type TenantRole = (typeof TENANT_ROLES)[number];
export type Role = VendorRole | TenantRole;
export const ROLES: readonly Role[] = [...new Set<Role>([...VENDOR_ROLES, ...TENANT_ROLES])];

/**
 * What can be done. Vendor-only actions concern no tenant (or every one) and
 * need a vendor-wide role; the others are checked per tenant.
 */
export const ACTIONS = {
  /** See a tenant and what is in it: agents, delivered releases, rollouts, trust, audit, events. */
  read: { vendorOnly: false },
  /** Enrollment tokens, labels, revocation, plans of the tenant's agents. */
  'agent.manage': { vendorOnly: false },
  /** Deploys and rollouts to the tenant's agents. */
  deploy: { vendorOnly: false },
  /** Remote operations on the tenant's agents: restart, stop, start, scale, logs, network reconnect. */
  operate: { vendorOnly: false },
  /** Allowlisted commands in the tenant's containers (remote exec); stricter than operate. */
  exec: { vendorOnly: false },
  /** Sign what the tenant must approve: trust roots, release co-signatures, chat confirmations. */
  approve: { vendorOnly: false },
  /** Draft trust roots for the tenant. */
  'trust.manage': { vendorOnly: false },
  /** The vendor's own objects: the hub-wide audit log, every release, people and tokens listings. */
  'hub.read': { vendorOnly: true },
  /** Publish releases (create, sign). */
  'release.publish': { vendorOnly: true },
  'tenant.create': { vendorOnly: true },
  /** People, grants, other people's tokens. */
  'people.manage': { vendorOnly: true },
  'audit.checkpoint': { vendorOnly: true },
  /** Chat: platform transports (vendor-wide), rooms bound to a tenant and its approval rule (that tenant's admins). */
  'chat.manage': { vendorOnly: false },
} as const;
export type Action = keyof typeof ACTIONS;

const ALL = Object.keys(ACTIONS) as Action[];
/** What each role allows where it is granted vendor-wide... */
const VENDOR_PERMS: Record<VendorRole, readonly Action[]> = {
  admin: ALL,
  operator: ['read', 'hub.read', 'agent.manage', 'deploy', 'approve', 'release.publish', 'operate', 'exec'],
  'release-manager': ['read', 'hub.read', 'release.publish'],
  viewer: ['read', 'hub.read'],
};
/** ...and on one tenant (never a vendor-only action). */
const TENANT_PERMS: Record<TenantRole, readonly Action[]> = {
  'tenant-admin': ['read', 'agent.manage', 'deploy', 'approve', 'trust.manage', 'chat.manage', 'operate', 'exec'],
  operator: ['read', 'agent.manage', 'deploy', 'operate'],
  approver: ['read', 'approve'],
  viewer: ['read'],
};

/** A role name's actions at either level (a token's role is checked against this, and its person's grants against their level). */
function perms(role: Role): readonly Action[] {
  return [...new Set([...((VENDOR_PERMS as Record<string, readonly Action[]>)[role] ?? []), ...((TENANT_PERMS as Record<string, readonly Action[]>)[role] ?? [])])];
}

export function roleAllows(role: Role, action: Action): boolean {
  return perms(role).includes(action);
}

export function vendorRoleAllows(role: VendorRole, action: Action): boolean {
  return VENDOR_PERMS[role].includes(action);
}

export function tenantRoleAllows(role: TenantRole, action: Action): boolean {
  return TENANT_PERMS[role].includes(action);
}

export function isVendorRole(r: string): r is VendorRole {
  return (VENDOR_ROLES as readonly string[]).includes(r);
}

export function isTenantRole(r: string): r is TenantRole {
  return (TENANT_ROLES as readonly string[]).includes(r);
}

/** Whether every action of `a` is an action of `b` (a token's role no higher than a grant). */
export function roleWithin(a: Role, b: Role, level: 'vendor' | 'tenant', held: 'vendor' | 'tenant' = level): boolean {
  // `held`: which table `b` is from (a vendor-wide role also covers each tenant; some names are in both tables).
  const have = held === 'vendor' ? (VENDOR_PERMS as Record<string, readonly Action[]>)[b] : (TENANT_PERMS as Record<string, readonly Action[]>)[b];
  if (!have) return false;
  const want = level === 'vendor' ? perms(a) : perms(a).filter((x) => !ACTIONS[x].vendorOnly);
  return want.every((x) => have.includes(x));
}

export interface Grants {
  vendorRole: VendorRole | null;
  /** tenant name -> role */
  tenants: Readonly<Record<string, TenantRole>>;
}

export interface TokenScope {
  role: Role;
  /** null: every tenant the person may see. */
  tenants: readonly string[] | null;
}

/** The tenant a check is about, or 'vendor' for vendor-only actions and objects. */
export type Subject = string | 'vendor';

function personAllows(g: Grants, action: Action, subject: Subject): boolean {
  if (g.vendorRole && vendorRoleAllows(g.vendorRole, action)) return true;
  if (subject === 'vendor' || ACTIONS[action].vendorOnly) return false;
  const t = Object.hasOwn(g.tenants, subject) ? g.tenants[subject] : undefined;
  return t !== undefined && tenantRoleAllows(t, action);
}

function tokenAllows(s: TokenScope, action: Action, subject: Subject): boolean {
  if (!roleAllows(s.role, action)) return false;
  if (subject === 'vendor' || ACTIONS[action].vendorOnly) return s.tenants === null;
  return s.tenants === null || s.tenants.includes(subject);
}

/** May this person (through this token, when one is used) do `action` on `subject`? */
export function allows(g: Grants, scope: TokenScope | null, action: Action, subject: Subject): boolean {
  return personAllows(g, action, subject) && (scope === null || tokenAllows(scope, action, subject));
}

/** The tenants on which `action` is allowed: all (null) or these, out of `all` known tenants. */
export function tenantsAllowing(g: Grants, scope: TokenScope | null, action: Action, all: readonly string[]): string[] | null {
  const everywhere = g.vendorRole !== null && vendorRoleAllows(g.vendorRole, action) && (scope === null || (roleAllows(scope.role, action) && scope.tenants === null));
  if (everywhere) return null;
  return all.filter((t) => allows(g, scope, action, t));
}
