// Starts a real hub in this process: a real sqlite file in a temp dir (or a
// real PostgreSQL database of its own), a real HTTP and WebSocket server on
// an ephemeral port. Closed after the test.
import type { TestContext } from 'node:test';
import { Writable } from 'node:stream';
import { Agent, request } from 'undici';
import { createLogger, type Logger } from '../../shared/logger.js';
import type { Role, TenantRole, VendorRole } from '../../shared/roles.js';
import { createHub, type Hub, type HubOptions } from '../../hub/server.js';
import { openStore, type Store } from '../../hub/store/store.js';
import { freshDatabase, type Backend } from './postgres.js';
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
  const backend = opts.backend ?? (opts.database ? 'postgres' : 'sqlite');
  const database = opts.database ?? (backend === 'postgres' ? await freshDatabase(t) : undefined);
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
  let closed = false;
  const close = async () => {
    if (!closed) {
      closed = true;
      await hub.close();
    }
  };
  t.after(close);
  return {
    hub,
    url: hub.url,
    dataDir,
    database,
    backend,
    adminToken,
    logs: lines,
    api,
    tokenFor: async (role) => (await makePerson(hub.store, { vendorRole: role })).token,
    person: (grants, scope) => makePerson(hub.store, { vendorRole: grants.vendorRole, tenants: grants.tenants }, scope),
    close,
  };
}

/** The sqlite file of a hub's data dir (tests that read or tamper with it directly). */
export { sqlitePath as dbPath } from '../../hub/store/sqlite.js';
