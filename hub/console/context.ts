// What console routes work with: the hub's context, the assets, the shell
// of a page for the person asking, and `forward` — the console's writes are
// the API's own routes, called in-process with the browser's credentials.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, FerryError, type ErrorCode } from '../../shared/errors.js';
import { TENANT_ROLES, type Action } from '../../shared/roles.js';
import { listScope } from '../http/access.js';
import type { HubContext } from '../http/context.js';
import { can, type Principal } from '../http/principal.js';
import type { Assets } from './assets.js';
import type { NavKey, Shell } from './views/layout.js';

export interface ConsoleContext extends HubContext {
  assets: Assets;
  /** The root app (its routes answer forwarded calls). */
  app: FastifyInstance;
}

/** Headers a forwarded call carries over from the browser's request. */
const CARRIED = ['cookie', 'authorization', 'origin', 'x-ferry-csrf', 'host', 'user-agent'] as const;

/**
 * Calls an API route in-process with the browser's own cookie (or token),
 * CSRF header, Origin and address: the API authenticates, authorises,
 * validates, audits (surface: console) and rate-limits it exactly as if the
 * browser had called it. Resolves to the JSON answer and its headers;
 * throws the API's FerryError when it refuses.
 */
export async function forward<T = any>(c: ConsoleContext, req: FastifyRequest, method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<{ body: T; headers: Record<string, string | string[] | undefined> }> {
  const headers: Record<string, string> = {};
  for (const h of CARRIED) {
    const v = req.headers[h];
    if (typeof v === 'string') headers[h] = v;
  }
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await c.app.inject({ method, url, headers, remoteAddress: req.ip, ...(body !== undefined ? { payload: JSON.stringify(body) } : {}) });
  let parsed: any;
  try {
    parsed = res.body ? JSON.parse(res.body) : undefined;
  } catch {
    parsed = undefined;
  }
  if (res.statusCode >= 400) throw toFerryError(parsed?.error);
  return { body: parsed as T, headers: res.headers as Record<string, string | string[] | undefined> };
}

function toFerryError(e: { code?: string; message?: string } | undefined): FerryError {
  const code = (e?.code && e.code in ERRORS ? e.code : 'FERRY_E_INTERNAL') as ErrorCode;
  const base = ERRORS[code].message;
  const msg = e?.message ?? '';
  return new FerryError(code, msg.startsWith(`${base}: `) ? msg.slice(base.length + 2) : undefined);
}

/** Whether the request came from htmx (a fragment is wanted, not a page). */
export function isHtmx(req: FastifyRequest): boolean {
  return req.headers['hx-request'] === 'true';
}

/** Sends the browser elsewhere: a redirect, or HX-Redirect for htmx. */
export function go(req: FastifyRequest, reply: FastifyReply, url: string): FastifyReply {
  if (isHtmx(req)) return reply.code(200).header('hx-redirect', url).type('text/html; charset=utf-8').send('');
  return reply.redirect(url, req.method === 'GET' ? 302 : 303);
}

/** What the person may open, for the header. */
export function navFor(p: Principal): NavKey[] {
  const nav: NavKey[] = ['fleet', 'stacks', 'releases', 'rollouts', 'audit'];
  if (can(p, 'people.manage', 'vendor')) nav.push('people');
  nav.push('tokens');
  return nav;
}

/** "operator (vendor-wide)", "viewer on bank-a", ... */
export function rolesText(p: Principal): string {
  const parts: string[] = [];
  if (p.grants.vendorRole) parts.push(`${p.grants.vendorRole} (vendor-wide)`);
  const byRole = new Map<string, string[]>();
  for (const [t, r] of Object.entries(p.grants.tenants)) byRole.set(r, [...(byRole.get(r) ?? []), t]);
  for (const r of TENANT_ROLES) if (byRole.has(r)) parts.push(`${r} on ${byRole.get(r)!.join(', ')}`);
  return parts.join('; ') || 'no roles';
}

export function shellFor(c: ConsoleContext, p: Principal | null, title: string, current: NavKey | null, extra: Partial<Shell> = {}): Shell {
  return {
    title,
    current,
    user: p ? { name: p.userName, roles: rolesText(p), csrf: p.csrf, nav: navFor(p) } : null,
    assets: { css: c.assets.url('console.css'), htmx: c.assets.url('htmx.js'), sse: c.assets.url('htmx-sse.js'), console: c.assets.url('console.js') },
    ...extra,
  };
}

/**
 * The tenants where the person may do `action` (null: all); none is a 403
 * naming what is needed (a form for something one may do nowhere is not shown).
 */
export async function scopeOrForbidden(c: ConsoleContext, p: Principal, action: Action, what: string): Promise<string[] | null> {
  const scope = await listScope(c.store, p, action);
  if (scope !== null && scope.length === 0) throw new FerryError('FERRY_E_FORBIDDEN', `${what} needs ${action} on at least one tenant; ${p.userName} has it nowhere`);
  return scope;
}

/** The event stream URL for a page: from the newest event at render time, so nothing between render and connect is missed. */
export async function eventsUrl(c: ConsoleContext, filter: { rollout?: string; kind?: string } = {}): Promise<string> {
  const q = new URLSearchParams();
  if (filter.rollout) q.set('rollout', filter.rollout);
  if (filter.kind) q.set('kind', filter.kind);
  q.set('since', String(await c.events.head()));
  return `/v1/events?${q.toString()}`;
}
