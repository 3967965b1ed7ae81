// bench/reconcile: what the reconciler costs on a real Docker engine, each
// figure against a named peer measured in the same run.
//   a. a 10-service stack deployed from scratch: Reconciler.apply (in
//      process, concurrency 1, 4 = default, 10) against `docker-compose up -d`
//      (compose v1) of an equivalent compose file with the same images by
//      digest, and against the engine's floor (the same network and 10
//      containers created and started straight through the API, all at
//      once); runs alternating (order rotating per round), each torn down
//      between runs (apply with no targets / `docker-compose down`, also timed);
//   b. a no-op pass over 50 owned containers (10 services x 5 replicas):
//      dryRun (observe + plan) and repair() that finds nothing to do, p50/p99,
//      against `docker ps -a --filter label=ferry.agent=…` through the CLI and
//      one dockerode listContainers call with the same filter;
//   c. upgrading one service of a 10-service stack: containers replaced
//      (container ids before/after) and time, against `docker-compose up -d`
//      with the one image changed, both stacks up at once, flips alternating;
//   d. a real agent process (hub child process, enrollment, signed release,
//      deploy) idling with a 3-service stack: RSS and CPU over a minute,
//      against an idle `node` process sampled over the same minute.
//
//   npm run bench:reconcile -- [--runs 5] [--passes 30] [--idle-s 60] [--only a,b,c,d] [--timeout-s 900]
//     [--agent-node-args='--jitless --no-expose-wasm']   (node flags for the idle agent in d; default: its unit's, agent/node-flags.ts)
//
// Needs the engine and registry of `bash scripts/test-env.sh` and Debian's
// docker-compose (`apt-get install -y docker-compose`). Images are built with
// no internet (static busybox, `docker import`), pushed to 127.0.0.1:5000 so
// every ref is `repo@sha256:…`, and are present locally before anything is
// timed (no pull in any figure). Everything the bench creates carries the
// label ferry.bench.run=<run id> or its agent's ferry.agent label and is
// removed at the end, on ^C and on the overall timeout; images stay (cache).
// Figures are printed and written as JSON to bench/out/.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import '../agent/engine/dockerode-deferred.js'; // so this bench also runs under --jitless (ssh2 needs WebAssembly)
import Docker from 'dockerode';
import YAML from 'yaml';
import { DockerEngine } from '../agent/engine/docker.js';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { LABEL, desiredStack } from '../agent/reconcile/model.js';
import { plan } from '../agent/reconcile/plan.js';
import { Reconciler, type Target } from '../agent/reconcile/reconciler.js';
import { PAYLOAD_TYPES, pae } from '../shared/dsse.js';
import { encodePublicKey, keyId, sign } from '../shared/keys.js';
import { silentLogger } from '../shared/logger.js';
import { canonicalJson, parseRelease, type Release, type Service } from '../shared/release.js';
import { buildTestImage, docker, dockerOk, registryAvailable } from '../test/helpers/docker.js';
import { seededKey, service } from '../test/helpers/signing.js';
import { freePort, procCpuMs, procMemory, startHub, type HubProcess } from './lib/hub-process.js';
import { fmt, quantile, table } from './lib/report.js';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    passes: { type: 'string', default: '30' },
    'idle-s': { type: 'string', default: '60' },
    only: { type: 'string', default: 'a,b,c,d' },
    'timeout-s': { type: 'string', default: '900' },
    /** Node flags for the idle agent (d); by default those its systemd unit uses (agent/node-flags.ts). '' for none. */
    'agent-node-args': { type: 'string', default: AGENT_NODE_FLAGS.join(' ') },
  },
});
const int = (name: keyof typeof args, min: number, max: number) => {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} takes a whole number from ${min} to ${max}`);
  return n;
};
const RUNS = int('runs', 1, 50);
const PASSES = int('passes', 5, 1000);
const IDLE_S = int('idle-s', 5, 600);
const TIMEOUT_S = int('timeout-s', 60, 7200);
const AGENT_NODE_ARGS = String(args['agent-node-args']).split(/\s+/).filter(Boolean);
const ONLY = new Set(String(args.only).split(',').map((s) => s.trim()));

const TARGET_DEPLOY_RATIO = 1.0;
const TARGET_NOOP_MS = 50;
const TARGET_RSS_MB = 70;

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = { hub: join(ROOT, 'dist/hub/main.js'), agent: join(ROOT, 'dist/agent/main.js') };
const RUN = randomBytes(3).toString('hex');
const BENCH_LABEL = 'ferry.bench.run';
/** The in-process reconcilers' agent id (prefix ferry_bench<3 hex>). */
const AGENT = `agt_bench${RUN}`;
const PROJECT_A = `fbench${RUN}a`;
const PROJECT_C = `fbench${RUN}c`;
const TMP = mkdtempSync(join(tmpdir(), 'ferry-bench-reconcile-'));
const HOLD_CMD = ['/bin/sh', '-c', 'trap "exit 0" TERM INT; sleep 86400 & wait'];

const say = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
const ms = (x: number, d = 1) => `${fmt(x, d)} ms`;
const p50 = (xs: number[]) => quantile(xs, 0.5);
const p99 = (xs: number[]) => quantile(xs, 0.99);
const ratio = (a: number, b: number) => `${fmt(a / b, 2)}x`;

// ---- cleanup, bounded run ------------------------------------------------------

const children: ChildProcess[] = [];
const agentIds = new Set<string>([AGENT]);
let cleaned = false;

function dockerSync(argv: string[]): string {
  const r = spawnSync('docker', argv, { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? r.stdout : '';
}

/** Removes everything this run made (idempotent, synchronous so it also runs on exit). */
function cleanupSync(): void {
  if (cleaned) return;
  cleaned = true;
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  const ids = (out: string) => out.split('\n').map((s) => s.trim()).filter(Boolean);
  const filters = [`label=${BENCH_LABEL}=${RUN}`, `label=${BENCH_LABEL}=${RUN}-floor`, ...[...agentIds].map((id) => `label=${LABEL.agent}=${id}`), `label=com.docker.compose.project=${PROJECT_A}`, `label=com.docker.compose.project=${PROJECT_C}`];
  for (const f of filters) {
    const cs = ids(dockerSync(['ps', '-aq', '--filter', f]));
    if (cs.length) dockerSync(['rm', '-f', '-v', ...cs]);
  }
  for (const f of filters) {
    const ns = ids(dockerSync(['network', 'ls', '-q', '--filter', f]));
    if (ns.length) dockerSync(['network', 'rm', ...ns]);
    const vs = ids(dockerSync(['volume', 'ls', '-q', '--filter', f]));
    if (vs.length) dockerSync(['volume', 'rm', '-f', ...vs]);
  }
  rmSync(TMP, { recursive: true, force: true });
}

const stopAll = new AbortController();
const overall = setTimeout(() => {
  say(`overall timeout of ${TIMEOUT_S} s reached; cleaning up`);
  stopAll.abort();
  cleanupSync();
  process.exit(2);
}, TIMEOUT_S * 1000);
overall.unref();
process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

// ---- processes --------------------------------------------------------------------

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion (killed after timeoutMs); never throws on a non-zero exit. */
function exec(cmd: string, argv: string[], opts: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, argv, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

async function execOk(cmd: string, argv: string[], opts: { timeoutMs?: number; cwd?: string } = {}): Promise<Ran> {
  const r = await exec(cmd, argv, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-2000)}`);
  return r;
}

const compose = (project: string, file: string, ...argv: string[]) => execOk('docker-compose', ['--no-ansi', '-p', project, '-f', file, ...argv], { timeoutMs: 180_000 });

/** Container ids (full) with a label, optionally running only. */
async function containers(filter: string, runningOnly = false): Promise<string[]> {
  const out = await dockerOk(['ps', ...(runningOnly ? [] : ['-a']), '-q', '--no-trunc', '--filter', filter]);
  return out.split('\n').filter(Boolean).sort();
}

async function expectCount(what: string, filter: string, n: number, runningOnly: boolean): Promise<void> {
  const have = (await containers(filter, runningOnly)).length;
  if (have !== n) throw new Error(`${what}: expected ${n} ${runningOnly ? 'running' : ''} containers with ${filter}, found ${have}`);
}

// ---- stacks -----------------------------------------------------------------------

const names = (n: number) => Array.from({ length: n }, (_, i) => `s${String(i).padStart(2, '0')}`);
const benchLabels = { [BENCH_LABEL]: RUN };

function releaseOf(stack: string, version: string, services: Record<string, Service>): Release {
  const doc: Release = { _type: 'release', stack, version, createdAt: Date.now(), services, networks: {}, volumes: {} };
  return parseRelease(canonicalJson(doc)); // what the hub and agents would accept
}

function targetOf(release: Release): Target {
  return { stack: release.stack, version: release.version, digest: `sha256:${createHash('sha256').update(canonicalJson(release)).digest('hex')}`, release };
}

/** n independent services on `image` (one service may use `other`), no ports, no healthchecks. */
function plainServices(n: number, image: string, replicas = 1, swap?: { service: string; image: string }): Record<string, Service> {
  return Object.fromEntries(names(n).map((s) => [s, service(swap?.service === s ? swap.image : image, { labels: benchLabels, replicas })]));
}

/** The same stack as a compose file (compose v1 reads it): same images by digest, restart policy, grace, labels. */
function composeFile(path: string, services: Record<string, Service>): string {
  const doc = {
    version: '2.4',
    services: Object.fromEntries(
      Object.entries(services).map(([n, s]) => [n, { image: s.image, restart: s.restart, stop_grace_period: `${s.stopGracePeriodMs / 1000}s`, labels: s.labels }]),
    ),
  };
  writeFileSync(path, YAML.stringify(doc));
  return path;
}

function reconciler(name: string, concurrency: number): Reconciler {
  const stateDir = join(TMP, `state-${name}`);
  mkdirSync(stateDir, { recursive: true });
  return new Reconciler({ engine: new DockerEngine(), agentId: AGENT, stateDir, log: silentLogger(), bakeMs: 0, pollMs: 50, applyTimeoutMs: 120_000, concurrency });
}

let seq = 1;
async function applyOk(rec: Reconciler, targets: Target[]): Promise<number> {
  const t0 = performance.now();
  await rec.apply(seq++, targets, stopAll.signal);
  const took = performance.now() - t0;
  for (const t of targets) {
    const st = rec.statuses.find((s) => s.stack === t.stack);
    if (st?.state !== 'applied' || st.version !== t.version) throw new Error(`${t.stack}@${t.version} not applied: ${JSON.stringify(st)}`);
  }
  return took;
}

// ---- facts ------------------------------------------------------------------------

async function machineFacts() {
  const info = JSON.parse(await dockerOk(['info', '--format', '{{json .}}'])) as Record<string, unknown>;
  const composeVersion = (await exec('docker-compose', ['version', '--short']).catch(() => ({ stdout: 'missing' }))).stdout.trim();
  const others = (await dockerOk(['ps', '-q'])).split('\n').filter(Boolean).length;
  return {
    cpu: cpus()[0]?.model.trim() ?? '?',
    cpus: cpus().length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: String(info.KernelVersion ?? ''),
    docker: String(info.ServerVersion ?? ''),
    storage: String(info.Driver ?? ''),
    cgroup: `${String(info.CgroupDriver ?? '')} v${String(info.CgroupVersion ?? '')}`,
    node: process.version,
    compose: composeVersion,
    containersRunningAtStart: others,
    tmp: TMP,
  };
}

// ---- a. deploy from scratch --------------------------------------------------------

const short = (variant: string) => (variant.startsWith('docker-compose') ? 'compose' : variant.startsWith('engine') ? 'floor' : `ferry c${/concurrency (\d+)/.exec(variant)?.[1] ?? '?'}`);

interface DeployResult {
  variant: string;
  up: number[];
  down: number[];
}

async function benchDeploy(image: string): Promise<{ results: DeployResult[]; composeFloor: number[] }> {
  const stack = 'deploy10';
  const services = plainServices(10, image);
  const target = targetOf(releaseOf(stack, '1.0.0', services));
  const file = composeFile(join(TMP, 'deploy10.yml'), services);
  const ferryFilter = `label=${LABEL.agent}=${AGENT}`;
  const composeFilter = `label=com.docker.compose.project=${PROJECT_A}`;
  const variants: { name: string; up: () => Promise<number>; down: () => Promise<number>; filter: string }[] = [
    { name: 'docker-compose up -d', up: async () => (await compose(PROJECT_A, file, 'up', '-d')).ms, down: async () => (await compose(PROJECT_A, file, 'down')).ms, filter: composeFilter },
  ];
  // The engine's own floor: the same 10 containers made straight through the API, all at once.
  const api = new Docker();
  const floorNet = `${PROJECT_A}floor_default`;
  const floorFilter = `label=${BENCH_LABEL}=${RUN}-floor`;
  variants.push({
    name: 'engine floor: dockerode create+start x10, all at once',
    up: async () => {
      const t0 = performance.now();
      await api.createNetwork({ Name: floorNet, Driver: 'bridge', Labels: { [BENCH_LABEL]: `${RUN}-floor` } });
      await Promise.all(
        Object.entries(services).map(async ([name, s]) => {
          const c = await api.createContainer({
            name: `${floorNet}_${name}`,
            Image: s.image,
            Labels: { [BENCH_LABEL]: `${RUN}-floor` },
            StopTimeout: s.stopGracePeriodMs / 1000,
            HostConfig: { NetworkMode: floorNet, RestartPolicy: { Name: s.restart } },
            NetworkingConfig: { EndpointsConfig: { [floorNet]: { Aliases: [name] } } },
          });
          await c.start();
        }),
      );
      return performance.now() - t0;
    },
    down: async () => {
      const t0 = performance.now();
      const list = await api.listContainers({ all: true, filters: { label: [`${BENCH_LABEL}=${RUN}-floor`] } });
      await Promise.all(list.map(async (c) => {
        await api.getContainer(c.Id).stop({ t: 10 }).catch(() => undefined);
        await api.getContainer(c.Id).remove({ force: true });
      }));
      await api.getNetwork(floorNet).remove();
      return performance.now() - t0;
    },
    filter: floorFilter,
  });
  const recs: Reconciler[] = [];
  for (const c of [1, 4, 10]) {
    const rec = reconciler(`deploy-c${c}`, c);
    recs.push(rec);
    variants.push({ name: `ferry apply, concurrency ${c}${c === 4 ? ' (default)' : ''}`, up: () => applyOk(rec, [target]), down: () => applyOk(rec, []), filter: ferryFilter });
  }
  const results = variants.map((v) => ({ variant: v.name, up: [] as number[], down: [] as number[] }));
  const composeFloor: number[] = [];
  // One untimed round first: warms the engine, compose's python imports and the page cache.
  for (const v of variants) {
    await v.up();
    await v.down();
  }
  for (let round = 0; round < RUNS; round++) {
    const order = variants.map((_, i) => (i + round) % variants.length);
    for (const i of order) {
      const v = variants[i]!;
      const up = await v.up();
      await expectCount(v.name, v.filter, 10, true);
      const down = await v.down();
      await expectCount(`${v.name} teardown`, v.filter, 0, false);
      results[i]!.up.push(up);
      results[i]!.down.push(down);
    }
    composeFloor.push((await compose(PROJECT_A, file, 'ps', '-q')).ms);
    say(`a: round ${round + 1}/${RUNS}: up ${results.map((r) => `${short(r.variant)} ${fmt(r.up.at(-1)!, 0)}`).join(', ')} ms`);
  }
  for (const r of recs) r.close();
  return { results, composeFloor };
}

// ---- b. no-op pass over 50 containers ----------------------------------------------

async function benchNoop(image: string) {
  const rec = reconciler('noop50', 10);
  const target = targetOf(releaseOf('noop50', '1.0.0', plainServices(10, image, 5)));
  const filter = `label=${LABEL.agent}=${AGENT}`;
  const deployMs = await applyOk(rec, [target]);
  await expectCount('50 containers', filter, 50, true);
  const engine = new DockerEngine();
  const api = new Docker();
  const desired = [desiredStack(AGENT, target.release)];
  const label = { key: LABEL.agent, value: AGENT };
  const measures: Record<string, () => Promise<unknown>> = {
    dryRun: async () => {
      const p = await rec.dryRun([target]);
      if (p.steps.length || p.waiting.length) throw new Error(`no-op plan not empty: ${JSON.stringify(p).slice(0, 500)}`);
    },
    repair: async () => {
      const done = await rec.repair(stopAll.signal);
      if (done.length) throw new Error(`repair did something: ${done.join('; ')}`);
    },
    observe: () => rec.observe(desired),
    listContainers: async () => {
      if ((await engine.listContainers(label)).length !== 50) throw new Error('engine.listContainers did not see 50');
    },
    cliPs: async () => {
      const r = await docker(['ps', '-a', '-q', '--filter', `label=${LABEL.agent}=${AGENT}`]);
      if (r.code !== 0 || r.stdout.split('\n').filter(Boolean).length !== 50) throw new Error(`docker ps: ${r.stderr}`);
    },
    dockerodeList: async () => {
      if ((await api.listContainers({ all: true, filters: { label: [`${LABEL.agent}=${AGENT}`] } })).length !== 50) throw new Error('dockerode list did not see 50');
    },
  };
  const keys = Object.keys(measures);
  const times = Object.fromEntries(keys.map((k) => [k, [] as number[]]));
  for (let i = 0; i < 3; i++) for (const k of keys) await measures[k]!(); // warm-up
  for (let pass = 0; pass < PASSES; pass++) {
    for (let j = 0; j < keys.length; j++) {
      const k = keys[(j + pass) % keys.length]!;
      const t0 = performance.now();
      await measures[k]!();
      times[k]!.push(performance.now() - t0);
    }
  }
  // The same dryRun in a child process running with the agent's node flags, as the installed agent does.
  const childDir = join(TMP, 'state-noop50-child');
  mkdirSync(childDir, { recursive: true });
  const child = await execOk(process.execPath, [...AGENT_NODE_FLAGS, join(ROOT, 'dist/bench/lib/noop-child.js'), JSON.stringify({ agentId: AGENT, target, passes: PASSES, stateDir: childDir })], { timeoutMs: 600_000 });
  times.dryRunAgentFlags = (JSON.parse(child.stdout) as { times: number[] }).times;
  // The pure planner alone, on one observation (thousands of runs: it is sub-millisecond).
  const current = await rec.observe(desired);
  const planTimes: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t0 = performance.now();
    plan(current, desired, { defaultGraceMs: 10_000 });
    planTimes.push(performance.now() - t0);
  }
  const teardownMs = await applyOk(rec, []);
  await expectCount('50 containers removed', filter, 0, false);
  rec.close();
  return { deployMs, teardownMs, times, planTimes, engineCalls: 1 + 50 + 1 + 1 + 1 };
}

// ---- c. upgrade one service ---------------------------------------------------------

interface FlipResult {
  ms: number;
  replaced: number;
  added: number;
}

async function benchUpgrade(imageA: string, imageB: string) {
  const stack = 'up10';
  const rec = reconciler('upgrade', 4);
  const ferryFilter = `label=${LABEL.agent}=${AGENT}`; // only this stack is owned while it runs
  const composeFilter = `label=com.docker.compose.project=${PROJECT_C}`;
  const v1 = plainServices(10, imageA);
  const v2 = plainServices(10, imageA, 1, { service: 's05', image: imageB });
  const files = [composeFile(join(TMP, 'up-v1.yml'), v1), composeFile(join(TMP, 'up-v2.yml'), v2)];
  await applyOk(rec, [targetOf(releaseOf(stack, '1.0.0', v1))]);
  await compose(PROJECT_C, files[0]!, 'up', '-d');
  await expectCount('ferry v1', ferryFilter, 10, true);
  await expectCount('compose v1', composeFilter, 10, true);
  const flip = async (fn: () => Promise<number>, filter: string): Promise<FlipResult> => {
    const before = await containers(filter);
    const took = await fn();
    const after = await containers(filter, true);
    if (after.length !== 10) throw new Error(`after the upgrade ${after.length} containers run, not 10`);
    return { ms: took, replaced: before.filter((id) => !after.includes(id)).length, added: after.filter((id) => !before.includes(id)).length };
  };
  const ferry: FlipResult[] = [];
  const comp: FlipResult[] = [];
  for (let i = 1; i <= RUNS * 2; i++) {
    const services = i % 2 === 1 ? v2 : v1; // 1.0.1 swaps s05 to image B, 1.0.2 back to A, ...
    const doFerry = () => flip(() => applyOk(rec, [targetOf(releaseOf(stack, `1.0.${i}`, services))]), ferryFilter).then((r) => ferry.push(r));
    const doCompose = () => flip(async () => (await compose(PROJECT_C, files[i % 2]!, 'up', '-d')).ms, composeFilter).then((r) => comp.push(r));
    if (i % 2) {
      await doFerry();
      await doCompose();
    } else {
      await doCompose();
      await doFerry();
    }
  }
  await applyOk(rec, []);
  await compose(PROJECT_C, files[0]!, 'down');
  rec.close();
  return { ferry, compose: comp };
}

// ---- d. agent idle -------------------------------------------------------------------

interface IdleSample {
  t: number;
  agentRssKb: number;
  agentCpuMs: number;
  peerRssKb: number;
  peerCpuMs: number;
  hubRssKb: number;
  hubCpuMs: number;
}

async function benchIdle(svcImage: string, webImage: string) {
  const dir = join(TMP, 'idle');
  const hubDir = join(dir, 'hub');
  const agentDir = join(dir, 'agent');
  mkdirSync(hubDir, { recursive: true });
  const init = await execOk(process.execPath, [BIN.hub, 'init', '--data-dir', hubDir, '--admin-name', 'bench', '--json']);
  const token = (JSON.parse(init.stdout) as { token: string }).token;
  const port = await freePort();
  const hub: HubProcess = await startHub({ dataDir: hubDir, port, logFile: join(dir, 'hub.log'), timeoutMs: 20_000 });
  children.push(hub.child);
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(hub.url + path, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : null, signal: AbortSignal.timeout(60_000) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const must = (r: { status: number; body: any }, want: number, what: string) => {
    if (r.status !== want) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const tenant = 'bench';
  const root = seededKey('bench-reconcile-root');
  const rel = seededKey('bench-reconcile-release');
  must(await api('POST', '/v1/tenants', { name: tenant }), 201, 'tenant');
  const drafted = must(await api('POST', `/v1/tenants/${tenant}/trust/init`, { root: [{ public: encodePublicKey(root.publicKey) }], rootThreshold: 1, release: [{ public: encodePublicKey(rel.publicKey), name: 'rm' }], releaseThreshold: 1 }), 201, 'trust init');
  const rootSig = Buffer.from(sign(pae(PAYLOAD_TYPES.root, Buffer.from(drafted.envelope.payload, 'base64')), root.secretKey)).toString('base64');
  must(await api('POST', `/v1/tenants/${tenant}/trust/signatures`, { version: 1, keyid: keyId(root.publicKey), sig: rootSig }), 200, 'trust sign');
  const enrollToken = must(await api('POST', `/v1/tenants/${tenant}/enrollment-tokens`, { ttlSeconds: 600 }), 201, 'enrollment token').token as string;
  const enrolled = await execOk(process.execPath, [BIN.agent, 'enroll', '--hub', hub.url, '--token', enrollToken, '--state-dir', agentDir, '--name', 'bench-idle', '--json']);
  const agentId = (JSON.parse(enrolled.stdout) as { agentId: string }).agentId;
  agentIds.add(agentId);
  const configFile = join(dir, 'agent.yaml');
  writeFileSync(configFile, 'reconcile:\n  bakeMs: 2000\n'); // everything else as shipped (drift pass every 30 s)
  const logFd = openSync(join(dir, 'agent.log'), 'a');
  const agent = spawn(process.execPath, [...AGENT_NODE_ARGS, BIN.agent, 'run', '--state-dir', agentDir, '--config', configFile], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  children.push(agent);
  const waitUntil = async <T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs: number): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (agent.exitCode !== null) throw new Error(`agent exited (${agent.exitCode}) while waiting for ${what}:\n${readFileSync(join(dir, 'agent.log'), 'utf8').slice(-2000)}`);
      const v = await fn().catch(() => undefined);
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  await waitUntil('agent connected', async () => (await api('GET', `/v1/agents/${agentId}`)).body.status === 'connected', 30_000);

  const health = { test: ['CMD', 'wget', '-q', '-O-', 'http://127.0.0.1:8080/'], intervalMs: 10_000, timeoutMs: 3_000, retries: 3, startPeriodMs: 1_000 };
  const services: Record<string, Service> = {
    web: service(webImage, { labels: benchLabels, healthcheck: health }),
    worker: service(svcImage, { labels: benchLabels, dependsOn: { web: { condition: 'service_healthy' } } }),
    cron: service(svcImage, { labels: benchLabels }),
  };
  const doc = releaseOf('idle', '1.0.0', services);
  const created = must(await api('POST', '/v1/releases', { payload: canonicalJson(doc).toString('base64') }), 201, 'release create');
  const relSig = Buffer.from(sign(pae(PAYLOAD_TYPES.release, Buffer.from(created.envelope.payload, 'base64')), rel.secretKey)).toString('base64');
  must(await api('POST', `/v1/releases/idle/1.0.0/signatures`, { publicKey: encodePublicKey(rel.publicKey), sig: relSig }), 200, 'release sign');
  const t0 = performance.now();
  const deployed = must(await api('POST', '/v1/deploy', { stack: 'idle', version: '1.0.0', agent: agentId, wait: 30 }), 200, 'deploy');
  if (deployed.status !== 'accepted') throw new Error(`deploy: ${JSON.stringify(deployed)}`);
  await waitUntil(
    'idle@1.0.0 applied',
    async () => {
      const r = ((await api('GET', `/v1/agents/${agentId}`)).body.running?.releases ?? []).find((x: { stack: string }) => x.stack === 'idle');
      if (r?.state === 'rolled-back') throw new Error(`rolled back: ${JSON.stringify(r)}`);
      return r?.state === 'applied';
    },
    120_000,
  );
  const deployToAppliedMs = performance.now() - t0;
  await expectCount('idle stack', `label=${LABEL.agent}=${agentId}`, 3, true);

  // The peer: a node process doing nothing, sampled over the same minute.
  const peer = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
  children.push(peer);
  await new Promise((r) => setTimeout(r, 3000)); // let both settle after the apply and the peer's start
  const pids = { agent: agent.pid!, peer: peer.pid!, hub: hub.pid };
  const sample = (t: number): IdleSample => ({
    t,
    agentRssKb: procMemory(pids.agent).rssKb,
    agentCpuMs: procCpuMs(pids.agent),
    peerRssKb: procMemory(pids.peer).rssKb,
    peerCpuMs: procCpuMs(pids.peer),
    hubRssKb: procMemory(pids.hub).rssKb,
    hubCpuMs: procCpuMs(pids.hub),
  });
  const samples: IdleSample[] = [sample(0)];
  const start = performance.now();
  say(`d: agent ${agentId} applied its stack in ${fmt(deployToAppliedMs / 1000, 1)} s; sampling for ${IDLE_S} s`);
  for (let i = 1; i <= IDLE_S; i++) {
    await new Promise((r) => setTimeout(r, Math.max(0, start + i * 1000 - performance.now())));
    if (agent.exitCode !== null) throw new Error('agent exited while idle');
    samples.push(sample((performance.now() - start) / 1000));
  }
  const elapsedMs = performance.now() - start;
  const hwmKb = procMemory(pids.agent).hwmKb;
  const containersAfter = (await containers(`label=${LABEL.agent}=${agentId}`, true)).length;
  const log = readFileSync(join(dir, 'agent.log'), 'utf8').split('\n').filter(Boolean);
  const drift = log.filter((l) => l.includes('drift repaired')).length;
  agent.kill('SIGTERM');
  peer.kill('SIGKILL');
  await new Promise((r) => (agent.exitCode !== null ? r(null) : agent.once('exit', r)));
  hub.child.kill('SIGTERM');
  await hub.exited;
  return { agentId, deployToAppliedMs, samples, elapsedMs, hwmKb, containersAfter, driftRepairs: drift, logLines: log.length };
}

// ---- run -----------------------------------------------------------------------------

let out: Record<string, unknown> | undefined;

async function main(): Promise<void> {
  const t0 = performance.now();
  if (!(await registryAvailable())) throw new Error('no registry on 127.0.0.1:5000; run `bash scripts/test-env.sh`');
  if ((await exec('docker-compose', ['version', '--short']).catch(() => ({ code: 127 }))).code !== 0) throw new Error('docker-compose is missing: apt-get install -y docker-compose');
  const facts = await machineFacts();
  say(`run ${RUN}: ${facts.cpus} x ${facts.cpu}, ${facts.memGiB} GiB, kernel ${facts.kernel}, docker ${facts.docker} (${facts.storage}, cgroup ${facts.cgroup}), node ${facts.node}, docker-compose ${facts.compose}; ${facts.containersRunningAtStart} other containers running`);

  const [svcA, svcB, web] = await Promise.all([
    buildTestImage('ferry-bench/recon-svc', 'v1', { push: true, cmd: HOLD_CMD, files: { '/etc/bench-version': 'v1\n' } }),
    buildTestImage('ferry-bench/recon-svc', 'v2', { push: true, cmd: HOLD_CMD, files: { '/etc/bench-version': 'v2\n' } }),
    buildTestImage('ferry-bench/recon-web', 'v1', { push: true, cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'], files: { '/www/index.html': 'ferry bench\n' } }),
  ]);
  const engine = new DockerEngine();
  for (const img of [svcA, svcB, web]) {
    if (!(await engine.hasImage(img.ref!))) await engine.pullImage(img.ref!); // present locally before anything is timed
  }
  say(`images: ${svcA.ref}, ${svcB.ref}, ${web.ref}`);

  out = { at: new Date().toISOString(), run: RUN, facts, args: { runs: RUNS, passes: PASSES, idleS: IDLE_S, agentNodeArgs: AGENT_NODE_ARGS }, images: [svcA.ref, svcB.ref, web.ref] };
  process.stdout.write(`\nferry bench:reconcile — ${facts.cpus} x ${facts.cpu}, ${facts.memGiB} GiB, kernel ${facts.kernel}, docker ${facts.docker} (${facts.storage}), node ${facts.node}, docker-compose ${facts.compose}\n\n`);
  const print = (...ls: string[]) => process.stdout.write(ls.map((l) => l + '\n').join('')); // each part prints when it is done

  if (ONLY.has('a')) {
    say(`a: 10-service stack from scratch, ${RUNS} timed rounds (+1 warm-up) of compose and ferry at concurrency 1, 4, 10`);
    const a = await benchDeploy(svcA.ref!);
    out.deploy = a;
    const composeUp = p50(a.results[0]!.up);
    const composeDown = p50(a.results[0]!.down);
    const floorUp = p50(a.results[1]!.up);
    print(
      table([
        ['a. 10 services from scratch (median of ' + RUNS + ')', 'up', '/ compose', 'down (teardown)', '/ compose', 'up / floor'],
        ...a.results.map((r, i) => [r.variant, ms(p50(r.up), 0), i === 0 ? 'peer' : ratio(p50(r.up), composeUp), ms(p50(r.down), 0), i === 0 ? 'peer' : ratio(p50(r.down), composeDown), ratio(p50(r.up), floorUp)]),
        ['docker-compose ps -q (compose process floor)', ms(p50(a.composeFloor), 0), '', '', '', ''],
      ]),
      `deploy ferry(c4)/compose = ${ratio(p50(a.results[3]!.up), composeUp)} (target <= ${fmt(TARGET_DEPLOY_RATIO, 1)}, aim 0.5); ferry(c4)/engine floor = ${ratio(p50(a.results[3]!.up), floorUp)}, compose/engine floor = ${ratio(composeUp, floorUp)}; c1/c4 = ${ratio(p50(a.results[2]!.up), p50(a.results[3]!.up))}, c10/c4 = ${ratio(p50(a.results[4]!.up), p50(a.results[3]!.up))}`,
      `  all runs, up (ms): ${a.results.map((r) => `${short(r.variant)} ${r.up.map((x) => fmt(x, 0)).join('/')}`).join('; ')}`,
      '',
    );
  }

  if (ONLY.has('b')) {
    say(`b: no-op pass over 50 owned containers, ${PASSES} passes of each measure (+3 warm-up)`);
    const b = await benchNoop(svcA.ref!);
    out.noop = { ...b, planTimes: { p50: p50(b.planTimes), p99: p99(b.planTimes) } };
    const t = b.times as Record<string, number[]>;
    const row = (name: string, xs: number[]) => [name, ms(p50(xs)), ms(p99(xs)), ratio(p50(xs), p50(t.cliPs!)), ratio(p50(xs), p50(t.dockerodeList!))];
    print(
      table([
        [`b. no-op pass, 50 containers (10 svc x 5), ${PASSES} passes`, 'p50', 'p99', '/ docker ps', '/ 1 list call'],
        row('dryRun (observe + plan)', t.dryRun!),
        row('repair() finding nothing', t.repair!),
        row(`dryRun, child process ${AGENT_NODE_FLAGS.join(' ')}`, t.dryRunAgentFlags!),
        row('  observe (list + 50 inspects + nets, vols, image)', t.observe!),
        row('  engine.listContainers (list + 50 inspects)', t.listContainers!),
        ['  plan() alone (pure, 2000 runs)', ms(p50(b.planTimes), 3), ms(p99(b.planTimes), 3), '', ''],
        row('peer: docker ps -a -q --filter label (CLI)', t.cliPs!),
        row('peer: dockerode listContainers (1 call)', t.dockerodeList!),
      ]),
      `no-op dryRun p50 ${ms(p50(t.dryRun!))} / p99 ${ms(p99(t.dryRun!))}, repair p50 ${ms(p50(t.repair!))} / p99 ${ms(p99(t.repair!))}, as the agent runs (${AGENT_NODE_FLAGS.join(' ')}) p50 ${ms(p50(t.dryRunAgentFlags!))} / p99 ${ms(p99(t.dryRunAgentFlags!))} (target <= ${TARGET_NOOP_MS} ms); ${b.engineCalls} engine calls per observe; 50 containers deployed in ${ms(b.deployMs, 0)} (c10), removed in ${ms(b.teardownMs, 0)}`,
      '',
    );
  }

  if (ONLY.has('c')) {
    say(`c: upgrade one service of 10, ${RUNS * 2} flips each, alternating`);
    const c = await benchUpgrade(svcA.ref!, svcB.ref!);
    out.upgrade = c;
    const med = (rs: FlipResult[]) => p50(rs.map((r) => r.ms));
    const counts = (rs: FlipResult[]) => [...new Set(rs.map((r) => `${r.replaced}`))].join(',');
    print(
      table([
        [`c. upgrade 1 of 10 services (${RUNS * 2} flips)`, 'median', 'min', 'max', 'replaced per flip', 'ferry/compose'],
        ['ferry apply (stop-first, concurrency 4)', ms(med(c.ferry), 0), ms(Math.min(...c.ferry.map((r) => r.ms)), 0), ms(Math.max(...c.ferry.map((r) => r.ms)), 0), counts(c.ferry), ratio(med(c.ferry), med(c.compose))],
        ['peer: docker-compose up -d', ms(med(c.compose), 0), ms(Math.min(...c.compose.map((r) => r.ms)), 0), ms(Math.max(...c.compose.map((r) => r.ms)), 0), counts(c.compose), 'peer'],
      ]),
      `upgrade: ferry replaced ${c.ferry.map((r) => r.replaced).join(',')} container(s) per flip (expect 1), compose ${c.compose.map((r) => r.replaced).join(',')}; ferry/compose median = ${ratio(med(c.ferry), med(c.compose))}`,
      '',
    );
  }

  if (ONLY.has('d')) {
    say(`d: real agent process idling ${IDLE_S} s with a 3-service stack`);
    const d = await benchIdle(svcA.ref!, web.ref!);
    out.idle = d;
    const s = d.samples;
    const first = s[0]!;
    const last = s[s.length - 1]!;
    const mb = (kb: number) => `${fmt(kb / 1024, 1)} MB`;
    const cpuPct = (a: number, b: number) => `${fmt((100 * (b - a)) / d.elapsedMs, 3)} %`;
    const stats = (pick: (x: IdleSample) => number) => {
      const xs = s.map(pick);
      return { start: xs[0]!, end: xs[xs.length - 1]!, max: Math.max(...xs), med: p50(xs) };
    };
    const ar = stats((x) => x.agentRssKb);
    const pr = stats((x) => x.peerRssKb);
    const hr = stats((x) => x.hubRssKb);
    print(
      table([
        [`d. idle ${fmt(d.elapsedMs / 1000, 0)} s, 1 s samples`, 'RSS start', 'RSS median', 'RSS max', 'RSS end', 'CPU time', 'CPU %'],
        [`ferry-agent (3 containers, 1 hub link)${AGENT_NODE_ARGS.length ? ' ' + AGENT_NODE_ARGS.join(' ') : ''}`, mb(ar.start), mb(ar.med), mb(ar.max), mb(ar.end), ms(last.agentCpuMs - first.agentCpuMs, 0), cpuPct(first.agentCpuMs, last.agentCpuMs)],
        ['peer: idle node -e setInterval', mb(pr.start), mb(pr.med), mb(pr.max), mb(pr.end), ms(last.peerCpuMs - first.peerCpuMs, 0), cpuPct(first.peerCpuMs, last.peerCpuMs)],
        ['(ferry-hub, 1 agent)', mb(hr.start), mb(hr.med), mb(hr.max), mb(hr.end), ms(last.hubCpuMs - first.hubCpuMs, 0), cpuPct(first.hubCpuMs, last.hubCpuMs)],
      ]),
      `agent idle: RSS median ${mb(ar.med)}, max ${mb(ar.max)} (peak over its life ${mb(d.hwmKb)}; target <= ${TARGET_RSS_MB} MB); agent/idle-node RSS = ${ratio(ar.med, pr.med)}; CPU ${cpuPct(first.agentCpuMs, last.agentCpuMs)} of one core over the minute; ${d.containersAfter} containers still running, ${d.driftRepairs} drift repairs; deploy -> applied ${fmt(d.deployToAppliedMs / 1000, 1)} s (bake 2 s)`,
      '',
    );
  }

  process.stdout.write(`took ${fmt((performance.now() - t0) / 1000, 0)} s\n`);
}

/** The figures so far as JSON in bench/out/ (also after a failure: the parts that finished). */
function writeFigures(): void {
  if (!out) return;
  const dir = new URL('../../bench/out/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const file = new URL(`reconcile-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, dir);
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  say(`figures written to ${file.pathname}`);
}

try {
  await main();
} catch (err) {
  say(`bench failed: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
} finally {
  writeFigures();
  cleanupSync();
  const left = [...agentIds].flatMap((id) => dockerSync(['ps', '-aq', '--filter', `label=${LABEL.agent}=${id}`]).split('\n').filter(Boolean));
  if (left.length) say(`WARNING: ${left.length} containers left behind`);
  if (existsSync(TMP)) say(`WARNING: ${TMP} left behind`);
}
