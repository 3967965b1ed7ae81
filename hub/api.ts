// The hub's HTTP API: what the `ferry` CLI (and later the console) calls,
// plus the two unauthenticated agent endpoints (challenge, enroll). Each route
// names the least role it needs.
import type { IncomingMessage, ServerResponse } from 'node:http';
import FindMyWay from 'find-my-way';
import { z } from 'zod';
import { enrollStatement } from '../shared/auth.js';
import { FerryError } from '../shared/errors.js';
import { decodePublicKey, decodeSignature, fingerprint, verify } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import { CHALLENGE_PATH, ENROLL_PATH } from '../shared/auth.js';
import { CLOSE } from '../shared/protocol.js';
import { VERSION } from '../shared/version.js';
import { auditRoutes } from './api-audit.js';
import { releaseRoutes } from './api-releases.js';
import { rolloutRoutes } from './api-rollouts.js';
import type { Rollouts } from './rollouts/scheduler.js';
import type { EventStreams } from './events.js';
import type { Challenges } from './challenge.js';
import type { AuditInput, AuditLog } from './audit.js';
import type { Delivery } from './delivery.js';
import type { Witnessing } from './witness.js';
import { HUB_LOG } from '../shared/audit.js';
import type { Directives } from './directives.js';
import type { Releases } from './releases.js';
import type { TrustRoots } from './trust.js';
import type { Gateway } from './gateway.js';
import { parseWith, readJson, sendError, sendJson } from './http.js';
import { LABEL_KEY, LABEL_VALUE, ROLES, roleAtLeast, type AgentRecord, type Principal, type Role, type Store } from './store.js';

export interface ApiContext {
  store: Store;
  gateway: Gateway;
  challenges: Challenges;
  trust: TrustRoots;
  releases: Releases;
  directives: Directives;
  delivery: Delivery;
  audit: AuditLog;
  witness: Witnessing;
  rollouts: Rollouts;
  events: EventStreams;
  log: Logger;
  publicHost?: string;
  now: () => number;
  isReady: () => boolean;
}

type Params = Record<string, string | undefined>;
export interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  params: Params;
  query: URLSearchParams;
  principal: Principal | null;
}
type Handler = (call: Call) => Promise<unknown> | unknown;
export type RouteFn = (method: 'GET' | 'POST', path: string, role: Role | null, handler: Handler, status?: number) => void;

const MAX_TTL_MS = 30 * 24 * 3600_000;

const Labels = z
  .record(z.string().regex(LABEL_KEY, 'label keys: lowercase letters, digits, . _ / -'), z.string().regex(LABEL_VALUE, 'label values: letters, digits, . _ -'))
  .refine((l) => Object.keys(l).length <= 64, 'at most 64 labels');

const EnrollBody = z.strictObject({
  token: z.string().min(1).max(256),
  publicKey: z.string().max(64),
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'agent names: letters, digits, . _ -, up to 63'),
  labels: Labels.default({}),
  proof: z.string().max(128),
});
const TenantBody = z.strictObject({ name: z.string().max(64) });
const TokenBody = z.strictObject({ ttlSeconds: z.number().int().min(60).max(MAX_TTL_MS / 1000).default(3600) });
const ApiTokenBody = z.strictObject({ name: z.string().min(1).max(64), role: z.enum(ROLES) });

/** The agent as the API shows it: stored record plus live connection state. */
export function agentView(a: AgentRecord, gateway: Gateway, directives?: Directives) {
  const s = gateway.session(a.id);
  const last = directives?.latest(a.id);
  const accepted = last?.status === 'accepted' ? last : directives?.accepted(a.id);
  return {
    id: a.id,
    tenant: a.tenant,
    name: a.name,
    status: a.revokedAt !== null ? 'revoked' : s ? 'connected' : 'disconnected',
    labels: a.labels,
    fingerprint: fingerprint(decodePublicKey(a.publicKey)),
    publicKey: a.publicKey,
    enrolledAt: iso(a.enrolledAt),
    revokedAt: iso(a.revokedAt),
    lastSeenAt: iso(s ? Date.now() : a.lastSeenAt),
    connectedAt: iso(s?.connectedAt ?? null),
    remote: s?.remote ?? null,
    agentVersion: a.agentVersion,
    facts: a.facts,
    desired: accepted ? { seq: accepted.seq, releases: accepted.releases, acceptedAt: iso(accepted.ackedAt) } : null,
    running: a.status ? { ...(a.status as object), reportedAt: iso(a.statusAt) } : null,
    lastDirective: last ? { seq: last.seq, status: last.status, code: last.code, message: last.message, issuedAt: iso(last.issuedAt) } : null,
  };
}

export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** Which client made the call, as it says of itself (x-ferry-surface). */
export function surfaceOf(req: IncomingMessage): AuditInput['surface'] {
  const s = req.headers['x-ferry-surface'];
  return s === 'cli' || s === 'console' || s === 'chat' ? s : 'api';
}

export type AuditFields = Omit<AuditInput, 'actor' | 'surface' | 'personal'>;

/**
 * Runs an operation and appends its audit entry in one transaction: if either
 * fails, neither happens. The operator's name is personal data (a salted
 * commitment in the leaf); the token id identifies the actor.
 */
export function audited<T>(ctx: ApiContext, call: { req: IncomingMessage; principal: Principal | null }, fn: () => T, entry: (r: T) => AuditFields): T {
  return ctx.store.db.transaction(() => {
    const r = fn();
    const p = call.principal;
    ctx.audit.append(
      {
        ...entry(r),
        actor: p ? { kind: 'operator', id: p.tokenId } : { kind: 'anonymous', id: null },
        surface: surfaceOf(call.req),
        personal: p ? { operator: p.name } : {},
      },
      ctx.now(),
    );
    return r;
  })();
}

export function createApi(ctx: ApiContext) {
  const router = FindMyWay({ ignoreTrailingSlash: true, maxParamLength: 200, defaultRoute: notFound });

  const route: RouteFn = (method, path, role, handler, status = 200) => {
    router.on(method, path, (req, res, params, _store, query) => {
      void (async () => {
        try {
          const principal = role ? authorise(req, role) : null;
          const q = new URLSearchParams(query as Record<string, string>);
          const body = await handler({ req, res, params: params as Params, query: q, principal });
          if (!res.headersSent) sendJson(res, status, body);
        } catch (err) {
          const e = sendError(res, err);
          const log = e.status >= 500 ? ctx.log.error.bind(ctx.log) : ctx.log.info.bind(ctx.log);
          log({ code: e.code, method, path: req.url, err: e.status >= 500 ? err : undefined }, 'request failed');
        }
      })();
    });
  };

  const authorise = (req: IncomingMessage, need: Role): Principal => {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) throw new FerryError('FERRY_E_AUTH_REQUIRED');
    const p = ctx.store.authenticate(m[1]!, ctx.now());
    if (!p) {
      ctx.store.db.transaction(() =>
        ctx.audit.append({ log: HUB_LOG, actor: { kind: 'anonymous', id: null }, surface: surfaceOf(req), action: 'auth.failed', outcome: 'refused', details: { path: (req.url ?? '').slice(0, 200), remote: req.socket.remoteAddress ?? null } }, ctx.now()),
      )();
      throw new FerryError('FERRY_E_AUTH_INVALID');
    }
    if (!roleAtLeast(p.role, need)) throw new FerryError('FERRY_E_FORBIDDEN', `needs ${need}, token ${p.name} is ${p.role}`);
    return p;
  };

  // ---- probes ------------------------------------------------------------------
  route('GET', '/livez', null, () => ({ status: 'ok', version: VERSION }));
  route('GET', '/readyz', null, ({ res }) => {
    if (!ctx.isReady()) throw new FerryError('FERRY_E_UNAVAILABLE');
    ctx.store.db.prepare('SELECT 1').get();
    sendJson(res, 200, { status: 'ready', agentsConnected: ctx.gateway.connectedCount });
  });

  // ---- agent endpoints (no operator token) ---------------------------------------
  // Connection: close — the agent's next request is the WebSocket upgrade on a new connection,
  // so an idle keep-alive socket per handshake would only hold a file descriptor (bench/connections).
  route('GET', CHALLENGE_PATH, null, ({ res }) => sendJson(res, 200, ctx.challenges.issue(ctx.now()), { connection: 'close' }));
  route(
    'POST',
    ENROLL_PATH,
    null,
    async ({ req }) => {
      const body = parseWith(EnrollBody, await readJson(req));
      const pub = decodePublicKey(body.publicKey);
      const host = (ctx.publicHost ?? req.headers.host ?? '').toLowerCase();
      const proof = decodeSignature(body.proof);
      if (!proof || !verify(enrollStatement({ host, token: body.token, publicKey: body.publicKey }), proof, pub)) {
        throw new FerryError('FERRY_E_ENROLL_PROOF', `for host ${host}`);
      }
      const agent = ctx.store.db.transaction(() => {
        const a = ctx.store.enroll({ token: body.token, publicKey: body.publicKey, name: body.name, labels: body.labels }, ctx.now());
        ctx.audit.append(
          { log: a.tenant, actor: { kind: 'agent', id: a.id }, surface: 'agent', action: 'agent.enroll', target: { type: 'agent', id: a.id }, agents: [a.id], details: { name: a.name, fingerprint: fingerprint(pub), labels: JSON.stringify(a.labels) } },
          ctx.now(),
        );
        return a;
      })();
      ctx.log.info({ agentId: agent.id, tenant: agent.tenant, name: agent.name }, 'agent enrolled');
      return { agentId: agent.id, tenant: agent.tenant, name: agent.name, labels: agent.labels, fingerprint: fingerprint(pub), roots: ctx.trust.chain(agent.tenant) };
    },
    201,
  );

  // ---- operators ------------------------------------------------------------------
  route('GET', '/v1/whoami', 'viewer', (call) => audited(ctx, call, () => call.principal, () => ({ log: HUB_LOG, action: 'auth.login', target: { type: 'api-token', id: call.principal!.tokenId } })));

  route('GET', '/v1/tenants', 'viewer', () => ({ tenants: ctx.store.listTenants().map((t) => ({ ...t, createdAt: iso(t.createdAt) })) }));
  route(
    'POST',
    '/v1/tenants',
    'admin',
    async ({ req, principal }) => {
      const body = parseWith(TenantBody, await readJson(req));
      const t = audited(ctx, { req, principal }, () => ctx.store.createTenant(body.name, ctx.now()), (t) => ({ log: t.name, action: 'tenant.create', target: { type: 'tenant', id: t.id } }));
      ctx.log.info({ tenant: t.name, by: principal?.name }, 'tenant created');
      return { ...t, createdAt: iso(t.createdAt) };
    },
    201,
  );
  route(
    'POST',
    '/v1/tenants/:tenant/enrollment-tokens',
    'operator',
    async ({ req, params, principal }) => {
      const body = parseWith(TokenBody, await readJson(req));
      const t = audited(
        ctx,
        { req, principal },
        () => ctx.store.createEnrollmentToken(params.tenant!, body.ttlSeconds * 1000, principal!.tokenId, ctx.now()),
        (t) => ({ log: t.tenant, action: 'enrollment-token.create', target: { type: 'enrollment-token', id: t.id }, details: { expiresAt: t.expiresAt } }),
      );
      ctx.log.info({ tenant: t.tenant, tokenId: t.id, by: principal?.name }, 'enrollment token created');
      return { ...t, expiresAt: iso(t.expiresAt) };
    },
    201,
  );

  route('GET', '/v1/agents', 'viewer', ({ query }) => {
    const tenant = query.get('tenant') ?? undefined;
    return { agents: ctx.store.listAgents({ tenant }).map((a) => agentView(a, ctx.gateway, ctx.directives)) };
  });
  route('GET', '/v1/agents/:id', 'viewer', ({ params }) => agentView(ctx.store.agent(params.id!), ctx.gateway, ctx.directives));
  route('POST', '/v1/agents/:id/revoke', 'operator', ({ req, params, principal }) => {
    const a = audited(
      ctx,
      { req, principal },
      () => ctx.store.revokeAgent(params.id!, principal!.tokenId, ctx.now()),
      (a) => ({ log: a.tenant, action: 'agent.revoke', target: { type: 'agent', id: a.id }, agents: [a.id] }),
    );
    const wasConnected = ctx.gateway.disconnect(a.id, CLOSE.revoked, 'agent revoked');
    ctx.log.warn({ agentId: a.id, tenant: a.tenant, by: principal?.name, wasConnected }, 'agent revoked');
    return agentView(a, ctx.gateway, ctx.directives);
  });

  route('GET', '/v1/api-tokens', 'admin', () => ({
    tokens: ctx.store.listApiTokens().map((t) => ({ ...t, createdAt: iso(t.createdAt), revokedAt: iso(t.revokedAt), lastUsedAt: iso(t.lastUsedAt) })),
  }));
  route(
    'POST',
    '/v1/api-tokens',
    'admin',
    async ({ req, principal }) => {
      const body = parseWith(ApiTokenBody, await readJson(req));
      const t = audited(
        ctx,
        { req, principal },
        () => ctx.store.createApiToken(body.name, body.role, principal!.tokenId, ctx.now()),
        (t) => ({ log: HUB_LOG, action: 'api-token.create', target: { type: 'api-token', id: t.id }, details: { role: body.role } }),
      );
      return { id: t.id, name: body.name, role: body.role, token: t.token };
    },
    201,
  );
  route('POST', '/v1/api-tokens/:id/revoke', 'admin', ({ req, params, principal }) => {
    audited(ctx, { req, principal }, () => ctx.store.revokeApiToken(params.id!, ctx.now()), () => ({ log: HUB_LOG, action: 'api-token.revoke', target: { type: 'api-token', id: params.id! } }));
    return { id: params.id, revoked: true };
  });

  releaseRoutes(route, ctx);
  auditRoutes(route, ctx);
  rolloutRoutes(route, ctx);

  return (req: IncomingMessage, res: ServerResponse) => {
    router.lookup(req, res);
  };
}

export function notFound(_req: IncomingMessage, res: ServerResponse): void {
  sendError(res, new FerryError('FERRY_E_NOT_FOUND', 'no such endpoint'));
}
