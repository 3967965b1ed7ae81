// The hub factory: one HTTP(S) server carrying the API, the probes and the
// agent WebSocket endpoint, over one store (embedded sqlite, or PostgreSQL
// shared by several replicas). `createHub` listens and resolves when ready;
// `close` stops accepting, closes agent sockets, drains and closes the
// store. A test starts one on port 0 with a temp data dir.
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { AGENT_PATH } from '../shared/auth.js';
import { FerryError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { AuditLog } from './audit/log.js';
import { Chat, type ChatOptions } from './chat/service.js';
import { Witnessing } from './audit/witness.js';
import { LocalCluster, PostgresCluster, newReplicaId, type Cluster } from './cluster/cluster.js';
import { Directives } from './directives.js';
import { Challenges, NonceClaims, sharedChallengeSecret } from './gateway/challenge.js';
import { Delivery } from './gateway/delivery.js';
import { Gateway } from './gateway/gateway.js';
import { Plans } from './gateway/plans.js';
import { OperationIssuer } from './operations/issue.js';
import { HubOperations } from './operations/operations.js';
import { loadOrCreateHubKey } from './hub-key.js';
import { buildApp, type RouteEntry } from './http/app.js';
import { Authenticator, SESSION_DEFAULTS, type SessionOptions } from './http/auth.js';
import type { HubContext } from './http/context.js';
import { AuthGuard, type GuardOptions } from './http/guard.js';
import { consoleRoutes } from './console/console.js';
import { auditRoutes } from './http/routes/audit.js';
import { chatRoutes } from './http/routes/chat.js';
import { fleetRoutes } from './http/routes/fleet.js';
import { peopleRoutes } from './http/routes/people.js';
import { imageRoutes } from './http/routes/images.js';
import { operationRoutes } from './http/routes/operations.js';
import { probeRoutes } from './http/routes/probes.js';
import { releaseRoutes } from './http/routes/releases.js';
import { rolloutRoutes } from './http/routes/rollouts.js';
import { checkRoutes } from './http/routes/checks.js';
import { Alerts } from './checks/alerts.js';
import { CheckIntake } from './checks/intake.js';
import type { AlertOptions } from './checks/rules.js';
import { WebhookSender, type WebhookOptions } from './checks/webhook.js';
import { HubMetrics } from './metrics/metrics.js';
import { metricsRoutes, serveMetrics } from './metrics/serve.js';
import { ORIGIN_DEFAULTS, Origin, type OriginOptions } from './registry/origin.js';
import { Prestaging } from './registry/prestage.js';
import { RelayProgress } from './registry/progress.js';
import { Releases } from './releases.js';
import { EventStreams, type EventStreamOptions } from './rollouts/events.js';
import { Rollouts } from './rollouts/scheduler.js';
import { PostgresDb } from './store/postgres.js';
import { openStore, type Store, type StoreLocation } from './store/store.js';
import { TrustRoots } from './trust.js';
import { upgradeRoutes } from './http/routes/upgrades.js';
import { AgentBundles } from './upgrades/bundles.js';
import { UpgradeReports } from './upgrades/reports.js';
import { BundleServer } from './upgrades/serve.js';

export interface HubOptions {
  /** Holds the hub's signing key, and the sqlite database unless `database` is given. */
  dataDir: string;
  /** postgres://... for a store shared by several replicas; absent: sqlite in dataDir. */
  database?: string;
  postgres?: StoreLocation['postgres'];
  host: string;
  port: number;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** The URL agents and browsers use; when set, agents must connect to and sign for its host. */
  publicUrl?: string;
  heartbeatMs: number;
  /** How often grown audit logs are checkpointed and sent to agents (default 60 s). */
  checkpointMs?: number;
  /** How often rollouts are re-examined for bake times, retries and timeouts (default 1 s). */
  rolloutTickMs?: number;
  /** GET /v1/events: heartbeat, stall limit, retention (defaults in hub/rollouts/events.ts). */
  events?: Partial<EventStreamOptions>;
  sessions?: Partial<SessionOptions>;
  guard?: Partial<GuardOptions>;
  /** API requests per minute per caller (default 3000; 0: none). */
  rateLimitPerMinute?: number;
  /** Open event streams per person (default 16). */
  maxStreamsPerUser?: number;
  /** The registry origin agents fetch images from: vendor registry credentials, limits (hub/registry/origin.ts). */
  registry?: Partial<OriginOptions>;
  /** ChatOps: confirmation and link-code lifetimes, the notifier's pace (hub/chat/). */
  chat?: { engine?: Partial<ChatOptions['engine']>; notifier?: Partial<ChatOptions['notifier']> };
  /** Alert rules: offline and stuck thresholds, reminders, flapping, check history (hub/checks/rules.ts). */
  alerts?: Partial<AlertOptions>;
  /** Every alert notice POSTed here, signed with the secret (hub/checks/webhook.ts). */
  webhook?: WebhookOptions;
  /** Serve GET /metrics on this address too, without credentials (port 0: any free one). */
  metricsListen?: { host: string; port: number };
  /** Benchmarks only: serve without authorisation checks. */
  unsafeNoAuthorisation?: boolean;
  log: Logger;
}

export interface Hub {
  url: string;
  port: number;
  store: Store;
  cluster: Cluster;
  gateway: Gateway;
  trust: TrustRoots;
  releases: Releases;
  directives: Directives;
  delivery: Delivery;
  audit: AuditLog;
  witness: Witnessing;
  /** Rollouts; `rollouts.events` emits 'transition' for every change made here. */
  rollouts: Rollouts;
  /** The durable rollout event stream behind GET /v1/events. */
  events: EventStreams;
  /** Failed authentication, aggregated for the audit log. */
  guard: AuthGuard;
  /** The registry origin agents fetch images from (`flush` writes what was served to the audit log now). */
  registry: Origin;
  /** ChatOps: the engine (`chat.handle` runs a message with no platform), transports, notifier. */
  chat: Chat;
  /**
   * Alerts: `alerts.events` emits 'alert' (hub/checks/alerts.ts `Alert`) for
   * each notice, once, on the leading replica, after it is committed — the
   * hook chat notifiers subscribe to.
   */
  alerts: Alerts;
  metrics: HubMetrics;
  /** The port of --metrics-listen, when given. */
  metricsPort: number | null;
  /** Every API route with its access rule (the route-matrix test walks it). */
  routes: RouteEntry[];
  /** The fastify app (tests answer requests with `app.inject()`, no socket). */
  app: FastifyInstance;
  close(): Promise<void>;
}

export async function createHub(opts: HubOptions): Promise<Hub> {
  const store = await openStore({ dataDir: opts.dataDir, database: opts.database, postgres: opts.postgres });
  const log = opts.log;
  try {
    return await assemble(opts, store, log);
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
}

async function assemble(opts: HubOptions, store: Store, log: Logger): Promise<Hub> {
  const hubKey = loadOrCreateHubKey(opts.dataDir);
  const replicaId = newReplicaId();
  const cluster: Cluster = store.db instanceof PostgresDb ? new PostgresCluster(replicaId, store.db, log.child({ component: 'cluster', replica: replicaId })) : new LocalCluster(replicaId);
  const challenges = cluster.shared
    ? new Challenges(sharedChallengeSecret(hubKey.secretKey.subarray(0, 32)), new NonceClaims((claims) => store.detached(() => store.fleet.claimNonces(claims))).claim)
    : new Challenges();
  const publicUrl = opts.publicUrl ? new URL(opts.publicUrl) : undefined;
  const publicHost = publicUrl?.host.toLowerCase();
  const gateway = new Gateway({ store, cluster, challenges, log: log.child({ component: 'gateway' }), heartbeatMs: opts.heartbeatMs, publicHost });
  const trust = new TrustRoots(store, hubKey);
  const releases = new Releases(store);
  const directives = new Directives(store, trust, releases, hubKey, log.child({ component: 'directives' }));
  const audit = new AuditLog(store, hubKey, log.child({ component: 'audit' }));
  const delivery = new Delivery(gateway, directives, trust, store, audit, cluster, log.child({ component: 'delivery' }));
  const witness = new Witnessing(audit, gateway, store, cluster, log.child({ component: 'witness' }), opts.checkpointMs ?? 60_000);
  const plans = new Plans(gateway, store, cluster, log.child({ component: 'plans' }));
  const issuer = new OperationIssuer(store, trust, hubKey);
  const operations = new HubOperations(gateway, store, cluster, audit, log.child({ component: 'operations' }));
  const rollouts = new Rollouts(store, releases, delivery, gateway, audit, cluster, log.child({ component: 'rollouts' }), Date.now, opts.rolloutTickMs ?? 1000);
  const bundles = new AgentBundles(store);
  directives.bundles = bundles;
  rollouts.agentBundles = (version) => bundles.find(version);
  const events = new EventStreams(store, rollouts.events, cluster, log.child({ component: 'events' }), Date.now, opts.events);
  const guard = new AuthGuard(store, audit, log.child({ component: 'auth' }), Date.now, opts.guard);
  const secure = opts.tls !== undefined || publicUrl?.protocol === 'https:';
  // The origin browsers must send on cookie-authenticated writes.
  const origin = (headers: { host?: string }) => (publicUrl ? publicUrl.origin : `${opts.tls ? 'https' : 'http'}://${(headers.host ?? '').toLowerCase()}`);
  const auth = new Authenticator(store, guard, log.child({ component: 'auth' }), origin, secure, { ...SESSION_DEFAULTS, ...opts.sessions });
  let ready = false;
  const ctx: HubContext = {
    store,
    cluster,
    gateway,
    challenges,
    trust,
    releases,
    directives,
    delivery,
    plans,
    issuer,
    operations,
    audit,
    witness,
    rollouts,
    events,
    auth,
    guard,
    log: log.child({ component: 'api' }),
    publicHost,
    now: Date.now,
    isReady: () => ready,
    maxStreamsPerUser: opts.maxStreamsPerUser ?? 16,
  };

  const { app, routes, route } = await buildApp({ log: ctx.log, auth, tls: opts.tls, rateLimitPerMinute: opts.rateLimitPerMinute ?? 3000, unsafeNoAuthorisation: opts.unsafeNoAuthorisation });
  probeRoutes(route, ctx);
  fleetRoutes(route, ctx);
  peopleRoutes(route, ctx);
  releaseRoutes(route, ctx);
  rolloutRoutes(route, ctx);
  auditRoutes(route, ctx);
  const progress = new RelayProgress(store, gateway, log.child({ component: 'relay' }));
  imageRoutes(route, ctx, progress);
  operationRoutes(route, ctx);
  const registry = new Origin(ctx, { ...ORIGIN_DEFAULTS, ...opts.registry });
  registry.routes(route);
  const chat = new Chat(ctx, hubKey, { engine: { publicUrl: opts.publicUrl ?? null, ...opts.chat?.engine }, notifier: opts.chat?.notifier ?? {} });
  const chatHooks = chatRoutes(route, ctx, chat);
  // Watching what runs: checks and figures from agents, alert rules (leader), webhook, metrics.
  const intake = new CheckIntake(store, gateway, audit, log.child({ component: 'checks' }));
  intake.watchAlarms(delivery);
  const ringEvents = () => {
    events.wake();
    if (cluster.shared) cluster.publish('events', {});
  };
  intake.onScaled = ringEvents;
  const alerts = new Alerts(store, cluster, gateway, log.child({ component: 'alerts' }), opts.alerts, !!opts.webhook, ringEvents);
  intake.onStored = () => alerts.kick();
  const webhook = opts.webhook ? new WebhookSender(store, cluster, log.child({ component: 'webhook' }), opts.webhook) : null;
  alerts.events.on('alert', () => webhook?.kick());
  checkRoutes(route, ctx);
  const metrics = new HubMetrics({ store, cluster, gateway, delivery, rollouts, events, alerts, webhook, log: log.child({ component: 'metrics' }) });
  metrics.instrumentHttp(app);
  metrics.instrumentDb(store.db);
  metricsRoutes(route, metrics);
  consoleRoutes(app, ctx);
  upgradeRoutes(route, ctx, bundles);
  new BundleServer(ctx).routes(route);
  new UpgradeReports(store, gateway, directives, audit, rollouts, log.child({ component: 'upgrades' }));
  const prestaging = new Prestaging(store, gateway, releases, trust, cluster, log.child({ component: 'prestage' }));
  rollouts.events.on('transition', (t: { kind: string; reason?: string; rollout: string }) => {
    if (t.kind === 'rollout' && t.reason === 'created') prestaging.rolloutCreated(t.rollout);
  });
  await app.ready();

  const server = app.server;
  server.on('upgrade', (req, socket, head) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== AGENT_PATH || !ready) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    gateway.handleUpgrade(req, socket, head);
  });

  await cluster.start();
  await gateway.presence.start();
  try {
    // A reconnect storm after a restart overflows Node's default backlog (511): bench/connections.
    await app.listen({ port: opts.port, host: opts.host, backlog: 4096 });
  } catch (err) {
    rollouts.stop();
    events.close();
    await registry.close();
    await cluster.close();
    throw new FerryError('FERRY_E_CONFIG_INVALID', `cannot listen on ${opts.host}:${opts.port}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  let metricsServer: Awaited<ReturnType<typeof serveMetrics>> | null = null;
  if (opts.metricsListen) {
    try {
      metricsServer = await serveMetrics(opts.metricsListen.host, opts.metricsListen.port, metrics);
    } catch (err) {
      await app.close();
      rollouts.stop();
      events.close();
      await registry.close();
      await cluster.close();
      throw err;
    }
  }
  alerts.start();
  webhook?.start();
  metrics.start();
  ready = true;
  chat.start();
  if (cluster.leader) void events.prune().catch(() => 0);
  const port = (server.address() as AddressInfo).port;
  const shownHost = opts.host.includes(':') ? `[${opts.host}]` : opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host;
  const url = `${opts.tls ? 'https' : 'http'}://${shownHost}:${port}`;
  log.info({ url, dataDir: opts.dataDir, store: store.backend, replica: replicaId }, 'hub listening');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      ready = false;
      witness.stop();
      rollouts.stop();
      alerts.stop();
      webhook?.stop();
      metrics.stop();
      await metricsServer?.close();
      events.close(); // ends open event streams, so the server can close
      const stopped = app.close();
      await gateway.close();
      server.closeIdleConnections();
      setTimeout(() => server.closeAllConnections(), 2000).unref();
      await stopped;
      // Each step that writes to the database runs even when one before it failed (a database
      // that went away): what could not be saved is logged, and the hub still stops.
      const step = async (what: string, fn: () => Promise<unknown> | unknown) => {
        try {
          await fn();
        } catch (err) {
          log.error({ err: (err as Error).message, code: (err as FerryError).code }, `hub stop: ${what} failed`);
        }
      };
      await step('waiting for rollout passes', () => rollouts.idle());
      await step('waiting for chat hooks', () => chatHooks.idle());
      await step('closing chat', () => chat.close());
      delivery.close();
      operations.close();
      // What was received but is still batched in memory.
      await step('saving batched agent reports', () => delivery.flushReports(Infinity));
      await step('saving rollout progress', () => progress.flush());
      await step('saving agent facts', () => intake.flush());
      await step('closing the registry relay', () => registry.close());
      await step('saving token use', () => auth.close());
      await step('saving the request guard', () => guard.close());
      await step('leaving the cluster', () => cluster.close());
      await step('closing the database', () => store.close());
      log.info('hub stopped');
    })());

  return { url, port, store, cluster, gateway, trust, releases, directives, delivery, audit, witness, rollouts, events, guard, registry, chat, alerts, metrics, metricsPort: metricsServer?.port ?? null, routes, app, close };
}
