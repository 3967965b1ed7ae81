// Failed authentication without abuse of the audit log: failures are counted
// in memory and written as one aggregated entry per window (never one per
// attempt: anyone on the internet can send bad tokens), and source
// addresses enter the log only as erasable personal data. Password logins
// are slowed per account and per source address, and locked out after a
// threshold, with one audit entry per lockout.
import { HUB_LOG } from '../../shared/audit.js';
import { FerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { AuditLog } from '../audit/log.js';
import type { Store } from '../store/store.js';

export interface GuardOptions {
  /** One aggregated auth.failed entry per this window at most. */
  windowMs: number;
  /** Failed logins (per account, or per address) after which each failure is slowed. */
  slowAfter: number;
  /** Failed logins within `lockWindowMs` that lock the account (or address). */
  lockAfter: number;
  lockWindowMs: number;
  lockMs: number;
  /** Distinct source addresses remembered per window (the rest are only counted). */
  maxSources: number;
}

export const GUARD_DEFAULTS: GuardOptions = Object.freeze({
  windowMs: 60_000,
  slowAfter: 3,
  lockAfter: 10,
  lockWindowMs: 15 * 60_000,
  lockMs: 15 * 60_000,
  maxSources: 100,
});

/** The most a slowed failure waits. */
const MAX_DELAY_MS = 4000;

interface Counter {
  times: number[];
  lockedUntil: number;
}

export class AuthGuard {
  readonly opts: GuardOptions;
  private window = { bearer: 0, session: 0, login: 0, sources: new Set<string>(), extraSources: 0, since: 0 };
  private readonly accounts = new Map<string, Counter>();
  private readonly addresses = new Map<string, Counter>();
  private readonly timer: NodeJS.Timeout;
  private writing: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    opts: Partial<GuardOptions> = {},
  ) {
    this.opts = Object.freeze({ ...GUARD_DEFAULTS, ...opts });
    this.timer = setInterval(() => void this.flush(), this.opts.windowMs);
    this.timer.unref();
  }

  /** A bad or expired bearer token or session cookie. */
  failed(kind: 'bearer' | 'session' | 'login', source: string): void {
    const w = this.window;
    if (w.bearer + w.session + w.login === 0) w.since = this.now();
    w[kind]++;
    if (w.sources.size < this.opts.maxSources) w.sources.add(source);
    else if (!w.sources.has(source)) w.extraSources++;
  }

  /**
   * Before checking a password: refuses a locked account or address. An
   * existing account's lock is the database's (every replica sees it, and a
   * new password lifts it); a name with no account is locked here.
   */
  checkLogin(account: string, source: string, accountLockedUntil: number | null, accountExists: boolean): void {
    const now = this.now();
    const accountLock = accountExists ? (accountLockedUntil ?? 0) : this.counter(this.accounts, account).lockedUntil;
    const until = Math.max(accountLock, this.counter(this.addresses, source).lockedUntil);
    if (until > now) throw new FerryError('FERRY_E_LOGIN_LOCKED', `for ${Math.ceil((until - now) / 60_000)} more minute(s)`);
  }

  /**
   * A failed password login: waits (slowing guessing), counts, and locks the
   * account or the address once past the threshold (one audit entry each).
   * `userId` is null for an unknown user name (counted per name all the same).
   */
  async loginFailed(account: string, userId: string | null, source: string): Promise<void> {
    this.failed('login', source);
    const now = this.now();
    const a = this.note(this.accounts, account, now);
    const s = this.note(this.addresses, source, now);
    const worst = Math.max(a.times.length, s.times.length);
    if (a.times.length >= this.opts.lockAfter && a.lockedUntil <= now) {
      a.lockedUntil = now + this.opts.lockMs;
      await this.lockout({ kind: 'account', userId, account, until: a.lockedUntil, failures: a.times.length });
    }
    if (s.times.length >= this.opts.lockAfter * 2 && s.lockedUntil <= now) {
      s.lockedUntil = now + this.opts.lockMs;
      await this.lockout({ kind: 'address', userId: null, account: source, until: s.lockedUntil, failures: s.times.length });
    }
    if (worst > this.opts.slowAfter) await new Promise((r) => setTimeout(r, Math.min(MAX_DELAY_MS, 250 * 2 ** (worst - this.opts.slowAfter - 1))));
  }

  /**
   * A good login, or a new password set by an admin, clears the account's
   * failures (not the address's: one good account must not unlock guessing
   * at others).
   */
  reset(account: string): void {
    this.accounts.delete(account);
  }

  private counter(map: Map<string, Counter>, key: string): Counter {
    return map.get(key) ?? { times: [], lockedUntil: 0 };
  }

  private note(map: Map<string, Counter>, key: string, now: number): Counter {
    let c = map.get(key);
    if (!c) map.set(key, (c = { times: [], lockedUntil: 0 }));
    c.times = c.times.filter((t) => now - t < this.opts.lockWindowMs);
    c.times.push(now);
    // Bounded memory under a spray of names or addresses: forget the quietest.
    if (map.size > 10_000) for (const [k, v] of map) if (!v.times.some((t) => now - t < this.opts.lockWindowMs) && v.lockedUntil <= now) map.delete(k);
    return c;
  }

  private async lockout(l: { kind: 'account' | 'address'; userId: string | null; account: string; until: number; failures: number }): Promise<void> {
    this.log.warn({ kind: l.kind, until: new Date(l.until).toISOString(), failures: l.failures }, 'login locked out after repeated failures');
    try {
      await this.store.tx(async () => {
        if (l.kind === 'account' && l.userId) await this.store.people.lockUntil(l.userId, l.until);
        await this.audit.append(
          {
            log: HUB_LOG,
            actor: { kind: 'anonymous', id: null },
            surface: 'api',
            action: 'auth.lockout',
            target: l.kind === 'account' && l.userId ? { type: 'user', id: l.userId } : null,
            outcome: 'refused',
            details: { kind: l.kind, failures: l.failures, until: new Date(l.until).toISOString() },
            // The name tried or the address is personal data: erasable, off the hashed leaf.
            personal: l.kind === 'account' ? { account: l.account } : { address: l.account },
          },
          this.now(),
        );
      });
    } catch (err) {
      this.log.error({ err }, 'could not record a lockout');
    }
  }

  /** Writes the window's failures as one entry (if there were any). */
  flush(): Promise<void> {
    this.writing ??= this.write().finally(() => (this.writing = null));
    return this.writing;
  }

  private async write(): Promise<void> {
    const w = this.window;
    const total = w.bearer + w.session + w.login;
    if (total === 0) return;
    this.window = { bearer: 0, session: 0, login: 0, sources: new Set(), extraSources: 0, since: 0 };
    const now = this.now();
    try {
      await this.store.detached(() =>
        this.store.tx(() =>
          this.audit.append(
            {
              log: HUB_LOG,
              actor: { kind: 'anonymous', id: null },
              surface: 'api',
              action: 'auth.failed',
              outcome: 'refused',
              details: { count: total, bearer: w.bearer, session: w.session, login: w.login, sources: w.sources.size + w.extraSources, from: new Date(w.since).toISOString(), to: new Date(now).toISOString() },
              personal: { addresses: [...w.sources].join(',').slice(0, 4000) },
            },
            now,
          ),
        ),
      );
    } catch (err) {
      this.log.error({ err, count: total }, 'could not record failed authentication');
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
