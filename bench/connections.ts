// bench/connections: how many agents one hub process holds, and how fast
// they come back after a restart. Real hub process, real sqlite, real
// WebSocket clients doing the real signed handshake; see bench/README.md.
//
//   npm run bench:connections -- --agents 1000,10000 [--clients lean,connection]
//     [--workers 4] [--concurrency 400] [--source-addresses 0] [--restart-signal SIGKILL]
//     [--client-nice 10] [--hub-main PATH] [--hub-node-args='--cpu-prof --cpu-prof-dir=DIR']
//     [--quiet-wait-s 0] [--timeout-s 600] [--keep]
//
// Prints a table, ratio lines against named peers measured in the same run,
// and writes the figures as JSON to bench/out/. Stops by itself (--timeout-s).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { CLIENT_KINDS, type ClientKind } from './lib/messages.js';
import { fmt, secs, table } from './lib/report.js';
import { cleanupAll, runScenario, type ScenarioResult } from './lib/scenario.js';
import { benchVerify, type VerifyResult } from './lib/verify.js';
import { agentCounts as parseAgentCounts, wholeNumber } from './lib/args.js';

const TARGET_KB_PER_AGENT = 100;
const TARGET_RESTART_MS = 30_000;

const { values: args } = parseArgs({
  options: {
    agents: { type: 'string', default: '1000,10000' },
    clients: { type: 'string', default: 'lean,connection' },
    workers: { type: 'string', default: '4' },
    concurrency: { type: 'string', default: '400' },
    'source-addresses': { type: 'string', default: '0' },
    'client-nice': { type: 'string', default: '10' },
    'hub-main': { type: 'string' },
    tenants: { type: 'string', default: '10' },
    'restart-signal': { type: 'string', default: 'SIGKILL' },
    'restart-timeout-s': { type: 'string', default: '150' },
    'settle-ms': { type: 'string', default: '7000' },
    'verify-ms': { type: 'string', default: '3000' },
    'timeout-s': { type: 'string', default: '600' },
    keep: { type: 'boolean', default: false },
    'quiet-wait-s': { type: 'string', default: '0' },
    'hub-node-args': { type: 'string' },
  },
  allowPositionals: false,
});

const int = (name: keyof typeof args) => wholeNumber(args, name);
const agentCounts = parseAgentCounts(args.agents);
const clients = String(args.clients).split(',') as ClientKind[];
if (clients.some((c) => !CLIENT_KINDS.includes(c))) throw new Error(`--clients: some of ${CLIENT_KINDS.join(',')}`);
const restartSignal = args['restart-signal'];
if (restartSignal !== 'SIGKILL' && restartSignal !== 'SIGTERM') throw new Error('--restart-signal: SIGKILL or SIGTERM');

const say = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

// The whole run is bounded: past the deadline, kill everything and leave.
const overall = setTimeout(() => {
  say(`overall timeout of ${args['timeout-s']} s reached; cleaning up`);
  cleanupAll();
  process.exit(2);
}, int('timeout-s') * 1000);
overall.unref();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    cleanupAll();
    process.exit(130);
  });
}

function verifyLines(v: VerifyResult): string[] {
  return [
    `verify: node ${fmt(v.nodeVerifyFirstUse, 0)} ops/s (first use of a key), tweetnacl ${fmt(v.naclVerify, 0)} ops/s, ratio node/tweetnacl = ${fmt(v.nodeVerifyFirstUse / v.naclVerify)}x`,
    `verify: node ${fmt(v.nodeVerifyCached, 0)} ops/s (cached KeyObject), tweetnacl ${fmt(v.naclVerify, 0)} ops/s, ratio node/tweetnacl = ${fmt(v.nodeVerifyCached / v.naclVerify)}x`,
    `sign (agent side): keys.sign ${fmt(v.keysSign, 0)} ops/s, tweetnacl ${fmt(v.naclSign, 0)} ops/s, ratio keys.sign/tweetnacl = ${fmt(v.keysSign / v.naclSign)}x (signNode, new key object each time: ${fmt(v.nodeSign, 0)} ops/s)`,
  ];
}

const pct = (part: number, whole: number) => `${fmt((100 * part) / whole, 0)}%`;
const thread = (t: { wallMs: number; onCpuMs: number; runQueueMs: number; offCpuMs: number }) =>
  `${pct(t.onCpuMs, t.wallMs)} / ${pct(t.runQueueMs, t.wallMs)} / ${pct(t.offCpuMs, t.wallMs)}`;
const failures = (f: Record<string, number>) => String(Object.values(f).reduce((a, b) => a + b, 0));

function resultTable(results: ScenarioResult[]): string {
  const rows = [['figure', ...results.map((r) => `${r.client} ${r.agents}`)]];
  const row = (name: string, f: (r: ScenarioResult) => string) => rows.push([name, ...results.map(f)]);
  row('other work: busy CPUs before start', (r) => `${fmt(r.load.busyCoresBefore, 2)} of ${cpus().length}`);
  row('load average (1 min) before / after', (r) => `${fmt(r.load.before, 2)} / ${fmt(r.load.after, 2)}`);
  row('connect: all welcomed in', (r) => (r.connect.complete ? secs(r.connect.ms) : `${r.connect.welcomed} only`));
  row('connect: handshakes/s', (r) => fmt(r.connect.perSecond, 0));
  row('connect: latency p50 / p99', (r) => `${fmt(r.connect.p50Ms, 0)} / ${fmt(r.connect.p99Ms, 0)} ms`);
  row('connect: hub CPU per handshake', (r) => `${fmt(r.connect.hubCpuMs / r.agents, 2)} ms`);
  row('connect: client CPU per handshake', (r) => `${fmt(r.connect.clientCpuMs / r.agents, 2)} ms`);
  row('connect: hub thread on CPU / runq / off', (r) => thread(r.connect.hubThread));
  row('connect: failed attempts', (r) => failures(r.connect.failures));
  row('connect: accept-queue overflows', (r) => String(r.connect.tcp.ListenOverflows));
  row('hub RSS idle', (r) => `${fmt(r.memory.idleKb / 1024)} MiB`);
  row('hub RSS all connected (settled)', (r) => `${fmt(r.memory.settledKb / 1024)} MiB`);
  row('hub RSS per agent (settled)', (r) => `${fmt(r.memory.perAgentKb)} KiB`);
  row('hub RSS per agent (right after)', (r) => `${fmt(r.memory.perAgentKbUnsettled)} KiB`);
  row('hub RSS peak', (r) => `${fmt(r.memory.peakKb / 1024)} MiB`);
  row('hub sessions after connect', (r) => String(r.hubSessions.afterConnect));
  row('restart: signal', (r) => r.restart?.signal ?? '-');
  row('restart: kill -> new hub listening', (r) => secs(r.restart?.killToListenMs ?? NaN));
  row('restart: listening -> all welcomed', (r) => (r.restart?.complete ? secs(r.restart.listenToAllMs) : `${r.restart?.back ?? 0} only`));
  row('restart: back p50 / p90 / p99', (r) => (r.restart ? `${secs(r.restart.p50Ms)} / ${secs(r.restart.p90Ms)} / ${secs(r.restart.p99Ms)}` : '-'));
  row('restart: hub CPU per handshake', (r) => (r.restart ? `${fmt(r.restart.hubCpuMs / r.agents, 2)} ms` : '-'));
  row('restart: client CPU per handshake', (r) => (r.restart ? `${fmt(r.restart.clientCpuMs / r.agents, 2)} ms` : '-'));
  row('restart: hub thread on CPU / runq / off', (r) => (r.restart ? thread(r.restart.hubThread) : '-'));
  row('restart: failed attempts', (r) => (r.restart ? failures(r.restart.failures) : '-'));
  row('restart: accept-queue overflows', (r) => (r.restart ? String(r.restart.tcp.ListenOverflows) : '-'));
  row('restart: hub peak open fds / limit', (r) => (r.restart ? `${r.restart.peakFds} / ${r.hubFdLimit}` : '-'));
  row('hub sessions after restart', (r) => String(r.hubSessions.afterRestart));
  row('SIGTERM with all connected: exit in', (r) => secs(r.shutdownMs));
  return table(rows);
}

function targetLines(results: ScenarioResult[]): string[] {
  const out: string[] = [];
  for (const r of results) {
    const kb = (r.memory.perAgentKb * 1024) / 1000;
    out.push(`${r.client} ${r.agents}: hub RSS per agent ${fmt(kb)} kB (target <= ${TARGET_KB_PER_AGENT} kB: ${kb <= TARGET_KB_PER_AGENT ? 'met' : 'MISSED'})`);
    const back = r.restart?.complete ? r.restart.listenToAllMs : NaN;
    out.push(
      `${r.client} ${r.agents}: all back ${secs(back)} after the new hub listened (target <= ${TARGET_RESTART_MS / 1000} s: ${back <= TARGET_RESTART_MS ? 'met' : 'MISSED'})`,
    );
  }
  // Peers in the same run: the two client kinds against each other.
  for (const n of agentCounts) {
    const lean = results.find((r) => r.client === 'lean' && r.agents === n);
    const conn = results.find((r) => r.client === 'connection' && r.agents === n);
    if (lean && conn) {
      out.push(`${n}: handshakes/s lean ${fmt(lean.connect.perSecond, 0)}, connection ${fmt(conn.connect.perSecond, 0)}, ratio lean/connection = ${fmt(lean.connect.perSecond / conn.connect.perSecond, 2)}x`);
    }
  }
  return out;
}

async function main(): Promise<void> {
  say(`machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, ${fmt(totalmem() / 2 ** 30)} GiB, node ${process.version}`);
  say('verify: measuring tweetnacl and node Ed25519 ...');
  const verify = benchVerify({ minMs: int('verify-ms'), firstUseKeys: 3000 });
  for (const l of verifyLines(verify)) say(l);

  const results: ScenarioResult[] = [];
  for (const client of clients) {
    for (const agents of agentCounts) {
      say(`scenario: ${agents} agents, client ${client}`);
      results.push(
        await runScenario({
          agents,
          client,
          workers: Math.max(1, Math.min(int('workers'), agents)),
          concurrency: int('concurrency'),
          sourceAddresses: int('source-addresses'),
          clientNice: int('client-nice'),
          hubMain: args['hub-main'],
          tenants: int('tenants'),
          restartSignal: restartSignal as 'SIGKILL' | 'SIGTERM',
          connectTimeoutMs: 240_000,
          restartTimeoutMs: int('restart-timeout-s') * 1000,
          settleMs: int('settle-ms'),
          keep: args.keep,
          quietWaitMs: int('quiet-wait-s') * 1000,
          hubNodeArgs: args['hub-node-args']?.split(' ').filter(Boolean),
          say,
        }),
      );
    }
  }

  const out = [
    `bench/connections  ${new Date().toISOString()}  ${cpus().length} x ${cpus()[0]?.model ?? '?'}  ${fmt(totalmem() / 2 ** 30)} GiB  node ${process.version}`,
    '',
    resultTable(results),
    '',
    ...verifyLines(verify),
    ...targetLines(results),
    '',
    ...results.map((r) => `failed attempts, ${r.client} ${r.agents}: connect ${JSON.stringify(r.connect.failures)}; restart ${JSON.stringify(r.restart?.failures ?? {})}`),
  ].join('\n');
  process.stdout.write(out + '\n');
  const dir = new URL('../../bench/out/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const file = new URL(`connections-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, dir);
  writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), cpus: cpus().length, node: process.version, args, verify, results }, null, 2) + '\n');
  say(`figures written to ${file.pathname}`);
}

try {
  await main();
} catch (err) {
  say(`bench failed: ${(err as Error).stack ?? String(err)}`);
  cleanupAll();
  process.exitCode = 1;
}
clearTimeout(overall);
