// Runs Ferry's built binaries as real child processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { AGENT_NODE_FLAGS } from '../../agent/node-flags.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BIN = {
  ferry: `${ROOT}dist/cli/main.js`,
  hub: `${ROOT}dist/hub/main.js`,
  agent: `${ROOT}dist/agent/main.js`,
  /** Not a Ferry binary: the hostile hub the agent's defences are tested against (test/helpers/hostile-hub.ts). */
  hostileHub: `${ROOT}dist/test/helpers/hostile-hub.js`,
} as const;

/** Node flags per binary: the agent runs as its unit runs it. */
const nodeFlags = (bin: keyof typeof BIN): readonly string[] => (bin === 'agent' ? AGENT_NODE_FLAGS : []);

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a binary to completion. */
export function run(bin: keyof typeof BIN, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; /** another copy of the binary */ main?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeFlags(bin), opts.main ?? BIN[bin], ...args], { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

export interface Daemon {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves when a line of output matches. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a long-running binary; it is killed after the test. */
export function daemon(t: TestContext, bin: keyof typeof BIN, args: string[], opts: { env?: NodeJS.ProcessEnv; /** extra node arguments, e.g. a test hook to --import */ nodeArgs?: readonly string[] } = {}): Daemon {
  const child = spawn(process.execPath, [...nodeFlags(bin), ...(opts.nodeArgs ?? []), BIN[bin], ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const onData = (d: Buffer) => {
    out += d;
    for (const w of [...waiters]) {
      const line = out.split('\n').find((l) => w.re.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const d: Daemon = {
    child,
    output: () => out,
    exited,
    waitFor(re, timeoutMs = 15_000) {
      const line = out.split('\n').find((l) => re.test(l));
      if (line !== undefined) return Promise.resolve(line);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} in output of ${bin}:\n${out.slice(-4000)}`)), timeoutMs);
        waiters.push({ re, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  t.after(() => d.stop('SIGKILL'));
  return d;
}
