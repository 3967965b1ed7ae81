// What the console's fleet page costs against its peer, the JSON API listing
// the same page: GET /fleet (a console session's cookie, server-rendered HTML
// of 50 agents with counts and filters) against GET /v1/agents?limit=50
// (a bearer token, the same rows as JSON), on one hub over real HTTP with
// keep-alive, agents seeded straight into its sqlite store with labels, host
// facts and a reported status (two releases' services each). Three pages:
// the first, one deep in the list, and one filtered by label and free text.
// Requests are interleaved (page, API, API, page, ...) so drift on a noisy
// host hits both alike; ratios are within one run. Then Chromium (Debian's,
// driven by playwright-core) loads /fleet and the same JSON in fresh tabs:
// first contentful paint of each, p50 / p95.
//   node dist/bench/console.js [agents=2000] [requests=600] [paints=20]
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chromium } from 'playwright-core';
import { Agent, request } from 'undici';
import { createHub } from '../hub/server.js';
import { SqliteDb } from '../hub/store/sqlite.js';
import { Store } from '../hub/store/store.js';
import { silentLogger } from '../shared/logger.js';
import { fmt, quantile, table } from './lib/report.js';
import { seedHub } from './lib/seed.js';

const AGENTS = Math.max(100, Number(process.argv[2] ?? 2000) || 2000);
const N = Math.max(100, Number(process.argv[3] ?? 600) || 600);
const PAINTS = Math.max(5, Number(process.argv[4] ?? 20) || 20);
const WARMUP = 50;
const CHROMIUM = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';
const PASSWORD = 'bench console password';

const root = mkdtempSync(join(tmpdir(), 'ferry-bench-console-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

// Agents as enrollment leaves them, then what a fleet looks like: labels, host facts, a status report.
const { keys, token } = await seedHub(root, join(root, 'keys.json'), AGENTS, 4);
{
  const store = new Store(SqliteDb.open(root, { create: false }));
  const now = Date.now();
  const digest = (c: string) => `sha256:${c.repeat(64)}`;
  for (let i = 0; i < keys.length; i += 500) {
    await store.tx(async () => {
      for (const k of keys.slice(i, i + 500)) {
        const n = Number(k.name.slice(-5));
        const labels = { env: n % 3 === 0 ? 'prod' : 'test', zone: `z${n % 7}`, rack: `r${n % 40}` };
        const facts = { host: { hostname: `${k.name}.bank.example`, platform: 'linux', release: '6.1.0-18-amd64', arch: 'x64', cpus: 4, memoryBytes: 8 * 2 ** 30 }, engine: { version: '20.10.24', apiVersion: '1.41', storageDriver: 'overlay2', containers: 5, containersRunning: 5 } };
        await store.db.run('UPDATE agents SET labels = ?, facts = ?, agent_version = ?, last_seen_at = ? WHERE id = ?', [JSON.stringify(labels), JSON.stringify(facts), '0.1.0', now - n * 1000, k.id]);
        const since = new Date(now - 60_000).toISOString();
        await store.fleet.recordStatus(
          k.id,
          {
            releases: [
              { stack: 'payments', version: '2.4.0', state: 'applied', since, runningVersion: '2.4.0' },
              { stack: 'ledger', version: '3.2.0', state: n % 50 === 0 ? 'rolled-back' : 'applied', since, runningVersion: n % 50 === 0 ? '3.1.0' : '3.2.0' },
            ],
            services: ['web', 'api', 'worker', 'db', 'cache'].map((service, j) => ({ stack: j < 3 ? 'payments' : 'ledger', service, replica: 1, release: j < 3 ? '2.4.0' : '3.2.0', status: 'running', health: 'healthy', restarts: 0, image: `registry.bank.example/${service}@${digest(String(j))}` })),
          },
          now,
        );
      }
    });
  }
  await store.close();
}

const hub = await createHub({ dataDir: root, host: '127.0.0.1', port: 0, heartbeatMs: 60_000, checkpointMs: 3_600_000, rateLimitPerMinute: 0, log: silentLogger() });
const dispatcher = new Agent({ connections: 1, pipelining: 1 });
async function call(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }> {
  const res = await request(hub.url + path, { method: method as 'GET', dispatcher, headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers };
}
const bearer = { authorization: `Bearer ${token}` };
if ((await call('POST', '/v1/users/bench-admin/password', bearer, { password: PASSWORD })).status !== 200) throw new Error('setting the password failed');
const login = await call('POST', '/v1/sessions', { origin: hub.url }, { user: 'bench-admin', password: PASSWORD });
if (login.status !== 201) throw new Error(`login: ${login.status} ${login.text}`);
const setCookie = [login.headers['set-cookie']].flat().filter((x): x is string => !!x);
const cookie = setCookie.map((c) => c.split(';')[0]).join('; ');
const session = { cookie };

async function timed(path: string, headers: Record<string, string>): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  const r = await call('GET', path, headers);
  const ms = performance.now() - t0;
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text.slice(0, 200)}`);
  return { ms, bytes: Buffer.byteLength(r.text) };
}

const deep = Math.floor(AGENTS / 50 / 2);
const cases: [string, string, string][] = [
  ['first page', '/fleet', '/v1/agents?limit=50&offset=0'],
  [`page ${deep + 1} of ${Math.ceil(AGENTS / 50)}`, `/fleet?page=${deep + 1}`, `/v1/agents?limit=50&offset=${deep * 50}`],
  ['label env=prod + text "bench-0"', '/fleet?label=env%3Dprod&q=bench-0', '/v1/agents?limit=50&offset=0&label=env%3Dprod&q=bench-0'],
];

const rows: string[][] = [[`${AGENTS} agents, 50 a page, one keep-alive connection`, 'page p50 / p95 ms', 'API p50 / p95 ms', 'ratio p50', 'ratio p95', 'page / API bytes']];
const ratios: number[] = [];
for (const [what, pagePath, apiPath] of cases) {
  // Both answer the same 50 agents (else the comparison means nothing).
  const html = (await call('GET', pagePath, session)).text;
  const json = JSON.parse((await call('GET', apiPath, bearer)).text) as { agents: { id: string }[] };
  const shown = [...html.matchAll(/<tr data-agent="([^"]+)"/g)].map((m) => m[1]);
  if (shown.length !== 50 || shown.join() !== json.agents.map((a) => a.id).join()) throw new Error(`${what}: the page shows ${shown.length} agents, the API ${json.agents.length}, not the same`);
  const page: number[] = [];
  const api: number[] = [];
  const bytes = [0, 0];
  for (let i = 0; i < WARMUP + N; i++) {
    // alternate which goes first, so neither always runs on a warmer cache
    const order = i % 2 === 0 ? (['p', 'a'] as const) : (['a', 'p'] as const);
    for (const o of order) {
      const r = o === 'p' ? await timed(pagePath, session) : await timed(apiPath, bearer);
      if (i >= WARMUP) (o === 'p' ? page : api).push(r.ms);
      bytes[o === 'p' ? 0 : 1] = r.bytes;
    }
  }
  const [p50, p95, a50, a95] = [quantile(page, 0.5), quantile(page, 0.95), quantile(api, 0.5), quantile(api, 0.95)];
  ratios.push(p95 / a95);
  rows.push([what, `${fmt(p50, 2)} / ${fmt(p95, 2)}`, `${fmt(a50, 2)} / ${fmt(a95, 2)}`, `${fmt(p50 / a50, 2)}x`, `${fmt(p95 / a95, 2)}x`, `${fmt(bytes[0]! / 1024, 0)} / ${fmt(bytes[1]! / 1024, 0)} KiB`]);
}
await dispatcher.close();

// First contentful paint in Chromium: the fleet page (with its stylesheet and scripts) against the JSON of the same page.
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const ctx = await browser.newContext({ viewport: { width: 1366, height: 860 } });
const [name, value] = cookie.split(';')[0]!.split('=');
await ctx.addCookies([{ name: name!, value: value!, url: hub.url }]);
const fcp = async (path: string): Promise<number> => {
  const p = await ctx.newPage();
  if (path.startsWith('/v1/')) await p.setExtraHTTPHeaders(bearer);
  await p.goto(hub.url + path, { waitUntil: 'load' });
  const ms = await p.evaluate(
    () =>
      new Promise<number>((resolve) => {
        const seen = performance.getEntriesByName('first-contentful-paint')[0];
        if (seen) return resolve(seen.startTime);
        new PerformanceObserver((l) => resolve(l.getEntries()[0]!.startTime)).observe({ type: 'paint', buffered: true });
      }),
  );
  await p.close();
  return ms;
};
const paintPage: number[] = [];
const paintApi: number[] = [];
await fcp('/fleet');
for (let i = 0; i < PAINTS; i++) {
  paintPage.push(await fcp('/fleet'));
  paintApi.push(await fcp('/v1/agents?limit=50&offset=0'));
}
await browser.close();
await hub.close();

console.log(`bench/console: ${AGENTS} agents in 4 tenants, ${N} timed requests per route and case after ${WARMUP} warm-up, ${cpus()[0]?.model ?? 'cpu'} x${availableParallelism()}, Node ${process.version}\n`);
console.log(table(rows));
console.log(`\nworst p95 ratio (page / API): ${fmt(Math.max(...ratios), 2)}x (target: within 1.5x)\n`);
console.log(
  table([
    [`first contentful paint in Chromium, ${PAINTS} fresh tabs each`, 'p50 ms', 'p95 ms'],
    ['/fleet (HTML, CSS, htmx deferred)', fmt(quantile(paintPage, 0.5), 0), fmt(quantile(paintPage, 0.95), 0)],
    ['/v1/agents?limit=50 (the same page as JSON)', fmt(quantile(paintApi, 0.5), 0), fmt(quantile(paintApi, 0.95), 0)],
  ]),
);
console.log(`\nFCP ratio p50 (page / JSON): ${fmt(quantile(paintPage, 0.5) / quantile(paintApi, 0.5), 2)}x (target: the page under 1,000 ms)`);
