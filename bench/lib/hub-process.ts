// The hub under test as a real child process (`node dist/hub/main.js serve`),
// plus what /proc says about it: RSS, CPU time, open descriptors, fd limit.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

export const HUB_MAIN = fileURLToPath(new URL('../../hub/main.js', import.meta.url));

export interface HubProcess {
  pid: number;
  child: ChildProcess;
  url: string;
  /** Date.now() when the hub said it was listening. */
  listeningAt: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  stderrTail(): string;
}

export interface StartHubOptions {
  /** The hub's main.js; HUB_MAIN unless comparing another build. */
  main?: string;
  dataDir: string;
  port: number;
  /** Hub's JSON log (stdout) goes here, as journald would take it. */
  logFile: string;
  timeoutMs: number;
  /** Extra node flags for the hub (e.g. `--cpu-prof --cpu-prof-dir=DIR` to see where its time goes). */
  nodeArgs?: string[];
  /** More `serve` flags (e.g. `--database postgres://…`). */
  serveArgs?: string[];
}

/**
 * Starts `ferry-hub serve` through bash so the fd limit can be raised first
 * (to 65536 when the hard limit allows, else to the hard limit).
 */
export async function startHub(o: StartHubOptions): Promise<HubProcess> {
  const out = openSync(o.logFile, 'a');
  const script = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"';
  const child = spawn('bash', ['-c', script, process.execPath, ...(o.nodeArgs ?? []), o.main ?? HUB_MAIN, 'serve', '--data-dir', o.dataDir, '--listen', `127.0.0.1:${o.port}`, ...(o.serveArgs ?? [])], {
    stdio: ['ignore', out, 'pipe'],
  });
  closeSync(out);
  let err = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal, at: Date.now() })),
  );
  const listeningAt = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hub did not listen within ${o.timeoutMs} ms:\n${err.slice(-2000)}`)), o.timeoutMs);
    child.stderr!.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-8000);
      if (/listening on /.test(err)) {
        clearTimeout(timer);
        resolve(Date.now());
      }
    });
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`hub exited (${e.code ?? e.signal}) before listening:\n${err.slice(-2000)}`));
    });
  });
  return { pid: child.pid!, child, url: `http://127.0.0.1:${o.port}`, listeningAt, exited, stderrTail: () => err.slice(-2000) };
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface ProcMemory {
  rssKb: number;
  /** Peak RSS so far. */
  hwmKb: number;
}

export function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
}

/** User + system CPU time of a process, in ms (clock ticks are 10 ms on Linux). */
export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

export function procFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

export function procFdLimit(pid: number): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

export interface Sched {
  /** Time the main thread ran on a CPU. */
  onCpuMs: number;
  /** Time it was runnable but waiting for a CPU (contention). */
  runQueueMs: number;
}

/** Scheduler figures of a process's main thread (/proc/PID/schedstat, nanoseconds). */
export function procSched(pid: number): Sched {
  const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
  return { onCpuMs: (run ?? NaN) / 1e6, runQueueMs: (wait ?? NaN) / 1e6 };
}

export const TCP_COUNTERS = ['ListenOverflows', 'ListenDrops', 'TCPSynRetrans', 'TCPReqQFullDoCookies'] as const;
export type TcpCounters = Record<(typeof TCP_COUNTERS)[number], number>;

/**
 * System-wide TCP counters (/proc/net/netstat). ListenOverflows counts
 * connections dropped because a listener's accept queue was full; each
 * costs the client a SYN retransmission (1 s, then 3 s, 7 s, ...).
 */
export function tcpCounters(): TcpCounters {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/).map(Number) ?? [];
  const get = (n: string) => values[names.indexOf(n)] ?? NaN;
  return Object.fromEntries(TCP_COUNTERS.map((n) => [n, get(n)])) as TcpCounters;
}

export function tcpDelta(a: TcpCounters, b: TcpCounters): TcpCounters {
  return Object.fromEntries(TCP_COUNTERS.map((n) => [n, b[n] - a[n]])) as TcpCounters;
}

/** CPUs kept busy by everything on the machine over `ms` (from /proc/stat), e.g. 1.3 of 2. */
export async function busyCores(ms: number): Promise<number> {
  const read = () => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await new Promise((r) => setTimeout(r, ms));
  const b = read();
  return (1 - (b.idle - a.idle) / (b.total - a.total)) * cpus().length;
}
