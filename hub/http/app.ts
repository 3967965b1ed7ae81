// The hub's HTTP surface on fastify: one app carrying the API, the probes and
// the agents' endpoints (their WebSocket upgrade rides on the same server,
// see hub/server.ts). Here: JSON parsing with per-route body limits, the
// error catalogue mapped onto statuses, security headers, rate limits,
// cookies, and the two hooks every route passes — authentication (before the
// body is read) and authorisation (its declared rule, hub/http/access.ts).
// Routes are plugins per resource (hub/http/routes/); a route without an
// access rule is refused at registration.
import cookie from '@fastify/cookie';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { FerryError, asFerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { parseWith } from '../../shared/validation.js';
import type { AccessRule, Subject } from './access.js';
import { authorise, ruleText } from './access.js';
import type { Authenticator } from './auth.js';
import type { Principal } from './principal.js';

export const MAX_BODY = 64 * 1024;

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
    subject: Subject | null;
  }
  interface FastifyContextConfig {
    access?: AccessRule;
  }
}

export interface AppOptions {
  log: Logger;
  auth: Authenticator;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Requests per minute per caller (token, session or address) on the API; 0: no limit. */
  rateLimitPerMinute: number;
  /** Benchmarks only: skip authorisation (never reachable from the command line). */
  unsafeNoAuthorisation?: boolean;
}

export interface RouteEntry {
  method: string;
  url: string;
  access: AccessRule;
}

export interface RouteDef<B, Q> {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  access: AccessRule;
  body?: z.ZodType<B>;
  query?: z.ZodType<Q>;
  bodyLimit?: number;
  status?: number;
  /** Per route: a tighter limit (per caller), or false for none (agents' endpoints). */
  rateLimit?: { max: number; timeWindow: number } | false;
  /**
   * The body as the exact text received (JSON, form or XML), in `call.raw`:
   * for requests a third party signs over its bytes (chat platforms'
   * callbacks). `body` is then the text too; the handler parses it.
   */
  raw?: true;
  handler: (call: Call<B, Q>) => Promise<unknown> | unknown;
}

export interface Call<B, Q> {
  req: FastifyRequest;
  reply: FastifyReply;
  params: Record<string, string>;
  body: B;
  query: Q;
  /** Set on every route but public ones. */
  principal: Principal;
  subject: Subject | null;
  /** The body's exact text (routes declared with `raw`), else ''. */
  raw: string;
}

/** Who a request counts against for rate limits: its token or session, else its address. */
function callerKey(req: FastifyRequest): string {
  const h = req.headers.authorization;
  if (h) return `t:${h.slice(-24)}`;
  const c = req.headers.cookie;
  if (c) return `c:${c.slice(-24)}`;
  return `a:${req.ip}`;
}

export async function buildApp(opts: AppOptions): Promise<{ app: FastifyInstance; routes: RouteEntry[]; route: <B = unknown, Q = unknown>(def: RouteDef<B, Q>) => void }> {
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_BODY,
    requestTimeout: 30_000,
    connectionTimeout: 0,
    keepAliveTimeout: 10_000,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    return503OnClosing: true,
    ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable) return;
      // As Node itself would answer: a slow client is a timeout, not a bad request.
      const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
    },
  });
  app.server.headersTimeout = 10_000;

  // JSON only; an empty body is {} (many POSTs carry nothing).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, text, done) => {
    const t = String(text);
    if (t.trim() === '') return done(null, {});
    try {
      done(null, JSON.parse(t) as unknown);
    } catch (err) {
      done(new FerryError('FERRY_E_BAD_REQUEST', `body is not JSON: ${(err as Error).message}`), undefined);
    }
  });

  // Agent bundle uploads (POST /v1/agent-bundles): the archive itself as the body.
  app.addContentTypeParser('application/gzip', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  await app.register(cookie);
  await app.register(helmet, {
    // The console (server-rendered, no inline script) lives under these rules too.
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        'default-src': ["'self'"],
        'script-src': ["'self'"],
        'style-src': ["'self'"],
        'img-src': ["'self'", 'data:'],
        'connect-src': ["'self'"],
        'font-src': ["'self'"],
        'object-src': ["'none'"],
        'base-uri': ["'none'"],
        'form-action': ["'self'"],
        'frame-ancestors': ["'none'"],
      },
    },
    hsts: opts.tls ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    crossOriginEmbedderPolicy: false,
  });
  await app.register(rateLimit, {
    global: opts.rateLimitPerMinute > 0,
    max: opts.rateLimitPerMinute || 1_000_000,
    timeWindow: 60_000,
    keyGenerator: callerKey,
    errorResponseBuilder: (_req, ctx) => {
      const e = new FerryError('FERRY_E_RATE_LIMITED', `${ctx.max} per ${Math.round(ctx.ttl / 1000)} s for this caller`);
      return Object.assign(e, { statusCode: 429 });
    },
  });

  app.decorateRequest('principal', null);
  app.decorateRequest('subject', null);

  const routes: RouteEntry[] = [];
  app.addHook('onRoute', (r) => {
    const access = r.config?.access;
    if (!access) throw new FerryError('FERRY_E_INTERNAL', `route ${String(r.method)} ${r.url} has no access rule`);
    for (const m of [r.method].flat()) if (m !== 'HEAD') routes.push({ method: m, url: r.url, access });
  });

  // Authentication before the body is read: a bad token costs a hash and an index read.
  app.addHook('onRequest', async (req) => {
    const rule = req.routeOptions.config?.access;
    if (!rule || 'public' in rule) return;
    req.principal = await opts.auth.authenticate({ method: req.method, headers: req.headers, cookies: req.cookies ?? {}, ip: req.ip });
  });
  app.addHook('preHandler', async (req) => {
    const rule = req.routeOptions.config?.access;
    if (!rule) throw new FerryError('FERRY_E_NOT_FOUND', 'no such endpoint');
    if (opts.unsafeNoAuthorisation && !('public' in rule)) return;
    req.subject = await authorise(rule, req.principal, req);
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    return payload;
  });

  app.setNotFoundHandler((_req, reply) => {
    const e = new FerryError('FERRY_E_NOT_FOUND', 'no such endpoint');
    void reply.code(404).send({ error: e.toJSON() });
  });
  app.setErrorHandler((err, req, reply) => {
    const e = fromFastify(err);
    const log = e.status >= 500 ? opts.log.error.bind(opts.log) : opts.log.info.bind(opts.log);
    log({ code: e.code, method: req.method, path: req.url.slice(0, 200), err: e.status >= 500 ? err : undefined }, 'request failed');
    if (reply.sent || reply.raw.headersSent) return void reply.raw.destroy();
    if (e.code === 'FERRY_E_RATE_LIMITED' && !reply.hasHeader('retry-after')) reply.header('retry-after', '60');
    void reply.code(e.status).send({ error: e.toJSON() });
  });

  return { app, routes, route: routeOn(app) };
}

/**
 * The route helper for `app` or an encapsulated plugin of it (the console
 * registers its pages in one, with its own error handler and form parser);
 * the root's hooks (authentication, authorisation, the route table) apply
 * either way.
 */
export function routeOn(app: FastifyInstance) {
  return <B, Q>(def: RouteDef<B, Q>) => {
    const spec = {
      method: def.method,
      url: def.url,
      bodyLimit: def.bodyLimit ?? MAX_BODY,
      config: { access: def.access, ...(def.rateLimit !== undefined ? { rateLimit: def.rateLimit } : {}) },
      handler: async (req: FastifyRequest, reply: FastifyReply) => {
        const raw = def.raw && typeof req.body === 'string' ? req.body : '';
        const body = (def.raw ? raw : def.body ? parseWith(def.body, req.body ?? {}, 'body') : req.body) as B;
        const query = (def.query ? parseWith(def.query, req.query ?? {}, 'query') : req.query) as Q;
        const result = await def.handler({ req, reply, params: (req.params ?? {}) as Record<string, string>, body, query, principal: req.principal!, subject: req.subject, raw });
        if (reply.sent) return reply;
        return reply.code(def.status ?? 200).send(result);
      },
    };
    if (!def.raw) return void app.route(spec);
    // Its own context, so only this route takes form and XML bodies, as text.
    void app.register(async (child) => {
      child.removeAllContentTypeParsers();
      child.addContentTypeParser(['application/json', 'application/x-www-form-urlencoded', 'text/xml', 'application/xml', 'text/plain'], { parseAs: 'string' }, (_req, text, done) => done(null, String(text)));
      child.route(spec);
    });
  };
}

/** Fastify's own errors (body too large, bad media type, ...) in the catalogue's terms. */
export function fromFastify(err: unknown): FerryError {
  if (err instanceof FerryError) return err;
  const e = err as { code?: string; statusCode?: number; message?: string };
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new FerryError('FERRY_E_PAYLOAD_TOO_LARGE', e.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new FerryError('FERRY_E_BAD_REQUEST', e.message);
    default:
      if (e.statusCode === 429) return new FerryError('FERRY_E_RATE_LIMITED');
      if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return new FerryError('FERRY_E_BAD_REQUEST', e.message);
      return asFerryError(err);
  }
}

export { ruleText };
