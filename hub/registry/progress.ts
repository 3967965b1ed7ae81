// What each agent says about the images it is copying into its bank's
// registry (protocol 'relay'), kept for `ferry images status`. An agent
// sends its whole list when an image changes state and at most every second
// while bytes move; the newest list per agent is written once a second, so a
// fleet pre-staging at once costs one transaction a second, not one a frame.
import type { Logger } from '../../shared/logger.js';
import type { ImageRelay, RelayMessage } from '../../shared/protocol.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Store } from '../store/store.js';

const FLUSH_MS = 1000;

export class RelayProgress {
  private pending = new Map<string, { images: ImageRelay[]; at: number }>();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Store,
    gateway: Gateway,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    gateway.on('relay', (agentId: string, msg: RelayMessage) => {
      this.pending.set(agentId, { images: msg.images, at: this.now() });
      this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS);
    });
  }

  /** Writes what is batched (also on shutdown). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = new Map();
    this.writing = this.writing.then(() =>
      this.store.detached(() => this.store.images.write(batch)).catch((err: unknown) => this.log.error({ err, agents: batch.size }, 'could not record image relay progress')),
    );
    return this.writing;
  }

  /** The newest lists for these agents, what is batched included. */
  async of(agentIds: readonly string[]): Promise<Map<string, { images: ImageRelay[]; updatedAt: number }>> {
    const out = await this.store.images.of(agentIds);
    for (const id of agentIds) {
      const p = this.pending.get(id);
      if (p) out.set(id, { images: p.images, updatedAt: p.at });
    }
    return out;
  }
}
