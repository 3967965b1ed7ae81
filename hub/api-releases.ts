// API routes for trust roots, releases, signatures and deploys.
import { z } from 'zod';
import { randomUUID } from 'node:crypto';
import { FerryError, isErrorCode } from '../shared/errors.js';
import type { PlanMessage } from '../shared/protocol.js';
import { Signature } from '../shared/dsse.js';
import { HUB_LOG } from '../shared/audit.js';
import { audited, iso, type ApiContext, type RouteFn } from './api.js';
import type { DirectiveRecord } from './directives.js';
import { parseWith, readJson } from './http.js';
import type { ReleaseRecord } from './releases.js';

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
const ReleaseBody = z.strictObject({ payload: z.string().max(2 * 1024 * 1024) });
const ReleaseSigBody = z.strictObject({ publicKey: z.string().max(64), sig: z.string().max(128) });
const DeployBody = z.strictObject({
  stack: z.string().max(64),
  version: z.string().max(64),
  agent: z.string().max(64),
  /** Seconds to wait for the agent's acknowledgement (0: do not wait). */
  wait: z.number().int().min(0).max(600).default(0),
});

export function directiveView(d: DirectiveRecord) {
  return {
    agent: d.agentId,
    seq: d.seq,
    digest: d.digest,
    releases: d.releases,
    status: d.status,
    code: d.code,
    message: d.message,
    issuedAt: iso(d.issuedAt),
    expiresAt: iso(d.expiresAt),
    ackedAt: iso(d.ackedAt),
  };
}

export function releaseRoutes(route: RouteFn, ctx: ApiContext): void {
  const keyNames = () => {
    const names = new Map<string, string>();
    for (const t of ctx.store.listTenants()) {
      const root = ctx.trust.active(t.name);
      for (const [id, k] of Object.entries(root?.keys ?? {})) if (k.name) names.set(id, k.name);
    }
    return names;
  };
  const releaseView = (r: ReleaseRecord, full = false) => {
    const names = keyNames();
    return {
      stack: r.stack,
      version: r.version,
      digest: r.digest,
      floor: r.release.floor ?? null,
      createdAt: iso(r.createdAt),
      services: Object.fromEntries(Object.entries(r.release.services).map(([n, s]) => [n, s.image])),
      signers: r.signers.map((s) => ({ keyid: s.keyid, name: names.get(s.keyid) ?? null, signedAt: iso(s.at) })),
      tenants: ctx.store.listTenants().flatMap((t) => {
        const root = ctx.trust.active(t.name);
        if (!root) return [];
        const th = ctx.releases.thresholdFor(r, root);
        return [{ tenant: t.name, met: th.met, have: th.have, threshold: th.threshold }];
      }),
      ...(full ? { release: r.release, envelope: r.envelope } : {}),
    };
  };

  // ---- trust roots ------------------------------------------------------------
  route('GET', '/v1/tenants/:tenant/trust', 'viewer', ({ params }) => {
    const v = ctx.trust.show(params.tenant!);
    return { tenant: params.tenant, fingerprint: v.fingerprint, active: v.active, pending: v.pending, chain: v.chain };
  });
  route(
    'POST',
    '/v1/tenants/:tenant/trust/init',
    'admin',
    async ({ req, params, principal }) => {
      const body = parseWith(InitBody, await readJson(req));
      return audited(
        ctx,
        { req, principal },
        () => ctx.trust.init(params.tenant!, body, principal!.tokenId, ctx.now()),
        (v) => ({ log: params.tenant!, action: 'trust.draft', target: { type: 'root', id: `v${v.version}` }, details: { version: v.version, rootThreshold: body.rootThreshold, releaseThreshold: body.releaseThreshold } }),
      );
    },
    201,
  );
  route(
    'POST',
    '/v1/tenants/:tenant/trust/propose',
    'admin',
    async ({ req, params, principal }) => {
      const change = parseWith(ProposeBody, await readJson(req));
      return audited(
        ctx,
        { req, principal },
        () => ctx.trust.propose(params.tenant!, change, principal!.tokenId, ctx.now()),
        (v) => ({ log: params.tenant!, action: 'trust.draft', target: { type: 'root', id: `v${v.version}` }, details: { version: v.version, change: JSON.stringify(change) } }),
      );
    },
    201,
  );
  route('POST', '/v1/tenants/:tenant/trust/signatures', 'operator', async ({ req, params, principal }) => {
    const body = parseWith(RootSigBody, await readJson(req));
    const r = audited(
      ctx,
      { req, principal },
      () => ctx.trust.sign(params.tenant!, body.version, { keyid: body.keyid, sig: body.sig }, ctx.now()),
      (r) => ({ log: params.tenant!, action: r.active ? 'trust.activate' : 'trust.sign', target: { type: 'root', id: `v${body.version}` }, details: { keyid: body.keyid, active: r.active } }),
    );
    if (r.active) {
      const pushed = ctx.delivery.pushRoots(params.tenant!);
      ctx.log.info({ tenant: params.tenant, version: body.version, pushed }, 'trust root activated');
    }
    return { active: r.active, version: body.version, fingerprint: r.view.fingerprint, pending: r.view.pending, current: r.view.active?.version ?? null };
  });

  // ---- releases -------------------------------------------------------------------
  route(
    'POST',
    '/v1/releases',
    'operator',
    async ({ req, principal }) => {
      const body = parseWith(ReleaseBody, await readJson(req, 3 * 1024 * 1024));
      const payload = Buffer.from(body.payload, 'base64');
      if (payload.toString('base64') !== body.payload) throw new FerryError('FERRY_E_VALIDATION', 'payload: canonical base64');
      const r = audited(
        ctx,
        { req, principal },
        () => ctx.releases.create(payload, principal!.tokenId, ctx.now()),
        (r) => ({ log: HUB_LOG, action: 'release.create', target: { type: 'release', id: `${r.stack}@${r.version}` }, details: { digest: r.digest } }),
      );
      ctx.log.info({ stack: r.stack, version: r.version, digest: r.digest, by: principal?.name }, 'release created');
      return releaseView(r, true);
    },
    201,
  );
  route('GET', '/v1/releases', 'viewer', ({ query }) => ({ releases: ctx.releases.list(query.get('stack') ?? undefined).map((r) => releaseView(r)) }));
  route('GET', '/v1/releases/:stack/:version', 'viewer', ({ params }) => releaseView(ctx.releases.get(params.stack!, params.version!), true));
  route('POST', '/v1/releases/:stack/:version/signatures', 'operator', async ({ req, params, principal }) => {
    const body = parseWith(ReleaseSigBody, await readJson(req));
    const r = audited(
      ctx,
      { req, principal },
      () => ctx.releases.sign(params.stack!, params.version!, body, principal!.tokenId, ctx.now()),
      (r) => ({ log: HUB_LOG, action: 'release.sign', target: { type: 'release', id: `${r.stack}@${r.version}` }, details: { publicKey: body.publicKey } }),
    );
    ctx.log.info({ stack: r.stack, version: r.version, signers: r.signers.length, by: principal?.name }, 'release signed');
    return releaseView(r);
  });

  // ---- deploy -------------------------------------------------------------------------
  route('POST', '/v1/deploy', 'operator', async ({ req, principal }) => {
    const body = parseWith(DeployBody, await readJson(req));
    const { directive, sent } = ctx.delivery.deploy(body.agent, body.stack, body.version, principal!.tokenId, (d, tenant) =>
      audited(
        ctx,
        { req, principal },
        () => d,
        () => ({ log: tenant, action: 'directive.issue', target: { type: 'agent', id: body.agent }, agents: [body.agent], details: { seq: d.seq, stack: body.stack, version: body.version, digest: d.digest } }),
      ),
    );
    ctx.witness.checkpoint(ctx.store.agent(body.agent).tenant);
    const final = body.wait > 0 ? await ctx.delivery.waitForAck(body.agent, directive.seq, body.wait * 1000) : directive;
    return { ...directiveView(final), sent };
  });
  // What the agent would do now (a dry run on the agent itself).
  route('GET', '/v1/agents/:id/plan', 'viewer', async ({ params }) => {
    const agent = ctx.store.agent(params.id!);
    const id = randomUUID();
    const answer = new Promise<PlanMessage | null>((resolve) => {
      const onPlan = (agentId: string, msg: PlanMessage) => {
        if (agentId === agent.id && msg.id === id) finish(msg);
      };
      const timer = setTimeout(() => finish(null), 15_000);
      const finish = (m: PlanMessage | null) => {
        clearTimeout(timer);
        ctx.gateway.off('plan', onPlan);
        resolve(m);
      };
      ctx.gateway.on('plan', onPlan);
    });
    if (!ctx.gateway.send(agent.id, { type: 'plan-request', id })) throw new FerryError('FERRY_E_UNAVAILABLE', `agent ${agent.id} is not connected`);
    const plan = await answer;
    if (!plan) throw new FerryError('FERRY_E_UNAVAILABLE', `agent ${agent.id} did not answer within 15 s`);
    if (plan.error) throw new FerryError(isErrorCode(plan.error.code) ? plan.error.code : 'FERRY_E_INTERNAL', plan.error.message);
    return { agent: agent.id, steps: plan.steps, waiting: plan.waiting };
  });
  route('GET', '/v1/agents/:id/directives/:seq', 'viewer', ({ params }) => {
    const seq = Number(params.seq);
    if (!Number.isSafeInteger(seq) || seq < 1) throw new FerryError('FERRY_E_VALIDATION', 'seq');
    return directiveView(ctx.directives.get(params.id!, seq));
  });
}
