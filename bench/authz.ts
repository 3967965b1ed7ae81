// What authorisation costs a typical read: GET /v1/agents/:id over real HTTP
// (keep-alive, one connection), on a hub with the access checks (role and
// tenant of the agent, hub/http/access.ts) against the same hub built with
// them switched off (a factory option no flag reaches), both on copies of one
// sqlite store in this process. Two callers: a vendor-wide admin, and a bank's
// viewer scoped to its tenant (its token narrowed too). Authentication runs in
// both: only the authorisation differs.
//   node dist/bench/authz.js [requests=5000] [agents=2000]
// Requests are interleaved (one to each hub per round, order alternating) so
// drift on a noisy host hits both alike; ratios are within one run.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { createHub, type Hub } from '../hub/server.js';
import { newId } from '../hub/store/fleet.js';
import { SqliteDb } from '../hub/store/sqlite.js';
import { Store } from '../hub/store/store.js';
import { generateKeyPair, encodePublicKey } from '../shared/keys.js';
import { silentLogger } from '../shared/logger.js';
import { fmt, quantile, table } from './lib/report.js';

const N = Math.max(200, Number(process.argv[2] ?? 5000) || 5000);
const AGENTS = Math.max(10, Number(process.argv[3] ?? 2000) || 2000);
const WARMUP = 300;

const root = mkdtempSync(join(tmpdir(), 'ferry-bench-authz-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

// One store: two tenants, AGENTS agents, an admin and a bank viewer with their tokens.
const dirA = join(root, 'with');
const sdb = SqliteDb.open(dirA, { create: true });
const store = new Store(sdb);
const now = Date.now();
const seeded = await store.tx(async () => {
  const admin = await store.people.createUser({ name: 'admin', kind: 'person', vendorRole: 'admin', passwordHash: null }, null, now);
  const viewer = await store.people.createUser({ name: 'bank-viewer', kind: 'person', vendorRole: null, passwordHash: null }, null, now);
  const tenants = [await store.fleet.createTenant('bank-a', now), await store.fleet.createTenant('bank-b', now)];
  await store.people.grant(viewer.id, tenants[0]!.id, 'viewer', null, now);
  const adminToken = (await store.people.createToken({ userId: admin.id, name: 'a', role: 'admin', tenants: null, expiresAt: null }, null, now)).token;
  const viewerToken = (await store.people.createToken({ userId: viewer.id, name: 'v', role: 'viewer', tenants: ['bank-a'], expiresAt: null }, null, now)).token;
  const ids: string[] = [];
  for (let i = 0; i < AGENTS; i++) {
    const id = newId('agt');
    await store.db.run('INSERT INTO agents (id, tenant_id, name, public_key, labels, enrolled_at) VALUES (?, ?, ?, ?, ?, ?)', [
      id,
      tenants[i % 2]!.id,
      `host-${i}`,
      encodePublicKey(generateKeyPair().publicKey),
      '{"env":"prod"}',
      now,
    ]);
    if (i % 2 === 0) ids.push(id);
  }
  return { adminToken, viewerToken, ids };
});
await store.close();
const dirB = join(root, 'without');
cpSync(dirA, dirB, { recursive: true });

const start = (dataDir: string, unsafeNoAuthorisation: boolean) => createHub({ dataDir, host: '127.0.0.1', port: 0, heartbeatMs: 60_000, checkpointMs: 3_600_000, rateLimitPerMinute: 0, unsafeNoAuthorisation, log: silentLogger() });
const withChecks = await start(dirA, false);
const without = await start(dirB, true);

async function once(hub: Hub, dispatcher: Agent, token: string, id: string): Promise<number> {
  const t0 = performance.now();
  const res = await request(`${hub.url}/v1/agents/${id}`, { dispatcher, headers: { authorization: `Bearer ${token}` } });
  await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET /v1/agents/${id}: ${res.statusCode}`);
  return performance.now() - t0;
}

const rows: string[][] = [['GET /v1/agents/:id, one keep-alive connection', 'with checks p50 / p99', 'checks off p50 / p99', 'ratio p50', 'ratio p99']];
const ratios: number[] = [];
for (const [who, token] of [
  ['vendor admin', seeded.adminToken],
  ['bank viewer (tenant-scoped token)', seeded.viewerToken],
] as const) {
  const da = new Agent({ connections: 1, pipelining: 1 });
  const db = new Agent({ connections: 1, pipelining: 1 });
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < WARMUP + N; i++) {
    const id = seeded.ids[i % seeded.ids.length]!;
    let x: number;
    let y: number;
    if (i % 2 === 0) {
      x = await once(withChecks, da, token, id);
      y = await once(without, db, token, id);
    } else {
      y = await once(without, db, token, id);
      x = await once(withChecks, da, token, id);
    }
    if (i < WARMUP) continue;
    a.push(x);
    b.push(y);
  }
  await da.close();
  await db.close();
  const r50 = quantile(a, 0.5) / quantile(b, 0.5);
  const r99 = quantile(a, 0.99) / quantile(b, 0.99);
  ratios.push(r50);
  rows.push([who, `${fmt(quantile(a, 0.5) * 1000, 0)} / ${fmt(quantile(a, 0.99) * 1000, 0)} µs`, `${fmt(quantile(b, 0.5) * 1000, 0)} / ${fmt(quantile(b, 0.99) * 1000, 0)} µs`, `${fmt(r50, 3)}x`, `${fmt(r99, 3)}x`]);
}

console.log(`ferry bench:authz — node ${process.version}, ${availableParallelism()} cpus (${cpus()[0]?.model.trim() ?? '?'}), ${AGENTS} agents in 2 tenants, ${N} requests per caller and hub (after ${WARMUP} warm-up)\n`);
console.log(table(rows));
console.log(`\nauthorisation cost at p50: ${ratios.map((r) => `${fmt(r, 3)}x`).join(', ')} (target: within 1.1x)`);
await withChecks.close();
await without.close();
