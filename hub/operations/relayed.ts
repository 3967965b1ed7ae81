// The requester's side of a stream whose agent socket another replica holds:
// it reads the chunks the holder stored (operation_chunks), in order, writes
// them to its client, deletes them, and grants what the client took back to
// the holder ('op-credit'), which grants it to the agent. At most one window
// of chunks is ever in the database per stream.
import type { Logger } from '../../shared/logger.js';
import { chunkBytes, type StreamChunk } from '../../shared/operation.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Store } from '../store/store.js';
import { GRANT_AT, type StreamSink } from './flow.js';

export class RelayedStream {
  private last = -1;
  private owed = 0;
  /** Reads run one after the other; at most one more is queued behind the running one. */
  private chain: Promise<void> = Promise.resolve();
  private queued = false;

  constructor(
    private readonly id: string,
    private readonly sink: StreamSink,
    private readonly store: Store,
    private readonly cluster: Cluster,
    private readonly log: Logger,
  ) {}

  /** Reads what is there now (rung by 'op-chunk', 'op-done' and the sweep). */
  pull(): Promise<void> {
    if (this.queued) return this.chain;
    this.queued = true;
    this.chain = this.chain.then(() => {
      this.queued = false;
      return this.read();
    });
    return this.chain;
  }

  /** Resolves once every stored chunk is with the client (call after the answer was recorded). */
  async finished(): Promise<void> {
    this.queued = false; // a read queued before the answer may have run already: read once more after it
    await this.pull();
    if (this.owed > 0) this.cluster.publish('op-credit', { id: this.id, bytes: this.owed });
    this.owed = 0;
  }

  private async read(): Promise<void> {
    try {
      for (;;) {
        if (this.sink.closed.aborted) return;
        const rows = await this.store.operations.takeChunks(this.id, this.last);
        if (!rows.length) return;
        for (const r of rows) {
          if (r.n !== this.last + 1) this.log.warn({ operation: this.id, expected: this.last + 1, got: r.n }, 'a relayed stream skipped frames');
          this.last = r.n;
          const chunks = JSON.parse(r.body) as StreamChunk[];
          await this.sink.write(chunks);
          this.owed += chunks.reduce((a, c) => a + chunkBytes(c), 0);
          if (this.owed >= GRANT_AT) {
            this.cluster.publish('op-credit', { id: this.id, bytes: this.owed });
            this.owed = 0;
          }
        }
      }
    } catch (err) {
      this.log.error({ operation: this.id, err: (err as Error).message }, 'could not read a relayed stream');
    }
  }
}
