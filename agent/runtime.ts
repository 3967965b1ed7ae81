// Wires a running agent together: the hub connection, the acceptor of signed
// state, the audit witness, and the reconciler that makes the engine match
// what was accepted (and puts back what is changed by hand).
import { payloadBytes, payloadDigest } from '../shared/dsse.js';
import { asFerryError } from '../shared/errors.js';
import type { KeyPair } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import type { AgentAlarm, AgentMessage, HubMessage } from '../shared/protocol.js';
import { parseRelease } from '../shared/release.js';
import { Acceptor } from './acceptor.js';
import type { AgentConfig } from './config.js';
import { Connection, buildHello } from './connection.js';
import type { Engine } from './engine/engine.js';
import type { Policy } from './policy.js';
import type { Transport } from './proxy.js';
import { LABEL } from './reconcile/model.js';
import { Reconciler, type Target } from './reconcile/reconciler.js';
import { describeStep } from './reconcile/execute.js';
import { Journal } from './reconcile/journal.js';
import { fileProvider } from './secrets.js';
import type { Identity } from './state.js';
import { readAlarms, type Desired, type Refusal } from './trust-store.js';
import { currentRoot } from './verify.js';
import { Witness } from './witness.js';

/** The accepted releases as reconciler targets. */
export function targetsOf(desired: Desired | null): Target[] {
  if (!desired) return [];
  return desired.releases.map((env) => {
    const release = parseRelease(payloadBytes(env));
    return { stack: release.stack, version: release.version, digest: payloadDigest(env), release };
  });
}

export function registryAuth(cfg: AgentConfig) {
  return (image: string) => {
    const host = image.split('/')[0]!;
    return cfg.registries[host];
  };
}

export async function runAgent(opts: { cfg: AgentConfig; identity: Identity; key: KeyPair; policy: Policy; engine: Engine; transport: Transport; log: Logger; signal: AbortSignal }): Promise<void> {
  const { cfg, identity, key, policy, engine, transport, log } = opts;
  // Everything below stops when the caller aborts or when the connection ends for good (revoked).
  const inner = new AbortController();
  const signal = inner.signal;
  opts.signal.addEventListener('abort', () => inner.abort(), { once: true });
  let witness: Witness | undefined;
  const conn = new Connection({ identity, key, transport, log, reconnect: cfg.reconnect, hello: () => buildHello(engine, witness?.last() ?? null) });
  const send = (m: AgentMessage) => conn.send(m);
  // An alarm goes to the hub at once, with the status it rides on.
  const onRefusal = (r: Refusal) => void (r.alarm ? reconciler.report() : undefined);
  const clock = { maxSkewMs: cfg.maxClockSkewMs, hubClockOffsetMs: () => conn.hubClockOffsetMs };
  const acceptor = new Acceptor({ stateDir: cfg.stateDir, agentId: identity.agentId, tenant: identity.tenant, policy, log, send, onRefusal, ...clock });
  witness = new Witness({ stateDir: cfg.stateDir, tenant: identity.tenant, key, log, root: () => currentRoot(acceptor.current.state), send, onRefusal, ...clock });
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
    report: (releases, services, drift) => {
      const alarms = activeAlarms(cfg.stateDir);
      send({ type: 'status', releases, services, ...(drift.length ? { drift: drift.slice(0, 100).map((d) => d.slice(0, 512)) } : {}), ...(alarms.length ? { alarms } : {}) });
    },
  });
  const apply = () => {
    const d = acceptor.current.desired;
    reconciler.apply(d?.seq ?? 0, targetsOf(d), signal).catch((err) => log.error({ err: asFerryError(err).message }, 'apply stopped'));
  };
  acceptor.on('accepted', apply);
  conn.on('welcome', () => void reconciler.report());
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
      case 'welcome':
      case 'error':
        return; // handled by the connection
      default: {
        const never: never = msg;
        log.warn({ type: (never as { type: string }).type }, 'unhandled hub message');
      }
    }
  });

  // At start: converge to what was accepted; an apply interrupted by a crash resumes here.
  const interrupted = Journal.interrupted(cfg.stateDir);
  if (interrupted) log.warn({ seq: interrupted.seq }, 'resuming an apply interrupted by a restart');
  apply();
  const drift = watchDrift(engine, identity.agentId, reconciler, cfg.reconcile.driftIntervalMs, log, signal);
  try {
    await conn.run(signal);
  } finally {
    inner.abort();
    await drift;
    reconciler.close();
  }
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
