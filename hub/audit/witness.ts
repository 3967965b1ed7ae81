// Gets audit checkpoints witnessed by the institutions' own agents: after a
// deploy and on a timer (on the leading replica), each tenant log that grew is
// checkpointed, signed, and sent to the tenant's connected agents (on every
// replica: a 'checkpoint' wake-up) with a consistency proof from the
// checkpoint each last witnessed, and the entries about it with inclusion
// proofs. Agents verify, keep it, and cosign.
import { HUB_LOG } from '../../shared/audit.js';
import type { Logger } from '../../shared/logger.js';
import type { CheckpointMessage, Cosign } from '../../shared/protocol.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Store } from '../store/store.js';
import type { AuditLog, StoredCheckpoint } from './log.js';

const MAX_ENTRIES = 200;

export class Witnessing {
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly audit: AuditLog,
    private readonly gateway: Gateway,
    private readonly store: Store,
    private readonly cluster: Cluster,
    private readonly log: Logger,
    checkpointMs: number,
    private readonly now: () => number = Date.now,
  ) {
    gateway.on('hello', (agentId: string) => void this.onHello(agentId));
    gateway.on('cosign', (agentId: string, msg: Cosign) => void this.onCosign(agentId, msg));
    cluster.on('checkpoint', ({ log }) => void this.sendLatest(log));
    this.timer = setInterval(() => {
      if (cluster.leader) void this.tick();
    }, checkpointMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Checkpoints every log that grew; sends tenant checkpoints to their agents. */
  async tick(): Promise<void> {
    try {
      for (const log of await this.audit.logs()) await this.checkpoint(log);
    } catch (err) {
      this.log.error({ err }, 'audit checkpoint failed');
    }
  }

  /** Checkpoints one log now (if it grew) and sends the latest checkpoint to its agents, on every replica. */
  async checkpoint(log: string): Promise<StoredCheckpoint | null> {
    const made = await this.audit.checkpoint(log, this.now());
    const cp = made ?? (await this.audit.latestCheckpoint(log));
    if (cp && log !== HUB_LOG) {
      await this.sendTo(log, cp);
      if (made && this.cluster.shared) this.cluster.publish('checkpoint', { log });
    }
    return cp;
  }

  private async sendLatest(log: string): Promise<void> {
    try {
      const cp = await this.audit.latestCheckpoint(log);
      if (cp && log !== HUB_LOG) await this.sendTo(log, cp);
    } catch (err) {
      this.log.error({ log, err }, 'could not send checkpoint');
    }
  }

  private async sendTo(log: string, cp: StoredCheckpoint): Promise<void> {
    for (const id of this.gateway.localAgents()) if (this.gateway.session(id)?.tenant === log) await this.send(id, log, cp);
  }

  private async onHello(agentId: string): Promise<void> {
    try {
      const tenant = this.gateway.session(agentId)?.tenant ?? (await this.store.fleet.agentTenant(agentId)).tenant;
      const cp = await this.audit.latestCheckpoint(tenant);
      if (cp) await this.send(agentId, tenant, cp);
    } catch (err) {
      this.log.error({ agentId, err }, 'could not send checkpoint');
    }
  }

  private async send(agentId: string, log: string, cp: StoredCheckpoint): Promise<boolean> {
    const session = this.gateway.session(agentId);
    if (!session) return false;
    const from = session.witnessed?.size ?? (await this.audit.lastWitnessed(log, agentId))?.size ?? null;
    if (from !== null && from > cp.size) this.log.error({ agentId, log, witnessed: from, size: cp.size }, 'ALARM: agent witnessed a larger log than the hub now has');
    const tree = await this.audit.tree(log);
    if (tree.size < cp.size) return false; // this replica has not read that far yet; the next checkpoint carries it
    const consistency = from !== null && from >= 1 && from <= cp.size ? tree.consistencyProof(from, cp.size) : [];
    const entries = (await this.audit.entries(log, { from: from ?? 0, limit: 10_000 }))
      .filter((e) => e.index < cp.size && (e.entry.agents.includes(agentId) || e.entry.target?.id === agentId))
      .slice(0, MAX_ENTRIES)
      .map((e) => ({ index: e.index, data: e.data.toString('base64'), proof: tree.inclusionProof(e.index, cp.size).map((h) => h.toString('hex')) }));
    const msg: CheckpointMessage = { type: 'checkpoint', checkpoint: cp.envelope, fromSize: from, consistency: consistency.map((h) => h.toString('hex')), entries };
    return this.gateway.send(agentId, msg);
  }

  private async onCosign(agentId: string, msg: Cosign): Promise<void> {
    try {
      const agent = await this.store.fleet.findAgent(agentId);
      if (!agent || agent.tenant !== msg.log) {
        this.log.warn({ agentId, log: msg.log }, "cosignature for another tenant's log ignored");
        return;
      }
      const ok = await this.store.tx(() => this.audit.cosign(msg.log, msg.size, msg.root, agentId, agent.publicKey, msg.sig, this.now()));
      if (ok) {
        const s = this.gateway.session(agentId);
        if (s) s.witnessed = { size: msg.size, root: msg.root };
        this.log.info({ agentId, log: msg.log, size: msg.size }, 'checkpoint cosigned by agent');
      } else this.log.warn({ agentId, log: msg.log, size: msg.size }, 'cosignature does not verify or names no checkpoint');
    } catch (err) {
      this.log.error({ agentId, err }, 'could not record cosignature');
    }
  }
}
