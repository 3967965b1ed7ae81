// Images on their way into each bank's registry, as its agent last reported
// them (protocol 'relay': the agent's whole list each time, so a report
// replaces the previous one). Read by `ferry images status`.
import type { ImageRelay } from '../../shared/protocol.js';
import { inList, type Db } from './db.js';

export class ImageRows {
  constructor(private readonly db: Db) {}

  /** The newest list per agent, written in one transaction. */
  async write(batch: ReadonlyMap<string, { images: readonly ImageRelay[]; at: number }>): Promise<void> {
    if (!batch.size) return;
    await this.db.tx(async () => {
      for (const [agentId, r] of batch) {
        await this.db.run(
          'INSERT INTO agent_images (agent_id, images, updated_at) VALUES (?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET images = excluded.images, updated_at = excluded.updated_at',
          [agentId, JSON.stringify(r.images), r.at],
        );
      }
    });
  }

  async of(agentIds: readonly string[]): Promise<Map<string, { images: ImageRelay[]; updatedAt: number }>> {
    const out = new Map<string, { images: ImageRelay[]; updatedAt: number }>();
    for (let i = 0; i < agentIds.length; i += 500) {
      const part = agentIds.slice(i, i + 500);
      const rows = await this.db.all<{ agent_id: string; images: string; updated_at: number }>(`SELECT agent_id, images, updated_at FROM agent_images WHERE agent_id IN ${inList(part.length)}`, part);
      for (const r of rows) out.set(r.agent_id, { images: JSON.parse(r.images) as ImageRelay[], updatedAt: Number(r.updated_at) });
    }
    return out;
  }
}
