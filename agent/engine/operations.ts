// The engine calls remote operations need beyond the reconciler's seam
// (engine.ts): restart a container, read its logs, sample its figures, run a
// command in it. Kept apart so the reconciler's Engine stays the dozen calls
// it uses; DockerEngine implements both (docker-operations.ts).
export interface LogQuery {
  /** ms since the epoch */
  since?: number;
  until?: number;
  /** The last N lines (of the range), then follow; absent: all. */
  tail?: number;
  follow: boolean;
}

/** One log line as the engine stored it: its timestamp (RFC 3339, nanoseconds) and text without the newline. */
export interface LogLine {
  fd: 1 | 2;
  ts: string;
  text: string;
}

export interface ContainerSample {
  cpuPercent: number;
  memoryBytes: number;
  memoryLimitBytes: number;
  netRxBytes: number;
  netTxBytes: number;
  pids: number;
}

export interface ExecOutput {
  fd: 1 | 2;
  data: string;
}

export interface ExecRun {
  /** The command's output as it comes; ends when the command exits (or `signal` aborts). */
  output: AsyncIterable<ExecOutput>;
  /** The exit code, once the output has ended; -1 when the engine does not know (it was cut off). */
  exitCode(): Promise<number>;
}

export interface OperationsEngine {
  /** Stops (SIGTERM, SIGKILL after `graceMs`) and starts the container again, as `docker restart`. */
  restartContainer(id: string, graceMs: number): Promise<void>;
  /** The container's log lines in order; with `follow`, new ones until `signal` aborts or the container is removed. */
  logs(id: string, q: LogQuery, signal: AbortSignal): AsyncIterable<LogLine>;
  /** One sample of the container's figures (the engine takes about a second to measure CPU). */
  stats(id: string, signal?: AbortSignal): Promise<ContainerSample>;
  /** Runs `argv` (no shell) in the running container, stdin closed. */
  exec(id: string, argv: readonly string[], signal: AbortSignal): Promise<ExecRun>;
}
