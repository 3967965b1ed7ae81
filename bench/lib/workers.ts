// The orchestrator's side of the client workers: fork, broadcast, and wait
// for one message of a kind from every worker, with a deadline.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FromWorker, ToWorker, WorkerConfig } from './messages.js';

const WORKER_MAIN = fileURLToPath(new URL('./client-worker.js', import.meta.url));

type Of<T extends FromWorker['type']> = Extract<FromWorker, { type: T }>;

export class WorkerPool {
  readonly procs: ChildProcess[];
  /** Latest progress report of each worker. */
  readonly progress: { welcomed: number; back: number; failures: Record<string, number> }[];
  private readonly inbox: FromWorker[][];
  private readonly exited: boolean[];
  private failure: Error | undefined;
  private wake: (() => void)[] = [];

  constructor(configs: WorkerConfig[]) {
    this.progress = configs.map(() => ({ welcomed: 0, back: 0, failures: {} }));
    this.inbox = configs.map(() => []);
    this.exited = configs.map(() => false);
    this.procs = configs.map((cfg, i) => {
      // 'advanced' serialization keeps NaN (agents that never got there).
      const p = fork(WORKER_MAIN, [JSON.stringify(cfg)], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      p.on('message', (m: FromWorker) => {
        if (m.type === 'progress') this.progress[i] = { welcomed: m.welcomed, back: m.back, failures: m.failures };
        else if (m.type === 'fatal') this.fail(new Error(`worker ${i}: ${m.message}`));
        else this.inbox[i]!.push(m);
        this.notify();
      });
      p.on('exit', (code, signal) => {
        this.exited[i] = true;
        if (!this.inbox[i]!.some((m) => m.type === 'stopped')) this.fail(new Error(`worker ${i} exited (${code ?? signal})`));
        this.notify();
      });
      return p;
    });
  }

  get welcomed(): number {
    return this.progress.reduce((a, p) => a + p.welcomed, 0);
  }

  get back(): number {
    return this.progress.reduce((a, p) => a + p.back, 0);
  }

  send(m: ToWorker): void {
    for (let i = 0; i < this.procs.length; i++) if (!this.exited[i] && this.procs[i]!.connected) this.procs[i]!.send(m);
  }

  /** One message of `type` from every worker, or null when `timeoutMs` passes first. */
  async all<T extends FromWorker['type']>(type: T, timeoutMs: number): Promise<Of<T>[] | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.failure) throw this.failure;
      const idx = this.inbox.map((box) => box.findIndex((m) => m.type === type));
      if (idx.every((j) => j >= 0)) return idx.map((j, i) => this.inbox[i]!.splice(j, 1)[0] as Of<T>);
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 1000));
        this.wake.push(() => (clearTimeout(t), r()));
      });
    }
  }

  /** Asks every worker to stop and waits for their reports; kills the stragglers. */
  async stop(timeoutMs: number): Promise<Of<'stopped'>[] | null> {
    this.send({ type: 'stop' });
    let reports: Of<'stopped'>[] | null = null;
    try {
      reports = await this.all('stopped', timeoutMs);
    } catch {
      reports = null;
    }
    this.kill();
    return reports;
  }

  kill(): void {
    for (let i = 0; i < this.procs.length; i++) if (!this.exited[i]) this.procs[i]!.kill('SIGKILL');
  }

  private fail(err: Error): void {
    this.failure ??= err;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }
}
