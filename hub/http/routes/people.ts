// People, their grants and API tokens, and console sessions.
import { z } from 'zod';
import { HUB_LOG } from '../../../shared/audit.js';
import { FerryError } from '../../../shared/errors.js';
import { ROLES, TENANT_ROLES, VENDOR_ROLES, roleWithin, type Role } from '../../../shared/roles.js';
import type { TokenRecord, UserRecord } from '../../store/people.js';
import type { RouteDef } from '../app.js';
import { audited, type HubContext } from '../context.js';
import { hashPassword, verifyPassword, MAX_PASSWORD } from '../passwords.js';
import { can, principalView, type Principal } from '../principal.js';
import { iso } from '../views.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

const Name = z.string().min(1).max(63);
const Password = z.string().max(MAX_PASSWORD);
const DAY_S = 86_400;
const CreateUser = z.strictObject({
  name: Name,
  kind: z.enum(['person', 'service']).default('person'),
  vendorRole: z.enum(VENDOR_ROLES).nullable().default(null),
  password: Password.optional(),
});
const GrantBody = z.union([z.strictObject({ tenant: z.string().max(64), role: z.enum(TENANT_ROLES) }), z.strictObject({ vendorRole: z.enum(VENDOR_ROLES) })]);
const UngrantBody = z.union([z.strictObject({ tenant: z.string().max(64) }), z.strictObject({ vendorRole: z.literal(true) })]);
const PasswordBody = z.strictObject({ password: Password, current: Password.optional() });
const CreateToken = z.strictObject({
  user: Name.optional(),
  name: z.string().min(1).max(64),
  role: z.enum(ROLES as [Role, ...Role[]]),
  tenants: z.array(z.string().max(64)).min(1).max(256).nullable().default(null),
  ttlSeconds: z.number().int().min(60).max(366 * DAY_S).nullable().default(null),
});
const TokensQuery = z.strictObject({ user: Name.optional() });
const LoginBody = z.strictObject({ user: Name, password: Password });

/** Logins per minute from one address, whatever the accounts (guessing is also slowed per account). */
const LOGIN_RATE = { max: 30, timeWindow: 60_000 };

export function userView(u: UserRecord) {
  return { id: u.id, name: u.name, kind: u.kind, vendorRole: u.vendorRole, tenants: u.grants, hasPassword: u.hasPassword, disabledAt: iso(u.disabledAt), lockedUntil: iso(u.lockedUntil), createdAt: iso(u.createdAt) };
}

export function tokenView(t: TokenRecord) {
  return { id: t.id, user: t.userName, name: t.name, role: t.role, tenants: t.tenants, createdAt: iso(t.createdAt), expiresAt: iso(t.expiresAt), revokedAt: iso(t.revokedAt), lastUsedAt: iso(t.lastUsedAt) };
}

/**
 * Whether a token of `role` over `tenants` stays within what `u` may do
 * (and, when minted with a token, within that token too). Throws
 * FERRY_E_TOKEN_SCOPE naming what is too wide.
 */
function checkTokenScope(u: UserRecord, role: Role, tenants: string[] | null, caller: Principal): void {
  const vendorOk = u.vendorRole !== null && roleWithin(role, u.vendorRole, 'vendor');
  if (tenants === null) {
    const tenantOk = Object.values(u.grants).some((g) => roleWithin(role, g, 'tenant'));
    if (!vendorOk && !tenantOk) throw new FerryError('FERRY_E_TOKEN_SCOPE', `role ${role} is beyond every grant of ${u.name}`);
  } else {
    for (const t of tenants) {
      const g = Object.hasOwn(u.grants, t) ? u.grants[t] : undefined;
      const ok = (u.vendorRole !== null && roleWithin(role, u.vendorRole, 'tenant', 'vendor')) || (g !== undefined && roleWithin(role, g, 'tenant'));
      if (!ok) throw new FerryError('FERRY_E_TOKEN_SCOPE', `role ${role} on tenant ${t} is beyond what ${u.name} has there`);
    }
  }
  // A token cannot mint a wider one.
  const s = caller.scope;
  if (s && caller.userId === u.id) {
    if (!roleWithin(role, s.role, 'vendor') && !roleWithin(role, s.role, 'tenant')) throw new FerryError('FERRY_E_TOKEN_SCOPE', `role ${role} is beyond the token in use (${s.role})`);
    if (s.tenants && (tenants === null || tenants.some((t) => !s.tenants!.includes(t)))) throw new FerryError('FERRY_E_TOKEN_SCOPE', `tenants beyond the token in use (${s.tenants.join(', ')})`);
  }
}

export function peopleRoutes(route: Route, ctx: HubContext): void {
  const { store } = ctx;
  const manage = (p: Principal) => can(p, 'people.manage', 'vendor');
  const changed = () => ctx.auth.forget();

  route({ method: 'GET', url: '/v1/whoami', access: { signedIn: true }, handler: ({ principal }) => principalView(principal) });

  // ---- users ------------------------------------------------------------------------
  route({ method: 'GET', url: '/v1/users', access: { vendor: 'people.manage' }, handler: async () => ({ users: (await store.people.listUsers()).map(userView) }) });
  route({
    method: 'POST',
    url: '/v1/users',
    access: { vendor: 'people.manage' },
    body: CreateUser,
    status: 201,
    handler: async ({ body, principal }) => {
      if (body.kind === 'service' && body.password) throw new FerryError('FERRY_E_VALIDATION', 'password: service accounts use API tokens, not passwords');
      const passwordHash = body.password ? await hashPassword(body.password) : null;
      const u = await audited(
        ctx,
        principal,
        () => store.people.createUser({ name: body.name, kind: body.kind, vendorRole: body.vendorRole, passwordHash }, principal.userId, ctx.now()),
        (u) => ({ log: HUB_LOG, action: 'user.create', target: { type: 'user', id: u.id }, details: { kind: u.kind, vendorRole: u.vendorRole } }),
      );
      return userView(u);
    },
  });
  route({
    method: 'GET',
    url: '/v1/users/:name',
    access: { signedIn: true },
    handler: async ({ params, principal }) => {
      if (params.name !== principal.userName && !manage(principal)) throw new FerryError('FERRY_E_FORBIDDEN', 'people.manage is needed to see another account');
      return userView(await store.people.user(params.name!));
    },
  });
  route({
    method: 'POST',
    url: '/v1/users/:name/grants',
    access: { vendor: 'people.manage' },
    body: GrantBody,
    handler: async ({ params, body, principal }) => {
      const u = await store.people.user(params.name!);
      const r = await audited(
        ctx,
        principal,
        async () => {
          if ('vendorRole' in body) await store.people.setVendorRole(u.id, body.vendorRole);
          else await store.people.grant(u.id, (await store.fleet.tenant(body.tenant)).id, body.role, principal.userId, ctx.now());
          return store.people.user(u.name);
        },
        () => ({
          log: 'vendorRole' in body ? HUB_LOG : body.tenant,
          action: 'user.grant',
          target: { type: 'user', id: u.id },
          details: 'vendorRole' in body ? { vendorRole: body.vendorRole } : { tenant: body.tenant, role: body.role } as Record<string, string>,
        }),
      );
      changed();
      return userView(r);
    },
  });
  route({
    method: 'POST',
    url: '/v1/users/:name/revoke',
    access: { vendor: 'people.manage' },
    body: UngrantBody,
    handler: async ({ params, body, principal }) => {
      const u = await store.people.user(params.name!);
      const r = await audited(
        ctx,
        principal,
        async () => {
          if ('vendorRole' in body) {
            if (u.vendorRole === null) throw new FerryError('FERRY_E_NOT_FOUND', `vendor role of ${u.name}`);
            if (u.id === principal.userId && u.vendorRole === 'admin') throw new FerryError('FERRY_E_CONFLICT', 'you cannot drop your own admin role; ask another admin');
            await store.people.setVendorRole(u.id, null);
          } else if (!(await store.people.ungrant(u.id, (await store.fleet.tenant(body.tenant)).id))) throw new FerryError('FERRY_E_NOT_FOUND', `grant of ${u.name} on ${body.tenant}`);
          return store.people.user(u.name);
        },
        () => ({ log: 'vendorRole' in body ? HUB_LOG : body.tenant, action: 'user.revoke', target: { type: 'user', id: u.id }, details: ('vendorRole' in body ? { vendorRole: u.vendorRole } : { tenant: body.tenant }) as Record<string, string | null> }),
      );
      changed();
      return userView(r);
    },
  });
  route({
    method: 'POST',
    url: '/v1/users/:name/password',
    access: { signedIn: true },
    body: PasswordBody,
    rateLimit: LOGIN_RATE,
    handler: async ({ params, body, principal }) => {
      const self = params.name === principal.userName;
      if (!self && !manage(principal)) throw new FerryError('FERRY_E_FORBIDDEN', 'people.manage is needed to set another account\'s password');
      const u = await store.people.user(params.name!);
      if (u.kind === 'service') throw new FerryError('FERRY_E_VALIDATION', 'service accounts use API tokens, not passwords');
      // Your own password: prove you know the current one (unless an admin sets it).
      if (self && !manage(principal) && !(await verifyPassword(body.current ?? '', await store.people.passwordHash(u.id)))) throw new FerryError('FERRY_E_LOGIN_FAILED', 'current password');
      const hash = await hashPassword(body.password);
      await audited(
        ctx,
        principal,
        async () => {
          await store.people.setPassword(u.id, hash);
          // Every other session of this person ends: a new password is a fresh start.
          await store.people.deleteSessionsOf(u.id);
        },
        () => ({ log: HUB_LOG, action: 'user.password', target: { type: 'user', id: u.id } }),
      );
      ctx.guard.reset(u.name);
      return { user: u.name, passwordSet: true };
    },
  });
  for (const [verb, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    route({
      method: 'POST',
      url: `/v1/users/:name/${verb}`,
      access: { vendor: 'people.manage' },
      handler: async ({ params, principal }) => {
        const u = await store.people.user(params.name!);
        if (disabled && u.id === principal.userId) throw new FerryError('FERRY_E_CONFLICT', 'you cannot disable your own account');
        const r = await audited(
          ctx,
          principal,
          async () => {
            await store.people.setDisabled(u.id, disabled ? ctx.now() : null);
            if (disabled) await store.people.deleteSessionsOf(u.id);
            return store.people.user(u.name);
          },
          () => ({ log: HUB_LOG, action: `user.${verb}`, target: { type: 'user', id: u.id } }),
        );
        changed();
        return userView(r);
      },
    });
  }

  // ---- API tokens -----------------------------------------------------------------------
  route({
    method: 'GET',
    url: '/v1/api-tokens',
    access: { signedIn: true },
    query: TokensQuery,
    handler: async ({ query, principal }) => {
      const mine = !manage(principal);
      if (mine && query.user && query.user !== principal.userName) throw new FerryError('FERRY_E_FORBIDDEN', 'people.manage is needed to list another account\'s tokens');
      const userId = mine ? principal.userId : query.user ? (await store.people.user(query.user)).id : null;
      return { tokens: (await store.people.listTokens(userId)).map(tokenView) };
    },
  });
  route({
    method: 'POST',
    url: '/v1/api-tokens',
    access: { signedIn: true },
    body: CreateToken,
    status: 201,
    handler: async ({ body, principal }) => {
      const forOther = body.user !== undefined && body.user !== principal.userName;
      if (forOther && !manage(principal)) throw new FerryError('FERRY_E_FORBIDDEN', 'people.manage is needed to make a token for another account');
      const u = await store.people.user(body.user ?? principal.userName);
      if (u.disabledAt !== null) throw new FerryError('FERRY_E_USER_DISABLED', u.name);
      const tenants = body.tenants ? [...new Set(body.tenants)].sort() : null;
      for (const t of tenants ?? []) if (!(await store.fleet.findTenant(t)) || (!manage(principal) && !can(principal, 'read', t))) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${t}`);
      checkTokenScope(u, body.role, tenants, principal);
      const expiresAt = body.ttlSeconds ? ctx.now() + body.ttlSeconds * 1000 : null;
      const t = await audited(
        ctx,
        principal,
        () => store.people.createToken({ userId: u.id, name: body.name, role: body.role, tenants, expiresAt }, principal.userId, ctx.now()),
        (t) => ({ log: HUB_LOG, action: 'api-token.create', target: { type: 'api-token', id: t.id }, details: { user: u.id, role: body.role, tenants: tenants ? tenants.join(',') : null, expiresAt: iso(expiresAt) } }),
      );
      return { id: t.id, user: u.name, name: body.name, role: body.role, tenants, expiresAt: iso(expiresAt), token: t.token };
    },
  });
  route({
    method: 'POST',
    url: '/v1/api-tokens/:id/revoke',
    access: { signedIn: true },
    handler: async ({ params, principal }) => {
      const t = await store.people.token(params.id!);
      // Someone else's token answers like one that does not exist.
      if (!t || (t.userId !== principal.userId && !manage(principal))) throw new FerryError('FERRY_E_NOT_FOUND', `api token ${params.id}`);
      await audited(
        ctx,
        principal,
        async () => {
          if (!(await store.people.revokeToken(t.id, ctx.now()))) throw new FerryError('FERRY_E_NOT_FOUND', `api token ${t.id} (already revoked)`);
        },
        () => ({ log: HUB_LOG, action: 'api-token.revoke', target: { type: 'api-token', id: t.id } }),
      );
      changed();
      return { id: t.id, revoked: true };
    },
  });

  // ---- console sessions -------------------------------------------------------------------
  route({
    method: 'POST',
    url: '/v1/sessions',
    access: { public: 'password login' },
    body: LoginBody,
    rateLimit: LOGIN_RATE,
    status: 201,
    handler: async ({ req, reply, body }) => {
      const u = await store.people.findUser(body.user);
      ctx.guard.checkLogin(body.user, req.ip, u?.lockedUntil ?? null, u !== undefined);
      const hash = u && u.kind === 'person' && u.disabledAt === null ? await store.people.passwordHash(u.id) : null;
      const ok = await verifyPassword(body.password, hash);
      if (!ok || !u) {
        await ctx.guard.loginFailed(body.user, u?.id ?? null, req.ip);
        throw new FerryError('FERRY_E_LOGIN_FAILED');
      }
      ctx.guard.reset(body.user);
      const s = await ctx.auth.startSession(u.id, req.cookies[ctx.auth.cookieName]);
      await store.tx(async () => {
        if (u.lockedUntil !== null) await store.people.lockUntil(u.id, null);
        await ctx.audit.append({ log: HUB_LOG, actor: { kind: 'operator', id: u.id }, surface: 'console', action: 'auth.login', target: { type: 'user', id: u.id }, personal: { operator: u.name } }, ctx.now());
      });
      void reply.setCookie(ctx.auth.cookieName, s.secret, {
        httpOnly: true,
        secure: ctx.auth.secureCookies,
        sameSite: 'strict',
        path: '/',
        maxAge: Math.floor(ctx.auth.sessions.maxMs / 1000),
      });
      return { user: u.name, csrf: s.csrf, expiresAt: iso(s.expiresAt) };
    },
  });
  route({
    method: 'GET',
    url: '/v1/sessions/current',
    access: { signedIn: true },
    handler: ({ principal }) => ({ ...principalView(principal), csrf: principal.csrf }),
  });
  route({
    method: 'DELETE',
    url: '/v1/sessions/current',
    access: { signedIn: true },
    handler: async ({ req, reply, principal }) => {
      const secret = req.cookies[ctx.auth.cookieName];
      if (principal.csrf === null || !secret) throw new FerryError('FERRY_E_VALIDATION', 'no console session: this request was authenticated with an API token');
      await store.tx(async () => {
        await store.people.deleteSession(secret);
        await ctx.audit.append({ log: HUB_LOG, actor: { kind: 'operator', id: principal.userId }, surface: 'console', action: 'auth.logout', target: { type: 'user', id: principal.userId }, personal: { operator: principal.userName } }, ctx.now());
      });
      void reply.clearCookie(ctx.auth.cookieName, { path: '/', secure: ctx.auth.secureCookies, httpOnly: true, sameSite: 'strict' });
      return { loggedOut: true };
    },
  });
}
