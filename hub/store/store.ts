// The hub's one store: every read and write of hub state goes through it, and
// all SQL lives under hub/store/. Two backends behind one driver seam
// (db.ts): embedded sqlite in the data directory (the default) and
// PostgreSQL (several replicas). The hub asks the store; the store never
// signs, verifies or decides.
import { FerryError } from '../../shared/errors.js';
import { AuditRows } from './audit.js';
import { ChatRows } from './chat.js';
import { CheckRows } from './checks.js';
import { BundleRows } from './bundles.js';
import type { Db } from './db.js';
import { Fleet } from './fleet.js';
import { FleetQuery } from './fleet-query.js';
import { ImageRows } from './images.js';
import { OperationRows } from './operations.js';
import { People } from './people.js';
import { PostgresDb, isPostgresUrl, type PostgresOptions } from './postgres.js';
import { RolloutRows } from './rollouts.js';
import { AnswerRows, DirectiveRows, ReleaseRows, RootRows } from './signed.js';
import { SqliteDb } from './sqlite.js';

export class Store {
  readonly fleet: Fleet;
  readonly people: People;
  readonly roots: RootRows;
  readonly releases: ReleaseRows;
  readonly directives: DirectiveRows;
  readonly answers: AnswerRows;
  readonly audit: AuditRows;
  readonly rollouts: RolloutRows;
  readonly images: ImageRows;
  readonly chat: ChatRows;
  readonly checks: CheckRows;
  readonly operations: OperationRows;
  readonly fleetQuery: FleetQuery;
  readonly bundles: BundleRows;

  constructor(readonly db: Db) {
    this.fleet = new Fleet(db);
    this.people = new People(db);
    this.roots = new RootRows(db);
    this.releases = new ReleaseRows(db);
    this.directives = new DirectiveRows(db);
    this.answers = new AnswerRows(db);
    this.audit = new AuditRows(db);
    this.rollouts = new RolloutRows(db);
    this.images = new ImageRows(db);
    this.chat = new ChatRows(db);
    this.checks = new CheckRows(db);
    this.operations = new OperationRows(db);
    this.fleetQuery = new FleetQuery(db);
    this.bundles = new BundleRows(db);
  }

  get backend(): 'sqlite' | 'postgres' {
    return this.db.dialect;
  }

  /** Runs `fn` in one transaction: every store call inside it, however deep, is part of it (db.ts). */
  tx<T>(fn: () => Promise<T>): Promise<T> {
    return this.db.tx(fn);
  }

  /** Runs `fn` outside the caller's transaction (work that must outlive it, such as a timer). */
  detached<T>(fn: () => T): T {
    return this.db.detached(fn);
  }

  /**
   * Whether the database answers (readiness), within `deadlineMs`: a query
   * behind a dead network path (or waiting for a pool whose connections are
   * stuck on one) may otherwise never settle, and the probe must.
   */
  async ping(deadlineMs = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new FerryError('FERRY_E_DB_UNREACHABLE', `no answer from the database within ${deadlineMs} ms`)), deadlineMs);
    });
    try {
      await Promise.race([this.db.get('SELECT 1 AS ok'), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

export interface StoreLocation {
  /** sqlite: the hub's data directory. */
  dataDir?: string;
  /** PostgreSQL: postgres://user:pass@host:port/db (options in `postgres`). */
  database?: string;
  postgres?: Omit<PostgresOptions, 'url'>;
}

/**
 * Opens the store named by `--database` (a postgres:// URL) or, without one,
 * the sqlite file in `--data-dir`. With `create`, a new store is made (and
 * one that already holds a hub is refused); without it, a missing one is an
 * error.
 */
export async function openStore(loc: StoreLocation, opts: { create?: boolean } = {}): Promise<Store> {
  if (loc.database) {
    if (!isPostgresUrl(loc.database)) throw new FerryError('FERRY_E_CONFIG_INVALID', '--database takes a postgres:// or postgresql:// URL (leave it out for the embedded sqlite file in --data-dir)');
    return new Store(await PostgresDb.open({ url: loc.database, ...loc.postgres }, opts));
  }
  if (!loc.dataDir) throw new FerryError('FERRY_E_CONFIG_INVALID', 'give --data-dir (embedded sqlite) or --database postgres://...');
  return new Store(SqliteDb.open(loc.dataDir, opts));
}
