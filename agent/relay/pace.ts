// Pacing for the relay: retries with full-jitter backoff for what may pass
// on a second try (5xx, 429, lost connections, timeouts), and one bandwidth
// cap shared by every download the relay makes.
import { Transform, type TransformCallback } from 'node:stream';
import { FerryError } from '../../shared/errors.js';
import { backoffDelay, sleep } from '../../shared/sleep.js';
import { Retryable } from './http.js';

export interface RetryOptions {
  attempts: number;
  baseMs: number;
  capMs: number;
  signal?: AbortSignal;
  onRetry?: (err: FerryError, attempt: number, delayMs: number) => void;
}

export const DEFAULT_RETRY: RetryOptions = { attempts: 6, baseMs: 500, capMs: 15_000 };

/** Runs `fn`, again after a Retryable failure (up to `attempts` times in all); throws the FerryError inside. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions = DEFAULT_RETRY): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (o.signal?.aborted) throw o.signal.reason ?? err;
      if (!(err instanceof Retryable)) throw err;
      if (attempt + 1 >= o.attempts) throw err.error;
      const delay = Math.max(err.retryAfterMs ?? 0, backoffDelay(attempt, o.baseMs, o.capMs));
      o.onRetry?.(err.error, attempt, delay);
      await sleep(delay, o.signal ?? new AbortController().signal);
    }
  }
}

/** The FerryError of anything thrown by the relay's HTTP layer. */
export function unwrap(err: unknown): unknown {
  return err instanceof Retryable ? err.error : err;
}

/**
 * A bandwidth cap (bytes per second) shared by all streams that pass through
 * `stream()`: each chunk waits for its turn on one schedule, so N parallel
 * downloads share the rate instead of each getting it. A burst of up to
 * 250 ms worth of bytes passes at once.
 */
export class Throttle {
  private next = 0;

  constructor(private readonly bytesPerSecond: number | null, private readonly now: () => number = Date.now) {}

  /** Whether there is a cap at all (without one, streams are not paced). */
  get limited(): boolean {
    return !!this.bytesPerSecond;
  }

  /** Waits until `n` more bytes may pass. */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (!this.bytesPerSecond) return;
    const now = this.now();
    const start = Math.max(now, this.next);
    this.next = start + (n * 1000) / this.bytesPerSecond;
    const wait = this.next - now - 250;
    if (wait > 0) await sleep(wait, signal ?? new AbortController().signal);
  }

  /** A pass-through stream paced by this throttle. */
  stream(signal?: AbortSignal): Transform {
    const self = this;
    return new Transform({
      transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
        self.take(chunk.length, signal).then(() => cb(null, chunk), cb);
      },
    });
  }
}
