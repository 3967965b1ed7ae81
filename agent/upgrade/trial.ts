// A new version's trial, from its own side: it must connect, authenticate,
// receive its current directive and verify it with its own code, and
// complete a reconcile pass with nothing left to do — then it tells the
// launcher it is healthy and, once the launcher has committed it, the hub.
// Each step is reported to the launcher as it is reached, so a revert says
// how far the version got (and, while it cannot connect, why not).
import type { FerryError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { sleep } from '../../shared/sleep.js';
import type { LauncherLink } from './child.js';

export interface TrialParts {
  link: LauncherLink;
  /** Emits 'welcome' and 'failed' (FerryError). */
  connection: NodeJS.EventEmitter;
  /** Emits 'verified' after any directive was verified and acknowledged. */
  acceptor: NodeJS.EventEmitter;
  /** A reconcile pass that changes nothing: steps and waiting left. */
  plan: () => Promise<{ steps: unknown[]; waiting: unknown[] }>;
  /** Tells the hub this version is on trial (it then sends the current directive again). */
  announce: () => void;
  onCommitted: () => void;
  log: Logger;
  signal: AbortSignal;
}

export function watchTrial(p: TrialParts): void {
  p.link.phase('started');
  let directive = false;
  let checking = false;
  p.connection.on('failed', (e: FerryError) => {
    if (!directive) p.link.phase('connecting', `${e.code}: ${e.message}`);
  });
  p.connection.on('welcome', () => {
    p.link.phase('authenticated');
    p.announce();
  });
  p.acceptor.on('verified', (a: { directive: { seq: number } }) => {
    if (directive) return;
    directive = true;
    p.link.phase('directive', `seq ${a.directive.seq} verified`);
    if (!checking) void check();
  });
  const check = async () => {
    checking = true;
    while (!p.signal.aborted) {
      try {
        const plan = await p.plan();
        if (!plan.steps.length && !plan.waiting.length) break;
        p.link.phase('reconciling', `${plan.steps.length} step(s), ${plan.waiting.length} waiting`);
      } catch (err) {
        p.link.phase('reconciling', (err as Error).message);
      }
      await sleep(1000, p.signal);
    }
    if (p.signal.aborted) return;
    p.link.phase('reconciled');
    p.log.info('trial: connected, authenticated, directive verified, nothing to reconcile; healthy');
    if (await p.link.healthy()) p.onCommitted();
  };
}
