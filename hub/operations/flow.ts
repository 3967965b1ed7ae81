// Flow control of operation streams on the hub: the window the agent may
// send ahead of what the client read, and the stream whose client is on the
// replica holding the agent's socket (relayed.ts is the other case).
import { chunkBytes, type StreamChunk } from '../../shared/operation.js';

/** Stream bytes the agent may send ahead of what the client has read. */
export const WINDOW = 1024 * 1024;
/** Read bytes are granted back to the agent in lots of this size. */
export const GRANT_AT = 128 * 1024;

/** Where a stream goes: the client. `write` resolves once the client has taken the chunks. */
export interface StreamSink {
  write(chunks: StreamChunk[]): Promise<void>;
  /** Aborts when the client goes away. */
  readonly closed: AbortSignal;
}

/**
 * A stream whose client is on this replica: chunks wait here (at most the
 * window the agent was granted) and go to the client one write at a time;
 * bytes the client took are granted back to the agent in lots.
 */
export class LocalStream {
  private queue: StreamChunk[][] = [];
  private writing: Promise<void> | null = null;
  private owed = 0;

  constructor(
    private readonly sink: StreamSink,
    private readonly grant: (bytes: number) => void,
  ) {}

  data(chunks: StreamChunk[]): void {
    if (this.sink.closed.aborted) return;
    this.queue.push(chunks);
    this.writing ??= this.drain();
  }

  async drained(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length && !this.sink.closed.aborted) {
        const chunks = this.queue.shift()!;
        await this.sink.write(chunks);
        this.owed += chunks.reduce((a, c) => a + chunkBytes(c), 0);
        if (this.owed >= GRANT_AT) {
          this.grant(this.owed);
          this.owed = 0;
        }
      }
    } finally {
      this.writing = null;
      if (this.queue.length && !this.sink.closed.aborted) this.writing = this.drain();
    }
  }
}
