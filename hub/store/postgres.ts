// The PostgreSQL driver (the `postgres` client: pipelining, prepared
// statements, LISTEN with automatic re-listen), for several hub replicas on
// one database. The store's SQL uses `?`; here it becomes `$1, $2, ...`.
//
// Transactions that deadlock or fail to serialise are run again (at most
// RETRIES times): db.ts says why their bodies allow it.
//
// Every call into the driver settles within a deadline of ours. The driver
// (postgres 3.4) leaves a query pending for as long as the server refuses new
// sessions at startup (a database not accepting connections, one dropped, a
// server starting up) and never settles one on a half-open connection; a
// hub would wait on it for ever (its passes, its shutdown, its leadership
// probe). At the deadline the query is cancelled (one not yet sent is taken
// off the queue, so a write reported failed does not run later) and the
// caller gets FERRY_E_DB_UNREACHABLE.
import postgres from 'postgres';
import { readFileSync } from 'node:fs';
import { FerryError } from '../../shared/errors.js';
import { Ambient, type Db, type Param, type TxContext } from './db.js';
import { POSTGRES, SCHEMA_VERSION } from './migrations.js';

type Sql = postgres.Sql<Record<string, unknown>>;
type TxSql = postgres.TransactionSql<Record<string, unknown>>;

export interface PostgresOptions {
  url: string;
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** Per-statement limit in milliseconds (default 30 s; 0: none). */
  statementTimeoutMs?: number;
  /** A CA certificate (PEM file) to verify the server with (implies TLS, verify-full). */
  caFile?: string;
  /** The hub's replica id, shown in pg_stat_activity. */
  applicationName?: string;
  /** How long a call may wait on the driver before it is given up (default: the statement limit plus 15 s; 45 s with no limit). */
  deadlineMs?: number;
}

const RETRIES = 4;
/** How long the leadership probe may wait for its session's answer before the lock counts as lost. */
const PROBE_DEADLINE_MS = 5000;

type Cancellable<T> = PromiseLike<T> & { cancel?(): unknown };

/**
 * `q`, or FERRY_E_DB_UNREACHABLE once `ms` have passed without the driver
 * settling it (then `q` is cancelled, best effort).
 */
export function within<T>(q: Cancellable<T>, ms: number, url: string, what = 'the database did not answer'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        void Promise.resolve(q.cancel?.()).catch(() => {});
      } catch {
        // already settled or never started: nothing to take back
      }
      reject(new FerryError('FERRY_E_DB_UNREACHABLE', `${redactUrl(url)}: ${what} within ${Math.round(ms / 1000)} s`));
    }, ms);
    q.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
const RETRYABLE = new Set(['40P01', '40001']); // deadlock_detected, serialization_failure

/** `?` placeholders as PostgreSQL's `$n` (the store's SQL has no `?` inside literals). */
const texts = new Map<string, string>();
function pgText(sql: string): string {
  let t = texts.get(sql);
  if (t === undefined) {
    let n = 0;
    t = sql.replace(/\?/g, () => `$${++n}`);
    texts.set(sql, t);
  }
  return t;
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://…';
  }
}

export function isPostgresUrl(s: string): boolean {
  return /^postgres(ql)?:\/\//i.test(s);
}

export class PostgresDb implements Db {
  readonly dialect = 'postgres' as const;
  readonly sql: Sql;
  private readonly ambient = new Ambient<TxSql>();
  private closed = false;
  private readonly deadlineMs: number;

  private constructor(readonly opts: PostgresOptions) {
    const statementMs = opts.statementTimeoutMs ?? 30_000;
    this.deadlineMs = opts.deadlineMs ?? (statementMs > 0 ? statementMs : 30_000) + 15_000;
    const ssl = opts.caFile ? { ca: readCa(opts.caFile), rejectUnauthorized: true } : undefined;
    this.sql = postgres(opts.url, {
      max: opts.poolSize ?? 10,
      ...(ssl ? { ssl } : {}),
      onnotice: () => {},
      // No array types fetched per connection (the store binds scalars only): the driver runs that
      // fetch from a socket handler with no catch, so a connection lost during it would be an
      // unhandled rejection, which ends the process (postgres 3.4).
      fetch_types: false,
      // Timestamps and counters are BIGINT: numbers here (all below 2^53).
      types: { int8: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) } },
      connection: {
        application_name: opts.applicationName ?? 'ferry-hub',
        statement_timeout: opts.statementTimeoutMs ?? 30_000,
      },
      connect_timeout: 10,
    }) as unknown as Sql;
  }

  /**
   * Connects, and brings the schema to this hub's version (refusing a newer
   * one). With `create`, the database must not hold a hub yet; without it,
   * it must.
   */
  static async open(opts: PostgresOptions, { create = false } = {}): Promise<PostgresDb> {
    const db = new PostgresDb(opts);
    try {
      await within(db.sql.unsafe('SELECT 1'), db.deadlineMs, opts.url);
      const v = await db.version();
      if (v > SCHEMA_VERSION) throw new FerryError('FERRY_E_DB_VERSION', `schema ${v}, this hub knows up to ${SCHEMA_VERSION}`);
      if (!create && v === 0) throw new FerryError('FERRY_E_HUB_NOT_INITIALISED', `${redactUrl(opts.url)} holds no hub; run \`ferry-hub init --database URL\` first`);
      if (create && v > 0 && (await db.sql.unsafe('SELECT 1 FROM users LIMIT 1')).length > 0) {
        throw new FerryError('FERRY_E_HUB_ALREADY_INITIALISED', redactUrl(opts.url));
      }
      await db.migrate();
      return db;
    } catch (err) {
      await endWithin(db.sql, 1);
      throw pgError(err, opts.url);
    }
  }

  private bounded<T>(q: () => Cancellable<T>): Promise<T> {
    return within(q(), this.deadlineMs, this.opts.url);
  }

  get inTx(): boolean {
    return this.ambient.current() !== undefined;
  }

  private handle(): Sql | TxSql {
    if (this.closed) throw new FerryError('FERRY_E_UNAVAILABLE', 'the database is closed');
    return this.ambient.current()?.handle ?? this.sql;
  }

  async all<T>(sql: string, params: readonly Param[] = []): Promise<T[]> {
    try {
      return (await this.bounded(() => this.handle().unsafe(pgText(sql), params as never[]))) as unknown as T[];
    } catch (err) {
      throw pgError(err, this.opts.url);
    }
  }

  async get<T>(sql: string, params: readonly Param[] = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0];
  }

  async values<T extends unknown[]>(sql: string, params: readonly Param[] = []): Promise<T[]> {
    try {
      return (await this.bounded(() => this.handle().unsafe(pgText(sql), params as never[]).values())) as unknown as T[];
    } catch (err) {
      throw pgError(err, this.opts.url);
    }
  }

  async run(sql: string, params: readonly Param[] = []): Promise<number> {
    try {
      const r = await this.bounded(() => this.handle().unsafe(pgText(sql), params as never[]));
      return r.count;
    } catch (err) {
      throw pgError(err, this.opts.url);
    }
  }

  async lock(key: string): Promise<void> {
    if (!this.inTx) throw new FerryError('FERRY_E_INTERNAL', 'lock() outside a transaction');
    await this.bounded(() => this.handle().unsafe('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [key]));
  }

  async lockAll(keys: readonly string[]): Promise<void> {
    if (!this.inTx) throw new FerryError('FERRY_E_INTERNAL', 'lockAll() outside a transaction');
    const sorted = [...new Set(keys)].sort();
    for (let i = 0; i < sorted.length; i += 1000) {
      const part = sorted.slice(i, i + 1000);
      // Taken row by row in the subquery's order: one statement for a whole batch.
      const values = part.map((_, j) => `($${j + 1}::text)`).join(', ');
      await this.bounded(() => this.handle().unsafe(`SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM (SELECT k FROM (VALUES ${values}) AS v(k) ORDER BY k) AS s`, part));
    }
  }

  async tx<T>(fn: () => Promise<T>): Promise<T> {
    const open = this.ambient.current();
    if (open) {
      return (await open.handle.savepoint(async (sp) => {
        const ctx: TxContext<TxSql> = { handle: sp, done: false, depth: open.depth + 1 };
        try {
          return await this.ambient.run(ctx, fn);
        } finally {
          ctx.done = true;
        }
      })) as T;
    }
    for (let attempt = 1; ; attempt++) {
      let ctx: TxContext<TxSql> | undefined;
      try {
        // The deadline runs while the driver has the transaction (BEGIN, COMMIT), not while
        // `fn` does (its statements have their own). A body that starts after the deadline
        // gave up on it throws at once: the driver rolls back.
        let gaveUp = false;
        let timer: NodeJS.Timeout | undefined;
        let fail: (err: unknown) => void = () => {};
        const arm = () => {
          timer = setTimeout(() => {
            gaveUp = true;
            fail(new FerryError('FERRY_E_DB_UNREACHABLE', `${redactUrl(this.opts.url)}: the database did not answer within ${Math.round(this.deadlineMs / 1000)} s`));
          }, this.deadlineMs);
        };
        const deadline = new Promise<never>((_, reject) => (fail = reject));
        deadline.catch(() => {});
        arm();
        const begun = this.sql.begin(async (t) => {
          clearTimeout(timer);
          if (gaveUp) throw new FerryError('FERRY_E_DB_UNREACHABLE', 'the transaction began after its deadline');
          ctx = { handle: t, done: false, depth: 0 };
          try {
            return await this.ambient.run(ctx, fn);
          } finally {
            ctx.done = true;
            arm();
          }
        });
        begun.then(() => clearTimeout(timer), () => clearTimeout(timer));
        return (await Promise.race([begun, deadline])) as T;
      } catch (err) {
        if (ctx) ctx.done = true;
        const code = (err as { code?: string }).code;
        if (code && RETRYABLE.has(code) && attempt < RETRIES) {
          await new Promise((r) => setTimeout(r, Math.random() * 20 * attempt));
          continue;
        }
        throw err instanceof FerryError ? err : pgError(err, this.opts.url);
      }
    }
  }

  detached<T>(fn: () => T): T {
    return this.ambient.detached(fn);
  }

  async listen(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>> {
    const l = await this.sql.listen(channel, onMessage);
    return () => l.unlisten();
  }

  async notify(channel: string, payload: string): Promise<void> {
    await this.bounded(() => this.sql.notify(channel, payload));
  }

  /**
   * Tries to take a session-level advisory lock, on a client of its own with
   * one connection; the lock lasts as long as that connection's session (a
   * replica that dies, or loses its connection, loses the lock). Resolves to
   * a release function, or null when another session holds it. `onLost` is
   * told when a check (every 2 s) finds the session gone.
   *
   * Not a reserved connection of the pool: a query on a reserved connection
   * that died never settles and throws from a timer (postgres 3.4), which
   * would take the hub down with it; a pool of one reconnects instead, and a
   * new session is how the loss shows.
   */
  async tryHold(key: string, onLost: (err: unknown) => void): Promise<(() => Promise<void>) | null> {
    const own = postgres(this.opts.url, { max: 1, onnotice: () => {}, fetch_types: false, connect_timeout: 10, ...(this.opts.caFile ? { ssl: { ca: readCa(this.opts.caFile), rejectUnauthorized: true } } : {}), connection: { application_name: `${this.opts.applicationName ?? 'ferry-hub'}:leader` } });
    const end = () => endWithin(own, 1);
    let pid: number;
    try {
      const [row] = (await within(own.unsafe('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok, pg_backend_pid() AS pid', [key]), this.deadlineMs, this.opts.url)) as unknown as { ok: boolean; pid: number }[];
      if (!row?.ok) {
        await end();
        return null;
      }
      pid = row.pid;
    } catch (err) {
      await end();
      throw pgError(err, this.opts.url);
    }
    let stopped = false;
    const lost = (err: unknown) => {
      if (stopped) return;
      stopped = true;
      clearInterval(probe);
      void end();
      onLost(err);
    };
    // The same session still there means the lock is still ours (it is never released otherwise).
    // A probe with no answer counts as a lost session: on a half-open connection the server
    // may already have ended it and given the lock to another replica.
    const probe = setInterval(() => {
      within(own.unsafe('SELECT pg_backend_pid() AS pid'), PROBE_DEADLINE_MS, this.opts.url, 'the leadership session did not answer')
        .then((rows) => {
          const now = (rows as unknown as { pid: number }[])[0]?.pid;
          if (now !== pid) lost(new Error(`the session holding the lock ended (backend ${pid}, now ${now})`));
        })
        .catch(lost);
    }, 2000);
    probe.unref();
    return async () => {
      if (stopped) return;
      stopped = true;
      clearInterval(probe);
      await within(own.unsafe('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [key]), PROBE_DEADLINE_MS, this.opts.url).catch(() => {});
      await end();
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await endWithin(this.sql, 5);
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  private async version(): Promise<number> {
    const t = (await this.sql.unsafe("SELECT to_regclass('ferry_schema') AS t")) as unknown as { t: string | null }[];
    if (!t[0]?.t) return 0;
    const rows = (await this.sql.unsafe('SELECT max(version) AS v FROM ferry_schema')) as unknown as { v: number | null }[];
    return rows[0]?.v ?? 0;
  }

  /** Applies what is missing, one replica at a time (an advisory lock), each step in its own transaction. */
  private async migrate(): Promise<void> {
    await this.sql.begin(async (t) => {
      await t.unsafe('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', ['ferry:migrate']);
      const exists = ((await t.unsafe("SELECT to_regclass('ferry_schema') AS t")) as unknown as { t: string | null }[])[0]?.t;
      const current = exists ? (((await t.unsafe('SELECT max(version) AS v FROM ferry_schema')) as unknown as { v: number | null }[])[0]?.v ?? 0) : 0;
      if (current > SCHEMA_VERSION) throw new FerryError('FERRY_E_DB_VERSION', `schema ${current}, this hub knows up to ${SCHEMA_VERSION}`);
      for (const step of POSTGRES) {
        if (step.version <= current) continue;
        await t.unsafe(step.sql);
        await t.unsafe('DELETE FROM ferry_schema');
        await t.unsafe('INSERT INTO ferry_schema (version) VALUES ($1)', [step.version]);
      }
    });
  }
}

/**
 * Ends a client, waiting at most `seconds` for its queries; the driver's own
 * end never settles after some lost connections (porsager/postgres#1097).
 */
async function endWithin(sql: Sql, seconds: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([sql.end({ timeout: seconds }).catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, seconds * 1000 + 1000)))]);
  clearTimeout(timer);
}

function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new FerryError('FERRY_E_CONFIG_INVALID', `--database-ca ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Connection failures and server errors, in the catalogue's words (the URL's password never shown). */
export function pgError(err: unknown, url: string): unknown {
  if (err instanceof FerryError) return err;
  const e = err as { code?: string; message?: string; errno?: string };
  const code = e.code ?? '';
  if (/^(ECONNREFUSED|ENOTFOUND|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|CONNECT_TIMEOUT|CONNECTION_CLOSED|CONNECTION_ENDED|CONNECTION_DESTROYED)$/.test(code)) {
    return new FerryError('FERRY_E_DB_UNREACHABLE', `${redactUrl(url)}: ${code}`, { cause: err });
  }
  if (code === '28P01' || code === '28000') return new FerryError('FERRY_E_DB_UNREACHABLE', `${redactUrl(url)}: authentication failed (${code})`, { cause: err });
  if (code === '3D000') return new FerryError('FERRY_E_DB_UNREACHABLE', `${redactUrl(url)}: no such database`, { cause: err });
  // The server ended the session or will not start one now: shutting down, starting up, full, or the database closed to sessions.
  if (/^(57P01|57P02|57P03|53300)$/.test(code) || (code === '55000' && /not currently accepting connections/.test(e.message ?? ''))) {
    return new FerryError('FERRY_E_DB_UNREACHABLE', `${redactUrl(url)}: ${e.message ?? code} (${code})`, { cause: err });
  }
  if (code === '57014') return new FerryError('FERRY_E_DB', `statement timeout: ${e.message}`, { cause: err });
  if (code === '53100') return new FerryError('FERRY_E_DB', `disk full: ${e.message}`, { cause: err });
  return err;
}
