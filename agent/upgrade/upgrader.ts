// The running agent's half of a self-upgrade. When an accepted directive
// names another ferry-agent version (its bundle statement already verified
// by agent/verify.ts), it takes the install root's lock, checks the disk,
// downloads the archive from the hub, verifies and unpacks it into its own
// version directory, writes the pending upgrade into launch.json and asks to
// be stopped (exit EXIT_SWITCH): the launcher backs the state up and starts
// the new version on trial. It reports every step to the hub ('upgrade'
// messages), and what the launcher decided (committed, or reverted and why)
// once it runs again. A bundle that was reverted is not tried again by
// itself: a new statement (another digest) is needed.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { STATE_FORMAT, parseAgentBundle, type AgentBundle } from '../../shared/agent-bundle.js';
import { payloadBytes, payloadDigest } from '../../shared/dsse.js';
import { FerryError, asFerryError } from '../../shared/errors.js';
import type { KeyPair } from '../../shared/keys.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentMessage, UpgradeMessage } from '../../shared/protocol.js';
import type { AgentConfig } from '../config.js';
import type { Desired } from '../trust-store.js';
import type { LaunchContext } from './child.js';
import { fetchBundle } from './fetch.js';
import { checkDisk, cleanStaging, pruneVersions, takeLock, unpackBundle } from './install.js';
import { DEFAULT_WINDOW_MS, readLaunch, upgradeSteps, writeLaunch, type LaunchState } from './launch-state.js';

/** Failures not worth retrying by themselves: the same bundle would fail the same way. */
const FINAL = new Set(['FERRY_E_BUNDLE_DIGEST', 'FERRY_E_BUNDLE_INVALID', 'FERRY_E_BUNDLE_STATE_FORMAT', 'FERRY_E_UPGRADE_UNAVAILABLE']);

export interface UpgraderOptions {
  cfg: AgentConfig;
  hubUrl: string;
  agentId: string;
  key: KeyPair;
  /** This process's version. */
  running: string;
  /** Null when the agent does not run under the launcher (no self-upgrade). */
  launch: LaunchContext | null;
  log: Logger;
  send: (m: AgentMessage) => boolean;
  /** Called once the pending version is ready: the runtime stops and the process exits with EXIT_SWITCH. */
  switchTo: (version: string) => void;
  /** The health window the new version gets. */
  windowMs?: number;
  now?: () => number;
}

type Event = { version: string; digest: string; state: UpgradeMessage['state']; code?: string; message?: string; at: number };

export class Upgrader {
  private event: Event | null = null;
  private busy: Promise<void> | null = null;
  private readonly ac = new AbortController();
  private readonly now: () => number;

  constructor(private readonly o: UpgraderOptions) {
    this.now = o.now ?? Date.now;
  }

  private launchState(): LaunchState | null {
    if (!this.o.launch) return null;
    try {
      return readLaunch(this.o.launch.root);
    } catch (err) {
      this.o.log.error({ err: (err as Error).message }, 'cannot read launch.json');
      return null;
    }
  }

  /** What this agent says about its version and its latest upgrade. */
  status(): UpgradeMessage {
    const l = this.launchState();
    const base = { type: 'upgrade' as const, installed: l?.current ?? this.o.running, running: this.o.running, previous: l?.previous ?? null, pending: l?.pending?.version ?? null };
    const since = (at: number) => new Date(at).toISOString();
    if (this.o.launch?.trial && l?.pending?.version === this.o.running) return { ...base, version: this.o.running, state: 'trial', since: since(l.pending.startedAt ?? this.now()) };
    const e = this.event;
    const last = l?.history[l.history.length - 1];
    // The newest of what this process did and what the launcher recorded.
    if (e && (!last || e.at >= last.at)) return { ...base, version: e.version, state: e.state, ...(e.code ? { code: e.code } : {}), ...(e.message ? { message: e.message.slice(0, 2048) } : {}), since: since(e.at) };
    if (last) {
      const reverted = last.outcome === 'reverted';
      return { ...base, version: last.version, state: reverted ? 'reverted' : 'committed', ...(reverted && last.code ? { code: last.code } : {}), ...(reverted && last.reason ? { message: last.reason.slice(0, 2048) } : {}), since: since(last.at) };
    }
    return { ...base, version: null, state: 'idle', since: since(this.now()) };
  }

  report(): void {
    this.o.send(this.status());
  }

  private set(e: Omit<Event, 'at'>): void {
    this.event = { ...e, at: this.now() };
    this.report();
  }

  /** After a commit, while this version runs: the launcher's record says it. */
  committed(): void {
    this.event = null;
    this.report();
    const l = this.launchState();
    if (l && this.o.launch) {
      const removed = pruneVersions(this.o.launch.root, [l.current, ...(l.previous ? [l.previous] : [])]);
      if (removed.length) this.o.log.info({ removed }, 'removed agent versions no longer kept');
    }
  }

  /** Looks at the desired state: upgrades when it names a version this agent does not run, has not reverted and is not already on its way. */
  consider(desired: Desired | null): void {
    if (!desired?.bundle || this.busy || this.ac.signal.aborted) return;
    if (this.o.launch?.trial) return; // a version on trial installs nothing
    const env = desired.bundle;
    let statement: AgentBundle;
    try {
      statement = parseAgentBundle(payloadBytes(env)); // verified when the directive was accepted
    } catch (err) {
      return this.fail({ version: '?', digest: '?' }, asFerryError(err));
    }
    const digest = payloadDigest(env);
    const want = { version: statement.version, digest };
    const l = this.launchState();
    if (!this.o.launch || !l) {
      if (statement.version === this.o.running) return;
      if (this.event?.digest === digest) return;
      return this.fail(want, new FerryError('FERRY_E_UPGRADE_UNAVAILABLE'), `ferry-agent ${statement.version} was asked for; this agent runs from ${process.argv[1] ?? '?'} and was not started by the launcher`);
    }
    if (l.current === statement.version) {
      if (this.event?.state !== 'committed' || this.event.digest !== digest) this.set({ ...want, state: 'committed' });
      return;
    }
    if (l.pending) return; // the launcher has one to start
    if (l.history.some((h) => h.digest === digest && h.outcome === 'reverted')) return; // reported as the launcher recorded it
    if (this.event?.digest === digest && this.event.state === 'failed' && FINAL.has(this.event.code ?? '')) return;
    this.busy = this.install(statement, want, l).finally(() => (this.busy = null));
  }

  private fail(want: { version: string; digest: string }, e: FerryError, detail?: string): void {
    const message = detail ?? e.message;
    this.o.log.error({ version: want.version, code: e.code, detail: message }, 'agent upgrade failed; the running version stays');
    this.set({ ...want, state: 'failed', code: e.code, message });
  }

  private async install(statement: AgentBundle, want: { version: string; digest: string }, l: LaunchState): Promise<void> {
    const root = this.o.launch!.root;
    const log = this.o.log.child({ upgrade: statement.version });
    let release: (() => void) | null = null;
    try {
      release = takeLock(root);
      this.set({ ...want, state: 'installing' });
      cleanStaging(root);
      const file = join(root, `.download-${statement.archive.sha256.slice(7, 23)}.tar.gz`);
      checkDisk(root, statement.archive.size, `the ferry-agent ${statement.version} download`);
      await fetchBundle({ hubUrl: this.o.hubUrl, agentId: this.o.agentId, key: this.o.key, proxy: this.o.cfg.proxy, caFile: this.o.cfg.caFile, statement, file, log, signal: this.ac.signal });
      upgradeSteps.reached('downloaded');
      const manifest = unpackBundle(root, readFileSync(file), statement, STATE_FORMAT);
      upgradeSteps.reached('unpacked');
      rmSync(file, { force: true });
      log.info({ files: Object.keys(manifest.files).length, from: l.current }, 'agent bundle verified and unpacked; switching');
      const now = readLaunch(root);
      if (!now || now.pending || now.current !== l.current) return; // changed meanwhile (a package install)
      writeLaunch(root, { ...now, pending: { version: statement.version, from: now.current, digest: want.digest, stage: 'ready', windowMs: this.o.windowMs ?? DEFAULT_WINDOW_MS, requestedAt: this.now() } });
      upgradeSteps.reached('pending');
      this.set({ ...want, state: 'installing', message: `switching to ${statement.version}` });
      this.o.switchTo(statement.version);
    } catch (err) {
      if (this.ac.signal.aborted) return;
      this.fail(want, asFerryError(err, 'FERRY_E_UPGRADE_FAILED'));
    } finally {
      release?.();
    }
  }

  /** Retries an upgrade that failed for a passing reason (the hub was away): on reconnect. */
  retry(desired: Desired | null): void {
    if (this.event?.state === 'failed' && !FINAL.has(this.event.code ?? '')) this.event = null;
    this.consider(desired);
  }

  close(): void {
    this.ac.abort();
  }
}

