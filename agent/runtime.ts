// Wires a running agent together: the hub connection, the acceptor of signed
// state, the audit witness, and the reconciler that makes the engine match
// what was accepted (and puts back what is changed by hand).
import { payloadBytes, payloadDigest } from '../shared/dsse.js';
import { asFerryError } from '../shared/errors.js';
import type { KeyPair } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import type { AgentAlarm, AgentMessage, ContainerStats, HubMessage, ImageRelay, PrestageMessage } from '../shared/protocol.js';
import { sleep } from '../shared/sleep.js';
import { parseRelease } from '../shared/release.js';
import { Acceptor } from './acceptor.js';
import type { AgentConfig } from './config.js';
import { Connection, buildHello } from './connection.js';
import type { Engine } from './engine/engine.js';
import type { OperationsEngine } from './engine/operations.js';
import { Operations } from './operations/operations.js';
import type { Policy } from './policy.js';
import type { Transport } from './proxy.js';
import { LABEL } from './reconcile/model.js';
import { Reconciler, type Target } from './reconcile/reconciler.js';
import { describeStep } from './reconcile/execute.js';
import { Journal } from './reconcile/journal.js';
import { fileProvider } from './secrets.js';
import type { Identity } from './state.js';
import { readAlarms, type Desired, type Refusal } from './trust-store.js';
import { currentRoot, verifyPrestage } from './verify.js';
import { Relay } from './relay/relay.js';
import { relaySource } from './relay/source.js';
import { Witness } from './witness.js';
import { startWatching } from './checks/watch.js';
import { VERSION } from '../shared/version.js';
import type { LaunchContext, LauncherLink } from './upgrade/child.js';
import { watchTrial } from './upgrade/trial.js';
import { Upgrader } from './upgrade/upgrader.js';

/** The accepted releases as reconciler targets. */
export function targetsOf(desired: Desired | null): Target[] {
  if (!desired) return [];
  return desired.releases.map((env) => {
    const release = parseRelease(payloadBytes(env));
    return { stack: release.stack, version: release.version, digest: payloadDigest(env), release };
  });
}

/** Engine pull credentials by registry host: the bank's registries first, then `registries`. */
export function registryAuth(cfg: AgentConfig) {
  const bank = cfg.bankRegistry ? [cfg.bankRegistry.primary, ...cfg.bankRegistry.standbys] : [];
  return (image: string) => {
    const host = image.split('/')[0]!;
    const b = bank.find((e) => e.host === host);
    if (b) return b.username !== undefined ? { username: b.username, password: b.password ?? '' } : undefined;
    return cfg.registries[host];
  };
}

export interface RunOptions {
  cfg: AgentConfig;
  identity: Identity;
  key: KeyPair;
  policy: Policy;
  engine: Engine & OperationsEngine;
  transport: Transport;
  log: Logger;
  signal: AbortSignal;
  /** Set when the launcher started this version (agent/upgrade); null: no self-upgrade. */
  launch?: LaunchContext | null;
  link?: LauncherLink | null;
}

/** Runs until stopped; `switchTo` names the version the launcher should start next (self-upgrade), else null. */
export async function runAgent(opts: RunOptions): Promise<{ switchTo: string | null }> {
  const { cfg, identity, key, policy, engine, transport, log } = opts;
  // Everything below stops when the caller aborts or when the connection ends for good (revoked).
  const inner = new AbortController();
  const signal = inner.signal;
  opts.signal.addEventListener('abort', () => inner.abort(), { once: true });
  let witness: Witness | undefined;
  /** The last coarse stats sample (sent with every status; taken every stats.coarseIntervalMs). */
  let samples: ContainerStats[] = [];
  const conn = new Connection({ identity, key, transport, log, reconnect: cfg.reconnect, hello: () => buildHello(engine, witness?.last() ?? null) });
  const send = (m: AgentMessage) => conn.send(m);
  // An alarm goes to the hub at once, with the status it rides on.
  const onRefusal = (r: Refusal) => void (r.alarm ? reconciler.report() : undefined);
  const clock = { maxSkewMs: cfg.maxClockSkewMs, hubClockOffsetMs: () => conn.hubClockOffsetMs };
  const acceptor = new Acceptor({ stateDir: cfg.stateDir, agentId: identity.agentId, tenant: identity.tenant, policy, log, send, onRefusal, ...clock });
  const relay = cfg.bankRegistry ? startRelay({ cfg, identity, key, policy, log: log.child({ component: 'relay' }), send }) : null;
  witness = new Witness({ stateDir: cfg.stateDir, tenant: identity.tenant, key, log, root: () => currentRoot(acceptor.current.state), send, onRefusal, ...clock });
  const watch = startWatching({ cfg, agentId: identity.agentId, engine, policy, log, send, converge: (sig) => reconciler.repair(sig) });
  const reconciler: Reconciler = new Reconciler({
    engine,
    agentId: identity.agentId,
    stateDir: cfg.stateDir,
    log: log.child({ component: 'reconciler' }),
    auth: registryAuth(cfg),
    bakeMs: cfg.reconcile.bakeMs,
    applyTimeoutMs: cfg.reconcile.applyTimeoutMs,
    minFreeBytes: cfg.reconcile.minFreeBytes,
    files: fileProvider(cfg.stateDir, policy.files),
    report: (releases, services, drift, holds) => {
      const alarms = activeAlarms(cfg.stateDir);
      send({ type: 'status', releases, services, ...(drift.length ? { drift: drift.slice(0, 100).map((d) => d.slice(0, 512)) } : {}), ...(alarms.length ? { alarms } : {}), ...(holds.length ? { holds: holds.slice(0, 200) } : {}), ...(samples.length ? { samples: samples.slice(0, 500) } : {}) });
    },
    ...(relay ? { prepare: (targets: Target[], sig: AbortSignal) => relay.relay.ensure(targets.map((t) => t.release), sig) } : {}),
    scale: (stack) => watch.autoscaler.scaleOf(stack),
  });
  // Checks and autoscaling follow what runs (the last good release of each stack).
  const watchRunning = () => watch.releasesChanged(reconciler.running.map((t) => t.release));
  watchRunning();
  const apply = () => {
    const d = acceptor.current.desired;
    const targets = targetsOf(d);
    reconciler
      .apply(d?.seq ?? 0, targets, signal)
      .then(() => {
        watchRunning();
        return relay?.relay.retain([...targets, ...reconciler.running].map((t) => t.release), signal);
      })
      .catch((err) => log.error({ err: asFerryError(err).message }, 'apply stopped'));
  };
  const operations = new Operations({
    stateDir: cfg.stateDir,
    agentId: identity.agentId,
    tenant: identity.tenant,
    policy,
    engine,
    reconciler,
    log: log.child({ component: 'operations' }),
    send,
    buffered: () => conn.bufferedAmount,
    trust: () => acceptor.current.state,
    maxSkewMs: cfg.maxClockSkewMs,
    hubClockOffsetMs: () => conn.hubClockOffsetMs,
    onRefusal,
  });
  conn.on('disconnected', () => operations.disconnected());
  void (async () => {
    while (!signal.aborted) {
      await sleep(cfg.stats.coarseIntervalMs, signal);
      if (signal.aborted) return;
      try {
        samples = await operations.coarseSample(signal);
        void reconciler.report();
      } catch (err) {
        if (!signal.aborted) log.warn({ err: asFerryError(err).message }, 'coarse stats sample failed');
      }
    }
  })();
  acceptor.on('accepted', apply);
  let switchTo: string | null = null;
  const launch = opts.launch ?? null;
  const upgrader = new Upgrader({
    cfg,
    hubUrl: identity.hubUrl,
    agentId: identity.agentId,
    key,
    running: VERSION,
    launch,
    windowMs: cfg.upgrade.healthWindowMs,
    log: log.child({ component: 'upgrade' }),
    send,
    switchTo: (v) => {
      switchTo = v;
      inner.abort();
    },
  });
  acceptor.on('accepted', () => upgrader.consider(acceptor.current.desired));
  conn.on('welcome', () => {
    void reconciler.report();
    relay?.report();
    watch.connected();
    if (!launch?.trial) {
      upgrader.report();
      upgrader.retry(acceptor.current.desired);
    }
  });
  if (launch?.trial && opts.link) {
    watchTrial({
      link: opts.link,
      connection: conn,
      acceptor,
      plan: () => reconciler.dryRun(targetsOf(acceptor.current.desired)),
      announce: () => upgrader.report(),
      onCommitted: () => upgrader.committed(),
      log,
      signal,
    });
  }
  conn.on('message', (msg: HubMessage) => {
    switch (msg.type) {
      case 'directive':
        return acceptor.onDirective(msg);
      case 'roots':
        return acceptor.onRoots(msg);
      case 'checkpoint':
        return witness!.onCheckpoint(msg);
      case 'plan-request':
        return void reconciler
          .dryRun(targetsOf(acceptor.current.desired))
          .then((p) => send({ type: 'plan', id: msg.id, steps: p.steps.map((s) => ({ kind: s.kind, what: describeStep(s).slice(0, 1024) })), waiting: p.waiting.map((w) => w.slice(0, 1024)) }))
          .catch((err) => {
            const e = asFerryError(err);
            send({ type: 'plan', id: msg.id, steps: [], waiting: [], error: { code: e.code, message: e.message.slice(0, 2048) } });
          });
      case 'prestage':
        return void prestage(msg);
      case 'checks-ack':
        return watch.acknowledged(msg.upTo);
      case 'operation':
        return operations.onOperation(msg);
      case 'stream-credit':
        return operations.onCredit(msg);
      case 'stream-cancel':
        return operations.onCancel(msg);
      case 'welcome':
      case 'error':
        return; // handled by the connection
      default: {
        const never: never = msg;
        log.warn({ type: (never as { type: string }).type }, 'unhandled hub message');
      }
    }
  });

  /** Copies the images of releases a rollout will bring, verified as a directive's releases are; runs nothing. */
  const prestage = async (msg: PrestageMessage) => {
    if (!relay) return log.info({ rollout: msg.rollout }, 'prestage ignored: no bankRegistry configured');
    try {
      const releases = verifyPrestage(acceptor.current.state, msg.releases, msg.roots, { agentId: identity.agentId, tenant: identity.tenant, now: Date.now(), policy }).map((a) => a.release);
      log.info({ rollout: msg.rollout, releases: releases.map((r) => `${r.stack}@${r.version}`) }, 'pre-staging images');
      await relay.relay.ensure(releases, signal);
    } catch (err) {
      const e = asFerryError(err);
      log.warn({ rollout: msg.rollout, code: e.code, detail: e.detail }, 'pre-staging failed; the release copies again when deployed');
      send({ type: 'error', code: e.code, message: `prestage: ${e.message}`.slice(0, 2048) });
    }
  };

  // At start: converge to what was accepted; an apply interrupted by a crash resumes here.
  const interrupted = Journal.interrupted(cfg.stateDir);
  if (interrupted) log.warn({ seq: interrupted.seq }, 'resuming an apply interrupted by a restart');
  apply();
  upgrader.consider(acceptor.current.desired);
  const drift = watchDrift(engine, identity.agentId, reconciler, cfg.reconcile.driftIntervalMs, log, signal);
  const catchUp = relay ? relay.catchUpLoop(signal) : Promise.resolve();
  const watching = watch.run(signal);
  try {
    await conn.run(signal);
  } finally {
    inner.abort();
    operations.close();
    await drift;
    await catchUp;
    await watching;
    watch.close();
    reconciler.close();
    relay?.close();
    upgrader.close();
  }
  return { switchTo };
}

/**
 * The alarms the institution has not acknowledged, newest last, as the status
 * message carries them. The same alarm raised again (a hub showing the same
 * rewritten log on every reconnect) is reported once, as first raised.
 */
export function activeAlarms(stateDir: string): AgentAlarm[] {
  const seen = new Set<string>();
  return readAlarms(stateDir)
    .filter((a) => !a.acknowledged && !seen.has(`${a.code}\n${a.message}`) && seen.add(`${a.code}\n${a.message}`))
    .slice(-20)
    .map((a) => ({ at: a.at.slice(0, 32), code: a.code.slice(0, 64), message: a.message.slice(0, 2048), ...(a.kind ? { kind: a.kind } : {}) }));
}

/** The relay with its sources, its progress reports to the hub, and its standby catch-up loop. */
function startRelay(o: { cfg: AgentConfig; identity: Identity; key: KeyPair; policy: Policy; log: Logger; send: (m: AgentMessage) => boolean }) {
  const bank = o.cfg.bankRegistry!;
  const sources = relaySource({ cfg: o.cfg, policy: o.policy, hubUrl: o.identity.hubUrl, agentId: o.identity.agentId, key: o.key });
  const report = (images: ImageRelay[]) => void o.send({ type: 'relay', images: images.slice(-512) });
  const relay = new Relay({ bank, stateDir: o.cfg.stateDir, log: o.log, source: sources.source, onChange: report });
  return {
    relay,
    report: () => report(relay.images()),
    async catchUpLoop(signal: AbortSignal) {
      while (!signal.aborted) {
        await sleep(bank.catchUpMs, signal);
        if (signal.aborted) break;
        await relay.catchUp(signal).catch((err) => o.log.warn({ err: asFerryError(err).message }, 'standby catch-up pass failed'));
      }
    },
    close() {
      relay.close();
      sources.close();
    },
  };
}

/** Engine events (debounced) and a periodic pass trigger drift repair. */
async function watchDrift(engine: Engine, agentId: string, reconciler: Reconciler, intervalMs: number, log: Logger, signal: AbortSignal): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(() => void reconciler.repair(signal).catch((err) => log.warn({ err: asFerryError(err).message }, 'drift pass failed')), 300);
  };
  const periodic = setInterval(soon, intervalMs);
  const relevant = new Set(['die', 'stop', 'destroy', 'kill', 'health_status: unhealthy']);
  try {
    while (!signal.aborted) {
      try {
        for await (const ev of engine.events({ key: LABEL.agent, value: agentId }, signal)) {
          if (ev.type === 'container' && relevant.has(ev.action)) soon();
          if (ev.type === 'network' && ev.action === 'destroy') soon();
        }
      } catch (err) {
        if (!signal.aborted) log.warn({ err: asFerryError(err).message }, 'engine event stream lost; retrying');
      }
      if (!signal.aborted) await new Promise((r) => setTimeout(r, 2000));
    }
  } finally {
    clearInterval(periodic);
    clearTimeout(timer);
  }
}
