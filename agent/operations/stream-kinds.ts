// The streamed kinds: logs (with since, until, tail, follow, grep, across a
// container's restart or replacement), exec output, and stats while someone
// watches. Each writes chunks to its OutStream (streams.ts), which paces it
// by the reader's credit, and ends with a reason: eof (a range read to its
// end), exit (a command exited), cancelled (the reader left), limit-bytes or
// limit-time (the caps below), error.
import { FerryError } from '../../shared/errors.js';
import { sleep } from '../../shared/sleep.js';
import type { Operation, StreamEndReason } from '../../shared/operation.js';
import type { LogQuery } from '../engine/operations.js';
import type { ObservedContainer } from '../reconcile/model.js';
import type { ExecPlan } from './policy.js';
import type { OutStream } from './streams.js';
import { containersOf, sample, srcOf, type RunContext } from './run.js';

export const LIMITS = {
  /** Bytes a log stream carries at most. */
  logBytes: 256 * 1024 * 1024,
  /** How long a followed log or a watched stats stream lasts at most. */
  followMs: 3_600_000,
  /** How long reading a range of logs may take. */
  rangeMs: 600_000,
  /** Output an exec carries at most (its time limit is the policy's, default 60 s). */
  execBytes: 4 * 1024 * 1024,
  /** stats while watched: every 5 s unless asked otherwise (at least 1 s). */
  statsIntervalMs: 5000,
};
/** Characters of text per chunk (the protocol allows 16 KiB). */
const CHUNK_CHARS = 16_000;
/** Lines are batched into a chunk until it holds this much, or this long has passed. */
const BATCH_CHARS = 8_000;
const BATCH_MS = 20;
/** How often a followed log looks for its container again after it stopped. */
const REATTACH_MS = 1000;

export interface StreamEnd {
  reason: StreamEndReason;
  exitCode?: number;
}

/** The caps of one stream, and the reason it ended by. */
class Caps {
  readonly bytes = new AbortController();
  readonly time: AbortSignal;
  readonly signal: AbortSignal;

  constructor(
    private readonly out: OutStream,
    ctxSignal: AbortSignal,
    timeMs: number,
    private readonly maxBytes: number,
  ) {
    this.time = AbortSignal.timeout(timeMs);
    this.signal = AbortSignal.any([ctxSignal, out.signal, this.time, this.bytes.signal]);
  }

  /** Aborts once the stream has carried its bytes. */
  check(): void {
    if (this.out.pushedBytes >= this.maxBytes) this.bytes.abort(new Error('limit-bytes'));
  }

  reason(natural: StreamEndReason): StreamEndReason {
    if (this.out.signal.aborted) return 'cancelled';
    if (this.bytes.signal.aborted) return 'limit-bytes';
    if (this.time.aborted) return 'limit-time';
    if (this.signal.aborted) return 'cancelled'; // the agent is stopping
    return natural;
  }
}

/** Lines of one container and stream, batched into chunks. */
class Batcher {
  private readonly bufs = new Map<string, { src: string; fd: 1 | 2; text: string }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly out: OutStream) {}

  async add(src: string, fd: 1 | 2, line: string): Promise<void> {
    for (let i = 0; i < line.length || i === 0; i += CHUNK_CHARS - 1) {
      const piece = line.slice(i, i + CHUNK_CHARS - 1) + '\n';
      const key = `${src}\n${fd}`;
      const b = this.bufs.get(key);
      if (b && b.text.length + piece.length > CHUNK_CHARS) await this.flushKey(key);
      const cur = this.bufs.get(key);
      if (cur) cur.text += piece;
      else this.bufs.set(key, { src, fd, text: piece });
      if (this.bufs.get(key)!.text.length >= BATCH_CHARS) await this.flushKey(key);
      else this.timer ??= setTimeout(() => void this.flush(), BATCH_MS);
    }
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const key of [...this.bufs.keys()]) await this.flushKey(key);
  }

  private async flushKey(key: string): Promise<void> {
    const b = this.bufs.get(key);
    if (!b) return;
    this.bufs.delete(key);
    await this.out.push({ src: b.src, fd: b.fd, text: b.text });
  }
}

/** RFC 3339 with nanoseconds as Docker writes it, padded so that timestamps compare as strings. */
export function tsKey(ts: string): string {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(ts);
  return m ? `${m[1]}.${(m[2] ?? '').padEnd(9, '0')}Z` : ts;
}

export async function logs(op: Operation, ctx: RunContext, out: OutStream): Promise<StreamEnd> {
  const a = op.args;
  const follow = a.follow === true;
  const caps = new Caps(out, ctx.signal, follow ? LIMITS.followMs : LIMITS.rangeMs, LIMITS.logBytes);
  const slots = await containersOf(ctx, op.stack, op.service, a.replica);
  if (!slots.length) throw new FerryError('FERRY_E_OPERATION_INVALID', `${op.stack}/${op.service}${a.replica !== undefined ? `#${a.replica}` : ''} has no container here`);
  const batch = new Batcher(out);
  const sub = { ...ctx, signal: caps.signal };
  const one = async (first: ObservedContainer) => {
    const src = srcOf(first);
    const replica = Number(first.labels['ferry.replica'] ?? 0);
    let id = first.id;
    let last: string | null = null;
    let round = 0;
    while (!caps.signal.aborted) {
      // After the first pass: from the last line seen, so nothing is lost or repeated across a restart.
      const q: LogQuery = round === 0 ? { since: a.since, until: a.until, tail: a.tail, follow } : { since: last ? Date.parse(last) : a.since, follow: true };
      // the timestamp compared as a string only after a restart (the agent runs --jitless: per-line work counts)
      const lastKey = round > 0 && last !== null ? tsKey(last) : null;
      for await (const l of ctx.engine.logs(id, q, caps.signal)) {
        if (lastKey !== null && tsKey(l.ts) <= lastKey) continue;
        if (l.ts) last = l.ts;
        if (a.grep !== undefined && !l.text.includes(a.grep)) continue;
        await batch.add(src, l.fd, l.ts ? `${l.ts} ${l.text}` : l.text);
        caps.check();
        if (caps.signal.aborted) break;
      }
      round++;
      if (!follow || caps.signal.aborted) return;
      // The container stopped (or was replaced): carry on once the slot runs again.
      for (;;) {
        await sleep(REATTACH_MS, caps.signal);
        if (caps.signal.aborted) return;
        const now = (await containersOf(sub, op.stack, op.service, replica)).find((c) => c.status === 'running');
        if (now) {
          id = now.id;
          break;
        }
      }
    }
  };
  try {
    await Promise.all(slots.map(one));
  } catch (err) {
    if (!caps.signal.aborted) throw err;
  }
  await batch.flush();
  return { reason: caps.reason('eof') };
}

export async function execute(op: Operation, ctx: RunContext, out: OutStream, plan: ExecPlan): Promise<StreamEnd> {
  const caps = new Caps(out, ctx.signal, plan.timeoutMs, LIMITS.execBytes);
  const running = (await containersOf(ctx, op.stack, op.service, op.args.replica)).filter((c) => c.status === 'running');
  const c = running[0];
  if (!c) throw new FerryError('FERRY_E_OPERATION_INVALID', `${op.stack}/${op.service}${op.args.replica !== undefined ? `#${op.args.replica}` : ''} has no running container here`);
  const src = srcOf(c);
  ctx.log.info({ operation: op.id, container: c.name, argv: plan.argv }, 'exec by an operator');
  const run = await ctx.engine.exec(c.id, plan.argv, caps.signal);
  try {
    for await (const o of run.output) {
      for (let i = 0; i < o.data.length; i += CHUNK_CHARS) await out.push({ src, fd: o.fd, text: o.data.slice(i, i + CHUNK_CHARS) });
      caps.check();
      if (caps.signal.aborted) break;
    }
  } catch (err) {
    if (!caps.signal.aborted) throw err;
  }
  const reason = caps.reason('exit');
  return reason === 'exit' ? { reason, exitCode: await run.exitCode() } : { reason };
}

/** Samples at the interval asked for, while the reader watches. */
export async function watchStats(op: Operation, ctx: RunContext, out: OutStream): Promise<StreamEnd> {
  const caps = new Caps(out, ctx.signal, LIMITS.followMs, LIMITS.logBytes);
  const every = op.args.intervalMs ?? LIMITS.statsIntervalMs;
  const sub = { ...ctx, signal: caps.signal };
  while (!caps.signal.aborted) {
    const started = ctx.now();
    try {
      for (const s of await sample(op, sub)) await out.push({ src: s.src, fd: 1, text: JSON.stringify(s) });
    } catch (err) {
      if (!caps.signal.aborted) throw err;
    }
    await sleep(Math.max(0, every - (ctx.now() - started)), caps.signal);
  }
  return { reason: caps.reason('eof') };
}
