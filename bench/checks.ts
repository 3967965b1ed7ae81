// What service checks cost the agent: the real check runner (agent/checks)
// with N HTTP checks at one interval against a real container (busybox httpd
// on the engine's bridge network, reached at its address as the agent reaches
// a stack's service), against the same runner with no checks (the issue's
// "same agent with none": RSS growth), and against the peer a shell-based
// monitor would be — one `curl` process per probe at the same rate (CPU per
// probe). Each runs in a child process of its own, one after the other, for
// the same measured window after the same warm-up. The runner's children run
// with the agent's own Node flags (--jitless).
//   node dist/bench/checks.js [--checks 1000] [--interval-s 10] [--duration-s 30]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DockerEngine } from '../agent/engine/docker.js';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { CheckRunner, type CheckSpec } from '../agent/checks/runner.js';
import { silentLogger } from '../shared/logger.js';
import { fmt, table } from './lib/report.js';
import { wholeNumber } from './lib/args.js';

interface Figures {
  mode: string;
  cpuMs: number;
  windowMs: number;
  rssBytes: number;
  rssPeak: number;
  heapBytes: number;
  probes: number;
  failed: number;
}

const CLK_TCK = 100; // Linux USER_HZ

/** This process's CPU, and that of its children it waited for (curl), in ms. */
function cpuMs(): number {
  const own = process.cpuUsage();
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // fields after "comm)": state=0 ... cutime=13, cstime=14 (stat(5) fields 16 and 17)
  const children = ((Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK;
  return (own.user + own.system) / 1000 + children;
}

async function child(mode: 'none' | 'ferry' | 'curl', n: number, intervalMs: number, windowMs: number, url: string): Promise<void> {
  let probes = 0;
  let failed = 0;
  let stop: () => void = () => {};
  if (mode === 'curl') {
    const timers: NodeJS.Timeout[] = [];
    const probe = () => {
      const c = spawn('curl', ['-s', '-o', '/dev/null', '--max-time', '2', '-w', '%{http_code}', url], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d));
      c.on('close', () => {
        probes++;
        if (out !== '200') failed++;
      });
    };
    for (let i = 0; i < n; i++) {
      timers.push(setTimeout(() => {
        probe();
        timers.push(setInterval(probe, intervalMs));
      }, Math.floor(Math.random() * intervalMs)));
    }
    stop = () => timers.forEach((t) => clearInterval(t));
  } else {
    const stateDir = mkdtempSync(join(tmpdir(), 'ferry-bench-checks-'));
    const engine = new DockerEngine();
    const runner = new CheckRunner({ agentId: 'bench', stateDir, engine, log: silentLogger(), send: () => true });
    const specs: CheckSpec[] = mode === 'none' ? [] : Array.from({ length: n }, (_, i) => ({
      key: `bench/c${i}`, stack: 'bench', name: `c${i}`, version: '1',
      check: { http: { url, method: 'GET' as const, status: [200] }, intervalMs, timeoutMs: 2000, failures: 3, successes: 1 },
    }));
    runner.update(specs);
    stop = () => {
      const c = runner.counts();
      probes = Math.round((n * windowMs) / intervalMs);
      failed = c.failing + c.pending;
      runner.close();
      rmSync(stateDir, { recursive: true, force: true });
    };
  }
  // Warm-up: every check has started (first runs spread over one interval), the JIT has settled.
  await new Promise((r) => setTimeout(r, intervalMs + 2000));
  const probes0 = probes;
  const c0 = cpuMs();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, windowMs));
  const c1 = cpuMs();
  const t1 = performance.now();
  const rssPeak = process.memoryUsage.rss();
  // What stays once garbage is collected (the figure against none), and the peak before it.
  (globalThis as { gc?: () => void }).gc?.();
  const rssBytes = process.memoryUsage.rss();
  const heapBytes = process.memoryUsage().heapUsed;
  stop();
  if (mode === 'curl') probes -= probes0;
  const fig: Figures = { mode, cpuMs: c1 - c0, windowMs: t1 - t0, rssBytes, rssPeak, heapBytes, probes, failed };
  process.stdout.write(JSON.stringify(fig) + '\n');
  // curl children still running: let them end
  setTimeout(() => process.exit(0), 2500).unref();
}

function runChild(mode: string, n: number, intervalMs: number, windowMs: number, url: string): Figures {
  // As the agent runs (agent/node-flags.ts), plus gc() for the settled figure.
  const r = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, '--expose-gc', new URL(import.meta.url).pathname, '--child', mode, '--checks', String(n), '--interval-ms', String(intervalMs), '--window-ms', String(windowMs), '--url', url], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`${mode} child exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Figures;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { checks: { type: 'string', default: '1000' }, 'interval-s': { type: 'string', default: '10' }, 'duration-s': { type: 'string', default: '30' }, child: { type: 'string' }, 'interval-ms': { type: 'string' }, 'window-ms': { type: 'string' }, url: { type: 'string' } } });
  if (values.child) return child(values.child as 'none', Number(values.checks), Number(values['interval-ms']), Number(values['window-ms']), values.url!);
  const n = wholeNumber(values, 'checks');
  const intervalMs = wholeNumber(values, 'interval-s') * 1000;
  const windowMs = wholeNumber(values, 'duration-s') * 1000;
  if (n < 1 || n > 5000 || intervalMs < 1000 || windowMs < 5000) throw new Error('--checks 1..5000, --interval-s >= 1, --duration-s >= 5');

  // Loaded here only: the children run --jitless, without WebAssembly, which undici's parser needs.
  const { buildTestImage, docker, dockerOk } = await import('../test/helpers/docker.js');
  const img = await buildTestImage('ferry-test/bench-checks-web', 'v1', { cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'], files: { '/www/index.html': 'ok\n' } });
  const name = `ferry-bench-checks-${process.pid}`;
  await dockerOk(['run', '-d', '--name', name, '--label', 'ferry.test=1', img.image]);
  try {
    const ip = (await dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).trim();
    const url = `http://${ip}:8080/`;
    console.log(`bench/checks: ${n} HTTP checks every ${intervalMs / 1000} s against ${url} (busybox httpd in a container), window ${windowMs / 1000} s; ${availableParallelism()} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}`);
    const none = runChild('none', n, intervalMs, windowMs, url);
    const ferry = runChild('ferry', n, intervalMs, windowMs, url);
    const curl = runChild('curl', n, intervalMs, windowMs, url);
    const pct = (f: Figures) => (f.cpuMs / f.windowMs) * 100;
    const perProbe = (f: Figures) => (f.probes ? (f.cpuMs * 1000) / f.probes : NaN);
    const mb = (b: number) => b / (1024 * 1024);
    console.log(table([
      ['', 'CPU (% of a core)', 'CPU per probe (µs)', 'RSS after gc (MB)', 'RSS peak (MB)', 'heap (MB)', 'probes in window', 'not passing'],
      ['check runner, no checks', fmt(pct(none), 2), '-', fmt(mb(none.rssBytes)), fmt(mb(none.rssPeak)), fmt(mb(none.heapBytes)), '0', '-'],
      [`check runner, ${n} checks`, fmt(pct(ferry), 2), fmt(perProbe(ferry), 0), fmt(mb(ferry.rssBytes)), fmt(mb(ferry.rssPeak)), fmt(mb(ferry.heapBytes)), String(ferry.probes), String(ferry.failed)],
      [`curl per probe (peer)`, fmt(pct(curl), 2), fmt(perProbe(curl), 0), '-', '-', '-', String(curl.probes), String(curl.failed)],
    ]));
    const growth = mb(ferry.rssBytes - none.rssBytes);
    console.log(`checks cost the agent ${fmt(pct(ferry) - pct(none), 2)}% of a core (target < 2%) and ${fmt(growth)} MB of RSS after gc (${fmt(mb(ferry.rssPeak - none.rssPeak))} MB at peak; target < 10 MB) against none; curl uses ${fmt(perProbe(curl) / perProbe(ferry), 1)}x the CPU per probe`);
    const out = new URL('../../bench/out/', import.meta.url);
    mkdirSync(out, { recursive: true });
    writeFileSync(new URL(`checks-${Date.now()}.json`, out), JSON.stringify({ n, intervalMs, windowMs, none, ferry, curl }, null, 2));
  } finally {
    await docker(['rm', '-f', name]);
  }
}

await main();
