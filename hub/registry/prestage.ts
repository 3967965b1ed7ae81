// Pre-staging: when a rollout is created, every agent a later wave will reach
// is sent the release (protocol 'prestage') so its images are copied into the bank's
// registry before its wave starts. An agent that connects later while still
// pending gets it on its hello. Best effort: the directive, when it comes,
// copies whatever is still missing. With several replicas each sends to the
// agents it holds (a doorbell; the targets are in the database).
import { AGENT_STACK } from '../../shared/agent-bundle.js';
import type { Logger } from '../../shared/logger.js';
import { encode } from '../../shared/protocol.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Releases } from '../releases.js';
import type { Store } from '../store/store.js';
import type { TrustRoots } from '../trust.js';

export class Prestaging {
  constructor(
    private readonly store: Store,
    private readonly gateway: Gateway,
    private readonly releases: Releases,
    private readonly trust: TrustRoots,
    private readonly cluster: Cluster,
    private readonly log: Logger,
  ) {
    cluster.on('prestage', ({ rollout }) => void this.sendLocal(rollout));
    gateway.on('hello', (agentId: string) => void this.onHello(agentId));
  }

  /** After the rollout committed: its pending targets, here and on the other replicas (a publish rings here too). */
  rolloutCreated(rollout: string): void {
    this.cluster.publish('prestage', { rollout });
  }

  private async sendLocal(rollout: string): Promise<number> {
    try {
      const r = await this.store.rollouts.get(rollout);
      if (r.stack === AGENT_STACK) return 0; // an agent version: no images
      const release = (await this.releases.get(r.stack, r.version)).envelope;
      // The first wave's directives follow at once: sending those agents the release ahead would only double the
      // bytes of a wide first wave. One message per tenant, encoded once.
      const firstWave = r.waves[0] ?? 0;
      const texts = new Map<string, string>();
      let n = 0;
      for (const t of await this.store.rollouts.targets(rollout)) {
        if (t.state !== 'pending' || t.position < firstWave || !this.gateway.session(t.agentId)) continue;
        let text = texts.get(t.tenant);
        if (text === undefined) texts.set(t.tenant, (text = encode({ type: 'prestage', rollout, releases: [release], roots: await this.trust.chain(t.tenant) })));
        if (this.gateway.sendEncoded(t.agentId, 'prestage', text)) n++;
      }
      if (n) this.log.info({ rollout, agents: n }, 'releases sent ahead for pre-staging');
      return n;
    } catch (err) {
      this.log.error({ rollout, err }, 'could not send releases ahead for pre-staging');
      return 0;
    }
  }

  private async onHello(agentId: string): Promise<void> {
    try {
      const pending = await this.store.rollouts.pendingFor(agentId);
      if (!pending.length) return;
      const s = this.gateway.session(agentId);
      if (!s) return;
      const roots = await this.trust.chain(s.tenant);
      for (const p of pending) {
        if (p.stack === AGENT_STACK) continue;
        const release = (await this.releases.get(p.stack, p.version)).envelope;
        this.gateway.send(agentId, { type: 'prestage', rollout: p.id, releases: [release], roots });
      }
    } catch (err) {
      this.log.error({ agentId, err }, 'could not send releases ahead for pre-staging');
    }
  }
}
