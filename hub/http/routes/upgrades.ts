// Agent bundles: upload (the .tar.gz `npm run package` builds), list, show,
// and the release role's signatures over their statements.
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { HUB_LOG } from '../../../shared/audit.js';
import { FerryError } from '../../../shared/errors.js';
import { decodePublicKey, keyId } from '../../../shared/keys.js';
import { keysNamedByRoots } from '../../trust.js';
import type { AgentBundles, BundleRecord } from '../../upgrades/bundles.js';
import { listScope, type Resolver } from '../access.js';
import type { RouteDef } from '../app.js';
import { audited, type HubContext } from '../context.js';
import { can } from '../principal.js';

type Route = <B, Q>(def: RouteDef<B, Q>) => void;

/** Largest archive accepted (a bundle with a Node runtime is about 45 MB). */
export const MAX_BUNDLE_BYTES = 256 * 1024 * 1024;
const UploadQuery = z.strictObject({
  /** Comma-separated tenant names the bundle is for. */
  tenants: z.string().min(1).max(64 * 1000),
  floor: z.string().max(64).optional(),
});
const SigBody = z.strictObject({ publicKey: z.string().max(64), sig: z.string().max(128) });

const iso = (ms: number) => new Date(ms).toISOString();

/** A bundle in the path: the vendor's, and visible to the tenants it is for. */
const bundleOf =
  (ctx: HubContext): Resolver =>
  async (req: FastifyRequest) => {
    const v = String((req.params as { version?: string }).version ?? '').slice(0, 64);
    const what = `agent bundle ${v}`;
    if (!(await ctx.store.bundles.find(v))) throw new FerryError('FERRY_E_NOT_FOUND', what);
    return { tenants: await ctx.store.bundles.tenants(v), what };
  };

/** A bundle with its signers and, per tenant the caller may see (null: all), whether that tenant's threshold is met. */
export async function bundleView(b: BundleRecord, ctx: HubContext, bundles: AgentBundles, tenants: readonly string[] | null, full = false) {
  const names = new Map<string, string>();
  const perTenant: { tenant: string; met: boolean; have: number; threshold: number }[] = [];
  for (const t of b.tenants) {
    if (tenants && !tenants.includes(t)) continue;
    const root = await ctx.trust.active(t);
    if (!root) {
      perTenant.push({ tenant: t, met: false, have: 0, threshold: 0 });
      continue;
    }
    for (const [id, k] of Object.entries(root.keys)) if (k.name) names.set(id, k.name);
    perTenant.push({ tenant: t, ...bundles.thresholdFor(b, root) });
  }
  return {
    version: b.version,
    digest: b.digest,
    size: b.size,
    statementDigest: b.statementDigest,
    floor: b.statement.floor ?? null,
    stateFormat: b.statement.stateFormat,
    minStateFormat: b.statement.minStateFormat,
    node: b.manifest.node,
    files: b.manifest.files,
    createdAt: iso(b.createdAt),
    signers: b.signers.map((s) => ({ keyid: s.keyid, name: names.get(s.keyid) ?? null, signedAt: iso(s.at) })),
    tenants: perTenant,
    ...(full ? { statement: b.statement, envelope: b.envelope } : {}),
  };
}

export function upgradeRoutes(route: Route, ctx: HubContext, bundles: AgentBundles): void {
  const { store } = ctx;
  const scopeOf = async (p: Parameters<typeof can>[0]) => (can(p, 'hub.read', 'vendor') ? null : await listScope(store, p, 'read'));

  route({
    method: 'POST',
    url: '/v1/agent-bundles',
    access: { vendor: 'release.publish' },
    query: UploadQuery,
    bodyLimit: MAX_BUNDLE_BYTES,
    status: 201,
    handler: async ({ req, query, principal }) => {
      if (!Buffer.isBuffer(req.body)) throw new FerryError('FERRY_E_BUNDLE_INVALID', 'send the archive as the body with Content-Type: application/gzip');
      const archive = req.body;
      const tenants = query.tenants.split(',').map((t) => t.trim()).filter(Boolean);
      const b = await audited(
        ctx,
        principal,
        () => bundles.upload(archive, { tenants, ...(query.floor ? { floor: query.floor } : {}) }, principal.userId, ctx.now()),
        (b) => ({ log: HUB_LOG, action: 'bundle.create', target: { type: 'bundle', id: b.version }, details: { digest: b.digest, size: b.size, tenants: b.tenants.join(','), floor: b.statement.floor ?? null } }),
      );
      ctx.log.info({ version: b.version, digest: b.digest, size: b.size, tenants: b.tenants, by: principal.userName }, 'agent bundle uploaded');
      return bundleView(b, ctx, bundles, null, true);
    },
  });
  route({
    method: 'GET',
    url: '/v1/agent-bundles',
    access: { list: 'read' },
    handler: async ({ principal }) => {
      const scope = await scopeOf(principal);
      const out = [];
      for (const b of await bundles.list(scope)) out.push(await bundleView(b, ctx, bundles, scope));
      return { bundles: out };
    },
  });
  route({
    method: 'GET',
    url: '/v1/agent-bundles/:version',
    access: { tenant: 'read', vendor: 'hub.read', of: bundleOf(ctx) },
    handler: async ({ params, principal }) => bundleView(await bundles.get(params.version!), ctx, bundles, await scopeOf(principal), true),
  });
  route({
    method: 'POST',
    url: '/v1/agent-bundles/:version/signatures',
    // As for releases: release managers sign for the vendor; an institution's approvers co-sign what is for them.
    access: { tenant: 'approve', vendor: 'release.publish', mode: 'any', of: bundleOf(ctx) },
    body: SigBody,
    handler: async ({ params, body, principal }) => {
      const vendor = can(principal, 'release.publish', 'vendor');
      const named = await keysNamedByRoots(store, 'release');
      const b = await audited(
        ctx,
        principal,
        () => bundles.sign(params.version!, body, { named, anyKey: !vendor }, principal.userId, ctx.now()),
        (b) => ({ log: HUB_LOG, action: 'bundle.sign', target: { type: 'bundle', id: b.version }, details: { keyid: keyId(decodePublicKey(body.publicKey)) } }),
      );
      ctx.log.info({ version: b.version, signers: b.signers.length, by: principal.userName }, 'agent bundle signed');
      return bundleView(b, ctx, bundles, await scopeOf(principal));
    },
  });
}
