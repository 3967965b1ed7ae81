// People and their grants (admins), and API tokens (everyone: their own;
// admins: everyone's). Every change is the API's (forwarded).
import { z } from 'zod';
import { ROLES, TENANT_ROLES, VENDOR_ROLES } from '../../../shared/roles.js';
import { can } from '../../http/principal.js';
import type { ConsoleRoute } from '../console.js';
import { forward, go, shellFor, type ConsoleContext } from '../context.js';
import { peoplePage, tokenCreated, tokensPage } from '../views/people.js';

const NewUser = z.strictObject({
  name: z.string().max(63),
  kind: z.enum(['person', 'service']).default('person'),
  vendorRole: z.preprocess((v) => (v === '' ? null : v), z.enum(VENDOR_ROLES).nullable().default(null)),
  password: z.string().max(1024).default(''),
});
const Grant = z.strictObject({ grant: z.string().max(130).regex(/^[^:]+:[^:]+$/, 'scope:role') });
const Ungrant = z.strictObject({ scope: z.string().max(64) });
const NewToken = z.strictObject({ name: z.string().max(64), role: z.string().max(32), tenants: z.string().max(2000).default(''), ttl: z.enum(['86400', '2592000', '7776000', '']).default('2592000') });

export function peoplePages(route: ConsoleRoute, c: ConsoleContext): void {
  route({
    method: 'GET',
    url: '/people',
    access: { vendor: 'people.manage' },
    handler: async ({ req, principal }) => {
      const users = (await forward<{ users: Parameters<typeof peoplePage>[1]['users'] }>(c, req, 'GET', '/v1/users')).body.users;
      const tenants = (await c.store.fleet.listTenants(null)).map((t) => t.name);
      return peoplePage(shellFor(c, principal, 'People', 'people'), { now: c.now(), me: principal.userName, users, tenants, vendorRoles: VENDOR_ROLES, tenantRoles: TENANT_ROLES });
    },
  });
  route({
    method: 'POST',
    url: '/people',
    access: { vendor: 'people.manage' },
    body: NewUser,
    handler: async ({ req, reply, body }) => {
      await forward(c, req, 'POST', '/v1/users', { name: body.name, kind: body.kind, vendorRole: body.vendorRole, ...(body.password ? { password: body.password } : {}) });
      return go(req, reply, '/people');
    },
  });
  route({
    method: 'POST',
    url: '/people/:name/grants',
    access: { vendor: 'people.manage' },
    body: Grant,
    handler: async ({ req, reply, params, body }) => {
      const [scope, role] = body.grant.split(':') as [string, string];
      await forward(c, req, 'POST', `/v1/users/${encodeURIComponent(params.name!)}/grants`, scope === 'vendor' ? { vendorRole: role } : { tenant: scope, role });
      return go(req, reply, '/people');
    },
  });
  route({
    method: 'POST',
    url: '/people/:name/revoke',
    access: { vendor: 'people.manage' },
    body: Ungrant,
    handler: async ({ req, reply, params, body }) => {
      await forward(c, req, 'POST', `/v1/users/${encodeURIComponent(params.name!)}/revoke`, body.scope === 'vendor' ? { vendorRole: true } : { tenant: body.scope });
      return go(req, reply, '/people');
    },
  });
  for (const verb of ['disable', 'enable'] as const) {
    route({
      method: 'POST',
      url: `/people/:name/${verb}`,
      access: { vendor: 'people.manage' },
      handler: async ({ req, reply, params }) => {
        await forward(c, req, 'POST', `/v1/users/${encodeURIComponent(params.name!)}/${verb}`);
        return go(req, reply, '/people');
      },
    });
  }

  route({
    method: 'GET',
    url: '/tokens',
    access: { signedIn: true },
    handler: async ({ req, principal }) => {
      const tokens = (await forward<{ tokens: Parameters<typeof tokensPage>[1]['tokens'] }>(c, req, 'GET', '/v1/api-tokens')).body.tokens;
      const tenants = Object.keys(principal.grants.tenants).sort();
      return tokensPage(shellFor(c, principal, 'API tokens', 'tokens'), { now: c.now(), all: can(principal, 'people.manage', 'vendor'), tokens, roles: ROLES, tenants });
    },
  });
  route({
    method: 'POST',
    url: '/tokens',
    access: { signedIn: true },
    body: NewToken,
    handler: async ({ req, body }) => {
      const tenants = body.tenants.split(/[\s,]+/).filter(Boolean);
      const r = await forward<{ id: string; name: string; token: string }>(c, req, 'POST', '/v1/api-tokens', { name: body.name, role: body.role, tenants: tenants.length ? tenants : null, ttlSeconds: body.ttl ? Number(body.ttl) : null });
      return tokenCreated(r.body);
    },
  });
  route({
    method: 'POST',
    url: '/tokens/:id/revoke',
    access: { signedIn: true },
    handler: async ({ req, reply, params }) => {
      await forward(c, req, 'POST', `/v1/api-tokens/${encodeURIComponent(params.id!)}/revoke`);
      return go(req, reply, '/tokens');
    },
  });
}
