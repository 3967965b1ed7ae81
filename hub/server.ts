// The hub factory: one HTTP(S) server carrying the API, the probes and the
// agent WebSocket endpoint, over one sqlite database. `createHub` listens and
// resolves when ready; `close` stops accepting, closes agent sockets, drains
// and closes the database. A test starts one on port 0 with a temp data dir.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { AGENT_PATH } from '../shared/auth.js';
import { FerryError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { createApi } from './api.js';
import { Challenges } from './challenge.js';
import { openDb } from './db.js';
import { Gateway } from './gateway.js';
import { AuditLog } from './audit.js';
import { Delivery } from './delivery.js';
import { Witnessing } from './witness.js';
import { Directives } from './directives.js';
import { EventStreams, type EventStreamOptions } from './events.js';
import { loadOrCreateHubKey } from './hub-key.js';
import { Releases } from './releases.js';
import { Rollouts } from './rollouts/scheduler.js';
import { Store } from './store.js';
import { TrustRoots } from './trust.js';

export interface HubOptions {
  dataDir: string;
  host: string;
  port: number;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** The URL agents use; when set, handshakes must be signed for its host. */
  publicUrl?: string;
  heartbeatMs: number;
  /** How often grown audit logs are checkpointed and sent to agents (default 60 s). */
  checkpointMs?: number;
  /** How often rollouts are re-examined for bake times, retries and timeouts (default 1 s). */
  rolloutTickMs?: number;
  /** GET /v1/events: heartbeat, stall limit, retention (defaults in hub/events.ts). */
  events?: Partial<EventStreamOptions>;
  log: Logger;
}

export interface Hub {
  url: string;
  port: number;
  store: Store;
  gateway: Gateway;
  trust: TrustRoots;
  releases: Releases;
  directives: Directives;
  audit: AuditLog;
  witness: Witnessing;
  /** Rollouts; `rollouts.events` emits 'transition' for every change. */
  rollouts: Rollouts;
  /** The durable rollout event stream behind GET /v1/events. */
  events: EventStreams;
  close(): Promise<void>;
}

export async function createHub(opts: HubOptions): Promise<Hub> {
  const db = openDb(opts.dataDir);
  const hubKey = loadOrCreateHubKey(opts.dataDir);
  const store = new Store(db);
  const challenges = new Challenges();
  const publicHost = opts.publicUrl ? new URL(opts.publicUrl).host.toLowerCase() : undefined;
  const gateway = new Gateway({ store, challenges, log: opts.log.child({ component: 'gateway' }), heartbeatMs: opts.heartbeatMs, publicHost });
  const trust = new TrustRoots(db, store, hubKey);
  const releases = new Releases(db);
  const directives = new Directives(db, store, trust, releases, hubKey, opts.log.child({ component: 'directives' }));
  const audit = new AuditLog(db, hubKey, opts.log.child({ component: 'audit' }));
  const delivery = new Delivery(gateway, directives, trust, store, audit, opts.log.child({ component: 'delivery' }));
  const witness = new Witnessing(audit, gateway, store, opts.log.child({ component: 'witness' }), opts.checkpointMs ?? 60_000);
  const rollouts = new Rollouts(store, releases, delivery, gateway, audit, opts.log.child({ component: 'rollouts' }), Date.now, opts.rolloutTickMs ?? 1000);
  const events = new EventStreams(db, rollouts.events, opts.log.child({ component: 'events' }), Date.now, opts.events);
  let ready = false;
  const api = createApi({
    store,
    gateway,
    challenges,
    trust,
    releases,
    directives,
    delivery,
    audit,
    witness,
    rollouts,
    events,
    log: opts.log.child({ component: 'api' }),
    publicHost,
    now: Date.now,
    isReady: () => ready,
  });

  const server: Server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, api) : createHttpServer(api);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.on('upgrade', (req, socket, head) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== AGENT_PATH || !ready) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    gateway.handleUpgrade(req, socket, head);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return;
    // As Node itself would answer: a slow client is a timeout, not a bad request.
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      rollouts.stop();
      events.close();
      db.close();
      reject(new FerryError('FERRY_E_CONFIG_INVALID', `cannot listen on ${opts.host}:${opts.port}: ${err.code ?? err.message}`, { cause: err }));
    });
    // A reconnect storm after a restart overflows Node's default backlog (511): bench/connections.
    server.listen({ port: opts.port, host: opts.host, backlog: 4096 }, () => resolve());
  });
  ready = true;
  const port = (server.address() as AddressInfo).port;
  const shownHost = opts.host.includes(':') ? `[${opts.host}]` : opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host;
  const url = `${opts.tls ? 'https' : 'http'}://${shownHost}:${port}`;
  opts.log.info({ url, dataDir: opts.dataDir }, 'hub listening');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      ready = false;
      witness.stop();
      rollouts.stop();
      events.close(); // ends open event streams, so the server can close
      const stopped = new Promise<void>((r) => server.close(() => r()));
      await gateway.close();
      server.closeIdleConnections();
      setTimeout(() => server.closeAllConnections(), 2000).unref();
      await stopped;
      db.close();
      opts.log.info('hub stopped');
    })());

  return { url, port, store, gateway, trust, releases, directives, audit, witness, rollouts, events, close };
}
