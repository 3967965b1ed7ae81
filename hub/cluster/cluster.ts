// What several hub replicas on one PostgreSQL database need from each other,
// built on PostgreSQL itself: wake-ups (LISTEN/NOTIFY) and one leader for the
// rollout scheduler and periodic jobs (a session advisory lock). With the
// embedded sqlite store there is one replica: wake-ups stay in the process
// and it always leads.
//
// Wake-ups are doorbells, never the data: whatever they announce is already
// committed in the database, and a receiver reads it from there. One may be
// lost (a replica restarting, a dropped LISTEN connection); each consumer
// also sweeps on a timer (hub/gateway/delivery.ts, hub/events.ts), so a lost
// doorbell delays, never loses.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../shared/logger.js';
import type { PostgresDb } from '../store/postgres.js';

export interface Topics {
  /** Directives for these agents were committed: their holder sends them. */
  deliver: { agents: string[] };
  /** Ask agent for its plan; the holder answers into agent_answers and rings 'answer'. */
  plan: { id: string; agentId: string };
  answer: { id: string };
  /** The agent was revoked: its holder closes its socket. */
  revoke: { agentId: string };
  /** The tenant's trust root changed: holders push the chain to its agents. */
  roots: { tenant: string };
  /** A checkpoint of the log was signed: holders send it to its agents. */
  checkpoint: { log: string };
  /** Agents answered directives, [agent, seq] (deploy --wait listens): one wake-up per report batch. */
  ack: { acks: [string, number][] };
  /** Something the rollout scheduler decides on changed. */
  kick: Record<string, never>;
  /** New rollout events were committed (event streams read them). */
  events: Record<string, never>;
  /** A rollout was created: holders of its pending agents send them its release ahead (hub/registry/prestage.ts). */
  prestage: { rollout: string };
  /** The agent connected to `replica`: any other replica still holding a socket for it closes it. */
  connected: { agentId: string; replica: string };
  /** New console chat messages in this room (hub/chat/transports/console.ts streams read them). */
  chat: { room: string };
  /** Chat notices were queued or a chat setting changed: the leader's notifier looks again. */
  'chat-notify': Record<string, never>;
  /** An operation was stored for this agent on another replica: its holder sends it and relays the answer (hub/operations). */
  operation: { id: string; agentId: string };
  /** The holder stored more chunks of a relayed stream (operation_chunks). */
  'op-chunk': { id: string };
  /** The holder recorded the operation's answer (after its last chunk). */
  'op-done': { id: string };
  /** The client's replica wrote this many bytes of a relayed stream to its client: the holder grants them to the agent. */
  'op-credit': { id: string; bytes: number };
  /** The client of a relayed stream went away: the holder cancels it on the agent. */
  'op-cancel': { id: string };
}
export type Topic = keyof Topics;

export interface Cluster {
  readonly replicaId: string;
  /** Whether other replicas may exist (PostgreSQL). */
  readonly shared: boolean;
  /** Rings `topic` here and on every other replica; after the data it announces has committed. */
  publish<K extends Topic>(topic: K, payload: Topics[K]): void;
  on<K extends Topic>(topic: K, handler: (payload: Topics[K]) => void): void;
  off<K extends Topic>(topic: K, handler: (payload: Topics[K]) => void): void;
  readonly leader: boolean;
  /** Told when this replica gains or loses the lead. */
  onLeadership(cb: (leader: boolean) => void): void;
  start(): Promise<void>;
  close(): Promise<void>;
}

export function newReplicaId(): string {
  return `rep_${randomBytes(6).toString('hex')}`;
}

abstract class Base implements Cluster {
  protected readonly local = new EventEmitter();
  protected leaderNow = false;
  private readonly leadership: ((leader: boolean) => void)[] = [];
  abstract readonly shared: boolean;

  constructor(readonly replicaId: string) {
    this.local.setMaxListeners(0);
  }

  abstract publish<K extends Topic>(topic: K, payload: Topics[K]): void;
  abstract start(): Promise<void>;
  abstract close(): Promise<void>;

  on<K extends Topic>(topic: K, handler: (payload: Topics[K]) => void): void {
    this.local.on(topic, handler);
  }

  off<K extends Topic>(topic: K, handler: (payload: Topics[K]) => void): void {
    this.local.off(topic, handler);
  }

  get leader(): boolean {
    return this.leaderNow;
  }

  onLeadership(cb: (leader: boolean) => void): void {
    this.leadership.push(cb);
    if (this.leaderNow) cb(true);
  }

  protected setLeader(on: boolean): void {
    if (on === this.leaderNow) return;
    this.leaderNow = on;
    for (const cb of this.leadership) cb(on);
  }

  /** Rings local handlers on the next turn: never inside the publisher's transaction or stack. */
  protected ring(topic: Topic, payload: unknown): void {
    setImmediate(() => this.local.emit(topic, payload));
  }
}

/** One replica (sqlite): wake-ups stay in the process; it always leads. */
export class LocalCluster extends Base {
  readonly shared = false;

  publish<K extends Topic>(topic: K, payload: Topics[K]): void {
    this.ring(topic, payload);
  }

  async start(): Promise<void> {
    this.setLeader(true);
  }

  async close(): Promise<void> {
    this.setLeader(false);
    this.local.removeAllListeners();
  }
}

const CHANNEL = 'ferry_hub';
const LEADER_KEY = 'ferry:leader';
/** PostgreSQL refuses NOTIFY payloads from 8000 bytes. */
const MAX_PAYLOAD = 7900;

/** Several replicas on one PostgreSQL database. */
export class PostgresCluster extends Base {
  readonly shared = true;
  private unlisten: (() => Promise<void>) | undefined;
  private release: (() => Promise<void>) | null = null;
  private campaign: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    replicaId: string,
    private readonly db: PostgresDb,
    private readonly log: Logger,
    private readonly campaignMs = 2000,
  ) {
    super(replicaId);
  }

  publish<K extends Topic>(topic: K, payload: Topics[K]): void {
    this.ring(topic, payload);
    for (const text of this.encode(topic, payload)) {
      this.db.notify(CHANNEL, text).catch((err: unknown) => this.log.warn({ topic, err: (err as Error).message }, 'could not notify other replicas; their sweep will catch up'));
    }
  }

  /** One or more NOTIFY payloads: a long agent list is split. */
  private encode(topic: Topic, payload: unknown): string[] {
    const text = JSON.stringify({ t: topic, r: this.replicaId, p: payload });
    if (text.length <= MAX_PAYLOAD) return [text];
    if (topic === 'deliver') {
      const agents = (payload as Topics['deliver']).agents;
      const half = Math.ceil(agents.length / 2);
      return [...this.encode(topic, { agents: agents.slice(0, half) }), ...this.encode(topic, { agents: agents.slice(half) })];
    }
    if (topic === 'ack') {
      const acks = (payload as Topics['ack']).acks;
      const half = Math.ceil(acks.length / 2);
      return [...this.encode(topic, { acks: acks.slice(0, half) }), ...this.encode(topic, { acks: acks.slice(half) })];
    }
    this.log.error({ topic, bytes: text.length }, 'wake-up too large for NOTIFY; dropped (the sweep will catch up)');
    return [];
  }

  async start(): Promise<void> {
    this.unlisten = await this.db.listen(CHANNEL, (text) => {
      try {
        const m = JSON.parse(text) as { t: Topic; r: string; p: unknown };
        if (m.r !== this.replicaId) this.local.emit(m.t, m.p);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'unreadable wake-up from another replica');
      }
    });
    await this.stand();
    this.campaign = setInterval(() => void this.stand(), this.campaignMs);
    this.campaign.unref();
  }

  /** Tries to take the lead while no one has it. */
  private async stand(): Promise<void> {
    if (this.closed || this.release) return;
    try {
      const release = await this.db.tryHold(LEADER_KEY, (err) => {
        this.log.error({ err: (err as Error).message }, 'lost the connection holding the lead; stepping down');
        this.release = null;
        this.setLeader(false);
      });
      if (!release) return;
      if (this.closed) return void (await release());
      this.release = release;
      this.log.info({ replica: this.replicaId }, 'this replica leads the rollout scheduler');
      this.setLeader(true);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not stand for the lead; trying again');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.campaign);
    const r = this.release;
    this.release = null;
    this.setLeader(false);
    // A database that is already gone must not hold the shutdown up.
    const bounded = (p: Promise<unknown>) => Promise.race([p.catch(() => {}), new Promise((res) => setTimeout(res, 2000).unref())]);
    if (r) await bounded(r());
    if (this.unlisten) await bounded(this.unlisten());
    this.local.removeAllListeners();
  }
}
