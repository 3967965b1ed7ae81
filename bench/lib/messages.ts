// What bench/connections (the orchestrator) and its client workers say to
// each other over the fork IPC channel. Timestamps are Date.now() in ms; all
// processes share one machine clock. Failure counts (attempts that failed,
// keyed by code and errno) are cumulative per worker.

/** Which client code drives each simulated agent. */
export const CLIENT_KINDS = ['connection', 'lean'] as const;
export type ClientKind = (typeof CLIENT_KINDS)[number];

/** Passed to a worker as its one argv argument (JSON). */
export interface WorkerConfig {
  hubUrl: string;
  keysFile: string;
  /** Slice [from, to) of the keys file this worker drives. */
  from: number;
  to: number;
  client: ClientKind;
  /** Source address for this worker's sockets (127.0.0.x); undefined: the kernel picks. */
  sourceAddress?: string;
  /** Agents whose first attempt may be in flight at once, in this worker. */
  concurrency: number;
}

export type ToWorker = { type: 'start' } | { type: 'mark' } | { type: 'stop' };

export type FromWorker =
  | { type: 'ready'; agents: number }
  | { type: 'progress'; welcomed: number; back: number; failures: Record<string, number> }
  /** Every agent of the worker has been welcomed once; per agent, when its first attempt began and when it was welcomed. */
  | { type: 'connected'; startedAt: number[]; welcomedAt: number[]; failures: Record<string, number> }
  | { type: 'marked' }
  /** Every agent has been welcomed again since the mark; per agent, when. */
  | { type: 'back'; welcomedAt: number[]; disconnects: number; failures: Record<string, number> }
  | { type: 'stopped'; failures: Record<string, number>; cpuMs: number; maxRssKb: number }
  | { type: 'fatal'; message: string };
