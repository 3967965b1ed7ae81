// bench/rollout: how fast one all-at-once wave reaches a fleet. Real hub
// process (`node dist/hub/main.js serve`), real sqlite, N simulated agents in
// client worker processes doing the real signed handshake and speaking the
// real protocol (ack, status) with a fake engine (applies at once, or after
// --apply-ms). Per N:
//   1. seed N agents into a fresh data dir (as bench/connections), an admin
//      token; start the hub; activate each tenant's trust root and publish
//      and sign a release over the API;
//   2. connect all N, let the hub settle;
//   3. POST /v1/rollouts {waves: '100%', bakeMs: 0, selector: '*'}; t0 is
//      just before the request is sent;
//   4. delivery delay per agent = when its worker received the directive
//      frame - t0; applied = when it sent `applied`; succeeded = the hub's
//      own timestamp of the rollout entering `succeeded`.
// Peer, same run, same N: agents polling every 5 s (Portainer Edge's default
// check-in) at uniformly random phases; delay = time to the next poll after
// the release is published. Computed per agent from the drawn phase (not
// HTTP), with zero server time, so it is the poller's best case.
//
//   npm run bench:rollout -- --agents 1000,10000 [--workers 4] [--tenants 10]
//     [--apply-ms 0] [--concurrency 400] [--poll-s 5] [--timeout-s 1200] [--keep] [--source-addresses N (50,000 agents: 4)]
//     [--hub-node-args='--cpu-prof --cpu-prof-dir=DIR'] [--hub-main PATH (another hub build, e.g. the last commit's)]
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, setPriority, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { request } from 'undici';
import { PAYLOAD_TYPES, pae } from '../shared/dsse.js';
import { encodePublicKey, keyId, sign } from '../shared/keys.js';
import { canonicalJson } from '../shared/release.js';
import { releaseDoc, seededKey, service } from '../test/helpers/signing.js';
import { busyCores, freePort, procCpuMs, procMemory, startHub, type HubProcess } from './lib/hub-process.js';
import { fmt, quantile, secs, table } from './lib/report.js';
import type { RolloutFromWorker, RolloutToWorker, RolloutWorkerConfig } from './lib/rollout-worker.js';
import { seedHub } from './lib/seed.js';
import { agentCounts as parseAgentCounts, wholeNumber } from './lib/args.js';

const TARGET_P99_MS = 2000;
const WORKER_MAIN = fileURLToPath(new URL('./lib/rollout-worker.js', import.meta.url));

const { values: args } = parseArgs({
  options: {
    agents: { type: 'string', default: '1000,10000' },
    workers: { type: 'string', default: '4' },
    tenants: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '400' },
    /** Spread the workers' sockets over 127.0.0.1..N (one source address has about 28,000 ports: needed past that). */
    'source-addresses': { type: 'string', default: '0' },
    'apply-ms': { type: 'string', default: '0' },
    'poll-s': { type: 'string', default: '5' },
    'client-nice': { type: 'string', default: '10' },
    'settle-ms': { type: 'string', default: '3000' },
    'rollout-timeout-s': { type: 'string', default: '300' },
    'timeout-s': { type: 'string', default: '1200' },
    keep: { type: 'boolean', default: false },
    'hub-node-args': { type: 'string' },
    'hub-main': { type: 'string' },
    /** Store and replicas per scenario: sqlite:1, postgres:1, postgres:2 (comma list; ratios against the first). */
    setups: { type: 'string', default: 'sqlite:1' },
    'pg-url': { type: 'string', default: process.env.FERRY_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:55432/postgres' },
    /** With several replicas: after the rollout, kill -9 the first and time its agents back on the others. */
    'kill-replica': { type: 'boolean', default: false },
  },
  allowPositionals: false,
});
const int = (name: keyof typeof args) => wholeNumber(args, name);
const agentCounts = parseAgentCounts(args.agents);
interface Setup {
  store: 'sqlite' | 'postgres';
  replicas: number;
  name: string;
}
const setups: Setup[] = String(args.setups)
  .split(',')
  .map((x) => {
    const [store, n] = x.split(':');
    const replicas = Number(n ?? 1);
    if ((store !== 'sqlite' && store !== 'postgres') || !Number.isInteger(replicas) || replicas < 1 || (store === 'sqlite' && replicas > 1)) {
      throw new Error(`--setups: sqlite:1 or postgres:N, not ${x}`);
    }
    return { store, replicas, name: `${store}:${replicas}` };
  });

const say = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const live = { hubs: new Set<HubProcess>(), workers: new Set<ChildProcess>(), dirs: new Set<string>() };
function cleanupAll(): void {
  for (const h of live.hubs) h.child.kill('SIGKILL');
  for (const w of live.workers) w.kill('SIGKILL');
  if (!args.keep) for (const d of live.dirs) rmSync(d, { recursive: true, force: true });
}
const overall = setTimeout(() => {
  say(`overall timeout of ${args['timeout-s']} s reached; cleaning up`);
  cleanupAll();
  process.exit(2);
}, int('timeout-s') * 1000);
overall.unref();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => (cleanupAll(), process.exit(130)));

// ---- API ---------------------------------------------------------------------

type Api = <T = any>(method: string, path: string, body?: unknown) => Promise<{ status: number; body: T }>;
function apiClient(url: string, token: string): Api {
  return async (method, path, body) => {
    const res = await request(url + path, {
      method: method as 'GET',
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      headersTimeout: 600_000,
      bodyTimeout: 600_000,
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
  };
}

/** A fresh PostgreSQL database for one scenario (dropped after it). */
async function freshPgDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const admin = postgres(String(args['pg-url']), { max: 1, onnotice: () => {} });
  const name = `ferry_bench_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`;
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(String(args['pg-url']));
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
      await admin.end();
    },
  };
}

const ROOT_KEY = seededKey('bench-rollout-root');
const RELEASE_KEY = seededKey('bench-rollout-release');

/** Activates a seeded tenant's trust root (root signed by ROOT_KEY, releases by RELEASE_KEY). */
async function activateTrust(api: Api, tenant: string): Promise<void> {
  const init = await api('POST', `/v1/tenants/${tenant}/trust/init`, { root: [{ public: encodePublicKey(ROOT_KEY.publicKey) }], rootThreshold: 1, release: [{ public: encodePublicKey(RELEASE_KEY.publicKey), name: 'rm' }], releaseThreshold: 1 });
  if (!init.body?.envelope) throw new Error(`trust init ${tenant}: ${init.status} ${JSON.stringify(init.body)}`);
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.root, Buffer.from(init.body.envelope.payload, 'base64')), ROOT_KEY.secretKey)).toString('base64');
  const s = await api('POST', `/v1/tenants/${tenant}/trust/signatures`, { version: 1, keyid: keyId(ROOT_KEY.publicKey), sig });
  if (!s.body?.active) throw new Error(`root ${tenant}: ${s.status} ${JSON.stringify(s.body)}`);
}

/** Publishes and signs a release (a pinned image the fake engine never pulls). */
async function publishRelease(api: Api, stack: string, version: string): Promise<void> {
  const doc = releaseDoc(stack, version, {}, { web: service('127.0.0.1:5000/bench/web@sha256:' + 'c'.repeat(64)) });
  const c = await api('POST', '/v1/releases', { payload: canonicalJson(doc).toString('base64') });
  if (c.status !== 201) throw new Error(`release: ${c.status} ${JSON.stringify(c.body)}`);
  const sig = Buffer.from(sign(pae(PAYLOAD_TYPES.release, Buffer.from(c.body.envelope.payload, 'base64')), RELEASE_KEY.secretKey)).toString('base64');
  const s = await api('POST', `/v1/releases/${stack}/${version}/signatures`, { publicKey: encodePublicKey(RELEASE_KEY.publicKey), sig });
  if (s.status !== 200) throw new Error(`sign: ${s.status} ${JSON.stringify(s.body)}`);
}

// ---- workers -----------------------------------------------------------------

type Of<T extends RolloutFromWorker['type']> = Extract<RolloutFromWorker, { type: T }>;
class Pool {
  readonly procs: ChildProcess[];
  readonly progress: Of<'progress'>[];
  private readonly inbox: RolloutFromWorker[][];
  private failure: Error | undefined;
  constructor(configs: RolloutWorkerConfig[]) {
    this.progress = configs.map(() => ({ type: 'progress', welcomed: 0, directives: 0, applied: 0, failures: 0, disconnects: 0, back: 0, open: 0 }));
    this.inbox = configs.map(() => []);
    this.procs = configs.map((cfg, i) => {
      const p = fork(WORKER_MAIN, [JSON.stringify(cfg)], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      live.workers.add(p);
      p.on('message', (m: RolloutFromWorker) => {
        if (m.type === 'progress') this.progress[i] = m;
        else if (m.type === 'fatal') this.failure ??= new Error(`worker ${i}: ${m.message}`);
        else this.inbox[i]!.push(m);
      });
      p.on('exit', (code, signal) => {
        live.workers.delete(p);
        this.failure ??= new Error(`worker ${i} exited (${code ?? signal})`);
      });
      return p;
    });
  }
  sum(k: 'welcomed' | 'directives' | 'applied' | 'failures' | 'disconnects' | 'back' | 'open'): number {
    return this.progress.reduce((a, p) => a + p[k], 0);
  }
  send(m: RolloutToWorker): void {
    for (const p of this.procs) if (p.connected) p.send(m);
  }
  async all<T extends RolloutFromWorker['type']>(type: T, timeoutMs: number): Promise<Of<T>[] | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const idx = this.inbox.map((box) => box.findIndex((m) => m.type === type));
      if (idx.every((j) => j >= 0)) return idx.map((j, i) => this.inbox[i]!.splice(j, 1)[0] as Of<T>);
      if (this.failure) throw this.failure;
      if (Date.now() > deadline) return null;
      await sleep(20);
    }
  }
  kill(): void {
    for (const p of this.procs) {
      p.removeAllListeners('exit');
      p.kill('SIGKILL');
      live.workers.delete(p);
    }
  }
}

// ---- one scenario --------------------------------------------------------------

interface Result {
  setup: string;
  agents: number;
  workers: number;
  busyCoresBefore: number;
  loadBefore: number;
  connectMs: number;
  createMs: number;
  delivered: number;
  deliveryP50: number;
  deliveryP99: number;
  deliveryMax: number;
  deliveryMin: number;
  appliedAll: number;
  appliedP50: number;
  appliedP99: number;
  succeededMs: number;
  state: string;
  done: number;
  hubCpuMs: number;
  hubRssKb: number;
  peerP50: number;
  peerP99: number;
  peerMax: number;
  peerMean: number;
  failures: number;
  disconnects: number;
  /** --kill-replica: agents the killed replica held, and when all were welcomed elsewhere (ms after the kill). */
  killed?: { lost: number; allBackMs: number; backP50: number; backP99: number };
}

async function scenario(nAgents: number, setup: Setup): Promise<Result> {
  const root = mkdtempSync(join(tmpdir(), 'ferry-bench-rollout-'));
  live.dirs.add(root);
  const dataDir = join(root, 'hub');
  const keysFile = join(root, 'agents.json');
  const hubs: HubProcess[] = [];
  let pool: Pool | undefined;
  const pg = setup.store === 'postgres' ? await freshPgDatabase() : undefined;
  try {
    const busyCoresBefore = await busyCores(2000);
    const loadBefore = loadavg()[0]!;
    const tenants = Math.max(1, Math.min(int('tenants'), nAgents));
    let t = Date.now();
    const { token } = await seedHub(dataDir, keysFile, nAgents, tenants, pg?.url);
    say(`  seeded ${nAgents} agents in ${tenants} tenants (${setup.name}) in ${Date.now() - t} ms`);
    for (let r = 0; r < setup.replicas; r++) {
      const h = await startHub({
        main: args['hub-main'],
        dataDir,
        port: await freePort(),
        logFile: join(root, `hub-${r}.log`),
        timeoutMs: 30_000,
        nodeArgs: args['hub-node-args']?.split(' ').filter(Boolean),
        serveArgs: pg ? ['--database', pg.url] : [],
      });
      live.hubs.add(h);
      hubs.push(h);
    }
    const hub = hubs[0]!;
    const api = apiClient(hub.url, token);
    for (let i = 0; i < tenants; i++) await activateTrust(api, `bench-${String(i).padStart(3, '0')}`);
    await publishRelease(api, 'payments', '1.0.0');

    const nWorkers = Math.max(1, Math.min(int('workers'), nAgents));
    const per = Math.ceil(nAgents / nWorkers);
    const configs: RolloutWorkerConfig[] = [];
    for (let w = 0; w * per < nAgents; w++) {
      configs.push({ hubUrls: hubs.map((h) => h.url), keysFile, from: w * per, to: Math.min(nAgents, (w + 1) * per), concurrency: Math.max(1, Math.round(int('concurrency') / nWorkers)), applyMs: int('apply-ms'), ...(int('source-addresses') > 0 ? { sourceAddress: `127.0.0.${(w % int('source-addresses')) + 1}` } : {}) });
    }
    pool = new Pool(configs);
    const p = pool;
    if (!(await pool.all('ready', 30_000))) throw new Error('client workers did not start');
    for (const w of pool.procs) setPriority(w.pid!, int('client-nice'));

    t = Date.now();
    const ticker = setInterval(() => say(`  connect: ${p.sum('welcomed')}/${nAgents} welcomed`), 3000);
    pool.send({ type: 'start' });
    const connected = await pool.all('connected', 300_000);
    clearInterval(ticker);
    if (!connected) throw new Error(`only ${pool.sum('welcomed')}/${nAgents} connected within 300 s`);
    const connectMs = Date.now() - t;
    say(`  connected ${nAgents} in ${secs(connectMs)}; settling ${int('settle-ms')} ms`);
    await sleep(int('settle-ms'));
    const failures0 = pool.sum('failures');
    const disconnects0 = pool.sum('disconnects');

    // ---- the rollout ------------------------------------------------------------
    const hubCpu = () => hubs.reduce((n, h) => n + procCpuMs(h.pid), 0);
    const hubCpu0 = hubCpu();
    const t0 = Date.now();
    const created = await api('POST', '/v1/rollouts', { stack: 'payments', version: '1.0.0', selector: '*', waves: '100%', bakeMs: 0 });
    const createMs = Date.now() - t0;
    if (created.status !== 201) throw new Error(`rollout create: ${created.status} ${JSON.stringify(created.body).slice(0, 500)}`);
    const id = created.body.id as string;
    say(`  ${id} created in ${createMs} ms (${created.body.agents} agents)`);
    const progressTicker = setInterval(() => say(`  rollout: ${p.sum('directives')} received, ${p.sum('applied')} applied`), 2000);
    let summary: { state: string; since: string; done: number; agents: number } | undefined;
    const deadline = Date.now() + int('rollout-timeout-s') * 1000;
    // Summaries only (GET /v1/rollouts), every 250 ms: cheap next to the rollout.
    while (Date.now() < deadline) {
      // A hub busy in a long tick answers late or not at all: keep the agents' figures regardless.
      const list = await Promise.race([api('GET', '/v1/rollouts'), sleep(Math.max(1000, deadline - Date.now())).then(() => null)]).catch(() => null);
      if (list) summary = (list.body.rollouts as { id: string; state: string; since: string; done: number; agents: number }[]).find((r) => r.id === id);
      if (summary && summary.state !== 'running') break;
      await sleep(250);
    }
    clearInterval(progressTicker);
    const hubCpuMs = hubCpu() - hubCpu0;
    const hubRssKb = Math.max(...hubs.map((h) => procMemory(h.pid).hwmKb));

    // ---- a replica lost: kill -9 the first, its agents come back on the others -----------
    let killed: Result['killed'];
    if (args['kill-replica'] && hubs.length > 1) {
      pool.send({ type: 'mark' });
      await sleep(1000); // the mark reaches every worker before the kill
      const tk = Date.now();
      hubs[0]!.child.kill('SIGKILL');
      await hubs[0]!.exited;
      const open = () => p.progress.reduce((a, x) => a + x.open, 0);
      const limit = Date.now() + 120_000;
      while (Date.now() < limit && (open() < nAgents || p.sum('back') === 0)) await sleep(100);
      const allBackMs = Date.now() - tk;
      pool.send({ type: 'collect' });
      const c = await pool.all('collected', 30_000);
      const backs = (c ?? []).flatMap((m) => m.backAt).filter(Number.isFinite).map((x) => x - tk);
      killed = { lost: backs.length, allBackMs: open() >= nAgents ? allBackMs : NaN, backP50: quantile(backs, 0.5), backP99: quantile(backs, 0.99) };
      say(`  replica 0 killed: ${backs.length} agents back on the others, all in ${secs(killed.allBackMs)}`);
    }
    pool.send({ type: 'collect' });
    const collected = await pool.all('collected', 30_000);
    if (!collected) throw new Error('workers did not report their figures');
    const receivedAt = collected.flatMap((m) => m.receivedAt);
    const appliedAt = collected.flatMap((m) => m.appliedAt);
    const delivery = receivedAt.map((x) => x - t0);
    const appliedDelay = appliedAt.map((x) => x - t0);
    const delivered = delivery.filter(Number.isFinite).length;

    // ---- the peer: 5 s polling, random phase per agent, same N ------------------------------
    const periodMs = int('poll-s') * 1000;
    const peer = Array.from({ length: nAgents }, () => {
      const phase = Math.random() * periodMs; // this agent polls at phase + k*period
      const publishedAt = t0 % periodMs;
      return (phase - publishedAt + periodMs) % periodMs;
    });

    const r: Result = {
      setup: setup.name,
      killed,
      agents: nAgents,
      workers: configs.length,
      busyCoresBefore,
      loadBefore,
      connectMs,
      createMs,
      delivered,
      deliveryP50: quantile(delivery, 0.5),
      deliveryP99: quantile(delivery, 0.99),
      deliveryMax: delivered === nAgents ? Math.max(...delivery) : NaN,
      deliveryMin: Math.min(...delivery.filter(Number.isFinite)),
      appliedAll: appliedDelay.every(Number.isFinite) ? Math.max(...appliedDelay) : NaN,
      appliedP50: quantile(appliedDelay, 0.5),
      appliedP99: quantile(appliedDelay, 0.99),
      succeededMs: summary?.state === 'succeeded' ? Date.parse(summary.since) - t0 : NaN,
      state: summary?.state ?? '?',
      done: summary?.done ?? 0,
      hubCpuMs,
      hubRssKb,
      peerP50: quantile(peer, 0.5),
      peerP99: quantile(peer, 0.99),
      peerMax: Math.max(...peer),
      peerMean: peer.reduce((a, b) => a + b, 0) / peer.length,
      failures: pool.sum('failures') - failures0,
      disconnects: pool.sum('disconnects') - disconnects0,
    };
    say(`  ${id} ${r.state}: delivery p50 ${fmt(r.deliveryP50, 0)} ms p99 ${fmt(r.deliveryP99, 0)} ms; succeeded after ${secs(r.succeededMs)}`);
    return r;
  } finally {
    pool?.kill();
    for (const hub of hubs) {
      // SIGTERM first, so a --cpu-prof hub writes its profile.
      hub.child.kill('SIGTERM');
      if (!(await Promise.race([hub.exited, sleep(15_000).then(() => null)]))) hub.child.kill('SIGKILL');
      live.hubs.delete(hub);
    }
    await pg?.drop();
    if (args.keep) say(`  kept ${root}`);
    else {
      rmSync(root, { recursive: true, force: true });
      live.dirs.delete(root);
    }
  }
}

const ms = (x: number) => (Number.isFinite(x) ? `${fmt(x, 0)} ms` : '-');

async function main(): Promise<void> {
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? '?'}, ${fmt(totalmem() / 2 ** 30)} GiB, node ${process.version}`;
  say(`machine: ${machine}`);
  const results: Result[] = [];
  for (const n of agentCounts) {
    for (const setup of setups) {
      say(`scenario: ${n} agents, ${setup.name}`);
      results.push(await scenario(n, setup));
    }
  }
  const rows = [['figure', ...results.map((r) => `${r.agents} agents ${r.setup}`)]];
  const row = (name: string, f: (r: Result) => string) => rows.push([name, ...results.map(f)]);
  row('other work: busy CPUs before / load avg', (r) => `${fmt(r.busyCoresBefore, 2)} of ${cpus().length} / ${fmt(r.loadBefore, 2)}`);
  row('client workers', (r) => String(r.workers));
  row('connect all (real handshakes)', (r) => secs(r.connectMs));
  row('POST /v1/rollouts answered in', (r) => ms(r.createMs));
  row('directives received', (r) => `${r.delivered} of ${r.agents}`);
  row('Ferry delivery min', (r) => ms(r.deliveryMin));
  row('Ferry delivery p50', (r) => ms(r.deliveryP50));
  row('Ferry delivery p99', (r) => ms(r.deliveryP99));
  row('Ferry delivery max', (r) => ms(r.deliveryMax));
  row('agents sent applied: p50 / p99', (r) => `${ms(r.appliedP50)} / ${ms(r.appliedP99)}`);
  row('agents sent applied: all (100%)', (r) => ms(r.appliedAll));
  row('hub: rollout succeeded at', (r) => `${ms(r.succeededMs)} (${r.state}, ${r.done} done when last seen)`);
  row('hub CPU during rollout', (r) => ms(r.hubCpuMs));
  row('hub peak RSS', (r) => `${fmt(r.hubRssKb / 1024)} MiB`);
  row('client failed attempts / disconnects', (r) => `${r.failures} / ${r.disconnects}`);
  row(`peer ${args['poll-s']} s poll: p50`, (r) => ms(r.peerP50));
  row(`peer ${args['poll-s']} s poll: p99`, (r) => ms(r.peerP99));
  row(`peer ${args['poll-s']} s poll: max / mean`, (r) => `${ms(r.peerMax)} / ${ms(r.peerMean)}`);
  if (results.some((r) => r.killed)) {
    row('replica killed: its agents back elsewhere', (r) => (r.killed ? String(r.killed.lost) : '-'));
    row('replica killed: all back in / p50 / p99', (r) => (r.killed ? `${secs(r.killed.allBackMs)} / ${ms(r.killed.backP50)} / ${ms(r.killed.backP99)}` : '-'));
  }
  const lines = [
    `bench/rollout  ${new Date().toISOString()}  ${machine}`,
    `one wave (100%), bake 0, fake engine apply ${args['apply-ms']} ms; delay measured from just before POST /v1/rollouts${args['hub-main'] ? `; hub: ${args['hub-main']}` : ''}`,
    '',
    table(rows),
    '',
  ];
  for (const n of agentCounts) {
    const [first, ...others] = results.filter((r) => r.agents === n);
    for (const o of others) {
      if (!first) continue;
      lines.push(`${n}: delivery p99 ${o.setup} ${ms(o.deliveryP99)} / ${first.setup} ${ms(first.deliveryP99)} = ${fmt(o.deliveryP99 / first.deliveryP99, 2)}x`);
    }
  }
  for (const r of results) {
    lines.push(`${r.agents} ${r.setup}: rollout succeeded ${ms(r.succeededMs - r.appliedAll)} after the last agent's applied report (target <= 1000 ms: ${r.succeededMs - r.appliedAll <= 1000 ? 'met' : 'MISSED'})`);
    if (r.killed) lines.push(`${r.agents} ${r.setup}: ${r.killed.lost} agents of the killed replica all back in ${secs(r.killed.allBackMs)} (target <= 30 s: ${r.killed.allBackMs <= 30_000 ? 'met' : 'MISSED'})`);
    lines.push(`${r.agents} ${r.setup}: Ferry delivery p99 ${ms(r.deliveryP99)} (target < ${TARGET_P99_MS} ms: ${r.deliveryP99 < TARGET_P99_MS && r.delivered === r.agents ? 'met' : 'MISSED'})`);
    lines.push(`${r.agents} ${r.setup}: p50 peer/Ferry = ${fmt(r.peerP50 / r.deliveryP50, 1)}x, p99 peer/Ferry = ${fmt(r.peerP99 / r.deliveryP99, 1)}x (peer: ${args['poll-s']} s polling, random phase, computed, zero server time)`);
  }
  process.stdout.write(lines.join('\n') + '\n');
  const dir = new URL('../../bench/out/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const file = new URL(`rollout-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, dir);
  writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), cpus: cpus().length, node: process.version, args, results }, null, 2) + '\n');
  say(`figures written to ${file.pathname}`);
}

try {
  await main();
} catch (err) {
  say(`bench failed: ${(err as Error).stack ?? String(err)}`);
  cleanupAll();
  process.exitCode = 1;
  process.exit(1);
}
clearTimeout(overall);
// Everything is measured and written: leave now rather than wait for idle sockets
// (the hubs' HTTP keep-alive, the database driver) to time out, which held the
// process for minutes after its figures.
cleanupAll();
process.exit(process.exitCode ?? 0);
