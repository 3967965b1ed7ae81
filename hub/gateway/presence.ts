// Where each agent is: connected to this replica (a live socket here), to
// another one (its lease, several replicas on PostgreSQL), or offline since
// it was last seen.
//
// Last seen and hello facts are written in batches (every FLUSH_MS, and on
// shutdown), not one fsync'd commit per connect, hello and disconnect: in a
// reconnect storm those commits were most of the hub's CPU (bench/connections).
// Reads see the value in memory. A kill -9 loses at most the last second of
// it, which the agent's next hello restores; nothing audited or directed
// depends on it.
//
// With several replicas, each agent's row names the replica whose socket it
// has, and that replica holds one lease (hub_replicas), renewed every
// LEASE_MS / 3: one row however many agents. A replica that dies stops
// renewing and its agents count as offline once its lease runs out (until
// they reconnect elsewhere); the leader then clears their rows.
import type { Logger } from '../../shared/logger.js';
import type { Cluster } from '../cluster/cluster.js';
import type { AgentRecord } from '../store/fleet.js';
import type { Store } from '../store/store.js';

export const FLUSH_MS = 1000;
export const LEASE_MS = 30_000;

interface Pending {
  lastSeenAt: number;
  hello?: { agentVersion: string; facts: string };
  /** held: connected here; released: its socket here closed; undefined: only seen. */
  lease?: 'held' | 'released';
}

export class Presence {
  private readonly pending = new Map<string, Pending>();
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly renewTimer: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly cluster: Cluster,
    private readonly log: Logger,
    private readonly isLocal: (agentId: string) => boolean,
    private readonly now: () => number = Date.now,
    private readonly leaseMs = LEASE_MS,
  ) {
    this.renewTimer = setInterval(() => void this.renew(), Math.max(100, Math.floor(leaseMs / 3)));
    this.renewTimer.unref();
  }

  /** One replica (sqlite): leases from an earlier run of this hub are void. */
  async start(): Promise<void> {
    if (!this.cluster.shared) await this.store.fleet.expireLeases(Number.MAX_SAFE_INTEGER);
  }

  connected(agentId: string, at: number): void {
    this.note(agentId, at, (p) => (p.lease = 'held'));
  }

  disconnected(agentId: string, at: number): void {
    this.note(agentId, at, (p) => (p.lease = 'released'));
  }

  hello(agentId: string, agentVersion: string, facts: unknown, at: number): void {
    this.note(agentId, at, (p) => (p.hello = { agentVersion, facts: JSON.stringify(facts) }));
  }

  private note(agentId: string, at: number, f: (p: Pending) => void): void {
    let p = this.pending.get(agentId);
    if (!p) this.pending.set(agentId, (p = { lastSeenAt: at }));
    p.lastSeenAt = at;
    f(p);
    this.schedule();
  }

  /** Whether the agent has a socket on any replica now. */
  isConnected(a: Pick<AgentRecord, 'id' | 'replica' | 'leaseUntil'>): boolean {
    if (this.isLocal(a.id)) return true;
    return this.cluster.shared && a.replica !== null && a.replica !== this.cluster.replicaId && (a.leaseUntil ?? 0) > this.now();
  }

  /** The record with what is still in memory applied (last seen, hello facts). */
  overlay<T extends AgentRecord>(a: T): T {
    const p = this.pending.get(a.id);
    if (!p) return a;
    a.lastSeenAt = Math.max(a.lastSeenAt ?? 0, p.lastSeenAt);
    if (p.hello) {
      a.agentVersion = p.hello.agentVersion;
      a.facts = JSON.parse(p.hello.facts) as unknown;
    }
    return a;
  }

  private schedule(): void {
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush().catch(() => this.schedule()); // e.g. the database busy: try again later
    }, FLUSH_MS);
    this.flushTimer.unref();
  }

  /** Writes what is buffered in one transaction; what fails stays for the next try. */
  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async write(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (!this.pending.size) return;
    const batch = [...this.pending];
    this.pending.clear();
    const me = this.cluster.replicaId;
    const until = this.now() + this.leaseMs;
    const shared = this.cluster.shared;
    try {
      await this.store.detached(() =>
        this.store.fleet.writePresence(
          batch.map(([agentId, p]) => ({ agentId, lastSeenAt: p.lastSeenAt, hello: p.hello, lease: shared && p.lease === 'held' ? { replica: me, until } : null })),
        ),
      );
      if (shared) {
        const released = batch.filter(([, p]) => p.lease === 'released').map(([id]) => id);
        if (released.length) await this.store.detached(() => this.store.fleet.releaseLeases(me, released));
      }
    } catch (err) {
      // Keep it for the next flush, unless something newer came meanwhile.
      for (const [id, p] of batch) if (!this.pending.has(id)) this.pending.set(id, p);
      this.log.warn({ err: (err as Error).message, agents: batch.length }, 'could not write presence; will retry');
      throw err;
    }
  }

  private async renew(): Promise<void> {
    if (!this.cluster.shared) return;
    try {
      await this.store.detached(() => this.store.fleet.renewLease(this.cluster.replicaId, this.now() + this.leaseMs));
      if (this.cluster.leader) await this.store.detached(() => this.store.fleet.expireLeases(this.now()));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not renew this replica\'s lease');
    }
  }

  async close(): Promise<void> {
    clearInterval(this.renewTimer);
    try {
      await this.flush();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not write last-seen times on shutdown');
    }
  }
}
