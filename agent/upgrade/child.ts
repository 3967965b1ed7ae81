// A version's side of the launcher (launcher.ts): where it was started from,
// whether it is on trial, and the IPC channel on which it tells the launcher
// how far it got and that it is healthy. The launcher alone decides whether a
// version stays; this only reports. When the launcher goes away (its IPC
// channel closes), the agent stops too, so two versions never run at once.
import type { ChildMessage, LauncherMessage } from './launcher.js';

export interface LaunchContext {
  /** The install root (/opt/ferry-agent) holding launch.json and the version directories. */
  root: string;
  /** The version the launcher started (this one). */
  version: string;
  /** Started on trial: not committed until it reports healthy. */
  trial: boolean;
}

/** Set by the launcher for the version it starts; null when the agent was started otherwise. */
export function launchContext(env: NodeJS.ProcessEnv = process.env): LaunchContext | null {
  const root = env.FERRY_LAUNCH_ROOT;
  const version = env.FERRY_LAUNCH_VERSION;
  if (!root || !version) return null;
  return { root, version, trial: env.FERRY_LAUNCH_TRIAL === '1' };
}

export class LauncherLink {
  private committed: (() => void) | null = null;
  private isCommitted = false;

  constructor(private readonly onGone: () => void) {
    if (!process.send) return;
    process.on('message', (m: LauncherMessage) => {
      if (m?.type !== 'committed') return;
      this.isCommitted = true;
      this.committed?.();
    });
    process.on('disconnect', () => this.onGone());
    // The channel must not keep the process alive once the agent has stopped.
    process.channel?.unref();
  }

  get connected(): boolean {
    return process.connected === true;
  }

  private post(m: ChildMessage): void {
    if (process.connected) process.send!(m, undefined, {}, () => undefined);
  }

  /** How far a trial got (the launcher puts the last one in its revert reason). */
  phase(phase: string, detail?: string): void {
    this.post({ type: 'phase', phase, ...(detail ? { detail: detail.slice(0, 500) } : {}) });
  }

  /** Says this version is healthy; resolves once the launcher has committed it (false if the launcher is gone first). */
  healthy(): Promise<boolean> {
    if (this.isCommitted) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.committed = () => resolve(true);
      process.once('disconnect', () => resolve(false));
      this.post({ type: 'healthy' });
    });
  }
}
