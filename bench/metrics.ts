// What a Prometheus scrape of the hub costs with a fleet behind it: GET
// /metrics over real HTTP (keep-alive, a vendor viewer's token) on a hub whose
// sqlite store holds N agents in 20 tenants, each with its figures and 5
// checks; against GET /v1/agents on the same hub (the API's own listing of the
// same fleet, what a dashboard would poll without /metrics). Also the fleet
// aggregate the hub refreshes every 15 s (off the scrape path), timed on its own.
//   node dist/bench/metrics.js [agents=2000] [scrapes=300]
// Requests alternate (one of each per round) so drift hits both alike.
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { createHub } from '../hub/server.js';
import { newId } from '../hub/store/fleet.js';
import { SqliteDb } from '../hub/store/sqlite.js';
import { Store } from '../hub/store/store.js';
import { encodePublicKey, generateKeyPair } from '../shared/keys.js';
import { silentLogger } from '../shared/logger.js';
import { fmt, quantile, table } from './lib/report.js';

const AGENTS = Math.min(50_000, Math.max(10, Number(process.argv[2] ?? 2000) || 2000));
const SCRAPES = Math.max(20, Number(process.argv[3] ?? 300) || 300);
const WARMUP = 20;
const TENANTS = 20;
const CHECKS = 5;

const root = mkdtempSync(join(tmpdir(), 'ferry-bench-metrics-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const store = new Store(SqliteDb.open(root, { create: true }));
const now = Date.now();
const token = await store.tx(async () => {
  const viewer = await store.people.createUser({ name: 'prometheus', kind: 'person', vendorRole: 'viewer', passwordHash: null }, null, now);
  const tenants = [];
  for (let t = 0; t < TENANTS; t++) tenants.push(await store.fleet.createTenant(`bank-${t}`, now));
  for (let i = 0; i < AGENTS; i++) {
    const id = newId('agt');
    const tenant = tenants[i % TENANTS]!;
    await store.db.run('INSERT INTO agents (id, tenant_id, name, public_key, labels, enrolled_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [id, tenant.id, `host-${i}`, encodePublicKey(generateKeyPair().publicKey), '{}', now, now]);
    await store.db.run(
      'INSERT INTO agent_figures (agent_id, tenant, at, containers, containers_running, services_healthy, services_unhealthy, checks_passing, checks_failing, checks_pending, rss_bytes, cpu_ms) VALUES (?, ?, ?, 6, 6, 5, 1, 4, 1, 0, 60000000, 1000)',
      [id, tenant.name, now],
    );
    for (let c = 0; c < CHECKS; c++) {
      await store.db.run("INSERT INTO checks (agent_id, tenant, stack, name, version, kind, target, state, since, last_error, updated_at) VALUES (?, ?, 'shop', ?, '1.0.0', 'http', 'GET http://web:8080/', ?, ?, NULL, ?)", [id, tenant.name, `c${c}`, c === 0 ? 'failing' : 'passing', now, now]);
    }
  }
  return (await store.people.createToken({ userId: viewer.id, name: 'p', role: 'viewer', tenants: null, expiresAt: null }, null, now)).token;
});
await store.close();

const hub = await createHub({ dataDir: root, host: '127.0.0.1', port: 0, heartbeatMs: 60_000, checkpointMs: 3_600_000, rateLimitPerMinute: 0, log: silentLogger() });
const refresh: number[] = [];
for (let i = 0; i < 30; i++) {
  const t0 = performance.now();
  await hub.metrics.refresh();
  refresh.push(performance.now() - t0);
}

async function once(dispatcher: Agent, path: string): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  const res = await request(`${hub.url}${path}`, { dispatcher, headers: { authorization: `Bearer ${token}` } });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET ${path}: ${res.statusCode}`);
  return { ms: performance.now() - t0, bytes: text.length };
}

const da = new Agent({ connections: 1, pipelining: 1 });
const db = new Agent({ connections: 1, pipelining: 1 });
const scrape: number[] = [];
const list: number[] = [];
let sizes = { metrics: 0, agents: 0 };
for (let i = 0; i < WARMUP + SCRAPES; i++) {
  const order = i % 2 === 0 ? ['m', 'a'] : ['a', 'm'];
  for (const x of order) {
    const r = await once(x === 'm' ? da : db, x === 'm' ? '/metrics' : '/v1/agents');
    if (i < WARMUP) continue;
    if (x === 'm') {
      scrape.push(r.ms);
      sizes.metrics = r.bytes;
    } else {
      list.push(r.ms);
      sizes.agents = r.bytes;
    }
  }
}
await da.close();
await db.close();
await hub.close();

const q = (xs: number[], p: number) => fmt(quantile(xs, p), 2);
console.log(`ferry bench:metrics — node ${process.version}, ${availableParallelism()} cpus (${cpus()[0]?.model.trim() ?? '?'}), ${AGENTS} agents in ${TENANTS} tenants with figures and ${CHECKS} checks each (sqlite), ${SCRAPES} requests each (after ${WARMUP})\n`);
console.log(table([
  ['', 'p50 (ms)', 'p99 (ms)', 'max (ms)', 'body (KB)'],
  ['GET /metrics', q(scrape, 0.5), q(scrape, 0.99), q(scrape, 1), fmt(sizes.metrics / 1024)],
  ['GET /v1/agents (peer)', q(list, 0.5), q(list, 0.99), q(list, 1), fmt(sizes.agents / 1024)],
  ['fleet aggregate refresh (every 15 s)', q(refresh, 0.5), q(refresh, 0.99), q(refresh, 1), '-'],
]));
console.log(`\n/metrics p99 ${q(scrape, 0.99)} ms (target < 200 ms at 10,000 agents), ${fmt(quantile(scrape, 0.99) / quantile(list, 0.99), 3)}x the listing's p99`);
