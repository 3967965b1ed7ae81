// The hub's Prometheus metrics (prom-client, its own registry): the hub's
// internals — agent sockets, handshakes, messages and directives, acks,
// rollouts, event stream clients, API latency (fastify hooks), database
// timings, alerts — the process's own (prom-client's defaults), and fleet
// figures per tenant. Labels are bounded: tenant, state, message type, route
// template, error code; never an agent id.
//
// A scrape is cheap with any fleet: in-memory counters are read as they are,
// and the fleet gauges come from an aggregate the hub refreshes every
// REFRESH_MS (a handful of GROUP BY queries), never a scan per scrape. Fleet
// figures come from the database, so every replica shows the same ones
// (aggregate across replicas with max by (tenant), not sum).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../shared/logger.js';
import type { Alerts } from '../checks/alerts.js';
import type { WebhookSender } from '../checks/webhook.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Delivery } from '../gateway/delivery.js';
import type { Gateway } from '../gateway/gateway.js';
import type { EventStreams } from '../rollouts/events.js';
import type { Rollouts } from '../rollouts/scheduler.js';
import type { Db } from '../store/db.js';
import type { Store } from '../store/store.js';

export const REFRESH_MS = 15_000;
/** Agents whose figures are older than this are not counted (they stopped reporting). */
const FIGURES_FRESH_MS = 5 * 60_000;
const AGENT_MESSAGES = ['hello', 'ack', 'cosign', 'status', 'plan', 'relay', 'checks', 'figures'] as const;

export interface MetricsSources {
  store: Store;
  cluster: Cluster;
  gateway: Gateway;
  delivery: Delivery;
  rollouts: Rollouts;
  events: EventStreams;
  alerts: Alerts;
  webhook: WebhookSender | null;
  log: Logger;
  now?: () => number;
}

interface Fleet {
  agents: { tenant: string; state: 'connected' | 'offline' | 'revoked'; n: number }[];
  figures: { tenant: string; agents: number; containersRunning: number; servicesHealthy: number; servicesUnhealthy: number }[];
  checks: { tenant: string; state: string; n: number }[];
  rollouts: { state: string; n: number }[];
  alerts: { kind: string; n: number }[];
  at: number;
}

export class HubMetrics {
  readonly registry = new Registry();
  private fleet: Fleet = { agents: [], figures: [], checks: [], rollouts: [], alerts: [], at: 0 };
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | null = null;
  private readonly http: Histogram<'method' | 'route' | 'status'>;
  private readonly db: Histogram<'op'>;
  private readonly now: () => number;

  constructor(private readonly s: MetricsSources) {
    this.now = s.now ?? Date.now;
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    const g = s.gateway;

    new Gauge({ name: 'ferry_hub_leader', help: 'Whether this replica leads (rollout scheduler, alert rules, webhook)', registers: [r], collect() { this.set(s.cluster.leader ? 1 : 0); } });
    new Gauge({ name: 'ferry_hub_agents_connected', help: 'Agent sockets held by this replica', registers: [r], collect() { this.set(g.connectedCount); } });
    const handshakes = new Counter({ name: 'ferry_hub_handshakes_total', help: 'Agent handshakes at the WebSocket upgrade, by result (ok, or the refusal code)', labelNames: ['result'], registers: [r] });
    g.on('connected', () => handshakes.inc({ result: 'ok' }));
    g.on('refused', (code: string) => handshakes.inc({ result: code }));
    const received = new Counter({ name: 'ferry_hub_agent_messages_total', help: 'Messages received from agents, by type', labelNames: ['type'], registers: [r] });
    for (const type of AGENT_MESSAGES) g.on(type, () => received.inc({ type }));
    new Counter({
      name: 'ferry_hub_messages_sent_total', help: 'Messages sent to agents, by type (directives among them)', labelNames: ['type'], registers: [r],
      collect() {
        this.reset();
        for (const [type, n] of Object.entries(g.sentCounts)) this.inc({ type }, n);
      },
    });
    const acks = new Counter({ name: 'ferry_hub_acks_total', help: 'Directive acknowledgements from agents, by result', labelNames: ['result'], registers: [r] });
    g.on('ack', (_a: string, ack: { accepted: boolean; duplicate?: boolean }) => acks.inc({ result: ack.accepted ? (ack.duplicate ? 'duplicate' : 'accepted') : 'refused' }));
    new Gauge({ name: 'ferry_hub_report_queue_dropped', help: 'Status reports dropped because the report queue was full (agents report again)', registers: [r], collect() { this.set(s.delivery.droppedReports); } });
    const transitions = new Counter({ name: 'ferry_hub_rollout_transitions_total', help: 'Rollout transitions made by this replica, by kind', labelNames: ['kind'], registers: [r] });
    s.rollouts.events.on('transition', (t: { kind: string }) => transitions.inc({ kind: t.kind }));
    new Gauge({ name: 'ferry_hub_event_stream_clients', help: 'Open GET /v1/events streams on this replica', registers: [r], collect() { this.set(s.events.size); } });
    new Gauge({ name: 'ferry_hub_alert_notices', help: 'Alert notices made by this replica since it started', registers: [r], collect() { this.set(s.alerts.notices); } });
    new Gauge({
      name: 'ferry_hub_webhook_deliveries', help: 'Alert webhook POSTs by this replica since it started, by result', labelNames: ['result'], registers: [r],
      collect() {
        this.set({ result: 'delivered' }, s.webhook?.counts.delivered ?? 0);
        this.set({ result: 'failed' }, s.webhook?.counts.failed ?? 0);
      },
    });
    this.http = new Histogram({ name: 'ferry_hub_http_request_duration_seconds', help: 'API request latency, by method, route template and status class', labelNames: ['method', 'route', 'status'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [r] });
    this.db = new Histogram({ name: 'ferry_hub_db_query_duration_seconds', help: 'Database statements and transactions, by operation', labelNames: ['op'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [r] });

    const fleet = () => this.fleet;
    new Gauge({
      name: 'ferry_hub_rollouts', help: 'Rollouts by state', labelNames: ['state'], registers: [r],
      collect() {
        this.reset();
        for (const x of fleet().rollouts) this.set({ state: x.state }, x.n);
      },
    });
    new Gauge({
      name: 'ferry_hub_alerts_firing', help: 'Alerts firing, by kind', labelNames: ['kind'], registers: [r],
      collect() {
        this.reset();
        for (const x of fleet().alerts) this.set({ kind: x.kind }, x.n);
      },
    });
    new Gauge({
      name: 'ferry_agents', help: 'Agents per tenant by state (connected to any replica, offline, revoked)', labelNames: ['tenant', 'state'], registers: [r],
      collect() {
        this.reset();
        for (const x of fleet().agents) this.set({ tenant: x.tenant, state: x.state }, x.n);
      },
    });
    new Gauge({
      name: 'ferry_services', help: 'Service containers per tenant by health, as agents last reported (figures)', labelNames: ['tenant', 'health'], registers: [r],
      collect() {
        this.reset();
        for (const x of fleet().figures) {
          this.set({ tenant: x.tenant, health: 'healthy' }, x.servicesHealthy);
          this.set({ tenant: x.tenant, health: 'unhealthy' }, x.servicesUnhealthy);
        }
      },
    });
    new Gauge({
      name: 'ferry_containers_running', help: 'Running containers per tenant, as agents last reported', labelNames: ['tenant'], registers: [r],
      collect() {
        this.reset();
        for (const x of fleet().figures) this.set({ tenant: x.tenant }, x.containersRunning);
      },
    });
    new Gauge({
      name: 'ferry_checks', help: 'Service checks per tenant by state', labelNames: ['tenant', 'state'], registers: [r],
      collect() {
        this.reset();
        for (const x of fleet().checks) this.set({ tenant: x.tenant, state: x.state }, x.n);
      },
    });
    const now = this.now;
    new Gauge({ name: 'ferry_hub_fleet_aggregate_age_seconds', help: 'Age of the aggregate the fleet gauges show (refreshed every 15 s)', registers: [r], collect() { this.set(fleet().at ? (now() - fleet().at) / 1000 : -1); } });
  }

  /** API latency by route template (bounded), from fastify's own timing. */
  instrumentHttp(app: FastifyInstance): void {
    app.addHook('onResponse', async (req, reply) => {
      const route = req.routeOptions.url ?? 'unmatched';
      this.http.observe({ method: req.method, route, status: `${Math.floor(reply.statusCode / 100)}xx` }, reply.elapsedTime / 1000);
    });
  }

  /** Times every statement and transaction of the store's database (the same object every rows class holds). */
  instrumentDb(db: Db): void {
    const h = this.db;
    const target = db as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    for (const op of ['all', 'get', 'values', 'run', 'tx'] as const) {
      const orig = target[op]!.bind(db);
      target[op] = (...args: unknown[]) => {
        const end = h.startTimer({ op });
        return orig(...args).finally(() => end());
      };
    }
  }

  start(): void {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The aggregate behind the fleet gauges (also what a test waits for). */
  refresh(): Promise<void> {
    this.refreshing ??= this.s.store
      .detached(async () => {
        const now = this.now();
        const { store, gateway } = this.s;
        const agents = new Map<string, number>();
        for (const a of await store.checks.presence()) {
          const state = a.revoked ? 'revoked' : gateway.presence.isConnected({ id: a.id, replica: a.replica, leaseUntil: a.leaseUntil }) ? 'connected' : 'offline';
          const k = `${a.tenant}\n${state}`;
          agents.set(k, (agents.get(k) ?? 0) + 1);
        }
        const firing = await store.checks.alerts({ state: 'firing' });
        const byKind = new Map<string, number>();
        for (const a of firing) byKind.set(a.kind, (byKind.get(a.kind) ?? 0) + 1);
        this.fleet = {
          agents: [...agents].map(([k, n]) => ({ tenant: k.split('\n')[0]!, state: k.split('\n')[1] as 'connected', n })),
          figures: await store.checks.tenantFigures(now - FIGURES_FRESH_MS),
          checks: await store.checks.tenantChecks(),
          rollouts: await store.checks.rolloutStates(),
          alerts: [...byKind].map(([kind, n]) => ({ kind, n })),
          at: now,
        };
      })
      .catch((err: unknown) => this.s.log.warn({ err: (err as Error).message }, 'metrics: fleet aggregate failed'))
      .finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
