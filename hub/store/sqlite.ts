// The embedded sqlite driver (better-sqlite3), the default store: one file in
// the hub's data directory, WAL, fsync on commit.
//
// better-sqlite3 is synchronous, so an async transaction needs care: while
// one is open, any other statement on its connection would join it. Hence
// two connections: writes and transactions run on the writer, one
// transaction at a time (a queue); reads outside a transaction run on a
// read-only connection, which sees only committed data.
import Database from 'better-sqlite3';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../../shared/errors.js';
import { Ambient, type Db, type Param, type TxContext } from './db.js';
import { migrateSqlite } from './migrations.js';

export const DB_FILE = 'ferry-hub.db';

type Conn = Database.Database;

export function sqlitePath(dataDir: string): string {
  return join(dataDir, DB_FILE);
}

function openConn(file: string, readonly: boolean): Conn {
  const c = new Database(file, { readonly, fileMustExist: true });
  if (!readonly) {
    c.pragma('journal_mode = WAL');
    c.pragma('synchronous = FULL');
  }
  c.pragma('foreign_keys = ON');
  c.pragma('busy_timeout = 5000');
  return c;
}

/** Prepared once per connection: better-sqlite3 compiles anew on every prepare (bench/rollout: a fifth of the hub's CPU). */
class Statements {
  private readonly cache = new Map<string, Database.Statement>();
  constructor(readonly conn: Conn) {}
  get(sql: string): Database.Statement {
    let s = this.cache.get(sql);
    if (!s) this.cache.set(sql, (s = this.conn.prepare(sql)));
    return s;
  }
  /** The same statement returning rows as arrays (a statement of its own: raw mode sticks). */
  raw(sql: string): Database.Statement {
    const key = `raw\n${sql}`;
    let s = this.cache.get(key);
    if (!s) this.cache.set(key, (s = this.conn.prepare(sql).raw(true)));
    return s;
  }
}

const bind = (p: readonly Param[]) => p as unknown[];

export class SqliteDb implements Db {
  readonly dialect = 'sqlite' as const;
  private readonly writer: Statements;
  private readonly reader: Statements;
  private readonly ambient = new Ambient<null>();
  /** The tail of the queue of transactions waiting for the writer. */
  private queue: Promise<void> = Promise.resolve();
  private savepoints = 0;
  private closed = false;

  private constructor(readonly file: string) {
    this.writer = new Statements(openConn(file, false));
    this.reader = new Statements(openConn(file, true));
  }

  /**
   * Opens the database in `dataDir`. With `create`, makes the directory and
   * an empty database; without it, a missing database is an error (so
   * `serve` on a mistyped path does not silently start an empty hub).
   */
  static open(dataDir: string, opts: { create?: boolean } = {}): SqliteDb {
    const file = sqlitePath(dataDir);
    const exists = existsSync(file);
    if (opts.create && exists) throw new FerryError('FERRY_E_HUB_ALREADY_INITIALISED', file);
    if (!opts.create && !exists) throw new FerryError('FERRY_E_HUB_NOT_INITIALISED', file);
    try {
      if (opts.create) {
        mkdirSync(dataDir, { recursive: true, mode: 0o700 });
        new Database(file).close();
      }
      const w = openConn(file, false);
      try {
        migrateSqlite(w);
      } finally {
        w.close();
      }
      return new SqliteDb(file);
    } catch (err) {
      if (err instanceof FerryError) throw err;
      throw new FerryError('FERRY_E_DB', `${file}: ${(err as Error).message}`, { cause: err });
    }
  }

  get inTx(): boolean {
    return this.ambient.current() !== undefined;
  }

  private stmts(): Statements {
    if (this.closed) throw new FerryError('FERRY_E_UNAVAILABLE', 'the database is closed');
    return this.inTx ? this.writer : this.reader;
  }

  async all<T>(sql: string, params: readonly Param[] = []): Promise<T[]> {
    return this.stmts().get(sql).all(...bind(params)) as T[];
  }

  async get<T>(sql: string, params: readonly Param[] = []): Promise<T | undefined> {
    return this.stmts().get(sql).get(...bind(params)) as T | undefined;
  }

  async values<T extends unknown[]>(sql: string, params: readonly Param[] = []): Promise<T[]> {
    return this.stmts().raw(sql).all(...bind(params)) as T[];
  }

  async run(sql: string, params: readonly Param[] = []): Promise<number> {
    if (!this.inTx) return this.tx(() => this.run(sql, params));
    return this.writer.get(sql).run(...bind(params)).changes;
  }

  async lock(_key: string): Promise<void> {
    if (!this.inTx) throw new FerryError('FERRY_E_INTERNAL', 'lock() outside a transaction');
    // One writer at a time already: nothing to wait for.
  }

  async lockAll(_keys: readonly string[]): Promise<void> {
    if (!this.inTx) throw new FerryError('FERRY_E_INTERNAL', 'lockAll() outside a transaction');
  }

  tx<T>(fn: () => Promise<T>): Promise<T> {
    const open = this.ambient.current();
    return open ? this.savepoint(open, fn) : this.top(fn);
  }

  private async top<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.queue;
    let release!: () => void;
    this.queue = new Promise<void>((r) => (release = r));
    await prev;
    const ctx: TxContext<null> = { handle: null, done: false, depth: 0 };
    try {
      if (this.closed) throw new FerryError('FERRY_E_UNAVAILABLE', 'the database is closed');
      this.writer.conn.exec('BEGIN IMMEDIATE');
      let result: T;
      try {
        result = await this.ambient.run(ctx, fn);
      } catch (err) {
        ctx.done = true;
        if (this.writer.conn.inTransaction) this.writer.conn.exec('ROLLBACK');
        throw err;
      }
      ctx.done = true;
      this.writer.conn.exec('COMMIT');
      return result;
    } catch (err) {
      throw dbError(err, this.file);
    } finally {
      ctx.done = true;
      release();
    }
  }

  private async savepoint<T>(parent: TxContext<null>, fn: () => Promise<T>): Promise<T> {
    const name = `sp${++this.savepoints}`;
    this.writer.conn.exec(`SAVEPOINT ${name}`);
    const ctx: TxContext<null> = { handle: null, done: false, depth: parent.depth + 1 };
    try {
      const r = await this.ambient.run(ctx, fn);
      this.writer.conn.exec(`RELEASE ${name}`);
      return r;
    } catch (err) {
      this.writer.conn.exec(`ROLLBACK TO ${name}`);
      this.writer.conn.exec(`RELEASE ${name}`);
      throw err;
    } finally {
      ctx.done = true;
    }
  }

  /** Runs `fn` outside the caller's transaction, if any. */
  detached<T>(fn: () => T): T {
    return this.ambient.detached(fn);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Let queued transactions finish first.
    await this.queue;
    this.closed = true;
    this.reader.conn.close();
    this.writer.conn.close();
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** The writer connection, for tests and tools that need raw access (never the hub's own code). */
  rawForTests(): Conn {
    return this.writer.conn;
  }
}

/** A full disk or a broken file says so in the catalogue's words; anything else passes through. */
function dbError(err: unknown, file: string): unknown {
  const code = (err as { code?: unknown }).code;
  if (code === 'SQLITE_FULL' || code === 'SQLITE_IOERR' || code === 'SQLITE_CORRUPT' || code === 'SQLITE_READONLY') {
    return new FerryError('FERRY_E_DB', `${file}: ${code}: ${(err as Error).message}`, { cause: err });
  }
  return err;
}
