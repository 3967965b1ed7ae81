// Authentication for people: bearer API tokens (CLI, automation) and console
// sessions (an HttpOnly cookie), one Principal either way. Sessions carry a
// CSRF token; every state-changing request made with the cookie must send it
// back and come from the hub's own origin. Bearer requests need neither (a
// browser never adds an Authorization header by itself).
//
// A token's last use is written in batches (TOUCH_MS), not on every request.
// Principals are cached for CACHE_MS per token: a revocation or a changed
// grant clears this replica's cache at once; other replicas notice within
// CACHE_MS.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { FerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { Store } from '../store/store.js';
import type { UserRecord } from '../store/people.js';
import type { AuthGuard } from './guard.js';
import type { Principal } from './principal.js';

export const SESSION_COOKIE_SECURE = '__Host-ferry_session';
export const SESSION_COOKIE_PLAIN = 'ferry_session';
export const CSRF_HEADER = 'x-ferry-csrf';

export interface SessionOptions {
  /** A session unused this long ends. */
  idleMs: number;
  /** A session ends this long after login, used or not. */
  maxMs: number;
}

export const SESSION_DEFAULTS: SessionOptions = Object.freeze({ idleMs: 30 * 60_000, maxMs: 12 * 3600_000 });

const CACHE_MS = 1000;
const TOUCH_MS = 5000;
const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export interface RequestLike {
  method: string;
  headers: IncomingHttpHeaders;
  cookies: Record<string, string | undefined>;
  ip: string;
}

export class Authenticator {
  private readonly cache = new Map<string, { p: Principal | null; at: number; error?: FerryError }>();
  private readonly uses = new Map<string, number>();
  private readonly touchTimer: NodeJS.Timeout;

  constructor(
    private readonly store: Store,
    private readonly guard: AuthGuard,
    private readonly log: Logger,
    readonly origin: (headers: IncomingHttpHeaders) => string,
    readonly secureCookies: boolean,
    readonly sessions: SessionOptions = SESSION_DEFAULTS,
    private readonly now: () => number = Date.now,
  ) {
    this.touchTimer = setInterval(() => void this.touch(), TOUCH_MS);
    this.touchTimer.unref();
  }

  get cookieName(): string {
    return this.secureCookies ? SESSION_COOKIE_SECURE : SESSION_COOKIE_PLAIN;
  }

  /** The principal behind a request, or null when it carries no credentials; FerryError when they are bad. */
  async authenticate(req: RequestLike): Promise<Principal | null> {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const m = /^Bearer\s+(\S{1,512})$/i.exec(header);
      if (!m) {
        this.guard.failed('bearer', req.ip);
        throw new FerryError('FERRY_E_AUTH_INVALID', 'the Authorization header is not "Bearer TOKEN"');
      }
      return this.bearer(m[1]!, req.ip);
    }
    const cookie = req.cookies[this.cookieName];
    if (cookie !== undefined) return this.session(cookie, req);
    return null;
  }

  private async bearer(secret: string, source: string): Promise<Principal> {
    const key = createHash('sha256').update(secret).digest('base64');
    const now = this.now();
    const hit = this.cache.get(key);
    let p: Principal | null;
    if (hit && now - hit.at < CACHE_MS) {
      if (hit.error) {
        this.guard.failed('bearer', source);
        throw hit.error;
      }
      p = hit.p;
    } else {
      try {
        p = await this.lookupToken(secret, now);
        this.cache.set(key, { p, at: now });
      } catch (err) {
        if (err instanceof FerryError) this.cache.set(key, { p: null, at: now, error: err });
        if (this.cache.size > 10_000) this.cache.clear();
        this.guard.failed('bearer', source);
        throw err;
      }
      if (this.cache.size > 10_000) this.cache.clear();
    }
    this.uses.set(p!.tokenId!, now);
    return p!;
  }

  private async lookupToken(secret: string, now: number): Promise<Principal> {
    const t = await this.store.people.tokenBySecret(secret);
    if (!t || t.revokedAt !== null) throw new FerryError('FERRY_E_AUTH_INVALID');
    if (t.expiresAt !== null && t.expiresAt <= now) throw new FerryError('FERRY_E_AUTH_INVALID', `token ${t.id} expired ${new Date(t.expiresAt).toISOString()}`);
    const u = await this.store.people.userById(t.userId);
    if (!u) throw new FerryError('FERRY_E_AUTH_INVALID');
    if (u.disabledAt !== null) throw new FerryError('FERRY_E_USER_DISABLED', u.name);
    return {
      ...personOf(u),
      scope: { role: t.role, tenants: t.tenants },
      tokenId: t.id,
      csrf: null,
      surface: u.kind === 'service' ? 'api' : 'cli',
    };
  }

  private async session(secret: string, req: RequestLike): Promise<Principal> {
    const now = this.now();
    const s = await this.store.people.session(secret);
    const expired = !s || s.expiresAt <= now || now - s.lastSeenAt >= this.sessions.idleMs;
    if (expired) {
      if (s) await this.store.people.deleteSession(secret).catch(() => false);
      this.guard.failed('session', req.ip);
      throw new FerryError('FERRY_E_SESSION_EXPIRED');
    }
    const u = await this.store.people.userById(s.userId);
    if (!u || u.disabledAt !== null) {
      this.guard.failed('session', req.ip);
      throw new FerryError(u ? 'FERRY_E_USER_DISABLED' : 'FERRY_E_SESSION_EXPIRED');
    }
    if (STATE_CHANGING.has(req.method.toUpperCase())) this.checkCsrf(req, s.csrf);
    if (now - s.lastSeenAt > 60_000) await this.store.people.touchSession(secret, now);
    return { ...personOf(u), scope: null, tokenId: null, csrf: s.csrf, surface: 'console' };
  }

  /** A cookie-authenticated write must carry the session's CSRF token and come from this hub's origin. */
  private checkCsrf(req: RequestLike, want: string): void {
    const origin = req.headers.origin;
    const expected = this.origin(req.headers);
    if (origin !== expected) throw new FerryError('FERRY_E_CSRF', origin ? `origin ${JSON.stringify(String(origin).slice(0, 100))} is not ${expected}` : 'no Origin header');
    const got = req.headers[CSRF_HEADER];
    const text = Array.isArray(got) ? got[0] : got;
    if (!text || !safeEqual(text, want)) throw new FerryError('FERRY_E_CSRF', `no valid ${CSRF_HEADER} header`);
  }

  /** Starts a session (rotating away any the browser already had); returns the cookie value and CSRF token. */
  async startSession(userId: string, previous: string | undefined): Promise<{ secret: string; csrf: string; expiresAt: number }> {
    if (previous) await this.store.people.deleteSession(previous);
    const now = this.now();
    const csrf = randomBytes(24).toString('base64url');
    const expiresAt = now + this.sessions.maxMs;
    const secret = await this.store.people.createSession(userId, csrf, now, expiresAt);
    return { secret, csrf, expiresAt };
  }

  /** After a revocation, a grant or a disabled account: this replica forgets what it cached. */
  forget(): void {
    this.cache.clear();
  }

  private async touch(): Promise<void> {
    if (!this.uses.size) return;
    const batch = new Map(this.uses);
    this.uses.clear();
    try {
      await this.store.detached(() => this.store.people.touchTokens(batch));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not record API token use');
    }
  }

  async close(): Promise<void> {
    clearInterval(this.touchTimer);
    await this.touch();
  }
}

function personOf(u: UserRecord): Pick<Principal, 'userId' | 'userName' | 'kind' | 'grants'> {
  return { userId: u.id, userName: u.name, kind: u.kind, grants: { vendorRole: u.vendorRole, tenants: u.grants } };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
