// One benchmark scenario: N agents against one hub process.
//   1. register N agents in a fresh sqlite data dir, start the hub;
//   2. connect all N (bounded concurrency), measure rate and hub RSS;
//   3. kill the hub, start a new one on the same data dir and port, measure
//      the time until every agent has been welcomed again (the agents come
//      back on their own, with the agent's backoff);
//   4. stop the hub with SIGTERM while N are connected, measure shutdown.
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { HUB_MAIN, busyCores, freePort, procCpuMs, procFdLimit, procFds, procMemory, procSched, startHub, tcpCounters, tcpDelta, type HubProcess, type Sched, type TcpCounters } from './hub-process.js';
import type { ClientKind, WorkerConfig } from './messages.js';
import { quantile } from './report.js';
import { seedHub } from './seed.js';
import { WorkerPool } from './workers.js';

export interface ScenarioOptions {
  agents: number;
  client: ClientKind;
  workers: number;
  /** Agents on their first attempt at once, over all workers. */
  concurrency: number;
  /** How many source addresses (127.0.0.1, .2, ...) the workers spread over; 0: let the kernel pick. */
  sourceAddresses: number;
  /** Niceness of the client workers, so the hub gets a core first (as on its own machine). */
  clientNice: number;
  tenants: number;
  restartSignal: 'SIGKILL' | 'SIGTERM';
  connectTimeoutMs: number;
  restartTimeoutMs: number;
  /** Wait after connecting before sampling RSS (idle keep-alive sockets close after ~5 s). */
  settleMs: number;
  keep: boolean;
  /** Wait up to this long for other work on the machine to calm down (< 0.3 busy CPUs) before starting. */
  quietWaitMs: number;
  /** The hub's main.js (default: this build's); another build is a peer to compare against. */
  hubMain?: string;
  hubNodeArgs?: string[];
  say: (line: string) => void;
}

/** Where the hub's main thread spent a phase: on a CPU, waiting for one, or neither (idle or blocked in I/O). */
export interface HubThread {
  wallMs: number;
  onCpuMs: number;
  runQueueMs: number;
  offCpuMs: number;
}

export interface ScenarioResult {
  client: ClientKind;
  agents: number;
  workers: number;
  concurrency: number;
  clientNice: number;
  hubMain: string;
  hubFdLimit: number;
  /** CPUs busy with other work just before the scenario, and the 1-minute load average before and after (other work skews wall-clock figures). */
  load: { busyCoresBefore: number; before: number; after: number };
  connect: {
    complete: boolean;
    welcomed: number;
    ms: number;
    perSecond: number;
    p50Ms: number;
    p99Ms: number;
    hubCpuMs: number;
    clientCpuMs: number;
    hubThread: HubThread;
    tcp: TcpCounters;
    failures: Record<string, number>;
  };
  memory: { idleKb: number; connectedKb: number; settledKb: number; peakKb: number; perAgentKb: number; perAgentKbUnsettled: number };
  hubSessions: { afterConnect: number; afterRestart: number };
  /** Null when not every agent connected (the restart was not tried). */
  restart: {
    signal: string;
    complete: boolean;
    back: number;
    killToListenMs: number;
    /** From the new hub listening until the last agent was welcomed. */
    listenToAllMs: number;
    p50Ms: number;
    p90Ms: number;
    p99Ms: number;
    hubCpuMs: number;
    clientCpuMs: number;
    hubThread: HubThread;
    peakFds: number;
    disconnects: number;
    tcp: TcpCounters;
    failures: Record<string, number>;
  } | null;
  shutdownMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Processes and directories to clean up if the bench is interrupted. */
export const live = { hubs: new Set<HubProcess>(), pools: new Set<WorkerPool>(), dirs: new Set<string>() };

export function cleanupAll(): void {
  for (const h of live.hubs) h.child.kill('SIGKILL');
  for (const p of live.pools) p.kill();
  for (const d of live.dirs) rmSync(d, { recursive: true, force: true });
}

async function sessions(hubUrl: string): Promise<number> {
  const res = await request(`${hubUrl}/readyz`, { headersTimeout: 10_000, bodyTimeout: 10_000, reset: true });
  const body = (await res.body.json()) as { agentsConnected?: number };
  return body.agentsConnected ?? -1;
}

async function stopHub(h: HubProcess, signal: NodeJS.Signals, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  h.child.kill(signal);
  const done = await Promise.race([h.exited, sleep(timeoutMs).then(() => null)]);
  if (!done) {
    h.child.kill('SIGKILL');
    await h.exited;
    return NaN;
  }
  return done.at - t0;
}

/** Sums cumulative per-worker failure counts, minus an earlier sum. */
function sumFailures(reports: { failures: Record<string, number> }[] | null, minus: Record<string, number> = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of reports ?? []) for (const [k, v] of Object.entries(r.failures)) out[k] = (out[k] ?? 0) + v;
  for (const [k, v] of Object.entries(minus)) out[k] = (out[k] ?? 0) - v;
  for (const k of Object.keys(out)) if (out[k] === 0) delete out[k];
  return out;
}

const cpuOf = (pids: number[]) => pids.reduce((a, p) => a + procCpuMs(p), 0);

function threadDelta(a: Sched, b: Sched, wallMs: number): HubThread {
  const onCpuMs = b.onCpuMs - a.onCpuMs;
  const runQueueMs = b.runQueueMs - a.runQueueMs;
  return { wallMs, onCpuMs, runQueueMs, offCpuMs: Math.max(0, wallMs - onCpuMs - runQueueMs) };
}

export async function runScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const root = mkdtempSync(join(tmpdir(), 'ferry-bench-'));
  live.dirs.add(root);
  const dataDir = join(root, 'hub');
  const keysFile = join(root, 'agents.json');
  const hubMain = o.hubMain ?? HUB_MAIN;
  let pool: WorkerPool | undefined;
  let current: HubProcess | undefined;
  const hub = async (port: number) => {
    const h = await startHub({ main: hubMain, dataDir, port, logFile: join(root, 'hub.log'), timeoutMs: 30_000, nodeArgs: o.hubNodeArgs });
    live.hubs.add(h);
    void h.exited.then(() => live.hubs.delete(h));
    return h;
  };
  try {
    let busyBefore = await busyCores(2000);
    for (const until = Date.now() + o.quietWaitMs; busyBefore > 0.3 && Date.now() < until; busyBefore = await busyCores(2000)) {
      o.say(`  waiting for a quieter machine: ${busyBefore.toFixed(2)} CPUs busy with other work`);
    }
    const loadBefore = loadavg()[0]!;
    const t = Date.now();
    await seedHub(dataDir, keysFile, o.agents, o.tenants);
    o.say(`registered ${o.agents} agents in ${Date.now() - t} ms`);
    const port = await freePort();
    current = await hub(port);
    await sleep(1000);
    const idle = procMemory(current.pid);
    const hubFdLimit = procFdLimit(current.pid);

    const per = Math.ceil(o.agents / o.workers);
    const configs: WorkerConfig[] = [];
    for (let w = 0; w * per < o.agents; w++) {
      configs.push({
        hubUrl: current.url,
        keysFile,
        from: w * per,
        to: Math.min(o.agents, (w + 1) * per),
        client: o.client,
        sourceAddress: o.sourceAddresses > 0 ? `127.0.0.${(w % o.sourceAddresses) + 1}` : undefined,
        concurrency: Math.max(1, Math.round(o.concurrency / o.workers)),
      });
    }
    pool = new WorkerPool(configs);
    live.pools.add(pool);
    const p = pool;
    if (!(await pool.all('ready', 30_000))) throw new Error('client workers did not start');
    const workerPids = pool.procs.map((c) => c.pid!);
    for (const pid of workerPids) setPriority(pid, o.clientNice);
    const base = { client: o.client, agents: o.agents, workers: configs.length, concurrency: o.concurrency, clientNice: o.clientNice, hubMain, hubFdLimit };

    // ---- connect all N -------------------------------------------------------
    const ticker = setInterval(() => o.say(`  connect: ${p.welcomed}/${o.agents} welcomed`), 2000);
    let hubCpu0 = procCpuMs(current.pid);
    let clientCpu0 = cpuOf(workerPids);
    let sched0 = procSched(current.pid);
    let tcp0 = tcpCounters();
    const t0 = Date.now();
    pool.send({ type: 'start' });
    const connected = await pool.all('connected', o.connectTimeoutMs);
    clearInterval(ticker);
    const startedAt = connected?.flatMap((m) => m.startedAt) ?? [];
    const welcomedAt = connected?.flatMap((m) => m.welcomedAt) ?? [];
    const tConnected = connected ? Math.max(...welcomedAt) : Date.now();
    const latencies = welcomedAt.map((w, i) => w - startedAt[i]!);
    const connect = {
      complete: connected !== null,
      welcomed: connected ? o.agents : pool.welcomed,
      ms: tConnected - t0,
      perSecond: ((connected ? o.agents : pool.welcomed) / (tConnected - t0)) * 1000,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      hubCpuMs: procCpuMs(current.pid) - hubCpu0,
      clientCpuMs: cpuOf(workerPids) - clientCpu0,
      hubThread: threadDelta(sched0, procSched(current.pid), Date.now() - t0),
      tcp: tcpDelta(tcp0, tcpCounters()),
      // Incomplete: the latest progress reports (up to a second old) are the best there is.
      failures: sumFailures(connected ?? pool.progress),
    };
    const afterConnect = await sessions(current.url);
    const connectedMem = procMemory(current.pid);
    o.say(`  connected ${connect.welcomed} in ${connect.ms} ms; hub reports ${afterConnect} sessions; settling ${o.settleMs} ms`);
    await sleep(o.settleMs);
    const settled = procMemory(current.pid);
    const memory = {
      idleKb: idle.rssKb,
      connectedKb: connectedMem.rssKb,
      settledKb: settled.rssKb,
      peakKb: settled.hwmKb,
      perAgentKb: (settled.rssKb - idle.rssKb) / o.agents,
      perAgentKbUnsettled: (connectedMem.rssKb - idle.rssKb) / o.agents,
    };
    if (!connected) {
      o.say(`  only ${pool.welcomed}/${o.agents} connected within ${o.connectTimeoutMs} ms; skipping the restart`);
      await pool.stop(15_000);
      const load = { busyCoresBefore: busyBefore, before: loadBefore, after: loadavg()[0]! };
      return { ...base, load, connect, memory, hubSessions: { afterConnect, afterRestart: NaN }, restart: null, shutdownMs: NaN };
    }

    // ---- restart ---------------------------------------------------------------
    pool.send({ type: 'mark' });
    if (!(await pool.all('marked', 10_000))) throw new Error('workers did not acknowledge the mark');
    tcp0 = tcpCounters();
    const tKill = Date.now();
    await stopHub(current, o.restartSignal, 60_000);
    current = await hub(port);
    const newHub = current;
    let peakFds = 0;
    const fdTicker = setInterval(() => (peakFds = Math.max(peakFds, procFds(newHub.pid))), 250);
    const sayTicker = setInterval(() => o.say(`  restart: ${p.back}/${o.agents} back`), 2000);
    hubCpu0 = procCpuMs(current.pid);
    clientCpu0 = cpuOf(workerPids);
    sched0 = procSched(current.pid);
    const tListen = Date.now();
    const backMsgs = await pool.all('back', o.restartTimeoutMs);
    clearInterval(fdTicker);
    clearInterval(sayTicker);
    peakFds = Math.max(peakFds, procFds(newHub.pid));
    const backAt = backMsgs?.flatMap((m) => m.welcomedAt) ?? [];
    const sinceListen = backAt.map((b) => b - newHub.listeningAt);
    const restart = {
      signal: o.restartSignal,
      complete: backMsgs !== null,
      back: backMsgs ? o.agents : pool.back,
      killToListenMs: newHub.listeningAt - tKill,
      listenToAllMs: backMsgs ? Math.max(...backAt) - newHub.listeningAt : NaN,
      p50Ms: quantile(sinceListen, 0.5),
      p90Ms: quantile(sinceListen, 0.9),
      p99Ms: quantile(sinceListen, 0.99),
      hubCpuMs: procCpuMs(current.pid) - hubCpu0,
      clientCpuMs: cpuOf(workerPids) - clientCpu0,
      hubThread: threadDelta(sched0, procSched(current.pid), Date.now() - tListen),
      peakFds,
      disconnects: backMsgs?.reduce((a, m) => a + m.disconnects, 0) ?? NaN,
      tcp: tcpDelta(tcp0, tcpCounters()),
      failures: sumFailures(backMsgs ?? pool.progress, connect.failures),
    };
    const afterRestart = await sessions(current.url);
    o.say(`  restart: ${restart.back} back, last ${restart.listenToAllMs} ms after listening; hub reports ${afterRestart} sessions`);

    // ---- graceful shutdown with N connected ---------------------------------------
    // The clients stay up, so the hub closes N live sockets (their reconnects are refused; not counted).
    const shutdownMs = await stopHub(current, 'SIGTERM', 60_000);
    current = undefined;
    await pool.stop(15_000);
    const load = { busyCoresBefore: busyBefore, before: loadBefore, after: loadavg()[0]! };
    return { ...base, load, connect, memory, hubSessions: { afterConnect, afterRestart }, restart, shutdownMs };
  } finally {
    if (pool) {
      pool.kill();
      live.pools.delete(pool);
    }
    if (current) await stopHub(current, 'SIGKILL', 10_000);
    if (o.keep) o.say(`kept ${root}`);
    else {
      rmSync(root, { recursive: true, force: true });
      live.dirs.delete(root);
    }
  }
}
