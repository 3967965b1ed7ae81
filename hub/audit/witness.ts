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
/** How far past the checkpoint an agent last witnessed its entries are looked for. */
const WINDOW = 10_000;

type Shipped = CheckpointMessage['entries'][number];

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

  /**
   * To every agent of the tenant held here. The log is read once for all of
   * them (each window of it once), not once per agent: with 5,000 agents on a
   * replica, reading and parsing each agent's window separately made every
   * checkpoint millions of rows (bench/rollout at 10,000 agents on PostgreSQL).
   */
  private async sendTo(log: string, cp: StoredCheckpoint): Promise<void> {
    const agents = this.gateway.localAgents().filter((id) => this.gateway.session(id)?.tenant === log);
    if (!agents.length) return;
    const tree = await this.audit.tree(log);
    if (tree.size < cp.size) return; // this replica has not read that far yet; the next checkpoint carries it
    const froms = new Map<string, number | null>();
    for (const id of agents) froms.set(id, await this.witnessedFrom(id, log, cp));
    const about = await this.entriesAbout(log, cp, tree, froms);
    for (const id of agents) {
      try {
        this.ship(id, cp, tree, froms.get(id) ?? null, about.get(id) ?? []);
      } catch (err) {
        this.log.error({ agentId: id, err }, 'could not send checkpoint');
      }
    }
  }

  /** The size of the checkpoint the agent last witnessed (null: none). */
  private async witnessedFrom(agentId: string, log: string, cp: StoredCheckpoint): Promise<number | null> {
    const from = this.gateway.session(agentId)?.witnessed?.size ?? (await this.audit.lastWitnessed(log, agentId))?.size ?? null;
    if (from !== null && from > cp.size) this.log.error({ agentId, log, witnessed: from, size: cp.size }, 'ALARM: agent witnessed a larger log than the hub now has');
    return from;
  }

  /**
   * For each agent, the entries about it (its id among the entry's agents, or
   * as its target) from the checkpoint it last witnessed, within WINDOW
   * entries of it and below the checkpoint's size, at most MAX_ENTRIES, each
   * with its inclusion proof. Overlapping windows are read once.
   */
  private async entriesAbout(log: string, cp: StoredCheckpoint, tree: Awaited<ReturnType<AuditLog['tree']>>, froms: Map<string, number | null>): Promise<Map<string, Shipped[]>> {
    const out = new Map<string, Shipped[]>();
    const starts = [...froms.values()].map((f) => f ?? 0).sort((a, b) => a - b);
    const segments: [number, number][] = [];
    for (const f of starts) {
      const end = Math.min(cp.size, f + WINDOW);
      if (f >= end) continue;
      const last = segments.at(-1);
      if (last && f <= last[1]) last[1] = Math.max(last[1], end);
      else segments.push([f, end]);
    }
    const proofs = new Map<number, string[]>();
    for (const [lo, hi] of segments) {
      for (let from = lo; from < hi; ) {
        const rows = await this.audit.entries(log, { from, limit: Math.min(1000, hi - from) });
        if (!rows.length) break;
        for (const e of rows) {
          if (e.index >= hi) break;
          const ids = new Set(e.entry.agents);
          if (e.entry.target?.id) ids.add(e.entry.target.id);
          for (const id of ids) {
            if (!froms.has(id)) continue;
            const start = froms.get(id) ?? 0;
            if (e.index < start || e.index >= start + WINDOW) continue;
            let list = out.get(id);
            if (!list) out.set(id, (list = []));
            if (list.length >= MAX_ENTRIES) continue;
            let proof = proofs.get(e.index);
            if (!proof) proofs.set(e.index, (proof = tree.inclusionProof(e.index, cp.size).map((h) => h.toString('hex'))));
            list.push({ index: e.index, data: e.data.toString('base64'), proof });
          }
        }
        from = rows[rows.length - 1]!.index + 1;
      }
    }
    return out;
  }

  private ship(agentId: string, cp: StoredCheckpoint, tree: Awaited<ReturnType<AuditLog['tree']>>, from: number | null, entries: Shipped[]): boolean {
    const consistency = from !== null && from >= 1 && from <= cp.size ? tree.consistencyProof(from, cp.size) : [];
    const msg: CheckpointMessage = { type: 'checkpoint', checkpoint: cp.envelope, fromSize: from, consistency: consistency.map((h) => h.toString('hex')), entries };
    return this.gateway.send(agentId, msg);
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
    if (!this.gateway.session(agentId)) return false;
    const from = await this.witnessedFrom(agentId, log, cp);
    const tree = await this.audit.tree(log);
    if (tree.size < cp.size) return false; // this replica has not read that far yet; the next checkpoint carries it
    const about = await this.entriesAbout(log, cp, tree, new Map([[agentId, from]]));
    return this.ship(agentId, cp, tree, from, about.get(agentId) ?? []);
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
