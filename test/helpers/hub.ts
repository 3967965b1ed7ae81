// Starts a real hub in this process: a real sqlite file in a temp dir (or a
// real PostgreSQL database of its own), a real HTTP and WebSocket server on
// an ephemeral port. Closed after the test.
import { randomBytes } from 'node:crypto';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import postgres from 'postgres';
import { Agent, request } from 'undici';
import { createLogger, type Logger } from '../../shared/logger.js';
import type { Role, TenantRole, VendorRole } from '../../shared/roles.js';
import { loadOrCreateHubKey } from '../../hub/hub-key.js';
import { createHub, type Hub, type HubOptions } from '../../hub/server.js';
import { SqliteDb, sqlitePath } from '../../hub/store/sqlite.js';
import { openStore, type Store } from '../../hub/store/store.js';
import { PG_ADMIN_URL, closeUsers, dropDatabase, freshDatabase, usesDatabase, type Backend } from './postgres.js';
import { tempDir } from './tmp.js';

export interface TestHub {
  hub: Hub;
  url: string;
  dataDir: string;
  /** The PostgreSQL URL when the hub runs on PostgreSQL. */
  database?: string;
  backend: Backend;
  adminToken: string;
  /** Parsed JSON log lines the hub wrote. */
  logs: Record<string, unknown>[];
  api<T = any>(method: string, path: string, body?: unknown, token?: string | null, headers?: Record<string, string>): Promise<{ status: number; body: T; headers: Record<string, string | string[] | undefined> }>;
  /**
   * Raw SQL on the hub's database behind its back (`?` placeholders), as an
   * intruder or an operator with the database would: on a connection of its
   * own, sqlite or PostgreSQL alike.
   */
  rawSql<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** A token of a new person with this vendor-wide role. */
  tokenFor(role: VendorRole): Promise<string>;
  /** A new person with these grants, and a token carrying all of them (or `scope`). */
  person(grants: { vendorRole?: VendorRole | null; tenants?: Record<string, TenantRole>; password?: string }, scope?: { role: Role; tenants: string[] | null }): Promise<{ name: string; userId: string; token: string }>;
  close(): Promise<void>;
}

/** A logger that keeps JSON lines in memory, so tests can assert on them. */
export function memoryLogger(name = 'test'): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger({ name, level: 'debug', destination: dest }), lines };
}

/** Creates a store with a first admin and their token, as `ferry-hub init` does. */
export async function initDataDir(dataDir: string, database?: string): Promise<string> {
  const store = await openStore({ dataDir, database }, { create: true });
  try {
    return await store.tx(async () => {
      const u = await store.people.createUser({ name: 'admin', kind: 'person', vendorRole: 'admin', passwordHash: null }, null, Date.now());
      return (await store.people.createToken({ userId: u.id, name: 'admin-initial', role: 'admin', tenants: null, expiresAt: null }, null, Date.now())).token;
    });
  } finally {
    await store.close();
    loadOrCreateHubKey(dataDir);
  }
}

let people = 0;

/** A person with grants and a token, straight in the store. */
export async function makePerson(
  store: Store,
  grants: { vendorRole?: VendorRole | null; tenants?: Record<string, TenantRole>; passwordHash?: string | null },
  scope?: { role: Role; tenants: string[] | null },
): Promise<{ name: string; userId: string; token: string }> {
  const name = `person-${process.pid}-${++people}`;
  return store.tx(async () => {
    const now = Date.now();
    const u = await store.people.createUser({ name, kind: 'person', vendorRole: grants.vendorRole ?? null, passwordHash: grants.passwordHash ?? null }, null, now);
    for (const [tenant, role] of Object.entries(grants.tenants ?? {})) await store.people.grant(u.id, (await store.fleet.tenant(tenant)).id, role, null, now);
    const role: Role = scope?.role ?? grants.vendorRole ?? Object.values(grants.tenants ?? {})[0] ?? 'viewer';
    const t = await store.people.createToken({ userId: u.id, name: `${name}-token`, role, tenants: scope?.tenants ?? null, expiresAt: null }, null, now);
    return { name, userId: u.id, token: t.token };
  });
}

export async function startHub(
  t: TestContext,
  opts: Partial<HubOptions> & { dataDir?: string; adminToken?: string; backend?: Backend; /** CA the test's own API client trusts (TLS hubs). */ clientCa?: Buffer } = {},
): Promise<TestHub> {
  const dataDir = opts.dataDir ?? tempDir(t, 'ferry-hub-');
  // FERRY_TEST_STORE=postgres runs every in-process hub of the suite on PostgreSQL.
  const backend = opts.backend ?? (opts.database ? 'postgres' : ((process.env.FERRY_TEST_STORE as Backend | undefined) ?? 'sqlite'));
  const ownDatabase = !opts.database && backend === 'postgres';
  const database = opts.database ?? (ownDatabase ? await freshDatabase(null) : undefined);
  const adminToken = opts.adminToken ?? (await initDataDir(dataDir, database));
  const { log, lines } = memoryLogger('ferry-hub');
  const { clientCa, adminToken: _a, backend: _b, ...hubOpts } = opts;
  const hub = await createHub({ host: '127.0.0.1', port: 0, heartbeatMs: 15_000, log, ...hubOpts, dataDir, database });
  const dispatcher = clientCa ? new Agent({ connect: { ca: clientCa } }) : undefined;
  const api = async (method: string, path: string, body?: unknown, token: string | null = adminToken, headers: Record<string, string> = {}) => {
    const res = await request(hub.url + path, {
      dispatcher,
      method: method as 'GET',
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    return { status: res.statusCode, body: parsed as any, headers: res.headers };
  };
  // sqlite: through the hub's own writer connection, in a turn of its transaction queue. A second
  // connection in this process would block the event loop waiting for a transaction the hub can
  // only finish once the loop runs again (a deadlock of the test's own making).
  const rawSql = async <T,>(sql: string, params: unknown[] = []): Promise<T[]> => {
    if (database || closed) return rawSqlOn<T>({ dataDir, database }, sql, params);
    const conn = (hub.store.db as SqliteDb).rawForTests();
    return hub.store.tx(async () => {
      const st = conn.prepare(sql);
      if (st.reader) return st.all(...params) as T[];
      st.run(...params);
      return [];
    });
  };
  let closed = false;
  const close = async () => {
    if (!closed) {
      closed = true;
      await hub.close();
    }
  };
  if (database) usesDatabase(database, close);
  t.after(async () => {
    await close();
    if (ownDatabase) await dropDatabase(new URL(database!).pathname.slice(1));
  });
  return {
    hub,
    url: hub.url,
    dataDir,
    database,
    backend,
    adminToken,
    logs: lines,
    api,
    rawSql,
    tokenFor: async (role) => (await makePerson(hub.store, { vendorRole: role })).token,
    person: (grants, scope) => makePerson(hub.store, { vendorRole: grants.vendorRole, tenants: grants.tenants }, scope),
    close,
  };
}

/** The sqlite file of a hub's data dir (tests that read or tamper with it directly). */
export { sqlitePath as dbPath };

/** Where a hub keeps its state: the data dir (signing key, sqlite file) and, on PostgreSQL, the database. */
export interface StoreLoc {
  dataDir: string;
  database?: string;
}

const int8 = { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) };

/** Raw SQL (`?` placeholders) on a hub's database behind its back, on a connection of its own. */
export async function rawSqlOn<T = Record<string, unknown>>(loc: StoreLoc, sql: string, params: unknown[] = []): Promise<T[]> {
  if (loc.database) {
    const pg = postgres(loc.database, { max: 1, onnotice: () => {}, types: { int8 } });
    try {
      let n = 0;
      return (await pg.unsafe(sql.replace(/\?/g, () => `$${++n}`), params as never[])) as unknown as T[];
    } finally {
      await pg.end({ timeout: 1 });
    }
  }
  const db = new Database(sqlitePath(loc.dataDir));
  try {
    const st = db.prepare(sql);
    if (st.reader) return st.all(...params) as T[];
    st.run(...params);
    return [];
  } finally {
    db.close();
  }
}

/** A copy of a (stopped) hub's state: the data dir, and on PostgreSQL a database made from it as a template. */
export async function copyStore(t: TestContext, loc: StoreLoc): Promise<StoreLoc> {
  const dataDir = join(tempDir(t), 'hub');
  cpSync(loc.dataDir, dataDir, { recursive: true });
  if (!loc.database) return { dataDir };
  const name = `ferry_c_${randomBytes(6).toString('hex')}`;
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name} TEMPLATE ${new URL(loc.database).pathname.slice(1)}`);
  } finally {
    await admin.end({ timeout: 1 });
  }
  const u = new URL(loc.database);
  u.pathname = `/${name}`;
  const url = u.toString();
  t.after(async () => {
    await closeUsers(url);
    await dropDatabase(name);
  });
  return { dataDir, database: url };
}

/** What an intruder with the database does first: switch off the audit tables' append-only triggers. */
export async function dropAuditTriggers(loc: StoreLoc): Promise<void> {
  if (loc.database) {
    for (const t of ['audit_entries', 'audit_checkpoints', 'audit_cosignatures', 'audit_personal']) await rawSqlOn(loc, `ALTER TABLE ${t} DISABLE TRIGGER USER`);
    return;
  }
  for (const tr of ['audit_entries_no_update', 'audit_entries_no_delete', 'audit_checkpoints_no_update', 'audit_checkpoints_no_delete']) await rawSqlOn(loc, `DROP TRIGGER IF EXISTS ${tr}`);
}

/** Two data dirs holding the same hub signing key (every replica needs it) on one fresh PostgreSQL database, and the admin's token. */
export async function replicaDirs(t: TestContext): Promise<{ database: string; dirs: [string, string]; token: string }> {
  const database = await freshDatabase(t);
  const a = join(tempDir(t), 'a');
  const token = await initDataDir(a, database);
  const b = join(tempDir(t), 'b');
  cpSync(a, b, { recursive: true });
  return { database, dirs: [a, b], token };
}
