// Starts a real hub in this process: real sqlite file in a temp dir, real
// HTTP and WebSocket server on an ephemeral port. Closed after the test.
import type { TestContext } from 'node:test';
import { Writable } from 'node:stream';
import { Agent, request } from 'undici';
import { createLogger, type Logger } from '../../shared/logger.js';
import { openDb } from '../../hub/db.js';
import { createHub, type Hub, type HubOptions } from '../../hub/server.js';
import { Store, type Role } from '../../hub/store.js';
import { tempDir } from './tmp.js';

export interface TestHub {
  hub: Hub;
  url: string;
  dataDir: string;
  adminToken: string;
  /** Parsed JSON log lines the hub wrote. */
  logs: Record<string, unknown>[];
  api<T = any>(method: string, path: string, body?: unknown, token?: string | null): Promise<{ status: number; body: T }>;
  tokenFor(role: Role): string;
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

/** Creates a data dir with a database and an admin token, as `ferry-hub init` does. */
export function initDataDir(dataDir: string): string {
  const db = openDb(dataDir, { create: true });
  const { token } = new Store(db).createApiToken('admin', 'admin', null, Date.now());
  db.close();
  return token;
}

export async function startHub(
  t: TestContext,
  opts: Partial<HubOptions> & { dataDir?: string; adminToken?: string; /** CA the test's own API client trusts (TLS hubs). */ clientCa?: Buffer } = {},
): Promise<TestHub> {
  const dataDir = opts.dataDir ?? tempDir(t, 'ferry-hub-');
  const adminToken = opts.adminToken ?? initDataDir(dataDir);
  const { log, lines } = memoryLogger('ferry-hub');
  const { clientCa, adminToken: _a, ...hubOpts } = opts;
  const hub = await createHub({ host: '127.0.0.1', port: 0, heartbeatMs: 15_000, log, ...hubOpts, dataDir });
  const dispatcher = clientCa ? new Agent({ connect: { ca: clientCa } }) : undefined;
  const api = async (method: string, path: string, body?: unknown, token: string | null = adminToken) => {
    const res = await request(hub.url + path, {
      dispatcher,
      method: method as 'GET',
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
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
    adminToken,
    logs: lines,
    api,
    tokenFor: (role) => hub.store.createApiToken(`test-${role}`, role, null, Date.now()).token,
    close,
  };
}
