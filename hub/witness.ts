// Gets audit checkpoints witnessed by the institutions' own agents: after a
// deploy and on a timer, each tenant log that grew is checkpointed, signed,
// and sent to the tenant's connected agents with a consistency proof from
// the checkpoint each last witnessed (and the entries about it, with
// inclusion proofs). Agents verify, keep it, and cosign.
import type { Logger } from '../shared/logger.js';
import type { CheckpointMessage, Cosign } from '../shared/protocol.js';
import { HUB_LOG } from '../shared/audit.js';
import type { AuditLog, StoredCheckpoint } from './audit.js';
import type { Gateway } from './gateway.js';
import type { Store } from './store.js';

const MAX_ENTRIES = 200;

export class Witnessing {
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly audit: AuditLog,
    private readonly gateway: Gateway,
    private readonly store: Store,
    private readonly log: Logger,
    checkpointMs: number,
    private readonly now: () => number = Date.now,
  ) {
    gateway.on('hello', (agentId: string) => this.onHello(agentId));
    gateway.on('cosign', (agentId: string, msg: Cosign) => this.onCosign(agentId, msg));
    this.timer = setInterval(() => this.tick(), checkpointMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Checkpoints every log that grew; sends tenant checkpoints to their agents. */
  tick(): void {
    try {
      for (const log of this.audit.logs()) this.checkpoint(log);
    } catch (err) {
      this.log.error({ err }, 'audit checkpoint failed');
    }
  }

  /** Checkpoints one log now (if it grew) and sends the latest checkpoint to its agents. */
  checkpoint(log: string): StoredCheckpoint | null {
    this.audit.checkpoint(log, this.now());
    const cp = this.audit.latestCheckpoint(log);
    if (cp && log !== HUB_LOG) for (const a of this.store.listAgents({ tenant: log })) this.send(a.id, log, cp);
    return cp;
  }

  private onHello(agentId: string): void {
    try {
      const tenant = this.store.agent(agentId).tenant;
      const cp = this.audit.latestCheckpoint(tenant);
      if (cp) this.send(agentId, tenant, cp);
    } catch (err) {
      this.log.error({ agentId, err }, 'could not send checkpoint');
    }
  }

  private send(agentId: string, log: string, cp: StoredCheckpoint): boolean {
    const session = this.gateway.session(agentId);
    if (!session) return false;
    const from = session.witnessed?.size ?? this.audit.lastWitnessed(log, agentId)?.size ?? null;
    if (from !== null && from > cp.size) this.log.error({ agentId, log, witnessed: from, size: cp.size }, 'ALARM: agent witnessed a larger log than the hub now has');
    const tree = this.audit.tree(log);
    const consistency = from !== null && from >= 1 && from <= cp.size ? tree.consistencyProof(from, cp.size) : [];
    const entries = this.audit
      .entries(log, { from: from ?? 0, limit: 10_000 })
      .filter((e) => e.index < cp.size && (e.entry.agents.includes(agentId) || e.entry.target?.id === agentId))
      .slice(0, MAX_ENTRIES)
      .map((e) => ({ index: e.index, data: e.data.toString('base64'), proof: tree.inclusionProof(e.index, cp.size).map((h) => h.toString('hex')) }));
    const msg: CheckpointMessage = { type: 'checkpoint', checkpoint: cp.envelope, fromSize: from, consistency: consistency.map((h) => h.toString('hex')), entries };
    return this.gateway.send(agentId, msg);
  }

  private onCosign(agentId: string, msg: Cosign): void {
    const agent = this.store.findAgent(agentId);
    if (!agent || agent.tenant !== msg.log) {
      this.log.warn({ agentId, log: msg.log }, 'cosignature for another tenant\'s log ignored');
      return;
    }
    const ok = this.audit.cosign(msg.log, msg.size, msg.root, agentId, agent.publicKey, msg.sig, this.now());
    if (ok) {
      const s = this.gateway.session(agentId);
      if (s) s.witnessed = { size: msg.size, root: msg.root };
      this.log.info({ agentId, log: msg.log, size: msg.size }, 'checkpoint cosigned by agent');
    } else this.log.warn({ agentId, log: msg.log, size: msg.size }, 'cosignature does not verify or names no checkpoint');
  }
}
