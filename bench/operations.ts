// bench/operations: what remote operations cost over the agent's socket, each
// figure against a named peer measured in the same run on the same engine.
//   a. log follow throughput: a container that wrote N numbered lines, read
//      from its first line with follow until the last one arrives, through
//      Ferry (GET /v1/agents/:id/logs?follow=true: engine -> agent process ->
//      WebSocket -> hub -> HTTP NDJSON to the client) against `docker logs -f`
//      on the same container; runs alternating;
//   b. operation round trip: a restart of a one-replica service asked of the
//      hub (POST /v1/agents/:id/operations, answered when the agent has
//      restarted the container) against `docker restart` of the same
//      container, same grace (the container exits at once on SIGTERM);
//      alternating, p50/p90;
//   c. directive delivery while streams run: a deploy (POST /v1/deploy, wait
//      for the agent's acknowledgement) of alternating versions of a small
//      stack, idle against while 10 log streams read the loud container at
//      full speed; p50/p99.
//
//   npm run bench:operations -- [--lines 200000] [--runs 3] [--restarts 15] [--deploys 30] [--streams 10] [--agent-node-args='--cpu-prof --cpu-prof-dir=DIR']
//
// The hub runs in this process (in-process, sqlite), the agent as a real
// child process, as in the integration tests (test/helpers/fleet.ts). Needs
// the engine and registry of `bash scripts/test-env.sh`. Everything it
// creates is removed at the end. Figures are printed and written as JSON to
// bench/out/.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import type { TestContext } from 'node:test';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { dockerOk, registryAvailable } from '../test/helpers/docker.js';
import { fleet, type FleetAgent } from '../test/helpers/fleet.js';
import { chattyImage, containers, loudCommand } from '../test/helpers/operations.js';
import { service } from '../test/helpers/signing.js';
import { waitFor } from '../test/helpers/tmp.js';
import { fmt, quantile, table } from './lib/report.js';

const { values: args } = parseArgs({
  options: {
    lines: { type: 'string', default: '200000' },
    runs: { type: 'string', default: '3' },
    restarts: { type: 'string', default: '15' },
    deploys: { type: 'string', default: '30' },
    streams: { type: 'string', default: '10' },
    /** Node flags for the agent process, e.g. '--cpu-prof --cpu-prof-dir=DIR' (profile written when it stops at the end). */
    'agent-node-args': { type: 'string', default: '' },
  },
});
const AGENT_NODE_ARGS = String(args['agent-node-args']).split(/\s+/).filter(Boolean);
const LINES = Number(args.lines);
const RUNS = Number(args.runs);
const RESTARTS = Number(args.restarts);
const DEPLOYS = Number(args.deploys);
const STREAMS = Number(args.streams);
/** The chatty loop, but leaving at once on SIGTERM, so a restart is the engine's work and not a grace period. */
const PROMPT = ['sh', '-c', 'trap "exit 0" TERM; i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.2 & wait $!; done'];

const say = (s: string) => process.stdout.write(s + '\n');
const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The fixtures' cleanups (fleet and its helpers register them with t.after), run at the end. */
const cleanups: (() => unknown)[] = []; // in the order registered, as node:test runs t.after hooks
const t = { after: (fn: () => unknown) => void cleanups.push(fn), name: 'bench-operations' } as unknown as TestContext;

const lastLine = `line ${String(LINES - 1).padStart(6, '0')} `;

/** ms until `docker logs -f` printed the last line. */
function dockerFollow(id: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('docker', ['logs', '-f', id], { stdio: ['ignore', 'pipe', 'ignore'] });
    let tail = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      tail = (tail + d).slice(-200);
      if (tail.includes(lastLine)) {
        const ms = performance.now() - t0;
        child.kill();
        resolve(ms);
      }
    });
    child.on('error', reject);
  });
}

/** ms until Ferry's follow delivered the last line; then the reader leaves. */
function ferryFollow(url: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = get(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`logs answered ${res.statusCode}`));
      let tail = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        tail = (tail + d).slice(-400);
        if (tail.includes(lastLine)) {
          const ms = performance.now() - t0;
          req.destroy();
          resolve(ms);
        }
      });
    });
    req.on('error', (err) => (err.message.includes('socket hang up') ? undefined : reject(err)));
  });
}

async function main(): Promise<Record<string, unknown>> {
  if (!(await registryAvailable())) throw new Error('no registry at 127.0.0.1:5000: run bash scripts/test-env.sh');
  const f = await fleet(t, { driftIntervalMs: 600_000 });
  const [a] = f.agents as [FleetAgent];
  if (AGENT_NODE_ARGS.length) {
    await a.daemon.stop();
    a.start({}, AGENT_NODE_ARGS);
    await waitFor('the agent connected again', async () => (await f.th.api('GET', `/v1/agents/${a.id}`)).body.status === 'connected', 20_000);
  }
  const img = await chattyImage();
  await f.publish('bench', '1.0.0', { loud: service(img, { command: loudCommand(LINES), stopGracePeriodMs: 1000 }), prompt: service(img, { command: PROMPT, stopGracePeriodMs: 1000 }) });
  await f.publish('tick', '1.0.0', { tick: service(img, { command: PROMPT, stopGracePeriodMs: 1000 }) });
  await f.publish('tick', '1.0.1', { tick: service(img, { command: PROMPT, stopGracePeriodMs: 1000, environment: { V: '2' } }) });
  await f.deploy(a, 'bench', '1.0.0');
  await f.waitRelease(a, 'bench', '1.0.0', 'applied', 120_000);
  const [loud] = await containers(a.id, 'bench', 'loud');
  await waitFor('the loud service wrote its lines', async () => (await dockerOk(['logs', '--tail', '1', loud!.id])).startsWith(lastLine), 300_000, 500);
  const bytes = (await dockerOk(['logs', loud!.id])).length + 1;

  // a. follow throughput
  say(`a. following ${LINES} lines (${fmt(bytes / 1048576)} MiB) from the first, ${RUNS} runs each, alternating`);
  const url = `${f.th.url}/v1/agents/${a.id}/logs?stack=bench&service=loud&follow=true`;
  const ferryMs: number[] = [];
  const dockerMs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    if (i % 2 === 0) {
      ferryMs.push(await ferryFollow(url, f.th.adminToken));
      dockerMs.push(await dockerFollow(loud!.id));
    } else {
      dockerMs.push(await dockerFollow(loud!.id));
      ferryMs.push(await ferryFollow(url, f.th.adminToken));
    }
  }
  const mibs = (ms: number) => bytes / 1048576 / (ms / 1000);
  const fMed = quantile(ferryMs, 0.5);
  const dMed = quantile(dockerMs, 0.5);
  say(table([
    ['reader', 'median time', 'MiB/s (log text)', 'runs (ms)'],
    ['ferry logs -f (agent -> hub -> client)', `${fmt(fMed, 0)} ms`, fmt(mibs(fMed)), ferryMs.map((x) => fmt(x, 0)).join(' ')],
    ['docker logs -f (peer)', `${fmt(dMed, 0)} ms`, fmt(mibs(dMed)), dockerMs.map((x) => fmt(x, 0)).join(' ')],
  ]));
  const throughputRatio = dMed / fMed;
  say(`   throughput ferry / docker: ${fmt(throughputRatio, 2)}x (target >= 0.8x)\n`);

  // b. restart round trip
  say(`b. restart round trip, ${RESTARTS} each, alternating`);
  const [prompt] = await containers(a.id, 'bench', 'prompt');
  const ferryRt: number[] = [];
  const dockerRt: number[] = [];
  const viaFerry = async () => {
    const t0 = performance.now();
    const r = await f.th.api('POST', `/v1/agents/${a.id}/operations`, { kind: 'restart', stack: 'bench', service: 'prompt' });
    if (r.status !== 200 || r.body.status !== 'ok') throw new Error(`restart answered ${r.status}: ${JSON.stringify(r.body)}`);
    ferryRt.push(performance.now() - t0);
  };
  const viaDocker = async () => {
    const t0 = performance.now();
    await dockerOk(['restart', '-t', '1', prompt!.id]);
    dockerRt.push(performance.now() - t0);
  };
  for (let i = 0; i < RESTARTS; i++) {
    if (i % 2 === 0) await viaFerry().then(viaDocker);
    else await viaDocker().then(viaFerry);
  }
  const q = (v: number[], p: number) => quantile(v, p);
  say(table([
    ['restart', 'p50', 'p90', 'max'],
    ['ferry service restart (hub -> agent -> engine -> answer)', `${fmt(q(ferryRt, 0.5), 0)} ms`, `${fmt(q(ferryRt, 0.9), 0)} ms`, `${fmt(Math.max(...ferryRt), 0)} ms`],
    ['docker restart -t 1 (peer)', `${fmt(q(dockerRt, 0.5), 0)} ms`, `${fmt(q(dockerRt, 0.9), 0)} ms`, `${fmt(Math.max(...dockerRt), 0)} ms`],
  ]));
  const overhead = q(ferryRt, 0.5) - q(dockerRt, 0.5);
  say(`   overhead at p50: ${fmt(overhead, 0)} ms (target < 100 ms)\n`);
  // c. directive delivery, idle and under streams
  say(`c. directive delivery (deploy to acknowledgement), ${DEPLOYS} idle, then ${DEPLOYS} while ${STREAMS} log streams run`);
  let version = 0;
  const deployOnce = async (into: number[]) => {
    const v = `1.0.${version++ % 2}`;
    const t0 = performance.now();
    const r = await f.th.api('POST', '/v1/deploy', { stack: 'tick', version: v, agent: a.id, wait: 30 });
    if (r.status !== 200 || r.body.status !== 'accepted') throw new Error(`deploy answered ${r.status}: ${JSON.stringify(r.body)}`);
    into.push(performance.now() - t0);
  };
  const idle: number[] = [];
  const loaded: number[] = [];
  for (let i = 0; i < DEPLOYS; i++) await deployOnce(idle);
  const readers = Array.from({ length: STREAMS }, () => ferryFollow(url, f.th.adminToken));
  await sleepMs(1000); // the streams under way
  for (let i = 0; i < DEPLOYS; i++) await deployOnce(loaded);
  const streamsMs = await Promise.all(readers);
  say(table([
    ['deploy -> ack', 'p50', 'p99', 'max'],
    [`while ${STREAMS} streams run`, `${fmt(q(loaded, 0.5), 0)} ms`, `${fmt(q(loaded, 0.99), 0)} ms`, `${fmt(Math.max(...loaded), 0)} ms`],
    ['idle (peer)', `${fmt(q(idle, 0.5), 0)} ms`, `${fmt(q(idle, 0.99), 0)} ms`, `${fmt(Math.max(...idle), 0)} ms`],
  ]));
  const p99Ratio = q(loaded, 0.99) / q(idle, 0.99);
  say(`   p99 under streams / idle: ${fmt(p99Ratio, 2)}x (target <= 1.2x); the ${STREAMS} streams took ${fmt(Math.min(...streamsMs), 0)}-${fmt(Math.max(...streamsMs), 0)} ms (deploys ended before them: ${Math.max(...streamsMs) > 1000 + loaded.reduce((x, y) => x + y, 0)})\n`);

  if (AGENT_NODE_ARGS.length) await a.daemon.stop('SIGTERM'); // a profile is written on a clean exit
  return { lines: LINES, bytes, follow: { ferryMs, dockerMs, throughputRatio }, restart: { ferryMs: ferryRt, dockerMs: dockerRt, overheadP50Ms: overhead }, delivery: { idleMs: idle, underStreamsMs: loaded, streams: STREAMS, p99Ratio } };
}

let out: Record<string, unknown> | undefined;
try {
  out = await main();
} catch (err) {
  say(`bench failed: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
} finally {
  for (const fn of cleanups) {
    try {
      await fn();
    } catch (err) {
      say(`cleanup: ${(err as Error).message}`);
    }
  }
  if (out) {
    const dir = new URL('../../bench/out/', import.meta.url);
    mkdirSync(dir, { recursive: true });
    const file = new URL(`operations-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, dir);
    writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
    say(`figures written to ${file.pathname}`);
  }
}
