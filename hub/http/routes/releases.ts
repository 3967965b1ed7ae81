// Trust roots, releases and their signatures.
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { HUB_LOG } from '../../../shared/audit.js';
import { Signature } from '../../../shared/dsse.js';
import { FerryError } from '../../../shared/errors.js';
import { decodePublicKey, keyId } from '../../../shared/keys.js';
import { keysNamedByRoots } from '../../trust.js';
import { listScope, tenantParam, type Resolver } from '../access.js';
import type { RouteDef } from '../app.js';
import { audited, type HubContext } from '../context.js';
import { can } from '../principal.js';
import { releaseView } from '../views.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

const KeySpec = z.strictObject({ public: z.string().max(64), name: z.string().max(64).optional() });
const Threshold = z.number().int().min(1).max(32);
const InitBody = z.strictObject({
  root: z.array(KeySpec).min(1).max(32),
  rootThreshold: Threshold,
  release: z.array(KeySpec).min(1).max(32),
  releaseThreshold: Threshold,
});
const Role = z.enum(['root', 'release']);
const ProposeBody = z.strictObject({
  add: z.array(z.strictObject({ role: Role, key: KeySpec })).max(32).optional(),
  remove: z.array(z.strictObject({ role: Role, keyid: z.string().regex(/^[0-9a-f]{64}$/) })).max(32).optional(),
  thresholds: z.strictObject({ root: Threshold.optional(), release: Threshold.optional() }).optional(),
});
const RootSigBody = z.strictObject({ version: z.number().int().min(1), keyid: Signature.shape.keyid, sig: Signature.shape.sig });
const ReleaseBody = z.strictObject({ payload: z.string().max(3 * 1024 * 1024) });
const ReleaseSigBody = z.strictObject({ publicKey: z.string().max(64), sig: z.string().max(128) });
const ReleasesQuery = z.strictObject({ stack: z.string().max(64).optional() });
const OfferBody = z.strictObject({ tenants: z.array(z.string().max(64)).min(1).max(1000) });

/** A release in the path: the vendor's, and shared with the tenants it was delivered to. */
export const releaseOf =
  (ctx: HubContext): Resolver =>
  async (req: FastifyRequest) => {
    const p = req.params as { stack?: string; version?: string };
    const what = `release ${p.stack ?? ''}@${p.version ?? ''}`.slice(0, 200);
    const row = await ctx.store.releases.find(p.stack ?? '', p.version ?? '');
    if (!row) throw new FerryError('FERRY_E_NOT_FOUND', what);
    return { tenants: await ctx.store.releases.deliveries(row.id), what };
  };

export function releaseRoutes(route: Route, ctx: HubContext): void {
  const { store } = ctx;

  // ---- trust roots ------------------------------------------------------------
  route({
    method: 'GET',
    url: '/v1/tenants/:tenant/trust',
    access: { tenant: 'read', of: tenantParam(store) },
    handler: async ({ params }) => {
      const v = await ctx.trust.show(params.tenant!);
      return { tenant: params.tenant, fingerprint: v.fingerprint, active: v.active, pending: v.pending, chain: v.chain };
    },
  });
  route({
    method: 'POST',
    url: '/v1/tenants/:tenant/trust/init',
    access: { tenant: 'trust.manage', of: tenantParam(store) },
    body: InitBody,
    status: 201,
    handler: ({ params, body, principal }) =>
      audited(
        ctx,
        principal,
        () => ctx.trust.init(params.tenant!, body, principal.userId, ctx.now()),
        (v) => ({ log: params.tenant!, action: 'trust.draft', target: { type: 'root', id: `v${v.version}` }, details: { version: v.version, rootThreshold: body.rootThreshold, releaseThreshold: body.releaseThreshold } }),
      ),
  });
  route({
    method: 'POST',
    url: '/v1/tenants/:tenant/trust/propose',
    access: { tenant: 'trust.manage', of: tenantParam(store) },
    body: ProposeBody,
    status: 201,
    handler: ({ params, body, principal }) =>
      audited(
        ctx,
        principal,
        () => ctx.trust.propose(params.tenant!, body, principal.userId, ctx.now()),
        (v) => ({ log: params.tenant!, action: 'trust.draft', target: { type: 'root', id: `v${v.version}` }, details: { version: v.version, change: JSON.stringify(body) } }),
      ),
  });
  route({
    method: 'POST',
    url: '/v1/tenants/:tenant/trust/signatures',
    access: { tenant: 'approve', of: tenantParam(store) },
    body: RootSigBody,
    handler: async ({ params, body, principal }) => {
      const r = await audited(
        ctx,
        principal,
        () => ctx.trust.sign(params.tenant!, body.version, { keyid: body.keyid, sig: body.sig }, ctx.now()),
        (r) => ({ log: params.tenant!, action: r.active ? 'trust.activate' : 'trust.sign', target: { type: 'root', id: `v${body.version}` }, details: { keyid: body.keyid, active: r.active } }),
      );
      if (r.active) {
        const pushed = await ctx.delivery.pushRoots(params.tenant!);
        ctx.log.info({ tenant: params.tenant, version: body.version, pushed }, 'trust root activated');
      }
      return { active: r.active, version: body.version, fingerprint: r.view.fingerprint, pending: r.view.pending, current: r.view.active?.version ?? null };
    },
  });

  // ---- releases -------------------------------------------------------------------
  route({
    method: 'POST',
    url: '/v1/releases',
    access: { vendor: 'release.publish' },
    body: ReleaseBody,
    bodyLimit: 4 * 1024 * 1024,
    status: 201,
    handler: async ({ body, principal }) => {
      const payload = Buffer.from(body.payload, 'base64');
      if (payload.toString('base64') !== body.payload) throw new FerryError('FERRY_E_VALIDATION', 'payload: canonical base64');
      const r = await audited(
        ctx,
        principal,
        () => ctx.releases.create(payload, principal.userId, ctx.now()),
        (r) => ({ log: HUB_LOG, action: 'release.create', target: { type: 'release', id: `${r.stack}@${r.version}` }, details: { digest: r.digest } }),
      );
      ctx.log.info({ stack: r.stack, version: r.version, digest: r.digest, by: principal.userName }, 'release created');
      return releaseView(r, ctx, null, true);
    },
  });
  route({
    method: 'GET',
    url: '/v1/releases',
    access: { list: 'read' },
    query: ReleasesQuery,
    handler: async ({ query, principal }) => {
      // The vendor's people see every release; a bank's, those delivered to it.
      const scope = can(principal, 'hub.read', 'vendor') ? null : await listScope(store, principal, 'read');
      const out = [];
      for (const r of await ctx.releases.list({ stack: query.stack, tenants: scope })) out.push(await releaseView(r, ctx, scope));
      return { releases: out };
    },
  });
  route({
    method: 'GET',
    url: '/v1/releases/:stack/:version',
    access: { tenant: 'read', vendor: 'hub.read', of: releaseOf(ctx) },
    handler: async ({ params, principal }) => {
      const scope = can(principal, 'hub.read', 'vendor') ? null : await listScope(store, principal, 'read');
      return releaseView(await ctx.releases.get(params.stack!, params.version!), ctx, scope, true);
    },
  });
  // Offering a release to tenants makes it theirs to see (and their approvers' to co-sign) before it is deployed.
  route({
    method: 'POST',
    url: '/v1/releases/:stack/:version/tenants',
    access: { vendor: 'release.publish' },
    body: OfferBody,
    handler: async ({ params, body, principal }) => {
      const r = await ctx.releases.get(params.stack!, params.version!);
      const tenants = [...new Set(body.tenants)].sort();
      for (const t of tenants) await store.fleet.tenant(t);
      await audited(
        ctx,
        principal,
        async () => {
          for (const t of tenants) await store.releases.deliveredTo(r.id, t, ctx.now());
        },
        () => ({ log: HUB_LOG, action: 'release.offer', target: { type: 'release', id: `${r.stack}@${r.version}` }, details: { tenants: tenants.join(',') } }),
      );
      return { stack: r.stack, version: r.version, tenants: await store.releases.deliveries(r.id) };
    },
  });
  route({
    method: 'POST',
    url: '/v1/releases/:stack/:version/signatures',
    // Release managers sign for the vendor; an institution's approvers co-sign what is delivered to them.
    access: { tenant: 'approve', vendor: 'release.publish', mode: 'any', of: releaseOf(ctx) },
    body: ReleaseSigBody,
    handler: async ({ params, body, principal }) => {
      const vendor = can(principal, 'release.publish', 'vendor');
      const named = await keysNamedByRoots(store, 'release');
      const r = await audited(
        ctx,
        principal,
        () => ctx.releases.sign(params.stack!, params.version!, body, { named, anyKey: !vendor }, principal.userId, ctx.now()),
        (r) => ({ log: HUB_LOG, action: 'release.sign', target: { type: 'release', id: `${r.stack}@${r.version}` }, details: { keyid: keyId(decodePublicKey(body.publicKey)) } }),
      );
      ctx.log.info({ stack: r.stack, version: r.version, signers: r.signers.length, by: principal.userName }, 'release signed');
      const scope = vendor && can(principal, 'hub.read', 'vendor') ? null : await listScope(store, principal, 'read');
      return releaseView(r, ctx, scope);
    },
  });
}
