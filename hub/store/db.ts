// The seam between the hub's store and a database engine. The store's SQL is
// written once, in the subset sqlite and PostgreSQL share (`?` placeholders,
// ON CONFLICT, RETURNING, no booleans), and runs on either driver.
//
// Transactions are ambient: everything the store is asked inside
// `db.tx(fn)`, directly or by functions `fn` calls, runs in that transaction
// (AsyncLocalStorage carries it across awaits), as better-sqlite3's
// `db.transaction` did synchronously. A `tx` inside a `tx` is a savepoint.
// A transaction body may be run more than once (PostgreSQL retries it after
// a deadlock), so it must change nothing outside the database before it
// returns: collect what to announce and do it after the commit.
import { AsyncLocalStorage } from 'node:async_hooks';

export type Param = string | number | Buffer | null;
export type Dialect = 'sqlite' | 'postgres';

export interface Db {
  readonly dialect: Dialect;
  all<T>(sql: string, params?: readonly Param[]): Promise<T[]>;
  get<T>(sql: string, params?: readonly Param[]): Promise<T | undefined>;
  /** Rows as arrays, in column order: half the cost of objects for wide scans. */
  values<T extends unknown[]>(sql: string, params?: readonly Param[]): Promise<T[]>;
  /** A statement for its effect; resolves to the number of rows changed. */
  run(sql: string, params?: readonly Param[]): Promise<number>;
  /** Runs `fn` in a transaction, or in a savepoint when one is open. */
  tx<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Inside a transaction: waits until no other transaction holds `key`, and
   * holds it until this one ends (PostgreSQL advisory locks; sqlite writers
   * are serial already). What it serialises: per-agent seqs, per-log audit
   * indexes, the rollout event stream's ids.
   */
  lock(key: string): Promise<void>;
  /** `lock` for each key, taken in one order (sorted), so two batches never wait on each other in a cycle. */
  lockAll(keys: readonly string[]): Promise<void>;
  readonly inTx: boolean;
  /** Runs `fn` outside the caller's transaction, if any (work that must not join it, or outlive it). */
  detached<T>(fn: () => T): T;
  readonly isOpen: boolean;
  close(): Promise<void>;
}

/** One open transaction, as the ambient context sees it. */
export interface TxContext<H> {
  handle: H;
  done: boolean;
  depth: number;
}

/** Carries the open transaction of each driver across awaits. */
export class Ambient<H> {
  private readonly als = new AsyncLocalStorage<TxContext<H>>();

  /** The open transaction here, if any (a finished one — e.g. seen by a timer created inside it — counts as none). */
  current(): TxContext<H> | undefined {
    const c = this.als.getStore();
    return c && !c.done ? c : undefined;
  }

  run<T>(ctx: TxContext<H>, fn: () => Promise<T>): Promise<T> {
    return this.als.run(ctx, fn);
  }

  /** Runs `fn` outside any transaction (work that must not join the caller's). */
  detached<T>(fn: () => T): T {
    return this.als.exit(fn);
  }
}

/** `IN (?, ?, ?)` for a list (empty lists match nothing). */
export function inList(n: number): string {
  return n === 0 ? '(NULL)' : `(${Array.from({ length: n }, () => '?').join(', ')})`;
}
