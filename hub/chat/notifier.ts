// The release bot: notices to the rooms subscribed, from what the database
// already holds, on the leader only — so with several replicas nothing is
// announced twice, and a new leader carries on from the stored cursors:
//
//   rollout_events (cursor)  -> a rollout starting, each wave starting (the one
//                               before it passed), pausing, failing, rolling
//                               back, succeeding           [rollouts]
//   audit logs (a cursor per log) -> agent.alarm            [alarms]
//                               release.offer, direct deploys [releases]
//   chat_feed (cursor)       -> agents offline for longer than the grace time,
//                               and back                    [agents]
//   rollout_events, kind alert (cursor) -> checks failing and recovered,
//                               flapping, rollouts stuck    [alarms]
//
// Reading a batch, queueing its notices (chat_outbox) and moving the cursor
// are one transaction: a notice is queued exactly once. Per-target events
// are never notices of their own (a 10,000-agent wave is one notice per room).
// Sending: per room, at the platform's pace (hub/chat/limits.ts), what waits
// goes out as one message (a digest when there are several), marked sent
// after the platform took it; on failure it waits (the platform's
// retry-after, or a backoff) and is never dropped.
import { HUB_LOG, parseEntry } from '../../shared/audit.js';
import type { Logger } from '../../shared/logger.js';
import type { Cluster } from '../cluster/cluster.js';
import type { EventRow } from '../store/rollouts.js';
import type { RoomRecord } from '../store/chat.js';
import type { Store } from '../store/store.js';
import { rolloutId } from '../store/rollouts.js';
import type { Subscription } from './config.js';
import { backoffMs, digest, nextSlot, trimHistory, type Platform } from './limits.js';
import { TransportError, type OutMessage, type Transport } from './types.js';

export interface NotifierOptions {
  tickMs: number;
  /** A notice waits this long for others to join it in one message (alarms do not wait). */
  gatherMs: number;
  /** An agent offline for less than this (a reconnect, a hub restart) is not announced. */
  presenceGraceMs: number;
}

export const NOTIFIER_DEFAULTS: NotifierOptions = Object.freeze({ tickMs: 1000, gatherMs: 1500, presenceGraceMs: 60_000 });

const BATCH = 500;

interface Notice {
  sub: Subscription;
  kind: string;
  alarm: boolean;
  /** The tenants it concerns (null: the vendor's rooms only). */
  tenants: string[] | null;
  /** Text per room: rooms of one tenant may see only their part. */
  text: (room: RoomRecord) => string;
}


/** The audit actions that make chat notices (a cheap test on an entry's bytes before it is parsed). */
const NOTICE_ACTIONS = ['"agent.alarm"', '"release.offer"', '"directive.issue"'];
export class Notifier {
  readonly opts: NotifierOptions;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private pass: Promise<void> = Promise.resolve();
  private again = false;
  private stopped = false;
  private readonly pendingFeed: { at: number; kind: 'offline' | 'online'; agentId: string; tenant: string | null }[] = [];
  private feedTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly cluster: Cluster,
    private readonly transportFor: (name: string) => Promise<Transport | null>,
    private readonly expire: (now: number) => Promise<{ room: string; text: string; thread: string | null }[]>,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    opts: Partial<NotifierOptions> = {},
  ) {
    this.opts = Object.freeze({ ...NOTIFIER_DEFAULTS, ...opts });
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.opts.tickMs);
    this.timer.unref();
    this.cluster.on('chat-notify', () => this.kick());
    this.cluster.onLeadership((l) => l && this.kick());
  }

  /** Something to announce may have been committed: look soon (coalesced). */
  kick(): void {
    if (this.stopped || !this.cluster.leader) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.pass = this.store
      .detached(() => this.tick())
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'chat notifier pass failed'))
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          setImmediate(() => this.kick());
        }
      });
  }

  /** One pass: queue what happened, time out requests, send what is due. Tests call it to wait for a pass. */
  async tick(): Promise<void> {
    if (!this.cluster.leader) return;
    const rooms = await this.store.chat.rooms();
    await this.fromRollouts(rooms);
    await this.fromAudit(rooms);
    await this.fromPresence(rooms);
    await this.fromAlerts(rooms);
    for (const e of await this.expire(this.now())) {
      const room = await this.store.chat.roomById(e.room);
      if (room) await this.store.chat.enqueue(room.id, 'reply', false, JSON.stringify({ text: e.text, thread: e.thread }), this.now(), this.now());
    }
    await this.sendDue();
  }

  // ---- presence changes (any replica records them) -----------------------------------------

  /** The gateway saw an agent connect or disconnect here: recorded in a batch, announced by the leader after the grace time. */
  presence(kind: 'offline' | 'online', agentId: string, tenant: string | null): void {
    this.pendingFeed.push({ at: this.now(), kind, agentId, tenant });
    this.feedTimer ??= setTimeout(() => void this.flushFeed(), 1000).unref();
  }

  async flushFeed(): Promise<void> {
    clearTimeout(this.feedTimer);
    this.feedTimer = undefined;
    if (!this.pendingFeed.length || !this.store.db.isOpen) return;
    const batch = this.pendingFeed.splice(0);
    try {
      const rows: { at: number; kind: 'offline' | 'online'; agentId: string; tenant: string }[] = [];
      for (const r of batch) rows.push({ ...r, tenant: r.tenant ?? (await this.store.fleet.agentTenant(r.agentId).catch(() => ({ tenant: '' }))).tenant });
      await this.store.detached(() => this.store.chat.addFeed(rows));
    } catch (err) {
      this.pendingFeed.unshift(...batch);
      this.log.warn({ err: (err as Error).message }, 'could not record agents going offline or online; will retry');
    }
  }

  // ---- sources ------------------------------------------------------------------------------

  /** Reads a cursor, starting at `head` the first time (history is not announced). */
  private async cursorAt(name: string, head: () => Promise<number>): Promise<number> {
    const c = await this.store.chat.cursor(name);
    if (c !== undefined) return Number(c);
    const h = await head();
    await this.store.chat.setCursor(name, String(h));
    return h;
  }

  private async fromRollouts(rooms: RoomRecord[]): Promise<void> {
    const after = await this.cursorAt('rollout_events', () => this.store.rollouts.head());
    const rows = await this.store.rollouts.events({ after, rollout: null, kinds: ['rollout', 'wave'], tenants: null, limit: BATCH });
    if (!rows.length) return;
    const notices: Notice[] = [];
    for (const r of rows) {
      const n = await this.rolloutNotice(r);
      if (n) notices.push(n);
    }
    await this.queue(rooms, notices, 'rollout_events', String(rows[rows.length - 1]!.id));
  }

  private async rolloutNotice(e: EventRow): Promise<Notice | null> {
    const id = rolloutId(Number(e.rollout));
    const r = await this.store.rollouts.find(id);
    if (!r) return null;
    const targets = await this.store.rollouts.targets(id);
    const tenants = [...new Set(targets.map((t) => t.tenant))];
    const mine = (room: RoomRecord) => (room.tenants ? targets.filter((t) => room.tenants!.includes(t.tenant)) : targets);
    const name = `${id} ${r.stack}@${r.version}`;
    if (e.kind === 'wave') {
      const w = Number(e.wave);
      const from = w >= 2 ? r.waves[w - 2]! : 0;
      const reach = r.waves[w - 1] ?? 0;
      return {
        sub: 'rollouts',
        kind: 'rollout.wave',
        alarm: false,
        tenants,
        text: (room) => {
          const inWave = mine(room).filter((t) => t.position >= from && t.position < reach).length;
          const before = w >= 2 ? mine(room).filter((t) => t.position < from) : [];
          return `${name}: wave ${w}/${r.waves.length} started, ${inWave} agent${inWave === 1 ? '' : 's'}${w >= 2 ? ` (wave ${w - 1} passed: ${before.filter((t) => t.state === 'done').length}/${before.length} done)` : ''}`;
        },
      };
    }
    const to = e.to_state ?? '';
    if (e.reason === 'created') return { sub: 'rollouts', kind: 'rollout.created', alarm: false, tenants, text: (room) => `🚀 ${name} started: ${mine(room).length} agents in ${r.waves.length} wave${r.waves.length === 1 ? '' : 's'}` };
    const failed = (room: RoomRecord) => {
      const f = mine(room).filter((t) => t.state === 'failed' || t.state === 'revert-failed');
      const codes = [...new Set(f.map((t) => t.code).filter(Boolean))].slice(0, 3).join(', ');
      return f.length ? ` · ${f.length} failed${codes ? ` (${codes})` : ''}` : '';
    };
    const mark: Record<string, string> = { succeeded: '✅', failed: '❌', aborted: '⏹', paused: '⏸', running: '▶', 'rolling-back': '↩', 'rolled-back': '↩' };
    const alarm = to === 'failed' || to === 'rolling-back';
    return { sub: 'rollouts', kind: `rollout.${to}`, alarm, tenants, text: (room) => `${mark[to] ?? ''} ${name} ${to}${e.reason ? `: ${e.reason}` : ''}${failed(room)}`.trim() };
  }

  /**
   * Alerts of hub/checks (check failing and recovered, flapping, a rollout stuck and moving again), as they are on the
   * event stream. Agents offline and audit alarms are announced from their own sources above, not twice.
   */
  private async fromAlerts(rooms: RoomRecord[]): Promise<void> {
    const after = await this.cursorAt('alert_events', () => this.store.rollouts.head());
    const rows = await this.store.rollouts.events({ after, rollout: null, kinds: ['alert'], tenants: null, limit: BATCH });
    if (!rows.length) return;
    const notices: Notice[] = [];
    for (const r of rows) {
      const event = r.code ?? '';
      if (event.startsWith('agent.') || event === 'audit.alarm') continue;
      const firing = r.to_state === 'firing';
      notices.push({ sub: 'alarms', kind: `alert.${event}`, alarm: firing, tenants: r.tenant ? [r.tenant] : null, text: () => `${firing ? '🔔 FIRING' : '✅ resolved'} ${event}: ${(r.reason ?? '').slice(0, 300)}` });
    }
    await this.queue(rooms, notices, 'alert_events', String(rows[rows.length - 1]!.id));
  }

  private async fromAudit(rooms: RoomRecord[]): Promise<void> {
    // With no room that takes these notices, the logs are not read (a wave writes 50,000 entries).
    const wanted = rooms.some((r) => r.subscribe.includes('alarms') || r.subscribe.includes('releases'));
    for (const log of await this.store.audit.logs()) {
      const name = `audit:${log}`;
      const from = await this.cursorAt(name, () => this.store.audit.size(log));
      if (!wanted) {
        const size = await this.store.audit.size(log);
        if (size > from) await this.store.chat.setCursor(name, String(size));
        continue;
      }
      const rows = await this.store.audit.entries(log, { from, since: 0, limit: BATCH });
      if (!rows.length) continue;
      const notices: Notice[] = [];
      for (const row of rows) {
        // Only these actions make notices: the others are not parsed.
        if (!NOTICE_ACTIONS.some((a) => row.data.includes(a))) continue;
        const e = parseEntry(row.data);
        const d = e.details;
        if (e.action === 'agent.alarm') {
          const agent = e.target?.id ?? '?';
          const a = await this.store.fleet.findAgent(agent);
          notices.push({ sub: 'alarms', kind: 'agent.alarm', alarm: true, tenants: [log], text: () => `🚨 ALARM on ${a?.name ?? agent} (${agent}, ${log}): ${String(d.code ?? '')} ${String(d.message ?? '').slice(0, 300)}` });
        } else if (e.action === 'release.offer' && log === HUB_LOG) {
          const tenants = String(d.tenants ?? '').split(',').filter(Boolean);
          notices.push({ sub: 'releases', kind: 'release.offer', alarm: false, tenants, text: () => `📦 升级通知 new release ${e.target?.id ?? ''} available${tenants.length ? ` for ${tenants.join(', ')}` : ''}` });
        } else if (e.action === 'directive.issue' && log !== HUB_LOG && d.rollout === undefined && d.purpose === undefined) {
          notices.push({ sub: 'releases', kind: 'deploy', alarm: false, tenants: [log], text: () => `📦 ${String(d.stack)}@${String(d.version)} deployed to ${e.target?.id ?? ''} (${log}) from ${e.surface}` });
        }
      }
      await this.queue(rooms, notices, name, String(rows[rows.length - 1]!.idx + 1));
    }
  }

  private async fromPresence(rooms: RoomRecord[]): Promise<void> {
    const after = await this.cursorAt('feed', () => this.store.chat.feedHead());
    const rows = await this.store.chat.feed(after, this.now() - this.opts.presenceGraceMs, BATCH);
    if (!rows.length) return;
    const latest = await this.store.chat.lastFeed([...new Set(rows.map((r) => r.agent_id))], after);
    const notices: Notice[] = [];
    const announced: { agent: string; offline: boolean }[] = [];
    for (const r of rows) {
      const cur = `offline:${r.agent_id}`;
      const was = (await this.store.chat.cursor(cur)) !== undefined || announced.some((x) => x.agent === r.agent_id && x.offline);
      if (r.kind === 'offline') {
        // Back within the grace time (a reconnect): nothing to say.
        const last = latest.get(r.agent_id);
        if (was || (last && last.id > r.id && last.kind === 'online' && last.at - r.at <= this.opts.presenceGraceMs)) continue;
        const a = await this.store.fleet.findAgent(r.agent_id);
        if (!a || a.revokedAt !== null) continue;
        announced.push({ agent: r.agent_id, offline: true });
        notices.push({ sub: 'agents', kind: 'agent.offline', alarm: false, tenants: [r.tenant], text: () => `○ agent ${a.name} (${a.id}, ${r.tenant}) offline since ${new Date(r.at).toISOString().slice(11, 19)} UTC` });
      } else if (was) {
        const a = await this.store.fleet.findAgent(r.agent_id);
        announced.push({ agent: r.agent_id, offline: false });
        notices.push({ sub: 'agents', kind: 'agent.online', alarm: false, tenants: [r.tenant], text: () => `● agent ${a?.name ?? r.agent_id} (${r.agent_id}, ${r.tenant}) back online` });
      }
    }
    await this.store.tx(async () => {
      for (const x of announced) {
        if (x.offline) await this.store.chat.setCursor(`offline:${x.agent}`, '1');
        else await this.store.chat.dropCursor(`offline:${x.agent}`);
      }
      await this.enqueueAll(rooms, notices);
      await this.store.chat.setCursor('feed', String(rows[rows.length - 1]!.id));
    });
  }

  /** Queues notices for the rooms that want them and moves the cursor, in one transaction. */
  private async queue(rooms: RoomRecord[], notices: Notice[], cursor: string, value: string): Promise<void> {
    await this.store.tx(async () => {
      await this.enqueueAll(rooms, notices);
      await this.store.chat.setCursor(cursor, value);
    });
  }

  private async enqueueAll(rooms: RoomRecord[], notices: Notice[]): Promise<void> {
    const now = this.now();
    for (const n of notices) {
      for (const room of rooms) {
        if (!room.subscribe.includes(n.sub)) continue;
        if (room.tenants !== null && (n.tenants === null || !n.tenants.some((t) => room.tenants!.includes(t)))) continue;
        await this.store.chat.enqueue(room.id, n.kind, n.alarm, JSON.stringify({ text: n.text(room) }), now, n.alarm ? now : now + this.opts.gatherMs);
      }
    }
  }

  // ---- sending --------------------------------------------------------------------------------

  private async sendDue(): Promise<void> {
    const now = this.now();
    const due = await this.store.chat.dueRooms(now);
    // A slow platform holds up only its own rooms.
    await Promise.all(due.map((id) => this.sendRoom(id).catch((err: unknown) => this.log.warn({ room: id, err: (err as Error).message }, 'chat notice not sent'))));
  }

  private async sendRoom(roomId: string): Promise<void> {
    const now = this.now();
    const room = await this.store.chat.roomById(roomId);
    const rows = (await this.store.chat.unsent(roomId, 1000)).filter((r) => r.due_at <= now);
    if (!rows.length) return;
    if (!room) return this.store.chat.markSent(rows.map((r) => r.id), -1, now); // unbound meanwhile
    const t = await this.transportFor(room.transport);
    if (!t) return this.store.chat.deferSend(rows.map((r) => r.id), now + 60_000, `transport ${room.transport} not configured`);
    const historyKey = `sent:${roomId}`;
    const history = JSON.parse((await this.store.chat.cursor(historyKey)) ?? '[]') as number[];
    if (nextSlot(t.platform, history, now) > now) return; // its next slot: a later pass
    const items = rows.map((r) => ({ id: r.id, alarm: r.alarm === 1, at: r.created_at, ...(JSON.parse(r.body) as { text: string; thread?: string | null }) }));
    const d = digest(t.platform as Platform, items);
    const msg: OutMessage = { kind: 'notice', text: d.text, key: `ferry-n${d.ids[0]}`, thread: items.length === 1 ? (items[0]!.thread ?? null) : null };
    try {
      await t.send(room, msg);
    } catch (err) {
      const e = err instanceof TransportError ? err : new TransportError((err as Error).message);
      const attempts = Math.max(...rows.filter((r) => d.ids.includes(r.id)).map((r) => r.attempts));
      const wait = e.retryAfterMs ?? backoffMs(attempts, Math.random());
      this.log.warn({ room: roomId, transport: room.transport, err: e.message, retryInMs: wait, notices: d.ids.length }, 'chat notice not sent; will retry');
      await this.store.chat.deferSend(d.ids, now + wait, e.message);
      return;
    }
    await this.store.tx(async () => {
      await this.store.chat.markSent(d.ids, d.ids[0]!, this.now());
      await this.store.chat.setCursor(historyKey, JSON.stringify(trimHistory(t.platform as Platform, [...history, this.now()])));
    });
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.pass; // a pass under way finishes: what it sent is marked sent
    await this.flushFeed().catch(() => {});
  }
}
