#!/usr/bin/env node
// The launcher: the small program systemd starts (ExecStart) when the agent
// is installed in versioned directories. It decides from launch.json which
// version runs, runs it as its one child, and is where the revert lives: a
// new version is started on trial, with a health window; if it exits or the
// window passes before it says it is healthy, or the host stops during the
// trial, the state directory is restored from the backup taken before the
// trial and the previous version starts again. The new version never decides
// that it stays; it only reports how far it got.
//
//   launcher run --root R --state-dir S [-- agent run arguments]
//   launcher install --root R --version V   (a package install: V is committed)
//   launcher status --root R
//
// Node's standard library only, and launch-state.ts: both are copied to
// R/launcher/ and run from there, outside every version.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  DEFAULT_WINDOW_MS,
  EXIT_SWITCH,
  backupState,
  dropBackup,
  hasBackup,
  linkCurrent,
  readLaunch,
  restoreState,
  upgradeSteps,
  versionDir,
  writeLaunch,
  type LaunchState,
  type Outcome,
} from './launch-state.js';

/** Messages a version sends over the IPC channel (and the one answer). */
export type ChildMessage = { type: 'phase'; phase: string; detail?: string } | { type: 'healthy' };
export type LauncherMessage = { type: 'committed' };

export interface LauncherOptions {
  root: string;
  stateDir: string;
  /** Arguments after `run` for the agent (--config, --log-level …). */
  agentArgs: string[];
  log?: (line: string) => void;
}

const STOP_GRACE_MS = 10_000;
const TAIL_BYTES = 2048;

const logLine = (line: string) => process.stderr.write(`ferry-launcher: ${line}\n`);

/** node, its flags and main.js for a version: the bundle's own Node runtime when it has one. */
function command(root: string, version: string): { node: string; args: string[] } {
  const dir = versionDir(root, version);
  const bundled = join(dir, 'node', 'bin', 'node');
  return { node: existsSync(bundled) ? bundled : process.execPath, args: [...process.execArgv, join(dir, 'dist', 'agent', 'main.js')] };
}

export class Launcher {
  private child: ChildProcess | null = null;
  private stopping = false;
  private readonly log: (line: string) => void;

  constructor(private readonly o: LauncherOptions) {
    this.log = o.log ?? logLine;
  }

  /** Runs versions until one exits with something other than a switch; resolves to the exit code to end with. */
  async run(): Promise<number> {
    for (;;) {
      const s = this.recover();
      if (this.stopping) return 0;
      if (s.pending?.stage === 'ready') {
        const code = await this.trial(s);
        if (code !== null) return code;
        continue; // committed and since exited for a switch, or reverted: decide again
      }
      const r = await this.start(s.current, false);
      if (this.stopping) return r.code ?? 0;
      const after = readLaunch(this.o.root);
      if (r.code === EXIT_SWITCH && after?.pending?.stage === 'ready') continue;
      return r.code ?? 128 + (r.signal === 'SIGKILL' ? 9 : 15);
    }
  }

  /** SIGTERM/SIGINT: stop the child, then end. */
  stop(): void {
    this.stopping = true;
    this.terminate();
  }

  private terminate(): void {
    const c = this.child;
    if (!c) return;
    c.kill('SIGTERM');
    setTimeout(() => c.exitCode === null && c.signalCode === null && c.kill('SIGKILL'), STOP_GRACE_MS).unref();
  }

  /** Reads launch.json and finishes what a crash interrupted: a trial that was under way is reverted. */
  private recover(): LaunchState {
    const s = readLaunch(this.o.root);
    if (!s) throw new Error(`${join(this.o.root, 'launch.json')} does not exist: install a version first (launcher install --root ${this.o.root} --version V)`);
    if (s.pending?.stage === 'trial') {
      return this.revert(s, 'FERRY_E_UPGRADE_INTERRUPTED', `the host or the launcher stopped while ${s.pending.version} was on trial`);
    }
    if (!s.pending && hasBackup(this.o.stateDir)) dropBackup(this.o.stateDir); // a commit or revert that ended before the backup went
    linkCurrent(this.o.root, s.current);
    return s;
  }

  private revert(s: LaunchState, code: string, reason: string): LaunchState {
    const p = s.pending!;
    this.log(`reverting ${p.version} to ${s.current}: ${code}: ${reason}`);
    // Before the backup (stage ready), the state was never handed to the new version.
    if (p.stage === 'trial' && hasBackup(this.o.stateDir)) restoreState(this.o.stateDir);
    const out: Outcome = { version: p.version, from: s.current, digest: p.digest, outcome: 'reverted', code, reason: reason.slice(0, 4000), at: Date.now() };
    const next: LaunchState = { ...s, pending: null, history: [...s.history, out] };
    writeLaunch(this.o.root, next);
    dropBackup(this.o.stateDir);
    linkCurrent(this.o.root, next.current);
    return next;
  }

  private commit(s: LaunchState): LaunchState {
    const p = s.pending!;
    const next: LaunchState = { format: 1, current: p.version, previous: s.current, pending: null, history: [...s.history, { version: p.version, from: s.current, digest: p.digest, outcome: 'committed', at: Date.now() }] };
    writeLaunch(this.o.root, next);
    upgradeSteps.reached('committed');
    linkCurrent(this.o.root, p.version);
    dropBackup(this.o.stateDir);
    this.log(`committed ${p.version} (previous ${s.current})`);
    return next;
  }

  /**
   * Backs the state up, marks the trial begun, starts the new version and
   * waits for it to be healthy within the window. Returns null to decide
   * again (reverted, or committed and exited for a switch), or the exit code
   * of a committed version that ended otherwise.
   */
  private async trial(s0: LaunchState): Promise<number | null> {
    const p0 = s0.pending!;
    if (!existsSync(join(versionDir(this.o.root, p0.version), 'dist', 'agent', 'main.js'))) {
      this.revert(s0, 'FERRY_E_UPGRADE_CRASHED', `${versionDir(this.o.root, p0.version)} holds no agent`);
      return null;
    }
    backupState(this.o.stateDir);
    upgradeSteps.reached('backed-up');
    let s: LaunchState = { ...s0, pending: { ...p0, stage: 'trial', startedAt: Date.now() } };
    writeLaunch(this.o.root, s);
    upgradeSteps.reached('trial-marked');
    const p = s.pending!;
    this.log(`starting ${p.version} on trial (health window ${Math.round(p.windowMs / 1000)} s; previous ${s.current})`);
    let phase = 'started';
    let committed = false;
    let timedOut = false;
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const r = await this.start(p.version, true, (child, msg) => {
      if (committed) return;
      if (msg.type === 'phase') {
        phase = msg.detail ? `${msg.phase}: ${msg.detail}` : msg.phase;
        return;
      }
      if (msg.type === 'healthy') {
        upgradeSteps.reached('healthy');
        s = this.commit(s);
        committed = true;
        clearTimeout(timer);
        child.send?.({ type: 'committed' } satisfies LauncherMessage, () => undefined);
      }
    }, () => {
      timer = setTimeout(() => {
        if (committed) return;
        timedOut = true;
        this.log(`${p.version} is not healthy after ${Math.round(p.windowMs / 1000)} s; stopping it`);
        this.terminate();
      }, p.windowMs);
    });
    clearTimeout(timer);
    if (committed) {
      if (this.stopping) return r.code ?? 0;
      const after = readLaunch(this.o.root);
      if (r.code === EXIT_SWITCH && after?.pending?.stage === 'ready') return null;
      return r.code ?? 1;
    }
    if (this.stopping) {
      // Stopped by systemd during the trial: the next start reverts (the trial stays marked as begun).
      return 0;
    }
    const secs = Math.round((Date.now() - started) / 1000);
    const last = r.tail.trim().split('\n').slice(-5).join(' | ').slice(-1500);
    if (timedOut) this.revert(s, 'FERRY_E_UPGRADE_UNHEALTHY', `${p.version} was not healthy within ${Math.round(p.windowMs / 1000)} s (got as far as: ${phase})`);
    else this.revert(s, 'FERRY_E_UPGRADE_CRASHED', `${p.version} exited ${r.signal ? `on ${r.signal}` : `with code ${r.code}`} after ${secs} s before it was healthy (got as far as: ${phase})${last ? `; its last output: ${last}` : ''}`);
    return null;
  }

  /** Runs one version to its end. */
  private start(
    version: string,
    trial: boolean,
    onMessage?: (child: ChildProcess, m: ChildMessage) => void,
    onSpawn?: () => void,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null; tail: string }> {
    const { node, args } = command(this.o.root, version);
    const env = { ...process.env, FERRY_LAUNCH_ROOT: this.o.root, FERRY_LAUNCH_VERSION: version, FERRY_LAUNCH_TRIAL: trial ? '1' : '0' };
    const child = spawn(node, [...args, 'run', '--state-dir', this.o.stateDir, ...this.o.agentArgs], { env, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    this.child = child;
    let tail = '';
    child.stderr!.on('data', (d: Buffer) => {
      process.stderr.write(d);
      tail = (tail + d.toString('utf8')).slice(-TAIL_BYTES);
    });
    child.on('message', (m: ChildMessage) => {
      if (m && typeof m === 'object' && (m.type === 'phase' || m.type === 'healthy')) onMessage?.(child, m);
    });
    onSpawn?.();
    return new Promise((resolve) => {
      child.on('error', (err) => {
        tail += `\n${err.message}`;
      });
      child.on('exit', (code, signal) => {
        this.child = null;
        resolve({ code, signal, tail });
      });
    });
  }
}

/** A package install: `version` (already in R/<version>) becomes the committed one; a pending upgrade is dropped. */
export function installVersion(root: string, version: string, stateDir?: string): LaunchState {
  const dir = versionDir(root, version);
  if (!existsSync(join(dir, 'dist', 'agent', 'main.js'))) throw new Error(`${dir} holds no agent`);
  const s = readLaunch(root);
  if (s?.pending?.stage === 'trial' && stateDir && hasBackup(stateDir)) restoreState(stateDir);
  const next: LaunchState = s
    ? { ...s, current: version, previous: s.current !== version ? s.current : s.previous, pending: null }
    : { format: 1, current: version, previous: null, pending: null, history: [] };
  writeLaunch(root, next);
  linkCurrent(root, version);
  if (stateDir) dropBackup(stateDir);
  return next;
}

function arg(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const dash = rest.indexOf('--');
  const own = dash >= 0 ? rest.slice(0, dash) : rest;
  const root = arg(own, '--root') ?? process.env.FERRY_AGENT_ROOT ?? '/opt/ferry-agent';
  const stateDir = arg(own, '--state-dir') ?? process.env.FERRY_AGENT_STATE_DIR ?? '/var/lib/ferry-agent';
  switch (cmd) {
    case 'run': {
      const l = new Launcher({ root, stateDir, agentArgs: dash >= 0 ? rest.slice(dash + 1) : [] });
      process.once('SIGTERM', () => l.stop());
      process.once('SIGINT', () => l.stop());
      return l.run();
    }
    case 'install': {
      const v = arg(own, '--version');
      if (!v) throw new Error('install needs --version V');
      const s = installVersion(root, v, arg(own, '--state-dir'));
      process.stdout.write(`${root}: ${s.current} is the current version${s.previous ? ` (previous ${s.previous})` : ''}\n`);
      return 0;
    }
    case 'status':
      process.stdout.write(JSON.stringify(readLaunch(root)) + '\n');
      return 0;
    default:
      process.stderr.write('usage: launcher run|install|status --root DIR [--state-dir DIR] [--version V] [-- agent arguments]\n');
      return 2;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      logLine(`error: ${err.message}`);
      process.exit(1);
    },
  );
}

export { DEFAULT_WINDOW_MS };
