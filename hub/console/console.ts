// The web console: server-rendered pages on the hub's own port, under the
// same authentication, authorisation (each page declares its access rule
// like any API route, hub/http/access.ts) and CSRF checks as the API. Reads
// come from the store through the API's own views; writes are forwarded to
// the API routes in-process (context.ts), so there is one implementation of
// each operation, its validation and its audit entry.
//
// Registered as one encapsulated fastify plugin: its own error handler turns
// errors into pages (a missing or ended session into a redirect to /login),
// and it alone parses HTML forms.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { FerryError } from '../../shared/errors.js';
import { fromFastify, routeOn, type Call, type RouteDef } from '../http/app.js';
import type { HubContext } from '../http/context.js';
import { ASSET_PREFIX, Assets } from './assets.js';
import { forward, go, isHtmx, shellFor, type ConsoleContext } from './context.js';
import { agentPages } from './routes/agents.js';
import { auditPages } from './routes/audit.js';
import { fleetPages } from './routes/fleet.js';
import { peoplePages } from './routes/people.js';
import { releasePages } from './routes/releases.js';
import { rolloutPages } from './routes/rollouts.js';
import { errorAlert, errorPage, loginPage } from './views/login.js';

export type ConsoleRoute = <B = unknown, Q = unknown>(def: Omit<RouteDef<B, Q>, 'handler'> & { handler: (call: Call<B, Q>) => Promise<string | FastifyReply> | string | FastifyReply }) => void;

const AUTH_CODES = new Set(['FERRY_E_AUTH_REQUIRED', 'FERRY_E_AUTH_INVALID', 'FERRY_E_SESSION_EXPIRED', 'FERRY_E_USER_DISABLED']);
const LoginForm = z.strictObject({ user: z.string().max(63), password: z.string().max(1024), next: z.string().max(500).default('') });
const LoginQuery = z.strictObject({ next: z.string().max(500).optional(), why: z.enum(['expired', 'out', 'required']).optional() });

/** Only a path of this console: never another site (an open redirect). */
export function safeNext(next: string | undefined): string {
  return next && /^\/(?![/\\])[\x21-\x7e]*$/.test(next) && !next.startsWith('/login') ? next : '/fleet';
}

/** An HTML form body as an object (a repeated field becomes a list). */
export function formFields(text: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(text)) {
    const had = out[k];
    out[k] = had === undefined ? v : [...[had].flat(), v];
  }
  return out;
}

export function consoleRoutes(app: FastifyInstance, ctx: HubContext): void {
  const assets = new Assets();
  const c: ConsoleContext = { ...ctx, assets, app };
  void app.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, text, done) => done(null, formFields(String(text))));
    scope.setErrorHandler((err, req, reply) => renderError(c, fromFastify(err), req, reply));
    // helmet's no-referrer makes browsers send `Origin: null` on every POST, which the CSRF
    // check (rightly) refuses; same-origin keeps the origin for this hub and tells no other site.
    scope.addHook('onSend', async (_req, reply, payload) => {
      reply.header('referrer-policy', 'same-origin');
      return payload;
    });
    const plain = routeOn(scope);
    const route: ConsoleRoute = (def) =>
      plain({
        ...def,
        handler: async (call) => {
          const out = await def.handler(call);
          if (typeof out !== 'string') return out;
          return call.reply.type('text/html; charset=utf-8').send(out);
        },
      });

    // ---- assets: hashed URLs, cached for a year --------------------------------------------
    plain({
      method: 'GET',
      url: `${ASSET_PREFIX}:file`,
      access: { public: 'the console\'s scripts and stylesheet (no data)' },
      handler: ({ params, reply, req }) => {
        const a = assets.get(params.file ?? '');
        if (!a) throw new FerryError('FERRY_E_NOT_FOUND', `asset ${String(params.file).slice(0, 80)}`);
        reply.header('cache-control', 'public, max-age=31536000, immutable').header('etag', a.etag).type(a.type);
        if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
        return reply.send(a.body);
      },
    });

    // ---- sign in and out ----------------------------------------------------------------------
    route({ method: 'GET', url: '/', access: { public: 'sends the browser to the console' }, handler: ({ reply }) => reply.redirect('/fleet', 302) });
    route({
      method: 'GET',
      url: '/login',
      access: { public: 'the login form' },
      query: LoginQuery,
      handler: ({ query }) =>
        loginPage(shellFor(c, null, 'Log in', null), {
          next: safeNext(query.next),
          user: '',
          notice: query.why === 'expired' ? 'Your session has ended. Log in again.' : query.why === 'out' ? 'You have logged out.' : query.why === 'required' ? 'Log in to see this page.' : null,
          error: null,
        }),
    });
    route({
      method: 'POST',
      url: '/login',
      access: { public: 'password login (the API\'s POST /v1/sessions behind a form)' },
      body: LoginForm,
      rateLimit: { max: 30, timeWindow: 60_000 },
      handler: async ({ req, reply, body }) => {
        const next = safeNext(body.next);
        // A form posted from another site must not log this browser in (login CSRF).
        const expected = c.auth.origin(req.headers);
        if (req.headers.origin !== expected) throw new FerryError('FERRY_E_CSRF', req.headers.origin ? `origin ${JSON.stringify(String(req.headers.origin).slice(0, 100))} is not ${expected}` : 'no Origin header');
        try {
          const r = await forward(c, req, 'POST', '/v1/sessions', { user: body.user, password: body.password });
          const cookies = r.headers['set-cookie'];
          if (cookies) reply.header('set-cookie', cookies);
          return go(req, reply, next);
        } catch (err) {
          const e = err instanceof FerryError ? err : fromFastify(err);
          if (e.status >= 500) throw e;
          reply.code(e.status);
          return loginPage(shellFor(c, null, 'Log in', null), { next, user: body.user, notice: null, error: { code: e.code, message: e.message } });
        }
      },
    });
    route({
      method: 'POST',
      url: '/logout',
      access: { signedIn: true },
      handler: async ({ req, reply }) => {
        const r = await forward(c, req, 'DELETE', '/v1/sessions/current');
        const cookies = r.headers['set-cookie'];
        if (cookies) reply.header('set-cookie', cookies);
        return go(req, reply, '/login?why=out');
      },
    });

    fleetPages(route, c);
    agentPages(route, c);
    releasePages(route, c);
    rolloutPages(route, c);
    auditPages(route, c);
    peoplePages(route, c);
  });
}

/** Errors as pages: no session is a trip to the login form; htmx requests get a fragment for the alert region. */
function renderError(c: ConsoleContext, e: FerryError, req: FastifyRequest, reply: FastifyReply): FastifyReply | void {
  (e.status >= 500 ? c.log.error.bind(c.log) : c.log.info.bind(c.log))({ code: e.code, method: req.method, path: req.url.slice(0, 200), err: e.status >= 500 ? e : undefined }, 'console request failed');
  if (reply.sent || reply.raw.headersSent) return void reply.raw.destroy();
  if (AUTH_CODES.has(e.code)) {
    const back = req.method === 'GET' && !isHtmx(req) ? req.url : refererPath(req);
    const url = `/login?why=${e.code === 'FERRY_E_AUTH_REQUIRED' ? 'required' : 'expired'}&next=${encodeURIComponent(safeNext(back))}`;
    if (isHtmx(req)) return reply.code(401).header('hx-redirect', url).type('text/html; charset=utf-8').send('');
    return reply.redirect(url, req.method === 'GET' ? 302 : 303);
  }
  if (e.code === 'FERRY_E_RATE_LIMITED' && !reply.hasHeader('retry-after')) reply.header('retry-after', '60');
  const view = { status: e.status, code: e.code, message: e.message, hint: e.hint };
  reply.code(e.status).type('text/html; charset=utf-8');
  if (isHtmx(req)) return reply.header('hx-retarget', '#alerts').header('hx-reswap', 'innerHTML').send(errorAlert(view));
  return reply.send(errorPage(shellFor(c, req.principal, e.status === 404 ? 'Not found' : 'Error', null), view));
}

function refererPath(req: FastifyRequest): string {
  const r = req.headers.referer;
  if (!r) return '/fleet';
  try {
    const u = new URL(r);
    return u.pathname + u.search;
  } catch {
    return '/fleet';
  }
}
