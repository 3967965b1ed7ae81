// Watching what runs, wired for one agent: the check runner, the autoscaler,
// and the low-rate figures the hub's /metrics aggregates. Started by
// agent/runtime.ts beside the reconciler; none of it blocks the reconciler
// (the autoscaler only asks it for a pass, queued like any other).
import { asFerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentMessage, ScaleChange } from '../../shared/protocol.js';
import type { Release } from '../../shared/release.js';
import { sleep } from '../../shared/sleep.js';
import { Autoscaler } from '../autoscale/autoscaler.js';
import type { AgentConfig } from '../config.js';
import type { Engine } from '../engine/engine.js';
import type { Policy } from '../policy.js';
import { LABEL, isJob } from '../reconcile/model.js';
import { CheckRunner, checksOf } from './runner.js';

export interface Watch {
  runner: CheckRunner;
  autoscaler: Autoscaler;
  /** The releases that run now changed (an apply finished). */
  releasesChanged(releases: readonly Release[]): void;
  connected(): void;
  acknowledged(upTo: number): void;
  /** Figures and autoscaling until `signal` aborts. */
  run(signal: AbortSignal): Promise<void>;
  close(): void;
}

export function startWatching(o: { cfg: AgentConfig; agentId: string; engine: Engine; policy: Policy; log: Logger; send: (m: AgentMessage) => boolean; converge: (signal: AbortSignal) => Promise<unknown> }): Watch {
  const runner = new CheckRunner({ agentId: o.agentId, stateDir: o.cfg.stateDir, engine: o.engine, log: o.log.child({ component: 'checks' }), send: o.send, concurrency: o.cfg.checks.concurrency });
  let scaled: ScaleChange[] = [];
  const figures = async () => {
    const cs = (await o.engine.listContainers({ key: LABEL.agent, value: o.agentId })).filter((c) => !isJob(c));
    const checks = runner.counts();
    const cpu = process.cpuUsage();
    const ok = o.send({
      type: 'figures',
      containers: cs.length,
      containersRunning: cs.filter((c) => c.status === 'running').length,
      servicesHealthy: cs.filter((c) => c.status === 'running' && c.health !== 'unhealthy' && c.health !== 'starting').length,
      servicesUnhealthy: cs.filter((c) => c.status !== 'running' || c.health === 'unhealthy').length,
      checksPassing: checks.passing,
      checksFailing: checks.failing,
      checksPending: checks.pending,
      rssBytes: process.memoryUsage.rss(),
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      ...(scaled.length && { scaled: scaled.slice(-100) }),
    });
    if (ok) scaled = [];
  };
  const sendFigures = () => void figures().catch((err) => o.log.debug({ err: asFerryError(err).message }, 'figures not sent'));
  const autoscaler = new Autoscaler({
    agentId: o.agentId,
    stateDir: o.cfg.stateDir,
    engine: o.engine,
    policy: o.policy.autoscale,
    log: o.log.child({ component: 'autoscale' }),
    intervalMs: o.cfg.autoscale.intervalMs,
    apply: o.converge,
    report: (c) => {
      scaled.push(c);
      sendFigures(); // each change reaches the hub at once
    },
  });
  return {
    runner,
    autoscaler,
    releasesChanged(releases) {
      runner.update(checksOf(releases));
      autoscaler.update(releases);
    },
    connected() {
      runner.connected();
      sendFigures();
    },
    acknowledged: (upTo) => runner.acknowledged(upTo),
    async run(signal) {
      const loop = async () => {
        while (!signal.aborted) {
          await sleep(o.cfg.checks.figuresMs, signal).catch(() => undefined);
          if (!signal.aborted) sendFigures();
        }
      };
      await Promise.all([loop(), autoscaler.run(signal)]);
    },
    close: () => runner.close(),
  };
}
