// Streams with credits on the agent's one socket. The hub grants each stream
// bytes it has room for (an initial window, then what its client read); the
// agent sends only within that credit, and only while the socket's own send
// buffer is below LOW_WATER, so control messages (acks, status, answers)
// never queue behind more than about one frame of stream data. Each stream
// buffers at most MAX_QUEUED bytes: past that, its producer waits (and stops
// reading the engine), so a slow reader never grows memory.
import type { AgentMessage } from '../../shared/protocol.js';
import { TranscriptDigest, chunkBytes, type StreamChunk } from '../../shared/operation.js';

/** Bytes in the socket's send buffer under which stream frames may be sent. */
export const LOW_WATER = 256 * 1024;
/** Chunk bytes (chunkBytes) per stream-data frame at most: its JSON is at most 6x this, under the protocol's 1 MiB. */
export const MAX_FRAME_BYTES = 128 * 1024;
/** Bytes a stream holds while it waits for credit or the socket; its producer waits past this. */
export const MAX_QUEUED = 256 * 1024;

export interface StreamSenderOptions {
  send: (m: AgentMessage) => boolean;
  /** Bytes queued on the socket now. */
  buffered: () => number;
  lowWater?: number;
  maxFrameBytes?: number;
  /** How soon to look again when the socket is full. */
  pollMs?: number;
}

/** One stream out: its producer pushes chunks; they leave as credit and the socket allow. */
export class OutStream {
  credit: number;
  /** Frames and bytes sent so far. */
  frames = 0;
  sentBytes = 0;
  /** Bytes pushed (sent or queued). */
  pushedBytes = 0;
  readonly digest = new TranscriptDigest();
  private readonly queue: { chunk: StreamChunk; bytes: number }[] = [];
  private queuedBytes = 0;
  private waiters: (() => void)[] = [];
  private readonly abort = new AbortController();
  cancelReason: string | null = null;

  constructor(
    readonly id: string,
    credit: number,
    private readonly kick: () => void,
  ) {
    this.credit = credit;
  }

  /** Aborts when the hub cancels the stream (its client went away) or the connection is lost. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Queues a chunk; waits while the stream holds MAX_QUEUED bytes (the producer is paced by the reader). */
  async push(chunk: StreamChunk): Promise<void> {
    if (this.abort.signal.aborted) return;
    const bytes = chunkBytes(chunk);
    this.queue.push({ chunk, bytes });
    this.queuedBytes += bytes;
    this.pushedBytes += bytes;
    this.kick();
    while (this.queuedBytes > MAX_QUEUED && !this.abort.signal.aborted) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Resolves once every queued chunk has been sent (or the stream was cancelled). */
  async drained(): Promise<void> {
    while (this.queue.length && !this.abort.signal.aborted) await new Promise<void>((r) => this.waiters.push(r));
  }

  cancel(reason: string): void {
    if (this.abort.signal.aborted) return;
    this.cancelReason = reason;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.abort.abort(new Error(reason));
    this.wake();
  }

  get pending(): boolean {
    return this.queue.length > 0 && !this.abort.signal.aborted;
  }

  /** Takes what one frame may carry within the credit; empty when the next chunk does not fit the credit yet. */
  take(maxBytes: number): StreamChunk[] {
    const out: StreamChunk[] = [];
    let size = 0;
    while (this.queue.length) {
      const next = this.queue[0]!;
      if (next.bytes > this.credit || (out.length && size + next.bytes > maxBytes)) break;
      this.queue.shift();
      this.credit -= next.bytes;
      this.queuedBytes -= next.bytes;
      size += next.bytes;
      this.digest.add(next.chunk); // over what is sent: what the hub can have
      out.push(next.chunk);
    }
    this.sentBytes += size;
    if (out.length) this.wake();
    return out;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** The streams of one connection, sent round-robin within their credits. */
export class StreamSender {
  private readonly streams = new Map<string, OutStream>();
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private readonly lowWater: number;
  private readonly maxFrame: number;
  private readonly pollMs: number;

  constructor(private readonly o: StreamSenderOptions) {
    this.lowWater = o.lowWater ?? LOW_WATER;
    this.maxFrame = o.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.pollMs = o.pollMs ?? 5;
  }

  open(id: string, credit: number): OutStream {
    const s = new OutStream(id, credit, () => this.schedule());
    this.streams.set(id, s);
    return s;
  }

  close(id: string): void {
    this.streams.delete(id);
  }

  get(id: string): OutStream | undefined {
    return this.streams.get(id);
  }

  credit(id: string, bytes: number): void {
    const s = this.streams.get(id);
    if (!s) return;
    s.credit += bytes;
    this.schedule();
  }

  cancel(id: string, reason: string): void {
    this.streams.get(id)?.cancel(reason);
  }

  /** Every stream ends (the connection was lost: nobody reads them). */
  cancelAll(reason: string): void {
    for (const s of this.streams.values()) s.cancel(reason);
  }

  get size(): number {
    return this.streams.size;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.pump());
  }

  private pump(): void {
    this.scheduled = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    let progress = true;
    while (progress) {
      progress = false;
      for (const s of this.streams.values()) {
        if (!s.pending) continue;
        if (this.o.buffered() >= this.lowWater) {
          this.timer = setTimeout(() => this.pump(), this.pollMs);
          return;
        }
        const chunks = s.take(this.maxFrame);
        if (!chunks.length) continue; // waits for credit
        if (!this.o.send({ type: 'stream-data', id: s.id, n: s.frames++, chunks })) {
          s.cancel('the connection to the hub was lost');
          continue;
        }
        progress = true;
      }
    }
  }
}
