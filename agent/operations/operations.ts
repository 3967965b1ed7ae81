// Remote operations on the agent: each `operation` message is verified
// (verify.ts), its replay state persisted (fsync) before anything runs,
// checked against the institution's policy (policy.ts), run through the
// engine seam (run.ts, stream-kinds.ts), and answered on the same socket
// with an `operation-result` (after its stream, for streamed kinds). A
// refusal is on record in refusals.jsonl and goes to the hub with its code.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { asFerryError, FerryError } from '../../shared/errors.js';
import { writeFileAtomic } from '../../shared/files.js';
import type { Logger } from '../../shared/logger.js';
import { STREAM_KINDS, type Operation } from '../../shared/operation.js';
import type { AgentMessage, ContainerStats, OperationMessage, OperationResult, OperationResultMessage, StreamCancel, StreamCredit } from '../../shared/protocol.js';
import type { Engine } from '../engine/engine.js';
import type { OperationsEngine } from '../engine/operations.js';
import { inWindow, type Policy } from '../policy.js';
import type { Reconciler } from '../reconcile/reconciler.js';
import { appendRefusal, type Refusal } from '../trust-store.js';
import type { TrustState } from '../verify.js';
import { currentRoot } from '../verify.js';
import { checkOperation, type ExecPlan } from './policy.js';
import { hold, networks, reconnect, restart, sample, type RunContext } from './run.js';
import { execute, logs, watchStats, type StreamEnd } from './stream-kinds.js';
import { StreamSender, type OutStream } from './streams.js';
import { NO_OPERATIONS_SEEN, verifyOperation, type SeenOperations } from './verify.js';

export const OPERATIONS_FILE = 'operations.json';
/** Operations running at once on one agent; more are refused until some end. */
export const MAX_RUNNING = 32;

export interface OperationsOptions {
  stateDir: string;
  agentId: string;
  tenant: string;
  policy: Policy;
  engine: Engine & OperationsEngine;
  reconciler: Reconciler;
  log: Logger;
  send: (m: AgentMessage) => boolean;
  /** Bytes queued on the hub socket now (streams wait while it is full). */
  buffered: () => number;
  /** The trust state the acceptor holds (its root verifies operations; its trusted time bounds expiry). */
  trust: () => TrustState;
  now?: () => number;
  maxSkewMs?: number;
  hubClockOffsetMs?: () => number | null;
  onRefusal?: (r: Refusal) => void;
}

export function loadSeen(dir: string): SeenOperations {
  try {
    return JSON.parse(readFileSync(join(dir, OPERATIONS_FILE), 'utf8')) as SeenOperations;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return NO_OPERATIONS_SEEN;
    throw new FerryError('FERRY_E_STATE_CORRUPT', `${OPERATIONS_FILE}: ${(err as Error).message}`);
  }
}

export class Operations {
  private seen: SeenOperations;
  private readonly streams: StreamSender;
  private readonly running = new Map<string, AbortController>();
  private readonly now: () => number;
  private readonly stopping = new AbortController();

  constructor(private readonly o: OperationsOptions) {
    this.now = o.now ?? Date.now;
    this.seen = loadSeen(o.stateDir);
    this.streams = new StreamSender({ send: o.send, buffered: o.buffered });
  }

  onOperation(msg: OperationMessage): void {
    const started = this.now();
    let op: Operation;
    let plan: ExecPlan | null;
    try {
      if (this.running.size >= MAX_RUNNING) throw new FerryError('FERRY_E_RATE_LIMITED', `${MAX_RUNNING} operations are running on this agent already`);
      const t = this.o.trust();
      const a = verifyOperation(this.seen, msg.operation, msg.id, {
        agentId: this.o.agentId,
        tenant: this.o.tenant,
        root: currentRoot(t),
        directivesIssuedAt: t.maxIssuedAt,
        now: started,
        maxSkewMs: this.o.maxSkewMs,
        hubClockOffsetMs: this.o.hubClockOffsetMs?.() ?? null,
      });
      // Remembered before anything runs: a crash cannot make it acceptable again.
      writeFileAtomic(join(this.o.stateDir, OPERATIONS_FILE), JSON.stringify(a.seen) + '\n', 0o600);
      this.seen = a.seen;
      op = a.operation;
      plan = checkOperation(this.o.policy.operations, op, inWindow(this.o.policy, started), this.o.policy.source);
    } catch (err) {
      const e = asFerryError(err);
      this.o.onRefusal?.(appendRefusal(this.o.stateDir, { at: new Date(started).toISOString(), kind: 'operation', seq: null, digest: null, code: e.code, message: `${msg.id}: ${e.message}` }));
      this.o.log.warn({ operation: msg.id, code: e.code, detail: e.detail }, 'refused operation');
      this.answer({ type: 'operation-result', id: msg.id, ok: false, code: e.code, message: e.message.slice(0, 2048), durationMs: this.now() - started });
      return;
    }
    const ctl = new AbortController();
    this.running.set(op.id, ctl);
    const stream = STREAM_KINDS.includes(op.kind) && (op.kind !== 'stats' || op.args.follow) ? this.streams.open(op.id, msg.credit) : null;
    this.o.log.info({ operation: op.id, kind: op.kind, stack: op.stack, service: op.service }, 'operation accepted');
    void this.run(op, plan, stream, AbortSignal.any([ctl.signal, this.stopping.signal]))
      .then(
        (r) => this.finish(op, started, stream, { ok: true, ...r }),
        (err: unknown) => {
          const e = asFerryError(err, 'FERRY_E_ENGINE_FAILED');
          this.o.log.warn({ operation: op.id, kind: op.kind, code: e.code, detail: e.detail }, 'operation failed');
          return this.finish(op, started, stream, { ok: false, code: e.code, message: e.message.slice(0, 2048), end: stream ? { reason: 'error' } : undefined });
        },
      )
      .finally(() => {
        this.running.delete(op.id);
        if (stream) this.streams.close(op.id);
      });
  }

  onCredit(msg: StreamCredit): void {
    this.streams.credit(msg.id, msg.bytes);
  }

  onCancel(msg: StreamCancel): void {
    this.streams.cancel(msg.id, msg.reason);
  }

  /** The hub connection is gone: nobody reads the streams. Operations that change things finish; their answers are lost. */
  disconnected(): void {
    this.streams.cancelAll('the connection to the hub was lost');
  }

  /** One sample of every container of this agent (the coarse one the status carries for the fleet view). */
  coarseSample(signal: AbortSignal): Promise<ContainerStats[]> {
    return sample({ stack: undefined, service: undefined, args: {} }, { engine: this.o.engine, reconciler: this.o.reconciler, agentId: this.o.agentId, log: this.o.log, signal, now: this.now });
  }

  close(): void {
    this.stopping.abort();
    this.streams.cancelAll('the agent is stopping');
  }

  private async run(op: Operation, plan: ExecPlan | null, stream: OutStream | null, signal: AbortSignal): Promise<{ result?: OperationResult; end?: StreamEnd }> {
    const ctx: RunContext = { engine: this.o.engine, reconciler: this.o.reconciler, agentId: this.o.agentId, log: this.o.log, signal, now: this.now };
    switch (op.kind) {
      case 'restart':
        return { result: await restart(op, ctx) };
      case 'stop':
      case 'start':
      case 'scale':
        return { result: await hold(op, ctx) };
      case 'networks':
        return { result: await networks(op, ctx) };
      case 'reconnect':
        return { result: await reconnect(op, ctx) };
      case 'stats':
        return stream ? { end: await watchStats(op, ctx, stream) } : { result: { stats: await sample(op, ctx) } };
      case 'logs':
        return { end: await logs(op, ctx, stream!) };
      case 'exec':
        return { end: await execute(op, ctx, stream!, plan!) };
      default: {
        const never: never = op.kind;
        throw new FerryError('FERRY_E_OPERATION_INVALID', `unknown kind ${String(never)}`);
      }
    }
  }

  private async finish(op: Operation, started: number, stream: OutStream | null, r: { ok: boolean; code?: string; message?: string; result?: OperationResult; end?: StreamEnd }): Promise<void> {
    if (stream) await stream.drained(); // what was produced goes before the answer
    const msg: OperationResultMessage = {
      type: 'operation-result',
      id: op.id,
      ok: r.ok,
      ...(r.code ? { code: r.code, message: r.message } : {}),
      ...(r.result ? { result: r.result } : {}),
      ...(r.end?.exitCode !== undefined ? { exitCode: r.end.exitCode } : {}),
      ...(stream ? { stream: { reason: stream.cancelReason ? 'cancelled' : (r.end?.reason ?? 'error'), bytes: stream.sentBytes, frames: stream.frames, digest: stream.digest.digest() } } : {}),
      durationMs: this.now() - started,
    };
    this.answer(msg);
  }

  private answer(msg: OperationResultMessage): void {
    if (!this.o.send(msg)) this.o.log.warn({ operation: msg.id }, 'could not answer an operation: not connected to the hub');
  }
}
